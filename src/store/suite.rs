//! The storage test suite every backend must pass: a `BlobStore` or `MetaStore`
//! implementation is done when these run clean against it.

pub(crate) mod blobs;
mod gc;
mod models;
mod tags;

use std::collections::BTreeMap;

use super::model::ModelRecord;
use super::tags::unguarded;
use super::{
    Actor, ManifestPut, ManifestRecord, ManifestStored, MetaStore, MoveKind, Required, StoreError,
    StoreResult, TagMove, UploadRecord, UploadState,
};
use crate::oci::{Algorithm, Descriptor, Digest};

/// A push by the suite, with no policy.
pub(super) async fn put(
    meta: &dyn MetaStore,
    repo: &str,
    record: &ManifestRecord,
    tag: Option<&str>,
    model: Option<&ModelRecord>,
    required: Required<'_>,
) -> StoreResult<ManifestStored> {
    let actor = Actor::local("suite");
    let put = ManifestPut {
        repo,
        record,
        tag,
        model,
        required,
        actor: &actor,
    };
    meta.put_manifest(put, unguarded()).await
}

/// A delete by the suite, with no policy.
pub(super) async fn del(
    meta: &dyn MetaStore,
    repo: &str,
    digest: &Digest,
) -> StoreResult<Option<ManifestRecord>> {
    meta.delete_manifest(repo, digest, &Actor::local("suite"), unguarded())
        .await
}

pub(super) fn record(seed: &[u8], subject: Option<&Digest>) -> ManifestRecord {
    ManifestRecord {
        digest: Digest::sha256_of(seed),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: seed.len() as u64,
        artifact_type: Some("application/vnd.example".into()),
        subject: subject.cloned(),
        annotations: BTreeMap::from([("k".to_string(), "v".to_string())]),
        references: vec![Digest::sha256_of(b"config")],
        pushed_ms: 1,
    }
}

