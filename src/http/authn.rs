//! Authentication at the HTTP edge: who a request's `Authorization` header
//! proves, the challenge a 401 carries, the registry token endpoint, and the
//! audit records of failed logins and denials.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, HOST, RETRY_AFTER, WWW_AUTHENTICATE,
};
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::App;
use super::access::{Action, Denial, Principal, PrincipalKind, Scope};
use super::actor::{ANONYMOUS, ClientAddr};
use super::dispatch::RouteName;
use super::error::ApiError;
use super::metrics::ReasonLabels;
use crate::auth::{AuthState, MetricsAccess, token};
use crate::store::{Actor, Change};

/// Where clients exchange credentials for a registry token.
pub const TOKEN_PATH: &str = "/v2/token";
/// Largest token request form read.
const MAX_FORM: usize = 64 << 10;
/// Denials recorded in the audit log per minute; more are logged and counted
/// only, so that a flood of bad logins cannot fill the log.
const AUDITED_PER_MINUTE: u32 = 60;

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok())
}

fn client_address(ext: &Extensions) -> Option<String> {
    ext.get::<ClientAddr>().map(|c| c.0.ip().to_string())
}

/// Who a request proves it is; `None` when it proves nothing.
pub(super) async fn proven(
    app: &App,
    state: &AuthState,
    parts: &Parts,
) -> Result<Option<Principal>, Denial> {
    let principal = app
        .auth
        .authenticate(
            state,
            authorization(&parts.headers),
            client_address(&parts.extensions),
        )
        .await;
    if let Err(d) = &principal {
        note_denial(app, None, client_address(&parts.extensions), d).await;
    }
    principal
}

/// What the request log says of who asked.
pub(super) fn auth_kind(p: &Principal) -> &'static str {
    match (p.kind, p.actor.name.as_str()) {
        (PrincipalKind::User, _) => "user",
        (PrincipalKind::Robot, _) => "robot",
        (PrincipalKind::Anonymous, ANONYMOUS) => "anonymous",
        (PrincipalKind::Anonymous, _) => "claimed",
    }
}

/// The host a client addressed, if it is a plain `host[:port]`: the token
/// realm is built from it, so that a client is sent back where it came.
fn request_host(parts: &Parts) -> Option<String> {
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| parts.headers.get(HOST)?.to_str().ok().map(str::to_string))?;
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    ok.then_some(host)
}

fn realm(app: &App, state: &AuthState, parts: &Parts) -> String {
    if let Some(r) = &state.settings.realm {
        return r.clone();
    }
    let host = request_host(parts).unwrap_or_else(|| "localhost".into());
    format!("{}://{host}{TOKEN_PATH}", app.auth.scheme)
}

/// The headers a denial's answer carries: the Bearer challenge of a 401
/// (RFC 6750, as the registry token spec writes it), `Retry-After` of a 429.
pub(super) fn denial_headers(
    app: &App,
    parts: &Parts,
    denial: &Denial,
) -> Vec<(axum::http::HeaderName, HeaderValue)> {
    let state = app.auth.current();
    let mut out = Vec::new();
    if let Denial::TooManyAttempts { retry_after_secs } = denial {
        out.push((RETRY_AFTER, HeaderValue::from(*retry_after_secs)));
    }
    if denial.is_unauthorized() {
        let mut c = format!(
            "Bearer realm=\"{}\",service=\"{}\"",
            realm(app, &state, parts),
            state.settings.service
        );
        if let Some(scope) = denial.scope() {
            c.push_str(&format!(",scope=\"{}\"", challenge_scope(scope)));
        }
        match denial {
            Denial::InsufficientScope { .. } => c.push_str(",error=\"insufficient_scope\""),
            Denial::Expired => c.push_str(",error=\"invalid_token\""),
            Denial::BadCredentials(_)
                if authorization(&parts.headers).is_some_and(|a| {
                    a.get(..7)
                        .is_some_and(|p| p.eq_ignore_ascii_case("bearer "))
                }) =>
            {
                c.push_str(",error=\"invalid_token\"")
            }
            _ => {}
        }
        if let Ok(v) = HeaderValue::from_str(&c) {
            out.push((WWW_AUTHENTICATE, v));
        }
    }
    out
}

