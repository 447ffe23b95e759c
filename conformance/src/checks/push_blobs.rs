//! Push workflow, blob half: upload sessions, monolithic and chunked uploads,
//! upload status and cancel, digest verification, cross-repository mounts,
//! sha512 blobs and repository-name rules.

use reqwest::Method;

use super::Env;
use crate::check::{Context, Step, Stop, ensure, fail, skip};
use crate::client::{Client, Resp};
use crate::digest;
use crate::fixtures::Blob;
use crate::ops::{cancel_upload, expect_code, push_blob, put_upload, start_upload};
use crate::report::{Level::*, Recorder};

/// Chunk size used when the registry states no minimum.
const DEFAULT_CHUNK: usize = 1024;
/// Largest `OCI-Chunk-Min-Length` the suite is willing to honour.
const MAX_CHUNK: usize = 32 * 1024 * 1024;

/// Checks the blob is served with exactly these bytes.
fn blob_served(c: &Client, repo: &str, blob: &Blob) -> Step {
    let resp = c.get(&format!("/v2/{repo}/blobs/{}", blob.digest))?;
    resp.expect(&[200])?;
    ensure!(
        resp.body == blob.data,
        "blob {} is served with different content ({} bytes, {})",
        blob.digest,
        resp.body.len(),
        digest::sha256(&resp.body)
    );
    Ok(())
}

/// Checks a 201 carries a `Location` that serves the blob.
fn location_serves(c: &Client, resp: &Resp, blob: &Blob) -> Step {
    let Some(location) = resp.location() else {
        return fail(format!(
            "201 without a Location header: {}",
            resp.describe()
        ));
    };
    let got = c.send(c.req_location(Method::GET, location)?)?;
    ensure!(
        got.status == 200 && got.body == blob.data,
        "Location {location:?} of the new blob does not serve it: {}",
        got.describe()
    );
    Ok(())
}

/// Chunk size for this registry, from the `OCI-Chunk-Min-Length` of a POST.
fn chunk_size(post: &Resp) -> Step<usize> {
    let min = match post.header("oci-chunk-min-length") {
        None => return Ok(DEFAULT_CHUNK),
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) => n,
            Err(_) => return fail(format!("OCI-Chunk-Min-Length {v:?} is not a number")),
        },
    };
    if min > MAX_CHUNK {
        return skip(format!(
            "OCI-Chunk-Min-Length {min} is above the suite's limit of {MAX_CHUNK} bytes"
        ));
    }
    Ok(min.max(DEFAULT_CHUNK))
}

/// One `PATCH` of bytes `start..start+data.len()` to `location`.
fn patch(c: &Client, location: &str, start: usize, data: &[u8]) -> Step<Resp> {
    let end = start + data.len() - 1;
    let req = c
        .req_location(Method::PATCH, location)?
        .header("content-range", format!("{start}-{end}"))
        .octets(data.to_vec());
    c.send(req)
}

/// Checks a 202 (PATCH) or 204 (GET status) answer carries `Location` and
/// `Range: 0-<end>`; returns the new location.
fn progress_headers(resp: &Resp, end: usize) -> Step<String> {
    let Some(location) = resp.location() else {
        return fail(format!("no Location header: {}", resp.describe()));
    };
    let want = format!("0-{end}");
    let got = resp.header("range").unwrap_or("");
    ensure!(
        got == want,
        "Range header {got:?}, expected {want:?}: {}",
        resp.describe()
    );
    Ok(location.to_string())
}

