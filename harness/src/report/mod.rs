//! `report.html`: one self-contained page per run (inline SVG, CSS and a little script; no
//! network), written at the end of every run and rebuilt by `ordeal report RUN_DIR`.
//!
//! The page shows, top to bottom: the verdict, seed, options and the command that reproduces
//! the run; the failing oracles with what they found; a timeline of the nemesis's faults, the
//! replicas (downtime, Byzantine behaviour, view changes, rollbacks, checkpoints, state
//! transfers) and the clients' operations; throughput and latency with the fault windows
//! shaded; for a linearizability violation the failing window of operations (as Knossos draws
//! it); for a ledger divergence the honest replicas' batches at the slot side by side and the
//! protocol messages around it as a Lamport diagram (from the replicas' flight recorders); and
//! every oracle's evidence.
//!
//! Everything is read from the run directory alone, so a run of any age, copied anywhere,
//! gets its report. The HTML comes from a template (minijinja, autoescaped); the plots from
//! plotters.

pub mod command;
pub mod lamport;
mod plots;
pub mod timeline;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use history::LedgerEvent;
use serde::Serialize;
use serde_json::Value;

use self::timeline::{Fault, Timeline};

/// The report's file name in a run directory.
pub const FILE: &str = "report.html";

/// The page's template.
const TEMPLATE: &str = include_str!("report.html");

/// The most characters of one oracle's evidence shown on the page.
const EVIDENCE_CHARS_MAX: usize = 20_000;

/// The most failing windows of operations drawn.
const WINDOWS_MAX: usize = 3;

/// The oracles' groups, in the order the summary and the page show them.
pub const GROUPS: [&str; 5] = ["client", "ledger", "speculation", "process", "other"];

/// The group an oracle belongs to: what clients saw, what the honest ledgers hold, what
/// speculation promised, how the processes and the adversary behaved.
pub fn group(oracle: &str) -> &'static str {
    match oracle {
        "history"
        | "linearizable"
        | "bank"
        | "client-proofs"
        | "inform-certificates"
        | "progress" => "client",
        "speculation" | "rollback" => "speculation",
        "replica-processes" | "adversary" | "simulation" | "liveness" => "process",
        name if name.starts_with("ledger-")
            || name.starts_with("checkpoint-")
            || matches!(
                name,
                "one-batch-per-slot" | "view-change-decisions" | "committed-final"
            ) =>
        {
            "ledger"
        }
        _ => "other",
    }
}

