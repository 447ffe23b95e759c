//! The model index in redb: versions by repository, by creation time, per-model
//! totals, and blob reference counts for the deduplicated size of each model.
//! Every function runs inside the caller's transaction.

use redb::{ReadTransaction, ReadableTable, TableDefinition, TableHandle, WriteTransaction};

use super::{TAGS, corrupt, to_json};
use crate::store::StoreResult;
use crate::store::model::{ModelFilter, ModelPage, ModelRecord, ModelSummary};

/// (repo, digest) -> JSON `ModelRecord`.
const MODEL_VERSIONS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("model_versions");
/// (repo, created_ms, digest): versions in creation order (the latest is last).
const MODEL_TIMES: TableDefinition<(&str, i64, &str), ()> = TableDefinition::new("model_times");
/// repo -> (version count, bytes of distinct blobs).
const MODELS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("models");
/// (repo, blob digest) -> (versions naming it, size).
const MODEL_BLOBS: TableDefinition<(&str, &str), (u64, u64)> = TableDefinition::new("model_blobs");
/// (annotation key, value, repo, digest): the versions carrying each annotation,
/// so that a search by annotation reads the versions that match, not every one.
const MODEL_ANNOTATIONS: TableDefinition<(&str, &str, &str, &str), ()> =
    TableDefinition::new("model_annotations");

const MAX_KEY: &str = "\u{10ffff}";

pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    let had_annotations = txn
        .list_tables()?
        .any(|t| t.name() == MODEL_ANNOTATIONS.name());
    txn.open_table(MODEL_VERSIONS)?;
    txn.open_table(MODEL_TIMES)?;
    txn.open_table(MODELS)?;
    txn.open_table(MODEL_BLOBS)?;
    txn.open_table(MODEL_ANNOTATIONS)?;
    if !had_annotations {
        // A database from before the annotation index: build it from the versions.
        let versions = txn.open_table(MODEL_VERSIONS)?;
        let mut annotations = txn.open_table(MODEL_ANNOTATIONS)?;
        for entry in versions.iter()? {
            let (k, v) = entry?;
            let (repo, digest) = k.value();
            let record: ModelRecord = serde_json::from_slice(v.value()).map_err(corrupt)?;
            for (key, value) in &record.annotations {
                annotations.insert((key.as_str(), value.as_str(), repo, digest), ())?;
            }
        }
    }
    Ok(())
}

/// Indexes `record` as a version of `repo`, unless it already is.
pub(super) fn index(txn: &WriteTransaction, repo: &str, record: &ModelRecord) -> StoreResult<()> {
    let d = record.digest.to_string();
    let mut versions = txn.open_table(MODEL_VERSIONS)?;
    if versions.get((repo, d.as_str()))?.is_some() {
        return Ok(());
    }
    versions.insert((repo, d.as_str()), to_json(record)?.as_slice())?;
    txn.open_table(MODEL_TIMES)?
        .insert((repo, record.created_ms, d.as_str()), ())?;
    let mut annotations = txn.open_table(MODEL_ANNOTATIONS)?;
    for (key, value) in &record.annotations {
        annotations.insert((key.as_str(), value.as_str(), repo, d.as_str()), ())?;
    }
    let mut added = 0u64;
    let mut blobs = txn.open_table(MODEL_BLOBS)?;
    for (blob, size) in record.blobs() {
        let b = blob.to_string();
        let refs = blobs.get((repo, b.as_str()))?.map(|v| v.value().0);
        if refs.is_none() {
            added = added.saturating_add(size);
        }
        blobs.insert((repo, b.as_str()), (refs.unwrap_or(0) + 1, size))?;
    }
    let mut models = txn.open_table(MODELS)?;
    let (count, total) = models.get(repo)?.map(|v| v.value()).unwrap_or((0, 0));
    models.insert(repo, (count + 1, total.saturating_add(added)))?;
    Ok(())
}

