//! Record formats shared by every Ordeal crate.
//!
//! This crate holds *formats*, not logic: the types that are written to and read from a run's
//! store, so that the harness that records a run and the checker that judges it agree on what a
//! line of `history.jsonl` or `ledger.jsonl` means without sharing any protocol code.
//!
//! # Layout
//!
//! - [`op`]: one event of a Jepsen-style history (`history.jsonl`): client invocations and
//!   completions, nemesis events, and the proof an `ok` carries.
//! - [`kv`]: the key-value store's operations and results, as clients issue them and as replica
//!   ledgers record them.
//! - [`ledger`]: replica ledger events (`ledger.jsonl`): execute, rollback, checkpoint, view
//!   entered, state transfer, re-certified; and the byte layout of every digest they carry
//!   (known answers in `history/vectors/digests.json`).
//! - [`digest`]: the 32-byte digest type used for batch digests, block hashes and state digests.
//! - [`verdict`]: `valid` / `invalid` / `unknown` and how verdicts merge.
//! - [`seeds`]: how a run's recorded seed becomes the seeds of its random streams (every salt
//!   in one place, so that a seed replays the same run in every crate that draws from it).
//!
//! What this crate is not: it does not validate histories (the checker does), and it does not
//! compute digests (their byte layout is documented in [`ledger`]; the replica and the checker
//! each implement it).

#![warn(missing_docs, unreachable_pub)]

pub mod digest;
pub mod kv;
pub mod ledger;
pub mod op;
pub mod seeds;
pub mod verdict;

pub use digest::Digest;
pub use kv::{OpResult, Operation};
pub use ledger::{
    CheckpointCertificateRecord, CheckpointEvent, DecisionRecord, EvidenceRecord, ExecuteEvent,
    ExecutedRequest, LedgerEvent, NewViewRecord, RecertifiedEvent, RollbackEvent, SignatureRecord,
    StateTransferEvent, ViewChangeRecord, ViewEvent,
};
pub use op::{Op, OpKind, Process, Proof};
pub use verdict::Verdict;

#[cfg(test)]
mod tests;
