//! Failure detection and the PoE view change (PROTOCOL §§4–5).
//!
//! - **Progress timer**: armed while the replica expects progress (a request it forwarded, an
//!   accepted proposal, a certified slot above a hole, a carried slot); re-armed on every
//!   execution. When it expires over a hole the replica first asks for state once (it may just
//!   have fallen behind); otherwise it asks for a view change.
//! - **VC-REQUEST** (signed): the stable checkpoint and the highest-view evidence of every slot
//!   above it. A replica joins a view change when f + 1 others asked for higher views.
//! - **New-view timer**: once nf replicas asked for view v, v's primary has
//!   `new_view_timeout · 2^failed` to send NV-PROPOSE, or the replica moves on to v + 1.
//! - **Backoff**: `failed` counts the view changes in a row that ended without progress: a
//!   new-view timer that expired, or a view entered that was left before it executed anything
//!   new (PBFT's rule: no NEW-VIEW in time, *or the new view executes nothing*, doubles the
//!   timer). The progress timer is `progress_timeout · 2^failed` too, so a view change that
//!   takes longer than the timeouts (large VC-REQUESTs and NV-PROPOSEs, many carried slots to
//!   certify again, slow links or busy replicas) eventually gets the time it needs instead of
//!   failing forever. Executing a slot the new view ordered itself (above its k_max) resets
//!   it; certifying or executing the carried slots does not.
//! - **NV-PROPOSE**: nf VC-REQUESTs, fully validated by every receiver. The decision takes per
//!   slot the certificate with the highest view, truncates at the first gap (k_max), rolls back
//!   every execution from the first slot that differs (in reverse order, restoring the
//!   at-most-once table), and carries (k_s, k_max] into the new view, where the primary proposes
//!   them again: each is certified in the new view before any INFORM tagged with it is sent
//!   (§5.4), so a primary sending different NV-PROPOSEs to different replicas cannot make a
//!   client proof disappear.

use std::collections::{BTreeMap, BTreeSet, HashSet, VecDeque};
use std::sync::Arc;

use history::{
    DecisionRecord, LedgerEvent, NewViewRecord, RecertifiedEvent, RollbackEvent, ViewEvent,
};

use super::{Certificate, Replica};
use crate::core::durable::Write;
use crate::core::error::Rejection;
use crate::core::message::{
    CheckpointCertificate, Message, NewView, SignedRequest, SlotEvidence, StateTransfer,
    SupportProof, ViewChange, batch_digest, proposal_digest, support_signing_bytes,
};
use crate::core::types::{Digest, ReplicaId, Seq, Time, View};
use crate::crypto::hash::Hasher;
use crate::crypto::threshold::PreparedMessage;
#[cfg(feature = "planted-bugs")]
use crate::{core::state_machine::PlantedUndo, planted::PlantedBug};

/// The largest backoff exponent of the new-view timer.
const BACKOFF_MAX: u32 = 5;

/// The largest backoff exponent of the VC-REQUEST re-send interval.
const RESEND_BACKOFF_MAX: u32 = 2;

/// Normal operation, or a view change in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// Processing the normal case of `Replica::view`.
    Normal,
    /// Left `Replica::view`, waiting for NV-PROPOSE of `target`.
    ViewChange {
        /// The view asked for.
        target: View,
        /// The new-view timer, armed once nf replicas asked for `target`.
        deadline: Option<Time>,
        /// When to send the VC-REQUEST again (a peer may have missed it while down).
        resend_at: Time,
    },
}

impl Mode {
    pub(super) fn is_normal(&self) -> bool {
        matches!(self, Mode::Normal)
    }

    pub(super) fn target(&self) -> Option<View> {
        match self {
            Mode::Normal => None,
            Mode::ViewChange { target, .. } => Some(*target),
        }
    }

    /// The earliest of the view change's timers.
    pub(super) fn deadline(&self) -> Option<Time> {
        match self {
            Mode::Normal => None,
            Mode::ViewChange { deadline, resend_at, .. } => {
                Some(deadline.map_or(*resend_at, |deadline| deadline.min(*resend_at)))
            }
        }
    }
}

/// What a new view starts from: the highest stable checkpoint among the VC-REQUESTs and, for
/// every slot from there to k_max, the evidence with the highest view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    /// k_s's certificate (none: k_s = 0).
    pub(crate) checkpoint: Option<CheckpointCertificate>,
    /// (k_s, k_max], contiguous.
    pub(crate) slots: BTreeMap<Seq, SlotEvidence>,
}

impl Decision {
    pub(crate) fn base(&self) -> Seq {
        self.checkpoint.as_ref().map_or(Seq(0), |checkpoint| checkpoint.seq)
    }

    pub(crate) fn k_max(&self) -> Seq {
        self.slots.keys().next_back().copied().unwrap_or(self.base())
    }

    /// The ledger's record of the decision.
    pub(crate) fn record(&self) -> DecisionRecord {
        DecisionRecord {
            checkpoint: self.base().0,
            slots: self.slots.values().map(SlotEvidence::record).collect(),
        }
    }
}

