//! Partition shapes (who reaches whom) and the link-fault constructors.

use std::collections::BTreeSet;
use std::time::Duration;

use replica::core::ReplicaId;

use super::{
    LinkFault, NetworkFaults, Node, PartitionError, PartitionShape, majority_ring_distance,
    partition,
};

fn ids(order: &[u8]) -> Vec<ReplicaId> {
    order.iter().map(|&index| ReplicaId(index)).collect()
}

/// Whom each replica of 0..n reaches (itself included).
fn reach(faults: &NetworkFaults, n: u8) -> Vec<BTreeSet<u8>> {
    (0..n)
        .map(|from| {
            (0..n)
                .filter(|&to| from == to || faults.reaches(ReplicaId(from), ReplicaId(to)))
                .collect()
        })
        .collect()
}

fn set(members: &[u8]) -> BTreeSet<u8> {
    members.iter().copied().collect()
}

fn is_symmetric(faults: &NetworkFaults, n: u8) -> bool {
    (0..n).all(|a| {
        (0..n).all(|b| {
            faults.reaches(ReplicaId(a), ReplicaId(b)) == faults.reaches(ReplicaId(b), ReplicaId(a))
        })
    })
}

fn clients_untouched(faults: &NetworkFaults, n: u8) -> bool {
    (0..n).all(|index| {
        let replica = Node::Replica(ReplicaId(index));
        faults.link(Node::Clients, replica).is_healthy()
            && faults.link(replica, Node::Clients).is_healthy()
    })
}

#[test]
fn shape_names_round_trip() {
    for shape in PartitionShape::ALL {
        assert_eq!(shape.name().parse::<PartitionShape>(), Ok(shape));
        assert_eq!(shape.to_string(), shape.name());
    }
    assert!("isolate".parse::<PartitionShape>().is_err());
    let names: BTreeSet<&str> = PartitionShape::ALL.iter().map(|shape| shape.name()).collect();
    assert_eq!(names.len(), PartitionShape::ALL.len());
}

#[test]
fn isolate_cuts_the_first_both_ways() {
    for shape in [PartitionShape::IsolateOne, PartitionShape::IsolatePrimary] {
        let faults = partition(shape, &ids(&[2, 0, 3, 1])).unwrap();
        let reach = reach(&faults, 4);
        assert_eq!(reach[2], set(&[2]));
        for other in [0, 1, 3] {
            assert_eq!(reach[other], set(&[0, 1, 3]));
        }
        assert!(is_symmetric(&faults, 4));
        assert!(clients_untouched(&faults, 4));
    }
}

#[test]
fn halves_cut_the_first_half_from_the_rest() {
    let faults = partition(PartitionShape::Halves, &ids(&[4, 1, 0, 3, 2])).unwrap();
    let reach = reach(&faults, 5);
    for member in [4, 1] as [u8; _] {
        assert_eq!(reach[usize::from(member)], set(&[1, 4]));
    }
    for member in [0, 3, 2] as [u8; _] {
        assert_eq!(reach[usize::from(member)], set(&[0, 2, 3]));
    }
    assert!(is_symmetric(&faults, 5));
    assert!(clients_untouched(&faults, 5));
}

#[test]
fn a_majority_ring_gives_each_a_different_majority() {
    for n in 4..=13u8 {
        let order: Vec<u8> = (0..n).rev().collect();
        let faults = partition(PartitionShape::MajorityRing, &ids(&order)).unwrap();
        let reach = reach(&faults, n);
        let majority = usize::from(n) / 2 + 1;
        for (replica, seen) in reach.iter().enumerate() {
            assert!(seen.len() >= majority, "n = {n}: {replica} sees {seen:?}");
            assert_eq!(seen.len(), 2 * majority_ring_distance(usize::from(n)) + 1);
        }
        // No two see the same majority, and nobody sees everyone.
        let distinct: BTreeSet<&BTreeSet<u8>> = reach.iter().collect();
        assert_eq!(distinct.len(), usize::from(n), "n = {n}");
        assert!(reach.iter().all(|seen| seen.len() < usize::from(n)), "n = {n}");
        assert!(is_symmetric(&faults, n));
        assert!(clients_untouched(&faults, n));
    }
    // n = 4 along 0, 1, 2, 3: each sees its two ring neighbours.
    let reach = reach(&partition(PartitionShape::MajorityRing, &ids(&[0, 1, 2, 3])).unwrap(), 4);
    assert_eq!(reach, vec![set(&[3, 0, 1]), set(&[0, 1, 2]), set(&[1, 2, 3]), set(&[2, 3, 0])]);
}

