//! The `berth` command line: `serve`, and client commands that talk to a registry
//! over HTTP like any other client.

mod attach;
mod pull;
mod push;
mod views;

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A model registry that is an OCI registry"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Where client commands find the registry when a reference names no host.
#[derive(Debug, Clone, clap::Args)]
pub struct RegistryArgs {
    /// Registry host (and port) for references that name none.
    #[arg(
        long,
        global = true,
        env = "BERTH_REGISTRY",
        default_value = "127.0.0.1:5000"
    )]
    pub registry: String,
    /// Use plain HTTP even for non-loopback registries.
    #[arg(long, global = true, env = "BERTH_PLAIN_HTTP")]
    pub plain_http: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the registry server.
    Serve(ServeArgs),
    /// Pack a model directory and push it as a ModelPack artifact.
    Push(push::PushArgs),
    /// Pull a model (ModelPack, oras or KitOps) into a directory.
    Pull(pull::PullArgs),
    /// Attach a file (evaluation report, model card, …) as a referrer of a version.
    Attach(attach::AttachArgs),
    /// List models.
    Models(views::ModelsArgs),
    /// List the versions of a model.
    Versions(views::VersionsArgs),
    /// Show one model version.
    Show(views::ShowArgs),
    /// Compare versions of a model side by side.
    Compare(views::CompareArgs),
}

/// Runs a client command (everything but `serve`).
pub async fn run_client(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => anyhow::bail!("serve is not a client command"),
        Command::Push(a) => push::run(a).await,
        Command::Pull(a) => pull::run(a).await,
        Command::Attach(a) => attach::run(a).await,
        Command::Models(a) => views::models(a).await,
        Command::Versions(a) => views::versions(a).await,
        Command::Show(a) => views::show(a).await,
        Command::Compare(a) => views::compare(a).await,
    }
}
