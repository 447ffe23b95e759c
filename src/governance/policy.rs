//! The promotion policy: a TOML file naming, per repository glob, the protected
//! aliases, the immutable tag patterns, the stage order and each alias's gates,
//! and the webhooks that are told of changes. A policy is parsed and checked
//! whole before it replaces the one in force; every error names its line.

mod build;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use globset::{Glob, GlobBuilder, GlobMatcher};
use regex::Regex;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use toml::Spanned;

use super::signing::VerifyKey;
use crate::store::audit::Action;
use crate::store::tags::{TagPolicy, TagRule};
use build::{GateSpec, build_gate, build_hook};

/// Largest policy text accepted.
pub const MAX_POLICY_BYTES: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("policy {origin}: {message}")]
    Invalid { origin: String, message: String },
}

/// A repository name glob: `*` stays within one path segment, `**` spans several.
#[derive(Debug, Clone)]
pub struct RepoGlob {
    pub text: String,
    matcher: GlobMatcher,
}

impl RepoGlob {
    pub fn matches(&self, repo: &str) -> bool {
        self.matcher.is_match(repo)
    }
}

impl TryFrom<String> for RepoGlob {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        let glob: Glob = GlobBuilder::new(&text)
            .literal_separator(true)
            .build()
            .map_err(|e| format!("invalid repository glob {text:?}: {e}"))?;
        Ok(RepoGlob {
            matcher: glob.compile_matcher(),
            text,
        })
    }
}

impl<'de> Deserialize<'de> for RepoGlob {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        RepoGlob::try_from(String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A tag pattern: a regular expression searched in the tag (anchor it with `^`/`$`).
#[derive(Debug, Clone)]
pub struct TagPattern(pub Regex);

impl<'de> Deserialize<'de> for TagPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Regex::new(&s)
            .map(TagPattern)
            .map_err(|e| serde::de::Error::custom(format!("invalid tag pattern {s:?}: {e}")))
    }
}

/// Which direction of a metric is better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    #[default]
    Higher,
    Lower,
}

