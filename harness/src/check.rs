//! `ordeal check`: re-check a stored run, check a plain history file, or benchmark the checker
//! over a directory of histories.
//!
//! A history file is Ordeal's JSON lines or Jepsen's `history.edn` of a register or
//! cas-register test (`checker::load::history` tells them apart by the extension `.edn` or the
//! first form).
//!
//! Exit codes: 0 valid, 1 invalid, 2 unknown, 3 bad input (a malformed history names its line
//! and the rule it breaks).

#![allow(clippy::disallowed_methods, reason = "the check and the benchmark are timed")]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use checker::audit::{Inputs, Report};
use checker::linear::LinearOptions;
use history::Verdict;

use crate::cli::CheckOptions;
use crate::results::{StoredRun, check_run, print_summary, verdict_name};

/// The exit code of bad input.
pub const EXIT_BAD_INPUT: u8 = 3;

/// Runs `ordeal check` and returns its exit code.
///
/// # Errors
///
/// Bad input: a missing path, a run directory without `test.toml`, a malformed history.
pub fn run(options: &CheckOptions) -> anyhow::Result<u8> {
    if options.bench {
        return bench(&options.path, options);
    }
    if options.path.is_dir() {
        let run = StoredRun::open(&options.path)?;
        let (verdict, report) = check_run(&run)?;
        crate::report::write_or_warn(&run.run_dir);
        print_summary(&run, &report);
        println!("  rewrote   {}", options.path.join("results.json").display());
        return Ok(verdict.exit_code() as u8);
    }
    let (report, elapsed) = check_file(&options.path, options)?;
    print_file_report(&options.path, &report, elapsed, options.json);
    Ok(report.verdict.exit_code() as u8)
}

/// Checks a plain history file.
///
/// # Errors
///
/// When the file cannot be read or breaks a rule of the format.
pub fn check_file(path: &Path, options: &CheckOptions) -> anyhow::Result<(Report, Duration)> {
    let started = Instant::now();
    let history = checker::audit::History::load(path)?;
    let linear = LinearOptions {
        key_time_max: Some(Duration::from_secs_f64(options.key_time_limit)),
        ..LinearOptions::default()
    };
    let inputs = Inputs { history: Some(Ok(history)), linear, ..Inputs::default() };
    let report = checker::audit::check(inputs);
    // A malformed history is bad input, not an unknown verdict.
    if let Some(error) = &report.history_error {
        anyhow::bail!("{}: {error}", path.display());
    }
    Ok((report, started.elapsed()))
}

fn print_file_report(path: &Path, report: &Report, elapsed: Duration, json: bool) {
    if json {
        let checkers = serde_json::to_string_pretty(&report.checkers).unwrap_or_default();
        println!("{checkers}");
    }
    println!(
        "{}: {} ({} ops, {} keys, {:.3} s)",
        path.display(),
        verdict_name(report.verdict),
        report.operations,
        report.keys,
        elapsed.as_secs_f64()
    );
    for (name, result) in &report.checkers {
        println!("  {name:<14} {}", verdict_name(result.verdict));
        if result.verdict != Verdict::Valid && !json {
            for field in ["failures", "unknown", "first", "errors"] {
                if let Some(value) = result.evidence.get(field)
                    && value.as_array().is_none_or(|list| !list.is_empty())
                {
                    let text = serde_json::to_string_pretty(value).unwrap_or_default();
                    println!("    {field}: {text}");
                }
            }
        }
    }
}

/// One benchmark row.
struct Row {
    file: String,
    expected: Option<String>,
    verdict: Option<Verdict>,
    seconds: f64,
    peak_mb: f64,
}

