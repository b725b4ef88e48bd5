//! PBFT (PROTOCOL §7) on the shared replica core: the normal case with its commit phase, no
//! speculation, view changes with prepared certificates, restarts, and the Byzantine
//! behaviours mapped onto PBFT's messages. Mirrors the PoE cluster tests.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use history::{Digest, LedgerEvent};

use super::byzantine::{
    assert_equivocating_primary_safe, assert_forgeries_refused, cluster_with, divergence,
};
use super::recovery::{
    Kill, assert_primary_crash_recovers, assert_restarts_never_double_support, message_of,
};
use super::{assert_completions_proven, assert_ledgers_agree};
use crate::byzantine::Behaviour;
use crate::core::message::{Commit, batch_digest};
use crate::core::{Config, Message, Protocol, Rejection, ReplicaId, Seq, Transmit, View};
use crate::crypto::dealer::ReplicaSecrets;
use crate::sim::{Cluster, STEPS_MAX_DEFAULT, SimOptions};

fn all(n: u8) -> Vec<ReplicaId> {
    (0..n).map(ReplicaId).collect()
}

/// Normal case at n = 4, 5 and 7 (f = 1, 1, 2; nf = 3, 4, 5).
///
/// Test: every request completes with f + 1 matching replies that name what the replicas
/// executed; every ledger agrees; each executed slot was prepared and committed (COMMITs sent,
/// slots prepared, no rollback, no INFORM before the commit phase).
#[test]
fn cluster_pbft_commits_at_n4_n5_n7() {
    for (n, seed) in [(4, 301), (5, 302), (7, 303)] {
        let config = Config::new(Protocol::Pbft, n, 16);
        let f = config.f();
        let mut cluster = Cluster::new(SimOptions::new(config, seed, 600));
        cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
        assert_eq!(cluster.completions.len(), 600, "n = {n}");
        let head = assert_ledgers_agree(&cluster, &all(n));
        assert_completions_proven(&cluster, ReplicaId(1));
        assert!(cluster.completions.iter().all(|(_, done)| done.proof.replicas.len() > f));
        for replica in cluster.replicas() {
            let counters = replica.counters();
            assert!(counters.slots_prepared >= head.0, "n = {n}: {counters:?}");
            assert!(counters.commits_sent >= head.0, "n = {n}: every replica commits");
            assert_eq!(counters.rollbacks, 0);
            assert_eq!(counters.slots_executed, head.0);
        }
    }
}

/// No speculation (PROTOCOL §7): a prepared slot does not execute until nf COMMITs are in.
///
/// Setup: n = 4 PBFT; replicas 1, 2 and 3 never send their COMMITs, so no replica ever holds
/// more than two of the nf = 3 needed. The same setup in PoE-MAC, which has no commit phase,
/// executes.
/// Test: PBFT prepares slots everywhere and executes none, informs no client; PoE-MAC completes.
#[test]
fn cluster_pbft_executes_only_committed_local() {
    let drop_commits = || -> crate::sim::OutboundHook {
        Box::new(|transmit| match message_of(&transmit) {
            Some((_, Message::Commit(_))) => Vec::new(),
            _ => vec![transmit],
        })
    };
    let mut pbft = Cluster::new(SimOptions::new(Config::new(Protocol::Pbft, 4, 4), 311, 40));
    for id in 1..4 {
        pbft.set_outbound_hook(ReplicaId(id), drop_commits());
    }
    pbft.run_for(Duration::from_millis(300));
    for replica in pbft.replicas() {
        assert!(replica.counters().slots_prepared > 0, "replica {} prepared", replica.id());
        assert_eq!(replica.last_executed(), Seq(0), "replica {} executed", replica.id());
        assert_eq!(replica.counters().informs_sent, 0);
    }
    assert!(pbft.completions.is_empty());

    let mut poe = Cluster::new(SimOptions::new(Config::new(Protocol::PoeMac, 4, 4), 311, 40));
    for id in 1..4 {
        poe.set_outbound_hook(ReplicaId(id), drop_commits());
    }
    poe.run(STEPS_MAX_DEFAULT).expect("PoE-MAC has no commit phase to starve");
    assert_eq!(poe.completions.len(), 40);
}

