//! Test content: blobs with bytes unique to a run, and OCI manifests and
//! indexes built from them.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::digest;

pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub(crate) const OCI_EMPTY: &str = "application/vnd.oci.empty.v1+json";

/// A short lowercase alphanumeric id, different on every call.
pub(crate) fn new_run_id() -> String {
    let mut h = RandomState::new().build_hasher();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    h.write_u128(nanos);
    h.write_u32(std::process::id());
    let mut n = h.finish();
    let alphabet = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut id = String::new();
    for _ in 0..10 {
        id.push(alphabet[(n % 36) as usize] as char);
        n /= 36;
    }
    id
}

/// Deterministic pseudo-random bytes derived from `seed` (SHA-256 in counter mode).
pub(crate) fn bytes(seed: &str, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter: u64 = 0;
    while out.len() < len {
        let mut h = Sha256::new();
        h.update(seed.as_bytes());
        h.update(counter.to_be_bytes());
        out.extend_from_slice(h.finalize().as_slice());
        counter += 1;
    }
    out.truncate(len);
    out
}

/// A blob and its sha256 digest.
#[derive(Clone, Debug)]
pub(crate) struct Blob {
    pub data: Vec<u8>,
    pub digest: String,
}

impl Blob {
    pub fn new(data: Vec<u8>) -> Blob {
        let digest = digest::sha256(&data);
        Blob { data, digest }
    }

    /// A blob of `len` bytes unique to this run and label.
    pub fn unique(run_id: &str, label: &str, len: usize) -> Blob {
        Blob::new(bytes(&format!("berth-conformance {run_id} {label}"), len))
    }

    /// The empty JSON object `{}` (the OCI "empty descriptor" content).
    pub fn empty_json() -> Blob {
        Blob::new(b"{}".to_vec())
    }

    pub fn size(&self) -> usize {
        self.data.len()
    }

    pub fn descriptor(&self, media_type: &str) -> Value {
        json!({ "mediaType": media_type, "digest": self.digest, "size": self.size() })
    }
}

/// A manifest (or index) exactly as it is pushed.
#[derive(Clone, Debug)]
pub(crate) struct Manifest {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
    pub digest: String,
}

impl Manifest {
    /// Serialises a JSON value (compactly) as a manifest of the given type.
    pub fn from_value(media_type: &'static str, value: &Value) -> Manifest {
        Manifest::from_bytes(media_type, value.to_string().into_bytes())
    }

    /// Wraps bytes pushed verbatim.
    pub fn from_bytes(media_type: &'static str, bytes: Vec<u8>) -> Manifest {
        let digest = digest::sha256(&bytes);
        Manifest {
            media_type,
            bytes,
            digest,
        }
    }

    pub fn descriptor(&self) -> Value {
        json!({ "mediaType": self.media_type, "digest": self.digest, "size": self.bytes.len() })
    }
}

/// An image: a config blob, one layer blob, and the manifest tying them.
#[derive(Clone, Debug)]
pub(crate) struct Image {
    pub config: Blob,
    pub layer: Blob,
    pub manifest: Manifest,
}

impl Image {
    /// A small image with content unique to this run and label.
    pub fn new(run_id: &str, label: &str) -> Image {
        let layer = Blob::unique(run_id, &format!("{label} layer"), 1024 + 37);
        let config = Blob::new(
            json!({
                "architecture": "amd64",
                "os": "linux",
                "config": { "Labels": { "berth.conformance.run": run_id, "berth.conformance.label": label } },
                "rootfs": { "type": "layers", "diff_ids": [layer.digest] },
            })
            .to_string()
            .into_bytes(),
        );
        let manifest = image_manifest(
            &config.descriptor(OCI_CONFIG),
            &[layer.descriptor(OCI_LAYER)],
            Map::new(),
        );
        Image {
            config,
            layer,
            manifest,
        }
    }

    pub fn blobs(&self) -> [&Blob; 2] {
        [&self.config, &self.layer]
    }
}

/// An OCI image manifest with the given config, layers and extra top-level fields.
pub(crate) fn image_manifest(
    config: &Value,
    layers: &[Value],
    extra: Map<String, Value>,
) -> Manifest {
    let mut m = Map::new();
    m.insert("schemaVersion".into(), json!(2));
    m.insert("mediaType".into(), json!(OCI_MANIFEST));
    m.insert("config".into(), config.clone());
    m.insert("layers".into(), Value::Array(layers.to_vec()));
    m.extend(extra);
    Manifest::from_value(OCI_MANIFEST, &Value::Object(m))
}

/// An OCI image index over the given manifests, with extra top-level fields.
pub(crate) fn index(manifests: &[Value], extra: Map<String, Value>) -> Manifest {
    let mut m = Map::new();
    m.insert("schemaVersion".into(), json!(2));
    m.insert("mediaType".into(), json!(OCI_INDEX));
    m.insert("manifests".into(), Value::Array(manifests.to_vec()));
    m.extend(extra);
    Manifest::from_value(OCI_INDEX, &Value::Object(m))
}

/// Builds a `serde_json` map from `(key, value)` pairs.
pub(crate) fn fields<const N: usize>(pairs: [(&str, Value); N]) -> Map<String, Value> {
    pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_ids_are_valid_name_components() {
        let a = new_run_id();
        assert_eq!(a.len(), 10);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        );
    }

    #[test]
    fn bytes_are_deterministic_and_sized() {
        assert_eq!(bytes("x", 100), bytes("x", 100));
        assert_ne!(bytes("x", 100), bytes("y", 100));
        assert_eq!(bytes("x", 33).len(), 33);
    }
}
