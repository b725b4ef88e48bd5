//! Hostile bytes at scale (`sim::fuzz`): seeded random and mutated frames and messages from a
//! Byzantine replica through the frame layer, the envelope checks and the protocol core of a
//! live n = 4 cluster while its clients run a workload.
//!
//! Each `fuzz_live_cluster_*` test asserts: no panic; the replicas' bounded state stays within
//! its bounds; every input is accounted for (accepted, or counted as exactly one rejection,
//! layer by layer); the structured inputs reach the protocol logic (most refusals are not MAC
//! or decoding failures); and afterwards every request completed once, the honest replicas
//! agree on their histories, every client proof holds in them, and every request in their
//! ledgers carries a valid client signature. The `fuzz_found_*` tests pin down what the driver
//! found. The release-mode run of ten million inputs is
//! `cargo run --release -p replica --example fuzz` (docs/fuzz.md).

use super::recovery::{assert_every_request_completed, assert_histories_agree, assert_proofs_hold};
use crate::core::message::{
    Message, SlotEvidence, StateRequest, StateTransfer, ViewChange, decode,
};
use crate::core::{Config, Envelope, Protocol, Rejection, ReplicaId, Seq, Transmit, View};
use crate::net::frame::{FrameCutter, FrameError, framed};
use crate::sim::fuzz::{
    FuzzOptions, FuzzReport, FuzzSession, check_ledger_signatures, fuzz_config,
};
use crate::sim::{Cluster, STEPS_MAX_DEFAULT, SimOptions};

/// Inputs per test: a few seconds in a debug build.
const INPUTS: u64 = 6_000;

/// Refusals that happen before the protocol logic: the frame and envelope layers, the MAC and
/// the identity checks.
const SHALLOW: [&str; 8] = [
    "frame.too_large",
    "frame.truncated",
    "envelope.malformed",
    "core.invalid_mac",
    "core.malformed",
    "core.too_large",
    "core.unknown_replica",
    "core.from_self",
];

fn fuzz(protocol: Protocol, seed: u64, byzantine: u8) -> FuzzReport {
    let mut options = FuzzOptions::new(protocol, seed);
    options.byzantine = ReplicaId(byzantine);
    options.requests = 300;
    let requests = options.requests as usize;
    let mut session = FuzzSession::new(options);
    let injected = session.fuzz(INPUTS).unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(injected, INPUTS, "every input went in while the workload ran");
    let report = session.finish().unwrap_or_else(|error| panic!("{error}"));
    eprintln!("{protocol:?}, seed {seed}, Byzantine replica {byzantine}:\n{report}");
    report.check_accounting().unwrap_or_else(|error| panic!("{error}"));
    assert_eq!(report.inputs, INPUTS);
    let cluster = session.cluster();
    let honest = session.honest().to_vec();
    assert_every_request_completed(cluster, requests);
    assert_histories_agree(cluster, &honest);
    assert_proofs_hold(cluster, &honest);
    assert_ledger_signatures_verify(cluster, &honest);
    let shallow: u64 =
        SHALLOW.iter().filter_map(|kind| report.rejections.get(*kind)).copied().sum();
    let deep = report.accepted + report.rejected() - shallow;
    assert!(deep * 2 > report.inputs, "most inputs reach the protocol logic: {deep}");
    let kinds = report.rejections.keys().filter(|kind| kind.starts_with("core.")).count();
    assert!(kinds >= 20, "{kinds} kinds of core rejection");
    assert!(report.accepted > 0, "some inputs are accepted");
    report
}

/// PoE-TS with the primary of view 0 Byzantine: its mutated proposals and certificates are
/// accepted by the backups until the view changes.
#[test]
fn fuzz_live_cluster_poe_ts_byzantine_primary() {
    let report = fuzz(Protocol::PoeTs, 1201, 0);
    assert!(report.views_entered_max >= 1, "the Byzantine primary was replaced");
}

