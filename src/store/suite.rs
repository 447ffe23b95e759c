//! The storage test suite every backend must pass: a `BlobStore` or `MetaStore`
//! implementation is done when these run clean against it.

mod models;
mod tags;

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::StreamExt;

use super::model::ModelRecord;
use super::tags::unguarded;
use super::{
    Actor, BlobStore, ByteRange, ByteStream, ManifestPut, ManifestRecord, ManifestStored,
    MetaStore, MoveKind, Required, StoreError, StoreResult, TagMove, UploadRecord, UploadState,
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

fn stream_of(parts: &[&'static [u8]]) -> ByteStream {
    let items: Vec<std::io::Result<Bytes>> =
        parts.iter().map(|p| Ok(Bytes::from_static(p))).collect();
    Box::pin(futures_util::stream::iter(items))
}

/// Appends and expects success.
pub(super) async fn append(
    store: &dyn BlobStore,
    id: &str,
    from: &UploadState,
    body: ByteStream,
) -> UploadState {
    match store.append_upload(id, from, None, body).await {
        Ok(state) => state,
        Err((_, e)) => panic!("append to {id} failed: {e}"),
    }
}

/// The upload holds exactly `want`, where the store can read an upload back.
async fn assert_upload_holds(store: &dyn BlobStore, id: &str, st: &UploadState, want: &[u8]) {
    assert_eq!(st.len, want.len() as u64);
    if let Some(s) = store.read_upload(id, st).await.unwrap() {
        assert!(collect(s).await == want, "upload {id} differs");
    }
}

async fn collect(mut s: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = s.next().await {
        out.extend_from_slice(&chunk.expect("read"));
    }
    out
}

pub async fn blob_store(store: &dyn BlobStore) {
    let data = b"hello, blob store";
    let d = Digest::sha256_of(data);
    assert_eq!(store.stat(&d).await.unwrap(), None);
    assert!(store.read(&d, None).await.unwrap().is_none());
    assert!(!store.delete(&d).await.unwrap());

    // Upload in two appends, commit, read back whole and in ranges.
    let st = store.begin_upload("u1").await.unwrap();
    assert_eq!(st.len, 0);
    let st = append(store, "u1", &st, stream_of(&[b"hello, "])).await;
    assert_eq!(st.len, 7);
    let st = append(store, "u1", &st, stream_of(&[b"blob", b" store"])).await;
    assert_eq!(st.len, 17);
    assert_upload_holds(store, "u1", &st, data).await;
    store.commit_upload("u1", &st, &d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(17));
    let r = store.read(&d, None).await.unwrap().unwrap();
    assert_eq!(r.size, 17);
    assert_eq!(collect(r.stream).await, data);
    let r = store
        .read(&d, Some(ByteRange { start: 7, end: 10 }))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(collect(r.stream).await, b"blob");
    assert!(
        !store
            .list_uploads()
            .await
            .unwrap()
            .iter()
            .any(|(id, _)| id == "u1"),
        "a committed upload is gone"
    );

    // A second upload of the same content commits as a no-op success.
    let st = store.begin_upload("u2").await.unwrap();
    let st = append(store, "u2", &st, stream_of(&[data])).await;
    store.commit_upload("u2", &st, &d).await.unwrap();
    assert_eq!(store.stat(&d).await.unwrap(), Some(17));

    // An append that was never recorded (the process died before its record
    // was written) is dropped: the next one goes on from the recorded state.
    let st0 = store.begin_upload("lost").await.unwrap();
    let st1 = append(store, "lost", &st0, stream_of(&[b"kept "])).await;
    let _lost = append(store, "lost", &st1, stream_of(&[b"never recorded"])).await;
    let st2 = append(store, "lost", &st1, stream_of(&[b"and this"])).await;
    assert_eq!(st2.len, 13);
    assert_upload_holds(store, "lost", &st2, b"kept and this").await;
    let lost_d = Digest::sha256_of(b"kept and this");
    store.commit_upload("lost", &st2, &lost_d).await.unwrap();
    let r = store.read(&lost_d, None).await.unwrap().unwrap();
    assert_eq!(collect(r.stream).await, b"kept and this");
    assert!(store.delete(&lost_d).await.unwrap());

    // Thousands of tiny chunks (more than one writev takes) arrive whole and in order.
    let st = store.begin_upload("tiny").await.unwrap();
    let tiny: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let items: Vec<std::io::Result<Bytes>> = tiny
        .iter()
        .map(|b| Ok(Bytes::copy_from_slice(&[*b])))
        .collect();
    let st = append(
        store,
        "tiny",
        &st,
        Box::pin(futures_util::stream::iter(items)),
    )
    .await;
    assert_eq!(st.len, 5000);
    assert_upload_holds(store, "tiny", &st, &tiny).await;
    store.delete_upload("tiny", Some(&st)).await.unwrap();

    // Megabytes in appends that start and end off block boundaries, with buffers
    // of odd sizes, arrive whole and in order (direct I/O stages and aligns these).
    let mut st = store.begin_upload("big").await.unwrap();
    let big: Vec<u8> = (0..(8u32 << 20) + 12_345)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let mut sent = 0;
    for len in [
        (3 << 20) + 7,
        1,
        4095,
        (5 << 20) + 4097,
        12_345 - 7 - 1 - 4095 - 4097,
    ] {
        let part = &big[sent..sent + len];
        let bufs: Vec<std::io::Result<Bytes>> = part
            .chunks(65_537)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let before = st.len;
        st = append(
            store,
            "big",
            &st,
            Box::pin(futures_util::stream::iter(bufs)),
        )
        .await;
        assert_eq!(st.len - before, len as u64);
        sent += len;
    }
    assert_eq!(sent, big.len());
    assert_upload_holds(store, "big", &st, &big).await;
    // Committed, megabytes read back whole and in a range that starts and ends
    // inside read buffers and spans several of them.
    let big_d = Digest::sha256_of(&big);
    let bst = store.begin_upload("big-blob").await.unwrap();
    let bufs: Vec<std::io::Result<Bytes>> = big
        .chunks(1 << 20)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let bufs: ByteStream = Box::pin(futures_util::stream::iter(bufs));
    let bst = append(store, "big-blob", &bst, bufs).await;
    store.commit_upload("big-blob", &bst, &big_d).await.unwrap();
    let r = store.read(&big_d, None).await.unwrap().unwrap();
    assert_eq!(r.size, big.len() as u64);
    assert!(collect(r.stream).await == big);
    let (start, end) = ((1 << 20) - 3, (5 << 20) + 10);
    let r = store
        .read(&big_d, Some(ByteRange { start, end }))
        .await
        .unwrap()
        .unwrap();
    assert!(collect(r.stream).await == big[start as usize..=end as usize]);
    assert!(store.delete(&big_d).await.unwrap());

    // A failure after megabytes keeps every byte that arrived.
    let failing: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from(vec![7u8; (2 << 20) + 3])),
        Err(std::io::Error::other("client went away")),
    ]));
    let (kept, e) = store
        .append_upload("big", &st, None, failing)
        .await
        .unwrap_err();
    assert!(matches!(e, super::AppendError::Body(_)), "{e:?}");
    assert_eq!(kept.len, big.len() as u64 + (2 << 20) + 3);
    let mut whole = big.clone();
    whole.extend(vec![7u8; (2 << 20) + 3]);
    assert_upload_holds(store, "big", &kept, &whole).await;
    // ... and goes on from there.
    let kept = append(store, "big", &kept, stream_of(&[b"!"])).await;
    whole.push(b'!');
    let whole_d = Digest::sha256_of(&whole);
    store.commit_upload("big", &kept, &whole_d).await.unwrap();
    let r = store.read(&whole_d, None).await.unwrap().unwrap();
    assert!(collect(r.stream).await == whole);
    assert!(store.delete(&whole_d).await.unwrap());

    // A failing stream keeps what arrived before the failure.
    let st = store.begin_upload("u3").await.unwrap();
    let failing: ByteStream = Box::pin(futures_util::stream::iter(vec![
        Ok(Bytes::from_static(b"abc")),
        Err(std::io::Error::other("client went away")),
    ]));
    let (kept, _) = store
        .append_upload("u3", &st, Some(10), failing)
        .await
        .unwrap_err();
    assert_eq!(kept.len, 3);
    let listed = store.list_uploads().await.unwrap();
    let u3: Vec<_> = listed.iter().filter(|(id, _)| id == "u3").collect();
    assert_eq!(u3.len(), 1, "{listed:?}");
    assert!(u3[0].1 > 0, "an upload has a modification time");
    store.delete_upload("u3", Some(&kept)).await.unwrap();
    assert!(
        !store
            .list_uploads()
            .await
            .unwrap()
            .iter()
            .any(|(id, _)| id == "u3"),
        "a deleted upload is gone"
    );
    store.delete_upload("u3", Some(&kept)).await.unwrap(); // idempotent
    store.delete_upload("u3", None).await.unwrap();

    // Removing by id alone (no state: a session whose record is lost) removes it too.
    let st = store.begin_upload("orphan").await.unwrap();
    append(store, "orphan", &st, stream_of(&[b"left behind"])).await;
    store.delete_upload("orphan", None).await.unwrap();
    assert!(
        !store
            .list_uploads()
            .await
            .unwrap()
            .iter()
            .any(|(id, _)| id == "orphan"),
        "an orphan is gone"
    );

    // Small whole writes (manifests) and limits on reading them back.
    let m = b"{\"schemaVersion\":2}";
    let md = Digest::of(Algorithm::Sha512, m);
    store.write_all(&md, Bytes::from_static(m)).await.unwrap();
    assert_eq!(
        store.read_all(&md, 1024).await.unwrap().unwrap().as_ref(),
        m
    );
    assert!(store.read_all(&md, 3).await.is_err());
    assert!(store.delete(&md).await.unwrap());
    assert_eq!(store.read_all(&md, 1024).await.unwrap(), None);
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
async fn fs_blob_store_passes_the_suite() {
    use super::UploadIo;
    let by_size = UploadIo::BySize { large: 1 << 20 };
    for fsync in [true, false] {
        for io in [UploadIo::Direct, UploadIo::Buffered, by_size] {
            let dir = tempfile::tempdir().unwrap();
            let store = super::fs::FsBlobStore::open(dir.path(), fsync)
                .unwrap()
                .upload_io(io);
            blob_store(&store).await;
        }
    }
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
