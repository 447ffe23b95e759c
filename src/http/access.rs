//! Who may do what: the scopes a request needs, and the one check of them that
//! the dispatcher makes before any handler runs.

use std::fmt;

use crate::governance::policy::RepoGlob;
use crate::oci::{RepoName, Tag};
use crate::store::Actor;

/// The challenge of a 401. (Basic until the registry token flow exists; then a
/// Bearer challenge naming the realm, service and scope.)
pub const CHALLENGE: &str = "Basic realm=\"berth\"";

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

    /// Whether holding `self` allows `wanted`.
    fn covers(&self, wanted: &Action) -> bool {
        match (self, wanted) {
            (Action::Promote(None), Action::Promote(_)) => true,
            (have, want) => have == want,
        }
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

/// In the registry token spec's form: `repository:<name>:<action>`, with the
/// alias after the action for a per-alias promotion; `registry:berth:<action>`
/// for the registry itself.
impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.repo {
            Some(repo) => write!(f, "repository:{}:{}", repo.as_str(), self.action.name())?,
            None => write!(f, "registry:berth:{}", self.action.name())?,
        }
        if let Action::Promote(Some(alias)) = &self.action {
            write!(f, "/{}", alias.as_str())?;
        }
        Ok(())
    }
}

/// Why a request may not go on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    /// No one proven is asking and the scope is not open to anyone: answered
    /// 401, so that a client logs in and asks again.
    #[error("authentication required for {scope}")]
    Unauthenticated { scope: Scope },
    /// The one asking may not: answered 403.
    #[error("{who} may not {scope}")]
    Forbidden { who: String, scope: Scope },
}

impl Denial {
    pub fn scope(&self) -> &Scope {
        match self {
            Denial::Unauthenticated { scope } | Denial::Forbidden { scope, .. } => scope,
        }
    }
}

/// Who a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// Anyone, proven or not.
    Anyone,
    /// One proven identity.
    Named(String),
}

/// One grant: a subject may take these actions on the repositories a glob
/// matches, or on the registry itself.
#[derive(Debug, Clone)]
pub struct Rule {
    pub subject: Subject,
    /// `None`: the registry itself.
    pub repos: Option<RepoGlob>,
    pub actions: Vec<Action>,
}

impl Rule {
    fn allows(&self, who: &Actor, scope: &Scope) -> bool {
        let subject = match &self.subject {
            Subject::Anyone => true,
            Subject::Named(name) => who.authenticated && &who.name == name,
        };
        let place = match (&self.repos, &scope.repo) {
            (Some(glob), Some(repo)) => glob.matches(repo.as_str()),
            (None, None) => true,
            _ => false,
        };
        subject && place && self.actions.iter().any(|a| a.covers(&scope.action))
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
    /// The one check: may `who` have every scope in `needs`? The `Grant` says what
    /// else it may see, for listings that show only what the caller may pull.
    pub fn authorize<'a>(&'a self, who: &'a Actor, needs: &[Scope]) -> Result<Grant<'a>, Denial> {
        let grant = Grant { access: self, who };
        for scope in needs {
            if !grant.may(scope) {
                return Err(if who.authenticated {
                    Denial::Forbidden {
                        who: who.name.clone(),
                        scope: scope.clone(),
                    }
                } else {
                    Denial::Unauthenticated {
                        scope: scope.clone(),
                    }
                });
            }
        }
        Ok(grant)
    }
}

/// What an authorized request may do besides what it asked for.
#[derive(Clone, Copy)]
pub struct Grant<'a> {
    access: &'a Access,
    who: &'a Actor,
}

impl Grant<'_> {
    pub fn may(&self, scope: &Scope) -> bool {
        match self.access {
            Access::Open => true,
            Access::Rules(rules) => rules.iter().any(|r| r.allows(self.who, scope)),
        }
    }

    /// Whether every repository is open to the caller (no rules in force).
    pub fn sees_everything(&self) -> bool {
        matches!(self.access, Access::Open)
    }

    /// Whether a listing may show `repo`.
    pub fn may_pull(&self, repo: &RepoName) -> bool {
        self.may(&Scope::repo(repo, Action::Pull))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(name: &str, authenticated: bool) -> Actor {
        Actor {
            name: name.into(),
            address: None,
            authenticated,
        }
    }

    fn glob(g: &str) -> Option<RepoGlob> {
        Some(RepoGlob::try_from(g.to_string()).unwrap())
    }

    fn repo(r: &str) -> RepoName {
        r.parse().unwrap()
    }

    #[test]
    fn rules_grant_only_what_they_name() {
        let access = Access::Rules(vec![
            Rule {
                subject: Subject::Anyone,
                repos: glob("public/**"),
                actions: vec![Action::Pull],
            },
            Rule {
                subject: Subject::Named("ci".into()),
                repos: glob("team/*"),
                actions: vec![Action::Pull, Action::Push, Action::Promote(None)],
            },
            Rule {
                subject: Subject::Named("sre".into()),
                repos: glob("team/*"),
                actions: vec![Action::Promote(Some("prod".parse().unwrap()))],
            },
        ]);
        let anon = actor("anonymous", false);
        let ci = actor("ci", true);
        let claimed_ci = actor("ci", false);
        let sre = actor("sre", true);
        let pull = |r: &str| Scope::repo(&repo(r), Action::Pull);
        let promote =
            |r: &str, a: &str| Scope::repo(&repo(r), Action::Promote(Some(a.parse().unwrap())));

        assert!(access.authorize(&anon, &[pull("public/a/b")]).is_ok());
        assert_eq!(
            access.authorize(&anon, &[pull("team/m")]).err(),
            Some(Denial::Unauthenticated {
                scope: pull("team/m")
            })
        );
        assert!(access.authorize(&ci, &[pull("team/m")]).is_ok());
        // A claimed name is not the identity.
        assert!(access.authorize(&claimed_ci, &[pull("team/m")]).is_err());
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
                who: "sre".into(),
                scope: promote("team/m", "staging")
            })
        );
        // Every scope is needed, and a repository grant is not a registry one.
        assert!(
            access
                .authorize(&ci, &[pull("team/m"), Scope::registry(Action::Admin)])
                .is_err()
        );
        assert!(
            Access::Open
                .authorize(&anon, &[Scope::registry(Action::Admin)])
                .is_ok()
        );
    }

    #[test]
    fn scopes_print_as_the_token_spec_writes_them() {
        assert_eq!(
            Scope::repo(&repo("team/m"), Action::Pull).to_string(),
            "repository:team/m:pull"
        );
        assert_eq!(
            Scope::repo(&repo("m"), Action::Promote(Some("prod".parse().unwrap()))).to_string(),
            "repository:m:promote/prod"
        );
        assert_eq!(
            Scope::registry(Action::Admin).to_string(),
            "registry:berth:admin"
        );
    }
}