/// Writes `report.html` into `run_dir` and returns its path.
///
/// # Errors
///
/// When `run_dir` holds no run (no `test.toml`) or the page cannot be written. Missing or
/// broken records (no history, a cut ledger) are shown on the page, not errors.
pub fn write(run_dir: &Path) -> anyhow::Result<PathBuf> {
    let page = Page::load(run_dir)?;
    let html = render(&page)?;
    let path = run_dir.join(FILE);
    std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// [`write`], with a failure printed rather than returned: a run's verdict never depends on
/// its page.
pub fn write_or_warn(run_dir: &Path) -> Option<PathBuf> {
    write(run_dir)
        .inspect_err(|error| eprintln!("ordeal: no report for {}: {error:#}", run_dir.display()))
        .ok()
}

/// Renders a page.
fn render(page: &Page) -> anyhow::Result<String> {
    let mut environment = minijinja::Environment::new();
    environment.add_template("report.html", TEMPLATE).context("the report's template")?;
    let template = environment.get_template("report.html").context("the report's template")?;
    template.render(minijinja::value::Serde(page)).context("rendering the report")
}

/// Everything the page shows.
#[derive(Debug, Serialize)]
struct Page {
    test: String,
    seed: u64,
    verdict: String,
    expected: Option<String>,
    simulated: bool,
    planted_bug: Option<String>,
    scenario: Option<String>,
    byzantine: Vec<u64>,
    beyond_budget: bool,
    command: String,
    options: Vec<(String, String)>,
    stats: Vec<(String, String)>,
    adversary: Vec<String>,
    failures: Vec<Oracle>,
    groups: Vec<Group>,
    timeline: Timeline,
    throughput_svg: String,
    latency_svg: String,
    windows: Vec<lamport::Window>,
    divergence: Option<Divergence>,
    messages: Option<lamport::Diagram>,
    faults: Vec<FaultRow>,
    files: Vec<String>,
    notes: Vec<String>,
}

/// One oracle's verdict and evidence.
#[derive(Debug, Clone, Serialize)]
struct Oracle {
    name: String,
    group: &'static str,
    verdict: String,
    summary: String,
    evidence: String,
}

/// The oracles of one group.
#[derive(Debug, Serialize)]
struct Group {
    name: &'static str,
    verdict: String,
    oracles: Vec<Oracle>,
}

/// One row of the nemesis's table.
#[derive(Debug, Serialize)]
struct FaultRow {
    start: String,
    end: String,
    kind: String,
    targets: String,
    detail: String,
    byzantine: bool,
}

/// A ledger divergence: the honest replicas' batches at the slot, side by side.
#[derive(Debug, Serialize)]
struct Divergence {
    oracle: String,
    seq: u64,
    time: Option<u64>,
    columns: Vec<Column>,
}

/// What one replica's ledger holds at the divergent slot.
#[derive(Debug, Serialize)]
struct Column {
    replica: u32,
    byzantine: bool,
    entries: Vec<Entry>,
}

/// One execution (or state transfer) at the slot.
#[derive(Debug, Serialize)]
struct Entry {
    what: String,
    time: String,
    view: Option<u64>,
    batch_digest: String,
    block_hash: String,
    requests: Vec<String>,
}

impl Page {
    fn load(run_dir: &Path) -> anyhow::Result<Page> {
        let path = run_dir.join("test.toml");
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!("{} is not a run directory: no test.toml", run_dir.display())
        })?;
        let test: toml::Table =
            toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        let mut notes = Vec::new();
        let results: Value = match std::fs::read_to_string(run_dir.join("results.json")) {
            Ok(text) => serde_json::from_str(&text).unwrap_or_else(|error| {
                notes.push(format!("results.json is unreadable: {error}"));
                Value::Null
            }),
            Err(_) => {
                notes.push("no results.json: the run was not checked (`ordeal check`)".into());
                Value::Null
            }
        };
        let ops = match checker::load::history(&run_dir.join("history.jsonl")) {
            Ok(file) => file.ops,
            Err(error) => {
                notes.push(format!("history.jsonl: {error}"));
                Vec::new()
            }
        };
        let replica_count = test
            .get("cluster")
            .and_then(|cluster| cluster.get("replica_count"))
            .and_then(toml::Value::as_integer)
            .unwrap_or(0) as u8;
        let mut ledgers = BTreeMap::new();
        for (replica, path) in crate::run::ledger_paths(run_dir, replica_count) {
            match checker::load::ledger(&path) {
                Ok(file) => {
                    ledgers.insert(replica, file.events);
                }
                Err(error) => notes.push(format!("replica {replica}'s ledger: {error}")),
            }
        }
        let byzantine: Vec<u64> = test
            .get("byzantine")
            .and_then(toml::Value::as_array)
            .map(|list| list.iter().filter_map(toml::Value::as_integer).map(|v| v as u64).collect())
            .unwrap_or_default();
        let intervals = timeline::intervals(&ops);
        let faults = timeline::faults(&ops);
        let timeline = timeline::layout(&timeline::Inputs {
            intervals: &intervals,
            faults: &faults,
            ledgers: &ledgers,
            replica_count: u32::from(replica_count),
            byzantine: &byzantine,
        });
        let oracles = oracles(&results);
        let mut failures: Vec<Oracle> =
            oracles.iter().filter(|oracle| oracle.verdict != "valid").cloned().collect();
        failures.sort_by_key(|oracle| (oracle.verdict != "invalid", oracle.name.clone()));
        let groups = GROUPS
            .iter()
            .filter_map(|name| {
                let mut members: Vec<Oracle> =
                    oracles.iter().filter(|oracle| oracle.group == *name).cloned().collect();
                members.sort_by_key(|oracle| (rank(&oracle.verdict), oracle.name.clone()));
                let verdict = members.first()?.verdict.clone();
                Some(Group { name, verdict, oracles: members })
            })
            .collect();
        let divergence = divergence(&results, &ledgers, &byzantine);
        let messages = match &divergence {
            Some(divergence) => {
                lamport::diagram(run_dir, replica_count, divergence.seq, divergence.time)
            }
            None => None,
        };
        let windows = results["checkers"]["linearizable"]["failures"]
            .as_array()
            .into_iter()
            .flatten()
            .take(WINDOWS_MAX)
            .filter_map(lamport::window)
            .collect();
        let options = test.get("options").and_then(toml::Value::as_table);
        Ok(Page {
            test: string(&test, "name"),
            seed: test.get("seed").and_then(toml::Value::as_integer).unwrap_or(0) as u64,
            verdict: results["verdict"].as_str().unwrap_or("unchecked").to_string(),
            expected: results["expected"].as_str().map(str::to_string),
            simulated: test.contains_key("simulated"),
            planted_bug: test.get("planted_bug").and_then(toml::Value::as_str).map(str::to_string),
            scenario: test
                .get("scenario")
                .and_then(|scenario| scenario.get("name"))
                .and_then(toml::Value::as_str)
                .map(str::to_string),
            beyond_budget: results["faults"]["beyond_budget"].as_bool().unwrap_or(false),
            byzantine,
            command: command::reproduce(&test),
            options: options
                .map(|options| {
                    options
                        .iter()
                        .filter(|(key, _)| !matches!(key.as_str(), "store" | "no_progress"))
                        .map(|(key, value)| (key.replace('_', "-"), value.to_string()))
                        .collect()
                })
                .unwrap_or_default(),
            stats: stats(&results),
            adversary: adversary(&results),
            failures,
            groups,
            timeline,
            throughput_svg: plots::throughput(&intervals, &faults),
            latency_svg: plots::latency(&intervals, &faults),
            windows,
            divergence,
            messages,
            faults: fault_rows(&faults),
            files: files(run_dir),
            notes,
        })
    }
}

