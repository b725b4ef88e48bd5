//! The network relay on real replicas: a partition really cuts their QUIC links (they see it in
//! their own status), the control endpoint still answers through it, healing restores the
//! links, and runs through the relay stay valid.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::cluster;
use harness::network::Network;
use harness::run::{Routes, Setup};
use nemesis::{Node, PartitionShape, partition};
use replica::core::{ClientId, Config, Protocol, ReplicaId};
use replica::net::control::ControlClient;
use replica::net::endpoint;
use replica::net::tls::{Identity, TlsMaterial};

use super::{cluster_lock, ordeal, processes_mentioning, temp_dir, write_once};

/// How long links may take to notice a partition (QUIC's idle timeout is 10 s) or a heal.
const LINK_CHANGE_TIMEOUT: Duration = Duration::from_secs(25);

/// Each replica's connected peers, as its control endpoint reports them.
async fn peers_connected(controls: &[ControlClient]) -> Vec<BTreeSet<u8>> {
    let mut connected = Vec::new();
    for control in controls {
        let status = control.status().await.expect("control answers whatever the partition");
        connected.push(status.peers_connected.into_iter().collect());
    }
    connected
}

/// Polls the replicas' statuses until `condition` holds; false after [`LINK_CHANGE_TIMEOUT`].
async fn wait_for_links(
    controls: &[ControlClient],
    condition: impl Fn(&[BTreeSet<u8>]) -> bool,
) -> Result<(), Vec<BTreeSet<u8>>> {
    let deadline = Instant::now() + LINK_CHANGE_TIMEOUT;
    loop {
        let connected = peers_connected(controls).await;
        if condition(&connected) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(connected);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Replicas 0..4 but those of `excluded`.
fn all_but(excluded: &[u8]) -> BTreeSet<u8> {
    (0..4).filter(|other| !excluded.contains(other)).collect()
}

/// One write by a client through the relay's client sockets.
async fn client_write(
    endpoint: &quinn::Endpoint,
    tls: &TlsMaterial,
    addresses: &[SocketAddr],
    config: &Config,
    setup: &Setup,
) {
    let secrets = setup.keys.clients[0].clone();
    let timeout = Duration::from_secs(15);
    let done = write_once(endpoint, tls, addresses, config, secrets, timeout).await;
    assert_eq!(done.proof.replicas.len(), 3);
}

/// Setup: 4 replicas (f = 1) whose peers and clients go through the relay; the controller
/// connects directly. Test: isolating replica 0 makes every replica report its links to (or,
/// for replica 0, from) the others down, while the control endpoints keep answering and the
/// other links keep carrying packets; healing brings every link back and a client's write
/// completes through the relay.
#[test]
fn a_partition_cuts_replica_links_and_healing_restores_them() {
    let _cluster = cluster_lock();
    let dir = temp_dir("network");
    let config = Config::new(Protocol::PoeTs, 4, 4);
    let epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let reserved = cluster::reserve_ports(4).expect("ports");
    let addresses: Vec<SocketAddr> = reserved.iter().map(|s| s.local_addr().unwrap()).collect();
    let network = Network::start(&addresses, &BTreeMap::new(), 7).expect("the relay starts");
    drop(reserved);
    let routes = Routes {
        peers: (0..4).map(|index| network.peer_addresses(ReplicaId(index))).collect(),
        clients: network.client_addresses(),
    };
    assert!(routes.peers[0][1] != addresses[1] && routes.clients[2] != addresses[2]);
    let setup =
        Setup::create_routed(&dir, &config, 7, epoch, false, addresses, routes).expect("files");
    let mut cluster = setup.spawn_cluster(ordeal()).expect("spawn");
    let handle = network.handle();
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let endpoint = endpoint::bind(local, None, None).expect("an endpoint");
        let controller = setup.ca.issue(Identity::Controller).unwrap().tls(&setup.ca);
        cluster.wait_ready(&endpoint, &controller, Duration::from_secs(20)).await.expect("ready");
        let mut controls = Vec::new();
        for (index, address) in setup.addresses.iter().enumerate() {
            let replica = ReplicaId(index as u8);
            let timeout = Duration::from_secs(2);
            let control =
                ControlClient::connect(&endpoint, &controller, replica, *address, timeout);
            controls.push(control.await.expect("the controller connects directly"));
        }
        let everyone = |connected: &[BTreeSet<u8>]| {
            connected.iter().enumerate().all(|(index, peers)| *peers == all_but(&[index as u8]))
        };
        wait_for_links(&controls, everyone).await.expect("every link up before the partition");

        let order: Vec<ReplicaId> = (0..4).map(ReplicaId).collect();
        handle.set_faults(partition(PartitionShape::IsolateOne, &order).unwrap());
        let isolated = |connected: &[BTreeSet<u8>]| {
            connected[0].is_empty()
                && (1..4).all(|index| connected[index] == all_but(&[0, index as u8]))
        };
        let cut = wait_for_links(&controls, isolated).await;
        assert_eq!(cut, Ok(()), "replica 0's links did not go down");
        let stats = handle.stats();
        let (zero, one, two) =
            (Node::Replica(ReplicaId(0)), Node::Replica(ReplicaId(1)), Node::Replica(ReplicaId(2)));
        assert!(stats.link(zero, one).dropped_blocked > 0, "{stats:?}");
        assert!(stats.link(one, zero).dropped_blocked > 0, "{stats:?}");
        assert_eq!(stats.link(one, two).dropped_blocked, 0);
        assert!(stats.link(one, two).forwarded > 0);

        handle.heal();
        wait_for_links(&controls, everyone).await.expect("every link back after the heal");
        let client = setup.ca.issue(Identity::Client(ClientId(0))).unwrap().tls(&setup.ca);
        client_write(&endpoint, &client, &setup.client_addresses, &config, &setup).await;
        cluster.stop(Duration::from_secs(2)).await;
    });
    drop(cluster);
    let stats = network.stop();
    assert!(stats.link(Node::Clients, Node::Replica(ReplicaId(0))).forwarded > 0, "{stats:?}");
    assert!(stats.link(Node::Replica(ReplicaId(0)), Node::Clients).forwarded > 0);
    assert_eq!(stats.link(Node::Replica(ReplicaId(1)), Node::Replica(ReplicaId(2))).dropped(), 0);
    assert!(processes_mentioning(dir.to_str().unwrap()).is_empty());
}

