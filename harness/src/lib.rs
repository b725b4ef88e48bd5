//! The harness: the `ordeal` command and the run store.
//!
//! # Layout
//!
//! - [`cli`]: the command line.
//! - [`check`]: `ordeal check` (a stored run, a history file, a benchmark directory).
//! - [`run`]: one run of `ordeal test`, from keys to results.
//! - [`bench`]: `ordeal bench`: open-loop load at rising rates up to the latency knee, per
//!   protocol (interleaved), cluster size and fault case.
//! - [`cluster`]: replica processes (ports, spawning, readiness, kill, restart, pause, resume,
//!   stopping).
//! - [`faults`]: the nemesis at run time (a schedule executed with real signals, the relay and
//!   the Byzantine replicas' control endpoints).
//! - [`sim`]: `ordeal sim`: the cores, the nemesis's executor and the checker on virtual time
//!   (a simulated world, seed sweeps).
//! - [`scenario`]: scenario files (`--scenario`): cluster, workload, timeline, expected verdict.
//! - [`network`]: the network nemesis at run time: the UDP relay between every pair of nodes.
//! - [`certs`]: the run's CA and every node's certificate.
//! - [`store`]: run directories and `store/latest`.
//! - [`site`]: the store as a site: `store/index.html` and `ordeal serve`.
//! - [`results`]: checking a run and writing `results.json`.
//! - [`report`]: `report.html`, one self-contained page per run.
//! - [`workers`]: the threads hosting client processes.
//! - [`junit`]: JUnit XML reports for CI (`--junit`, `ordeal junit`).
//! - [`coverage`]: coverage counters summed over runs (`ordeal coverage`, `ordeal sim
//!   --coverage`).
//!
//! The harness owns every process it starts and stops them on every exit path.

#![warn(missing_docs, unreachable_pub)]

pub mod bench;
pub mod certs;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod compare;
pub mod coverage;
pub mod faults;
pub mod junit;
pub mod network;
pub mod report;
pub mod results;
pub mod run;
pub mod scenario;
pub mod sim;
pub mod site;
pub mod store;
pub mod workers;

#[cfg(test)]
mod tidy;
