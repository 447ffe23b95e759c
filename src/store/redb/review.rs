//! Pushers, labels and approvals of versions in redb.

use std::collections::BTreeMap;

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::{MANIFESTS, corrupt, to_json};
use crate::oci::Digest;
use crate::store::audit::{Action, Actor, Change};
use crate::store::review::Approval;
use crate::store::{StoreError, StoreResult};

/// (repo, digest) -> JSON `Actor` of the first push.
const PUSHERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("pushers");
/// (repo, digest, key) -> value.
const LABELS: TableDefinition<(&str, &str, &str), &str> = TableDefinition::new("labels");
/// (repo, digest, alias, approver) -> JSON `Approval`.
const APPROVALS: TableDefinition<(&str, &str, &str, &str), &[u8]> =
    TableDefinition::new("approvals");

const MAX_KEY: &str = "\u{10ffff}";

pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(PUSHERS)?;
    txn.open_table(LABELS)?;
    txn.open_table(APPROVALS)?;
    Ok(())
}

pub(super) fn set_pusher(
    txn: &WriteTransaction,
    repo: &str,
    digest: &str,
    actor: &Actor,
) -> StoreResult<()> {
    txn.open_table(PUSHERS)?
        .insert((repo, digest), to_json(actor)?.as_slice())?;
    Ok(())
}

pub(super) fn pusher(
    txn: &ReadTransaction,
    repo: &str,
    digest: &str,
) -> StoreResult<Option<Actor>> {
    match txn.open_table(PUSHERS)?.get((repo, digest))? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(corrupt)?)),
        None => Ok(None),
    }
}

/// Removes what is kept of a deleted manifest: pusher, labels, approvals.
pub(super) fn forget(txn: &WriteTransaction, repo: &str, digest: &str) -> StoreResult<()> {
    txn.open_table(PUSHERS)?.remove((repo, digest))?;
    let mut labels = txn.open_table(LABELS)?;
    let keys: Vec<String> = labels
        .range((repo, digest, "")..=(repo, digest, MAX_KEY))?
        .map(|e| e.map(|(k, _)| k.value().2.to_string()))
        .collect::<Result<_, _>>()?;
    for k in keys {
        labels.remove((repo, digest, k.as_str()))?;
    }
    let mut approvals = txn.open_table(APPROVALS)?;
    let keys: Vec<(String, String)> = approvals
        .range((repo, digest, "", "")..=(repo, digest, MAX_KEY, MAX_KEY))?
        .map(|e| {
            e.map(|(k, _)| {
                let (_, _, alias, who) = k.value();
                (alias.to_string(), who.to_string())
            })
        })
        .collect::<Result<_, _>>()?;
    for (alias, who) in keys {
        approvals.remove((repo, digest, alias.as_str(), who.as_str()))?;
    }
    Ok(())
}

fn require_manifest(txn: &WriteTransaction, repo: &str, digest: &Digest) -> StoreResult<String> {
    let d = digest.to_string();
    if txn
        .open_table(MANIFESTS)?
        .get((repo, d.as_str()))?
        .is_none()
    {
        return Err(StoreError::ReferenceMissing(digest.clone()));
    }
    Ok(d)
}

pub(super) fn approve(
    txn: &WriteTransaction,
    repo: &str,
    digest: &Digest,
    alias: &str,
    approver: &Actor,
    comment: Option<&str>,
) -> StoreResult<Approval> {
    let d = require_manifest(txn, repo, digest)?;
    let mut change = Change::new(approver, Action::ApprovalAdd)
        .repo(repo)
        .digest(digest);
    change.tag = Some(alias.to_string());
    change.reason = comment.map(str::to_string);
    let record = super::audit::append(txn, change)?;
    let approval = Approval {
        alias: alias.to_string(),
        approver: approver.clone(),
        comment: comment.map(str::to_string),
        time: record.time,
        seq: record.seq,
        used_by: None,
    };
    txn.open_table(APPROVALS)?.insert(
        (repo, d.as_str(), alias, approver.name.as_str()),
        to_json(&approval)?.as_slice(),
    )?;
    Ok(approval)
}

pub(super) fn approvals(
    txn: &ReadTransaction,
    repo: &str,
    digest: &str,
) -> StoreResult<Vec<Approval>> {
    let t = txn.open_table(APPROVALS)?;
    let mut out = Vec::new();
    for e in t.range((repo, digest, "", "")..=(repo, digest, MAX_KEY, MAX_KEY))? {
        out.push(serde_json::from_slice(e?.1.value()).map_err(corrupt)?);
    }
    Ok(out)
}

/// Each approver in `who` has an unused approval of `digest` for `alias`.
pub(super) fn check_approvals(
    txn: &WriteTransaction,
    repo: &str,
    digest: &str,
    alias: &str,
    who: &[String],
) -> StoreResult<()> {
    if who.is_empty() {
        return Ok(());
    }
    let t = txn.open_table(APPROVALS)?;
    for name in who {
        let usable = match t.get((repo, digest, alias, name.as_str()))? {
            Some(v) => {
                let a: Approval = serde_json::from_slice(v.value()).map_err(corrupt)?;
                a.used_by.is_none()
            }
            None => false,
        };
        if !usable {
            return Err(StoreError::ApprovalGone(name.clone()));
        }
    }
    Ok(())
}

