//! Planted bugs (`crate::planted`) in the deterministic cluster.
//!
//! Every bug has a fault-free test (`planted_<bug>_fault_free`): with no fault at all the bug
//! stays hidden: honest ledgers agree, every client completes and every proof holds. A bug that
//! broke the normal case would be too shallow to tell whether the checkers see a real one.
//!
//! Most bugs also have a harm test: the same adversary within budget (a Byzantine replica,
//! crashes, partitions, crafted messages) runs once without the bug, where the honest replicas
//! stay safe, and once with it, where honest ledgers diverge or a client proof is rolled back.
//! Byzantine replicas never run the bug (`SimOptions::unplanted`): it belongs to the system
//! under test. `inform-before-recertify` has an evidence test instead: the checker's
//! `inform-certificates` finds its early INFORMs.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use history::{ExecuteEvent, LedgerEvent, OpResult, Operation};

use super::recovery::assert_every_request_completed;
use super::signed_request;
use crate::byzantine::{Behaviour, ByzantineConfig, Hook};
use crate::core::message::{
    NewView, Propose, SignedRequest, StateTransfer, Support, SupportProof, ViewChange,
    batch_digest, decode, proposal_digest, support_signing_bytes,
};
use crate::core::{Config, Envelope, Message, Protocol, ReplicaId, Seq, Transmit, View};
use crate::planted::PlantedBug;
use crate::sim::{Cluster, OutboundHook, STEPS_MAX_DEFAULT, SimOptions};

/// The most steps a phase of a harm test takes (a buggy cluster may never reach its goal).
const STEPS_BOUND: u64 = 2_000_000;

fn ids(n: u8) -> Vec<ReplicaId> {
    (0..n).map(ReplicaId).collect()
}

fn except(n: u8, byzantine: &[u8]) -> Vec<ReplicaId> {
    (0..n).filter(|id| !byzantine.contains(id)).map(ReplicaId).collect()
}

/// `config` running `bug` (none: the correct protocol).
fn with_bug(mut config: Config, bug: Option<PlantedBug>) -> Config {
    config.planted_bug = bug;
    config
}

/// Makes `id` Byzantine with a hook whose `behaviours` are on; the hook counts quorums as
/// `config` does (it runs no planted code).
fn make_byzantine(cluster: &mut Cluster, config: &Config, id: u8, behaviours: &[Behaviour]) {
    let config = config.clone();
    let secrets = cluster.keys().replicas[usize::from(id)].clone();
    let public = Arc::new(cluster.keys().public.clone());
    let byzantine = ByzantineConfig { seed: 0x706c_616e + u64::from(id), colluders: Vec::new() };
    cluster.set_byzantine(ReplicaId(id), Hook::new(config, secrets, public, byzantine));
    assert!(cluster.behave(ReplicaId(id), behaviours));
}

/// A cluster of `config` (seed, requests) in which replica `id` is Byzantine with `behaviours`
/// and runs no planted bug.
fn attacked(
    config: &Config,
    seed: u64,
    requests: u64,
    id: u8,
    behaviours: &[Behaviour],
) -> Cluster {
    let mut options = SimOptions::new(config.clone(), seed, requests);
    options.unplanted = vec![ReplicaId(id)];
    let mut cluster = Cluster::new(options);
    make_byzantine(&mut cluster, config, id, behaviours);
    cluster
}

/// A hook on `id` that sends, for each message to a replica, what `rewrite` returns (none:
/// drop it), re-sealed with `id`'s own keys when it changed.
fn rewriting_hook(
    cluster: &Cluster,
    id: ReplicaId,
    mut rewrite: impl FnMut(ReplicaId, Message) -> Option<Message> + 'static,
) -> OutboundHook {
    let macs = cluster.keys().replicas[id.index()].replica_macs.clone();
    Box::new(move |transmit| {
        let Transmit::Replica { to, envelope } = &transmit else { return vec![transmit] };
        let message = decode(&envelope.payload).expect("the core encodes valid messages");
        match rewrite(*to, message.clone()) {
            None => Vec::new(),
            Some(rewritten) if rewritten == message => vec![transmit],
            Some(rewritten) => {
                let envelope = Envelope::new(&rewritten, &macs[to.index()], id, *to);
                vec![Transmit::Replica { to: *to, envelope }]
            }
        }
    })
}

// --------------------------------------------------------------------------------------------
// Judging without panicking: a buggy replica's events need not make sense.

/// One slot as a replica's events leave it: the execution and every view it was certified in.
struct Held<'a> {
    execute: &'a ExecuteEvent,
    views: Vec<u64>,
}

/// Replays `id`'s ledger events as they come (executions insert, rollbacks truncate, a state
/// transfer clears), calling `rolled_back` with every slot a rollback removes.
fn replay<'a>(
    cluster: &'a Cluster,
    id: ReplicaId,
    mut rolled_back: impl FnMut(&Held<'a>),
) -> BTreeMap<u64, Held<'a>> {
    let mut slots: BTreeMap<u64, Held<'a>> = BTreeMap::new();
    for event in &cluster.events[id.index()] {
        match event {
            LedgerEvent::Execute(execute) => {
                slots.insert(execute.seq, Held { execute, views: vec![execute.view] });
            }
            LedgerEvent::Rollback(rollback) => {
                for held in slots.values().filter(|held| held.execute.seq > rollback.to_seq) {
                    rolled_back(held);
                }
                slots.retain(|seq, _| *seq <= rollback.to_seq);
            }
            LedgerEvent::StateTransfer(_) => slots.clear(),
            LedgerEvent::Recertified(recertified) => {
                if let Some(held) = slots.get_mut(&recertified.seq) {
                    held.views.push(recertified.new_view);
                }
            }
            LedgerEvent::Checkpoint(_) | LedgerEvent::ViewEntered(_) => {}
        }
    }
    slots
}

/// Every way two of `honest` diverge: a slot both hold with different contents ("differ at
/// seq"), a stable checkpoint at one slot with different state digests ("stable checkpoint"),
/// or a rollback to a slot that leaves a state digest other than the one the replicas hold
/// there ("rolled back to") (PROTOCOL §10.1, §10.6).
fn divergences(cluster: &Cluster, honest: &[ReplicaId]) -> Vec<String> {
    let mut found = Vec::new();
    let held: Vec<BTreeMap<u64, Held<'_>>> =
        honest.iter().map(|&id| replay(cluster, id, |_| {})).collect();
    for &id in honest {
        for event in &cluster.events[id.index()] {
            let LedgerEvent::Rollback(rollback) = event else { continue };
            for (slots, &other) in held.iter().zip(honest) {
                let kept = slots.get(&rollback.to_seq).map(|held| held.execute.state_digest);
                if kept.is_some_and(|kept| kept != rollback.state_digest) {
                    found.push(format!(
                        "replica {id} rolled back to {} with another state than replica {other}",
                        rollback.to_seq
                    ));
                }
            }
        }
    }
    let stable = |id: ReplicaId| -> BTreeMap<u64, history::Digest> {
        cluster.events[id.index()]
            .iter()
            .filter_map(|event| match event {
                LedgerEvent::Checkpoint(checkpoint) if checkpoint.stable => {
                    Some((checkpoint.seq, checkpoint.state_digest))
                }
                _ => None,
            })
            .collect()
    };
    for (i, &a) in honest.iter().enumerate() {
        for (j, &b) in honest.iter().enumerate().skip(i + 1) {
            for (seq, mine) in &held[i] {
                let Some(theirs) = held[j].get(seq) else { continue };
                let (mine, theirs) = (mine.execute, theirs.execute);
                if mine.requests != theirs.requests {
                    found.push(format!("replicas {a} and {b} differ at seq {seq}: results"));
                } else if mine.block_hash != theirs.block_hash
                    || mine.state_digest != theirs.state_digest
                {
                    found.push(format!("replicas {a} and {b} differ at seq {seq}: state"));
                }
            }
            let theirs = stable(b);
            for (seq, digest) in stable(a) {
                if theirs.get(&seq).is_some_and(|other| *other != digest) {
                    found.push(format!("replicas {a} and {b}: stable checkpoint {seq} differs"));
                }
            }
        }
    }
    found
}

