//! Cryptography for the replica and its clients: real primitives, wrapped in types that say
//! what they are for.
//!
//! - [`ed25519`]: client request signatures and signed protocol messages (signed supports in
//!   PoE-MAC, later view-change requests and checkpoints), with batch verification.
//! - [`mac`]: HMAC-SHA256 over a per-pair key for point-to-point messages.
//! - [`threshold`]: a (t, n) BLS threshold signature scheme on blst (min_pk: public keys in G1,
//!   signatures in G2), trusted-dealer Shamir sharing with t = nf.
//! - [`dealer`]: generates every key of a cluster and serializes them per node.
//! - [`hash`]: SHA-256 with domain separation.
//! - [`tally`]: process-wide counts of the operations above, for benchmarks.
//!
//! Nothing here reads a clock or global randomness: key generation takes a caller's RNG.
//!
//! Keys made for the simulator can use [`Scheme::Simulated`] instead of the real primitives:
//! signatures become keyed hashes behind the same types and calls, so a simulated sweep does not
//! spend its time on elliptic curves. MACs are HMAC in both (they cost little).

pub mod dealer;
pub mod ed25519;
pub mod hash;
pub mod mac;
pub mod tally;
pub mod threshold;

mod encoding;

/// How a key signs and verifies.
///
/// `Simulated` exists for the simulator's sweeps (`ordeal sim`), where real signatures cost
/// most of the time: an ed25519 signature becomes SHA-512 of a domain tag, the signer's public
/// key and the message ([`ed25519::simulated_signature`]); a threshold share the same over the
/// signer's share key, and a threshold signature the same over the group key, which
/// combination yields only from a full set of valid shares ([`threshold`]). Inside a simulation
/// nothing computes these for a key it does not hold (a Byzantine hook signs with its own keys
/// or garbles bytes), so a forged or altered signature is still refused; they are no
/// signatures against a real adversary. Only keys made by the dealer for the simulator use
/// it, never a deserialized key: replica processes always use the real primitives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Scheme {
    /// Real ed25519 (ZIP 215 verification) and BLS threshold signatures.
    #[default]
    Real,
    /// The simulator's keyed hashes.
    Simulated,
}

pub use dealer::{ClientSecrets, ClusterKeys, PublicKeys, ReplicaSecrets};
