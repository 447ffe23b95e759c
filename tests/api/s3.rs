//! Berth on S3 (SeaweedFS on loopback, started by the test command), looked at
//! from both sides: the registry's HTTP API, and the bucket itself through the
//! S3 API (what is left there after failures, cancels and crashes).

use std::time::Duration;

use reqwest::{Client, Method, StatusCode};

use super::common::TestServer;
use super::*;

/// The bucket behind a server started with `TestServer::start_s3`.
struct Bucket {
    client: aws_sdk_s3::Client,
    name: String,
    prefix: String,
}

impl Bucket {
    async fn of(srv: &TestServer) -> Bucket {
        #[derive(serde::Deserialize)]
        struct File {
            s3: berth::store::s3::S3Settings,
        }
        let path = srv.data_dir.parent().unwrap().join("berth.toml");
        let file: File = toml::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        Bucket {
            client: file.s3.client().await,
            name: file.s3.bucket,
            prefix: file.s3.prefix,
        }
    }

    /// Keys of the objects under `under` (after the store's prefix).
    async fn keys(&self, under: &str) -> Vec<String> {
        let out = self
            .client
            .list_objects_v2()
            .bucket(&self.name)
            .prefix(format!("{}{under}", self.prefix))
            .send()
            .await
            .unwrap();
        out.contents()
            .iter()
            .filter_map(|o| o.key().map(str::to_string))
            .collect()
    }

    async fn multipart_uploads(&self) -> usize {
        let out = self
            .client
            .list_multipart_uploads()
            .bucket(&self.name)
            .send()
            .await
            .unwrap();
        out.uploads().len()
    }

    /// Nothing of any upload is left: no multipart upload, no staged object.
    async fn assert_no_uploads(&self, when: &str) {
        assert_eq!(
            self.multipart_uploads().await,
            0,
            "multipart uploads {when}"
        );
        assert_eq!(self.keys("uploads/").await, Vec::<String>::new(), "{when}");
    }

    fn blob_key(&self, digest: &str) -> String {
        let (alg, hex) = digest.split_once(':').unwrap();
        format!("{}blobs/{alg}/{hex}", self.prefix)
    }

    async fn has_blob(&self, digest: &str) -> bool {
        self.client
            .head_object()
            .bucket(&self.name)
            .key(self.blob_key(digest))
            .send()
            .await
            .is_ok()
    }
}

fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(6_364_136_223_846_793_005) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

async fn patch(c: &Client, url: &str, loc: &str, from: usize, bytes: &[u8]) -> reqwest::Response {
    c.patch(format!("{url}{loc}"))
        .header("content-type", "application/octet-stream")
        .header(
            "content-range",
            format!("{from}-{}", from + bytes.len() - 1),
        )
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap()
}

async fn location(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    resp.headers()["location"].to_str().unwrap().to_string()
}