/// The kinds of gate, as named in the policy and in reports.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, serde::Serialize,
)]
#[serde(rename_all = "lowercase")]
pub enum GateKind {
    Metric,
    Signature,
    Approval,
    Referrer,
    Webhook,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasSpec {
    #[serde(default)]
    gate: Vec<Spanned<GateSpec>>,
    rollback_skips: Option<Vec<GateKind>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RepoSpec {
    #[serde(rename = "match")]
    pattern: RepoGlob,
    #[serde(default)]
    protected: Vec<String>,
    #[serde(default)]
    immutable: Vec<TagPattern>,
    #[serde(default)]
    stages: Vec<String>,
    #[serde(default)]
    alias: BTreeMap<String, Spanned<AliasSpec>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookSpec {
    name: Option<String>,
    url: Spanned<String>,
    secret: Option<String>,
    secret_env: Option<Spanned<String>>,
    #[serde(default)]
    events: Vec<Spanned<String>>,
    #[serde(default)]
    repositories: Vec<RepoGlob>,
    timeout_secs: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default)]
    repository: Vec<Spanned<RepoSpec>>,
    #[serde(default)]
    webhook: Vec<WebhookSpec>,
}

/// One gate of an alias.
#[derive(Debug, Clone)]
pub struct Gate {
    pub name: String,
    pub check: GateCheck,
}

#[derive(Debug, Clone)]
pub enum GateCheck {
    Metric {
        metric: String,
        better: Better,
        /// Compare with a fixed value instead of a current target.
        threshold: Option<f64>,
        min_delta: f64,
        /// The alias whose target is the baseline (default: the promoted alias).
        against: Option<String>,
    },
    Signature {
        keys: Vec<VerifyKey>,
    },
    Approval {
        count: u32,
        exclude_pusher: bool,
    },
    Referrer {
        artifact_type: String,
        annotations: BTreeMap<String, String>,
    },
    Webhook(Hook),
}

impl GateCheck {
    pub fn kind(&self) -> GateKind {
        match self {
            GateCheck::Metric { .. } => GateKind::Metric,
            GateCheck::Signature { .. } => GateKind::Signature,
            GateCheck::Approval { .. } => GateKind::Approval,
            GateCheck::Referrer { .. } => GateKind::Referrer,
            GateCheck::Webhook(_) => GateKind::Webhook,
        }
    }
}

/// An HTTP endpoint Berth posts to (a webhook gate, or an event receiver).
#[derive(Debug, Clone)]
pub struct Hook {
    pub url: reqwest::Url,
    pub secret: Option<String>,
    pub timeout: std::time::Duration,
}

/// The gates of one protected alias.
#[derive(Debug, Clone, Default)]
pub struct AliasRule {
    pub gates: Vec<Gate>,
    /// Gate kinds a rollback does not evaluate.
    pub rollback_skips: BTreeSet<GateKind>,
}

impl AliasRule {
    pub const DEFAULT_ROLLBACK_SKIPS: [GateKind; 3] =
        [GateKind::Metric, GateKind::Approval, GateKind::Webhook];
}

/// The rule of repositories that match one glob.
#[derive(Debug, Clone)]
pub struct RepoRule {
    pub pattern: RepoGlob,
    pub protected: BTreeSet<String>,
    pub immutable: Vec<TagPattern>,
    pub stages: Vec<String>,
    pub aliases: BTreeMap<String, AliasRule>,
}

/// A receiver of events.
#[derive(Debug, Clone)]
pub struct Webhook {
    /// Names its delivery cursor.
    pub name: String,
    pub hook: Hook,
    /// Actions it is told of; empty for all.
    pub events: BTreeSet<Action>,
    /// Repositories it is told of; empty for all.
    pub repositories: Vec<RepoGlob>,
}

impl Webhook {
    pub fn wants(&self, action: Action, repo: Option<&str>) -> bool {
        (self.events.is_empty() || self.events.contains(&action))
            && (self.repositories.is_empty()
                || repo.is_some_and(|r| self.repositories.iter().any(|g| g.matches(r))))
    }
}

/// A parsed, checked policy.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// The text it was parsed from.
    pub text: String,
    /// SHA-256 of `text`, hex.
    pub sha256: String,
    pub rules: Vec<RepoRule>,
    pub webhooks: Vec<Webhook>,
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

const DEFAULT_HOOK_TIMEOUT_SECS: u64 = 10;

impl Policy {
    /// No rules: Berth as without a policy.
    pub fn empty() -> Policy {
        Policy::parse("", "(none)", None).unwrap_or_default()
    }