/// Forged, mismatched and out-of-window messages are refused with a typed reason and counted.
///
/// Setup: n = 4 PBFT after some requests committed; replica 3 (as a Byzantine sender) sends
/// replica 1 a COMMIT naming replica 2, a COMMIT for another digest than the slot's proposal,
/// a COMMIT far above the window, a COMMIT of another view, and a PREPARE whose signature is
/// broken.
/// Test: each is refused with its reason; replica 1 goes on, and the run completes.
#[test]
fn cluster_pbft_rejects_forged_mismatched_and_out_of_window_messages() {
    let config = Config::new(Protocol::Pbft, 4, 4);
    let log_size = config.log_size;
    let mut cluster = Cluster::new(SimOptions::new(config, 312, 400));
    cluster
        .run_until(STEPS_MAX_DEFAULT, |cluster| cluster.completions.len() >= 100)
        .expect("requests complete");
    // Aimed at the next slot, whose proposal replica 1 gets later.
    let (from, to) = (ReplicaId(3), ReplicaId(1));
    let view = cluster.replica(to).view();
    let next = cluster.replica(to).last_executed().next();
    let digest = crate::core::Digest([9; 32]);
    let commit = |replica: u8, view: View, seq: Seq| {
        Message::Commit(Commit { view, seq, digest, replica: ReplicaId(replica) })
    };
    let refused = |result: Result<(), Rejection>| result.expect_err("refused").kind();
    assert_eq!(
        refused(cluster.inject(from, to, &commit(2, view, next))),
        "support_sender_mismatch"
    );
    let far = Seq(next.0 + 4 * log_size);
    assert_eq!(refused(cluster.inject(from, to, &commit(3, view, far))), "outside_window");
    assert_eq!(refused(cluster.inject(from, to, &commit(3, View(view.0 + 7), next))), "wrong_view");
    // A COMMIT ahead of its proposal is kept, and dropped (counted) once the proposal names
    // another digest.
    cluster.inject(from, to, &commit(3, view, next)).expect("kept until the proposal is in");
    let mut forged = crate::core::message::Support {
        view,
        seq: next,
        digest,
        replica: from,
        proof: crate::core::message::SupportProof::Signature(crate::crypto::ed25519::Signature(
            [3; 64],
        )),
    };
    assert_eq!(
        refused(cluster.inject(from, to, &Message::Support(forged.clone()))),
        "invalid_support_signature"
    );
    forged.replica = ReplicaId(2);
    assert_eq!(
        refused(cluster.inject(from, to, &Message::Support(forged))),
        "support_sender_mismatch"
    );
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    assert_eq!(cluster.completions.len(), 400);
    assert_ledgers_agree(&cluster, &all(4));
    let counters = cluster.replica(to).counters();
    assert!(counters.rejected("digest_mismatch") >= 1, "{:?}", counters.rejected);
}

/// View change after a primary crash (PROTOCOL §7: VIEW-CHANGE with prepared certificates,
/// NEW-VIEW, the normal three phases again).
#[test]
fn cluster_pbft_primary_crash_view_change() {
    assert_primary_crash_recovers(Protocol::Pbft, 313);
}

/// A prepared request survives the view change (PROTOCOL §7 view change steps 1–4).
///
/// Setup: n = 4 PBFT; every COMMIT of view 0 for slot 1 is lost, so slot 1 is prepared at every
/// replica and committed nowhere, and nothing executes; the backups' timers expire.
/// Test: the new view re-proposes slot 1 with the batch view 0 prepared (the prepared
/// certificate of the highest view), every replica executes exactly that batch at slot 1, in
/// view 1 or later, and every request completes.
#[test]
fn cluster_pbft_prepared_request_survives_view_change() {
    let mut cluster = Cluster::new(SimOptions::new(Config::new(Protocol::Pbft, 4, 4), 314, 60));
    let prepared: Rc<RefCell<Option<Digest>>> = Rc::default();
    for id in all(4) {
        let prepared = prepared.clone();
        cluster.set_outbound_hook(
            id,
            Box::new(move |transmit| match message_of(&transmit) {
                Some((_, Message::Commit(commit)))
                    if commit.view == View(0) && commit.seq == Seq(1) =>
                {
                    Vec::new()
                }
                Some((_, Message::Propose(propose)))
                    if propose.view == View(0) && propose.seq == Seq(1) =>
                {
                    *prepared.borrow_mut() = Some(batch_digest(&propose.batch));
                    vec![transmit]
                }
                _ => vec![transmit],
            }),
        );
    }
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes after the view change");
    let prepared = prepared.borrow().expect("slot 1 was proposed in view 0");
    for id in all(4) {
        let first = cluster.events[id.index()].iter().find_map(|event| match event {
            LedgerEvent::Execute(execute) if execute.seq == 1 => Some(execute.clone()),
            _ => None,
        });
        let first = first.expect("slot 1 executed");
        assert_eq!(first.batch_digest, prepared, "replica {id} executed the prepared batch");
        assert!(first.view >= 1, "replica {id} executed slot 1 in view {}", first.view);
        assert_eq!(cluster.replica(id).counters().rollbacks, 0);
    }
    assert_ledgers_agree(&cluster, &all(4));
}

