//! Promotion as a signed tag move: gates, then one compare-and-swap tag move
//! (audited, with history), then the registry's attestation of it. Rollback is
//! the same move back to an earlier target. Aliases are read here too.

use super::{Registry, RegistryError, Result};
use crate::governance::gates::{self, Candidate, GateContext, GateReport};
use crate::oci::{Digest, Reference};
use crate::store::{Actor, Expect, HistoryEntry, MoveKind, TagMove};

/// How often a promotion without a precondition re-evaluates its gates when the
/// alias moved under it.
const ATTEMPTS: usize = 3;

/// A promotion to ask for.
#[derive(Debug, Clone)]
pub struct PromotionRequest {
    pub repo: String,
    pub alias: String,
    /// The version: a tag or a digest.
    pub target: Reference,
    pub reason: Option<String>,
    /// `Expect::Any` when the client set no precondition.
    pub expect: Expect,
    pub dry_run: bool,
    pub actor: Actor,
}

/// An alias as the alias API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasView {
    pub repo: String,
    pub alias: String,
    pub target: Digest,
    /// Every tag pointing at the target (the alias among them).
    pub tags: Vec<String>,
    /// The move that set it (`None` for a tag set before history was kept).
    pub last: Option<HistoryEntry>,
    /// The policy protects it.
    pub protected: bool,
}

/// The outcome of a promotion or rollback.
#[derive(Debug, Clone)]
pub struct Promotion {
    /// The alias after the move (or as it would be, on a dry run).
    pub alias: AliasView,
    pub previous: Option<Digest>,
    pub report: GateReport,
    pub dry_run: bool,
    /// False if the alias already pointed at the target.
    pub changed: bool,
}

