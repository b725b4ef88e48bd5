//! Two drawings of a violation: the failing window of a linearizability violation (one row per
//! process, one bar per operation from invocation to completion, as Knossos and Porcupine draw
//! it), and the protocol messages around a ledger divergence as a Lamport diagram (one column
//! per replica, time downwards, one arrow per message, as Maelstrom's `messages.svg`), from the
//! replicas' flight recorders (`replicas/r<i>/flight.jsonl`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The width of a window's drawing, pixels.
const WINDOW_WIDTH: f64 = 1000.0;
/// The width of its process labels, pixels.
const WINDOW_LEFT: f64 = 90.0;
/// The height of one process row, pixels.
const ROW: f64 = 24.0;

/// A failing window of operations on one key.
#[derive(Debug, Serialize)]
pub struct Window {
    /// The key.
    pub key: String,
    /// What is wrong.
    pub explanation: String,
    /// Whether the evidence names the one operation that cannot be placed.
    pub culprit: bool,
    /// The drawing's size, pixels.
    pub width: f64,
    /// Its height.
    pub height: f64,
    /// One row per process.
    pub rows: Vec<(f64, String)>,
    /// One bar per operation.
    pub bars: Vec<Bar>,
}

/// One operation (or message) drawn.
#[derive(Debug, Serialize)]
pub struct Bar {
    /// Left, pixels.
    pub x: f64,
    /// Top, pixels.
    pub y: f64,
    /// Width, pixels.
    pub w: f64,
    /// `ok`, `info`, or with ` culprit` the operation that cannot be placed.
    pub class: String,
    /// The text on it.
    pub label: String,
    /// The tooltip.
    pub title: String,
}

/// The drawing of one failure of the `linearizable` oracle's evidence.
pub fn window(failure: &Value) -> Option<Window> {
    let mut ops: Vec<&Value> = failure["window"].as_array()?.iter().collect();
    let culprit = &failure["op"];
    if !culprit.is_null() && !ops.iter().any(|op| op["line"] == culprit["line"]) {
        ops.push(culprit);
    }
    let time = |op: &Value, key: &str| op[key].as_u64();
    let start = ops.iter().filter_map(|op| time(op, "invoke_time")).min()?;
    let end = ops
        .iter()
        .filter_map(|op| time(op, "complete_time").or_else(|| time(op, "invoke_time")))
        .max()?
        .max(start + 1);
    // A little room after the last completion for operations that never completed.
    let end = end + (end - start) / 10;
    let scale = (WINDOW_WIDTH - WINDOW_LEFT - 10.0) / (end - start) as f64;
    let x = |nanos: u64| WINDOW_LEFT + nanos.saturating_sub(start) as f64 * scale;
    let processes: BTreeSet<String> = ops.iter().map(|op| op["process"].to_string()).collect();
    let row_of: BTreeMap<&String, usize> =
        processes.iter().enumerate().map(|(index, process)| (process, index)).collect();
    let bars = ops
        .iter()
        .map(|op| {
            let invoke = time(op, "invoke_time").unwrap_or(start);
            let complete = time(op, "complete_time").unwrap_or(end);
            let process = op["process"].to_string();
            let is_culprit = op["line"] == culprit["line"];
            let kind = op["type"].as_str().unwrap_or("ok");
            let label = format!("{} {}", op["f"].as_str().unwrap_or("?"), op["value"]);
            Bar {
                x: x(invoke),
                y: row_of[&process] as f64 * ROW + 4.0,
                w: (x(complete) - x(invoke)).max(2.0),
                class: if is_culprit { format!("{kind} culprit") } else { kind.to_string() },
                title: format!(
                    "line {}: process {process} {label} ({kind}), {:.3} ms to {:.3} ms",
                    op["line"],
                    invoke as f64 / 1e6,
                    complete as f64 / 1e6
                ),
                label,
            }
        })
        .collect();
    Some(Window {
        key: failure["key"].as_str().unwrap_or_default().to_string(),
        explanation: failure["explanation"].as_str().unwrap_or_default().to_string(),
        culprit: !culprit.is_null(),
        width: WINDOW_WIDTH,
        height: processes.len() as f64 * ROW + 8.0,
        rows: processes
            .iter()
            .enumerate()
            .map(|(index, process)| (index as f64 * ROW + 4.0, format!("process {process}")))
            .collect(),
        bars,
    })
}

