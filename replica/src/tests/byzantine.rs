//! Byzantine behaviours (`crate::byzantine`) run inside the deterministic cluster.
//!
//! Each behaviour gets a test showing that it acted and had the effect it aims for (the
//! rejections it causes at honest replicas, the view change it forces), and that within the
//! budget (one Byzantine replica of n = 4, f = 1) the honest replicas stay safe (their ledgers
//! agree, every client proof holds in them) and every request completes. One test goes beyond
//! the budget and shows the harm: two colluding equivocators make honest ledgers diverge.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use history::LedgerEvent;

use super::recovery::{
    assert_common_slots_agree, assert_every_request_completed, assert_histories_agree,
    assert_proofs_hold,
};
use crate::byzantine::{Behaviour, ByzantineConfig, Hook};
use crate::core::message::decode;
use crate::core::{Config, Digest, Message, Protocol, ReplicaId, Seq, Transmit, View};
use crate::sim::{Cluster, STEPS_MAX_DEFAULT, SimOptions};

/// A cluster whose replicas in `byzantine` run a hook with those behaviours switched on.
pub(super) fn cluster_with(
    config: Config,
    seed: u64,
    requests: u64,
    byzantine: &[(u8, &[Behaviour])],
) -> Cluster {
    cluster_with_options(SimOptions::new(config, seed, requests), byzantine)
}

/// [`cluster_with`] on a cluster built from `options`.
fn cluster_with_options(options: SimOptions, byzantine: &[(u8, &[Behaviour])]) -> Cluster {
    let (config, seed) = (options.config.clone(), options.seed);
    let mut cluster = Cluster::new(options);
    let public = Arc::new(cluster.keys().public.clone());
    let colluders: Vec<u8> = byzantine.iter().map(|&(id, _)| id).collect();
    for &(id, behaviours) in byzantine {
        let secrets = cluster.keys().replicas[usize::from(id)].clone();
        let hook = Hook::new(
            config.clone(),
            secrets,
            public.clone(),
            ByzantineConfig { seed: seed * 16 + u64::from(id), colluders: colluders.clone() },
        );
        cluster.set_byzantine(ReplicaId(id), hook);
        assert!(cluster.behave(ReplicaId(id), behaviours), "replica {id} has a hook");
    }
    cluster
}

/// n = 4 with replica `id` Byzantine.
fn one_byzantine(
    protocol: Protocol,
    seed: u64,
    requests: u64,
    id: u8,
    behaviours: &[Behaviour],
) -> Cluster {
    cluster_with(Config::new(protocol, 4, 16), seed, requests, &[(id, behaviours)])
}

fn honest_except(n: u8, byzantine: &[u8]) -> Vec<ReplicaId> {
    (0..n).filter(|id| !byzantine.contains(id)).map(ReplicaId).collect()
}

/// Runs the workload to the end and asserts that the honest replicas are safe: every request
/// completed once, their ledgers agree (after a short quiet period for stragglers), and every
/// client proof holds in them.
fn assert_safe_and_live(cluster: &mut Cluster, requests: u64, honest: &[ReplicaId]) {
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    assert_every_request_completed(cluster, requests as usize);
    assert_common_slots_agree(cluster, honest);
    assert_proofs_hold(cluster, honest);
}

/// Like [`assert_safe_and_live`], and every honest replica ends at the same head.
fn assert_safe_live_and_caught_up(cluster: &mut Cluster, requests: u64, honest: &[ReplicaId]) {
    assert_safe_and_live(cluster, requests, honest);
    assert_histories_agree(cluster, honest);
}

/// The sum over `replicas` of rejections of `kind`.
fn rejected(cluster: &Cluster, replicas: &[ReplicaId], kind: &str) -> u64 {
    replicas.iter().map(|&id| cluster.replica(id).counters().rejected(kind)).sum()
}

fn acted(cluster: &Cluster, id: u8, behaviour: Behaviour) -> u64 {
    cluster.byzantine(ReplicaId(id)).expect("a Byzantine replica").acted(behaviour)
}

fn views_entered(cluster: &Cluster, replicas: &[ReplicaId]) -> Vec<u64> {
    replicas.iter().map(|&id| cluster.replica(id).counters().views_entered).collect()
}

fn debug_rejections(cluster: &Cluster, replicas: &[ReplicaId]) -> String {
    replicas
        .iter()
        .map(|&id| format!("{id}: {:?}", cluster.replica(id).counters().rejected))
        .collect::<Vec<_>>()
        .join("; ")
}

// --------------------------------------------------------------------------------------------
// equivocate

/// Equivocating primary within budget (PROTOCOL §3.1 step 3, §9.4).
///
/// Setup: n = 4, replica 0 (primary of view 0) sends a reversed batch for every slot to a
/// seeded subset of the backups (and, PoE-MAC, its SUPPORT for that batch; PoE-TS, a CERTIFY
/// combined from the shares of that side).
/// Test: it equivocated; the honest replicas refused the other side's votes or replaced the
/// primary; their ledgers agree and every request completes.
#[test]
fn byzantine_equivocating_primary_poe_ts() {
    assert_equivocating_primary_safe(Protocol::PoeTs, 201);
}

/// The same in PoE-MAC, where every honest replica sees both sides' SUPPORTs.
#[test]
fn byzantine_equivocating_primary_poe_mac() {
    assert_equivocating_primary_safe(Protocol::PoeMac, 202);
}

pub(super) fn assert_equivocating_primary_safe(protocol: Protocol, seed: u64) {
    let requests = 300;
    let mut cluster = one_byzantine(protocol, seed, requests, 0, &[Behaviour::Equivocate]);
    let honest = honest_except(4, &[0]);
    let supports = record_supports(&mut cluster, &honest);
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 0, Behaviour::Equivocate) > 0, "the primary equivocated");
    let mismatches = rejected(&cluster, &honest, "digest_mismatch");
    let views = views_entered(&cluster, &honest);
    assert!(views.iter().all(|&entered| entered >= 1), "the primary was replaced: {views:?}");
    assert!(split_slots(&supports.borrow()) > 0, "honest replicas supported different batches");
    if protocol == Protocol::PoeMac {
        assert!(mismatches > 0, "honest replicas refused the other side's supports");
    }
}

/// What each honest replica supported, per (view, seq).
type Supported = Rc<RefCell<BTreeMap<(View, Seq), BTreeMap<ReplicaId, Digest>>>>;

