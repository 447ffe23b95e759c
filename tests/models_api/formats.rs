//! Which manifests are model versions: both ModelPack generations, KitOps, Docker
//! model runner, Berth annotations (pushed by the oras SDK); not plain images, and
//! a model whose config cannot be read is still indexed from its annotations.

use std::process::Command;

use reqwest::StatusCode;
use serde_json::json;

use super::common::TestServer;
use super::*;

async fn names(c: &Client, url: &str) -> Vec<String> {
    let page = get_json(c, url, "/api/v1/models", StatusCode::OK).await;
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn legacy_kitops_and_docker_models_are_indexed_plain_images_are_not() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());

    // Legacy ModelPack (vnd.cnai): config media type only, legacy file path annotation.
    let repo = "legacy/model";
    let cfg = json!({ "descriptor": { "createdAt": "2023-01-02T03:04:05+02:00" }, "config": { "format": "gguf", "paramSize": "1b" } });
    let cfg = blob(
        &c,
        url,
        repo,
        "application/vnd.cnai.model.config.v1+json",
        &serde_json::to_vec(&cfg).unwrap(),
        None,
    )
    .await;
    let mut layer = blob(
        &c,
        url,
        repo,
        "application/vnd.cnai.model.weight.v1.tar",
        b"legacy weights",
        None,
    )
    .await;
    layer["annotations"] = json!({ "org.cnai.model.filepath": "model.gguf" });
    let m = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "config": cfg, "layers": [layer] });
    put_manifest(&c, url, repo, "v1", &m).await;
    let v = version_view(&c, url, repo, "v1").await;
    assert_eq!(v["kind"], "modelpack-legacy");
    assert_eq!(v["created"], "2023-01-02T01:04:05Z");
    assert_eq!(v["model"]["format"], "gguf");
    assert_eq!(v["model"]["param_size"], "1b");
    assert_eq!(v["layers"][0]["path"], "model.gguf");
    assert_eq!(v["layers"][0]["kind"], "weight");

    // KitOps ModelKit: the Kitfile is the config.
    let repo = "kit/sentiment";
    let kitfile = json!({
        "manifestVersion": "1.0.0",
        "package": { "name": "sentiment", "version": "1.2.0", "description": "A sentiment model", "authors": ["Jozu"] },
        "model": { "name": "sentiment", "path": "model.joblib", "framework": "scikit-learn", "parameters": { "alpha": 0.5, "layers": [1, 2] } },
        "datasets": [{ "name": "reviews", "path": "data/reviews.csv" }],
    });
    let cfg = blob(
        &c,
        url,
        repo,
        "application/vnd.kitops.modelkit.config.v1+json",
        &serde_json::to_vec(&kitfile).unwrap(),
        None,
    )
    .await;
    let mut model = blob(
        &c,
        url,
        repo,
        "application/vnd.kitops.modelkit.model.v1.tar+gzip",
        b"kit model",
        None,
    )
    .await;
    model["annotations"] = json!({ "org.opencontainers.image.title": "model.joblib" });
    let data = blob(
        &c,
        url,
        repo,
        "application/vnd.kitops.modelkit.dataset.v1.tar+gzip",
        b"kit data",
        None,
    )
    .await;
    let m = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "config": cfg, "layers": [model, data],
        "annotations": { "dev.berth.metric.accuracy": "0.88" } });
    put_manifest(&c, url, repo, "1.2.0", &m).await;
    let v = version_view(&c, url, repo, "1.2.0").await;
    assert_eq!(v["kind"], "kitops");
    assert_eq!(v["description"], "A sentiment model");
    assert_eq!(v["model"]["name"], "sentiment");
    assert_eq!(v["model"]["version"], "1.2.0");
    assert_eq!(v["model"]["format"], "scikit-learn");
    assert_eq!(v["params"], json!({ "alpha": "0.5", "layers": "[1,2]" }));
    assert_eq!(v["metrics"], json!({ "accuracy": 0.88 }));
    assert_eq!(v["lineage"]["dataset"], "reviews");
    assert_eq!(v["layers"][0]["path"], "model.joblib");
    assert_eq!(v["layers"][0]["kind"], "weight");
    assert_eq!(v["layers"][1]["kind"], "dataset");

    // Docker model runner.
    let repo = "ai/smollm";
    let cfg = json!({ "config": { "format": "gguf", "quantization": "Q4_K_M", "parameters": "360M", "architecture": "llama" },
        "descriptor": { "created": "2025-04-01T00:00:00Z" } });
    let cfg = blob(
        &c,
        url,
        repo,
        "application/vnd.docker.ai.model.config.v0.1+json",
        &serde_json::to_vec(&cfg).unwrap(),
        None,
    )
    .await;
    let mut gguf = blob(
        &c,
        url,
        repo,
        "application/vnd.docker.ai.gguf.v3",
        b"gguf bytes",
        None,
    )
    .await;
    gguf["annotations"] = json!({ "org.cncf.model.filepath": "model.gguf" });
    let license = blob(
        &c,
        url,
        repo,
        "application/vnd.docker.ai.license",
        b"MIT",
        None,
    )
    .await;
    let m = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "config": cfg, "layers": [gguf, license] });
    put_manifest(&c, url, repo, "latest", &m).await;
    let v = version_view(&c, url, repo, "latest").await;
    assert_eq!(v["kind"], "docker-ai");
    assert_eq!(v["created"], "2025-04-01T00:00:00Z");
    assert_eq!(v["model"]["param_size"], "360M");
    assert_eq!(v["model"]["quantization"], "Q4_K_M");
    assert_eq!(v["layers"][0]["kind"], "weight");
    assert_eq!(v["layers"][1]["kind"], "doc");

    // A plain image is not a model.
    let repo = "images/app";
    let cfg = blob(
        &c,
        url,
        repo,
        "application/vnd.oci.image.config.v1+json",
        br#"{"architecture":"amd64","os":"linux"}"#,
        None,
    )
    .await;
    let layer = blob(
        &c,
        url,
        repo,
        "application/vnd.oci.image.layer.v1.tar",
        b"rootfs",
        None,
    )
    .await;
    let m = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "config": cfg, "layers": [layer],
        "annotations": { "org.opencontainers.image.created": "2024-01-01T00:00:00Z" } });
    put_manifest(&c, url, repo, "latest", &m).await;
    expect_error(
        &c,
        url,
        &format!("/api/v1/models/{repo}/versions"),
        StatusCode::NOT_FOUND,
        "MODEL_UNKNOWN",
    )
    .await;
    expect_error(
        &c,
        url,
        &format!("/api/v1/models/{repo}/versions/latest"),
        StatusCode::NOT_FOUND,
        "VERSION_UNKNOWN",
    )
    .await;

    assert_eq!(
        names(&c, url).await,
        ["ai/smollm", "kit/sentiment", "legacy/model"]
    );
}

