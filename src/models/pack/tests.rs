use super::*;
use crate::models::spec::{berth_keys, parse_layer_media_type};

#[test]
fn classifies_model_files() {
    use LayerKind::*;
    for (path, kind) in [
        ("model.safetensors", Weight),
        ("model-00001-of-00002.safetensors", Weight),
        ("adapter_model.safetensors", Weight),
        ("adapters/lora/adapter_model.safetensors", Weight),
        ("pytorch_model.bin", Weight),
        ("llama.Q4_K_M.gguf", Weight),
        ("model.onnx", Weight),
        ("config.json", WeightConfig),
        ("generation_config.json", WeightConfig),
        ("tokenizer.json", WeightConfig),
        ("tokenizer_config.json", WeightConfig),
        ("tokenizer.model", WeightConfig),
        ("vocab.txt", WeightConfig),
        ("merges.txt", WeightConfig),
        ("special_tokens_map.json", WeightConfig),
        ("chat_template.jinja", WeightConfig),
        ("adapter_config.json", WeightConfig),
        ("model.safetensors.index.json", WeightConfig),
        ("README.md", Doc),
        ("LICENSE", Doc),
        ("docs/usage.md", Doc),
        ("notes.txt", Doc),
        ("inference.py", Code),
        ("scripts/run.sh", Code),
        ("requirements.txt", Code),
        ("data/train.txt", Dataset),
        ("dataset/x.json", Dataset),
        ("eval.parquet", Dataset),
        ("samples.jsonl", Dataset),
        ("metrics.csv", Dataset),
    ] {
        assert_eq!(classify(path), kind, "{path}");
    }
}

fn entry(path: &str, size: u64, exec: bool) -> FileEntry {
    FileEntry {
        path: path.into(),
        abs: PathBuf::from("/nonexistent").join(path),
        size,
        executable: exec,
        kind: classify(path),
    }
}

fn sample() -> Vec<FileEntry> {
    vec![
        entry("README.md", 10, false),
        entry("config.json", 20, false),
        entry("model.safetensors", 1000, false),
        entry("run.sh", 5, true),
        entry("sub/adapter_model.safetensors", 100, false),
    ]
}

#[test]
fn infers_format_from_most_weight_bytes() {
    assert_eq!(infer_format(&sample()), Some("safetensors"));
    let mixed = vec![entry("a.gguf", 10, false), entry("b.bin", 20, false)];
    assert_eq!(infer_format(&mixed), Some("pytorch"));
    assert_eq!(infer_format(&[entry("README.md", 1, false)]), None);
}

#[test]
fn raw_layout_one_layer_per_file_with_paths() {
    let layers = plan_layers(&sample(), Layout::Raw).unwrap();
    assert_eq!(layers.len(), 5);
    let paths: Vec<&str> = layers
        .iter()
        .map(|l| l.annotations[MODELPACK_FILEPATH].as_str())
        .collect();
    assert_eq!(
        paths,
        [
            "README.md",
            "config.json",
            "model.safetensors",
            "run.sh",
            "sub/adapter_model.safetensors"
        ]
    );
    for l in &layers {
        assert_eq!(
            l.annotations[oci_keys::TITLE],
            l.annotations[MODELPACK_FILEPATH]
        );
        let (_, format) = parse_layer_media_type(&l.media_type).unwrap();
        assert_eq!(format, LayerFormat::Raw);
    }
    assert_eq!(
        layers[2].media_type,
        "application/vnd.cncf.model.weight.v1.raw"
    );
    let meta: serde_json::Value =
        serde_json::from_str(&layers[3].annotations[MODELPACK_FILE_METADATA]).unwrap();
    assert_eq!(meta["mode"], 0o755);
    assert_eq!(meta["name"], "run.sh");
    assert_eq!(meta["size"], 5);
}

#[test]
fn image_layout_one_tar_per_kind_in_kind_order() {
    let layers = plan_layers(&sample(), Layout::Image).unwrap();
    // Plain OCI tar layers, which runtimes unpack, one per kind in kind order.
    assert!(layers.iter().all(|l| l.media_type == OCI_IMAGE_LAYER_TAR));
    let kinds: Vec<&str> = layers
        .iter()
        .map(|l| l.label.split(' ').next().unwrap())
        .collect();
    assert_eq!(kinds, ["weight", "weight.config", "doc", "code"]);
    // Weight tar: two files, one in a directory, with headers and padding.
    assert!(layers[0].source.size() > 1100 + 3 * 512);
    assert_eq!(layers[0].source.size() % 512, 0);
}