/// Records every SUPPORT the replicas of `honest` send.
fn record_supports(cluster: &mut Cluster, honest: &[ReplicaId]) -> Supported {
    let supported: Supported = Rc::default();
    for &id in honest {
        let seen = supported.clone();
        cluster.set_outbound_hook(
            id,
            Box::new(move |transmit| {
                if let Transmit::Replica { envelope, .. } = &transmit
                    && let Ok(Message::Support(support)) = decode(&envelope.payload)
                    && support.replica == id
                {
                    seen.borrow_mut()
                        .entry((support.view, support.seq))
                        .or_default()
                        .insert(id, support.digest);
                }
                vec![transmit]
            }),
        );
    }
    supported
}

/// The slots at which two honest replicas supported different digests.
fn split_slots(supported: &BTreeMap<(View, Seq), BTreeMap<ReplicaId, Digest>>) -> usize {
    supported
        .values()
        .filter(|by_replica| {
            let digests: BTreeSet<&Digest> = by_replica.values().collect();
            digests.len() > 1
        })
        .count()
}

/// A joint equivocation within budget at n = 5 (f = 1, nf = 4 ≠ 2f + 1 = 3).
///
/// Setup: n = 5 PoE-TS, replica 0 (primary) equivocates to two halves of the honest replicas,
/// each side a different request set.
/// Test: two honest replicas supported different batches for one slot (the attack acted), yet
/// neither side reached nf = 4 alone: ledgers agree, proofs hold, every request completes.
#[test]
fn byzantine_equivocation_to_honest_halves_within_budget_n5() {
    for protocol in [Protocol::PoeTs, Protocol::PoeMac] {
        let requests = 200;
        let config = Config::new(protocol, 5, 16);
        let mut cluster = cluster_with(config, 205, requests, &[(0, &[Behaviour::Equivocate])]);
        let honest = honest_except(5, &[0]);
        let supports = record_supports(&mut cluster, &honest);
        assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
        assert!(split_slots(&supports.borrow()) > 0, "{protocol:?}: the halves were split");
    }
}

/// Beyond budget in PoE-TS: the Byzantine primary sends both sides to its accomplice, which
/// share-signs both, so each half of the honest replicas gets a valid threshold certificate
/// for a different batch at the same (view, seq) (PROTOCOL §3.1, Proposition 3.2 needs n > 3f).
#[test]
fn byzantine_joint_equivocation_beyond_budget_diverges_poe_ts() {
    let config = Config::new(Protocol::PoeTs, 4, 16);
    let both: &[Behaviour] = &[Behaviour::Equivocate];
    let mut cluster = cluster_with(config, 204, 400, &[(0, both), (3, both)]);
    let diverged = |cluster: &Cluster| divergence(cluster, ReplicaId(1), ReplicaId(2)).is_some();
    cluster.run_until(2_000_000, diverged).expect("the honest ledgers diverge");
    let (seq, ours, theirs) = divergence(&cluster, ReplicaId(1), ReplicaId(2)).expect("diverged");
    assert_ne!(ours, theirs, "different batches at seq {seq}");
    let primary = cluster.byzantine(ReplicaId(0)).expect("hook");
    assert!(primary.counter("equivocate.certified") > 0, "the other side was certified");
    assert!(cluster.byzantine(ReplicaId(3)).expect("hook").counter("equivocate.supported") > 0);
}

/// `hide-evidence` within budget: a Byzantine backup's VC-REQUESTs carry no certificates, yet
/// quorum intersection keeps every promised slot (PROTOCOL §5.3 step 4).
///
/// Setup: n = 4 PoE-MAC, replica 3 hides evidence; the primary is cut off twice, so two view
/// changes happen with slots certified before each.
/// Test: replica 3 hid evidence; honest ledgers agree and every proof holds.
#[test]
fn byzantine_hidden_evidence_within_budget() {
    let requests = 2000;
    let mut cluster = one_byzantine(Protocol::PoeMac, 206, requests, 3, &[Behaviour::HideEvidence]);
    let honest = honest_except(4, &[3]);
    for primary in [0u8, 1] {
        cluster.run_for(Duration::from_millis(30));
        cluster.isolate(ReplicaId(primary), true);
        let next = View(u64::from(primary) + 1);
        cluster
            .run_until(STEPS_MAX_DEFAULT, |cluster| cluster.replica(ReplicaId(2)).view() >= next)
            .expect("the view changes");
        cluster.isolate(ReplicaId(primary), false);
    }
    assert_safe_and_live(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 3, Behaviour::HideEvidence) > 0, "evidence was hidden");
}

/// Beyond budget: two colluding Byzantine replicas break agreement (why n > 3f matters).
///
/// Setup: n = 4 PoE-MAC; replica 0 (primary) equivocates and replica 3 (a backup) supports
/// every digest it sees supported for a slot, so each side of an equivocation can reach nf = 3
/// supports: the primary's, one honest replica's and replica 3's.
/// Test: honest replicas 1 and 2 execute different batches at the same slot.
#[test]
fn byzantine_colluding_equivocators_diverge_poe_mac() {
    let config = Config::new(Protocol::PoeMac, 4, 16);
    let both: &[Behaviour] = &[Behaviour::Equivocate];
    let mut cluster = cluster_with(config, 203, 400, &[(0, both), (3, both)]);
    let diverged = |cluster: &Cluster| divergence(cluster, ReplicaId(1), ReplicaId(2)).is_some();
    cluster.run_until(2_000_000, diverged).expect("the honest ledgers diverge");
    let (seq, ours, theirs) = divergence(&cluster, ReplicaId(1), ReplicaId(2)).expect("diverged");
    assert_ne!(ours, theirs, "different batches at seq {seq}");
    assert!(cluster.byzantine(ReplicaId(3)).expect("hook").counter("equivocate.supported") > 0);
}