/// PoE-TS with a Byzantine backup: shares, forwards, checkpoints and view-change traffic.
#[test]
fn fuzz_live_cluster_poe_ts_byzantine_backup() {
    fuzz(Protocol::PoeTs, 1202, 2);
}

/// PoE-MAC with the primary of view 0 Byzantine.
#[test]
fn fuzz_live_cluster_poe_mac_byzantine_primary() {
    let report = fuzz(Protocol::PoeMac, 1203, 0);
    assert!(report.views_entered_max >= 1, "the Byzantine primary was replaced");
}

/// PoE-MAC with a Byzantine backup: its signed supports go to every replica.
#[test]
fn fuzz_live_cluster_poe_mac_byzantine_backup() {
    fuzz(Protocol::PoeMac, 1204, 3);
}

// --------------------------------------------------------------------------------------------
// The frame layer.

/// The frame layer cuts the same frames whatever chunks the stream delivers them in, and
/// refuses a header over the limit before anything else arrives.
#[test]
fn fuzz_frame_cutter_any_chunking() {
    use rand::{Rng, RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1209);
    for _ in 0..200 {
        let frames: Vec<Vec<u8>> = (0..rng.random_range(0..8))
            .map(|_| {
                let mut frame = vec![0u8; rng.random_range(0..300)];
                rng.fill_bytes(&mut frame);
                frame
            })
            .collect();
        let stream: Vec<u8> = frames.iter().flat_map(|frame| framed(frame)).collect();
        let mut cutter = FrameCutter::new(256);
        let mut cut = Vec::new();
        let mut refused = false;
        let mut at = 0;
        while at < stream.len() && !refused {
            let end = (at + rng.random_range(1..64)).min(stream.len());
            cutter.extend(&stream[at..end]);
            at = end;
            loop {
                match cutter.next_frame() {
                    Ok(Some(frame)) => cut.push(frame),
                    Ok(None) => break,
                    Err(FrameError::TooLarge { size, max }) => {
                        assert_eq!(max, 256);
                        assert!(size > 256);
                        refused = true;
                        break;
                    }
                    Err(error) => panic!("{error}"),
                }
            }
        }
        let fitting = frames.iter().take_while(|frame| frame.len() <= 256).count();
        assert_eq!(cut, frames[..fitting], "every frame before the first oversized one");
        assert_eq!(refused, fitting < frames.len(), "the oversized frame is refused");
        if !refused {
            assert!(cutter.is_empty(), "nothing left over");
        }
    }
}

// --------------------------------------------------------------------------------------------
// What the fuzz driver found.

/// A STATE-REQUEST claiming the last representable slot crashed the replica that read it (the
/// slot after it overflowed `Seq::next`): one message from one Byzantine replica stopped an
/// honest one. Found by the driver (seed 1204).
///
/// Setup: n = 4 PoE-MAC; after 50 requests, replica 3 sends STATE-REQUEST(last executed =
/// u64::MAX) to replica 0, before and after replica 0 has a stable checkpoint.
/// Test: no panic; the request is processed (nothing to send), and the cluster completes.
#[test]
fn fuzz_found_state_request_at_the_last_slot() {
    let mut config = fuzz_config(Protocol::PoeMac);
    config.checkpoint_interval = 4;
    let mut cluster = Cluster::new(SimOptions::new(config, 1205, 200));
    let request = |view| Message::StateRequest(StateRequest { view, last_executed: Seq(u64::MAX) });
    cluster.inject(ReplicaId(3), ReplicaId(0), &request(View(0))).expect("nothing to give");
    cluster.run_until(STEPS_MAX_DEFAULT, |cluster| cluster.completions.len() >= 50).expect("50");
    assert!(cluster.replica(ReplicaId(0)).status().stable_checkpoint > Seq(0));
    cluster.inject(ReplicaId(3), ReplicaId(0), &request(View(0))).expect("nothing to give");
    cluster.inject(ReplicaId(3), ReplicaId(1), &request(View(u64::MAX))).expect("nothing");
    cluster.run(STEPS_MAX_DEFAULT).expect("the cluster keeps serving");
    assert_every_request_completed(&cluster, 200);
}

