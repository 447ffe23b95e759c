//! Lineage, parameters and metrics of a model version: read from `berth.toml`
//! beside the model and from flags (which win), validated, and rendered as manifest
//! annotations (the ModelPack config's schema has no room for them).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

use crate::models::spec::{berth_keys, oci_keys};

/// The file beside a model that holds its metadata (never packed as a layer).
pub const BERTH_TOML: &str = "berth.toml";

/// A metric: the text as given (kept in annotations) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub text: String,
    pub value: f64,
}

impl Metric {
    pub fn parse(text: &str) -> Result<Metric> {
        let t = text.trim();
        match t.parse::<f64>() {
            Ok(value) if value.is_finite() => Ok(Metric {
                text: t.to_string(),
                value,
            }),
            _ => bail!("metric value {text:?} is not a finite decimal number"),
        }
    }
}

/// Everything known about how a version was made.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata {
    pub run_id: Option<String>,
    pub dataset: Option<String>,
    pub commit: Option<String>,
    pub image: Option<String>,
    pub description: Option<String>,
    pub source: Option<String>,
    pub params: BTreeMap<String, String>,
    pub metrics: BTreeMap<String, Metric>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlFile {
    run_id: Option<String>,
    dataset: Option<String>,
    commit: Option<String>,
    image: Option<String>,
    description: Option<String>,
    source: Option<String>,
    #[serde(default)]
    params: BTreeMap<String, toml::Value>,
    #[serde(default)]
    metrics: BTreeMap<String, toml::Value>,
}

/// Parameter and metric names: `[A-Za-z0-9_.-]{1,128}`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn check_name(what: &str, name: &str) -> Result<()> {
    if !valid_name(name) {
        bail!("{what} name {name:?} is invalid: use 1 to 128 of A-Z a-z 0-9 _ . -");
    }
    Ok(())
}

/// Splits `k=v`.
pub fn split_pair(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) => Ok((k.trim().to_string(), v.to_string())),
        None => bail!("{text:?} is not of the form name=value"),
    }
}

impl Metadata {
    /// Reads `dir/berth.toml` if there is one.
    pub fn from_dir(dir: &Path) -> Result<Metadata> {
        let path = dir.join(BERTH_TOML);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::from_toml(&text).with_context(|| format!("in {}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Metadata::default()),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn from_toml(text: &str) -> Result<Metadata> {
        let f: TomlFile = toml::from_str(text)?;
        let mut m = Metadata {
            run_id: f.run_id,
            dataset: f.dataset,
            commit: f.commit,
            image: f.image,
            description: f.description,
            source: f.source,
            ..Metadata::default()
        };
        for (k, v) in f.params {
            check_name("parameter", &k)?;
            let text = match v {
                toml::Value::String(s) => s,
                toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                    v.to_string()
                }
                other => bail!("parameter {k}: {other} is not a string, number or boolean"),
            };
            m.params.insert(k, text);
        }
        for (k, v) in f.metrics {
            check_name("metric", &k)?;
            let metric = match &v {
                toml::Value::String(s) => Metric::parse(s),
                toml::Value::Integer(_) | toml::Value::Float(_) => Metric::parse(&v.to_string()),
                other => bail!("metric {k}: {other} is not a number"),
            }
            .with_context(|| format!("metric {k}"))?;
            m.metrics.insert(k, metric);
        }
        Ok(m)
    }

    /// Sets a parameter from `name=value`.
    pub fn set_param(&mut self, pair: &str) -> Result<()> {
        let (k, v) = split_pair(pair)?;
        check_name("parameter", &k)?;
        self.params.insert(k, v);
        Ok(())
    }

    /// Sets a metric from `name=value`.
    pub fn set_metric(&mut self, pair: &str) -> Result<()> {
        let (k, v) = split_pair(pair)?;
        check_name("metric", &k)?;
        let m = Metric::parse(&v).with_context(|| format!("metric {k}"))?;
        self.metrics.insert(k, m);
        Ok(())
    }

    /// The manifest annotations this metadata contributes.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        let mut a = BTreeMap::new();
        let mut put = |k: &str, v: &Option<String>| {
            if let Some(v) = v {
                a.insert(k.to_string(), v.clone());
            }
        };
        put(oci_keys::REVISION, &self.commit);
        put(oci_keys::DESCRIPTION, &self.description);
        put(oci_keys::SOURCE, &self.source);
        put(berth_keys::RUN_ID, &self.run_id);
        put(berth_keys::DATASET, &self.dataset);
        put(berth_keys::IMAGE, &self.image);
        for (k, v) in &self.params {
            a.insert(format!("{}{k}", berth_keys::PARAM_PREFIX), v.clone());
        }
        for (k, m) in &self.metrics {
            a.insert(format!("{}{k}", berth_keys::METRIC_PREFIX), m.text.clone());
        }
        a
    }

