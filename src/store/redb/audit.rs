//! The audit log in redb: lines by sequence number, indexes by repository,
//! actor and time, the chain's head, and the delivery cursors of the receivers
//! that read the log as an event outbox. Appends run inside the caller's
//! transaction, so a change and its record commit together.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::corrupt;
use crate::store::StoreResult;
use crate::store::audit::{AuditPage, AuditQuery, AuditRecord, Change, GENESIS, format_time, seal};

/// seq -> the record's line, byte for byte.
const AUDIT: TableDefinition<u64, &[u8]> = TableDefinition::new("audit");
/// (repo, seq).
const AUDIT_REPOS: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_repos");
/// (actor name, seq).
const AUDIT_ACTORS: TableDefinition<(&str, u64), ()> = TableDefinition::new("audit_actors");
/// (time in ms, seq): where a time range starts.
const AUDIT_TIMES: TableDefinition<(i64, u64), ()> = TableDefinition::new("audit_times");
/// "head" -> (seq, time in ms, hash) of the last record.
const AUDIT_HEAD: TableDefinition<&str, (u64, i64, &str)> = TableDefinition::new("audit_head");
/// receiver -> the last sequence number it took.
const DELIVERY: TableDefinition<&str, u64> = TableDefinition::new("delivery_cursors");

const HEAD: &str = "head";

pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(AUDIT)?;
    txn.open_table(AUDIT_REPOS)?;
    txn.open_table(AUDIT_ACTORS)?;
    txn.open_table(AUDIT_TIMES)?;
    txn.open_table(AUDIT_HEAD)?;
    txn.open_table(DELIVERY)?;
    Ok(())
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Appends the record of `change` to the log, chained to the last one.
pub(super) fn append(txn: &WriteTransaction, change: Change) -> StoreResult<AuditRecord> {
    let mut head = txn.open_table(AUDIT_HEAD)?;
    let (last_seq, last_ms, prev) = match head.get(HEAD)? {
        Some(v) => {
            let (seq, ms, hash) = v.value();
            (seq, ms, hash.to_string())
        }
        None => (0, i64::MIN, GENESIS.to_string()),
    };
    // Never earlier than the record before, so sequence order is time order.
    let time_ms = now_ms().max(last_ms);
    let seq = last_seq + 1;
    let (record, line) = seal(AuditRecord {
        seq,
        time: format_time(time_ms),
        actor: change.actor,
        action: change.action,
        repo: change.repo,
        tag: change.tag,
        digest: change.digest,
        previous: change.previous,
        reason: change.reason,
        details: change.details,
        prev,
        hash: String::new(),
    });
    txn.open_table(AUDIT)?.insert(seq, line.as_slice())?;
    if let Some(repo) = &record.repo {
        txn.open_table(AUDIT_REPOS)?
            .insert((repo.as_str(), seq), ())?;
    }
    txn.open_table(AUDIT_ACTORS)?
        .insert((record.actor.name.as_str(), seq), ())?;
    txn.open_table(AUDIT_TIMES)?.insert((time_ms, seq), ())?;
    head.insert(HEAD, (seq, time_ms, record.hash.as_str()))?;
    Ok(record)
}

pub(super) fn head(txn: &ReadTransaction) -> StoreResult<Option<(u64, String)>> {
    Ok(txn
        .open_table(AUDIT_HEAD)?
        .get(HEAD)?
        .map(|v| (v.value().0, v.value().2.to_string())))
}

/// The last record's sequence number as `txn` sees it (0 for an empty log).
pub(super) fn head_seq(txn: &WriteTransaction) -> StoreResult<u64> {
    Ok(txn
        .open_table(AUDIT_HEAD)?
        .get(HEAD)?
        .map_or(0, |v| v.value().0))
}

/// The first sequence number at or after `since_ms`.
fn first_seq_since(txn: &ReadTransaction, since_ms: i64) -> StoreResult<Option<u64>> {
    let t = txn.open_table(AUDIT_TIMES)?;
    let mut range = t.range((since_ms, 0u64)..)?;
    match range.next() {
        Some(e) => Ok(Some(e?.0.value().1)),
        None => Ok(None),
    }
}

