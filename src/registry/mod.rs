//! Registry use cases, independent of HTTP: uploads, blobs, manifests, tags,
//! referrers, listings. Built on a `BlobStore` and a `MetaStore`.

mod accounts;
mod attest;
mod audit;
mod blobs;
mod error;
mod gc;
mod integrity;
mod listing;
mod manifests;
mod models;
mod promotion;
mod review;
mod storage;
mod uploads;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub use error::RegistryError;
pub use gc::{GcOptions, GcReport, GoneBlob, GoneManifest};
pub use integrity::{Rotten, ScrubOptions, ScrubProgress, ScrubReport, ScrubTurn};
pub use listing::ReferrersPage;
pub use manifests::{PushedManifest, StoredManifest};
pub use models::{ModelVersion, VersionPage};
pub use promotion::{AliasView, Promotion, PromotionRequest};
pub use review::{check_text, valid_label_key};
pub use storage::{RepoStorage, StorageReport, StorageTotal};
pub use uploads::{ChunkRange, MountOutcome};

use crate::governance::Governance;
use crate::store::{BlobStore, MetaStore};

/// Limits that protect the registry from oversized or abusive input.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Largest manifest accepted, in bytes.
    pub max_manifest_bytes: u64,
    /// Smallest chunk clients should send (`OCI-Chunk-Min-Length`); 0 means no
    /// minimum. Advertised, not enforced: the final chunk may have any length
    /// and a `PATCH` does not say whether it is the final one.
    pub chunk_min_length: u64,
    /// Largest page a listing returns, whatever `n` asks for.
    pub max_page: usize,
    /// An upload session idle this long (seconds since its last write) expires.
    pub upload_ttl_secs: u64,
    /// Most upload sessions one identity (or one anonymous client address) may
    /// have open at once.
    pub max_uploads_per_identity: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_manifest_bytes: 4 * 1024 * 1024,
            chunk_min_length: 0,
            max_page: 10_000,
            upload_ttl_secs: 24 * 3600,
            // A push runs a few uploads at once; hundreds open means sessions left behind.
            max_uploads_per_identity: 128,
        }
    }
}

pub struct Registry {
    blobs: Arc<dyn BlobStore>,
    meta: Arc<dyn MetaStore>,
    limits: Limits,
    governance: Governance,
    /// Locks of the upload sessions requests are working on (where a session
    /// stands is in its record).
    sessions: Mutex<HashMap<String, Arc<tokio::sync::Mutex<uploads::Session>>>>,
    /// Stored copies found failing verification and set aside.
    rot_found: prometheus_client::metrics::counter::Counter,
    /// Blob reads sent to the object store (presigned redirects).
    redirects: prometheus_client::metrics::counter::Counter,
    scrub_lock: Arc<tokio::sync::Mutex<()>>,
    gc_lock: tokio::sync::Mutex<()>,
    /// What garbage collection keeps unless a request says otherwise.
    gc: GcOptions,
    /// This process, as upload records name their writer.
    instance: String,
    /// The newest storage report, for `/metrics`.
    last_storage: Mutex<Option<Arc<StorageReport>>>,
}

pub type Result<T> = std::result::Result<T, RegistryError>;

impl Registry {
    pub fn new(
        blobs: Arc<dyn BlobStore>,
        meta: Arc<dyn MetaStore>,
        limits: Limits,
        governance: Governance,
    ) -> Self {
        Registry {
            blobs,
            meta,
            limits,
            governance,
            sessions: Mutex::new(HashMap::new()),
            rot_found: Default::default(),
            redirects: Default::default(),
            scrub_lock: Default::default(),
            gc_lock: Default::default(),
            last_storage: Mutex::new(None),
            gc: GcOptions::default(),
            instance: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Sets what garbage collection keeps by default.
    pub fn with_gc(mut self, gc: GcOptions) -> Self {
        self.gc = gc;
        self
    }

    pub fn gc_defaults(&self) -> &GcOptions {
        &self.gc
    }

    /// Counts blob GETs redirected to the object store (for `/metrics`).
    pub fn redirects(&self) -> prometheus_client::metrics::counter::Counter {
        self.redirects.clone()
    }

    /// Counts stored copies found failing verification (for `/metrics`).
    pub fn rot_found(&self) -> prometheus_client::metrics::counter::Counter {
        self.rot_found.clone()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn governance(&self) -> &Governance {
        &self.governance
    }

    /// Upload sessions this process holds state for.
    pub fn active_upload_sessions(&self) -> usize {
        self.sessions.lock().map(|s| s.len()).unwrap_or(0)
    }

    /// Checks that the metadata store answers (readiness).
    pub async fn ready(&self) -> Result<()> {
        self.meta.list_repos(None, 1).await?;
        Ok(())
    }
}
