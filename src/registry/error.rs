use crate::models::query::QueryError;
use crate::oci::{Digest, ManifestError};
use crate::store::StoreError;

/// Everything a registry use case can refuse or fail with. The HTTP edge maps each
/// variant to an OCI error code and status in one place.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("repository {0} is not known to the registry")]
    NameUnknown(String),
    #[error("blob {0} is not known to the repository")]
    BlobUnknown(Digest),
    #[error("upload session {0} is not known")]
    UploadUnknown(String),
    #[error("upload is invalid: {0}")]
    UploadInvalid(String),
    /// A chunk that does not continue the upload; carries the current size.
    #[error("chunk does not continue the upload at byte {size}: {reason}")]
    ChunkOutOfOrder { size: u64, reason: String },
    #[error("digest mismatch: the content has digest {actual}, not {expected}")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("digest is invalid: {0}")]
    DigestInvalid(String),
    #[error("manifest {0} is not known to the repository")]
    ManifestUnknown(String),
    #[error("manifest is invalid: {0}")]
    ManifestInvalid(#[from] ManifestError),
    #[error("manifest names {0}, which the repository does not hold")]
    ManifestBlobUnknown(Digest),
    #[error("manifest is larger than the limit of {0} bytes")]
    ManifestTooLarge(u64),
    #[error("size is invalid: {0}")]
    SizeInvalid(String),
    #[error("request body could not be read: {0}")]
    Body(std::io::Error),
    #[error("model {0} is not known to the registry")]
    ModelUnknown(String),
    #[error("{0} is not a model version")]
    ModelVersionUnknown(String),
    #[error(transparent)]
    Query(#[from] QueryError),
    #[error(transparent)]
    Store(#[from] StoreError),
}
