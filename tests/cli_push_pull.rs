//! `berth push`, `pull` and `attach` run as processes against a real `berth serve`.
//!
//! - `raw_and_image_layouts_round_trip`: a model tree (multi-MiB weight, nested dirs,
//!   an executable, an empty file) pushed in both layouts and pulled back identical
//!   (bytes and exec bits); the manifest and config have the ModelPack shape; lineage
//!   from flags and `berth.toml` lands in annotations and config; an index is pulled
//!   through its first manifest.
//! - `adapter_only_change_uploads_only_the_adapter`: counted by the server's
//!   `/metrics` and by `--json`; the same version pushed to another repository is
//!   mounted, not uploaded.
//! - `resume::killed_push_resumes_from_the_registry_offset`,
//!   `resume::killed_pull_resumes_from_its_parts`: real SIGKILLs mid-transfer, then
//!   a rerun that sends (fetches) only the rest; a part corrupted on disk is caught
//!   by the digest check and fetched again.
//! - `login::login_push_pull_logout_against_an_htpasswd_registry`: against CNCF
//!   distribution with htpasswd (Basic challenges): refused without credentials and
//!   with a wrong password (nothing stored), then `berth login` stores docker's
//!   format (0600) and push, pull use it; `logout` removes it.
//! - `login::uses_what_other_tools_stored`: docker's `http://host` key, podman's
//!   `$XDG_RUNTIME_DIR/containers/auth.json`, `skopeo login`'s `REGISTRY_AUTH_FILE`,
//!   a `credsStore` helper on PATH; and skopeo reads what `berth login` wrote.
//! - `interop::pulls_what_oras_pushed`: the oras SDK's files and tar+gzip directories.
//! - `interop::umoci_unpacks_the_image_layout`: skopeo copies the image-layout model
//!   out, umoci unpacks its tar layers to the same tree.
//! - `attach_then_pull_referrers`: a referrer pushed by digest with `subject`, listed
//!   by the referrers API and pulled with `--referrers`.
//! - `pulls_kitops_modelkits_and_legacy_modelpack`: tar+gzip KitOps layers unpacked
//!   and the Kitfile written; `vnd.cnai` names and `org.cnai.model.filepath` read.
//! - `hostile_artifacts_write_nothing_outside`: `..` in path annotations and in tar
//!   entries is refused.

#[path = "common/mod.rs"]
mod common;
#[path = "cli/interop.rs"]
mod interop;
#[path = "cli/login.rs"]
mod login;
#[path = "cli/resume.rs"]
mod resume;
#[path = "cli/support.rs"]
mod support;

