//! Checkpoints, garbage collection and state transfer (PROTOCOL §6).
//!
//! After every K-th slot a replica signs CHECKPOINT(k, state digest, block hash) and keeps a
//! snapshot of its state. nf matching signatures make the checkpoint stable: a commit point no
//! view change rolls back. Blocks, undo records and votes up to it are dropped, and the high
//! watermark moves to k + log size. (f + 1 would not do: PoE checkpoints cover speculative
//! state.)
//!
//! A replica that learns it is behind (nf checkpoints above its head, messages from a later
//! view, slots beyond its window, a hole it cannot fill) sends a STATE-REQUEST, at most every
//! `state_request_interval`. The answer carries the sender's stable checkpoint with its
//! snapshot, verified against the nf certificate; the NV-PROPOSE of the sender's view; and the
//! slots certified in that view above it, each verified against its certificate.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use history::{CheckpointEvent, LedgerEvent, StateTransferEvent};

use super::{Proposal, Replica};

/// A catch-up under way (`Replica::catch_up`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct CatchUp {
    /// Requests still allowed after the next one.
    pub(super) retries_left: u32,
    /// When to ask again.
    pub(super) at: Time,
}
use crate::core::config::{KEY_LENGTH_MAX, STATE_REQUEST_RETRIES_MAX};
use crate::core::durable::Write;
use crate::core::error::Rejection;
use crate::core::message::{
    Checkpoint, CheckpointCertificate, Message, SlotEvidence, StateRequest, StateTransfer,
    batch_digest, checkpoint_signing_bytes, proposal_digest,
};
use crate::core::state_machine::{Snapshot, StateMachine};
use crate::core::types::{Digest, ReplicaId, Seq, Time};
#[cfg(feature = "planted-bugs")]
use crate::planted::PlantedBug;

/// The ledger event recording that `replica` installed `snapshot`, certified by `certificate`.
pub(super) fn state_transfer_event(
    replica: ReplicaId,
    now: Time,
    certificate: &CheckpointCertificate,
    snapshot: &Snapshot,
) -> LedgerEvent {
    LedgerEvent::StateTransfer(StateTransferEvent {
        time: now.as_nanos(),
        replica: u32::from(replica.0),
        seq: certificate.seq.0,
        block_hash: certificate.block_hash,
        state_digest: certificate.state_digest,
        store: snapshot.store.clone(),
        clients: snapshot
            .clients
            .iter()
            .map(|(client, entry)| (client.0, entry.request.0))
            .collect(),
    })
}

/// A checkpoint above the stable one.
#[derive(Debug, Default)]
pub(super) struct PendingCheckpoint {
    /// This replica's (state digest, block hash) at the slot and its snapshot, once executed.
    own: Option<(Digest, Digest, Snapshot)>,
    /// The CHECKPOINT messages received, own included.
    votes: BTreeMap<ReplicaId, Checkpoint>,
}

impl PendingCheckpoint {
    /// The execution this replica checkpointed was rolled back.
    pub(super) fn forget_own(&mut self) {
        self.own = None;
    }
}

impl Replica {
    /// The last stable checkpoint's slot (0 before the first).
    pub(super) fn stable_seq(&self) -> Seq {
        self.checkpointing.stable.as_ref().map_or(Seq(0), |(certificate, _)| certificate.seq)
    }

    /// Records a checkpoint of the state after the last executed slot, and signs and
    /// broadcasts it unless the replica is below its vote floor.
    pub(super) fn take_checkpoint(&mut self, now: Time) {
        let seq = self.last_executed();
        let state_digest = self.state.digest();
        let block_hash = self.ledger.head_hash();
        self.counters.checkpoints_taken += 1;
        self.outbox.events.push_back(LedgerEvent::Checkpoint(CheckpointEvent {
            time: now.as_nanos(),
            replica: u32::from(self.id.0),
            seq: seq.0,
            state_digest,
            stable: false,
            certificate: None,
        }));
        let snapshot = self.state.snapshot();
        self.checkpointing.checkpoints.entry(seq).or_default().own =
            Some((state_digest, block_hash, snapshot));
        let bytes = checkpoint_signing_bytes(seq, &state_digest, &block_hash);
        if let Ok(signature) = self.safety.sign_checkpoint(self.view, &bytes) {
            let message = Checkpoint { seq, state_digest, block_hash, replica: self.id, signature };
            let pending = self.checkpointing.checkpoints.entry(seq).or_default();
            pending.votes.insert(self.id, message.clone());
            self.broadcast(&Message::Checkpoint(message));
        } else {
            // No checkpoint vote below the vote floor: the others' nf make it stable.
            self.counters.withheld_below_vote_floor += 1;
        }
        self.try_stabilize(now, seq);
    }

