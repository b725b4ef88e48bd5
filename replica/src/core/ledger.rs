//! The ledger: hash-chained blocks, one per executed slot, as in ResilientDB.
//!
//! Block k holds (k, view, batch digest, certificate, previous hash) and the batch itself. Its
//! hash is `H("ordeal/block/v1", k, batch digest, previous hash)`; the genesis hash is
//! `H("ordeal/genesis/v1", n, initial primary, its public key)`, n and the primary's id as
//! u64s, the key as a length-prefixed byte string (the byte layout is `history::ledger`'s). The
//! view and the certificate are kept but not chained: honest replicas may hold different valid
//! certificates for one batch (in PoE-MAC, different sets of nf supports), and equal hashes at k
//! must mean equal batches at 1..=k on every honest replica.
//!
//! The ledger keeps the blocks above the last stable checkpoint in memory (older ones are
//! garbage-collected: the checkpoint's snapshot stands for them); the shell persists them.

use std::collections::VecDeque;
use std::sync::Arc;

use super::message::{SignedRequest, Support};
use super::types::{Digest, ReplicaId, Seq, View};
use crate::crypto::ed25519::PublicKey;
use crate::crypto::hash::Hasher;
use crate::crypto::threshold::BlsSignature;

/// The evidence that a batch was view-committed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Certificate {
    /// PoE-TS: the group signature on the proposal digest.
    Threshold(BlsSignature),
    /// PoE-MAC: nf signed SUPPORTs for the proposal digest from distinct replicas.
    Supports(Vec<Support>),
}

/// One executed slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// The slot.
    pub seq: Seq,
    /// The view of the certificate.
    pub view: View,
    /// The proposal digest h the certificate is over.
    pub digest: Digest,
    /// The batch digest.
    pub batch_digest: Digest,
    /// The batch.
    pub batch: Arc<[SignedRequest]>,
    /// The certificate.
    pub certificate: Certificate,
    /// The previous block's hash (genesis for slot 1).
    pub previous: Digest,
    /// This block's hash.
    pub hash: Digest,
}

/// A break in the hash chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("hash chain broken at seq {seq}")]
pub struct ChainError {
    /// The first block whose hash or link does not match.
    pub seq: Seq,
}

/// The chain of executed blocks.
#[derive(Debug, Clone)]
pub struct Ledger {
    genesis: Digest,
    /// The slot before the first retained block, and its hash.
    base: (Seq, Digest),
    blocks: VecDeque<Block>,
}

/// What a block's hash covers.
pub fn block_hash(seq: Seq, batch_digest: &Digest, previous: &Digest) -> Digest {
    Hasher::new(b"ordeal/block/v1").u64(seq.0).digest(batch_digest).digest(previous).finish()
}

/// The genesis hash of a cluster of `replica_count` replicas whose initial primary is `primary`
/// with public key `key`.
pub fn genesis_hash(replica_count: u8, primary: ReplicaId, key: &PublicKey) -> Digest {
    Hasher::new(b"ordeal/genesis/v1")
        .u64(u64::from(replica_count))
        .u64(u64::from(primary.0))
        .bytes(&key.to_bytes())
        .finish()
}

impl Ledger {
    /// An empty ledger starting from `genesis`.
    pub fn new(genesis: Digest) -> Ledger {
        Ledger { genesis, base: (Seq(0), genesis), blocks: VecDeque::new() }
    }

    /// The genesis hash.
    pub fn genesis(&self) -> Digest {
        self.genesis
    }

    /// The last block's slot (0 when empty).
    pub fn head_seq(&self) -> Seq {
        self.blocks.back().map_or(self.base.0, |block| block.seq)
    }

    /// The last block's hash (genesis when empty).
    pub fn head_hash(&self) -> Digest {
        self.blocks.back().map_or(self.base.1, |block| block.hash)
    }

    /// Block `seq`, if retained.
    pub fn get(&self, seq: Seq) -> Option<&Block> {
        let offset = seq.0.checked_sub(self.base.0.0 + 1)?;
        self.blocks.get(usize::try_from(offset).ok()?)
    }

    /// The retained blocks, oldest first.
    pub fn blocks(&self) -> impl Iterator<Item = &Block> {
        self.blocks.iter()
    }

    /// Appends the block of slot `seq`, which must follow the head.
    ///
    /// # Panics
    ///
    /// If `seq` is not `head_seq + 1`: blocks are appended in execution order.
    pub fn append(
        &mut self,
        seq: Seq,
        view: View,
        digest: Digest,
        batch_digest: Digest,
        batch: Arc<[SignedRequest]>,
        certificate: Certificate,
    ) -> &Block {
        assert_eq!(seq, self.head_seq().next(), "blocks are appended in order");
        let previous = self.head_hash();
        let hash = block_hash(seq, &batch_digest, &previous);
        self.blocks.push_back(Block {
            seq,
            view,
            digest,
            batch_digest,
            batch,
            certificate,
            previous,
            hash,
        });
        self.blocks.back().expect("just pushed")
    }

    /// Forgets the blocks up to `seq` (a stable checkpoint covers them); `seq` must be retained
    /// or be the base.
    pub fn prune_through(&mut self, seq: Seq) {
        while let Some(front) = self.blocks.front() {
            if front.seq > seq {
                break;
            }
            self.base = (front.seq, front.hash);
            self.blocks.pop_front();
        }
    }

    /// Drops every block and restarts the chain after `seq` with hash `hash` (a snapshot was
    /// installed).
    pub fn reset(&mut self, seq: Seq, hash: Digest) {
        self.blocks.clear();
        self.base = (seq, hash);
    }

    /// The hash of the chain at `seq`: the base's or a retained block's.
    pub fn hash_at(&self, seq: Seq) -> Option<Digest> {
        if seq == self.base.0 { Some(self.base.1) } else { self.get(seq).map(|block| block.hash) }
    }

    /// Replaces the certificate of block `seq` by one from a later view (the slot was
    /// re-certified after a view change). The hash does not cover it.
    pub fn recertify(&mut self, seq: Seq, view: View, certificate: Certificate) {
        let offset = seq.0.checked_sub(self.base.0.0 + 1).and_then(|o| usize::try_from(o).ok());
        if let Some(block) = offset.and_then(|offset| self.blocks.get_mut(offset)) {
            block.view = view;
            block.certificate = certificate;
        }
    }

    /// Removes every block above `seq` (rollback).
    pub fn truncate_after(&mut self, seq: Seq) {
        while self.blocks.back().is_some_and(|block| block.seq > seq) {
            self.blocks.pop_back();
        }
    }

    /// Recomputes every retained block's hash and link.
    ///
    /// # Errors
    ///
    /// [`ChainError`] at the first block that does not match.
    pub fn verify_chain(&self) -> Result<(), ChainError> {
        let mut previous = self.base.1;
        for block in &self.blocks {
            let expected = block_hash(block.seq, &block.batch_digest, &previous);
            if block.previous != previous || block.hash != expected {
                return Err(ChainError { seq: block.seq });
            }
            previous = block.hash;
        }
        Ok(())
    }
}
