//! Checking a finished run and writing `results.json` (DESIGN.md, "A run and its store").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use checker::CheckResult;
use checker::audit::{Inputs, Report};
use checker::linear::LinearOptions;
use checker::liveness::LivenessOptions;
use checker::replay::Context;
use history::{LedgerEvent, Verdict};
use replica::core::Config;
use replica::core::types::View;
use serde_json::json;

use crate::cluster::StopReport;
use crate::faults::FaultReport;
use crate::run::ledger_paths;

/// Checks a finished run (its files and the record of what only the harness saw), writes
/// `results.json` and `report.html`, prints a summary, and returns the overall verdict (the
/// worst of the checkers').
///
/// # Errors
///
/// When `results.json` cannot be written. Unreadable records are not errors: the checker that
/// needed them reports `unknown` with the reason.
pub fn check_and_write(run: &StoredRun) -> anyhow::Result<Verdict> {
    let (verdict, report) = check_run(run)?;
    crate::report::write_or_warn(&run.run_dir);
    print_summary(run, &report);
    Ok(verdict)
}

/// The checks only the harness can make: how the replica processes ended, and whether the
/// Byzantine faults acted.
pub fn harness_checks(stopped: &StopReport, faults: &FaultReport) -> BTreeMap<String, CheckResult> {
    let mut checks = BTreeMap::new();
    // Replicas the nemesis killed are not among `crashed`: a replica that exited on its own
    // crashed, a replica bug. One the nemesis killed and could not start again leaves the run
    // unhealed, so its end proves less.
    let processes = if !stopped.crashed.is_empty() {
        Verdict::Invalid
    } else if !stopped.killed.is_empty() {
        Verdict::Unknown
    } else {
        Verdict::Valid
    };
    checks.insert("replica-processes".to_string(), CheckResult::new(processes, json!(stopped)));
    if let Some(adversary) = adversary(faults) {
        checks.insert("adversary".to_string(), adversary);
    }
    checks
}

/// Whether the run's Byzantine faults acted (none when it had none): a run in which every
/// Byzantine fault stayed vacuous proves nothing about the attacks, so it is `unknown`, never
/// a pass.
pub fn adversary(faults: &FaultReport) -> Option<CheckResult> {
    let byzantine = faults.by_kind.get("byzantine").copied().unwrap_or(0);
    if byzantine == 0 {
        return None;
    }
    let evidence = json!({
        "byzantine_faults": byzantine,
        "acted": faults.acted,
        "vacuous": faults.vacuous,
        "forced_view_changes": faults.forced_view_changes,
    });
    let verdict = if faults.acted == 0 { Verdict::Unknown } else { Verdict::Valid };
    Some(CheckResult::new(verdict, evidence))
}

/// The one record of a finished run: what it is checked from besides its files (what only
/// the harness saw). A run just finished builds it from what the harness observed
/// ([`crate::run`], [`crate::sim`]); a stored run reads it back from `test.toml` and the
/// `results.json` written at the end of the run ([`StoredRun::open`]).
#[derive(Debug, Clone)]
pub struct StoredRun {
    /// The test's name.
    pub name: String,
    /// The seed.
    pub seed: u64,
    /// The run's directory.
    pub run_dir: PathBuf,
    /// The cluster's configuration.
    pub cluster: Config,
    /// Why the history may be incomplete, if it may.
    pub history_error: Option<String>,
    /// Checks only the harness can make (how the replica processes ended).
    pub harness_checks: BTreeMap<String, CheckResult>,
    /// How long the cluster took to become ready.
    pub ready_ms: u64,
    /// True when Ctrl-C cut the run short.
    pub interrupted: bool,
    /// What the nemesis did.
    pub faults: FaultReport,
    /// How long after the final heal the cluster must make progress.
    pub liveness_window: Duration,
    /// The replicas declared Byzantine (their ledgers are not judged).
    pub byzantine: Vec<u8>,
    /// Whether the run allowed f + 1 Byzantine replicas.
    pub beyond_budget: bool,
    /// The verdict its scenario expects, if it played one.
    pub expected: Option<Verdict>,
    /// What the Byzantine clients sent and the replicas refused, if there were any.
    pub byzantine_clients: Option<serde_json::Value>,
    /// What the network relay did (`None` without it).
    pub network: Option<serde_json::Value>,
    /// The planted bug the honest replicas and the clients ran (`--planted-bug`), if any.
    pub planted_bug: Option<String>,
    /// The scheme of the replicas' and clients' signatures (simulated only in `ordeal sim`).
    pub signatures: checker::digest::Signatures,
    /// Whether `ordeal sim` made the run (its `test.toml` has `[simulated]`).
    pub simulated: bool,
}