fn string(table: &toml::Table, key: &str) -> String {
    table.get(key).and_then(toml::Value::as_str).unwrap_or_default().to_string()
}

/// Worst first.
fn rank(verdict: &str) -> u8 {
    match verdict {
        "invalid" => 0,
        "unknown" => 1,
        _ => 2,
    }
}

fn oracles(results: &Value) -> Vec<Oracle> {
    let Some(checkers) = results["checkers"].as_object() else { return Vec::new() };
    checkers
        .iter()
        .map(|(name, result)| {
            let evidence = &evidence_of(result);
            let mut text = serde_json::to_string_pretty(evidence).unwrap_or_default();
            if text.len() > EVIDENCE_CHARS_MAX {
                let cut = (0..=EVIDENCE_CHARS_MAX).rev().find(|i| text.is_char_boundary(*i));
                text.truncate(cut.unwrap_or(0));
                text.push_str("\n... (cut; results.json has it all)");
            }
            let verdict = result["verdict"].as_str().unwrap_or("unknown").to_string();
            Oracle {
                name: name.clone(),
                group: group(name),
                summary: if verdict == "valid" { String::new() } else { summary(evidence) },
                verdict,
                evidence: text,
            }
        })
        .collect()
}

/// An oracle's evidence: its result in `results.json` without the verdict (the fields sit
/// beside it).
fn evidence_of(result: &Value) -> Value {
    let mut evidence = result.clone();
    if let Some(fields) = evidence.as_object_mut() {
        fields.remove("verdict");
    }
    evidence
}

