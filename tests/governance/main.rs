//! Promotion as a signed tag move, against a real `berth serve --policy`: side
//! doors refused, gates reported, the compare-and-swap race, rollback and time
//! travel, audit tamper detection, and signatures and attestations checked by an
//! independent implementation.

#[path = "../common/mod.rs"]
mod common;
mod events;
mod gates;

use std::path::Path;
use std::process::Command;

use common::TestServer;
use reqwest::{Client, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const EVAL: &str = "application/vnd.berth.eval-report+json";

const POLICY: &str = r#"
[[repository]]
match = "team/*"
protected = ["prod", "staging"]
immutable = ["^v[0-9]+"]

[[repository.alias.prod.gate]]
type = "metric"
metric = "auc"
min_delta = 0.01

[[repository.alias.prod.gate]]
type = "approval"
count = 1
exclude_pusher = true

[[repository.alias.prod.gate]]
type = "referrer"
artifact_type = "application/vnd.berth.eval-report+json"
"#;

fn sha256(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

fn server(dir: &Path) -> TestServer {
    let policy = dir.join("policy.toml");
    std::fs::write(&policy, POLICY).unwrap();
    TestServer::start_with(&["--policy", policy.to_str().unwrap()])
}

async fn blob(c: &Client, url: &str, repo: &str, bytes: &[u8]) -> Value {
    let d = sha256(bytes);
    let r = c
        .post(format!("{url}/v2/{repo}/blobs/uploads/?digest={d}"))
        .body(bytes.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    json!({ "mediaType": "application/octet-stream", "digest": d, "size": bytes.len() })
}

/// A version of team/m with metric `auc`, pushed by alice; returns (status, digest, body).
async fn push(
    c: &Client,
    url: &str,
    tag: &str,
    seed: &str,
    auc: &str,
) -> (StatusCode, String, String) {
    push_to(c, url, "team/m", tag, seed, auc).await
}

async fn push_to(
    c: &Client,
    url: &str,
    repo: &str,
    tag: &str,
    seed: &str,
    auc: &str,
) -> (StatusCode, String, String) {
    let mut config = blob(c, url, repo, format!("config {seed}").as_bytes()).await;
    config["mediaType"] = json!("application/vnd.oci.image.config.v1+json");
    let layer = blob(c, url, repo, seed.as_bytes()).await;
    let m = json!({
        "schemaVersion": 2, "mediaType": MANIFEST, "config": config, "layers": [layer],
        "annotations": { "dev.berth.metric.auc": auc },
    });
    let body = serde_json::to_vec(&m).unwrap();
    let r = c
        .put(format!("{url}/v2/{repo}/manifests/{tag}"))
        .header("content-type", MANIFEST)
        .header("berth-actor", "alice")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    (r.status(), sha256(&body), r.text().await.unwrap())
}

/// An evaluation report referrer of `subject`.
async fn attach_eval(c: &Client, url: &str, subject: &str) {
    let empty = blob(c, url, "team/m", b"{}").await;
    let m = json!({
        "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": EVAL,
        "config": { "mediaType": "application/vnd.oci.empty.v1+json", "digest": empty["digest"], "size": 2 },
        "layers": [empty],
        "subject": { "mediaType": MANIFEST, "digest": subject, "size": 1 },
    });
    let body = serde_json::to_vec(&m).unwrap();
    let r = c
        .put(format!("{url}/v2/team/m/manifests/{}", sha256(&body)))
        .header("content-type", MANIFEST)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
}

async fn promote(
    c: &Client,
    url: &str,
    target: &str,
    if_match: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = c
        .put(format!("{url}/api/v1/models/team/m/aliases/prod"))
        .header("berth-actor", "carol")
        .json(&json!({ "target": target, "reason": "better auc" }));
    if let Some(m) = if_match {
        req = req.header("if-match", format!("\"{m}\""));
    }
    let r = req.send().await.unwrap();
    (r.status(), r.json().await.unwrap_or(Value::Null))
}

async fn approve(c: &Client, url: &str, version: &str, who: &str) -> StatusCode {
    c.post(format!(
        "{url}/api/v1/models/team/m/versions/{version}/approvals"
    ))
    .header("berth-actor", who)
    .json(&json!({ "alias": "prod", "comment": "looked at the eval" }))
    .send()
    .await
    .unwrap()
    .status()
}

/// GETs a URL and returns its JSON.
pub async fn get_json(c: &Client, url: String) -> Value {
    c.get(url).send().await.unwrap().json().await.unwrap()
}

fn gate<'a>(report: &'a Value, kind: &str) -> &'a Value {
    report["gates"]
        .as_array()
        .and_then(|g| g.iter().find(|x| x["type"] == kind))
        .unwrap_or_else(|| panic!("no {kind} gate in {report}"))
}

fn berth(url: &str, args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let host = url.trim_start_matches("http://");
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .env("BERTH_REGISTRY", host)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn promotion_is_governed_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let (c, url) = (Client::new(), s.url.clone());

    // Version tags: set once; identical bytes again are fine; other bytes are refused.
    let (st, v1, _) = push(&c, &url, "v1", "one", "0.80").await;
    assert_eq!(st, StatusCode::CREATED);
    assert_eq!(
        push(&c, &url, "v1", "one", "0.80").await.0,
        StatusCode::CREATED
    );
    let (st, _, body) = push(&c, &url, "v1", "other", "0.99").await;
    assert_eq!(st, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body.contains("DENIED") && body.contains("immutable"),
        "{body}"
    );

    // No side door onto a protected alias.
    let (st, _, body) = push(&c, &url, "prod", "one", "0.80").await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    assert!(
        body.contains("DENIED") && body.contains("berth promote"),
        "{body}"
    );

    // A misspelt flag is refused, not taken as a real promotion; a body that is
    // not declared JSON (a cross-site form post) is refused too.
    let r = c
        .put(format!(
            "{url}/api/v1/models/team/m/aliases/prod?dry-run=true"
        ))
        .json(&json!({ "target": "v1" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = c
        .post(format!("{url}/api/v1/models/team/m/aliases/prod/rollback"))
        .header("content-type", "text/plain")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);

    // Gates: approval and referrer missing; each reported.
    let (st, v) = promote(&c, &url, "v1", None).await;
    assert_eq!(st, StatusCode::CONFLICT, "{v}");
    assert_eq!(v["error"]["code"], "GATE_FAILED");
    let report = &v["error"]["report"];
    assert_eq!(
        gate(report, "metric")["passed"],
        true,
        "no champion yet: {report}"
    );
    assert_eq!(gate(report, "approval")["passed"], false);
    assert_eq!(gate(report, "referrer")["passed"], false);
    // The pusher cannot approve their own version into prod.
    assert_eq!(approve(&c, &url, "v1", "alice").await, StatusCode::OK);
    let (st, v) = promote(&c, &url, "v1", None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    assert_eq!(
        gate(&v["error"]["report"], "approval")["passed"],
        false,
        "{v}"
    );
    assert_eq!(approve(&c, &url, "v1", "bob").await, StatusCode::OK);
    attach_eval(&c, &url, &v1).await;
    let (st, v) = promote(&c, &url, "v1", None).await;
    assert_eq!(st, StatusCode::OK, "{v}");
    assert_eq!(v["alias"]["digest"], v1.as_str());
    assert_eq!(v["report"]["passed"], true);

    // Deleting what prod holds is refused, by tag and by digest; deleting prod too.
    for path in [
        "v2/team/m/manifests/prod".to_string(),
        format!("v2/team/m/manifests/{v1}"),
    ] {
        let r = c.delete(format!("{url}/{path}")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(r.text().await.unwrap().contains("DENIED"));
    }

    // A worse candidate fails the metric gate, with the figures.
    let (_, v2, _) = push(&c, &url, "v2", "two", "0.805").await;
    approve(&c, &url, "v2", "bob").await;
    attach_eval(&c, &url, &v2).await;
    let (st, v) = promote(&c, &url, "v2", None).await;
    assert_eq!(st, StatusCode::CONFLICT);
    let metric = gate(&v["error"]["report"], "metric");
    assert_eq!(metric["passed"], false, "{metric}");
    assert!(metric["figures"].to_string().contains("0.805"), "{metric}");

    // The race: of 8 promotions with the same If-Match, exactly one wins.
    let (_, v3, _) = push(&c, &url, "v3", "three", "0.95").await;
    approve(&c, &url, "v3", "bob").await;
    attach_eval(&c, &url, &v3).await;
    let racers = (0..8).map(|_| {
        let (c, url, v1) = (c.clone(), url.clone(), v1.clone());
        tokio::spawn(async move { promote(&c, &url, "v3", Some(&v1)).await.0 })
    });
    let mut statuses = Vec::new();
    for r in racers {
        statuses.push(r.await.unwrap());
    }
    let won = statuses.iter().filter(|s| **s == StatusCode::OK).count();
    let stale = statuses
        .iter()
        .filter(|s| **s == StatusCode::PRECONDITION_FAILED)
        .count();
    assert_eq!((won, stale), (1, 7), "{statuses:?}");

    // The hot path: ETag = digest, 304 on a match.
    let r = c
        .get(format!("{url}/api/v1/models/team/m/aliases/prod"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["etag"], format!("\"{v3}\"").as_str());
    let r = c
        .get(format!("{url}/api/v1/models/team/m/aliases/prod"))
        .header("if-none-match", format!("\"{v3}\""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);

    // Rollback flips back to v1; history keeps every move; ?at= answers the past.
    let (ok, out) = berth(
        &url,
        &["rollback", "team/m", "prod", "--reason", "3am page"],
        &[],
    );
    assert!(ok, "{out}");
    let alias = get_json(&c, format!("{url}/api/v1/models/team/m/aliases/prod")).await;
    assert_eq!(alias["digest"], v1.as_str());
    assert_eq!(alias["kind"], "rollback");
    let hist = get_json(
        &c,
        format!("{url}/api/v1/models/team/m/aliases/prod/history"),
    )
    .await;
    let items = hist["items"].as_array().unwrap();
    let targets: Vec<&str> = items
        .iter()
        .map(|e| e["target"].as_str().unwrap())
        .collect();
    assert_eq!(targets, vec![v1.as_str(), v3.as_str(), v1.as_str()]);
    let first_time = items[2]["time"].as_str().unwrap();
    let at_url = format!(
        "{url}/api/v1/models/team/m/aliases/prod?at={}",
        first_time.replace('+', "%2B")
    );
    let at = get_json(&c, at_url).await;
    assert_eq!(at["digest"], v1.as_str(), "{at}");
    let (ok, out) = berth(&url, &["history", "team/m", "prod"], &[]);
    assert!(
        ok && out.contains("rollback") && out.contains("promote"),
        "{out}"
    );

    // Signatures and attestations, checked by an independent implementation.
    let keys = tmp.path().join("k");
    let prefix = keys.to_str().unwrap();
    let pw = [("COSIGN_PASSWORD", "pw")];
    let (ok, out) = berth(&url, &["keygen", "--output-key-prefix", prefix], &pw);
    assert!(ok, "{out}");
    let key = format!("{prefix}.key");
    let (ok, out) = berth(&url, &["sign", &format!("team/m@{v1}"), "--key", &key], &pw);
    assert!(ok, "{out}");
    let registry_pub = tmp.path().join("registry.pub");
    let pem = c
        .get(format!("{url}/api/v1/signing-key"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    std::fs::write(&registry_pub, pem).unwrap();
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/governance/verify_independently.py"
    );
    let out = Command::new("python3")
        .args([
            script,
            &url,
            "team/m",
            &v1,
            &format!("{prefix}.pub"),
            registry_pub.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let found: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(
        (
            found["bundle_signatures"].as_u64(),
            found["simple_signatures"].as_u64()
        ),
        (Some(1), Some(1)),
        "{found}"
    );
    let kinds: Vec<&str> = found["promotions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"promote") && kinds.contains(&"rollback"),
        "{found}"
    );
    // And by Berth's own verifier: the alias's latest move and the signature.
    let pubkey = format!("{prefix}.pub");
    let args = [
        "verify",
        "team/m@prod",
        "--registry-key",
        registry_pub.to_str().unwrap(),
        "--key",
        &pubkey,
    ];
    let (ok, out) = berth(&url, &args, &[]);
    assert!(ok, "{out}");
    let other = tmp.path().join("other");
    berth(
        &url,
        &["keygen", "--output-key-prefix", other.to_str().unwrap()],
        &pw,
    );
    let (ok, out) = berth(
        &url,
        &[
            "verify",
            &format!("team/m@{v1}"),
            "--key",
            &format!("{}.pub", other.display()),
        ],
        &[],
    );
    assert!(!ok, "a foreign key must not verify: {out}");

    // The audit log: intact online and exported; any edit, removal or cut detected.
    let (ok, out) = berth(
        &url,
        &[
            "audit",
            "verify",
            "--registry-key",
            registry_pub.to_str().unwrap(),
        ],
        &[],
    );
    assert!(ok && out.contains("intact"), "{out}");
    let export = tmp.path().join("audit.jsonl");
    let (ok, out) = berth(
        &url,
        &["audit", "export", "-o", export.to_str().unwrap()],
        &[],
    );
    assert!(ok, "{out}");
    let lines: Vec<String> = std::fs::read_to_string(&export)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(lines.len() > 10);
    let tampered = tmp.path().join("t.jsonl");
    let check = |ls: &[String]| {
        std::fs::write(&tampered, ls.join("\n") + "\n").unwrap();
        std::fs::copy(
            export.with_extension("jsonl.head"),
            tampered.with_extension("jsonl.head"),
        )
        .unwrap();
        berth(&url, &["audit", "verify", tampered.to_str().unwrap()], &[])
    };
    assert!(check(&lines).0, "the copy verifies");
    let mut edited = lines.clone();
    let i = lines
        .iter()
        .position(|l| l.contains("\"alice\""))
        .expect("a record by alice");
    edited[i] = edited[i].replacen("\"alice\"", "\"mallory\"", 1);
    let (ok, out) = check(&edited);
    assert!(!ok && out.contains("altered"), "{out}");
    let mut removed = lines.clone();
    removed.remove(4);
    assert!(!check(&removed).0, "a removed record is detected");
    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    assert!(!check(&swapped).0, "reordering is detected");
    let cut = &lines[..lines.len() - 1];
    let (ok, out) = check(cut);
    assert!(
        !ok && out.contains("signed"),
        "a cut tail is detected: {out}"
    );
}

#[tokio::test]
async fn a_bad_policy_is_refused_with_its_line_and_the_old_one_stays() {
    let tmp = tempfile::tempdir().unwrap();
    let s = server(tmp.path());
    let (c, url) = (Client::new(), s.url.clone());
    let r = c
        .put(format!("{url}/api/v1/policy"))
        .body("[[repository]]\nmatch = \"team/*\"\nprotected = [\"prod\"]\nbogus = 1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("line 4"));
    let text = c
        .get(format!("{url}/api/v1/policy"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, POLICY);
    // The file on disk, broken and reloaded with SIGHUP, is refused the same way.
    std::fs::write(tmp.path().join("policy.toml"), "[[repository]\n").unwrap();
    let pid = s.pid();
    Command::new("kill")
        .args(["-HUP", &pid.to_string()])
        .status()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let (st, _, _) = push(&c, &url, "prod", "x", "0.1").await;
    assert_eq!(
        st,
        StatusCode::FORBIDDEN,
        "the old policy is still in force"
    );

    // A good policy replaces it: a stale If-Match is refused, the current one
    // accepted, and the change is audited with its actor.
    let etag = sha256(POLICY.as_bytes()).replace("sha256:", "");
    let relaxed = "[[repository]]\nmatch = \"other/*\"\nprotected = [\"prod\"]\n";
    let put = |tag: String| {
        c.put(format!("{url}/api/v1/policy"))
            .header("if-match", format!("\"{tag}\""))
            .header("berth-actor", "admin")
            .body(relaxed)
            .send()
    };
    let r = put("0".repeat(64)).await.unwrap();
    assert_eq!(r.status(), StatusCode::PRECONDITION_FAILED);
    let r = put(etag).await.unwrap();
    assert_eq!(r.status(), StatusCode::OK, "{}", r.text().await.unwrap());
    let (st, _, body) = push(&c, &url, "prod", "x", "0.1").await;
    assert_eq!(
        st,
        StatusCode::CREATED,
        "team/m is no longer guarded: {body}"
    );
    let audit = get_json(
        &c,
        format!("{url}/api/v1/audit?action=policy.change&actor=admin"),
    )
    .await;
    assert_eq!(audit["items"].as_array().map(Vec::len), Some(1), "{audit}");
}
