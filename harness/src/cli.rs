//! The command line (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nemesis::{FaultKind, ScheduleError, ScheduleOptions};
use replica::core::config::{BATCH_SIZE_MAX, LOG_SIZE_MAX, READ_ALL_KEYS_MAX, REPLICA_COUNT_MAX};
use replica::core::{Config, Protocol, ReplicaId};
use replica::planted::PlantedBug;
use serde::{Deserialize, Serialize};
use workloads::generator::Workload;

/// Ordeal: a Jepsen-style Byzantine fault-injection harness for BFT consensus.
#[derive(Debug, Parser)]
#[command(name = "ordeal", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a test: start a cluster of replica processes, drive clients against it, record the
    /// history, check it, and write the run to the store.
    Test(TestOptions),
    /// Check a stored run (its directory: history and ledgers; rewrites `results.json`), a
    /// plain history file (JSON lines, ../shared/histories/README.md), or, with `--bench`,
    /// every history of a directory. Exit 0 valid, 1 invalid, 2 unknown, 3 bad input.
    Check(CheckOptions),
    /// Simulate: the same protocol cores, nemesis and checker on virtual time, one seed (stored
    /// and summarised) or a sweep of seeds (`--seeds A..B`, failures stored, each with the
    /// command that reproduces it). The options are `ordeal test`'s; defaults differ: 30
    /// simulated seconds, 4 clients, 15 operations per second, a checkpoint every 16 slots
    /// (at that rate 128 would make about one per run). Exit 0 valid, 1 invalid, 2 unknown, 3
    /// bad options.
    #[command(
        mut_arg("time_limit", |arg| arg.default_value("30")),
        mut_arg("concurrency", |arg| arg.default_value("4")),
        mut_arg("rate", |arg| arg.default_value("15")),
        mut_arg("checkpoint_interval", |arg| arg.default_value("16"))
    )]
    Sim(SimArgs),
    /// Write (again) a stored run's `report.html`: verdict, failing oracles with their evidence,
    /// a timeline of faults, replicas and clients, throughput and latency, the failing window
    /// or divergence, and the command that reproduces the run.
    Report {
        /// The run directory.
        run_dir: PathBuf,
    },
    /// Serve the store over HTTP on 127.0.0.1: every run newest first with its verdict, seed
    /// and throughput, filtered by `?verdict=` and `?test=`, each linked to its report and
    /// files (`store/index.html` is the same page, written after every run).
    Serve {
        /// The store.
        #[arg(default_value = "store")]
        store: PathBuf,
        /// The port (0: any free one).
        #[arg(long, default_value_t = 8080)]
        port: u16,
    },
    /// List the planted bugs this build can run with `ordeal test --planted-bug` (none without
    /// the `planted-bugs` feature), one name per line; with `--describe`, each with the part of
    /// the protocol and the rule of PROTOCOL.md it breaks.
    PlantedBugs {
        /// Also print each bug's part and rule.
        #[arg(long)]
        describe: bool,
    },
    /// Benchmark the replicas: open-loop Poisson load at rising rates up to the latency knee,
    /// for each protocol (interleaved step by step) and cluster size, fault-free and with one
    /// backup crashed; prints a table and writes `bench.json` and `bench.svg`. Clients reach
    /// the replicas directly (no relay).
    Bench(BenchOptions),
    /// Write a JUnit XML report from a tab-separated cases file (`ci/gate --junit`): the
    /// format is `harness::junit::parse_cases`'s. Exit 0 written, 3 bad input.
    #[command(hide = true)]
    Junit {
        /// The suite's name.
        #[arg(long)]
        suite: String,
        /// The cases file.
        #[arg(long)]
        cases: PathBuf,
        /// The report to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Sum coverage counters ("sometimes" facts: view changes, rollbacks, checkpoints, state
    /// transfers, restarts, Byzantine faults acted, refused equivocations, forgeries and bad
    /// client input, twins, forced view changes) over stored runs, stores and `ordeal sim
    /// --coverage` files, and print them. Exit 0, 1 when a counter of `--expect` is zero, 3 bad
    /// input.
    Coverage {
        /// Stores, run directories or coverage files (`ordeal sim --coverage FILE`).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Print the sums as JSON.
        #[arg(long)]
        json: bool,
        /// Counters that must not be zero, comma-separated (exit 1 naming each one that is).
        #[arg(long, value_name = "NAME,NAME")]
        expect: Option<String>,
    },
    /// Write (again) a store's `index.html` (every run, newest first).
    #[command(hide = true)]
    Index {
        /// The store.
        store: PathBuf,
    },
    /// Run one replica process from its configuration file (`ordeal test` starts replicas this
    /// way; the `replica` binary is the same code).
    #[command(hide = true)]
    Replica {
        /// The replica's configuration file.
        #[arg(long)]
        config: PathBuf,
    },
}

