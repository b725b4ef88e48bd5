//! Speculative non-divergence (PROTOCOL §10): a client's proof of execution is a promise. For
//! every `ok` operation with a proof (view, seq), every honest replica whose final ledger
//! reaches seq holds the operation's request there with the result the client recorded, and no
//! honest replica ever rolled back (or dropped by a state transfer) a block of the proof's view
//! that held it with that result (PROTOCOL §10.2's internal check: executions under the same
//! view tag are never rolled back).
//!
//! In the final ledgers the view is not required to match: a slot carried into a new view is
//! re-certified there while the block (and so the promise) stays the same. A rollback of an
//! execution from another view is no violation: a replica may have executed the request at that
//! slot speculatively in an older view (say a primary whose certificate nobody else saw) and
//! execute it there again in the proof's view.

use std::collections::{BTreeMap, HashMap};

use history::{ExecuteEvent, LedgerEvent, OpResult, Verdict};
use serde_json::{Value, json};

use crate::CheckResult;
use crate::ledger::final_ledger;
use crate::validate::{Operation, Outcome};

/// The most violations listed.
const LISTED_MAX: usize = 10;

/// A promise a client accepted.
#[derive(Debug, Clone)]
struct Promise<'a> {
    operation: &'a Operation,
    client: u32,
    request: u64,
    view: u64,
    seq: u64,
}

/// Checks every `ok` operation's proof against the honest ledgers.
pub fn check(operations: &[Operation], ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> CheckResult {
    let mut promises: HashMap<u64, Vec<Promise<'_>>> = HashMap::new();
    let mut count = 0u64;
    for operation in operations {
        let Outcome::Ok(_) = operation.outcome else { continue };
        let (Some(client), Some(request), Some(proof)) =
            (operation.client, operation.request, &operation.proof)
        else {
            continue;
        };
        count += 1;
        promises.entry(proof.seq).or_default().push(Promise {
            operation,
            client,
            request,
            view: proof.view,
            seq: proof.seq,
        });
    }
    let mut violations: Vec<Value> = Vec::new();
    let mut total = 0u64;
    let mut report = |evidence: Value| {
        total += 1;
        if violations.len() < LISTED_MAX {
            violations.push(evidence);
        }
    };
    let finals: BTreeMap<u32, BTreeMap<u64, &ExecuteEvent>> =
        ledgers.iter().map(|(replica, events)| (*replica, final_ledger(events))).collect();
    let mut slots: Vec<&u64> = promises.keys().collect();
    slots.sort();
    for seq in slots {
        let mut held = false;
        for promise in &promises[seq] {
            for (replica, slots) in &finals {
                let Some(execute) = slots.get(seq) else { continue };
                held = true;
                if let Err(problem) = keeps(execute, promise) {
                    report(json!({
                        "replica": replica,
                        "op": describe(promise),
                        "problem": problem,
                    }));
                }
            }
        }
        let reached =
            finals.values().any(|slots| slots.keys().last().is_some_and(|head| head >= seq));
        if !held && !finals.is_empty() && !reached {
            for promise in &promises[seq] {
                report(json!({
                    "op": describe(promise),
                    "problem": "no honest replica's final ledger reaches the promised slot",
                }));
            }
        }
    }
    // Rollbacks of a promised block.
    for (replica, events) in ledgers {
        let mut current: BTreeMap<u64, &ExecuteEvent> = BTreeMap::new();
        for event in events {
            match event {
                LedgerEvent::Execute(execute) => {
                    current.insert(execute.seq, execute);
                }
                LedgerEvent::Rollback(rollback) => {
                    let undone = current.split_off(&(rollback.to_seq + 1));
                    let why = format!(
                        "rolled back (to seq {}) a block holding the promised result",
                        rollback.to_seq
                    );
                    report_undone(*replica, undone, &promises, &why, &mut report);
                }
                LedgerEvent::StateTransfer(transfer) => {
                    // Executions above the snapshot are gone (as by a rollback); those below it
                    // are superseded, and removed only if the chain differs at the snapshot
                    // (where it first differs is unknown, so nothing there is reported).
                    let undone = current.split_off(&(transfer.seq + 1));
                    let why = format!("dropped by a state transfer to seq {}", transfer.seq);
                    report_undone(*replica, undone, &promises, &why, &mut report);
                    current.clear();
                }
                LedgerEvent::Checkpoint(_)
                | LedgerEvent::ViewEntered(_)
                | LedgerEvent::Recertified(_) => {}
            }
        }
    }
    let mut evidence = json!({"promises": count, "replicas": ledgers.keys().collect::<Vec<_>>()});
    let verdict = if total > 0 {
        evidence["violations"] = json!(total);
        evidence["first"] = json!(violations);
        Verdict::Invalid
    } else if ledgers.is_empty() || count == 0 {
        evidence["not_checked"] = json!("no honest ledger or no operation with a proof");
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    CheckResult::new(verdict, evidence)
}

/// Reports every promise of `promises` held, under the proof's view, by an `undone` execution.
fn report_undone(
    replica: u32,
    undone: BTreeMap<u64, &ExecuteEvent>,
    promises: &HashMap<u64, Vec<Promise<'_>>>,
    why: &str,
    report: &mut impl FnMut(Value),
) {
    for (seq, execute) in undone {
        for promise in promises.get(&seq).into_iter().flatten() {
            if keeps(execute, promise).is_ok() && execute.view == promise.view {
                report(json!({"replica": replica, "op": describe(promise), "problem": why}));
            }
        }
    }
}

/// Whether `execute` holds the promised request with the promised result.
fn keeps(execute: &ExecuteEvent, promise: &Promise<'_>) -> Result<(), String> {
    let Some(request) = execute
        .requests
        .iter()
        .find(|request| request.client == promise.client && request.request == promise.request)
    else {
        return Err(format!(
            "the block at seq {} does not hold client {} request {}",
            promise.seq, promise.client, promise.request
        ));
    };
    let Some(result) = &request.result else {
        return Err(format!("the request was skipped at seq {}", promise.seq));
    };
    let Outcome::Ok(recorded) = &promise.operation.outcome else { return Ok(()) };
    if matches(&request.op, result, recorded) {
        Ok(())
    } else {
        Err(format!(
            "the block at seq {} gives result {} but the client was promised {recorded}",
            promise.seq,
            serde_json::to_string(result).unwrap_or_default()
        ))
    }
}

/// Whether the ledger's result of `op` is the one a client recorded as `ok` with `recorded`.
fn matches(op: &history::Operation, result: &OpResult, recorded: &Value) -> bool {
    match (op, result) {
        (_, OpResult::Read { value }) => json!(value) == *recorded,
        (history::Operation::ReadAll { keys }, OpResult::ReadAll { values }) => {
            let Value::Object(map) = recorded else { return false };
            map.keys().all(|key| keys.contains(key))
                && keys.iter().zip(values).all(|(key, value)| map.get(key) == Some(&json!(value)))
        }
        // A cas that did not swap and a refused transfer are recorded as `fail`.
        (
            _,
            OpResult::Written | OpResult::Cas { swapped: true } | OpResult::Transfer { done: true },
        ) => true,
        _ => false,
    }
}

fn describe(promise: &Promise<'_>) -> Value {
    json!({
        "line": promise.operation.line,
        "process": promise.operation.process,
        "f": promise.operation.f,
        "client": promise.client,
        "request": promise.request,
        "proof": {"view": promise.view, "seq": promise.seq},
    })
}
