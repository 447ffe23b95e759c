//! Registry operations shared by the workflows: uploads, manifest pushes,
//! referrers queries, and the error-body rules of the spec.

use reqwest::Method;
use serde_json::Value;

use crate::check::{Context, Step, ensure, fail, skip};
use crate::client::{Client, ErrorSample, Resp, truncate};
use crate::fixtures::{Blob, Image, Manifest};

/// Error codes of the spec's "Error Codes" table (code-1 .. code-14).
pub(crate) const SPEC_ERROR_CODES: [&str; 14] = [
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
];

/// Legacy Docker codes the spec says clients MAY encounter ("Legacy Docker
/// support error codes").
pub(crate) const LEGACY_ERROR_CODES: [&str; 2] = ["TAG_INVALID", "MANIFEST_UNVERIFIED"];

/// Starts an upload session: `POST /v2/<repo>/blobs/uploads/` must answer
/// 202 with a `Location`. Returns the answer and the location.
pub(crate) fn start_upload(c: &Client, repo: &str) -> Step<(Resp, String)> {
    let req = c
        .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))?
        .empty_body();
    let resp = c.send(req)?;
    resp.expect(&[202])?;
    let Some(location) = resp.location().map(str::to_string) else {
        return fail(format!(
            "202 without a Location header: {}",
            resp.describe()
        ));
    };
    Ok((resp, location))
}

/// `PUT <location>?digest=<digest>` with the given body.
pub(crate) fn put_upload(c: &Client, location: &str, digest: &str, body: &[u8]) -> Step<Resp> {
    let req = c
        .req_location(Method::PUT, location)?
        .query("digest", digest)
        .octets(body.to_vec());
    c.send(req)
}

/// Best-effort cleanup of an upload session the check no longer needs.
pub(crate) fn cancel_upload(c: &Client, location: &str) {
    if let Ok(req) = c.req_location(Method::DELETE, location) {
        let _ = c.send(req);
    }
}

/// Uploads a blob with POST then PUT (the MUST path of the spec) and checks
/// the 201 and its `Location`.
pub(crate) fn push_blob(c: &Client, repo: &str, blob: &Blob) -> Step {
    let (_, location) = start_upload(c, repo)?;
    let resp = put_upload(c, &location, &blob.digest, &blob.data)?;
    resp.expect(&[201])?;
    ensure!(
        resp.location().is_some(),
        "201 without a Location header: {}",
        resp.describe()
    );
    Ok(())
}

/// Pushes a manifest and expects 201 with a `Location`.
pub(crate) fn push_manifest(c: &Client, repo: &str, reference: &str, m: &Manifest) -> Step<Resp> {
    let resp = c.put_manifest(repo, reference, m.media_type, &m.bytes)?;
    resp.expect(&[201])?;
    ensure!(
        resp.location().is_some(),
        "201 without a Location header: {}",
        resp.describe()
    );
    Ok(resp)
}

/// Pushes an image's blobs and then its manifest under `reference`.
pub(crate) fn push_image(c: &Client, repo: &str, image: &Image, reference: &str) -> Step {
    for blob in image.blobs() {
        push_blob(c, repo, blob).context("pushing a blob")?;
    }
    push_manifest(c, repo, reference, &image.manifest).context("pushing the manifest")?;
    Ok(())
}

/// For checks of a specific error code (SHOULD level): passes if the body is
/// an OCI error carrying one of `codes`; skips if the body is not JSON (a 4xx
/// body MAY be in any format); fails if the body names other codes.
pub(crate) fn expect_code(resp: &Resp, codes: &[&str]) -> Step {
    match resp.error_codes() {
        None => skip(format!(
            "no OCI error body to inspect (allowed: a 4xx body MAY be in any format): {}",
            resp.describe()
        )),
        Some(found) if found.iter().any(|f| codes.contains(&f.as_str())) => Ok(()),
        Some(found) => fail(format!(
            "expected error code {}, got {:?}: {}",
            codes.join(" or "),
            found,
            resp.describe()
        )),
    }
}

