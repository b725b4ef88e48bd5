//! The nemesis at run time: the pure [`nemesis::executor::Executor`] decides, and this module
//! carries its effects out on the [`Cluster`], the network relay and the Byzantine replicas'
//! control endpoints, and records every fault in the history. The simulator (`crate::sim`)
//! interprets the same executor's effects on simulated replicas: one schedule, one executor,
//! two worlds.
//!
//! The interpreter runs inside the run's own future on the main thread (joined with the time
//! limit, never spawned as a task), because a restart or a twin spawns a replica and the
//! replica's death signal is tied to the spawning thread (the `cluster` module). Client
//! processes run on their own worker threads, so a fault, or waiting for a restarted replica,
//! never blocks them.
//!
//! Before each poll the interpreter observes the cluster (every reachable replica's view, last
//! executed slot and counters, summed over its lives, and the clients' dissent counts), then
//! carries out what the executor returns, in order:
//!
//! - kill (SIGKILL, the replica's counters banked first so that the adversary's accounting
//!   survives the restart), restart (and wait, bounded, until it answers on its control
//!   endpoint), pause (SIGSTOP), resume (SIGCONT);
//! - link faults: handed to the relay (a run without one reports an error for any fault);
//! - behaviours: told to the replica over its control endpoint;
//! - twins: a second process with a declared Byzantine replica's identity and keys starts (or
//!   stops), the relay routes a seeded half of the other replicas to it, and those replicas
//!   reconnect their link to it at once;
//! - nemesis events: recorded in the history.
//!
//! An effect that fails is reported in `errors` and the run goes on; after the final heal the
//! interpreter restarts and resumes whatever is still down and stops every twin, so nothing is
//! left killed, paused, partitioned, malicious or twinned.
//!
//! # History
//!
//! Each fault is one invoke/info pair of process `nemesis` (Jepsen's nemesis ops): the invoke
//! when the fault starts, before it acts, with `f` = the kind's name and a value naming the
//! target spec, the replicas and the fault's parameters (shape, order, behaviours, delay,
//! probability, twin group); the info when it ends, with what was undone. Faults of a scenario
//! may overlap, so pairs of different kinds may interleave. The final heal is a `heal`
//! invoke/info pair that ends whatever is still faulted; its info is the run's last nemesis
//! event, which the liveness oracle takes as the time of the heal.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use history::OpKind;
use nemesis::executor::{CLIENT_DISSENT, Effect, Executor, Observe, Status, numbers};
use nemesis::{FaultKind, Schedule};
use replica::core::ReplicaId;
use replica::net::tls::TlsMaterial;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;
use workloads::recorder::Recorder;

use crate::cluster::Cluster;
use crate::network::{NetworkHandle, Twin};

/// How long a restarted replica may take to answer on its control endpoint.
const RESTART_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the nemesis did, for `results.json`'s `faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultReport {
    /// The enabled fault kinds.
    pub nemesis: Vec<String>,
    /// The replicas declared Byzantine: their ledgers are not judged.
    pub byzantine: Vec<u8>,
    /// Whether the run allowed f + 1 Byzantine replicas (a violation is then expected).
    pub beyond_budget: bool,
    /// The most faulty replicas allowed: f, or f + 1 beyond budget.
    pub limit: usize,
    /// The most replicas faulty (Byzantine, crashed or paused) at once.
    pub faulty_max: usize,
    /// Faults started.
    pub faults: u64,
    /// Faults started, by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Byzantine behaviours switched on, by behaviour.
    pub behaviours: BTreeMap<String, u64>,
    /// Restarts whose replica answered on its control endpoint again.
    pub restarts: u64,
    /// Restarts whose replica was started but did not answer within the timeout.
    pub restarts_unanswered: u64,
    /// Twin processes started.
    pub twins: u64,
    /// The most replicas crashed at once.
    pub crashed_max: usize,
    /// The most replicas paused at once.
    pub paused_max: usize,
    /// The time of the final heal's completion (seconds on the history's clock).
    pub final_heal_s: Option<f64>,
    /// Byzantine faults that acted: an honest replica processed what they altered, withheld or
    /// forged (counted at the honest receivers), and the hooks did what the behaviours say.
    pub acted: u64,
    /// Byzantine faults that never acted, with the reason: a run whose Byzantine faults all
    /// stayed vacuous proves nothing about them.
    pub vacuous: Vec<Value>,
    /// Views forced onto a Byzantine primary, and forcings that did not get there in time.
    pub forced_view_changes: u64,
    /// Faults refused or actions that failed.
    pub errors: Vec<String>,
}

