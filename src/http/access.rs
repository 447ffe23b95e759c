//! Who may do what: the scopes a request needs, and the one check of them that
//! the dispatcher makes before any handler runs.

use std::fmt;

use crate::governance::policy::RepoGlob;
use crate::oci::{RepoName, Tag};
use crate::store::Actor;

/// What a request does, to a repository or (without one) to the registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Action {
    Pull,
    Push,
    Delete,
    /// Move a protected alias: `Some` names the alias a request moves; a grant
    /// of `Promote(None)` covers every alias.
    Promote(Option<Tag>),
    Approve,
    Admin,
}

impl Action {
    /// The action's name in a scope (`repository:team/m:promote`).
    pub fn name(&self) -> &'static str {
        match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
            Action::Promote(_) => "promote",
            Action::Approve => "approve",
            Action::Admin => "admin",
        }
    }

    /// An action as a grant or a token names it: `pull`, `promote`, `promote/prod`, ….
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "pull" => Action::Pull,
            "push" => Action::Push,
            "delete" => Action::Delete,
            "promote" => Action::Promote(None),
            "approve" => Action::Approve,
            "admin" => Action::Admin,
            _ => Action::Promote(Some(s.strip_prefix("promote/")?.parse().ok()?)),
        })
    }

    /// Whether holding `self` allows `wanted`.
    pub fn covers(&self, wanted: &Action) -> bool {
        match (self, wanted) {
            (Action::Promote(None), Action::Promote(_)) => true,
            (have, want) => have == want,
        }
    }
}

/// As a grant or a token writes it (`promote/prod` for one alias).
impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())?;
        if let Action::Promote(Some(alias)) = self {
            write!(f, "/{}", alias.as_str())?;
        }
        Ok(())
    }
}

/// One thing a request needs: an action on a repository, or on the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// `None`: the registry itself (its policy, audit log, events).
    pub repo: Option<RepoName>,
    pub action: Action,
}

impl Scope {
    pub fn repo(repo: &RepoName, action: Action) -> Scope {
        Scope {
            repo: Some(repo.clone()),
            action,
        }
    }

    pub fn registry(action: Action) -> Scope {
        Scope { repo: None, action }
    }
}

/// The name of the registry itself in a scope (`registry:berth:admin`).
pub const REGISTRY_SCOPE_NAME: &str = "berth";

/// In the registry token spec's form: `repository:<name>:<action>`, with the
/// alias after the action for a per-alias promotion; `registry:berth:<action>`
/// for the registry itself.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repo {
            Some(repo) => write!(f, "repository:{}:{}", repo.as_str(), self.action),
            None => write!(f, "registry:{REGISTRY_SCOPE_NAME}:{}", self.action),
        }
    }
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No one proven is asking and the scope (or, for the version check, any
    /// access at all) is not open to anyone: answered 401, so that a client
    /// logs in and asks again.
    #[error("authentication required{}", for_scope(.scope))]
    Unauthenticated { scope: Option<Scope> },
    /// A bearer token that does not carry the scope: answered 401 with
    /// `error="insufficient_scope"`, so that a client asks for a token that does.
    #[error("the token does not grant {scope}")]
    InsufficientScope { scope: Scope },
    /// Credentials that prove nothing (a wrong password, a revoked or forged
    /// token): answered 401.
    #[error("{0}")]
    BadCredentials(String),
    /// A registry token past its time: answered 401 for the client to fetch a
    /// new one (the normal end of a token, so not audited).
    #[error("the token has expired")]
    Expired,
    /// Too many failed logins from this client: answered 429 until `retry_after_secs`.
    #[error("too many failed logins; try again in {retry_after_secs} s")]
    TooManyAttempts { retry_after_secs: u64 },
    /// The one asking may not: answered 403.
    #[error("{who} may not {scope}")]
    Forbidden { who: String, scope: Scope },
}

fn for_scope(scope: &Option<Scope>) -> String {
    scope
        .as_ref()
        .map(|s| format!(" for {s}"))
        .unwrap_or_default()
}

impl Denial {
    pub fn scope(&self) -> Option<&Scope> {
        match self {
            Denial::Unauthenticated { scope } => scope.as_ref(),
            Denial::InsufficientScope { scope } | Denial::Forbidden { scope, .. } => Some(scope),
            Denial::BadCredentials(_) | Denial::Expired | Denial::TooManyAttempts { .. } => None,
        }
    }