use support::*;

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// Berth on S3: a push cut into multipart parts, a pull that follows each blob's
/// redirect to a presigned URL, the same tree back; pulled again, nothing moves.
#[test]
fn push_and_pull_on_s3_through_redirects() {
    let env = Env::on_s3();
    let src = env.path("src");
    make_model(&src, 13);
    let out = env.json(&["push", src.to_str().unwrap(), &env.r("team/s3:v1"), "-q"]);
    let pulled = env.json(&[
        "pull",
        &env.r("team/s3:v1"),
        env.path("back").to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(pulled["digest"], out["digest"]);
    assert_same_tree(&src, &env.path("back"));
    let m = env.get_json("/v2/team/s3/manifests/v1", MANIFEST);
    let mut blobs: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["size"].as_u64() > Some(0))
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    blobs.sort();
    blobs.dedup();
    let redirects = env.srv.metric("berth_blob_redirects_total");
    assert!(
        redirects >= blobs.len() as f64,
        "{redirects} of {} files came through a redirect",
        blobs.len()
    );
}

#[test]
fn raw_and_image_layouts_round_trip() {
    let env = Env::new();
    let src = env.path("src");
    make_model(&src, 5);
    let out = env.json(&[
        "push",
        src.to_str().unwrap(),
        &env.r("team/model:v1"),
        "--commit",
        "c0ffee",
        "--metric",
        "auc=0.93",
        "--param",
        "epochs=3",
        "-q",
    ]);
    let digest = out["digest"].as_str().unwrap().to_string();
    assert_eq!(out["layers"].as_array().unwrap().len(), 12);

    // The manifest and config a ModelPack reader expects.
    let m = env.get_json("/v2/team/model/manifests/v1", MANIFEST);
    assert_eq!(
        m["artifactType"],
        "application/vnd.cncf.model.manifest.v1+json"
    );
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.cncf.model.config.v1+json"
    );
    let layers = m["layers"].as_array().unwrap();
    let paths: Vec<&str> = layers
        .iter()
        .map(|l| {
            l["annotations"]["org.cncf.model.filepath"]
                .as_str()
                .unwrap()
        })
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "layers are in path order");
    for l in layers {
        assert_eq!(
            l["annotations"]["org.opencontainers.image.title"],
            l["annotations"]["org.cncf.model.filepath"]
        );
        assert!(l["mediaType"].as_str().unwrap().ends_with(".v1.raw"));
    }
    let kind = |p: &str| layers[paths.iter().position(|x| *x == p).unwrap()]["mediaType"].clone();
    assert_eq!(
        kind("model.safetensors"),
        "application/vnd.cncf.model.weight.v1.raw"
    );
    assert_eq!(
        kind("adapters/lora/adapter_model.safetensors"),
        "application/vnd.cncf.model.weight.v1.raw"
    );
    assert_eq!(
        kind("tokenizer.json"),
        "application/vnd.cncf.model.weight.config.v1.raw"
    );
    assert_eq!(
        kind("scripts/serve.sh"),
        "application/vnd.cncf.model.code.v1.raw"
    );
    assert_eq!(
        kind("data/eval/sample.jsonl"),
        "application/vnd.cncf.model.dataset.v1.raw"
    );
    assert_eq!(kind("LICENSE"), "application/vnd.cncf.model.doc.v1.raw");
    let a = &m["annotations"];
    assert_eq!(a["org.opencontainers.image.version"], "v1");
    assert_eq!(a["org.opencontainers.image.revision"], "c0ffee");
    assert_eq!(a["dev.berth.lineage.run-id"], "run-42");
    assert_eq!(a["dev.berth.lineage.dataset"], "squad@2.0");
    assert_eq!(a["dev.berth.param.lr"], "0.0003");
    assert_eq!(a["dev.berth.param.epochs"], "3");
    assert_eq!(
        a["dev.berth.metric.auc"], "0.93",
        "the flag overrides berth.toml"
    );
    let cfg_digest = m["config"]["digest"].as_str().unwrap();
    let cfg = env.get_json(&format!("/v2/team/model/blobs/{cfg_digest}"), "*/*");
    let diff_ids: Vec<&str> = cfg["modelfs"]["diffIds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    let layer_digests: Vec<&str> = layers
        .iter()
        .map(|l| l["digest"].as_str().unwrap())
        .collect();
    assert_eq!(diff_ids, layer_digests);
    assert_eq!(cfg["modelfs"]["type"], "layers");
    assert_eq!(cfg["config"]["format"], "safetensors");
    assert_eq!(cfg["descriptor"]["name"], "model");
    assert_eq!(cfg["descriptor"]["version"], "v1");
    assert_eq!(cfg["descriptor"]["revision"], "c0ffee");
    assert!(
        cfg.get("dev.berth").is_none(),
        "the ModelPack schema allows no extra fields"
    );

    let pulled = env.json(&[
        "pull",
        &env.r("team/model:v1"),
        env.path("raw").to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(pulled["digest"], digest.as_str());
    assert_same_tree(&src, &env.path("raw"));
    assert!(!env.path("raw/.berth").exists());

    // Image layout: one tar per kind, same tree back.
    env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.r("team/model:v1-image"),
        "--layout",
        "image",
        "-q",
    ]);
    let m = env.get_json("/v2/team/model/manifests/v1-image", MANIFEST);
    let types: Vec<&str> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap())
        .collect();
    // A plain OCI image that runtimes unpack: image config, tar layers (one per
    // kind: weight, weight config, doc, code, dataset), marked as a model.
    assert_eq!(types, ["application/vnd.oci.image.layer.v1.tar"; 5]);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    assert!(m.get("artifactType").is_none());
    assert_eq!(m["annotations"]["dev.berth.model"], "image");
    let cfg_digest = m["config"]["digest"].as_str().unwrap();
    let cfg = env.get_json(&format!("/v2/team/model/blobs/{cfg_digest}"), "*/*");
    let layer_digests: Vec<&serde_json::Value> = m["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["digest"])
        .collect();
    let diff_ids: Vec<&serde_json::Value> = cfg["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .collect();
    assert_eq!(
        diff_ids, layer_digests,
        "uncompressed layers: diff ids are the digests"
    );
    env.run(&[
        "pull",
        &env.r("team/model:v1-image"),
        env.path("image").to_str().unwrap(),
        "-q",
    ]);
    assert_same_tree(&src, &env.path("image"));
    // Identical trees give identical tar layers.
    let again = env.json(&[
        "push",
        src.to_str().unwrap(),
        &env.r("team/model:v1-image2"),
        "--layout",
        "image",
        "-q",
    ]);
    assert!(
        again["layers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["outcome"] == "present")
    );

    // An index is pulled through its first manifest.
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": MANIFEST, "digest": digest, "size": env.get("/v2/team/model/manifests/v1", MANIFEST).1.len()}],
    });
    env.put_manifest(
        "team/model",
        "multi",
        "application/vnd.oci.image.index.v1+json",
        index.to_string().as_bytes(),
    );
    env.run(&[
        "pull",
        &env.r("team/model:multi"),
        env.path("via-index").to_str().unwrap(),
        "-q",
    ]);
    assert_same_tree(&src, &env.path("via-index"));
}

