//! `ordeal`: run a test against a cluster of replica processes (and, hidden, run one replica).
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown, 3 the harness itself failed (bad options, could
//! not start the cluster, interrupted).

#![allow(clippy::disallowed_methods, reason = "a random default seed comes from the clock")]

use std::path::Path;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;

use clap::Parser as _;
use harness::cli::{Cli, Command, TestOptions};
use history::Verdict;

/// The exit code of a harness failure.
const EXIT_HARNESS_ERROR: u8 = 3;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let code = if error.use_stderr() { EXIT_HARNESS_ERROR } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Replica { config } => match replica::net::run(&config) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("replica: {error:#}");
                ExitCode::from(1)
            }
        },
        Command::PlantedBugs { describe } => {
            use replica::planted::{ENABLED, PlantedBug};
            if !ENABLED {
                eprintln!("ordeal: no planted bugs in this build (built without `planted-bugs`)");
            }
            for bug in PlantedBug::ALL.into_iter().filter(|_| ENABLED) {
                if describe {
                    println!("{:<28} {:<12} {}", bug.name(), bug.part().name(), bug.rule());
                } else {
                    println!("{}", bug.name());
                }
            }
            ExitCode::SUCCESS
        }
        Command::Check(options) => match harness::check::run(&options) {
            Ok(code) => ExitCode::from(code),
            Err(error) => {
                eprintln!("ordeal check: {error:#}");
                ExitCode::from(harness::check::EXIT_BAD_INPUT)
            }
        },
        Command::Report { run_dir } => match harness::report::write(&run_dir) {
            Ok(path) => {
                println!("{}", path.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("ordeal report: {error:#}");
                ExitCode::from(harness::check::EXIT_BAD_INPUT)
            }
        },
        Command::Serve { store, port } => {
            let served = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .map_err(anyhow::Error::from)
                .and_then(|runtime| runtime.block_on(harness::site::serve(store, port)));
            match served {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("ordeal serve: {error:#}");
                    ExitCode::from(EXIT_HARNESS_ERROR)
                }
            }
        }
        Command::Bench(options) => match harness::bench::run(&options) {
            Ok(code) => ExitCode::from(code),
            Err(error) => {
                eprintln!("ordeal bench: {error:#}");
                ExitCode::from(EXIT_HARNESS_ERROR)
            }
        },
        Command::Junit { suite, cases, out } => match junit(&suite, &cases, &out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("ordeal junit: {error:#}");
                ExitCode::from(EXIT_HARNESS_ERROR)
            }
        },
        Command::Coverage { paths, json, expect } => {
            match harness::coverage::run(&paths, json, expect.as_deref()) {
                Ok(code) => ExitCode::from(code),
                Err(error) => {
                    eprintln!("ordeal coverage: {error:#}");
                    ExitCode::from(EXIT_HARNESS_ERROR)
                }
            }
        }
        Command::Index { store } => {
            let written = if store.is_dir() {
                harness::site::write_index(&store)
            } else {
                Err(anyhow::anyhow!("{} is not a directory", store.display()))
            };
            match written {
                Ok(path) => {
                    println!("{}", path.display());
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("ordeal index: {error:#}");
                    ExitCode::from(EXIT_HARNESS_ERROR)
                }
            }
        }
        Command::Sim(args) => match harness::sim::sweep::run(&args) {
            Ok(code) => ExitCode::from(code),
            Err(error) => {
                eprintln!("ordeal sim: {error:#}");
                ExitCode::from(harness::check::EXIT_BAD_INPUT)
            }
        },
        Command::Test(options) => match test_with_junit(options) {
            Ok(code) => ExitCode::from(code),
            Err(error) => {
                eprintln!("ordeal: {error:#}");
                ExitCode::from(EXIT_HARNESS_ERROR)
            }
        },
    }
}

/// `ordeal junit`: the cases file as a JUnit XML report.
fn junit(suite: &str, cases: &Path, out: &Path) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(cases)
        .with_context(|| format!("reading the cases file {}", cases.display()))?;
    let cases = harness::junit::parse_cases(&text)
        .with_context(|| format!("the cases file {}", cases.display()))?;
    harness::junit::Report::single(suite, cases).write_file(out)
}

/// The suite and class name of `ordeal test`'s JUnit cases.
const JUNIT_CLASSNAME: &str = "ordeal.test";

