//! Helpers for tests/cli_push_pull.rs: a server plus a scratch directory, the
//! `berth` binary run as a process, model trees, and plain HTTP calls.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest as _, Sha256};

use crate::common::TestServer;

pub const MIB: usize = 1 << 20;
pub const INSTALL_HINT: &str =
    "run `scripts/install-test-deps.sh` (as root on Debian 12) to install the real clients";

/// A file of this repository.
pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A server, a scratch directory and a private upload-state cache.
pub struct Env {
    pub srv: TestServer,
    pub tmp: tempfile::TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env {
            srv: TestServer::start(),
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// With the server's blobs in S3 and blob `GET`s redirected to presigned URLs.
    pub fn on_s3() -> Env {
        Env {
            srv: TestServer::start_s3(true, &[]),
            tmp: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    /// `HOST/name` on this server.
    pub fn r(&self, name: &str) -> String {
        format!("{}/{name}", self.srv.addr)
    }

    pub fn cache(&self) -> PathBuf {
        self.path("cache")
    }

    /// The directory of pending upload records.
    pub fn upload_records(&self) -> PathBuf {
        self.cache().join("berth").join("uploads")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_berth"));
        c.args(args)
            .env("XDG_CACHE_HOME", self.cache())
            .env_remove("BERTH_CACHE_DIR")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null());
        c
    }

    /// Runs berth and returns stdout; fails the test with stderr if it fails.
    pub fn run(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run berth");
        check(&out, args);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs berth with `--json` and parses its output.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = args.to_vec();
        a.push("--json");
        let out = self.run(&a);
        serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("berth {args:?}: not JSON ({e}): {out}"))
    }

    /// Runs berth expecting failure; returns stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().expect("run berth");
        assert!(
            !out.status.success(),
            "berth {args:?} succeeded but should have failed: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `GET` a path of the server.
    pub fn get(&self, path: &str, accept: &str) -> (u16, Vec<u8>) {
        let url = format!("{}{path}", self.srv.url);
        let accept = accept.to_string();
        block_on(async move {
            let r = reqwest::Client::new()
                .get(url)
                .header("accept", accept)
                .send()
                .await
                .expect("GET");
            let status = r.status().as_u16();
            (status, r.bytes().await.expect("body").to_vec())
        })
    }

    pub fn get_json(&self, path: &str, accept: &str) -> serde_json::Value {
        let (status, body) = self.get(path, accept);
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).expect("JSON")
    }

    /// Pushes a blob monolithically.
    pub fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let d = sha256(bytes);
        let url = format!("{}/v2/{repo}/blobs/uploads/?digest={d}", self.srv.url);
        let body = bytes.to_vec();
        let status = block_on(async move {
            reqwest::Client::new()
                .post(url)
                .body(body)
                .send()
                .await
                .expect("POST")
                .status()
                .as_u16()
        });
        assert_eq!(status, 201, "push blob");
        d
    }

    /// Pushes a manifest; returns its digest.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> String {
        let url = format!("{}/v2/{repo}/manifests/{reference}", self.srv.url);
        let (mt, body) = (media_type.to_string(), body.to_vec());
        let d = sha256(&body);
        let status = block_on(async move {
            reqwest::Client::new()
                .put(url)
                .header("content-type", mt)
                .body(body)
                .send()
                .await
                .expect("PUT")
                .status()
                .as_u16()
        });
        assert_eq!(status, 201, "push manifest");
        d
    }

    /// `berth_http_received_bytes_total{route="upload"}` from `/metrics`.
    pub fn upload_bytes_received(&self) -> u64 {
        let (_, body) = self.get("/metrics", "text/plain");
        let text = String::from_utf8_lossy(&body);
        text.lines()
            .find_map(|l| l.strip_prefix("berth_http_received_bytes_total{route=\"upload\"} "))
            .map_or(0, |v| v.trim().parse().expect("counter value"))
    }
}

