//! Asking a token realm for a Bearer token (the registry token spec: `GET` with
//! `service` and repeated `scope` parameters, Basic credentials if any; the
//! OAuth2 `POST` form for a refresh token), and keeping tokens until shortly
//! before they expire.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{StatusCode, Url};
use serde::Deserialize;

use super::scope::Scopes;
use crate::client::credentials::{Credential, Secret};

/// Largest token answer read (JWTs are a few KiB).
const MAX_ANSWER: usize = 1 << 20;

/// Lifetime assumed when the answer names none (the token spec's default).
const DEFAULT_LIFETIME: u64 = 60;

/// The client id sent with OAuth2 requests, as docker sends its own name.
const CLIENT_ID: &str = "berth";

#[derive(Deserialize)]
struct Answer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A token and what it is good for.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub realm: Url,
    pub service: Option<String>,
    pub scopes: Scopes,
    pub valid_until: Instant,
}

impl Token {
    pub fn fresh(&self) -> bool {
        Instant::now() < self.valid_until
    }
}

/// Why a token request failed.
pub enum Refusal {
    /// The realm refused the credentials (or an anonymous request) with 401/403.
    Refused(StatusCode, String),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for Refusal {
    fn from(e: anyhow::Error) -> Refusal {
        Refusal::Other(e)
    }
}

/// Asks `realm` for a token for `scopes`.
pub async fn fetch(
    http: &reqwest::Client,
    realm: &Url,
    service: Option<&str>,
    scopes: &Scopes,
    credential: Option<&Credential>,
) -> Result<Token, Refusal> {
    let req = match credential.map(|c| (&c.username, &c.secret)) {
        Some((_, Secret::IdentityToken(refresh))) => {
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", refresh.clone()),
                ("client_id", CLIENT_ID.to_string()),
            ];
            if let Some(s) = service {
                form.push(("service", s.to_string()));
            }
            if !scopes.is_empty() {
                form.push(("scope", scopes.to_string()));
            }
            let body = form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form)
                .finish();
            http.post(realm.clone())
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/x-www-form-urlencoded",
                )
                .body(body)
        }
        other => {
            let mut url = realm.clone();
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in scopes.items() {
                    q.append_pair("scope", &s);
                }
                if let Some((user, _)) = other {
                    q.append_pair("account", user);
                }
            }
            let req = http.get(url);
            match other {
                Some((user, Secret::Password(p))) => req.basic_auth(user, Some(p)),
                _ => req,
            }
        }
    };
    let what = format!("asking {realm} for a token");
    let mut resp = req.send().await.with_context(|| what.clone())?;
    let status = resp.status();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.with_context(|| what.clone())? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(anyhow!("{what}: the answer is larger than {MAX_ANSWER} bytes").into());
        }
        body.extend_from_slice(&chunk);
    }
    if matches!(status, StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN) {
        return Err(Refusal::Refused(status, snippet(&body)));
    }
    if !status.is_success() {
        let wait = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(|s| format!(" (retry after {s} s)"))
            .unwrap_or_default();
        return Err(anyhow!("{what}: {status}{wait}: {}", snippet(&body)).into());
    }
    let answer: Answer = serde_json::from_slice(&body)
        .with_context(|| format!("{what}: the answer is not token JSON"))?;
    let value = answer
        .token
        .or(answer.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| anyhow!("{what}: the answer has no token"))?;
    if reqwest::header::HeaderValue::from_str(&format!("Bearer {value}")).is_err() {
        return Err(anyhow!("{what}: the token is not a valid header value").into());
    }
    // Believe a short lifetime (a registry may issue them, against the spec's
    // advice): assuming more would send expired tokens.
    let lifetime = answer.expires_in.unwrap_or(DEFAULT_LIFETIME).max(1);
    // Renew a little before the end so that a request never carries a token that
    // expires on the way.
    let margin = (lifetime / 10).clamp(5, 30).min(lifetime / 2);
    Ok(Token {
        value,
        realm: realm.clone(),
        service: service.map(str::to_string),
        scopes: scopes.clone(),
        valid_until: Instant::now() + Duration::from_secs(lifetime - margin),
    })
}

/// The first part of an error body, as text.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
    text.trim().to_string()
}

/// Checks a realm a registry named: an absolute http(s) URL, and plain http
/// only when the registry itself is plain http.
pub fn check_realm(realm: &str, registry: &Url) -> Result<Url> {
    let url =
        Url::parse(realm).with_context(|| format!("the token realm {realm:?} is not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if registry.scheme() == "http" => {}
        "http" => bail!(
            "{registry} named the token realm {realm} over plain http; refusing to send credentials there"
        ),
        _ => bail!("the token realm {realm:?} is not an http(s) URL"),
    }
    Ok(url)
}
