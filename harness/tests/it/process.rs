//! `ordeal test` end to end, and no process left behind on any exit path.

use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use history::OpKind;

use super::{
    cluster_lock, kill_harness_expecting_no_replica, ordeal, processes_mentioning, temp_dir,
    wait_until,
};

fn ordeal_test(store: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(ordeal());
    command
        .args(["test", "--no-progress", "--nemesis", "none", "--concurrency", "8", "--seed", "1"])
        .arg("--store")
        .arg(store)
        .args(extra);
    command
}

fn results(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json is JSON")
}

/// A 4-replica cluster runs for a few seconds: the history parses, operations succeed with
/// proofs, the ledgers agree, no key was ever written to the store, and no process is left.
#[test]
fn cluster_runs_end_to_end_and_leaves_nothing_behind() {
    let _cluster = cluster_lock();
    let store = temp_dir("e2e");
    let output = ordeal_test(&store, &["--time-limit", "3"]).output().expect("ordeal runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("verdict   valid"), "{stdout}");
    assert!(stderr.contains("seed 1"), "the seed is always printed: {stderr}");
    let run = store.join("latest");
    let history =
        checker::load::history(&run.join("history.jsonl")).expect("the history parses").ops;
    let oks: Vec<_> = history.iter().filter(|op| op.kind == OpKind::Ok).collect();
    assert!(!oks.is_empty());
    for op in &oks {
        let proof = op.proof.as_ref().expect("an ok carries its proof");
        assert!(proof.replicas.len() >= 3, "nf = 3 identical informs: {proof:?}");
        assert!(op.client.is_some() && op.request.is_some());
    }
    let results = results(&run);
    assert_eq!(results["verdict"], "valid");
    assert_eq!(results["seed"], 1);
    assert_eq!(results["checkers"]["ledger-agreement"]["verdict"], "valid");
    assert_eq!(results["checkers"]["progress"]["verdict"], "valid");
    assert_eq!(results["checkers"]["replica-processes"]["verdict"], "valid");
    let escalated = &results["checkers"]["replica-processes"]["escalated"];
    assert_eq!(escalated, &serde_json::json!([]), "every replica stopped on the control stop");
    assert!(results["checkers"]["ledger-agreement"]["compared"].as_u64().unwrap() > 0);
    assert_eq!(results["stats"]["ok"].as_u64().unwrap(), oks.len() as u64);
    assert!(run.join("test.toml").exists());
    super::secrets::assert_no_secret_under(&run, 1);
    assert!(processes_mentioning(store.to_str().unwrap()).is_empty());
    for oracle in ORACLES {
        assert_eq!(results["checkers"][oracle]["verdict"], "valid", "{oracle}: {results:#}");
    }
    recheck_detects_a_tampered_ledger(&run);

    // The bank workload: every read of all balances sees the opening total.
    let output = ordeal_test(&store, &["--time-limit", "2", "--workload", "bank", "--keys", "4"])
        .output()
        .expect("ordeal runs");
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let history = checker::load::history(&store.join("latest/history.jsonl")).expect("parses").ops;
    let totals: Vec<i64> = history
        .iter()
        .filter(|op| op.kind == OpKind::Ok && op.f == "read")
        .map(|op| {
            op.value.as_object().expect("balances").values().map(|v| v.as_i64().unwrap()).sum()
        })
        .collect();
    assert!(!totals.is_empty());
    assert!(totals.iter().all(|total| *total == 400), "{totals:?}");
    assert!(history.iter().any(|op| op.kind == OpKind::Ok && op.f == "transfer"));
}

/// The checker's oracles every run ends with.
const ORACLES: [&str; 13] = [
    "history",
    "linearizable",
    "liveness",
    "ledger-agreement",
    "checkpoint-agreement",
    "one-batch-per-slot",
    "ledger-hash-chain",
    "ledger-validity",
    "ledger-at-most-once",
    "ledger-replay",
    "rollback",
    "checkpoint-digests",
    "speculation",
];

/// `ordeal check RUN_DIR` rewrites `results.json`: valid as recorded, invalid once a replica's
/// recorded state digest is altered.
fn recheck_detects_a_tampered_ledger(run: &Path) {
    let status = Command::new(ordeal()).arg("check").arg(run).output().expect("ordeal check");
    assert_eq!(status.status.code(), Some(0), "{}", String::from_utf8_lossy(&status.stdout));
    let ledger = run.join("replicas/r1/ledger.jsonl");
    let text = std::fs::read_to_string(&ledger).expect("ledger");
    let line = text.lines().find(|line| line.contains("\"execute\"")).expect("an execution");
    let value: serde_json::Value = serde_json::from_str(line).expect("JSON");
    let digest = value["state_digest"].as_str().expect("a state digest");
    let flipped = format!("{}{}", if digest.starts_with('0') { "1" } else { "0" }, &digest[1..]);
    std::fs::write(&ledger, text.replacen(digest, &flipped, 1)).expect("tampered");
    let output = Command::new(ordeal()).arg("check").arg(run).output().expect("ordeal check");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    let results = results(run);
    assert_eq!(results["verdict"], "invalid");
    assert_eq!(results["checkers"]["ledger-replay"]["verdict"], "invalid", "{results:#}");
}

/// `ordeal check FILE`: exit 0 valid, 1 invalid, 3 for a malformed file naming line and rule.
#[test]
fn checking_a_history_file_sets_the_exit_code() {
    let histories = Path::new(env!("CARGO_MANIFEST_DIR")).join("../checker/tests/histories");
    let check = |path: &Path| Command::new(ordeal()).arg("check").arg(path).output().unwrap();
    let valid = check(&histories.join("kv-1k-1key-ok.jsonl"));
    assert_eq!(valid.status.code(), Some(0), "{}", String::from_utf8_lossy(&valid.stdout));
    let invalid = check(&histories.join("kv-1k-1key-bad.jsonl"));
    let stdout = String::from_utf8_lossy(&invalid.stdout);
    assert_eq!(invalid.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("linearizable   INVALID"), "{stdout}");
    let dir = temp_dir("check-file");
    let malformed = dir.join("double.jsonl");
    let invoke = r#"{"process":1,"type":"invoke","f":"read","key":"k","value":null,"time":1}"#;
    std::fs::write(&malformed, format!("{invoke}\n{invoke}\n")).unwrap();
    let output = check(&malformed);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("line 2") && stderr.contains("double-invoke"), "{stderr}");
}

