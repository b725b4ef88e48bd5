//! The process nemesis on real replicas: real SIGKILL, restart, SIGSTOP and SIGCONT, recorded in
//! the history, within the budget, healed, and nothing left behind.
//!
//! A restarted replica starts from empty state until replica durability lands, so these tests
//! assert the nemesis's mechanics, not the run's verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use history::{OpKind, Process};
use nemesis::{FaultKind, Schedule, ScheduleOptions};

use super::{
    cluster_lock, kill_harness_expecting_no_replica, ordeal, processes_mentioning, temp_dir,
    wait_until,
};

/// The short run of these tests: 12 s of workload, a fault every 2 s, the heal at 12 − 5 = 7 s.
const RUN: [&str; 10] = [
    "--time-limit",
    "12",
    "--nemesis-interval",
    "2",
    "--liveness-window",
    "5",
    "--op-timeout",
    "2",
    "--concurrency",
    "8",
];

/// The first seed whose schedule for [`RUN`] both kills and pauses.
fn seed_with_kill_and_pause() -> u64 {
    let kinds = [FaultKind::Kill, FaultKind::Pause];
    let options = ScheduleOptions {
        replica_count: 4,
        f: 1,
        kinds: kinds.to_vec(),
        byzantine: Vec::new(),
        interval: Duration::from_secs(2),
        time_limit: Duration::from_secs(12),
        liveness_window: Duration::from_secs(5),
    };
    (1..100)
        .find(|seed| {
            let faults = Schedule::new(*seed, &options).expect("a schedule").faults;
            kinds.iter().all(|kind| faults.iter().any(|fault| fault.kind() == *kind))
        })
        .expect("a seed with both kinds")
}

/// What polling `/proc` saw of a run's replicas: every pid of each replica, and whether one was
/// ever stopped (state `T`).
#[derive(Default)]
struct Observed {
    pids: BTreeMap<usize, BTreeSet<u32>>,
    stopped: BTreeSet<usize>,
}

impl Observed {
    fn poll(&mut self, marker: &str) {
        for pid in processes_mentioning(marker) {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            let Some(replica) = (0..4).find(|index| cmdline.contains(&format!("r{index}/config")))
            else {
                continue;
            };
            self.pids.entry(replica).or_default().insert(pid);
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            if status.lines().any(|line| line.starts_with("State:") && line.contains("T (stopped)"))
            {
                self.stopped.insert(replica);
            }
        }
    }
}

/// Setup: a 4-replica cluster (f = 1) under `--nemesis kill,pause` for 12 s with a seed whose
/// schedule kills and pauses. Test: a killed replica comes back as a new process and a paused
/// one is really stopped; every fault is an invoke/info pair of process `nemesis` on at most f
/// replicas; the final heal is the last nemesis event; `results.json` counts the restarts and
/// the budget; the options are in `test.toml`; nothing is left running or stopped.
#[test]
fn kill_and_pause_are_real_recorded_within_budget_and_healed() {
    let _cluster = cluster_lock();
    let store = temp_dir("nemesis");
    let seed = seed_with_kill_and_pause();
    let mut harness = Command::new(ordeal())
        .args(["test", "--no-progress", "--nemesis", "kill,pause", "--store"])
        .arg(&store)
        .args(["--seed", &seed.to_string()])
        .args(RUN)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ordeal starts");
    let marker = store.to_str().unwrap().to_string();
    let mut observed = Observed::default();
    let exited = wait_until(Duration::from_secs(60), || {
        observed.poll(&marker);
        matches!(harness.try_wait(), Ok(Some(_)))
    });
    assert!(exited, "the run ends");
    let output = harness.wait_with_output().expect("the harness's output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let code = output.status.code();
    assert!(matches!(code, Some(0..=2)), "the harness itself did not fail: {code:?}\n{stderr}");
    assert!(processes_mentioning(&marker).is_empty(), "no replica outlives the run");
    assert!(
        observed.pids.values().any(|pids| pids.len() >= 2),
        "a killed replica came back as a new process: {:?}",
        observed.pids
    );
    assert!(!observed.stopped.is_empty(), "a paused replica was seen stopped (SIGSTOP)");

    let run = store.join("latest");
    let history = checker::load::history(&run.join("history.jsonl")).expect("parses").ops;
    let nemesis: Vec<_> = history.iter().filter(|op| op.process == Process::Nemesis).collect();
    assert!(nemesis.len() >= 4, "faults and the heal: {nemesis:?}");
    assert!(nemesis.len().is_multiple_of(2), "invoke/info pairs");
    let mut killed = BTreeSet::new();
    for pair in nemesis.chunks(2) {
        let (invoke, info) = (pair[0], pair[1]);
        assert_eq!((invoke.kind, info.kind), (OpKind::Invoke, OpKind::Info), "{pair:?}");
        assert_eq!(invoke.f, info.f, "{pair:?}");
        assert!(invoke.time <= info.time);
        if invoke.f == "heal" {
            continue;
        }
        let replicas = invoke.value["replicas"].as_array().expect("targets");
        assert_eq!(replicas.len(), 1, "within f = 1: {invoke:?}");
        assert!(
            ["random", "primary", "minority"].contains(&invoke.value["target"].as_str().unwrap())
        );
        let done = if invoke.f == "kill" { "restarted" } else { "resumed" };
        assert_eq!(&info.value[done], &invoke.value["replicas"], "{info:?}");
        if invoke.f == "kill" {
            killed.insert(replicas[0].as_u64().unwrap());
        }
    }
    let kinds: BTreeSet<&str> = nemesis.iter().map(|op| op.f.as_str()).collect();
    assert_eq!(kinds, ["heal", "kill", "pause"].into_iter().collect());
    let heal = nemesis.last().unwrap();
    assert_eq!((heal.f.as_str(), heal.kind), ("heal", OpKind::Info), "the heal is last");
    assert_eq!(nemesis.iter().filter(|op| op.f == "heal").count(), 2, "one heal");
    // The heal is at 7 s of workload; the history's clock started a little before it.
    assert!((7.0..8.5).contains(&(heal.time as f64 / 1e9)), "heal at {} ns", heal.time);

    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(run.join("results.json")).unwrap()).unwrap();
    let kills = nemesis.iter().filter(|op| op.f == "kill" && op.kind == OpKind::Info).count();
    assert!(kills >= 1);
    assert_eq!(results["stats"]["restarts"].as_u64(), Some(kills as u64), "{results:#}");
    let faults = &results["faults"];
    assert_eq!(faults["budget_f"], 1);
    assert_eq!(faults["faults"].as_u64(), Some((nemesis.len() as u64 - 2) / 2));
    assert_eq!(faults["crashed_max"], 1);
    assert_eq!(faults["paused_max"], 1);
    assert_eq!(faults["restarts_unanswered"], 0);
    assert_eq!(faults["errors"], serde_json::json!([]));
    assert_eq!(faults["nemesis"], serde_json::json!(["kill", "pause"]));
    assert_eq!(results["checkers"]["liveness"]["window_s"], 5.0);
    let heal_s = results["checkers"]["liveness"]["final_heal_s"].as_f64().unwrap();
    assert!((heal_s - heal.time as f64 / 1e9).abs() < 1e-6, "the oracle's heal is ours");
    let processes = &results["checkers"]["replica-processes"];
    assert_eq!(processes["crashed"], serde_json::json!([]), "kills are not crashes: {processes}");
    for replica in killed {
        let directory = run.join(format!("replicas/r{replica}"));
        assert!(directory.join("replica.log.1").exists(), "the killed instance's log is kept");
        assert!(directory.join("replica.log").exists());
    }
    let test = std::fs::read_to_string(run.join("test.toml")).unwrap();
    for line in
        ["nemesis = [\"kill\", \"pause\"]", "nemesis_interval = 2.0", "liveness_window = 5.0"]
    {
        assert!(test.contains(line), "test.toml records {line}:\n{test}");
    }
}

