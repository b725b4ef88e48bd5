//! Every oracle over one run (or one plain history): the function `ordeal test` and
//! `ordeal check` share, so that a stored run re-checked gives what the run reported.
//!
//! Which oracles run follows from what is there: linearizability when the history holds
//! single-key operations, the bank oracle when it holds transfers or reads of all balances,
//! the ledger oracles (agreement, checkpoints, one batch per slot, the replay audits) and
//! speculation when ledgers are given, liveness when asked for.

use std::collections::{BTreeMap, HashMap};

use std::path::Path;

use history::{LedgerEvent, Op, OpKind, Verdict};
use serde_json::json;

use crate::digest::Keys;
use crate::linear::LinearOptions;
use crate::liveness::LivenessOptions;
use crate::load::{HistoryFile, LoadError};
use crate::perf::{Stats, Tally, Throughput};
use crate::replay::{Context, Issued};
use crate::validate::{HistoryError, Operation, Pairing};
use crate::{
    CheckResult, bank, certificate, evidence, informs, ledger, linear, liveness, protocol, replay,
    speculation, validate,
};

/// What a check is given.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    /// The history, or why it could not be read.
    pub history: Option<Result<History, String>>,
    /// The ledgers of the honest replicas, by replica id (empty for a plain history).
    pub ledgers: BTreeMap<u32, Vec<LedgerEvent>>,
    /// Ledgers that could not be read or were cut off, as messages.
    pub ledger_problems: Vec<String>,
    /// Genesis, keys: what the ledger audits need.
    pub context: Context,
    /// The bank's initial total, when known.
    pub bank_total: Option<i128>,
    /// Liveness requirements; `None` skips the oracle (a plain history has no nemesis).
    pub liveness: Option<LivenessOptions>,
    /// The linearizability checker's budget.
    pub linear: LinearOptions,
    /// The protocol's rules, when known (a stored run); `None` skips the per-protocol oracles.
    pub protocol: Option<protocol::Rules>,
}

/// The outcome of every oracle.
#[derive(Debug, Clone)]
pub struct Report {
    /// The overall verdict: the worst of the checkers'.
    pub verdict: Verdict,
    /// Each oracle's result, by name.
    pub checkers: BTreeMap<String, CheckResult>,
    /// Performance of the history.
    pub stats: Stats,
    /// Throughput over time.
    pub throughput: Throughput,
    /// Client operations (invocations).
    pub operations: usize,
    /// Keys of single-key operations.
    pub keys: usize,
    /// The rule the history broke, if it could not be paired.
    pub history_error: Option<validate::HistoryError>,
}

/// Runs every oracle that applies to `inputs`.
pub fn check(mut inputs: Inputs) -> Report {
    let mut checkers: BTreeMap<String, CheckResult> = BTreeMap::new();
    let mut stats = Stats::default();
    let mut throughput = Throughput::default();
    let mut operations: Vec<Operation> = Vec::new();
    let mut keys = 0;
    let mut history_error = None;
    match inputs.history.take() {
        None => {}
        Some(Err(error)) => {
            checkers.insert(
                "history".into(),
                CheckResult::new(Verdict::Unknown, json!({"errors": [error]})),
            );
        }
        Some(Ok(history)) => {
            let History { events, truncated_line, operations: paired, tally, liveness, issued } =
                history;
            (stats, throughput) = tally.finish();
            let mut problems = Vec::new();
            if let Some(line) = truncated_line {
                problems.push(format!("line {line} is cut off"));
            }
            match paired {
                Ok(pairing) => operations = pairing.finish(),
                Err(error) => {
                    problems.push(error.to_string());
                    history_error = Some(error);
                }
            }
            let verdict = if problems.is_empty() { Verdict::Valid } else { Verdict::Unknown };
            checkers.insert(
                "history".into(),
                CheckResult::new(verdict, json!({"events": events, "errors": problems})),
            );
            if let Some(options) = inputs.liveness {
                let backoff = liveness::backoff(&inputs.ledgers);
                checkers.insert("liveness".into(), liveness.check(options, backoff));
            }
            if inputs.context.issued.is_none() {
                inputs.context.issued = (!issued.is_empty()).then_some(issued);
            }
        }
    }
    let single_key = operations.iter().any(|operation| operation.key.is_some());
    if single_key || (!operations.is_empty() && !bank::applies(&operations)) {
        let witness = witness_orders(&operations, &inputs.ledgers);
        let result = linear::check(&operations, witness.as_ref(), inputs.linear);
        keys =
            result.evidence.get("keys").and_then(serde_json::Value::as_u64).unwrap_or(0) as usize;
        checkers.insert("linearizable".into(), result);
    }
    if bank::applies(&operations) {
        checkers.insert("bank".into(), bank::check(&operations, inputs.bank_total));
    }
    if !inputs.ledgers.is_empty() || !inputs.ledger_problems.is_empty() {
        let mut agreement = ledger::agreement(&inputs.ledgers);
        if !inputs.ledger_problems.is_empty() {
            agreement.verdict = agreement.verdict.merge(Verdict::Unknown);
            agreement.evidence.insert("problems".into(), json!(inputs.ledger_problems));
        }
        checkers.insert("ledger-agreement".into(), agreement);
        checkers.insert("checkpoint-agreement".into(), ledger::checkpoints(&inputs.ledgers));
        checkers
            .insert("one-batch-per-slot".into(), certificate::one_batch_per_slot(&inputs.ledgers));
        let scheme = inputs.context.signatures;
        let keys = inputs.context.replica_keys.as_deref().map(|keys| Keys { keys, scheme });
        checkers.insert(
            "checkpoint-certificates".into(),
            evidence::checkpoint_certificates(&inputs.ledgers, keys),
        );
        checkers.insert(
            "view-change-decisions".into(),
            evidence::view_change_decisions(
                &inputs.ledgers,
                keys,
                inputs.protocol.as_ref().is_some_and(|rules| rules.null_fill),
            ),
        );
        let audit = replay::audit(&inputs.ledgers, &inputs.context);
        for (name, result) in audit.results {
            checkers.insert(name.into(), result);
        }
        checkers.insert("speculation".into(), speculation::check(&operations, &inputs.ledgers));
        checkers.insert("inform-certificates".into(), informs::check(&operations, &inputs.ledgers));
        if inputs.protocol.as_ref().is_some_and(|rules| !rules.speculative) {
            checkers.insert("committed-final".into(), protocol::committed_final(&inputs.ledgers));
        }
    }
    if let Some(rules) = &inputs.protocol
        && !operations.is_empty()
    {
        checkers.insert("client-proofs".into(), protocol::client_proofs(&operations, rules));
    }
    let verdict = Verdict::merge_all(checkers.values().map(|result| result.verdict));
    Report {
        verdict,
        checkers,
        stats,
        throughput,
        operations: operations.len(),
        keys,
        history_error,
    }
}

