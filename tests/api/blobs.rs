//! Blob storage: linking per repository, restart-resumable uploads, concurrent pushes.

use futures_util::StreamExt;
use reqwest::{Method, StatusCode};

use crate::common::TestServer;
use crate::*;

#[tokio::test]
async fn blob_is_readable_only_in_repositories_it_was_pushed_or_mounted_to() {
    let srv = TestServer::start();
    let (c, u) = (client(), srv.url.clone());
    let d = push_blob(&c, &u, "a/src", b"private bytes").await;
    let resp = send(&c, Method::GET, format!("{u}/v2/a/src/blobs/{d}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"private bytes");
    let resp = send(&c, Method::HEAD, format!("{u}/v2/b/other/blobs/{d}")).await;
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "must not leak across repositories"
    );

    // Mount with from=: 201 and now readable in the target.
    let resp = send(
        &c,
        Method::POST,
        format!("{u}/v2/b/other/blobs/uploads/?mount={d}&from=a/src"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    assert_eq!(resp.headers()["docker-content-digest"], d.as_str());
    let resp = send(&c, Method::GET, format!("{u}/v2/b/other/blobs/{d}")).await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), b"private bytes");

    // Without from= the registry finds the blob itself (automatic content discovery).
    let resp = send(
        &c,
        Method::POST,
        format!("{u}/v2/c/third/blobs/uploads/?mount={d}"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::CREATED);

    // A from= that is not a repository name (empty, malformed) names nowhere to
    // mount from: an upload session, not a search of every repository.
    for from in ["", "a//src", "A/SRC", "..%2Fa"] {
        let resp = send(
            &c,
            Method::POST,
            format!("{u}/v2/d/fourth/blobs/uploads/?mount={d}&from={from}"),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "from={from:?}");
    }
    let resp = send(&c, Method::HEAD, format!("{u}/v2/d/fourth/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);

    // A mount it cannot honour falls back to an upload session.
    let missing = sha256(b"never pushed");
    let resp = send(
        &c,
        Method::POST,
        format!("{u}/v2/c/third/blobs/uploads/?mount={missing}&from=a/src"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .contains("/blobs/uploads/")
    );

    // Deleting unlinks from one repository only.
    let resp = send(&c, Method::DELETE, format!("{u}/v2/b/other/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = send(&c, Method::GET, format!("{u}/v2/b/other/blobs/{d}")).await;
    expect_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let resp = send(&c, Method::GET, format!("{u}/v2/a/src/blobs/{d}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn upload_session_survives_restart() {
    // Megabytes in chunks that end off block boundaries: with direct I/O the
    // server stages and aligns them, and hashes them on a thread of its own.
    for flags in [
        &[][..],
        &["--direct-io"][..],
        &["--upload-io", "buffered"][..],
    ] {
        upload_survives_restart(flags).await;
    }
}

async fn upload_survives_restart(flags: &[&str]) {
    let srv = TestServer::start_with(flags);
    let c = client();
    let data: Vec<u8> = (0..3_000_001u32).map(|i| (i * 7 % 251) as u8).collect();
    let (a, b) = (1_000_003, 2_000_007);
    let loc = start_upload(&c, &srv.url, "resume/me").await;
    let resp = c
        .patch(format!("{}{loc}", srv.url))
        .header("content-range", format!("0-{}", a - 1))
        .body(data[..a].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED, "{flags:?}");

    let srv = srv.restart(); // SIGKILL and start again on the same data directory
    // Bytes past the recorded length, as an append killed before its record was
    // written leaves them: the session goes on from what was recorded.
    let id = loc.rsplit('/').next().unwrap();
    let file = srv.data_dir.join("uploads").join(id);
    let mut stray = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    std::io::Write::write_all(&mut stray, b"never acknowledged").unwrap();
    drop(stray);
    let c = client();
    let resp = c.get(format!("{}{loc}", srv.url)).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    assert_eq!(resp.headers()["range"], format!("0-{}", a - 1), "{flags:?}");
    let resp = c
        .patch(format!("{}{loc}", srv.url))
        .header("content-range", format!("{a}-{}", b - 1))
        .body(data[a..b].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.headers()["range"], format!("0-{}", b - 1));
    let d = sha256(&data);
    let resp = c
        .put(format!("{}{loc}?digest={d}", srv.url))
        .header("content-range", format!("{b}-{}", data.len() - 1))
        .body(data[b..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED, "{flags:?}");
    let got = c
        .get(format!("{}/v2/resume/me/blobs/{d}", srv.url))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(
        got.as_ref() == data.as_slice(),
        "{flags:?}: content differs"
    );
}

/// The first 64 MiB of an upload stay in the page cache, unsynced, by default:
/// a process that takes such a session over after a restart hashes its bytes
/// again rather than trusting the hash saved over them. Bytes a power cut
/// changed (here, by hand) then fail the digest; they never become the blob.
#[tokio::test]
async fn bytes_changed_under_an_unsynced_session_are_never_committed() {
    let srv = TestServer::start();
    let c = client();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13 % 251) as u8).collect();
    let loc = start_upload(&c, &srv.url, "resume/lost").await;
    let resp = c
        .patch(format!("{}{loc}", srv.url))
        .body(data[..1_000_000].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let srv = srv.restart();
    let id = loc.rsplit('/').next().unwrap();
    let file = srv.data_dir.join("uploads").join(id);
    let mut on_disk = std::fs::read(&file).unwrap();
    on_disk[4096..8192].fill(0); // what an unsynced page looks like after a power cut
    std::fs::write(&file, on_disk).unwrap();
    let d = sha256(&data);
    let c = client();
    let resp = c
        .put(format!("{}{loc}?digest={d}", srv.url))
        .body(data[1_000_000..].to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::BAD_REQUEST,
        "a digest mismatch, not a blob"
    );
    let resp = c
        .head(format!("{}/v2/resume/lost/blobs/{d}", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn concurrent_pushes_of_one_blob_both_succeed_and_store_it_once() {
    let srv = TestServer::start();
    let data: Vec<u8> = (0..4_000_000u32).map(|i| (i % 253) as u8).collect();
    let d = sha256(&data);
    let push = |repo: &'static str| {
        let (u, d, data) = (srv.url.clone(), d.clone(), data.clone());
        tokio::spawn(async move {
            let c = client();
            let loc = start_upload(&c, &u, repo).await;
            // Slow, chunked bodies so that both uploads are in flight together.
            let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
                data.chunks(500_000).map(|c| Ok(c.to_vec())).collect();
            let body = futures_util::stream::iter(chunks).then(|c| async move {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                c
            });
            c.put(format!("{u}{loc}?digest={d}"))
                .body(reqwest::Body::wrap_stream(body))
                .send()
                .await
                .unwrap()
                .status()
        })
    };
    let (a, b) = (push("same/one"), push("same/two"));
    assert_eq!(a.await.unwrap(), StatusCode::CREATED);
    assert_eq!(b.await.unwrap(), StatusCode::CREATED);
    let c = client();
    for repo in ["same/one", "same/two"] {
        let got = send(&c, Method::GET, format!("{}/v2/{repo}/blobs/{d}", srv.url)).await;
        assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
    }
    // Stored once: one file under blobs/, no upload leftovers.
    let hex = d.trim_start_matches("sha256:");
    let blob = srv.data_dir.join("blobs/sha256").join(&hex[..2]).join(hex);
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), data.len() as u64);
    let leftovers = std::fs::read_dir(srv.data_dir.join("uploads"))
        .unwrap()
        .count();
    assert_eq!(leftovers, 0, "upload files must be gone after commit");
}

#[tokio::test]
async fn range_reads() {
    let srv = TestServer::start();
    let c = client();
    let data: Vec<u8> = (0..=255u8).collect();
    let d = push_blob(&c, &srv.url, "ranges/r", &data).await;
    let url = format!("{}/v2/ranges/r/blobs/{d}", srv.url);
    for (range, start, end) in [
        ("bytes=0-9", 0, 9),
        ("bytes=250-", 250, 255),
        ("bytes=-6", 250, 255),
        ("bytes=10-1000", 10, 255),
    ] {
        let resp = c.get(&url).header("range", range).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::PARTIAL_CONTENT, "{range}");
        assert_eq!(
            resp.headers()["content-range"].to_str().unwrap(),
            format!("bytes {start}-{end}/256")
        );
        assert_eq!(resp.bytes().await.unwrap().as_ref(), &data[start..=end]);
    }
    for bad in ["bytes=256-", "bytes=9-3", "bytes=abc", "bytes=-0"] {
        let resp = c.get(&url).header("range", bad).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{bad}");
        assert_eq!(resp.headers()["content-range"], "bytes */256");
    }
    // Caching: the digest is the ETag.
    let resp = c
        .get(&url)
        .header("if-none-match", format!("\"{d}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    // If-None-Match compares weakly: a weak tag of the same value matches.
    let resp = c
        .get(&url)
        .header("if-none-match", format!("\"other\", W/\"{d}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
    // If-Range: the range holds only while the tag matches; otherwise the whole blob.
    for (if_range, status, len) in [
        (format!("\"{d}\""), StatusCode::PARTIAL_CONTENT, 10),
        ("\"other\"".to_string(), StatusCode::OK, 256),
        (format!("W/\"{d}\""), StatusCode::OK, 256),
        (
            "Tue, 01 Jan 2030 00:00:00 GMT".to_string(),
            StatusCode::OK,
            256,
        ),
    ] {
        let resp = c
            .get(&url)
            .header("range", "bytes=0-9")
            .header("if-range", &if_range)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "If-Range {if_range}");
        assert_eq!(
            resp.bytes().await.unwrap().len(),
            len,
            "If-Range {if_range}"
        );
    }
}

#[tokio::test]
async fn sha512_blobs() {
    use sha2::{Digest as _, Sha512};
    let srv = TestServer::start();
    let c = client();
    let data = b"sha512 content";
    let d = format!("sha512:{}", hex::encode(Sha512::digest(data)));
    // Monolithic.
    let resp = c
        .post(format!("{}/v2/s/five/blobs/uploads/?digest={d}", srv.url))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // Chunked, then completed with a sha512 digest (the session hashed sha256 as it went).
    let loc = start_upload(&c, &srv.url, "s/twelve").await;
    c.patch(format!("{}{loc}", srv.url))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    let resp = c
        .put(format!("{}{loc}?digest={d}", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = send(
        &c,
        Method::GET,
        format!("{}/v2/s/twelve/blobs/{d}", srv.url),
    )
    .await;
    assert_eq!(got.headers()["docker-content-digest"], d.as_str());
    assert_eq!(got.bytes().await.unwrap().as_ref(), data);
}

#[tokio::test]
async fn idle_upload_sessions_expire() {
    let srv = TestServer::start_with(&["--upload-ttl-secs", "1"]);
    let c = client();
    let loc = start_upload(&c, &srv.url, "idle/upload").await;
    c.patch(format!("{}{loc}", srv.url))
        .body("some bytes")
        .send()
        .await
        .unwrap();
    // Expiry runs every ttl/4 (at least each second) and removes sessions idle over the TTL.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    loop {
        let resp = c.get(format!("{}{loc}", srv.url)).send().await.unwrap();
        if resp.status() == StatusCode::NOT_FOUND {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "idle upload never expired"
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
    assert_eq!(
        std::fs::read_dir(srv.data_dir.join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

/// HTTP/2 frames a body itself: a request may carry one with neither
/// `Content-Length` nor `Transfer-Encoding`, and the closing `PUT` must still take it.
#[tokio::test]
async fn an_http2_put_with_a_body_of_unknown_length_closes_the_upload() {
    use http_body_util::{BodyExt, StreamBody};
    use hyper::body::Frame;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let srv = TestServer::start();
    let c = client();
    let loc = start_upload(&c, &srv.url, "h2/put").await;
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let d = sha256(&data);

    let tcp = tokio::net::TcpStream::connect(&srv.addr).await.unwrap();
    let (mut h2, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .expect("h2c (prior knowledge) handshake");
    tokio::spawn(conn);
    let frames: Vec<Result<Frame<bytes::Bytes>, std::io::Error>> = data
        .chunks(64 * 1024)
        .map(|c| Ok(Frame::data(bytes::Bytes::copy_from_slice(c))))
        .collect();
    let body = StreamBody::new(futures_util::stream::iter(frames));
    let req = hyper::Request::put(format!("http://{}{loc}?digest={d}", srv.addr))
        .body(body)
        .unwrap();
    assert!(!req.headers().contains_key("content-length"));
    let resp = h2.send_request(req).await.unwrap();
    let status = resp.status();
    let text = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&text)
    );

    let got = send(&c, Method::GET, format!("{}/v2/h2/put/blobs/{d}", srv.url)).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), data.as_slice());
}

/// A client that stops sending in the middle of a chunk must not hold a file-I/O
/// thread while it dawdles: with two such threads and twice as many stalled
/// uploads, other clients' pushes and pulls still go through.
#[tokio::test]
async fn stalled_uploads_do_not_hold_the_file_io_threads() {
    use tokio::io::AsyncWriteExt;

    let srv = TestServer::start_with(&["--io-threads", "2"]);
    let c = client();
    let mut locations = Vec::new();
    for _ in 0..4 {
        locations.push(start_upload(&c, &srv.url, "slow/upload").await);
    }
    let mut stalled = Vec::new();
    for loc in locations {
        let addr = srv.addr.clone();
        stalled.push(tokio::spawn(async move {
            let mut s = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let head = format!(
                "PATCH {loc} HTTP/1.1\r\nHost: {addr}\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                8 << 20
            );
            s.write_all(head.as_bytes()).await.unwrap();
            // Half the declared body, then nothing: the upload is mid-chunk for good.
            s.write_all(&vec![7u8; 4 << 20]).await.unwrap();
            std::future::pending::<()>().await;
            drop(s);
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let served = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        let d = push_blob(&c, &srv.url, "fast/client", b"not kept waiting").await;
        let url = format!("{}/v2/fast/client/blobs/{d}", srv.url);
        send(&c, Method::GET, url).await.bytes().await.unwrap()
    })
    .await
    .expect("a push and a pull must not wait for stalled uploads");
    assert_eq!(served.as_ref(), b"not kept waiting");
    stalled.iter().for_each(|t| t.abort());
}

/// A chunk the server fails to write (here the disk is full: the upload file is
/// `/dev/full`) is the server's fault: a 500, which clients retry, never a 400
/// blaming the request. The session survives and reports what it kept.
#[tokio::test]
async fn a_chunk_the_disk_refuses_is_a_server_error_not_a_bad_request() {
    let srv = TestServer::start();
    let c = client();
    let loc = start_upload(&c, &srv.url, "disk/full").await;
    let id = loc.rsplit('/').next().unwrap();
    let file = srv.data_dir.join("uploads").join(id);
    std::fs::remove_file(&file).unwrap();
    std::os::unix::fs::symlink("/dev/full", &file).unwrap();
    let resp = c
        .patch(format!("{}{loc}", srv.url))
        .header("content-type", "application/octet-stream")
        .body(vec![1u8; 3 << 20])
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::INTERNAL_SERVER_ERROR, "UNKNOWN").await;
    let status = send(&c, Method::GET, format!("{}{loc}", srv.url)).await;
    assert_eq!(status.status(), StatusCode::NO_CONTENT);
}

/// `OCI-Chunk-Min-Length` is what clients are asked to send, not a rule: the
/// final chunk may have any length (the spec's words), and a `PATCH` does not
/// say whether it is the final one, so a short chunk is taken like any other.
#[tokio::test]
async fn a_chunk_below_the_advertised_minimum_is_accepted() {
    let srv = TestServer::start_with(&["--chunk-min-length", "64"]);
    let c = client();
    let resp = c
        .post(format!("{}/v2/min/chunk/blobs/uploads/", srv.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    assert_eq!(resp.headers()["oci-chunk-min-length"], "64");
    let loc = resp.headers()["location"].to_str().unwrap().to_string();
    let data = vec![9u8; 100];
    let mut loc = loc;
    for (start, chunk) in [(0usize, &data[..64]), (64, &data[64..])] {
        let resp = c
            .patch(format!("{}{loc}", srv.url))
            .header("content-type", "application/octet-stream")
            .header(
                "content-range",
                format!("{start}-{}", start + chunk.len() - 1),
            )
            .body(chunk.to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED, "chunk at {start}");
        loc = resp.headers()["location"].to_str().unwrap().to_string();
    }
    let resp = c
        .put(format!("{}{loc}?digest={}", srv.url, sha256(&data)))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}