/// Marks the approvals a promotion used with its sequence number.
pub(super) fn use_approvals(
    txn: &WriteTransaction,
    repo: &str,
    digest: &str,
    alias: &str,
    who: &[String],
    seq: u64,
) -> StoreResult<()> {
    if who.is_empty() {
        return Ok(());
    }
    let mut t = txn.open_table(APPROVALS)?;
    for name in who {
        let key = (repo, digest, alias, name.as_str());
        let json = match t.get(key)? {
            Some(v) => v.value().to_vec(),
            None => return Err(StoreError::ApprovalGone(name.clone())),
        };
        let mut a: Approval = serde_json::from_slice(&json).map_err(corrupt)?;
        a.used_by = Some(seq);
        t.insert(key, to_json(&a)?.as_slice())?;
    }
    Ok(())
}

pub(super) fn set_label(
    txn: &WriteTransaction,
    repo: &str,
    digest: &Digest,
    key: &str,
    value: Option<&str>,
    actor: &Actor,
) -> StoreResult<bool> {
    let d = require_manifest(txn, repo, digest)?;
    let mut labels = txn.open_table(LABELS)?;
    let before = labels
        .get((repo, d.as_str(), key))?
        .map(|v| v.value().to_string());
    if before.as_deref() == value {
        return Ok(false);
    }
    match value {
        Some(v) => labels.insert((repo, d.as_str(), key), v)?,
        None => labels.remove((repo, d.as_str(), key))?,
    };
    drop(labels);
    let action = if value.is_some() {
        Action::LabelSet
    } else {
        Action::LabelDelete
    };
    let change = Change::new(actor, action)
        .repo(repo)
        .digest(digest)
        .details(serde_json::json!({ "key": key, "value": value, "before": before }));
    super::audit::append(txn, change)?;
    Ok(true)
}

pub(super) fn labels(
    txn: &ReadTransaction,
    repo: &str,
    digest: &str,
) -> StoreResult<BTreeMap<String, String>> {
    let t = txn.open_table(LABELS)?;
    let mut out = BTreeMap::new();
    for e in t.range((repo, digest, "")..=(repo, digest, MAX_KEY))? {
        let (k, v) = e?;
        out.insert(k.value().2.to_string(), v.value().to_string());
    }
    Ok(out)
}

#[async_trait::async_trait]
impl crate::store::review::ReviewStore for super::RedbMetaStore {
    async fn pusher(&self, repo: &str, digest: &Digest) -> StoreResult<Option<Actor>> {
        let d = digest.to_string();
        self.read(|txn| pusher(txn, repo, &d))
    }

    async fn approve(
        &self,
        repo: &str,
        digest: &Digest,
        alias: &str,
        approver: &Actor,
        comment: Option<&str>,
    ) -> StoreResult<Approval> {
        let (repo, digest, alias) = (repo.to_string(), digest.clone(), alias.to_string());
        let (approver, comment) = (approver.clone(), comment.map(str::to_string));
        self.write(move |txn| approve(txn, &repo, &digest, &alias, &approver, comment.as_deref()))
            .await
    }

    async fn approvals(&self, repo: &str, digest: &Digest) -> StoreResult<Vec<Approval>> {
        let d = digest.to_string();
        self.read(|txn| approvals(txn, repo, &d))
    }

    async fn set_labels(
        &self,
        repo: &str,
        digest: &Digest,
        changes: &BTreeMap<String, Option<String>>,
        actor: &Actor,
    ) -> StoreResult<usize> {
        let (repo, digest) = (repo.to_string(), digest.clone());
        let (changes, actor) = (changes.clone(), actor.clone());
        self.write(move |txn| {
            let mut changed = 0;
            for (key, value) in &changes {
                changed += usize::from(set_label(
                    txn,
                    &repo,
                    &digest,
                    key,
                    value.as_deref(),
                    &actor,
                )?);
            }
            Ok(changed)
        })
        .await
    }

    async fn labels(&self, repo: &str, digest: &Digest) -> StoreResult<BTreeMap<String, String>> {
        let d = digest.to_string();
        self.read(|txn| labels(txn, repo, &d))
    }

    async fn repo_labels(
        &self,
        repo: &str,
    ) -> StoreResult<BTreeMap<Digest, BTreeMap<String, String>>> {
        self.read(|txn| {
            let t = txn.open_table(LABELS)?;
            let mut out: BTreeMap<Digest, BTreeMap<String, String>> = BTreeMap::new();
            for e in t.range((repo, "", "")..=(repo, MAX_KEY, MAX_KEY))? {
                let (k, v) = e?;
                let (_, d, key) = k.value();
                let d: Digest = d.parse().map_err(corrupt)?;
                out.entry(d)
                    .or_default()
                    .insert(key.to_string(), v.value().to_string());
            }
            Ok(out)
        })
    }
}
