//! Parses `/api/v1/...` paths once into a typed `ApiEndpoint`. Model names contain
//! slashes, so the kind of endpoint is decided from the end of the path; a last
//! segment `versions`, `compare` or `aliases` always names the listing or comparison.

use axum::http::Method;

use crate::http::access::{Action, Scope};
use crate::http::dispatch::Routed;
use crate::http::endpoint::decode_segments;

use crate::oci::{NameError, Reference, RepoName, Tag};

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
    /// `/api/v1/models/<name>/versions/<tag or digest>/approvals`
    Approvals {
        repo: RepoName,
        reference: Reference,
    },
    /// `/api/v1/models/<name>/versions/<tag or digest>/labels`
    Labels {
        repo: RepoName,
        reference: Reference,
    },
    /// `/api/v1/models/<name>/versions/<tag or digest>/labels/<key>`
    Label {
        repo: RepoName,
        reference: Reference,
        key: String,
    },
    /// `/api/v1/models/<name>/compare`
    Compare { repo: RepoName },
    /// `/api/v1/models/<name>/aliases`
    Aliases { repo: RepoName },
    /// `/api/v1/models/<name>/aliases/<alias>`
    Alias { repo: RepoName, alias: Tag },
    /// `/api/v1/models/<name>/aliases/<alias>/history`
    AliasHistory { repo: RepoName, alias: Tag },
    /// `/api/v1/models/<name>/aliases/<alias>/rollback`
    Rollback { repo: RepoName, alias: Tag },
    /// `/api/v1/policy`
    Policy,
    /// `/api/v1/signing-key`
    SigningKey,
    /// `/api/v1/audit`
    Audit,
    /// `/api/v1/audit/export`
    AuditExport,
    /// `/api/v1/events`
    Events,
    /// `/api/v1/events/deliveries`
    Deliveries,
    /// `/api/v1/whoami`: who the request proves it is.
    Whoami,
    /// `/api/v1/robots`
    Robots,
    /// `/api/v1/robots/<name>`
    Robot { name: String },
    /// `/api/v1/scrub`: re-hash every stored blob.
    Scrub,
    /// `/api/v1/storage`: bytes per repository and in total.
    Storage,
    /// `/api/v1/gc`: garbage collection.
    Gc,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiEndpointError {
    #[error("no such endpoint")]
    NotFound,
    #[error("invalid model name: {0}")]
    Name(NameError),
    #[error("invalid version reference: {0}")]
    Reference(NameError),
    #[error("invalid alias: {0}")]
    Alias(NameError),
    #[error("invalid robot name {0:?}: 1 to 64 of a-z, 0-9, . _ -")]
    Robot(String),
}

