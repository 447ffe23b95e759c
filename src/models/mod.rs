//! The model view over OCI: the vocabulary Berth writes and reads (media types,
//! annotation keys), packaging, and the index of model versions.

pub mod compare;
pub mod config;
pub mod index;
pub mod pack;
pub mod query;
pub mod spec;
pub mod unpack;
