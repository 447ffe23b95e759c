//! Registry tokens (the Docker registry token spec): short-lived JWTs, signed
//! with HMAC-SHA256 by the registry that checks them, carrying who asked and
//! the scopes granted — already downgraded to what that one may have.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::http::access::{Action, REGISTRY_SCOPE_NAME, Scope};
use crate::oci::RepoName;

/// The issuer of Berth's tokens.
const ISSUER: &str = "berth";
/// Most scopes one token request may ask for.
pub const MAX_SCOPES: usize = 64;

/// One entry of a token's `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessEntry {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub iss: String,
    /// The user or robot name; empty for an anonymous token.
    pub sub: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
    pub jti: String,
    pub access: Vec<AccessEntry>,
    /// `user`, `robot` or `anonymous`.
    pub kind: String,
}

/// One `scope` a client asked for, parsed: `repository:NAME:ACTIONS` (name may
/// not hold `:`), `registry:catalog:*`, `registry:berth:admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requested {
    /// `None`: the registry itself.
    pub repo: Option<RepoName>,
    pub actions: Vec<Action>,
    /// `registry:catalog:*`: granted to anyone who asks (the catalog shows
    /// only what the caller may pull), carried so the client sees it.
    pub catalog: bool,
}

/// Parses one scope; `None` for a type, name or action this registry does not
/// know (such a scope is left out of the token, as the spec says).
pub fn parse_scope(s: &str) -> Option<Requested> {
    let (kind, rest) = s.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    match kind {
        "repository" => {
            let repo: RepoName = name.parse().ok()?;
            let actions = actions
                .split(',')
                .flat_map(|a| match a {
                    // `*` asks for everything on the repository.
                    "*" => vec![
                        Action::Pull,
                        Action::Push,
                        Action::Delete,
                        Action::Promote(None),
                        Action::Approve,
                    ],
                    a => Action::parse(a).into_iter().collect(),
                })
                .filter(|a| *a != Action::Admin)
                .collect();
            Some(Requested {
                repo: Some(repo),
                actions,
                catalog: false,
            })
        }
        "registry" if name == "catalog" => Some(Requested {
            repo: None,
            actions: Vec::new(),
            catalog: true,
        }),
        "registry" if name == REGISTRY_SCOPE_NAME => Some(Requested {
            repo: None,
            actions: actions
                .split(',')
                .filter(|a| *a == "admin" || *a == "*")
                .map(|_| Action::Admin)
                .take(1)
                .collect(),
            catalog: false,
        }),
        _ => None,
    }
}

/// The keys that sign and check tokens, and what a token must say.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    service: String,
    lifetime: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("invalid token: {0}")]
    Invalid(String),
    #[error("the token has expired")]
    Expired,
    #[error("signing the token: {0}")]
    Sign(String),
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenKeys {
    pub fn new(secret: &[u8], service: &str, lifetime: Duration) -> Result<TokenKeys, TokenError> {
        let encoding =
            EncodingKey::from_secret(secret).map_err(|e| TokenError::Sign(e.to_string()))?;
        let decoding =
            DecodingKey::from_secret(secret).map_err(|e| TokenError::Sign(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_audience(&[service]);
        validation.set_issuer(&[ISSUER]);
        // Issued and checked by the same clock: no leeway for skew.
        validation.leeway = 0;
        validation.validate_nbf = true;
        Ok(TokenKeys {
            encoding,
            decoding,
            validation,
            service: service.to_string(),
            lifetime,
        })
    }

    pub fn service(&self) -> &str {
        &self.service
    }

    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// A signed token for `sub` granting `access`; and its claims.
    pub fn issue(
        &self,
        sub: &str,
        kind: &str,
        access: Vec<AccessEntry>,
    ) -> Result<(String, Claims), TokenError> {
        let now = now_secs();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: sub.into(),
            aud: self.service.clone(),
            exp: now + self.lifetime.as_secs(),
            nbf: now,
            iat: now,
            jti: uuid::Uuid::new_v4().simple().to_string(),
            access,
            kind: kind.into(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| TokenError::Sign(e.to_string()))?;
        Ok((token, claims))
    }

    /// The claims of a token this registry signed, unexpired, for this service.
    pub fn check(&self, token: &str) -> Result<Claims, TokenError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Invalid(e.to_string()),
            })
    }
}