    pub(super) fn handle_checkpoint(
        &mut self,
        now: Time,
        from: ReplicaId,
        checkpoint: Checkpoint,
    ) -> Result<(), Rejection> {
        let seq = checkpoint.seq;
        if checkpoint.replica != from {
            return Err(Rejection::SenderMismatch {
                message: "checkpoint",
                from,
                claimed: checkpoint.replica,
            });
        }
        let invalid = |reason| Rejection::InvalidCheckpoint { from, seq, reason };
        if seq.0 == 0 || !seq.0.is_multiple_of(self.config.checkpoint_interval) {
            return Err(invalid("not a checkpoint slot"));
        }
        if seq <= self.stable_seq() {
            self.counters.late(from);
            return Ok(());
        }
        let high = Seq(self.stable_seq().0 + self.config.evidence_slots_max());
        if seq > high {
            // Far ahead of this replica: it fell behind.
            self.request_state(now, Some(from));
            return Err(Rejection::OutsideWindow { seq, low: self.stable_seq(), high });
        }
        if let Some(held) =
            self.checkpointing.checkpoints.get(&seq).and_then(|pending| pending.votes.get(&from))
        {
            return Err(if *held == checkpoint {
                Rejection::DuplicateVote { from, seq }
            } else {
                Rejection::ConflictingVote { from, seq }
            });
        }
        let bytes = checkpoint_signing_bytes(seq, &checkpoint.state_digest, &checkpoint.block_hash);
        self.public.replicas[from.index()]
            .verify(&bytes, &checkpoint.signature)
            .map_err(|_| invalid("invalid signature"))?;
        self.checkpointing.checkpoints.entry(seq).or_default().votes.insert(from, checkpoint);
        self.try_stabilize(now, seq);
        Ok(())
    }

    /// Makes checkpoint `seq` stable if nf replicas signed the same digests and this replica's
    /// own state at `seq` is the same; asks for state if it is behind or differs.
    fn try_stabilize(&mut self, now: Time, seq: Seq) {
        let nf = self.checkpoint_quorum();
        let Some(pending) = self.checkpointing.checkpoints.get(&seq) else { return };
        let mut tally: BTreeMap<(Digest, Digest), Vec<&Checkpoint>> = BTreeMap::new();
        for vote in pending.votes.values() {
            tally.entry((vote.state_digest, vote.block_hash)).or_default().push(vote);
        }
        let Some(((state_digest, block_hash), votes)) =
            tally.into_iter().find(|(_, votes)| votes.len() >= nf)
        else {
            return;
        };
        let signatures: Vec<(ReplicaId, _)> =
            votes.iter().take(nf).map(|vote| (vote.replica, vote.signature)).collect();
        let signer = votes.iter().map(|vote| vote.replica).find(|replica| *replica != self.id);
        let certificate = CheckpointCertificate { seq, state_digest, block_hash, signatures };
        match &pending.own {
            Some((own_state, own_hash, snapshot))
                if (*own_state, *own_hash) == (state_digest, block_hash) =>
            {
                let snapshot = snapshot.clone();
                self.make_stable(now, certificate, snapshot, true);
            }
            // Behind, or (worse) a different state than nf replicas agreed on: take theirs.
            Some(_) => self.request_state(now, signer),
            None if seq > self.last_executed() => self.request_state(now, signer),
            None => {}
        }
    }

    /// The matching CHECKPOINTs that make a checkpoint stable, and the signatures a checkpoint
    /// certificate needs: nf (f + 1 would not do, the state they cover is speculative).
    fn checkpoint_quorum(&self) -> usize {
        #[cfg(feature = "planted-bugs")]
        if self.config.planted(PlantedBug::CheckpointFPlus1) {
            return self.config.f() + 1;
        }
        self.config.nf()
    }