impl ApiEndpoint {
    /// Parses the path of a request (still percent-encoded).
    pub fn parse(path: &str) -> Result<ApiEndpoint, ApiEndpointError> {
        let rest = path
            .strip_prefix("/api/v1/")
            .ok_or(ApiEndpointError::NotFound)?;
        match rest.trim_end_matches('/') {
            "policy" => return Ok(ApiEndpoint::Policy),
            "signing-key" => return Ok(ApiEndpoint::SigningKey),
            "audit" => return Ok(ApiEndpoint::Audit),
            "audit/export" => return Ok(ApiEndpoint::AuditExport),
            "events" => return Ok(ApiEndpoint::Events),
            "events/deliveries" => return Ok(ApiEndpoint::Deliveries),
            "models" => return Ok(ApiEndpoint::Models),
            "whoami" => return Ok(ApiEndpoint::Whoami),
            "robots" => return Ok(ApiEndpoint::Robots),
            "scrub" => return Ok(ApiEndpoint::Scrub),
            "storage" => return Ok(ApiEndpoint::Storage),
            "gc" => return Ok(ApiEndpoint::Gc),
            r => {
                if let Some(name) = r.strip_prefix("robots/") {
                    if !crate::auth::valid_robot_name(name) {
                        return Err(ApiEndpointError::Robot(name.chars().take(64).collect()));
                    }
                    return Ok(ApiEndpoint::Robot {
                        name: name.to_string(),
                    });
                }
            }
        }
        let rest = rest
            .strip_prefix("models/")
            .ok_or(ApiEndpointError::NotFound)?;
        let decoded = decode_segments(rest);
        let segs: Vec<&str> = decoded.iter().map(String::as_str).collect();
        let n = segs.len();
        let name_of = |k: usize| -> Result<RepoName, ApiEndpointError> {
            if k == 0 {
                return Err(ApiEndpointError::NotFound);
            }
            segs[..k].join("/").parse().map_err(ApiEndpointError::Name)
        };
        let reference = |s: &str| -> Result<Reference, ApiEndpointError> {
            s.parse().map_err(ApiEndpointError::Reference)
        };
        let alias = |s: &str| -> Result<Tag, ApiEndpointError> {
            s.parse().map_err(ApiEndpointError::Alias)
        };
        let at = |i: usize, word: &str| n > i && segs[n - 1 - i] == word;
        // Decided from the end: a last segment `versions`, `compare` or `aliases`
        // always names the listing.
        if at(0, "versions") {
            return Ok(ApiEndpoint::Versions {
                repo: name_of(n - 1)?,
            });
        }
        if at(0, "compare") {
            return Ok(ApiEndpoint::Compare {
                repo: name_of(n - 1)?,
            });
        }
        if at(0, "aliases") {
            return Ok(ApiEndpoint::Aliases {
                repo: name_of(n - 1)?,
            });
        }
        if n >= 5 && at(3, "versions") && at(1, "labels") {
            return Ok(ApiEndpoint::Label {
                repo: name_of(n - 4)?,
                reference: reference(segs[n - 3])?,
                key: segs[n - 1].to_string(),
            });
        }
        if n >= 4 && at(2, "versions") && (at(0, "approvals") || at(0, "labels")) {
            let (repo, reference) = (name_of(n - 3)?, reference(segs[n - 2])?);
            return Ok(if at(0, "approvals") {
                ApiEndpoint::Approvals { repo, reference }
            } else {
                ApiEndpoint::Labels { repo, reference }
            });
        }
        if n >= 4 && at(2, "aliases") && (at(0, "history") || at(0, "rollback")) {
            let (repo, a) = (name_of(n - 3)?, alias(segs[n - 2])?);
            return Ok(if at(0, "history") {
                ApiEndpoint::AliasHistory { repo, alias: a }
            } else {
                ApiEndpoint::Rollback { repo, alias: a }
            });
        }
        if n >= 3 && at(1, "aliases") {
            return Ok(ApiEndpoint::Alias {
                repo: name_of(n - 2)?,
                alias: alias(segs[n - 1])?,
            });
        }
        if n >= 3 && at(1, "versions") {
            return Ok(ApiEndpoint::Version {
                repo: name_of(n - 2)?,
                reference: reference(segs[n - 1])?,
            });
        }
        Err(ApiEndpointError::NotFound)
    }

    /// The methods this endpoint answers, for the `Allow` of a 405.
    pub fn allowed_methods(&self) -> &'static str {
        use ApiEndpoint as E;
        match self {
            E::Version { .. } => "GET, HEAD, DELETE",
            E::Approvals { .. } => "GET, HEAD, POST",
            E::Labels { .. } => "GET, HEAD, PATCH",
            E::Label { .. } => "PUT, DELETE",
            E::Alias { .. } => "GET, HEAD, PUT, DELETE",
            E::Rollback { .. } => "POST",
            E::Policy => "GET, HEAD, PUT",
            E::Robots => "GET, HEAD, POST",
            E::Robot { .. } => "GET, HEAD, DELETE",
            E::Scrub | E::Gc => "POST",
            _ => "GET, HEAD",
        }
    }
}

