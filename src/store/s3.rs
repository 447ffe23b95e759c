//! S3-compatible `BlobStore` (AWS S3, SeaweedFS, Garage, MinIO, Ceph): blobs at
//! `<prefix>blobs/<alg>/<hex>`, an upload's multipart upload and staged tail under
//! `<prefix>uploads/<id>/`, blobs that failed verification under `<prefix>quarantine/`.
//!
//! One registry process owns a bucket prefix (its metadata is the embedded
//! database beside it): commits and sweeps of one digest are serialized in the
//! process, which is what keeps a sweep from deleting a copy committed while it
//! judged the old one.

#[cfg(test)]
pub(crate) mod tests;
mod upload;

use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use bytes::Bytes;
use futures_util::StreamExt;
use serde::Deserialize;

use super::blob::{
    AppendError, BlobReader, BlobStore, ByteRange, ByteStream, UploadState, too_large, verified,
};
use super::{StoreError, StoreResult};
use crate::oci::Digest;

/// S3's smallest part but the last; a tail shorter than this is staged as an object.
const MIN_PART: u64 = 5 << 20;
/// S3's largest single `CopyObject`; larger objects are copied part by part.
const MAX_COPY: u64 = 5 << 30;
/// The part size of a multipart copy.
const COPY_PART: u64 = 1 << 30;

/// The `[s3]` section of the config file: where the blobs go when not on the
/// filesystem. Credentials not given here come from the standard AWS chain
/// (`AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, `AWS_PROFILE`, web identity,
/// instance metadata).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Settings {
    pub bucket: String,
    /// Prepended to every key, e.g. `berth/`.
    #[serde(default)]
    pub prefix: String,
    /// Defaults to the AWS environment's, else `us-east-1`.
    pub region: Option<String>,
    /// For S3-compatible servers, e.g. `http://127.0.0.1:8333`.
    pub endpoint: Option<String>,
    /// `endpoint/bucket/key` instead of `bucket.endpoint/key` (most self-hosted servers).
    #[serde(default)]
    pub path_style: bool,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// Answer blob `GET`s with `307` to a presigned URL, so that bytes flow from
    /// the object store straight to the client.
    #[serde(default)]
    pub redirect_downloads: bool,
    /// How long a presigned URL is valid.
    #[serde(default = "default_presign_ttl_secs")]
    pub presign_ttl_secs: u64,
    /// Size of the parts an upload is sent in (at least 5 MiB): the memory an
    /// upload session holds is about two of them.
    #[serde(default = "default_part_size_mib")]
    pub part_size_mib: u64,
    /// Create the bucket at start if it does not exist (self-hosted servers).
    #[serde(default)]
    pub create_bucket: bool,
}

fn default_presign_ttl_secs() -> u64 {
    900
}

fn default_part_size_mib() -> u64 {
    8
}

impl S3Settings {
    /// Checks what can be checked without the server.
    pub fn validate(&self) -> Result<(), String> {
        if self.bucket.is_empty() {
            return Err("[s3] bucket must not be empty".into());
        }
        if self.part_size_mib < 5 || self.part_size_mib > 5 * 1024 {
            return Err(format!(
                "[s3] part_size_mib is {}: S3 takes parts of 5 to 5120 MiB",
                self.part_size_mib
            ));
        }
        if !(1..=7 * 24 * 3600).contains(&self.presign_ttl_secs) {
            return Err("[s3] presign_ttl_secs must be between 1 and 604800 (7 days)".into());
        }
        if self.access_key_id.is_some() != self.secret_access_key.is_some() {
            return Err("[s3] access_key_id and secret_access_key go together".into());
        }
        Ok(())
    }

    /// A client for these settings.
    pub async fn client(&self) -> Client {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(region) = &self.region {
            loader = loader.region(aws_config::Region::new(region.clone()));
        }
        if let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id,
                secret,
                self.session_token.clone(),
                None,
                "berth-config",
            ));
        }
        let shared = loader.load().await;
        let mut config = aws_sdk_s3::config::Builder::from(&shared)
            .force_path_style(self.path_style)
            // Checksums only where S3 requires them: several S3-compatible
            // servers refuse the SDK's default trailing checksums, and every
            // blob is verified against its digest by Berth anyway.
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .response_checksum_validation(
                aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired,
            );
        if shared.region().is_none() {
            config = config.region(aws_config::Region::new("us-east-1"));
        }
        if let Some(endpoint) = &self.endpoint {
            config = config.endpoint_url(endpoint);
        }
        Client::from_conf(config.build())
    }
}

