//! The `berth` binary: a thin shell over `berth::cli`.

use clap::Parser;

use berth::cli::{Cli, Command};
use berth::config::{Config, LogFormat};

fn init_logging(format: LogFormat, default: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    match cli.command {
        Command::Serve(args) => {
            let config = Config::resolve(&args)?;
            init_logging(config.log_format, "info");
            runtime.max_blocking_threads(config.io_threads.get());
            runtime.build()?.block_on(berth::server::serve(config))
        }
        other => {
            init_logging(LogFormat::Text, "warn");
            runtime.build()?.block_on(berth::cli::run_client(other))
        }
    }
}
