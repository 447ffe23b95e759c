//! Downloading blobs into `.part` files: big blobs as parallel `Range` requests
//! written at their offsets, small ones as one stream; an interrupted download
//! resumes (the chunks already written, or the prefix of a single stream), and
//! every blob is hashed in full before the caller may use it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use futures_util::{StreamExt, TryStreamExt};
use indicatif::ProgressBar;
use reqwest::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncSeekExt, AsyncWriteExt};
use tokio::sync::Semaphore;

use super::registry::Registry;
use super::transfer::{Progress, RateLimit};
use crate::oci::Descriptor;

/// Downloads blobs of one repository.
#[derive(Clone)]
pub struct Downloader {
    pub registry: Registry,
    pub repo: String,
    /// Blobs larger than this are fetched as parallel ranges of this size.
    pub chunk_size: u64,
    pub progress: Progress,
    pub limit: RateLimit,
    /// Bounds the requests in flight across all blobs.
    pub requests: Arc<Semaphore>,
}

/// A verified blob on disk.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub path: PathBuf,
    /// Bytes received over the network in this run.
    pub downloaded: u64,
    /// Bytes kept from an earlier interrupted run.
    pub reused: u64,
}

/// Which chunks of a `.part` file are complete (kept beside it as `.part.json`).
#[derive(Debug, Default, Serialize, Deserialize, PartialEq)]
struct Chunks {
    size: u64,
    chunk: u64,
    done: BTreeSet<u64>,
}

/// The registry answered a range request with the whole blob.
#[derive(Debug, thiserror::Error)]
#[error("the registry ignores Range requests")]
struct RangesUnsupported;

/// A blob resumed from an earlier run's data failed verification.
#[derive(Debug, thiserror::Error)]
#[error("a partial download kept from an earlier pull is corrupt: {0}")]
struct BadReusedData(String);

