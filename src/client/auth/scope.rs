//! Token scopes as the registry token spec writes them: `TYPE:NAME:ACTIONS`
//! (`repository:team/m:pull,push`, `registry:catalog:*`, Berth's
//! `repository:team/m:promote/prod`), several separated by spaces.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// A set of scopes with the actions of one resource merged, in a stable order
/// (so that equal sets are equal cache keys).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Scopes(BTreeMap<(String, String), BTreeSet<String>>);

impl Scopes {
    /// `repository:REPO:ACTIONS`.
    pub fn repo(repo: &str, actions: &[&str]) -> Scopes {
        let mut s = Scopes::default();
        s.add("repository", repo, actions.iter().copied());
        s
    }

    /// Parses the space-separated scopes of a challenge; malformed items are
    /// dropped (a scope the client cannot read is one it cannot ask for).
    pub fn parse(text: &str) -> Scopes {
        let mut s = Scopes::default();
        for item in text.split_ascii_whitespace() {
            let Some((kind, rest)) = item.split_once(':') else {
                continue;
            };
            let Some((name, actions)) = rest.rsplit_once(':') else {
                continue;
            };
            if kind.is_empty() || name.is_empty() {
                continue;
            }
            s.add(kind, name, actions.split(',').filter(|a| !a.is_empty()));
        }
        s
    }

    fn add<'a>(&mut self, kind: &str, name: &str, actions: impl Iterator<Item = &'a str>) {
        self.0
            .entry((kind.to_string(), name.to_string()))
            .or_default()
            .extend(actions.map(str::to_string));
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Both sets, each resource with the actions of both.
    pub fn union(&self, other: &Scopes) -> Scopes {
        let mut out = self.clone();
        for ((kind, name), actions) in &other.0 {
            out.add(kind, name, actions.iter().map(String::as_str));
        }
        out
    }

    /// Whether every action of `wanted` is in `self`.
    pub fn covers(&self, wanted: &Scopes) -> bool {
        wanted
            .0
            .iter()
            .all(|(k, acts)| self.0.get(k).is_some_and(|have| acts.is_subset(have)))
    }

    /// Each scope as one `scope=` value of a token request.
    pub fn items(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|((kind, name), actions)| {
                let a: Vec<&str> = actions.iter().map(String::as_str).collect();
                format!("{kind}:{name}:{}", a.join(","))
            })
            .collect()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.items().join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_merge_cover() {
        let s = Scopes::parse("repository:team/m:push repository:team/m:pull registry:catalog:*");
        assert_eq!(
            s.items(),
            ["registry:catalog:*", "repository:team/m:pull,push"]
        );
        assert!(s.covers(&Scopes::repo("team/m", &["pull"])));
        assert!(!s.covers(&Scopes::repo("team/m", &["delete"])));
        assert!(!s.covers(&Scopes::repo("other", &["pull"])));
        assert!(s.covers(&Scopes::default()));
        let berth = Scopes::parse("repository:team/m:promote/prod registry:berth:admin");
        assert_eq!(
            berth.items(),
            ["registry:berth:admin", "repository:team/m:promote/prod"]
        );
        let u = Scopes::repo("a", &["pull"]).union(&Scopes::repo("a", &["push"]));
        assert_eq!(u.to_string(), "repository:a:pull,push");
        // Malformed items are dropped, not guessed at.
        assert!(Scopes::parse("repository nothing :x:y repository::pull").is_empty());
    }
}
