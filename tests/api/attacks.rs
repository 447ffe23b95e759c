//! Connections that attack the server rather than use it: ones that never
//! speak (or send half an HTTP/2 preface), a flood of them from one address,
//! and a client that stops reading a response. Each is bounded in time and in
//! count, and none locks anyone else out.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::common::TestServer;
use crate::*;

/// Another loopback address: the kernel routes all of 127/8 to `lo`, so a
/// client bound here is a different client address to the server.
const OTHER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// Whether the server closes `conn` within `within`, and how long it took.
async fn closed_within(mut conn: TcpStream, within: Duration) -> Option<Duration> {
    let start = Instant::now();
    let mut sink = Vec::new();
    match tokio::time::timeout(within, conn.read_to_end(&mut sink)).await {
        Ok(_) => Some(start.elapsed()),
        Err(_) => None,
    }
}

fn metric(text: &str, line_start: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no metric {line_start} in:\n{text}"))
}

async fn metrics(url: &str) -> String {
    client()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics body")
}

/// Silent connections, and ones that stop inside an HTTP/2 preface, are closed
/// once the client timeout has passed since accept; a flood of them from one
/// address gets no more than that address's share, so other clients are served
/// throughout, and the flooding address itself is served again once its silent
/// connections are gone.
#[tokio::test]
async fn silent_connections_are_closed_and_a_flood_locks_no_one_out() {
    let srv = TestServer::start_with(&[
        "--client-timeout-secs",
        "2",
        "--max-connections-per-address",
        "40",
    ]);
    let mut silent = Vec::new();
    for _ in 0..30 {
        silent.push(TcpStream::connect(&srv.addr).await.expect("connect"));
    }
    let mut half_preface = Vec::new();
    for _ in 0..10 {
        let mut c = TcpStream::connect(&srv.addr).await.expect("connect");
        c.write_all(b"PRI * HTTP/2.0\r\n").await.expect("write");
        half_preface.push(c);
    }
    // The address's share is taken: more from it are closed at accept.
    let over = TcpStream::connect(&srv.addr).await.expect("connect");
    let refused_after = closed_within(over, Duration::from_secs(1)).await;
    assert!(
        refused_after.is_some(),
        "a connection over the per-address share is closed at once"
    );
    // Another address is served meanwhile.
    let other = reqwest::Client::builder()
        .local_address(IpAddr::V4(OTHER))
        .build()
        .expect("client");
    let resp = other
        .get(format!("{}/v2/", srv.url))
        .send()
        .await
        .expect("request from another address");
    assert_eq!(resp.status(), StatusCode::OK);

    // Each silent connection is closed about two seconds after accept.
    let waits = silent
        .into_iter()
        .chain(half_preface)
        .map(|c| closed_within(c, Duration::from_secs(10)));
    for (i, closed) in futures_util::future::join_all(waits)
        .await
        .into_iter()
        .enumerate()
    {
        let after = closed.unwrap_or_else(|| panic!("silent connection {i} never closed"));
        assert!(
            after < Duration::from_secs(8),
            "connection {i} closed after {after:?}"
        );
    }
    // And the flooding address is served again.
    let resp = client()
        .get(format!("{}/v2/", srv.url))
        .send()
        .await
        .expect("request after the flood");
    assert_eq!(resp.status(), StatusCode::OK);

    let m = metrics(&srv.url).await;
    assert!(
        metric(
            &m,
            "berth_connections_refused_total{reason=\"per_address\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &m,
            "berth_connections_timed_out_total{reason=\"first_request\"}"
        ) >= 40.0
    );
}

/// A client that asks for a large blob and stops reading is cut off once the
/// response has made no progress for the client timeout, instead of holding its
/// buffers and descriptors for ever; the one that reads gets the whole blob.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    let srv = TestServer::start_with(&["--client-timeout-secs", "2"]);
    let blob = vec![7u8; 64 << 20];
    let digest = push_blob(&client(), &srv.url, "attacks/big", &blob).await;
    let mut stalled = TcpStream::connect(&srv.addr).await.expect("connect");
    stalled
        .write_all(
            format!("GET /v2/attacks/big/blobs/{digest} HTTP/1.1\r\nHost: berth\r\n\r\n")
                .as_bytes(),
        )
        .await
        .expect("write");
    // Not reading: the socket buffers fill and the server's writes stall.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stalled.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the stalled connection was closed");
    assert!(
        got.len() < blob.len(),
        "the stalled response was cut off ({} bytes arrived)",
        got.len()
    );
    let whole = client()
        .get(format!("{}/v2/attacks/big/blobs/{digest}", srv.url))
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("body");
    assert_eq!(whole.len(), blob.len(), "a reading client gets everything");
    let m = metrics(&srv.url).await;
    assert!(metric(&m, "berth_connections_timed_out_total{reason=\"write\"}") >= 1.0);
}

#[tokio::test]
async fn upload_sessions_are_capped_per_client() {
    let srv = TestServer::start_with(&["--max-uploads-per-identity", "3"]);
    let c = client();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        sessions.push(start_upload(&c, &srv.url, "flood/x").await);
    }
    let resp = c
        .post(format!("{}/v2/flood/y/blobs/uploads/", srv.url))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::TOO_MANY_REQUESTS, "TOOMANYREQUESTS").await;
    // A mount that falls back to a session counts the same.
    let resp = c
        .post(format!(
            "{}/v2/flood/y/blobs/uploads/?mount={}&from=none",
            srv.url,
            sha256(b"absent")
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    // A monolithic push holds no session.
    push_blob(&c, &srv.url, "flood/y", b"one shot").await;
    // Cancelling one frees its place.
    let resp = c
        .delete(format!("{}{}", srv.url, sessions.pop().unwrap()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    start_upload(&c, &srv.url, "flood/y").await;
}