/// The decision of PROTOCOL §5.3 steps 2–4 over validated VC-REQUESTs: never the first or an
/// arbitrary certificate for a slot, always one with the highest view (ties between valid
/// certificates of one view name the same batch). PoE truncates it at the first gap (k_max);
/// PBFT (`null_fill`) goes on to max-s, the highest slot any VIEW-CHANGE holds a prepared
/// certificate for, and fills each gap with a null request (PROTOCOL §7 view change step 3).
pub(crate) fn decide(requests: &[Arc<ViewChange>], null_fill: bool) -> Decision {
    let checkpoint = requests
        .iter()
        .filter_map(|request| request.checkpoint.as_ref())
        .max_by_key(|checkpoint| checkpoint.seq)
        .cloned();
    let base = checkpoint.as_ref().map_or(Seq(0), |checkpoint| checkpoint.seq);
    let mut best: BTreeMap<Seq, &SlotEvidence> = BTreeMap::new();
    for evidence in requests.iter().flat_map(|request| &request.evidence) {
        if evidence.seq <= base {
            continue;
        }
        let better = best.get(&evidence.seq).is_none_or(|held| evidence.view > held.view);
        if better {
            best.insert(evidence.seq, evidence);
        }
    }
    let mut slots = BTreeMap::new();
    if null_fill {
        let max_s = best.keys().next_back().copied().unwrap_or(base);
        // Bounded by the evidence's slots (at most evidence_slots_max above the base).
        let mut seq = base.next();
        while seq <= max_s {
            let evidence = best.get(&seq).map_or_else(|| SlotEvidence::null(seq), |e| (*e).clone());
            slots.insert(seq, evidence);
            seq = seq.next();
        }
        return Decision { checkpoint, slots };
    }
    let mut next = base.next();
    while let Some(evidence) = best.get(&next) {
        slots.insert(next, (*evidence).clone());
        next = next.next();
    }
    Decision { checkpoint, slots }
}

/// The planted `first-seen-wins` decision ([`crate::planted`]): like [`decide`], but each
/// slot's evidence is the first met in the VC-REQUESTs' order, whatever its view.
#[cfg(feature = "planted-bugs")]
fn decide_first_seen(requests: &[Arc<ViewChange>], null_fill: bool) -> Decision {
    let mut decision = decide(requests, null_fill);
    let base = decision.base();
    let mut first: BTreeMap<Seq, &SlotEvidence> = BTreeMap::new();
    for evidence in requests.iter().flat_map(|request| &request.evidence) {
        if evidence.seq > base {
            first.entry(evidence.seq).or_insert(evidence);
        }
    }
    for (seq, evidence) in &mut decision.slots {
        if let Some(seen) = first.get(seq) {
            *evidence = (*seen).clone();
        }
    }
    decision
}

/// The key under which [`Replica::verify_evidence`] remembers a batch whose client signatures
/// verified: the proposal digest and every signature's bytes (a cache key, never sent or
/// stored; domain-separated from every digest that is).
fn signed_batch_key(digest: &Digest, batch: &[SignedRequest]) -> Digest {
    let mut hasher = Hasher::new(b"ordeal/signed-batch-key/v1").digest(digest);
    for request in batch {
        hasher = hasher.bytes(&request.signature.0);
    }
    hasher.finish()
}

/// Facts about signatures this replica already checked, kept across messages: certificates
/// that verified ([`certificate_key`]), and [`signed_batch_key`]s whose client signatures
/// verified. A fact stays true for the whole run (the keys never change), so a view change
/// verifies each slot's certificate and batch once, not once per VC-REQUEST that carries it
/// and once more in the NV-PROPOSE: at n = 7 with a hundred slots of evidence that was about
/// a second of BLS and ed25519 work per replica, and the NV-PROPOSE came seconds late.
/// Bounded by [`VERIFIED_MAX`], the oldest fact forgotten first (then merely checked again).
#[derive(Debug, Default)]
pub(super) struct Verified {
    facts: HashSet<Digest>,
    order: VecDeque<Digest>,
}

/// Facts [`Verified`] keeps: several view changes' evidence (two digests per slot).
const VERIFIED_MAX: usize = 8192;

impl Verified {
    fn contains(&self, fact: &Digest) -> bool {
        self.facts.contains(fact)
    }

    fn insert(&mut self, fact: Digest) {
        if !self.facts.insert(fact) {
            return;
        }
        self.order.push_back(fact);
        while self.order.len() > VERIFIED_MAX {
            if let Some(oldest) = self.order.pop_front() {
                self.facts.remove(&oldest);
            }
        }
        debug_assert_eq!(self.facts.len(), self.order.len());
    }
}

/// The key under which [`Verified`] remembers that `certificate` proves proposal `digest`:
/// the digest and the certificate's own bytes, so that a forged certificate for a digest
/// another certificate proved is still checked (and refused), as an honest replica must
/// never relay or record evidence it could not verify. A cache key, never sent or stored.
fn certificate_key(digest: &Digest, certificate: &Certificate) -> Digest {
    let hasher = Hasher::new(b"ordeal/certificate-key/v1").digest(digest);
    match certificate {
        Certificate::Threshold(signature) => hasher.bytes(b"threshold").bytes(&signature.0),
        Certificate::Supports(supports) => {
            supports.iter().fold(hasher.bytes(b"supports"), |hasher, support| {
                let proof: &[u8] = match &support.proof {
                    SupportProof::Share(share) => &share.0,
                    SupportProof::Signature(signature) => &signature.0,
                };
                hasher
                    .digest(&support.digest)
                    .bytes(&support.view.0.to_le_bytes())
                    .bytes(&support.seq.0.to_le_bytes())
                    .bytes(&[support.replica.0])
                    .bytes(proof)
            })
        }
    }
    .finish()
}

impl Replica {
    // ----------------------------------------------------------------------------------------
    // The progress timer.

    /// Arms the progress timer unless it is armed.
    pub(super) fn expect_progress(&mut self, now: Time) {
        if self.changes.mode.is_normal() && self.progress.progress_deadline.is_none() {
            self.progress.progress_deadline = Some(now + self.progress_timeout());
        }
    }