fn sidecar(part: &Path) -> PathBuf {
    let mut s = part.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

impl Downloader {
    /// Downloads `desc` into `part` and verifies its digest. On a mismatch the
    /// partial data is deleted and an error returned.
    pub async fn fetch(&self, desc: &Descriptor, part: &Path, label: &str) -> Result<Fetched> {
        match self.fetch_once(desc, part, label).await {
            // Data kept from an earlier run may be what went wrong: start over once.
            Err(e) if e.is::<BadReusedData>() => {
                tracing::warn!("{e:#}; downloading it again");
                self.fetch_once(desc, part, label).await
            }
            other => other,
        }
    }

    async fn fetch_once(&self, desc: &Descriptor, part: &Path, label: &str) -> Result<Fetched> {
        let bar = self.progress.bar("pull", label, desc.size);
        if let Some(parent) = part.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .with_context(|| format!("creating {}", parent.display()))?;
        }
        let (downloaded, reused) = if desc.size > self.chunk_size {
            match self.chunked(desc, part, &bar).await {
                Err(e) if e.is::<RangesUnsupported>() => {
                    let _ = tokio::fs::remove_file(part).await;
                    let _ = tokio::fs::remove_file(sidecar(part)).await;
                    bar.set_position(0);
                    self.single(desc, part, &bar).await?
                }
                other => other?,
            }
        } else {
            self.single(desc, part, &bar).await?
        };
        let verify = {
            let (part, desc) = (part.to_path_buf(), desc.clone());
            tokio::task::spawn_blocking(move || verify(&part, &desc))
        };
        let result = verify.await.context("verification task failed")?;
        let _ = tokio::fs::remove_file(sidecar(part)).await;
        if let Err(e) = result {
            let _ = tokio::fs::remove_file(part).await;
            bar.finish_and_clear();
            if reused > 0 {
                return Err(BadReusedData(format!("{e:#}")).into());
            }
            return Err(e.context(format!("blob {} of {label}", desc.digest)));
        }
        bar.finish_and_clear();
        Ok(Fetched {
            path: part.to_path_buf(),
            downloaded,
            reused,
        })
    }

    /// One stream, resumed from the length of an existing `.part` file.
    async fn single(
        &self,
        desc: &Descriptor,
        part: &Path,
        bar: &ProgressBar,
    ) -> Result<(u64, u64)> {
        let _permit = self.requests.acquire().await?;
        let mut have = tokio::fs::metadata(part)
            .await
            .map(|m| m.len())
            .unwrap_or(0);
        if have > desc.size {
            have = 0;
        }
        if have == desc.size {
            if desc.size == 0 {
                tokio::fs::File::create(part)
                    .await
                    .with_context(|| format!("creating {}", part.display()))?;
            }
            bar.set_position(have);
            return Ok((0, have));
        }
        let range = (have > 0).then_some((have, None));
        let resp = self
            .registry
            .get_blob(&self.repo, &desc.digest, range)
            .await?;
        let start = if resp.status() == StatusCode::PARTIAL_CONTENT {
            content_range_start(&resp).unwrap_or(u64::MAX)
        } else {
            0
        };
        if start != 0 && start != have {
            bail!(
                "GET blob {}: asked for bytes from {have}, the registry sent a range from {start}",
                desc.digest
            );
        }
        let mut file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(part)
            .await
            .with_context(|| format!("opening {}", part.display()))?;
        file.set_len(start).await?;
        file.seek(std::io::SeekFrom::Start(start)).await?;
        bar.set_position(start);
        let got = self
            .copy_body(resp, &mut file, desc.size - start, bar)
            .await?;
        if got != desc.size - start {
            bail!(
                "GET blob {}: the registry sent {} bytes, expected {}",
                desc.digest,
                got,
                desc.size - start
            );
        }
        Ok((got, start))
    }

    /// Parallel ranges written at their offsets; completed chunks are recorded so
    /// that a rerun fetches only the rest.
    async fn chunked(
        &self,
        desc: &Descriptor,
        part: &Path,
        bar: &ProgressBar,
    ) -> Result<(u64, u64)> {
        let size = desc.size;
        let chunk = self.chunk_size;
        let side = sidecar(part);
        let mut state: Chunks = tokio::fs::read(&side)
            .await
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let part_len = tokio::fs::metadata(part).await.map(|m| m.len()).ok();
        if state.size != size || state.chunk != chunk || part_len != Some(size) {
            state = Chunks {
                size,
                chunk,
                done: BTreeSet::new(),
            };
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(false)
            .open(part)
            .await
            .with_context(|| format!("opening {}", part.display()))?;
        file.set_len(size).await?;
        drop(file);
        let count = size.div_ceil(chunk);
        let reused: u64 = state
            .done
            .iter()
            .map(|&i| chunk.min(size - i * chunk))
            .sum();
        bar.set_position(reused);
        let missing: Vec<u64> = (0..count).filter(|i| !state.done.contains(i)).collect();
        let state = Arc::new(Mutex::new(state));
        let downloaded: Vec<u64> = futures_util::stream::iter(missing)
            .map(|i| {
                let state = state.clone();
                let side = side.clone();
                async move {
                    let start = i * chunk;
                    let len = chunk.min(size - start);
                    let got = self.fetch_range(desc, part, start, len, bar).await?;
                    let snapshot = {
                        let mut s = state.lock().map_err(|_| anyhow!("chunk table poisoned"))?;
                        s.done.insert(i);
                        serde_json::to_vec(&*s)?
                    };
                    let tmp = side.with_extension(format!("tmp{i}"));
                    if tokio::fs::write(&tmp, snapshot).await.is_ok() {
                        let _ = tokio::fs::rename(&tmp, &side).await;
                    }
                    anyhow::Ok(got)
                }
            })
            .buffer_unordered(usize::MAX)
            .try_collect()
            .await?;
        Ok((downloaded.iter().sum(), reused))
    }

    async fn fetch_range(
        &self,
        desc: &Descriptor,
        part: &Path,
        start: u64,
        len: u64,
        bar: &ProgressBar,
    ) -> Result<u64> {
        let _permit = self.requests.acquire().await?;
        let end = start + len - 1;
        let resp = self
            .registry
            .get_blob(&self.repo, &desc.digest, Some((start, Some(end))))
            .await?;
        if resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(RangesUnsupported.into());
        }
        if content_range_start(&resp) != Some(start) {
            bail!(
                "GET blob {} bytes {start}-{end}: the registry sent another range",
                desc.digest
            );
        }
        let mut file = tokio::fs::OpenOptions::new()
            .write(true)
            .open(part)
            .await
            .with_context(|| format!("opening {}", part.display()))?;
        file.seek(std::io::SeekFrom::Start(start)).await?;
        let got = self.copy_body(resp, &mut file, len, bar).await?;
        if got != len {
            bail!(
                "GET blob {} bytes {start}-{end}: received {got} bytes",
                desc.digest
            );
        }
        Ok(got)
    }

    /// Streams a response body into `file`, at most `max` bytes.
    async fn copy_body(
        &self,
        resp: reqwest::Response,
        file: &mut tokio::fs::File,
        max: u64,
        bar: &ProgressBar,
    ) -> Result<u64> {
        let url = resp.url().clone();
        let mut stream = resp.bytes_stream();
        let mut got = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.with_context(|| format!("reading GET {url}"))?;
            got += chunk.len() as u64;
            if got > max {
                bail!("GET {url}: the registry sent more than the {max} bytes expected");
            }
            self.limit.take(chunk.len() as u64).await;
            file.write_all(&chunk).await?;
            bar.inc(chunk.len() as u64);
        }
        file.flush().await?;
        Ok(got)
    }
}

fn content_range_start(resp: &reqwest::Response) -> Option<u64> {
    let v = resp
        .headers()
        .get(reqwest::header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let rest = v.trim().strip_prefix("bytes ")?;
    rest.split('-').next()?.trim().parse().ok()
}

/// Hashes a downloaded file and checks size and digest against the descriptor.
pub fn verify(path: &Path, desc: &Descriptor) -> Result<()> {
    use std::io::Read;
    let mut f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = desc.digest.algorithm().hasher();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        hasher.update(&buf[..n]);
    }
    if total != desc.size {
        bail!("size {total} differs from the descriptor's {}", desc.size);
    }
    let actual = hasher.finish();
    if actual != desc.digest {
        bail!(
            "content digest {actual} differs from the descriptor's {}",
            desc.digest
        );
    }
    Ok(())
}
