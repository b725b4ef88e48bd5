//! Cluster tests: real replica and client cores, real crypto, the simulated network.

use std::sync::Arc;
use std::time::Duration;

use history::{OpResult, Operation};

use super::{assert_completions_proven, assert_ledgers_agree, executions, signed_request};
use crate::core::message::{
    Certify, Propose, Support, SupportProof, decode, support_signing_bytes,
};
use crate::core::{
    AuthenticatedInform, ClientId, Config, Digest, Envelope, Message, Protocol, Rejection,
    ReplicaId, Seq, Transmit, View,
};
use crate::crypto::dealer::ReplicaSecrets;
use crate::crypto::threshold::PreparedMessage;
use crate::sim::{Cluster, OutboundHook, STEPS_MAX_DEFAULT, SimOptions};

fn all(n: u8) -> Vec<ReplicaId> {
    (0..n).map(ReplicaId).collect()
}

fn run_cluster(protocol: Protocol, n: u8, clients: u32, requests: u64, seed: u64) -> Cluster {
    let config = Config::new(protocol, n, clients);
    let mut cluster = Cluster::new(SimOptions::new(config, seed, requests));
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    cluster
}

/// A hook that rewrites the replica-to-replica messages of a Byzantine replica with `rewrite`
/// and re-seals them with its own (real) keys, as a faulty replica can.
fn rewrite_messages(
    secrets: ReplicaSecrets,
    mut rewrite: impl FnMut(Message) -> Message + 'static,
) -> OutboundHook {
    Box::new(move |transmit| match transmit {
        Transmit::Replica { to, envelope } => {
            let message =
                rewrite(decode(&envelope.payload).expect("the core encodes valid messages"));
            let from = ReplicaId(secrets.id as u8);
            let envelope = Envelope::new(&message, &secrets.replica_macs[to.index()], from, to);
            vec![Transmit::Replica { to, envelope }]
        }
        other => vec![other],
    })
}

/// Normal case, PoE-TS (PROTOCOL §3.1).
///
/// Setup: n = 4 (f = 1, nf = 3), 16 closed-loop clients, 2000 requests, fixed latency.
/// Test: every request completes with a proof of nf identical INFORMs naming the result the
/// replicas executed; all four ledgers and state digests are identical.
#[test]
fn cluster_poe_ts_n4_commits() {
    let cluster = run_cluster(Protocol::PoeTs, 4, 16, 2000, 1);
    assert_eq!(cluster.completions.len(), 2000);
    let head = assert_ledgers_agree(&cluster, &all(4));
    assert!(head.0 >= 2000 / 16, "batches of at most 16 requests: {head:?}");
    assert_completions_proven(&cluster, ReplicaId(0));
    let primary = cluster.replica(ReplicaId(0)).counters();
    assert_eq!(primary.certificates_formed, head.0);
    assert_eq!(primary.requests_executed, 2000);
    assert!(cluster.rejections.is_empty(), "{:?}", &cluster.rejections[..1]);
}

/// Normal case, PoE-MAC (PROTOCOL §3.2), with f = 2.
///
/// Setup: n = 7 (f = 2, nf = 5), 16 clients, 1000 requests.
/// Test: every request completes with nf = 5 identical INFORMs; all ledgers agree; every
/// certificate holds nf signed supports.
#[test]
fn cluster_poe_mac_n7_commits() {
    let cluster = run_cluster(Protocol::PoeMac, 7, 16, 1000, 2);
    assert_eq!(cluster.completions.len(), 1000);
    assert_ledgers_agree(&cluster, &all(7));
    assert_completions_proven(&cluster, ReplicaId(3));
    assert!(cluster.completions.iter().all(|(_, done)| done.proof.replicas.len() >= 5));
    for block in cluster.replica(ReplicaId(6)).ledger().blocks() {
        match &block.certificate {
            crate::core::ledger::Certificate::Supports(supports) => assert_eq!(supports.len(), 5),
            other => panic!("PoE-MAC certificate is a set of supports, not {other:?}"),
        }
    }
}

/// Quorums are nf = n − f, never 2f + 1 (PROTOCOL §1): at n = 5, f = 1, nf = 4 but 2f + 1 = 3.
///
/// Setup: n = 5 PoE-TS. Test: with one replica silent, four remain and every request
/// completes; with two silent, three (= 2f + 1) remain and nothing is ever certified or
/// executed.
#[test]
fn cluster_poe_ts_n5_uses_nf_quorum() {
    assert_nf_quorum(Protocol::PoeTs);
}

