//! The report's timeline: one lane per nemesis row, replica and client, drawn as SVG by the
//! template from the geometry computed here.
//!
//! Everything is bounded by the drawing, not by the run: a lane's consecutive operations of the
//! same outcome that fall within one pixel of each other are drawn as one bar (its tooltip
//! counts them), and clients beyond [`CLIENT_LANES_MAX`] share the last lane.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use history::{LedgerEvent, Op, OpKind, Process};
use serde::Serialize;
use serde_json::Value;

/// The drawing's width, pixels.
pub const WIDTH: f64 = 1200.0;
/// The width of the lane labels, pixels.
const LEFT: f64 = 110.0;
/// The height of one lane, pixels.
const LANE: f64 = 16.0;
/// The height of the time axis, pixels.
const AXIS: f64 = 22.0;
/// The most client lanes; the clients beyond share the last one.
pub const CLIENT_LANES_MAX: usize = 64;
/// The most bars and marks drawn in all (a bound on the page's size).
const SHAPES_MAX: usize = 40_000;

/// One client operation: its invocation and completion.
#[derive(Debug, Clone, PartialEq)]
pub struct Interval {
    /// The logical process.
    pub process: u64,
    /// The client identity (the process without one).
    pub lane: u64,
    /// Invocation, nanoseconds.
    pub invoke: u64,
    /// Completion, nanoseconds (`None`: never completed).
    pub complete: Option<u64>,
    /// `Ok`, `Fail` or `Info` (never completed: `Info`).
    pub kind: OpKind,
    /// The function.
    pub f: String,
    /// The key, if any.
    pub key: Option<String>,
    /// The value invoked (or, for a read, the value read).
    pub value: Value,
}

/// Pairs every client invocation with its process's next completion, in history order.
pub fn intervals(ops: &[Op]) -> Vec<Interval> {
    let mut open: BTreeMap<u64, usize> = BTreeMap::new();
    let mut intervals: Vec<Interval> = Vec::new();
    for op in ops {
        let Process::Client(process) = op.process else { continue };
        match op.kind {
            OpKind::Invoke => {
                open.insert(process, intervals.len());
                intervals.push(Interval {
                    process,
                    lane: op.client.map_or(process, u64::from),
                    invoke: op.time,
                    complete: None,
                    kind: OpKind::Info,
                    f: op.f.clone(),
                    key: op.key.clone(),
                    value: op.value.clone(),
                });
            }
            kind => {
                if let Some(index) = open.remove(&process) {
                    let interval = &mut intervals[index];
                    interval.complete = Some(op.time);
                    interval.kind = kind;
                    if kind == OpKind::Ok && !op.value.is_null() {
                        interval.value = op.value.clone();
                    }
                }
            }
        }
    }
    intervals
}

/// One fault of the nemesis: from its start to the event that ended it.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// The fault kind (`kill`, `partition`, `byzantine`, ...).
    pub kind: String,
    /// Start, nanoseconds.
    pub start: u64,
    /// End, nanoseconds (`None`: lasted to the end of the run).
    pub end: Option<u64>,
    /// The replicas it targeted.
    pub replicas: Vec<u64>,
    /// What it was, for a person (targets, behaviours, link faults, how it ended).
    pub detail: String,
    /// A Byzantine fault (drawn in the adversary's colour).
    pub byzantine: bool,
}

/// The nemesis's faults, from its events in the history: an invocation starts one, the next
/// `info` of the same kind ends it; an `info` with no fault open is an instant (a forced view
/// change, a heal).
pub fn faults(ops: &[Op]) -> Vec<Fault> {
    let mut faults: Vec<Fault> = Vec::new();
    let mut open: BTreeMap<&str, VecDeque<usize>> = BTreeMap::new();
    for op in ops.iter().filter(|op| op.process == Process::Nemesis) {
        match op.kind {
            OpKind::Invoke => {
                open.entry(op.f.as_str()).or_default().push_back(faults.len());
                faults.push(Fault {
                    kind: op.f.clone(),
                    start: op.time,
                    end: None,
                    replicas: replicas_of(&op.value),
                    detail: describe(&op.value),
                    byzantine: is_byzantine(&op.f),
                });
            }
            _ => match open.get_mut(op.f.as_str()).and_then(VecDeque::pop_front) {
                Some(index) => {
                    let fault = &mut faults[index];
                    fault.end = Some(op.time);
                    let ended = describe(&op.value);
                    if !ended.is_empty() {
                        fault.detail = format!("{}; then {ended}", fault.detail);
                    }
                }
                None => faults.push(Fault {
                    kind: op.f.clone(),
                    start: op.time,
                    end: Some(op.time),
                    replicas: replicas_of(&op.value),
                    detail: describe(&op.value),
                    byzantine: is_byzantine(&op.f),
                }),
            },
        }
    }
    faults
}

