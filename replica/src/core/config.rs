//! Cluster configuration: sizes, quorums, batching and the window, with their limits.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::types::{ReplicaId, View};
use crate::planted::PlantedBug;

/// The most replicas a cluster may have (ids are `u8`).
pub const REPLICA_COUNT_MAX: u8 = 128;
/// The most clients a cluster may have.
pub const CLIENT_COUNT_MAX: u32 = 1 << 20;
/// The largest batch a primary may propose.
pub const BATCH_SIZE_MAX: u32 = 1000;
/// The largest log (range of slots a replica accepts messages for).
pub const LOG_SIZE_MAX: u64 = 4096;
/// The largest request queue at a primary.
pub const REQUEST_QUEUE_MAX: u32 = 100_000;
/// The longest key, in bytes.
pub const KEY_LENGTH_MAX: usize = 32;
/// The most keys one `read-all` may name.
pub const READ_ALL_KEYS_MAX: usize = 16;
/// The most keys the genesis state may hold.
pub const GENESIS_KEYS_MAX: usize = 4096;
/// The largest encoded request body, in bytes.
pub const REQUEST_SIZE_MAX: usize = 1024;
/// Times a replica that is catching up asks for state again before it waits for a new sign of
/// being behind (each one `2 · state_request_interval` after the last).
pub const STATE_REQUEST_RETRIES_MAX: u32 = 8;
/// The largest encoded normal-case message: a full batch plus framing.
pub const NORMAL_MESSAGE_SIZE_MAX: usize = BATCH_SIZE_MAX as usize * (REQUEST_SIZE_MAX + 64) + 4096;
/// The largest encoded replica-to-replica message of any kind: view-change messages and state
/// transfers carry many batches (each limited by the configuration, see
/// [`Config::evidence_slots_max`]).
pub const MESSAGE_SIZE_MAX: usize = 32 * 1024 * 1024;
/// The longest interval between checkpoints.
pub const CHECKPOINT_INTERVAL_MAX: u64 = 4096;

const _: () = assert!(READ_ALL_KEYS_MAX * (KEY_LENGTH_MAX + 8) + 64 <= REQUEST_SIZE_MAX);
const _: () = assert!(NORMAL_MESSAGE_SIZE_MAX <= 2 * 1024 * 1024);

/// The protocol a cluster runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// PoE with threshold signatures: linear SUPPORT/CERTIFY through the primary (§3.1).
    PoeTs,
    /// PoE with MACs: all-to-all signed SUPPORTs (§3.2).
    PoeMac,
    /// PBFT (Castro–Liskov with nf quorums, §7): PRE-PREPARE, all-to-all signed PREPAREs, then
    /// all-to-all COMMITs; execution only once committed-local, never speculative; clients
    /// complete on f + 1 matching replies.
    Pbft,
}

impl Protocol {
    /// Every protocol, in the order the side-by-side table lists them.
    pub const ALL: [Protocol; 3] = [Protocol::PoeTs, Protocol::PoeMac, Protocol::Pbft];

    /// The command-line name (`poe-ts`, `poe-mac`, `pbft`).
    pub fn name(self) -> &'static str {
        match self {
            Protocol::PoeTs => "poe-ts",
            Protocol::PoeMac => "poe-mac",
            Protocol::Pbft => "pbft",
        }
    }

    /// Whether votes are ed25519-signed and go to everyone (PoE-MAC's SUPPORTs, PBFT's
    /// PREPAREs), rather than threshold shares sent to the primary (PoE-TS).
    pub fn signed_votes(self) -> bool {
        matches!(self, Protocol::PoeMac | Protocol::Pbft)
    }

    /// Whether a slot executes as soon as it is view-committed (PoE: speculatively, undone by a
    /// rollback if a view change decides otherwise), or only after a commit phase (PBFT).
    pub fn speculative(self) -> bool {
        !matches!(self, Protocol::Pbft)
    }
}

impl std::str::FromStr for Protocol {
    type Err = String;

    fn from_str(name: &str) -> Result<Protocol, String> {
        Protocol::ALL
            .into_iter()
            .find(|protocol| protocol.name() == name)
            .ok_or_else(|| format!("unknown protocol {name:?} (known: poe-ts, poe-mac, pbft)"))
    }
}