#[test]
fn adapter_only_change_uploads_only_the_adapter() {
    let env = Env::new();
    let src = env.path("src");
    make_model(&src, 4);
    let s = src.to_str().unwrap();
    env.run(&["push", s, &env.r("team/model:v1"), "-q"]);
    let adapter = "adapters/lora/adapter_model.safetensors";
    let adapter_bytes = noise(3, 300 * 1024 + 7);
    write(&src, adapter, &adapter_bytes);

    let before = env.upload_bytes_received();
    let out = env.json(&["push", s, &env.r("team/model:v2"), "-q"]);
    let received = env.upload_bytes_received() - before;
    let layers = out["layers"].as_array().unwrap();
    let uploaded: Vec<&str> = layers
        .iter()
        .filter(|l| l["outcome"] == "uploaded")
        .map(|l| l["label"].as_str().unwrap())
        .collect();
    assert_eq!(uploaded, [adapter]);
    assert!(
        layers
            .iter()
            .filter(|l| l["label"] != adapter)
            .all(|l| l["outcome"] == "present")
    );
    let config = out["config"]["size"].as_u64().unwrap();
    assert_eq!(
        out["bytes_uploaded"].as_u64().unwrap(),
        adapter_bytes.len() as u64 + config
    );
    assert_eq!(
        received,
        adapter_bytes.len() as u64 + config,
        "bytes the server received"
    );
    assert!(out["bytes_skipped"].as_u64().unwrap() > 4 * MIB as u64);

    // The same version in another repository of the same model name: every blob is
    // mounted by digest (config included, thanks to a fixed creation time).
    let fixed = |args: &[&str]| {
        let mut c = env.cmd(args);
        c.env("SOURCE_DATE_EPOCH", "1700000000");
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let a = fixed(&["push", s, &env.r("team/model:v3"), "-q", "--json"]);
    let before = env.upload_bytes_received();
    let b = fixed(&[
        "push",
        s,
        &env.r("other/model:v3"),
        "-q",
        "--json",
        "--mount-from",
        "team/model",
    ]);
    assert_eq!(
        env.upload_bytes_received(),
        before,
        "nothing uploaded to mount"
    );
    assert_eq!(b["bytes_uploaded"], 0);
    assert_eq!(b["config"]["outcome"], "mounted");
    // Every layer is mounted; docs/LICENSE repeats LICENSE's blob, pushed once.
    for l in b["layers"].as_array().unwrap() {
        let want = if l["label"] == "docs/LICENSE" {
            "present"
        } else {
            "mounted"
        };
        assert_eq!(l["outcome"], want, "{l}");
    }
    assert_eq!(
        a["digest"], b["digest"],
        "same content and tag, same manifest digest"
    );
}
#[test]
fn attach_then_pull_referrers() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "model.onnx", &noise(5, 64 * 1024));
    let out = env.json(&["push", src.to_str().unwrap(), &env.r("team/ref:v1"), "-q"]);
    let subject = out["digest"].as_str().unwrap().to_string();
    let report = env.path("eval-report.json");
    std::fs::write(&report, br#"{"auc":0.91}"#).unwrap();
    let a = env.json(&[
        "attach",
        &env.r("team/ref:v1"),
        report.to_str().unwrap(),
        "--type",
        "application/vnd.berth.eval-report+json",
        "--annotation",
        "dev.berth.eval=holdout",
        "-q",
    ]);
    let referrer = a["digest"].as_str().unwrap().to_string();
    assert_eq!(a["subject"]["digest"], subject.as_str());
    assert_eq!(a["layer"]["mediaType"], "application/json");

    let list = env.get_json(
        &format!("/v2/team/ref/referrers/{subject}"),
        "application/vnd.oci.image.index.v1+json",
    );
    let found = &list["manifests"][0];
    assert_eq!(found["digest"], referrer.as_str());
    assert_eq!(
        found["artifactType"],
        "application/vnd.berth.eval-report+json"
    );
    assert_eq!(found["annotations"]["dev.berth.eval"], "holdout");
    let m = env.get_json(&format!("/v2/team/ref/manifests/{referrer}"), MANIFEST);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.empty.v1+json"
    );
    assert_eq!(m["subject"]["digest"], subject.as_str());

    let dir = env.path("out");
    let p = env.json(&[
        "pull",
        &env.r("team/ref:v1"),
        dir.to_str().unwrap(),
        "--referrers",
        "-q",
    ]);
    assert_eq!(p["referrers"][0]["digest"], referrer.as_str());
    let hex = referrer.trim_start_matches("sha256:");
    let got = dir.join(format!(
        ".referrers/application_vnd.berth.eval-report_json/{hex}/eval-report.json"
    ));
    assert_eq!(std::fs::read(got).unwrap(), br#"{"auc":0.91}"#);
    assert_same_tree(&src, &dir);

    let err = env.fail(&[
        "attach",
        &env.r("team/ref:nope"),
        report.to_str().unwrap(),
        "--type",
        "a/b",
    ]);
    assert!(err.contains("MANIFEST_UNKNOWN"), "{err}");
}

