//! Starts a real `berth serve` process on an ephemeral loopback port for integration tests.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// A Berth server process owned by a test; killed on drop.
pub struct TestServer {
    pub url: String,
    pub addr: String,
    pub data_dir: PathBuf,
    /// `serve` flags beyond the address and data directory (kept across restarts).
    flags: Vec<String>,
    child: Child,
    _tmp: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A fresh server on a new temporary data directory.
    pub fn start() -> TestServer {
        Self::start_with(&[])
    }

    /// A fresh server with extra `serve` flags.
    pub fn start_with(extra: &[&str]) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("data");
        let mut s = Self::start_in(&dir, extra);
        s._tmp = Some(tmp);
        s
    }

    /// A fresh server whose blobs live in a new bucket of the test S3 server
    /// (`scripts/s3-test-server.sh start` prints the variables it reads; the
    /// test command starts it). With `redirect`, blob `GET`s answer `307` to a
    /// presigned URL.
    pub fn start_s3(redirect: bool, extra: &[&str]) -> TestServer {
        let tmp = tempfile::tempdir().expect("tempdir");
        let config = tmp.path().join("berth.toml");
        std::fs::write(&config, s3_config(redirect)).expect("config");
        let mut flags = vec!["--config", config.to_str().expect("path")];
        flags.extend_from_slice(extra);
        let mut s = Self::start_in(&tmp.path().join("data"), &flags);
        s._tmp = Some(tmp);
        s
    }

    /// A server on the given data directory (used to test restarts).
    pub fn start_in(data_dir: &Path, extra: &[&str]) -> TestServer {
        let mut child = Command::new(env!("CARGO_BIN_EXE_berth"))
            .arg("serve")
            .arg("--addr")
            .arg("127.0.0.1:0")
            .arg("--data-dir")
            .arg(data_dir)
            .args(extra)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn berth serve");
        // The server prints `berth listening on ADDR` on stdout once it accepts connections.
        let stdout = child.stdout.take().expect("stdout");
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        reader.read_line(&mut line).expect("read listen line");
        // Keep draining stdout so that the server never writes to a closed pipe.
        std::thread::spawn(move || std::io::copy(&mut reader, &mut std::io::sink()));
        let addr = line
            .trim()
            .strip_prefix("berth listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from berth: {line:?}"))
            .to_string();
        TestServer {
            url: format!("http://{addr}"),
            addr,
            data_dir: data_dir.to_path_buf(),
            flags: extra.iter().map(|f| f.to_string()).collect(),
            child,
            _tmp: None,
        }
    }

    /// Stops the process (SIGKILL, like a crash) and starts a new one on the same
    /// data directory, with the same flags.
    pub fn restart(mut self) -> TestServer {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let tmp = self._tmp.take();
        let flags: Vec<&str> = self.flags.iter().map(String::as_str).collect();
        let mut s = Self::start_in(&self.data_dir.clone(), &flags);
        s._tmp = tmp;
        s
    }
}

impl TestServer {
    /// A counter or gauge from `/metrics` (0 when absent).
    pub fn metric(&self, name: &str) -> f64 {
        use std::io::{Read, Write};
        let mut conn = std::net::TcpStream::connect(&self.addr).expect("connect");
        write!(
            conn,
            "GET /metrics HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            self.addr
        )
        .expect("request");
        let mut text = String::new();
        conn.read_to_string(&mut text).expect("metrics");
        text.lines()
            .filter_map(|l| l.strip_prefix(name))
            .filter_map(|rest| rest.trim().parse::<f64>().ok())
            .sum()
    }

    /// The server's process id (for signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
    }

    /// Waits up to `timeout` for the process to exit; true if it did.
    pub fn wait_exit(mut self, timeout: std::time::Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        false
    }
}

/// An `[s3]` section for a new bucket on the test S3 server.
pub fn s3_config(redirect: bool) -> String {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: start the test S3 server with eval \"$(scripts/s3-test-server.sh start)\" (scripts/test.sh does)"
            )
        })
    };
    let bucket = format!(
        "berth-it-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    );
    format!(
        "[s3]\nbucket = \"{bucket}\"\nprefix = \"berth/\"\nregion = \"us-east-1\"\nendpoint = \"{}\"\npath_style = true\naccess_key_id = \"{}\"\nsecret_access_key = \"{}\"\ncreate_bucket = true\nredirect_downloads = {redirect}\npart_size_mib = 5\n",
        var("BERTH_TEST_S3_ENDPOINT"),
        var("BERTH_TEST_S3_ACCESS_KEY"),
        var("BERTH_TEST_S3_SECRET_KEY"),
    )
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