/// The first way two of `honest` diverge ([`divergences`]).
fn divergence(cluster: &Cluster, honest: &[ReplicaId]) -> Option<String> {
    divergences(cluster, honest).into_iter().next()
}

/// Client proofs an honest replica rolled back after executing the proven request at the proven
/// slot (PROTOCOL §10.2: once nf − f honest replicas executed it, none ever rolls it back).
fn rolled_back_proofs(cluster: &Cluster, honest: &[ReplicaId]) -> Vec<String> {
    let proven: BTreeMap<(u64, u64, u32, u64), &OpResult> = cluster
        .completions
        .iter()
        .map(|(client, done)| {
            ((done.proof.seq.0, done.proof.view.0, client.0, done.request.0), &done.result)
        })
        .collect();
    let mut found = Vec::new();
    for &id in honest {
        replay(cluster, id, |held| {
            for entry in &held.execute.requests {
                for view in &held.views {
                    let key = (held.execute.seq, *view, entry.client, entry.request);
                    if proven.get(&key).is_some_and(|result| entry.result.as_ref() == Some(result))
                    {
                        let (seq, client, request) =
                            (held.execute.seq, entry.client, entry.request);
                        found.push(format!(
                            "replica {id} rolled back request {request} of client {client} \
                             proven at ({view}, {seq})"
                        ));
                    }
                }
            }
        });
    }
    found
}

/// Proofs that do not hold in the final histories of `replicas`: fewer than `quorum` distinct
/// replicas, or a replica that holds the proven slot without the request and its result, or no
/// replica holding it.
fn broken_proofs(cluster: &Cluster, replicas: &[ReplicaId], quorum: usize) -> Vec<String> {
    let held: Vec<BTreeMap<u64, Held<'_>>> =
        replicas.iter().map(|&id| replay(cluster, id, |_| {})).collect();
    let mut broken = Vec::new();
    for (client, done) in &cluster.completions {
        let proof = &done.proof;
        let distinct: BTreeSet<_> = proof.replicas.iter().collect();
        if distinct.len() < quorum {
            broken.push(format!("a proof of {} replicas", distinct.len()));
        }
        let mut listed = 0;
        for (slots, id) in held.iter().zip(replicas) {
            let Some(slot) = slots.get(&proof.seq.0) else { continue };
            listed += 1;
            let holds = slot.execute.requests.iter().any(|entry| {
                (entry.client, entry.request) == (client.0, done.request.0)
                    && entry.result.as_ref() == Some(&done.result)
            });
            if !holds {
                broken.push(format!("replica {id} lacks the proven request at {}", proof.seq));
            }
        }
        if listed == 0 {
            broken.push(format!("no replica holds proven seq {}", proof.seq));
        }
    }
    broken
}

// --------------------------------------------------------------------------------------------
// Fault-free: every bug stays hidden.

/// Runs `bug` on PoE-TS and PoE-MAC without any fault: n = 4 (n = 5 for the quorum bug, where
/// 2f + 1 ≠ n − f), 16 clients, 300 requests, a checkpoint every 8 slots. Every request
/// completes; every replica's history is the same (hash chain, state digests, results); every
/// proof holds in every ledger, with as many INFORMs as the bug's client asks for.
fn assert_fault_free(bug: PlantedBug) {
    let n = if bug == PlantedBug::Quorum2fPlus1 { 5 } else { 4 };
    let protocols = match bug.protocol() {
        "pbft" => vec![(Protocol::Pbft, 403)],
        _ => vec![(Protocol::PoeTs, 401), (Protocol::PoeMac, 402)],
    };
    for (protocol, seed) in protocols {
        let mut config = with_bug(Config::new(protocol, n, 16), Some(bug));
        config.checkpoint_interval = 8;
        let mut cluster = Cluster::new(SimOptions::new(config.clone(), seed, 300));
        cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
        assert_every_request_completed(&cluster, 300);
        let all = ids(n);
        super::recovery::assert_histories_agree(&cluster, &all);
        let quorum =
            if bug == PlantedBug::ClientFPlus1 { config.f() + 1 } else { config.reply_quorum() };
        let broken = broken_proofs(&cluster, &all, quorum);
        assert!(broken.is_empty(), "{bug} {protocol:?}: {broken:?}");
        for &id in &all {
            let counters = cluster.replica(id).counters();
            assert_eq!(counters.rollbacks, 0, "{bug}: replica {id} rolled back");
            assert_eq!(counters.views_entered, 0, "{bug}: replica {id} changed views");
        }
        assert_bug_acted(&cluster, bug, &all);
    }
}

/// Where a bug shows even without faults, that it did: the smaller quorums, the f + 1
/// signatures of a stable checkpoint, the votes missing on disk.
fn assert_bug_acted(cluster: &Cluster, bug: PlantedBug, all: &[ReplicaId]) {
    let config = cluster.replica(all[0]).config();
    let f = config.f();
    match bug {
        PlantedBug::ClientFPlus1 => {
            let sizes: BTreeSet<usize> =
                cluster.completions.iter().map(|(_, done)| done.proof.replicas.len()).collect();
            assert_eq!(sizes, BTreeSet::from([f + 1]), "proofs of f + 1 INFORMs");
        }
        PlantedBug::Quorum2fPlus1 => {
            assert_eq!((usize::from(config.replica_count), config.nf()), (5, 2 * f + 1));
            let sizes: BTreeSet<usize> =
                cluster.completions.iter().map(|(_, done)| done.proof.replicas.len()).collect();
            assert_eq!(sizes, BTreeSet::from([2 * f + 1]), "proofs of 2f + 1 INFORMs");
        }
        PlantedBug::CheckpointFPlus1 => {
            for &id in all {
                let (certificate, _) = cluster.disk(id).checkpoint.as_ref().expect("a checkpoint");
                assert_eq!(certificate.signatures.len(), f + 1, "replica {id}: stable on f + 1");
            }
        }
        PlantedBug::VoteNotPersisted => {
            for &id in all {
                assert!(cluster.disk(id).votes.is_empty(), "replica {id} persisted a vote");
                assert!(cluster.replica(id).counters().slots_committed > 0);
            }
        }
        _ => {}
    }
}

#[test]
fn planted_vote_digest_unchecked_fault_free() {
    assert_fault_free(PlantedBug::VoteDigestUnchecked);
}

/// At n = 5 every certificate and proof has 3 replicas instead of 4, and nothing shows it.
#[test]
fn planted_quorum_2f_plus_1_fault_free() {
    assert_fault_free(PlantedBug::Quorum2fPlus1);
}

/// Proofs of f + 1 INFORMs: each proven result is the one every replica executed.
#[test]
fn planted_client_f_plus_1_fault_free() {
    assert_fault_free(PlantedBug::ClientFPlus1);
}

#[test]
fn planted_rollback_only_logs_fault_free() {
    assert_fault_free(PlantedBug::RollbackOnlyLogs);
}

#[test]
fn planted_dedup_not_restored_fault_free() {
    assert_fault_free(PlantedBug::DedupNotRestored);
}

#[test]
fn planted_undo_forward_order_fault_free() {
    assert_fault_free(PlantedBug::UndoForwardOrder);
}

#[test]
fn planted_first_seen_wins_fault_free() {
    assert_fault_free(PlantedBug::FirstSeenWins);
}

#[test]
fn planted_new_view_unvalidated_fault_free() {
    assert_fault_free(PlantedBug::NewViewUnvalidated);
}

