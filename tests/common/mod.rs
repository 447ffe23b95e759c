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

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
