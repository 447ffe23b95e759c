//! Manifests, tags, referrers and listings.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::*;

#[tokio::test]
async fn manifest_push_pull_tag_and_delete() {
    let srv = TestServer::start();
    let (c, u) = (client(), srv.url.clone());
    let d = push_image(&c, &u, "m/app", "v1", "one").await;
    for reference in ["v1", d.as_str()] {
        let resp = send(
            &c,
            Method::GET,
            format!("{u}/v2/m/app/manifests/{reference}"),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(
            resp.headers()["content-type"],
            "application/vnd.oci.image.manifest.v1+json"
        );
        assert_eq!(resp.headers()["docker-content-digest"], d.as_str());
        assert_eq!(
            sha256(&resp.bytes().await.unwrap()),
            d,
            "bytes are returned as pushed"
        );
        let resp = send(
            &c,
            Method::HEAD,
            format!("{u}/v2/m/app/manifests/{reference}"),
        )
        .await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers()["docker-content-digest"], d.as_str());
        assert!(
            resp.headers()["content-length"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
                > 0
        );
    }
    // Deleting the tag leaves the manifest; deleting the manifest removes its tags.
    let body = send(&c, Method::GET, format!("{u}/v2/m/app/manifests/{d}"))
        .await
        .bytes()
        .await
        .unwrap();
    let resp = c
        .put(format!("{u}/v2/m/app/manifests/v2"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    let resp = send(&c, Method::DELETE, format!("{u}/v2/m/app/manifests/v1")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let resp = send(&c, Method::GET, format!("{u}/v2/m/app/manifests/v1")).await;
    expect_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    let resp = send(&c, Method::GET, format!("{u}/v2/m/app/manifests/v2")).await;
    assert_eq!(resp.status(), StatusCode::OK);
    let resp = send(&c, Method::DELETE, format!("{u}/v2/m/app/manifests/{d}")).await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    for reference in ["v2", d.as_str()] {
        let resp = send(
            &c,
            Method::GET,
            format!("{u}/v2/m/app/manifests/{reference}"),
        )
        .await;
        expect_error(resp, StatusCode::NOT_FOUND, "MANIFEST_UNKNOWN").await;
    }
}

#[tokio::test]
async fn manifest_naming_a_missing_blob_is_refused_and_not_stored() {
    let srv = TestServer::start();
    let (c, u) = (client(), srv.url.clone());
    push_blob(&c, &u, "m/missing", b"{}").await;
    let body = image_manifest(b"{}", &[b"layer never pushed"], json!({}));
    let resp = c
        .put(format!("{u}/v2/m/missing/manifests/t"))
        .header("content-type", "application/vnd.oci.image.manifest.v1+json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
    let resp = send(
        &c,
        Method::GET,
        format!("{u}/v2/m/missing/manifests/{}", sha256(&body)),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    let tags: Value = send(&c, Method::GET, format!("{u}/v2/m/missing/tags/list"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tags["tags"], json!([]));
}

#[tokio::test]
async fn index_and_docker_types_are_stored_with_their_media_type() {
    let srv = TestServer::start();
    let (c, u) = (client(), srv.url.clone());
    let child = push_image(&c, &u, "m/multi", "amd64", "child").await;
    let size = send(&c, Method::GET, format!("{u}/v2/m/multi/manifests/{child}"))
        .await
        .bytes()
        .await
        .unwrap()
        .len();
    for (mt, child_mt) in [
        (
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
        ),
        (
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ),
    ] {
        let index = json!({"schemaVersion": 2, "mediaType": mt, "manifests": [
            {"mediaType": child_mt, "digest": child, "size": size, "platform": {"architecture": "amd64", "os": "linux"}}
        ]});
        let body = serde_json::to_vec(&index).unwrap();
        let resp = c
            .put(format!("{u}/v2/m/multi/manifests/list"))
            .header("content-type", mt)
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED, "{mt}");
        let resp = send(&c, Method::GET, format!("{u}/v2/m/multi/manifests/list")).await;
        assert_eq!(resp.headers()["content-type"], mt);
    }
    // An index naming a manifest the repository lacks is refused.
    let index = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha256(b"nope"), "size": 4}
    ]});
    let resp = c
        .put(format!("{u}/v2/m/multi/manifests/bad"))
        .header("content-type", "application/vnd.oci.image.index.v1+json")
        .body(serde_json::to_vec(&index).unwrap())
        .send()
        .await
        .unwrap();
    expect_error(resp, StatusCode::BAD_REQUEST, "MANIFEST_BLOB_UNKNOWN").await;
}

#[tokio::test]
async fn referrers_are_listed_filtered_and_kept_exact_on_delete() {
    let srv = TestServer::start();
    let (c, u) = (client(), srv.url.clone());
    let subject = push_image(&c, &u, "r/model", "v1", "subject").await;
    let subject_size = send(
        &c,
        Method::GET,
        format!("{u}/v2/r/model/manifests/{subject}"),
    )
    .await
    .bytes()
    .await
    .unwrap()
    .len();
    let empty = push_blob(&c, &u, "r/model", b"{}").await;
    let mut referrers = Vec::new();
    for (i, at) in [
        "application/vnd.example.sbom",
        "application/vnd.example.sig",
        "application/vnd.example.sbom",
    ]
    .iter()
    .enumerate()
    {
        let layer = format!("referrer payload {i}");
        push_blob(&c, &u, "r/model", layer.as_bytes()).await;
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "text/plain", "digest": sha256(layer.as_bytes()), "size": layer.len()}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": subject_size},
            "annotations": {"org.example.n": i.to_string()},
        });
        let body = serde_json::to_vec(&m).unwrap();
        let d = sha256(&body);
        let resp = c
            .put(format!("{u}/v2/r/model/manifests/{d}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        assert_eq!(resp.headers()["oci-subject"], subject.as_str());
        referrers.push(d);
    }
    let resp = send(
        &c,
        Method::GET,
        format!("{u}/v2/r/model/referrers/{subject}"),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.oci.image.index.v1+json"
    );
    assert!(resp.headers().get("oci-filters-applied").is_none());
    let index: Value = resp.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3);
    let first = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["digest"] == referrers[0].as_str())
        .unwrap();
    assert_eq!(first["artifactType"], "application/vnd.example.sbom");
    assert_eq!(first["annotations"]["org.example.n"], "0");

    let resp = send(
        &c,
        Method::GET,
        format!("{u}/v2/r/model/referrers/{subject}?artifactType=application/vnd.example.sbom"),
    )
    .await;
    assert_eq!(resp.headers()["oci-filters-applied"], "artifactType");
    let index: Value = resp.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 2);
    // An empty artifactType is no filter.
    let resp = send(
        &c,
        Method::GET,
        format!("{u}/v2/r/model/referrers/{subject}?artifactType="),
    )
    .await;
    assert!(resp.headers().get("oci-filters-applied").is_none());
    let index: Value = resp.json().await.unwrap();
    assert_eq!(index["manifests"].as_array().unwrap().len(), 3);

    let resp = send(
        &c,
        Method::DELETE,
        format!("{u}/v2/r/model/manifests/{}", referrers[0]),
    )
    .await;
    assert_eq!(resp.status(), StatusCode::ACCEPTED);
    let index: Value = send(
        &c,
        Method::GET,
        format!("{u}/v2/r/model/referrers/{subject}"),
    )
    .await
    .json()
    .await
    .unwrap();
    let left: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["digest"].as_str().unwrap())
        .collect();
    assert_eq!(left.len(), 2);
    assert!(!left.contains(&referrers[0].as_str()));

    // Unknown subject: an empty index, not an error.
    let index: Value = send(
        &c,
        Method::GET,
        format!("{u}/v2/r/model/referrers/{}", sha256(b"x")),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(index["manifests"], json!([]));
}

