//! The workloads, run the same way against each server. Each figure is
//! recorded per round; a failed request marks that figure FAIL (never a speed).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use bytes::Bytes;

use crate::blob::{Blob, BlobSource};
use crate::http::Conn;
use crate::load::{self, Op};
use crate::oci::{self, MANIFEST_TYPE};
use crate::report::{self as rep, Results};
use crate::servers::{RssWatch, Server};

pub const MIB: f64 = 1024.0 * 1024.0;
pub const BLOB_REPO: &str = "bench/blob";
pub const META_REPO: &str = "bench/meta";
pub const TAGS_REPO: &str = "bench/tags";

pub struct Params {
    pub chunk: u64,
    pub parallel: u64,
    pub duration: Duration,
    pub tags: usize,
    pub manifest_puts: usize,
    pub push_concurrency: usize,
}

/// The small objects every manifest refers to; identical bytes on every server.
pub struct MetaObjects {
    pub config: Bytes,
    pub layer: Bytes,
    pub manifest: Bytes,
}

impl MetaObjects {
    pub fn new() -> MetaObjects {
        let layer = Bytes::from(vec![0x42u8; 1024]);
        let layer_d = oci::sha256_digest(&layer);
        let config = Bytes::from(
            serde_json::to_vec(&serde_json::json!({
                "architecture": "amd64", "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [layer_d]}
            }))
            .unwrap(),
        );
        let manifest = Self::manifest_of(&config, &layer, "berth bench");
        MetaObjects {
            config,
            layer,
            manifest,
        }
    }

    fn manifest_of(config: &Bytes, layer: &Bytes, note: &str) -> Bytes {
        oci::manifest(
            (&oci::sha256_digest(config), config.len()),
            (&oci::sha256_digest(layer), layer.len()),
            note,
        )
    }

    pub fn layer_digest(&self) -> String {
        oci::sha256_digest(&self.layer)
    }

    /// Pushes config and layer into `repo` (untimed).
    async fn push_blobs(&self, c: &mut Conn, repo: &str) -> Result<()> {
        oci::push_small(c, repo, self.config.clone()).await?;
        oci::push_small(c, repo, self.layer.clone()).await?;
        Ok(())
    }
}

fn mibs(bytes: u64, d: Duration) -> f64 {
    bytes as f64 / MIB / d.as_secs_f64()
}

fn record(res: &mut Results, subj: &str, key: &str, r: Result<f64>, unit: &str) {
    match r {
        Ok(v) => {
            eprintln!(
                "  {:>6.1}s {subj:<14} {key:<28} {v:>10.2} {unit}",
                crate::elapsed()
            );
            res.add(subj, key, v);
        }
        Err(e) => res.fail(subj, key, &e),
    }
}

/// Pushes (monolithic and chunked); for a registry whose figures count fully,
/// also the three pulls and peak RSS over all of it.
pub async fn blob_round(
    srv: &Server,
    subj: &str,
    src: &BlobSource,
    round: usize,
    p: &Params,
    pulls: Pulls,
    res: &mut Results,
) {
    let errors_before = res.errors.len();
    let rss = RssWatch::start(srv.pid);
    let mono = src.blob(&format!("{subj}-r{round}-mono"));
    let chunked = src.blob(&format!("{subj}-r{round}-chunked"));
    let r = async {
        let mut c = Conn::connect(srv.addr).await?;
        Ok(mibs(
            mono.size,
            oci::push_monolithic(&mut c, BLOB_REPO, &mono).await?,
        ))
    }
    .await;
    let mono_ok = r.is_ok();
    record(res, subj, rep::PUSH_MONO, r, "MiB/s");
    let r = async {
        let mut c = Conn::connect(srv.addr).await?;
        Ok(mibs(
            chunked.size,
            oci::push_chunked(&mut c, BLOB_REPO, &chunked, p.chunk).await?,
        ))
    }
    .await;
    record(res, subj, rep::PUSH_CHUNKED, r, "MiB/s");
    if pulls == Pulls::First {
        let r = first_pull(srv.addr, &mono).await;
        record(res, subj, rep::PULL_FIRST, r, "MiB/s");
    }
    if pulls == Pulls::All {
        // Pull what was just pushed (the chunked blob if the monolithic push failed).
        let blob = if mono_ok { &mono } else { &chunked };
        pull_set(
            srv.addr,
            &oci::blob_path(BLOB_REPO, &blob.digest),
            blob,
            subj,
            p.parallel,
            res,
        )
        .await;
        let peak = rss.finish().await;
        // A peak over failed requests is no figure for the workload.
        if res.errors.len() == errors_before {
            record(res, subj, rep::RSS_BLOB, Ok(peak), "MiB");
        } else {
            res.mark_failed(subj, rep::RSS_BLOB);
        }
    } else {
        rss.finish().await;
    }
}

