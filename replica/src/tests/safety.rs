//! The safety rules ([`crate::core::safety::Safety`]): every refusal with its typed reason.

use crate::core::safety::{Refusal, Safety};
use crate::core::{Config, Digest, Protocol, ReplicaId, Seq, View};
use crate::crypto::dealer::ClusterKeys;

fn safety(protocol: Protocol) -> Safety {
    let config = Config::new(protocol, 4, 1);
    let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
    let keys = ClusterKeys::generate(&mut rng, 4, 1, config.nf() as u32).expect("keys");
    let secrets = keys.replicas[1].clone();
    Safety::new(ReplicaId(1), protocol, secrets.signing_key, secrets.threshold_share)
}

/// One vote per (view, seq): the same digest again gets the same vote, another is refused.
#[test]
fn safety_votes_once_per_slot_of_a_view() {
    let mut safety = safety(Protocol::Pbft);
    let (a, b) = (Digest([1; 32]), Digest([2; 32]));
    let vote = safety.support(View(0), Seq(1), a, None).expect("first vote");
    assert_eq!(safety.support(View(0), Seq(1), a, None), Ok(vote));
    let refused = safety.support(View(0), Seq(1), b, None).expect_err("a second digest");
    assert!(matches!(refused, Refusal::AlreadySupported { .. }), "{refused}");
    assert_eq!(refused.kind(), "already-supported");
    assert!(safety.support(View(1), Seq(1), b, None).is_ok(), "another view is another slot");
}

/// PBFT: a COMMIT only for the digest PREPAREd at that slot of that view.
#[test]
fn safety_commits_only_what_it_prepared() {
    let mut safety = safety(Protocol::Pbft);
    let (a, b) = (Digest([1; 32]), Digest([2; 32]));
    let unsupported = safety.commit(View(0), Seq(1), a).expect_err("nothing PREPAREd yet");
    assert_eq!(unsupported.kind(), "commit-unsupported");
    safety.support(View(0), Seq(1), a, None).expect("PREPARE");
    let commit = safety.commit(View(0), Seq(1), a).expect("the PREPAREd digest");
    assert_eq!(
        (commit.view, commit.seq, commit.digest, commit.replica),
        (View(0), Seq(1), a, ReplicaId(1))
    );
    assert!(safety.commit(View(0), Seq(1), b).is_err(), "another digest");
    assert!(safety.commit(View(1), Seq(1), a).is_err(), "another view");
}

/// The vote floor: a VC-REQUEST raises it; below it no vote, COMMIT or CHECKPOINT is signed,
/// and no second VC-REQUEST for a view at or below it.
#[test]
fn safety_holds_the_vote_floor() {
    let mut safety = safety(Protocol::PoeMac);
    let digest = Digest([1; 32]);
    assert!(safety.sign_checkpoint(View(0), b"checkpoint").is_ok());
    safety.sign_view_change(View(3), b"view change to 3").expect("above the floor");
    assert_eq!(safety.floor(), View(3));
    let refused = safety.sign_view_change(View(3), b"another to 3").expect_err("not above");
    assert_eq!(refused.kind(), "view-change-not-above-floor");
    assert!(safety.sign_view_change(View(2), b"to 2").is_err());
    let below = safety.support(View(2), Seq(1), digest, None).expect_err("below the floor");
    assert_eq!(below.kind(), "below-vote-floor");
    assert!(safety.commit(View(2), Seq(1), digest).is_err());
    assert!(safety.sign_checkpoint(View(2), b"checkpoint").is_err());
    assert!(safety.support(View(3), Seq(1), digest, None).is_ok(), "at the floor");
    assert!(safety.sign_checkpoint(View(3), b"checkpoint").is_ok());
    safety.raise_floor(View(1));
    assert_eq!(safety.floor(), View(3), "never lowered");
}
