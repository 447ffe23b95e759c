//! Upload sessions (chunked and monolithic), verification, commit and mount.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;

use super::{Registry, RegistryError, Result};
use crate::oci::{Algorithm, Digest, Hasher};
use crate::store::{AppendError, BlobStore, ByteStream, StoreError, UploadRecord, UploadState};
use body::{BodyTooLong, cap_length, hash_alongside};

mod body;

/// The lock of one upload session, held by the request (or the append) working
/// on it. Where the session stands is in its record, not here: it outlives the
/// process.
pub(super) struct Session;

/// A session, locked for the request (or the append) working on it.
type SessionGuard = tokio::sync::OwnedMutexGuard<Session>;

/// A `Content-Range` of a chunk: inclusive start and end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkRange {
    pub start: u64,
    pub end: u64,
}

/// The result of a mount request.
pub enum MountOutcome {
    Mounted(Digest),
    /// The mount could not be honoured; an upload session was opened instead.
    Started {
        id: String,
    },
}

/// Removes a monolithic upload's file unless disarmed: on failure, and also when
/// the request is dropped mid-way (the client went away), which no `match` sees.
struct RemoveUploadOnDrop {
    blobs: Arc<dyn BlobStore>,
    id: Option<String>,
}

impl Drop for RemoveUploadOnDrop {
    fn drop(&mut self) {
        let (Some(id), Ok(rt)) = (self.id.take(), tokio::runtime::Handle::try_current()) else {
            return;
        };
        let blobs = self.blobs.clone();
        rt.spawn(async move {
            if let Err(e) = blobs.delete_upload(&id, None).await {
                tracing::warn!(upload = %id, error = %e, "could not remove upload bytes");
            }
        });
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Upload ids are ours (uuid v4, simple form); anything else is unknown, which
/// also keeps ids safe to use as file names.
fn valid_upload_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl Registry {
    /// Opens an upload session in `repo` for `owner` and returns its id.
    pub async fn start_upload(&self, repo: &str, owner: &str) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let state = self.blobs.begin_upload(&id).await?;
        let now = now_unix();
        let record = UploadRecord {
            repo: repo.to_string(),
            started_unix: now,
            owner: Some(owner.to_string()),
            state,
            // The digest's algorithm is told only at the end; sha256 is what
            // clients use (another is verified by reading the bytes back).
            hash: Some(Algorithm::Sha256.hasher().save()),
            updated_unix: now,
            writer: self.instance.clone(),
        };
        let max = self.limits.max_uploads_per_identity;
        if let Err(e) = self.meta.create_upload(&id, &record, max).await {
            let _ = self.blobs.delete_upload(&id, Some(&record.state)).await;
            return Err(e.into());
        }
        Ok(id)
    }

    /// Tries to mount `digest` into `repo` from `from` (or, without `from`, from any
    /// repository holding it); opens an upload session when it cannot.
    pub async fn mount_or_start(
        &self,
        repo: &str,
        digest: Option<&Digest>,
        from: Option<&str>,
        owner: &str,
    ) -> Result<MountOutcome> {
        if let Some(d) = digest {
            let source_size = match from {
                Some(from) => self.meta.blob_link(from, d).await?,
                None => match self.meta.blob_linked_anywhere(d).await? {
                    true => self.blobs.stat(d).await?,
                    false => None,
                },
            };
            // A stored copy that is gone or of another size is not mounted: the
            // client uploads the content instead, which replaces it.
            if let Some(size) = source_size {
                match self.check_stored_size(d, size).await {
                    // Linked only if a source still links it as this commits: a
                    // sweep unlinks before it deletes.
                    Ok(()) => {
                        if self.meta.mount_blob(repo, d, from).await?.is_some() {
                            return Ok(MountOutcome::Mounted(d.clone()));
                        }
                    }
                    Err(RegistryError::BlobUnknown(_) | RegistryError::StoredCopyBad { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(MountOutcome::Started {
            id: self.start_upload(repo, owner).await?,
        })
    }

    /// Finds a live session of `repo` and locks it; returns the lock and the
    /// session's record as it stands under the lock, or `UploadUnknown`.
    async fn session(&self, repo: &str, id: &str) -> Result<(SessionGuard, UploadRecord)> {
        let unknown = || RegistryError::UploadUnknown(id.to_string());
        if !valid_upload_id(id) {
            return Err(unknown());
        }
        match self.meta.upload(id).await? {
            Some(r) if r.repo == repo => {}
            _ => return Err(unknown()),
        }
        let session = {
            let mut sessions = self
                .sessions
                .lock()
                .map_err(|_| RegistryError::UploadInvalid("session table poisoned".into()))?;
            sessions
                .entry(id.to_string())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(Session)))
                .clone()
        };
        let guard = session.lock_owned().await;
        // Read again under the lock: the request before ours may have appended,
        // or ended the session.
        let record = match self.meta.upload(id).await? {
            Some(r) if r.repo == repo => r,
            _ => return Err(unknown()),
        };
        let record = self.take_over(id, record).await?;
        Ok((guard, record))
    }

    /// A session another process left, with bytes the store does not call
    /// durable: its saved hash may cover bytes a power cut took back, so they
    /// are hashed again from the store (a crash of the process alone loses
    /// none of them; a power cut then shows as a digest mismatch, never as a
    /// blob that does not match its digest).
    async fn take_over(&self, id: &str, mut record: UploadRecord) -> Result<UploadRecord> {
        if record.writer == self.instance || record.state.synced || record.state.len == 0 {
            return Ok(record);
        }
        let alg = record
            .hash
            .as_deref()
            .and_then(Hasher::resume)
            .map(|h| h.algorithm());
        record.hash = match alg {
            // Unknown (or not readable back): the bytes are read back at the end.
            Some(alg) => self
                .hash_upload(id, &record.state, alg)
                .await?
                .map(|h| h.save()),
            None => None,
        };
        record.writer = self.instance.clone();
        if !self.meta.update_upload(id, &record).await? {
            return Err(RegistryError::UploadUnknown(id.to_string()));
        }
        Ok(record)
    }

    /// The number of bytes an upload holds.
    pub async fn upload_size(&self, repo: &str, id: &str) -> Result<u64> {
        let (_guard, record) = self.session(repo, id).await?;
        Ok(record.state.len)
    }

    /// Appends a chunk. `range` is the request's `Content-Range`, `length` its
    /// `Content-Length`. Returns the new size.
    pub async fn append_chunk(
        &self,
        repo: &str,
        id: &str,
        range: Option<ChunkRange>,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<u64> {
        let (guard, record) = self.session(repo, id).await?;
        let append = Append::Session { id, guard, record };
        let (_, record) = self.append_locked(append, range, length, body).await?;
        Ok(record.state.len)
    }

    /// Appends to an upload and hands back the lock (if a session's) and its
    /// record as it now stands. A session's record is rewritten after the
    /// append, with the store's state and the running hash, before anything is
    /// answered: a session survives a restart without its bytes being read
    /// again. The bytes are written on a task of its own that keeps the session
    /// locked until the store has finished: if the request is dropped mid-way
    /// (the client went away), its writer may still have bytes queued, and
    /// another request must not commit the upload under it meanwhile.
    async fn append_locked<'a>(
        &self,
        append: Append<'a>,
        range: Option<ChunkRange>,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<(Option<SessionGuard>, UploadRecord)> {
        let (id, guard, mut record) = append.parts();
        let size = record.state.len;
        let out_of_order = |reason: String| RegistryError::ChunkOutOfOrder { size, reason };
        // The chunk's length as declared: by its Content-Range, else its Content-Length.
        let declared_span = match range {
            Some(r) => {
                if r.start != size {
                    return Err(out_of_order(format!("chunk starts at byte {}", r.start)));
                }
                if r.end < r.start {
                    return Err(out_of_order("range end is before its start".into()));
                }
                // `end` is client-supplied: a span of u64::MAX + 1 bytes cannot be a chunk.
                let Some(span) = (r.end - r.start).checked_add(1) else {
                    return Err(out_of_order("range is larger than any chunk".into()));
                };
                if length.is_some_and(|l| l != span) {
                    return Err(out_of_order(
                        "Content-Length differs from Content-Range".into(),
                    ));
                }
                Some(span)
            }
            None => None,
        };
        let expected = declared_span.or(length);
        // Framing bounds a body only when it is sized by Content-Length; a chunked
        // one declared by Content-Range is not, so whatever declared it, cap it
        // (one comparison per buffer).
        let body = match expected {
            Some(n) => cap_length(body, n),
            None => body,
        };
        let hasher = record.hash.as_deref().and_then(Hasher::resume);
        if hasher.is_none() {
            // A saved state that does not resume is no state: the bytes are read
            // back at the end, rather than the session never moving on.
            record.hash = None;
        }
        let (body, hashed) = hash_alongside(body, hasher, expected);
        let (blobs, upload, from) = (self.blobs.clone(), id.to_string(), record.state.clone());
        let task = tokio::spawn(async move {
            let result = blobs.append_upload(&upload, &from, expected, body).await;
            (guard, result, hashed.await)
        });
        // A failed task is our fault, not the client's: a 500, not a 400.
        let (guard, result, hashed) = task
            .await
            .map_err(|e| RegistryError::Store(StoreError::Io(std::io::Error::other(e))))?;
        let (kept, failure) = match result {
            Ok(state) => (state, None),
            Err((state, failure)) => (state, Some(failure)),
        };
        let appended = kept.len.saturating_sub(size);
        let hash = hashed.map(|h| (h.len, h.hasher.save()));
        let moved = match (&hash, &record.hash) {
            // The hash saw exactly the bytes kept: both go on from here.
            (Some((len, saved)), _) if *len == appended => {
                record.hash = Some(saved.clone());
                true
            }
            // Unknown before, unknown still: the bytes are read back at the end.
            (None, None) => true,
            // The hash saw bytes the store did not keep: start again from before.
            _ => false,
        };
        if moved && appended > 0 {
            record.state = kept;
            record.updated_unix = now_unix();
            record.writer = self.instance.clone();
            if guard.is_some() && !self.meta.update_upload(id, &record).await? {
                return Err(RegistryError::UploadUnknown(id.to_string()));
            }
        }
        if let Some(failure) = failure {
            return Err(match failure {
                AppendError::Body(e) => {
                    match e.get_ref().and_then(|e| e.downcast_ref::<BodyTooLong>()) {
                        Some(too_long) => RegistryError::SizeInvalid(too_long.to_string()),
                        None => RegistryError::Body(e),
                    }
                }
                // Ours, not the client's: a 500 it retries, never a 400 it gives up on.
                AppendError::Store(e) => RegistryError::Store(StoreError::Io(e)),
            });
        }
        if let Some(e) = expected.filter(|&e| e != appended) {
            return Err(RegistryError::SizeInvalid(format!(
                "received {appended} bytes where {e} were declared"
            )));
        }
        Ok((guard, record))
    }

    /// Completes an upload: appends the optional last chunk, verifies the digest,
    /// commits the blob and links it into `repo`. A digest mismatch ends the
    /// session; a commit the store failed keeps it, so that the client can retry.
    pub async fn finish_upload(
        &self,
        repo: &str,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        length: Option<u64>,
        body: Option<ByteStream>,
    ) -> Result<()> {
        let (guard, record) = self.session(repo, id).await?;
        let (guard, record) = match body {
            Some(body) => {
                let append = Append::Session { id, guard, record };
                self.append_locked(append, range, length, body).await?
            }
            None => (Some(guard), record),
        };
        let result = match self.verify_and_commit(repo, id, &record, digest).await {
            // The store failed (disk full, say): the bytes are still good, retry.
            Err(e @ RegistryError::Store(_)) => Err(e),
            done => {
                self.end_session(id, &record.state).await;
                done
            }
        };
        drop(guard);
        result
    }

    /// The digest of an upload's bytes: from the hash kept with it, or, for
    /// another algorithm (or a hash not known), by reading them back.
    async fn upload_digest(
        &self,
        id: &str,
        record: &UploadRecord,
        alg: Algorithm,
    ) -> Result<Digest> {
        if let Some(h) = record.hash.as_deref().and_then(Hasher::resume)
            && h.algorithm() == alg
        {
            return Ok(h.finish());
        }
        let Some(h) = self.hash_upload(id, &record.state, alg).await? else {
            return Err(RegistryError::DigestInvalid(format!(
                "this store verifies a chunked upload by its running {} hash only; push {} blobs in one request with the digest given at its start",
                record
                    .hash
                    .as_deref()
                    .and_then(|h| h.split_once(':'))
                    .map_or("sha256", |(alg, _)| alg),
                alg.as_str()
            )));
        };
        Ok(h.finish())
    }

    /// Hashes an upload's bytes read back from the store with `alg`; `None`
    /// where the store cannot read an unfinished upload back.
    async fn hash_upload(
        &self,
        id: &str,
        state: &UploadState,
        alg: Algorithm,
    ) -> Result<Option<Hasher>> {
        let Some(mut stream) = self.blobs.read_upload(id, state).await? else {
            return Ok(None);
        };
        let mut h = alg.hasher();
        while let Some(chunk) = stream.next().await {
            h.update(&chunk.map_err(StoreError::Io)?);
        }
        Ok(Some(h))
    }

    async fn commit(
        &self,
        repo: &str,
        id: &str,
        state: &UploadState,
        digest: &Digest,
    ) -> Result<()> {
        self.blobs.commit_upload(id, state, digest).await?;
        self.meta.link_blob(repo, digest, state.len).await?;
        Ok(())
    }

    /// Forgets a session and removes its bytes (committed bytes were moved away).
    /// The record goes first: a request arriving meanwhile then finds no session,
    /// rather than recreating in-memory state for one that is ending.
    async fn end_session(&self, id: &str, state: &UploadState) {
        if let Err(e) = self.meta.delete_upload(id).await {
            tracing::warn!(upload = id, error = %e, "could not remove upload record");
        }
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(id);
        }
        if let Err(e) = self.blobs.delete_upload(id, Some(state)).await {
            tracing::warn!(upload = id, error = %e, "could not remove upload bytes");
        }
    }

    /// Ends upload sessions (and removes stray upload files) whose bytes were last
    /// written more than `ttl_secs` ago. Returns how many were removed.
    pub async fn expire_uploads(&self, ttl_secs: u64) -> Result<usize> {
        let cutoff = now_unix().saturating_sub(ttl_secs);
        let files: HashMap<String, u64> = self.blobs.list_uploads().await?.into_iter().collect();
        let records: HashMap<String, UploadRecord> =
            self.meta.list_uploads().await?.into_iter().collect();
        let mut removed = 0;
        for (id, record) in &records {
            let last_write = files
                .get(id)
                .copied()
                .unwrap_or(0)
                .max(record.started_unix)
                .max(record.updated_unix);
            if last_write >= cutoff {
                continue;
            }
            // A session with a request in progress is not idle, however old its bytes.
            let live = self.sessions.lock().ok().and_then(|m| m.get(id).cloned());
            let _guard = match &live {
                Some(session) => match session.try_lock() {
                    Ok(guard) => Some(guard),
                    Err(_) => continue,
                },
                None => None,
            };
            // As it stands now, under the lock: an append may have ended since the listing.
            let Some(record) = self.meta.upload(id).await? else {
                continue;
            };
            if record.updated_unix >= cutoff {
                continue;
            }
            tracing::info!(upload = %id, repo = %record.repo, "expiring idle upload session");
            self.end_session(id, &record.state).await;
            removed += 1;
        }
        // In-memory state left by a request that raced a session's end: entries
        // whose record is gone now (not merely absent from the listing above,
        // which a session started since is) and which no request holds.
        let unlisted: Vec<_> = self
            .sessions
            .lock()
            .map(|m| {
                m.iter()
                    .filter(|(id, _)| !records.contains_key(*id))
                    .map(|(id, s)| (id.clone(), s.clone()))
                    .collect()
            })
            .unwrap_or_default();
        for (id, session) in unlisted {
            if self.meta.upload(&id).await?.is_some() {
                continue;
            }
            let Ok(_held) = session.try_lock() else {
                continue;
            };
            if let Ok(mut m) = self.sessions.lock()
                && m.get(&id).is_some_and(|s| Arc::ptr_eq(s, &session))
            {
                m.remove(&id);
            }
        }
        // Files without a session: monolithic uploads cut off by a crash.
        for (id, modified) in files {
            if modified < cutoff && self.meta.upload(&id).await?.is_none() {
                self.blobs.delete_upload(&id, None).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Cancels an upload session.
    pub async fn cancel_upload(&self, repo: &str, id: &str) -> Result<()> {
        let (_guard, record) = self.session(repo, id).await?;
        self.end_session(id, &record.state).await;
        Ok(())
    }

    /// A monolithic upload (`POST ?digest=` with the body): streamed into a private
    /// upload, verified, committed. Nothing is left behind on failure.
    pub async fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<()> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let state = self.blobs.begin_upload(&id).await?;
        let mut cleanup = RemoveUploadOnDrop {
            blobs: self.blobs.clone(),
            id: Some(id.clone()),
        };
        let record = UploadRecord {
            repo: repo.to_string(),
            started_unix: 0,
            owner: None,
            state,
            hash: Some(digest.algorithm().hasher().save()),
            updated_unix: 0,
            writer: self.instance.clone(),
        };
        let append = Append::Private { id: &id, record };
        let result = match self.append_locked(append, None, length, body).await {
            Ok((_, record)) => self.verify_and_commit(repo, &id, &record, digest).await,
            Err(e) => Err(e),
        };
        // Committed, the bytes are the blob now; failed, they go before we answer.
        cleanup.id = None;
        if result.is_err() {
            let _ = self.blobs.delete_upload(&id, None).await;
        }
        result
    }

    async fn verify_and_commit(
        &self,
        repo: &str,
        id: &str,
        record: &UploadRecord,
        digest: &Digest,
    ) -> Result<()> {
        let computed = self.upload_digest(id, record, digest.algorithm()).await?;
        if &computed != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual: computed,
            });
        }
        self.commit(repo, id, &record.state, digest).await
    }
}

/// What an append works on: a session's upload, locked and recorded, or the
/// private upload of one monolithic request, which has no record.
enum Append<'a> {
    Session {
        id: &'a str,
        guard: SessionGuard,
        record: UploadRecord,
    },
    Private {
        id: &'a str,
        record: UploadRecord,
    },
}

impl<'a> Append<'a> {
    fn parts(self) -> (&'a str, Option<SessionGuard>, UploadRecord) {
        match self {
            Append::Session { id, guard, record } => (id, Some(guard), record),
            Append::Private { id, record } => (id, None, record),
        }
    }
}
