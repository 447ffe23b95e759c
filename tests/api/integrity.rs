//! Rot on disk: a stored copy altered under the registry is never served as
//! whole, a scrub finds what a read cannot, and pushing the content again
//! repairs it.

use std::path::{Path, PathBuf};

use reqwest::{Method, StatusCode};

use super::common::TestServer;
use super::{
    berth_cli, client, expect_error, image_manifest, push_blob, put_manifest, send, sha256,
    start_upload,
};

fn blob_file(data_dir: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").unwrap();
    data_dir.join("blobs/sha256").join(&hex[..2]).join(hex)
}

fn flip_a_byte(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

fn quarantined(data_dir: &Path) -> usize {
    std::fs::read_dir(data_dir.join("quarantine"))
        .map(|d| d.count())
        .unwrap_or(0)
}

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A manifest whose stored bytes changed is refused (its digest is checked on
/// every read), set aside, and restored by pushing it again.
#[tokio::test]
async fn a_rotted_manifest_is_refused_and_a_push_restores_it() {
    let srv = TestServer::start();
    let c = client();
    let (config, layer) = (b"{}".as_slice(), b"some layer".as_slice());
    push_blob(&c, &srv.url, "rot/m", config).await;
    push_blob(&c, &srv.url, "rot/m", layer).await;
    let body = image_manifest(config, &[layer], serde_json::json!({}));
    let digest = sha256(&body);
    assert_eq!(
        put_manifest(&c, &srv.url, "rot/m", "v1", &body).await,
        StatusCode::CREATED
    );

    flip_a_byte(&blob_file(&srv.data_dir, &digest), 10);
    for reference in ["v1", digest.as_str()] {
        let url = format!("{}/v2/rot/m/manifests/{reference}", srv.url);
        let resp = c
            .get(&url)
            .header("accept", MANIFEST_TYPE)
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
        // Set aside on the first read: a HEAD no longer finds it either.
        let resp = send(&c, Method::HEAD, url).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "HEAD {reference}");
    }
    assert_eq!(
        quarantined(&srv.data_dir),
        1,
        "the rotted copy is kept aside"
    );

    assert_eq!(
        put_manifest(&c, &srv.url, "rot/m", "v1", &body).await,
        StatusCode::CREATED
    );
    let resp = c
        .get(format!("{}/v2/rot/m/manifests/v1", srv.url))
        .header("accept", MANIFEST_TYPE)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.bytes().await.unwrap().as_ref(), body.as_slice());
    let metrics = send(&c, Method::GET, format!("{}/metrics", srv.url)).await;
    let text = metrics.text().await.unwrap();
    assert!(
        text.lines()
            .any(|l| l == "berth_integrity_failures_total 1"),
        "{text}"
    );
}

