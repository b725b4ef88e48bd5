//! The nemesis at run time: executes a [`Schedule`] on the [`Cluster`], the network relay and
//! the Byzantine replicas' control endpoints, and records every fault in the history.
//!
//! The executor runs inside the run's own future on the main thread (joined with the time
//! limit, never spawned as a task), because a restart or a twin spawns a replica and the
//! replica's death signal is tied to the spawning thread (the `cluster` module). Client
//! processes run on their own worker threads, so a fault, or waiting for a restarted replica,
//! never blocks them.
//!
//! At each fault's start the executor resolves the target spec (asking every reachable replica
//! for its view when the spec is the primary), and only then acts:
//!
//! - kill and pause: the targets are drawn from the replicas the [`Budget`] allows (any replica
//!   while Byzantine plus crashed plus paused stay within f, else the faulty ones), then
//!   admitted by the budget, then signalled;
//! - partition, delay, loss, duplicate, reorder: the link faults of every active network fault
//!   are merged and handed to the relay (a partition's shape is laid over a seeded order of the
//!   replicas, the primary first for `isolate-primary`);
//! - byzantine: the targets (declared Byzantine replicas only) are told over their control
//!   endpoint to switch on the union of their active behaviours;
//! - twins: a second process with a declared Byzantine replica's identity and keys starts, and
//!   the relay routes a seeded half of the other replicas to it.
//!
//! A fault that cannot start (the budget refuses, no Byzantine replica to play it) is not
//! started and is reported in `errors`.
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
use nemesis::executor::{
    CLIENT_DISSENT, FORCE_POLL, FORCE_PROGRESS_SLOTS, FORCE_PROGRESS_WAIT, FORCE_STEP_TIMEOUT,
    HONEST_EFFECTS, link_fault, numbers,
};
use nemesis::{
    Budget, Fault, FaultAction, FaultKind, LinkFault, NetworkFaults, Node, PartitionShape,
    Schedule, Step, TargetPicker, TargetSpec,
};
use replica::byzantine::Behaviour;
use replica::byzantine::hook::lone_roles;
use replica::core::ReplicaId;
use replica::net::tls::TlsMaterial;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;
use workloads::recorder::Recorder;

use crate::cluster::Cluster;
use crate::network::{NetworkHandle, Twin};

/// How long a restarted replica may take to answer on its control endpoint.
const RESTART_ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// The key of the links a forced view change blocks, beside the faults' own (by index).
const FORCE_LINKS: usize = usize::MAX;

/// How long the lone replica's messages to other replicas take during a lone-executor attack:
/// more than the spread of the honest replicas' progress timers, so that the new primary has
/// nf VC-REQUESTs without the lone one's.
const LONE_DELAY: Duration = Duration::from_millis(600);

/// Beyond the budget, how long a lone-executor attack waits for a view change before its
/// Byzantine replicas claim a failure (`false-failure`): with f + 1 of them voting, the lone
/// replica's slots get nf INFORMs and no client retransmits, so no honest timer fires; f + 1
/// VC-REQUESTs make the honest replicas join (PROTOCOL §4), and the new view forms without the
/// delayed lone replica.
const LONE_FAILURE_AFTER: Duration = Duration::from_millis(1500);

/// How long an amnesia probe keeps each crashed voter down.
const AMNESIA_DOWN: Duration = Duration::from_millis(50);

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
}

/// A fault under way.
struct Active {
    kind: FaultKind,
    target: &'static str,
    replicas: Vec<ReplicaId>,
    /// The replicas the action reached (a kill of a replica that already exited does not).
    hit: Vec<ReplicaId>,
    /// Byzantine faults: every replica's counters before the behaviours were switched on.
    switched: Option<Counters>,
    /// Byzantine faults: every replica's counters once the attack was under way (after the
    /// primary role was forced onto a Byzantine replica, when it had to be).
    before: Option<Counters>,
    /// Byzantine faults: the behaviours switched on.
    behaviours: Vec<Behaviour>,
}

/// Every replica's counters (`None` for one that did not answer).
type Counters = Vec<Option<BTreeMap<String, u64>>>;

