//! `berth audit list | export | verify`: the hash-chained audit log. `verify`
//! walks every record (online, from the registry's export, or an exported file)
//! and detects an edited, reordered, inserted or removed record; a head signed by
//! the registry key also catches records cut off the end or a rewritten tail.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::RegistryArgs;
use super::api::Api;
use super::views::table::{Table, field, items, print, short_digest};
use crate::governance::signing::VerifyKey;
use crate::store::audit::{ChainCheck, head_message};

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// List records, newest last, filtered.
    List(ListArgs),
    /// Write the whole log as JSON Lines (each line exactly as stored).
    Export(ExportArgs),
    /// Check the chain: online (no FILE) or an exported file.
    Verify(VerifyArgs),
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[arg(long)]
    pub repo: Option<String>,
    #[arg(long)]
    pub actor: Option<String>,
    /// e.g. `alias.promote`, `tag.push`, `label.set`.
    #[arg(long)]
    pub action: Option<String>,
    /// RFC 3339.
    #[arg(long)]
    pub since: Option<String>,
    #[arg(long)]
    pub until: Option<String>,
    #[command(flatten)]
    pub page: super::views::PageArgs,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Write to FILE (and the registry's signed head to FILE.head) instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// An exported log; without it the registry's log is fetched and checked.
    pub file: Option<PathBuf>,
    /// The registry's public key: the signed head must verify with it.
    #[arg(long)]
    pub registry_key: Option<PathBuf>,
    /// The head file written by `export -o` (default: FILE.head, if present).
    #[arg(long)]
    pub head: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

/// The head of the log at export time, as signed by the registry.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SignedHead {
    pub seq: u64,
    pub hash: String,
    /// Base64 ECDSA signature over `berth audit head <seq> <hash>`.
    pub signature: String,
}

pub async fn run(a: AuditArgs) -> Result<()> {
    match a.command {
        AuditCommand::List(l) => list(l).await,
        AuditCommand::Export(e) => export(e).await,
        AuditCommand::Verify(v) => verify(v).await,
    }
}

async fn list(a: ListArgs) -> Result<()> {
    let api = Api::of(&a.registry)?;
    let mut q = a.page.query();
    for (k, v) in [
        ("repo", &a.repo),
        ("actor", &a.actor),
        ("action", &a.action),
        ("since", &a.since),
        ("until", &a.until),
    ] {
        if let Some(v) = v {
            q.push((k, v.clone()));
        }
    }
    let v = api.get("audit", &q).await?;
    print(a.page.json, &v, |v| {
        let mut t = Table::new([
            "SEQ",
            "TIME",
            "ACTOR",
            "ACTION",
            "REPOSITORY",
            "TAG",
            "DIGEST",
            "REASON",
        ]);
        for r in items(v) {
            t.row(vec![
                field(r, "seq"),
                field(r, "time"),
                field(r.get("actor").unwrap_or(&Value::Null), "name"),
                field(r, "action"),
                field(r, "repo"),
                field(r, "tag"),
                short_digest(&field(r, "digest")),
                field(r, "reason"),
            ]);
        }
        let mut out = t.render();
        if let Some(c) = v.get("next_cursor").and_then(Value::as_str) {
            out.push_str(&format!("(more: --cursor {c})\n"));
        }
        out
    })
}

/// The signed head an export answer carries.
fn head_of(headers: &reqwest::header::HeaderMap) -> Option<SignedHead> {
    let head = headers.get("berth-audit-head")?.to_str().ok()?;
    let (seq, hash) = head.split_once(' ')?;
    Some(SignedHead {
        seq: seq.parse().ok()?,
        hash: hash.to_string(),
        signature: headers
            .get("berth-audit-head-signature")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string(),
    })
}

