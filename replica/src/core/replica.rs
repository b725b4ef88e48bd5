//! The PoE replica: the normal case of PoE-TS and PoE-MAC as a sans-IO state machine.
//!
//! # Inputs and outputs
//!
//! Inputs are [`Replica::handle_message`] (an [`Envelope`] from another replica),
//! [`Replica::handle_request`] (a signed client request) and [`Replica::handle_timeout`]. Each
//! takes `now`; none blocks, reads a clock or does IO. After inputs the driver
//! ([`crate::node::drive`]) takes a numbered [`Ready`] (writes to persist, ledger events,
//! messages, the next deadline), does it in that order and calls [`Replica::advance`]; it
//! re-arms its timer at [`Replica::poll_timeout`].
//!
//! # The normal case (PROTOCOL §3)
//!
//! 1. The primary of view v queues client requests, cuts a batch when it holds
//!    `batch_size_max` requests or `batch_timeout` after the first one, and broadcasts
//!    PROPOSE(v, k, batch) for the next k inside its window.
//! 2. A replica accepts a PROPOSE only from the primary of its current view, for a k inside its
//!    log, if it accepted no other proposal for (v, k) and every client signature verifies;
//!    then it supports it (once: [`Safety`]).
//! 3. PoE-TS: supports (threshold shares) go to the primary, which combines nf of them
//!    (its own included) into a certificate and broadcasts CERTIFY. PoE-MAC: signed supports
//!    go to everyone; nf matching ones (own included) view-commit the slot.
//! 4. View-committed slots execute speculatively in strict sequence order; each request's
//!    client gets an INFORM. The at-most-once table skips requests that already executed and
//!    keeps the last reply per client for retransmissions.
//!
//! Agreement runs out of order inside the window; execution never does.
//!
//! # Recovery (PROTOCOL §§4–6)
//!
//! - [`view_change`]: the progress timer, VC-REQUEST, NV-PROPOSE, the decision (highest-view
//!   certificate per slot, k_max), rollback and the re-certification of carried slots.
//! - [`checkpoint`]: signed checkpoints every K slots, stability on nf, garbage collection,
//!   watermarks, and state transfer for a replica that fell behind.
//! - [`recovery`]: a restart from the persisted [`Durable`] state.
//!
//! Every vote, block, VC-REQUEST and view is queued as a [`Write`]; a [`Ready`] hands the writes
//! out with the messages and ledger events queued since the last one, which the driver releases
//! only once the writes are durable.

mod checkpoint;
mod pbft;
mod recovery;
mod view_change;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use bytes::Bytes;
use history::{ExecuteEvent, ExecutedRequest, LedgerEvent, OpResult};

use self::checkpoint::{CatchUp, PendingCheckpoint};
use self::view_change::Mode;
pub(crate) use self::view_change::{Decision, decide};

use super::config::{Config, ConfigError, Protocol};
use super::durable::{StoredBlock, Write};
use super::error::{Counters, Rejection};
use super::ledger::{Certificate, Ledger, genesis_hash};
use super::message::{
    AuthenticatedInform, Certify, CheckpointCertificate, Commit, Envelope, Inform, Message,
    NewView, Propose, SignedRequest, SlotEvidence, Support, SupportProof, ViewChange, batch_digest,
    encode, proposal_digest, support_signing_bytes,
};
use super::safety::{Refusal, Safety};
use super::state_machine::{Snapshot, StateMachine};
use super::types::{ClientId, Digest, ReplicaId, RequestId, Seq, Time, View};
use crate::crypto::dealer::{PublicKeys, ReplicaSecrets};
use crate::crypto::ed25519::{self, SignedMessage};
use crate::crypto::hash::sha256;
use crate::crypto::mac::MacKey;
use crate::crypto::threshold::{BlsSignature, PreparedMessage};
#[cfg(feature = "planted-bugs")]
use crate::planted::PlantedBug;

/// What a replica hands its driver after inputs (in the manner of raft-rs's `Ready`): persist
/// `writes` in order, then record `events`, then send `transmits`, then call
/// [`Replica::advance`] with `number`. Nothing in `transmits` or `events` may be visible
/// before `writes` are durable (a vote, a block, a VC-REQUEST must survive a crash of this
/// replica before anybody can have seen it).
#[derive(Debug, Clone, PartialEq)]
pub struct Ready {
    /// Numbered from 1, one more each time.
    pub number: u64,
    /// What must be durable first.
    pub writes: Vec<Write>,
    /// Ledger events to record (flushed before any message leaves: the checker reads the
    /// ledger of a killed replica too, and finds there what every INFORM rested on).
    pub events: Vec<LedgerEvent>,
    /// Messages to send.
    pub transmits: Vec<Transmit>,
    /// When the timers must fire next, if any is armed.
    pub deadline: Option<Time>,
}

/// A message for the caller to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transmit {
    /// To another replica.
    Replica {
        /// The receiver.
        to: ReplicaId,
        /// The sealed message.
        envelope: Envelope,
    },
    /// To a client.
    Client {
        /// The receiver.
        to: ClientId,
        /// The INFORM.
        inform: AuthenticatedInform,
    },
}

/// A snapshot of a replica's progress, for status reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// The replica.
    pub id: ReplicaId,
    /// Its current view.
    pub view: View,
    /// Its last executed slot.
    pub last_executed: Seq,
    /// Its state digest after that slot.
    pub state_digest: Digest,
    /// Its ledger's head hash.
    pub ledger_head: Digest,
    /// Requests queued at this replica as primary.
    pub queued_requests: usize,
    /// Slots with protocol state above the last executed one.
    pub open_slots: usize,
    /// The last stable checkpoint.
    pub stable_checkpoint: Seq,
    /// The view being changed to, during a view change.
    pub changing_to: Option<View>,
    /// Its counters.
    pub counters: Counters,
}

/// How much a replica holds in memory per kind of bounded state, to check that garbage
/// collection keeps it flat (each is bounded by about 2·K plus the log size).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Retention {
    /// Ledger blocks above the last stable checkpoint.
    pub ledger_blocks: usize,
    /// Slots the state machine's undo log covers.
    pub undo_slots: usize,
    /// Votes the safety rules remember.
    pub votes: usize,
    /// Slots with normal-case state above the last executed one.
    pub open_slots: usize,
    /// Checkpoints above the stable one (own snapshots and votes received).
    pub pending_checkpoints: usize,
    /// Slots a view carried over and not yet re-certified.
    pub carried_slots: usize,
    /// Requests forwarded to the primary and not known executed.
    pub forwarded_requests: usize,
    /// Messages of the next view held until its NV-PROPOSE arrives.
    pub early_messages: usize,
}

impl Retention {
    /// Each size the larger of the two.
    #[must_use]
    pub fn max(self, other: Retention) -> Retention {
        Retention {
            ledger_blocks: self.ledger_blocks.max(other.ledger_blocks),
            undo_slots: self.undo_slots.max(other.undo_slots),
            votes: self.votes.max(other.votes),
            open_slots: self.open_slots.max(other.open_slots),
            pending_checkpoints: self.pending_checkpoints.max(other.pending_checkpoints),
            carried_slots: self.carried_slots.max(other.carried_slots),
            forwarded_requests: self.forwarded_requests.max(other.forwarded_requests),
            early_messages: self.early_messages.max(other.early_messages),
        }
    }
}

/// The accepted proposal of a slot.
#[derive(Debug, Clone)]
struct Proposal {
    view: View,
    digest: Digest,
    batch_digest: Digest,
    batch: Arc<[SignedRequest]>,
    /// PoE-TS: the support bytes hashed to G2 once, for signing the share and verifying the
    /// certificate (or, at the primary, the combination).
    prepared: Option<PreparedMessage>,
}

impl Proposal {
    /// The proposal of `batch` (whose digest the caller computed) at (view, seq).
    fn new(
        protocol: Protocol,
        view: View,
        seq: Seq,
        batch: Arc<[SignedRequest]>,
        batch_digest: Digest,
    ) -> Proposal {
        debug_assert_eq!(batch_digest, self::batch_digest(&batch));
        let digest = proposal_digest(view, seq, &batch_digest);
        let prepared = (protocol == Protocol::PoeTs)
            .then(|| PreparedMessage::new(&support_signing_bytes(&digest)));
        Proposal { view, digest, batch_digest, batch, prepared }
    }
}