fn is_byzantine(kind: &str) -> bool {
    matches!(kind, "byzantine" | "twins" | "force-view-change" | "lone-executor" | "amnesia")
}

fn replicas_of(value: &Value) -> Vec<u64> {
    let list = value.get("replicas").or_else(|| value.get("cut")).and_then(Value::as_array);
    list.map(|replicas| replicas.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// A nemesis value as `key value, key value`.
fn describe(value: &Value) -> String {
    match value {
        Value::Object(fields) => fields
            .iter()
            .filter(|(_, value)| !value.is_null())
            .map(|(key, value)| format!("{key} {}", compact(value)))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Null => String::new(),
        other => compact(other),
    }
}

fn compact(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Object(fields) => {
            let parts: Vec<String> = fields
                .iter()
                .filter(|(_, value)| value.as_f64() != Some(0.0))
                .map(|(key, value)| format!("{key}={}", compact(value)))
                .collect();
            format!("{{{}}}", parts.join(" "))
        }
        other => other.to_string(),
    }
}

/// The timeline's geometry, ready for the template.
#[derive(Debug, Default, Serialize)]
pub struct Timeline {
    /// Total width and height, pixels.
    pub width: f64,
    /// Total height, pixels.
    pub height: f64,
    /// Where lanes begin (right of their labels), pixels.
    pub left: f64,
    /// The time axis's ticks.
    pub ticks: Vec<Tick>,
    /// The lanes, top to bottom.
    pub lanes: Vec<Lane>,
    /// Fault windows shaded over every lane.
    pub bands: Vec<Shape>,
    /// Bars: nemesis faults, replica downtime, client operations.
    pub bars: Vec<Shape>,
    /// Instants: view changes, rollbacks, checkpoints, state transfers, restarts (the end of a
    /// kill).
    pub marks: Vec<Shape>,
    /// Shapes left out because the drawing reached its bound.
    pub omitted: usize,
}

/// A tick of the time axis.
#[derive(Debug, Serialize)]
pub struct Tick {
    /// Position, pixels.
    pub x: f64,
    /// Seconds.
    pub label: String,
}

/// A lane.
#[derive(Debug, Serialize)]
pub struct Lane {
    /// Top, pixels.
    pub y: f64,
    /// Its label.
    pub label: String,
    /// `nemesis`, `replica`, `byzantine` (a Byzantine replica) or `client`.
    pub class: String,
}

/// A bar, band or mark.
#[derive(Debug, Clone, Serialize)]
pub struct Shape {
    /// Left (a mark's centre), pixels.
    pub x: f64,
    /// Top (a mark's centre), pixels.
    pub y: f64,
    /// Width, pixels (0 for a mark).
    pub w: f64,
    /// Height, pixels.
    pub h: f64,
    /// The CSS class: what it is.
    pub class: String,
    /// Text drawn on it (may be empty).
    pub label: String,
    /// The tooltip.
    pub title: String,
}

/// What the timeline draws.
pub struct Inputs<'a> {
    /// Client operations.
    pub intervals: &'a [Interval],
    /// The nemesis's faults.
    pub faults: &'a [Fault],
    /// Every replica's ledger, by replica.
    pub ledgers: &'a BTreeMap<u32, Vec<LedgerEvent>>,
    /// n.
    pub replica_count: u32,
    /// The replicas declared Byzantine.
    pub byzantine: &'a [u64],
}

