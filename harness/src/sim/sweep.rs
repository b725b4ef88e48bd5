//! `ordeal sim` on the command line: one seed (stored, summarised), a determinism check, or a
//! sweep over a range of seeds on several threads, optionally one shard of it.
//!
//! A sweep judges every seed in memory and stores only the failures; it prints each failing
//! seed as it is found, with the one command that reproduces it, and at the end the figures
//! (seeds per second, operations and view changes per seed, simulated seconds per wall second,
//! packets per second). Every seed is independent, so the outcomes do not depend on `--jobs`.

#![allow(clippy::disallowed_methods, reason = "a sweep reports its wall-clock speed")]

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Instant;

use history::Verdict;

use super::{SeedOutcome, SimParams, Simulated, simulate};
use crate::cli::SimArgs;
use crate::results::{print_summary, verdict_name};

/// The most seeds one sweep runs.
pub const SEEDS_MAX: u64 = 1 << 32;

/// A range of seeds, `A..B` (B excluded).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedRange {
    /// The first seed.
    pub start: u64,
    /// One past the last seed.
    pub end: u64,
}

impl FromStr for SeedRange {
    type Err = String;

    fn from_str(text: &str) -> Result<SeedRange, String> {
        let (start, end) = text
            .split_once("..")
            .ok_or_else(|| format!("{text:?} is not a range A..B (B excluded)"))?;
        let number = |part: &str| {
            part.trim().parse::<u64>().map_err(|_| format!("{part:?} in {text:?} is not a seed"))
        };
        let (start, end) = (number(start)?, number(end)?);
        if end <= start {
            return Err(format!("{text:?} is empty: B must be greater than A"));
        }
        if end - start > SEEDS_MAX {
            return Err(format!("{text:?} has more than {SEEDS_MAX} seeds"));
        }
        Ok(SeedRange { start, end })
    }
}

impl fmt::Display for SeedRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

/// One shard of a sweep, `K/N` with K in 0..N: the seeds whose index in the range is K modulo
/// N (a CI matrix or a Kubernetes Indexed Job runs each shard as a process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// K.
    pub index: u64,
    /// N.
    pub count: u64,
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Shard, String> {
        let (index, count) =
            text.split_once('/').ok_or_else(|| format!("{text:?} is not a shard K/N"))?;
        let number = |part: &str| {
            part.trim().parse::<u64>().map_err(|_| format!("{part:?} in {text:?} is not a number"))
        };
        let (index, count) = (number(index)?, number(count)?);
        if count == 0 || index >= count {
            return Err(format!("{text:?}: K must be in 0..N and N at least 1"));
        }
        Ok(Shard { index, count })
    }
}

/// Runs `ordeal sim` and returns its exit code (0 valid, 1 invalid, 2 unknown).
///
/// # Errors
///
/// Options that cannot make a run, or a store that cannot be written.
pub fn run(args: &SimArgs) -> anyhow::Result<u8> {
    let network = SimParams::of(args);
    network.validate()?;
    if let Some(range) = args.seeds {
        return sweep(args, range, network);
    }
    let scenario_seed = match &args.test.scenario {
        Some(path) => crate::scenario::Scenario::load(path)?.seed,
        None => None,
    };
    let seed = args.test.seed.or(scenario_seed).unwrap_or(1);
    anyhow::ensure!(
        args.test.junit.is_none() || !(args.shrink || args.check_determinism),
        "--junit reports runs and sweeps, not --shrink or --check-determinism"
    );
    anyhow::ensure!(args.coverage.is_none(), "--coverage sums a sweep: give --seeds A..B");
    if args.shrink {
        return super::shrink::run(args, network, seed);
    }
    if args.check_determinism {
        return check_determinism(args, network, seed);
    }
    let started = Instant::now();
    let simulated = simulate(&args.test, network, seed)?;
    let (run, report) = simulated.store(&args.test.store, network)?;
    crate::site::write_index_or_warn(&args.test.store);
    if let Some(path) = &args.test.junit {
        let case = crate::junit::run_case(
            &run.run_dir,
            format!("{} seed {seed}", run.name),
            JUNIT_CLASSNAME,
            started.elapsed().as_secs_f64(),
            &reproduce_command(seed),
        )?;
        crate::junit::Report::single(JUNIT_CLASSNAME, vec![case]).write_file(path)?;
    }
    print_summary(&run, &report);
    let outcome = simulated.outcome(&report);
    println!(
        "  simulated {:.1} s, {} packets delivered, {} view changes",
        outcome.simulated_s, outcome.world.delivered, outcome.view_changes
    );
    Ok(exit_code(report.verdict))
}

