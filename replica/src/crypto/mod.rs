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
//!
//! Nothing here reads a clock or global randomness: key generation takes a caller's RNG.

pub mod dealer;
pub mod ed25519;
pub mod hash;
pub mod mac;
pub mod threshold;

mod encoding;

pub use dealer::{ClientSecrets, ClusterKeys, PublicKeys, ReplicaSecrets};