fn results(store: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(store.join("latest").join("results.json")).unwrap();
    serde_json::from_str(&text).expect("results.json is JSON")
}

/// A short `ordeal test` goes through the relay by default (its counters are in `results.json`)
/// and stays valid; `--no-relay` connects directly and records no relay.
#[test]
fn runs_through_the_relay_stay_valid() {
    let _cluster = cluster_lock();
    for (relay, extra) in [(true, None), (false, Some("--no-relay"))] {
        let store = temp_dir(if relay { "relay" } else { "no-relay" });
        let output = Command::new(ordeal())
            .args(["test", "--no-progress", "--concurrency", "8", "--seed", "3", "--time-limit"])
            .args(["3", "--nemesis", "none", "--store"])
            .arg(&store)
            .args(extra)
            .output()
            .expect("ordeal runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(output.status.code(), Some(0), "{stdout}");
        let results = results(&store);
        assert_eq!(results["verdict"], "valid");
        assert!(results["stats"]["ok"].as_u64().unwrap() > 0);
        let network = &results["network"];
        if relay {
            let total = &network["total"];
            assert!(total["forwarded"].as_u64().unwrap() > 1000, "{network}");
            assert_eq!(total["dropped_blocked"], 0);
            let links: Vec<(String, String)> = network["links"]
                .as_array()
                .unwrap()
                .iter()
                .map(|link| (link["from"].to_string(), link["to"].to_string()))
                .collect();
            assert!(links.contains(&("\"clients\"".into(), "\"r0\"".into())), "{links:?}");
            assert!(links.contains(&("\"r1\"".into(), "\"r0\"".into())), "{links:?}");
        } else {
            assert!(network.is_null(), "{network}");
        }
    }
}
