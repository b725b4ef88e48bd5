//! Protocol messages, their canonical encoding, and the digests and signing bytes derived from
//! them.
//!
//! Replica-to-replica messages travel as an [`Envelope`]: the postcard encoding of a
//! [`Message`] plus an HMAC-SHA256 tag over (sender, receiver, SHA-256 of the payload) with the
//! pair's key. The core encodes once per broadcast, MACs once per receiver, and decodes only after
//! the MAC verified, so a forged or corrupted frame costs one hash and one HMAC.
//!
//! Client requests are signed (ed25519) because every replica must check them; INFORMs carry a
//! MAC for their one client.

use std::sync::Arc;

use bytes::Bytes;
use history::{
    CheckpointCertificateRecord, EvidenceRecord, OpResult, Operation, SignatureRecord,
    ViewChangeRecord,
};
use serde::{Deserialize, Serialize};

use super::config::{KEY_LENGTH_MAX, MESSAGE_SIZE_MAX, READ_ALL_KEYS_MAX, REQUEST_SIZE_MAX};
use super::error::Rejection;
use super::ledger::Certificate;
use super::state_machine::Snapshot;
use super::types::{ClientId, Digest, ReplicaId, RequestId, Seq, View};
use crate::crypto::ed25519::{PublicKey, Signature, SigningKey};
use crate::crypto::hash::{Hasher, sha256};
use crate::crypto::mac::{Mac, MacKey};
use crate::crypto::threshold::BlsSignature;

/// What a client asks for: signed by the client.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RequestBody {
    /// The client.
    pub client: ClientId,
    /// The client's request id (strictly increasing per client, from 1).
    pub request: RequestId,
    /// The operation.
    pub op: Operation,
}

impl RequestBody {
    /// The bytes the client signs: a domain tag and the postcard encoding of the body.
    pub fn signing_bytes(&self) -> Vec<u8> {
        let mut bytes = b"ordeal/request/v1".to_vec();
        bytes.extend_from_slice(&encode(self));
        bytes
    }

    /// Checks the body's shape: a request id of at least 1, keys no longer than
    /// [`KEY_LENGTH_MAX`], between 1 and [`READ_ALL_KEYS_MAX`] keys in a `read-all`, an encoding
    /// no larger than [`REQUEST_SIZE_MAX`]. The client id is checked by the receiver, which knows
    /// the cluster.
    ///
    /// # Errors
    ///
    /// [`Rejection::MalformedRequest`] naming the rule broken.
    pub fn validate(&self) -> Result<(), Rejection> {
        let malformed = |reason| Rejection::MalformedRequest {
            client: self.client,
            request: self.request,
            reason,
        };
        if self.request.0 == 0 {
            return Err(malformed("request id 0"));
        }
        if self.op.keys().iter().any(|key| key.len() > KEY_LENGTH_MAX) {
            return Err(malformed("key longer than 32 bytes"));
        }
        if let Operation::ReadAll { keys } = &self.op
            && !(1..=READ_ALL_KEYS_MAX).contains(&keys.len())
        {
            return Err(malformed("read-all must name 1 to 16 keys"));
        }
        if encode(self).len() > REQUEST_SIZE_MAX {
            return Err(malformed("request larger than 1024 bytes"));
        }
        Ok(())
    }
}

/// A request with its client's signature.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SignedRequest {
    /// The request.
    pub body: RequestBody,
    /// The client's ed25519 signature over [`RequestBody::signing_bytes`].
    pub signature: Signature,
}

impl SignedRequest {
    /// Signs `body` with the client's key.
    pub fn sign(body: RequestBody, key: &SigningKey) -> SignedRequest {
        let signature = key.sign(&body.signing_bytes());
        SignedRequest { body, signature }
    }

    /// Verifies the signature against the client's public key.
    ///
    /// # Errors
    ///
    /// [`Rejection::InvalidClientSignature`].
    pub fn verify(&self, key: &PublicKey) -> Result<(), Rejection> {
        key.verify(&self.body.signing_bytes(), &self.signature).map_err(|_| {
            Rejection::InvalidClientSignature {
                client: self.body.client,
                request: self.body.request,
            }
        })
    }

