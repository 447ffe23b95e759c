//! The registry's attestation of a tag move: an in-toto Statement v1 about the
//! promoted manifest, with Berth's promotion predicate, in a DSSE envelope signed
//! with the registry's key, wrapped as cosign v3 stores attestations (a sigstore
//! bundle v0.3 referrer) and, optionally, as a legacy `.att` layer.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::cosign::{self, Envelope, LegacyLayer};
use super::signing::{KeyError, SigningKey};
use crate::oci::{Descriptor, Digest};
use crate::store::HistoryEntry;

/// The predicate type of Berth's promotion attestations.
pub const PROMOTION_PREDICATE: &str = "https://berth.dev/attestation/promotion/v1";

/// The predicate: what moved where, by whom, when, why, on what evidence, and
/// the audit record that holds the move.
pub fn predicate(repo: &str, alias: &str, entry: &HistoryEntry) -> Value {
    json!({
        "repository": repo,
        "alias": alias,
        "kind": entry.kind,
        "digest": entry.target,
        "previous": entry.previous,
        "actor": entry.actor,
        "time": entry.time,
        "reason": entry.reason,
        "gates": entry.report,
        "audit": { "seq": entry.seq, "hash": entry.audit_hash },
    })
}

/// A signed attestation, ready to store.
pub struct Attestation {
    pub envelope: Envelope,
    /// The sigstore bundle (the referrer's one layer).
    pub bundle: Vec<u8>,
    /// The referrer manifest.
    pub manifest: Vec<u8>,
}

impl Attestation {
    /// Attests the move `entry` of `alias` in `repo` to `subject` (the target's descriptor).
    pub fn sign(
        key: &SigningKey,
        repo: &str,
        alias: &str,
        entry: &HistoryEntry,
        subject: &Descriptor,
    ) -> Result<Attestation, KeyError> {
        let statement = cosign::statement(
            Some(repo),
            &subject.digest,
            PROMOTION_PREDICATE,
            predicate(repo, alias, entry),
        );
        let envelope = Envelope::sign(key, cosign::IN_TOTO, &statement)?;
        let bundle = cosign::bundle(&envelope, key.hint());
        let manifest =
            cosign::bundle_manifest(subject, &bundle, PROMOTION_PREDICATE, &entry_created(entry));
        Ok(Attestation {
            envelope,
            bundle,
            manifest,
        })
    }

    /// The envelope as a legacy `.att` layer (its bytes and descriptor).
    pub fn legacy_layer(&self) -> (Vec<u8>, LegacyLayer) {
        let bytes = serde_json::to_vec(&self.envelope).unwrap_or_default();
        let layer = LegacyLayer {
            media_type: cosign::DSSE_ENVELOPE.into(),
            digest: Digest::sha256_of(&bytes),
            size: bytes.len() as u64,
            annotations: BTreeMap::from([
                (cosign::SIGNATURE_ANNOTATION.to_string(), String::new()),
                ("predicateType".to_string(), PROMOTION_PREDICATE.to_string()),
            ]),
        };
        (bytes, layer)
    }
}

/// The `org.opencontainers.image.created` of an attestation: the move's time,
/// in whole seconds as cosign writes it.
fn entry_created(entry: &HistoryEntry) -> String {
    match jiff::Timestamp::from_millisecond(entry.time_ms) {
        Ok(t) => t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
        Err(_) => entry.time.clone(),
    }
}
