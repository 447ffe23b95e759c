//! Reading a registry's answers: lengths, `Location`, upload ranges, `Link`
//! pages, bodies with a size cap, and its error JSON turned into messages.

use anyhow::{Context, Result, anyhow, bail};
use reqwest::header::{self, HeaderMap};
use reqwest::{Response, Url};

pub(super) fn content_length(h: &HeaderMap) -> Option<u64> {
    h.get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `Location` of a response, resolved against the request URL.
pub(super) fn location(request: &Url, h: &HeaderMap, what: &str) -> Result<Url> {
    let loc = h
        .get(header::LOCATION)
        .ok_or_else(|| anyhow!("{what}: the registry sent no Location header"))?
        .to_str()
        .map_err(|_| anyhow!("{what}: the Location header is not text"))?;
    request
        .join(loc)
        .with_context(|| format!("{what}: invalid Location {loc:?}"))
}

/// The number of bytes an upload holds, from `Range: 0-<last>`.
pub(super) fn upload_range_end(h: &HeaderMap) -> Option<u64> {
    let v = h.get(header::RANGE)?.to_str().ok()?;
    parse_upload_range(v)
}

/// `0-N` means N+1 bytes; `0-0` is read as 0 bytes (registries send it for an
/// empty session; a one-byte chunk that was really stored is re-sent and refused
/// with 416, after which the caller asks again).
pub fn parse_upload_range(v: &str) -> Option<u64> {
    let v = v.trim().trim_start_matches("bytes=");
    let (start, end) = v.split_once('-')?;
    let (start, end): (u64, u64) = (start.trim().parse().ok()?, end.trim().parse().ok()?);
    if start != 0 {
        return None;
    }
    Some(if end == 0 { 0 } else { end + 1 })
}

/// Reads a response body of at most `max` bytes.
pub(super) async fn read_capped(resp: Response, max: usize, what: &str) -> Result<Vec<u8>> {
    use futures_util::StreamExt;
    if content_length(resp.headers()).is_some_and(|n| n > max as u64) {
        bail!("{what}: the response is larger than {max} bytes");
    }
    let mut out = Vec::new();
    let mut stream = resp.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.with_context(|| format!("reading {what}"))?;
        if out.len() + chunk.len() > max {
            bail!("{what}: the response is larger than {max} bytes");
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An error for an unexpected status, with the registry's error JSON when it sent one.
pub async fn status_error(resp: Response, what: &str) -> anyhow::Error {
    let status = resp.status();
    let body = read_capped(resp, 64 << 10, what).await.unwrap_or_default();
    let detail = registry_error_message(&body).unwrap_or_else(|| {
        let text = String::from_utf8_lossy(&body[..body.len().min(300)]);
        text.trim().to_string()
    });
    if detail.is_empty() {
        anyhow!("{what}: the registry answered {status}")
    } else {
        anyhow!("{what}: the registry answered {status}: {detail}")
    }
}

/// `CODE: message` for each entry of an OCI error body.
pub(super) fn registry_error_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let errors = v.get("errors")?.as_array()?;
    let parts: Vec<String> = errors
        .iter()
        .map(|e| {
            let code = e.get("code").and_then(|c| c.as_str()).unwrap_or("UNKNOWN");
            match e.get("message").and_then(|m| m.as_str()) {
                Some(m) if !m.is_empty() => format!("{code}: {m}"),
                _ => code.to_string(),
            }
        })
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// The target of a `Link: <…>; rel="next"` header, if any.
pub(super) fn next_link(headers: &reqwest::header::HeaderMap) -> Option<String> {
    headers
        .get_all(header::LINK)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|link| {
            let (target, params) = link.trim().split_once(';')?;
            let is_next = params
                .split(';')
                .any(|p| matches!(p.trim(), "rel=\"next\"" | "rel=next"));
            let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
            is_next.then(|| target.to_string())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_links() {
        let mut h = HeaderMap::new();
        assert_eq!(next_link(&h), None);
        h.insert(
            header::LINK,
            "</v2/a/referrers/sha256:x?last=sha256:y>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("/v2/a/referrers/sha256:x?last=sha256:y")
        );
        h.insert(
            header::LINK,
            "</p>; rel=\"prev\", </n>; rel=next".parse().unwrap(),
        );
        assert_eq!(next_link(&h).as_deref(), Some("/n"));
        h.insert(header::LINK, "garbage".parse().unwrap());
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn upload_ranges() {
        assert_eq!(parse_upload_range("0-0"), Some(0));
        assert_eq!(parse_upload_range("0-1023"), Some(1024));
        assert_eq!(parse_upload_range("bytes=0-9"), Some(10));
        assert_eq!(parse_upload_range("5-9"), None);
        assert_eq!(parse_upload_range("junk"), None);
    }

    #[test]
    fn locations_resolve_relative_and_absolute() {
        let req = Url::parse("http://r:5000/v2/a/blobs/uploads/").unwrap();
        let mut h = HeaderMap::new();
        h.insert(
            header::LOCATION,
            "/v2/a/blobs/uploads/xyz?s=1".parse().unwrap(),
        );
        assert_eq!(
            location(&req, &h, "t").unwrap().as_str(),
            "http://r:5000/v2/a/blobs/uploads/xyz?s=1"
        );
        h.insert(header::LOCATION, "https://cdn.example/u/1".parse().unwrap());
        assert_eq!(
            location(&req, &h, "t").unwrap().as_str(),
            "https://cdn.example/u/1"
        );
        assert!(location(&req, &HeaderMap::new(), "t").is_err());
    }

    #[test]
    fn error_messages_from_registry_json() {
        let body = br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"blob unknown to registry"}]}"#;
        assert_eq!(
            registry_error_message(body).as_deref(),
            Some("BLOB_UNKNOWN: blob unknown to registry")
        );
        assert_eq!(registry_error_message(b"<html>"), None);
    }
}
