//! Garbage collection: untagged manifests past retention, referrers whose
//! subject is gone, blobs no manifest references, and abandoned uploads.
//!
//! Safe while pushes go on. The mark reads every manifest after `started`; a
//! blob is swept only if (checked in the transaction that unlinks it) it is no
//! manifest and none of its links was made or named by a manifest at the
//! cutoff (`started` less the grace period) or later, and (checked by the
//! store as it deletes) it was not committed since the cutoff. A mount links
//! only if a source still links the blob as it commits.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use super::{Registry, RegistryError, Result};
use crate::oci::Digest;
use crate::store::{Actor, BlobPages, ManifestRecord};

const PAGE: usize = 1000;

/// What a collection may remove.
#[derive(Debug, Clone)]
pub struct GcOptions {
    /// Delete (otherwise report what would go).
    pub apply: bool,
    /// Untagged manifests kept per repository, newest first; `None` keeps
    /// them all (a version pulled by digest only is still a version).
    pub keep_untagged: Option<usize>,
    /// A manifest a tag held within this long is kept, tagged or not.
    pub tag_window: Duration,
    /// Blobs and links younger than this are kept: a push's blobs come before
    /// its manifest.
    pub grace: Duration,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions {
            apply: false,
            keep_untagged: None,
            tag_window: Duration::from_secs(30 * 24 * 3600),
            grace: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct GcReport {
    pub applied: bool,
    pub manifests: Vec<GoneManifest>,
    pub blobs: Vec<GoneBlob>,
    /// Bytes of the blobs and manifests listed (freed, when applied).
    pub bytes: u64,
    pub repositories: Vec<String>,
    pub uploads: usize,
    pub seconds: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoneManifest {
    pub repo: String,
    pub digest: Digest,
    pub size: u64,
    /// `untagged` (past retention), `referrer` (its subject is gone) or
    /// `child` (of an index that is gone).
    pub why: &'static str,
}

#[derive(Debug, Clone, Serialize)]
pub struct GoneBlob {
    pub digest: Digest,
    pub size: u64,
}

impl Registry {
    /// Runs one collection.
    pub async fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let Ok(_turn) = self.gc_lock.try_lock() else {
            return Err(RegistryError::Conflict(
                "a garbage collection is running already".into(),
            ));
        };
        let started = SystemTime::now();
        let started_ms = jiff::Timestamp::now().as_millisecond();
        let cutoff = started
            .checked_sub(opts.grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        // A span too long for i64 milliseconds reaches back past any push.
        let ms = |d: Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
        let cutoff_ms = started_ms.saturating_sub(ms(opts.grace));
        let window_ms = started_ms.saturating_sub(ms(opts.tag_window));
        let gc_actor = Actor::registry();
        let mut report = GcReport {
            applied: opts.apply,
            ..GcReport::default()
        };
        // Mark, removing manifests as retention says.
        let mut referenced: HashSet<Digest> = HashSet::new();
        let mut repos = Vec::new();
        let mut last: Option<String> = None;
        loop {
            let page = self.meta.list_repos(last.as_deref(), PAGE).await?;
            repos.extend(page.items.iter().cloned());
            last = page.items.last().cloned();
            if !page.more || last.is_none() {
                break;
            }
        }
        for repo in &repos {
            let manifests = self.all_manifests(repo).await?;
            let held = self.meta.held_since(repo, window_ms).await?;
            let gone = doomed(&manifests, &held, opts.keep_untagged, cutoff_ms);
            for (digest, why) in &gone {
                let size = manifests[digest].size;
                let removed = if opts.apply {
                    self.meta
                        .delete_untagged_manifest(repo, digest, &gc_actor)
                        .await?
                        .is_some()
                } else {
                    true
                };
                if removed {
                    report.manifests.push(GoneManifest {
                        repo: repo.clone(),
                        digest: digest.clone(),
                        size,
                        why,
                    });
                }
            }
            for (digest, m) in &manifests {
                if !gone.contains_key(digest) {
                    referenced.insert(digest.clone());
                    referenced.extend(m.references.iter().cloned());
                }
            }
        }
        // Sweep what no remaining manifest is or references.
        let mut pages = BlobPages::new(self.blobs.as_ref(), PAGE);
        while let Some(page) = pages.next().await? {
            let names = page
                .into_iter()
                .filter(|(d, _)| !referenced.contains(d))
                .map(|(d, _)| d)
                .collect();
            // A page's unlinking is one transaction (rolled back in a dry run);
            // then each file, one by one.
            let unlinked = self
                .meta
                .sweep_blob_links(names, cutoff_ms, opts.apply)
                .await?;
            for digest in unlinked {
                if let Some(freed) = self.blobs.sweep(&digest, cutoff, opts.apply).await? {
                    report.blobs.push(GoneBlob {
                        digest,
                        size: freed,
                    });
                }
            }
        }
        report.bytes = report.blobs.iter().map(|b| b.size).sum::<u64>();
        if opts.apply {
            for repo in &repos {
                if self.meta.drop_repo_if_empty(repo).await? {
                    report.repositories.push(repo.clone());
                }
            }
            report.uploads = self.expire_uploads(opts.grace.as_secs()).await?;
        }
        report.seconds = started.elapsed().map_or(0.0, |d| d.as_secs_f64());
        tracing::info!(
            applied = opts.apply,
            manifests = report.manifests.len(),
            blobs = report.blobs.len(),
            bytes = report.bytes,
            repositories = report.repositories.len(),
            uploads = report.uploads,
            "garbage collection finished"
        );
        Ok(report)
    }

    async fn all_manifests(&self, repo: &str) -> Result<HashMap<Digest, ManifestRecord>> {
        let mut out = HashMap::new();
        let mut after: Option<Digest> = None;
        loop {
            let page = self.meta.manifests_page(repo, after.as_ref(), PAGE).await?;
            let Some(l) = page.last() else { break };
            after = Some(l.digest.clone());
            out.extend(page.into_iter().map(|m| (m.digest.clone(), m)));
        }
        Ok(out)
    }
}

/// The manifests of one repository that go, and why. Kept: what a tag holds or
/// held within the window, the newest `keep_untagged` other top-level ones (all,
/// without a limit), the children of a kept index and the referrers of a kept
/// subject, transitively. The rest go: untagged past retention, referrers
/// whose subject is gone, children of indexes that are gone. A referrer whose
/// subject is not there at all is kept while it is younger than `cutoff_ms`
/// (a copy may push referrers before their subject).
fn doomed(
    manifests: &HashMap<Digest, ManifestRecord>,
    held: &BTreeSet<Digest>,
    keep_untagged: Option<usize>,
    cutoff_ms: i64,
) -> HashMap<Digest, &'static str> {
    let children: HashSet<&Digest> = manifests
        .values()
        .flat_map(|m| m.references.iter())
        .filter(|d| manifests.contains_key(*d))
        .collect();
    let mut untagged: Vec<&ManifestRecord> = manifests
        .values()
        .filter(|m| {
            m.subject.is_none() && !children.contains(&m.digest) && !held.contains(&m.digest)
        })
        .collect();
    untagged.sort_by(|a, b| b.pushed_ms.cmp(&a.pushed_ms).then(a.digest.cmp(&b.digest)));
    let keep = keep_untagged.unwrap_or(usize::MAX);
    let early_referrers = manifests.values().filter(|m| {
        m.subject
            .as_ref()
            .is_some_and(|s| !manifests.contains_key(s))
            && m.pushed_ms >= cutoff_ms
    });
    let mut kept: HashSet<&Digest> = held
        .iter()
        .filter(|d| manifests.contains_key(*d))
        .chain(untagged.iter().take(keep).map(|m| &m.digest))
        .chain(early_referrers.map(|m| &m.digest))
        .collect();
    // Children of kept indexes and referrers of kept subjects, to a fixed point.
    let mut by_subject: HashMap<&Digest, Vec<&Digest>> = HashMap::new();
    for m in manifests.values() {
        if let Some(s) = &m.subject {
            by_subject.entry(s).or_default().push(&m.digest);
        }
    }
    let mut todo: Vec<&Digest> = kept.iter().copied().collect();
    while let Some(d) = todo.pop() {
        let refs = manifests[d]
            .references
            .iter()
            .filter(|r| manifests.contains_key(*r));
        let referrers = by_subject.get(d).into_iter().flatten().copied();
        for next in refs.chain(referrers) {
            if kept.insert(next) {
                todo.push(next);
            }
        }
    }
    manifests
        .values()
        .filter(|m| !kept.contains(&m.digest))
        .map(|m| {
            let why = if m.subject.is_some() {
                "referrer"
            } else if children.contains(&m.digest) {
                "child"
            } else {
                "untagged"
            };
            (m.digest.clone(), why)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(seed: &str, pushed_ms: i64, refs: &[&Digest], subject: Option<&Digest>) -> ManifestRecord {
        ManifestRecord {
            digest: Digest::sha256_of(seed.as_bytes()),
            media_type: "application/vnd.oci.image.manifest.v1+json".into(),
            size: 10,
            artifact_type: None,
            subject: subject.cloned(),
            annotations: Default::default(),
            references: refs.iter().map(|d| (*d).clone()).collect(),
            pushed_ms,
        }
    }

    #[test]
    fn retention_keeps_what_is_held_the_newest_untagged_and_what_they_need() {
        let layer = Digest::sha256_of(b"layer");
        let child = m("child", 1, &[&layer], None);
        let index = m("index", 2, &[&child.digest], None);
        let tagged = m("tagged", 3, &[&layer], None);
        let sig = m("signature of tagged", 4, &[], Some(&tagged.digest));
        let sig_of_sig = m("signature of the signature", 5, &[], Some(&sig.digest));
        let old = m("old untagged", 6, &[&layer], None);
        let new = m("new untagged", 7, &[&layer], None);
        let orphan_sig = m("signature of old", 8, &[], Some(&old.digest));
        let absent = Digest::sha256_of(b"never pushed");
        let early = m("referrer of what is not here yet", 100, &[], Some(&absent));
        let stale = m("referrer of what is long gone", 9, &[], Some(&absent));
        let all: HashMap<Digest, ManifestRecord> = [
            &child,
            &index,
            &tagged,
            &sig,
            &sig_of_sig,
            &old,
            &new,
            &orphan_sig,
            &early,
            &stale,
        ]
        .into_iter()
        .map(|r| (r.digest.clone(), r.clone()))
        .collect();
        let held = BTreeSet::from([tagged.digest.clone()]);

        let gone = doomed(&all, &held, None, 50);
        let names = |g: &HashMap<Digest, &'static str>| {
            let mut v: Vec<(Digest, &'static str)> =
                g.iter().map(|(d, w)| (d.clone(), *w)).collect();
            v.sort();
            v
        };
        assert_eq!(
            names(&gone),
            vec![(stale.digest.clone(), "referrer")],
            "no limit: only the stale referrer"
        );

        let gone = doomed(&all, &held, Some(1), 50);
        let mut want = vec![
            (old.digest.clone(), "untagged"),
            (orphan_sig.digest.clone(), "referrer"),
            (stale.digest.clone(), "referrer"),
            (index.digest.clone(), "untagged"),
            (child.digest.clone(), "child"),
        ];
        want.sort();
        assert_eq!(
            names(&gone),
            want,
            "newest one kept; the signatures of kept ones stay"
        );

        let gone = doomed(&all, &held, Some(0), 200);
        assert!(
            gone.contains_key(&early.digest),
            "older than the cutoff now"
        );
        assert!(!gone.contains_key(&tagged.digest) && !gone.contains_key(&sig_of_sig.digest));
    }
}