pub struct S3BlobStore {
    client: Client,
    bucket: String,
    prefix: String,
    part_size: u64,
    presign_ttl: Option<Duration>,
    /// Whether part bodies are signed: over plain HTTP nothing else guards them.
    sign_payload: bool,
    /// Serializes commits and sweeps of one digest (striped by its first byte).
    digest_locks: Vec<tokio::sync::Mutex<()>>,
}

/// An S3 call that failed, as the I/O error the rest of the store speaks.
fn s3_error<E, R>(op: &str, e: SdkError<E, R>) -> StoreError
where
    E: std::error::Error + ProvideErrorMetadata + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    StoreError::Io(std::io::Error::other(format!(
        "S3 {op}: {}",
        DisplayErrorContext(&e)
    )))
}

/// Whether an S3 error says the object (or upload) is not there.
fn not_found<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    if let Some(code) = e.as_service_error().and_then(|s| s.code()) {
        return matches!(code, "NoSuchKey" | "NotFound" | "NoSuchUpload");
    }
    e.raw_response().is_some_and(|r| r.status().as_u16() == 404)
}

fn unix_secs(t: Option<&aws_sdk_s3::primitives::DateTime>) -> u64 {
    t.map_or(0, |t| t.secs().max(0) as u64)
}

impl S3BlobStore {
    /// Connects and checks that the bucket answers, so that a wrong endpoint,
    /// bucket or key fails at start rather than at the first push.
    pub async fn connect(settings: &S3Settings) -> StoreResult<Self> {
        settings.validate().map_err(StoreError::Meta)?;
        let client = settings.client().await;
        match client.head_bucket().bucket(&settings.bucket).send().await {
            Ok(_) => {}
            Err(e) if settings.create_bucket && not_found(&e) => {
                create_bucket(&client, &settings.bucket).await?;
                tracing::info!(bucket = %settings.bucket, "created S3 bucket");
            }
            Err(e) => return Err(s3_error(&format!("bucket {}", settings.bucket), e)),
        }
        Ok(S3BlobStore {
            client,
            bucket: settings.bucket.clone(),
            prefix: settings.prefix.clone(),
            part_size: settings.part_size_mib << 20,
            presign_ttl: settings
                .redirect_downloads
                .then(|| Duration::from_secs(settings.presign_ttl_secs)),
            sign_payload: settings
                .endpoint
                .as_deref()
                .is_some_and(|e| !e.starts_with("https://")),
            digest_locks: (0..64).map(|_| tokio::sync::Mutex::new(())).collect(),
        })
    }

    fn blob_key(&self, d: &Digest) -> String {
        format!(
            "{}blobs/{}/{}",
            self.prefix,
            d.algorithm().as_str(),
            d.hex()
        )
    }

    fn blobs_prefix(&self) -> String {
        format!("{}blobs/", self.prefix)
    }

    fn digest_of_key(&self, key: &str) -> Option<Digest> {
        let rest = key.strip_prefix(&self.blobs_prefix())?;
        let (alg, hex) = rest.split_once('/')?;
        format!("{alg}:{hex}").parse().ok()
    }

