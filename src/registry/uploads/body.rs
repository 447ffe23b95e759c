//! The bytes of an upload body on their way to the store: hashed alongside the
//! write (on a thread of their own for large bodies, in batches), and cut off at
//! the length a chunk declared.

use std::sync::Arc;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};

use crate::oci::Hasher;
use crate::store::ByteStream;

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
pub(super) fn hashing_threads() -> &'static Arc<tokio::sync::Semaphore> {
    static PERMITS: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Arc::new(tokio::sync::Semaphore::new(2 * cores.max(2)))
    })
}

/// A hasher with the number of bytes it has been fed.
pub(super) struct Hashed {
    pub(super) hasher: Hasher,
    pub(super) len: u64,
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
pub(super) fn hash_alongside(
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
pub(super) fn hash_inline(
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
pub(super) struct HashBatches {
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
pub(super) fn cap_length(body: ByteStream, limit: u64) -> ByteStream {
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
pub(super) struct BodyTooLong(u64);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oci::Algorithm;

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
