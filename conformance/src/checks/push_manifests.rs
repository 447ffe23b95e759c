//! Push workflow, manifest half: pushes by tag and by digest, the headers of
//! the answer, byte-exact storage, references to missing content, `subject`
//! and `OCI-Subject`, digest mismatches, invalid and large manifests.

use reqwest::Method;
use serde_json::json;

use super::Env;
use crate::check::{Step, ensure, fail, need, skip};
use crate::client::{Client, MANIFEST_ACCEPT, Resp};
use crate::digest;
use crate::fixtures::{self, Blob, Image, Manifest, OCI_EMPTY, OCI_LAYER, OCI_MANIFEST};
use crate::ops::{expect_code, push_blob, push_manifest, referrers_supported};
use crate::report::{Level::*, Recorder};

/// Checks the manifest is served with exactly the pushed bytes.
fn manifest_served(c: &Client, repo: &str, reference: &str, m: &Manifest) -> Step {
    let resp = c.get_manifest(repo, reference)?;
    resp.expect(&[200])?;
    ensure!(
        resp.body == m.bytes,
        "{reference} is served with different bytes than were pushed ({} pushed, {} served, {})",
        m.bytes.len(),
        resp.body.len(),
        digest::sha256(&resp.body)
    );
    Ok(())
}

/// Checks the `Location` of a manifest push serves the manifest.
fn location_serves(c: &Client, resp: &Resp, m: &Manifest) -> Step {
    let Some(location) = resp.location() else {
        return fail(format!(
            "201 without a Location header: {}",
            resp.describe()
        ));
    };
    let req = c
        .req_location(Method::GET, location)?
        .header("accept", MANIFEST_ACCEPT);
    let got = c.send(req)?;
    ensure!(
        got.status == 200 && got.body == m.bytes,
        "Location {location:?} of the pushed manifest does not serve it: {}",
        got.describe()
    );
    Ok(())
}

/// A manifest for `image`'s blobs, made distinct by an annotation.
fn variant(image: &Image, label: &str) -> Manifest {
    fixtures::image_manifest(
        &image.config.descriptor(fixtures::OCI_CONFIG),
        &[image.layer.descriptor(OCI_LAYER)],
        fixtures::fields([("annotations", json!({ "berth.conformance.variant": label }))]),
    )
}

