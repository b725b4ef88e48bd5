//! Coverage counters: "sometimes" facts summed over many runs (as Antithesis's `sometimes`
//! assertions and TigerBeetle's VOPR coverage marks).
//!
//! A matrix of valid runs proves little if none of them ever changed view, rolled back or met
//! an acting Byzantine replica. `ordeal coverage STORE_OR_RUN_DIRS...` sums, over stored runs,
//! how often each interesting thing happened, and `--expect NAME,...` fails (exit 1) naming
//! every expected counter that stayed zero. `ordeal sim --seeds A..B` sums the same counters
//! over every seed of a sweep (it stores only the failing ones) and writes them with
//! `--coverage FILE`, a JSON file `ordeal coverage` also accepts.
//!
//! This module is not a checker: a counter at zero is not a violation of anything, only a
//! sign that the runs did not exercise what they were meant to.
//!
//! # Layout
//!
//! - [`COUNTERS`]: the counters, each with a one-line meaning and how a run's facts give it.
//! - [`RunFacts`]: what one run contributes, from its stored files or from the simulator.
//! - [`Coverage`]: the sums, with the JSON format of `--json` and `--coverage FILE`.
//! - [`load`]: stored runs, stores and coverage files, summed.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One coverage counter.
#[derive(Debug, Clone, Copy)]
pub struct Counter {
    /// Its name, as `--expect` takes it.
    pub name: &'static str,
    /// What it counts, in one line.
    pub meaning: &'static str,
    /// How much one run adds.
    pub value: fn(&RunFacts) -> u64,
}

/// Rejections (`rejected.<kind>` at honest replicas) that mean a replica met two different
/// proposals or votes for one slot: an equivocation seen and refused.
pub const EQUIVOCATION_REJECTIONS: &[&str] = &["conflicting_proposal", "conflicting_vote"];

/// Rejections that mean forged or altered authentication was refused: bad MACs, signatures,
/// threshold shares and certificates, a sender that is not who it claims.
pub const FORGERY_REJECTIONS: &[&str] = &[
    "invalid_mac",
    "invalid_support_signature",
    "invalid_share",
    "invalid_certificate",
    "invalid_checkpoint_certificate",
    "invalid_view_change",
    "invalid_new_view",
    "invalid_state_transfer",
    "sender_mismatch",
    "support_sender_mismatch",
];

/// Rejections of bad client input: malformed, misaddressed, unknown or badly signed requests.
pub const CLIENT_REJECTIONS: &[&str] =
    &["malformed_request", "client_mismatch", "unknown_client", "invalid_client_signature"];

/// Every coverage counter, in the order printed. The one list: the table, `--expect`, the JSON
/// and the docs (docs/nightly.md) follow it.
pub const COUNTERS: &[Counter] = &[
    Counter {
        name: "view-changes",
        meaning: "views above 0 an honest replica entered (distinct per run)",
        value: |facts| facts.view_changes,
    },
    Counter {
        name: "rollbacks",
        meaning: "rollback events in honest ledgers",
        value: |facts| facts.rollbacks,
    },
    Counter {
        name: "checkpoints",
        meaning: "stable checkpoints in honest ledgers (distinct per run)",
        value: |facts| facts.checkpoints,
    },
    Counter {
        name: "state-transfers",
        meaning: "snapshots an honest replica installed from another (snapshots_installed)",
        value: |facts| facts.counter("snapshots_installed"),
    },
    Counter {
        name: "restarts",
        meaning: "replicas restarted after a kill",
        value: |facts| facts.restarts,
    },
    Counter {
        name: "byzantine-acted",
        meaning: "Byzantine faults that acted (sent something altered, withheld or forged)",
        value: |facts| facts.byzantine_acted,
    },
    Counter {
        name: "equivocations-seen",
        meaning: "conflicting proposals or votes honest replicas refused",
        value: |facts| facts.rejections(EQUIVOCATION_REJECTIONS),
    },
    Counter {
        name: "forgeries-refused",
        meaning: "bad MACs, signatures, shares, certificates or senders honest replicas refused",
        value: |facts| facts.rejections(FORGERY_REJECTIONS),
    },
    Counter {
        name: "bad-client-input-refused",
        meaning: "malformed, misaddressed or badly signed client requests refused",
        value: |facts| facts.rejections(CLIENT_REJECTIONS),
    },
    Counter {
        name: "safety-refusals",
        meaning: "votes the safety rules of an honest replica refused to sign",
        value: |facts| facts.counter("safety_refusals"),
    },
    Counter { name: "twins", meaning: "twins started", value: |facts| facts.twins },
    Counter {
        name: "forced-view-changes",
        meaning: "views the nemesis forced onto a Byzantine primary",
        value: |facts| facts.forced_view_changes,
    },
];

