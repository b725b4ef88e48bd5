//! The per-protocol oracles: `client-proofs` (nf identical INFORMs in PoE, f + 1 matching
//! REPLYs in PBFT) and `committed-final` (no rollback in an honest PBFT ledger).

use std::collections::BTreeMap;

use history::{Op, OpKind, Process, Proof, Verdict};
use serde_json::json;

use super::{execute, rollback};
use crate::protocol::{Rules, client_proofs, committed_final};
use crate::validate;

/// One `ok` write whose proof names `replicas`.
fn proven_by(replicas: Vec<u32>) -> Vec<validate::Operation> {
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
    let proof = Proof { view: 0, seq: 1, replicas, informed: Vec::new() };
    let ops = [event(OpKind::Invoke, 1), Op { proof: Some(proof), ..event(OpKind::Ok, 9) }];
    validate::pair(&ops, &[1, 2]).expect("a well-formed history")
}

#[test]
fn rules_follow_the_protocol_and_n() {
    let poe = Rules::of("poe-ts", 7).expect("known");
    assert_eq!((poe.reply_quorum, poe.speculative), (5, true));
    let pbft = Rules::of("pbft", 7).expect("known");
    assert_eq!((pbft.reply_quorum, pbft.speculative), (3, false));
    assert_eq!(Rules::of("pbft", 4).expect("known").reply_quorum, 2);
    assert!(Rules::of("raft", 4).is_none());
}

/// f + 1 replies prove a PBFT request and do not prove a PoE one; replica ids outside the
/// cluster and repeated ids do not count.
#[test]
fn client_proofs_need_the_reply_quorum() {
    let pbft = Rules::of("pbft", 4).expect("known");
    let poe = Rules::of("poe-mac", 4).expect("known");
    assert_eq!(client_proofs(&proven_by(vec![1, 2]), &pbft).verdict, Verdict::Valid);
    let short = client_proofs(&proven_by(vec![1, 2]), &poe);
    assert_eq!(short.verdict, Verdict::Invalid);
    assert_eq!(short.evidence["short_proofs"], 1);
    assert_eq!(client_proofs(&proven_by(vec![0, 1, 3]), &poe).verdict, Verdict::Valid);
    assert_eq!(client_proofs(&proven_by(vec![1, 9]), &pbft).verdict, Verdict::Invalid);
    assert_eq!(client_proofs(&[], &pbft).verdict, Verdict::Unknown);
}

/// An honest PBFT ledger that rolled an execution back is invalid; one that did not is valid.
#[test]
fn committed_final_refuses_any_rollback() {
    let clean: BTreeMap<u32, _> =
        [(0, vec![execute(0, 1, 1), execute(0, 2, 2)]), (1, vec![execute(1, 1, 1)])].into();
    assert_eq!(committed_final(&clean).verdict, Verdict::Valid);
    let rolled: BTreeMap<u32, _> =
        [(0, vec![execute(0, 1, 1), execute(0, 2, 2), rollback(0, 2, 1), execute(0, 2, 3)])].into();
    let result = committed_final(&rolled);
    assert_eq!(result.verdict, Verdict::Invalid);
    assert_eq!(result.evidence["rollbacks"], 1);
    assert_eq!(committed_final(&BTreeMap::new()).verdict, Verdict::Unknown);
}
