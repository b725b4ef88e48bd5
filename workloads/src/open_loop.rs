//! Open-loop load for benchmarks (`ordeal bench`): operations *arrive* at a fixed mean rate, a
//! Poisson process, whatever the cluster's speed, and a pool of client identities serves them.
//!
//! A closed-loop client waits for one operation before it starts the next, so a slow cluster
//! slows its own load and hides its latency (coordinated omission). Here a [`Dispatcher`] draws
//! arrival times from its seed; each arrival waits in a bounded backlog for an idle client of
//! its pool, and its latency runs from the *arrival*, so the time it waited counts. Beyond the
//! cluster's capacity the backlog fills, arrivals are shed (counted), and latency grows
//! without bound: that is the knee a benchmark looks for.
//!
//! One dispatcher and its clients live on one worker thread ([`serve`] tasks). Arrival times
//! come from a seeded generator; the clock is the runtime's, since this measures real time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use replica::core::{Client, Time};
use replica::net::client::ClientTransport;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::generator::Generator;
use crate::process::{self, TRANSPORT_CLOSED};
use crate::recorder::Completion;

/// The most arrivals one dispatcher holds waiting for a client; beyond it the oldest is shed.
pub const BACKLOG_MAX: usize = 65_536;

/// The most samples one pool keeps per step (a step of 10 s at 100k ops/s).
pub const SAMPLES_MAX: usize = 1_000_000;

/// How one operation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Executed, and it took effect.
    Ok,
    /// Executed, and definitely refused (a cas whose compare failed).
    Fail,
    /// No proof within the operation timeout.
    Unknown,
}

/// One served arrival.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When it arrived (was due to start).
    pub arrival: Instant,
    /// When its client started it (at `arrival` or later, when every client was busy).
    pub started: Instant,
    /// When it completed or was given up.
    pub done: Instant,
    /// How it ended.
    pub outcome: Outcome,
}

/// The samples of one pool, shared by its clients and read by the benchmark between steps.
#[derive(Debug, Default)]
pub struct Samples {
    inner: Mutex<SamplesInner>,
}

#[derive(Debug, Default)]
struct SamplesInner {
    samples: Vec<Sample>,
    dropped: u64,
}

impl Samples {
    fn push(&self, sample: Sample) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if inner.samples.len() < SAMPLES_MAX {
            inner.samples.push(sample);
        } else {
            inner.dropped += 1;
        }
    }

    /// Takes every sample so far, and how many were dropped past [`SAMPLES_MAX`].
    pub fn take(&self) -> (Vec<Sample>, u64) {
        let mut inner = self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let dropped = std::mem::take(&mut inner.dropped);
        (std::mem::take(&mut inner.samples), dropped)
    }
}

/// What a dispatcher did in one step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Arrivals drawn (at or after the measuring window's start, and all of them).
    pub arrivals_measured: u64,
    /// Every arrival of the step.
    pub arrivals: u64,
    /// Arrivals of the measuring window shed because the backlog was full.
    pub shed_measured: u64,
    /// Arrivals of the measuring window still waiting for a client when the step ended.
    pub unserved_measured: u64,
}

/// Hands arrivals to the idle clients of one pool.
#[derive(Debug)]
pub struct Dispatcher {
    idle: mpsc::Receiver<usize>,
    idle_clients: Vec<usize>,
    clients: Vec<mpsc::Sender<Instant>>,
    rng: ChaCha8Rng,
}

/// A client of a pool: what [`serve`] needs besides the client itself.
#[derive(Debug)]
pub struct PoolSlot {
    index: usize,
    idle: mpsc::Sender<usize>,
    arrivals: mpsc::Receiver<Instant>,
}

impl Dispatcher {
    /// A dispatcher for `clients` clients, drawing arrivals from `seed`; returns the slot each
    /// client's [`serve`] task takes.
    pub fn new(clients: usize, seed: u64) -> (Dispatcher, Vec<PoolSlot>) {
        let (idle_sender, idle) = mpsc::channel(clients.max(1));
        let mut senders = Vec::with_capacity(clients);
        let mut slots = Vec::with_capacity(clients);
        for index in 0..clients {
            // One arrival at a time: a client is handed one only when it said it is idle.
            let (sender, arrivals) = mpsc::channel(1);
            senders.push(sender);
            slots.push(PoolSlot { index, idle: idle_sender.clone(), arrivals });
        }
        let dispatcher = Dispatcher {
            idle,
            idle_clients: Vec::with_capacity(clients),
            clients: senders,
            rng: ChaCha8Rng::seed_from_u64(seed),
        };
        (dispatcher, slots)
    }

