//! The history recorder: gives every event its index and time, in one order, and appends it to
//! `history.jsonl` at once.
//!
//! Index order and time order agree: both are assigned under one lock. A client records an
//! invocation *before* it sends the request and a completion *after* the reply arrived, so every
//! recorded interval contains the real one, which is what a linearizability checker needs.

#![allow(clippy::disallowed_methods, reason = "the recorder stamps events with the wall clock")]

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use history::{Op, OpKind, OpResult, Operation, Process, Proof};
use serde_json::{Value, json};

/// How many events of each kind were recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Invocations.
    pub invoke: u64,
    /// `ok` completions.
    pub ok: u64,
    /// `fail` completions.
    pub fail: u64,
    /// `info` completions.
    pub info: u64,
}

/// What happened to an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// It took effect with this result and proof (a refused cas or transfer is recorded as
    /// `fail`: it definitely did not take effect).
    Done {
        /// The result.
        result: OpResult,
        /// The proof of execution.
        proof: Proof,
    },
    /// Its outcome is unknown.
    Unknown {
        /// Why (for example `timeout`).
        reason: String,
    },
}

/// Writes a history.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    inner: Mutex<Inner>,
}

#[derive(Debug)]
struct Inner {
    writer: BufWriter<File>,
    next_index: u64,
    counts: Counts,
    /// The first write error; the history is then incomplete and the run must say so.
    error: Option<String>,
    /// Per replica, the completed requests for which its INFORM disagreed with the proof.
    dissent: BTreeMap<u32, u64>,
}

impl Recorder {
    /// A recorder writing to `path`, with time zero at `start`.
    ///
    /// # Errors
    ///
    /// When the file cannot be created.
    pub fn create(path: &Path, start: Instant) -> io::Result<Recorder> {
        let file = File::create(path)?;
        let inner = Inner {
            writer: BufWriter::new(file),
            next_index: 0,
            counts: Counts::default(),
            error: None,
            dissent: BTreeMap::new(),
        };
        Ok(Recorder { start, inner: Mutex::new(inner) })
    }

    /// Records the invocation of `op` by `process`, signed by `client` as `request`.
    pub fn invoke(&self, process: Process, op: &Operation, client: u32, request: u64) {
        self.record(invoke_op(process, op, client, request));
    }

    /// Records how `op`, invoked by `process`, completed.
    pub fn complete(
        &self,
        process: Process,
        op: &Operation,
        client: u32,
        request: u64,
        completion: &Completion,
    ) {
        self.record(complete_op(process, op, client, request, completion));
    }

    /// Records a nemesis event (process `nemesis`): `invoke` when a fault starts, `info` when it
    /// ends (harness::faults).
    pub fn nemesis(&self, kind: OpKind, f: &str, value: Value) {
        self.record(nemesis_op(kind, f, value));
    }

    fn record(&self, mut op: Op) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        op.time = self.start.elapsed().as_nanos() as u64;
        op.index = Some(inner.next_index);
        inner.next_index += 1;
        match op.kind {
            OpKind::Invoke => inner.counts.invoke += 1,
            OpKind::Ok => inner.counts.ok += 1,
            OpKind::Fail => inner.counts.fail += 1,
            OpKind::Info => inner.counts.info += 1,
        }
        let result = serde_json::to_writer(&mut inner.writer, &op)
            .map_err(io::Error::from)
            .and_then(|()| inner.writer.write_all(b"\n"));
        if let Err(error) = result
            && inner.error.is_none()
        {
            inner.error = Some(error.to_string());
        }
    }

    /// Writes buffered events to the file.
    ///
    /// # Errors
    ///
    /// The first error met while recording or flushing.
    pub fn flush(&self) -> io::Result<()> {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Err(error) = inner.writer.flush()
            && inner.error.is_none()
        {
            inner.error = Some(error.to_string());
        }
        match &inner.error {
            Some(error) => Err(io::Error::other(error.clone())),
            None => Ok(()),
        }
    }

    /// Counts one completed request for which each of `replicas` informed the client of
    /// another view, slot or result than its proof ([`replica::core::Completion::dissent`]):
    /// the client received and weighed an INFORM a Byzantine behaviour altered.
    pub fn dissent(&self, replicas: impl IntoIterator<Item = u32>) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for replica in replicas {
            *inner.dissent.entry(replica).or_default() += 1;
        }
    }

    /// Per replica, the requests so far whose proof it disagreed with.
    pub fn dissents(&self) -> BTreeMap<u32, u64> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).dissent.clone()
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).counts
    }

    /// Time zero of the history.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// Nanoseconds since time zero.
    pub fn now_nanos(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // A panic elsewhere must not lose what was recorded.
        let _ = self.flush();
    }
}

