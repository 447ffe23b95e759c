//! Docker credential helpers: `docker-credential-NAME get|store|erase`, the
//! server URL or a JSON record on stdin, JSON on stdout (the protocol of
//! docker/docker-credential-helpers, which podman and oras follow too).

use std::ffi::OsString;
use std::io::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

/// What a helper answers to `get`.
#[derive(Debug, Deserialize)]
struct Got {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

#[derive(Serialize)]
struct ToStore<'a> {
    #[serde(rename = "ServerURL")]
    server_url: &'a str,
    #[serde(rename = "Username")]
    username: &'a str,
    #[serde(rename = "Secret")]
    secret: &'a str,
}

/// One helper, found on a `PATH`.
pub struct Helper {
    pub name: String,
    program: PathBuf,
}

/// Helpers say this (on stdout, exiting non-zero) when they hold nothing for a server.
const NOT_FOUND: &str = "credentials not found";

impl Helper {
    /// The helper `docker-credential-NAME` on `path`.
    pub fn find(name: &str, path: Option<&OsString>) -> Result<Helper> {
        // The name comes from a config file: keep it a plain name, never a path.
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        {
            bail!("invalid credential helper name {name:?}");
        }
        let file = format!("docker-credential-{name}");
        let program = path
            .map(std::env::split_paths)
            .into_iter()
            .flatten()
            .map(|dir| dir.join(&file))
            .find(|p| p.is_file())
            .with_context(|| {
                format!("the credential helper {file} is configured but not on PATH")
            })?;
        Ok(Helper {
            name: file,
            program,
        })
    }

    fn run(&self, verb: &str, input: &[u8]) -> Result<(bool, String, String)> {
        let mut child = Command::new(&self.program)
            .arg(verb)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .with_context(|| format!("running {} {verb}", self.name))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A helper that exits without reading its input is judged by its exit status.
            let _ = stdin.write_all(input);
        }
        let out = child
            .wait_with_output()
            .with_context(|| format!("running {} {verb}", self.name))?;
        Ok((
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).trim().to_string(),
            String::from_utf8_lossy(&out.stderr).trim().to_string(),
        ))
    }

    /// The username and secret held for `server`, or `None`.
    pub fn get(&self, server: &str) -> Result<Option<(String, String)>> {
        let (ok, stdout, stderr) = self.run("get", server.as_bytes())?;
        if !ok {
            if stdout.contains(NOT_FOUND) || stderr.contains(NOT_FOUND) {
                return Ok(None);
            }
            bail!(
                "{} get failed for {server}: {}",
                self.name,
                if stderr.is_empty() { stdout } else { stderr }
            );
        }
        let got: Got = serde_json::from_str(&stdout)
            .with_context(|| format!("{} get: the answer is not the helper JSON", self.name))?;
        if got.secret.is_empty() {
            return Ok(None);
        }
        Ok(Some((got.username, got.secret)))
    }

    pub fn store(&self, server: &str, username: &str, secret: &str) -> Result<()> {
        let input = serde_json::to_vec(&ToStore {
            server_url: server,
            username,
            secret,
        })?;
        let (ok, stdout, stderr) = self.run("store", &input)?;
        if !ok {
            bail!(
                "{} store failed for {server}: {}",
                self.name,
                if stderr.is_empty() { stdout } else { stderr }
            );
        }
        Ok(())
    }

    /// Erases what the helper holds for `server`; whether it held anything.
    pub fn erase(&self, server: &str) -> Result<bool> {
        let (ok, stdout, stderr) = self.run("erase", server.as_bytes())?;
        if ok {
            return Ok(true);
        }
        if stdout.contains(NOT_FOUND) || stderr.contains(NOT_FOUND) {
            return Ok(false);
        }
        bail!(
            "{} erase failed for {server}: {}",
            self.name,
            if stderr.is_empty() { stdout } else { stderr }
        );
    }
}
