//! One step's figures from its samples and counters, and where a series' knee is. Pure: the
//! driver ([`super`]) measures, this computes, and the tests feed it made-up samples.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use workloads::open_loop::{DispatchReport, Outcome, Sample};

/// A step is sustained when it completed at least this share of what it offered...
pub const SUSTAINED_SHARE: f64 = 0.95;
/// ...and at most this share of its arrivals were unfinished (shed, never started, or
/// without a proof within the operation timeout).
pub const UNFINISHED_SHARE_MAX: f64 = 0.01;

/// What the driver measured around a step's window, besides the samples.
#[derive(Debug, Clone, Default)]
pub struct Window {
    /// The window's start, as an offset from the step's start.
    pub from: Duration,
    /// Its length, as measured.
    pub length: Duration,
    /// What the dispatchers did, summed.
    pub dispatch: DispatchReport,
    /// CPU seconds the replica processes used in the window.
    pub replica_cpu_s: f64,
    /// CPU seconds the harness process (clients, dispatchers, controller) used in it.
    pub harness_cpu_s: f64,
    /// The rise of the replicas' counters in it, summed over replicas (`net.*`, `crypto.*`).
    pub counters: BTreeMap<String, u64>,
    /// How many replicas answered the status requests at the window's end (the crashed
    /// backup does not).
    pub replicas_up: usize,
    /// INFORMs the client gateways dropped in it (a client's queue full; 0 without gateways).
    pub gateway_drops: u64,
}

/// One step of a series: one record of `bench.json`.
#[derive(Debug, Clone, Serialize)]
pub struct StepRecord {
    /// The protocol.
    pub protocol: &'static str,
    /// n.
    pub replicas: u8,
    /// The fault case (`none`, `crash`).
    pub faults: &'static str,
    /// Replicas running (answering status requests) at the window's end.
    pub replicas_up: usize,
    /// INFORMs the client gateways dropped in the window.
    pub gateway_drops: u64,
    /// The step's number in its series: the ladder from 0, then the `--refine` bisection
    /// steps, then the step at half the knee's rate (marked by `half_knee`).
    pub step: u32,
    /// The step at half the knee's throughput, run after the ladder.
    pub half_knee: bool,
    /// Arrivals per second in the window (the Poisson process's realised rate).
    pub offered_ops_s: f64,
    /// Completed operations (ok plus definite fail) per second in the window.
    pub achieved_ops_s: f64,
    /// Of which ok.
    pub ok_ops_s: f64,
    /// Latency from arrival to completion of the window's arrivals; an unfinished one counts
    /// as infinitely late, so a quantile it reaches is `null`.
    pub p50_ms: Option<f64>,
    /// The 95th percentile.
    pub p95_ms: Option<f64>,
    /// The 99th percentile.
    pub p99_ms: Option<f64>,
    /// The slowest completed one.
    pub max_ms: Option<f64>,
    /// Arrivals of the window without a completion: shed, never started, or timed out.
    pub unfinished: u64,
    /// The step held its load: arrivals came, achieved ≥ 95% of offered, unfinished ≤ 1% of
    /// arrivals.
    pub sustained: bool,
    /// Replica CPU seconds per completed operation.
    pub cpu_s_per_op: Option<f64>,
    /// Harness CPU seconds per completed operation (client signatures, QUIC, dispatch).
    pub harness_cpu_s_per_op: Option<f64>,
    /// The harness's share of all CPU used (replicas plus harness) in the window.
    pub harness_cpu_share: Option<f64>,
    /// The machine's CPU in use, in cores (replicas plus harness, over the window).
    pub cores_busy: f64,
    /// Frames sent by replicas (to replicas and clients) per completed operation.
    pub messages_per_op: Option<f64>,
    /// Their bytes per completed operation.
    pub bytes_per_op: Option<f64>,
    /// Cryptographic operations by replicas per completed operation, by kind
    /// (`replica::crypto::tally`).
    pub crypto_per_op: BTreeMap<String, f64>,
}

/// The identity of a series: protocol, n and fault case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeriesKey {
    /// The protocol's name.
    pub protocol: &'static str,
    /// n.
    pub replicas: u8,
    /// The fault case's name.
    pub faults: &'static str,
}