#[test]
fn planted_inform_before_recertify_fault_free() {
    assert_fault_free(PlantedBug::InformBeforeRecertify);
}

/// `inform-before-recertify`: INFORMs tagged with the new view for kept slots go out before
/// the slots are certified in it.
///
/// Setup: n = 4 PoE-TS, 16 clients, 300 requests; replica 0, the primary of view 0, is
/// Byzantine with `withhold-certificate`: one honest backup alone gets its certificates,
/// executes and informs; the clients wait (two INFORMs are fewer than nf = 3), the other two
/// time out, the lone backup joins them, and view 1's decision carries the slots it executed.
/// Test: without the bug every INFORM of a proof rests on a certificate of the proof's view
/// recorded before the client received it (the checker's `inform-certificates`), and proofs
/// of view 1 exist for slots the lone backup kept and certified again; with the bug the lone
/// backup informs before its view-1 certificate. (The harm PROTOCOL §5.4 describes, a promise
/// taken back, needs a new primary that sends two groups different NV-PROPOSEs and a later
/// view change: this test judges the evidence instead.)
#[test]
fn planted_inform_before_recertify_informs_early() {
    let run = |bug| {
        let config = with_bug(Config::new(Protocol::PoeTs, 4, 16), bug);
        let mut cluster = attacked(&config, 461, 300, 0, &[Behaviour::WithholdCertificate]);
        cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
        assert!(
            cluster.byzantine(ReplicaId(0)).expect("hook").acted(Behaviour::WithholdCertificate)
                > 0
        );
        cluster
    };
    let honest = except(4, &[0]);
    let correct = run(None);
    let recertified: u64 =
        honest.iter().map(|id| correct.replica(*id).counters().slots_recertified).sum();
    assert!(recertified > 0, "kept slots were certified again in view 1");
    let late = correct.completions.iter().filter(|(_, done)| done.proof.view >= View(1)).count();
    assert!(late > 0, "clients completed in view 1");
    let result = inform_certificates(&correct, &honest);
    assert_eq!(result.verdict, history::Verdict::Valid, "{:?}", result.evidence);

    let buggy = run(Some(PlantedBug::InformBeforeRecertify));
    let result = inform_certificates(&buggy, &honest);
    assert_eq!(result.verdict, history::Verdict::Invalid, "{:?}", result.evidence);
}

/// The checker's `inform-certificates` over `cluster`'s completions and the ledgers of
/// `honest`.
fn inform_certificates(cluster: &Cluster, honest: &[ReplicaId]) -> checker::CheckResult {
    let operations: Vec<checker::validate::Operation> = cluster
        .completions
        .iter()
        .enumerate()
        .map(|(index, (client, done))| checker::validate::Operation {
            event: index,
            line: index + 1,
            process: u64::from(client.0),
            f: done.op.function().into(),
            key: done.op.keys().first().map(|key| key.to_string()),
            value: serde_json::Value::Null,
            outcome: checker::validate::Outcome::Ok(serde_json::Value::Null),
            call: 0,
            ret: None,
            client: Some(client.0),
            request: Some(done.request.0),
            proof: Some(Box::new((&done.proof).into())),
        })
        .collect();
    let ledgers = honest.iter().map(|id| (u32::from(id.0), cluster.events[id.index()].clone()));
    checker::informs::check(&operations, &ledgers.collect())
}

#[test]
fn planted_checkpoint_f_plus_1_fault_free() {
    assert_fault_free(PlantedBug::CheckpointFPlus1);
}

#[test]
fn planted_snapshot_digest_unchecked_fault_free() {
    assert_fault_free(PlantedBug::SnapshotDigestUnchecked);
}

#[test]
fn planted_vote_not_persisted_fault_free() {
    assert_fault_free(PlantedBug::VoteNotPersisted);
}

/// The fault-free tests cover every bug.
#[test]
fn planted_pbft_execute_at_prepared_fault_free() {
    assert_fault_free(PlantedBug::PbftExecuteAtPrepared);
}

#[test]
fn planted_pbft_commit_quorum_f_plus_1_fault_free() {
    assert_fault_free(PlantedBug::PbftCommitQuorumFPlus1);
}

#[test]
fn planted_every_bug_has_a_fault_free_test() {
    let source = include_str!("planted.rs");
    for bug in PlantedBug::ALL {
        let test = format!("fn planted_{}_fault_free()", bug.name().replace('-', "_"));
        assert!(source.contains(&test), "{bug}: no {test}");
    }
}

// --------------------------------------------------------------------------------------------
// Harm under an adversary within budget.

/// Runs `cluster` in steps of 20 ms of virtual time until two of `honest` diverge, at most for
/// `limit`; returns where.
fn run_until_diverged(
    cluster: &mut Cluster,
    honest: &[ReplicaId],
    limit: Duration,
) -> Option<String> {
    let end = cluster.time() + limit;
    while cluster.time() < end {
        cluster.run_for(Duration::from_millis(20));
        if let Some(found) = divergence(cluster, honest) {
            return Some(found);
        }
    }
    None
}

/// A Byzantine primary that sends replica 1 the first batch of two or more requests in reverse
/// order, and everything else as its core does (its SUPPORT or CERTIFY for the real batch
/// included, to replica 1 too).
fn reorder_once(cluster: &Cluster) -> OutboundHook {
    let reordered: Rc<RefCell<Option<Seq>>> = Rc::default();
    rewriting_hook(cluster, ReplicaId(0), move |to, message| match message {
        Message::Propose(mut propose)
            if to == ReplicaId(1)
                && propose.batch.len() >= 2
                && reordered.borrow().is_none_or(|seq| seq == propose.seq) =>
        {
            *reordered.borrow_mut() = Some(propose.seq);
            let mut batch = propose.batch.to_vec();
            batch.reverse();
            propose.batch = batch.into();
            Some(Message::Propose(propose))
        }
        other => Some(other),
    })
}

/// `vote-digest-unchecked`: a primary that equivocates toward one honest backup makes it
/// view-commit the other batch.
///
/// Setup: n = 4, replica 0 (primary) Byzantine: replica 1 gets one batch in reverse order; the
/// primary's vote for the real batch (PoE-MAC: its SUPPORT; PoE-TS: the CERTIFY its core
/// combines from the shares of 0, 2 and 3) goes to everyone.
/// Test: without the bug replica 1 refuses the others' votes, catches up, and all three honest
/// ledgers agree; with it, replica 1 view-commits its reversed batch on votes for the real one
/// and diverges from replicas 2 and 3 (PoE-TS and PoE-MAC). PoE-MAC also with the `equivocate`
/// behaviour: the halves it splits the honest replicas into commit different batches. (PoE-TS's
/// `equivocate` keeps the first side's CERTIFY from the other side, so it cannot show this bug.)
#[test]
fn planted_vote_digest_unchecked_harm() {
    let honest = except(4, &[0]);
    for protocol in [Protocol::PoeTs, Protocol::PoeMac] {
        let build = |bug| {
            let config = with_bug(Config::new(protocol, 4, 16), bug);
            let mut options = SimOptions::new(config, 411, 300);
            options.unplanted = vec![ReplicaId(0)];
            let mut cluster = Cluster::new(options);
            let hook = reorder_once(&cluster);
            cluster.set_outbound_hook(ReplicaId(0), hook);
            cluster
        };
        let mut correct = build(None);
        correct.run(STEPS_MAX_DEFAULT).expect("every request completes");
        correct.run_for(Duration::from_secs(2));
        assert_eq!(divergence(&correct, &honest), None, "{protocol:?}");
        assert!(broken_proofs(&correct, &honest, 3).is_empty());
        assert!(correct.replica(ReplicaId(1)).counters().rejected("digest_mismatch") > 0);

        let mut buggy = build(Some(PlantedBug::VoteDigestUnchecked));
        let found = run_until_diverged(&mut buggy, &honest, Duration::from_secs(1));
        assert!(found.is_some(), "{protocol:?}: the honest ledgers diverge");
    }

    let build = |bug| {
        let config = with_bug(Config::new(Protocol::PoeMac, 4, 16), bug);
        attacked(&config, 412, 300, 0, &[Behaviour::Equivocate])
    };
    let mut correct = build(None);
    correct.run(STEPS_MAX_DEFAULT).expect("every request completes");
    assert_eq!(divergence(&correct, &honest), None);
    let mut buggy = build(Some(PlantedBug::VoteDigestUnchecked));
    let found = run_until_diverged(&mut buggy, &honest, Duration::from_secs(1));
    assert!(found.is_some(), "equivocate: the honest ledgers diverge");
}

