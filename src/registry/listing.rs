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

    /// Repository names in lexical order after `last`, only those `visible`
    /// accepts (those the caller may pull): a page holds up to `n` of them.
    pub async fn list_repos(
        &self,
        n: Option<usize>,
        last: Option<&str>,
        visible: &(dyn Fn(&str) -> bool + Send + Sync),
    ) -> Result<Page> {
        let limit = self.page_size(n);
        let mut out = Page {
            items: Vec::new(),
            more: false,
        };
        let mut after = last.map(str::to_string);
        loop {
            let page = self.meta.list_repos(after.as_deref(), limit.max(1)).await?;
            for name in &page.items {
                if !visible(name) {
                    continue;
                }
                if out.items.len() == limit {
                    out.more = true;
                    return Ok(out);
                }
                out.items.push(name.clone());
            }
            match page.items.last() {
                Some(l) if page.more => after = Some(l.clone()),
                _ => return Ok(out),
            }
        }
    }

    /// Manifests in `repo` whose subject is `subject`, optionally only those of one
    /// artifact type, in digest order after `last`. An unknown subject has no
    /// referrers (not an error). A page stops before its index would outgrow the
    /// largest manifest we accept (clients cap what they read as a manifest), or at
    /// the page limit; the digest to continue after comes with it when more remain.
    pub async fn referrers(
        &self,
        repo: &str,
        subject: &Digest,
        artifact_type: Option<&str>,
        last: Option<&str>,
    ) -> Result<ReferrersPage> {
        let (matching, more) = self
            .meta
            .referrers(repo, subject, last, artifact_type, self.limits.max_page)
            .await?;
        // Room for the index around the descriptors.
        let budget = usize::try_from(self.limits.max_manifest_bytes)
            .unwrap_or(usize::MAX)
            .saturating_sub(REFERRERS_ENVELOPE);
        let mut page = ReferrersPage::default();
        let mut used = 0usize;
        let mut cut = false;
        for d in matching {
            // Every page carries at least one descriptor, so paging always moves on.
            let len = serde_json::to_vec(&d).map_or(0, |v| v.len()) + 1;
            if used + len > budget && !page.manifests.is_empty() {
                cut = true;
                break;
            }
            used += len;
            page.manifests.push(d);
        }
        if cut || more {
            page.next_after = page.manifests.last().map(|d| d.digest.to_string());
        }
        Ok(page)
    }
}

/// Bytes set aside for the referrers index around its descriptors.
const REFERRERS_ENVELOPE: usize = 256;

/// One page of a referrers listing.
#[derive(Debug, Default)]
pub struct ReferrersPage {
    pub manifests: Vec<Descriptor>,
    /// When more referrers remain: the digest the next page starts after.
    pub next_after: Option<String>,
}