/// A history as the oracles take it: its operations, paired as its events were read, and what
/// the performance figures, the liveness oracle and the replay audit need of its events, but
/// not the events themselves (a million-operation history holds two million).
#[derive(Debug, Clone)]
pub struct History {
    /// Events read.
    events: usize,
    /// The 1-based number of a truncated last line, if any.
    truncated_line: Option<usize>,
    /// The pairing of the client events, or the first rule they broke.
    operations: Result<Pairing, HistoryError>,
    /// Throughput and latency.
    tally: Tally,
    /// Progress after the final heal.
    liveness: liveness::Trace,
    /// The invocation of every (client, request) of the history.
    issued: HashMap<(u32, u64), Issued>,
}

impl Default for History {
    fn default() -> History {
        History {
            events: 0,
            truncated_line: None,
            operations: Ok(Pairing::default()),
            tally: Tally::default(),
            liveness: liveness::Trace::default(),
            issued: HashMap::new(),
        }
    }
}

impl History {
    /// Reads the history at `path` (as [`crate::load::history`] does), pairing each event as it
    /// is read.
    ///
    /// # Errors
    ///
    /// [`LoadError`] naming the first bad line. A history that breaks a pairing rule loads;
    /// [`check`] reports the rule.
    pub fn load(path: &Path) -> Result<History, LoadError> {
        let mut history = History::default();
        history.truncated_line = crate::load::history_events(path, |line, op| {
            history.handle_event(line, op);
        })?;
        Ok(history)
    }

    /// The history of `ops`, their lines numbered from 1.
    pub fn from_ops(ops: &[Op]) -> History {
        let mut history = History::default();
        for (index, op) in ops.iter().enumerate() {
            history.handle_event(index + 1, op.clone());
        }
        history
    }

    /// Takes `op`, the next event, read at `line`. After a pairing error the operations are
    /// dropped and the rest is only counted, as when a whole history was paired after loading.
    fn handle_event(&mut self, line: usize, op: Op) {
        let event = self.events;
        self.events += 1;
        self.tally.handle_event(&op);
        self.liveness.handle_event(&op);
        if op.kind == OpKind::Invoke
            && let (Some(client), Some(request)) = (op.client, op.request)
        {
            let invocation = (op.f.clone(), op.key.clone(), op.value.clone());
            self.issued.insert((client, request), invocation);
        }
        if let Ok(pairing) = &mut self.operations
            && let Err(error) = pairing.handle_event(event, line, op)
        {
            self.operations = Err(error);
        }
    }
}

impl From<HistoryFile> for History {
    fn from(file: HistoryFile) -> History {
        let HistoryFile { ops, lines, truncated_line } = file;
        let mut history = History { truncated_line, ..History::default() };
        for (event, op) in ops.into_iter().enumerate() {
            history.handle_event(lines.get(event).copied().unwrap_or(event + 1), op);
        }
        history
    }
}

/// Per key, the order in which the honest replica with the longest final ledger executed the
/// history's operations: a candidate linearization for the witness fast path. Indices are
/// into `operations`.
fn witness_orders(
    operations: &[Operation],
    ledgers: &BTreeMap<u32, Vec<LedgerEvent>>,
) -> Option<BTreeMap<String, Vec<usize>>> {
    let finals: Vec<_> = ledgers.values().map(|events| ledger::final_ledger(events)).collect();
    let longest = finals.iter().max_by_key(|slots| slots.len())?;
    let mut by_request: HashMap<(u32, u64), usize> = HashMap::new();
    for (index, operation) in operations.iter().enumerate() {
        if let (Some(client), Some(request)) = (operation.client, operation.request) {
            by_request.insert((client, request), index);
        }
    }
    if by_request.is_empty() {
        return None;
    }
    let mut orders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for execute in longest.values() {
        for request in execute.requests.iter().filter(|request| request.result.is_some()) {
            let Some(&index) = by_request.get(&(request.client, request.request)) else { continue };
            if let Some(key) = &operations[index].key {
                orders.entry(key.clone()).or_default().push(index);
            }
        }
    }
    Some(orders)
}
