//! The one dispatcher of `/v2` and `/api/v1`: parse the path into the surface's
//! typed endpoint, name the actor, derive the scopes the endpoint needs,
//! authorize once, handle, and map errors once, each surface in its own error
//! format. Handlers never check permissions; listings narrow what they show
//! through the `Grant` the check returns.

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::Response;

use super::App;
use super::access::{Denial, Grant, Principal, Scope};
use super::actor::{ClientAddr, actor_of};
use super::authn;
use crate::auth::AuthState;
use crate::oci::RepoName;
use crate::store::Actor;

/// The route name a response was produced by, for metrics.
#[derive(Debug, Clone, Copy)]
pub struct RouteName(pub &'static str);

/// What a handler gets: the request, its endpoint, who asks, and what else
/// that one may see.
pub(super) struct Call<'a, E> {
    pub app: &'a Arc<App>,
    pub parts: &'a Parts,
    pub endpoint: &'a E,
    pub actor: &'a Actor,
    pub principal: &'a Principal,
    pub grant: Grant<'a>,
}

/// What the dispatcher asks of a parsed endpoint.
pub(crate) trait Routed {
    /// A low-cardinality route name for logs and metrics.
    fn route(&self) -> &'static str;
    fn repo(&self) -> Option<&RepoName>;
    /// Every scope a method on the endpoint needs (none: open to anyone, such
    /// as a listing that shows only what the caller may pull).
    fn needs(&self, method: &Method) -> Vec<Scope>;
    /// Whether the endpoint answers only a caller who presents credentials
    /// (any: an anonymous token will do) when access is not open: the
    /// version check, by which clients learn how to log in.
    fn asks_who(&self) -> bool {
        false
    }
}

/// One API surface: how its paths parse, how an endpoint is handled and how
/// its errors are written.
pub(super) trait Surface {
    type Endpoint: Routed + Send + Sync;
    type Error: Send + From<Denial>;
    /// The route name of a path that names no endpoint.
    const UNKNOWN_ROUTE: &'static str;

    fn parse(parts: &Parts) -> Result<Self::Endpoint, Self::Error>;
    /// A change that names its actor invalidly.
    fn actor_invalid(message: String) -> Self::Error;
    fn handle<'a>(
        call: Call<'a, Self::Endpoint>,
        body: Body,
    ) -> impl Future<Output = Result<Response, Self::Error>> + Send + 'a;
    /// The response, from the handler's answer or its error.
    fn respond(
        endpoint: Option<&Self::Endpoint>,
        result: Result<Response, Self::Error>,
    ) -> Response;
}

pub(super) async fn dispatch<S: Surface>(State(app): State<Arc<App>>, req: Request) -> Response {
    let (parts, body) = req.into_parts();
    let endpoint = match S::parse(&parts) {
        Ok(endpoint) => endpoint,
        Err(e) => {
            let mut resp = S::respond(None, Err(e));
            resp.extensions_mut().insert(RouteName(S::UNKNOWN_ROUTE));
            return resp;
        }
    };
    let route = endpoint.route();
    let span = tracing::Span::current();
    span.record("route", route);
    if let Some(repo) = endpoint.repo() {
        span.record("repo", repo.as_str());
    }
    let state = app.auth.current();
    let (result, denial) = match principal::<S>(&app, &state, &parts).await {
        Ok(principal) => {
            span.record("actor", principal.actor.name.as_str());
            span.record("auth", authn::auth_kind(&principal));
            match authorize(&state, &principal, &endpoint, &parts.method) {
                Ok(grant) => {
                    let call = Call {
                        app: &app,
                        parts: &parts,
                        endpoint: &endpoint,
                        actor: &principal.actor,
                        principal: &principal,
                        grant,
                    };
                    (S::handle(call, body).await, None)
                }
                Err(denial) => {
                    let who = principal
                        .presented_credentials()
                        .then_some(&principal.actor);
                    authn::note_denial(&app, who, principal.actor.address.clone(), &denial).await;
                    (Err(denial.clone().into()), Some(denial))
                }
            }
        }
        Err((e, denial)) => (Err(e), denial),
    };
    let mut resp = S::respond(Some(&endpoint), result);
    if let Some(denial) = denial {
        // A 401 says how to authenticate (RFC 9110), a 429 when to come back,
        // on either surface.
        for (name, value) in authn::denial_headers(&app, &parts, &denial) {
            resp.headers_mut().insert(name, value);
        }
    }
    resp.extensions_mut().insert(RouteName(route));
    resp
}