/// What the nemesis knows while a run goes on, for the progress line: the highest view a
/// replica reported at the last poll, and the faults under way.
#[derive(Debug, Default)]
pub struct Live {
    state: std::sync::Mutex<LiveState>,
}

#[derive(Debug, Default, Clone)]
struct LiveState {
    view: Option<u64>,
    faults: Vec<String>,
}

impl Live {
    /// `view 3, faults kill+partition` (empty before the first poll, without faults).
    pub fn describe(&self) -> String {
        let state = self.state.lock().map(|state| state.clone()).unwrap_or_default();
        let mut parts = Vec::new();
        if let Some(view) = state.view {
            parts.push(format!("view {view}"));
        }
        if !state.faults.is_empty() {
            parts.push(format!("faults {}", state.faults.join("+")));
        }
        parts.join(", ")
    }

    fn observed(&self, observed: &Observed) {
        let view = observed.statuses.iter().flatten().map(|status| status.view).max();
        if let Ok(mut state) = self.state.lock()
            && view.is_some()
        {
            state.view = view;
        }
    }

    /// A nemesis event: an invocation starts a fault, its `info` ends it.
    fn event(&self, kind: OpKind, f: &str) {
        let Ok(mut state) = self.state.lock() else { return };
        match kind {
            OpKind::Invoke if f != "heal" => state.faults.push(f.to_string()),
            OpKind::Invoke => {}
            _ => {
                if let Some(index) = state.faults.iter().position(|fault| fault == f) {
                    state.faults.remove(index);
                }
            }
        }
    }
}

/// What the executor works on.
pub struct FaultContext<'a> {
    /// The replicas.
    pub cluster: &'a mut Cluster,
    /// The relay, when traffic goes through one.
    pub network: Option<&'a NetworkHandle>,
    /// The history.
    pub recorder: &'a Recorder,
    /// The harness's endpoint for control connections.
    pub endpoint: &'a quinn::Endpoint,
    /// The controller's credentials.
    pub controller: &'a TlsMaterial,
    /// Time zero of the schedule: the workload's start.
    pub start: Instant,
    /// The replicas declared Byzantine.
    pub byzantine: &'a [ReplicaId],
    /// Whether the run is beyond budget.
    pub beyond_budget: bool,
    /// Where each Byzantine replica's twin listens, when it runs.
    pub twin_addresses: &'a BTreeMap<ReplicaId, SocketAddr>,
    /// What the progress line shows.
    pub live: &'a Live,
}

/// What the interpreter sees of the cluster at one poll.
struct Observed {
    statuses: Vec<Option<Status>>,
    counters: Vec<BTreeMap<String, u64>>,
}

impl Observe for Observed {
    fn status(&self, replica: ReplicaId) -> Option<Status> {
        self.statuses.get(replica.index()).copied().flatten()
    }

    fn counter(&self, replica: ReplicaId, name: &str) -> u64 {
        self.counters
            .get(replica.index())
            .and_then(|counters| counters.get(name))
            .copied()
            .unwrap_or(0)
    }
}

/// The real world the effects act on.
struct Interpreter<'a> {
    context: FaultContext<'a>,
    /// Per replica, its counters summed over its earlier lives (banked before each kill): a
    /// restarted replica counts from zero again, and [`Interpreter::observe`] adds these back.
    banked: BTreeMap<ReplicaId, BTreeMap<String, u64>>,
    /// The replicas routed to each running twin.
    twin_groups: BTreeMap<ReplicaId, Vec<ReplicaId>>,
    restarts: u64,
    restarts_unanswered: u64,
    errors: Vec<String>,
}

