//! The `berth` command: `serve` runs the registry.

use clap::{Parser, Subcommand};

use berth::config::{Config, LogFormat, ServeArgs};

#[derive(Parser)]
#[command(
    name = "berth",
    version,
    about = "A model registry that is an OCI registry"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the registry server.
    Serve(ServeArgs),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::resolve(&args)?;
            init_logging(config.log_format);
            berth::server::serve(config).await
        }
    }
}
