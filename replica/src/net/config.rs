//! The replica process's configuration file (TOML), written by the harness.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tls::TlsFiles;
use crate::core::Config;
use crate::planted::PlantedBug;

/// Everything a replica process needs to start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeConfig {
    /// This replica's id.
    pub id: u8,
    /// The UDP address its QUIC endpoint binds (peers, clients and the controller connect
    /// here).
    pub listen: SocketAddr,
    /// Where replica i is reached, at position i (this replica's own entry is unused).
    pub peers: Vec<SocketAddr>,
    /// The cluster configuration every node shares.
    pub cluster: Config,
    /// The cluster's public keys (JSON, `crypto::PublicKeys`).
    pub public_keys: PathBuf,
    /// The inherited file descriptor this replica reads its secret message from at start
    /// (its protocol keys and TLS private key, [`super::secrets`]): no file holds them.
    pub secrets_fd: i32,
    /// Transport certificates.
    pub tls: TlsFiles,
    /// Where ledger events are appended (JSON lines).
    pub ledger: PathBuf,
    /// Whether the store (`store.redb` beside the ledger) fsyncs every commit. Without it a
    /// commit survives the process being killed, not the machine losing power.
    #[serde(default)]
    pub fsync: bool,
    /// Where the log goes.
    pub log: PathBuf,
    /// Set only in replicas the run declares Byzantine: their hook can then be switched on
    /// over the control endpoint. Correct replicas have none and run no hook code.
    #[serde(default)]
    pub byzantine: Option<crate::byzantine::ByzantineConfig>,
    /// The planted bug this replica runs (`planted_bug = "name"`, [`crate::planted`]): set by
    /// the harness in honest replicas only, and refused unless the build has the
    /// `planted-bugs` feature. [`NodeConfig::load`] copies it into `cluster`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planted_bug: Option<PlantedBug>,
    /// Exit as soon as this process (the harness) is gone.
    #[serde(default)]
    pub parent_pid: Option<u32>,
    /// The run's time zero, in nanoseconds since the Unix epoch: ledger event times count from
    /// it, like history times, so the two can be compared.
    pub epoch_unix_nanos: u64,
}

/// The configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    /// Unreadable.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a valid configuration.
    #[error("invalid config {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl NodeConfig {
    /// Reads and checks a configuration file.
    ///
    /// # Errors
    ///
    /// [`ConfigFileError`] naming the file and the problem.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigFileError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigFileError::Read { path: path.to_path_buf(), source })?;
        let invalid =
            |reason: String| ConfigFileError::Invalid { path: path.to_path_buf(), reason };
        let mut config: NodeConfig =
            toml::from_str(&text).map_err(|error| invalid(error.to_string()))?;
        config.cluster.planted_bug = config.planted_bug;
        config.cluster.validate().map_err(|error| invalid(error.to_string()))?;
        if let (Some(bug), Some(_)) = (config.planted_bug, &config.byzantine) {
            return Err(invalid(format!(
                "planted bug {bug} in a declared Byzantine replica (planted bugs are for the \
                 honest replicas under test)"
            )));
        }
        if config.peers.len() != usize::from(config.cluster.replica_count) {
            return Err(invalid(format!(
                "{} peer addresses for {} replicas",
                config.peers.len(),
                config.cluster.replica_count
            )));
        }
        if config.id >= config.cluster.replica_count {
            return Err(invalid(format!("id {} is not below replica_count", config.id)));
        }
        Ok(config)
    }

    /// The file's text.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("node configs serialize to TOML")
    }
}
