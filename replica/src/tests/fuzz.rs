//! Hostile bytes at scale (`sim::fuzz`): the frame layer the fuzz driver feeds, and what the
//! driver found (`fuzz_found_*`).

use super::recovery::assert_every_request_completed;
use crate::core::message::{Message, StateRequest, StateTransfer, ViewChange};
use crate::core::{Protocol, Rejection, ReplicaId, Seq, View};
use crate::net::frame::{FrameCutter, FrameError, framed};
use crate::sim::fuzz::fuzz_config;
use crate::sim::{Cluster, STEPS_MAX_DEFAULT, SimOptions};

// --------------------------------------------------------------------------------------------
// The frame layer.

/// The frame layer cuts the same frames whatever chunks the stream delivers them in, and
/// refuses a header over the limit before anything else arrives.
#[test]
fn fuzz_frame_cutter_any_chunking() {
    use rand::{Rng, RngExt, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1209);
    for _ in 0..200 {
        let frames: Vec<Vec<u8>> = (0..rng.random_range(0..8))
            .map(|_| {
                let mut frame = vec![0u8; rng.random_range(0..300)];
                rng.fill_bytes(&mut frame);
                frame
            })
            .collect();
        let stream: Vec<u8> = frames.iter().flat_map(|frame| framed(frame)).collect();
        let mut cutter = FrameCutter::new(256);
        let mut cut = Vec::new();
        let mut refused = false;
        let mut at = 0;
        while at < stream.len() && !refused {
            let end = (at + rng.random_range(1..64)).min(stream.len());
            cutter.extend(&stream[at..end]);
            at = end;
            loop {
                match cutter.next_frame() {
                    Ok(Some(frame)) => cut.push(frame),
                    Ok(None) => break,
                    Err(FrameError::TooLarge { size, max }) => {
                        assert_eq!(max, 256);
                        assert!(size > 256);
                        refused = true;
                        break;
                    }
                    Err(error) => panic!("{error}"),
                }
            }
        }
        let fitting = frames.iter().take_while(|frame| frame.len() <= 256).count();
        assert_eq!(cut, frames[..fitting], "every frame before the first oversized one");
        assert_eq!(refused, fitting < frames.len(), "the oversized frame is refused");
        if !refused {
            assert!(cutter.is_empty(), "nothing left over");
        }
    }
}

// --------------------------------------------------------------------------------------------
// What the fuzz driver found.

/// A STATE-REQUEST claiming the last representable slot crashed the replica that read it (the
/// slot after it overflowed `Seq::next`): one message from one Byzantine replica stopped an
/// honest one. Found by the driver (seed 1204).
///
/// Setup: n = 4 PoE-MAC; after 50 requests, replica 3 sends STATE-REQUEST(last executed =
/// u64::MAX) to replica 0, before and after replica 0 has a stable checkpoint.
/// Test: no panic; the request is processed (nothing to send), and the cluster completes.
#[test]
fn fuzz_found_state_request_at_the_last_slot() {
    let mut config = fuzz_config(Protocol::PoeMac);
    config.checkpoint_interval = 4;
    let mut cluster = Cluster::new(SimOptions::new(config, 1205, 200));
    let request = |view| Message::StateRequest(StateRequest { view, last_executed: Seq(u64::MAX) });
    cluster.inject(ReplicaId(3), ReplicaId(0), &request(View(0))).expect("nothing to give");
    cluster.run_until(STEPS_MAX_DEFAULT, |cluster| cluster.completions.len() >= 50).expect("50");
    assert!(cluster.replica(ReplicaId(0)).status().stable_checkpoint > Seq(0));
    cluster.inject(ReplicaId(3), ReplicaId(0), &request(View(0))).expect("nothing to give");
    cluster.inject(ReplicaId(3), ReplicaId(1), &request(View(u64::MAX))).expect("nothing");
    cluster.run(STEPS_MAX_DEFAULT).expect("the cluster keeps serving");
    assert_every_request_completed(&cluster, 200);
}

/// Three paths dropped an input without counting it, so a replica's counters could not account
/// for what it received: a re-sent (or overtaken) VC-REQUEST, a STATE-REQUEST inside the rate
/// limit, and a STATE-TRANSFER with nothing new. Each is now a typed rejection, counted once.
///
/// Setup: n = 4 PoE-MAC with checkpoints every 4 slots; after 60 requests replica 3 sends
/// replica 0 a valid VC-REQUEST twice, a STATE-REQUEST twice, and an empty STATE-TRANSFER.
/// Test: the first VC-REQUEST and STATE-REQUEST are accepted, the repeats are refused as
/// `duplicate_view_change` and `rate_limited`, the transfer as `stale_state_transfer`; each
/// counted once; the cluster completes.
#[test]
fn fuzz_found_silent_drops_are_counted() {
    let mut config = fuzz_config(Protocol::PoeMac);
    config.checkpoint_interval = 4;
    let mut cluster = Cluster::new(SimOptions::new(config, 1208, 200));
    cluster.run_until(STEPS_MAX_DEFAULT, |cluster| cluster.completions.len() >= 60).expect("60");
    let (b, to) = (ReplicaId(3), ReplicaId(0));
    assert!(cluster.replica(to).status().stable_checkpoint > Seq(0), "something to transfer");
    let checkpoint = cluster.disk(b).checkpoint.clone().map(|(certificate, _)| certificate);
    let bytes = ViewChange::signing_bytes(View(1), b, checkpoint.as_ref(), &[]);
    let signature = cluster.keys().replicas[3].signing_key.sign(&bytes);
    let request =
        ViewChange { target: View(1), replica: b, checkpoint, evidence: vec![], signature };
    let view_change = Message::ViewChange(std::sync::Arc::new(request));
    cluster.inject(b, to, &view_change).expect("a valid VC-REQUEST");
    let again = cluster.inject(b, to, &view_change);
    assert!(matches!(again, Err(Rejection::DuplicateViewChange { .. })), "{again:?}");
    let state_request =
        Message::StateRequest(StateRequest { view: View(0), last_executed: Seq(0) });
    cluster.inject(b, to, &state_request).expect("answered");
    let again = cluster.inject(b, to, &state_request);
    assert_eq!(again, Err(Rejection::RateLimited { message: "state-request", from: b }));
    let empty = StateTransfer { checkpoint: None, new_view: None, tail: vec![] };
    let stale = cluster.inject(b, to, &Message::StateTransfer(std::sync::Arc::new(empty)));
    assert_eq!(stale, Err(Rejection::StaleStateTransfer { from: b }));
    let counters = cluster.replica(to).counters();
    for kind in ["duplicate_view_change", "rate_limited", "stale_state_transfer"] {
        assert_eq!(counters.rejected(kind), 1, "{kind}");
    }
    cluster.run(STEPS_MAX_DEFAULT).expect("the cluster keeps serving");
    assert_every_request_completed(&cluster, 200);
}