async fn export(a: ExportArgs) -> Result<()> {
    let api = Api::of(&a.registry)?;
    let resp = api.stream("audit/export").await?;
    let head = head_of(resp.headers());
    let mut sink: Box<dyn Write> = match &a.output {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut body = resp.bytes_stream();
    while let Some(chunk) = body.next().await {
        sink.write_all(&chunk.context("reading the export")?)?;
    }
    sink.flush()?;
    if let (Some(p), Some(h)) = (&a.output, head) {
        let head_path = head_path(p);
        std::fs::write(&head_path, serde_json::to_vec_pretty(&h)?)
            .with_context(|| format!("writing {}", head_path.display()))?;
        eprintln!(
            "exported records 1 to {} to {}; signed head in {}",
            h.seq,
            p.display(),
            head_path.display()
        );
    }
    Ok(())
}

fn head_path(file: &Path) -> PathBuf {
    let mut s = file.as_os_str().to_owned();
    s.push(".head");
    PathBuf::from(s)
}

/// The outcome of a walk.
#[derive(Debug, Serialize)]
struct Verified {
    records: u64,
    head: Option<(u64, String)>,
    /// Whether the head matched one the registry signed (and the signature verified, given a key).
    signed_head: Option<&'static str>,
}

async fn verify(a: VerifyArgs) -> Result<()> {
    let key = a
        .registry_key
        .as_deref()
        .map(|p| VerifyKey::read(p).with_context(|| format!("reading {}", p.display())))
        .transpose()?;
    let mut chain = ChainCheck::new();
    let mut records = 0u64;
    let head = match &a.file {
        Some(file) => {
            let f =
                std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
            for line in std::io::BufReader::new(f).split(b'\n') {
                let line = line.with_context(|| format!("reading {}", file.display()))?;
                if line.is_empty() {
                    continue;
                }
                chain
                    .push(&line)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                records += 1;
            }
            let head_file = a.head.clone().unwrap_or_else(|| head_path(file));
            match std::fs::read(&head_file) {
                Ok(bytes) => Some(
                    serde_json::from_slice::<SignedHead>(&bytes)
                        .with_context(|| format!("{} is not a head file", head_file.display()))?,
                ),
                Err(_) if a.head.is_none() => None,
                Err(e) => bail!("reading {}: {e}", head_file.display()),
            }
        }
        None => {
            let api = Api::of(&a.registry)?;
            let resp = api.stream("audit/export").await?;
            let head = head_of(resp.headers());
            let mut body = resp.bytes_stream();
            let mut pending: Vec<u8> = Vec::new();
            while let Some(chunk) = body.next().await {
                pending.extend_from_slice(&chunk.context("reading the export")?);
                while let Some(i) = pending.iter().position(|b| *b == b'\n') {
                    let line: Vec<u8> = pending.drain(..=i).collect();
                    chain.push(&line)?;
                    records += 1;
                }
            }
            if !pending.is_empty() {
                chain.push(&pending)?;
                records += 1;
            }
            head
        }
    };
    let signed_head = match head {
        None => None,
        Some(h) => {
            if chain.head() != Some(&(h.seq, h.hash.clone())) {
                bail!(
                    "the log does not end at the head the registry signed (seq {} hash {}): it ends at {}; records were removed from its end or its tail was rewritten",
                    h.seq,
                    h.hash,
                    chain
                        .head()
                        .map_or("nothing".to_string(), |(s, x)| format!("seq {s} hash {x}"))
                );
            }
            match &key {
                Some(k) => {
                    let sig = crate::governance::unb64(&h.signature).unwrap_or_default();
                    if !k.verifies(&sig, head_message(h.seq, &h.hash).as_bytes()) {
                        bail!("the head's signature does not verify with the registry key");
                    }
                    Some("verified")
                }
                None => Some("matched (signature not checked: give --registry-key)"),
            }
        }
    };
    let out = Verified {
        records,
        head: chain.head().cloned(),
        signed_head,
    };
    if a.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        match &out.head {
            Some((seq, hash)) => {
                println!("audit log intact: {records} records, head seq {seq} hash {hash}")
            }
            None => println!("audit log is empty"),
        }
        match out.signed_head {
            Some(s) => println!("signed head: {s}"),
            None => println!(
                "no signed head to compare with: records cut off the end would go unnoticed (export with -o to keep one)"
            ),
        }
    }
    Ok(())
}