    /// `self` with every field `over` sets replaced (flags over the file).
    pub fn overridden_by(mut self, over: Metadata) -> Metadata {
        let pick = |a: &mut Option<String>, b: Option<String>| {
            if b.is_some() {
                *a = b;
            }
        };
        pick(&mut self.run_id, over.run_id);
        pick(&mut self.dataset, over.dataset);
        pick(&mut self.commit, over.commit);
        pick(&mut self.image, over.image);
        pick(&mut self.description, over.description);
        pick(&mut self.source, over.source);
        self.params.extend(over.params);
        self.metrics.extend(over.metrics);
        self
    }
}

/// RFC 3339 UTC time (`2024-06-11T08:30:00Z`) of seconds since the Unix epoch.
pub fn rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_718_094_600), "2024-06-11T08:30:00Z");
        assert_eq!(rfc3339(4_102_444_799), "2099-12-31T23:59:59Z");
    }

    #[test]
    fn toml_flags_and_validation() {
        let file = Metadata::from_toml(
            r#"
            run_id = "run-1"
            dataset = "imagenet@2012"
            commit = "abc123"
            [params]
            lr = 0.001
            epochs = 3
            optimizer = "adamw"
            [metrics]
            auc = 0.91
            loss = "1.5"
            "#,
        )
        .unwrap();
        assert_eq!(file.params["lr"], "0.001");
        assert_eq!(file.params["epochs"], "3");
        assert_eq!(file.metrics["loss"].value, 1.5);
        let mut flags = Metadata {
            run_id: Some("run-2".into()),
            ..Metadata::default()
        };
        flags.set_metric("auc=0.95").unwrap();
        flags.set_param("lr=0.01").unwrap();
        let m = file.overridden_by(flags);
        assert_eq!(m.run_id.as_deref(), Some("run-2"));
        assert_eq!(m.dataset.as_deref(), Some("imagenet@2012"));
        assert_eq!(m.metrics["auc"].text, "0.95");
        assert_eq!(m.params["lr"], "0.01");
        assert_eq!(m.params["optimizer"], "adamw");

        let a = m.annotations();
        assert_eq!(a["org.opencontainers.image.revision"], "abc123");
        assert_eq!(a["dev.berth.lineage.run-id"], "run-2");
        assert_eq!(a["dev.berth.metric.auc"], "0.95");
        assert_eq!(a["dev.berth.param.epochs"], "3");

        let mut bad = Metadata::default();
        assert!(bad.set_metric("auc=high").is_err());
        assert!(bad.set_metric("auc=NaN").is_err());
        assert!(bad.set_metric("auc").is_err());
        assert!(bad.set_param("a b=1").is_err());
        assert!(bad.set_param("=1").is_err());
        assert!(bad.set_param("x/y=1").is_err());
        assert!(Metadata::from_toml("unknown = 1").is_err());
        assert!(Metadata::from_toml("[metrics]\nauc = true").is_err());
        assert!(Metadata::from_toml("[params]\n\"bad key\" = 1").is_err());
    }
}
