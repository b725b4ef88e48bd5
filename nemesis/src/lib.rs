//! The nemesis: fault injectors and seeded fault schedules.
//!
//! It will hold:
//! - process faults (SIGKILL and restart, SIGSTOP and SIGCONT) within the fault budget;
//! - a user-space UDP relay per directed link for partitions, delay, loss, duplication and
//!   reordering (the kernel here has no netem, and users should not need root);
//! - Byzantine behaviour switched on over the replicas' control endpoints, and twins;
//! - schedules and scenarios: every fault decision drawn from the run's seed, with a final heal.
//!
//! Nothing is implemented yet; the nemesis issues build it.

#![warn(missing_docs, unreachable_pub)]
