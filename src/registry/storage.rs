//! Storage accounting: what each repository's versions add up to, what the
//! store holds once (deduplicated by digest), and what no manifest references.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde::Serialize;

use super::{Registry, Result};
use crate::oci::Digest;
use crate::store::BlobPages;

/// Rows read from the metadata store per page.
const PAGE: usize = 1000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct StorageReport {
    pub repositories: Vec<RepoStorage>,
    pub total: StorageTotal,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RepoStorage {
    pub name: String,
    pub manifests: u64,
    /// Every version counted whole: each manifest and what it references
    /// (blobs, or the manifests of an index), as if nothing were shared.
    pub logical_bytes: u64,
    /// The distinct blobs and manifests the repository holds.
    pub physical_bytes: u64,
    /// Blobs linked into the repository that none of its manifests references
    /// (a push under way, or what deleted versions left).
    pub unreferenced_bytes: u64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct StorageTotal {
    pub repositories: u64,
    pub manifests: u64,
    /// Summed over every repository's versions.
    pub logical_bytes: u64,
    /// What the store holds: each blob and manifest once, whatever shares it.
    pub physical_bytes: u64,
    pub blobs: u64,
    /// Logical over physical bytes: how much sharing by digest saves.
    pub dedup_ratio: f64,
    /// Stored bytes that no manifest in any repository is or references: what
    /// garbage collection would reclaim (once they are past its grace period).
    pub reclaimable_bytes: u64,
}

impl Registry {
    /// Walks every repository and the store. Costs a read of every manifest
    /// record and blob link, and holds the digests that are referenced.
    pub async fn storage_report(&self) -> Result<Arc<StorageReport>> {
        let mut report = StorageReport::default();
        let mut referenced: HashSet<Digest> = HashSet::new();
        let mut last: Option<String> = None;
        loop {
            let page = self.meta.list_repos(last.as_deref(), PAGE).await?;
            for repo in &page.items {
                let r = self.repo_storage(repo, &mut referenced).await?;
                report.total.manifests += r.manifests;
                report.total.logical_bytes += r.logical_bytes;
                report.repositories.push(r);
            }
            last = page.items.last().cloned();
            if !page.more || last.is_none() {
                break;
            }
        }
        report.total.repositories = report.repositories.len() as u64;
        let mut pages = BlobPages::new(self.blobs.as_ref(), PAGE);
        while let Some(page) = pages.next().await? {
            for (digest, size) in page {
                report.total.blobs += 1;
                report.total.physical_bytes += size;
                if !referenced.contains(&digest) {
                    report.total.reclaimable_bytes += size;
                }
            }
        }
        if report.total.physical_bytes > 0 {
            report.total.dedup_ratio =
                report.total.logical_bytes as f64 / report.total.physical_bytes as f64;
        }
        let report = Arc::new(report);
        if let Ok(mut last) = self.last_storage.lock() {
            *last = Some(report.clone());
        }
        Ok(report)
    }

    /// The report the last walk made, if any.
    pub fn last_storage_report(&self) -> Option<Arc<StorageReport>> {
        self.last_storage.lock().ok().and_then(|l| l.clone())
    }

    async fn repo_storage(
        &self,
        repo: &str,
        referenced: &mut HashSet<Digest>,
    ) -> Result<RepoStorage> {
        let mut out = RepoStorage {
            name: repo.to_string(),
            ..RepoStorage::default()
        };
        let mut links: HashMap<Digest, u64> = HashMap::new();
        let mut after: Option<Digest> = None;
        loop {
            let page = self
                .meta
                .blob_links_page(repo, after.as_ref(), PAGE)
                .await?;
            let Some((l, _)) = page.last() else { break };
            after = Some(l.clone());
            links.extend(page);
        }
        let mut manifests: HashMap<Digest, (u64, Vec<Digest>)> = HashMap::new();
        let mut after: Option<Digest> = None;
        loop {
            let page = self.meta.manifests_page(repo, after.as_ref(), PAGE).await?;
            let Some(l) = page.last() else { break };
            after = Some(l.digest.clone());
            for m in page {
                manifests.insert(m.digest, (m.size, m.references));
            }
        }
        let mut in_use: HashSet<&Digest> = HashSet::new();
        for (digest, (size, refs)) in &manifests {
            out.manifests += 1;
            out.logical_bytes += size;
            out.physical_bytes += size;
            for r in refs {
                let size = links.get(r).or_else(|| manifests.get(r).map(|(s, _)| s));
                out.logical_bytes += size.copied().unwrap_or(0);
                in_use.insert(r);
                referenced.insert(r.clone());
            }
            referenced.insert(digest.clone());
        }
        for (digest, size) in &links {
            out.physical_bytes += size;
            if !in_use.contains(digest) {
                out.unreferenced_bytes += size;
            }
        }
        Ok(out)
    }
}