    /// Whether the answer is a 401 (and so carries a challenge).
    pub fn is_unauthorized(&self) -> bool {
        matches!(
            self,
            Denial::Unauthenticated { .. }
                | Denial::InsufficientScope { .. }
                | Denial::BadCredentials(_)
                | Denial::Expired
        )
    }
}

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Anyone, proven or not.
    Anyone,
    /// Any proven identity.
    Authenticated,
    /// One user of the auth file.
    User(String),
    /// One robot account.
    Robot(String),
    /// The members of a group (users by the auth file, robots by their record).
    Group(String),
}

impl Subject {
    /// `anonymous`, `authenticated`, `user:NAME`, `robot:NAME`, `group:NAME`.
    pub fn parse(s: &str) -> Option<Subject> {
        Some(match s.split_once(':') {
            None if s == "anonymous" => Subject::Anyone,
            None if s == "authenticated" => Subject::Authenticated,
            Some(("user", n)) if !n.is_empty() => Subject::User(n.to_string()),
            Some(("robot", n)) if !n.is_empty() => Subject::Robot(n.to_string()),
            Some(("group", n)) if !n.is_empty() => Subject::Group(n.to_string()),
            _ => return None,
        })
    }

    fn includes(&self, who: &Principal) -> bool {
        match (self, &who.kind) {
            (Subject::Anyone, _) => true,
            (_, PrincipalKind::Anonymous) => false,
            (Subject::Authenticated, _) => true,
            (Subject::User(n), PrincipalKind::User) | (Subject::Robot(n), PrincipalKind::Robot) => {
                who.id == *n
            }
            (Subject::Group(g), _) => who.groups.iter().any(|m| m == g),
            _ => false,
        }
    }
}

/// What kind of identity a request proved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// Nothing proven (a claimed `Berth-Actor` name is still anonymous to the rules).
    Anonymous,
    User,
    Robot,
}

/// Who asks, as the rules see them.
#[derive(Debug, Clone)]
pub struct Principal {
    /// As changes are recorded (a robot's actor name is `robot+NAME`).
    pub actor: Actor,
    pub kind: PrincipalKind,
    /// The user or robot name rules name it by.
    pub id: String,
    pub groups: Vec<String>,
    /// A bearer token's grants: the most the request may do, whatever the
    /// rules would allow (`None`: not a token).
    pub token: Option<std::sync::Arc<[Scope]>>,
}

impl Principal {
    pub fn anonymous(actor: Actor) -> Principal {
        Principal {
            actor,
            kind: PrincipalKind::Anonymous,
            id: String::new(),
            groups: Vec::new(),
            token: None,
        }
    }

    /// Whether the request carried anything that proves who asks (a token,
    /// even an anonymous one, counts: the version check needs no more).
    pub fn presented_credentials(&self) -> bool {
        self.kind != PrincipalKind::Anonymous || self.token.is_some()
    }
}

/// One grant: a subject may take these actions on the repositories a glob
/// matches, or on the registry itself.
#[derive(Debug, Clone)]
pub struct Rule {
    pub subjects: Vec<Subject>,
    /// `None`: the registry itself.
    pub repos: Option<RepoGlob>,
    pub actions: Vec<Action>,
}

impl Rule {
    fn allows(&self, who: &Principal, scope: &Scope) -> bool {
        let place = match (&self.repos, &scope.repo) {
            (Some(glob), Some(repo)) => glob.matches(repo.as_str()),
            (None, None) => true,
            _ => false,
        };
        place
            && self.actions.iter().any(|a| a.covers(&scope.action))
            && self.subjects.iter().any(|s| s.includes(who))
    }
}

/// The access rules in force: everything open (no authentication configured,
/// Berth's behaviour on loopback), or only what a rule grants.
#[derive(Debug, Clone, Default)]
pub enum Access {
    #[default]
    Open,
    Rules(Vec<Rule>),
}

impl Access {
    /// Whether anyone may do anything (no authentication configured).
    pub fn is_open(&self) -> bool {
        matches!(self, Access::Open)
    }

