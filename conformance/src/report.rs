//! Results of a run: one [`CheckResult`] per check, grouped in a [`Report`].

use std::fmt;

use serde::Serialize;

/// The four workflow categories of the distribution spec ("Conformance / Workflow Categories").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Workflow {
    /// Pulling manifests and blobs, `GET /v2/`, existence checks, error responses.
    Pull,
    /// Blob uploads (monolithic, chunked, mount) and manifest pushes.
    Push,
    /// Tag listing with pagination, and the referrers API.
    Discovery,
    /// Deleting tags, manifests and blobs.
    Management,
}

impl Workflow {
    /// All workflows, in the order they run.
    pub const ALL: [Workflow; 4] = [
        Workflow::Pull,
        Workflow::Push,
        Workflow::Discovery,
        Workflow::Management,
    ];

    /// The lowercase name used in check names and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Workflow::Pull => "pull",
            Workflow::Push => "push",
            Workflow::Discovery => "discovery",
            Workflow::Management => "management",
        }
    }

    /// Parses `pull`, `push`, `discovery` or `management` (case-insensitive).
    pub fn parse(s: &str) -> Option<Workflow> {
        Workflow::ALL
            .into_iter()
            .find(|w| w.as_str().eq_ignore_ascii_case(s.trim()))
    }
}

impl fmt::Display for Workflow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Strength of the requirement a check enforces, in RFC 2119 terms.
///
/// Requirements the spec marks MAY are never failed: a check of an optional
/// feature is skipped when the registry declines it, and only fails if the
/// registry takes the feature on and then breaks a MUST.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    /// MUST / MUST NOT / REQUIRED.
    Must,
    /// SHOULD / SHOULD NOT / RECOMMENDED.
    Should,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Must => "MUST",
            Level::Should => "SHOULD",
        })
    }
}

/// What happened when a check ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "reason", rename_all = "lowercase")]
pub enum Outcome {
    /// The registry met the requirement.
    Pass,
    /// The registry broke the requirement; the reason says how.
    Fail(String),
    /// The check could not run or does not apply (optional feature declined,
    /// or a setup step it depends on failed and was reported on its own).
    Skip(String),
}

impl Outcome {
    /// `PASS`, `FAIL` or `SKIP`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail(_) => "FAIL",
            Outcome::Skip(_) => "SKIP",
        }
    }
}

/// The result of one check.
#[derive(Clone, Debug, Serialize)]
pub struct CheckResult {
    /// `<workflow>/<slug>`, e.g. `push/chunked-out-of-order-416`.
    pub name: String,
    /// Workflow the check belongs to.
    pub workflow: Workflow,
    /// Whether the requirement is a MUST or a SHOULD.
    pub level: Level,
    /// Pass, fail with a reason, or skip with a reason.
    #[serde(flatten)]
    pub outcome: Outcome,
}

impl CheckResult {
    /// The one-line form printed by the CLI, e.g.
    /// `FAIL  push/chunked-out-of-order-416  [MUST]  expected 416, got 202`.
    pub fn line(&self) -> String {
        let head = format!("{}  {}  [{}]", self.outcome.label(), self.name, self.level);
        match &self.outcome {
            Outcome::Pass => head,
            Outcome::Fail(reason) | Outcome::Skip(reason) => format!("{head}  {reason}"),
        }
    }
}

/// Counts of outcomes in a report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Checks that passed.
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks that were skipped.
    pub skipped: usize,
}

/// All results of a run.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// Base URL of the registry under test.
    pub url: String,
    /// Random suffix that made this run's repository names unique.
    pub run_id: String,
    /// Repositories the run created content in.
    pub repositories: Vec<String>,
    /// One entry per check, in the order they ran.
    pub checks: Vec<CheckResult>,
}

impl Report {
    /// Counts of passed, failed and skipped checks.
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for check in &self.checks {
            match check.outcome {
                Outcome::Pass => c.passed += 1,
                Outcome::Fail(_) => c.failed += 1,
                Outcome::Skip(_) => c.skipped += 1,
            }
        }
        c
    }

    /// The checks that failed.
    pub fn failures(&self) -> impl Iterator<Item = &CheckResult> {
        self.checks
            .iter()
            .filter(|c| matches!(c.outcome, Outcome::Fail(_)))
    }

    /// True when no check failed.
    pub fn is_success(&self) -> bool {
        self.failures().next().is_none()
    }

    /// Looks a check up by its full name.
    pub fn get(&self, name: &str) -> Option<&CheckResult> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// The closing line: `N passed, N failed, N skipped`.
    pub fn summary(&self) -> String {
        let c = self.counts();
        format!(
            "{} passed, {} failed, {} skipped",
            c.passed, c.failed, c.skipped
        )
    }
}

/// Collects the results of one workflow.
pub(crate) struct Recorder {
    workflow: Workflow,
    results: Vec<CheckResult>,
}

impl Recorder {
    pub(crate) fn new(workflow: Workflow) -> Self {
        Recorder {
            workflow,
            results: Vec::new(),
        }
    }

    /// Records an outcome for `<workflow>/<slug>` and returns whether it passed.
    pub(crate) fn record(&mut self, slug: &str, level: Level, outcome: Outcome) -> bool {
        let passed = outcome == Outcome::Pass;
        self.results.push(CheckResult {
            name: format!("{}/{}", self.workflow, slug),
            workflow: self.workflow,
            level,
            outcome,
        });
        passed
    }

    /// Full name of a check of this workflow.
    pub(crate) fn name(&self, slug: &str) -> String {
        format!("{}/{}", self.workflow, slug)
    }

    pub(crate) fn into_results(self) -> Vec<CheckResult> {
        self.results
    }
}
