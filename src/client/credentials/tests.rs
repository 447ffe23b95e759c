use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A store whose only file is `DIR/config.json` (as with `DOCKER_CONFIG=DIR`).
fn store_in(dir: &Path) -> Store {
    Store {
        locations: Locations {
            docker_config: Some(dir.to_path_buf()),
            ..Default::default()
        },
    }
}

fn password(c: Option<Credential>) -> Option<(String, String)> {
    c.map(|c| match c.secret {
        Secret::Password(p) => (c.username, p),
        Secret::IdentityToken(t) => (c.username, format!("token:{t}")),
    })
}

fn pair(u: &str, p: &str) -> Option<(String, String)> {
    Some((u.to_string(), p.to_string()))
}

#[test]
fn reads_every_key_form_docker_and_podman_write() {
    let tmp = tempfile::tempdir().unwrap();
    let file = json!({
        "auths": {
            "reg.example.com:5000": { "auth": b64("alice:pa:ss") },
            "https://docker-style.example.com/v1/": { "auth": b64("bob:b") },
            "http://plain.example.com": { "auth": b64("carol:c") },
            "fields.example.com": { "username": "dave", "password": "d" },
            "token.example.com": { "auth": b64("<token>:"), "identitytoken": "refresh-me" },
            "https://index.docker.io/v1/": { "auth": b64("hub:h") },
            "scoped.example.com/team": { "auth": b64("erin:e") },
            "empty.example.com": {},
        },
    });
    fs::write(tmp.path().join("config.json"), file.to_string()).unwrap();
    let s = store_in(tmp.path());
    let get = |r: &str| password(s.get(r).unwrap());
    // A password may contain ':'; only the first one separates.
    assert_eq!(get("reg.example.com:5000"), pair("alice", "pa:ss"));
    assert_eq!(get("REG.example.com:5000"), pair("alice", "pa:ss"));
    assert_eq!(get("reg.example.com"), None);
    assert_eq!(get("docker-style.example.com"), pair("bob", "b"));
    assert_eq!(get("plain.example.com"), pair("carol", "c"));
    assert_eq!(get("fields.example.com"), pair("dave", "d"));
    assert_eq!(
        get("token.example.com"),
        pair("<token>", "token:refresh-me")
    );
    assert_eq!(get("registry-1.docker.io"), pair("hub", "h"));
    assert_eq!(get("docker.io"), pair("hub", "h"));
    // A namespace-scoped entry is not the whole registry's.
    assert_eq!(get("scoped.example.com"), None);
    assert_eq!(get("empty.example.com"), None);
    let c = s.get("reg.example.com:5000").unwrap().unwrap();
    assert!(c.source.ends_with("config.json"));
    // The Debug form never shows the secret.
    assert!(!format!("{c:?}").contains("pa:ss"));
}

#[test]
fn falls_back_through_the_files_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path();
    let write = |rel: &str, v: Value| {
        let f = p.join(rel);
        fs::create_dir_all(f.parent().unwrap()).unwrap();
        fs::write(f, v.to_string()).unwrap();
    };
    write(
        "auth.json",
        json!({"auths": {"a:1": {"auth": b64("from-auth-file:x")}}}),
    );
    write(
        "docker/config.json",
        json!({"auths": {"a:1": {"auth": b64("from-docker:x")}, "b:1": {"auth": b64("from-docker:y")}}}),
    );
    write(
        "run/containers/auth.json",
        json!({"auths": {"c:1": {"auth": b64("from-podman:z")}}}),
    );
    let s = Store {
        locations: Locations {
            auth_file: Some(p.join("auth.json")),
            docker_config: Some(p.join("docker")),
            home: Some(p.join("home")),
            xdg_runtime_dir: Some(p.join("run")),
            ..Default::default()
        },
    };
    assert_eq!(s.locations.primary().unwrap(), p.join("auth.json"));
    assert_eq!(password(s.get("a:1").unwrap()), pair("from-auth-file", "x"));
    assert_eq!(password(s.get("b:1").unwrap()), pair("from-docker", "y"));
    assert_eq!(password(s.get("c:1").unwrap()), pair("from-podman", "z"));
    assert_eq!(s.get("d:1").unwrap(), None);
    assert_eq!(
        s.locations.read_order().last().unwrap(),
        &p.join("home/.config/containers/auth.json")
    );

    // A broken file is an error that names it, not silently no credentials.
    write("auth.json", json!([1, 2]));
    let e = s.get("a:1").unwrap_err().to_string();
    assert!(
        e.contains("auth.json") && e.contains("not a JSON object"),
        "{e}"
    );
    fs::write(p.join("auth.json"), "{not json").unwrap();
    assert!(s.get("a:1").is_err());
    // An empty file is an empty config.
    fs::write(p.join("auth.json"), "").unwrap();
    assert_eq!(password(s.get("b:1").unwrap()), pair("from-docker", "y"));
}

