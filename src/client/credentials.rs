//! Registry credentials where docker, podman and oras keep them: the docker
//! `config.json` format (`auths` entries with base64 `user:password`, identity
//! tokens, `credHelpers` and `credsStore`), found through `REGISTRY_AUTH_FILE`,
//! `DOCKER_CONFIG`, `~/.docker/config.json` and podman's `auth.json` files.

mod helper;

use std::ffi::OsString;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use serde_json::{Map, Value, json};

use helper::Helper;

/// Largest config file read (they are a few KiB; refuse to slurp a mistake).
const MAX_FILE: u64 = 4 << 20;

/// What proves who the client is.
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Password(String),
    /// An OAuth2 refresh token (docker's `identitytoken`), traded at the token
    /// realm for access tokens.
    IdentityToken(String),
}

/// Credentials for one registry, and where they were found (for messages).
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub username: String,
    pub secret: Secret,
    pub source: String,
}

// Never print a secret, not even in a debug log.
impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Secret::Password(_) => "Password(..)",
            Secret::IdentityToken(_) => "IdentityToken(..)",
        })
    }
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credential")
            .field("username", &self.username)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Where credential files are, from the environment (or given, in tests).
#[derive(Debug, Clone, Default)]
pub struct Locations {
    pub auth_file: Option<PathBuf>,
    pub docker_config: Option<PathBuf>,
    pub home: Option<PathBuf>,
    pub xdg_runtime_dir: Option<PathBuf>,
    pub xdg_config_home: Option<PathBuf>,
    /// The `PATH` credential helpers are looked up on.
    pub path: Option<OsString>,
}

impl Locations {
    pub fn from_env() -> Locations {
        let var = |k: &str| {
            std::env::var_os(k)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        Locations {
            auth_file: var("REGISTRY_AUTH_FILE"),
            docker_config: var("DOCKER_CONFIG"),
            home: var("HOME"),
            xdg_runtime_dir: var("XDG_RUNTIME_DIR"),
            xdg_config_home: var("XDG_CONFIG_HOME"),
            path: std::env::var_os("PATH"),
        }
    }

    /// The file `berth login` writes: the first of `$REGISTRY_AUTH_FILE`,
    /// `$DOCKER_CONFIG/config.json`, `~/.docker/config.json`.
    pub fn primary(&self) -> Result<PathBuf> {
        if let Some(f) = &self.auth_file {
            return Ok(f.clone());
        }
        if let Some(d) = &self.docker_config {
            return Ok(d.join("config.json"));
        }
        match &self.home {
            Some(h) => Ok(h.join(".docker").join("config.json")),
            None => bail!("no credentials file: set DOCKER_CONFIG, REGISTRY_AUTH_FILE or HOME"),
        }
    }

    /// Every file read for credentials, in order: the primary one, then those
    /// the other variables (and podman) name.
    pub fn read_order(&self) -> Vec<PathBuf> {
        let mut out: Vec<PathBuf> = Vec::new();
        let mut push = |p: PathBuf| {
            if !out.contains(&p) {
                out.push(p);
            }
        };
        if let Some(f) = &self.auth_file {
            push(f.clone());
        }
        if let Some(d) = &self.docker_config {
            push(d.join("config.json"));
        }
        if let Some(h) = &self.home {
            push(h.join(".docker").join("config.json"));
        }
        if let Some(r) = &self.xdg_runtime_dir {
            push(r.join("containers").join("auth.json"));
        }
        match (&self.xdg_config_home, &self.home) {
            (Some(c), _) => push(c.join("containers").join("auth.json")),
            (None, Some(h)) => push(h.join(".config").join("containers").join("auth.json")),
            (None, None) => {}
        }
        out
    }
}

/// The registry part of a config key: docker writes `https://host/v1/` and
/// `http://host` as well as `host:port`; podman may add a namespace path.
fn key_host(key: &str) -> String {
    let k = key.trim();
    let k = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"))
        .unwrap_or(k);
    let host = k.split('/').next().unwrap_or(k).to_ascii_lowercase();
    // Docker Hub is known by three names; docker keys it `https://index.docker.io/v1/`.
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".to_string(),
        _ => host,
    }
}

