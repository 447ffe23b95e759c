//! `berth push DIR REF`: pack a model directory as a ModelPack artifact and push it.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::RegistryArgs;
use crate::client::reference::ImageRef;
use crate::client::registry::Registry;
use crate::client::source::BlobSource;
use crate::client::state::UploadState;
use crate::client::transfer::{Progress, RateLimit, parse_size};
use crate::client::upload::{Blob, Outcome, Pushed, Uploader, digest_all};
use crate::models::pack::{self, Identity, Layout, Metadata};
use crate::oci::media::OCI_MANIFEST;

#[derive(Debug, clap::Args)]
pub struct PushArgs {
    /// The model directory.
    pub dir: PathBuf,
    /// Where to push: `[REGISTRY/]NAME:TAG`.
    pub reference: String,
    /// `raw`: one layer per file; `image`: one tar layer per kind of file.
    #[arg(long, value_enum, default_value = "raw")]
    pub layout: Layout,
    /// Training run id (MLflow, W&B, …).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Dataset the model was trained on (`name@version`).
    #[arg(long)]
    pub dataset: Option<String>,
    /// Code commit the model was trained from.
    #[arg(long)]
    pub commit: Option<String>,
    /// Container image the training ran in.
    #[arg(long)]
    pub image: Option<String>,
    /// URL of the model's source code.
    #[arg(long)]
    pub source: Option<String>,
    /// What this version is.
    #[arg(long)]
    pub description: Option<String>,
    /// A training parameter, `name=value` (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// An evaluation metric, `name=number` (repeatable).
    #[arg(long = "metric", value_name = "NAME=NUMBER")]
    pub metrics: Vec<String>,
    /// Files larger than this are uploaded in resumable chunks of this size.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Also try to mount blobs from this repository of the same registry.
    #[arg(long, value_name = "REPO")]
    pub mount_from: Option<String>,
    /// Blobs uploaded (and files hashed) at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Cap the upload bandwidth (bytes per second, e.g. 10MiB).
    #[arg(long, value_parser = parse_size)]
    pub limit_rate: Option<u64>,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

#[derive(Serialize)]
struct LayerReport {
    #[serde(rename = "mediaType")]
    media_type: String,
    label: String,
    #[serde(flatten)]
    pushed: Pushed,
}

#[derive(Serialize)]
struct Report {
    reference: String,
    digest: String,
    layout: Layout,
    config: Pushed,
    layers: Vec<LayerReport>,
    /// Body bytes sent.
    bytes_uploaded: u64,
    /// Bytes of blobs the repository already had.
    bytes_skipped: u64,
    /// Bytes of blobs mounted from elsewhere on the registry.
    bytes_mounted: u64,
}

fn metadata(args: &PushArgs) -> Result<Metadata> {
    let file = Metadata::from_dir(&args.dir)?;
    let mut flags = Metadata {
        run_id: args.run_id.clone(),
        dataset: args.dataset.clone(),
        commit: args.commit.clone(),
        image: args.image.clone(),
        description: args.description.clone(),
        source: args.source.clone(),
        ..Metadata::default()
    };
    for p in &args.params {
        flags.set_param(p)?;
    }
    for m in &args.metrics {
        flags.set_metric(m)?;
    }
    Ok(file.overridden_by(flags))
}

/// Creation time: `SOURCE_DATE_EPOCH` when set (reproducible builds), else now.
fn created() -> String {
    let secs = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs() as i64)
        });
    pack::rfc3339(secs)
}

