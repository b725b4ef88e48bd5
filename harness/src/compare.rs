//! Side by side: one seed, several protocols (`ordeal test --protocol poe-ts,poe-mac,pbft`).
//!
//! Each protocol runs with the same options, seed, workload and fault schedule (the nemesis
//! draws from the seed, and role targets such as `primary` resolve in each run), one after the
//! other. Afterwards every run's `results.json` names its siblings, and a table compares
//! verdicts, throughput and latency.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value;

/// One protocol's run, as the table shows it.
#[derive(Debug, Clone)]
pub struct Row {
    /// The protocol's name.
    pub protocol: &'static str,
    /// The run directory.
    pub run_dir: PathBuf,
}

/// Adds `siblings` (the other runs' directories, by protocol) to each run's `results.json`.
///
/// # Errors
///
/// When a `results.json` cannot be read or written.
pub fn link_siblings(rows: &[Row]) -> anyhow::Result<()> {
    for row in rows {
        let path = row.run_dir.join("results.json");
        let mut results = read_results(&path)?;
        let siblings: serde_json::Map<String, Value> = rows
            .iter()
            .filter(|other| other.run_dir != row.run_dir)
            .map(|other| {
                (other.protocol.to_string(), Value::from(other.run_dir.display().to_string()))
            })
            .collect();
        if let Some(object) = results.as_object_mut() {
            object.insert("protocol".into(), Value::from(row.protocol));
            object.insert("siblings".into(), Value::Object(siblings));
        }
        let text = serde_json::to_string_pretty(&results).context("serializing results.json")?;
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// The comparison table of `rows`, one line per protocol.
///
/// # Errors
///
/// When a `results.json` cannot be read.
pub fn table(rows: &[Row]) -> anyhow::Result<String> {
    let mut out = String::new();
    out.push_str(&format!(
        "{:<8} {:<8} {:>6} {:>9} {:>8} {:>8} {:>8} {:>6} {:>9}  {}\n",
        "protocol",
        "verdict",
        "ok",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "max ms",
        "views",
        "rollbacks",
        "run"
    ));
    for row in rows {
        let results = read_results(&row.run_dir.join("results.json"))?;
        let stats = &results["stats"];
        let number = |value: &Value| value.as_f64().unwrap_or(0.0);
        out.push_str(&format!(
            "{:<8} {:<8} {:>6} {:>9.1} {:>8.1} {:>8.1} {:>8.1} {:>6} {:>9}  {}\n",
            row.protocol,
            results["verdict"].as_str().unwrap_or("?"),
            stats["ok"].as_u64().unwrap_or(0),
            number(&stats["ops_per_s"]),
            number(&stats["latency_ms"]["p50"]),
            number(&stats["latency_ms"]["p99"]),
            number(&stats["latency_ms"]["max"]),
            stats["view_changes"].as_u64().unwrap_or(0),
            stats["rollbacks"].as_u64().unwrap_or(0),
            row.run_dir.display()
        ));
    }
    Ok(out)
}

fn read_results(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
