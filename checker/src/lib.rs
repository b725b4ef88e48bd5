//! The checker: oracles over recorded runs, each returning a verdict with its evidence.
//!
//! **Invariant:** this crate depends on `history` only, never on `replica`: it is an independent
//! oracle with its own model of the state machine, so a replica bug cannot hide by being shared.
//!
//! # Layout
//!
//! - [`load`]: reading `history.jsonl` and `ledger.jsonl` files, with errors that name the line.
//! - [`ledger`]: ledger oracles; today the agreement of honest ledgers at every shared slot.
//! - [`perf`]: throughput and latency of a history.
//! - [`CheckResult`]: a checker's verdict and evidence.
//!
//! Linearizability, speculation, bank and liveness oracles arrive with the checker issue.

#![warn(missing_docs, unreachable_pub)]

pub mod ledger;
pub mod load;
pub mod perf;

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
