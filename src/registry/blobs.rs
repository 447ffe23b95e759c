//! Reading and deleting blobs in a repository.

use super::{Registry, RegistryError, Result};
use crate::oci::Digest;
use crate::store::{BlobReader, ByteRange};

impl Registry {
    /// Size of a blob linked into `repo`, whose stored copy has that size.
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<u64> {
        let size = self.linked_size(repo, digest).await?;
        self.check_stored_size(digest, size).await?;
        Ok(size)
    }

    async fn linked_size(&self, repo: &str, digest: &Digest) -> Result<u64> {
        match self.meta.blob_link(repo, digest).await? {
            Some(size) => Ok(size),
            None => Err(RegistryError::BlobUnknown(digest.clone())),
        }
    }

    /// Opens a blob linked into `repo`, optionally a range of it (already checked
    /// against `blob_size`). A stored copy of another size than was pushed is
    /// never served: it is set aside.
    pub async fn read_blob(
        &self,
        repo: &str,
        digest: &Digest,
        range: Option<ByteRange>,
    ) -> Result<BlobReader> {
        let recorded = self.linked_size(repo, digest).await?;
        match self.blobs.read(digest, range).await? {
            Some(r) if r.size == recorded => Ok(r),
            Some(r) => {
                let detail = format!("{} bytes stored where {recorded} were pushed", r.size);
                Err(self.set_aside(digest, detail, false).await)
            }
            None => {
                tracing::error!(%digest, repo, "blob is linked but its bytes are missing");
                Err(RegistryError::BlobUnknown(digest.clone()))
            }
        }
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
