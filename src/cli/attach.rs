//! `berth attach REF FILE --type T`: push a file as an OCI 1.1 referrer of a version
//! (an artifact manifest whose `subject` is the version's manifest).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::RegistryArgs;
use crate::client::reference::ImageRef;
use crate::client::registry::Registry;
use crate::client::source::BlobSource;
use crate::client::state::UploadState;
use crate::client::transfer::{Progress, RateLimit, parse_size};
use crate::client::upload::{Blob, Uploader, digest_all};
use crate::models::pack::{metadata_pair, rfc3339};
use crate::models::spec::oci_keys;
use crate::oci::media::{OCI_EMPTY, OCI_MANIFEST};
use crate::oci::{Descriptor, Digest};

#[derive(Debug, clap::Args)]
pub struct AttachArgs {
    /// The version to attach to: `[REGISTRY/]NAME:TAG` or `…@DIGEST`.
    pub reference: String,
    /// The file to attach.
    pub file: PathBuf,
    /// The referrer's `artifactType`, e.g. `application/vnd.berth.eval-report+json`.
    #[arg(long = "type", value_name = "ARTIFACT_TYPE")]
    pub artifact_type: String,
    /// A manifest annotation, `key=value` (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE")]
    pub annotations: Vec<String>,
    /// The file's media type (guessed from its extension otherwise).
    #[arg(long)]
    pub media_type: Option<String>,
    /// Files larger than this are uploaded in resumable chunks of this size.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// A media type by file extension.
pub fn guess_media_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("json") => "application/json",
        Some("md" | "markdown") => "text/markdown",
        Some("txt" | "log") => "text/plain",
        Some("html" | "htm") => "text/html",
        Some("csv") => "text/csv",
        Some("yaml" | "yml") => "application/yaml",
        Some("pdf") => "application/pdf",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("svg") => "image/svg+xml",
        Some("tar") => "application/x-tar",
        Some("gz" | "tgz") => "application/gzip",
        _ => "application/octet-stream",
    }
}

/// A media type must at least look like `type/subtype`.
fn check_media_type(what: &str, t: &str) -> Result<()> {
    let ok = t.split_once('/').is_some_and(|(a, b)| {
        !a.is_empty()
            && !b.is_empty()
            && t.len() <= 255
            && t.bytes().all(|c| c.is_ascii_graphic() && c != b',')
    });
    if !ok {
        bail!("{what} {t:?} is not a media type (type/subtype)");
    }
    Ok(())
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReferrerManifest<'a> {
    schema_version: u32,
    media_type: &'a str,
    artifact_type: &'a str,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
    subject: &'a Descriptor,
    annotations: &'a BTreeMap<String, String>,
}

fn descriptor(media_type: &str, digest: Digest, size: u64) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest,
        size,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

pub async fn run(args: AttachArgs) -> Result<()> {
    let target = ImageRef::parse(&args.reference)?;
    check_media_type("--type", &args.artifact_type)?;
    let media_type = match &args.media_type {
        Some(m) => {
            check_media_type("--media-type", m)?;
            m.clone()
        }
        None => guess_media_type(&args.file).to_string(),
    };
    let mut annotations = BTreeMap::new();
    for a in &args.annotations {
        let (k, v) = metadata_pair(a)?;
        if k.is_empty() {
            bail!("annotation {a:?} has an empty key");
        }
        annotations.insert(k, v);
    }
    let meta = std::fs::metadata(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    if !meta.is_file() {
        bail!("{} is not a file", args.file.display());
    }
    let title = args
        .file
        .file_name()
        .and_then(|n| n.to_str())
        .context("the file name is not UTF-8")?
        .to_string();

    let registry = Registry::for_ref(&target, &args.registry.registry, args.registry.plain_http)?;
    let repo = target.name.to_string();
    let subject = registry.resolve(&repo, &target.reference()).await?;

    let progress = Progress::new(args.quiet);
    let source = BlobSource::file(&args.file, meta.len());
    let digest = digest_all(std::slice::from_ref(&source), &progress, 1)
        .await?
        .remove(0);
    let empty: Arc<[u8]> = Arc::from(&b"{}"[..]);
    let config = descriptor(OCI_EMPTY, Digest::sha256_of(&empty), 2);
    let uploader = Uploader {
        registry: registry.clone(),
        repo: repo.clone(),
        chunk_size: args.chunk_size,
        mount_from: None,
        state: UploadState::default_location(),
        progress,
        limit: RateLimit::new(None),
        jobs: 2,
    };
    uploader
        .push_all(vec![
            Blob {
                label: "config".into(),
                digest: config.digest.clone(),
                source: BlobSource::bytes(empty),
            },
            Blob {
                label: title.clone(),
                digest: digest.clone(),
                source: source.clone(),
            },
        ])
        .await?;

    let mut layer = descriptor(&media_type, digest, source.size());
    layer.annotations.insert(oci_keys::TITLE.into(), title);
    if !annotations.contains_key(oci_keys::CREATED) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        annotations.insert(oci_keys::CREATED.into(), rfc3339(now));
    }
    let manifest = ReferrerManifest {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        artifact_type: &args.artifact_type,
        config: &config,
        layers: std::slice::from_ref(&layer),
        subject: &subject,
        annotations: &annotations,
    };
    let body = serde_json::to_vec_pretty(&manifest)?;
    let reference = Digest::sha256_of(&body).to_string();
    let pushed = registry
        .put_manifest(&repo, &reference, OCI_MANIFEST, body)
        .await?;
    if args.json {
        let out = serde_json::json!({
            "digest": pushed.to_string(),
            "artifactType": args.artifact_type,
            "subject": subject,
            "layer": layer,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{pushed}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        assert_eq!(
            guess_media_type(Path::new("eval/report.JSON")),
            "application/json"
        );
        assert_eq!(guess_media_type(Path::new("card.md")), "text/markdown");
        assert_eq!(
            guess_media_type(Path::new("noext")),
            "application/octet-stream"
        );
        assert!(check_media_type("t", "application/vnd.x+json").is_ok());
        for bad in ["", "json", "a/", "/b", "a/b c", "a/b,c/d"] {
            assert!(check_media_type("t", bad).is_err(), "{bad:?}");
        }
    }
}
