//! Polynomial linearizability for a register whose writes carry unique values (Ordeal's
//! workloads guarantee it): decided from which write each read observed, without search.
//!
//! With unique values every observed value names its writer. An `ok` cas from `a` to `b`
//! observed `a` and wrote `b`; since `a` is never written again, it must come immediately after
//! the writer of `a` in the order of writes. Writers therefore form *chains* (a write, or the
//! initial `null`, followed by the cas that consumed each value in turn), and a chain together
//! with every read of its values forms a *block*: in any linearization a block's operations are
//! contiguous (during it the register only holds the chain's values), in the order
//! `w0, reads of v0, c1, reads of v1, ...`. An optional (`info`) writer took effect exactly when
//! someone observed its value; otherwise it is left out, which is always allowed.
//!
//! The history is linearizable iff (Gibbons & Korach's zones, generalised from one write and
//! its reads to blocks):
//! 1. every observed value has a writer, and no value is consumed by two cas;
//! 2. inside each block, no operation of a later group returned before one of an earlier group
//!    was invoked;
//! 3. with `first` the earliest return and `last` the latest invocation of a block, the
//!    *forward* blocks (`first < last`, whose span must cover `[first, last]`) do not overlap,
//!    and no *backward* block (`last <= first`, placeable at any point of `[last, first]`) lies
//!    strictly inside a forward one.
//!
//! Time O(n log n). Cross-checked against exhaustive search in the tests.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::model::{KeyHistory, NULL, RegisterOp, Step, Val};
use crate::validate::Operation;

/// Why a unique-valued history is not linearizable. Operation numbers index the key's ops.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    /// An operation observed a value nothing wrote.
    NeverWritten {
        /// The observing operation.
        op: usize,
        /// The value.
        value: Val,
    },
    /// `op` observed `value`, whose chain of cas never starts at a write or the initial value
    /// (the cas form a cycle).
    Unrooted {
        /// The observing operation.
        op: usize,
        /// The value.
        value: Val,
    },
    /// Two cas both consumed one value.
    DoubleConsume {
        /// The first cas.
        first: usize,
        /// The second cas.
        second: usize,
    },
    /// Inside a block, `later` must follow `earlier` but returned before `earlier` began.
    Order {
        /// The operation that must come first.
        earlier: usize,
        /// The operation that must come after it.
        later: usize,
    },
    /// Two blocks must each be entirely before the other.
    Overlap {
        /// The chain values of the first block.
        first: BlockSummary,
        /// Those of the second.
        second: BlockSummary,
    },
}

/// What a violation needs to know about a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSummary {
    /// The values the block's chain wrote, in order (`null` first for the initial block).
    pub values: Vec<Val>,
    /// The operation that returned first.
    pub first_op: Option<usize>,
    /// The operation invoked last.
    pub last_op: Option<usize>,
}

#[derive(Debug, Default)]
struct Block {
    /// Groups in order: a writer, then the reads of its value, then the next writer...
    groups: Vec<Vec<usize>>,
    values: Vec<Val>,
    first: u64,
    last: u64,
    first_op: Option<usize>,
    last_op: Option<usize>,
}

/// Decides a key whose written values are unique; `None` when they are not (the caller must
/// search instead).
pub fn check(ops: &[RegisterOp]) -> Option<Result<(), Violation>> {
    let mut writer: HashMap<Val, usize> = HashMap::new();
    for (index, op) in ops.iter().enumerate() {
        if let Some(value) = op.step.written() {
            let rewrites_initial = value == NULL;
            let repeated = writer.insert(value, index).is_some();
            let self_loop = matches!(op.step, Step::Cas(from, to) if from == to);
            if rewrites_initial || repeated || self_loop {
                return None;
            }
        }
    }
    Some(decide(ops, &writer))
}

fn decide(ops: &[RegisterOp], writer: &HashMap<Val, usize>) -> Result<(), Violation> {
    // Which operations took part: every ok one, and optional writers whose value someone
    // observed (transitively, since an included cas observes its `from`).
    let mut included: Vec<bool> = ops.iter().map(|op| !op.optional).collect();
    let mut observed: Vec<(Val, usize)> = Vec::new();
    for (index, op) in ops.iter().enumerate() {
        if op.optional {
            continue;
        }
        match op.step {
            Step::Read(value) | Step::Cas(value, _) => observed.push((value, index)),
            Step::Write(_) => {}
        }
    }
    let mut readers: HashMap<Val, Vec<usize>> = HashMap::new();
    let mut consumer: HashMap<Val, usize> = HashMap::new();
    // Bounded: every optional writer is included at most once.
    while let Some((value, observer)) = observed.pop() {
        if value != NULL {
            let Some(&source) = writer.get(&value) else {
                return Err(Violation::NeverWritten { op: observer, value });
            };
            if !included[source] {
                included[source] = true;
                if let Step::Cas(from, _) = ops[source].step {
                    observed.push((from, source));
                }
            }
        }
        match ops[observer].step {
            Step::Read(_) => readers.entry(value).or_default().push(observer),
            Step::Cas(..) => {
                if let Some(&first) = consumer.get(&value) {
                    return Err(Violation::DoubleConsume { first, second: observer });
                }
                consumer.insert(value, observer);
            }
            Step::Write(_) => {}
        }
    }
    // Chains start at the initial value and at every included plain write.
    let mut heads: Vec<(Option<usize>, Val)> = vec![(None, NULL)];
    for (index, op) in ops.iter().enumerate() {
        if included[index]
            && let Step::Write(value) = op.step
        {
            heads.push((Some(index), value));
        }
    }
    let mut blocks = Vec::with_capacity(heads.len());
    for (head, value) in heads {
        blocks.push(build_block(ops, head, value, &readers, &consumer)?);
    }
    // Every observer must sit in a block; one that does not observed a value of a cycle.
    let mut placed = vec![false; ops.len()];
    for &index in blocks.iter().flat_map(|block| block.groups.iter().flatten()) {
        placed[index] = true;
    }
    let unplaced = readers.values().flatten().chain(consumer.values()).copied();
    if let Some(op) = unplaced.filter(|&op| !placed[op]).min() {
        let value = match ops[op].step {
            Step::Read(value) | Step::Cas(value, _) => value,
            Step::Write(value) => value,
        };
        return Err(Violation::Unrooted { op, value });
    }
    check_zones(blocks)
}

