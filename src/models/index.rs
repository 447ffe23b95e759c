//! What a pushed manifest says about a model version: recognising model manifests
//! and extracting the record the model index keeps. Pure: no I/O.
//!
//! Recognised as models (image manifests without a `subject` only; a referrer is
//! never a version): ModelPack of either generation (`artifactType` or config media
//! type), KitOps ModelKits (Kitfile config), Docker Model Runner artifacts
//! (`application/vnd.docker.ai.*` config or layers), Ollama models, and any
//! manifest carrying a `dev.berth.*` annotation.
//!
//! Sources, strongest first: manifest annotations, then the config's `"dev.berth"`
//! object (ModelPack), then the standard fields of the config. A metric whose value
//! is not a finite decimal number is not a metric: it is kept as a parameter of the
//! same name (unless a parameter already has that name), so nothing pushed is lost.

use std::collections::BTreeMap;

use serde_json::Value;

use super::config::{self, ConfigFacts};
use super::spec::{self, LayerKind, berth_keys, oci_keys};
use crate::oci::media::ManifestKind;
use crate::oci::{Descriptor, Digest, ParsedManifest};
use crate::store::model::{BlobRef, LayerRecord, ModelRecord};

/// The largest config blob read at push time to index a model.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The layout a model version was recognised by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelLayout {
    ModelPack,
    LegacyModelPack,
    KitOps,
    DockerAi,
    Ollama,
    /// Recognised by Berth's annotations only.
    Annotated,
}

impl ModelLayout {
    pub fn as_str(self) -> &'static str {
        match self {
            ModelLayout::ModelPack => "modelpack",
            ModelLayout::LegacyModelPack => "modelpack-legacy",
            ModelLayout::KitOps => "kitops",
            ModelLayout::DockerAi => "docker-ai",
            ModelLayout::Ollama => "ollama",
            ModelLayout::Annotated => "annotated",
        }
    }
}

/// The config descriptor of an image manifest.
pub fn config_of(m: &ParsedManifest) -> Option<&Descriptor> {
    match m.kind {
        ManifestKind::Image => m.references.first(),
        ManifestKind::Index => None,
    }
}

fn layers_of(m: &ParsedManifest) -> &[Descriptor] {
    match m.kind {
        ManifestKind::Image => m.references.get(1..).unwrap_or_default(),
        ManifestKind::Index => &[],
    }
}

/// Whether `m` is a model version, and by which layout.
pub fn detect(m: &ParsedManifest) -> Option<ModelLayout> {
    if m.subject.is_some() {
        return None;
    }
    let config = config_of(m)?;
    let artifact = m.artifact_type.as_deref().unwrap_or_default();
    let cfg = config.media_type.as_str();
    let any_layer = |p: &str| layers_of(m).iter().any(|l| l.media_type.starts_with(p));
    if [artifact, cfg]
        .iter()
        .any(|t| *t == spec::MODELPACK_MANIFEST || *t == spec::MODELPACK_CONFIG)
    {
        Some(ModelLayout::ModelPack)
    } else if [artifact, cfg]
        .iter()
        .any(|t| *t == spec::LEGACY_MODELPACK_MANIFEST || *t == spec::LEGACY_MODELPACK_CONFIG)
    {
        Some(ModelLayout::LegacyModelPack)
    } else if cfg == spec::KITOPS_CONFIG || artifact.starts_with(spec::KITOPS_PREFIX) {
        Some(ModelLayout::KitOps)
    } else if cfg.starts_with(spec::DOCKER_AI_PREFIX) || any_layer(spec::DOCKER_AI_PREFIX) {
        Some(ModelLayout::DockerAi)
    } else if any_layer(spec::OLLAMA_PREFIX) {
        Some(ModelLayout::Ollama)
    } else if m.annotations.keys().any(|k| k.starts_with("dev.berth.")) {
        Some(ModelLayout::Annotated)
    } else {
        None
    }
}

