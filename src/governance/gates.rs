//! Promotion gates: each protected alias's checks, evaluated against a
//! candidate version and reported one by one (name, passed or not, the figures
//! compared, why). Every gate is evaluated, so a report shows all that stands
//! between a version and an alias, not only the first.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::cosign;
use super::events::sign_delivery;
use super::policy::{AliasRule, Better, GateCheck, GateKind, Hook};
use crate::oci::Digest;
use crate::store::{BlobStore, MetaStore, StoreResult};

/// The outcome of one gate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateResult {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: GateKind,
    pub passed: bool,
    /// Not evaluated (a rollback skips this kind); counts as passed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
    /// What was compared.
    pub figures: Value,
    pub reason: String,
}

/// Every gate of a promotion and whether all passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GateReport {
    pub repository: String,
    pub alias: String,
    pub candidate: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<Digest>,
    pub passed: bool,
    pub gates: Vec<GateResult>,
}

impl std::fmt::Display for GateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let failed: Vec<String> = self
            .gates
            .iter()
            .filter(|g| !g.passed)
            .map(|g| format!("{}: {}", g.name, g.reason))
            .collect();
        write!(
            f,
            "{} of {} gates of alias {} failed for {}: {}",
            failed.len(),
            self.gates.len(),
            self.alias,
            self.candidate,
            failed.join("; ")
        )
    }
}

/// A report and the approvals the promotion would use up.
pub struct Evaluation {
    pub report: GateReport,
    pub approvals: Vec<String>,
}

/// What the gates read.
pub struct GateContext<'a> {
    pub meta: &'a dyn MetaStore,
    pub blobs: &'a dyn BlobStore,
    pub http: &'a reqwest::Client,
}

/// The promotion being gated.
pub struct Candidate<'a> {
    pub repo: &'a str,
    pub alias: &'a str,
    pub digest: &'a Digest,
    /// The alias's target now.
    pub current: Option<&'a Digest>,
    /// A rollback: gate kinds in the rule's `rollback_skips` are not evaluated.
    pub rollback: bool,
}

/// Evaluates every gate of `rule` for `c`, in the policy's order.
pub async fn evaluate(
    ctx: &GateContext<'_>,
    rule: Option<&AliasRule>,
    c: &Candidate<'_>,
) -> StoreResult<Evaluation> {
    let mut report = GateReport {
        repository: c.repo.to_string(),
        alias: c.alias.to_string(),
        candidate: c.digest.clone(),
        current: c.current.cloned(),
        passed: true,
        gates: Vec::new(),
    };
    let mut approvals = Vec::new();
    for gate in rule.map(|r| r.gates.as_slice()).unwrap_or_default() {
        let kind = gate.check.kind();
        let result = if c.rollback && rule.is_some_and(|r| r.rollback_skips.contains(&kind)) {
            GateResult {
                name: gate.name.clone(),
                kind,
                passed: true,
                skipped: true,
                figures: Value::Null,
                reason: "skipped on rollback".into(),
            }
        } else {
            let (passed, figures, reason) = match &gate.check {
                GateCheck::Metric {
                    metric,
                    better,
                    threshold,
                    min_delta,
                    against,
                } => {
                    metric_gate(
                        ctx,
                        c,
                        metric,
                        *better,
                        *threshold,
                        *min_delta,
                        against.as_deref(),
                    )
                    .await?
                }
                GateCheck::Signature { keys } => {
                    let found = cosign::verified_signatures(ctx, c.repo, c.digest, keys).await?;
                    let verified: Vec<&cosign::FoundSignature> =
                        found.iter().filter(|s| s.key.is_some()).collect();
                    let figures = json!({ "found": found.len(), "verified": verified });
                    match verified.first() {
                        Some(s) => (
                            true,
                            figures,
                            format!(
                                "signed ({}) by key {}",
                                s.scheme,
                                s.key.as_deref().unwrap_or("")
                            ),
                        ),
                        None if found.is_empty() => (
                            false,
                            figures,
                            "no signature of the candidate was found".into(),
                        ),
                        None => (
                            false,
                            figures,
                            format!(
                                "{} signature(s) found, none verifies with a key of the policy",
                                found.len()
                            ),
                        ),
                    }
                }
                GateCheck::Approval {
                    count,
                    exclude_pusher,
                } => {
                    let (passed, figures, reason, used) =
                        approval_gate(ctx, c, *count, *exclude_pusher).await?;
                    if passed {
                        approvals.extend(used);
                    }
                    (passed, figures, reason)
                }
                GateCheck::Referrer {
                    artifact_type,
                    annotations,
                } => referrer_gate(ctx, c, artifact_type, annotations).await?,
                GateCheck::Webhook(hook) => webhook_gate(ctx, c, hook, &report).await,
            };
            GateResult {
                name: gate.name.clone(),
                kind,
                passed,
                skipped: false,
                figures,
                reason,
            }
        };
        report.passed &= result.passed;
        report.gates.push(result);
    }
    Ok(Evaluation { report, approvals })
}

