//! The tag-move part of the `MetaStore` suite: compare-and-swap, the policy's
//! refusals, history, approvals, dry runs, and the audit chain every move extends.

use std::sync::Arc;

use super::{del, put, record};
use crate::oci::Digest;
use crate::store::audit::{AuditQuery, ChainCheck};
use crate::store::tags::{DenyReason, TagPolicy, TagRule};
use crate::store::{
    Action, Actor, Expect, MetaStore, MoveKind, Required, StoreError, TagMove, TagMoved,
};

/// `prod` and `staging` are protected, `prod` takes only what was at `staging`,
/// tags starting with `v` are immutable.
struct TestPolicy;

impl TagPolicy for TestPolicy {
    fn rule(&self, _repo: &str, tag: &str) -> TagRule {
        TagRule {
            protected: matches!(tag, "prod" | "staging"),
            immutable: tag.starts_with('v'),
            requires: (tag == "prod").then(|| "staging".to_string()),
            source: "test policy".into(),
        }
    }
}

fn policy() -> Arc<dyn TagPolicy> {
    Arc::new(TestPolicy)
}

fn alice() -> Actor {
    Actor::local("alice")
}

fn promote(tag: &str, target: &Digest, expect: Expect) -> TagMove {
    let mut m = TagMove::new(
        "t/m",
        tag,
        Some(target.clone()),
        MoveKind::Promote,
        &alice(),
    );
    m.expect = expect;
    m.reason = Some(format!("to {tag}"));
    m
}

fn denied(r: Result<TagMoved, StoreError>) -> DenyReason {
    match r {
        Err(StoreError::TagDenied(d)) => {
            assert_eq!(d.source, "test policy");
            d.reason
        }
        other => panic!("expected a denial, got {other:?}"),
    }
}

async fn head(meta: &dyn MetaStore) -> Option<(u64, String)> {
    meta.audit_head().await.unwrap()
}

