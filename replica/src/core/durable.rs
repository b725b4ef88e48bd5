//! What a replica must not forget in a crash, as values: the writes the core asks for, the state
//! they build, and how a restarted replica reconciles it with the ledger events it recorded.
//!
//! # Persist before send
//!
//! Every input may queue [`Write`]s. While writes are queued, [`crate::core::Replica`] holds back
//! its messages and ledger events: the driver takes them together in a numbered `Ready`, makes
//! the writes durable, and only then records the events and sends the messages.
//! So no vote, VC-REQUEST, INFORM or ledger line ever leaves before what it depends on is on
//! disk, and a replica killed at any moment restarts with at least what it told anyone.
//!
//! [`Durable`] is the persisted state and [`Durable::apply`] its meaning: the shell keeps it in
//! redb (`net::store`), the simulator in memory; both apply the same writes the same way.

use std::collections::BTreeMap;
use std::sync::Arc;

use history::{Digest, LedgerEvent};
use serde::{Deserialize, Serialize};

use super::ledger::Certificate;
use super::message::{CheckpointCertificate, SignedRequest, SlotEvidence, Support, ViewChange};
use super::state_machine::Snapshot;
use super::types::{Seq, View};

/// An executed block as persisted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredBlock {
    /// The slot.
    pub seq: Seq,
    /// The view it executed under (its original certificate's view).
    pub view: View,
    /// The batch.
    pub batch: Arc<[SignedRequest]>,
    /// The view of `certificate` (later than `view` once the slot was re-certified).
    pub certificate_view: View,
    /// The highest-view certificate held for the slot.
    pub certificate: Certificate,
}

/// One change to the persisted state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Write {
    /// The replica entered `view` (its VC-REQUEST, if any, is done).
    View(View),
    /// The replica sent this VC-REQUEST: it has left its view.
    ViewChange(Arc<ViewChange>),
    /// The replica supported a proposal.
    Vote(Support),
    /// The replica executed a block.
    Block(StoredBlock),
    /// Block `seq` was re-certified in a later view.
    Certificate {
        /// The slot.
        seq: Seq,
        /// The certificate's view.
        view: View,
        /// The certificate.
        certificate: Certificate,
    },
    /// PBFT: this replica holds a prepared certificate for the slot and is about to send its
    /// COMMIT. A COMMIT says "I am prepared", and committed-local elsewhere relies on f + 1
    /// honest replicas reporting the certificate in their VIEW-CHANGEs, after a restart too.
    Prepared(SlotEvidence),
    /// Rollback: blocks above `Seq` are gone.
    Truncate(Seq),
    /// A stable checkpoint (own, or installed by state transfer): blocks and votes up to its slot
    /// are no longer needed; blocks above it are kept only if `keep_blocks`.
    Checkpoint {
        /// The certificate.
        certificate: CheckpointCertificate,
        /// The state at its slot.
        snapshot: Snapshot,
        /// False when a snapshot replaced the whole state (state transfer).
        keep_blocks: bool,
    },
}

/// The persisted state of a replica.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Durable {
    /// The view the replica is in (or leaving, with `view_change`).
    pub view: View,
    /// The VC-REQUEST it sent, while the view change is not complete.
    pub view_change: Option<Arc<ViewChange>>,
    /// The highest view it ever signed a VC-REQUEST for: never lowered (below it the replica
    /// is passive, see `Replica`'s vote floor).
    #[serde(default)]
    pub vote_floor: View,
    /// Its votes for slots above the checkpoint.
    pub votes: BTreeMap<(View, Seq), Support>,
    /// Its stable checkpoint with the snapshot.
    pub checkpoint: Option<(CheckpointCertificate, Snapshot)>,
    /// Its executed blocks above the checkpoint.
    pub blocks: BTreeMap<Seq, StoredBlock>,
    /// PBFT: its prepared certificates above the checkpoint, the highest view per slot.
    #[serde(default)]
    pub prepared: BTreeMap<Seq, SlotEvidence>,
}

