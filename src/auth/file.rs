//! The auth file (`berth serve --auth FILE`, TOML): users with argon2id
//! password hashes and groups, the grants that say who may do what, token
//! settings and who may read `/metrics`. Read at start and on SIGHUP; users are
//! written by `berth user`, which keeps the rest of the file as it was.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::password;
use crate::governance::policy::RepoGlob;
use crate::http::access::{Action, Rule, Subject};
use crate::http::actor::valid_actor_name;

/// The prefix of a robot account's login name (`robot+ci`).
pub const ROBOT_PREFIX: &str = "robot+";

/// Longest token lifetime a file may set.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum AuthFileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    users: BTreeMap<String, RawUser>,
    #[serde(default)]
    grant: Vec<RawGrant>,
    #[serde(default)]
    token: RawToken,
    #[serde(default)]
    metrics: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    password: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrant {
    to: Vec<String>,
    #[serde(default)]
    repos: Option<RepoGlob>,
    #[serde(default)]
    registry: bool,
    actions: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    service: Option<String>,
    realm: Option<String>,
    lifetime_secs: Option<u64>,
    secret_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct User {
    /// argon2id PHC string.
    pub hash: String,
    pub groups: Vec<String>,
}

/// Who may read `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsAccess {
    Anyone,
    Authenticated,
    Admin,
}

#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// The `service` of challenges and the audience of tokens.
    pub service: String,
    /// The token endpoint clients are sent to; `None`: this registry's own
    /// `/v2/token`, at the host the client asked.
    pub realm: Option<String>,
    pub lifetime: Duration,
    /// The HMAC key of tokens; `None`: `DATA_DIR/token-secret`, made at first start.
    pub secret_file: Option<PathBuf>,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            service: "berth".into(),
            realm: None,
            lifetime: Duration::from_secs(300),
            secret_file: None,
        }
    }
}

/// An auth file, checked.
#[derive(Debug, Clone)]
pub struct AuthFile {
    pub users: HashMap<String, User>,
    pub rules: Vec<Rule>,
    pub token: TokenSettings,
    pub metrics: MetricsAccess,
}