/// The first slot at which `a` and `b` executed different batches (digests of each).
pub(super) fn divergence(
    cluster: &Cluster,
    a: ReplicaId,
    b: ReplicaId,
) -> Option<(u64, history::Digest, history::Digest)> {
    let executed = |id: ReplicaId| {
        cluster.events[id.index()]
            .iter()
            .filter_map(|event| match event {
                LedgerEvent::Execute(execute) => Some((execute.seq, execute.batch_digest)),
                _ => None,
            })
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let theirs = executed(b);
    executed(a).into_iter().find_map(|(seq, digest)| {
        theirs.get(&seq).filter(|other| **other != digest).map(|other| (seq, digest, *other))
    })
}

// --------------------------------------------------------------------------------------------
// in-the-dark, withhold-slot, silent: primaries that starve replicas

/// A primary keeps f replicas in the dark (PROTOCOL §3, §6): no PROPOSE, no CERTIFY.
///
/// Setup: n = 4 PoE-TS, replica 0 primary with `in-the-dark` (one replica left out).
/// Test: the dark replica was left out; the others still certify with nf = 3; the dark replica
/// catches up by state transfer or a view change; everybody agrees and every request completes.
#[test]
fn byzantine_primary_keeps_replica_in_the_dark() {
    let requests = 300;
    let mut config = Config::new(Protocol::PoeTs, 4, 16);
    // Checkpoints often, so that the dark replica learns it fell behind.
    config.checkpoint_interval = 4;
    let mut cluster = cluster_with(config, 211, requests, &[(0, &[Behaviour::InTheDark])]);
    let dark: Vec<ReplicaId> =
        cluster.byzantine(ReplicaId(0)).expect("hook").dark().iter().copied().collect();
    assert_eq!(dark.len(), 1, "f = 1 replica in the dark");
    let honest = honest_except(4, &[0]);
    let lit: Vec<ReplicaId> = honest.iter().copied().filter(|id| *id != dark[0]).collect();
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    assert_every_request_completed(&cluster, requests as usize);
    assert_common_slots_agree(&cluster, &honest);
    assert_proofs_hold(&cluster, &lit);
    assert!(acted(&cluster, 0, Behaviour::InTheDark) > 0);
    let dark = cluster.replica(dark[0]).counters();
    assert_eq!(dark.proposals_accepted, 0, "the dark replica saw no proposal");
    assert!(dark.state_requests_sent > 0, "the dark replica asked for state: {dark:?}");
    assert_eq!(dark.slots_committed, 0, "nothing certified reached it");
}

/// A primary that withholds slots is replaced (PROTOCOL §4: a hole).
///
/// Setup: n = 4 PoE-TS, replica 0 primary with `withhold-slot`.
/// Test: it withheld a slot; every honest replica entered a later view; they agree and every
/// request completes.
#[test]
fn byzantine_primary_withholds_slots() {
    let requests = 300;
    let mut cluster = one_byzantine(Protocol::PoeTs, 221, requests, 0, &[Behaviour::WithholdSlot]);
    let honest = honest_except(4, &[0]);
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 0, Behaviour::WithholdSlot) > 0);
    let views = views_entered(&cluster, &honest);
    assert!(views.iter().all(|&entered| entered >= 1), "the primary was replaced: {views:?}");
}

/// A silent primary is replaced (PROTOCOL §4).
#[test]
fn byzantine_silent_primary_is_replaced() {
    let requests = 200;
    let mut cluster = one_byzantine(Protocol::PoeMac, 231, requests, 0, &[Behaviour::Silent]);
    let honest = honest_except(4, &[0]);
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 0, Behaviour::Silent) > 0);
    let views = views_entered(&cluster, &honest);
    assert!(views.iter().all(|&entered| entered >= 1), "the primary was replaced: {views:?}");
    assert!(
        cluster.completions.iter().all(|(_, done)| !done.proof.replicas.contains(&ReplicaId(0)))
    );
}

// --------------------------------------------------------------------------------------------
// forge, corrupt-digest, wrong-result: bad votes and answers

/// Forged authentication is refused (PROTOCOL §2: MACs, shares, signatures).
///
/// Setup: n = 4, replica 3 (a backup) with `forge`: each message carries a broken MAC or a
/// broken signature, share or certificate under a valid MAC.
/// Test: honest replicas counted invalid MACs and invalid signatures or shares; they agree and
/// every request completes.
#[test]
fn byzantine_forged_authentication_poe_ts() {
    assert_forgeries_refused(Protocol::PoeTs, 241, "invalid_share");
}

/// The same in PoE-MAC, where signed SUPPORTs reach everyone.
#[test]
fn byzantine_forged_authentication_poe_mac() {
    assert_forgeries_refused(Protocol::PoeMac, 242, "invalid_support_signature");
}

pub(super) fn assert_forgeries_refused(protocol: Protocol, seed: u64, inner: &str) {
    let requests = 300;
    let mut cluster = one_byzantine(protocol, seed, requests, 3, &[Behaviour::Forge]);
    // Replica 2 is slow, so replica 3's votes are needed and checked, not late.
    cluster.slow_down(ReplicaId(2), Duration::from_millis(2));
    let honest = honest_except(4, &[3]);
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 3, Behaviour::Forge) > 0);
    assert!(rejected(&cluster, &honest, "invalid_mac") > 0);
    assert!(rejected(&cluster, &honest, inner) > 0, "{inner}");
    assert!(
        cluster.completions.iter().all(|(_, done)| !done.proof.replicas.contains(&ReplicaId(3)))
    );
}

/// Votes for another digest, correctly signed, never count (PROTOCOL §3.2).
#[test]
fn byzantine_corrupt_digest_votes() {
    let requests = 300;
    let mut cluster =
        one_byzantine(Protocol::PoeMac, 251, requests, 3, &[Behaviour::CorruptDigest]);
    cluster.slow_down(ReplicaId(2), Duration::from_millis(2));
    let honest = honest_except(4, &[3]);
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 3, Behaviour::CorruptDigest) > 0);
    assert!(rejected(&cluster, &honest, "digest_mismatch") > 0);
}

/// Wrong results never complete a request (PROTOCOL §3.1 step 7).
#[test]
fn byzantine_wrong_results_never_prove() {
    let requests = 300;
    let mut cluster = one_byzantine(Protocol::PoeTs, 261, requests, 3, &[Behaviour::WrongResult]);
    let honest = honest_except(4, &[3]);
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 3, Behaviour::WrongResult) >= requests);
    assert!(
        cluster.completions.iter().all(|(_, done)| !done.proof.replicas.contains(&ReplicaId(3)))
    );
}

// --------------------------------------------------------------------------------------------
// stale-view, future-view, false-failure, nv-equivocate: views

/// Messages tagged with an older view are refused.
#[test]
fn byzantine_stale_view_messages() {
    let requests = 300;
    let config = Config::new(Protocol::PoeMac, 4, 16);
    let mut cluster = cluster_with(config, 271, requests, &[(3, &[])]);
    let honest = honest_except(4, &[3]);
    // Nothing is older than view 0: move to view 1 first, by cutting the primary off (a
    // partition, not a fault) until the others entered view 1.
    cluster.isolate(ReplicaId(0), true);
    cluster
        .run_until(STEPS_MAX_DEFAULT, |cluster| cluster.replica(ReplicaId(1)).view() >= View(1))
        .expect("view 1");
    cluster.isolate(ReplicaId(0), false);
    assert!(cluster.behave(ReplicaId(3), &[Behaviour::StaleView]));
    cluster.slow_down(ReplicaId(2), Duration::from_millis(2));
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 3, Behaviour::StaleView) > 0);
    assert!(rejected(&cluster, &honest, "wrong_view") > 0);
}