/// Whether the config of a manifest of this layout is worth reading.
pub fn wants_config(layout: ModelLayout, config: &Descriptor) -> bool {
    config.size <= MAX_CONFIG_BYTES
        && !matches!(layout, ModelLayout::Ollama)
        && config.media_type != crate::oci::media::OCI_EMPTY
}

/// A finite decimal number, or `None`.
pub fn parse_metric(v: &str) -> Option<f64> {
    v.trim().parse::<f64>().ok().filter(|f| f.is_finite())
}

/// Parses an RFC 3339 time into milliseconds since the epoch.
pub fn parse_time_ms(v: &str) -> Option<i64> {
    v.trim()
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_millisecond())
}

/// Formats milliseconds since the epoch as RFC 3339 (UTC).
pub fn format_time_ms(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

fn layer_kind(media_type: &str) -> Option<&'static str> {
    if let Some((kind, _)) = spec::parse_layer_media_type(media_type) {
        return Some(kind_name(kind));
    }
    let kit = |seg: &str| {
        media_type
            .strip_prefix(spec::KITOPS_PREFIX)
            .is_some_and(|r| r.starts_with(seg))
    };
    let tail = media_type
        .strip_prefix(spec::DOCKER_AI_PREFIX)
        .or_else(|| media_type.strip_prefix(spec::OLLAMA_PREFIX))
        .unwrap_or_default();
    if kit("model") {
        Some("weight")
    } else if kit("code") {
        Some("code")
    } else if kit("dataset") {
        Some("dataset")
    } else if kit("docs") {
        Some("doc")
    } else if [
        "gguf",
        "safetensors",
        "model",
        "mmproj",
        "projector",
        "adapter",
    ]
    .iter()
    .any(|p| tail.starts_with(p))
    {
        Some("weight")
    } else if tail.starts_with("license") {
        Some("doc")
    } else if ["template", "chat.template", "params", "system"]
        .iter()
        .any(|p| tail.starts_with(p))
    {
        Some("weight-config")
    } else {
        None
    }
}

/// The serialized name of a layer kind (as in the API).
pub fn kind_name(kind: LayerKind) -> &'static str {
    match kind {
        LayerKind::Weight => "weight",
        LayerKind::WeightConfig => "weight-config",
        LayerKind::Doc => "doc",
        LayerKind::Code => "code",
        LayerKind::Dataset => "dataset",
    }
}

fn layer_record(d: &Descriptor) -> LayerRecord {
    let path = [
        spec::MODELPACK_FILEPATH,
        spec::LEGACY_MODELPACK_FILEPATH,
        oci_keys::TITLE,
    ]
    .iter()
    .find_map(|k| d.annotations.get(*k))
    .cloned();
    LayerRecord {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        path,
        kind: layer_kind(&d.media_type).map(str::to_string),
    }
}

/// Lineage, parameters and metrics named by annotations.
fn from_annotations(a: &BTreeMap<String, String>, facts: &mut ConfigFacts) {
    let l = &mut facts.lineage;
    for (key, slot) in [
        (berth_keys::RUN_ID, &mut l.run_id),
        (berth_keys::DATASET, &mut l.dataset),
        (berth_keys::IMAGE, &mut l.image),
        (oci_keys::REVISION, &mut l.commit),
        (oci_keys::SOURCE, &mut l.source),
    ] {
        if let Some(v) = a.get(key).filter(|v| !v.is_empty()) {
            *slot = Some(v.clone());
        }
    }
    for (k, v) in a {
        if let Some(name) = k
            .strip_prefix(berth_keys::PARAM_PREFIX)
            .filter(|n| !n.is_empty())
        {
            facts.params.insert(name.to_string(), v.clone());
        }
        if let Some(name) = k
            .strip_prefix(berth_keys::METRIC_PREFIX)
            .filter(|n| !n.is_empty())
        {
            facts
                .metrics
                .insert(name.to_string(), Value::String(v.clone()));
        }
    }
    if let Some(d) = a.get(oci_keys::DESCRIPTION).filter(|v| !v.is_empty()) {
        facts.description = Some(d.clone());
    }
    if let Some(ms) = a.get(oci_keys::CREATED).and_then(|v| parse_time_ms(v)) {
        facts.created_ms = Some(ms);
    }
}

