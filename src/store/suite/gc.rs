//! What garbage collection relies on the metadata store for: sweeps that
//! check link times and manifests in the transaction that unlinks, mounts that
//! need a source as they link, and retention's view of tags.

use std::time::Duration;

use super::{put, record};
use crate::oci::Digest;
use crate::store::{Actor, MetaStore, Required};

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

/// A moment strictly after everything done so far, and before what follows.
async fn a_moment() -> i64 {
    tokio::time::sleep(Duration::from_millis(3)).await;
    let t = now_ms();
    tokio::time::sleep(Duration::from_millis(3)).await;
    t
}

async fn swept(meta: &dyn MetaStore, d: &Digest, cutoff_ms: i64) -> bool {
    // A dry run answers the same and changes nothing.
    let linked = meta.blob_linked_anywhere(d).await.unwrap();
    let would = meta
        .sweep_blob_links(vec![d.clone()], cutoff_ms, false)
        .await
        .unwrap();
    assert_eq!(
        meta.blob_linked_anywhere(d).await.unwrap(),
        linked,
        "a dry run changes nothing"
    );
    let swept = meta
        .sweep_blob_links(vec![d.clone()], cutoff_ms, true)
        .await
        .unwrap();
    assert_eq!(would, swept, "a dry run says what applying does");
    swept.contains(d)
}

pub async fn gc_primitives(meta: &dyn MetaStore) {
    let (old, named, mounted) = (
        Digest::sha256_of(b"left behind"),
        Digest::sha256_of(b"named by a manifest"),
        Digest::sha256_of(b"mounted"),
    );
    for d in [&old, &named, &mounted] {
        meta.link_blob("g/a", d, 5).await.unwrap();
    }
    let cutoff = a_moment().await;

    // Linked only before the cutoff: swept, linked nowhere after.
    assert!(
        !swept(meta, &old, 0).await,
        "a link at or after the cutoff keeps it"
    );
    assert!(meta.blob_linked_anywhere(&old).await.unwrap());
    assert!(swept(meta, &old, cutoff).await);
    assert!(!meta.blob_linked_anywhere(&old).await.unwrap());
    assert_eq!(meta.blob_link("g/a", &old).await.unwrap(), None);

    // Named by a manifest pushed after the cutoff: kept.
    let m = record(b"names a blob", None);
    let required = Required {
        blobs: std::slice::from_ref(&named),
        manifests: &[],
    };
    put(meta, "g/a", &m, None, None, required).await.unwrap();
    assert!(!swept(meta, &named, cutoff).await);
    assert_eq!(meta.blob_link("g/a", &named).await.unwrap(), Some(5));
    // A manifest is never swept as a blob.
    assert!(!swept(meta, &m.digest, i64::MAX).await);

    // Mounted after the cutoff: kept; a mount needs a source that links it.
    assert_eq!(
        meta.mount_blob("g/b", &mounted, Some("g/a")).await.unwrap(),
        Some(5)
    );
    assert!(!swept(meta, &mounted, cutoff).await);
    assert!(swept(meta, &mounted, i64::MAX).await);
    assert_eq!(
        meta.mount_blob("g/c", &mounted, Some("g/a")).await.unwrap(),
        None
    );
    assert_eq!(meta.mount_blob("g/c", &mounted, None).await.unwrap(), None);
    assert_eq!(meta.blob_link("g/c", &mounted).await.unwrap(), None);
    meta.link_blob("g/a", &mounted, 5).await.unwrap();
    assert_eq!(
        meta.mount_blob("g/c", &mounted, None).await.unwrap(),
        Some(5)
    );

    // Retention: what tags hold and held; only an untagged manifest is deleted.
    let (v1, v2) = (record(b"version 1", None), record(b"version 2", None));
    let none = Required {
        blobs: &[],
        manifests: &[],
    };
    put(meta, "g/t", &v1, Some("prod"), None, none)
        .await
        .unwrap();
    let between = a_moment().await;
    put(meta, "g/t", &v2, Some("prod"), None, none)
        .await
        .unwrap();
    let held = meta.held_since("g/t", between).await.unwrap();
    assert!(
        held.contains(&v1.digest) && held.contains(&v2.digest),
        "{held:?}"
    );
    let held = meta.held_since("g/t", i64::MAX).await.unwrap();
    assert_eq!(
        held.into_iter().collect::<Vec<_>>(),
        vec![v2.digest.clone()],
        "only what a tag holds now"
    );
    let gc = Actor::registry();
    assert_eq!(
        meta.delete_untagged_manifest("g/t", &v2.digest, &gc)
            .await
            .unwrap(),
        None,
        "tagged: kept"
    );
    assert!(meta.manifest("g/t", &v2.digest).await.unwrap().is_some());
    assert!(
        meta.delete_untagged_manifest("g/t", &v1.digest, &gc)
            .await
            .unwrap()
            .is_some()
    );

    // Only a repository holding nothing leaves the catalog.
    assert!(
        !meta.drop_repo_if_empty("g/t").await.unwrap(),
        "holds a manifest"
    );
    meta.link_blob("g/e", &old, 5).await.unwrap();
    assert!(
        !meta.drop_repo_if_empty("g/e").await.unwrap(),
        "holds a link"
    );
    assert!(meta.unlink_blob("g/e", &old).await.unwrap());
    assert!(meta.drop_repo_if_empty("g/e").await.unwrap());
    assert!(!meta.repo_exists("g/e").await.unwrap());
    assert!(
        !meta.drop_repo_if_empty("g/e").await.unwrap(),
        "already gone"
    );
}
