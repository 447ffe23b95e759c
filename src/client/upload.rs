//! Pushing blobs the way big files need: skip what the repository has, mount what
//! the registry has elsewhere, upload the rest in parallel (monolithic below the
//! chunk size, chunked above it) and resume an interrupted chunked upload from the
//! offset the registry acknowledges.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, Result};
use futures_util::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use reqwest::Url;
use serde::Serialize;

use super::registry::{Mount, Registry};
use super::source::BlobSource;
use super::state::{UploadRecord, UploadState};
use super::transfer::{Progress, RateLimit, body_from_reader};
use crate::oci::{Algorithm, Digest};

/// How a blob got into the repository.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// The repository had it already.
    Present,
    /// The registry linked it from another repository.
    Mounted,
    /// Its bytes were sent (all of them, or the rest of a resumed upload).
    Uploaded,
}

/// The result of pushing one blob.
#[derive(Debug, Clone, Serialize)]
pub struct Pushed {
    pub digest: Digest,
    pub size: u64,
    pub outcome: Outcome,
    /// Body bytes sent for this blob in this run.
    pub bytes_sent: u64,
    /// Offset an interrupted upload was resumed from (0 if none).
    pub resumed_from: u64,
}

/// A blob to push: its contents, digest and a label for progress output.
#[derive(Debug, Clone)]
pub struct Blob {
    pub label: String,
    pub digest: Digest,
    pub source: BlobSource,
}

/// Pushes blobs into one repository.
#[derive(Clone)]
pub struct Uploader {
    pub registry: Registry,
    pub repo: String,
    /// Blobs larger than this go up in chunks of this size.
    pub chunk_size: u64,
    /// A repository to mount from (besides the registry's own discovery).
    pub mount_from: Option<String>,
    pub state: UploadState,
    pub progress: Progress,
    pub limit: RateLimit,
    /// Blobs in flight at once.
    pub jobs: usize,
}

impl Uploader {
    /// Pushes all blobs, `jobs` at a time; results in the order given. A digest
    /// that appears twice is pushed once (the repeat reports `present`).
    pub async fn push_all(&self, blobs: Vec<Blob>) -> Result<Vec<Pushed>> {
        self.registry
            .authorize_push(&self.repo, self.mount_from.as_deref())
            .await?;
        let mut first: HashMap<Digest, usize> = HashMap::new();
        let unique: Vec<&Blob> = blobs
            .iter()
            .filter(|b| {
                let n = first.len();
                *first.entry(b.digest.clone()).or_insert(n) == n
            })
            .collect();
        let pushed: Vec<Pushed> = futures_util::stream::iter(unique)
            .map(|b| async move { self.push(b).await })
            .buffered(self.jobs.max(1))
            .try_collect()
            .await?;
        let mut seen = HashSet::new();
        Ok(blobs
            .iter()
            .map(|b| {
                let mut p = pushed[first[&b.digest]].clone();
                if !seen.insert(&b.digest) {
                    p.outcome = Outcome::Present;
                    p.bytes_sent = 0;
                    p.resumed_from = 0;
                }
                p
            })
            .collect())
    }

    /// Pushes one blob.
    pub async fn push(&self, blob: &Blob) -> Result<Pushed> {
        let size = blob.source.size();
        let done = |outcome, bytes_sent, resumed_from| Pushed {
            digest: blob.digest.clone(),
            size,
            outcome,
            bytes_sent,
            resumed_from,
        };
        let registry_key = self.registry.base().to_string();
        if self
            .registry
            .blob_size(&self.repo, &blob.digest)
            .await?
            .is_some()
        {
            self.state.remove(&registry_key, &self.repo, &blob.digest);
            return Ok(done(Outcome::Present, 0, 0));
        }
        let bar = self.progress.bar("push", &blob.label, size);
        let mut resumed = None;
        if let Some(rec) = self.state.load(&registry_key, &self.repo, &blob.digest)
            && let Ok(url) = Url::parse(&rec.url)
        {
            match self.registry.upload_status(&url).await {
                Ok(Some((next, offset))) if offset <= size => resumed = Some((next, offset)),
                _ => self.state.remove(&registry_key, &self.repo, &blob.digest),
            }
        }
        let (session, offset) = match resumed {
            Some(r) => r,
            None => match self.open_session(&blob.digest).await? {
                None => {
                    bar.finish_and_clear();
                    return Ok(done(Outcome::Mounted, 0, 0));
                }
                Some(url) => (url, 0),
            },
        };
        let sent = self
            .upload(blob, session, offset, &bar)
            .await
            .with_context(|| format!("uploading {} ({})", blob.label, blob.digest))?;
        self.state.remove(&registry_key, &self.repo, &blob.digest);
        bar.finish_and_clear();
        Ok(done(Outcome::Uploaded, sent, offset))
    }

