//! Linearizability of the key-value model.
//!
//! Every key is an independent register (P-compositionality: a history is linearizable iff
//! each key's sub-history is), so keys are checked separately on a bounded pool of threads.
//! Per key, in order:
//! 1. [`witness`]: if an order of the operations is known (an honest replica's ledger), verify
//!    it in linear time; a valid witness proves linearizability;
//! 2. [`unique`]: if every written value is unique, decide in polynomial time from which write
//!    each read observed;
//! 3. [`stale`]: otherwise, an O(n log n) look for reads of overwritten or never written
//!    values, which proves a violation;
//! 4. [`search`]: otherwise, the bounded search.
//!
//! The verdict of a key is `invalid` with an explanation (the operation that cannot be
//! linearized, the operations concurrent with it, the values a read could have seen),
//! `unknown` when the budget ran out (with the longest prefix found linearizable) or the key
//! holds operations the model does not know, and `valid` otherwise.

#![allow(clippy::disallowed_methods, reason = "each key gets a wall-clock budget")]

pub mod model;
pub mod search;
pub mod stale;
pub mod unique;
pub mod witness;

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use history::Verdict;
use serde_json::{Value, json};

use self::model::{KeyHistory, RegisterOp, Step};
use self::search::{Budget, SearchOutcome};
use crate::CheckResult;
use crate::validate::Operation;

/// How the checker may spend its effort.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinearOptions {
    /// Time allowed per key before it is `unknown`; `None`: the search is bounded by its work
    /// alone (`nodes_max`, `configs_max`) and the result carries no timing, so that it is a
    /// pure function of the history ([`LinearOptions::untimed`]).
    pub key_time_max: Option<Duration>,
    /// Search nodes allowed per key.
    pub nodes_max: u64,
    /// Configurations alive at once allowed per key (bounds memory).
    pub configs_max: usize,
    /// Worker threads.
    pub threads: usize,
}

impl Default for LinearOptions {
    fn default() -> LinearOptions {
        LinearOptions {
            key_time_max: Some(Duration::from_secs(20)),
            nodes_max: 500_000_000,
            configs_max: 200_000,
            threads: std::thread::available_parallelism().map_or(2, |count| count.get()),
        }
    }
}

impl LinearOptions {
    /// The default budgets without the time limit: the simulator's judgements must be the
    /// same on every machine and with any number of threads.
    pub fn untimed() -> LinearOptions {
        LinearOptions { key_time_max: None, ..LinearOptions::default() }
    }
}

/// How one key was decided.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyOutcome {
    /// The key.
    pub key: String,
    /// Register operations checked.
    pub ops: usize,
    /// The verdict.
    pub verdict: Verdict,
    /// Which method decided it (`witness`, `unique`, `search`).
    pub method: &'static str,
    /// Evidence when not valid.
    pub evidence: Option<Value>,
}

/// Checks every key of `operations`; `witness` may give, per key, a candidate order of
/// operation indices (for instance an honest ledger's execution order).
pub fn check(
    operations: &[Operation],
    witness: Option<&BTreeMap<String, Vec<usize>>>,
    options: LinearOptions,
) -> CheckResult {
    let started = Instant::now();
    let keys: Vec<(String, KeyHistory)> = model::by_key(operations).into_iter().collect();
    let next = AtomicUsize::new(0);
    let outcomes: Mutex<Vec<KeyOutcome>> = Mutex::new(Vec::new());
    let threads = options.threads.clamp(1, keys.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                // Bounded: every iteration takes the next key.
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some((key, history)) = keys.get(index) else { break };
                    let order = witness.and_then(|orders| orders.get(key)).map(Vec::as_slice);
                    let outcome = check_key(key, history, operations, order, options);
                    outcomes.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(outcome);
                }
            });
        }
    });
    let mut outcomes = outcomes.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner());
    outcomes.sort_by(|a, b| a.key.cmp(&b.key));
    summarize(&outcomes, options.key_time_max.map(|_| started.elapsed()))
}

/// Decides one key.
pub fn check_key(
    key: &str,
    history: &KeyHistory,
    operations: &[Operation],
    witness_order: Option<&[usize]>,
    options: LinearOptions,
) -> KeyOutcome {
    let outcome = |verdict, method, evidence| KeyOutcome {
        key: key.to_string(),
        ops: history.ops.len(),
        verdict,
        method,
        evidence,
    };
    if !history.unsupported.is_empty() {
        let lines: Vec<usize> =
            history.unsupported.iter().take(10).map(|&index| operations[index].line).collect();
        let evidence = json!({"key": key, "unsupported": {
            "count": history.unsupported.len(),
            "lines": lines,
            "reason": "functions other than read, write and cas [from, to]",
        }});
        return outcome(Verdict::Unknown, "none", Some(evidence));
    }
    if let Some(order) = witness_order
        && witness::verify(&history.ops, order).is_ok()
    {
        return outcome(Verdict::Valid, "witness", None);
    }
    if let Some(result) = unique::check(&history.ops) {
        return match result {
            Ok(()) => outcome(Verdict::Valid, "unique", None),
            Err(violation) => {
                let evidence = unique::explain(key, history, operations, &violation);
                outcome(Verdict::Invalid, "unique", Some(evidence))
            }
        };
    }
    if let Some(stale) = stale::check(&history.ops) {
        let evidence = explain_stale(key, history, operations, &stale);
        return outcome(Verdict::Invalid, "stale", Some(evidence));
    }
    let budget = Budget {
        nodes_max: options.nodes_max,
        configs_max: options.configs_max,
        deadline: options.key_time_max.map(|limit| Instant::now() + limit),
    };
    match search::check(&history.ops, budget) {
        SearchOutcome::Linearizable => outcome(Verdict::Valid, "search", None),
        SearchOutcome::NotLinearizable(violation) => {
            let evidence = explain_search(key, history, operations, &violation);
            outcome(Verdict::Invalid, "search", Some(evidence))
        }
        SearchOutcome::Unknown(exhausted) => {
            let evidence = json!({
                "key": key,
                "reason": exhausted.reason,
                "linearizable_prefix_ops": exhausted.linearizable_prefix,
                "linearizable_until_time": exhausted.time,
            });
            outcome(Verdict::Unknown, "search", Some(evidence))
        }
    }
}

