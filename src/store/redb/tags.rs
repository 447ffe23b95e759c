//! The tag-move primitive in redb, and the tables only it writes: tags, their
//! reverse index, their history, the targets each tag has had, and the
//! promotions waiting for an attestation. Every function runs inside the
//! caller's transaction; nothing else in the store writes these tables.

use redb::{ReadTransaction, ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use super::{MANIFESTS, TAGS, corrupt, review, to_json};
use crate::oci::Digest;
use crate::store::audit::{Action, Change};
use crate::store::tags::{
    DenyReason, Expect, HistoryEntry, MoveKind, PendingAttestation, TagMove, TagMoved, TagPolicy,
    TagState,
};
use crate::store::{StoreError, StoreResult};

/// (repo, digest, tag): the reverse of `TAGS`.
const TAG_DIGESTS: TableDefinition<(&str, &str, &str), ()> = TableDefinition::new("tag_digests");
/// (repo, tag, seq) -> JSON `HistoryEntry` (without its attestation).
const TAG_HISTORY: TableDefinition<(&str, &str, u64), &[u8]> = TableDefinition::new("tag_history");
/// (repo, tag, digest) -> seq of the first move that made it the target.
const TAG_TARGETS: TableDefinition<(&str, &str, &str), u64> = TableDefinition::new("tag_targets");
/// (repo, tag, seq) -> digest of the attestation of that move.
const ATTESTATIONS: TableDefinition<(&str, &str, u64), &str> = TableDefinition::new("attestations");
/// seq -> JSON `PendingAttestation`.
const PENDING: TableDefinition<u64, &[u8]> = TableDefinition::new("pending_attestations");
/// (repo, tag): tags whose last move was through the promotion API.
const ALIASES: TableDefinition<(&str, &str), ()> = TableDefinition::new("aliases");

const MAX_KEY: &str = "\u{10ffff}";

pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    let had_reverse = txn.list_tables()?.any(|t| t.name() == TAG_DIGESTS.name());
    txn.open_table(TAG_DIGESTS)?;
    txn.open_table(TAG_HISTORY)?;
    txn.open_table(TAG_TARGETS)?;
    txn.open_table(ATTESTATIONS)?;
    txn.open_table(PENDING)?;
    txn.open_table(ALIASES)?;
    if !had_reverse {
        // A database from before tag moves were recorded: index its tags.
        let tags = txn.open_table(TAGS)?;
        let mut reverse = txn.open_table(TAG_DIGESTS)?;
        for e in tags.iter()? {
            let (k, v) = e?;
            let (repo, tag) = k.value();
            reverse.insert((repo, v.value(), tag), ())?;
        }
    }
    Ok(())
}

fn action_of(kind: MoveKind) -> Action {
    match kind {
        MoveKind::Push => Action::TagPush,
        MoveKind::Delete | MoveKind::Cascade => Action::TagDelete,
        MoveKind::Promote => Action::AliasPromote,
        MoveKind::Rollback => Action::AliasRollback,
        MoveKind::Unset => Action::AliasUnset,
    }
}

fn parse_digest(s: &str) -> StoreResult<Digest> {
    s.parse().map_err(corrupt)
}