    async fn lock_digest(&self, d: &Digest) -> tokio::sync::MutexGuard<'_, ()> {
        let stripe = d.hex().as_bytes().first().copied().unwrap_or(0) as usize;
        self.digest_locks[stripe % self.digest_locks.len()]
            .lock()
            .await
    }

    /// Size and last write of an object, if it is there.
    async fn head(&self, key: &str) -> StoreResult<Option<(u64, SystemTime)>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => {
                let size = out.content_length().unwrap_or(0).max(0) as u64;
                let modified =
                    SystemTime::UNIX_EPOCH + Duration::from_secs(unix_secs(out.last_modified()));
                Ok(Some((size, modified)))
            }
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(s3_error("HeadObject", e)),
        }
    }

    async fn delete_key(&self, key: &str) -> StoreResult<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| s3_error("DeleteObject", e))?;
        Ok(())
    }

    async fn put(&self, key: &str, bytes: Bytes) -> StoreResult<()> {
        self.client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(bytes.len() as i64)
            .body(S3Body::from(bytes))
            .send()
            .await
            .map_err(|e| s3_error("PutObject", e))?;
        Ok(())
    }

    /// Copies an object of `size` bytes within the bucket, server side: in one
    /// call up to S3's 5 GiB, part by part beyond.
    async fn copy(&self, from: &str, to: &str, size: u64) -> StoreResult<()> {
        let source = format!("{}/{}", self.bucket, from);
        if size <= MAX_COPY {
            self.client
                .copy_object()
                .bucket(&self.bucket)
                .key(to)
                .copy_source(source)
                .send()
                .await
                .map_err(|e| s3_error("CopyObject", e))?;
            return Ok(());
        }
        let mp = self.create_multipart(to).await?;
        let result = async {
            let mut parts = Vec::new();
            let mut start = 0;
            while start < size {
                let end = (start + COPY_PART).min(size) - 1;
                let number = parts.len() as i32 + 1;
                let etag = self
                    .copy_part(to, &mp, number, &source, Some((start, end)))
                    .await?;
                parts.push(etag);
                start = end + 1;
            }
            self.complete_multipart(to, &mp, parts).await
        }
        .await;
        if result.is_err() {
            let _ = self.abort_multipart(to, &mp).await;
        }
        result
    }

    /// Streams `len` bytes of an object from `start`.
    async fn get_stream(
        &self,
        key: &str,
        range: Option<(u64, u64)>,
    ) -> StoreResult<Option<(u64, ByteStream)>> {
        let mut req = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some((start, end)) = range {
            req = req.range(format!("bytes={start}-{end}"));
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(s3_error("GetObject", e)),
        };
        let total = match out.content_range() {
            // `bytes a-b/total`
            Some(cr) => cr
                .rsplit('/')
                .next()
                .and_then(|t| t.parse().ok())
                .unwrap_or(0),
            None => out.content_length().unwrap_or(0).max(0) as u64,
        };
        let expected = match range {
            Some((start, end)) => end - start + 1,
            None => total,
        };
        Ok(Some((total, body_stream(out.body, expected))))
    }
}

async fn create_bucket(client: &Client, bucket: &str) -> StoreResult<()> {
    use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
    let mut req = client.create_bucket().bucket(bucket);
    // us-east-1 is the one region that takes no location constraint.
    if let Some(region) = client.config().region().map(|r| r.as_ref().to_string())
        && region != "us-east-1"
    {
        req = req.create_bucket_configuration(
            CreateBucketConfiguration::builder()
                .location_constraint(BucketLocationConstraint::from(region.as_str()))
                .build(),
        );
    }
    req.send()
        .await
        .map_err(|e| s3_error(&format!("CreateBucket {bucket}"), e))?;
    Ok(())
}

