//! `berth pull REF DIR`: fetch a model (ModelPack, oras or KitOps) into a directory.

use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::RegistryArgs;
use crate::client::pull::{self, PullOptions, Pulled, PulledReferrer};
use crate::client::reference::ImageRef;
use crate::client::registry::Registry;
use crate::client::transfer::{Progress, RateLimit, parse_size};

#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// What to pull: `[REGISTRY/]NAME[:TAG][@DIGEST]`.
    pub reference: String,
    /// The directory to write (created if missing).
    pub dir: PathBuf,
    /// Blobs larger than this are fetched as parallel ranges of this size.
    #[arg(long, default_value = "64MiB", value_parser = parse_size)]
    pub chunk_size: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 4)]
    pub jobs: usize,
    /// Cap the download bandwidth (bytes per second, e.g. 10MiB).
    #[arg(long, value_parser = parse_size)]
    pub limit_rate: Option<u64>,
    /// Also download every referrer (reports, signatures, …) into DIR/.referrers/.
    #[arg(long)]
    pub referrers: bool,
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
struct Report {
    reference: String,
    digest: String,
    #[serde(rename = "mediaType")]
    media_type: String,
    dir: PathBuf,
    #[serde(flatten)]
    pulled: Pulled,
    #[serde(skip_serializing_if = "Option::is_none")]
    referrers: Option<Vec<PulledReferrer>>,
}

pub async fn run(args: PullArgs) -> Result<()> {
    let target = ImageRef::parse(&args.reference)?;
    let registry = Registry::for_ref(&target, &args.registry.registry, args.registry.plain_http)?;
    let repo = target.name.to_string();
    let progress = Progress::new(args.quiet);
    let opts = PullOptions {
        chunk_size: args.chunk_size,
        jobs: args.jobs,
        progress: progress.clone(),
        limit: RateLimit::new(args.limit_rate),
        keep_untitled: false,
    };
    let manifest = pull::resolve_image(&registry, &repo, &target.reference()).await?;
    let pulled = pull::pull_into(&registry, &repo, &manifest, &args.dir, &opts).await?;
    for s in &pulled.skipped {
        progress.println(&format!("skipped: {s}"));
    }
    let referrers = if args.referrers {
        Some(pull::pull_referrers(&registry, &repo, &manifest.digest, &args.dir, &opts).await?)
    } else {
        None
    };
    let report = Report {
        reference: args.reference.clone(),
        digest: manifest.digest.to_string(),
        media_type: manifest.media_type.clone(),
        dir: args.dir.clone(),
        pulled,
        referrers,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    println!(
        "pulled {}@{} into {}",
        report.reference,
        report.digest,
        report.dir.display()
    );
    println!(
        "  {} files; {} bytes downloaded{}",
        report.pulled.files.len(),
        report.pulled.bytes_downloaded,
        if report.pulled.bytes_reused > 0 {
            format!(
                ", {} resumed from an earlier pull",
                report.pulled.bytes_reused
            )
        } else {
            String::new()
        }
    );
    for r in report.referrers.iter().flatten() {
        println!(
            "  referrer {} ({}): {} files in {}",
            r.digest,
            r.artifact_type.as_deref().unwrap_or("no artifactType"),
            r.pulled.files.len(),
            r.dir
        );
    }
    Ok(())
}