    /// Tries mounts; `None` if one succeeded, else the session to upload into.
    async fn open_session(&self, digest: &Digest) -> Result<Option<Url>> {
        let session = match self.registry.mount(&self.repo, digest, None).await? {
            Mount::Mounted => return Ok(None),
            Mount::Session(url) => url,
        };
        let Some(from) = &self.mount_from else {
            return Ok(Some(session));
        };
        self.registry.cancel_upload(&session).await;
        match self.registry.mount(&self.repo, digest, Some(from)).await? {
            Mount::Mounted => Ok(None),
            Mount::Session(url) => Ok(Some(url)),
        }
    }

    /// Sends the bytes from `offset` on; returns how many were sent.
    async fn upload(
        &self,
        blob: &Blob,
        mut session: Url,
        mut offset: u64,
        bar: &ProgressBar,
    ) -> Result<u64> {
        let size = blob.source.size();
        bar.set_position(offset);
        if offset == 0 && size <= self.chunk_size {
            let reader = blob.source.open_at(0)?;
            let body = body_from_reader(reader, size, bar.clone(), self.limit.clone());
            self.registry
                .finish_upload(&session, &blob.digest, Some((body, size)))
                .await?;
            return Ok(size);
        }
        let registry_key = self.registry.base().to_string();
        let record = |url: &Url, offset| UploadRecord {
            registry: registry_key.clone(),
            repo: self.repo.clone(),
            digest: blob.digest.to_string(),
            url: url.to_string(),
            offset,
        };
        self.state.save(&record(&session, offset));
        let mut sent = 0;
        let mut retries = 0;
        while offset < size {
            let len = self.chunk_size.min(size - offset);
            let reader = blob.source.open_at(offset)?;
            let body = body_from_reader(reader, len, bar.clone(), self.limit.clone());
            match self.registry.patch_chunk(&session, offset, len, body).await {
                Ok(next) => {
                    session = next;
                    offset += len;
                    sent += len;
                    self.state.save(&record(&session, offset));
                }
                Err(e) => {
                    // Ask the registry where the session stands (a chunk it refused
                    // as out of order, a dropped connection) and go on from there.
                    retries += 1;
                    let status = self.registry.upload_status(&session).await.ok().flatten();
                    match status {
                        Some((next, at)) if retries <= 3 && at <= size => {
                            tracing::warn!("{e:#}; continuing at byte {at}");
                            session = next;
                            offset = at;
                            bar.set_position(at);
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
        self.registry
            .finish_upload(&session, &blob.digest, None)
            .await?;
        Ok(sent)
    }
}

/// Hashes sources in parallel (`jobs` at a time) on blocking threads.
pub async fn digest_all(
    sources: &[BlobSource],
    progress: &Progress,
    jobs: usize,
) -> Result<Vec<Digest>> {
    let total = sources.iter().map(BlobSource::size).sum();
    let bar = progress.bar("hash", "files", total);
    let out = futures_util::stream::iter(sources.iter().cloned())
        .map(|src| {
            let bar = bar.clone();
            async move {
                tokio::task::spawn_blocking(move || src.digest(Algorithm::Sha256, |n| bar.inc(n)))
                    .await
                    .context("hashing task failed")?
                    .context("hashing")
            }
        })
        .buffered(jobs.max(1))
        .try_collect()
        .await;
    bar.finish_and_clear();
    out
}
