//! What is kept of a version besides its manifest: who pushed it, its labels
//! (mutable key-value pairs, like MLflow's version tags) and the approvals
//! recorded for promoting it to an alias.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreResult;
use super::audit::Actor;
use crate::oci::Digest;

/// One approval of a version for an alias.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Approval {
    pub alias: String,
    pub approver: Actor,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    pub time: String,
    /// The audit record that recorded it.
    pub seq: u64,
    /// The promotion (its audit sequence number) that used it, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_by: Option<u64>,
}

#[async_trait]
pub trait ReviewStore: Send + Sync + 'static {
    /// Who first pushed manifest `digest` to `repo`.
    async fn pusher(&self, repo: &str, digest: &Digest) -> StoreResult<Option<Actor>>;
    /// Records an approval (replacing the same approver's earlier one for the
    /// same alias) and its audit record; the manifest must be in the repository.
    async fn approve(
        &self,
        repo: &str,
        digest: &Digest,
        alias: &str,
        approver: &Actor,
        comment: Option<&str>,
    ) -> StoreResult<Approval>;
    /// Every approval of `digest`, by alias then approver.
    async fn approvals(&self, repo: &str, digest: &Digest) -> StoreResult<Vec<Approval>>;
    /// Sets (`Some`) or removes (`None`) labels, each change with its audit
    /// record, all in one transaction; returns how many changed. The manifest
    /// must be in the repository.
    async fn set_labels(
        &self,
        repo: &str,
        digest: &Digest,
        changes: &BTreeMap<String, Option<String>>,
        actor: &Actor,
    ) -> StoreResult<usize>;
    async fn labels(&self, repo: &str, digest: &Digest) -> StoreResult<BTreeMap<String, String>>;
    /// Every label of every version of `repo`.
    async fn repo_labels(
        &self,
        repo: &str,
    ) -> StoreResult<BTreeMap<Digest, BTreeMap<String, String>>>;
}