/// Whether `digest` was ever the target of `tag`.
fn was_target_in(
    t: &impl ReadableTable<(&'static str, &'static str, &'static str), u64>,
    repo: &str,
    tag: &str,
    digest: &str,
) -> StoreResult<bool> {
    Ok(t.get((repo, tag, digest))?.is_some())
}

/// The one tag write. Checks the expectation, then the tag's rule, then the
/// approvals it uses; moves the tag; appends history and audit. Errors leave the
/// transaction for the caller to drop. A move to where the tag already points
/// changes nothing and records nothing.
pub(super) fn move_tag(
    txn: &WriteTransaction,
    m: &TagMove,
    policy: &dyn TagPolicy,
) -> StoreResult<TagMoved> {
    let (repo, tag) = (m.repo.as_str(), m.tag.as_str());
    let mut tags = txn.open_table(TAGS)?;
    let current = match tags.get((repo, tag))? {
        Some(v) => Some(parse_digest(v.value())?),
        None => None,
    };
    if !m.expect.holds(current.as_ref()) {
        return Err(StoreError::TagStale {
            tag: tag.to_string(),
            current,
        });
    }
    if current == m.target {
        return Ok(TagMoved {
            previous: current,
            entry: None,
        });
    }
    let rule = policy.rule(repo, tag);
    rule.check(repo, tag, m.kind, current.as_ref(), m.target.as_ref())
        .map_err(|d| StoreError::TagDenied(Box::new(d)))?;
    let mut targets = txn.open_table(TAG_TARGETS)?;
    if let (MoveKind::Promote, Some(requires), Some(t)) = (m.kind, &rule.requires, &m.target)
        && !was_target_in(&targets, repo, requires, &t.to_string())?
    {
        let stage = DenyReason::Stage {
            requires: requires.clone(),
        };
        return Err(StoreError::TagDenied(Box::new(
            rule.denial(repo, tag, m.kind, stage),
        )));
    }
    let target = m.target.as_ref().map(Digest::to_string);
    if let (Some(t), Some(d)) = (&target, &m.target) {
        // Checked here, not by the caller, so a concurrent manifest delete
        // cannot leave the tag pointing at nothing.
        if txn
            .open_table(MANIFESTS)?
            .get((repo, t.as_str()))?
            .is_none()
        {
            return Err(StoreError::ReferenceMissing(d.clone()));
        }
        review::check_approvals(txn, repo, t, tag, &m.approvals)?;
    }
    if m.dry_run {
        return Ok(TagMoved {
            previous: current,
            entry: None,
        });
    }

    let mut reverse = txn.open_table(TAG_DIGESTS)?;
    if let Some(c) = &current {
        reverse.remove((repo, c.to_string().as_str(), tag))?;
    }
    match &target {
        Some(t) => {
            tags.insert((repo, tag), t.as_str())?;
            reverse.insert((repo, t.as_str(), tag), ())?;
        }
        None => {
            tags.remove((repo, tag))?;
        }
    }
    let mut details = serde_json::json!({ "kind": m.kind });
    if let Some(r) = &m.report {
        details["report"] = r.clone();
    }
    if !m.approvals.is_empty() {
        details["approvals"] = serde_json::json!(m.approvals);
    }
    let record = super::audit::append(
        txn,
        Change {
            actor: m.actor.clone(),
            action: action_of(m.kind),
            repo: Some(m.repo.clone()),
            tag: Some(m.tag.clone()),
            digest: m.target.clone(),
            previous: current.clone(),
            reason: m.reason.clone(),
            details,
        },
    )?;
    let entry = HistoryEntry {
        seq: record.seq,
        kind: m.kind,
        target: m.target.clone(),
        previous: current.clone(),
        actor: m.actor.clone(),
        time_ms: crate::store::audit::time_ms(&record.time).unwrap_or_default(),
        time: record.time,
        reason: m.reason.clone(),
        report: m.report.clone(),
        audit_hash: record.hash,
        attestation: None,
    };
    txn.open_table(TAG_HISTORY)?
        .insert((repo, tag, entry.seq), to_json(&entry)?.as_slice())?;
    let mut aliases = txn.open_table(ALIASES)?;
    if m.kind.is_promotion() && target.is_some() {
        aliases.insert((repo, tag), ())?;
    } else {
        aliases.remove((repo, tag))?;
    }
    drop(aliases);
    if let Some(t) = &target {
        if targets.get((repo, tag, t.as_str()))?.is_none() {
            targets.insert((repo, tag, t.as_str()), entry.seq)?;
        }
        review::use_approvals(txn, repo, t, tag, &m.approvals, entry.seq)?;
        if matches!(m.kind, MoveKind::Promote | MoveKind::Rollback) {
            let pending = PendingAttestation {
                repo: m.repo.clone(),
                tag: m.tag.clone(),
                seq: entry.seq,
            };
            txn.open_table(PENDING)?
                .insert(entry.seq, to_json(&pending)?.as_slice())?;
        }
    }
    Ok(TagMoved {
        previous: current,
        entry: Some(entry),
    })
}

/// Tags of `repo` pointing at `digest`, through the reverse index.
pub(super) fn tags_of(
    t: &impl ReadableTable<(&'static str, &'static str, &'static str), ()>,
    repo: &str,
    digest: &str,
) -> StoreResult<Vec<String>> {
    let mut out = Vec::new();
    for e in t.range((repo, digest, "")..=(repo, digest, MAX_KEY))? {
        out.push(e?.0.value().2.to_string());
    }
    Ok(out)
}

/// Removes every tag of `repo` pointing at `digest` (the cascade of a manifest
/// delete), each as a tag move the policy may refuse.
pub(super) fn remove_tags_of(
    txn: &WriteTransaction,
    repo: &str,
    digest: &Digest,
    actor: &crate::store::audit::Actor,
    policy: &dyn TagPolicy,
) -> StoreResult<()> {
    let pointing = tags_of(&txn.open_table(TAG_DIGESTS)?, repo, &digest.to_string())?;
    for tag in pointing {
        let mut m = TagMove::new(repo, &tag, None, MoveKind::Cascade, actor);
        m.expect = Expect::Target(digest.clone());
        move_tag(txn, &m, policy)?;
    }
    Ok(())
}

/// Every digest a tag of `repo` pointed at since `since_ms` (left or reached
/// by a move then), and every current target: what retention must keep.
pub(super) fn held_since(
    txn: &ReadTransaction,
    repo: &str,
    since_ms: i64,
) -> StoreResult<std::collections::BTreeSet<Digest>> {
    let mut held = std::collections::BTreeSet::new();
    for e in txn
        .open_table(TAG_DIGESTS)?
        .range((repo, "", "")..=(repo, MAX_KEY, MAX_KEY))?
    {
        held.insert(parse_digest(e?.0.value().1)?);
    }
    for e in txn
        .open_table(TAG_HISTORY)?
        .range((repo, "", 0)..=(repo, MAX_KEY, u64::MAX))?
    {
        let entry: HistoryEntry = serde_json::from_slice(e?.1.value()).map_err(corrupt)?;
        if entry.time_ms >= since_ms {
            held.extend(entry.target);
            held.extend(entry.previous);
        }
    }
    Ok(held)
}

/// Whether any tag of `repo` points at `digest` now.
pub(super) fn is_tagged(txn: &WriteTransaction, repo: &str, digest: &str) -> StoreResult<bool> {
    Ok(!tags_of(&txn.open_table(TAG_DIGESTS)?, repo, digest)?.is_empty())
}

pub(super) fn tags_of_digest(
    txn: &ReadTransaction,
    repo: &str,
    digest: &Digest,
) -> StoreResult<Vec<String>> {
    tags_of(&txn.open_table(TAG_DIGESTS)?, repo, &digest.to_string())
}

fn entry_with_attestation(
    attestations: &impl ReadableTable<(&'static str, &'static str, u64), &'static str>,
    repo: &str,
    tag: &str,
    json: &[u8],
) -> StoreResult<HistoryEntry> {
    let mut e: HistoryEntry = serde_json::from_slice(json).map_err(corrupt)?;
    if let Some(a) = attestations.get((repo, tag, e.seq))? {
        e.attestation = Some(parse_digest(a.value())?);
    }
    Ok(e)
}

pub(super) fn state(txn: &ReadTransaction, repo: &str, tag: &str) -> StoreResult<Option<TagState>> {
    let Some(target) = txn
        .open_table(TAGS)?
        .get((repo, tag))?
        .map(|v| v.value().to_string())
    else {
        return Ok(None);
    };
    let history = txn.open_table(TAG_HISTORY)?;
    let last = match history
        .range((repo, tag, 0)..=(repo, tag, u64::MAX))?
        .next_back()
    {
        Some(e) => {
            let (_, v) = e?;
            Some(entry_with_attestation(
                &txn.open_table(ATTESTATIONS)?,
                repo,
                tag,
                v.value(),
            )?)
        }
        None => None,
    };
    Ok(Some(TagState {
        tags: tags_of(&txn.open_table(TAG_DIGESTS)?, repo, &target)?,
        target: parse_digest(&target)?,
        last,
    }))
}

pub(super) fn history(
    txn: &ReadTransaction,
    repo: &str,
    tag: &str,
    before: Option<u64>,
    limit: usize,
) -> StoreResult<(Vec<HistoryEntry>, bool)> {
    let history = txn.open_table(TAG_HISTORY)?;
    let attestations = txn.open_table(ATTESTATIONS)?;
    let end = before.map_or(u64::MAX, |b| b.saturating_sub(1));
    let mut out = Vec::new();
    if before == Some(0) {
        return Ok((out, false));
    }
    for e in history.range((repo, tag, 0)..=(repo, tag, end))?.rev() {
        let (_, v) = e?;
        if out.len() == limit {
            return Ok((out, true));
        }
        out.push(entry_with_attestation(&attestations, repo, tag, v.value())?);
    }
    Ok((out, false))
}

/// The last entry at or before `at_ms`: history is in time order, so this walks
/// back only over the entries after it.
pub(super) fn at(
    txn: &ReadTransaction,
    repo: &str,
    tag: &str,
    at_ms: i64,
) -> StoreResult<Option<HistoryEntry>> {
    let history = txn.open_table(TAG_HISTORY)?;
    let attestations = txn.open_table(ATTESTATIONS)?;
    for e in history.range((repo, tag, 0)..=(repo, tag, u64::MAX))?.rev() {
        let (_, v) = e?;
        let entry = entry_with_attestation(&attestations, repo, tag, v.value())?;
        if entry.time_ms <= at_ms {
            return Ok(Some(entry));
        }
    }
    Ok(None)
}

/// Tags of `repo` last moved through the promotion API.
pub(super) fn promoted(txn: &ReadTransaction, repo: &str) -> StoreResult<Vec<String>> {
    let t = txn.open_table(ALIASES)?;
    let mut out = Vec::new();
    for e in t.range((repo, "")..=(repo, MAX_KEY))? {
        out.push(e?.0.value().1.to_string());
    }
    Ok(out)
}

pub(super) fn was_target(
    txn: &ReadTransaction,
    repo: &str,
    tag: &str,
    digest: &Digest,
) -> StoreResult<bool> {
    was_target_in(
        &txn.open_table(TAG_TARGETS)?,
        repo,
        tag,
        &digest.to_string(),
    )
}

pub(super) fn pending(txn: &ReadTransaction) -> StoreResult<Vec<PendingAttestation>> {
    let mut out = Vec::new();
    for e in txn.open_table(PENDING)?.iter()? {
        out.push(serde_json::from_slice(e?.1.value()).map_err(corrupt)?);
    }
    Ok(out)
}

pub(super) fn attested(
    txn: &WriteTransaction,
    p: &PendingAttestation,
    attestation: &Digest,
) -> StoreResult<()> {
    txn.open_table(ATTESTATIONS)?.insert(
        (p.repo.as_str(), p.tag.as_str(), p.seq),
        attestation.to_string().as_str(),
    )?;
    txn.open_table(PENDING)?.remove(p.seq)?;
    Ok(())
}

#[async_trait::async_trait]
impl crate::store::tags::TagStore for super::RedbMetaStore {
    async fn move_tag(
        &self,
        m: TagMove,
        policy: std::sync::Arc<dyn TagPolicy>,
    ) -> StoreResult<TagMoved> {
        let dry_run = m.dry_run;
        self.write_if(move |txn| Ok((move_tag(txn, &m, policy.as_ref())?, !dry_run)))
            .await
    }

    async fn tag_state(&self, repo: &str, tag: &str) -> StoreResult<Option<TagState>> {
        self.read(|txn| state(txn, repo, tag))
    }

    async fn tags_of(&self, repo: &str, digest: &Digest) -> StoreResult<Vec<String>> {
        self.read(|txn| tags_of_digest(txn, repo, digest))
    }

    async fn tag_history(
        &self,
        repo: &str,
        tag: &str,
        before: Option<u64>,
        limit: usize,
    ) -> StoreResult<(Vec<HistoryEntry>, bool)> {
        self.read(|txn| history(txn, repo, tag, before, limit))
    }

    async fn tag_at(&self, repo: &str, tag: &str, at_ms: i64) -> StoreResult<Option<HistoryEntry>> {
        self.read(|txn| at(txn, repo, tag, at_ms))
    }

    async fn was_target(&self, repo: &str, tag: &str, digest: &Digest) -> StoreResult<bool> {
        self.read(|txn| was_target(txn, repo, tag, digest))
    }

    async fn promoted_tags(&self, repo: &str) -> StoreResult<Vec<String>> {
        self.read(|txn| promoted(txn, repo))
    }

    async fn pending_attestations(&self) -> StoreResult<Vec<PendingAttestation>> {
        self.read(pending)
    }

    async fn attested(&self, p: &PendingAttestation, attestation: &Digest) -> StoreResult<()> {
        let (p, a) = (p.clone(), attestation.clone());
        self.write(move |txn| attested(txn, &p, &a)).await
    }
}
