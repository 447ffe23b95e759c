//! Authentication and access control against a real server with an auth file:
//! the registry token flow as docker, skopeo, oras and containerd use it, Basic
//! auth, scope downgrade, expiry, robots and their revocation, backoff,
//! listings narrowed to what the caller may pull, audit records of denials, and
//! a SIGHUP reload of a user written by `berth user add`.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::*;

fn berth_user(auth: &Path, args: &[&str], password: &str) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .arg("user")
        .arg("--auth")
        .arg(auth)
        .args(args)
        .arg("--password-stdin")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("berth user");
    use std::io::Write as _;
    writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
    assert!(child.wait().unwrap().success(), "berth user {args:?}");
}

fn write_auth_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("auth.toml");
    berth_user(&path, &["add", "alice", "--group", "ml"], "alice-password");
    berth_user(&path, &["add", "root"], "root-password");
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        r#"
[[grant]]
to = ["group:ml"]
repos = "team/**"
actions = ["pull", "push", "promote/staging"]

[[grant]]
to = ["anonymous"]
repos = "public/**"
actions = ["pull"]

[[grant]]
to = ["user:root"]
registry = true
actions = ["admin"]

[token]
lifetime_secs = 2
"#,
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn as_user(authorization: &str) -> Client {
    let mut h = HeaderMap::new();
    h.insert(AUTHORIZATION, HeaderValue::from_str(authorization).unwrap());
    Client::builder().default_headers(h).build().unwrap()
}

fn challenge(resp: &reqwest::Response) -> String {
    resp.headers()
        .get(WWW_AUTHENTICATE)
        .unwrap_or_else(|| panic!("{} {}: no challenge", resp.status(), resp.url()))
        .to_str()
        .unwrap()
        .to_string()
}

/// A token as a client gets one: GET the realm with the scopes and, if given,
/// Basic credentials.
async fn token(srv: &TestServer, auth: Option<&str>, scopes: &[&str]) -> (String, Value) {
    let mut url = format!("{}/v2/token?service=berth", srv.url);
    for s in scopes {
        url.push_str(&format!("&scope={s}"));
    }
    let c = auth.map_or_else(client, as_user);
    let resp = c.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK, "token");
    assert_eq!(resp.headers()["cache-control"], "no-store");
    let v: Value = resp.json().await.unwrap();
    let t = v["token"].as_str().unwrap().to_string();
    assert_eq!(v["access_token"], v["token"]);
    let claims = t.split('.').nth(1).unwrap();
    let claims: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(claims)
            .unwrap(),
    )
    .unwrap();
    (t, claims)
}

