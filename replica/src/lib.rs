//! The replica: Ordeal's system under test.
//!
//! # Layout
//!
//! - [`core`]: the Proof-of-Execution protocol as a deterministic, sans-IO state machine
//!   (replica and client logic, state machine, ledger). No sockets, files, clocks or global
//!   randomness: inputs are method calls with the current time, outputs are drained by the
//!   caller.
//! - [`byzantine`]: the Byzantine hook on the send and receive paths, only in replicas the run
//!   declares Byzantine.
//! - [`crypto`]: ed25519, HMAC-SHA256, BLS threshold signatures and the trusted dealer.
//! - [`flight`]: the flight recorder of the last protocol messages a replica sent and received.
//! - [`planted`]: the catalogue of planted bugs, compiled in only with the `planted-bugs`
//!   feature (tests of the harness's checkers; never a product build).
//! - [`sim`]: an in-memory deterministic cluster on virtual time that drives the core, for
//!   tests and benchmarks.
//!
//! The IO shell (QUIC, redb, the `replica` binary) arrives with later issues and stays outside
//! `core`.

#![warn(missing_docs, unreachable_pub)]

pub mod byzantine;
pub mod core;
pub mod crypto;
pub mod flight;
pub mod net;
pub mod node;
pub mod planted;
pub mod sim;

#[cfg(test)]
mod tests;