/// A new primary whose PRE-PREPAREs do not match what the VIEW-CHANGEs it carries decide is
/// refused (PROTOCOL §7 step 4: backups recompute O from V and reject a mismatch); so is a
/// NEW-VIEW whose VIEW-CHANGEs are for another view or too few.
///
/// Setup: n = 4 PBFT with 4 clients; COMMITs of view 0 are lost, so slots are prepared but not
/// committed when the primary crashes; replica 1, the new primary, re-proposes each carried
/// slot with its batch reversed (valid client signatures, another digest).
/// Test: the backups refuse them (`carried_mismatch`), replace replica 1 as well, agree, and
/// every request completes; NEW-VIEWs built from the wrong VIEW-CHANGEs are refused.
#[test]
fn cluster_pbft_new_view_that_does_not_match_is_rejected() {
    let mut config = Config::new(Protocol::Pbft, 4, 8);
    config.batch_size_max = 4;
    let mut cluster = Cluster::new(SimOptions::new(config, 315, 200));
    let new_views: Rc<RefCell<Vec<Arc<crate::core::message::NewView>>>> = Rc::default();
    let liar = cluster.keys().replicas[1].clone();
    for id in all(4) {
        let new_views = new_views.clone();
        let liar = liar.clone();
        cluster.set_outbound_hook(
            id,
            Box::new(move |transmit| match message_of(&transmit) {
                Some((_, Message::Commit(commit))) if commit.view == View(0) => Vec::new(),
                Some((to, Message::Propose(mut propose)))
                    if id == ReplicaId(1) && propose.view == View(1) && propose.batch.len() > 1 =>
                {
                    let mut batch = propose.batch.to_vec();
                    batch.reverse();
                    propose.batch = batch.into();
                    vec![reseal(&liar, to, &Message::Propose(propose))]
                }
                Some((_, Message::NewView(new_view))) => {
                    new_views.borrow_mut().push(new_view);
                    vec![transmit]
                }
                _ => vec![transmit],
            }),
        );
    }
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes in a later view");
    let honest = [ReplicaId(0), ReplicaId(2), ReplicaId(3)];
    let mismatched: u64 =
        honest.iter().map(|&id| cluster.replica(id).counters().rejected("carried_mismatch")).sum();
    assert!(mismatched > 0, "the reversed PRE-PREPAREs were refused");
    assert!(honest.iter().all(|&id| cluster.replica(id).view() >= View(2)), "replica 1 replaced");
    super::recovery::assert_common_slots_agree(&cluster, &all(4));
    // NEW-VIEWs from the wrong VIEW-CHANGEs.
    let captured = new_views.borrow().first().cloned().expect("a NEW-VIEW was sent");
    let primary = cluster.replica(ReplicaId(0)).config().primary(View(captured.view.0 + 40));
    let relabelled =
        crate::core::message::NewView { view: View(captured.view.0 + 40), ..(*captured).clone() };
    let to = if primary == ReplicaId(2) { ReplicaId(3) } else { ReplicaId(2) };
    let result = cluster.inject(primary, to, &Message::NewView(Arc::new(relabelled)));
    assert_eq!(result.expect_err("refused").kind(), "invalid_new_view");
    let mut short = (*captured).clone();
    short.view = View(captured.view.0 + 40);
    short.requests.truncate(2);
    let result = cluster.inject(primary, to, &Message::NewView(Arc::new(short)));
    assert_eq!(result.expect_err("refused").kind(), "invalid_new_view");
}

