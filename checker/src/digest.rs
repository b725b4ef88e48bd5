//! The checker's own implementation of the digests and signatures that ledgers record
//! (`history::ledger` documents their byte layout), so that a replica bug in computing one
//! cannot hide. `history/vectors/digests.json` holds known answers derived from that
//! documentation alone; the tests check these functions against it.
//!
//! - A hashed field list: SHA-256 over a domain tag, then fields; byte strings carry a u64 LE
//!   length prefix, and so does the domain tag (it is added as a byte string), integers are
//!   u64 LE, digests are 32 raw bytes.
//! - A request body is encoded with postcard (`client` u32, `request` u64, the operation); its
//!   digest is `H("ordeal/request/v1", body)`; the client signs `"ordeal/request/v1" ‖ body`.
//! - Signatures are checked with the ZIP-215 rule (canonical s, any decompressible R and A,
//!   cofactored equation): the rule the replicas use, so that the checker accepts exactly what
//!   an honest replica accepts.

use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::IsIdentity;
use history::{Digest, Operation};
use serde::Serialize;
use sha2::{Digest as _, Sha256, Sha512};

/// SHA-256 over a domain and fields, as the ledgers' digests are defined.
pub struct Hasher(Sha256);

impl Hasher {
    /// Starts a digest in `domain`.
    pub fn new(domain: &[u8]) -> Hasher {
        Hasher(Sha256::new()).bytes(domain)
    }

    /// Adds an integer, u64 little-endian.
    pub fn u64(mut self, value: u64) -> Hasher {
        self.0.update(value.to_le_bytes());
        self
    }

    /// Adds a byte string with its length.
    pub fn bytes(mut self, bytes: &[u8]) -> Hasher {
        self.0.update((bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }

    /// Adds a digest.
    pub fn digest(mut self, digest: &Digest) -> Hasher {
        self.0.update(digest.0);
        self
    }

    /// The digest.
    pub fn finish(self) -> Digest {
        Digest(self.0.finalize().into())
    }
}

/// A request as its client signed it.
#[derive(Debug, Serialize)]
struct Body<'a> {
    client: u32,
    request: u64,
    op: &'a Operation,
}

/// The canonical (postcard) encoding of a request body.
pub fn request_body(client: u32, request: u64, op: &Operation) -> Vec<u8> {
    postcard::to_stdvec(&Body { client, request, op }).unwrap_or_default()
}

/// The digest of a request body.
pub fn request_digest(body: &[u8]) -> Digest {
    Hasher::new(b"ordeal/request/v1").bytes(body).finish()
}

/// The digest of a batch from its requests' digests.
pub fn batch_digest(requests: &[Digest]) -> Digest {
    let mut hasher = Hasher::new(b"ordeal/batch/v1").u64(requests.len() as u64);
    for request in requests {
        hasher = hasher.digest(request);
    }
    hasher.finish()
}

/// The hash of the block at `seq` following `previous`.
pub fn block_hash(seq: u64, batch_digest: &Digest, previous: &Digest) -> Digest {
    Hasher::new(b"ordeal/block/v1").u64(seq).digest(batch_digest).digest(previous).finish()
}

/// The genesis hash of a cluster of `replica_count` replicas whose view-0 primary `primary` has
/// the ed25519 public key `key`.
pub fn genesis_hash(replica_count: u64, primary: u64, key: &[u8; 32]) -> Digest {
    Hasher::new(b"ordeal/genesis/v1").u64(replica_count).u64(primary).bytes(key).finish()
}

/// The signature scheme of a run's replica and client keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Signatures {
    /// ed25519 (every real run).
    #[default]
    Ed25519,
    /// The simulator's keyed hash: SHA-512 of `ordeal/simulated-signature/v1`, the public key
    /// and the message (a simulated run with cheap crypto; docs/simulation.md).
    Simulated,
}

/// Public keys, replica r's or client c's at position r or c, and their scheme.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// The 32-byte public keys.
    pub keys: &'a [[u8; 32]],
    /// How their signatures verify.
    pub scheme: Signatures,
}

impl<'a> Keys<'a> {
    /// ed25519 keys.
    pub fn ed25519(keys: &'a [[u8; 32]]) -> Keys<'a> {
        Keys { keys, scheme: Signatures::Ed25519 }
    }

    /// Whether `signature` is the signature of `message` by key `index`.
    pub fn verify(&self, index: usize, message: &[u8], signature: &[u8; 64]) -> bool {
        let Some(key) = self.keys.get(index) else { return false };
        match self.scheme {
            Signatures::Ed25519 => verify_signature(key, message, signature),
            Signatures::Simulated => {
                let mut hash = Sha512::new();
                hash.update(b"ordeal/simulated-signature/v1");
                hash.update(key);
                hash.update(message);
                let expected: [u8; 64] = hash.finalize().into();
                expected == *signature
            }
        }
    }
}

/// Whether `signature` (R ‖ s) is `key`'s signature of `message` under ZIP 215.
pub fn verify_signature(key: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    let r_bytes: [u8; 32] = signature[..32].try_into().expect("64 bytes");
    let s_bytes: [u8; 32] = signature[32..].try_into().expect("64 bytes");
    let (Some(r), Some(a)) =
        (CompressedEdwardsY(r_bytes).decompress(), CompressedEdwardsY(*key).decompress())
    else {
        return false;
    };
    let Some(s) = Option::<Scalar>::from(Scalar::from_canonical_bytes(s_bytes)) else {
        return false;
    };
    let mut hash = Sha512::new();
    hash.update(r_bytes);
    hash.update(key);
    hash.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    let check = EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &-a, &s) - r;
    check.mul_by_cofactor().is_identity()
}

/// The bytes a client signs for a request body.
pub fn signing_bytes(body: &[u8]) -> Vec<u8> {
    let mut bytes = b"ordeal/request/v1".to_vec();
    bytes.extend_from_slice(body);
    bytes
}

/// A 256-bit sum modulo 2^256 of digests read as little-endian integers (AdHash): the
/// multiset hash behind state digests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sum256([u64; 4]);

impl Sum256 {
    /// Adds `digest`.
    pub fn add(&mut self, digest: &Digest) {
        let limbs = limbs(digest);
        let mut carry = false;
        for (limb, other) in self.0.iter_mut().zip(limbs) {
            let (sum, first) = limb.overflowing_add(other);
            let (sum, second) = sum.overflowing_add(u64::from(carry));
            *limb = sum;
            carry = first || second;
        }
    }

    /// Subtracts `digest`.
    pub fn sub(&mut self, digest: &Digest) {
        let limbs = limbs(digest);
        let mut borrow = false;
        for (limb, other) in self.0.iter_mut().zip(limbs) {
            let (difference, first) = limb.overflowing_sub(other);
            let (difference, second) = difference.overflowing_sub(u64::from(borrow));
            *limb = difference;
            borrow = first || second;
        }
    }

    /// The sum as 32 little-endian bytes.
    pub fn to_digest(self) -> Digest {
        let mut bytes = [0u8; 32];
        for (chunk, limb) in bytes.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        Digest(bytes)
    }
}

fn limbs(digest: &Digest) -> [u64; 4] {
    let mut limbs = [0u64; 4];
    for (limb, chunk) in limbs.iter_mut().zip(digest.0.chunks_exact(8)) {
        *limb = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    limbs
}