/// Chunks of 256 KiB coalesced into 5 MiB parts across a `kill -9` of the
/// registry, an out-of-order chunk refused on the way, then committed: the blob
/// is whole and nothing of the session is left in the bucket.
#[tokio::test]
async fn s3_chunked_upload_survives_a_restart() {
    let srv = TestServer::start_s3(false, &[]);
    let c = client();
    let data = noise((11 << 20) + 4321, 1);
    let loc = start_upload(&c, &srv.url, "s3/chunks").await;
    let mut loc = loc;
    let mut sent = 0;
    let half = 6 << 20;
    while sent < half {
        let end = (sent + (256 << 10)).min(half);
        loc = location(patch(&c, &srv.url, &loc, sent, &data[sent..end]).await).await;
        sent = end;
    }
    let srv = srv.restart();
    let url = srv.url.clone();
    // Not where the session stands: refused, nothing appended.
    let skip = patch(&c, &url, &loc, sent + 10, &data[sent + 10..sent + 20]).await;
    assert_eq!(skip.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let r = send(&c, Method::GET, format!("{url}{loc}")).await;
    assert_eq!(r.headers()["range"], format!("0-{}", sent - 1).as_str());
    loc = location(patch(&c, &url, &loc, sent, &data[sent..]).await).await;
    let d = sha256(&data);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{url}{loc}{sep}digest={d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = c
        .get(format!("{url}/v2/s3/chunks/blobs/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), StatusCode::OK);
    assert!(got.bytes().await.unwrap().as_ref() == data.as_slice());
    let bucket = Bucket::of(&srv).await;
    bucket.assert_no_uploads("after the commit").await;
}

/// A session whose digest does not match, and one cancelled, leave nothing in
/// the bucket: no blob under the digest, no multipart upload, no staged bytes.
#[tokio::test]
async fn s3_failed_and_cancelled_uploads_leave_nothing() {
    let srv = TestServer::start_s3(false, &[]);
    let (c, url) = (client(), srv.url.clone());
    let bucket = Bucket::of(&srv).await;
    let data = noise(7 << 20, 2);
    let claimed = sha256(b"something else");
    let loc = start_upload(&c, &url, "s3/fail").await;
    let loc = location(patch(&c, &url, &loc, 0, &data).await).await;
    assert_eq!(bucket.multipart_uploads().await, 1, "a part was sent");
    let sep = if loc.contains('?') { '&' } else { '?' };
    let r = c
        .put(format!("{url}{loc}{sep}digest={claimed}"))
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    assert!(!bucket.has_blob(&claimed).await);
    assert!(!bucket.has_blob(&sha256(&data)).await);
    bucket.assert_no_uploads("after a digest mismatch").await;

    // A monolithic push with the wrong digest: the same.
    let r = c
        .post(format!("{url}/v2/s3/fail/blobs/uploads/?digest={claimed}"))
        .body(data.clone())
        .send()
        .await
        .unwrap();
    expect_error(r, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    bucket
        .assert_no_uploads("after a monolithic mismatch")
        .await;

    let loc = start_upload(&c, &url, "s3/fail").await;
    location(patch(&c, &url, &loc, 0, &data).await).await;
    let r = send(&c, Method::DELETE, format!("{url}{loc}")).await;
    assert_eq!(r.status(), StatusCode::NO_CONTENT);
    bucket.assert_no_uploads("after a cancel").await;
}

/// A monolithic push cut off by a `kill -9` of the registry leaves a multipart
/// upload that no session owns; garbage collection aborts it.
#[tokio::test]
async fn s3_orphaned_multipart_uploads_are_collected() {
    let srv = TestServer::start_s3(false, &[]);
    let url = srv.url.clone();
    let bucket = Bucket::of(&srv).await;
    let data = noise(12 << 20, 3);
    let d = sha256(&data);
    // A body that sends 12 MiB and then never ends.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
    let push = tokio::spawn(async move {
        client()
            .post(format!("{url}/v2/s3/cut/blobs/uploads/?digest={d}"))
            .body(body)
            .send()
            .await
    });
    for chunk in data.chunks(1 << 20) {
        tx.send(Ok(chunk.to_vec())).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while bucket.multipart_uploads().await == 0 {
        assert!(std::time::Instant::now() < deadline, "no part was sent");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let srv = srv.restart();
    drop(tx);
    let _ = push.await;
    assert_eq!(bucket.multipart_uploads().await, 1, "left by the crash");
    // S3 keeps times in whole seconds: idle for at least one.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let c = client();
    let r = send(
        &c,
        Method::POST,
        format!("{}/api/v1/gc?apply=true&grace_secs=0", srv.url),
    )
    .await;
    assert_eq!(r.status(), StatusCode::OK);
    let report: serde_json::Value = r.json().await.unwrap();
    assert!(report["uploads"].as_u64() >= Some(1), "{report}");
    bucket.assert_no_uploads("after the collection").await;
}

fn tokio_stream_of(
    mut rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures_util::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// With redirects on, a blob `GET` answers `307` to a presigned URL that serves
/// the bytes, whole and in ranges; `HEAD` is answered by the registry itself.
#[tokio::test]
async fn s3_redirects_downloads_to_presigned_urls() {
    let srv = TestServer::start_s3(true, &[]);
    let url = srv.url.clone();
    let no_follow = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let data = noise(6 << 20, 4);
    let d = push_blob(&no_follow, &url, "s3/dl", &data).await;
    let head = send(
        &no_follow,
        Method::HEAD,
        format!("{url}/v2/s3/dl/blobs/{d}"),
    )
    .await;
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        head.headers()["content-length"],
        (6 << 20).to_string().as_str()
    );
    let r = send(&no_follow, Method::GET, format!("{url}/v2/s3/dl/blobs/{d}")).await;
    assert_eq!(r.status(), StatusCode::TEMPORARY_REDIRECT);
    assert_eq!(r.headers()["docker-content-digest"], d.as_str());
    let to = r.headers()["location"].to_str().unwrap().to_string();
    assert!(to.contains("X-Amz-Signature="), "{to}");
    let whole = no_follow.get(&to).send().await.unwrap();
    assert_eq!(whole.status(), StatusCode::OK);
    assert!(whole.bytes().await.unwrap().as_ref() == data.as_slice());
    let part = no_follow
        .get(&to)
        .header("range", "bytes=5242870-5242889")
        .send()
        .await
        .unwrap();
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        part.bytes().await.unwrap().as_ref(),
        &data[5_242_870..5_242_890]
    );
    // A URL for another key does not verify.
    let forged = to.replace(&d[7..15], "00000000");
    let r = no_follow.get(&forged).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    // Unknown blobs are still the registry's 404, not a redirect to nothing.
    let r = send(
        &no_follow,
        Method::GET,
        format!("{url}/v2/s3/dl/blobs/{}", sha256(b"absent")),
    )
    .await;
    expect_error(r, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
}

/// A stored object altered in the bucket is found by a scrub and set aside;
/// without redirects it is never served as the blob.
#[tokio::test]
async fn s3_scrub_finds_an_altered_object() {
    let srv = TestServer::start_s3(false, &[]);
    let (c, url) = (client(), srv.url.clone());
    let bucket = Bucket::of(&srv).await;
    let data = noise(1 << 20, 5);
    let d = push_blob(&c, &url, "s3/rot", &data).await;
    let mut rotten = data.clone();
    rotten[1000] ^= 1;
    bucket
        .client
        .put_object()
        .bucket(&bucket.name)
        .key(bucket.blob_key(&d))
        .body(rotten.into())
        .send()
        .await
        .unwrap();
    let out = berth_cli(&srv.addr, &["scrub"], 1);
    assert!(out.contains(&d), "{out}");
    assert!(!bucket.has_blob(&d).await, "set aside");
    assert_eq!(bucket.keys("quarantine/").await.len(), 1);
    let r = send(&c, Method::GET, format!("{url}/v2/s3/rot/blobs/{d}")).await;
    assert_ne!(r.status(), StatusCode::OK);
    // Pushed again, whole again.
    push_blob(&c, &url, "s3/rot", &data).await;
    let r = send(&c, Method::GET, format!("{url}/v2/s3/rot/blobs/{d}")).await;
    assert!(r.bytes().await.unwrap().as_ref() == data.as_slice());
}

/// Garbage collection on S3 deletes the objects of what nothing references,
/// and the accounting counts what is in the bucket.
#[tokio::test]
async fn s3_gc_and_accounting() {
    let srv = TestServer::start_s3(false, &[]);
    let (c, url) = (client(), srv.url.clone());
    let bucket = Bucket::of(&srv).await;
    let keep = push_image(&c, &url, "s3/gc", "v1", "kept").await;
    let gone = push_image(&c, &url, "s3/gc", "v2", "collected").await;
    let r = send(
        &c,
        Method::DELETE,
        format!("{url}/v2/s3/gc/manifests/{gone}"),
    )
    .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let before = bucket.keys("blobs/").await.len();
    // S3 keeps times in whole seconds, so a sweep keeps what was written in
    // the second before it began: wait that out.
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = send(
        &c,
        Method::POST,
        format!("{url}/api/v1/gc?apply=true&grace_secs=0"),
    )
    .await;
    let report: serde_json::Value = r.json().await.unwrap();
    let swept = report["blobs"].as_array().unwrap().len();
    assert_eq!(
        swept, 3,
        "the deleted version's manifest, config and layer: {report}"
    );
    assert_eq!(bucket.keys("blobs/").await.len(), before - 3);
    assert!(bucket.has_blob(&keep).await);
    let du: serde_json::Value = send(&c, Method::GET, format!("{url}/api/v1/storage"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(du["total"]["blobs"].as_u64(), Some(3), "{du}");
}
