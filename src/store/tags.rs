//! Tag moves: the one way a tag is set, moved or removed, and what is kept of it.
//!
//! Every tag write (a manifest push with a tag, a tag delete, the tags of a
//! deleted manifest, a promotion, a rollback) is a [`TagMove`]. The store checks
//! its expectation (compare-and-swap) and the tag's [`TagRule`] inside the write
//! transaction, moves the tag, and appends the alias history entry and the audit
//! record (which is also the event outbox entry), all in one commit.

use std::sync::Arc;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::StoreResult;
use super::audit::Actor;
use crate::oci::Digest;

/// What the caller believes the tag points at now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// No belief: a plain OCI push or delete.
    Any,
    /// The tag must not exist (create-only).
    Absent,
    /// The tag must exist, pointing anywhere (`If-Match: *`).
    Present,
    /// The tag must point at this digest.
    Target(Digest),
}

impl Expect {
    /// Whether the expectation names no target, so that a move decided on a
    /// target that changed meanwhile may be decided again on the new one.
    pub fn moves_with_it(&self) -> bool {
        matches!(self, Expect::Any | Expect::Present)
    }

    /// Whether a tag that points at `current` meets the expectation.
    pub fn holds(&self, current: Option<&Digest>) -> bool {
        match self {
            Expect::Any => true,
            Expect::Absent => current.is_none(),
            Expect::Present => current.is_some(),
            Expect::Target(d) => current == Some(d),
        }
    }
}

/// Why a tag moves; decides what the policy allows and how the move is recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveKind {
    /// A manifest `PUT` with a tag.
    Push,
    /// A tag `DELETE` on `/v2`.
    Delete,
    /// A manifest delete removing the tags that point at it.
    Cascade,
    /// A promotion through the promotion API.
    Promote,
    /// A rollback to an earlier target.
    Rollback,
    /// An alias removed through the promotion API.
    Unset,
}

impl MoveKind {
    /// Whether this is the promotion API (which may move protected aliases).
    pub fn is_promotion(self) -> bool {
        matches!(
            self,
            MoveKind::Promote | MoveKind::Rollback | MoveKind::Unset
        )
    }
}

/// One tag write.
#[derive(Debug, Clone, PartialEq)]
pub struct TagMove {
    pub repo: String,
    pub tag: String,
    pub expect: Expect,
    /// The new target; `None` removes the tag.
    pub target: Option<Digest>,
    pub kind: MoveKind,
    pub actor: Actor,
    pub reason: Option<String>,
    /// The gate report the move was allowed on, kept in its history and audit.
    pub report: Option<serde_json::Value>,
    /// Approvals (approver names, for this target and tag) the move uses up;
    /// each must still be there, unused, when it commits.
    pub approvals: Vec<String>,
    /// Check everything, write nothing.
    pub dry_run: bool,
}

impl TagMove {
    pub fn new(
        repo: &str,
        tag: &str,
        target: Option<Digest>,
        kind: MoveKind,
        actor: &Actor,
    ) -> Self {
        TagMove {
            repo: repo.to_string(),
            tag: tag.to_string(),
            expect: Expect::Any,
            target,
            kind,
            actor: actor.clone(),
            reason: None,
            report: None,
            approvals: Vec::new(),
            dry_run: false,
        }
    }
}

/// What the policy says of one tag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TagRule {
    /// Moves only through the promotion API.
    pub protected: bool,
    /// Once set, never moved or removed.
    pub immutable: bool,
    /// A promotion needs the target to have been at this alias before.
    pub requires: Option<String>,
    /// Where the rule comes from, for messages (`policy rule "team/*"`).
    pub source: String,
}

impl TagRule {
    /// What the rule says of a `kind` move of `tag` away from `current` (the
    /// stage order, which needs the tag's past, aside). A move to where the tag
    /// already points is no move and always allowed.
    pub fn check(
        &self,
        repo: &str,
        tag: &str,
        kind: MoveKind,
        current: Option<&Digest>,
        target: Option<&Digest>,
    ) -> Result<(), TagDenial> {
        let reason = if current == target {
            return Ok(());
        } else if self.immutable && current.is_some() {
            DenyReason::Immutable
        } else if self.protected && !kind.is_promotion() {
            DenyReason::Protected
        } else {
            return Ok(());
        };
        Err(self.denial(repo, tag, kind, reason))
    }

