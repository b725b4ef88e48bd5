//! Replica ledger events (`ledger.jsonl`), one JSON object per line, appended as they happen.
//!
//! The checker audits speculation and rollback from these: what each replica executed at which
//! sequence number, under which view, with which results and state digest afterwards.
//!
//! # Digests
//!
//! - `batch_digest` identifies a batch: the digest of its requests' digests, in order.
//! - `block_hash` chains the ledger over (seq, batch digest, previous block hash). It
//!   deliberately leaves out the view and the certificate, which honest replicas may hold in
//!   different but equally valid forms, so equal block hashes at k mean equal batches at 1..=k.
//! - `state_digest` is the digest of the replica's whole store and at-most-once table after the
//!   slot; the checker recomputes it.
//!
//! The replica and the checker each compute these independently, from the byte layout below;
//! `history/vectors/digests.json` holds known-answer vectors for it, derived by
//! `history/vectors/derive.py` (Python, `hashlib` only) from this section alone.
//!
//! # Byte layout
//!
//! `H(tag, f1, f2, ...)` is SHA-256 over the concatenation of the tag and the fields, each
//! encoded as follows; nothing else is hashed:
//!
//! - a **byte string** (the domain tag itself, a key, a request body, a public key): its length
//!   as a u64 little-endian, then its bytes. The tag is length-prefixed like any byte string:
//!   `H("ordeal/batch/v1", ...)` starts with the 8 bytes `0f 00 00 00 00 00 00 00` and then
//!   `ordeal/batch/v1`;
//! - an **integer** (seq, count, client id, request id, replica count, replica id): a u64
//!   little-endian (narrower ids widened); an `i64` value: the u64 with the same two's-complement
//!   bits;
//! - a **digest**: its 32 bytes, no length.
//!
//! The digests:
//!
//! - **request body**: the postcard encoding of (`client`: u32, `request`: u64, `op`), i.e.
//!   unsigned integers as LEB128 varints, the operation as its variant index (a varint, in
//!   declaration order of [`crate::Operation`]: read 0, write 1, cas 2, transfer 3, read-all 4)
//!   followed by its fields in declaration order: a string as a varint byte length and its UTF-8
//!   bytes, an `i64` as a zigzag varint (`(v << 1) ^ (v >> 63)`), the key list of read-all as a
//!   varint count and the strings;
//! - **request digest** = `H("ordeal/request/v1", body)`, the body as a byte string. (The client
//!   signs the raw bytes `"ordeal/request/v1" ‖ body`, with no length prefixes: the digest is
//!   not the hash of the signed bytes, and it does not cover the signature.)
//! - **`batch_digest`** = `H("ordeal/batch/v1", count, request digest 1, ..., request digest n)`;
//! - **`block_hash`** at k = `H("ordeal/block/v1", k, batch_digest, previous)`, `previous` being
//!   the block hash at k - 1 and, for block 1, the genesis hash;
//! - **genesis hash** = `H("ordeal/genesis/v1", n, p, key)`: the replica count n, the view-0
//!   primary's id p and its ed25519 public key (32 bytes, as a byte string: length-prefixed);
//! - **`state_digest`** after slot k = `H("ordeal/state/v1", k, S_kv, S_clients)`, where `S_kv`
//!   is the sum over the present keys of `H("ordeal/kv/v1", key, value)` and `S_clients` the sum
//!   over the clients with an executed request of `H("ordeal/client/v1", client, its last
//!   executed request id)`; each sum is taken modulo 2^256 with every digest read as a
//!   little-endian integer, and written back as 32 little-endian bytes (an empty sum is 32 zero
//!   bytes). The genesis store's digest is that at k = 0 (no client has executed anything).
//! - **checkpoint signing digest** = `H("ordeal/checkpoint/v1", k, state_digest, block_hash)`:
//!   what each CHECKPOINT's ed25519 signature is over (its 32 bytes), as recorded in stable
//!   `checkpoint` events' certificates.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::digest::Digest;
use crate::kv::{OpResult, Operation};