/// SIGKILL of the harness after a restart leaves no replica: a restarted replica is spawned
/// from the harness's main thread, so its death signal still fires.
#[test]
fn killing_the_harness_kills_restarted_replicas() {
    let _cluster = cluster_lock();
    let store = temp_dir("nemesis-sigkill");
    let mut harness = Command::new(ordeal())
        .args(["test", "--no-progress", "--nemesis", "kill", "--nemesis-interval", "1"])
        .args(["--time-limit", "60", "--concurrency", "4", "--seed", "1", "--store"])
        .arg(&store)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ordeal starts");
    let history = store.join("poe-ts-register-kill");
    let restarted = wait_until(Duration::from_secs(30), || {
        let Some(Ok(run)) = std::fs::read_dir(&history).ok().and_then(|mut runs| runs.next())
        else {
            return false;
        };
        std::fs::read_to_string(run.path().join("history.jsonl"))
            .is_ok_and(|text| text.contains(r#""type":"info","f":"kill""#))
    });
    assert!(restarted, "a replica was killed and restarted");
    kill_harness_expecting_no_replica(&mut harness, &store);
}

/// Nemesis options that make no schedule are refused before anything starts, naming the
/// option (exit 3).
#[test]
fn nemesis_options_that_make_no_schedule_are_refused() {
    let store = temp_dir("nemesis-options");
    let cases: [(&[&str], &str); 7] = [
        (&["--nemesis", "kill", "--time-limit", "5", "--liveness-window", "10"], "liveness-window"),
        (&["--nemesis", "pause", "--replicas", "3"], "--replicas"),
        (&["--nemesis", "none,kill"], "--nemesis"),
        (&["--nemesis", "byzantine", "--byzantine", "0"], "--byzantine"),
        (&["--nemesis", "kill", "--byzantine", "2"], "--byzantine"),
        (&["--nemesis", "kill", "--nemesis-interval", "0"], "--nemesis-interval"),
        (
            &[
                "--nemesis",
                "kill",
                "--time-limit",
                "12",
                "--nemesis-interval",
                "3",
                "--liveness-window",
                "10",
            ],
            "heal",
        ),
    ];
    for (arguments, expected) in cases {
        let output = Command::new(ordeal())
            .args(["test", "--no-progress", "--store"])
            .arg(&store)
            .args(arguments)
            .output()
            .expect("ordeal runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{arguments:?}: {stderr}");
        assert!(stderr.contains("invalid option"), "{arguments:?}: {stderr}");
        assert!(stderr.contains(expected), "{arguments:?}: {stderr}");
    }
    assert!(!Path::new(&store).join("latest").exists(), "no run was made");
}
