//! Registry authentication as clients do it: send anonymously until the
//! registry answers 401, read its `WWW-Authenticate` challenge, then send Basic
//! credentials or fetch a Bearer token from the realm it names (with the
//! credentials `berth login`, docker, podman or oras stored), and ask again.
//! Both the OCI client (`Registry`) and the `/api/v1` client go through here.

pub mod challenge;
pub mod scope;
mod token;

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::{AUTHORIZATION, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Request, RequestBuilder, Response, StatusCode, Url};

use super::credentials::{Credential, Secret, Store};
pub use scope::Scopes;
use token::{Refusal, Token};

/// How a registry asked to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scheme {
    Basic,
    Bearer { realm: Url, service: Option<String> },
}

#[derive(Default)]
struct State {
    scheme: Option<Scheme>,
    /// Tokens fetched, newest last (a command talks to a handful of repositories).
    tokens: Vec<Token>,
    /// The scopes of the newest token, kept after it expires: a request that
    /// names none (an upload session's URL) renews the token for them.
    last_scopes: Scopes,
}

/// Where credentials come from: looked up once, at the first request (the
/// stored files and helpers), or given (`berth login`).
enum Source {
    Store(Store),
    Given,
}

struct Inner {
    base: Url,
    /// `host[:port]`: the key of the registry's credentials.
    host: String,
    http: reqwest::Client,
    source: Source,
    credential: tokio::sync::OnceCell<Option<Credential>>,
    state: Mutex<State>,
    /// The `GET /v2/` that learns the scheme before the first request, once.
    discovered: tokio::sync::OnceCell<()>,
    /// One token request at a time, so that parallel requests share one token.
    fetching: tokio::sync::Mutex<()>,
}

/// The authentication of one registry; clones share tokens.
#[derive(Clone)]
pub struct Auth {
    inner: Arc<Inner>,
}

/// The `host[:port]` of a URL, as credential files key registries.
pub fn host_key(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    }
}

fn same_origin(a: &Url, b: &Url) -> bool {
    a.scheme() == b.scheme()
        && a.host_str() == b.host_str()
        && a.port_or_known_default() == b.port_or_known_default()
}

impl Auth {
    /// The registry at `base`, with the credentials stored for it (if any).
    pub fn new(base: &Url, http: reqwest::Client) -> Auth {
        Self::build(base, http, Source::Store(Store::from_env()), None)
    }

    /// The registry at `base` with these credentials (`berth login` checks them).
    pub fn with_credential(base: &Url, http: reqwest::Client, credential: Credential) -> Auth {
        Self::build(base, http, Source::Given, Some(credential))
    }

    fn build(base: &Url, http: reqwest::Client, source: Source, given: Option<Credential>) -> Auth {
        let credential = match source {
            Source::Given => tokio::sync::OnceCell::new_with(Some(given)),
            Source::Store(_) => tokio::sync::OnceCell::new(),
        };
        Auth {
            inner: Arc::new(Inner {
                base: base.clone(),
                host: host_key(base),
                http,
                source,
                credential,
                state: Mutex::new(State::default()),
                discovered: tokio::sync::OnceCell::new(),
                fetching: tokio::sync::Mutex::new(()),
            }),
        }
    }

    pub fn host(&self) -> &str {
        &self.inner.host
    }

    async fn credential(&self) -> Result<Option<&Credential>> {
        let inner = &self.inner;
        let c = inner
            .credential
            .get_or_try_init(|| async {
                let Source::Store(store) = &inner.source else {
                    return Ok(None);
                };
                let (store, host) = (store.clone(), inner.host.clone());
                // Reading files and running helpers blocks: keep it off the runtime.
                tokio::task::spawn_blocking(move || store.get(&host))
                    .await
                    .context("looking up credentials")?
                    .with_context(|| format!("reading the stored credentials for {}", inner.host))
            })
            .await?;
        Ok(c.as_ref())
    }