/// A line saying what an oracle found: the first explanation or reason in its evidence.
fn summary(evidence: &Value) -> String {
    fn find(value: &Value, depth: usize) -> Option<String> {
        if depth > 4 {
            return None;
        }
        match value {
            Value::Object(fields) => {
                for key in ["explanation", "reason", "problem", "why", "message", "error"] {
                    if let Some(text) = fields.get(key).and_then(Value::as_str) {
                        return Some(text.to_string());
                    }
                }
                // A list of violations, or a count of them with the first ones listed.
                let listed = fields.get("violations").filter(|list| list.is_array());
                let listed = listed.or_else(|| fields.get("first").filter(|list| list.is_array()));
                if let Some(first) = listed.and_then(|list| list.get(0)) {
                    let at = |key: &str| first[key].as_u64().map(|n| format!(" {key} {n}"));
                    let count = match &fields["violations"] {
                        Value::Array(list) => list.len() as u64,
                        count => count.as_u64().unwrap_or(1),
                    };
                    let first = find(first, depth + 1).map(|what| format!(": {what}"));
                    return Some(format!(
                        "{count} violation(s), the first at{}{}{}",
                        at("view").unwrap_or_default(),
                        at("seq").unwrap_or_default(),
                        first.unwrap_or_default()
                    ));
                }
                if let Some(divergence) = fields.get("divergence") {
                    return Some(format!(
                        "honest replicas diverge at seq {}",
                        divergence["seq"].as_u64().map_or("?".into(), |seq| seq.to_string())
                    ));
                }
                fields.values().find_map(|value| find(value, depth + 1))
            }
            Value::Array(items) => items.iter().find_map(|value| find(value, depth + 1)),
            _ => None,
        }
    }
    find(evidence, 0).unwrap_or_default()
}

fn stats(results: &Value) -> Vec<(String, String)> {
    let stats = &results["stats"];
    let number = |value: &Value| value.as_f64().unwrap_or(0.0);
    let latency = &stats["latency_ms"];
    vec![
        (
            "operations".into(),
            format!(
                "{} ok, {} fail, {} info",
                number(&stats["ok"]),
                number(&stats["fail"]),
                number(&stats["info"])
            ),
        ),
        ("throughput".into(), format!("{:.0} ok/s", number(&stats["ops_per_s"]))),
        (
            "latency".into(),
            format!(
                "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
                number(&latency["p50"]),
                number(&latency["p95"]),
                number(&latency["p99"]),
                number(&latency["max"])
            ),
        ),
        (
            "replicas".into(),
            format!(
                "{} view changes, {} rollbacks, {} checkpoints, {} restarts",
                number(&stats["view_changes"]),
                number(&stats["rollbacks"]),
                number(&stats["checkpoints"]),
                number(&stats["restarts"])
            ),
        ),
    ]
}

/// What the adversary did, in a few lines.
fn adversary(results: &Value) -> Vec<String> {
    let faults = &results["faults"];
    if faults.is_null() {
        return Vec::new();
    }
    let mut lines = Vec::new();
    if let Some(kinds) = faults["by_kind"].as_object().filter(|kinds| !kinds.is_empty()) {
        let kinds: Vec<String> = kinds.iter().map(|(kind, n)| format!("{kind} {n}")).collect();
        lines.push(format!("faults: {}", kinds.join(", ")));
    }
    if let Some(behaviours) = faults["behaviours"].as_object().filter(|b| !b.is_empty()) {
        let behaviours: Vec<String> =
            behaviours.iter().map(|(name, n)| format!("{name} {n}")).collect();
        lines.push(format!("Byzantine behaviours: {}", behaviours.join(", ")));
    }
    lines.push(format!(
        "Byzantine faults acted: {}; vacuous: {}; forced view changes: {}; faulty at most {} of \
         a limit of {}{}",
        faults["acted"].as_u64().unwrap_or(0),
        faults["vacuous"].as_array().map_or(0, Vec::len),
        faults["forced_view_changes"].as_u64().unwrap_or(0),
        faults["faulty_max"].as_u64().unwrap_or(0),
        faults["limit"].as_u64().unwrap_or(0),
        if faults["beyond_budget"].as_bool() == Some(true) { " (beyond the budget)" } else { "" }
    ));
    for vacuous in faults["vacuous"].as_array().into_iter().flatten().take(5) {
        lines.push(format!("vacuous: {}", summary(vacuous).trim()));
    }
    lines
}

