//! Runs our OCI conformance suite (`conformance/`) against a real Berth server.
//! Berth must pass every check and skip none: a skip means an optional feature
//! (sha512, mounts, upload cancel, tag deletion) that Berth is meant to have.

mod common;

use berth_conformance::{Config, Outcome, run};

#[tokio::test]
async fn berth_passes_every_conformance_check() {
    passes_every_check(common::TestServer::start()).await;
}

/// With its blobs in S3 (SeaweedFS on loopback), streamed through Berth.
#[tokio::test]
async fn berth_on_s3_passes_every_conformance_check() {
    passes_every_check(common::TestServer::start_s3(false, &[])).await;
}

/// With its blobs in S3 and blob `GET`s redirected to presigned URLs.
#[tokio::test]
async fn berth_on_s3_with_redirects_passes_every_conformance_check() {
    passes_every_check(common::TestServer::start_s3(true, &[])).await;
}

async fn passes_every_check(srv: common::TestServer) {
    let cfg = Config::new(&srv.url).expect("config");
    let report = tokio::task::spawn_blocking(move || run(&cfg))
        .await
        .expect("suite thread")
        .expect("suite config");
    let not_passed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.outcome != Outcome::Pass)
        .map(|c| format!("{} {:?}", c.name, c.outcome))
        .collect();
    println!("{}", report.summary());
    assert!(
        report.checks.len() >= 90,
        "suite ran only {} checks",
        report.checks.len()
    );
    assert!(
        not_passed.is_empty(),
        "checks not passed:\n{}",
        not_passed.join("\n")
    );
}
