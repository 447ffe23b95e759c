//! The model index's records: what is kept for each model version so that models
//! can be listed, filtered, sorted and compared without reading manifests again.
//!
//! These are storage records (like `ManifestRecord`); `models::index` fills them
//! from a pushed manifest and its config.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::oci::Digest;

/// One indexed model version (a manifest in a repository).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelRecord {
    pub digest: Digest,
    pub media_type: String,
    /// Size of the manifest itself.
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    /// Which layout the version was recognised by: `modelpack`, `modelpack-legacy`,
    /// `kitops`, `docker-ai`, `ollama` or `annotated` (Berth annotations only).
    pub kind: String,
    /// RFC 3339, UTC.
    pub created: String,
    /// `created` in milliseconds since the Unix epoch (the sort key).
    pub created_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub lineage: Lineage,
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// What the model config says of the model itself.
    #[serde(default)]
    pub model: ModelInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<BlobRef>,
    #[serde(default)]
    pub layers: Vec<LayerRecord>,
    /// Bytes of the distinct blobs (config and layers) the version names.
    pub total_size: u64,
    /// The manifest's annotations as pushed.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

impl ModelRecord {
    /// The distinct blobs (config and layers) this version names, with their sizes.
    pub fn blobs(&self) -> BTreeMap<&Digest, u64> {
        let mut out = BTreeMap::new();
        if let Some(c) = &self.config {
            out.insert(&c.digest, c.size);
        }
        for l in &self.layers {
            out.insert(&l.digest, l.size);
        }
        out
    }
}

/// Where a model version came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Code commit (`org.opencontainers.image.revision`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The image the training ran in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Source repository (`org.opencontainers.image.source`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Lineage {
    /// The fields as (name, value) pairs, in a fixed order.
    pub fn fields(&self) -> [(&'static str, Option<&str>); 5] {
        [
            ("run_id", self.run_id.as_deref()),
            ("dataset", self.dataset.as_deref()),
            ("commit", self.commit.as_deref()),
            ("image", self.image.as_deref()),
            ("source", self.source.as_deref()),
        ]
    }
}

/// Facts about the model from its config (ModelPack, KitOps, Docker model config).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub architecture: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub param_size: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantization: Option<String>,
}

/// A blob named by a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRef {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
}

/// One layer of a model version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    /// The file path the layer holds (from the ModelPack file path or the title annotation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `weight`, `weight-config`, `doc`, `code` or `dataset`, when the media type says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A model: a repository with at least one indexed version.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelSummary {
    pub name: String,
    pub versions: u64,
    /// Bytes of the distinct blobs across all versions (what the model occupies).
    pub total_size: u64,
    /// The version created last.
    pub latest: ModelRecord,
    /// Tags pointing at `latest`.
    pub latest_tags: Vec<String>,
}

/// Which models a listing returns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelFilter {
    /// Only models whose name contains this.
    pub name_contains: Option<String>,
    /// Only models with a version carrying all of these annotations.
    pub annotations: Vec<(String, String)>,
}

impl ModelFilter {
    pub fn matches_name(&self, name: &str) -> bool {
        self.name_contains
            .as_deref()
            .is_none_or(|q| name.contains(q))
    }

    pub fn matches_version(&self, v: &ModelRecord) -> bool {
        self.annotations
            .iter()
            .all(|(k, val)| v.annotations.get(k) == Some(val))
    }
}

/// One page of models in name order.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelPage {
    pub items: Vec<ModelSummary>,
    pub more: bool,
}
