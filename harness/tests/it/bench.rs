//! `ordeal bench` through the real binary: a two-step ladder of two protocols, fault-free and
//! with a crashed backup, writes `bench.json` and `bench.svg` with every figure; a bad option
//! is refused before anything starts.

use std::process::Command;

use super::{cluster_lock, ordeal, temp_dir};

/// Setup: `ordeal bench` with PoE-MAC and PBFT at n = 4, both fault cases, two short steps
/// each (about 15 s). Test: every series has its steps, half-knee step and summary; load was
/// served; frames, bytes and signatures per operation were counted; the crash case ran with
/// one replica down; a ratio of PoE-MAC over PBFT exists per case; the plot was written.
#[test]
fn a_short_bench_measures_both_protocols_in_both_cases() {
    let _cluster = cluster_lock();
    let dir = temp_dir("bench");
    let output = Command::new(ordeal())
        .args(["bench", "--protocol", "poe-mac,pbft", "--replicas", "4", "--faults", "none,crash"])
        .args(["--start-rate", "150", "--max-steps", "2", "--warmup", "0.2", "--step-time", "0.6"])
        .args(["--clients", "32", "--out"])
        .arg(&*dir)
        .output()
        .expect("ordeal bench runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("knees (highest sustained step)"), "{stdout}");
    let text = std::fs::read_to_string(dir.join("bench.json")).expect("bench.json");
    let bench: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let steps = bench["steps"].as_array().expect("steps");
    for protocol in ["poe-mac", "pbft"] {
        for (faults, up) in [("none", 4), ("crash", 3)] {
            let mine: Vec<&serde_json::Value> = steps
                .iter()
                .filter(|step| step["protocol"] == protocol && step["faults"] == faults)
                .collect();
            assert!(mine.len() >= 2, "{protocol} {faults}: {mine:?}");
            for step in &mine {
                assert_eq!(step["replicas_up"], up, "{step}");
                assert!(step["achieved_ops_s"].as_f64().unwrap() > 10.0, "{step}");
                assert!(step["p50_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{step}");
                assert!(step["messages_per_op"].as_f64().unwrap() > 1.0, "{step}");
                assert!(step["bytes_per_op"].as_f64().unwrap() > 100.0, "{step}");
                assert!(step["cpu_s_per_op"].as_f64().unwrap() > 0.0, "{step}");
                let share = step["harness_cpu_share"].as_f64().unwrap();
                assert!(share > 0.0 && share < 1.0, "{step}");
                // PoE-MAC authenticates with MACs and signed supports, PBFT signs its votes:
                // both verify client signatures.
                let crypto = &step["crypto_per_op"];
                let verified = crypto["ed25519_batch_verify"].as_f64().unwrap()
                    + crypto["ed25519_verify"].as_f64().unwrap();
                assert!(verified >= 1.0, "{step}");
                assert!(crypto["mac_tag"].as_f64().unwrap() > 0.0, "{step}");
            }
        }
    }
    let series = bench["series"].as_array().expect("series");
    assert_eq!(series.len(), 4, "{series:?}");
    assert_eq!(bench["ratios"].as_array().expect("ratios").len(), 2, "{bench}");
    let svg = std::fs::read_to_string(dir.join("bench.svg")).expect("bench.svg");
    assert!(svg.contains("poe-mac") && svg.contains("one backup crashed"));
}

/// Setup: `ordeal bench --factor 1`. Test: exit 3 naming the option, and no cluster started
/// (no output directory's clusters).
#[test]
fn a_bad_bench_option_is_refused() {
    let dir = temp_dir("bench-option");
    let output = Command::new(ordeal())
        .args(["bench", "--factor", "1", "--out"])
        .arg(&*dir)
        .output()
        .expect("ordeal bench runs");
    assert_eq!(output.status.code(), Some(3));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("factor") && stderr.contains("not in (1, 10]"), "{stderr}");
    assert!(!dir.join("clusters").exists());
}
