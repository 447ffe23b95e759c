//! `berth models`, `versions`, `show`, `compare`: the model API (`/api/v1`) as
//! aligned tables, or with `--json` its JSON as is (pretty-printed).

mod render;
pub mod table;

use serde_json::Value;

use super::RegistryArgs;
use crate::client::reference::{ImageRef, registry_url};
use table::print;

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Only models whose name contains this text.
    #[arg(long, short)]
    pub query: Option<String>,
    /// Only models with a version carrying this annotation (KEY=VALUE; repeatable).
    #[arg(long)]
    pub annotation: Vec<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, clap::Args)]
pub struct VersionsArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The model: `[REGISTRY/]NAME`.
    pub name: String,
    /// Sort key: `created`, `size`, `metrics.<k>` or `params.<k>`; a leading `-` sorts descending.
    #[arg(long, allow_hyphen_values = true)]
    pub sort: Option<String>,
    /// Filter such as `metrics.auc>=0.9`, `params.lr=0.01`, `tag=prod` (repeatable).
    #[arg(long)]
    pub filter: Vec<String>,
    #[command(flatten)]
    pub page: PageArgs,
}

#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The version: `[REGISTRY/]NAME[:TAG|@DIGEST]` (the tag defaults to `latest`).
    pub reference: String,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// The model: `[REGISTRY/]NAME`.
    pub name: String,
    /// Versions (tags or digests); the first is the baseline.
    #[arg(required = true, num_args = 2..)]
    pub versions: Vec<String>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, clap::Args)]
pub struct PageArgs {
    /// Items per page (the server's default when absent).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Continue a listing from a previous page's cursor.
    #[arg(long)]
    pub cursor: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

impl PageArgs {
    pub fn query(&self) -> Vec<(&'static str, String)> {
        let mut q = Vec::new();
        if let Some(l) = self.limit {
            q.push(("limit", l.to_string()));
        }
        if let Some(c) = &self.cursor {
            q.push(("cursor", c.clone()));
        }
        q
    }
}

/// The registry base URL and model name of `[REGISTRY/]NAME`.
fn model_of(name: &str, registry: &RegistryArgs) -> anyhow::Result<(String, ImageRef)> {
    let r = ImageRef::parse(name)?;
    let host = r.registry.as_deref().unwrap_or(&registry.registry);
    Ok((registry_url(host, registry.plain_http), r))
}

/// GETs a model-API path and returns its JSON, or the API's error as an error.
async fn get(base: &str, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
    super::api::Api::new(base)?.get(path, query).await
}

pub async fn models(a: ModelsArgs) -> anyhow::Result<()> {
    let base = registry_url(&a.registry.registry, a.registry.plain_http);
    let mut q = a.page.query();
    if let Some(s) = &a.query {
        q.push(("q", s.clone()));
    }
    q.extend(a.annotation.iter().map(|f| ("annotation", f.clone())));
    let v = get(&base, "models", &q).await?;
    print(a.page.json, &v, render::models)
}

pub async fn versions(a: VersionsArgs) -> anyhow::Result<()> {
    let (base, r) = model_of(&a.name, &a.registry)?;
    let mut q = a.page.query();
    if let Some(s) = &a.sort {
        q.push(("sort", s.clone()));
    }
    q.extend(a.filter.iter().map(|f| ("filter", f.clone())));
    let v = get(&base, &format!("models/{}/versions", r.name), &q).await?;
    // Parameters named by the sort or filters get their own columns.
    let mut params: Vec<String> = a
        .sort
        .iter()
        .chain(&a.filter)
        .filter_map(|s| {
            let key = s
                .trim_start_matches(['-', '+'])
                .split(['<', '>', '=', '!'])
                .next()?;
            key.strip_prefix("params.").map(str::to_string)
        })
        .collect();
    params.dedup();
    print(a.page.json, &v, |v| render::versions(v, &params))
}

pub async fn show(a: ShowArgs) -> anyhow::Result<()> {
    let (base, r) = model_of(&a.reference, &a.registry)?;
    let path = format!("models/{}/versions/{}", r.name, r.reference());
    let v = get(&base, &path, &[]).await?;
    print(a.json, &v, render::show)
}

pub async fn compare(a: CompareArgs) -> anyhow::Result<()> {
    let (base, r) = model_of(&a.name, &a.registry)?;
    let q = [("versions", a.versions.join(","))];
    let v = get(&base, &format!("models/{}/compare", r.name), &q).await?;
    print(a.json, &v, render::compare)
}
