//! Berth's own API (`/api/v1`) as the CLI calls it: JSON in and out, the actor
//! named in every request, and the API's errors (with a failed gate's report)
//! turned into messages that say what happened and what to do.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::RegistryArgs;
use crate::client::auth::{Auth, Scopes};
use crate::client::reference::{ImageRef, registry_url};

/// Largest JSON answer read.
const MAX_ANSWER: usize = 64 << 20;

/// The model API of one registry.
pub struct Api {
    base: String,
    http: reqwest::Client,
    auth: Auth,
}

/// One API answer.
pub struct Answer {
    pub status: StatusCode,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn json(&self) -> Result<Value> {
        serde_json::from_slice(&self.body)
            .with_context(|| format!("the registry answered {} without JSON", self.status))
    }
}

impl Api {
    pub fn new(base: &str) -> Result<Api> {
        let http = crate::client::http_client()?;
        let base = base.trim_end_matches('/').to_string();
        let url = reqwest::Url::parse(&format!("{base}/"))
            .with_context(|| format!("invalid registry URL {base:?}"))?;
        let auth = Auth::new(&url, http.clone());
        Ok(Api { base, http, auth })
    }

    /// The API of the registry `registry` names.
    pub fn of(registry: &RegistryArgs) -> Result<Api> {
        Api::new(&registry_url(&registry.registry, registry.plain_http))
    }

    /// The API of the registry a `[REGISTRY/]NAME` names, and the name.
    pub fn for_model(name: &str, registry: &RegistryArgs) -> Result<(Api, ImageRef)> {
        let r = ImageRef::parse(name)?;
        let host = r.registry.as_deref().unwrap_or(&registry.registry);
        Ok((Api::new(&registry_url(host, registry.plain_http))?, r))
    }

    /// Sends a request and reads its JSON answer (at most `MAX_ANSWER` bytes);
    /// any status but 2xx becomes the API's error.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<Answer> {
        let (mut resp, what) = self.respond(method, path, query, body, headers).await?;
        let mut bytes = Vec::new();
        while let Some(chunk) = resp
            .chunk()
            .await
            .with_context(|| format!("{what}: reading the answer"))?
        {
            if bytes.len() + chunk.len() > MAX_ANSWER {
                bail!("{what}: the answer is larger than {MAX_ANSWER} bytes");
            }
            bytes.extend_from_slice(&chunk);
        }
        Ok(Answer {
            status: resp.status(),
            body: bytes,
        })
    }

    /// Sends a request and hands back the answer to read as it streams (an
    /// export); any status but 2xx becomes the API's error.
    pub async fn stream(&self, path: &str) -> Result<reqwest::Response> {
        self.stream_from(Method::GET, path, &[]).await
    }

    /// As [`Api::stream`], for any method (a long `POST` that reports as it goes).
    pub async fn stream_from(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<reqwest::Response> {
        Ok(self.respond(method, path, query, None, &[]).await?.0)
    }

    async fn respond(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        body: Option<&Value>,
        headers: &[(&str, String)],
    ) -> Result<(reqwest::Response, String)> {
        let mut url = format!("{}/api/v1/{path}", self.base);
        if !query.is_empty() {
            let mut s = form_urlencoded::Serializer::new(String::new());
            for (k, v) in query {
                s.append_pair(k, v);
            }
            url = format!("{url}?{}", s.finish());
        }
        let what = format!("{method} {url}");
        let mut req = self.http.request(method, &url);
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        // The scopes an API call needs are the registry's to name (its challenge says).
        let resp = self.auth.send(req, &Scopes::default(), &what).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(api_error(status, &body[..body.len().min(MAX_ANSWER)]));
        }
        Ok((resp, what))
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value> {
        self.send(Method::GET, path, query, None, &[]).await?.json()
    }

    pub async fn call(&self, method: Method, path: &str, body: &Value) -> Result<Value> {
        self.send(method, path, &[], Some(body), &[]).await?.json()
    }
}

/// One path segment (a tag, a digest, an alias), percent-encoded.
pub fn enc(segment: &str) -> String {
    form_urlencoded::byte_serialize(segment.as_bytes()).collect()
}

/// The API's error JSON as a message; a failed gate's report is printed in full.
fn api_error(status: StatusCode, body: &[u8]) -> anyhow::Error {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
        return anyhow!("the registry answered {status}: {}", text.trim());
    };
    let e = v.get("error").unwrap_or(&Value::Null);
    let code = e.get("code").and_then(Value::as_str).unwrap_or("ERROR");
    let message = e
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("request failed");
    let mut out = format!("{code} ({status}): {message}");
    if let Some(report) = e.get("report") {
        out.push_str("\n\n");
        out.push_str(&super::govern::render_report(report));
        out.push_str(
            "\nFix what failed, or ask for what is missing (`berth approve …`), and promote again.",
        );
    }
    if code == "PRECONDITION_FAILED" {
        out.push_str("\nThe alias moved since you looked: check `berth aliases NAME`, then retry with the new --expect.");
    }
    anyhow!(out)
}
