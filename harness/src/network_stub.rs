//! Stand-in for the relay's control handle until the relay lands.

use std::net::SocketAddr;

use nemesis::NetworkFaults;
use replica::core::ReplicaId;

/// The relay's handle.
#[derive(Debug, Default)]
pub struct Network {
    _private: (),
}

/// A twin's routing.
#[derive(Debug, Clone)]
pub struct Twin {
    /// Where the twin listens.
    pub address: SocketAddr,
    /// The replicas that reach the twin instead of the original.
    pub group: Vec<ReplicaId>,
}

impl Network {
    /// Replaces every link's faults.
    pub fn set_faults(&self, _faults: NetworkFaults) {}

    /// Routes part of the cluster to a twin, or back.
    pub fn set_twin(&self, _replica: ReplicaId, _twin: Option<Twin>) {}

    /// What a twin of `replica` dials.
    pub fn twin_peer_addresses(&self, _replica: ReplicaId) -> Vec<SocketAddr> {
        Vec::new()
    }
}