/// Three paths dropped an input without counting it, so a replica's counters could not account
/// for what it received: a re-sent (or overtaken) VC-REQUEST, a STATE-REQUEST inside the rate
/// limit, and a STATE-TRANSFER with nothing new. Each is now a typed rejection, counted once.
///
/// Setup: n = 4 PoE-MAC with checkpoints every 4 slots; after 60 requests replica 3 sends
/// replica 0 a valid VC-REQUEST twice, a STATE-REQUEST twice, and an empty STATE-TRANSFER.
/// Test: the first VC-REQUEST and STATE-REQUEST are accepted, the repeats are refused as
/// `duplicate_view_change` and `rate_limited`, the transfer as `stale_state_transfer`; each
/// counted once; the cluster completes.
#[test]
fn fuzz_found_silent_drops_are_counted() {
    let mut config = fuzz_config(Protocol::PoeMac);
    config.checkpoint_interval = 4;
    let mut cluster = Cluster::new(SimOptions::new(config, 1208, 200));
    cluster.run_until(STEPS_MAX_DEFAULT, |cluster| cluster.completions.len() >= 60).expect("60");
    let (b, to) = (ReplicaId(3), ReplicaId(0));
    assert!(cluster.replica(to).status().stable_checkpoint > Seq(0), "something to transfer");
    let checkpoint = cluster.disk(b).checkpoint.clone().map(|(certificate, _)| certificate);
    let bytes = ViewChange::signing_bytes(View(1), b, checkpoint.as_ref(), &[]);
    let signature = cluster.keys().replicas[3].signing_key.sign(&bytes);
    let request =
        ViewChange { target: View(1), replica: b, checkpoint, evidence: vec![], signature };
    let view_change = Message::ViewChange(std::sync::Arc::new(request));
    cluster.inject(b, to, &view_change).expect("a valid VC-REQUEST");
    let again = cluster.inject(b, to, &view_change);
    assert!(matches!(again, Err(Rejection::DuplicateViewChange { .. })), "{again:?}");
    let state_request =
        Message::StateRequest(StateRequest { view: View(0), last_executed: Seq(0) });
    cluster.inject(b, to, &state_request).expect("answered");
    let again = cluster.inject(b, to, &state_request);
    assert_eq!(again, Err(Rejection::RateLimited { message: "state-request", from: b }));
    let empty = StateTransfer { checkpoint: None, new_view: None, tail: vec![], head: Seq(0) };
    let stale = cluster.inject(b, to, &Message::StateTransfer(std::sync::Arc::new(empty)));
    assert_eq!(stale, Err(Rejection::StaleStateTransfer { from: b }));
    let counters = cluster.replica(to).counters();
    for kind in ["duplicate_view_change", "rate_limited", "stale_state_transfer"] {
        assert_eq!(counters.rejected(kind), 1, "{kind}");
    }
    cluster.run(STEPS_MAX_DEFAULT).expect("the cluster keeps serving");
    assert_every_request_completed(&cluster, 200);
}

/// The evidence of `seqs` as replica `id` holds it in its ledger, with one bit of the first
/// request's client signature flipped: the batch digest, and so the certificate, still match
/// (a batch digest covers request bodies, not signature bytes).
fn evidence_with_forged_signature(
    cluster: &Cluster,
    id: ReplicaId,
    seqs: std::ops::RangeInclusive<u64>,
) -> Vec<SlotEvidence> {
    let mut evidence: Vec<SlotEvidence> = seqs
        .map(|seq| {
            let block = cluster.replica(id).ledger().get(Seq(seq)).expect("a retained block");
            SlotEvidence {
                view: block.view,
                seq: block.seq,
                batch: block.batch.clone(),
                certificate: block.certificate.clone(),
            }
        })
        .collect();
    let mut batch = evidence[0].batch.to_vec();
    batch[0].signature.0[40] ^= 0x10;
    assert!(batch[0].verify(&cluster.keys().public.clients[batch[0].body.client.index()]).is_err());
    evidence[0].batch = batch.into();
    evidence
}