/// Options of `ordeal check`.
#[derive(Debug, Clone, Args)]
pub struct CheckOptions {
    /// A run directory, a history file, or (with `--bench`) a directory of history files.
    pub path: PathBuf,
    /// Check every `*.jsonl` of the directory in a child process each and print a table of
    /// verdict, expected verdict (from `<file>.meta.json`), time and peak memory.
    #[arg(long)]
    pub bench: bool,
    /// Print every checker's full evidence as JSON.
    #[arg(long)]
    pub json: bool,
    /// Seconds the linearizability search may spend on one key before it is `unknown`.
    #[arg(long, default_value_t = 20.0, value_parser = parse_key_time_limit)]
    pub key_time_limit: f64,
}

fn parse_key_time_limit(text: &str) -> Result<f64, String> {
    let seconds: f64 = text.parse().map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if seconds.is_finite() && seconds > 0.0 && seconds <= 86_400.0 {
        Ok(seconds)
    } else {
        Err(format!("{seconds} is not in (0, 86400] seconds"))
    }
}

/// The protocol under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ProtocolArg {
    /// Proof-of-Execution with threshold signatures.
    PoeTs,
    /// Proof-of-Execution with MACs and signed supports.
    PoeMac,
    /// PBFT (Castro–Liskov with nf quorums): signed PREPAREs, COMMITs, no speculation.
    Pbft,
}

impl From<ProtocolArg> for Protocol {
    fn from(protocol: ProtocolArg) -> Protocol {
        match protocol {
            ProtocolArg::PoeTs => Protocol::PoeTs,
            ProtocolArg::PoeMac => Protocol::PoeMac,
            ProtocolArg::Pbft => Protocol::Pbft,
        }
    }
}

/// The workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WorkloadArg {
    /// Read, write and cas over K registers.
    Register,
    /// Transfers between K accounts and reads of all balances.
    Bank,
}

impl From<WorkloadArg> for Workload {
    fn from(workload: WorkloadArg) -> Workload {
        match workload {
            WorkloadArg::Register => Workload::Register,
            WorkloadArg::Bank => Workload::Bank,
        }
    }
}

/// Fault injection: one `--nemesis` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisArg {
    /// No faults.
    None,
    /// SIGKILL replicas, then start them again.
    Kill,
    /// SIGSTOP replicas, then SIGCONT them.
    Pause,
    /// Partition the network (isolate one, isolate the primary, halves, majority ring, bridge,
    /// one-way).
    Partition,
    /// Delay packets, with jitter.
    Delay,
    /// Drop packets.
    Loss,
    /// Deliver packets twice.
    Duplicate,
    /// Reorder packets.
    Reorder,
    /// Declared Byzantine replicas switch malicious behaviours on and off.
    Byzantine,
    /// Declared Byzantine replicas get a twin process with the same identity and keys.
    Twins,
    /// The honest primary is cut off until a declared Byzantine replica holds the role.
    ForceViewChange,
    /// Every kind above, within the fault budget.
    Mixed,
}

impl NemesisArg {
    /// The name on the command line and in the test's name.
    pub fn name(self) -> &'static str {
        match self {
            NemesisArg::None => "none",
            NemesisArg::Mixed => "mixed",
            other => other.fault_kinds()[0].name(),
        }
    }

    /// The faults it enables.
    pub fn fault_kinds(self) -> Vec<FaultKind> {
        match self {
            NemesisArg::None => Vec::new(),
            NemesisArg::Kill => vec![FaultKind::Kill],
            NemesisArg::Pause => vec![FaultKind::Pause],
            NemesisArg::Partition => vec![FaultKind::Partition],
            NemesisArg::Delay => vec![FaultKind::Delay],
            NemesisArg::Loss => vec![FaultKind::Loss],
            NemesisArg::Duplicate => vec![FaultKind::Duplicate],
            NemesisArg::Reorder => vec![FaultKind::Reorder],
            NemesisArg::Byzantine => vec![FaultKind::Byzantine],
            NemesisArg::Twins => vec![FaultKind::Twins],
            NemesisArg::ForceViewChange => vec![FaultKind::ForceViewChange],
            NemesisArg::Mixed => FaultKind::ALL.to_vec(),
        }
    }
}

