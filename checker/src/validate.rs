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
    /// On `ok`: the proof of execution the client accepted (Ordeal runs only).
    pub proof: Option<Proof>,
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
        Some((self.client?, self.request?, self.proof.as_ref()?))
    }
}

/// Pairs the client events of `ops` (with their 1-based `lines`) into operations, in
/// invocation order.
///
/// # Errors
///
/// The first [`HistoryError`].
pub fn pair(ops: &[Op], lines: &[usize]) -> Result<Vec<Operation>, HistoryError> {
    let mut in_flight: HashMap<u64, usize> = HashMap::new();
    let mut retired: HashMap<u64, usize> = HashMap::new();
    let mut last_time: HashMap<u64, u64> = HashMap::new();
    let mut operations: Vec<Operation> = Vec::new();
    for (event, op) in ops.iter().enumerate() {
        let line = lines.get(event).copied().unwrap_or(event + 1);
        let Process::Client(process) = op.process else { continue };
        let error = |rule, detail: String| HistoryError { line, rule, detail };
        if let Some(&previous) = last_time.get(&process)
            && op.time < previous
        {
            return Err(error(
                "time-backwards",
                format!("process {process} at time {} after time {previous}", op.time),
            ));
        }
        last_time.insert(process, op.time);
        match op.kind {
            OpKind::Invoke => {
                if let Some(&open) = in_flight.get(&process) {
                    let open_line = operations[open].line;
                    return Err(error(
                        "double-invoke",
                        format!(
                            "process {process} still has the operation of line {open_line} in \
                             flight"
                        ),
                    ));
                }
                if let Some(&info_line) = retired.get(&process) {
                    return Err(error(
                        "invoke-after-info",
                        format!("process {process} was retired by the info of line {info_line}"),
                    ));
                }
                in_flight.insert(process, operations.len());
                operations.push(Operation {
                    event,
                    line,
                    process,
                    f: op.f.clone(),
                    key: op.key.clone(),
                    value: op.value.clone(),
                    outcome: Outcome::Info,
                    call: op.time,
                    ret: None,
                    client: op.client,
                    request: op.request,
                    proof: None,
                });
            }
            kind => {
                let Some(open) = in_flight.remove(&process) else {
                    return Err(error(
                        "completion-without-invoke",
                        format!("process {process} has no operation in flight"),
                    ));
                };
                let operation = &mut operations[open];
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
                operation.outcome = match kind {
                    OpKind::Ok => Outcome::Ok(op.value.clone()),
                    OpKind::Fail => Outcome::Fail,
                    _ => {
                        retired.insert(process, line);
                        Outcome::Info
                    }
                };
                if operation.value.is_null() {
                    operation.value = op.value.clone();
                }
                operation.client = operation.client.or(op.client);
                operation.request = operation.request.or(op.request);
                operation.proof = op.proof.clone();
            }
        }
    }
    Ok(operations)
}