#[derive(Debug, serde::Deserialize)]
struct TestToml {
    name: String,
    seed: u64,
    cluster: Config,
    #[serde(default)]
    byzantine: Vec<u8>,
    /// A name, not a `PlantedBug`: a build without the feature re-checks such a run too.
    #[serde(default)]
    planted_bug: Option<String>,
    #[serde(default)]
    scenario: Option<crate::scenario::Scenario>,
    #[serde(default)]
    options: RecordedOptions,
    /// A simulated run's parameters (`ordeal sim`).
    #[serde(default)]
    simulated: Option<SimulatedToml>,
}

/// `[simulated]` of a simulated run's `test.toml`: what checking needs of it.
#[derive(Debug, serde::Deserialize)]
struct SimulatedToml {
    #[serde(default)]
    signatures: Option<String>,
}

/// The options of `test.toml` that checking needs (runs from before an option existed get
/// its default).
#[derive(Debug, serde::Deserialize)]
struct RecordedOptions {
    #[serde(default = "default_liveness_window")]
    liveness_window: f64,
    #[serde(default)]
    beyond_budget: bool,
}

impl Default for RecordedOptions {
    fn default() -> RecordedOptions {
        RecordedOptions { liveness_window: default_liveness_window(), beyond_budget: false }
    }
}

fn default_liveness_window() -> f64 {
    LivenessOptions::default().window.as_secs_f64()
}

impl StoredRun {
    /// Reads the run stored in `run_dir`.
    ///
    /// # Errors
    ///
    /// When `test.toml` is missing or unreadable: the directory is then not a run.
    pub fn open(run_dir: &Path) -> anyhow::Result<StoredRun> {
        let path = run_dir.join("test.toml");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{} is not a run directory: no test.toml", run_dir.display())
        })?;
        let test: TestToml =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let previous: serde_json::Value = std::fs::read_to_string(run_dir.join("results.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        let mut harness_checks = BTreeMap::new();
        for name in ["replica-processes", "adversary", "simulation"] {
            if let Some(result) = previous["checkers"].get(name)
                && let Ok(result) = serde_json::from_value::<CheckResult>(result.clone())
            {
                harness_checks.insert(name.to_string(), result);
            }
        }
        Ok(StoredRun {
            name: test.name,
            seed: test.seed,
            run_dir: run_dir.to_path_buf(),
            cluster: test.cluster,
            history_error: previous["history_error"].as_str().map(str::to_string),
            harness_checks,
            ready_ms: previous["cluster"]["ready_ms"].as_u64().unwrap_or(0),
            interrupted: previous["interrupted"].as_bool().unwrap_or(false),
            faults: serde_json::from_value(previous["faults"].clone()).unwrap_or_default(),
            liveness_window: Duration::try_from_secs_f64(test.options.liveness_window)
                .unwrap_or(LivenessOptions::default().window),
            byzantine: test.byzantine,
            beyond_budget: test.options.beyond_budget
                || test.scenario.as_ref().is_some_and(|scenario| scenario.cluster.beyond_budget),
            expected: test.scenario.map(|scenario| Verdict::from(scenario.expect.verdict)),
            byzantine_clients: previous.get("byzantine_clients").filter(|v| !v.is_null()).cloned(),
            network: previous.get("network").filter(|network| !network.is_null()).cloned(),
            planted_bug: test.planted_bug,
            simulated: test.simulated.is_some(),
            signatures: match test.simulated.and_then(|simulated| simulated.signatures) {
                Some(scheme) if scheme == "simulated" => checker::digest::Signatures::Simulated,
                _ => checker::digest::Signatures::Ed25519,
            },
        })
    }
}

