//! The audit log's records: every state change is one append-only line, chained
//! to the one before by its hash, and written in the same transaction as the
//! change. The same lines are the event outbox: webhooks and event streams
//! read them in sequence order.
//!
//! A line is the record's JSON with a last member `"hash"`; the hash is the
//! SHA-256 of the line with that member removed, and that JSON names the hash of
//! the record before (`prev`). So any edited, reordered, inserted or removed line
//! breaks the chain, and checking it needs no knowledge of Berth's types.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::StoreResult;
use crate::oci::Digest;

/// The `prev` of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Who made a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Actor {
    /// The identity: authenticated, claimed by the client, `anonymous`, or
    /// `berth` for the registry's own writes (attestations).
    pub name: String,
    /// The client's address, when the change came over the network.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    /// Whether `name` was proven (false: only claimed, or none given).
    #[serde(default)]
    pub authenticated: bool,
}

impl Actor {
    pub const REGISTRY: &'static str = "berth";

    /// The registry itself.
    pub fn registry() -> Actor {
        Actor {
            name: Actor::REGISTRY.into(),
            address: None,
            authenticated: true,
        }
    }

    /// A local process with no network peer (tests, tools).
    pub fn local(name: &str) -> Actor {
        Actor {
            name: name.into(),
            address: None,
            authenticated: false,
        }
    }
}

/// What a change did. The event type of its CloudEvent is `dev.berth.<action>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Action {
    #[serde(rename = "manifest.push")]
    ManifestPush,
    #[serde(rename = "manifest.delete")]
    ManifestDelete,
    /// A tag set or moved by a manifest push.
    #[serde(rename = "tag.push")]
    TagPush,
    /// A tag removed: by a tag delete, or with the manifest it pointed at.
    #[serde(rename = "tag.delete")]
    TagDelete,
    #[serde(rename = "alias.promote")]
    AliasPromote,
    #[serde(rename = "alias.rollback")]
    AliasRollback,
    /// An alias removed through the promotion API.
    #[serde(rename = "alias.unset")]
    AliasUnset,
    #[serde(rename = "approval.add")]
    ApprovalAdd,
    #[serde(rename = "label.set")]
    LabelSet,
    #[serde(rename = "label.delete")]
    LabelDelete,
    #[serde(rename = "policy.change")]
    PolicyChange,
    #[serde(rename = "robot.create")]
    RobotCreate,
    #[serde(rename = "robot.revoke")]
    RobotRevoke,
    /// Credentials that proved nothing (a wrong password, a revoked token).
    #[serde(rename = "auth.failed")]
    AuthFailed,
    /// A proven identity asked for what it may not do.
    #[serde(rename = "access.denied")]
    AccessDenied,
}

impl Action {
    pub const ALL: [Action; 15] = [
        Action::ManifestPush,
        Action::ManifestDelete,
        Action::TagPush,
        Action::TagDelete,
        Action::AliasPromote,
        Action::AliasRollback,
        Action::AliasUnset,
        Action::ApprovalAdd,
        Action::LabelSet,
        Action::LabelDelete,
        Action::PolicyChange,
        Action::RobotCreate,
        Action::RobotRevoke,
        Action::AuthFailed,
        Action::AccessDenied,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::ManifestPush => "manifest.push",
            Action::ManifestDelete => "manifest.delete",
            Action::TagPush => "tag.push",
            Action::TagDelete => "tag.delete",
            Action::AliasPromote => "alias.promote",
            Action::AliasRollback => "alias.rollback",
            Action::AliasUnset => "alias.unset",
            Action::ApprovalAdd => "approval.add",
            Action::LabelSet => "label.set",
            Action::LabelDelete => "label.delete",
            Action::PolicyChange => "policy.change",
            Action::RobotCreate => "robot.create",
            Action::RobotRevoke => "robot.revoke",
            Action::AuthFailed => "auth.failed",
            Action::AccessDenied => "access.denied",
        }
    }

    pub fn parse(s: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// A change to record: what the caller knows; the store adds sequence, time and chain.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub actor: Actor,
    pub action: Action,
    pub repo: Option<String>,
    pub tag: Option<String>,
    /// The digest the change is about (a tag's new target, a pushed manifest).
    pub digest: Option<Digest>,
    /// A tag's target before the change.
    pub previous: Option<Digest>,
    pub reason: Option<String>,
    /// Anything else worth keeping: a gate report, a label, a policy's hash.
    pub details: serde_json::Value,
}

impl Change {
    pub fn new(actor: &Actor, action: Action) -> Change {
        Change {
            actor: actor.clone(),
            action,
            repo: None,
            tag: None,
            digest: None,
            previous: None,
            reason: None,
            details: serde_json::Value::Null,
        }
    }

    pub fn repo(mut self, repo: &str) -> Change {
        self.repo = Some(repo.to_string());
        self
    }

    pub fn digest(mut self, digest: &Digest) -> Change {
        self.digest = Some(digest.clone());
        self
    }

    pub fn details(mut self, details: serde_json::Value) -> Change {
        self.details = details;
        self
    }
}