/// One ledger event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum LedgerEvent {
    /// A batch was executed (speculatively) at a sequence number.
    Execute(ExecuteEvent),
    /// Executions above a sequence number were undone.
    Rollback(RollbackEvent),
    /// A checkpoint was taken or became stable.
    Checkpoint(CheckpointEvent),
    /// The replica entered a view.
    ViewEntered(ViewEvent),
    /// The replica replaced its state with a certified snapshot (state transfer).
    StateTransfer(StateTransferEvent),
    /// A slot the replica had executed and kept was certified again in a later view.
    Recertified(RecertifiedEvent),
}

impl LedgerEvent {
    /// The time of the event, in nanoseconds on the recording replica's clock.
    pub fn time(&self) -> u64 {
        match self {
            LedgerEvent::Execute(event) => event.time,
            LedgerEvent::Rollback(event) => event.time,
            LedgerEvent::Checkpoint(event) => event.time,
            LedgerEvent::ViewEntered(event) => event.time,
            LedgerEvent::StateTransfer(event) => event.time,
            LedgerEvent::Recertified(event) => event.time,
        }
    }

    /// Sets the time of the event (a simulated replica's events are stamped with the world's
    /// time, whatever its own clock reads, as a replica process's are with the run's clock).
    pub fn set_time(&mut self, time: u64) {
        match self {
            LedgerEvent::Execute(event) => event.time = time,
            LedgerEvent::Rollback(event) => event.time = time,
            LedgerEvent::Checkpoint(event) => event.time = time,
            LedgerEvent::ViewEntered(event) => event.time = time,
            LedgerEvent::StateTransfer(event) => event.time = time,
            LedgerEvent::Recertified(event) => event.time = time,
        }
    }
}

/// A batch executed at `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecuteEvent {
    /// Nanoseconds (replica clock).
    pub time: u64,
    /// The executing replica.
    pub replica: u32,
    /// The view of the certificate the batch executed under.
    pub view: u64,
    /// The sequence number.
    pub seq: u64,
    /// The digest of the batch.
    pub batch_digest: Digest,
    /// The ledger's hash-chain value after this block.
    pub block_hash: Digest,
    /// Every request of the batch in order, with its result (or why it was skipped).
    pub requests: Vec<ExecutedRequest>,
    /// The state digest after the slot.
    pub state_digest: Digest,
}

/// One request of an executed batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecutedRequest {
    /// The client that signed it.
    pub client: u32,
    /// The client's request id.
    pub request: u64,
    /// The operation.
    pub op: Operation,
    /// The result; `None` when the request was skipped because the at-most-once table showed it
    /// (or a later request of the same client) already executed.
    pub result: Option<OpResult>,
    /// The client's ed25519 signature over the request body, hex.
    pub signature: String,
}

/// Executions at `to_seq + 1 ..= from_seq` were undone, highest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RollbackEvent {
    /// Nanoseconds (replica clock).
    pub time: u64,
    /// The rolling-back replica.
    pub replica: u32,
    /// The highest sequence number undone.
    pub from_seq: u64,
    /// The sequence number that is executed last after the rollback.
    pub to_seq: u64,
    /// The state digest after the rollback (that of `to_seq`).
    pub state_digest: Digest,
}

/// A checkpoint at `seq`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointEvent {
    /// Nanoseconds (replica clock).
    pub time: u64,
    /// The replica.
    pub replica: u32,
    /// The checkpointed sequence number.
    pub seq: u64,
    /// The state digest at `seq`.
    pub state_digest: Digest,
    /// True once nf matching checkpoint messages made it stable.
    pub stable: bool,
    /// On a stable checkpoint: the certificate the replica holds for it (the checker checks
    /// its quorum and signatures). Absent on a taken (unstable) one and in older ledgers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate: Option<CheckpointCertificateRecord>,
}

/// A checkpoint certificate: CHECKPOINT signatures of distinct replicas on one (seq, state
/// digest, block hash). Each signature is ed25519 by the replica's key over
/// `H("ordeal/checkpoint/v1", seq, state_digest, block_hash)` (the 32 bytes of that digest,
/// byte layout above).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCertificateRecord {
    /// The checkpointed sequence number.
    pub seq: u64,
    /// The state digest at `seq`.
    pub state_digest: Digest,
    /// The ledger's hash-chain value at `seq`.
    pub block_hash: Digest,
    /// The signatures, as the certificate lists them.
    pub signatures: Vec<SignatureRecord>,
}