/// Whether a config key names `registry` (`host[:port]`). A key with a
/// namespace path (podman's `host/team`) is for part of a registry only, and is
/// not used for all of it.
fn key_matches(key: &str, registry: &str) -> bool {
    let k = key.trim();
    let rest = k
        .strip_prefix("https://")
        .or_else(|| k.strip_prefix("http://"));
    let path = match rest {
        Some(r) => r.split_once('/').map_or("", |(_, p)| p),
        None => k.split_once('/').map_or("", |(_, p)| p),
    };
    let scheme_path = rest.is_some() && matches!(path.trim_end_matches('/'), "" | "v1" | "v2");
    (path.is_empty() || scheme_path) && key_host(key) == key_host(registry)
}

/// One config file as JSON (`None` if it does not exist).
fn read_file(path: &Path) -> Result<Option<Map<String, Value>>> {
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(anyhow!(e).context(format!("reading {}", path.display()))),
    };
    if meta.len() > MAX_FILE {
        bail!("{} is larger than {MAX_FILE} bytes", path.display());
    }
    let text = fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Some(Map::new()));
    }
    match serde_json::from_slice(&text) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => bail!("{} is not a JSON object", path.display()),
        Err(e) => bail!("{} is not valid JSON: {e}", path.display()),
    }
}

/// What a file says about a registry.
enum Found {
    Entry(String, Secret),
    Helper(String),
    Nothing,
}

/// The helper a file names for `registry`: its `credHelpers` entry, else the
/// default `credsStore`.
fn helper_for(file: &Map<String, Value>, registry: &str) -> Option<String> {
    file.get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| h.iter().find(|(k, _)| key_matches(k, registry)))
        .and_then(|(_, v)| v.as_str())
        .or_else(|| file.get("credsStore").and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(str::to_string)
}

fn entry_of(file: &Map<String, Value>, registry: &str) -> Result<Found> {
    let per_registry = file
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|h| h.iter().find(|(k, _)| key_matches(k, registry)))
        .and_then(|(_, v)| v.as_str());
    if let Some(h) = per_registry {
        return Ok(Found::Helper(h.to_string()));
    }
    let entries = file.get("auths").and_then(Value::as_object);
    for (key, entry) in entries.into_iter().flatten() {
        if !key_matches(key, registry) {
            continue;
        }
        if let Some((user, secret)) = decode_entry(entry)
            .with_context(|| format!("the credentials entry {key:?} is malformed"))?
        {
            return Ok(Found::Entry(user, secret));
        }
    }
    match file.get("credsStore").and_then(Value::as_str) {
        Some(s) if !s.is_empty() => Ok(Found::Helper(s.to_string())),
        _ => Ok(Found::Nothing),
    }
}

/// An `auths` entry: `auth` (base64 `user:password`), or `username` and
/// `password`, and possibly an `identitytoken`. An empty entry (docker writes
/// one next to a credential store) holds nothing.
fn decode_entry(entry: &Value) -> Result<Option<(String, Secret)>> {
    let field = |k: &str| {
        entry
            .get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let (mut user, mut password) = (
        field("username").map(str::to_string),
        field("password").map(str::to_string),
    );
    if let Some(auth) = field("auth") {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(auth.trim()))
            .context("`auth` is not base64")?;
        let text = String::from_utf8(raw).context("`auth` is not UTF-8")?;
        let (u, p) = text
            .split_once(':')
            .context("`auth` is not USER:PASSWORD")?;
        user = Some(u.to_string());
        password = Some(p.to_string());
    }
    if let Some(token) = field("identitytoken") {
        return Ok(Some((
            user.unwrap_or_default(),
            Secret::IdentityToken(token.to_string()),
        )));
    }
    Ok(match (user, password) {
        (Some(u), Some(p)) => Some((u, Secret::Password(p))),
        _ => None,
    })
}

/// Helpers mark an identity token by this username (docker's convention).
const TOKEN_USERNAME: &str = "<token>";

/// Where `berth login` put credentials, or `logout` removed them from.
#[derive(Debug)]
pub struct Saved {
    pub place: String,
}

/// The credential store of this user.
#[derive(Debug, Clone, Default)]
pub struct Store {
    pub locations: Locations,
}

impl Store {
    pub fn from_env() -> Store {
        Store {
            locations: Locations::from_env(),
        }
    }

