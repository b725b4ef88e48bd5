//! The checker: oracles over recorded runs, each returning a verdict with its evidence.
//!
//! **Invariant:** this crate depends on `history` only, never on `replica`: it is an independent
//! oracle with its own model of the state machine, so a replica bug cannot hide by being shared.
//!
//! # Layout
//!
//! - [`audit`]: every oracle over a run or a plain history (what `ordeal test` and
//!   `ordeal check` call).
//! - [`load`]: reading `history.jsonl` and `ledger.jsonl` files, with errors that name the line.
//! - [`validate`]: validating a history and pairing invocations with completions.
//! - [`linear`]: linearizability of the key-value model (witness, unique values, search).
//! - [`bank`]: conservation of money and no negative balance.
//! - [`liveness`]: progress after the final heal, and the longest stall.
//! - [`ledger`]: everything honest replicas committed agrees, and so do stable checkpoints.
//! - [`certificate`]: one batch per (view, seq) across every execution and re-certification.
//! - [`evidence`]: the checkpoint certificates and NV-PROPOSEs honest replicas acted on, checked
//!   again (quorums, signatures, the view-change decision).
//! - [`informs`]: every INFORM an honest replica gave towards a proof rests on a certificate
//!   of the proof's view for its slot, recorded before the client received it.
//! - [`replay`]: hash chains, validity, at-most-once, result replay, rollbacks, checkpoints.
//! - [`speculation`]: every promised result stands in every honest final ledger and no honest
//!   replica removed an execution a proof named.
//! - [`kv`], [`digest`]: the checker's own store model, digests and signature check.
//! - [`perf`]: throughput and latency of a history.
//! - [`CheckResult`]: a checker's verdict and evidence.

#![warn(missing_docs, unreachable_pub)]

pub mod audit;
pub mod bank;
pub mod certificate;
pub mod digest;
pub mod evidence;
pub mod informs;
pub mod kv;
pub mod ledger;
pub mod linear;
pub mod liveness;
pub mod load;
pub mod perf;
pub mod protocol;
pub mod replay;
pub mod speculation;
pub mod validate;

use history::Verdict;
use serde::{Deserialize, Serialize};

/// One checker's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckResult {
    /// The verdict.
    pub verdict: Verdict,
    /// What was checked and, when not valid, where it failed.
    #[serde(flatten)]
    pub evidence: serde_json::Map<String, serde_json::Value>,
}

impl CheckResult {
    /// A result with `verdict` and evidence from a JSON object.
    pub fn new(verdict: Verdict, evidence: serde_json::Value) -> CheckResult {
        let evidence = match evidence {
            serde_json::Value::Object(map) => map,
            other => serde_json::Map::from_iter([("evidence".to_string(), other)]),
        };
        CheckResult { verdict, evidence }
    }
}

#[cfg(test)]
mod tests;
