//! `ordeal bench`: how fast the replicas are, measured with open-loop load.
//!
//! For each cluster size and fault case, one cluster per protocol is started (replica
//! processes over QUIC, clients connected directly, no relay), and then the rate ladder is
//! climbed *interleaved*: step k runs on the first protocol's cluster, then on the second's,
//! and so on, so that the machine's drift (this is a shared 2-core machine) falls on every
//! protocol alike. A step offers Poisson arrivals at a fixed rate
//! ([`workloads::open_loop`]) for a warm-up and a measured window; the next step offers
//! `--factor` times more, until a step is not sustained ([`stats::SUSTAINED_SHARE`]): the
//! highest sustained step is the knee. One more step then runs at half the knee's
//! throughput. Around each window the driver reads the replicas' CPU (`/proc`), the
//! harness's own, and the replicas' counters (frames, bytes, cryptographic operations), so
//! that a ratio between protocols comes with what explains it.
//!
//! Outputs: a line per step as it runs, a summary table, `bench.json` (every step, every
//! series' summary, the PoE-over-PBFT ratios) and `bench.svg` ([`plot`]).

#![allow(clippy::disallowed_methods, reason = "a benchmark measures the wall clock")]

mod plot;
pub mod stats;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use replica::core::{Client, ClientId, Protocol};
use replica::net::client::{ClientTransport, Gateway};
use replica::net::endpoint;
use replica::net::tls::Identity;
use serde::Serialize;
use tokio::sync::watch;
use workloads::generator::Workload;
use workloads::open_loop::{self, DispatchReport, Dispatcher, Samples};

use crate::cli::{BenchFault, BenchOptions, ProtocolArg};
use crate::cluster::Cluster;
use crate::run::{self, CLIENT_WORKERS, CLIENTS_PER_ENDPOINT, Clients, READY_TIMEOUT, Setup};
use crate::workers::Workers;
use stats::{SeriesKey, StepRecord, Window};

/// Counters of the replicas' status read around each window.
const COUNTER_PREFIXES: [&str; 2] = ["net.", "crypto."];

