//! Linearizability: every method against an exhaustive brute force on small histories, on
//! histories linearizable by construction, and on hand-made violations.

use std::collections::HashSet;

use proptest::prelude::*;

use crate::linear::model::{NULL, RegisterOp, Step, Val};
use crate::linear::search::{self, Budget, SearchOutcome};
use crate::linear::{stale, unique, witness};

/// Exhaustive: is there an order of all `ok` operations and some `info` ones, respecting real
/// time, in which every operation sees the register it expects? The semantics of
/// `../shared/histories/brute_check.py`. At most 16 operations.
fn brute_force(ops: &[RegisterOp]) -> bool {
    assert!(ops.len() <= 16);
    let required: u32 =
        ops.iter().enumerate().filter(|(_, op)| !op.optional).fold(0, |m, (i, _)| m | (1 << i));
    let mut failed = HashSet::new();
    explore(ops, required, (1 << ops.len()) - 1, NULL, &mut failed)
}

/// `left`: operations not placed yet (required or optional).
fn explore(
    ops: &[RegisterOp],
    required: u32,
    left: u32,
    state: Val,
    failed: &mut HashSet<(u32, Val)>,
) -> bool {
    if left & required == 0 {
        return true;
    }
    if failed.contains(&(left, state)) {
        return false;
    }
    for (index, op) in ops.iter().enumerate() {
        if left & (1 << index) == 0 {
            continue;
        }
        // Every required operation that returned before this one began must be placed first.
        let blocked = ops.iter().enumerate().any(|(other, before)| {
            left & required & (1 << other) != 0 && other != index && before.ret < op.call
        });
        if blocked {
            continue;
        }
        if let Some(next) = op.step.apply(state)
            && explore(ops, required, left & !(1 << index), next, failed)
        {
            return true;
        }
        // An optional operation may also never happen.
        if op.optional && explore(ops, required, left & !(1 << index), state, failed) {
            return true;
        }
    }
    failed.insert((left, state));
    false
}

fn register_op(call: u64, ret: u64, step: Step, optional: bool) -> RegisterOp {
    RegisterOp { operation: 0, call, ret: if optional { u64::MAX } else { ret }, optional, step }
}

fn search(ops: &[RegisterOp]) -> SearchOutcome {
    search::check(ops, Budget::default())
}

/// Random small histories: up to `len` operations over values 0..3 (0 is `null`), with
/// overlaps up to `span`.
fn small_history(len: usize, span: u64) -> impl Strategy<Value = Vec<RegisterOp>> {
    let step = prop_oneof![
        (0u32..3).prop_map(Step::Read),
        (1u32..3).prop_map(Step::Write),
        (0u32..3, 0u32..3).prop_map(|(from, to)| Step::Cas(from, to)),
    ];
    let op = (0u64..20, 0..span, step, 0u8..6).prop_map(|(call, length, step, info)| {
        let optional = info == 0 && !matches!(step, Step::Read(_));
        register_op(call, call + length, step, optional)
    });
    prop::collection::vec(op, 1..=len).prop_map(|mut ops| {
        ops.sort_by_key(|op| op.call);
        ops
    })
}

/// A random sequential execution stretched into overlapping intervals: linearizable by
/// construction. Each operation's point is `10 * i`; its interval reaches up to `spread`
/// points to either side. Some writes and cas end `info`, taking effect or not.
fn linearizable_history(len: usize) -> impl Strategy<Value = Vec<RegisterOp>> {
    let entry = (0u8..4, 1u32..4, any::<bool>(), 0u64..30, 0u64..30, 0u8..8, any::<bool>());
    prop::collection::vec(entry, 1..=len).prop_map(|entries| {
        let mut state = NULL;
        let mut ops = Vec::new();
        for (i, (kind, value, matching, before, after, info, effect)) in
            entries.into_iter().enumerate()
        {
            let point = 100 + 10 * i as u64;
            let (call, ret) = (point - before.min(point), point + after);
            let optional = info == 0 && kind != 0;
            let step = match kind {
                0 => Step::Read(state),
                1 => Step::Write(value),
                _ => Step::Cas(if matching { state } else { value }, value % 3 + 1),
            };
            let applies = step.apply(state);
            match (applies, optional) {
                // A cas that would not match took no effect: record it as `fail` (dropped).
                (None, false) => continue,
                (Some(next), false) => state = next,
                (Some(next), true) if effect => state = next,
                _ => {}
            }
            ops.push(register_op(call, ret, step, optional));
        }
        ops.sort_by_key(|op| op.call);
        ops
    })
}