/// Options of `ordeal test`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct TestOptions {
    /// The protocol, or several separated by commas (`poe-ts,poe-mac,pbft`): each runs with the
    /// same seed, workload and fault schedule, and a table compares them. Default: the
    /// scenario's protocol, else `poe-ts`; given explicitly, it overrides the scenario's.
    #[arg(long, value_enum, value_delimiter = ',')]
    #[serde(default, deserialize_with = "one_or_many")]
    pub protocol: Vec<ProtocolArg>,
    /// Replicas (n); f is the largest f with n > 3f.
    #[arg(long, default_value_t = 4)]
    pub replicas: u8,
    /// Client processes, each with its own client identity.
    #[arg(long, default_value_t = 16)]
    pub concurrency: u32,
    /// The workload.
    #[arg(long, value_enum, default_value_t = WorkloadArg::Register)]
    pub workload: WorkloadArg,
    /// Registers (register) or accounts (bank, 2 to 16).
    #[arg(long, default_value_t = 8)]
    pub keys: u32,
    /// Cap on invocations per second over all clients (default: closed loop, no cap).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Seconds the workload runs once the cluster is ready.
    #[arg(long, default_value_t = 30.0)]
    pub time_limit: f64,
    /// Seconds an operation may take before it is recorded as `info`.
    #[arg(long, default_value_t = 5.0)]
    pub op_timeout: f64,
    /// The seed of every random choice (keys, operations); random when absent, always printed.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Where runs are stored.
    #[arg(long, default_value = "store")]
    pub store: PathBuf,
    /// Run the test this many times (seeds seed, seed + 1, ...).
    #[arg(long, default_value_t = 1)]
    pub test_count: u32,
    /// Fault injection, a comma-separated list (`byzantine,partition`); `mixed` is every kind
    /// within the fault budget.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "mixed")]
    pub nemesis: Vec<NemesisArg>,
    /// Replicas declared Byzantine, drawn from the seed (default: f when the nemesis plays
    /// Byzantine faults or twins, else 0; f + 1 with --beyond-budget). They count against the
    /// fault budget for the whole run and their ledgers are not judged.
    #[arg(long)]
    pub byzantine: Option<u8>,
    /// Allow f + 1 Byzantine replicas: the run is labelled beyond budget, and a safety
    /// violation there is expected (it proves the checker can see one).
    #[arg(long)]
    #[serde(default)]
    pub beyond_budget: bool,
    /// Start a twin of a declared Byzantine replica for the whole run: a second process with
    /// its identity and keys, reached by half the other replicas.
    #[arg(long)]
    #[serde(default)]
    pub twins: bool,
    /// Byzantine client processes besides the correct ones: they also send malformed,
    /// badly signed, replayed, misaddressed and oversized requests (default: 1 with `mixed`,
    /// else 0).
    #[arg(long)]
    pub byzantine_clients: Option<u32>,
    /// A scenario file (TOML: cluster, workload, a timeline of faults, the expected verdict);
    /// its settings replace the options, and the exit code says whether the verdict was the
    /// expected one (0) or not (1).
    #[arg(long)]
    pub scenario: Option<PathBuf>,
    /// Seconds between fault starts; each fault lasts a quarter to three quarters of it
    /// (default: 5, or a quarter of the time before the final heal when that is shorter).
    #[arg(long)]
    pub nemesis_interval: Option<f64>,
    /// Seconds the run goes on after the nemesis's final heal (at time-limit minus this),
    /// within which the cluster must make progress (default: 10, or a third of the time limit
    /// when that is shorter).
    #[arg(long)]
    pub liveness_window: Option<f64>,
    /// The most requests per proposal.
    #[arg(long, default_value_t = 100)]
    pub batch_size: u32,
    /// Milliseconds the primary waits for a batch to fill.
    #[arg(long, default_value_t = 1.0)]
    pub batch_timeout_ms: f64,
    /// The most slots the primary has in flight.
    #[arg(long, default_value_t = 32)]
    pub window: u64,
    /// The primary's batch timer cuts a partial batch only while fewer slots than this are in
    /// flight (1: only when the pipeline is empty, so that load makes batches fuller, not more
    /// numerous).
    #[arg(long, default_value_t = 1)]
    #[serde(default = "one")]
    pub partial_batches: u64,
    /// Slots between checkpoints (stable on nf matching CHECKPOINTs; a replica that fell
    /// further behind than the last stable one catches up by state transfer).
    #[arg(long, default_value_t = 128)]
    pub checkpoint_interval: u64,
    /// No progress bar, even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
    /// Replicas fsync every commit of their store (power-loss durability; without it a commit
    /// survives SIGKILL, which is what the nemesis does; fsync costs about 12% of throughput).
    #[arg(long)]
    #[serde(default)]
    pub fsync: bool,
    /// Connect replicas and clients directly, without the network relay (no network faults
    /// possible; for measuring the relay's overhead).
    #[arg(long, hide = true)]
    #[serde(default)]
    pub no_relay: bool,
    /// Run a planted protocol bug (`ordeal planted-bugs` lists them) in every honest replica
    /// and every client, never in a declared Byzantine replica: the checkers must find the run
    /// invalid. Only in an `ordeal` built with `--features planted-bugs`.
    #[arg(long, value_parser = parse_planted_bug)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planted_bug: Option<PlantedBug>,
    /// Also write a JUnit XML report to FILE, for CI systems: one test case per run (per
    /// protocol, per `--test-count` run; with `ordeal sim --seeds`, one per failing seed and
    /// one for the seeds that passed), failed with the verdict, the failing oracles and the
    /// command that reproduces it. Not recorded in `test.toml`: it does not change the run.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub junit: Option<PathBuf>,
}

