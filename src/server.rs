//! Starting a server from a `Config`: open the stores, bind, serve until a signal.

use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;

use crate::config::Config;
use crate::http::{App, router};
use crate::registry::Registry;
use crate::store::{fs::FsBlobStore, redb::RedbMetaStore};

/// Opens the embedded stores under `config.data_dir`.
pub fn open_registry(config: &Config) -> anyhow::Result<Registry> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let blobs = FsBlobStore::open(&config.data_dir, config.fsync)
        .with_context(|| format!("opening blob store in {}", config.data_dir.display()))?;
    let meta = RedbMetaStore::open(&config.data_dir.join("berth.redb"), config.fsync)
        .context("opening metadata database")?;
    Ok(Registry::new(
        Arc::new(blobs),
        Arc::new(meta),
        config.limits.clone(),
    ))
}

/// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let registry = open_registry(&config)?;
    let app = App::new(registry);
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    // Tests and scripts wait for this line to learn the (possibly ephemeral) port.
    println!("berth listening on {addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), fsync = config.fsync, "serving");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutting down: finishing in-flight requests");
}
