//! Ledger oracles.
//!
//! [`agreement`]: honest replicas' final ledgers agree at every sequence number they share
//! (PROTOCOL §10.1). A replica's final ledger is what stands after replaying its ledger events
//! in order: an execution puts a block at its slot, a rollback removes every slot above its
//! target. Equal block hashes at k mean equal batches at 1..=k, so comparing hashes compares
//! whole prefixes; state digests are compared too. A state transfer replaces the history: only
//! the executions after it stand.
//!
//! [`checkpoints`]: honest replicas' stable checkpoints agree on the state digest.

use std::collections::BTreeMap;

use history::{Digest, ExecuteEvent, LedgerEvent, Verdict};
use serde_json::json;

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

/// Checks that the final ledgers of `ledgers` (honest replicas only, by id) hold the same block
/// and state digest at every sequence number that two or more of them executed: `invalid` at
/// the first slot where they differ, `unknown` when no slot could be compared.
pub fn agreement(ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> CheckResult {
    let finals: BTreeMap<u32, BTreeMap<u64, &ExecuteEvent>> =
        ledgers.iter().map(|(replica, events)| (*replica, final_ledger(events))).collect();
    let mut by_seq: BTreeMap<u64, Vec<(u32, Digest, Digest)>> = BTreeMap::new();
    for (replica, slots) in &finals {
        for (seq, execute) in slots {
            by_seq.entry(*seq).or_default().push((
                *replica,
                execute.block_hash,
                execute.state_digest,
            ));
        }
    }
    let heads: BTreeMap<String, u64> = finals
        .iter()
        .map(|(replica, slots)| (replica.to_string(), slots.keys().last().copied().unwrap_or(0)))
        .collect();
    let mut compared = 0u64;
    for (seq, holders) in &by_seq {
        if holders.len() < 2 {
            continue;
        }
        compared += 1;
        let (_, block, state) = holders[0];
        if holders
            .iter()
            .any(|(_, other_block, other_state)| *other_block != block || *other_state != state)
        {
            let blocks: BTreeMap<String, String> = holders
                .iter()
                .map(|(replica, block, _)| (replica.to_string(), block.to_hex()))
                .collect();
            let states: BTreeMap<String, String> = holders
                .iter()
                .map(|(replica, _, state)| (replica.to_string(), state.to_hex()))
                .collect();
            return CheckResult::new(
                Verdict::Invalid,
                json!({
                    "replicas": finals.keys().collect::<Vec<_>>(),
                    "heads": heads,
                    "compared": compared,
                    "divergence": {"seq": seq, "block_hashes": blocks, "state_digests": states},
                }),
            );
        }
    }
    // Nothing compared proves nothing: fewer than two replicas executed any common slot.
    let verdict = if compared == 0 { Verdict::Unknown } else { Verdict::Valid };
    CheckResult::new(
        verdict,
        json!({
            "replicas": finals.keys().collect::<Vec<_>>(),
            "heads": heads,
            "compared": compared,
        }),
    )
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