pub async fn tag_moves(meta: &dyn MetaStore) {
    let m1 = record(b"tag move one", None);
    let m2 = record(b"tag move two", None);
    let (d1, d2) = (m1.digest.clone(), m2.digest.clone());
    put(meta, "t/m", &m1, None, None, Required::NONE)
        .await
        .unwrap();
    put(meta, "t/m", &m2, None, None, Required::NONE)
        .await
        .unwrap();

    // An immutable tag is set once; setting it to the same target again is no move.
    let v1 = TagMove::new("t/m", "v1", Some(d1.clone()), MoveKind::Push, &alice());
    let moved = meta.move_tag(v1.clone(), policy()).await.unwrap();
    assert_eq!(moved.previous, None);
    let entry = moved.entry.expect("a first set is recorded");
    assert_eq!(
        (entry.kind, entry.target.as_ref()),
        (MoveKind::Push, Some(&d1))
    );
    assert_eq!(head(meta).await.map(|h| h.0), Some(entry.seq));
    assert_eq!(
        head(meta).await.map(|h| h.1),
        Some(entry.audit_hash.clone())
    );
    let before = head(meta).await;
    let moved = meta.move_tag(v1, policy()).await.unwrap();
    assert_eq!((moved.previous.as_ref(), moved.entry), (Some(&d1), None));
    assert_eq!(head(meta).await, before, "a no-op move records nothing");
    let mut onto = TagMove::new("t/m", "v1", Some(d2.clone()), MoveKind::Push, &alice());
    assert_eq!(
        denied(meta.move_tag(onto.clone(), policy()).await),
        DenyReason::Immutable
    );
    onto.kind = MoveKind::Promote;
    assert_eq!(
        denied(meta.move_tag(onto, policy()).await),
        DenyReason::Immutable
    );
    let rm = TagMove::new("t/m", "v1", None, MoveKind::Delete, &alice());
    assert_eq!(
        denied(meta.move_tag(rm, policy()).await),
        DenyReason::Immutable
    );
    // Deleting the manifest an immutable tag holds is refused whole.
    assert!(matches!(
        meta.delete_manifest("t/m", &d1, &alice(), policy()).await,
        Err(StoreError::TagDenied(_))
    ));
    assert!(meta.manifest("t/m", &d1).await.unwrap().is_some());
    assert_eq!(
        meta.resolve_tag("t/m", "v1").await.unwrap(),
        Some(d1.clone())
    );
    assert_eq!(head(meta).await, before, "refusals record nothing");
    assert_eq!(
        meta.tags_of("t/m", &d1).await.unwrap(),
        vec!["v1".to_string()]
    );

    // A protected alias moves only by promotion, and prod only after staging.
    let push = TagMove::new("t/m", "prod", Some(d1.clone()), MoveKind::Push, &alice());
    assert_eq!(
        denied(meta.move_tag(push, policy()).await),
        DenyReason::Protected
    );
    assert_eq!(
        denied(
            meta.move_tag(promote("prod", &d1, Expect::Any), policy())
                .await
        ),
        DenyReason::Stage {
            requires: "staging".into()
        }
    );
    let staged = meta
        .move_tag(promote("staging", &d1, Expect::Absent), policy())
        .await
        .unwrap();
    let staged = staged.entry.expect("recorded");
    assert_eq!(staged.reason.as_deref(), Some("to staging"));

    // Compare-and-swap: a stale expectation fails and says what is there.
    for stale in [Expect::Absent, Expect::Target(d2.clone())] {
        match meta
            .move_tag(promote("staging", &d2, stale), policy())
            .await
        {
            Err(StoreError::TagStale { tag, current }) => {
                assert_eq!((tag.as_str(), current), ("staging", Some(d1.clone())));
            }
            other => panic!("expected stale, got {other:?}"),
        }
    }
    let moved = meta
        .move_tag(
            promote("staging", &d2, Expect::Target(d1.clone())),
            policy(),
        )
        .await
        .unwrap();
    assert_eq!(moved.previous, Some(d1.clone()));
    meta.move_tag(promote("prod", &d1, Expect::Absent), policy())
        .await
        .unwrap();

    // A move to a manifest the repository does not hold writes nothing.
    let ghost = Digest::sha256_of(b"not here");
    let before = head(meta).await;
    assert!(matches!(
        meta.move_tag(promote("staging", &ghost, Expect::Any), policy()).await,
        Err(StoreError::ReferenceMissing(d)) if d == ghost
    ));
    assert_eq!(head(meta).await, before);

    // A dry run checks everything and writes nothing.
    let mut dry = promote("prod", &d2, Expect::Target(d1.clone()));
    dry.dry_run = true;
    let moved = meta.move_tag(dry, policy()).await.unwrap();
    assert_eq!((moved.previous.as_ref(), moved.entry), (Some(&d1), None));
    assert_eq!(
        meta.resolve_tag("t/m", "prod").await.unwrap(),
        Some(d1.clone())
    );
    assert_eq!(head(meta).await, before);

    // Approvals a move names must be there and unused; it uses them up.
    meta.approve("t/m", &d2, "prod", &Actor::local("bob"), Some("lgtm"))
        .await
        .unwrap();
    let with = |who: &[&str]| {
        let mut m = promote("prod", &d2, Expect::Target(d1.clone()));
        m.approvals = who.iter().map(|s| s.to_string()).collect();
        m
    };
    assert!(matches!(
        meta.move_tag(with(&["bob", "carol"]), policy()).await,
        Err(StoreError::ApprovalGone(who)) if who == "carol"
    ));
    let to_prod = meta.move_tag(with(&["bob"]), policy()).await.unwrap();
    let to_prod = to_prod.entry.expect("recorded");
    let approvals = meta.approvals("t/m", &d2).await.unwrap();
    assert_eq!(approvals.len(), 1);
    assert_eq!(approvals[0].used_by, Some(to_prod.seq));
    let mut again = with(&["bob"]);
    again.expect = Expect::Target(d2.clone());
    again.target = Some(d1.clone());
    assert!(matches!(
        meta.move_tag(again, policy()).await,
        Err(StoreError::ApprovalGone(_))
    ));

    // History (newest first, paged), time travel, targets, promoted tags.
    let (hist, more) = meta.tag_history("t/m", "prod", None, 10).await.unwrap();
    assert!(!more);
    let targets: Vec<_> = hist.iter().map(|h| h.target.clone()).collect();
    assert_eq!(targets, vec![Some(d2.clone()), Some(d1.clone())]);
    assert_eq!(hist[0].previous, Some(d1.clone()));
    let (page, more) = meta.tag_history("t/m", "prod", None, 1).await.unwrap();
    assert!(more);
    let (rest, more) = meta
        .tag_history("t/m", "prod", Some(page[0].seq), 10)
        .await
        .unwrap();
    assert_eq!((rest, more), (hist[1..].to_vec(), false));
    let at = meta.tag_at("t/m", "prod", hist[1].time_ms).await.unwrap();
    assert!(at.is_some_and(|e| e.seq <= hist[0].seq));
    assert_eq!(meta.tag_at("t/m", "prod", 0).await.unwrap(), None);
    assert!(meta.was_target("t/m", "staging", &d1).await.unwrap());
    assert!(!meta.was_target("t/m", "prod", &ghost).await.unwrap());
    let mut promoted = meta.promoted_tags("t/m").await.unwrap();
    promoted.sort();
    assert_eq!(promoted, vec!["prod".to_string(), "staging".to_string()]);
    let state = meta.tag_state("t/m", "prod").await.unwrap().expect("set");
    assert_eq!(
        (state.target, state.last),
        (d2.clone(), Some(hist[0].clone()))
    );

    // Each promotion waits for its attestation until one is recorded.
    let pending = meta.pending_attestations().await.unwrap();
    assert!(
        pending
            .iter()
            .any(|p| p.seq == to_prod.seq && p.tag == "prod")
    );
    let att = Digest::sha256_of(b"attestation");
    let p = pending
        .iter()
        .find(|p| p.seq == to_prod.seq)
        .expect("pending");
    meta.attested(p, &att).await.unwrap();
    assert!(
        !meta
            .pending_attestations()
            .await
            .unwrap()
            .iter()
            .any(|p| p.seq == to_prod.seq)
    );
    let (hist, _) = meta.tag_history("t/m", "prod", None, 1).await.unwrap();
    assert_eq!(hist[0].attestation, Some(att));

    // An alias comes off only through the promotion API.
    let rm = TagMove::new("t/m", "staging", None, MoveKind::Delete, &alice());
    assert_eq!(
        denied(meta.move_tag(rm, policy()).await),
        DenyReason::Protected
    );
    let unset = TagMove::new("t/m", "staging", None, MoveKind::Unset, &alice());
    let moved = meta.move_tag(unset, policy()).await.unwrap();
    assert_eq!(moved.previous, Some(d2.clone()));
    assert_eq!(meta.resolve_tag("t/m", "staging").await.unwrap(), None);
    // `If-Match: *`: the alias must be there.
    assert!(matches!(
        meta.move_tag(promote("staging", &d1, Expect::Present), policy())
            .await,
        Err(StoreError::TagStale { current: None, .. })
    ));
    assert_eq!(
        meta.tags_of("t/m", &d2).await.unwrap(),
        vec!["prod".to_string()]
    );

    // The log holds every move, in order, with intact links; filters by action.
    let all = meta
        .audit_page(&AuditQuery::default(), 0, 10_000)
        .await
        .unwrap();
    let mut chain = ChainCheck::new();
    for (_, line) in &all.lines {
        chain.push(line).expect("chain holds");
    }
    assert_eq!(chain.head(), head(meta).await.as_ref());
    let promotions = AuditQuery {
        repo: Some("t/m".into()),
        action: Some(Action::AliasPromote),
        ..AuditQuery::default()
    };
    let page = meta.audit_page(&promotions, 0, 100).await.unwrap();
    let seqs: Vec<u64> = page.lines.iter().map(|(r, _)| r.seq).collect();
    assert_eq!(seqs.len(), 4, "staging twice, prod twice: {seqs:?}");
    assert!(page.lines.iter().all(|(r, _)| r.actor.name == "alice"));

    // Without a policy, the manifest goes with its tags, each move recorded.
    for d in [&d1, &d2] {
        assert!(del(meta, "t/m", d).await.unwrap().is_some());
    }
    assert_eq!(meta.resolve_tag("t/m", "prod").await.unwrap(), None);
    assert_eq!(meta.resolve_tag("t/m", "v1").await.unwrap(), None);
    let (hist, _) = meta.tag_history("t/m", "prod", None, 1).await.unwrap();
    assert_eq!(
        (hist[0].kind, hist[0].target.as_ref()),
        (MoveKind::Cascade, None)
    );
}
