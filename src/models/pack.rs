//! Packing a model directory as a CNCF ModelPack artifact: files classified into
//! layer kinds, layers planned (one raw layer per file, or one tar per kind for the
//! `image` layout), the ModelPack config and the manifest built. Everything but
//! [`scan`] is pure, so the shape of what Berth writes is unit-tested.

mod metadata;
mod tar_layer;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::Serialize;

pub use metadata::{BERTH_TOML, Metadata, Metric, rfc3339, split_pair as metadata_pair};

use super::spec::{
    LayerFormat, LayerKind, MODELPACK_CONFIG, MODELPACK_FILEPATH, MODELPACK_MANIFEST, berth_keys,
    oci_keys,
};
use crate::client::source::BlobSource;
use crate::oci::media::{OCI_IMAGE_CONFIG, OCI_IMAGE_LAYER_TAR, OCI_MANIFEST};
use crate::oci::{Descriptor, Digest};

/// ModelPack layer annotation with the file's metadata (JSON: name, mode, uid,
/// gid, size, mtime, typeflag), written with normalised values.
pub const MODELPACK_FILE_METADATA: &str = "org.cncf.model.file.metadata+json";

/// Directories and files of a model directory that are never packed.
const EXCLUDED_TOP: [&str; 4] = [".git", ".berth", ".referrers", BERTH_TOML];

/// How files become layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// One raw layer per file, titled with its path (oras pulls it too).
    Raw,
    /// One uncompressed tar layer per kind of file, with deterministic headers.
    Image,
}

/// A regular file of the model directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// Path relative to the model root, `/`-separated.
    pub path: String,
    pub abs: PathBuf,
    pub size: u64,
    pub executable: bool,
    pub kind: LayerKind,
}

impl FileEntry {
    /// Normalised permission bits: 0755 for executables, 0644 otherwise.
    pub fn mode(&self) -> u32 {
        if self.executable { 0o755 } else { 0o644 }
    }
}

const WEIGHT_EXT: &[&str] = &[
    "safetensors",
    "bin",
    "gguf",
    "ggml",
    "pt",
    "pth",
    "onnx",
    "ckpt",
    "h5",
    "keras",
    "msgpack",
    "pkl",
    "pickle",
    "joblib",
    "pb",
    "tflite",
    "npz",
    "npy",
    "ot",
    "mlmodel",
];
const CODE_EXT: &[&str] = &[
    "py", "sh", "bash", "ipynb", "js", "ts", "rs", "go", "c", "cc", "cpp", "h", "hpp", "java", "r",
    "jl", "lua", "pl", "rb",
];
const DATASET_EXT: &[&str] = &["parquet", "jsonl", "csv", "tsv", "arrow"];
const CONFIG_EXT: &[&str] = &["json", "yaml", "yml", "toml", "jinja", "tiktoken", "model"];

/// The kind of layer a file belongs in, from its relative path.
pub fn classify(path: &str) -> LayerKind {
    let lower = path.to_ascii_lowercase();
    let name = lower.rsplit('/').next().unwrap_or(&lower);
    let ext = name.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    let top = lower.split('/').next().unwrap_or("");
    let in_dir = lower.contains('/');
    if in_dir && matches!(top, "data" | "dataset" | "datasets") {
        return LayerKind::Dataset;
    }
    if WEIGHT_EXT.contains(&ext) {
        return LayerKind::Weight;
    }
    if CODE_EXT.contains(&ext)
        || (name.starts_with("requirements") && ext == "txt")
        || matches!(
            name,
            "dockerfile" | "makefile" | "setup.cfg" | "pyproject.toml"
        )
    {
        return LayerKind::Code;
    }
    if name.starts_with("tokenizer")
        || name.starts_with("vocab.")
        || name.starts_with("chat_template")
        || matches!(name, "merges.txt" | "tokenizer.model")
        || CONFIG_EXT.contains(&ext)
    {
        return LayerKind::WeightConfig;
    }
    if DATASET_EXT.contains(&ext) {
        return LayerKind::Dataset;
    }
    LayerKind::Doc
}

/// The `config.format` of a model: the format of the most bytes of weights.
pub fn infer_format(files: &[FileEntry]) -> Option<&'static str> {
    let mut by_format: BTreeMap<&'static str, u64> = BTreeMap::new();
    for f in files.iter().filter(|f| f.kind == LayerKind::Weight) {
        let ext = f.path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
        let format = match ext.as_deref() {
            Some("safetensors") => "safetensors",
            Some("gguf" | "ggml") => "gguf",
            Some("pt" | "pth" | "bin" | "ckpt") => "pytorch",
            Some("onnx") => "onnx",
            Some("h5" | "keras") => "keras",
            Some("pb" | "tflite") => "tensorflow",
            Some("msgpack") => "flax",
            Some("pkl" | "pickle" | "joblib") => "pickle",
            Some("npz" | "npy") => "numpy",
            _ => continue,
        };
        *by_format.entry(format).or_default() += f.size;
    }
    by_format
        .into_iter()
        .max_by_key(|&(name, bytes)| (bytes, std::cmp::Reverse(name)))
        .map(|(name, _)| name)
}

