//! OCI distribution client operations used by the workloads. Each checks the
//! status codes and headers the spec requires and fails loudly otherwise.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use bytes::Bytes;
use hyper::{Method, StatusCode};
use sha2::{Digest, Sha256};

use crate::blob::Blob;
use crate::http::{self, Conn, expect, header, location, with_query};

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

pub fn sha256_digest(b: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(b)))
}

/// POST /v2/<name>/blobs/uploads/ → 202 + Location.
async fn start_upload(c: &mut Conn, repo: &str) -> Result<String> {
    let r = c
        .send(http::req(
            Method::POST,
            &format!("/v2/{repo}/blobs/uploads/"),
            &[("content-length", "0".into())],
            http::empty(),
        ))
        .await?;
    let r = expect(r, StatusCode::ACCEPTED, "POST blobs/uploads/").await?;
    let loc = location(&r)?;
    http::drain(r).await?;
    Ok(loc)
}

async fn check_created(
    r: hyper::Response<hyper::body::Incoming>,
    digest: &str,
    what: &str,
) -> Result<()> {
    let r = expect(r, StatusCode::CREATED, what).await?;
    if let Some(d) = header(&r, "docker-content-digest") {
        ensure!(d == digest, "{what}: Docker-Content-Digest {d} != {digest}");
    }
    http::drain(r).await?;
    Ok(())
}

/// Monolithic push: POST, then PUT ?digest= with the whole body. Returns the time taken.
pub async fn push_monolithic(c: &mut Conn, repo: &str, blob: &Blob) -> Result<Duration> {
    let t = Instant::now();
    let loc = start_upload(c, repo).await?;
    let r = c
        .send(http::req(
            Method::PUT,
            &with_query(&loc, "digest", &blob.digest),
            &[
                ("content-type", "application/octet-stream".into()),
                ("content-length", blob.size.to_string()),
            ],
            http::boxed(blob.body(0, blob.size)),
        ))
        .await?;
    check_created(r, &blob.digest, "PUT upload?digest= (monolithic)").await?;
    Ok(t.elapsed())
}

/// Chunked push: POST, PATCH chunks with Content-Range, then PUT ?digest= with no body.
pub async fn push_chunked(c: &mut Conn, repo: &str, blob: &Blob, chunk: u64) -> Result<Duration> {
    let t = Instant::now();
    let mut loc = start_upload(c, repo).await?;
    let mut pos = 0u64;
    while pos < blob.size {
        let end = (pos + chunk).min(blob.size);
        let r = c
            .send(http::req(
                Method::PATCH,
                &loc,
                &[
                    ("content-type", "application/octet-stream".into()),
                    ("content-range", format!("{}-{}", pos, end - 1)),
                    ("content-length", (end - pos).to_string()),
                ],
                http::boxed(blob.body(pos, end)),
            ))
            .await?;
        let r = expect(r, StatusCode::ACCEPTED, "PATCH upload chunk").await?;
        if let Some(range) = header(&r, "range") {
            let want = format!("0-{}", end - 1);
            ensure!(
                range == want || range == format!("bytes={want}"),
                "PATCH: Range {range:?}, expected {want:?}"
            );
        }
        loc = location(&r)?;
        http::drain(r).await?;
        pos = end;
    }
    let r = c
        .send(http::req(
            Method::PUT,
            &with_query(&loc, "digest", &blob.digest),
            &[("content-length", "0".into())],
            http::empty(),
        ))
        .await?;
    check_created(r, &blob.digest, "PUT upload?digest= (closing chunked)").await?;
    Ok(t.elapsed())
}

/// Small blob via POST + PUT; returns its digest.
pub async fn push_small(c: &mut Conn, repo: &str, data: Bytes) -> Result<String> {
    let digest = sha256_digest(&data);
    let loc = start_upload(c, repo).await?;
    let r = c
        .send(http::req(
            Method::PUT,
            &with_query(&loc, "digest", &digest),
            &[
                ("content-type", "application/octet-stream".into()),
                ("content-length", data.len().to_string()),
            ],
            http::full(data),
        ))
        .await?;
    check_created(r, &digest, "PUT small blob").await?;
    Ok(digest)
}

/// PUT /v2/<name>/manifests/<reference> → 201 with the right digest.
pub async fn put_manifest(c: &mut Conn, repo: &str, reference: &str, body: Bytes) -> Result<()> {
    let digest = sha256_digest(&body);
    let r = c
        .send(http::req(
            Method::PUT,
            &format!("/v2/{repo}/manifests/{reference}"),
            &[
                ("content-type", MANIFEST_TYPE.into()),
                ("content-length", body.len().to_string()),
            ],
            http::full(body),
        ))
        .await?;
    check_created(r, &digest, "PUT manifest").await
}

