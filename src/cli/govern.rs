//! `berth promote`, `rollback`, `aliases`, `history`, `approve`, `approvals`,
//! `label`, `delete`: the promotion API (`/api/v1`) as tables, or `--json`.

use std::fmt::Write as _;

use anyhow::{Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use super::RegistryArgs;
use super::api::{Api, enc};
use super::views::table::{Table, field, items, print, short_digest, text};

#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The model: `[REGISTRY/]NAME`.
    pub name: String,
    /// The version to promote: a tag or a digest.
    pub version: String,
    /// The alias to move, e.g. `prod`.
    #[arg(long = "to", value_name = "ALIAS")]
    pub alias: String,
    /// Why (kept in the history, the audit log and the attestation).
    #[arg(long, short)]
    pub reason: Option<String>,
    /// Move only if the alias still points at this digest (compare-and-swap).
    #[arg(long, value_name = "DIGEST", conflicts_with = "create")]
    pub expect: Option<String>,
    /// Move only if the alias is not set yet.
    #[arg(long)]
    pub create: bool,
    /// Evaluate the gates and report; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The model: `[REGISTRY/]NAME`.
    pub name: String,
    pub alias: String,
    /// An earlier target of the alias (tag or digest); default: the previous one.
    #[arg(long, value_name = "VERSION")]
    pub to: Option<String>,
    #[arg(long, short)]
    pub reason: Option<String>,
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct AliasesArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The model: `[REGISTRY/]NAME`.
    pub name: String,
    /// One alias to resolve (all aliases when absent).
    pub alias: Option<String>,
    /// What the alias pointed at then (RFC 3339), with `ALIAS`.
    #[arg(long, requires = "alias")]
    pub at: Option<String>,
    /// Remove the alias (through the promotion API, audited), with `ALIAS`.
    #[arg(long, requires = "alias", conflicts_with = "at")]
    pub unset: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The model: `[REGISTRY/]NAME`.
    pub name: String,
    pub alias: String,
    #[command(flatten)]
    pub page: super::views::PageArgs,
}

#[derive(Debug, clap::Args)]
pub struct ApproveArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The model: `[REGISTRY/]NAME`.
    pub name: String,
    /// The version approved: a tag or a digest.
    pub version: String,
    /// The alias it is approved for.
    #[arg(long = "for", value_name = "ALIAS")]
    pub alias: String,
    #[arg(long, short)]
    pub comment: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct VersionArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The model: `[REGISTRY/]NAME`.
    pub name: String,
    /// A tag or a digest.
    pub version: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The model: `[REGISTRY/]NAME`.
    pub name: String,
    /// A tag or a digest.
    pub version: String,
    /// Labels to set, `KEY=VALUE` (none: list the labels).
    pub set: Vec<String>,
    /// Labels to remove (repeatable).
    #[arg(long = "rm", value_name = "KEY")]
    pub remove: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn promote(a: PromoteArgs) -> Result<()> {
    let (api, r) = Api::for_model(&a.name, &a.registry)?;
    let mut headers = Vec::new();
    if let Some(d) = &a.expect {
        headers.push(("if-match", format!("\"{d}\"")));
    }
    if a.create {
        headers.push(("if-none-match", "*".to_string()));
    }
    let query = if a.dry_run {
        vec![("dry_run", "true".to_string())]
    } else {
        vec![]
    };
    let body = json!({ "target": a.version, "reason": a.reason });
    let path = format!("models/{}/aliases/{}", r.name, enc(&a.alias));
    let v = api
        .send(Method::PUT, &path, &query, Some(&body), &headers)
        .await?
        .json()?;
    print(a.json, &v, render_promotion)
}

pub async fn rollback(a: RollbackArgs) -> Result<()> {
    let (api, r) = Api::for_model(&a.name, &a.registry)?;
    let query = if a.dry_run {
        vec![("dry_run", "true".to_string())]
    } else {
        vec![]
    };
    let body = json!({ "to": a.to, "reason": a.reason });
    let path = format!("models/{}/aliases/{}/rollback", r.name, enc(&a.alias));
    let v = api
        .send(Method::POST, &path, &query, Some(&body), &[])
        .await?
        .json()?;
    print(a.json, &v, render_promotion)
}