/// One line of a flight recorder (`replica::flight::Flight`, read without depending on its
/// type: the report reads any run's files).
#[derive(Debug, Clone, Deserialize)]
struct Flight {
    time: u64,
    /// `sent` or `received`.
    dir: String,
    peer: u32,
    kind: String,
    #[serde(default)]
    view: Option<u64>,
    #[serde(default)]
    seq: Option<u64>,
    #[serde(default)]
    digest: Option<String>,
}

/// The most messages a diagram draws.
const MESSAGES_MAX: usize = 160;
/// How far before the divergence the diagram looks for view changes, nanoseconds.
const BEFORE: u64 = 2_000_000_000;
/// The diagram's column spacing and height per message, pixels.
const COLUMN: f64 = 180.0;
const STEP: f64 = 14.0;

/// What pairs a send with its receipt: sender, receiver, kind, view, seq.
type MessageKey = (u32, u32, String, Option<u64>, Option<u64>);

/// A Lamport diagram of the messages around a divergent slot.
#[derive(Debug, Serialize)]
pub struct Diagram {
    /// The slot.
    pub seq: u64,
    /// Size, pixels.
    pub width: f64,
    /// Height, pixels.
    pub height: f64,
    /// One column per replica: x and label.
    pub columns: Vec<(f64, String)>,
    /// One arrow per message.
    pub arrows: Vec<Arrow>,
    /// Replicas without a flight recorder file (killed before they could write it).
    pub missing: Vec<u32>,
}

/// One message.
#[derive(Debug, Serialize)]
pub struct Arrow {
    /// From (sender column, send time), pixels.
    pub x1: f64,
    /// Send time, pixels.
    pub y1: f64,
    /// To (receiver column, receive time), pixels.
    pub x2: f64,
    /// Receive time, pixels.
    pub y2: f64,
    /// The message kind (its colour).
    pub class: String,
    /// `PROPOSE v1 #33`.
    pub label: String,
    /// Details.
    pub title: String,
}

