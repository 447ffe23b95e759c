//! Storing the registry's attestations of promotions and rollbacks. A move
//! leaves a pending attestation in the same transaction; it is signed and stored
//! right after, and any left by a crash are finished at the next start.

use bytes::Bytes;

use super::{Registry, RegistryError, Result};
use crate::governance::attest::Attestation;
use crate::governance::cosign;
use crate::oci::media::OCI_MANIFEST;
use crate::oci::{Digest, Reference, Tag};
use crate::store::tags::PendingAttestation;
use crate::store::{Actor, HistoryEntry};

impl Registry {
    /// Attests a move just made; failures are logged and left pending.
    pub(super) async fn attest_move(
        &self,
        repo: &str,
        alias: &str,
        entry: &HistoryEntry,
    ) -> Option<Digest> {
        let pending = PendingAttestation {
            repo: repo.to_string(),
            tag: alias.to_string(),
            seq: entry.seq,
        };
        match self.attest(&pending, entry).await {
            Ok(d) => Some(d),
            Err(e) => {
                tracing::error!(repo, alias, seq = entry.seq, error = %e,
                    "could not store the attestation of a promotion; it stays pending");
                None
            }
        }
    }

    /// Signs and stores the attestations still pending. Returns how many.
    pub async fn complete_attestations(&self) -> Result<usize> {
        let mut done = 0;
        for p in self.meta.pending_attestations().await? {
            let (entries, _) = self
                .meta
                .tag_history(&p.repo, &p.tag, Some(p.seq.saturating_add(1)), 1)
                .await?;
            match entries.into_iter().next().filter(|e| e.seq == p.seq) {
                Some(entry) => {
                    self.attest(&p, &entry).await?;
                    done += 1;
                }
                None => tracing::warn!(
                    repo = p.repo,
                    tag = p.tag,
                    seq = p.seq,
                    "a pending attestation names no move; left alone"
                ),
            }
        }
        Ok(done)
    }

    async fn attest(&self, p: &PendingAttestation, entry: &HistoryEntry) -> Result<Digest> {
        let target = entry
            .target
            .clone()
            .ok_or_else(|| RegistryError::Invalid("a removal has nothing to attest".to_string()))?;
        let subject = self
            .manifest_record(&p.repo, &Reference::Digest(target))
            .await?
            .descriptor();
        let key = &self.governance.key;
        let att = Attestation::sign(key, &p.repo, &p.tag, entry, &subject)
            .map_err(|e| RegistryError::Invalid(format!("signing failed: {e}")))?;
        let digest = self
            .store_artifact(
                &p.repo,
                &[cosign::EMPTY_JSON, &att.bundle],
                &att.manifest,
                None,
            )
            .await?;
        if self.governance.settings.legacy_attestation_tags {
            self.append_legacy_attestation(&p.repo, &subject.digest, &att)
                .await?;
        }
        self.meta.attested(p, &digest).await?;
        Ok(digest)
    }

    /// Adds the envelope as a layer of the subject's `.att` image (cosign's legacy
    /// scheme), keeping the layers already there.
    async fn append_legacy_attestation(
        &self,
        repo: &str,
        subject: &Digest,
        att: &Attestation,
    ) -> Result<()> {
        let tag = cosign::att_tag(subject);
        let mut layers = match self.meta.resolve_tag(repo, &tag).await? {
            Some(d) => match self
                .blobs
                .read_all(&d, self.limits.max_manifest_bytes)
                .await?
            {
                Some(bytes) => cosign::legacy_layers(&bytes),
                None => Vec::new(),
            },
            None => Vec::new(),
        };
        let (bytes, layer) = att.legacy_layer();
        if layers.iter().any(|l| l.digest == layer.digest) {
            return Ok(());
        }
        layers.push(layer);
        let (config, manifest) = cosign::legacy_image(&layers);
        self.store_blob(repo, &bytes).await?;
        self.store_artifact(repo, &[&config], &manifest, Some(&tag))
            .await?;
        Ok(())
    }

    async fn store_blob(&self, repo: &str, bytes: &[u8]) -> Result<Digest> {
        let d = Digest::sha256_of(bytes);
        if self.blobs.stat(&d).await?.is_none() {
            self.blobs
                .write_all(&d, Bytes::copy_from_slice(bytes))
                .await?;
        }
        self.meta.link_blob(repo, &d, bytes.len() as u64).await?;
        Ok(d)
    }

    /// Stores blobs and a manifest naming them, as the registry itself.
    async fn store_artifact(
        &self,
        repo: &str,
        blobs: &[&[u8]],
        manifest: &[u8],
        tag: Option<&str>,
    ) -> Result<Digest> {
        for b in blobs {
            self.store_blob(repo, b).await?;
        }
        let reference = match tag {
            Some(t) => Reference::Tag(
                t.parse::<Tag>()
                    .map_err(|e| RegistryError::Invalid(e.to_string()))?,
            ),
            None => Reference::Digest(Digest::sha256_of(manifest)),
        };
        let pushed = self
            .put_manifest(
                repo,
                &reference,
                Some(OCI_MANIFEST),
                Bytes::copy_from_slice(manifest),
                &Actor::registry(),
            )
            .await?;
        Ok(pushed.digest)
    }
}