    /// Parses and checks a policy. `origin` names it in errors; key files named
    /// by signature gates are read relative to `dir`.
    pub fn parse(text: &str, origin: &str, dir: Option<&Path>) -> Result<Policy, PolicyError> {
        let fail = |message: String| PolicyError::Invalid {
            origin: origin.to_string(),
            message,
        };
        if text.len() > MAX_POLICY_BYTES {
            return Err(fail(format!("larger than {MAX_POLICY_BYTES} bytes")));
        }
        let file: PolicyFile = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!("line {}: ", line_of(text, s.start)));
            fail(format!("{}{}", line.unwrap_or_default(), e.message()))
        })?;
        let at = |span: std::ops::Range<usize>, message: String| {
            fail(format!("line {}: {message}", line_of(text, span.start)))
        };
        let mut rules = Vec::new();
        for spanned in file.repository {
            let span = spanned.span();
            let spec = spanned.into_inner();
            let mut protected: BTreeSet<String> = spec.protected.iter().cloned().collect();
            protected.extend(spec.stages.iter().cloned());
            protected.extend(spec.alias.keys().cloned());
            for tag in &protected {
                if tag.parse::<crate::oci::Tag>().is_err() {
                    return Err(at(span.clone(), format!("{tag:?} is not a valid tag")));
                }
                if let Some(p) = spec.immutable.iter().find(|p| p.0.is_match(tag)) {
                    return Err(at(
                        span.clone(),
                        format!(
                            "alias {tag:?} is protected but also matches immutable pattern {:?}: an alias must be able to move",
                            p.0.as_str()
                        ),
                    ));
                }
            }
            let mut aliases = BTreeMap::new();
            for (alias, aspec) in spec.alias {
                let aspan = aspec.span();
                let aspec = aspec.into_inner();
                let mut gates = Vec::new();
                for g in aspec.gate {
                    let gspan = g.span();
                    let gate = build_gate(g.into_inner(), dir)
                        .map_err(|(span, m)| at(span.unwrap_or(gspan.clone()), m))?;
                    gates.push(gate);
                }
                let mut names = BTreeSet::new();
                if let Some(g) = gates.iter().find(|g| !names.insert(g.name.as_str())) {
                    return Err(at(
                        aspan,
                        format!("two gates of alias {alias:?} are named {:?}", g.name),
                    ));
                }
                aliases.insert(
                    alias,
                    AliasRule {
                        gates,
                        rollback_skips: aspec
                            .rollback_skips
                            .map(|v| v.into_iter().collect())
                            .unwrap_or_else(|| AliasRule::DEFAULT_ROLLBACK_SKIPS.into()),
                    },
                );
            }
            rules.push(RepoRule {
                pattern: spec.pattern,
                protected,
                immutable: spec.immutable,
                stages: spec.stages,
                aliases,
            });
        }
        let mut webhooks = Vec::new();
        let mut names = BTreeSet::new();
        for w in file.webhook {
            let url_span = w.url.span();
            let hook = build_hook(w.url, w.secret, w.secret_env, w.timeout_secs)
                .map_err(|(span, m)| at(span.unwrap_or(url_span.clone()), m))?;
            let mut events = BTreeSet::new();
            for e in &w.events {
                let action = Action::parse(e.get_ref()).ok_or_else(|| {
                    at(
                        e.span(),
                        format!(
                            "unknown event {:?} (one of: {})",
                            e.get_ref(),
                            Action::ALL.map(Action::as_str).join(", ")
                        ),
                    )
                })?;
                events.insert(action);
            }
            let name = w.name.unwrap_or_else(|| hook.url.to_string());
            if !names.insert(name.clone()) {
                return Err(at(url_span, format!("two webhooks are named {name:?}")));
            }
            webhooks.push(Webhook {
                name,
                hook,
                events,
                repositories: w.repositories,
            });
        }
        Ok(Policy {
            text: text.to_string(),
            sha256: hex::encode(Sha256::digest(text.as_bytes())),
            rules,
            webhooks,
        })
    }

    /// The rule for `repo`: the first whose glob matches it.
    pub fn rule_for(&self, repo: &str) -> Option<&RepoRule> {
        self.rules.iter().find(|r| r.pattern.matches(repo))
    }

    /// The gates of `alias` in `repo`, if it has any.
    pub fn alias_rule(&self, repo: &str, alias: &str) -> Option<&AliasRule> {
        self.rule_for(repo).and_then(|r| r.aliases.get(alias))
    }
}

