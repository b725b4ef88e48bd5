//! `inform-certificates`: every INFORM an honest replica gave towards a client's proof rests on
//! a certificate of the proof's view for the proof's slot, recorded in that replica's ledger no
//! later than the client received the INFORM (PROTOCOL §3.1 step 7, §3.3, §5.4).
//!
//! An INFORM tagged (v, k) says "slot k holds this request with this result under a
//! certificate of view v". A replica may execute a slot carried into a new view speculatively,
//! but it may inform its clients under the new view only once the slot is certified there
//! again: otherwise a Byzantine new primary that sent two groups different NV-PROPOSEs lets a
//! client complete on INFORMs that no certificate of that view backs, and the next view change
//! takes the promise back (§5.4's run). The harm needs a long choreography; the evidence shows
//! the first time a replica informs too early, whatever follows.
//!
//! A proof's INFORM from replica R for request (c, q) at (v, k), first received at time t
//! (`Proof::informed`; the completion's time when the history does not record it), is backed
//! when R's ledger holds, at a time no later than t, one of:
//! - an `execute` event of view v at slot k whose batch holds (c, q);
//! - a `recertified` event of slot k into view v, after an `execute` at k holding (c, q);
//! - a stable `checkpoint` or a `state-transfer` at or above k: below a stable checkpoint the
//!   slot is settled, and the reply cache may hold another replica's view tags (a snapshot
//!   carries the replies its certificate covers, not their certificates).
//!
//! Ledger and history times count from the same run epoch (replica processes take the
//! harness's epoch, and a replica writes its ledger events before it sends the messages that
//! follow from them). Only honest replicas are judged: `ledgers` holds only theirs.

use std::collections::BTreeMap;

use history::{LedgerEvent, Verdict};
use serde_json::{Value, json};

use crate::CheckResult;
use crate::validate::Operation;

/// The most violations listed.
const LISTED_MAX: usize = 10;

/// Checks the INFORMs of every `ok` operation's proof against the honest `ledgers`.
pub fn check(operations: &[Operation], ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> CheckResult {
    let mut checked = 0u64;
    let mut backed_by_checkpoint = 0u64;
    let mut violations: Vec<Value> = Vec::new();
    let mut violation_count = 0u64;
    // The smallest margin by which a backed INFORM followed its certificate (nanoseconds).
    let mut margin_min: Option<u64> = None;
    for operation in operations {
        let Some((client, request, proof)) = operation.promise() else { continue };
        for (index, replica) in proof.replicas.iter().enumerate() {
            let Some(events) = ledgers.get(replica) else { continue };
            let Some(received) = proof.informed.get(index).copied().or(operation.ret) else {
                continue;
            };
            checked += 1;
            let inform = Inform { client, request, view: proof.view, seq: proof.seq, received };
            match backing(events, &inform) {
                Backing::Certificate(time) => {
                    let margin = received.saturating_sub(time);
                    margin_min = Some(margin_min.map_or(margin, |min| min.min(margin)));
                }
                Backing::Checkpoint => backed_by_checkpoint += 1,
                Backing::None(found) => {
                    violation_count += 1;
                    if violations.len() < LISTED_MAX {
                        violations.push(json!({
                            "line": operation.line,
                            "replica": replica,
                            "client": client,
                            "request": request,
                            "view": proof.view,
                            "seq": proof.seq,
                            "received_ns": received,
                            "ledger": found,
                        }));
                    }
                }
            }
        }
    }
    let verdict = if violation_count == 0 { Verdict::Valid } else { Verdict::Invalid };
    CheckResult::new(
        verdict,
        json!({
            "checked": checked,
            "backed_by_checkpoint": backed_by_checkpoint,
            "margin_min_us": margin_min.map(|ns| ns / 1_000),
            "violations": violation_count,
            "first": violations,
        }),
    )
}

/// One INFORM of a proof.
struct Inform {
    client: u32,
    request: u64,
    view: u64,
    seq: u64,
    /// When the client first received it.
    received: u64,
}

/// What backs an INFORM in its sender's ledger.
enum Backing {
    /// A certificate of the INFORM's view, recorded at this time.
    Certificate(u64),
    /// A stable checkpoint or a state transfer at or above the slot.
    Checkpoint,
    /// Nothing: what the ledger holds for the slot instead.
    None(Value),
}

/// What in `events` (one replica's ledger) backs `inform`.
fn backing(events: &[LedgerEvent], inform: &Inform) -> Backing {
    // Whether the slot holds the request since its last execution before `received`.
    let mut holds_request = false;
    let mut seen: Vec<Value> = Vec::new();
    // In file order; a restarted replica's clock may not continue exactly where it stopped.
    for event in events.iter().filter(|event| event.time() <= inform.received) {
        match event {
            LedgerEvent::Execute(execute) if execute.seq == inform.seq => {
                holds_request = execute.requests.iter().any(|executed| {
                    executed.client == inform.client && executed.request == inform.request
                });
                if holds_request && execute.view == inform.view {
                    return Backing::Certificate(execute.time);
                }
                seen.push(json!({"execute": {"view": execute.view, "holds": holds_request,
                    "time_ns": execute.time}}));
            }
            LedgerEvent::Recertified(recertified) if recertified.seq == inform.seq => {
                if holds_request && recertified.new_view == inform.view {
                    return Backing::Certificate(recertified.time);
                }
                seen.push(json!({"recertified": {"new_view": recertified.new_view,
                    "time_ns": recertified.time}}));
            }
            LedgerEvent::Rollback(rollback) if rollback.to_seq < inform.seq => {
                holds_request = false;
            }
            LedgerEvent::StateTransfer(transfer) if transfer.seq >= inform.seq => {
                return Backing::Checkpoint;
            }
            LedgerEvent::Checkpoint(checkpoint)
                if checkpoint.stable && checkpoint.seq >= inform.seq =>
            {
                return Backing::Checkpoint;
            }
            _ => {}
        }
    }
    // Later events show how late the certificate came, if it came.
    for event in events.iter().filter(|event| event.time() > inform.received) {
        if let LedgerEvent::Recertified(recertified) = event
            && recertified.seq == inform.seq
            && recertified.new_view == inform.view
        {
            seen.push(json!({"recertified_after": {"new_view": recertified.new_view,
                "late_by_us": recertified.time.saturating_sub(inform.received) / 1_000}}));
            break;
        }
    }
    seen.truncate(LISTED_MAX);
    Backing::None(json!(seen))
}
