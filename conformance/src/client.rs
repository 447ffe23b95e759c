//! A thin blocking HTTP client for the registry under test. Every answer is
//! read whole (up to a cap) into a [`Resp`], so checks can look at status,
//! headers and body freely; transport errors become check failures.

use std::cell::RefCell;
use std::io::Read;
use std::time::Duration;

use reqwest::Method;
use reqwest::Url;
use reqwest::header::HeaderMap;

use crate::check::{Step, fail};

/// Largest response body the suite reads (manifests are at most a few MB).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Media types the suite accepts when fetching manifests.
pub(crate) const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
     application/vnd.oci.image.index.v1+json, \
     application/vnd.docker.distribution.manifest.v2+json, \
     application/vnd.docker.distribution.manifest.list.v2+json";

/// One answer from the registry.
#[derive(Debug)]
pub(crate) struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
    /// `METHOD path?query`, for failure messages.
    pub request: String,
    /// The registry's own answer's headers when it redirected the request
    /// elsewhere (a blob served from object storage): what `headers` are of
    /// the answer at the end of the redirects.
    pub redirected_by: Option<HeaderMap>,
}

impl Resp {
    /// A header of the registry's own answer: the one it redirected with, if it did.
    pub fn registry_header(&self, name: &str) -> Option<&str> {
        match &self.redirected_by {
            Some(h) => h.get(name).and_then(|v| v.to_str().ok()),
            None => self.header(name),
        }
    }

    /// A header's value, if present and valid text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// All values of a header.
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect()
    }

    /// The `Content-Type` without parameters, lowercased.
    pub fn media_type(&self) -> Option<String> {
        self.header("content-type").map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
    }

    /// The `Location` header, if any.
    pub fn location(&self) -> Option<&str> {
        self.header("location").filter(|l| !l.trim().is_empty())
    }

    /// The error codes of an OCI error body, if the body is one.
    pub fn error_codes(&self) -> Option<Vec<String>> {
        let v: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        let errors = v.get("errors")?.as_array()?;
        Some(
            errors
                .iter()
                .filter_map(|e| e.get("code").and_then(|c| c.as_str()).map(str::to_string))
                .collect(),
        )
    }

    /// A short description for failure messages: request, status and the
    /// start of the body.
    pub fn describe(&self) -> String {
        let body = String::from_utf8_lossy(&self.body);
        let body = body.trim();
        if body.is_empty() {
            format!("{} -> {}", self.request, self.status)
        } else {
            format!(
                "{} -> {} {}",
                self.request,
                self.status,
                truncate(body, 240)
            )
        }
    }

    /// Fails unless the status is one of `expected`.
    pub fn expect(&self, expected: &[u16]) -> Step {
        if expected.contains(&self.status) {
            return Ok(());
        }
        let want: Vec<String> = expected.iter().map(u16::to_string).collect();
        fail(format!(
            "expected {}, got {}",
            want.join(" or "),
            self.describe()
        ))
    }

    /// True for 2xx answers.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// Cuts text to at most `max` characters, marking the cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let cut: String = s.chars().take(max).collect();
        format!("{cut}…")
    }
}

/// A 4xx answer with a JSON body, kept so each workflow can check the shape
/// of every error body it provoked.
#[derive(Debug, Clone)]
pub(crate) struct ErrorSample {
    pub request: String,
    pub status: u16,
    pub body: Vec<u8>,
}

/// HTTP client bound to one registry.
pub(crate) struct Client {
    base: Url,
    http: reqwest::blocking::Client,
    errors: RefCell<Vec<ErrorSample>>,
}

/// One request to send.
pub(crate) struct Req {
    method: Method,
    url: Url,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
}

impl Req {
    /// Adds a header.
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// Sets the body (and so `Content-Length`).
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// Sends an empty body, so the request carries `Content-Length: 0`.
    pub fn empty_body(self) -> Self {
        self.body(Vec::new())
    }

    /// Sets an `application/octet-stream` body.
    pub fn octets(self, body: impl Into<Vec<u8>>) -> Self {
        self.header("content-type", "application/octet-stream")
            .body(body)
    }

    /// Appends a query parameter to the URL, keeping any already there.
    pub fn query(mut self, key: &str, value: &str) -> Self {
        self.url.query_pairs_mut().append_pair(key, value);
        self
    }
}

