//! Parses `/api/v1/...` paths once into a typed `ApiEndpoint`. Model names contain
//! slashes, so the kind of endpoint is decided from the end of the path; a last
//! segment `versions` or `compare` always names the listing or comparison.

use crate::http::endpoint::decode_segments;

use crate::oci::{NameError, Reference, RepoName};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiEndpoint {
    /// `/api/v1/models`
    Models,
    /// `/api/v1/models/<name>/versions`
    Versions { repo: RepoName },
    /// `/api/v1/models/<name>/versions/<tag or digest>`
    Version {
        repo: RepoName,
        reference: Reference,
    },
    /// `/api/v1/models/<name>/compare`
    Compare { repo: RepoName },
}

#[derive(Debug, thiserror::Error)]
pub enum ApiEndpointError {
    #[error("no such endpoint")]
    NotFound,
    #[error("invalid model name: {0}")]
    Name(NameError),
    #[error("invalid version reference: {0}")]
    Reference(NameError),
}

impl ApiEndpoint {
    /// Parses the path of a request (still percent-encoded).
    pub fn parse(path: &str) -> Result<ApiEndpoint, ApiEndpointError> {
        let rest = path
            .strip_prefix("/api/v1/models")
            .ok_or(ApiEndpointError::NotFound)?;
        if rest.is_empty() || rest == "/" {
            return Ok(ApiEndpoint::Models);
        }
        let rest = rest.strip_prefix('/').ok_or(ApiEndpointError::NotFound)?;
        let decoded = decode_segments(rest);
        let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let n = segs.len();
        let name_of = |k: usize| -> Result<RepoName, ApiEndpointError> {
            if k == 0 {
                return Err(ApiEndpointError::NotFound);
            }
            segs[..k].join("/").parse().map_err(ApiEndpointError::Name)
        };
        match segs[n - 1] {
            "versions" => Ok(ApiEndpoint::Versions {
                repo: name_of(n - 1)?,
            }),
            "compare" => Ok(ApiEndpoint::Compare {
                repo: name_of(n - 1)?,
            }),
            last if n >= 3 && segs[n - 2] == "versions" => Ok(ApiEndpoint::Version {
                repo: name_of(n - 2)?,
                reference: last.parse().map_err(ApiEndpointError::Reference)?,
            }),
            _ => Err(ApiEndpointError::NotFound),
        }
    }

    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            ApiEndpoint::Models => None,
            ApiEndpoint::Versions { repo }
            | ApiEndpoint::Version { repo, .. }
            | ApiEndpoint::Compare { repo } => Some(repo),
        }
    }

    /// A low-cardinality route name for logs and metrics.
    pub fn route(&self) -> &'static str {
        match self {
            ApiEndpoint::Models => "api_models",
            ApiEndpoint::Versions { .. } => "api_versions",
            ApiEndpoint::Version { .. } => "api_version",
            ApiEndpoint::Compare { .. } => "api_compare",
        }
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
        assert_eq!(
            ApiEndpoint::parse("/api/v1/models").unwrap(),
            ApiEndpoint::Models
        );
        assert_eq!(
            ApiEndpoint::parse("/api/v1/models/").unwrap(),
            ApiEndpoint::Models
        );
        assert_eq!(
            ApiEndpoint::parse("/api/v1/models/a/b/c/versions").unwrap(),
            ApiEndpoint::Versions {
                repo: repo("a/b/c")
            }
        );
        assert_eq!(
            ApiEndpoint::parse("/api/v1/models/team/m/compare").unwrap(),
            ApiEndpoint::Compare {
                repo: repo("team/m")
            }
        );
        assert_eq!(
            ApiEndpoint::parse("/api/v1/models/team/m/versions/prod").unwrap(),
            ApiEndpoint::Version {
                repo: repo("team/m"),
                reference: "prod".parse().unwrap()
            }
        );
        let by_digest = format!("/api/v1/models/m/versions/{}", D.replace(':', "%3A"));
        assert!(matches!(
            ApiEndpoint::parse(&by_digest).unwrap(),
            ApiEndpoint::Version { .. }
        ));
    }

    #[test]
    fn rejects_bad_paths() {
        for p in [
            "/api/v2/models",
            "/api/v1/other",
            "/api/v1/modelsx",
            "/api/v1/models/versions",
            "/api/v1/models/compare",
            "/api/v1/models/m",
            "/api/v1/models/m/unknown",
        ] {
            assert!(
                matches!(ApiEndpoint::parse(p), Err(ApiEndpointError::NotFound)),
                "{p}"
            );
        }
        for p in [
            "/api/v1/models/Bad/versions",
            "/api/v1/models/a//b/versions",
            "/api/v1/models/a%2Fb/versions",
        ] {
            assert!(
                matches!(ApiEndpoint::parse(p), Err(ApiEndpointError::Name(_))),
                "{p}"
            );
        }
        assert!(matches!(
            ApiEndpoint::parse("/api/v1/models/m/versions/-bad"),
            Err(ApiEndpointError::Reference(_))
        ));
        assert!(matches!(
            ApiEndpoint::parse("/api/v1/models/m/versions/sha256:xyz"),
            Err(ApiEndpointError::Reference(_))
        ));
    }
}
