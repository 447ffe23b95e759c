//! Listing, showing, comparing, un-indexing and restarting.

use reqwest::StatusCode;
use serde_json::json;

use super::common::TestServer;
use super::*;

#[tokio::test]
async fn pushed_models_are_listed_and_searched() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    let [_, _, v3] = classifier(&c, url).await;
    push_version(
        &c,
        url,
        "other/llm",
        &Version {
            tag: "1.0",
            created: "2023-05-01T00:00:00Z",
            layers: &[("llm", 100)],
            annotations: json!({ "dev.berth.lineage.dataset": "books@3" }),
            datasets: &[],
        },
    )
    .await;

    let page = get_json(&c, url, "/api/v1/models", StatusCode::OK).await;
    assert_eq!(page["next_cursor"], serde_json::Value::Null);
    let items = page["items"].as_array().unwrap();
    let names: Vec<&str> = items.iter().map(|m| m["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["other/llm", "team/classifier"]);
    let m = &items[1];
    assert_eq!(m["versions"], 3);
    // Latest by creation time, with its tag.
    assert_eq!(m["latest"]["digest"], v3);
    assert_eq!(m["latest"]["tags"], json!(["v3"]));
    assert_eq!(m["latest"]["created"], "2024-03-01T00:00:00Z");
    // Distinct blobs: the shared 4000-byte base once, three heads, three configs.
    let mut configs = 0;
    for tag in ["v1", "v2", "v3"] {
        let v = version_view(&c, url, "team/classifier", tag).await;
        configs += v["config"]["size"].as_u64().unwrap();
    }
    assert_eq!(
        m["total_size"].as_u64().unwrap(),
        4000 + 1000 + 1500 + 500 + configs
    );

    let page = get_json(&c, url, "/api/v1/models?q=CLASS", StatusCode::OK).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["name"], "team/classifier");
    let page = get_json(&c, url, "/api/v1/models?q=zzz", StatusCode::OK).await;
    assert!(page["items"].as_array().unwrap().is_empty());
    let page = get_json(
        &c,
        url,
        "/api/v1/models?annotation=dev.berth.lineage.dataset%3Dbooks%403",
        StatusCode::OK,
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(page["items"][0]["name"], "other/llm");

    // Paging with an opaque cursor.
    let p1 = get_json(&c, url, "/api/v1/models?limit=1", StatusCode::OK).await;
    assert_eq!(p1["items"][0]["name"], "other/llm");
    let cursor = p1["next_cursor"].as_str().expect("a next cursor");
    let p2 = get_json(
        &c,
        url,
        &format!("/api/v1/models?limit=1&cursor={cursor}"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(p2["items"][0]["name"], "team/classifier");
    assert_eq!(p2["next_cursor"], serde_json::Value::Null);

    // Hostile paging and filters.
    for (q, code) in [
        ("limit=0", "LIMIT_INVALID"),
        ("limit=100000000", "LIMIT_INVALID"),
        ("limit=-1", "LIMIT_INVALID"),
        ("limit=abc", "LIMIT_INVALID"),
        ("cursor=zz", "CURSOR_INVALID"),
        ("cursor=7b7d", "CURSOR_INVALID"),
        ("annotation=novalue", "FILTER_INVALID"),
        ("annotation=%3Dx", "FILTER_INVALID"),
    ] {
        expect_error(
            &c,
            url,
            &format!("/api/v1/models?{q}"),
            StatusCode::BAD_REQUEST,
            code,
        )
        .await;
    }
    let long = "a".repeat(5000);
    expect_error(
        &c,
        url,
        &format!("/api/v1/models?cursor={long}"),
        StatusCode::BAD_REQUEST,
        "CURSOR_INVALID",
    )
    .await;
}

#[tokio::test]
async fn show_has_descriptor_lineage_tags_layers_and_grouped_referrers() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    let [_, v2, _] = classifier(&c, url).await;
    let repo = "team/classifier";
    // Referrers of v2: two evaluations and an SBOM. None of them is a version.
    let empty = empty_blob(&c, url, repo).await;
    let subject = json!({ "mediaType": MANIFEST, "digest": v2, "size": 1 });
    for (kind, n) in [
        ("application/vnd.berth.eval+json", 2),
        ("application/spdx+json", 1),
    ] {
        for i in 0..n {
            let doc = blob(&c, url, repo, kind, format!("{kind} {i}").as_bytes(), None).await;
            let m = json!({
                "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": kind,
                "config": empty, "layers": [doc], "subject": subject,
                "annotations": { "dev.berth.metric.auc": "0.99" },
            });
            let d =
                put_manifest(&c, url, repo, &sha256(&serde_json::to_vec(&m).unwrap()), &m).await;
            expect_error(
                &c,
                url,
                &format!("/api/v1/models/{repo}/versions/{d}"),
                StatusCode::NOT_FOUND,
                "VERSION_UNKNOWN",
            )
            .await;
        }
    }

    let v = version_view(&c, url, repo, "prod").await;
    assert_eq!(v["name"], repo);
    assert_eq!(v["digest"], v2);
    assert_eq!(v["descriptor"]["digest"], v2);
    assert_eq!(v["descriptor"]["mediaType"], MANIFEST);
    assert_eq!(v["descriptor"]["artifactType"], MP_MANIFEST);
    assert!(v["descriptor"]["size"].as_u64().unwrap() > 0);
    assert_eq!(v["kind"], "modelpack");
    assert_eq!(v["tags"], json!(["prod", "v2"]));
    assert_eq!(v["created"], "2024-02-01T00:00:00Z");
    assert_eq!(v["description"], "team/classifier v2");
    assert_eq!(v["metrics"], json!({ "auc": 0.92, "loss": 0.3, "f1": 0.7 }));
    assert_eq!(v["params"], json!({ "lr": "0.005", "epochs": "10" }));
    assert_eq!(
        v["lineage"],
        json!({ "run_id": "run-2", "dataset": "imagenet@2", "commit": "bbb222" })
    );
    assert_eq!(
        v["model"],
        json!({ "name": repo, "format": "safetensors", "architecture": "transformer", "param_size": "7b" })
    );
    let layers = v["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 2);
    assert_eq!(layers[0]["path"], "base.safetensors");
    assert_eq!(layers[0]["size"], 4000);
    assert_eq!(layers[0]["kind"], "weight");
    assert_eq!(layers[1]["path"], "head-2.safetensors");
    let config = v["config"]["size"].as_u64().unwrap();
    assert_eq!(v["total_size"].as_u64().unwrap(), config + 5500);
    let refs = &v["referrers"];
    assert_eq!(
        refs["application/vnd.berth.eval+json"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(refs["application/spdx+json"].as_array().unwrap().len(), 1);
    assert!(v.get("referrers_next").is_none(), "all referrers are shown");

    // By digest, the same version; unknown or malformed references are clean errors.
    let by_digest = version_view(&c, url, repo, &v2).await;
    assert_eq!(by_digest["digest"], v2);
    let page = get_json(
        &c,
        url,
        &format!("/api/v1/models/{repo}/versions"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        page["items"].as_array().unwrap().len(),
        3,
        "referrers are not versions"
    );
    expect_error(
        &c,
        url,
        &format!("/api/v1/models/{repo}/versions/nope"),
        StatusCode::NOT_FOUND,
        "VERSION_UNKNOWN",
    )
    .await;
    expect_error(
        &c,
        url,
        &format!("/api/v1/models/{repo}/versions/-bad"),
        StatusCode::BAD_REQUEST,
        "REFERENCE_INVALID",
    )
    .await;
    expect_error(
        &c,
        url,
        "/api/v1/models/nobody/versions/v1",
        StatusCode::NOT_FOUND,
        "VERSION_UNKNOWN",
    )
    .await;
}

/// A version shows its first hundred referrers; the rest continue on the OCI
/// referrers API, from the page `referrers_next` names.
#[tokio::test]
async fn a_version_shows_its_first_hundred_referrers_and_where_the_rest_continue() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    let [v1, _, _] = classifier(&c, url).await;
    let repo = "team/classifier";
    let kind = "application/vnd.berth.signature";
    let empty = empty_blob(&c, url, repo).await;
    let subject = json!({ "mediaType": MANIFEST, "digest": v1, "size": 1 });
    let mut pushed = Vec::new();
    for i in 0..101 {
        let m = json!({ "schemaVersion": 2, "mediaType": MANIFEST, "artifactType": kind,
            "config": empty, "layers": [empty], "subject": subject,
            "annotations": { "n": i.to_string() } });
        let d = sha256(&serde_json::to_vec(&m).unwrap());
        pushed.push(put_manifest(&c, url, repo, &d, &m).await);
    }
    pushed.sort();
    let v = version_view(&c, url, repo, &v1).await;
    let shown: Vec<&str> = v["referrers"][kind]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(shown, pushed[..100], "the first hundred, in digest order");
    let next = v["referrers_next"].as_str().expect("referrers_next");
    // The same form-encoded URL as the referrers API's own `Link` header.
    assert_eq!(
        next,
        format!(
            "/v2/{repo}/referrers/{v1}?last={}",
            pushed[99].replacen(':', "%3A", 1)
        )
    );
    let rest: serde_json::Value = c
        .get(format!("{url}{next}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rest: Vec<&str> = rest["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["digest"].as_str().unwrap())
        .collect();
    assert_eq!(rest, pushed[100..]);
}

#[tokio::test]
async fn compare_reports_deltas_differences_and_shared_bytes() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    let [v1, v2, v3] = classifier(&c, url).await;
    let v = get_json(
        &c,
        url,
        "/api/v1/models/team/classifier/compare?versions=v1,prod,v3",
        StatusCode::OK,
    )
    .await;
    assert_eq!(v["name"], "team/classifier");
    assert_eq!(v["baseline"], v1);
    let vs = v["versions"].as_array().unwrap();
    assert_eq!(vs.len(), 3);
    assert_eq!(
        (vs[0]["digest"].as_str(), vs[1]["digest"].as_str()),
        (Some(v1.as_str()), Some(v2.as_str()))
    );
    assert_eq!(vs[1]["reference"], "prod");
    assert_eq!(vs[0]["metric_deltas"], json!({}));
    assert_eq!(vs[0]["layers"], serde_json::Value::Null);
    assert_eq!(vs[1]["metric_deltas"], json!({ "auc": 0.07, "loss": -0.1 }));
    // v3 has no metrics in common with v1 ("loss" did not parse: kept as a parameter).
    assert_eq!(vs[2]["metric_deltas"], json!({}));
    assert_eq!(vs[2]["params"]["loss"], "not-a-number");
    assert_eq!(
        vs[1]["layers"],
        json!({ "shared_layers": 1, "shared_bytes": 4000, "new_layers": 1, "new_bytes": 1500, "removed_layers": 1, "removed_bytes": 1000 })
    );
    assert_eq!(vs[2]["layers"]["shared_bytes"], 4000);
    assert_eq!(vs[2]["layers"]["new_bytes"], 500);
    assert_eq!(
        v["param_differences"]["lr"],
        json!(["0.01", "0.005", "0.02"])
    );
    assert_eq!(v["param_differences"]["epochs"], json!(["10", "10", null]));
    assert!(
        v["param_differences"].get("batch").is_some(),
        "batch only in v1"
    );
    assert_eq!(
        v["lineage_differences"]["commit"],
        json!(["aaa111", "bbb222", null])
    );
    assert_eq!(
        v["lineage_differences"]["run_id"],
        json!(["run-1", "run-2", null])
    );
    assert!(
        v["lineage_differences"].get("source").is_none(),
        "equal everywhere"
    );

    // By digest too; one version, no version, unknown or bad references.
    let d = get_json(
        &c,
        url,
        &format!("/api/v1/models/team/classifier/compare?versions={v3},{v1}"),
        StatusCode::OK,
    )
    .await;
    assert_eq!(d["baseline"], v3);
    let base = "/api/v1/models/team/classifier/compare";
    expect_error(
        &c,
        url,
        &format!("{base}?versions=v1"),
        StatusCode::BAD_REQUEST,
        "QUERY_INVALID",
    )
    .await;
    expect_error(&c, url, base, StatusCode::BAD_REQUEST, "QUERY_INVALID").await;
    expect_error(
        &c,
        url,
        &format!("{base}?versions=v1,nope"),
        StatusCode::NOT_FOUND,
        "VERSION_UNKNOWN",
    )
    .await;
    expect_error(
        &c,
        url,
        &format!("{base}?versions=v1,-x"),
        StatusCode::BAD_REQUEST,
        "REFERENCE_INVALID",
    )
    .await;
}

#[tokio::test]
async fn deleted_versions_are_unindexed_and_the_index_survives_restart() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str().to_string());
    let [v1, v2, v3] = classifier(&c, &url).await;
    let resp = c
        .delete(format!("{url}/v2/team/classifier/manifests/{v3}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let m = get_json(&c, &url, "/api/v1/models", StatusCode::OK).await;
    assert_eq!(m["items"][0]["versions"], 2);
    assert_eq!(m["items"][0]["latest"]["digest"], v2);
    assert_eq!(m["items"][0]["latest"]["tags"], json!(["prod", "v2"]));
    expect_error(
        &c,
        &url,
        &format!("/api/v1/models/team/classifier/versions/{v3}"),
        StatusCode::NOT_FOUND,
        "VERSION_UNKNOWN",
    )
    .await;
    // Deleting a tag leaves the version indexed.
    let resp = c
        .delete(format!("{url}/v2/team/classifier/manifests/v1"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    version_view(&c, &url, "team/classifier", &v1).await;

    let srv = srv.restart();
    let url = srv.url.clone();
    let m = get_json(&c, &url, "/api/v1/models", StatusCode::OK).await;
    assert_eq!(m["items"][0]["name"], "team/classifier");
    assert_eq!(m["items"][0]["versions"], 2);
    let v = version_view(&c, &url, "team/classifier", "prod").await;
    assert_eq!(v["metrics"]["auc"], 0.92);

    for d in [&v1, &v2] {
        let resp = c
            .delete(format!("{url}/v2/team/classifier/manifests/{d}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::ACCEPTED);
    }
    let m = get_json(&c, &url, "/api/v1/models", StatusCode::OK).await;
    assert!(m["items"].as_array().unwrap().is_empty(), "{m}");
    expect_error(
        &c,
        &url,
        "/api/v1/models/team/classifier/versions",
        StatusCode::NOT_FOUND,
        "MODEL_UNKNOWN",
    )
    .await;
}

#[tokio::test]
async fn hostile_paths_and_methods_get_json_errors_and_routes_are_labelled() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    classifier(&c, url).await;
    for (path, status, code) in [
        ("/api/v1/nothing", StatusCode::NOT_FOUND, "NOT_FOUND"),
        ("/api/v2/models", StatusCode::NOT_FOUND, "NOT_FOUND"),
        (
            "/api/v1/models/team/classifier",
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
        ),
        (
            "/api/v1/models/Bad/versions",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "/api/v1/models/a/-b/versions",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "/api/v1/models/a%2Fb/versions",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "/api/v1/models/a%ff/versions",
            StatusCode::BAD_REQUEST,
            "NAME_INVALID",
        ),
        (
            "/api/v1/models/nobody/versions",
            StatusCode::NOT_FOUND,
            "MODEL_UNKNOWN",
        ),
        (
            "/api/v1/models/nobody/compare?versions=a,b",
            StatusCode::NOT_FOUND,
            "VERSION_UNKNOWN",
        ),
    ] {
        expect_error(&c, url, path, status, code).await;
    }
    let long = format!("/api/v1/models/{}/versions", "a/".repeat(200));
    expect_error(&c, url, &long, StatusCode::BAD_REQUEST, "NAME_INVALID").await;
    let resp = c.post(format!("{url}/api/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        resp.headers()["allow"],
        "GET, HEAD",
        "a 405 names what is allowed"
    );
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "METHOD_NOT_ALLOWED");
    let resp = c.head(format!("{url}/api/v1/models")).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let resp = c
        .get(format!("{url}/api/v1/models"))
        .header("x-request-id", "api-req-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "api-req-1");

    let metrics = c
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for route in ["api_models", "api_versions", "api_compare", "api_unknown"] {
        assert!(
            metrics.contains(&format!("route=\"{route}\"")),
            "no {route} in metrics"
        );
    }
}
