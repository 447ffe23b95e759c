//! The JSON shapes of the model API.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::http::v2::referrers_page;
use crate::models::compare::Comparison;
use crate::models::query::Tagged;
use crate::oci::{Descriptor, Digest};
use crate::registry::ModelVersion;
use crate::store::model::{BlobRef, LayerRecord, Lineage, ModelInfo, ModelSummary};

/// One page of a listing.
#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Position in the models listing, inside an opaque cursor.
#[derive(Serialize, serde::Deserialize)]
pub struct ModelsCursor {
    pub after: String,
}

#[derive(Serialize)]
pub struct ModelItem<'a> {
    pub name: &'a str,
    pub versions: u64,
    /// Bytes of the distinct blobs of all versions.
    pub total_size: u64,
    pub latest: Latest<'a>,
}

#[derive(Serialize)]
pub struct Latest<'a> {
    pub digest: &'a Digest,
    pub created: &'a str,
    pub tags: &'a [String],
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
}

impl<'a> From<&'a ModelSummary> for ModelItem<'a> {
    fn from(m: &'a ModelSummary) -> Self {
        ModelItem {
            name: &m.name,
            versions: m.versions,
            total_size: m.total_size,
            latest: Latest {
                digest: &m.latest.digest,
                created: &m.latest.created,
                tags: &m.latest_tags,
                kind: &m.latest.kind,
                description: m.latest.description.as_deref(),
            },
        }
    }
}

#[derive(Serialize)]
pub struct VersionItem<'a> {
    pub digest: &'a Digest,
    pub created: &'a str,
    pub tags: &'a [String],
    pub kind: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    pub total_size: u64,
    pub lineage: &'a Lineage,
    pub metrics: &'a BTreeMap<String, f64>,
    pub params: &'a BTreeMap<String, String>,
    pub model: &'a ModelInfo,
    pub labels: &'a BTreeMap<String, String>,
}

impl<'a> VersionItem<'a> {
    pub fn new(t: &'a Tagged) -> Self {
        let v = &t.record;
        VersionItem {
            digest: &v.digest,
            created: &v.created,
            tags: &t.tags,
            labels: &t.labels,
            kind: &v.kind,
            description: v.description.as_deref(),
            total_size: v.total_size,
            lineage: &v.lineage,
            metrics: &v.metrics,
            params: &v.params,
            model: &v.model,
        }
    }
}

/// The manifest's own descriptor, as OCI spells it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ManifestDescriptor<'a> {
    pub media_type: &'a str,
    pub digest: &'a Digest,
    pub size: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<&'a str>,
}

#[derive(Serialize)]
pub struct VersionDetail<'a> {
    pub name: &'a str,
    pub digest: &'a Digest,
    pub descriptor: ManifestDescriptor<'a>,
    pub kind: &'a str,
    pub created: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<&'a str>,
    pub tags: &'a [String],
    pub labels: &'a BTreeMap<String, String>,
    pub lineage: &'a Lineage,
    pub metrics: &'a BTreeMap<String, f64>,
    pub params: &'a BTreeMap<String, String>,
    pub model: &'a ModelInfo,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config: Option<&'a BlobRef>,
    pub layers: &'a [LayerRecord],
    pub total_size: u64,
    pub annotations: &'a BTreeMap<String, String>,
    /// Referrers (signatures, evaluations, SBOMs, …) grouped by artifact type: the
    /// first hundred in digest order.
    pub referrers: BTreeMap<&'a str, Vec<&'a Descriptor>>,
    /// Where the rest continue, when there are more: a page of the OCI referrers API.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub referrers_next: Option<String>,
}

impl<'a> VersionDetail<'a> {
    pub fn new(name: &'a str, v: &'a ModelVersion) -> Self {
        let r = &v.record;
        let mut referrers: BTreeMap<&str, Vec<&Descriptor>> = BTreeMap::new();
        for d in &v.referrers {
            let group = d.artifact_type.as_deref().unwrap_or(&d.media_type);
            referrers.entry(group).or_default().push(d);
        }
        VersionDetail {
            name,
            digest: &r.digest,
            descriptor: ManifestDescriptor {
                media_type: &r.media_type,
                digest: &r.digest,
                size: r.size,
                artifact_type: r.artifact_type.as_deref(),
            },
            kind: &r.kind,
            created: &r.created,
            description: r.description.as_deref(),
            tags: &v.tags,
            labels: &v.labels,
            lineage: &r.lineage,
            metrics: &r.metrics,
            params: &r.params,
            model: &r.model,
            config: r.config.as_ref(),
            layers: &r.layers,
            total_size: r.total_size,
            annotations: &r.annotations,
            referrers,
            referrers_next: v
                .referrers
                .last()
                .filter(|_| v.more_referrers)
                .map(|last| referrers_page(name, &r.digest, None, &last.digest.to_string())),
        }
    }
}

#[derive(Serialize)]
pub struct CompareView<'a> {
    pub name: &'a str,
    #[serde(flatten)]
    pub comparison: &'a Comparison,
}