#[test]
fn save_keeps_everything_else_private_and_whole() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("docker");
    fs::create_dir(&dir).unwrap();
    let original = json!({
        "auths": {
            "other.example.com": { "auth": b64("o:o"), "email": "o@example.com" },
            "https://reg.example.com/v1/": { "auth": b64("old:old") },
        },
        "HttpHeaders": { "X-Meta": "kept" },
        "psFormat": "table {{.ID}}",
        "plugins": { "x": { "y": [1, 2, 3] } },
    });
    fs::write(dir.join("config.json"), original.to_string()).unwrap();
    let s = store_in(&dir);

    let saved = s.save("reg.example.com", "alice", "s3cr:t").unwrap();
    assert_eq!(saved.place, dir.join("config.json").display().to_string());
    let v: Value = serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert_eq!(v["HttpHeaders"], original["HttpHeaders"]);
    assert_eq!(v["psFormat"], original["psFormat"]);
    assert_eq!(v["plugins"], original["plugins"]);
    assert_eq!(
        v["auths"]["other.example.com"],
        original["auths"]["other.example.com"]
    );
    // The old key form is replaced by the plain host, not left stale beside it.
    assert_eq!(v["auths"].as_object().unwrap().len(), 2);
    assert_eq!(v["auths"]["reg.example.com"]["auth"], b64("alice:s3cr:t"));
    assert_eq!(
        password(s.get("reg.example.com").unwrap()),
        pair("alice", "s3cr:t")
    );
    let mode = fs::metadata(dir.join("config.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    // Nothing but the file is left in the directory (no temporary files).
    assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);

    // Logout removes the entry and only it.
    assert!(s.erase("reg.example.com").unwrap().is_some());
    let v: Value = serde_json::from_slice(&fs::read(dir.join("config.json")).unwrap()).unwrap();
    assert!(v["auths"].get("reg.example.com").is_none());
    assert_eq!(v["psFormat"], original["psFormat"]);
    assert_eq!(v["auths"].as_object().unwrap().len(), 1);
    assert!(s.erase("reg.example.com").unwrap().is_none());
}

#[test]
fn save_creates_the_file_and_follows_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let s = store_in(&tmp.path().join("new/dir"));
    s.save("127.0.0.1:5000", "u", "p").unwrap();
    let f = tmp.path().join("new/dir/config.json");
    let mode = fs::metadata(f.parent().unwrap())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "the new directory is private");
    assert_eq!(password(s.get("127.0.0.1:5000").unwrap()), pair("u", "p"));

    let real = tmp.path().join("dotfiles/config.json");
    fs::create_dir_all(real.parent().unwrap()).unwrap();
    fs::write(&real, r#"{"credsStore":""}"#).unwrap();
    let linked = tmp.path().join("linked");
    fs::create_dir(&linked).unwrap();
    std::os::unix::fs::symlink(&real, linked.join("config.json")).unwrap();
    store_in(&linked).save("h:1", "u", "p").unwrap();
    assert!(
        fs::symlink_metadata(linked.join("config.json"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(fs::read_to_string(&real).unwrap().contains("h:1"));

    // A file that is not a config is never overwritten.
    fs::write(&real, "garbage").unwrap();
    assert!(store_in(&linked).save("h:1", "u", "p").is_err());
    assert_eq!(fs::read_to_string(&real).unwrap(), "garbage");
}

/// A credential helper as a shell script: keeps one record in `db.json` beside
/// itself and logs each call.
const HELPER: &str = r#"#!/bin/sh
dir=$(dirname "$0")
input=$(cat)
echo "$1 $input" >> "$dir/log"
case "$1" in
  get)
    if [ -f "$dir/db.json" ] && grep -q "\"ServerURL\":\"$input\"" "$dir/db.json"; then
      cat "$dir/db.json"
    else
      echo "credentials not found in native keychain"; exit 1
    fi ;;
  store) printf '%s' "$input" > "$dir/db.json" ;;
  erase)
    if [ -f "$dir/db.json" ]; then rm "$dir/db.json"; else echo "credentials not found in native keychain"; exit 1; fi ;;
  *) echo "unknown verb" >&2; exit 2 ;;