/// Messages tagged with a later view make replicas ask for state and hold them, never act.
#[test]
fn byzantine_future_view_messages() {
    let requests = 300;
    let mut cluster = one_byzantine(Protocol::PoeMac, 281, requests, 3, &[Behaviour::FutureView]);
    let honest = honest_except(4, &[3]);
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 3, Behaviour::FutureView) > 0);
    for &id in &honest {
        let replica = cluster.replica(id);
        assert_eq!(replica.view(), View(0), "nobody moved to the tagged view");
        // A message of a later view means this replica may have fallen behind: it asks.
        assert!(replica.counters().state_requests_sent > 0, "replica {id} asked for state");
    }
}

/// False VC-REQUESTs: one Byzantine replica cannot force a view change (f + 1 are needed to
/// join, PROTOCOL §4); two can.
#[test]
fn byzantine_false_failure() {
    let requests = 300;
    let mut cluster = one_byzantine(Protocol::PoeTs, 291, requests, 3, &[Behaviour::FalseFailure]);
    let honest = honest_except(4, &[3]);
    // Past the first false VC-REQUEST (FALSE_FAILURE_INTERVAL) and a few more.
    cluster.run_for(Duration::from_secs(2));
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 3, Behaviour::FalseFailure) > 0);
    for &id in &honest {
        let counters = cluster.replica(id).counters();
        assert_eq!(counters.view_changes_started, 0, "replica {id} did not join");
        assert_eq!(counters.rejected("invalid_view_change"), 0, "the requests are valid");
    }

    let config = Config::new(Protocol::PoeTs, 4, 16);
    let two: &[Behaviour] = &[Behaviour::FalseFailure];
    let mut beyond = cluster_with(config, 292, requests, &[(2, two), (3, two)]);
    beyond.run_for(Duration::from_secs(2));
    for id in [0, 1].map(ReplicaId) {
        let counters = beyond.replica(id).counters();
        assert!(counters.view_changes_started > 0, "replica {id} joined f + 1 requests");
    }
}

/// A new primary sends NV-PROPOSEs that decide differently (PROTOCOL §5.4's counterexample);
/// re-certification of carried slots keeps the honest replicas safe.
///
/// Setup: n = 7 (f = 2) PoE-TS, one adversary of two replicas: replica 0 (primary of view 0)
/// certifies each slot but sends the CERTIFY to one honest replica only, so the others time
/// out and ask for a view change; replica 1 (primary of view 1) hides its evidence and sends
/// NV-PROPOSEs from different VC-REQUEST subsets. Only one honest replica holds the
/// certificates, so an nf = 5 subset without it decides a lower k_max.
/// Test: replica 1 sent two NV-PROPOSEs for view 1 whose decisions differ in k_max; honest
/// ledgers agree, proofs hold and every request completes.
#[test]
fn byzantine_new_view_equivocation() {
    let requests = 300;
    let config = Config::new(Protocol::PoeTs, 7, 16);
    let primary: &[Behaviour] = &[Behaviour::WithholdCertificate];
    let lying: &[Behaviour] = &[Behaviour::HideEvidence, Behaviour::NvEquivocate];
    let mut cluster = cluster_with(config, 301, requests, &[(0, primary), (1, lying)]);
    // (k_max, the chosen certificates) of each NV-PROPOSE.
    type Decided = (u64, Vec<(Seq, View, Digest)>);
    let sent: Rc<RefCell<BTreeSet<Decided>>> = Rc::default();
    let seen = sent.clone();
    cluster.set_outbound_hook(
        ReplicaId(1),
        Box::new(move |transmit| {
            if let Transmit::Replica { envelope, .. } = &transmit
                && let Ok(Message::NewView(new_view)) = decode(&envelope.payload)
                && new_view.view == View(1)
            {
                let decision = crate::core::replica::decide(&new_view.requests, false);
                let k_max = decision.slots.keys().next_back().copied().unwrap_or(decision.base());
                let slots = decision
                    .slots
                    .iter()
                    .map(|(seq, evidence)| {
                        (*seq, evidence.view, crate::core::message::batch_digest(&evidence.batch))
                    })
                    .collect();
                seen.borrow_mut().insert((k_max.0, slots));
            }
            vec![transmit]
        }),
    );
    let honest = honest_except(7, &[0, 1]);
    assert_safe_and_live(&mut cluster, requests, &honest);
    assert!(acted(&cluster, 0, Behaviour::WithholdCertificate) > 0, "certificates withheld");
    let hook = cluster.byzantine(ReplicaId(1)).expect("hook");
    assert!(hook.acted(Behaviour::HideEvidence) > 0, "evidence hidden");
    assert!(
        hook.acted(Behaviour::NvEquivocate) > 0,
        "unable: {}",
        hook.counter("nv-equivocate.unable")
    );
    let decisions = sent.borrow();
    let k_maxes: BTreeSet<u64> = decisions.iter().map(|(k_max, _)| *k_max).collect();
    assert!(decisions.len() >= 2, "two NV-PROPOSEs for view 1 decided differently");
    assert!(k_maxes.len() >= 2, "with different k_max: {k_maxes:?}");
}

/// Beyond budget: a lying view change loses a promised result (PROTOCOL §5.3 step 4 needs
/// n > 3f for its quorum intersection).
///
/// Setup: n = 4 PoE-TS, replicas 0 and 1 Byzantine with one plan: the primary keeps one honest
/// replica in the dark, both hide their evidence and ask for a view change, and replica 1, the
/// new primary, sends the honest replica that holds the certificates an NV-PROPOSE from the
/// VC-REQUESTs without its evidence.
/// Test: an honest replica rolled back a slot whose result a client had been promised.
#[test]
fn byzantine_lying_view_change_beyond_budget_loses_a_promise() {
    let config = Config::new(Protocol::PoeTs, 4, 16);
    let plan: &[Behaviour] = &[
        Behaviour::InTheDark,
        Behaviour::HideEvidence,
        Behaviour::NvEquivocate,
        Behaviour::FalseFailure,
    ];
    let mut cluster = cluster_with(config, 307, 3000, &[(0, plan), (1, plan)]);
    let honest = honest_except(4, &[0, 1]);
    let lost = |cluster: &Cluster| promise_rolled_back(cluster, &honest).is_some();
    cluster.run_until(2_000_000, lost).expect("a promised slot is rolled back");
    let (replica, seq) = promise_rolled_back(&cluster, &honest).expect("rolled back");
    assert!(honest.contains(&replica), "replica {replica} is honest; seq {seq}");
    assert!(cluster.byzantine(ReplicaId(1)).expect("hook").acted(Behaviour::NvEquivocate) > 0);
}

