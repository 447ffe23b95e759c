//! Upload sessions in redb: one record per session, and an index by owner so
//! that a cap on open sessions costs at most the cap's rows. Every function
//! runs inside the caller's transaction.

use redb::{ReadTransaction, ReadableTable, TableDefinition, WriteTransaction};

use super::{Unit, corrupt};
use crate::store::{StoreError, StoreResult, UploadRecord};

/// id -> JSON `UploadRecord`.
const UPLOADS: TableDefinition<&str, &[u8]> = TableDefinition::new("uploads");
/// (owner, id): the open sessions of each owner.
const UPLOAD_OWNERS: TableDefinition<(&str, &str), Unit> = TableDefinition::new("upload_owners");

pub(super) fn create_tables(txn: &WriteTransaction) -> StoreResult<()> {
    txn.open_table(UPLOADS)?;
    txn.open_table(UPLOAD_OWNERS)?;
    Ok(())
}

pub(super) fn create(
    txn: &WriteTransaction,
    id: &str,
    json: &[u8],
    owner: Option<&str>,
    max_per_owner: usize,
) -> StoreResult<()> {
    if let Some(owner) = owner {
        let mut owners = txn.open_table(UPLOAD_OWNERS)?;
        // Counting stops at the cap: a check costs at most `max_per_owner` rows.
        let open = owners
            .range((owner, "")..)?
            .take_while(|e| e.as_ref().is_ok_and(|(k, _)| k.value().0 == owner))
            .take(max_per_owner)
            .count();
        if open >= max_per_owner {
            return Err(StoreError::TooManyUploads {
                owner: owner.to_string(),
                max: max_per_owner,
            });
        }
        owners.insert((owner, id), ())?;
    }
    txn.open_table(UPLOADS)?.insert(id, json)?;
    Ok(())
}

pub(super) fn get(txn: &ReadTransaction, id: &str) -> StoreResult<Option<UploadRecord>> {
    match txn.open_table(UPLOADS)?.get(id)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(corrupt)?)),
        None => Ok(None),
    }
}

/// Rewrites a session's record; false if the session is gone.
pub(super) fn update(txn: &WriteTransaction, id: &str, json: &[u8]) -> StoreResult<bool> {
    let mut uploads = txn.open_table(UPLOADS)?;
    if uploads.get(id)?.is_none() {
        return Ok(false);
    }
    uploads.insert(id, json)?;
    Ok(true)
}

pub(super) fn list(txn: &ReadTransaction) -> StoreResult<Vec<(String, UploadRecord)>> {
    let mut out = Vec::new();
    for entry in txn.open_table(UPLOADS)?.iter()? {
        let (k, v) = entry?;
        let record = serde_json::from_slice(v.value()).map_err(corrupt)?;
        out.push((k.value().to_string(), record));
    }
    Ok(out)
}

pub(super) fn delete(txn: &WriteTransaction, id: &str) -> StoreResult<()> {
    let owner = match txn.open_table(UPLOADS)?.remove(id)? {
        Some(v) => {
            serde_json::from_slice::<UploadRecord>(v.value())
                .map_err(corrupt)?
                .owner
        }
        None => None,
    };
    if let Some(owner) = owner {
        txn.open_table(UPLOAD_OWNERS)?
            .remove((owner.as_str(), id))?;
    }
    Ok(())
}
