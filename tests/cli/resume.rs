//! Interrupted transfers: real SIGKILLs mid-push and mid-pull, then reruns that
//! send or fetch only the rest.

use std::path::PathBuf;
use std::time::Duration;

use crate::support::*;

/// Starts a rate-limited chunked push of `src` to `target`, SIGKILLs it once the
/// registry acknowledged 3 MiB, and returns the upload record it left.
fn interrupted_push(env: &Env, src: &std::path::Path, target: &str) -> serde_json::Value {
    let args = [
        "push",
        src.to_str().unwrap(),
        target,
        "--chunk-size",
        "1MiB",
        "--limit-rate",
        "4MiB",
        "-q",
    ];
    let mut child = env.cmd(&args).spawn().unwrap();
    let records = env.upload_records();
    let mut found = None;
    wait_for("3 MiB acknowledged", Duration::from_secs(30), || {
        found = std::fs::read_dir(&records)
            .into_iter()
            .flatten()
            .flatten()
            .find_map(|e| {
                let v: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok()?;
                (v["offset"].as_u64()? >= 3 * MIB as u64
                    && v["repo"] == target.split_once('/')?.1.split(':').next()?)
                .then_some(v)
            });
        found.is_some()
    });
    child.kill().unwrap(); // SIGKILL: no cleanup, like a crash or a lost connection
    assert!(child.wait().unwrap().code().is_none());
    found.unwrap()
}

fn big_layer(out: &serde_json::Value) -> serde_json::Value {
    out["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["label"] == "big.safetensors")
        .unwrap()
        .clone()
}

#[test]
fn killed_push_resumes_from_the_registry_offset() {
    let env = Env::new();
    let src = env.path("src");
    let big = noise(7, 16 * MIB);
    write(&src, "big.safetensors", &big);
    write(&src, "config.json", b"{}");
    let size = big.len() as u64;

    let target = env.r("team/big:v1");
    interrupted_push(&env, &src, &target);
    let before = env.upload_bytes_received();
    let out = env.json(&[
        "push",
        src.to_str().unwrap(),
        &target,
        "--chunk-size",
        "1MiB",
        "-q",
    ]);
    let sent = env.upload_bytes_received() - before;
    let layer = big_layer(&out);
    let resumed = layer["resumed_from"].as_u64().unwrap();
    assert!(resumed >= 3 * MIB as u64, "resumed from {resumed}");
    assert_eq!(layer["bytes_sent"].as_u64().unwrap(), size - resumed);
    assert!(
        sent < size - 3 * MIB as u64 + 64 * 1024,
        "server received {sent}"
    );
    assert_eq!(
        std::fs::read_dir(env.upload_records()).unwrap().count(),
        0,
        "no upload left pending"
    );
    env.run(&["pull", &target, env.path("out").to_str().unwrap(), "-q"]);
    assert_same_tree(&src, &env.path("out"));

    // A session the registry no longer knows (here: cancelled) answers 404 to the
    // status request; the push starts that blob over.
    let src = env.path("src2");
    write(&src, "big.safetensors", &noise(8, 16 * MIB)); // new bytes: nothing to mount
    let target = env.r("team/big2:v1");
    let record = interrupted_push(&env, &src, &target);
    let url = record["url"].as_str().unwrap().to_string();
    let status = block_on(async move {
        reqwest::Client::new()
            .delete(url)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    });
    assert_eq!(status, 204, "cancel the session");
    let out = env.json(&[
        "push",
        src.to_str().unwrap(),
        &target,
        "--chunk-size",
        "1MiB",
        "-q",
    ]);
    let layer = big_layer(&out);
    assert_eq!(layer["outcome"], "uploaded");
    assert_eq!(layer["resumed_from"], 0);
    assert_eq!(layer["bytes_sent"].as_u64().unwrap(), size);
}

#[test]
fn killed_pull_resumes_from_its_parts() {
    let env = Env::new();
    let src = env.path("src");
    write(&src, "big.gguf", &noise(9, 16 * MIB));
    write(&src, "small/tokenizer.json", b"{\"a\":1}");
    let target = env.r("team/pull:v1");
    env.run(&["push", src.to_str().unwrap(), &target, "-q"]);
    let total = 16 * MIB as u64 + 7;

    // Starts a rate-limited chunked pull into `dir`, kills it once 3 chunks are on
    // disk and returns the chunk table it left.
    let interrupted_pull = |dir: &PathBuf| -> (PathBuf, serde_json::Value) {
        let args = [
            "pull",
            &target,
            dir.to_str().unwrap(),
            "--chunk-size",
            "1MiB",
            "--limit-rate",
            "4MiB",
            "--jobs",
            "2",
            "-q",
        ];
        let mut child = env.cmd(&args).spawn().unwrap();
        let partial = dir.join(".berth/partial");
        let mut found = None;
        wait_for("3 chunks on disk", Duration::from_secs(30), || {
            found = std::fs::read_dir(&partial)
                .into_iter()
                .flatten()
                .flatten()
                .find_map(|e| {
                    let p = e.path();
                    let v: serde_json::Value =
                        serde_json::from_slice(&std::fs::read(&p).ok()?).ok()?;
                    (p.extension()? == "json" && v["done"].as_array()?.len() >= 3).then_some((p, v))
                });
            found.is_some()
        });
        child.kill().unwrap(); // SIGKILL mid-download
        child.wait().unwrap();
        assert!(
            !dir.join("big.gguf").exists(),
            "nothing is placed before it is verified"
        );
        found.unwrap()
    };

    let dir = env.path("out");
    interrupted_pull(&dir);
    let out = env.json(&[
        "pull",
        &target,
        dir.to_str().unwrap(),
        "--chunk-size",
        "1MiB",
        "-q",
    ]);
    let reused = out["bytes_reused"].as_u64().unwrap();
    let downloaded = out["bytes_downloaded"].as_u64().unwrap();
    assert!(reused >= 3 * MIB as u64, "reused {reused}");
    assert_eq!(reused + downloaded, total);
    assert_same_tree(&src, &dir);
    assert!(!dir.join(".berth").exists());

    // A chunk corrupted on disk after the kill is caught by the digest check and the
    // blob fetched again: the result is still exact.
    let dir = env.path("out2");
    let (table, v) = interrupted_pull(&dir);
    let chunk = v["done"][0].as_u64().unwrap();
    let part = table.with_extension(""); // sha256-<hex>.part.json -> sha256-<hex>.part
    let mut bytes = std::fs::read(&part).unwrap();
    bytes[(chunk * MIB as u64) as usize] ^= 0xff;
    std::fs::write(&part, bytes).unwrap();
    let out = env.json(&[
        "pull",
        &target,
        dir.to_str().unwrap(),
        "--chunk-size",
        "1MiB",
        "-q",
    ]);
    let big = 16 * MIB as u64;
    assert!(out["bytes_downloaded"].as_u64().unwrap() >= big, "{out}");
    assert_same_tree(&src, &dir);
}
