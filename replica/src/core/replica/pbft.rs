//! PBFT's commit phase (PROTOCOL §7), the one part of the normal case where PBFT differs from
//! PoE on the shared core: a PBFT slot's certificate (nf signed PREPAREs, `Message::Support`)
//! makes it *prepared*, not executable. A prepared replica sends COMMIT(v, k, h) to all through
//! the safety rules; the slot is committed-local, and executes in order, once nf matching
//! COMMITs (its own included) are in. Nothing executes speculatively, so nothing is ever
//! rolled back. `docs/protocols.md` compares the three protocols.

use super::{Replica, SlotPosition};
use crate::core::durable::Write;
use crate::core::error::Rejection;
use crate::core::message::{Commit, Message, SlotEvidence};
use crate::core::types::{ReplicaId, Seq, Time};
#[cfg(feature = "planted-bugs")]
use crate::planted::PlantedBug;

impl Replica {
    /// PBFT: `seq` is prepared (its certificate holds nf matching signed PREPAREs). Sends this
    /// replica's COMMIT, through the safety rules (only for the digest it PREPAREd, never
    /// below its vote floor), then checks for a commit quorum.
    pub(super) fn prepared(&mut self, now: Time, seq: Seq) {
        let Some(slot) = self.slots.get(&seq) else { return };
        let Some(proposal) = &slot.proposal else { return };
        let (view, digest) = (proposal.view, proposal.digest);
        self.counters.slots_prepared += 1;
        if view == self.view && !self.is_passive() && !slot.commits.contains_key(&self.id) {
            match self.safety.commit(view, seq, digest) {
                Ok(commit) => {
                    self.counters.commits_sent += 1;
                    let slot = self.slots.get_mut(&seq).expect("looked up above");
                    slot.commits.insert(self.id, commit.clone());
                    let proposal = slot.proposal.as_ref().expect("looked up above");
                    let certificate = slot.certificate.clone().expect("prepared");
                    let evidence =
                        SlotEvidence { view, seq, batch: proposal.batch.clone(), certificate };
                    // Durable before the COMMIT leaves (same Ready): the certificate must be in
                    // this replica's VIEW-CHANGEs even after a crash.
                    self.outbox.writes.push(Write::Prepared(evidence.clone()));
                    self.changes.prepared.insert(seq, evidence);
                    self.broadcast(&Message::Commit(commit));
                }
                // Certified without this replica's PREPARE (a contested slot the view certified,
                // a slot from a state transfer): the others' COMMITs decide.
                Err(_) => self.counters.safety_refusals += 1,
            }
        }
        self.try_commit_local(now, seq);
    }

    /// PBFT: a COMMIT(v, k, h) from `from`.
    pub(super) fn handle_commit(
        &mut self,
        now: Time,
        from: ReplicaId,
        commit: Commit,
    ) -> Result<(), Rejection> {
        if self.config.protocol.speculative() {
            return Err(Rejection::WrongProtocol {
                message: "commit",
                protocol: self.config.protocol.name(),
            });
        }
        if commit.replica != from {
            return Err(Rejection::SupportSenderMismatch { from, claimed: commit.replica });
        }
        self.check_view("commit", commit.view)?;
        let seq = commit.seq;
        if self.check_log(seq)? == SlotPosition::Executed {
            self.counters.late(from);
            return Ok(());
        }
        let slot = self.slots.get(&seq);
        if let Some(existing) = slot.and_then(|slot| slot.commits.get(&from)) {
            return Err(if *existing == commit {
                Rejection::DuplicateVote { from, seq }
            } else {
                Rejection::ConflictingVote { from, seq }
            });
        }
        let digest_checked = self.vote_digest_checked();
        if let Some(proposal) = slot.and_then(|slot| slot.proposal.as_ref())
            && proposal.digest != commit.digest
            && digest_checked
        {
            return Err(Rejection::DigestMismatch {
                from,
                seq,
                expected: proposal.digest,
                actual: commit.digest,
            });
        }
        self.slots.entry(seq).or_default().commits.insert(from, commit);
        self.try_commit_local(now, seq);
        Ok(())
    }

    /// PBFT: `seq` is committed-local once it is prepared here and nf replicas (own included)
    /// sent matching COMMITs; then it executes in order.
    pub(super) fn try_commit_local(&mut self, now: Time, seq: Seq) {
        let nf = self.config.nf();
        #[cfg(feature = "planted-bugs")]
        let nf = if self.config.planted(PlantedBug::PbftCommitQuorumFPlus1) {
            self.config.f() + 1
        } else {
            nf
        };
        let Some(slot) = self.slots.get(&seq) else { return };
        let Some(proposal) = &slot.proposal else { return };
        if slot.committed || slot.certificate.is_none() {
            return;
        }
        let digest_checked = self.vote_digest_checked();
        let matching = slot
            .commits
            .values()
            .filter(|commit| commit.digest == proposal.digest || !digest_checked)
            .count();
        if matching >= nf {
            self.committed(now, seq);
        }
    }
}