/// The one check of an endpoint's needs.
fn authorize<'a, E: Routed>(
    state: &'a AuthState,
    who: &'a Principal,
    endpoint: &E,
    method: &Method,
) -> Result<Grant<'a>, Denial> {
    if endpoint.asks_who() && !state.access.is_open() && !who.presented_credentials() {
        return Err(Denial::Unauthenticated { scope: None });
    }
    state.access.authorize(who, &endpoint.needs(method))
}

/// Who asks: the identity the request proves, or else the anonymous caller
/// (with the name it claims in `Berth-Actor`, recorded as claimed).
async fn principal<S: Surface>(
    app: &App,
    state: &AuthState,
    parts: &Parts,
) -> Result<Principal, (S::Error, Option<Denial>)> {
    match authn::proven(app, state, parts).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => {
            let peer = parts.extensions.get::<ClientAddr>();
            actor_of(&parts.method, &parts.headers, peer)
                .map(Principal::anonymous)
                .map_err(|m| (S::actor_invalid(m), None))
        }
        Err(denial) => Err((denial.clone().into(), Some(denial))),
    }
}

#[cfg(test)]
mod tests {
    use axum::http::{Method, StatusCode, header};
    use tower::ServiceExt;

    use crate::auth::Auth;
    use crate::config::{Config, ServeArgs};
    use crate::http::access::{Action, Rule, Subject};
    use crate::http::{App, router};

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    /// Every endpoint kind and method each surface answers, and whether it needs
    /// a scope (false: open to anyone).
    fn every_endpoint() -> Vec<(Method, String, bool)> {
        let m = "/api/v1/models/team/m";
        let mut v = vec![
            (Method::GET, "/v2/".to_string(), true),
            (Method::GET, "/v2/_catalog".into(), false),
            (Method::GET, "/v2/team/m/tags/list".into(), true),
            (Method::GET, format!("/v2/team/m/referrers/{D}"), true),
            (Method::POST, "/v2/team/m/blobs/uploads/".into(), true),
            (
                Method::POST,
                format!("/v2/team/m/blobs/uploads/?mount={D}&from=other"),
                true,
            ),
            (Method::GET, "/api/v1/models".into(), false),
            (Method::GET, "/api/v1/signing-key".into(), false),
            (Method::DELETE, format!("{m}/versions/v1"), true),
            (Method::POST, format!("{m}/versions/v1/approvals"), true),
            (Method::PATCH, format!("{m}/versions/v1/labels"), true),
            (Method::PUT, format!("{m}/versions/v1/labels/k"), true),
            (Method::DELETE, format!("{m}/versions/v1/labels/k"), true),
            (Method::PUT, format!("{m}/aliases/prod"), true),
            (Method::DELETE, format!("{m}/aliases/prod"), true),
            (Method::POST, format!("{m}/aliases/prod/rollback"), true),
            (Method::PUT, "/api/v1/policy".into(), true),
        ];
        for method in [Method::GET, Method::HEAD, Method::PUT, Method::DELETE] {
            v.push((method, "/v2/team/m/manifests/v1".into(), true));
        }
        for method in [Method::GET, Method::HEAD, Method::DELETE] {
            v.push((method, format!("/v2/team/m/blobs/{D}"), true));
        }
        for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
            v.push((method, "/v2/team/m/blobs/uploads/0123abcd".into(), true));
        }
        for read in [
            "/versions",
            "/versions/v1",
            "/compare",
            "/versions/v1/approvals",
            "/versions/v1/labels",
            "/aliases",
            "/aliases/prod",
            "/aliases/prod/history",
        ] {
            v.push((Method::GET, format!("{m}{read}"), true));
        }
        for admin in [
            "/api/v1/policy",
            "/api/v1/audit",
            "/api/v1/audit/export",
            "/api/v1/events",
            "/api/v1/events/deliveries",
        ] {
            v.push((Method::GET, admin.into(), true));
        }
        v
    }

    async fn app_with(auth: Auth) -> (tempfile::TempDir, axum::Router) {
        let dir = tempfile::tempdir().unwrap();
        let config = Config::resolve(&ServeArgs {
            data_dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        })
        .unwrap();
        let registry = crate::server::open_registry(&config).await.unwrap();
        (dir, router(App::with_auth(registry, auth)))
    }

    async fn send(app: &axum::Router, method: Method, path: &str) -> axum::response::Response {
        let req = axum::http::Request::builder()
            .method(method)
            .uri(path)
            .header(header::CONTENT_TYPE, "application/json")
            .body(axum::body::Body::from("{}"))
            .unwrap();
        app.clone().oneshot(req).await.unwrap()
    }

    #[tokio::test]
    async fn every_endpoint_is_authorized_before_it_is_handled() {
        // No rule grants anything: every endpoint that needs a scope must be
        // refused, whatever its handler would have done.
        let (_dir, app) = app_with(Auth::with_rules(Vec::new())).await;
        for (method, path, needs_scope) in every_endpoint() {
            let resp = send(&app, method.clone(), &path).await;
            if needs_scope {
                assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
                assert!(
                    resp.headers().contains_key(header::WWW_AUTHENTICATE),
                    "{method} {path}: a 401 carries a challenge"
                );
            } else {
                assert!(
                    resp.status().is_success(),
                    "{method} {path}: {}",
                    resp.status()
                );
            }
        }
        // Nothing was written on the way: the refused PUTs left no manifest.
        let (_dir2, open) = app_with(Auth::open_ephemeral()).await;
        assert_eq!(
            send(&open, Method::GET, "/v2/team/m/manifests/v1")
                .await
                .status(),
            StatusCode::NOT_FOUND
        );
    }

    /// The scopes an endpoint needs, as the dispatcher derives them.
    fn needs_of(method: &Method, path: &str) -> Vec<crate::http::access::Scope> {
        use super::{Routed, Surface};
        let (parts, ()) = axum::http::Request::builder()
            .method(method.clone())
            .uri(path)
            .body(())
            .unwrap()
            .into_parts();
        if path.starts_with("/api/") {
            crate::http::api::ModelApi::parse(&parts)
                .ok()
                .unwrap()
                .needs(method)
        } else {
            crate::http::v2::V2::parse(&parts)
                .ok()
                .unwrap()
                .needs(method)
        }
    }

    #[tokio::test]
    async fn every_endpoint_is_let_through_with_exactly_what_it_needs() {
        for (method, path, needs_scope) in every_endpoint() {
            let needs = needs_of(&method, &path);
            // The version check needs no scope, only credentials.
            assert_eq!(
                !needs.is_empty(),
                needs_scope && path != "/v2/",
                "{method} {path}"
            );
            if needs.is_empty() {
                continue;
            }
            let rules = needs
                .iter()
                .map(|scope| Rule {
                    subjects: vec![Subject::Anyone],
                    repos: scope
                        .repo
                        .as_ref()
                        .map(|r| r.as_str().to_string().try_into().unwrap()),
                    actions: vec![scope.action.clone()],
                })
                .collect();
            let (_dir, app) = app_with(Auth::with_rules(rules)).await;
            let resp = send(&app, method.clone(), &path).await;
            assert!(
                !matches!(
                    resp.status(),
                    StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN
                ),
                "{method} {path} with {needs:?}: {}",
                resp.status()
            );
        }
    }

    #[tokio::test]
    async fn a_grant_lets_only_its_action_through() {
        let auth = Auth::with_rules(vec![Rule {
            subjects: vec![Subject::Anyone],
            repos: Some("team/*".to_string().try_into().unwrap()),
            actions: vec![Action::Pull],
        }]);
        let (_dir, app) = app_with(auth).await;
        let get = send(&app, Method::GET, "/v2/team/m/manifests/v1").await;
        assert_eq!(
            get.status(),
            StatusCode::NOT_FOUND,
            "pull is granted: handled"
        );
        let put = send(&app, Method::PUT, "/v2/team/m/manifests/v1").await;
        assert_eq!(put.status(), StatusCode::UNAUTHORIZED, "push is not");
        let other = send(&app, Method::GET, "/v2/other/manifests/v1").await;
        assert_eq!(
            other.status(),
            StatusCode::UNAUTHORIZED,
            "nor pull elsewhere"
        );
        let promote = send(&app, Method::PUT, "/api/v1/models/team/m/aliases/prod").await;
        assert_eq!(promote.status(), StatusCode::UNAUTHORIZED);
        let body = axum::body::to_bytes(promote.into_body(), 4096)
            .await
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["error"]["code"], "UNAUTHORIZED");
        assert_eq!(body["error"]["scope"], "repository:team/m:promote/prod");
    }
}