/// Options of `ordeal sim`.
#[derive(Debug, Clone, Args)]
pub struct SimArgs {
    /// The run's options, as `ordeal test` takes them (`--seed` is the seed of one run).
    #[command(flatten)]
    pub test: TestOptions,
    /// Sweep the seeds `A..B` (B excluded): each judged in memory, failures stored.
    #[arg(long)]
    pub seeds: Option<crate::sim::sweep::SeedRange>,
    /// Threads of a sweep.
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Stop a sweep at its first INVALID seed (an `unknown` one, such as a Byzantine fault
    /// that never acted, is reported and the sweep goes on).
    #[arg(long)]
    pub stop_on_failure: bool,
    /// Run one shard `K/N` of the sweep (K in 0..N): the seeds whose index is K modulo N.
    #[arg(long)]
    pub shard: Option<crate::sim::sweep::Shard>,
    /// Run the seed twice and report the first difference of the histories and ledgers.
    #[arg(long)]
    pub check_determinism: bool,
    /// Shrink the seed's failure to a small scenario (fewer, shorter, later faults, fewer
    /// clients and behaviours) that still fails the same oracle, written under
    /// `STORE/shrunk/` for `ordeal sim --scenario` and `ordeal test --scenario`.
    #[arg(long)]
    pub shrink: bool,
    /// The most runs a shrink makes.
    #[arg(long, default_value_t = crate::sim::shrink::RUNS_MAX)]
    pub shrink_runs: usize,
    /// The shortest one-way latency of a healthy link, in milliseconds.
    #[arg(long, default_value_t = 0.1)]
    pub latency_min_ms: f64,
    /// The longest one-way latency of a healthy link, in milliseconds.
    #[arg(long, default_value_t = 1.0)]
    pub latency_max_ms: f64,
    /// Each replica's clock runs up to this many percent fast or slow (drawn from the seed,
    /// below 49), from an offset of up to 1 s: timers of different replicas drift apart.
    #[arg(long, default_value_t = 2.0)]
    pub clock_drift: f64,
    /// Sign with real ed25519 (default: the simulator's keyed hash, much cheaper; threshold
    /// signatures and MACs are real either way).
    #[arg(long)]
    pub real_crypto: bool,
    /// Write the sweep's coverage counters, summed over every seed (stored or not), to this
    /// JSON file (`ordeal coverage` sums it with stored runs).
    #[arg(long, value_name = "FILE")]
    pub coverage: Option<PathBuf>,
}

fn parse_planted_bug(name: &str) -> Result<PlantedBug, String> {
    name.parse().map_err(|error: replica::planted::UnknownPlantedBug| error.to_string())
}

/// The command that runs one run again: `args` (the arguments after the program's name,
/// subcommand first) without the options that choose several runs or write reports (`--seeds`,
/// `--jobs`, `--shard`, `--seed`, `--test-count`, `--junit`, `--shrink`, `--shrink-runs`,
/// `--stop-on-failure`, `--check-determinism`), with `--protocol PROTOCOL` when given (one of
/// several compared) and `--seed SEED`. Words a shell would split or expand are quoted.
pub fn reproduce_command(args: &[String], seed: u64, protocol: Option<ProtocolArg>) -> String {
    let mut words = vec!["ordeal".to_string()];
    let mut args = args.iter();
    // Bounded by the arguments.
    while let Some(arg) = args.next() {
        let flag = arg.split('=').next().unwrap_or_default();
        let with_value = matches!(
            flag,
            "--seeds"
                | "--jobs"
                | "--shard"
                | "--seed"
                | "--shrink-runs"
                | "--test-count"
                | "--junit"
                | "--coverage"
        ) || (flag == "--protocol" && protocol.is_some());
        if with_value {
            if !arg.contains('=') {
                args.next();
            }
            continue;
        }
        if matches!(flag, "--stop-on-failure" | "--shrink" | "--check-determinism") {
            continue;
        }
        words.push(shell_word(arg));
    }
    if let Some(protocol) = protocol {
        let name = protocol.to_possible_value().map(|value| value.get_name().to_string());
        words.push(format!("--protocol {}", name.unwrap_or_default()));
    }
    words.push(format!("--seed {seed}"));
    words.join(" ")
}

/// `word`, single-quoted when a shell would split or expand it.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_=.,/:+@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// An option is out of range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid option --{option}: {reason}")]
pub struct OptionError {
    /// The option.
    pub option: &'static str,
    /// Why.
    pub reason: String,
}

/// The default of a count that older `test.toml` files lack.
fn one() -> u64 {
    1
}

/// A `protocol` recorded as one name (older `test.toml` files) or as a list.
fn one_or_many<'de, D>(deserializer: D) -> Result<Vec<ProtocolArg>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(ProtocolArg),
        Many(Vec<ProtocolArg>),
    }
    Ok(match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(protocol) => vec![protocol],
        OneOrMany::Many(protocols) => protocols,
    })
}

/// The fault case of a benchmark series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BenchFault {
    /// Every replica up.
    None,
    /// The last replica (a backup in view 0) SIGKILLed before the load starts: the PoE
    /// paper's failure case.
    Crash,
}

impl BenchFault {
    /// The name in tables and `bench.json`.
    pub fn name(self) -> &'static str {
        match self {
            BenchFault::None => "none",
            BenchFault::Crash => "crash",
        }
    }
}

