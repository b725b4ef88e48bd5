//! Workloads: pure, seeded operation generators, the client processes that run them, and the
//! recorder that writes what they saw to `history.jsonl`.
//!
//! # Layout
//!
//! - [`generator`]: `register` (read, write, cas over K keys, written values unique per key) and
//!   `bank` (transfers between accounts, reads of all balances). Pure: seeded, no clock, no IO.
//! - [`process`]: a client process, a tokio task with its own client identity driving the
//!   replica crate's sans-IO client over QUIC, with Jepsen semantics (`ok`, `fail` when a cas
//!   mismatched or a transfer was refused, `info` on timeout, after which the logical process
//!   is retired and a fresh process number takes its place).
//! - [`open_loop`]: open-loop load for benchmarks: Poisson arrivals served by a pool of
//!   clients, latency measured from each arrival.
//! - [`byzantine`]: the junk a Byzantine client sends besides its correct requests.
//! - [`recorder`]: assigns each event its index and time and appends it to the history.
//! - [`worker`]: the client process's logic without IO or a clock, for the simulator.

#![warn(missing_docs, unreachable_pub)]

pub mod byzantine;
pub mod generator;
pub mod open_loop;
pub mod process;
pub mod recorder;
pub mod worker;

#[cfg(test)]
mod tests;
