//! Starting a server from a `Config`: open the stores, bind, serve until a signal.

mod connections;
mod tls;

use std::sync::Arc;

use std::time::Duration;

use anyhow::Context;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;

use crate::auth::Auth;
use crate::config::{Config, UploadIoMode};
use crate::governance::policy::Policy;
use crate::governance::signing::SigningKey;
use crate::governance::{Governance, GovernanceSettings};
use crate::http::actor::ClientAddr;
use crate::http::{App, router};
use crate::registry::Registry;
#[cfg(feature = "s3")]
use crate::store::s3::S3BlobStore;
use crate::store::{BlobStore, UploadIo, fs::FsBlobStore, redb::RedbMetaStore};

/// The environment variable that opens an encrypted registry signing key.
pub const SIGNING_KEY_PASSWORD: &str = "BERTH_SIGNING_KEY_PASSWORD";

/// The policy in `path`, or none if there is no such file.
fn load_policy(path: &std::path::Path) -> anyhow::Result<Policy> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Policy::parse(
            &text,
            &path.display().to_string(),
            path.parent(),
        )?),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Policy::empty()),
        Err(e) => Err(anyhow::anyhow!("reading policy {}: {e}", path.display())),
    }
}

/// The registry's signing key: read from its file, or, for the default file
/// in the data directory, made at first start (PKCS#8, owner-only) with its
/// public key beside it.
fn load_signing_key(config: &Config) -> anyhow::Result<SigningKey> {
    let path = &config.signing_key;
    let password = std::env::var(SIGNING_KEY_PASSWORD).ok();
    if path.exists() || config.signing_key_given {
        return SigningKey::read(path, password.as_deref().map(str::as_bytes))
            .with_context(|| format!("reading the signing key {}", path.display()));
    }
    let key = SigningKey::generate()?;
    let pem = key.to_pem()?;
    {
        use std::io::Write as _;
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .with_context(|| format!("creating the signing key {}", path.display()))?;
        f.write_all(pem.as_bytes())?;
        f.sync_all()?;
    }
    std::fs::write(path.with_extension("pub"), key.public_pem())?;
    tracing::info!(path = %path.display(), "made the registry's signing key");
    Ok(key)
}

/// Authentication from the auth file, or open access without one; the token
/// key from the auth file's `token.secret_file` or the data directory.
fn open_auth(config: &Config) -> anyhow::Result<Auth> {
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let Some(path) = &config.auth else {
        let secret = crate::auth::load_secret(&config.token_secret).map_err(anyhow::Error::msg)?;
        return Ok(Auth::open(secret)
            .map_err(anyhow::Error::msg)?
            .with_scheme(scheme));
    };
    let file = crate::auth::AuthFile::read(path)?;
    let secret_path = file
        .token
        .secret_file
        .clone()
        .unwrap_or_else(|| config.token_secret.clone());
    let secret = crate::auth::load_secret(&secret_path).map_err(anyhow::Error::msg)?;
    let auth = Auth::from_file(path, secret).map_err(anyhow::Error::msg)?;
    tracing::info!(auth = %path.display(), users = file.users.len(), grants = file.rules.len(), "authentication on");
    Ok(auth.with_scheme(scheme))
}

/// Opens the stores: metadata under `config.data_dir`, blobs there too or in
/// the S3 bucket the config names.
pub async fn open_registry(config: &Config) -> anyhow::Result<Registry> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let blobs = open_blobs(config).await?;
    let meta = RedbMetaStore::open(&config.data_dir.join("berth.redb"), config.fsync)
        .context("opening metadata database")?;
    let policy = load_policy(&config.policy)?;
    let governance = Governance::new(
        policy,
        load_signing_key(config)?,
        GovernanceSettings {
            policy_path: Some(config.policy.clone()),
            legacy_attestation_tags: config.legacy_attestation_tags,
            event_source: config.event_source.clone(),
        },
    );
    Ok(
        Registry::new(blobs, Arc::new(meta), config.limits.clone(), governance)
            .with_gc(config.gc.clone()),
    )
}

