use super::*;
use crate::http::access::{Action, Scope};
use crate::oci::RepoName;

fn auth_with(extra: &str) -> (tempfile::TempDir, Auth) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("auth.toml");
    let text = format!(
        r#"
[users.alice]
password = "{}"
groups = ["ml"]

[[grant]]
to = ["group:ml"]
repos = "team/**"
actions = ["pull", "push"]

[[grant]]
to = ["anonymous"]
repos = "public/**"
actions = ["pull"]
{extra}
"#,
        password::hash("alice-password").unwrap()
    );
    std::fs::write(&path, text).unwrap();
    let auth = Auth::from_file(&path, vec![1u8; 32]).unwrap();
    (dir, auth)
}

fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

const ADDR: &str = "192.0.2.7";

fn robot(name: &str, token: &str, expires_ms: Option<i64>) -> Robot {
    Robot {
        name: name.into(),
        token_sha256: token_sha256(token),
        groups: vec!["ml".into()],
        description: None,
        created: crate::store::audit::format_time(0),
        created_by: "root".into(),
        expires: expires_ms.map(crate::store::audit::format_time),
        revoked: None,
    }
}

fn scope(repo: &str, a: Action) -> Scope {
    Scope::repo(&repo.parse::<RepoName>().unwrap(), a)
}

#[tokio::test]
async fn users_log_in_with_their_password_only() {
    let (_d, auth) = auth_with("");
    let state = auth.current();
    let p = auth
        .authenticate(
            &state,
            Some(&basic("alice", "alice-password")),
            Some(ADDR.into()),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.actor.name, "alice");
    assert!(p.actor.authenticated);
    assert_eq!(p.groups, ["ml"]);
    // Cached: the second check is the same answer.
    assert!(
        auth.authenticate(
            &state,
            Some(&basic("alice", "alice-password")),
            Some(ADDR.into())
        )
        .await
        .is_ok()
    );
    for bad in [
        basic("alice", "wrong"),
        basic("nobody", "alice-password"),
        "Basic !!!".into(),
        "Basic ".into(),
        "Digest x".into(),
        "Bearer not-a-token".into(),
        format!("Basic {}", "A".repeat(10_000)),
    ] {
        assert!(
            matches!(
                auth.authenticate(&state, Some(&bad), Some("192.0.2.8".into()))
                    .await,
                Err(Denial::BadCredentials(_))
            ),
            "{bad:.40}"
        );
    }
    // No header: nothing proven.
    assert!(
        auth.authenticate(&state, None, None)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn failed_logins_back_off() {
    let (_d, auth) = auth_with("");
    let state = auth.current();
    for _ in 0..5 {
        assert!(matches!(
            auth.login(&state, "alice", "wrong", Some(ADDR)).await,
            Err(Denial::BadCredentials(_))
        ));
    }
    // Even the right password waits now, from this address.
    assert!(matches!(
        auth.login(&state, "alice", "alice-password", Some(ADDR))
            .await,
        Err(Denial::TooManyAttempts { .. })
    ));
    assert!(
        auth.login(&state, "alice", "alice-password", Some("192.0.2.99"))
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn robots_log_in_until_revoked_or_expired() {
    let (_d, auth) = auth_with("");
    let state = auth.current();
    let token = new_robot_token().unwrap();
    let far = jiff::Timestamp::now().as_millisecond() + 3_600_000;
    auth.set_robots(vec![
        robot("ci", &token, Some(far)),
        robot("old", "berth_old", Some(1)),
    ]);
    let p = auth
        .authenticate(&state, Some(&basic("robot+ci", &token)), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.actor.name, "robot+ci");
    assert_eq!(p.kind, PrincipalKind::Robot);
    let p = auth
        .authenticate(&state, Some(&format!("Bearer {token}")), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.id, "ci");
    assert!(
        auth.authenticate(&state, Some(&basic("robot+ci", "berth_wrong")), None)
            .await
            .is_err()
    );
    assert!(
        auth.authenticate(&state, Some("Bearer berth_old"), None)
            .await
            .is_err(),
        "expired"
    );
    // A registry token of the robot dies with it.
    let (jwt, _) = auth.issue_token(&state, &p, &[]).unwrap();
    assert!(
        auth.authenticate(&state, Some(&format!("Bearer {jwt}")), None)
            .await
            .is_ok()
    );
    let mut revoked = robot("ci", &token, Some(far));
    revoked.revoked = Some(crate::store::audit::format_time(0));
    auth.set_robots(vec![revoked]);
    assert!(
        auth.authenticate(&state, Some(&format!("Bearer {token}")), None)
            .await
            .is_err()
    );
    assert!(
        auth.authenticate(&state, Some(&format!("Bearer {jwt}")), None)
            .await
            .is_err()
    );
}

#[tokio::test]
async fn tokens_carry_only_what_the_caller_may_have() {
    let (_d, auth) = auth_with("");
    let state = auth.current();
    let alice = auth
        .login(&state, "alice", "alice-password", None)
        .await
        .unwrap();
    let asked: Vec<_> = [
        "repository:team/m:pull,push,delete",
        "repository:other:pull",
        "repository:public/x:pull",
        "registry:berth:admin",
        "repository:../../etc/passwd:pull",
    ]
    .iter()
    .filter_map(|s| token::parse_scope(s))
    .collect();
    let (jwt, claims) = auth.issue_token(&state, &alice, &asked).unwrap();
    let actions = |name: &str| {
        claims
            .access
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.actions.clone())
            .unwrap_or_default()
    };
    assert_eq!(actions("team/m"), ["pull", "push"]);
    assert!(actions("other").is_empty());
    assert_eq!(actions("public/x"), ["pull"]);
    assert!(actions("berth").is_empty());
    assert!(!claims.access.iter().any(|e| e.name.contains("..")));
    // The token proves alice and grants at most its scopes.
    let p = auth
        .authenticate(&state, Some(&format!("Bearer {jwt}")), None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.actor.name, "alice");
    assert!(
        state
            .access
            .authorize(&p, &[scope("team/m", Action::Push)])
            .is_ok()
    );
    assert!(matches!(
        state.access.authorize(&p, &[scope("team/n", Action::Pull)]),
        Err(Denial::InsufficientScope { .. })
    ));
    // An anonymous token: public pulls only.
    let anon = Principal::anonymous(Actor::local("anonymous"));
    let (_, claims) = auth.issue_token(&state, &anon, &asked).unwrap();
    let granted: Vec<_> = claims
        .access
        .iter()
        .filter(|e| !e.actions.is_empty())
        .collect();
    assert_eq!(granted.len(), 1);
    assert_eq!(granted[0].name, "public/x");
}

#[tokio::test]
async fn a_reload_replaces_the_rules_and_a_bad_file_keeps_them() {
    let (dir, auth) = auth_with("");
    let path = dir.path().join("auth.toml");
    let before = auth.current();
    std::fs::write(
        &path,
        "[[grant]]\nto = [\"anonymous\"]\nrepos = \"**\"\nactions = [\"push\"]\n",
    )
    .unwrap();
    assert!(auth.reload().is_err());
    assert_eq!(auth.current().users.len(), before.users.len());
    std::fs::write(&path, "").unwrap();
    assert!(auth.reload().unwrap());
    assert!(auth.current().users.is_empty());
    assert!(
        auth.login(&auth.current(), "alice", "alice-password", None)
            .await
            .is_err()
    );
}
