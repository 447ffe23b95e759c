//! Tags list, catalog and referrers.

use super::{Registry, RegistryError, Result};
use crate::oci::{Descriptor, Digest};
use crate::store::Page;

impl Registry {
    fn page_size(&self, n: Option<usize>) -> usize {
        n.unwrap_or(self.limits.max_page).min(self.limits.max_page)
    }

    /// Tags of `repo` in lexical order after `last`.
    pub async fn list_tags(
        &self,
        repo: &str,
        n: Option<usize>,
        last: Option<&str>,
    ) -> Result<Page> {
        if !self.meta.repo_exists(repo).await? {
            return Err(RegistryError::NameUnknown(repo.to_string()));
        }
        Ok(self.meta.list_tags(repo, last, self.page_size(n)).await?)
    }

    /// Repository names in lexical order after `last`.
    pub async fn list_repos(&self, n: Option<usize>, last: Option<&str>) -> Result<Page> {
        Ok(self.meta.list_repos(last, self.page_size(n)).await?)
    }

    /// Manifests in `repo` whose subject is `subject`, optionally only those of one
    /// artifact type. An unknown subject has no referrers (not an error).
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
    ) -> Result<Vec<Descriptor>> {
        let mut all = self.meta.referrers(repo, subject).await?;
        if let Some(t) = artifact_type {
            all.retain(|d| d.artifact_type.as_deref() == Some(t));
        }
        Ok(all)
    }
}
