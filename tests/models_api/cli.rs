//! `berth models`, `versions`, `show`, `compare` run as processes.

use std::process::Command;

use serde_json::Value;

use super::common::TestServer;
use super::*;

/// Runs `berth ARGS --registry ADDR`, asserting success; returns stdout.
fn berth(addr: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(args)
        .arg("--registry")
        .arg(addr)
        .output()
        .expect("run berth");
    assert!(
        out.status.success(),
        "berth {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn json_of(addr: &str, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let out = berth(addr, &args);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("berth {args:?}: not JSON ({e}): {out}"))
}

/// Lines of a table, each split into its columns.
fn rows(table: &str) -> Vec<Vec<String>> {
    table
        .lines()
        .map(|l| {
            l.split("  ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(str::to_string)
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn view_commands_print_tables_and_json() {
    let srv = TestServer::start();
    let [v1, v2, _] = classifier(&client(), &srv.url).await;
    let addr = srv.addr.as_str();

    // models
    let j = json_of(addr, &["models"]);
    assert_eq!(j["items"][0]["name"], "team/classifier");
    assert_eq!(j["next_cursor"], Value::Null);
    let t = rows(&berth(addr, &["models"]));
    assert_eq!(
        t[0],
        ["NAME", "VERSIONS", "LATEST", "TAGS", "CREATED", "SIZE"]
    );
    assert_eq!(t[1][0], "team/classifier");
    assert_eq!(t[1][1], "3");
    assert_eq!(t[1][3], "v3");
    let j = json_of(addr, &["models", "--query", "nothing"]);
    assert!(j["items"].as_array().unwrap().is_empty());

    // versions, sorted and filtered
    let j = json_of(
        addr,
        &[
            "versions",
            "team/classifier",
            "--sort",
            "-metrics.auc",
            "--filter",
            "metrics.auc>=0.8",
        ],
    );
    let digests: Vec<&str> = j["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["digest"].as_str().unwrap())
        .collect();
    assert_eq!(digests, [v2.as_str(), v1.as_str()]);
    let out = berth(
        addr,
        &[
            "versions",
            "team/classifier",
            "--sort=-metrics.auc",
            "--filter",
            "params.lr<=0.01",
        ],
    );
    let t = rows(&out);
    assert_eq!(&t[0][..4], ["DIGEST", "TAGS", "CREATED", "SIZE"]);
    assert!(
        t[0].contains(&"auc".to_string()) && t[0].contains(&"lr".to_string()),
        "{out}"
    );
    assert_eq!(t.len(), 3, "{out}");
    assert_eq!(t[1][1], "prod,v2");
    assert_eq!(t[1][0], &v2["sha256:".len()..][..12]);
    assert!(t[1].contains(&"0.92".to_string()), "{out}");
    // --registry inside the name works too.
    let j = json_of(
        addr,
        &[
            "versions",
            &format!("{addr}/team/classifier"),
            "--limit",
            "1",
        ],
    );
    assert!(j["next_cursor"].is_string());
    // A bad filter fails with the API's message.
    let out = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "versions",
            "team/classifier",
            "--filter",
            "metrics.auc>>1",
            "--registry",
            addr,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FILTER_INVALID"), "{err}");

    // show
    let j = json_of(addr, &["show", "team/classifier:prod"]);
    assert_eq!(j["digest"], v2);
    assert_eq!(j["tags"], serde_json::json!(["prod", "v2"]));
    let j = json_of(addr, &["show", &format!("{addr}/team/classifier@{v1}")]);
    assert_eq!(j["digest"], v1);
    let out = berth(addr, &["show", "team/classifier:v2"]);
    for needle in [
        "Digest:",
        &v2,
        "prod,v2",
        "Metrics:",
        "auc",
        "0.92",
        "Lineage:",
        "imagenet@2",
        "Layers:",
        "head-2.safetensors",
        "weight",
    ] {
        assert!(out.contains(needle), "show output lacks {needle:?}:\n{out}");
    }

    // compare
    let j = json_of(addr, &["compare", "team/classifier", "v1", "v2"]);
    assert_eq!(j["baseline"], v1);
    assert_eq!(j["versions"][1]["metric_deltas"]["auc"], 0.07);
    let out = berth(addr, &["compare", "team/classifier", "v1", "v2", "v3"]);
    let t = rows(&out);
    assert_eq!(t[0], ["v1 (baseline)", "v2", "v3"]);
    let auc = t.iter().find(|r| r[0] == "metrics.auc").expect("auc row");
    assert_eq!(auc[1..], ["0.85", "0.92 (+0.07)", "-"]);
    let lr = t.iter().find(|r| r[0] == "params.lr *").expect("lr row");
    assert_eq!(lr[1..], ["0.01", "0.005", "0.02"]);
    let shared = t
        .iter()
        .find(|r| r[0] == "layers shared")
        .expect("shared row");
    assert_eq!(shared[1..], ["-", "1 (3.9 KiB)", "1 (3.9 KiB)"]);
}