/// Executes `schedule` (drawn from `seed`) until its final heal, or until `halt` turns true,
/// which moves the heal to now. Always ends with the heal: nothing is left killed, paused,
/// partitioned, malicious or twinned.
pub async fn execute(
    schedule: &Schedule,
    kinds: &[FaultKind],
    seed: u64,
    context: FaultContext<'_>,
    mut halt: watch::Receiver<bool>,
) -> FaultReport {
    let n = u8::try_from(context.cluster.pids().len()).expect("at most 255 replicas");
    let mut executor = Executor::new(schedule, n, context.byzantine, context.beyond_budget, seed);
    if context.network.is_none() {
        executor = executor.without_network();
    }
    let start = context.start;
    let mut world = Interpreter {
        context,
        banked: BTreeMap::new(),
        twin_groups: BTreeMap::new(),
        restarts: 0,
        restarts_unanswered: 0,
        errors: Vec::new(),
    };
    // Bounded: the schedule's actions are finite, a forcing or a choreography polls only until
    // its fault ends, and the heal (at the schedule's end or on `halt`) ends the executor.
    while let Some(wake) = executor.next_wake() {
        let halted = *halt.borrow()
            || tokio::select! {
                _ = tokio::time::sleep_until((start + wake).into()) => false,
                _ = halt.wait_for(|halted| *halted) => true,
            };
        let observed = world.observe().await;
        world.context.live.observed(&observed);
        let now = start.elapsed();
        let effects =
            if halted { executor.heal_now(now, &observed) } else { executor.poll(now, &observed) };
        for effect in effects {
            world.apply(effect).await;
        }
    }
    world.leftovers().await;
    let done = executor.report();
    let context = &world.context;
    let mut errors = done.errors;
    errors.extend(world.errors);
    FaultReport {
        nemesis: kinds.iter().map(|kind| kind.name().to_string()).collect(),
        byzantine: numbers(context.byzantine),
        beyond_budget: context.beyond_budget,
        limit: done.limit,
        faulty_max: done.faulty_max,
        faults: done.faults,
        by_kind: done.by_kind,
        behaviours: done.behaviours,
        restarts: world.restarts,
        restarts_unanswered: world.restarts_unanswered,
        twins: done.twins,
        crashed_max: done.crashed_max,
        paused_max: done.paused_max,
        final_heal_s: done.final_heal.map(|_| context.recorder.now_nanos() as f64 / 1e9),
        acted: done.acted,
        vacuous: done.vacuous,
        forced_view_changes: done.forced_view_changes,
        errors,
    }
}

