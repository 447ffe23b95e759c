//! The metadata plane: repositories, blob links, manifests, tags, referrers, uploads.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreResult;
use super::audit::{Actor, AuditStore};
use super::model::{ModelFilter, ModelPage, ModelRecord};
use super::review::ReviewStore;
use super::tags::{TagMoved, TagPolicy, TagStore};
use crate::oci::{Descriptor, Digest};

/// What is recorded for a manifest stored in a repository. The bytes themselves
/// live in the `BlobStore` under `digest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRecord {
    pub digest: Digest,
    pub media_type: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Digest>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Blobs and child manifests this manifest names (for garbage collection).
    #[serde(default)]
    pub references: Vec<Digest>,
    /// When it was first pushed into the repository (unix ms; 0 for records
    /// older than this field): retention keeps the newest untagged ones.
    #[serde(default)]
    pub pushed_ms: i64,
}

impl ManifestRecord {
    /// The descriptor the referrers API reports for this manifest.
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            artifact_type: self.artifact_type.clone(),
            annotations: self.annotations.clone(),
        }
    }
}

/// An upload session: which repository it belongs to, when it began, and where
/// it stands (its bytes in the store and the running hash over them), rewritten
/// after every append so that a session outlives the process that began it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadRecord {
    pub repo: String,
    pub started_unix: u64,
    /// Who opened it (a user, a robot, or `anonymous@ADDRESS`): sessions are
    /// capped per owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// The bytes appended, as the store tracks them.
    #[serde(default)]
    pub state: super::UploadState,
    /// The hash over those bytes (`Hasher::save`), or `None` when it is not
    /// known and they must be read back to be verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// When bytes were last appended (unix seconds); idle sessions expire.
    #[serde(default)]
    pub updated_unix: u64,
    /// The registry process that wrote this record last: another one trusts
    /// `hash` only if the store says the bytes are durable (`state.synced`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub writer: String,
}

/// One page of a sorted listing and whether more follow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub items: Vec<String>,
    pub more: bool,
}

/// A manifest to store: its record, the tag to point at it, its model-index
/// record, what it needs in the repository, and who pushed it.
#[derive(Debug, Clone, Copy)]
pub struct ManifestPut<'a> {
    pub repo: &'a str,
    pub record: &'a ManifestRecord,
    pub tag: Option<&'a str>,
    pub model: Option<&'a ModelRecord>,
    pub required: Required<'a>,
    pub actor: &'a Actor,
}

/// What a manifest push changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ManifestStored {
    /// The manifest was not in the repository before.
    pub new: bool,
    /// The tag move, when a tag was given.
    pub tag: Option<TagMoved>,
}

/// Metadata storage. Every method is one transaction; the write methods that
/// change several tables do so atomically, with their audit records.
#[async_trait]
pub trait MetaStore: TagStore + AuditStore + ReviewStore + super::robots::RobotStore {
    /// Links a blob into a repository (creating the repository if new).
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> StoreResult<()>;
    /// The size of a blob if it is linked into the repository.
    async fn blob_link(&self, repo: &str, digest: &Digest) -> StoreResult<Option<u64>>;
    /// Unlinks a blob from a repository; false if it was not linked.
    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> StoreResult<bool>;
    /// Whether any repository links the blob (so its bytes must stay).
    async fn blob_linked_anywhere(&self, digest: &Digest) -> StoreResult<bool>;