impl Registry {
    fn gate_context(&self) -> GateContext<'_> {
        GateContext {
            meta: self.meta.as_ref(),
            blobs: self.blobs.as_ref(),
            http: &self.governance.http,
        }
    }

    /// Checks a precondition before any gate runs (the move checks it again).
    fn check_expectation(tag: &str, expect: &Expect, current: Option<&Digest>) -> Result<()> {
        if expect.holds(current) {
            Ok(())
        } else {
            Err(RegistryError::TagStale {
                tag: tag.to_string(),
                current: current.cloned(),
            })
        }
    }

    /// Promotes a version to an alias through the alias's gates.
    pub async fn promote(&self, req: &PromotionRequest) -> Result<Promotion> {
        let target = self.version_digest(&req.repo, &req.target).await?;
        self.gated_move(req, &target, MoveKind::Promote).await
    }

    /// Moves `req.alias` back to an earlier target: `to`, or the target before
    /// the current one. Gates of the kinds the policy skips on rollback (by
    /// default metric, approval and webhook) are not evaluated.
    pub async fn rollback(
        &self,
        req: &PromotionRequest,
        to: Option<&Reference>,
    ) -> Result<Promotion> {
        let (repo, alias) = (req.repo.as_str(), req.alias.as_str());
        let state = self
            .meta
            .tag_state(repo, alias)
            .await?
            .ok_or_else(|| RegistryError::AliasUnknown(format!("{repo}:{alias}")))?;
        let target = match to {
            Some(r) => self.version_digest(repo, r).await?,
            None => {
                let previous = state.last.as_ref().and_then(|e| e.previous.clone());
                let previous = previous.ok_or_else(|| {
                    RegistryError::Invalid(format!(
                        "alias {alias} of {repo} has no earlier target to roll back to"
                    ))
                })?;
                self.version_digest(repo, &Reference::Digest(previous))
                    .await?
            }
        };
        if target == state.target {
            return Err(RegistryError::Invalid(format!(
                "alias {alias} of {repo} already points at {target}"
            )));
        }
        if !self.meta.was_target(repo, alias, &target).await? {
            return Err(RegistryError::Invalid(format!(
                "{target} was never the target of {alias}: a rollback returns to an earlier target; use a promotion instead"
            )));
        }
        let mut req = req.clone();
        if matches!(req.expect, Expect::Any | Expect::Present) {
            // A rollback is decided against the target seen now.
            req.expect = Expect::Target(state.target.clone());
        }
        self.gated_move(&req, &target, MoveKind::Rollback).await
    }

    async fn gated_move(
        &self,
        req: &PromotionRequest,
        target: &Digest,
        kind: MoveKind,
    ) -> Result<Promotion> {
        let (repo, alias) = (req.repo.as_str(), req.alias.as_str());
        for _ in 0..ATTEMPTS {
            let current = self.meta.resolve_tag(repo, alias).await?;
            Self::check_expectation(alias, &req.expect, current.as_ref())?;
            let policy = self.governance.policy();
            let evaluation = gates::evaluate(
                &self.gate_context(),
                policy.alias_rule(repo, alias),
                &Candidate {
                    repo,
                    alias,
                    digest: target,
                    current: current.as_ref(),
                    rollback: kind == MoveKind::Rollback,
                },
            )
            .await?;
            let report = evaluation.report;
            if !report.passed {
                return Err(RegistryError::GateFailed(Box::new(report)));
            }
            let mut m = TagMove::new(repo, alias, Some(target.clone()), kind, &req.actor);
            m.expect = match &current {
                Some(c) => Expect::Target(c.clone()),
                None => Expect::Absent,
            };
            m.reason = req.reason.clone();
            m.report = serde_json::to_value(&report).ok();
            m.approvals = evaluation.approvals;
            m.dry_run = req.dry_run;
            let moved = match self.meta.move_tag(m, policy.clone()).await {
                Ok(moved) => moved,
                // Moved while the gates ran: decide again on the new state.
                Err(crate::store::StoreError::TagStale { .. }) if req.expect.moves_with_it() => {
                    continue;
                }
                Err(crate::store::StoreError::ApprovalGone(_)) if req.expect.moves_with_it() => {
                    continue;
                }
                // Deleted while the gates ran.
                Err(crate::store::StoreError::ReferenceMissing(d)) => {
                    return Err(RegistryError::ModelVersionUnknown(d.to_string()));
                }
                Err(e) => return Err(e.into()),
            };
            let changed = current.as_ref() != Some(target);
            let mut last = moved.entry.clone();
            if let Some(entry) = &mut last {
                entry.attestation = self.attest_move(repo, alias, entry).await;
            }
            let mut view = if req.dry_run {
                self.alias_view_of(repo, alias, target.clone(), None, None)
                    .await?
            } else {
                self.alias(repo, alias).await?
            };
            if last.is_some() {
                view.last = last;
            }
            return Ok(Promotion {
                alias: view,
                previous: moved.previous,
                report,
                dry_run: req.dry_run,
                changed,
            });
        }
        Err(RegistryError::Conflict(format!(
            "alias {alias} of {repo} kept moving while its gates were evaluated"
        )))
    }

    /// Removes an alias through the promotion API (protected aliases included;
    /// immutable tags never). Returns the target it had.
    pub async fn unset_alias(
        &self,
        repo: &str,
        alias: &str,
        expect: Expect,
        reason: Option<String>,
        actor: &Actor,
    ) -> Result<Digest> {
        let mut m = TagMove::new(repo, alias, None, MoveKind::Unset, actor);
        m.expect = expect;
        m.reason = reason;
        let moved = self.meta.move_tag(m, self.governance.tag_policy()).await?;
        moved
            .previous
            .ok_or_else(|| RegistryError::AliasUnknown(format!("{repo}:{alias}")))
    }

    /// The view of `alias` pointing at `target`, with the tags there
    /// (`tags`, or read; the alias counted among them).
    async fn alias_view_of(
        &self,
        repo: &str,
        alias: &str,
        target: Digest,
        tags: Option<Vec<String>>,
        last: Option<HistoryEntry>,
    ) -> Result<AliasView> {
        let mut tags = match tags {
            Some(t) => t,
            None => self.meta.tags_of(repo, &target).await?,
        };
        if !tags.iter().any(|t| t == alias) {
            tags.push(alias.to_string());
            tags.sort();
        }
        Ok(AliasView {
            repo: repo.to_string(),
            alias: alias.to_string(),
            target,
            tags,
            last,
            protected: crate::store::TagPolicy::rule(
                self.governance.policy().as_ref(),
                repo,
                alias,
            )
            .protected,
        })
    }

    /// An alias (any tag) with its target, the tags sharing it and its last move:
    /// the hot path of every deploy, one read transaction.
    pub async fn alias(&self, repo: &str, alias: &str) -> Result<AliasView> {
        let state = self
            .meta
            .tag_state(repo, alias)
            .await?
            .ok_or_else(|| RegistryError::AliasUnknown(format!("{repo}:{alias}")))?;
        self.alias_view_of(repo, alias, state.target, Some(state.tags), state.last)
            .await
    }

    /// The aliases of `repo`: the tags its policy rule protects that are set,
    /// and every tag last moved by a promotion or rollback.
    pub async fn aliases(&self, repo: &str) -> Result<Vec<AliasView>> {
        let mut names: std::collections::BTreeSet<String> =
            self.meta.promoted_tags(repo).await?.into_iter().collect();
        if let Some(rule) = self.governance.policy().rule_for(repo) {
            names.extend(rule.protected.iter().cloned());
        }
        let mut out = Vec::new();
        for name in names {
            match self.alias(repo, &name).await {
                Ok(v) => out.push(v),
                Err(RegistryError::AliasUnknown(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// An alias's history, newest first, before sequence number `before`.
    pub async fn alias_history(
        &self,
        repo: &str,
        alias: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<(Vec<HistoryEntry>, bool)> {
        let limit = limit.clamp(1, self.limits.max_page);
        Ok(self.meta.tag_history(repo, alias, before, limit).await?)
    }

    /// What the alias pointed at, at `at_ms`: the move in force then.
    pub async fn alias_at(&self, repo: &str, alias: &str, at_ms: i64) -> Result<HistoryEntry> {
        self.meta
            .tag_at(repo, alias, at_ms)
            .await?
            .filter(|e| e.target.is_some())
            .ok_or_else(|| RegistryError::AliasUnknown(format!("{repo}:{alias} at that time")))
    }
}