    /// The digest of the request body (the signature is not part of it: a batch is the same
    /// batch whichever valid signature bytes carried it).
    pub fn digest(&self) -> Digest {
        Hasher::new(b"ordeal/request/v1").bytes(&encode(&self.body)).finish()
    }
}

/// The digest of a batch: its length and its requests' digests, in order.
pub fn batch_digest(batch: &[SignedRequest]) -> Digest {
    let mut hasher = Hasher::new(b"ordeal/batch/v1").u64(batch.len() as u64);
    for request in batch {
        hasher = hasher.digest(&request.digest());
    }
    hasher.finish()
}

/// h = D(batch, v, k): the digest a SUPPORT and a certificate are over. It binds the view and
/// the sequence number, so a certificate can be replayed in no other slot or view (§2).
pub fn proposal_digest(view: View, seq: Seq, batch_digest: &Digest) -> Digest {
    Hasher::new(b"ordeal/proposal/v1").u64(view.0).u64(seq.0).digest(batch_digest).finish()
}

/// The bytes a SUPPORT's signature or threshold share is over.
pub fn support_signing_bytes(digest: &Digest) -> Vec<u8> {
    let mut bytes = b"ordeal/support/v1".to_vec();
    bytes.extend_from_slice(&digest.0);
    bytes
}

/// A replica-to-replica message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// PROPOSE(v, k, batch), primary → all.
    Propose(Propose),
    /// SUPPORT(v, k, h): TS → primary with a share; MAC → all, signed.
    Support(Support),
    /// CERTIFY(v, k, h, ⟨h⟩), primary → all (TS only).
    Certify(Certify),
    /// A client request a backup passes on to the primary (the client timed out and
    /// broadcast it).
    Forward(SignedRequest),
    /// CHECKPOINT(k, state digest, block hash), signed, replica → all.
    Checkpoint(Checkpoint),
    /// VC-REQUEST: leave the current view for `target`, with the evidence; signed.
    ViewChange(Arc<ViewChange>),
    /// NV-PROPOSE(v, nf VC-REQUESTs), new primary → all.
    NewView(Arc<NewView>),
    /// A replica that fell behind asks for a stable checkpoint, a newer view or slots.
    StateRequest(StateRequest),
    /// The answer to a [`StateRequest`].
    StateTransfer(Arc<StateTransfer>),
    /// PBFT's COMMIT(v, k, h), replica → all, once the slot is prepared (nf signed PREPAREs,
    /// which travel as [`Message::Support`]; PRE-PREPARE travels as [`Message::Propose`]).
    Commit(Commit),
}

impl Message {
    /// The message's name, for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Propose(_) => "propose",
            Message::Support(_) => "support",
            Message::Certify(_) => "certify",
            Message::Forward(_) => "forward",
            Message::Checkpoint(_) => "checkpoint",
            Message::ViewChange(_) => "view-change",
            Message::NewView(_) => "new-view",
            Message::StateRequest(_) => "state-request",
            Message::StateTransfer(_) => "state-transfer",
            Message::Commit(_) => "commit",
        }
    }
}

/// PROPOSE(v, k, batch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Propose {
    /// The view.
    pub view: View,
    /// The sequence number.
    pub seq: Seq,
    /// The requests, in execution order.
    pub batch: Arc<[SignedRequest]>,
}

/// SUPPORT(v, k, h) from `replica`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Support {
    /// The view.
    pub view: View,
    /// The sequence number.
    pub seq: Seq,
    /// h, the proposal digest supported.
    pub digest: Digest,
    /// The supporting replica (must be the sender).
    pub replica: ReplicaId,
    /// The threshold share (PoE-TS) or ed25519 signature (PoE-MAC) over
    /// [`support_signing_bytes`]`(h)`.
    pub proof: SupportProof,
}

/// PBFT's COMMIT(v, k, h) from `replica`: it holds a prepared certificate for `digest` at
/// (view, seq). Authenticated by the pair MAC of its envelope only, as in Castro–Liskov: a
/// commit quorum is never forwarded (view changes carry prepared certificates, which are
/// signed), so it needs no signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    /// The view.
    pub view: View,
    /// The sequence number.
    pub seq: Seq,
    /// h, the proposal digest prepared.
    pub digest: Digest,
    /// The committing replica (must be the sender).
    pub replica: ReplicaId,
}