/// A register operation as evidence: its line, process, function, values and interval.
pub fn describe(history: &KeyHistory, operations: &[Operation], op: &RegisterOp) -> Value {
    let operation = &operations[op.operation];
    let value = |v| history.value(v).clone();
    let (f, value) = match op.step {
        Step::Read(v) => ("read", value(v)),
        Step::Write(v) => ("write", value(v)),
        Step::Cas(from, to) => ("cas", json!([value(from), value(to)])),
    };
    json!({
        "line": operation.line,
        "process": operation.process,
        "f": f,
        "value": value,
        "type": if op.optional { "info" } else { "ok" },
        "invoke_time": op.call,
        "complete_time": operation.ret,
    })
}

fn explain_search(
    key: &str,
    history: &KeyHistory,
    operations: &[Operation],
    violation: &search::Violation,
) -> Value {
    let op = &history.ops[violation.op];
    let could_be: Vec<Value> =
        violation.possible_values.iter().map(|v| history.value(*v).clone()).collect();
    let window: Vec<Value> = violation
        .concurrent
        .iter()
        .map(|index| describe(history, operations, &history.ops[*index]))
        .collect();
    let why = match op.step {
        Step::Read(v) => format!(
            "read {} but the register could only hold one of {} when it returned",
            history.value(v),
            Value::Array(could_be.clone())
        ),
        Step::Cas(from, _) => format!(
            "cas expected {} but the register could only hold one of {}",
            history.value(from),
            Value::Array(could_be.clone())
        ),
        Step::Write(_) => "the write cannot be placed".to_string(),
    };
    json!({
        "key": key,
        "op": describe(history, operations, op),
        "explanation": why,
        "should_have_read_one_of": could_be,
        "window": window,
    })
}

fn explain_stale(
    key: &str,
    history: &KeyHistory,
    operations: &[Operation],
    stale: &stale::Stale,
) -> Value {
    let describe = |index: usize| describe(history, operations, &history.ops[index]);
    match *stale {
        stale::Stale::Impossible { op, value } => json!({
            "key": key,
            "op": describe(op),
            "explanation": format!(
                "observed {}, which nothing had begun to write when it returned",
                history.value(value)
            ),
            "window": [describe(op)],
        }),
        stale::Stale::Overwritten { op, value, overwriter, last_writer } => {
            let written = history.ops[overwriter].step.written().map(|v| history.value(v).clone());
            let writer = match last_writer {
                Some(writer) => format!("its last writer (line {})", describe(writer)["line"]),
                None => "the initial value".to_string(),
            };
            let mut window: Vec<Value> = last_writer.map(describe).into_iter().collect();
            window.extend([describe(overwriter), describe(op)]);
            json!({
                "key": key,
                "op": describe(op),
                "explanation": format!(
                    "stale: observed {}, but {writer} was overwritten with {} by an operation \
                     that returned before this one began",
                    history.value(value),
                    written.clone().unwrap_or(Value::Null),
                ),
                "should_have_read_one_of": [written],
                "window": window,
            })
        }
    }
}

/// The verdict over every key; `elapsed` only when the search was timed.
fn summarize(outcomes: &[KeyOutcome], elapsed: Option<Duration>) -> CheckResult {
    let verdict = Verdict::merge_all(outcomes.iter().map(|outcome| outcome.verdict));
    let ops: usize = outcomes.iter().map(|outcome| outcome.ops).sum();
    let mut methods: BTreeMap<&str, usize> = BTreeMap::new();
    for outcome in outcomes {
        *methods.entry(outcome.method).or_default() += 1;
    }
    let failures: Vec<&Value> = outcomes
        .iter()
        .filter(|outcome| outcome.verdict == Verdict::Invalid)
        .filter_map(|outcome| outcome.evidence.as_ref())
        .take(10)
        .collect();
    let unknown: Vec<&Value> = outcomes
        .iter()
        .filter(|outcome| outcome.verdict == Verdict::Unknown)
        .filter_map(|outcome| outcome.evidence.as_ref())
        .take(10)
        .collect();
    let mut details = json!({
        "keys": outcomes.len(),
        "ops": ops,
        "methods": methods,
        "failures": failures,
        "unknown": unknown,
    });
    if let Some(elapsed) = elapsed {
        details["seconds"] = json!(elapsed.as_secs_f64());
    }
    CheckResult::new(verdict, details)
}