/// The same at n = 5 for PoE-MAC: four matching supports are needed, three never suffice.
#[test]
fn cluster_poe_mac_n5_uses_nf_quorum() {
    assert_nf_quorum(Protocol::PoeMac);
}

fn assert_nf_quorum(protocol: Protocol) {
    let config = Config::new(protocol, 5, 8);
    assert_eq!((config.f(), config.nf()), (1, 4));

    let mut one_down = Cluster::new(SimOptions::new(config.clone(), 5, 200));
    one_down.crash(ReplicaId(4));
    one_down.run(STEPS_MAX_DEFAULT).expect("four replicas are a quorum");
    assert_eq!(one_down.completions.len(), 200);
    assert!(one_down.completions.iter().all(|(_, done)| done.proof.replicas.len() == 4));
    assert_ledgers_agree(&one_down, &all(4));

    let mut two_down = Cluster::new(SimOptions::new(config, 5, 200));
    two_down.crash(ReplicaId(3));
    two_down.crash(ReplicaId(4));
    two_down.run_for(Duration::from_secs(5));
    assert!(two_down.completions.is_empty());
    for replica in two_down.replicas() {
        assert_eq!(replica.last_executed(), Seq(0), "replica {} executed", replica.id());
        assert_eq!(replica.counters().slots_committed, 0);
    }
    assert!(two_down.replica(ReplicaId(0)).counters().proposals_sent > 0, "the primary did try");
}

/// Agreement out of order, execution in order (PROTOCOL §3.1 step 6).
///
/// Setup: n = 4 PoE-TS and PoE-MAC, 64 clients, latencies drawn from 10 µs to 3 ms so that
/// messages overtake each other, window 16, small batches.
/// Test: slots are view-committed out of order somewhere, yet every replica executes 1, 2, 3,
/// ... and all ledgers agree.
#[test]
fn cluster_out_of_order_delivery() {
    for (protocol, seed) in [(Protocol::PoeTs, 11), (Protocol::PoeMac, 12)] {
        let mut config = Config::new(protocol, 4, 64);
        config.window = 16;
        config.batch_size_max = 4;
        config.batch_timeout = Duration::from_micros(50);
        let mut options = SimOptions::new(config, seed, 1500);
        options.latency_min = Duration::from_micros(10);
        options.latency_max = Duration::from_millis(3);
        let mut cluster = Cluster::new(options);
        cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
        assert_eq!(cluster.completions.len(), 1500);
        let out_of_order: u64 =
            cluster.replicas().map(|replica| replica.counters().slots_committed_out_of_order).sum();
        assert!(out_of_order > 0, "{protocol:?}: delivery should reorder commits");
        // `executions` asserts strict sequence order per replica.
        assert_ledgers_agree(&cluster, &all(4));
        assert_completions_proven(&cluster, ReplicaId(1));
    }
}

