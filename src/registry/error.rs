use crate::governance::gates::GateReport;
use crate::models::query::QueryError;
use crate::oci::{Digest, ManifestError};
use crate::store::{DenyReason, MoveKind, StoreError, TagDenial};

/// Everything a registry use case can refuse or fail with. The HTTP edge maps each
/// variant to an OCI error code and status in one place.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(
        "{owner} has {max} upload sessions open, the most one may: finish or cancel some (or wait for idle ones to expire)"
    )]
    TooManyUploads { owner: String, max: usize },
    #[error("a robot named {0:?} exists or existed; robot names are not reused")]
    RobotExists(String),
    #[error("no live robot is named {0:?}")]
    RobotUnknown(String),
    #[error("repository {0} is not known to the registry")]
    NameUnknown(String),
    #[error("blob {0} is not known to the repository")]
    BlobUnknown(Digest),
    /// A stored copy failed verification and was set aside: unknown until
    /// its content is pushed again.
    #[error(
        "the stored copy of {digest} failed verification ({detail}) and was set aside: push it again"
    )]
    StoredCopyBad {
        digest: Digest,
        detail: String,
        manifest: bool,
    },
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
    #[error("alias {0} is not set")]
    AliasUnknown(String),
    #[error("{}", denial_message(.0))]
    TagDenied(Box<TagDenial>),
    /// A precondition (`If-Match`, `If-None-Match: *`) did not hold.
    #[error("alias {tag} does not point where expected: it points at {}", current.as_ref().map_or("nothing".to_string(), |d| d.to_string()))]
    TagStale {
        tag: String,
        current: Option<Digest>,
    },
    #[error("{0}")]
    GateFailed(Box<GateReport>),
    /// Something changed while gates were evaluated, more often than retried.
    #[error("{0}; try again")]
    Conflict(String),
    #[error("{0}")]
    Invalid(String),
    #[error("policy is invalid: {0}")]
    PolicyInvalid(String),
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for RegistryError {
    /// Refusals the store makes inside a transaction get their own variants.
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::TagDenied(d) => RegistryError::TagDenied(d),
            StoreError::TagStale { tag, current } => RegistryError::TagStale { tag, current },
            StoreError::TooManyUploads { owner, max } => {
                RegistryError::TooManyUploads { owner, max }
            }
            StoreError::ApprovalGone(who) => RegistryError::Conflict(format!(
                "the approval by {who} was used or replaced while the promotion was evaluated"
            )),
            e => RegistryError::Store(e),
        }
    }
}

/// What a refused tag change says: the rule, and what to do instead.
fn denial_message(d: &TagDenial) -> String {
    let TagDenial {
        repo, tag, source, ..
    } = d;
    let promote = format!(
        "`berth promote {repo} <version> --to {tag}` (PUT /api/v1/models/{repo}/aliases/{tag})"
    );
    match (&d.reason, d.kind) {
        (DenyReason::Protected, MoveKind::Cascade) => format!(
            "the manifest is held by protected alias {tag} ({source}): move the alias first with {promote} or `berth rollback {repo} {tag}`"
        ),
        (DenyReason::Protected, MoveKind::Delete) => format!(
            "tag {tag} of {repo} is a protected alias ({source}): it is removed only through the promotion API (DELETE /api/v1/models/{repo}/aliases/{tag})"
        ),
        (DenyReason::Protected, _) => format!(
            "tag {tag} of {repo} is a protected alias ({source}): it moves only by promotion: {promote}"
        ),
        (DenyReason::Immutable, MoveKind::Cascade) => format!(
            "the manifest is held by immutable tag {tag} ({source}): a version an immutable tag names is never deleted"
        ),
        (DenyReason::Immutable, _) => format!(
            "tag {tag} of {repo} is immutable ({source}): once set it is never moved or deleted; push the new version under a new tag"
        ),
        (DenyReason::Stage { requires }, _) => format!(
            "alias {tag} of {repo} takes only versions that were at {requires} before ({source}): first `berth promote {repo} <version> --to {requires}`"
        ),
    }
}
