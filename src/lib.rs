//! Berth: a model registry that is an OCI registry.
