//! `checkpoint-certificates` and `view-change-decisions` on records signed with real ed25519
//! keys: valid ones, and hand-made violations (too few or forged signatures, a first-seen
//! decision, a decision that stops short or runs past the evidence).

use std::collections::BTreeMap;

use ed25519_dalek::{Signer, SigningKey};
use history::{
    CheckpointCertificateRecord, CheckpointEvent, DecisionRecord, Digest, EvidenceRecord,
    LedgerEvent, NewViewRecord, SignatureRecord, Verdict, ViewChangeRecord, ViewEvent,
};

use crate::CheckResult;
use crate::digest::{Hasher, Keys, Signatures};
use crate::evidence::{checkpoint_certificates, view_change_decisions};

fn key(replica: u32) -> SigningKey {
    SigningKey::from_bytes(&[replica as u8 + 40; 32])
}

fn public_keys(n: u32) -> Vec<[u8; 32]> {
    (0..n).map(|replica| key(replica).verifying_key().to_bytes()).collect()
}

fn signature(replica: u32, message: &Digest) -> SignatureRecord {
    SignatureRecord { replica, signature: hex::encode(key(replica).sign(&message.0).to_bytes()) }
}

/// A certificate for the checkpoint at `seq` signed by `signers`.
fn certificate(seq: u64, signers: &[u32]) -> CheckpointCertificateRecord {
    let state_digest = Digest([seq as u8; 32]);
    let block_hash = Digest([seq as u8 + 1; 32]);
    let message = Hasher::new(b"ordeal/checkpoint/v1")
        .u64(seq)
        .digest(&state_digest)
        .digest(&block_hash)
        .finish();
    CheckpointCertificateRecord {
        seq,
        state_digest,
        block_hash,
        signatures: signers.iter().map(|&replica| signature(replica, &message)).collect(),
    }
}

fn stable(replica: u32, certificate: CheckpointCertificateRecord) -> LedgerEvent {
    LedgerEvent::Checkpoint(CheckpointEvent {
        time: certificate.seq,
        replica,
        seq: certificate.seq,
        state_digest: certificate.state_digest,
        stable: true,
        certificate: Some(certificate),
    })
}

fn check_checkpoints(n: u32, events: Vec<LedgerEvent>) -> CheckResult {
    checkpoint_certificates(&BTreeMap::from([(1, events)]), Some(Keys::ed25519(&public_keys(n))))
}

#[test]
fn checkpoints_stable_on_nf_valid_signatures_are_valid() {
    let result = check_checkpoints(4, vec![stable(1, certificate(8, &[0, 1, 2]))]);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(result.evidence["checked"], 1);
    let result = check_checkpoints(5, vec![stable(1, certificate(8, &[4, 0, 2, 1]))]);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
}

/// f + 1 signatures (PBFT's state-copy rule) and, at n = 5, 2f + 1 = 3 < nf = 4.
#[test]
fn checkpoints_stable_on_too_few_signatures_are_invalid() {
    for (n, signers) in [(4, &[0u32, 1][..]), (5, &[0, 1, 2][..])] {
        let result = check_checkpoints(n, vec![stable(1, certificate(8, signers))]);
        assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
        let reason = result.evidence["listed"][0]["reason"].as_str().unwrap();
        assert!(reason.contains("fewer than nf"), "{reason}");
    }
}

#[test]
fn checkpoints_with_forged_duplicate_or_foreign_signatures_are_invalid() {
    let mut forged = certificate(8, &[0, 1, 2]);
    forged.signatures[2] = signature(2, &Digest([9; 32]));
    let mut duplicate = certificate(8, &[0, 1, 2]);
    duplicate.signatures[2] = duplicate.signatures[0].clone();
    let foreign = certificate(8, &[0, 1, 7]);
    let mut other = certificate(8, &[0, 1, 2]);
    other.seq = 16;
    for (bad, expected) in [
        (forged, "does not verify"),
        (duplicate, "two signatures"),
        (foreign, "not in the cluster"),
        (other, "does not verify"),
    ] {
        let result = check_checkpoints(4, vec![stable(1, bad)]);
        assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
        let reason = result.evidence["listed"][0]["reason"].as_str().unwrap();
        assert!(reason.contains(expected), "{reason}");
    }
}

#[test]
fn records_without_keys_are_unknown_and_no_records_are_valid() {
    let ledgers = BTreeMap::from([(1, vec![stable(1, certificate(8, &[0, 1, 2]))])]);
    assert_eq!(checkpoint_certificates(&ledgers, None).verdict, Verdict::Unknown);
    let empty = BTreeMap::from([(1, Vec::new())]);
    let result = checkpoint_certificates(&empty, None);
    assert_eq!(result.verdict, Verdict::Valid);
    assert_eq!(view_change_decisions(&empty, None, false).verdict, Verdict::Valid);
}

