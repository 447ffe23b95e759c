//! OCI upload sessions on S3: one multipart upload per session, begun with the
//! first full part. Appends are cut into parts as they stream (memory: the part
//! being filled and the one being sent); what is left at the end of an append,
//! when shorter than S3's smallest part, is staged as the object
//! `uploads/<id>/tail-<offset>` and read back by the next append. The parts'
//! ETags and the tail's length are the store's continuation in `UploadState`.
//!
//! An append that is never recorded (its process died) may leave parts past the
//! recorded ones and longer tails: the next append from the recorded state
//! uploads those part numbers again and reads only the recorded tail length
//! (a tail at the same offset only ever grows by appended bytes), and commit
//! names exactly the recorded parts.

use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::{MIN_PART, S3BlobStore, not_found, s3_error, unix_secs};
use crate::oci::Digest;
use crate::store::blob::{AppendError, ByteStream, UploadState};
use crate::store::{StoreError, StoreResult};

/// Parts per band of the part-size schedule: every 1,000 parts the size grows by
/// the configured one, so S3's 10,000 parts reach 55,000 configured parts
/// (440 GB at the default 8 MiB) while blobs of ordinary size keep parts of the configured size.
const PARTS_PER_BAND: u64 = 1000;
/// S3's most parts in one upload.
const MAX_PARTS: usize = 10_000;

/// The S3 side of an upload's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Multipart {
    /// The multipart upload, once a part was sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    upload: Option<String>,
    /// Each part sent: its length and ETag.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    parts: Vec<(u64, String)>,
    /// Bytes staged in the tail object after the parts.
    #[serde(default)]
    tail: u64,
}

impl Multipart {
    fn of(state: &UploadState) -> std::io::Result<Multipart> {
        if state.store.is_empty() {
            return Ok(Multipart::default());
        }
        let mp: Multipart = serde_json::from_str(&state.store).map_err(std::io::Error::other)?;
        if mp.in_parts() + mp.tail != state.len {
            return Err(std::io::Error::other(format!(
                "upload state holds {} bytes in parts and tail where {} were recorded",
                mp.in_parts() + mp.tail,
                state.len
            )));
        }
        Ok(mp)
    }

    fn in_parts(&self) -> u64 {
        self.parts.iter().map(|(len, _)| len).sum()
    }

    fn state(&self) -> UploadState {
        UploadState {
            len: self.in_parts() + self.tail,
            store: serde_json::to_string(self).unwrap_or_default(),
            synced: true,
        }
    }
}

/// A part on its way to S3.
type Sending = tokio::task::JoinHandle<StoreResult<(u64, String)>>;

impl S3BlobStore {
    fn upload_prefix(&self, id: &str) -> String {
        format!("{}uploads/{id}/", self.prefix)
    }

    fn data_key(&self, id: &str) -> String {
        format!("{}data", self.upload_prefix(id))
    }

    fn tail_key(&self, id: &str, offset: u64) -> String {
        format!("{}tail-{offset}", self.upload_prefix(id))
    }

    /// The size of part `number` (1-based).
    fn part_size(&self, number: usize) -> u64 {
        self.part_size * (1 + (number.max(1) as u64 - 1) / PARTS_PER_BAND)
    }

