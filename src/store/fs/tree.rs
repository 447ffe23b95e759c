//! Listing the blob tree page by page, in digest order.

use std::path::Path;

use super::not_found_as_none;
use crate::oci::{Algorithm, Digest};

/// The blobs under `root` (`<alg>/<hex[0..2]>/<hex>`) in digest order after
/// `after`, at most `limit`: reads only the directories the page spans. Names
/// that are not digests (an operator's leftovers) are skipped.
pub(super) fn list_blob_tree(
    root: &Path,
    after: Option<&Digest>,
    limit: usize,
) -> std::io::Result<Vec<(Digest, u64)>> {
    let sorted_names = |dir: &Path| -> std::io::Result<Vec<String>> {
        let Some(entries) = not_found_as_none(std::fs::read_dir(dir))? else {
            return Ok(Vec::new());
        };
        let mut names = Vec::new();
        for e in entries {
            names.push(e?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    };
    let mut out = Vec::new();
    for alg in [Algorithm::Sha256, Algorithm::Sha512] {
        if after.is_some_and(|a| a.algorithm() > alg) {
            continue;
        }
        let same_alg = after.filter(|a| a.algorithm() == alg);
        let alg_dir = root.join(alg.as_str());
        for prefix in sorted_names(&alg_dir)? {
            if same_alg.is_some_and(|a| prefix.as_str() < &a.hex()[..2]) {
                continue;
            }
            let dir = alg_dir.join(&prefix);
            for name in sorted_names(&dir)? {
                if same_alg.is_some_and(|a| name.as_str() <= a.hex()) {
                    continue;
                }
                let Ok(digest) = format!("{}:{name}", alg.as_str()).parse::<Digest>() else {
                    continue;
                };
                if !name.starts_with(&prefix) {
                    continue;
                }
                let Some(meta) = not_found_as_none(std::fs::metadata(dir.join(&name)))? else {
                    continue; // deleted while listed
                };
                out.push((digest, meta.len()));
                if out.len() >= limit {
                    return Ok(out);
                }
            }
        }
    }
    Ok(out)
}
