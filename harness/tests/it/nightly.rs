//! `ci/nightly` in its tiny matrix (`NIGHTLY_MATRIX=tiny`: a sweep of 4 simulated seeds, one
//! real run of 3 s, and one case longer than any budget), with `ORDEAL` the binary under
//! test: the outputs exist with the expected content, the budget skips what cannot fit, and a
//! mismatch or an expected coverage counter at zero fails the nightly and keeps the failing run.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{cluster_lock, ordeal, temp_dir};

/// Runs the tiny nightly into `out` with `env`; returns its output.
fn nightly(out: &Path, env: &[(&str, &str)]) -> Output {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ci/nightly");
    let mut command = Command::new("bash");
    command
        .arg(script)
        .args(["--budget", "40s", "--out"])
        .arg(out)
        .env("ORDEAL", ordeal())
        .env("NIGHTLY_MATRIX", "tiny")
        .env_remove("EXPECT")
        .env_remove("NIGHTLY_TINY_EXPECT");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().expect("bash runs ci/nightly")
}

/// The run directories kept in `store` (`STORE/<test>/<run>/test.toml`).
fn kept_runs(store: &Path) -> Vec<PathBuf> {
    let mut runs = Vec::new();
    for test in std::fs::read_dir(store).expect("the store").flatten() {
        if test.file_name() == "latest" || !test.path().is_dir() {
            continue;
        }
        for run in std::fs::read_dir(test.path()).expect("a test directory").flatten() {
            if run.path().join("test.toml").is_file() {
                runs.push(run.path());
            }
        }
    }
    runs
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Setup: the tiny matrix within 40 s. Test: it passes (exit 0); summary.md has a row per
/// case (the day-long run skipped for the budget and listed), no failure and the coverage
/// table; junit.xml has the three cases and the coverage case, one skipped; the store keeps
/// no run (both cases passed) but has its index; the sweep's coverage file exists.
#[test]
fn nightly_tiny_matrix_passes_and_keeps_no_passing_run() {
    let _cluster = cluster_lock();
    let dir = temp_dir("nightly-pass");
    let out = dir.join("out");
    let output = nightly(&out, &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let summary = read(&out.join("summary.md"));
    assert!(
        summary.contains("| case | verdict | expected | ops/s | seconds | result |"),
        "{summary}"
    );
    assert!(
        summary.contains("| sim n4 poe-ts mixed s1..9 shard 0/2 | valid | no-invalid | - |"),
        "{summary}"
    );
    assert!(summary.contains("| n4 poe-ts mixed s1 | valid | valid | "), "{summary}");
    assert!(
        summary
            .contains("| n7 pbft mixed s1 (a day) | not run | valid | - | - | skipped (budget) |"),
        "{summary}"
    );
    assert!(summary.contains("## Failures\n\nNone."), "{summary}");
    assert!(summary.contains("- n7 pbft mixed s1 (a day) (expected 864"), "{summary}");
    assert!(summary.contains("coverage over 5 runs"), "{summary}");
    assert!(!summary.contains("Coverage FAILED"), "{summary}");
    let junit = read(&out.join("junit.xml"));
    assert!(
        junit.contains(
            r#"<testsuite name="ci/nightly" tests="4" failures="0" errors="0" skipped="1""#
        ),
        "{junit}"
    );
    assert!(
        junit.contains(r#"<testcase name="n4 poe-ts mixed s1" classname="ci.nightly""#),
        "{junit}"
    );
    let store = out.join("store");
    assert!(store.join("index.html").is_file());
    assert_eq!(kept_runs(&store), Vec::<PathBuf>::new());
    assert!(out.join("sim/sim_n4_poe-ts_mixed_s1..9_shard_0_2.coverage.json").is_file());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// Setup: the tiny matrix with its real run expected `invalid` (a mismatch: the correct
/// replica is valid) and `twins` expected in the coverage (the tiny matrix starts none).
/// Test: exit 1; summary.md names the mismatch with the command that reproduces it and the
/// zero counter; junit.xml has two failures; the store keeps exactly the failing run, listed in
/// its index.
#[test]
fn nightly_fails_on_a_mismatch_and_a_zero_counter_and_keeps_the_failing_run() {
    let _cluster = cluster_lock();
    let dir = temp_dir("nightly-fail");
    let out = dir.join("out");
    let output =
        nightly(&out, &[("NIGHTLY_TINY_EXPECT", "invalid"), ("EXPECT", "checkpoints,twins")]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("expected coverage counters zero: twins\n"), "{stdout}");
    let summary = read(&out.join("summary.md"));
    assert!(summary.contains("| n4 poe-ts mixed s1 | valid | invalid | "), "{summary}");
    assert!(summary.contains("| MISMATCH |"), "{summary}");
    assert!(
        summary.contains("reproduce: `ordeal test --nemesis mixed --time-limit 3 --seed 1`"),
        "{summary}"
    );
    assert!(summary.contains("**Coverage FAILED**: expected counters zero: twins."), "{summary}");
    let junit = read(&out.join("junit.xml"));
    assert!(junit.contains(r#"tests="4" failures="2" errors="0" skipped="1""#), "{junit}");
    let store = out.join("store");
    let kept = kept_runs(&store);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].join("results.json").is_file());
    assert!(summary.contains(&kept[0].display().to_string()), "{summary}");
    let run_name = kept[0].file_name().unwrap().to_string_lossy().to_string();
    assert!(read(&store.join("index.html")).contains(&run_name));
    std::fs::remove_dir_all(&dir).expect("cleanup");
}

/// A bad budget and an unknown expected counter are errors (exit 3) before anything runs.
#[test]
fn nightly_refuses_a_bad_budget_and_an_unknown_counter() {
    let dir = temp_dir("nightly-bad");
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../ci/nightly");
    for budget in ["20x", "0s", "", "-5m"] {
        let output = Command::new("bash")
            .arg(&script)
            .args(["--budget", budget, "--out"])
            .arg(dir.join("bad-budget"))
            .env("ORDEAL", ordeal())
            .output()
            .expect("bash runs ci/nightly");
        assert_eq!(output.status.code(), Some(3), "budget {budget:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("bad budget"), "budget {budget:?}: {stderr}");
    }
    let output = nightly(&dir.join("bad-expect"), &[("EXPECT", "view-changes,nope")]);
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("\"nope\" is not a coverage counter"), "{stderr}");
    assert!(!dir.join("bad-expect/summary.md").exists());
    std::fs::remove_dir_all(&dir).expect("cleanup");
}