/// Which pulls follow the pushes of a round.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pulls {
    /// Every pull, and peak RSS over the round.
    All,
    /// One single-stream pull of the monolithic blob.
    First,
    None,
}

async fn first_pull(addr: SocketAddr, blob: &Blob) -> Result<f64> {
    let mut c = Conn::connect(addr).await?;
    let t = Instant::now();
    let got = oci::pull(&mut c, &oci::blob_path(BLOB_REPO, &blob.digest), blob, None).await?;
    Ok(mibs(got, t.elapsed()))
}

/// Single-stream, n concurrent, and n Range-part pulls of one blob at `path`.
pub async fn pull_set(
    addr: SocketAddr,
    path: &str,
    blob: &Blob,
    subj: &str,
    n: u64,
    res: &mut Results,
) {
    // The first pull after a push reads what the registry left in the page
    // cache (Berth writes uploads around it); the second is the serving path
    // over cached bytes, comparable with nginx serving a cached file.
    for key in [rep::PULL_FIRST, rep::PULL_SINGLE] {
        let r = async {
            let mut c = Conn::connect(addr).await?;
            let t = Instant::now();
            let got = oci::pull(&mut c, path, blob, None).await?;
            Ok(mibs(got, t.elapsed()))
        }
        .await;
        record(res, subj, key, r, "MiB/s");
    }
    let r = oci::pull_parallel(addr, path, blob, n, false)
        .await
        .map(|(b, d)| mibs(b, d));
    record(res, subj, rep::PULL_PAR, r, "MiB/s");
    let r = oci::pull_parallel(addr, path, blob, n, true)
        .await
        .map(|(b, d)| mibs(b, d));
    record(res, subj, rep::PULL_RANGE, r, "MiB/s");
}

/// Once per server: the manifest tagged `latest` in the meta repository, and
/// the tags-list repository with `p.tags` tags (each on its own manifest).
pub async fn meta_setup(srv: &Server, objs: &MetaObjects, p: &Params) -> Result<()> {
    let mut c = Conn::connect(srv.addr).await?;
    objs.push_blobs(&mut c, META_REPO).await?;
    oci::put_manifest(&mut c, META_REPO, "latest", objs.manifest.clone()).await?;
    manifest_pushes(
        srv.addr,
        TAGS_REPO,
        objs,
        "tags",
        p.tags,
        p.push_concurrency,
    )
    .await?;
    Ok(())
}

/// Request-rate workloads: manifest GET by tag, HEAD blob, manifest PUT, tags list.
pub async fn meta_round(
    srv: &Server,
    subj: &str,
    objs: &MetaObjects,
    round: usize,
    p: &Params,
    res: &mut Results,
) {
    let get = Arc::new(Op::Get {
        path: format!("/v2/{META_REPO}/manifests/latest"),
        accept: Some(MANIFEST_TYPE.into()),
        len: objs.manifest.len() as u64,
        authorization: None,
    });
    let head = Arc::new(Op::Head {
        path: oci::blob_path(META_REPO, &objs.layer_digest()),
        len: objs.layer.len() as u64,
    });
    load_set(srv.addr, subj, get, head, p, res).await;

    // Manifest pushes: unique manifests under new tags into a fresh repository.
    let repo = format!("bench/mput-r{round}");
    let note = format!("round {round}");
    let r = manifest_pushes(
        srv.addr,
        &repo,
        objs,
        &note,
        p.manifest_puts,
        p.push_concurrency,
    )
    .await;
    record(res, subj, rep::MPUSH_RPS, r, "req/s");

    let op = Arc::new(Op::TagsList {
        path: format!("/v2/{TAGS_REPO}/tags/list"),
        count: p.tags,
    });
    match load::run(srv.addr, op, 1, p.duration).await {
        Ok(s) => {
            record(res, subj, rep::TAGS_RPS, Ok(s.rps), "req/s");
            record(res, subj, rep::TAGS_P50, Ok(s.p50_ms), "ms");
        }
        Err(e) => {
            res.fail(subj, rep::TAGS_RPS, &e);
            res.fail(subj, rep::TAGS_P50, &e);
        }
    }
}

