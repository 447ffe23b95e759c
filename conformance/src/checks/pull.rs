//! Pull workflow: `GET /v2/`, manifests and blobs by tag and digest (GET and
//! HEAD), range reads, and the answers for content that does not exist.

use serde_json::json;

use super::Env;
use crate::check::{Step, ensure, fail, need, skip};
use crate::client::Resp;
use crate::digest;
use crate::fixtures::{self, Image, Manifest, OCI_INDEX};
use crate::ops::{expect_code, push_image, push_manifest};
use crate::report::{Level::*, Recorder};

/// Checks that the body is exactly the expected bytes.
fn same_bytes(resp: &Resp, expected: &[u8], what: &str) -> Step {
    if resp.body == expected {
        return Ok(());
    }
    fail(format!(
        "{what}: body differs from what was pushed ({} bytes pushed, {} returned, digest {}): {}",
        expected.len(),
        resp.body.len(),
        digest::sha256(&resp.body),
        resp.request
    ))
}

/// If `Docker-Content-Digest` is present, checks it is the digest of `data`.
fn digest_header_matches(resp: &Resp, data: &[u8]) -> Step {
    let Some(value) = resp.registry_header("docker-content-digest") else {
        return skip("no Docker-Content-Digest header (its absence is checked separately)");
    };
    match digest::matches(value, data) {
        Some(true) => Ok(()),
        Some(false) => fail(format!(
            "Docker-Content-Digest {value} does not match the content ({}): {}",
            digest::sha256(data),
            resp.request
        )),
        None => skip(format!(
            "Docker-Content-Digest {value} uses an algorithm the suite cannot verify"
        )),
    }
}

fn has_digest_header(resp: &Resp) -> Step {
    ensure!(
        resp.registry_header("docker-content-digest").is_some(),
        "no Docker-Content-Digest header: {}",
        resp.request
    );
    Ok(())
}