/// The scopes a token's `access` claim grants (entries it does not know are ignored).
pub fn granted_scopes(access: &[AccessEntry]) -> Vec<Scope> {
    let mut out = Vec::new();
    for e in access {
        let repo = match e.kind.as_str() {
            "repository" => match e.name.parse::<RepoName>() {
                Ok(r) => Some(r),
                Err(_) => continue,
            },
            "registry" if e.name == REGISTRY_SCOPE_NAME => None,
            _ => continue,
        };
        for a in &e.actions {
            if let Some(action) = Action::parse(a) {
                out.push(Scope {
                    repo: repo.clone(),
                    action,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            "berth",
            Duration::from_secs(60),
        )
        .unwrap()
    }

    #[test]
    fn scopes_parse_as_clients_send_them() {
        let r = parse_scope("repository:team/m:pull,push").unwrap();
        assert_eq!(r.repo.unwrap().as_str(), "team/m");
        assert_eq!(r.actions, vec![Action::Pull, Action::Push]);
        let r = parse_scope("repository:m:promote/prod,bogus,admin").unwrap();
        assert_eq!(
            r.actions,
            vec![Action::Promote(Some("prod".parse().unwrap()))]
        );
        assert!(parse_scope("registry:catalog:*").unwrap().catalog);
        assert_eq!(
            parse_scope("registry:berth:admin").unwrap().actions,
            vec![Action::Admin]
        );
        for bad in [
            "",
            "repository",
            "repository:m",
            "repository:../etc:pull",
            "repository:a//b:pull",
            "repository:UPPER:pull",
            "repository:a/%2e%2e/b:pull",
            "image:m:pull",
            "registry:other:admin",
        ] {
            assert!(
                parse_scope(bad).is_none_or(|r| r.actions.is_empty() && !r.catalog),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_token_checks_only_as_issued() {
        let k = keys();
        let access = vec![AccessEntry {
            kind: "repository".into(),
            name: "team/m".into(),
            actions: vec!["pull".into()],
        }];
        let (token, _) = k.issue("alice", "user", access.clone()).unwrap();
        let claims = k.check(&token).unwrap();
        assert_eq!(claims.sub, "alice");
        assert_eq!(granted_scopes(&claims.access).len(), 1);
        // Another secret, another service, a changed payload: refused.
        let other = TokenKeys::new(
            b"another secret of thirty-two by",
            "berth",
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(other.check(&token).is_err());
        let other = TokenKeys::new(
            b"0123456789abcdef0123456789abcdef",
            "elsewhere",
            Duration::from_secs(60),
        )
        .unwrap();
        assert!(other.check(&token).is_err());
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = parts[1].replace('A', "B");
        assert!(k.check(&parts.join(".")).is_err());
        assert!(k.check("not.a.token").is_err());
        // The "none" algorithm is never accepted.
        let none = format!(
            "{}.{}.",
            base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                br#"{"alg":"none","typ":"JWT"}"#
            ),
            token.split('.').nth(1).unwrap()
        );
        assert!(k.check(&none).is_err());
    }

    #[test]
    fn an_expired_token_is_refused() {
        let k = keys();
        let now = now_secs();
        let claims = Claims {
            iss: ISSUER.into(),
            sub: "alice".into(),
            aud: "berth".into(),
            exp: now - 60,
            nbf: now - 120,
            iat: now - 120,
            jti: "x".into(),
            access: vec![],
            kind: "user".into(),
        };
        let token =
            jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &k.encoding).unwrap();
        assert!(matches!(k.check(&token), Err(TokenError::Expired)));
    }
}