    /// Execution advanced: re-arm the progress timer if more is expected, else disarm it. Once
    /// the view executed a slot it ordered itself (above its k_max) it works, and the backoff
    /// ends.
    pub(super) fn executed(&mut self, now: Time) {
        if self.changes.unproven_view.is_none_or(|k_max| self.last_executed() > k_max) {
            self.changes.failed_view_changes = 0;
            self.changes.unproven_view = None;
        }
        self.progress_made(now);
    }

    /// Something expected arrived (an execution, or a carried slot this replica had executed
    /// certified again): re-arm the progress timer if more is expected, else disarm it. The
    /// backoff goes on until the view orders something new (`executed`): a view that only
    /// certifies (or, at a replica that lagged, executes) the slots it carried over has not
    /// shown that it works (PBFT: the timer doubles until the new view executes a new request).
    pub(super) fn progress_made(&mut self, now: Time) {
        self.progress.hole_state_requested = false;
        let awaiting = self.awaiting_progress();
        self.progress.progress_deadline =
            (awaiting && self.changes.mode.is_normal()).then(|| now + self.progress_timeout());
    }

    /// Whether this replica waits for something the primary owes it: a forwarded request not
    /// executed, an accepted proposal or a certificate not executed, a carried slot it has not
    /// executed. Votes alone do not count (anyone can send them). Nor does a carried slot this
    /// replica executed and kept: its certificate in the new view only re-tags the replies, and
    /// a replica that entered the view late (from a state transfer, after a restart) never gets
    /// it, since the others re-certified the slot before it arrived; accusing the primary over
    /// it would start a view change nobody joins.
    fn awaiting_progress(&mut self) -> bool {
        let last_executed = self.last_executed();
        let carried_pending =
            self.changes.carried.keys().next_back().is_some_and(|seq| *seq > last_executed);
        let state = &self.state;
        self.progress.forwarded.retain(|(client, request), _| {
            state.client_entry(*client).is_none_or(|entry| entry.request < *request)
        });
        let open = self.slots.values().any(|slot| {
            slot.proposal.is_some() || slot.certify.is_some() || slot.certificate.is_some()
        });
        open || carried_pending || !self.progress.forwarded.is_empty() || self.missed_proposal()
    }

    /// Whether this replica missed a proposal the others have: for a slot above its last
    /// executed one it holds no PROPOSE but a CERTIFY, or votes from f + 1 replicas (at least
    /// one correct replica accepted a proposal there). A replica that missed the last PROPOSE
    /// before the clients went quiet would otherwise never learn that it is behind.
    fn missed_proposal(&self) -> bool {
        let f = self.config.f();
        let last_executed = self.last_executed();
        self.slots.range(last_executed.next()..).any(|(_, slot)| {
            slot.proposal.is_none() && (slot.certify.is_some() || slot.votes.len() > f)
        })
    }

    /// The view-change timers: progress, new view, and re-sending the VC-REQUEST.
    pub(super) fn view_change_timers(&mut self, now: Time) {
        if self.progress.progress_deadline.is_some_and(|deadline| now >= deadline) {
            self.progress.progress_deadline = None;
            if self.awaiting_progress() {
                self.progress_overdue(now);
            }
        }
        if let Mode::ViewChange { target, deadline, resend_at } = self.changes.mode {
            if deadline.is_some_and(|deadline| now >= deadline) {
                self.changes.failed_view_changes =
                    self.changes.failed_view_changes.saturating_add(1);
                self.start_view_change(now, target.next());
            } else if now >= resend_at {
                if let Some(own) = self.changes.vc_requests.get(&self.id).cloned() {
                    self.broadcast(&Message::ViewChange(own));
                }
                let resend_at = now + self.view_change_resend_interval();
                self.changes.mode = Mode::ViewChange { target, deadline, resend_at };
            }
        }
    }

    fn progress_overdue(&mut self, now: Time) {
        let next = self.last_executed().next();
        let next_committed = self.slots.get(&next).is_some_and(|slot| slot.committed);
        let hole =
            !next_committed && self.slots.range(next.next()..).any(|(_, slot)| slot.committed);
        // The view carried the next slot over and it is still not certified here: either the
        // primary does not propose it again, or this replica entered the view late (from a
        // state transfer, or after a rollback) when the others had long re-certified it, and
        // nobody will propose it again.
        let carried_missing = !next_committed && self.changes.carried.contains_key(&next);
        if (hole || carried_missing || self.missed_proposal())
            && !self.progress.hole_state_requested
        {
            // Later slots are certified and this one is not, a carried slot never came, or the
            // others voted on a proposal this replica never got: either the primary withholds
            // it, or this replica missed it. Ask the others once before accusing the primary.
            self.progress.hole_state_requested = true;
            self.checkpointing.last_state_request = None;
            self.request_state(now, None);
            self.progress.progress_deadline = Some(now + self.progress_timeout());
            return;
        }
        self.start_view_change(now, self.view.next());
    }

    /// The new-view timeout after `failed_view_changes` failures in a row.
    fn new_view_timeout(&self) -> std::time::Duration {
        self.config.new_view_timeout * (1u32 << self.changes.failed_view_changes.min(BACKOFF_MAX))
    }

    /// How often a replica in a view change re-sends its VC-REQUEST: the new-view timeout, but
    /// backed off at most [`RESEND_BACKOFF_MAX`] times. The backoff makes a replica wait longer
    /// for a new primary once nf replicas asked for it; re-sending is what lets a quorum form
    /// again after a partition heals (the relay drops what it cuts), so it must not wait as
    /// long (32 s at the full backoff), while still sparing a slow link big VC-REQUESTs.
    fn view_change_resend_interval(&self) -> std::time::Duration {
        self.config.new_view_timeout
            * (1u32 << self.changes.failed_view_changes.min(RESEND_BACKOFF_MAX))
    }