fn build_block(
    ops: &[RegisterOp],
    head: Option<usize>,
    mut value: Val,
    readers: &HashMap<Val, Vec<usize>>,
    consumer: &HashMap<Val, usize>,
) -> Result<Block, Violation> {
    let mut block = Block { first: u64::MAX, last: 0, ..Block::default() };
    // The initial value's virtual writer returns at time 0, strictly before everything: block
    // times are the operations' times plus one.
    match head {
        Some(index) => block.groups.push(vec![index]),
        None => {
            block.groups.push(Vec::new());
            block.first = 0;
        }
    }
    // Bounded: values are unique, so the chain visits each at most once.
    loop {
        block.values.push(value);
        block.groups.push(readers.get(&value).cloned().unwrap_or_default());
        match consumer.get(&value) {
            Some(&cas) => {
                block.groups.push(vec![cas]);
                value = ops[cas].step.written().expect("a cas writes");
            }
            None => break,
        }
    }
    for &index in block.groups.iter().flatten() {
        let op = &ops[index];
        let (call, ret) = (op.call.saturating_add(1), op.ret.saturating_add(1));
        if ret < block.first {
            block.first = ret;
            block.first_op = Some(index);
        }
        if call >= block.last {
            block.last = call;
            block.last_op = Some(index);
        }
    }
    check_inside(ops, &block)?;
    Ok(block)
}

/// Rule 2: scanning the groups in order, no operation of a later group may return before an
/// operation of an earlier group was invoked.
fn check_inside(ops: &[RegisterOp], block: &Block) -> Result<(), Violation> {
    let mut latest_call: Option<(u64, usize)> = None;
    for group in &block.groups {
        for &index in group {
            if let Some((call, earlier)) = latest_call
                && ops[index].ret < call
            {
                return Err(Violation::Order { earlier, later: index });
            }
        }
        for &index in group {
            if latest_call.is_none_or(|(call, _)| ops[index].call > call) {
                latest_call = Some((ops[index].call, index));
            }
        }
    }
    Ok(())
}

/// Rule 3.
fn check_zones(blocks: Vec<Block>) -> Result<(), Violation> {
    let summary = |block: &Block| BlockSummary {
        values: block.values.clone(),
        first_op: block.first_op,
        last_op: block.last_op,
    };
    let (mut forward, backward): (Vec<&Block>, Vec<&Block>) =
        blocks.iter().partition(|block| block.first < block.last);
    forward.sort_by_key(|block| block.first);
    for pair in forward.windows(2) {
        if pair[1].first < pair[0].last {
            return Err(Violation::Overlap { first: summary(pair[0]), second: summary(pair[1]) });
        }
    }
    for block in backward {
        // The forward block starting last before this block's latest invocation.
        let position = forward.partition_point(|zone| zone.first < block.last);
        if let Some(zone) = position.checked_sub(1).map(|position| forward[position])
            && block.first < zone.last
        {
            return Err(Violation::Overlap { first: summary(zone), second: summary(block) });
        }
    }
    Ok(())
}

/// The evidence of a violation.
pub fn explain(
    key: &str,
    history: &KeyHistory,
    operations: &[Operation],
    violation: &Violation,
) -> Value {
    let describe = |index: usize| super::describe(history, operations, &history.ops[index]);
    let values = |values: &[Val]| -> Vec<Value> {
        values.iter().map(|value| history.value(*value).clone()).collect()
    };
    match violation {
        Violation::NeverWritten { op, value } => json!({
            "key": key,
            "op": describe(*op),
            "explanation": format!("observed {}, which nothing wrote", history.value(*value)),
            "window": [describe(*op)],
        }),
        Violation::Unrooted { op, value } => json!({
            "key": key,
            "op": describe(*op),
            "explanation": format!(
                "observed {}, which only a cycle of cas writes: no write starts it",
                history.value(*value)
            ),
            "window": [describe(*op)],
        }),
        Violation::DoubleConsume { first, second } => json!({
            "key": key,
            "op": describe(*second),
            "explanation": "two cas succeeded from the same value, which is written only once",
            "window": [describe(*first), describe(*second)],
        }),
        Violation::Order { earlier, later } => {
            let should = match history.ops[*later].step {
                Step::Read(_) | Step::Cas(..) => history.ops[*earlier].step.written(),
                Step::Write(_) => None,
            };
            json!({
                "key": key,
                "op": describe(*later),
                "explanation": "this operation returned before an operation it must follow began",
                "should_have_read_one_of": should.map(|value| vec![history.value(value).clone()]),
                "window": [describe(*earlier), describe(*later)],
            })
        }
        Violation::Overlap { first, second } => {
            let window: Vec<Value> =
                [first.first_op, first.last_op, second.first_op, second.last_op]
                    .into_iter()
                    .flatten()
                    .map(describe)
                    .collect();
            json!({
                "key": key,
                "explanation": format!(
                    "the writes of {} and of {} (each with its readers) must each come entirely \
                     before the other",
                    Value::Array(values(&first.values)),
                    Value::Array(values(&second.values)),
                ),
                "should_have_read_one_of": values(&second.values),
                "window": window,
            })
        }
    }
}