/// Runs every oracle over a stored run and (re)writes its `results.json`.
///
/// # Errors
///
/// When `results.json` cannot be written.
pub fn check_run(run: &StoredRun) -> anyhow::Result<(Verdict, Report)> {
    let inputs = run_inputs(run);
    let report = judge(inputs, &run.harness_checks, run.history_error.as_deref());
    let verdict = report.verdict;
    let ledgers = read_ledgers(run).0;
    let (view_changes, rollbacks, checkpoints) = ledger_event_counts(&ledgers);
    let stats = &report.stats;
    let results = json!({
        "verdict": verdict,
        "seed": run.seed,
        "test": run.name,
        "checkers": report.checkers,
        "stats": {
            "ok": stats.ok,
            "fail": stats.fail,
            "info": stats.info,
            "invoke": stats.invoke,
            "duration_s": stats.duration_s,
            "ops_per_s": stats.ops_per_s,
            "latency_ms": stats.latency_ms,
            "throughput": report.throughput,
            "view_changes": view_changes,
            "rollbacks": rollbacks,
            "checkpoints": checkpoints,
            "restarts": run.faults.restarts,
        },
        "faults": faults_json(run),
        "network": run.network,
        "cluster": {
            "replicas": run.cluster.replica_count,
            "ready_ms": run.ready_ms,
        },
        "history_error": run.history_error,
        "interrupted": run.interrupted,
        "byzantine_clients": run.byzantine_clients,
        "planted_bug": run.planted_bug,
        "expected": run.expected.map(verdict_name),
        "as_expected": run.expected.map(|expected| expected == verdict),
    });
    let path = run.run_dir.join("results.json");
    let text = serde_json::to_string_pretty(&results).context("serializing results.json")?;
    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    Ok((verdict, report))
}

/// Runs every oracle over `inputs`, adds the checks only the harness can make and the
/// recording's failure, and requires progress (a run where nothing completed proves nothing,
/// as Jepsen's stats checker says too); the verdict is the worst of them.
pub fn judge(
    inputs: Inputs,
    harness_checks: &BTreeMap<String, CheckResult>,
    history_error: Option<&str>,
) -> Report {
    let mut report = checker::audit::check(inputs);
    for (name, result) in harness_checks {
        report.checkers.insert(name.clone(), result.clone());
    }
    if let Some(error) = history_error {
        let result = CheckResult::new(
            Verdict::Unknown,
            json!({"errors": [format!("recording failed: {error}")]}),
        );
        report.checkers.insert("recording".into(), result);
    }
    let progress = if report.stats.ok > 0 { Verdict::Valid } else { Verdict::Unknown };
    report
        .checkers
        .insert("progress".into(), CheckResult::new(progress, json!({"ok": report.stats.ok})));
    report.verdict = Verdict::merge_all(report.checkers.values().map(|result| result.verdict));
    report
}

/// `results.json`'s `faults`: the budget, and what the nemesis did within it.
fn faults_json(run: &StoredRun) -> serde_json::Value {
    let mut faults = serde_json::to_value(&run.faults).unwrap_or_else(|_| json!({}));
    if let Some(object) = faults.as_object_mut() {
        object.insert("byzantine".into(), json!(run.byzantine));
        object.insert("budget_f".into(), json!(run.cluster.f()));
        object.insert("beyond_budget".into(), json!(run.beyond_budget));
        object.insert("limit".into(), json!(run.cluster.f() + usize::from(run.beyond_budget)));
    }
    faults
}

/// The replicas the run did not declare Byzantine: only their ledgers are judged.
fn honest_replicas(run: &StoredRun) -> Vec<u32> {
    (0..u32::from(run.cluster.replica_count))
        .filter(|replica| !run.byzantine.contains(&(*replica as u8)))
        .collect()
}