pub(crate) fn run(env: &Env, r: &mut Recorder) {
    let c = env.c;
    let id = env.run_id;
    let repo = env.repos.push.as_str();

    r.check("upload-post-202", Must, || {
        let (_, location) = start_upload(c, repo)?;
        cancel_upload(c, &location);
        Ok(())
    });
    r.check("upload-session-unique", Must, || {
        let (_, a) = start_upload(c, repo)?;
        let (_, b) = start_upload(c, repo)?;
        cancel_upload(c, &a);
        cancel_upload(c, &b);
        ensure!(a != b, "two POSTs returned the same upload Location {a:?}");
        Ok(())
    });
    let mut finished_location = None;
    r.check("monolithic-post-put", Must, || {
        let blob = Blob::unique(id, "monolithic post put", 2000);
        let (_, location) = start_upload(c, repo)?;
        let resp = put_upload(c, &location, &blob.digest, &blob.data)?;
        resp.expect(&[201])?;
        finished_location = Some(location);
        location_serves(c, &resp, &blob)?;
        c.head(&format!("/v2/{repo}/blobs/{}", blob.digest))?
            .expect(&[200])?;
        blob_served(c, repo, &blob)
    });
    r.check("monolithic-single-post", Should, || {
        let blob = Blob::unique(id, "single post", 2000);
        let req = c
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))?
            .query("digest", &blob.digest)
            .octets(blob.data.clone());
        let resp = c.send(req)?;
        match resp.status {
            201 => location_serves(c, &resp, &blob)?,
            202 => {
                // Single-POST support is a MAY; 202 is the SHOULD fallback,
                // after which the client completes the upload with PUT.
                let Some(location) = resp.location() else {
                    return fail(format!(
                        "202 without a Location header: {}",
                        resp.describe()
                    ));
                };
                let done = put_upload(c, location, &blob.digest, &blob.data)?;
                done.expect(&[201])?;
            }
            _ => return resp.expect(&[201, 202]),
        }
        blob_served(c, repo, &blob)
    });

    // Chunked upload in three PATCHes, closed by a PUT without body.
    let mut patch_header_problems: Option<Vec<String>> = None;
    r.check("chunked-upload", Must, || {
        let (post, mut location) = start_upload(c, repo)?;
        let chunk = chunk_size(&post)?;
        let blob = Blob::unique(id, "chunked", 2 * chunk + 100);
        let mut problems = Vec::new();
        let mut start = 0;
        for part in blob.data.chunks(chunk) {
            let resp = patch(c, &location, start, part)?;
            resp.expect(&[202])?;
            start += part.len();
            match progress_headers(&resp, start - 1) {
                Ok(l) => location = l,
                Err(Stop::Fail(why) | Stop::Skip(why)) => {
                    problems.push(why);
                    if let Some(l) = resp.location() {
                        location = l.to_string();
                    }
                }
            }
        }
        let req = c
            .req_location(Method::PUT, &location)?
            .query("digest", &blob.digest)
            .empty_body();
        let resp = c.send(req)?;
        resp.expect(&[201])?;
        patch_header_problems = Some(problems);
        location_serves(c, &resp, &blob)?;
        blob_served(c, repo, &blob)
    });
    r.check(
        "chunked-patch-headers",
        Must,
        || match &patch_header_problems {
            None => skip("depends on push/chunked-upload, which did not complete"),
            Some(p) if p.is_empty() => Ok(()),
            Some(p) => fail(p.join("; ")),
        },
    );
    r.check("chunked-put-final-chunk", Must, || {
        let (post, location) = start_upload(c, repo)?;
        let chunk = chunk_size(&post)?;
        let blob = Blob::unique(id, "chunked final in put", chunk + 300);
        let resp = patch(c, &location, 0, &blob.data[..chunk])?;
        resp.expect(&[202])?;
        let location = resp.location().unwrap_or(&location).to_string();
        let rest = &blob.data[chunk..];
        let req = c
            .req_location(Method::PUT, &location)?
            .query("digest", &blob.digest)
            .header("content-range", format!("{chunk}-{}", blob.size() - 1))
            .octets(rest.to_vec());
        let resp = c.send(req)?;
        resp.expect(&[201])?;
        location_serves(c, &resp, &blob)?;
        blob_served(c, repo, &blob)
    });
    r.check("upload-status", Must, || {
        let (post, location) = start_upload(c, repo)?;
        let chunk = chunk_size(&post)?;
        let blob = Blob::unique(id, "status", chunk + 10);
        let resp = patch(c, &location, 0, &blob.data[..chunk])?;
        resp.expect(&[202])?;
        let location = resp.location().unwrap_or(&location).to_string();
        let status = c.send(c.req_location(Method::GET, &location)?)?;
        cancel_upload(c, &location);
        status.expect(&[204])?;
        progress_headers(&status, chunk - 1).map(|_| ())
    });
    r.check("chunked-out-of-order-416", Must, || {
        let (post, location) = start_upload(c, repo)?;
        let chunk = chunk_size(&post)?;
        let blob = Blob::unique(id, "out of order", 3 * chunk);
        let resp = patch(c, &location, 0, &blob.data[..chunk])?;
        resp.expect(&[202])?;
        let location = resp.location().unwrap_or(&location).to_string();
        // Skip the second chunk: the third one starts past the end so far.
        let gap = patch(c, &location, 2 * chunk, &blob.data[2 * chunk..])?;
        cancel_upload(c, gap.location().unwrap_or(&location));
        ensure!(
            gap.status == 416,
            "a chunk starting at byte {} after bytes 0-{} was answered {} instead of 416: {}",
            2 * chunk,
            chunk - 1,
            gap.status,
            gap.describe()
        );
        Ok(())
    });
    let fabricated = format!("/v2/{repo}/blobs/uploads/{}", fake_uuid(id));
    r.check("upload-unknown-404", Should, || {
        let mut answers = Vec::new();
        if let Some(done) = &finished_location {
            answers.push(c.send(c.req_location(Method::GET, done)?)?);
        }
        answers.push(c.get(&fabricated)?);
        answers.push(
            c.send(
                c.req(Method::PATCH, &fabricated)?
                    .header("content-range", "0-9")
                    .octets(vec![b'x'; 10]),
            )?,
        );
        let digest = digest::sha256(b"x");
        answers.push(
            c.send(
                c.req(Method::PUT, &fabricated)?
                    .query("digest", &digest)
                    .octets(b"x".to_vec()),
            )?,
        );
        for a in answers {
            a.expect(&[404])?;
        }
        Ok(())
    });
    r.check("upload-unknown-code", Should, || {
        let resp = c.get(&fabricated)?;
        resp.expect(&[404])?;
        expect_code(&resp, &["BLOB_UPLOAD_UNKNOWN"])
    });
    r.check("upload-cancel", Should, || {
        let (_, location) = start_upload(c, repo)?;
        let resp = c.send(c.req_location(Method::DELETE, &location)?)?;
        if matches!(resp.status, 400 | 404 | 405) {
            return skip(format!(
                "registry does not cancel uploads (DELETE on an upload is not part of v1.1): {}",
                resp.describe()
            ));
        }
        ensure!(
            resp.is_success(),
            "DELETE on an upload answered {}: {}",
            resp.status,
            resp.describe()
        );
        let after = c.send(c.req_location(Method::GET, &location)?)?;
        ensure!(
            after.status == 404,
            "the upload is still there after DELETE ({}): {}",
            resp.status,
            after.describe()
        );
        Ok(())
    });

    // Digest verification.
    let mut mismatch_resp = None;
    r.check("blob-digest-mismatch-rejected", Must, || {
        let claimed = Blob::unique(id, "claimed", 500);
        let sent = Blob::unique(id, "actually sent", 500);
        let (_, location) = start_upload(c, repo)?;
        let resp = put_upload(c, &location, &claimed.digest, &sent.data)?;
        let status = resp.status;
        let describe = resp.describe();
        mismatch_resp = Some(resp);
        cancel_upload(c, &location);
        ensure!(
            (400..500).contains(&status),
            "content that does not match ?digest= was answered {status} instead of 400: {describe}"
        );
        let head = c.head(&format!("/v2/{repo}/blobs/{}", claimed.digest))?;
        ensure!(
            head.status == 404,
            "after the rejected upload, the claimed digest answers {} instead of 404: {}",
            head.status,
            head.describe()
        );
        Ok(())
    });
    r.check(
        "blob-digest-mismatch-code",
        Should,
        || match &mismatch_resp {
            Some(resp) if (400..500).contains(&resp.status) => {
                expect_code(resp, &["DIGEST_INVALID"])
            }
            _ => skip("depends on push/blob-digest-mismatch-rejected, which did not pass"),
        },
    );

    // Cross-repository mounts.
    let source = env.repos.mount_source.as_str();
    r.check("mount-from", Must, || {
        let blob = Blob::unique(id, "mounted", 1500);
        push_blob(c, source, &blob).context(format!("pushing the blob to {source}"))?;
        let req = c
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))?
            .query("mount", &blob.digest)
            .query("from", source)
            .empty_body();
        let resp = c.send(req)?;
        if resp.status == 202 {
            if let Some(l) = resp.location() {
                cancel_upload(c, l);
            }
            return skip(
                "the registry declined the mount with 202 (allowed: mounting is optional)",
            );
        }
        resp.expect(&[201])?;
        location_serves(c, &resp, &blob)?;
        blob_served(c, repo, &blob)
    });
    r.check("mount-fallback-202", Should, || {
        let blob = Blob::unique(id, "mount of absent blob", 700);
        let req = c
            .req(Method::POST, &format!("/v2/{repo}/blobs/uploads/"))?
            .query("mount", &blob.digest)
            .query("from", source)
            .empty_body();
        let resp = c.send(req)?;
        resp.expect(&[202])?;
        let Some(location) = resp.location() else {
            return fail(format!(
                "202 without a Location header: {}",
                resp.describe()
            ));
        };
        let done = put_upload(c, location, &blob.digest, &blob.data)?;
        done.expect(&[201])?;
        blob_served(c, repo, &blob)
    });

    // sha512 (image-spec: implementations MAY implement it).
    let mut sha512_supported = None;
    r.check("blob-sha512", Must, || {
        let blob = Blob::unique(id, "sha512", 900);
        let d512 = digest::sha512(&blob.data);
        let (_, location) = start_upload(c, repo)?;
        let resp = put_upload(c, &location, &d512, &blob.data)?;
        if (400..500).contains(&resp.status) {
            cancel_upload(c, &location);
            sha512_supported = Some(false);
            return skip(format!(
                "sha512 not supported (optional: image-spec says implementations MAY): {}",
                resp.describe()
            ));
        }
        resp.expect(&[201])?;
        sha512_supported = Some(true);
        let got = c.get(&format!("/v2/{repo}/blobs/{d512}"))?;
        got.expect(&[200])?;
        ensure!(
            got.body == blob.data,
            "blob fetched by its sha512 digest has different content"
        );
        if let Some(h) = got.header("docker-content-digest") {
            ensure!(
                digest::matches(h, &got.body) != Some(false),
                "Docker-Content-Digest {h} does not match the content"
            );
        }
        Ok(())
    });
    r.check("blob-sha512-mismatch-rejected", Must, || {
        if sha512_supported != Some(true) {
            return skip("sha512 uploads are not supported (optional)");
        }
        let claimed = Blob::unique(id, "sha512 claimed", 400);
        let sent = Blob::unique(id, "sha512 sent", 400);
        let d512 = digest::sha512(&claimed.data);
        let (_, location) = start_upload(c, repo)?;
        let resp = put_upload(c, &location, &d512, &sent.data)?;
        cancel_upload(c, &location);
        ensure!(
            (400..500).contains(&resp.status),
            "content that does not match a sha512 ?digest= was answered {}: {}",
            resp.status,
            resp.describe()
        );
        Ok(())
    });

    names(env, r);
}

