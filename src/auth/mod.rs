//! Who is asking: users from the auth file, robot accounts, registry tokens,
//! and anonymous callers; turned into the `Principal` the access rules judge.
//! Nothing here knows HTTP beyond the `Authorization` header's value.

mod backoff;
pub mod file;
pub mod password;
pub mod token;

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::http::access::{Access, Denial, Principal, PrincipalKind, Rule};
use crate::store::{Actor, Robot};
pub use file::{AuthFile, MetricsAccess, ROBOT_PREFIX, TokenSettings};
use token::{AccessEntry, TokenKeys};

/// The prefix of robot tokens, so that one is told from a registry token.
pub const ROBOT_TOKEN_PREFIX: &str = "berth_";
/// How long a checked password is remembered, so that Basic auth on every
/// request does not cost an argon2 hash each.
const VERIFIED_FOR: Duration = Duration::from_secs(300);
const MAX_VERIFIED: usize = 10_000;
/// Registry tokens remembered once checked, so that a request with a token
/// seen before costs a map lookup instead of a JWT decode and an HMAC.
const MAX_CHECKED_TOKENS: usize = 10_000;
/// Password hashes computed at once (each takes 19 MiB and a core for ~30 ms).
const HASHING_AT_ONCE: usize = 4;

/// The rules and identities in force; replaced whole on reload.
pub struct AuthState {
    pub access: Access,
    pub users: HashMap<String, file::User>,
    pub settings: TokenSettings,
    pub metrics: MetricsAccess,
    pub keys: TokenKeys,
}

#[derive(Default)]
struct Robots {
    by_name: HashMap<String, Robot>,
    by_token: HashMap<String, String>,
}