#[test]
fn config_and_manifest_have_the_modelpack_shape() {
    let mut meta =
        Metadata::from_toml("run_id = \"r1\"\ncommit = \"c0ffee\"\ndataset = \"ds@3\"").unwrap();
    meta.set_metric("auc=0.91").unwrap();
    meta.description = Some("a test".into());
    let id = Identity {
        name: "model".into(),
        version: Some("v1".into()),
        created: rfc3339(0),
    };
    let layers = plan_layers(&sample(), Layout::Raw).unwrap();
    let digests: Vec<Digest> = (0..layers.len())
        .map(|i| Digest::sha256_of(&[i as u8]))
        .collect();
    let cfg = config_json(&id, &meta, infer_format(&sample()), &digests);
    let v: serde_json::Value = serde_json::from_slice(&cfg).unwrap();
    assert_eq!(v["descriptor"]["name"], "model");
    assert_eq!(v["descriptor"]["version"], "v1");
    assert_eq!(v["descriptor"]["revision"], "c0ffee");
    assert_eq!(v["descriptor"]["createdAt"], "1970-01-01T00:00:00Z");
    assert_eq!(v["config"]["format"], "safetensors");
    assert_eq!(v["modelfs"]["type"], "layers");
    assert_eq!(v["modelfs"]["diffIds"].as_array().unwrap().len(), 5);
    assert_eq!(v["descriptor"]["datasetsURL"], serde_json::json!(["ds@3"]));
    // The ModelPack config schema allows only its own properties.
    let keys =
        |v: &serde_json::Value| -> Vec<String> { v.as_object().unwrap().keys().cloned().collect() };
    assert_eq!(keys(&v), ["config", "descriptor", "modelfs"]);
    for k in keys(&v["descriptor"]) {
        assert!(
            [
                "createdAt",
                "authors",
                "family",
                "name",
                "docURL",
                "sourceURL",
                "datasetsURL",
                "version",
                "revision",
                "vendor",
                "licenses",
                "title",
                "description"
            ]
            .contains(&k.as_str()),
            "descriptor.{k} is not a ModelPack field"
        );
    }
    assert_eq!(keys(&v["modelfs"]), ["diffIds", "type"]);

    let descs: Vec<Descriptor> = layers
        .iter()
        .zip(&digests)
        .map(|(l, d)| l.descriptor(d.clone()))
        .collect();
    let cd = config_descriptor(&cfg, MODELPACK_CONFIG);
    let ann = manifest_annotations(Layout::Raw, &id, &meta);
    let m = manifest_json(Layout::Raw, &cd, &descs, &ann);
    let parsed = crate::oci::ParsedManifest::parse(&m, Some(OCI_MANIFEST)).unwrap();
    assert_eq!(parsed.artifact_type.as_deref(), Some(MODELPACK_MANIFEST));
    assert_eq!(parsed.references[0].media_type, MODELPACK_CONFIG);
    assert_eq!(parsed.references.len(), 6);
    assert_eq!(parsed.annotations[oci_keys::VERSION], "v1");
    assert_eq!(parsed.annotations[oci_keys::DESCRIPTION], "a test");
    assert_eq!(parsed.annotations[berth_keys::RUN_ID], "r1");
    assert_eq!(parsed.annotations["dev.berth.metric.auc"], "0.91");
    // Same inputs, same bytes.
    assert_eq!(m, manifest_json(Layout::Raw, &cd, &descs, &ann));
}

#[test]
fn scan_skips_berth_files_and_sorts() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    for rel in [
        "b.txt",
        "a/z.json",
        "a/b.safetensors",
        "berth.toml",
        ".berth/x",
    ] {
        std::fs::create_dir_all(p.join(rel).parent().unwrap()).unwrap();
        std::fs::write(p.join(rel), rel).unwrap();
    }
    let files = scan(p).unwrap();
    let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(paths, ["a/b.safetensors", "a/z.json", "b.txt"]);
    assert!(scan(&p.join("b.txt")).is_err());
}