/// The names of [`COUNTERS`], comma-separated.
pub fn counter_names() -> String {
    COUNTERS.iter().map(|counter| counter.name).collect::<Vec<_>>().join(", ")
}

/// The largest `results.json` read (checker evidence can be large, but not this large).
pub const RESULTS_BYTES_MAX: u64 = 256 << 20;
/// The largest `replica-status.json` or coverage file read.
pub const STATUS_BYTES_MAX: u64 = 16 << 20;
/// The most runs one `ordeal coverage` reads.
pub const RUNS_MAX: usize = 100_000;
/// The most entries of one directory looked at.
const ENTRIES_MAX: usize = 100_000;

/// What one run contributes to the coverage.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunFacts {
    /// Distinct views above 0 entered (`stats.view_changes`).
    pub view_changes: u64,
    /// Rollback events in honest ledgers (`stats.rollbacks`).
    pub rollbacks: u64,
    /// Distinct stable checkpoints (`stats.checkpoints`).
    pub checkpoints: u64,
    /// Restarts (`faults.restarts`).
    pub restarts: u64,
    /// Byzantine faults that acted (`faults.acted`).
    pub byzantine_acted: u64,
    /// Twins started (`faults.twins`).
    pub twins: u64,
    /// Forced view changes (`faults.forced_view_changes`).
    pub forced_view_changes: u64,
    /// The honest replicas' counters (`replica-status.json`), summed by name.
    pub counters: BTreeMap<String, u64>,
}

impl RunFacts {
    /// The honest replicas' counter `name` (0 when no replica reported it).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// The sum of `rejected.<kind>` over `kinds`.
    pub fn rejections(&self, kinds: &[&str]) -> u64 {
        kinds.iter().map(|kind| self.counter(&format!("rejected.{kind}"))).sum()
    }

    /// Adds one replica's `counters` to the honest sums.
    pub fn add_counters<'a>(&mut self, counters: impl IntoIterator<Item = (&'a String, &'a u64)>) {
        for (name, value) in counters {
            let sum = self.counters.entry(name.clone()).or_default();
            *sum = sum.saturating_add(*value);
        }
    }

    /// The facts of a stored run, from its `results.json` and (when present)
    /// `replica-status.json`. Byzantine replicas' counters are left out.
    ///
    /// # Errors
    ///
    /// When `results.json` is missing, too large or not a run's results.
    pub fn read(run_dir: &Path) -> anyhow::Result<RunFacts> {
        let results_path = run_dir.join("results.json");
        let results = read_json(&results_path, RESULTS_BYTES_MAX)?;
        let mut facts = RunFacts::from_results(&results)
            .with_context(|| format!("{} is not a run's results", results_path.display()))?;
        let status_path = run_dir.join("replica-status.json");
        if status_path.is_file() {
            let statuses = read_json(&status_path, STATUS_BYTES_MAX)?;
            let byzantine: BTreeSet<u64> = results
                .pointer("/faults/byzantine")
                .and_then(Value::as_array)
                .map(|ids| ids.iter().filter_map(Value::as_u64).collect())
                .unwrap_or_default();
            facts.add_statuses(&statuses, &byzantine).with_context(|| {
                format!("{} is not a list of replica statuses", status_path.display())
            })?;
        }
        Ok(facts)
    }

    /// The run-level facts of a `results.json` (no replica counters).
    fn from_results(results: &Value) -> anyhow::Result<RunFacts> {
        anyhow::ensure!(results.get("verdict").is_some(), "no verdict");
        let stats = results.get("stats").context("no stats")?;
        let faults = results.get("faults");
        let number = |value: Option<&Value>, key: &str| {
            value.and_then(|value| value.get(key)).and_then(Value::as_u64).unwrap_or(0)
        };
        Ok(RunFacts {
            view_changes: number(Some(stats), "view_changes"),
            rollbacks: number(Some(stats), "rollbacks"),
            checkpoints: number(Some(stats), "checkpoints"),
            restarts: number(faults, "restarts"),
            byzantine_acted: number(faults, "acted"),
            twins: number(faults, "twins"),
            forced_view_changes: number(faults, "forced_view_changes"),
            counters: BTreeMap::new(),
        })
    }

    /// Adds the counters of `statuses` (a `replica-status.json`: one entry per replica, `null`
    /// for one that was down) of the replicas not in `byzantine`.
    fn add_statuses(&mut self, statuses: &Value, byzantine: &BTreeSet<u64>) -> anyhow::Result<()> {
        let statuses = statuses.as_array().context("not a list")?;
        for status in statuses.iter().filter(|status| !status.is_null()) {
            let id = status.get("id").and_then(Value::as_u64).context("a status without id")?;
            if byzantine.contains(&id) {
                continue;
            }
            let Some(counters) = status.get("counters").and_then(Value::as_object) else {
                continue;
            };
            for (name, value) in counters {
                let sum = self.counters.entry(name.clone()).or_default();
                *sum = sum.saturating_add(value.as_u64().unwrap_or(0));
            }
        }
        Ok(())
    }
}

