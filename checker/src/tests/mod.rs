//! Checker tests: each oracle on records that satisfy it and on records that violate it.

use std::collections::BTreeMap;

use history::{Digest, ExecuteEvent, LedgerEvent, Op, OpKind, Process, RollbackEvent, Verdict};

use crate::{ledger, load, perf};

mod edn;
mod evidence;
mod informs;
mod linear;
mod oracles;
mod protocol;
mod vectors;

fn execute(replica: u32, seq: u64, block: u8) -> LedgerEvent {
    LedgerEvent::Execute(ExecuteEvent {
        time: seq,
        replica,
        view: 0,
        seq,
        batch_digest: Digest([block; 32]),
        block_hash: Digest([block; 32]),
        requests: Vec::new(),
        state_digest: Digest([block.wrapping_add(1); 32]),
    })
}

fn rollback(replica: u32, from_seq: u64, to_seq: u64) -> LedgerEvent {
    LedgerEvent::Rollback(RollbackEvent {
        time: 0,
        replica,
        from_seq,
        to_seq,
        state_digest: Digest::ZERO,
    })
}

#[test]
fn agreeing_ledgers_are_valid_even_when_one_lags() {
    let ledgers = BTreeMap::from([
        (0, vec![execute(0, 1, 1), execute(0, 2, 2), execute(0, 3, 3)]),
        (1, vec![execute(1, 1, 1), execute(1, 2, 2)]),
        (2, vec![execute(2, 1, 1), execute(2, 2, 2), execute(2, 3, 3)]),
    ]);
    let result = ledger::agreement(&ledgers);
    assert_eq!(result.verdict, Verdict::Valid);
    assert_eq!(result.evidence["compared"], 3);
}

#[test]
fn ledgers_with_nothing_in_common_prove_nothing() {
    let ledgers = BTreeMap::from([(0, vec![execute(0, 1, 1)]), (1, Vec::new())]);
    let result = ledger::agreement(&ledgers);
    assert_eq!(result.verdict, Verdict::Unknown);
    assert_eq!(result.evidence["compared"], 0);
}

#[test]
fn diverging_ledgers_are_invalid_and_the_slot_is_named() {
    let ledgers = BTreeMap::from([
        (0, vec![execute(0, 1, 1), execute(0, 2, 2)]),
        (3, vec![execute(3, 1, 1), execute(3, 2, 9)]),
    ]);
    let result = ledger::agreement(&ledgers);
    assert_eq!(result.verdict, Verdict::Invalid);
    assert_eq!(result.evidence["divergence"]["seq"], 2);
    assert_eq!(result.evidence["divergence"]["block_hashes"]["3"], Digest([9; 32]).to_hex());
}

/// A rolled-back slot does not count against agreement; what was executed after it does.
#[test]
fn rollbacks_are_applied_before_comparing() {
    let rolled_back = vec![execute(1, 1, 1), execute(1, 2, 7), rollback(1, 2, 1), execute(1, 2, 2)];
    let ledgers = BTreeMap::from([(0, vec![execute(0, 1, 1), execute(0, 2, 2)]), (1, rolled_back)]);
    assert_eq!(ledger::agreement(&ledgers).verdict, Verdict::Valid);
    let kept_wrong = vec![execute(1, 1, 1), execute(1, 2, 7), rollback(1, 2, 2)];
    let ledgers = BTreeMap::from([(0, vec![execute(0, 1, 1), execute(0, 2, 2)]), (1, kept_wrong)]);
    assert_eq!(ledger::agreement(&ledgers).verdict, Verdict::Invalid);
}

fn op(process: u64, kind: OpKind, time: u64) -> Op {
    Op {
        index: None,
        time,
        process: Process::Client(process),
        kind,
        f: "read".into(),
        key: Some("k".into()),
        value: serde_json::Value::Null,
        client: None,
        request: None,
        proof: None,
        error: None,
    }
}

#[test]
fn stats_count_completions_and_latencies() {
    let ms = 1_000_000;
    let history = vec![
        op(0, OpKind::Invoke, 0),
        op(1, OpKind::Invoke, ms),
        op(0, OpKind::Ok, 2 * ms),
        op(1, OpKind::Fail, 3 * ms),
        op(2, OpKind::Invoke, 4 * ms),
        op(0, OpKind::Invoke, 5 * ms),
        op(0, OpKind::Ok, 10 * ms),
    ];
    let stats = perf::stats(&history);
    assert_eq!((stats.invoke, stats.ok, stats.fail, stats.info), (4, 2, 1, 1));
    assert_eq!(stats.latency_ms.p50, 2.0);
    assert_eq!(stats.latency_ms.max, 5.0);
    assert!((stats.duration_s - 0.01).abs() < 1e-9);
    assert!((stats.ops_per_s - 200.0).abs() < 1e-6);
}

#[test]
fn loading_names_the_bad_line_and_tolerates_a_cut_ledger_tail() {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let dir = temporary.path();
    let history = dir.join("history.jsonl");
    let good = serde_json::to_string(&op(0, OpKind::Invoke, 1)).unwrap();
    std::fs::write(&history, format!("{good}\n{{\"process\":0,\"type\":\"oops\"}}\n{good}\n"))
        .unwrap();
    let error = load::history(&history).unwrap_err().to_string();
    assert!(error.contains("history.jsonl:2:"), "{error}");
    let ledger_path = dir.join("ledger.jsonl");
    let line = serde_json::to_string(&execute(0, 1, 1)).unwrap();
    std::fs::write(&ledger_path, format!("{line}\n{}", &line[..line.len() / 2])).unwrap();
    let file = load::ledger(&ledger_path).unwrap();
    assert_eq!((file.events.len(), file.truncated_line), (1, Some(2)));
    std::fs::write(&ledger_path, format!("{}\n{line}\n", &line[..10])).unwrap();
    assert!(load::ledger(&ledger_path).is_err(), "only the last line may be cut");
}
