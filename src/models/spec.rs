//! Model vocabulary: CNCF ModelPack media types (current `vnd.cncf` names, and the
//! pre-v0.0.7 `vnd.cnai` names still found in the wild), KitOps and Docker model
//! types, and the annotation keys Berth uses for lineage, parameters and metrics.
//!
//! Berth writes the ModelPack v1 names and reads both generations.

/// `artifactType` of a ModelPack model manifest.
pub const MODELPACK_MANIFEST: &str = "application/vnd.cncf.model.manifest.v1+json";
/// Media type of the ModelPack config blob.
pub const MODELPACK_CONFIG: &str = "application/vnd.cncf.model.config.v1+json";
/// Layer annotation naming the file's path relative to the model root.
pub const MODELPACK_FILEPATH: &str = "org.cncf.model.filepath";

/// Legacy (pre-v0.0.7) equivalents, read but never written.
pub const LEGACY_MODELPACK_MANIFEST: &str = "application/vnd.cnai.model.manifest.v1+json";
pub const LEGACY_MODELPACK_CONFIG: &str = "application/vnd.cnai.model.config.v1+json";
pub const LEGACY_MODELPACK_FILEPATH: &str = "org.cnai.model.filepath";

/// The kinds of ModelPack layer. The layer media type is
/// `application/vnd.cncf.model.<kind>.v1.<format>`.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum LayerKind {
    /// Weights: `*.safetensors`, `*.bin`, `*.gguf`, `*.pt`, `*.onnx`, adapters, …
    Weight,
    /// Files that configure the weights: `config.json`, tokenizer files, templates.
    WeightConfig,
    /// Documentation: README, model card, licence.
    Doc,
    /// Code: inference or training scripts.
    Code,
    /// Datasets shipped with the model.
    Dataset,
}

impl LayerKind {
    pub const ALL: [LayerKind; 5] = [
        LayerKind::Weight,
        LayerKind::WeightConfig,
        LayerKind::Doc,
        LayerKind::Code,
        LayerKind::Dataset,
    ];

    /// The `<kind>` segment of the media type.
    pub fn segment(self) -> &'static str {
        match self {
            LayerKind::Weight => "weight",
            LayerKind::WeightConfig => "weight.config",
            LayerKind::Doc => "doc",
            LayerKind::Code => "code",
            LayerKind::Dataset => "dataset",
        }
    }

    /// The media type of a layer of this kind in `format` (`raw` for one file,
    /// `tar` for a tar of files with their relative paths).
    pub fn media_type(self, format: LayerFormat) -> String {
        format!(
            "application/vnd.cncf.model.{}.v1.{}",
            self.segment(),
            format.as_str()
        )
    }
}

/// How a layer holds its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayerFormat {
    /// One file, stored as is.
    Raw,
    /// An uncompressed tar of files with relative paths (unpackable by container runtimes).
    Tar,
    TarGzip,
    TarZstd,
}

impl LayerFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerFormat::Raw => "raw",
            LayerFormat::Tar => "tar",
            LayerFormat::TarGzip => "tar+gzip",
            LayerFormat::TarZstd => "tar+zstd",
        }
    }
}

/// Parses a ModelPack layer media type of either generation into kind and format.
pub fn parse_layer_media_type(media_type: &str) -> Option<(LayerKind, LayerFormat)> {
    let rest = media_type
        .strip_prefix("application/vnd.cncf.model.")
        .or_else(|| media_type.strip_prefix("application/vnd.cnai.model."))?;
    let (kind, format) = rest.split_once(".v1.")?;
    let kind = LayerKind::ALL.into_iter().find(|k| k.segment() == kind)?;
    let format = match format {
        "raw" => LayerFormat::Raw,
        "tar" => LayerFormat::Tar,
        "tar+gzip" => LayerFormat::TarGzip,
        "tar+zstd" => LayerFormat::TarZstd,
        _ => return None,
    };
    Some((kind, format))
}

/// KitOps ModelKits: the Kitfile is the config; layers are typed by role.
pub const KITOPS_CONFIG: &str = "application/vnd.kitops.modelkit.config.v1+json";
pub const KITOPS_PREFIX: &str = "application/vnd.kitops.modelkit.";
/// Docker Model Runner artifacts.
pub const DOCKER_AI_PREFIX: &str = "application/vnd.docker.ai.";
/// Ollama models (on Docker schema2 manifests).
pub const OLLAMA_PREFIX: &str = "application/vnd.ollama.image.";

/// Standard OCI annotation keys Berth fills where one fits.
pub mod oci_keys {
    pub const TITLE: &str = "org.opencontainers.image.title";
    pub const CREATED: &str = "org.opencontainers.image.created";
    pub const DESCRIPTION: &str = "org.opencontainers.image.description";
    pub const VERSION: &str = "org.opencontainers.image.version";
    /// The code commit the model was trained from.
    pub const REVISION: &str = "org.opencontainers.image.revision";
    pub const SOURCE: &str = "org.opencontainers.image.source";
    pub const AUTHORS: &str = "org.opencontainers.image.authors";
    pub const LICENSES: &str = "org.opencontainers.image.licenses";
}

/// Berth's own annotation keys, for what no standard key covers. Documented in the README.
pub mod berth_keys {
    /// The training run (e.g. an MLflow or W&B run id).
    pub const RUN_ID: &str = "dev.berth.lineage.run-id";
    /// The dataset and its version the model was trained on (`name@version`).
    pub const DATASET: &str = "dev.berth.lineage.dataset";
    /// The container image the training ran in.
    pub const IMAGE: &str = "dev.berth.lineage.image";
    /// `dev.berth.param.<name>` = value: a training parameter.
    pub const PARAM_PREFIX: &str = "dev.berth.param.";
    /// `dev.berth.metric.<name>` = value: an evaluation metric (a decimal number).
    pub const METRIC_PREFIX: &str = "dev.berth.metric.";
    /// Marks a manifest as a model even when no model media type does.
    pub const MODEL: &str = "dev.berth.model";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_media_types_round_trip_and_legacy_names_parse() {
        for kind in LayerKind::ALL {
            for format in [
                LayerFormat::Raw,
                LayerFormat::Tar,
                LayerFormat::TarGzip,
                LayerFormat::TarZstd,
            ] {
                let mt = kind.media_type(format);
                assert_eq!(parse_layer_media_type(&mt), Some((kind, format)), "{mt}");
                let legacy = mt.replace("vnd.cncf", "vnd.cnai");
                assert_eq!(
                    parse_layer_media_type(&legacy),
                    Some((kind, format)),
                    "{legacy}"
                );
            }
        }
        assert_eq!(
            LayerKind::WeightConfig.media_type(LayerFormat::Raw),
            "application/vnd.cncf.model.weight.config.v1.raw"
        );
        assert_eq!(
            parse_layer_media_type("application/vnd.oci.image.layer.v1.tar"),
            None
        );
        assert_eq!(
            parse_layer_media_type("application/vnd.cncf.model.weight.v2.raw"),
            None
        );
    }
}
