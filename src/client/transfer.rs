//! What uploads and downloads share: progress bars, an optional bandwidth limit,
//! byte sizes as users type them, and a request body streamed from a blocking reader.

use std::io::{IsTerminal, Read};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::StreamExt;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Parses `1048576`, `64MiB`, `64M`, `512k`, `1.5GiB` (binary units; `B` optional).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("{text:?} is not a size (e.g. 64MiB)"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        _ => return Err(format!("{text:?}: unknown unit (use K, M, G or T)")),
    };
    let v = n * mult as f64;
    if !v.is_finite() || v < 1.0 || v > u64::MAX as f64 {
        return Err(format!("{text:?} is out of range"));
    }
    Ok(v as u64)
}

/// A shared bandwidth cap over all transfers of a command (`--limit-rate`).
#[derive(Clone, Default)]
pub struct RateLimit(Option<Arc<Mutex<RateState>>>);

struct RateState {
    bytes_per_sec: u64,
    start: Instant,
    sent: u64,
}

impl RateLimit {
    pub fn new(bytes_per_sec: Option<u64>) -> RateLimit {
        RateLimit(bytes_per_sec.map(|b| {
            Arc::new(Mutex::new(RateState {
                bytes_per_sec: b.max(1),
                start: Instant::now(),
                sent: 0,
            }))
        }))
    }

    /// Accounts for `n` bytes and sleeps until sending them keeps within the cap.
    pub async fn take(&self, n: u64) {
        let Some(state) = &self.0 else { return };
        let wait = match state.lock() {
            Ok(mut s) => {
                s.sent += n;
                let due = Duration::from_secs_f64(s.sent as f64 / s.bytes_per_sec as f64);
                due.saturating_sub(s.start.elapsed())
            }
            Err(_) => Duration::ZERO,
        };
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }
}

/// Progress bars on stderr, hidden when stderr is not a terminal or with `--quiet`.
#[derive(Clone)]
pub struct Progress {
    multi: MultiProgress,
    visible: bool,
}

impl Progress {
    pub fn new(quiet: bool) -> Progress {
        let visible = !quiet && std::io::stderr().is_terminal();
        let target = if visible {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            multi: MultiProgress::with_draw_target(target),
            visible,
        }
    }

    pub fn visible(&self) -> bool {
        self.visible
    }

    /// A byte bar for one blob (`prefix` says what is happening: push, pull, hash).
    pub fn bar(&self, prefix: &'static str, label: &str, total: u64) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new(total));
        if let Ok(style) = ProgressStyle::with_template(
            "{prefix:>12.cyan} {wide_msg} {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12} {eta:>4}",
        ) {
            bar.set_style(style);
        }
        bar.set_prefix(prefix);
        bar.set_message(shorten(label, 48));
        bar
    }

    /// Prints a line above the bars (or to stderr when they are hidden).
    pub fn println(&self, line: &str) {
        if self.visible {
            let _ = self.multi.println(line);
        } else {
            eprintln!("{line}");
        }
    }
}

fn shorten(s: &str, max: usize) -> String {
    let n = s.chars().count();
    if n <= max {
        return s.to_string();
    }
    let tail: String = s.chars().skip(n - (max - 1)).collect();
    format!("…{tail}")
}

/// A request body of exactly `len` bytes read from `reader` on a blocking thread,
/// counted into `bar` and kept under `limit` as it is sent.
pub fn body_from_reader(
    reader: impl Read + Send + 'static,
    len: u64,
    bar: ProgressBar,
    limit: RateLimit,
) -> reqwest::Body {
    const BUF: usize = 256 * 1024;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(4);
    tokio::task::spawn_blocking(move || {
        let mut r = reader.take(len);
        let mut left = len;
        while left > 0 {
            let mut buf = vec![0u8; BUF.min(left as usize)];
            let item = match r.read(&mut buf) {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("source ended {left} bytes early"),
                )),
                Ok(n) => {
                    buf.truncate(n);
                    left -= n as u64;
                    Ok(Bytes::from(buf))
                }
                Err(e) => Err(e),
            };
            let stop = item.is_err();
            if tx.blocking_send(item).is_err() || stop {
                return;
            }
        }
    });
    let stream = tokio_stream_from(rx).then(move |item| {
        let bar = bar.clone();
        let limit = limit.clone();
        async move {
            if let Ok(b) = &item {
                limit.take(b.len() as u64).await;
                bar.inc(b.len() as u64);
            }
            item
        }
    });
    reqwest::Body::wrap_stream(stream)
}

fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_util::Stream<Item = T> + Send + 'static {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|v| (v, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1048576"), Ok(1 << 20));
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64m"), Ok(64 << 20));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        for bad in ["", "MiB", "0", "-1", "12 parsecs", "1e400"] {
            assert!(parse_size(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shortens_labels() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdefgh", 5), "…efgh");
    }
}