fn granted(claims: &Value, name: &str) -> Vec<String> {
    claims["access"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["name"] == name)
        .flat_map(|e| e["actions"].as_array().unwrap().iter())
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

async fn catalog(c: &Client, srv: &TestServer) -> Vec<String> {
    let resp = c
        .get(format!("{}/v2/_catalog", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let v: Value = resp.json().await.unwrap();
    v["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn the_registry_token_flow_grants_only_what_the_rules_allow() {
    let dir = tempfile::tempdir().unwrap();
    let auth = write_auth_file(dir.path());
    let srv = TestServer::start_with(&["--auth", auth.to_str().unwrap()]);
    let anon = client();
    let alice = basic("alice", "alice-password");
    let root = basic("root", "root-password");

    // The version check asks who is there, with the realm to get a token from.
    let resp = send(&anon, Method::GET, format!("{}/v2/", srv.url)).await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        challenge(&resp),
        format!(
            "Bearer realm=\"http://{}/v2/token\",service=\"berth\"",
            srv.addr
        )
    );
    // A repository names the scope it needs.
    let resp = send(
        &anon,
        Method::GET,
        format!("{}/v2/team/m/manifests/v1", srv.url),
    )
    .await;
    assert!(challenge(&resp).ends_with(",scope=\"repository:team/m:pull,push\""));
    expect_error(resp, StatusCode::UNAUTHORIZED, "UNAUTHORIZED").await;

    // Asked for pull, push and delete; granted what the rules allow.
    let (t, claims) = token(&srv, Some(&alice), &["repository:team/m:pull,push,delete"]).await;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(granted(&claims, "team/m"), ["pull", "push"]);
    let bearer = as_user(&format!("Bearer {t}"));
    assert_eq!(
        send(&bearer, Method::GET, format!("{}/v2/", srv.url))
            .await
            .status(),
        StatusCode::OK
    );
    let digest = push_image(&bearer, &srv.url, "team/m", "v1", "alice").await;
    // Delete is not hers: refused as a known identity.
    let resp = send(
        &bearer,
        Method::DELETE,
        format!("{}/v2/team/m/manifests/{digest}", srv.url),
    )
    .await;
    expect_error(resp, StatusCode::FORBIDDEN, "DENIED").await;
    // The rules allow team/n, the token does not carry it: ask for another.
    let resp = send(
        &bearer,
        Method::GET,
        format!("{}/v2/team/n/tags/list", srv.url),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    let c = challenge(&resp);
    assert!(
        c.contains("scope=\"repository:team/n:pull,push\"")
            && c.contains("error=\"insufficient_scope\""),
        "{c}"
    );

    // Basic auth works on /v2 as it is.
    let basic_alice = as_user(&alice);
    let resp = send(
        &basic_alice,
        Method::GET,
        format!("{}/v2/team/m/manifests/v1", srv.url),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    // The POST password grant (containerd) gives the same.
    let resp = anon
        .post(format!("{}/v2/token", srv.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=password&username=alice&password=alice-password&service=berth&scope=repository%3Ateam%2Fm%3Apull&client_id=containerd-client")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.json::<Value>().await.unwrap()["access_token"].is_string());

    // Anonymous: public pulls only, by token or with no credentials at all.
    let root_c = as_user(&root);
    push_image(&root_c, &srv.url, "public/x", "v1", "public").await;
    push_image(&root_c, &srv.url, "other/secret", "v1", "secret").await;
    let (_, claims) = token(
        &srv,
        None,
        &["repository:public/x:pull,push", "repository:team/m:pull"],
    )
    .await;
    assert_eq!(granted(&claims, "public/x"), ["pull"]);
    assert!(granted(&claims, "team/m").is_empty());
    let resp = send(
        &anon,
        Method::GET,
        format!("{}/v2/public/x/manifests/v1", srv.url),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = anon
        .post(format!("{}/v2/public/x/blobs/uploads/", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // Listings show what the caller may pull.
    assert_eq!(catalog(&anon, &srv).await, ["public/x"]);
    assert_eq!(catalog(&basic_alice, &srv).await, ["public/x", "team/m"]);
    assert_eq!(
        catalog(&root_c, &srv).await,
        ["other/secret", "public/x", "team/m"]
    );
    // A mount from a repository the caller may not pull is not honoured.
    let layer = sha256(b"layer of secret");
    let resp = basic_alice
        .post(format!(
            "{}/v2/team/m/blobs/uploads/?mount={layer}&from=other/secret",
            srv.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "an upload session, not a mount"
    );

    // Names crafted for traversal get nothing.
    let (_, claims) = token(
        &srv,
        Some(&alice),
        &[
            "repository:team/../other/secret:pull",
            "repository:team/%2e%2e/x:pull",
        ],
    )
    .await;
    assert!(claims["access"].as_array().unwrap().is_empty(), "{claims}");

    // Tokens expire.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let resp = send(
        &bearer,
        Method::GET,
        format!("{}/v2/team/m/manifests/v1", srv.url),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    assert!(challenge(&resp).contains("error=\"invalid_token\""));

    // /metrics needs an identity by default.
    assert_eq!(
        send(&anon, Method::GET, format!("{}/metrics", srv.url))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    let m = send(&basic_alice, Method::GET, format!("{}/metrics", srv.url)).await;
    assert_eq!(m.status(), StatusCode::OK);
    let m = m.text().await.unwrap();
    assert!(
        m.contains("berth_auth_denials_total{reason=\"forbidden\"} 1"),
        "{m}"
    );
    assert!(m.contains("berth_auth_tokens_issued_total"));

    // Failed logins back off, even the right password, with Retry-After.
    for _ in 0..5 {
        let resp = as_user(&basic("alice", "guess"))
            .get(format!("{}/v2/token?service=berth", srv.url))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
    }
    let resp = basic_alice
        .get(format!("{}/v2/token?service=berth", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(resp.headers().contains_key("retry-after"));
    expect_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;

    // Failed logins and denials are in the audit log, which is the admin's.
    let resp = send(
        &basic_alice,
        Method::GET,
        format!("{}/api/v1/audit", srv.url),
    )
    .await;
    assert_eq!(
        resp.status(),
        StatusCode::TOO_MANY_REQUESTS,
        "alice is backed off"
    );
    let audit: Value = root_c
        .get(format!("{}/api/v1/audit?action=auth.failed", srv.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(audit["items"].as_array().unwrap().len(), 5, "{audit}");
    let audit: Value = root_c
        .get(format!("{}/api/v1/audit?action=access.denied", srv.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let denied = &audit["items"][0];
    assert_eq!(denied["actor"]["name"], "alice");
    assert_eq!(denied["actor"]["authenticated"], true);
    assert_eq!(denied["details"]["scope"], "repository:team/m:delete");
}

#[tokio::test]
async fn robots_push_until_revoked_and_reloads_add_users() {
    let dir = tempfile::tempdir().unwrap();
    let auth = write_auth_file(dir.path());
    let srv = TestServer::start_with(&["--auth", auth.to_str().unwrap()]);
    let root = as_user(&basic("root", "root-password"));
    let alice = as_user(&basic("alice", "alice-password"));
    let new_robot = json!({"name": "ci", "groups": ["ml"], "expires_in_days": 1});

    let resp = alice
        .post(format!("{}/api/v1/robots", srv.url))
        .json(&new_robot)
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::FORBIDDEN,
        "robots are the admin's"
    );
    let resp = root
        .post(format!("{}/api/v1/robots", srv.url))
        .json(&new_robot)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let robot: Value = resp.json().await.unwrap();
    let secret = robot["token"].as_str().unwrap().to_string();
    assert_eq!(robot["username"], "robot+ci");

    // As a docker login would: robot name and token as Basic credentials.
    let ci = as_user(&basic("robot+ci", &secret));
    push_image(&ci, &srv.url, "team/r", "v1", "ci").await;
    let (jwt, claims) = token(
        &srv,
        Some(&basic("robot+ci", &secret)),
        &["repository:team/r:pull"],
    )
    .await;
    assert_eq!(claims["sub"], "ci");
    // The token itself as a Bearer on the API.
    let direct = as_user(&format!("Bearer {secret}"));
    let me: Value = direct
        .get(format!("{}/api/v1/whoami", srv.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "robot+ci");
    assert_eq!(me["kind"], "robot");
    // Listed without its secret.
    let list = root
        .get(format!("{}/api/v1/robots", srv.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        list.contains("\"active\"") && !list.contains(&secret) && !list.contains("token_sha256"),
        "{list}"
    );

    let resp = root
        .delete(format!("{}/api/v1/robots/ci", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    for c in [&ci, &direct, &as_user(&format!("Bearer {jwt}"))] {
        let resp = send(
            c,
            Method::GET,
            format!("{}/v2/team/r/manifests/v1", srv.url),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "revoked");
    }
    let resp = root
        .post(format!("{}/api/v1/robots", srv.url))
        .json(&new_robot)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CONFLICT, "a name is not reused");
    // Revocation survives a restart.
    let srv = srv.restart();
    let resp = send(
        &ci,
        Method::GET,
        format!("{}/v2/team/r/manifests/v1", srv.url),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);

    // A user written while the server runs logs in after SIGHUP.
    berth_user(&auth, &["add", "carol", "--group", "ml"], "carol-password");
    let carol = as_user(&basic("carol", "carol-password"));
    assert_eq!(
        send(&carol, Method::GET, format!("{}/v2/", srv.url))
            .await
            .status(),
        StatusCode::UNAUTHORIZED
    );
    Command::new("kill")
        .arg("-HUP")
        .arg(srv.pid().to_string())
        .status()
        .unwrap();
    let mut status = StatusCode::UNAUTHORIZED;
    for _ in 0..50 {
        status = send(
            &carol,
            Method::GET,
            format!("{}/v2/team/r/manifests/v1", srv.url),
        )
        .await
        .status();
        if status == StatusCode::OK {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(status, StatusCode::OK);
}
