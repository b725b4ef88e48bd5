//! `ordeal sim --seed S --shrink`: delta-debugs a failing seed down to a small scenario.
//!
//! The failing run is first written as an explicit scenario: its cluster and workload, its
//! seed, and every fault that started with the replicas it resolved to (so that removing one
//! fault does not move the others' targets). Then, greedily, the shrinker tries smaller
//! candidates and keeps the first that still makes the same oracle INVALID: each fault removed,
//! each Byzantine behaviour of a fault removed, each fault halved, each fault started later,
//! half the clients, a shorter run (the heal right after the last fault), a declared Byzantine
//! replica no fault uses made honest. It stops when no candidate fails any more or after
//! `--shrink-runs` runs ([`RUNS_MAX`] by default). The result is a scenario TOML that `ordeal
//! sim --scenario` replays deterministically and `ordeal test --scenario` replays on real
//! processes.

use std::path::PathBuf;

use anyhow::Context as _;
use history::Verdict;
use nemesis::TimelineEntry;
use nemesis::timeline::TargetEntry;

use super::{SimParams, Simulated, simulate_with};
use crate::cli::{SimArgs, TestOptions};
use crate::scenario::{ClusterSection, Expect, ExpectedVerdict, Scenario, WorkloadSection};

/// The most runs one shrink makes by default (`--shrink-runs`).
pub const RUNS_MAX: usize = 400;

/// The shortest fault the shrinker makes, in seconds.
const FAULT_MIN_S: f64 = 0.2;

/// What a shrink came to.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The smallest failing scenario found.
    pub scenario: Scenario,
    /// The oracle it fails.
    pub oracle: String,
    /// Runs made.
    pub runs: usize,
    /// Faults before and after.
    pub faults: (usize, usize),
}

/// The run of `simulated` as an explicit scenario expecting `invalid`.
pub fn scenario_of(simulated: &Simulated, oracle: &str) -> Scenario {
    let options = &simulated.options;
    let timeline = simulated
        .timeline
        .iter()
        .enumerate()
        .filter_map(|(index, entry)| {
            let targets = simulated.nemesis.targets.get(&index)?;
            let mut entry = entry.clone();
            entry.target = Some(TargetEntry::Replicas(targets.clone()));
            entry.size = None;
            Some(entry)
        })
        .collect();
    let planted = simulated
        .config
        .planted_bug
        .map(|bug| format!(" with planted bug {bug} (replay with --planted-bug {bug})"))
        .unwrap_or_default();
    // The planted bug is in the name too: two bugs failing one seed must not share a file.
    let bug = simulated.config.planted_bug.map(|bug| format!("-{bug}")).unwrap_or_default();
    Scenario {
        name: format!("shrunk-{}-s{}{bug}", simulated.name, simulated.seed),
        description: format!(
            "Shrunk by `ordeal sim --shrink` from seed {} of {}{planted}: {oracle} is INVALID.",
            simulated.seed, simulated.name
        ),
        seed: Some(simulated.seed),
        cluster: ClusterSection {
            protocol: options.protocol.first().copied(),
            replicas: Some(options.replicas),
            byzantine: simulated.byzantine.iter().map(|replica| replica.0).collect(),
            beyond_budget: options.beyond_budget,
            batch_size: Some(options.batch_size),
            window: Some(options.window),
            checkpoint_interval: Some(options.checkpoint_interval),
        },
        workload: WorkloadSection {
            workload: Some(options.workload),
            keys: Some(options.keys),
            concurrency: Some(options.concurrency),
            byzantine_clients: Some(0),
            rate: options.rate,
            time_limit: Some(options.time_limit),
            op_timeout: Some(options.op_timeout),
            liveness_window: Some(options.liveness_window()),
        },
        timeline,
        expect: Expect { verdict: ExpectedVerdict::Invalid },
    }
}

/// Whether `scenario` still makes `oracle` INVALID.
fn fails(
    options: &TestOptions,
    scenario: &Scenario,
    network: SimParams,
    seed: u64,
    oracle: &str,
) -> bool {
    let Ok(simulated) = simulate_with(options, Some(scenario.clone()), network, seed) else {
        return false;
    };
    let report = simulated.judge();
    report.checkers.get(oracle).is_some_and(|result| result.verdict == Verdict::Invalid)
}

