//! Runs the suite against an in-memory registry that follows the spec: every
//! check must pass (so none asks for the impossible), and the defects the
//! mock can imitate must show up as failures of the right checks.

mod mock;

use berth_conformance::{Config, Outcome, Report, run};

fn run_against(quirks: mock::Quirks) -> Report {
    let url = mock::start(quirks);
    let cfg = Config::new(&url).expect("config");
    run(&cfg).expect("run")
}

fn names(report: &Report, pred: impl Fn(&Outcome) -> bool) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| pred(&c.outcome))
        .map(|c| c.name.clone())
        .collect()
}

#[test]
fn compliant_registry_passes_every_check() {
    let report = run_against(mock::Quirks::default());
    let not_passed: Vec<String> = report
        .checks
        .iter()
        .filter(|c| c.outcome != Outcome::Pass)
        .map(|c| c.line())
        .collect();
    assert!(
        not_passed.is_empty(),
        "checks that did not pass against the compliant mock:\n{}",
        not_passed.join("\n")
    );
    assert!(
        report.checks.len() > 80,
        "only {} checks ran",
        report.checks.len()
    );
}

#[test]
fn known_defects_are_reported() {
    let report = run_against(mock::Quirks {
        ignore_content_range: true,
        no_referrers: true,
        ignore_tag_pagination: true,
    });
    let failed = names(&report, |o| matches!(o, Outcome::Fail(_)));
    for want in [
        "push/chunked-out-of-order-416",
        "discovery/referrers-api",
        "discovery/tags-list-n",
        "discovery/tags-list-n-last",
        "discovery/tags-list-last",
        "discovery/tags-list-n-zero",
        "discovery/tags-list-paginate",
    ] {
        assert!(
            failed.iter().any(|f| f == want),
            "{want} did not fail; failures: {failed:?}"
        );
    }
    assert_eq!(failed.len(), 7, "unexpected failures: {failed:?}");
    // Checks that need the referrers API are skipped, not failed.
    let skipped = names(&report, |o| matches!(o, Outcome::Skip(_)));
    assert!(
        skipped
            .iter()
            .any(|s| s == "discovery/referrers-list-exact")
    );
    assert!(
        skipped
            .iter()
            .any(|s| s == "push/manifest-oci-subject-header")
    );
}

#[test]
fn workflows_can_be_selected() {
    let url = mock::start(mock::Quirks::default());
    let mut cfg = Config::new(&url).expect("config");
    cfg.workflows = vec![berth_conformance::Workflow::Management];
    let report = run(&cfg).expect("run");
    assert!(
        report
            .checks
            .iter()
            .all(|c| c.name.starts_with("management/"))
    );
    assert!(report.is_success(), "{}", report.summary());
}
