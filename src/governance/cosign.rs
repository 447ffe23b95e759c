//! cosign's signature formats, written and checked offline with a key:
//!
//! - the v3 format: a DSSE envelope over an in-toto Statement v1, in a sigstore
//!   bundle v0.3 (public-key hint, no transparency-log entry), stored as an OCI
//!   1.1 referrer of the signed manifest;
//! - the legacy formats: the simple-signing payload under the tag
//!   `sha256-<hex>.sig`, and DSSE envelopes under `sha256-<hex>.att`.
//!
//! The same lookup finds and verifies signatures in the registry's own stores
//! (the signature gate) and over HTTP (`berth verify`), through [`SignatureSource`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::gates::GateContext;
use super::signing::{KeyError, SigningKey, VerifyKey};
use crate::oci::media::{OCI_EMPTY, OCI_IMAGE_CONFIG, OCI_MANIFEST};
use crate::oci::{Descriptor, Digest, ParsedManifest};
use crate::store::StoreResult;

pub const SIMPLE_SIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
pub const BUNDLE_V03: &str = "application/vnd.dev.sigstore.bundle.v0.3+json";
const BUNDLE_PREFIX: &str = "application/vnd.dev.sigstore.bundle";
pub const DSSE_ENVELOPE: &str = "application/vnd.dsse.envelope.v1+json";
pub const IN_TOTO: &str = "application/vnd.in-toto+json";
pub const STATEMENT_V1: &str = "https://in-toto.io/Statement/v1";
/// The predicate type of a cosign v3 signature.
pub const COSIGN_SIGN_V1: &str = "https://sigstore.dev/cosign/sign/v1";
pub const BUNDLE_CONTENT_ANNOTATION: &str = "dev.sigstore.bundle.content";
pub const BUNDLE_PREDICATE_ANNOTATION: &str = "dev.sigstore.bundle.predicateType";
pub const CREATED_ANNOTATION: &str = "org.opencontainers.image.created";
/// The empty JSON config of artifacts, and its digest.
pub const EMPTY_JSON: &[u8] = b"{}";

/// Largest signature manifest, bundle or payload read while verifying.
const MAX_SIGNATURE_BYTES: u64 = 1 << 20;
/// Most referrers read while looking for signatures.
const MAX_REFERRERS: usize = 1000;

pub use super::{b64, unb64};

/// DSSE's pre-authentication encoding: what a DSSE signature signs.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    )
    .into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A DSSE envelope (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    pub payload: String,
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    pub signatures: Vec<EnvelopeSignature>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvelopeSignature {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    pub sig: String,
}

impl Envelope {
    /// Signs `payload` as a DSSE envelope (no keyid, as cosign writes it).
    pub fn sign(
        key: &SigningKey,
        payload_type: &str,
        payload: &[u8],
    ) -> Result<Envelope, KeyError> {
        let sig = key.sign(&pae(payload_type, payload))?;
        Ok(Envelope {
            payload: b64(payload),
            payload_type: payload_type.to_string(),
            signatures: vec![EnvelopeSignature {
                keyid: String::new(),
                sig: b64(&sig),
            }],
        })
    }

    pub fn payload_bytes(&self) -> Option<Vec<u8>> {
        unb64(&self.payload)
    }

    /// The key among `keys` one of the envelope's signatures verifies with.
    pub fn verified_by<'k>(&self, keys: &'k [VerifyKey]) -> Option<&'k VerifyKey> {
        let payload = self.payload_bytes()?;
        let signed = pae(&self.payload_type, &payload);
        self.signatures.iter().find_map(|s| {
            let sig = unb64(&s.sig)?;
            keys.iter().find(|k| k.verifies(&sig, &signed))
        })
    }
}

/// An in-toto Statement v1 about one manifest.
pub fn statement(
    name: Option<&str>,
    subject: &Digest,
    predicate_type: &str,
    predicate: Value,
) -> Vec<u8> {
    let mut s = json!({ "digest": { subject.algorithm().as_str(): subject.hex() } });
    if let Some(n) = name {
        s["name"] = Value::String(n.to_string());
    }
    serde_json::to_vec(&json!({
        "_type": STATEMENT_V1,
        "subject": [s],
        "predicateType": predicate_type,
        "predicate": predicate,
    }))
    .unwrap_or_default()
}

/// What a verifier reads of a statement.
#[derive(Debug, Clone, Deserialize)]
pub struct Statement {
    #[serde(rename = "_type")]
    pub kind: String,
    pub subject: Vec<StatementSubject>,
    #[serde(rename = "predicateType")]
    pub predicate_type: String,
    #[serde(default)]
    pub predicate: Value,
}