/// Seals `message` to `to` with the pair key of the sender `secrets`, as a faulty one can.
fn reseal(secrets: &ReplicaSecrets, to: ReplicaId, message: &Message) -> Transmit {
    let from = ReplicaId(secrets.id as u8);
    let key = &secrets.replica_macs[to.index()];
    Transmit::Replica { to, envelope: crate::core::Envelope::new(message, key, from, to) }
}

/// Restarts from the persisted state never sign two PREPAREs (nor COMMITs) for one slot of a
/// view; the kills land just after a vote.
#[test]
fn cluster_pbft_restart_never_double_votes() {
    let kills =
        [Kill::new(0, 0, 32_000, 828), Kill::new(2, 3, 40_000, 600), Kill::new(1, 2, 9_000, 900)];
    assert_restarts_never_double_support(316, Protocol::Pbft, &kills);
}

/// Equivocating PRE-PREPAREs within the budget: the honest replicas refuse the other side's
/// PREPAREs and COMMITs or replace the primary; they agree and every request completes.
#[test]
fn byzantine_pbft_equivocating_primary() {
    assert_equivocating_primary_safe(Protocol::Pbft, 317);
}

/// Forged MACs and PREPARE signatures are refused and counted.
#[test]
fn byzantine_pbft_forged_authentication() {
    assert_forgeries_refused(Protocol::Pbft, 318, "invalid_support_signature");
}

/// Beyond the budget PBFT breaks too: with two colluders at n = 4 (the primary equivocating,
/// a backup PREPAREing and COMMITting both sides), each side gathers nf = 3 PREPAREs and
/// COMMITs, and two honest replicas commit and execute different batches at one slot.
#[test]
fn byzantine_pbft_colluding_equivocators_diverge() {
    let config = Config::new(Protocol::Pbft, 4, 16);
    let both: &[Behaviour] = &[Behaviour::Equivocate];
    let mut cluster = cluster_with(config, 319, 400, &[(0, both), (3, both)]);
    let diverged = |cluster: &Cluster| divergence(cluster, ReplicaId(1), ReplicaId(2)).is_some();
    cluster.run_until(2_000_000, diverged).expect("the honest ledgers diverge");
    let (seq, ours, theirs) = divergence(&cluster, ReplicaId(1), ReplicaId(2)).expect("diverged");
    assert_ne!(ours, theirs, "different batches at seq {seq}");
}

/// Null requests fill the gaps of a view change (PROTOCOL §7 view change step 3).
///
/// Setup: n = 4 PBFT, batches of 4; replica 0, the primary of view 0, never sends its
/// PRE-PREPARE for seq 3 but orders 4, 5, ... as usual, so the backups prepare and commit
/// those and wait at the hole; they ask for a view change.
/// Test: the new view decides a null request at seq 3 (no VIEW-CHANGE holds a prepared
/// certificate for it) and keeps the prepared batches above it: every replica executes an
/// empty batch at seq 3 in view 1 or later, and at seq 4 the very batch view 0 prepared;
/// every request completes and the ledgers agree.
#[test]
fn cluster_pbft_null_requests_fill_gaps() {
    const WITHHELD: Seq = Seq(3);
    let mut config = Config::new(Protocol::Pbft, 4, 16);
    config.batch_size_max = 4;
    let mut cluster = Cluster::new(SimOptions::new(config, 320, 300));
    let above: Rc<RefCell<Option<Digest>>> = Rc::default();
    let seen = above.clone();
    cluster.set_outbound_hook(
        ReplicaId(0),
        Box::new(move |transmit| match message_of(&transmit) {
            Some((_, Message::Propose(propose))) if propose.view == View(0) => {
                if propose.seq == WITHHELD {
                    return Vec::new();
                }
                if propose.seq == WITHHELD.next() {
                    *seen.borrow_mut() = Some(batch_digest(&propose.batch));
                }
                vec![transmit]
            }
            _ => vec![transmit],
        }),
    );
    // Once the null request executed, the primary of view 1 crashes too: the next VIEW-CHANGEs
    // carry the null slot's certificate (an empty batch), which must verify.
    cluster
        .run_until(STEPS_MAX_DEFAULT, |cluster| {
            cluster.replica(ReplicaId(2)).last_executed() > WITHHELD.next()
        })
        .expect("the null request executes");
    cluster.crash(ReplicaId(1));
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes in a later view");
    assert!(cluster.replica(ReplicaId(2)).view() >= View(2), "view 1's primary was replaced");
    let above = above.borrow().expect("seq 4 was proposed in view 0");
    let empty = batch_digest(&[]);
    let honest = [ReplicaId(2), ReplicaId(3)];
    for id in honest {
        let executed = |seq: u64| {
            cluster.events[id.index()].iter().find_map(|event| match event {
                LedgerEvent::Execute(execute) if execute.seq == seq => Some(execute.clone()),
                _ => None,
            })
        };
        let null = executed(WITHHELD.0).expect("seq 3 executed");
        assert_eq!(null.batch_digest, empty, "replica {id}: a null request at seq 3");
        assert!(null.requests.is_empty() && null.view >= 1, "replica {id}: {null:?}");
        let kept = executed(WITHHELD.0 + 1).expect("seq 4 executed");
        assert_eq!(kept.batch_digest, above, "replica {id}: seq 4 keeps view 0's batch");
        assert_eq!(cluster.replica(id).counters().rollbacks, 0);
    }
    assert_ledgers_agree(&cluster, &honest);
}

