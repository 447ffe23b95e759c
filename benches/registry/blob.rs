//! Synthetic blobs: streamed from a small in-memory pattern, never held whole.
//!
//! A blob of `size` bytes is `pattern` repeated over its first `size - 32` bytes,
//! followed by a 32-byte tail unique to the blob. The SHA-256 state over the
//! repeated prefix is computed once per size, so each unique blob's digest costs
//! one clone of that state plus 32 bytes: client-side hashing never shows up in
//! a measurement, and every push carries content the server has not seen.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};

const PATTERN_LEN: usize = 4 << 20;
const TAIL_LEN: u64 = 32;
/// Largest data frame handed to hyper (a zero-copy slice of the pattern).
const FRAME_LEN: usize = 1 << 20;

/// Precomputed prefix state for blobs of one size.
pub struct BlobSource {
    pattern: Bytes,
    size: u64,
    prefix: Sha256,
    /// Time spent hashing the prefix in this process (a sha2-crate ceiling figure).
    pub hash_time: Duration,
}

impl BlobSource {
    /// Hashes the prefix once; `size` must be at least 4 KiB.
    pub fn new(size: u64) -> BlobSource {
        assert!(size >= 4096, "blob size must be at least 4 KiB");
        let pattern = Bytes::from(make_pattern(PATTERN_LEN));
        let (start, cpu0) = (Instant::now(), thread_cpu_ns());
        let mut prefix = Sha256::new();
        let mut left = size - TAIL_LEN;
        while left > 0 {
            let n = left.min(PATTERN_LEN as u64) as usize;
            prefix.update(&pattern[..n]);
            left -= n as u64;
        }
        // Like `openssl speed`, divide by the CPU time this thread got (wall time if unknown).
        let hash_time = match (cpu0, thread_cpu_ns()) {
            (Some(a), Some(b)) if b > a => Duration::from_nanos(b - a),
            _ => start.elapsed(),
        };
        BlobSource {
            pattern,
            size,
            prefix,
            hash_time,
        }
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// A blob unique to `label`, with its digest.
    pub fn blob(&self, label: &str) -> Blob {
        let tail: [u8; 32] = Sha256::digest(label.as_bytes()).into();
        let mut h = self.prefix.clone();
        h.update(tail);
        let digest = format!("sha256:{}", hex::encode(h.finalize()));
        Blob {
            pattern: self.pattern.clone(),
            size: self.size,
            tail: Bytes::copy_from_slice(&tail),
            digest,
        }
    }
}

/// One blob's content (virtual) and digest.
#[derive(Clone)]
pub struct Blob {
    pattern: Bytes,
    pub size: u64,
    tail: Bytes,
    pub digest: String,
}

impl Blob {
    /// The next zero-copy slice starting at `pos`, not past `end`.
    fn chunk(&self, pos: u64, end: u64) -> Bytes {
        let prefix_len = self.size - TAIL_LEN;
        if pos >= prefix_len {
            let a = (pos - prefix_len) as usize;
            let b = (end - prefix_len) as usize;
            return self.tail.slice(a..b);
        }
        let off = (pos % PATTERN_LEN as u64) as usize;
        let max = (end.min(prefix_len) - pos) as usize;
        let n = max.min(PATTERN_LEN - off).min(FRAME_LEN);
        self.pattern.slice(off..off + n)
    }

    /// A request body streaming bytes `start..end` of the blob.
    pub fn body(&self, start: u64, end: u64) -> BlobBody {
        assert!(start <= end && end <= self.size);
        BlobBody {
            blob: self.clone(),
            pos: start,
            end,
        }
    }

    /// Writes the whole blob to a file (for the static-file ceiling).
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut f = std::io::BufWriter::with_capacity(FRAME_LEN, std::fs::File::create(path)?);
        let mut pos = 0;
        while pos < self.size {
            let c = self.chunk(pos, self.size);
            f.write_all(&c)?;
            pos += c.len() as u64;
        }
        f.flush()
    }
}

/// `http_body::Body` over a byte range of a [`Blob`], with an exact size hint.
pub struct BlobBody {
    blob: Blob,
    pos: u64,
    end: u64,
}

impl Body for BlobBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if self.pos >= self.end {
            return Poll::Ready(None);
        }
        let c = self.blob.chunk(self.pos, self.end);
        self.pos += c.len() as u64;
        Poll::Ready(Some(Ok(Frame::data(c))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.end - self.pos)
    }
}

/// On-CPU time of the calling thread (first field of /proc/thread-self/schedstat).
fn thread_cpu_ns() -> Option<u64> {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Incompressible bytes from a xorshift generator (deterministic).
fn make_pattern(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut v = Vec::with_capacity(len);
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.extend_from_slice(&x.to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Self-check run at startup: the streamed bytes hash to the precomputed digest.
pub fn self_check() {
    let src = BlobSource::new(PATTERN_LEN as u64 * 2 + 12345);
    let blob = src.blob("self-check");
    let mut h = Sha256::new();
    let mut pos = 0;
    while pos < blob.size {
        let c = blob.chunk(pos, blob.size);
        h.update(&c);
        pos += c.len() as u64;
    }
    assert_eq!(
        format!("sha256:{}", hex::encode(h.finalize())),
        blob.digest,
        "synthetic blob digest self-check"
    );
    // Range slices concatenate to the same content.
    let mut h = Sha256::new();
    let cut = 5_000_001;
    for (a, b) in [(0, cut), (cut, blob.size)] {
        let mut p = a;
        while p < b {
            let c = blob.chunk(p, b);
            h.update(&c);
            p += c.len() as u64;
        }
    }
    assert_eq!(
        format!("sha256:{}", hex::encode(h.finalize())),
        blob.digest,
        "synthetic blob range self-check"
    );
}
