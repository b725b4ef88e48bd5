//! Why the core rejected an input, and the counters it keeps.
//!
//! Byzantine or malformed input is an operating condition, not a bug: every rejection is a
//! typed [`Rejection`] returned to the caller and counted in [`Counters::rejected`] under its
//! [`Rejection::kind`]. The core never panics on input.

use std::collections::BTreeMap;

use serde::Serialize;

use super::safety::Refusal;
use super::types::{ClientId, Digest, ReplicaId, RequestId, Seq, View};

/// Why an input was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The sender id is not a replica of this cluster.
    #[error("unknown replica {from}")]
    UnknownReplica {
        /// The claimed sender.
        from: ReplicaId,
    },
    /// A message claims to come from the receiver itself.
    #[error("message from self")]
    FromSelf,
    /// The safety rules refused to sign a vote this input asked for.
    #[error("the safety rules refused: {0}")]
    Refused(#[from] Refusal),
    /// The payload exceeds the largest message.
    #[error("message of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// The MAC does not verify with the key shared with the claimed sender.
    #[error("invalid mac from {from}")]
    InvalidMac {
        /// The claimed sender.
        from: ReplicaId,
    },
    /// The payload does not decode as a message.
    #[error("malformed message: {reason}")]
    Malformed {
        /// The decoder's complaint.
        reason: String,
    },
    /// A request breaks a shape rule.
    #[error("malformed request {request} of client {client}: {reason}")]
    MalformedRequest {
        /// The client.
        client: ClientId,
        /// The request id.
        request: RequestId,
        /// The rule broken.
        reason: &'static str,
    },
    /// A client sent a request in another client's name.
    #[error("client {from} sent a request of client {claimed}")]
    ClientMismatch {
        /// The client the transport identified.
        from: ClientId,
        /// The client the request names.
        claimed: ClientId,
    },
    /// The client id is not a client of this cluster.
    #[error("unknown client {client}")]
    UnknownClient {
        /// The client.
        client: ClientId,
    },
    /// A client signature does not verify.
    #[error("invalid signature on request {request} of client {client}")]
    InvalidClientSignature {
        /// The client.
        client: ClientId,
        /// The request id.
        request: RequestId,
    },
    /// A message only the primary of its view may send came from another replica.
    #[error("{message} from {from}, but the primary of view {view} is {primary}")]
    NotFromPrimary {
        /// The message kind.
        message: &'static str,
        /// The sender.
        from: ReplicaId,
        /// The view's primary.
        primary: ReplicaId,
        /// The view.
        view: View,
    },
    /// A message only the primary handles reached a backup.
    #[error("{message} sent to a backup")]
    NotPrimary {
        /// The message kind.
        message: &'static str,
    },
    /// The message is for another view than the current one.
    #[error("{message} for view {view}, current view is {current}")]
    WrongView {
        /// The message kind.
        message: &'static str,
        /// Its view.
        view: View,
        /// The receiver's view.
        current: View,
    },
    /// The sequence number lies beyond the accepted range.
    #[error("seq {seq} outside the window ({low}, {high}]")]
    OutsideWindow {
        /// The sequence number.
        seq: Seq,
        /// The exclusive lower bound.
        low: Seq,
        /// The inclusive upper bound.
        high: Seq,
    },
    /// A proposal for a slot that is already executed.
    #[error("proposal for seq {seq}, already executed up to {last_executed}")]
    AlreadyExecuted {
        /// The sequence number.
        seq: Seq,
        /// The last executed slot.
        last_executed: Seq,
    },
    /// A second, different proposal for a slot (an equivocating primary).
    #[error("conflicting proposal for view {view} seq {seq}")]
    ConflictingProposal {
        /// The view.
        view: View,
        /// The sequence number.
        seq: Seq,
    },
    /// The same proposal again.
    #[error("duplicate proposal for view {view} seq {seq}")]
    DuplicateProposal {
        /// The view.
        view: View,
        /// The sequence number.
        seq: Seq,
    },
    /// A proposal with no requests.
    #[error("empty batch")]
    EmptyBatch,
    /// A proposal with more requests than a batch may hold.
    #[error("batch of {size} requests exceeds the maximum of {max}")]
    BatchTooLarge {
        /// Its size.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// A proposal that holds one request twice.
    #[error("request {request} of client {client} appears twice in one batch")]
    DuplicateRequestInBatch {
        /// The client.
        client: ClientId,
        /// The request id.
        request: RequestId,
    },
    /// A vote for another digest than the accepted proposal's; it does not count.
    #[error(
        "vote from {from} for seq {seq} names digest {actual:?}, the proposal's is {expected:?}"
    )]
    DigestMismatch {
        /// The voter.
        from: ReplicaId,
        /// The sequence number.
        seq: Seq,
        /// The accepted proposal's digest.
        expected: Digest,
        /// The vote's digest.
        actual: Digest,
    },
    /// The same vote again; it counts once.
    #[error("duplicate vote from {from} for seq {seq}")]
    DuplicateVote {
        /// The voter.
        from: ReplicaId,
        /// The sequence number.
        seq: Seq,
    },
    /// A second, different vote from one replica for one slot.
    #[error("conflicting vote from {from} for seq {seq}")]
    ConflictingVote {
        /// The voter.
        from: ReplicaId,
        /// The sequence number.
        seq: Seq,
    },
    /// A SUPPORT names another replica than its sender.
    #[error("support from {from} claims to be from {claimed}")]
    SupportSenderMismatch {
        /// The sender.
        from: ReplicaId,
        /// The replica named in the support.
        claimed: ReplicaId,
    },
    /// A SUPPORT carries the other variant's proof, or a CERTIFY reached a PoE-MAC replica.
    #[error("{message} does not belong to protocol {protocol}")]
    WrongProtocol {
        /// The message kind.
        message: &'static str,
        /// The receiver's protocol.
        protocol: &'static str,
    },
    /// A signed SUPPORT whose signature does not verify.
    #[error("invalid support signature from {from} for seq {seq}")]
    InvalidSupportSignature {
        /// The voter.
        from: ReplicaId,
        /// The sequence number.
        seq: Seq,
    },
    /// A threshold share that failed verification when the primary's optimistic combination
    /// failed; it was dropped.
    #[error("invalid threshold share from {from} for seq {seq}")]
    InvalidShare {
        /// The voter.
        from: ReplicaId,
        /// The sequence number.
        seq: Seq,
    },
    /// A CERTIFY whose threshold signature does not verify.
    #[error("invalid certificate for seq {seq}")]
    InvalidCertificate {
        /// The sequence number.
        seq: Seq,
    },
    /// A SUPPORT reached the primary for a slot it never proposed.
    #[error("support for seq {seq}, which this primary has not proposed")]
    UnknownSlot {
        /// The sequence number.
        seq: Seq,
    },
    /// A request older than the client's last executed one.
    #[error("request {request} of client {client} is older than its last executed {last}")]
    StaleRequest {
        /// The client.
        client: ClientId,
        /// The request id.
        request: RequestId,
        /// The client's last executed request.
        last: RequestId,
    },
    /// The request is already queued or in flight at this primary.
    #[error("request {request} of client {client} is already pending")]
    RequestPending {
        /// The client.
        client: ClientId,
        /// The request id.
        request: RequestId,
    },
    /// The primary's request queue is full.
    #[error("request queue full ({max} requests)")]
    QueueFull {
        /// The queue's capacity.
        max: usize,
    },
    /// The client already has the most requests pending that one client may have.
    #[error("client {client} already has {max} requests pending")]
    ClientPendingLimit {
        /// The client.
        client: ClientId,
        /// The limit.
        max: u32,
    },
    /// A normal-case input arrived while the replica is changing views.
    #[error("{message} refused during a view change")]
    InViewChange {
        /// The message kind.
        message: &'static str,
    },
    /// A signed message names another replica than its sender.
    #[error("{message} from {from} claims to be from {claimed}")]
    SenderMismatch {
        /// The message kind.
        message: &'static str,
        /// The sender.
        from: ReplicaId,
        /// The replica named in the message.
        claimed: ReplicaId,
    },
    /// A CHECKPOINT whose signature does not verify, or that is not at a checkpoint slot.
    #[error("invalid checkpoint from {from} for seq {seq}: {reason}")]
    InvalidCheckpoint {
        /// The sender.
        from: ReplicaId,
        /// The slot.
        seq: Seq,
        /// What is wrong.
        reason: &'static str,
    },
    /// A checkpoint certificate without nf valid signatures from distinct replicas.
    #[error("invalid checkpoint certificate for seq {seq}: {reason}")]
    InvalidCheckpointCertificate {
        /// The slot.
        seq: Seq,
        /// What is wrong.
        reason: &'static str,
    },
    /// A VC-REQUEST with a bad signature, checkpoint or evidence.
    #[error("invalid view-change request from {replica} for view {target}: {reason}")]
    InvalidViewChange {
        /// The requesting replica.
        replica: ReplicaId,
        /// Its target view.
        target: View,
        /// What is wrong.
        reason: String,
    },
    /// An NV-PROPOSE that is not nf valid VC-REQUESTs for its view from distinct replicas.
    #[error("invalid new-view proposal for view {view}: {reason}")]
    InvalidNewView {
        /// The proposed view.
        view: View,
        /// What is wrong.
        reason: String,
    },
    /// A view-change message for a view this replica is already past.
    #[error("{message} for view {view}, but this replica is in view {current}")]
    StaleView {
        /// The message kind.
        message: &'static str,
        /// The message's view.
        view: View,
        /// The replica's view.
        current: View,
    },
    /// A proposal for a carried slot whose batch is not the one the new view decided.
    #[error("proposal for carried seq {seq} differs from the decided batch")]
    CarriedMismatch {
        /// The slot.
        seq: Seq,
    },
    /// A VC-REQUEST for a view no higher than the one already held from its sender (a re-sent
    /// or overtaken request): nothing new.
    #[error("view-change request from {from} for view {target}, already holding one for {held}")]
    DuplicateViewChange {
        /// The sender.
        from: ReplicaId,
        /// The request's target view.
        target: View,
        /// The target of the request held from the sender.
        held: View,
    },
    /// A request answered less than the rate limit ago from the same sender.
    #[error("{message} from {from} within the rate limit")]
    RateLimited {
        /// The message kind.
        message: &'static str,
        /// The sender.
        from: ReplicaId,
    },
    /// A state transfer with nothing this replica can use: no newer view, checkpoint or slot.
    #[error("state transfer from {from} brings nothing new")]
    StaleStateTransfer {
        /// The sender.
        from: ReplicaId,
    },
    /// A state transfer whose checkpoint, snapshot or slots do not verify.
    #[error("invalid state transfer from {from}: {reason}")]
    InvalidStateTransfer {
        /// The sender.
        from: ReplicaId,
        /// What is wrong.
        reason: String,
    },
}