/// A blob cut short (or grown) on disk is not served as if whole, by `GET`,
/// `Range` or `HEAD`; a push of the same content puts a whole copy back.
#[tokio::test]
async fn a_blob_of_the_wrong_size_is_not_served_and_a_push_restores_it() {
    let srv = TestServer::start();
    let c = client();
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    let digest = push_blob(&c, &srv.url, "rot/b", &data).await;
    let file = blob_file(&srv.data_dir, &digest);
    std::fs::write(&file, &data[..100_000]).unwrap();

    let url = format!("{}/v2/rot/b/blobs/{digest}", srv.url);
    let resp = c
        .get(&url)
        .header("range", "bytes=0-99")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let resp = send(&c, Method::GET, url.clone()).await;
    expect_error(resp, StatusCode::NOT_FOUND, "BLOB_UNKNOWN").await;
    let resp = send(&c, Method::HEAD, url.clone()).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(quarantined(&srv.data_dir), 1);

    // A mount from the repository does not link the missing copy either.
    let resp = c
        .post(format!(
            "{}/v2/rot/other/blobs/uploads/?mount={digest}&from=rot/b",
            srv.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::ACCEPTED,
        "an upload starts instead"
    );

    push_blob(&c, &srv.url, "rot/b", &data).await;
    let resp = send(&c, Method::GET, url).await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(resp.bytes().await.unwrap().as_ref() == data.as_slice());
}

/// A flipped byte in a large blob keeps its size: a read cannot tell without
/// hashing it, a scrub does. It reports and sets the copy aside, and a push
/// restores it. A push over a rotted copy that nobody scrubbed replaces it too.
#[tokio::test]
async fn a_scrub_finds_a_flipped_byte_and_a_push_replaces_the_copy() {
    let srv = TestServer::start();
    let c = client();
    let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let digest = push_blob(&c, &srv.url, "rot/s", &data).await;
    let good = push_blob(&c, &srv.url, "rot/s", b"an untouched blob").await;
    let file = blob_file(&srv.data_dir, &digest);
    flip_a_byte(&file, 1_234_567);

    let scrub = || async {
        let resp = send(&c, Method::POST, format!("{}/api/v1/scrub", srv.url)).await;
        assert_eq!(resp.status(), StatusCode::OK);
        let text = resp.text().await.unwrap();
        let last = text.lines().last().expect("a report line");
        let v: serde_json::Value = serde_json::from_str(last).unwrap();
        v["report"].clone()
    };
    // `berth scrub` fails (exit status 1) and prints the registry's report.
    let stdout = berth_cli(&srv.addr, &["scrub", "--json"], 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["blobs_checked"], 2, "{report}");
    assert_eq!(report["bytes_checked"], data.len() as u64 + 17, "{report}");
    let corrupt = report["corrupt"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{report}");
    assert_eq!(corrupt[0]["digest"], digest.as_str());
    assert_ne!(corrupt[0]["digest"], good.as_str());

    let url = format!("{}/v2/rot/s/blobs/{digest}", srv.url);
    let resp = send(&c, Method::HEAD, url.clone()).await;
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "set aside by the scrub"
    );
    push_blob(&c, &srv.url, "rot/s", &data).await;
    let resp = send(&c, Method::GET, url.clone()).await;
    assert!(resp.bytes().await.unwrap().as_ref() == data.as_slice());
    let report = scrub().await;
    assert_eq!(report["corrupt"].as_array().unwrap().len(), 0, "{report}");

    // Rot nobody has scrubbed yet: a client pushing without asking first
    // replaces the copy with the bytes it verified.
    flip_a_byte(&file, 99);
    push_blob(&c, &srv.url, "rot/s", &data).await;
    let resp = send(&c, Method::GET, url).await;
    assert!(resp.bytes().await.unwrap().as_ref() == data.as_slice());
}

/// A scrub is a `POST`, with a sane rate if one is given.
#[tokio::test]
async fn scrub_takes_only_post_and_a_positive_rate() {
    let srv = TestServer::start();
    let c = client();
    let resp = send(&c, Method::GET, format!("{}/api/v1/scrub", srv.url)).await;
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    for bad in ["max_mib_per_sec=-1", "max_mib_per_sec=fast", "max_mb=5"] {
        let resp = send(&c, Method::POST, format!("{}/api/v1/scrub?{bad}", srv.url)).await;
        assert_eq!(resp.status(), StatusCode::BAD_REQUEST, "{bad}");
        let v: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "QUERY_INVALID", "{bad}");
    }
    let resp = send(
        &c,
        Method::POST,
        format!("{}/api/v1/scrub?max_mib_per_sec=0.5", srv.url),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    let text = resp.text().await.unwrap();
    assert!(
        text.lines().last().unwrap().contains("\"report\""),
        "{text}"
    );
}

/// A commit the store fails (here: the blob's directory cannot be made) keeps
/// the session and its bytes, so that the client's retry succeeds.
#[tokio::test]
async fn a_failed_commit_keeps_the_session() {
    let srv = TestServer::start();
    let c = client();
    let data = b"bytes whose commit fails the first time";
    let digest = sha256(data);
    let hex = digest.strip_prefix("sha256:").unwrap();
    let blocker = srv.data_dir.join("blobs/sha256").join(&hex[..2]);
    std::fs::create_dir_all(blocker.parent().unwrap()).unwrap();
    std::fs::write(&blocker, b"a file where a directory must go").unwrap();

    let loc = start_upload(&c, &srv.url, "rot/c").await;
    let resp = c
        .patch(format!("{}{loc}", srv.url))
        .body(data.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let finish = || async {
        c.put(format!("{}{loc}?digest={digest}", srv.url))
            .send()
            .await
            .unwrap()
    };
    let resp = finish().await;
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let resp = send(&c, Method::GET, format!("{}{loc}", srv.url)).await;
    assert_eq!(
        resp.status(),
        StatusCode::NO_CONTENT,
        "the session is still there"
    );
    assert_eq!(resp.headers()["range"], format!("0-{}", data.len() - 1));

    std::fs::remove_file(&blocker).unwrap();
    let resp = finish().await;
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = send(
        &c,
        Method::GET,
        format!("{}/v2/rot/c/blobs/{digest}", srv.url),
    )
    .await;
    assert_eq!(resp.bytes().await.unwrap().as_ref(), data);
}
