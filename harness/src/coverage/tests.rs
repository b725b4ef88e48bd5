//! Coverage sums over a small hand-made store.

use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;

/// Writes a run directory `store/test/run` with `results` and, when given, `statuses`.
fn run_dir(
    store: &Path,
    test: &str,
    run: &str,
    results: Option<Value>,
    statuses: Option<Value>,
) -> PathBuf {
    let dir = store.join(test).join(run);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("test.toml"), "name = \"t\"\n").unwrap();
    if let Some(results) = results {
        std::fs::write(dir.join("results.json"), results.to_string()).unwrap();
    }
    if let Some(statuses) = statuses {
        std::fs::write(dir.join("replica-status.json"), statuses.to_string()).unwrap();
    }
    dir
}

fn results(view_changes: u64, checkpoints: u64, acted: u64, byzantine: &[u8]) -> Value {
    json!({
        "verdict": "valid",
        "stats": {"view_changes": view_changes, "rollbacks": 0, "checkpoints": checkpoints},
        "faults": {"restarts": 1, "acted": acted, "twins": 0, "forced_view_changes": 1,
                   "byzantine": byzantine},
    })
}

/// A store of three runs: one with replica counters (replica 0 Byzantine, replica 2 down at
/// the end), one without `replica-status.json`, one unchecked (no `results.json`).
fn store() -> tempfile::TempDir {
    let store = tempfile::tempdir().unwrap();
    let statuses = json!([
        {"id": 0, "counters": {"rejected.conflicting_vote": 100, "snapshots_installed": 100}},
        {"id": 1, "counters": {"rejected.conflicting_vote": 2, "rejected.invalid_mac": 1,
                               "rejected.invalid_client_signature": 4,
                               "snapshots_installed": 1, "rejected.wrong_view": 9}},
        null,
        {"id": 3, "counters": {"rejected.conflicting_proposal": 1, "safety_refusals": 2}},
    ]);
    run_dir(
        store.path(),
        "poe-ts",
        "20261206T000000-s1",
        Some(results(2, 3, 2, &[0])),
        Some(statuses),
    );
    run_dir(store.path(), "pbft", "20261206T000001-s2", Some(results(1, 0, 0, &[])), None);
    run_dir(store.path(), "pbft", "20261206T000002-s3", None, None);
    store
}

#[test]
fn sums_a_store_leaving_out_byzantine_counters_and_unchecked_runs() {
    let store = store();
    let loaded = load(&[store.path().to_path_buf()]).unwrap();
    let coverage = &loaded.coverage;
    assert_eq!(coverage.runs, 2);
    assert_eq!(loaded.unchecked.len(), 1);
    assert!(loaded.unchecked[0].ends_with("20261206T000002-s3"));
    let expected = [
        ("view-changes", 3),
        ("rollbacks", 0),
        ("checkpoints", 3),
        ("state-transfers", 1),
        ("restarts", 2),
        ("byzantine-acted", 2),
        ("equivocations-seen", 3),
        ("forgeries-refused", 1),
        ("bad-client-input-refused", 4),
        ("safety-refusals", 2),
        ("twins", 0),
        ("forced-view-changes", 2),
    ];
    for (name, value) in expected {
        assert_eq!(coverage.get(name), value, "{name}");
    }
    // Every counter of the list is in the sums, and nothing else.
    assert_eq!(coverage.counters.len(), COUNTERS.len());
    assert_eq!(expected.len(), COUNTERS.len());
    let table = coverage.table();
    assert!(table.starts_with("coverage over 2 runs\n"), "{table}");
    assert!(table.contains("twins") && table.contains("(never)"), "{table}");
}

#[test]
fn expect_fails_on_a_zero_counter_and_names_it() {
    let store = store();
    let paths = [store.path().to_path_buf()];
    assert_eq!(run(&paths, false, Some("view-changes,checkpoints")).unwrap(), 0);
    assert_eq!(run(&paths, true, Some("view-changes,twins")).unwrap(), 1);
    let coverage = load(&paths).unwrap().coverage;
    let expected = parse_expect("view-changes, twins,rollbacks").unwrap();
    assert_eq!(coverage.zero(&expected), vec!["twins", "rollbacks"]);
    let error = parse_expect("view-changes,views").unwrap_err().to_string();
    assert!(error.contains("\"views\" is not a coverage counter"), "{error}");
    assert!(run(&paths, false, Some("nope")).is_err());
}

#[test]
fn a_run_directory_and_a_coverage_file_sum_with_the_store() {
    let store = store();
    let run = store.path().join("pbft").join("20261206T000001-s2");
    let mut swept = Coverage::new();
    swept.add(&RunFacts { twins: 5, rollbacks: 1, ..RunFacts::default() });
    swept.add(&RunFacts::default());
    let file = store.path().join("sweep-coverage.json");
    swept.write_file(&file).unwrap();
    let loaded = load(&[run, file.clone()]).unwrap();
    assert_eq!(loaded.coverage.runs, 3);
    assert_eq!(loaded.coverage.get("view-changes"), 1);
    assert_eq!(loaded.coverage.get("twins"), 5);
    assert_eq!(loaded.coverage.get("rollbacks"), 1);
    // The file round-trips.
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(serde_json::from_str::<Coverage>(&text).unwrap(), swept);
}

#[test]
fn bad_input_is_an_error_not_a_panic() {
    let store = store();
    let empty = tempfile::tempdir().unwrap();
    let message = |paths: &[PathBuf]| format!("{:#}", load(paths).unwrap_err());
    assert!(message(&[empty.path().to_path_buf()]).contains("neither a run directory"));
    assert!(message(&[empty.path().join("missing")]).contains("does not exist"));
    assert!(message(&[]).contains("no store"));
    let unchecked = store.path().join("pbft").join("20261206T000002-s3");
    assert!(message(&[unchecked]).contains("without results.json"));
    let broken = run_dir(empty.path(), "t", "r", None, None);
    std::fs::write(broken.join("results.json"), "{not json").unwrap();
    assert!(message(std::slice::from_ref(&broken)).contains("is not JSON"));
    std::fs::write(broken.join("results.json"), "{\"verdict\": \"valid\"}").unwrap();
    assert!(message(std::slice::from_ref(&broken)).contains("is not a run's results"));
    std::fs::write(broken.join("results.json"), results(1, 1, 1, &[]).to_string()).unwrap();
    std::fs::write(broken.join("replica-status.json"), "{}").unwrap();
    assert!(message(&[broken]).contains("is not a list of replica statuses"));
    let not_coverage = empty.path().join("x.json");
    std::fs::write(&not_coverage, "[1, 2]").unwrap();
    assert!(message(&[not_coverage]).contains("is not a coverage file"));
}
