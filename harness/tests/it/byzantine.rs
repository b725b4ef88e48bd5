//! The Byzantine nemesis on real processes: scenarios end with their expected verdict, a run
//! beyond the budget is found invalid, Byzantine clients are refused and counted, and bad
//! scenario files are refused before anything starts.

use std::path::Path;
use std::process::Command;

use super::{cluster_lock, ordeal, processes_mentioning, temp_dir};

fn scenario(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios").join(format!("{name}.toml"))
}

/// Plays scenario file `path` with `seed` into `store`; asserts the verdict was the expected
/// one (exit 0) and returns stdout.
fn play(store: &Path, path: &Path, seed: u64) -> String {
    let output = Command::new(ordeal())
        .args(["test", "--no-progress", "--seed", &seed.to_string(), "--store"])
        .arg(store)
        .arg("--scenario")
        .arg(path)
        .output()
        .expect("ordeal runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "as expected:\n{stdout}\n{stderr}");
    stdout
}

fn results(run_dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(run_dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json is JSON")
}

fn statuses(run_dir: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(run_dir.join("replica-status.json")).expect("statuses");
    serde_json::from_str(&text).expect("replica-status.json is JSON")
}

fn counter(status: &serde_json::Value, name: &str) -> u64 {
    status["counters"][name].as_u64().unwrap_or(0)
}

/// Two colluding Byzantine replicas at n = 4 (an equivocating primary and a backup that
/// supports both sides): the run is labelled beyond budget, the checker finds it invalid, and
/// the scenario's exit code says the verdict was the expected one.
#[test]
fn beyond_budget_collusion_is_found_invalid() {
    let _cluster = cluster_lock();
    let store = temp_dir("beyond-budget");
    let stdout = play(&store, &scenario("beyond-budget-colluding-equivocation"), 1);
    assert!(stdout.contains("BEYOND BUDGET"), "{stdout}");
    let run = store.join("latest");
    let results = results(&run);
    assert_eq!(results["verdict"], "invalid", "{results:#}");
    assert_eq!(results["as_expected"], true);
    assert_eq!(results["faults"]["beyond_budget"], true);
    assert_eq!(results["faults"]["byzantine"], serde_json::json!([0, 1]));
    assert_eq!(results["faults"]["limit"], 2);
    let statuses = statuses(&run);
    assert!(counter(&statuses[0], "byzantine.equivocate") > 0, "the primary equivocated");
    assert!(counter(&statuses[1], "byzantine.equivocate") > 0, "the backup supported both");
    let test = std::fs::read_to_string(run.join("test.toml")).unwrap();
    assert!(test.contains("[[timeline]]") && test.contains("equivocate"), "{test}");
    assert!(processes_mentioning(store.to_str().unwrap()).is_empty());
}

/// One Byzantine primary equivocating within the budget: it really equivocated (honest
/// replicas refused votes for the other digest), its fault acted, and the run is valid. A view
/// change is not required: with one Byzantine replica of four, the side of the split with two
/// honest replicas has nf votes with the primary's own, so slots may keep certifying (a CI run
/// on 2026-12-06 saw no view change, valid, the attack acted).
#[test]
fn equivocating_primary_within_budget_stays_valid() {
    let _cluster = cluster_lock();
    let store = temp_dir("equivocate");
    play(&store, &scenario("equivocating-primary"), 2);
    let run = store.join("latest");
    let results = results(&run);
    assert_eq!(results["verdict"], "valid", "{results:#}");
    assert_eq!(results["faults"]["beyond_budget"], false);
    assert!(results["faults"]["acted"].as_u64().unwrap() >= 1, "{results:#}");
    let statuses = statuses(&run);
    assert!(counter(&statuses[0], "byzantine.equivocate") > 0);
    let refused: u64 = statuses[1..]
        .iter()
        .map(|status| {
            counter(status, "rejected.digest_mismatch")
                + counter(status, "rejected.conflicting_vote")
        })
        .sum();
    assert!(refused > 0, "honest replicas saw the conflicting proposals: {statuses:#?}");
    // The history records the behaviour as a nemesis invoke/info pair.
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    assert!(history.contains(r#""f":"byzantine","value":{"behaviours":["equivocate"]"#));
}

/// Attacks whose effect the adversary's accounting once missed acted (`faults.acted`, no
/// vacuous fault, the `adversary` check valid): wrong results, which only clients see (they
/// outvote them), and an equivocating primary killed and restarted mid-attack (its hook
/// counters start again from zero in its second life).
#[test]
fn attacks_seen_only_by_clients_or_across_a_restart_acted() {
    let _cluster = cluster_lock();
    for name in ["wrong-results", "crash-while-equivocating"] {
        let store = temp_dir(name);
        play(&store, &scenario(name), 1);
        let results = results(&store.join("latest"));
        assert_eq!(results["verdict"], "valid", "{name}: {results:#}");
        assert_eq!(results["checkers"]["adversary"]["verdict"], "valid", "{name}: {results:#}");
        assert_eq!(results["faults"]["vacuous"], serde_json::json!([]), "{name}");
        assert!(results["faults"]["acted"].as_u64().unwrap_or(0) >= 1, "{name}");
    }
}

/// Byzantine clients send malformed, forged, replayed, misaddressed and oversized requests:
/// every replica refuses them with counted reasons, nothing of it executes (the ledger
/// validity and at-most-once oracles hold), and the correct clients are served.
#[test]
fn byzantine_clients_are_refused_and_counted() {
    let _cluster = cluster_lock();
    let store = temp_dir("byzantine-clients");
    let output = Command::new(ordeal())
        .args(["test", "--no-progress", "--nemesis", "none", "--byzantine-clients", "2"])
        .args(["--time-limit", "4", "--concurrency", "4", "--seed", "3", "--store"])
        .arg(&store)
        .output()
        .expect("ordeal runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let results = results(&store.join("latest"));
    assert_eq!(results["verdict"], "valid");
    let byzantine = &results["byzantine_clients"];
    assert_eq!(byzantine["count"], 2);
    for junk in ["bad-signature", "replay", "misaddressed", "malformed", "oversized"] {
        assert!(byzantine["sent"][junk].as_u64().unwrap_or(0) > 0, "{junk}: {byzantine}");
    }
    for refusal in [
        "net.frames_malformed",
        "net.frames_too_large",
        "rejected.client_mismatch",
        "rejected.invalid_client_signature",
    ] {
        assert!(byzantine["refused"][refusal].as_u64().unwrap_or(0) > 0, "{refusal}: {byzantine}");
    }
    assert!(results["stats"]["ok"].as_u64().unwrap() > 100, "correct clients were served");
}

/// A scenario that is not one (bad TOML, an unknown fault or behaviour, a fault past the heal,
/// an unknown field) is refused before anything starts, naming the problem (exit 3).
#[test]
fn bad_scenarios_are_refused() {
    let store = temp_dir("bad-scenarios");
    let entry = "[[timeline]]\nat = 1.0\nuntil = 2.0\n";
    let expect = "[expect]\nverdict = \"valid\"\n";
    let lie = "behaviours = [\"lie\"]\n";
    let short = "[workload]\ntime_limit = 5.0\nliveness_window = 4.0\n";
    let cases = [
        ("name = \n".to_string(), "scenario"),
        (format!("name = \"x\"\n{entry}fault = \"explode\"\n{expect}"), "explode"),
        (format!("name = \"x\"\n{entry}fault = \"byzantine\"\n{lie}{expect}"), "lie"),
        (format!("name = \"x\"\n{short}{entry}fault = \"kill\"\n{expect}"), "heal"),
        (format!("name = \"x\"\nspeed = 3\n{expect}"), "speed"),
        (format!("name = \"x\"\n[cluster]\nbyzantine = [7]\n{expect}"), "replica 7"),
        (format!("name = \"x\"\n[cluster]\nbyzantine = [1, 1]\n{expect}"), "twice"),
    ];
    for (index, (text, expected)) in cases.iter().enumerate() {
        let path = store.join(format!("bad-{index}.toml"));
        std::fs::write(&path, text).unwrap();
        let output = Command::new(ordeal())
            .args(["test", "--no-progress", "--store"])
            .arg(&store)
            .arg("--scenario")
            .arg(&path)
            .output()
            .expect("ordeal runs");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(3), "{text}: {stderr}");
        assert!(stderr.contains(expected), "{text}: {stderr}");
    }
    assert!(!store.join("latest").exists(), "no run was made");
}

/// A twin for the whole run (`--twins`): a second process with the Byzantine replica's
/// identity runs from its own directory, catches up with the cluster and executes (its ledger
/// is there, not judged), half the other replicas talk to it, it is gone after the run, and the
/// honest replicas stay valid.
#[test]
fn a_twin_runs_beside_its_replica_and_the_run_stays_valid() {
    let _cluster = cluster_lock();
    let store = temp_dir("twins");
    let output = Command::new(ordeal())
        .args(["test", "--no-progress", "--nemesis", "none", "--twins", "--byzantine", "1"])
        .args(["--time-limit", "8", "--liveness-window", "3", "--concurrency", "4"])
        .args(["--seed", "5", "--store"])
        .arg(&store)
        .output()
        .expect("ordeal runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let run = store.join("latest");
    let results = results(&run);
    assert_eq!(results["verdict"], "valid", "{results:#}");
    assert_eq!(results["faults"]["twins"], 1, "{results:#}");
    let twin = results["faults"]["byzantine"][0].as_u64().expect("one Byzantine replica");
    let directory = run.join(format!("replicas/r{twin}/twin"));
    let ledger =
        std::fs::read_to_string(directory.join("ledger.jsonl")).expect("the twin's ledger");
    assert!(ledger.lines().count() > 1, "the twin caught up and executed:\n{ledger}");
    super::secrets::assert_no_secret_under(&run, 5);
    let history = std::fs::read_to_string(run.join("history.jsonl")).unwrap();
    let invoke = history
        .lines()
        .find(|line| line.contains(r#""type":"invoke","f":"twins""#))
        .expect("the twin is a nemesis event");
    assert!(invoke.contains(r#""group":["#), "{invoke}");
    assert!(processes_mentioning(store.to_str().unwrap()).is_empty(), "no twin outlives the run");
}

/// Link faults really happen on real traffic: a short scenario with overlapping loss,
/// duplication, reordering and delay makes the relay drop, duplicate, reorder and delay
/// packets (its counters in `results.json`), and the run stays valid.
#[test]
fn link_faults_are_applied_by_the_relay() {
    let _cluster = cluster_lock();
    let store = temp_dir("link-faults");
    let scenario = store.join("links.toml");
    let mut text = String::from(
        "name = \"links\"\n[workload]\nconcurrency = 4\ntime_limit = 6.0\nliveness_window = 2.0\n",
    );
    for (fault, parameter) in [
        ("loss", "probability = 0.1"),
        ("duplicate", "probability = 0.3"),
        ("reorder", "probability = 0.3"),
        ("delay", "delay_ms = 5\njitter_ms = 5"),
    ] {
        text.push_str(&format!(
            "[[timeline]]\nat = 0.5\nuntil = 3.5\nfault = \"{fault}\"\n\
             target = \"all\"\n{parameter}\n"
        ));
    }
    text.push_str("[expect]\nverdict = \"valid\"\n");
    std::fs::write(&scenario, text).unwrap();
    play(&store, &scenario, 6);
    let results = results(&store.join("latest"));
    let total = &results["network"]["total"];
    for counter in ["dropped_loss", "duplicated", "reordered", "delayed", "forwarded"] {
        assert!(total[counter].as_u64().unwrap_or(0) > 0, "{counter}: {total}");
    }
    assert_eq!(results["verdict"], "valid");
}