    /// The progress timeout after `failed_view_changes` failures in a row: the base timeout in
    /// a view that executes, doubled for each view change in a row that ended without progress.
    fn progress_timeout(&self) -> std::time::Duration {
        self.config.progress_timeout * (1u32 << self.changes.failed_view_changes.min(BACKOFF_MAX))
    }

    // ----------------------------------------------------------------------------------------
    // VC-REQUEST.

    /// Leaves the current view for `target` (unless already asking for it or a later one):
    /// stops the normal case and broadcasts a signed VC-REQUEST, persisted first.
    /// Never for a view below the vote floor: it asks for the floor's view again instead, with
    /// the VC-REQUEST it signed for it when it still holds it.
    pub(super) fn start_view_change(&mut self, now: Time, target: View) {
        let target = target.max(self.safety.floor());
        if target <= self.view || self.changes.mode.target().is_some_and(|asked| asked >= target) {
            return;
        }
        if self.changes.mode.is_normal() && self.changes.unproven_view.take().is_some() {
            // Leaving a view that a view change started and that executed nothing new: that
            // view change failed too, so the next one waits longer (PBFT: the timer doubles
            // when the new view executes nothing).
            self.changes.failed_view_changes = self.changes.failed_view_changes.saturating_add(1);
        }
        let held =
            self.changes.vc_requests.get(&self.id).filter(|own| own.target == target).cloned();
        if let Some(own) = held {
            // Signed already (the replica was passive below it): the same request again.
            let resend_at = now + self.view_change_resend_interval();
            self.changes.mode = Mode::ViewChange { target, deadline: None, resend_at };
            self.progress.progress_deadline = None;
            self.broadcast(&Message::ViewChange(own));
            self.view_change_quorum(now);
            return;
        }
        let checkpoint =
            self.checkpointing.stable.as_ref().map(|(certificate, _)| certificate.clone());
        let evidence = self.collect_evidence();
        let bytes = ViewChange::signing_bytes(target, self.id, checkpoint.as_ref(), &evidence);
        let signature = match self.safety.sign_view_change(target, &bytes) {
            Ok(signature) => signature,
            Err(refusal) => {
                // Not reached (a target at or below the floor returned above or re-sent the
                // request signed for it); the refusal is counted all the same.
                self.counters.safety_refusals += 1;
                self.counters.reject_deferred(Rejection::Refused(refusal));
                return;
            }
        };
        let request =
            Arc::new(ViewChange { target, replica: self.id, checkpoint, evidence, signature });
        self.counters.view_changes_started += 1;
        let resend_at = now + self.view_change_resend_interval();
        self.changes.mode = Mode::ViewChange { target, deadline: None, resend_at };
        self.progress.progress_deadline = None;
        self.outbox.writes.push(Write::ViewChange(request.clone()));
        self.changes.vc_requests.insert(self.id, request.clone());
        self.broadcast(&Message::ViewChange(request));
        self.view_change_quorum(now);
    }

    /// The evidence of every slot above the stable checkpoint this replica view-committed: the
    /// executed blocks and committed slots, or the carried evidence when its view is higher.
    fn collect_evidence(&self) -> Vec<SlotEvidence> {
        let stable = self.stable_seq();
        let limit = self.config.evidence_slots_max() as usize;
        let mut evidence: BTreeMap<Seq, SlotEvidence> = BTreeMap::new();
        for block in self.ledger.blocks().filter(|block| block.seq > stable) {
            evidence.insert(
                block.seq,
                SlotEvidence {
                    view: block.view,
                    seq: block.seq,
                    batch: block.batch.clone(),
                    certificate: block.certificate.clone(),
                },
            );
        }
        // A slot at or below the stable checkpoint can linger (certified in a later view after
        // this replica executed it); the evidence starts above the checkpoint, or every
        // receiver refuses the request as out of order and no view change ever completes.
        for (seq, slot) in self.slots.iter().filter(|(seq, _)| **seq > stable) {
            if let (Some(proposal), Some(certificate)) = (&slot.proposal, &slot.certificate) {
                evidence.entry(*seq).or_insert_with(|| SlotEvidence {
                    view: proposal.view,
                    seq: *seq,
                    batch: proposal.batch.clone(),
                    certificate: certificate.clone(),
                });
            }
        }
        // PBFT: every prepared certificate this replica COMMITted on (Castro–Liskov's P).
        for (seq, prepared) in &self.changes.prepared {
            let higher = evidence.get(seq).is_none_or(|held| prepared.view > held.view);
            if higher && *seq > stable {
                evidence.insert(*seq, prepared.clone());
            }
        }
        // A null request carries no certificate: the next view decides it again if it is
        // still a gap.
        for (seq, carried) in self.changes.carried.iter().filter(|(_, carried)| !carried.is_null())
        {
            let higher = evidence.get(seq).is_none_or(|held| carried.view > held.view);
            if higher && *seq > stable {
                evidence.insert(*seq, carried.clone());
            }
        }
        evidence.into_values().take(limit).collect()
    }