    fn scheme(&self) -> Option<Scheme> {
        self.lock().scheme.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves plain data; go on with it.
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a request, authenticated as far as the registry has asked so far.
    /// On a 401 it learns the challenge and, if the request can be replayed
    /// (no streamed body), asks once more with credentials. `scopes` are what
    /// the request needs, for a Bearer token (empty: whatever the last token had).
    pub async fn send(&self, req: RequestBuilder, scopes: &Scopes, what: &str) -> Result<Response> {
        let mut request = req.build().with_context(|| what.to_string())?;
        // Credentials go to the registry's own origin only, never to a host an
        // upload Location or a redirect points at.
        if !same_origin(request.url(), &self.inner.base) {
            return self.execute(request, what).await;
        }
        // With credentials at hand, learn the scheme first: an endpoint open to
        // anyone (a listing narrowed to what the caller may see) never challenges,
        // and would otherwise always be asked anonymously.
        if self.scheme().is_none() && self.credential().await?.is_some() {
            self.discover().await?;
        }
        let replay = request.try_clone();
        self.authorize(&mut request, scopes, false).await?;
        let had_auth = request.headers().contains_key(AUTHORIZATION);
        let resp = self.execute(request, what).await?;
        // A 401 from where a redirect led (a storage bucket) is not the
        // registry's challenge: hand it back as it is.
        if resp.status() != StatusCode::UNAUTHORIZED || !same_origin(resp.url(), &self.inner.base) {
            return Ok(resp);
        }
        let asked = self.learn(&resp, what)?;
        if had_auth && self.scheme() == Some(Scheme::Basic) {
            return Err(self.refused(what, None).await);
        }
        let Some(mut retry) = replay else {
            bail!(
                "{what}: {} asked for authentication in the middle of a streamed upload; run the command again",
                self.inner.host
            );
        };
        let wanted = scopes.union(&asked);
        self.authorize(&mut retry, &wanted, true).await?;
        if !retry.headers().contains_key(AUTHORIZATION) {
            return Err(self.no_credentials(what));
        }
        let resp = self.execute(retry, what).await?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            // The token service may grant less than asked: that is a missing
            // permission, not a wrong password.
            if challenge_error(&resp).as_deref() == Some("insufficient_scope") {
                return Err(self.insufficient(what, &wanted).await);
            }
            return Err(self.refused(what, Some(&wanted)).await);
        }
        Ok(resp)
    }

    async fn execute(&self, request: Request, what: &str) -> Result<Response> {
        self.inner
            .http
            .execute(request)
            .await
            .with_context(|| what.to_string())
    }

    /// Learns how the registry authenticates (`GET /v2/`) and, for a Bearer
    /// registry, fetches the token for `scopes` now: requests whose bodies are
    /// streams cannot be replayed after a 401, so they must carry it from the start.
    pub async fn prepare(&self, scopes: &Scopes) -> Result<()> {
        self.discover().await?;
        match self.scheme() {
            Some(Scheme::Bearer { .. }) => {
                self.bearer(scopes, false, "authorizing").await?;
            }
            Some(Scheme::Basic) if self.credential().await?.is_none() => {
                return Err(self.no_credentials("authorizing"));
            }
            _ => {}
        }
        Ok(())
    }

    /// `GET /v2/` (once) to read the registry's challenge, if it has one there.
    async fn discover(&self) -> Result<()> {
        self.inner
            .discovered
            .get_or_try_init(|| async {
                if self.scheme().is_some() {
                    return Ok(());
                }
                let url = self.inner.base.join("v2/")?;
                let what = format!("GET {url}");
                let resp = self
                    .execute(self.inner.http.get(url).build()?, &what)
                    .await?;
                // Open to anonymous clients at least there: learn the rest on a 401.
                if resp.status() == StatusCode::UNAUTHORIZED {
                    self.learn(&resp, &what)?;
                }
                Ok::<_, anyhow::Error>(())
            })
            .await?;
        Ok(())
    }