/// Protocol state of one slot above the last executed one, in the current view.
#[derive(Debug, Default)]
struct Slot {
    proposal: Option<Proposal>,
    /// The first vote of each replica for this slot. Once the proposal is in, only votes for
    /// its digest are here (earlier ones that do not match are dropped).
    votes: BTreeMap<ReplicaId, Support>,
    /// PoE-TS primary: replicas whose share for this slot failed verification. Their vote
    /// stays in `votes` (so a resend is a duplicate) but never enters a combination again.
    invalid_shares: BTreeSet<ReplicaId>,
    /// PoE-TS backups: a verified CERTIFY, possibly ahead of its PROPOSE.
    certify: Option<Certify>,
    /// Set when the slot is view-committed (PoE) or prepared (PBFT): the transferable evidence
    /// a VC-REQUEST carries.
    certificate: Option<Certificate>,
    /// PBFT: the first COMMIT of each replica (own included); once the proposal is in, only
    /// COMMITs for its digest.
    commits: BTreeMap<ReplicaId, Commit>,
    /// Ready to execute: view-committed (PoE, with `certificate`), committed-local (PBFT: the
    /// certificate and nf matching COMMITs).
    committed: bool,
}

/// A PoE replica.
#[derive(Debug)]
pub struct Replica {
    id: ReplicaId,
    config: Config,
    public: Arc<PublicKeys>,
    /// The keys and the rules that guard them.
    safety: Safety,
    replica_macs: Vec<MacKey>,
    client_macs: Vec<MacKey>,

    view: View,
    /// Normal-case state of the slots above the last executed one (and the carried ones), in
    /// the current view.
    slots: BTreeMap<Seq, Slot>,
    /// The executed history: the state machine and the hash-chained ledger, always at the same
    /// slot (`state.last_seq() == ledger.head_seq()`).
    state: StateMachine,
    ledger: Ledger,

    /// The primary's side of the normal case.
    primary: Primary,
    /// Where the view change stands.
    changes: ViewChanges,
    /// The failure detector.
    progress: Progress,
    /// Checkpoints and state transfer.
    checkpointing: Checkpointing,
    /// What leaves, and in which order.
    outbox: Outbox,
    counters: Counters,
}

/// The primary's side of the normal case.
///
/// Invariants: `pending` holds exactly the requests queued or proposed and not yet executed,
/// and `pending_per_client` counts them per client; `next_seq` is above every slot this
/// replica proposed in the current view. Reset on every view change.
#[derive(Debug)]
struct Primary {
    /// The next slot to propose.
    next_seq: Seq,
    /// Requests waiting for a batch, with their arrival times (signatures are checked when the
    /// batch is cut, as one batch verification).
    queue: VecDeque<(Time, SignedRequest)>,
    /// Requests queued or proposed and not yet executed, to refuse duplicates.
    pending: HashSet<(ClientId, RequestId)>,
    pending_per_client: HashMap<ClientId, u32>,
    /// PoE-TS: replicas that sent an invalid threshold share in this view. Their shares are
    /// verified one by one before entering a combination, so one faulty replica cannot force
    /// the slow path on every slot.
    share_suspects: BTreeSet<ReplicaId>,
    /// A cap on the batches this replica proposes ([`Replica::limit_batches`]).
    batch_limit: Option<u32>,
}

/// Where the view change stands (PROTOCOL §§5, 7).
///
/// Invariants: `vc_requests` holds one VC-REQUEST per replica, each for a view above `view`;
/// `carried` and `contested` only name slots of the current view's decision that are not
/// certified in it yet; `early` holds only messages of the next view, bounded per sender.
#[derive(Debug)]
struct ViewChanges {
    /// Normal operation, or a view change in progress.
    mode: Mode,
    /// The highest-target VC-REQUEST of each replica (own included), targets above `view`.
    vc_requests: BTreeMap<ReplicaId, Arc<ViewChange>>,
    /// Certificates and signed batches already verified (view changes, state transfers).
    verified: view_change::Verified,
    /// View changes in a row that ended without progress: the backoff exponent of the new-view
    /// and progress timers. Counted when the new-view timer expires (no NV-PROPOSE in time) and
    /// when the replica leaves a view it entered through a view change before that view
    /// executed a slot of its own (PROTOCOL §7, liveness: the new view executed nothing new);
    /// reset by such an execution.
    failed_view_changes: u32,
    /// While the current view, entered through a view change, has executed no slot it ordered
    /// itself: its k_max (the carried slots up to it were ordered by earlier views, so
    /// executing or certifying them again does not show that the view works). Leaving the
    /// view then counts as a failed view change.
    unproven_view: Option<Seq>,
    /// The NV-PROPOSE that started the current view (for replicas that missed it).
    new_view: Option<Arc<NewView>>,
    /// The slots the current view carried over (k_s, k_max] that are not certified in it yet,
    /// with the decided (highest-view) evidence.
    carried: BTreeMap<Seq, SlotEvidence>,
    /// Proposals of the current view for carried slots that name another batch than this
    /// replica's decision (a lying new primary can give groups different decisions): never
    /// supported, but adopted once a valid certificate of the view names them.
    contested: BTreeMap<Seq, Proposal>,
    /// Normal-case messages of the next view (the one asked for, or the one after the current
    /// view) that arrived before its NV-PROPOSE, per sender; handled once the view is entered.
    early: BTreeMap<ReplicaId, Vec<(View, Message)>>,
    /// PBFT: Castro–Liskov's P, the highest-view prepared certificate of every slot above the
    /// stable checkpoint that this replica sent a COMMIT for, persisted before the COMMIT left
    /// (`Write::Prepared`) and restored after a restart: its VIEW-CHANGEs carry each one.
    prepared: BTreeMap<Seq, SlotEvidence>,
}

/// The failure detector (PROTOCOL §4).
///
/// Invariant: `progress_deadline` is set while this replica expects progress (a forwarded
/// request, an accepted proposal, a certified slot above a hole, a carried slot).
#[derive(Debug, Default)]
struct Progress {
    /// When expected progress is overdue (progress timer).
    progress_deadline: Option<Time>,
    /// Whether the progress timer already asked for state once for the current hole.
    hole_state_requested: bool,
    /// Backups: requests forwarded to the primary and not known executed, with when.
    forwarded: BTreeMap<(ClientId, RequestId), Time>,
}

/// Checkpoints and state transfer (PROTOCOL §6).
///
/// Invariants: `stable`'s certificate holds nf valid signatures on its slot's state digest and
/// block hash; every pending checkpoint is above it; nothing at or below it is ever rolled back.
#[derive(Debug, Default)]
struct Checkpointing {
    /// The last stable checkpoint, with the state at its slot.
    stable: Option<(CheckpointCertificate, Snapshot)>,
    /// Checkpoints above the stable one: own snapshots and the votes received.
    checkpoints: BTreeMap<Seq, PendingCheckpoint>,
    /// When this replica last asked for state.
    last_state_request: Option<Time>,
    /// A catch-up under way: until an answer brings this replica to its sender's head, it asks
    /// again (at most `STATE_REQUEST_RETRIES_MAX` times), since a request can be lost (the
    /// answers to a replica killed just after asking) or refused by a rate limit.
    catch_up: Option<CatchUp>,
    /// When this replica last answered each replica's state request.
    state_requests_served: BTreeMap<ReplicaId, Time>,
}

/// What leaves the replica, and in which order ([`Ready`]).
///
/// Invariant: nothing in `transmits` or `events` is handed out without the `writes` queued
/// before it, in the same `Ready`; at most one `Ready` is in flight.
#[derive(Debug, Default)]
struct Outbox {
    /// Writes to persist before anything queued after them leaves.
    writes: Vec<Write>,
    /// The number of the last [`Ready`] handed out.
    ready_number: u64,
    /// The [`Ready`] handed out and not yet advanced.
    ready_in_flight: Option<u64>,
    transmits: VecDeque<Transmit>,
    events: VecDeque<LedgerEvent>,
}

