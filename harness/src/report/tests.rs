//! The report of stored runs with known violations: asserted on the page's structure (which
//! sections, which shapes, which text), never on pixels.

use clap::Parser as _;

use crate::cli::{Cli, Command};
use crate::sim::{SimParams, simulate};

/// A stored simulated run of `scenario` (a file under `scenarios/`).
fn stored_scenario_run(store: &std::path::Path, scenario: &str) -> std::path::PathBuf {
    let path = format!("{}/../scenarios/{scenario}", env!("CARGO_MANIFEST_DIR"));
    let cli = Cli::try_parse_from(["ordeal", "sim", "--scenario", &path]).expect("valid options");
    let Command::Sim(args) = cli.command else { panic!("a sim command") };
    let network = SimParams::of(&args);
    let run = simulate(&args.test, network, 1).expect("a run");
    let (stored, _) = run.store(store, network).expect("stored");
    stored.run_dir
}

/// Beyond the budget, two colluding equivocators split the honest ledgers: the page leads with
/// the failing ledger oracle, shows the adversary's band and the Byzantine replicas' lanes,
/// the divergent slot side by side, the messages around it, and the command to replay it.
#[test]
fn the_report_of_a_divergence_shows_the_oracle_the_slot_and_the_adversary() {
    let store = tempfile::tempdir().expect("a temporary store");
    let run_dir = stored_scenario_run(store.path(), "beyond-budget-colluding-equivocation.toml");
    let html = std::fs::read_to_string(run_dir.join(super::FILE)).expect("report.html written");

    assert!(html.contains(r#"<span class="verdict invalid">INVALID</span>"#));
    let failures = section(&html, r#"<section id="failures">"#, "</section>");
    assert!(failures.contains(r#"data-oracle="ledger-agreement""#), "{failures}");
    assert!(failures.contains("honest replicas diverge at seq"), "{failures}");
    assert!(!failures.contains(r#"data-oracle="linearizable""#), "only failures lead: {failures}");

    let timeline = section(&html, r#"<svg id="timeline""#, "</svg>");
    assert!(timeline.contains(r#"class="band fault byzantine""#), "the adversary's band");
    assert!(timeline.contains("byzantine [0,1]"), "the band names its targets");
    assert!(timeline.contains(">r0 byzantine</text>") && timeline.contains(">r2</text>"));
    assert!(timeline.contains(r#"class="op ok""#), "client operations");

    let divergence = section(&html, r#"<h2 id="divergence">"#, "<h2>Nemesis</h2>");
    assert!(divergence.contains("divergence at seq"), "{divergence}");
    assert!(divergence.matches(r#"<div class="column">"#).count() >= 2);
    assert!(divergence.contains(r#"<svg class="lamport""#), "the messages, from flight.jsonl");
    assert!(divergence.matches(r#"<line class="arrow "#).count() > 3);

    assert!(html.contains("ordeal sim --protocol poe-mac --scenario "));
    assert!(html.contains("--seed 1</code>"));
    // Self-contained: nothing is fetched.
    assert!(!html.contains("http://") || !html.contains("src=\"http"));
    assert!(!html.contains("<script src"));
}

/// A run whose history is not linearizable: the page draws the failing window of operations
/// with the operation that cannot be placed outlined.
#[test]
fn the_report_of_a_linearizability_violation_draws_the_failing_window() {
    let directory = tempfile::tempdir().expect("a temporary run directory");
    let run_dir = directory.path();
    std::fs::write(
        run_dir.join("test.toml"),
        "name = \"stale-read\"\nseed = 9\n[cluster]\nreplica_count = 0\n[options]\n\
         time_limit = 1.0\n",
    )
    .expect("test.toml");
    // Process 1 reads 3, which nothing wrote.
    let history = [
        r#"{"time":0,"process":0,"type":"invoke","f":"write","key":"x","value":1}"#,
        r#"{"time":10,"process":0,"type":"ok","f":"write","key":"x","value":1}"#,
        r#"{"time":20,"process":0,"type":"invoke","f":"write","key":"x","value":2}"#,
        r#"{"time":30,"process":0,"type":"ok","f":"write","key":"x","value":2}"#,
        r#"{"time":40,"process":1,"type":"invoke","f":"read","key":"x","value":null}"#,
        r#"{"time":50,"process":1,"type":"ok","f":"read","key":"x","value":3}"#,
    ];
    std::fs::write(run_dir.join("history.jsonl"), history.join("\n") + "\n").expect("history");
    let file = checker::load::history(&run_dir.join("history.jsonl")).expect("a history");
    let inputs = checker::audit::Inputs { history: Some(Ok(file.into())), ..Default::default() };
    let report = checker::audit::check(inputs);
    let results = serde_json::json!({"verdict": report.verdict, "checkers": report.checkers});
    std::fs::write(run_dir.join("results.json"), results.to_string()).expect("results");

    let path = super::write(run_dir).expect("a report");
    let html = std::fs::read_to_string(path).expect("report.html");
    let failures = section(&html, r#"<section id="failures">"#, "</section>");
    assert!(failures.contains(r#"data-oracle="linearizable""#), "{failures}");
    let window = section(&html, r#"<h2 id="linearizability">"#, "</svg>");
    assert!(window.contains("Key <b>x</b>"), "{window}");
    assert!(window.contains(r#"class="ok culprit""#), "the read that cannot be placed: {window}");
    assert!(window.contains("read 3"), "{window}");
    assert!(window.contains("cannot be placed"), "{window}");
    assert!(window.contains(">process 1</text>"), "{window}");
}

/// A directory that is not a run is refused with its name.
#[test]
fn a_directory_without_a_run_is_refused() {
    let directory = tempfile::tempdir().expect("a temporary directory");
    let error = super::write(directory.path()).expect_err("not a run");
    assert!(format!("{error:#}").contains("not a run directory"), "{error:#}");
}

#[test]
fn every_oracle_has_a_group() {
    for name in ["linearizable", "ledger-agreement", "checkpoint-digests", "speculation"] {
        assert_ne!(super::group(name), "other", "{name}");
    }
    assert_eq!(super::group("replica-processes"), "process");
}

/// The text of `html` from `start` to the next `end` after it.
fn section<'a>(html: &'a str, start: &str, end: &str) -> &'a str {
    let from = html.find(start).unwrap_or_else(|| panic!("no {start} in the page"));
    let length = html[from..].find(end).unwrap_or(html.len() - from);
    &html[from..from + length]
}

/// A kill and its restart, read from the nemesis's events: a bar on the nemesis lane, downtime
/// on the killed replica's lane ending in a restart mark, and a band over every lane; a
/// forced view change without a start is an instant.
#[test]
fn the_timeline_draws_a_kill_as_downtime_ending_in_a_restart() {
    use history::{Op, OpKind, Process};
    let event = |time: u64, kind: OpKind, f: &str, value: serde_json::Value| Op {
        index: None,
        time,
        process: Process::Nemesis,
        kind,
        f: f.into(),
        key: None,
        value,
        client: None,
        request: None,
        proof: None,
        error: None,
    };
    let ops = [
        event(1_000_000_000, OpKind::Invoke, "kill", serde_json::json!({"replicas": [2]})),
        event(1_500_000_000, OpKind::Info, "force-view-change", serde_json::json!({"view": 1})),
        event(2_000_000_000, OpKind::Info, "kill", serde_json::json!({"restarted": [2]})),
    ];
    let faults = super::timeline::faults(&ops);
    assert_eq!(faults.len(), 2);
    assert_eq!((faults[0].kind.as_str(), faults[0].end), ("kill", Some(2_000_000_000)));
    assert_eq!(faults[1].start, faults[1].end.expect("an instant"));
    let timeline = super::timeline::layout(&super::timeline::Inputs {
        intervals: &[],
        faults: &faults,
        ledgers: &Default::default(),
        replica_count: 4,
        byzantine: &[],
    });
    let classes = |shapes: &[super::timeline::Shape]| -> Vec<String> {
        shapes.iter().map(|shape| shape.class.clone()).collect()
    };
    assert!(classes(&timeline.bars).contains(&"fault process".to_string()));
    assert!(classes(&timeline.bars).contains(&"state down".to_string()));
    assert_eq!(classes(&timeline.marks), ["mark restart"]);
    assert!(timeline.marks[0].title.contains("r2 restarted"));
    assert_eq!(classes(&timeline.bands), ["band fault process"], "the instant is no band");
}
