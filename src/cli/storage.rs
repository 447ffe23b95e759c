//! `berth scrub`: the registry re-reads and hashes every blob it stores;
//! `berth du`: what its repositories add up to; `berth gc`: what nothing
//! needs goes (a dry run unless `--apply`).

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use reqwest::Method;
use serde_json::Value;

use super::RegistryArgs;
use super::api::Api;
use super::views::table::{Table, print, size};

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Delete; without it, list what would go.
    #[arg(long)]
    pub apply: bool,
    /// Untagged manifests to keep per repository, newest first (default: the server's; it keeps all unless configured).
    #[arg(long)]
    pub keep_untagged: Option<u64>,
    /// Seconds a pushed, mounted or referenced blob is safe (default: the server's, 3600).
    #[arg(long)]
    pub grace_secs: Option<u64>,
    /// Seconds a manifest stays kept after a tag moved away from it (default: the server's, 30 days).
    #[arg(long)]
    pub tag_window_secs: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

/// Runs one garbage collection on the registry and prints what went (or would).
pub async fn gc(a: GcArgs) -> Result<()> {
    let api = Api::of(&a.registry)?;
    let mut query = vec![("apply", a.apply.to_string())];
    for (k, v) in [
        ("keep_untagged", a.keep_untagged),
        ("grace_secs", a.grace_secs),
        ("tag_window_secs", a.tag_window_secs),
    ] {
        if let Some(v) = v {
            query.push((k, v.to_string()));
        }
    }
    let r = api
        .send(Method::POST, "gc", &query, None, &[])
        .await?
        .json()?;
    print(a.json, &r, |r| {
        let verb = if r["applied"] == true {
            "removed"
        } else {
            "would remove"
        };
        let mut out = String::new();
        for m in r["manifests"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{verb} manifest {}@{} ({}, {})\n",
                m["repo"].as_str().unwrap_or("?"),
                m["digest"].as_str().unwrap_or("?"),
                m["why"].as_str().unwrap_or("?"),
                size(m["size"].as_u64().unwrap_or(0))
            ));
        }
        for b in r["blobs"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{verb} blob {} ({})\n",
                b["digest"].as_str().unwrap_or("?"),
                size(b["size"].as_u64().unwrap_or(0))
            ));
        }
        for repo in r["repositories"].as_array().into_iter().flatten() {
            out.push_str(&format!(
                "{verb} empty repository {}\n",
                repo.as_str().unwrap_or("?")
            ));
        }
        let count = |k: &str| r[k].as_array().map_or(0, Vec::len);
        out.push_str(&format!(
            "{verb} {} manifests and {} blobs: {}{}\n",
            count("manifests"),
            count("blobs"),
            size(r["bytes"].as_u64().unwrap_or(0)),
            if r["applied"] == true {
                format!(" freed; {} idle uploads ended", r["uploads"])
            } else {
                " (a dry run: --apply deletes them)".into()
            }
        ));
        out
    })
}

#[derive(Debug, clap::Args)]
pub struct DuArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Only these repositories (the totals stay the registry's).
    pub names: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

/// Prints each repository's logical, physical and unreferenced bytes, and the
/// registry's totals: physical bytes, the dedup ratio and what is reclaimable.
pub async fn du(a: DuArgs) -> Result<()> {
    let api = Api::of(&a.registry)?;
    let mut report = api.get("storage", &[]).await?;
    if !a.names.is_empty()
        && let Some(repos) = report["repositories"].as_array_mut()
    {
        repos.retain(|r| a.names.iter().any(|n| r["name"] == n.as_str()));
    }
    print(a.json, &report, |r| {
        let bytes = |v: &Value, k: &str| size(v[k].as_u64().unwrap_or(0));
        let mut t = Table::new([
            "REPOSITORY",
            "MANIFESTS",
            "LOGICAL",
            "PHYSICAL",
            "UNREFERENCED",
        ]);
        for repo in r["repositories"].as_array().into_iter().flatten() {
            t.row(vec![
                repo["name"].as_str().unwrap_or("?").to_string(),
                repo["manifests"].to_string(),
                bytes(repo, "logical_bytes"),
                bytes(repo, "physical_bytes"),
                bytes(repo, "unreferenced_bytes"),
            ]);
        }
        let total = &r["total"];
        format!(
            "{}\ntotal: {} repositories, {} manifests; logical {}, stored {} in {} blobs (dedup {:.2}×); reclaimable {}\n",
            t.render().trim_end(),
            total["repositories"],
            total["manifests"],
            bytes(total, "logical_bytes"),
            bytes(total, "physical_bytes"),
            total["blobs"],
            total["dedup_ratio"].as_f64().unwrap_or(0.0),
            bytes(total, "reclaimable_bytes"),
        )
    })
}

#[derive(Debug, clap::Args)]
pub struct ScrubArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Read at most this many MiB a second (leave the disk to clients).
    #[arg(long)]
    pub max_mib_per_sec: Option<f64>,
    /// Print the registry's report as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs a scrub on the registry, showing its progress on stderr; fails (exit
/// status 1) when a stored copy failed verification.
pub async fn scrub(a: ScrubArgs) -> Result<()> {
    let api = Api::of(&a.registry)?;
    let query: Vec<(&str, String)> = a
        .max_mib_per_sec
        .map(|m| ("max_mib_per_sec", m.to_string()))
        .into_iter()
        .collect();
    let resp = api.stream_from(Method::POST, "scrub", &query).await?;
    let mut body = resp.bytes_stream();
    let mut pending = Vec::new();
    let mut report = None;
    while let Some(chunk) = body.next().await {
        pending.extend_from_slice(&chunk.context("reading the scrub's answer")?);
        while let Some(end) = pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = pending.drain(..=end).collect();
            let v: Value =
                serde_json::from_slice(&line).context("the scrub's answer is not JSON")?;
            if let Some(p) = v.get("progress") {
                eprintln!(
                    "checked {} blobs, {}",
                    p["blobs_checked"],
                    size(p["bytes_checked"].as_u64().unwrap_or(0))
                );
            } else if let Some(e) = v.get("error") {
                bail!(
                    "the scrub failed: {}",
                    e["message"].as_str().unwrap_or("unknown error")
                );
            } else if let Some(r) = v.get("report") {
                report = Some(r.clone());
            }
        }
    }
    let Some(r) = report else {
        bail!("the registry ended the scrub's answer without a report");
    };
    let found = |k: &str| r[k].as_array().cloned().unwrap_or_default();
    let (corrupt, unreadable) = (found("corrupt"), found("unreadable"));
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        println!(
            "checked {} blobs, {} in {:.1} s",
            r["blobs_checked"],
            size(r["bytes_checked"].as_u64().unwrap_or(0)),
            r["seconds"].as_f64().unwrap_or(0.0)
        );
        for (what, list) in [
            ("corrupt, set aside", &corrupt),
            ("unreadable", &unreadable),
        ] {
            for item in list {
                println!(
                    "{what}: {} ({})",
                    item["digest"].as_str().unwrap_or("?"),
                    item["detail"].as_str().unwrap_or("")
                );
            }
        }
    }
    if !corrupt.is_empty() || !unreadable.is_empty() {
        bail!(
            "{} stored copies failed verification, {} could not be read; push the content again to restore them",
            corrupt.len(),
            unreadable.len()
        );
    }
    Ok(())
}