/// An honest replica of `honest` that rolled back the execution a client's proof names (the
/// same request, slot and view), and the slot.
fn promise_rolled_back(cluster: &Cluster, honest: &[ReplicaId]) -> Option<(ReplicaId, u64)> {
    // (client, request, seq, view) of every proof.
    type Promise = (u32, u64, u64, u64);
    let promised: BTreeSet<Promise> = cluster
        .completions
        .iter()
        .map(|(client, done)| (client.0, done.request.0, done.proof.seq.0, done.proof.view.0))
        .collect();
    honest.iter().find_map(|&id| {
        let mut standing: BTreeMap<u64, &history::ExecuteEvent> = BTreeMap::new();
        for event in &cluster.events[id.index()] {
            match event {
                LedgerEvent::Execute(execute) => {
                    standing.insert(execute.seq, execute);
                }
                LedgerEvent::Rollback(rollback) => {
                    let undone = standing.split_off(&(rollback.to_seq + 1));
                    for (seq, execute) in undone {
                        let kept_promise = execute.requests.iter().any(|request| {
                            promised.contains(&(request.client, request.request, seq, execute.view))
                        });
                        if kept_promise {
                            return Some((id, seq));
                        }
                    }
                }
                _ => {}
            }
        }
        None
    })
}

#[test]
fn byzantine_replayed_messages() {
    let requests = 300;
    let mut cluster = one_byzantine(Protocol::PoeMac, 311, requests, 3, &[Behaviour::Replay]);
    let honest = honest_except(4, &[3]);
    assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
    cluster.run_for(Duration::from_millis(200));
    assert_histories_agree(&cluster, &honest);
    assert!(acted(&cluster, 3, Behaviour::Replay) > 0);
    // The same run without replays: replayed votes for executed slots are ignored as late.
    let mut baseline = one_byzantine(Protocol::PoeMac, 311, requests, 3, &[]);
    baseline.run(STEPS_MAX_DEFAULT).expect("every request completes");
    baseline.run_for(Duration::from_millis(200));
    let late = |cluster: &Cluster| -> u64 {
        honest.iter().map(|&id| cluster.replica(id).counters().votes_late).sum()
    };
    assert!(late(&cluster) > late(&baseline), "{} > {}", late(&cluster), late(&baseline));
}

/// Seeded one-field mutations (ByzzFuzz), correctly re-sealed, exercise the semantic checks.
#[test]
fn byzantine_mutated_messages() {
    for (protocol, id, seed) in [(Protocol::PoeMac, 3, 321), (Protocol::PoeTs, 0, 322)] {
        let requests = 200;
        let mut cluster = one_byzantine(protocol, seed, requests, id, &[Behaviour::Mutate]);
        cluster.slow_down(ReplicaId(2), Duration::from_millis(2));
        let honest = honest_except(4, &[id]);
        assert_safe_live_and_caught_up(&mut cluster, requests, &honest);
        assert!(acted(&cluster, id, Behaviour::Mutate) > 0);
        let refused: u64 = honest
            .iter()
            .flat_map(|&id| {
                cluster.replica(id).counters().rejected.values().copied().collect::<Vec<_>>()
            })
            .sum();
        assert!(
            refused > 0,
            "{protocol:?}: the mutations were refused: {}",
            debug_rejections(&cluster, &honest)
        );
    }
}

// --------------------------------------------------------------------------------------------
// switching

/// A replica without a hook refuses to behave; with one, an empty set means correct.
#[test]
fn byzantine_switching_behaviours() {
    let requests = 600;
    let mut cluster = one_byzantine(Protocol::PoeTs, 331, requests, 3, &[Behaviour::Silent]);
    assert!(!cluster.behave(ReplicaId(1), &[Behaviour::Silent]), "replica 1 is not Byzantine");
    let sent = Rc::new(RefCell::new(0u64));
    let counted = sent.clone();
    cluster.set_outbound_hook(
        ReplicaId(3),
        Box::new(move |transmit| {
            *counted.borrow_mut() += 1;
            vec![transmit]
        }),
    );
    cluster.run_for(Duration::from_millis(10));
    assert!(!cluster.workload_done(), "switch mid-run");
    let silent = acted(&cluster, 3, Behaviour::Silent);
    assert!(silent > 0);
    assert_eq!(*sent.borrow(), 0, "nothing left replica 3");
    assert!(cluster.behave(ReplicaId(3), &[]));
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    assert_eq!(acted(&cluster, 3, Behaviour::Silent), silent, "correct again");
    assert!(*sent.borrow() > 0, "replica 3 sends again");
    assert_common_slots_agree(&cluster, &honest_except(4, &[]));
}

/// The hook is a no-op with no behaviour on, and its replay buffer is bounded.
#[test]
fn byzantine_hook_passes_through_when_off_and_stays_bounded() {
    let config = Config::new(Protocol::PoeTs, 4, 4);
    let cluster = Cluster::new(SimOptions::new(config.clone(), 341, 0));
    let secrets = cluster.keys().replicas[2].clone();
    let public = Arc::new(cluster.keys().public.clone());
    let mut hook = Hook::new(
        config,
        secrets.clone(),
        public,
        ByzantineConfig { seed: 7, colluders: Vec::new() },
    );
    let request =
        super::signed_request(&cluster, 0, 1, history::Operation::Read { key: "k".into() });
    let message = Message::Forward(request);
    let envelope =
        crate::core::Envelope::new(&message, &secrets.replica_macs[0], ReplicaId(2), ReplicaId(0));
    let transmit = Transmit::Replica { to: ReplicaId(0), envelope };
    let now = crate::core::Time::ZERO;
    assert_eq!(hook.outbound(now, View(0), transmit.clone()), vec![transmit.clone()]);
    assert_eq!(hook.poll_timeout(), None);
    hook.set_behaviours(now, [Behaviour::Replay]);
    for _ in 0..3 * crate::byzantine::hook::REPLAY_RING_MAX {
        assert_eq!(hook.outbound(now, View(0), transmit.clone()), vec![transmit.clone()]);
    }
    let due = hook.poll_timeout().expect("the replay timer is armed");
    let replayed = hook.poll(due, View(0));
    assert_eq!(replayed, vec![transmit.clone()], "one old envelope to the one receiver");
    assert_eq!(hook.acted(Behaviour::Replay), 1);
    assert_eq!(hook.counters().get("byzantine.replay"), Some(&1));
    // Garbage from an unknown sender or with a bad MAC is ignored.
    hook.set_behaviours(now, [Behaviour::Equivocate, Behaviour::NvEquivocate]);
    let Transmit::Replica { envelope, .. } = transmit else { unreachable!() };
    assert!(hook.inbound(now, ReplicaId(200), &envelope).is_empty());
    assert!(hook.inbound(now, ReplicaId(1), &envelope).is_empty());
    hook.set_behaviours(now, []);
    assert!(!hook.is_active());
}

