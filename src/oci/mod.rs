//! Pure OCI types: digests, names and references, manifests and media types. No I/O.

pub mod digest;
pub mod manifest;
pub mod media;
pub mod name;

pub use digest::{Algorithm, Digest, DigestError, Hasher};
pub use manifest::{Descriptor, ManifestError, ParsedManifest};
pub use name::{NameError, Reference, RepoName, Tag};
