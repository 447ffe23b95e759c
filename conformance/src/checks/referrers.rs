//! Content discovery, referrers half: `GET /v2/<name>/referrers/<digest>`,
//! its descriptors, `artifactType` filtering, unknown subjects, and keeping
//! the list exact when a referrer is deleted.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use super::Env;
use crate::check::{Context, Step, ensure, fail, need, skip};
use crate::digest;
use crate::fixtures::{self, Blob, Image, Manifest, OCI_EMPTY, OCI_INDEX, OCI_MANIFEST};
use crate::ops::{Referrers, digests_of, push_blob, push_image, push_manifest, referrers};
use crate::report::{Level::*, Recorder};

const SBOM_TYPE: &str = "application/vnd.berth.conformance.sbom.v1+json";
const SIG_CONFIG_TYPE: &str = "application/vnd.berth.conformance.signature.config.v1+json";

/// The content pushed for these checks.
struct Content {
    subject: Image,
    /// Manifest with `artifactType` SBOM.
    sbom: Manifest,
    sbom_annotations: Map<String, Value>,
    /// Manifest without `artifactType`; its config media type stands in.
    sig: Manifest,
    sig_annotations: Map<String, Value>,
    /// Index with a subject and no `artifactType`.
    index: Manifest,
    index_annotations: Map<String, Value>,
    /// Referrer of a subject that was never pushed.
    orphan: Manifest,
    orphan_subject: String,
}

fn annotations(kind: &str, run_id: &str) -> Map<String, Value> {
    fixtures::fields([
        (
            "org.opencontainers.image.created",
            json!("2024-01-01T00:00:00Z"),
        ),
        ("berth.conformance.kind", json!(kind)),
        ("berth.conformance.run", json!(run_id)),
    ])
}

fn build(run_id: &str) -> Content {
    let subject = Image::new(run_id, "referrers subject");
    let subject_desc = subject.manifest.descriptor();
    let empty = Blob::empty_json();
    let sig_config = sig_config_blob(run_id);

    let sbom_annotations = annotations("sbom", run_id);
    let sbom = fixtures::image_manifest(
        &empty.descriptor(OCI_EMPTY),
        &[empty.descriptor(OCI_EMPTY)],
        fixtures::fields([
            ("artifactType", json!(SBOM_TYPE)),
            ("subject", subject_desc.clone()),
            ("annotations", Value::Object(sbom_annotations.clone())),
        ]),
    );
    let sig_annotations = annotations("signature", run_id);
    let sig = fixtures::image_manifest(
        &sig_config.descriptor(SIG_CONFIG_TYPE),
        &[empty.descriptor(OCI_EMPTY)],
        fixtures::fields([
            ("subject", subject_desc.clone()),
            ("annotations", Value::Object(sig_annotations.clone())),
        ]),
    );
    let index_annotations = annotations("index", run_id);
    let index = fixtures::index(
        std::slice::from_ref(&subject_desc),
        fixtures::fields([
            ("subject", subject_desc.clone()),
            ("annotations", Value::Object(index_annotations.clone())),
        ]),
    );
    let orphan_subject = digest::unknown(run_id, "referrers orphan subject");
    let orphan = fixtures::image_manifest(
        &empty.descriptor(OCI_EMPTY),
        &[empty.descriptor(OCI_EMPTY)],
        fixtures::fields([
            ("artifactType", json!(SBOM_TYPE)),
            (
                "subject",
                json!({ "mediaType": OCI_MANIFEST, "digest": orphan_subject, "size": 321 }),
            ),
            ("annotations", Value::Object(annotations("orphan", run_id))),
        ]),
    );
    Content {
        subject,
        sbom,
        sbom_annotations,
        sig,
        sig_annotations,
        index,
        index_annotations,
        orphan,
        orphan_subject,
    }
}

fn sig_config_blob(run_id: &str) -> Blob {
    Blob::new(
        json!({ "berth.conformance.signature": run_id })
            .to_string()
            .into_bytes(),
    )
}

fn set(digests: Vec<String>) -> BTreeSet<String> {
    digests.into_iter().collect()
}

/// The descriptor for `digest` in a referrers list.
fn find<'a>(list: &'a [Value], digest: &str) -> Step<&'a Map<String, Value>> {
    match list
        .iter()
        .find(|d| d.get("digest").and_then(Value::as_str) == Some(digest))
        .and_then(Value::as_object)
    {
        Some(d) => Ok(d),
        None => fail(format!("referrer {digest} is missing from the list")),
    }
}

/// Checks the list holds exactly the given manifests, with correct
/// `mediaType` and `size` in each descriptor.
fn exact(list: &[Value], want: &[&Manifest]) -> Step {
    let got = set(digests_of(list));
    let expected = set(want.iter().map(|m| m.digest.clone()).collect());
    ensure!(
        got == expected && got.len() == list.len(),
        "referrers list is {:?}, expected exactly {:?}",
        digests_of(list),
        expected
    );
    for m in want {
        let d = find(list, &m.digest)?;
        ensure!(
            d.get("mediaType").and_then(Value::as_str) == Some(m.media_type),
            "descriptor of {} has mediaType {:?}, expected {}",
            m.digest,
            d.get("mediaType"),
            m.media_type
        );
        ensure!(
            d.get("size").and_then(Value::as_u64) == Some(m.bytes.len() as u64),
            "descriptor of {} has size {:?}, expected {}",
            m.digest,
            d.get("size"),
            m.bytes.len()
        );
    }
    Ok(())
}

