//! Throughput and latency of a history.

use std::collections::HashMap;

use history::{Op, OpKind, Process};
use serde::{Deserialize, Serialize};

/// Latency quantiles, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Quantiles {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Maximum.
    pub max: f64,
}

/// What a history says about performance.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Invocations by client processes.
    pub invoke: u64,
    /// `ok` completions.
    pub ok: u64,
    /// `fail` completions.
    pub fail: u64,
    /// `info` completions (and invocations never completed).
    pub info: u64,
    /// Seconds from the first to the last client event.
    pub duration_s: f64,
    /// `ok` operations per second over that duration.
    pub ops_per_s: f64,
    /// Latency of `ok` operations, invocation to completion.
    pub latency_ms: Quantiles,
    /// The same over the `ok` operations during which no fault was under way (none started
    /// before their completion and ended after their invocation): the cluster's latency
    /// outside fault windows.
    #[serde(default)]
    pub latency_quiet_ms: Quantiles,
}

/// Computes the statistics of the client operations of `history`.
pub fn stats(history: &[Op]) -> Stats {
    tally(history).0
}

/// The statistics and the throughput of a history, accumulated one event at a time so that a
/// history need not be kept in memory to be measured.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    stats: Stats,
    /// The invocation time of each process's operation in flight, and whether a fault was
    /// under way at some moment of it.
    invoked: HashMap<Process, (u64, bool)>,
    /// Latencies of `ok` operations, nanoseconds.
    latencies: Vec<u64>,
    /// Those of `ok` operations no fault overlapped.
    quiet: Vec<u64>,
    /// Faults under way by kind (`f`): nemesis invocations not yet ended by an `info` of the
    /// same kind, matched first in, first out (as the report's timeline matches them).
    faults_open: HashMap<String, u64>,
    /// The first and last client event times.
    first: Option<u64>,
    last: u64,
    /// The time of every `ok` completion (the nemesis's too).
    completions: Vec<u64>,
}

impl Tally {
    /// Counts `op`, the next event of the history.
    pub fn handle_event(&mut self, op: &Op) {
        if op.kind == OpKind::Ok {
            self.completions.push(op.time);
        }
        if op.process == Process::Nemesis {
            self.handle_nemesis(op);
            return;
        }
        self.first = Some(self.first.map_or(op.time, |first| first.min(op.time)));
        self.last = self.last.max(op.time);
        let stats = &mut self.stats;
        match op.kind {
            OpKind::Invoke => {
                stats.invoke += 1;
                self.invoked.insert(op.process, (op.time, !self.faults_open.is_empty()));
            }
            OpKind::Ok => {
                stats.ok += 1;
                if let Some((start, faulted)) = self.invoked.remove(&op.process) {
                    let latency = op.time.saturating_sub(start);
                    self.latencies.push(latency);
                    if !faulted && self.faults_open.is_empty() {
                        self.quiet.push(latency);
                    }
                }
            }
            OpKind::Fail => {
                stats.fail += 1;
                self.invoked.remove(&op.process);
            }
            OpKind::Info => {
                stats.info += 1;
                self.invoked.remove(&op.process);
            }
        }
    }

    /// A nemesis event: an invocation opens a fault of its kind, and an `info` closes the
    /// oldest open one of its kind. An `info` that closes nothing is an event of its own (a
    /// forced view change's steps, an attack's moves): it touches the operations in flight.
    fn handle_nemesis(&mut self, op: &Op) {
        if op.kind == OpKind::Invoke {
            *self.faults_open.entry(op.f.clone()).or_default() += 1;
        } else if let Some(open) = self.faults_open.get_mut(&op.f) {
            *open -= 1;
            if *open == 0 {
                self.faults_open.remove(&op.f);
            }
            return;
        }
        // A fault starts, or an event without a span happens: every operation in flight
        // overlaps it.
        for (_, faulted) in self.invoked.values_mut() {
            *faulted = true;
        }
    }

    /// The statistics and the throughput of the events counted.
    pub fn finish(self) -> (Stats, Throughput) {
        let Tally {
            mut stats, invoked, mut latencies, mut quiet, first, last, completions, ..
        } = self;
        // An invocation without completion is an `info`.
        stats.info += invoked.len() as u64;
        let first = first.unwrap_or(u64::MAX);
        if last > first {
            stats.duration_s = (last - first) as f64 / 1e9;
            stats.ops_per_s = stats.ok as f64 / stats.duration_s;
        }
        latencies.sort_unstable();
        stats.latency_ms = quantiles(&latencies);
        quiet.sort_unstable();
        stats.latency_quiet_ms = quantiles(&quiet);
        (stats, throughput_of(&completions))
    }
}

fn tally(history: &[Op]) -> (Stats, Throughput) {
    let mut tally = Tally::default();
    for op in history {
        tally.handle_event(op);
    }
    tally.finish()
}

fn quantiles(sorted_nanos: &[u64]) -> Quantiles {
    let Some(&max) = sorted_nanos.last() else { return Quantiles::default() };
    let at = |quantile: f64| {
        let rank =
            ((quantile * sorted_nanos.len() as f64).ceil() as usize).clamp(1, sorted_nanos.len());
        sorted_nanos[rank - 1] as f64 / 1e6
    };
    Quantiles { p50: at(0.50), p95: at(0.95), p99: at(0.99), max: max as f64 / 1e6 }
}

/// `ok` completions per second over time, in buckets of `bucket_s` seconds from time 0.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// The width of a bucket, seconds (1, or more so that there are at most
    /// [`THROUGHPUT_BUCKETS_MAX`] buckets).
    pub bucket_s: u64,
    /// `ok` operations per second in each bucket.
    pub ok_per_s: Vec<f64>,
}

/// The most buckets of a [`Throughput`].
pub const THROUGHPUT_BUCKETS_MAX: u64 = 600;

/// The throughput of `history` over time.
pub fn throughput(history: &[Op]) -> Throughput {
    tally(history).1
}

/// The throughput of `ok` completions at `completions` (nanoseconds, in any order).
fn throughput_of(completions: &[u64]) -> Throughput {
    let Some(&last) = completions.iter().max() else { return Throughput::default() };
    let seconds = last / 1_000_000_000 + 1;
    let bucket_s = seconds.div_ceil(THROUGHPUT_BUCKETS_MAX).max(1);
    let mut counts = vec![0u64; seconds.div_ceil(bucket_s) as usize];
    for time in completions {
        counts[(time / 1_000_000_000 / bucket_s) as usize] += 1;
    }
    let ok_per_s = counts.into_iter().map(|count| count as f64 / bucket_s as f64).collect();
    Throughput { bucket_s, ok_per_s }
}