/// Smaller scenarios than `scenario`, the most promising first.
fn candidates(scenario: &Scenario) -> Vec<Scenario> {
    let mut out = Vec::new();
    let timeline = &scenario.timeline;
    for index in (0..timeline.len()).rev() {
        let mut smaller = scenario.clone();
        smaller.timeline.remove(index);
        out.push(smaller);
    }
    for (index, entry) in timeline.iter().enumerate() {
        for behaviour in 0..entry.behaviours.len().saturating_sub(1) {
            let mut smaller = scenario.clone();
            smaller.timeline[index].behaviours.remove(behaviour);
            out.push(smaller);
        }
    }
    for (index, entry) in timeline.iter().enumerate() {
        let length = entry.until - entry.at;
        if length / 2.0 >= FAULT_MIN_S {
            let mut shorter = scenario.clone();
            shorter.timeline[index].until = entry.at + length / 2.0;
            out.push(shorter);
            let mut later = scenario.clone();
            later.timeline[index].at = entry.at + length / 2.0;
            out.push(later);
        }
    }
    if let Some(concurrency) = scenario.workload.concurrency.filter(|clients| *clients > 1) {
        let mut fewer = scenario.clone();
        fewer.workload.concurrency = Some(concurrency / 2);
        out.push(fewer);
    }
    if let (Some(limit), Some(window)) =
        (scenario.workload.time_limit, scenario.workload.liveness_window)
    {
        let last_end = timeline.iter().map(|entry| entry.until).fold(0.0, f64::max);
        let shorter = (last_end + window).max(window + 1.0);
        if shorter + 0.5 < limit {
            let mut short = scenario.clone();
            short.workload.time_limit = Some(shorter);
            out.push(short);
        }
    }
    let used: Vec<u8> = timeline
        .iter()
        .filter(|entry| matches!(entry.fault.as_str(), "byzantine" | "force-view-change"))
        .flat_map(|entry| match &entry.target {
            Some(TargetEntry::Replicas(replicas)) => replicas.clone(),
            _ => Vec::new(),
        })
        .collect();
    for replica in &scenario.cluster.byzantine {
        if !used.contains(replica) {
            let mut honest = scenario.clone();
            honest.cluster.byzantine.retain(|other| other != replica);
            out.push(honest);
        }
    }
    out
}

/// Shrinks the failure of `seed`; `None` when the seed does not fail (INVALID).
///
/// # Errors
///
/// Options that cannot make a run.
pub fn shrink(args: &SimArgs, network: SimParams, seed: u64) -> anyhow::Result<Option<Shrunk>> {
    let runs_max = args.shrink_runs.max(2);
    let scenario = args.test.scenario.as_deref().map(Scenario::load).transpose()?;
    let simulated = simulate_with(&args.test, scenario, network, seed)?;
    let report = simulated.judge();
    let Some(oracle) = report
        .checkers
        .iter()
        .find(|(_, result)| result.verdict == Verdict::Invalid)
        .map(|(name, _)| name.clone())
    else {
        return Ok(None);
    };
    let mut options = args.test.clone();
    options.scenario = None;
    let mut current = scenario_of(&simulated, &oracle);
    let before = current.timeline.len();
    let mut runs = 1;
    anyhow::ensure!(
        fails(&options, &current, network, seed, &oracle),
        "seed {seed} does not fail {oracle} again when replayed as a scenario with explicit \
         targets: nothing to shrink"
    );
    runs += 1;
    // Bounded: `runs_max` runs at most.
    'shrinking: while runs < runs_max {
        for candidate in candidates(&current) {
            if runs >= runs_max {
                break 'shrinking;
            }
            runs += 1;
            if fails(&options, &candidate, network, seed, &oracle) {
                current = candidate;
                continue 'shrinking;
            }
        }
        break;
    }
    let after = current.timeline.len();
    Ok(Some(Shrunk { scenario: current, oracle, runs, faults: (before, after) }))
}

/// Runs `--shrink` for one seed: prints and writes the shrunk scenario; the exit code is 1 when
/// a failure was shrunk, 0 when the seed did not fail.
///
/// # Errors
///
/// Options that cannot make a run, or a file that cannot be written.
pub fn run(args: &SimArgs, network: SimParams, seed: u64) -> anyhow::Result<u8> {
    let Some(shrunk) = shrink(args, network, seed)? else {
        println!("seed {seed} is not INVALID: nothing to shrink");
        return Ok(0);
    };
    let directory = args.test.store.join("shrunk");
    std::fs::create_dir_all(&directory)
        .with_context(|| format!("creating {}", directory.display()))?;
    let path: PathBuf = directory.join(format!("{}.toml", shrunk.scenario.name));
    let text = toml::to_string(&shrunk.scenario).context("serializing the scenario")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    let planted =
        args.test.planted_bug.map(|bug| format!(" --planted-bug {bug}")).unwrap_or_default();
    println!(
        "seed {seed}: {} INVALID; shrunk in {} runs from {} faults to {}:",
        shrunk.oracle, shrunk.runs, shrunk.faults.0, shrunk.faults.1
    );
    for entry in &shrunk.scenario.timeline {
        println!("  {}", describe(entry));
    }
    println!("  written to {}", path.display());
    println!("  replay:           ordeal sim --scenario {}{planted}", path.display());
    println!("  on real replicas: ordeal test --scenario {}{planted}", path.display());
    Ok(1)
}

fn describe(entry: &TimelineEntry) -> String {
    let target = match &entry.target {
        Some(TargetEntry::Replicas(replicas)) => format!("{replicas:?}"),
        Some(TargetEntry::Named(name)) => name.clone(),
        None => "random".into(),
    };
    let behaviours = if entry.behaviours.is_empty() {
        String::new()
    } else {
        format!(" {}", entry.behaviours.join("+"))
    };
    format!("{:.2}..{:.2} s {} {target}{behaviours}", entry.at, entry.until, entry.fault)
}
