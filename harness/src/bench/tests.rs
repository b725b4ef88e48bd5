//! The benchmark's arithmetic on made-up samples: quantiles with unfinished operations, what
//! is sustained, the knee, the ratios, and the plot.

use std::collections::BTreeMap;
use std::time::Duration;

use tokio::time::Instant;
use workloads::open_loop::{DispatchReport, Outcome, Sample};

use super::stats::{self, SeriesKey, Window};

const KEY: SeriesKey = SeriesKey { protocol: "poe-ts", replicas: 4, faults: "none" };

/// `count` samples arriving evenly over the window [1 s, 2 s) after `start`, each done
/// `latency` later.
fn samples(start: Instant, count: u32, latency: Duration, outcome: Outcome) -> Vec<Sample> {
    (0..count)
        .map(|index| {
            let arrival = start + Duration::from_secs(1) + Duration::from_secs(1) * index / count;
            Sample { arrival, started: arrival, done: arrival + latency, outcome }
        })
        .collect()
}

fn window(arrivals: u64, unserved: u64) -> Window {
    Window {
        from: Duration::from_secs(1),
        length: Duration::from_secs(1),
        dispatch: DispatchReport {
            arrivals,
            arrivals_measured: arrivals,
            shed_measured: 0,
            unserved_measured: unserved,
        },
        replica_cpu_s: 0.8,
        harness_cpu_s: 0.2,
        counters: BTreeMap::from([
            ("net.frames_sent".to_string(), 500),
            ("crypto.ed25519_batch_verify".to_string(), 400),
        ]),
        replicas_up: 4,
        gateway_drops: 0,
    }
}

/// Setup: the quantile of values where some are infinite. Test: ranks among the finite ones
/// give them; a rank among the infinite ones gives none.
#[test]
fn quantiles_count_unfinished_operations_as_infinite() {
    let sorted = [1.0, 2.0, 3.0, 4.0];
    assert_eq!(stats::quantile(&sorted, 4, 0.5), Some(2.0));
    assert_eq!(stats::quantile(&sorted, 4, 0.99), Some(4.0));
    assert_eq!(stats::quantile(&sorted, 5, 0.5), Some(3.0));
    assert_eq!(stats::quantile(&sorted, 5, 0.99), None, "the fifth is unfinished");
    assert_eq!(stats::quantile(&[], 0, 0.5), None);
}

/// Setup: a step whose 100 arrivals all completed in 2 ms. Test: it is sustained, and its
/// rates, latencies and per-operation figures follow from the samples and counters.
#[test]
fn a_step_that_keeps_up_is_sustained() {
    let start = Instant::now();
    let mut all = samples(start, 90, Duration::from_millis(2), Outcome::Ok);
    all.extend(samples(start, 10, Duration::from_millis(2), Outcome::Fail));
    // Completions of the warm-up (arrived and done before the window) do not count.
    all.push(Sample {
        arrival: start,
        started: start,
        done: start + Duration::from_millis(5),
        outcome: Outcome::Ok,
    });
    let record = stats::step_record(KEY, 0, false, &all, start, &window(100, 0));
    assert!(record.sustained);
    assert!((record.offered_ops_s - 100.0).abs() < 1e-6);
    // The last arrivals complete 2 ms after the window: 99 of 100 within it.
    assert!((95.0..=100.0).contains(&record.achieved_ops_s), "{}", record.achieved_ops_s);
    assert_eq!(record.p50_ms.map(|ms| ms.round()), Some(2.0));
    assert_eq!(record.unfinished, 0);
    let cpu = record.cpu_s_per_op.expect("operations completed");
    assert!((cpu - 0.8 / record.achieved_ops_s).abs() < 1e-9);
    assert_eq!(record.harness_cpu_share.map(|share| (share * 10.0).round()), Some(2.0));
    // 500 frames over the window's operations (the window is one second).
    let messages = record.messages_per_op.expect("operations completed");
    assert!((messages * record.achieved_ops_s - 500.0).abs() < 1e-6, "{messages}");
    assert!(record.crypto_per_op.contains_key("ed25519_batch_verify"));
}

