//! What model configs say: the ModelPack config (both generations), the KitOps
//! Kitfile and the Docker model config.
//! Pure: works on parsed JSON; every field is optional and a malformed one is ignored.

use std::collections::BTreeMap;

use serde_json::Value;

use super::index::{ModelLayout, parse_time_ms};
use crate::store::model::{Lineage, ModelInfo};

/// Facts gathered from a config (and later overridden by annotations).
#[derive(Debug, Default)]
pub struct ConfigFacts {
    pub lineage: Lineage,
    pub params: BTreeMap<String, String>,
    /// Raw metric values; settled into numbers once every source is in.
    pub metrics: BTreeMap<String, Value>,
    pub description: Option<String>,
    pub created_ms: Option<i64>,
    pub model: ModelInfo,
}

fn text(v: &Value, path: &[&str]) -> Option<String> {
    let mut cur = v;
    for p in path {
        cur = cur.get(p)?;
    }
    match cur {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// A parameter value as text: strings as they are, other scalars and structures as JSON.
fn param_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The facts of a config of `layout`.
pub fn facts(layout: ModelLayout, v: &Value) -> ConfigFacts {
    let mut f = ConfigFacts::default();
    match layout {
        ModelLayout::ModelPack | ModelLayout::LegacyModelPack => modelpack(v, &mut f),
        ModelLayout::KitOps => kitfile(v, &mut f),
        ModelLayout::DockerAi => docker(v, &mut f),
        ModelLayout::Ollama | ModelLayout::Annotated => {}
    }
    f
}

fn modelpack(v: &Value, f: &mut ConfigFacts) {
    f.created_ms = text(v, &["descriptor", "createdAt"]).and_then(|t| parse_time_ms(&t));
    f.description = text(v, &["descriptor", "description"]);
    f.lineage.commit = text(v, &["descriptor", "revision"]);
    f.lineage.source = text(v, &["descriptor", "sourceURL"]);
    f.lineage.dataset = v
        .get("descriptor")
        .and_then(|d| d.get("datasetsURL"))
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(|d| text(d, &[]));
    let m = &mut f.model;
    m.name = text(v, &["descriptor", "name"]);
    m.version = text(v, &["descriptor", "version"]);
    m.format = text(v, &["config", "format"]);
    m.architecture = text(v, &["config", "architecture"]);
    m.param_size = text(v, &["config", "paramSize"]);
    m.precision = text(v, &["config", "precision"]);
    m.quantization = text(v, &["config", "quantization"]);
}

fn docker(v: &Value, f: &mut ConfigFacts) {
    f.created_ms = text(v, &["descriptor", "created"]).and_then(|t| parse_time_ms(&t));
    let m = &mut f.model;
    m.format = text(v, &["config", "format"]);
    m.architecture = text(v, &["config", "architecture"]);
    m.param_size = text(v, &["config", "parameters"]);
    m.quantization = text(v, &["config", "quantization"]);
}

/// KitOps Kitfile: `package` {name, version, description}, `model` {name, version,
/// framework, parameters}, `datasets` [{name}].
fn kitfile(v: &Value, f: &mut ConfigFacts) {
    f.description =
        text(v, &["package", "description"]).or_else(|| text(v, &["model", "description"]));
    let m = &mut f.model;
    m.name = text(v, &["package", "name"]).or_else(|| text(v, &["model", "name"]));
    m.version = text(v, &["package", "version"]).or_else(|| text(v, &["model", "version"]));
    m.format = text(v, &["model", "framework"]);
    if let Some(Value::Object(params)) = v.get("model").and_then(|m| m.get("parameters")) {
        for (k, val) in params {
            if let Some(t) = param_text(val) {
                f.params.insert(k.clone(), t);
            }
        }
    }
    f.lineage.dataset = v
        .get("datasets")
        .and_then(Value::as_array)
        .and_then(|d| d.first())
        .and_then(|d| text(d, &["name"]).or_else(|| text(d, &["path"])));
}
