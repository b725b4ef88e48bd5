//! The rules that differ between the protocols under test (PROTOCOL §3.3, §7, §10).
//!
//! - **client-proofs**: every `ok` operation's proof names at least the protocol's reply
//!   quorum of distinct replicas of the cluster: nf identical INFORMs in PoE (a proof that
//!   survives any view change), f + 1 matching REPLYs in PBFT (one of them honest, and an
//!   honest PBFT replica replies only for a committed request). A client that accepted fewer
//!   trusted results that may not stand.
//! - **committed-final** (PBFT only, §10.1 "committed prefixes are always prefix-consistent"):
//!   PBFT executes only committed-local requests and never speculates, so an honest replica
//!   never rolls an execution back: every `rollback` event in an honest PBFT ledger is a
//!   committed request lost (or a request executed before it was committed).

use std::collections::{BTreeMap, BTreeSet};

use history::{LedgerEvent, Verdict};
use serde_json::json;

use crate::CheckResult;
use crate::validate::Operation;

/// What the checker must know of the protocol a run used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// The protocol's name (`poe-ts`, `poe-mac`, `pbft`).
    pub name: String,
    /// n.
    pub replicas: u32,
    /// Distinct replicas a client proof needs.
    pub reply_quorum: usize,
    /// Whether replicas execute speculatively (and may roll back): PoE yes, PBFT no.
    pub speculative: bool,
    /// Whether a view change fills gaps with null requests up to max-s (PBFT) instead of
    /// stopping at the first gap (PoE).
    pub null_fill: bool,
}

impl Rules {
    /// The rules of protocol `name` for a cluster of n = `replicas`, or `None` for a protocol
    /// the checker does not know.
    pub fn of(name: &str, replicas: u32) -> Option<Rules> {
        let f = (replicas.max(1) as usize - 1) / 3;
        let nf = replicas as usize - f;
        let (reply_quorum, speculative) = match name {
            "poe-ts" | "poe-mac" => (nf, true),
            "pbft" => (f + 1, false),
            _ => return None,
        };
        Some(Rules {
            name: name.to_string(),
            replicas,
            reply_quorum,
            speculative,
            null_fill: !speculative,
        })
    }
}

/// Evidence lists keep at most this many entries.
const SHOWN_MAX: usize = 10;

/// `client-proofs`: every `ok` proof names at least `rules.reply_quorum` distinct replicas of
/// the cluster.
pub fn client_proofs(operations: &[Operation], rules: &Rules) -> CheckResult {
    let mut checked = 0;
    let mut short = Vec::new();
    for operation in operations {
        let Some((client, request, proof)) = operation.promise() else { continue };
        checked += 1;
        let distinct: BTreeSet<u32> =
            proof.replicas.iter().copied().filter(|replica| *replica < rules.replicas).collect();
        if distinct.len() < rules.reply_quorum {
            short.push(json!({
                "line": operation.line,
                "client": client,
                "request": request,
                "replicas": proof.replicas,
                "needed": rules.reply_quorum,
            }));
        }
    }
    let verdict = if !short.is_empty() {
        Verdict::Invalid
    } else if checked == 0 {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    let count = short.len();
    short.truncate(SHOWN_MAX);
    CheckResult::new(
        verdict,
        json!({
            "protocol": rules.name,
            "reply_quorum": rules.reply_quorum,
            "proofs_checked": checked,
            "short_proofs": count,
            "examples": short,
        }),
    )
}

/// `committed-final` (PBFT): no honest replica ever rolled an execution back.
pub fn committed_final(ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> CheckResult {
    let mut rollbacks = Vec::new();
    let mut executions = 0usize;
    for events in ledgers.values() {
        for event in events {
            match event {
                LedgerEvent::Execute(_) => executions += 1,
                LedgerEvent::Rollback(rollback) => rollbacks.push(json!({
                    "replica": rollback.replica,
                    "from_seq": rollback.from_seq,
                    "to_seq": rollback.to_seq,
                    "time": rollback.time,
                })),
                _ => {}
            }
        }
    }
    let verdict = if !rollbacks.is_empty() {
        Verdict::Invalid
    } else if executions == 0 {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    let count = rollbacks.len();
    rollbacks.truncate(SHOWN_MAX);
    CheckResult::new(
        verdict,
        json!({"executions": executions, "rollbacks": count, "examples": rollbacks}),
    )
}
