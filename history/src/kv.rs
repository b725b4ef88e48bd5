//! The key-value store's operations and results.
//!
//! Clients issue [`Operation`]s; replicas execute them and answer [`OpResult`]s; ledgers record
//! both so that the checker can replay a ledger through its own model of the store. The store's
//! semantics (documented per variant) are part of the format: the replica's state machine and
//! the checker's model each implement them independently.
//!
//! Every key names an integer register that starts absent (`null`). Bank accounts are keys too.

use serde::{Deserialize, Serialize};

/// An operation on the key-value store.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Operation {
    /// Reads one key; answers [`OpResult::Read`] with the value, `None` if never written.
    Read {
        /// The key read.
        key: String,
    },
    /// Writes one key unconditionally; answers [`OpResult::Written`].
    Write {
        /// The key written.
        key: String,
        /// The new value.
        value: i64,
    },
    /// Compare-and-set: if the key holds `from`, it becomes `to`. Answers [`OpResult::Cas`]; an
    /// absent key never matches.
    Cas {
        /// The key.
        key: String,
        /// The value the key must hold.
        from: i64,
        /// The value it gets.
        to: i64,
    },
    /// Bank transfer: moves `amount` from one account to another if `amount` > 0, the accounts
    /// differ and the source balance (absent = 0) is at least `amount`. Answers
    /// [`OpResult::Transfer`].
    Transfer {
        /// The account debited.
        from: String,
        /// The account credited.
        to: String,
        /// The amount moved.
        amount: i64,
    },
    /// Reads several keys at one point of the order (the bank workload's "read all balances").
    /// Answers [`OpResult::ReadAll`] with one value per key, in the order given.
    ReadAll {
        /// The keys read.
        keys: Vec<String>,
    },
}

impl Operation {
    /// The Jepsen function name of this operation (`read`, `write`, `cas`, `transfer`,
    /// `read-all`).
    pub fn function(&self) -> &'static str {
        match self {
            Operation::Read { .. } => "read",
            Operation::Write { .. } => "write",
            Operation::Cas { .. } => "cas",
            Operation::Transfer { .. } => "transfer",
            Operation::ReadAll { .. } => "read-all",
        }
    }

    /// Every key the operation touches, in a fixed order.
    pub fn keys(&self) -> Vec<&str> {
        match self {
            Operation::Read { key } | Operation::Write { key, .. } | Operation::Cas { key, .. } => {
                vec![key]
            }
            Operation::Transfer { from, to, .. } => vec![from, to],
            Operation::ReadAll { keys } => keys.iter().map(String::as_str).collect(),
        }
    }
}

/// The result of executing an [`Operation`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpResult {
    /// The value read; `None` when the key was never written.
    Read {
        /// The value.
        value: Option<i64>,
    },
    /// A write took effect.
    Written,
    /// Whether a compare-and-set swapped (`false`: the compare mismatched, nothing changed).
    Cas {
        /// True when the key held `from` and now holds `to`.
        swapped: bool,
    },
    /// Whether a transfer moved the money (`false`: refused, nothing changed).
    Transfer {
        /// True when the amount moved.
        done: bool,
    },
    /// The values read, one per key in the order asked.
    ReadAll {
        /// The values.
        values: Vec<Option<i64>>,
    },
}

impl OpResult {
    /// Whether the operation took effect as asked (`false` only for a mismatched cas or a
    /// refused transfer, which Jepsen records as a definite `fail`).
    pub fn succeeded(&self) -> bool {
        !matches!(self, OpResult::Cas { swapped: false } | OpResult::Transfer { done: false })
    }
}
