//! Checker tests: each oracle on records that satisfy it and on records that violate it.

use std::collections::BTreeMap;

use history::{Digest, ExecuteEvent, LedgerEvent, Op, OpKind, Process, RollbackEvent, Verdict};

use crate::linear::LinearOptions;
use crate::{audit, ledger, load, perf};

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

/// Setup: three `ok` operations: one before a fault, one that a fault started during, one
/// after it healed, and one invoked while it was under way. Test: only the first and the
/// third count as outside fault windows.
#[test]
fn quiet_latency_leaves_out_operations_a_fault_overlapped() {
    let ms = 1_000_000;
    let nemesis =
        |kind, time| Op { process: Process::Nemesis, f: "kill".into(), ..op(0, kind, time) };
    let history = vec![
        op(0, OpKind::Invoke, 0),
        op(0, OpKind::Ok, ms),
        op(1, OpKind::Invoke, 2 * ms),
        nemesis(OpKind::Invoke, 3 * ms),
        op(2, OpKind::Invoke, 4 * ms),
        op(1, OpKind::Ok, 50 * ms),
        nemesis(OpKind::Info, 60 * ms),
        op(2, OpKind::Ok, 70 * ms),
        op(3, OpKind::Invoke, 80 * ms),
        op(3, OpKind::Ok, 83 * ms),
    ];
    let stats = perf::stats(&history);
    assert_eq!(stats.ok, 4);
    assert_eq!(stats.latency_ms.max, 66.0);
    assert_eq!(stats.latency_quiet_ms.p50, 1.0);
    assert_eq!(stats.latency_quiet_ms.max, 3.0);

    // An `info` of another kind ends nothing: a partition still under way keeps the operation
    // it overlaps out, and an `info` that closes nothing (an attack's step) marks the
    // operations in flight.
    let kind = |f: &str, kind, time| Op { f: f.into(), ..nemesis(kind, time) };
    let history = vec![
        kind("partition", OpKind::Invoke, 0),
        kind("force-view-change", OpKind::Info, ms),
        op(0, OpKind::Invoke, 2 * ms),
        op(0, OpKind::Ok, 3 * ms),
        kind("partition", OpKind::Info, 4 * ms),
        op(1, OpKind::Invoke, 5 * ms),
        kind("amnesia", OpKind::Info, 6 * ms),
        op(1, OpKind::Ok, 7 * ms),
        op(2, OpKind::Invoke, 8 * ms),
        op(2, OpKind::Ok, 10 * ms),
    ];
    let stats = perf::stats(&history);
    assert_eq!(stats.ok, 3);
    assert_eq!(stats.latency_quiet_ms.max, 2.0, "only the last operation was quiet");
    assert_eq!(stats.latency_quiet_ms.p50, 2.0);
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

/// `ordeal check` pairs a history's events as it reads them (`audit::History::load`): blank
/// lines, comments and a cut last line are read as `load::history` reads them, and the pairing
/// and its line numbers are those of `validate::pair` over the whole history.
#[test]
fn pairing_while_loading_matches_pairing_after_loading() {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let path = temporary.path().join("history.jsonl");
    let line = |op: Op| serde_json::to_string(&op).unwrap();
    let mut ok = op(0, OpKind::Ok, 2);
    ok.value = serde_json::json!(7);
    let text = format!(
        "# a comment\n{}\n\n{}\n{}\n{}\n{}",
        line(op(0, OpKind::Invoke, 1)),
        line(op(1, OpKind::Invoke, 1)),
        line(ok),
        line(op(1, OpKind::Info, 3)),
        &line(op(0, OpKind::Invoke, 4))[..20],
    );
    std::fs::write(&path, text).unwrap();
    let file = load::history(&path).expect("a cut last line is tolerated");
    assert_eq!((file.lines.clone(), file.truncated_line), (vec![2, 4, 5, 6], Some(7)));
    let expected = crate::validate::pair(&file.ops, &file.lines).expect("well formed");
    let history = audit::History::load(&path).expect("loads");
    let report = audit::check(audit::Inputs {
        history: Some(Ok(history)),
        linear: LinearOptions::untimed(),
        ..Default::default()
    });
    let before = audit::check(audit::Inputs {
        history: Some(Ok(file.into())),
        linear: LinearOptions::untimed(),
        ..Default::default()
    });
    assert_eq!(report.operations, expected.len());
    assert_eq!(report.stats, perf::stats(&load::history(&path).unwrap().ops));
    assert_eq!(report.checkers, before.checkers);
    assert_eq!(report.checkers["history"].evidence["events"], 4);
    assert_eq!(report.checkers["history"].evidence["errors"][0], "line 7 is cut off");
}

/// A history that breaks a pairing rule and also has a bad line later is a load error naming
/// the bad line, as when the whole file was parsed before pairing; and a byte that is not
/// UTF-8 anywhere is the error `std::fs::read_to_string` gives, even after a bad line.
#[test]
fn loading_while_pairing_reports_the_errors_loading_first_reported() {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let path = temporary.path().join("history.jsonl");
    let line = |op: Op| serde_json::to_string(&op).unwrap();
    let invoke = line(op(0, OpKind::Invoke, 1));
    std::fs::write(&path, format!("{invoke}\n{invoke}\n{{\"oops\":1}}\n")).unwrap();
    let error = audit::History::load(&path).unwrap_err().to_string();
    assert!(
        error.ends_with("history.jsonl:3: missing field `time` at line 1 column 10"),
        "{error}"
    );
    std::fs::write(&path, format!("{invoke}\n{invoke}\n")).unwrap();
    let history = audit::History::load(&path).expect("a pairing error is not a load error");
    let report = audit::check(audit::Inputs { history: Some(Ok(history)), ..Default::default() });
    let error = report.history_error.expect("double invoke").to_string();
    assert_eq!(
        error,
        "line 2: double-invoke: process 0 still has the operation of line 1 in flight"
    );
    let mut bytes = format!("{invoke}\n{{\"oops\":1}}\n{invoke}\n").into_bytes();
    bytes.extend([0xff, b'\n']);
    std::fs::write(&path, &bytes).unwrap();
    let reason = std::fs::read_to_string(&path).unwrap_err().to_string();
    let expected = load::LoadError::Read { path: path.clone(), reason };
    assert_eq!(load::history(&path).unwrap_err(), expected);
    assert_eq!(audit::History::load(&path).unwrap_err(), expected);
}
