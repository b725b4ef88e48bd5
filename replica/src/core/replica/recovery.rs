//! A restart from the persisted state (PROTOCOL §6, DESIGN "durable store").
//!
//! The replica reinstalls its stable checkpoint's snapshot, re-executes its persisted blocks
//! above it (the same results and digests: execution is deterministic), and takes back its view,
//! its pending VC-REQUEST and its votes, so the support-once rule holds across the crash. Then
//! it reconciles its `ledger.jsonl` with what it recovered: the store is written before the
//! events, so the file can only lack the events of the last writes before the kill; the replica
//! records them now (executions, re-certifications, a rollback, or the state transfer of its
//! stored checkpoint).
//! Finally it asks every peer for state, to learn the current view and catch up.

use history::{CheckpointEvent, ExecuteEvent, ExecutedRequest, LedgerEvent};
use history::{RecertifiedEvent, RollbackEvent, ViewEvent};

use super::checkpoint::state_transfer_event;
use super::view_change::Mode;
use super::{Replica, signature_hex};
use crate::core::durable::{Durable, Recorded};
use crate::core::message::{batch_digest, proposal_digest};
use crate::core::state_machine::StateMachine;
use crate::core::types::{Digest, Seq, Time, View};

impl Replica {
    /// Replica `secrets.id` restarted from its persisted state at time `now`; `recorded` is
    /// what its `ledger.jsonl` holds.
    ///
    /// # Errors
    ///
    /// As [`Replica::new`].
    pub fn recover(
        config: crate::core::Config,
        secrets: crate::crypto::dealer::ReplicaSecrets,
        public: std::sync::Arc<crate::crypto::dealer::PublicKeys>,
        durable: Durable,
        recorded: &[LedgerEvent],
        now: Time,
    ) -> Result<Replica, crate::core::ConfigError> {
        let mut replica = Replica::new(config, secrets, public)?;
        replica.restore(durable, recorded, now);
        Ok(replica)
    }

    /// Restores this (freshly built) replica from `durable`, reconciling with the ledger events
    /// it had recorded, at time `now`.
    fn restore(&mut self, durable: Durable, recorded: &[LedgerEvent], now: Time) {
        let genesis = (self.ledger.genesis(), self.state.digest());
        let recorded = Recorded::from_events(recorded, genesis);
        let mut chain = std::collections::BTreeMap::from([(Seq(0), genesis)]);
        if let Some((certificate, snapshot)) = durable.checkpoint {
            self.state = StateMachine::from_snapshot(&snapshot);
            self.ledger.reset(certificate.seq, certificate.block_hash);
            chain = [(certificate.seq, (certificate.block_hash, certificate.state_digest))].into();
            self.checkpointing.stable = Some((certificate, snapshot));
        }
        let mut replayed = Vec::new();
        for block in durable.blocks.into_values() {
            if block.seq != self.last_executed().next() {
                break;
            }
            let seq = block.seq;
            let batch_digest = batch_digest(&block.batch);
            let digest = proposal_digest(block.view, seq, &batch_digest);
            let results = self.state.execute(
                seq,
                block.view,
                block.batch.iter().map(|request| &request.body),
            );
            let hash = self
                .ledger
                .append(
                    seq,
                    block.view,
                    digest,
                    batch_digest,
                    block.batch.clone(),
                    block.certificate,
                )
                .hash;
            if block.certificate_view != block.view {
                self.ledger.recertify(seq, block.certificate_view, self.ledger_certificate(seq));
                for request in block.batch.iter() {
                    let body = &request.body;
                    self.state.retag(body.client, body.request, seq, block.certificate_view);
                }
            }
            chain.insert(seq, (hash, self.state.digest()));
            let execute = ExecuteEvent {
                time: now.as_nanos(),
                replica: u32::from(self.id.0),
                view: block.view.0,
                seq: seq.0,
                batch_digest,
                block_hash: hash,
                requests: block
                    .batch
                    .iter()
                    .zip(results)
                    .map(|(request, result)| ExecutedRequest {
                        client: request.body.client.0,
                        request: request.body.request.0,
                        op: request.body.op.clone(),
                        result,
                        signature: signature_hex(&request.signature.0),
                    })
                    .collect(),
                state_digest: self.state.digest(),
            };
            replayed.push((execute, block.certificate_view));
        }
        self.view = durable.view;
        let view = self.view;
        let voted_max = durable
            .votes
            .keys()
            .filter(|(voted_view, _)| *voted_view == view)
            .map(|(_, seq)| *seq)
            .max()
            .unwrap_or(Seq(0));
        let stable = self.stable_seq();
        self.safety.restore(durable.votes.into_values());
        self.changes.prepared =
            durable.prepared.into_iter().filter(|(seq, _)| *seq > stable).collect();
        // As primary, never propose a slot of this view again with another batch.
        self.primary.next_seq = voted_max.max(self.last_executed()).next();
        self.safety.raise_floor(durable.vote_floor);
        if let Some(request) = durable.view_change {
            self.changes.mode =
                Mode::ViewChange { target: request.target, deadline: None, resend_at: now };
            self.safety.raise_floor(request.target);
            self.changes.vc_requests.insert(self.id, request);
        }
        self.reconcile(&recorded, &chain, replayed, now);
        if recorded.view < self.view {
            self.outbox.events.push_back(LedgerEvent::ViewEntered(ViewEvent {
                time: now.as_nanos(),
                replica: u32::from(self.id.0),
                view: self.view.0,
                backoff_ms: None,
                new_view: None,
            }));
        }
        self.request_state(now, None);
    }

