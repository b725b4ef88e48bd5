//! The process nemesis at run time: executes a [`Schedule`] on the [`Cluster`] with real
//! signals and records every fault in the history.
//!
//! The executor runs inside the run's own future on the main thread (joined with the time
//! limit, never spawned as a task), because a restart spawns a replica and the replica's death
//! signal is tied to the spawning thread (the `cluster` module). Client processes run on their
//! own worker threads, so a fault, or waiting for a restarted replica, never blocks them.
//!
//! At each fault's start the executor resolves the target spec (asking every reachable replica
//! for its view when the spec is the primary), checks the targets against the [`Budget`], and
//! only then signals. A fault the budget refuses is not started and is reported in `errors`.
//!
//! # History
//!
//! Each fault is one invoke/info pair of process `nemesis` (Jepsen's nemesis ops): the invoke
//! when the fault starts, before the signal, with `f` = `kill` or `pause` and the value
//! `{"target": "random"|"primary"|"minority", "replicas": [..]}`; the info when it ends, after
//! the restart answered or the SIGCONT, with what happened (`restarted` or `resumed`, and
//! `errors` if any). Faults never overlap, so the pairs never interleave. The final heal is a
//! `heal` invoke/info pair that ends whatever is still faulted; its info is the run's last
//! nemesis event, which the liveness oracle takes as the time of the heal.

use std::time::{Duration, Instant};

use history::OpKind;
use nemesis::{Budget, Fault, FaultKind, Schedule, Step, TargetPicker};
use replica::core::ReplicaId;
use replica::net::tls::TlsMaterial;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use workloads::recorder::Recorder;

use crate::cluster::Cluster;

/// How long a restarted replica may take to answer on its control endpoint.
const RESTART_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// What the nemesis did, for `results.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FaultReport {
    /// The enabled fault kinds.
    pub nemesis: Vec<String>,
    /// Faults started.
    pub faults: u64,
    /// Restarts whose replica answered on its control endpoint again.
    pub restarts: u64,
    /// Restarts whose replica was started but did not answer within the timeout.
    pub restarts_unanswered: u64,
    /// The most replicas crashed at once.
    pub crashed_max: usize,
    /// The most replicas paused at once.
    pub paused_max: usize,
    /// The time of the final heal's completion (seconds on the history's clock).
    pub final_heal_s: Option<f64>,
    /// Faults refused or signals that failed.
    pub errors: Vec<String>,
}

/// What the executor works on.
pub struct FaultContext<'a> {
    /// The replicas.
    pub cluster: &'a mut Cluster,
    /// The history.
    pub recorder: &'a Recorder,
    /// The harness's endpoint for control connections.
    pub endpoint: &'a quinn::Endpoint,
    /// The controller's credentials.
    pub controller: &'a TlsMaterial,
    /// Time zero of the schedule: the workload's start.
    pub start: Instant,
}

/// A fault under way.
struct Active {
    kind: FaultKind,
    target: &'static str,
    replicas: Vec<ReplicaId>,
    /// The replicas the signal reached (a kill of a replica that already exited does not).
    hit: Vec<ReplicaId>,
}

struct Executor<'a> {
    context: FaultContext<'a>,
    budget: Budget,
    picker: TargetPicker,
    active: Option<Active>,
    report: FaultReport,
}

/// Executes `schedule` (drawn from `seed`) until its final heal, or until `halt` turns true,
/// which moves the heal to now. Always ends with the heal: nothing is left killed or paused.
pub async fn execute(
    schedule: &Schedule,
    kinds: &[FaultKind],
    seed: u64,
    context: FaultContext<'_>,
    mut halt: watch::Receiver<bool>,
) -> FaultReport {
    let report = FaultReport {
        nemesis: kinds.iter().map(|kind| kind.name().to_string()).collect(),
        ..FaultReport::default()
    };
    let mut executor = Executor {
        context,
        budget: Budget::new(schedule.f),
        picker: TargetPicker::new(seed),
        active: None,
        report,
    };
    // Bounded: one iteration per action of the schedule.
    for action in schedule.actions() {
        let deadline = executor.context.start + action.at;
        let halted = *halt.borrow()
            || tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => false,
                _ = halt.wait_for(|halted| *halted) => true,
            };
        if halted {
            break;
        }
        match action.step {
            Step::Start(index) => executor.start(&schedule.faults[index]).await,
            Step::End(_) => executor.end().await,
            Step::Heal => break,
        }
    }
    executor.heal().await;
    executor.report.crashed_max = executor.budget.crashed_max();
    executor.report.paused_max = executor.budget.paused_max();
    executor.report
}