/// The diagram of the messages about `seq`, and of the view changes before `time`, from the
/// flight recorders of the replicas of `run_dir`; `None` when no replica left one.
pub fn diagram(run_dir: &Path, replica_count: u8, seq: u64, time: Option<u64>) -> Option<Diagram> {
    let mut flights: Vec<(u32, Flight)> = Vec::new();
    let mut missing = Vec::new();
    for replica in 0..u32::from(replica_count) {
        let path = run_dir.join("replicas").join(format!("r{replica}")).join("flight.jsonl");
        let Ok(text) = std::fs::read_to_string(&path) else {
            missing.push(replica);
            continue;
        };
        flights.extend(
            text.lines()
                .filter_map(|line| serde_json::from_str::<Flight>(line).ok())
                .map(|flight| (replica, flight)),
        );
    }
    if flights.is_empty() {
        return None;
    }
    let around = time.unwrap_or(u64::MAX);
    let relevant = |flight: &Flight| {
        flight.seq == Some(seq)
            || (matches!(flight.kind.as_str(), "view-change" | "new-view" | "state-transfer")
                && flight.time <= around.saturating_add(BEFORE / 4)
                && flight.time + BEFORE >= around.min(u64::MAX - BEFORE))
    };
    let mut chosen: Vec<(u32, Flight)> =
        flights.into_iter().filter(|(_, flight)| relevant(flight)).collect();
    chosen.sort_by_key(|(replica, flight)| (flight.time, *replica));
    if chosen.len() > 2 * MESSAGES_MAX {
        // The entries nearest the divergence.
        let centre = chosen.partition_point(|(_, flight)| flight.time < around);
        let from = centre.saturating_sub(MESSAGES_MAX).min(chosen.len() - 2 * MESSAGES_MAX);
        chosen = chosen[from..from + 2 * MESSAGES_MAX].to_vec();
    }
    // Pair each send with the first matching receipt at its receiver.
    let mut receipts: BTreeMap<MessageKey, Vec<usize>> = BTreeMap::new();
    for (index, (replica, flight)) in chosen.iter().enumerate() {
        if flight.dir == "received" {
            let key = (flight.peer, *replica, flight.kind.clone(), flight.view, flight.seq);
            receipts.entry(key).or_default().push(index);
        }
    }
    let mut used = vec![false; chosen.len()];
    let mut messages: Vec<(u32, u64, u32, Option<u64>, &Flight)> = Vec::new();
    for (replica, flight) in &chosen {
        if flight.dir != "sent" {
            continue;
        }
        let key = (*replica, flight.peer, flight.kind.clone(), flight.view, flight.seq);
        let receipt = receipts.get(&key).and_then(|indices| {
            indices
                .iter()
                .copied()
                .find(|&other| !used[other] && chosen[other].1.time >= flight.time)
        });
        if let Some(other) = receipt {
            used[other] = true;
        }
        messages.push((
            *replica,
            flight.time,
            flight.peer,
            receipt.map(|i| chosen[i].1.time),
            flight,
        ));
    }
    for (index, (replica, flight)) in chosen.iter().enumerate() {
        if flight.dir == "received" && !used[index] {
            // Its sender left no record of it (a Byzantine twin, or a recorder that wrapped).
            messages.push((flight.peer, flight.time, *replica, Some(flight.time), flight));
        }
    }
    messages.sort_by_key(|message| message.1);
    messages.truncate(MESSAGES_MAX);
    let times: BTreeSet<u64> = messages.iter().flat_map(|m| [Some(m.1), m.3]).flatten().collect();
    let rank: BTreeMap<u64, usize> = times.iter().enumerate().map(|(i, t)| (*t, i)).collect();
    let x = |replica: u32| 60.0 + f64::from(replica) * COLUMN;
    let y = |time: u64| 40.0 + rank[&time] as f64 * STEP;
    let arrows = messages
        .iter()
        .map(|&(from, sent, to, received, flight)| {
            let label = format!(
                "{}{}{}",
                flight.kind,
                flight.view.map(|view| format!(" v{view}")).unwrap_or_default(),
                flight.seq.map(|seq| format!(" #{seq}")).unwrap_or_default()
            );
            let (x2, y2) = match received {
                Some(time) => (x(to), y(time)),
                // Never received (dropped, or the receiver died): half an arrow.
                None => ((x(from) + x(to)) / 2.0, y(sent) + STEP / 2.0),
            };
            Arrow {
                x1: x(from),
                y1: y(sent),
                x2,
                y2,
                class: flight.kind.clone(),
                title: format!(
                    "r{from} -> r{to}: {label}{} sent {:.3} s{}",
                    flight.digest.as_deref().map(|d| format!(" digest {d}")).unwrap_or_default(),
                    sent as f64 / 1e9,
                    received.map_or(", never received".to_string(), |time| format!(
                        ", received {:.3} s",
                        time as f64 / 1e9
                    ))
                ),
                label,
            }
        })
        .collect();
    Some(Diagram {
        seq,
        width: x(u32::from(replica_count)) - COLUMN / 2.0,
        height: 40.0 + times.len() as f64 * STEP + 20.0,
        columns: (0..u32::from(replica_count)).map(|r| (x(r), format!("r{r}"))).collect(),
        arrows,
        missing,
    })
}