/// `quorum-2f-plus-1`: one Byzantine primary splits n = 5 (f = 1) replicas into two quorums of
/// 2f + 1 = 3 that share only itself.
///
/// Setup: n = 5, replica 0 (primary) runs `equivocate`: two honest replicas get one request
/// set, the other two another (PoE-TS: it share-signs both and certifies each side with the
/// side's shares). The adversary counts as the system does (its hook and core run the bug).
/// Test: with nf = 4 neither side reaches a quorum alone: every request completes and the honest
/// ledgers agree; with 2f + 1 both sides view-commit their batch and the halves diverge (PoE-TS
/// and PoE-MAC).
#[test]
fn planted_quorum_2f_plus_1_harm() {
    let honest = except(5, &[0]);
    for protocol in [Protocol::PoeTs, Protocol::PoeMac] {
        let build = |bug| {
            let config = with_bug(Config::new(protocol, 5, 16), bug);
            let mut cluster = Cluster::new(SimOptions::new(config.clone(), 421, 200));
            make_byzantine(&mut cluster, &config, 0, &[Behaviour::Equivocate]);
            cluster
        };
        let mut correct = build(None);
        correct.run(STEPS_MAX_DEFAULT).expect("every request completes");
        assert_eq!(divergence(&correct, &honest), None, "{protocol:?}");
        assert!(broken_proofs(&correct, &honest, 4).is_empty());

        let mut buggy = build(Some(PlantedBug::Quorum2fPlus1));
        let found = run_until_diverged(&mut buggy, &honest, Duration::from_secs(1));
        assert!(found.is_some(), "{protocol:?}: the honest ledgers diverge");
    }
}

/// The first of the two slots the lone executor holds alone.
const LONE: Seq = Seq(8);

/// The seed of [`lone_executor`]'s keys, workload and latencies.
const LONE_SEED: u64 = 431;

/// A lone executor, within budget (n = 4 PoE-MAC, f = 1).
///
/// Replica 0, the Byzantine primary of view 0, proposes slots LONE and LONE + 1 only to
/// replicas 2 and 3 and sends its SUPPORT for them (and its CHECKPOINT for LONE) only to
/// replica 3, then proposes nothing more; its VC-REQUESTs hide their evidence
/// (`hide-evidence`). So replica 3 alone among the honest replicas view-commits and executes
/// both (0's, 2's and its own supports), replicas 0 and 3 inform the clients, and replica 2
/// waits with two supports; replica 0 gives replicas 1 and 2 no state. Replica 3's messages
/// to replicas 1 and 2 are lost until it is in view 1 (asynchrony), so view 1's
/// NV-PROPOSE holds the VC-REQUESTs of 0, 1 and 2: it decides up to LONE − 1, and replica 3
/// must roll both slots back (PROTOCOL §5.3 step 5); their requests run again in view 1.
/// Checkpoints every `checkpoint_interval` slots; 16 clients on 2 keys, batches of 8, 400
/// requests. Returns once replicas 1 and 3 executed a few slots of view 1 beyond LONE + 1 (or
/// 10 s of virtual time passed).
fn lone_executor(bug: Option<PlantedBug>, checkpoint_interval: u64, seed: u64) -> Cluster {
    let last = LONE.next();
    let mut config = with_bug(Config::new(Protocol::PoeMac, 4, 16), bug);
    config.checkpoint_interval = checkpoint_interval;
    // Two full batches per round of the 16 closed-loop clients, so that LONE + 1 is proposed
    // while LONE's clients wait.
    config.batch_size_max = 8;
    let mut options = SimOptions::new(config.clone(), seed, 400);
    options.key_count = 2;
    options.unplanted = vec![ReplicaId(0)];
    let mut cluster = Cluster::new(options);
    make_byzantine(&mut cluster, &config, 0, &[Behaviour::HideEvidence]);
    let hook = rewriting_hook(&cluster, ReplicaId(0), move |to, message| {
        let (kept, lone) = match &message {
            Message::Propose(p) if p.view == View(0) => (p.seq <= last, p.seq >= LONE),
            Message::Support(s) if s.view == View(0) => (true, s.seq >= LONE && s.seq <= last),
            _ => (true, false),
        };
        // Its checkpoint vote for LONE goes to replica 3 only too, and the replicas in the
        // dark get no state from it (they would learn the lone slots' certificates).
        let (kept, lone) = match &message {
            Message::Checkpoint(c) => (true, c.seq == LONE),
            Message::StateTransfer(_) => (to == ReplicaId(3), false),
            _ => (kept, lone),
        };
        let to_lone = match &message {
            Message::Propose(_) => to.0 >= 2,
            _ => to == ReplicaId(3),
        };
        (kept && (!lone || to_lone)).then_some(message)
    });
    cluster.set_outbound_hook(ReplicaId(0), hook);
    let lone = ReplicaId(3);
    // Until it is in view 1 replica 3's messages to the other honest replicas are lost (the
    // harness delays them, `LONE_DELAY`): a replica that missed the lone slots' proposals sees
    // their votes and asks for state (`missed_proposal`); answered, it would learn the
    // certified lone slots from replica 3 and the view change would keep them.
    let cut = Rc::new(RefCell::new(true));
    let cutting = cut.clone();
    cluster.set_outbound_hook(
        lone,
        Box::new(move |transmit| match &transmit {
            Transmit::Replica { to, .. } if *cutting.borrow() && to.0 != 0 => Vec::new(),
            _ => vec![transmit],
        }),
    );
    cluster
        .run_until(STEPS_BOUND, |cluster| cluster.replica(lone).last_executed() >= last)
        .expect("replica 3 executes the lone slots");
    assert_eq!(cluster.replica(lone).view(), View(0), "in view 0");
    cluster
        .run_until(STEPS_BOUND, |cluster| cluster.replica(lone).view() >= View(1))
        .expect("replica 3 enters view 1");
    *cut.borrow_mut() = false;
    let end = cluster.time() + Duration::from_secs(10);
    let target = Seq(last.0 + 3);
    let _ = cluster.run_until(STEPS_BOUND, |cluster| {
        let ran = |id: u8| cluster.replica(ReplicaId(id)).last_executed() >= target;
        (ran(1) && ran(3)) || cluster.time() >= end
    });
    cluster
}

/// The lone executor without a bug: replica 3 rolls back the two slots and nothing else goes
/// wrong (PROTOCOL §5.3 steps 5–6).
///
/// Setup: [`lone_executor`], with checkpoints every 8 slots (LONE is one) and every 128.
/// Test: replica 3 rolled back both lone slots; no client completed on them (two INFORMs are
/// fewer than nf = 3), so no proof was rolled back; the honest ledgers agree, then every request
/// completes and every proof holds in the honest ledgers.
#[test]
fn planted_lone_executor_without_bug_is_safe() {
    let honest = except(4, &[0]);
    for interval in [8, 128] {
        let mut cluster = lone_executor(None, interval, LONE_SEED);
        assert!(cluster.replica(ReplicaId(3)).counters().slots_rolled_back >= 2);
        assert_eq!(divergence(&cluster, &honest), None);
        assert_eq!(rolled_back_proofs(&cluster, &honest), Vec::<String>::new());
        cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
        cluster.run_for(Duration::from_secs(1));
        assert_every_request_completed(&cluster, 400);
        super::recovery::assert_histories_agree(&cluster, &honest);
        super::recovery::assert_proofs_hold(&cluster, &honest);
    }
}