pub async fn aliases(a: AliasesArgs) -> Result<()> {
    let (api, r) = Api::for_model(&a.name, &a.registry)?;
    let Some(alias) = &a.alias else {
        let v = api.get(&format!("models/{}/aliases", r.name), &[]).await?;
        return print(a.json, &v, |v| {
            let mut t = Table::new([
                "ALIAS",
                "DIGEST",
                "TAGS",
                "PROTECTED",
                "MOVED BY",
                "MOVED AT",
            ]);
            for i in items(v) {
                t.row(alias_row(i));
            }
            t.render()
        });
    };
    let path = format!("models/{}/aliases/{}", r.name, enc(alias));
    if a.unset {
        let v = api
            .send(Method::DELETE, &path, &[], None, &[])
            .await?
            .json()?;
        return print(a.json, &v, |v| {
            format!(
                "{} removed (it pointed at {})\n",
                alias,
                field(v, "previous")
            )
        });
    }
    let query: Vec<(&str, String)> = a.at.iter().map(|t| ("at", t.clone())).collect();
    let v = api.get(&path, &query).await?;
    print(a.json, &v, |v| {
        if a.at.is_some() {
            let e = v.get("entry").unwrap_or(&Value::Null);
            return format!(
                "{} at {}: {} ({} by {} at {})\n",
                alias,
                field(v, "at"),
                field(v, "digest"),
                field(e, "kind"),
                actor(e.get("actor")),
                field(e, "time"),
            );
        }
        let mut t = Table::new(Vec::<String>::new());
        for (k, val) in [
            (
                "Alias",
                format!("{}:{}", field(v, "name"), field(v, "alias")),
            ),
            ("Digest", field(v, "digest")),
            (
                "Tags",
                super::views::table::list(v.get("tags").unwrap_or(&Value::Null)),
            ),
            ("Protected", field(v, "protected")),
            ("Moved by", actor(v.get("moved_by"))),
            ("Moved at", field(v, "moved_at")),
            ("How", field(v, "kind")),
            ("Reason", field(v, "reason")),
            ("Previous", field(v, "previous")),
            ("Attestation", field(v, "attestation")),
        ] {
            t.row(vec![format!("{k}:"), val]);
        }
        t.render()
    })
}

pub async fn history(a: HistoryArgs) -> Result<()> {
    let (api, r) = Api::for_model(&a.name, &a.registry)?;
    let path = format!("models/{}/aliases/{}/history", r.name, enc(&a.alias));
    let v = api.get(&path, &a.page.query()).await?;
    print(a.page.json, &v, |v| {
        let mut t = Table::new([
            "SEQ", "TIME", "KIND", "TARGET", "PREVIOUS", "ACTOR", "GATES", "REASON",
        ]);
        for e in items(v) {
            let gates = match e.pointer("/report/gates").and_then(Value::as_array) {
                Some(g) => {
                    let passed = g
                        .iter()
                        .filter(|x| x.get("passed") == Some(&Value::Bool(true)))
                        .count();
                    format!("{passed}/{} passed", g.len())
                }
                None => "-".into(),
            };
            t.row(vec![
                field(e, "seq"),
                field(e, "time"),
                field(e, "kind"),
                short_digest(&field(e, "target")),
                short_digest(&field(e, "previous")),
                actor(e.get("actor")),
                gates,
                field(e, "reason"),
            ]);
        }
        let mut s = t.render();
        if let Some(c) = v.get("next_cursor").and_then(Value::as_str) {
            let _ = writeln!(s, "(more: --cursor {c})");
        }
        s
    })
}

pub async fn approve(a: ApproveArgs) -> Result<()> {
    let (api, r) = Api::for_model(&a.name, &a.registry)?;
    let path = format!("models/{}/versions/{}/approvals", r.name, enc(&a.version));
    let body = json!({ "alias": a.alias, "comment": a.comment });
    let v = api.call(Method::POST, &path, &body).await?;
    print(a.json, &v, |v| {
        format!(
            "approved {} of {} for {} as {}\n",
            a.version,
            r.name,
            field(v, "alias"),
            actor(v.get("approver"))
        )
    })
}

pub async fn approvals(a: VersionArgs) -> Result<()> {
    let (api, r) = Api::for_model(&a.name, &a.registry)?;
    let path = format!("models/{}/versions/{}/approvals", r.name, enc(&a.version));
    let v = api.get(&path, &[]).await?;
    print(a.json, &v, |v| {
        let mut t = Table::new(["ALIAS", "APPROVER", "TIME", "USED BY", "COMMENT"]);
        for i in items(v) {
            t.row(vec![
                field(i, "alias"),
                actor(i.get("approver")),
                field(i, "time"),
                field(i, "used_by"),
                field(i, "comment"),
            ]);
        }
        t.render()
    })
}