/// Setup: a step where a tenth of the arrivals never got a client. Test: not sustained, and
/// its p99 is unknown (those arrivals are infinitely late).
#[test]
fn a_step_that_falls_behind_is_not_sustained() {
    let start = Instant::now();
    let all = samples(start, 90, Duration::from_millis(2), Outcome::Ok);
    let record = stats::step_record(KEY, 3, false, &all, start, &window(100, 10));
    assert!(!record.sustained);
    assert_eq!(record.unfinished, 10);
    assert_eq!(record.p99_ms, None);
    assert!(record.p50_ms.is_some());
    // Timed-out operations are unfinished too.
    let mut timed_out = samples(start, 100, Duration::from_millis(2), Outcome::Ok);
    for sample in timed_out.iter_mut().take(5) {
        sample.outcome = Outcome::Unknown;
    }
    let record = stats::step_record(KEY, 3, false, &timed_out, start, &window(100, 0));
    assert_eq!(record.unfinished, 5);
    assert!(!record.sustained);
    // A step without arrivals proves nothing.
    let record = stats::step_record(KEY, 3, false, &[], start, &window(0, 0));
    assert!(!record.sustained);
}

/// Setup: a ladder of three sustained steps and one that is not, then the half-knee step.
/// Test: the knee is the fastest sustained ladder step, the summary says the ladder saturated,
/// and PoE's ratio over PBFT is knee over knee.
#[test]
fn the_knee_is_the_fastest_sustained_step() {
    let start = Instant::now();
    let step = |count: u32, unserved: u64, half: bool| {
        let all = samples(start, count, Duration::from_millis(1), Outcome::Ok);
        stats::step_record(
            KEY,
            0,
            half,
            &all,
            start,
            &window(u64::from(count) + unserved, unserved),
        )
    };
    let steps = vec![
        step(100, 0, false),
        step(200, 0, false),
        step(400, 0, false),
        step(500, 200, false),
        step(200, 0, true),
    ];
    let knee = stats::knee(&steps).expect("a sustained step");
    assert!((knee.offered_ops_s - 400.0).abs() < 1e-6);
    let summary = stats::summarise(KEY, &steps);
    assert!(summary.saturated);
    assert!(summary.half_knee_ops_s.is_some());
    let pbft_key = SeriesKey { protocol: "pbft", ..KEY };
    let pbft = stats::summarise(pbft_key, &steps[..2]);
    assert!(!pbft.saturated, "its ladder ended before a step fell behind");
    let ratios = stats::ratios(&[summary, pbft]);
    assert_eq!(ratios.len(), 1);
    assert!((ratios[0].throughput_ratio - 2.0).abs() < 0.05, "{}", ratios[0].throughput_ratio);
}

/// Setup: steps of two protocols in two panels. Test: the SVG names both protocols and both
/// panels.
#[test]
fn the_plot_has_a_panel_per_case_and_a_line_per_protocol() {
    let start = Instant::now();
    let mut steps = Vec::new();
    for (protocol, faults) in [("poe-ts", "none"), ("pbft", "none"), ("poe-ts", "crash")] {
        let key = SeriesKey { protocol, replicas: 4, faults };
        for count in [100, 200] {
            let all = samples(start, count, Duration::from_millis(3), Outcome::Ok);
            steps.push(stats::step_record(
                key,
                0,
                false,
                &all,
                start,
                &window(u64::from(count), 0),
            ));
        }
    }
    let svg = super::plot::svg(&steps);
    assert!(svg.starts_with("<svg"));
    for text in ["poe-ts", "pbft", "n = 4, fault-free", "n = 4, one backup crashed"] {
        assert!(svg.contains(text), "{text}");
    }
}