pub(crate) fn run(env: &Env, r: &mut Recorder) {
    let c = env.c;
    let repo = env.repos.pull.as_str();

    r.check("api-version-check", Must, || {
        let resp = c.get("/v2/")?;
        if resp.status == 401 {
            return fail(format!(
                "401: the registry requires authentication; the suite runs anonymously: {}",
                resp.describe()
            ));
        }
        resp.expect(&[200])
    });

    let image = Image::new(env.run_id, "pull");
    let img = r.setup("setup-image", Must, || {
        push_image(c, repo, &image, "v1")?;
        Ok(&image)
    });
    let index: Manifest = fixtures::index(
        &[{
            let mut d = image.manifest.descriptor();
            d["platform"] = json!({ "architecture": "amd64", "os": "linux" });
            d
        }],
        fixtures::fields([(
            "annotations",
            json!({ "berth.conformance.run": env.run_id }),
        )]),
    );
    let idx = r.setup("setup-index", Must, || {
        need(&img)?;
        push_manifest(c, repo, "multi", &index)?;
        Ok(&index)
    });

    // Manifests.
    r.check("manifest-get-by-tag", Must, || {
        let img = need(&img)?;
        let resp = c.get_manifest(repo, "v1")?;
        resp.expect(&[200])?;
        same_bytes(&resp, &img.manifest.bytes, "manifest by tag")
    });
    r.check("manifest-get-by-digest", Must, || {
        let img = need(&img)?;
        let resp = c.get_manifest(repo, &img.manifest.digest)?;
        resp.expect(&[200])?;
        same_bytes(&resp, &img.manifest.bytes, "manifest by digest")
    });
    r.check("index-get-by-tag", Must, || {
        let idx = need(&idx)?;
        let resp = c.get_manifest(repo, "multi")?;
        resp.expect(&[200])?;
        same_bytes(&resp, &idx.bytes, "index by tag")
    });
    r.check("manifest-content-type", Should, || {
        let img = need(&img)?;
        let mut cases = vec![
            ("v1".to_string(), img.manifest.media_type),
            (img.manifest.digest.clone(), img.manifest.media_type),
        ];
        if let Ok(idx) = &idx {
            cases.push(("multi".to_string(), OCI_INDEX));
            cases.push((idx.digest.clone(), OCI_INDEX));
        }
        for (reference, want) in cases {
            let resp = c.get_manifest(repo, &reference)?;
            resp.expect(&[200])?;
            let got = resp.media_type().unwrap_or_default();
            ensure!(
                got == want,
                "Content-Type {got:?} differs from the pushed media type {want:?}: {}",
                resp.request
            );
        }
        Ok(())
    });
    r.check("manifest-digest-header-present", Should, || {
        need(&img)?;
        let resp = c.get_manifest(repo, "v1")?;
        resp.expect(&[200])?;
        has_digest_header(&resp)
    });
    r.check("manifest-digest-header-matches", Must, || {
        let img = need(&img)?;
        for reference in ["v1", img.manifest.digest.as_str()] {
            let resp = c.get_manifest(repo, reference)?;
            resp.expect(&[200])?;
            digest_header_matches(&resp, &img.manifest.bytes)?;
        }
        Ok(())
    });
    r.check("manifest-head-by-tag", Must, || {
        need(&img)?;
        c.head_manifest(repo, "v1")?.expect(&[200])
    });
    r.check("manifest-head-by-digest", Must, || {
        let img = need(&img)?;
        c.head_manifest(repo, &img.manifest.digest)?.expect(&[200])
    });
    r.check("manifest-head-headers", Should, || {
        let img = need(&img)?;
        let resp = c.head_manifest(repo, "v1")?;
        resp.expect(&[200])?;
        let len = resp.header("content-length").unwrap_or("");
        ensure!(
            len == img.manifest.bytes.len().to_string(),
            "Content-Length {len:?}, expected {}: {}",
            img.manifest.bytes.len(),
            resp.request
        );
        let dcd = resp.header("docker-content-digest").unwrap_or("");
        ensure!(
            dcd == img.manifest.digest,
            "Docker-Content-Digest {dcd:?}, expected {}: {}",
            img.manifest.digest,
            resp.request
        );
        Ok(())
    });

    // Blobs.
    r.check("blob-get", Must, || {
        let img = need(&img)?;
        for blob in img.blobs() {
            let resp = c.get(&format!("/v2/{repo}/blobs/{}", blob.digest))?;
            resp.expect(&[200])?;
            same_bytes(&resp, &blob.data, "blob")?;
        }
        Ok(())
    });
    r.check("blob-digest-header-present", Should, || {
        let img = need(&img)?;
        let resp = c.get(&format!("/v2/{repo}/blobs/{}", img.layer.digest))?;
        resp.expect(&[200])?;
        has_digest_header(&resp)
    });
    r.check("blob-digest-header-matches", Must, || {
        let img = need(&img)?;
        let resp = c.get(&format!("/v2/{repo}/blobs/{}", img.layer.digest))?;
        resp.expect(&[200])?;
        digest_header_matches(&resp, &img.layer.data)
    });
    r.check("blob-head", Must, || {
        let img = need(&img)?;
        c.head(&format!("/v2/{repo}/blobs/{}", img.layer.digest))?
            .expect(&[200])
    });
    r.check("blob-head-content-length", Should, || {
        let img = need(&img)?;
        let resp = c.head(&format!("/v2/{repo}/blobs/{}", img.layer.digest))?;
        resp.expect(&[200])?;
        let len = resp.header("content-length").unwrap_or("");
        ensure!(
            len == img.layer.size().to_string(),
            "Content-Length {len:?}, expected {}: {}",
            img.layer.size(),
            resp.request
        );
        Ok(())
    });
    r.check("blob-range-request", Should, || {
        let img = need(&img)?;
        let (start, end) = (10usize, 99usize);
        let req = c
            .req(
                reqwest::Method::GET,
                &format!("/v2/{repo}/blobs/{}", img.layer.digest),
            )?
            .header("range", format!("bytes={start}-{end}"));
        let resp = c.send(req)?;
        ensure!(
            resp.status == 206,
            "Range request answered {} instead of 206 Partial Content: {}",
            resp.status,
            resp.request
        );
        ensure!(
            resp.body == img.layer.data[start..=end],
            "206 body is not bytes {start}-{end} of the blob ({} bytes returned)",
            resp.body.len()
        );
        let want = format!("bytes {start}-{end}/{}", img.layer.size());
        let got = resp.header("content-range").unwrap_or("");
        ensure!(got == want, "Content-Range {got:?}, expected {want:?}");
        Ok(())
    });

    // Content that does not exist.
    let absent_tag = format!("absent-{}", env.run_id);
    let absent_digest = digest::unknown(env.run_id, "pull");
    r.check("manifest-unknown-404", Must, || {
        need(&img)?;
        for reference in [absent_tag.as_str(), absent_digest.as_str()] {
            c.get_manifest(repo, reference)?.expect(&[404])?;
            c.head_manifest(repo, reference)?.expect(&[404])?;
        }
        Ok(())
    });
    r.check("manifest-invalid-reference-404", Must, || {
        need(&img)?;
        // Neither a tag nor a digest: nothing can exist under it. The spec
        // lists only 404 for a failed manifest GET or HEAD, and the OCI
        // conformance suite asks this exact reference.
        let invalid = ".INVALID_MANIFEST_NAME";
        c.get_manifest(repo, invalid)?.expect(&[404])?;
        c.head_manifest(repo, invalid)?.expect(&[404])
    });
    r.check("manifest-unknown-code", Should, || {
        need(&img)?;
        let resp = c.get_manifest(repo, &absent_tag)?;
        resp.expect(&[404])?;
        expect_code(&resp, &["MANIFEST_UNKNOWN"])
    });
    r.check("blob-unknown-404", Must, || {
        need(&img)?;
        let path = format!("/v2/{repo}/blobs/{absent_digest}");
        c.get(&path)?.expect(&[404])?;
        c.head(&path)?.expect(&[404])
    });
    r.check("blob-unknown-code", Should, || {
        need(&img)?;
        let resp = c.get(&format!("/v2/{repo}/blobs/{absent_digest}"))?;
        resp.expect(&[404])?;
        expect_code(&resp, &["BLOB_UNKNOWN"])
    });
    let absent_repo = env.repos.absent.as_str();
    r.check("repository-unknown-404", Must, || {
        c.get_manifest(absent_repo, "latest")?.expect(&[404])?;
        c.get(&format!("/v2/{absent_repo}/blobs/{absent_digest}"))?
            .expect(&[404])
    });
    r.check("repository-unknown-code", Should, || {
        let resp = c.get_manifest(absent_repo, "latest")?;
        resp.expect(&[404])?;
        expect_code(&resp, &["NAME_UNKNOWN", "MANIFEST_UNKNOWN"])
    });
    r.check("malformed-digest-4xx", Should, || {
        need(&img)?;
        // Neither a tag (no ':' allowed) nor a valid digest: 400 for the bad
        // input or 404 for what cannot exist, as the OCI conformance suite allows.
        let bad = "sha256:not-a-hex-digest";
        for resp in [
            c.get(&format!("/v2/{repo}/blobs/{bad}"))?,
            c.get_manifest(repo, bad)?,
        ] {
            ensure!(
                [400, 404].contains(&resp.status),
                "malformed digest answered {} instead of 400 or 404: {}",
                resp.status,
                resp.describe()
            );
        }
        Ok(())
    });
}
