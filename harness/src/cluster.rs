//! Replica processes: ports, spawning, readiness, stopping, and never leaving one behind.
//!
//! Replicas run in a process group of their own (so a signal reaches them all and none of the
//! terminal's), each with `PR_SET_PDEATHSIG` set by the replica itself (so a harness killed with
//! SIGKILL takes them along), and [`Cluster`] kills the group when dropped (every other exit
//! path: errors, panics). The kernel ties the death signal to the *thread* that spawned the
//! child, so replicas must be spawned from a thread that lives as long as the run: the caller's
//! main thread, not a tokio blocking thread.

#![allow(clippy::disallowed_methods, reason = "readiness and shutdown are timed on the wall clock")]

use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use replica::core::ReplicaId;
use replica::net::control::{ControlClient, StatusReport};
use replica::net::tls::TlsMaterial;

/// How often readiness and exits are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// Picks `count` free UDP ports on 127.0.0.1. The sockets are held until all ports are chosen,
/// so the ports are distinct; a replica could still lose its port to another process before it
/// binds, which then fails the run with a clear error.
///
/// # Errors
///
/// When no port can be bound.
pub fn allocate_ports(count: usize) -> std::io::Result<Vec<SocketAddr>> {
    let sockets =
        (0..count).map(|_| UdpSocket::bind("127.0.0.1:0")).collect::<std::io::Result<Vec<_>>>()?;
    sockets.iter().map(UdpSocket::local_addr).collect()
}

/// How stopping the replicas went.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StopReport {
    /// Replicas that had exited before they were told to stop, with their exit status.
    pub crashed: Vec<(usize, String)>,
    /// The signals it took beyond the control `stop` (empty when all stopped gracefully).
    pub escalated: Vec<&'static str>,
    /// Each replica's exit status.
    pub exits: Vec<String>,
}

/// The replica processes of a run.
pub struct Cluster {
    children: Vec<Child>,
    process_group: i32,
    addresses: Vec<SocketAddr>,
    controls: Vec<Option<ControlClient>>,
}

impl Cluster {
    /// Starts `program replica --config <config>` for every config, in one new process group,
    /// with stdout and stderr in `stdout.log` beside each config.
    ///
    /// # Errors
    ///
    /// When a process cannot be started (those already started are killed).
    pub fn spawn(
        program: &Path,
        configs: &[PathBuf],
        addresses: Vec<SocketAddr>,
    ) -> anyhow::Result<Cluster> {
        let mut cluster =
            Cluster { children: Vec::new(), process_group: 0, addresses, controls: Vec::new() };
        for config in configs {
            let directory = config.parent().unwrap_or(Path::new("."));
            let output = std::fs::File::create(directory.join("stdout.log"))
                .with_context(|| format!("creating {}", directory.join("stdout.log").display()))?;
            let child = Command::new(program)
                .arg("replica")
                .arg("--config")
                .arg(config)
                .stdin(Stdio::null())
                .stdout(output.try_clone().context("duplicating the log handle")?)
                .stderr(output)
                .process_group(cluster.process_group)
                .spawn()
                .with_context(|| {
                    format!("starting {} for {}", program.display(), config.display())
                })?;
            if cluster.process_group == 0 {
                cluster.process_group = child.id() as i32;
            }
            cluster.children.push(child);
        }
        cluster.controls = cluster.children.iter().map(|_| None).collect();
        Ok(cluster)
    }

    /// The process ids, in replica order.
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }

    /// Waits until every replica answers on its control endpoint and reports that its links
    /// to the other replicas connected; returns how long that took.
    ///
    /// # Errors
    ///
    /// When `timeout` passes first, or a replica exits.
    pub async fn wait_ready(
        &mut self,
        endpoint: &quinn::Endpoint,
        controller: &TlsMaterial,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        let mut ready = vec![false; self.children.len()];
        // Bounded by `deadline`.
        while ready.iter().any(|ready| !ready) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the cluster was not ready within {timeout:?}"
            );
            for (index, child) in self.children.iter_mut().enumerate() {
                if let Some(status) = child.try_wait().context("checking a replica")? {
                    anyhow::bail!(
                        "replica {index} exited during startup ({status}); \
                         see its stdout.log and replica.log"
                    );
                }
            }
            for (index, ready) in ready.iter_mut().enumerate() {
                if *ready {
                    continue;
                }
                let replica = ReplicaId(index as u8);
                if self.controls[index].is_none() {
                    let address = self.addresses[index];
                    self.controls[index] = ControlClient::connect(
                        endpoint,
                        controller,
                        replica,
                        address,
                        POLL_INTERVAL * 10,
                    )
                    .await
                    .ok();
                }
                if let Some(control) = &self.controls[index] {
                    match control.status().await {
                        Ok(status) => *ready = status.ready,
                        Err(_) => self.controls[index] = None,
                    }
                }
            }
            if ready.iter().any(|ready| !ready) {
                tokio::time::sleep(POLL_INTERVAL).await;
            }
        }
        Ok(start.elapsed())
    }

    /// Every reachable replica's status.
    pub async fn statuses(&self) -> Vec<Option<StatusReport>> {
        let mut statuses = Vec::new();
        for control in &self.controls {
            statuses.push(match control {
                Some(control) => control.status().await.ok(),
                None => None,
            });
        }
        statuses
    }

    /// Stops every replica: a control `stop` to all at once, then SIGTERM, then SIGKILL, each
    /// after `grace` without all having exited. Reports which replicas had already exited
    /// (crashed) and how each ended.
    pub async fn stop(&mut self, grace: Duration) -> StopReport {
        let crashed: Vec<(usize, String)> = self
            .children
            .iter_mut()
            .enumerate()
            .filter_map(|(index, child)| {
                child.try_wait().ok().flatten().map(|status| (index, status.to_string()))
            })
            .collect();
        let stops: Vec<_> = self
            .controls
            .iter()
            .flatten()
            .map(|control| {
                let control = control.clone();
                tokio::spawn(async move { control.stop().await.is_ok() })
            })
            .collect();
        for stop in stops {
            let _ = stop.await;
        }
        let mut escalated = Vec::new();
        if !self.wait_exit(grace).await {
            escalated.push("SIGTERM");
            self.signal(libc::SIGTERM);
            if !self.wait_exit(grace).await {
                escalated.push("SIGKILL");
                self.signal(libc::SIGKILL);
                self.wait_exit(grace).await;
            }
        }
        let exits = self
            .children
            .iter_mut()
            .map(|child| match child.try_wait() {
                Ok(Some(status)) => status.to_string(),
                Ok(None) => "still running".to_string(),
                Err(error) => error.to_string(),
            })
            .collect();
        StopReport { crashed, escalated, exits }
    }

    async fn wait_exit(&mut self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        // Bounded by `deadline`.
        loop {
            let mut running = 0;
            for child in &mut self.children {
                if matches!(child.try_wait(), Ok(None)) {
                    running += 1;
                }
            }
            if running == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Signals the group, but only while one of its members is unreaped (afterwards the id may
    /// belong to someone else).
    fn signal(&mut self, signal: i32) {
        let running = self.children.iter_mut().any(|child| matches!(child.try_wait(), Ok(None)));
        if self.process_group > 0 && running {
            // SAFETY: kill takes a pid (negative: a process group) and a signal; no pointers.
            unsafe { libc::kill(-self.process_group, signal) };
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Every exit path ends here: nothing may outlive the run.
        self.signal(libc::SIGKILL);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
