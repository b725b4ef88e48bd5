//! The state machine: semantics, digests, and exact undo.

use history::{OpResult, Operation};
use proptest::prelude::*;

use crate::core::message::RequestBody;
use crate::core::state_machine::StateMachine;
use crate::core::{ClientId, RequestId, Seq, View};

fn body(client: u32, request: u64, op: Operation) -> RequestBody {
    RequestBody { client: ClientId(client), request: RequestId(request), op }
}

#[test]
fn operations_follow_the_documented_semantics() {
    let mut state = StateMachine::new();
    let key = |k: &str| k.to_string();
    let batch = vec![
        body(0, 1, Operation::Read { key: key("a") }),
        body(1, 1, Operation::Write { key: key("a"), value: 5 }),
        body(2, 1, Operation::Cas { key: key("a"), from: 4, to: 6 }),
        body(3, 1, Operation::Cas { key: key("a"), from: 5, to: 6 }),
        body(4, 1, Operation::Cas { key: key("never"), from: 0, to: 1 }),
        body(5, 1, Operation::Transfer { from: key("a"), to: key("b"), amount: 2 }),
        body(6, 1, Operation::Transfer { from: key("a"), to: key("b"), amount: 5 }),
        body(7, 1, Operation::Transfer { from: key("a"), to: key("a"), amount: 1 }),
        body(8, 1, Operation::Transfer { from: key("a"), to: key("b"), amount: 0 }),
        body(9, 1, Operation::ReadAll { keys: vec![key("a"), key("b"), key("c")] }),
        // The same request again, and an older one: skipped.
        body(1, 1, Operation::Write { key: key("a"), value: 99 }),
        body(0, 0, Operation::Write { key: key("a"), value: 98 }),
    ];
    let results = state.execute(Seq(1), View(0), &batch);
    let expected = vec![
        Some(OpResult::Read { value: None }),
        Some(OpResult::Written),
        Some(OpResult::Cas { swapped: false }),
        Some(OpResult::Cas { swapped: true }),
        Some(OpResult::Cas { swapped: false }),
        Some(OpResult::Transfer { done: true }),
        Some(OpResult::Transfer { done: false }),
        Some(OpResult::Transfer { done: false }),
        Some(OpResult::Transfer { done: false }),
        Some(OpResult::ReadAll { values: vec![Some(4), Some(2), None] }),
        None,
        None,
    ];
    assert_eq!(results, expected);
    assert_eq!(state.get("a"), Some(4));
    assert_eq!(state.client_entry(ClientId(1)).map(|entry| entry.request), Some(RequestId(1)));
    assert_eq!(state.last_seq(), Seq(1));
}

/// Two stores that reach the same contents by different paths have the same digest at the
/// same slot: the digest is a function of the state, not of its history.
#[test]
fn digest_depends_on_state_not_history() {
    let mut direct = StateMachine::new();
    let mut roundabout = StateMachine::new();
    direct.execute(Seq(1), View(0), &[body(0, 1, Operation::Write { key: "x".into(), value: 2 })]);
    roundabout.execute(
        Seq(1),
        View(0),
        &[body(0, 1, Operation::Write { key: "x".into(), value: 2 })],
    );
    assert_eq!(direct.digest(), roundabout.digest());
    direct.execute(Seq(2), View(0), &[body(0, 2, Operation::Write { key: "y".into(), value: 1 })]);
    roundabout.execute(
        Seq(2),
        View(0),
        &[body(0, 2, Operation::Write { key: "y".into(), value: 1 })],
    );
    assert_eq!(direct.digest(), roundabout.digest());
    let mut other = StateMachine::new();
    other.execute(Seq(1), View(0), &[body(0, 1, Operation::Write { key: "x".into(), value: 3 })]);
    assert_ne!(other.digest(), StateMachine::new().digest());
}

fn op_strategy() -> impl Strategy<Value = Operation> {
    let key = prop::sample::select(vec!["a", "b", "c", "d"]).prop_map(str::to_string);
    prop_oneof![
        key.clone().prop_map(|key| Operation::Read { key }),
        (key.clone(), -3i64..10).prop_map(|(key, value)| Operation::Write { key, value }),
        (key.clone(), -3i64..10, -3i64..10).prop_map(|(key, from, to)| Operation::Cas {
            key,
            from,
            to
        }),
        (key.clone(), key.clone(), -2i64..8).prop_map(|(from, to, amount)| Operation::Transfer {
            from,
            to,
            amount
        }),
        prop::collection::vec(key, 1..4).prop_map(|keys| Operation::ReadAll { keys }),
    ]
}

/// A batch of (client, request-id, op); request ids are drawn small so that duplicates and
/// stale ids happen and exercise the at-most-once table.
fn batch_strategy() -> impl Strategy<Value = Vec<(u32, u64, Operation)>> {
    prop::collection::vec((0u32..3, 1u64..6, op_strategy()), 1..6)
}

/// Everything observable about a state, for exact comparison: last slot, digest, the values
/// of every key, and every client's last request and result.
type Observed = (Seq, crate::core::Digest, Vec<Option<i64>>, Vec<Option<(RequestId, OpResult)>>);

fn observe(state: &StateMachine) -> Observed {
    let keys = ["a", "b", "c", "d"].map(|key| state.get(key)).to_vec();
    let clients = (0..3)
        .map(|client| {
            state.client_entry(ClientId(client)).map(|entry| (entry.request, entry.result.clone()))
        })
        .collect();
    (state.last_seq(), state.digest(), keys, clients)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// Executing random slots and then undoing back to any earlier slot restores the exact
    /// state, at-most-once table and digest of that slot; re-executing the undone slots then
    /// reproduces the same results.
    #[test]
    fn undo_restores_exact_state(
        slots in prop::collection::vec(batch_strategy(), 1..12),
        target in any::<prop::sample::Index>(),
    ) {
        let mut state = StateMachine::new();
        let mut snapshots = vec![observe(&state)];
        let mut all_results = Vec::new();
        let bodies: Vec<Vec<RequestBody>> = slots
            .iter()
            .map(|slot| slot.iter().map(|(c, r, op)| body(*c, *r, op.clone())).collect())
            .collect();
        for (index, slot) in bodies.iter().enumerate() {
            all_results.push(state.execute(Seq(index as u64 + 1), View(0), slot));
            snapshots.push(observe(&state));
        }
        let target = target.index(snapshots.len());
        state.undo_to(Seq(target as u64)).unwrap();
        prop_assert_eq!(observe(&state), snapshots[target].clone());
        for (index, slot) in bodies.iter().enumerate().skip(target) {
            let results = state.execute(Seq(index as u64 + 1), View(0), slot);
            prop_assert_eq!(&results, &all_results[index]);
        }
        prop_assert_eq!(observe(&state), snapshots.last().unwrap().clone());
    }
}

#[test]
fn undo_refuses_targets_outside_the_log() {
    let mut state = StateMachine::new();
    for seq in 1..=4 {
        state.execute(
            Seq(seq),
            View(0),
            &[body(0, seq, Operation::Write { key: "k".into(), value: seq as i64 })],
        );
    }
    assert!(state.undo_to(Seq(5)).is_err());
    state.discard_undo_through(Seq(2));
    assert_eq!(state.undo_floor(), Seq(2));
    let error = state.undo_to(Seq(1)).unwrap_err();
    assert_eq!((error.target, error.oldest, error.last), (Seq(1), Seq(2), Seq(4)));
    assert_eq!(state.get("k"), Some(4), "a refused undo changes nothing");
    state.undo_to(Seq(2)).unwrap();
    assert_eq!(state.get("k"), Some(2));
}
