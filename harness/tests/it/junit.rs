//! `--junit` through the real binary: a short simulated sweep writes a report, and `ordeal
//! junit` names the bad line of a malformed cases file (exit 3).

use std::process::Command;

use super::{ordeal, temp_dir};

/// Setup: `ordeal sim --seeds 1..3 --junit F` (well under a second). Test: F is a well-formed
/// JUnit document with one passing summary case for the valid seeds (the writer's schema
/// validation is in `harness::junit`'s unit tests).
#[test]
fn a_simulated_sweep_writes_a_junit_report() {
    let dir = temp_dir("junit-sim");
    let report = dir.join("sim.xml");
    let output = Command::new(ordeal())
        .args(["sim", "--seeds", "1..3", "--no-progress", "--store"])
        .arg(dir.join("store"))
        .arg("--junit")
        .arg(&report)
        .output()
        .expect("ordeal sim runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let xml = std::fs::read_to_string(&report).expect("the report is written");
    oxml::parse(&xml).expect("a well-formed document");
    assert!(
        xml.contains(r#"<testsuites name="ordeal.sim" tests="1" failures="0" errors="0""#),
        "{xml}"
    );
    assert!(xml.contains("seeds 1..3: 2 valid"), "{xml}");
}

/// Setup: a cases file whose second line has three fields. Test: `ordeal junit` exits 3 with
/// an error naming the file and line 2, and writes no report.
#[test]
fn a_malformed_cases_file_is_an_error_naming_the_line() {
    let dir = temp_dir("junit-cases");
    let cases = dir.join("cases.tsv");
    std::fs::write(&cases, "ok\tci.gate\t1\tpassed\t\t\nbroken\tci.gate\t1\n").expect("written");
    let report = dir.join("gate.xml");
    let output = Command::new(ordeal())
        .args(["junit", "--suite", "ci/gate", "--cases"])
        .arg(&cases)
        .arg("--out")
        .arg(&report)
        .output()
        .expect("ordeal junit runs");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("line 2: 3 tab-separated fields, expected 6"), "{stderr}");
    assert!(!report.exists());
}