struct Executor<'a> {
    context: FaultContext<'a>,
    budget: Budget,
    picker: TargetPicker,
    active: BTreeMap<usize, Active>,
    /// The link faults of each active network fault.
    links: BTreeMap<usize, NetworkFaults>,
    /// The behaviours of each active Byzantine fault, and its replicas.
    behaviours: BTreeMap<usize, (Vec<ReplicaId>, Vec<Behaviour>)>,
    /// The replicas routed to each running twin.
    twin_groups: BTreeMap<ReplicaId, Vec<ReplicaId>>,
    /// Per replica, its counters summed over its earlier lives (banked before each kill): a
    /// restarted replica counts from zero again, and [`Executor::counters`] adds these back.
    banked: BTreeMap<ReplicaId, BTreeMap<String, u64>>,
    report: FaultReport,
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
    let report = FaultReport {
        nemesis: kinds.iter().map(|kind| kind.name().to_string()).collect(),
        byzantine: numbers(context.byzantine),
        beyond_budget: context.beyond_budget,
        ..FaultReport::default()
    };
    let budget = Budget::with_byzantine(schedule.f, context.byzantine, context.beyond_budget);
    let mut executor = Executor {
        context,
        budget,
        picker: TargetPicker::new(seed),
        active: BTreeMap::new(),
        links: BTreeMap::new(),
        behaviours: BTreeMap::new(),
        twin_groups: BTreeMap::new(),
        banked: BTreeMap::new(),
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
            Step::Start(index) => executor.start(index, &schedule.faults[index]).await,
            Step::End(index) => executor.end(index).await,
            Step::Heal => break,
        }
    }
    executor.heal().await;
    executor.report.limit = executor.budget.limit();
    executor.report.faulty_max = executor.budget.faulty_max();
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

    fn replica_count(&self) -> u8 {
        u8::try_from(self.context.cluster.pids().len()).expect("at most 255 replicas")
    }

    async fn start(&mut self, index: usize, fault: &Fault) {
        let kind = fault.kind();
        let n = self.replica_count();
        let wants_primary = fault.target == TargetSpec::Primary
            || fault.action == FaultAction::Partition(PartitionShape::IsolatePrimary);
        let primary = if wants_primary { self.context.cluster.primary().await } else { None };
        let all: Vec<ReplicaId> = (0..n).map(ReplicaId).collect();
        let byzantine = self.context.byzantine.to_vec();
        let target = fault.target.name();
        let mut value = json!({"target": target});
        if let Some(primary) = primary {
            value["primary"] = json!(primary.0);
        }
        // Decide whom, check the budget, then record, then act.
        let replicas = match &fault.action {
            FaultAction::Kill | FaultAction::Pause => {
                let candidates = self.budget.process_candidates(n, fault.target.size().max(1));
                if candidates.is_empty() {
                    self.error(format!(
                        "{} not started: the budget leaves no replica",
                        kind.name()
                    ));
                    return;
                }
                let replicas = self.picker.pick(&fault.target, n, primary, &candidates);
                if let Err(error) = self.budget.start(kind, &replicas) {
                    let names = numbers(&replicas);
                    self.error(format!("{} of {names:?} not started: {error}", kind.name()));
                    return;
                }
                replicas
            }
            FaultAction::Partition(shape) => {
                let first = (*shape == PartitionShape::IsolatePrimary).then_some(primary).flatten();
                let mut order = self.picker.order(n, first);
                if let TargetSpec::Replicas(named) = &fault.target {
                    // A scenario's replicas lead the order: they are the ones isolated, the
                    // first half, the bridge or the one-way sender.
                    order.retain(|replica| !named.contains(replica));
                    order.splice(0..0, named.iter().copied());
                }
                value["shape"] = json!(shape.name());
                value["order"] = json!(numbers(&order));
                match nemesis::network::partition(*shape, &order) {
                    Ok(faults) => {
                        self.links.insert(index, faults);
                    }
                    Err(error) => {
                        self.error(format!("partition not started: {error}"));
                        return;
                    }
                }
                order
            }
            FaultAction::Delay { .. }
            | FaultAction::Loss(_)
            | FaultAction::Duplicate(_)
            | FaultAction::Reorder(_) => {
                let replicas = self.picker.pick(&fault.target, n, primary, &all);
                let link = link_fault(&fault.action);
                value["link"] = json!({
                    "delay_ms": link.delay.as_millis() as u64,
                    "jitter_ms": link.jitter.as_millis() as u64,
                    "loss": link.loss,
                    "duplicate": link.duplicate,
                    "reorder": link.reorder,
                });
                self.links.insert(index, NetworkFaults::touching(n, &replicas, link));
                replicas
            }
            FaultAction::Byzantine(behaviours) => {
                let replicas = self.pick_byzantine(&fault.target, n, primary, &byzantine);
                let Some(replicas) = replicas else { return };
                value["behaviours"] =
                    json!(behaviours.iter().map(|behaviour| behaviour.name()).collect::<Vec<_>>());
                for behaviour in behaviours {
                    *self.report.behaviours.entry(behaviour.name().to_string()).or_default() += 1;
                }
                self.behaviours.insert(index, (replicas.clone(), behaviours.clone()));
                replicas
            }
            FaultAction::ForceViewChange => {
                let Some(replicas) = self.pick_byzantine(&TargetSpec::All, n, primary, &byzantine)
                else {
                    return;
                };
                replicas
            }
            FaultAction::Twins => {
                let free: Vec<ReplicaId> = byzantine
                    .iter()
                    .copied()
                    .filter(|replica| {
                        self.context.twin_addresses.contains_key(replica)
                            && !self.context.cluster.twin_running(replica.index())
                    })
                    .collect();
                let Some(replicas) = self.pick_byzantine(&fault.target, n, primary, &free) else {
                    return;
                };
                replicas.into_iter().take(1).collect()
            }
        };
        value["replicas"] = json!(numbers(&replicas));
        let twin_group = match fault.action {
            FaultAction::Twins => {
                let others: Vec<ReplicaId> =
                    all.iter().copied().filter(|replica| !replicas.contains(replica)).collect();
                let group = self.picker.group(&others);
                value["group"] = json!(numbers(&group));
                group
            }
            _ => Vec::new(),
        };
        self.context.recorder.nemesis(OpKind::Invoke, kind.name(), value);
        self.report.faults += 1;
        *self.report.by_kind.entry(kind.name().to_string()).or_default() += 1;
        eprintln!(
            "ordeal: nemesis at {:.1} s: {} {:?} ({target})",
            self.elapsed_s(),
            kind.name(),
            numbers(&replicas)
        );
        let mut hit = Vec::new();
        let mut before = None;
        let mut switched_at = None;
        let mut behaviours = Vec::new();
        match &fault.action {
            FaultAction::Kill | FaultAction::Pause => {
                for replica in &replicas {
                    let index = replica.index();
                    let result = match kind {
                        FaultKind::Kill => self.kill(index).await,
                        _ => self.context.cluster.pause(index),
                    };
                    match result {
                        Ok(()) => hit.push(*replica),
                        Err(error) => {
                            self.error(format!("{} of replica {index}: {error:#}", kind.name()));
                        }
                    }
                }
            }
            FaultAction::Byzantine(switched) => {
                switched_at = Some(self.counters().await);
                for replica in &replicas {
                    if self.apply_behaviours(*replica).await {
                        hit.push(*replica);
                    }
                }
                // Behaviours that need the primary role act once a Byzantine replica has it
                // (switched on first, so a new primary's lies act in the view change itself).
                if switched.iter().any(|behaviour| behaviour.needs_primary()) {
                    let until = self.context.start + fault.end - (fault.end - fault.start) / 4;
                    let reached = self.force_byzantine_primary(until).await;
                    let lone = switched.contains(&Behaviour::WithholdCertificate)
                        && switched.contains(&Behaviour::InTheDark);
                    if let Some((view, primary)) = reached
                        && lone
                        && let Some(lone) = self.delay_lone_replica(index, view, primary)
                    {
                        let end = self.context.start + fault.end;
                        if switched.contains(&Behaviour::RePropose) {
                            let name = format!("byzantine.{}", Behaviour::RePropose);
                            let baseline = switched_at
                                .as_ref()
                                .and_then(|counters| counter(counters, primary, &name));
                            self.amnesia(view, primary, baseline.unwrap_or(0), until).await;
                        }
                        self.view_change_after_rollback(index, view, lone, end).await;
                    }
                }
                before = Some(self.counters().await);
                behaviours = switched.clone();
            }
            FaultAction::ForceViewChange => {
                let until = self.context.start + fault.end;
                if self.force_byzantine_primary(until).await.is_some() {
                    hit = replicas.clone();
                }
            }
            FaultAction::Twins => {
                let replica = replicas[0];
                match self.start_twin(replica, twin_group.clone()) {
                    Ok(()) => {
                        hit.push(replica);
                        self.report.twins += 1;
                        self.twin_groups.insert(replica, twin_group.clone());
                        self.reroute(replica, &twin_group).await;
                    }
                    Err(error) => self.error(format!("twin of replica {}: {error:#}", replica.0)),
                }
            }
            _ => {
                self.apply_links();
                hit = replicas.clone();
            }
        }
        let active =
            Active { kind, target, replicas, hit, switched: switched_at, before, behaviours };
        self.active.insert(index, active);
    }

    /// Every replica's counters (`None` for one that does not answer and was never killed),
    /// summed over its lives (a killed replica's are those of its earlier lives), with
    /// [`CLIENT_DISSENT`]: the completed requests for which its INFORM disagreed with the proof,
    /// as the clients counted them.
    async fn counters(&self) -> Counters {
        let dissent = self.context.recorder.dissents();
        self.context
            .cluster
            .statuses()
            .await
            .into_iter()
            .enumerate()
            .map(|(index, status)| {
                let replica = ReplicaId(index as u8);
                let banked = self.banked.get(&replica);
                let mut counters = match (status, banked) {
                    (Some(status), _) => status.counters,
                    (None, Some(_)) => BTreeMap::new(),
                    (None, None) => return None,
                };
                for (name, value) in banked.into_iter().flatten() {
                    *counters.entry(name.clone()).or_default() += value;
                }
                let dissented = dissent.get(&(index as u32)).copied().unwrap_or(0);
                counters.insert(CLIENT_DISSENT.into(), dissented);
                Some(counters)
            })
            .collect()
    }

    /// Kills replica `index` (SIGKILL), banking its counters first so that the adversary's
    /// accounting survives the restart.
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

    /// The view that at least nf reachable replicas are in, and its primary; `None` while the
    /// replicas are between views (a view change under way) or none answers.
    async fn settled_view(&self) -> Option<(u64, ReplicaId)> {
        self.settled_progress().await.map(|(view, primary, _)| (view, primary))
    }

    /// [`Executor::settled_view`], and the highest slot a replica in that view executed.
    async fn settled_progress(&self) -> Option<(u64, ReplicaId, u64)> {
        let n = self.replica_count();
        let nf = usize::from(n) - (usize::from(n) - 1) / 3;
        let reports: Vec<(u64, u64)> = self
            .context
            .cluster
            .statuses()
            .await
            .into_iter()
            .flatten()
            .map(|s| (s.view, s.last_executed))
            .collect();
        let view = reports.iter().map(|(view, _)| *view).max()?;
        let holding: Vec<u64> =
            reports.iter().filter(|(other, _)| *other == view).map(|(_, seq)| *seq).collect();
        let executed = holding.iter().copied().max().unwrap_or(0);
        (holding.len() >= nf).then(|| (view, replica::core::View(view).primary(n), executed))
    }

    /// Moves the primary role onto a declared Byzantine replica before `until`: once the view
    /// has settled (nf replicas in it), while its primary is honest, that primary's links are
    /// blocked until the view moves on (at most n cuts, each at most [`FORCE_STEP_TIMEOUT`]).
    /// Done when a Byzantine primary's view has settled twice in a row. Returns that view and
    /// its primary when it got there; records a `force-view-change` info either way.
    #[allow(clippy::disallowed_methods, reason = "the forcing waits on the wall clock")]
    async fn force_byzantine_primary(&mut self, until: Instant) -> Option<(u64, ReplicaId)> {
        let n = self.replica_count();
        let byzantine = self.context.byzantine.to_vec();
        let mut cut: Vec<u8> = Vec::new();
        let mut reached = None;
        let mut confirmed: Option<(u64, ReplicaId)> = None;
        // The honest view last seen settled, the slot executed then, and when.
        let mut seen: Option<(u64, u64, Instant)> = None;
        // Bounded by `until`, and by n cuts.
        while Instant::now() < until && cut.len() <= usize::from(n) {
            let Some((view, primary, executed)) = self.settled_progress().await else {
                confirmed = None;
                tokio::time::sleep(FORCE_POLL).await;
                continue;
            };
            if byzantine.contains(&primary) {
                if confirmed == Some((view, primary)) {
                    reached = Some((view, primary));
                    break;
                }
                confirmed = Some((view, primary));
                tokio::time::sleep(FORCE_POLL * 3).await;
                continue;
            }
            confirmed = None;
            if self.context.network.is_none() || cut.len() == usize::from(n) {
                break;
            }
            // Let the view execute something new first (at most FORCE_PROGRESS_WAIT): a view
            // cut before it executed counts as a failed view change at every replica, and the
            // timers double each time (PROTOCOL §7), so forcing through several views would
            // slow down step by step.
            match seen {
                Some((seen_view, at_seq, since)) if seen_view == view => {
                    let progressed = executed >= at_seq + FORCE_PROGRESS_SLOTS;
                    if !progressed && since.elapsed() < FORCE_PROGRESS_WAIT {
                        tokio::time::sleep(FORCE_POLL).await;
                        continue;
                    }
                }
                _ => {
                    seen = Some((view, executed, Instant::now()));
                    tokio::time::sleep(FORCE_POLL).await;
                    continue;
                }
            }
            cut.push(primary.0);
            if !self.cut_primary(view, primary, until).await {
                break;
            }
        }
        let value = match reached {
            Some((view, primary)) => {
                self.report.forced_view_changes += 1;
                json!({"primary": primary.0, "view": view, "cut": cut})
            }
            None => json!({"primary": null, "cut": cut, "reason": "no Byzantine primary in time"}),
        };
        eprintln!("ordeal: nemesis at {:.1} s: force-view-change {value}", self.elapsed_s());
        self.context.recorder.nemesis(OpKind::Info, FaultKind::ForceViewChange.name(), value);
        reached
    }

    /// Cuts `primary`'s links in the relay until the settled view moves past `view` (at most
    /// [`FORCE_STEP_TIMEOUT`], and never past `until`); false when the cut could not be made.
    #[allow(clippy::disallowed_methods, reason = "the cut waits on the wall clock")]
    async fn cut_primary(&mut self, view: u64, primary: ReplicaId, until: Instant) -> bool {
        let n = self.replica_count();
        let mut order: Vec<ReplicaId> = (0..n).map(ReplicaId).collect();
        order.retain(|replica| *replica != primary);
        order.insert(0, primary);
        match nemesis::network::partition(PartitionShape::IsolateOne, &order) {
            Ok(faults) => {
                self.links.insert(FORCE_LINKS, faults);
            }
            Err(error) => {
                self.error(format!("force-view-change: {error}"));
                return false;
            }
        }
        self.apply_links();
        let step_end = (Instant::now() + FORCE_STEP_TIMEOUT).min(until);
        // Bounded by `step_end`.
        while Instant::now() < step_end {
            tokio::time::sleep(FORCE_POLL).await;
            if self.settled_view().await.is_some_and(|(now, _)| now > view) {
                break;
            }
        }
        self.links.remove(&FORCE_LINKS);
        self.apply_links();
        true
    }

    /// The second view change of a lone-executor attack (fault `index`): once a replica has
    /// entered a view past `view` (the new primary, which has sent its NV-PROPOSE), the delay on
    /// the lone replica's links is lifted (it has done its part, and its slow acknowledgements
    /// would throttle the NV-PROPOSE the lone replica must now receive: with a 600 ms round
    /// trip it took seconds); once replica `lone` rolled back and the new view has settled
    /// (waiting at most until `until`), the view's honest primary is cut off once more, so that
    /// the next view change runs over evidence that holds two certificates from different views
    /// for the slots the lone replica rolled back (the older one, re-presented by a Byzantine
    /// replica that hides or downgrades evidence, names the batch that lost). It must come
    /// before the next checkpoint is stable, or those slots fall out of the evidence. Records a
    /// `force-view-change` info with `after_rollback`.
    #[allow(clippy::disallowed_methods, reason = "the wait is on the wall clock")]
    async fn view_change_after_rollback(
        &mut self,
        index: usize,
        view: u64,
        lone: ReplicaId,
        until: Instant,
    ) {
        let rollbacks = |counters: &Counters| counter(counters, lone, "rollbacks");
        let Some(before) = rollbacks(&self.counters().await) else { return };
        let mut claim_failure_at =
            self.context.beyond_budget.then(|| Instant::now() + LONE_FAILURE_AFTER);
        // Bounded by `until`.
        while Instant::now() < until {
            tokio::time::sleep(FORCE_POLL / 2).await;
            if self.links.contains_key(&index) {
                let statuses = self.context.cluster.statuses().await;
                let entered = statuses.iter().flatten().map(|status| status.view).max();
                if entered.is_some_and(|entered| entered <= view)
                    && claim_failure_at.is_some_and(|at| Instant::now() >= at)
                {
                    claim_failure_at = None;
                    self.claim_failure(index, view).await;
                }
                if entered.is_some_and(|entered| entered > view) {
                    self.links.remove(&index);
                    self.apply_links();
                    let value = json!({"lone": lone.0, "view": entered, "delay_ms": 0});
                    eprintln!(
                        "ordeal: nemesis at {:.1} s: lone-executor {value}",
                        self.elapsed_s()
                    );
                    self.context.recorder.nemesis(OpKind::Info, "lone-executor", value);
                }
                continue;
            }
            if rollbacks(&self.counters().await).is_none_or(|now| now <= before) {
                continue;
            }
            let Some((now, primary)) = self.settled_view().await else { continue };
            if now <= view {
                continue;
            }
            if self.context.byzantine.contains(&primary) || self.context.network.is_none() {
                return;
            }
            let value = json!({"after_rollback": true, "cut": [primary.0], "view": now});
            eprintln!("ordeal: nemesis at {:.1} s: force-view-change {value}", self.elapsed_s());
            self.context.recorder.nemesis(OpKind::Info, FaultKind::ForceViewChange.name(), value);
            self.cut_primary(now, primary, until).await;
            return;
        }
    }

    /// The crashes of an amnesia probe (`re-propose` in a lone-executor attack): once
    /// Byzantine primary `primary` of `view` offers second batches for the slots whose
    /// evidence it withholds (its `re-propose` counter past `baseline`, waiting at most until
    /// `until`), the honest replicas that supported those slots without seeing them committed
    /// (neither in the dark nor the lone one) are killed and restarted one at a time, as many
    /// as the second batch needs to reach nf votes with the primary's and those of the replicas
    /// in the dark. A replica that persisted its votes before sending them (PROTOCOL §9.4)
    /// refuses the second batch after its restart; one that forgot them lets two batches be
    /// certified for one (view, seq). A crash and restart with the durable state intact is not
    /// a fault of the budget for safety (the replica comes back the same replica), and the
    /// replicas are down one at a time for [`AMNESIA_DOWN`] only. Records an `amnesia` info.
    #[allow(clippy::disallowed_methods, reason = "the wait is on the wall clock")]
    async fn amnesia(&mut self, view: u64, primary: ReplicaId, baseline: u64, until: Instant) {
        let n = self.replica_count();
        let f = (usize::from(n) - 1) / 3;
        let nf = usize::from(n) - f;
        let byzantine = self.context.byzantine;
        let colluders = byzantine.iter().copied().filter(|r| *r != primary).collect();
        let (dark, lone) = lone_roles(n, f, primary, &colluders, replica::core::View(view));
        let voters: Vec<ReplicaId> = (0..n)
            .map(ReplicaId)
            .filter(|r| !byzantine.contains(r) && !dark.contains(r) && Some(*r) != lone)
            .collect();
        let needed = nf.saturating_sub(1 + dark.len()).min(voters.len());
        let name = format!("byzantine.{}", Behaviour::RePropose);
        // Bounded by `until`.
        let offered = loop {
            if Instant::now() >= until {
                break false;
            }
            let offers = counter(&self.counters().await, primary, &name);
            if offers.is_some_and(|now| now > baseline) {
                break true;
            }
            tokio::time::sleep(FORCE_POLL).await;
        };
        if !offered {
            return;
        }
        let mut crashed = Vec::new();
        for voter in voters.into_iter().take(needed) {
            if Instant::now() >= until {
                break;
            }
            if let Err(error) = self.kill(voter.index()).await {
                self.error(format!("amnesia: kill of replica {}: {error:#}", voter.0));
                continue;
            }
            tokio::time::sleep(AMNESIA_DOWN).await;
            if let Err(error) = self.restart(voter.index()).await {
                self.error(format!("amnesia: restart of replica {}: {error:#}", voter.0));
            }
            crashed.push(voter.0);
        }
        let value = json!({"primary": primary.0, "view": view, "restarted": crashed});
        eprintln!("ordeal: nemesis at {:.1} s: amnesia {value}", self.elapsed_s());
        self.context.recorder.nemesis(OpKind::Info, "amnesia", value);
    }

    /// The network's part in a lone-executor attack (`withhold-certificate`): Byzantine primary
    /// `primary` of `view` lets one honest replica alone execute its slots
    /// ([`replica::byzantine::hook::lone_roles`]); the messages that replica sends to the
    /// other honest replicas are delayed by [`LONE_DELAY`] while Byzantine fault `index` lasts,
    /// so that the view change that follows forms without its VC-REQUEST and it must roll
    /// back. Delays are the asynchrony the protocol must tolerate, not a fault of the budget.
    /// Returns the lone replica.
    fn delay_lone_replica(
        &mut self,
        index: usize,
        view: u64,
        primary: ReplicaId,
    ) -> Option<ReplicaId> {
        let n = self.replica_count();
        let f = (usize::from(n) - 1) / 3;
        let colluders = self.context.byzantine.iter().copied().filter(|r| *r != primary).collect();
        let (_, lone) = lone_roles(n, f, primary, &colluders, replica::core::View(view));
        let lone = lone?;
        let link = LinkFault { delay: LONE_DELAY, ..LinkFault::default() };
        let mut faults = NetworkFaults::healthy();
        // Not towards the Byzantine replicas: the lone replica's votes must reach the primary
        // at once (and a slow acknowledgement path would throttle the primary's QUIC stream to
        // it), only its VC-REQUEST must reach the honest ones late.
        let byzantine = self.context.byzantine;
        let honest =
            (0..n).map(ReplicaId).filter(|other| *other != lone && !byzantine.contains(other));
        for other in honest {
            faults.set(Node::Replica(lone), Node::Replica(other), link);
        }
        self.links.insert(index, faults);
        self.apply_links();
        let value = json!({"lone": lone.0, "primary": primary.0, "view": view,
            "delay_ms": LONE_DELAY.as_millis() as u64});
        eprintln!("ordeal: nemesis at {:.1} s: lone-executor {value}", self.elapsed_s());
        self.context.recorder.nemesis(OpKind::Info, "lone-executor", value);
        Some(lone)
    }

    /// Whether Byzantine fault `active` acted: the targeted hooks counted their behaviours
    /// since they were switched on, and an honest replica shows it processed the result
    /// (refused a message from an attacker, or for `replay` took one as a late vote; started a
    /// view change, rolled back, asked for state) or a client outvoted an attacker's INFORM
    /// ([`CLIENT_DISSENT`]) since the attack was under way, or since the switch when the hooks
    /// already acted while the primary role was being forced (an equivocation can stall the
    /// view at once). `None` when it acted, else why not.
    async fn vacuity(&self, active: &Active) -> Option<String> {
        let before = active.before.as_ref()?;
        let switched = active.switched.as_ref().unwrap_or(before);
        let after = self.counters().await;
        let get = |snapshot: &Counters, replica: ReplicaId, name: &str| -> u64 {
            counter(snapshot, replica, name).unwrap_or(0)
        };
        let hooks_between = |from: &Counters, to: &Counters| -> u64 {
            active
                .hit
                .iter()
                .flat_map(|replica| {
                    active
                        .behaviours
                        .iter()
                        .map(move |behaviour| (replica, format!("byzantine.{}", behaviour.name())))
                })
                .map(|(&replica, name)| {
                    get(to, replica, &name).saturating_sub(get(from, replica, &name))
                })
                .sum()
        };
        if hooks_between(switched, &after) == 0 {
            return Some("no behaviour acted in the Byzantine replicas' hooks".into());
        }
        let baseline = if hooks_between(switched, before) > 0 { switched } else { before };
        let delta = |replica: ReplicaId, name: &str| -> u64 {
            get(&after, replica, name).saturating_sub(get(baseline, replica, name))
        };
        let byzantine = self.context.byzantine;
        let honest = (0..self.replica_count()).map(ReplicaId).filter(|r| !byzantine.contains(r));
        // A replayed old vote is taken and ignored as late, not refused.
        let replayed = active.behaviours.contains(&Behaviour::Replay);
        let mut effects = 0;
        for replica in honest {
            for attacker in &active.hit {
                effects += delta(replica, &format!("rejected_from.{}", attacker.0));
                if replayed {
                    effects += delta(replica, &format!("late_from.{}", attacker.0));
                }
            }
            for name in HONEST_EFFECTS {
                effects += delta(replica, name);
            }
        }
        // The clients are honest receivers too.
        for attacker in &active.hit {
            effects += delta(*attacker, CLIENT_DISSENT);
        }
        (effects == 0).then(|| {
            "no honest replica refused an attacker's message, changed view, rolled back or \
             asked for state, and no client outvoted an attacker's INFORM, while it lasted"
                .into()
        })
    }

    /// The declared Byzantine replicas `spec` names among `candidates`, or `None` (reported)
    /// when there are none or the spec names a replica that is not Byzantine.
    fn pick_byzantine(
        &mut self,
        spec: &TargetSpec,
        n: u8,
        primary: Option<ReplicaId>,
        candidates: &[ReplicaId],
    ) -> Option<Vec<ReplicaId>> {
        if candidates.is_empty() {
            self.error("a Byzantine fault not started: no declared Byzantine replica free".into());
            return None;
        }
        // A joint attack: every free Byzantine replica in its role.
        if *spec == TargetSpec::All {
            return Some(candidates.to_vec());
        }
        let replicas = self.picker.pick(spec, n, primary, candidates);
        if let Some(honest) = replicas.iter().find(|replica| !candidates.contains(replica)) {
            self.error(format!(
                "a Byzantine fault not started: replica {} is not a free Byzantine replica",
                honest.0
            ));
            return None;
        }
        Some(replicas)
    }

    /// Beyond the budget: the Byzantine replicas of fault `index` add `false-failure` to their
    /// behaviours (f + 1 VC-REQUESTs for the view after `view`); recorded as a
    /// `false-failure` info.
    async fn claim_failure(&mut self, index: usize, view: u64) {
        let Some((replicas, behaviours)) = self.behaviours.get_mut(&index) else { return };
        behaviours.push(Behaviour::FalseFailure);
        let replicas = replicas.clone();
        for replica in &replicas {
            self.apply_behaviours(*replica).await;
        }
        let value = json!({"replicas": numbers(&replicas), "view": view, "beyond_budget": true});
        eprintln!("ordeal: nemesis at {:.1} s: false-failure {value}", self.elapsed_s());
        self.context.recorder.nemesis(OpKind::Info, "false-failure", value);
    }

    /// Tells `replica` to behave as the union of its active Byzantine faults (none: correctly);
    /// true when it answered.
    async fn apply_behaviours(&mut self, replica: ReplicaId) -> bool {
        let mut behaviours: Vec<Behaviour> = self
            .behaviours
            .values()
            .filter(|(replicas, _)| replicas.contains(&replica))
            .flat_map(|(_, behaviours)| behaviours.iter().copied())
            .collect();
        behaviours.sort();
        behaviours.dedup();
        match self.context.cluster.behave(replica.index(), behaviours).await {
            Ok(()) => true,
            Err(error) => {
                self.error(format!("behaviour of replica {}: {error:#}", replica.0));
                false
            }
        }
    }

    /// Hands the merged link faults of every active network fault to the relay.
    fn apply_links(&mut self) {
        let mut merged = NetworkFaults::healthy();
        for faults in self.links.values() {
            merged.merge(faults);
        }
        if let Some(network) = self.context.network {
            network.set_faults(merged);
        } else if !merged.is_healthy() {
            self.error("network fault not applied: the run has no relay (--no-relay)".into());
        }
    }

    fn start_twin(&mut self, replica: ReplicaId, group: Vec<ReplicaId>) -> anyhow::Result<()> {
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
        network.set_twin(replica, Some(Twin { address, group }))?;
        Ok(())
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

    /// Ends active fault `index`, if it is active: undoes what it did and records the info.
    async fn end(&mut self, index: usize) {
        let Some(active) = self.active.remove(&index) else { return };
        let mut ended = Vec::new();
        let mut errors = Vec::new();
        let done = match active.kind {
            FaultKind::Kill => "restarted",
            FaultKind::Pause => "resumed",
            FaultKind::Byzantine => "behaving",
            FaultKind::Twins => "twin-stopped",
            _ => "healed",
        };
        match active.kind {
            FaultKind::Kill | FaultKind::Pause => {
                for replica in &active.replicas {
                    let index = replica.index();
                    if !active.hit.contains(replica) {
                        // The signal never reached it: nothing to undo.
                        ended.push(*replica);
                        continue;
                    }
                    let result = match active.kind {
                        FaultKind::Kill => self.restart(index).await,
                        _ => self.context.cluster.resume(index),
                    };
                    match result {
                        Ok(()) => ended.push(*replica),
                        Err(error) => errors.push(format!("replica {index}: {error:#}")),
                    }
                }
                // Replicas that could not be restarted or resumed stay down in the budget, so
                // later faults cannot take the run beyond f; the heal tries them again.
                self.budget.end(active.kind, &ended).expect("ending replicas of an active fault");
            }
            FaultKind::Byzantine => {
                if active.before.is_some() {
                    match self.vacuity(&active).await {
                        None => self.report.acted += 1,
                        Some(why) => self.report.vacuous.push(json!({
                            "fault": index,
                            "behaviours":
                                active.behaviours.iter().map(|b| b.name()).collect::<Vec<_>>(),
                            "replicas": numbers(&active.hit),
                            "why": why,
                        })),
                    }
                }
                self.behaviours.remove(&index);
                if self.links.remove(&index).is_some() {
                    self.apply_links();
                }
                for replica in &active.replicas {
                    if active.hit.contains(replica) {
                        if self.apply_behaviours(*replica).await {
                            ended.push(*replica);
                        }
                    } else if self.context.cluster.behave(replica.index(), Vec::new()).await.is_ok()
                    {
                        // Down when the fault started, restarted with its behaviours since.
                        ended.push(*replica);
                    }
                }
            }
            FaultKind::Twins => {
                for replica in &active.hit {
                    if let Some(network) = self.context.network
                        && let Err(error) = network.set_twin(*replica, None)
                    {
                        errors.push(format!("twin {}: {error}", replica.0));
                    }
                    match self.context.cluster.kill_twin(replica.index()).await {
                        Ok(()) => ended.push(*replica),
                        Err(error) => errors.push(format!("twin {}: {error:#}", replica.0)),
                    }
                    let group = self.twin_groups.remove(replica).unwrap_or_default();
                    self.reroute(*replica, &group).await;
                }
            }
            _ => {
                self.links.remove(&index);
                self.apply_links();
                ended = active.replicas.clone();
            }
        }
        let mut value = json!({"target": active.target, "replicas": numbers(&active.replicas)});
        value[done] = json!(numbers(&ended));
        if !errors.is_empty() {
            value["errors"] = json!(errors);
        }
        self.context.recorder.nemesis(OpKind::Info, active.kind.name(), value);
        eprintln!(
            "ordeal: nemesis at {:.1} s: {} ended, {done} {:?}",
            self.elapsed_s(),
            active.kind.name(),
            numbers(&ended)
        );
        for error in errors {
            self.error(format!("{} not undone: {error}", active.kind.name()));
        }
    }

    /// Starts killed replica `index` again and waits (bounded) for it to answer; the restart
    /// counts once it does. A Byzantine replica gets its active behaviours back. An error
    /// leaves the replica down.
    async fn restart(&mut self, index: usize) -> anyhow::Result<()> {
        let FaultContext { cluster, endpoint, controller, .. } = &mut self.context;
        cluster.restart(index)?;
        match cluster.reconnect(index, endpoint, controller, RESTART_ANSWER_TIMEOUT).await {
            Ok(_) => {
                self.report.restarts += 1;
                let replica = ReplicaId(index as u8);
                if self.behaviours.values().any(|(replicas, _)| replicas.contains(&replica)) {
                    self.apply_behaviours(replica).await;
                }
            }
            Err(error) => {
                // Started, so not crashed by the nemesis any more; the run's end says whether
                // it lived.
                self.report.restarts_unanswered += 1;
                self.error(format!("restarted replica {index} did not answer: {error:#}"));
            }
        }
        Ok(())
    }

    /// The final heal: ends every active fault, then resumes and restarts whatever is still
    /// paused or killed, heals every link, switches every Byzantine behaviour off and stops
    /// every twin, as one `heal` invoke/info pair.
    async fn heal(&mut self) {
        let indices: Vec<usize> = self.active.keys().copied().collect();
        for index in indices {
            self.end(index).await;
        }
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
        self.links.clear();
        if let Some(network) = self.context.network {
            network.set_faults(NetworkFaults::healthy());
        }
        self.behaviours.clear();
        let mut correct = Vec::new();
        for replica in self.context.byzantine.iter().copied() {
            // Harmless when it was never malicious; a replica that is down is not told.
            if self.context.cluster.behave(replica.index(), Vec::new()).await.is_ok() {
                correct.push(replica.0);
            }
        }
        for index in self.context.cluster.twins() {
            if let Some(network) = self.context.network
                && let Err(error) = network.set_twin(ReplicaId(index as u8), None)
            {
                errors.push(format!("twin {index}: {error}"));
            }
            if let Err(error) = self.context.cluster.kill_twin(index).await {
                errors.push(format!("twin {index}: {error:#}"));
            }
            let replica = ReplicaId(index as u8);
            let group = self.twin_groups.remove(&replica).unwrap_or_default();
            self.reroute(replica, &group).await;
        }
        let mut value = json!({"resumed": resumed, "restarted": restarted, "correct": correct});
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

/// Counter `name` of `replica` in a snapshot of every replica's counters; `None` when the
/// replica did not answer or has no such counter.
fn counter(counters: &Counters, replica: ReplicaId, name: &str) -> Option<u64> {
    counters.get(replica.index())?.as_ref()?.get(name).copied()
}