#[test]
fn hostile_artifacts_write_nothing_outside() {
    let env = Env::new();
    let cfg = env.put_blob("evil/model", b"{}");
    let payload = env.put_blob("evil/model", b"pwned");
    let tar = raw_tar(&[("ok.txt", b"fine"), ("../../escaped.txt", b"pwned")]);
    let tar_digest = env.put_blob("evil/model", &tar);
    let manifest = |layer: serde_json::Value| {
        serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST,
            "artifactType": "application/vnd.cncf.model.manifest.v1+json",
            "config": {"mediaType": "application/vnd.cncf.model.config.v1+json", "digest": cfg, "size": 2},
            "layers": [layer],
        })
        .to_string()
    };
    let by_path = manifest(serde_json::json!({
        "mediaType": "application/vnd.cncf.model.weight.v1.raw", "digest": payload, "size": 5,
        "annotations": {"org.cncf.model.filepath": "../../escaped.txt"},
    }));
    let by_tar = manifest(serde_json::json!({
        "mediaType": "application/vnd.cncf.model.weight.v1.tar", "digest": tar_digest, "size": tar.len(),
    }));
    env.put_manifest("evil/model", "path", MANIFEST, by_path.as_bytes());
    env.put_manifest("evil/model", "tar", MANIFEST, by_tar.as_bytes());
    let dir = env.path("a/b/out");
    for tag in ["path", "tar"] {
        let err = env.fail(&[
            "pull",
            &env.r(&format!("evil/model:{tag}")),
            dir.to_str().unwrap(),
            "-q",
        ]);
        assert!(err.contains(".."), "{tag}: {err}");
    }
    for p in ["escaped.txt", "a/escaped.txt", "a/b/escaped.txt"] {
        assert!(!env.path(p).exists(), "{p} was written");
    }
}