/// The figures of one step from its samples and window.
pub fn step_record(
    key: SeriesKey,
    step: u32,
    half_knee: bool,
    samples: &[Sample],
    started: tokio::time::Instant,
    window: &Window,
) -> StepRecord {
    let from = started + window.from;
    let to = from + window.length;
    let seconds = window.length.as_secs_f64().max(1e-9);
    let in_window = |at: tokio::time::Instant| at >= from && at < to;
    let completed = |sample: &Sample| sample.outcome != Outcome::Unknown;
    let done_in_window: Vec<&Sample> =
        samples.iter().filter(|sample| completed(sample) && in_window(sample.done)).collect();
    let ok = done_in_window.iter().filter(|sample| sample.outcome == Outcome::Ok).count();
    let achieved = done_in_window.len() as f64 / seconds;
    // Latency of the window's arrivals; arrivals never served are unfinished.
    let arrived: Vec<&Sample> = samples.iter().filter(|sample| sample.arrival >= from).collect();
    let mut latencies: Vec<f64> = arrived
        .iter()
        .filter(|sample| completed(sample))
        .map(|sample| sample.done.duration_since(sample.arrival).as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let dispatch = &window.dispatch;
    let timed_out = arrived.len() - latencies.len();
    let unfinished = dispatch.shed_measured + dispatch.unserved_measured + timed_out as u64;
    let total = latencies.len() + (unfinished as usize);
    let quantile = |q: f64| quantile(&latencies, total, q);
    let offered = dispatch.arrivals_measured as f64 / seconds;
    let sustained = dispatch.arrivals_measured > 0
        && achieved >= SUSTAINED_SHARE * offered
        && unfinished as f64 <= UNFINISHED_SHARE_MAX * dispatch.arrivals_measured.max(1) as f64;
    let ops = done_in_window.len() as f64;
    let per_op = |value: f64| (ops > 0.0).then(|| value / ops);
    let counter = |name: &str| window.counters.get(name).copied().unwrap_or(0) as f64;
    let cpu_total = window.replica_cpu_s + window.harness_cpu_s;
    let crypto_per_op = window
        .counters
        .iter()
        .filter_map(|(name, count)| {
            let kind = name.strip_prefix("crypto.")?;
            Some((kind.to_string(), per_op(*count as f64)?))
        })
        .collect();
    StepRecord {
        protocol: key.protocol,
        replicas: key.replicas,
        faults: key.faults,
        replicas_up: window.replicas_up,
        gateway_drops: window.gateway_drops,
        step,
        half_knee,
        offered_ops_s: offered,
        achieved_ops_s: achieved,
        ok_ops_s: ok as f64 / seconds,
        p50_ms: quantile(0.5),
        p95_ms: quantile(0.95),
        p99_ms: quantile(0.99),
        max_ms: latencies.last().copied(),
        unfinished,
        sustained,
        cpu_s_per_op: per_op(window.replica_cpu_s),
        harness_cpu_s_per_op: per_op(window.harness_cpu_s),
        harness_cpu_share: (cpu_total > 0.0).then(|| window.harness_cpu_s / cpu_total),
        cores_busy: cpu_total / seconds,
        messages_per_op: per_op(counter("net.frames_sent")),
        bytes_per_op: per_op(counter("net.bytes_sent")),
        crypto_per_op,
    }
}

/// The `q` quantile of `total` values of which `sorted` are the finite ones (the rest are
/// infinite): `None` when it falls among the infinite ones or there is nothing.
pub fn quantile(sorted: &[f64], total: usize, q: f64) -> Option<f64> {
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as usize).clamp(1, total);
    sorted.get(rank - 1).copied()
}

