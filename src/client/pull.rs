//! Pulling an artifact into a directory: resolve the manifest (first entry of an
//! index), download its blobs in parallel into `DIR/.berth/partial`, verify each,
//! then lay them out in manifest order as `models::unpack` plans it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use futures_util::{StreamExt, TryStreamExt};
use serde::Serialize;
use tokio::sync::Semaphore;

use super::download::{Downloader, Fetched};
use super::registry::{FetchedManifest, Registry, is_image, is_index};
use super::transfer::{Progress, RateLimit};
use crate::models::unpack::{self, Action, SafePath};
use crate::oci::{Descriptor, Digest};

/// Where partial downloads live inside the target directory.
pub const PARTIAL_DIR: &str = ".berth/partial";

/// How to pull.
#[derive(Clone)]
pub struct PullOptions {
    pub chunk_size: u64,
    pub jobs: usize,
    pub progress: Progress,
    pub limit: RateLimit,
    /// Write layers that name no file as `<algorithm>-<hex>` instead of skipping them.
    pub keep_untitled: bool,
}

/// What a pull wrote.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Pulled {
    /// Files written (relative paths), in manifest order.
    pub files: Vec<String>,
    /// Blobs left out, with the reason.
    pub skipped: Vec<String>,
    pub bytes_downloaded: u64,
    /// Bytes kept from an earlier interrupted pull.
    pub bytes_reused: u64,
}