/// A carried slot the new view certifies with another batch than the replica's decision
/// (issue 12 item 5; PROTOCOL §5.4, §10.6).
///
/// Setup: n = 4 PoE-TS, no faults until replica 3 executed some slots in view 0. Then, as a
/// lying new primary and its accomplices beyond the budget could, replica 3 alone is handed an
/// NV-PROPOSE for view 1 (three validly signed VC-REQUESTs carrying its own evidence, so its
/// decision keeps every slot, k included, with the batch X it executed), then a PROPOSE of
/// view 1 for slot k with another batch Y and a valid view-1 certificate for Y (shares of three
/// replicas combined).
/// Test: replica 3 refuses the proposal (it is not its decision) but, on the certificate, rolls
/// back to k − 1 and executes Y at k under view 1: it never keeps executing on a prefix the
/// view did not certify.
#[test]
fn byzantine_conflicting_certificate_replaces_a_carried_slot() {
    use crate::core::message::{
        Certify, NewView, Propose, ViewChange, batch_digest, proposal_digest, support_signing_bytes,
    };
    use crate::crypto::threshold::PreparedMessage;

    let config = Config::new(Protocol::PoeTs, 4, 16);
    let mut cluster = Cluster::new(SimOptions::new(config, 311, 400));
    let target = ReplicaId(3);
    cluster
        .run_until(STEPS_MAX_DEFAULT, |cluster| cluster.replica(target).last_executed() >= Seq(6))
        .expect("replica 3 executes six slots");
    let replica = cluster.replica(target);
    let k = replica.last_executed();
    let evidence = ledger_evidence(replica);
    let other_batch = replica.ledger().get(Seq(k.0 - 1)).expect("block k - 1").batch.clone();
    let keys = cluster.keys().clone();
    let requests: Vec<Arc<ViewChange>> =
        [0u8, 1, 2].into_iter().map(|id| view_1_request(&keys, id, evidence.clone())).collect();
    let new_view = Message::NewView(Arc::new(NewView { view: View(1), requests }));
    cluster.inject(ReplicaId(1), target, &new_view).expect("a valid NV-PROPOSE");
    assert_eq!(cluster.replica(target).view(), View(1));
    assert_eq!(cluster.replica(target).last_executed(), k, "its decision kept every slot");

    let digest = proposal_digest(View(1), k, &batch_digest(&other_batch));
    let propose = Message::Propose(Propose { view: View(1), seq: k, batch: other_batch });
    let refused = cluster.inject(ReplicaId(1), target, &propose);
    assert!(matches!(refused, Err(crate::core::Rejection::CarriedMismatch { .. })), "{refused:?}");
    let prepared = PreparedMessage::new(&support_signing_bytes(&digest));
    let shares: Vec<_> = [0usize, 1, 2]
        .into_iter()
        .map(|id| {
            let share = &keys.replicas[id].threshold_share;
            (share.signer(), share.sign(&prepared))
        })
        .collect();
    let signature = keys.public.threshold.combine_optimistic(&prepared, &shares).signature;
    let certify =
        Certify { view: View(1), seq: k, digest, signature: signature.expect("nf shares") };
    cluster.inject(ReplicaId(1), target, &Message::Certify(certify)).expect("a valid CERTIFY");

    let replica = cluster.replica(target);
    assert_eq!(replica.counters().carried_replaced, 1);
    assert_eq!(replica.last_executed(), k, "executed again up to k");
    assert_eq!(replica.ledger().get(k).expect("block k").digest, digest, "the certified batch");
    let events = &cluster.events[target.index()];
    let rolled_back = events.iter().any(
        |event| matches!(event, LedgerEvent::Rollback(rollback) if rollback.to_seq == k.0 - 1),
    );
    assert!(rolled_back, "rolled back to before slot {k}");
}

/// The evidence of every block in `replica`'s ledger, as a VC-REQUEST carries it.
fn ledger_evidence(replica: &crate::core::Replica) -> Vec<crate::core::message::SlotEvidence> {
    let blocks = replica.ledger().blocks();
    blocks
        .map(|block| crate::core::message::SlotEvidence {
            view: block.view,
            seq: block.seq,
            batch: block.batch.clone(),
            certificate: block.certificate.clone(),
        })
        .collect()
}

/// Replica `id`'s VC-REQUEST for view 1 with `evidence`, signed with its real key.
fn view_1_request(
    keys: &crate::crypto::dealer::ClusterKeys,
    id: u8,
    evidence: Vec<crate::core::message::SlotEvidence>,
) -> Arc<crate::core::message::ViewChange> {
    use crate::core::message::ViewChange;
    let bytes = ViewChange::signing_bytes(View(1), ReplicaId(id), None, &evidence);
    Arc::new(ViewChange {
        target: View(1),
        replica: ReplicaId(id),
        checkpoint: None,
        evidence,
        signature: keys.replicas[usize::from(id)].signing_key.sign(&bytes),
    })
}

/// A replica remembers the certificates it verified across messages (a view change would
/// otherwise verify each slot's certificate once per VC-REQUEST), but a remembered slot does
/// not vouch for another certificate claiming it: a forged one is still refused.
///
/// Setup: n = 4 PoE-TS, no faults until replica 3 executed some slots. Replica 0 sends it a
/// valid VC-REQUEST for view 1 carrying the evidence of those slots; replica 1 then sends one
/// with the same slots, one certificate replaced by another slot's (valid, for another
/// digest), re-signed by replica 1.
/// Test: the first is accepted, the second refused as an invalid view change.
#[test]
fn a_remembered_certificate_does_not_vouch_for_a_forged_one() {
    let config = Config::new(Protocol::PoeTs, 4, 16);
    let mut cluster = Cluster::new(SimOptions::new(config, 313, 400));
    let target = ReplicaId(3);
    cluster
        .run_until(STEPS_MAX_DEFAULT, |cluster| cluster.replica(target).last_executed() >= Seq(4))
        .expect("replica 3 executes four slots");
    let evidence = ledger_evidence(cluster.replica(target));
    let keys = cluster.keys().clone();
    let request = |id: u8, evidence| Message::ViewChange(view_1_request(&keys, id, evidence));
    let valid = request(0, evidence.clone());
    cluster.inject(ReplicaId(0), target, &valid).expect("a valid VC-REQUEST");
    let mut forged = evidence;
    forged[1].certificate = forged[0].certificate.clone();
    let refused = cluster.inject(ReplicaId(1), target, &request(1, forged));
    assert!(
        matches!(refused, Err(crate::core::Rejection::InvalidViewChange { .. })),
        "{refused:?}"
    );
}

// --------------------------------------------------------------------------------------------
// liveness after a joint attack