pub async fn label(a: LabelArgs) -> Result<()> {
    let (api, r) = Api::for_model(&a.name, &a.registry)?;
    let path = format!("models/{}/versions/{}/labels", r.name, enc(&a.version));
    let v = if a.set.is_empty() && a.remove.is_empty() {
        api.get(&path, &[]).await?
    } else {
        let mut patch = serde_json::Map::new();
        for s in &a.set {
            let Some((k, v)) = s.split_once('=') else {
                bail!("label {s:?} must be KEY=VALUE (remove one with --rm KEY)");
            };
            patch.insert(k.to_string(), Value::String(v.to_string()));
        }
        for k in &a.remove {
            patch.insert(k.clone(), Value::Null);
        }
        api.call(Method::PATCH, &path, &Value::Object(patch))
            .await?
    };
    print(a.json, &v, |v| {
        let mut t = Table::new(["KEY", "VALUE"]);
        for (k, val) in v.as_object().into_iter().flatten() {
            t.row(vec![k.clone(), text(val)]);
        }
        t.render()
    })
}

pub async fn delete(a: VersionArgs) -> Result<()> {
    let (api, r) = Api::for_model(&a.name, &a.registry)?;
    let path = format!("models/{}/versions/{}", r.name, enc(&a.version));
    let v = api
        .send(Method::DELETE, &path, &[], None, &[])
        .await?
        .json()?;
    print(a.json, &v, |v| {
        format!("deleted {} ({})\n", a.version, field(v, "deleted"))
    })
}

/// An actor as `name (address)`.
fn actor(v: Option<&Value>) -> String {
    let Some(v) = v else { return "-".into() };
    match v.get("address").and_then(Value::as_str) {
        Some(a) => format!("{} ({a})", field(v, "name")),
        None => field(v, "name"),
    }
}

fn alias_row(i: &Value) -> Vec<String> {
    vec![
        field(i, "alias"),
        short_digest(&field(i, "digest")),
        super::views::table::list(i.get("tags").unwrap_or(&Value::Null)),
        field(i, "protected"),
        actor(i.get("moved_by")),
        field(i, "moved_at"),
    ]
}

fn render_promotion(v: &Value) -> String {
    let a = v.get("alias").unwrap_or(&Value::Null);
    let verb = match (v.get("dry_run"), v.get("changed")) {
        (Some(Value::Bool(true)), _) => "would move (dry run)",
        (_, Some(Value::Bool(false))) => "already points at",
        _ => "->",
    };
    let mut s = format!(
        "{}:{} {verb} {} (was {})\n",
        field(a, "name"),
        field(a, "alias"),
        field(a, "digest"),
        field(v, "previous"),
    );
    if let Some(att) = a.get("attestation").and_then(Value::as_str) {
        let _ = writeln!(s, "attested by the registry: {att}");
    }
    if let Some(r) = v.get("report") {
        s.push('\n');
        s.push_str(&render_report(r));
    }
    s
}

/// A gate report: one row per gate with its figures and why.
pub fn render_report(r: &Value) -> String {
    let gates = r
        .get("gates")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    if gates.is_empty() {
        return "gates: none for this alias\n".into();
    }
    let mut t = Table::new(["GATE", "TYPE", "RESULT", "WHY"]);
    for g in gates {
        let result = match (g.get("skipped"), g.get("passed")) {
            (Some(Value::Bool(true)), _) => "skipped",
            (_, Some(Value::Bool(true))) => "passed",
            _ => "FAILED",
        };
        t.row(vec![
            field(g, "name"),
            field(g, "type"),
            result.into(),
            field(g, "reason"),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_each_gate_and_its_result() {
        let r = json!({ "gates": [
            { "name": "metric auc", "type": "metric", "passed": false, "reason": "0.91 < 0.95" },
            { "name": "approval", "type": "approval", "passed": true, "reason": "2 of 2" },
            { "name": "signature", "type": "signature", "passed": true, "skipped": true, "reason": "rollback" },
        ]});
        let text = render_report(&r);
        assert!(
            text.contains("metric auc") && text.contains("FAILED") && text.contains("0.91 < 0.95")
        );
        assert!(text.contains("skipped"));
        assert_eq!(
            render_report(&json!({ "gates": [] })),
            "gates: none for this alias\n"
        );
    }
}