async fn open_blobs(config: &Config) -> anyhow::Result<Arc<dyn BlobStore>> {
    #[cfg(feature = "s3")]
    if let Some(s3) = &config.s3 {
        let store = S3BlobStore::connect(s3)
            .await
            .with_context(|| format!("opening S3 bucket {}", s3.bucket))?;
        tracing::info!(bucket = %s3.bucket, prefix = %s3.prefix, endpoint = ?s3.endpoint, "blobs in S3");
        return Ok(Arc::new(store));
    }
    let store = FsBlobStore::open(&config.data_dir, config.fsync)
        .with_context(|| format!("opening blob store in {}", config.data_dir.display()))?
        .upload_io(match config.upload_io {
            UploadIoMode::Auto => UploadIo::default(),
            UploadIoMode::Direct => UploadIo::Direct,
            UploadIoMode::Buffered => UploadIo::Buffered,
        });
    Ok(Arc::new(store))
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
    config.refuse_insecure()?;
    let open_files = raise_open_files_limit();
    let registry = open_registry(&config).await?;
    let auth = open_auth(&config)?;
    auth.set_robots(registry.robots().await?);
    let tls = match &config.tls {
        Some(files) => Some(Arc::new(tls::Tls::load(files)?)),
        None => None,
    };
    let app = App::with_auth(registry, auth);
    tokio::spawn(expire_uploads(app.clone(), config.limits.upload_ttl_secs));
    tokio::spawn(account_storage(app.clone()));
    if let Some(every) = config.gc_interval {
        tokio::spawn(collect_now_and_then(app.clone(), every));
    }
    if let Some(every) = config.scrub_interval {
        tokio::spawn(scrub_now_and_then(
            app.clone(),
            every,
            config.scrub_max_bytes_per_sec,
        ));
    }
    app.registry.sync_deliveries();
    tokio::spawn(finish_attestations(app.clone()));
    tokio::spawn(reload_on_hangup(app.clone(), tls.clone()));
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let addr = listener.local_addr()?;
    // Tests and scripts wait for this line to learn the (possibly ephemeral) port.
    println!("berth listening on {addr}");
    tracing::info!(%addr, data_dir = %config.data_dir.display(), fsync = config.fsync,
        tls = tls.is_some(), open_files_limit = open_files, "serving");
    let shared = app.clone();
    let mut app = router(app);
    if let Some(quiet) = config.client_timeout {
        // A body that stops arriving ends the request (408) instead of holding
        // its connection, and its upload session, for as long as the client likes.
        app = app.layer(tower_http::timeout::RequestBodyTimeoutLayer::new(quiet));
    }
    serve_connections(listener, app, &config, &shared, tls).await;
    tracing::info!("stopped");
    Ok(())
}

/// The accept loop, in place of `axum::serve`, which sets no timer and so no
/// header-read timeout: a client could hold a connection (and a descriptor)
/// open forever by never finishing a request head, or by idling between
/// requests (hyper's header timer also runs while a kept-alive connection
/// waits for its next request). Each connection is admitted against the
/// per-address and total limits and watched by `GuardedIo` until its first
/// request and whenever a response waits on the client. Ends on SIGTERM or
/// Ctrl-C, once every connection has finished its request in flight.
async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    config: &Config,
    shared: &App,
    tls: Option<Arc<tls::Tls>>,
) {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.client_timeout);
    // A kept-alive HTTP/2 connection has no request-head timer: pings find a
    // peer that is gone or no longer answers.
    http.http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(config.client_timeout.map(|t| t / 2))
        .keep_alive_timeout(config.client_timeout.unwrap_or(Duration::from_secs(20)));
    let metrics = shared.metrics.connections.clone();
    let admission = connections::Admission::new(
        config.connections.per_address,
        config.connections.total,
        metrics.clone(),
    );
    let connections = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown_signal());
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    wait_after_accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let admitted = match admission.admit(peer.ip()) {
            Ok(admitted) => admitted,
            Err(limit) => {
                // Closed at once: a client over its share gets a reset, not a
                // place in a queue it could fill.
                tracing::debug!(%peer, limit, "connection refused: limit reached");
                continue;
            }
        };
        tune_connection(&tcp);
        let first_request = connections::FirstRequest::default();
        let seen = first_request.clone();
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                seen.arrived();
                req.extensions_mut().insert(ClientAddr(peer));
                req
            },
        ));
        let io = connections::GuardedIo::new(
            tcp,
            admitted,
            first_request,
            config.client_timeout,
            metrics.clone(),
        );
        match &tls {
            None => {
                let connection = http
                    .serve_connection(TokioIo::new(io), service)
                    .into_owned();
                let connection = connections.watch(connection);
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
            Some(tls) => {
                // The handshake runs under the connection's first-request
                // deadline: a client that never finishes one is closed with it.
                let accept = tls.acceptor().accept(io);
                let http = http.clone();
                let watcher = connections.watcher();
                tokio::spawn(async move {
                    let stream = match accept.await {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::debug!(%peer, error = %e, "TLS handshake failed");
                            return;
                        }
                    };
                    let connection = http
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    if let Err(e) = watcher.watch(connection).await {
                        tracing::debug!(error = %e, "connection ended with an error");
                    }
                });
            }
        }
    }
    drop(listener);
    shared.stopping.send_replace(true);
    connections.shutdown().await;
}

