//! Hostile bytes at scale (`sim::fuzz`): the frame layer the fuzz driver feeds, and what the
//! driver found (`fuzz_found_*`).

use super::recovery::assert_every_request_completed;
use crate::core::message::{Message, StateRequest};
use crate::core::{Protocol, ReplicaId, Seq, View};
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
