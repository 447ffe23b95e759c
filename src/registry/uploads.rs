//! Upload sessions (chunked and monolithic), verification, commit and mount.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use super::{Registry, RegistryError, Result};
use crate::oci::{Algorithm, Digest, Hasher};
use crate::store::{AppendError, BlobStore, ByteStream, UploadRecord};

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

/// Bodies at least this large (or of unknown length) are hashed on a thread of
/// their own; smaller ones inline, where a thread hand-off would cost more than it saves.
const BACKGROUND_HASH_MIN: u64 = 1 << 20;
/// Received buffers go to the hashing thread in batches of at least this many
/// bytes. One hand-off per buffer (tens of KiB off a socket) woke the thread and
/// the receiving task tens of thousands of times per GiB; a batch wakes each once.
const HASH_BATCH: usize = 1 << 20;
/// Most buffers in one batch, so that a body sent in tiny chunks cannot make a
/// batch's bookkeeping outgrow its bytes.
const HASH_BATCH_BUFFERS: usize = 256;
/// Batches queued for the hashing thread.
const HASH_QUEUE: usize = 4;

/// Hashing threads that may run at once; uploads beyond them hash on their own
/// task. The threads are plain OS threads, not tokio's blocking pool: a hasher
/// waits for bytes that only flow once the store has opened the upload on that
/// pool, so with the pool full of hashers no upload could ever start writing.
fn hashing_threads() -> &'static Arc<tokio::sync::Semaphore> {
    static PERMITS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(tokio::sync::Semaphore::new(2 * cores.max(2)))
    })
}

/// A hasher with the number of bytes it has been fed.
struct Hashed {
    hasher: Hasher,
    len: u64,
}

impl Hashed {
    fn update(&mut self, bytes: &[u8]) {
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
    }
}

/// Feeds `body` through `hasher` as it streams on. Large bodies are hashed on a
/// thread of their own, so that one core hashes while others receive and write:
/// the hash is the costliest step of a push, and on the receiving task it would
/// make the push as slow as receiving and hashing added up. The future yields
/// the hasher and the bytes it saw once the stream has ended (or been dropped).
fn hash_alongside(
    body: ByteStream,
    hasher: Option<Hasher>,
    expected_len: Option<u64>,
) -> (ByteStream, BoxFuture<'static, Option<Hashed>>) {
    let Some(hasher) = hasher else {
        return (body, futures_util::future::ready(None).boxed());
    };
    let mut hashed = Hashed { hasher, len: 0 };
    let permit = match expected_len {
        Some(n) if n < BACKGROUND_HASH_MIN => None,
        _ => hashing_threads().clone().try_acquire_owned().ok(),
    };
    let Some(permit) = permit else {
        return hash_inline(body, hashed);
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Bytes>>(HASH_QUEUE);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new()
        .name("berth-hash".into())
        .spawn(move || {
            let _permit = permit;
            while let Some(batch) = rx.blocking_recv() {
                for bytes in &batch {
                    hashed.update(bytes);
                }
            }
            let _ = done_tx.send(hashed);
        });
    if thread.is_err() {
        // No thread: the hasher went with the closure; the upload is re-read at commit.
        return (body, futures_util::future::ready(None).boxed());
    }
    let batches = HashBatches {
        tx: Some(tx),
        batch: Vec::new(),
        batch_len: 0,
    };
    let body = futures_util::stream::unfold((body, batches), |(mut body, mut b)| async move {
        let item = body.next().await;
        match &item {
            Some(Ok(bytes)) => b.add(bytes.clone()).await,
            // The end, or an error (after which the hash is not used): hand over the rest.
            _ => b.flush().await,
        }
        item.map(|item| (item, (body, b)))
    });
    (Box::pin(body), async move { done_rx.await.ok() }.boxed())
}

/// Hashes `body` on the task that polls it.
fn hash_inline(
    body: ByteStream,
    hashed: Hashed,
) -> (ByteStream, BoxFuture<'static, Option<Hashed>>) {
    let shared = Arc::new(std::sync::Mutex::new(Some(hashed)));
    let h = shared.clone();
    let body = body.map(move |chunk| {
        if let (Ok(bytes), Ok(mut guard)) = (&chunk, h.lock())
            && let Some(h) = guard.as_mut()
        {
            h.update(bytes);
        }
        chunk
    });
    // Awaited after the store has consumed (and dropped) the body.
    let hashed = async move {
        Arc::try_unwrap(shared)
            .ok()
            .and_then(|m| m.into_inner().ok())
            .flatten()
    };
    (Box::pin(body), hashed.boxed())
}

/// The sending side of the hashing thread's queue, collecting buffers into batches.
struct HashBatches {
    /// `None` once the thread is gone (its hasher is then lost, and the count tells).
    tx: Option<tokio::sync::mpsc::Sender<Vec<Bytes>>>,
    batch: Vec<Bytes>,
    batch_len: usize,
}

impl HashBatches {
    async fn add(&mut self, bytes: Bytes) {
        self.batch_len += bytes.len();
        self.batch.push(bytes);
        if self.batch_len >= HASH_BATCH || self.batch.len() >= HASH_BATCH_BUFFERS {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        self.batch_len = 0;
        let batch = std::mem::take(&mut self.batch);
        if let Some(tx) = &self.tx
            && !batch.is_empty()
            && tx.send(batch).await.is_err()
        {
            self.tx = None;
        }
    }
}

/// Ends `body` with an error as soon as it carries more than `limit` bytes, so a
/// chunk longer than its `Content-Range` (a chunked body has no length of its
/// own) cannot write past what it declared. The excess is never passed on.
fn cap_length(body: ByteStream, limit: u64) -> ByteStream {
    let cap = body.scan((0u64, false), move |(seen, over), chunk| {
        if *over {
            return futures_util::future::ready(None);
        }
        let chunk = match chunk {
            Ok(bytes) if seen.saturating_add(bytes.len() as u64) > limit => {
                *over = true;
                Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    BodyTooLong(limit),
                ))
            }
            Ok(bytes) => {
                *seen += bytes.len() as u64;
                Ok(bytes)
            }
            Err(e) => Err(e),
        };
        futures_util::future::ready(Some(chunk))
    });
    Box::pin(cap)
}