/// Validity: only requests signed by their client execute (PROTOCOL §1, §10.4).
///
/// Setup: n = 4 PoE-TS, no workload. Test: a request whose operation was altered after
/// signing is dropped by the primary at batching time (counted) and refused outright by a
/// backup; a Byzantine primary's proposal that carries it is rejected by every backup, which
/// then supports nothing; honest requests still execute, the forged one never does.
#[test]
fn cluster_rejects_forged_client_request() {
    let config = Config::new(Protocol::PoeTs, 4, 4);
    let mut cluster = Cluster::new(SimOptions::new(config, 21, 0));
    let mut forged = signed_request(&cluster, 1, 1, Operation::Write { key: "k".into(), value: 1 });
    forged.body.op = Operation::Write { key: "k".into(), value: 666 };

    // At the primary verification is batched: the request is queued, then dropped and counted.
    cluster.inject_request(ReplicaId(0), forged.clone()).expect("queued for batch verification");
    let honest = signed_request(&cluster, 2, 1, Operation::Write { key: "k".into(), value: 7 });
    cluster.inject_request(ReplicaId(0), honest).expect("queued");
    cluster.run_for(Duration::from_millis(50));
    let primary = cluster.replica(ReplicaId(0));
    assert_eq!(primary.counters().rejected("invalid_client_signature"), 1);
    for replica in all(4) {
        let executed = executions(&cluster, replica);
        assert_eq!(executed.len(), 1, "only the honest request's batch executed");
        let requests = &executed[&1].requests;
        assert_eq!(requests.len(), 1);
        assert_eq!((requests[0].client, requests[0].request), (2, 1));
        assert_eq!(cluster.replica(replica).state().get("k"), Some(7));
    }

    // A client cannot send requests in another client's name (the transport identifies it),
    // and a forwarded forgery is checked before it can take the real request's place.
    let refused = cluster.inject_request_as(ClientId(3), ReplicaId(0), forged.clone());
    let mismatch = Rejection::ClientMismatch { from: ClientId(3), claimed: ClientId(1) };
    assert_eq!(refused, Err(mismatch));
    let mut forged_next = signed_request(&cluster, 1, 2, Operation::Read { key: "k".into() });
    forged_next.body.op = Operation::Read { key: "other".into() };
    let forwarded = cluster.inject(ReplicaId(3), ReplicaId(0), &Message::Forward(forged_next));
    assert!(matches!(forwarded, Err(Rejection::InvalidClientSignature { .. })), "{forwarded:?}");
    let real_next = signed_request(&cluster, 1, 2, Operation::Read { key: "k".into() });
    cluster.inject_request(ReplicaId(0), real_next).expect("the real request is not blocked");

    // A backup checks the signature before forwarding.
    let refused = cluster.inject_request(ReplicaId(2), forged.clone());
    assert!(matches!(refused, Err(Rejection::InvalidClientSignature { .. })), "{refused:?}");

    // A Byzantine primary proposing it: every backup refuses and supports nothing.
    let batch: Arc<[_]> = vec![forged].into();
    let propose = Message::Propose(Propose { view: View(0), seq: Seq(2), batch });
    for backup in [1, 2, 3].map(ReplicaId) {
        let result = cluster.inject(ReplicaId(0), backup, &propose);
        assert!(matches!(result, Err(Rejection::InvalidClientSignature { .. })), "{result:?}");
        assert_eq!(cluster.replica(backup).counters().proposals_accepted, 1, "only slot 1");
    }
    cluster.run_for(Duration::from_millis(50));
    for replica in all(4) {
        let executed = executions(&cluster, replica);
        assert_eq!(executed.len(), 2, "slot 2 holds the real request, not the forgery");
        let requests = &executed[&2].requests;
        assert_eq!((requests[0].client, requests[0].request), (1, 2));
        assert_eq!(requests[0].op, Operation::Read { key: "k".into() });
    }
}

/// Votes whose digest differs from the accepted proposal do not count (PROTOCOL §8: the
/// ResilientDB collectors count them; a correct replica must not).
///
/// Setup: n = 4 PoE-MAC; replica 3 is Byzantine and signs every support for another digest;
/// replica 2 is down. Test: replicas 0 and 1 hold two matching supports plus replica 3's
/// mismatching one, which would make nf = 3 if counted: they reject it as a digest mismatch and
/// never commit.
#[test]
fn cluster_rejects_mismatched_digest_votes() {
    let config = Config::new(Protocol::PoeMac, 4, 4);
    let mut cluster = Cluster::new(SimOptions::new(config, 31, 40));
    let secrets = cluster.keys().replicas[3].clone();
    let signer = secrets.signing_key.clone();
    cluster.set_outbound_hook(
        ReplicaId(3),
        rewrite_messages(secrets, move |message| match message {
            Message::Support(mut support) => {
                support.digest = Digest([0x5a; 32]);
                let bytes = support_signing_bytes(&support.digest);
                support.proof = SupportProof::Signature(signer.sign(&bytes));
                Message::Support(support)
            }
            other => other,
        }),
    );
    cluster.crash(ReplicaId(2));
    cluster.run_for(Duration::from_secs(2));
    assert!(cluster.completions.is_empty());
    for honest in [ReplicaId(0), ReplicaId(1)] {
        let replica = cluster.replica(honest);
        assert_eq!(replica.last_executed(), Seq(0));
        assert_eq!(replica.counters().slots_committed, 0);
        assert!(replica.counters().rejected("digest_mismatch") > 0, "replica {honest}");
    }
}

