//! Content management: deleting tags, manifests (by digest) and blobs.
//!
//! Deletion is optional ("Registries MAY implement deletion or they MAY
//! disable it"), but a registry that disables it MUST answer 400 or 405, and
//! one that deletes MUST answer 202 and then stop serving the content.

use super::Env;
use crate::check::{Step, ensure, fail, need, skip};
use crate::client::Resp;
use crate::digest;
use crate::fixtures::{Blob, Image};
use crate::ops::{expect_code, push_blob, push_image, push_manifest};
use crate::report::{Level::*, Recorder};

/// What a DELETE answered: deleted (202) or deletion disabled (400/405).
enum Deletion {
    Done,
    Disabled(String),
}

fn deletion(resp: &Resp) -> Step<Deletion> {
    match resp.status {
        202 => Ok(Deletion::Done),
        400 | 405 => Ok(Deletion::Disabled(resp.describe())),
        _ => fail(format!(
            "DELETE MUST answer 202 (or 400/405 when deletion is disabled), got {}",
            resp.describe()
        )),
    }
}

pub(crate) fn run(env: &Env, r: &mut Recorder) {
    let c = env.c;
    let id = env.run_id;
    let repo = env.repos.manage.as_str();

    let keep = Image::new(id, "manage keep");
    let doomed = Image::new(id, "manage doomed");
    let loose = Blob::unique(id, "manage loose blob", 777);
    let setup = r.setup("setup", Must, || {
        push_image(c, repo, &keep, "keep")?;
        push_manifest(c, repo, "also-keep", &keep.manifest)?;
        push_image(c, repo, &doomed, "doomed")?;
        push_blob(c, repo, &loose)?;
        Ok(())
    });

    // Tags.
    let mut tag_deleted = None;
    r.check("delete-tag", Must, || {
        need(&setup)?;
        let resp = c.delete(&format!("/v2/{repo}/manifests/also-keep"))?;
        tag_deleted = Some(deletion(&resp)?);
        Ok(())
    });
    r.check("delete-tag-effect", Must, || match &tag_deleted {
        None => skip("depends on management/delete-tag, which did not pass"),
        Some(Deletion::Disabled(why)) => skip(format!("tag deletion is disabled (allowed): {why}")),
        Some(Deletion::Done) => {
            let gone = c.get_manifest(repo, "also-keep")?;
            ensure!(
                gone.status == 404,
                "the deleted tag still answers {}",
                gone.describe()
            );
            let other = c.get_manifest(repo, "keep")?;
            ensure!(
                other.status == 200,
                "deleting tag also-keep broke tag keep of the same manifest: {}",
                other.describe()
            );
            Ok(())
        }
    });

    // Manifests.
    let mut manifest_deleted = None;
    r.check("delete-manifest", Must, || {
        need(&setup)?;
        let resp = c.delete(&format!("/v2/{repo}/manifests/{}", doomed.manifest.digest))?;
        manifest_deleted = Some(deletion(&resp)?);
        Ok(())
    });
    r.check("delete-manifest-effect", Must, || match &manifest_deleted {
        None => skip("depends on management/delete-manifest, which did not pass"),
        Some(Deletion::Disabled(why)) => {
            skip(format!("manifest deletion is disabled (allowed): {why}"))
        }
        Some(Deletion::Done) => {
            for reference in [doomed.manifest.digest.as_str(), "doomed"] {
                let resp = c.get_manifest(repo, reference)?;
                ensure!(
                    resp.status == 404,
                    "after deleting the manifest, {reference} still answers {}",
                    resp.describe()
                );
            }
            Ok(())
        }
    });
    r.check("delete-manifest-unknown-repository", Must, || {
        let unknown = digest::unknown(id, "manage absent manifest");
        let resp = c.delete(&format!("/v2/{}/manifests/{unknown}", env.repos.absent))?;
        if matches!(resp.status, 400 | 405) {
            return skip(format!(
                "manifest deletion is disabled (allowed): {}",
                resp.describe()
            ));
        }
        resp.expect(&[404])
    });
    r.check("delete-manifest-unknown", Should, || {
        need(&setup)?;
        let unknown = digest::unknown(id, "manage absent manifest");
        let resp = c.delete(&format!("/v2/{repo}/manifests/{unknown}"))?;
        if matches!(resp.status, 400 | 405) {
            return skip(format!(
                "manifest deletion is disabled (allowed): {}",
                resp.describe()
            ));
        }
        resp.expect(&[404])?;
        expect_code(&resp, &["MANIFEST_UNKNOWN"])
    });

    // Blobs.
    let mut blob_deleted = None;
    r.check("delete-blob", Must, || {
        need(&setup)?;
        let resp = c.delete(&format!("/v2/{repo}/blobs/{}", loose.digest))?;
        blob_deleted = Some(deletion(&resp)?);
        Ok(())
    });
    r.check("delete-blob-effect", Must, || match &blob_deleted {
        None => skip("depends on management/delete-blob, which did not pass"),
        Some(Deletion::Disabled(why)) => {
            skip(format!("blob deletion is disabled (allowed): {why}"))
        }
        Some(Deletion::Done) => {
            let path = format!("/v2/{repo}/blobs/{}", loose.digest);
            let head = c.head(&path)?;
            ensure!(
                head.status == 404,
                "after deleting the blob, HEAD still answers {}",
                head.status
            );
            c.get(&path)?.expect(&[404])
        }
    });
    r.check("delete-blob-unknown-404", Must, || {
        need(&setup)?;
        let unknown = digest::unknown(id, "manage absent blob");
        let resp = c.delete(&format!("/v2/{repo}/blobs/{unknown}"))?;
        if matches!(resp.status, 400 | 405) {
            return skip(format!(
                "blob deletion is disabled (allowed): {}",
                resp.describe()
            ));
        }
        resp.expect(&[404])
    });
    r.check("kept-content-intact", Must, || {
        need(&setup)?;
        let resp = c.get_manifest(repo, "keep")?;
        resp.expect(&[200])?;
        ensure!(
            resp.body == keep.manifest.bytes,
            "manifest under tag keep changed after unrelated deletions"
        );
        for blob in keep.blobs() {
            c.head(&format!("/v2/{repo}/blobs/{}", blob.digest))?
                .expect(&[200])?;
        }
        Ok(())
    });
}
