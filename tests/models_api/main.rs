//! The model index and `/api/v1` model API against a real `berth serve`: models
//! pushed by raw HTTP (ModelPack of both generations, KitOps, Docker model runner,
//! plain images) and by the oras SDK; the `berth` view commands run as processes.

#[path = "../common/mod.rs"]
mod common;

mod api;
mod cli;
mod formats;
mod query;

use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MP_MANIFEST: &str = "application/vnd.cncf.model.manifest.v1+json";
pub const MP_CONFIG: &str = "application/vnd.cncf.model.config.v1+json";
pub const MP_WEIGHT: &str = "application/vnd.cncf.model.weight.v1.raw";
pub const MP_WEIGHT_CONFIG: &str = "application/vnd.cncf.model.weight.config.v1.raw";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

pub fn client() -> Client {
    Client::new()
}

/// Pushes a blob and returns its descriptor (with a file path annotation if given).
/// The OCI empty descriptor (`{}`), pushed to `repo`: config and layer of artifacts.
pub async fn empty_blob(c: &Client, url: &str, repo: &str) -> Value {
    blob(
        c,
        url,
        repo,
        "application/vnd.oci.empty.v1+json",
        b"{}",
        None,
    )
    .await
}

pub async fn blob(
    c: &Client,
    url: &str,
    repo: &str,
    media_type: &str,
    bytes: &[u8],
    path: Option<&str>,
) -> Value {
    let d = sha256(bytes);
    let resp = c
        .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(bytes.to_vec())
        .send()
        .await
        .expect("push blob");
    assert_eq!(resp.status(), StatusCode::CREATED, "push blob");
    let mut desc = json!({ "mediaType": media_type, "digest": d, "size": bytes.len() });
    if let Some(p) = path {
        desc["annotations"] = json!({ "org.cncf.model.filepath": p });
    }
    desc
}

/// PUTs a manifest under `reference` and returns its digest.
pub async fn put_manifest(c: &Client, url: &str, repo: &str, reference: &str, m: &Value) -> String {
    let body = serde_json::to_vec(m).expect("manifest json");
    let resp = c
        .put(format!("{url}/v2/{repo}/manifests/{reference}"))
        .header("content-type", MANIFEST)
        .body(body.clone())
        .send()
        .await
        .expect("put manifest");
    let status = resp.status();
    assert_eq!(
        status,
        StatusCode::CREATED,
        "put manifest: {}",
        resp.text().await.unwrap_or_default()
    );
    sha256(&body)
}

/// What a test model version is made of.
pub struct Version<'a> {
    pub tag: &'a str,
    pub created: &'a str,
    /// Layer seeds: equal seeds are the same blob (shared between versions).
    pub layers: &'a [(&'a str, usize)],
    pub annotations: Value,
    /// The config's `descriptor.datasetsURL`.
    pub datasets: &'a [&'a str],
}

/// Pushes a ModelPack version: config with descriptor and config facts, one raw
/// weight layer per seed. Returns the manifest digest.
pub async fn push_version(c: &Client, url: &str, repo: &str, v: &Version<'_>) -> String {
    let config = json!({
        "descriptor": { "createdAt": v.created, "name": repo, "description": format!("{repo} {}", v.tag), "datasetsURL": v.datasets },
        "config": { "format": "safetensors", "architecture": "transformer", "paramSize": "7b" },
        "modelfs": { "type": "layers", "diffIds": [] },
    });
    let config = blob(
        c,
        url,
        repo,
        MP_CONFIG,
        &serde_json::to_vec(&config).unwrap(),
        None,
    )
    .await;
    let mut layers = Vec::new();
    for (seed, size) in v.layers {
        let bytes: Vec<u8> = seed.bytes().cycle().take(*size).collect();
        layers.push(
            blob(
                c,
                url,
                repo,
                MP_WEIGHT,
                &bytes,
                Some(&format!("{seed}.safetensors")),
            )
            .await,
        );
    }
    let m = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": MP_MANIFEST,
        "config": config,
        "layers": layers,
        "annotations": v.annotations,
    });
    put_manifest(c, url, repo, v.tag, &m).await
}

/// GETs a model-API path, asserting the status; returns the JSON body.
pub async fn get_json(c: &Client, url: &str, path: &str, status: StatusCode) -> Value {
    let resp = c.get(format!("{url}{path}")).send().await.expect("get");
    let got = resp.status();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body = resp.text().await.expect("body");
    assert_eq!(got, status, "GET {path}: {body}");
    assert_eq!(ct, "application/json", "GET {path}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: not JSON ({e}): {body}"))
}

/// The model API's view of version `reference` of `repo` (200 asserted).
pub async fn version_view(c: &Client, url: &str, repo: &str, reference: &str) -> Value {
    let path = format!("/api/v1/models/{repo}/versions/{reference}");
    get_json(c, url, &path, StatusCode::OK).await
}

/// Asserts an API error with this status and code.
pub async fn expect_error(c: &Client, url: &str, path: &str, status: StatusCode, code: &str) {
    let v = get_json(c, url, path, status).await;
    assert_eq!(v["error"]["code"], code, "GET {path}: {v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
}

/// The `team/classifier` fixture: three versions (v2 also tagged `prod`) and their digests.
pub async fn classifier(c: &Client, url: &str) -> [String; 3] {
    let repo = "team/classifier";
    let v1 = push_version(
        c,
        url,
        repo,
        &Version {
            tag: "v1",
            created: "2024-01-01T00:00:00Z",
            layers: &[("base", 4000), ("head-1", 1000)],
            annotations: json!({
                "dev.berth.metric.auc": "0.85",
                "dev.berth.metric.loss": "0.40",
                "dev.berth.param.lr": "0.01",
                "dev.berth.param.epochs": "10",
                "dev.berth.lineage.dataset": "imagenet@1",
                "dev.berth.lineage.run-id": "run-1",
                "dev.berth.lineage.image": "trainer:1",
                "dev.berth.param.batch": "32",
                "org.opencontainers.image.revision": "aaa111",
            }),
            datasets: &[],
        },
    )
    .await;
    let v2 = push_version(
        c,
        url,
        repo,
        &Version {
            tag: "v2",
            created: "2024-02-01T00:00:00Z",
            layers: &[("base", 4000), ("head-2", 1500)],
            annotations: json!({
                "dev.berth.metric.auc": "0.92",
                "dev.berth.metric.loss": "0.30",
                "dev.berth.param.lr": "0.005",
                "dev.berth.param.epochs": "10",
                "dev.berth.lineage.dataset": "imagenet@2",
                "dev.berth.lineage.run-id": "run-2",
                "dev.berth.metric.f1": "0.7",
                "org.opencontainers.image.revision": "bbb222",
            }),
            // Annotations win over the config's standard fields.
            datasets: &["ignored"],
        },
    )
    .await;
    let v3 = push_version(
        c,
        url,
        repo,
        &Version {
            tag: "v3",
            created: "2024-03-01T00:00:00Z",
            layers: &[("base", 4000), ("head-3", 500)],
            annotations: json!({
                "dev.berth.param.lr": "0.02",
                "dev.berth.metric.loss": "not-a-number",
            }),
            datasets: &[],
        },
    )
    .await;
    let prod = c
        .get(format!("{url}/v2/{repo}/manifests/v2"))
        .header("accept", MANIFEST)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let resp = c
        .put(format!("{url}/v2/{repo}/manifests/prod"))
        .header("content-type", MANIFEST)
        .body(prod)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    [v1, v2, v3]
}
