//! A client for OCI registries (and Berth's API), used by the `berth` CLI.

pub mod auth;
pub mod credentials;
pub mod download;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod source;
pub mod state;
pub mod transfer;
pub mod upload;

/// The HTTP client of every `berth` client command: Berth's user agent, the
/// actor header, and timeouts so that a registry that stops answering fails
/// the command instead of hanging it.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    use anyhow::Context as _;
    reqwest::Client::builder()
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .default_headers(actor_headers())
        .connect_timeout(std::time::Duration::from_secs(30))
        // A registry that stops sending mid-body fails the transfer instead of hanging it.
        .read_timeout(std::time::Duration::from_secs(300))
        .build()
        .context("building the HTTP client")
}

/// The `Berth-Actor` header a client sends to name who acts: `$BERTH_ACTOR`,
/// else the login name. Claimed, not proven, until the registry authenticates.
pub fn actor_headers() -> reqwest::header::HeaderMap {
    let mut h = reqwest::header::HeaderMap::new();
    let name = ["BERTH_ACTOR", "USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|n| crate::http::actor::valid_actor_name(n));
    if let Some(v) = name.and_then(|n| reqwest::header::HeaderValue::from_str(&n).ok()) {
        h.insert(crate::http::actor::ACTOR_HEADER, v);
    }
    h
}