/// A series' summary: its knee and the latency at half of it.
#[derive(Debug, Clone, Serialize)]
pub struct SeriesSummary {
    /// The protocol.
    pub protocol: &'static str,
    /// n.
    pub replicas: u8,
    /// The fault case.
    pub faults: &'static str,
    /// The highest throughput of a sustained step (ops/s, ok plus fail): the knee.
    pub knee_ops_s: Option<f64>,
    /// The median latency at the knee.
    pub knee_p50_ms: Option<f64>,
    /// The 99th percentile at the knee.
    pub knee_p99_ms: Option<f64>,
    /// The throughput of the step at half the knee's.
    pub half_knee_ops_s: Option<f64>,
    /// The median latency there.
    pub half_knee_p50_ms: Option<f64>,
    /// The replicas' messages, bytes and CPU per operation at the knee.
    pub knee_messages_per_op: Option<f64>,
    /// Bytes per operation at the knee.
    pub knee_bytes_per_op: Option<f64>,
    /// Replica CPU seconds per operation at the knee.
    pub knee_cpu_s_per_op: Option<f64>,
    /// The harness's share of the CPU at the knee.
    pub knee_harness_cpu_share: Option<f64>,
    /// True when the ladder ended on an unsustained step (the knee is inside the ladder);
    /// false when it ran out of steps first (the knee is higher than measured).
    pub saturated: bool,
}

/// The knee of a series: its sustained step with the highest throughput (the half-knee step
/// excluded).
pub fn knee(steps: &[StepRecord]) -> Option<&StepRecord> {
    steps
        .iter()
        .filter(|step| step.sustained && !step.half_knee)
        .max_by(|a, b| a.achieved_ops_s.total_cmp(&b.achieved_ops_s))
}

/// Summarises the steps of one series.
pub fn summarise(key: SeriesKey, steps: &[StepRecord]) -> SeriesSummary {
    let knee = knee(steps);
    let half = steps.iter().find(|step| step.half_knee);
    SeriesSummary {
        protocol: key.protocol,
        replicas: key.replicas,
        faults: key.faults,
        knee_ops_s: knee.map(|step| step.achieved_ops_s),
        knee_p50_ms: knee.and_then(|step| step.p50_ms),
        knee_p99_ms: knee.and_then(|step| step.p99_ms),
        half_knee_ops_s: half.map(|step| step.achieved_ops_s),
        half_knee_p50_ms: half.and_then(|step| step.p50_ms),
        knee_messages_per_op: knee.and_then(|step| step.messages_per_op),
        knee_bytes_per_op: knee.and_then(|step| step.bytes_per_op),
        knee_cpu_s_per_op: knee.and_then(|step| step.cpu_s_per_op),
        knee_harness_cpu_share: knee.and_then(|step| step.harness_cpu_share),
        saturated: steps.iter().any(|step| !step.sustained && !step.half_knee),
    }
}

/// One protocol's knee over another's, for the same n and fault case.
#[derive(Debug, Clone, Serialize)]
pub struct Ratio {
    /// The numerator's protocol.
    pub protocol: &'static str,
    /// The denominator's protocol.
    pub baseline: &'static str,
    /// n.
    pub replicas: u8,
    /// The fault case.
    pub faults: &'static str,
    /// Knee over knee.
    pub throughput_ratio: f64,
    /// Messages per operation, numerator then denominator (at their knees).
    pub messages_per_op: (Option<f64>, Option<f64>),
    /// Replica CPU seconds per operation, numerator then denominator.
    pub cpu_s_per_op: (Option<f64>, Option<f64>),
}

/// Every PoE series' knee over PBFT's of the same n and fault case.
pub fn ratios(summaries: &[SeriesSummary]) -> Vec<Ratio> {
    let mut ratios = Vec::new();
    for baseline in summaries.iter().filter(|summary| summary.protocol == "pbft") {
        for other in summaries.iter().filter(|summary| {
            summary.protocol != "pbft"
                && summary.replicas == baseline.replicas
                && summary.faults == baseline.faults
        }) {
            if let (Some(top), Some(bottom)) = (other.knee_ops_s, baseline.knee_ops_s)
                && bottom > 0.0
            {
                ratios.push(Ratio {
                    protocol: other.protocol,
                    baseline: baseline.protocol,
                    replicas: baseline.replicas,
                    faults: baseline.faults,
                    throughput_ratio: top / bottom,
                    messages_per_op: (other.knee_messages_per_op, baseline.knee_messages_per_op),
                    cpu_s_per_op: (other.knee_cpu_s_per_op, baseline.knee_cpu_s_per_op),
                });
            }
        }
    }
    ratios
}
