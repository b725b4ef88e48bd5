//! Checking a finished run and writing `results.json` (DESIGN.md, "A run and its store").

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use checker::CheckResult;
use history::{LedgerEvent, Verdict};
use serde_json::json;

use crate::cluster::StopReport;
use crate::run::ledger_paths;

/// What the run knows beyond its files.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The test's name.
    pub name: String,
    /// The seed.
    pub seed: u64,
    /// The run's directory.
    pub run_dir: PathBuf,
    /// n.
    pub replica_count: u8,
    /// f.
    pub f: usize,
    /// How long the cluster took to become ready.
    pub ready: Duration,
    /// True when Ctrl-C cut the run short.
    pub interrupted: bool,
    /// Why the history may be incomplete, if it may.
    pub history_error: Option<String>,
    /// How the replicas ended.
    pub stopped: StopReport,
}

/// Runs the checkers on the run's history and ledgers, writes `results.json`, prints a
/// summary, and returns the overall verdict (the worst of the checkers').
///
/// # Errors
///
/// When `results.json` cannot be written. Unreadable records are not errors: the checker that
/// needed them reports `unknown` with the reason.
pub fn check_and_write(summary: &RunSummary) -> anyhow::Result<Verdict> {
    let mut checkers: BTreeMap<&str, CheckResult> = BTreeMap::new();
    let history = checker::load::history(&summary.run_dir.join("history.jsonl"));
    let mut history_problems = Vec::new();
    let stats = match &history {
        Ok(file) => {
            if let Some(line) = file.truncated_line {
                history_problems.push(format!("line {line} is cut off"));
            }
            checker::perf::stats(&file.ops)
        }
        Err(error) => {
            history_problems.push(error.to_string());
            checker::perf::Stats::default()
        }
    };
    if let Some(error) = &summary.history_error {
        history_problems.push(format!("recording failed: {error}"));
    }
    if !history_problems.is_empty() {
        let evidence = json!({"errors": history_problems});
        checkers.insert("history", CheckResult::new(Verdict::Unknown, evidence));
    }
    // A run where nothing completed proves nothing (Jepsen's stats checker says the same).
    let progress = if stats.ok > 0 { Verdict::Valid } else { Verdict::Unknown };
    checkers.insert("progress", CheckResult::new(progress, json!({"ok": stats.ok})));
    // No fault was injected, so a replica that exited on its own crashed: a replica bug.
    let crashed = !summary.stopped.crashed.is_empty();
    let processes = if crashed { Verdict::Invalid } else { Verdict::Valid };
    checkers.insert("replica-processes", CheckResult::new(processes, json!(summary.stopped)));
    let mut ledgers = BTreeMap::new();
    let mut unreadable = Vec::new();
    let mut truncated = Vec::new();
    for (replica, path) in ledger_paths(&summary.run_dir, summary.replica_count) {
        match checker::load::ledger(&path) {
            Ok(file) => {
                if let Some(line) = file.truncated_line {
                    truncated.push(format!("replica {replica}: line {line} is cut off"));
                }
                ledgers.insert(replica, file.events);
            }
            Err(error) => unreadable.push(error.to_string()),
        }
    }
    let mut agreement = checker::ledger::agreement(&ledgers);
    if !unreadable.is_empty() {
        agreement.verdict = agreement.verdict.merge(Verdict::Unknown);
        agreement.evidence.insert("unreadable".into(), json!(unreadable));
    }
    if !truncated.is_empty() {
        agreement.evidence.insert("truncated".into(), json!(truncated));
    }
    checkers.insert("ledger-agreement", agreement);
    let verdict = Verdict::merge_all(checkers.values().map(|result| result.verdict));
    let (view_changes, rollbacks, checkpoints) = ledger_event_counts(&ledgers);
    let results = json!({
        "verdict": verdict,
        "seed": summary.seed,
        "test": summary.name,
        "checkers": checkers,
        "stats": {
            "ok": stats.ok,
            "fail": stats.fail,
            "info": stats.info,
            "invoke": stats.invoke,
            "duration_s": stats.duration_s,
            "ops_per_s": stats.ops_per_s,
            "latency_ms": stats.latency_ms,
            "view_changes": view_changes,
            "rollbacks": rollbacks,
            "checkpoints": checkpoints,
            "restarts": 0,
        },
        "faults": {"byzantine": [], "budget_f": summary.f, "beyond_budget": false},
        "cluster": {
            "replicas": summary.replica_count,
            "ready_ms": summary.ready.as_millis() as u64,
        },
        "interrupted": summary.interrupted,
    });
    let path = summary.run_dir.join("results.json");
    let text = serde_json::to_string_pretty(&results).context("serializing results.json")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    print_summary(summary, &stats, &checkers, verdict);
    Ok(verdict)
}

/// View changes (views entered above 0), rollbacks and stable checkpoints over all replicas.
fn ledger_event_counts(ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> (u64, u64, u64) {
    let mut counts = (0, 0, 0);
    for event in ledgers.values().flatten() {
        match event {
            LedgerEvent::ViewEntered(view) if view.view > 0 => counts.0 += 1,
            LedgerEvent::Rollback(_) => counts.1 += 1,
            LedgerEvent::Checkpoint(checkpoint) if checkpoint.stable => counts.2 += 1,
            _ => {}
        }
    }
    counts
}

fn print_summary(
    summary: &RunSummary,
    stats: &checker::perf::Stats,
    checkers: &BTreeMap<&str, CheckResult>,
    verdict: Verdict,
) {
    let latency = &stats.latency_ms;
    println!("{} seed {} ({:.1} s of workload)", summary.name, summary.seed, stats.duration_s);
    println!(
        "  ops       {} ok, {} fail, {} info: {:.0} ok/s",
        stats.ok, stats.fail, stats.info, stats.ops_per_s
    );
    println!(
        "  latency   p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latency.p50, latency.p95, latency.p99, latency.max
    );
    for (name, result) in checkers {
        println!("  {name:<17} {}", verdict_name(result.verdict));
    }
    if summary.interrupted {
        println!("  interrupted by Ctrl-C: the records end early");
    }
    println!("  verdict   {}", verdict_name(verdict));
    println!("  store     {}", summary.run_dir.display());
}

fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Valid => "valid",
        Verdict::Invalid => "INVALID",
        Verdict::Unknown => "unknown",
    }
}