impl Rejection {
    /// A stable snake_case name for counters and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::UnknownReplica { .. } => "unknown_replica",
            Rejection::FromSelf => "from_self",
            Rejection::Refused(_) => "safety_refused",
            Rejection::TooLarge { .. } => "too_large",
            Rejection::InvalidMac { .. } => "invalid_mac",
            Rejection::Malformed { .. } => "malformed",
            Rejection::MalformedRequest { .. } => "malformed_request",
            Rejection::ClientMismatch { .. } => "client_mismatch",
            Rejection::UnknownClient { .. } => "unknown_client",
            Rejection::InvalidClientSignature { .. } => "invalid_client_signature",
            Rejection::NotFromPrimary { .. } => "not_from_primary",
            Rejection::NotPrimary { .. } => "not_primary",
            Rejection::WrongView { .. } => "wrong_view",
            Rejection::OutsideWindow { .. } => "outside_window",
            Rejection::AlreadyExecuted { .. } => "already_executed",
            Rejection::ConflictingProposal { .. } => "conflicting_proposal",
            Rejection::DuplicateProposal { .. } => "duplicate_proposal",
            Rejection::EmptyBatch => "empty_batch",
            Rejection::BatchTooLarge { .. } => "batch_too_large",
            Rejection::DuplicateRequestInBatch { .. } => "duplicate_request_in_batch",
            Rejection::DigestMismatch { .. } => "digest_mismatch",
            Rejection::DuplicateVote { .. } => "duplicate_vote",
            Rejection::ConflictingVote { .. } => "conflicting_vote",
            Rejection::SupportSenderMismatch { .. } => "support_sender_mismatch",
            Rejection::WrongProtocol { .. } => "wrong_protocol",
            Rejection::InvalidSupportSignature { .. } => "invalid_support_signature",
            Rejection::InvalidShare { .. } => "invalid_share",
            Rejection::InvalidCertificate { .. } => "invalid_certificate",
            Rejection::UnknownSlot { .. } => "unknown_slot",
            Rejection::StaleRequest { .. } => "stale_request",
            Rejection::RequestPending { .. } => "request_pending",
            Rejection::QueueFull { .. } => "queue_full",
            Rejection::ClientPendingLimit { .. } => "client_pending_limit",
            Rejection::InViewChange { .. } => "in_view_change",
            Rejection::SenderMismatch { .. } => "sender_mismatch",
            Rejection::InvalidCheckpoint { .. } => "invalid_checkpoint",
            Rejection::InvalidCheckpointCertificate { .. } => "invalid_checkpoint_certificate",
            Rejection::InvalidViewChange { .. } => "invalid_view_change",
            Rejection::InvalidNewView { .. } => "invalid_new_view",
            Rejection::StaleView { .. } => "stale_view",
            Rejection::CarriedMismatch { .. } => "carried_mismatch",
            Rejection::DuplicateViewChange { .. } => "duplicate_view_change",
            Rejection::RateLimited { .. } => "rate_limited",
            Rejection::StaleStateTransfer { .. } => "stale_state_transfer",
            Rejection::InvalidStateTransfer { .. } => "invalid_state_transfer",
        }
    }
}