/// Counters summed over runs (the JSON of `ordeal coverage --json` and of `ordeal sim
/// --coverage FILE`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Coverage {
    /// Runs (or simulated seeds) summed.
    pub runs: u64,
    /// Each counter of [`COUNTERS`] by name.
    pub counters: BTreeMap<String, u64>,
}

impl Default for Coverage {
    fn default() -> Coverage {
        Coverage::new()
    }
}

impl Coverage {
    /// No runs: every counter at zero.
    pub fn new() -> Coverage {
        let counters = COUNTERS.iter().map(|counter| (counter.name.to_string(), 0)).collect();
        Coverage { runs: 0, counters }
    }

    /// Adds one run.
    pub fn add(&mut self, facts: &RunFacts) {
        self.runs = self.runs.saturating_add(1);
        for counter in COUNTERS {
            let sum = self.counters.entry(counter.name.to_string()).or_default();
            *sum = sum.saturating_add((counter.value)(facts));
        }
    }

    /// Adds sums made elsewhere (a coverage file). Names this build does not know are left
    /// out, so an older or newer file still sums what both know.
    pub fn merge(&mut self, other: &Coverage) {
        self.runs = self.runs.saturating_add(other.runs);
        for counter in COUNTERS {
            let sum = self.counters.entry(counter.name.to_string()).or_default();
            *sum = sum.saturating_add(other.get(counter.name));
        }
    }

    /// The counter `name` (0 when unknown).
    pub fn get(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// The counters of `expected` that are zero, in the order given.
    pub fn zero<'a>(&self, expected: &[&'a str]) -> Vec<&'a str> {
        expected.iter().copied().filter(|name| self.get(name) == 0).collect()
    }

    /// The table `ordeal coverage` prints: counter, total, meaning.
    pub fn table(&self) -> String {
        let mut text = format!("coverage over {} runs\n", self.runs);
        text.push_str(&format!("  {:<26} {:>10}  {}\n", "counter", "total", "meaning"));
        for counter in COUNTERS {
            let total = self.get(counter.name);
            let mark = if total == 0 { " (never)" } else { "" };
            text.push_str(&format!(
                "  {:<26} {:>10}  {}{mark}\n",
                counter.name, total, counter.meaning
            ));
        }
        text
    }

    /// One line: every counter and its total.
    pub fn line(&self) -> String {
        let counters: Vec<String> = COUNTERS
            .iter()
            .map(|counter| format!("{} {}", counter.name, self.get(counter.name)))
            .collect();
        counters.join(", ")
    }

    /// Writes the JSON to `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write_file(&self, path: &Path) -> anyhow::Result<()> {
        let text = serde_json::to_string_pretty(self).context("serializing the coverage")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }
}

/// `--expect`'s list: names of [`COUNTERS`], comma-separated.
///
/// # Errors
///
/// A name that is not a counter (the message lists them).
pub fn parse_expect(text: &str) -> anyhow::Result<Vec<&'static str>> {
    let mut names = Vec::new();
    for name in text.split(',').map(str::trim).filter(|name| !name.is_empty()) {
        let counter = COUNTERS
            .iter()
            .find(|counter| counter.name == name)
            .with_context(|| format!("{name:?} is not a coverage counter ({})", counter_names()))?;
        names.push(counter.name);
    }
    Ok(names)
}

