//! Filtering, sorting and paging versions.

use reqwest::StatusCode;
use serde_json::Value;

use super::common::TestServer;
use super::*;

fn tags_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            v["tags"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t.as_str().unwrap())
                .filter(|t| *t != "prod")
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect()
}

#[tokio::test]
async fn versions_filter_sort_and_page() {
    let srv = TestServer::start();
    let (c, url) = (client(), srv.url.as_str());
    classifier(&c, url).await;
    let base = "/api/v1/models/team/classifier/versions";
    let q = |query: &str| format!("{base}?{query}");

    // Default: newest first.
    let page = get_json(&c, url, base, StatusCode::OK).await;
    assert_eq!(tags_of(&page), ["v3", "v2", "v1"]);
    assert_eq!(page["next_cursor"], Value::Null);
    assert_eq!(page["items"][1]["tags"], serde_json::json!(["prod", "v2"]));
    assert_eq!(page["items"][1]["metrics"]["auc"], 0.92);

    for (query, expected) in [
        ("sort=created", vec!["v1", "v2", "v3"]),
        // v3 has no auc: last in either direction.
        ("sort=-metrics.auc", vec!["v2", "v1", "v3"]),
        ("sort=metrics.auc", vec!["v1", "v2", "v3"]),
        ("sort=%2Bmetrics.auc", vec!["v1", "v2", "v3"]),
        // Parameters compare numerically when they are numbers.
        ("sort=params.lr", vec!["v2", "v1", "v3"]),
        ("sort=-params.lr", vec!["v3", "v1", "v2"]),
        ("sort=-size", vec!["v2", "v1", "v3"]),
        ("filter=metrics.auc%3E%3D0.9", vec!["v2"]),
        (
            "filter=metrics.auc%3E0.8&filter=metrics.loss%3C0.35",
            vec!["v2"],
        ),
        ("filter=metrics.auc!%3D0.92", vec!["v1"]),
        ("filter=params.lr%3D0.01", vec!["v1"]),
        ("filter=params.lr%3D0.010", vec!["v1"]),
        (
            "filter=params.lr%3C%3D0.01&sort=params.lr",
            vec!["v2", "v1"],
        ),
        ("filter=params.loss%3Dnot-a-number", vec!["v3"]),
        ("filter=tag%3Dprod", vec!["v2"]),
        ("filter=tag!%3Dprod&sort=created", vec!["v1", "v3"]),
        (
            "filter=created%3E%3D2024-02-01T00:00:00Z&sort=created",
            vec!["v2", "v3"],
        ),
        ("filter=created%3C2024-01-15T00:00:00%2B01:00", vec!["v1"]),
        ("filter=metrics.nothing%3E0", vec![]),
    ] {
        let page = get_json(&c, url, &q(query), StatusCode::OK).await;
        assert_eq!(tags_of(&page), expected, "{query}");
    }

    // Paging under a sort: stable cursors, each page continues the last.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = q("sort=-metrics.auc&limit=1");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = get_json(&c, url, &path, StatusCode::OK).await;
        seen.extend(tags_of(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
        assert!(seen.len() < 10, "paging does not end");
    }
    assert_eq!(seen, ["v2", "v1", "v3"]);
    let p1 = get_json(&c, url, &q("sort=size&limit=2"), StatusCode::OK).await;
    let cursor = p1["next_cursor"].as_str().unwrap();
    expect_error(
        &c,
        url,
        &q(&format!("sort=created&cursor={cursor}")),
        StatusCode::BAD_REQUEST,
        "CURSOR_INVALID",
    )
    .await;

    // Bad syntax is a 400 that says what is wrong.
    for (query, code) in [
        ("filter=metrics.auc", "FILTER_INVALID"),
        ("filter=metrics.auc%3E%3E0.9", "FILTER_INVALID"),
        ("filter=metrics.auc%3E%3Dabc", "FILTER_INVALID"),
        ("filter=metrics.auc%3E%3DNaN", "FILTER_INVALID"),
        ("filter=metrics.%3E1", "FILTER_INVALID"),
        ("filter=bogus%3D1", "FILTER_INVALID"),
        ("filter=%3D1", "FILTER_INVALID"),
        ("filter=params.lr%3D", "FILTER_INVALID"),
        ("filter=tag%3Eprod", "FILTER_INVALID"),
        ("filter=created%3E%3Dyesterday", "FILTER_INVALID"),
        ("filter=params.lr!0.1", "FILTER_INVALID"),
        ("sort=bogus", "SORT_INVALID"),
        ("sort=tag", "SORT_INVALID"),
        ("sort=-", "SORT_INVALID"),
        ("sort=params.", "SORT_INVALID"),
        ("cursor=not-hex", "CURSOR_INVALID"),
        ("limit=1001", "LIMIT_INVALID"),
    ] {
        expect_error(&c, url, &q(query), StatusCode::BAD_REQUEST, code).await;
    }
    let v = get_json(
        &c,
        url,
        &q("filter=metrics.auc%3E%3Dabc"),
        StatusCode::BAD_REQUEST,
    )
    .await;
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not a number"),
        "{v}"
    );
    let many: String = (0..40).map(|i| format!("filter=size%3E{i}&")).collect();
    expect_error(&c, url, &q(&many), StatusCode::BAD_REQUEST, "QUERY_INVALID").await;
    let long = format!("filter=params.{}%3D1", "x".repeat(2000));
    expect_error(
        &c,
        url,
        &q(&long),
        StatusCode::BAD_REQUEST,
        "FILTER_INVALID",
    )
    .await;
}