/// Lists the regular files of `dir` (following symlinks to files), sorted by path.
pub fn scan(dir: &Path) -> Result<Vec<FileEntry>> {
    let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    if !meta.is_dir() {
        bail!("{} is not a directory", dir.display());
    }
    let mut out = Vec::new();
    walk(dir, "", &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn walk(dir: &Path, prefix: &str, out: &mut Vec<FileEntry>) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let abs = entry.path();
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            bail!("{} has a name that is not UTF-8", abs.display());
        };
        if prefix.is_empty() && EXCLUDED_TOP.contains(&name) {
            continue;
        }
        let rel = format!("{prefix}{name}");
        let ft = entry.file_type()?;
        if ft.is_dir() {
            walk(&abs, &format!("{rel}/"), out)?;
            continue;
        }
        let meta = std::fs::metadata(&abs).with_context(|| format!("reading {}", abs.display()))?;
        if ft.is_symlink() && meta.is_dir() {
            tracing::warn!("skipping {rel}: a symlink to a directory");
            continue;
        }
        if !meta.is_file() {
            tracing::warn!("skipping {rel}: not a regular file");
            continue;
        }
        out.push(FileEntry {
            kind: classify(&rel),
            executable: is_executable(&meta),
            size: meta.len(),
            abs,
            path: rel,
        });
    }
    Ok(())
}

#[cfg(unix)]
fn is_executable(meta: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::PermissionsExt;
    meta.permissions().mode() & 0o111 != 0
}

#[cfg(not(unix))]
fn is_executable(_: &std::fs::Metadata) -> bool {
    false
}

/// A layer to push: where its bytes come from, its media type and annotations.
#[derive(Debug, Clone)]
pub struct PlannedLayer {
    pub media_type: String,
    pub annotations: BTreeMap<String, String>,
    pub source: BlobSource,
    /// A short name for progress output: the file, or the kind of a tar layer.
    pub label: String,
}

impl PlannedLayer {
    pub fn descriptor(&self, digest: Digest) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest,
            size: self.source.size(),
            artifact_type: None,
            annotations: self.annotations.clone(),
        }
    }
}

/// Plans the layers for `files` (sorted by path) in `layout`.
pub fn plan_layers(files: &[FileEntry], layout: Layout) -> Result<Vec<PlannedLayer>> {
    match layout {
        Layout::Raw => Ok(files.iter().map(raw_layer).collect()),
        // Plain OCI image layers, which every runtime unpacks (containerd, CRI-O,
        // umoci): the ModelPack `.tar` media types are not yet known to them.
        Layout::Image => LayerKind::ALL
            .into_iter()
            .filter_map(|kind| {
                let group: Vec<&FileEntry> = files.iter().filter(|f| f.kind == kind).collect();
                (!group.is_empty()).then(|| {
                    Ok(PlannedLayer {
                        media_type: OCI_IMAGE_LAYER_TAR.to_string(),
                        annotations: BTreeMap::new(),
                        source: tar_layer::build(&group)?,
                        label: format!("{} ({} files)", kind.segment(), group.len()),
                    })
                })
            })
            .collect(),
    }
}

fn raw_layer(f: &FileEntry) -> PlannedLayer {
    let name = f.path.rsplit('/').next().unwrap_or(&f.path);
    let file_meta = serde_json::json!({
        "name": name,
        "mode": f.mode(),
        "uid": 0,
        "gid": 0,
        "size": f.size,
        "mtime": "1970-01-01T00:00:00Z",
        "typeflag": b'0',
    });
    let annotations = BTreeMap::from([
        (MODELPACK_FILEPATH.to_string(), f.path.clone()),
        (MODELPACK_FILE_METADATA.to_string(), file_meta.to_string()),
        (oci_keys::TITLE.to_string(), f.path.clone()),
    ]);
    PlannedLayer {
        media_type: f.kind.media_type(LayerFormat::Raw),
        annotations,
        source: BlobSource::file(&f.abs, f.size),
        label: f.path.clone(),
    }
}

/// What a version is called and when it was made.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The model's name (the repository's last component).
    pub name: String,
    /// The version: the tag pushed.
    pub version: Option<String>,
    /// RFC 3339 creation time.
    pub created: String,
}