pub async fn run(args: PushArgs) -> Result<()> {
    let target = ImageRef::parse(&args.reference)?;
    if target.digest.is_some() {
        bail!("push to a tag, not a digest: {}", args.reference);
    }
    let meta = metadata(&args)?;
    let files = pack::scan(&args.dir)?;
    if files.is_empty() {
        bail!("{} has no files to push", args.dir.display());
    }
    let layers = pack::plan_layers(&files, args.layout)?;
    let progress = Progress::new(args.quiet);
    let sources: Vec<BlobSource> = layers.iter().map(|l| l.source.clone()).collect();
    let digests = digest_all(&sources, &progress, args.jobs).await?;

    let repo = target.name.to_string();
    let tag = target.reference();
    let id = Identity {
        name: repo.rsplit('/').next().unwrap_or(&repo).to_string(),
        version: Some(tag.clone()),
        created: created(),
    };
    let (config, config_desc) = pack::layout_config(
        args.layout,
        &id,
        &meta,
        pack::infer_format(&files),
        &digests,
    );
    let descs: Vec<_> = layers
        .iter()
        .zip(&digests)
        .map(|(l, d)| l.descriptor(d.clone()))
        .collect();
    let manifest = pack::manifest_json(
        args.layout,
        &config_desc,
        &descs,
        &pack::manifest_annotations(args.layout, &id, &meta),
    );

    let registry = Registry::for_ref(&target, &args.registry.registry, args.registry.plain_http)?;
    let uploader = Uploader {
        registry: registry.clone(),
        repo: repo.clone(),
        chunk_size: args.chunk_size,
        mount_from: args.mount_from.clone(),
        state: UploadState::default_location(),
        progress: progress.clone(),
        limit: RateLimit::new(args.limit_rate),
        jobs: args.jobs,
    };
    let config_blob = Blob {
        label: "config".into(),
        digest: config_desc.digest.clone(),
        source: BlobSource::bytes(Arc::<[u8]>::from(config)),
    };
    let mut blobs = vec![config_blob];
    blobs.extend(layers.iter().zip(&digests).map(|(l, d)| Blob {
        label: l.label.clone(),
        digest: d.clone(),
        source: l.source.clone(),
    }));
    let mut pushed = uploader.push_all(blobs).await?.into_iter();
    let config_pushed = pushed.next().context("config push result missing")?;
    let digest = registry
        .put_manifest(&repo, &tag, OCI_MANIFEST, manifest)
        .await?;

    let layer_reports: Vec<LayerReport> = layers
        .iter()
        .zip(pushed)
        .map(|(l, p)| LayerReport {
            media_type: l.media_type.clone(),
            label: l.label.clone(),
            pushed: p,
        })
        .collect();
    let all = || std::iter::once(&config_pushed).chain(layer_reports.iter().map(|l| &l.pushed));
    let sum = |o: Outcome| {
        all()
            .filter(|p| p.outcome == o)
            .map(|p| p.size)
            .sum::<u64>()
    };
    let report = Report {
        reference: format!("{}/{repo}:{tag}", host_of(&registry)),
        digest: digest.to_string(),
        layout: args.layout,
        bytes_uploaded: all().map(|p| p.bytes_sent).sum(),
        bytes_skipped: sum(Outcome::Present),
        bytes_mounted: sum(Outcome::Mounted),
        config: config_pushed.clone(),
        layers: layer_reports,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_summary(&report);
    }
    Ok(())
}

fn host_of(r: &Registry) -> String {
    let u = r.base();
    match (u.host_str(), u.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => u.to_string(),
    }
}

fn print_summary(r: &Report) {
    let count = |o: Outcome| r.layers.iter().filter(|l| l.pushed.outcome == o).count();
    println!("pushed {}@{}", r.reference, r.digest);
    println!(
        "  {} layers: {} uploaded, {} already present, {} mounted",
        r.layers.len(),
        count(Outcome::Uploaded),
        count(Outcome::Present),
        count(Outcome::Mounted)
    );
    println!(
        "  bytes: {} uploaded, {} skipped, {} mounted",
        r.bytes_uploaded, r.bytes_skipped, r.bytes_mounted
    );
    let resumed: u64 = r.layers.iter().map(|l| l.pushed.resumed_from).sum();
    if resumed > 0 {
        println!(
            "  resumed: {resumed} bytes were already on the registry from an interrupted push"
        );
    }
}