    /// The credentials for `registry` (`host[:port]`): the first file (in
    /// `Locations::read_order`) that has them, directly or through a helper.
    pub fn get(&self, registry: &str) -> Result<Option<Credential>> {
        for path in self.locations.read_order() {
            let Some(file) = read_file(&path)? else {
                continue;
            };
            let found =
                entry_of(&file, registry).with_context(|| format!("in {}", path.display()))?;
            match found {
                Found::Nothing => {}
                Found::Entry(username, secret) => {
                    return Ok(Some(Credential {
                        username,
                        secret,
                        source: path.display().to_string(),
                    }));
                }
                Found::Helper(name) => {
                    let h = Helper::find(&name, self.locations.path.as_ref())
                        .with_context(|| format!("named in {}", path.display()))?;
                    if let Some((username, secret)) = h.get(registry)? {
                        let secret = if username == TOKEN_USERNAME {
                            Secret::IdentityToken(secret)
                        } else {
                            Secret::Password(secret)
                        };
                        return Ok(Some(Credential {
                            username,
                            secret,
                            source: format!("{} (named in {})", h.name, path.display()),
                        }));
                    }
                }
            }
        }
        Ok(None)
    }

    /// Stores credentials for `registry` in the primary file, or through the
    /// helper that file names for it. Plain-text entries for the same registry
    /// under other key forms are replaced, so that none is left stale.
    pub fn save(&self, registry: &str, username: &str, password: &str) -> Result<Saved> {
        let path = self.locations.primary()?;
        let mut file = read_file(&path)?.unwrap_or_default();
        let helper = helper_for(&file, registry);
        let removed = remove_entries(&mut file, registry);
        if let Some(name) = helper {
            let h = Helper::find(&name, self.locations.path.as_ref())
                .with_context(|| format!("named in {}", path.display()))?;
            h.store(registry, username, password)?;
            if removed {
                write_atomic(&path, &file)?;
            }
            return Ok(Saved {
                place: format!("{} (named in {})", h.name, path.display()),
            });
        }
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let auths = file
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            bail!("{}: `auths` is not an object", path.display());
        }
        if let Some(a) = auths.as_object_mut() {
            a.insert(registry.to_string(), json!({ "auth": auth }));
        }
        write_atomic(&path, &file)?;
        Ok(Saved {
            place: path.display().to_string(),
        })
    }

    /// Removes the credentials for `registry` from the primary file (every key
    /// form) and from the helper it names for it; `None` if there were none.
    pub fn erase(&self, registry: &str) -> Result<Option<Saved>> {
        let path = self.locations.primary()?;
        let Some(mut file) = read_file(&path)? else {
            return Ok(None);
        };
        let helper = helper_for(&file, registry)
            .map(|name| Helper::find(&name, self.locations.path.as_ref()))
            .transpose()?;
        let mut places = Vec::new();
        if let Some(h) = &helper
            && h.erase(registry)?
        {
            places.push(h.name.clone());
        }
        if remove_entries(&mut file, registry) {
            write_atomic(&path, &file)?;
            places.push(path.display().to_string());
        }
        Ok((!places.is_empty()).then(|| Saved {
            place: places.join(" and "),
        }))
    }
}

/// Removes every `auths` entry for `registry`; whether there was one.
fn remove_entries(file: &mut Map<String, Value>, registry: &str) -> bool {
    let Some(auths) = file.get_mut("auths").and_then(Value::as_object_mut) else {
        return false;
    };
    let before = auths.len();
    auths.retain(|k, _| !key_matches(k, registry));
    auths.len() != before
}

/// Writes the file whole or not at all: a private temporary file in the same
/// directory, synced, then renamed over the old one (through a symlink to its
/// target, so that a linked config stays linked).
fn write_atomic(path: &Path, file: &Map<String, Value>) -> Result<()> {
    let target = match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => {
            fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?
        }
        _ => path.to_path_buf(),
    };
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("config.json");
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
    let mut bytes = serde_json::to_vec_pretty(file)?;
    bytes.push(b'\n');
    let result = (|| -> Result<()> {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("creating {}", tmp.display()))?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &target).with_context(|| format!("replacing {}", target.display()))?;
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    // The rename is durable once the directory is synced (best effort).
    if let Ok(d) = fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests;