/// `ordeal bench`'s options. The cluster knobs are `ordeal test`'s, with its defaults.
#[derive(Debug, Clone, Args, Serialize)]
pub struct BenchOptions {
    /// The protocols, interleaved step by step so that their ratio holds on a noisy machine
    /// (default: `poe-ts,pbft`; with `--full`, all three).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub protocol: Vec<ProtocolArg>,
    /// Cluster sizes (default: 4,16; with `--full`, 4,7,10,16).
    #[arg(long, value_delimiter = ',')]
    pub replicas: Vec<u8>,
    /// Fault cases: `none` (fault-free) and `crash` (one backup crashed).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "none,crash")]
    pub faults: Vec<BenchFault>,
    /// Every protocol and more cluster sizes (see `--protocol`, `--replicas`).
    #[arg(long)]
    pub full: bool,
    /// Client identities serving the arrivals of each cluster (default: 1024 / n, at least
    /// 96): enough that the pool, not the cluster, is never what limits a step.
    #[arg(long)]
    pub clients: Option<u32>,
    /// The first step's offered rate, operations per second (default: 2000 / n).
    #[arg(long)]
    pub start_rate: Option<f64>,
    /// Each step offers this many times the previous step's rate.
    #[arg(long, default_value_t = 1.5)]
    pub factor: f64,
    /// The most steps of a series before its knee.
    #[arg(long, default_value_t = 14)]
    pub max_steps: u32,
    /// Steps that then bisect between the last sustained rate and the first that was not (each
    /// halves the knee's uncertainty, a factor of `--factor` at first).
    #[arg(long, default_value_t = 2)]
    pub refine: u32,
    /// Seconds of load before a step's measuring window (not measured).
    #[arg(long, default_value_t = 0.5)]
    pub warmup: f64,
    /// Seconds a step is measured.
    #[arg(long, default_value_t = 2.0)]
    pub step_time: f64,
    /// Seconds an operation may take before it counts as unfinished.
    #[arg(long, default_value_t = 2.0)]
    pub op_timeout: f64,
    /// The most requests per proposal.
    #[arg(long, default_value_t = 100)]
    pub batch_size: u32,
    /// Milliseconds the primary waits for a batch to fill.
    #[arg(long, default_value_t = 1.0)]
    pub batch_timeout_ms: f64,
    /// The most slots the primary has in flight.
    #[arg(long, default_value_t = 32)]
    pub window: u64,
    /// The batch timer cuts a partial batch only while fewer slots than this are in flight.
    #[arg(long, default_value_t = 1)]
    pub partial_batches: u64,
    /// Slots between checkpoints.
    #[arg(long, default_value_t = 128)]
    pub checkpoint_interval: u64,
    /// Replicas fsync every commit of their store.
    #[arg(long)]
    pub fsync: bool,
    /// Registers the operations read, write and cas.
    #[arg(long, default_value_t = 8)]
    pub keys: u32,
    /// The seed of keys, operations and arrival times.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The output directory (default: `store/bench/<time>`).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Every client on connections of its own, as `ordeal test` runs them, instead of one
    /// gateway connection per client worker and replica carrying many clients' requests and
    /// INFORMs (each still signed or MACed per client).
    #[arg(long)]
    pub direct_clients: bool,
}

impl BenchOptions {
    /// The protocols benchmarked, in order.
    pub fn protocols(&self) -> Vec<ProtocolArg> {
        match (self.protocol.is_empty(), self.full) {
            (false, _) => self.protocol.clone(),
            (true, false) => vec![ProtocolArg::PoeTs, ProtocolArg::Pbft],
            (true, true) => vec![ProtocolArg::PoeTs, ProtocolArg::PoeMac, ProtocolArg::Pbft],
        }
    }

    /// The cluster sizes benchmarked, in order.
    pub fn replica_counts(&self) -> Vec<u8> {
        match (self.replicas.is_empty(), self.full) {
            (false, _) => self.replicas.clone(),
            (true, false) => vec![4, 16],
            (true, true) => vec![4, 7, 10, 16],
        }
    }

    /// The pool size of a cluster of `n`.
    pub fn client_count(&self, n: u8) -> u32 {
        self.clients.unwrap_or((1024 / u32::from(n.max(1))).max(96))
    }

    /// The first offered rate of a cluster of `n`.
    pub fn first_rate(&self, n: u8) -> f64 {
        self.start_rate.unwrap_or(2000.0 / f64::from(n.max(1)))
    }

    /// `ordeal test`'s options for one cluster of this benchmark (no faults, no Byzantine
    /// clients), from which its configuration is made and checked.
    pub fn test_options(&self, protocol: ProtocolArg, n: u8) -> TestOptions {
        let Ok(Cli { command: Command::Test(defaults) }) = Cli::try_parse_from(["ordeal", "test"])
        else {
            unreachable!("`ordeal test` parses without options");
        };
        TestOptions {
            protocol: vec![protocol],
            replicas: n,
            concurrency: self.client_count(n),
            keys: self.keys,
            op_timeout: self.op_timeout,
            nemesis: vec![NemesisArg::None],
            byzantine_clients: Some(0),
            batch_size: self.batch_size,
            batch_timeout_ms: self.batch_timeout_ms,
            window: self.window,
            partial_batches: self.partial_batches,
            checkpoint_interval: self.checkpoint_interval,
            fsync: self.fsync,
            seed: Some(self.seed),
            ..defaults
        }
    }