/// One audit record as stored and exported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub seq: u64,
    /// RFC 3339, UTC, milliseconds; never earlier than the record before.
    pub time: String,
    pub actor: Actor,
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repo: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous: Option<Digest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub details: serde_json::Value,
    /// The hash of the record before (`GENESIS` for the first).
    pub prev: String,
    /// This record's hash; empty while it is being computed.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub hash: String,
}

/// The stored line of a record: its JSON, then its hash as the last member.
pub fn seal(mut record: AuditRecord) -> (AuditRecord, Vec<u8>) {
    record.hash.clear();
    let body = serde_json::to_vec(&record).unwrap_or_default();
    let hash = hex::encode(Sha256::digest(&body));
    let mut line = body;
    line.pop(); // the closing brace
    line.extend_from_slice(format!(",\"hash\":\"{hash}\"}}").as_bytes());
    record.hash = hash;
    (record, line)
}

/// What the registry signs of the log's head, so that an exported log can be
/// checked later for records cut off its end (or a rewritten tail).
pub fn head_message(seq: u64, hash: &str) -> String {
    format!("berth audit head {seq} {hash}")
}

/// Why a line does not belong where it is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("line {line}: not an audit record: {why}")]
    Malformed { line: usize, why: String },
    #[error("line {line} (seq {seq}): the record was altered: its hash does not match its content")]
    Altered { line: usize, seq: u64 },
    #[error(
        "line {line} (seq {seq}): the chain is broken: it follows {prev}, but the record before hashes to {expected}"
    )]
    Broken {
        line: usize,
        seq: u64,
        prev: String,
        expected: String,
    },
    #[error(
        "line {line}: seq {seq} where {expected} was expected (a record is missing, inserted or out of order)"
    )]
    Sequence {
        line: usize,
        seq: u64,
        expected: u64,
    },
}

/// The hash a line claims, and the record's content without it; `None` if the
/// line does not end with a `"hash"` member.
fn split_line(line: &[u8]) -> Option<(&[u8], &str)> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // `,"hash":"` + 64 hex + `"}`
    let tail = 9 + 64 + 2;
    if line.len() < tail + 2 {
        return None;
    }
    let (head, suffix) = line.split_at(line.len() - tail);
    let hash = suffix.strip_prefix(b",\"hash\":\"")?.strip_suffix(b"\"}")?;
    let hash = std::str::from_utf8(hash).ok()?;
    hash.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some((head, hash))
}

/// Checks one line on its own: its hash matches its content. Returns the record.
pub fn check_line(line: &[u8], number: usize) -> Result<AuditRecord, ChainError> {
    let malformed = |why: &str| ChainError::Malformed {
        line: number,
        why: why.to_string(),
    };
    let (head, claimed) = split_line(line).ok_or_else(|| malformed("no trailing hash member"))?;
    let mut body = head.to_vec();
    body.push(b'}');
    let record: AuditRecord =
        serde_json::from_slice(&body).map_err(|e| malformed(&e.to_string()))?;
    if hex::encode(Sha256::digest(&body)) != claimed || !record.hash.is_empty() {
        return Err(ChainError::Altered {
            line: number,
            seq: record.seq,
        });
    }
    Ok(AuditRecord {
        hash: claimed.to_string(),
        ..record
    })
}

/// Walks lines in order, checking each line and its link to the one before.
#[derive(Debug, Default)]
pub struct ChainCheck {
    last: Option<(u64, String)>,
    lines: usize,
    /// The first line may be any record (an export that starts mid-log).
    anywhere: bool,
}

impl ChainCheck {
    /// A walk that starts at the log's beginning.
    pub fn new() -> ChainCheck {
        ChainCheck::default()
    }

    /// A walk whose first line may be any record: it is taken as the anchor.
    pub fn starting_anywhere() -> ChainCheck {
        ChainCheck {
            anywhere: true,
            ..ChainCheck::default()
        }
    }

    /// Checks the next line.
    pub fn push(&mut self, line: &[u8]) -> Result<AuditRecord, ChainError> {
        self.lines += 1;
        let n = self.lines;
        let record = check_line(line, n)?;
        let (expected_seq, expected_prev) = match &self.last {
            Some((seq, hash)) => (seq + 1, hash.clone()),
            None if self.anywhere => (record.seq, record.prev.clone()),
            None => (1, GENESIS.to_string()),
        };
        if record.seq != expected_seq {
            return Err(ChainError::Sequence {
                line: n,
                seq: record.seq,
                expected: expected_seq,
            });
        }
        if record.prev != expected_prev {
            return Err(ChainError::Broken {
                line: n,
                seq: record.seq,
                prev: record.prev,
                expected: expected_prev,
            });
        }
        self.last = Some((record.seq, record.hash.clone()));
        Ok(record)
    }

    /// The last record checked: its sequence number and hash.
    pub fn head(&self) -> Option<&(u64, String)> {
        self.last.as_ref()
    }
}

