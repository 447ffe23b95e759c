//! Blob links and what garbage collection needs to sweep them safely while
//! pushes go on: when each link was last made or used, and sweeps whose checks
//! run inside the transaction that removes. Every function runs inside the
//! caller's transaction.

use redb::{ReadableTable, TableDefinition, WriteTransaction};

use super::{BLOB_LINKS, BLOB_REPOS, MANIFEST_REPOS, MANIFESTS, REPOS, TAGS};
use crate::oci::Digest;
use crate::store::StoreResult;

/// (repo, blob digest) -> unix ms the link was made, or last named by a
/// manifest pushed into the repository. A link without a row predates this
/// table and counts as old.
const LINK_TIMES: TableDefinition<(&str, &str), i64> = TableDefinition::new("blob_link_times");

const MAX_KEY: &str = "\u{10ffff}";

pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(LINK_TIMES)?;
    Ok(())
}

pub(super) fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// Marks links of `repo` as used now: made by a push or mount, or named by a
/// manifest being pushed. A sweep leaves a blob alone whose link is this new.
pub(super) fn touch_links(
    txn: &WriteTransaction,
    repo: &str,
    digests: &[String],
) -> StoreResult<()> {
    let now = now_ms();
    let mut t = txn.open_table(LINK_TIMES)?;
    for d in digests {
        t.insert((repo, d.as_str()), now)?;
    }
    Ok(())
}

/// Links blob `digest` of `size` bytes into `repo`, as used now.
pub(super) fn insert_link(
    txn: &WriteTransaction,
    repo: &str,
    digest: &str,
    size: u64,
) -> StoreResult<()> {
    txn.open_table(BLOB_LINKS)?.insert((repo, digest), size)?;
    txn.open_table(BLOB_REPOS)?.insert((digest, repo), ())?;
    touch_links(txn, repo, &[digest.to_string()])
}

/// Unlinks blob `digest` from `repo`; false if it was not linked.
pub(super) fn remove_link(txn: &WriteTransaction, repo: &str, digest: &str) -> StoreResult<bool> {
    let removed = txn
        .open_table(BLOB_LINKS)?
        .remove((repo, digest))?
        .is_some();
    txn.open_table(BLOB_REPOS)?.remove((digest, repo))?;
    txn.open_table(LINK_TIMES)?.remove((repo, digest))?;
    Ok(removed)
}

/// Removes every link of blob `digest`, unless it is a manifest in some
/// repository or one of its links was made or used at `cutoff_ms` or later
/// (a push, mount or manifest that came after the mark began). True if the
/// blob is no longer linked anywhere.
pub(super) fn sweep_links(
    txn: &WriteTransaction,
    digest: &str,
    cutoff_ms: i64,
) -> StoreResult<bool> {
    if txn
        .open_table(MANIFEST_REPOS)?
        .range((digest, "")..=(digest, MAX_KEY))?
        .next()
        .is_some()
    {
        return Ok(false);
    }
    let mut repos = Vec::new();
    {
        let times = txn.open_table(LINK_TIMES)?;
        for e in txn
            .open_table(BLOB_REPOS)?
            .range((digest, "")..=(digest, MAX_KEY))?
        {
            let repo = e?.0.value().1.to_string();
            let used = times.get((repo.as_str(), digest))?.map_or(0, |v| v.value());
            if used >= cutoff_ms {
                return Ok(false);
            }
            repos.push(repo);
        }
    }
    for repo in &repos {
        remove_link(txn, repo, digest)?;
    }
    Ok(true)
}

/// Removes `repo` from the catalog if it holds nothing: no manifest, no tag,
/// no blob link. True if it was removed.
pub(super) fn drop_repo_if_empty(txn: &WriteTransaction, repo: &str) -> StoreResult<bool> {
    let span = (repo, "")..=(repo, MAX_KEY);
    if txn
        .open_table(MANIFESTS)?
        .range(span.clone())?
        .next()
        .is_some()
        || txn.open_table(TAGS)?.range(span.clone())?.next().is_some()
        || txn.open_table(BLOB_LINKS)?.range(span)?.next().is_some()
    {
        return Ok(false);
    }
    Ok(txn.open_table(REPOS)?.remove(repo)?.is_some())
}

/// Whether some repository links `digest` (a mount's source, checked in the
/// transaction that links it).
pub(super) fn linked_in(
    txn: &WriteTransaction,
    digest: &Digest,
    from: Option<&str>,
) -> StoreResult<Option<u64>> {
    let d = digest.to_string();
    let links = txn.open_table(BLOB_LINKS)?;
    let repo = match from {
        Some(r) => r.to_string(),
        None => match txn
            .open_table(BLOB_REPOS)?
            .range((d.as_str(), "")..=(d.as_str(), MAX_KEY))?
            .next()
        {
            Some(e) => e?.0.value().1.to_string(),
            None => return Ok(None),
        },
    };
    Ok(links.get((repo.as_str(), d.as_str()))?.map(|v| v.value()))
}
