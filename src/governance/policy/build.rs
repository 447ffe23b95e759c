//! Building gates and hooks from the policy's tables, with the line of each error.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::{Better, DEFAULT_HOOK_TIMEOUT_SECS, Gate, GateCheck, GateKind, Hook};
use crate::governance::signing::VerifyKey;

/// One gate as written: a flat table whose `type` says which fields apply
/// (a flat struct rather than a tagged enum keeps every field's line).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GateSpec {
    #[serde(rename = "type")]
    kind: Spanned<GateKind>,
    name: Option<String>,
    metric: Option<Spanned<String>>,
    better: Option<Spanned<Better>>,
    min_delta: Option<Spanned<f64>>,
    threshold: Option<Spanned<f64>>,
    against: Option<Spanned<String>>,
    keys: Option<Spanned<Vec<Spanned<String>>>>,
    count: Option<Spanned<u32>>,
    exclude_pusher: Option<Spanned<bool>>,
    artifact_type: Option<Spanned<String>>,
    annotations: Option<Spanned<BTreeMap<String, String>>>,
    url: Option<Spanned<String>>,
    timeout_secs: Option<Spanned<u64>>,
    secret: Option<Spanned<String>>,
    secret_env: Option<Spanned<String>>,
}

type GateError = (Option<std::ops::Range<usize>>, String);

pub(super) fn build_hook(
    url: Spanned<String>,
    secret: Option<String>,
    secret_env: Option<Spanned<String>>,
    timeout_secs: Option<u64>,
) -> Result<Hook, GateError> {
    let span = url.span();
    let parsed = reqwest::Url::parse(url.get_ref())
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| {
            (
                Some(span),
                format!("{:?} is not an http(s) URL", url.get_ref()),
            )
        })?;
    let secret = match (secret, secret_env) {
        (Some(_), Some(env)) => {
            return Err((
                Some(env.span()),
                "give secret or secret_env, not both".into(),
            ));
        }
        (Some(s), None) => Some(s),
        (None, Some(env)) => Some(std::env::var(env.get_ref()).map_err(|_| {
            (
                Some(env.span()),
                format!("environment variable {} is not set", env.get_ref()),
            )
        })?),
        (None, None) => None,
    };
    Ok(Hook {
        url: parsed,
        secret,
        timeout: std::time::Duration::from_secs(
            timeout_secs
                .unwrap_or(DEFAULT_HOOK_TIMEOUT_SECS)
                .clamp(1, 300),
        ),
    })
}

fn span_of<T>(field: &Option<Spanned<T>>) -> Option<std::ops::Range<usize>> {
    field.as_ref().map(Spanned::span)
}

fn required<T>(field: Option<Spanned<T>>, name: &str, kind: &str) -> Result<Spanned<T>, GateError> {
    field.ok_or_else(|| (None, format!("a {kind} gate needs `{name}`")))
}

/// A gate field as written: its name, where, and the gate kinds it applies to.
type FieldUse<'a> = (&'a str, Option<std::ops::Range<usize>>, &'a [GateKind]);