fn check(out: &Output, args: &[&str]) {
    assert!(
        out.status.success(),
        "berth {args:?} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Deterministic incompressible bytes (xorshift).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

pub fn write(root: &Path, rel: &str, data: &[u8]) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
    std::fs::write(&p, data).expect("write");
}

pub fn make_executable(root: &Path, rel: &str) {
    let p = root.join(rel);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// A small model: a multi-MiB weight, an adapter, tokenizer and config files, docs,
/// an executable script, nested directories, a dataset, an empty file and a
/// `berth.toml` (which is metadata, not content).
pub fn make_model(root: &Path, weight_mib: usize) {
    write(root, "model.safetensors", &noise(1, weight_mib * MIB + 123));
    write(
        root,
        "config.json",
        br#"{"architectures":["BerthTest"],"hidden_size":64}"#,
    );
    write(
        root,
        "tokenizer.json",
        br#"{"model":{"vocab":{"a":0,"b":1}}}"#,
    );
    write(
        root,
        "chat_template.jinja",
        b"{% for m in messages %}{{ m.content }}{% endfor %}",
    );
    write(
        root,
        "README.md",
        "# test model\n\nnon-ASCII: \u{e9}\u{df}\u{2603}\n".as_bytes(),
    );
    write(root, "LICENSE", b"Apache-2.0\n");
    write(root, "docs/LICENSE", b"Apache-2.0\n"); // same bytes as LICENSE: one blob, two paths
    write(root, "scripts/serve.sh", b"#!/bin/sh\necho serving\n");
    make_executable(root, "scripts/serve.sh");
    write(
        root,
        "adapters/lora/adapter_model.safetensors",
        &noise(2, 300 * 1024 + 7),
    );
    write(root, "adapters/lora/adapter_config.json", br#"{"r":8}"#);
    write(
        root,
        "data/eval/sample.jsonl",
        b"{\"q\":\"1+1\",\"a\":\"2\"}\n",
    );
    write(root, "empty.txt", b"");
    write(
        root,
        "berth.toml",
        b"run_id = \"run-42\"\ndataset = \"squad@2.0\"\n[params]\nlr = 0.0003\n[metrics]\nauc = 0.91\n",
    );
}

/// Relative path -> (sha256, executable) of every regular file, leaving out the
/// top-level `berth.toml` and `.berth`.
pub fn tree(root: &Path) -> BTreeMap<String, (String, bool)> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, (String, bool)>) {
        for e in std::fs::read_dir(dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            if rel == "berth.toml" || rel == ".berth" || rel == ".referrers" {
                continue;
            }
            let m = std::fs::symlink_metadata(&p).expect("stat");
            if m.is_dir() {
                walk(root, &p, out);
            } else {
                let exec = m.permissions().mode() & 0o111 != 0;
                out.insert(rel, (sha256(&std::fs::read(&p).expect("read")), exec));
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

pub fn assert_same_tree(expected: &Path, actual: &Path) {
    let (e, a) = (tree(expected), tree(actual));
    assert!(!e.is_empty());
    assert_eq!(
        e.keys().collect::<Vec<_>>(),
        a.keys().collect::<Vec<_>>(),
        "file lists differ between {} and {}",
        expected.display(),
        actual.display()
    );
    for (k, v) in &e {
        assert_eq!(Some(v), a.get(k), "{k}: (digest, executable) differ");
    }
}

/// Polls `cond` every 20 ms until it holds; panics after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Fails the test unless `program args...` runs and exits 0.
pub fn require(what: &str, program: &str, args: &[&str]) {
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

/// Runs a command to completion; fails the test with its output unless it exits 0.
pub fn run_ok(what: &str, cmd: &mut Command) -> String {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A tar whose entry names are written raw (the tar crate refuses hostile names).
pub fn raw_tar(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in entries {
        let mut h = tar::Header::new_old();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(tar::EntryType::Regular);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}