/// One replica's ed25519 signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignatureRecord {
    /// The signer.
    pub replica: u32,
    /// R ‖ s, 64 bytes, hex.
    pub signature: String,
}

/// The NV-PROPOSE a replica entered a view on: what it decided from and what it decided. The
/// checker checks the VC-REQUESTs (count, signers, signatures, checkpoint certificates) and
/// computes the decision again (PROTOCOL §5.3 steps 2–4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewViewRecord {
    /// The VC-REQUESTs, in the NV-PROPOSE's order.
    pub requests: Vec<ViewChangeRecord>,
    /// The decision the replica took from them.
    pub decision: DecisionRecord,
}

/// One VC-REQUEST of an NV-PROPOSE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChangeRecord {
    /// The sender.
    pub replica: u32,
    /// The view it asks for.
    pub target: u64,
    /// Its stable checkpoint's certificate, if any.
    pub checkpoint: Option<CheckpointCertificateRecord>,
    /// Its evidence, one certified slot each, in its order.
    pub evidence: Vec<EvidenceRecord>,
    /// The digest its signature is over: `H("ordeal/view-change/v1", contents)`, the contents
    /// being the postcard encoding of (target, replica, checkpoint, evidence) as sent (too large
    /// to record; the replica hashes what it received).
    pub signing_digest: Digest,
    /// The sender's ed25519 signature over `signing_digest`'s 32 bytes, hex.
    pub signature: String,
}

/// A certified slot as a VC-REQUEST or a decision names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvidenceRecord {
    /// The slot.
    pub seq: u64,
    /// The view of its certificate.
    pub view: u64,
    /// The certified batch's digest.
    pub batch_digest: Digest,
}

/// A new view's decision: the stable checkpoint it starts from and the slots it carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// k_s: the decided checkpoint's sequence number (0: none).
    pub checkpoint: u64,
    /// (k_s, k_max], ascending and contiguous, with the certificate chosen for each.
    pub slots: Vec<EvidenceRecord>,
}

/// The replica entered `view`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewEvent {
    /// Nanoseconds (replica clock).
    pub time: u64,
    /// The replica.
    pub replica: u32,
    /// The view entered.
    pub view: u64,
    /// The replica's new-view timeout when it entered the view, in milliseconds: the base
    /// doubled per view change that failed in a row since it last executed (its backoff). The
    /// liveness oracle cannot tell a stuck cluster from one still backing off for longer than
    /// its window.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_ms: Option<u64>,
    /// The NV-PROPOSE the view was entered on (absent when a restarted replica recovers its
    /// view from its store, and in older ledgers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new_view: Option<NewViewRecord>,
}

/// The replica installed the snapshot of a stable checkpoint at `seq` (state transfer from
/// another replica, or its own stored checkpoint on restart): its executed history now ends at
/// `seq` with `block_hash`, and its store and at-most-once table are exactly the snapshot's.
/// An nf certificate of signed checkpoints vouched for `block_hash` and `state_digest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StateTransferEvent {
    /// Nanoseconds (replica clock).
    pub time: u64,
    /// The replica.
    pub replica: u32,
    /// The checkpointed sequence number; always above the replica's head before the event.
    pub seq: u64,
    /// The ledger's hash-chain value at `seq`.
    pub block_hash: Digest,
    /// The state digest at `seq` (of `store` and `clients`).
    pub state_digest: Digest,
    /// Every present key and its value.
    pub store: BTreeMap<String, i64>,
    /// Each client's last executed request id, as (client, request) pairs by client.
    pub clients: Vec<(u32, u64)>,
}

/// A slot the replica had executed (under `old_view`'s certificate) and kept across a view
/// change was certified again in `new_view` (PROTOCOL §5.4): its block stays, and from now on
/// the slot's proofs carry `new_view`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecertifiedEvent {
    /// Nanoseconds (replica clock).
    pub time: u64,
    /// The replica.
    pub replica: u32,
    /// The sequence number.
    pub seq: u64,
    /// The view of the certificate the slot had.
    pub old_view: u64,
    /// The view of the new certificate.
    pub new_view: u64,
    /// The digest of the batch, which the new certificate names too.
    pub batch_digest: Digest,
}