/// The ModelPack config. Its schema allows no fields beyond its own, so run id,
/// image, parameters and metrics live in the manifest annotations only.
#[derive(Serialize)]
struct ModelConfig<'a> {
    descriptor: ModelDescriptor<'a>,
    config: ExecConfig<'a>,
    modelfs: ModelFs<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelDescriptor<'a> {
    created_at: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(rename = "sourceURL", skip_serializing_if = "Option::is_none")]
    source_url: Option<&'a str>,
    #[serde(rename = "datasetsURL", skip_serializing_if = "Vec::is_empty")]
    datasets_url: Vec<&'a str>,
}

#[derive(Serialize)]
struct ExecConfig<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<&'a str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelFs<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    diff_ids: &'a [Digest],
}

/// The ModelPack config blob. `diff_ids` are the digests of the layers' uncompressed
/// contents in layer order (for raw and uncompressed tar layers, their digests).
pub fn config_json(
    id: &Identity,
    meta: &Metadata,
    format: Option<&str>,
    diff_ids: &[Digest],
) -> Vec<u8> {
    let cfg = ModelConfig {
        descriptor: ModelDescriptor {
            created_at: &id.created,
            name: &id.name,
            version: id.version.as_deref(),
            revision: meta.commit.as_deref(),
            description: meta.description.as_deref(),
            source_url: meta.source.as_deref(),
            datasets_url: meta.dataset.as_deref().into_iter().collect(),
        },
        config: ExecConfig { format },
        modelfs: ModelFs {
            kind: "layers",
            diff_ids,
        },
    };
    serde_json::to_vec_pretty(&cfg).unwrap_or_default()
}

/// The OCI image config of the image layout: what runtimes need to unpack the
/// layers (`rootfs.diff_ids`), with the model's creation time.
pub fn image_config_json(id: &Identity, diff_ids: &[Digest]) -> Vec<u8> {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let cfg = serde_json::json!({
        "created": id.created,
        "architecture": arch,
        "os": "linux",
        "config": {},
        "rootfs": { "type": "layers", "diff_ids": diff_ids },
    });
    serde_json::to_vec_pretty(&cfg).unwrap_or_default()
}

/// The manifest annotations: standard OCI keys where one fits, Berth's otherwise.
pub fn manifest_annotations(
    layout: Layout,
    id: &Identity,
    meta: &Metadata,
) -> BTreeMap<String, String> {
    let mut a = meta.annotations();
    if layout == Layout::Image {
        // No model media type says this image is a model: the annotation does.
        a.insert(berth_keys::MODEL.into(), "image".into());
    }
    a.insert(oci_keys::CREATED.into(), id.created.clone());
    if let Some(v) = &id.version {
        a.insert(oci_keys::VERSION.into(), v.clone());
    }
    a
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ManifestOut<'a> {
    schema_version: u32,
    media_type: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact_type: Option<&'a str>,
    config: &'a Descriptor,
    layers: &'a [Descriptor],
    annotations: &'a BTreeMap<String, String>,
}

/// The OCI image manifest: a ModelPack artifact for the raw layout, a plain image
/// (no `artifactType`, so runtimes treat it as one) for the image layout.
pub fn manifest_json(
    layout: Layout,
    config: &Descriptor,
    layers: &[Descriptor],
    annotations: &BTreeMap<String, String>,
) -> Vec<u8> {
    let m = ManifestOut {
        schema_version: 2,
        media_type: OCI_MANIFEST,
        artifact_type: (layout == Layout::Raw).then_some(MODELPACK_MANIFEST),
        config,
        layers,
        annotations,
    };
    serde_json::to_vec_pretty(&m).unwrap_or_default()
}

/// The config blob of `layout`: the ModelPack config, or an OCI image config.
pub fn layout_config(
    layout: Layout,
    id: &Identity,
    meta: &Metadata,
    format: Option<&str>,
    diff_ids: &[Digest],
) -> (Vec<u8>, Descriptor) {
    let (bytes, media_type) = match layout {
        Layout::Raw => (config_json(id, meta, format, diff_ids), MODELPACK_CONFIG),
        Layout::Image => (image_config_json(id, diff_ids), OCI_IMAGE_CONFIG),
    };
    let desc = config_descriptor(&bytes, media_type);
    (bytes, desc)
}

/// The config descriptor for config bytes of `media_type`.
pub fn config_descriptor(bytes: &[u8], media_type: &str) -> Descriptor {
    Descriptor {
        media_type: media_type.to_string(),
        digest: Digest::sha256_of(bytes),
        size: bytes.len() as u64,
        artifact_type: None,
        annotations: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests;
