//! A minimal HTTP/1.1 client: one keep-alive connection per worker, raw hyper.

use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

pub type ReqBody = BoxBody<Bytes, std::convert::Infallible>;

pub fn empty() -> ReqBody {
    Empty::new().boxed()
}

pub fn full(b: impl Into<Bytes>) -> ReqBody {
    Full::new(b.into()).boxed()
}

pub fn boxed<B>(b: B) -> ReqBody
where
    B: Body<Data = Bytes, Error = std::convert::Infallible> + Send + Sync + 'static,
{
    BodyExt::boxed(b)
}

/// One HTTP/1.1 connection; reconnects only between requests if the server closed it.
pub struct Conn {
    addr: SocketAddr,
    sender: SendRequest<ReqBody>,
}

impl Conn {
    pub async fn connect(addr: SocketAddr) -> Result<Conn> {
        Ok(Conn {
            addr,
            sender: handshake(addr).await?,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sends a request built by [`req`]; the caller checks the status.
    pub async fn send(&mut self, mut r: Request<ReqBody>) -> Result<Response<Incoming>> {
        if self.sender.is_closed() || self.sender.ready().await.is_err() {
            self.sender = handshake(self.addr).await?;
        }
        let host = HeaderValue::from_str(&self.addr.to_string())?;
        r.headers_mut().entry(hyper::header::HOST).or_insert(host);
        let what = format!("{} {}", r.method(), r.uri());
        self.sender
            .send_request(r)
            .await
            .with_context(|| format!("{what} to {}", self.addr))
    }
}

async fn handshake(addr: SocketAddr) -> Result<SendRequest<ReqBody>> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = http1::Builder::new().handshake(TokioIo::new(tcp)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// A request to `path` (origin-form) with headers.
pub fn req(
    method: Method,
    path: &str,
    headers: &[(&str, String)],
    body: ReqBody,
) -> Request<ReqBody> {
    let mut b = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        b = b.header(HeaderName::from_bytes(k.as_bytes()).unwrap(), v.as_str());
    }
    b.body(body).expect("valid request")
}

/// Fails loudly (status plus the start of the error body) unless the status is `want`.
pub async fn expect(
    resp: Response<Incoming>,
    want: StatusCode,
    what: &str,
) -> Result<Response<Incoming>> {
    if resp.status() == want {
        return Ok(resp);
    }
    let status = resp.status();
    // Only the start of the body: a wrong answer to a blob GET may be a whole blob.
    let mut body = resp.into_body();
    let mut head = Vec::new();
    while head.len() < 400 {
        match body.frame().await {
            Some(Ok(f)) => head.extend_from_slice(f.data_ref().map(|d| &d[..]).unwrap_or_default()),
            _ => break,
        }
    }
    let text = String::from_utf8_lossy(&head[..head.len().min(400)])
        .trim()
        .to_string();
    bail!("{what}: expected {want}, got {status}: {text}")
}

/// Reads and discards the body; returns its length.
pub async fn drain(resp: Response<Incoming>) -> Result<u64> {
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame?.into_data() {
            n += d.len() as u64;
        }
    }
    Ok(n)
}

pub async fn collect(resp: Response<Incoming>) -> Result<Bytes> {
    Ok(resp.into_body().collect().await?.to_bytes())
}

pub fn header<'a>(resp: &'a Response<Incoming>, name: &str) -> Option<&'a str> {
    resp.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The `Location` header as an origin-form path (distribution answers absolute URLs).
pub fn location(resp: &Response<Incoming>) -> Result<String> {
    let loc = header(resp, "location").context("response has no Location header")?;
    Ok(origin_form(loc))
}

pub fn origin_form(url: &str) -> String {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = url.strip_prefix(scheme) {
            return match rest.find('/') {
                Some(i) => rest[i..].to_string(),
                None => "/".to_string(),
            };
        }
    }
    url.to_string()
}

/// Appends `key=value` to a path that may already carry a query.
pub fn with_query(path: &str, key: &str, value: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}{key}={value}")
}