    /// Checks every option, each cluster's configuration included.
    ///
    /// # Errors
    ///
    /// The first option out of range.
    pub fn validate(&self) -> Result<(), OptionError> {
        let fail = |option, reason: String| Err(OptionError { option, reason });
        let positive = |value: f64, max: f64| value.is_finite() && value > 0.0 && value <= max;
        if !(self.factor.is_finite() && self.factor > 1.0 && self.factor <= 10.0) {
            return fail("factor", format!("{} is not in (1, 10]", self.factor));
        }
        if !(1..=64).contains(&self.max_steps) {
            return fail("max-steps", format!("{} is not in 1..=64", self.max_steps));
        }
        if self.refine > 8 {
            return fail("refine", format!("{} is not in 0..=8", self.refine));
        }
        if !(self.warmup.is_finite() && (0.0..=60.0).contains(&self.warmup)) {
            return fail("warmup", format!("{} is not in [0, 60] seconds", self.warmup));
        }
        if !positive(self.step_time, 600.0) {
            return fail("step-time", format!("{} is not in (0, 600] seconds", self.step_time));
        }
        if let Some(rate) = self.start_rate
            && !positive(rate, 1e6)
        {
            return fail("start-rate", format!("{rate} is not in (0, 1000000] ops/s"));
        }
        if self.faults.is_empty() {
            return fail("faults", "name at least one of none, crash".into());
        }
        for protocol in self.protocols() {
            for n in self.replica_counts() {
                if self.faults.contains(&BenchFault::Crash) && n < 4 {
                    return fail("replicas", format!("{n}: crashing a backup needs n >= 4"));
                }
                self.test_options(protocol, n).cluster_config()?;
            }
        }
        Ok(())
    }
}

impl TestOptions {
    /// The protocol of one run: the first named (`poe-ts` when none is).
    pub fn protocol(&self) -> ProtocolArg {
        self.protocol.first().copied().unwrap_or(ProtocolArg::PoeTs)
    }

    /// These options for one run of `protocol` alone.
    pub fn with_protocol(&self, protocol: ProtocolArg) -> TestOptions {
        TestOptions { protocol: vec![protocol], ..self.clone() }
    }

    /// Checks every option and builds the cluster configuration.
    ///
    /// # Errors
    ///
    /// [`OptionError`] naming the first bad option.
    pub fn cluster_config(&self) -> Result<Config, OptionError> {
        let fail = |option, reason: String| Err(OptionError { option, reason });
        if !(1..=REPLICA_COUNT_MAX).contains(&self.replicas) {
            return fail("replicas", format!("{} is not in 1..=128", self.replicas));
        }
        if !(1..=4096).contains(&self.concurrency) {
            return fail("concurrency", format!("{} is not in 1..=4096", self.concurrency));
        }
        let workload = Workload::from(self.workload);
        let keys_max = match workload {
            Workload::Register => 1 << 20,
            Workload::Bank => READ_ALL_KEYS_MAX as u32,
        };
        let keys_min = if workload == Workload::Bank { 2 } else { 1 };
        if !(keys_min..=keys_max).contains(&self.keys) {
            return fail(
                "keys",
                format!("{} is not in {keys_min}..={keys_max} for {}", self.keys, workload.name()),
            );
        }
        if !(self.time_limit.is_finite() && self.time_limit > 0.0 && self.time_limit <= 86_400.0) {
            return fail("time-limit", format!("{} is not in (0, 86400] seconds", self.time_limit));
        }
        if !(self.op_timeout.is_finite() && self.op_timeout > 0.0 && self.op_timeout <= 600.0) {
            return fail("op-timeout", format!("{} is not in (0, 600] seconds", self.op_timeout));
        }
        if let Some(rate) = self.rate
            && !(rate.is_finite() && rate > 0.0)
        {
            return fail("rate", format!("{rate} is not a positive number of ops/s"));
        }
        if self.test_count == 0 {
            return fail("test-count", "must be at least 1".into());
        }
        if !(1..=BATCH_SIZE_MAX).contains(&self.batch_size) {
            return fail("batch-size", format!("{} is not in 1..=1000", self.batch_size));
        }
        if self.checkpoint_interval.saturating_add(self.window) > LOG_SIZE_MAX {
            return fail(
                "checkpoint-interval",
                format!(
                    "{} plus the window ({}) is more than a replica's log holds ({LOG_SIZE_MAX})",
                    self.checkpoint_interval, self.window
                ),
            );
        }
        if !(self.batch_timeout_ms.is_finite()
            && self.batch_timeout_ms > 0.0
            && self.batch_timeout_ms <= 1000.0)
        {
            return fail(
                "batch-timeout-ms",
                format!("{} is not in (0, 1000]", self.batch_timeout_ms),
            );
        }
        let window = self.liveness_window();
        if !(window.is_finite() && window > 0.0 && window <= 86_400.0) {
            return fail("liveness-window", format!("{window} is not in (0, 86400] seconds"));
        }
        let byzantine_clients = self.byzantine_client_count();
        if byzantine_clients > 64 {
            return fail("byzantine-clients", format!("{byzantine_clients} is not in 0..=64"));
        }
        if let Some(bug) = self.planted_bug
            && !replica::planted::ENABLED
        {
            return fail(
                "planted-bug",
                format!(
                    "{bug}: this ordeal has no planted bugs (build it with `--features \
                     planted-bugs`)"
                ),
            );
        }
        let mut config = Config::new(
            self.protocol().into(),
            self.replicas,
            self.concurrency + byzantine_clients,
        );
        config.batch_size_max = self.batch_size;
        config.batch_timeout = Duration::from_secs_f64(self.batch_timeout_ms / 1000.0);
        config.window = self.window;
        config.partial_batch_in_flight_max = self.partial_batches;
        config.checkpoint_interval = self.checkpoint_interval;
        // The log reaches past the next checkpoint (`Config::validate`), and is twice the
        // checkpoint interval as in Castro–Liskov (L = 2K, PROTOCOL §6), so that a backup whose
        // checkpoint becomes stable a little after the primary's still accepts its proposals.
        let interval = self.checkpoint_interval;
        let reach = interval.saturating_mul(2).max(interval.saturating_add(self.window));
        config.log_size =
            config.log_size.max(self.window.saturating_mul(2)).max(reach.min(LOG_SIZE_MAX));
        config.request_queue_max = config.request_queue_max.max(self.concurrency * 2);
        config.genesis = workload.genesis(self.keys);
        config.planted_bug = self.planted_bug;
        config
            .validate()
            .map_err(|error| OptionError { option: "window", reason: error.to_string() })?;
        let f = config.f() as u8;
        let limit = if self.beyond_budget { f + 1 } else { f };
        let byzantine = self.byzantine_count(&config);
        if byzantine > limit {
            let reason = if self.beyond_budget {
                format!("{byzantine} is more than f + 1 = {limit}")
            } else {
                format!("{byzantine} is more than f = {f} (--beyond-budget allows f + 1)")
            };
            return fail("byzantine", reason);
        }
        if self.twins && byzantine == 0 {
            return fail("twins", "a twin needs a Byzantine replica (--byzantine 1)".into());
        }
        self.schedule_options(&config)?;
        Ok(config)
    }