/// Checks every `*.jsonl` of `directory` in a child process each, measuring wall time and peak
/// resident memory, and compares each verdict with the `expected` of `<file>.meta.json`.
fn bench(directory: &Path, options: &CheckOptions) -> anyhow::Result<u8> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(directory)
        .with_context(|| format!("reading {}", directory.display()))?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "jsonl"))
        .collect();
    files.sort();
    let program = std::env::current_exe().context("locating the ordeal binary")?;
    println!("| file | ops | expected | verdict | time (s) | peak memory (MB) |");
    println!("|---|---:|---|---|---:|---:|");
    let mut mismatches = 0;
    for file in &files {
        let row = bench_one(&program, file, options)?;
        let expected_verdict = row.expected.as_deref().map(|expected| match expected {
            "ok" | "valid" => Verdict::Valid,
            "illegal" | "invalid" => Verdict::Invalid,
            _ => Verdict::Unknown,
        });
        let matches = expected_verdict.is_none() || expected_verdict == row.verdict;
        if !matches {
            mismatches += 1;
        }
        let ops = std::fs::read_to_string(file)
            .map(|text| text.lines().filter(|line| line.contains("\"invoke\"")).count())
            .unwrap_or(0);
        println!(
            "| {} | {ops} | {} | {}{} | {:.3} | {:.0} |",
            row.file,
            row.expected.as_deref().unwrap_or("-"),
            row.verdict.map_or("error", verdict_name),
            if matches { "" } else { " (MISMATCH)" },
            row.seconds,
            row.peak_mb
        );
    }
    Ok(if mismatches == 0 { 0 } else { 1 })
}

fn bench_one(program: &Path, file: &Path, options: &CheckOptions) -> anyhow::Result<Row> {
    let meta_path = PathBuf::from(format!("{}.meta.json", file.display()));
    let expected = std::fs::read_to_string(&meta_path)
        .ok()
        .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
        .and_then(|meta| meta["expected"].as_str().map(str::to_string));
    let started = Instant::now();
    let child = std::process::Command::new(program)
        .arg("check")
        .arg(file)
        .arg("--key-time-limit")
        .arg(options.key_time_limit.to_string())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .with_context(|| format!("starting a checker for {}", file.display()))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is a valid value for wait4 to overwrite.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our child, not yet reaped; the pointers are valid for the call.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let seconds = started.elapsed().as_secs_f64();
    anyhow::ensure!(waited == pid, "waiting for the checker of {}", file.display());
    let verdict = if libc::WIFEXITED(status) {
        match libc::WEXITSTATUS(status) {
            0 => Some(Verdict::Valid),
            1 => Some(Verdict::Invalid),
            2 => Some(Verdict::Unknown),
            _ => None,
        }
    } else {
        None
    };
    Ok(Row {
        file: file.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default(),
        expected,
        verdict,
        seconds,
        // ru_maxrss is in kilobytes on Linux.
        peak_mb: usage.ru_maxrss as f64 / 1024.0,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// The example Jepsen histories kept with the checker's tests.
    fn jepsen(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../checker/tests/data/jepsen").join(name)
    }

    fn options(path: PathBuf) -> CheckOptions {
        CheckOptions { path, bench: false, json: false, key_time_limit: 5.0 }
    }

    /// `ordeal check history.edn`: a Jepsen cas-register run with a crash and a nemesis is
    /// valid (exit 0), a stale read is invalid (exit 1), a completion without an invocation
    /// is bad input naming its line and rule (exit 3).
    #[test]
    fn check_file_judges_jepsen_edn_histories() {
        let valid = jepsen("cas-register-ok.edn");
        let (report, _) = check_file(&valid, &options(valid.clone())).expect("checks");
        assert_eq!((report.verdict, report.operations), (Verdict::Valid, 9));
        assert_eq!(run(&options(valid)).expect("checks"), 0);
        let stale = jepsen("register-stale-read-bad.edn");
        let (report, _) = check_file(&stale, &options(stale.clone())).expect("checks");
        assert_eq!(report.verdict, Verdict::Invalid);
        assert_eq!(run(&options(stale)).expect("checks"), 1);
        let malformed = jepsen("completion-without-invoke.edn");
        let error = run(&options(malformed)).expect_err("bad input").to_string();
        assert!(error.contains("line 3: completion-without-invoke"), "{error}");
    }

    /// Unsupported Jepsen workloads are bad input that says what is supported.
    #[test]
    fn check_file_refuses_a_jepsen_set_history() {
        let temporary = tempfile::tempdir().expect("a temporary directory");
        let dir = temporary.path();
        let path = dir.join("history.edn");
        let text = "{:type :invoke, :f :add, :value 1, :process 0, :time 5, :index 0}\n";
        std::fs::write(&path, text).expect("written");
        let error = check_file(&path, &options(path.clone())).expect_err("bad input");
        let error = format!("{error:#}");
        assert!(error.contains("history.edn:1: unsupported-function: :f :add"), "{error}");
        assert!(error.contains("register and cas-register"), "{error}");
    }
}