/// What a replica has done and refused, for status reports and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Replica-to-replica messages handed to the core.
    pub messages_received: u64,
    /// Client requests handed to the core.
    pub requests_received: u64,
    /// Requests passed on to the primary.
    pub requests_forwarded: u64,
    /// Proposals this replica made as primary.
    pub proposals_sent: u64,
    /// Proposals accepted (and supported) from a primary.
    pub proposals_accepted: u64,
    /// Threshold certificates this replica combined as primary.
    pub certificates_formed: u64,
    /// Optimistic share combinations that failed, so that shares were verified one by one.
    pub combinations_failed: u64,
    /// Signature shares found invalid (when a combination failed, or checked beforehand
    /// because their sender sent a bad share before).
    pub invalid_shares: u64,
    /// Slots view-committed (PoE) or committed-local (PBFT).
    pub slots_committed: u64,
    /// PBFT: slots prepared (nf matching signed PREPAREs, the PRE-PREPARE included).
    pub slots_prepared: u64,
    /// PBFT: COMMITs sent.
    pub commits_sent: u64,
    /// Votes the safety rules refused to sign (a slot re-proposed with another batch after a
    /// restart, a COMMIT for a digest this replica never supported).
    pub safety_refusals: u64,
    /// Slots view-committed while an earlier slot was still uncommitted (agreement out of order).
    pub slots_committed_out_of_order: u64,
    /// Slots executed.
    pub slots_executed: u64,
    /// Requests executed.
    pub requests_executed: u64,
    /// Requests in executed batches skipped by the at-most-once table.
    pub requests_skipped: u64,
    /// INFORMs sent on execution.
    pub informs_sent: u64,
    /// INFORMs and CHECKPOINT votes not sent because the replica was below its vote floor.
    pub withheld_below_vote_floor: u64,
    /// Cached INFORMs re-sent for a retransmitted request.
    pub informs_resent: u64,
    /// Votes that arrived for a slot already executed (benign, ignored).
    pub votes_late: u64,
    /// `votes_late` by sender: how a replayed old vote shows at an honest receiver.
    pub late_from: BTreeMap<u8, u64>,
    /// View changes this replica started or joined (VC-REQUESTs sent).
    pub view_changes_started: u64,
    /// Views entered through a valid NV-PROPOSE.
    pub views_entered: u64,
    /// Rollbacks (each undoing one or more slots).
    pub rollbacks: u64,
    /// Slots undone by rollbacks.
    pub slots_rolled_back: u64,
    /// Carried slots re-certified in a new view after this replica had executed them.
    pub slots_recertified: u64,
    /// Carried slots whose decided batch the new view certified another batch for: this
    /// replica rolled back to before them and adopted the certified one (PROTOCOL §10.6).
    pub carried_replaced: u64,
    /// Checkpoints taken.
    pub checkpoints_taken: u64,
    /// Checkpoints that became stable here.
    pub checkpoints_stable: u64,
    /// State requests sent.
    pub state_requests_sent: u64,
    /// State transfers sent in answer.
    pub state_transfers_served: u64,
    /// NV-PROPOSEs sent again, in a state transfer, to a replica that asked for a view this
    /// replica had already entered (it missed the NV-PROPOSE).
    pub new_views_resent: u64,
    /// Snapshots installed from another replica.
    pub snapshots_installed: u64,
    /// Slots executed from a state transfer's certified tail.
    pub tail_slots_executed: u64,
    /// Rejected inputs by [`Rejection::kind`].
    pub rejected: BTreeMap<&'static str, u64>,
    /// How many of `rejected` were counted outside the input they refuse: votes, threshold
    /// shares, client requests and next-view messages that were accepted (held) when they
    /// arrived and found invalid later, and a primary's own proposal refused by its safety
    /// rules. Every other rejection refuses the input being handled, exactly once: over any
    /// span of inputs, the rise of `rejected` minus the rise of this is the number of inputs
    /// that returned a rejection.
    pub rejected_deferred: u64,
    /// Rejected replica messages by sender (the transport's identity): how an adversary's
    /// altered or forged traffic shows at an honest receiver.
    pub rejected_from: BTreeMap<u8, u64>,
}

impl Counters {
    /// Counts a rejection and returns it, so call sites can `return Err(counters.reject(..))`.
    pub fn reject(&mut self, rejection: Rejection) -> Rejection {
        *self.rejected.entry(rejection.kind()).or_default() += 1;
        rejection
    }

    /// Counts a rejection of something accepted earlier (see [`Counters::rejected_deferred`]).
    pub fn reject_deferred(&mut self, rejection: Rejection) -> Rejection {
        self.rejected_deferred += 1;
        self.reject(rejection)
    }

    /// Counts a vote from `from` that came after its slot was executed (or its checkpoint
    /// stable): benign, ignored.
    pub fn late(&mut self, from: ReplicaId) {
        self.votes_late += 1;
        *self.late_from.entry(from.0).or_default() += 1;
    }

    /// How many rejections of `kind` were counted.
    pub fn rejected(&self, kind: &str) -> u64 {
        self.rejected.get(kind).copied().unwrap_or(0)
    }
}
