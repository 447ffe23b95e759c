//! Starting, watching and stopping the servers under test: CNCF distribution,
//! Berth and nginx, each in a work directory the bench owns, on loopback.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use hyper::{Method, StatusCode};

use crate::http::{self, Conn};

/// A child process killed (TERM, then KILL) on drop.
pub struct Server {
    pub name: String,
    pub addr: SocketAddr,
    pub pid: u32,
    pub log: PathBuf,
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid.to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// Fails with the log's tail if the process has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(st) = self.child.try_wait()? {
            bail!(
                "{} exited ({st}); log tail:\n{}",
                self.name,
                log_tail(&self.log)
            );
        }
        Ok(())
    }
}

pub fn log_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn answers_ok(addr: SocketAddr, path: &str) -> bool {
    let Ok(mut c) = Conn::connect(addr).await else {
        return false;
    };
    let r = c
        .send(http::req(Method::GET, path, &[], http::empty()))
        .await;
    // 401: a registry with authentication is up, and asks who is there.
    matches!(r, Ok(r) if r.status() == StatusCode::OK || r.status() == StatusCode::UNAUTHORIZED)
}

/// Polls `GET path` until it answers 200 (or 401).
async fn wait_ready(srv: &mut Server, path: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        srv.check_alive()?;
        if answers_ok(srv.addr, path).await {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} did not answer GET {path} with 200 or 401 within 20 s; log tail:\n{}",
                srv.name,
                log_tail(&srv.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// CNCF distribution (Debian `docker-registry`) on a local filesystem root.
pub async fn start_distribution(bin: &Path, dir: &Path) -> Result<Server> {
    std::fs::create_dir_all(dir.join("storage"))?;
    let port = free_port()?;
    let cfg = dir.join("config.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n  \
             cache:\n    blobdescriptor: inmemory\n  maintenance:\n    uploadpurging:\n      enabled: false\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.join("storage").display()
        ),
    )?;
    let log = dir.join("distribution.log");
    let out = std::fs::File::create(&log)?;
    let child = Command::new(bin)
        .arg("serve")
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("spawn {} (run benches/setup.sh)", bin.display()))?;
    let mut srv = Server {
        name: "distribution".into(),
        addr: format!("127.0.0.1:{port}").parse()?,
        pid: child.id(),
        log,
        child,
    };
    wait_ready(&mut srv, "/v2/").await?;
    Ok(srv)
}

/// A Berth config file for a new bucket on the S3 server the tests use: the
/// one `BERTH_TEST_S3_*` names, else the one `scripts/s3-test-server.sh start`
/// starts (and leaves running; `stop` ends it).
pub fn s3_config(dir: &Path) -> Result<PathBuf> {
    let mut vars: std::collections::HashMap<String, String> = std::env::vars()
        .filter(|(k, _)| k.starts_with("BERTH_TEST_S3_"))
        .collect();
    if !vars.contains_key("BERTH_TEST_S3_ENDPOINT") {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/s3-test-server.sh");
        let out = Command::new("bash")
            .arg(&script)
            .arg("start")
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        if !out.status.success() {
            bail!("{} start failed", script.display());
        }
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let Some((k, v)) = line.trim_start_matches("export ").split_once('=') {
                vars.insert(k.to_string(), v.to_string());
            }
        }
    }
    let var = |k: &str| {
        vars.get(k)
            .cloned()
            .with_context(|| format!("{k} not set by the S3 server script"))
    };
    let bucket = format!("berth-bench-{}", std::process::id());
    let cfg = dir.join("berth-s3.toml");
    std::fs::write(
        &cfg,
        format!(
            "[s3]\nbucket = \"{bucket}\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\npath_style = true\n\
             access_key_id = \"{}\"\nsecret_access_key = \"{}\"\ncreate_bucket = true\n",
            var("BERTH_TEST_S3_ENDPOINT")?,
            var("BERTH_TEST_S3_ACCESS_KEY")?,
            var("BERTH_TEST_S3_SECRET_KEY")?,
        ),
    )?;
    Ok(cfg)
}

const LISTEN_PREFIX: &str = "berth listening on ";

