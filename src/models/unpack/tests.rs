use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::oci::Digest;

#[test]
fn sanitize_refuses_hostile_paths() {
    for bad in [
        "",
        ".",
        "./",
        "/etc/passwd",
        "//etc/passwd",
        "../x",
        "a/../../x",
        "a/..",
        "..",
        "a\\..\\b",
        "C:/windows",
        "c:",
        "a\0b",
        ".berth/partial/x",
        "./.berth",
    ] {
        assert!(sanitize(bad).is_err(), "{bad:?} must be refused");
    }
    assert!(sanitize(&"a/".repeat(3000)).is_err());
    assert!(sanitize(&"x".repeat(256)).is_err());
    for (ok, norm) in [
        ("a", "a"),
        ("./a//b/", "a/b"),
        ("a/./b", "a/b"),
        ("..a/b..", "..a/b.."),
        (".hidden", ".hidden"),
        ("x/.berth", "x/.berth"),
    ] {
        assert_eq!(sanitize(ok).unwrap().as_str(), norm, "{ok:?}");
    }
}

fn desc(mt: &str, ann: &[(&str, &str)]) -> Descriptor {
    Descriptor {
        media_type: mt.into(),
        digest: Digest::sha256_of(mt.as_bytes()),
        size: 1,
        artifact_type: None,
        annotations: ann
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn file(p: &str, mode: Option<u32>) -> Action {
    Action::File {
        path: sanitize(p).unwrap(),
        mode,
    }
}

fn extract_at(p: &str) -> Action {
    Action::Extract {
        base: if p.is_empty() {
            SafePath::root()
        } else {
            sanitize(p).unwrap()
        },
    }
}

#[test]
fn layer_actions_for_each_producer() {
    let raw = "application/vnd.cncf.model.weight.v1.raw";
    let cases = [
        (
            desc(
                raw,
                &[
                    ("org.cncf.model.filepath", "w/model.safetensors"),
                    ("org.opencontainers.image.title", "ignored"),
                    ("org.cncf.model.file.metadata+json", r#"{"mode":4095}"#),
                ],
            ),
            file("w/model.safetensors", Some(0o777)),
        ),
        (
            desc(
                "application/vnd.cnai.model.weight.v1.raw",
                &[("org.cnai.model.filepath", "legacy.bin")],
            ),
            file("legacy.bin", None),
        ),
        (
            desc("application/vnd.cncf.model.doc.v1.tar", &[]),
            extract_at(""),
        ),
        (
            desc("application/vnd.cnai.model.weight.v1.tar+gzip", &[]),
            extract_at(""),
        ),
        (
            desc(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &[
                    ("org.opencontainers.image.title", "sub/tokenizer"),
                    ("io.deis.oras.content.unpack", "true"),
                ],
            ),
            extract_at("sub"),
        ),
        (
            desc(
                "application/vnd.oci.image.layer.v1.tar+gzip",
                &[("org.opencontainers.image.title", "tokenizer")],
            ),
            extract_at(""),
        ),
        (
            desc(
                "application/vnd.oci.image.layer.v1.tar",
                &[("org.opencontainers.image.title", "weights.bin")],
            ),
            file("weights.bin", None),
        ),
        (
            desc(
                "application/vnd.berth.test.weights",
                &[("org.opencontainers.image.title", "model.safetensors")],
            ),
            file("model.safetensors", None),
        ),
        (
            desc("application/vnd.kitops.modelkit.model.v1.tar+gzip", &[]),
            extract_at(""),
        ),
        (
            desc("application/vnd.oci.image.layer.v1.tar", &[]),
            extract_at(""),
        ),
    ];
    for (d, want) in cases {
        assert_eq!(layer_action(&d).unwrap(), want, "{}", d.media_type);
    }
    assert!(matches!(
        layer_action(&desc("application/vnd.ollama.image.model", &[])).unwrap(),
        Action::Skip { .. }
    ));
    for hostile in [
        "../../etc/cron.d/x",
        "/root/.ssh/authorized_keys",
        ".berth/x",
    ] {
        for key in ["org.cncf.model.filepath", "org.opencontainers.image.title"] {
            let d = desc(raw, &[(key, hostile)]);
            assert!(layer_action(&d).is_err(), "{key}={hostile}");
        }
    }
}

#[test]
fn plan_of_a_kitops_manifest_writes_the_kitfile() {
    let d = |mt: &str| {
        format!(
            r#"{{"mediaType":"{mt}","digest":"{}","size":3}}"#,
            Digest::sha256_of(mt.as_bytes())
        )
    };
    let m = format!(
        r#"{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{},"layers":[{}]}}"#,
        d(KITOPS_CONFIG),
        d("application/vnd.kitops.modelkit.model.v1.tar")
    );
    let p = plan(m.as_bytes(), "application/vnd.oci.image.manifest.v1+json").unwrap();
    assert_eq!(p.steps.len(), 2);
    assert_eq!(p.steps[0].action, file("Kitfile", Some(0o644)));
    assert_eq!(p.steps[1].action, extract_at(""));
}

enum E<'a> {
    File(&'a str, &'a [u8]),
    Dir(&'a str),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

/// A tar with names written raw into the headers (the tar crate refuses to write
/// hostile names, which is exactly what these tests need).
fn hostile_tar(entries: &[E]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut h = tar::Header::new_old();
        let (name, data, kind, link): (&str, &[u8], _, &str) = match e {
            E::File(n, d) => (n, d, tar::EntryType::Regular, ""),
            E::Dir(n) => (n, b"", tar::EntryType::Directory, ""),
            E::Symlink(n, l) => (n, b"", tar::EntryType::Symlink, l),
            E::Hardlink(n, l) => (n, b"", tar::EntryType::Link, l),
        };
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        old.linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(data);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

fn unpack(root: &Path, tar: &[u8]) -> Result<Vec<String>> {
    let blob = root.parent().unwrap().join("blob.tar");
    std::fs::write(&blob, tar).unwrap();
    extract_tar(root, &SafePath::root(), &blob)
}

#[test]
fn hostile_tars_cannot_write_outside_the_root() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let cases: Vec<Vec<E>> = vec![
        vec![E::File("/tmp/abs", b"x")],
        vec![E::File("../escape", b"x")],
        vec![E::File("a/../../escape", b"x")],
        vec![
            E::Symlink("link", "../outside"),
            E::File("link/pwned", b"x"),
        ],
        vec![E::Symlink("link", "/etc")],
        vec![E::Symlink("a/link", "../../outside")],
        vec![E::Hardlink("h", "../outside/secret")],
        vec![E::Hardlink("h", "/etc/passwd")],
        vec![E::File(".berth/partial/x", b"x")],
    ];
    for (i, entries) in cases.iter().enumerate() {
        let root = tmp.path().join(format!("root{i}"));
        std::fs::create_dir(&root).unwrap();
        assert!(unpack(&root, &hostile_tar(entries)).is_err(), "case {i}");
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "case {i}");
    }
    assert!(!tmp.path().join("escape").exists());

    // A symlink planted on disk before the pull is replaced, not followed.
    let root = tmp.path().join("planted");
    std::fs::create_dir(&root).unwrap();
    std::os::unix::fs::symlink(outside.join("victim"), root.join("f")).unwrap();
    unpack(&root, &hostile_tar(&[E::File("f", b"data")])).unwrap();
    assert!(!outside.join("victim").exists());
    assert_eq!(std::fs::read(root.join("f")).unwrap(), b"data");
}

#[test]
fn benign_tars_unpack_with_links_and_dirs() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let files = unpack(
        &root,
        &hostile_tar(&[
            E::Dir("./"),
            E::Dir("d/"),
            E::File("./d/a.txt", b"hello"),
            E::Symlink("d/l", "a.txt"),
            E::Hardlink("d/h", "d/a.txt"),
            E::File("d/.wh.gone", b""),
        ]),
    )
    .unwrap();
    assert_eq!(files, ["d/a.txt", "d/h"]);
    assert_eq!(std::fs::read(root.join("d/l")).unwrap(), b"hello");
    assert_eq!(std::fs::read(root.join("d/h")).unwrap(), b"hello");
    assert!(!root.join("d/.wh.gone").exists());
}

#[test]
fn place_file_replaces_symlinks_and_sets_modes() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(root.join("d")).unwrap();
    std::os::unix::fs::symlink("/etc", root.join("link")).unwrap();
    let blob = tmp.path().join("blob");
    std::fs::write(&blob, b"x").unwrap();
    let through = place_file(&root, &sanitize("link/passwd").unwrap(), &blob, None, true);
    assert!(through.is_err());
    let p = place_file(
        &root,
        &sanitize("d/run.sh").unwrap(),
        &blob,
        Some(0o755),
        false,
    )
    .unwrap();
    assert_eq!(
        std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o755
    );
    assert!(!blob.exists());
    let _ = BTreeMap::<String, String>::new();
}
