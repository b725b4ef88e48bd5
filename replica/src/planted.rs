//! Planted bugs: named, realistic deviations from PROTOCOL.md that a test run can switch on, so
//! that Ordeal proves its safety gate can fail (a checker that never says `invalid` proves
//! nothing).
//!
//! Each [`PlantedBug`] is one small mistake an implementer could make (most of them were made:
//! PROTOCOL §8 lists ResilientDB's), documented with the rule it breaks. A bug is chosen at run
//! time: `Config::planted_bug` in the core (set from `NodeConfig::planted_bug`, `planted_bug =
//! "name"` in a replica's `config.toml`, and from `ordeal test --planted-bug NAME` for the
//! clients). The harness gives it to every honest replica and every client, never to a
//! declared Byzantine replica. Every bug leaves a fault-free run valid: only an adversary
//! (Byzantine replicas, crashes, partitions, crafted messages) makes the harm visible.
//!
//! **Invariant:** without the cargo feature `planted-bugs` no planted code path exists. Every
//! buggy branch sits under `#[cfg(feature = "planted-bugs")]`, so it is not even compiled;
//! [`crate::core::Config::planted`] is a constant `false` in such a build, and a configuration
//! that names a bug is refused by `Config::validate` with
//! [`crate::core::ConfigError::PlantedBugsNotBuilt`]. The feature is never on in default or
//! release builds of the product (`cargo build --features planted-bugs` only, for tests of the
//! harness itself). The list is in `docs/planted-bugs.md`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Whether this build has the planted bugs (the `planted-bugs` cargo feature).
pub const ENABLED: bool = cfg!(feature = "planted-bugs");

/// Which part of the protocol a planted bug breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Part {
    /// The normal case: PROPOSE, SUPPORT, CERTIFY, view-commit (PROTOCOL §3).
    NormalCase,
    /// The view change: VC-REQUEST, NV-PROPOSE, the decision (PROTOCOL §5).
    ViewChange,
    /// Rolling speculative executions back (PROTOCOL §5.3 step 5).
    Rollback,
    /// Checkpoints and state transfer (PROTOCOL §6).
    Checkpoint,
    /// The client's proof of execution (PROTOCOL §3.1 step 7).
    Client,
    /// What must be on disk before a message leaves (PROTOCOL §3.1 step 3, DESIGN).
    Durability,
}

impl Part {
    /// The name in documentation and reports.
    pub fn name(self) -> &'static str {
        match self {
            Part::NormalCase => "normal case",
            Part::ViewChange => "view change",
            Part::Rollback => "rollback",
            Part::Checkpoint => "checkpoint",
            Part::Client => "client",
            Part::Durability => "durability",
        }
    }
}

