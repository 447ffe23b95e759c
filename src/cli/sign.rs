//! `berth keygen`, `sign` and `verify`: cosign-compatible key pairs and
//! signatures, checked offline. `sign` writes both schemes cosign reads: the
//! legacy `sha256-<hex>.sig` simple-signing image and the OCI 1.1 referrer holding
//! a sigstore bundle v0.3. `verify NAME@ALIAS --registry-key` also checks the
//! registry's attestation of the alias's latest move.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use async_trait::async_trait;
use bytes::Bytes;
use serde_json::{Value, json};

use super::RegistryArgs;
use super::api::Api;
use crate::client::reference::ImageRef;
use crate::client::registry::Registry;
use crate::governance::attest::PROMOTION_PREDICATE;
use crate::governance::cosign::{self, Envelope, LegacyLayer, SignatureSource};
use crate::governance::signing::{SigningKey, VerifyKey};
use crate::oci::media::OCI_MANIFEST;
use crate::oci::{Descriptor, Digest};

const PASSWORD_ENV: &str = "COSIGN_PASSWORD";

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Writes PREFIX.key and PREFIX.pub.
    #[arg(long, default_value = "cosign")]
    pub output_key_prefix: String,
    /// Overwrite existing files.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, clap::Args)]
pub struct SignArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// What to sign: `[REGISTRY/]NAME:TAG` or `…@DIGEST`.
    pub reference: String,
    /// A cosign private key (password from $COSIGN_PASSWORD).
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// `[REGISTRY/]NAME:TAG`, `…@DIGEST`, or `NAME@ALIAS` (an alias, with --registry-key).
    pub reference: String,
    /// A public key the version's signatures must verify with (repeatable).
    #[arg(long)]
    pub key: Vec<PathBuf>,
    /// The registry's public key (`GET /api/v1/signing-key`, kept from a trusted
    /// moment): checks the attestation of the alias's latest promotion.
    #[arg(long)]
    pub registry_key: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

fn password() -> Vec<u8> {
    std::env::var(PASSWORD_ENV).unwrap_or_default().into_bytes()
}

pub fn keygen(a: KeygenArgs) -> Result<()> {
    let (key_path, pub_path) = (
        PathBuf::from(format!("{}.key", a.output_key_prefix)),
        PathBuf::from(format!("{}.pub", a.output_key_prefix)),
    );
    for p in [&key_path, &pub_path] {
        if p.exists() && !a.force {
            bail!("{} exists (pass --force to overwrite)", p.display());
        }
    }
    let key = SigningKey::generate()?;
    let private = key.to_encrypted_pem(&password())?;
    write_private(&key_path, private.as_bytes())?;
    std::fs::write(&pub_path, key.public_pem())
        .with_context(|| format!("writing {}", pub_path.display()))?;
    eprintln!(
        "Private key written to {} (encrypted with ${PASSWORD_ENV})\nPublic key written to {}",
        key_path.display(),
        pub_path.display()
    );
    Ok(())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// The registry over HTTP as a signature source, within one repository.
pub struct HttpSource<'a> {
    pub registry: &'a Registry,
    pub repo: &'a str,
}

#[async_trait]
impl SignatureSource for HttpSource<'_> {
    async fn referrers(&self, digest: &Digest, limit: usize) -> Result<Vec<Descriptor>> {
        let mut all = self
            .registry
            .referrers(self.repo, digest)
            .await?
            .unwrap_or_default();
        all.truncate(limit);
        Ok(all)
    }

    async fn manifest(&self, reference: &str, max: u64) -> Result<Option<Bytes>> {
        let found = self.registry.find_manifest(self.repo, reference).await?;
        Ok(found
            .filter(|m| m.bytes.len() as u64 <= max)
            .map(|m| Bytes::from(m.bytes)))
    }

    async fn blob(&self, digest: &Digest, max: u64) -> Result<Option<Bytes>> {
        let max = usize::try_from(max).unwrap_or(usize::MAX);
        Ok(self
            .registry
            .find_blob(self.repo, digest, max)
            .await?
            .map(Bytes::from))
    }
}

fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub async fn sign(a: SignArgs) -> Result<()> {
    let target = ImageRef::parse(&a.reference)?;
    let key = SigningKey::read(&a.key, Some(&password())).with_context(|| {
        format!(
            "reading the key {} (password from ${PASSWORD_ENV})",
            a.key.display()
        )
    })?;
    let registry = Registry::for_ref(&target, &a.registry.registry, a.registry.plain_http)?;
    let repo = target.name.to_string();
    let subject = registry.resolve(&repo, &target.reference()).await?;
    let host = target.registry.as_deref().unwrap_or(&a.registry.registry);
    let docker_reference = format!("{host}/{repo}");

    // The legacy scheme: a simple-signing payload, its signature in an annotation,
    // as one more layer of the `.sig` image.
    let payload = cosign::simple_signing_payload(&docker_reference, &subject.digest);
    let signature = key.sign(&payload)?;
    let payload_digest = registry.push_bytes(&repo, &payload).await?;
    let tag = cosign::sig_tag(&subject.digest);
    let mut layers = match registry.find_manifest(&repo, &tag).await? {
        Some(m) => cosign::legacy_layers(&m.bytes),
        None => Vec::new(),
    };
    let layer = LegacyLayer {
        media_type: cosign::SIMPLE_SIGNING.into(),
        digest: payload_digest,
        size: payload.len() as u64,
        annotations: [(
            cosign::SIGNATURE_ANNOTATION.to_string(),
            cosign::b64(&signature),
        )]
        .into(),
    };
    // A re-sign replaces the same payload's layer instead of piling up.
    layers.retain(|l| l.digest != layer.digest);
    layers.push(layer);
    let (config, manifest) = cosign::legacy_image(&layers);
    registry.push_bytes(&repo, &config).await?;
    let sig_manifest = registry
        .put_manifest(&repo, &tag, OCI_MANIFEST, manifest)
        .await?;

    // The OCI 1.1 scheme (cosign v3): a DSSE statement in a bundle, as a referrer.
    let statement = cosign::statement(None, &subject.digest, cosign::COSIGN_SIGN_V1, json!({}));
    let envelope = Envelope::sign(&key, cosign::IN_TOTO, &statement)?;
    let bundle = cosign::bundle(&envelope, key.hint());
    registry.push_bytes(&repo, cosign::EMPTY_JSON).await?;
    registry.push_bytes(&repo, &bundle).await?;
    let referrer =
        cosign::bundle_manifest(&subject, &bundle, cosign::COSIGN_SIGN_V1, &now_rfc3339());
    let referrer_digest = Digest::sha256_of(&referrer).to_string();
    let bundle_manifest = registry
        .put_manifest(&repo, &referrer_digest, OCI_MANIFEST, referrer)
        .await?;
    if a.json {
        let out = json!({
            "subject": subject.digest,
            "signature_tag": tag,
            "signature_manifest": sig_manifest,
            "bundle_manifest": bundle_manifest,
            "key_hint": key.hint(),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("signed {repo}@{}", subject.digest);
        println!("  simple signing: {repo}:{tag}");
        println!("  bundle referrer: {repo}@{bundle_manifest}");
    }
    Ok(())
}

/// `NAME@ALIAS` (an alias, not a digest) or a plain reference.
fn split_alias(reference: &str) -> Option<(&str, &str)> {
    let (name, alias) = reference.rsplit_once('@')?;
    (!alias.contains(':')).then_some((name, alias))
}

pub async fn verify(a: VerifyArgs) -> Result<()> {
    let keys = a
        .key
        .iter()
        .map(|p| VerifyKey::read(p).with_context(|| format!("reading {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let registry_key = a
        .registry_key
        .as_deref()
        .map(|p| VerifyKey::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    if keys.is_empty() && registry_key.is_none() {
        bail!(
            "nothing to verify with: give --key (signatures) and/or --registry-key (promotion attestation)"
        );
    }
    let mut report = serde_json::Map::new();
    let (target, alias) = match split_alias(&a.reference) {
        Some((name, alias)) => {
            let Some(rk) = &registry_key else {
                bail!(
                    "{} names an alias: verifying its promotion needs --registry-key",
                    a.reference
                );
            };
            (ImageRef::parse(name)?, Some((name, alias, rk)))
        }
        None => (ImageRef::parse(&a.reference)?, None),
    };
    let registry = Registry::for_ref(&target, &a.registry.registry, a.registry.plain_http)?;
    let repo = target.name.to_string();
    let src = HttpSource {
        registry: &registry,
        repo: &repo,
    };
    let digest = match &alias {
        Some((name, alias, rk)) => {
            let (api, _) = Api::for_model(name, &a.registry)?;
            let v = api
                .get(
                    &format!("models/{repo}/aliases/{}", super::api::enc(alias)),
                    &[],
                )
                .await?;
            let digest: Digest = v
                .get("digest")
                .and_then(Value::as_str)
                .context("the alias answer has no digest")?
                .parse()?;
            let att = verify_promotion(&src, &digest, &repo, alias, rk, v.get("seq")).await?;
            report.insert("attestation".into(), att);
            digest
        }
        None => registry.resolve(&repo, &target.reference()).await?.digest,
    };
    report.insert("digest".into(), json!(digest));
    if !keys.is_empty() {
        let found = cosign::signatures(&src, &digest, &keys).await?;
        let verified: Vec<&cosign::FoundSignature> =
            found.iter().filter(|s| s.key.is_some()).collect();
        if verified.is_empty() {
            bail!(
                "no signature of {repo}@{digest} verifies with the given key(s) ({} signature(s) found, none by them)",
                found.len()
            );
        }
        report.insert("signatures".into(), json!(verified));
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&Value::Object(report))?);
    } else {
        println!("Verified {repo}@{digest}");
        if let Some(att) = report.get("attestation") {
            println!(
                "  promotion to {} by {} at {} (audit record {}), attested by the registry key",
                text(att, "/predicate/alias"),
                text(att, "/predicate/actor/name"),
                text(att, "/predicate/time"),
                text(att, "/predicate/audit/seq"),
            );
        }
        if let Some(Value::Array(sigs)) = report.get("signatures") {
            for s in sigs {
                println!(
                    "  {} signature, key {}",
                    text(s, "/scheme"),
                    text(s, "/key")
                );
            }
        }
    }
    Ok(())
}

fn text(v: &Value, pointer: &str) -> String {
    match v.pointer(pointer) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "-".into(),
    }
}

/// The registry's attestation of the alias's move to `digest`: signed by the
/// registry key, about `digest`, for this repository and alias (the latest such
/// move, or the one the alias answer names).
async fn verify_promotion(
    src: &HttpSource<'_>,
    digest: &Digest,
    repo: &str,
    alias: &str,
    registry_key: &VerifyKey,
    seq: Option<&Value>,
) -> Result<Value> {
    let found = cosign::bundles(src, digest, Some(PROMOTION_PREDICATE)).await?;
    let keys = std::slice::from_ref(registry_key);
    let mut best: Option<Value> = None;
    for b in found {
        if b.envelope.verified_by(keys).is_none() {
            continue;
        }
        let p = &b.statement.predicate;
        if p.get("repository").and_then(Value::as_str) != Some(repo)
            || p.get("alias").and_then(Value::as_str) != Some(alias)
        {
            continue;
        }
        let this_seq = p.pointer("/audit/seq").and_then(Value::as_u64).unwrap_or(0);
        let best_seq = best
            .as_ref()
            .and_then(|v| v.pointer("/predicate/audit/seq").and_then(Value::as_u64))
            .unwrap_or(0);
        if best.is_none() || this_seq > best_seq {
            best = Some(json!({ "manifest": b.manifest, "predicate": p }));
        }
    }
    let Some(best) = best else {
        bail!("no attestation of {repo}@{digest} as {alias} verifies with the registry key");
    };
    if let Some(expected) = seq.and_then(Value::as_u64)
        && best.pointer("/predicate/audit/seq").and_then(Value::as_u64) != Some(expected)
    {
        bail!(
            "the alias's last move (audit record {expected}) has no attestation signed by the registry key yet; the newest attested is {}",
            text(&best, "/predicate/audit/seq")
        );
    }
    Ok(best)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_told_from_digests() {
        assert_eq!(split_alias("team/m@prod"), Some(("team/m", "prod")));
        assert_eq!(
            split_alias("h:5000/team/m@prod"),
            Some(("h:5000/team/m", "prod"))
        );
        assert_eq!(split_alias("team/m@sha256:abc"), None);
        assert_eq!(split_alias("team/m:v1"), None);
    }
}
