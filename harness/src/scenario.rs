//! Scenario files (`ordeal test --scenario FILE`): an attack written down, runnable by anyone.
//!
//! ```toml
//! # What attack this reproduces, in a comment.
//! name = "equivocating-primary"
//! description = "The view-0 primary sends different batches for one slot to different replicas."
//!
//! [cluster]
//! protocol = "poe-mac"      # poe-ts, poe-mac, pbft (`--protocol` overrides it)
//! replicas = 4
//! byzantine = [0]           # the replicas declared Byzantine (default: none)
//! beyond_budget = false     # allow f + 1 Byzantine replicas
//!
//! [workload]
//! workload = "register"     # register, bank
//! keys = 4
//! concurrency = 8
//! byzantine_clients = 0
//! time_limit = 20.0
//! liveness_window = 8.0
//!
//! [[timeline]]              # nemesis::timeline: at, until, fault, target, parameters
//! at = 2.0
//! until = 10.0
//! fault = "byzantine"
//! target = [0]
//! behaviours = ["equivocate"]
//!
//! [expect]
//! verdict = "valid"         # valid, invalid, unknown
//! ```
//!
//! Every field but `name`, `timeline` and `expect` has the command line's default. The
//! scenario's settings replace the command line's; the seed still comes from `--seed` (or is
//! drawn), so one scenario runs under many seeds.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use history::Verdict;
use nemesis::{Schedule, TimelineEntry};
use replica::core::ReplicaId;
use serde::{Deserialize, Serialize};

use crate::cli::{NemesisArg, ProtocolArg, TestOptions, WorkloadArg};

/// The largest scenario file read.
const SCENARIO_BYTES_MAX: u64 = 1 << 20;

/// A scenario file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name (the test's name in the store).
    pub name: String,
    /// What attack it reproduces.
    #[serde(default)]
    pub description: String,
    /// The seed it replays with (a shrunk simulation's); `--seed` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// The cluster.
    #[serde(default)]
    pub cluster: ClusterSection,
    /// The workload.
    #[serde(default)]
    pub workload: WorkloadSection,
    /// The faults, in any order; they may overlap.
    #[serde(default)]
    pub timeline: Vec<TimelineEntry>,
    /// The expected verdict.
    pub expect: Expect,
}

/// `[cluster]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterSection {
    /// The protocol.
    pub protocol: Option<ProtocolArg>,
    /// n.
    pub replicas: Option<u8>,
    /// The replicas declared Byzantine.
    #[serde(default)]
    pub byzantine: Vec<u8>,
    /// Whether f + 1 Byzantine replicas are allowed.
    #[serde(default)]
    pub beyond_budget: bool,
    /// The most requests per proposal.
    pub batch_size: Option<u32>,
    /// The most slots in flight.
    pub window: Option<u64>,
    /// Slots between checkpoints.
    pub checkpoint_interval: Option<u64>,
}

/// `[workload]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadSection {
    /// The workload.
    pub workload: Option<WorkloadArg>,
    /// Registers or accounts.
    pub keys: Option<u32>,
    /// Correct client processes.
    pub concurrency: Option<u32>,
    /// Byzantine client processes.
    pub byzantine_clients: Option<u32>,
    /// Invocations per second over all clients.
    pub rate: Option<f64>,
    /// Seconds the workload runs.
    pub time_limit: Option<f64>,
    /// Seconds an operation may take.
    pub op_timeout: Option<f64>,
    /// Seconds after the final heal within which the cluster must make progress.
    pub liveness_window: Option<f64>,
}

/// `[expect]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// The verdict the run must reach.
    pub verdict: ExpectedVerdict,
}

/// A verdict as written in a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExpectedVerdict {
    /// Valid.
    Valid,
    /// Invalid.
    Invalid,
    /// Unknown.
    Unknown,
}

impl From<ExpectedVerdict> for Verdict {
    fn from(verdict: ExpectedVerdict) -> Verdict {
        match verdict {
            ExpectedVerdict::Valid => Verdict::Valid,
            ExpectedVerdict::Invalid => Verdict::Invalid,
            ExpectedVerdict::Unknown => Verdict::Unknown,
        }
    }
}