/// `client-f-plus-1`: the lone executor's clients complete on the INFORMs of replicas 0 and 3
/// (f + 1 = 2), and replica 3 then rolls those results back: a proof of execution disappears.
#[test]
fn planted_client_f_plus_1_harm() {
    let cluster = lone_executor(Some(PlantedBug::ClientFPlus1), 128, LONE_SEED);
    let rolled_back = rolled_back_proofs(&cluster, &except(4, &[0]));
    assert!(!rolled_back.is_empty(), "a proven request was rolled back");
    assert!(rolled_back.iter().all(|found| found.starts_with("replica 3")), "{rolled_back:?}");
}

/// `rollback-only-logs`: replica 3 records the rollback and keeps the lone slots; view 1 runs
/// other batches there, and replica 3 executes view 1's later slots on its own history: the
/// honest ledgers diverge.
#[test]
fn planted_rollback_only_logs_harm() {
    let cluster = lone_executor(Some(PlantedBug::RollbackOnlyLogs), 128, LONE_SEED);
    assert!(cluster.replica(ReplicaId(3)).counters().rollbacks > 0, "the rollback was recorded");
    assert!(cluster.replica(ReplicaId(3)).last_executed() > LONE, "and not done");
    let found = divergences(&cluster, &except(4, &[0]));
    let results = found.iter().any(|found| found.ends_with("results"));
    assert!(results, "honest replicas executed one slot with different results: {found:?}");
}

/// `dedup-not-restored`: after the rollback replica 3's at-most-once table still holds the
/// lone slots' requests, so when view 1 runs them it skips them while the others execute them:
/// the honest ledgers diverge.
#[test]
fn planted_dedup_not_restored_harm() {
    let cluster = lone_executor(Some(PlantedBug::DedupNotRestored), 128, LONE_SEED);
    assert!(cluster.replica(ReplicaId(3)).counters().slots_rolled_back >= 2);
    let found = divergences(&cluster, &except(4, &[0]));
    let results = found.iter().any(|found| found.ends_with("results"));
    assert!(results, "honest replicas executed one slot with different results: {found:?}");
}

/// `undo-forward-order`: replica 3 undoes the two lone slots oldest first; they wrote a key in
/// common, so the state it rolls back to is not the kept prefix's (its rollback event says so,
/// and what it executes on top may differ too).
#[test]
fn planted_undo_forward_order_harm() {
    // A seed where both lone slots write a key in common (with LONE_SEED the second only reads).
    let cluster = lone_executor(Some(PlantedBug::UndoForwardOrder), 128, 433);
    assert!(cluster.replica(ReplicaId(3)).counters().slots_rolled_back >= 2);
    let written = |seq: Seq| -> BTreeSet<String> {
        let execute = cluster.events[3]
            .iter()
            .find_map(|event| match event {
                LedgerEvent::Execute(execute) if execute.seq == seq.0 && execute.view == 0 => {
                    Some(execute)
                }
                _ => None,
            })
            .expect("replica 3 executed the lone slot in view 0");
        execute
            .requests
            .iter()
            .filter_map(|entry| match (&entry.op, &entry.result) {
                (Operation::Write { key, .. }, Some(OpResult::Written))
                | (Operation::Cas { key, .. }, Some(OpResult::Cas { swapped: true })) => {
                    Some(key.clone())
                }
                _ => None,
            })
            .collect()
    };
    assert!(!written(LONE).is_disjoint(&written(LONE.next())), "a key written in both");
    let found = divergences(&cluster, &except(4, &[0]));
    let results = found.iter().any(|found| found.ends_with("results"));
    assert!(results, "honest replicas executed one slot with different results: {found:?}");
}

/// `checkpoint-f-plus-1`: LONE is a checkpoint slot; replica 3's checkpoint vote and the
/// Byzantine replica 0's make it stable at replica 3 (f + 1 = 2), which discards its undo
/// information: the view change cannot roll LONE back, and replica 3 keeps a batch the others
/// replaced. Its stable checkpoint at LONE differs from theirs.
#[test]
fn planted_checkpoint_f_plus_1_harm() {
    let cluster = lone_executor(Some(PlantedBug::CheckpointFPlus1), 8, LONE_SEED);
    let found = divergences(&cluster, &except(4, &[0]));
    let checkpoint = format!("stable checkpoint {LONE} differs");
    assert!(found.iter().any(|found| found.ends_with(&checkpoint)), "{found:?}");
    let results = found.iter().any(|found| found.ends_with("results"));
    assert!(results, "honest replicas executed one slot with different results: {found:?}");
}

/// A stale certificate placed first in an NV-PROPOSE, within budget (n = 4 PoE-MAC, f = 1;
/// replica 2, the primary of view 2, is Byzantine and runs `hide-evidence`).
///
/// View 0: the network loses every SUPPORT for slot LONE except those to replica 2, and replica
/// 2 sends its own to nobody, so only it view-commits batch A at LONE; it never answers a state
/// request. The others view-commit later slots, wait at the hole, and change to view 1, whose
/// decision stops at LONE − 1. View 1 certifies another batch B at LONE and clients hold proofs
/// for it. Then replica 1, view 1's primary, is cut off; the others change to view 2, whose
/// primary, replica 2, sends an NV-PROPOSE led by its own VC-REQUEST, which `hide-evidence`
/// downgraded to the view-0 certificates it sent before (A at LONE), valid and re-signed.
/// Returns once replicas 0 and 3 entered view 2 (or 10 s of virtual time passed).
fn stale_certificate_first(bug: Option<PlantedBug>) -> Cluster {
    let mut config = with_bug(Config::new(Protocol::PoeMac, 4, 16), bug);
    // Two batches per round of the 16 clients: view 1 batches the waiting requests anew.
    config.batch_size_max = 8;
    let mut options = SimOptions::new(config.clone(), 441, 600);
    // Jitter, so that the retransmitted requests reach view 1's primary in another order.
    options.latency_min = Duration::from_micros(50);
    options.latency_max = Duration::from_micros(500);
    options.unplanted = vec![ReplicaId(2)];
    let mut cluster = Cluster::new(options);
    for id in [0, 1, 3].map(ReplicaId) {
        let hook = rewriting_hook(&cluster, id, |to, message| match &message {
            Message::Support(s) if s.view == View(0) && s.seq == LONE && to != ReplicaId(2) => None,
            _ => Some(message),
        });
        cluster.set_outbound_hook(id, hook);
    }
    make_byzantine(&mut cluster, &config, 2, &[Behaviour::HideEvidence]);
    let hidden: Rc<RefCell<Option<Arc<ViewChange>>>> = Rc::default();
    let held = hidden.clone();
    let hook = rewriting_hook(&cluster, ReplicaId(2), move |_, message| match message {
        Message::Support(s) if s.view == View(0) && s.seq == LONE => None,
        Message::StateTransfer(_) => None,
        Message::ViewChange(request) => {
            if request.target == View(2) {
                *held.borrow_mut() = Some(request.clone());
            }
            Some(Message::ViewChange(request))
        }
        Message::NewView(new_view) if new_view.view == View(2) => {
            let own = held.borrow().clone().expect("the VC-REQUEST left first");
            let mut requests = vec![own];
            requests.extend(
                new_view.requests.iter().filter(|request| request.replica != ReplicaId(2)).cloned(),
            );
            Some(Message::NewView(Arc::new(NewView { view: View(2), requests })))
        }
        other => Some(other),
    });
    cluster.set_outbound_hook(ReplicaId(2), hook);
    let proven_in_view_1 = |cluster: &Cluster| {
        let proven = |(_, done): &(_, crate::core::Completion)| {
            done.proof.view == View(1) && done.proof.seq == LONE
        };
        cluster.completions.iter().any(proven)
    };
    cluster.run_until(STEPS_BOUND, proven_in_view_1).expect("a proof for LONE in view 1");
    let batch_at_lone = |id: usize, view: u64| {
        cluster.events[id].iter().find_map(|event| match event {
            LedgerEvent::Execute(e) if e.seq == LONE.0 && e.view == view => Some(e.batch_digest),
            _ => None,
        })
    };
    let a = batch_at_lone(2, 0).expect("replica 2 view-committed A at LONE in view 0");
    assert!([0, 1, 3].into_iter().all(|id| batch_at_lone(id, 0).is_none()), "nobody else did");
    let b = [0, 1, 3].into_iter().find_map(|id| batch_at_lone(id, 1)).expect("B at LONE");
    assert_ne!(a, b, "view 1 batched the waiting requests anew");
    cluster.isolate(ReplicaId(1), true);
    let end = cluster.time() + Duration::from_secs(10);
    let _ = cluster.run_until(STEPS_BOUND, |cluster| {
        let entered = |id: u8| cluster.replica(ReplicaId(id)).view() >= View(2);
        (entered(0) && entered(3)) || cluster.time() >= end
    });
    cluster
}