/// An OCI image manifest over a config and one layer, made unique by `note`.
pub fn manifest(config: (&str, usize), layer: (&str, usize), note: &str) -> Bytes {
    let v = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config.0, "size": config.1},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer.0, "size": layer.1}],
        "annotations": {"org.opencontainers.image.description": note}
    });
    Bytes::from(serde_json::to_vec(&v).unwrap())
}

pub fn blob_path(repo: &str, digest: &str) -> String {
    format!("/v2/{repo}/blobs/{digest}")
}

/// GET the blob (at `path`) on one connection; checks 200, length and digest header. Returns bytes read.
pub async fn pull(c: &mut Conn, path: &str, blob: &Blob, range: Option<(u64, u64)>) -> Result<u64> {
    let mut headers = vec![];
    if let Some((a, b)) = range {
        headers.push(("range", format!("bytes={a}-{}", b - 1)));
    }
    let mut r = c
        .send(http::req(Method::GET, path, &headers, http::empty()))
        .await?;
    // Follow one redirect (a registry may send reads to another address).
    if r.status().is_redirection() {
        let loc = header(&r, "location").unwrap_or_default().to_string();
        http::drain(r).await?;
        let (addr, p) = split_url(&loc, c.addr())?;
        let mut c2 = Conn::connect(addr).await?;
        r = c2
            .send(http::req(Method::GET, &p, &headers, http::empty()))
            .await?;
        return check_pull(r, blob, range).await;
    }
    check_pull(r, blob, range).await
}

async fn check_pull(
    r: hyper::Response<hyper::body::Incoming>,
    blob: &Blob,
    range: Option<(u64, u64)>,
) -> Result<u64> {
    let want = match range {
        Some((a, b)) => {
            let r = expect(r, StatusCode::PARTIAL_CONTENT, "GET blob with Range").await?;
            let cr = header(&r, "content-range").unwrap_or_default();
            let exp = format!("bytes {a}-{}/{}", b - 1, blob.size);
            ensure!(
                cr == exp,
                "Range GET: Content-Range {cr:?}, expected {exp:?}"
            );
            return finish_pull(r, b - a).await;
        }
        None => blob.size,
    };
    let r = expect(r, StatusCode::OK, "GET blob").await?;
    if let Some(d) = header(&r, "docker-content-digest") {
        ensure!(
            d == blob.digest,
            "GET blob: Docker-Content-Digest {d} != {}",
            blob.digest
        );
    }
    finish_pull(r, want).await
}

async fn finish_pull(r: hyper::Response<hyper::body::Incoming>, want: u64) -> Result<u64> {
    if let Some(cl) = header(&r, "content-length") {
        ensure!(
            cl == want.to_string(),
            "GET blob: Content-Length {cl}, expected {want}"
        );
    }
    let n = http::drain(r).await?;
    ensure!(n == want, "GET blob: read {n} bytes, expected {want}");
    Ok(n)
}

fn split_url(url: &str, default: SocketAddr) -> Result<(SocketAddr, String)> {
    let Some(rest) = url.strip_prefix("http://") else {
        if url.starts_with('/') {
            return Ok((default, url.to_string()));
        }
        bail!("unsupported redirect {url:?}");
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    Ok((
        host.parse()?,
        if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    ))
}

/// n concurrent whole-blob GETs (or n Range parts if `ranged`), on n connections
/// opened beforehand. Returns (bytes, wall time).
pub async fn pull_parallel(
    addr: SocketAddr,
    path: &str,
    blob: &Blob,
    n: u64,
    ranged: bool,
) -> Result<(u64, Duration)> {
    let mut conns = Vec::new();
    for _ in 0..n {
        conns.push(Conn::connect(addr).await?);
    }
    let part = blob.size.div_ceil(n);
    let t = Instant::now();
    let mut tasks = Vec::new();
    for (i, mut c) in conns.into_iter().enumerate() {
        let (blob, path) = (blob.clone(), path.to_string());
        let range = ranged.then(|| (i as u64 * part, ((i as u64 + 1) * part).min(blob.size)));
        tasks.push(tokio::spawn(async move {
            pull(&mut c, &path, &blob, range).await
        }));
    }
    let mut total = 0;
    for t in tasks {
        total += t.await??;
    }
    Ok((total, t.elapsed()))
}