/// [`test`], then the JUnit report when `--junit` asks for one: written whatever the runs'
/// verdicts, also after a harness error (the run it stopped is an error case).
fn test_with_junit(options: TestOptions) -> anyhow::Result<u8> {
    let mut cases = Vec::new();
    let result = test(&options, &mut cases);
    if let Some(path) = &options.junit {
        if let Err(error) = &result {
            cases.push(harness::junit::Case {
                name: "ordeal test".into(),
                classname: JUNIT_CLASSNAME.into(),
                time_s: 0.0,
                outcome: harness::junit::Outcome::Errored {
                    message: format!("{error}"),
                    text: format!("{error:#}"),
                },
            });
        }
        harness::junit::Report::single(JUNIT_CLASSNAME, cases).write_file(path)?;
    }
    result
}

/// Runs `--test-count` tests and returns the exit code of the worst verdict; each run is
/// added to `cases` (as a JUnit case) once judged.
fn test(options: &TestOptions, cases: &mut Vec<harness::junit::Case>) -> anyhow::Result<u8> {
    let mut scenario_seed = None;
    match &options.scenario {
        Some(path) => {
            let scenario = harness::scenario::Scenario::load(path)?;
            scenario.apply(options).cluster_config()?;
            scenario_seed = scenario.seed;
        }
        None => {
            options.cluster_config()?;
        }
    }
    let seed = options.seed.or(scenario_seed).unwrap_or_else(|| {
        let nanos =
            SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| since.as_nanos());
        (nanos as u64) % 1_000_000_000
    });
    let runtime =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // The run future executes on this (the main) thread, which spawns the replicas.
    runtime.block_on(async {
        let (interrupt, interrupted) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut terminate), Ok(mut interrupt_signal)) =
                (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
            else {
                return;
            };
            // The first SIGINT or SIGTERM stops the run cleanly; a second one exits at once
            // (the replicas die with this process: PR_SET_PDEATHSIG).
            for _ in 0..2 {
                tokio::select! {
                    _ = terminate.recv() => {}
                    _ = interrupt_signal.recv() => {}
                }
                if *interrupt.borrow() {
                    eprintln!("ordeal: interrupted twice, exiting now");
                    std::process::exit(i32::from(EXIT_HARNESS_ERROR));
                }
                let _ = interrupt.send(true);
            }
        });
        let mut worst = Verdict::Valid;
        // With a scenario, the exit code says whether every run reached the expected verdict.
        let mut unexpected = false;
        let mut scenario = false;
        // Several protocols: each with the same seed, one after the other, then a table.
        let protocols = match options.protocol.len() {
            0 | 1 => vec![options.protocol()],
            _ => options.protocol.clone(),
        };
        for index in 0..options.test_count {
            let run_seed = history::seeds::repetition(seed, index);
            let mut rows = Vec::new();
            for &protocol in &protocols {
                let options = options.with_protocol(protocol);
                let started = Instant::now();
                let outcome =
                    harness::run::run_once(&options, run_seed, interrupted.clone()).await?;
                if options.junit.is_some() && !outcome.interrupted {
                    let compared = (protocols.len() > 1).then_some(protocol);
                    cases.push(junit_case(&outcome, run_seed, compared, started)?);
                }
                worst = worst.merge(outcome.verdict);
                if let Some(expected) = outcome.expected {
                    scenario = true;
                    unexpected |= outcome.verdict != expected;
                }
                if outcome.interrupted {
                    return Ok(EXIT_HARNESS_ERROR);
                }
                let protocol = replica::core::Protocol::from(protocol).name();
                rows.push(harness::compare::Row { protocol, run_dir: outcome.run_dir });
            }
            if rows.len() > 1 {
                harness::compare::link_siblings(&rows)?;
                println!("\nseed {run_seed}, side by side:");
                print!("{}", harness::compare::table(&rows)?);
            }
        }
        if scenario {
            return Ok(u8::from(unexpected));
        }
        Ok(worst.exit_code() as u8)
    })
}

/// A judged run as a JUnit case: named after its test, seed and (when several were
/// compared) protocol, judged from its `results.json`.
fn junit_case(
    outcome: &harness::run::RunOutcome,
    seed: u64,
    protocol: Option<harness::cli::ProtocolArg>,
    started: Instant,
) -> anyhow::Result<harness::junit::Case> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let reproduce = harness::cli::reproduce_command(&args, seed, protocol);
    // The run directory's name is the test's name, its seed and the time.
    let name = std::fs::read_to_string(outcome.run_dir.join("results.json"))
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|results| results.get("test")?.as_str().map(str::to_string))
        .unwrap_or_else(|| outcome.run_dir.display().to_string());
    let name = match protocol {
        Some(protocol) => {
            format!("{name} seed {seed} ({})", replica::core::Protocol::from(protocol).name())
        }
        None => format!("{name} seed {seed}"),
    };
    let time_s = started.elapsed().as_secs_f64();
    harness::junit::run_case(&outcome.run_dir, name, JUNIT_CLASSNAME, time_s, &reproduce)
}
