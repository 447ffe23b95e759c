//! Garbage collection: what goes, what stays, and pushes racing it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use super::common::TestServer;
use super::{berth_cli, client, image_manifest, push_blob, put_manifest, send, sha256};

async fn gc(c: &Client, url: &str, query: &str) -> Value {
    let resp = send(c, Method::POST, format!("{url}/api/v1/gc?{query}")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    resp.json().await.unwrap()
}

fn digests(report: &Value, list: &str) -> Vec<String> {
    report[list]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["digest"].as_str().unwrap().to_string())
        .collect()
}

async fn status(c: &Client, method: Method, url: String) -> StatusCode {
    send(c, method, url).await.status()
}

/// Pushes config + layer + manifest (tagged, or by digest when `tag` is None).
async fn push(
    c: &Client,
    url: &str,
    repo: &str,
    tag: Option<&str>,
    config: &[u8],
    layer: &[u8],
) -> String {
    push_blob(c, url, repo, config).await;
    push_blob(c, url, repo, layer).await;
    let body = image_manifest(config, &[layer], json!({}));
    let digest = sha256(&body);
    let reference = tag.unwrap_or(&digest);
    assert_eq!(
        put_manifest(c, url, repo, reference, &body).await,
        StatusCode::CREATED
    );
    digest
}