    pub(super) fn handle_view_change(
        &mut self,
        now: Time,
        from: ReplicaId,
        request: Arc<ViewChange>,
    ) -> Result<(), Rejection> {
        if request.replica != from {
            return Err(Rejection::SenderMismatch {
                message: "view-change",
                from,
                claimed: request.replica,
            });
        }
        if request.target <= self.view {
            self.resend_new_view(now, from);
            return Err(Rejection::StaleView {
                message: "view-change",
                view: request.target,
                current: self.view,
            });
        }
        if let Some(held) = self.changes.vc_requests.get(&from)
            && held.target >= request.target
        {
            // A re-sent request, or an older one overtaken: nothing new.
            return Err(Rejection::DuplicateViewChange {
                from,
                target: request.target,
                held: held.target,
            });
        }
        let mut verified = std::mem::take(&mut self.changes.verified);
        let valid = self.validate_view_change(&request, &mut verified);
        self.changes.verified = verified;
        valid?;
        self.changes.vc_requests.insert(from, request);
        self.join_view_change(now);
        self.view_change_quorum(now);
        Ok(())
    }

    /// Sends replica `to`, which asks for a view this replica has entered, the NV-PROPOSE that
    /// started the current view, in a state transfer (whose NV-PROPOSE is validated by its
    /// content, whoever sends it). Without it a replica that missed the NV-PROPOSE (a partition
    /// dropped it) would wait for it forever: the others are in the view and no longer send
    /// VC-REQUESTs for it, so it never sees nf of them and never starts its new-view timer. At
    /// most once per [`Config::state_request_interval`] per replica, as state transfers are.
    ///
    /// [`Config::state_request_interval`]: crate::core::Config::state_request_interval
    fn resend_new_view(&mut self, now: Time, to: ReplicaId) {
        let Some(new_view) = self.changes.new_view.clone().filter(|nv| nv.view == self.view) else {
            return;
        };
        let interval = self.config.state_request_interval;
        let served = &mut self.checkpointing.state_requests_served;
        if served.get(&to).is_some_and(|at| now < *at + interval) {
            return;
        }
        served.insert(to, now);
        self.counters.new_views_resent += 1;
        let head = self.last_executed();
        let transfer =
            StateTransfer { checkpoint: None, new_view: Some(new_view), tail: Vec::new(), head };
        self.send(to, &Message::StateTransfer(Arc::new(transfer)));
    }

    /// Joins a view change once f + 1 other replicas asked for views above the one this replica
    /// is in or asking for: at least one of them is correct (PROTOCOL §4).
    fn join_view_change(&mut self, now: Time) {
        let floor = self.changes.mode.target().unwrap_or(self.view);
        let mut targets: Vec<View> = self
            .changes
            .vc_requests
            .iter()
            .filter(|(replica, request)| **replica != self.id && request.target > floor)
            .map(|(_, request)| request.target)
            .collect();
        let f = self.config.f();
        if targets.len() > f {
            targets.sort_unstable_by(|a, b| b.cmp(a));
            // The smallest view among the f + 1 highest.
            self.start_view_change(now, targets[f]);
        }
    }

    /// With nf VC-REQUESTs for the view this replica asks for: as its primary, sends
    /// NV-PROPOSE and enters it; otherwise arms the new-view timer.
    fn view_change_quorum(&mut self, now: Time) {
        let Mode::ViewChange { target, deadline, resend_at } = self.changes.mode else { return };
        let nf = self.config.nf();
        let mut requests: Vec<Arc<ViewChange>> = Vec::with_capacity(nf);
        if let Some(own) = self.changes.vc_requests.get(&self.id).filter(|own| own.target == target)
        {
            requests.push(own.clone());
        }
        requests.extend(
            self.changes
                .vc_requests
                .iter()
                .filter(|(replica, request)| **replica != self.id && request.target == target)
                .map(|(_, request)| request.clone())
                .take(nf.saturating_sub(requests.len())),
        );
        if requests.len() < nf {
            return;
        }
        if self.config.primary(target) == self.id {
            let new_view = Arc::new(NewView { view: target, requests });
            self.broadcast(&Message::NewView(new_view.clone()));
            self.install_new_view(now, new_view);
        } else if deadline.is_none() {
            let deadline = Some(now + self.new_view_timeout());
            self.changes.mode = Mode::ViewChange { target, deadline, resend_at };
        }
    }

    // ----------------------------------------------------------------------------------------
    // Validation.

    /// Checks a VC-REQUEST: signature, checkpoint certificate, and every slot's evidence
    /// (ascending above the checkpoint, from views below the target, with a valid certificate).
    /// `verified` remembers proposal digests whose certificates were already checked.
    pub(super) fn validate_view_change(
        &self,
        request: &ViewChange,
        verified: &mut Verified,
    ) -> Result<(), Rejection> {
        let invalid = |reason: String| Rejection::InvalidViewChange {
            replica: request.replica,
            target: request.target,
            reason,
        };
        if request.replica.0 >= self.config.replica_count {
            return Err(invalid("unknown replica".into()));
        }
        let bytes = ViewChange::signing_bytes(
            request.target,
            request.replica,
            request.checkpoint.as_ref(),
            &request.evidence,
        );
        self.public.replicas[request.replica.index()]
            .verify(&bytes, &request.signature)
            .map_err(|_| invalid("invalid signature".into()))?;
        let base = match &request.checkpoint {
            Some(checkpoint) => {
                self.verify_checkpoint_certificate(checkpoint)
                    .map_err(|rejection| invalid(rejection.to_string()))?;
                checkpoint.seq
            }
            None => Seq(0),
        };
        if request.evidence.len() as u64 > self.config.evidence_slots_max() {
            return Err(invalid(format!("{} slots of evidence", request.evidence.len())));
        }
        let mut previous = base;
        for evidence in &request.evidence {
            if evidence.seq <= previous {
                return Err(invalid(format!("evidence for seq {} out of order", evidence.seq)));
            }
            if evidence.view >= request.target {
                return Err(invalid(format!(
                    "evidence for seq {} from view {}",
                    evidence.seq, evidence.view
                )));
            }
            previous = evidence.seq;
            self.verify_evidence(evidence, verified)
                .map_err(|reason| invalid(format!("seq {}: {reason}", evidence.seq)))?;
        }
        Ok(())
    }