    /// Draws arrivals at `rate` per second from now until `end`, hands each to an idle client
    /// (the oldest first), and counts those at or after `measure_from`. Arrivals still waiting
    /// at `end` are dropped (counted as unserved): the next step starts empty.
    pub async fn step(&mut self, rate: f64, measure_from: Instant, end: Instant) -> DispatchReport {
        let mut report = DispatchReport::default();
        let mut backlog: VecDeque<Instant> = VecDeque::new();
        let mut next = Instant::now() + self.gap(rate);
        // Bounded by `end`: every pass either waits for a timer before `end` or an idle client.
        loop {
            let now = Instant::now();
            while next <= now && next < end {
                report.arrivals += 1;
                let measured = next >= measure_from;
                report.arrivals_measured += u64::from(measured);
                backlog.push_back(next);
                if backlog.len() > BACKLOG_MAX
                    && let Some(shed) = backlog.pop_front()
                {
                    report.shed_measured += u64::from(shed >= measure_from);
                }
                next += self.gap(rate);
            }
            while let Some(client) = self.idle_clients.pop() {
                let Some(arrival) = backlog.pop_front() else {
                    self.idle_clients.push(client);
                    break;
                };
                // A client's slot is empty when it says it is idle; a gone client (its
                // transport closed) loses the arrival, which then counts as unserved.
                if self.clients[client].try_send(arrival).is_err() {
                    report.unserved_measured += u64::from(arrival >= measure_from);
                }
            }
            if now >= end {
                break;
            }
            let wake = next.min(end);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                idle = self.idle.recv() => match idle {
                    Some(client) => self.idle_clients.push(client),
                    None => break,
                },
            }
        }
        report.unserved_measured +=
            backlog.iter().filter(|arrival| **arrival >= measure_from).count() as u64;
        report
    }

    /// Waits until every client of the pool is idle again, or `deadline`; returns how many
    /// still were busy.
    pub async fn settle(&mut self, deadline: Instant) -> usize {
        while self.idle_clients.len() < self.clients.len() {
            tokio::select! {
                idle = self.idle.recv() => match idle {
                    Some(client) => self.idle_clients.push(client),
                    None => break,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        self.clients.len() - self.idle_clients.len()
    }

    /// The time to the next arrival: exponential with mean 1/`rate`.
    fn gap(&mut self, rate: f64) -> Duration {
        // 1 - u is in (0, 1], so the logarithm is finite.
        let uniform: f64 = self.rng.random::<f64>();
        Duration::from_secs_f64(-(1.0 - uniform).ln() / rate.max(1e-9))
    }
}

/// Serves arrivals as one client of a pool until its dispatcher is gone or its transport
/// closes: says it is idle, takes an arrival, runs the generator's next operation, and records
/// a [`Sample`]. The client core's clock counts from `start`.
pub async fn serve(
    mut client: Client,
    mut transport: ClientTransport,
    mut generator: Generator,
    slot: PoolSlot,
    samples: Arc<Samples>,
    start: std::time::Instant,
    op_timeout: Duration,
) {
    let PoolSlot { index, idle, mut arrivals } = slot;
    // Bounded by the dispatcher: it ends when the dispatcher is dropped.
    loop {
        if idle.send(index).await.is_err() {
            return;
        }
        let Some(arrival) = arrivals.recv().await else { return };
        let started = Instant::now();
        let op = generator.next_op();
        let request = client.sign_next(op.clone());
        let now = Time::from_nanos(start.elapsed().as_nanos() as u64);
        if client.submit_signed(now, request).is_err() {
            // Only after an abandoned operation that the core still tracks: give it up.
            client.abandon();
            continue;
        }
        process::send_all(&mut client, &transport);
        let completion =
            process::await_completion(&mut client, &mut transport, start, None, op_timeout).await;
        let outcome = match &completion {
            Completion::Done { result, .. } if result.succeeded() => Outcome::Ok,
            Completion::Done { .. } => Outcome::Fail,
            Completion::Unknown { .. } => Outcome::Unknown,
        };
        if let Completion::Done { result, .. } = &completion {
            generator.observe(&op, result);
        }
        samples.push(Sample { arrival, started, done: Instant::now(), outcome });
        if matches!(&completion, Completion::Unknown { reason } if reason == TRANSPORT_CLOSED) {
            return;
        }
    }
}
