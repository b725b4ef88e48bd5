//! Network faults as data: what each directed link does to the packets it carries. Pure: the
//! relay (`harness::network`) applies a [`NetworkFaults`] to real UDP traffic.
//!
//! A link is directed: `(from, to)` carries the packets `from` sends to `to`. Every replica and
//! the clients (one node for all client processes) are nodes. A link not listed is healthy.

use std::collections::BTreeMap;
use std::time::Duration;

use replica::core::ReplicaId;

/// A node of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A replica (and its twin, when one runs).
    Replica(ReplicaId),
    /// Every client process.
    Clients,
}

/// What one directed link does to its packets.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LinkFault {
    /// Drop every packet.
    pub blocked: bool,
    /// The probability of dropping a packet, in [0, 1].
    pub loss: f64,
    /// Added to every packet's delivery time.
    pub delay: Duration,
    /// Each packet's delay is `delay` plus a uniform draw from [0, jitter].
    pub jitter: Duration,
    /// The probability of delivering a packet twice, in [0, 1].
    pub duplicate: f64,
    /// The probability of holding a packet back so that later ones overtake it, in [0, 1].
    pub reorder: f64,
}

impl LinkFault {
    /// A link that delivers everything at once, in order.
    pub fn is_healthy(&self) -> bool {
        *self == LinkFault::default()
    }
}

/// The faults of every directed link.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct NetworkFaults {
    links: BTreeMap<(Node, Node), LinkFault>,
}

impl NetworkFaults {
    /// Every link healthy.
    pub fn healthy() -> NetworkFaults {
        NetworkFaults::default()
    }

    /// Whether every link is healthy.
    pub fn is_healthy(&self) -> bool {
        self.links.values().all(LinkFault::is_healthy)
    }

    /// What link `(from, to)` does.
    pub fn link(&self, from: Node, to: Node) -> LinkFault {
        self.links.get(&(from, to)).copied().unwrap_or_default()
    }

    /// Sets what link `(from, to)` does.
    pub fn set(&mut self, from: Node, to: Node, fault: LinkFault) {
        if fault.is_healthy() {
            self.links.remove(&(from, to));
        } else {
            self.links.insert((from, to), fault);
        }
    }

    /// Drops everything `from` sends to `to`.
    pub fn block(&mut self, from: Node, to: Node) {
        let mut fault = self.link(from, to);
        fault.blocked = true;
        self.set(from, to, fault);
    }

    /// The faulty links, in order.
    pub fn links(&self) -> impl Iterator<Item = (Node, Node, LinkFault)> + '_ {
        self.links.iter().map(|(&(from, to), &fault)| (from, to, fault))
    }
}