impl Routed for ApiEndpoint {
    fn repo(&self) -> Option<&RepoName> {
        use ApiEndpoint as E;
        match self {
            E::Versions { repo }
            | E::Version { repo, .. }
            | E::Approvals { repo, .. }
            | E::Labels { repo, .. }
            | E::Label { repo, .. }
            | E::Compare { repo }
            | E::Aliases { repo }
            | E::Alias { repo, .. }
            | E::AliasHistory { repo, .. }
            | E::Rollback { repo, .. } => Some(repo),
            E::Models
            | E::Policy
            | E::SigningKey
            | E::Audit
            | E::AuditExport
            | E::Events
            | E::Deliveries
            | E::Whoami
            | E::Robots
            | E::Robot { .. }
            | E::Scrub
            | E::Storage
            | E::Gc => None,
        }
    }

    /// A low-cardinality route name for logs and metrics.
    fn route(&self) -> &'static str {
        use ApiEndpoint as E;
        match self {
            E::Models => "api_models",
            E::Versions { .. } => "api_versions",
            E::Version { .. } => "api_version",
            E::Approvals { .. } => "api_approvals",
            E::Labels { .. } | E::Label { .. } => "api_labels",
            E::Compare { .. } => "api_compare",
            E::Aliases { .. } => "api_aliases",
            E::Alias { .. } => "api_alias",
            E::AliasHistory { .. } => "api_alias_history",
            E::Rollback { .. } => "api_rollback",
            E::Policy => "api_policy",
            E::SigningKey => "api_signing_key",
            E::Audit | E::AuditExport => "api_audit",
            E::Events => "api_events",
            E::Deliveries => "api_deliveries",
            E::Whoami => "api_whoami",
            E::Robots | E::Robot { .. } => "api_robots",
            E::Scrub => "api_scrub",
            E::Storage => "api_storage",
            E::Gc => "api_gc",
        }
    }

    /// What a method on this endpoint needs. The model list needs nothing (it
    /// shows only what the caller may pull), nor does the registry's public key;
    /// the policy, audit log and event stream are the registry's own (`admin`).
    fn needs(&self, method: &Method) -> Vec<Scope> {
        use ApiEndpoint as E;
        let read = method == Method::GET || method == Method::HEAD;
        if let E::Policy
        | E::Audit
        | E::AuditExport
        | E::Events
        | E::Deliveries
        | E::Robots
        | E::Robot { .. }
        | E::Scrub
        | E::Storage
        | E::Gc = self
        {
            return vec![Scope::registry(Action::Admin)];
        }
        let Some(repo) = self.repo() else {
            return Vec::new();
        };
        let action = match self {
            _ if read => Action::Pull,
            E::Alias { alias, .. } | E::Rollback { alias, .. } => {
                Action::Promote(Some(alias.clone()))
            }
            E::Approvals { .. } => Action::Approve,
            E::Version { .. } => Action::Delete,
            _ => Action::Push,
        };
        vec![Scope::repo(repo, action)]
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
            "/api/v1/policyx",
            "/api/v1/models/m/versions/v1/other",
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
        assert!(matches!(
            ApiEndpoint::parse("/api/v1/models/m/aliases/-bad"),
            Err(ApiEndpointError::Alias(_))
        ));
    }

    #[test]
    fn parses_governance_endpoints() {
        let prod = || "prod".parse::<Tag>().unwrap();
        let v1 = || "v1".parse::<Reference>().unwrap();
        let cases = [
            (
                "/api/v1/models/team/m/aliases",
                ApiEndpoint::Aliases {
                    repo: repo("team/m"),
                },
            ),
            (
                "/api/v1/models/team/m/aliases/prod",
                ApiEndpoint::Alias {
                    repo: repo("team/m"),
                    alias: prod(),
                },
            ),
            (
                "/api/v1/models/team/m/aliases/prod/history",
                ApiEndpoint::AliasHistory {
                    repo: repo("team/m"),
                    alias: prod(),
                },
            ),
            (
                "/api/v1/models/m/aliases/prod/rollback",
                ApiEndpoint::Rollback {
                    repo: repo("m"),
                    alias: prod(),
                },
            ),
            // An alias named like a sub-resource is still an alias.
            (
                "/api/v1/models/m/aliases/history",
                ApiEndpoint::Alias {
                    repo: repo("m"),
                    alias: "history".parse().unwrap(),
                },
            ),
            (
                "/api/v1/models/a/b/versions/v1/approvals",
                ApiEndpoint::Approvals {
                    repo: repo("a/b"),
                    reference: v1(),
                },
            ),
            (
                "/api/v1/models/a/versions/v1/labels",
                ApiEndpoint::Labels {
                    repo: repo("a"),
                    reference: v1(),
                },
            ),
            (
                "/api/v1/models/a/versions/v1/labels/status",
                ApiEndpoint::Label {
                    repo: repo("a"),
                    reference: v1(),
                    key: "status".into(),
                },
            ),
            ("/api/v1/policy", ApiEndpoint::Policy),
            ("/api/v1/signing-key", ApiEndpoint::SigningKey),
            ("/api/v1/audit", ApiEndpoint::Audit),
            ("/api/v1/audit/export", ApiEndpoint::AuditExport),
            ("/api/v1/events", ApiEndpoint::Events),
        ];
        for (path, want) in cases {
            assert_eq!(ApiEndpoint::parse(path).unwrap(), want, "{path}");
        }
    }

    #[test]
    fn each_method_needs_its_action() {
        let needs = |m: Method, p: &str| ApiEndpoint::parse(p).unwrap().needs(&m);
        let on = |a: Action| vec![Scope::repo(&repo("t/m"), a)];
        let prod = || Action::Promote(Some("prod".parse().unwrap()));
        let m = "/api/v1/models/t/m";
        assert!(needs(Method::GET, "/api/v1/models").is_empty());
        assert!(needs(Method::GET, "/api/v1/signing-key").is_empty());
        for read in [
            "/versions",
            "/versions/v1",
            "/compare",
            "/aliases/prod/history",
        ] {
            assert_eq!(needs(Method::GET, &format!("{m}{read}")), on(Action::Pull));
        }
        assert_eq!(needs(Method::PUT, &format!("{m}/aliases/prod")), on(prod()));
        assert_eq!(
            needs(Method::DELETE, &format!("{m}/aliases/prod")),
            on(prod())
        );
        assert_eq!(
            needs(Method::POST, &format!("{m}/aliases/prod/rollback")),
            on(prod())
        );
        assert_eq!(
            needs(Method::POST, &format!("{m}/versions/v1/approvals")),
            on(Action::Approve)
        );
        assert_eq!(
            needs(Method::DELETE, &format!("{m}/versions/v1")),
            on(Action::Delete)
        );
        assert_eq!(
            needs(Method::PATCH, &format!("{m}/versions/v1/labels")),
            on(Action::Push)
        );
        for admin in ["/api/v1/policy", "/api/v1/audit", "/api/v1/events"] {
            assert_eq!(
                needs(Method::GET, admin),
                vec![Scope::registry(Action::Admin)]
            );
        }
        assert_eq!(
            needs(Method::PUT, "/api/v1/policy"),
            vec![Scope::registry(Action::Admin)]
        );
        assert_eq!(
            needs(Method::POST, "/api/v1/scrub"),
            vec![Scope::registry(Action::Admin)]
        );
        assert_eq!(
            needs(Method::GET, "/api/v1/storage"),
            vec![Scope::registry(Action::Admin)]
        );
        assert_eq!(
            needs(Method::POST, "/api/v1/gc"),
            vec![Scope::registry(Action::Admin)]
        );
    }
}