/// One named planted bug. The doc comment of each says what it does and which rule of
/// PROTOCOL.md it breaks.
/// In files it is its name (`"vote-digest-unchecked"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PlantedBug {
    /// Votes are counted without checking that their digest is the accepted proposal's: in
    /// PoE-MAC a SUPPORT for another digest is kept and counts toward the nf that view-commit
    /// the replica's own proposal; in PoE-TS a backup view-commits its proposal on any valid
    /// CERTIFY for the slot, whatever digest it certifies. Breaks PROTOCOL §8 ("collectors
    /// count senders without checking that the vote's digest matches the proposal", ResilientDB)
    /// and §10.7 (certificate uniqueness); an equivocating primary splits the honest replicas.
    VoteDigestUnchecked,
    /// Every quorum is 2f + 1 instead of nf = n − f: certificates, commits, checkpoints,
    /// view-change quorums, client proofs and the threshold of the BLS key. The two agree only
    /// when n = 3f + 1; at n = 5 (f = 1) two quorums of 3 share one replica, which may be the
    /// Byzantine one. Breaks PROTOCOL §1 and §9.3 (ResilientDB's `GetMinDataReceiveNum`).
    Quorum2fPlus1,
    /// The client accepts a result on f + 1 matching INFORMs (PBFT's reply quorum) instead of
    /// nf: a speculative result that one honest replica and a Byzantine one report, and a view
    /// change rolls back, completes the request. Breaks PROTOCOL §3.1 step 7 and §9.4.
    ClientFPlus1,
    /// A rollback records its ledger event but undoes nothing: store, at-most-once table,
    /// ledger and last executed slot stay as they were, so the replica keeps executions the
    /// new view replaced. Breaks PROTOCOL §5.3 steps 5–6 and §10.6 (ResilientDB's `RollBack`
    /// only logs, §8).
    RollbackOnlyLogs,
    /// A rollback restores the store but not the at-most-once table: the rolled-back requests
    /// still count as executed, so when the new view proposes them again this replica skips
    /// them while the others execute them. Breaks PROTOCOL §5.3 step 5 ("restore the
    /// request-dedup table for the undone requests") and §9.4.
    DedupNotRestored,
    /// A rollback undoes the slots oldest first instead of newest first, so a key two undone
    /// slots wrote ends at the value between them, not before them. Breaks PROTOCOL §5.3
    /// step 5 ("undo ... in reverse order") and §10.6 (rollbacks run in reverse order; the
    /// state after the rollback is the kept prefix's).
    UndoForwardOrder,
    /// The new-view decision takes, for each slot, the first certificate it meets in the
    /// NV-PROPOSE's VC-REQUESTs instead of the one with the highest view, so a stale
    /// certificate placed first replaces a later one clients hold proofs for. Breaks PROTOCOL
    /// §5.3 step 3 ("never take the first one seen"), §8 (ResilientDB's `SendNewView`) and §9.1
    /// (Zyzzyva's view-change bug).
    FirstSeenWins,
    /// An NV-PROPOSE from the new view's primary is accepted on its count of VC-REQUESTs from
    /// distinct replicas without checking their signatures, checkpoint certificates and slot
    /// certificates, so a Byzantine new primary can decide any history (an empty one rolls back
    /// everything). Breaks PROTOCOL §5.3 step 1 and §10.8.
    NewViewUnvalidated,
    /// On entering a view, a replica sends INFORMs tagged with the new view for the carried
    /// slots it had executed and kept, before they are certified again in the new view (as
    /// the slides' "view-commit carried slots directly" suggests). A new primary that sends
    /// different NV-PROPOSEs to different replicas can then gather a proof for a slot another
    /// view change drops. Breaks PROTOCOL §5.4 and §3.3.
    InformBeforeRecertify,
    /// A checkpoint is stable (a commit point: undo information, ledger and votes below it
    /// are discarded, and no rollback goes below it) on f + 1 matching CHECKPOINTs instead of
    /// nf, and checkpoint certificates of f + 1 signatures are accepted (in VC-REQUESTs and
    /// state transfers): PBFT's state-copy rule. PoE checkpoints cover speculative state, so a
    /// Byzantine replica and one honest replica can freeze a state a view change must roll
    /// back. Breaks PROTOCOL §6 ("f+1 matching checkpoints are not enough in PoE").
    CheckpointFPlus1,
    /// A state transfer's checkpoint certificate is verified, but not that the snapshot it
    /// carries has the certified state digest, so a Byzantine replica can install any state
    /// under a real certificate. Breaks PROTOCOL §6 ("copy only from an nf certificate") and
    /// §5.3 step 2.
    SnapshotDigestUnchecked,
    /// A SUPPORT leaves before the vote is persisted, so a replica restarted after a crash no
    /// longer knows what it supported and supports another proposal for the same (view, seq).
    /// Breaks PROTOCOL §3.1 step 3 ("R supports at most one proposal per (v, k)") and §9.4
    /// across a restart (durability: persist before send).
    VoteNotPersisted,
    /// PBFT: a slot executes (and its clients get REPLYs) as soon as it is prepared, without
    /// waiting for the commit quorum, PBFT's "tentative execution" without the 2f + 1 replies
    /// it needs. A request prepared at one honest replica only (the primary's PREPARE withheld
    /// from the others) executes there and is lost in the next view change. Breaks PROTOCOL §7
    /// ("committing at prepared is unsafe") and §10.1.
    PbftExecuteAtPrepared,
    /// PBFT: a slot is committed-local on f + 1 matching COMMITs instead of nf: a faulty
    /// replica's COMMIT and one honest replica's make a request final that the next view
    /// change may not carry. Breaks PROTOCOL §7 (committed-local needs 2f + 1, nf, COMMITs)
    /// and §1.
    PbftCommitQuorumFPlus1,
}

impl PlantedBug {
    /// Every planted bug, in a fixed order.
    pub const ALL: [PlantedBug; 14] = [
        PlantedBug::VoteDigestUnchecked,
        PlantedBug::Quorum2fPlus1,
        PlantedBug::ClientFPlus1,
        PlantedBug::RollbackOnlyLogs,
        PlantedBug::DedupNotRestored,
        PlantedBug::UndoForwardOrder,
        PlantedBug::FirstSeenWins,
        PlantedBug::NewViewUnvalidated,
        PlantedBug::InformBeforeRecertify,
        PlantedBug::CheckpointFPlus1,
        PlantedBug::SnapshotDigestUnchecked,
        PlantedBug::VoteNotPersisted,
        PlantedBug::PbftExecuteAtPrepared,
        PlantedBug::PbftCommitQuorumFPlus1,
    ];

