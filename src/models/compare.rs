//! Comparing model versions side by side, relative to the first (the baseline):
//! metric deltas, the parameters and lineage that differ, and how many layer bytes
//! each version shares with the baseline (what deduplication saves it). Pure.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::oci::Digest;
use crate::store::model::{Lineage, ModelRecord};

/// A version to compare: how the user named it, its record and its tags.
pub struct Compared<'a> {
    pub reference: String,
    pub record: &'a ModelRecord,
    pub tags: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Digest of the first version, against which the others are measured.
    pub baseline: Digest,
    pub versions: Vec<ComparedVersion>,
    /// Parameters whose values differ between versions: one value per version.
    pub param_differences: BTreeMap<String, Vec<Option<String>>>,
    /// Lineage fields whose values differ between versions: one value per version.
    pub lineage_differences: BTreeMap<String, Vec<Option<String>>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComparedVersion {
    pub reference: String,
    pub digest: Digest,
    pub created: String,
    pub tags: Vec<String>,
    pub total_size: u64,
    pub metrics: BTreeMap<String, f64>,
    pub params: BTreeMap<String, String>,
    pub lineage: Lineage,
    /// This version's metric minus the baseline's, for metrics both have.
    pub metric_deltas: BTreeMap<String, f64>,
    /// Layers compared with the baseline's (`null` for the baseline itself).
    pub layers: Option<LayerDiff>,
}

/// Layers of a version compared with the baseline's, by digest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LayerDiff {
    /// Layers the baseline has too: stored once, not transferred again.
    pub shared_layers: usize,
    pub shared_bytes: u64,
    /// Layers the baseline does not have: what this version adds.
    pub new_layers: usize,
    pub new_bytes: u64,
    /// Baseline layers this version no longer has.
    pub removed_layers: usize,
    pub removed_bytes: u64,
}

/// Rounds away binary noise (0.92 - 0.9 = 0.020000000000000018) to 12 decimals.
fn tidy(x: f64) -> f64 {
    let r = (x * 1e12).round() / 1e12;
    if r.is_finite() { r } else { x }
}

fn layer_set(r: &ModelRecord) -> BTreeMap<&Digest, u64> {
    r.layers.iter().map(|l| (&l.digest, l.size)).collect()
}

fn layer_diff(base: &BTreeMap<&Digest, u64>, this: &BTreeMap<&Digest, u64>) -> LayerDiff {
    let mut d = LayerDiff::default();
    for (digest, size) in this {
        if base.contains_key(digest) {
            d.shared_layers += 1;
            d.shared_bytes = d.shared_bytes.saturating_add(*size);
        } else {
            d.new_layers += 1;
            d.new_bytes = d.new_bytes.saturating_add(*size);
        }
    }
    for (digest, size) in base {
        if !this.contains_key(digest) {
            d.removed_layers += 1;
            d.removed_bytes = d.removed_bytes.saturating_add(*size);
        }
    }
    d
}

/// Keys whose values are not all the same, with each version's value.
fn differences(rows: &[BTreeMap<&str, Option<String>>]) -> BTreeMap<String, Vec<Option<String>>> {
    let keys: BTreeSet<&str> = rows.iter().flat_map(|r| r.keys().copied()).collect();
    let mut out = BTreeMap::new();
    for k in keys {
        let values: Vec<Option<String>> =
            rows.iter().map(|r| r.get(k).cloned().flatten()).collect();
        if values.windows(2).any(|w| w[0] != w[1]) {
            out.insert(k.to_string(), values);
        }
    }
    out
}

/// Compares `versions`; the first is the baseline. `None` when there are none.
pub fn compare(versions: &[Compared<'_>]) -> Option<Comparison> {
    let base = versions.first()?.record;
    let base_layers = layer_set(base);
    let compared = versions
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let r = c.record;
            let metric_deltas = r
                .metrics
                .iter()
                .filter_map(|(k, v)| base.metrics.get(k).map(|b| (k.clone(), tidy(v - b))))
                .collect();
            ComparedVersion {
                reference: c.reference.clone(),
                digest: r.digest.clone(),
                created: r.created.clone(),
                tags: c.tags.clone(),
                total_size: r.total_size,
                metrics: r.metrics.clone(),
                params: r.params.clone(),
                lineage: r.lineage.clone(),
                metric_deltas: if i == 0 {
                    BTreeMap::new()
                } else {
                    metric_deltas
                },
                layers: (i > 0).then(|| layer_diff(&base_layers, &layer_set(r))),
            }
        })
        .collect();
    let params: Vec<BTreeMap<&str, Option<String>>> = versions
        .iter()
        .map(|c| {
            c.record
                .params
                .iter()
                .map(|(k, v)| (k.as_str(), Some(v.clone())))
                .collect()
        })
        .collect();
    let lineage: Vec<BTreeMap<&str, Option<String>>> = versions
        .iter()
        .map(|c| {
            c.record
                .lineage
                .fields()
                .into_iter()
                .map(|(k, v)| (k, v.map(str::to_string)))
                .collect()
        })
        .collect();
    Some(Comparison {
        baseline: base.digest.clone(),
        versions: compared,
        param_differences: differences(&params),
        lineage_differences: differences(&lineage),
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn no_versions_no_comparison_and_tidy_deltas() {
        assert!(super::compare(&[]).is_none());
        assert_eq!(super::tidy(0.92 - 0.85), 0.07);
    }
}