pub(super) fn build_gate(spec: GateSpec, dir: Option<&Path>) -> Result<Gate, GateError> {
    use GateKind::{Approval, Metric, Referrer, Signature, Webhook};
    let kind = *spec.kind.get_ref();
    let kind_name = format!("{kind:?}").to_lowercase();
    let fields: [FieldUse; 14] = [
        ("metric", span_of(&spec.metric), &[Metric]),
        ("better", span_of(&spec.better), &[Metric]),
        ("min_delta", span_of(&spec.min_delta), &[Metric]),
        ("threshold", span_of(&spec.threshold), &[Metric]),
        ("against", span_of(&spec.against), &[Metric]),
        ("keys", span_of(&spec.keys), &[Signature]),
        ("count", span_of(&spec.count), &[Approval]),
        ("exclude_pusher", span_of(&spec.exclude_pusher), &[Approval]),
        ("artifact_type", span_of(&spec.artifact_type), &[Referrer]),
        ("annotations", span_of(&spec.annotations), &[Referrer]),
        ("url", span_of(&spec.url), &[Webhook]),
        ("timeout_secs", span_of(&spec.timeout_secs), &[Webhook]),
        ("secret", span_of(&spec.secret), &[Webhook]),
        ("secret_env", span_of(&spec.secret_env), &[Webhook]),
    ];
    for (field, span, kinds) in fields {
        if let Some(span) = span
            && !kinds.contains(&kind)
        {
            return Err((
                Some(span),
                format!("`{field}` does not apply to a {kind_name} gate"),
            ));
        }
    }
    let (name, check) = match kind {
        Metric => {
            let metric = required(spec.metric, "metric", &kind_name)?.into_inner();
            let threshold = spec.threshold.map(Spanned::into_inner);
            if threshold.is_some() && (spec.min_delta.is_some() || spec.against.is_some()) {
                return Err((
                    span_of(&spec.min_delta).or(span_of(&spec.against)),
                    "a metric gate compares with a threshold or with an alias's target (min_delta, against), not both".into(),
                ));
            }
            let min_delta = spec.min_delta.map(Spanned::into_inner);
            if min_delta.is_some_and(|d| !d.is_finite() || d < 0.0)
                || threshold.is_some_and(|t| !t.is_finite())
            {
                return Err((
                    None,
                    "min_delta must be a finite number >= 0, threshold finite".into(),
                ));
            }
            (
                spec.name.unwrap_or_else(|| format!("metric {metric}")),
                GateCheck::Metric {
                    metric,
                    better: spec.better.map(Spanned::into_inner).unwrap_or_default(),
                    threshold,
                    min_delta: min_delta.unwrap_or(0.0),
                    against: spec.against.map(Spanned::into_inner),
                },
            )
        }
        Signature => {
            let keys = required(spec.keys, "keys", &kind_name)?;
            if keys.get_ref().is_empty() {
                return Err((
                    Some(keys.span()),
                    "a signature gate needs at least one key".into(),
                ));
            }
            let mut loaded = Vec::new();
            for k in keys.into_inner() {
                loaded.push(load_key(k.get_ref(), dir).map_err(|e| (Some(k.span()), e))?);
            }
            (
                spec.name.unwrap_or_else(|| "signature".into()),
                GateCheck::Signature { keys: loaded },
            )
        }
        Approval => {
            let count = required(spec.count, "count", &kind_name)?;
            if *count.get_ref() == 0 || *count.get_ref() > 100 {
                return Err((Some(count.span()), "count must be from 1 to 100".into()));
            }
            (
                spec.name.unwrap_or_else(|| "approval".into()),
                GateCheck::Approval {
                    count: count.into_inner(),
                    exclude_pusher: spec.exclude_pusher.is_some_and(Spanned::into_inner),
                },
            )
        }
        Referrer => {
            let artifact_type =
                required(spec.artifact_type, "artifact_type", &kind_name)?.into_inner();
            (
                spec.name
                    .unwrap_or_else(|| format!("referrer {artifact_type}")),
                GateCheck::Referrer {
                    artifact_type,
                    annotations: spec
                        .annotations
                        .map(Spanned::into_inner)
                        .unwrap_or_default(),
                },
            )
        }
        Webhook => {
            let url = required(spec.url, "url", &kind_name)?;
            let hook = build_hook(
                url,
                spec.secret.map(Spanned::into_inner),
                spec.secret_env,
                spec.timeout_secs.map(Spanned::into_inner),
            )?;
            (
                spec.name.unwrap_or_else(|| format!("webhook {}", hook.url)),
                GateCheck::Webhook(hook),
            )
        }
    };
    Ok(Gate { name, check })
}

/// A key given inline (PEM) or as a file path (relative to the policy's directory).
fn load_key(k: &str, dir: Option<&Path>) -> Result<VerifyKey, String> {
    let pem = if k.trim_start().starts_with("-----BEGIN") {
        k.to_string()
    } else {
        let path = match dir {
            Some(d) => d.join(k),
            None => Path::new(k).to_path_buf(),
        };
        std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read key {}: {e}", path.display()))?
    };
    VerifyKey::from_pem(pem.as_bytes()).map_err(|e| format!("key {k:?}: {e}"))
}
