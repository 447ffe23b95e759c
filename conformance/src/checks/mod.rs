//! The checks, one module per part of a workflow.

mod management;
mod pull;
mod push_blobs;
mod push_manifests;
mod referrers;
mod tags;

use crate::client::Client;
use crate::ops::check_error_samples;
use crate::report::{CheckResult, Level, Recorder, Workflow};

/// Repositories one run works in; every name carries the run id, so runs
/// never see each other's content.
pub(crate) struct Repos {
    pub pull: String,
    pub push: String,
    pub mount_source: String,
    pub tags: String,
    pub referrers: String,
    pub manage: String,
    /// A repository nothing is ever pushed to.
    pub absent: String,
}

impl Repos {
    pub(crate) fn new(namespace: &str, cross_namespace: &str, run_id: &str) -> Repos {
        let repo = |ns: &str, leaf: &str| format!("{ns}/{leaf}-{run_id}");
        Repos {
            pull: repo(namespace, "pull"),
            push: repo(namespace, "push"),
            mount_source: repo(cross_namespace, "mount-source"),
            tags: repo(namespace, "tags"),
            referrers: repo(namespace, "referrers"),
            manage: repo(namespace, "manage"),
            absent: repo(namespace, "never-pushed"),
        }
    }

    /// The repositories a run may create content in.
    pub(crate) fn written(&self) -> Vec<String> {
        vec![
            self.pull.clone(),
            self.push.clone(),
            self.mount_source.clone(),
            self.tags.clone(),
            self.referrers.clone(),
            self.manage.clone(),
        ]
    }
}

/// What every check can use.
pub(crate) struct Env<'a> {
    pub c: &'a Client,
    pub run_id: &'a str,
    pub namespace: &'a str,
    pub repos: &'a Repos,
}

/// Runs one workflow's checks, closing with the check of the error bodies
/// the workflow provoked.
pub(crate) fn run_workflow(workflow: Workflow, env: &Env) -> Vec<CheckResult> {
    let mut r = Recorder::new(workflow);
    env.c.take_error_samples();
    match workflow {
        Workflow::Pull => pull::run(env, &mut r),
        Workflow::Push => {
            push_blobs::run(env, &mut r);
            push_manifests::run(env, &mut r);
        }
        Workflow::Discovery => {
            tags::run(env, &mut r);
            referrers::run(env, &mut r);
        }
        Workflow::Management => management::run(env, &mut r),
    }
    let samples = env.c.take_error_samples();
    r.check("error-bodies-well-formed", Level::Must, || {
        check_error_samples(&samples)
    });
    r.into_results()
}
