//! Speculative non-divergence (PROTOCOL §10.2): a client's proof of execution (view, seq) is a
//! promise that the operation's request stands at seq with the result the client recorded.
//!
//! - **Final ledgers.** Every honest replica whose final ledger holds seq holds the request
//!   there with the promised result; one that holds another request or result lost it:
//!   `invalid`. A promise is never skipped silently: when no honest final ledger holds seq
//!   (every replica stopped short of it, or passed it only through a state transfer, whose
//!   snapshot names no requests) the promise is *unverifiable*, listed with each replica's
//!   reason, and the verdict is `unknown` unless something is `invalid`. The evidence counts
//!   the promises `verified` (held by at least one honest final ledger, and checked against
//!   each) and `unverifiable`.
//! - **Settled executions.** A promise no honest final ledger holds is still checked against
//!   every honest replica that executed its slot itself and then held a stable checkpoint at
//!   or above it, with the execution still standing (PROTOCOL §6: below a stable checkpoint
//!   nothing is rolled back; `checkpoint-agreement` and `checkpoint-certificates` judge the
//!   checkpoints). A later state transfer replaces such a replica's ledger by a snapshot, which
//!   names no requests, but it cannot undo what the checkpoint settled: the promise is
//!   `verified` (or broken) there, not unverifiable. Without this, a run in which every honest
//!   replica once caught up by a state transfer left every earlier promise unverifiable.
//! - **Removals** (§10.2's internal check: executions under the proof's view tag are never
//!   rolled back). A proof names an execution by view and seq, whichever view tagged it: a
//!   standing execution holds the view of its `execute` event and, after each `recertified`
//!   event for its seq and batch at that replica, the re-certification's view too (its
//!   effective view is the latest). A rollback, or a state transfer that drops executions above
//!   its snapshot, that removes an execution which held the promise's view and holds the
//!   promised request with the promised result is `invalid`. A `recertified` event for a seq
//!   with no standing execution of that batch is ignored here (the `one-batch-per-slot` oracle
//!   still counts its claim).
//!
//! In the final ledgers the view is not required to match: a slot carried into a new view is
//! re-certified there while the block (and so the promise) stays the same. A rollback of an
//! execution that never held the proof's view is no violation: a replica may have executed the
//! request at that slot speculatively in an older view (say a primary whose certificate nobody
//! else saw) and execute it there again in the proof's view. Executions below a state
//! transfer's snapshot are superseded, not reported: where the chains first differ is unknown
//! (the `ledger-agreement` oracle compares what was committed).

use std::collections::{BTreeMap, HashMap};

use history::{ExecuteEvent, LedgerEvent, OpResult, Verdict};
use serde_json::{Value, json};

use crate::CheckResult;
use crate::ledger::final_ledger;
use crate::validate::{Operation, Outcome};

/// The most violations (and unverifiable promises) listed.
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

/// An execution standing in a replica's ledger, with every view whose certificate it held.
#[derive(Debug, Clone)]
struct Standing<'a> {
    execute: &'a ExecuteEvent,
    /// The execution's view, then each re-certification's, in order.
    views: Vec<u64>,
}

/// A list capped at [`LISTED_MAX`] entries, with the total count.
#[derive(Debug, Default)]
struct Listed {
    total: u64,
    first: Vec<Value>,
}

impl Listed {
    fn push(&mut self, evidence: Value) {
        self.total += 1;
        if self.first.len() < LISTED_MAX {
            self.first.push(evidence);
        }
    }
}

