//! The `berth` command line: `serve`, and client commands that talk to a registry
//! over HTTP like any other client.

mod accounts;
mod api;
mod attach;
mod audit;
mod govern;
mod login;
mod pull;
mod push;
mod sign;
mod storage;
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
    /// Move an alias (e.g. prod) to a version, through its gates.
    Promote(govern::PromoteArgs),
    /// Point an alias back at its previous (or a given earlier) target.
    Rollback(govern::RollbackArgs),
    /// List a model's aliases, resolve one (`--at` for the past), or remove one.
    Aliases(govern::AliasesArgs),
    /// The history of an alias: every move, by whom, why, on what evidence.
    History(govern::HistoryArgs),
    /// Approve a version for an alias.
    Approve(govern::ApproveArgs),
    /// List the approvals of a version.
    Approvals(govern::VersionArgs),
    /// Show, set (KEY=VALUE) or remove (--rm KEY) the labels of a version.
    Label(govern::LabelArgs),
    /// Delete a version (refused while a protected alias or an immutable tag holds it).
    Delete(govern::VersionArgs),
    /// Write a cosign-format key pair (cosign.key, cosign.pub).
    Keygen(sign::KeygenArgs),
    /// Sign a version as cosign does (.sig tag and a sigstore bundle referrer).
    Sign(sign::SignArgs),
    /// Verify a version's signatures, or an alias's promotion attestation, offline.
    Verify(sign::VerifyArgs),
    /// The audit log: list, export, verify.
    Audit(audit::AuditArgs),
    /// Re-read and hash every stored blob; set aside (and report) those that fail.
    Scrub(storage::ScrubArgs),
    /// Bytes per repository and in total: logical, physical, dedup, reclaimable.
    Du(storage::DuArgs),
    /// Garbage collection: a dry run unless --apply.
    Gc(storage::GcArgs),
    /// Users of the auth file (on the registry's machine): add, passwd, remove, list.
    User(accounts::UserArgs),
    /// Robot accounts for CI (through the admin API): create, list, revoke.
    Robot(accounts::RobotArgs),
    /// Check credentials against a registry and store them (docker config.json).
    Login(login::LoginArgs),
    /// Remove the stored credentials of a registry.
    Logout(login::LogoutArgs),
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
        Command::Promote(a) => govern::promote(a).await,
        Command::Rollback(a) => govern::rollback(a).await,
        Command::Aliases(a) => govern::aliases(a).await,
        Command::History(a) => govern::history(a).await,
        Command::Approve(a) => govern::approve(a).await,
        Command::Approvals(a) => govern::approvals(a).await,
        Command::Label(a) => govern::label(a).await,
        Command::Delete(a) => govern::delete(a).await,
        Command::Keygen(a) => sign::keygen(a),
        Command::Sign(a) => sign::sign(a).await,
        Command::Verify(a) => sign::verify(a).await,
        Command::Audit(a) => audit::run(a).await,
        Command::Scrub(a) => storage::scrub(a).await,
        Command::Du(a) => storage::du(a).await,
        Command::Gc(a) => storage::gc(a).await,
        Command::User(a) => accounts::user(a),
        Command::Robot(a) => accounts::robot(a).await,
        Command::Login(a) => login::login(a).await,
        Command::Logout(a) => login::logout(a).await,
    }
}
