//! Reading committed blobs: buffers read on the blocking pool, one ahead of
//! the one being sent, from a small pool per stream.

use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;

use super::IO_CHUNK;
use crate::store::blob::ByteStream;

/// Streams the next `len` bytes of `file`, from where it stands, in buffers of
/// `IO_CHUNK` read on the blocking pool straight into the buffer handed on (one
/// copy out of the page cache; `tokio::fs::File` adds a second, through a buffer
/// of its own). The next buffer is read while the current one is sent. No thread
/// is held while the client is slow to take the bytes: a pull that stalls costs
/// memory for its few buffers, not a blocking thread.
pub(super) fn read_stream(file: std::fs::File, len: u64) -> ByteStream {
    let mut reader = Reader {
        file: Arc::new(file),
        left: len,
        next: None,
        pool: Arc::new(std::sync::Mutex::new(Vec::new())),
    };
    reader.prefetch();
    Box::pin(futures_util::stream::unfold(reader, |mut r| async move {
        let read = r.next.take()?.await;
        let buf = match read {
            Ok(Ok(buf)) => buf,
            Ok(Err(e)) => return Some((Err(e), r)), // `next` is empty: the stream ends
            Err(join) => return Some((Err(std::io::Error::other(join)), r)),
        };
        r.prefetch();
        let pooled = PooledBuf {
            buf,
            pool: r.pool.clone(),
        };
        Some((Ok(Bytes::from_owner(pooled)), r))
    }))
}

/// The state of one [`read_stream`].
struct Reader {
    file: Arc<std::fs::File>,
    left: u64,
    next: Option<tokio::task::JoinHandle<std::io::Result<Vec<u8>>>>,
    /// Buffers the response has finished with. Reusing them matters: memory
    /// that is new to the process costs a page fault per page (and, on a VM
    /// whose host backs memory lazily, far more), which was most of a pull's CPU.
    pool: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl Reader {
    /// Starts reading the next buffer, if any bytes are left.
    fn prefetch(&mut self) {
        if self.left == 0 {
            return;
        }
        let n = self.left.min(IO_CHUNK as u64);
        self.left -= n;
        let file = self.file.clone();
        let mut buf = self
            .pool
            .lock()
            .ok()
            .and_then(|mut p| p.pop())
            .unwrap_or_else(|| Vec::with_capacity(IO_CHUNK));
        self.next = Some(tokio::task::spawn_blocking(move || {
            buf.clear();
            // `read_to_end` fills spare capacity without zeroing it first.
            file.as_ref().take(n).read_to_end(&mut buf)?;
            if (buf.len() as u64) < n {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            Ok(buf)
        }));
    }
}

/// A buffer that goes back to its stream's pool once the response drops it.
struct PooledBuf {
    buf: Vec<u8>,
    pool: Arc<std::sync::Mutex<Vec<Vec<u8>>>>,
}

impl AsRef<[u8]> for PooledBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Drop for PooledBuf {
    fn drop(&mut self) {
        if let Ok(mut pool) = self.pool.lock() {
            pool.push(std::mem::take(&mut self.buf));
        }
    }
}
