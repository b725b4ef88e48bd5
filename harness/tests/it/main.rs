//! Integration tests: real replica processes over real QUIC, started by the real `ordeal`
//! binary. Each test holds [`CLUSTER`] so that only one cluster runs at a time on the machine's
//! two cores.

#![allow(clippy::disallowed_methods, reason = "integration tests wait on real processes")]

mod bench;
mod byzantine;
mod faults;
mod junit;
mod network;
mod nightly;
mod process;
mod secrets;
mod transport;

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

/// Serializes the tests that start clusters.
static CLUSTER: Mutex<()> = Mutex::new(());

fn cluster_lock() -> std::sync::MutexGuard<'static, ()> {
    CLUSTER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The `ordeal` binary under test.
fn ordeal() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_ordeal"))
}

/// A fresh directory for one test, `ordeal-it-NAME-XXXXXX` in the system's temporary directory
/// (its random suffix keeps tests and concurrent `cargo test`s apart, and it is what
/// [`processes_mentioning`] looks for).
fn temp_dir(name: &str) -> Scratch {
    let dir = tempfile::Builder::new()
        .prefix(&format!("ordeal-it-{name}-"))
        .tempdir()
        .expect("a temporary directory");
    Scratch(Some(dir))
}

/// A test's directory (a run's store, cluster files), removed when the test ends. When the test
/// fails it is kept, and its path printed, so that the run can be read: that is when it is worth
/// reading.
struct Scratch(Option<tempfile::TempDir>);

impl std::ops::Deref for Scratch {
    type Target = Path;

    fn deref(&self) -> &Path {
        self.0.as_ref().expect("present until dropped").path()
    }
}

impl AsRef<Path> for Scratch {
    fn as_ref(&self) -> &Path {
        self
    }
}

impl AsRef<std::ffi::OsStr> for Scratch {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.as_os_str()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take()
            && std::thread::panicking()
        {
            eprintln!("the failed test's directory, kept: {}", dir.keep().display());
        }
    }
}

/// Setup: a test directory dropped normally, and one dropped while its test panics. Test: the
/// first is removed, the second kept for debugging.
#[test]
fn a_test_directory_is_removed_unless_the_test_fails() {
    let passed = temp_dir("scratch-passed");
    let path = passed.to_path_buf();
    assert!(path.is_dir() && path.to_str().unwrap().contains("ordeal-it-scratch-passed-"));
    drop(passed);
    assert!(!path.exists(), "{}", path.display());

    let failed = std::panic::catch_unwind(|| {
        let failed = temp_dir("scratch-failed");
        std::panic::panic_any(failed.to_path_buf());
    });
    let path = *failed.expect_err("it panicked").downcast::<PathBuf>().expect("its path");
    assert!(path.is_dir(), "{}", path.display());
    std::fs::remove_dir(&path).expect("the kept directory, empty");
}

/// Kills the harness with SIGKILL (its whole process group) and asserts that none of the
/// replicas of its run (`store`) outlives it.
fn kill_harness_expecting_no_replica(harness: &mut std::process::Child, store: &Path) {
    // SAFETY: kill with a negative pid signals the process group; no pointers.
    unsafe { libc::kill(-(harness.id() as i32), libc::SIGKILL) };
    harness.wait().expect("the harness is reaped");
    let marker = store.to_str().unwrap().to_string();
    assert!(
        wait_until(Duration::from_secs(5), || processes_mentioning(&marker).is_empty()),
        "replicas outlived the harness: {:?}",
        processes_mentioning(&marker)
    );
}

/// The processes whose command line mentions `marker` (all of a run's replicas mention its
/// store directory), other than this test process.
fn processes_mentioning(marker: &str) -> Vec<u32> {
    let own = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // A zombie has an empty command line: it is gone, only not yet reaped.
        if pid != own && cmdline.contains(marker) {
            found.push(pid);
        }
    }
    found
}

/// One write by a fresh client with `secrets` through `addresses`, within `timeout`; returns
/// its completion.
async fn write_once(
    endpoint: &quinn::Endpoint,
    tls: &replica::net::tls::TlsMaterial,
    addresses: &[std::net::SocketAddr],
    config: &replica::core::Config,
    secrets: replica::crypto::dealer::ClientSecrets,
    timeout: Duration,
) -> replica::core::client::Completion {
    use replica::net::client::ClientTransport;
    let mut transport = ClientTransport::connect(endpoint, tls, addresses).unwrap();
    write_with(&mut transport, config, secrets, timeout).await
}

/// [`write_once`] over an existing transport (its own links, or a gateway's).
async fn write_with(
    transport: &mut replica::net::client::ClientTransport,
    config: &replica::core::Config,
    secrets: replica::crypto::dealer::ClientSecrets,
    timeout: Duration,
) -> replica::core::client::Completion {
    use replica::core::{Client, Time};
    let mut client = Client::new(config.clone(), secrets);
    let write = history::Operation::Write { key: "k".into(), value: 1 };
    client.submit(Time::ZERO, write).unwrap();
    tokio::time::timeout(timeout, async {
        loop {
            while let Some(transmit) = client.poll_transmit() {
                transport.send(transmit.to, &transmit.request);
            }
            let (from, inform) = transport.recv().await.expect("links stay up");
            let _ = client.handle_inform(Time::ZERO, from, &inform);
            if let Some(done) = client.poll_completion() {
                return done;
            }
        }
    })
    .await
    .expect("the write completes")
}

/// Polls `condition` every 50 ms until it holds or `timeout` passes.
fn wait_until(timeout: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if condition() {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
