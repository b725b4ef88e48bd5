//! The command line (clap).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use nemesis::{FaultKind, ScheduleError, ScheduleOptions};
use replica::core::config::{BATCH_SIZE_MAX, READ_ALL_KEYS_MAX, REPLICA_COUNT_MAX};
use replica::core::{Config, Protocol};
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
}

impl From<ProtocolArg> for Protocol {
    fn from(protocol: ProtocolArg) -> Protocol {
        match protocol {
            ProtocolArg::PoeTs => Protocol::PoeTs,
            ProtocolArg::PoeMac => Protocol::PoeMac,
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

/// Fault injection (more kinds arrive with the nemesis issues).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisArg {
    /// No faults.
    None,
    /// SIGKILL replicas, then start them again.
    Kill,
    /// SIGSTOP replicas, then SIGCONT them.
    Pause,
}

impl NemesisArg {
    /// The name on the command line and in the test's name.
    pub fn name(self) -> &'static str {
        match self {
            NemesisArg::None => "none",
            NemesisArg::Kill => "kill",
            NemesisArg::Pause => "pause",
        }
    }

    /// The process fault it enables, if any.
    pub fn fault_kind(self) -> Option<FaultKind> {
        match self {
            NemesisArg::None => None,
            NemesisArg::Kill => Some(FaultKind::Kill),
            NemesisArg::Pause => Some(FaultKind::Pause),
        }
    }
}

/// Options of `ordeal test`.
#[derive(Debug, Clone, Args, Serialize, Deserialize)]
pub struct TestOptions {
    /// The protocol.
    #[arg(long, value_enum, default_value_t = ProtocolArg::PoeTs)]
    pub protocol: ProtocolArg,
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
    /// Fault injection, a comma-separated list (`kill,pause`).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "none")]
    pub nemesis: Vec<NemesisArg>,
    /// Seconds between fault starts; each fault lasts a quarter to three quarters of it.
    #[arg(long, default_value_t = 5.0)]
    pub nemesis_interval: f64,
    /// Seconds the run goes on after the nemesis's final heal (at time-limit minus this),
    /// within which the cluster must make progress.
    #[arg(long, default_value_t = 10.0)]
    pub liveness_window: f64,
    /// The most requests per proposal.
    #[arg(long, default_value_t = 100)]
    pub batch_size: u32,
    /// Milliseconds the primary waits for a batch to fill.
    #[arg(long, default_value_t = 1.0)]
    pub batch_timeout_ms: f64,
    /// The most slots the primary has in flight.
    #[arg(long, default_value_t = 32)]
    pub window: u64,
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

impl TestOptions {
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
        if !(self.batch_timeout_ms.is_finite()
            && self.batch_timeout_ms > 0.0
            && self.batch_timeout_ms <= 1000.0)
        {
            return fail(
                "batch-timeout-ms",
                format!("{} is not in (0, 1000]", self.batch_timeout_ms),
            );
        }
        if !(self.liveness_window.is_finite()
            && self.liveness_window > 0.0
            && self.liveness_window <= 86_400.0)
        {
            return fail(
                "liveness-window",
                format!("{} is not in (0, 86400] seconds", self.liveness_window),
            );
        }
        let mut config = Config::new(self.protocol.into(), self.replicas, self.concurrency);
        config.batch_size_max = self.batch_size;
        config.batch_timeout = Duration::from_secs_f64(self.batch_timeout_ms / 1000.0);
        config.window = self.window;
        config.log_size = config.log_size.max(self.window.saturating_mul(2));
        config.request_queue_max = config.request_queue_max.max(self.concurrency * 2);
        config.genesis = workload.genesis(self.keys);
        config
            .validate()
            .map_err(|error| OptionError { option: "window", reason: error.to_string() })?;
        self.schedule_options(&config)?;
        Ok(config)
    }

    /// The process faults enabled by `--nemesis`, without repeats.
    pub fn fault_kinds(&self) -> Vec<FaultKind> {
        let mut kinds: Vec<FaultKind> =
            self.nemesis.iter().filter_map(|nemesis| nemesis.fault_kind()).collect();
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
        if !(self.nemesis_interval.is_finite() && self.nemesis_interval > 0.0) {
            return Err(OptionError {
                option: "nemesis-interval",
                reason: format!("{} is not a positive number of seconds", self.nemesis_interval),
            });
        }
        let options = ScheduleOptions {
            replica_count: config.replica_count,
            f: config.f(),
            kinds,
            interval: Duration::from_secs_f64(self.nemesis_interval.min(86_400.0)),
            time_limit: Duration::from_secs_f64(self.time_limit),
            liveness_window: Duration::from_secs_f64(self.liveness_window),
        };
        options.validate().map_err(|error| {
            let option = match error {
                ScheduleError::NoFaultKinds => "nemesis",
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

    /// The test's name in the store: protocol, workload and nemesis.
    pub fn test_name(&self) -> String {
        let protocol = Protocol::from(self.protocol).name();
        let mut nemesis: Vec<&str> = Vec::new();
        for name in self.nemesis.iter().map(|nemesis| nemesis.name()) {
            if !nemesis.contains(&name) {
                nemesis.push(name);
            }
        }
        format!("{protocol}-{}-{}", Workload::from(self.workload).name(), nemesis.join("+"))
    }
}
