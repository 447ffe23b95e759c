//! Reading and deleting blobs in a repository.

use super::{Registry, RegistryError, Result};
use crate::oci::Digest;
use crate::store::{BlobReader, ByteRange};

impl Registry {
    /// Size of a blob linked into `repo`, whose stored copy has that size
    /// (a `HEAD`: it stats the copy).
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<u64> {
        let size = self.linked_size(repo, digest).await?;
        self.check_stored_size(digest, size).await?;
        Ok(size)
    }

    /// The size a blob linked into `repo` was pushed with, from its link alone
    /// (a `GET` checks the copy as it opens it, in [`Registry::read_blob`]).
    pub async fn linked_size(&self, repo: &str, digest: &Digest) -> Result<u64> {
        match self.meta.blob_link(repo, digest).await? {
            Some(size) => Ok(size),
            None => Err(RegistryError::BlobUnknown(digest.clone())),
        }
    }

    /// Opens a blob of `repo` pushed with `recorded` bytes (its
    /// [`Registry::linked_size`]), optionally a range of it (already checked
    /// against that size). A stored copy of another size is never served: it
    /// is set aside.
    pub async fn read_blob(
        &self,
        digest: &Digest,
        recorded: u64,
        range: Option<ByteRange>,
    ) -> Result<BlobReader> {
        let reader = self.blobs.read(digest, range).await?;
        self.verify_stored_size(digest, reader.as_ref().map(|r| r.size), recorded)
            .await?;
        reader.ok_or_else(|| RegistryError::BlobUnknown(digest.clone()))
    }

    /// Where the client may fetch a blob straight from the store (a presigned
    /// URL), when the store is set to send it there.
    pub async fn blob_download_url(&self, digest: &Digest) -> Result<Option<String>> {
        let url = self.blobs.download_url(digest).await?;
        if url.is_some() {
            self.redirects.inc();
        }
        Ok(url)
    }

    /// Unlinks a blob from `repo`. The bytes stay until garbage collection finds no
    /// repository linking them: deleting here would race with a concurrent push.
    pub async fn delete_blob(&self, repo: &str, digest: &Digest) -> Result<()> {
        if self.meta.unlink_blob(repo, digest).await? {
            Ok(())
        } else {
            Err(RegistryError::BlobUnknown(digest.clone()))
        }
    }
}