    /// Checks that `evidence` proves its batch view-committed at (view, seq), and that every
    /// request in the batch carries its client's valid signature. The certificate covers the
    /// batch digest, which covers the request bodies but not the signature bytes, so without
    /// the second check a replica relaying evidence could swap the signatures and have honest
    /// replicas record requests their clients never signed in those bytes. `verified`
    /// remembers what was checked, across messages: certificates by [`certificate_key`],
    /// signed batches by [`signed_batch_key`].
    pub(super) fn verify_evidence(
        &self,
        evidence: &SlotEvidence,
        verified: &mut Verified,
    ) -> Result<(), &'static str> {
        let size = evidence.batch.len();
        // PBFT: a null request that a view re-prepared has an empty batch and a real
        // certificate; PoE never proposes an empty batch.
        let empty_allowed = !self.config.protocol.speculative();
        if (size == 0 && !empty_allowed) || size > self.config.batch_size_max as usize {
            return Err("batch size out of range");
        }
        let digest = proposal_digest(evidence.view, evidence.seq, &batch_digest(&evidence.batch));
        let proven = certificate_key(&digest, &evidence.certificate);
        if !verified.contains(&proven) {
            self.verify_certificate(evidence.view, evidence.seq, &digest, &evidence.certificate)?;
            verified.insert(proven);
        }
        let signed = signed_batch_key(&digest, &evidence.batch);
        if verified.contains(&signed) {
            return Ok(());
        }
        let count = self.config.client_count;
        if evidence.batch.iter().any(|request| request.body.client.0 >= count) {
            return Err("a request of an unknown client");
        }
        if !self.verify_signatures(&evidence.batch).is_empty() {
            return Err("a client signature does not verify");
        }
        verified.insert(signed);
        Ok(())
    }

    /// Checks a certificate for proposal digest `digest` at (view, seq): the group signature
    /// (PoE-TS), or nf signed SUPPORTs for exactly that proposal from distinct replicas (PoE-MAC).
    pub(super) fn verify_certificate(
        &self,
        view: View,
        seq: Seq,
        digest: &Digest,
        certificate: &Certificate,
    ) -> Result<(), &'static str> {
        let bytes = support_signing_bytes(digest);
        match certificate {
            Certificate::Threshold(signature) => {
                if self.config.protocol.signed_votes() {
                    return Err("threshold certificate where votes are signed");
                }
                self.public
                    .threshold
                    .verify(&PreparedMessage::new(&bytes), signature)
                    .map_err(|_| "invalid threshold certificate")
            }
            Certificate::Supports(supports) => {
                if !self.config.protocol.signed_votes() {
                    return Err("support certificate in PoE-TS");
                }
                let mut signers = BTreeSet::new();
                for support in supports {
                    if (support.view, support.seq, support.digest) != (view, seq, *digest) {
                        return Err("a support for another proposal");
                    }
                    if support.replica.0 >= self.config.replica_count {
                        return Err("a support from an unknown replica");
                    }
                    let SupportProof::Signature(signature) = &support.proof else {
                        return Err("an unsigned support");
                    };
                    self.public.replicas[support.replica.index()]
                        .verify(&bytes, signature)
                        .map_err(|_| "an invalid support signature")?;
                    signers.insert(support.replica);
                }
                if signers.len() < self.config.nf() {
                    return Err("fewer than nf distinct supports");
                }
                Ok(())
            }
        }
    }

    /// Checks an NV-PROPOSE's contents: nf to n VC-REQUESTs for its view from distinct
    /// replicas, each valid. (Who sent it is the caller's concern: the primary of the view, or a
    /// replica forwarding the NV-PROPOSE that started its view.)
    pub(super) fn validate_new_view(&mut self, new_view: &NewView) -> Result<(), Rejection> {
        let mut verified = std::mem::take(&mut self.changes.verified);
        let valid = self.validate_new_view_with(new_view, &mut verified);
        self.changes.verified = verified;
        valid
    }

    fn validate_new_view_with(
        &self,
        new_view: &NewView,
        verified: &mut Verified,
    ) -> Result<(), Rejection> {
        let invalid = |reason: String| Rejection::InvalidNewView { view: new_view.view, reason };
        let count = new_view.requests.len();
        if count < self.config.nf() || count > usize::from(self.config.replica_count) {
            return Err(invalid(format!("{count} view-change requests")));
        }
        let mut replicas = BTreeSet::new();
        for request in &new_view.requests {
            if request.target != new_view.view {
                return Err(invalid(format!("a request for view {}", request.target)));
            }
            if !replicas.insert(request.replica) {
                return Err(invalid(format!("two requests from replica {}", request.replica)));
            }
            #[cfg(feature = "planted-bugs")]
            if self.config.planted(PlantedBug::NewViewUnvalidated) {
                // Planted: the primary's MAC vouches for the contents; nothing inside is checked.
                continue;
            }
            self.validate_view_change(request, verified)
                .map_err(|rejection| invalid(rejection.to_string()))?;
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Messages of the next view.

    /// Keeps a normal-case message of view `view` that arrived before this replica entered it,
    /// if `view` is the view it asks for (or, in normal operation, the next one) and the
    /// sender's share of the buffer has room. Returns whether it was kept.
    ///
    /// Without this, a replica whose NV-PROPOSE is slower than the first PROPOSE, SUPPORT or
    /// CERTIFY of the new view would drop them, and nobody sends them again: a carried slot
    /// could then never gather nf supports here, and the view would fail for nothing.
    pub(super) fn hold_early(&mut self, from: ReplicaId, view: View, message: &Message) -> bool {
        let next = self.changes.mode.target().unwrap_or(self.view.next());
        if view != next {
            return false;
        }
        // A sender's normal-case messages of one view before it could matter: the carried
        // slots and a window of new ones (bounded per sender, so a faulty one fills only its
        // own share).
        let limit = (self.config.evidence_slots_max() + self.config.window) as usize;
        let held = self.changes.early.entry(from).or_default();
        held.retain(|(held_view, _)| *held_view == next);
        if held.len() >= limit {
            return false;
        }
        held.push((view, message.clone()));
        debug_assert!(held.len() <= limit);
        true
    }

    /// Handles the held messages of the view just entered and forgets the others.
    fn replay_early(&mut self, now: Time) {
        let early = std::mem::take(&mut self.changes.early);
        let view = self.view;
        for (from, messages) in early {
            for (held_view, message) in messages {
                if held_view != view || !self.changes.mode.is_normal() {
                    continue;
                }
                if let Err(rejection) = self.dispatch_opened(now, from, message) {
                    self.counters.reject_deferred(rejection);
                }
            }
        }
        debug_assert!(self.changes.early.values().all(|held| held.iter().all(|(v, _)| *v > view)));
    }

    // ----------------------------------------------------------------------------------------
    // NV-PROPOSE.

    pub(super) fn handle_new_view(
        &mut self,
        now: Time,
        from: ReplicaId,
        new_view: Arc<NewView>,
    ) -> Result<(), Rejection> {
        let view = new_view.view;
        let primary = self.config.primary(view);
        if from != primary {
            return Err(Rejection::NotFromPrimary { message: "new-view", from, primary, view });
        }
        if view <= self.view {
            let current = self.changes.mode.target().unwrap_or(self.view);
            return Err(Rejection::StaleView { message: "new-view", view, current });
        }
        // A view below the one this replica asked for is entered too: the others moved on
        // there. The replica is passive in it (`vote_floor`).
        self.validate_new_view(&new_view)?;
        self.install_new_view(now, new_view);
        Ok(())
    }

    /// Enters the view of a validated NV-PROPOSE (PROTOCOL §5.3 steps 2–7): decide, roll back
    /// what differs, carry (k_s, k_max] over to be certified again, and (as primary) propose
    /// them again from the decided batches.
    pub(super) fn install_new_view(&mut self, now: Time, new_view: Arc<NewView>) {
        let null_fill = !self.config.protocol.speculative();
        let decision = decide(&new_view.requests, null_fill);
        #[cfg(feature = "planted-bugs")]
        let decision = if self.config.planted(PlantedBug::FirstSeenWins) {
            decide_first_seen(&new_view.requests, null_fill)
        } else {
            decision
        };
        let k_max = decision.k_max();
        // Every normal-case state of older views is void; clients retransmit what was queued.
        self.slots.clear();
        self.primary.share_suspects.clear();
        self.primary.queue.clear();
        self.primary.pending.clear();
        self.primary.pending_per_client.clear();
        self.progress.forwarded.clear();
        self.changes.carried.clear();
        self.changes.contested.clear();
        self.view = new_view.view;
        self.changes.mode = Mode::Normal;
        self.changes.new_view = Some(new_view.clone());
        let view = self.view;
        self.changes.vc_requests.retain(|_, request| request.target > view);
        self.progress.progress_deadline = None;
        self.progress.hole_state_requested = false;
        self.changes.unproven_view = Some(k_max);
        self.counters.views_entered += 1;
        self.outbox.writes.push(Write::View(view));
        self.outbox.events.push_back(LedgerEvent::ViewEntered(ViewEvent {
            time: now.as_nanos(),
            replica: u32::from(self.id.0),
            view: view.0,
            backoff_ms: Some(self.new_view_timeout().as_millis() as u64),
            new_view: Some(NewViewRecord {
                requests: new_view.requests.iter().map(|request| request.record()).collect(),
                decision: decision.record(),
            }),
        }));
        if !self.adopt_base(now, &decision) {
            // Behind the decided checkpoint: the snapshot comes first. Ask a replica that
            // reported it.
            let base = decision.base();
            let holder = new_view
                .requests
                .iter()
                .filter(|request| request.replica != self.id)
                .find(|request| request.checkpoint.as_ref().is_some_and(|c| c.seq == base))
                .map(|request| request.replica);
            self.checkpointing.last_state_request = None;
            self.request_state(now, holder);
        }
        let stable = self.stable_seq();
        self.changes.carried =
            decision.slots.into_iter().filter(|(seq, _)| *seq > stable).collect::<BTreeMap<_, _>>();
        #[cfg(feature = "planted-bugs")]
        if self.config.planted(PlantedBug::InformBeforeRecertify) {
            self.planted_inform_carried();
        }
        if !self.changes.carried.is_empty() {
            self.expect_progress(now);
        }
        if self.is_primary() {
            self.primary.next_seq = k_max.max(self.last_executed()).max(stable).next();
            let carried: Vec<(Seq, Arc<[SignedRequest]>)> = self
                .changes
                .carried
                .iter()
                .map(|(seq, evidence)| (*seq, evidence.batch.clone()))
                .collect();
            for (seq, batch) in carried {
                self.propose_at(now, seq, batch);
            }
        }
        self.replay_early(now);
    }

    /// Rolls this replica's executions back to where they first differ from the decision.
    /// Returns false when the replica is behind the decided checkpoint (or diverged below it)
    /// and needs its snapshot first.
    fn adopt_base(&mut self, now: Time, decision: &Decision) -> bool {
        let base = decision.base();
        if let Some(checkpoint) = &decision.checkpoint
            && checkpoint.seq > self.stable_seq()
        {
            match self.ledger.hash_at(checkpoint.seq) {
                Some(hash) if hash == checkpoint.block_hash => {}
                Some(_) => {
                    // Diverged below a checkpoint nf replicas agreed on: undo everything that
                    // can be undone, and take the snapshot.
                    let stable = self.stable_seq();
                    self.roll_back_to(now, stable);
                    return false;
                }
                None => return false,
            }
        }
        let executed = self.last_executed();
        let upto = executed.min(decision.k_max());
        let from = base.max(self.stable_seq()).next();
        let mut first_difference = upto.next();
        let mut seq = from;
        // Bounded by the decided slots (at most evidence_slots_max of them).
        while seq <= upto {
            let decided = decision.slots.get(&seq).map(|evidence| batch_digest(&evidence.batch));
            let held = self.ledger.get(seq).map(|block| block.batch_digest);
            if decided.is_none() || decided != held {
                first_difference = seq;
                break;
            }
            seq = seq.next();
        }
        if executed >= first_difference {
            self.roll_back_to(now, first_difference.prev());
        }
        true
    }

    /// Undoes every execution above `target`, the highest first, restoring the store, the
    /// at-most-once table and the digest (never below the stable checkpoint).
    pub(super) fn roll_back_to(&mut self, now: Time, target: Seq) {
        let from = self.last_executed();
        let target = target.max(self.state.undo_floor());
        if from <= target {
            return;
        }
        #[cfg(feature = "planted-bugs")]
        if self.config.planted(PlantedBug::RollbackOnlyLogs) {
            // Planted: the rollback is recorded, and nothing is undone.
            self.record_rollback(now, from, target);
            return;
        }
        #[cfg(feature = "planted-bugs")]
        let undone = if self.config.planted(PlantedBug::DedupNotRestored) {
            self.state.planted_undo_to(target, PlantedUndo::KeepClients)
        } else if self.config.planted(PlantedBug::UndoForwardOrder) {
            self.state.planted_undo_to(target, PlantedUndo::ForwardOrder)
        } else {
            self.state.undo_to(target)
        };
        #[cfg(not(feature = "planted-bugs"))]
        let undone = self.state.undo_to(target);
        undone.expect("the undo log reaches back to its floor");
        self.ledger.truncate_after(target);
        self.outbox.writes.push(Write::Truncate(target));
        for (_, pending) in self.checkpointing.checkpoints.range_mut(target.next()..) {
            pending.forget_own();
        }
        self.record_rollback(now, from, target);
    }

    /// Counts a rollback from `from` down to `target` and records its ledger event, with the
    /// state digest the replica holds after it.
    fn record_rollback(&mut self, now: Time, from: Seq, target: Seq) {
        self.counters.rollbacks += 1;
        self.counters.slots_rolled_back += from.0 - target.0;
        self.outbox.events.push_back(LedgerEvent::Rollback(RollbackEvent {
            time: now.as_nanos(),
            replica: u32::from(self.id.0),
            from_seq: from.0,
            to_seq: target.0,
            state_digest: self.state.digest(),
        }));
    }

    /// The planted `inform-before-recertify` ([`crate::planted`]): the clients of every carried
    /// slot this replica executed and kept hear of it, tagged with the new view, now, before
    /// the slot is certified in that view.
    #[cfg(feature = "planted-bugs")]
    fn planted_inform_carried(&mut self) {
        let view = self.view;
        let kept: Vec<Seq> = self
            .changes
            .carried
            .keys()
            .copied()
            .filter(|seq| {
                self.ledger.get(*seq).is_some_and(|block| {
                    block.batch_digest == batch_digest(&self.changes.carried[seq].batch)
                })
            })
            .collect();
        for seq in kept {
            let batch = self.changes.carried[&seq].batch.clone();
            for request in batch.iter() {
                let body = &request.body;
                if let Some(result) = self.state.retag(body.client, body.request, seq, view) {
                    self.counters.informs_sent += 1;
                    self.send_inform(view, seq, body.client, body.request, result);
                }
            }
        }
    }

    /// A carried slot this replica had executed (and kept) is certified in the current view:
    /// the new certificate becomes its evidence, and its clients get INFORMs tagged with the
    /// view (§3.3), the reply cache too.
    pub(super) fn recertified(&mut self, now: Time, seq: Seq) {
        let Some(slot) = self.slots.remove(&seq) else { return };
        let (Some(proposal), Some(certificate)) = (slot.proposal, slot.certificate) else {
            return;
        };
        self.changes.carried.remove(&seq);
        self.counters.slots_recertified += 1;
        let view = proposal.view;
        if let Some(block) = self.ledger.get(seq) {
            self.outbox.events.push_back(LedgerEvent::Recertified(RecertifiedEvent {
                time: now.as_nanos(),
                replica: u32::from(self.id.0),
                seq: seq.0,
                old_view: block.view.0,
                new_view: view.0,
                batch_digest: block.batch_digest,
            }));
        }
        self.ledger.recertify(seq, view, certificate.clone());
        self.outbox.writes.push(Write::Certificate { seq, view, certificate });
        for request in proposal.batch.iter() {
            let body = &request.body;
            if let Some(result) = self.state.retag(body.client, body.request, seq, view) {
                self.counters.informs_sent += 1;
                self.send_inform(view, seq, body.client, body.request, result);
            }
        }
        self.progress_made(now);
    }
}
