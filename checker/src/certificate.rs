//! Certificate uniqueness (PROTOCOL §10.7, from §3.1): at most one batch is view-committed per
//! (view, seq). Two certificates for (v, k) each hold nf − f honest shares, and an honest
//! replica supports one proposal per (v, k), so no two honest replicas (and no honest replica
//! with itself) can ever hold certificates for different batches at the same (v, k).
//!
//! [`one_batch_per_slot`] (`one-batch-per-slot`) collects every certificate claim an honest
//! replica recorded during the whole run, not only what stands at the end:
//!
//! - every `execute` event: the batch digest is certified at (its view, its seq), whether the
//!   execution was later rolled back or superseded by a state transfer, and whether it came
//!   before or after one;
//! - every `recertified` event: its batch digest is certified at (new view, seq). The event
//!   is a claim by itself, whatever the replica executed at that seq.
//!
//! Two claims for the same (view, seq) with different batch digests are `invalid`; the evidence
//! names both claims (replica, time, event kind, digest). Executions of one seq under
//! different views may differ: that is what a view change may legitimately replace.

use std::collections::BTreeMap;

use history::{Digest, LedgerEvent, Verdict};
use serde_json::{Value, json};

use crate::CheckResult;

/// The most violations listed.
const LISTED_MAX: usize = 10;

/// One replica's claim that a batch is certified at a (view, seq).
#[derive(Debug, Clone, Copy)]
struct Claim {
    replica: u32,
    time: u64,
    /// `execute` or `recertified`.
    kind: &'static str,
    digest: Digest,
}

impl Claim {
    fn evidence(&self) -> Value {
        json!({
            "replica": self.replica,
            "time": self.time,
            "event": self.kind,
            "batch_digest": self.digest,
        })
    }
}

/// Checks that the honest replicas' `ledgers` never claim two different batches certified at
/// the same (view, seq). `valid` (possibly vacuously: the evidence counts the pairs) when they
/// do not.
pub fn one_batch_per_slot(ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> CheckResult {
    // Per (view, seq): the first claim of each distinct digest, in replica then event order.
    let mut claims: BTreeMap<(u64, u64), Vec<Claim>> = BTreeMap::new();
    let mut counted: BTreeMap<(u64, u64), u64> = BTreeMap::new();
    for (replica, events) in ledgers {
        for event in events {
            let (view, seq, claim) = match event {
                LedgerEvent::Execute(execute) => (
                    execute.view,
                    execute.seq,
                    Claim {
                        replica: *replica,
                        time: execute.time,
                        kind: "execute",
                        digest: execute.batch_digest,
                    },
                ),
                LedgerEvent::Recertified(recertified) => (
                    recertified.new_view,
                    recertified.seq,
                    Claim {
                        replica: *replica,
                        time: recertified.time,
                        kind: "recertified",
                        digest: recertified.batch_digest,
                    },
                ),
                LedgerEvent::Rollback(_)
                | LedgerEvent::Checkpoint(_)
                | LedgerEvent::ViewEntered(_)
                | LedgerEvent::StateTransfer(_) => continue,
            };
            *counted.entry((view, seq)).or_default() += 1;
            let distinct = claims.entry((view, seq)).or_default();
            if distinct.iter().all(|other| other.digest != claim.digest) {
                distinct.push(claim);
            }
        }
    }
    let compared = counted.values().filter(|count| **count >= 2).count();
    let mut violations = Vec::new();
    let mut total = 0u64;
    for ((view, seq), distinct) in &claims {
        let [first, second, ..] = distinct.as_slice() else { continue };
        total += 1;
        if violations.len() < LISTED_MAX {
            violations.push(json!({
                "view": view,
                "seq": seq,
                "first": first.evidence(),
                "second": second.evidence(),
                "batch_digests": distinct.len(),
            }));
        }
    }
    let mut evidence = json!({
        "replicas": ledgers.keys().collect::<Vec<_>>(),
        "claims": counted.values().sum::<u64>(),
        "pairs": claims.len(),
        "compared": compared,
    });
    let verdict = if total > 0 {
        evidence["violations"] = json!(total);
        evidence["first"] = json!(violations);
        Verdict::Invalid
    } else {
        Verdict::Valid
    };
    CheckResult::new(verdict, evidence)
}