/// The configuration every node of a cluster shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Config {
    /// n, the number of replicas.
    pub replica_count: u8,
    /// The number of client identities.
    pub client_count: u32,
    /// PoE-TS or PoE-MAC.
    pub protocol: Protocol,
    /// The most requests in one proposal (ResilientDB's default is 100).
    pub batch_size_max: u32,
    /// How long the primary waits for a batch to fill before proposing what it has.
    pub batch_timeout: Duration,
    /// The most slots the primary has proposed but not yet executed (in-flight window).
    pub window: u64,
    /// The batch timer cuts a partial batch only while fewer slots than this are in flight;
    /// otherwise the primary waits for a full batch (or for the pipeline to drain).
    pub partial_batch_in_flight_max: u64,
    /// How far beyond its last executed slot a replica accepts protocol messages. At least
    /// `window`, so that a replica slightly behind the primary still accepts its proposals.
    pub log_size: u64,
    /// The most requests the primary queues before refusing new ones.
    pub request_queue_max: u32,
    /// The most requests of one client that the primary holds at once (queued or in flight), so
    /// one client cannot crowd out the others.
    pub client_pending_max: u32,
    /// How long a client waits for nf matching INFORMs before re-sending its request to every
    /// replica; doubles on every retry up to 8 times this.
    pub client_retry_timeout: Duration,
    /// The store's contents before slot 1 (the bank workload's opening balances).
    #[serde(default)]
    pub genesis: BTreeMap<String, i64>,
    /// K: a replica checkpoints after every K-th slot (PROTOCOL §6).
    #[serde(default = "defaults::checkpoint_interval")]
    pub checkpoint_interval: u64,
    /// How long a replica waits for progress it expects (a forwarded request executed, an
    /// accepted proposal certified, a hole filled) before it asks for a view change; doubled,
    /// like the new-view timeout, after each view change in a row that ended without
    /// execution, up to 32 times this.
    #[serde(default = "defaults::progress_timeout")]
    pub progress_timeout: Duration,
    /// How long a replica waits for NV-PROPOSE once nf replicas asked for the view change;
    /// doubled after each view change in a row that ended without execution (no NV-PROPOSE in
    /// time, or a new view left before it executed anything), up to 32 times this.
    #[serde(default = "defaults::new_view_timeout")]
    pub new_view_timeout: Duration,
    /// The least time between two state requests of a replica that fell behind.
    #[serde(default = "defaults::state_request_interval")]
    pub state_request_interval: Duration,
    /// The planted bug this node runs ([`crate::planted`]), if any. Not part of the shared
    /// cluster file: a replica takes it from `NodeConfig::planted_bug`, a client from the
    /// harness. Refused by [`Config::validate`] in a build without the `planted-bugs` feature.
    #[serde(skip)]
    pub planted_bug: Option<PlantedBug>,
}

/// Defaults of the fields older config files may lack.
mod defaults {
    use std::time::Duration;

    pub(super) fn checkpoint_interval() -> u64 {
        128
    }
    pub(super) fn progress_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub(super) fn new_view_timeout() -> Duration {
        Duration::from_secs(1)
    }
    pub(super) fn state_request_interval() -> Duration {
        Duration::from_millis(200)
    }
}

/// A configuration is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of range.
    #[error("invalid config: {field} = {value} ({rule})")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// The configuration names a planted bug, and this build has none (it lacks the
    /// `planted-bugs` feature, as every product build does).
    #[error(
        "invalid config: planted_bug = \"{bug}\": this build has no planted bugs (build the \
         replica with the `planted-bugs` feature)"
    )]
    PlantedBugsNotBuilt {
        /// The bug named.
        bug: PlantedBug,
    },
    /// The planted bug is in another protocol's code than the one configured (it would never
    /// act).
    #[error(
        "invalid config: planted_bug = \"{bug}\" is a bug of {bug_protocol}, not of {protocol}"
    )]
    PlantedBugProtocol {
        /// The bug named.
        bug: PlantedBug,
        /// The protocol the bug is in.
        bug_protocol: &'static str,
        /// The protocol configured.
        protocol: &'static str,
    },
}

impl ConfigError {
    /// The field at fault.
    pub fn field(&self) -> &'static str {
        match self {
            ConfigError::OutOfRange { field, .. } => field,
            ConfigError::PlantedBugsNotBuilt { .. } | ConfigError::PlantedBugProtocol { .. } => {
                "planted_bug"
            }
        }
    }
}

impl Config {
    /// A configuration with Ordeal's defaults for `replica_count` replicas and `client_count`
    /// clients.
    pub fn new(protocol: Protocol, replica_count: u8, client_count: u32) -> Config {
        Config {
            replica_count,
            client_count,
            protocol,
            batch_size_max: 100,
            batch_timeout: Duration::from_millis(1),
            window: 32,
            partial_batch_in_flight_max: 1,
            log_size: 256,
            request_queue_max: 10_000,
            client_pending_max: 4,
            client_retry_timeout: Duration::from_millis(500),
            genesis: BTreeMap::new(),
            checkpoint_interval: defaults::checkpoint_interval(),
            progress_timeout: defaults::progress_timeout(),
            new_view_timeout: defaults::new_view_timeout(),
            state_request_interval: defaults::state_request_interval(),
            planted_bug: None,
        }
    }

    /// Whether this node runs planted bug `bug` ([`crate::planted`]). A constant `false` in a
    /// build without the `planted-bugs` feature.
    #[inline(always)]
    pub fn planted(&self, bug: PlantedBug) -> bool {
        #[cfg(feature = "planted-bugs")]
        {
            self.planted_bug == Some(bug)
        }
        #[cfg(not(feature = "planted-bugs"))]
        {
            let _ = bug;
            false
        }
    }

