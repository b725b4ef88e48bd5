//! Small field edits the hook applies to messages: bit flips, ±1 nudges, batch edits, wrong
//! results, and broken signatures. Each keeps the message encodable; none can panic.

use std::sync::Arc;

use history::OpResult;
use rand::RngExt;
use rand_chacha::ChaCha20Rng;

use crate::core::message::{Message, SignedRequest, SupportProof};
use crate::core::state_machine::Snapshot;
use crate::core::{Digest, ReplicaId};

/// Flips one seeded bit of `bytes` (nothing if empty).
pub(super) fn flip_bit(rng: &mut ChaCha20Rng, bytes: &mut [u8]) {
    if bytes.is_empty() {
        return;
    }
    let index = rng.random_range(0..bytes.len());
    bytes[index] ^= 1 << rng.random_range(0..8u32);
}

/// The wrong digest that every accomplice puts in place of `digest`: a fixed, documented
/// function of it (every bit of the first byte inverted), so colluders' corrupt votes match.
pub(super) fn collusive(digest: &Digest) -> Digest {
    let mut wrong = *digest;
    wrong.0[0] ^= 0xff;
    wrong
}

/// Changes the state a snapshot holds, the same way at every accomplice: the first key's value
/// goes up by one (a key is added to an empty store). Its digest no longer matches.
pub(super) fn corrupt_snapshot(snapshot: &mut Snapshot) {
    match snapshot.store.values_mut().next() {
        Some(value) => *value = value.wrapping_add(1),
        None => {
            snapshot.store.insert("k0".into(), 1);
        }
    }
}

/// Moves a number by one up or down (always up from 0, down from the maximum).
pub(super) fn nudge(rng: &mut ChaCha20Rng, number: &mut u64) {
    let up = *number == 0 || (*number != u64::MAX && rng.random_bool(0.5));
    *number = if up { *number + 1 } else { *number - 1 };
}

/// Another replica id than `replica` among `replica_count` (itself if it is the only one).
pub(super) fn other_replica(
    rng: &mut ChaCha20Rng,
    replica: ReplicaId,
    replica_count: u8,
) -> ReplicaId {
    if replica_count < 2 {
        return replica;
    }
    let offset = rng.random_range(1..replica_count);
    ReplicaId(((u16::from(replica.0) + u16::from(offset)) % u16::from(replica_count)) as u8)
}

/// The batch with one request dropped (when it has two or more) or one duplicated.
pub(super) fn edit_batch(
    rng: &mut ChaCha20Rng,
    batch: &Arc<[SignedRequest]>,
) -> Arc<[SignedRequest]> {
    let mut requests = batch.to_vec();
    if requests.is_empty() {
        return batch.clone();
    }
    let index = rng.random_range(0..requests.len());
    if requests.len() >= 2 && rng.random_bool(0.5) {
        requests.remove(index);
    } else {
        requests.push(requests[index].clone());
    }
    requests.into()
}

/// A result of the same kind that differs from `result`.
pub(super) fn wrong_result(result: &OpResult) -> OpResult {
    match result {
        OpResult::Read { value } => {
            OpResult::Read { value: Some(value.unwrap_or(0).wrapping_add(1_000_003)) }
        }
        OpResult::Written => OpResult::Cas { swapped: true },
        OpResult::Cas { swapped } => OpResult::Cas { swapped: !swapped },
        OpResult::Transfer { done } => OpResult::Transfer { done: !done },
        OpResult::ReadAll { values } => {
            let mut values = values.clone();
            match values.first_mut() {
                Some(first) => *first = Some(first.unwrap_or(0).wrapping_add(1_000_003)),
                None => values.push(Some(-1)),
            }
            OpResult::ReadAll { values }
        }
    }
}

/// Breaks the signature, threshold share or group signature a message carries; false when it
/// carries none (only its MAC authenticates it).
pub(super) fn forge_inner(rng: &mut ChaCha20Rng, message: &mut Message) -> bool {
    match message {
        Message::Support(support) => match &mut support.proof {
            SupportProof::Share(share) => flip_bit(rng, &mut share.0),
            SupportProof::Signature(signature) => flip_bit(rng, &mut signature.0),
        },
        Message::Certify(certify) => flip_bit(rng, &mut certify.signature.0),
        Message::Checkpoint(checkpoint) => flip_bit(rng, &mut checkpoint.signature.0),
        Message::ViewChange(request) => {
            let mut inner = (**request).clone();
            flip_bit(rng, &mut inner.signature.0);
            *request = Arc::new(inner);
        }
        Message::Propose(_)
        | Message::Forward(_)
        | Message::Commit(_)
        | Message::NewView(_)
        | Message::StateRequest(_)
        | Message::StateTransfer(_) => return false,
    }
    true
}
