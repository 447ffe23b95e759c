//! The model view of a repository: indexing model versions at push time, and the
//! queries of the model API (list models, list/filter/sort versions, one version,
//! compare versions).

use std::collections::BTreeMap;

use super::{Registry, RegistryError, Result};
use crate::models::compare::{self, Compared, Comparison};
use crate::models::index;
use crate::models::query::{Cursor, Tagged, VersionQuery};
use crate::oci::{Descriptor, Digest, ParsedManifest, Reference};
use crate::store::{ModelFilter, ModelPage, ModelRecord, StoreError};

/// Referrers shown with a model version; the rest are paged by the OCI referrers API.
pub const VERSION_REFERRERS: usize = 100;

/// One model version with the tags pointing at it, its labels and its first referrers.
pub struct ModelVersion {
    pub record: ModelRecord,
    pub tags: Vec<String>,
    pub labels: BTreeMap<String, String>,
    /// The first [`VERSION_REFERRERS`] referrers, in digest order.
    pub referrers: Vec<Descriptor>,
    /// More referrers remain after those.
    pub more_referrers: bool,
}

/// A page of versions (each with its tags) and the cursor of the next page.
pub struct VersionPage {
    pub items: Vec<Tagged>,
    pub next: Option<Cursor>,
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

impl Registry {
    /// The model-index record of a manifest being pushed, if it is a model version.
    /// A config that cannot be taken as one (too large for its descriptor, or not
    /// there) only means indexing from annotations alone; a failure to read it fails
    /// the push, which the client retries, rather than leaving a version indexed
    /// without its config for good.
    pub(super) async fn model_record(
        &self,
        repo: &str,
        parsed: &ParsedManifest,
        digest: &Digest,
        size: u64,
    ) -> Result<Option<ModelRecord>> {
        let Some(layout) = index::detect(parsed) else {
            return Ok(None);
        };
        let config = match index::config_of(parsed) {
            Some(c) if index::wants_config(layout, c) => {
                match self
                    .blobs
                    .read_all(&c.digest, index::MAX_CONFIG_BYTES)
                    .await
                {
                    Ok(bytes) => bytes,
                    Err(e @ StoreError::Io(_)) => return Err(e.into()),
                    // Set aside; the client's retry uploads the config again.
                    Err(e @ StoreError::Rotten { .. }) => {
                        self.on_rot(e, false).await;
                        return Err(RegistryError::ManifestBlobUnknown(c.digest.clone()));
                    }
                    Err(e) => {
                        tracing::warn!(repo, config = %c.digest, error = %e,
                            "model config not usable; indexing from annotations only");
                        None
                    }
                }
            }
            _ => None,
        };
        Ok(Some(index::extract(
            layout,
            parsed,
            digest,
            size,
            config.as_deref(),
            now_ms(),
        )))
    }

    fn api_limit(&self, limit: usize) -> usize {
        limit.clamp(1, self.limits.max_page)
    }

    /// Models in name order after `after`, only those `visible` accepts (those
    /// the caller may pull): a page holds up to `limit` of them.
    pub async fn list_models(
        &self,
        filter: &ModelFilter,
        after: Option<&str>,
        limit: usize,
        visible: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<ModelPage> {
        let limit = self.api_limit(limit);
        let mut out = ModelPage {
            items: Vec::new(),
            more: false,
        };
        let mut after = after.map(str::to_string);
        loop {
            let page = self
                .meta
                .list_models(after.as_deref(), limit.max(1), filter)
                .await?;
            let last = page.items.last().map(|m| m.name.clone());
            for m in page.items {
                if !visible(&m.name) {
                    continue;
                }
                if out.items.len() == limit {
                    out.more = true;
                    return Ok(out);
                }
                out.items.push(m);
            }
            match last {
                Some(l) if page.more => after = Some(l),
                _ => return Ok(out),
            }
        }
    }

    /// Every version of model `repo` with the tags pointing at it; an error if the
    /// repository has no model version.
    async fn versions_with_tags(&self, repo: &str) -> Result<Vec<Tagged>> {
        let versions = self.meta.model_versions(repo).await?;
        if versions.is_empty() {
            return Err(RegistryError::ModelUnknown(repo.to_string()));
        }
        let mut tags = self.meta.tags_by_digest(repo).await?;
        let mut labels = self.meta.repo_labels(repo).await?;
        Ok(versions
            .into_iter()
            .map(|record| Tagged {
                tags: tags.remove(&record.digest).unwrap_or_default(),
                labels: labels.remove(&record.digest).unwrap_or_default(),
                record,
            })
            .collect())
    }

    /// Versions of model `repo` that pass `query`, in its order, after `after`.
    pub async fn model_versions(
        &self,
        repo: &str,
        query: &VersionQuery,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<VersionPage> {
        let all = self.versions_with_tags(repo).await?;
        let (items, next) = query.select(all, after, self.api_limit(limit));
        Ok(VersionPage { items, next })
    }

    async fn version_record(&self, repo: &str, reference: &Reference) -> Result<ModelRecord> {
        let unknown = || RegistryError::ModelVersionUnknown(format!("{repo}:{reference}"));
        let digest = self.resolve(repo, reference).await?.ok_or_else(unknown)?;
        self.meta
            .model_version(repo, &digest)
            .await?
            .ok_or_else(unknown)
    }

    /// One version of model `repo`, by tag or digest.
    pub async fn model_version(&self, repo: &str, reference: &Reference) -> Result<ModelVersion> {
        let record = self.version_record(repo, reference).await?;
        let tags = self.meta.tags_of(repo, &record.digest).await?;
        let labels = self.meta.labels(repo, &record.digest).await?;
        let (referrers, more_referrers) = self
            .meta
            .referrers(repo, &record.digest, None, None, VERSION_REFERRERS)
            .await?;
        Ok(ModelVersion {
            record,
            tags,
            labels,
            referrers,
            more_referrers,
        })
    }

    /// Versions of model `repo` side by side; the first is the baseline.
    pub async fn compare_models(&self, repo: &str, refs: &[Reference]) -> Result<Comparison> {
        let mut records = Vec::with_capacity(refs.len());
        for r in refs {
            records.push((r.to_string(), self.version_record(repo, r).await?));
        }
        let tags: BTreeMap<Digest, Vec<String>> = self.meta.tags_by_digest(repo).await?;
        let compared: Vec<Compared<'_>> = records
            .iter()
            .map(|(reference, record)| Compared {
                reference: reference.clone(),
                record,
                tags: tags.get(&record.digest).cloned().unwrap_or_default(),
            })
            .collect();
        compare::compare(&compared).ok_or_else(|| RegistryError::ModelUnknown(repo.to_string()))
    }
}
