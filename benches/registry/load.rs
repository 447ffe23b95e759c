//! Closed-loop load: `concurrency` workers, each on its own keep-alive
//! connection, issue one request after another for a fixed time. Every response
//! is checked; the first wrong one aborts the run. Latencies are kept whole and
//! sorted for exact percentiles.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use hyper::{Method, StatusCode};

use crate::http::{self, Conn, expect, header};

pub enum Op {
    /// GET expecting 200 and a body of exactly `len` bytes.
    Get {
        path: String,
        accept: Option<String>,
        len: u64,
        /// An `Authorization` header to send (a Bearer token).
        authorization: Option<String>,
    },
    /// HEAD expecting 200 and `Content-Length: len`.
    Head { path: String, len: u64 },
    /// GET the tags list, following `Link` pages, expecting `count` tags in all.
    TagsList { path: String, count: usize },
}

#[derive(Debug, Clone, Copy)]
pub struct LoadStats {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

pub async fn run(
    addr: SocketAddr,
    op: Arc<Op>,
    concurrency: usize,
    duration: Duration,
) -> Result<LoadStats> {
    let warmup = (duration / 5).min(Duration::from_secs(1));
    let mut conns = Vec::new();
    for _ in 0..concurrency {
        conns.push(Conn::connect(addr).await?);
    }
    let start = Instant::now();
    let measure_from = start + warmup;
    let end = measure_from + duration;
    let mut tasks = Vec::new();
    for mut c in conns {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::with_capacity(1 << 16);
            let mut expect_bytes = None;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let n = one(&mut c, &op, expect_bytes).await?;
                expect_bytes = Some(n);
                if t0 >= measure_from {
                    lat.push(t0.elapsed().as_nanos() as u64);
                }
            }
            anyhow::Ok(lat)
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await.context("load worker panicked")??);
    }
    ensure!(
        !lat.is_empty(),
        "no request completed in the measuring window"
    );
    lat.sort_unstable();
    let pct =
        |p: f64| lat[((lat.len() as f64 * p).ceil() as usize).clamp(1, lat.len()) - 1] as f64 / 1e6;
    Ok(LoadStats {
        rps: lat.len() as f64 / duration.as_secs_f64(),
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
    })
}

/// One checked operation; returns the bytes received (used to check later tags lists cheaply).
async fn one(c: &mut Conn, op: &Op, seen: Option<u64>) -> Result<u64> {
    match op {
        Op::Get {
            path,
            accept,
            len,
            authorization,
        } => {
            let mut h: Vec<(&str, String)> = accept.iter().map(|a| ("accept", a.clone())).collect();
            h.extend(authorization.iter().map(|a| ("authorization", a.clone())));
            let r = c
                .send(http::req(Method::GET, path, &h, http::empty()))
                .await?;
            let r = expect(r, StatusCode::OK, &format!("GET {path}")).await?;
            let n = http::drain(r).await?;
            ensure!(n == *len, "GET {path}: {n} bytes, expected {len}");
            Ok(n)
        }
        Op::Head { path, len } => {
            let r = c
                .send(http::req(Method::HEAD, path, &[], http::empty()))
                .await?;
            let r = expect(r, StatusCode::OK, &format!("HEAD {path}")).await?;
            let cl = header(&r, "content-length").unwrap_or_default().to_string();
            ensure!(
                cl == len.to_string(),
                "HEAD {path}: Content-Length {cl:?}, expected {len}"
            );
            http::drain(r).await?;
            Ok(0)
        }
        Op::TagsList { path, count } => {
            let mut next = Some(path.clone());
            let (mut tags, mut bytes) = (0usize, 0u64);
            while let Some(p) = next.take() {
                let r = c
                    .send(http::req(Method::GET, &p, &[], http::empty()))
                    .await?;
                let r = expect(r, StatusCode::OK, &format!("GET {p}")).await?;
                next = header(&r, "link").and_then(next_link);
                let body = http::collect(r).await?;
                bytes += body.len() as u64;
                if seen.is_none() {
                    let v: serde_json::Value =
                        serde_json::from_slice(&body).context("tags list JSON")?;
                    tags += v["tags"].as_array().map(|a| a.len()).unwrap_or(0);
                }
            }
            match seen {
                None => ensure!(
                    tags == *count,
                    "tags list {path}: {tags} tags, expected {count}"
                ),
                Some(n) => ensure!(
                    n == bytes,
                    "tags list {path}: {bytes} bytes, first answer had {n}"
                ),
            }
            Ok(bytes)
        }
    }
}

/// `<url>; rel="next"` → origin-form url.
fn next_link(v: &str) -> Option<String> {
    let (url, rest) = v.trim().strip_prefix('<')?.split_once('>')?;
    rest.contains("rel=\"next\"")
        .then(|| http::origin_form(url))
}