pub async fn meta_store(meta: &dyn MetaStore) {
    let b = Digest::sha256_of(b"blob");
    assert!(!meta.repo_exists("r/one").await.unwrap());
    meta.link_blob("r/one", &b, 4).await.unwrap();
    assert!(meta.repo_exists("r/one").await.unwrap());
    assert_eq!(meta.blob_link("r/one", &b).await.unwrap(), Some(4));
    assert_eq!(meta.blob_link("r/two", &b).await.unwrap(), None);
    assert!(meta.blob_linked_anywhere(&b).await.unwrap());
    assert!(meta.unlink_blob("r/one", &b).await.unwrap());
    assert!(!meta.unlink_blob("r/one", &b).await.unwrap());
    assert!(!meta.blob_linked_anywhere(&b).await.unwrap());

    // What a manifest requires is checked as it is stored: missing, nothing is written.
    let needy = record(b"needs a blob", None);
    let child = record(b"a child", None).digest;
    for required in [
        Required {
            blobs: std::slice::from_ref(&b),
            manifests: &[],
        },
        Required {
            blobs: &[],
            manifests: std::slice::from_ref(&child),
        },
    ] {
        let err = put(meta, "r/one", &needy, Some("needy"), None, required)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::ReferenceMissing(_)), "{err}");
        assert_eq!(meta.manifest("r/one", &needy.digest).await.unwrap(), None);
        assert_eq!(meta.resolve_tag("r/one", "needy").await.unwrap(), None);
    }
    meta.link_blob("r/one", &b, 4).await.unwrap();
    let required = Required {
        blobs: std::slice::from_ref(&b),
        manifests: &[],
    };
    put(meta, "r/one", &needy, None, None, required)
        .await
        .unwrap();
    assert!(
        meta.manifest("r/one", &needy.digest)
            .await
            .unwrap()
            .is_some()
    );
    assert!(del(meta, "r/one", &needy.digest).await.unwrap().is_some());
    assert!(meta.unlink_blob("r/one", &b).await.unwrap());

    // Manifests, tags and referrers.
    let subject = record(b"subject", None);
    put(meta, "r/one", &subject, Some("v1"), None, Required::NONE)
        .await
        .unwrap();
    let referrer = record(b"referrer", Some(&subject.digest));
    put(meta, "r/one", &referrer, None, None, Required::NONE)
        .await
        .unwrap();
    assert_eq!(
        meta.manifest("r/one", &subject.digest).await.unwrap(),
        Some(subject.clone())
    );
    assert_eq!(meta.manifest("r/two", &subject.digest).await.unwrap(), None);
    assert!(meta.manifest_anywhere(&subject.digest).await.unwrap());
    assert_eq!(
        meta.resolve_tag("r/one", "v1").await.unwrap(),
        Some(subject.digest.clone())
    );
    let refs = meta.referrers("r/one", &subject.digest, None, None, 10);
    assert_eq!(refs.await.unwrap(), (vec![referrer.descriptor()], false));
    let refs = meta.referrers("r/two", &subject.digest, None, None, 10);
    assert_eq!(refs.await.unwrap(), (vec![], false));

    // Referrer pages: digest order after `after`, one artifact type if asked, at most
    // `limit` and whether more remain.
    let other = Digest::sha256_of(b"another subject");
    let mut paged: Vec<ManifestRecord> = (0..5u8)
        .map(|i| {
            let mut r = record(&[b'p', i], Some(&other));
            r.artifact_type = Some(if i % 2 == 0 { "even" } else { "odd" }.into());
            r
        })
        .collect();
    for r in &paged {
        put(meta, "r/one", r, None, None, Required::NONE)
            .await
            .unwrap();
    }
    paged.sort_by_key(|r| r.digest.to_string());
    let descs: Vec<Descriptor> = paged.iter().map(ManifestRecord::descriptor).collect();
    let page = |after: Option<String>, t: Option<&'static str>, limit| {
        let other = other.clone();
        async move {
            meta.referrers("r/one", &other, after.as_deref(), t, limit)
                .await
                .unwrap()
        }
    };
    assert_eq!(page(None, None, 2).await, (descs[..2].to_vec(), true));
    let after = Some(descs[1].digest.to_string());
    assert_eq!(page(after, None, 3).await, (descs[2..].to_vec(), false));
    let after = Some(descs[4].digest.to_string());
    assert_eq!(page(after, None, 3).await, (vec![], false));
    let odd: Vec<Descriptor> = descs
        .iter()
        .filter(|d| d.artifact_type.as_deref() == Some("odd"))
        .cloned()
        .collect();
    assert_eq!(page(None, Some("odd"), 1).await, (odd[..1].to_vec(), true));
    let after = Some(odd[0].digest.to_string());
    assert_eq!(
        page(after, Some("odd"), 5).await,
        (odd[1..].to_vec(), false)
    );
    for r in &paged {
        del(meta, "r/one", &r.digest).await.unwrap();
    }

    for t in ["b", "a", "c", "v2"] {
        put(meta, "r/one", &subject, Some(t), None, Required::NONE)
            .await
            .unwrap();
    }
    let page = meta.list_tags("r/one", None, 2).await.unwrap();
    assert_eq!(
        (page.items.as_slice(), page.more),
        (&["a".to_string(), "b".to_string()][..], true)
    );
    let page = meta.list_tags("r/one", Some("b"), 10).await.unwrap();
    assert_eq!(
        (page.items.as_slice(), page.more),
        (&["c".into(), "v1".into(), "v2".into()][..], false)
    );
    let untag = TagMove::new("r/one", "c", None, MoveKind::Delete, &Actor::local("suite"));
    let moved = meta.move_tag(untag.clone(), unguarded()).await.unwrap();
    assert_eq!(moved.previous, Some(subject.digest.clone()));
    assert!(moved.entry.is_some());
    let moved = meta.move_tag(untag, unguarded()).await.unwrap();
    assert_eq!((moved.previous, moved.entry), (None, None));

    // Deleting a manifest removes its tags and its referrer entry, nothing else.
    put(
        meta,
        "r/onex",
        &subject,
        Some("other-repo"),
        None,
        Required::NONE,
    )
    .await
    .unwrap();
    assert!(
        del(meta, "r/one", &referrer.digest)
            .await
            .unwrap()
            .is_some()
    );
    let refs = meta.referrers("r/one", &subject.digest, None, None, 10);
    assert_eq!(refs.await.unwrap(), (vec![], false));
    assert!(del(meta, "r/one", &subject.digest).await.unwrap().is_some());
    assert!(del(meta, "r/one", &subject.digest).await.unwrap().is_none());
    assert!(
        meta.list_tags("r/one", None, 10)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        meta.resolve_tag("r/onex", "other-repo").await.unwrap(),
        Some(subject.digest.clone())
    );
    assert!(meta.manifest_anywhere(&subject.digest).await.unwrap());

    // Catalog order and pagination.
    let page = meta.list_repos(None, 1).await.unwrap();
    assert_eq!((page.items, page.more), (vec!["r/one".to_string()], true));
    let page = meta.list_repos(Some("r/one"), 10).await.unwrap();
    assert_eq!((page.items, page.more), (vec!["r/onex".to_string()], false));

    // Upload records, capped per owner.
    let mut u = UploadRecord {
        repo: "r/one".into(),
        started_unix: 1,
        owner: Some("alice".into()),
        state: UploadState::default(),
        hash: Some(Algorithm::Sha256.hasher().save()),
        updated_unix: 1,
        writer: "the suite".into(),
    };
    assert!(
        !meta.update_upload("x", &u).await.unwrap(),
        "no session, nothing written"
    );
    assert_eq!(meta.upload("x").await.unwrap(), None);
    meta.create_upload("x", &u, 2).await.unwrap();
    assert_eq!(meta.upload("x").await.unwrap(), Some(u.clone()));
    // An append's record replaces the one before.
    u.state.len = 5;
    u.state.store = "part-etags".into();
    u.updated_unix = 9;
    assert!(meta.update_upload("x", &u).await.unwrap());
    assert_eq!(meta.upload("x").await.unwrap(), Some(u.clone()));
    assert_eq!(
        meta.list_uploads().await.unwrap(),
        vec![("x".to_string(), u.clone())]
    );
    meta.create_upload("y", &u, 2).await.unwrap();
    assert!(matches!(
        meta.create_upload("z", &u, 2).await,
        Err(StoreError::TooManyUploads { max: 2, .. })
    ));
    assert_eq!(meta.upload("z").await.unwrap(), None, "nothing written");
    let bob = UploadRecord {
        owner: Some("alice2".into()),
        ..u.clone()
    };
    meta.create_upload("b", &bob, 2).await.unwrap();
    meta.delete_upload("x").await.unwrap();
    assert_eq!(meta.upload("x").await.unwrap(), None);
    // A finished session frees its place.
    meta.create_upload("z", &u, 2).await.unwrap();
}

