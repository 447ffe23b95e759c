//! What storage accounting and garbage collection walk: a repository's
//! manifests and blob links, page by page in digest order. Every function runs
//! inside the caller's transaction.

use redb::{ReadTransaction, ReadableTable};

use super::{BLOB_LINKS, MANIFESTS, corrupt};
use crate::oci::Digest;
use crate::store::{ManifestRecord, StoreResult};

/// Up to `limit` entries of `repo` after `after` in a (repo, digest) table.
fn page<V: redb::Value + 'static, T>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    repo: &str,
    after: Option<&Digest>,
    limit: usize,
    mut decode: impl FnMut(&str, V::SelfType<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let after = after.map(|d| d.to_string());
    let start = after.as_deref().unwrap_or("");
    let mut out = Vec::new();
    for entry in table.range((repo, start)..)? {
        let (k, v) = entry?;
        let (r, digest) = k.value();
        if r != repo || out.len() == limit {
            break;
        }
        if after.as_deref() == Some(digest) {
            continue;
        }
        out.push(decode(digest, v.value())?);
    }
    Ok(out)
}

pub(super) fn manifests_page(
    txn: &ReadTransaction,
    repo: &str,
    after: Option<&Digest>,
    limit: usize,
) -> StoreResult<Vec<ManifestRecord>> {
    let t = txn.open_table(MANIFESTS)?;
    page(&t, repo, after, limit, |_, json| {
        serde_json::from_slice(json).map_err(corrupt)
    })
}

pub(super) fn blob_links_page(
    txn: &ReadTransaction,
    repo: &str,
    after: Option<&Digest>,
    limit: usize,
) -> StoreResult<Vec<(Digest, u64)>> {
    let t = txn.open_table(BLOB_LINKS)?;
    page(&t, repo, after, limit, |digest, size| {
        Ok((digest.parse().map_err(corrupt)?, size))
    })
}
