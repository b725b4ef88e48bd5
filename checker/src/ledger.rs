//! Ledger oracles.
//!
//! [`agreement`] (`ledger-agreement`, PROTOCOL §10.1 final non-divergence, with §10.5's state
//! digests): honest replicas agree on everything they ever *committed*, not only on what their
//! final ledgers hold, so that a state transfer that replaces a replica's history cannot erase
//! the evidence of a divergence. A replica's committed points are:
//!
//! - **final**: every slot of its final ledger (what stands after replaying its events in
//!   order: an execution puts a block at its slot, a rollback removes every slot above its
//!   target, a state transfer removes every slot);
//! - **stable**: when it records a stable checkpoint at s, the block standing at s at that
//!   moment (its own execution, or the state transfer its history then starts with at s); and,
//!   when a state transfer clears its history, every execution then standing at a seq at or
//!   below the highest stable checkpoint it had recorded (a state transfer counts as one);
//! - **state-transfer**: every installed snapshot's (seq, block hash, state digest), which an nf
//!   certificate vouched for.
//!
//! All committed points of all honest replicas (a replica with itself included) must hold the
//! same block hash and state digest per seq: `invalid` at the first seq where they differ, with
//! each point's replica, kind and time; `unknown` when no seq had two points to compare.
//! Equal block hashes at k mean equal batches at 1..=k, so comparing hashes compares whole
//! prefixes. Executions that were rolled back, and speculative executions above the stable
//! checkpoint that a state transfer superseded, were never committed: they may differ (a
//! replica that missed a view change executed what the others' view then replaced).
//!
//! [`checkpoints`] (`checkpoint-agreement`, PROTOCOL §10.5): honest replicas' stable checkpoints
//! agree on the state digest.

use std::collections::BTreeMap;

use history::{Digest, ExecuteEvent, LedgerEvent, StateTransferEvent, Verdict};
use serde_json::{Value, json};

use crate::CheckResult;

/// The executions that stand in a ledger after its rollbacks, by sequence number.
pub fn final_ledger(events: &[LedgerEvent]) -> BTreeMap<u64, &ExecuteEvent> {
    let mut slots = BTreeMap::new();
    for event in events {
        match event {
            LedgerEvent::Execute(execute) => {
                slots.insert(execute.seq, execute);
            }
            LedgerEvent::Rollback(rollback) => {
                slots.retain(|seq, _| *seq <= rollback.to_seq);
            }
            // A snapshot replaces the whole history: the slots up to it are no longer this
            // replica's own executions (the checkpoint oracles compare the snapshot itself).
            LedgerEvent::StateTransfer(_) => slots.clear(),
            LedgerEvent::Checkpoint(_)
            | LedgerEvent::ViewEntered(_)
            | LedgerEvent::Recertified(_) => {}
        }
    }
    slots
}

/// What made a point committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PointKind {
    /// A slot of the replica's final ledger.
    Final,
    /// Covered by a stable checkpoint the replica recorded.
    Stable,
    /// An installed snapshot.
    StateTransfer,
}

impl PointKind {
    /// The kind's name in evidence.
    pub fn name(self) -> &'static str {
        match self {
            PointKind::Final => "final",
            PointKind::Stable => "stable",
            PointKind::StateTransfer => "state-transfer",
        }
    }
}

/// A (block hash, state digest) a replica committed at a seq.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// The replica.
    pub replica: u32,
    /// The sequence number.
    pub seq: u64,
    /// Why it is committed.
    pub kind: PointKind,
    /// The time of the event that recorded the block (execution or state transfer) or, for a
    /// stable checkpoint over a standing block, of the checkpoint.
    pub time: u64,
    /// The ledger's hash at `seq`.
    pub block_hash: Digest,
    /// The state digest after `seq`.
    pub state_digest: Digest,
}

/// Every point one replica committed during its whole ledger, in the order it committed them,
/// final-ledger slots last (see the module documentation).
pub fn committed_points(replica: u32, events: &[LedgerEvent]) -> Vec<Point> {
    let mut points = Vec::new();
    let mut standing: BTreeMap<u64, &ExecuteEvent> = BTreeMap::new();
    // The state transfer the standing history starts with.
    let mut base: Option<&StateTransferEvent> = None;
    let mut stable = 0u64;
    let executed = |kind: PointKind, time: u64, execute: &ExecuteEvent| Point {
        replica,
        seq: execute.seq,
        kind,
        time,
        block_hash: execute.block_hash,
        state_digest: execute.state_digest,
    };
    for event in events {
        match event {
            LedgerEvent::Execute(execute) => {
                standing.insert(execute.seq, execute);
            }
            LedgerEvent::Rollback(rollback) => {
                standing.retain(|seq, _| *seq <= rollback.to_seq);
            }
            LedgerEvent::Checkpoint(checkpoint) if checkpoint.stable => {
                stable = stable.max(checkpoint.seq);
                if let Some(execute) = standing.get(&checkpoint.seq) {
                    points.push(executed(PointKind::Stable, checkpoint.time, execute));
                } else if let Some(transfer) = base.filter(|base| base.seq == checkpoint.seq) {
                    points.push(Point {
                        replica,
                        seq: transfer.seq,
                        kind: PointKind::Stable,
                        time: checkpoint.time,
                        block_hash: transfer.block_hash,
                        state_digest: transfer.state_digest,
                    });
                }
                // Otherwise nothing stands at the checkpoint's seq (above the head, or below
                // the snapshot the history starts with): no block to compare.
            }
            LedgerEvent::StateTransfer(transfer) => {
                for execute in standing.range(..=stable).map(|(_, execute)| *execute) {
                    points.push(executed(PointKind::Stable, execute.time, execute));
                }
                points.push(Point {
                    replica,
                    seq: transfer.seq,
                    kind: PointKind::StateTransfer,
                    time: transfer.time,
                    block_hash: transfer.block_hash,
                    state_digest: transfer.state_digest,
                });
                standing.clear();
                base = Some(transfer);
                stable = stable.max(transfer.seq);
            }
            LedgerEvent::Checkpoint(_)
            | LedgerEvent::ViewEntered(_)
            | LedgerEvent::Recertified(_) => {}
        }
    }
    points
        .extend(standing.values().map(|execute| executed(PointKind::Final, execute.time, execute)));
    points
}