#[tokio::test]
async fn unreadable_config_is_indexed_from_annotations() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    let repo = "broken/config";
    // A ModelPack config that is not JSON: the push succeeds and annotations still count.
    let cfg = blob(&c, url, repo, MP_CONFIG, b"\x00\xffnot json", None).await;
    let layer = blob(&c, url, repo, MP_WEIGHT, b"w", Some("w.bin")).await;
    let m = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": MP_MANIFEST, "config": cfg, "layers": [layer],
        "annotations": { "dev.berth.metric.auc": "0.5", "org.opencontainers.image.created": "2024-05-05T05:05:05Z",
            "org.opencontainers.image.description": "from annotations" } });
    put_manifest(&c, url, repo, "v1", &m).await;
    let v = version_view(&c, url, repo, "v1").await;
    assert_eq!(v["metrics"]["auc"], 0.5);
    assert_eq!(v["created"], "2024-05-05T05:05:05Z");
    assert_eq!(v["description"], "from annotations");
    assert_eq!(v["model"], json!({}));
}

/// A config the server fails to read (an I/O error, not a bad config) fails the
/// push with a 500, which clients retry, instead of indexing the version without
/// its config for good; once the config reads again, the same push indexes it whole.
#[tokio::test]
async fn a_config_read_failure_fails_the_push_and_a_retry_indexes_the_config() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    let repo = "flaky/config";
    let config = json!({ "descriptor": { "description": "from the config" },
        "config": { "format": "safetensors" }, "modelfs": { "type": "layers", "diffIds": [] } });
    let bytes = serde_json::to_vec(&config).unwrap();
    let cfg = blob(&c, url, repo, MP_CONFIG, &bytes, None).await;
    let layer = blob(&c, url, repo, MP_WEIGHT, b"w", Some("w.bin")).await;
    let m = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": MP_MANIFEST,
        "config": cfg, "layers": [layer] });

    // The config's file swapped for a directory: opening works, reading fails (EISDIR).
    let hex = &sha256(&bytes)["sha256:".len()..];
    let file = srv.data_dir.join("blobs/sha256").join(&hex[..2]).join(hex);
    let aside = file.with_extension("aside");
    std::fs::rename(&file, &aside).unwrap();
    std::fs::create_dir(&file).unwrap();
    let resp = c
        .put(format!("{url}/v2/{repo}/manifests/v1"))
        .header("content-type", MANIFEST)
        .body(serde_json::to_vec(&m).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let head = c
        .head(format!("{url}/v2/{repo}/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.status(),
        StatusCode::NOT_FOUND,
        "a failed push stores no tag"
    );
    expect_error(
        &c,
        url,
        &format!("/api/v1/models/{repo}/versions/v1"),
        StatusCode::NOT_FOUND,
        "VERSION_UNKNOWN",
    )
    .await;

    std::fs::remove_dir(&file).unwrap();
    std::fs::rename(&aside, &file).unwrap();
    put_manifest(&c, url, repo, "v1", &m).await;
    let v = version_view(&c, url, repo, "v1").await;
    assert_eq!(v["description"], "from the config");
    assert_eq!(v["model"]["format"], "safetensors");
}

const ORAS_PUSH: &str = r#"
import os, sys, tempfile
import oras.provider

class NoRetry(oras.provider.Registry):
    do_request = oras.provider.Registry.do_request.__wrapped__

host = sys.argv[1]
client = NoRetry(hostname=host, insecure=True)
with tempfile.TemporaryDirectory() as d:
    path = os.path.join(d, "weights.bin")
    with open(path, "wb") as f:
        f.write(os.urandom(4096))
    os.chdir(d)
    resp = client.push(
        files=["weights.bin"],
        target=f"{host}/oras/model:v1",
        manifest_annotations={
            "dev.berth.metric.accuracy": "0.91",
            "dev.berth.param.lr": "0.003",
            "dev.berth.lineage.run-id": "oras-run",
        },
        disable_path_validation=True,
    )
    if resp.status_code not in (200, 201):
        sys.exit(f"push failed: {resp.status_code} {resp.text}")
print("pushed")
"#;

#[tokio::test]
async fn a_model_pushed_by_the_oras_sdk_with_berth_annotations_is_listed() {
    let srv = TestServer::start();
    let out = Command::new("python3")
        .arg("-c")
        .arg(ORAS_PUSH)
        .arg(&srv.addr)
        .output()
        .expect("python3 (run scripts/install-test-deps.sh)");
    assert!(
        out.status.success(),
        "oras push failed (run scripts/install-test-deps.sh if oras is missing):\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let (c, url) = (client(), srv.url.as_str());
    assert_eq!(names(&c, url).await, ["oras/model"]);
    let v = version_view(&c, url, "oras/model", "v1").await;
    assert_eq!(v["kind"], "annotated");
    assert_eq!(v["metrics"]["accuracy"], 0.91);
    assert_eq!(v["params"]["lr"], "0.003");
    assert_eq!(v["lineage"]["run_id"], "oras-run");
    assert_eq!(v["layers"][0]["path"], "weights.bin");
    assert_eq!(v["layers"][0]["size"], 4096);
}

/// Descriptor sizes are the client's word. Sizes that overflow any sum must not
/// break indexing, listing or deleting the version.
#[tokio::test]
async fn absurd_declared_sizes_neither_overflow_nor_block_deletion() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    let repo = "huge/sizes";
    let cfg = blob(&c, url, repo, MP_CONFIG, b"{}", None).await;
    let mut a = blob(&c, url, repo, MP_WEIGHT, b"a", Some("a.bin")).await;
    let mut b = blob(&c, url, repo, MP_WEIGHT, b"b", Some("b.bin")).await;
    a["size"] = json!(1u64 << 63);
    b["size"] = json!(1u64 << 63);
    let m = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": MP_MANIFEST, "config": cfg, "layers": [a, b],
        "annotations": { "dev.berth.metric.auc": "0.5" } });
    let d = put_manifest(&c, url, repo, "v1", &m).await;
    version_view(&c, url, repo, "v1").await;
    get_json(&c, url, "/api/v1/models", StatusCode::OK).await;
    let cmp = get_json(
        &c,
        url,
        &format!("/api/v1/models/{repo}/compare?versions=v1,v1"),
        StatusCode::OK,
    )
    .await;
    assert!(cmp.is_object(), "{cmp}");
    let resp = c
        .delete(format!("{url}/v2/{repo}/manifests/{d}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    get_json(
        &c,
        url,
        &format!("/api/v1/models/{repo}/versions/v1"),
        StatusCode::NOT_FOUND,
    )
    .await;
}