/// A joint attack of the primary leaves a view change with many carried slots on slow links;
/// once the attacker behaves, the honest replicas make progress again within a few view
/// changes (PROTOCOL §10.9: no endless view-change loop). Found by a real run (n = 4 PoE-TS,
/// seed 3): after the same attack nobody executed for 20 s, although every behaviour was off
/// for the last 11 s; the replicas went through views 1 to 8, each primary entering its view
/// about a second before the backups and leaving it a second later, before their SUPPORTs
/// for the carried slots arrived.
///
/// Setup: n = 4 PoE-TS, every replica link limited to 120 kB/s (the real run's busy 2-core
/// machine took one to two seconds to deliver and validate a view change's VC-REQUESTs and
/// NV-PROPOSE, each with about a hundred certified slots, while normal-case messages took
/// milliseconds); replica 0, the primary of view 0, keeps a replica in the dark, hides its
/// evidence, equivocates as a new primary and sends false VC-REQUESTs from 1 s to 4 s, then
/// behaves.
/// Test: the attack acted and forced a view change; every request completes within 20 s of
/// the heal, after at most four views; honest ledgers agree, and every proof holds in the
/// honest replicas at the head (a straggler is less than a checkpoint interval behind).
/// Without the backoff of the progress timer, no request completes after the attack.
#[test]
fn byzantine_joint_attack_then_slow_view_changes_still_end() {
    let requests = 3000;
    let plan: &[Behaviour] = &[
        Behaviour::InTheDark,
        Behaviour::HideEvidence,
        Behaviour::NvEquivocate,
        Behaviour::FalseFailure,
    ];
    let mut options = SimOptions::new(Config::new(Protocol::PoeTs, 4, 16), 3, requests);
    options.latency_min = Duration::from_millis(1);
    options.latency_max = Duration::from_millis(10);
    let mut cluster = cluster_with_options(options, &[(0, &[])]);
    cluster.set_bandwidth(Some(120_000));
    let honest = honest_except(4, &[0]);
    cluster.run_for(Duration::from_secs(1));
    assert!(cluster.behave(ReplicaId(0), plan));
    cluster.run_for(Duration::from_secs(3));
    assert!(cluster.behave(ReplicaId(0), &[]));
    let heal = cluster.time();
    let deadline = heal + Duration::from_secs(20);
    let _ = cluster.run_until(STEPS_MAX_DEFAULT, |cluster| {
        cluster.workload_done() || cluster.time() >= deadline
    });
    let views: Vec<View> = honest.iter().map(|&id| cluster.replica(id).view()).collect();
    let executed: Vec<Seq> = honest.iter().map(|&id| cluster.replica(id).last_executed()).collect();
    assert!(
        cluster.workload_done(),
        "{} of {requests} requests completed 20 s after the heal; views {views:?}, executed \
         {executed:?}",
        cluster.completions.len()
    );
    assert!(acted(&cluster, 0, Behaviour::InTheDark) > 0, "the attack acted");
    assert!(acted(&cluster, 0, Behaviour::FalseFailure) > 0, "the attack acted");
    assert!(views.iter().all(|view| *view >= View(1)), "a view change happened: {views:?}");
    assert!(views.iter().all(|view| *view <= View(4)), "a few view changes: {views:?}");
    assert_every_request_completed(&cluster, requests as usize);
    assert_common_slots_agree(&cluster, &honest);
    // A replica can be left asking for a view nobody else asks for while the others work on
    // (its messages of their view were late behind a state transfer on its slow link): it
    // follows by state transfer at every stable checkpoint, so it is less than a checkpoint
    // interval behind. The proofs hold in the others.
    let head = executed.iter().copied().max().expect("honest replicas");
    let interval = cluster.replica(ReplicaId(1)).config().checkpoint_interval;
    assert!(executed.iter().all(|seq| head.0 - seq.0 < interval), "executed {executed:?}");
    let current: Vec<ReplicaId> =
        honest.iter().copied().filter(|&id| cluster.replica(id).last_executed() == head).collect();
    assert!(current.len() >= 2, "executed {executed:?}");
    assert_proofs_hold(&cluster, &current);
}

// --------------------------------------------------------------------------------------------
// The forced rollback: the lone executor of the lying-view-change joint attack

/// The lone executor of the fourth joint attack, on one Byzantine primary (PROTOCOL §5.3 steps
/// 5–6): exactly nf replicas vote for each slot and the primary's own evidence reaches one
/// honest replica only, so it alone executes; slowed down like the harness's network does, it
/// is left out of the view change and rolls back. Within the budget that is safe.
///
/// Setup: n = 4, replica 0 Byzantine with `in-the-dark`, `withhold-certificate`,
/// `hide-evidence`, `false-failure` and `corrupt-snapshot` from the start, checkpoints every 8
/// slots (the attack starts at one); the lone replica's messages take 600 ms until
/// it is in view 1 (PoE-TS and PoE-MAC).
/// Test: the roles are replica 1 in the dark and replica 3 lone; from slot 8 on replica 3
/// executed in view 0 and replica 1 did not; replica 3 rolled back several slots (the primary
/// cuts batches of at most [`crate::byzantine::hook::LONE_BATCH_MAX`] meanwhile); the honest
/// replicas agree, every request completes, every proof holds.
#[test]
fn byzantine_forced_rollback_makes_the_lone_executor_roll_back() {
    let plan = [
        Behaviour::InTheDark,
        Behaviour::WithholdCertificate,
        Behaviour::HideEvidence,
        Behaviour::FalseFailure,
        Behaviour::CorruptSnapshot,
    ];
    let (dark, lone) =
        crate::byzantine::hook::lone_roles(4, 1, ReplicaId(0), &BTreeSet::new(), View(0));
    assert_eq!((dark, lone), (BTreeSet::from([ReplicaId(1)]), Some(ReplicaId(3))));
    let lone = ReplicaId(3);
    for protocol in [Protocol::PoeTs, Protocol::PoeMac] {
        let requests = 300;
        let mut config = Config::new(protocol, 4, 16);
        // The attack waits for a checkpoint slot.
        config.checkpoint_interval = 8;
        let mut cluster = cluster_with(config, 5, requests, &[(0, &plan)]);
        cluster.slow_down(lone, Duration::from_millis(600));
        cluster
            .run_until(STEPS_MAX_DEFAULT, |cluster| cluster.replica(lone).view() >= View(1))
            .expect("the lone replica enters view 1");
        cluster.slow_down(lone, Duration::ZERO);
        // The attack acts from the checkpoint slot 8 (less the lead).
        let window = 8 - crate::byzantine::hook::LONE_LEAD;
        let executed_in_window = |id: ReplicaId| {
            cluster.events[id.index()].iter().any(|event| {
                matches!(event, LedgerEvent::Execute(execute)
                    if execute.view == 0 && execute.seq >= window)
            })
        };
        assert!(executed_in_window(lone), "{protocol:?}: the lone replica executed");
        assert!(!executed_in_window(ReplicaId(1)), "{protocol:?}: replica 1 was in the dark");
        let counters = cluster.replica(lone).counters();
        // The primary cut batches of at most LONE_BATCH_MAX: the 16 clients' stalled requests
        // filled several lone slots, not one.
        assert!(counters.slots_rolled_back >= 2, "{protocol:?}: {counters:?}");
        assert!(acted(&cluster, 0, Behaviour::WithholdCertificate) > 0);
        assert_safe_and_live(&mut cluster, requests, &honest_except(4, &[0]));
    }
}