/// The scope a challenge asks for. A pull or a push asks for both: clients
/// that keep the first token for every later request (the oras SDK fetches
/// one on its first `HEAD` of a blob and pushes with it) then hold the push
/// the caller may have; the token endpoint grants only what the rules allow,
/// so an anonymous or read-only caller still gets pull alone.
fn challenge_scope(scope: &Scope) -> String {
    match (&scope.repo, &scope.action) {
        (Some(repo), Action::Pull | Action::Push) => {
            format!("repository:{}:pull,push", repo.as_str())
        }
        _ => scope.to_string(),
    }
}

fn reason(d: &Denial) -> &'static str {
    match d {
        Denial::Unauthenticated { .. } => "unauthenticated",
        Denial::InsufficientScope { .. } => "insufficient_scope",
        Denial::BadCredentials(_) => "bad_credentials",
        Denial::Expired => "expired",
        Denial::TooManyAttempts { .. } => "backoff",
        Denial::Forbidden { .. } => "forbidden",
    }
}

/// Counts and logs every denial; records failed logins and refusals of a
/// proven identity in the audit log (a 401 without credentials is how every
/// client starts, so it is not recorded), at most `AUDITED_PER_MINUTE`.
pub(super) async fn note_denial(
    app: &App,
    who: Option<&Actor>,
    address: Option<String>,
    d: &Denial,
) {
    app.metrics
        .denials
        .get_or_create(&ReasonLabels { reason: reason(d) })
        .inc();
    let action = match d {
        Denial::BadCredentials(_) => crate::store::Action::AuthFailed,
        Denial::Forbidden { .. } => crate::store::Action::AccessDenied,
        _ => {
            tracing::debug!(reason = reason(d), error = %d, "not authorized");
            return;
        }
    };
    tracing::warn!(reason = reason(d), error = %d, "denied");
    static WINDOW: Mutex<Option<(Instant, u32)>> = Mutex::new(None);
    let admitted = WINDOW.lock().is_ok_and(|mut w| {
        let now = Instant::now();
        let (start, n) = w.get_or_insert((now, 0));
        if now.duration_since(*start) >= Duration::from_secs(60) {
            *start = now;
            *n = 0;
        }
        *n += 1;
        *n <= AUDITED_PER_MINUTE
    });
    if !admitted {
        tracing::warn!("denial not audited: more than {AUDITED_PER_MINUTE} this minute");
        return;
    }
    let actor = who.cloned().unwrap_or(Actor {
        name: ANONYMOUS.into(),
        address,
        authenticated: false,
    });
    let mut change = Change::new(&actor, action).details(json!({ "error": d.to_string() }));
    if let Some(scope) = d.scope() {
        if let Some(repo) = &scope.repo {
            change = change.repo(repo.as_str());
        }
        change.details["scope"] = json!(scope.to_string());
    }
    if let Err(e) = app.registry.record_change(change).await {
        tracing::warn!(error = %e, "denial not audited");
    }
}

/// `/metrics`, by the auth file's `metrics` setting.
pub(super) async fn may_read_metrics(
    app: &App,
    headers: &HeaderMap,
    ext: &Extensions,
) -> Result<(), Response> {
    let state = app.auth.current();
    if state.access.is_open() || state.metrics == MetricsAccess::Anyone {
        return Ok(());
    }
    let fail = |d: Denial| {
        let mut resp = ApiError::from(d.clone()).into_response();
        if d.is_unauthorized() {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"berth\""),
            );
        }
        resp
    };
    let who = app
        .auth
        .authenticate(&state, authorization(headers), client_address(ext))
        .await
        .map_err(fail)?
        .ok_or_else(|| fail(Denial::Unauthenticated { scope: None }))?;
    if state.metrics == MetricsAccess::Admin {
        let admin = Scope::registry(Action::Admin);
        // A token may prove who asks; the rules decide.
        let who = Principal { token: None, ..who };
        state.access.authorize(&who, &[admin]).map_err(fail)?;
    }
    Ok(())
}

