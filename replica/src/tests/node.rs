//! The node driver ([`crate::node`]): numbered `Ready`s, the order of a `Ready`'s parts, and
//! the assertions that catch a driver that skips or repeats an `advance`.

use std::sync::Arc;

use history::{LedgerEvent, Operation};

use crate::byzantine::{Behaviour, ByzantineConfig, Hook};
use crate::core::{Config, Protocol, Replica, ReplicaId, Time, Transmit, Write};
use crate::crypto::dealer::ClusterKeys;
use crate::node::{Io, Node, drive};

/// Replica 0 (the primary of view 0) of an n = 4 PBFT cluster, and the cluster's keys.
fn primary() -> (Node, ClusterKeys) {
    let config = Config::new(Protocol::Pbft, 4, 2);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(7);
    let keys = ClusterKeys::generate(&mut rng, 4, 2, config.nf() as u32).expect("keys");
    let public = Arc::new(keys.public.clone());
    let core = Replica::new(config, keys.replicas[0].clone(), public).expect("valid");
    (Node::new(core, None), keys)
}

/// A request of client 0 to the primary: the primary proposes it, its PREPARE vote must be
/// persisted before the PRE-PREPARE and PREPARE leave.
fn request(node: &mut Node, keys: &ClusterKeys, now: Time) {
    let body = crate::core::RequestBody {
        client: crate::core::ClientId(0),
        request: crate::core::RequestId(1),
        op: Operation::Write { key: "x".into(), value: 1 },
    };
    let request = crate::core::SignedRequest::sign(body, &keys.clients[0].signing_key);
    node.handle_request(now, crate::core::ClientId(0), request).expect("accepted");
    // The batch timer cuts the batch.
    let due = node.deadline().expect("the batch timer is armed");
    node.handle_timeout(due);
}

/// Records what the driver did, in order.
#[derive(Default)]
struct Trace(Vec<&'static str>);

impl Io for Trace {
    type Error = ();

    fn persist(&mut self, writes: &[Write]) -> Result<(), ()> {
        assert!(!writes.is_empty());
        self.0.push("persist");
        Ok(())
    }

    fn record(&mut self, _events: &[LedgerEvent]) -> Result<(), ()> {
        self.0.push("record");
        Ok(())
    }

    fn send(&mut self, transmit: Transmit) {
        assert!(matches!(transmit, Transmit::Replica { .. }));
        self.0.push("send");
    }
}

/// `Ready`s are numbered 1, 2, ...; the vote is persisted before any message leaves; with
/// nothing to do there is no `Ready`.
#[test]
fn node_ready_is_numbered_and_persists_before_sending() {
    let (mut node, keys) = primary();
    assert!(node.ready(Time::ZERO).is_none(), "nothing to do yet");
    request(&mut node, &keys, Time::ZERO);
    let ready = node.ready(Time::ZERO).expect("a proposal to send");
    assert_eq!(ready.number, 1);
    assert!(ready.writes.iter().any(|write| matches!(write, Write::Vote(_))), "its PREPARE");
    assert_eq!(ready.transmits.len(), 6, "PRE-PREPARE and PREPARE to three backups");
    node.advance(ready.number);
    assert!(node.ready(Time::ZERO).is_none());

    let (mut node, keys) = primary();
    request(&mut node, &keys, Time::ZERO);
    let mut trace = Trace::default();
    drive(&mut node, Time::ZERO, &mut trace).expect("no IO error");
    assert_eq!(trace.0.first(), Some(&"persist"), "{:?}", trace.0);
    assert_eq!(trace.0.iter().filter(|step| **step == "send").count(), 6);
}

/// A driver that asks for the next `Ready` before advancing the last one, or advances another
/// number than the `Ready` in flight, has a bug: the node panics rather than let a message
/// leave before its writes are durable.
#[test]
fn node_refuses_a_second_ready_before_advance_and_a_wrong_advance() {
    let panics = |driver: fn(&mut Node)| {
        let (mut node, keys) = primary();
        request(&mut node, &keys, Time::ZERO);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| driver(&mut node)));
        let payload = result.expect_err("the driver bug is caught");
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|text| text.to_string()))
            .unwrap_or_default()
    };
    let twice = panics(|node| {
        let _first = node.ready(Time::ZERO).expect("a Ready");
        let _ = node.ready(Time::ZERO);
    });
    assert!(twice.contains("was not advanced"), "{twice}");
    let wrong = panics(|node| {
        let ready = node.ready(Time::ZERO).expect("a Ready");
        node.advance(ready.number + 1);
    });
    assert!(wrong.contains("not in flight"), "{wrong}");
    // Done right, the same node goes on.
    let (mut node, keys) = primary();
    request(&mut node, &keys, Time::ZERO);
    let ready = node.ready(Time::ZERO).expect("a Ready");
    node.advance(ready.number);
    assert!(node.ready(Time::ZERO).is_none());
}

/// A Byzantine node's hook sees the core's messages on their way out (here `silent` drops
/// them all) and its `Ready` still persists the core's vote.
#[test]
fn node_runs_the_hook_on_the_way_out() {
    let (mut node, keys) = primary();
    let hook = Hook::new(
        node.core().config().clone(),
        keys.replicas[0].clone(),
        Arc::new(keys.public.clone()),
        ByzantineConfig { seed: 1, colluders: vec![0] },
    );
    node.set_hook(hook);
    assert!(node.behave(Time::ZERO, [Behaviour::Silent]));
    request(&mut node, &keys, Time::ZERO);
    let ready = node.ready(Time::ZERO).expect("a Ready");
    assert!(!ready.writes.is_empty(), "the vote is persisted all the same");
    assert!(ready.transmits.is_empty(), "silent: nothing leaves");
    node.advance(ready.number);
    assert!(node.hook().expect("hook").acted(Behaviour::Silent) > 0);
    assert_eq!(node.core().id(), ReplicaId(0));
}