/// Asserts that every request in every ledger event of `replicas` carries a signature of its
/// client that verifies (the checker's validity oracle, `checker::replay`).
fn assert_ledger_signatures_verify(cluster: &Cluster, replicas: &[ReplicaId]) {
    check_ledger_signatures(cluster, replicas).unwrap_or_else(|error| panic!("{error}"));
}

/// A state transfer's certified tail could carry client requests whose signature bytes a
/// Byzantine sender had changed: the certificate covers the batch digest, which covers request
/// bodies but not signatures, so an honest replica executed the slot and recorded a request
/// its client never signed in those bytes (the checker's validity oracle calls the ledger
/// invalid). Found by the driver (seed 1204, PoE-MAC, Byzantine replica 3).
///
/// Setup: n = 4 PoE-MAC; replica 2 is cut off while the others execute more slots; replica 3
/// sends it a STATE-TRANSFER whose tail is its own certified blocks, one client signature with
/// a bit flipped.
/// Test: replica 2 refuses the transfer (invalid state transfer) and executes nothing from it;
/// after reconnecting, the cluster completes and every request in every honest ledger carries
/// a valid signature.
#[test]
fn fuzz_found_forged_signature_in_state_transfer_tail() {
    let mut cluster = Cluster::new(SimOptions::new(fuzz_config(Protocol::PoeMac), 1206, 300));
    cluster.run_until(STEPS_MAX_DEFAULT, |cluster| cluster.completions.len() >= 40).expect("40");
    cluster.isolate(ReplicaId(2), true);
    let behind = cluster.replica(ReplicaId(2)).last_executed().0;
    cluster
        .run_until(STEPS_MAX_DEFAULT, |cluster| {
            cluster.replica(ReplicaId(3)).last_executed().0 >= behind + 3
        })
        .expect("the others go on");
    let tail = evidence_with_forged_signature(&cluster, ReplicaId(3), behind + 1..=behind + 3);
    let transfer = StateTransfer { checkpoint: None, new_view: None, tail, head: Seq(0) };
    let result = cluster.inject(
        ReplicaId(3),
        ReplicaId(2),
        &Message::StateTransfer(std::sync::Arc::new(transfer)),
    );
    assert!(matches!(result, Err(Rejection::InvalidStateTransfer { .. })), "{result:?}");
    assert_eq!(cluster.replica(ReplicaId(2)).last_executed().0, behind, "nothing executed");
    cluster.isolate(ReplicaId(2), false);
    cluster.run(STEPS_MAX_DEFAULT).expect("the cluster completes");
    assert_every_request_completed(&cluster, 300);
    assert_ledger_signatures_verify(&cluster, &[ReplicaId(0), ReplicaId(1), ReplicaId(2)]);
}

