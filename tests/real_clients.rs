//! Real OCI clients driven as processes against a real `berth serve`.
//!
//! - `oras_sdk_roundtrip`: tests/clients/oras_roundtrip.py (the `oras` SDK from PyPI):
//!   multi-file artifact with annotations and `artifactType`, pulled back byte-identical,
//!   referrers discovered through the referrers API.
//! - `skopeo_roundtrip`: tests/clients/skopeo_roundtrip.sh (Debian's skopeo): OCI layout
//!   copied in and out with identical digests, tags listed, image deleted.
//! - `podman_containerd_roundtrip`: tests/clients/podman_containerd_roundtrip.sh (Debian's
//!   podman and containerd): Docker schema 2 and OCI pushes by podman, pulled back by
//!   podman and by a private containerd (`ctr`), unpacked, and pushed again by `ctr`.
//!
//! - `clients_log_in`: tests/clients/login_roundtrip.sh against a server with an
//!   auth file: skopeo login (a wrong password refused), podman push and pull with
//!   the stored credentials, refused after logout; containerd pulls and pushes with
//!   `--user` (its OAuth2 POST to the token endpoint) and is refused without; the
//!   oras SDK pushes and pulls after `login`.
//!
//! The clients are installed by `scripts/install-test-deps.sh`. A missing client fails
//! the test (it is never skipped), with a message saying to run that script.

mod common;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Upper bound for one client script; a hung client or server fails the test.
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(600);

const INSTALL_HINT: &str =
    "run `scripts/install-test-deps.sh` (as root on Debian 12) to install the real clients";

fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// Fails the test unless `program args...` runs and exits 0.
fn require(what: &str, program: &str, args: &[&str]) {
    match Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "{what} is not usable (`{program} {}` exited with {}): {}\n{INSTALL_HINT}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("{what} is not installed (`{program}`: {e})\n{INSTALL_HINT}"),
    }
}

/// Runs a client script to completion (or the timeout), printing its output, and fails the
/// test with that output unless it exits 0.
fn run_script(name: &str, mut cmd: Command) {
    let started = Instant::now();
    // Its own process group: on a timeout the whole group goes, daemons a script
    // started (containerd) included, not only the shell whose exit trap never runs.
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {name}: {e}\n{INSTALL_HINT}"));
    let drain = |mut r: Box<dyn Read + Send>| {
        thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(Box::new(child.stdout.take().expect("stdout")));
    let err = drain(Box::new(child.stderr.take().expect("stderr")));
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for client script") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_TIMEOUT {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    );
    match status {
        Some(s) if s.success() => {
            println!("--- {name} stdout\n{out}--- {name} stderr\n{err}");
            println!("{name} passed in {:.1}s", started.elapsed().as_secs_f64());
        }
        Some(s) => panic!(
            "{name} failed ({s}) after {:.1}s\n--- stdout\n{out}\n--- stderr\n{err}",
            started.elapsed().as_secs_f64()
        ),
        None => panic!(
            "{name} timed out after {SCRIPT_TIMEOUT:?}\n--- stdout\n{out}\n--- stderr\n{err}"
        ),
    }
}

#[test]
fn oras_sdk_roundtrip() {
    oras_sdk_against(common::TestServer::start());
}

/// Blobs in S3, pulled through `307` redirects to presigned URLs.
#[test]
fn oras_sdk_roundtrip_on_s3_with_redirects() {
    let srv = common::TestServer::start_s3(true, &[]);
    let srv = oras_sdk_against(srv);
    assert!(
        srv.metric("berth_blob_redirects_total") > 0.0,
        "the client pulled no blob through a redirect"
    );
}

fn oras_sdk_against(srv: common::TestServer) -> common::TestServer {
    require("python3", "python3", &["--version"]);
    require(
        "the oras SDK (PyPI `oras`)",
        "python3",
        &["-c", "import oras.provider"],
    );
    let mut cmd = Command::new("python3");
    cmd.arg(repo_path("tests/clients/oras_roundtrip.py"))
        .arg(&srv.addr);
    run_script("oras_roundtrip.py", cmd);
    srv
}

#[test]
fn skopeo_roundtrip() {
    skopeo_against(common::TestServer::start());
}

/// Blobs in S3, pulled through `307` redirects to presigned URLs.
#[test]
fn skopeo_roundtrip_on_s3_with_redirects() {
    let srv = common::TestServer::start_s3(true, &[]);
    let srv = skopeo_against(srv);
    assert!(
        srv.metric("berth_blob_redirects_total") > 0.0,
        "the client pulled no blob through a redirect"
    );
}

fn skopeo_against(srv: common::TestServer) -> common::TestServer {
    require("skopeo", "skopeo", &["--version"]);
    require("umoci", "umoci", &["--version"]);
    require("python3", "python3", &["--version"]);
    let mut cmd = Command::new("bash");
    cmd.arg(repo_path("tests/clients/skopeo_roundtrip.sh"))
        .arg(&srv.addr);
    run_script("skopeo_roundtrip.sh", cmd);
    srv
}

#[test]
fn podman_containerd_roundtrip() {
    podman_containerd_against(common::TestServer::start());
}

/// Blobs in S3, pulled by podman and containerd through `307` redirects to
/// presigned URLs.
#[test]
fn podman_containerd_roundtrip_on_s3_with_redirects() {
    let srv = common::TestServer::start_s3(true, &[]);
    let srv = podman_containerd_against(srv);
    assert!(
        srv.metric("berth_blob_redirects_total") > 0.0,
        "the client pulled no blob through a redirect"
    );
}

fn podman_containerd_against(srv: common::TestServer) -> common::TestServer {
    require("podman", "podman", &["--version"]);
    require("containerd", "containerd", &["--version"]);
    require("ctr", "ctr", &["--version"]);
    require("python3", "python3", &["--version"]);
    let mut cmd = Command::new("bash");
    cmd.arg(repo_path("tests/clients/podman_containerd_roundtrip.sh"))
        .arg(&srv.addr);
    run_script("podman_containerd_roundtrip.sh", cmd);
    srv
}

#[test]
fn clients_log_in() {
    require("skopeo", "skopeo", &["--version"]);
    require("podman", "podman", &["--version"]);
    require("containerd", "containerd", &["--version"]);
    require("python3", "python3", &["--version"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = dir.path().join("auth.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
        .args([
            "user",
            "add",
            "ci-user",
            "--group",
            "ml",
            "--password-stdin",
            "--auth",
        ])
        .arg(&auth)
        .stdin(Stdio::piped())
        .spawn()
        .expect("berth user add");
    {
        use std::io::Write as _;
        let mut stdin = child.stdin.take().expect("stdin");
        writeln!(stdin, "a-long-test-password").expect("password");
    }
    assert!(child.wait().expect("berth user add").success());
    let mut text = std::fs::read_to_string(&auth).expect("auth file");
    text.push_str(
        "\n[[grant]]\nto = [\"group:ml\"]\nrepos = \"team/**\"\nactions = [\"pull\", \"push\"]\n",
    );
    std::fs::write(&auth, text).expect("auth file");
    let srv = common::TestServer::start_with(&["--auth", auth.to_str().expect("path")]);
    let mut cmd = Command::new("bash");
    cmd.arg(repo_path("tests/clients/login_roundtrip.sh"))
        .arg(&srv.addr)
        .env("LOGIN_USER", "ci-user")
        .env("LOGIN_PASSWORD", "a-long-test-password");
    run_script("login_roundtrip.sh", cmd);
}