/// Splits raw metric values into numbers and, for the rest, parameters.
fn settle_metrics(
    raw: BTreeMap<String, Value>,
    params: &mut BTreeMap<String, String>,
) -> BTreeMap<String, f64> {
    let mut metrics = BTreeMap::new();
    for (k, v) in raw {
        let text = match &v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let number = match &v {
            Value::Number(n) => n.as_f64().filter(|f| f.is_finite()),
            _ => parse_metric(&text),
        };
        match number {
            Some(n) => {
                metrics.insert(k, n);
            }
            None => {
                params.entry(k).or_insert(text);
            }
        }
    }
    metrics
}

/// Builds the index record of a model version. `config` is the config blob if it
/// was read (`None` if unreadable: the record then comes from annotations only);
/// `now_ms` is the push time, the creation time when nothing else names one.
pub fn extract(
    layout: ModelLayout,
    m: &ParsedManifest,
    digest: &Digest,
    size: u64,
    config: Option<&[u8]>,
    now_ms: i64,
) -> ModelRecord {
    let mut facts = config
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok())
        .map(|v| config::facts(layout, &v))
        .unwrap_or_default();
    from_annotations(&m.annotations, &mut facts);
    let metrics = settle_metrics(std::mem::take(&mut facts.metrics), &mut facts.params);
    let config_ref = config_of(m).map(|c| BlobRef {
        media_type: c.media_type.clone(),
        digest: c.digest.clone(),
        size: c.size,
    });
    let layers: Vec<LayerRecord> = layers_of(m).iter().map(layer_record).collect();
    let created_ms = facts.created_ms.unwrap_or(now_ms);
    let mut record = ModelRecord {
        digest: digest.clone(),
        media_type: m.media_type.clone(),
        size,
        artifact_type: m.artifact_type.clone(),
        kind: layout.as_str().to_string(),
        created: format_time_ms(created_ms),
        created_ms,
        description: facts.description,
        lineage: facts.lineage,
        params: facts.params,
        metrics,
        model: facts.model,
        config: config_ref,
        layers,
        total_size: 0,
        annotations: m.annotations.clone(),
    };
    // Sizes are client-declared: a sum past u64 saturates instead of wrapping.
    record.total_size = record
        .blobs()
        .values()
        .fold(0u64, |a, b| a.saturating_add(*b));
    record
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn manifest(
        artifact: Option<&str>,
        config: &str,
        layers: &[&str],
        extra: serde_json::Value,
    ) -> ParsedManifest {
        let mut m = json!({
            "schemaVersion": 2,
            "mediaType": crate::oci::media::OCI_MANIFEST,
            "config": { "mediaType": config, "digest": D, "size": 2 },
            "layers": layers.iter().map(|mt| json!({
                "mediaType": mt, "digest": D, "size": 7,
                "annotations": { "org.opencontainers.image.title": "t.bin" },
            })).collect::<Vec<_>>(),
        });
        if let Some(a) = artifact {
            m["artifactType"] = json!(a);
        }
        for (k, v) in extra.as_object().cloned().unwrap_or_default() {
            m[k] = v;
        }
        ParsedManifest::parse(&serde_json::to_vec(&m).unwrap(), None).unwrap()
    }

    #[test]
    fn detects_model_layouts_and_not_images_or_referrers() {
        let image = "application/vnd.oci.image.config.v1+json";
        let layer = "application/vnd.oci.image.layer.v1.tar";
        let cases = [
            (
                manifest(
                    Some(spec::MODELPACK_MANIFEST),
                    crate::oci::media::OCI_EMPTY,
                    &[],
                    json!({}),
                ),
                Some(ModelLayout::ModelPack),
            ),
            (
                manifest(None, spec::MODELPACK_CONFIG, &[], json!({})),
                Some(ModelLayout::ModelPack),
            ),
            (
                manifest(None, spec::LEGACY_MODELPACK_CONFIG, &[], json!({})),
                Some(ModelLayout::LegacyModelPack),
            ),
            (
                manifest(Some(spec::LEGACY_MODELPACK_MANIFEST), image, &[], json!({})),
                Some(ModelLayout::LegacyModelPack),
            ),
            (
                manifest(None, spec::KITOPS_CONFIG, &[], json!({})),
                Some(ModelLayout::KitOps),
            ),
            (
                manifest(
                    None,
                    image,
                    &["application/vnd.docker.ai.gguf.v3"],
                    json!({}),
                ),
                Some(ModelLayout::DockerAi),
            ),
            (
                manifest(
                    None,
                    image,
                    &["application/vnd.ollama.image.model"],
                    json!({}),
                ),
                Some(ModelLayout::Ollama),
            ),
            (
                manifest(
                    None,
                    image,
                    &[layer],
                    json!({ "annotations": { "dev.berth.metric.auc": "1" } }),
                ),
                Some(ModelLayout::Annotated),
            ),
            (
                manifest(
                    None,
                    image,
                    &[layer],
                    json!({ "annotations": { "org.opencontainers.image.created": "x" } }),
                ),
                None,
            ),
            (
                manifest(
                    Some(spec::MODELPACK_MANIFEST),
                    spec::MODELPACK_CONFIG,
                    &[],
                    json!({
                        "subject": { "mediaType": crate::oci::media::OCI_MANIFEST, "digest": D, "size": 1 }
                    }),
                ),
                None,
            ),
        ];
        for (i, (m, want)) in cases.iter().enumerate() {
            assert_eq!(detect(m), *want, "case {i}");
        }
    }

    #[test]
    fn annotations_win_over_the_config_and_bad_metrics_become_params() {
        let m = manifest(
            None,
            spec::MODELPACK_CONFIG,
            &["application/vnd.cncf.model.weight.v1.raw"],
            json!({
                "annotations": {
                    "dev.berth.metric.auc": "0.9",
                    "dev.berth.metric.note": "n/a",
                    "dev.berth.metric.inf": "inf",
                    "dev.berth.param.lr": "0.1",
                    "dev.berth.lineage.dataset": "ds@2",
                    "org.opencontainers.image.created": "not a time",
                }
            }),
        );
        let config = json!({
            "descriptor": {
                "createdAt": "2024-01-01T00:00:00Z",
                "revision": "abc",
                "datasetsURL": ["ds@1"],
            },
            "config": { "format": "safetensors", "paramSize": "7b" },
        });
        let digest: Digest = D.parse().unwrap();
        let r = extract(
            ModelLayout::ModelPack,
            &m,
            &digest,
            99,
            Some(&serde_json::to_vec(&config).unwrap()),
            5,
        );
        assert_eq!(r.metrics, BTreeMap::from([("auc".into(), 0.9)]));
        assert_eq!(r.params["lr"], "0.1");
        assert_eq!(r.params["note"], "n/a");
        assert_eq!(r.params["inf"], "inf");
        assert_eq!(r.lineage.dataset.as_deref(), Some("ds@2"));
        assert_eq!(r.lineage.commit.as_deref(), Some("abc"));
        // An unparsable created annotation falls back to the config's.
        assert_eq!(r.created, "2024-01-01T00:00:00Z");
        assert_eq!(r.model.param_size.as_deref(), Some("7b"));
        assert_eq!(r.layers[0].path.as_deref(), Some("t.bin"));
        assert_eq!(r.layers[0].kind.as_deref(), Some("weight"));
        // Config and layer share a digest here: counted once.
        assert_eq!(r.total_size, 7);

        // Without a readable config: annotations only, push time as created.
        let r = extract(ModelLayout::ModelPack, &m, &digest, 99, Some(b"\xff"), 5);
        assert_eq!(
            (r.created_ms, r.created.as_str()),
            (5, "1970-01-01T00:00:00.005Z")
        );
        assert_eq!(r.lineage.commit, None);
    }
}