#[tokio::test]
async fn tags_and_catalog_paginate_with_link() {
    let srv = TestServer::start();
    let (c, u) = (client(), srv.url.clone());
    let d = push_image(&c, &u, "p/tags", "t0", "pages").await;
    let body = send(&c, Method::GET, format!("{u}/v2/p/tags/manifests/{d}"))
        .await
        .bytes()
        .await
        .unwrap();
    for t in ["t1", "t2", "t3", "t4"] {
        let resp = c
            .put(format!("{u}/v2/p/tags/manifests/{t}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
    }
    let mut seen = Vec::new();
    let mut next = Some("/v2/p/tags/tags/list?n=2".to_string());
    while let Some(path) = next.take() {
        let resp = send(&c, Method::GET, format!("{u}{path}")).await;
        next = resp.headers().get("link").map(|l| {
            let l = l.to_str().unwrap();
            assert!(l.ends_with("rel=\"next\""), "{l}");
            l[l.find('<').unwrap() + 1..l.find('>').unwrap()].to_string()
        });
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["name"], "p/tags");
        let page: Vec<String> = serde_json::from_value(v["tags"].clone()).unwrap();
        assert!(page.len() <= 2);
        seen.extend(page);
    }
    assert_eq!(seen, ["t0", "t1", "t2", "t3", "t4"]);
    let v: Value = send(&c, Method::GET, format!("{u}/v2/p/tags/tags/list?last=t3"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["tags"], json!(["t4"]));

    push_blob(&c, &u, "p/another", b"x").await;
    let resp = send(&c, Method::GET, format!("{u}/v2/_catalog?n=1")).await;
    assert!(resp.headers().get("link").is_some());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["repositories"], json!(["p/another"]));
    let v: Value = send(
        &c,
        Method::GET,
        format!("{u}/v2/_catalog?n=10&last=p/another"),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["repositories"], json!(["p/tags"]));
    let resp = send(&c, Method::GET, format!("{u}/v2/unknown/repo/tags/list")).await;
    expect_error(resp, StatusCode::NOT_FOUND, "NAME_UNKNOWN").await;
}

/// A referrers list larger than a client reads as one manifest comes in pages
/// joined by `Link` headers (the spec's MUST), each page within the manifest
/// limit, together exactly the referrers, the artifactType filter kept.
#[tokio::test]
async fn a_long_referrers_list_is_paged_with_link_headers() {
    let srv = TestServer::start_with(&["--max-manifest-bytes", "4096"]);
    let (c, u) = (client(), srv.url.clone());
    let subject = push_image(&c, &u, "r/many", "v1", "subject").await;
    let empty = push_blob(&c, &u, "r/many", b"{}").await;
    let mut pushed = std::collections::BTreeSet::new();
    for i in 0..40 {
        let at = if i % 2 == 0 {
            "application/vnd.example.a"
        } else {
            "application/vnd.example.b"
        };
        let m = json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "artifactType": at,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2}],
            "subject": {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": subject, "size": 1},
            "annotations": {"org.example.n": format!("{i}-{}", "x".repeat(200))},
        });
        let body = serde_json::to_vec(&m).unwrap();
        let d = sha256(&body);
        let resp = c
            .put(format!("{u}/v2/r/many/manifests/{d}"))
            .header("content-type", "application/vnd.oci.image.manifest.v1+json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::CREATED);
        pushed.insert((d, at));
    }
    for filter in [None, Some("application/vnd.example.b")] {
        let mut url = format!("{u}/v2/r/many/referrers/{subject}");
        if let Some(t) = filter {
            url.push_str(&format!("?artifactType={t}"));
        }
        let (mut seen, mut pages) = (Vec::new(), 0);
        loop {
            let resp = send(&c, Method::GET, url.clone()).await;
            assert_eq!(resp.status(), StatusCode::OK);
            let link = resp
                .headers()
                .get("link")
                .map(|v| v.to_str().unwrap().to_string());
            if filter.is_some() {
                assert_eq!(resp.headers()["oci-filters-applied"], "artifactType");
            }
            let body = resp.bytes().await.unwrap();
            assert!(body.len() <= 4096, "a page of {} bytes", body.len());
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            for m in v["manifests"].as_array().unwrap() {
                seen.push(m["digest"].as_str().unwrap().to_string());
            }
            pages += 1;
            match link {
                Some(l) => {
                    let path = l.split('>').next().unwrap().trim_start_matches('<');
                    assert!(l.ends_with("rel=\"next\""), "{l}");
                    url = format!("{u}{path}");
                }
                None => break,
            }
        }
        let want: Vec<String> = pushed
            .iter()
            .filter(|(_, at)| filter.is_none_or(|t| t == *at))
            .map(|(d, _)| d.clone())
            .collect();
        assert!(pages > 1, "{filter:?}: expected several pages");
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            sorted.len(),
            seen.len(),
            "{filter:?}: a referrer listed twice"
        );
        assert_eq!(sorted, want, "{filter:?}");
    }
}
