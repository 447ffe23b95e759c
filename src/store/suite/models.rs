//! The model index part of the `MetaStore` suite.

use std::collections::BTreeMap;

use super::{del, put};
use crate::oci::Digest;
use crate::store::model::{BlobRef, LayerRecord, ModelFilter, ModelRecord};
use crate::store::{ManifestRecord, MetaStore, Required};

fn blob(seed: &str, size: u64) -> (Digest, u64) {
    (Digest::sha256_of(seed.as_bytes()), size)
}

/// A model version created at `created_ms` with the given layers and annotations.
pub fn version(
    seed: &str,
    created_ms: i64,
    layers: &[(Digest, u64)],
    annotations: &[(&str, &str)],
) -> (ManifestRecord, ModelRecord) {
    let digest = Digest::sha256_of(seed.as_bytes());
    let (config, config_size) = blob(&format!("config-{seed}"), 10);
    let annotations: BTreeMap<String, String> = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let manifest = ManifestRecord {
        digest: digest.clone(),
        media_type: "application/vnd.oci.image.manifest.v1+json".into(),
        size: 100,
        artifact_type: Some(crate::models::spec::MODELPACK_MANIFEST.into()),
        subject: None,
        annotations: annotations.clone(),
        references: std::iter::once(config.clone())
            .chain(layers.iter().map(|l| l.0.clone()))
            .collect(),
        pushed_ms: 1,
    };
    let model = ModelRecord {
        digest,
        media_type: manifest.media_type.clone(),
        size: 100,
        artifact_type: manifest.artifact_type.clone(),
        kind: "modelpack".into(),
        created: String::new(),
        created_ms,
        description: None,
        lineage: Default::default(),
        params: BTreeMap::new(),
        metrics: BTreeMap::from([("auc".to_string(), 0.5)]),
        model: Default::default(),
        config: Some(BlobRef {
            media_type: crate::models::spec::MODELPACK_CONFIG.into(),
            digest: config,
            size: config_size,
        }),
        layers: layers
            .iter()
            .map(|(d, size)| LayerRecord {
                media_type: "application/vnd.cncf.model.weight.v1.raw".into(),
                digest: d.clone(),
                size: *size,
                path: Some("w.bin".into()),
                kind: Some("weight".into()),
            })
            .collect(),
        total_size: config_size + layers.iter().map(|l| l.1).sum::<u64>(),
        annotations,
    };
    (manifest, model)
}

pub async fn model_index(meta: &dyn MetaStore) {
    let all = ModelFilter::default();
    assert!(
        meta.list_models(None, 10, &all)
            .await
            .unwrap()
            .items
            .is_empty()
    );

    // Two versions sharing a 1000-byte layer; the second is the latest.
    let shared = blob("shared", 1000);
    let (m1, v1) = version(
        "v1",
        1_000,
        &[shared.clone(), blob("a", 200)],
        &[("stage", "dev")],
    );
    let (m2, v2) = version("v2", 2_000, &[shared.clone(), blob("b", 300)], &[]);
    put(meta, "team/m", &m1, Some("v1"), Some(&v1), Required::NONE)
        .await
        .unwrap();
    put(meta, "team/m", &m2, Some("prod"), Some(&v2), Required::NONE)
        .await
        .unwrap();
    // A re-push (with another tag) indexes nothing twice.
    put(meta, "team/m", &m2, Some("v2"), Some(&v2), Required::NONE)
        .await
        .unwrap();
    assert_eq!(
        meta.model_version("team/m", &v1.digest).await.unwrap(),
        Some(v1.clone())
    );
    assert_eq!(meta.model_version("other", &v1.digest).await.unwrap(), None);
    let mut listed = meta.model_versions("team/m").await.unwrap();
    listed.sort_by_key(|v| v.created_ms);
    assert_eq!(listed, vec![v1.clone(), v2.clone()]);
    let tags = meta.tags_by_digest("team/m").await.unwrap();
    assert_eq!(tags[&v2.digest], vec!["prod".to_string(), "v2".to_string()]);
    assert_eq!(tags[&v1.digest], vec!["v1".to_string()]);

    let page = meta.list_models(None, 10, &all).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let m = &page.items[0];
    assert_eq!((m.name.as_str(), m.versions), ("team/m", 2));
    // Distinct blobs: shared 1000 + 200 + 300 + two 10-byte configs.
    assert_eq!(m.total_size, 1520);
    assert_eq!(m.latest, v2);
    assert_eq!(m.latest_tags, vec!["prod".to_string(), "v2".to_string()]);

    // A manifest pushed without a model record (a referrer, an image) is no version.
    let (plain, _) = version("plain", 5, &[], &[]);
    put(meta, "team/m", &plain, None, None, Required::NONE)
        .await
        .unwrap();
    put(
        meta,
        "images/app",
        &plain,
        Some("latest"),
        None,
        Required::NONE,
    )
    .await
    .unwrap();
    assert_eq!(
        meta.model_version("team/m", &plain.digest).await.unwrap(),
        None
    );
    assert!(meta.model_versions("images/app").await.unwrap().is_empty());

    // More models: name order, paging, name and annotation filters.
    let (ma, va) = version("a1", 1, &[blob("x", 1)], &[("stage", "prod")]);
    put(meta, "alpha", &ma, None, Some(&va), Required::NONE)
        .await
        .unwrap();
    put(meta, "zeta/m", &ma, None, Some(&va), Required::NONE)
        .await
        .unwrap();
    let page = meta.list_models(None, 2, &all).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|m| m.name.as_str()).collect();
    assert_eq!((names, page.more), (vec!["alpha", "team/m"], true));
    let page = meta.list_models(Some("team/m"), 2, &all).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|m| m.name.as_str()).collect();
    assert_eq!((names, page.more), (vec!["zeta/m"], false));
    let by_name = ModelFilter {
        name_contains: Some("/m".into()),
        annotations: vec![],
    };
    let page = meta.list_models(None, 10, &by_name).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["team/m", "zeta/m"]);
    let by_annotation = ModelFilter {
        name_contains: None,
        annotations: vec![("stage".into(), "dev".into())],
    };
    let page = meta.list_models(None, 10, &by_annotation).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["team/m"]);

    // Deleting a version un-indexes it in the same step: counts, sizes, latest.
    del(meta, "team/m", &v2.digest).await.unwrap();
    assert_eq!(
        meta.model_version("team/m", &v2.digest).await.unwrap(),
        None
    );
    let page = meta.list_models(None, 10, &by_name).await.unwrap();
    let m = &page.items[0];
    assert_eq!((m.versions, m.total_size, &m.latest), (1, 1210, &v1));
    del(meta, "team/m", &v1.digest).await.unwrap();
    let page = meta.list_models(None, 10, &all).await.unwrap();
    let names: Vec<&str> = page.items.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(names, vec!["alpha", "zeta/m"]);
    assert!(meta.model_versions("team/m").await.unwrap().is_empty());
    // The same version in another repository is untouched.
    del(meta, "alpha", &va.digest).await.unwrap();
    assert_eq!(
        meta.model_version("zeta/m", &va.digest).await.unwrap(),
        Some(va)
    );
}