type Outcome = (bool, Value, String);

async fn metric_of(
    ctx: &GateContext<'_>,
    repo: &str,
    digest: &Digest,
    metric: &str,
) -> StoreResult<Option<f64>> {
    Ok(ctx
        .meta
        .model_version(repo, digest)
        .await?
        .and_then(|v| v.metrics.get(metric).copied()))
}

async fn metric_gate(
    ctx: &GateContext<'_>,
    c: &Candidate<'_>,
    metric: &str,
    better: Better,
    threshold: Option<f64>,
    min_delta: f64,
    against: Option<&str>,
) -> StoreResult<Outcome> {
    let Some(value) = metric_of(ctx, c.repo, c.digest, metric).await? else {
        return Ok((
            false,
            json!({ "metric": metric }),
            format!("the candidate has no metric {metric}"),
        ));
    };
    let holds = |x: f64, than: f64| match better {
        Better::Higher => x >= than,
        Better::Lower => x <= than,
    };
    if let Some(t) = threshold {
        let passed = holds(value, t);
        let op = if better == Better::Higher { ">=" } else { "<=" };
        return Ok((
            passed,
            json!({ "metric": metric, "candidate": value, "threshold": t, "better": better }),
            format!(
                "{metric} {value} {} {op} {t}",
                if passed { "is" } else { "is not" }
            ),
        ));
    }
    let baseline_alias = against.unwrap_or(c.alias);
    let baseline = match against {
        Some(a) => ctx.meta.resolve_tag(c.repo, a).await?,
        None => c.current.cloned(),
    };
    let Some(baseline) = baseline else {
        return Ok((
            true,
            json!({ "metric": metric, "candidate": value }),
            format!("{baseline_alias} has no target yet: nothing to compare with"),
        ));
    };
    let Some(base) = metric_of(ctx, c.repo, &baseline, metric).await? else {
        return Ok((
            true,
            json!({ "metric": metric, "candidate": value, "baseline_digest": baseline }),
            format!("the target of {baseline_alias} has no metric {metric} to compare with"),
        ));
    };
    let delta = match better {
        Better::Higher => value - base,
        Better::Lower => base - value,
    };
    let passed = delta >= min_delta;
    Ok((
        passed,
        json!({
            "metric": metric, "candidate": value, "baseline": base,
            "baseline_digest": baseline, "delta": delta, "min_delta": min_delta, "better": better,
        }),
        format!(
            "{metric} {value} against {base} at {baseline_alias}: an improvement of {delta}, {} {min_delta}",
            if passed { "at least" } else { "less than" }
        ),
    ))
}

