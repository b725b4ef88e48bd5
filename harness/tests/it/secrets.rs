//! Secrets never outlive a run: no key is ever written under the run directory, so not even a
//! harness killed with SIGKILL (which deletes nothing) leaves one in the store CI uploads.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use replica::crypto::dealer::PublicKeys;
use replica::net::config::NodeConfig;

use super::{cluster_lock, ordeal, processes_mentioning, temp_dir, wait_until};

/// The seed of the run (its keys follow from it, so the test can look for them).
const SEED: u64 = 9;

/// A child process killed (SIGKILL) and reaped when dropped.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every file under `directory`, recursively.
fn files_under(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![directory.to_path_buf()];
    // Bounded by the tree: each directory is visited once (symbolic links are not followed).
    while let Some(directory) = pending.pop() {
        for entry in std::fs::read_dir(&directory).expect("a readable directory").flatten() {
            let kind = entry.file_type().expect("a file type");
            if kind.is_dir() {
                pending.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

/// Asserts that no file under `run` is a key file or holds a private key: no PEM private key
/// (the CA's, a node's), and none of the replicas' protocol secrets (signing key, threshold
/// share, pair keys), in hex (as a JSON key file had them) or raw. The protocol keys are
/// derived again from the run's seed, and checked against its `public.json`.
pub(crate) fn assert_no_secret_under(run: &Path, seed: u64) {
    let node = NodeConfig::load(&run.join("replicas/r0/config.toml")).expect("r0's config");
    let keys = harness::run::cluster_keys(&node.cluster, seed).expect("the run's keys");
    let public: PublicKeys = serde_json::from_str(
        &std::fs::read_to_string(run.join("public.json")).expect("public.json"),
    )
    .expect("public keys");
    assert_eq!(public, keys.public, "the keys derived from the seed are the run's");
    let mut needles: Vec<(String, Vec<u8>)> = vec![("PRIVATE KEY".into(), b"PRIVATE KEY".into())];
    for secrets in &keys.replicas {
        let json = serde_json::to_value(secrets).expect("secrets serialize");
        let hexes = [
            &json["signing_key"],
            &json["threshold_share"]["key"],
            &json["replica_macs"][0],
            &json["client_macs"][0],
        ];
        for hex in hexes {
            let hex = hex.as_str().expect("a hex key").to_string();
            let raw = ::hex::decode(&hex).expect("hex");
            assert_eq!(raw.len(), 32);
            needles.push((format!("replica {}'s key {hex} (raw)", secrets.id), raw));
            needles.push((format!("replica {}'s key {hex}", secrets.id), hex.into_bytes()));
        }
    }
    let files = files_under(run);
    assert!(files.iter().any(|file| file.ends_with("config.toml")), "{files:?}");
    for file in &files {
        let name = file.file_name().and_then(|name| name.to_str()).unwrap_or_default();
        assert!(
            !matches!(name, "node.key" | "secrets.json" | "ca.key"),
            "a key file in the store: {}",
            file.display()
        );
        let bytes = std::fs::read(file).expect("a readable file");
        for (what, needle) in &needles {
            assert!(
                !bytes.windows(needle.len()).any(|window| window == needle.as_slice()),
                "{} holds {what}",
                file.display()
            );
        }
    }
}

/// Setup: a 4-replica run with a Byzantine replica and its twin (so five processes, each
/// handed its keys), under no nemesis, for a time limit far beyond the test.
///
/// Test: once clients have operations recorded (every replica is up, and has its keys) and
/// the twin runs, SIGKILL the harness alone (no cleanup runs); then every replica and the twin
/// die with it (PR_SET_PDEATHSIG), and no file under the run directory holds a key.
#[test]
fn a_sigkilled_harness_leaves_no_secret_in_the_store() {
    let _cluster = cluster_lock();
    let store = temp_dir("secrets-sigkill");
    let harness = Command::new(ordeal())
        .args(["test", "--no-progress", "--nemesis", "none", "--twins", "--byzantine", "1"])
        .args(["--concurrency", "4", "--time-limit", "60", "--seed", &SEED.to_string()])
        .arg("--store")
        .arg(&store)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("ordeal starts");
    // A failed assertion must not leave the harness (and so its replicas) running.
    let mut harness = KillOnDrop(harness);
    let run = || {
        let test = std::fs::read_dir(&store).ok()?.flatten().find(|entry| {
            entry.file_type().is_ok_and(|kind| kind.is_dir() && !kind.is_symlink())
        })?;
        std::fs::read_dir(test.path()).ok()?.flatten().next().map(|run| run.path())
    };
    let started = wait_until(Duration::from_secs(30), || {
        let Some(run) = run() else { return false };
        let history = std::fs::metadata(run.join("history.jsonl")).is_ok_and(|m| m.len() > 0);
        let twin = std::fs::read_dir(run.join("replicas")).is_ok_and(|replicas| {
            replicas.flatten().any(|replica| {
                std::fs::metadata(replica.path().join("twin/replica.log"))
                    .is_ok_and(|m| m.len() > 0)
            })
        });
        history && twin
    });
    assert!(started, "the replicas, their clients and the twin started");
    let run = run().expect("the run directory");
    let marker = store.to_str().unwrap().to_string();
    let harness_pid = harness.0.id();
    let replicas: Vec<u32> =
        processes_mentioning(&marker).into_iter().filter(|pid| *pid != harness_pid).collect();
    assert_eq!(replicas.len(), 5, "four replicas and a twin: {replicas:?}");
    // SAFETY: kill signals one process; no pointers.
    unsafe { libc::kill(harness_pid as i32, libc::SIGKILL) };
    harness.0.wait().expect("the harness is reaped");
    assert!(
        wait_until(Duration::from_secs(5), || processes_mentioning(&marker).is_empty()),
        "replicas outlived the harness: {:?}",
        processes_mentioning(&marker)
    );
    assert_no_secret_under(&run, SEED);
}
