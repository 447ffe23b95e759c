//! Turning a pulled manifest back into a directory: which layer becomes which
//! file (ModelPack raw layers by `org.cncf.model.filepath`, oras layers by title),
//! which is a tar to unpack (ModelPack tar layers, KitOps layers, oras directories,
//! image layers), and the safety rules for all of it: every path in an artifact is
//! untrusted, and nothing may be written outside the target directory.

mod extract;

use std::collections::BTreeMap;

use anyhow::{Result, bail};

pub use extract::{extract_tar, place_file, safe_target};

use super::spec::{
    KITOPS_CONFIG, KITOPS_PREFIX, LEGACY_MODELPACK_FILEPATH, LayerFormat, MODELPACK_FILEPATH,
    oci_keys, parse_layer_media_type,
};
use crate::oci::{Descriptor, ParsedManifest};

/// oras marks a layer that is a tar+gzip of a directory with this annotation.
pub const ORAS_UNPACK: &str = "io.deis.oras.content.unpack";
/// The layer type oras-py gives a directory it tarred and gzipped.
const ORAS_PY_DIR: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// ModelPack file metadata (JSON with `mode`), current and legacy names.
const FILE_METADATA_KEYS: [&str; 2] = [
    "org.cncf.model.file.metadata+json",
    "org.cnai.model.file.metadata+json",
];

/// A relative path that passed [`sanitize`]: `/`-separated normal components only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SafePath(String);

impl SafePath {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The root itself (only valid as a base directory).
    pub fn root() -> SafePath {
        SafePath(String::new())
    }

    /// `other` under `self`.
    pub fn join(&self, other: &SafePath) -> SafePath {
        if self.0.is_empty() {
            other.clone()
        } else {
            SafePath(format!("{}/{}", self.0, other.0))
        }
    }

    /// The parent directory (the root for a top-level name).
    pub fn parent(&self) -> SafePath {
        SafePath(self.0.rsplit_once('/').map_or("", |(p, _)| p).to_string())
    }
}

/// Checks an untrusted relative path: no absolute paths, drive letters, `..`,
/// backslashes or NULs, nothing under `.berth` (Berth's working directory);
/// `.` and empty components are dropped.
pub fn sanitize(path: &str) -> Result<SafePath> {
    if path.len() > 4096 {
        bail!("path of {} bytes is too long", path.len());
    }
    if path.starts_with('/') {
        bail!("absolute path {path:?}");
    }
    if path.contains('\\') || path.contains('\0') {
        bail!("path {path:?} contains a backslash or NUL");
    }
    let mut parts = Vec::new();
    for c in path.split('/') {
        match c {
            "" | "." => continue,
            ".." => bail!("path {path:?} climbs out with '..'"),
            _ if c.len() > 255 => bail!("path {path:?} has a component over 255 bytes"),
            _ => parts.push(c),
        }
    }
    let Some(first) = parts.first() else {
        bail!("path {path:?} names no file");
    };
    if first.len() == 2 && first.ends_with(':') {
        bail!("path {path:?} starts with a drive letter");
    }
    if *first == ".berth" {
        bail!("path {path:?} is inside Berth's working directory .berth");
    }
    Ok(SafePath(parts.join("/")))
}

/// What to do with one blob of a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// The blob is a file at this path (with these permission bits, if known).
    File { path: SafePath, mode: Option<u32> },
    /// The blob is a tar (plain, gzip or zstd: told by its first bytes) to unpack
    /// under this directory.
    Extract { base: SafePath },
    /// The blob is not part of the tree.
    Skip { reason: String },
}

/// One blob and what becomes of it.
#[derive(Debug, Clone)]
pub struct Step {
    pub desc: Descriptor,
    pub action: Action,
}

/// What a pulled image manifest turns into, in manifest order.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The manifest's `artifactType` (or config media type).
    pub artifact_type: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub steps: Vec<Step>,
}

/// Plans the unpacking of an image manifest (`bytes` as fetched).
pub fn plan(bytes: &[u8], media_type: &str) -> Result<Plan> {
    let parsed = ParsedManifest::parse(bytes, Some(media_type))?;
    let mut refs = parsed.references.into_iter();
    let Some(config) = refs.next() else {
        bail!("the manifest has no config");
    };
    let mut steps = Vec::new();
    if config.media_type == KITOPS_CONFIG {
        steps.push(Step {
            desc: config,
            action: Action::File {
                path: SafePath("Kitfile".into()),
                mode: Some(0o644),
            },
        });
    }
    for desc in refs {
        let action = layer_action(&desc)?;
        steps.push(Step { desc, action });
    }
    Ok(Plan {
        artifact_type: parsed.artifact_type,
        annotations: parsed.annotations,
        steps,
    })
}

fn is_tar_type(mt: &str) -> bool {
    mt.ends_with(".tar")
        || mt.ends_with(".tar+gzip")
        || mt.ends_with(".tar+zstd")
        || mt.ends_with("tar.gzip")
        || mt == "application/vnd.docker.image.rootfs.diff.tar.gzip"
        || mt == "application/x-tar"
}

/// What one layer becomes.
pub fn layer_action(desc: &Descriptor) -> Result<Action> {
    let a = &desc.annotations;
    let mt = desc.media_type.as_str();
    let named = |key: &str| a.get(key).map(|p| sanitize(p)).transpose();
    let filepath = match named(MODELPACK_FILEPATH)? {
        Some(p) => Some(p),
        None => named(LEGACY_MODELPACK_FILEPATH)?,
    };
    let title = named(oci_keys::TITLE)?;
    let bad = |e: anyhow::Error| e.context(format!("layer {}", desc.digest));
    if let Some((_, format)) = parse_layer_media_type(mt) {
        return Ok(match format {
            LayerFormat::Raw => match filepath.or(title) {
                Some(path) => Action::File {
                    path,
                    mode: file_mode(a),
                },
                None => Action::Skip {
                    reason: format!("raw model layer {} has no file path", desc.digest),
                },
            },
            _ => Action::Extract {
                base: SafePath::root(),
            },
        });
    }
    // oras-go marks a directory with the unpack annotation; oras-py marks it only
    // by the tar+gzip layer type (its files get plain `.tar`, whatever they hold).
    if a.get(ORAS_UNPACK).map(String::as_str) == Some("true")
        || (title.is_some() && mt == ORAS_PY_DIR)
    {
        let Some(title) = title else {
            return Err(bad(anyhow::anyhow!(
                "{ORAS_UNPACK} is set but the layer has no title"
            )));
        };
        // oras tars a directory with its own name as the top entry, so the
        // archive unpacks beside the title, not into it.
        return Ok(Action::Extract {
            base: title.parent(),
        });
    }
    if mt.starts_with(KITOPS_PREFIX) && is_tar_type(mt) {
        return Ok(Action::Extract {
            base: SafePath::root(),
        });
    }
    if let Some(path) = filepath.or(title) {
        return Ok(Action::File {
            path,
            mode: file_mode(a),
        });
    }
    if is_tar_type(mt) {
        return Ok(Action::Extract {
            base: SafePath::root(),
        });
    }
    Ok(Action::Skip {
        reason: format!("layer {} ({mt}) names no file", desc.digest),
    })
}

/// Permission bits from ModelPack file metadata, limited to rwx bits.
fn file_mode(a: &BTreeMap<String, String>) -> Option<u32> {
    let json = FILE_METADATA_KEYS.iter().find_map(|k| a.get(*k))?;
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let mode = v.get("mode")?.as_u64()?;
    Some((mode & 0o777) as u32)
}

#[cfg(test)]
mod tests;
