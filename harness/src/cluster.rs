//! Replica processes: ports, spawning, readiness, stopping, and never leaving one behind.
//!
//! Replicas run in a process group of their own (so a signal reaches them all and none of the
//! terminal's), each with `PR_SET_PDEATHSIG` set by the replica itself (so a harness killed with
//! SIGKILL takes them along), and [`Cluster`] kills the group when dropped (every other exit
//! path: errors, panics). The kernel ties the death signal to the *thread* that spawned the
//! child, so replicas must be spawned from a thread that lives as long as the run: the caller's
//! main thread, not a tokio blocking thread. That holds for restarts too: [`Cluster::restart`]
//! refuses to spawn from any thread but the one that called [`Cluster::spawn`].
//!
//! Keys reach a replica through a pipe, never a file: at every start (the first, each restart,
//! a twin) [`Cluster`] makes a pipe, the child inherits its read end as
//! [`replica::net::secrets::SECRETS_FD`], and the harness writes the node's
//! [`SecretMessage`] (held in memory for the whole run) and closes its end.
//!
//! The process nemesis works through [`Cluster::kill`] (SIGKILL, then reap), [`Cluster::restart`]
//! (the same command again, in the same group, appending to the same `stdout.log`),
//! [`Cluster::pause`] (SIGSTOP) and [`Cluster::resume`] (SIGCONT). A paused replica is resumed
//! before the graceful stop at the end, and the group gets SIGCONT before SIGKILL on drop, so
//! no process is left behind, stopped or otherwise.

#![allow(clippy::disallowed_methods, reason = "readiness and shutdown are timed on the wall clock")]

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use replica::core::{ReplicaId, View};
use replica::net::config::NodeConfig;
use replica::net::control::{ControlClient, StatusReport};
use replica::net::secrets::{SECRETS_FD, SecretMessage};
use replica::net::tls::TlsMaterial;

/// How often readiness and exits are polled.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// How long a SIGKILLed replica may take to exit (the kernel needs milliseconds).
const KILL_EXIT_TIMEOUT: Duration = Duration::from_secs(5);

/// The most times one replica is restarted in a run (a schedule restarts a replica at most once
/// per `--nemesis-interval`; a day at the shortest interval stays below this).
const RESTARTS_MAX: u32 = 1_000_000;

/// Picks `count` free UDP ports on 127.0.0.1. The sockets are held until all ports are chosen,
/// so the ports are distinct; a replica could still lose its port to another process before it
/// binds, which then fails the run with a clear error.
///
/// # Errors
///
/// When no port can be bound.
pub fn allocate_ports(count: usize) -> std::io::Result<Vec<SocketAddr>> {
    reserve_ports(count)?.iter().map(UdpSocket::local_addr).collect()
}

/// Binds `count` UDP sockets on free ports of 127.0.0.1 and returns them: their ports stay
/// taken while the caller binds other sockets (the relay's), and are free again once dropped.
///
/// # Errors
///
/// When no port can be bound.
pub fn reserve_ports(count: usize) -> std::io::Result<Vec<UdpSocket>> {
    (0..count).map(|_| UdpSocket::bind("127.0.0.1:0")).collect()
}

/// How stopping the replicas went.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct StopReport {
    /// Replicas that had exited before they were told to stop, with their exit status (the
    /// nemesis's kills not counted: those are in `killed`).
    pub crashed: Vec<(usize, String)>,
    /// Replicas the nemesis killed and that were not running again when the run stopped.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub killed: Vec<usize>,
    /// Replicas that were paused when the run stopped (resumed before the stop).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub resumed: Vec<usize>,
    /// The signals it took beyond the control `stop` (empty when all stopped gracefully).
    pub escalated: Vec<&'static str>,
    /// Each replica's exit status.
    pub exits: Vec<String>,
}

/// What starts one replica process: its configuration file and the secret message it is
/// handed on [`SECRETS_FD`] at each start.
#[derive(Debug, Clone)]
pub struct NodeStart {
    /// The configuration file (`replica --config`).
    pub config: PathBuf,
    /// The keys: held in memory, written only into the process's pipe.
    pub secrets: SecretMessage,
}

