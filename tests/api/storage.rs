//! Storage accounting checked against what was pushed: logical bytes summed
//! over versions, physical bytes once per digest, and what nothing references.

use reqwest::{Method, StatusCode};

use super::common::TestServer;
use super::{berth_cli, client, image_manifest, push_blob, put_manifest, send};

#[tokio::test]
async fn storage_figures_match_what_was_pushed() {
    let srv = TestServer::start();
    let c = client();
    let weights = vec![7u8; 100_000];
    let (cfg1, cfg2, cfg3) = (b"{\"v\":1}", b"{\"v\":2}", b"{\"v\":3}");
    for (repo, cfg) in [("acct/a", cfg1), ("acct/a", cfg2), ("acct/b", cfg3)] {
        push_blob(&c, &srv.url, repo, cfg).await;
        push_blob(&c, &srv.url, repo, &weights).await; // the second push dedups
    }
    let m1 = image_manifest(cfg1, &[&weights], serde_json::json!({}));
    let m2 = image_manifest(cfg2, &[&weights], serde_json::json!({}));
    let m3 = image_manifest(cfg3, &[&weights], serde_json::json!({}));
    assert_eq!(
        put_manifest(&c, &srv.url, "acct/a", "v1", &m1).await,
        StatusCode::CREATED
    );
    assert_eq!(
        put_manifest(&c, &srv.url, "acct/a", "v2", &m2).await,
        StatusCode::CREATED
    );
    assert_eq!(
        put_manifest(&c, &srv.url, "acct/b", "v1", &m3).await,
        StatusCode::CREATED
    );
    let orphan = b"a blob whose manifest never came";
    push_blob(&c, &srv.url, "acct/c", orphan).await;

    let resp = send(&c, Method::GET, format!("{}/api/v1/storage", srv.url)).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let r: serde_json::Value = resp.json().await.unwrap();
    let w = weights.len() as u64;
    let n = |b: &[u8]| b.len() as u64;
    let repo = |name: &str| {
        r["repositories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {r}"))
            .clone()
    };
    let a = repo("acct/a");
    assert_eq!(a["manifests"], 2);
    assert_eq!(
        a["logical_bytes"],
        n(&m1) + n(cfg1) + w + n(&m2) + n(cfg2) + w
    );
    assert_eq!(a["physical_bytes"], n(&m1) + n(&m2) + n(cfg1) + n(cfg2) + w);
    assert_eq!(a["unreferenced_bytes"], 0);
    let b = repo("acct/b");
    assert_eq!(b["logical_bytes"], n(&m3) + n(cfg3) + w);
    let orphaned = repo("acct/c");
    assert_eq!(orphaned["manifests"], 0);
    assert_eq!(orphaned["unreferenced_bytes"], n(orphan));

    let t = &r["total"];
    let logical = n(&m1) + n(cfg1) + n(&m2) + n(cfg2) + n(&m3) + n(cfg3) + 3 * w;
    let physical = n(&m1) + n(&m2) + n(&m3) + n(cfg1) + n(cfg2) + n(cfg3) + w + n(orphan);
    assert_eq!(t["repositories"], 3);
    assert_eq!(t["manifests"], 3);
    assert_eq!(t["logical_bytes"], logical);
    assert_eq!(t["physical_bytes"], physical, "the weights are stored once");
    assert_eq!(t["blobs"], 8);
    assert_eq!(t["reclaimable_bytes"], n(orphan));
    let ratio = t["dedup_ratio"].as_f64().unwrap();
    assert!(
        (ratio - logical as f64 / physical as f64).abs() < 1e-9,
        "{ratio}"
    );

    let text = send(&c, Method::GET, format!("{}/metrics", srv.url))
        .await
        .text()
        .await
        .unwrap();
    let line = format!("berth_storage_reclaimable_bytes {}", n(orphan));
    assert!(text.lines().any(|l| l == line), "{line} in {text}");
    let line = format!(
        "berth_storage_repository_logical_bytes{{repository=\"acct/b\"}} {}",
        n(&m3) + n(cfg3) + w
    );
    assert!(text.lines().any(|l| l == line), "{line} in {text}");

    let stdout = berth_cli(&srv.addr, &["du", "acct/a"], 0);
    assert!(
        stdout.contains("acct/a") && !stdout.contains("acct/b"),
        "{stdout}"
    );
    assert!(stdout.contains("3 repositories, 3 manifests"), "{stdout}");
}
