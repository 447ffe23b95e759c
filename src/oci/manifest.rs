//! Manifest validation. The registry stores manifests byte for byte as pushed; this
//! module reads just what it needs (kind, references, subject, artifact type,
//! annotations) and rejects what no client could use.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;
use super::media::{self, ManifestKind};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ManifestError {
    #[error("manifest is not valid JSON: {0}")]
    Json(String),
    #[error("manifest schemaVersion must be 2")]
    SchemaVersion,
    #[error("manifest has no media type: send Content-Type or set mediaType")]
    NoMediaType,
    #[error("manifest media type {0:?} is not supported")]
    UnsupportedMediaType(String),
    #[error("Content-Type {header:?} differs from the manifest's mediaType {body:?}")]
    MediaTypeMismatch { header: String, body: String },
    #[error("manifest field {0} is missing or malformed")]
    Field(&'static str),
    #[error("descriptor in {field} is invalid: {reason}")]
    Descriptor { field: &'static str, reason: String },
}

/// A content descriptor as it appears in manifests and the referrers index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// What the registry needs to know of a pushed manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedManifest {
    pub media_type: String,
    pub kind: ManifestKind,
    /// Config and layers (image) or child manifests (index): everything that must
    /// be present in the repository before the manifest is accepted.
    pub references: Vec<Descriptor>,
    pub subject: Option<Descriptor>,
    /// `artifactType`, or for an image manifest without one, its config media type
    /// (the value the referrers API reports).
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
}

/// Lenient view of a manifest body: unknown fields are ignored, every field that
/// matters is checked by hand so that the error says which one is wrong.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    schema_version: Option<serde_json::Value>,
    media_type: Option<serde_json::Value>,
    artifact_type: Option<serde_json::Value>,
    config: Option<serde_json::Value>,
    layers: Option<serde_json::Value>,
    manifests: Option<serde_json::Value>,
    subject: Option<serde_json::Value>,
    annotations: Option<serde_json::Value>,
}

impl ParsedManifest {
    /// Validates `body` pushed with the `Content-Type` header `content_type`.
    pub fn parse(body: &[u8], content_type: Option<&str>) -> Result<Self, ManifestError> {
        let raw: RawManifest =
            serde_json::from_slice(body).map_err(|e| ManifestError::Json(e.to_string()))?;
        if raw.schema_version.as_ref().and_then(|v| v.as_u64()) != Some(2) {
            return Err(ManifestError::SchemaVersion);
        }
        let body_type = match &raw.media_type {
            None => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ManifestError::Field("mediaType")),
        };
        let header_type = content_type
            .map(media::essence)
            .filter(|t| !t.is_empty() && manifest_header_is_specific(t));
        let media_type = match (header_type, body_type) {
            (Some(h), Some(b)) if h != b => {
                return Err(ManifestError::MediaTypeMismatch { header: h, body: b });
            }
            (_, Some(b)) => b,
            (Some(h), None) => h,
            (None, None) => return Err(ManifestError::NoMediaType),
        };
        let kind = media::manifest_kind(&media_type)
            .ok_or_else(|| ManifestError::UnsupportedMediaType(media_type.clone()))?;

        let references = match kind {
            ManifestKind::Image => {
                if raw.manifests.is_some() {
                    return Err(ManifestError::Field(
                        "manifests (not allowed in an image manifest)",
                    ));
                }
                let config = descriptor(raw.config.as_ref(), "config")?;
                let mut refs = vec![config];
                refs.extend(descriptor_list(raw.layers.as_ref(), "layers")?);
                refs
            }
            ManifestKind::Index => {
                if raw.config.is_some() || raw.layers.is_some() {
                    return Err(ManifestError::Field(
                        "config/layers (not allowed in an index)",
                    ));
                }
                descriptor_list(raw.manifests.as_ref(), "manifests")?
            }
        };
        let subject = match &raw.subject {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(descriptor(Some(v), "subject")?),
        };
        let artifact_type = match &raw.artifact_type {
            None | Some(serde_json::Value::Null) => None,
            // Empty counts as missing: the spec's fallback applies to both.
            Some(serde_json::Value::String(s)) if s.is_empty() => None,
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(_) => return Err(ManifestError::Field("artifactType")),
        };
        let artifact_type = artifact_type.or_else(|| match kind {
            ManifestKind::Image => references.first().map(|c| c.media_type.clone()),
            ManifestKind::Index => None,
        });
        let annotations = string_map(raw.annotations.as_ref(), "annotations")?;
        Ok(ParsedManifest {
            media_type,
            kind,
            references,
            subject,
            artifact_type,
            annotations,
        })
    }
}

/// Clients sometimes send a generic JSON content type; only a manifest media type
/// is a declaration worth checking against the body.
fn manifest_header_is_specific(t: &str) -> bool {
    !matches!(
        t,
        "application/json" | "application/octet-stream" | "text/plain"
    )
}