/// The replica processes of a run.
pub struct Cluster {
    children: Vec<Child>,
    process_group: i32,
    addresses: Vec<SocketAddr>,
    controls: Vec<Option<ControlClient>>,
    program: PathBuf,
    nodes: Vec<NodeStart>,
    /// The thread that spawned the replicas: their death signal is tied to it.
    spawner: ThreadId,
    /// Replicas killed by [`Cluster::kill`] and not restarted since.
    killed: Vec<bool>,
    /// Replicas stopped by [`Cluster::pause`] and not resumed since.
    paused: Vec<bool>,
    /// How often each replica was restarted.
    restarts: Vec<u32>,
    /// How each Byzantine replica's twin starts.
    twin_nodes: BTreeMap<usize, NodeStart>,
    /// The twins running now.
    twins: BTreeMap<usize, Child>,
}

impl Cluster {
    /// Starts `program replica --config <config>` for every node, in one new process group,
    /// with stdout and stderr in `stdout.log` beside each config, and hands each its secret
    /// message.
    ///
    /// # Errors
    ///
    /// When a process cannot be started or given its secrets (those already started are
    /// killed).
    pub fn spawn(
        program: &Path,
        nodes: Vec<NodeStart>,
        addresses: Vec<SocketAddr>,
    ) -> anyhow::Result<Cluster> {
        let count = nodes.len();
        let mut cluster = Cluster {
            children: Vec::new(),
            process_group: 0,
            addresses,
            controls: Vec::new(),
            program: program.to_path_buf(),
            nodes,
            spawner: std::thread::current().id(),
            killed: vec![false; count],
            paused: vec![false; count],
            restarts: vec![0; count],
            twin_nodes: BTreeMap::new(),
            twins: BTreeMap::new(),
        };
        for index in 0..count {
            let child = cluster.spawn_replica(index, false)?;
            if cluster.process_group == 0 {
                cluster.process_group = child.id() as i32;
            }
            cluster.children.push(child);
        }
        cluster.controls = cluster.children.iter().map(|_| None).collect();
        Ok(cluster)
    }

    /// Starts replica `index` in the cluster's process group (a new group for the first),
    /// with stdout and stderr in `stdout.log` beside its config, appended to when `append`.
    fn spawn_replica(&self, index: usize, append: bool) -> anyhow::Result<Child> {
        self.spawn_process(&self.nodes[index], append)
    }