/// Small responses go out at once; a peer that vanished mid-request (host gone,
/// cable pulled) is found by keep-alive probes within about two minutes,
/// instead of holding its connection and upload open for the kernel's two hours.
fn tune_connection(tcp: &tokio::net::TcpStream) {
    let _ = tcp.set_nodelay(true);
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(15))
        .with_retries(4);
    if let Err(e) = socket2::SockRef::from(tcp).set_tcp_keepalive(&keepalive) {
        tracing::debug!(error = %e, "could not enable TCP keep-alive");
    }
}

/// A failed `accept` either concerns one connection (the peer gave up: go on at
/// once) or the process (out of descriptors or memory: wait a moment so the
/// loop does not spin, as Go's and axum's servers do).
async fn wait_after_accept_error(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accepting a connection failed; retrying in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
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

/// Scrubs the store every `every`, reading at most `rate` bytes a second (a
/// scrub asked for over the API meanwhile makes this one wait for the next turn).
async fn scrub_now_and_then(app: Arc<App>, every: Duration, rate: u64) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Ok(turn) = app.registry.scrub_turn() else {
            continue;
        };
        let opts = crate::registry::ScrubOptions {
            max_bytes_per_sec: Some(rate),
            ..Default::default()
        };
        if let Err(e) = app.registry.scrub(&turn, &opts).await {
            tracing::warn!(error = %e, "online scrub failed");
        }
    }
}

/// Collects garbage every `every`, as configured.
async fn collect_now_and_then(app: Arc<App>, every: Duration) {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let opts = crate::registry::GcOptions {
        apply: true,
        ..app.registry.gc_defaults().clone()
    };
    loop {
        tick.tick().await;
        if let Err(e) = app.registry.gc(&opts).await {
            tracing::warn!(error = %e, "online garbage collection failed");
        }
    }
}

/// Walks the metadata and the store for the storage figures `/metrics` shows:
/// at start, then every 15 minutes.
async fn account_storage(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(15 * 60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Err(e) = app.registry.storage_report().await {
            tracing::warn!(error = %e, "could not account for storage");
        }
    }
}

/// Attestations a crash left pending are signed and stored at start.
async fn finish_attestations(app: Arc<App>) {
    match app.registry.complete_attestations().await {
        Ok(0) => {}
        Ok(n) => tracing::info!(attested = n, "stored pending attestations"),
        Err(e) => tracing::warn!(error = %e, "could not store pending attestations"),
    }
}

/// SIGHUP reads the policy and auth files again; a bad one is refused and
/// logged, and the one in force stays.
async fn reload_on_hangup(app: Arc<App>, tls: Option<Arc<tls::Tls>>) {
    #[cfg(unix)]
    {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match app.registry.reload_policy().await {
                Ok(true) => tracing::info!("policy reloaded"),
                Ok(false) => tracing::info!("policy unchanged"),
                Err(e) => {
                    tracing::error!(error = %e, "policy not reloaded; the one in force stays")
                }
            }
            if let Some(tls) = &tls {
                match tls.reload() {
                    Ok(()) => tracing::info!("TLS certificate reloaded"),
                    Err(e) => tracing::error!(
                        error = format!("{e:#}"),
                        "TLS certificate not reloaded; the one in force stays"
                    ),
                }
            }
            match app.auth.reload() {
                Ok(true) => tracing::info!("auth file reloaded"),
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "auth file not reloaded; the one in force stays")
                }
            }
        }
    }
    #[cfg(not(unix))]
    let _ = (app, tls);
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