/// The honest replicas' entries at the slot of the first ledger divergence, if an oracle found
/// one (`ledger-agreement`, else `checkpoint-agreement`).
fn divergence(
    results: &Value,
    ledgers: &BTreeMap<u32, Vec<LedgerEvent>>,
    byzantine: &[u64],
) -> Option<Divergence> {
    let (oracle, found) = ["ledger-agreement", "checkpoint-agreement", "one-batch-per-slot"]
        .into_iter()
        .find_map(|name| {
            let evidence = &results["checkers"][name];
            let found = evidence
                .get("divergence")
                .or_else(|| evidence["violations"].get(0))
                .or_else(|| evidence["first"].get(0))
                .filter(|found| found["seq"].is_u64())?;
            (results["checkers"][name]["verdict"] == "invalid").then_some((name, found))
        })?;
    let seq = found["seq"].as_u64()?;
    let points = found["points"].as_array().cloned().unwrap_or_else(|| {
        // one-batch-per-slot names the two claims that conflict.
        vec![found["first"].clone(), found["second"].clone()]
    });
    let time = points.iter().filter_map(|point| point["time"].as_u64()).max();
    let columns = ledgers
        .iter()
        .map(|(replica, events)| Column {
            replica: *replica,
            byzantine: byzantine.contains(&u64::from(*replica)),
            entries: events.iter().filter_map(|event| entry(event, seq)).collect(),
        })
        .filter(|column| !column.entries.is_empty())
        .collect();
    Some(Divergence { oracle: oracle.to_string(), seq, time, columns })
}

fn entry(event: &LedgerEvent, seq: u64) -> Option<Entry> {
    let short = |digest: &history::Digest| digest.to_hex()[..16].to_string();
    match event {
        LedgerEvent::Execute(execute) if execute.seq == seq => Some(Entry {
            what: "executed".into(),
            time: format!("{:.3} s", timeline::seconds(execute.time)),
            view: Some(execute.view),
            batch_digest: short(&execute.batch_digest),
            block_hash: short(&execute.block_hash),
            requests: execute
                .requests
                .iter()
                .map(|request| {
                    format!(
                        "client {} #{}: {} -> {}",
                        request.client,
                        request.request,
                        serde_json::to_string(&request.op).unwrap_or_default(),
                        serde_json::to_string(&request.result).unwrap_or_default()
                    )
                })
                .collect(),
        }),
        LedgerEvent::StateTransfer(transfer) if transfer.seq == seq => Some(Entry {
            what: "state transfer".into(),
            time: format!("{:.3} s", timeline::seconds(transfer.time)),
            view: None,
            batch_digest: String::new(),
            block_hash: short(&transfer.block_hash),
            requests: Vec::new(),
        }),
        LedgerEvent::Rollback(rollback)
            if (rollback.to_seq + 1..=rollback.from_seq).contains(&seq) =>
        {
            Some(Entry {
                what: format!("rolled back (to seq {})", rollback.to_seq),
                time: format!("{:.3} s", timeline::seconds(rollback.time)),
                view: None,
                batch_digest: String::new(),
                block_hash: String::new(),
                requests: Vec::new(),
            })
        }
        _ => None,
    }
}

fn fault_rows(faults: &[Fault]) -> Vec<FaultRow> {
    faults
        .iter()
        .map(|fault| FaultRow {
            start: format!("{:.2} s", timeline::seconds(fault.start)),
            end: fault.end.map_or("end".into(), |end| format!("{:.2} s", timeline::seconds(end))),
            kind: fault.kind.clone(),
            targets: fault.replicas.iter().map(u64::to_string).collect::<Vec<_>>().join(", "),
            detail: fault.detail.clone(),
            byzantine: fault.byzantine,
        })
        .collect()
}

/// The run directory's files, relative, for links (bounded: a run has a few dozen).
fn files(run_dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    let mut directories = vec![PathBuf::new()];
    while let Some(relative) = directories.pop() {
        let Ok(entries) = std::fs::read_dir(run_dir.join(&relative)) else { continue };
        for entry in entries.flatten() {
            let path = relative.join(entry.file_name());
            if entry.file_type().is_ok_and(|kind| kind.is_dir()) {
                if files.len() + directories.len() < 500 {
                    directories.push(path);
                }
            } else if files.len() < 500 && path.as_os_str() != FILE {
                files.push(path.display().to_string());
            }
        }
    }
    files.sort();
    files
}
