//! History validation: pairing invocations with completions, per process.
//!
//! Rules (each violation is a [`HistoryError`] naming the line and the rule, never a panic):
//! - `double-invoke`: a process invokes while one of its operations is in flight;
//! - `completion-without-invoke`: a completion for a process with nothing in flight;
//! - `invoke-after-info`: a process invokes again after an `info` (which retires it);
//! - `completion-mismatch`: a completion names another function or key than its invocation;
//! - `time-backwards`: a process's events go back in time.
//!
//! Nemesis events are not client operations and are set aside. An invocation without a
//! completion is an operation whose outcome is unknown, like `info`.

use std::collections::HashMap;

use history::{Op, OpKind, Process, Proof};
use serde_json::Value;

/// A history broke a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {rule}: {detail}")]
pub struct HistoryError {
    /// The 1-based line of the offending event.
    pub line: usize,
    /// The rule, as named in the module documentation.
    pub rule: &'static str,
    /// What exactly.
    pub detail: String,
}

/// How an operation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// It took effect; the completion's value.
    Ok(Value),
    /// It definitely did not take effect.
    Fail,
    /// Unknown: it may take effect at any time after its invocation, or never.
    Info,
}

/// An invocation paired with its completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// The invocation's position among the history's events (0-based).
    pub event: usize,
    /// The invocation's line (1-based).
    pub line: usize,
    /// The process.
    pub process: u64,
    /// The function.
    pub f: String,
    /// The key (`None` for single-register histories).
    pub key: Option<String>,
    /// The invocation's value, or the completion's when the invocation carries none (a read).
    pub value: Value,
    /// How it ended.
    pub outcome: Outcome,
    /// Invocation time.
    pub call: u64,
    /// Completion time; `None` when it never completed.
    pub ret: Option<u64>,
    /// The client identity that signed the request (Ordeal runs only).
    pub client: Option<u32>,
    /// The request id the client signed (Ordeal runs only).
    pub request: Option<u64>,
    /// On `ok`: the proof of execution the client accepted (Ordeal runs only); boxed, as most
    /// operations have none and a million of them are kept at once.
    pub proof: Option<Box<Proof>>,
}

impl Operation {
    /// The value the operation acted with: the completion's for a read, the invocation's
    /// (or, when the invocation carries none, the completion's) otherwise.
    pub fn argument(&self) -> &Value {
        &self.value
    }

    /// The client, request id and proof of execution of an `ok` operation of an Ordeal run
    /// (a promise); `None` for any other operation.
    pub fn promise(&self) -> Option<(u32, u64, &Proof)> {
        let Outcome::Ok(_) = self.outcome else { return None };
        Some((self.client?, self.request?, self.proof.as_deref()?))
    }
}

/// Pairs the client events of `ops` (with their 1-based `lines`) into operations, in
/// invocation order.
///
/// # Errors
///
/// The first [`HistoryError`].
pub fn pair(ops: &[Op], lines: &[usize]) -> Result<Vec<Operation>, HistoryError> {
    let mut pairing = Pairing::default();
    for (event, op) in ops.iter().enumerate() {
        let line = lines.get(event).copied().unwrap_or(event + 1);
        pairing.handle_event(event, line, op.clone())?;
    }
    Ok(pairing.finish())
}

/// Pairs a history's events one at a time, as they are read, so that the events themselves
/// need not be kept: only the operations (module docs for the rules).
#[derive(Debug, Clone, Default)]
pub struct Pairing {
    /// Per process, the index of its operation in flight.
    in_flight: HashMap<u64, usize>,
    /// Per process retired by an `info`, the line of that `info`.
    retired: HashMap<u64, usize>,
    /// Per process, the time of its last event.
    last_time: HashMap<u64, u64>,
    /// The operations so far, in invocation order.
    operations: Vec<Operation>,
}

impl Pairing {
    /// Pairs `op`, the history's event number `event` (0-based) at `line` (1-based).
    ///
    /// # Errors
    ///
    /// The [`HistoryError`] of the rule `op` breaks; the pairing must not go on after one.
    pub fn handle_event(&mut self, event: usize, line: usize, op: Op) -> Result<(), HistoryError> {
        let Process::Client(process) = op.process else { return Ok(()) };
        let error = |rule, detail: String| HistoryError { line, rule, detail };
        if let Some(&previous) = self.last_time.get(&process)
            && op.time < previous
        {
            return Err(error(
                "time-backwards",
                format!("process {process} at time {} after time {previous}", op.time),
            ));
        }
        self.last_time.insert(process, op.time);
        match op.kind {
            OpKind::Invoke => {
                if let Some(&open) = self.in_flight.get(&process) {
                    let open_line = self.operations[open].line;
                    return Err(error(
                        "double-invoke",
                        format!(
                            "process {process} still has the operation of line {open_line} in \
                             flight"
                        ),
                    ));
                }
                if let Some(&info_line) = self.retired.get(&process) {
                    return Err(error(
                        "invoke-after-info",
                        format!("process {process} was retired by the info of line {info_line}"),
                    ));
                }
                self.in_flight.insert(process, self.operations.len());
                self.operations.push(Operation {
                    event,
                    line,
                    process,
                    f: op.f,
                    key: op.key,
                    value: op.value,
                    outcome: Outcome::Info,
                    call: op.time,
                    ret: None,
                    client: op.client,
                    request: op.request,
                    proof: None,
                });
            }
            kind => {
                let Some(open) = self.in_flight.remove(&process) else {
                    return Err(error(
                        "completion-without-invoke",
                        format!("process {process} has no operation in flight"),
                    ));
                };
                let operation = &mut self.operations[open];
                if operation.f != op.f || (op.key.is_some() && operation.key != op.key) {
                    return Err(error(
                        "completion-mismatch",
                        format!(
                            "completes {} {:?} but line {} invoked {} {:?}",
                            op.f, op.key, operation.line, operation.f, operation.key
                        ),
                    ));
                }
                operation.ret = Some(op.time);
                if operation.value.is_null() {
                    operation.value = op.value.clone();
                }
                operation.outcome = match kind {
                    OpKind::Ok => Outcome::Ok(op.value),
                    OpKind::Fail => Outcome::Fail,
                    _ => {
                        self.retired.insert(process, line);
                        Outcome::Info
                    }
                };
                operation.client = operation.client.or(op.client);
                operation.request = operation.request.or(op.request);
                operation.proof = op.proof.map(Box::new);
            }
        }
        Ok(())
    }

    /// The operations, in invocation order.
    pub fn finish(self) -> Vec<Operation> {
        self.operations
    }
}

// A checked history keeps every operation at once (a million for the largest benchmark): a
// field that makes them larger costs that much more memory (docs/performance.md).
const _: () = assert!(std::mem::size_of::<Operation>() <= 192);