/// `first-seen-wins`: the stale certificate for LONE comes first in view 2's NV-PROPOSE.
///
/// Setup: [`stale_certificate_first`].
/// Test: without the bug replicas 0 and 3 keep B (its view-1 certificate is the highest),
/// reconnected replica 1 catches up, every request completes and every proof holds; with it
/// they take A and roll back the proven B.
#[test]
fn planted_first_seen_wins_harm() {
    let honest = except(4, &[2]);
    let mut correct = stale_certificate_first(None);
    assert!(correct.byzantine(ReplicaId(2)).expect("hook").acted(Behaviour::HideEvidence) > 0);
    assert!(rolled_back_proofs(&correct, &honest).is_empty());
    correct.isolate(ReplicaId(1), false);
    correct.run(STEPS_MAX_DEFAULT).expect("every request completes");
    correct.run_for(Duration::from_secs(1));
    assert_every_request_completed(&correct, 600);
    assert_eq!(divergences(&correct, &honest), Vec::<String>::new());
    assert!(broken_proofs(&correct, &honest, 3).is_empty());

    let buggy = stale_certificate_first(Some(PlantedBug::FirstSeenWins));
    let rolled_back = rolled_back_proofs(&buggy, &honest);
    assert!(!rolled_back.is_empty(), "a proof for LONE in view 1 was rolled back");
}

/// `new-view-unvalidated`: a Byzantine new primary empties the VC-REQUESTs of its NV-PROPOSE.
///
/// Setup: n = 4 PoE-MAC, 16 clients, 400 requests; replica 1, the primary of view 1, is
/// Byzantine: in every NV-PROPOSE it sends, each VC-REQUEST loses its checkpoint and evidence
/// and keeps its (now invalid) signature. Once 100 requests completed, replica 0 (view 0's
/// primary) is cut off, so the others change to view 1.
/// Test: without the bug replicas 2 and 3 refuse the NV-PROPOSE, move on to view 2, and every
/// request completes with the honest ledgers in agreement; with it they accept a decision of
/// nothing (k_max = 0) and roll back every slot, proven ones included.
#[test]
fn planted_new_view_unvalidated_harm() {
    let build = |bug| {
        let config = with_bug(Config::new(Protocol::PoeMac, 4, 16), bug);
        let mut options = SimOptions::new(config, 451, 400);
        options.unplanted = vec![ReplicaId(1)];
        let mut cluster = Cluster::new(options);
        let hook = rewriting_hook(&cluster, ReplicaId(1), |_, message| match message {
            Message::NewView(new_view) => {
                let requests = new_view
                    .requests
                    .iter()
                    .map(|request| {
                        let mut emptied = (**request).clone();
                        emptied.checkpoint = None;
                        emptied.evidence.clear();
                        Arc::new(emptied)
                    })
                    .collect();
                Some(Message::NewView(Arc::new(NewView { view: new_view.view, requests })))
            }
            other => Some(other),
        });
        cluster.set_outbound_hook(ReplicaId(1), hook);
        cluster
            .run_until(STEPS_BOUND, |cluster| cluster.completions.len() >= 100)
            .expect("100 requests complete");
        cluster.isolate(ReplicaId(0), true);
        let end = cluster.time() + Duration::from_secs(5);
        let _ = cluster.run_until(STEPS_BOUND, |cluster| {
            let entered = |id: u8| cluster.replica(ReplicaId(id)).view() >= View(1);
            (entered(2) && entered(3)) || cluster.time() >= end
        });
        cluster
    };
    let honest = except(4, &[1]);
    let mut correct = build(None);
    assert!(correct.replica(ReplicaId(2)).counters().rejected("invalid_new_view") > 0);
    assert!(rolled_back_proofs(&correct, &honest).is_empty());
    correct.isolate(ReplicaId(0), false);
    correct.run(STEPS_MAX_DEFAULT).expect("every request completes");
    correct.run_for(Duration::from_secs(1));
    assert_every_request_completed(&correct, 400);
    assert_eq!(divergences(&correct, &honest), Vec::<String>::new());
    assert!(broken_proofs(&correct, &honest, 3).is_empty());

    let buggy = build(Some(PlantedBug::NewViewUnvalidated));
    assert_eq!(buggy.replica(ReplicaId(2)).view(), View(1), "the emptied NV-PROPOSE installed");
    let rolled_back = rolled_back_proofs(&buggy, &except(4, &[1]));
    assert!(!rolled_back.is_empty(), "proven slots were rolled back");
}

/// `snapshot-digest-unchecked`: a Byzantine replica sends a real checkpoint certificate with a
/// forged snapshot.
///
/// Setup: n = 4 PoE-MAC, checkpoints every 8 slots, 16 clients, 400 requests; replica 0 is
/// Byzantine. Replica 3 is cut off after 20 requests completed; once replica 0 holds a stable
/// checkpoint above replica 3's last executed slot, it sends replica 3 a STATE-TRANSFER with
/// that checkpoint's certificate and its snapshot with one register changed.
/// Test: without the bug replica 3 refuses it (the snapshot's digest is not the certified one),
/// reconnects and ends with the others' ledger; with it replica 3 installs the forged state:
/// its state at the checkpoint's slot differs from what replicas 1 and 2 executed there.
#[test]
fn planted_snapshot_digest_unchecked_harm() {
    let honest = except(4, &[0]);
    for bug in [None, Some(PlantedBug::SnapshotDigestUnchecked)] {
        let mut config = with_bug(Config::new(Protocol::PoeMac, 4, 16), bug);
        config.checkpoint_interval = 8;
        let mut options = SimOptions::new(config, 461, 400);
        options.unplanted = vec![ReplicaId(0)];
        let mut cluster = Cluster::new(options);
        let cut_off = ReplicaId(3);
        cluster
            .run_until(STEPS_BOUND, |cluster| cluster.completions.len() >= 20)
            .expect("20 requests complete");
        cluster.isolate(cut_off, true);
        let behind = cluster.replica(cut_off).last_executed();
        cluster
            .run_until(STEPS_BOUND, |cluster| cluster.disk(ReplicaId(0)).checkpoint_seq() > behind)
            .expect("replica 0 makes a checkpoint above replica 3 stable");
        let (certificate, snapshot) =
            cluster.disk(ReplicaId(0)).checkpoint.clone().expect("a stable checkpoint");
        let mut forged = snapshot.clone();
        let (key, value) = forged.store.iter().next().expect("a register");
        let (key, value) = (key.clone(), *value);
        forged.store.insert(key, value + 1_000_000);
        let seq = certificate.seq;
        let transfer = StateTransfer {
            checkpoint: Some((certificate, forged)),
            new_view: None,
            tail: Vec::new(),
            head: seq,
        };
        let sent =
            cluster.inject(ReplicaId(0), cut_off, &Message::StateTransfer(Arc::new(transfer)));
        let executed_at = |id: u8| {
            cluster.events[usize::from(id)].iter().find_map(|event| match event {
                LedgerEvent::Execute(e) if e.seq == seq.0 => Some(e.state_digest),
                _ => None,
            })
        };
        let theirs = executed_at(1).expect("replica 1 executed the checkpoint's slot");
        assert_eq!(executed_at(2), Some(theirs));
        if bug.is_none() {
            assert!(sent.is_err(), "the forged snapshot is refused: {sent:?}");
            assert_ne!(cluster.replica(cut_off).last_executed(), seq);
            cluster.isolate(cut_off, false);
            cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
            cluster.run_for(Duration::from_secs(1));
            assert_eq!(divergences(&cluster, &honest), Vec::<String>::new());
            super::recovery::assert_histories_agree(&cluster, &honest);
        } else {
            assert_eq!(sent, Ok(()), "the forged snapshot is installed");
            let replica = cluster.replica(cut_off);
            assert_eq!((replica.last_executed(), replica.status().stable_checkpoint), (seq, seq));
            assert_ne!(
                replica.state().digest(),
                theirs,
                "replica 3's state at {seq} is not theirs"
            );
        }
    }
}

