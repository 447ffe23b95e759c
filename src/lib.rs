//! Berth: a model registry that is an OCI registry.
//!
//! Layers, each depending only on those below it: `http` (axum edge) → `registry`
//! (use cases) → `store` (blob and metadata storage) → `oci` (pure types).

pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod governance;
pub mod http;
pub mod models;
pub mod oci;
pub mod registry;
pub mod server;
pub mod store;
