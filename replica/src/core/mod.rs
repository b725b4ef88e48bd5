//! The protocol core: Proof-of-Execution as a deterministic, sans-IO state machine.
//!
//! **Invariant:** nothing in this module does IO, reads a clock or uses global randomness.
//! Time arrives as a [`Time`] argument; outputs are values the caller drains. The same code runs
//! inside the real replica process and inside the in-memory [`crate::sim`] cluster.
//!
//! # Layout
//!
//! - [`types`]: `View`, `Seq`, `ReplicaId`, `ClientId`, `RequestId`, `Digest`, `Time`.
//! - [`config`]: cluster size, f and nf, batching, window, and every `*_MAX` limit.
//! - [`message`]: protocol messages, their encoding, digests and signing bytes.
//! - [`replica`]: the PoE replica ([`Replica`]).
//! - [`client`]: the PoE client ([`Client`]).
//! - [`safety`]: the signing keys and the support-once rule.
//! - [`state_machine`]: the key-value store with undo log and state digest.
//! - [`ledger`]: the hash-chained ledger.
//! - [`durable`]: what must survive a crash: writes, persisted state, reconciliation.
//! - [`error`]: typed rejections and counters.

pub mod client;
pub mod config;
pub mod durable;
pub mod error;
pub mod ledger;
pub mod message;
pub mod replica;
pub mod safety;
pub mod state_machine;
pub mod types;

pub use client::{Client, ClientError, ClientTransmit, Completion, Proof};
pub use config::{Config, ConfigError, Protocol};
pub use durable::{Durable, Write};
pub use error::{Counters, Rejection};
pub use message::{AuthenticatedInform, Envelope, Message, RequestBody, SignedRequest};
pub use replica::{Ready, Replica, Retention, Status, Transmit};
pub use types::{ClientId, Digest, ReplicaId, RequestId, Seq, Time, View};
