//! The client's proof rule, on hand-made INFORMs.

use std::time::Duration;

use history::{OpResult, Operation};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::core::message::Inform;
use crate::core::{
    AuthenticatedInform, Client, ClientError, ClientId, Config, Protocol, ReplicaId, RequestId,
    Seq, Time, View,
};
use crate::crypto::dealer::ClusterKeys;

fn setup() -> (Client, ClusterKeys) {
    let config = Config::new(Protocol::PoeTs, 4, 2);
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let keys = ClusterKeys::generate(&mut rng, 4, 2, 3).expect("valid parameters");
    (Client::new(config, keys.clients[1].clone()), keys)
}

fn inform(keys: &ClusterKeys, replica: u8, request: u64, result: OpResult) -> AuthenticatedInform {
    let inform = Inform {
        replica: ReplicaId(replica),
        view: View(0),
        seq: Seq(4),
        client: ClientId(1),
        request: RequestId(request),
        result,
    };
    AuthenticatedInform::seal(inform, &keys.replicas[replica as usize].client_macs[1])
}

/// Two identical INFORMs and a faulty third are not a proof at n = 4 (nf = 3); the third
/// honest one completes the request, with exactly the matching replicas in the proof.
#[test]
fn client_completes_on_nf_identical_informs_only() {
    let (mut client, keys) = setup();
    let id = client.submit(Time::ZERO, Operation::Read { key: "k".into() }).expect("idle");
    assert_eq!(id, RequestId(1));
    let transmit = client.poll_transmit().expect("sent to the primary");
    assert_eq!(transmit.to, ReplicaId(0));
    assert!(transmit.request.verify(&keys.public.clients[1]).is_ok());

    let honest = OpResult::Read { value: Some(3) };
    let wrong = OpResult::Read { value: Some(4) };
    let at = Time::from_nanos;
    client.handle_inform(at(10), ReplicaId(0), &inform(&keys, 0, 1, honest.clone())).unwrap();
    client.handle_inform(at(11), ReplicaId(3), &inform(&keys, 3, 1, wrong)).unwrap();
    client.handle_inform(at(12), ReplicaId(1), &inform(&keys, 1, 1, honest.clone())).unwrap();
    assert_eq!(client.poll_completion(), None, "2 identical + 1 different is no proof");
    // A duplicate INFORM from an honest replica still counts once, from when it first came.
    client.handle_inform(at(13), ReplicaId(1), &inform(&keys, 1, 1, honest.clone())).unwrap();
    assert_eq!(client.poll_completion(), None);
    client.handle_inform(at(14), ReplicaId(2), &inform(&keys, 2, 1, honest.clone())).unwrap();
    let done = client.poll_completion().expect("nf identical informs");
    assert_eq!(done.result, honest);
    assert_eq!(done.proof.replicas, [ReplicaId(0), ReplicaId(1), ReplicaId(2)]);
    assert_eq!(done.proof.informed, [at(10), at(12), at(14)]);
    assert_eq!((done.proof.view, done.proof.seq), (View(0), Seq(4)));
    assert_eq!(done.dissent, [ReplicaId(3)], "replica 3's wrong result was outvoted");
    assert_eq!(client.outstanding(), None);
}

/// Forged, misaddressed and stale INFORMs are refused and change nothing.
#[test]
fn client_refuses_bad_informs() {
    let (mut client, keys) = setup();
    client.submit(Time::ZERO, Operation::Write { key: "k".into(), value: 1 }).unwrap();
    let good = inform(&keys, 0, 1, OpResult::Written);
    // Replica 3 cannot speak for replica 0: the MAC is per pair.
    let mut forged = good.clone();
    forged.inform.replica = ReplicaId(3);
    forged.mac =
        AuthenticatedInform::seal(forged.inform.clone(), &keys.replicas[3].client_macs[0]).mac;
    assert_eq!(
        client.handle_inform(Time::ZERO, ReplicaId(3), &forged),
        Err(ClientError::InvalidMac { from: ReplicaId(3) })
    );
    assert_eq!(
        client.handle_inform(Time::ZERO, ReplicaId(1), &good),
        Err(ClientError::SenderMismatch { from: ReplicaId(1), claimed: ReplicaId(0) })
    );
    assert_eq!(
        client.handle_inform(Time::ZERO, ReplicaId(7), &good),
        Err(ClientError::UnknownReplica { from: ReplicaId(7) })
    );
    let stale = inform(&keys, 0, 9, OpResult::Written);
    assert_eq!(
        client.handle_inform(Time::ZERO, ReplicaId(0), &stale),
        Err(ClientError::NotOutstanding { request: RequestId(9) })
    );
    assert_eq!(
        client.submit(Time::ZERO, Operation::Read { key: "k".into() }),
        Err(ClientError::Busy { outstanding: RequestId(1) })
    );
}

/// On timeout the request goes to every replica, with the retry timeout doubling.
#[test]
fn client_retransmits_to_all_with_backoff() {
    let (mut client, _keys) = setup();
    client.submit(Time::ZERO, Operation::Read { key: "k".into() }).unwrap();
    while client.poll_transmit().is_some() {}
    let first = client.poll_timeout().expect("armed");
    assert_eq!(first, Time::ZERO + Duration::from_millis(500));
    client.handle_timeout(first);
    let targets: Vec<ReplicaId> =
        std::iter::from_fn(|| client.poll_transmit()).map(|t| t.to).collect();
    assert_eq!(targets, (0..4).map(ReplicaId).collect::<Vec<_>>());
    assert_eq!(client.poll_timeout(), Some(first + Duration::from_millis(1000)));
    assert_eq!(client.retries(), 1);
    assert_eq!(client.abandon(), Some(RequestId(1)));
    assert_eq!(client.poll_timeout(), None);
}