impl Interpreter<'_> {
    /// Seconds since the workload started, for messages.
    fn elapsed_s(&self) -> f64 {
        self.context.start.elapsed().as_secs_f64()
    }

    fn error(&mut self, message: String) {
        eprintln!("ordeal: nemesis: {message}");
        self.errors.push(message);
    }

    /// Every replica's status and counters (summed over its lives), with [`CLIENT_DISSENT`]:
    /// the completed requests for which its INFORM disagreed with the proof, as the clients
    /// counted them.
    async fn observe(&self) -> Observed {
        let dissent = self.context.recorder.dissents();
        let mut observed = Observed { statuses: Vec::new(), counters: Vec::new() };
        for (index, status) in self.context.cluster.statuses().await.into_iter().enumerate() {
            let replica = ReplicaId(index as u8);
            let mut counters = BTreeMap::new();
            if let Some(status) = status {
                observed
                    .statuses
                    .push(Some(Status { view: status.view, last_executed: status.last_executed }));
                counters = status.counters;
            } else {
                observed.statuses.push(None);
            }
            for (name, value) in self.banked.get(&replica).into_iter().flatten() {
                *counters.entry(name.clone()).or_default() += value;
            }
            counters
                .insert(CLIENT_DISSENT.into(), dissent.get(&(index as u32)).copied().unwrap_or(0));
            observed.counters.push(counters);
        }
        observed
    }

    /// Carries out one effect.
    async fn apply(&mut self, effect: Effect) {
        match effect {
            Effect::Kill(replica) => {
                if let Err(error) = self.kill(replica.index()).await {
                    self.error(format!("kill of replica {}: {error:#}", replica.0));
                }
            }
            Effect::Restart(replica) => {
                if let Err(error) = self.restart(replica.index()).await {
                    self.error(format!("restart of replica {}: {error:#}", replica.0));
                }
            }
            Effect::Pause(replica) => {
                if let Err(error) = self.context.cluster.pause(replica.index()) {
                    self.error(format!("pause of replica {}: {error:#}", replica.0));
                }
            }
            Effect::Resume(replica) => {
                if let Err(error) = self.context.cluster.resume(replica.index()) {
                    self.error(format!("resume of replica {}: {error:#}", replica.0));
                }
            }
            Effect::Links(faults) => match self.context.network {
                Some(network) => network.set_faults(faults),
                None if faults.is_healthy() => {}
                None => self.error("network fault not applied: the run has no relay".into()),
            },
            Effect::Behave { replica, behaviours } => {
                // A replica that is down gets its behaviours with its restart.
                let down = self.context.cluster.killed().contains(&replica.index())
                    || self.context.cluster.paused().contains(&replica.index());
                if let Err(error) = self.context.cluster.behave(replica.index(), behaviours).await
                    && !down
                {
                    self.error(format!("behaviour of replica {}: {error:#}", replica.0));
                }
            }
            Effect::StartTwin { replica, group } => match self.start_twin(replica, &group) {
                Ok(()) => {
                    self.twin_groups.insert(replica, group.clone());
                    self.reroute(replica, &group).await;
                }
                Err(error) => self.error(format!("twin of replica {}: {error:#}", replica.0)),
            },
            Effect::StopTwin(replica) => self.stop_twin(replica).await,
            Effect::Record { kind, f, value } => {
                if let Some(line) = line(kind, &f, &value) {
                    eprintln!("ordeal: nemesis at {:.1} s: {line}", self.elapsed_s());
                }
                self.context.live.event(kind, &f);
                self.context.recorder.nemesis(kind, &f, value);
            }
        }
    }

    /// Kills replica `index` (SIGKILL), banking its counters first.
    async fn kill(&mut self, index: usize) -> anyhow::Result<()> {
        let replica = ReplicaId(index as u8);
        let live = self.context.cluster.statuses().await.into_iter().nth(index).flatten();
        if let Some(status) = live {
            let banked = self.banked.entry(replica).or_default();
            for (name, value) in status.counters {
                *banked.entry(name).or_default() += value;
            }
        }
        self.context.cluster.kill(index).await.map(|_| ())
    }

    /// Starts killed replica `index` again and waits (bounded) for it to answer; the restart
    /// counts once it does. An error leaves the replica down.
    async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        let FaultContext { cluster, endpoint, controller, .. } = &mut self.context;
        cluster.restart(index)?;
        match cluster.reconnect(index, endpoint, controller, RESTART_ANSWER_TIMEOUT).await {
            Ok(_) => self.restarts += 1,
            Err(error) => {
                // Started, so not crashed by the nemesis any more; the run's end says whether
                // it lived.
                self.restarts_unanswered += 1;
                self.error(format!("restarted replica {index} did not answer: {error:#}"));
            }
        }
        Ok(())
    }

    fn start_twin(&mut self, replica: ReplicaId, group: &[ReplicaId]) -> anyhow::Result<()> {
        let address = *self
            .context
            .twin_addresses
            .get(&replica)
            .ok_or_else(|| anyhow::anyhow!("no twin address for replica {}", replica.0))?;
        let network = self
            .context
            .network
            .ok_or_else(|| anyhow::anyhow!("twins need the relay (no --no-relay)"))?;
        self.context.cluster.spawn_twin(replica.index())?;
        network.set_twin(replica, Some(Twin { address, group: group.to_vec() }))?;
        Ok(())
    }

    async fn stop_twin(&mut self, replica: ReplicaId) {
        if !self.context.cluster.twin_running(replica.index()) {
            return;
        }
        if let Some(network) = self.context.network
            && let Err(error) = network.set_twin(replica, None)
        {
            self.error(format!("twin {}: {error}", replica.0));
        }
        if let Err(error) = self.context.cluster.kill_twin(replica.index()).await {
            self.error(format!("twin {}: {error:#}", replica.0));
        }
        let group = self.twin_groups.remove(&replica).unwrap_or_default();
        self.reroute(replica, &group).await;
    }

    /// Tells every replica of `group` to reconnect its link to `replica`, which the relay now
    /// routes to the twin (or back to the original): without it the old connection would
    /// linger until QUIC's idle timeout. A replica that does not answer (paused, down)
    /// reconnects on its own later.
    async fn reroute(&mut self, replica: ReplicaId, group: &[ReplicaId]) {
        for member in group {
            let _ = self.context.cluster.reconnect_link(member.index(), replica).await;
        }
    }

    /// After the final heal: whatever an effect failed to undo (a restart that failed, a
    /// twin that would not stop) is undone now, so the run's end finds every replica up.
    async fn leftovers(&mut self) {
        for index in self.context.cluster.paused() {
            if let Err(error) = self.context.cluster.resume(index) {
                self.error(format!("heal: resume replica {index}: {error:#}"));
            }
        }
        for index in self.context.cluster.killed() {
            if let Err(error) = self.restart(index).await {
                self.error(format!("heal: restart replica {index}: {error:#}"));
            }
        }
        for index in self.context.cluster.twins() {
            self.stop_twin(ReplicaId(index as u8)).await;
        }
    }
}