pub fn valid_group(g: &str) -> bool {
    !g.is_empty()
        && g.len() <= 128
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether `name` can name a user: an actor name that is not a robot's.
pub fn valid_user_name(name: &str) -> bool {
    valid_actor_name(name) && !name.starts_with(ROBOT_PREFIX)
}

impl AuthFile {
    pub fn read(path: &Path) -> Result<AuthFile, AuthFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AuthFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        AuthFile::parse(&text).map_err(|message| AuthFileError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses and checks a file's text; the error names the line (TOML) or the
    /// user or grant (meaning).
    pub fn parse(text: &str) -> Result<AuthFile, String> {
        let raw: RawFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut users = HashMap::new();
        for (name, u) in raw.users {
            if !valid_user_name(&name) {
                return Err(format!(
                    "user {name:?}: a user name is 1 to 128 letters, digits or ._@+-, not starting with {ROBOT_PREFIX:?}"
                ));
            }
            if !password::is_argon2id(&u.password) {
                return Err(format!(
                    "user {name:?}: password must be an argon2id hash (write it with `berth user add`)"
                ));
            }
            if let Some(g) = u.groups.iter().find(|g| !valid_group(g)) {
                return Err(format!("user {name:?}: invalid group name {g:?}"));
            }
            users.insert(
                name,
                User {
                    hash: u.password,
                    groups: u.groups,
                },
            );
        }
        let mut rules = Vec::new();
        for (i, g) in raw.grant.into_iter().enumerate() {
            rules.push(
                check_grant(g)
                    .map_err(|e| format!("grant {} ([[grant]] number {}): {e}", i + 1, i + 1))?,
            );
        }
        let defaults = TokenSettings::default();
        let lifetime = raw
            .token
            .lifetime_secs
            .map_or(defaults.lifetime, Duration::from_secs);
        if lifetime.is_zero() || lifetime > MAX_TOKEN_LIFETIME {
            return Err("token.lifetime_secs must be 1 to 86400".into());
        }
        if let Some(realm) = &raw.token.realm
            && !(realm.starts_with("https://") || realm.starts_with("http://"))
        {
            return Err(format!("token.realm {realm:?} must be an http(s) URL"));
        }
        let service = raw.token.service.unwrap_or(defaults.service);
        if service.is_empty() || service.contains(['"', '\\']) || !service.is_ascii() {
            return Err(format!(
                "token.service {service:?} is not a valid service name"
            ));
        }
        let metrics = match raw.metrics.as_deref() {
            None | Some("authenticated") => MetricsAccess::Authenticated,
            Some("anyone") => MetricsAccess::Anyone,
            Some("admin") => MetricsAccess::Admin,
            Some(other) => {
                return Err(format!(
                    "metrics = {other:?}: expected \"anyone\", \"authenticated\" or \"admin\""
                ));
            }
        };
        Ok(AuthFile {
            users,
            rules,
            token: TokenSettings {
                service,
                realm: raw.token.realm,
                lifetime,
                secret_file: raw.token.secret_file,
            },
            metrics,
        })
    }
}

fn check_grant(g: RawGrant) -> Result<Rule, String> {
    if g.to.is_empty() {
        return Err("`to` names no one".into());
    }
    let subjects = g
        .to
        .iter()
        .map(|s| {
            Subject::parse(s).ok_or_else(|| {
                format!("`to` entry {s:?}: expected anonymous, authenticated, user:NAME, robot:NAME or group:NAME")
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut actions = Vec::new();
    for a in &g.actions {
        if a == "*" {
            actions.extend([
                Action::Pull,
                Action::Push,
                Action::Delete,
                Action::Promote(None),
                Action::Approve,
            ]);
            continue;
        }
        actions.push(Action::parse(a).ok_or_else(|| {
            format!("action {a:?}: expected pull, push, delete, promote, promote/ALIAS, approve, admin or *")
        })?);
    }
    if actions.is_empty() {
        return Err("`actions` is empty".into());
    }
    let repos = match (g.repos, g.registry) {
        (Some(repos), false) => {
            if actions.contains(&Action::Admin) {
                return Err(
                    "admin is an action on the registry (`registry = true`), not on repositories"
                        .into(),
                );
            }
            Some(repos)
        }
        (None, true) => {
            if actions.iter().any(|a| *a != Action::Admin) {
                return Err("on the registry (`registry = true`) the one action is admin".into());
            }
            None
        }
        _ => return Err("a grant names either `repos = \"GLOB\"` or `registry = true`".into()),
    };
    if subjects.contains(&Subject::Anyone) && actions.iter().any(|a| *a != Action::Pull) {
        return Err("anonymous access is pull only".into());
    }
    Ok(Rule {
        subjects,
        repos,
        actions,
    })
}

/// Writes `user`'s password hash (and groups, when given) into the auth file
/// at `path`, creating it, and keeping every other line, comment and entry.
pub fn set_user(
    path: &Path,
    user: &str,
    hash: &str,
    groups: Option<&[String]>,
) -> Result<(), AuthFileError> {
    edit(path, |doc| {
        let users = doc
            .entry("users")
            .or_insert_with(|| {
                let mut t = toml_edit::Table::new();
                t.set_implicit(true);
                toml_edit::Item::Table(t)
            })
            .as_table_mut()
            .ok_or("`users` is not a table")?;
        let entry = users
            .entry(user)
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("users.{user} is not a table"))?;
        entry["password"] = toml_edit::value(hash);
        if let Some(groups) = groups {
            let mut a = toml_edit::Array::new();
            for g in groups {
                a.push(g.as_str());
            }
            entry["groups"] = toml_edit::value(a);
        }
        Ok(())
    })
}

/// Removes `user` from the auth file; false if it was not there.
pub fn remove_user(path: &Path, user: &str) -> Result<bool, AuthFileError> {
    let mut removed = false;
    edit(path, |doc| {
        if let Some(users) = doc.get_mut("users").and_then(|u| u.as_table_mut()) {
            removed = users.remove(user).is_some();
        }
        Ok(())
    })?;
    Ok(removed)
}

/// Reads, edits and atomically replaces the file (owner-only: it holds hashes),
/// refusing to write anything the server would not load.
fn edit(
    path: &Path,
    f: impl FnOnce(&mut toml_edit::DocumentMut) -> Result<(), String>,
) -> Result<(), AuthFileError> {
    let shown = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => {
            return Err(AuthFileError::Read {
                path: shown,
                source,
            });
        }
    };
    let invalid = |message: String| AuthFileError::Invalid {
        path: shown.clone(),
        message,
    };
    let mut doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| invalid(e.to_string()))?;
    f(&mut doc).map_err(invalid)?;
    let out = doc.to_string();
    AuthFile::parse(&out).map_err(invalid)?;
    write_private(path, out.as_bytes()).map_err(|source| AuthFileError::Write {
        path: shown.clone(),
        source,
    })
}

/// Writes `bytes` to `path` through a temporary file in the same directory,
/// mode 0600, synced, then renamed over it.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash() -> String {
        password::hash("secret-password").unwrap()
    }

    #[test]
    fn a_file_parses_into_users_and_rules() {
        let text = format!(
            r#"
metrics = "admin"
[users.alice]
password = "{h}"
groups = ["ml"]

[[grant]]
to = ["group:ml", "robot:ci"]
repos = "team/**"
actions = ["pull", "push", "promote/staging"]

[[grant]]
to = ["anonymous"]
repos = "public/**"
actions = ["pull"]

[[grant]]
to = ["user:alice"]
registry = true
actions = ["admin"]

[token]
lifetime_secs = 60
"#,
            h = hash()
        );
        let f = AuthFile::parse(&text).unwrap();
        assert_eq!(f.users["alice"].groups, ["ml"]);
        assert_eq!(f.rules.len(), 3);
        assert_eq!(f.token.lifetime, Duration::from_secs(60));
        assert_eq!(f.metrics, MetricsAccess::Admin);
    }

    #[test]
    fn a_bad_file_says_what_is_wrong() {
        let h = hash();
        let cases = [
            (
                "[users.bob]\npassword = \"plain\"\n".to_string(),
                "argon2id",
            ),
            (
                format!("[users.\"robot+x\"]\npassword = \"{h}\"\n"),
                "robot+",
            ),
            (
                "[[grant]]\nto = [\"anonymous\"]\nrepos = \"**\"\nactions = [\"push\"]\n".into(),
                "pull only",
            ),
            (
                "[[grant]]\nto = [\"anonymous\"]\nrepos = \"**\"\nactions = [\"*\"]\n".into(),
                "pull only",
            ),
            (
                "[[grant]]\nto = [\"someone\"]\nrepos = \"**\"\nactions = [\"pull\"]\n".into(),
                "`to` entry",
            ),
            (
                "[[grant]]\nto = [\"user:a\"]\nrepos = \"**\"\nactions = [\"fly\"]\n".into(),
                "action \"fly\"",
            ),
            (
                "[[grant]]\nto = [\"user:a\"]\nactions = [\"pull\"]\n".into(),
                "either",
            ),
            (
                "[[grant]]\nto = [\"user:a\"]\nregistry = true\nactions = [\"pull\"]\n".into(),
                "admin",
            ),
            (
                "[[grant]]\nto = [\"user:a\"]\nrepos = \"**\"\nactions = [\"admin\"]\n".into(),
                "registry",
            ),
            ("[token]\nlifetime_secs = 0\n".into(), "lifetime"),
            ("metrics = \"everyone\"\n".into(), "metrics"),
            ("[users]\nx = 1\n[grant\n".into(), "line"),
            ("unknown = 1\n".into(), "unknown"),
        ];
        for (text, says) in cases {
            let e = AuthFile::parse(&text).unwrap_err();
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }

    #[test]
    fn users_are_written_keeping_the_rest_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth.toml");
        std::fs::write(
            &path,
            "# operators' notes\n[[grant]]\nto = [\"group:ml\"] # the team\nrepos = \"team/**\"\nactions = [\"pull\"]\n",
        )
        .unwrap();
        let h = hash();
        set_user(&path, "alice", &h, Some(&["ml".to_string()])).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("# operators' notes") && text.contains("# the team"),
            "{text}"
        );
        let f = AuthFile::parse(&text).unwrap();
        assert_eq!(f.users["alice"].groups, ["ml"]);
        assert_eq!(f.rules.len(), 1);
        // A new password keeps the groups.
        let h2 = password::hash("another-password").unwrap();
        set_user(&path, "alice", &h2, None).unwrap();
        let f = AuthFile::read(&path).unwrap();
        assert!(password::verify("another-password", &f.users["alice"].hash));
        assert_eq!(f.users["alice"].groups, ["ml"]);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(remove_user(&path, "alice").unwrap());
        assert!(!remove_user(&path, "alice").unwrap());
        // Nothing the server would refuse is written.
        assert!(set_user(&path, "robot+x", &h, None).is_err());
        assert!(AuthFile::read(&path).unwrap().users.is_empty());
    }
}