/// The event of `process` invoking `op`, signed by `client` as `request` (no index or time
/// yet: whoever records it stamps them).
pub fn invoke_op(process: Process, op: &Operation, client: u32, request: u64) -> Op {
    let (f, key, value) = invocation_fields(op);
    Op {
        index: None,
        time: 0,
        process,
        kind: OpKind::Invoke,
        f: f.to_string(),
        key,
        value,
        client: Some(client),
        request: Some(request),
        proof: None,
        error: None,
    }
}

/// The event of `op`, invoked by `process`, completing so (no index or time yet).
pub fn complete_op(
    process: Process,
    op: &Operation,
    client: u32,
    request: u64,
    completion: &Completion,
) -> Op {
    let (f, key, invoked) = invocation_fields(op);
    let (kind, value, proof, error) = match completion {
        Completion::Done { result, proof } => {
            let kind = if result.succeeded() { OpKind::Ok } else { OpKind::Fail };
            let error = (!result.succeeded()).then(|| failure_reason(op).to_string());
            (kind, completion_value(op, result, invoked), Some(proof.clone()), error)
        }
        Completion::Unknown { reason } => (OpKind::Info, invoked, None, Some(reason.clone())),
    };
    let proof = proof.filter(|_| kind == OpKind::Ok);
    Op {
        index: None,
        time: 0,
        process,
        kind,
        f: f.to_string(),
        key,
        value,
        client: Some(client),
        request: Some(request),
        proof,
        error,
    }
}

/// A nemesis event (process `nemesis`; no index or time yet).
pub fn nemesis_op(kind: OpKind, f: &str, value: Value) -> Op {
    Op {
        index: None,
        time: 0,
        process: Process::Nemesis,
        kind,
        f: f.to_string(),
        key: None,
        value,
        client: None,
        request: None,
        proof: None,
        error: None,
    }
}

/// The Jepsen `f`, `key` and `value` of an invocation (histories/README.md's format).
pub fn invocation_fields(op: &Operation) -> (&'static str, Option<String>, Value) {
    match op {
        Operation::Read { key } => ("read", Some(key.clone()), Value::Null),
        Operation::Write { key, value } => ("write", Some(key.clone()), json!(value)),
        Operation::Cas { key, from, to } => ("cas", Some(key.clone()), json!([from, to])),
        Operation::Transfer { from, to, amount } => {
            ("transfer", None, json!({"from": from, "to": to, "amount": amount}))
        }
        Operation::ReadAll { .. } => ("read", None, Value::Null),
    }
}

fn completion_value(op: &Operation, result: &OpResult, invoked: Value) -> Value {
    match (op, result) {
        (Operation::Read { .. }, OpResult::Read { value }) => json!(value),
        (Operation::ReadAll { keys }, OpResult::ReadAll { values }) => Value::Object(
            keys.iter().cloned().zip(values.iter().map(|value| json!(value))).collect(),
        ),
        _ => invoked,
    }
}

fn failure_reason(op: &Operation) -> &'static str {
    match op {
        Operation::Cas { .. } => "cas-mismatch",
        Operation::Transfer { .. } => "insufficient-funds",
        _ => "refused",
    }
}