/// Runs the benchmark; returns the exit code (0 done, 1 when a series never sustained its
/// first step, which means the cluster could not serve even the lowest rate).
///
/// # Errors
///
/// Bad options, or a cluster that cannot be started.
pub fn run(options: &BenchOptions) -> anyhow::Result<u8> {
    options.validate()?;
    let out = match &options.out {
        Some(out) => out.clone(),
        None => {
            let stamp = crate::store::timestamp(SystemTime::now());
            PathBuf::from("store").join("bench").join(stamp)
        }
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    // This future runs on the main thread, which spawns the replicas (see `cluster`).
    let bench = runtime.block_on(bench(options, &out))?;
    let json = serde_json::to_string_pretty(&bench).context("serializing bench.json")?;
    let json_path = out.join("bench.json");
    std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;
    let svg_path = out.join("bench.svg");
    std::fs::write(&svg_path, plot::svg(&bench.steps))
        .with_context(|| format!("writing {}", svg_path.display()))?;
    print!("{}", summary_table(&bench));
    println!("wrote {} and {}", json_path.display(), svg_path.display());
    let never = bench.series.iter().any(|series| series.knee_ops_s.is_none());
    Ok(u8::from(never))
}

/// Everything `bench.json` holds.
#[derive(Debug, Serialize)]
pub struct Bench {
    /// When it ran (Unix seconds).
    pub unix_time: u64,
    /// The command line.
    pub command: String,
    /// The options.
    pub options: BenchOptions,
    /// Cores the machine has.
    pub cores: usize,
    /// Every step, in the order run.
    pub steps: Vec<StepRecord>,
    /// Every series' knee.
    pub series: Vec<stats::SeriesSummary>,
    /// PoE's knee over PBFT's, per n and fault case.
    pub ratios: Vec<stats::Ratio>,
    /// Seconds the whole benchmark took.
    pub seconds: f64,
}

async fn bench(options: &BenchOptions, out: &Path) -> anyhow::Result<Bench> {
    let begun = Instant::now();
    let workers = Workers::start(CLIENT_WORKERS).context("starting the client workers")?;
    let mut steps = Vec::new();
    let mut series = Vec::new();
    println!(
        "{:<8} {:>3} {:<5} {:>4} {:>9} {:>9} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6}",
        "protocol",
        "n",
        "fault",
        "step",
        "offered",
        "achieved",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "cpu/op",
        "msg/op",
        "harn%"
    );
    for n in options.replica_counts() {
        for &fault in &options.faults {
            let mut clusters = Vec::new();
            for protocol in options.protocols() {
                let cluster = BenchCluster::start(options, protocol, n, fault, out, &workers)
                    .await
                    .with_context(|| format!("starting {protocol:?} with n = {n}"))?;
                clusters.push(cluster);
            }
            let mut recorded: Vec<Vec<StepRecord>> = vec![Vec::new(); clusters.len()];
            // Each cluster's highest sustained rate and lowest unsustained one, offered.
            let mut bounds: Vec<(Option<f64>, Option<f64>)> = vec![(None, None); clusters.len()];
            let mut rate = options.first_rate(n);
            let mut step = 0;
            while step < options.max_steps && bounds.iter().any(|(_, high)| high.is_none()) {
                for (index, cluster) in clusters.iter_mut().enumerate() {
                    if bounds[index].1.is_some() {
                        continue;
                    }
                    let record = cluster.step(options, step, false, rate, &workers).await?;
                    print_step(&record);
                    let bound =
                        if record.sustained { &mut bounds[index].0 } else { &mut bounds[index].1 };
                    *bound = Some(rate);
                    recorded[index].push(record);
                }
                rate *= options.factor;
                step += 1;
            }
            // Bisect (geometrically) between the last sustained rate and the first that was not.
            for _ in 0..options.refine {
                for (index, cluster) in clusters.iter_mut().enumerate() {
                    let (Some(low), Some(high)) = bounds[index] else { continue };
                    let middle = (low * high).sqrt();
                    let record = cluster.step(options, step, false, middle, &workers).await?;
                    print_step(&record);
                    if record.sustained {
                        bounds[index].0 = Some(middle);
                    } else {
                        bounds[index].1 = Some(middle);
                    }
                    recorded[index].push(record);
                }
                step += 1;
            }
            for (index, cluster) in clusters.iter_mut().enumerate() {
                if let Some(knee) = stats::knee(&recorded[index]) {
                    let half = knee.achieved_ops_s / 2.0;
                    let record = cluster.step(options, step, true, half, &workers).await?;
                    print_step(&record);
                    recorded[index].push(record);
                }
            }
            for (cluster, records) in clusters.into_iter().zip(recorded) {
                series.push(stats::summarise(cluster.key, &records));
                steps.extend(records);
                cluster.stop().await;
            }
        }
    }
    drop(workers);
    let ratios = stats::ratios(&series);
    Ok(Bench {
        unix_time: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_secs()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        options: options.clone(),
        cores: std::thread::available_parallelism().map_or(1, std::num::NonZero::get),
        steps,
        series,
        ratios,
        seconds: begun.elapsed().as_secs_f64(),
    })
}

/// One protocol's cluster of a series, with its pools of clients.
struct BenchCluster {
    key: SeriesKey,
    cluster: Cluster,
    controller_endpoint: quinn::Endpoint,
    /// The dispatcher of each worker's pool (taken while a step runs on the worker).
    dispatchers: Vec<Option<Dispatcher>>,
    /// Each worker's samples.
    samples: Vec<Arc<Samples>>,
    connection: Connection,
    /// The client tasks (they end when the dispatchers are dropped).
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Kept for the keys in memory (a crashed replica is never restarted here).
    _setup: Setup,
}

impl BenchCluster {
    /// Starts the replicas, waits for them, crashes a backup for the `crash` case, and connects
    /// the pool's clients.
    async fn start(
        options: &BenchOptions,
        protocol: ProtocolArg,
        n: u8,
        fault: BenchFault,
        out: &Path,
        workers: &Workers,
    ) -> anyhow::Result<BenchCluster> {
        let test = options.test_options(protocol, n);
        let config = test.cluster_config()?;
        let name = Protocol::from(protocol).name();
        let key = SeriesKey { protocol: name, replicas: n, faults: fault.name() };
        let run_dir = out.join("clusters").join(format!("{name}-n{n}-{}", fault.name()));
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("creating {}", run_dir.display()))?;
        let epoch = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
        let setup = Setup::create(&run_dir, &config, options.seed, epoch as u64, options.fsync)?;
        let program = std::env::current_exe().context("locating the ordeal binary")?;
        let local: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
        let controller_endpoint =
            endpoint::bind(local, None, None).context("binding the harness's QUIC endpoint")?;
        let mut cluster = setup.spawn_cluster(&program)?;
        let controller = setup
            .ca
            .issue(Identity::Controller)
            .context("issuing the controller certificate")?
            .tls(&setup.ca);
        cluster.wait_ready(&controller_endpoint, &controller, READY_TIMEOUT).await?;
        // Clients connect to every replica before the crash (they wait for every link).
        let (connection, pools) = if options.direct_clients {
            Connection::direct(&setup, workers).await?
        } else {
            Connection::gateways(&setup, workers).await?
        };
        if fault == BenchFault::Crash {
            // The last replica is a backup in view 0 (the primary is replica 0).
            cluster.kill(usize::from(n) - 1).await?;
        }
        let start = Instant::now();
        let workload = Workload::from(test.workload);
        let op_timeout = Duration::from_secs_f64(options.op_timeout);
        let (connection, mut transports) = connection.take_transports();
        let mut dispatchers = Vec::new();
        let mut samples = Vec::new();
        let mut tasks = Vec::new();
        for (worker, pool) in pools.iter().enumerate() {
            let seed = history::seeds::arrivals(options.seed, u64::from(n), worker as u64);
            let (dispatcher, slots) = Dispatcher::new(pool.len(), seed);
            let pool_samples = Arc::new(Samples::default());
            for (&index, slot) in pool.iter().zip(slots) {
                let transport = transports[index].take().expect("each client in one pool");
                let client = Client::new(config.clone(), setup.keys.clients[index].clone());
                let generator =
                    workload.generator(options.seed, test.keys, index as u32, config.client_count);
                let task = open_loop::serve(
                    client,
                    transport,
                    generator,
                    slot,
                    pool_samples.clone(),
                    start,
                    op_timeout,
                );
                tasks.push(workers.spawn(worker, task));
            }
            dispatchers.push(Some(dispatcher));
            samples.push(pool_samples);
        }
        Ok(BenchCluster {
            key,
            cluster,
            controller_endpoint,
            dispatchers,
            samples,
            connection,
            tasks,
            _setup: setup,
        })
    }

    /// Runs one step at `rate` and returns its record.
    async fn step(
        &mut self,
        options: &BenchOptions,
        step: u32,
        half_knee: bool,
        rate: f64,
        workers: &Workers,
    ) -> anyhow::Result<StepRecord> {
        let warmup = Duration::from_secs_f64(options.warmup);
        let length = Duration::from_secs_f64(options.step_time);
        let started = tokio::time::Instant::now();
        let measure_from = started + warmup;
        let end = measure_from + length;
        let settle = end + Duration::from_secs_f64(options.op_timeout) + Duration::from_secs(1);
        let share = rate / self.dispatchers.len() as f64;
        let mut running = Vec::new();
        for (worker, slot) in self.dispatchers.iter_mut().enumerate() {
            let mut dispatcher = slot.take().context("a dispatcher lost by an earlier step")?;
            running.push(workers.spawn(worker, async move {
                let report = dispatcher.step(share, measure_from, end).await;
                dispatcher.settle(settle).await;
                (dispatcher, report)
            }));
        }
        // Rates and latencies are counted over the planned window, as the dispatchers count
        // arrivals; CPU and counters are read around it (a status request takes a moment,
        // longest at the knee, and must not stretch the window).
        tokio::time::sleep_until(measure_from).await;
        let before = self.measure().await;
        tokio::time::sleep_until(end).await;
        let after = self.measure().await;
        let mut dispatch = DispatchReport::default();
        for (slot, handle) in self.dispatchers.iter_mut().zip(running) {
            let (dispatcher, report) = handle.await.context("a dispatcher failed")?;
            *slot = Some(dispatcher);
            dispatch.arrivals += report.arrivals;
            dispatch.arrivals_measured += report.arrivals_measured;
            dispatch.shed_measured += report.shed_measured;
            dispatch.unserved_measured += report.unserved_measured;
        }
        let mut samples = Vec::new();
        for pool in &self.samples {
            samples.extend(pool.take().0);
        }
        let counters = after
            .counters
            .iter()
            .map(|(name, value)| {
                let rise = value.saturating_sub(before.counters.get(name).copied().unwrap_or(0));
                (name.clone(), rise)
            })
            .collect();
        let window = Window {
            from: warmup,
            length,
            dispatch,
            replica_cpu_s: after.replica_cpu_s - before.replica_cpu_s,
            harness_cpu_s: after.harness_cpu_s - before.harness_cpu_s,
            counters,
            replicas_up: after.replicas_up,
            gateway_drops: after.gateway_drops - before.gateway_drops,
        };
        Ok(stats::step_record(self.key, step, half_knee, &samples, started, &window))
    }

    /// The replicas' and the harness's CPU so far, and the replicas' counters summed.
    async fn measure(&self) -> Measure {
        let replica_cpu_s = self.cluster.pids().iter().filter_map(|pid| cpu_seconds(*pid)).sum();
        let harness_cpu_s = cpu_seconds(std::process::id()).unwrap_or(0.0);
        let mut counters: BTreeMap<String, u64> = BTreeMap::new();
        let statuses = self.cluster.statuses().await;
        let replicas_up = statuses.iter().flatten().count();
        for status in statuses.into_iter().flatten() {
            for (name, value) in status.counters {
                if COUNTER_PREFIXES.iter().any(|prefix| name.starts_with(prefix)) {
                    *counters.entry(name).or_default() += value;
                }
            }
        }
        let gateway_drops = self.connection.gateway_drops();
        Measure { replica_cpu_s, harness_cpu_s, counters, replicas_up, gateway_drops }
    }

    /// Ends the clients and stops the replicas.
    async fn stop(mut self) {
        // Dropping the dispatchers ends every client task at its next idle point.
        self.dispatchers.clear();
        for task in self.tasks.drain(..) {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        self.connection.close();
        let _ = self.cluster.stop(run::STOP_GRACE).await;
        self.controller_endpoint.close(0u32.into(), b"done");
    }
}

/// How a cluster's clients reach the replicas: each on its own links (`--direct-clients`, as
/// `ordeal test`), or through one gateway per worker (many clients per connection).
enum Connection {
    Direct(Clients),
    Gateways {
        gateways: Vec<Gateway>,
        endpoints: Vec<quinn::Endpoint>,
        transports: Vec<ClientTransport>,
    },
}

impl Connection {
    /// Every client on its own links; each worker's pool holds the clients whose endpoint
    /// block lives on it.
    async fn direct(
        setup: &Setup,
        workers: &Workers,
    ) -> anyhow::Result<(Connection, Vec<Vec<usize>>)> {
        let (_interrupt, mut interrupted) = watch::channel(false);
        let clients = Clients::connect(setup, workers, &mut interrupted).await?;
        let mut pools: Vec<Vec<usize>> = vec![Vec::new(); workers.count()];
        for index in 0..clients.transports.len() {
            pools[(index / CLIENTS_PER_ENDPOINT) % workers.count()].push(index);
        }
        Ok((Connection::Direct(clients), pools))
    }

    /// One gateway per worker for a contiguous share of the clients.
    async fn gateways(
        setup: &Setup,
        workers: &Workers,
    ) -> anyhow::Result<(Connection, Vec<Vec<usize>>)> {
        let local: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
        let total = setup.keys.clients.len();
        let share = total.div_ceil(workers.count());
        let mut gateways = Vec::new();
        let mut endpoints = Vec::new();
        let mut transports = Vec::new();
        let mut pools = Vec::new();
        for worker in 0..workers.count() {
            let first = worker * share;
            let count = share.min(total.saturating_sub(first));
            pools.push((first..first + count).collect());
            if count == 0 {
                continue;
            }
            let identity = Identity::Gateway { first: ClientId(first as u32), count: count as u32 };
            let tls =
                setup.ca.issue(identity).context("issuing a gateway certificate")?.tls(&setup.ca);
            let endpoint = workers
                .enter(worker, || endpoint::bind(local, None, None))
                .context("binding a gateway endpoint")?;
            let (gateway, members) = workers
                .enter(worker, || {
                    Gateway::connect(
                        &endpoint,
                        &tls,
                        &setup.client_addresses,
                        ClientId(first as u32),
                        count as u32,
                    )
                })
                .context("starting a gateway's links")?;
            gateways.push(gateway);
            endpoints.push(endpoint);
            transports.extend(members);
        }
        let connecting = Instant::now();
        while !gateways.iter().all(Gateway::is_connected) {
            anyhow::ensure!(
                connecting.elapsed() < READY_TIMEOUT,
                "gateways could not connect within {READY_TIMEOUT:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Ok((Connection::Gateways { gateways, endpoints, transports }, pools))
    }

    /// Takes the client transports, in client order.
    fn take_transports(self) -> (Connection, Vec<Option<ClientTransport>>) {
        match self {
            Connection::Direct(mut clients) => {
                let transports = clients.transports.drain(..).map(Some).collect();
                (Connection::Direct(clients), transports)
            }
            Connection::Gateways { gateways, endpoints, transports } => {
                let transports = transports.into_iter().map(Some).collect();
                (Connection::Gateways { gateways, endpoints, transports: Vec::new() }, transports)
            }
        }
    }

    /// INFORMs the gateways dropped (a client's queue full, misaddressed, malformed).
    fn gateway_drops(&self) -> u64 {
        match self {
            Connection::Direct(_) => 0,
            Connection::Gateways { gateways, .. } => gateways
                .iter()
                .map(|gateway| {
                    let counts = gateway.counts();
                    counts.dropped + counts.misaddressed + counts.malformed
                })
                .sum(),
        }
    }

    fn close(&self) {
        match self {
            Connection::Direct(clients) => clients.close(),
            Connection::Gateways { endpoints, .. } => {
                for endpoint in endpoints {
                    endpoint.close(0u32.into(), b"done");
                }
            }
        }
    }
}

/// CPU counters read around a window.
struct Measure {
    replica_cpu_s: f64,
    harness_cpu_s: f64,
    counters: BTreeMap<String, u64>,
    replicas_up: usize,
    gateway_drops: u64,
}

/// The CPU seconds (user plus system, every thread) process `pid` has used, from
/// `/proc/<pid>/stat`; `None` for a process that is gone.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its ')' are plain.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15, so 11 and 12 after the state (field 3).
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf reads a constant of the system; no pointers.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| ticks as f64 / per_second as f64)
}

/// Seconds as whole microseconds, or `-`.
fn micros(seconds: Option<f64>) -> String {
    seconds.map_or("-".into(), |seconds| format!("{:.0}µs", seconds * 1e6))
}

/// A share as a whole percentage, or `-`.
fn percent(share: Option<f64>) -> String {
    share.map_or("-".into(), |share| format!("{:.0}", share * 100.0))
}

fn print_step(step: &StepRecord) {
    let millis = |value: Option<f64>| match value {
        Some(value) => format!("{value:.1}"),
        None => "-".into(),
    };
    let label = if step.half_knee { "½".to_string() } else { step.step.to_string() };
    println!(
        "{:<8} {:>3} {:<5} {:>4} {:>9.0} {:>9.0} {:>8} {:>8} {:>8} {:>8} {:>7} {:>7} {:>6}{}",
        step.protocol,
        step.replicas,
        step.faults,
        label,
        step.offered_ops_s,
        step.achieved_ops_s,
        millis(step.p50_ms),
        millis(step.p95_ms),
        millis(step.p99_ms),
        millis(step.max_ms),
        micros(step.cpu_s_per_op),
        step.messages_per_op.map_or("-".into(), |messages| format!("{messages:.2}")),
        percent(step.harness_cpu_share),
        if step.sustained { "" } else { "  (not sustained)" },
    );
}

/// The summary printed at the end: every series' knee, then the ratios.
fn summary_table(bench: &Bench) -> String {
    use std::fmt::Write as _;
    let mut text = String::from("\nknees (highest sustained step):\n");
    let value = |value: Option<f64>, digits: usize| match value {
        Some(value) => format!("{value:.digits$}"),
        None => "-".into(),
    };
    let _ = writeln!(
        text,
        "{:<8} {:>3} {:<5} {:>9} {:>8} {:>8} {:>12} {:>8} {:>9} {:>8} {:>6}",
        "protocol",
        "n",
        "fault",
        "knee/s",
        "p50 ms",
        "p99 ms",
        "p50 at ½ ms",
        "msg/op",
        "bytes/op",
        "cpu/op",
        "harn%"
    );
    for series in &bench.series {
        let _ = writeln!(
            text,
            "{:<8} {:>3} {:<5} {:>9} {:>8} {:>8} {:>12} {:>8} {:>9} {:>8} {:>6}{}",
            series.protocol,
            series.replicas,
            series.faults,
            value(series.knee_ops_s, 0),
            value(series.knee_p50_ms, 1),
            value(series.knee_p99_ms, 1),
            value(series.half_knee_p50_ms, 1),
            value(series.knee_messages_per_op, 2),
            value(series.knee_bytes_per_op, 0),
            micros(series.knee_cpu_s_per_op),
            percent(series.knee_harness_cpu_share),
            if series.saturated { "" } else { "  (ladder ended before the knee)" },
        );
    }
    for ratio in &bench.ratios {
        let _ = writeln!(
            text,
            "{} / {} at n = {}, faults {}: {:.2}x (messages/op {} vs {}, replica CPU/op {} vs {})",
            ratio.protocol,
            ratio.baseline,
            ratio.replicas,
            ratio.faults,
            ratio.throughput_ratio,
            value(ratio.messages_per_op.0, 2),
            value(ratio.messages_per_op.1, 2),
            micros(ratio.cpu_s_per_op.0),
            micros(ratio.cpu_s_per_op.1),
        );
    }
    text
}
