//! A client for OCI registries (and Berth's API), used by the `berth` CLI.

pub mod download;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod source;
pub mod state;
pub mod transfer;
pub mod upload;