    /// Starts `program replica --config <config>` in the cluster's process group, with the read
    /// end of a fresh pipe as its [`SECRETS_FD`], and writes the node's secret message into the
    /// pipe. A child that cannot be handed its secrets is killed and reaped.
    fn spawn_process(&self, node: &NodeStart, append: bool) -> anyhow::Result<Child> {
        use std::io::Write as _;
        use std::os::fd::AsRawFd as _;
        let config = &node.config;
        let directory = config.parent().unwrap_or(Path::new("."));
        let path = directory.join("stdout.log");
        let output = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(append)
            .truncate(!append)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        // Both ends are close-on-exec: no other child (a concurrent spawn elsewhere) inherits
        // either, and this child gets the read end only through the dup2 below.
        let (reader, mut writer) = std::io::pipe().context("making the secrets pipe")?;
        let read_fd = reader.as_raw_fd();
        // Standard streams are set up in the child before `pre_exec` runs, so a read end
        // among them would be overwritten.
        anyhow::ensure!(read_fd > 2, "the secrets pipe got descriptor {read_fd} (stdio closed?)");
        let mut command = Command::new(&self.program);
        command
            .arg("replica")
            .arg("--config")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(output.try_clone().context("duplicating the log handle")?)
            .stderr(output)
            .process_group(self.process_group);
        // SAFETY: the closure runs in the forked child before exec and calls only dup2 and
        // fcntl, which are async-signal-safe; it allocates nothing and touches no lock.
        // `read_fd` stays open in the parent until `spawn` returns (`reader` lives until then).
        unsafe {
            command.pre_exec(move || {
                if read_fd == SECRETS_FD {
                    // dup2 onto itself keeps close-on-exec: clear it instead.
                    if libc::fcntl(read_fd, libc::F_SETFD, 0) == -1 {
                        return Err(std::io::Error::last_os_error());
                    }
                } else if libc::dup2(read_fd, SECRETS_FD) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().with_context(|| {
            format!("starting {} for {}", self.program.display(), config.display())
        })?;
        // The parent's read end closes here, so a child that dies before reading makes the
        // write fail (EPIPE) instead of blocking once the pipe's buffer is full.
        drop(reader);
        let sent = writer.write_all(&node.secrets.encode());
        drop(writer);
        if let Err(error) = sent {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error).with_context(|| format!("handing {} its secrets", config.display()));
        }
        Ok(child)
    }

    /// Registers how replica `index`'s twin starts (its configuration is written beside the
    /// replica's own).
    pub fn set_twin(&mut self, index: usize, twin: NodeStart) {
        self.twin_nodes.insert(index, twin);
    }

    /// Starts replica `index`'s twin: a second process with its identity and keys, its own
    /// certificate, port, store and ledger (which no checker judges).
    ///
    /// # Errors
    ///
    /// When it has no twin configuration, one runs already, or the process cannot start.
    pub fn spawn_twin(&mut self, index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(!self.twin_running(index), "replica {index}'s twin is already running");
        anyhow::ensure!(
            std::thread::current().id() == self.spawner,
            "replicas must be spawned from the thread that started the cluster (PR_SET_PDEATHSIG)"
        );
        let twin = self
            .twin_nodes
            .get(&index)
            .ok_or_else(|| anyhow::anyhow!("replica {index} has no twin configuration"))?;
        let child = self.spawn_process(twin, true)?;
        self.twins.insert(index, child);
        Ok(())
    }

    /// Whether replica `index`'s twin runs.
    pub fn twin_running(&self, index: usize) -> bool {
        self.twins.contains_key(&index)
    }

    /// The replicas whose twin runs.
    pub fn twins(&self) -> Vec<usize> {
        self.twins.keys().copied().collect()
    }

    /// Kills replica `index`'s twin and reaps it (bounded).
    ///
    /// # Errors
    ///
    /// When no twin runs or it did not exit in time.
    pub async fn kill_twin(&mut self, index: usize) -> anyhow::Result<()> {
        let mut child = self
            .twins
            .remove(&index)
            .ok_or_else(|| anyhow::anyhow!("replica {index} has no twin running"))?;
        let _ = child.kill();
        let deadline = Instant::now() + KILL_EXIT_TIMEOUT;
        // Bounded by `deadline`.
        loop {
            if child.try_wait().context("reaping a twin")?.is_some() {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "twin {index} did not exit after SIGKILL");
            tokio::time::sleep(POLL_INTERVAL / 4).await;
        }
    }

    /// Tells replica `index` to behave so (none: correctly) over its control endpoint.
    ///
    /// # Errors
    ///
    /// When it is not connected (killed, not yet reconnected) or refuses.
    pub async fn behave(
        &self,
        index: usize,
        behaviours: Vec<replica::byzantine::Behaviour>,
    ) -> anyhow::Result<()> {
        let control = self.controls[index]
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("replica {index} is not connected"))?;
        control.behave(behaviours).await?;
        Ok(())
    }

    /// Tells replica `index` to reconnect its link to `peer` (the relay routes it elsewhere
    /// now: to a twin, or back).
    ///
    /// # Errors
    ///
    /// When it is not connected or refuses.
    pub async fn reconnect_link(&self, index: usize, peer: ReplicaId) -> anyhow::Result<()> {
        let control = self.controls[index]
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("replica {index} is not connected"))?;
        control.reconnect(peer).await?;
        Ok(())
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

    /// Every reachable replica's status, asked of all at once (each answer is bounded by the
    /// control timeout, so a dead replica costs one timeout, not one each; a replica paused by
    /// the harness is not asked: it cannot answer).
    pub async fn statuses(&self) -> Vec<Option<StatusReport>> {
        let asks: Vec<_> = self
            .controls
            .iter()
            .enumerate()
            .map(|(index, control)| {
                let control = control.clone().filter(|_| !self.paused[index]);
                tokio::spawn(async move {
                    match control {
                        Some(control) => control.status().await.ok(),
                        None => None,
                    }
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for ask in asks {
            statuses.push(ask.await.ok().flatten());
        }
        statuses
    }

    /// The primary of the highest view any reachable replica reports, or `None` when no
    /// replica answers.
    pub async fn primary(&self) -> Option<ReplicaId> {
        let view = self.statuses().await.into_iter().flatten().map(|status| status.view).max()?;
        let replica_count = u8::try_from(self.children.len()).expect("at most 255 replicas");
        Some(View(view).primary(replica_count))
    }

    /// Kills replica `index` with SIGKILL and waits (bounded) until it has exited and is
    /// reaped; returns its exit status. Its control connection is dropped.
    ///
    /// # Errors
    ///
    /// When the replica is not running (exited, or already killed), or did not exit in time.
    pub async fn kill(&mut self, index: usize) -> anyhow::Result<String> {
        anyhow::ensure!(!self.killed[index], "replica {index} is already killed");
        let child = &mut self.children[index];
        if let Some(status) = child.try_wait().context("checking a replica")? {
            anyhow::bail!("replica {index} had already exited ({status})");
        }
        // SAFETY: kill takes a pid and a signal; no pointers. The child is unreaped, so the pid
        // is still its own.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        self.controls[index] = None;
        let deadline = Instant::now() + KILL_EXIT_TIMEOUT;
        // Bounded by `deadline`.
        loop {
            if let Some(status) = self.children[index].try_wait().context("reaping a replica")? {
                self.killed[index] = true;
                self.paused[index] = false;
                return Ok(status.to_string());
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "replica {index} did not exit within {KILL_EXIT_TIMEOUT:?} of SIGKILL"
            );
            tokio::time::sleep(POLL_INTERVAL / 4).await;
        }
    }

    /// Starts killed replica `index` again: the same command, in the same process group,
    /// appending to the same `stdout.log`. The last instance's `replica.log` is kept as
    /// `replica.log.<k>` (the replica truncates its log when it starts). Does not wait for it:
    /// see [`Cluster::reconnect`].
    ///
    /// # Errors
    ///
    /// When the replica was not killed, when called from another thread than the one that
    /// spawned the cluster (the restarted replica's death signal would fire when that thread
    /// ends), or when the process cannot be started.
    pub fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.killed[index], "replica {index} was not killed");
        anyhow::ensure!(
            std::thread::current().id() == self.spawner,
            "replicas must be spawned from the thread that started the cluster (PR_SET_PDEATHSIG)"
        );
        anyhow::ensure!(
            self.restarts[index] < RESTARTS_MAX,
            "replica {index} was restarted {RESTARTS_MAX} times"
        );
        let generation = self.restarts[index] + 1;
        if let Ok(node) = NodeConfig::load(&self.nodes[index].config)
            && node.log.exists()
        {
            let kept = node.log.with_extension(format!("log.{generation}"));
            std::fs::rename(&node.log, &kept)
                .with_context(|| format!("keeping {} as {}", node.log.display(), kept.display()))?;
        }
        let child = self.spawn_replica(index, true)?;
        self.children[index] = child;
        self.killed[index] = false;
        self.restarts[index] = generation;
        Ok(())
    }

    /// Waits (at most `timeout`) until replica `index` answers a status request on its control
    /// endpoint, reconnecting as needed; returns how long that took.
    ///
    /// # Errors
    ///
    /// When `timeout` passes first, or the replica exits.
    pub async fn reconnect(
        &mut self,
        index: usize,
        endpoint: &quinn::Endpoint,
        controller: &TlsMaterial,
        timeout: Duration,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let replica = ReplicaId(u8::try_from(index).expect("at most 255 replicas"));
        // Bounded by `timeout`.
        loop {
            if let Some(status) = self.children[index].try_wait().context("checking a replica")? {
                anyhow::bail!("replica {index} exited ({status}); see its stdout.log");
            }
            if self.controls[index].is_none() {
                let address = self.addresses[index];
                let connect_timeout = (POLL_INTERVAL * 10).min(timeout);
                self.controls[index] =
                    ControlClient::connect(endpoint, controller, replica, address, connect_timeout)
                        .await
                        .ok();
            }
            if let Some(control) = &self.controls[index] {
                match control.status().await {
                    Ok(_) => return Ok(start.elapsed()),
                    Err(_) => self.controls[index] = None,
                }
            }
            anyhow::ensure!(
                start.elapsed() < timeout,
                "replica {index} did not answer on its control endpoint within {timeout:?}"
            );
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Stops replica `index` with SIGSTOP.
    ///
    /// # Errors
    ///
    /// When the replica is not running or is already paused.
    pub fn pause(&mut self, index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(!self.paused[index], "replica {index} is already paused");
        self.signal_one(index, libc::SIGSTOP)?;
        self.paused[index] = true;
        Ok(())
    }

    /// Continues paused replica `index` with SIGCONT.
    ///
    /// # Errors
    ///
    /// When the replica was not paused or is no longer running.
    pub fn resume(&mut self, index: usize) -> anyhow::Result<()> {
        anyhow::ensure!(self.paused[index], "replica {index} is not paused");
        self.signal_one(index, libc::SIGCONT)?;
        self.paused[index] = false;
        Ok(())
    }

    /// Replicas killed and not restarted.
    pub fn killed(&self) -> Vec<usize> {
        (0..self.killed.len()).filter(|index| self.killed[*index]).collect()
    }

    /// Replicas paused and not resumed.
    pub fn paused(&self) -> Vec<usize> {
        (0..self.paused.len()).filter(|index| self.paused[*index]).collect()
    }

    /// How many restarts there were, over all replicas.
    pub fn restart_count(&self) -> u64 {
        self.restarts.iter().map(|restarts| u64::from(*restarts)).sum()
    }

    /// Sends `signal` to replica `index`, which must be running (unreaped: its pid is its own).
    fn signal_one(&mut self, index: usize, signal: i32) -> anyhow::Result<()> {
        let child = &mut self.children[index];
        if let Some(status) = child.try_wait().context("checking a replica")? {
            anyhow::bail!("replica {index} is not running ({status})");
        }
        // SAFETY: kill takes a pid and a signal; no pointers.
        let result = unsafe { libc::kill(child.id() as i32, signal) };
        anyhow::ensure!(
            result == 0,
            "signal {signal} to replica {index}: {}",
            std::io::Error::last_os_error()
        );
        Ok(())
    }

    /// Stops every replica: a control `stop` to all at once, then SIGTERM, then SIGKILL, each
    /// after `grace` without all having exited. Reports which replicas had already exited
    /// (crashed) and how each ended.
    pub async fn stop(&mut self, grace: Duration) -> StopReport {
        // Twins are never judged: they go first, at once.
        for index in self.twins() {
            let _ = self.kill_twin(index).await;
        }
        // A stopped process cannot answer the control stop or handle SIGTERM.
        let resumed = self.paused();
        for index in &resumed {
            let _ = self.resume(*index);
        }
        let killed = self.killed();
        let crashed: Vec<(usize, String)> = self
            .children
            .iter_mut()
            .enumerate()
            .filter(|(index, _)| !killed.contains(index))
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
        StopReport { crashed, killed, resumed, escalated, exits }
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
        // Every exit path ends here: nothing may outlive the run, and nothing stays stopped.
        for twin in self.twins.values_mut() {
            let _ = twin.kill();
            let _ = twin.wait();
        }
        self.signal(libc::SIGCONT);
        self.signal(libc::SIGKILL);
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