impl Scenario {
    /// Reads and checks a scenario file.
    ///
    /// # Errors
    ///
    /// When the file cannot be read, is not a scenario (the TOML error names the line), or a
    /// timeline entry is bad (named by its position).
    pub fn load(path: &Path) -> anyhow::Result<Scenario> {
        let size = std::fs::metadata(path)
            .with_context(|| format!("reading scenario {}", path.display()))?
            .len();
        anyhow::ensure!(
            size <= SCENARIO_BYTES_MAX,
            "scenario {} is {size} bytes, more than {SCENARIO_BYTES_MAX}",
            path.display()
        );
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading scenario {}", path.display()))?;
        let scenario: Scenario =
            toml::from_str(&text).with_context(|| format!("scenario {}", path.display()))?;
        let replicas = scenario.cluster.replicas.unwrap_or(4);
        let mut declared = scenario.cluster.byzantine.clone();
        declared.sort_unstable();
        declared.dedup();
        anyhow::ensure!(
            declared.len() == scenario.cluster.byzantine.len(),
            "scenario {}: a Byzantine replica is listed twice",
            path.display()
        );
        if let Some(replica) = declared.iter().find(|replica| **replica >= replicas) {
            anyhow::bail!(
                "scenario {}: Byzantine replica {replica} is not one of the {replicas} replicas",
                path.display()
            );
        }
        for (index, entry) in scenario.timeline.iter().enumerate() {
            entry.to_fault().map_err(|reason| {
                anyhow::anyhow!("scenario {}: timeline entry {index}: {reason}", path.display())
            })?;
        }
        Ok(scenario)
    }

    /// `options` with this scenario's settings.
    pub fn apply(&self, options: &TestOptions) -> TestOptions {
        let mut options = options.clone();
        let cluster = &self.cluster;
        let workload = &self.workload;
        // An explicit `--protocol` overrides the scenario's.
        if options.protocol.is_empty() {
            options.protocol = cluster.protocol.into_iter().collect();
        }
        options.replicas = cluster.replicas.unwrap_or(options.replicas);
        options.byzantine = Some(cluster.byzantine.len() as u8);
        options.beyond_budget = cluster.beyond_budget;
        options.batch_size = cluster.batch_size.unwrap_or(options.batch_size);
        options.window = cluster.window.unwrap_or(options.window);
        options.checkpoint_interval =
            cluster.checkpoint_interval.unwrap_or(options.checkpoint_interval);
        options.workload = workload.workload.unwrap_or(options.workload);
        options.keys = workload.keys.unwrap_or(options.keys);
        options.concurrency = workload.concurrency.unwrap_or(options.concurrency);
        options.byzantine_clients = Some(workload.byzantine_clients.unwrap_or(0));
        options.rate = workload.rate.or(options.rate);
        options.time_limit = workload.time_limit.unwrap_or(options.time_limit);
        options.op_timeout = workload.op_timeout.unwrap_or(options.op_timeout);
        options.liveness_window = workload.liveness_window.or(options.liveness_window);
        // The timeline replaces the drawn schedule.
        options.nemesis = vec![NemesisArg::None];
        options.twins = false;
        options
    }

    /// The declared Byzantine replicas.
    pub fn byzantine(&self) -> Vec<ReplicaId> {
        self.cluster.byzantine.iter().copied().map(ReplicaId).collect()
    }

    /// The scenario's schedule for a cluster of `replica_count` with budget `f`, healing at
    /// `time_limit − liveness_window`.
    ///
    /// # Errors
    ///
    /// When a fault is malformed, ends after the heal, or names a replica outside the cluster.
    pub fn schedule(
        &self,
        replica_count: u8,
        f: usize,
        time_limit: Duration,
        liveness_window: Duration,
    ) -> anyhow::Result<Schedule> {
        let heal = time_limit.saturating_sub(liveness_window);
        let faults = self
            .timeline
            .iter()
            .map(TimelineEntry::to_fault)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| anyhow::anyhow!("scenario {}: {reason}", self.name))?;
        Schedule::from_timeline(faults, heal, f, replica_count)
            .with_context(|| format!("scenario {}", self.name))
    }
}
