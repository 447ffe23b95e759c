//! HTTP integration tests against a real `berth serve` process.

#[path = "../common/mod.rs"]
mod common;

mod attacks;
mod auth;
mod bad_input;
mod blobs;
mod gc;
mod integrity;
mod manifests;
mod ops;
mod s3;
mod storage;
mod tls;

use reqwest::{Client, Method, Response, StatusCode};
use sha2::{Digest as _, Sha256};

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn client() -> Client {
    Client::builder().build().expect("client")
}

/// The OCI error code of a response, panicking with the body if there is none.
pub async fn error_code(resp: Response) -> String {
    let body = resp.text().await.expect("body");
    let v: serde_json::Value =
        serde_json::from_str(&body).unwrap_or_else(|_| panic!("not an error JSON: {body}"));
    v["errors"][0]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {body}"))
        .to_string()
}

pub async fn expect_error(resp: Response, status: StatusCode, code: &str) {
    assert_eq!(resp.status(), status, "status for {}", resp.url());
    assert_eq!(error_code(resp).await, code);
}

/// Pushes a blob monolithically and returns its digest.
pub async fn push_blob(c: &Client, url: &str, repo: &str, bytes: &[u8]) -> String {
    let d = sha256(bytes);
    let resp = c
        .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(bytes.to_vec())
        .send()
        .await
        .expect("push blob");
    assert_eq!(resp.status(), StatusCode::CREATED, "push blob");
    d
}

/// Starts an upload session and returns its location (a path).
pub async fn start_upload(c: &Client, url: &str, repo: &str) -> String {
    let resp = c
        .post(format!("{url}/v2/{repo}/blobs/uploads/"))
        .send()
        .await
        .expect("start upload");
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    resp.headers()["location"]
        .to_str()
        .expect("location")
        .to_string()
}

/// An OCI image manifest over the given config and layers (which must be pushed).
pub fn image_manifest(config: &[u8], layers: &[&[u8]], extra: serde_json::Value) -> Vec<u8> {
    let layers: Vec<_> = layers
        .iter()
        .map(|l| {
            serde_json::json!({
                "mediaType": "application/vnd.oci.image.layer.v1.tar",
                "digest": sha256(l),
                "size": l.len(),
            })
        })
        .collect();
    let mut m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": sha256(config),
            "size": config.len(),
        },
        "layers": layers,
    });
    if let (Some(obj), serde_json::Value::Object(more)) = (m.as_object_mut(), extra) {
        obj.extend(more);
    }
    serde_json::to_vec(&m).expect("json")
}

/// Pushes config + layers and the manifest under `reference`; returns the manifest digest.
pub async fn push_image(c: &Client, url: &str, repo: &str, reference: &str, seed: &str) -> String {
    let config = format!("{{\"seed\":\"{seed}\"}}");
    let layer = format!("layer of {seed}");
    push_blob(c, url, repo, config.as_bytes()).await;
    push_blob(c, url, repo, layer.as_bytes()).await;
    let body = image_manifest(
        config.as_bytes(),
        &[layer.as_bytes()],
        serde_json::json!({}),
    );
    let resp = c
        .put(format!("{url}/v2/{repo}/manifests/{reference}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.clone())
        .send()
        .await
        .expect("push manifest");
    assert_eq!(resp.status(), StatusCode::CREATED, "push manifest");
    sha256(&body)
}

/// Pushes an OCI image manifest under `reference`; returns the status.
pub async fn put_manifest(
    c: &Client,
    url: &str,
    repo: &str,
    reference: &str,
    body: &[u8],
) -> StatusCode {
    c.put(format!("{url}/v2/{repo}/manifests/{reference}"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.to_vec())
        .send()
        .await
        .expect("push manifest")
        .status()
}

/// Runs the `berth` command with `args` against the server at `addr`; returns
/// its exit status and stdout, failing with its stderr unless it exited `want`.
pub fn berth_cli(addr: &str, args: &[&str], want: i32) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .args(["--registry", addr])
        .output()
        .expect("run berth");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(
        out.status.code(),
        Some(want),
        "berth {args:?}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub async fn send(c: &Client, method: Method, url: String) -> Response {
    c.request(method, url).send().await.expect("request")
}
