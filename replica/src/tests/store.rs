//! The redb store and `Durable::apply` agree on what a sequence of writes leaves, the vote
//! floor included: it is never lowered, and entering a lower view keeps it while the pending
//! VC-REQUEST goes.

use std::sync::Arc;

use crate::core::durable::{Durable, Write};
use crate::core::message::ViewChange;
use crate::core::{ReplicaId, View};
use crate::crypto::ed25519::Signature;
use crate::net::store::Store;

fn view_change(target: u64) -> Write {
    Write::ViewChange(Arc::new(ViewChange {
        target: View(target),
        replica: ReplicaId(3),
        checkpoint: None,
        evidence: Vec::new(),
        signature: Signature([7; 64]),
    }))
}

#[test]
fn the_vote_floor_survives_and_is_never_lowered() {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let directory = temporary.path();
    let store = Store::open(&directory.join("store.redb"), false).unwrap();
    // Asks for view 3, enters view 1 passively, asks for view 2 (a lower target).
    let batches = [vec![view_change(3)], vec![Write::View(View(1))], vec![view_change(2)]];
    let mut durable = Durable::default();
    for batch in &batches {
        store.apply(batch).unwrap();
        durable.apply(batch.iter().cloned());
    }
    let loaded = store.load().unwrap();
    assert_eq!(loaded, durable, "the store and Durable::apply agree");
    assert_eq!(loaded.vote_floor, View(3), "never lowered");
    assert_eq!(loaded.view, View(1));
    assert_eq!(loaded.view_change.map(|request| request.target), Some(View(2)));
    store.apply(&[Write::View(View(3))]).unwrap();
    let entered = store.load().unwrap();
    assert_eq!((entered.view, entered.vote_floor), (View(3), View(3)));
    assert!(entered.view_change.is_none(), "the view change completed");
}

/// PBFT's prepared certificates (`Write::Prepared`): the store and `Durable::apply` keep the
/// highest view per slot, and a stable checkpoint drops those at or below it.
#[test]
fn prepared_certificates_survive_and_are_collected() {
    use crate::core::Seq;
    use crate::core::ledger::Certificate;
    use crate::core::message::{CheckpointCertificate, SlotEvidence};
    use crate::core::state_machine::StateMachine;

    let temporary = tempfile::tempdir().expect("a temporary directory");
    let directory = temporary.path();
    let store = Store::open(&directory.join("store.redb"), false).unwrap();
    let prepared = |view: u64, seq: u64| {
        let mut evidence = SlotEvidence::null(Seq(seq));
        evidence.view = View(view);
        evidence.certificate = Certificate::Supports(Vec::new());
        Write::Prepared(evidence)
    };
    let checkpoint = Write::Checkpoint {
        certificate: CheckpointCertificate {
            seq: Seq(4),
            state_digest: history::Digest([1; 32]),
            block_hash: history::Digest([2; 32]),
            signatures: Vec::new(),
        },
        snapshot: StateMachine::with_genesis(&Default::default()).snapshot(),
        keep_blocks: true,
    };
    let batches = [
        vec![prepared(1, 3), prepared(1, 5), prepared(1, 6)],
        vec![prepared(2, 5), prepared(0, 6)],
        vec![checkpoint],
    ];
    let mut durable = Durable::default();
    for batch in &batches {
        store.apply(batch).unwrap();
        durable.apply(batch.iter().cloned());
    }
    let loaded = store.load().unwrap();
    assert_eq!(loaded, durable, "the store and Durable::apply agree");
    let kept: Vec<(u64, u64)> =
        loaded.prepared.values().map(|evidence| (evidence.seq.0, evidence.view.0)).collect();
    assert_eq!(
        kept,
        vec![(5, 2), (6, 1)],
        "highest view per slot, none at or below the checkpoint"
    );
}
