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
        .with_context(|| format!("opening blob store in {}", config.data_dir.display()))?
        .direct_io(config.direct_io);
    let meta = RedbMetaStore::open(&config.data_dir.join("berth.redb"), config.fsync)
        .context("opening metadata database")?;
    Ok(Registry::new(
        Arc::new(blobs),
        Arc::new(meta),
        config.limits.clone(),
    ))
}

/// Raises the soft limit on open files to the hard one, as Go servers (CNCF
/// distribution among them) do at start: each connection and each upload holds a
/// descriptor, and the usual soft default of 1024 is a few hundred clients.
/// Returns the limit in force, if it could be set.
fn raise_open_files_limit() -> Option<u64> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => Some(limit),
        Err(e) => {
            tracing::warn!(error = %e, "could not raise the open-files limit");
            None
        }
    }
}

/// Serves until SIGTERM or Ctrl-C, then lets in-flight requests finish.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let open_files = raise_open_files_limit();
    let registry = open_registry(&config)?;
    let app = App::new(registry);
    tokio::spawn(expire_uploads(app.clone(), config.limits.upload_ttl_secs));
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    // Tests and scripts wait for this line to learn the (possibly ephemeral) port.
    println!("berth listening on {addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), fsync = config.fsync,
        open_files_limit = open_files, "serving");
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, router(app))
        .with_graceful_shutdown(shutdown_signal())
        .await?;
    tracing::info!("stopped");
    Ok(())
}

/// Expires idle upload sessions now and then (at start, then every quarter TTL,
/// at most hourly), so abandoned uploads do not hold disk and memory forever.
async fn expire_uploads(app: Arc<App>, ttl_secs: u64) {
    let period = std::time::Duration::from_secs((ttl_secs / 4).clamp(1, 3600));
    let mut tick = tokio::time::interval(period);
    loop {
        tick.tick().await;
        match app.registry.expire_uploads(ttl_secs).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(removed = n, "expired idle uploads"),
            Err(e) => tracing::warn!(error = %e, "could not expire idle uploads"),
        }
    }
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
