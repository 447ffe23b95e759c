//! The audit log as the API reads it, and the policy in force: changing it,
//! reloading it, and keeping event delivery in step with its webhooks.

use std::path::Path;
use std::sync::Arc;

use super::{Registry, RegistryError, Result};
use crate::governance::events::ReceiverStatus;
use crate::governance::policy::Policy;
use crate::store::audit::{AuditPage, AuditQuery};
use crate::store::{Action, Actor, Change};

/// Writes `text` to `path` so that a crash leaves the old file or the new one.
fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("policy"),
        uuid::Uuid::new_v4().simple()
    ));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl Registry {
    /// Audit records after `after` that `query` accepts.
    pub async fn audit_page(
        &self,
        query: &AuditQuery,
        after: u64,
        limit: usize,
    ) -> Result<AuditPage> {
        Ok(self
            .meta
            .audit_page(query, after, limit.clamp(1, self.limits.max_page))
            .await?)
    }

    pub async fn audit_head(&self) -> Result<Option<(u64, String)>> {
        Ok(self.meta.audit_head().await?)
    }

    /// Changes to the audit log, for event streams.
    pub fn audit_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.meta.changes()
    }

    /// Puts a new policy in force: parsed and checked whole first (a bad one
    /// changes nothing), kept in the policy file, audited. `expected` is the
    /// SHA-256 of the policy the caller edited (`If-Match`).
    pub async fn set_policy(
        &self,
        text: &str,
        expected: Option<&str>,
        actor: &Actor,
    ) -> Result<Arc<Policy>> {
        let current = self.governance.policy();
        if expected.is_some_and(|e| e != current.sha256) {
            return Err(RegistryError::TagStale {
                tag: "policy".to_string(),
                current: None,
            });
        }
        let path = self.governance.settings.policy_path.as_deref();
        let dir = path.and_then(Path::parent);
        let policy = Policy::parse(text, "from the API", dir)
            .map_err(|e| RegistryError::PolicyInvalid(e.to_string()))?;
        if let Some(path) = path {
            write_atomically(path, text).map_err(|e| {
                RegistryError::Store(crate::store::StoreError::Io(std::io::Error::new(
                    e.kind(),
                    format!("writing the policy to {}: {e}", path.display()),
                )))
            })?;
        }
        self.put_policy_in_force(policy, &current, actor, "api")
            .await
    }

    /// Reads the policy file again (SIGHUP). A bad file is refused with the
    /// error and the policy in force stays; an unchanged one changes nothing.
    pub async fn reload_policy(&self) -> Result<bool> {
        let Some(path) = self.governance.settings.policy_path.clone() else {
            return Ok(false);
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => {
                return Err(RegistryError::PolicyInvalid(format!(
                    "cannot read {}: {e}",
                    path.display()
                )));
            }
        };
        let current = self.governance.policy();
        let policy = Policy::parse(&text, &path.display().to_string(), path.parent())
            .map_err(|e| RegistryError::PolicyInvalid(e.to_string()))?;
        if policy.sha256 == current.sha256 {
            return Ok(false);
        }
        self.put_policy_in_force(policy, &current, &Actor::registry(), "reload")
            .await?;
        Ok(true)
    }

    async fn put_policy_in_force(
        &self,
        policy: Policy,
        before: &Policy,
        actor: &Actor,
        how: &str,
    ) -> Result<Arc<Policy>> {
        if policy.sha256 != before.sha256 {
            let change = Change::new(actor, Action::PolicyChange).details(serde_json::json!({
                "sha256": policy.sha256,
                "previous_sha256": before.sha256,
                "via": how,
                "text": policy.text,
            }));
            self.meta.record(change).await?;
        }
        self.governance.set_policy(policy);
        self.sync_deliveries();
        Ok(self.governance.policy())
    }

    /// Starts or stops event delivery to match the policy's webhooks.
    pub fn sync_deliveries(&self) {
        let g = &self.governance;
        g.deliveries.sync(
            &g.policy().webhooks,
            &self.meta,
            &g.http,
            &g.settings.event_source,
        );
    }

    pub fn delivery_status(&self) -> std::collections::BTreeMap<String, ReceiverStatus> {
        self.governance.deliveries.status.snapshot()
    }
}