/// PoE-TS: a share over the wrong digest is caught when the optimistic combination fails, is
/// dropped, and the certificate forms from honest shares (PROTOCOL §3.1 step 4); a SUPPORT
/// naming another digest is rejected outright.
///
/// Setup: n = 4 PoE-TS; replica 3 sends shares over another digest under the right digest
/// field; replica 2 is slow, so the primary's first nf shares include replica 3's. Test: every
/// request completes; the primary counted the invalid shares; every certificate verifies.
#[test]
fn cluster_rejects_mismatched_digest_shares() {
    let config = Config::new(Protocol::PoeTs, 4, 8);
    let mut cluster = Cluster::new(SimOptions::new(config, 32, 200));
    let secrets = cluster.keys().replicas[3].clone();
    let share = secrets.threshold_share.clone();
    cluster.set_outbound_hook(
        ReplicaId(3),
        rewrite_messages(secrets, move |message| match message {
            Message::Support(mut support) => {
                let bytes = support_signing_bytes(&Digest([0x5a; 32]));
                support.proof = SupportProof::Share(share.sign(&PreparedMessage::new(&bytes)));
                Message::Support(support)
            }
            other => other,
        }),
    );
    cluster.slow_down(ReplicaId(2), Duration::from_millis(2));
    cluster.run(STEPS_MAX_DEFAULT).expect("three honest shares suffice");
    assert_eq!(cluster.completions.len(), 200);
    let primary = cluster.replica(ReplicaId(0)).counters();
    assert!(primary.invalid_shares > 0);
    assert_eq!(primary.rejected("invalid_share"), primary.invalid_shares);
    // Only the first bad share costs a failed combination: afterwards replica 3 is a suspect
    // and its shares are checked alone before they can spoil one.
    assert_eq!(primary.combinations_failed, 1);
    assert_ledgers_agree(&cluster, &all(4));

    // A support that names another digest never reaches the combination.
    let support = Support {
        view: View(0),
        seq: Seq(1),
        digest: Digest([1; 32]),
        replica: ReplicaId(3),
        proof: SupportProof::Share(
            cluster.keys().replicas[3].threshold_share.sign(&PreparedMessage::new(b"x")),
        ),
    };
    let refused = cluster.inject(ReplicaId(3), ReplicaId(0), &Message::Support(support));
    // Slot 1 executed long ago: a late vote is ignored, not counted against the sender.
    assert_eq!(refused, Ok(()));
    let next = cluster.replica(ReplicaId(0)).last_executed().0 + 1;
    let support = Support {
        view: View(0),
        seq: Seq(next),
        digest: Digest([1; 32]),
        replica: ReplicaId(3),
        proof: SupportProof::Share(
            cluster.keys().replicas[3].threshold_share.sign(&PreparedMessage::new(b"x")),
        ),
    };
    let refused = cluster.inject(ReplicaId(3), ReplicaId(0), &Message::Support(support));
    assert!(matches!(refused, Err(Rejection::UnknownSlot { .. })), "{refused:?}");
}

/// Only the primary of the view proposes (PROTOCOL §3.1 step 3, §10.8).
///
/// Setup: n = 4 PoE-TS, no workload. Test: a PROPOSE for view 0 from replica 1 is rejected by
/// every other replica, which support nothing; a CERTIFY from a non-primary likewise.
#[test]
fn cluster_rejects_proposal_from_non_primary() {
    let config = Config::new(Protocol::PoeTs, 4, 4);
    let mut cluster = Cluster::new(SimOptions::new(config, 41, 0));
    let request = signed_request(&cluster, 0, 1, Operation::Read { key: "k".into() });
    let batch: Arc<[_]> = vec![request].into();
    let propose = Message::Propose(Propose { view: View(0), seq: Seq(1), batch });
    for to in [0, 2, 3].map(ReplicaId) {
        let result = cluster.inject(ReplicaId(1), to, &propose);
        let expected = Rejection::NotFromPrimary {
            message: "propose",
            from: ReplicaId(1),
            primary: ReplicaId(0),
            view: View(0),
        };
        assert_eq!(result, Err(expected));
        assert_eq!(cluster.replica(to).counters().proposals_accepted, 0);
        assert_eq!(cluster.replica(to).counters().rejected("not_from_primary"), 1);
    }
    let certify = Message::Certify(Certify {
        view: View(0),
        seq: Seq(1),
        digest: Digest([0; 32]),
        signature: cluster.keys().replicas[1].threshold_share.sign(&PreparedMessage::new(b"x")),
    });
    let result = cluster.inject(ReplicaId(1), ReplicaId(2), &certify);
    assert!(matches!(result, Err(Rejection::NotFromPrimary { message: "certify", .. })));
    cluster.run_for(Duration::from_millis(100));
    assert!(cluster.replicas().all(|replica| replica.last_executed() == Seq(0)));
}