/// Checks the 4xx JSON error bodies seen during a workflow against the
/// spec's "Error Codes" section: an `errors` array of objects whose `code` is
/// one of the listed codes and whose optional `message` is a string.
pub(crate) fn check_error_samples(samples: &[ErrorSample]) -> Step {
    if samples.is_empty() {
        return skip("no JSON error bodies were seen in this workflow");
    }
    let mut problems = Vec::new();
    for s in samples {
        if let Err(why) = error_body_problem(&s.body) {
            problems.push(format!(
                "{} -> {}: {why} (body: {})",
                s.request,
                s.status,
                truncate(&String::from_utf8_lossy(&s.body), 160)
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        fail(format!(
            "{} of {} error bodies break the format: {}",
            problems.len(),
            samples.len(),
            problems.join("; ")
        ))
    }
}

fn error_body_problem(body: &[u8]) -> Result<(), String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not valid JSON ({e})"))?;
    let errors = v
        .get("errors")
        .and_then(Value::as_array)
        .ok_or("no \"errors\" array")?;
    if errors.is_empty() {
        return Err("empty \"errors\" array".into());
    }
    for e in errors {
        let code = e
            .get("code")
            .and_then(Value::as_str)
            .ok_or("an error without a string \"code\"")?;
        if !SPEC_ERROR_CODES.contains(&code) && !LEGACY_ERROR_CODES.contains(&code) {
            return Err(format!(
                "code {code:?} is not one of the spec's error codes"
            ));
        }
        if let Some(m) = e.get("message")
            && !m.is_string()
        {
            return Err(format!("\"message\" of {code} is not a string"));
        }
    }
    Ok(())
}

/// One answer of the referrers API, with all `Link`-paginated pages merged.
pub(crate) struct Referrers {
    /// The first page's answer (status, headers).
    pub first: Resp,
    /// Descriptors from all pages.
    pub manifests: Vec<Value>,
}

/// `GET /v2/<repo>/referrers/<digest>[?artifactType=..]`, following
/// `Link: <..>; rel="next"` pages. Fails on anything but a well-formed image
/// index with status 200; a 404 fails with a message saying the API is missing.
pub(crate) fn referrers(
    c: &Client,
    repo: &str,
    digest: &str,
    artifact_type: Option<&str>,
) -> Step<Referrers> {
    let mut req = c.req(Method::GET, &format!("/v2/{repo}/referrers/{digest}"))?;
    if let Some(t) = artifact_type {
        req = req.query("artifactType", t);
    }
    let first = c.send(req)?;
    if first.status == 404 {
        return fail(format!(
            "referrers API not available (a registry that supports it MUST NOT answer 404): {}",
            first.describe()
        ));
    }
    first.expect(&[200])?;
    let mut manifests = index_manifests(&first)?;
    let mut next = next_link(&first);
    let mut pages = 1;
    while let Some(link) = next {
        pages += 1;
        ensure!(pages <= 100, "more than 100 pages of referrers; giving up");
        let page = c.send(c.req_location(Method::GET, &link)?)?;
        page.expect(&[200])?;
        manifests.extend(index_manifests(&page)?);
        next = next_link(&page);
    }
    Ok(Referrers { first, manifests })
}

fn index_manifests(resp: &Resp) -> Step<Vec<Value>> {
    let v: Value = match serde_json::from_slice(&resp.body) {
        Ok(v) => v,
        Err(e) => {
            return fail(format!(
                "referrers body is not JSON ({e}): {}",
                resp.describe()
            ));
        }
    };
    let Some(list) = v.get("manifests").and_then(Value::as_array) else {
        return fail(format!(
            "referrers body is not an image index with a \"manifests\" array: {}",
            resp.describe()
        ));
    };
    Ok(list.clone())
}

/// The target of a `Link: <url>; rel="next"` header, if any.
pub(crate) fn next_link(resp: &Resp) -> Option<String> {
    for value in resp.header_all("link") {
        for part in value.split(',') {
            let part = part.trim();
            let Some(rest) = part.strip_prefix('<') else {
                continue;
            };
            let Some((target, params)) = rest.split_once('>') else {
                continue;
            };
            let is_next = params.split(';').any(|p| {
                let p = p.trim().to_ascii_lowercase();
                p == "rel=\"next\"" || p == "rel=next"
            });
            if is_next {
                return Some(target.trim().to_string());
            }
        }
    }
    None
}

/// Digests of the descriptors in a referrers list.
pub(crate) fn digests_of(manifests: &[Value]) -> Vec<String> {
    manifests
        .iter()
        .filter_map(|d| d.get("digest").and_then(Value::as_str).map(str::to_string))
        .collect()
}

/// Whether the registry implements the referrers API, judged from a query
/// for `digest` in `repo` (after content was pushed there): `Some(false)` on
/// 404, `Some(true)` on 200, `None` if the answer says neither.
pub(crate) fn referrers_supported(c: &Client, repo: &str, digest: &str) -> Option<bool> {
    let resp = c.get(&format!("/v2/{repo}/referrers/{digest}")).ok()?;
    match resp.status {
        200 => Some(true),
        404 => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_rules() {
        assert!(
            error_body_problem(br#"{"errors":[{"code":"BLOB_UNKNOWN","message":"x"}]}"#).is_ok()
        );
        assert!(error_body_problem(br#"{"errors":[{"code":"TAG_INVALID"}]}"#).is_ok());
        assert!(error_body_problem(br#"{"errors":[{"code":"NOT_A_CODE"}]}"#).is_err());
        assert!(error_body_problem(br#"{"errors":[]}"#).is_err());
        assert!(error_body_problem(br#"{"error":"x"}"#).is_err());
        assert!(error_body_problem(br#"{"errors":[{"code":"DENIED","message":1}]}"#).is_err());
    }
}