    /// Stores a manifest record, optionally tags it (a tag move of kind push,
    /// checked against `policy`), indexes it as a referrer of its subject and,
    /// given a `model`, as a model version, and records the push: one
    /// transaction. A version already indexed keeps its first record (a re-push
    /// does not change it). `required` is checked in that same transaction, so
    /// that a concurrent delete cannot leave the manifest naming what is gone: a
    /// missing one is `StoreError::ReferenceMissing` and nothing is written.
    async fn put_manifest(
        &self,
        put: ManifestPut<'_>,
        policy: Arc<dyn TagPolicy>,
    ) -> StoreResult<ManifestStored>;
    async fn manifest(&self, repo: &str, digest: &Digest) -> StoreResult<Option<ManifestRecord>>;
    /// Deletes a manifest with the tags that point at it (tag moves of kind
    /// cascade: refused, and nothing deleted, if the policy guards one), its
    /// referrer entry, its model-index entry, labels and approvals, and records it.
    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        actor: &Actor,
        policy: Arc<dyn TagPolicy>,
    ) -> StoreResult<Option<ManifestRecord>>;
    /// Whether any repository still holds a manifest with this digest.
    async fn manifest_anywhere(&self, digest: &Digest) -> StoreResult<bool>;

    /// Tags of `repo` grouped by the digest they point at.
    async fn tags_by_digest(&self, repo: &str) -> StoreResult<BTreeMap<Digest, Vec<String>>>;

    async fn resolve_tag(&self, repo: &str, tag: &str) -> StoreResult<Option<Digest>>;
    /// Tags in lexical order after `last`, at most `limit`.
    async fn list_tags(&self, repo: &str, last: Option<&str>, limit: usize) -> StoreResult<Page>;

    async fn repo_exists(&self, repo: &str) -> StoreResult<bool>;
    /// Repositories in lexical order after `last`, at most `limit`.
    async fn list_repos(&self, last: Option<&str>, limit: usize) -> StoreResult<Page>;

    /// Links `digest` into `repo` if `from` (or, without it, any repository)
    /// links it, in one transaction; the size, or `None` if no source has it.
    async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> StoreResult<Option<u64>>;

    /// Deletes a manifest that no tag points at (checked as it is deleted).
    async fn delete_untagged_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        actor: &Actor,
    ) -> StoreResult<Option<ManifestRecord>>;

    /// Every digest a tag of `repo` points at, or pointed at since `since_ms`.
    async fn held_since(&self, repo: &str, since_ms: i64) -> StoreResult<BTreeSet<Digest>>;

    /// Unlinks each blob of `digests` from every repository, unless it is a
    /// manifest somewhere or a link of it was made or used at `cutoff_ms` or
    /// later; one transaction, rolled back unless `apply` (a dry run). Those
    /// linked nowhere now (or that would be).
    async fn sweep_blob_links(
        &self,
        digests: Vec<Digest>,
        cutoff_ms: i64,
        apply: bool,
    ) -> StoreResult<Vec<Digest>>;

    /// Removes a repository that holds nothing from the catalog.
    async fn drop_repo_if_empty(&self, repo: &str) -> StoreResult<bool>;

    /// A repository's manifests in digest order after `after`, at most `limit`.
    async fn manifests_page(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> StoreResult<Vec<ManifestRecord>>;

    /// A repository's blob links (digest, size) in digest order after `after`,
    /// at most `limit`.
    async fn blob_links_page(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> StoreResult<Vec<(Digest, u64)>>;

    /// Descriptors of the manifests in `repo` whose subject is `subject`, in digest
    /// order after `after`, only those of `artifact_type` if one is given: at most
    /// `limit`, and whether more remain. A page costs what it holds, not what the
    /// subject has.
    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        after: Option<&str>,
        artifact_type: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<Descriptor>, bool)>;

    /// The indexed model version `digest` of `repo`.
    async fn model_version(&self, repo: &str, digest: &Digest) -> StoreResult<Option<ModelRecord>>;
    /// Every indexed model version of `repo`, in digest order.
    async fn model_versions(&self, repo: &str) -> StoreResult<Vec<ModelRecord>>;
    /// Models (repositories with indexed versions) in name order after `after`,
    /// at most `limit` of those `filter` accepts.
    async fn list_models(
        &self,
        after: Option<&str>,
        limit: usize,
        filter: &ModelFilter,
    ) -> StoreResult<ModelPage>;

    /// Records an upload session; `StoreError::TooManyUploads` if its owner
    /// already has `max_per_owner` open.
    async fn create_upload(
        &self,
        id: &str,
        record: &UploadRecord,
        max_per_owner: usize,
    ) -> StoreResult<()>;
    async fn upload(&self, id: &str) -> StoreResult<Option<UploadRecord>>;
    /// Rewrites a session's record after an append; false if the session is
    /// gone (ended meanwhile), in which case nothing is written.
    async fn update_upload(&self, id: &str, record: &UploadRecord) -> StoreResult<bool>;
    async fn delete_upload(&self, id: &str) -> StoreResult<()>;
    async fn list_uploads(&self) -> StoreResult<Vec<(String, UploadRecord)>>;
}

/// What a manifest needs in its repository when it is stored: linked blobs (an
/// image's config and layers) and manifests (an index's children).
#[derive(Debug, Clone, Copy)]
pub struct Required<'a> {
    pub blobs: &'a [Digest],
    pub manifests: &'a [Digest],
}

impl Required<'_> {
    pub const NONE: Required<'static> = Required {
        blobs: &[],
        manifests: &[],
    };
}