/// Which records an audit query returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub repo: Option<String>,
    pub actor: Option<String>,
    pub action: Option<Action>,
    /// Milliseconds since the epoch, inclusive.
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

impl AuditQuery {
    pub fn matches(&self, r: &AuditRecord, time_ms: i64) -> bool {
        self.repo
            .as_ref()
            .is_none_or(|x| r.repo.as_ref() == Some(x))
            && self.actor.as_ref().is_none_or(|x| &r.actor.name == x)
            && self.action.is_none_or(|a| r.action == a)
            && self.since_ms.is_none_or(|s| time_ms >= s)
            && self.until_ms.is_none_or(|u| time_ms <= u)
    }
}

/// A page of audit lines (each exactly as stored), and where to continue.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditPage {
    pub lines: Vec<(AuditRecord, Vec<u8>)>,
    /// More may follow after this sequence number: the last line's, or the
    /// last record examined when a page stopped at its scan limit.
    pub next: Option<u64>,
}

/// The log and its delivery cursors.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Records a change that has no other write (a policy change).
    async fn record(&self, change: Change) -> StoreResult<AuditRecord>;
    /// Records after sequence `after` that `query` accepts, in order, at most
    /// `limit`. A page costs what it holds plus what the index skips, not the log.
    async fn audit_page(
        &self,
        query: &AuditQuery,
        after: u64,
        limit: usize,
    ) -> StoreResult<AuditPage>;
    /// The last record's sequence number and hash.
    async fn audit_head(&self) -> StoreResult<Option<(u64, String)>>;
    /// Delivery cursors: the last sequence number each named receiver took.
    async fn delivery_cursors(&self) -> StoreResult<BTreeMap<String, u64>>;
    async fn set_delivery_cursor(&self, receiver: &str, seq: u64) -> StoreResult<()>;
    /// The head sequence number, changed whenever a commit appends to the log,
    /// so readers of the log need not poll.
    fn changes(&self) -> tokio::sync::watch::Receiver<u64>;
}

/// The time of a record as milliseconds, if it parses.
pub fn time_ms(time: &str) -> Option<i64> {
    time.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Milliseconds as the record's RFC 3339 time.
pub fn format_time(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
        Err(_) => String::from("1970-01-01T00:00:00.000Z"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(seq: u64, prev: &str) -> (AuditRecord, Vec<u8>) {
        seal(AuditRecord {
            seq,
            time: format_time(1_700_000_000_000 + seq as i64),
            actor: Actor::local("alice"),
            action: Action::TagPush,
            repo: Some("team/m".into()),
            tag: Some("v1".into()),
            digest: Some(Digest::sha256_of(b"x")),
            previous: None,
            reason: Some("a \"quoted\" reason\n".into()),
            details: serde_json::json!({"metric": 0.1 + 0.2}),
            prev: prev.into(),
            hash: String::new(),
        })
    }

    fn chain(n: u64) -> Vec<Vec<u8>> {
        let mut prev = GENESIS.to_string();
        (1..=n)
            .map(|seq| {
                let (r, line) = record(seq, &prev);
                prev = r.hash;
                line
            })
            .collect()
    }

    fn walk(lines: &[Vec<u8>]) -> Result<(), ChainError> {
        let mut c = ChainCheck::new();
        for l in lines {
            c.push(l)?;
        }
        Ok(())
    }

    #[test]
    fn a_sealed_line_checks_and_reads_back() {
        let (r, line) = record(1, GENESIS);
        assert!(line.ends_with(format!(",\"hash\":\"{}\"}}", r.hash).as_bytes()));
        assert_eq!(check_line(&line, 1).unwrap(), r);
        walk(&chain(5)).unwrap();
    }

    #[test]
    fn every_kind_of_tampering_is_found() {
        let lines = chain(4);
        // An edited byte.
        let mut edited = lines.clone();
        let s = String::from_utf8(edited[1].clone()).unwrap();
        edited[1] = s.replace("alice", "mallory").into_bytes();
        assert!(matches!(walk(&edited), Err(ChainError::Altered { .. })));
        // An edit with the hash recomputed: the next record no longer links.
        let mut forged = lines.clone();
        let mut r = check_line(&lines[1], 2).unwrap();
        r.actor.name = "mallory".into();
        forged[1] = seal(r).1;
        assert!(matches!(
            walk(&forged),
            Err(ChainError::Broken { seq: 3, .. })
        ));
        // Reordered, removed, inserted.
        let mut swapped = lines.clone();
        swapped.swap(1, 2);
        assert!(matches!(walk(&swapped), Err(ChainError::Sequence { .. })));
        let mut removed = lines.clone();
        removed.remove(2);
        assert!(matches!(walk(&removed), Err(ChainError::Sequence { .. })));
        let mut inserted = lines.clone();
        inserted.insert(2, lines[1].clone());
        assert!(walk(&inserted).is_err());
        // Not a record at all.
        assert!(matches!(
            walk(&[b"{}".to_vec()]),
            Err(ChainError::Malformed { .. })
        ));
    }
}
