//! `MetaStore` on redb: one embedded file, serialisable transactions.
//!
//! Reads run inline (microseconds, no thread hop on the tag-resolve hot path);
//! writes run on the blocking pool because a durable commit waits for fsync.

mod audit;
mod gc;
mod models;
mod review;
mod robots;
mod storage;
mod tags;
mod uploads;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use redb::{
    Database, Durability, ReadTransaction, ReadableDatabase, ReadableTable, TableDefinition,
    WriteTransaction,
};

use super::audit::{Action, Actor, Change};
use super::meta::{ManifestPut, ManifestRecord, ManifestStored, MetaStore, Page, UploadRecord};
use super::model::{ModelFilter, ModelPage, ModelRecord};

use super::tags::{MoveKind, TagMove, TagPolicy, Unguarded};
use super::{StoreError, StoreResult};
use crate::oci::{Descriptor, Digest};

type Unit = ();
const REPOS: TableDefinition<&str, Unit> = TableDefinition::new("repos");
/// (repo, digest) -> size.
const BLOB_LINKS: TableDefinition<(&str, &str), u64> = TableDefinition::new("blob_links");
/// (digest, repo): reverse of `BLOB_LINKS`.
const BLOB_REPOS: TableDefinition<(&str, &str), Unit> = TableDefinition::new("blob_repos");
/// (repo, digest) -> JSON `ManifestRecord`.
const MANIFESTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("manifests");
/// (digest, repo): reverse of `MANIFESTS`.
const MANIFEST_REPOS: TableDefinition<(&str, &str), Unit> = TableDefinition::new("manifest_repos");
/// (repo, tag) -> digest.
const TAGS: TableDefinition<(&str, &str), &str> = TableDefinition::new("tags");
/// (repo, subject, referrer) -> JSON `Descriptor`.
const REFERRERS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("referrers");

pub struct RedbMetaStore {
    db: Arc<Database>,
    durable: bool,
    /// The audit log's head sequence number, sent when a commit appends to it,
    /// for readers waiting on the log (event deliveries, the event stream).
    committed: Arc<tokio::sync::watch::Sender<u64>>,
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn to_json<T: serde::Serialize>(v: &T) -> StoreResult<Vec<u8>> {
    serde_json::to_vec(v).map_err(corrupt)
}

impl RedbMetaStore {
    /// Opens or creates the database file. With `durable` off, commits skip fsync.
    pub fn open(path: &Path, durable: bool) -> StoreResult<Self> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            txn.open_table(REPOS)?;
            txn.open_table(BLOB_LINKS)?;
            txn.open_table(BLOB_REPOS)?;
            txn.open_table(MANIFESTS)?;
            txn.open_table(MANIFEST_REPOS)?;
            txn.open_table(TAGS)?;
            txn.open_table(REFERRERS)?;
            uploads::create_tables(&txn)?;
            models::create_tables(&txn)?;
            tags::create_tables(&txn)?;
            audit::create_tables(&txn)?;
            review::create_tables(&txn)?;
            robots::create_tables(&txn)?;
            gc::create_tables(&txn)?;
        }
        txn.commit()?;
        let head = audit::head(&db.begin_read()?)?.map_or(0, |(seq, _)| seq);
        Ok(RedbMetaStore {
            db: Arc::new(db),
            durable,
            committed: Arc::new(tokio::sync::watch::Sender::new(head)),
        })
    }

    fn read<T>(&self, f: impl FnOnce(&ReadTransaction) -> StoreResult<T>) -> StoreResult<T> {
        let txn = self.db.begin_read()?;
        f(&txn)
    }

    async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.write_if(move |txn| f(txn).map(|out| (out, true)))
            .await
    }

    /// A write transaction that commits only if `f` says so (a dry run aborts).
    async fn write_if<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> StoreResult<(T, bool)> + Send + 'static,
    ) -> StoreResult<T> {
        let db = self.db.clone();
        let durable = self.durable;
        let committed = self.committed.clone();
        tokio::task::spawn_blocking(move || {
            let mut txn = db.begin_write()?;
            if !durable {
                txn.set_durability(Durability::None)
                    .map_err(|e| StoreError::Meta(e.to_string()))?;
            }
            let (out, commit) = f(&txn)?;
            if commit {
                let head = audit::head_seq(&txn)?;
                txn.commit()?;
                committed.send_if_modified(|n| std::mem::replace(n, head) != head);
            } else {
                txn.abort()?;
            }
            Ok(out)
        })
        .await
        .map_err(|e| StoreError::Meta(format!("metadata writer failed: {e}")))?
    }
}