impl Client {
    /// A client for the registry at `base` with a per-request timeout.
    pub fn new(base: Url, timeout: Duration) -> Result<Client, String> {
        let http = reqwest::blocking::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(10))
            .user_agent(concat!("berth-conformance/", env!("CARGO_PKG_VERSION")))
            // Followed in `send`, which keeps the registry's own answer.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client {
            base,
            http,
            errors: RefCell::new(Vec::new()),
        })
    }

    /// A request to a path under the registry's base URL (`/v2/...`).
    pub fn req(&self, method: Method, path: &str) -> Step<Req> {
        let url = self.url(path)?;
        Ok(Req {
            method,
            url,
            headers: Vec::new(),
            body: None,
        })
    }

    /// A request to a `Location` the registry handed out, which may be
    /// absolute or relative to the registry's base URL.
    pub fn req_location(&self, method: Method, location: &str) -> Step<Req> {
        let url = match self.base.join(location.trim()) {
            Ok(u) => u,
            Err(e) => return fail(format!("unusable Location {location:?}: {e}")),
        };
        Ok(Req {
            method,
            url,
            headers: Vec::new(),
            body: None,
        })
    }

    /// Resolves a path against the base URL.
    pub fn url(&self, path: &str) -> Step<Url> {
        let base_path = self.base.path().trim_end_matches('/');
        let mut url = self.base.clone();
        let (p, q) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path, None),
        };
        url.set_path(&format!("{base_path}{p}"));
        url.set_query(q);
        Ok(url)
    }

    /// Sends a request and reads the whole answer.
    pub fn send(&self, req: Req) -> Step<Resp> {
        let request = describe_request(&req.method, &req.url);
        let mut redirected_by = None;
        let (mut method, mut url) = (req.method, req.url);
        let mut hops = 0;
        let resp = loop {
            let mut builder = self.http.request(method.clone(), url.clone());
            for (name, value) in &req.headers {
                // Credentials stay with the registry (as browsers and reqwest do).
                if redirected_by.is_some() && name.eq_ignore_ascii_case("authorization") {
                    continue;
                }
                builder = builder.header(*name, value);
            }
            if let Some(body) = &req.body {
                builder = builder.body(body.clone());
            }
            let resp = match builder.send() {
                Ok(r) => r,
                Err(e) => return fail(format!("{request}: request failed: {}", error_chain(&e))),
            };
            let status = resp.status().as_u16();
            let location = resp
                .headers()
                .get("location")
                .and_then(|v| v.to_str().ok())
                .and_then(|l| url.join(l).ok());
            match (status, location) {
                (301 | 302 | 303 | 307 | 308, Some(next)) if hops < 10 => {
                    hops += 1;
                    if redirected_by.is_none() {
                        redirected_by = Some(resp.headers().clone());
                    }
                    if status == 303 {
                        method = Method::GET;
                    }
                    url = next;
                }
                _ => break resp,
            }
        };
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let mut body = Vec::new();
        if let Err(e) = resp.take(MAX_BODY).read_to_end(&mut body) {
            return fail(format!("{request}: reading the response body failed: {e}"));
        }
        let resp = Resp {
            status,
            headers,
            body,
            request,
            redirected_by,
        };
        if (400..500).contains(&resp.status) && looks_like_json(&resp) {
            self.errors.borrow_mut().push(ErrorSample {
                request: resp.request.clone(),
                status: resp.status,
                body: resp.body.clone(),
            });
        }
        Ok(resp)
    }

    /// Takes the 4xx JSON error bodies seen since the last call.
    pub fn take_error_samples(&self) -> Vec<ErrorSample> {
        std::mem::take(&mut *self.errors.borrow_mut())
    }

    // Shorthands for the common requests.

    pub fn get(&self, path: &str) -> Step<Resp> {
        self.send(self.req(Method::GET, path)?)
    }

    pub fn head(&self, path: &str) -> Step<Resp> {
        self.send(self.req(Method::HEAD, path)?)
    }

    pub fn delete(&self, path: &str) -> Step<Resp> {
        self.send(self.req(Method::DELETE, path)?)
    }

    /// `GET` a manifest with an `Accept` header naming the usual manifest types.
    pub fn get_manifest(&self, repo: &str, reference: &str) -> Step<Resp> {
        let req = self
            .req(Method::GET, &format!("/v2/{repo}/manifests/{reference}"))?
            .header("accept", MANIFEST_ACCEPT);
        self.send(req)
    }

    /// `HEAD` a manifest with the usual `Accept` header.
    pub fn head_manifest(&self, repo: &str, reference: &str) -> Step<Resp> {
        let req = self
            .req(Method::HEAD, &format!("/v2/{repo}/manifests/{reference}"))?
            .header("accept", MANIFEST_ACCEPT);
        self.send(req)
    }

    /// `PUT` a manifest with its media type as `Content-Type`.
    pub fn put_manifest(
        &self,
        repo: &str,
        reference: &str,
        media_type: &str,
        body: &[u8],
    ) -> Step<Resp> {
        let req = self
            .req(Method::PUT, &format!("/v2/{repo}/manifests/{reference}"))?
            .header("content-type", media_type)
            .body(body.to_vec());
        self.send(req)
    }
}

fn describe_request(method: &Method, url: &Url) -> String {
    let mut target = truncate(url.path(), 120);
    if let Some(q) = url.query() {
        target.push('?');
        target.push_str(&truncate(q, 80));
    }
    format!("{method} {target}")
}

fn looks_like_json(resp: &Resp) -> bool {
    if resp.body.iter().all(u8::is_ascii_whitespace) {
        // HEAD answers and empty bodies carry nothing to check.
        return false;
    }
    let ct_json = resp
        .media_type()
        .is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    let starts_json = resp
        .body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    ct_json || starts_json
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}