/// A gzipped tar of `(path, bytes)` entries, as KitOps writes its layers.
fn tar_gz(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut b = tar::Builder::new(gz);
    for (path, data) in entries {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap().finish().unwrap()
}

#[test]
fn pulls_kitops_modelkits_and_legacy_modelpack() {
    let env = Env::new();
    let repo = "kit/model";
    let kitfile = br#"{"manifestVersion":"1.0","package":{"name":"demo"},"model":{"path":"model/model.gguf"}}"#;
    let weights = noise(6, 2 * MIB);
    let model = tar_gz(&[("model/model.gguf", &weights)]);
    let docs = tar_gz(&[("README.md", b"# demo\n")]);
    let desc = |mt: &str, bytes: &[u8]| serde_json::json!({"mediaType": mt, "digest": env.put_blob(repo, bytes), "size": bytes.len()});
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": desc("application/vnd.kitops.modelkit.config.v1+json", kitfile),
        "layers": [
            desc("application/vnd.kitops.modelkit.model.v1.tar+gzip", &model),
            desc("application/vnd.kitops.modelkit.docs.v1.tar+gzip", &docs),
        ],
    });
    env.put_manifest(repo, "v1", MANIFEST, manifest.to_string().as_bytes());
    let dir = env.path("kit");
    env.run(&["pull", &env.r("kit/model:v1"), dir.to_str().unwrap(), "-q"]);
    assert_eq!(std::fs::read(dir.join("Kitfile")).unwrap(), kitfile);
    assert_eq!(
        std::fs::read(dir.join("model/model.gguf")).unwrap(),
        weights
    );
    assert_eq!(std::fs::read(dir.join("README.md")).unwrap(), b"# demo\n");

    // ModelPack before v0.0.7: vnd.cnai media types and org.cnai.model.filepath.
    let legacy = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": "application/vnd.cnai.model.manifest.v1+json",
        "config": desc("application/vnd.cnai.model.config.v1+json", b"{}"),
        "layers": [{
            "mediaType": "application/vnd.cnai.model.weight.v1.raw",
            "digest": env.put_blob(repo, &weights), "size": weights.len(),
            "annotations": {"org.cnai.model.filepath": "weights/model.gguf"},
        }],
    });
    env.put_manifest(repo, "legacy", MANIFEST, legacy.to_string().as_bytes());
    let dir = env.path("legacy");
    env.run(&[
        "pull",
        &env.r("kit/model:legacy"),
        dir.to_str().unwrap(),
        "-q",
    ]);
    assert_eq!(
        std::fs::read(dir.join("weights/model.gguf")).unwrap(),
        weights
    );
}