/// What [`load`] summed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The sums.
    pub coverage: Coverage,
    /// Runs of a store left out because they have no `results.json` (unchecked, or still
    /// running).
    pub unchecked: Vec<PathBuf>,
}

/// Sums the runs of `paths`: run directories, stores (`STORE/<test>/<run>/`), or coverage
/// files (`ordeal sim --coverage FILE`).
///
/// # Errors
///
/// A path that is none of these, a run directory given by name without `results.json`, a
/// store without runs, a file that cannot be read or parsed, or more than [`RUNS_MAX`] runs.
pub fn load(paths: &[PathBuf]) -> anyhow::Result<Loaded> {
    anyhow::ensure!(!paths.is_empty(), "no store, run directory or coverage file given");
    let mut loaded = Loaded::default();
    for path in paths {
        if path.is_file() {
            let coverage: Coverage = serde_json::from_value(read_json(path, STATUS_BYTES_MAX)?)
                .with_context(|| {
                    format!("{} is not a coverage file (ordeal sim --coverage)", path.display())
                })?;
            loaded.coverage.merge(&coverage);
        } else if path.join("test.toml").is_file() {
            anyhow::ensure!(
                path.join("results.json").is_file(),
                "{} is a run without results.json (unchecked: `ordeal check {}` writes it)",
                path.display(),
                path.display()
            );
            loaded.coverage.add(&RunFacts::read(path)?);
        } else if path.is_dir() {
            let runs = store_runs(path)?;
            anyhow::ensure!(
                !runs.is_empty(),
                "{} is neither a run directory (no test.toml) nor a store with runs",
                path.display()
            );
            for run in runs {
                if run.join("results.json").is_file() {
                    loaded.coverage.add(&RunFacts::read(&run)?);
                } else {
                    loaded.unchecked.push(run);
                }
            }
        } else {
            anyhow::bail!("{} does not exist", path.display());
        }
        anyhow::ensure!(
            loaded.coverage.runs as usize + loaded.unchecked.len() <= RUNS_MAX,
            "more than {RUNS_MAX} runs"
        );
    }
    Ok(loaded)
}

/// The run directories of `store` (`STORE/<test>/<run>/test.toml`), sorted.
fn store_runs(store: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut runs = Vec::new();
    let tests = std::fs::read_dir(store).with_context(|| format!("reading {}", store.display()))?;
    for test in tests.flatten().take(ENTRIES_MAX) {
        let name = test.file_name().to_string_lossy().to_string();
        // `latest` is a link to a run; dot files are the store's own.
        if name == "latest" || name.starts_with('.') || !test.path().is_dir() {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(test.path()) else { continue };
        for run in entries.flatten().take(ENTRIES_MAX) {
            if run.path().join("test.toml").is_file() {
                runs.push(run.path());
            }
        }
        anyhow::ensure!(
            runs.len() <= RUNS_MAX,
            "{} has more than {RUNS_MAX} runs",
            store.display()
        );
    }
    runs.sort();
    Ok(runs)
}

/// Reads a JSON file of at most `bytes_max` bytes.
fn read_json(path: &Path, bytes_max: u64) -> anyhow::Result<Value> {
    let file = std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    file.take(bytes_max + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= bytes_max,
        "{} is larger than {bytes_max} bytes",
        path.display()
    );
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

/// Runs `ordeal coverage`: prints the table (or the JSON) and returns the exit code: 0, or 1
/// when a counter of `expect` is zero (each named on stderr).
///
/// # Errors
///
/// Bad input (see [`load`] and [`parse_expect`]).
pub fn run(paths: &[PathBuf], json: bool, expect: Option<&str>) -> anyhow::Result<u8> {
    let expected = expect.map(parse_expect).transpose()?.unwrap_or_default();
    let loaded = load(paths)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&loaded.coverage)?);
    } else {
        print!("{}", loaded.coverage.table());
    }
    for run in &loaded.unchecked {
        eprintln!("ordeal coverage: left out {} (no results.json)", run.display());
    }
    let zero = loaded.coverage.zero(&expected);
    for name in &zero {
        eprintln!(
            "ordeal coverage: expected counter {name} is zero over {} runs",
            loaded.coverage.runs
        );
    }
    Ok(u8::from(!zero.is_empty()))
}

#[cfg(test)]
mod tests;