/// What makes a SUPPORT count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SupportProof {
    /// PoE-TS: a BLS threshold signature share.
    Share(BlsSignature),
    /// PoE-MAC: an ed25519 signature, so nf of them form transferable evidence.
    Signature(Signature),
}

/// CERTIFY(v, k, h, ⟨h⟩).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certify {
    /// The view.
    pub view: View,
    /// The sequence number.
    pub seq: Seq,
    /// h.
    pub digest: Digest,
    /// The group signature on h, combined from nf shares.
    pub signature: BlsSignature,
}

/// CHECKPOINT(k, state digest, block hash) signed by `replica` (ed25519, so that nf of them
/// form a certificate any replica can check).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The checkpointed slot.
    pub seq: Seq,
    /// The state digest after it.
    pub state_digest: Digest,
    /// The ledger's hash after it.
    pub block_hash: Digest,
    /// The signer.
    pub replica: ReplicaId,
    /// Over [`checkpoint_signing_bytes`].
    pub signature: Signature,
}

impl Checkpoint {
    /// Signs the checkpoint again with `key` over its current fields (a replica altering its
    /// own checkpoint, as a Byzantine hook or a fuzzer does, keeps it validly signed).
    pub fn sign_with(&mut self, key: &SigningKey) {
        let bytes = checkpoint_signing_bytes(self.seq, &self.state_digest, &self.block_hash);
        self.signature = key.sign(&bytes);
    }
}

/// The bytes a CHECKPOINT's signature is over.
pub fn checkpoint_signing_bytes(seq: Seq, state_digest: &Digest, block_hash: &Digest) -> Vec<u8> {
    let digest = Hasher::new(b"ordeal/checkpoint/v1")
        .u64(seq.0)
        .digest(state_digest)
        .digest(block_hash)
        .finish();
    digest.0.to_vec()
}

/// A stable checkpoint's proof: nf CHECKPOINT signatures from distinct replicas on the same
/// (seq, state digest, block hash).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCertificate {
    /// The slot.
    pub seq: Seq,
    /// The state digest after it.
    pub state_digest: Digest,
    /// The ledger's hash after it.
    pub block_hash: Digest,
    /// The signers and their signatures, by replica id.
    pub signatures: Vec<(ReplicaId, Signature)>,
}

impl CheckpointCertificate {
    /// The ledger's record of this certificate (stable `checkpoint` events, VC-REQUESTs).
    pub fn record(&self) -> CheckpointCertificateRecord {
        CheckpointCertificateRecord {
            seq: self.seq.0,
            state_digest: self.state_digest,
            block_hash: self.block_hash,
            signatures: self
                .signatures
                .iter()
                .map(|(replica, signature)| SignatureRecord {
                    replica: u32::from(replica.0),
                    signature: hex::encode(signature.0),
                })
                .collect(),
        }
    }
}

/// A view-committed slot and its evidence: the CERTIFY's threshold signature (PoE-TS) or nf
/// signed SUPPORTs (PoE-MAC) over D(batch, view, seq).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotEvidence {
    /// The view the certificate is from.
    pub view: View,
    /// The slot.
    pub seq: Seq,
    /// The batch.
    pub batch: Arc<[SignedRequest]>,
    /// The certificate.
    pub certificate: Certificate,
}

impl SlotEvidence {
    /// PBFT's null request for slot `seq` (PROTOCOL §7 view change step 3): an empty batch with
    /// no certificate, under view 0. Only a decision holds one (a gap below max-s that no
    /// VIEW-CHANGE holds a prepared certificate for); it is never sent as evidence, and no real
    /// certificate names an empty batch (proposals of empty batches are refused), so
    /// (view 0, empty batch) marks it unambiguously.
    pub fn null(seq: Seq) -> SlotEvidence {
        SlotEvidence {
            view: View(0),
            seq,
            batch: Arc::from(Vec::new()),
            certificate: Certificate::Supports(Vec::new()),
        }
    }

    /// Whether this is a null request ([`SlotEvidence::null`]).
    pub fn is_null(&self) -> bool {
        self.batch.is_empty()
    }