/// The error [`cap_length`] ends a body with.
#[derive(Debug, thiserror::Error)]
#[error("the body is longer than the {0} bytes declared")]
struct BodyTooLong(u64);

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
    /// Opens an upload session in `repo` and returns its id.
    pub async fn start_upload(&self, repo: &str) -> Result<String> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        self.blobs.create_upload(&id).await?;
        let record = UploadRecord {
            repo: repo.to_string(),
            started_unix: now_unix(),
        };
        if let Err(e) = self.meta.create_upload(&id, &record).await {
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
            id: self.start_upload(repo).await?,
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Serialises the tests that depend on how many hashing threads are free.
    static PERMITS_IN_TEST: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

    fn stream_of(parts: Vec<Vec<u8>>) -> ByteStream {
        Box::pin(futures_util::stream::iter(
            parts.into_iter().map(|p| Ok(Bytes::from(p))),
        ))
    }

    async fn drain(mut s: ByteStream) -> (Vec<u8>, Option<std::io::Error>) {
        let mut out = Vec::new();
        while let Some(item) = s.next().await {
            match item {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn cap_length_passes_exactly_the_limit_and_never_a_byte_more() {
        let (out, err) = drain(cap_length(stream_of(vec![vec![1; 4], vec![2; 6]]), 10)).await;
        assert_eq!((out.len(), err.is_none()), (10, true));

        let s = stream_of(vec![vec![1; 4], vec![2; 7], vec![3; 1]]);
        let (out, err) = drain(cap_length(s, 10)).await;
        assert_eq!(
            out,
            vec![1; 4],
            "the chunk crossing the limit is not passed on"
        );
        let err = err.expect("an error past the limit");
        assert!(err.get_ref().is_some_and(|e| e.is::<BodyTooLong>()));
    }

    #[tokio::test]
    async fn hash_batches_hold_a_bounded_number_of_buffers() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1 << 12);
        let mut b = HashBatches {
            tx: Some(tx),
            batch: Vec::new(),
            batch_len: 0,
        };
        for _ in 0..1000 {
            b.add(Bytes::from_static(b"x")).await;
        }
        b.flush().await;
        drop(b);
        let mut sizes = Vec::new();
        while let Some(batch) = rx.recv().await {
            sizes.push(batch.len());
        }
        assert_eq!(sizes.iter().sum::<usize>(), 1000);
        assert!(sizes.iter().all(|&n| n <= HASH_BATCH_BUFFERS), "{sizes:?}");
    }

    /// With every hashing thread taken, a large body is hashed inline, and as well.
    #[tokio::test]
    async fn without_a_free_hashing_thread_the_body_is_hashed_inline() {
        let _serial = PERMITS_IN_TEST.lock().await;
        let all = hashing_threads().available_permits() as u32;
        let _taken = hashing_threads()
            .clone()
            .acquire_many_owned(all)
            .await
            .unwrap();
        let data = vec![9u8; 3 << 20];
        let parts = data.chunks(100_000).map(<[u8]>::to_vec).collect();
        let (body, hashed) =
            hash_alongside(stream_of(parts), Some(Algorithm::Sha256.hasher()), None);
        let (out, err) = drain(body).await;
        assert!(err.is_none() && out == data);
        let hashed = hashed.await.expect("hasher back");
        let mut want = Algorithm::Sha256.hasher();
        want.update(&data);
        assert_eq!(hashed.len, data.len() as u64);
        assert_eq!(hashed.hasher.finish(), want.finish());
    }

    /// Large bodies go to the hashing thread in batches; the digest and the count
    /// must be those of every byte, in order, whatever the buffer sizes.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn background_hash_sees_every_byte_in_order() {
        // Not while the test above holds every hashing thread: this one is about the thread.
        let _serial = PERMITS_IN_TEST.lock().await;
        let data: Vec<u8> = (0..5_000_000u32).map(|i| (i * 7 % 256) as u8).collect();
        let mut parts = Vec::new();
        let mut rest = data.as_slice();
        for n in [1usize, 70_000, 3 << 20, 13, 1 << 20].into_iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (a, b) = rest.split_at(n.min(rest.len()));
            parts.push(a.to_vec());
            rest = b;
        }
        let (body, hashed) =
            hash_alongside(stream_of(parts), Some(Algorithm::Sha256.hasher()), None);
        let (out, err) = drain(body).await;
        assert!(err.is_none());
        assert_eq!(out, data);
        let hashed = hashed.await.expect("hasher back");
        assert_eq!(hashed.len, data.len() as u64);
        let mut want = Algorithm::Sha256.hasher();
        want.update(&data);
        assert_eq!(hashed.hasher.finish(), want.finish());
    }
}
