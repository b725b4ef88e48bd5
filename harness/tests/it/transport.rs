//! The replica's transport under bad input: foreign certificates, unknown identities, frames
//! over the limit and garbage frames each close only their own connection.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use harness::certs::RunCa;
use harness::run::Setup;
use replica::core::{Client, ClientId, Config, Protocol, ReplicaId};
use replica::net::client::{Gateway, GatewayCounts};
use replica::net::control::ControlClient;
use replica::net::endpoint;
use replica::net::shell::close_code;
use replica::net::tls::{Identity, TlsMaterial};

use super::{cluster_lock, ordeal, processes_mentioning, temp_dir, write_once, write_with};

/// How a connection attempt with `tls` to `address` ended: `Ok` with the application close
/// code the replica chose, or `Err` when the handshake itself failed.
async fn connection_outcome(
    endpoint: &quinn::Endpoint,
    tls: &TlsMaterial,
    address: SocketAddr,
    first_frame: Option<&[u8]>,
) -> Result<u64, String> {
    let config = tls.client_config().expect("a client config");
    let connecting = endpoint
        .connect_with(config, address, &Identity::Replica(ReplicaId(0)).dns_name())
        .expect("a valid connect call");
    let connection = connecting.await.map_err(|error| error.to_string())?;
    if let Some(frame) = first_frame {
        let (mut send, _recv) = connection.open_bi().await.map_err(|error| error.to_string())?;
        send.write_all(frame).await.map_err(|error| error.to_string())?;
    }
    let closed = tokio::time::timeout(Duration::from_secs(5), connection.closed())
        .await
        .map_err(|_| "the replica kept the connection open".to_string())?;
    match closed {
        quinn::ConnectionError::ApplicationClosed(close) => Ok(close.error_code.into_inner()),
        other => Err(other.to_string()),
    }
}

async fn counter(control: &ControlClient, name: &str) -> u64 {
    let status = control.status().await.expect("the replica still answers");
    status.counters.get(name).copied().unwrap_or(0)
}

#[test]
fn replica_refuses_foreign_certificates_and_bad_frames() {
    let _cluster = cluster_lock();
    let dir = temp_dir("transport");
    let config = Config::new(Protocol::PoeTs, 4, 4);
    let epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64;
    let setup = Setup::create(&dir, &config, 7, epoch, false).expect("cluster files");
    let mut cluster = setup.spawn_cluster(ordeal()).expect("spawn");
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    runtime.block_on(async {
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let endpoint = endpoint::bind(local, None, None).expect("an endpoint");
        let controller = setup.ca.issue(Identity::Controller).unwrap().tls(&setup.ca);
        cluster.wait_ready(&endpoint, &controller, Duration::from_secs(20)).await.expect("ready");
        let address = setup.addresses[0];
        let control = ControlClient::connect(
            &endpoint,
            &controller,
            ReplicaId(0),
            address,
            Duration::from_secs(2),
        )
        .await
        .expect("the controller connects");

        // A client certificate from another CA never completes the handshake.
        let foreign = RunCa::generate("someone else's CA").unwrap();
        let stranger = foreign.issue(Identity::Client(ClientId(0))).unwrap().tls(&setup.ca);
        let outcome = connection_outcome(&endpoint, &stranger, address, None).await;
        assert!(outcome.is_err(), "a foreign certificate was accepted: {outcome:?}");
        assert!(counter(&control, "net.handshakes_failed").await >= 1);

        // Our CA, but a name that is no Ordeal identity: refused after the handshake.
        let mallory = setup.ca.issue_for_name(Identity::Client(ClientId(0)), "mallory.example");
        let mallory = mallory.unwrap().tls(&setup.ca);
        let outcome = connection_outcome(&endpoint, &mallory, address, None).await;
        assert_eq!(outcome, Ok(u64::from(close_code::REFUSED)));
        assert!(counter(&control, "net.connections_refused").await >= 1);

        // A frame announcing more than the maximum closes that connection.
        let client0 = setup.ca.issue(Identity::Client(ClientId(0))).unwrap().tls(&setup.ca);
        let huge = u32::MAX.to_le_bytes();
        let outcome = connection_outcome(&endpoint, &client0, address, Some(&huge)).await;
        assert_eq!(outcome, Ok(u64::from(close_code::TOO_LARGE)));
        assert_eq!(counter(&control, "net.frames_too_large").await, 1);

        // A frame of garbage likewise.
        let client1 = setup.ca.issue(Identity::Client(ClientId(1))).unwrap().tls(&setup.ca);
        let garbage = [5, 0, 0, 0, b'h', b'e', b'l', b'l', b'o'];
        let outcome = connection_outcome(&endpoint, &client1, address, Some(&garbage)).await;
        assert_eq!(outcome, Ok(u64::from(close_code::MALFORMED)));
        assert_eq!(counter(&control, "net.frames_malformed").await, 1);

        // Everyone else is still served: a real client completes a request.
        let client2 = setup.ca.issue(Identity::Client(ClientId(2))).unwrap().tls(&setup.ca);
        let secrets = setup.keys.clients[2].clone();
        let addresses = &setup.addresses;
        let timeout = Duration::from_secs(10);
        let done = write_once(&endpoint, &client2, addresses, &config, secrets, timeout).await;
        assert_eq!(done.proof.replicas.len(), 3);
        assert!(counter(&control, "requests_executed").await >= 1);

        // A gateway for clients 0 and 1: client 1's write completes through it (its INFORMs
        // handed to it by the gateway); a request of client 3, outside its range, is refused
        // as a mismatch; a gateway claiming clients the cluster lacks is refused outright.
        let identity = Identity::Gateway { first: ClientId(0), count: 2 };
        let gateway_tls = setup.ca.issue(identity).unwrap().tls(&setup.ca);
        let (gateway, mut members) =
            Gateway::connect(&endpoint, &gateway_tls, addresses, ClientId(0), 2).unwrap();
        let secrets = setup.keys.clients[1].clone();
        let done = write_with(&mut members[1], &config, secrets, timeout).await;
        assert_eq!(done.proof.replicas.len(), 3);
        assert_eq!(gateway.counts(), GatewayCounts::default());
        let mismatches = counter(&control, "rejected.client_mismatch").await;
        let mut stranger = Client::new(config.clone(), setup.keys.clients[3].clone());
        let write = history::Operation::Write { key: "k".into(), value: 3 };
        let request = stranger.sign_next(write);
        assert!(members[0].send(ReplicaId(0), &request));
        let refused = || async { counter(&control, "rejected.client_mismatch").await };
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while refused().await == mismatches && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(refused().await, mismatches + 1);
        let greedy = Identity::Gateway { first: ClientId(2), count: 4 };
        let greedy = setup.ca.issue(greedy).unwrap().tls(&setup.ca);
        let outcome = connection_outcome(&endpoint, &greedy, address, None).await;
        assert_eq!(outcome, Ok(u64::from(close_code::REFUSED)));
        cluster.stop(Duration::from_secs(2)).await;
    });
    drop(cluster);
    assert!(processes_mentioning(dir.to_str().unwrap()).is_empty());
}