// ---------------------------------------------------------------------------------------------
// NV-PROPOSEs.

fn evidence(seq: u64, view: u64, batch: u8) -> EvidenceRecord {
    EvidenceRecord { seq, view, batch_digest: Digest([batch; 32]) }
}

/// `replica`'s VC-REQUEST for `target`, validly signed.
fn request(
    replica: u32,
    target: u64,
    checkpoint: Option<CheckpointCertificateRecord>,
    evidence: Vec<EvidenceRecord>,
) -> ViewChangeRecord {
    let signing_digest = Digest([replica as u8 * 3 + target as u8; 32]);
    let signature = signature(replica, &signing_digest).signature;
    ViewChangeRecord { replica, target, checkpoint, evidence, signing_digest, signature }
}

fn entered(view: u64, requests: Vec<ViewChangeRecord>, decision: DecisionRecord) -> LedgerEvent {
    LedgerEvent::ViewEntered(ViewEvent {
        time: view,
        replica: 2,
        view,
        backoff_ms: None,
        new_view: Some(NewViewRecord { requests, decision }),
    })
}

/// View 2 from three VC-REQUESTs: checkpoint 8 at replica 1, slot 9 certified in view 0 (batch
/// 1) at replica 0 and in view 1 (batch 2) at replica 1, slot 10 in view 0 at replica 0.
fn view_two(decision: DecisionRecord) -> LedgerEvent {
    let requests = vec![
        request(
            0,
            2,
            Some(certificate(4, &[0, 1, 2])),
            vec![evidence(5, 0, 7), evidence(9, 0, 1), evidence(10, 0, 3)],
        ),
        request(1, 2, Some(certificate(8, &[0, 1, 3])), vec![evidence(9, 1, 2)]),
        request(3, 2, None, Vec::new()),
    ];
    entered(2, requests, decision)
}

fn honest_decision() -> DecisionRecord {
    DecisionRecord { checkpoint: 8, slots: vec![evidence(9, 1, 2), evidence(10, 0, 3)] }
}

fn check_views(events: Vec<LedgerEvent>) -> CheckResult {
    view_change_decisions(
        &BTreeMap::from([(2, events)]),
        Some(Keys::ed25519(&public_keys(4))),
        false,
    )
}

fn reason(result: &CheckResult) -> String {
    assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
    result.evidence["listed"][0]["reason"].as_str().unwrap().to_string()
}

#[test]
fn the_decision_from_valid_requests_is_valid() {
    let result = check_views(vec![view_two(honest_decision())]);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(result.evidence["views"], 1);
}

/// PROTOCOL §5.3 step 3 (ResilientDB's `SendNewView`, Zyzzyva): the first certificate met for
/// slot 9 is view 0's; the highest is view 1's.
#[test]
fn a_first_seen_decision_is_invalid() {
    let decision =
        DecisionRecord { checkpoint: 8, slots: vec![evidence(9, 0, 1), evidence(10, 0, 3)] };
    let reason = reason(&check_views(vec![view_two(decision)]));
    assert!(reason.contains("slot 9") && reason.contains("view 1"), "{reason}");
}

#[test]
fn decisions_that_stop_short_run_past_or_start_low_are_invalid() {
    let short = DecisionRecord { checkpoint: 8, slots: vec![evidence(9, 1, 2)] };
    assert!(reason(&check_views(vec![view_two(short)])).contains("certify slot 10"));
    let past = DecisionRecord {
        checkpoint: 8,
        slots: vec![evidence(9, 1, 2), evidence(10, 0, 3), evidence(11, 0, 4)],
    };
    assert!(reason(&check_views(vec![view_two(past)])).contains("decided slot 11"));
    let low = DecisionRecord { checkpoint: 4, slots: vec![evidence(5, 0, 7)] };
    assert!(reason(&check_views(vec![view_two(low)])).contains("checkpoint 4"));
    let other_batch =
        DecisionRecord { checkpoint: 8, slots: vec![evidence(9, 1, 5), evidence(10, 0, 3)] };
    assert!(reason(&check_views(vec![view_two(other_batch)])).contains("decided batch"));
}

