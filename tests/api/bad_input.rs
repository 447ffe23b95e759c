//! Hostile and malformed input: each gets the spec's error code and status, and
//! nothing is stored.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::TestServer;
use crate::*;

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

#[tokio::test]
async fn invalid_repository_names_are_name_invalid() {
    let srv = TestServer::start();
    let c = client();
    let long = "a".repeat(256);
    for name in [
        "Upper/case",
        "a//b",
        "-lead",
        "trail-",
        "sp%20ace",
        "a%2F%2Fb",
        long.as_str(),
    ] {
        for path in [
            format!("/v2/{name}/tags/list"),
            format!("/v2/{name}/blobs/uploads/"),
            format!("/v2/{name}/manifests/latest"),
        ] {
            let method = if path.ends_with("uploads/") {
                Method::POST
            } else {
                Method::GET
            };
            let resp = send(&c, method, format!("{}{path}", srv.url)).await;
            // `..` and `.` segments may be normalised away by the client; what reaches
            // the server must never be a valid request.
            assert!(resp.status().is_client_error(), "{path}: {}", resp.status());
            if resp.status() == StatusCode::BAD_REQUEST {
                assert_eq!(error_code(resp).await, "NAME_INVALID", "{path}");
            }
        }
    }
    // Dot segments, sent raw because HTTP clients normalise them away.
    for path in [
        "/v2/a/../b/tags/list",
        "/v2/../x/tags/list",
        "/v2/a/./b/blobs/uploads/",
        "/v2/a/%2e%2e/b/tags/list",
    ] {
        let (status, body) = raw_request(&srv.addr, "GET", path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert!(body.contains("NAME_INVALID"), "{path}: {body}");
    }
    let resp = send(&c, Method::GET, format!("{}/v2/Upper/tags/list", srv.url)).await;
    expect_error(resp, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    let resp = send(&c, Method::GET, format!("{}/v2/{long}/tags/list", srv.url)).await;
    expect_error(resp, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    // Nothing was created by any of it.
    let v: serde_json::Value = send(&c, Method::GET, format!("{}/v2/_catalog", srv.url))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["repositories"], json!([]));
}

#[tokio::test]
async fn malformed_and_unsupported_digests_are_digest_invalid() {
    let srv = TestServer::start();
    let c = client();
    for d in [
        "sha256:abc",
        "sha256:XYZ",
        "md5:d41d8cd98f00b204e9800998ecf8427e",
        "nocolon",
        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85G",
    ] {
        let resp = send(&c, Method::GET, format!("{}/v2/d/repo/blobs/{d}", srv.url)).await;
        expect_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
        let resp = c
            .post(format!("{}/v2/d/repo/blobs/uploads/?digest={d}", srv.url))
            .body("x")
            .send()
            .await
            .unwrap();
        expect_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    }
    let loc = start_upload(&c, &srv.url, "d/repo").await;
    let resp = c.put(format!("{}{loc}", srv.url)).send().await.unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
}

#[tokio::test]
async fn digest_mismatch_stores_nothing() {
    let srv = TestServer::start();
    let c = client();
    let claimed = sha256(b"what the client claims");
    let resp = c
        .post(format!(
            "{}/v2/d/mismatch/blobs/uploads/?digest={claimed}",
            srv.url
        ))
        .body("other bytes")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    let loc = start_upload(&c, &srv.url, "d/mismatch").await;
    let resp = c
        .put(format!("{}{loc}?digest={claimed}", srv.url))
        .body("other bytes")
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    for d in [claimed, sha256(b"other bytes")] {
        let resp = send(
            &c,
            Method::HEAD,
            format!("{}/v2/d/mismatch/blobs/{d}", srv.url),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    let blobs = walk_files(&srv.data_dir.join("blobs"));
    assert!(blobs.is_empty(), "no blob may be stored: {blobs:?}");
    assert_eq!(
        std::fs::read_dir(srv.data_dir.join("uploads"))
            .unwrap()
            .count(),
        0
    );
}

/// Sends a request line exactly as given and returns the status and body.
async fn raw_request(addr: &str, method: &str, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (status, body)
}

fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn bad_manifests_are_refused_and_not_stored() {
    let srv = TestServer::start_with(&["--max-manifest-bytes", "4096"]);
    let (c, u) = (client(), srv.url.clone());
    let config = b"{}";
    push_blob(&c, &u, "bad/m", config).await;
    let good = image_manifest(config, &[], json!({}));
    let huge = image_manifest(
        config,
        &[],
        json!({"annotations": {"pad": "x".repeat(5000)}}),
    );
    let mismatched = good.clone();
    let cases: Vec<(&str, Vec<u8>, &str, StatusCode, &str)> = vec![
        (
            "invalid json",
            b"{not json".to_vec(),
            OCI_MANIFEST,
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "json array",
            b"[]".to_vec(),
            OCI_MANIFEST,
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "schema 1",
            br#"{"schemaVersion":1}"#.to_vec(),
            OCI_MANIFEST,
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "media type differs from body",
            mismatched,
            "application/vnd.oci.image.index.v1+json",
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "over the size limit",
            huge,
            OCI_MANIFEST,
            StatusCode::PAYLOAD_TOO_LARGE,
            "MANIFEST_INVALID",
        ),
        (
            "unsupported media type",
            br#"{"schemaVersion":2,"mediaType":"text/html"}"#.to_vec(),
            "text/html",
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
        (
            "bad descriptor digest",
            String::from_utf8(good.clone())
                .unwrap()
                .replace("sha256:", "sha256:zz")
                .into_bytes(),
            OCI_MANIFEST,
            StatusCode::BAD_REQUEST,
            "MANIFEST_INVALID",
        ),
    ];
    for (what, body, ct, status, code) in cases {
        let d = sha256(&body);
        let resp = c
            .put(format!("{u}/v2/bad/m/manifests/t"))
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{what}");
        assert_eq!(error_code(resp).await, code, "{what}");
        let resp = send(&c, Method::HEAD, format!("{u}/v2/bad/m/manifests/{d}")).await;
        assert_eq!(
            resp.status(),
            StatusCode::NOT_FOUND,
            "{what}: nothing stored"
        );
    }
    let resp = send(&c, Method::HEAD, format!("{u}/v2/bad/m/manifests/t")).await;
    assert_eq!(
        resp.status(),
        StatusCode::NOT_FOUND,
        "tag was never created"
    );
    // A digest reference that does not match the body.
    let resp = c
        .put(format!("{u}/v2/bad/m/manifests/{}", sha256(b"other")))
        .header("content-type", OCI_MANIFEST)
        .body(good.clone())
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "DIGEST_INVALID").await;
    // An invalid tag.
    let resp = c
        .put(format!("{u}/v2/bad/m/manifests/-tag"))
        .header("content-type", OCI_MANIFEST)
        .body(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
    // Reading or deleting it finds nothing: nothing can exist under it.
    for method in [Method::GET, Method::HEAD, Method::DELETE] {
        let resp = send(&c, method.clone(), format!("{u}/v2/bad/m/manifests/-tag")).await;
        assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method}");
        if method != Method::HEAD {
            assert_eq!(error_code(resp).await, "MANIFEST_UNKNOWN");
        }
    }
    // And the good one is accepted.
    let resp = c
        .put(format!("{u}/v2/bad/m/manifests/t"))
        .header("content-type", OCI_MANIFEST)
        .body(good)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn bad_content_range_and_unknown_uploads() {
    let srv = TestServer::start();
    let c = client();
    let loc = start_upload(&c, &srv.url, "u/p").await;
    let url = format!("{}{loc}", srv.url);
    let resp = c
        .patch(&url)
        .header("content-range", "0-4")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    for (range, body) in [
        ("0-4", "hello"),
        ("10-14", "hello"),
        ("garbage", "hello"),
        ("5-9", "toolongbody"),
        ("9-5", "x"),
        ("5-18446744073709551615", "x"),
    ] {
        let resp = c
            .patch(&url)
            .header("content-range", range)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::RANGE_NOT_SATISFIABLE, "{range}");
        assert_eq!(
            resp.headers()["range"],
            "0-4",
            "{range}: the current progress"
        );
        assert_eq!(resp.headers()["location"].to_str().unwrap(), loc);
    }
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(
        resp.headers()["range"],
        "0-4",
        "refused chunks wrote nothing"
    );

    // Unknown, malformed and other-repository upload ids.
    let other = loc.replace("/u/p/", "/u/other/");
    for bad in [
        format!("/v2/u/p/blobs/uploads/{}", "0".repeat(32)),
        "/v2/u/p/blobs/uploads/%2e%2e%2fx".into(),
        "/v2/u/p/blobs/uploads/not-an-id".into(),
        other,
    ] {
        for method in [Method::GET, Method::PATCH, Method::PUT, Method::DELETE] {
            let resp = send(&c, method.clone(), format!("{}{bad}", srv.url)).await;
            assert_eq!(resp.status(), StatusCode::NOT_FOUND, "{method} {bad}");
            if method != Method::PUT {
                assert_eq!(
                    error_code(resp).await,
                    "BLOB_UPLOAD_UNKNOWN",
                    "{method} {bad}"
                );
            }
        }
    }
    // Cancel, then the session is gone.
    let resp = c.delete(&url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let resp = c.get(&url).send().await.unwrap();
    expect_error(resp, StatusCode::NOT_FOUND, "BLOB_UPLOAD_UNKNOWN").await;
}

/// The `Range` end an upload reports, as a byte count.
async fn upload_progress(c: &reqwest::Client, url: &str) -> u64 {
    let resp = c.get(url).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::NO_CONTENT);
    let range = resp.headers()["range"].to_str().unwrap().to_string();
    let end: u64 = range.trim_start_matches("0-").parse().unwrap();
    end + 1
}

#[tokio::test]
async fn a_chunk_longer_than_its_content_range_stores_none_of_the_excess() {
    let srv = TestServer::start();
    let c = client();
    let loc = start_upload(&c, &srv.url, "u/long").await;
    let url = format!("{}{loc}", srv.url);
    let resp = c
        .patch(&url)
        .header("content-range", "0-4")
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    // A chunked body has no length of its own: only Content-Range says 10 bytes,
    // and the body brings 15.
    let parts: Vec<Result<&'static str, std::io::Error>> = vec![Ok("012345"), Ok("6789EXTRA")];
    let resp = c
        .patch(&url)
        .header("content-range", "5-14")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            parts,
        )))
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "SIZE_INVALID").await;
    // What stays is a prefix of the declared range, never a byte past it.
    let intended = b"hello0123456789";
    let kept = upload_progress(&c, &url).await;
    assert!((5..=15).contains(&kept), "kept {kept} bytes");
    // The client resumes from the reported offset and the blob is exactly the intended bytes.
    if kept < 15 {
        let resp = c
            .patch(&url)
            .header("content-range", format!("{kept}-14"))
            .body(intended[kept as usize..].to_vec())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let d = sha256(intended);
    let resp = c.put(format!("{url}?digest={d}")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let got = send(&c, Method::GET, format!("{}/v2/u/long/blobs/{d}", srv.url)).await;
    assert_eq!(got.bytes().await.unwrap().as_ref(), intended);
}

#[tokio::test]
async fn a_monolithic_push_cut_off_mid_body_leaves_no_upload_behind() {
    use tokio::io::AsyncWriteExt;
    let srv = TestServer::start();
    let d = sha256(b"never finished");
    let mut s = tokio::net::TcpStream::connect(&srv.addr).await.unwrap();
    let head = format!(
        "POST /v2/cut/off/blobs/uploads/?digest={d} HTTP/1.1\r\nHost: {}\r\nContent-Length: 10000000\r\n\r\n",
        srv.addr
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(&vec![7u8; 2_000_000]).await.unwrap();
    s.flush().await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(s);
    let uploads = srv.data_dir.join("uploads");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let left = walk_files(&uploads);
        if left.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "upload bytes left behind: {left:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(walk_files(&srv.data_dir.join("blobs")).is_empty());
}

#[tokio::test]
async fn unsupported_methods_and_paths() {
    let srv = TestServer::start();
    let c = client();
    // A 405 names what the resource does allow (RFC 9110's MUST).
    let upload = start_upload(&c, &srv.url, "a").await;
    for (method, path, allow) in [
        (
            Method::PATCH,
            "/v2/a/manifests/latest",
            "GET, HEAD, PUT, DELETE",
        ),
        (
            Method::POST,
            "/v2/a/manifests/latest",
            "GET, HEAD, PUT, DELETE",
        ),
        (
            Method::PUT,
            &format!("/v2/a/blobs/{}", sha256(b"x")),
            "GET, HEAD, DELETE",
        ),
        (Method::DELETE, "/v2/a/tags/list", "GET, HEAD"),
        (Method::POST, "/v2/_catalog", "GET, HEAD"),
        (Method::GET, "/v2/a/blobs/uploads/", "POST"),
        (
            Method::POST,
            upload.as_str(),
            "GET, HEAD, PATCH, PUT, DELETE",
        ),
    ] {
        let resp = send(&c, method.clone(), format!("{}{path}", srv.url)).await;
        assert_eq!(resp.headers()["allow"], allow, "{method} {path}");
        expect_error(resp, StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED").await;
    }
    // HEAD works wherever GET does, with GET's headers and no body.
    for path in ["/v2/", "/v2/_catalog", "/v2/a/tags/list", upload.as_str()] {
        let get = send(&c, Method::GET, format!("{}{path}", srv.url)).await;
        let head = send(&c, Method::HEAD, format!("{}{path}", srv.url)).await;
        assert_eq!(head.status(), get.status(), "HEAD {path}");
        // (hyper adds a zero Content-Length to a bodiless HEAD answer; GET's 204 has none)
        if get.status() != StatusCode::NO_CONTENT {
            assert_eq!(
                head.headers().get("content-length"),
                get.headers().get("content-length"),
                "HEAD {path}"
            );
        }
        assert!(head.bytes().await.unwrap().is_empty(), "HEAD {path}");
    }
    let resp = send(&c, Method::GET, format!("{}/v2/a/unknown/thing", srv.url)).await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let resp = send(&c, Method::GET, format!("{}/v2/a/tags/list?n=-1", srv.url)).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}
