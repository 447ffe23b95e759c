//! A client for OCI registries (and Berth's API), used by the `berth` CLI.

pub mod download;
pub mod pull;
pub mod reference;
pub mod registry;
pub mod source;
pub mod state;
pub mod transfer;
pub mod upload;

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