fn ensure_repo(txn: &WriteTransaction, repo: &str) -> StoreResult<()> {
    let mut repos = txn.open_table(REPOS)?;
    if repos.get(repo)?.is_none() {
        repos.insert(repo, ())?;
    }
    Ok(())
}

/// The first of `digests` with no `(repo, digest)` key in `table`, as an error.
fn require_all<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    repo: &str,
    digests: &[Digest],
) -> StoreResult<()> {
    for d in digests {
        if table.get((repo, d.to_string().as_str()))?.is_none() {
            return Err(StoreError::ReferenceMissing(d.clone()));
        }
    }
    Ok(())
}

/// Keys of a two-part table whose first part is `first`, after `after` (exclusive).
fn page_of<V: redb::Value + 'static>(
    table: &impl ReadableTable<(&'static str, &'static str), V>,
    first: &str,
    after: Option<&str>,
    limit: usize,
) -> StoreResult<Page> {
    let start = after.unwrap_or("");
    let mut items = Vec::new();
    let mut more = false;
    for entry in table.range((first, start)..)? {
        let (k, _) = entry?;
        let (f, second) = k.value();
        if f != first {
            break;
        }
        if after.is_some_and(|a| a == second) {
            continue;
        }
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(second.to_string());
    }
    Ok(Page { items, more })
}

/// Deletes a manifest of `repo` with its tags (each a move `policy` judges),
/// its referrer entry, model index and review rows, and audits it.
fn remove_manifest(
    txn: &WriteTransaction,
    repo: &str,
    digest: &Digest,
    actor: &Actor,
    policy: &dyn TagPolicy,
) -> StoreResult<Option<ManifestRecord>> {
    let d = digest.to_string();
    if txn
        .open_table(MANIFESTS)?
        .get((repo, d.as_str()))?
        .is_none()
    {
        return Ok(None);
    }
    // First the tags: a guarded one refuses the whole delete.
    tags::remove_tags_of(txn, repo, digest, actor, policy)?;
    let record: ManifestRecord = {
        let mut manifests = txn.open_table(MANIFESTS)?;
        let Some(json) = manifests.remove((repo, d.as_str()))? else {
            return Ok(None);
        };
        serde_json::from_slice(json.value()).map_err(corrupt)?
    };
    txn.open_table(MANIFEST_REPOS)?.remove((d.as_str(), repo))?;
    if let Some(subject) = &record.subject {
        let s = subject.to_string();
        txn.open_table(REFERRERS)?
            .remove((repo, s.as_str(), d.as_str()))?;
    }
    models::unindex(txn, repo, &d)?;
    review::forget(txn, repo, &d)?;
    let change = Change::new(actor, Action::ManifestDelete)
        .repo(repo)
        .digest(digest);
    audit::append(txn, change)?;
    Ok(Some(record))
}