/// `berth serve --addr 127.0.0.1:0 --data-dir DIR [extra]`; reads `berth listening on ADDR`.
pub async fn start_berth(bin: &Path, dir: &Path, name: &str, extra: &[&str]) -> Result<Server> {
    std::fs::create_dir_all(dir)?;
    let log = dir.join("berth.log");
    let err = std::fs::File::create(&log)?;
    let mut child = Command::new(bin)
        .arg("serve")
        .arg("--addr")
        .arg("127.0.0.1:0")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(extra)
        .env(
            "RUST_LOG",
            std::env::var("BERTH_BENCH_RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(err.try_clone()?)
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    // Wait for the listen line (other lines go to the log), then keep draining
    // stdout into the log so the pipe never fills.
    std::thread::spawn(move || {
        let mut rd = BufReader::new(stdout);
        let mut sink = err;
        let mut buf = String::new();
        let mut tx = Some(tx);
        while rd.read_line(&mut buf).map(|n| n > 0).unwrap_or(false) {
            if tx.is_some() && buf.starts_with(LISTEN_PREFIX) {
                let _ = tx.take().unwrap().send(buf.clone());
            } else {
                let _ = sink.write_all(buf.as_bytes());
            }
            buf.clear();
        }
    });
    let pid = child.id();
    let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
        let _ = child.kill();
        let st = child.wait().ok();
        bail!(
            "{name}: no `{LISTEN_PREFIX}ADDR` line on stdout (exit: {st:?}); log tail:\n{}",
            log_tail(&log)
        );
    };
    let addr = line.trim_end().trim_start_matches(LISTEN_PREFIX);
    let addr: SocketAddr = addr
        .parse()
        .with_context(|| format!("{name}: bad listen address {addr:?}"))?;
    let mut srv = Server {
        name: name.into(),
        addr,
        pid,
        log,
        child,
    };
    wait_ready(&mut srv, "/v2/").await?;
    Ok(srv)
}

/// nginx as a static-file ceiling: a temp config owned by the bench, `root` = `www`.
pub async fn start_nginx(bin: &Path, dir: &Path, www: &Path) -> Result<Server> {
    std::fs::create_dir_all(dir.join("tmp"))?;
    let port = free_port()?;
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    // `user root` only applies when started as root (workers must read the 0700 temp dir).
    let user = if is_root() { "user root;\n" } else { "" };
    std::fs::write(
        &conf,
        format!(
            "{user}worker_processes auto;\ndaemon off;\npid {d}/nginx.pid;\nerror_log {d}/nginx-error.log warn;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  tcp_nopush on;\n  tcp_nodelay on;\n\
               keepalive_requests 10000000;\n  keepalive_timeout 300s;\n  default_type application/octet-stream;\n\
               client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n\
               fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {};\n    location / {{ }}\n  }}\n}}\n",
            www.display()
        ),
    )?;
    let log = dir.join("nginx-error.log");
    let out = std::fs::File::create(dir.join("nginx-stdout.log"))?;
    let child = Command::new(bin)
        .arg("-e")
        .arg(&log)
        .arg("-p")
        .arg(dir)
        .arg("-c")
        .arg(&conf)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
        .with_context(|| format!("spawn {} (run benches/setup.sh)", bin.display()))?;
    let mut srv = Server {
        name: "nginx".into(),
        addr: format!("127.0.0.1:{port}").parse()?,
        pid: child.id(),
        log,
        child,
    };
    wait_ready(&mut srv, "/manifest.json").await?;
    Ok(srv)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .map(|s| {
            s.lines()
                .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A `/proc/PID/status` field in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find(|l| l.starts_with(key) && l[key.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Peak resident memory of a process over a window: resets VmHWM (clear_refs 5)
/// where the kernel allows, and samples VmRSS every 10 ms as well.
pub struct RssWatch {
    pid: u32,
    hwm_reset: bool,
    stop: Arc<AtomicBool>,
    max_kib: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl RssWatch {
    pub fn start(pid: u32) -> RssWatch {
        let hwm_reset = std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok();
        let stop = Arc::new(AtomicBool::new(false));
        let max_kib = Arc::new(AtomicU64::new(status_kib(pid, "VmRSS").unwrap_or(0)));
        let (s, m) = (stop.clone(), max_kib.clone());
        let task = tokio::task::spawn_blocking(move || {
            while !s.load(Ordering::Relaxed) {
                if let Some(v) = status_kib(pid, "VmRSS") {
                    m.fetch_max(v, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        });
        RssWatch {
            pid,
            hwm_reset,
            stop,
            max_kib,
            task,
        }
    }

    /// Peak RSS in MiB over the window.
    pub async fn finish(self) -> f64 {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.task.await;
        let mut kib = self.max_kib.load(Ordering::Relaxed);
        if self.hwm_reset {
            kib = kib.max(status_kib(self.pid, "VmHWM").unwrap_or(0));
        }
        kib as f64 / 1024.0
    }
}