#[tokio::test]
async fn redb_meta_store_passes_the_suite() {
    for durable in [true, false] {
        let dir = tempfile::tempdir().unwrap();
        let meta = super::redb::RedbMetaStore::open(&dir.path().join("m.redb"), durable).unwrap();
        meta_store(&meta).await;
        let meta = super::redb::RedbMetaStore::open(&dir.path().join("i.redb"), durable).unwrap();
        models::model_index(&meta).await;
        let meta = super::redb::RedbMetaStore::open(&dir.path().join("t.redb"), durable).unwrap();
        tags::tag_moves(&meta).await;
        let meta = super::redb::RedbMetaStore::open(&dir.path().join("g.redb"), durable).unwrap();
        gc::gc_primitives(&meta).await;
    }
}

#[tokio::test]
async fn redb_model_index_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.redb");
    let (m, v) = models::version("v1", 7, &[(Digest::sha256_of(b"w"), 5)], &[]);
    {
        let meta = super::redb::RedbMetaStore::open(&path, true).unwrap();
        put(&meta, "r", &m, Some("v1"), Some(&v), Required::NONE)
            .await
            .unwrap();
    }
    let meta = super::redb::RedbMetaStore::open(&path, true).unwrap();
    assert_eq!(meta.model_version("r", &v.digest).await.unwrap(), Some(v));
    let page = meta
        .list_models(None, 10, &super::ModelFilter::default())
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
    assert_eq!(page.items[0].latest_tags, vec!["v1".to_string()]);
}

/// A database written before the annotation index existed gets it on open: the
/// search by annotation finds its versions, and deleting one unindexes it.
#[tokio::test]
async fn redb_annotation_index_is_built_for_an_older_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.redb");
    let w = [(Digest::sha256_of(b"w"), 5)];
    let (m, v) = models::version("v1", 7, &w, &[("stage", "prod")]);
    {
        let meta = super::redb::RedbMetaStore::open(&path, true).unwrap();
        put(&meta, "r", &m, Some("v1"), Some(&v), Required::NONE)
            .await
            .unwrap();
    }
    {
        let db = ::redb::Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        let table: ::redb::TableDefinition<(&str, &str, &str, &str), ()> =
            ::redb::TableDefinition::new("model_annotations");
        assert!(txn.delete_table(table).unwrap(), "the index was there");
        txn.commit().unwrap();
    }
    let meta = super::redb::RedbMetaStore::open(&path, true).unwrap();
    let filter = |value: &str| super::ModelFilter {
        name_contains: None,
        annotations: vec![("stage".into(), value.into())],
    };
    let found = meta.list_models(None, 10, &filter("prod")).await.unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].name, "r");
    assert!(
        meta.list_models(None, 10, &filter("dev"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    del(&meta, "r", &m.digest).await.unwrap();
    assert!(
        meta.list_models(None, 10, &filter("prod"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}