/// Checks every `ok` operation's proof against the honest ledgers.
pub fn check(operations: &[Operation], ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> CheckResult {
    let mut promises: HashMap<u64, Vec<Promise<'_>>> = HashMap::new();
    let mut count = 0u64;
    for operation in operations {
        let Some((client, request, proof)) = operation.promise() else { continue };
        count += 1;
        promises.entry(proof.seq).or_default().push(Promise {
            operation,
            client,
            request,
            view: proof.view,
            seq: proof.seq,
        });
    }
    let mut violations = Listed::default();
    let mut unverifiable = Listed::default();
    let mut verified = 0u64;
    let finals: BTreeMap<u32, BTreeMap<u64, &ExecuteEvent>> =
        ledgers.iter().map(|(replica, events)| (*replica, final_ledger(events))).collect();
    let bases: BTreeMap<u32, Option<u64>> =
        ledgers.iter().map(|(replica, events)| (*replica, last_transfer(events))).collect();
    let settled: BTreeMap<u32, BTreeMap<u64, &ExecuteEvent>> =
        ledgers.iter().map(|(replica, events)| (*replica, settled(events))).collect();
    let mut slots: Vec<&u64> = promises.keys().collect();
    slots.sort();
    for seq in slots {
        for promise in &promises[seq] {
            let held = check_held(&finals, promise, "", &mut violations)
                || check_held(
                    &settled,
                    promise,
                    " (settled by a stable checkpoint)",
                    &mut violations,
                );
            if held {
                verified += 1;
            } else if !finals.is_empty() {
                let reasons: BTreeMap<String, String> = finals
                    .iter()
                    .map(|(replica, slots)| {
                        let base = bases.get(replica).copied().flatten();
                        (replica.to_string(), missing(*seq, slots, base))
                    })
                    .collect();
                unverifiable.push(json!({
                    "op": describe(promise),
                    "reason": "no honest replica's final ledger holds the promised slot",
                    "replicas": reasons,
                }));
            }
        }
    }
    // Removals of a promised execution.
    for (replica, events) in ledgers {
        let mut current: BTreeMap<u64, Standing<'_>> = BTreeMap::new();
        for event in events {
            match event {
                LedgerEvent::Execute(execute) => {
                    current.insert(execute.seq, Standing { execute, views: vec![execute.view] });
                }
                LedgerEvent::Recertified(recertified) => {
                    if let Some(standing) = current.get_mut(&recertified.seq)
                        && standing.execute.batch_digest == recertified.batch_digest
                        && !standing.views.contains(&recertified.new_view)
                    {
                        standing.views.push(recertified.new_view);
                    }
                }
                LedgerEvent::Rollback(rollback) => {
                    let undone = current.split_off(&rollback.to_seq.saturating_add(1));
                    let why = format!(
                        "rolled back (to seq {}) a block holding the promised result",
                        rollback.to_seq
                    );
                    report_undone(*replica, undone, &promises, &why, &mut violations);
                }
                LedgerEvent::StateTransfer(transfer) => {
                    // Executions above the snapshot are gone (as by a rollback); those below it
                    // are superseded, and removed only if the chain differs at the snapshot
                    // (where it first differs is unknown, so nothing there is reported).
                    let undone = current.split_off(&transfer.seq.saturating_add(1));
                    let why = format!("dropped by a state transfer to seq {}", transfer.seq);
                    report_undone(*replica, undone, &promises, &why, &mut violations);
                    current.clear();
                }
                LedgerEvent::Checkpoint(_) | LedgerEvent::ViewEntered(_) => {}
            }
        }
    }
    let mut evidence = json!({
        "promises": count,
        "verified": verified,
        "unverifiable": unverifiable.total,
        "replicas": ledgers.keys().collect::<Vec<_>>(),
    });
    if unverifiable.total > 0 {
        evidence["unverified"] = json!(unverifiable.first);
    }
    let verdict = if violations.total > 0 {
        evidence["violations"] = json!(violations.total);
        evidence["first"] = json!(violations.first);
        Verdict::Invalid
    } else if ledgers.is_empty() || count == 0 {
        evidence["not_checked"] = json!("no honest ledger or no operation with a proof");
        Verdict::Unknown
    } else if unverifiable.total > 0 {
        evidence["not_checked"] = json!(format!(
            "{} of {count} promises: no honest replica's final ledger holds the promised slot",
            unverifiable.total
        ));
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    CheckResult::new(verdict, evidence)
}

/// Checks `promise` against the execution at its seq in each replica's `slots` (its final
/// ledger, or what stable checkpoints settled: `note` says which in a violation). Returns
/// whether any replica held the slot.
fn check_held(
    slots: &BTreeMap<u32, BTreeMap<u64, &ExecuteEvent>>,
    promise: &Promise<'_>,
    note: &str,
    violations: &mut Listed,
) -> bool {
    let mut held = false;
    for (replica, slots) in slots {
        let Some(execute) = slots.get(&promise.seq) else { continue };
        held = true;
        if let Err(problem) = keeps(execute, promise) {
            violations.push(json!({
                "replica": replica,
                "op": describe(promise),
                "problem": format!("{problem}{note}"),
            }));
        }
    }
    held
}

/// The executions of `events` that a stable checkpoint settled: each one standing (executed
/// by the replica itself, not rolled back or dropped by a state transfer since) when the
/// replica recorded a stable checkpoint at or above its seq. Later state transfers do not
/// remove them.
fn settled(events: &[LedgerEvent]) -> BTreeMap<u64, &ExecuteEvent> {
    let mut current: BTreeMap<u64, &ExecuteEvent> = BTreeMap::new();
    let mut settled = BTreeMap::new();
    for event in events {
        match event {
            LedgerEvent::Execute(execute) => {
                current.insert(execute.seq, execute);
            }
            LedgerEvent::Rollback(rollback) => {
                current.split_off(&rollback.to_seq.saturating_add(1));
            }
            LedgerEvent::StateTransfer(_) => current.clear(),
            LedgerEvent::Checkpoint(checkpoint) if checkpoint.stable => {
                let above = current.split_off(&checkpoint.seq.saturating_add(1));
                settled.append(&mut current);
                current = above;
            }
            LedgerEvent::Checkpoint(_)
            | LedgerEvent::Recertified(_)
            | LedgerEvent::ViewEntered(_) => {}
        }
    }
    settled
}

/// The seq of the last state transfer in `events`: the final ledger holds nothing at or below.
fn last_transfer(events: &[LedgerEvent]) -> Option<u64> {
    events.iter().rev().find_map(|event| match event {
        LedgerEvent::StateTransfer(transfer) => Some(transfer.seq),
        _ => None,
    })
}

/// Why a final ledger (`slots`, after a state transfer to `base` if any) does not hold `seq`.
fn missing(seq: u64, slots: &BTreeMap<u64, &ExecuteEvent>, base: Option<u64>) -> String {
    let head = slots.keys().last().copied().or(base).unwrap_or(0);
    match base {
        Some(base) if base >= seq => {
            format!("passed the slot only through a state transfer to seq {base}")
        }
        _ if head < seq => format!("stopped short at seq {head}"),
        _ => "holds no execution at the slot".to_string(),
    }
}

/// Reports every promise of `promises` held by an `undone` execution that held the proof's
/// view.
fn report_undone(
    replica: u32,
    undone: BTreeMap<u64, Standing<'_>>,
    promises: &HashMap<u64, Vec<Promise<'_>>>,
    why: &str,
    violations: &mut Listed,
) {
    for (seq, standing) in undone {
        for promise in promises.get(&seq).into_iter().flatten() {
            if standing.views.contains(&promise.view) && keeps(standing.execute, promise).is_ok() {
                violations.push(json!({
                    "replica": replica,
                    "op": describe(promise),
                    "problem": why,
                    "views": standing.views,
                }));
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
