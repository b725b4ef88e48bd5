//! `inform-certificates` on hand-made ledgers: INFORMs backed by an execution or a
//! re-certification of the proof's view, and the INFORM sent before the slot was certified
//! again in the new view (PROTOCOL §5.4), which is invalid.

use std::collections::BTreeMap;

use history::{
    CheckpointEvent, Digest, ExecuteEvent, ExecutedRequest, LedgerEvent, Op, OpKind, OpResult,
    Operation, Process, Proof, RecertifiedEvent, RollbackEvent, StateTransferEvent, Verdict,
};
use serde_json::json;

use crate::CheckResult;
use crate::informs::check;
use crate::validate;

const MS: u64 = 1_000_000;

/// Client 0's request 1 (a write of x) executed at `seq` under `view` by `replica`.
fn executed(replica: u32, time: u64, view: u64, seq: u64) -> LedgerEvent {
    LedgerEvent::Execute(ExecuteEvent {
        time,
        replica,
        view,
        seq,
        batch_digest: Digest([7; 32]),
        block_hash: Digest([seq as u8; 32]),
        requests: vec![ExecutedRequest {
            client: 0,
            request: 1,
            op: Operation::Write { key: "x".into(), value: 1 },
            result: Some(OpResult::Written),
            signature: String::new(),
        }],
        state_digest: Digest::ZERO,
    })
}

fn recertified(replica: u32, time: u64, seq: u64, old_view: u64, new_view: u64) -> LedgerEvent {
    LedgerEvent::Recertified(RecertifiedEvent {
        time,
        replica,
        seq,
        old_view,
        new_view,
        batch_digest: Digest([7; 32]),
    })
}

/// Client 0's write of x, completed at 50 ms with a proof (view, seq 3) from replicas 0 to 2,
/// whose INFORMs arrived at `informed` (nanoseconds; empty: not recorded).
fn proven(view: u64, informed: Vec<u64>) -> Vec<validate::Operation> {
    let event = |kind, time| Op {
        index: None,
        time,
        process: Process::Client(0),
        kind,
        f: "write".into(),
        key: Some("x".into()),
        value: json!(1),
        client: Some(0),
        request: Some(1),
        proof: None,
        error: None,
    };
    let proof = Proof { view, seq: 3, replicas: vec![0, 1, 2], informed };
    let ops = [event(OpKind::Invoke, MS), Op { proof: Some(proof), ..event(OpKind::Ok, 50 * MS) }];
    validate::pair(&ops, &[1, 2]).unwrap()
}

fn run(operations: &[validate::Operation], ledgers: Vec<(u32, Vec<LedgerEvent>)>) -> CheckResult {
    check(operations, &BTreeMap::from_iter(ledgers))
}

#[test]
fn informs_after_the_execution_of_their_view_are_valid() {
    let ledgers = (0..3).map(|r| (r, vec![executed(r, 10 * MS, 0, 3)])).collect();
    let result = run(&proven(0, vec![11 * MS, 12 * MS, 13 * MS]), ledgers);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(result.evidence["checked"], 3);
    assert_eq!(result.evidence["margin_min_us"], 1_000);
}

/// Slot 3 was executed in view 0 and kept into view 1: INFORMs tagged view 1 are backed once
/// the slot is certified again in view 1, not before.
#[test]
fn an_inform_of_the_new_view_before_the_recertification_is_invalid() {
    let ledger = |r: u32, recertified_at: u64| {
        (r, vec![executed(r, 10 * MS, 0, 3), recertified(r, recertified_at, 3, 0, 1)])
    };
    let informed = vec![30 * MS, 31 * MS, 32 * MS];
    let on_time = vec![ledger(0, 20 * MS), ledger(1, 20 * MS), ledger(2, 20 * MS)];
    assert_eq!(run(&proven(1, informed.clone()), on_time).verdict, Verdict::Valid);
    // Replica 1 informed at 31 ms, but certified the slot in view 1 only at 40 ms.
    let early = vec![ledger(0, 20 * MS), ledger(1, 40 * MS), ledger(2, 20 * MS)];
    let result = run(&proven(1, informed), early);
    assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
    assert_eq!(result.evidence["violations"], 1);
    let violation = &result.evidence["first"][0];
    assert_eq!((&violation["replica"], &violation["view"]), (&json!(1), &json!(1)));
    assert_eq!(violation["ledger"][1]["recertified_after"]["late_by_us"], 9_000);
}

