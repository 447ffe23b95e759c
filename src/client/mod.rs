//! A client for OCI registries (and Berth's API), used by the `berth` CLI.

pub mod reference;
