//! The IO relay with plain UDP sockets standing in for replicas, clients and a twin: routes,
//! faults, healing, client mappings and twins.

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use nemesis::{LinkFault, NetworkFaults, Node, PartitionShape, partition};
use replica::core::ReplicaId;

use super::{Network, NetworkError, Twin};

/// A node's socket with a short read timeout.
fn node() -> UdpSocket {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    socket
}

/// The next datagram and its source, or `None` after the timeout.
fn receive(socket: &UdpSocket) -> Option<(Vec<u8>, SocketAddr)> {
    let mut buffer = [0; 2048];
    let (len, from) = socket.recv_from(&mut buffer).ok()?;
    Some((buffer[..len].to_vec(), from))
}

struct Nodes {
    replicas: Vec<UdpSocket>,
    network: Network,
}

fn start(n: usize, twins: &BTreeMap<ReplicaId, SocketAddr>) -> Nodes {
    let replicas: Vec<UdpSocket> = (0..n).map(|_| node()).collect();
    let addresses: Vec<SocketAddr> = replicas.iter().map(|s| s.local_addr().unwrap()).collect();
    let network = Network::start(&addresses, twins, 7).expect("the relay starts");
    Nodes { replicas, network }
}

fn address(socket: &UdpSocket) -> SocketAddr {
    socket.local_addr().unwrap()
}

#[test]
fn peers_reach_each_other_and_replies_come_back() {
    let Nodes { replicas, network } = start(3, &BTreeMap::new());
    let peers = network.peer_addresses(ReplicaId(0));
    assert_eq!(peers.len(), 3);
    assert_eq!(peers[0], address(&replicas[0]));
    replicas[0].send_to(b"hello", peers[2]).unwrap();
    let (data, relay) = receive(&replicas[2]).expect("delivered");
    assert_eq!(data, b"hello");
    assert_ne!(relay, address(&replicas[0]), "the relay's socket sends it on");
    replicas[2].send_to(b"ack", relay).unwrap();
    assert_eq!(receive(&replicas[0]), Some((b"ack".to_vec(), peers[2])));
    let stats = network.stop();
    let (zero, two) = (Node::Replica(ReplicaId(0)), Node::Replica(ReplicaId(2)));
    assert_eq!(stats.link(zero, two).forwarded, 1);
    assert_eq!(stats.link(two, zero).forwarded, 1);
    assert_eq!(stats.total.forwarded, 2);
}

#[test]
fn a_partition_drops_until_healed() {
    let Nodes { replicas, network } = start(4, &BTreeMap::new());
    let handle = network.handle();
    let order: Vec<ReplicaId> = (0..4).map(ReplicaId).collect();
    handle.set_faults(partition(PartitionShape::OneWay, &order).unwrap());
    let (zero_to_one, one_to_zero) =
        (network.peer_addresses(ReplicaId(0))[1], network.peer_addresses(ReplicaId(1))[0]);
    replicas[0].send_to(b"lost", zero_to_one).unwrap();
    assert_eq!(receive(&replicas[1]), None);
    // One way only: replica 1 still reaches replica 0.
    replicas[1].send_to(b"kept", one_to_zero).unwrap();
    assert_eq!(receive(&replicas[0]).map(|(data, _)| data), Some(b"kept".to_vec()));
    handle.heal();
    replicas[0].send_to(b"back", zero_to_one).unwrap();
    assert_eq!(receive(&replicas[1]).map(|(data, _)| data), Some(b"back".to_vec()));
    let stats = network.stop();
    let (zero, one) = (Node::Replica(ReplicaId(0)), Node::Replica(ReplicaId(1)));
    assert_eq!(stats.link(zero, one).dropped_blocked, 1);
    assert_eq!(stats.link(zero, one).forwarded, 1);
}

#[test]
fn delayed_packets_arrive_later_and_duplicates_twice() {
    let Nodes { replicas, network } = start(2, &BTreeMap::new());
    let handle = network.handle();
    let mut faults = NetworkFaults::healthy();
    let (zero, one) = (Node::Replica(ReplicaId(0)), Node::Replica(ReplicaId(1)));
    let fault =
        LinkFault { delay: Duration::from_millis(150), duplicate: 1.0, ..LinkFault::default() };
    faults.set(zero, one, fault);
    handle.set_faults(faults);
    let started = std::time::Instant::now();
    replicas[0].send_to(b"slow", network.peer_addresses(ReplicaId(0))[1]).unwrap();
    assert_eq!(receive(&replicas[1]).map(|(data, _)| data), Some(b"slow".to_vec()));
    assert!(started.elapsed() >= Duration::from_millis(140), "{:?}", started.elapsed());
    assert_eq!(receive(&replicas[1]).map(|(data, _)| data), Some(b"slow".to_vec()));
    assert_eq!(receive(&replicas[1]), None);
    let stats = network.stop();
    assert_eq!(stats.link(zero, one).forwarded, 2);
    assert_eq!(stats.link(zero, one).duplicated, 1);
    assert_eq!(stats.link(zero, one).delayed, 1);
}