fn exit_code(verdict: Verdict) -> u8 {
    verdict.exit_code() as u8
}

/// Runs `seed` twice and compares the histories and ledgers line by line.
fn check_determinism(args: &SimArgs, network: SimParams, seed: u64) -> anyhow::Result<u8> {
    let first = simulate(&args.test, network, seed)?.fingerprint();
    let second = simulate(&args.test, network, seed)?.fingerprint();
    match first_difference(&first, &second) {
        None => {
            let lines: usize = first.0.len() + first.1.values().map(Vec::len).sum::<usize>();
            println!("seed {seed}: deterministic ({lines} history and ledger lines identical)");
            Ok(0)
        }
        Some(difference) => {
            println!("seed {seed}: NOT deterministic: {difference}");
            Ok(1)
        }
    }
}

type Fingerprint = (Vec<String>, std::collections::BTreeMap<u8, Vec<String>>);

/// The first line where two runs differ, described.
pub fn first_difference(first: &Fingerprint, second: &Fingerprint) -> Option<String> {
    let compare = |what: &str, a: &[String], b: &[String]| -> Option<String> {
        let index = a
            .iter()
            .zip(b)
            .position(|(x, y)| x != y)
            .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))?;
        let line = |lines: &[String]| lines.get(index).cloned().unwrap_or_else(|| "(end)".into());
        Some(format!("{what} line {}:\n  first:  {}\n  second: {}", index + 1, line(a), line(b)))
    };
    if let Some(difference) = compare("history", &first.0, &second.0) {
        return Some(difference);
    }
    for (replica, lines) in &first.1 {
        let other = second.1.get(replica).map(Vec::as_slice).unwrap_or_default();
        if let Some(difference) = compare(&format!("ledger of replica {replica}"), lines, other) {
            return Some(difference);
        }
    }
    None
}

/// The command that reproduces `seed` of this sweep: the same arguments, without the sweep's
/// (and without `--junit`).
pub fn reproduce_command(seed: u64) -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    crate::cli::reproduce_command(&args, seed, None)
}

/// The suite and class name of `ordeal sim`'s JUnit cases.
const JUNIT_CLASSNAME: &str = "ordeal.sim";

/// What the sweep's threads send back.
struct Finished {
    outcome: SeedOutcome,
    stored: Option<String>,
    /// The test's name.
    name: String,
    /// Wall-clock seconds the seed took.
    time_s: f64,
}

