//! The bytes plane: content-addressed blobs and the upload files that become them.

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

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

/// Where an upload stands in its store: the bytes durably appended, and what
/// the store needs to go on from there (for S3, the multipart upload, its parts
/// and the staged tail). The registry keeps it with the upload record after
/// every append, so a session needs nothing from the process that began it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadState {
    /// Bytes appended, all of them durable where commits are.
    pub len: u64,
    /// The store's own continuation, opaque above it.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub store: String,
    /// Whether all `len` bytes are durable (would outlive a power cut), so that
    /// a hash saved over them holds after a restart. When not, another process
    /// that takes the session over hashes them again from the store.
    #[serde(default)]
    pub synced: bool,
}

/// Where blob bytes live. Implementations: the local filesystem (default) and
/// S3-compatible object storage.
///
/// An upload is a sequence of appends, each starting from the [`UploadState`]
/// the previous one returned. The registry hashes the bytes as they pass; the
/// store writes them and, on commit, makes the finished upload durable under its
/// digest (a crash leaves no blob or a whole one).
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

    /// Reads a whole small blob (manifests) into memory, refusing more than
    /// `limit` bytes, and checks it against its digest: bytes that do not match
    /// are `StoreError::Rotten`, never returned.
    async fn read_all(&self, digest: &Digest, limit: u64) -> StoreResult<Option<Bytes>>;

    /// Stores a small, already-verified blob (manifests) durably.
    async fn write_all(&self, digest: &Digest, bytes: Bytes) -> StoreResult<()>;

    /// Removes a committed blob; false if it was not there.
    async fn delete(&self, digest: &Digest) -> StoreResult<bool>;

    /// Sets a committed blob aside where it is no longer served but an operator
    /// can still look at it (its bytes failed verification); false if it was not
    /// there. A later commit of the same digest installs a fresh copy.
    async fn quarantine(&self, digest: &Digest) -> StoreResult<bool>;

    /// Deletes a committed blob unless it was committed at `untouched_since`
    /// or later (garbage collection, after its links were swept); the bytes
    /// freed, or `None` if it was kept or gone. Without `apply`, only says.
    async fn sweep(
        &self,
        digest: &Digest,
        untouched_since: std::time::SystemTime,
        apply: bool,
    ) -> StoreResult<Option<u64>>;

    /// Committed blobs in digest order after `after`, at most `limit`, with
    /// their sizes: what a scrub walks and a garbage collection sweeps.
    async fn list_blobs(
        &self,
        after: Option<&Digest>,
        limit: usize,
    ) -> StoreResult<Vec<(Digest, u64)>>;

    /// Where a client may fetch a committed blob itself (a presigned URL), if
    /// the store is set to send clients there; the registry then answers `307`.
    async fn download_url(&self, _digest: &Digest) -> StoreResult<Option<String>> {
        Ok(None)
    }

    /// Begins an empty upload.
    async fn begin_upload(&self, id: &str) -> StoreResult<UploadState>;

    /// Appends `body` after the `from.len` bytes of the upload, dropping whatever
    /// an append that was never recorded left past them, and returns the new
    /// state. `declared_len` is what the request declared, if it did (a hint for
    /// how to write). On a failure the error comes with the state of what was
    /// kept: every byte received, where the store could keep them all (a body cut
    /// off), else `from` (the client resumes from the offset it reports).
    async fn append_upload(
        &self,
        id: &str,
        from: &UploadState,
        declared_len: Option<u64>,
        body: ByteStream,
    ) -> Result<UploadState, (UploadState, AppendError)>;

    /// Streams an unfinished upload's bytes from the start, to hash them with
    /// another algorithm than the one kept; `None` where the store cannot read
    /// an upload back. A store may need to finish the upload to read it (S3
    /// completes its multipart upload): after this, only commit or delete it.
    async fn read_upload(&self, id: &str, state: &UploadState) -> StoreResult<Option<ByteStream>>;

    /// Makes a finished upload the blob `digest`, without the bytes passing
    /// through the caller. If the blob already exists (a concurrent push of the
    /// same content) the upload is dropped and that is a success.
    async fn commit_upload(
        &self,
        id: &str,
        state: &UploadState,
        digest: &Digest,
    ) -> StoreResult<()>;

    /// Removes an upload's bytes (with its state, exactly; without, whatever the
    /// store holds under the id). Removing an upload that is gone is a success.
    async fn delete_upload(&self, id: &str, state: Option<&UploadState>) -> StoreResult<()>;

    /// Every upload the store holds bytes for, with the time (unix seconds) they
    /// were last written: to find those no session owns.
    async fn list_uploads(&self) -> StoreResult<Vec<(String, u64)>>;
}

/// A small blob read whole (`read_all`), checked: no more than `limit` bytes,
/// and hashing to its digest, else `Corrupt` or `Rotten`.
pub(super) fn verified(digest: &Digest, bytes: Vec<u8>, limit: u64) -> StoreResult<Bytes> {
    if bytes.len() as u64 > limit {
        return Err(too_large(digest, limit));
    }
    let actual = Digest::of(digest.algorithm(), &bytes);
    if &actual != digest {
        return Err(super::StoreError::Rotten {
            digest: digest.clone(),
            detail: format!("its {} bytes hash to {actual}", bytes.len()),
        });
    }
    Ok(Bytes::from(bytes))
}

pub(super) fn too_large(digest: &Digest, limit: u64) -> super::StoreError {
    super::StoreError::Corrupt(format!("{digest} is larger than {limit} bytes"))
}

/// Pages through a store's committed blobs in digest order.
pub struct BlobPages<'a> {
    store: &'a dyn BlobStore,
    after: Option<Digest>,
    page: usize,
}

impl<'a> BlobPages<'a> {
    pub fn new(store: &'a dyn BlobStore, page: usize) -> Self {
        BlobPages {
            store,
            after: None,
            page,
        }
    }

    /// The next page, or `None` once every blob has been listed.
    pub async fn next(&mut self) -> StoreResult<Option<Vec<(Digest, u64)>>> {
        let page = self
            .store
            .list_blobs(self.after.as_ref(), self.page)
            .await?;
        match page.last() {
            Some((last, _)) => {
                self.after = Some(last.clone());
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }
}