    /// Checks the given credentials against the registry (for `berth login`):
    /// `GET /v2/`, following its challenge; a registry that does not ask is
    /// sent Basic credentials directly, which it must refuse if they are wrong.
    pub async fn verify(&self) -> Result<()> {
        let url = self.inner.base.join("v2/")?;
        let what = format!("GET {url}");
        let resp = self
            .send(self.inner.http.get(url.clone()), &Scopes::default(), &what)
            .await?;
        if resp.status().is_success() && self.scheme().is_none() {
            self.lock().scheme = Some(Scheme::Basic);
            let resp = self
                .send(self.inner.http.get(url), &Scopes::default(), &what)
                .await?;
            if !resp.status().is_success() {
                bail!("{what}: {}", resp.status());
            }
            return Ok(());
        }
        if !resp.status().is_success() {
            bail!("{what}: {}", resp.status());
        }
        Ok(())
    }

    /// Adds the `Authorization` the registry asked for, if there are credentials
    /// (or, for Bearer, an anonymous token). `fresh` fetches a new token even if
    /// one is held (the registry just refused the one sent).
    async fn authorize(&self, request: &mut Request, scopes: &Scopes, fresh: bool) -> Result<()> {
        let value = match self.scheme() {
            None => return Ok(()),
            Some(Scheme::Basic) => {
                let Some(c) = self.credential().await? else {
                    return Ok(());
                };
                let Secret::Password(p) = &c.secret else {
                    bail!(
                        "{} asks for a password, and the credentials in {} are an identity token; run `berth login {}`",
                        self.inner.host,
                        c.source,
                        self.inner.host
                    );
                };
                basic(&c.username, p)
            }
            Some(Scheme::Bearer { .. }) => match self.bearer(scopes, fresh, "").await? {
                Some(t) => format!("Bearer {t}"),
                None => return Ok(()),
            },
        };
        let mut v = HeaderValue::from_str(&value).map_err(|_| {
            anyhow!(
                "the credentials for {} are not valid in a header",
                self.inner.host
            )
        })?;
        v.set_sensitive(true);
        request.headers_mut().insert(AUTHORIZATION, v);
        Ok(())
    }

    /// A token for `scopes` (held or fetched); `None` when there is nothing to
    /// ask with (no scopes and no credentials).
    async fn bearer(&self, scopes: &Scopes, fresh: bool, what: &str) -> Result<Option<String>> {
        let Some(Scheme::Bearer { realm, service }) = self.scheme() else {
            return Ok(None);
        };
        let last = self.lock().last_scopes.clone();
        let scopes = if scopes.is_empty() { &last } else { scopes };
        if !fresh && let Some(t) = self.held(&realm, &service, scopes) {
            return Ok(Some(t));
        }
        let _one_at_a_time = self.inner.fetching.lock().await;
        if !fresh && let Some(t) = self.held(&realm, &service, scopes) {
            return Ok(Some(t));
        }
        let credential = self.credential().await?;
        if scopes.is_empty() && credential.is_none() {
            return Ok(None);
        }
        match token::fetch(
            &self.inner.http,
            &realm,
            service.as_deref(),
            scopes,
            credential,
        )
        .await
        {
            Ok(t) => {
                let value = t.value.clone();
                let mut state = self.lock();
                state
                    .tokens
                    .retain(|old| old.fresh() && old.scopes != t.scopes);
                state.last_scopes = t.scopes.clone();
                state.tokens.push(t);
                Ok(Some(value))
            }
            Err(Refusal::Other(e)) => Err(e),
            Err(Refusal::Refused(status, body)) => {
                let host = &self.inner.host;
                let mut msg = match credential {
                    Some(c) => format!(
                        "{host} refused the credentials of {:?} (from {}): the token service {realm} answered {status}",
                        c.username, c.source
                    ),
                    None => format!(
                        "{host} requires authentication: the token service {realm} refused an anonymous token ({status}); run `berth login {host}`"
                    ),
                };
                if !body.is_empty() {
                    msg.push_str(&format!(": {body}"));
                }
                if credential.is_some() {
                    msg.push_str(&format!("\nCheck them with `berth login {host}`."));
                }
                if !what.is_empty() {
                    msg = format!("{what}: {msg}");
                }
                Err(anyhow!(msg))
            }
        }
    }