    fn ledger_certificate(&self, seq: Seq) -> crate::core::ledger::Certificate {
        self.ledger.get(seq).expect("just appended").certificate.clone()
    }

    /// Records what `ledger.jsonl` misses of the recovered history `chain` (hash and digest per
    /// slot from the stable checkpoint on), given the `replayed` executions above it, each with
    /// the view of the certificate the store holds for it: an execution the file lacks, and a
    /// re-certification persisted before a kill cut its ledger event (the reply cache answers
    /// under the stored certificate's view, and `inform-certificates` looks for it).
    fn reconcile(
        &mut self,
        recorded: &Recorded,
        chain: &std::collections::BTreeMap<Seq, (Digest, Digest)>,
        replayed: Vec<(ExecuteEvent, View)>,
        now: Time,
    ) {
        let time = now.as_nanos();
        let replica = u32::from(self.id.0);
        let stable = self.stable_seq();
        let hash = |seq: Seq| chain.get(&seq).map(|entry| entry.0);
        let recorded_hash = |seq: Seq| recorded.chain.get(&seq).map(|entry| entry.0);
        let mut common = stable;
        if stable > Seq(0) && recorded_hash(stable) != hash(stable) {
            // The file lacks the checkpoint the store holds: record its snapshot as installed.
            let (certificate, snapshot) =
                self.checkpointing.stable.as_ref().expect("stable above 0");
            let event = state_transfer_event(self.id, now, certificate, snapshot);
            self.outbox.events.push_back(event);
        } else {
            let end = recorded.head().min(self.last_executed());
            while common < end && recorded_hash(common.next()) == hash(common.next()) {
                common = common.next();
            }
            if recorded.head() > common {
                self.outbox.events.push_back(LedgerEvent::Rollback(RollbackEvent {
                    time,
                    replica,
                    from_seq: recorded.head().0,
                    to_seq: common.0,
                    state_digest: chain.get(&common).map_or(self.state.digest(), |entry| entry.1),
                }));
            }
        }
        if recorded.stable < stable
            && let Some((certificate, _)) = &self.checkpointing.stable
        {
            self.outbox.events.push_back(LedgerEvent::Checkpoint(CheckpointEvent {
                time,
                replica,
                seq: stable.0,
                state_digest: certificate.state_digest,
                stable: true,
                certificate: Some(certificate.record()),
            }));
        }
        for (execute, certified) in replayed {
            let (seq, batch_digest) = (Seq(execute.seq), execute.batch_digest);
            let known = if seq > common {
                let view = View(execute.view);
                self.outbox.events.push_back(LedgerEvent::Execute(execute));
                view
            } else {
                recorded.certified.get(&seq).copied().unwrap_or(View(execute.view))
            };
            if known < certified {
                self.outbox.events.push_back(LedgerEvent::Recertified(RecertifiedEvent {
                    time,
                    replica,
                    seq: seq.0,
                    old_view: known.0,
                    new_view: certified.0,
                    batch_digest,
                }));
            }
        }
    }
}