#[derive(Debug, Clone, Deserialize)]
pub struct StatementSubject {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub digest: BTreeMap<String, String>,
}

impl Statement {
    pub fn parse(bytes: &[u8]) -> Option<Statement> {
        serde_json::from_slice(bytes).ok()
    }

    /// Whether one subject is `digest`.
    pub fn is_about(&self, digest: &Digest) -> bool {
        self.subject.iter().any(|s| {
            s.digest
                .get(digest.algorithm().as_str())
                .is_some_and(|h| h.eq_ignore_ascii_case(digest.hex()))
        })
    }
}

/// A sigstore bundle v0.3 holding a DSSE envelope, with a public-key hint and no
/// transparency-log entry.
pub fn bundle(envelope: &Envelope, hint: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "mediaType": BUNDLE_V03,
        "verificationMaterial": { "publicKey": { "hint": hint } },
        "dsseEnvelope": envelope,
    }))
    .unwrap_or_default()
}

/// The DSSE envelope of a sigstore bundle (v0.1 to v0.3), if it holds one.
pub fn bundle_envelope(bytes: &[u8]) -> Option<Envelope> {
    let v: Value = serde_json::from_slice(bytes).ok()?;
    let media = v.get("mediaType")?.as_str()?;
    if !media.starts_with(BUNDLE_PREFIX) {
        return None;
    }
    serde_json::from_value(v.get("dsseEnvelope")?.clone()).ok()
}

/// cosign's simple-signing payload for a manifest of `docker_reference`.
pub fn simple_signing_payload(docker_reference: &str, digest: &Digest) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "critical": {
            "identity": { "docker-reference": docker_reference },
            "image": { "docker-manifest-digest": digest.to_string() },
            "type": "cosign container image signature",
        },
        "optional": null,
    }))
    .unwrap_or_default()
}

/// Whether a simple-signing payload names `digest`.
fn payload_names(payload: &[u8], digest: &Digest) -> bool {
    serde_json::from_slice::<Value>(payload).is_ok_and(|v| {
        v.pointer("/critical/image/docker-manifest-digest")
            .and_then(Value::as_str)
            == Some(digest.to_string().as_str())
    })
}

/// The tag cosign keeps signatures of `digest` under.
pub fn sig_tag(digest: &Digest) -> String {
    format!("{}-{}.sig", digest.algorithm().as_str(), digest.hex())
}

/// The tag cosign keeps attestations of `digest` under.
pub fn att_tag(digest: &Digest) -> String {
    format!("{}-{}.att", digest.algorithm().as_str(), digest.hex())
}

fn descriptor_json(media_type: &str, bytes_digest: &Digest, size: u64) -> Value {
    json!({ "mediaType": media_type, "size": size, "digest": bytes_digest.to_string() })
}

/// The referrer manifest cosign v3 writes for a bundle: empty config, the bundle
/// as its one layer, `subject` = the signed manifest.
pub fn bundle_manifest(
    subject: &Descriptor,
    bundle: &[u8],
    predicate_type: &str,
    created: &str,
) -> Vec<u8> {
    let mut config = descriptor_json(OCI_EMPTY, &Digest::sha256_of(EMPTY_JSON), 2);
    config["artifactType"] = Value::String(BUNDLE_V03.into());
    serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config,
        "layers": [descriptor_json(BUNDLE_V03, &Digest::sha256_of(bundle), bundle.len() as u64)],
        "annotations": {
            BUNDLE_CONTENT_ANNOTATION: "dsse-envelope",
            BUNDLE_PREDICATE_ANNOTATION: predicate_type,
            CREATED_ANNOTATION: created,
        },
        "subject": descriptor_json(&subject.media_type, &subject.digest, subject.size),
        "artifactType": BUNDLE_V03,
    }))
    .unwrap_or_default()
}

/// A layer of a legacy `.sig` or `.att` manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyLayer {
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    pub annotations: BTreeMap<String, String>,
}

/// The config and manifest of a legacy signature or attestation image, as
/// go-containerregistry writes them for cosign. Returns (config, manifest).
pub fn legacy_image(layers: &[LegacyLayer]) -> (Vec<u8>, Vec<u8>) {
    const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
    let config = serde_json::to_vec(&json!({
        "architecture": "",
        "created": ZERO_TIME,
        "history": layers.iter().map(|_| json!({ "created": ZERO_TIME })).collect::<Vec<_>>(),
        "os": "",
        "rootfs": { "type": "layers", "diff_ids": layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>() },
        "config": {},
    }))
    .unwrap_or_default();
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor_json(OCI_IMAGE_CONFIG, &Digest::sha256_of(&config), config.len() as u64),
        "layers": layers.iter().map(|l| {
            let mut d = descriptor_json(&l.media_type, &l.digest, l.size);
            d["annotations"] = json!(l.annotations);
            d
        }).collect::<Vec<_>>(),
    }))
    .unwrap_or_default();
    (config, manifest)
}