    /// The name on the command line, in configuration files and reports.
    pub fn name(self) -> &'static str {
        match self {
            PlantedBug::VoteDigestUnchecked => "vote-digest-unchecked",
            PlantedBug::Quorum2fPlus1 => "quorum-2f-plus-1",
            PlantedBug::ClientFPlus1 => "client-f-plus-1",
            PlantedBug::RollbackOnlyLogs => "rollback-only-logs",
            PlantedBug::DedupNotRestored => "dedup-not-restored",
            PlantedBug::UndoForwardOrder => "undo-forward-order",
            PlantedBug::FirstSeenWins => "first-seen-wins",
            PlantedBug::NewViewUnvalidated => "new-view-unvalidated",
            PlantedBug::InformBeforeRecertify => "inform-before-recertify",
            PlantedBug::CheckpointFPlus1 => "checkpoint-f-plus-1",
            PlantedBug::SnapshotDigestUnchecked => "snapshot-digest-unchecked",
            PlantedBug::VoteNotPersisted => "vote-not-persisted",
            PlantedBug::PbftExecuteAtPrepared => "pbft-execute-at-prepared",
            PlantedBug::PbftCommitQuorumFPlus1 => "pbft-commit-quorum-f-plus-1",
        }
    }

    /// The part of the protocol it breaks.
    pub fn part(self) -> Part {
        match self {
            PlantedBug::VoteDigestUnchecked
            | PlantedBug::Quorum2fPlus1
            | PlantedBug::PbftExecuteAtPrepared
            | PlantedBug::PbftCommitQuorumFPlus1 => Part::NormalCase,
            PlantedBug::ClientFPlus1 => Part::Client,
            PlantedBug::RollbackOnlyLogs
            | PlantedBug::DedupNotRestored
            | PlantedBug::UndoForwardOrder => Part::Rollback,
            PlantedBug::FirstSeenWins
            | PlantedBug::NewViewUnvalidated
            | PlantedBug::InformBeforeRecertify => Part::ViewChange,
            PlantedBug::CheckpointFPlus1 | PlantedBug::SnapshotDigestUnchecked => Part::Checkpoint,
            PlantedBug::VoteNotPersisted => Part::Durability,
        }
    }

    /// The rules of PROTOCOL.md it breaks, by section.
    pub fn rule(self) -> &'static str {
        match self {
            PlantedBug::VoteDigestUnchecked => "§8 (collectors), §10.7",
            PlantedBug::Quorum2fPlus1 => "§1, §9.3",
            PlantedBug::ClientFPlus1 => "§3.1 step 7, §9.4",
            PlantedBug::RollbackOnlyLogs => "§5.3 steps 5-6, §8, §10.6",
            PlantedBug::DedupNotRestored => "§5.3 step 5, §9.4",
            PlantedBug::UndoForwardOrder => "§5.3 step 5, §10.6",
            PlantedBug::FirstSeenWins => "§5.3 step 3, §8, §9.1",
            PlantedBug::NewViewUnvalidated => "§5.3 step 1, §10.8",
            PlantedBug::InformBeforeRecertify => "§5.4, §3.3",
            PlantedBug::CheckpointFPlus1 => "§6",
            PlantedBug::SnapshotDigestUnchecked => "§6, §5.3 step 2",
            PlantedBug::VoteNotPersisted => "§3.1 step 3, §9.4",
            PlantedBug::PbftExecuteAtPrepared => "§7, §10.1",
            PlantedBug::PbftCommitQuorumFPlus1 => "§7, §1",
        }
    }

    /// The protocol whose replicas the bug is in: `pbft` for PBFT's commit phase, `poe` for
    /// the others (most of which the shared core also runs under PBFT).
    pub fn protocol(self) -> &'static str {
        match self {
            PlantedBug::PbftExecuteAtPrepared | PlantedBug::PbftCommitQuorumFPlus1 => "pbft",
            _ => "poe",
        }
    }
}

impl fmt::Display for PlantedBug {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A name that is no [`PlantedBug`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown planted bug {0:?} (known: {known})", known = known_names())]
pub struct UnknownPlantedBug(pub String);

fn known_names() -> String {
    PlantedBug::ALL.iter().map(|bug| bug.name()).collect::<Vec<_>>().join(", ")
}

impl FromStr for PlantedBug {
    type Err = UnknownPlantedBug;

    fn from_str(name: &str) -> Result<PlantedBug, UnknownPlantedBug> {
        PlantedBug::ALL
            .into_iter()
            .find(|bug| bug.name() == name)
            .ok_or_else(|| UnknownPlantedBug(name.to_string()))
    }
}

impl Serialize for PlantedBug {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for PlantedBug {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PlantedBug, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}