/// A COMMIT says "I am prepared": the prepared certificate behind it survives a crash
/// (`Write::Prepared`), so the replica's VIEW-CHANGE still carries it after a restart. Found by
/// the gate on real processes: a replica that COMMITted, was restarted by the amnesia probe and
/// forgot its prepared certificates let a view change drop a slot another replica had
/// executed and replied for.
///
/// Setup: n = 4 PBFT; COMMITs to replica 2 are lost, so it prepares and COMMITs but never
/// executes. After a few slots it is killed and restarted, then the primary crashes.
/// Test: replica 2's first VIEW-CHANGE after the restart holds a prepared certificate for every
/// slot it had sent a COMMIT for.
#[test]
fn cluster_pbft_restart_keeps_prepared_certificates() {
    let mut cluster = Cluster::new(SimOptions::new(Config::new(Protocol::Pbft, 4, 4), 321, 200));
    for id in [0, 1, 3] {
        cluster.set_outbound_hook(
            ReplicaId(id),
            Box::new(|transmit| match message_of(&transmit) {
                Some((ReplicaId(2), Message::Commit(_))) => Vec::new(),
                _ => vec![transmit],
            }),
        );
    }
    type Seen = Rc<RefCell<(BTreeSet<Seq>, Option<Vec<Seq>>)>>;
    let seen: Seen = Rc::default();
    let record = seen.clone();
    cluster.set_outbound_hook(
        ReplicaId(2),
        Box::new(move |transmit| {
            let mut record = record.borrow_mut();
            match message_of(&transmit) {
                Some((_, Message::Commit(commit))) => {
                    record.0.insert(commit.seq);
                }
                Some((_, Message::ViewChange(request))) if record.1.is_none() => {
                    record.1 = Some(request.evidence.iter().map(|evidence| evidence.seq).collect());
                }
                _ => {}
            }
            vec![transmit]
        }),
    );
    cluster
        .run_until(STEPS_MAX_DEFAULT, |cluster| {
            cluster.replica(ReplicaId(0)).last_executed() >= Seq(6)
        })
        .expect("the others execute");
    assert_eq!(cluster.replica(ReplicaId(2)).last_executed(), Seq(0), "replica 2 never commits");
    cluster.kill(ReplicaId(2));
    cluster.restart(ReplicaId(2));
    let committed: BTreeSet<Seq> = seen.borrow().0.clone();
    assert!(committed.len() >= 6, "replica 2 COMMITted: {committed:?}");
    cluster.crash(ReplicaId(0));
    cluster
        .run_until(STEPS_MAX_DEFAULT, |_| seen.borrow().1.is_some())
        .expect("replica 2 asks for a view change");
    let reported: BTreeSet<Seq> =
        seen.borrow().1.clone().expect("a VIEW-CHANGE").into_iter().collect();
    let stable = cluster.disk(ReplicaId(2)).checkpoint_seq();
    let missing: Vec<&Seq> =
        committed.iter().filter(|seq| **seq > stable && !reported.contains(seq)).collect();
    assert!(missing.is_empty(), "COMMITted but not in the VIEW-CHANGE: {missing:?}");
}