#[test]
fn a_bridge_alone_reaches_both_halves() {
    let faults = partition(PartitionShape::Bridge, &ids(&[3, 0, 4, 1, 2, 5, 6])).unwrap();
    let reach = reach(&faults, 7);
    assert_eq!(reach[3], (0..7).collect::<BTreeSet<u8>>());
    for member in [0, 4, 1] as [u8; _] {
        assert_eq!(reach[usize::from(member)], set(&[3, 0, 4, 1]));
    }
    for member in [2, 5, 6] as [u8; _] {
        assert_eq!(reach[usize::from(member)], set(&[3, 2, 5, 6]));
    }
    assert!(is_symmetric(&faults, 7));
    assert!(clients_untouched(&faults, 7));
}

#[test]
fn one_way_drops_only_what_the_first_sends() {
    let faults = partition(PartitionShape::OneWay, &ids(&[1, 0, 2, 3])).unwrap();
    let reach = reach(&faults, 4);
    assert_eq!(reach[1], set(&[1]));
    for other in [0, 2, 3] {
        assert_eq!(reach[other], set(&[0, 1, 2, 3]));
    }
    assert!(!is_symmetric(&faults, 4));
    assert!(clients_untouched(&faults, 4));
}

#[test]
fn a_bad_ordering_is_refused() {
    for shape in PartitionShape::ALL {
        assert_eq!(partition(shape, &[]), Err(PartitionError::Empty));
        assert!(partition(shape, &ids(&[0, 0, 1, 2])).is_err());
        assert!(partition(shape, &ids(&[0, 1, 2, 4])).is_err());
        assert!(partition(shape, &ids(&[0])).unwrap().is_healthy());
    }
}

#[test]
fn link_faults_touch_every_link_of_the_chosen_replicas() {
    let chosen = ids(&[1]);
    let faults =
        NetworkFaults::delay(4, &chosen, Duration::from_millis(5), Duration::from_millis(2));
    let one = Node::Replica(ReplicaId(1));
    let nodes: Vec<Node> =
        (0..4).map(|index| Node::Replica(ReplicaId(index))).chain([Node::Clients]).collect();
    let mut touched = 0;
    for &from in &nodes {
        for &to in &nodes {
            let link = faults.link(from, to);
            if from != to && (from == one || to == one) {
                assert_eq!(link.delay, Duration::from_millis(5));
                assert_eq!(link.jitter, Duration::from_millis(2));
                touched += 1;
            } else {
                assert!(link.is_healthy(), "{from} -> {to}");
            }
        }
    }
    assert_eq!(touched, 8);
    assert_eq!(NetworkFaults::loss(4, &chosen, 0.2).link(Node::Clients, one).loss, 0.2);
    assert_eq!(NetworkFaults::duplicate(4, &chosen, 0.3).link(one, Node::Clients).duplicate, 0.3);
    let reorder = NetworkFaults::reorder(4, &chosen, 0.4);
    assert_eq!(reorder.link(one, Node::Replica(ReplicaId(0))).reorder, 0.4);
    // Out-of-range ids and probabilities are tamed, not trusted.
    assert!(NetworkFaults::loss(4, &ids(&[9]), 0.5).is_healthy());
    assert_eq!(NetworkFaults::loss(4, &chosen, 3.0).link(one, Node::Clients).loss, 1.0);
}

#[test]
fn merging_combines_link_by_link() {
    let mut faults = partition(PartitionShape::IsolateOne, &ids(&[0, 1, 2, 3])).unwrap();
    faults.merge(&NetworkFaults::loss(4, &ids(&[0, 1]), 0.5));
    faults.merge(&NetworkFaults::loss(4, &ids(&[1]), 0.5));
    let zero = Node::Replica(ReplicaId(0));
    let one = Node::Replica(ReplicaId(1));
    let two = Node::Replica(ReplicaId(2));
    let both = faults.link(zero, one);
    assert!(both.blocked);
    assert!((both.loss - 0.75).abs() < 1e-9);
    // 1 -> 2: both losses, no partition; 0 -> 2: the partition and one loss; 2 -> 3: nothing.
    assert!((faults.link(one, two).loss - 0.75).abs() < 1e-9);
    assert!(!faults.link(one, two).blocked);
    assert!(faults.link(zero, two).blocked);
    assert_eq!(faults.link(zero, two).loss, 0.5);
    assert!(faults.link(two, Node::Replica(ReplicaId(3))).is_healthy());
    let merged = LinkFault { delay: Duration::from_millis(3), ..LinkFault::default() }
        .merge(&LinkFault { delay: Duration::from_millis(7), ..LinkFault::default() });
    assert_eq!(merged.delay, Duration::from_millis(7));
    let mut healthy = NetworkFaults::healthy();
    healthy.merge(&NetworkFaults::healthy());
    assert!(healthy.is_healthy());
}