fn sweep(args: &SimArgs, range: SeedRange, network: SimParams) -> anyhow::Result<u8> {
    // Fail on bad options once, before any thread starts.
    simulate_check(args)?;
    let shard = args.shard.unwrap_or(Shard { index: 0, count: 1 });
    let seeds: Vec<u64> = (range.start..range.end)
        .filter(|seed| (seed - range.start) % shard.count == shard.index)
        .collect();
    let jobs = args.jobs.clamp(1, 64);
    let next = AtomicU64::new(0);
    let stop = AtomicBool::new(false);
    let started = Instant::now();
    let bar = (!args.test.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| {
            let bar = indicatif::ProgressBar::new(seeds.len() as u64);
            let style = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} seeds {per_sec} {msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
    let (sender, receiver) = mpsc::channel::<anyhow::Result<Finished>>();
    let mut outcomes = Vec::with_capacity(seeds.len());
    let mut failures = 0u64;
    // The JUnit cases: one per failing seed or harness error (the passing seeds are one case,
    // added at the end).
    let mut cases = Vec::new();
    let mut valid_time_s = 0.0;
    std::thread::scope(|scope| {
        for _ in 0..jobs {
            let sender = sender.clone();
            let (seeds, next, stop) = (&seeds, &next, &stop);
            scope.spawn(move || {
                // Bounded: each iteration takes one seed of `seeds`.
                while !stop.load(Ordering::Relaxed) {
                    let index = next.fetch_add(1, Ordering::Relaxed) as usize;
                    let Some(&seed) = seeds.get(index) else { break };
                    let result = run_seed(args, network, seed);
                    if sender.send(result).is_err() {
                        break;
                    }
                }
            });
        }
        drop(sender);
        for result in receiver {
            let finished = match result {
                Ok(finished) => finished,
                Err(error) => {
                    stop.store(true, Ordering::Relaxed);
                    eprintln!("ordeal sim: {error:#}");
                    let case = crate::junit::Case {
                        name: format!("harness error {}", cases.len() + 1),
                        classname: JUNIT_CLASSNAME.into(),
                        time_s: 0.0,
                        outcome: crate::junit::Outcome::Errored {
                            message: format!("{error}"),
                            text: format!("{error:#}"),
                        },
                    };
                    cases.push((u64::MAX, case));
                    continue;
                }
            };
            let outcome = finished.outcome;
            if outcome.verdict == Verdict::Valid {
                valid_time_s += finished.time_s;
            } else {
                let case = crate::junit::Case {
                    name: format!("{} seed {}", finished.name, outcome.seed),
                    classname: JUNIT_CLASSNAME.into(),
                    time_s: finished.time_s,
                    outcome: crate::junit::failure(
                        verdict_name(outcome.verdict),
                        None,
                        &outcome.failing,
                        finished.stored.as_deref().unwrap_or_default(),
                        &reproduce_command(outcome.seed),
                    ),
                };
                cases.push((outcome.seed, case));
            }
            if outcome.verdict != Verdict::Valid {
                failures += 1;
                let line = format!(
                    "seed {} {}: {}{}\n  reproduce: {}",
                    outcome.seed,
                    verdict_name(outcome.verdict),
                    outcome.failing.join(", "),
                    finished.stored.map(|dir| format!(" (stored in {dir})")).unwrap_or_default(),
                    reproduce_command(outcome.seed)
                );
                match &bar {
                    Some(bar) => bar.println(line),
                    None => println!("{line}"),
                }
                if args.stop_on_failure && outcome.verdict == Verdict::Invalid {
                    stop.store(true, Ordering::Relaxed);
                }
            }
            if let Some(bar) = &bar {
                bar.inc(1);
                bar.set_message(format!("{failures} failed"));
            }
            outcomes.push(outcome);
        }
    });
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    outcomes.sort_by_key(|outcome| outcome.seed);
    if outcomes.iter().any(|outcome| outcome.verdict != Verdict::Valid) {
        crate::site::write_index_or_warn(&args.test.store);
    }
    print_sweep_summary(&outcomes, range, shard, started.elapsed().as_secs_f64());
    // Every seed counts towards the coverage, stored or not.
    let mut coverage = crate::coverage::Coverage::new();
    for outcome in &outcomes {
        coverage.add(&outcome.coverage);
    }
    println!("  coverage: {}", coverage.line());
    if let Some(path) = &args.coverage {
        coverage.write_file(path)?;
    }
    if let Some(path) = &args.test.junit {
        let valid = outcomes.iter().filter(|outcome| outcome.verdict == Verdict::Valid).count();
        let report = sweep_report(args, range, shard, valid, valid_time_s, cases);
        report.write_file(path)?;
    }
    let worst = Verdict::merge_all(outcomes.iter().map(|outcome| outcome.verdict));
    anyhow::ensure!(
        outcomes.len() == seeds.len() || args.stop_on_failure,
        "{} of {} seeds did not run",
        seeds.len() - outcomes.len(),
        seeds.len()
    );
    Ok(exit_code(worst))
}

/// The JUnit report of a sweep: `seed_cases` (the failing seeds, sorted by seed, then harness
/// errors) after one passing case for the `valid` seeds (none when no seed was valid).
fn sweep_report(
    args: &SimArgs,
    range: SeedRange,
    shard: Shard,
    valid: usize,
    valid_time_s: f64,
    mut seed_cases: Vec<(u64, crate::junit::Case)>,
) -> crate::junit::Report {
    seed_cases.sort_by_key(|(seed, _)| *seed);
    let mut cases: Vec<crate::junit::Case> = seed_cases.into_iter().map(|(_, case)| case).collect();
    let shard_text = if shard.count > 1 {
        format!(" shard {}/{}", shard.index, shard.count)
    } else {
        String::new()
    };
    let name = match &args.test.scenario {
        Some(path) => format!("sim {}", path.display()),
        None => format!("sim-{}", args.test.test_name()),
    };
    if valid > 0 {
        let summary = crate::junit::Case {
            name: format!("{name} seeds {range}{shard_text}: {valid} valid"),
            classname: JUNIT_CLASSNAME.into(),
            time_s: valid_time_s,
            outcome: crate::junit::Outcome::Passed,
        };
        cases.insert(0, summary);
    }
    crate::junit::Report::single(JUNIT_CLASSNAME, cases)
}

/// Fails on options that cannot make a run.
fn simulate_check(args: &SimArgs) -> anyhow::Result<()> {
    match &args.test.scenario {
        Some(path) => {
            crate::scenario::Scenario::load(path)?.apply(&args.test).cluster_config()?;
        }
        None => {
            args.test.cluster_config()?;
        }
    }
    Ok(())
}

fn run_seed(args: &SimArgs, network: SimParams, seed: u64) -> anyhow::Result<Finished> {
    let started = Instant::now();
    let simulated: Simulated = simulate(&args.test, network, seed)?;
    let report = simulated.judge();
    let outcome = simulated.outcome(&report);
    let stored = if outcome.verdict == Verdict::Valid {
        None
    } else {
        let (run, _) = simulated.store(&args.test.store, network)?;
        Some(run.run_dir.display().to_string())
    };
    let time_s = started.elapsed().as_secs_f64();
    Ok(Finished { outcome, stored, name: simulated.name.clone(), time_s })
}

fn print_sweep_summary(outcomes: &[SeedOutcome], range: SeedRange, shard: Shard, wall_s: f64) {
    let seeds = outcomes.len() as f64;
    let sum = |value: fn(&SeedOutcome) -> f64| outcomes.iter().map(value).sum::<f64>();
    let ok = sum(|outcome| outcome.ok as f64);
    let views = sum(|outcome| outcome.view_changes as f64);
    let with_view_change = outcomes.iter().filter(|outcome| outcome.view_changes > 0).count();
    let simulated = sum(|outcome| outcome.simulated_s);
    let delivered = sum(|outcome| outcome.world.delivered as f64);
    let failed: Vec<u64> = outcomes
        .iter()
        .filter(|outcome| outcome.verdict != Verdict::Valid)
        .map(|outcome| outcome.seed)
        .collect();
    let shard_text = if shard.count > 1 {
        format!(" shard {}/{}", shard.index, shard.count)
    } else {
        String::new()
    };
    println!("sweep {range}{shard_text}: {} seeds in {wall_s:.1} s", outcomes.len());
    if seeds > 0.0 {
        println!(
            "  {:.1} seeds/s, {:.0} ok ops/seed, {:.1} view changes/seed ({} of {} seeds with one)",
            seeds / wall_s.max(1e-9),
            ok / seeds,
            views / seeds,
            with_view_change,
            outcomes.len()
        );
        println!(
            "  {:.1} simulated s per wall s, {:.0} packets delivered per wall s",
            simulated / wall_s.max(1e-9),
            delivered / wall_s.max(1e-9)
        );
    }
    let invalid: Vec<u64> = outcomes
        .iter()
        .filter(|outcome| outcome.verdict == Verdict::Invalid)
        .map(|outcome| outcome.seed)
        .collect();
    if failed.is_empty() {
        println!("  every seed valid");
    } else {
        println!("  {} not valid: {failed:?}; INVALID: {invalid:?}", failed.len());
    }
}
