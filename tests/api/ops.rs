//! Operations: health, readiness, metrics, request ids, graceful shutdown, the open-files
//! limit, connection timeouts.

use std::time::Duration;

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};

use crate::common::TestServer;
use crate::*;

#[tokio::test]
async fn health_ready_metrics_and_request_ids() {
    let srv = TestServer::start();
    let c = client();
    let resp = send(&c, Method::GET, format!("{}/v2/", srv.url)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["docker-distribution-api-version"],
        "registry/2.0"
    );
    assert!(resp.headers().contains_key("x-request-id"));
    let resp = c
        .get(format!("{}/v2/", srv.url))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "trace-me-42");
    assert_eq!(
        send(&c, Method::GET, format!("{}/healthz", srv.url))
            .await
            .status(),
        StatusCode::OK
    );
    assert_eq!(
        send(&c, Method::GET, format!("{}/readyz", srv.url))
            .await
            .status(),
        StatusCode::OK
    );

    push_blob(&c, &srv.url, "metrics/repo", &[7u8; 1000]).await;
    let d = sha256(&[7u8; 1000]);
    send(
        &c,
        Method::GET,
        format!("{}/v2/metrics/repo/blobs/{d}", srv.url),
    )
    .await
    .bytes()
    .await
    .unwrap();
    let text = send(&c, Method::GET, format!("{}/metrics", srv.url))
        .await
        .text()
        .await
        .unwrap();
    for needle in [
        "berth_http_requests_total{route=\"upload\",method=\"POST\",status=\"201\"} 1",
        "berth_http_requests_total{route=\"blob\",method=\"GET\",status=\"200\"} 1",
        "berth_http_received_bytes_total{route=\"upload\"} 1000",
        "berth_http_sent_bytes_total{route=\"blob\"} 1000",
        "berth_http_request_duration_seconds_bucket{le=",
        "berth_upload_sessions_active",
    ] {
        assert!(text.contains(needle), "metrics lack {needle:?}:\n{text}");
    }
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let srv = TestServer::start();
    let c = client();
    let loc = start_upload(&c, &srv.url, "graceful/stop").await;
    let data = vec![3u8; 2_000_000];
    let d = sha256(&data);
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        data.chunks(200_000).map(|c| Ok(c.to_vec())).collect();
    let body = futures_util::stream::iter(chunks).then(|c| async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        c
    });
    let url = format!("{}{loc}?digest={d}", srv.url);
    let upload = tokio::spawn(async move {
        c.put(url)
            .body(reqwest::Body::wrap_stream(body))
            .send()
            .await
            .map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    srv.terminate();
    let status = upload
        .await
        .unwrap()
        .expect("the in-flight upload must complete");
    assert_eq!(status, StatusCode::CREATED);
    let base = srv.url.clone();
    assert!(
        srv.wait_exit(Duration::from_secs(10)),
        "server exits after draining"
    );
    // New connections are refused once it stopped.
    assert!(client().get(format!("{base}/v2/")).send().await.is_err());
}

/// The server raises its soft open-files limit to the hard one at start: each
/// connection and upload holds a descriptor, and a soft limit of a few hundred
/// would turn clients away long before the machine runs out.
#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new("prlimit")
        .arg("--nofile=256:4096")
        .arg(env!("CARGO_BIN_EXE_berth"))
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("prlimit (util-linux) runs berth");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("berth listening on"), "{line:?}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let open_files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files")
        .split_whitespace()
        .collect();
    assert_eq!(
        open_files[3..5],
        ["4096", "4096"],
        "soft and hard: {limits}"
    );
}

/// A client that goes quiet for longer than `--client-timeout-secs` is cut
/// off, whether over a request head, between requests or in the middle of a
/// body: otherwise each such client would hold a connection, a descriptor and
/// perhaps an upload session for as long as it liked. A body that merely pauses
/// for less than that goes through, and bytes received before a cut stay in
/// the upload for the client to resume from.
#[tokio::test]
async fn clients_that_go_quiet_are_cut_off_and_pauses_are_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    let srv = TestServer::start_with(&["--client-timeout-secs", "2"]);
    let c = client();
    let paused_loc = start_upload(&c, &srv.url, "timeouts/paused").await;
    let stalled_loc = start_upload(&c, &srv.url, "timeouts/stalled").await;
    let mut slow_head = TcpStream::connect(&srv.addr).await.unwrap();
    slow_head
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: berth\r\n")
        .await
        .unwrap();
    let mut idle = TcpStream::connect(&srv.addr).await.unwrap();
    idle.write_all(b"GET /v2/ HTTP/1.1\r\nHost: berth\r\n\r\n")
        .await
        .unwrap();
    let half_chunk = |loc: &str| {
        format!(
            "PATCH {loc} HTTP/1.1\r\nHost: berth\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: 10\r\nConnection: close\r\n\r\n12345"
        )
    };
    let mut paused = TcpStream::connect(&srv.addr).await.unwrap();
    paused
        .write_all(half_chunk(&paused_loc).as_bytes())
        .await
        .unwrap();
    let mut stalled = TcpStream::connect(&srv.addr).await.unwrap();
    stalled
        .write_all(half_chunk(&stalled_loc).as_bytes())
        .await
        .unwrap();

    let read_until_closed = |mut conn: TcpStream| async move {
        let mut got = Vec::new();
        let closed =
            tokio::time::timeout(Duration::from_secs(15), conn.read_to_end(&mut got)).await;
        (closed.is_ok(), String::from_utf8_lossy(&got).into_owned())
    };
    let finish_paused = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        paused.write_all(b"67890").await.unwrap();
        read_until_closed(paused).await
    };
    let (slow_head, idle, paused, stalled) = tokio::join!(
        read_until_closed(slow_head),
        read_until_closed(idle),
        finish_paused,
        read_until_closed(stalled),
    );
    assert!(slow_head.0, "an unfinished head is cut off: {slow_head:?}");
    assert!(!slow_head.1.contains(" 200 "), "{slow_head:?}");
    assert!(idle.0, "an idle connection is closed: {idle:?}");
    assert!(idle.1.starts_with("HTTP/1.1 200 "), "{idle:?}");
    assert!(
        paused.1.starts_with("HTTP/1.1 202 "),
        "a paused body still completes: {paused:?}"
    );
    assert!(paused.1.contains("range: 0-9\r\n"), "{paused:?}");
    assert!(stalled.0, "a stalled body is cut off: {stalled:?}");
    assert!(stalled.1.starts_with("HTTP/1.1 408 "), "{stalled:?}");
    let status = send(&c, Method::GET, format!("{}{stalled_loc}", srv.url)).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
    assert_eq!(status.headers()["range"], "0-4", "what arrived is kept");
}
