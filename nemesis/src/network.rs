//! Network faults as data: what each directed link does to the packets it carries. Pure: the
//! relay (`harness::network`) applies a [`NetworkFaults`] to real UDP traffic.
//!
//! A link is directed: `(from, to)` carries the packets `from` sends to `to`. Every replica and
//! the clients (one node for all client processes) are nodes. A link not listed is healthy.
//!
//! Partitions come in the [`PartitionShape`]s of [`partition`]; the other faults (delay, loss,
//! duplication, reordering) apply to every link touching a set of replicas
//! ([`NetworkFaults::delay`] and its siblings); [`NetworkFaults::merge`] combines them.
//! Partitions cut replicas from replicas only: clients always reach every replica, so that a
//! partition tests the protocol, not the clients' patience.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::str::FromStr;
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

impl LinkFault {
    /// Both faults on one link: blocked if either is, the larger delay and jitter, and the
    /// probabilities of independent draws (`1 − (1 − a)(1 − b)`).
    pub fn merge(&self, other: &LinkFault) -> LinkFault {
        let either = |a: f64, b: f64| match (probability(a), probability(b)) {
            (0.0, p) | (p, 0.0) => p,
            (a, b) => 1.0 - (1.0 - a) * (1.0 - b),
        };
        LinkFault {
            blocked: self.blocked || other.blocked,
            loss: either(self.loss, other.loss),
            delay: self.delay.max(other.delay),
            jitter: self.jitter.max(other.jitter),
            duplicate: either(self.duplicate, other.duplicate),
            reorder: either(self.reorder, other.reorder),
        }
    }
}

/// `p` clamped to [0, 1]; NaN is 0.
pub fn probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

impl NetworkFaults {
    /// Adds `other`'s faults to these, link by link ([`LinkFault::merge`]).
    pub fn merge(&mut self, other: &NetworkFaults) {
        for (from, to, fault) in other.links() {
            let merged = self.link(from, to).merge(&fault);
            self.set(from, to, merged);
        }
    }

    /// `fault` on every link touching one of `replicas`, both directions, the clients' links
    /// included; the cluster has `replica_count` replicas (ids outside it are ignored).
    pub fn touching(replica_count: u8, replicas: &[ReplicaId], fault: LinkFault) -> NetworkFaults {
        let chosen: BTreeSet<ReplicaId> =
            replicas.iter().copied().filter(|replica| replica.0 < replica_count).collect();
        let others = (0..replica_count).map(|index| Node::Replica(ReplicaId(index)));
        let nodes: Vec<Node> = others.chain([Node::Clients]).collect();
        // A set, so that a link between two chosen replicas gets the fault once.
        let mut links = BTreeSet::new();
        for replica in chosen {
            let node = Node::Replica(replica);
            for &other in nodes.iter().filter(|&&other| other != node) {
                links.insert((node, other));
                links.insert((other, node));
            }
        }
        let mut faults = NetworkFaults::healthy();
        for (from, to) in links {
            faults.set(from, to, fault);
        }
        faults
    }

    /// Every packet to or from `replicas` delayed by `delay` plus a uniform draw from
    /// [0, `jitter`].
    pub fn delay(
        replica_count: u8,
        replicas: &[ReplicaId],
        delay: Duration,
        jitter: Duration,
    ) -> NetworkFaults {
        let fault = LinkFault { delay, jitter, ..LinkFault::default() };
        NetworkFaults::touching(replica_count, replicas, fault)
    }

    /// Every packet to or from `replicas` lost with probability `p`.
    pub fn loss(replica_count: u8, replicas: &[ReplicaId], p: f64) -> NetworkFaults {
        let fault = LinkFault { loss: probability(p), ..LinkFault::default() };
        NetworkFaults::touching(replica_count, replicas, fault)
    }

    /// Every packet to or from `replicas` delivered twice with probability `p`.
    pub fn duplicate(replica_count: u8, replicas: &[ReplicaId], p: f64) -> NetworkFaults {
        let fault = LinkFault { duplicate: probability(p), ..LinkFault::default() };
        NetworkFaults::touching(replica_count, replicas, fault)
    }

    /// Every packet to or from `replicas` held back with probability `p`, so that later ones
    /// overtake it.
    pub fn reorder(replica_count: u8, replicas: &[ReplicaId], p: f64) -> NetworkFaults {
        let fault = LinkFault { reorder: probability(p), ..LinkFault::default() };
        NetworkFaults::touching(replica_count, replicas, fault)
    }

    /// Whether a packet from replica `from` reaches replica `to` at all (not blocked).
    pub fn reaches(&self, from: ReplicaId, to: ReplicaId) -> bool {
        !self.link(Node::Replica(from), Node::Replica(to)).blocked
    }

    /// Blocks both directions between `a` and `b`.
    fn cut(&mut self, a: ReplicaId, b: ReplicaId) {
        self.block(Node::Replica(a), Node::Replica(b));
        self.block(Node::Replica(b), Node::Replica(a));
    }
}

impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Node::Replica(replica) => write!(f, "r{}", replica.0),
            Node::Clients => f.write_str("clients"),
        }
    }
}