/// A replica supports at most one proposal per (view, seq) (PROTOCOL §3.1 step 3, §9.4).
///
/// Setup: n = 4 PoE-TS, no workload; the primary equivocates by hand. Test: replica 1 accepts
/// the first PROPOSE for (0, 1) and sends exactly one SUPPORT; a different batch for the same
/// slot is a conflicting proposal, the same batch again a duplicate; neither produces a second
/// SUPPORT.
#[test]
fn cluster_rejects_second_proposal_same_slot() {
    let config = Config::new(Protocol::PoeTs, 4, 4);
    let mut cluster = Cluster::new(SimOptions::new(config, 51, 0));
    let read = |key: &str| Operation::Read { key: key.into() };
    let first: Arc<[_]> = vec![signed_request(&cluster, 0, 1, read("a"))].into();
    let second: Arc<[_]> = vec![signed_request(&cluster, 1, 1, read("b"))].into();
    let propose = |batch: &Arc<[_]>| {
        Message::Propose(Propose { view: View(0), seq: Seq(1), batch: batch.clone() })
    };
    cluster.inject(ReplicaId(0), ReplicaId(1), &propose(&first)).expect("first proposal accepted");
    let conflicting = cluster.inject(ReplicaId(0), ReplicaId(1), &propose(&second));
    assert_eq!(conflicting, Err(Rejection::ConflictingProposal { view: View(0), seq: Seq(1) }));
    let duplicate = cluster.inject(ReplicaId(0), ReplicaId(1), &propose(&first));
    assert_eq!(duplicate, Err(Rejection::DuplicateProposal { view: View(0), seq: Seq(1) }));
    let counters = cluster.replica(ReplicaId(1)).counters();
    assert_eq!(counters.proposals_accepted, 1);
    assert_eq!(counters.rejected("conflicting_proposal"), 1);
    assert_eq!(counters.rejected("duplicate_proposal"), 1);

    // Exactly one SUPPORT left replica 1. The real primary never proposed slot 1 (the
    // equivocation was injected), so it refuses each support it gets as an unknown slot.
    cluster.rejections.clear();
    // Well before the progress timer would start a view change over the orphan proposal.
    cluster.run_for(Duration::from_millis(100));
    let at_primary: Vec<&Rejection> = cluster
        .rejections
        .iter()
        .filter(|(at, _)| *at == ReplicaId(0))
        .map(|(_, rejection)| rejection)
        .collect();
    assert_eq!(at_primary, [&Rejection::UnknownSlot { seq: Seq(1) }]);
}

/// A faulty replica's INFORM never completes a request and never blocks one (PROTOCOL §3.1
/// step 7, §3.3).
///
/// Setup: n = 4 PoE-TS; replica 3 sends every client a wrong result (properly MAC'd with its
/// own key). Test: all requests complete; no proof names replica 3; every accepted result is
/// the one the honest replicas executed.
#[test]
fn cluster_client_needs_nf_identical_informs() {
    let config = Config::new(Protocol::PoeTs, 4, 16);
    let mut cluster = Cluster::new(SimOptions::new(config, 61, 600));
    let secrets = cluster.keys().replicas[3].clone();
    cluster.set_outbound_hook(
        ReplicaId(3),
        Box::new(move |transmit| match transmit {
            Transmit::Client { to, inform } => {
                let mut inform = inform.inform;
                inform.result = match inform.result {
                    OpResult::Read { value } => {
                        OpResult::Read { value: Some(value.unwrap_or(0) + 1_000_000) }
                    }
                    OpResult::Cas { swapped } => OpResult::Cas { swapped: !swapped },
                    _ => OpResult::Read { value: Some(-1) },
                };
                let inform = AuthenticatedInform::seal(inform, &secrets.client_macs[to.index()]);
                vec![Transmit::Client { to, inform }]
            }
            other => vec![other],
        }),
    );
    cluster.run(STEPS_MAX_DEFAULT).expect("three honest informs complete every request");
    assert_eq!(cluster.completions.len(), 600);
    assert!(
        cluster.completions.iter().all(|(_, done)| !done.proof.replicas.contains(&ReplicaId(3)))
    );
    assert_completions_proven(&cluster, ReplicaId(0));
    assert_ledgers_agree(&cluster, &all(4));
}