/// `vote-not-persisted`: a crash makes an honest replica forget what it supported.
///
/// Setup: n = 7 PoE-MAC (f = 2), no workload; replica 0, the primary of view 0, is Byzantine
/// and equivocates by hand at slot 1. It proposes batch A to replicas 1–4, which support it,
/// and adds its own SUPPORT for A toward 2 and 4: they view-commit A. Replicas 1 and 3 crash
/// and restart one after the other, right after their SUPPORTs left (one Byzantine replica and
/// at most one crashed at any time: within f = 2). Then, before anything else reaches them,
/// replica 0 proposes batch B for the same slot to replicas 1, 3, 5 and 6, with its SUPPORT for
/// B toward 5 and 6.
/// Test: without the bug 1 and 3 restored their votes and refuse B, so B gets four supports and
/// nothing diverges; with it they support B too, B gets nf = 5, and replicas 5 and 6 execute B
/// at slot 1 where 2 and 4 executed A.
#[test]
fn planted_vote_not_persisted_harm() {
    for bug in [None, Some(PlantedBug::VoteNotPersisted)] {
        let config = with_bug(Config::new(Protocol::PoeMac, 7, 4), bug);
        let mut options = SimOptions::new(config, 471, 0);
        options.unplanted = vec![ReplicaId(0)];
        let mut cluster = Cluster::new(options);
        let write = |value| Operation::Write { key: "x".into(), value };
        let a: Arc<[SignedRequest]> = vec![signed_request(&cluster, 0, 1, write(1))].into();
        let b: Arc<[SignedRequest]> = vec![signed_request(&cluster, 1, 1, write(2))].into();
        let propose = |batch: &Arc<[SignedRequest]>| {
            Message::Propose(Propose { view: View(0), seq: Seq(1), batch: batch.clone() })
        };
        let support = |cluster: &Cluster, batch: &Arc<[SignedRequest]>| {
            let digest = proposal_digest(View(0), Seq(1), &batch_digest(batch));
            let key = &cluster.keys().replicas[0].signing_key;
            let proof = SupportProof::Signature(key.sign(&support_signing_bytes(&digest)));
            Message::Support(Support {
                view: View(0),
                seq: Seq(1),
                digest,
                replica: ReplicaId(0),
                proof,
            })
        };
        let primary = ReplicaId(0);
        for to in [1, 2, 3, 4].map(ReplicaId) {
            cluster.inject(primary, to, &propose(&a)).expect("A is accepted");
        }
        let support_a = support(&cluster, &a);
        for to in [2, 4].map(ReplicaId) {
            cluster.inject(primary, to, &support_a).expect("0's support for A");
        }
        // Killed right after their supports left (those in flight still arrive), and up again
        // before anything else reaches them.
        for id in [1, 3].map(ReplicaId) {
            cluster.crash(id);
            cluster.restart(id);
        }
        let mut refused = 0;
        for to in [1, 3, 5, 6].map(ReplicaId) {
            if cluster.inject(primary, to, &propose(&b)).is_err() {
                refused += 1;
            }
        }
        let support_b = support(&cluster, &b);
        for to in [5, 6].map(ReplicaId) {
            cluster.inject(primary, to, &support_b).expect("0's support for B");
        }
        cluster.run_for(Duration::from_millis(5));
        for id in [2, 4].map(ReplicaId) {
            assert_eq!(cluster.replica(id).last_executed(), Seq(1), "replica {id} executed A");
        }
        let honest = except(7, &[0]);
        let found = divergences(&cluster, &honest);
        if bug.is_none() {
            assert_eq!(refused, 2, "replicas 1 and 3 remember their votes for A");
            assert_eq!(found, Vec::<String>::new());
            assert_eq!(cluster.replica(ReplicaId(5)).last_executed(), Seq(0));
        } else {
            assert_eq!(refused, 0, "replicas 1 and 3 forgot their votes for A");
            assert_eq!(cluster.replica(ReplicaId(5)).last_executed(), Seq(1), "B executed");
            let results = found.iter().any(|found| found.ends_with("results"));
            assert!(results, "replicas 2 and 5 executed different batches at 1: {found:?}");
        }
    }
}

/// `vote-not-persisted` found by the adversary itself: the amnesia probe (`re-propose` with
/// the lone executor), as `scenarios/amnesiac-voter.toml` plays it on real processes.
///
/// Setup: n = 4 (PoE-TS and PoE-MAC), checkpoints every 8 slots; replica 0, the primary of
/// view 0, is Byzantine with `in-the-dark`, `withhold-certificate` and `re-propose`: from a
/// checkpoint slot on, replica 1 gets no proposal, replica 3 alone gets the primary's evidence
/// (its messages take 600 ms, as the harness delays them), replica 2 supports each slot without
/// seeing it committed; the primary offers replicas 1 and 2 a second batch for those slots every
/// 100 ms. Once it has, replica 2 is killed and restarted (within the budget: a crash and restart
/// with the durable state intact).
/// Test: without the bug replica 2 refuses the second batch after its restart as before, the
/// honest replicas stay in agreement and every request completes; with it, replica 2 supports
/// the second batch, which gets nf votes, and honest replicas execute different batches at one
/// slot.
#[test]
fn planted_vote_not_persisted_harm_by_the_adversary() {
    let plan = [Behaviour::InTheDark, Behaviour::WithholdCertificate, Behaviour::RePropose];
    let (dark, lone) =
        crate::byzantine::hook::lone_roles(4, 1, ReplicaId(0), &BTreeSet::new(), View(0));
    assert_eq!((dark, lone), (BTreeSet::from([ReplicaId(1)]), Some(ReplicaId(3))));
    let (voter, lone) = (ReplicaId(2), ReplicaId(3));
    let honest = except(4, &[0]);
    for protocol in [Protocol::PoeTs, Protocol::PoeMac] {
        for bug in [None, Some(PlantedBug::VoteNotPersisted)] {
            let requests = 300;
            let mut config = with_bug(Config::new(protocol, 4, 16), bug);
            config.checkpoint_interval = 8;
            let mut cluster = attacked(&config, 17, requests, 0, &plan);
            cluster.slow_down(lone, Duration::from_millis(600));
            let offered = |cluster: &Cluster| {
                cluster
                    .byzantine(ReplicaId(0))
                    .expect("replica 0 is Byzantine")
                    .acted(Behaviour::RePropose)
                    > 0
            };
            cluster.run_until(STEPS_BOUND, offered).expect("the primary offers a second batch");
            cluster.kill(voter);
            cluster.run_for(Duration::from_millis(50));
            cluster.restart(voter);
            let label = format!("{protocol:?} {bug:?}");
            if bug.is_none() {
                cluster
                    .run_until(STEPS_BOUND, |cluster| cluster.replica(lone).view() >= View(1))
                    .unwrap_or_else(|_| panic!("{label}: the view changes"));
                cluster.slow_down(lone, Duration::ZERO);
                let refused = cluster.replica(voter).counters().rejected("conflicting_proposal");
                assert!(refused > 0, "{label}: the restarted voter refused the second batch");
                cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
                assert_every_request_completed(&cluster, requests as usize);
                assert_eq!(divergences(&cluster, &honest), Vec::<String>::new(), "{label}");
            } else {
                let found = run_until_diverged(&mut cluster, &honest, Duration::from_secs(5));
                assert!(found.is_some(), "{label}: two batches executed at one slot");
            }
        }
    }
}

