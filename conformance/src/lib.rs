//! An OCI distribution-spec v1.1 conformance suite, runnable against any
//! registry URL.
//!
//! It checks the MUST requirements (and the important SHOULDs, reported as
//! such) of the spec's four workflows: pull, push, content discovery (tag
//! listing and the referrers API) and content management. Requirements the
//! spec marks MAY are never failed. Each run works in repositories whose
//! names carry a random run id, so a registry can be tested again and again.
//!
//! ```no_run
//! let cfg = berth_conformance::Config::new("http://127.0.0.1:5000").unwrap();
//! let report = berth_conformance::run(&cfg).unwrap();
//! for check in &report.checks {
//!     println!("{}", check.line());
//! }
//! println!("{}", report.summary());
//! assert!(report.is_success());
//! ```
//!
//! [`run`] blocks while it talks to the registry (plain HTTP/1.1, anonymous
//! access). It does its work on a thread of its own, so it may be called
//! from any thread; from async code, call it through
//! `tokio::task::spawn_blocking` so the runtime serving the registry keeps
//! running.

mod check;
mod checks;
mod client;
mod digest;
mod fixtures;
mod ops;
mod report;

use std::fmt;
use std::time::Duration;

pub use report::{CheckResult, Counts, Level, Outcome, Report, Workflow};
pub use reqwest::Url;

/// What to test and where.
#[derive(Clone, Debug)]
pub struct Config {
    /// Base URL of the registry, e.g. `http://127.0.0.1:5000` (the suite
    /// appends `/v2/...`). Plain `http` only.
    pub url: Url,
    /// Repository prefix the run works under; each repository is
    /// `<namespace>/<purpose>-<run id>`. Default `conformance`.
    pub namespace: String,
    /// Prefix of the repository blobs are mounted from in the cross-repository
    /// mount checks; `None` means the same as `namespace`.
    pub cross_namespace: Option<String>,
    /// Workflows to run (they always run in the order pull, push, discovery,
    /// management). Default: all four.
    pub workflows: Vec<Workflow>,
    /// Timeout of each HTTP request. Default 60 s.
    pub timeout: Duration,
    /// Suffix making repository names unique; `None` picks a random one.
    /// Must be lowercase letters and digits.
    pub run_id: Option<String>,
}

