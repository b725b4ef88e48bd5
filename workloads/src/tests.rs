//! Generators and the recorder.

use std::collections::BTreeSet;
use std::time::Instant;

use history::{Op, OpKind, OpResult, Operation, Process, Proof};

use crate::generator::{BANK_OPENING_BALANCE, Workload};
use crate::recorder::{Completion, Recorder};

/// The same seed gives the same operations; writes are unique across clients.
#[test]
fn register_generator_is_seeded_and_writes_unique_values() {
    let ops = |seed| {
        let mut generator = Workload::Register.generator(seed, 4, 1, 3);
        (0..200).map(|_| generator.next_op()).collect::<Vec<_>>()
    };
    assert_eq!(ops(7), ops(7));
    assert_ne!(ops(7), ops(8));
    let mut written = BTreeSet::new();
    for client in 0..3 {
        let mut generator = Workload::Register.generator(1, 2, client, 3);
        for _ in 0..500 {
            match generator.next_op() {
                Operation::Write { value, .. } | Operation::Cas { to: value, .. } => {
                    assert!(written.insert(value), "value {value} written twice");
                }
                Operation::Read { key } => assert!(key == "k0" || key == "k1"),
                other => panic!("register workload produced {other:?}"),
            }
        }
    }
}

/// After observing a value, cas compares against it.
#[test]
fn register_generator_cas_uses_observed_values() {
    let mut generator = Workload::Register.generator(3, 1, 0, 1);
    generator.observe(&Operation::Read { key: "k0".into() }, &OpResult::Read { value: Some(4242) });
    let cas_from: Vec<i64> = (0..100)
        .filter_map(|_| match generator.next_op() {
            Operation::Cas { from, .. } => Some(from),
            _ => None,
        })
        .collect();
    assert!(cas_from.first() == Some(&4242), "{cas_from:?}");
}

#[test]
fn bank_generator_moves_money_between_distinct_accounts() {
    let genesis = Workload::Bank.genesis(5);
    assert_eq!(genesis.values().sum::<i64>(), 5 * BANK_OPENING_BALANCE);
    let mut generator = Workload::Bank.generator(9, 5, 0, 1);
    let mut reads = 0;
    for _ in 0..1000 {
        match generator.next_op() {
            Operation::Transfer { from, to, amount } => {
                assert_ne!(from, to);
                assert!(genesis.contains_key(&from) && genesis.contains_key(&to));
                assert!((1..=10).contains(&amount));
            }
            Operation::ReadAll { keys } => {
                reads += 1;
                assert_eq!(keys.len(), 5);
            }
            other => panic!("bank workload produced {other:?}"),
        }
    }
    assert!((100..300).contains(&reads), "about 20% reads: {reads}");
}

/// The recorder writes the documented format, with increasing index and time, a proof on `ok`,
/// `fail` for a refused cas and `info` with its reason.
#[test]
fn recorder_writes_jepsen_history_lines() {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let dir = temporary.path();
    let path = dir.join("history.jsonl");
    #[allow(clippy::disallowed_methods, reason = "the recorder stamps with the wall clock")]
    let start = Instant::now();
    let recorder = Recorder::create(&path, start).unwrap();
    let cas = Operation::Cas { key: "k1".into(), from: 3, to: 4 };
    let read = Operation::ReadAll { keys: vec!["a0".into(), "a1".into()] };
    let proof = Proof { view: 0, seq: 9, replicas: vec![0, 1, 2], informed: vec![] };
    recorder.invoke(Process::Client(2), &cas, 2, 17);
    recorder.invoke(Process::Client(5), &read, 5, 1);
    let refused =
        Completion::Done { result: OpResult::Cas { swapped: false }, proof: proof.clone() };
    recorder.complete(Process::Client(2), &cas, 2, 17, &refused);
    let values = OpResult::ReadAll { values: vec![Some(90), Some(110)] };
    recorder.complete(Process::Client(5), &read, 5, 1, &Completion::Done { result: values, proof });
    let write = Operation::Write { key: "k2".into(), value: 8 };
    recorder.invoke(Process::Client(3), &write, 3, 4);
    recorder.complete(
        Process::Client(3),
        &write,
        3,
        4,
        &Completion::Unknown { reason: "timeout".into() },
    );
    recorder.flush().unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let ops: Vec<Op> = text.lines().map(|line| serde_json::from_str(line).unwrap()).collect();
    assert_eq!(ops.len(), 6);
    assert!(
        ops.windows(2).all(|pair| pair[0].index < pair[1].index && pair[0].time <= pair[1].time)
    );
    assert_eq!((ops[0].f.as_str(), ops[0].value.clone()), ("cas", serde_json::json!([3, 4])));
    assert_eq!(
        (ops[2].kind, ops[2].error.as_deref(), &ops[2].proof),
        (OpKind::Fail, Some("cas-mismatch"), &None)
    );
    assert_eq!(ops[3].kind, OpKind::Ok);
    assert_eq!(ops[3].value, serde_json::json!({"a0": 90, "a1": 110}));
    assert_eq!(ops[3].proof.as_ref().map(|proof| proof.seq), Some(9));
    assert_eq!((ops[5].kind, ops[5].error.as_deref()), (OpKind::Info, Some("timeout")));
    assert_eq!((ops[5].client, ops[5].request), (Some(3), Some(4)));
    let counts = recorder.counts();
    assert_eq!((counts.invoke, counts.ok, counts.fail, counts.info), (3, 1, 1, 1));
}