/// The same forgery in a VC-REQUEST's evidence: the decision of a view change would carry the
/// forged bytes into the new view. A replica validating the request must refuse it.
///
/// Setup: n = 4 PoE-MAC, after 40 requests; replica 3 signs a VC-REQUEST for view 1 whose
/// evidence is its own certified blocks, one client signature with a bit flipped.
/// Test: replica 0 refuses it as an invalid view-change request; the same request with the
/// genuine evidence is accepted.
#[test]
fn fuzz_found_forged_signature_in_view_change_evidence() {
    let mut cluster = Cluster::new(SimOptions::new(fuzz_config(Protocol::PoeMac), 1207, 300));
    cluster.run_until(STEPS_MAX_DEFAULT, |cluster| cluster.completions.len() >= 40).expect("40");
    let head = cluster.replica(ReplicaId(3)).last_executed().0;
    let stable = cluster.replica(ReplicaId(3)).status().stable_checkpoint.0;
    assert!(head > stable + 2, "blocks above the stable checkpoint");
    let forged = evidence_with_forged_signature(&cluster, ReplicaId(3), stable + 1..=head);
    let request = |evidence: Vec<SlotEvidence>| {
        let checkpoint = cluster.disk(ReplicaId(3)).checkpoint.clone().map(|(c, _)| c);
        let bytes =
            ViewChange::signing_bytes(View(1), ReplicaId(3), checkpoint.as_ref(), &evidence);
        let signature = cluster.keys().replicas[3].signing_key.sign(&bytes);
        let request =
            ViewChange { target: View(1), replica: ReplicaId(3), checkpoint, evidence, signature };
        Message::ViewChange(std::sync::Arc::new(request))
    };
    let genuine = {
        let mut evidence = forged.clone();
        let block = cluster.replica(ReplicaId(3)).ledger().get(evidence[0].seq).expect("held");
        evidence[0].batch = block.batch.clone();
        evidence
    };
    let (forged, genuine) = (request(forged), request(genuine));
    let result = cluster.inject(ReplicaId(3), ReplicaId(0), &forged);
    assert!(matches!(result, Err(Rejection::InvalidViewChange { .. })), "{result:?}");
    cluster.inject(ReplicaId(3), ReplicaId(0), &genuine).expect("the genuine request is valid");
}

/// The same forgery by a new primary: a slot the view change carried over is proposed again
/// with the decided batch, which backups compared by digest only, so the new primary could
/// swap the signature bytes of its requests. Backups now check the signatures of a carried
/// proposal too.
///
/// Setup: n = 4 PoE-MAC; after 60 requests the primary of view 0 crashes; replica 1, primary
/// of view 1, flips a bit of the first client signature in every PROPOSE of view 1 for a slot
/// executed before the crash (all carried over) and re-seals it with its own keys.
/// Test: the backups refuse those proposals (invalid client signature), the view changes
/// again, every request completes and every request in the honest ledgers carries a valid
/// signature.
#[test]
fn fuzz_found_forged_signature_in_carried_proposal() {
    let mut cluster =
        Cluster::new(SimOptions::new(Config::new(Protocol::PoeMac, 4, 16), 1210, 300));
    cluster.run_until(STEPS_MAX_DEFAULT, |cluster| cluster.completions.len() >= 60).expect("60");
    let carried = cluster.replicas().map(|replica| replica.last_executed()).max();
    let carried = carried.expect("replicas");
    cluster.crash(ReplicaId(0));
    let keys = cluster.keys().replicas[1].replica_macs.clone();
    cluster.set_outbound_hook(
        ReplicaId(1),
        Box::new(move |transmit| {
            let Transmit::Replica { to, envelope } = &transmit else { return vec![transmit] };
            let Ok(Message::Propose(mut propose)) = decode(&envelope.payload) else {
                return vec![transmit];
            };
            if propose.view != View(1) || propose.seq > carried {
                return vec![transmit];
            }
            let mut batch = propose.batch.to_vec();
            batch[0].signature.0[40] ^= 0x10;
            propose.batch = batch.into();
            let message = Message::Propose(propose);
            let envelope = Envelope::new(&message, &keys[to.index()], ReplicaId(1), *to);
            vec![Transmit::Replica { to: *to, envelope }]
        }),
    );
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    assert_every_request_completed(&cluster, 300);
    let honest = [ReplicaId(1), ReplicaId(2), ReplicaId(3)];
    for id in [ReplicaId(2), ReplicaId(3)] {
        let refused = cluster.replica(id).counters().rejected("invalid_client_signature");
        assert!(refused > 0, "replica {id} refused the forged carried proposals");
    }
    assert!(cluster.replica(ReplicaId(2)).view() >= View(2), "view 1 did not hold");
    assert_ledger_signatures_verify(&cluster, &honest);
}
