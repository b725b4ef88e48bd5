//! The checker: oracles over recorded runs.
//!
//! It will hold, each returning a verdict with its evidence:
//! - history loading and validation (invoke/completion pairing, one op in flight per process);
//! - linearizability of the key-value model, per key, polynomial when writes are unique;
//! - ledger oracles: non-divergence, hash chains, validity, at-most-once, result replay;
//! - speculation oracles: no client-accepted result is lost or changed; rollback correctness;
//! - bank, liveness and performance summaries.
//!
//! **Invariant:** this crate depends on `history` only, never on `replica`: it is an independent
//! oracle with its own model of the state machine, so a replica bug cannot hide by being shared.
//!
//! Nothing is implemented yet; the checker issue builds it.

#![warn(missing_docs, unreachable_pub)]