/// The honest replicas' ledgers, and the problems met reading them.
fn read_ledgers(run: &StoredRun) -> (BTreeMap<u32, Vec<LedgerEvent>>, Vec<String>) {
    let honest = honest_replicas(run);
    let mut ledgers = BTreeMap::new();
    let mut problems = Vec::new();
    for (replica, path) in ledger_paths(&run.run_dir, run.cluster.replica_count) {
        if !honest.contains(&replica) {
            continue;
        }
        match checker::load::ledger(&path) {
            Ok(file) => {
                if let Some(line) = file.truncated_line {
                    problems.push(format!("replica {replica}: line {line} is cut off"));
                }
                ledgers.insert(replica, file.events);
            }
            Err(error) => problems.push(error.to_string()),
        }
    }
    (ledgers, problems)
}

/// Everything the oracles need from the run's files.
fn run_inputs(run: &StoredRun) -> Inputs {
    let history = checker::audit::History::load(&run.run_dir.join("history.jsonl"))
        .map_err(|error| error.to_string());
    let (ledgers, problems) = read_ledgers(run);
    let public = public_keys(&run.run_dir.join("public.json")).map(|mut keys| {
        keys.signatures = run.signatures;
        keys
    });
    // A simulated run is judged by work alone, so that its results are a pure function of its
    // records; a real run's linearizability search also has a time limit per key.
    let linear = if run.simulated { LinearOptions::untimed() } else { LinearOptions::default() };
    inputs(&run.cluster, history, ledgers, problems, public, run.liveness_window, linear)
}

/// The oracles' inputs of a run of `cluster`: its history, its honest replicas' ledgers (and
/// the problems met reading them), its public keys, its liveness window, and the
/// linearizability search's budgets.
pub fn inputs(
    cluster: &Config,
    history: Result<checker::audit::History, String>,
    ledgers: BTreeMap<u32, Vec<LedgerEvent>>,
    mut ledger_problems: Vec<String>,
    public: Result<PublicKeys, String>,
    liveness_window: Duration,
    linear: LinearOptions,
) -> Inputs {
    let mut context = Context { genesis_store: cluster.genesis.clone(), ..Context::default() };
    match public {
        Ok(PublicKeys { replicas, clients, signatures }) => {
            context.signatures = signatures;
            let primary = cluster.primary(View(0)).0;
            if let Some(key) = replicas.get(usize::from(primary)) {
                let n = u64::from(cluster.replica_count);
                context.genesis_hash =
                    Some(checker::digest::genesis_hash(n, u64::from(primary), key));
            }
            context.client_keys = Some(clients);
            context.replica_keys = Some(replicas);
        }
        Err(error) => ledger_problems.push(error),
    }
    let bank_total = if cluster.genesis.is_empty() {
        None
    } else {
        Some(cluster.genesis.values().map(|value| i128::from(*value)).sum())
    };
    Inputs {
        history: Some(history),
        ledgers,
        ledger_problems,
        context,
        bank_total,
        liveness: Some(LivenessOptions { window: liveness_window, ..LivenessOptions::default() }),
        linear,
        protocol: checker::protocol::Rules::of(
            cluster.protocol.name(),
            u32::from(cluster.replica_count),
        ),
    }
}

/// The ed25519 public keys of a run, indexed by replica and by client.
pub struct PublicKeys {
    /// Replica i's key at position i.
    pub replicas: Vec<[u8; 32]>,
    /// Client c's key at position c.
    pub clients: Vec<[u8; 32]>,
    /// How their signatures verify.
    pub signatures: checker::digest::Signatures,
}

/// The replicas' and clients' ed25519 public keys from `public.json`.
fn public_keys(path: &Path) -> Result<PublicKeys, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|error| format!("{}: {error}", path.display()))?;
    let keys = |field: &str| -> Result<Vec<[u8; 32]>, String> {
        let list = value[field].as_array().ok_or(format!("{}: no {field} list", path.display()))?;
        list.iter()
            .map(|key| {
                let mut bytes = [0u8; 32];
                let text = key.as_str().unwrap_or_default();
                hex::decode_to_slice(text, &mut bytes)
                    .map_err(|_| format!("{}: {field}: {key} is not a key", path.display()))?;
                Ok(bytes)
            })
            .collect()
    };
    Ok(PublicKeys {
        replicas: keys("replicas")?,
        clients: keys("clients")?,
        signatures: checker::digest::Signatures::Ed25519,
    })
}