/// The search, the stale proofs and the unique-value check agree with brute force on `ops`.
fn agrees_with_brute_force(ops: &[RegisterOp]) -> Result<(), TestCaseError> {
    let expected = brute_force(ops);
    let searched = search(ops);
    prop_assert!(!matches!(searched, SearchOutcome::Unknown(_)), "{:?}", searched);
    prop_assert_eq!(matches!(searched, SearchOutcome::Linearizable), expected, "{:?}", ops);
    if expected {
        prop_assert_eq!(stale::check(ops), None, "a stale proof on {:?}", ops);
    }
    if let Some(decided) = unique::check(ops) {
        prop_assert_eq!(decided.is_ok(), expected, "unique check on {:?}", ops);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    /// The search, the stale proofs and the unique-value check agree with brute force.
    #[test]
    fn small_histories_match_brute_force(ops in small_history(8, 8)) {
        agrees_with_brute_force(&ops)?;
    }

    /// Twelve operations, mostly concurrent: the search's reductions under pressure.
    #[test]
    fn concurrent_histories_match_brute_force(ops in small_history(12, 16)) {
        agrees_with_brute_force(&ops)?;
    }

    /// Histories built from a sequential execution are linearizable, and the execution order
    /// is a valid witness.
    #[test]
    fn constructed_histories_are_linearizable(ops in linearizable_history(60)) {
        prop_assert_eq!(search(&ops), SearchOutcome::Linearizable, "{:?}", ops);
        prop_assert_eq!(stale::check(&ops), None);
    }
}

#[test]
fn brute_force_knows_the_classic_cases() {
    // A read of 1 after a write of 1 completed, then a stale read of null.
    let stale = [
        register_op(0, 1, Step::Write(1), false),
        register_op(2, 3, Step::Read(1), false),
        register_op(4, 5, Step::Read(NULL), false),
    ];
    assert!(!brute_force(&stale));
    // Concurrent: either order.
    let concurrent =
        [register_op(0, 5, Step::Write(1), false), register_op(1, 2, Step::Read(NULL), false)];
    assert!(brute_force(&concurrent));
    // An info write may take effect late.
    let late = [
        register_op(0, 0, Step::Write(1), true),
        register_op(5, 6, Step::Read(NULL), false),
        register_op(7, 8, Step::Read(1), false),
    ];
    assert!(brute_force(&late));
}

#[test]
fn a_stale_read_is_proven_with_its_overwriter() {
    let ops = [
        register_op(0, 1, Step::Write(1), false),
        register_op(2, 3, Step::Write(2), false),
        register_op(4, 5, Step::Read(1), false),
    ];
    let expected =
        stale::Stale::Overwritten { op: 2, value: 1, overwriter: 1, last_writer: Some(0) };
    assert_eq!(stale::check(&ops), Some(expected));
    let SearchOutcome::NotLinearizable(violation) = search(&ops) else { panic!("linearizable") };
    assert_eq!((violation.op, violation.possible_values.clone()), (2, vec![2]));
}

#[test]
fn a_read_of_a_value_never_written_is_impossible() {
    let ops = [register_op(0, 1, Step::Write(1), false), register_op(0, 4, Step::Read(3), false)];
    assert_eq!(stale::check(&ops), Some(stale::Stale::Impossible { op: 1, value: 3 }));
    // A write invoked after the read returned cannot explain it either.
    let ops = [register_op(0, 1, Step::Read(3), false), register_op(2, 3, Step::Write(3), false)];
    assert_eq!(stale::check(&ops), Some(stale::Stale::Impossible { op: 0, value: 3 }));
}

/// Duplicate values defeat the stale proof; the search still finds the violation: `w1 w2`
/// complete, then reads 1, 2, 1 in sequence while no write is pending.
#[test]
fn the_search_finds_a_violation_among_duplicate_values() {
    let ops = [
        register_op(0, 10, Step::Write(1), false),
        register_op(0, 10, Step::Write(2), false),
        register_op(0, 10, Step::Write(1), false),
        register_op(11, 12, Step::Read(1), false),
        register_op(13, 14, Step::Read(2), false),
    ];
    assert_eq!(stale::check(&ops), None);
    assert!(!brute_force(&ops));
    assert!(matches!(search(&ops), SearchOutcome::NotLinearizable(_)));
}

/// Operations numbered as the history's operations (`RegisterOp::operation`).
fn numbered<const N: usize>(mut ops: [RegisterOp; N]) -> [RegisterOp; N] {
    for (index, op) in ops.iter_mut().enumerate() {
        op.operation = index;
    }
    ops
}

#[test]
fn a_witness_order_is_verified_not_trusted() {
    let ops = numbered([
        register_op(0, 5, Step::Write(1), false),
        register_op(1, 2, Step::Read(NULL), false),
    ]);
    assert!(witness::verify(&ops, &[1, 0]).is_ok());
    assert!(witness::verify(&ops, &[0, 1]).is_err(), "the read would see 1");
    assert!(witness::verify(&ops, &[1]).is_err(), "the write is missing");
    let ordered = numbered([
        register_op(0, 1, Step::Write(1), false),
        register_op(2, 3, Step::Read(1), false),
    ]);
    assert!(witness::verify(&ordered, &[1, 0]).is_err(), "against real time");
}

#[test]
fn an_exhausted_budget_is_unknown_with_a_prefix() {
    let mut ops = Vec::new();
    for i in 0..40u64 {
        ops.push(register_op(i, 100 + i, Step::Write((i % 3 + 1) as Val), false));
        ops.push(register_op(i, 100 + i, Step::Read(((i + 1) % 3 + 1) as Val), false));
    }
    let budget = Budget { nodes_max: 50, ..Budget::default() };
    match search::check(&ops, budget) {
        SearchOutcome::Unknown(exhausted) => assert!(exhausted.reason.contains("budget")),
        other => panic!("expected unknown, got {other:?}"),
    }
}