pub(crate) fn run(env: &Env, r: &mut Recorder) {
    let c = env.c;
    let repo = env.repos.referrers.as_str();
    let content = build(env.run_id);

    let setup = r.setup("referrers-setup", Must, || {
        push_image(c, repo, &content.subject, "subject")?;
        push_blob(c, repo, &Blob::empty_json())?;
        push_blob(c, repo, &sig_config_blob(env.run_id))?;
        for m in [&content.sbom, &content.sig, &content.index, &content.orphan] {
            push_manifest(c, repo, &m.digest, m)?;
        }
        Ok(())
    });
    let subject = content.subject.manifest.digest.as_str();

    let api = r.setup("referrers-api", Must, || -> Step<Referrers> {
        need(&setup)?;
        referrers(c, repo, subject, None)
    });
    r.check("referrers-content-type", Must, || {
        let api = need(&api)?;
        let ct = api.first.media_type().unwrap_or_default();
        ensure!(
            ct == OCI_INDEX,
            "Content-Type is {ct:?}, expected {OCI_INDEX}"
        );
        let v: Value = serde_json::from_slice(&api.first.body).unwrap_or(Value::Null);
        ensure!(
            v.get("schemaVersion") == Some(&json!(2))
                && v.get("mediaType").and_then(Value::as_str) == Some(OCI_INDEX),
            "body is not an image index (schemaVersion 2, mediaType {OCI_INDEX}): {}",
            api.first.describe()
        );
        Ok(())
    });
    r.check("referrers-list-exact", Must, || {
        let api = need(&api)?;
        exact(
            &api.manifests,
            &[&content.sbom, &content.sig, &content.index],
        )
    });
    r.check("referrers-artifact-type", Must, || {
        let api = need(&api)?;
        let at = |m: &Manifest| -> Step<Option<String>> {
            Ok(find(&api.manifests, &m.digest)?
                .get("artifactType")
                .and_then(Value::as_str)
                .map(str::to_string))
        };
        let sbom = at(&content.sbom)?;
        ensure!(
            sbom.as_deref() == Some(SBOM_TYPE),
            "artifactType of the manifest with artifactType {SBOM_TYPE} is {sbom:?}"
        );
        let sig = at(&content.sig)?;
        ensure!(
            sig.as_deref() == Some(SIG_CONFIG_TYPE),
            "artifactType of a manifest without one MUST be its config mediaType {SIG_CONFIG_TYPE}, got {sig:?}"
        );
        let index = at(&content.index)?;
        ensure!(
            index.is_none(),
            "artifactType of an index without one MUST be omitted, got {index:?}"
        );
        Ok(())
    });
    r.check("referrers-annotations", Must, || {
        let api = need(&api)?;
        for (m, want) in [
            (&content.sbom, &content.sbom_annotations),
            (&content.sig, &content.sig_annotations),
            (&content.index, &content.index_annotations),
        ] {
            let d = find(&api.manifests, &m.digest)?;
            let got = d.get("annotations").and_then(Value::as_object);
            for (k, v) in want {
                ensure!(
                    got.and_then(|g| g.get(k)) == Some(v),
                    "descriptor of {} lacks annotation {k}={v} (has {:?})",
                    m.digest,
                    got
                );
            }
        }
        Ok(())
    });

    let mut filtered: Option<(bool, Vec<Value>)> = None;
    r.check("referrers-filter-supported", Should, || {
        need(&api)?;
        let res = referrers(c, repo, subject, Some(SBOM_TYPE))?;
        let applied = res
            .first
            .header_all("oci-filters-applied")
            .iter()
            .flat_map(|v| v.split(','))
            .any(|f| f.trim() == "artifactType");
        filtered = Some((applied, res.manifests));
        ensure!(
            applied,
            "?artifactType= was not applied (no OCI-Filters-Applied: artifactType header)"
        );
        Ok(())
    });
    r.check("referrers-filter-result", Must, || {
        let Some((applied, list)) = &filtered else {
            return skip("depends on discovery/referrers-filter-supported, which could not query");
        };
        if *applied {
            exact(list, &[&content.sbom]).context(
                "with OCI-Filters-Applied: artifactType, only matching referrers may be listed",
            )
        } else {
            exact(list, &[&content.sbom, &content.sig, &content.index])
                .context("without OCI-Filters-Applied the list must be unfiltered")
        }
    });
    r.check("referrers-unknown-subject-empty", Must, || {
        need(&api)?;
        let unknown = digest::unknown(env.run_id, "referrers unknown subject");
        let res = referrers(c, repo, &unknown, None)?;
        ensure!(
            res.manifests.is_empty(),
            "referrers of a digest nothing refers to MUST be an empty list, got {:?}",
            digests_of(&res.manifests)
        );
        Ok(())
    });
    r.check("referrers-missing-subject-listed", Must, || {
        need(&api)?;
        let res = referrers(c, repo, &content.orphan_subject, None)?;
        exact(&res.manifests, &[&content.orphan])
    });
    r.check("referrers-invalid-digest-400", Must, || {
        need(&api)?;
        let resp = c.get(&format!("/v2/{repo}/referrers/sha256:not-a-hex-digest"))?;
        ensure!(
            resp.status == 400,
            "a malformed digest MUST be answered 400, got {}",
            resp.describe()
        );
        Ok(())
    });
    r.check("referrers-updated-after-delete", Must, || {
        need(&api)?;
        let resp = c.delete(&format!("/v2/{repo}/manifests/{}", content.sig.digest))?;
        if matches!(resp.status, 400 | 405) {
            return skip(format!(
                "manifest deletion is disabled (allowed): {}",
                resp.describe()
            ));
        }
        resp.expect(&[202])?;
        let res = referrers(c, repo, subject, None)?;
        exact(&res.manifests, &[&content.sbom, &content.index])
    });
}