/// A replica killed and restarted within its peers' idle timeout is heard again at once: its new
/// endpoint, keyed from the same secret (`endpoint::ResetKey`), recognises the connection IDs
/// its earlier incarnation issued and answers a peer's packets on such a connection with a
/// stateless reset that the peer accepts, so the peer drops the connection (and its link
/// reconnects) instead of sending into the void until the idle timeout (10 s).
///
/// The "kill" is the shutdown of the runtime that drives the first endpoint: its tasks are
/// dropped, nothing is closed on the wire.
#[test]
fn a_restarted_replica_resets_the_connections_of_its_earlier_incarnation() {
    let ca = RunCa::generate("reset test CA").unwrap();
    let server_tls = ca.issue(Identity::Replica(ReplicaId(0))).unwrap().tls(&ca);
    let peer_tls = ca.issue(Identity::Replica(ReplicaId(1))).unwrap().tls(&ca);
    let key = || endpoint::ResetKey::derive(server_tls.secret());
    let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
    let first =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime");
    let (address, held) = first.block_on(async {
        let server = endpoint::bind(local, Some(server_tls.server_config(4).unwrap()), Some(key()))
            .expect("the first incarnation binds");
        let address = server.local_addr().unwrap();
        let accepting = tokio::spawn(async move {
            let connection = server.accept().await.expect("a peer").await.expect("handshake");
            (server, connection)
        });
        (address, accepting)
    });
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    runtime.block_on(async {
        let peer = endpoint::bind(local, None, None).expect("the peer binds");
        let name = Identity::Replica(ReplicaId(0)).dns_name();
        let connecting = peer.connect_with(peer_tls.client_config().unwrap(), address, &name);
        // The first incarnation's runtime runs only while it is blocked on: drive its accept.
        let connection = {
            let connecting = connecting.expect("a valid connect call");
            let (connection, _) = tokio::join!(connecting, async {
                tokio::task::spawn_blocking(move || {
                    let accepted = first.block_on(held).expect("the accept task");
                    // Killed: its tasks are dropped without a word on the wire.
                    first.shutdown_background();
                    drop(accepted);
                })
                .await
                .expect("the first incarnation ran")
            });
            connection.expect("the peer connects")
        };
        let second =
            endpoint::bind(address, Some(server_tls.server_config(4).unwrap()), Some(key()))
                .expect("the second incarnation binds the same address");
        // Anything the peer sends on the old connection draws the reset; it may already have
        // come (the peer's own acknowledgements or keep-alives), then opening a stream fails.
        if let Ok(mut stream) = connection.open_uni().await {
            let _ = stream.write_all(b"anyone there?").await;
        }
        let closed = tokio::time::timeout(Duration::from_secs(5), connection.closed())
            .await
            .expect("the peer learns of the restart before its idle timeout");
        assert!(
            matches!(closed, quinn::ConnectionError::Reset),
            "the old connection ended by a stateless reset: {closed:?}"
        );
        drop(second);
    });
}