impl Replica {
    /// Replica `secrets.id` of a cluster with `config` and `public` keys, in view 0 with an
    /// empty ledger.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] when the configuration is invalid or does not match the keys.
    pub fn new(
        config: Config,
        secrets: ReplicaSecrets,
        public: Arc<PublicKeys>,
    ) -> Result<Replica, ConfigError> {
        config.validate()?;
        let mismatch = |field, value: usize, rule| ConfigError::OutOfRange {
            field,
            value: value as u64,
            rule,
        };
        let n = usize::from(config.replica_count);
        if public.replicas.len() != n || secrets.replica_macs.len() != n {
            return Err(mismatch("replica_count", n, "must match the key files"));
        }
        if public.clients.len() != config.client_count as usize
            || secrets.client_macs.len() != config.client_count as usize
        {
            return Err(mismatch("client_count", public.clients.len(), "must match the key files"));
        }
        let threshold = public.threshold.threshold() as usize;
        // A planted-bugs build also takes keys dealt with threshold 2f + 1, for a cluster whose
        // honest replicas run `quorum-2f-plus-1`: a declared Byzantine replica among them runs
        // no planted bug.
        #[cfg(feature = "planted-bugs")]
        let dealt_for_planted_quorum = threshold == 2 * config.f() + 1;
        #[cfg(not(feature = "planted-bugs"))]
        let dealt_for_planted_quorum = false;
        if threshold != config.nf() && !dealt_for_planted_quorum {
            return Err(mismatch("threshold", threshold, "the threshold key must need nf shares"));
        }
        if secrets.id as usize >= n {
            return Err(mismatch("id", secrets.id as usize, "must be below replica_count"));
        }
        let id = ReplicaId(secrets.id as u8);
        let initial_primary = config.primary(View(0));
        let genesis = genesis_hash(
            config.replica_count,
            initial_primary,
            &public.replicas[initial_primary.index()],
        );
        let state = StateMachine::with_genesis(&config.genesis);
        Ok(Replica {
            id,
            safety: Safety::new(id, config.protocol, secrets.signing_key, secrets.threshold_share),
            replica_macs: secrets.replica_macs,
            client_macs: secrets.client_macs,
            config,
            public,
            view: View(0),
            slots: BTreeMap::new(),
            state,
            ledger: Ledger::new(genesis),
            primary: Primary {
                next_seq: Seq(1),
                queue: VecDeque::new(),
                pending: HashSet::new(),
                pending_per_client: HashMap::new(),
                share_suspects: BTreeSet::new(),
                batch_limit: None,
            },
            changes: ViewChanges {
                mode: Mode::Normal,
                vc_requests: BTreeMap::new(),
                verified: view_change::Verified::default(),
                failed_view_changes: 0,
                unproven_view: None,
                new_view: None,
                carried: BTreeMap::new(),
                contested: BTreeMap::new(),
                early: BTreeMap::new(),
                prepared: BTreeMap::new(),
            },
            progress: Progress::default(),
            checkpointing: Checkpointing::default(),
            outbox: Outbox::default(),
            counters: Counters::default(),
        })
    }

    // ----------------------------------------------------------------------------------------
    // Inputs.

    /// Handles a message from replica `from` (as identified by the transport).
    ///
    /// # Errors
    ///
    /// A [`Rejection`] saying why the message was refused; it is also counted. The replica's
    /// state is unchanged by a rejected message.
    pub fn handle_message(
        &mut self,
        now: Time,
        from: ReplicaId,
        envelope: &Envelope,
    ) -> Result<(), Rejection> {
        self.counters.messages_received += 1;
        let result = self.dispatch_message(now, from, envelope);
        result.map_err(|rejection| {
            *self.counters.rejected_from.entry(from.0).or_default() += 1;
            self.counters.reject(rejection)
        })
    }

    /// Handles a request sent by client `from` (as identified by the transport: mutual TLS
    /// in the real replica). A request must come from the client it names, so nobody can
    /// occupy another client's queue slots with forgeries; its signature is still checked
    /// before it is proposed, since backups and the ledger need it.
    ///
    /// # Errors
    ///
    /// A [`Rejection`] saying why the request was refused; it is also counted.
    pub fn handle_request(
        &mut self,
        now: Time,
        from: ClientId,
        request: SignedRequest,
    ) -> Result<(), Rejection> {
        self.counters.requests_received += 1;
        let result = if request.body.client == from {
            self.admit_request(now, request, Origin::Client)
        } else {
            Err(Rejection::ClientMismatch { from, claimed: request.body.client })
        };
        result.map_err(|rejection| self.counters.reject(rejection))
    }

    /// Caps the batches this replica proposes as primary below `batch_size_max` (`None`: no
    /// cap). Never the rule for the batches it accepts. A Byzantine replica's hook sets it: a
    /// primary may cut its batches as small as it likes (the lone executor spreads the
    /// clients' stalled requests over several slots, so that the rollback it forces undoes
    /// several).
    pub fn limit_batches(&mut self, limit: Option<u32>) {
        self.primary.batch_limit = limit.map(|limit| limit.max(1));
    }

    /// The most requests this replica puts in one batch it proposes.
    fn batch_size(&self) -> usize {
        let max = self.config.batch_size_max;
        self.primary.batch_limit.map_or(max, |limit| limit.min(max)) as usize
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Time) {
        self.view_change_timers(now);
        self.catch_up_timer(now);
        self.try_propose(now, BatchCut::FullOrDue);
    }

    // ----------------------------------------------------------------------------------------
    // Outputs.

    /// Everything this replica wants done since the last [`Ready`], if anything: the writes to
    /// make durable, then the ledger events to record, then the messages to send, in that
    /// order, and the next deadline. Its number must be passed to [`Replica::advance`] once
    /// all of it is done; until then no other `Ready` is handed out (inputs may still arrive,
    /// and their outputs wait for the next one).
    ///
    /// # Panics
    ///
    /// If the previous `Ready` was not advanced: a driver bug.
    #[must_use]
    pub fn ready(&mut self) -> Option<Ready> {
        assert!(
            self.outbox.ready_in_flight.is_none(),
            "Ready {:?} was not advanced before the next was asked for",
            self.outbox.ready_in_flight
        );
        if self.outbox.writes.is_empty()
            && self.outbox.events.is_empty()
            && self.outbox.transmits.is_empty()
        {
            return None;
        }
        self.outbox.ready_number += 1;
        self.outbox.ready_in_flight = Some(self.outbox.ready_number);
        Some(Ready {
            number: self.outbox.ready_number,
            writes: std::mem::take(&mut self.outbox.writes),
            events: self.outbox.events.drain(..).collect(),
            transmits: self.outbox.transmits.drain(..).collect(),
            deadline: self.poll_timeout(),
        })
    }

    /// Ready `number` is done: its writes are durable, its events recorded and its messages
    /// handed to the network.
    ///
    /// # Panics
    ///
    /// If `number` is not the `Ready` in flight: a driver bug.
    pub fn advance(&mut self, number: u64) {
        assert_eq!(self.outbox.ready_in_flight, Some(number), "advance of a Ready not in flight");
        self.outbox.ready_in_flight = None;
    }

    /// When [`Replica::handle_timeout`] must be called next, if any timer is armed.
    pub fn poll_timeout(&self) -> Option<Time> {
        // The batch timer matters only while the window has room for a proposal; without
        // room, or with too many slots in flight for a partial batch, execution (not time) is
        // what lets the primary propose; a timer would only spin.
        let batch = self
            .batch_deadline()
            .filter(|_| self.changes.mode.is_normal())
            .filter(|_| self.window_has_room() && self.partial_batch_allowed());
        let catch_up = self.checkpointing.catch_up.as_ref().map(|catch_up| catch_up.at);
        [batch, self.progress.progress_deadline, self.changes.mode.deadline(), catch_up]
            .into_iter()
            .flatten()
            .min()
    }

    // ----------------------------------------------------------------------------------------
    // Getters.

    /// This replica's id.
    pub fn id(&self) -> ReplicaId {
        self.id
    }