    /// The most slots a VC-REQUEST or a state transfer may carry evidence for: everything a
    /// replica may have executed or committed above its stable checkpoint.
    pub fn evidence_slots_max(&self) -> u64 {
        2 * self.checkpoint_interval + self.log_size
    }

    /// f, the largest number of Byzantine replicas tolerated: the largest f with n > 3f.
    pub fn f(&self) -> usize {
        (usize::from(self.replica_count).max(1) - 1) / 3
    }

    /// nf = n − f: the size of every quorum (certificates, client proofs). Not 2f + 1: the two
    /// differ when n ≠ 3f + 1, and only nf keeps two quorums intersecting in f + 1 replicas.
    pub fn nf(&self) -> usize {
        #[cfg(feature = "planted-bugs")]
        if self.planted(PlantedBug::Quorum2fPlus1) {
            return 2 * self.f() + 1;
        }
        usize::from(self.replica_count) - self.f()
    }

    /// How many matching replies complete a client request: nf identical INFORMs in PoE (a
    /// proof that survives any view change), f + 1 matching REPLYs in PBFT (at least one from an
    /// honest replica, which executes only committed requests).
    pub fn reply_quorum(&self) -> usize {
        match self.protocol {
            Protocol::PoeTs | Protocol::PoeMac => self.nf(),
            Protocol::Pbft => self.f() + 1,
        }
    }

    /// The primary of `view`.
    pub fn primary(&self, view: View) -> ReplicaId {
        view.primary(self.replica_count)
    }

    /// Checks every field against its limits.
    ///
    /// # Errors
    ///
    /// The first field out of range.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |field, value: u64, ok: bool, rule| {
            if ok { Ok(()) } else { Err(ConfigError::OutOfRange { field, value, rule }) }
        };
        let n = self.replica_count;
        check("replica_count", n.into(), (1..=REPLICA_COUNT_MAX).contains(&n), "1 ..= 128")?;
        let clients = self.client_count;
        check("client_count", clients.into(), clients <= CLIENT_COUNT_MAX, "<= 2^20")?;
        let batch = self.batch_size_max;
        check("batch_size_max", batch.into(), (1..=BATCH_SIZE_MAX).contains(&batch), "1 ..= 1000")?;
        check("window", self.window, self.window >= 1, ">= 1")?;
        let partial = self.partial_batch_in_flight_max;
        check(
            "partial_batch_in_flight_max",
            partial,
            (1..=self.window).contains(&partial),
            "1 ..= window",
        )?;
        check("log_size", self.log_size, self.log_size >= self.window, ">= window")?;
        check("log_size", self.log_size, self.log_size <= LOG_SIZE_MAX, "<= 4096")?;
        let queue = self.request_queue_max;
        check("request_queue_max", queue.into(), queue >= batch, ">= batch_size_max")?;
        check("request_queue_max", queue.into(), queue <= REQUEST_QUEUE_MAX, "<= 100000")?;
        let pending = self.client_pending_max;
        check("client_pending_max", pending.into(), pending >= 1, ">= 1")?;
        let retry = self.client_retry_timeout;
        check("client_retry_timeout", retry.as_millis() as u64, !retry.is_zero(), "> 0")?;
        let genesis = self.genesis.len();
        check("genesis", genesis as u64, genesis <= GENESIS_KEYS_MAX, "<= 4096 keys")?;
        let long_key = self.genesis.keys().map(String::len).max().unwrap_or(0);
        check("genesis", long_key as u64, long_key <= KEY_LENGTH_MAX, "keys <= 32 bytes")?;
        let interval = self.checkpoint_interval;
        let interval_ok = (1..=CHECKPOINT_INTERVAL_MAX).contains(&interval);
        check("checkpoint_interval", interval, interval_ok, "1 ..= 4096")?;
        // Backups accept slots up to the stable checkpoint plus the log size: a log shorter than
        // a checkpoint interval plus the window stalls the primary before the next checkpoint
        // can become stable (found by `ordeal bench --checkpoint-interval 512`).
        let reach = interval.saturating_add(self.window);
        check(
            "log_size",
            self.log_size,
            self.log_size >= reach,
            ">= checkpoint_interval + window",
        )?;
        for (field, timeout) in [
            ("progress_timeout", self.progress_timeout),
            ("new_view_timeout", self.new_view_timeout),
            ("state_request_interval", self.state_request_interval),
        ] {
            check(field, timeout.as_millis() as u64, !timeout.is_zero(), "> 0")?;
        }
        if let Some(bug) = self.planted_bug
            && !crate::planted::ENABLED
        {
            return Err(ConfigError::PlantedBugsNotBuilt { bug });
        }
        if let Some(bug) = self.planted_bug
            && bug.protocol() == "pbft"
            && self.protocol != Protocol::Pbft
        {
            return Err(ConfigError::PlantedBugProtocol {
                bug,
                bug_protocol: bug.protocol(),
                protocol: self.protocol.name(),
            });
        }
        Ok(())
    }
}