fn descriptor(
    v: Option<&serde_json::Value>,
    field: &'static str,
) -> Result<Descriptor, ManifestError> {
    let obj = v
        .and_then(|v| v.as_object())
        .ok_or(ManifestError::Field(field))?;
    let bad = |reason: String| ManifestError::Descriptor { field, reason };
    let media_type = obj
        .get("mediaType")
        .and_then(|m| m.as_str())
        .ok_or_else(|| bad("mediaType is missing".into()))?
        .to_string();
    let digest: Digest = obj
        .get("digest")
        .and_then(|d| d.as_str())
        .ok_or_else(|| bad("digest is missing".into()))?
        .parse()
        .map_err(|e: super::DigestError| bad(e.to_string()))?;
    let size = obj
        .get("size")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| bad("size is missing or not a non-negative integer".into()))?;
    let artifact_type = match obj.get("artifactType") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => return Err(bad("artifactType is not a string".into())),
    };
    let annotations = string_map(obj.get("annotations"), field)?;
    Ok(Descriptor {
        media_type,
        digest,
        size,
        artifact_type,
        annotations,
    })
}

fn descriptor_list(
    v: Option<&serde_json::Value>,
    field: &'static str,
) -> Result<Vec<Descriptor>, ManifestError> {
    let arr = v
        .and_then(|v| v.as_array())
        .ok_or(ManifestError::Field(field))?;
    arr.iter().map(|d| descriptor(Some(d), field)).collect()
}

fn string_map(
    v: Option<&serde_json::Value>,
    field: &'static str,
) -> Result<BTreeMap<String, String>, ManifestError> {
    match v {
        None | Some(serde_json::Value::Null) => Ok(BTreeMap::new()),
        Some(serde_json::Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ManifestError::Field(field)),
            })
            .collect(),
        Some(_) => Err(ManifestError::Field(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn image(extra: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{D}","size":0}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{D}","size":0,"from":"x"}}]{extra}}}"#,
            media::OCI_MANIFEST
        )
    }

    #[test]
    fn parses_image_with_subject_and_unknown_fields() {
        let body = image(&format!(
            r#","subject":{{"mediaType":"{}","digest":"{D}","size":2}},"annotations":{{"a":"b"}}"#,
            media::OCI_MANIFEST
        ));
        let m = ParsedManifest::parse(body.as_bytes(), Some(media::OCI_MANIFEST)).unwrap();
        assert_eq!(m.kind, ManifestKind::Image);
        assert_eq!(m.references.len(), 2);
        assert!(m.subject.is_some());
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        assert_eq!(m.annotations.get("a").map(String::as_str), Some("b"));
    }

    #[test]
    fn rejects_mismatched_media_type() {
        let body = image("");
        let err = ParsedManifest::parse(body.as_bytes(), Some(media::OCI_INDEX)).unwrap_err();
        assert!(matches!(err, ManifestError::MediaTypeMismatch { .. }));
    }

    #[test]
    fn rejects_malformed_bodies() {
        for (body, ct) in [
            ("not json", Some(media::OCI_MANIFEST)),
            ("[]", Some(media::OCI_MANIFEST)),
            (r#"{"schemaVersion":1}"#, Some(media::OCI_MANIFEST)),
            (r#"{"schemaVersion":2}"#, None),
            (
                r#"{"schemaVersion":2,"config":{}}"#,
                Some(media::OCI_MANIFEST),
            ),
            (
                r#"{"schemaVersion":2,"manifests":5}"#,
                Some(media::OCI_INDEX),
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"text/html","manifests":[]}"#,
                None,
            ),
        ] {
            assert!(
                ParsedManifest::parse(body.as_bytes(), ct).is_err(),
                "{body}"
            );
        }
        let bad_size = image("").replace("\"size\":0,\"from\"", "\"size\":-1,\"from\"");
        assert!(ParsedManifest::parse(bad_size.as_bytes(), None).is_err());
    }

    /// The spec's referrers rule: an empty or missing `artifactType` becomes the
    /// config media type of an image manifest and stays absent for an index.
    #[test]
    fn empty_artifact_type_counts_as_missing() {
        let body = image(r#","artifactType":"""#);
        let m = ParsedManifest::parse(body.as_bytes(), None).unwrap();
        assert_eq!(
            m.artifact_type.as_deref(),
            Some("application/vnd.oci.image.config.v1+json")
        );
        let index = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","artifactType":"","manifests":[]}}"#,
            media::OCI_INDEX
        );
        let m = ParsedManifest::parse(index.as_bytes(), None).unwrap();
        assert_eq!(m.artifact_type, None);
    }

    #[test]
    fn index_without_header_uses_body_type() {
        let body = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","manifests":[{{"mediaType":"{}","digest":"{D}","size":1}}]}}"#,
            media::OCI_INDEX,
            media::OCI_MANIFEST
        );
        let m = ParsedManifest::parse(body.as_bytes(), Some("application/json")).unwrap();
        assert_eq!(m.kind, ManifestKind::Index);
        assert_eq!(m.artifact_type, None);
    }
}