    /// The cluster configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The current view.
    pub fn view(&self) -> View {
        self.view
    }

    /// Whether this replica is the primary of its current view.
    pub fn is_primary(&self) -> bool {
        self.config.primary(self.view) == self.id
    }

    /// The last executed slot.
    pub fn last_executed(&self) -> Seq {
        self.state.last_seq()
    }

    /// The ledger.
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The state machine.
    pub fn state(&self) -> &StateMachine {
        &self.state
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// A status snapshot.
    pub fn status(&self) -> Status {
        Status {
            id: self.id,
            view: self.view,
            last_executed: self.last_executed(),
            state_digest: self.state.digest(),
            ledger_head: self.ledger.head_hash(),
            queued_requests: self.primary.queue.len(),
            open_slots: self.slots.len(),
            stable_checkpoint: self.stable_seq(),
            changing_to: self.changes.mode.target(),
            counters: self.counters.clone(),
        }
    }

    /// How much bounded state this replica holds.
    pub fn retention(&self) -> Retention {
        Retention {
            ledger_blocks: self.ledger.blocks().count(),
            undo_slots: self.state.undo_len(),
            votes: self.safety.vote_count(),
            open_slots: self.slots.len(),
            pending_checkpoints: self.checkpointing.checkpoints.len(),
            carried_slots: self.changes.carried.len(),
            forwarded_requests: self.progress.forwarded.len(),
            early_messages: self.changes.early.values().map(Vec::len).sum(),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Message dispatch.

    fn dispatch_message(
        &mut self,
        now: Time,
        from: ReplicaId,
        envelope: &Envelope,
    ) -> Result<(), Rejection> {
        if from.0 >= self.config.replica_count {
            return Err(Rejection::UnknownReplica { from });
        }
        if from == self.id {
            return Err(Rejection::FromSelf);
        }
        let message = envelope.open(&self.replica_macs[from.index()], from, self.id)?;
        if let Some(view) = normal_case_view(&message) {
            if view > self.view {
                // The cluster moved on without this replica: catch up.
                self.request_state(now, Some(from));
                if self.hold_early(from, view, &message) {
                    return Ok(());
                }
            }
            if !self.changes.mode.is_normal() {
                return Err(Rejection::InViewChange { message: message.name() });
            }
        }
        self.dispatch_opened(now, from, message)
    }

    /// Handles a message whose MAC verified.
    fn dispatch_opened(
        &mut self,
        now: Time,
        from: ReplicaId,
        message: Message,
    ) -> Result<(), Rejection> {
        match message {
            Message::Propose(propose) => self.handle_propose(now, from, propose),
            Message::Support(support) => self.handle_support(now, from, support),
            Message::Certify(certify) => self.handle_certify(now, from, certify),
            Message::Forward(request) => self.admit_request(now, request, Origin::Replica),
            Message::Checkpoint(checkpoint) => self.handle_checkpoint(now, from, checkpoint),
            Message::ViewChange(request) => self.handle_view_change(now, from, request),
            Message::NewView(new_view) => self.handle_new_view(now, from, new_view),
            Message::StateRequest(request) => self.handle_state_request(now, from, &request),
            Message::StateTransfer(transfer) => self.handle_state_transfer(now, from, &transfer),
            Message::Commit(commit) => self.handle_commit(now, from, commit),
        }
    }

    /// Where a slot stands relative to this replica's log: the low watermark is the last
    /// executed slot (or, for a slot the view carried over, the stable checkpoint), the high
    /// one the stable checkpoint plus the log size.
    fn check_log(&self, seq: Seq) -> Result<SlotPosition, Rejection> {
        let low = self.last_executed();
        let high = Seq(self.stable_seq().0 + self.config.log_size);
        if seq <= low && !self.changes.carried.contains_key(&seq) {
            Ok(SlotPosition::Executed)
        } else if seq > high {
            Err(Rejection::OutsideWindow { seq, low, high })
        } else {
            Ok(SlotPosition::Open)
        }
    }

    fn check_view(&self, message: &'static str, view: View) -> Result<(), Rejection> {
        if view == self.view {
            Ok(())
        } else {
            Err(Rejection::WrongView { message, view, current: self.view })
        }
    }

    fn check_from_primary(
        &self,
        message: &'static str,
        from: ReplicaId,
        view: View,
    ) -> Result<(), Rejection> {
        let primary = self.config.primary(view);
        if from == primary {
            Ok(())
        } else {
            Err(Rejection::NotFromPrimary { message, from, primary, view })
        }
    }

    // ----------------------------------------------------------------------------------------
    // PROPOSE.

    fn handle_propose(
        &mut self,
        now: Time,
        from: ReplicaId,
        propose: Propose,
    ) -> Result<(), Rejection> {
        let Propose { view, seq, batch } = propose;
        self.check_from_primary("propose", from, view)?;
        self.check_view("propose", view)?;
        if self.check_log(seq)? == SlotPosition::Executed {
            return Err(Rejection::AlreadyExecuted { seq, last_executed: self.last_executed() });
        }
        let batch_digest = batch_digest(&batch);
        let digest = proposal_digest(view, seq, &batch_digest);
        if let Some(existing) = self.slots.get(&seq).and_then(|slot| slot.proposal.as_ref()) {
            return Err(if existing.digest == digest {
                Rejection::DuplicateProposal { view, seq }
            } else {
                Rejection::ConflictingProposal { view, seq }
            });
        }
        if let Some(carried) = self.changes.carried.get(&seq) {
            // A carried slot is proposed again with the batch the new view decided, and nothing
            // else. Its shape was checked when it was first certified; its signatures are
            // checked again, since the digest does not cover their bytes (a new primary could
            // swap them).
            if batch_digest_of(carried) != batch_digest {
                // Not supported; kept in case the view certifies it anyway (then this
                // replica's decision was not the view's, and the certificate wins).
                self.validate_batch(&batch)?;
                let proposal = Proposal::new(self.config.protocol, view, seq, batch, batch_digest);
                self.changes.contested.insert(seq, proposal);
                self.try_adopt_contested(now, seq);
                return Err(Rejection::CarriedMismatch { seq });
            }
            if let Some(&index) = self.verify_signatures(&batch).first() {
                let body = &batch[index].body;
                return Err(Rejection::InvalidClientSignature {
                    client: body.client,
                    request: body.request,
                });
            }
        } else {
            self.validate_batch(&batch)?;
        }
        let proposal = Proposal::new(self.config.protocol, view, seq, batch, batch_digest);
        debug_assert_eq!(proposal.digest, digest);
        if self.is_passive() {
            // Passive below the vote floor: learn the batch, execute it once others certify it,
            // never support it.
            self.counters.proposals_accepted += 1;
            self.install_proposal(seq, proposal);
            self.expect_progress(now);
            self.try_commit(now, seq);
            return Ok(());
        }
        // The safety rules have the last word (a slot whose proposal was dropped could have been
        // supported before).
        let support =
            self.vote(view, seq, digest, proposal.prepared.as_ref()).map_err(|refusal| {
                match refusal {
                    Refusal::AlreadySupported { .. } => {
                        Rejection::ConflictingProposal { view, seq }
                    }
                    refusal => Rejection::Refused(refusal),
                }
            })?;
        self.counters.proposals_accepted += 1;
        self.install_proposal(seq, proposal);
        self.expect_progress(now);
        match self.config.protocol {
            Protocol::PoeTs => self.send(self.config.primary(view), &Message::Support(support)),
            Protocol::PoeMac | Protocol::Pbft => {
                self.slots.entry(seq).or_default().votes.insert(self.id, support.clone());
                self.broadcast(&Message::Support(support));
            }
        }
        self.try_commit(now, seq);
        Ok(())
    }

    /// Records the accepted proposal of `seq`. Votes and a CERTIFY that arrived ahead of it
    /// count only if they match it; the others are dropped and counted as digest mismatches.
    fn install_proposal(&mut self, seq: Seq, proposal: Proposal) {
        let digest = proposal.digest;
        let slot = self.slots.entry(seq).or_default();
        debug_assert!(slot.proposal.is_none(), "one accepted proposal per slot");
        slot.proposal = Some(proposal);
        #[cfg(feature = "planted-bugs")]
        if self.config.planted(PlantedBug::VoteDigestUnchecked) {
            // Planted: earlier votes and CERTIFY stay, whatever digest they name.
            return;
        }
        let mismatched: Vec<Support> = slot
            .votes
            .extract_if(.., |_, vote| vote.digest != digest)
            .map(|(_, vote)| vote)
            .collect();
        if slot.certify.as_ref().is_some_and(|certify| certify.digest != digest) {
            slot.certify = None;
        }
        let stale_commits: Vec<Commit> = slot
            .commits
            .extract_if(.., |_, commit| commit.digest != digest)
            .map(|(_, commit)| commit)
            .collect();
        for commit in stale_commits {
            self.counters.reject_deferred(Rejection::DigestMismatch {
                from: commit.replica,
                seq,
                expected: digest,
                actual: commit.digest,
            });
        }
        for vote in mismatched {
            let from = vote.replica;
            let actual = vote.digest;
            self.counters.reject_deferred(Rejection::DigestMismatch {
                from,
                seq,
                expected: digest,
                actual,
            });
        }
    }

    /// Checks a proposed batch: size, shape of every request, no request twice, known clients,
    /// and every client signature (batch verification).
    fn validate_batch(&self, batch: &[SignedRequest]) -> Result<(), Rejection> {
        if batch.is_empty() {
            return Err(Rejection::EmptyBatch);
        }
        let max = self.config.batch_size_max as usize;
        if batch.len() > max {
            return Err(Rejection::BatchTooLarge { size: batch.len(), max });
        }
        let mut seen = HashSet::with_capacity(batch.len());
        for request in batch {
            let body = &request.body;
            self.check_client(body.client)?;
            body.validate()?;
            if !seen.insert((body.client, body.request)) {
                return Err(Rejection::DuplicateRequestInBatch {
                    client: body.client,
                    request: body.request,
                });
            }
        }
        match self.verify_signatures(batch).first() {
            None => Ok(()),
            Some(&index) => {
                let body = &batch[index].body;
                Err(Rejection::InvalidClientSignature {
                    client: body.client,
                    request: body.request,
                })
            }
        }
    }

    /// The positions of the requests whose client signature does not verify (clients must be
    /// known). One batch verification; one by one only if it fails.
    fn verify_signatures(&self, batch: &[SignedRequest]) -> Vec<usize> {
        let signing_bytes: Vec<Vec<u8>> =
            batch.iter().map(|request| request.body.signing_bytes()).collect();
        let items: Vec<SignedMessage<'_>> = batch
            .iter()
            .zip(&signing_bytes)
            .map(|(request, bytes)| SignedMessage {
                key: &self.public.clients[request.body.client.index()],
                message: bytes,
                signature: &request.signature,
            })
            .collect();
        if ed25519::verify_batch(&items).is_ok() {
            Vec::new()
        } else {
            ed25519::find_invalid(&items)
        }
    }

    fn check_client(&self, client: ClientId) -> Result<(), Rejection> {
        if client.0 < self.config.client_count {
            Ok(())
        } else {
            Err(Rejection::UnknownClient { client })
        }
    }

    // ----------------------------------------------------------------------------------------
    // SUPPORT.

    fn handle_support(
        &mut self,
        now: Time,
        from: ReplicaId,
        support: Support,
    ) -> Result<(), Rejection> {
        if support.replica != from {
            return Err(Rejection::SupportSenderMismatch { from, claimed: support.replica });
        }
        let protocol = self.config.protocol;
        match (protocol, &support.proof) {
            (Protocol::PoeTs, SupportProof::Share(_))
            | (Protocol::PoeMac | Protocol::Pbft, SupportProof::Signature(_)) => {}
            _ => {
                return Err(Rejection::WrongProtocol {
                    message: "support",
                    protocol: protocol.name(),
                });
            }
        }
        self.check_view("support", support.view)?;
        let seq = support.seq;
        if self.check_log(seq)? == SlotPosition::Executed {
            self.counters.late(from);
            return Ok(());
        }
        if protocol == Protocol::PoeTs {
            if !self.is_primary() {
                return Err(Rejection::NotPrimary { message: "support" });
            }
            if self.slots.get(&seq).is_none_or(|slot| slot.proposal.is_none()) {
                return Err(Rejection::UnknownSlot { seq });
            }
        }
        let slot = self.slots.get(&seq);
        if let Some(existing) = slot.and_then(|slot| slot.votes.get(&from)) {
            return Err(if *existing == support {
                Rejection::DuplicateVote { from, seq }
            } else {
                Rejection::ConflictingVote { from, seq }
            });
        }
        let digest_checked = self.vote_digest_checked();
        if let Some(proposal) = slot.and_then(|slot| slot.proposal.as_ref())
            && proposal.digest != support.digest
            && digest_checked
        {
            return Err(Rejection::DigestMismatch {
                from,
                seq,
                expected: proposal.digest,
                actual: support.digest,
            });
        }
        if let SupportProof::Signature(signature) = &support.proof {
            // Signed supports are view-change evidence later: check them now, not then.
            let key = &self.public.replicas[from.index()];
            key.verify(&support_signing_bytes(&support.digest), signature)
                .map_err(|_| Rejection::InvalidSupportSignature { from, seq })?;
        }
        let slot = self.slots.entry(seq).or_default();
        slot.votes.insert(from, support);
        if slot.proposal.is_none() && slot.votes.len() > self.config.f() {
            // Others accepted a proposal this replica never got: the progress timer finds out
            // whether it missed it (PoE-MAC; `missed_proposal`).
            self.expect_progress(now);
        }
        match protocol {
            Protocol::PoeTs => self.try_certify(now, seq),
            Protocol::PoeMac | Protocol::Pbft => {
                self.try_commit(now, seq);
                self.try_adopt_contested(now, seq);
            }
        }
        Ok(())
    }

    /// PoE-TS primary: once nf shares for the proposal are in, combine them optimistically,
    /// drop shares that turn out invalid, and broadcast CERTIFY.
    fn try_certify(&mut self, now: Time, seq: Seq) {
        let nf = self.config.nf();
        let Some(slot) = self.slots.get(&seq) else { return };
        let Some(proposal) = &slot.proposal else { return };
        if slot.certificate.is_some() {
            return;
        }
        let (view, digest) = (proposal.view, proposal.digest);
        let mut shares: Vec<(u32, BlsSignature)> = slot
            .votes
            .iter()
            .filter(|(replica, _)| !slot.invalid_shares.contains(replica))
            .filter_map(|(replica, vote)| match &vote.proof {
                SupportProof::Share(share) => Some((u32::from(replica.0), *share)),
                SupportProof::Signature(_) => None,
            })
            .collect();
        if shares.len() < nf {
            return;
        }
        let prepared = match &proposal.prepared {
            Some(prepared) => prepared.clone(),
            None => PreparedMessage::new(&support_signing_bytes(&digest)),
        };
        // A replica that sent a bad share in this view has its shares checked one by one
        // before they enter a combination: otherwise one faulty replica would force the slow
        // path (combine, verify, then verify every share) on every slot.
        let mut invalid = Vec::new();
        shares.retain(|(signer, share)| {
            let suspect = self.primary.share_suspects.contains(&ReplicaId(*signer as u8));
            let valid =
                !suspect || self.public.threshold.verify_share(*signer, &prepared, share).is_ok();
            if !valid {
                invalid.push(*signer);
            }
            valid
        });
        let combined = if shares.len() < nf {
            None
        } else {
            let combined = self.public.threshold.combine_optimistic(&prepared, &shares);
            if combined.signature.is_none() || !combined.invalid.is_empty() {
                self.counters.combinations_failed += 1;
            }
            invalid.extend(combined.invalid);
            combined.signature
        };
        let slot = self.slots.get_mut(&seq).expect("looked up above");
        for signer in invalid {
            let replica = ReplicaId(signer as u8);
            slot.invalid_shares.insert(replica);
            self.primary.share_suspects.insert(replica);
            self.counters.invalid_shares += 1;
            self.counters.reject_deferred(Rejection::InvalidShare { from: replica, seq });
        }
        let Some(signature) = combined else { return };
        self.counters.certificates_formed += 1;
        slot.certificate = Some(Certificate::Threshold(signature));
        self.broadcast(&Message::Certify(Certify { view, seq, digest, signature }));
        self.after_commit(now, seq);
    }

    // ----------------------------------------------------------------------------------------
    // CERTIFY.

    fn handle_certify(
        &mut self,
        now: Time,
        from: ReplicaId,
        certify: Certify,
    ) -> Result<(), Rejection> {
        if self.config.protocol != Protocol::PoeTs {
            return Err(Rejection::WrongProtocol {
                message: "certify",
                protocol: self.config.protocol.name(),
            });
        }
        self.check_from_primary("certify", from, certify.view)?;
        self.check_view("certify", certify.view)?;
        let seq = certify.seq;
        if self.check_log(seq)? == SlotPosition::Executed {
            self.counters.late(from);
            return Ok(());
        }
        let slot = self.slots.get(&seq);
        if let Some(existing) = slot.and_then(|slot| slot.certify.as_ref()) {
            return Err(if *existing == certify {
                Rejection::DuplicateVote { from, seq }
            } else {
                Rejection::ConflictingVote { from, seq }
            });
        }
        let proposal = slot.and_then(|slot| slot.proposal.as_ref());
        #[cfg(feature = "planted-bugs")]
        let proposal = proposal.filter(|_| !self.config.planted(PlantedBug::VoteDigestUnchecked));
        if let Some(proposal) = proposal
            && proposal.digest != certify.digest
        {
            return Err(Rejection::DigestMismatch {
                from,
                seq,
                expected: proposal.digest,
                actual: certify.digest,
            });
        }
        let prepared = match proposal.and_then(|proposal| proposal.prepared.clone()) {
            Some(prepared) => prepared,
            None => PreparedMessage::new(&support_signing_bytes(&certify.digest)),
        };
        self.public
            .threshold
            .verify(&prepared, &certify.signature)
            .map_err(|_| Rejection::InvalidCertificate { seq })?;
        self.slots.entry(seq).or_default().certify = Some(certify);
        self.try_commit(now, seq);
        self.try_adopt_contested(now, seq);
        Ok(())
    }

    /// A carried slot whose contested proposal (another batch than this replica's decision)
    /// has a valid certificate of the current view: the view decided it, not this replica's
    /// NV-PROPOSE. Rolls back to before the slot if it was executed (PROTOCOL §10.6), adopts
    /// the certified batch and executes on from there; slots above it that the view had
    /// certified again go back to be executed after it.
    fn try_adopt_contested(&mut self, now: Time, seq: Seq) {
        let nf = self.config.nf();
        let Some(contested) = self.changes.contested.get(&seq) else { return };
        let Some(slot) = self.slots.get(&seq) else { return };
        if slot.proposal.is_some() || slot.certificate.is_some() {
            return;
        }
        let certificate = match self.config.protocol {
            Protocol::PoeTs => slot
                .certify
                .as_ref()
                .filter(|certify| certify.digest == contested.digest)
                .map(|certify| Certificate::Threshold(certify.signature)),
            Protocol::PoeMac | Protocol::Pbft => {
                let matching: Vec<Support> = slot
                    .votes
                    .values()
                    .filter(|vote| vote.digest == contested.digest)
                    .take(nf)
                    .cloned()
                    .collect();
                (matching.len() == nf).then_some(Certificate::Supports(matching))
            }
        };
        let Some(certificate) = certificate else { return };
        if !self.config.protocol.speculative() && self.last_executed() >= seq {
            // PBFT executed `seq` on nf COMMITs: a prepared certificate of another batch there
            // proves more than f faults; never roll a committed request back for it.
            self.counters.safety_refusals += 1;
            return;
        }
        let Some(proposal) = self.changes.contested.remove(&seq) else { return };
        assert!(seq > self.stable_seq(), "a contested slot is above the stable checkpoint");
        self.counters.carried_replaced += 1;
        if self.last_executed() >= seq {
            // Blocks above it certified in this view are executed again after it.
            let again: Vec<(Seq, Proposal, Certificate)> = self
                .ledger
                .blocks()
                .filter(|block| block.seq > seq && block.view == self.view)
                .map(|block| {
                    let protocol = self.config.protocol;
                    let batch = block.batch.clone();
                    let proposal =
                        Proposal::new(protocol, block.view, block.seq, batch, block.batch_digest);
                    (block.seq, proposal, block.certificate.clone())
                })
                .collect();
            self.roll_back_to(now, Seq(seq.0 - 1));
            for (later, proposal, certificate) in again {
                // Executed before, so committed (PBFT: committed-local) then.
                let slot = self.slots.entry(later).or_default();
                slot.proposal = Some(proposal);
                slot.certificate = Some(certificate);
                slot.committed = true;
            }
        }
        self.changes.carried.insert(
            seq,
            SlotEvidence {
                view: proposal.view,
                seq,
                batch: proposal.batch.clone(),
                certificate: certificate.clone(),
            },
        );
        let slot = self.slots.entry(seq).or_default();
        slot.proposal = Some(proposal);
        slot.certificate = Some(certificate);
        self.after_commit(now, seq);
    }

    // ----------------------------------------------------------------------------------------
    // View-commit and execution.

    /// View-commits `seq` if its evidence is complete: a verified CERTIFY matching the proposal
    /// (PoE-TS backups), or nf matching signed supports, own included (PoE-MAC).
    fn try_commit(&mut self, now: Time, seq: Seq) {
        let nf = self.config.nf();
        let digest_checked = self.vote_digest_checked();
        let Some(slot) = self.slots.get_mut(&seq) else { return };
        let Some(proposal) = &slot.proposal else { return };
        if slot.certificate.is_some() {
            return;
        }
        let certificate = match self.config.protocol {
            Protocol::PoeTs => slot
                .certify
                .as_ref()
                .filter(|certify| certify.digest == proposal.digest || !digest_checked)
                .map(|certify| Certificate::Threshold(certify.signature)),
            Protocol::PoeMac | Protocol::Pbft => {
                let matching: Vec<Support> = slot
                    .votes
                    .values()
                    .filter(|vote| vote.digest == proposal.digest || !digest_checked)
                    .take(nf)
                    .cloned()
                    .collect();
                (matching.len() == nf).then_some(Certificate::Supports(matching))
            }
        };
        let Some(certificate) = certificate else { return };
        slot.certificate = Some(certificate);
        self.after_commit(now, seq);
    }

    /// `seq` just got its certificate: in PoE it is view-committed and executes (speculatively)
    /// in order; in PBFT it is prepared, and the commit phase follows.
    fn after_commit(&mut self, now: Time, seq: Seq) {
        if self.config.protocol.speculative() {
            self.committed(now, seq);
        } else {
            self.prepared(now, seq);
            #[cfg(feature = "planted-bugs")]
            if self.config.planted(PlantedBug::PbftExecuteAtPrepared)
                && self.slots.get(&seq).is_some_and(|slot| !slot.committed)
            {
                // Planted: executes at prepared, without the commit quorum.
                self.committed(now, seq);
            }
        }
    }

    /// Bookkeeping once `seq` is view-committed (PoE) or committed-local (PBFT); executes
    /// whatever is now ready.
    fn committed(&mut self, now: Time, seq: Seq) {
        if let Some(slot) = self.slots.get_mut(&seq) {
            slot.committed = true;
        }
        self.counters.slots_committed += 1;
        if seq <= self.last_executed() {
            // A carried slot this replica had executed, now certified in this view.
            self.recertified(now, seq);
            return;
        }
        let next = self.last_executed().next();
        let next_committed = self.slots.get(&next).is_some_and(|slot| slot.committed);
        if seq > next && !next_committed {
            self.counters.slots_committed_out_of_order += 1;
            self.expect_progress(now);
        }
        self.execute_ready(now);
    }

    /// Executes view-committed slots in strict sequence order, as far as they go.
    fn execute_ready(&mut self, now: Time) {
        let before = self.last_executed();
        // Bounded: each iteration removes one slot, and there are at most log_size of them.
        loop {
            let seq = self.last_executed().next();
            if self.slots.get(&seq).is_none_or(|slot| !slot.committed) {
                break;
            }
            let slot = self.slots.remove(&seq).expect("checked above");
            let proposal = slot.proposal.expect("a view-committed slot has its proposal");
            let certificate = slot.certificate.expect("checked above");
            self.execute(now, seq, proposal, certificate);
        }
        if self.last_executed() > before {
            self.executed(now);
        }
        self.try_propose(now, BatchCut::FullOnly);
    }

    fn execute(&mut self, now: Time, seq: Seq, proposal: Proposal, certificate: Certificate) {
        let view = proposal.view;
        let results =
            self.state.execute(seq, view, proposal.batch.iter().map(|request| &request.body));
        debug_assert_eq!(results.len(), proposal.batch.len());
        self.outbox.writes.push(Write::Block(StoredBlock {
            seq,
            view,
            batch: proposal.batch.clone(),
            certificate_view: view,
            certificate: certificate.clone(),
        }));
        let block = self.ledger.append(
            seq,
            view,
            proposal.digest,
            proposal.batch_digest,
            proposal.batch.clone(),
            certificate,
        );
        let block_hash = block.hash;
        self.changes.carried.remove(&seq);
        self.safety.forget_through(seq);
        self.counters.slots_executed += 1;
        let mut executed = Vec::with_capacity(results.len());
        for (request, result) in proposal.batch.iter().zip(results) {
            let body = &request.body;
            self.remove_pending(body.client, body.request);
            self.progress.forwarded.remove(&(body.client, body.request));
            match &result {
                Some(result) => {
                    self.counters.requests_executed += 1;
                    self.counters.informs_sent += 1;
                    self.send_inform(view, seq, body.client, body.request, result.clone());
                }
                None => self.counters.requests_skipped += 1,
            }
            executed.push(ExecutedRequest {
                client: body.client.0,
                request: body.request.0,
                op: body.op.clone(),
                result,
                signature: signature_hex(&request.signature.0),
            });
        }
        self.outbox.events.push_back(LedgerEvent::Execute(ExecuteEvent {
            time: now.as_nanos(),
            replica: u32::from(self.id.0),
            view: view.0,
            seq: seq.0,
            batch_digest: proposal.batch_digest,
            block_hash,
            requests: executed,
            state_digest: self.state.digest(),
        }));
        if seq.0.is_multiple_of(self.config.checkpoint_interval) {
            self.take_checkpoint(now);
        }
    }

    fn send_inform(
        &mut self,
        view: View,
        seq: Seq,
        client: ClientId,
        request: RequestId,
        result: OpResult,
    ) {
        if self.is_passive() {
            // A promise rests on nf informers whose VC-REQUESTs hold the slot; this replica's
            // VC-REQUEST for its vote floor may not.
            self.counters.withheld_below_vote_floor += 1;
            return;
        }
        let inform = Inform { replica: self.id, view, seq, client, request, result };
        let inform = AuthenticatedInform::seal(inform, &self.client_macs[client.index()]);
        self.outbox.transmits.push_back(Transmit::Client { to: client, inform });
    }

    /// Whether votes count only for the accepted proposal's digest: always, except under the
    /// planted `vote-digest-unchecked` ([`crate::planted`]).
    fn vote_digest_checked(&self) -> bool {
        #[cfg(feature = "planted-bugs")]
        return !self.config.planted(PlantedBug::VoteDigestUnchecked);
        #[cfg(not(feature = "planted-bugs"))]
        true
    }

    /// Below the vote floor ([`Safety::floor`], the highest view this replica signed a
    /// VC-REQUEST for; persisted, never lowered) the replica is passive: it may enter a lower
    /// view from a valid NV-PROPOSE (the others moved on there while it asked for a later one)
    /// and execute what that view certifies, but it neither supports, commits, proposes,
    /// informs clients nor signs checkpoints there. Its VC-REQUEST, which a later new primary
    /// may still count, then never misses a certificate or a promise it helped form, so quorum
    /// intersection holds. The safety rules refuse any vote below the floor.
    fn is_passive(&self) -> bool {
        self.view < self.safety.floor()
    }

    // ----------------------------------------------------------------------------------------
    // Requests and batching.

    /// Admits a client request: answers from the reply cache if it already executed, queues it
    /// at the primary, or forwards it to the primary from a backup.
    fn admit_request(
        &mut self,
        now: Time,
        request: SignedRequest,
        origin: Origin,
    ) -> Result<(), Rejection> {
        let body = &request.body;
        self.check_client(body.client)?;
        body.validate()?;
        if !self.changes.mode.is_normal() && self.state.client_entry(body.client).is_none() {
            return Err(Rejection::InViewChange { message: "request" });
        }
        if let Some(entry) = self.state.client_entry(body.client) {
            if body.request < entry.request {
                return Err(Rejection::StaleRequest {
                    client: body.client,
                    request: body.request,
                    last: entry.request,
                });
            }
            if body.request == entry.request {
                // At-most-once: the same reply again, never a second execution. Check the
                // signature first so that nobody but the client can trigger replies.
                request.verify(&self.public.clients[body.client.index()])?;
                let (view, seq, result) = (entry.view, entry.seq, entry.result.clone());
                self.counters.informs_resent += 1;
                self.send_inform(view, seq, body.client, body.request, result);
                return Ok(());
            }
        }
        if !self.changes.mode.is_normal() {
            return Err(Rejection::InViewChange { message: "request" });
        }
        if !self.is_primary() {
            if origin == Origin::Replica {
                return Err(Rejection::NotPrimary { message: "forward" });
            }
            // Checked before forwarding, so that nobody can make backups amplify garbage.
            request.verify(&self.public.clients[body.client.index()])?;
            self.counters.requests_forwarded += 1;
            let key = (body.client, body.request);
            if self.progress.forwarded.len() < self.config.request_queue_max as usize {
                self.progress.forwarded.entry(key).or_insert(now);
                self.expect_progress(now);
            }
            self.send(self.config.primary(self.view), &Message::Forward(request));
            return Ok(());
        }
        if origin == Origin::Replica {
            // A forwarded request is not authenticated by a client connection: check it now, or
            // a faulty backup could fill another client's queue slots with forgeries.
            request.verify(&self.public.clients[body.client.index()])?;
        }
        let key = (body.client, body.request);
        if self.primary.pending.contains(&key) {
            return Err(Rejection::RequestPending { client: key.0, request: key.1 });
        }
        let max = self.config.request_queue_max as usize;
        if self.primary.queue.len() >= max {
            return Err(Rejection::QueueFull { max });
        }
        let per_client = self.primary.pending_per_client.get(&key.0).copied().unwrap_or(0);
        if per_client >= self.config.client_pending_max {
            return Err(Rejection::ClientPendingLimit {
                client: key.0,
                max: self.config.client_pending_max,
            });
        }
        self.primary.pending.insert(key);
        *self.primary.pending_per_client.entry(key.0).or_default() += 1;
        self.primary.queue.push_back((now, request));
        self.try_propose(now, BatchCut::FullOnly);
        Ok(())
    }

    fn remove_pending(&mut self, client: ClientId, request: RequestId) {
        if self.primary.pending.remove(&(client, request)) {
            let count =
                self.primary.pending_per_client.get_mut(&client).expect("counted on insert");
            *count -= 1;
            if *count == 0 {
                self.primary.pending_per_client.remove(&client);
            }
        }
    }

    /// Whether the primary may propose its next slot: within its window of slots in flight,
    /// and below its high watermark (the stable checkpoint plus the log size, PROTOCOL §6),
    /// beyond which replicas refuse the slot.
    fn window_has_room(&self) -> bool {
        let next = self.primary.next_seq.0;
        next <= self.last_executed().0 + self.config.window
            && next <= self.stable_seq().0 + self.config.log_size
    }

    /// Slots this primary proposed that are not executed yet.
    fn slots_in_flight(&self) -> u64 {
        (self.primary.next_seq.0 - 1).saturating_sub(self.last_executed().0)
    }

    /// Whether the batch timer may cut a partial batch now: only while few slots are in
    /// flight. Under load the primary waits for full batches instead (a slot's threshold
    /// signature costs the same whatever its size); when the load is light, the pipeline is
    /// empty and a lone request is proposed after `batch_timeout`.
    fn partial_batch_allowed(&self) -> bool {
        self.slots_in_flight() < self.config.partial_batch_in_flight_max
    }

    /// Proposes batches while the primary has requests, room in its window, and a full batch
    /// (or, when `cut` allows it, an expired batch timer).
    ///
    /// Partial batches are cut only by the timer, never on the arrival of a request: the shell
    /// handles every input it already has before it fires due timers, so a primary that fell
    /// behind proposes full batches from its backlog instead of one partial batch per request.
    fn try_propose(&mut self, now: Time, cut: BatchCut) {
        if !self.is_primary() || !self.changes.mode.is_normal() || self.is_passive() {
            return;
        }
        // Bounded: every iteration takes at least one request off the queue.
        while !self.primary.queue.is_empty() && self.window_has_room() {
            let full = self.primary.queue.len() >= self.batch_size();
            let due = cut == BatchCut::FullOrDue
                && self.partial_batch_allowed()
                && self.batch_deadline().is_some_and(|deadline| now >= deadline);
            if !full && !due {
                break;
            }
            let batch = self.take_batch();
            if !batch.is_empty() {
                self.propose(now, batch);
            }
        }
    }

    /// When the oldest queued request has waited `batch_timeout`.
    fn batch_deadline(&self) -> Option<Time> {
        self.primary.queue.front().map(|(arrival, _)| *arrival + self.config.batch_timeout)
    }

    /// Takes up to a batch of requests off the queue, dropping those that executed meanwhile
    /// and then those whose signature fails. The signatures checked are exactly those proposed,
    /// so the backups, checking the same batch by the same rule, reach the same verdict.
    fn take_batch(&mut self) -> Vec<SignedRequest> {
        let count = self.primary.queue.len().min(self.batch_size());
        let candidates: Vec<SignedRequest> =
            self.primary.queue.drain(..count).map(|(_, request)| request).collect();
        let mut batch = Vec::with_capacity(candidates.len());
        for request in candidates {
            let body = &request.body;
            let executed = self
                .state
                .client_entry(body.client)
                .is_some_and(|entry| entry.request >= body.request);
            if executed {
                // Executed meanwhile (proposed by an earlier primary, or a retransmission).
                self.remove_pending(body.client, body.request);
            } else {
                batch.push(request);
            }
        }
        let invalid: HashSet<usize> = self.verify_signatures(&batch).into_iter().collect();
        if invalid.is_empty() {
            return batch;
        }
        let mut kept = Vec::with_capacity(batch.len() - invalid.len());
        for (index, request) in batch.into_iter().enumerate() {
            let (client, id) = (request.body.client, request.body.request);
            if invalid.contains(&index) {
                self.counters
                    .reject_deferred(Rejection::InvalidClientSignature { client, request: id });
                self.remove_pending(client, id);
            } else {
                kept.push(request);
            }
        }
        // Each remaining signature verifies alone, so the batch verifies as a whole (the rule
        // is the same for both: `crypto::ed25519`).
        debug_assert!(self.verify_signatures(&kept).is_empty());
        kept
    }

    fn propose(&mut self, now: Time, batch: Vec<SignedRequest>) {
        let seq = self.primary.next_seq;
        self.primary.next_seq = seq.next();
        self.propose_at(now, seq, batch.into());
    }

    /// Proposes `batch` at `seq` in the current view: a fresh slot, or one the view carried.
    /// Never below the vote floor (the slot then waits for the next view).
    fn propose_at(&mut self, now: Time, seq: Seq, batch: Arc<[SignedRequest]>) {
        let view = self.view;
        if self.is_passive() {
            return;
        }
        let batch_digest = batch_digest(&batch);
        let proposal = Proposal::new(self.config.protocol, view, seq, batch, batch_digest);
        let Ok(support) = self.vote(view, seq, proposal.digest, proposal.prepared.as_ref()) else {
            // Only possible if this replica voted for (view, seq) before a restart and the slot
            // now holds another batch: never sign twice; the slot waits for the next view.
            self.counters.reject_deferred(Rejection::ConflictingProposal { view, seq });
            return;
        };
        self.counters.proposals_sent += 1;
        self.expect_progress(now);
        self.broadcast(&Message::Propose(Propose { view, seq, batch: proposal.batch.clone() }));
        self.install_proposal(seq, proposal);
        self.slots.entry(seq).or_default().votes.insert(self.id, support.clone());
        match self.config.protocol {
            Protocol::PoeTs => self.try_certify(now, seq),
            Protocol::PoeMac | Protocol::Pbft => {
                self.broadcast(&Message::Support(support));
                self.try_commit(now, seq);
            }
        }
    }

    /// Signs a SUPPORT through the safety rules and queues the vote to be persisted before it
    /// leaves.
    fn vote(
        &mut self,
        view: View,
        seq: Seq,
        digest: Digest,
        prepared: Option<&PreparedMessage>,
    ) -> Result<Support, Refusal> {
        let fresh = !self.safety.has_voted(view, seq);
        let support = self.safety.support(view, seq, digest, prepared)?;
        // Planted: the vote leaves without being persisted first.
        #[cfg(feature = "planted-bugs")]
        let fresh = fresh && !self.config.planted(PlantedBug::VoteNotPersisted);
        if fresh {
            self.outbox.writes.push(Write::Vote(support.clone()));
        }
        Ok(support)
    }

    // ----------------------------------------------------------------------------------------
    // Sending.

    fn send(&mut self, to: ReplicaId, message: &Message) {
        debug_assert_ne!(to, self.id);
        let envelope = Envelope::new(message, &self.replica_macs[to.index()], self.id, to);
        self.outbox.transmits.push_back(Transmit::Replica { to, envelope });
    }

    /// Sends `message` to every other replica: encoded and hashed once, MAC'd per receiver.
    fn broadcast(&mut self, message: &Message) {
        let payload = Bytes::from(encode(message));
        let digest = sha256(&payload);
        for index in 0..self.config.replica_count {
            let to = ReplicaId(index);
            if to != self.id {
                let key = &self.replica_macs[to.index()];
                let envelope = Envelope::seal(payload.clone(), &digest, key, self.id, to);
                self.outbox.transmits.push_back(Transmit::Replica { to, envelope });
            }
        }
    }
}

/// The view of a normal-case message (those a replica in a view change refuses).
fn normal_case_view(message: &Message) -> Option<View> {
    match message {
        Message::Propose(propose) => Some(propose.view),
        Message::Support(support) => Some(support.view),
        Message::Certify(certify) => Some(certify.view),
        Message::Commit(commit) => Some(commit.view),
        Message::Forward(_)
        | Message::Checkpoint(_)
        | Message::ViewChange(_)
        | Message::NewView(_)
        | Message::StateRequest(_)
        | Message::StateTransfer(_) => None,
    }
}

/// The batch digest of a slot's evidence.
fn batch_digest_of(evidence: &SlotEvidence) -> Digest {
    batch_digest(&evidence.batch)
}

/// Who handed a request to the replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// The client itself, over its authenticated connection.
    Client,
    /// A backup forwarding a client's retransmission.
    Replica,
}

/// Lowercase hex of a signature, for the ledger (a table lookup per byte: this runs for every
/// request on every replica).
fn signature_hex(signature: &[u8; 64]) -> String {
    let mut text = [0u8; 128];
    hex::encode_to_slice(signature, &mut text).expect("128 hex digits for 64 bytes");
    String::from_utf8(text.to_vec()).expect("hex digits are ASCII")
}

/// When the primary may cut a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchCut {
    /// Only when a full batch of requests is queued.
    FullOnly,
    /// Also when the batch timer expired.
    FullOrDue,
}

/// Where a sequence number lies relative to a replica's log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotPosition {
    /// At or below the last executed slot.
    Executed,
    /// Inside the log: messages for it are processed.
    Open,
}