fn line_at(
    audit: &impl ReadableTable<u64, &'static [u8]>,
    seq: u64,
) -> StoreResult<(AuditRecord, Vec<u8>)> {
    let line = audit
        .get(seq)?
        .ok_or_else(|| corrupt(format!("audit record {seq} is indexed but missing")))?
        .value()
        .to_vec();
    let record: AuditRecord = serde_json::from_slice(&line).map_err(corrupt)?;
    Ok((record, line))
}

/// Most records one page examines.
const MAX_SCAN: usize = 10_000;

pub(super) fn page(
    txn: &ReadTransaction,
    query: &AuditQuery,
    after: u64,
    limit: usize,
) -> StoreResult<AuditPage> {
    let mut start = after.saturating_add(1);
    if let Some(since) = query.since_ms {
        match first_seq_since(txn, since)? {
            Some(s) => start = start.max(s),
            None => {
                return Ok(AuditPage {
                    lines: Vec::new(),
                    next: None,
                });
            }
        }
    }
    let audit = txn.open_table(AUDIT)?;
    let (repos, actors) = (txn.open_table(AUDIT_REPOS)?, txn.open_table(AUDIT_ACTORS)?);
    // The narrowest index the query allows; each yields sequence numbers in order.
    let seqs: Box<dyn Iterator<Item = StoreResult<u64>> + '_> = match (&query.repo, &query.actor) {
        (Some(repo), _) => Box::new(
            repos
                .range((repo.as_str(), start)..=(repo.as_str(), u64::MAX))?
                .map(|e| Ok(e?.0.value().1)),
        ),
        (None, Some(actor)) => Box::new(
            actors
                .range((actor.as_str(), start)..=(actor.as_str(), u64::MAX))?
                .map(|e| Ok(e?.0.value().1)),
        ),
        (None, None) => Box::new(audit.range(start..)?.map(|e| Ok(e?.0.value()))),
    };
    let mut lines: Vec<(AuditRecord, Vec<u8>)> = Vec::new();
    for (scanned, seq) in seqs.enumerate() {
        let seq = seq?;
        if scanned == MAX_SCAN {
            // A filter the indexes cannot narrow costs at most this much a page.
            return Ok(AuditPage {
                lines,
                next: Some(seq - 1),
            });
        }
        let (record, line) = line_at(&audit, seq)?;
        let ms = crate::store::audit::time_ms(&record.time).unwrap_or(i64::MIN);
        if query.until_ms.is_some_and(|u| ms > u) {
            // Sequence order is time order: nothing later can match.
            return Ok(AuditPage { lines, next: None });
        }
        if !query.matches(&record, ms) {
            continue;
        }
        if lines.len() == limit {
            let next = lines.last().map(|(r, _)| r.seq);
            return Ok(AuditPage { lines, next });
        }
        lines.push((record, line));
    }
    Ok(AuditPage { lines, next: None })
}

pub(super) fn cursors(
    txn: &ReadTransaction,
) -> StoreResult<std::collections::BTreeMap<String, u64>> {
    let mut out = std::collections::BTreeMap::new();
    for e in txn.open_table(DELIVERY)?.iter()? {
        let (k, v) = e?;
        out.insert(k.value().to_string(), v.value());
    }
    Ok(out)
}

pub(super) fn set_cursor(txn: &WriteTransaction, receiver: &str, seq: u64) -> StoreResult<()> {
    txn.open_table(DELIVERY)?.insert(receiver, seq)?;
    Ok(())
}

#[async_trait::async_trait]
impl crate::store::audit::AuditStore for super::RedbMetaStore {
    async fn record(&self, change: Change) -> StoreResult<AuditRecord> {
        self.write(move |txn| append(txn, change)).await
    }

    async fn audit_page(
        &self,
        query: &AuditQuery,
        after: u64,
        limit: usize,
    ) -> StoreResult<AuditPage> {
        self.read(|txn| page(txn, query, after, limit))
    }

    async fn audit_head(&self) -> StoreResult<Option<(u64, String)>> {
        self.read(head)
    }

    async fn delivery_cursors(&self) -> StoreResult<std::collections::BTreeMap<String, u64>> {
        self.read(cursors)
    }

    async fn set_delivery_cursor(&self, receiver: &str, seq: u64) -> StoreResult<()> {
        let receiver = receiver.to_string();
        self.write(move |txn| set_cursor(txn, &receiver, seq)).await
    }

    fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.subscribe()
    }
}