    /// The one check: may `who` have every scope in `needs`? The `Grant` says what
    /// else it may see, for listings that show only what the caller may pull.
    pub fn authorize<'a>(
        &'a self,
        who: &'a Principal,
        needs: &[Scope],
    ) -> Result<Grant<'a>, Denial> {
        let grant = Grant { access: self, who };
        for scope in needs {
            if grant.may(scope) {
                continue;
            }
            return Err(if who.token.is_some() && grant.rules_allow(scope) {
                Denial::InsufficientScope {
                    scope: scope.clone(),
                }
            } else if who.kind != PrincipalKind::Anonymous {
                Denial::Forbidden {
                    who: who.actor.name.clone(),
                    scope: scope.clone(),
                }
            } else {
                Denial::Unauthenticated {
                    scope: Some(scope.clone()),
                }
            });
        }
        Ok(grant)
    }

    /// Of `wanted`, the actions on `repo` (or the registry) that `who` may take:
    /// what a token asked for that scope is downgraded to.
    pub fn allowed<'a>(
        &self,
        who: &Principal,
        repo: Option<&RepoName>,
        wanted: impl IntoIterator<Item = &'a Action>,
    ) -> Vec<Action> {
        let grant = Grant { access: self, who };
        wanted
            .into_iter()
            .filter(|a| {
                grant.rules_allow(&Scope {
                    repo: repo.cloned(),
                    action: (*a).clone(),
                })
            })
            .cloned()
            .collect()
    }
}

/// What an authorized request may do besides what it asked for.
#[derive(Clone, Copy)]
pub struct Grant<'a> {
    access: &'a Access,
    who: &'a Principal,
}

