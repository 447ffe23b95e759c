//! Parses `/v2/...` paths once into a typed `Endpoint`. Repository names contain
//! slashes, so the kind of endpoint is decided from the end of the path.

use axum::http::Method;
use percent_encoding::percent_decode_str;

use super::access::{Action, Scope};
use super::dispatch::Routed;
use crate::oci::{Digest, NameError, Reference, RepoName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v2/`
    Base,
    /// `/v2/_catalog`
    Catalog,
    /// `/v2/<name>/tags/list`
    Tags { repo: RepoName },
    /// `/v2/<name>/manifests/<reference>`
    Manifest {
        repo: RepoName,
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`
    Blob { repo: RepoName, digest: Digest },
    /// `/v2/<name>/blobs/uploads/`
    UploadStart { repo: RepoName },
    /// `/v2/<name>/blobs/uploads/<id>`
    Upload { repo: RepoName, id: String },
    /// `/v2/<name>/referrers/<digest>`
    Referrers { repo: RepoName, subject: Digest },
}

#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    #[error("no such endpoint")]
    NotFound,
    #[error("invalid repository name: {0}")]
    Name(NameError),
    #[error("invalid digest: {0}")]
    Digest(NameError),
    #[error("invalid manifest reference: {0}")]
    Reference(NameError),
}

/// Splits a path on `/` and then percent-decodes each segment, so that an encoded
/// `/` never becomes a separator. A segment that decodes to one is kept encoded:
/// the `%` then makes it invalid under every grammar (name, digest, tag, upload id).
pub(super) fn decode_segments(path: &str) -> Vec<String> {
    path.split('/')
        .map(|raw| match percent_decode_str(raw).decode_utf8() {
            Ok(s) if !s.contains('/') => s.into_owned(),
            _ => raw.to_string(),
        })
        .collect()
}

impl Endpoint {
    /// Parses the path of a request (still percent-encoded).
    pub fn parse(path: &str) -> Result<Endpoint, EndpointError> {
        let rest = path.strip_prefix("/v2").ok_or(EndpointError::NotFound)?;
        if rest.is_empty() || rest == "/" {
            return Ok(Endpoint::Base);
        }
        let rest = rest.strip_prefix('/').ok_or(EndpointError::NotFound)?;
        if rest == "_catalog" {
            return Ok(Endpoint::Catalog);
        }
        let decoded = decode_segments(rest);
        let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let n = segs.len();
        let name_of = |k: usize| -> Result<RepoName, EndpointError> {
            if k == 0 {
                return Err(EndpointError::NotFound);
            }
            segs[..k].join("/").parse().map_err(EndpointError::Name)
        };
        let digest_of = |s: &str| -> Result<Digest, EndpointError> {
            s.parse::<Digest>()
                .map_err(|e| EndpointError::Digest(NameError::Digest(e)))
        };
        if n >= 3 && segs[n - 3] == "blobs" && segs[n - 2] == "uploads" {
            let repo = name_of(n - 3)?;
            let id = segs[n - 1];
            return Ok(if id.is_empty() {
                Endpoint::UploadStart { repo }
            } else {
                Endpoint::Upload {
                    repo,
                    id: id.to_string(),
                }
            });
        }
        if n < 3 {
            return Err(EndpointError::NotFound);
        }
        let (kind, last) = (segs[n - 2], segs[n - 1]);
        match kind {
            "blobs" if last == "uploads" => Ok(Endpoint::UploadStart {
                repo: name_of(n - 2)?,
            }),
            "blobs" => Ok(Endpoint::Blob {
                repo: name_of(n - 2)?,
                digest: digest_of(last)?,
            }),
            "manifests" => Ok(Endpoint::Manifest {
                repo: name_of(n - 2)?,
                reference: last.parse().map_err(EndpointError::Reference)?,
            }),
            "referrers" => Ok(Endpoint::Referrers {
                repo: name_of(n - 2)?,
                subject: digest_of(last)?,
            }),
            "tags" if last == "list" => Ok(Endpoint::Tags {
                repo: name_of(n - 2)?,
            }),
            _ => Err(EndpointError::NotFound),
        }
    }

    /// The methods this endpoint answers, for the `Allow` of a 405.
    pub fn allowed_methods(&self) -> &'static str {
        match self {
            Endpoint::Base
            | Endpoint::Catalog
            | Endpoint::Tags { .. }
            | Endpoint::Referrers { .. } => "GET, HEAD",
            Endpoint::Manifest { .. } => "GET, HEAD, PUT, DELETE",
            Endpoint::Blob { .. } => "GET, HEAD, DELETE",
            Endpoint::UploadStart { .. } => "POST",
            Endpoint::Upload { .. } => "GET, HEAD, PATCH, PUT, DELETE",
        }
    }
}

impl Routed for Endpoint {
    fn repo(&self) -> Option<&RepoName> {
        match self {
            Endpoint::Base | Endpoint::Catalog => None,
            Endpoint::Tags { repo }
            | Endpoint::Manifest { repo, .. }
            | Endpoint::Blob { repo, .. }
            | Endpoint::UploadStart { repo }
            | Endpoint::Upload { repo, .. }
            | Endpoint::Referrers { repo, .. } => Some(repo),
        }
    }