/// The layers of a legacy image manifest.
pub fn legacy_layers(manifest: &[u8]) -> Vec<LegacyLayer> {
    match ParsedManifest::parse(manifest, None) {
        Ok(m) => m
            .references
            .into_iter()
            .skip(1)
            .map(|d| LegacyLayer {
                media_type: d.media_type,
                digest: d.digest,
                size: d.size,
                annotations: d.annotations,
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Where signatures are read from: the registry's stores, or a registry over HTTP.
#[async_trait]
pub trait SignatureSource: Send + Sync {
    /// Referrers of `digest` (any artifact type), at most `limit`.
    async fn referrers(&self, digest: &Digest, limit: usize) -> anyhow::Result<Vec<Descriptor>>;
    /// A manifest's bytes, by tag or digest.
    async fn manifest(&self, reference: &str, max: u64) -> anyhow::Result<Option<Bytes>>;
    async fn blob(&self, digest: &Digest, max: u64) -> anyhow::Result<Option<Bytes>>;
}

/// A signature found for a manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FoundSignature {
    /// `bundle` (v3 referrer) or `simple-signing` (legacy `.sig` tag).
    pub scheme: &'static str,
    /// The manifest holding it.
    pub manifest: Digest,
    /// The hint of the key that verified it, if one of the keys did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A DSSE-in-bundle found for a manifest, with its statement.
#[derive(Debug, Clone)]
pub struct FoundBundle {
    pub manifest: Digest,
    pub envelope: Envelope,
    pub statement: Statement,
    pub annotations: BTreeMap<String, String>,
}

/// Every bundle referrer of `digest` whose statement is about `digest` and of
/// `predicate_type` (any, if `None`). Unreadable or foreign referrers are skipped,
/// as cosign skips them.
pub async fn bundles(
    src: &dyn SignatureSource,
    digest: &Digest,
    predicate_type: Option<&str>,
) -> anyhow::Result<Vec<FoundBundle>> {
    let mut out = Vec::new();
    for r in src.referrers(digest, MAX_REFERRERS).await? {
        if !r
            .artifact_type
            .as_deref()
            .is_some_and(|t| t.starts_with(BUNDLE_PREFIX))
        {
            continue;
        }
        let Some(bytes) = src
            .manifest(&r.digest.to_string(), MAX_SIGNATURE_BYTES)
            .await?
        else {
            continue;
        };
        let Ok(m) = ParsedManifest::parse(&bytes, None) else {
            continue;
        };
        let layers: Vec<&Descriptor> = m.references.iter().skip(1).collect();
        let [layer] = layers.as_slice() else {
            continue;
        };
        if !layer.media_type.starts_with(BUNDLE_PREFIX) || layer.size > MAX_SIGNATURE_BYTES {
            continue;
        }
        let Some(blob) = src.blob(&layer.digest, MAX_SIGNATURE_BYTES).await? else {
            continue;
        };
        let Some(envelope) = bundle_envelope(&blob) else {
            continue;
        };
        if envelope.payload_type != IN_TOTO {
            continue;
        }
        let Some(statement) = envelope.payload_bytes().and_then(|p| Statement::parse(&p)) else {
            continue;
        };
        if !statement.is_about(digest)
            || predicate_type.is_some_and(|t| statement.predicate_type != t)
        {
            continue;
        }
        out.push(FoundBundle {
            manifest: r.digest.clone(),
            envelope,
            statement,
            annotations: m.annotations,
        });
    }
    Ok(out)
}

/// Every cosign signature of `digest`: v3 bundles (predicate
/// `https://sigstore.dev/cosign/sign/v1`) and legacy simple signatures, each
/// with the key of `keys` that verifies it, if any.
pub async fn signatures(
    src: &dyn SignatureSource,
    digest: &Digest,
    keys: &[VerifyKey],
) -> anyhow::Result<Vec<FoundSignature>> {
    let mut out: Vec<FoundSignature> = bundles(src, digest, Some(COSIGN_SIGN_V1))
        .await?
        .into_iter()
        .map(|b| FoundSignature {
            scheme: "bundle",
            key: b.envelope.verified_by(keys).map(|k| k.hint().to_string()),
            manifest: b.manifest,
        })
        .collect();
    let tag = sig_tag(digest);
    if let Some(bytes) = src.manifest(&tag, MAX_SIGNATURE_BYTES).await? {
        let holder = Digest::sha256_of(&bytes);
        for layer in legacy_layers(&bytes) {
            if layer.media_type != SIMPLE_SIGNING || layer.size > MAX_SIGNATURE_BYTES {
                continue;
            }
            let Some(sig) = layer
                .annotations
                .get(SIGNATURE_ANNOTATION)
                .and_then(|s| unb64(s))
            else {
                continue;
            };
            let Some(payload) = src.blob(&layer.digest, MAX_SIGNATURE_BYTES).await? else {
                continue;
            };
            if !payload_names(&payload, digest) {
                continue;
            }
            out.push(FoundSignature {
                scheme: "simple-signing",
                manifest: holder.clone(),
                key: keys
                    .iter()
                    .find(|k| k.verifies(&sig, &payload))
                    .map(|k| k.hint().to_string()),
            });
        }
    }
    Ok(out)
}

/// The registry's own stores as a signature source, within one repository.
pub struct StoreSource<'a> {
    pub ctx: &'a GateContext<'a>,
    pub repo: &'a str,
}

#[async_trait]
impl SignatureSource for StoreSource<'_> {
    async fn referrers(&self, digest: &Digest, limit: usize) -> anyhow::Result<Vec<Descriptor>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        while out.len() < limit {
            let (page, more) = self
                .ctx
                .meta
                .referrers(self.repo, digest, after.as_deref(), None, 100)
                .await?;
            after = page.last().map(|d| d.digest.to_string());
            out.extend(page);
            if !more {
                break;
            }
        }
        out.truncate(limit);
        Ok(out)
    }

    async fn manifest(&self, reference: &str, max: u64) -> anyhow::Result<Option<Bytes>> {
        let digest = match reference.parse::<Digest>() {
            Ok(d) => d,
            Err(_) => match self.ctx.meta.resolve_tag(self.repo, reference).await? {
                Some(d) => d,
                None => return Ok(None),
            },
        };
        if self.ctx.meta.manifest(self.repo, &digest).await?.is_none() {
            return Ok(None);
        }
        Ok(self.ctx.blobs.read_all(&digest, max).await?)
    }

    async fn blob(&self, digest: &Digest, max: u64) -> anyhow::Result<Option<Bytes>> {
        if self.ctx.meta.blob_link(self.repo, digest).await?.is_none() {
            return Ok(None);
        }
        Ok(self.ctx.blobs.read_all(digest, max).await?)
    }
}

/// The signature gate's lookup: signatures of `digest` in `repo`, verified with `keys`.
pub async fn verified_signatures(
    ctx: &GateContext<'_>,
    repo: &str,
    digest: &Digest,
    keys: &[VerifyKey],
) -> StoreResult<Vec<FoundSignature>> {
    let src = StoreSource { ctx, repo };
    signatures(&src, digest, keys).await.map_err(|e| {
        match e.downcast::<crate::store::StoreError>() {
            Ok(e) => e,
            Err(e) => crate::store::StoreError::Meta(e.to_string()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_matches_the_dsse_spec_example() {
        // The DSSE protocol's own example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn envelopes_verify_only_with_their_key_and_payload() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap();
        let d = Digest::sha256_of(b"m");
        let st = statement(Some("r"), &d, COSIGN_SIGN_V1, json!({}));
        let env = Envelope::sign(&key, IN_TOTO, &st).unwrap();
        let keys = [other.verify_key().unwrap(), key.verify_key().unwrap()];
        assert_eq!(env.verified_by(&keys).unwrap().hint(), key.hint());
        let mut forged = env.clone();
        forged.payload = b64(&statement(
            Some("r"),
            &Digest::sha256_of(b"x"),
            COSIGN_SIGN_V1,
            json!({}),
        ));
        assert!(forged.verified_by(&keys).is_none());
        let bundle_bytes = bundle(&env, key.hint());
        let back = bundle_envelope(&bundle_bytes).unwrap();
        assert_eq!(back, env);
        let s = Statement::parse(&back.payload_bytes().unwrap()).unwrap();
        assert!(s.is_about(&d) && !s.is_about(&Digest::sha256_of(b"x")));
        assert_eq!(sig_tag(&d), format!("sha256-{}.sig", d.hex()));
    }
}
