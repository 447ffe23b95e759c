//! Other tools on either side: the oras SDK pushes, berth pulls; berth pushes the
//! image layout, skopeo copies it out and umoci unpacks it.

use std::process::Command;

use crate::support::*;

#[test]
fn pulls_what_oras_pushed() {
    require(
        "the oras SDK (PyPI `oras`)",
        "python3",
        &["-c", "import oras.provider"],
    );
    let env = Env::new();
    let src = env.path("src");
    write(&src, "model.safetensors", &noise(4, 3 * MIB));
    write(&src, "README.md", b"# from oras\n");
    write(&src, "tokenizer/tokenizer.json", b"{\"v\":1}");
    write(&src, "tokenizer/nested/vocab.txt", b"a\nb\n");
    run_ok(
        "oras_push.py",
        Command::new("python3")
            .arg(repo_path("tests/cli/oras_push.py"))
            .arg(&env.srv.addr)
            .arg("oras/model:v1")
            .arg(&src),
    );
    let out = env.json(&[
        "pull",
        &env.r("oras/model:v1"),
        env.path("out").to_str().unwrap(),
        "-q",
    ]);
    assert!(out["skipped"].as_array().unwrap().is_empty(), "{out}");
    assert_same_tree(&src, &env.path("out"));
}

#[test]
fn umoci_unpacks_the_image_layout() {
    require("skopeo", "skopeo", &["--version"]);
    require("umoci", "umoci", &["--version"]);
    require("python3", "python3", &["--version"]);
    let env = Env::new();
    let src = env.path("src");
    make_model(&src, 2);
    env.run(&[
        "push",
        src.to_str().unwrap(),
        &env.r("team/img:v1"),
        "--layout",
        "image",
        "-q",
    ]);

    // skopeo reads only config files this test owns (as tests/clients/skopeo_roundtrip.sh).
    let home = env.path("home");
    let conf = home.join(".config/containers");
    std::fs::create_dir_all(&conf).unwrap();
    let registries = conf.join("registries.conf");
    std::fs::write(
        &registries,
        format!(
            "[[registry]]\nlocation = \"{}\"\ninsecure = true\n",
            env.srv.addr
        ),
    )
    .unwrap();
    std::fs::write(
        conf.join("policy.json"),
        r#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    )
    .unwrap();
    std::fs::write(env.path("auth.json"), r#"{"auths": {}}"#).unwrap();
    std::fs::create_dir_all(env.path("run")).unwrap();
    let layout = env.path("layout");
    let with_env = |c: &mut Command| {
        c.env("HOME", &home)
            .env("CONTAINERS_REGISTRIES_CONF", &registries)
            .env("REGISTRY_AUTH_FILE", env.path("auth.json"))
            .env("XDG_RUNTIME_DIR", env.path("run"))
            .env("XDG_CONFIG_HOME", home.join(".config"));
    };
    let mut copy = Command::new("skopeo");
    copy.args(["copy", "--quiet", "--src-tls-verify=false"])
        .arg(format!("docker://{}/team/img:v1", env.srv.addr))
        .arg(format!("oci:{}:v1", layout.display()));
    with_env(&mut copy);
    run_ok("skopeo copy", &mut copy);
    let bundle = env.path("bundle");
    let mut unpack = Command::new("umoci");
    unpack
        .args(["unpack", "--rootless", "--image"])
        .arg(format!("{}:v1", layout.display()))
        .arg(&bundle);
    with_env(&mut unpack);
    run_ok("umoci unpack", &mut unpack);
    assert_same_tree(&src, &bundle.join("rootfs"));
}
