//! Finding rot: stored bytes checked against their records and their digests,
//! and set aside when they fail, so that they are never served as whole and a
//! push of the same content installs a fresh copy.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Serialize;

use super::{Registry, RegistryError, Result};
use crate::oci::Digest;
use crate::store::{BlobPages, StoreError};

/// Blobs listed from the store per page of a scrub.
const SCRUB_PAGE: usize = 1000;

/// How a scrub runs.
#[derive(Debug, Clone, Default)]
pub struct ScrubOptions {
    /// Bytes read per second at most (an online scrub yields the disk to
    /// clients); `None` reads as fast as the store answers.
    pub max_bytes_per_sec: Option<u64>,
    /// Counts of what has been checked so far, for whoever watches.
    pub progress: Arc<ScrubProgress>,
}

#[derive(Debug, Default)]
pub struct ScrubProgress {
    pub blobs: AtomicU64,
    pub bytes: AtomicU64,
}

/// The one scrub running: a second waits for none and is refused.
pub struct ScrubTurn(#[allow(dead_code)] tokio::sync::OwnedMutexGuard<()>);

/// What a scrub found.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ScrubReport {
    pub blobs_checked: u64,
    pub bytes_checked: u64,
    /// Stored copies whose bytes do not hash to their digest, each set aside.
    pub corrupt: Vec<Rotten>,
    /// Blobs the store could not read (listed, then gone or failing).
    pub unreadable: Vec<Rotten>,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Rotten {
    pub digest: Digest,
    pub detail: String,
}

impl Registry {
    /// Checks a blob's stored size against the size recorded when it was
    /// pushed: a copy that is missing, cut short or grown is not served.
    pub(super) async fn check_stored_size(&self, digest: &Digest, recorded: u64) -> Result<()> {
        let stored = self.blobs.stat(digest).await?;
        self.verify_stored_size(digest, stored, recorded).await
    }

    /// What [`Registry::check_stored_size`] decides, for a size already known.
    pub(super) async fn verify_stored_size(
        &self,
        digest: &Digest,
        stored: Option<u64>,
        recorded: u64,
    ) -> Result<()> {
        match stored {
            Some(size) if size == recorded => Ok(()),
            Some(size) => {
                let detail = format!("{size} bytes stored where {recorded} were pushed");
                Err(self.set_aside(digest, detail, false).await)
            }
            None => {
                tracing::error!(%digest, "blob is linked but its bytes are missing");
                Err(RegistryError::BlobUnknown(digest.clone()))
            }
        }
    }

    /// Turns a store's finding of rot into the registry's answer, setting the
    /// copy aside; other errors pass through.
    pub(super) async fn on_rot(&self, e: StoreError, manifest: bool) -> RegistryError {
        match e {
            StoreError::Rotten { digest, detail } => {
                self.set_aside(&digest, detail, manifest).await
            }
            e => e.into(),
        }
    }

    /// Sets a stored copy that failed verification aside (quarantine) and says
    /// so: it is unknown until pushed again.
    pub(super) async fn set_aside(
        &self,
        digest: &Digest,
        detail: String,
        manifest: bool,
    ) -> RegistryError {
        tracing::error!(%digest, detail, "stored copy failed verification; setting it aside");
        self.rot_found.inc();
        match self.blobs.quarantine(digest).await {
            Ok(_) => {}
            Err(e) => tracing::error!(%digest, error = %e, "could not set the copy aside"),
        }
        RegistryError::StoredCopyBad {
            digest: digest.clone(),
            detail,
            manifest,
        }
    }

    /// Takes the turn to scrub, unless a scrub is running.
    pub fn scrub_turn(&self) -> Result<ScrubTurn> {
        self.scrub_lock
            .clone()
            .try_lock_owned()
            .map(ScrubTurn)
            .map_err(|_| RegistryError::Conflict("a scrub is running already".into()))
    }

    /// Re-reads every stored blob (manifests included) and hashes it; a copy
    /// that does not match its digest is set aside and reported.
    pub async fn scrub(&self, _turn: &ScrubTurn, opts: &ScrubOptions) -> Result<ScrubReport> {
        let started = Instant::now();
        let mut report = ScrubReport::default();
        let mut pages = BlobPages::new(self.blobs.as_ref(), SCRUB_PAGE);
        while let Some(page) = pages.next().await? {
            for (digest, _) in page {
                match self.rehash(&digest, opts, started, &mut report).await {
                    Ok(actual) if actual == digest => {}
                    Ok(actual) => {
                        let detail = format!("its bytes hash to {actual}");
                        self.set_aside(&digest, detail.clone(), false).await;
                        report.corrupt.push(Rotten { digest, detail });
                    }
                    // Deleted since it was listed (garbage collection): nothing to check.
                    Err(RegistryError::BlobUnknown(_)) => continue,
                    Err(e) => report.unreadable.push(Rotten {
                        digest,
                        detail: e.to_string(),
                    }),
                }
                report.blobs_checked += 1;
                opts.progress.blobs.fetch_add(1, Ordering::Relaxed);
            }
        }
        report.seconds = started.elapsed().as_secs_f64();
        tracing::info!(
            blobs = report.blobs_checked,
            bytes = report.bytes_checked,
            corrupt = report.corrupt.len(),
            unreadable = report.unreadable.len(),
            "scrub finished"
        );
        Ok(report)
    }

    /// The digest a stored blob's bytes have now, read at most at the
    /// scrub's pace.
    async fn rehash(
        &self,
        digest: &Digest,
        opts: &ScrubOptions,
        started: Instant,
        report: &mut ScrubReport,
    ) -> Result<Digest> {
        let Some(reader) = self.blobs.read(digest, None).await? else {
            return Err(RegistryError::BlobUnknown(digest.clone()));
        };
        let mut stream = reader.stream;
        let mut hasher = digest.algorithm().hasher();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(StoreError::Io)?;
            hasher.update(&chunk);
            report.bytes_checked += chunk.len() as u64;
            opts.progress
                .bytes
                .fetch_add(chunk.len() as u64, Ordering::Relaxed);
            if let Some(rate) = opts.max_bytes_per_sec.filter(|r| *r > 0) {
                let due = Duration::from_secs_f64(report.bytes_checked as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Ok(hasher.finish())
    }
}
