//! `berth user` (writes the auth file on the registry's machine) and `berth
//! robot` (the admin API of a running registry).

use std::io::{BufRead as _, IsTerminal as _};
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use reqwest::Method;
use serde_json::{Value, json};

use super::RegistryArgs;
use super::api::{Api, enc};
use super::views::table::{Table, field, items, print};
use crate::auth::{file, password};

#[derive(Debug, clap::Args)]
pub struct UserArgs {
    /// The auth file to write (the one `berth serve --auth` reads).
    #[arg(long, env = "BERTH_AUTH", global = true, default_value = "auth.toml")]
    pub auth: PathBuf,
    #[command(subcommand)]
    pub command: UserCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum UserCommand {
    /// Add a user, or replace one's password (and groups, if given).
    Add(UserPassword),
    /// Set a user's password, keeping its groups.
    Passwd(UserPassword),
    /// Remove a user.
    Remove { name: String },
    /// List the users and their groups.
    List,
}

#[derive(Debug, clap::Args)]
pub struct UserPassword {
    pub name: String,
    /// A group the user is in (repeat for several); replaces the groups it had.
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Read the password from the first line of standard input.
    #[arg(long)]
    pub password_stdin: bool,
}

/// The new password: from stdin, or asked twice on the terminal.
fn read_password(from_stdin: bool) -> Result<String> {
    let p = if from_stdin || !std::io::stdin().is_terminal() {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("reading the password from standard input")?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let p = rpassword::prompt_password("Password: ").context("reading the password")?;
        let again = rpassword::prompt_password("Again: ").context("reading the password")?;
        if p != again {
            bail!("the two passwords differ");
        }
        p
    };
    if p.chars().count() < password::MIN_PASSWORD_LEN {
        bail!(
            "a password is at least {} characters",
            password::MIN_PASSWORD_LEN
        );
    }
    Ok(p)
}

/// Asks for the new password and writes its hash (and the groups, if given).
fn write_password(auth: &std::path::Path, u: &UserPassword) -> Result<()> {
    let hash = password::hash(&read_password(u.password_stdin)?).map_err(anyhow::Error::msg)?;
    let groups = (!u.groups.is_empty()).then_some(&u.groups[..]);
    file::set_user(auth, &u.name, &hash, groups)?;
    Ok(())
}

pub fn user(a: UserArgs) -> Result<()> {
    match a.command {
        UserCommand::Add(u) | UserCommand::Passwd(u) if !file::valid_user_name(&u.name) => {
            bail!(
                "invalid user name {:?}: 1 to 128 letters, digits or ._@+-, not starting with {:?}",
                u.name,
                file::ROBOT_PREFIX
            )
        }
        UserCommand::Add(u) => {
            write_password(&a.auth, &u)?;
            println!(
                "user {} written to {}; send SIGHUP to the server (or restart it) to load it",
                u.name,
                a.auth.display()
            );
        }
        UserCommand::Passwd(u) => {
            let f = file::AuthFile::read(&a.auth)?;
            if !f.users.contains_key(&u.name) {
                bail!(
                    "{} has no user {:?}: add it with `berth user add`",
                    a.auth.display(),
                    u.name
                );
            }
            write_password(&a.auth, &u)?;
            println!(
                "password of {} changed in {}; send SIGHUP to the server to load it",
                u.name,
                a.auth.display()
            );
        }
        UserCommand::Remove { name } => {
            if !file::remove_user(&a.auth, &name)? {
                bail!("{} has no user {name:?}", a.auth.display());
            }
            println!(
                "user {name} removed from {}; send SIGHUP to the server to load it",
                a.auth.display()
            );
        }
        UserCommand::List => {
            let f = file::AuthFile::read(&a.auth)?;
            let mut names: Vec<_> = f.users.iter().collect();
            names.sort_by(|x, y| x.0.cmp(y.0));
            let mut t = Table::new(["USER", "GROUPS"]);
            for (name, u) in names {
                t.row(vec![name.clone(), u.groups.join(",")]);
            }
            print!("{}", t.render());
        }
    }
    Ok(())
}

#[derive(Debug, clap::Args)]
pub struct RobotArgs {
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: RobotCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RobotCommand {
    /// Create a robot account; its token is printed once.
    Create {
        name: String,
        /// A group the robot is in (repeat for several): grants name it as `group:NAME`.
        #[arg(long = "group")]
        groups: Vec<String>,
        /// Days until the token expires (at most 365).
        #[arg(long, default_value_t = 90)]
        expires_in_days: u64,
        #[arg(long)]
        description: Option<String>,
    },
    /// List robot accounts.
    List,
    /// Revoke a robot account at once.
    Revoke { name: String },
}

pub async fn robot(a: RobotArgs) -> Result<()> {
    let api = Api::of(&a.registry)?;
    match a.command {
        RobotCommand::Create {
            name,
            groups,
            expires_in_days,
            description,
        } => {
            let body = json!({
                "name": name,
                "groups": groups,
                "expires_in_days": expires_in_days,
                "description": description,
            });
            let v = api
                .send(Method::POST, "robots", &[], Some(&body), &[])
                .await?
                .json()?;
            print(a.json, &v, |v| {
                format!(
                    "robot {} created, expires {}\nlog in as {} with this token (shown only now):\n{}\n",
                    field(v, "name"),
                    field(v, "expires"),
                    field(v, "username"),
                    field(v, "token"),
                )
            })
        }
        RobotCommand::List => {
            let v = api.get("robots", &[]).await?;
            print(a.json, &v, |v| {
                let mut t = Table::new([
                    "NAME",
                    "USERNAME",
                    "GROUPS",
                    "STATUS",
                    "EXPIRES",
                    "CREATED BY",
                ]);
                for r in items(v) {
                    t.row(vec![
                        field(r, "name"),
                        field(r, "username"),
                        r.get("groups")
                            .and_then(Value::as_array)
                            .map(|g| {
                                g.iter()
                                    .filter_map(Value::as_str)
                                    .collect::<Vec<_>>()
                                    .join(",")
                            })
                            .unwrap_or_default(),
                        field(r, "status"),
                        field(r, "expires"),
                        field(r, "created_by"),
                    ]);
                }
                t.render()
            })
        }
        RobotCommand::Revoke { name } => {
            let v = api
                .send(
                    Method::DELETE,
                    &format!("robots/{}", enc(&name)),
                    &[],
                    None,
                    &[],
                )
                .await?
                .json()?;
            print(a.json, &v, |v| {
                format!(
                    "robot {} revoked at {}\n",
                    field(v, "name"),
                    field(v, "revoked")
                )
            })
        }
    }
}