    pub fn denial(&self, repo: &str, tag: &str, kind: MoveKind, reason: DenyReason) -> TagDenial {
        TagDenial {
            repo: repo.to_string(),
            tag: tag.to_string(),
            kind,
            reason,
            source: self.source.clone(),
        }
    }
}

/// The policy as the store sees it: a rule for each tag.
pub trait TagPolicy: Send + Sync + 'static {
    fn rule(&self, repo: &str, tag: &str) -> TagRule;
}

/// No policy: every tag is an ordinary tag.
pub struct Unguarded;

impl TagPolicy for Unguarded {
    fn rule(&self, _repo: &str, _tag: &str) -> TagRule {
        TagRule::default()
    }
}

pub fn unguarded() -> Arc<dyn TagPolicy> {
    Arc::new(Unguarded)
}

/// Why the policy refused a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DenyReason {
    Protected,
    Immutable,
    /// The target was never at the alias this one requires.
    Stage {
        requires: String,
    },
}

/// A refused tag move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagDenial {
    pub repo: String,
    pub tag: String,
    pub kind: MoveKind,
    pub reason: DenyReason,
    /// The policy rule that refused it.
    pub source: String,
}

/// The outcome of a tag move.
#[derive(Debug, Clone, PartialEq)]
pub struct TagMoved {
    pub previous: Option<Digest>,
    /// The history entry written; `None` if nothing changed (the tag already
    /// pointed there) or on a dry run.
    pub entry: Option<HistoryEntry>,
}

/// One entry of a tag's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// The audit record's sequence number: orders the history.
    pub seq: u64,
    pub kind: MoveKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
    pub actor: Actor,
    pub time: String,
    pub time_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<serde_json::Value>,
    /// The hash of the audit record of this move.
    pub audit_hash: String,
    /// The registry's attestation of this move, once stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attestation: Option<Digest>,
}

/// A tag as the alias API reads it: its target and its last move.
#[derive(Debug, Clone, PartialEq)]
pub struct TagState {
    pub target: Digest,
    /// Every tag of the repository on `target`, this one among them.
    pub tags: Vec<String>,
    /// `None` for a tag set before tag history was kept.
    pub last: Option<HistoryEntry>,
}

/// A promotion waiting for its attestation (written with the move, so a crash
/// between the move and the attestation is finished at the next start).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingAttestation {
    pub repo: String,
    pub tag: String,
    pub seq: u64,
}

/// Tag moves and what is kept of them.
#[async_trait]
pub trait TagStore: Send + Sync + 'static {
    /// The one tag write: checks, moves, records; one transaction.
    async fn move_tag(&self, m: TagMove, policy: Arc<dyn TagPolicy>) -> StoreResult<TagMoved>;
    /// A tag's target, the tags sharing it and its last move: one read.
    async fn tag_state(&self, repo: &str, tag: &str) -> StoreResult<Option<TagState>>;
    /// Tags of `repo` pointing at `digest` (a reverse index: costs what it returns).
    async fn tags_of(&self, repo: &str, digest: &Digest) -> StoreResult<Vec<String>>;
    /// A tag's history, newest first, before sequence `before`, at most `limit`.
    async fn tag_history(
        &self,
        repo: &str,
        tag: &str,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<(Vec<HistoryEntry>, bool)>;
    /// The history entry in force at `at_ms`: the last one at or before it.
    async fn tag_at(&self, repo: &str, tag: &str, at_ms: i64) -> StoreResult<Option<HistoryEntry>>;
    /// Whether `digest` was ever the target of `tag`.
    async fn was_target(&self, repo: &str, tag: &str, digest: &Digest) -> StoreResult<bool>;
    /// Tags of `repo` whose last move was a promotion or rollback.
    async fn promoted_tags(&self, repo: &str) -> StoreResult<Vec<String>>;
    async fn pending_attestations(&self) -> StoreResult<Vec<PendingAttestation>>;
    /// Records the attestation of a move and clears it from the pending list.
    async fn attested(&self, pending: &PendingAttestation, attestation: &Digest)
    -> StoreResult<()>;
}
