//! `berth login`/`logout` and stored credentials, against CNCF distribution
//! (Debian's `docker-registry`, started by `scripts/reference-registry.sh`) with
//! an htpasswd file, so that every request is answered with a Basic challenge
//! until it carries the right credentials.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use base64::Engine as _;

use crate::support::*;

const USER: &str = "alice";
const PASSWORD: &str = "correct horse:battery";

/// The reference registry behind htpasswd; stopped (SIGTERM, so that the
/// script's trap removes its storage) on drop.
pub struct AuthRegistry {
    pub host: String,
    child: Child,
}

impl Drop for AuthRegistry {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl AuthRegistry {
    pub fn start(dir: &Path) -> AuthRegistry {
        require("htpasswd (apache2-utils)", "htpasswd", &["-Bbn", "x", "y"]);
        assert!(
            Path::new("/usr/bin/docker-registry").exists(),
            "docker-registry is not installed\n{INSTALL_HINT}"
        );
        let htpasswd = dir.join("htpasswd");
        let line = run_ok(
            "htpasswd",
            Command::new("htpasswd").args(["-Bbn", USER, PASSWORD]),
        );
        std::fs::write(&htpasswd, line.trim()).expect("write htpasswd");
        let port = free_port();
        let child = Command::new("bash")
            .arg(repo_path("scripts/reference-registry.sh"))
            .arg(port.to_string())
            .env("HTPASSWD", &htpasswd)
            // Its log names every 401 and 404 a test provokes on purpose.
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start scripts/reference-registry.sh");
        let reg = AuthRegistry {
            host: format!("127.0.0.1:{port}"),
            child,
        };
        let url = format!("http://{}/v2/", reg.host);
        wait_for("the reference registry", Duration::from_secs(20), || {
            block_on(async { reqwest::get(&url).await.map(|r| r.status().as_u16()) }).ok()
                == Some(401)
        });
        reg
    }
}

/// A scratch directory whose credential files are the test's own: berth runs
/// with `DOCKER_CONFIG` (and `HOME`) there and nothing else from the user's.
pub struct Client {
    pub tmp: tempfile::TempDir,
}

impl Client {
    pub fn new() -> Client {
        Client {
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn config(&self) -> PathBuf {
        self.path("docker/config.json")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.args(args)
            .env("DOCKER_CONFIG", self.path("docker"))
            .env("HOME", self.path("home"))
            .env("XDG_CACHE_HOME", self.path("cache"))
            .env_remove("REGISTRY_AUTH_FILE")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("BERTH_CACHE_DIR")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// `berth login` with the password on stdin.
    pub fn login(&self, host: &str, password: &str) -> Output {
        use std::io::Write as _;
        let mut child = self
            .cmd(&["login", host, "-u", USER, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run berth login");
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "{password}").expect("write the password");
        drop(stdin);
        child.wait_with_output().expect("berth login")
    }

    pub fn ok(&self, cmd: &mut Command) -> String {
        run_ok("berth", cmd)
    }

    pub fn fails(&self, cmd: &mut Command) -> String {
        let out = cmd.output().expect("run berth");
        assert!(
            !out.status.success(),
            "should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn login_push_pull_logout_against_an_htpasswd_registry() {
    let client = Client::new();
    let reg = AuthRegistry::start(client.tmp.path());
    let src = client.path("src");
    make_model(&src, 1);
    let r = format!("{}/team/model:v1", reg.host);
    let push = |c: &Client| c.cmd(&["push", src.to_str().unwrap(), &r, "-q"]);

    // Without credentials: refused, saying what to do.
    let e = client.fails(&mut push(&client));
    assert!(
        e.contains("requires authentication") && e.contains(&format!("berth login {}", reg.host)),
        "{e}"
    );

    // A wrong password is refused by login, and nothing is stored.
    let out = client.login(&reg.host, "wrong");
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("refused") && e.contains("nothing was stored"),
        "{e}"
    );
    assert!(!client.config().exists());

    // The right one is checked, then stored as docker stores it: 0600, base64 user:password.
    let out = client.login(&reg.host, PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains(client.config().to_str().unwrap()), "{said}");
    let mode = std::fs::metadata(client.config())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(client.config()).unwrap()).unwrap();
    assert_eq!(
        v["auths"][&reg.host]["auth"],
        b64(&format!("{USER}:{PASSWORD}"))
    );

    // Push and pull use them.
    client.ok(&mut push(&client));
    let out = client.path("out");
    client.ok(&mut client.cmd(&["pull", &r, out.to_str().unwrap(), "-q"]));
    assert_same_tree(&src, &out);

    // Logout removes them, and the registry refuses again.
    let said = client.ok(&mut client.cmd(&["logout", &reg.host]));
    assert!(said.contains("Removed"), "{said}");
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(client.config()).unwrap()).unwrap();
    assert!(v["auths"].get(&reg.host).is_none(), "{v}");
    let again = client.path("again");
    let e = client.fails(&mut client.cmd(&["pull", &r, again.to_str().unwrap(), "-q"]));
    assert!(e.contains("berth login"), "{e}");
    let said = client.ok(&mut client.cmd(&["logout", &reg.host]));
    assert!(said.contains("Not logged in"), "{said}");
}

#[test]
fn uses_what_other_tools_stored() {
    let client = Client::new();
    let reg = AuthRegistry::start(client.tmp.path());
    let src = client.path("src");
    make_model(&src, 1);
    let r = format!("{}/team/other:v1", reg.host);
    let auth = b64(&format!("{USER}:{PASSWORD}"));

    // docker's own key form for a registry, next to keys berth knows nothing of.
    std::fs::create_dir_all(client.path("docker")).unwrap();
    let docker = serde_json::json!({
        "auths": { format!("http://{}", reg.host): { "auth": auth } },
        "currentContext": "default",
        "plugins": { "-x-cli-hints": { "enabled": "false" } },
    });
    std::fs::write(client.config(), docker.to_string()).unwrap();
    client.ok(&mut client.cmd(&["push", src.to_str().unwrap(), &r, "-q"]));

    // podman's auth.json under $XDG_RUNTIME_DIR, when docker's file has nothing.
    std::fs::write(client.config(), r#"{"auths":{}}"#).unwrap();
    let run = client.path("run");
    std::fs::create_dir_all(run.join("containers")).unwrap();
    std::fs::write(
        run.join("containers/auth.json"),
        serde_json::json!({"auths": { &reg.host: { "auth": auth } }}).to_string(),
    )
    .unwrap();
    let out = client.path("out");
    let mut pull = client.cmd(&["pull", &r, out.to_str().unwrap(), "-q"]);
    client.ok(pull.env("XDG_RUNTIME_DIR", &run));
    assert_same_tree(&src, &out);

    // $REGISTRY_AUTH_FILE, as skopeo writes it with `skopeo login`.
    require("skopeo", "skopeo", &["--version"]);
    let authfile = client.path("skopeo-auth.json");
    run_ok(
        "skopeo login",
        Command::new("skopeo").args([
            "login",
            "--tls-verify=false",
            "--authfile",
            authfile.to_str().unwrap(),
            "-u",
            USER,
            "-p",
            PASSWORD,
            &reg.host,
        ]),
    );
    let out2 = client.path("out2");
    let mut pull = client.cmd(&["pull", &r, out2.to_str().unwrap(), "-q"]);
    client.ok(pull.env("REGISTRY_AUTH_FILE", &authfile));
    assert_same_tree(&src, &out2);

    // And the other way: what berth login wrote, skopeo reads.
    let out = client.login(&reg.host, PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tags = run_ok(
        "skopeo list-tags",
        Command::new("skopeo").args([
            "list-tags",
            "--tls-verify=false",
            "--authfile",
            client.config().to_str().unwrap(),
            &format!("docker://{r}").replace(":v1", ""),
        ]),
    );
    assert!(tags.contains("\"v1\""), "{tags}");

    // A credential helper named by credsStore, found on PATH.
    let bin = client.path("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let helper = bin.join("docker-credential-berthtest");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\n[ \"$1\" = get ] || exit 3\nread -r server\n[ \"$server\" = \"{}\" ] || {{ echo 'credentials not found in native keychain'; exit 1; }}\necho '{{\"ServerURL\":\"{}\",\"Username\":\"{USER}\",\"Secret\":\"{PASSWORD}\"}}'\n",
            reg.host, reg.host
        ),
    )
    .unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(client.config(), r#"{"credsStore":"berthtest"}"#).unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out3 = client.path("out3");
    let mut pull = client.cmd(&["pull", &r, out3.to_str().unwrap(), "-q"]);
    client.ok(pull.env("PATH", path));
    assert_same_tree(&src, &out3);
}

/// `berth user add` into an auth file, the password on stdin.
fn berth_user(auth: &Path, name: &str, group: &str, password: &str) {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args(["user", "--auth"])
        .arg(auth)
        .args(["add", name, "--group", group, "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("berth user add");
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin, "{password}").expect("write the password");
    drop(stdin);
    assert!(child.wait().expect("berth user add").success());
}

/// A Berth server with an auth file: alice (group ml) may pull, push and
/// promote to staging anywhere; anyone may pull `public/**`.
fn berth_with_auth(client: &Client, extra: &str) -> crate::common::TestServer {
    let auth = client.path("auth.toml");
    berth_user(&auth, USER, "ml", PASSWORD);
    let mut text = std::fs::read_to_string(&auth).unwrap();
    text.push_str(
        r#"
[[grant]]
to = ["group:ml"]
repos = "**"
actions = ["pull", "push", "promote/staging"]

[[grant]]
to = ["anonymous"]
repos = "public/**"
actions = ["pull"]
"#,
    );
    text.push_str(extra);
    std::fs::write(&auth, text).unwrap();
    crate::common::TestServer::start_with(&["--auth", auth.to_str().unwrap()])
}

#[test]
fn tokens_are_renewed_during_a_long_push() {
    let client = Client::new();
    // Tokens that live 2 s, and a push that takes several times that.
    let srv = berth_with_auth(&client, "\n[token]\nlifetime_secs = 2\n");
    let host = srv.addr.clone();
    let out = client.login(&host, PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let src = client.path("src");
    make_model(&src, 4);
    let r = format!("{host}/team/slow:v1");
    let started = std::time::Instant::now();
    client.ok(&mut client.cmd(&[
        "push",
        src.to_str().unwrap(),
        &r,
        "--chunk-size",
        "256KiB",
        "--limit-rate",
        "1MiB",
        "-q",
    ]));
    assert!(
        started.elapsed() > Duration::from_secs(4),
        "the push outlived its first tokens"
    );
    let out = client.path("out");
    client.ok(&mut client.cmd(&["pull", &r, out.to_str().unwrap(), "-q"]));
    assert_same_tree(&src, &out);
}

#[test]
fn bearer_flow_against_berth_with_auth() {
    let client = Client::new();
    let srv = berth_with_auth(&client, "");
    let host = srv.addr.clone();
    let src = client.path("src");
    make_model(&src, 1);
    let r = format!("{host}/team/m:v1");
    let push = |r: &str| client.cmd(&["push", src.to_str().unwrap(), r, "-q"]);

    let e = client.fails(&mut push(&r));
    assert!(
        e.contains("requires authentication") && e.contains(&format!("berth login {host}")),
        "{e}"
    );
    let out = client.login(&host, "wrong");
    assert!(!out.status.success());
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(
        e.contains("refused the credentials of \"alice\"") && e.contains("nothing was stored"),
        "{e}"
    );
    assert!(!client.config().exists());
    let out = client.login(&host, PASSWORD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The OCI client: push and pull with tokens from the realm Berth names.
    client.ok(&mut push(&r));
    client.ok(&mut push(&format!("{host}/public/m:v1")));
    let out = client.path("out");
    client.ok(&mut client.cmd(&["pull", &r, out.to_str().unwrap(), "-q"]));
    assert_same_tree(&src, &out);

    // The API client: listings, and a promotion the grant allows; one it does
    // not is refused as a permission, not as a wrong password.
    // A listing is open to anyone and narrowed to what the caller may pull: it
    // must be asked with the stored credentials although it never challenges.
    let models = client.ok(&mut client.cmd(&["models", "--registry", &host, "--json"]));
    assert!(models.contains("team/m"), "{models}");
    let versions = client.ok(&mut client.cmd(&["versions", &format!("{host}/team/m"), "--json"]));
    assert!(versions.contains("v1"), "{versions}");
    client.ok(&mut client.cmd(&[
        "promote",
        &format!("{host}/team/m"),
        "v1",
        "--to",
        "staging",
    ]));
    let e = client.fails(&mut client.cmd(&[
        "promote",
        &format!("{host}/team/m"),
        "v1",
        "--to",
        "prod",
    ]));
    assert!(!e.contains("refused the credentials"), "{e}");
    assert!(e.contains("prod"), "{e}");

    // Logged out: public repositories are still readable with an anonymous
    // token, the rest asks for a login.
    client.ok(&mut client.cmd(&["logout", &host]));
    let models = client.ok(&mut client.cmd(&["models", "--registry", &host, "--json"]));
    assert!(
        !models.contains("team/m") && models.contains("public/m"),
        "{models}"
    );
    let public = client.path("public");
    client.ok(&mut client.cmd(&[
        "pull",
        &format!("{host}/public/m:v1"),
        public.to_str().unwrap(),
        "-q",
    ]));
    assert_same_tree(&src, &public);
    let again = client.path("again");
    let e = client.fails(&mut client.cmd(&["pull", &r, again.to_str().unwrap(), "-q"]));
    assert!(e.contains(&format!("berth login {host}")), "{e}");
}

/// `berth robot create|list|revoke` through the admin API, as an admin logged
/// in with `berth login`; the robot then logs in with its token and pushes,
/// until it is revoked.
#[test]
fn robots_from_the_cli() {
    let admin = Client::new();
    let srv = berth_with_auth(
        &admin,
        "\n[[grant]]\nto = [\"user:alice\"]\nregistry = true\nactions = [\"admin\"]\n",
    );
    let host = srv.addr.clone();
    assert!(admin.login(&host, PASSWORD).status.success());
    let created = admin.ok(&mut admin.cmd(&[
        "robot",
        "create",
        "ci",
        "--group",
        "ml",
        "--expires-in-days",
        "7",
        "--registry",
        &host,
        "--json",
    ]));
    let v: serde_json::Value = serde_json::from_str(&created).expect("robot JSON");
    assert_eq!(v["username"], "robot+ci");
    let token = v["token"].as_str().expect("token").to_string();
    let list = admin.ok(&mut admin.cmd(&["robot", "list", "--registry", &host]));
    assert!(
        list.contains("robot+ci") && list.contains("active") && !list.contains(&token),
        "{list}"
    );

    // The robot, with its own config: a login as docker's would be.
    let robot = Client::new();
    let out = {
        use std::io::Write as _;
        let mut child = robot
            .cmd(&["login", &host, "-u", "robot+ci", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("berth login");
        writeln!(child.stdin.take().expect("stdin"), "{token}").expect("token");
        child.wait_with_output().expect("berth login")
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let src = robot.path("src");
    make_model(&src, 2);
    robot.ok(&mut robot.cmd(&[
        "push",
        src.to_str().unwrap(),
        &format!("{host}/team/ci:v1"),
        "-q",
    ]));

    admin.ok(&mut admin.cmd(&["robot", "revoke", "ci", "--registry", &host]));
    let e = robot.fails(&mut robot.cmd(&[
        "push",
        src.to_str().unwrap(),
        &format!("{host}/team/ci:v2"),
        "-q",
    ]));
    assert!(e.contains("refused") || e.contains("401"), "{e}");
    let list = admin.ok(&mut admin.cmd(&["robot", "list", "--registry", &host]));
    assert!(list.contains("revoked"), "{list}");
}