/// Fetches `reference` and, for an index, its first manifest.
pub async fn resolve_image(
    registry: &Registry,
    repo: &str,
    reference: &str,
) -> Result<FetchedManifest> {
    let top = registry.get_manifest(repo, reference).await?;
    if is_image(&top.media_type) {
        return Ok(top);
    }
    if !is_index(&top.media_type) {
        bail!(
            "{repo}:{reference} is a {}, which berth cannot pull",
            top.media_type
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&top.bytes).context("the index is not valid JSON")?;
    let first = v
        .get("manifests")
        .and_then(|m| m.as_array())
        .and_then(|m| m.first())
        .cloned()
        .with_context(|| format!("{repo}:{reference} is an index with no manifests"))?;
    let desc: Descriptor = serde_json::from_value(first)
        .with_context(|| format!("{repo}:{reference}: invalid first entry in the index"))?;
    if !is_image(&desc.media_type) {
        bail!(
            "{repo}:{reference}: the index's first entry is a {}, not an image manifest",
            desc.media_type
        );
    }
    registry.get_manifest(repo, &desc.digest.to_string()).await
}

fn part_path(dir: &Path, digest: &Digest) -> PathBuf {
    dir.join(PARTIAL_DIR).join(format!(
        "{}-{}.part",
        digest.algorithm().as_str(),
        digest.hex()
    ))
}

/// Pulls the image manifest `manifest` of `repo` into `dir`.
pub async fn pull_into(
    registry: &Registry,
    repo: &str,
    manifest: &FetchedManifest,
    dir: &Path,
    opts: &PullOptions,
) -> Result<Pulled> {
    let plan = unpack::plan(&manifest.bytes, &manifest.media_type)
        .with_context(|| format!("manifest {}", manifest.digest))?;
    let mut out = Pulled::default();
    let mut steps = Vec::new();
    for step in plan.steps {
        match step.action {
            Action::Skip { .. } if opts.keep_untitled => {
                let d = &step.desc.digest;
                let name = format!("{}-{}", d.algorithm().as_str(), d.hex());
                let path = unpack::sanitize(&name)?;
                steps.push((step.desc, Action::File { path, mode: None }));
            }
            Action::Skip { reason } => out.skipped.push(reason),
            action => steps.push((step.desc, action)),
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

    // Each distinct blob once.
    let mut uses: BTreeMap<Digest, usize> = BTreeMap::new();
    let mut unique = Vec::new();
    for (desc, action) in &steps {
        let n = uses.entry(desc.digest.clone()).or_default();
        if *n == 0 {
            unique.push((desc.clone(), label(action)));
        }
        *n += 1;
    }
    let downloader = Downloader {
        registry: registry.clone(),
        repo: repo.to_string(),
        chunk_size: opts.chunk_size,
        progress: opts.progress.clone(),
        limit: opts.limit.clone(),
        requests: Arc::new(Semaphore::new(opts.jobs.max(1))),
    };
    let fetched: Vec<(Digest, Fetched)> = futures_util::stream::iter(unique)
        .map(|(desc, label)| {
            let downloader = &downloader;
            async move {
                let part = part_path(dir, &desc.digest);
                let f = downloader.fetch(&desc, &part, &label).await?;
                anyhow::Ok((desc.digest.clone(), f))
            }
        })
        .buffer_unordered(opts.jobs.max(1))
        .try_collect()
        .await?;
    let parts: BTreeMap<Digest, PathBuf> = fetched
        .iter()
        .map(|(d, f)| (d.clone(), f.path.clone()))
        .collect();
    out.bytes_downloaded = fetched.iter().map(|(_, f)| f.downloaded).sum();
    out.bytes_reused = fetched.iter().map(|(_, f)| f.reused).sum();

    for (desc, action) in steps {
        let Some(part) = parts.get(&desc.digest) else {
            continue;
        };
        let left = uses.get_mut(&desc.digest).map_or(0, |n| {
            *n -= 1;
            *n
        });
        match action {
            Action::File { path, mode } => {
                unpack::place_file(dir, &path, part, mode, left > 0)
                    .with_context(|| format!("writing {}", path.as_str()))?;
                out.files.push(path.as_str().to_string());
            }
            Action::Extract { base } => {
                let written = unpack::extract_tar(dir, &base, part)
                    .with_context(|| format!("unpacking layer {}", desc.digest))?;
                out.files.extend(written);
                if left == 0 {
                    let _ = std::fs::remove_file(part);
                }
            }
            Action::Skip { .. } => {}
        }
    }
    // Leave no trace of Berth's working directory when everything went well.
    let _ = std::fs::remove_dir(dir.join(PARTIAL_DIR));
    let _ = std::fs::remove_dir(dir.join(".berth"));
    Ok(out)
}

fn label(action: &Action) -> String {
    match action {
        Action::File { path, .. } => path.as_str().to_string(),
        Action::Extract { base } if base == &SafePath::root() => "(tar layer)".into(),
        Action::Extract { base } => format!("{}/ (tar)", base.as_str()),
        Action::Skip { .. } => String::new(),
    }
}

/// A directory name for an artifact type: `[A-Za-z0-9._-]`, others as `_`.
pub fn type_dir(artifact_type: Option<&str>) -> String {
    let t = artifact_type.unwrap_or("unknown");
    let s: String = t
        .chars()
        .take(120)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.trim_matches('.').is_empty() {
        "unknown".into()
    } else {
        s
    }
}

/// One referrer pulled.
#[derive(Debug, Serialize)]
pub struct PulledReferrer {
    pub digest: String,
    #[serde(rename = "artifactType")]
    pub artifact_type: Option<String>,
    /// Relative to the pull directory.
    pub dir: String,
    #[serde(flatten)]
    pub pulled: Pulled,
}

/// Pulls every referrer of `subject` into `dir/.referrers/<type>/<hex>/`.
pub async fn pull_referrers(
    registry: &Registry,
    repo: &str,
    subject: &Digest,
    dir: &Path,
    opts: &PullOptions,
) -> Result<Vec<PulledReferrer>> {
    let Some(list) = registry.referrers(repo, subject).await? else {
        opts.progress
            .println("the registry has no referrers API; no referrers pulled");
        return Ok(Vec::new());
    };
    let opts = PullOptions {
        keep_untitled: true,
        ..opts.clone()
    };
    let mut out = Vec::new();
    for desc in list {
        if !is_image(&desc.media_type) {
            opts.progress.println(&format!(
                "skipping referrer {} ({}): not an image manifest",
                desc.digest, desc.media_type
            ));
            continue;
        }
        let rel = format!(
            ".referrers/{}/{}",
            type_dir(desc.artifact_type.as_deref()),
            desc.digest.hex()
        );
        let manifest = registry
            .get_manifest(repo, &desc.digest.to_string())
            .await?;
        let pulled = pull_into(registry, repo, &manifest, &dir.join(&rel), &opts)
            .await
            .with_context(|| format!("referrer {}", desc.digest))?;
        out.push(PulledReferrer {
            digest: desc.digest.to_string(),
            artifact_type: desc.artifact_type,
            dir: rel,
            pulled,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifact_type_dirs_are_safe_names() {
        assert_eq!(
            type_dir(Some("application/vnd.berth.eval+json")),
            "application_vnd.berth.eval_json"
        );
        assert_eq!(type_dir(Some("../../x")), ".._.._x");
        assert_eq!(type_dir(Some("..")), "unknown");
        assert_eq!(type_dir(None), "unknown");
    }
}
