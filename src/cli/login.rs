//! `berth login` and `logout`: credentials checked against the registry, then
//! kept where docker, podman and oras look for them (see `client::credentials`).

use std::io::{BufRead as _, IsTerminal as _, Read as _, Write as _};

use anyhow::{Context, Result, bail};
use reqwest::Url;

use crate::client::auth::{Auth, host_key};
use crate::client::credentials::{Credential, Secret, Store};
use crate::client::reference::registry_url;

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The registry: host[:port], or its URL.
    #[arg(value_name = "REGISTRY")]
    pub server: String,
    /// The user name (asked for on a terminal if not given).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from standard input (asked for on a terminal otherwise).
    #[arg(long)]
    pub password_stdin: bool,
    /// Use plain HTTP even for a non-loopback registry.
    #[arg(long, env = "BERTH_PLAIN_HTTP")]
    pub plain_http: bool,
}

#[derive(Debug, clap::Args)]
pub struct LogoutArgs {
    /// The registry: host[:port], or its URL.
    #[arg(value_name = "REGISTRY")]
    pub server: String,
}

/// The registry's base URL (origin only: a pasted `https://host/v1/` is the
/// host) and its credentials key.
fn registry_of(server: &str, plain_http: bool) -> Result<(Url, String)> {
    let mut url = Url::parse(&registry_url(server.trim(), plain_http))
        .with_context(|| format!("invalid registry {server:?}"))?;
    if url.host_str().is_none_or(str::is_empty) {
        bail!("invalid registry {server:?}: no host");
    }
    url.set_path("/");
    url.set_query(None);
    url.set_fragment(None);
    let key = host_key(&url);
    Ok((url, key))
}

fn prompt_line(prompt: &str) -> Result<String> {
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim().to_string())
}

pub async fn login(a: LoginArgs) -> Result<()> {
    let (base, host) = registry_of(&a.server, a.plain_http)?;
    let interactive = std::io::stdin().is_terminal();
    let username = match a.username {
        Some(u) => u,
        None if a.password_stdin => bail!("--password-stdin needs --username"),
        None if interactive => prompt_line("Username: ")?,
        None => {
            bail!("give --username (and --password-stdin) when standard input is not a terminal")
        }
    };
    if username.is_empty() || username.contains(':') {
        bail!("the user name must be non-empty and without ':'");
    }
    let password = if a.password_stdin {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading the password from standard input")?;
        // `echo pw | berth login` sends a newline that is not part of the password.
        let p = text.strip_suffix('\n').unwrap_or(&text);
        p.strip_suffix('\r').unwrap_or(p).to_string()
    } else if interactive {
        rpassword::prompt_password("Password: ").context("reading the password")?
    } else {
        bail!("standard input is not a terminal: pass the password with --password-stdin");
    };
    if password.is_empty() {
        bail!("the password is empty");
    }

    let credential = Credential {
        username: username.clone(),
        secret: Secret::Password(password.clone()),
        source: "the login prompt".into(),
    };
    let auth = Auth::with_credential(&base, crate::client::http_client()?, credential);
    auth.verify()
        .await
        .with_context(|| format!("login to {host} failed; nothing was stored"))?;

    let store = Store::from_env();
    let saved = tokio::task::spawn_blocking(move || store.save(&host, &username, &password))
        .await
        .context("storing the credentials")??;
    println!("Login Succeeded: credentials stored in {}", saved.place);
    if !saved.place.contains("docker-credential-") {
        eprintln!(
            "note: the password is kept unencrypted in that file (mode 0600); set `credsStore` there to keep it in a credential helper"
        );
    }
    Ok(())
}

pub async fn logout(a: LogoutArgs) -> Result<()> {
    let (_, host) = registry_of(&a.server, false)?;
    let store = Store::from_env();
    let primary = store.locations.primary()?;
    let h = host.clone();
    let (erased, left) = tokio::task::spawn_blocking(move || -> Result<_> {
        let erased = store.erase(&h)?;
        // Another tool's file may still hold some; say so rather than claim a clean logout.
        let left = store.get(&h).ok().flatten().map(|c| c.source);
        Ok((erased, left))
    })
    .await
    .context("removing the credentials")??;
    match erased {
        Some(saved) => println!("Removed the credentials for {host} from {}", saved.place),
        None => println!("Not logged in to {host} (nothing in {})", primary.display()),
    }
    if let Some(source) = left {
        eprintln!(
            "note: {source} still holds credentials for {host} (written by another tool; berth leaves that file alone)"
        );
    }
    Ok(())
}