/// Waits until the run under `store` has started all four replicas.
fn wait_for_replicas(store: &Path) -> bool {
    let marker = store.to_str().unwrap().to_string();
    wait_until(Duration::from_secs(30), || {
        let replicas = processes_mentioning(&marker)
            .into_iter()
            .filter(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|cmdline| String::from_utf8_lossy(&cmdline).contains("config.toml"))
            })
            .count();
        replicas == 4
    })
}

/// SIGKILL of the harness's process group leaves no replica running: each replica asked the
/// kernel to kill it when its parent dies (PR_SET_PDEATHSIG).
#[test]
fn killing_the_harness_kills_its_replicas() {
    let _cluster = cluster_lock();
    let store = temp_dir("sigkill");
    let mut harness = ordeal_test(&store, &["--time-limit", "60"])
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ordeal starts");
    assert!(wait_for_replicas(&store), "the replicas started");
    kill_harness_expecting_no_replica(&mut harness, &store);
}

/// Ctrl-C: every replica is stopped, the history recorded so far is written and checked, and
/// the exit code says the run did not complete (3).
#[test]
fn interrupting_the_harness_keeps_the_history() {
    let _cluster = cluster_lock();
    let store = temp_dir("sigint");
    let mut harness = ordeal_test(&store, &["--time-limit", "60"])
        .process_group(0)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("ordeal starts");
    assert!(wait_for_replicas(&store), "the replicas started");
    let history = |store: &Path| {
        std::fs::read_dir(store.join("poe-ts-register-none"))
            .ok()
            .and_then(|mut runs| runs.next())
            .and_then(|run| run.ok())
            .map(|run| run.path().join("history.jsonl"))
    };
    assert!(wait_until(Duration::from_secs(30), || {
        history(&store).and_then(|path| std::fs::metadata(path).ok()).is_some_and(|m| m.len() > 0)
    }));
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: kill signals one process; no pointers.
    unsafe { libc::kill(harness.id() as i32, libc::SIGINT) };
    let status = harness.wait().expect("the harness exits");
    assert_eq!(status.code(), Some(3));
    let marker = store.to_str().unwrap().to_string();
    assert!(wait_until(Duration::from_secs(5), || processes_mentioning(&marker).is_empty()));
    let path = history(&store).expect("a run directory");
    let ops = checker::load::history(&path).expect("the partial history parses").ops;
    assert!(ops.iter().any(|op| op.kind == OpKind::Ok));
    let results = results(path.parent().unwrap());
    assert_eq!(results["interrupted"], true);
}

/// `--protocol poe-mac,pbft`: each protocol runs on real processes with the same seed, the
/// table compares them, each `results.json` names its sibling, and the PBFT run is judged by
/// PBFT's rules (f + 1-reply proofs, no rollback).
#[test]
fn protocols_run_side_by_side() {
    let _cluster = cluster_lock();
    let store = temp_dir("side");
    let output = ordeal_test(&store, &["--time-limit", "2", "--protocol", "poe-mac,pbft"])
        .output()
        .expect("ordeal runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("side by side"), "{stdout}");
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|line| line.starts_with("poe-mac ") || line.starts_with("pbft "))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    let run_of = |protocol: &str| {
        let dir = store.join(format!("{protocol}-register-none"));
        let run = std::fs::read_dir(&dir).expect("the protocol's runs").next().expect("one run");
        run.expect("a run directory").path()
    };
    let (poe, pbft) = (run_of("poe-mac"), run_of("pbft"));
    let (poe_results, pbft_results) = (results(&poe), results(&pbft));
    assert_eq!(poe_results["verdict"], "valid", "{poe_results:#}");
    assert_eq!(pbft_results["verdict"], "valid", "{pbft_results:#}");
    assert_eq!(pbft_results["protocol"], "pbft");
    assert_eq!(pbft_results["siblings"]["poe-mac"], poe.display().to_string());
    assert_eq!(poe_results["siblings"]["pbft"], pbft.display().to_string());
    assert_eq!(pbft_results["checkers"]["committed-final"]["verdict"], "valid");
    assert_eq!(pbft_results["checkers"]["client-proofs"]["reply_quorum"], 2);
    assert_eq!(poe_results["checkers"]["client-proofs"]["reply_quorum"], 3);
    assert!(poe_results["checkers"].get("committed-final").is_none(), "PoE may roll back");
    let test_toml = std::fs::read_to_string(pbft.join("test.toml")).expect("test.toml");
    assert!(test_toml.contains("protocol = \"pbft\""), "{test_toml}");
}