    /// The ledger's record of this evidence: the slot, its certificate's view, the batch.
    pub fn record(&self) -> EvidenceRecord {
        EvidenceRecord {
            seq: self.seq.0,
            view: self.view.0,
            batch_digest: batch_digest(&self.batch),
        }
    }
}

/// VC-REQUEST (PROTOCOL §5.1): `replica` leaves its view for `target`, with its stable
/// checkpoint and the evidence of every slot above it that it view-committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewChange {
    /// The view to enter.
    pub target: View,
    /// The sender.
    pub replica: ReplicaId,
    /// Its latest stable checkpoint, if any.
    pub checkpoint: Option<CheckpointCertificate>,
    /// Its view-committed slots above the checkpoint, ascending (gaps allowed).
    pub evidence: Vec<SlotEvidence>,
    /// ed25519 over [`ViewChange::signing_bytes`], so the new primary can forward it.
    pub signature: Signature,
}

impl ViewChange {
    /// The ledger's record of this request (`view-entered` events): its senders, checkpoint
    /// certificate, evidence by batch digest, and the digest its signature is over.
    pub fn record(&self) -> ViewChangeRecord {
        let signed = ViewChange::signing_bytes(
            self.target,
            self.replica,
            self.checkpoint.as_ref(),
            &self.evidence,
        );
        let mut signing_digest = Digest([0; 32]);
        signing_digest.0.copy_from_slice(&signed);
        ViewChangeRecord {
            replica: u32::from(self.replica.0),
            target: self.target.0,
            checkpoint: self.checkpoint.as_ref().map(CheckpointCertificate::record),
            evidence: self.evidence.iter().map(SlotEvidence::record).collect(),
            signing_digest,
            signature: hex::encode(self.signature.0),
        }
    }

    /// Signs the request again with `key` over its current fields (see
    /// [`Checkpoint::sign_with`]).
    pub fn sign_with(&mut self, key: &SigningKey) {
        let bytes = ViewChange::signing_bytes(
            self.target,
            self.replica,
            self.checkpoint.as_ref(),
            &self.evidence,
        );
        self.signature = key.sign(&bytes);
    }

    /// The bytes the signature is over: a digest of every other field.
    pub fn signing_bytes(
        target: View,
        replica: ReplicaId,
        checkpoint: Option<&CheckpointCertificate>,
        evidence: &[SlotEvidence],
    ) -> Vec<u8> {
        let contents = encode(&(target, replica, checkpoint, evidence));
        Hasher::new(b"ordeal/view-change/v1").bytes(&contents).finish().0.to_vec()
    }
}

/// NV-PROPOSE (PROTOCOL §5.2): the primary of `view` and the nf VC-REQUESTs for it that it
/// decided from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewView {
    /// The new view.
    pub view: View,
    /// nf VC-REQUESTs with target `view`, from distinct replicas.
    pub requests: Vec<Arc<ViewChange>>,
}

/// A replica that fell behind tells where it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateRequest {
    /// Its view.
    pub view: View,
    /// Its last executed slot.
    pub last_executed: Seq,
}

/// What a replica can give one that fell behind: its stable checkpoint with the snapshot, the
/// NV-PROPOSE of its view, and the certified slots of its view above the requester's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateTransfer {
    /// A stable checkpoint above the requester's last executed slot, with its snapshot.
    pub checkpoint: Option<(CheckpointCertificate, Snapshot)>,
    /// The NV-PROPOSE that started the sender's view, when the requester is in an older one.
    pub new_view: Option<Arc<NewView>>,
    /// Slots certified in the sender's view, contiguous from the requester's next slot (or the
    /// checkpoint's).
    pub tail: Vec<SlotEvidence>,
    /// The sender's last executed slot: a requester still below it asks again later.
    pub head: Seq,
}

/// An encoded [`Message`] and its MAC for one receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Envelope {
    /// The postcard encoding of the message (shared between the receivers of a broadcast).
    pub payload: Bytes,
    /// HMAC-SHA256 over (sender, receiver, SHA-256(payload)) with the pair's key.
    pub mac: Mac,
}