impl Executor<'_> {
    /// Seconds since the workload started, for messages.
    fn elapsed_s(&self) -> f64 {
        self.context.start.elapsed().as_secs_f64()
    }

    fn error(&mut self, message: String) {
        eprintln!("ordeal: nemesis: {message}");
        self.report.errors.push(message);
    }

    async fn start(&mut self, fault: &Fault) {
        assert!(self.active.is_none(), "faults of a schedule never overlap");
        let cluster = &mut *self.context.cluster;
        let replica_count = u8::try_from(cluster.pids().len()).expect("at most 255 replicas");
        let primary = match fault.target {
            nemesis::TargetSpec::Primary => cluster.primary().await,
            _ => None,
        };
        let replicas = self.picker.pick(fault.target, replica_count, primary);
        let kind = fault.kind;
        if let Err(error) = self.budget.start(kind, &replicas) {
            let names = numbers(&replicas);
            self.error(format!("{} of {names:?} not started: {error}", kind.name()));
            return;
        }
        let target = fault.target.name();
        let mut value = json!({"target": target, "replicas": numbers(&replicas)});
        if let Some(primary) = primary {
            value["primary"] = json!(primary.0);
        }
        self.context.recorder.nemesis(OpKind::Invoke, kind.name(), value);
        self.report.faults += 1;
        eprintln!(
            "ordeal: nemesis at {:.1} s: {} {:?} ({target})",
            self.elapsed_s(),
            kind.name(),
            numbers(&replicas)
        );
        let mut hit = Vec::new();
        for replica in &replicas {
            let index = replica.index();
            let cluster = &mut *self.context.cluster;
            let result = match kind {
                FaultKind::Kill => cluster.kill(index).await.map(|_| ()),
                FaultKind::Pause => cluster.pause(index),
            };
            match result {
                Ok(()) => hit.push(*replica),
                Err(error) => self.error(format!("{} of replica {index}: {error:#}", kind.name())),
            }
        }
        self.active = Some(Active { kind, target, replicas, hit });
    }

    /// Ends the active fault, if any: restarts or resumes its replicas and records the info.
    async fn end(&mut self) {
        let Some(active) = self.active.take() else { return };
        let mut ended = Vec::new();
        let mut errors = Vec::new();
        for replica in &active.replicas {
            let index = replica.index();
            if !active.hit.contains(replica) {
                // The signal never reached it: nothing to undo, and it is not down by our hand.
                ended.push(*replica);
                continue;
            }
            let result = match active.kind {
                FaultKind::Kill => self.restart(index).await,
                FaultKind::Pause => self.context.cluster.resume(index),
            };
            match result {
                Ok(()) => ended.push(*replica),
                Err(error) => errors.push(format!("replica {index}: {error:#}")),
            }
        }
        // Replicas that could not be restarted or resumed stay down in the budget, so later
        // faults cannot take the run beyond f; the heal tries them again.
        self.budget.end(active.kind, &ended).expect("ending replicas of the active fault");
        let done = match active.kind {
            FaultKind::Kill => "restarted",
            FaultKind::Pause => "resumed",
        };
        let mut value = json!({"target": active.target, "replicas": numbers(&active.replicas)});
        value[done] = json!(numbers(&ended));
        if !errors.is_empty() {
            value["errors"] = json!(errors);
        }
        self.context.recorder.nemesis(OpKind::Info, active.kind.name(), value);
        eprintln!("ordeal: nemesis at {:.1} s: {done} {:?}", self.elapsed_s(), numbers(&ended));
        for error in errors {
            self.error(format!("{} not undone: {error}", active.kind.name()));
        }
    }

    /// Starts killed replica `index` again and waits (bounded) for it to answer; the restart
    /// counts once it does. An error leaves the replica down.
    async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        let FaultContext { cluster, endpoint, controller, .. } = &mut self.context;
        cluster.restart(index)?;
        match cluster.reconnect(index, endpoint, controller, RESTART_ANSWER_TIMEOUT).await {
            Ok(_) => self.report.restarts += 1,
            Err(error) => {
                // Started, so not crashed by the nemesis any more; the run's end says whether
                // it lived.
                self.report.restarts_unanswered += 1;
                self.error(format!("restarted replica {index} did not answer: {error:#}"));
            }
        }
        Ok(())
    }

    /// The final heal: ends the active fault, then resumes and restarts whatever is still
    /// paused or killed, as one `heal` invoke/info pair.
    async fn heal(&mut self) {
        self.end().await;
        self.context.recorder.nemesis(OpKind::Invoke, "heal", Value::Null);
        let mut resumed = Vec::new();
        let mut restarted = Vec::new();
        let mut errors = Vec::new();
        for index in self.context.cluster.paused() {
            match self.context.cluster.resume(index) {
                Ok(()) => resumed.push(index),
                Err(error) => errors.push(format!("resume replica {index}: {error:#}")),
            }
        }
        for index in self.context.cluster.killed() {
            match self.restart(index).await {
                Ok(()) => restarted.push(index),
                Err(error) => errors.push(format!("restart replica {index}: {error:#}")),
            }
        }
        for replica in self.budget.crashed() {
            if restarted.contains(&replica.index()) {
                self.budget.end(FaultKind::Kill, &[replica]).expect("it was crashed");
            }
        }
        for replica in self.budget.paused() {
            if resumed.contains(&replica.index()) {
                self.budget.end(FaultKind::Pause, &[replica]).expect("it was paused");
            }
        }
        let mut value = json!({"resumed": resumed, "restarted": restarted});
        if !errors.is_empty() {
            value["errors"] = json!(errors);
        }
        self.context.recorder.nemesis(OpKind::Info, "heal", value);
        self.report.final_heal_s = Some(self.context.recorder.now_nanos() as f64 / 1e9);
        eprintln!("ordeal: nemesis at {:.1} s: final heal", self.elapsed_s());
        for error in errors {
            self.error(format!("heal: {error}"));
        }
    }
}

/// Replica ids as plain numbers, for the history.
fn numbers(replicas: &[ReplicaId]) -> Vec<u8> {
    replicas.iter().map(|replica| replica.0).collect()
}
