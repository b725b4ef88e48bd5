//! The harness: the `ordeal` command and the run store.
//!
//! It will hold `ordeal test` (generate keys, spawn replica processes, run workload and nemesis,
//! record the history, check it, write `results.json`), `ordeal check` (re-check a stored run
//! or a plain history file), and the store layout of DESIGN.md ("A run and its store"). It
//! owns every process it starts and stops them on every exit path.
//!
//! Nothing is implemented yet; the cluster issue builds it.

#![warn(missing_docs, unreachable_pub)]

#[cfg(test)]
mod tidy;