impl Envelope {
    /// Encodes and seals one message for one receiver (broadcasts encode once and call
    /// [`Envelope::seal`] per receiver instead).
    pub fn new(message: &Message, key: &MacKey, from: ReplicaId, to: ReplicaId) -> Envelope {
        let payload = Bytes::from(encode(message));
        let digest = sha256(&payload);
        Envelope::seal(payload, &digest, key, from, to)
    }

    /// Seals `payload` (already encoded, with SHA-256 `payload_digest`) for `to`.
    pub fn seal(
        payload: Bytes,
        payload_digest: &Digest,
        key: &MacKey,
        from: ReplicaId,
        to: ReplicaId,
    ) -> Envelope {
        let mac = key.tag(&[&mac_input(payload_digest, from, to)]);
        Envelope { payload, mac }
    }

    /// Checks the size and MAC and decodes the message.
    ///
    /// # Errors
    ///
    /// [`Rejection::TooLarge`], [`Rejection::InvalidMac`] or [`Rejection::Malformed`].
    pub fn open(&self, key: &MacKey, from: ReplicaId, to: ReplicaId) -> Result<Message, Rejection> {
        if self.payload.len() > MESSAGE_SIZE_MAX {
            return Err(Rejection::TooLarge { size: self.payload.len(), max: MESSAGE_SIZE_MAX });
        }
        let digest = sha256(&self.payload);
        key.verify(&[&mac_input(&digest, from, to)], &self.mac)
            .map_err(|_| Rejection::InvalidMac { from })?;
        decode(&self.payload)
    }
}

/// The MAC input of an envelope: a domain tag, sender, receiver (so a message cannot be
/// reflected back or redirected) and the payload's digest.
fn mac_input(payload_digest: &Digest, from: ReplicaId, to: ReplicaId) -> [u8; 52] {
    const DOMAIN: &[u8; 18] = b"ordeal/envelope/v1";
    let mut input = [0u8; 52];
    input[..18].copy_from_slice(DOMAIN);
    input[18] = from.0;
    input[19] = to.0;
    input[20..].copy_from_slice(&payload_digest.0);
    input
}

/// INFORM(v, k, client, request, result) from `replica`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Inform {
    /// The informing replica.
    pub replica: ReplicaId,
    /// The view the slot was certified in.
    pub view: View,
    /// The slot.
    pub seq: Seq,
    /// The client.
    pub client: ClientId,
    /// The request.
    pub request: RequestId,
    /// The speculative result.
    pub result: OpResult,
}

/// An INFORM with the MAC of the replica–client pair.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthenticatedInform {
    /// The INFORM.
    pub inform: Inform,
    /// HMAC-SHA256 over the INFORM's encoding with the pair's key.
    pub mac: Mac,
}

impl AuthenticatedInform {
    /// MACs `inform` with the replica–client key.
    pub fn seal(inform: Inform, key: &MacKey) -> AuthenticatedInform {
        let mac = key.tag(&[b"ordeal/inform/v1", &encode(&inform)]);
        AuthenticatedInform { inform, mac }
    }

    /// Verifies the MAC.
    ///
    /// # Errors
    ///
    /// [`Rejection::InvalidMac`] naming the claimed sender.
    pub fn verify(&self, key: &MacKey) -> Result<(), Rejection> {
        key.verify(&[b"ordeal/inform/v1", &encode(&self.inform)], &self.mac)
            .map_err(|_| Rejection::InvalidMac { from: self.inform.replica })
    }
}

/// The canonical (postcard) encoding of a value.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for our types: no maps with non-string keys, no
    // unsupported serde features.
    postcard::to_allocvec(value).expect("postcard encodes every protocol type")
}

/// Decodes a [`Message`], rejecting trailing bytes.
///
/// # Errors
///
/// [`Rejection::Malformed`].
pub fn decode(bytes: &[u8]) -> Result<Message, Rejection> {
    let (message, rest) = postcard::take_from_bytes::<Message>(bytes)
        .map_err(|error| Rejection::Malformed { reason: error.to_string() })?;
    if !rest.is_empty() {
        return Err(Rejection::Malformed { reason: format!("{} trailing bytes", rest.len()) });
    }
    Ok(message)
}