/// `new-view-unvalidated` against the adversary's own behaviour, not a hand-made hook: replica
/// 1 runs `nv-equivocate` and becomes the primary of view 1 when replica 0 crashes; every nf
/// subset of the VC-REQUESTs decides the same, so it sends one honest replica a forged
/// NV-PROPOSE (the evidence stripped, the others' signatures broken), and its STATE-TRANSFERs
/// carry no NV-PROPOSE while it holds one, then the one each receiver was sent. The correct
/// replica refuses the forgery; the buggy one installs it and rolls back slots clients hold
/// proofs for.
#[test]
fn planted_new_view_unvalidated_harm_by_the_adversary() {
    let build = |bug| {
        let config = with_bug(Config::new(Protocol::PoeTs, 4, 16), bug);
        let mut cluster = attacked(&config, 41, 400, 1, &[Behaviour::NvEquivocate]);
        cluster
            .run_until(STEPS_BOUND, |cluster| cluster.completions.len() >= 100)
            .expect("100 requests complete");
        cluster.crash(ReplicaId(0));
        cluster.run_for(Duration::from_secs(5));
        cluster
    };
    let honest = except(4, &[0, 1]);
    let correct = build(None);
    let hook = correct.byzantine(ReplicaId(1)).expect("hook");
    assert!(hook.counter("nv-equivocate.forged") > 0, "{:?}", hook.counters());
    let refused: u64 =
        honest.iter().map(|&id| correct.replica(id).counters().rejected("invalid_new_view")).sum();
    assert!(refused > 0, "an honest replica refused the forged NV-PROPOSE");
    assert!(rolled_back_proofs(&correct, &honest).is_empty());
    let buggy = build(Some(PlantedBug::NewViewUnvalidated));
    let rolled_back = rolled_back_proofs(&buggy, &honest);
    assert!(!rolled_back.is_empty(), "proven slots were rolled back");
}

/// PBFT's lone executor (PROTOCOL §7): replica 0, the Byzantine primary of view 0, keeps
/// replica 1 in the dark for slots LONE and LONE + 1 and sends its PREPARE and COMMIT for them
/// to replica 3 only; replica 3's messages to replicas 1 and 2 are lost until it is in view 1.
/// Replica 3 is then the only honest replica prepared at those slots, with two COMMITs (its
/// own and the primary's) of the nf = 3 needed. The view change (replica 1's NV-PROPOSE from
/// the VIEW-CHANGEs of 0, 1 and 2, replica 0 hiding its evidence) orders other batches there.
/// Returns after 10 s of virtual time past replica 3's view change (or 20 s in all).
fn pbft_lone_executor(bug: Option<PlantedBug>) -> Cluster {
    let last = LONE.next();
    let mut config = with_bug(Config::new(Protocol::Pbft, 4, 16), bug);
    config.batch_size_max = 8;
    let mut options = SimOptions::new(config.clone(), LONE_SEED, 400);
    options.key_count = 2;
    options.unplanted = vec![ReplicaId(0)];
    let mut cluster = Cluster::new(options);
    make_byzantine(&mut cluster, &config, 0, &[Behaviour::HideEvidence]);
    let hook = rewriting_hook(&cluster, ReplicaId(0), move |to, message| {
        let lone_slot = |view: View, seq: Seq| view == View(0) && seq >= LONE && seq <= last;
        let (kept, lone) = match &message {
            Message::Propose(p) if p.view == View(0) => (p.seq <= last, p.seq >= LONE),
            Message::Support(s) => (true, lone_slot(s.view, s.seq)),
            Message::Commit(c) => (true, lone_slot(c.view, c.seq)),
            Message::StateTransfer(_) => (to == ReplicaId(3), false),
            _ => (true, false),
        };
        let to_lone = match &message {
            Message::Propose(_) => to.0 >= 2,
            _ => to == ReplicaId(3),
        };
        (kept && (!lone || to_lone)).then_some(message)
    });
    cluster.set_outbound_hook(ReplicaId(0), hook);
    let lone = ReplicaId(3);
    let cut = Rc::new(RefCell::new(true));
    let cutting = cut.clone();
    cluster.set_outbound_hook(
        lone,
        Box::new(move |transmit| match &transmit {
            Transmit::Replica { to, .. } if *cutting.borrow() && to.0 != 0 => Vec::new(),
            _ => vec![transmit],
        }),
    );
    let end = cluster.time() + Duration::from_secs(20);
    let _ = cluster.run_until(STEPS_BOUND, |cluster| {
        cluster.replica(lone).view() >= View(1) || cluster.time() >= end
    });
    *cut.borrow_mut() = false;
    cluster.run_for(Duration::from_secs(10));
    cluster
}

/// The checker's `committed-final` over the honest replicas' ledgers of `cluster`.
fn committed_final(cluster: &Cluster, honest: &[ReplicaId]) -> checker::CheckResult {
    let ledgers: BTreeMap<u32, Vec<LedgerEvent>> =
        honest.iter().map(|&id| (u32::from(id.0), cluster.events[id.index()].clone())).collect();
    checker::protocol::committed_final(&ledgers)
}

/// The correct PBFT under its lone executor: replica 3 prepared the lone slots but never
/// committed them (two COMMITs of three), so it never executed them, rolls nothing back, and
/// the honest ledgers agree; then every request completes.
#[test]
fn planted_pbft_lone_executor_without_bug_is_safe() {
    let honest = except(4, &[0]);
    let mut cluster = pbft_lone_executor(None);
    let lone = cluster.replica(ReplicaId(3)).counters();
    assert!(lone.slots_prepared > 0 && lone.views_entered > 0, "{lone:?}");
    assert_eq!(lone.rollbacks, 0);
    assert_eq!(committed_final(&cluster, &honest).verdict, history::Verdict::Valid);
    assert_eq!(divergence(&cluster, &honest), None);
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    assert_every_request_completed(&cluster, 400);
    super::recovery::assert_histories_agree(&cluster, &honest);
}

/// `pbft-execute-at-prepared` and `pbft-commit-quorum-f-plus-1` under the same attack: replica
/// 3 executes the lone slots (prepared; two COMMITs = f + 1) and the view change, which never
/// heard of them, makes it roll them back: `committed-final` finds the rollback.
#[test]
fn planted_pbft_commit_bugs_harm() {
    let honest = except(4, &[0]);
    for bug in [PlantedBug::PbftExecuteAtPrepared, PlantedBug::PbftCommitQuorumFPlus1] {
        let cluster = pbft_lone_executor(Some(bug));
        assert!(cluster.replica(ReplicaId(3)).counters().rollbacks > 0, "{bug}");
        let result = committed_final(&cluster, &honest);
        assert_eq!(result.verdict, history::Verdict::Invalid, "{bug}: {:?}", result.evidence);
    }
}