/// `corrupt-snapshot` (PROTOCOL §6): a replica that fell behind gets from the Byzantine replica
/// the real checkpoint certificate with a snapshot of another state, refuses it, and catches up
/// from the honest ones.
///
/// Setup: n = 4 PoE-TS, checkpoints every 4 slots, replica 0 primary with `in-the-dark` and
/// `corrupt-snapshot`.
/// Test: replica 0 served corrupt snapshots; the dark replica refused messages from replica 0
/// and installed a snapshot anyway; the honest replicas agree and every request completes.
#[test]
fn byzantine_corrupt_snapshot_is_refused() {
    let requests = 300;
    let mut config = Config::new(Protocol::PoeTs, 4, 16);
    config.checkpoint_interval = 4;
    let plan = [Behaviour::InTheDark, Behaviour::CorruptSnapshot];
    let mut cluster = cluster_with(config, 211, requests, &[(0, &plan)]);
    let dark = *cluster.byzantine(ReplicaId(0)).expect("hook").dark().first().expect("one");
    let honest = honest_except(4, &[0]);
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    // The dark replica's catch-up asks everyone again after a refused transfer.
    cluster.run_for(Duration::from_secs(2));
    assert_every_request_completed(&cluster, requests as usize);
    assert_common_slots_agree(&cluster, &honest);
    // The dark replica holds no ledger below the snapshot it installed.
    let lit: Vec<ReplicaId> = honest.iter().copied().filter(|id| *id != dark).collect();
    assert_proofs_hold(&cluster, &lit);
    assert!(acted(&cluster, 0, Behaviour::CorruptSnapshot) > 0);
    let counters = cluster.replica(dark).counters();
    assert!(counters.rejected_from.get(&0).copied().unwrap_or(0) > 0, "{counters:?}");
    assert!(counters.snapshots_installed > 0, "{counters:?}");
}

/// `nv-equivocate` with nothing to choose from forges (PROTOCOL §5.3 step 1): holding exactly
/// nf VC-REQUESTs, the new primary sends half of the honest replicas an NV-PROPOSE whose relayed
/// VC-REQUESTs lost their evidence (the others' signatures broken); they refuse it and the view
/// still works.
///
/// Setup: n = 4 PoE-TS, replica 1 (primary of view 1) Byzantine with `nv-equivocate`; once 100
/// requests completed the primary of view 0 crashes, so view 1 forms from exactly nf = 3
/// VC-REQUESTs.
/// Test: the hook forged; an honest replica refused a message from replica 1; every request
/// completes, the two honest replicas agree and every proof holds at both.
#[test]
fn byzantine_new_primary_forges_when_every_subset_decides_the_same() {
    let requests = 400;
    let config = Config::new(Protocol::PoeTs, 4, 16);
    let mut cluster = cluster_with(config, 41, requests, &[(1, &[Behaviour::NvEquivocate])]);
    cluster
        .run_until(STEPS_MAX_DEFAULT, |cluster| cluster.completions.len() >= 100)
        .expect("the workload goes on");
    cluster.crash(ReplicaId(0));
    let honest = honest_except(4, &[0, 1]);
    assert_safe_and_live(&mut cluster, requests, &honest);
    let hook = cluster.byzantine(ReplicaId(1)).expect("hook");
    assert!(hook.counter("nv-equivocate.forged") > 0, "{:?}", hook.counters());
    let refused: u64 = honest
        .iter()
        .map(|&id| cluster.replica(id).counters().rejected_from.get(&1).copied().unwrap_or(0))
        .sum();
    assert!(refused > 0, "an honest replica refused the forged NV-PROPOSE");
}

/// A replica killed after it persisted a re-certification but before it recorded the
/// `recertified` event records it on restart: its reply cache answers under the stored
/// certificate's view, and the ledger must show that certificate (`inform-certificates`).
///
/// Setup: n = 4 PoE-TS, replica 0 Byzantine with `withhold-certificate`: one honest backup
/// alone executes its slots, view 1 carries them and that backup certifies them again.
/// Test: with its `recertified` events cut from its ledger, the backup restarted from its disk
/// records one for every slot it had re-certified, into the same view; restarted with its
/// ledger whole, none.
#[test]
fn a_restart_records_a_recertification_its_ledger_lost() {
    // No checkpoint in the run: every slot is replayed from the store on restart.
    let mut config = Config::new(Protocol::PoeTs, 4, 16);
    config.checkpoint_interval = 1024;
    // The log reaches past the next checkpoint (`Config::validate`).
    config.log_size = config.checkpoint_interval + config.window;
    let mut cluster = cluster_with(config, 461, 300, &[(0, &[Behaviour::WithholdCertificate])]);
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    let recertified = |events: &[LedgerEvent]| -> BTreeMap<u64, u64> {
        events
            .iter()
            .filter_map(|event| match event {
                LedgerEvent::Recertified(recertified) => {
                    Some((recertified.seq, recertified.new_view))
                }
                _ => None,
            })
            .collect()
    };
    let (lone, before) = (1..4u8)
        .map(|id| (ReplicaId(id), recertified(&cluster.events[usize::from(id)])))
        .max_by_key(|(_, slots)| slots.len())
        .expect("three honest replicas");
    assert!(!before.is_empty(), "a backup re-certified kept slots");
    cluster.kill(lone);
    cluster.events[lone.index()].retain(|event| !matches!(event, LedgerEvent::Recertified(_)));
    let cut = cluster.events[lone.index()].len();
    cluster.restart(lone);
    assert_eq!(cluster.replica(lone).status().stable_checkpoint, Seq(0));
    assert_eq!(recertified(&cluster.events[lone.index()][cut..]), before);
    // Restarted again with its ledger whole, it records none twice.
    cluster.kill(lone);
    let whole = cluster.events[lone.index()].len();
    cluster.restart(lone);
    assert_eq!(recertified(&cluster.events[lone.index()][whole..]), BTreeMap::new());
}
