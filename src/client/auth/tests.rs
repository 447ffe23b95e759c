//! The auth layer against a mock registry and token service on loopback.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request as HttpRequest, Response as HttpResponse, StatusCode as Status};

use super::*;

const USER: &str = "alice";
const PASSWORD: &str = "pw";

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Basic,
    Bearer,
}

/// One request the mock saw: method, path and query, `Authorization`.
type Seen = (String, String, Option<String>);

#[derive(Clone)]
struct Mock {
    mode: Mode,
    addr: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    /// Whether the token service gives anonymous clients pull tokens.
    anonymous_pull: bool,
}

fn expected_basic() -> String {
    basic(USER, PASSWORD)
}

/// The repository of a `/v2/<repo>/(blobs|manifests|…)/…` path.
fn repo_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v2/")?;
    let i = ["/blobs/", "/manifests/", "/tags/"]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()?;
    Some(rest[..i].to_string())
}

async fn handle(mock: Mock, req: HttpRequest<Body>) -> HttpResponse<Body> {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let uri = req.uri().to_string();
    mock.seen
        .lock()
        .unwrap()
        .push((req.method().to_string(), uri.clone(), auth.clone()));
    let path = req.uri().path().to_string();
    let respond = |status: Status, challenge: Option<String>, body: String| {
        let mut b = HttpResponse::builder().status(status);
        if let Some(c) = challenge {
            b = b.header("www-authenticate", c);
        }
        b.body(Body::from(body)).unwrap()
    };
    if path == "/token" {
        let q: Vec<(String, String)> =
            form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let scopes: Vec<&str> = q
            .iter()
            .filter(|(k, _)| k == "scope")
            .map(|(_, v)| v.as_str())
            .collect();
        let authenticated = auth.as_deref() == Some(expected_basic().as_str());
        let anonymous_ok =
            mock.anonymous_pull && auth.is_none() && scopes.iter().all(|s| s.ends_with(":pull"));
        if !authenticated && !anonymous_ok {
            return respond(
                Status::UNAUTHORIZED,
                None,
                r#"{"details":"bad credentials"}"#.into(),
            );
        }
        let token = format!("tok[{}]", scopes.join(" "));
        return respond(
            Status::OK,
            None,
            serde_json::json!({"token": token, "expires_in": 300}).to_string(),
        );
    }
    let needed = repo_of(&path).map(|r| {
        let action = if req.method() == "GET" || req.method() == "HEAD" {
            "pull"
        } else {
            "push"
        };
        format!("repository:{r}:{action}")
    });
    let ok = match mock.mode {
        Mode::Basic => auth.as_deref() == Some(expected_basic().as_str()),
        Mode::Bearer => auth
            .as_deref()
            .and_then(|a| a.strip_prefix("Bearer tok["))
            .is_some_and(|t| {
                // The token names its scopes; it must cover the one needed.
                let have = Scopes::parse(t.trim_end_matches(']'));
                needed
                    .as_deref()
                    .is_none_or(|n| have.covers(&Scopes::parse(n)))
            }),
    };
    if ok {
        return respond(Status::OK, None, "ok".into());
    }
    let challenge = match mock.mode {
        Mode::Basic => r#"Basic realm="mock""#.to_string(),
        Mode::Bearer => {
            let mut c = format!(
                r#"Bearer realm="http://{}/token",service="mock""#,
                mock.addr
            );
            if let Some(n) = &needed {
                c.push_str(&format!(r#",scope="{n}""#));
            }
            c
        }
    };
    respond(Status::UNAUTHORIZED, Some(challenge), "{}".into())
}

async fn start(mode: Mode, anonymous_pull: bool) -> Mock {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let mock = Mock {
        mode,
        addr,
        seen: Arc::default(),
        anonymous_pull,
    };
    let m = mock.clone();
    let app = axum::Router::new().fallback(move |req: HttpRequest<Body>| handle(m.clone(), req));
    tokio::spawn(async move { axum::serve(listener, app).await });
    mock
}

fn credential(password: &str) -> Credential {
    Credential {
        username: USER.into(),
        secret: Secret::Password(password.into()),
        source: "test".into(),
    }
}

fn auth_for(mock: &Mock, password: Option<&str>) -> (Auth, Url) {
    let base = Url::parse(&format!("http://{}/", mock.addr)).unwrap();
    let http = reqwest::Client::new();
    let auth = match password {
        Some(p) => Auth::with_credential(&base, http, credential(p)),
        // No credentials at all: a store with no files.
        None => Auth::build(&base, http, Source::Store(Store::default()), None),
    };
    (auth, base)
}

impl Mock {
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

async fn get(auth: &Auth, base: &Url, path: &str, scopes: &Scopes) -> Result<Response> {
    let http = reqwest::Client::new();
    auth.send(http.get(base.join(path).unwrap()), scopes, path)
        .await
}

#[tokio::test]
async fn bearer_challenge_token_and_cache() {
    let mock = start(Mode::Bearer, false).await;
    let (auth, base) = auth_for(&mock, Some(PASSWORD));
    let pull = Scopes::repo("team/m", &["pull"]);
    let r = get(&auth, &base, "v2/team/m/manifests/v1", &pull)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = mock.take();
    assert_eq!(seen.len(), 3, "{seen:?}");
    // With credentials at hand: the version check first (anonymous) to learn the
    // scheme, then the realm with service, scope and Basic credentials.
    assert_eq!((seen[0].1.as_str(), &seen[0].2), ("/v2/", &None));
    assert_eq!(
        seen[1].1,
        "/token?service=mock&scope=repository%3Ateam%2Fm%3Apull&account=alice"
    );
    assert_eq!(seen[1].2.as_deref(), Some(expected_basic().as_str()));
    assert_eq!(
        seen[2].2.as_deref(),
        Some("Bearer tok[repository:team/m:pull]")
    );

    // The token is held: the next pull request carries it from the start.
    let r = get(&auth, &base, "v2/team/m/blobs/sha256:00", &pull)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = mock.take();
    assert_eq!(seen.len(), 1, "{seen:?}");

    // A push needs another token: fetched up front, scopes as repeated parameters.
    let push = Scopes::repo("team/m", &["pull", "push"]).union(&Scopes::repo("base", &["pull"]));
    auth.prepare(&push).await.unwrap();
    let seen = mock.take();
    assert_eq!(seen.len(), 1, "the scheme is known: no ping {seen:?}");
    assert_eq!(
        seen[0].1,
        "/token?service=mock&scope=repository%3Abase%3Apull&scope=repository%3Ateam%2Fm%3Apull%2Cpush&account=alice"
    );
    // A streamed body (which cannot be replayed) goes out with that token.
    let stream = futures_util::stream::once(async {
        Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"x"))
    });
    let req = reqwest::Client::new()
        .patch(base.join("v2/team/m/blobs/uploads/u").unwrap())
        .body(reqwest::Body::wrap_stream(stream));
    let r = auth.send(req, &Scopes::default(), "PATCH").await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        mock.take()[0].2.as_deref(),
        Some("Bearer tok[repository:base:pull repository:team/m:pull,push]")
    );
}