/// A new robot's token: 256 random bits, shown once.
pub fn new_robot_token() -> Result<String, String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    Ok(format!(
        "{ROBOT_TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

/// Whether `name` can name a robot: 1 to 64 of `a-z0-9._-`.
pub fn valid_robot_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

pub fn token_sha256(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What a checked registry token says.
struct CheckedToken {
    kind: String,
    sub: String,
    scopes: Arc<[crate::http::access::Scope]>,
    /// Seconds since the epoch.
    exp: u64,
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The registry's authentication: the auth file (if any), the token key, robot
/// accounts, and the memory of failed logins.
pub struct Auth {
    state: RwLock<Arc<AuthState>>,
    path: Option<PathBuf>,
    secret: Vec<u8>,
    robots: RwLock<Robots>,
    backoff: backoff::Backoff,
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    checked_tokens: Mutex<HashMap<String, Arc<CheckedToken>>>,
    hashing: tokio::sync::Semaphore,
    /// `https` when the server speaks TLS: the scheme of the token realm.
    pub scheme: &'static str,
}

fn state_of(file: Option<AuthFile>, secret: &[u8]) -> Result<AuthState, String> {
    let (access, users, settings, metrics) = match file {
        Some(f) => (Access::Rules(f.rules), f.users, f.token, f.metrics),
        None => (
            Access::Open,
            HashMap::new(),
            TokenSettings::default(),
            MetricsAccess::Anyone,
        ),
    };
    let keys =
        TokenKeys::new(secret, &settings.service, settings.lifetime).map_err(|e| e.to_string())?;
    Ok(AuthState {
        access,
        users,
        settings,
        metrics,
        keys,
    })
}

/// The token key in `path`, or a new one written there (owner-only).
pub fn load_secret(path: &Path) -> Result<Vec<u8>, String> {
    match std::fs::read(path) {
        Ok(bytes) if bytes.len() >= 32 => return Ok(bytes),
        Ok(_) => {
            return Err(format!(
                "{}: a token secret is at least 32 bytes",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    }
    let mut bytes = vec![0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| format!("no randomness: {e}"))?;
    file::write_private(path, &bytes).map_err(|e| format!("writing {}: {e}", path.display()))?;
    Ok(bytes)
}

impl Auth {
    /// Open access (no auth file): anyone may do anything; tokens are still
    /// issued to whoever asks, signed with `secret`.
    pub fn open(secret: Vec<u8>) -> Result<Auth, String> {
        let state = state_of(None, &secret)?;
        Ok(Auth::with_state(state, None, secret))
    }

    /// Open access with a key that lives as long as the process.
    pub fn open_ephemeral() -> Auth {
        let mut secret = vec![0u8; 32];
        // Without randomness the key is fixed; open access grants all anyway.
        let _ = getrandom::fill(&mut secret);
        Auth::with_rules(Vec::new()).opened_with(secret)
    }

    fn opened_with(mut self, secret: Vec<u8>) -> Auth {
        if let Ok(state) = state_of(None, &secret) {
            self.state = RwLock::new(Arc::new(state));
            self.secret = secret;
        }
        self
    }

    /// The auth file at `path`, with `secret` as the token key.
    pub fn from_file(path: &Path, secret: Vec<u8>) -> Result<Auth, String> {
        let file = AuthFile::read(path).map_err(|e| e.to_string())?;
        let state = state_of(Some(file), &secret)?;
        Ok(Auth::with_state(state, Some(path.to_path_buf()), secret))
    }

    /// Rules without users (tests of the dispatcher).
    pub fn with_rules(rules: Vec<Rule>) -> Auth {
        let secret = vec![7u8; 32];
        let mut state = match state_of(None, &secret) {
            Ok(s) => s,
            Err(e) => unreachable!("a fixed key is valid: {e}"),
        };
        state.access = Access::Rules(rules);
        Auth::with_state(state, None, secret)
    }

    fn with_state(state: AuthState, path: Option<PathBuf>, secret: Vec<u8>) -> Auth {
        Auth {
            state: RwLock::new(Arc::new(state)),
            path,
            secret,
            robots: RwLock::new(Robots::default()),
            backoff: backoff::Backoff::default(),
            verified: Mutex::new(HashMap::new()),
            checked_tokens: Mutex::new(HashMap::new()),
            hashing: tokio::sync::Semaphore::new(HASHING_AT_ONCE),
            scheme: "http",
        }
    }

    pub fn with_scheme(mut self, scheme: &'static str) -> Auth {
        self.scheme = scheme;
        self
    }

    /// The rules in force for one request.
    pub fn current(&self) -> Arc<AuthState> {
        match self.state.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Reads the auth file again (SIGHUP); a bad file is refused and the rules
    /// in force stay. `Ok(false)`: there is no auth file.
    pub fn reload(&self) -> Result<bool, String> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        let file = AuthFile::read(path).map_err(|e| e.to_string())?;
        let state = Arc::new(state_of(Some(file), &self.secret)?);
        match self.state.write() {
            Ok(mut s) => *s = state,
            Err(poisoned) => *poisoned.into_inner() = state,
        }
        if let Ok(mut v) = self.verified.lock() {
            v.clear();
        }
        if let Ok(mut t) = self.checked_tokens.lock() {
            t.clear();
        }
        Ok(true)
    }

    /// Replaces the robot accounts known (after a change, and at start).
    pub fn set_robots(&self, robots: Vec<Robot>) {
        let mut r = Robots::default();
        for robot in robots {
            r.by_token
                .insert(robot.token_sha256.clone(), robot.name.clone());
            r.by_name.insert(robot.name.clone(), robot);
        }
        match self.robots.write() {
            Ok(mut s) => *s = r,
            Err(poisoned) => *poisoned.into_inner() = r,
        }
    }

    fn live_robot(&self, name: &str) -> Option<Robot> {
        let robots = self.robots.read().ok()?;
        let robot = robots.by_name.get(name)?;
        robot
            .active_at(jiff::Timestamp::now().as_millisecond())
            .then(|| robot.clone())
    }

    fn robot_by_token(&self, token: &str) -> Option<Robot> {
        let hash = token_sha256(token);
        let name = self.robots.read().ok()?.by_token.get(&hash)?.clone();
        self.live_robot(&name)
    }

    /// Who an `Authorization` header proves: `None` when the request proves
    /// nothing (no header, or open access, where none is checked).
    pub async fn authenticate(
        &self,
        state: &AuthState,
        authorization: Option<&str>,
        address: Option<String>,
    ) -> Result<Option<Principal>, Denial> {
        let Some(value) = authorization else {
            return Ok(None);
        };
        if state.access.is_open() {
            return Ok(None);
        }
        let (scheme, rest) = value.trim().split_once(' ').unwrap_or((value.trim(), ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = decode_basic(rest)
                .ok_or_else(|| Denial::BadCredentials("malformed Basic credentials".into()))?;
            return self
                .login(state, &user, &password, address.as_deref())
                .await
                .map(Some);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(Denial::BadCredentials(format!(
                "unsupported authorization scheme {:?}: use Basic or Bearer",
                scheme.chars().take(32).collect::<String>()
            )));
        }
        if rest.starts_with(ROBOT_TOKEN_PREFIX) {
            let robot = self.robot_by_token(rest).ok_or_else(|| {
                Denial::BadCredentials("unknown, expired or revoked robot token".into())
            })?;
            return Ok(Some(robot_principal(robot, address)));
        }
        let claims = self.check_token(state, rest)?;
        let mut principal = match claims.kind.as_str() {
            "anonymous" => Principal::anonymous(Actor {
                name: crate::http::actor::ANONYMOUS.to_string(),
                address,
                authenticated: false,
            }),
            "user" => {
                let user = state.users.get(&claims.sub).ok_or_else(|| {
                    Denial::BadCredentials(format!("user {:?} no longer exists", claims.sub))
                })?;
                user_principal(&claims.sub, user, address)
            }
            "robot" => {
                let robot = self.live_robot(&claims.sub).ok_or_else(|| {
                    Denial::BadCredentials(format!("robot {:?} is expired or revoked", claims.sub))
                })?;
                robot_principal(robot, address)
            }
            _ => return Err(Denial::BadCredentials("unknown token kind".into())),
        };
        principal.token = Some(claims.scopes.clone());
        Ok(Some(principal))
    }

    /// A registry token's claims: from the memory of tokens checked before
    /// (while unexpired), or checked now and remembered.
    fn check_token(&self, state: &AuthState, token: &str) -> Result<Arc<CheckedToken>, Denial> {
        let now = now_secs();
        if let Ok(t) = self.checked_tokens.lock()
            && let Some(c) = t.get(token)
        {
            if now < c.exp {
                return Ok(c.clone());
            }
            return Err(Denial::Expired);
        }
        let claims = state.keys.check(token).map_err(|e| match e {
            token::TokenError::Expired => Denial::Expired,
            e => Denial::BadCredentials(e.to_string()),
        })?;
        let checked = Arc::new(CheckedToken {
            scopes: token::granted_scopes(&claims.access).into(),
            kind: claims.kind,
            sub: claims.sub,
            exp: claims.exp,
        });
        if let Ok(mut t) = self.checked_tokens.lock() {
            if t.len() >= MAX_CHECKED_TOKENS {
                t.retain(|_, c| now < c.exp);
                if t.len() >= MAX_CHECKED_TOKENS {
                    t.clear();
                }
            }
            t.insert(token.to_string(), checked.clone());
        }
        Ok(checked)
    }

    /// Checks a user name and password (or a robot name and its token),
    /// backing off repeated failures from one address.
    pub async fn login(
        &self,
        state: &AuthState,
        user: &str,
        password: &str,
        address: Option<&str>,
    ) -> Result<Principal, Denial> {
        let ip: Option<IpAddr> = address.and_then(|a| a.parse().ok());
        if let Some(ip) = ip
            && let Err(retry_after_secs) = self.backoff.check(ip, user)
        {
            return Err(Denial::TooManyAttempts { retry_after_secs });
        }
        let address = address.map(str::to_string);
        let proven = if let Some(name) = user.strip_prefix(ROBOT_PREFIX) {
            self.live_robot(name)
                .filter(|r| {
                    bool::from(
                        token_sha256(password)
                            .as_bytes()
                            .ct_eq(r.token_sha256.as_bytes()),
                    )
                })
                .map(|r| robot_principal(r, address))
        } else {
            match state.users.get(user) {
                Some(u) if self.password_matches(user, password, &u.hash).await => {
                    Some(user_principal(user, u, address))
                }
                _ => None,
            }
        };
        match (proven, ip) {
            (Some(p), ip) => {
                if let Some(ip) = ip {
                    self.backoff.succeeded(ip, user);
                }
                Ok(p)
            }
            (None, ip) => {
                if let Some(ip) = ip {
                    self.backoff.failed(ip, user);
                }
                Err(Denial::BadCredentials(format!(
                    "wrong user name or password for {user:?}"
                )))
            }
        }
    }

    async fn password_matches(&self, user: &str, password: &str, hash: &str) -> bool {
        let key: [u8; 32] = {
            let mut h = Sha256::new();
            for part in [user, password, hash] {
                h.update(part.as_bytes());
                h.update([0]);
            }
            h.finalize().into()
        };
        let now = Instant::now();
        if let Ok(v) = self.verified.lock()
            && v.get(&key).is_some_and(|until| now < *until)
        {
            return true;
        }
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let (password, hash) = (password.to_string(), hash.to_string());
        let ok = tokio::task::spawn_blocking(move || password::verify(&password, &hash))
            .await
            .unwrap_or(false);
        if ok && let Ok(mut v) = self.verified.lock() {
            if v.len() >= MAX_VERIFIED {
                v.retain(|_, until| now < *until);
                if v.len() >= MAX_VERIFIED {
                    v.clear();
                }
            }
            v.insert(key, now + VERIFIED_FOR);
        }
        ok
    }

    /// A token for `who` granting, of each requested scope, what `who` may have.
    pub fn issue_token(
        &self,
        state: &AuthState,
        who: &Principal,
        requested: &[token::Requested],
    ) -> Result<(String, token::Claims), String> {
        let mut access: Vec<AccessEntry> = Vec::new();
        for r in requested {
            if r.catalog {
                access.push(AccessEntry {
                    kind: "registry".into(),
                    name: "catalog".into(),
                    actions: vec!["*".into()],
                });
                continue;
            }
            let allowed = state.access.allowed(who, r.repo.as_ref(), &r.actions);
            let (kind, name) = match &r.repo {
                Some(repo) => ("repository", repo.as_str().to_string()),
                None => (
                    "registry",
                    crate::http::access::REGISTRY_SCOPE_NAME.to_string(),
                ),
            };
            let mut actions: Vec<String> = allowed.iter().map(|a| a.to_string()).collect();
            actions.dedup();
            if let Some(e) = access.iter_mut().find(|e| e.kind == kind && e.name == name) {
                for a in actions {
                    if !e.actions.contains(&a) {
                        e.actions.push(a);
                    }
                }
            } else {
                access.push(AccessEntry {
                    kind: kind.into(),
                    name,
                    actions,
                });
            }
        }
        let kind = match who.kind {
            PrincipalKind::Anonymous => "anonymous",
            PrincipalKind::User => "user",
            PrincipalKind::Robot => "robot",
        };
        state
            .keys
            .issue(&who.id, kind, access)
            .map_err(|e| e.to_string())
    }
}

fn user_principal(name: &str, user: &file::User, address: Option<String>) -> Principal {
    Principal {
        actor: Actor {
            name: name.to_string(),
            address,
            authenticated: true,
        },
        kind: PrincipalKind::User,
        id: name.to_string(),
        groups: user.groups.clone(),
        token: None,
    }
}

fn robot_principal(robot: Robot, address: Option<String>) -> Principal {
    Principal {
        actor: Actor {
            name: format!("{ROBOT_PREFIX}{}", robot.name),
            address,
            authenticated: true,
        },
        kind: PrincipalKind::Robot,
        id: robot.name,
        groups: robot.groups,
        token: None,
    }
}

/// `user:password` from the base64 of Basic credentials.
fn decode_basic(b64: &str) -> Option<(String, String)> {
    if b64.len() > 4096 {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests;