impl Config {
    /// A configuration with defaults for everything but the registry URL.
    pub fn new(url: &str) -> Result<Config, ConfigError> {
        let url = Url::parse(url).map_err(|e| ConfigError::Url(format!("{url:?}: {e}")))?;
        let cfg = Config {
            url,
            namespace: "conformance".to_string(),
            cross_namespace: None,
            workflows: Workflow::ALL.to_vec(),
            timeout: Duration::from_secs(60),
            run_id: None,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks the configuration can be run.
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self.url.scheme() {
            "http" => {}
            "https" => {
                return Err(ConfigError::Url(format!(
                    "{}: https is not supported by this build; test over plain http",
                    self.url
                )));
            }
            other => {
                return Err(ConfigError::Url(format!(
                    "{}: unsupported scheme {other}",
                    self.url
                )));
            }
        }
        if self.url.host().is_none() {
            return Err(ConfigError::Url(format!("{}: no host", self.url)));
        }
        for ns in std::iter::once(&self.namespace).chain(self.cross_namespace.iter()) {
            if !valid_name(ns) {
                return Err(ConfigError::Namespace(ns.clone()));
            }
        }
        if self.workflows.is_empty() {
            return Err(ConfigError::NoWorkflows);
        }
        if let Some(id) = &self.run_id
            && (id.is_empty()
                || !id
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
        {
            return Err(ConfigError::RunId(id.clone()));
        }
        Ok(())
    }
}

/// A configuration that cannot be run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The URL does not parse, or is not a plain-http URL with a host.
    Url(String),
    /// A namespace does not match the spec's repository-name grammar.
    Namespace(String),
    /// No workflow was selected.
    NoWorkflows,
    /// The run id is not lowercase letters and digits.
    RunId(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Url(why) => write!(f, "invalid registry URL {why}"),
            ConfigError::Namespace(ns) => write!(
                f,
                "namespace {ns:?} is not a valid repository name (lowercase components separated by '/')"
            ),
            ConfigError::NoWorkflows => write!(f, "no workflow selected"),
            ConfigError::RunId(id) => {
                write!(f, "run id {id:?} must be lowercase letters and digits")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

/// Whether `name` matches the spec's repository-name grammar:
/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*`.
fn valid_name(name: &str) -> bool {
    fn component(s: &str) -> bool {
        let b = s.as_bytes();
        let alnum = |c: u8| c.is_ascii_lowercase() || c.is_ascii_digit();
        let mut i = 0;
        loop {
            let start = i;
            while i < b.len() && alnum(b[i]) {
                i += 1;
            }
            if i == start {
                return false;
            }
            if i == b.len() {
                return true;
            }
            let sep_start = i;
            while i < b.len() && !alnum(b[i]) {
                i += 1;
            }
            let sep = &s[sep_start..i];
            let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|c| c == b'-');
            if !ok || i == b.len() {
                return false;
            }
        }
    }
    !name.is_empty() && name.split('/').all(component)
}

/// Runs the selected workflows against the registry and reports every check.
///
/// A misbehaving registry yields failed checks, never a panic or an error;
/// the only error is a configuration that cannot be run.
pub fn run(cfg: &Config) -> Result<Report, ConfigError> {
    cfg.validate()?;
    let cfg = cfg.clone();
    let run_id = cfg.run_id.clone().unwrap_or_else(fixtures::new_run_id);
    let id = run_id.clone();
    let worker = std::thread::Builder::new()
        .name("berth-conformance".into())
        .spawn(move || run_here(&cfg, &id));
    let joined = match worker {
        Ok(handle) => handle.join().map_err(|_| "the suite panicked".to_string()),
        Err(e) => Err(format!("cannot start the suite's thread: {e}")),
    };
    Ok(joined.unwrap_or_else(|why| Report {
        url: String::new(),
        run_id,
        repositories: Vec::new(),
        checks: vec![CheckResult {
            name: "pull/suite-internal-error".into(),
            workflow: Workflow::Pull,
            level: Level::Must,
            outcome: Outcome::Fail(why),
        }],
    }))
}

fn run_here(cfg: &Config, run_id: &str) -> Report {
    let cross = cfg.cross_namespace.as_deref().unwrap_or(&cfg.namespace);
    let repos = checks::Repos::new(&cfg.namespace, cross, run_id);
    let mut report = Report {
        url: cfg.url.to_string(),
        run_id: run_id.to_string(),
        repositories: repos.written(),
        checks: Vec::new(),
    };
    let client = match client::Client::new(cfg.url.clone(), cfg.timeout) {
        Ok(c) => c,
        Err(why) => {
            report.checks.push(CheckResult {
                name: "pull/client-setup".into(),
                workflow: Workflow::Pull,
                level: Level::Must,
                outcome: Outcome::Fail(why),
            });
            return report;
        }
    };
    let env = checks::Env {
        c: &client,
        run_id,
        namespace: &cfg.namespace,
        repos: &repos,
    };
    for workflow in Workflow::ALL {
        if cfg.workflows.contains(&workflow) {
            report.checks.extend(checks::run_workflow(workflow, &env));
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_grammar() {
        for ok in [
            "a",
            "conformance",
            "a/b",
            "a-b",
            "a--b",
            "a.b",
            "a_b",
            "a__b",
            "a0/b9.c",
        ] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in [
            "", "A", "a/", "/a", "a//b", "-a", "a-", "a..b", "a___b", "a._b", "a b",
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn config_validation() {
        assert!(Config::new("http://127.0.0.1:5000").is_ok());
        assert!(matches!(Config::new("not a url"), Err(ConfigError::Url(_))));
        assert!(matches!(Config::new("ftp://x"), Err(ConfigError::Url(_))));
        let mut cfg = Config::new("http://127.0.0.1:5000").unwrap();
        cfg.namespace = "Bad".into();
        assert!(matches!(cfg.validate(), Err(ConfigError::Namespace(_))));
        cfg.namespace = "ok".into();
        cfg.run_id = Some("UP".into());
        assert!(matches!(cfg.validate(), Err(ConfigError::RunId(_))));
    }

    #[test]
    fn unreachable_registry_fails_cleanly() {
        // Port 9 (discard) on loopback is closed: every check must fail or
        // skip, none may panic.
        let mut cfg = Config::new("http://127.0.0.1:9").unwrap();
        cfg.timeout = Duration::from_secs(2);
        let report = run(&cfg).unwrap();
        assert!(!report.is_success());
        assert!(
            report
                .checks
                .iter()
                .all(|c| !matches!(&c.outcome, Outcome::Fail(r) if r.contains("internal error")))
        );
    }
}
