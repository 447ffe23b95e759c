//! Approvals and labels of versions, and deleting a version.

use std::collections::BTreeMap;

use super::{Registry, RegistryError, Result};
use crate::oci::{Digest, Reference, Tag};
use crate::store::{Actor, Approval};

/// Longest approval comment, label value and reason accepted.
pub const MAX_TEXT: usize = 4096;
const MAX_LABEL_KEY: usize = 128;

/// A label key: letters, digits, `.`, `_`, `-`, starting with a letter or digit.
pub fn valid_label_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_LABEL_KEY
        && key.as_bytes()[0].is_ascii_alphanumeric()
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Free text (a reason, a comment, a label value): bounded, without control
/// characters other than newlines and tabs.
pub fn check_text(what: &str, text: &str) -> Result<()> {
    if text.len() > MAX_TEXT {
        return Err(RegistryError::Invalid(format!(
            "{what} is longer than {MAX_TEXT} bytes"
        )));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(RegistryError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(())
}

impl Registry {
    /// The digest of a stored version, by tag or digest (404 otherwise).
    pub async fn version_digest(&self, repo: &str, reference: &Reference) -> Result<Digest> {
        let unknown = || RegistryError::ModelVersionUnknown(format!("{repo}:{reference}"));
        let digest = self.resolve(repo, reference).await?.ok_or_else(unknown)?;
        self.meta
            .manifest(repo, &digest)
            .await?
            .ok_or_else(unknown)?;
        Ok(digest)
    }

    /// Records `actor`'s approval of a version for `alias`.
    pub async fn approve(
        &self,
        repo: &str,
        reference: &Reference,
        alias: &str,
        comment: Option<&str>,
        actor: &Actor,
    ) -> Result<Approval> {
        alias
            .parse::<Tag>()
            .map_err(|e| RegistryError::Invalid(format!("alias {alias:?}: {e}")))?;
        if let Some(c) = comment {
            check_text("comment", c)?;
        }
        let digest = self.version_digest(repo, reference).await?;
        Ok(self
            .meta
            .approve(repo, &digest, alias, actor, comment)
            .await?)
    }

    pub async fn approvals(&self, repo: &str, reference: &Reference) -> Result<Vec<Approval>> {
        let digest = self.version_digest(repo, reference).await?;
        Ok(self.meta.approvals(repo, &digest).await?)
    }

    /// Sets (`Some`) or removes (`None`) labels, all or none; returns the
    /// labels after.
    pub async fn set_labels(
        &self,
        repo: &str,
        reference: &Reference,
        changes: &BTreeMap<String, Option<String>>,
        actor: &Actor,
    ) -> Result<BTreeMap<String, String>> {
        for (key, value) in changes {
            if !valid_label_key(key) {
                return Err(RegistryError::Invalid(format!(
                    "label key {key:?} must be 1 to {MAX_LABEL_KEY} letters, digits, '.', '_' or '-', starting with a letter or digit"
                )));
            }
            if let Some(v) = value {
                check_text("label value", v)?;
            }
        }
        let digest = self.version_digest(repo, reference).await?;
        self.meta.set_labels(repo, &digest, changes, actor).await?;
        Ok(self.meta.labels(repo, &digest).await?)
    }

    pub async fn labels(
        &self,
        repo: &str,
        reference: &Reference,
    ) -> Result<BTreeMap<String, String>> {
        let digest = self.version_digest(repo, reference).await?;
        Ok(self.meta.labels(repo, &digest).await?)
    }

    /// Deletes a version (its manifest, with every tag on it): refused while a
    /// protected alias or an immutable tag holds it.
    pub async fn delete_version(
        &self,
        repo: &str,
        reference: &Reference,
        actor: &Actor,
    ) -> Result<Digest> {
        let digest = self.version_digest(repo, reference).await?;
        self.delete_manifest(repo, &Reference::Digest(digest.clone()), actor)
            .await?;
        Ok(digest)
    }
}
