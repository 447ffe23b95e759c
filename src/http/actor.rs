//! Who is asking: the actor a change is recorded under. Until authentication
//! exists, that is the client's address and the name it gives in `Berth-Actor`
//! (recorded as claimed, not proven), or `anonymous`.

use std::net::SocketAddr;

use axum::http::{HeaderMap, Method};

use crate::store::Actor;

/// The peer of a connection, put on each request by the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub SocketAddr);

/// The header a client names itself in.
pub const ACTOR_HEADER: &str = "berth-actor";
const MAX_NAME: usize = 128;
pub const ANONYMOUS: &str = "anonymous";

/// Whether `name` can name an actor: 1 to 128 of letters, digits and `._@+-`,
/// and not the registry's own name.
pub fn valid_actor_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name != Actor::REGISTRY
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'@' | b'+' | b'-'))
}

/// The actor of a request; an error message if a change names itself
/// invalidly. A read records nothing, so a bad name there does not fail it.
pub fn actor_of(
    method: &Method,
    headers: &HeaderMap,
    peer: Option<&ClientAddr>,
) -> Result<Actor, String> {
    let actor = claimed(headers, peer);
    if actor.is_err() && (method == Method::GET || method == Method::HEAD) {
        return Ok(Actor {
            name: ANONYMOUS.to_string(),
            address: peer.map(|p| p.0.ip().to_string()),
            authenticated: false,
        });
    }
    actor
}

fn claimed(headers: &HeaderMap, peer: Option<&ClientAddr>) -> Result<Actor, String> {
    let name = match headers.get(ACTOR_HEADER) {
        None => ANONYMOUS.to_string(),
        Some(v) => match v.to_str() {
            Ok(n) if valid_actor_name(n.trim()) => n.trim().to_string(),
            _ => {
                return Err(format!(
                    "{ACTOR_HEADER} must be 1 to {MAX_NAME} letters, digits or ._@+- (and not {:?})",
                    Actor::REGISTRY
                ));
            }
        },
    };
    Ok(Actor {
        name,
        address: peer.map(|p| p.0.ip().to_string()),
        authenticated: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_name_fails_a_change_but_not_a_read() {
        let mut h = HeaderMap::new();
        h.insert(ACTOR_HEADER, "bad name!".parse().unwrap());
        assert!(actor_of(&Method::PUT, &h, None).is_err());
        assert_eq!(actor_of(&Method::GET, &h, None).unwrap().name, ANONYMOUS);
        h.insert(ACTOR_HEADER, "berth".parse().unwrap());
        assert!(
            actor_of(&Method::POST, &h, None).is_err(),
            "the registry's own name"
        );
        h.insert(ACTOR_HEADER, "alice@example.com".parse().unwrap());
        assert_eq!(
            actor_of(&Method::DELETE, &h, None).unwrap().name,
            "alice@example.com"
        );
    }
}