    /// The faults enabled by `--nemesis`, without repeats.
    pub fn fault_kinds(&self) -> Vec<FaultKind> {
        let mut kinds: Vec<FaultKind> =
            self.nemesis.iter().flat_map(|nemesis| nemesis.fault_kinds()).collect();
        let f = (usize::from(self.replicas.max(1)) - 1) / 3;
        // `mixed` is every kind the run can hold: no Byzantine kinds without a Byzantine
        // replica, no process faults without a budget, no drawn twins beside `--twins`.
        kinds.retain(|kind| {
            let impossible = (kind.needs_byzantine() && self.byzantine == Some(0) && !self.twins)
                || (f == 0 && (kind.is_process() || kind.needs_byzantine()))
                || (*kind == FaultKind::Twins && self.twins);
            !(impossible && self.mixed_only(*kind))
        });
        kinds.sort();
        kinds.dedup();
        kinds
    }

    /// The nemesis's schedule options for a cluster with `config`, or `None` without faults.
    ///
    /// # Errors
    ///
    /// [`OptionError`] when `none` is combined with a fault, or the options make no schedule
    /// (f = 0, the interval out of range, the final heal at time-limit minus liveness-window
    /// not after the start, or no fault before it).
    pub fn schedule_options(
        &self,
        config: &Config,
    ) -> Result<Option<ScheduleOptions>, OptionError> {
        let kinds = self.fault_kinds();
        if kinds.is_empty() {
            return Ok(None);
        }
        if self.nemesis.contains(&NemesisArg::None) {
            return Err(OptionError {
                option: "nemesis",
                reason: "none cannot be combined with faults".into(),
            });
        }
        let interval = self.nemesis_interval();
        if !(interval.is_finite() && interval > 0.0) {
            return Err(OptionError {
                option: "nemesis-interval",
                reason: format!("{interval} is not a positive number of seconds"),
            });
        }
        let options = ScheduleOptions {
            replica_count: config.replica_count,
            f: config.f(),
            kinds,
            byzantine: (0..self.byzantine_count(config)).map(ReplicaId).collect(),
            interval: Duration::from_secs_f64(interval.min(86_400.0)),
            time_limit: Duration::from_secs_f64(self.time_limit),
            liveness_window: Duration::from_secs_f64(self.liveness_window()),
        };
        options.validate().map_err(|error| {
            let option = match error {
                ScheduleError::NoFaultKinds | ScheduleError::InvalidFault { .. } => "nemesis",
                ScheduleError::NoByzantineReplicas { .. } => "byzantine",
                ScheduleError::NoBudget { .. } | ScheduleError::BudgetTooLarge { .. } => "replicas",
                ScheduleError::IntervalOutOfRange { .. }
                | ScheduleError::NoTickBeforeHeal { .. }
                | ScheduleError::TooManyFaults { .. } => "nemesis-interval",
                ScheduleError::NoLivenessWindow | ScheduleError::HealNotAfterStart { .. } => {
                    "liveness-window"
                }
            };
            OptionError { option, reason: error.to_string() }
        })?;
        Ok(Some(options))
    }

    /// Whether `kind` is enabled only through `mixed`.
    fn mixed_only(&self, kind: FaultKind) -> bool {
        self.nemesis
            .iter()
            .all(|nemesis| *nemesis == NemesisArg::Mixed || !nemesis.fault_kinds().contains(&kind))
    }