/// GET at each concurrency, then HEAD at 16 (also used for nginx with a static file).
pub async fn load_set(
    addr: SocketAddr,
    subj: &str,
    get: Arc<Op>,
    head: Arc<Op>,
    p: &Params,
    res: &mut Results,
) {
    for c in rep::GET_CONC {
        match load::run(addr, get.clone(), c, p.duration).await {
            Ok(s) => {
                record(res, subj, &rep::get_key(c, "rps"), Ok(s.rps), "req/s");
                record(res, subj, &rep::get_key(c, "p50_ms"), Ok(s.p50_ms), "ms");
                record(res, subj, &rep::get_key(c, "p99_ms"), Ok(s.p99_ms), "ms");
            }
            Err(e) => {
                for w in ["rps", "p50_ms", "p99_ms"] {
                    res.fail(subj, &rep::get_key(c, w), &e);
                }
            }
        }
    }
    match load::run(addr, head, 16, p.duration).await {
        Ok(s) => {
            record(res, subj, rep::HEAD_RPS, Ok(s.rps), "req/s");
            record(res, subj, rep::HEAD_P99, Ok(s.p99_ms), "ms");
        }
        Err(e) => {
            res.fail(subj, rep::HEAD_RPS, &e);
            res.fail(subj, rep::HEAD_P99, &e);
        }
    }
}

/// `count` unique manifests under tags t00000.. over `concurrency` connections; PUTs/s.
async fn manifest_pushes(
    addr: SocketAddr,
    repo: &str,
    objs: &MetaObjects,
    note: &str,
    count: usize,
    concurrency: usize,
) -> Result<f64> {
    let mut c = Conn::connect(addr).await?;
    objs.push_blobs(&mut c, repo).await?;
    let bodies: Arc<Vec<Bytes>> = Arc::new(
        (0..count)
            .map(|i| {
                MetaObjects::manifest_of(&objs.config, &objs.layer, &format!("{note} manifest {i}"))
            })
            .collect(),
    );
    let mut conns = vec![c];
    for _ in 1..concurrency {
        conns.push(Conn::connect(addr).await?);
    }
    let next = Arc::new(AtomicUsize::new(0));
    let t = Instant::now();
    let mut tasks = Vec::new();
    for mut c in conns {
        let (bodies, next, repo) = (bodies.clone(), next.clone(), repo.to_string());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() {
                    return anyhow::Ok(());
                }
                oci::put_manifest(&mut c, &repo, &format!("t{i:05}"), bodies[i].clone()).await?;
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(count as f64 / t.elapsed().as_secs_f64())
}

/// The `--big` stage: push then pull one large blob, peak RSS for each half.
pub async fn big_round(
    srv: &Server,
    subj: &str,
    src: &BlobSource,
    round: usize,
    res: &mut Results,
) {
    let blob = src.blob(&format!("{subj}-big-r{round}"));
    let rss = RssWatch::start(srv.pid);
    let r = async {
        let mut c = Conn::connect(srv.addr).await?;
        Ok(mibs(
            blob.size,
            oci::push_monolithic(&mut c, "bench/big", &blob).await?,
        ))
    }
    .await;
    let peak = rss.finish().await;
    if r.is_err() {
        record(res, subj, rep::BIG_PUSH, r, "MiB/s");
        for key in [rep::BIG_RSS_PUSH, rep::BIG_PULL, rep::BIG_RSS_PULL] {
            res.mark_failed(subj, key);
        }
        return;
    }
    record(res, subj, rep::BIG_PUSH, r, "MiB/s");
    record(res, subj, rep::BIG_RSS_PUSH, Ok(peak), "MiB");
    let rss = RssWatch::start(srv.pid);
    let r = async {
        let mut c = Conn::connect(srv.addr).await?;
        let t = Instant::now();
        let n = oci::pull(
            &mut c,
            &oci::blob_path("bench/big", &blob.digest),
            &blob,
            None,
        )
        .await?;
        Ok(mibs(n, t.elapsed()))
    }
    .await;
    let peak = rss.finish().await;
    if r.is_ok() {
        record(res, subj, rep::BIG_RSS_PULL, Ok(peak), "MiB");
    } else {
        res.mark_failed(subj, rep::BIG_RSS_PULL);
    }
    record(res, subj, rep::BIG_PULL, r, "MiB/s");
}

/// The alias every deploy resolves: `prod` of the meta repository.
fn alias_path() -> String {
    format!("/api/v1/models/{META_REPO}/aliases/prod")
}

async fn promote(c: &mut Conn, repo: &str, target: &str) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({ "target": target }))?;
    let path = format!("/api/v1/models/{repo}/aliases/prod");
    let h = [("content-type", "application/json".to_string())];
    let r = c
        .send(crate::http::req(
            hyper::Method::PUT,
            &path,
            &h,
            crate::http::full(body),
        ))
        .await?;
    let r = crate::http::expect(r, hyper::StatusCode::OK, &format!("PUT {path}")).await?;
    crate::http::drain(r).await?;
    Ok(())
}