/// A well-formed UUID (v4 layout) no registry has handed out.
fn fake_uuid(run_id: &str) -> String {
    let d = digest::sha256(format!("berth-conformance fake upload {run_id}").as_bytes());
    let h = d.trim_start_matches("sha256:");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Repository names that break the grammar must be refused.
fn names(env: &Env, r: &mut Recorder) {
    let c = env.c;
    let id = env.run_id;
    let ns = env.namespace;
    let invalid = [
        format!("{ns}/UPPER-{id}"),
        format!("{ns}/double..dot-{id}"),
        format!("{ns}/-leading-dash-{id}"),
        format!("{ns}/trailing-dash-{id}-"),
    ];
    let mut first = None;
    r.check("name-invalid-rejected", Must, || {
        for name in &invalid {
            let resp = c.send(
                c.req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))?
                    .empty_body(),
            )?;
            if let Some(l) = resp.location().filter(|_| resp.is_success()) {
                cancel_upload(c, l);
            }
            ensure!(
                (400..500).contains(&resp.status),
                "upload to the invalid repository name {name:?} answered {} instead of a 4xx: {}",
                resp.status,
                resp.describe()
            );
            first.get_or_insert(resp);
        }
        Ok(())
    });
    r.check("name-invalid-code", Should, || match &first {
        Some(resp) if resp.status == 404 => expect_code(resp, &["NAME_INVALID", "NAME_UNKNOWN"]),
        Some(resp) => expect_code(resp, &["NAME_INVALID"]),
        None => skip("depends on push/name-invalid-rejected, which did not pass"),
    });
    r.check("name-long-no-5xx", Should, || {
        // Valid grammar, 256+ characters: the spec lets registries refuse
        // overlong names, but with a client error, not a server error.
        let name = format!("{ns}/{id}-{}", "a".repeat(256));
        let resp = c.send(
            c.req(Method::POST, &format!("/v2/{name}/blobs/uploads/"))?
                .empty_body(),
        )?;
        if let Some(l) = resp.location().filter(|_| resp.is_success()) {
            cancel_upload(c, l);
        }
        ensure!(
            resp.status < 500,
            "a {}-character repository name answered {} (a server error) instead of success or a 4xx such as NAME_INVALID: {}",
            name.len(),
            resp.status,
            resp.describe()
        );
        Ok(())
    });
}
