//! The signature gate (verified cryptographically, not by presence) and the
//! webhook gate (2xx within the timeout), each passing and failing with its report.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode as AxStatus;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};

use super::common::TestServer;
use super::{berth, gate, push_to};

async fn promote(c: &Client, url: &str, target: &str) -> (StatusCode, Value) {
    let r = c
        .put(format!("{url}/api/v1/models/sig/m/aliases/prod"))
        .json(&json!({ "target": target }))
        .send()
        .await
        .unwrap();
    (r.status(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signature_and_webhook_gates() {
    let tmp = tempfile::tempdir().unwrap();
    let pw = [("COSIGN_PASSWORD", "pw")];
    let (k, foreign) = (tmp.path().join("k"), tmp.path().join("foreign"));
    for p in [&k, &foreign] {
        let (ok, out) = berth(
            "http://127.0.0.1:1",
            &["keygen", "--output-key-prefix", p.to_str().unwrap()],
            &pw,
        );
        assert!(ok, "{out}");
    }

    // The webhook gate's endpoint: passes while `allow`, records what it was sent.
    let allow = Arc::new(AtomicBool::new(false));
    let seen: Arc<std::sync::Mutex<Vec<Value>>> = Arc::default();
    let (a, s2) = (allow.clone(), seen.clone());
    let app = axum::Router::new().route(
        "/gate",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (a, s2) = (a.clone(), s2.clone());
            async move {
                s2.lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap_or(Value::Null));
                if a.load(Ordering::SeqCst) {
                    AxStatus::OK
                } else {
                    AxStatus::FORBIDDEN
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/gate", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });

    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "[[repository]]\nmatch = \"sig/*\"\n\n[[repository.alias.prod.gate]]\ntype = \"signature\"\nkeys = [\"k.pub\"]\n\n[[repository.alias.prod.gate]]\ntype = \"webhook\"\nname = \"fairness\"\nurl = \"{hook}\"\ntimeout_secs = 5\n"
        ),
    )
    .unwrap();
    let s = TestServer::start_with(&["--policy", policy.to_str().unwrap()]);
    let (c, url) = (Client::new(), s.url.clone());
    let (_, v1, _) = push_to(&c, &url, "sig/m", "v1", "one", "0.8").await;

    let (st, v) = promote(&c, &url, "v1").await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    let report = &v["error"]["report"];
    assert_eq!(
        gate(report, "signature")["passed"],
        false,
        "unsigned: {report}"
    );
    assert_eq!(
        gate(report, "webhook")["passed"],
        false,
        "the hook said 403: {report}"
    );
    let sent = seen.lock().unwrap().last().cloned().unwrap();
    assert!(
        sent.to_string().contains(&v1),
        "the hook is told the candidate: {sent}"
    );

    // A signature by a key the policy does not list is present but does not count.
    let sign = |key: &std::path::Path| {
        let key = format!("{}.key", key.display());
        berth(&url, &["sign", &format!("sig/m@{v1}"), "--key", &key], &pw)
    };
    assert!(sign(&foreign).0);
    let (st, v) = promote(&c, &url, "v1").await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(
        gate(&v["error"]["report"], "signature")["passed"],
        false,
        "{v}"
    );
    assert!(sign(&k).0);
    let (st, v) = promote(&c, &url, "v1").await;
    assert_eq!(st, StatusCode::CONFLICT);
    let report = &v["error"]["report"];
    assert_eq!(gate(report, "signature")["passed"], true, "{report}");
    assert_eq!(gate(report, "webhook")["passed"], false, "{report}");
    allow.store(true, Ordering::SeqCst);
    let (st, v) = promote(&c, &url, "v1").await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["report"]["passed"], true);
}
