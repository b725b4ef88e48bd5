//! The nemesis: seeded fault schedules and the fault budget.
//!
//! This crate decides *what* to break and *when*; it does no IO. The harness executes the
//! decisions on real processes (`harness::faults`) and records them in the history.
//!
//! # Layout
//!
//! - [`schedule`]: the process nemesis. From a seed and the run's options, a [`Schedule`] of
//!   faults (kill then restart, pause then resume), one per `--nemesis-interval` tick, each with a
//!   target spec (a random replica, the current primary, a minority) resolved at run time by a
//!   seeded [`TargetPicker`], and a final heal at `time-limit − liveness-window`.
//! - [`budget`]: [`Budget`], which keeps crashed plus paused replicas within f and tracks the
//!   most that were ever down at once.
//! - [`network`]: network faults as data: a [`LinkFault`] per directed link between
//!   [`Node`]s, [`PartitionShape`]s laid out by [`partition`], and delay, loss, duplication and
//!   reordering on the links touching a set of replicas.
//! - [`relay`]: the relay's model on virtual time: each packet's fate (dropped, delayed,
//!   duplicated, held back) from a seeded draw, a bounded queue per link, and counters. The
//!   harness's user-space UDP relay (`harness::network`) applies it to real traffic: the kernel
//!   here has no netem, and users should not need root.
//!
//! - [`executor`]: the schedule played sans IO: from the time and what it observes of the
//!   cluster, the [`Effect`]s to carry out (kill, restart, pause, resume, link faults,
//!   behaviours, history events). The simulator (`harness::sim`) interprets them on simulated
//!   replicas.

#![warn(missing_docs, unreachable_pub)]

pub mod budget;
pub mod executor;
pub mod network;
pub mod relay;
pub mod schedule;
pub mod timeline;

#[cfg(test)]
mod tests;

pub use budget::{Budget, BudgetError};
pub use executor::{Effect, Executor, Observe, Status};
pub use network::{
    LinkFault, NetworkFaults, Node, PartitionError, PartitionShape, UnknownShape, partition,
};
pub use schedule::{
    Action, Fault, FaultAction, FaultKind, Schedule, ScheduleError, ScheduleOptions, Step,
    TargetPicker, TargetSpec, draw_byzantine,
};
pub use timeline::{TargetEntry, TimelineEntry};
