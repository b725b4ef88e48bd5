//! The liveness oracle: after the nemesis's final heal (its last event), the cluster must make
//! progress again: at least `ok_min` operations complete `ok` within the liveness window. The
//! longest stall (the longest stretch without an `ok` completion while some operation was in
//! flight) is reported either way.
//!
//! PROTOCOL §10.9 bounds recovery by the view-change timers the replicas reached: a replica
//! that failed k view changes in a row waits its new-view timeout doubled k times before it
//! moves on. When the honest replicas' ledgers show a backoff (`view-entered` events'
//! `backoff_ms`) at least as long as the window, no progress in the window proves nothing:
//! the verdict is `unknown` with that reason, never `invalid`.

use std::time::Duration;

use std::collections::BTreeMap;

use history::{LedgerEvent, Op, OpKind, Process, Verdict};
use serde_json::json;

use crate::CheckResult;

/// What progress is required.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessOptions {
    /// How long after the final heal the operations must complete.
    pub window: Duration,
    /// How many `ok` completions are required in the window.
    pub ok_min: u64,
}

impl Default for LivenessOptions {
    fn default() -> LivenessOptions {
        LivenessOptions { window: Duration::from_secs(10), ok_min: 1 }
    }
}

/// The longest view-change backoff any of `ledgers` (honest replicas) recorded on entering a
/// view: the timeout it would wait for its next view change.
pub fn backoff(ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> Option<Duration> {
    ledgers
        .values()
        .flatten()
        .filter_map(|event| match event {
            LedgerEvent::ViewEntered(entered) => entered.backoff_ms,
            _ => None,
        })
        .max()
        .map(Duration::from_millis)
}

/// Checks `history` (in time order) for progress after the final heal; `backoff` is the
/// longest view-change backoff the honest replicas reached (module docs).
pub fn check(history: &[Op], options: LivenessOptions, backoff: Option<Duration>) -> CheckResult {
    let heal = history
        .iter()
        .filter(|op| op.process == Process::Nemesis)
        .map(|op| op.time)
        .max()
        .unwrap_or(0);
    let end = history.iter().map(|op| op.time).max().unwrap_or(0);
    let window = options.window.as_nanos() as u64;
    let deadline = heal.saturating_add(window);
    let mut ok_after_heal = 0u64;
    let mut first_ok_after_heal = None;
    let mut in_flight = 0i64;
    let mut last_progress = 0u64;
    let mut stall = (0u64, 0u64, 0u64);
    for op in history.iter().filter(|op| op.process != Process::Nemesis) {
        if in_flight > 0 && op.time - last_progress.min(op.time) > stall.0 {
            stall = (op.time - last_progress.min(op.time), last_progress, op.time);
        }
        match op.kind {
            OpKind::Invoke => {
                if in_flight == 0 {
                    last_progress = op.time;
                }
                in_flight += 1;
            }
            kind => {
                in_flight -= 1;
                if kind == OpKind::Ok {
                    last_progress = op.time;
                    if op.time >= heal && op.time <= deadline {
                        ok_after_heal += 1;
                        first_ok_after_heal.get_or_insert(op.time);
                    }
                }
            }
        }
    }
    let evidence = json!({
        "final_heal_s": heal as f64 / 1e9,
        "window_s": options.window.as_secs_f64(),
        "ok_in_window": ok_after_heal,
        "ok_required": options.ok_min,
        "first_ok_after_heal_s": first_ok_after_heal.map(|time| (time - heal) as f64 / 1e9),
        "longest_stall": {
            "seconds": stall.0 as f64 / 1e9,
            "from_s": stall.1 as f64 / 1e9,
            "to_s": stall.2 as f64 / 1e9,
        },
    });
    let mut evidence = evidence;
    if let Some(backoff) = backoff {
        evidence["backoff_s"] = json!(backoff.as_secs_f64());
    }
    let verdict = if ok_after_heal >= options.ok_min {
        Verdict::Valid
    } else if end < deadline {
        // The history ends inside the window: progress may still have come.
        evidence["reason"] = json!("the history ends inside the liveness window");
        Verdict::Unknown
    } else if backoff.is_some_and(|backoff| backoff >= options.window) {
        evidence["reason"] = json!(
            "the replicas' view-change backoff is at least the liveness window: no progress \
             within it proves no bug"
        );
        Verdict::Unknown
    } else {
        Verdict::Invalid
    };
    CheckResult::new(verdict, evidence)
}
