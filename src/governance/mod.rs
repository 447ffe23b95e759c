//! Governance of tags: the policy (protected aliases, immutable tags, stages,
//! gates), gate evaluation, cosign-compatible signatures, the registry's signed
//! attestations of promotions, and events. HTTP-agnostic; the registry's use
//! cases drive it.

pub mod attest;
pub mod cosign;
pub mod events;
pub mod gates;
pub mod policy;
pub mod signing;

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use policy::Policy;
use signing::SigningKey;

use crate::store::TagPolicy;

/// Settings of governance that come from the server's configuration.
#[derive(Debug, Clone, Default)]
pub struct GovernanceSettings {
    /// Where the policy is kept: read at start and on reload, written by a
    /// policy change through the API.
    pub policy_path: Option<PathBuf>,
    /// Also store attestations under cosign's legacy `sha256-<hex>.att` tag.
    pub legacy_attestation_tags: bool,
    /// The CloudEvents `source` of every event.
    pub event_source: String,
}

/// The policy in force, the registry's own key, and what reaches out (webhooks).
pub struct Governance {
    policy: RwLock<Arc<Policy>>,
    pub key: SigningKey,
    pub http: reqwest::Client,
    pub settings: GovernanceSettings,
    pub deliveries: events::Deliveries,
}

impl Governance {
    pub fn new(policy: Policy, key: SigningKey, settings: GovernanceSettings) -> Governance {
        Governance {
            policy: RwLock::new(Arc::new(policy)),
            key,
            http: reqwest::Client::builder()
                .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default(),
            settings,
            deliveries: events::Deliveries::default(),
        }
    }

    /// The policy in force now.
    pub fn policy(&self) -> Arc<Policy> {
        match self.policy.read() {
            Ok(p) => p.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The policy as the store checks tag moves against it.
    pub fn tag_policy(&self) -> Arc<dyn TagPolicy> {
        self.policy()
    }

    /// Puts `policy` in force.
    pub fn set_policy(&self, policy: Policy) {
        let policy = Arc::new(policy);
        match self.policy.write() {
            Ok(mut p) => *p = policy,
            Err(poisoned) => *poisoned.into_inner() = policy,
        }
    }
}

/// Standard base64, as DSSE, bundles, cosign annotations and webhook
/// signatures write it.
pub fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes standard or URL-safe base64, padded or not (as sigstore readers do).
pub fn unb64(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    let t = text.trim();
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|e| e.decode(t).ok())
}