/// `GET|POST /v2/token`: the registry token endpoint. Credentials come as
/// Basic auth (docker, skopeo, oras) or, on POST, as the OAuth2 password
/// grant form (containerd); none asks for an anonymous token. Each requested
/// scope is granted only as far as the caller may have it.
pub(super) async fn token(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let mut resp = match issue(&app, &parts, body).await {
        Ok(r) => r,
        Err(TokenFailure::Denied(d)) => {
            let mut resp = ApiError::from(d.clone()).into_response();
            if let Denial::TooManyAttempts { retry_after_secs } = d {
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(retry_after_secs));
            } else if d.is_unauthorized() {
                resp.headers_mut().insert(
                    WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"berth\""),
                );
            }
            resp
        }
        Err(TokenFailure::Bad(status, code, message)) => {
            ApiError::new(status, code, message).into_response()
        }
    };
    resp.extensions_mut().insert(RouteName("token"));
    resp.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

enum TokenFailure {
    Denied(Denial),
    Bad(StatusCode, &'static str, String),
}

impl From<Denial> for TokenFailure {
    fn from(d: Denial) -> Self {
        TokenFailure::Denied(d)
    }
}

async fn issue(app: &App, parts: &Parts, body: Body) -> Result<Response, TokenFailure> {
    let state = app.auth.current();
    let bad = |m: String| TokenFailure::Bad(StatusCode::BAD_REQUEST, "UNSUPPORTED", m);
    let mut params: Vec<(String, String)> =
        form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    if parts.method == Method::POST {
        let is_form = parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                v.trim_start()
                    .to_ascii_lowercase()
                    .starts_with("application/x-www-form-urlencoded")
            });
        if !is_form {
            return Err(TokenFailure::Bad(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED",
                "a token POST is an application/x-www-form-urlencoded form".into(),
            ));
        }
        let bytes = axum::body::to_bytes(body, MAX_FORM)
            .await
            .map_err(|_| bad(format!("the form is larger than {MAX_FORM} bytes")))?;
        params.extend(form_urlencoded::parse(&bytes).into_owned());
    }
    let one = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if let Some(service) = one("service")
        && service != state.settings.service
    {
        return Err(bad(format!(
            "this registry's service is {:?}, not {service:?}",
            state.settings.service
        )));
    }
    let requested: Vec<&str> = params
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' '))
        .filter(|s| !s.is_empty())
        .collect();
    if requested.len() > token::MAX_SCOPES {
        return Err(bad(format!(
            "at most {} scopes per token",
            token::MAX_SCOPES
        )));
    }
    let requested: Vec<token::Requested> = requested
        .into_iter()
        .filter_map(token::parse_scope)
        .collect();
    let address = client_address(&parts.extensions);
    let who = match (parts.method == Method::POST)
        .then(|| one("grant_type"))
        .flatten()
    {
        Some("password") => {
            let (Some(user), Some(password)) = (one("username"), one("password")) else {
                return Err(bad("the password grant needs username and password".into()));
            };
            let r = app
                .auth
                .login(&state, user, password, address.as_deref())
                .await;
            if let Err(d) = &r {
                note_denial(app, None, address.clone(), d).await;
            }
            Some(r?)
        }
        Some(other) => {
            return Err(bad(format!(
                "grant_type {:?} is not supported: use password, or GET with Basic auth",
                other.chars().take(32).collect::<String>()
            )));
        }
        None => proven(app, &state, parts).await?,
    };
    let who = who.unwrap_or_else(|| {
        Principal::anonymous(Actor {
            name: ANONYMOUS.into(),
            address,
            authenticated: false,
        })
    });
    let (token, claims) = app
        .auth
        .issue_token(&state, &who, &requested)
        .map_err(|e| TokenFailure::Bad(StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN", e))?;
    app.metrics.tokens_issued.inc();
    tracing::info!(actor = %who.actor.name, scopes = claims.access.len(), "token issued");
    let issued_at = jiff::Timestamp::from_second(claims.iat as i64)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let body = json!({
        "token": token,
        "access_token": token,
        "expires_in": claims.exp - claims.iat,
        "issued_at": issued_at,
    });
    Ok((
        StatusCode::OK,
        [(CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response())
}