impl Grant<'_> {
    /// Whether the request may have `scope`: the rules allow it, and a token,
    /// if that is how the request proved itself, carries it.
    pub fn may(&self, scope: &Scope) -> bool {
        let in_token = match &self.who.token {
            None => true,
            Some(granted) => granted
                .iter()
                .any(|g| g.repo == scope.repo && g.action.covers(&scope.action)),
        };
        in_token && self.rules_allow(scope)
    }

    /// The rules alone. A registry admin may do anything.
    fn rules_allow(&self, scope: &Scope) -> bool {
        match self.access {
            Access::Open => true,
            Access::Rules(rules) => {
                let admin = Scope::registry(Action::Admin);
                rules
                    .iter()
                    .any(|r| r.allows(self.who, scope) || r.allows(self.who, &admin))
            }
        }
    }

    /// Whether every repository is open to the caller (no rules in force).
    pub fn sees_everything(&self) -> bool {
        matches!(self.access, Access::Open)
    }

    /// Whether a listing may show the repository named `name` (a stored name;
    /// one that does not parse is not shown unless everything is open).
    pub fn may_list(&self, name: &str) -> bool {
        self.sees_everything() || name.parse::<RepoName>().is_ok_and(|r| self.may_pull(&r))
    }

    /// Whether a listing may show `repo`: by the rules, whatever scopes a
    /// token was asked for (a catalog token names no repository).
    pub fn may_pull(&self, repo: &RepoName) -> bool {
        self.rules_allow(&Scope::repo(repo, Action::Pull))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn who(kind: PrincipalKind, id: &str, groups: &[&str]) -> Principal {
        Principal {
            actor: Actor {
                name: id.into(),
                address: None,
                authenticated: kind != PrincipalKind::Anonymous,
            },
            kind,
            id: id.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            token: None,
        }
    }

    fn glob(g: &str) -> Option<RepoGlob> {
        Some(RepoGlob::try_from(g.to_string()).unwrap())
    }

    fn repo(r: &str) -> RepoName {
        r.parse().unwrap()
    }

    fn rule(subjects: &[&str], repos: Option<&str>, actions: &[&str]) -> Rule {
        Rule {
            subjects: subjects
                .iter()
                .map(|s| Subject::parse(s).unwrap())
                .collect(),
            repos: repos.and_then(glob),
            actions: actions.iter().map(|a| Action::parse(a).unwrap()).collect(),
        }
    }

    fn pull(r: &str) -> Scope {
        Scope::repo(&repo(r), Action::Pull)
    }

    fn promote(r: &str, a: &str) -> Scope {
        Scope::repo(&repo(r), Action::Promote(Some(a.parse().unwrap())))
    }

    #[test]
    fn rules_grant_only_what_they_name() {
        let access = Access::Rules(vec![
            rule(&["anonymous"], Some("public/**"), &["pull"]),
            rule(&["user:ci"], Some("team/*"), &["pull", "push", "promote"]),
            rule(&["group:sre"], Some("team/*"), &["promote/prod"]),
            rule(&["user:root"], None, &["admin"]),
        ]);
        let anon = who(PrincipalKind::Anonymous, "", &[]);
        let ci = who(PrincipalKind::User, "ci", &[]);
        let robot_ci = who(PrincipalKind::Robot, "ci", &[]);
        let sre = who(PrincipalKind::User, "bob", &["sre"]);
        let root = who(PrincipalKind::User, "root", &[]);

        assert!(access.authorize(&anon, &[pull("public/a/b")]).is_ok());
        assert_eq!(
            access.authorize(&anon, &[pull("team/m")]).err(),
            Some(Denial::Unauthenticated {
                scope: Some(pull("team/m"))
            })
        );
        assert!(access.authorize(&ci, &[pull("team/m")]).is_ok());
        // A user's grant is not a robot's of the same name.
        assert!(access.authorize(&robot_ci, &[pull("team/m")]).is_err());
        // `*` stays within one segment.
        assert!(access.authorize(&ci, &[pull("team/m/x")]).is_err());
        assert!(
            access
                .authorize(&ci, &[promote("team/m", "staging")])
                .is_ok()
        );
        assert!(access.authorize(&sre, &[promote("team/m", "prod")]).is_ok());
        assert_eq!(
            access
                .authorize(&sre, &[promote("team/m", "staging")])
                .err(),
            Some(Denial::Forbidden {
                who: "bob".into(),
                scope: promote("team/m", "staging")
            })
        );
        // Every scope is needed, and a repository grant is not a registry one.
        assert!(
            access
                .authorize(&ci, &[pull("team/m"), Scope::registry(Action::Admin)])
                .is_err()
        );
        // A registry admin may do anything.
        assert!(
            access
                .authorize(&root, &[pull("any/where"), promote("x", "prod")])
                .is_ok()
        );
        assert!(
            Access::Open
                .authorize(&anon, &[Scope::registry(Action::Admin)])
                .is_ok()
        );
    }

    #[test]
    fn a_token_grants_at_most_its_scopes() {
        let access = Access::Rules(vec![rule(&["user:ci"], Some("team/*"), &["pull", "push"])]);
        let mut ci = who(PrincipalKind::User, "ci", &[]);
        ci.token = Some(vec![pull("team/m")].into());
        assert!(access.authorize(&ci, &[pull("team/m")]).is_ok());
        // Allowed by the rules but not in the token: ask for another token.
        let push = Scope::repo(&repo("team/m"), Action::Push);
        assert_eq!(
            access.authorize(&ci, std::slice::from_ref(&push)).err(),
            Some(Denial::InsufficientScope { scope: push })
        );
        // A token cannot carry more than the rules allow now.
        ci.token = Some(vec![pull("other")].into());
        assert!(matches!(
            access.authorize(&ci, &[pull("other")]).err(),
            Some(Denial::Forbidden { .. })
        ));
        // Downgrade: of pull, push and delete, only what the rules allow.
        let wanted = [Action::Pull, Action::Push, Action::Delete];
        assert_eq!(
            access.allowed(&ci, Some(&repo("team/m")), &wanted),
            vec![Action::Pull, Action::Push]
        );
        let anon = who(PrincipalKind::Anonymous, "", &[]);
        assert!(
            access
                .allowed(&anon, Some(&repo("team/m")), &wanted)
                .is_empty()
        );
    }

    #[test]
    fn scopes_print_as_the_token_spec_writes_them() {
        assert_eq!(
            Scope::repo(&repo("team/m"), Action::Pull).to_string(),
            "repository:team/m:pull"
        );
        assert_eq!(
            promote("m", "prod").to_string(),
            "repository:m:promote/prod"
        );
        assert_eq!(
            Scope::registry(Action::Admin).to_string(),
            "registry:berth:admin"
        );
        for a in [
            "pull",
            "push",
            "delete",
            "promote",
            "promote/prod",
            "approve",
            "admin",
        ] {
            assert_eq!(Action::parse(a).unwrap().to_string(), a);
        }
        for bad in ["", "Pull", "promote/", "promote/../x", "promote/a b", "*"] {
            assert_eq!(Action::parse(bad), None, "{bad:?}");
        }
        for bad in ["", "user:", "group", "robot:", "admin:x", "Anonymous"] {
            assert_eq!(Subject::parse(bad), None, "{bad:?}");
        }
    }
}