    /// Records a stable checkpoint and collects the garbage below it.
    fn make_stable(
        &mut self,
        now: Time,
        certificate: CheckpointCertificate,
        snapshot: Snapshot,
        keep_blocks: bool,
    ) {
        let seq = certificate.seq;
        self.counters.checkpoints_stable += 1;
        self.outbox.events.push_back(LedgerEvent::Checkpoint(CheckpointEvent {
            time: now.as_nanos(),
            replica: u32::from(self.id.0),
            seq: seq.0,
            state_digest: certificate.state_digest,
            stable: true,
            certificate: Some(certificate.record()),
        }));
        self.outbox.writes.push(Write::Checkpoint {
            certificate: certificate.clone(),
            snapshot: snapshot.clone(),
            keep_blocks,
        });
        self.ledger.prune_through(seq);
        self.state.discard_undo_through(seq);
        // Slots this replica executed cannot execute again (one certified in a later view
        // after it executed would otherwise stay until a snapshot is installed).
        let executed = self.last_executed().min(seq);
        self.slots.retain(|slot, _| *slot > executed);
        self.checkpointing.checkpoints.retain(|pending, _| *pending > seq);
        self.changes.carried.retain(|carried, _| *carried > seq);
        self.changes.prepared.retain(|prepared, _| *prepared > seq);
        self.safety.forget_through(seq);
        self.checkpointing.stable = Some((certificate, snapshot));
    }

