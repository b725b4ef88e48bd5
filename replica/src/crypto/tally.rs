//! Process-wide tallies of cryptographic operations, for `ordeal bench`'s cost per operation:
//! a replica process reports them in its status (`crypto.*`), so a benchmark can say how many
//! signatures, verifications and MACs each completed operation cost, per protocol.
//!
//! A tally is a relaxed atomic increment (a few nanoseconds against tens of microseconds for
//! the operation counted). It is an observation only: nothing reads it to decide anything, so
//! the simulator's determinism does not depend on it (its replicas share one process, and one
//! tally).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

/// A kind of cryptographic operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// An ed25519 signature made.
    Ed25519Sign,
    /// An ed25519 signature verified on its own.
    Ed25519Verify,
    /// An ed25519 signature verified inside a batch (of two or more).
    Ed25519BatchVerify,
    /// A BLS threshold share made.
    BlsShareSign,
    /// A BLS threshold share verified.
    BlsShareVerify,
    /// A set of BLS shares combined into a group signature.
    BlsCombine,
    /// A BLS group signature verified.
    BlsVerify,
    /// An HMAC tag made.
    MacTag,
    /// An HMAC tag verified.
    MacVerify,
}

impl Op {
    /// Every kind, in report order.
    pub const ALL: [Op; 9] = [
        Op::Ed25519Sign,
        Op::Ed25519Verify,
        Op::Ed25519BatchVerify,
        Op::BlsShareSign,
        Op::BlsShareVerify,
        Op::BlsCombine,
        Op::BlsVerify,
        Op::MacTag,
        Op::MacVerify,
    ];

    /// The name in status reports, after `crypto.`.
    pub fn name(self) -> &'static str {
        match self {
            Op::Ed25519Sign => "ed25519_sign",
            Op::Ed25519Verify => "ed25519_verify",
            Op::Ed25519BatchVerify => "ed25519_batch_verify",
            Op::BlsShareSign => "bls_share_sign",
            Op::BlsShareVerify => "bls_share_verify",
            Op::BlsCombine => "bls_combine",
            Op::BlsVerify => "bls_verify",
            Op::MacTag => "mac_tag",
            Op::MacVerify => "mac_verify",
        }
    }
}

static TALLIES: [AtomicU64; Op::ALL.len()] = [const { AtomicU64::new(0) }; Op::ALL.len()];

/// Counts `count` operations of kind `op`.
pub(crate) fn add(op: Op, count: u64) {
    TALLIES[op as usize].fetch_add(count, Ordering::Relaxed);
}

/// Every tally so far in this process, as `crypto.<name>`.
pub fn snapshot() -> BTreeMap<String, u64> {
    Op::ALL
        .iter()
        .map(|op| (format!("crypto.{}", op.name()), TALLIES[*op as usize].load(Ordering::Relaxed)))
        .collect()
}