#[test]
fn each_client_address_gets_its_own_upstream() {
    let Nodes { replicas, network } = start(2, &BTreeMap::new());
    let listener = network.client_addresses()[1];
    let (first, second) = (node(), node());
    first.send_to(b"a", listener).unwrap();
    second.send_to(b"b", listener).unwrap();
    let (_, from_first) = receive(&replicas[1]).unwrap();
    let (_, from_second) = receive(&replicas[1]).unwrap();
    assert_ne!(from_first, from_second);
    // Replies go back to the right client, from the client socket it dialled.
    replicas[1].send_to(b"to-first", from_first).unwrap();
    replicas[1].send_to(b"to-second", from_second).unwrap();
    assert_eq!(receive(&first), Some((b"to-first".to_vec(), listener)));
    assert_eq!(receive(&second), Some((b"to-second".to_vec(), listener)));
    // Blocking the clients' link drops what they send.
    let mut faults = NetworkFaults::healthy();
    faults.block(Node::Clients, Node::Replica(ReplicaId(1)));
    network.handle().set_faults(faults);
    first.send_to(b"cut", listener).unwrap();
    assert_eq!(receive(&replicas[1]), None);
    let stats = network.stop();
    assert_eq!(stats.link(Node::Clients, Node::Replica(ReplicaId(1))).dropped_blocked, 1);
    assert_eq!(stats.link(Node::Replica(ReplicaId(1)), Node::Clients).forwarded, 2);
}

#[test]
fn a_twin_takes_its_group_and_reaches_only_it() {
    let twin = node();
    let twins = BTreeMap::from([(ReplicaId(2), address(&twin))]);
    let Nodes { replicas, network } = start(4, &twins);
    let handle = network.handle();
    assert_eq!(network.twin_peer_addresses(ReplicaId(1)), None);
    let twin_peers = network.twin_peer_addresses(ReplicaId(2)).expect("twin sockets");
    assert_eq!(twin_peers[2], address(&twin));
    let group = vec![ReplicaId(0)];
    handle.set_twin(ReplicaId(2), Some(Twin { address: address(&twin), group })).unwrap();
    // Replica 0 (in the group) reaches the twin; replica 1 still reaches the original.
    replicas[0].send_to(b"to-twin", network.peer_addresses(ReplicaId(0))[2]).unwrap();
    let (data, relay) = receive(&twin).expect("the twin gets it");
    assert_eq!(data, b"to-twin");
    assert_eq!(receive(&replicas[2]), None);
    twin.send_to(b"twin-ack", relay).unwrap();
    assert_eq!(receive(&replicas[0]).map(|(data, _)| data), Some(b"twin-ack".to_vec()));
    replicas[1].send_to(b"to-original", network.peer_addresses(ReplicaId(1))[2]).unwrap();
    assert_eq!(receive(&replicas[2]).map(|(data, _)| data), Some(b"to-original".to_vec()));
    // The twin's own links reach its group only.
    twin.send_to(b"from-twin", twin_peers[0]).unwrap();
    assert_eq!(receive(&replicas[0]).map(|(data, _)| data), Some(b"from-twin".to_vec()));
    twin.send_to(b"from-twin", twin_peers[3]).unwrap();
    assert_eq!(receive(&replicas[3]), None);
    // Without the twin, everyone reaches the original again.
    handle.set_twin(ReplicaId(2), None).unwrap();
    replicas[0].send_to(b"original", network.peer_addresses(ReplicaId(0))[2]).unwrap();
    assert_eq!(receive(&replicas[2]).map(|(data, _)| data), Some(b"original".to_vec()));
    assert_eq!(
        handle.set_twin(ReplicaId(1), None),
        Err(NetworkError::NoTwinSockets { replica: 1 })
    );
    let bad = Twin { address: address(&twin), group: vec![ReplicaId(9)] };
    assert!(handle.set_twin(ReplicaId(2), Some(bad)).is_err());
    let stats = network.stop();
    assert_eq!(stats.unrouted, 1, "the twin's packet to replica 3");
}

#[test]
fn only_loopback_addresses_are_served() {
    let outside: SocketAddr = "10.1.2.3:4000".parse().unwrap();
    assert!(Network::start(&[outside], &BTreeMap::new(), 1).is_err());
}