#[test]
fn an_inform_with_no_certificate_of_its_view_at_all_is_invalid() {
    // Without recorded INFORM times the completion's time (50 ms) is the bound.
    let ledgers = (0..3).map(|r| (r, vec![executed(r, 10 * MS, 0, 3)])).collect();
    let result = run(&proven(1, vec![]), ledgers);
    assert_eq!((result.verdict, &result.evidence["violations"]), (Verdict::Invalid, &json!(3)));
}

#[test]
fn an_execution_rolled_back_and_replaced_backs_nothing() {
    let mut other = match executed(1, 15 * MS, 1, 3) {
        LedgerEvent::Execute(execute) => execute,
        _ => unreachable!(),
    };
    other.requests[0].request = 9;
    let rollback = LedgerEvent::Rollback(RollbackEvent {
        time: 12 * MS,
        replica: 1,
        from_seq: 3,
        to_seq: 2,
        state_digest: Digest::ZERO,
    });
    let ledgers = vec![
        (0, vec![executed(0, 10 * MS, 1, 3)]),
        (1, vec![executed(1, 10 * MS, 0, 3), rollback, LedgerEvent::Execute(other)]),
        (2, vec![executed(2, 10 * MS, 1, 3)]),
    ];
    // Replica 1's recertification names view 1, but its slot no longer holds the request.
    let mut ledgers = ledgers;
    ledgers[1].1.push(recertified(1, 20 * MS, 3, 1, 1));
    let result = run(&proven(1, vec![30 * MS; 3]), ledgers);
    assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
    assert_eq!(result.evidence["first"][0]["replica"], 1);
}

#[test]
fn a_snapshot_over_the_slot_backs_a_cached_reply_and_byzantine_senders_are_not_judged() {
    let transfer = LedgerEvent::StateTransfer(StateTransferEvent {
        time: 20 * MS,
        replica: 2,
        seq: 4,
        block_hash: Digest::ZERO,
        state_digest: Digest::ZERO,
        store: BTreeMap::new(),
        clients: vec![(0, 1)],
    });
    // Replica 1 (Byzantine) has no ledger here.
    let ledgers = vec![(0, vec![executed(0, 10 * MS, 0, 3)]), (2, vec![transfer])];
    let result = run(&proven(0, vec![30 * MS; 3]), ledgers);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(
        (&result.evidence["checked"], &result.evidence["backed_by_checkpoint"]),
        (&json!(2), &json!(1))
    );
}

/// A replica restarted from a snapshot it took from another replica answers a retransmission
/// from that snapshot's reply cache, under the other replica's view: the slot is below its
/// stable checkpoint, settled, and that is backing enough.
#[test]
fn a_stable_checkpoint_over_the_slot_backs_an_inform_of_any_view() {
    let stable = |time| {
        LedgerEvent::Checkpoint(CheckpointEvent {
            time,
            replica: 1,
            seq: 4,
            state_digest: Digest::ZERO,
            stable: true,
            certificate: None,
        })
    };
    let ledgers = |checkpoint_at| {
        vec![
            (0, vec![executed(0, 10 * MS, 1, 3)]),
            (1, vec![executed(1, 10 * MS, 0, 3), stable(checkpoint_at)]),
            (2, vec![executed(2, 10 * MS, 1, 3)]),
        ]
    };
    let result = run(&proven(1, vec![30 * MS; 3]), ledgers(20 * MS));
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(result.evidence["backed_by_checkpoint"], 1);
    // Stable only after the client heard replica 1: no backing then.
    let result = run(&proven(1, vec![30 * MS; 3]), ledgers(40 * MS));
    assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
}
