//! Storage: the bytes plane (`BlobStore`) and the metadata plane (`MetaStore`).
//! Nothing here knows about HTTP.

mod append;
pub mod blob;
pub mod fs;
pub mod meta;
pub mod model;
pub mod redb;
#[cfg(test)]
mod suite;
mod writeback;

pub use blob::{AppendError, BlobReader, BlobStore, ByteRange, ByteStream};
pub use meta::{ManifestRecord, MetaStore, Page, Required, UploadRecord};
pub use model::{ModelFilter, ModelPage, ModelRecord, ModelSummary};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("metadata store failed: {0}")]
    Meta(String),
    #[error("upload {0} not found")]
    UploadNotFound(String),
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
    #[error("{0} is not in the repository")]
    ReferenceMissing(crate::oci::Digest),
}

impl From<::redb::Error> for StoreError {
    fn from(e: ::redb::Error) -> Self {
        StoreError::Meta(e.to_string())
    }
}

macro_rules! redb_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self { StoreError::Meta(e.to_string()) }
        }
    )*};
}
redb_errors!(
    ::redb::DatabaseError,
    ::redb::TransactionError,
    ::redb::TableError,
    ::redb::StorageError,
    ::redb::CommitError
);

pub type StoreResult<T> = Result<T, StoreError>;
