//! Runs our OCI conformance suite (`conformance/`) against a real Berth server.
//! Berth must pass every check and skip none: a skip means an optional feature
//! (sha512, mounts, upload cancel, tag deletion) that Berth is meant to have.

mod common;

use berth_conformance::{Config, Outcome, run};

#[tokio::test]
async fn berth_passes_every_conformance_check() {
    let srv = common::TestServer::start();
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
