//! Upload sessions (chunked and monolithic), verification, commit and mount.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;

use super::{Registry, RegistryError, Result};
use crate::oci::{Algorithm, Digest, Hasher};
use crate::store::{AppendError, BlobStore, ByteStream, UploadRecord};
use body::{BodyTooLong, cap_length, hash_alongside};

mod body;

/// Live state of one upload session.
pub(super) struct Session {
    /// sha256 of the bytes so far, or `None` when unknown (after a restart or a
    /// failed write): then the upload is re-read at commit.
    hasher: Option<Hasher>,
    /// Size the hasher has seen.
    hashed: u64,
}

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
            if let Err(e) = blobs.delete_upload(&id).await {
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
        self.blobs.create_upload(&id).await?;
        let record = UploadRecord {
            repo: repo.to_string(),
            started_unix: now_unix(),
            owner: Some(owner.to_string()),
        };
        let max = self.limits.max_uploads_per_identity;
        if let Err(e) = self.meta.create_upload(&id, &record, max).await {
            let _ = self.blobs.delete_upload(&id).await;
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
            let source_has_it = match from {
                Some(from) => self.meta.blob_link(from, d).await?.is_some(),
                None => self.meta.blob_linked_anywhere(d).await?,
            };
            if source_has_it && let Some(size) = self.blobs.stat(d).await? {
                self.meta.link_blob(repo, d, size).await?;
                return Ok(MountOutcome::Mounted(d.clone()));
            }
        }
        Ok(MountOutcome::Started {
            id: self.start_upload(repo, owner).await?,
        })
    }

    /// Finds a live session of `repo`, or `UploadUnknown`.
    async fn session(&self, repo: &str, id: &str) -> Result<Arc<tokio::sync::Mutex<Session>>> {
        let unknown = || RegistryError::UploadUnknown(id.to_string());
        if !valid_upload_id(id) {
            return Err(unknown());
        }
        match self.meta.upload(id).await? {
            Some(r) if r.repo == repo => {}
            _ => return Err(unknown()),
        }
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| RegistryError::UploadInvalid("session table poisoned".into()))?;
        let s = sessions.entry(id.to_string()).or_insert_with(|| {
            Arc::new(tokio::sync::Mutex::new(Session {
                hasher: Some(Algorithm::Sha256.hasher()),
                hashed: 0,
            }))
        });
        Ok(s.clone())
    }

    /// The number of bytes an upload holds.
    pub async fn upload_size(&self, repo: &str, id: &str) -> Result<u64> {
        let session = self.session(repo, id).await?;
        let _guard = session.lock().await;
        self.stored_len(id).await
    }

    async fn stored_len(&self, id: &str) -> Result<u64> {
        self.blobs
            .upload_len(id)
            .await?
            .ok_or_else(|| RegistryError::UploadUnknown(id.to_string()))
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
        let session = self.session(repo, id).await?;
        let s = session.lock_owned().await;
        let (_, size) = self.append_locked(s, id, range, length, body).await?;
        Ok(size)
    }

    /// Appends to the upload whose session `s` holds, and hands the session back
    /// with the new size. The bytes are written on a task of its own that keeps
    /// the session locked until the store has finished: if the request is
    /// dropped mid-way (the client went away), its writer may still have bytes
    /// queued, and another request must not commit the file under it meanwhile.
    async fn append_locked(
        &self,
        mut s: SessionGuard,
        id: &str,
        range: Option<ChunkRange>,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<(SessionGuard, u64)> {
        let size = self.stored_len(id).await?;
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
        if s.hashed != size {
            s.hasher = None; // bytes arrived that this process did not hash
        }
        // Framing bounds a body only when it is sized by Content-Length; a chunked
        // one declared by Content-Range is not, so whatever declared it, cap it
        // (one comparison per buffer).
        let body = match expected {
            Some(n) => cap_length(body, n),
            None => body,
        };
        let (body, hashed) = hash_alongside(body, s.hasher.take(), expected);
        let (blobs, upload) = (self.blobs.clone(), id.to_string());
        let append = tokio::spawn(async move {
            let result = blobs.append_upload(&upload, body).await;
            (s, result, hashed.await)
        });
        // A failed task is our fault, not the client's: a 500, not a 400.
        let (mut s, result, hashed) = append.await.map_err(|e| {
            RegistryError::Store(crate::store::StoreError::Io(std::io::Error::other(e)))
        })?;
        match result {
            Ok(n) => {
                // A hasher that missed some of the bytes is no use: re-read at commit.
                s.hasher = hashed.filter(|h| h.len == n).map(|h| h.hasher);
                s.hashed = size + n;
                if let Some(e) = expected.filter(|&e| e != n) {
                    return Err(RegistryError::SizeInvalid(format!(
                        "received {n} bytes where {e} were declared"
                    )));
                }
                Ok((s, size + n))
            }
            Err((_, failure)) => {
                s.hasher = None;
                Err(match failure {
                    AppendError::Body(e) => {
                        match e.get_ref().and_then(|e| e.downcast_ref::<BodyTooLong>()) {
                            Some(too_long) => RegistryError::SizeInvalid(too_long.to_string()),
                            None => RegistryError::Body(e),
                        }
                    }
                    // Ours, not the client's: a 500 it retries, never a 400 it gives up on.
                    AppendError::Store(e) => RegistryError::Store(crate::store::StoreError::Io(e)),
                })
            }
        }
    }

    /// Completes an upload: appends the optional last chunk, verifies the digest,
    /// commits the blob and links it into `repo`. A digest mismatch ends the session.
    pub async fn finish_upload(
        &self,
        repo: &str,
        id: &str,
        digest: &Digest,
        range: Option<ChunkRange>,
        length: Option<u64>,
        body: Option<ByteStream>,
    ) -> Result<()> {
        let session = self.session(repo, id).await?;
        let mut s = session.lock_owned().await;
        if let Some(body) = body {
            (s, _) = self.append_locked(s, id, range, length, body).await?;
        }
        let size = self.stored_len(id).await?;
        let computed = match (digest.algorithm(), s.hasher.take()) {
            (Algorithm::Sha256, Some(h)) if s.hashed == size => h.finish(),
            (alg, _) => self.rehash_upload(id, alg).await?,
        };
        let result = if &computed == digest {
            self.commit(repo, id, digest, size).await
        } else {
            Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual: computed,
            })
        };
        self.end_session(id).await;
        result
    }

    async fn rehash_upload(&self, id: &str, alg: Algorithm) -> Result<Digest> {
        let mut stream = self.blobs.read_upload(id).await?;
        let mut h = alg.hasher();
        while let Some(chunk) = stream.next().await {
            h.update(&chunk.map_err(crate::store::StoreError::Io)?);
        }
        Ok(h.finish())
    }

    async fn commit(&self, repo: &str, id: &str, digest: &Digest, size: u64) -> Result<()> {
        self.blobs.commit_upload(id, digest).await?;
        self.meta.link_blob(repo, digest, size).await?;
        Ok(())
    }

    /// Forgets a session and removes its bytes (committed bytes were moved away).
    /// The record goes first: a request arriving meanwhile then finds no session,
    /// rather than recreating in-memory state for one that is ending.
    async fn end_session(&self, id: &str) {
        if let Err(e) = self.meta.delete_upload(id).await {
            tracing::warn!(upload = id, error = %e, "could not remove upload record");
        }
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(id);
        }
        if let Err(e) = self.blobs.delete_upload(id).await {
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
            let last_write = files.get(id).copied().unwrap_or(record.started_unix);
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
            tracing::info!(upload = %id, repo = %record.repo, "expiring idle upload session");
            self.end_session(id).await;
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
                self.blobs.delete_upload(&id).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Cancels an upload session.
    pub async fn cancel_upload(&self, repo: &str, id: &str) -> Result<()> {
        let session = self.session(repo, id).await?;
        let _guard = session.lock().await;
        self.end_session(id).await;
        Ok(())
    }

    /// A monolithic upload (`POST ?digest=` with the body): streamed into a private
    /// upload file, verified, committed. Nothing is left behind on failure.
    pub async fn put_blob(
        &self,
        repo: &str,
        digest: &Digest,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<()> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.blobs.create_upload(&id).await?;
        let mut cleanup = RemoveUploadOnDrop {
            blobs: self.blobs.clone(),
            id: Some(id.clone()),
        };
        let result = self.put_blob_into(repo, &id, digest, length, body).await;
        // Committed, the bytes are the blob now; failed, they go before we answer.
        cleanup.id = None;
        if result.is_err() {
            let _ = self.blobs.delete_upload(&id).await;
        }
        result
    }

    async fn put_blob_into(
        &self,
        repo: &str,
        id: &str,
        digest: &Digest,
        length: Option<u64>,
        body: ByteStream,
    ) -> Result<()> {
        let s = Arc::new(tokio::sync::Mutex::new(Session {
            hasher: Some(digest.algorithm().hasher()),
            hashed: 0,
        }));
        let (mut s, size) = self
            .append_locked(s.lock_owned().await, id, None, length, body)
            .await?;
        let computed = match s.hasher.take() {
            Some(h) if s.hashed == size => h.finish(),
            _ => self.rehash_upload(id, digest.algorithm()).await?,
        };
        if &computed != digest {
            return Err(RegistryError::DigestMismatch {
                expected: digest.clone(),
                actual: computed,
            });
        }
        self.commit(repo, id, digest, size).await
    }
}