/// Berth only: alias resolve (the deploy hot path) at 16 and 64 connections, to
/// set beside manifest GET by tag; and promotions per second (one connection,
/// alternating between two versions, each an audited, attested tag move).
pub async fn alias_round(srv: &Server, subj: &str, p: &Params, res: &mut Results) {
    let setup = async {
        let mut c = Conn::connect(srv.addr).await?;
        promote(&mut c, META_REPO, "latest").await?;
        let r = c
            .send(crate::http::req(
                hyper::Method::GET,
                &alias_path(),
                &[],
                crate::http::empty(),
            ))
            .await?;
        let r = crate::http::expect(r, hyper::StatusCode::OK, "GET alias").await?;
        anyhow::Ok(crate::http::drain(r).await?)
    };
    let len = match setup.await {
        Ok(len) => len,
        Err(e) => {
            for k in rep::alias_keys() {
                res.fail(subj, &k, &e);
            }
            return;
        }
    };
    let op = Arc::new(Op::Get {
        path: alias_path(),
        accept: None,
        len,
        authorization: None,
    });
    for c in rep::ALIAS_CONC {
        match load::run(srv.addr, op.clone(), c, p.duration).await {
            Ok(s) => {
                record(res, subj, &rep::alias_key(c, "rps"), Ok(s.rps), "req/s");
                record(res, subj, &rep::alias_key(c, "p99_ms"), Ok(s.p99_ms), "ms");
            }
            Err(e) => {
                for w in ["rps", "p99_ms"] {
                    res.fail(subj, &rep::alias_key(c, w), &e);
                }
            }
        }
    }
    let promotions = async {
        let mut c = Conn::connect(srv.addr).await?;
        let n = 200;
        let t = Instant::now();
        for i in 0..n {
            promote(&mut c, TAGS_REPO, &format!("t{:05}", i % 2)).await?;
        }
        let rate = n as f64 / t.elapsed().as_secs_f64();
        // The tags-list workload counts that repository's tags: take the alias off.
        let path = format!("/api/v1/models/{TAGS_REPO}/aliases/prod");
        let r = c
            .send(crate::http::req(
                hyper::Method::DELETE,
                &path,
                &[],
                crate::http::empty(),
            ))
            .await?;
        let r = crate::http::expect(r, hyper::StatusCode::OK, &format!("DELETE {path}")).await?;
        crate::http::drain(r).await?;
        anyhow::Ok(rate)
    };
    record(res, subj, rep::PROMOTE_RPS, promotions.await, "req/s");
}

/// Berth with an auth file, manifest GET by tag at 16 and 64 connections:
/// anonymous (pull granted to anyone) and with a Bearer token, one after the
/// other in each round, so that both see the same machine.
pub async fn auth_round(
    srv: &Server,
    subj: &str,
    objs: &MetaObjects,
    token: &str,
    p: &Params,
    res: &mut Results,
) {
    for c in rep::ALIAS_CONC {
        for (authorization, key) in [
            (None, rep::get_key as fn(usize, &str) -> String),
            (Some(format!("Bearer {token}")), rep::bearer_key),
        ] {
            let op = Arc::new(Op::Get {
                path: format!("/v2/{META_REPO}/manifests/latest"),
                accept: Some(MANIFEST_TYPE.into()),
                len: objs.manifest.len() as u64,
                authorization,
            });
            match load::run(srv.addr, op, c, p.duration).await {
                Ok(s) => {
                    record(res, subj, &key(c, "rps"), Ok(s.rps), "req/s");
                    record(res, subj, &key(c, "p99_ms"), Ok(s.p99_ms), "ms");
                }
                Err(e) => {
                    for w in ["rps", "p99_ms"] {
                        res.fail(subj, &key(c, w), &e);
                    }
                }
            }
        }
    }
}

/// The manifest and its blobs in the meta repository, nothing else.
pub async fn manifest_setup(srv: &Server, objs: &MetaObjects) -> Result<()> {
    let mut c = Conn::connect(srv.addr).await?;
    objs.push_blobs(&mut c, META_REPO).await?;
    oci::put_manifest(&mut c, META_REPO, "latest", objs.manifest.clone()).await?;
    Ok(())
}