    pub(super) async fn create_multipart(&self, key: &str) -> StoreResult<String> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("CreateMultipartUpload", e))?;
        out.upload_id()
            .map(str::to_string)
            .ok_or_else(|| StoreError::Io(std::io::Error::other("S3 gave no upload id")))
    }

    pub(super) async fn copy_part(
        &self,
        key: &str,
        upload: &str,
        number: i32,
        source: &str,
        range: Option<(u64, u64)>,
    ) -> StoreResult<String> {
        let mut req = self
            .client
            .upload_part_copy()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .part_number(number)
            .copy_source(source);
        if let Some((start, end)) = range {
            req = req.copy_source_range(format!("bytes={start}-{end}"));
        }
        let out = req
            .send()
            .await
            .map_err(|e| s3_error("UploadPartCopy", e))?;
        out.copy_part_result()
            .and_then(|r| r.e_tag())
            .map(str::to_string)
            .ok_or_else(|| StoreError::Io(std::io::Error::other("S3 gave no part ETag")))
    }

    pub(super) async fn complete_multipart(
        &self,
        key: &str,
        upload: &str,
        etags: Vec<String>,
    ) -> StoreResult<()> {
        let parts = etags
            .into_iter()
            .enumerate()
            .map(|(i, etag)| {
                CompletedPart::builder()
                    .part_number(i as i32 + 1)
                    .e_tag(etag)
                    .build()
            })
            .collect();
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .multipart_upload(
                CompletedMultipartUpload::builder()
                    .set_parts(Some(parts))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| s3_error("CompleteMultipartUpload", e))?;
        Ok(())
    }

    pub(super) async fn abort_multipart(&self, key: &str, upload: &str) -> StoreResult<()> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(upload)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if not_found(&e) => Ok(()),
            Err(e) => Err(s3_error("AbortMultipartUpload", e)),
        }
    }

    /// Sends one part in the background.
    fn send_part(&self, key: String, upload: String, number: usize, bytes: Bytes) -> Sending {
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let sign_payload = self.sign_payload;
        tokio::spawn(async move {
            let len = bytes.len() as u64;
            let req = client
                .upload_part()
                .bucket(bucket)
                .key(key)
                .upload_id(upload)
                .part_number(number as i32)
                .content_length(len as i64)
                .body(S3Body::from(bytes));
            let out = if sign_payload {
                req.send().await
            } else {
                // Over TLS the SigV4 hash of every part would be a second
                // SHA-256 over each byte, on the cores the digest's runs on,
                // guarding what TLS already guards.
                req.customize().disable_payload_signing().send().await
            }
            .map_err(|e| s3_error("UploadPart", e))?;
            let etag = out
                .e_tag()
                .ok_or_else(|| StoreError::Io(std::io::Error::other("S3 gave no part ETag")))?;
            Ok((len, etag.to_string()))
        })
    }

    /// Reads the staged tail of an upload, exactly the recorded bytes of it.
    async fn read_tail(&self, id: &str, mp: &Multipart, into: &mut BytesMut) -> StoreResult<()> {
        let key = self.tail_key(id, mp.in_parts());
        let Some((_, mut stream)) = self.get_stream(&key, Some((0, mp.tail - 1))).await? else {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "the staged tail of upload {id} is gone"
            ))));
        };
        while let Some(chunk) = stream.next().await {
            into.extend_from_slice(&chunk?);
        }
        if into.len() as u64 != mp.tail {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "the staged tail of upload {id} holds {} bytes where {} were recorded",
                into.len(),
                mp.tail
            ))));
        }
        Ok(())
    }

    pub(super) async fn append(
        &self,
        id: &str,
        from: &UploadState,
        mut body: ByteStream,
    ) -> Result<UploadState, (UploadState, AppendError)> {
        let failed = |e: StoreError| {
            let e = match e {
                StoreError::Io(e) => e,
                other => std::io::Error::other(other.to_string()),
            };
            (from.clone(), AppendError::Store(e))
        };
        let mut mp = Multipart::of(from).map_err(|e| failed(StoreError::Io(e)))?;
        let mut buf = BytesMut::with_capacity(self.part_size(mp.parts.len() + 1) as usize);
        if mp.tail > 0 {
            self.read_tail(id, &mp, &mut buf).await.map_err(failed)?;
        }
        mp.tail = 0;
        let mut sending: Option<Sending> = None;
        let mut body_error = None;
        while let Some(item) = body.next().await {
            let mut chunk = match item {
                Ok(chunk) => chunk,
                Err(e) => {
                    body_error = Some(e);
                    break;
                }
            };
            while !chunk.is_empty() {
                let size = self.part_size(mp.parts.len() + 1) as usize;
                let take = chunk.len().min(size - buf.len());
                buf.extend_from_slice(&chunk.split_to(take));
                if buf.len() == size {
                    let next = self.part_size(mp.parts.len() + 2) as usize;
                    let part = std::mem::replace(&mut buf, BytesMut::with_capacity(next));
                    sending = Some(
                        self.start_part(id, &mut mp, sending, part.freeze())
                            .await
                            .map_err(failed)?,
                    );
                }
            }
        }
        if let Some(s) = sending.take() {
            mp.parts.push(joined(s).await.map_err(failed)?);
        }
        // What is left: a part if S3 takes it as one, else the staged tail.
        if buf.len() as u64 >= MIN_PART {
            let s = self
                .start_part(id, &mut mp, None, buf.freeze())
                .await
                .map_err(failed)?;
            mp.parts.push(joined(s).await.map_err(failed)?);
        } else if !buf.is_empty() {
            let key = self.tail_key(id, mp.in_parts());
            mp.tail = buf.len() as u64;
            self.put(&key, buf.freeze()).await.map_err(failed)?;
        }
        let kept = mp.state();
        match body_error {
            // Everything that arrived before the body failed is kept.
            Some(e) => Err((kept, AppendError::Body(e))),
            None => Ok(kept),
        }
    }

    /// Sends the next part (beginning the multipart upload if need be) once
    /// the one before it is in: at most one part is on its way at a time.
    async fn start_part(
        &self,
        id: &str,
        mp: &mut Multipart,
        before: Option<Sending>,
        part: Bytes,
    ) -> StoreResult<Sending> {
        if let Some(s) = before {
            mp.parts.push(joined(s).await?);
        }
        let number = mp.parts.len() + 1;
        if number > MAX_PARTS {
            return Err(StoreError::Io(std::io::Error::other(format!(
                "an upload takes at most {MAX_PARTS} parts: raise [s3] part_size_mib"
            ))));
        }
        let upload = match &mp.upload {
            Some(u) => u.clone(),
            None => {
                let u = self.create_multipart(&self.data_key(id)).await?;
                mp.upload = Some(u.clone());
                u
            }
        };
        Ok(self.send_part(self.data_key(id), upload, number, part))
    }

    pub(super) async fn commit(
        &self,
        id: &str,
        state: &UploadState,
        digest: &Digest,
    ) -> StoreResult<()> {
        let mp = Multipart::of(state)?;
        let key = self.blob_key(digest);
        let started = std::time::Instant::now();
        {
            let _held = self.lock_digest(digest).await;
            self.install(id, state, &mp, &key).await?;
        }
        tracing::debug!(upload = id, %digest, parts = mp.parts.len(), seconds = started.elapsed().as_secs_f64(), "upload installed under its digest");
        // Committed, the upload's objects are spent (as a renamed file is).
        if let Err(e) = self.remove_upload(id, Some(state)).await {
            tracing::warn!(upload = id, error = %e, "could not remove a committed upload's objects");
        }
        Ok(())
    }

    /// Puts a finished upload's bytes at `key`, server side.
    async fn install(
        &self,
        id: &str,
        state: &UploadState,
        mp: &Multipart,
        key: &str,
    ) -> StoreResult<()> {
        let tail_key = self.tail_key(id, mp.in_parts());
        let Some(upload) = &mp.upload else {
            // No part: the blob is its tail (shorter than a part) or empty.
            if mp.tail == 0 {
                return self.put(key, Bytes::new()).await;
            }
            return match self.head(&tail_key).await? {
                Some((size, _)) if size == mp.tail => self.copy(&tail_key, key, size).await,
                Some(_) => {
                    // Longer than recorded (an append that was never recorded): the recorded bytes.
                    let mut bytes = BytesMut::with_capacity(mp.tail as usize);
                    self.read_tail(id, mp, &mut bytes).await?;
                    self.put(key, bytes.freeze()).await
                }
                None => Err(StoreError::UploadNotFound(id.to_string())),
            };
        };
        self.assemble(id, state, mp, upload).await?;
        self.copy(&self.data_key(id), key, state.len).await
    }

    /// Completes the multipart upload (the tail copied in as its last part)
    /// into the upload's `data` object. Done already (a commit that failed
    /// after it, or a read back), the object is there and that is a success.
    async fn assemble(
        &self,
        id: &str,
        state: &UploadState,
        mp: &Multipart,
        upload: &str,
    ) -> StoreResult<()> {
        let data = self.data_key(id);
        let tail_key = self.tail_key(id, mp.in_parts());
        let mut etags: Vec<String> = mp.parts.iter().map(|(_, e)| e.clone()).collect();
        let assembled = async {
            if mp.tail > 0 {
                let source = format!("{}/{}", self.bucket, tail_key);
                let number = etags.len() as i32 + 1;
                etags.push(
                    self.copy_part(&data, upload, number, &source, Some((0, mp.tail - 1)))
                        .await?,
                );
            }
            self.complete_multipart(&data, upload, etags).await
        }
        .await;
        if let Err(e) = assembled
            && self.head(&data).await?.map(|(size, _)| size) != Some(state.len)
        {
            return Err(e);
        }
        Ok(())
    }

    /// The bytes of an upload, read back: its tail if it has no part, else the
    /// completed multipart upload (which then takes no more appends).
    pub(super) async fn finish_and_read(
        &self,
        id: &str,
        state: &UploadState,
    ) -> StoreResult<ByteStream> {
        let mp = Multipart::of(state)?;
        if state.len == 0 {
            return Ok(Box::pin(futures_util::stream::empty()));
        }
        let (key, len) = match &mp.upload {
            Some(upload) => {
                self.assemble(id, state, &mp, upload).await?;
                (self.data_key(id), state.len)
            }
            None => (self.tail_key(id, 0), mp.tail),
        };
        match self.get_stream(&key, Some((0, len - 1))).await? {
            Some((_, stream)) => Ok(stream),
            None => Err(StoreError::UploadNotFound(id.to_string())),
        }
    }

    /// Aborts an upload's multipart uploads and deletes its objects: those the
    /// state names and any an unrecorded append began.
    pub(super) async fn remove_upload(
        &self,
        id: &str,
        state: Option<&UploadState>,
    ) -> StoreResult<()> {
        let data = self.data_key(id);
        if let Some(upload) = state
            .and_then(|s| Multipart::of(s).ok())
            .and_then(|m| m.upload)
        {
            self.abort_multipart(&data, &upload).await?;
        }
        for (key, upload, _) in self.multiparts(&self.upload_prefix(id)).await? {
            self.abort_multipart(&key, &upload).await?;
        }
        for (key, _) in self.objects(&self.upload_prefix(id)).await? {
            self.delete_key(&key).await?;
        }
        Ok(())
    }

    /// Multipart uploads under `prefix`: key, upload id, when begun.
    pub(super) async fn multiparts(&self, prefix: &str) -> StoreResult<Vec<(String, String, u64)>> {
        let mut out = Vec::new();
        let (mut key_marker, mut id_marker) = (None::<String>, None::<String>);
        loop {
            let page = self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
                .map_err(|e| s3_error("ListMultipartUploads", e))?;
            for u in page.uploads() {
                if let (Some(key), Some(upload)) = (u.key(), u.upload_id()) {
                    out.push((
                        key.to_string(),
                        upload.to_string(),
                        unix_secs(u.initiated()),
                    ));
                }
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            id_marker = page.next_upload_id_marker().map(str::to_string);
            if key_marker.is_none() {
                break;
            }
        }
        Ok(out)
    }

    /// Objects under `prefix`: key, last written.
    pub(super) async fn objects(&self, prefix: &str) -> StoreResult<Vec<(String, u64)>> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(prefix)
                .set_continuation_token(token.take())
                .send()
                .await
                .map_err(|e| s3_error("ListObjectsV2", e))?;
            for o in page.contents() {
                if let Some(key) = o.key() {
                    out.push((key.to_string(), unix_secs(o.last_modified())));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(out)
    }

    /// When a multipart upload last received a part (or began, without one).
    async fn last_part_written(&self, key: &str, upload: &str, began: u64) -> StoreResult<u64> {
        let mut latest = began;
        let mut marker: Option<String> = None;
        loop {
            let page = match self
                .client
                .list_parts()
                .bucket(&self.bucket)
                .key(key)
                .upload_id(upload)
                .set_part_number_marker(marker.take())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) if not_found(&e) => return Ok(latest),
                Err(e) => return Err(s3_error("ListParts", e)),
            };
            for p in page.parts() {
                latest = latest.max(unix_secs(p.last_modified()));
            }
            match page.next_part_number_marker() {
                Some(m) if page.is_truncated() == Some(true) => marker = Some(m.to_string()),
                _ => break,
            }
        }
        Ok(latest)
    }

    /// Every upload with bytes in the bucket and when they were last written:
    /// its newest part or staged object (a monolithic push still streaming
    /// parts is not idle, however long ago its multipart upload began).
    pub(super) async fn uploads(&self) -> StoreResult<Vec<(String, u64)>> {
        let root = format!("{}uploads/", self.prefix);
        let id_of = |key: &str| {
            key.strip_prefix(&root)
                .and_then(|rest| rest.split_once('/'))
                .map(|(id, _)| id.to_string())
        };
        let mut latest: std::collections::BTreeMap<String, u64> = Default::default();
        for (key, upload, began) in self.multiparts(&root).await? {
            if let Some(id) = id_of(&key) {
                let written = self.last_part_written(&key, &upload, began).await?;
                let t = latest.entry(id).or_default();
                *t = (*t).max(written);
            }
        }
        for (key, written) in self.objects(&root).await? {
            if let Some(id) = id_of(&key) {
                let t = latest.entry(id).or_default();
                *t = (*t).max(written);
            }
        }
        Ok(latest.into_iter().collect())
    }
}

async fn joined(s: Sending) -> StoreResult<(u64, String)> {
    s.await
        .map_err(|e| StoreError::Io(std::io::Error::other(format!("part upload: {e}"))))?
}

/// How many parts an upload state holds (for tests).
#[cfg(test)]
pub(super) fn parts_of(state: &UploadState) -> usize {
    Multipart::of(state).map_or(0, |m| m.parts.len())
}
