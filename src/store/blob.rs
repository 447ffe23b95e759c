//! The bytes plane: content-addressed blobs and the upload files that become them.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;

use super::StoreResult;
use crate::oci::Digest;

/// A stream of body bytes, as read from or written to a store.
pub type ByteStream = Pin<Box<dyn Stream<Item = std::io::Result<Bytes>> + Send + 'static>>;

/// Why an append ended early: the body's side or the store's, which callers
/// answer differently (the client sent something wrong or went away, against a
/// server fault the client should retry).
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    /// The incoming stream failed: cut off, stalled, longer than declared.
    #[error("request body could not be read: {0}")]
    Body(std::io::Error),
    /// Writing what arrived failed: disk full, I/O error.
    #[error("upload could not be written: {0}")]
    Store(std::io::Error),
}

/// An inclusive byte range `[start, end]` already checked against the blob size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteRange {
    pub start: u64,
    pub end: u64,
}

impl ByteRange {
    pub fn len(&self) -> u64 {
        self.end - self.start + 1
    }

    pub fn is_empty(&self) -> bool {
        false
    }
}

/// An open blob: its total size and a stream of the requested bytes.
pub struct BlobReader {
    pub size: u64,
    pub stream: ByteStream,
}

/// Where blob bytes live. Implementations: the local filesystem (default); S3 later.
///
/// Uploads are append-only files named by an upload id. The registry hashes the
/// bytes as they pass; the store only writes them and, on commit, makes the
/// finished upload durable under its digest (a crash leaves no blob or a whole one).
#[async_trait]
pub trait BlobStore: Send + Sync + 'static {
    /// Size of a committed blob, if present.
    async fn stat(&self, digest: &Digest) -> StoreResult<Option<u64>>;

    /// Streams a committed blob, or the given range of it.
    async fn read(
        &self,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> StoreResult<Option<BlobReader>>;

    /// Reads a whole small blob (manifests) into memory, refusing more than `limit` bytes.
    async fn read_all(&self, digest: &Digest, limit: u64) -> StoreResult<Option<Bytes>>;

    /// Stores a small, already-verified blob (manifests) durably.
    async fn write_all(&self, digest: &Digest, bytes: Bytes) -> StoreResult<()>;

    /// Removes a committed blob; false if it was not there.
    async fn delete(&self, digest: &Digest) -> StoreResult<bool>;

    /// Creates an empty upload file.
    async fn create_upload(&self, id: &str) -> StoreResult<()>;

    /// Current length of an upload, or `None` if it does not exist.
    async fn upload_len(&self, id: &str) -> StoreResult<Option<u64>>;

    /// Appends a stream to an upload, returning the number of bytes appended. On
    /// a failure the bytes received so far stay appended (the client resumes
    /// from the reported offset) and the error is returned with that count.
    async fn append_upload(&self, id: &str, body: ByteStream) -> Result<u64, (u64, AppendError)>;

    /// Streams an upload's bytes from the start (to re-hash after a restart).
    async fn read_upload(&self, id: &str) -> StoreResult<ByteStream>;

    /// Makes a finished upload the blob `digest`. If the blob already exists (a
    /// concurrent push of the same content) the upload is dropped and that is a success.
    async fn commit_upload(&self, id: &str, digest: &Digest) -> StoreResult<()>;

    /// Removes an upload's bytes.
    async fn delete_upload(&self, id: &str) -> StoreResult<()>;

    /// Every upload with the time (unix seconds) its bytes were last written.
    async fn list_uploads(&self) -> StoreResult<Vec<(String, u64)>>;
}