/// At-most-once execution: a retransmitted request gets the cached INFORM again and is never
/// executed twice, even when a (faulty) primary proposes it again.
///
/// Setup: n = 4 PoE-MAC, one request executed. Test: re-sending it to a backup yields the same
/// INFORM from the reply cache; re-proposing it in a later slot skips it in every ledger.
#[test]
fn cluster_retransmission_gets_cached_inform() {
    let config = Config::new(Protocol::PoeMac, 4, 2);
    let mut cluster = Cluster::new(SimOptions::new(config, 71, 0));
    let write = signed_request(&cluster, 1, 1, Operation::Write { key: "x".into(), value: 5 });
    cluster.inject_request(ReplicaId(0), write.clone()).expect("queued");
    cluster.run_for(Duration::from_millis(20));
    assert!(all(4).iter().all(|&replica| cluster.replica(replica).last_executed() == Seq(1)));

    let resent = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = resent.clone();
    cluster.set_outbound_hook(
        ReplicaId(2),
        Box::new(move |transmit| {
            if let Transmit::Client { inform, .. } = &transmit {
                seen.lock().expect("test mutex").push(inform.inform.clone());
            }
            vec![transmit]
        }),
    );
    cluster.inject_request(ReplicaId(2), write.clone()).expect("answered from the reply cache");
    assert_eq!(cluster.replica(ReplicaId(2)).counters().informs_resent, 1);
    let resent = resent.lock().expect("test mutex");
    assert_eq!(resent.len(), 1);
    assert_eq!((resent[0].seq, &resent[0].result), (Seq(1), &OpResult::Written));
    drop(resent);

    let batch: Arc<[_]> = vec![write].into();
    let again = Message::Propose(Propose { view: View(0), seq: Seq(2), batch });
    for backup in [1, 2, 3].map(ReplicaId) {
        cluster.inject(ReplicaId(0), backup, &again).expect("a valid proposal");
    }
    cluster.run_for(Duration::from_millis(20));
    for replica in [1, 2, 3].map(ReplicaId) {
        let executed = executions(&cluster, replica);
        assert_eq!(executed[&2].requests[0].result, None, "skipped, not executed twice");
        assert_eq!(cluster.replica(replica).counters().requests_executed, 1);
        assert_eq!(cluster.replica(replica).state().get("x"), Some(5));
    }
}

/// Bad input is counted, never fatal: garbage, wrong MACs, unknown senders and oversized
/// payloads are rejected with their reason, and the cluster keeps serving.
#[test]
fn cluster_survives_malformed_input() {
    let config = Config::new(Protocol::PoeTs, 4, 8);
    let mut cluster = Cluster::new(SimOptions::new(config, 81, 300));
    cluster.run_for(Duration::from_millis(5));
    let key = cluster.keys().replicas[1].replica_macs[2];
    let garbage = Envelope::new(
        &Message::Forward(signed_request(&cluster, 0, 1, Operation::Read { key: "k".into() })),
        &key,
        ReplicaId(1),
        ReplicaId(2),
    );
    let mut truncated = garbage.clone();
    truncated.payload = truncated.payload.slice(..truncated.payload.len() / 2);
    assert_eq!(
        cluster.inject_envelope(ReplicaId(1), ReplicaId(2), &truncated),
        Err(Rejection::InvalidMac { from: ReplicaId(1) })
    );
    let resealed = Envelope::seal(
        truncated.payload.clone(),
        &crate::crypto::hash::sha256(&truncated.payload),
        &key,
        ReplicaId(1),
        ReplicaId(2),
    );
    assert!(matches!(
        cluster.inject_envelope(ReplicaId(1), ReplicaId(2), &resealed),
        Err(Rejection::Malformed { .. })
    ));
    assert_eq!(
        cluster.inject_envelope(ReplicaId(9), ReplicaId(2), &garbage),
        Err(Rejection::UnknownReplica { from: ReplicaId(9) })
    );
    assert_eq!(
        cluster.inject_envelope(ReplicaId(2), ReplicaId(2), &garbage),
        Err(Rejection::FromSelf)
    );
    let huge = bytes::Bytes::from(vec![0u8; crate::core::config::MESSAGE_SIZE_MAX + 1]);
    let oversized = Envelope::seal(
        huge.clone(),
        &crate::crypto::hash::sha256(&huge),
        &key,
        ReplicaId(1),
        ReplicaId(2),
    );
    assert!(matches!(
        cluster.inject_envelope(ReplicaId(1), ReplicaId(2), &oversized),
        Err(Rejection::TooLarge { .. })
    ));
    cluster.run(STEPS_MAX_DEFAULT).expect("the cluster keeps serving");
    assert_eq!(cluster.completions.len(), 300);
    let counters = cluster.replica(ReplicaId(2)).counters();
    for kind in ["invalid_mac", "malformed", "unknown_replica", "from_self", "too_large"] {
        assert_eq!(counters.rejected(kind), 1, "{kind}");
    }
}