/// An S3 body as a stream of `expected` bytes: one that ends short is an error,
/// never a shorter blob.
fn body_stream(body: S3Body, expected: u64) -> ByteStream {
    let stream = futures_util::stream::unfold(
        (body, 0u64, false),
        move |(mut body, mut got, done)| async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    got += chunk.len() as u64;
                    Some((Ok(chunk), (body, got, false)))
                }
                Some(Err(e)) => Some((Err(std::io::Error::other(e)), (body, got, true))),
                None if got < expected => Some((
                    Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        format!("object ended after {got} of {expected} bytes"),
                    )),
                    (body, got, true),
                )),
                None => None,
            }
        },
    );
    Box::pin(stream)
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn stat(&self, digest: &Digest) -> StoreResult<Option<u64>> {
        Ok(self
            .head(&self.blob_key(digest))
            .await?
            .map(|(size, _)| size))
    }

    async fn read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> StoreResult<Option<BlobReader>> {
        let range = range.map(|r| (r.start, r.end));
        Ok(self
            .get_stream(&self.blob_key(digest), range)
            .await?
            .map(|(size, stream)| BlobReader { size, stream }))
    }

    async fn read_all(&self, digest: &Digest, limit: u64) -> StoreResult<Option<Bytes>> {
        let Some((size, mut stream)) = self.get_stream(&self.blob_key(digest), None).await? else {
            return Ok(None);
        };
        if size > limit {
            return Err(too_large(digest, limit));
        }
        let mut buf = Vec::with_capacity(size as usize);
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk?);
            if buf.len() as u64 > limit {
                break;
            }
        }
        verified(digest, buf, limit).map(Some)
    }

    async fn write_all(&self, digest: &Digest, bytes: Bytes) -> StoreResult<()> {
        let _held = self.lock_digest(digest).await;
        self.put(&self.blob_key(digest), bytes).await
    }

    async fn delete(&self, digest: &Digest) -> StoreResult<bool> {
        let key = self.blob_key(digest);
        let _held = self.lock_digest(digest).await;
        if self.head(&key).await?.is_none() {
            return Ok(false);
        }
        self.delete_key(&key).await?;
        Ok(true)
    }

    async fn quarantine(&self, digest: &Digest) -> StoreResult<bool> {
        let key = self.blob_key(digest);
        let _held = self.lock_digest(digest).await;
        let Some((size, _)) = self.head(&key).await? else {
            return Ok(false);
        };
        let stamp = jiff::Timestamp::now().as_nanosecond();
        let aside = format!(
            "{}quarantine/{}-{}-{stamp}",
            self.prefix,
            digest.algorithm().as_str(),
            digest.hex()
        );
        self.copy(&key, &aside, size).await?;
        self.delete_key(&key).await?;
        Ok(true)
    }

    async fn sweep(
        &self,
        digest: &Digest,
        untouched_since: SystemTime,
        apply: bool,
    ) -> StoreResult<Option<u64>> {
        let key = self.blob_key(digest);
        // Held from the look to the delete: a commit of the digest waits, and
        // then writes a fresh copy, rather than landing between the two.
        let _held = self.lock_digest(digest).await;
        let Some((size, modified)) = self.head(&key).await? else {
            return Ok(None);
        };
        // S3 keeps whole seconds: a commit in the second the mark began counts as after it.
        let since = untouched_since
            .checked_sub(Duration::from_secs(1))
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if modified >= since {
            return Ok(None);
        }
        if apply {
            self.delete_key(&key).await?;
        }
        Ok(Some(size))
    }

    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> StoreResult<Vec<(Digest, u64)>> {
        let mut out = Vec::new();
        let mut start_after = after.map(|d| self.blob_key(d));
        let mut token: Option<String> = None;
        while out.len() < limit {
            let mut req = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(self.blobs_prefix())
                .max_keys((limit - out.len()).min(1000) as i32);
            if let Some(t) = &token {
                req = req.continuation_token(t);
            } else if let Some(s) = start_after.take() {
                req = req.start_after(s);
            }
            let page = req.send().await.map_err(|e| s3_error("ListObjectsV2", e))?;
            for obj in page.contents() {
                if let Some(d) = obj.key().and_then(|k| self.digest_of_key(k)) {
                    out.push((d, obj.size().unwrap_or(0).max(0) as u64));
                }
            }
            match page.next_continuation_token() {
                Some(t) if page.is_truncated() == Some(true) => token = Some(t.to_string()),
                _ => break,
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn download_url(&self, digest: &Digest) -> StoreResult<Option<String>> {
        let Some(ttl) = self.presign_ttl else {
            return Ok(None);
        };
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(ttl)
            .map_err(|e| StoreError::Io(std::io::Error::other(e)))?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.blob_key(digest))
            .presigned(config)
            .await
            .map_err(|e| s3_error("presigning GetObject", e))?;
        Ok(Some(req.uri().to_string()))
    }

    async fn begin_upload(&self, _id: &str) -> StoreResult<UploadState> {
        // The multipart upload begins with the first full part: a small blob
        // never needs one.
        Ok(UploadState {
            synced: true,
            ..UploadState::default()
        })
    }

    async fn append_upload(
        &self,
        id: &str,
        from: &UploadState,
        _declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadState, (UploadState, AppendError)> {
        self.append(id, from, body).await
    }

    async fn read_upload(&self, id: &str, state: &UploadState) -> StoreResult<Option<ByteStream>> {
        self.finish_and_read(id, state).await.map(Some)
    }

    async fn commit_upload(
        &self,
        id: &str,
        state: &UploadState,
        digest: &Digest,
    ) -> StoreResult<()> {
        self.commit(id, state, digest).await
    }

    async fn delete_upload(&self, id: &str, state: Option<&UploadState>) -> StoreResult<()> {
        self.remove_upload(id, state).await
    }

    async fn list_uploads(&self) -> StoreResult<Vec<(String, u64)>> {
        self.uploads().await
    }
}