pub(crate) fn run(env: &Env, r: &mut Recorder) {
    let c = env.c;
    let id = env.run_id;
    let repo = env.repos.push.as_str();

    let image = Image::new(id, "push");
    let blobs = r.setup("setup-manifest-blobs", Must, || {
        for blob in image.blobs() {
            push_blob(c, repo, blob)?;
        }
        push_blob(c, repo, &Blob::empty_json())?;
        Ok(&image)
    });

    let mut put_answers: Vec<(Resp, String)> = Vec::new();
    r.check("manifest-put-by-tag", Must, || {
        let image = need(&blobs)?;
        let resp = push_manifest(c, repo, "v1", &image.manifest)?;
        location_serves(c, &resp, &image.manifest)?;
        put_answers.push((resp, image.manifest.digest.clone()));
        manifest_served(c, repo, "v1", &image.manifest)
    });
    r.check("manifest-put-by-digest", Must, || {
        let image = need(&blobs)?;
        let m = variant(image, "by digest");
        let resp = push_manifest(c, repo, &m.digest, &m)?;
        location_serves(c, &resp, &m)?;
        put_answers.push((resp, m.digest.clone()));
        manifest_served(c, repo, &m.digest, &m)
    });
    r.check("manifest-put-digest-header-present", Should, || {
        if put_answers.is_empty() {
            return skip("depends on push/manifest-put-by-tag and -by-digest, which did not pass");
        }
        for (resp, _) in &put_answers {
            ensure!(
                resp.header("docker-content-digest").is_some(),
                "no Docker-Content-Digest header: {}",
                resp.request
            );
        }
        Ok(())
    });
    r.check("manifest-put-digest-header-matches", Must, || {
        let mut seen = false;
        for (resp, want) in &put_answers {
            if let Some(got) = resp.header("docker-content-digest") {
                seen = true;
                ensure!(
                    got == want,
                    "Docker-Content-Digest {got:?} is not the pushed manifest's digest {want}: {}",
                    resp.request
                );
            }
        }
        if !seen {
            return skip("no Docker-Content-Digest header to compare");
        }
        Ok(())
    });
    r.check("manifest-byte-exact", Must, || {
        let image = need(&blobs)?;
        // Unusual but valid JSON: the registry must keep it byte for byte.
        let text = format!(
            "{{\n  \"schemaVersion\" : 2,\n\t\"mediaType\": \"{OCI_MANIFEST}\",\n  \"layers\": [ {} ],\n  \"config\":{},\n  \"annotations\": {{ \"z.last\": \"1\", \"a.first\": \"2\", \"berth.conformance.run\": \"{id}\" }}\n}}\n",
            image.layer.descriptor(OCI_LAYER),
            image.config.descriptor(fixtures::OCI_CONFIG),
        );
        let m = Manifest::from_bytes(OCI_MANIFEST, text.into_bytes());
        push_manifest(c, repo, "pretty", &m)?;
        manifest_served(c, repo, "pretty", &m)?;
        manifest_served(c, repo, &m.digest, &m)
    });
    r.check("manifest-missing-blob", Must, || {
        let image = need(&blobs)?;
        let missing = Blob::unique(id, "never pushed layer", 300);
        let m = fixtures::image_manifest(
            &image.config.descriptor(fixtures::OCI_CONFIG),
            &[missing.descriptor(OCI_LAYER)],
            Default::default(),
        );
        let resp = c.put_manifest(repo, "sparse", m.media_type, &m.bytes)?;
        if resp.status == 201 {
            return skip("the registry accepts manifests with missing blobs (allowed: rejecting them is a MAY)");
        }
        ensure!(
            (400..500).contains(&resp.status),
            "a manifest referencing a missing blob was answered {}: {}",
            resp.status,
            resp.describe()
        );
        let codes = resp.error_codes().unwrap_or_default();
        ensure!(
            codes.iter().any(|c| c == "MANIFEST_BLOB_UNKNOWN"),
            "a manifest rejected for a missing blob MUST carry MANIFEST_BLOB_UNKNOWN; got {}",
            resp.describe()
        );
        Ok(())
    });

    // A referrer whose subject does not exist (yet).
    let absent_subject = digest::unknown(id, "push subject");
    let mut subject_resp = None;
    r.check("manifest-subject-missing-accepted", Must, || {
        need(&blobs)?;
        let empty = Blob::empty_json();
        let m = fixtures::image_manifest(
            &empty.descriptor(OCI_EMPTY),
            &[empty.descriptor(OCI_EMPTY)],
            fixtures::fields([
                (
                    "artifactType",
                    json!("application/vnd.berth.conformance.push.v1"),
                ),
                (
                    "subject",
                    json!({ "mediaType": OCI_MANIFEST, "digest": absent_subject, "size": 1234 }),
                ),
            ]),
        );
        let resp = push_manifest(c, repo, &m.digest, &m)?;
        subject_resp = Some(resp);
        manifest_served(c, repo, &m.digest, &m)
    });
    r.check("manifest-oci-subject-header", Must, || {
        let Some(resp) = &subject_resp else {
            return skip("depends on push/manifest-subject-missing-accepted, which did not pass");
        };
        match referrers_supported(c, repo, &absent_subject) {
            Some(true) => {}
            Some(false) => {
                return skip(
                    "the registry has no referrers API (404); OCI-Subject is required only with it",
                );
            }
            None => return skip("cannot tell whether the registry supports the referrers API"),
        }
        let got = resp.header("oci-subject").unwrap_or("");
        ensure!(
            got == absent_subject,
            "OCI-Subject header {got:?}, expected {absent_subject}: {}",
            resp.request
        );
        Ok(())
    });

    // Digest verification and invalid manifests.
    let mut mismatch = None;
    r.check("manifest-digest-mismatch-rejected", Must, || {
        let image = need(&blobs)?;
        let m = variant(image, "mismatch");
        let wrong = digest::unknown(id, "manifest mismatch");
        let resp = c.put_manifest(repo, &wrong, m.media_type, &m.bytes)?;
        let (status, describe) = (resp.status, resp.describe());
        mismatch = Some(resp);
        ensure!(
            (400..500).contains(&status),
            "a manifest pushed under a digest that is not its own was answered {status} instead of 400: {describe}"
        );
        let head = c.head_manifest(repo, &wrong)?;
        ensure!(
            head.status == 404,
            "after the rejected push, {wrong} answers {}",
            head.status
        );
        Ok(())
    });
    r.check(
        "manifest-digest-mismatch-code",
        Should,
        || match &mismatch {
            Some(resp) if (400..500).contains(&resp.status) => {
                expect_code(resp, &["DIGEST_INVALID"])
            }
            _ => skip("depends on push/manifest-digest-mismatch-rejected, which did not pass"),
        },
    );
    r.check("manifest-invalid-json-rejected", Should, || {
        let resp = c.put_manifest(repo, "not-json", OCI_MANIFEST, b"this is not a manifest")?;
        ensure!(
            resp.status == 400,
            "a body that is not JSON, sent as an OCI manifest, was answered {} instead of 400 MANIFEST_INVALID: {}",
            resp.status,
            resp.describe()
        );
        expect_code(&resp, &["MANIFEST_INVALID"])
    });
    r.check("manifest-invalid-no-5xx", Should, || {
        let image = need(&blobs)?;
        let bad = [
            json!({ "schemaVersion": 3, "mediaType": OCI_MANIFEST,
                    "config": image.config.descriptor(fixtures::OCI_CONFIG), "layers": [] }),
            json!({ "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": "not a descriptor", "layers": [] }),
        ];
        for (i, value) in bad.iter().enumerate() {
            let body = value.to_string();
            let resp = c.put_manifest(repo, &format!("invalid-{i}"), OCI_MANIFEST, body.as_bytes())?;
            ensure!(
                resp.status < 500,
                "an invalid manifest ({}) was answered {} (a server error) instead of 400 MANIFEST_INVALID: {}",
                crate::client::truncate(&body, 60),
                resp.status,
                resp.describe()
            );
            if (400..500).contains(&resp.status)
                && let Some(codes) = resp.error_codes()
            {
                ensure!(
                    codes.iter().any(|c| c == "MANIFEST_INVALID"),
                    "an invalid manifest was refused with {codes:?} instead of MANIFEST_INVALID"
                );
            }
        }
        Ok(())
    });
    r.check("manifest-4mb", Should, || {
        let image = need(&blobs)?;
        // "Client and registry implementations SHOULD expect to be able to
        // support manifest pushes of at least 4 megabytes."
        let target = 4_000_000;
        let build = |pad: &str| {
            fixtures::image_manifest(
                &image.config.descriptor(fixtures::OCI_CONFIG),
                &[image.layer.descriptor(OCI_LAYER)],
                fixtures::fields([("annotations", json!({ "berth.conformance.padding": pad }))]),
            )
        };
        let base = build("").bytes.len();
        let m = build(&"x".repeat(target - base));
        ensure!(
            m.bytes.len() == target,
            "internal: padded manifest has the wrong size"
        );
        push_manifest(c, repo, "large", &m)?;
        manifest_served(c, repo, &m.digest, &m)
    });
    r.check("manifest-sha512", Must, || {
        let image = need(&blobs)?;
        let m = variant(image, "sha512");
        let d512 = digest::sha512(&m.bytes);
        let resp = c.put_manifest(repo, &d512, m.media_type, &m.bytes)?;
        if (400..500).contains(&resp.status) {
            return skip(format!(
                "pushing by sha512 digest not supported (optional: image-spec says MAY): {}",
                resp.describe()
            ));
        }
        resp.expect(&[201])?;
        manifest_served(c, repo, &d512, &m)
    });
}