impl Durable {
    /// Applies writes in order.
    pub fn apply(&mut self, writes: impl IntoIterator<Item = Write>) {
        for write in writes {
            match write {
                Write::View(view) => {
                    self.view = view;
                    self.view_change = None;
                }
                Write::ViewChange(request) => {
                    self.vote_floor = self.vote_floor.max(request.target);
                    self.view_change = Some(request);
                }
                Write::Vote(support) => {
                    self.votes.insert((support.view, support.seq), support);
                }
                Write::Block(block) => {
                    self.blocks.insert(block.seq, block);
                }
                Write::Certificate { seq, view, certificate } => {
                    if let Some(block) = self.blocks.get_mut(&seq) {
                        block.certificate_view = view;
                        block.certificate = certificate;
                    }
                }
                Write::Prepared(evidence) => {
                    let higher = self
                        .prepared
                        .get(&evidence.seq)
                        .is_none_or(|held| evidence.view >= held.view);
                    if higher {
                        self.prepared.insert(evidence.seq, evidence);
                    }
                }
                Write::Truncate(seq) => {
                    self.blocks.retain(|block, _| *block <= seq);
                }
                Write::Checkpoint { certificate, snapshot, keep_blocks } => {
                    let seq = certificate.seq;
                    if keep_blocks {
                        self.blocks.retain(|block, _| *block > seq);
                    } else {
                        self.blocks.clear();
                    }
                    self.votes.retain(|(_, voted), _| *voted > seq);
                    self.prepared.retain(|prepared, _| *prepared > seq);
                    self.checkpoint = Some((certificate, snapshot));
                }
            }
        }
    }

    /// The stable checkpoint's slot (0 without one).
    pub fn checkpoint_seq(&self) -> Seq {
        self.checkpoint.as_ref().map_or(Seq(0), |(certificate, _)| certificate.seq)
    }
}

/// What a replica's `ledger.jsonl` says its executed history is: the chain of (block hash, state
/// digest) per slot after replaying its executions, rollbacks and state transfers, and its last
/// stable checkpoint. A restarted replica compares it with its [`Durable`] state and records
/// what the file misses (the events of writes that were persisted before a kill).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The slot the chain starts after (a state transfer's, or 0).
    pub base: Seq,
    /// Hash and state digest of every slot from `base` (inclusive) to the head.
    pub chain: BTreeMap<Seq, (Digest, Digest)>,
    /// The last checkpoint recorded as stable.
    pub stable: Seq,
    /// The last view recorded as entered.
    pub view: View,
    /// The view of the last certificate recorded for each slot of `chain` (its execution's,
    /// or a later re-certification's).
    pub certified: BTreeMap<Seq, View>,
}

impl Recorded {
    /// Replays recorded events. `genesis` is the hash and state digest before slot 1.
    pub fn from_events<'a>(
        events: impl IntoIterator<Item = &'a LedgerEvent>,
        genesis: (Digest, Digest),
    ) -> Recorded {
        let mut recorded = Recorded::default();
        recorded.chain.insert(Seq(0), genesis);
        for event in events {
            match event {
                LedgerEvent::Execute(execute) => {
                    recorded
                        .chain
                        .insert(Seq(execute.seq), (execute.block_hash, execute.state_digest));
                    recorded.certified.insert(Seq(execute.seq), View(execute.view));
                }
                LedgerEvent::Rollback(rollback) => {
                    recorded.chain.retain(|seq, _| seq.0 <= rollback.to_seq);
                    recorded.certified.retain(|seq, _| seq.0 <= rollback.to_seq);
                }
                LedgerEvent::StateTransfer(transfer) => {
                    recorded.chain.clear();
                    recorded.certified.clear();
                    recorded.base = Seq(transfer.seq);
                    recorded
                        .chain
                        .insert(Seq(transfer.seq), (transfer.block_hash, transfer.state_digest));
                }
                LedgerEvent::Checkpoint(checkpoint) => {
                    if checkpoint.stable {
                        recorded.stable = recorded.stable.max(Seq(checkpoint.seq));
                    }
                }
                LedgerEvent::ViewEntered(entered) => {
                    recorded.view = recorded.view.max(View(entered.view));
                }
                // The block stays; recovery re-tags it from the stored certificate.
                LedgerEvent::Recertified(recertified) => {
                    if recorded.chain.contains_key(&Seq(recertified.seq)) {
                        recorded.certified.insert(Seq(recertified.seq), View(recertified.new_view));
                    }
                }
            }
        }
        recorded
    }

    /// The last recorded slot.
    pub fn head(&self) -> Seq {
        self.chain.keys().next_back().copied().unwrap_or(self.base)
    }
}