async fn approval_gate(
    ctx: &GateContext<'_>,
    c: &Candidate<'_>,
    count: u32,
    exclude_pusher: bool,
) -> StoreResult<(bool, Value, String, Vec<String>)> {
    let pusher = if exclude_pusher {
        ctx.meta.pusher(c.repo, c.digest).await?.map(|a| a.name)
    } else {
        None
    };
    let all = ctx.meta.approvals(c.repo, c.digest).await?;
    let mut used = Vec::new();
    let mut not_counted = Vec::new();
    for a in all.iter().filter(|a| a.alias == c.alias) {
        if a.used_by.is_some() {
            not_counted.push(
                json!({ "approver": a.approver.name, "why": "used by an earlier promotion" }),
            );
        } else if pusher.as_deref() == Some(a.approver.name.as_str()) {
            not_counted.push(json!({ "approver": a.approver.name, "why": "pushed the candidate" }));
        } else {
            used.push(a.approver.name.clone());
        }
    }
    let passed = used.len() >= count as usize;
    let figures = json!({
        "required": count, "approvers": used, "not_counted": not_counted, "pusher": pusher,
    });
    let reason = format!(
        "{} of {count} required approvals for {}",
        used.len(),
        c.alias
    );
    Ok((passed, figures, reason, used))
}

async fn referrer_gate(
    ctx: &GateContext<'_>,
    c: &Candidate<'_>,
    artifact_type: &str,
    annotations: &std::collections::BTreeMap<String, String>,
) -> StoreResult<Outcome> {
    let mut matching = Vec::new();
    let mut found = 0usize;
    let mut after: Option<String> = None;
    // Pages of the referrers index, bounded: enough for any real review trail.
    for _ in 0..10 {
        let (page, more) = ctx
            .meta
            .referrers(c.repo, c.digest, after.as_deref(), Some(artifact_type), 100)
            .await?;
        found += page.len();
        for d in &page {
            if annotations
                .iter()
                .all(|(k, v)| d.annotations.get(k) == Some(v))
            {
                matching.push(d.digest.clone());
            }
        }
        match (more, page.last()) {
            (true, Some(last)) => after = Some(last.digest.to_string()),
            _ => break,
        }
    }
    let passed = !matching.is_empty();
    let reason = match (passed, found) {
        (true, _) => format!(
            "{} referrer(s) of type {artifact_type} match",
            matching.len()
        ),
        (false, 0) => format!("the candidate has no referrer of type {artifact_type}"),
        (false, n) => {
            format!("{n} referrer(s) of type {artifact_type}, none with the annotations required")
        }
    };
    Ok((
        passed,
        json!({ "artifact_type": artifact_type, "annotations": annotations, "found": found, "matching": matching }),
        reason,
    ))
}

/// Most of a webhook's answer kept in a report.
const MAX_WEBHOOK_ANSWER: usize = 512;

async fn webhook_gate(
    ctx: &GateContext<'_>,
    c: &Candidate<'_>,
    hook: &Hook,
    so_far: &GateReport,
) -> Outcome {
    let body = json!({
        "repository": c.repo,
        "alias": c.alias,
        "candidate": c.digest,
        "current": c.current,
        "rollback": c.rollback,
        "report": so_far,
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let id = uuid::Uuid::new_v4().to_string();
    let mut req = ctx
        .http
        .post(hook.url.clone())
        .timeout(hook.timeout)
        .header(reqwest::header::CONTENT_TYPE, "application/json");
    for (k, v) in sign_delivery(hook.secret.as_deref(), &id, &body) {
        req = req.header(k, v);
    }
    let figures = |status: Option<u16>| json!({ "url": hook.url.as_str(), "status": status });
    match req.body(body).send().await {
        Ok(mut resp) => {
            let status = resp.status();
            // Only the start of the answer is kept: a hostile hook cannot make
            // the registry buffer more.
            let mut head = Vec::new();
            while head.len() < MAX_WEBHOOK_ANSWER {
                match resp.chunk().await {
                    Ok(Some(c)) => head.extend_from_slice(&c),
                    _ => break,
                }
            }
            let said: String = String::from_utf8_lossy(&head)
                .chars()
                .take(MAX_WEBHOOK_ANSWER)
                .collect();
            let said = if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            };
            (
                status.is_success(),
                figures(Some(status.as_u16())),
                format!("answered {status}{said}"),
            )
        }
        Err(e) if e.is_timeout() => (
            false,
            figures(None),
            format!("no answer within {} s", hook.timeout.as_secs()),
        ),
        Err(e) => (false, figures(None), format!("could not be reached: {e}")),
    }
}
