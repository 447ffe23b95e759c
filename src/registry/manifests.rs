//! Pushing, reading and deleting manifests; tags.

use bytes::Bytes;

use super::{Registry, RegistryError, Result};
use crate::oci::media::{self, ManifestKind};
use crate::oci::{Digest, ParsedManifest, Reference};
use crate::store::{
    Actor, Expect, ManifestPut, ManifestRecord, MoveKind, Required, StoreError, TagMove,
};

/// The result of a manifest push.
pub struct PushedManifest {
    pub digest: Digest,
    pub subject: Option<Digest>,
}

/// A manifest as read back: its record and its exact bytes.
pub struct StoredManifest {
    pub record: ManifestRecord,
    pub bytes: Bytes,
}

impl Registry {
    /// Validates and stores a manifest under `reference` (a tag or its digest).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        content_type: Option<&str>,
        body: Bytes,
        actor: &Actor,
    ) -> Result<PushedManifest> {
        if body.len() as u64 > self.limits.max_manifest_bytes {
            return Err(RegistryError::ManifestTooLarge(
                self.limits.max_manifest_bytes,
            ));
        }
        let parsed = ParsedManifest::parse(&body, content_type)?;
        let digest = match reference {
            Reference::Digest(expected) => {
                let actual = Digest::of(expected.algorithm(), &body);
                if &actual != expected {
                    return Err(RegistryError::DigestMismatch {
                        expected: expected.clone(),
                        actual,
                    });
                }
                actual
            }
            Reference::Tag(_) => Digest::sha256_of(&body),
        };
        if let Reference::Tag(t) = reference {
            self.precheck_push(repo, t.as_str(), &digest).await?;
        }
        let (need_blobs, need_manifests) = required_references(&parsed);
        let required = Required {
            blobs: &need_blobs,
            manifests: &need_manifests,
        };
        self.check_references(repo, required).await?;
        let model = self
            .model_record(repo, &parsed, &digest, body.len() as u64)
            .await?;
        // A stored copy that is missing or rotted is replaced by these bytes.
        let stored = match self
            .blobs
            .read_all(&digest, self.limits.max_manifest_bytes)
            .await
        {
            Ok(stored) => stored,
            Err(StoreError::Rotten { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        if stored.is_none() {
            self.blobs.write_all(&digest, body.clone()).await?;
        }
        let record = ManifestRecord {
            digest: digest.clone(),
            media_type: parsed.media_type,
            size: body.len() as u64,
            artifact_type: parsed.artifact_type,
            subject: parsed.subject.as_ref().map(|s| s.digest.clone()),
            annotations: parsed.annotations,
            references: parsed.references.iter().map(|d| d.digest.clone()).collect(),
            pushed_ms: jiff::Timestamp::now().as_millisecond(),
        };
        let tag = match reference {
            Reference::Tag(t) => Some(t.as_str()),
            Reference::Digest(_) => None,
        };
        // Checked again as it is stored: a delete may have come in between.
        let put = ManifestPut {
            repo,
            record: &record,
            tag,
            model: model.as_ref(),
            required,
            actor,
        };
        self.meta
            .put_manifest(put, self.governance.tag_policy())
            .await
            .map_err(|e| match e {
                StoreError::ReferenceMissing(d) => RegistryError::ManifestBlobUnknown(d),
                e => e.into(),
            })?;
        Ok(PushedManifest {
            digest,
            subject: record.subject,
        })
    }

    /// A push the policy will refuse is refused before its bytes are stored
    /// (a read; the store decides again as it moves the tag).
    async fn precheck_push(&self, repo: &str, tag: &str, digest: &Digest) -> Result<()> {
        let rule = self.governance.tag_policy().rule(repo, tag);
        if !rule.protected && !rule.immutable {
            return Ok(());
        }
        let current = self.meta.resolve_tag(repo, tag).await?;
        rule.check(repo, tag, MoveKind::Push, current.as_ref(), Some(digest))
            .map_err(|d| RegistryError::TagDenied(Box::new(d)))
    }

    /// Every reference in `required` must already be in the repository: a quick
    /// answer before the manifest's bytes are written (the store checks again).
    async fn check_references(&self, repo: &str, required: Required<'_>) -> Result<()> {
        for d in required.blobs {
            if self.meta.blob_link(repo, d).await?.is_none() {
                return Err(RegistryError::ManifestBlobUnknown(d.clone()));
            }
        }
        for d in required.manifests {
            if self.meta.manifest(repo, d).await?.is_none() {
                return Err(RegistryError::ManifestBlobUnknown(d.clone()));
            }
        }
        Ok(())
    }

    /// The digest a reference names in `repo`: itself, or what its tag points at.
    pub(super) async fn resolve(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<Option<Digest>> {
        Ok(match reference {
            Reference::Digest(d) => Some(d.clone()),
            Reference::Tag(t) => self.meta.resolve_tag(repo, t.as_str()).await?,
        })
    }

    /// Resolves a reference to a manifest record in `repo`.
    pub async fn manifest_record(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<ManifestRecord> {
        let unknown = || RegistryError::ManifestUnknown(reference.to_string());
        let digest = self.resolve(repo, reference).await?.ok_or_else(unknown)?;
        self.meta.manifest(repo, &digest).await?.ok_or_else(unknown)
    }

    /// A manifest's record, for `HEAD`: its stored copy must be there, of the
    /// recorded size (a `GET` also checks its digest).
    pub async fn head_manifest(&self, repo: &str, reference: &Reference) -> Result<ManifestRecord> {
        let record = self.manifest_record(repo, reference).await?;
        match self.check_stored_size(&record.digest, record.size).await {
            Ok(()) => Ok(record),
            Err(RegistryError::StoredCopyBad { digest, detail, .. }) => {
                Err(RegistryError::StoredCopyBad {
                    digest,
                    detail,
                    manifest: true,
                })
            }
            Err(RegistryError::BlobUnknown(_)) => {
                Err(RegistryError::ManifestUnknown(reference.to_string()))
            }
            Err(e) => Err(e),
        }
    }

    /// Reads a manifest's record and exact bytes, verified against its digest.
    pub async fn get_manifest(&self, repo: &str, reference: &Reference) -> Result<StoredManifest> {
        let record = self.manifest_record(repo, reference).await?;
        let bytes = match self
            .blobs
            .read_all(&record.digest, self.limits.max_manifest_bytes)
            .await
        {
            Ok(Some(bytes)) => bytes,
            Ok(None) => {
                tracing::error!(digest = %record.digest, repo, "manifest is recorded but its bytes are missing");
                return Err(RegistryError::ManifestUnknown(reference.to_string()));
            }
            Err(e) => return Err(self.on_rot(e, true).await),
        };
        Ok(StoredManifest { record, bytes })
    }

    /// Deletes a manifest by digest (with the tags pointing at it), or just a tag.
    pub async fn delete_manifest(
        &self,
        repo: &str,
        reference: &Reference,
        actor: &Actor,
    ) -> Result<()> {
        let policy = self.governance.tag_policy();
        let found = match reference {
            Reference::Digest(d) => self
                .meta
                .delete_manifest(repo, d, actor, policy)
                .await?
                .is_some(),
            Reference::Tag(t) => {
                let mut m = TagMove::new(repo, t.as_str(), None, MoveKind::Delete, actor);
                m.expect = Expect::Any;
                self.meta.move_tag(m, policy).await?.previous.is_some()
            }
        };
        if found {
            Ok(())
        } else {
            Err(RegistryError::ManifestUnknown(reference.to_string()))
        }
    }
}

/// What a manifest needs in its repository: every blob an image manifest names
/// (but foreign layers), every manifest an index names. A subject need not be.
fn required_references(m: &ParsedManifest) -> (Vec<Digest>, Vec<Digest>) {
    let digests = m.references.iter();
    match m.kind {
        ManifestKind::Image => (
            digests
                .filter(|d| !media::is_non_distributable(&d.media_type))
                .map(|d| d.digest.clone())
                .collect(),
            Vec::new(),
        ),
        ManifestKind::Index => (Vec::new(), digests.map(|d| d.digest.clone()).collect()),
    }
}