impl TagPolicy for Policy {
    fn rule(&self, repo: &str, tag: &str) -> TagRule {
        let Some(rule) = self.rule_for(repo) else {
            return TagRule::default();
        };
        let requires = rule
            .stages
            .iter()
            .position(|s| s == tag)
            .and_then(|i| i.checked_sub(1))
            .map(|i| rule.stages[i].clone());
        TagRule {
            protected: rule.protected.contains(tag),
            immutable: rule.immutable.iter().any(|p| p.0.is_match(tag)),
            requires,
            source: format!("policy rule for repositories {:?}", rule.pattern.text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[[repository]]
match = "team/*"
protected = ["champion"]
immutable = ["^v[0-9]+"]
stages = ["candidate", "staging", "prod"]

[repository.alias.prod]
rollback_skips = ["metric"]

[[repository.alias.prod.gate]]
type = "metric"
metric = "auc"
min_delta = 0.01

[[repository.alias.prod.gate]]
type = "approval"
count = 2
exclude_pusher = true

[[repository]]
match = "**"
immutable = ["^release-"]

[[webhook]]
url = "http://127.0.0.1:9/hook"
events = ["alias.promote"]
repositories = ["team/*"]
"#;

    #[test]
    fn parses_rules_and_answers_per_tag() {
        let p = Policy::parse(GOOD, "test", None).unwrap();
        let prod = p.rule("team/m", "prod");
        assert!(prod.protected && !prod.immutable);
        assert_eq!(prod.requires.as_deref(), Some("staging"));
        assert_eq!(p.rule("team/m", "candidate").requires, None);
        assert!(p.rule("team/m", "champion").protected);
        assert!(p.rule("team/m", "v1").immutable);
        assert!(!p.rule("team/m", "latest").protected);
        // `*` stays within a segment: team/a/b falls to the catch-all rule.
        assert!(!p.rule("team/a/b", "prod").protected);
        assert!(p.rule("team/a/b", "release-1").immutable);
        assert!(!p.rule("team/m", "release-1").immutable, "first match wins");
        let gates = &p.alias_rule("team/m", "prod").unwrap().gates;
        assert_eq!(gates.len(), 2);
        assert_eq!(gates[0].name, "metric auc");
        assert!(p.webhooks[0].wants(Action::AliasPromote, Some("team/m")));
        assert!(!p.webhooks[0].wants(Action::TagPush, Some("team/m")));
        assert!(!p.webhooks[0].wants(Action::AliasPromote, Some("other")));
        assert_eq!(Policy::empty().rule("a", "prod"), TagRule::default());
    }

    #[test]
    fn errors_name_the_line() {
        let cases = [
            (
                "[[repository]]\nmatch = \"a\"\nprotected = [\"prod\"]\nbogus = 1\n",
                4,
            ),
            ("[[repository]]\nmatch = \"a\"\nimmutable = [\"(\"]\n", 3),
            ("[[repository]]\nmatch = \"a[\"\n", 2),
            (
                "[[repository]]\nmatch = \"a\"\n[repository.alias.prod]\n[[repository.alias.prod.gate]]\ntype = \"nope\"\n",
                5,
            ),
            (
                "[[repository]]\nmatch = \"a\"\n[repository.alias.prod]\n[[repository.alias.prod.gate]]\ntype = \"approval\"\ncount = 0\n",
                6,
            ),
            (
                "[[repository]]\nmatch = \"a\"\n[repository.alias.prod]\n[[repository.alias.prod.gate]]\ntype = \"signature\"\nkeys = [\"/nonexistent.pub\"]\n",
                6,
            ),
            ("\n\n[[webhook]]\nurl = \"ftp://x\"\n", 4),
            ("[[webhook]]\nurl = \"http://x\"\nevents = [\"nope\"]\n", 3),
            (
                "[[repository]]\nmatch = \"a\"\nprotected = [\"v1\"]\nimmutable = [\"^v\"]\n",
                1,
            ),
            ("x = [", 1),
            (
                "[[repository]]\nmatch = \"a\"\n[repository.alias.prod]\n[[repository.alias.prod.gate]]\ntype = \"approval\"\nmetric = \"auc\"\n",
                6,
            ),
        ];
        for (text, line) in cases {
            let e = Policy::parse(text, "p.toml", None).unwrap_err().to_string();
            assert!(e.contains(&format!("line {line}:")), "{text:?} -> {e}");
            assert!(e.starts_with("policy p.toml:"), "{e}");
        }
    }
}