    /// A low-cardinality route name for logs and metrics.
    fn route(&self) -> &'static str {
        match self {
            Endpoint::Base => "base",
            Endpoint::Catalog => "catalog",
            Endpoint::Tags { .. } => "tags",
            Endpoint::Manifest { .. } => "manifest",
            Endpoint::Blob { .. } => "blob",
            Endpoint::UploadStart { .. } | Endpoint::Upload { .. } => "upload",
            Endpoint::Referrers { .. } => "referrers",
        }
    }

    /// What a method on this endpoint needs. The version check and the catalog
    /// need nothing (the catalog shows only what the caller may pull); a mount
    /// is honoured only from a repository the caller may pull, and otherwise
    /// falls back to an upload, as the spec allows.
    fn needs(&self, method: &Method) -> Vec<Scope> {
        let Some(repo) = self.repo() else {
            return Vec::new();
        };
        let action = match (self, method) {
            // Cancelling one's own upload is part of pushing.
            (Endpoint::UploadStart { .. } | Endpoint::Upload { .. }, _) => Action::Push,
            (_, &Method::DELETE) => Action::Delete,
            (_, &Method::PUT | &Method::POST | &Method::PATCH) => Action::Push,
            _ => Action::Pull,
        };
        vec![Scope::repo(repo, action)]
    }

    fn asks_who(&self) -> bool {
        matches!(self, Endpoint::Base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn repo(s: &str) -> RepoName {
        s.parse().unwrap()
    }

    #[test]
    fn parses_each_endpoint() {
        assert_eq!(Endpoint::parse("/v2/").unwrap(), Endpoint::Base);
        assert_eq!(Endpoint::parse("/v2").unwrap(), Endpoint::Base);
        assert_eq!(Endpoint::parse("/v2/_catalog").unwrap(), Endpoint::Catalog);
        assert_eq!(
            Endpoint::parse("/v2/a/b/c/tags/list").unwrap(),
            Endpoint::Tags {
                repo: repo("a/b/c")
            }
        );
        assert!(matches!(
            Endpoint::parse(&format!("/v2/a/blobs/{D}")).unwrap(),
            Endpoint::Blob { .. }
        ));
        assert!(matches!(
            Endpoint::parse(&format!("/v2/a/blobs/{}", D.replace(':', "%3A"))).unwrap(),
            Endpoint::Blob { .. }
        ));
        assert_eq!(
            Endpoint::parse("/v2/x/y/blobs/uploads/").unwrap(),
            Endpoint::UploadStart { repo: repo("x/y") }
        );
        assert_eq!(
            Endpoint::parse("/v2/x/blobs/uploads").unwrap(),
            Endpoint::UploadStart { repo: repo("x") }
        );
        assert_eq!(
            Endpoint::parse("/v2/x/blobs/uploads/abc").unwrap(),
            Endpoint::Upload {
                repo: repo("x"),
                id: "abc".into()
            }
        );
        assert!(matches!(
            Endpoint::parse("/v2/manifests/manifests/latest").unwrap(),
            Endpoint::Manifest { .. }
        ));
        assert!(matches!(
            Endpoint::parse(&format!("/v2/r/referrers/{D}")).unwrap(),
            Endpoint::Referrers { .. }
        ));
    }

    #[test]
    fn rejects_bad_paths() {
        assert!(matches!(
            Endpoint::parse("/v2/Upper/tags/list"),
            Err(EndpointError::Name(_))
        ));
        assert!(matches!(
            Endpoint::parse("/v2/a/../b/tags/list"),
            Err(EndpointError::Name(_))
        ));
        assert!(matches!(
            Endpoint::parse("/v2/a//b/tags/list"),
            Err(EndpointError::Name(_))
        ));
        assert!(matches!(
            Endpoint::parse("/v2/a/blobs/sha256:xyz"),
            Err(EndpointError::Digest(_))
        ));
        assert!(matches!(
            Endpoint::parse("/v2/a/manifests/-bad"),
            Err(EndpointError::Reference(_))
        ));
        assert!(matches!(
            Endpoint::parse("/v2/tags/list"),
            Err(EndpointError::NotFound)
        ));
        assert!(matches!(
            Endpoint::parse("/v2/a/unknown/x"),
            Err(EndpointError::NotFound)
        ));
        assert!(matches!(
            Endpoint::parse("/v3/a/tags/list"),
            Err(EndpointError::NotFound)
        ));
        let long = format!("/v2/{}/tags/list", "a".repeat(256));
        assert!(matches!(
            Endpoint::parse(&long),
            Err(EndpointError::Name(_))
        ));
    }

    #[test]
    fn each_method_needs_its_action() {
        let needs = |m: Method, p: &str| Endpoint::parse(p).unwrap().needs(&m);
        let on = |a: Action| vec![Scope::repo(&repo("a/b"), a)];
        assert!(needs(Method::GET, "/v2/").is_empty());
        assert!(needs(Method::GET, "/v2/_catalog").is_empty());
        assert_eq!(needs(Method::GET, "/v2/a/b/tags/list"), on(Action::Pull));
        assert_eq!(
            needs(Method::HEAD, "/v2/a/b/manifests/v1"),
            on(Action::Pull)
        );
        assert_eq!(needs(Method::PUT, "/v2/a/b/manifests/v1"), on(Action::Push));
        assert_eq!(
            needs(Method::DELETE, "/v2/a/b/manifests/v1"),
            on(Action::Delete)
        );
        let blob = format!("/v2/a/b/blobs/{D}");
        assert_eq!(needs(Method::GET, &blob), on(Action::Pull));
        assert_eq!(needs(Method::DELETE, &blob), on(Action::Delete));
        assert_eq!(
            needs(Method::POST, "/v2/a/b/blobs/uploads/"),
            on(Action::Push)
        );
        for m in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
            assert_eq!(needs(m, "/v2/a/b/blobs/uploads/x"), on(Action::Push));
        }
        let referrers = format!("/v2/a/b/referrers/{D}");
        assert_eq!(needs(Method::GET, &referrers), on(Action::Pull));
    }
}