esac
"#;

fn install_helper(bin: &Path, name: &str) {
    fs::create_dir_all(bin).unwrap();
    let p = bin.join(format!("docker-credential-{name}"));
    fs::write(&p, HELPER).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn credential_helpers_get_store_and_erase() {
    let tmp = tempfile::tempdir().unwrap();
    let bin = tmp.path().join("bin");
    install_helper(&bin, "test");
    let dir = tmp.path().join("docker");
    fs::create_dir(&dir).unwrap();
    fs::write(
        dir.join("config.json"),
        json!({"credHelpers": {"reg.example.com": "test"}, "auths": {"reg.example.com": {"auth": b64("stale:x")}}})
            .to_string(),
    )
    .unwrap();
    let mut s = store_in(&dir);
    s.locations.path = Some(std::env::join_paths([bin.clone()]).unwrap());

    // The helper is asked first; it holds nothing yet, and the plain entry is
    // not used in its place.
    assert_eq!(s.get("reg.example.com").unwrap(), None);
    let saved = s.save("reg.example.com", "alice", "pw").unwrap();
    assert!(
        saved.place.contains("docker-credential-test"),
        "{}",
        saved.place
    );
    let db = fs::read_to_string(bin.join("db.json")).unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&db).unwrap(),
        json!({"ServerURL": "reg.example.com", "Username": "alice", "Secret": "pw"})
    );
    // The secret went to the helper; no plain-text copy is left in the file.
    let file = fs::read_to_string(dir.join("config.json")).unwrap();
    assert!(
        !file.contains(&b64("stale:x")) && !file.contains("pw"),
        "{file}"
    );
    let c = s.get("reg.example.com").unwrap().unwrap();
    assert_eq!(password(Some(c.clone())), pair("alice", "pw"));
    assert!(c.source.contains("docker-credential-test"));
    assert!(s.erase("reg.example.com").unwrap().is_some());
    assert!(!bin.join("db.json").exists());
    let log = fs::read_to_string(bin.join("log")).unwrap();
    assert!(log.starts_with("get reg.example.com\n"), "{log}");
    assert!(log.contains("erase reg.example.com"), "{log}");

    // The default store applies to registries without their own helper.
    fs::write(dir.join("config.json"), r#"{"credsStore":"test"}"#).unwrap();
    s.save("other:1", "bob", "pw2").unwrap();
    assert_eq!(password(s.get("other:1").unwrap()), pair("bob", "pw2"));
    assert!(
        !fs::read_to_string(dir.join("config.json"))
            .unwrap()
            .contains("pw2")
    );

    // A helper's identity token (username `<token>`) is kept as one.
    fs::write(
        bin.join("db.json"),
        r#"{"ServerURL":"other:1","Username":"<token>","Secret":"rt"}"#,
    )
    .unwrap();
    assert_eq!(
        s.get("other:1").unwrap().map(|c| c.secret),
        Some(Secret::IdentityToken("rt".into()))
    );

    // A missing or ill-named helper is an error that says so.
    fs::write(dir.join("config.json"), r#"{"credsStore":"absent"}"#).unwrap();
    let e = format!("{:#}", s.get("x:1").unwrap_err());
    assert!(e.contains("docker-credential-absent"), "{e}");
    fs::write(dir.join("config.json"), r#"{"credsStore":"../../bin/sh"}"#).unwrap();
    assert!(s.get("x:1").is_err());
}
