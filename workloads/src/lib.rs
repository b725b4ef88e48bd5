//! Workloads: pure, seeded operation generators and the client processes that run them.
//!
//! It will hold:
//! - `register`: read, write and cas over K keys, written values unique per key;
//! - `bank`: transfers between accounts and reads of all balances (the total is conserved);
//! - the client process: a tokio task with its own client identity that drives the replica
//!   crate's sans-IO client over QUIC and records Jepsen history events (`ok`, `fail`, `info`).
//!
//! Nothing is implemented yet; the cluster issue builds it.

#![warn(missing_docs, unreachable_pub)]
