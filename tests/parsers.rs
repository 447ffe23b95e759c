//! Property tests of the parsers every request reaches: repository names,
//! references, digests, token scopes, actions and subjects, manifests, request
//! paths and `Authorization` headers. Each property runs a bounded number of
//! generated cases (`PROPTEST_CASES`, default below), so the test command's
//! time stays bounded; none may panic, and what parses must be what the specs
//! allow and print back as it came.

use berth::auth::token::parse_scope;
use berth::http::Endpoint;
use berth::http::access::{Action, Subject};
use berth::oci::{Digest, ParsedManifest, Reference, RepoName};
use proptest::prelude::*;

const CASES: u32 = 3000;

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(CASES),
        ..ProptestConfig::default()
    }
}

/// Strings near the grammars: their alphabet, separators, and hostile bytes.
fn name_like() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._/-]{0,40}",
        "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,4}",
        "([a-z0-9]+(__|[._-]|--)?){1,6}",
        ".{0,40}",
        "[./%a-zA-Z0-9:@_-]{0,300}",
    ]
}

fn is_component(c: &str) -> bool {
    // [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* (distribution-spec)
    let b = c.as_bytes();
    if b.is_empty() || !b[0].is_ascii_alphanumeric() || !b[b.len() - 1].is_ascii_alphanumeric() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if b[i].is_ascii_lowercase() || b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && matches!(b[i], b'.' | b'_' | b'-') {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = !sep.is_empty()
            && (sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-'));
        if !ok {
            return false;
        }
    }
    c.bytes()
        .all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-'))
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>().prop_map(|f| serde_json::json!(f)),
        prop_oneof![
            Just(
                "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
                    .to_string()
            ),
            Just("application/vnd.oci.image.manifest.v1+json".to_string()),
            ".{0,20}",
        ]
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let key = prop_oneof![
            Just("schemaVersion".to_string()),
            Just("mediaType".to_string()),
            Just("config".to_string()),
            Just("layers".to_string()),
            Just("manifests".to_string()),
            Just("subject".to_string()),
            Just("digest".to_string()),
            Just("size".to_string()),
            Just("annotations".to_string()),
            Just("artifactType".to_string()),
            "[a-z]{1,6}",
        ];
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
            prop::collection::btree_map(key, inner, 0..8)
                .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn repository_names_parse_only_as_the_spec_allows(s in name_like()) {
        if let Ok(name) = s.parse::<RepoName>() {
            prop_assert_eq!(name.as_str(), s.as_str());
            prop_assert!(s.len() <= 255);
            prop_assert!(s.split('/').all(is_component), "{:?}", s);
        } else {
            prop_assert!(s.is_empty() || s.len() > 255 || !s.split('/').all(is_component), "refused {:?}", s);
        }
    }

    #[test]
    fn references_and_digests_print_back_as_they_came(s in prop_oneof![
        "[a-zA-Z0-9_.-]{0,140}",
        "sha(256|512):[0-9a-fA-F]{0,130}",
        "[a-z0-9+._-]{1,10}:[a-zA-Z0-9=_-]{0,70}",
        ".{0,80}",
    ]) {
        if let Ok(d) = s.parse::<Digest>() {
            prop_assert_eq!(d.to_string(), s.clone());
            let hex = d.hex();
            prop_assert!(hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            prop_assert_eq!(hex.len(), d.algorithm().hex_len());
        }
        if let Ok(r) = s.parse::<Reference>() {
            match r {
                Reference::Tag(t) => {
                    // [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}
                    prop_assert!(t.as_str().len() <= 128);
                    let first = t.as_str().as_bytes()[0];
                    prop_assert!(first.is_ascii_alphanumeric() || first == b'_');
                    prop_assert!(t.as_str().bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')));
                }
                Reference::Digest(d) => prop_assert_eq!(d.to_string(), s.clone()),
            }
        }
    }

    #[test]
    fn scopes_grant_nothing_outside_a_valid_name(s in prop_oneof![
        "(repository|registry|image):[a-z0-9./%-]{0,30}:[a-z,/*]{0,30}",
        "repository:[a-z]{1,5}(/\\.\\.)?(/[a-z]{1,5}){0,3}:(pull|push|delete|promote/[a-z]{1,5}|admin|\\*)(,(pull|push)){0,2}",
        ".{0,60}",
    ]) {
        if let Some(r) = parse_scope(&s) {
            if let Some(repo) = &r.repo {
                prop_assert!(!repo.as_str().contains(".."));
                prop_assert!(repo.as_str().parse::<RepoName>().is_ok());
            }
            prop_assert!(r.repo.is_none() || !r.actions.contains(&Action::Admin), "no admin on a repository");
        }
        let _ = Action::parse(&s);
        let _ = Subject::parse(&s);
    }

    #[test]
    fn manifests_never_panic(v in json_value(), ct in prop_oneof![
        Just(None),
        Just(Some("application/vnd.oci.image.manifest.v1+json")),
        Just(Some("application/vnd.oci.image.index.v1+json")),
        Just(Some("application/vnd.docker.distribution.manifest.v2+json")),
    ]) {
        let mut v = v;
        if let Some(o) = v.as_object_mut() {
            o.insert("schemaVersion".into(), 2.into());
        }
        let bytes = serde_json::to_vec(&v).unwrap();
        let _ = ParsedManifest::parse(&bytes, ct);
    }

    #[test]
    fn manifest_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = ParsedManifest::parse(&bytes, None);
    }

    #[test]
    fn request_paths_never_panic(segments in prop::collection::vec(prop_oneof![
        name_like(),
        Just("manifests".to_string()),
        Just("blobs".to_string()),
        Just("uploads".to_string()),
        Just("tags".to_string()),
        Just("referrers".to_string()),
        Just("%2F".to_string()),
        Just("%2e%2e".to_string()),
        Just("..".to_string()),
    ], 0..8)) {
        let path = format!("/v2/{}", segments.join("/"));
        if let Ok(e) = Endpoint::parse(&path) {
            let _ = format!("{e:?}");
        }
    }
}

/// Authorization headers of every shape: never a panic, never an identity.
#[tokio::test]
async fn hostile_authorization_headers_prove_nothing() {
    use proptest::strategy::ValueTree as _;
    use proptest::test_runner::TestRunner;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    std::fs::write(&path, "").unwrap();
    let auth = berth::auth::Auth::from_file(&path, vec![3u8; 32]).unwrap();
    let state = auth.current();
    let mut runner = TestRunner::new(config());
    let strategy = prop_oneof![
        "(Basic|Bearer|basic|BEARER|Digest) .{0,200}",
        "Basic [A-Za-z0-9+/=]{0,120}",
        "Bearer [A-Za-z0-9_.-]{0,300}",
        "Bearer berth_[A-Za-z0-9_-]{0,60}",
        ".{0,100}",
    ];
    for _ in 0..config().cases.min(2000) {
        let value = strategy.new_tree(&mut runner).unwrap().current();
        let r = auth
            .authenticate(&state, Some(&value), Some("192.0.2.1".into()))
            .await;
        assert!(!matches!(r, Ok(Some(_))), "{value:?} proved an identity");
    }
}