/// A nemesis event as a line for a person: `kill [0] (primary)` when a fault starts, `kill
/// ended, restarted [0]` when it ends, `final heal` once the heal is done (its invoke is not
/// printed), and the event's value otherwise (`force-view-change {"primary":2,...}`).
fn line(kind: OpKind, f: &str, value: &Value) -> Option<String> {
    let list = |key: &str| {
        let items = value.get(key)?.as_array()?;
        let items: Vec<String> = items.iter().map(Value::to_string).collect();
        Some(format!("[{}]", items.join(", ")))
    };
    let line = match (kind, f) {
        (OpKind::Invoke, "heal") => return None,
        (_, "heal") => "final heal".to_string(),
        (OpKind::Invoke, _) => match (list("replicas"), value["target"].as_str()) {
            (Some(replicas), Some(target)) => format!("{f} {replicas} ({target})"),
            _ => format!("{f} {value}"),
        },
        (_, _) => {
            let done = ["restarted", "resumed", "behaving", "twin-stopped", "healed"]
                .into_iter()
                .find_map(|key| list(key).map(|replicas| format!("{key} {replicas}")));
            match done {
                Some(done) if value.get("target").is_some() => format!("{f} ended, {done}"),
                _ => format!("{f} {value}"),
            }
        }
    };
    Some(line)
}

#[cfg(test)]
mod tests {
    use history::OpKind;
    use serde_json::json;

    use super::{Live, line};

    /// The progress line's nemesis part: faults under way until their end, the heal not one.
    #[test]
    fn the_progress_line_names_the_faults_under_way() {
        let live = Live::default();
        assert_eq!(live.describe(), "");
        live.event(OpKind::Invoke, "kill");
        live.event(OpKind::Invoke, "partition");
        assert_eq!(live.describe(), "faults kill+partition");
        live.event(OpKind::Info, "kill");
        live.event(OpKind::Invoke, "heal");
        assert_eq!(live.describe(), "faults partition");
        live.event(OpKind::Info, "partition");
        assert_eq!(live.describe(), "");
    }

    /// Nemesis events print as a person reads them; the heal's invoke does not print.
    #[test]
    fn nemesis_events_print_as_lines() {
        let start = json!({"target": "primary", "primary": 0, "replicas": [0]});
        assert_eq!(line(OpKind::Invoke, "kill", &start).as_deref(), Some("kill [0] (primary)"));
        let end = json!({"target": "all", "replicas": [0, 1], "healed": [0, 1]});
        assert_eq!(line(OpKind::Info, "loss", &end).as_deref(), Some("loss ended, healed [0, 1]"));
        assert_eq!(line(OpKind::Invoke, "heal", &serde_json::Value::Null), None);
        assert_eq!(line(OpKind::Info, "heal", &json!({})).as_deref(), Some("final heal"));
        let forced = json!({"primary": 2, "view": 2});
        assert_eq!(
            line(OpKind::Info, "force-view-change", &forced).as_deref(),
            Some(r#"force-view-change {"primary":2,"view":2}"#)
        );
    }
}
