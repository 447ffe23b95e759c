//! References as users type them: `[REGISTRY/]NAME[:TAG][@DIGEST]`.

use std::fmt;

use crate::oci::{Digest, RepoName, Tag};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RefError {
    #[error("reference {0:?} has no repository name")]
    NoName(String),
    #[error("invalid repository name in {0:?}: {1}")]
    Name(String, String),
    #[error("invalid tag in {0:?}")]
    Tag(String),
    #[error("invalid digest in {0:?}: {1}")]
    Digest(String, String),
}

/// A parsed user reference. `registry` is `None` when the text named no host, in
/// which case the CLI's `--registry` applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRef {
    pub registry: Option<String>,
    pub name: RepoName,
    pub tag: Option<Tag>,
    pub digest: Option<Digest>,
}

impl ImageRef {
    /// The manifest reference to request: the digest if given, else the tag, else `latest`.
    pub fn reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.to_string(),
            (None, None) => "latest".to_string(),
        }
    }

    /// Parses `text`. The first path component is a registry host when it contains
    /// a `.` or a `:` or is `localhost` (the convention Docker and oras use).
    pub fn parse(text: &str) -> Result<ImageRef, RefError> {
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => (
                r,
                Some(
                    d.parse::<Digest>()
                        .map_err(|e| RefError::Digest(text.into(), e.to_string()))?,
                ),
            ),
            None => (text, None),
        };
        let (registry, path) = match rest.split_once('/') {
            Some((first, path))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (Some(first.to_string()), path)
            }
            _ => (None, rest),
        };
        // A tag follows the last ':' after the last '/'.
        let last_slash = path.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match path[last_slash..].rfind(':') {
            Some(i) => {
                let split = last_slash + i;
                let tag = path[split + 1..]
                    .parse::<Tag>()
                    .map_err(|_| RefError::Tag(text.into()))?;
                (&path[..split], Some(tag))
            }
            None => (path, None),
        };
        if name.is_empty() {
            return Err(RefError::NoName(text.into()));
        }
        let name = name
            .parse::<RepoName>()
            .map_err(|e| RefError::Name(text.into(), e.to_string()))?;
        Ok(ImageRef {
            registry,
            name,
            tag,
            digest,
        })
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(r) = &self.registry {
            write!(f, "{r}/")?;
        }
        write!(f, "{}", self.name)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// The base URL of a registry host: plain HTTP for loopback hosts (and when
/// `plain_http` is set), HTTPS otherwise. A value that already has a scheme is kept.
pub fn registry_url(host: &str, plain_http: bool) -> String {
    if host.starts_with("http://") || host.starts_with("https://") {
        return host.trim_end_matches('/').to_string();
    }
    let bare = host.rsplit_once(':').map_or(host, |(h, _)| h);
    let loopback = matches!(bare, "localhost" | "127.0.0.1" | "[::1]") || bare.starts_with("127.");
    let scheme = if plain_http || loopback {
        "http"
    } else {
        "https"
    };
    format!("{scheme}://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_references() {
        let r = ImageRef::parse("localhost:5000/team/model:v14").unwrap();
        assert_eq!(r.registry.as_deref(), Some("localhost:5000"));
        assert_eq!(r.name.as_str(), "team/model");
        assert_eq!(r.reference(), "v14");
        let r = ImageRef::parse("team/model").unwrap();
        assert_eq!(r.registry, None);
        assert_eq!(r.reference(), "latest");
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let r = ImageRef::parse(&format!("reg.example.com/m:1.4.0@{d}")).unwrap();
        assert_eq!(r.reference(), d);
        assert_eq!(r.to_string(), format!("reg.example.com/m:1.4.0@{d}"));
        assert!(ImageRef::parse("localhost:5000/").is_err());
        assert!(ImageRef::parse("Bad/Name").is_err());
        assert!(ImageRef::parse("m:-tag").is_err());
    }

    #[test]
    fn registry_urls() {
        assert_eq!(
            registry_url("localhost:5000", false),
            "http://localhost:5000"
        );
        assert_eq!(
            registry_url("127.0.0.1:5000", false),
            "http://127.0.0.1:5000"
        );
        assert_eq!(
            registry_url("reg.example.com", false),
            "https://reg.example.com"
        );
        assert_eq!(
            registry_url("reg.example.com", true),
            "http://reg.example.com"
        );
        assert_eq!(registry_url("http://x:1/", false), "http://x:1");
    }
}
