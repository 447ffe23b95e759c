//! Events: CloudEvents to a webhook from the durable outbox, signed, across a
//! `kill -9`; and the Server-Sent Events stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode as AxStatus};
use base64::Engine as _;
use futures_util::StreamExt;
use hmac::{KeyInit, Mac};
use reqwest::Client;
use serde_json::Value;

use super::common::TestServer;
use super::push;

const SECRET: &str = "webhook-test-secret";

#[derive(Default)]
struct Receiver {
    down: AtomicBool,
    got: Mutex<Vec<Value>>,
}

/// A webhook receiver that checks each delivery's signature, and answers 503 while `down`.
async fn receiver() -> (String, Arc<Receiver>) {
    let state = Arc::new(Receiver::default());
    let s = state.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let s = s.clone();
            async move {
                if s.down.load(Ordering::SeqCst) {
                    return AxStatus::SERVICE_UNAVAILABLE;
                }
                let h = |k: &str| {
                    headers
                        .get(k)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let (id, ts, sig) = (
                    h("webhook-id"),
                    h("webhook-timestamp"),
                    h("webhook-signature"),
                );
                let mut mac =
                    hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
                mac.update(format!("{id}.{ts}.").as_bytes());
                mac.update(&body);
                let expected =
                    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
                if sig != format!("v1,{expected}") {
                    return AxStatus::UNAUTHORIZED;
                }
                match serde_json::from_slice::<Value>(&body) {
                    Ok(v) => {
                        s.got.lock().unwrap().push(v);
                        AxStatus::NO_CONTENT
                    }
                    Err(_) => AxStatus::BAD_REQUEST,
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, state)
}

fn seqs(r: &Receiver) -> Vec<u64> {
    r.got
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e["berthseq"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .or(e["berthseq"].as_u64())
        })
        .collect()
}

async fn wait_for(r: &Receiver, want: &[u64], secs: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        let got = seqs(r);
        if want.iter().all(|s| got.contains(s)) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

async fn audit_seqs(c: &Client, url: &str) -> Vec<u64> {
    let v = super::get_json(c, format!("{url}/api/v1/audit?limit=1000")).await;
    v["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["seq"].as_u64().unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_deliveries_survive_kill_9_and_are_signed() {
    let (hook, rx) = receiver().await;
    let tmp = tempfile::tempdir().unwrap();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!("[[webhook]]\nname = \"test\"\nurl = \"{hook}\"\nsecret = \"{SECRET}\"\n"),
    )
    .unwrap();
    let s = TestServer::start_with(&["--policy", policy.to_str().unwrap()]);
    let c = Client::new();

    push(&c, &s.url, "v1", "one", "0.8").await;
    let first = audit_seqs(&c, &s.url).await;
    assert!(
        wait_for(&rx, &first, 20).await,
        "delivered: {:?}, log: {first:?}",
        seqs(&rx)
    );
    let e = rx.got.lock().unwrap()[0].clone();
    assert_eq!(e["specversion"], "1.0");
    assert!(e["type"].as_str().unwrap().starts_with("dev.berth."), "{e}");

    // The receiver goes down; changes pile up; the registry is killed mid-retry.
    rx.down.store(true, Ordering::SeqCst);
    push(&c, &s.url, "v2", "two", "0.9").await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = s.restart();
    let all = audit_seqs(&c, &s.url).await;
    assert!(all.len() > first.len());
    rx.down.store(false, Ordering::SeqCst);
    assert!(
        wait_for(&rx, &all, 30).await,
        "delivered: {:?}, log: {all:?}",
        seqs(&rx)
    );
}

#[tokio::test]
async fn the_event_stream_replays_and_follows() {
    let s = TestServer::start();
    let c = Client::new();
    push(&c, &s.url, "v1", "one", "0.8").await;
    let resp = c
        .get(format!("{}/api/v1/events?since=0", s.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), reqwest::StatusCode::OK);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let mut stream = resp.bytes_stream();
    let url = s.url.clone();
    let c2 = c.clone();
    let follow = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        push(&c2, &url, "v2", "two", "0.9").await;
    });
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && text.matches("\ndata:").count() + usize::from(text.starts_with("data:")) < 4
    {
        match tokio::time::timeout(Duration::from_secs(5), stream.next()).await {
            Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    follow.await.unwrap();
    assert!(text.contains("id: 1") || text.contains("id:1"), "{text}");
    assert!(
        text.contains("dev.berth.manifest.push") && text.contains("dev.berth.tag.push"),
        "{text}"
    );
    assert!(
        text.matches("dev.berth.tag.push").count() >= 2,
        "the stream follows new changes: {text}"
    );
    // A watching client does not hold a graceful stop open: the stream ends.
    s.terminate();
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
    assert!(ended.is_ok(), "the event stream outlived SIGTERM");
    assert!(s.wait_exit(Duration::from_secs(10)), "the server stopped");
}
