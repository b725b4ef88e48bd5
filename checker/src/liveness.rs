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
    let mut trace = Trace::default();
    for op in history {
        trace.handle_event(op);
    }
    trace.check(options, backoff)
}

/// What the oracle needs of a history, gathered one event at a time so that a history need not
/// be kept in memory to be checked: the final heal, the end, the longest stall and the time of
/// every client `ok` completion.
#[derive(Debug, Clone, Default)]
pub struct Trace {
    /// The time of the nemesis's last event (its final heal).
    heal: u64,
    /// The time of the last event.
    end: u64,
    /// Client operations in flight.
    in_flight: i64,
    /// The last `ok` completion, or the invocation that ended an idle stretch.
    last_progress: u64,
    /// The longest stall so far: (length, from, to), nanoseconds.
    stall: (u64, u64, u64),
    /// The time of every client `ok` completion, in history order.
    ok_times: Vec<u64>,
}

impl Trace {
    /// Records `op`, the next event of the history.
    pub fn handle_event(&mut self, op: &Op) {
        self.end = self.end.max(op.time);
        if op.process == Process::Nemesis {
            self.heal = self.heal.max(op.time);
            return;
        }
        let idle = op.time - self.last_progress.min(op.time);
        if self.in_flight > 0 && idle > self.stall.0 {
            self.stall = (idle, self.last_progress, op.time);
        }
        match op.kind {
            OpKind::Invoke => {
                if self.in_flight == 0 {
                    self.last_progress = op.time;
                }
                self.in_flight += 1;
            }
            kind => {
                self.in_flight -= 1;
                if kind == OpKind::Ok {
                    self.last_progress = op.time;
                    self.ok_times.push(op.time);
                }
            }
        }
    }

    /// The oracle's verdict on the events recorded; `backoff` as for [`check`].
    pub fn check(&self, options: LivenessOptions, backoff: Option<Duration>) -> CheckResult {
        let (heal, end, stall) = (self.heal, self.end, self.stall);
        let window = options.window.as_nanos() as u64;
        let deadline = heal.saturating_add(window);
        let mut in_window = self.ok_times.iter().filter(|&&time| time >= heal && time <= deadline);
        let first_ok_after_heal = in_window.next().copied();
        let ok_after_heal = u64::from(first_ok_after_heal.is_some()) + in_window.count() as u64;
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
}
