//! `berth-conformance --url http://127.0.0.1:5000`: runs the OCI
//! distribution-spec conformance checks against a registry, prints one line
//! per check and a summary, and exits 1 if any check failed.

use std::process::ExitCode;
use std::time::Duration;

use berth_conformance::{Config, Workflow};
use clap::Parser;

/// OCI distribution-spec v1.1 conformance checks against a registry.
#[derive(Parser, Debug)]
#[command(name = "berth-conformance", version)]
struct Args {
    /// Base URL of the registry (plain http), e.g. http://127.0.0.1:5000
    #[arg(long, env = "BERTH_CONFORMANCE_URL")]
    url: String,

    /// Repository prefix to work under; each run adds a random suffix per repository
    #[arg(long, default_value = "conformance")]
    namespace: String,

    /// Repository prefix to mount blobs from (defaults to --namespace)
    #[arg(long)]
    cross_namespace: Option<String>,

    /// Workflows to run, comma separated: pull,push,discovery,management
    #[arg(long, value_delimiter = ',', value_parser = parse_workflow)]
    workflow: Vec<Workflow>,

    /// Timeout of each HTTP request, in seconds
    #[arg(long, default_value_t = 60)]
    timeout: u64,

    /// Print the report as JSON instead of lines
    #[arg(long)]
    json: bool,
}

fn parse_workflow(s: &str) -> Result<Workflow, String> {
    Workflow::parse(s).ok_or_else(|| {
        format!("unknown workflow {s:?} (expected pull, push, discovery or management)")
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut cfg = match Config::new(&args.url) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("berth-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    cfg.namespace = args.namespace;
    cfg.cross_namespace = args.cross_namespace;
    if !args.workflow.is_empty() {
        cfg.workflows = args.workflow;
    }
    cfg.timeout = Duration::from_secs(args.timeout.max(1));

    let report = match berth_conformance::run(&cfg) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth-conformance: {e}");
            return ExitCode::from(2);
        }
    };

    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(s) => println!("{s}"),
            Err(e) => {
                eprintln!("berth-conformance: cannot encode the report: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        println!(
            "berth-conformance: {} (run {}, repositories under {})",
            report.url, report.run_id, cfg.namespace
        );
        for check in &report.checks {
            println!("{}", check.line());
        }
        println!("{}", report.summary());
    }
    if report.is_success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
