//! A registry as an OCI distribution API client sees it: blobs, upload sessions,
//! manifests and referrers over HTTP, with status codes checked, `Location`
//! headers followed (relative or absolute) and the registry's error JSON in errors.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header;
use reqwest::{Method, Response, StatusCode, Url};

use super::auth::{Auth, Scopes};
use super::reference::{ImageRef, registry_url};
use answer::{content_length, location, next_link, read_capped, upload_range_end};
pub use answer::{parse_upload_range, status_error};

mod answer;
use crate::oci::media::{self, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, OCI_INDEX, OCI_MANIFEST};
use crate::oci::{Descriptor, Digest};

/// Every manifest type a pull accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json";

const DIGEST_HEADER: &str = "docker-content-digest";

/// Largest manifest or referrers index read into memory.
pub const MAX_MANIFEST_BYTES: usize = 16 << 20;

/// Pages of a referrers listing a client follows before giving up.
const MAX_REFERRER_PAGES: usize = 1000;

/// A manifest as fetched: raw bytes (their digest is the manifest's identity).
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub media_type: String,
    pub digest: Digest,
}

impl FetchedManifest {
    pub fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.bytes.len() as u64,
            artifact_type: None,
            annotations: Default::default(),
        }
    }
}

/// The answer to a mount request.
#[derive(Debug)]
pub enum Mount {
    /// The blob is now linked into the repository.
    Mounted,
    /// The registry opened an upload session instead.
    Session(Url),
}

/// One registry, by base URL, with its authentication (clones share tokens).
#[derive(Clone)]
pub struct Registry {
    base: Url,
    http: reqwest::Client,
    auth: Auth,
}

fn pull(repo: &str) -> Scopes {
    Scopes::repo(repo, &["pull"])
}

fn push(repo: &str) -> Scopes {
    Scopes::repo(repo, &["pull", "push"])
}

impl Registry {
    pub fn new(base_url: &str) -> Result<Registry> {
        let base = Url::parse(&format!("{}/", base_url.trim_end_matches('/')))
            .with_context(|| format!("invalid registry URL {base_url:?}"))?;
        if !matches!(base.scheme(), "http" | "https") {
            bail!("{base}: a registry URL must be http:// or https://");
        }
        let http = super::http_client()?;
        let auth = Auth::new(&base, http.clone());
        Ok(Registry { base, http, auth })
    }

    /// The registry `r` names, or `default_host` when it names none.
    pub fn for_ref(r: &ImageRef, default_host: &str, plain_http: bool) -> Result<Registry> {
        let host = r.registry.as_deref().unwrap_or(default_host);
        Registry::new(&registry_url(host, plain_http))
    }

    /// The base URL, e.g. `http://127.0.0.1:5000/`.
    pub fn base(&self) -> &Url {
        &self.base
    }

    fn url(&self, path: &str) -> Result<Url> {
        self.base
            .join(path)
            .with_context(|| format!("building a URL from {path:?}"))
    }

