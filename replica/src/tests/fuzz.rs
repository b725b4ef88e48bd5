//! Hostile bytes at scale (`sim::fuzz`): the frame layer the fuzz driver feeds.

use crate::net::frame::{FrameCutter, FrameError, framed};

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
