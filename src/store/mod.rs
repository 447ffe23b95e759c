//! Storage: the bytes plane (`BlobStore`) and the metadata plane (`MetaStore`).
//! Nothing here knows about HTTP.

mod append;
pub mod audit;
pub mod blob;
pub mod fs;
pub mod meta;
pub mod model;
pub mod redb;
pub mod review;
pub mod robots;
#[cfg(feature = "s3")]
pub mod s3;
#[cfg(test)]
mod suite;
pub mod tags;
mod writeback;

pub use append::UploadIo;
pub use audit::{Action, Actor, AuditRecord, AuditStore, Change};
pub use blob::{AppendError, BlobPages, BlobReader, BlobStore, ByteRange, ByteStream, UploadState};
pub use meta::{
    ManifestPut, ManifestRecord, ManifestStored, MetaStore, Page, Required, UploadRecord,
};
pub use model::{ModelFilter, ModelPage, ModelRecord, ModelSummary};
pub use review::{Approval, ReviewStore};
pub use robots::{Robot, RobotStore};
pub use tags::{
    DenyReason, Expect, HistoryEntry, MoveKind, TagDenial, TagMove, TagMoved, TagPolicy, TagRule,
    TagState, TagStore,
};

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
    /// Stored bytes that do not hash to the digest they are kept under.
    #[error("the stored copy of {digest} failed verification: {detail}")]
    Rotten {
        digest: crate::oci::Digest,
        detail: String,
    },
    #[error("{0} is not in the repository")]
    ReferenceMissing(crate::oci::Digest),
    /// The policy refused a tag move.
    #[error("the policy does not allow this change of tag {}", .0.tag)]
    TagDenied(Box<TagDenial>),
    /// A tag move's expectation did not hold: the tag points elsewhere now.
    #[error("tag {tag} has moved (it now points at {})", current.as_ref().map_or("nothing".to_string(), |d| d.to_string()))]
    TagStale {
        tag: String,
        current: Option<crate::oci::Digest>,
    },
    /// An owner has as many upload sessions open as it may.
    #[error("{owner} has {max} upload sessions open, the most one may; finish or cancel some")]
    TooManyUploads { owner: String, max: usize },
    /// An approval a promotion was to use is gone or already used.
    #[error("the approval by {0} is no longer available")]
    ApprovalGone(String),
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
