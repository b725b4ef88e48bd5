//! A schedule as text: the `[[timeline]]` entries of a scenario file and of `test.toml`.
//!
//! A drawn schedule is written out as a timeline, and a timeline read back gives the same
//! faults, so a run's `test.toml` can be replayed as a scenario.
//!
//! ```toml
//! [[timeline]]
//! at = 5.0                   # seconds after the workload starts
//! until = 12.0               # when it ends (heal of this fault)
//! fault = "byzantine"        # kill, pause, partition, delay, loss, duplicate, reorder,
//!                            # byzantine, twins
//! target = "primary"         # random, primary, minority (with size), all, or [0, 2]
//! behaviours = ["equivocate"]  # byzantine: Byzantine behaviours
//! # shape = "halves"         # partition: isolate-one, isolate-primary, halves,
//! #                          # majority-ring, bridge, one-way
//! # delay_ms = 50            # delay: fixed delay, and jitter_ms
//! # probability = 0.2        # loss, duplicate, reorder
//! ```

use std::time::Duration;

use replica::byzantine::Behaviour;
use replica::core::ReplicaId;
use serde::{Deserialize, Serialize};

use crate::network::UnknownShape;
use crate::schedule::{Fault, FaultAction, FaultKind, TargetSpec};

/// One fault of a timeline, as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimelineEntry {
    /// Start, in seconds after the workload starts.
    pub at: f64,
    /// End, in seconds after the workload starts.
    pub until: f64,
    /// The fault kind's name.
    pub fault: String,
    /// Whom it hits (default: random).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<TargetEntry>,
    /// The size of a `minority` target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// Byzantine behaviours.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub behaviours: Vec<String>,
    /// A partition's shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shape: Option<String>,
    /// A delay fault's fixed delay, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// A delay fault's jitter, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter_ms: Option<u64>,
    /// The probability of a loss, duplicate or reorder fault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probability: Option<f64>,
}

/// A target as written: a spec's name or a list of replicas.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TargetEntry {
    /// `random`, `primary`, `minority` or `all`.
    Named(String),
    /// These replicas.
    Replicas(Vec<u8>),
}

/// The longest time a timeline may name, in seconds (a year).
const TIME_MAX_S: f64 = 365.0 * 86_400.0;

/// The longest delay a timeline may name.
const DELAY_MAX_MS: u64 = 60_000;

impl TimelineEntry {
    /// The fault this entry describes.
    ///
    /// # Errors
    ///
    /// What is wrong with the entry, in words.
    pub fn to_fault(&self) -> Result<Fault, String> {
        let time = |seconds: f64, name: &str| {
            if seconds.is_finite() && (0.0..=TIME_MAX_S).contains(&seconds) {
                Ok(Duration::from_secs_f64(seconds))
            } else {
                Err(format!("{name} = {seconds} is not a time in seconds"))
            }
        };
        let start = time(self.at, "at")?;
        let end = time(self.until, "until")?;
        let kind: FaultKind = self.fault.parse()?;
        let probability = || {
            let p = self.probability.unwrap_or(0.2);
            if (0.0..=1.0).contains(&p) {
                Ok(p)
            } else {
                Err(format!("probability {p} is not in [0, 1]"))
            }
        };
        let action = match kind {
            FaultKind::Kill => FaultAction::Kill,
            FaultKind::Pause => FaultAction::Pause,
            FaultKind::Partition => {
                let shape = self.shape.as_deref().unwrap_or("isolate-one");
                FaultAction::Partition(
                    shape.parse().map_err(|error: UnknownShape| error.to_string())?,
                )
            }
            FaultKind::Delay => {
                let delay = self.delay_ms.unwrap_or(50);
                let jitter = self.jitter_ms.unwrap_or(0);
                if delay > DELAY_MAX_MS || jitter > DELAY_MAX_MS {
                    return Err(format!("a delay over {DELAY_MAX_MS} ms"));
                }
                FaultAction::Delay {
                    delay: Duration::from_millis(delay),
                    jitter: Duration::from_millis(jitter),
                }
            }
            FaultKind::Loss => FaultAction::Loss(probability()?),
            FaultKind::Duplicate => FaultAction::Duplicate(probability()?),
            FaultKind::Reorder => FaultAction::Reorder(probability()?),
            FaultKind::Byzantine => {
                if self.behaviours.is_empty() {
                    return Err("a byzantine fault needs behaviours".into());
                }
                let behaviours = self
                    .behaviours
                    .iter()
                    .map(|name| name.parse::<Behaviour>().map_err(|error| error.to_string()))
                    .collect::<Result<Vec<_>, _>>()?;
                FaultAction::Byzantine(behaviours)
            }
            FaultKind::Twins => FaultAction::Twins,
            FaultKind::ForceViewChange => FaultAction::ForceViewChange,
        };
        let target = match &self.target {
            None => match kind {
                FaultKind::Partition => TargetSpec::All,
                _ => TargetSpec::Random,
            },
            Some(TargetEntry::Replicas(replicas)) => {
                TargetSpec::Replicas(replicas.iter().copied().map(ReplicaId).collect())
            }
            Some(TargetEntry::Named(name)) => match name.as_str() {
                "random" => TargetSpec::Random,
                "primary" => TargetSpec::Primary,
                "all" => TargetSpec::All,
                "minority" => TargetSpec::Minority { size: self.size.unwrap_or(1) },
                other => {
                    return Err(format!(
                        "unknown target {other:?} (random, primary, minority, all, or a list)"
                    ));
                }
            },
        };
        Ok(Fault { start, end, action, target })
    }

    /// The entry describing `fault`.
    pub fn from_fault(fault: &Fault) -> TimelineEntry {
        let mut entry = TimelineEntry {
            at: fault.start.as_secs_f64(),
            until: fault.end.as_secs_f64(),
            fault: fault.kind().name().to_string(),
            target: Some(match &fault.target {
                TargetSpec::Replicas(replicas) => {
                    TargetEntry::Replicas(replicas.iter().map(|replica| replica.0).collect())
                }
                other => TargetEntry::Named(other.name().to_string()),
            }),
            size: match fault.target {
                TargetSpec::Minority { size } => Some(size),
                _ => None,
            },
            behaviours: Vec::new(),
            shape: None,
            delay_ms: None,
            jitter_ms: None,
            probability: None,
        };
        match &fault.action {
            FaultAction::Kill
            | FaultAction::Pause
            | FaultAction::Twins
            | FaultAction::ForceViewChange => {}
            FaultAction::Partition(shape) => entry.shape = Some(shape.name().to_string()),
            FaultAction::Delay { delay, jitter } => {
                entry.delay_ms = Some(delay.as_millis() as u64);
                entry.jitter_ms = Some(jitter.as_millis() as u64);
            }
            FaultAction::Loss(p) | FaultAction::Duplicate(p) | FaultAction::Reorder(p) => {
                entry.probability = Some(*p);
            }
            FaultAction::Byzantine(behaviours) => {
                entry.behaviours =
                    behaviours.iter().map(|behaviour| behaviour.name().to_string()).collect();
            }
        }
        entry
    }
}