    /// Sends a request needing `scopes` (empty for an upload session's URL: the
    /// token fetched for the push covers it), authenticating as the registry asks.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
        scopes: &Scopes,
        what: &str,
    ) -> Result<Response> {
        self.auth.send(req, scopes, what).await
    }

    /// Authenticates for pushing to `repo` (and mounting from `from`) before any
    /// upload: streamed bodies cannot be sent again after a 401.
    pub async fn authorize_push(&self, repo: &str, from: Option<&str>) -> Result<()> {
        let mut scopes = push(repo);
        if let Some(f) = from {
            scopes = scopes.union(&pull(f));
        }
        self.auth.prepare(&scopes).await
    }

    /// `HEAD` a blob: its size if the repository has it.
    pub async fn blob_size(&self, repo: &str, digest: &Digest) -> Result<Option<u64>> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let what = format!("HEAD {url}");
        let resp = self
            .send(self.http.head(url.clone()), &pull(repo), &what)
            .await?;
        match resp.status() {
            StatusCode::OK => Ok(Some(content_length(resp.headers()).unwrap_or(0))),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(resp, &what).await),
        }
    }

    /// `GET` a blob, optionally a byte range (`start..=end`, or `start..` with `None`).
    pub async fn get_blob(
        &self,
        repo: &str,
        digest: &Digest,
        range: Option<(u64, Option<u64>)>,
    ) -> Result<Response> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let mut req = self.http.get(url.clone());
        if let Some((start, end)) = range {
            let v = match end {
                Some(e) => format!("bytes={start}-{e}"),
                None => format!("bytes={start}-"),
            };
            req = req.header(header::RANGE, v);
        }
        let what = format!("GET {url}");
        let resp = self.send(req, &pull(repo), &what).await?;
        match resp.status() {
            StatusCode::OK | StatusCode::PARTIAL_CONTENT => Ok(resp),
            _ => Err(status_error(resp, &what).await),
        }
    }

    /// `GET` a manifest by tag or digest. A digest reference is verified against the bytes.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        match self.fetch_manifest(repo, reference, false).await? {
            Some(m) => Ok(m),
            None => bail!("{repo}:{reference}: the registry has no such manifest"),
        }
    }

    /// A manifest's bytes by tag or digest, or `None` if the repository has no
    /// such manifest (one `GET`).
    pub async fn find_manifest(
        &self,
        repo: &str,
        reference: &str,
    ) -> Result<Option<FetchedManifest>> {
        self.fetch_manifest(repo, reference, true).await
    }

    /// `GET` a manifest; a 404 is `None` when `absent_ok`, else the registry's error.
    async fn fetch_manifest(
        &self,
        repo: &str,
        reference: &str,
        absent_ok: bool,
    ) -> Result<Option<FetchedManifest>> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let what = format!("GET {url}");
        let req = self.http.get(url).header(header::ACCEPT, MANIFEST_ACCEPT);
        let resp = self.send(req, &pull(repo), &what).await?;
        if absent_ok && resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if resp.status() != StatusCode::OK {
            return Err(status_error(resp, &what).await);
        }
        let header_type = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media::essence);
        let bytes = read_capped(resp, MAX_MANIFEST_BYTES, &what).await?;
        let digest = Digest::sha256_of(&bytes);
        if let Ok(expected) = reference.parse::<Digest>() {
            let actual = Digest::of(expected.algorithm(), &bytes);
            if actual != expected {
                bail!("{what}: the registry sent a manifest with digest {actual}, not {expected}");
            }
        }
        let body_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string));
        let media_type = body_type
            .or(header_type.filter(|t| media::manifest_kind(t).is_some()))
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok(Some(FetchedManifest {
            bytes,
            media_type,
            digest,
        }))
    }

    /// Resolves a reference to its manifest descriptor (`HEAD`, falling back to `GET`
    /// when the registry leaves out the digest or media type).
    pub async fn resolve(&self, repo: &str, reference: &str) -> Result<Descriptor> {
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let what = format!("HEAD {url}");
        let req = self.http.head(url).header(header::ACCEPT, MANIFEST_ACCEPT);
        let resp = self.send(req, &pull(repo), &what).await?;
        if resp.status() != StatusCode::OK {
            // A HEAD answer has no body: ask again with GET for the registry's error.
            return Ok(self.get_manifest(repo, reference).await?.descriptor());
        }
        let h = resp.headers();
        let digest = h
            .get(DIGEST_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<Digest>().ok());
        let media_type = h
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(media::essence)
            .filter(|t| media::manifest_kind(t).is_some());
        if let (Some(digest), Some(media_type), Some(size)) =
            (digest, media_type, content_length(h))
        {
            return Ok(Descriptor {
                media_type,
                digest,
                size,
                artifact_type: None,
                annotations: Default::default(),
            });
        }
        Ok(self.get_manifest(repo, reference).await?.descriptor())
    }

    /// `PUT` a manifest; returns its digest (checked against what the registry says).
    pub async fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: Vec<u8>,
    ) -> Result<Digest> {
        let digest = Digest::sha256_of(&body);
        let url = self.url(&format!("v2/{repo}/manifests/{reference}"))?;
        let what = format!("PUT {url}");
        let req = self
            .http
            .put(url)
            .header(header::CONTENT_TYPE, media_type)
            .body(body);
        let resp = self.send(req, &push(repo), &what).await?;
        if resp.status() != StatusCode::CREATED && resp.status() != StatusCode::OK {
            return Err(status_error(resp, &what).await);
        }
        if let Some(said) = resp
            .headers()
            .get(DIGEST_HEADER)
            .and_then(|v| v.to_str().ok())
            && said != digest.to_string()
        {
            bail!("{what}: the registry stored digest {said}, expected {digest}");
        }
        Ok(digest)
    }

    /// Opens an upload session.
    pub async fn start_upload(&self, repo: &str) -> Result<Url> {
        let url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        let what = format!("POST {url}");
        let resp = self
            .send(self.http.post(url.clone()), &push(repo), &what)
            .await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(resp, &what).await);
        }
        location(&url, resp.headers(), &what)
    }

    /// Asks the registry to mount `digest` into `repo` (from `from`, or — without
    /// `from` — from wherever it has it, the automatic content discovery of
    /// distribution-spec v1.1).
    pub async fn mount(&self, repo: &str, digest: &Digest, from: Option<&str>) -> Result<Mount> {
        let mut url = self.url(&format!("v2/{repo}/blobs/uploads/"))?;
        url.query_pairs_mut()
            .append_pair("mount", &digest.to_string());
        let mut scopes = push(repo);
        if let Some(f) = from {
            url.query_pairs_mut().append_pair("from", f);
            scopes = scopes.union(&pull(f));
        }
        let what = format!("POST {url}");
        let resp = self
            .send(self.http.post(url.clone()), &scopes, &what)
            .await?;
        match resp.status() {
            StatusCode::CREATED => Ok(Mount::Mounted),
            StatusCode::ACCEPTED => Ok(Mount::Session(location(&url, resp.headers(), &what)?)),
            _ => Err(status_error(resp, &what).await),
        }
    }

    /// How many bytes an upload session holds (`GET` on its URL), with the URL to
    /// continue at; `None` when the registry no longer knows the session.
    pub async fn upload_status(&self, session: &Url) -> Result<Option<(Url, u64)>> {
        let what = format!("GET {session}");
        let resp = self
            .send(self.http.get(session.clone()), &Scopes::default(), &what)
            .await?;
        match resp.status() {
            StatusCode::NO_CONTENT | StatusCode::OK => {
                let next =
                    location(session, resp.headers(), &what).unwrap_or_else(|_| session.clone());
                let size = upload_range_end(resp.headers()).unwrap_or(0);
                Ok(Some((next, size)))
            }
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(status_error(resp, &what).await),
        }
    }

    /// `PATCH` `len` bytes at `offset`; returns the URL for the next request.
    pub async fn patch_chunk(
        &self,
        session: &Url,
        offset: u64,
        len: u64,
        body: reqwest::Body,
    ) -> Result<Url> {
        let what = format!("PATCH {session} ({} bytes at {offset})", len);
        let end = (offset + len).saturating_sub(1);
        let req = self
            .http
            .patch(session.clone())
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_RANGE, format!("{offset}-{end}"))
            .header(header::CONTENT_LENGTH, len)
            .body(body);
        let resp = self.send(req, &Scopes::default(), &what).await?;
        if resp.status() != StatusCode::ACCEPTED {
            return Err(status_error(resp, &what).await);
        }
        location(session, resp.headers(), &what)
    }

    /// Closes an upload session with `PUT ?digest=`, sending `body` (of `len` bytes) if any.
    pub async fn finish_upload(
        &self,
        session: &Url,
        digest: &Digest,
        body: Option<(reqwest::Body, u64)>,
    ) -> Result<()> {
        let mut url = session.clone();
        url.query_pairs_mut()
            .append_pair("digest", &digest.to_string());
        let what = format!("PUT {url}");
        let mut req = self.http.put(url);
        req = match body {
            Some((b, len)) => req
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .header(header::CONTENT_LENGTH, len)
                .body(b),
            None => req.header(header::CONTENT_LENGTH, 0),
        };
        let resp = self.send(req, &Scopes::default(), &what).await?;
        if resp.status() != StatusCode::CREATED {
            return Err(status_error(resp, &what).await);
        }
        Ok(())
    }

    /// Uploads a small blob in one request unless the repository has it already.
    pub async fn push_bytes(&self, repo: &str, bytes: &[u8]) -> Result<Digest> {
        let digest = Digest::sha256_of(bytes);
        if self.blob_size(repo, &digest).await?.is_none() {
            let session = self.start_upload(repo).await?;
            let body = reqwest::Body::from(bytes.to_vec());
            self.finish_upload(&session, &digest, Some((body, bytes.len() as u64)))
                .await?;
        }
        Ok(digest)
    }

    /// A small blob's bytes, at most `max`, or `None` if the repository lacks it.
    pub async fn find_blob(
        &self,
        repo: &str,
        digest: &Digest,
        max: usize,
    ) -> Result<Option<Vec<u8>>> {
        let url = self.url(&format!("v2/{repo}/blobs/{digest}"))?;
        let what = format!("GET {url}");
        let resp = self.send(self.http.get(url), &pull(repo), &what).await?;
        match resp.status() {
            StatusCode::OK => {}
            StatusCode::NOT_FOUND => return Ok(None),
            _ => return Err(status_error(resp, &what).await),
        }
        let bytes = read_capped(resp, max, &what).await?;
        let actual = Digest::of(digest.algorithm(), &bytes);
        if &actual != digest {
            bail!("{what}: the registry sent a blob with digest {actual}");
        }
        Ok(Some(bytes))
    }

    /// Cancels an upload session (best effort).
    pub async fn cancel_upload(&self, session: &Url) {
        let _ = self
            .send(
                self.http.delete(session.clone()),
                &Scopes::default(),
                "DELETE",
            )
            .await;
    }

    /// The referrers of `digest` (OCI 1.1 referrers API); `None` if the registry has no such API.
    pub async fn referrers(&self, repo: &str, digest: &Digest) -> Result<Option<Vec<Descriptor>>> {
        let mut url = self.url(&format!("v2/{repo}/referrers/{digest}"))?;
        let mut all = Vec::new();
        // Registries page long lists with `Link: <…>; rel="next"`; follow them, boundedly.
        for _ in 0..MAX_REFERRER_PAGES {
            let what = format!("GET {url}");
            let req = self.http.get(url.clone()).header(header::ACCEPT, OCI_INDEX);
            let resp = self.send(req, &pull(repo), &what).await?;
            match resp.status() {
                StatusCode::OK => {}
                StatusCode::NOT_FOUND if all.is_empty() => return Ok(None),
                _ => return Err(status_error(resp, &what).await),
            }
            let next = next_link(resp.headers())
                .map(|l| resp.url().join(&l))
                .transpose()
                .with_context(|| format!("{what}: a malformed Link header"))?;
            let body = read_capped(resp, MAX_MANIFEST_BYTES, &what).await?;
            let v: serde_json::Value = serde_json::from_slice(&body)
                .with_context(|| format!("{what}: the referrers index is not JSON"))?;
            let list = v
                .get("manifests")
                .and_then(|m| m.as_array())
                .ok_or_else(|| anyhow!("{what}: the referrers index has no manifests list"))?;
            for d in list {
                all.push(
                    serde_json::from_value::<Descriptor>(d.clone())
                        .with_context(|| format!("{what}: invalid descriptor {d}"))?,
                );
            }
            match next {
                Some(n) => url = n,
                None => return Ok(Some(all)),
            }
        }
        Err(anyhow!(
            "referrers of {digest}: more than {MAX_REFERRER_PAGES} pages"
        ))
    }

    /// A request against a path under the base URL (for commands with their own
    /// needs), sent authenticated for `scopes`.
    pub async fn request(&self, method: Method, path: &str, scopes: &Scopes) -> Result<Response> {
        let url = self.url(path)?;
        let what = format!("{method} {url}");
        self.send(self.http.request(method, url), scopes, &what)
            .await
    }
}

/// Whether a manifest media type is an index (OCI index or Docker list).
pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

/// Whether a manifest media type is an image manifest (OCI or Docker schema2).
pub fn is_image(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}