#[tokio::test]
async fn bearer_anonymous_and_refused() {
    let mock = start(Mode::Bearer, true).await;
    let (anon, base) = auth_for(&mock, None);
    let pull = Scopes::repo("public/m", &["pull"]);
    let r = get(&anon, &base, "v2/public/m/manifests/v1", &pull)
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = mock.take();
    assert_eq!(
        seen[1].2, None,
        "an anonymous token request carries nothing"
    );
    assert!(!seen[1].1.contains("account="));
    // A push without credentials fails with what to do.
    let e = anon
        .prepare(&Scopes::repo("public/m", &["pull", "push"]))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("requires authentication") && e.contains(&format!("berth login {}", mock.addr)),
        "{e}"
    );

    let (wrong, base) = auth_for(&mock, Some("nope"));
    let e = format!(
        "{:#}",
        get(&wrong, &base, "v2/team/m/manifests/v1", &Scopes::default())
            .await
            .unwrap_err()
    );
    assert!(
        e.contains("refused the credentials of \"alice\" (from test)"),
        "{e}"
    );
    assert!(e.contains("berth login"), "{e}");
    assert!(wrong.verify().await.is_err());
    let (right, _) = auth_for(&mock, Some(PASSWORD));
    right.verify().await.unwrap();
}

#[tokio::test]
async fn basic_challenge() {
    let mock = start(Mode::Basic, false).await;
    let (auth, base) = auth_for(&mock, Some(PASSWORD));
    let r = get(&auth, &base, "v2/team/m/manifests/v1", &Scopes::default())
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = mock.take();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].2.as_deref(), Some(expected_basic().as_str()));
    // Known now: sent up front.
    get(&auth, &base, "v2/", &Scopes::default()).await.unwrap();
    assert_eq!(mock.take().len(), 1);
    auth.verify().await.unwrap();

    let (wrong, base) = auth_for(&mock, Some("nope"));
    let e = get(&wrong, &base, "v2/", &Scopes::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("refused") && e.contains("berth login"), "{e}");
    assert!(wrong.verify().await.is_err());

    let (none, base) = auth_for(&mock, None);
    let e = get(&none, &base, "v2/", &Scopes::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no credentials") && e.contains("berth login"),
        "{e}"
    );
}

#[tokio::test]
async fn credentials_stay_with_the_registry() {
    let registry = start(Mode::Basic, false).await;
    let other = start(Mode::Basic, false).await;
    let (auth, base) = auth_for(&registry, Some(PASSWORD));
    get(&auth, &base, "v2/", &Scopes::default()).await.unwrap();
    // An upload Location on another host gets no credentials, and its 401 is
    // handed back rather than answered with them.
    let elsewhere =
        Url::parse(&format!("http://{}/v2/team/m/blobs/uploads/x", other.addr)).unwrap();
    let r = auth
        .send(
            reqwest::Client::new().get(elsewhere),
            &Scopes::default(),
            "GET",
        )
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let seen = other.take();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].2, None);
}

#[test]
fn realms_and_hosts() {
    let https = Url::parse("https://reg.example.com/").unwrap();
    let http = Url::parse("http://127.0.0.1:5000/").unwrap();
    assert!(token::check_realm("https://auth.example.com/token", &https).is_ok());
    assert!(token::check_realm("http://auth.example.com/token", &https).is_err());
    assert!(token::check_realm("http://127.0.0.1:5000/v2/token", &http).is_ok());
    assert!(token::check_realm("file:///etc/passwd", &http).is_err());
    assert!(token::check_realm("/v2/token", &http).is_err());
    assert_eq!(host_key(&http), "127.0.0.1:5000");
    assert_eq!(host_key(&https), "reg.example.com");
    assert!(same_origin(
        &https,
        &Url::parse("https://reg.example.com:443/v2/").unwrap()
    ));
    assert!(!same_origin(
        &https,
        &Url::parse("http://reg.example.com/v2/").unwrap()
    ));
    assert!(!same_origin(
        &https,
        &Url::parse("https://reg.example.com.evil/v2/").unwrap()
    ));
}