    /// A held, unexpired token of `realm` covering `scopes`; with no scopes, the newest one.
    fn held(&self, realm: &Url, service: &Option<String>, scopes: &Scopes) -> Option<String> {
        let mut state = self.lock();
        state.tokens.retain(Token::fresh);
        state
            .tokens
            .iter()
            .rev()
            .filter(|t| &t.realm == realm && &t.service == service)
            .find(|t| t.scopes.covers(scopes))
            .map(|t| t.value.clone())
    }

    /// Reads the challenge of a 401 and remembers the scheme; returns the scopes it asks for.
    fn learn(&self, resp: &Response, what: &str) -> Result<Scopes> {
        let mut challenges = Vec::new();
        for v in resp.headers().get_all(WWW_AUTHENTICATE) {
            let text = v
                .to_str()
                .map_err(|_| anyhow!("{what}: the WWW-Authenticate header is not text"))?;
            challenges.extend(challenge::parse(text).with_context(|| what.to_string())?);
        }
        let bearer = challenges
            .iter()
            .find(|c| c.scheme == "bearer" && c.param("realm").is_some());
        let (scheme, scopes) = if let Some(c) = bearer {
            let realm = token::check_realm(c.param("realm").unwrap_or_default(), &self.inner.base)
                .with_context(|| what.to_string())?;
            let scheme = Scheme::Bearer {
                realm,
                service: c.param("service").map(str::to_string),
            };
            (scheme, Scopes::parse(c.param("scope").unwrap_or_default()))
        } else if challenges.iter().any(|c| c.scheme == "basic") {
            (Scheme::Basic, Scopes::default())
        } else if challenges.is_empty() {
            bail!(
                "{what}: {} answered 401 Unauthorized without a WWW-Authenticate challenge",
                self.inner.host
            );
        } else {
            let names: Vec<&str> = challenges.iter().map(|c| c.scheme.as_str()).collect();
            bail!(
                "{what}: {} asks for authentication by {}, which berth does not speak (it speaks Basic and Bearer)",
                self.inner.host,
                names.join(", ")
            );
        };
        self.lock().scheme = Some(scheme);
        Ok(scopes)
    }

    fn no_credentials(&self, what: &str) -> anyhow::Error {
        let host = &self.inner.host;
        anyhow!(
            "{what}: {host} requires authentication (401 Unauthorized) and no credentials for it are stored; run `berth login {host}`"
        )
    }

    async fn insufficient(&self, what: &str, scopes: &Scopes) -> anyhow::Error {
        let host = &self.inner.host;
        match self.credential().await {
            Ok(Some(c)) => anyhow!(
                "{what}: {host} does not grant {:?} {scopes} (the credentials, from {}, are good; the permission is missing)",
                c.username,
                c.source
            ),
            _ => self.no_credentials(what),
        }
    }

    async fn refused(&self, what: &str, scopes: Option<&Scopes>) -> anyhow::Error {
        let host = &self.inner.host;
        let who = match self.credential().await {
            Ok(Some(c)) => format!("the credentials of {:?} (from {})", c.username, c.source),
            _ => return self.no_credentials(what),
        };
        let scope = scopes
            .filter(|s| !s.is_empty())
            .map(|s| format!(" for {s}"))
            .unwrap_or_default();
        anyhow!(
            "{what}: {host} refused {who}{scope} (401 Unauthorized); check them with `berth login {host}`"
        )
    }
}

/// The `error` parameter of a response's Bearer challenge (`insufficient_scope`,
/// `invalid_token`).
fn challenge_error(resp: &Response) -> Option<String> {
    resp.headers()
        .get_all(WWW_AUTHENTICATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| challenge::parse(v).ok())
        .flatten()
        .find(|c| c.scheme == "bearer")
        .and_then(|c| c.param("error").map(str::to_string))
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let raw = format!("{user}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

#[cfg(test)]
mod tests;
