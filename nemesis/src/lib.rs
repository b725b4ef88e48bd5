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
//!
//! Later issues add a user-space UDP relay per directed link (partitions, delay, loss,
//! duplication, reordering: the kernel here has no netem, and users should not need root),
//! Byzantine behaviour switched on over the replicas' control endpoints, and scenarios.

#![warn(missing_docs, unreachable_pub)]

pub mod budget;
pub mod network;
pub mod schedule;
mod shape_tmp;
pub mod timeline;

#[cfg(test)]
mod tests;

pub use budget::{Budget, BudgetError};
pub use network::{LinkFault, NetworkFaults, Node};
pub use schedule::{
    Action, Fault, FaultAction, FaultKind, Schedule, ScheduleError, ScheduleOptions, Step,
    TargetPicker, TargetSpec, draw_byzantine,
};
pub use shape_tmp::PartitionShape;
pub use timeline::{TargetEntry, TimelineEntry};
