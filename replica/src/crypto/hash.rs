//! SHA-256 with domain separation: every digest Ordeal computes starts with a domain tag, so a
//! digest of one kind can never be mistaken for one of another.

use history::Digest;
use sha2::{Digest as _, Sha256};

/// Incremental SHA-256 over a domain tag and length-unambiguous fields.
pub struct Hasher(Sha256);

impl Hasher {
    /// Starts a digest in `domain` (for example `b"ordeal/block/v1"`), added as a byte string:
    /// length-prefixed like any other (the layout is documented in `history::ledger`).
    pub fn new(domain: &[u8]) -> Hasher {
        Hasher(Sha256::new()).bytes(domain)
    }

    /// Adds a u64, little-endian.
    pub fn u64(mut self, value: u64) -> Hasher {
        self.0.update(value.to_le_bytes());
        self
    }

    /// Adds a byte string, prefixed by its length so that fields cannot run into each other.
    pub fn bytes(mut self, bytes: &[u8]) -> Hasher {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds a digest (fixed length, no prefix needed).
    pub fn digest(mut self, digest: &Digest) -> Hasher {
        self.0.update(digest.0);
        self
    }

    /// The digest.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// SHA-256 of `bytes` alone, with no domain tag (for payloads that carry their own).
pub fn sha256(bytes: &[u8]) -> Digest {
    Digest(Sha256::digest(bytes).into())
}