    /// Checks nf valid CHECKPOINT signatures from distinct replicas at a checkpoint slot.
    pub(super) fn verify_checkpoint_certificate(
        &self,
        certificate: &CheckpointCertificate,
    ) -> Result<(), Rejection> {
        let seq = certificate.seq;
        let invalid = |reason| Rejection::InvalidCheckpointCertificate { seq, reason };
        if seq.0 == 0 || !seq.0.is_multiple_of(self.config.checkpoint_interval) {
            return Err(invalid("not a checkpoint slot"));
        }
        let bytes =
            checkpoint_signing_bytes(seq, &certificate.state_digest, &certificate.block_hash);
        let mut signers = BTreeSet::new();
        for (replica, signature) in &certificate.signatures {
            if replica.0 >= self.config.replica_count {
                return Err(invalid("a signature of an unknown replica"));
            }
            if !signers.insert(*replica) {
                return Err(invalid("two signatures of one replica"));
            }
            self.public.replicas[replica.index()]
                .verify(&bytes, signature)
                .map_err(|_| invalid("an invalid signature"))?;
        }
        if signers.len() < self.checkpoint_quorum() {
            return Err(invalid("fewer than nf signatures"));
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // State transfer.

    /// Asks `to` (or everyone) for state, unless a request went out less than
    /// `state_request_interval` ago; starts a catch-up that asks again until an answer brings
    /// this replica to its sender's head.
    pub(super) fn request_state(&mut self, now: Time, to: Option<ReplicaId>) {
        let interval = self.config.state_request_interval;
        if self.checkpointing.last_state_request.is_some_and(|at| now < at + interval) {
            return;
        }
        if self.checkpointing.catch_up.is_none() {
            self.checkpointing.catch_up =
                Some(CatchUp { retries_left: STATE_REQUEST_RETRIES_MAX, at: now });
        }
        if let Some(catch_up) = self.checkpointing.catch_up.as_mut() {
            catch_up.at = now + interval * 2;
        }
        self.checkpointing.last_state_request = Some(now);
        self.counters.state_requests_sent += 1;
        // The view this replica is in, not the one it asks for: a replica that restarted in
        // the middle of a view change the others completed must get that view's NV-PROPOSE
        // (its own VC-REQUEST is stale to them, so nothing else would bring it).
        let request = Message::StateRequest(StateRequest {
            view: self.view,
            last_executed: self.last_executed(),
        });
        match to {
            Some(to) if to != self.id => self.send(to, &request),
            _ => self.broadcast(&request),
        }
    }

    /// Asks everyone for state again when a catch-up's retry is due; gives up after
    /// [`STATE_REQUEST_RETRIES_MAX`] retries (a new sign of being behind starts another).
    pub(super) fn catch_up_timer(&mut self, now: Time) {
        let Some(catch_up) = self.checkpointing.catch_up.as_mut() else { return };
        if now < catch_up.at {
            return;
        }
        if catch_up.retries_left == 0 {
            self.checkpointing.catch_up = None;
            return;
        }
        catch_up.retries_left -= 1;
        self.request_state(now, None);
        if let Some(catch_up) = self.checkpointing.catch_up.as_mut()
            && catch_up.at <= now
        {
            // Refused by the rate limit: try again once it allows.
            catch_up.at = now + self.config.state_request_interval;
        }
    }

    /// Answers a replica that fell behind, at most once per `state_request_interval` each.
    pub(super) fn handle_state_request(
        &mut self,
        now: Time,
        from: ReplicaId,
        request: &StateRequest,
    ) -> Result<(), Rejection> {
        let interval = self.config.state_request_interval;
        if self
            .checkpointing
            .state_requests_served
            .get(&from)
            .is_some_and(|at| now < *at + interval)
        {
            return Err(Rejection::RateLimited { message: "state-request", from });
        }
        let checkpoint = self
            .checkpointing
            .stable
            .as_ref()
            .filter(|(certificate, _)| certificate.seq > request.last_executed)
            .cloned();
        let new_view =
            self.changes.new_view.clone().filter(|new_view| new_view.view > request.view);
        let tail_after =
            checkpoint.as_ref().map_or(request.last_executed, |(certificate, _)| certificate.seq);
        // A requester claiming the last representable slot has no next slot to fill (the
        // claim is a lie, but it must not crash the replica that reads it).
        let tail_from = tail_after.0.checked_add(1).map(Seq);
        let tail = match tail_from {
            Some(from) if request.view <= self.view && self.changes.mode.is_normal() => {
                self.certified_tail(from)
            }
            _ => Vec::new(),
        };
        let head = self.last_executed();
        if checkpoint.is_none()
            && new_view.is_none()
            && tail.is_empty()
            && head <= request.last_executed
        {
            return Ok(());
        }
        self.checkpointing.state_requests_served.insert(from, now);
        self.counters.state_transfers_served += 1;
        let transfer = StateTransfer { checkpoint, new_view, tail, head };
        self.send(from, &Message::StateTransfer(Arc::new(transfer)));
        Ok(())
    }

    /// The executed slots from `from` on whose certificates are from the current view.
    fn certified_tail(&self, from: Seq) -> Vec<SlotEvidence> {
        let limit = self.config.evidence_slots_max() as usize;
        let mut tail = Vec::new();
        let mut seq = from;
        while let Some(block) = self.ledger.get(seq) {
            if block.view != self.view || tail.len() >= limit {
                break;
            }
            tail.push(SlotEvidence {
                view: block.view,
                seq,
                batch: block.batch.clone(),
                certificate: block.certificate.clone(),
            });
            seq = seq.next();
        }
        tail
    }

    pub(super) fn handle_state_transfer(
        &mut self,
        now: Time,
        from: ReplicaId,
        transfer: &StateTransfer,
    ) -> Result<(), Rejection> {
        let invalid = |reason: String| Rejection::InvalidStateTransfer { from, reason };
        let mut used = false;
        if let Some(new_view) = &transfer.new_view {
            // Below the view this replica asked for too: it is passive there (`vote_floor`).
            if new_view.view > self.view {
                self.validate_new_view(new_view).map_err(|error| invalid(error.to_string()))?;
                self.install_new_view(now, new_view.clone());
                used = true;
            }
        }
        if let Some((certificate, snapshot)) = &transfer.checkpoint
            && certificate.seq > self.stable_seq()
        {
            self.verify_checkpoint_certificate(certificate)
                .map_err(|error| invalid(error.to_string()))?;
            #[cfg(feature = "planted-bugs")]
            let snapshot_checked = !self.config.planted(PlantedBug::SnapshotDigestUnchecked);
            #[cfg(not(feature = "planted-bugs"))]
            let snapshot_checked = true;
            if snapshot_checked {
                self.check_snapshot(certificate, snapshot)
                    .map_err(|reason| invalid(reason.into()))?;
            }
            if self.ledger.hash_at(certificate.seq) == Some(certificate.block_hash) {
                // Executed that far on the same history: only the checkpoint is new.
                self.make_stable(now, certificate.clone(), snapshot.clone(), true);
            } else {
                self.install_snapshot(now, certificate.clone(), snapshot.clone());
            }
            used = true;
        }
        let mut verified = std::mem::take(&mut self.changes.verified);
        let mut failed = None;
        for evidence in &transfer.tail {
            let next = self.last_executed().next();
            if evidence.seq < next {
                continue;
            }
            if evidence.seq > next || evidence.view != self.view || !self.changes.mode.is_normal() {
                break;
            }
            if let Err(reason) = self.verify_evidence(evidence, &mut verified) {
                failed = Some(format!("seq {}: {reason}", evidence.seq));
                break;
            }
            self.commit_evidence(now, evidence);
            used = true;
        }
        self.changes.verified = verified;
        if let Some(reason) = failed {
            return Err(invalid(reason));
        }
        if self.last_executed() >= transfer.head {
            // Caught up with (a Byzantine sender may have claimed too little: later signs of
            // being behind start another catch-up).
            self.checkpointing.catch_up = None;
        }
        if !used {
            // An answer to an earlier request that another replica's answer overtook, or a
            // replay: nothing in it is newer than what this replica holds.
            return Err(Rejection::StaleStateTransfer { from });
        }
        Ok(())
    }

    /// Checks a snapshot against its certificate: same slot, same digest, well-formed.
    fn check_snapshot(
        &self,
        certificate: &CheckpointCertificate,
        snapshot: &Snapshot,
    ) -> Result<(), &'static str> {
        if snapshot.seq != certificate.seq {
            return Err("snapshot of another slot");
        }
        if snapshot.store.keys().any(|key| key.len() > KEY_LENGTH_MAX) {
            return Err("snapshot key too long");
        }
        if snapshot.clients.keys().any(|client| client.0 >= self.config.client_count) {
            return Err("snapshot names an unknown client");
        }
        if snapshot.digest() != certificate.state_digest {
            return Err("snapshot digest differs from the certified one");
        }
        Ok(())
    }

    /// Replaces the executed history by a certified snapshot (its slots' blocks stay with
    /// the replicas that executed them).
    fn install_snapshot(
        &mut self,
        now: Time,
        certificate: CheckpointCertificate,
        snapshot: Snapshot,
    ) {
        let seq = certificate.seq;
        if self.last_executed() > seq {
            // Diverged beyond the checkpoint: nothing above it can stand on the new base.
            let stable = self.stable_seq();
            self.roll_back_to(now, stable);
        }
        self.state = StateMachine::from_snapshot(&snapshot);
        self.ledger.reset(seq, certificate.block_hash);
        self.slots.retain(|slot, _| *slot > seq);
        self.counters.snapshots_installed += 1;
        self.outbox.events.push_back(state_transfer_event(self.id, now, &certificate, &snapshot));
        self.make_stable(now, certificate, snapshot, false);
        self.execute_ready(now);
    }

    /// Executes a slot certified in the current view that a state transfer supplied.
    fn commit_evidence(&mut self, now: Time, evidence: &SlotEvidence) {
        let seq = evidence.seq;
        let batch_digest = batch_digest(&evidence.batch);
        let digest = proposal_digest(evidence.view, seq, &batch_digest);
        let proposal = Proposal::new(
            self.config.protocol,
            evidence.view,
            seq,
            evidence.batch.clone(),
            batch_digest,
        );
        debug_assert_eq!(proposal.digest, digest);
        let slot = self.slots.entry(seq).or_default();
        slot.proposal = Some(proposal);
        slot.certificate = Some(evidence.certificate.clone());
        if self.config.protocol.speculative() {
            slot.committed = true;
            self.counters.tail_slots_executed += 1;
            self.execute_ready(now);
        } else {
            // PBFT: a prepared certificate is not a commit (it may be held by this sender
            // alone, and a view change may order another batch there): the slot executes only
            // on nf COMMITs of its view, as any other.
            self.try_commit_local(now, seq);
        }
    }
}