/// Removes version `digest` of `repo` from the index, if indexed.
pub(super) fn unindex(txn: &WriteTransaction, repo: &str, digest: &str) -> StoreResult<()> {
    let record: ModelRecord = {
        let mut versions = txn.open_table(MODEL_VERSIONS)?;
        let Some(json) = versions.remove((repo, digest))? else {
            return Ok(());
        };
        serde_json::from_slice(json.value()).map_err(corrupt)?
    };
    txn.open_table(MODEL_TIMES)?
        .remove((repo, record.created_ms, digest))?;
    let mut annotations = txn.open_table(MODEL_ANNOTATIONS)?;
    for (key, value) in &record.annotations {
        annotations.remove((key.as_str(), value.as_str(), repo, digest))?;
    }
    let mut freed = 0u64;
    let mut blobs = txn.open_table(MODEL_BLOBS)?;
    for blob in record.blobs().keys() {
        let b = blob.to_string();
        let entry = blobs.get((repo, b.as_str()))?.map(|v| v.value());
        match entry {
            Some((refs, size)) if refs > 1 => {
                blobs.insert((repo, b.as_str()), (refs - 1, size))?;
            }
            Some((_, size)) => {
                blobs.remove((repo, b.as_str()))?;
                // Sizes are client-declared; the totals saturate as they do when indexing.
                freed = freed.saturating_add(size);
            }
            None => {}
        }
    }
    let mut models = txn.open_table(MODELS)?;
    let (count, total) = models.get(repo)?.map(|v| v.value()).unwrap_or((0, 0));
    if count <= 1 {
        models.remove(repo)?;
    } else {
        models.insert(repo, (count - 1, total.saturating_sub(freed)))?;
    }
    Ok(())
}

pub(super) fn version(
    txn: &ReadTransaction,
    repo: &str,
    digest: &str,
) -> StoreResult<Option<ModelRecord>> {
    match txn.open_table(MODEL_VERSIONS)?.get((repo, digest))? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(corrupt)?)),
        None => Ok(None),
    }
}

pub(super) fn versions(txn: &ReadTransaction, repo: &str) -> StoreResult<Vec<ModelRecord>> {
    let t = txn.open_table(MODEL_VERSIONS)?;
    let mut out = Vec::new();
    for entry in t.range((repo, "")..)? {
        let (k, v) = entry?;
        if k.value().0 != repo {
            break;
        }
        out.push(serde_json::from_slice(v.value()).map_err(corrupt)?);
    }
    Ok(out)
}

/// Whether a version of `repo` carries every annotation `filter` asks for; only
/// the versions carrying the first one are read.
fn has_matching_version(
    txn: &ReadTransaction,
    repo: &str,
    filter: &ModelFilter,
) -> StoreResult<bool> {
    let Some((key, value)) = filter.annotations.first() else {
        return Ok(true);
    };
    let (key, value) = (key.as_str(), value.as_str());
    let t = txn.open_table(MODEL_ANNOTATIONS)?;
    for entry in t.range((key, value, repo, "")..=(key, value, repo, MAX_KEY))? {
        let digest = entry?.0.value().3.to_string();
        if version(txn, repo, &digest)?.is_some_and(|v| filter.matches_version(&v)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The digest of the version of `repo` created last.
fn latest_digest(txn: &ReadTransaction, repo: &str) -> StoreResult<Option<String>> {
    let t = txn.open_table(MODEL_TIMES)?;
    let mut range = t.range((repo, i64::MIN, "")..=(repo, i64::MAX, MAX_KEY))?;
    match range.next_back() {
        Some(entry) => Ok(Some(entry?.0.value().2.to_string())),
        None => Ok(None),
    }
}

/// Tags of `repo` that point at `digest`.
fn tags_of(txn: &ReadTransaction, repo: &str, digest: &str) -> StoreResult<Vec<String>> {
    let t = txn.open_table(TAGS)?;
    let mut out = Vec::new();
    for entry in t.range((repo, "")..)? {
        let (k, v) = entry?;
        let (r, tag) = k.value();
        if r != repo {
            break;
        }
        if v.value() == digest {
            out.push(tag.to_string());
        }
    }
    Ok(out)
}

pub(super) fn list(
    txn: &ReadTransaction,
    after: Option<&str>,
    limit: usize,
    filter: &ModelFilter,
) -> StoreResult<ModelPage> {
    let models = txn.open_table(MODELS)?;
    let iter = match after {
        Some(a) => models.range(a..)?,
        None => models.range::<&str>(..)?,
    };
    let mut items = Vec::new();
    let mut more = false;
    for entry in iter {
        let (k, v) = entry?;
        let name = k.value();
        if after == Some(name) || !filter.matches_name(name) {
            continue;
        }
        if !has_matching_version(txn, name, filter)? {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        let Some(latest) = latest_digest(txn, name)? else {
            continue;
        };
        let Some(record) = version(txn, name, &latest)? else {
            return Err(corrupt(format!(
                "model {name}: latest version {latest} is missing"
            )));
        };
        let (count, total) = v.value();
        items.push(ModelSummary {
            name: name.to_string(),
            versions: count,
            total_size: total,
            latest_tags: tags_of(txn, name, &latest)?,
            latest: record,
        });
    }
    Ok(ModelPage { items, more })
}
