//! The garbage-collection stage (`--gc-blobs N`): a fresh Berth holding N small
//! blobs, half of them named by manifests of 100 layers each; then a dry run
//! and an applied collection (grace 0) that sweeps the other half, timed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, ensure};
use hyper::{Method, StatusCode};

use crate::http::{self, Conn, expect};
use crate::oci::{MANIFEST_TYPE, sha256_digest};
use crate::report::{self, Results};
use crate::servers::Server;

const LOADERS: usize = 16;
const LAYERS_PER_MANIFEST: usize = 100;

fn blob_bytes(i: usize) -> Vec<u8> {
    format!("gc bench blob {i:09} ").repeat(40).into_bytes()
}

/// Pushes blobs `i` with `i % LOADERS == k`, monolithically.
async fn load(
    srv_addr: std::net::SocketAddr,
    n: usize,
    k: usize,
    done: Arc<AtomicUsize>,
) -> Result<()> {
    let mut c = Conn::connect(srv_addr).await?;
    for i in (k..n).step_by(LOADERS) {
        let b = blob_bytes(i);
        let path = format!("/v2/bench/gc/blobs/uploads/?digest={}", sha256_digest(&b));
        let r = c
            .send(http::req(
                Method::POST,
                &path,
                &[("content-length", b.len().to_string())],
                http::full(b),
            ))
            .await?;
        http::drain(expect(r, StatusCode::CREATED, "POST ?digest= (gc load)").await?).await?;
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

async fn manifests(c: &mut Conn, n: usize) -> Result<()> {
    let config = b"{}";
    let path = format!(
        "/v2/bench/gc/blobs/uploads/?digest={}",
        sha256_digest(config)
    );
    let r = c
        .send(http::req(
            Method::POST,
            &path,
            &[("content-length", "2".into())],
            http::full(&config[..]),
        ))
        .await?;
    http::drain(expect(r, StatusCode::CREATED, "POST config").await?).await?;
    for (m, chunk) in (0..n / 2)
        .collect::<Vec<_>>()
        .chunks(LAYERS_PER_MANIFEST)
        .enumerate()
    {
        let layers: Vec<_> = chunk
            .iter()
            .map(|&i| {
                let b = blob_bytes(2 * i);
                serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar",
                                   "digest": sha256_digest(&b), "size": b.len()})
            })
            .collect();
        let body = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": sha256_digest(config), "size": 2},
            "layers": layers,
        }))?;
        let r = c
            .send(http::req(
                Method::PUT,
                &format!("/v2/bench/gc/manifests/v{m}"),
                &[("content-type", MANIFEST_TYPE.into())],
                http::full(body),
            ))
            .await?;
        http::drain(expect(r, StatusCode::CREATED, "PUT manifest (gc load)").await?).await?;
    }
    Ok(())
}

async fn collect(c: &mut Conn, query: &str) -> Result<(f64, serde_json::Value)> {
    let t = Instant::now();
    let r = c
        .send(http::req(
            Method::POST,
            &format!("/api/v1/gc?{query}"),
            &[],
            http::empty(),
        ))
        .await?;
    let body = http::collect(expect(r, StatusCode::OK, "POST /api/v1/gc").await?).await?;
    Ok((t.elapsed().as_secs_f64(), serde_json::from_slice(&body)?))
}

pub async fn gc_stage(srv: &Server, name: &str, n: usize, res: &mut Results) -> Result<()> {
    eprintln!("== gc stage: loading {n} blobs into {name} ...");
    let t = Instant::now();
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for k in 0..LOADERS {
        tasks.push(tokio::spawn(load(srv.addr, n, k, done.clone())));
    }
    for t in tasks {
        t.await.context("loader")??;
    }
    let mut c = Conn::connect(srv.addr).await?;
    manifests(&mut c, n).await?;
    let load_secs = t.elapsed().as_secs_f64();
    res.add(name, report::GC_LOAD_RATE, n as f64 / load_secs);
    let (dry, report_dry) = collect(&mut c, "grace_secs=0").await?;
    let would = report_dry["blobs"].as_array().map_or(0, Vec::len);
    res.add(name, report::GC_DRY_SECS, dry);
    let (apply, report_apply) = collect(&mut c, "apply=true&grace_secs=0").await?;
    let swept = report_apply["blobs"].as_array().map_or(0, Vec::len);
    res.add(name, report::GC_APPLY_SECS, apply);
    // Half the blobs are named by no manifest (the config and the manifests stay).
    ensure!(
        would == n - n / 2 && swept == would,
        "gc listed {would}, swept {swept} of {n} blobs"
    );
    eprintln!(
        "gc stage: loaded in {load_secs:.1} s; dry run {dry:.2} s, applied {apply:.2} s, {swept} blobs swept"
    );
    Ok(())
}