/// View changes (distinct views above 0 any replica entered), rollback events over all
/// replicas, and distinct stable checkpoints.
pub fn ledger_event_counts(ledgers: &BTreeMap<u32, Vec<LedgerEvent>>) -> (u64, u64, u64) {
    let mut views = std::collections::BTreeSet::new();
    let mut checkpoints = std::collections::BTreeSet::new();
    let mut rollbacks = 0;
    for event in ledgers.values().flatten() {
        match event {
            LedgerEvent::ViewEntered(view) if view.view > 0 => {
                views.insert(view.view);
            }
            LedgerEvent::Rollback(_) => rollbacks += 1,
            LedgerEvent::Checkpoint(checkpoint) if checkpoint.stable => {
                checkpoints.insert(checkpoint.seq);
            }
            _ => {}
        }
    }
    (views.len() as u64, rollbacks, checkpoints.len() as u64)
}

/// Prints a run's summary.
pub fn print_summary(run: &StoredRun, report: &Report) {
    let stats = &report.stats;
    let latency = &stats.latency_ms;
    println!("{} seed {} ({:.1} s of workload)", run.name, run.seed, stats.duration_s);
    println!(
        "  ops       {} ok, {} fail, {} info: {:.0} ok/s",
        stats.ok, stats.fail, stats.info, stats.ops_per_s
    );
    println!(
        "  latency   p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latency.p50, latency.p95, latency.p99, latency.max
    );
    let quiet = &stats.latency_quiet_ms;
    if quiet.max > 0.0 && quiet != latency {
        println!(
            "            outside faults p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            quiet.p50, quiet.p99, quiet.max
        );
    }
    // The oracles by group (what clients saw, the ledgers, speculation, the processes): a
    // group that passed in one line, and every oracle that did not on its own line.
    for group in crate::report::GROUPS {
        let members: Vec<(&String, &CheckResult)> = report
            .checkers
            .iter()
            .filter(|(name, _)| crate::report::group(name) == group)
            .collect();
        if members.is_empty() {
            continue;
        }
        let verdict = Verdict::merge_all(members.iter().map(|(_, result)| result.verdict));
        let passed: Vec<&str> = members
            .iter()
            .filter(|(_, result)| result.verdict == Verdict::Valid)
            .map(|(name, _)| name.as_str())
            .collect();
        let mut lines = vec![String::new()];
        for name in passed {
            let line = lines.last_mut().expect("a line");
            if !line.is_empty() && line.len() + name.len() > 72 {
                lines.push(String::new());
            }
            let line = lines.last_mut().expect("a line");
            if !line.is_empty() {
                line.push_str(", ");
            }
            line.push_str(name);
        }
        println!(
            "  {group:<11} {:<8} {}",
            verdict_name(verdict),
            lines.join(&format!(",\n{:23}", ""))
        );
        for (name, result) in members.iter().filter(|(_, result)| result.verdict != Verdict::Valid)
        {
            println!("    {name:<24} {}", verdict_name(result.verdict));
        }
    }
    if run.interrupted {
        println!("  interrupted by Ctrl-C: the records end early");
    }
    if !run.byzantine.is_empty() {
        let label = if run.beyond_budget { ", BEYOND BUDGET: a violation is expected" } else { "" };
        println!("  byzantine {:?} (not judged){label}", run.byzantine);
    }
    if let Some(bug) = &run.planted_bug {
        println!("  planted   {bug} (a planted bug: a safety violation is expected)");
    }
    if let Some(expected) = run.expected {
        println!("  expected  {}", verdict_name(expected));
    }
    println!("  verdict   {}", verdict_name(report.verdict));
    println!("  store     {}", run.run_dir.display());
    let page = run.run_dir.join(crate::report::FILE);
    if page.is_file() {
        println!("  report    {}", page.display());
    }
}

/// A verdict as printed: `INVALID` stands out.
pub fn verdict_name(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Valid => "valid",
        Verdict::Invalid => "INVALID",
        Verdict::Unknown => "unknown",
    }
}