/// Lays the timeline out.
pub fn layout(inputs: &Inputs<'_>) -> Timeline {
    let end = run_end(inputs).max(1);
    let scale = (WIDTH - LEFT - 10.0) / end as f64;
    let x = |nanos: u64| LEFT + nanos as f64 * scale;
    let mut timeline = Timeline { width: WIDTH, left: LEFT, ..Timeline::default() };
    let mut y = AXIS;
    let mut shapes = 0usize;
    let mut push = |list: &mut Vec<Shape>, shape: Shape, omitted: &mut usize| {
        if shapes < SHAPES_MAX {
            shapes += 1;
            list.push(shape);
        } else {
            *omitted += 1;
        }
    };

    // Nemesis rows: each fault on the first row free at its start.
    let mut rows: Vec<u64> = Vec::new();
    for fault in inputs.faults {
        let fault_end = fault.end.unwrap_or(end);
        let row = match rows.iter().position(|&free| free <= fault.start) {
            Some(row) => row,
            None => {
                rows.push(0);
                rows.len() - 1
            }
        };
        rows[row] = fault_end.max(fault.start + 1);
        let width = (x(fault_end) - x(fault.start)).max(3.0);
        let class = if fault.byzantine { "fault byzantine" } else { fault_class(&fault.kind) };
        let targets = fault.replicas.iter().map(u64::to_string).collect::<Vec<_>>().join(",");
        let title = format!(
            "{} {}: {:.2} s to {}; {}",
            fault.kind,
            if targets.is_empty() { String::new() } else { format!("[{targets}]") },
            seconds(fault.start),
            fault.end.map_or("the end".to_string(), |end| format!("{:.2} s", seconds(end))),
            fault.detail
        );
        let label = if targets.is_empty() {
            fault.kind.clone()
        } else {
            format!("{} [{targets}]", fault.kind)
        };
        let bar = Shape {
            x: x(fault.start),
            y: y + row as f64 * LANE + 2.0,
            w: width,
            h: LANE - 4.0,
            class: class.to_string(),
            label,
            title: title.clone(),
        };
        push(&mut timeline.bars, bar, &mut timeline.omitted);
        if fault.end != Some(fault.start) {
            let band = Shape {
                x: x(fault.start),
                y: 0.0,
                w: width,
                h: 0.0,
                class: format!("band {class}"),
                label: String::new(),
                title,
            };
            timeline.bands.push(band);
        }
    }
    for row in 0..rows.len().max(1) {
        let label = if row == 0 { "nemesis" } else { "" };
        timeline.lanes.push(Lane { y, label: label.to_string(), class: "nemesis".into() });
        y += LANE;
    }

    // Replica lanes: what the nemesis did to each, and what its ledger says it did.
    for replica in 0..inputs.replica_count {
        let byzantine = inputs.byzantine.contains(&u64::from(replica));
        let label = if byzantine { format!("r{replica} byzantine") } else { format!("r{replica}") };
        let class = if byzantine { "byzantine" } else { "replica" };
        timeline.lanes.push(Lane { y, label, class: class.into() });
        for fault in inputs.faults.iter().filter(|fault| fault.replicas.contains(&replica.into())) {
            if fault.end == Some(fault.start) {
                continue;
            }
            let fault_end = fault.end.unwrap_or(end);
            let class = match fault.kind.as_str() {
                "kill" => "down",
                "pause" => "paused",
                _ if fault.byzantine => "acting",
                _ => "network",
            };
            let bar = Shape {
                x: x(fault.start),
                y: y + 3.0,
                w: (x(fault_end) - x(fault.start)).max(2.0),
                h: LANE - 6.0,
                class: format!("state {class}"),
                label: String::new(),
                title: format!("r{replica} {}: {}", fault.kind, fault.detail),
            };
            push(&mut timeline.bars, bar, &mut timeline.omitted);
            if fault.kind == "kill"
                && let Some(restarted) = fault.end
            {
                let mark = Shape {
                    x: x(restarted),
                    y: y + LANE / 2.0,
                    w: 0.0,
                    h: LANE,
                    class: "mark restart".into(),
                    label: String::new(),
                    title: format!("r{replica} restarted at {:.3} s", seconds(restarted)),
                };
                push(&mut timeline.marks, mark, &mut timeline.omitted);
            }
        }
        for event in inputs.ledgers.get(&replica).map(Vec::as_slice).unwrap_or_default() {
            let (class, label, title) = match event {
                LedgerEvent::ViewEntered(view) => {
                    ("view", format!("v{}", view.view), format!("entered view {}", view.view))
                }
                LedgerEvent::Rollback(rollback) => (
                    "rollback",
                    String::new(),
                    format!("rolled back seq {}..={}", rollback.to_seq + 1, rollback.from_seq),
                ),
                LedgerEvent::Checkpoint(checkpoint) if checkpoint.stable => (
                    "checkpoint",
                    String::new(),
                    format!("stable checkpoint at seq {}", checkpoint.seq),
                ),
                LedgerEvent::StateTransfer(transfer) => {
                    ("transfer", String::new(), format!("state transfer to seq {}", transfer.seq))
                }
                _ => continue,
            };
            let mark = Shape {
                x: x(event.time()),
                y: y + LANE / 2.0,
                w: 0.0,
                h: LANE,
                class: format!("mark {class}"),
                label,
                title: format!("r{replica} at {:.3} s: {title}", seconds(event.time())),
            };
            push(&mut timeline.marks, mark, &mut timeline.omitted);
        }
        y += LANE;
    }

    // Client lanes: one per client identity, operations merged within a pixel.
    let lanes: BTreeSet<u64> = inputs.intervals.iter().map(|interval| interval.lane).collect();
    let lane_index: BTreeMap<u64, usize> = lanes
        .iter()
        .enumerate()
        .map(|(index, lane)| (*lane, index.min(CLIENT_LANES_MAX)))
        .collect();
    let lane_count = lanes.len().min(CLIENT_LANES_MAX + 1);
    for index in 0..lane_count {
        let label = match lanes.iter().nth(index) {
            Some(lane) if index < CLIENT_LANES_MAX => format!("client {lane}"),
            _ => "other clients".to_string(),
        };
        timeline.lanes.push(Lane { y: y + index as f64 * LANE, label, class: "client".into() });
    }
    let mut by_lane: Vec<Vec<&Interval>> = vec![Vec::new(); lane_count];
    for interval in inputs.intervals {
        by_lane[lane_index[&interval.lane]].push(interval);
    }
    for (index, intervals) in by_lane.iter_mut().enumerate() {
        intervals.sort_by_key(|interval| interval.invoke);
        let top = y + index as f64 * LANE + 2.0;
        let mut pending: Option<(Shape, usize, u64, u64)> = None;
        for interval in intervals.iter() {
            let complete = interval.complete.unwrap_or(end);
            let class = kind_class(interval.kind);
            let (left, right) = (x(interval.invoke), x(complete).max(x(interval.invoke) + 1.0));
            if let Some((shape, count, _, last)) = &mut pending
                && shape.class == class
                && left - (shape.x + shape.w) < 1.0
            {
                shape.w = right.max(shape.x + shape.w) - shape.x;
                *count += 1;
                *last = complete;
                continue;
            }
            if let Some(done) = pending.take() {
                push(&mut timeline.bars, finish(done), &mut timeline.omitted);
            }
            let shape = Shape {
                x: left,
                y: top,
                w: right - left,
                h: LANE - 4.0,
                class: class.to_string(),
                label: String::new(),
                title: describe_op(interval),
            };
            pending = Some((shape, 1, interval.invoke, complete));
        }
        if let Some(done) = pending.take() {
            push(&mut timeline.bars, finish(done), &mut timeline.omitted);
        }
    }
    y += lane_count as f64 * LANE;

    for band in &mut timeline.bands {
        band.y = AXIS;
        band.h = y - AXIS;
    }
    let step = tick_step(seconds(end));
    let mut tick = 0.0;
    while tick <= seconds(end) + 1e-9 && timeline.ticks.len() < 100 {
        timeline.ticks.push(Tick { x: x((tick * 1e9) as u64), label: format!("{tick} s") });
        tick += step;
    }
    timeline.height = y + 4.0;
    timeline
}