    /// `--liveness-window`, or its default: 10 s, or a third of the time limit when shorter
    /// (so that a short run still has faults before its final heal).
    pub fn liveness_window(&self) -> f64 {
        self.liveness_window.unwrap_or((self.time_limit / 3.0).min(10.0))
    }

    /// `--nemesis-interval`, or its default: 5 s, or a quarter of the time before the final
    /// heal when shorter (never below the shortest interval).
    pub fn nemesis_interval(&self) -> f64 {
        self.nemesis_interval.unwrap_or_else(|| {
            let heal = self.time_limit - self.liveness_window();
            (heal / 4.0).clamp(nemesis::schedule::INTERVAL_MIN.as_secs_f64(), 5.0)
        })
    }

    /// The options with the defaults that follow from the seed resolved: with `mixed` and no
    /// `--byzantine`, the number of Byzantine replicas is drawn from 0..=f, so that some seeds
    /// exercise Byzantine replicas and others crash and pause honest ones.
    pub fn resolved(&self, seed: u64) -> TestOptions {
        let mut options = self.clone();
        let mixed_decides = self.nemesis.contains(&NemesisArg::Mixed)
            && !self
                .nemesis
                .iter()
                .any(|nemesis| matches!(nemesis, NemesisArg::Byzantine | NemesisArg::Twins))
            && !self.twins
            && !self.beyond_budget;
        if self.byzantine.is_none() && mixed_decides {
            let f = (u64::from(self.replicas.max(1)) - 1) / 3;
            let draw = history::seeds::byzantine_count_draw(seed);
            options.byzantine = Some(((draw >> 33) % (f + 1)) as u8);
        }
        options
    }

    /// How many replicas the run declares Byzantine (`--byzantine`, or its default).
    pub fn byzantine_count(&self, config: &Config) -> u8 {
        let f = config.f() as u8;
        let limit = if self.beyond_budget { f + 1 } else { f };
        let wanted = self.fault_kinds().iter().any(|kind| kind.needs_byzantine()) || self.twins;
        self.byzantine.unwrap_or(if wanted || self.beyond_budget { limit } else { 0 })
    }

    /// How many Byzantine client processes the run adds (`--byzantine-clients`, or its
    /// default).
    pub fn byzantine_client_count(&self) -> u32 {
        let mixed = self.nemesis.contains(&NemesisArg::Mixed);
        self.byzantine_clients.unwrap_or(if mixed { 1 } else { 0 })
    }

    /// The test's name in the store: protocol, workload and nemesis.
    pub fn test_name(&self) -> String {
        let protocol = Protocol::from(self.protocol()).name();
        let mut nemesis: Vec<&str> = Vec::new();
        for name in self.nemesis.iter().map(|nemesis| nemesis.name()) {
            if !nemesis.contains(&name) {
                nemesis.push(name);
            }
        }
        format!("{protocol}-{}-{}", Workload::from(self.workload).name(), nemesis.join("+"))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::{Cli, Command, TestOptions};
    use replica::planted::PlantedBug;

    fn parse(args: &[&str]) -> Result<TestOptions, clap::Error> {
        let cli = Cli::try_parse_from(["ordeal", "test"].iter().chain(args))?;
        match cli.command {
            Command::Test(options) => Ok(options),
            other => panic!("not a test: {other:?}"),
        }
    }

    /// `--planted-bug NAME`: an unknown name is a usage error (exit 3, the known names
    /// listed); a known one goes into the cluster configuration (so to the clients and, through
    /// `NodeConfig::planted_bug`, the honest replicas) and into `test.toml`'s options, unless
    /// this `ordeal` lacks the `planted-bugs` feature: then it is an option error (exit 3).
    #[test]
    fn planted_bug_option() {
        let unknown = parse(&["--planted-bug", "no-such-bug"]).expect_err("unknown name");
        assert!(unknown.use_stderr(), "a usage error: exit 3");
        assert!(unknown.to_string().contains("first-seen-wins"), "{unknown}");

        let none = parse(&[]).expect("no planted bug");
        assert_eq!(none.planted_bug, None);
        assert_eq!(none.cluster_config().expect("valid").planted_bug, None);
        assert!(!toml::to_string(&none).unwrap().contains("planted_bug"));

        for bug in PlantedBug::ALL {
            let options = parse(&["--planted-bug", bug.name()]).expect("a known name");
            assert_eq!(options.planted_bug, Some(bug));
            let recorded = toml::to_string(&options).unwrap();
            assert!(recorded.contains(&format!("planted_bug = \"{bug}\"")), "{recorded}");
            let back: TestOptions = toml::from_str(&recorded).unwrap();
            assert_eq!(back.planted_bug, Some(bug));
            match (options.cluster_config(), replica::planted::ENABLED) {
                (Ok(config), true) => assert_eq!(config.planted_bug, Some(bug)),
                (Err(error), false) => {
                    assert_eq!(error.option, "planted-bug");
                    assert!(error.reason.contains("--features planted-bugs"), "{error}");
                }
                (result, enabled) => panic!("{result:?} in a build with planted bugs {enabled}"),
            }
        }
    }
}