/// Checks that everything the honest replicas of `ledgers` (by id) ever committed agrees: one
/// block hash and state digest per sequence number (see the module documentation). `invalid`
/// at the first seq where two points differ, `unknown` when no seq had two points.
pub fn agreement(ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> CheckResult {
    let heads: BTreeMap<String, u64> = ledgers
        .iter()
        .map(|(replica, events)| {
            (replica.to_string(), final_ledger(events).keys().last().copied().unwrap_or(0))
        })
        .collect();
    // Per seq, the distinct points: one per (replica, block hash, state digest), the first
    // committed kept.
    let mut by_seq: BTreeMap<u64, Vec<Point>> = BTreeMap::new();
    let mut kinds: BTreeMap<&'static str, u64> = BTreeMap::new();
    for (replica, events) in ledgers {
        for point in committed_points(*replica, events) {
            *kinds.entry(point.kind.name()).or_default() += 1;
            let held = by_seq.entry(point.seq).or_default();
            if !held.iter().any(|other| {
                (other.replica, other.block_hash, other.state_digest)
                    == (point.replica, point.block_hash, point.state_digest)
            }) {
                held.push(point);
            }
        }
    }
    let mut compared = 0u64;
    for (seq, held) in &by_seq {
        if held.len() < 2 {
            continue;
        }
        compared += 1;
        let first = held[0];
        if held.iter().any(|other| {
            (other.block_hash, other.state_digest) != (first.block_hash, first.state_digest)
        }) {
            return CheckResult::new(
                Verdict::Invalid,
                json!({
                    "replicas": ledgers.keys().collect::<Vec<_>>(),
                    "heads": heads,
                    "compared": compared,
                    "committed": kinds,
                    "divergence": divergence(*seq, held),
                }),
            );
        }
    }
    // Nothing compared proves nothing: no seq was committed twice.
    let verdict = if compared == 0 { Verdict::Unknown } else { Verdict::Valid };
    CheckResult::new(
        verdict,
        json!({
            "replicas": ledgers.keys().collect::<Vec<_>>(),
            "heads": heads,
            "compared": compared,
            "committed": kinds,
        }),
    )
}

/// The evidence of a divergence at `seq` between the distinct points `held`: block hashes,
/// state digests and kinds by replica (by `replica/kind` for a replica that committed two
/// different points there), and every point in full.
fn divergence(seq: u64, held: &[Point]) -> Value {
    let label = |point: &Point| {
        if held.iter().filter(|other| other.replica == point.replica).count() > 1 {
            format!("{}/{}", point.replica, point.kind.name())
        } else {
            point.replica.to_string()
        }
    };
    let mut blocks = BTreeMap::new();
    let mut states = BTreeMap::new();
    let mut kinds = BTreeMap::new();
    for point in held {
        blocks.insert(label(point), point.block_hash.to_hex());
        states.insert(label(point), point.state_digest.to_hex());
        kinds.insert(label(point), point.kind.name());
    }
    let points: Vec<Value> = held
        .iter()
        .map(|point| {
            json!({
                "replica": point.replica,
                "kind": point.kind.name(),
                "time": point.time,
                "block_hash": point.block_hash,
                "state_digest": point.state_digest,
            })
        })
        .collect();
    json!({
        "seq": seq,
        "block_hashes": blocks,
        "state_digests": states,
        "kinds": kinds,
        "points": points,
    })
}

/// Checks that the stable checkpoints of honest replicas agree: one state digest per sequence
/// number. Vacuously `valid` when no checkpoint became stable (the evidence says so).
pub fn checkpoints(ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> CheckResult {
    let mut by_seq: BTreeMap<u64, BTreeMap<u32, Digest>> = BTreeMap::new();
    for (replica, events) in ledgers {
        for event in events {
            if let LedgerEvent::Checkpoint(checkpoint) = event
                && checkpoint.stable
            {
                by_seq.entry(checkpoint.seq).or_default().insert(*replica, checkpoint.state_digest);
            }
        }
    }
    for (seq, digests) in &by_seq {
        let mut distinct: Vec<&Digest> = digests.values().collect();
        distinct.sort();
        distinct.dedup();
        if distinct.len() > 1 {
            let digests: BTreeMap<String, String> = digests
                .iter()
                .map(|(replica, digest)| (replica.to_string(), digest.to_hex()))
                .collect();
            return CheckResult::new(
                Verdict::Invalid,
                json!({
                    "stable": by_seq.len(),
                    "divergence": {"seq": seq, "state_digests": digests},
                }),
            );
        }
    }
    CheckResult::new(Verdict::Valid, json!({"stable": by_seq.len()}))
}