/// A merged bar: its tooltip counts the operations when there are several.
fn finish((mut shape, count, first, last): (Shape, usize, u64, u64)) -> Shape {
    if count > 1 {
        shape.title = format!(
            "{count} {} operations, {:.3} s to {:.3} s",
            shape.class.trim_start_matches("op "),
            seconds(first),
            seconds(last)
        );
    }
    shape
}

fn describe_op(interval: &Interval) -> String {
    let key = interval.key.as_deref().map(|key| format!(" {key}")).unwrap_or_default();
    let took = interval.complete.map_or("never completed".to_string(), |complete| {
        format!("{:.2} ms", complete.saturating_sub(interval.invoke) as f64 / 1e6)
    });
    format!(
        "process {}: {}{key} {} -> {}, at {:.3} s, {took}",
        interval.process,
        interval.f,
        interval.value,
        kind_class(interval.kind).trim_start_matches("op "),
        seconds(interval.invoke)
    )
}

fn kind_class(kind: OpKind) -> &'static str {
    match kind {
        OpKind::Ok => "op ok",
        OpKind::Fail => "op fail",
        OpKind::Info | OpKind::Invoke => "op info",
    }
}

fn fault_class(kind: &str) -> &'static str {
    match kind {
        "kill" | "pause" => "fault process",
        "heal" => "fault heal",
        _ => "fault network",
    }
}

/// The last time anything happened.
fn run_end(inputs: &Inputs<'_>) -> u64 {
    let ops = inputs.intervals.iter().map(|interval| interval.complete.unwrap_or(interval.invoke));
    let faults = inputs.faults.iter().map(|fault| fault.end.unwrap_or(fault.start));
    let ledgers = inputs.ledgers.values().flatten().map(LedgerEvent::time);
    ops.chain(faults).chain(ledgers).max().unwrap_or(0)
}

/// Seconds of `nanos`.
pub fn seconds(nanos: u64) -> f64 {
    nanos as f64 / 1e9
}

/// A round step giving 5 to 15 ticks over `span` seconds.
fn tick_step(span: f64) -> f64 {
    let mut step = 0.1;
    for candidate in [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0] {
        step = candidate;
        if span / candidate <= 15.0 {
            break;
        }
    }
    step
}
