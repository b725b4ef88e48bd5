//! The register model of the key-value store, and the per-key operations the linearizability
//! checkers work on.
//!
//! Semantics (`../shared/histories/README.md`): every key is an independent register starting
//! absent (`null`); `read` returns the current value; `write` sets it; `cas [from, to]` sets it
//! to `to` if it holds `from`. An `ok` operation took effect with its recorded result; a `fail`
//! had no effect and is dropped; an `info` (or an invocation never completed) may take effect at
//! any time after its invocation, or never: an `info` read constrains nothing and is dropped.
//! Values are compared as JSON values and interned per key ([`Val`]; `null` is 0).

use std::collections::{BTreeMap, HashMap};

use serde_json::Value;

use crate::validate::{Operation, Outcome};

/// An interned value of one key; 0 is `null`, the initial value.
pub type Val = u32;

/// The initial value.
pub const NULL: Val = 0;

/// What an operation does to a register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Step {
    /// Observes the value.
    Read(Val),
    /// Sets the value.
    Write(Val),
    /// If the value is `.0`, sets it to `.1` (an `ok` cas requires the match).
    Cas(Val, Val),
}

impl Step {
    /// Whether the step may happen when the register holds `state`, and the value after it.
    pub fn apply(self, state: Val) -> Option<Val> {
        match self {
            Step::Read(value) => (value == state).then_some(state),
            Step::Write(value) => Some(value),
            Step::Cas(from, to) => (from == state).then_some(to),
        }
    }

    /// The value the step may leave behind, if it writes.
    pub fn written(self) -> Option<Val> {
        match self {
            Step::Read(_) => None,
            Step::Write(value) | Step::Cas(_, value) => Some(value),
        }
    }
}

/// One register operation of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegisterOp {
    /// Index of the [`Operation`] it came from.
    pub operation: usize,
    /// Invocation time.
    pub call: u64,
    /// Completion time; `u64::MAX` for an optional (`info`) operation, which never returns.
    pub ret: u64,
    /// True for an `info` write or cas: it may take effect, or not.
    pub optional: bool,
    /// What it does.
    pub step: Step,
}

/// The register operations of one key, with the key's value table.
#[derive(Debug, Clone, Default)]
pub struct KeyHistory {
    /// Operations, in invocation order.
    pub ops: Vec<RegisterOp>,
    /// Interned values: `values[v]` is the JSON of [`Val`] `v`.
    pub values: Vec<Value>,
    /// Operations of this key the model does not know (another function, or a malformed cas);
    /// their presence makes the key's verdict `unknown`.
    pub unsupported: Vec<usize>,
}

impl KeyHistory {
    /// The JSON value of `value`.
    pub fn value(&self, value: Val) -> &Value {
        &self.values[value as usize]
    }

    fn intern(&mut self, index: &mut HashMap<String, Val>, value: &Value) -> Val {
        if value.is_null() {
            return NULL;
        }
        let canonical = value.to_string();
        if let Some(&id) = index.get(&canonical) {
            return id;
        }
        let id = self.values.len() as Val;
        self.values.push(value.clone());
        index.insert(canonical, id);
        id
    }
}

/// Splits `operations` into per-key register histories. Operations without a key form the
/// register named by the empty string, except the bank's multi-key operations (transfers and
/// reads of all balances), which are the bank oracle's.
pub fn by_key(operations: &[Operation]) -> BTreeMap<String, KeyHistory> {
    let mut keys: BTreeMap<String, (KeyHistory, HashMap<String, Val>)> = BTreeMap::new();
    for (index, operation) in operations.iter().enumerate() {
        if crate::bank::is_bank_operation(operation) {
            continue;
        }
        let key = operation.key.clone().unwrap_or_default();
        let (history, interner) = keys.entry(key).or_insert_with(|| {
            (KeyHistory { values: vec![Value::Null], ..KeyHistory::default() }, HashMap::new())
        });
        let optional = match operation.outcome {
            Outcome::Ok(_) => false,
            Outcome::Info => true,
            Outcome::Fail => continue,
        };
        let step = match operation.f.as_str() {
            "read" => match &operation.outcome {
                Outcome::Ok(value) => Step::Read(history.intern(interner, value)),
                _ => continue,
            },
            "write" => Step::Write(history.intern(interner, operation.argument())),
            "cas" => match operation.argument() {
                Value::Array(pair) if pair.len() == 2 => {
                    let from = history.intern(interner, &pair[0]);
                    let to = history.intern(interner, &pair[1]);
                    Step::Cas(from, to)
                }
                _ => {
                    history.unsupported.push(index);
                    continue;
                }
            },
            _ => {
                history.unsupported.push(index);
                continue;
            }
        };
        let ret = if optional { u64::MAX } else { operation.ret.unwrap_or(u64::MAX) };
        history.ops.push(RegisterOp {
            operation: index,
            call: operation.call,
            ret,
            optional,
            step,
        });
    }
    keys.into_iter().map(|(key, (history, _))| (key, history)).collect()
}