#[tokio::test]
async fn gc_removes_what_nothing_needs_and_keeps_the_rest() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    let shared = b"a layer two versions share".to_vec();
    let kept = push(&c, url, "gc/a", Some("v1"), b"{\"v\":1}", &shared).await;
    let deleted = push(&c, url, "gc/a", Some("v2"), b"{\"v\":2}", &shared).await;
    let untagged = push(
        &c,
        url,
        "gc/a",
        None,
        b"{\"v\":3}",
        b"only the untagged one has this",
    )
    .await;
    // A referrer of the version about to be deleted.
    let cfg = b"{}";
    push_blob(&c, url, "gc/a", cfg).await;
    let referrer = image_manifest(
        cfg,
        &[],
        json!({"subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "digest": deleted, "size": 1}}),
    );
    assert_eq!(
        put_manifest(&c, url, "gc/a", &sha256(&referrer), &referrer).await,
        StatusCode::CREATED
    );
    let orphan = push_blob(&c, url, "gc/b", b"a blob whose manifest never came").await;
    let resp = send(
        &c,
        Method::DELETE,
        format!("{url}/v2/gc/a/manifests/{deleted}"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);

    // `berth gc` is a dry run unless told to apply.
    let stdout = berth_cli(&srv.addr, &["gc", "--grace-secs", "0"], 0);
    assert!(
        stdout.contains(&format!("would remove blob {orphan}")),
        "{stdout}"
    );
    assert!(stdout.contains("a dry run"), "{stdout}");

    // A dry run lists and deletes nothing.
    let dry = gc(&c, url, "grace_secs=0").await;
    assert_eq!(dry["applied"], false);
    assert_eq!(digests(&dry, "manifests"), vec![sha256(&referrer)], "{dry}");
    let would = digests(&dry, "blobs");
    assert!(
        would.contains(&orphan) && would.contains(&sha256(b"{\"v\":2}")),
        "{dry}"
    );
    assert!(
        !would.contains(&sha256(&shared)),
        "a layer a kept version uses stays: {dry}"
    );
    let blob_url = |repo: &str, d: &str| format!("{url}/v2/{repo}/blobs/{d}");
    assert_eq!(
        status(&c, Method::HEAD, blob_url("gc/b", &orphan)).await,
        StatusCode::OK
    );

    // Within the grace period nothing young is swept, nor said to be; a grace
    // too long to count in milliseconds is the longest one, not a wrapped one.
    for query in [
        "apply=true",
        "apply=false",
        "apply=true&grace_secs=18446744073709551615",
    ] {
        let young = gc(&c, url, query).await;
        assert_eq!(
            young["blobs"].as_array().unwrap().len(),
            0,
            "{query}: {young}"
        );
    }

    let done = gc(&c, url, "apply=true&grace_secs=0").await;
    assert_eq!(done["applied"], true);
    assert_eq!(digests(&done, "manifests"), vec![sha256(&referrer)]);
    let swept = digests(&done, "blobs");
    for gone in [&orphan, &sha256(b"{\"v\":2}"), &sha256(&referrer)] {
        assert!(swept.contains(gone), "{gone} swept: {done}");
    }
    let freed: u64 = done["blobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["size"].as_u64().unwrap())
        .sum();
    assert_eq!(done["bytes"], freed);
    assert_eq!(
        done["repositories"],
        json!(["gc/b"]),
        "the empty repository goes"
    );
    assert_eq!(
        status(&c, Method::HEAD, blob_url("gc/b", &orphan)).await,
        StatusCode::NOT_FOUND
    );
    let catalog: Value = send(&c, Method::GET, format!("{url}/v2/_catalog"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(catalog["repositories"], json!(["gc/a"]));
    // What stays is whole: the tagged version and the untagged one (no retention limit).
    for (m, layer) in [
        (&kept, shared.as_slice()),
        (&untagged, b"only the untagged one has this".as_slice()),
    ] {
        let resp = c
            .get(format!("{url}/v2/gc/a/manifests/{m}"))
            .header("accept", "application/vnd.oci.image.manifest.v1+json")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        let resp = send(&c, Method::GET, blob_url("gc/a", &sha256(layer))).await;
        assert_eq!(resp.bytes().await.unwrap().as_ref(), layer);
    }

    // Retention: keep no untagged manifest; the tagged one stays.
    let trimmed = gc(&c, url, "apply=true&grace_secs=0&keep_untagged=0").await;
    assert_eq!(
        digests(&trimmed, "manifests"),
        vec![untagged.clone()],
        "{trimmed}"
    );
    assert_eq!(trimmed["manifests"][0]["why"], "untagged");
    assert!(digests(&trimmed, "blobs").contains(&sha256(b"only the untagged one has this")));
    assert_eq!(
        status(&c, Method::GET, format!("{url}/v2/gc/a/manifests/v1")).await,
        StatusCode::OK
    );

    let again = gc(&c, url, "apply=true&grace_secs=0&keep_untagged=0").await;
    assert_eq!(
        again["manifests"].as_array().unwrap().len() + again["blobs"].as_array().unwrap().len(),
        0,
        "{again}"
    );
    let resp = send(&c, Method::POST, format!("{url}/api/v1/gc?apply=yes")).await;
    assert_eq!(resp.status(), StatusCode::BAD_REQUEST);
}

/// Pushers push versions sharing a layer (some mounting it from another
/// repository) and delete older ones, while collections with a one-second
/// grace period run back to back. Every push is accepted, every version not
/// deleted is whole afterwards, and the collections did reclaim what the
/// deleted versions left.
#[tokio::test]
async fn gc_racing_pushes_loses_nothing() {
    racing_pushes_lose_nothing(TestServer::start()).await;
}

/// The same with the blobs in S3, where a blob's time is whole seconds and
/// "moved aside" does not exist: commits and sweeps of a digest take turns.
#[tokio::test]
async fn gc_racing_pushes_loses_nothing_on_s3() {
    racing_pushes_lose_nothing(TestServer::start_s3(false, &[])).await;
}

async fn racing_pushes_lose_nothing(srv: TestServer) {
    let url = srv.url.clone();
    let c = client();
    let shared = vec![42u8; 50_000];
    push_blob(&c, &url, "race/base", &shared).await;
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let mut pushers = Vec::new();
    for p in 0..4 {
        let (url, shared, stop, failures) =
            (url.clone(), shared.clone(), stop.clone(), failures.clone());
        pushers.push(tokio::spawn(async move {
            let c = client();
            let repo = format!("race/p{p}");
            let mut live = Vec::new();
            let mut deleted = 0;
            let mut i = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let config = format!("{{\"p\":{p},\"i\":{i}}}").into_bytes();
                let layer = format!("layer {p}/{i}").repeat(100).into_bytes();
                if i.is_multiple_of(2) {
                    let r = c
                        .post(format!(
                            "{url}/v2/{repo}/blobs/uploads/?mount={}&from=race/base",
                            sha256(&shared)
                        ))
                        .send()
                        .await
                        .unwrap();
                    if r.status() != StatusCode::CREATED {
                        push_blob(&c, &url, &repo, &shared).await;
                    }
                } else {
                    push_blob(&c, &url, &repo, &shared).await;
                }
                push_blob(&c, &url, &repo, &config).await;
                push_blob(&c, &url, &repo, &layer).await;
                let body = image_manifest(&config, &[&shared, &layer], json!({}));
                let tag = format!("v{i}");
                if put_manifest(&c, &url, &repo, &tag, &body).await != StatusCode::CREATED {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
                live.push((tag, sha256(&body), layer, config));
                if i % 3 == 2 {
                    let (_, d, _, _) = live.remove(0);
                    let r = c
                        .delete(format!("{url}/v2/{repo}/manifests/{d}"))
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(r.status(), StatusCode::ACCEPTED);
                    deleted += 1;
                }
                i += 1;
            }
            (repo, live, deleted)
        }));
    }
    let started = Instant::now();
    let mut swept = 0;
    let mut runs = 0;
    while started.elapsed() < Duration::from_secs(4) {
        let r = gc(&c, &url, "apply=true&grace_secs=1").await;
        swept += r["blobs"].as_array().unwrap().len();
        runs += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut results = Vec::new();
    for p in pushers {
        results.push(p.await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let last = gc(&c, &url, "apply=true&grace_secs=1").await;
    swept += last["blobs"].as_array().unwrap().len();
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "every manifest push was accepted"
    );
    let deleted: usize = results.iter().map(|r| r.2).sum();
    assert!(
        deleted > 0 && swept > 0,
        "deleted {deleted} versions, swept {swept} blobs in {runs} runs"
    );
    for (repo, live, _) in &results {
        for (tag, digest, layer, config) in live {
            let resp = c
                .get(format!("{url}/v2/{repo}/manifests/{tag}"))
                .header("accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), StatusCode::OK, "{repo}:{tag}");
            assert_eq!(sha256(&resp.bytes().await.unwrap()), *digest);
            for blob in [layer.as_slice(), config.as_slice(), shared.as_slice()] {
                let resp = send(
                    &c,
                    Method::GET,
                    format!("{url}/v2/{repo}/blobs/{}", sha256(blob)),
                )
                .await;
                assert_eq!(resp.status(), StatusCode::OK, "{repo}:{tag} blob");
                assert!(
                    resp.bytes().await.unwrap().as_ref() == blob,
                    "{repo}:{tag} blob bytes"
                );
            }
        }
    }
}