#[async_trait]
impl MetaStore for RedbMetaStore {
    async fn link_blob(&self, repo: &str, digest: &Digest, size: u64) -> StoreResult<()> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.write(move |txn| {
            ensure_repo(txn, &repo)?;
            gc::insert_link(txn, &repo, &d, size)
        })
        .await
    }

    async fn mount_blob(
        &self,
        repo: &str,
        digest: &Digest,
        from: Option<&str>,
    ) -> StoreResult<Option<u64>> {
        let (repo, digest, from) = (repo.to_string(), digest.clone(), from.map(str::to_string));
        self.write(move |txn| {
            let Some(size) = gc::linked_in(txn, &digest, from.as_deref())? else {
                return Ok(None);
            };
            ensure_repo(txn, &repo)?;
            gc::insert_link(txn, &repo, &digest.to_string(), size)?;
            Ok(Some(size))
        })
        .await
    }

    async fn blob_link(&self, repo: &str, digest: &Digest) -> StoreResult<Option<u64>> {
        let d = digest.to_string();
        self.read(|txn| {
            let t = txn.open_table(BLOB_LINKS)?;
            Ok(t.get((repo, d.as_str()))?.map(|v| v.value()))
        })
    }

    async fn unlink_blob(&self, repo: &str, digest: &Digest) -> StoreResult<bool> {
        let (repo, d) = (repo.to_string(), digest.to_string());
        self.write(move |txn| gc::remove_link(txn, &repo, &d)).await
    }

    async fn blob_linked_anywhere(&self, digest: &Digest) -> StoreResult<bool> {
        let d = digest.to_string();
        self.read(|txn| {
            let t = txn.open_table(BLOB_REPOS)?;
            Ok(!page_of(&t, &d, None, 1)?.items.is_empty())
        })
    }

    async fn put_manifest(
        &self,
        put: ManifestPut<'_>,
        policy: Arc<dyn TagPolicy>,
    ) -> StoreResult<ManifestStored> {
        let record = put.record;
        let repo = put.repo.to_string();
        let tag_move = put.tag.map(|t| {
            TagMove::new(
                put.repo,
                t,
                Some(record.digest.clone()),
                MoveKind::Push,
                put.actor,
            )
        });
        let model = put.model.cloned();
        let actor = put.actor.clone();
        let (need_blobs, need_manifests) =
            (put.required.blobs.to_vec(), put.required.manifests.to_vec());
        let digest = record.digest.clone();
        let d = digest.to_string();
        let json = to_json(record)?;
        let referrer = match &record.subject {
            Some(s) => Some((s.to_string(), to_json(&record.descriptor())?)),
            None => None,
        };
        let details = serde_json::json!({
            "mediaType": record.media_type,
            "size": record.size,
            "artifactType": record.artifact_type,
            "subject": record.subject,
            "model": model.as_ref().map(|m| m.kind.clone()),
        });
        self.write(move |txn| {
            // Checked where a concurrent delete is serialised against this write.
            require_all(&txn.open_table(BLOB_LINKS)?, &repo, &need_blobs)?;
            require_all(&txn.open_table(MANIFESTS)?, &repo, &need_manifests)?;
            // Named by a manifest now: a sweep that began before leaves them.
            let named: Vec<String> = need_blobs.iter().map(Digest::to_string).collect();
            gc::touch_links(txn, &repo, &named)?;
            ensure_repo(txn, &repo)?;
            let new = {
                let mut manifests = txn.open_table(MANIFESTS)?;
                let new = manifests.get((repo.as_str(), d.as_str()))?.is_none();
                if new {
                    manifests.insert((repo.as_str(), d.as_str()), json.as_slice())?;
                }
                new
            };
            if new {
                txn.open_table(MANIFEST_REPOS)?
                    .insert((d.as_str(), repo.as_str()), ())?;
                if let Some((subject, desc)) = &referrer {
                    txn.open_table(REFERRERS)?.insert(
                        (repo.as_str(), subject.as_str(), d.as_str()),
                        desc.as_slice(),
                    )?;
                }
                if let Some(model) = &model {
                    models::index(txn, &repo, model)?;
                }
                review::set_pusher(txn, &repo, &d, &actor)?;
                let change = Change::new(&actor, Action::ManifestPush)
                    .repo(&repo)
                    .digest(&digest)
                    .details(details);
                audit::append(txn, change)?;
            }
            let tag = match &tag_move {
                Some(m) => Some(tags::move_tag(txn, m, policy.as_ref())?),
                None => None,
            };
            Ok(ManifestStored { new, tag })
        })
        .await
    }

    async fn manifest(&self, repo: &str, digest: &Digest) -> StoreResult<Option<ManifestRecord>> {
        let d = digest.to_string();
        self.read(|txn| {
            let t = txn.open_table(MANIFESTS)?;
            match t.get((repo, d.as_str()))? {
                Some(v) => Ok(Some(serde_json::from_slice(v.value()).map_err(corrupt)?)),
                None => Ok(None),
            }
        })
    }

    async fn delete_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        actor: &Actor,
        policy: Arc<dyn TagPolicy>,
    ) -> StoreResult<Option<ManifestRecord>> {
        let (repo, digest, actor) = (repo.to_string(), digest.clone(), actor.clone());
        self.write(move |txn| remove_manifest(txn, &repo, &digest, &actor, policy.as_ref()))
            .await
    }

    async fn delete_untagged_manifest(
        &self,
        repo: &str,
        digest: &Digest,
        actor: &Actor,
    ) -> StoreResult<Option<ManifestRecord>> {
        let (repo, digest, actor) = (repo.to_string(), digest.clone(), actor.clone());
        self.write(move |txn| {
            if tags::is_tagged(txn, &repo, &digest.to_string())? {
                return Ok(None);
            }
            // Untagged: no tag move for the policy to judge.
            remove_manifest(txn, &repo, &digest, &actor, &Unguarded)
        })
        .await
    }

    async fn held_since(&self, repo: &str, since_ms: i64) -> StoreResult<BTreeSet<Digest>> {
        self.read(|txn| tags::held_since(txn, repo, since_ms))
    }

    async fn sweep_blob_links(
        &self,
        digests: Vec<Digest>,
        cutoff_ms: i64,
        apply: bool,
    ) -> StoreResult<Vec<Digest>> {
        self.write_if(move |txn| {
            let mut swept = Vec::new();
            for d in digests {
                if gc::sweep_links(txn, &d.to_string(), cutoff_ms)? {
                    swept.push(d);
                }
            }
            Ok((swept, apply))
        })
        .await
    }

    async fn drop_repo_if_empty(&self, repo: &str) -> StoreResult<bool> {
        let repo = repo.to_string();
        self.write(move |txn| gc::drop_repo_if_empty(txn, &repo))
            .await
    }

    async fn manifest_anywhere(&self, digest: &Digest) -> StoreResult<bool> {
        let d = digest.to_string();
        self.read(|txn| {
            let t = txn.open_table(MANIFEST_REPOS)?;
            Ok(!page_of(&t, &d, None, 1)?.items.is_empty())
        })
    }

    async fn tags_by_digest(&self, repo: &str) -> StoreResult<BTreeMap<Digest, Vec<String>>> {
        self.read(|txn| {
            let t = txn.open_table(TAGS)?;
            let mut out: BTreeMap<Digest, Vec<String>> = BTreeMap::new();
            for entry in t.range((repo, "")..)? {
                let (k, v) = entry?;
                let (r, tag) = k.value();
                if r != repo {
                    break;
                }
                let d: Digest = v.value().parse().map_err(corrupt)?;
                out.entry(d).or_default().push(tag.to_string());
            }
            Ok(out)
        })
    }

    async fn resolve_tag(&self, repo: &str, tag: &str) -> StoreResult<Option<Digest>> {
        self.read(|txn| {
            let t = txn.open_table(TAGS)?;
            match t.get((repo, tag))? {
                Some(v) => Ok(Some(v.value().parse().map_err(corrupt)?)),
                None => Ok(None),
            }
        })
    }

    async fn list_tags(&self, repo: &str, last: Option<&str>, limit: usize) -> StoreResult<Page> {
        self.read(|txn| page_of(&txn.open_table(TAGS)?, repo, last, limit))
    }

    async fn repo_exists(&self, repo: &str) -> StoreResult<bool> {
        self.read(|txn| Ok(txn.open_table(REPOS)?.get(repo)?.is_some()))
    }

    async fn manifests_page(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> StoreResult<Vec<ManifestRecord>> {
        self.read(|txn| storage::manifests_page(txn, repo, after, limit))
    }

    async fn blob_links_page(
        &self,
        repo: &str,
        after: Option<&Digest>,
        limit: usize,
    ) -> StoreResult<Vec<(Digest, u64)>> {
        self.read(|txn| storage::blob_links_page(txn, repo, after, limit))
    }

    async fn list_repos(&self, last: Option<&str>, limit: usize) -> StoreResult<Page> {
        self.read(|txn| {
            let t = txn.open_table(REPOS)?;
            let mut items = Vec::new();
            let mut more = false;
            let iter = match last {
                Some(l) => t.range(l..)?,
                None => t.range::<&str>(..)?,
            };
            for entry in iter {
                let (k, _) = entry?;
                let name = k.value();
                if last == Some(name) {
                    continue;
                }
                if items.len() == limit {
                    more = true;
                    break;
                }
                items.push(name.to_string());
            }
            Ok(Page { items, more })
        })
    }

    async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        after: Option<&str>,
        artifact_type: Option<&str>,
        limit: usize,
    ) -> StoreResult<(Vec<Descriptor>, bool)> {
        let s = subject.to_string();
        self.read(|txn| {
            let t = txn.open_table(REFERRERS)?;
            let mut out = Vec::new();
            for entry in t.range((repo, s.as_str(), after.unwrap_or(""))..)? {
                let (k, v) = entry?;
                let (r, subj, digest) = k.value();
                if r != repo || subj != s {
                    break;
                }
                if after == Some(digest) {
                    continue;
                }
                let d: Descriptor = serde_json::from_slice(v.value()).map_err(corrupt)?;
                if artifact_type.is_some_and(|t| d.artifact_type.as_deref() != Some(t)) {
                    continue;
                }
                if out.len() == limit {
                    return Ok((out, true));
                }
                out.push(d);
            }
            Ok((out, false))
        })
    }

    async fn model_version(&self, repo: &str, digest: &Digest) -> StoreResult<Option<ModelRecord>> {
        let d = digest.to_string();
        self.read(|txn| models::version(txn, repo, &d))
    }

    async fn model_versions(&self, repo: &str) -> StoreResult<Vec<ModelRecord>> {
        self.read(|txn| models::versions(txn, repo))
    }

    async fn list_models(
        &self,
        after: Option<&str>,
        limit: usize,
        filter: &ModelFilter,
    ) -> StoreResult<ModelPage> {
        self.read(|txn| models::list(txn, after, limit, filter))
    }

    async fn create_upload(
        &self,
        id: &str,
        record: &UploadRecord,
        max_per_owner: usize,
    ) -> StoreResult<()> {
        let (id, json, owner) = (id.to_string(), to_json(record)?, record.owner.clone());
        self.write(move |txn| uploads::create(txn, &id, &json, owner.as_deref(), max_per_owner))
            .await
    }

    async fn upload(&self, id: &str) -> StoreResult<Option<UploadRecord>> {
        self.read(|txn| uploads::get(txn, id))
    }

    async fn update_upload(&self, id: &str, record: &UploadRecord) -> StoreResult<bool> {
        let (id, json) = (id.to_string(), to_json(record)?);
        self.write(move |txn| uploads::update(txn, &id, &json))
            .await
    }

    async fn list_uploads(&self) -> StoreResult<Vec<(String, UploadRecord)>> {
        self.read(uploads::list)
    }

    async fn delete_upload(&self, id: &str) -> StoreResult<()> {
        let id = id.to_string();
        self.write(move |txn| uploads::delete(txn, &id)).await
    }
}