/// The shape of a partition among the replicas. Each is laid out on an ordering of the
/// replicas the caller chooses (seeded, or with the primary first): see [`partition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PartitionShape {
    /// `order[0]` cut from every other replica, both ways.
    IsolateOne,
    /// Like `IsolateOne`, with the primary as `order[0]` (the caller puts it first).
    IsolatePrimary,
    /// The first ⌊n/2⌋ of `order` cut from the rest, both ways.
    Halves,
    /// A ring in `order` where each replica reaches only those within ring distance
    /// d = ⌈⌊n/2⌋ / 2⌉: each sees a majority (itself and 2d others), and no two see the same one.
    MajorityRing,
    /// `order[0]` reaches everyone; the others, in two halves, reach only their own half and
    /// `order[0]`.
    Bridge,
    /// Everything `order[0]` sends to another replica is dropped; it still receives.
    OneWay,
}

impl PartitionShape {
    /// Every shape, in a fixed order.
    pub const ALL: [PartitionShape; 6] = [
        PartitionShape::IsolateOne,
        PartitionShape::IsolatePrimary,
        PartitionShape::Halves,
        PartitionShape::MajorityRing,
        PartitionShape::Bridge,
        PartitionShape::OneWay,
    ];

    /// The name on the command line and in the history (kebab-case).
    pub fn name(self) -> &'static str {
        match self {
            PartitionShape::IsolateOne => "isolate-one",
            PartitionShape::IsolatePrimary => "isolate-primary",
            PartitionShape::Halves => "halves",
            PartitionShape::MajorityRing => "majority-ring",
            PartitionShape::Bridge => "bridge",
            PartitionShape::OneWay => "one-way",
        }
    }
}

impl fmt::Display for PartitionShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A partition shape's name is not known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown partition shape {name:?} (one of isolate-one, isolate-primary, halves, \
         majority-ring, bridge, one-way)"
)]
pub struct UnknownShape {
    /// The name given.
    pub name: String,
}

impl FromStr for PartitionShape {
    type Err = UnknownShape;

    fn from_str(name: &str) -> Result<PartitionShape, UnknownShape> {
        PartitionShape::ALL
            .into_iter()
            .find(|shape| shape.name() == name)
            .ok_or_else(|| UnknownShape { name: name.to_string() })
    }
}

/// The ordering given to [`partition`] is not a permutation of the replicas.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PartitionError {
    /// No replica at all.
    #[error("a partition needs at least one replica")]
    Empty,
    /// A replica id outside 0..n, or one twice.
    #[error("the ordering {order:?} is not a permutation of 0..{replica_count}")]
    NotAPermutation {
        /// The ordering given.
        order: Vec<u8>,
        /// n, its length.
        replica_count: usize,
    },
}

/// The ring distance within which a replica of a [`PartitionShape::MajorityRing`] of n reaches
/// others: the least d with 2d + 1 > n / 2. (⌈n/4⌉ would be the same for most n, but for n = 5
/// it lets everyone see everyone.)
pub fn majority_ring_distance(replica_count: usize) -> usize {
    (replica_count / 2).div_ceil(2)
}

/// The links `shape` blocks among the replicas of `order`, a permutation of 0..n chosen by the
/// caller (for [`PartitionShape::IsolatePrimary`], the primary first). Client links stay
/// healthy.
///
/// # Errors
///
/// [`PartitionError`] when `order` is empty or not a permutation of 0..n.
pub fn partition(
    shape: PartitionShape,
    order: &[ReplicaId],
) -> Result<NetworkFaults, PartitionError> {
    let n = order.len();
    if n == 0 {
        return Err(PartitionError::Empty);
    }
    let distinct: BTreeSet<ReplicaId> = order.iter().copied().collect();
    if distinct.len() != n || order.iter().any(|replica| replica.index() >= n) {
        return Err(PartitionError::NotAPermutation {
            order: order.iter().map(|replica| replica.0).collect(),
            replica_count: n,
        });
    }
    let mut faults = NetworkFaults::healthy();
    let first = order[0];
    match shape {
        PartitionShape::IsolateOne | PartitionShape::IsolatePrimary => {
            for &other in &order[1..] {
                faults.cut(first, other);
            }
        }
        PartitionShape::Halves => {
            let (left, right) = order.split_at(n / 2);
            cut_between(&mut faults, left, right);
        }
        PartitionShape::MajorityRing => {
            let d = majority_ring_distance(n);
            for p in 0..n {
                for q in p + 1..n {
                    let distance = (q - p).min(n - (q - p));
                    if distance > d {
                        faults.cut(order[p], order[q]);
                    }
                }
            }
        }
        PartitionShape::Bridge => {
            let rest = &order[1..];
            let (left, right) = rest.split_at(rest.len() / 2);
            cut_between(&mut faults, left, right);
        }
        PartitionShape::OneWay => {
            for &other in &order[1..] {
                faults.block(Node::Replica(first), Node::Replica(other));
            }
        }
    }
    Ok(faults)
}

/// Blocks both directions between every replica of `left` and every one of `right`.
fn cut_between(faults: &mut NetworkFaults, left: &[ReplicaId], right: &[ReplicaId]) {
    for &a in left {
        for &b in right {
            faults.cut(a, b);
        }
    }
}

#[cfg(test)]
mod tests;