/// PROTOCOL §5.3 step 1: an NV-PROPOSE whose VC-REQUESTs are forged, too few, duplicated, for
/// another view, or carry a checkpoint certificate of f + 1 signatures.
#[test]
fn new_views_on_invalid_requests_are_invalid() {
    let decision = || DecisionRecord { checkpoint: 0, slots: Vec::new() };
    let valid = || {
        vec![request(0, 3, None, vec![]), request(1, 3, None, vec![]), request(2, 3, None, vec![])]
    };
    let result = check_views(vec![entered(3, valid(), decision())]);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);

    let mut forged = valid();
    forged[1].evidence.clear();
    forged[1].signing_digest = Digest([0xab; 32]);
    assert!(reason(&check_views(vec![entered(3, forged, decision())])).contains("does not verify"));
    let mut few = valid();
    few.pop();
    assert!(reason(&check_views(vec![entered(3, few, decision())])).contains("2 VC-REQUESTs"));
    let mut twice = valid();
    twice[2] = twice[0].clone();
    assert!(reason(&check_views(vec![entered(3, twice, decision())])).contains("two VC-REQUESTs"));
    let mut other_view = valid();
    other_view[2] = request(2, 4, None, vec![]);
    assert!(reason(&check_views(vec![entered(3, other_view, decision())])).contains("view 4"));
    let mut weak = valid();
    weak[0] = request(0, 3, Some(certificate(8, &[0, 1])), vec![]);
    let weak_decision = DecisionRecord { checkpoint: 8, slots: Vec::new() };
    let reason = reason(&check_views(vec![entered(3, weak, weak_decision)]));
    assert!(
        reason.contains("checkpoint certificate") && reason.contains("fewer than nf"),
        "{reason}"
    );
}

/// View 2 of PBFT from two VC-REQUESTs with a gap: checkpoint 8, slot 9 certified in view 1
/// (batch 2), slot 11 in view 0 (batch 4), nothing for slot 10.
fn pbft_view_two(decision: DecisionRecord) -> LedgerEvent {
    let requests = vec![
        request(0, 2, Some(certificate(8, &[0, 1, 3])), vec![evidence(9, 1, 2)]),
        request(1, 2, None, vec![evidence(11, 0, 4)]),
        request(3, 2, None, Vec::new()),
    ];
    entered(2, requests, decision)
}

fn check_pbft_views(events: Vec<LedgerEvent>) -> CheckResult {
    view_change_decisions(
        &BTreeMap::from([(2, events)]),
        Some(Keys::ed25519(&public_keys(4))),
        true,
    )
}

/// PROTOCOL §7 view change step 3: PBFT decides up to max-s with a null request (view 0, the
/// empty batch) in every gap. A decision that stops at the gap (PoE's rule), puts a batch in
/// the gap, or stops below max-s is invalid for PBFT; the null-filled one is invalid for PoE.
#[test]
fn pbft_decisions_fill_gaps_with_null_requests() {
    let null = EvidenceRecord { seq: 10, view: 0, batch_digest: crate::digest::batch_digest(&[]) };
    let filled = || DecisionRecord {
        checkpoint: 8,
        slots: vec![evidence(9, 1, 2), null.clone(), evidence(11, 0, 4)],
    };
    let result = check_pbft_views(vec![pbft_view_two(filled())]);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert!(reason(&check_views(vec![pbft_view_two(filled())])).contains("decided slot 10"));

    let truncated = DecisionRecord { checkpoint: 8, slots: vec![evidence(9, 1, 2)] };
    assert!(reason(&check_pbft_views(vec![pbft_view_two(truncated)])).contains("certify slot 10"));
    let stuffed = DecisionRecord {
        checkpoint: 8,
        slots: vec![evidence(9, 1, 2), evidence(10, 0, 5), evidence(11, 0, 4)],
    };
    assert!(reason(&check_pbft_views(vec![pbft_view_two(stuffed)])).contains("null request"));
    let past = DecisionRecord {
        checkpoint: 8,
        slots: vec![evidence(9, 1, 2), null.clone(), evidence(11, 0, 4), null.clone()],
    };
    assert!(reason(&check_pbft_views(vec![pbft_view_two(past)])).contains("decided slot"));
}

/// A simulated run's signatures (the simulator's keyed hash) verify under the simulated scheme
/// only, and real ed25519 signatures under ed25519 only; an altered byte fails either way.
#[test]
fn signature_schemes_do_not_mix() {
    use sha2::{Digest as _, Sha512};
    let key = key(1);
    let public = [key.verifying_key().to_bytes()];
    let message = b"ordeal/checkpoint/v1 and so on";
    let mut hash = Sha512::new();
    hash.update(b"ordeal/simulated-signature/v1");
    hash.update(public[0]);
    hash.update(message);
    let simulated: [u8; 64] = hash.finalize().into();
    let real = key.sign(message).to_bytes();
    let simulated_keys = Keys { keys: &public, scheme: Signatures::Simulated };
    let real_keys = Keys::ed25519(&public);
    assert!(simulated_keys.verify(0, message, &simulated));
    assert!(!real_keys.verify(0, message, &simulated));
    assert!(real_keys.verify(0, message, &real));
    assert!(!simulated_keys.verify(0, message, &real));
    let mut altered = simulated;
    altered[3] ^= 1;
    assert!(!simulated_keys.verify(0, message, &altered));
    assert!(!simulated_keys.verify(1, message, &simulated), "no key 1");
}
