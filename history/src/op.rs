//! One event of a Jepsen-style history (`history.jsonl`).
//!
//! A line looks like
//! `{"index":12,"time":1840021,"process":3,"type":"invoke","f":"cas","key":"k2","value":[4,7]}`
//! and is followed, for the same process, by its completion (`ok`, `fail` or `info`). Nemesis
//! events use `"process":"nemesis"`. Unknown fields are ignored when reading, so histories from
//! other tools load as long as they carry the Jepsen fields.

use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One history event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Op {
    /// Position in the history, 0-based (optional in input files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<u64>,
    /// Nanoseconds since the run started.
    pub time: u64,
    /// The logical process (client thread) or the nemesis.
    pub process: Process,
    /// Invocation or one of the three completions.
    #[serde(rename = "type")]
    pub kind: OpKind,
    /// The function: `read`, `write`, `cas`, `transfer`, `read-all`, or a nemesis fault name.
    pub f: String,
    /// The key of a single-key operation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// The operation's value: for `read` the value read (`null` on invoke), for `write` the value
    /// written, for `cas` `[from, to]`, for nemesis events a description of the fault.
    #[serde(default)]
    pub value: serde_json::Value,
    /// The client identity that signed the request (Ordeal runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<u32>,
    /// The request id the client signed (Ordeal runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<u64>,
    /// On `ok`: the proof of execution the client accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proof: Option<Proof>,
    /// On `fail` or `info`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The kind of a history event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OpKind {
    /// The operation started.
    Invoke,
    /// It took effect, with the recorded result.
    Ok,
    /// It definitely did not take effect.
    Fail,
    /// Unknown: it may take effect at any time after its invocation, or never.
    Info,
}

/// Who performed an event: a numbered client process or the nemesis.
///
/// Serialized as a JSON number or the string `"nemesis"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Process {
    /// A logical client process; it is retired after an `info` and never invokes again.
    Client(u64),
    /// The fault injector.
    Nemesis,
}

impl Serialize for Process {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Process::Client(number) => serializer.serialize_u64(*number),
            Process::Nemesis => serializer.serialize_str("nemesis"),
        }
    }
}

impl<'de> Deserialize<'de> for Process {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Process, D::Error> {
        struct ProcessVisitor;
        impl Visitor<'_> for ProcessVisitor {
            type Value = Process;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative process number or \"nemesis\"")
            }
            fn visit_u64<E: de::Error>(self, number: u64) -> Result<Process, E> {
                Ok(Process::Client(number))
            }
            fn visit_i64<E: de::Error>(self, number: i64) -> Result<Process, E> {
                u64::try_from(number)
                    .map(Process::Client)
                    .map_err(|_| E::invalid_value(de::Unexpected::Signed(number), &self))
            }
            fn visit_str<E: de::Error>(self, text: &str) -> Result<Process, E> {
                if text == "nemesis" {
                    Ok(Process::Nemesis)
                } else {
                    Err(E::invalid_value(de::Unexpected::Str(text), &self))
                }
            }
        }
        deserializer.deserialize_any(ProcessVisitor)
    }
}

impl fmt::Display for Process {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Process::Client(number) => write!(f, "{number}"),
            Process::Nemesis => f.write_str("nemesis"),
        }
    }
}

/// A client's proof of execution: nf identical INFORMs from distinct replicas.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proof {
    /// The view the INFORMs named.
    pub view: u64,
    /// The sequence number (ledger slot) the INFORMs named.
    pub seq: u64,
    /// The replicas whose INFORMs formed the proof, ascending.
    pub replicas: Vec<u32>,
    /// When the client first received each of those replicas' matching INFORM (nanoseconds
    /// since the run started, in the order of `replicas`); empty when not recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub informed: Vec<u64>,
}
