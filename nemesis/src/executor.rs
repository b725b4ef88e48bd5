//! The nemesis's executor, sans IO: a [`Schedule`] played on any clock, over any cluster.
//!
//! [`Executor::poll`] takes the time (since the workload started) and an [`Observe`] view of
//! the cluster (each replica's view and progress, and its counters) and returns the
//! [`Effect`]s to carry out now: kill, restart, pause, resume, new link faults for the network,
//! new behaviours for a Byzantine replica, and the nemesis events to record in the history.
//! [`Executor::next_wake`] says when to poll again. Nothing here reads a clock or draws from
//! an unseeded source: the same schedule, seed and observations give the same effects, which is
//! what the simulator (`harness::sim`) needs to replay a run exactly.
//!
//! The rules are the harness's (`harness::faults` module docs): a fault's targets are resolved
//! when it starts (the primary as observed, a seeded [`TargetPicker`] for the rest), kill and
//! pause are admitted by the [`Budget`], network faults of every active fault are merged, a
//! Byzantine fault switches on the union of its replicas' active behaviours and, when one of
//! them needs the primary role, first forces the view onto a declared Byzantine replica
//! (cutting each honest primary off until the view moves, as a polled state machine on the
//! caller's clock). A Byzantine fault that never acted (no behaviour acted in the hooks, or no
//! honest replica or client saw an effect) is reported as vacuous. The final heal ends every
//! fault, restarts and resumes every replica down, heals every link and switches every
//! behaviour off, as one `heal` invoke/info pair.
//!
//! A twin is started and stopped by effects too ([`Effect::StartTwin`], [`Effect::StopTwin`]):
//! a second node with a declared Byzantine replica's identity, reached by a seeded half of the
//! other replicas. A Byzantine fault that makes a lone-executor attack runs its choreography
//! (delay, amnesia crashes, a second view change after the rollback) once the primary role is
//! forced ([`lone`]).
//!
//! The harness (`harness::faults`) and the simulator (`harness::sim`) both run this executor:
//! each observes its own cluster and carries out the effects in its own world.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use history::OpKind;
use replica::byzantine::Behaviour;
use replica::core::{ReplicaId, View};
use serde::Serialize;
use serde_json::{Value, json};

use crate::network::{LinkFault, NetworkFaults, PartitionShape, partition};
use crate::schedule::{Action, FaultAction, FaultKind, Schedule, Step, TargetPicker, TargetSpec};
use crate::{Budget, Fault};

mod lone;

pub use lone::{AMNESIA_DOWN, LONE_DELAY, LONE_FAILURE_AFTER};

/// How often a forced view change looks at the replicas' views.
pub const FORCE_POLL: Duration = Duration::from_millis(100);

/// How long one cut of a forced view change waits for the view to move.
pub const FORCE_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// Slots a view must execute past the moment it was seen settled before the forcing cuts its
/// primary (a view cut before it executed anything counts as a failed view change everywhere,
/// and the timers double each time).
pub const FORCE_PROGRESS_SLOTS: u64 = 3;

/// How long the forcing waits for that progress at most.
pub const FORCE_PROGRESS_WAIT: Duration = Duration::from_millis(1500);

/// Counters of an honest replica that show it received and processed what an attack altered,
/// withheld or forged (besides `rejected_from.<attacker>`).
pub const HONEST_EFFECTS: [&str; 3] = ["view_changes_started", "rollbacks", "state_requests_sent"];

/// The counter of each replica's INFORMs that a client outvoted (its view, slot or result was
/// not the proof's): an altered INFORM acts at the client that weighs it.
pub const CLIENT_DISSENT: &str = "clients.dissent";

/// The key of the links a forced view change blocks, beside the faults' own (by index).
const FORCE_LINKS: usize = usize::MAX;

/// What a replica reports of itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Status {
    /// Its view.
    pub view: u64,
    /// Its last executed slot.
    pub last_executed: u64,
}

/// What the executor sees of the cluster when it is polled.
pub trait Observe {
    /// Replica `replica`'s status, `None` when it is down or does not answer.
    fn status(&self, replica: ReplicaId) -> Option<Status>;
    /// Counter `name` of `replica`, summed over its lives (0 when it has none), with
    /// [`CLIENT_DISSENT`] as the clients counted it.
    fn counter(&self, replica: ReplicaId, name: &str) -> u64;
}

/// What the world must do now.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Kill the replica (SIGKILL: it keeps only what it persisted).
    Kill(ReplicaId),
    /// Start a killed replica again from what it persisted.
    Restart(ReplicaId),
    /// Pause the replica (SIGSTOP).
    Pause(ReplicaId),
    /// Resume a paused replica.
    Resume(ReplicaId),
    /// The network's link faults from now on (every active fault's, merged).
    Links(NetworkFaults),
    /// Start a twin of the (declared Byzantine) replica: a second, correct node with its
    /// identity and keys and an empty disk, which the replicas of `group` reach instead of the
    /// original (and the only ones its packets reach).
    StartTwin {
        /// The replica.
        replica: ReplicaId,
        /// The replicas routed to the twin.
        group: Vec<ReplicaId>,
    },
    /// Stop the replica's twin; its group reaches the original again.
    StopTwin(ReplicaId),
    /// The replica's Byzantine hook behaves so from now on (none: correctly).
    Behave {
        /// The replica.
        replica: ReplicaId,
        /// Its behaviours.
        behaviours: Vec<Behaviour>,
    },
    /// Record a nemesis event (process `nemesis`) in the history.
    Record {
        /// `invoke` when a fault starts, `info` when it ends or reports.
        kind: OpKind,
        /// The fault kind's name (or `heal`).
        f: String,
        /// Targets and parameters.
        value: Value,
    },
}

/// What the executor did, for `results.json`'s `faults`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// Faults started.
    pub faults: u64,
    /// Faults started, by kind.
    pub by_kind: BTreeMap<String, u64>,
    /// Byzantine behaviours switched on, by behaviour.
    pub behaviours: BTreeMap<String, u64>,
    /// Restarts of killed replicas.
    pub restarts: u64,
    /// Views forced onto a Byzantine primary.
    pub forced_view_changes: u64,
    /// Twins started.
    pub twins: u64,
    /// Byzantine faults that acted.
    pub acted: u64,
    /// Byzantine faults that never acted, with the reason.
    pub vacuous: Vec<Value>,
    /// Faults refused.
    pub errors: Vec<String>,
    /// The replicas each started fault resolved to, by its index in the schedule (a
    /// partition's whole order): replaying them as explicit targets replays the faults.
    pub targets: BTreeMap<usize, Vec<u8>>,
    /// The most faulty replicas allowed.
    pub limit: usize,
    /// The most replicas faulty at once.
    pub faulty_max: usize,
    /// The most replicas crashed at once.
    pub crashed_max: usize,
    /// The most replicas paused at once.
    pub paused_max: usize,
    /// When the final heal happened.
    pub final_heal: Option<Duration>,
}

/// Counter values of chosen `(replica, name)` pairs at one moment.
type Snapshot = BTreeMap<(ReplicaId, String), u64>;

/// A fault under way.
#[derive(Debug)]
struct Active {
    kind: FaultKind,
    target: &'static str,
    replicas: Vec<ReplicaId>,
    /// Byzantine faults: the behaviours switched on.
    behaviours: Vec<Behaviour>,
    /// Byzantine faults: the counters when the behaviours were switched on.
    switched: Option<Snapshot>,
    /// Byzantine faults: the counters once the attack was under way (after the primary role
    /// was forced onto a Byzantine replica, when it had to be).
    before: Option<Snapshot>,
}

/// A forced view change under way: cuts the honest primary off until the view's primary is a
/// declared Byzantine replica.
#[derive(Debug)]
struct Forcing {
    /// The fault that asked for it.
    fault: usize,
    /// When it gives up.
    until: Duration,
    /// The primaries cut so far.
    cut: Vec<u8>,
    /// A Byzantine primary's view seen settled once (it must be seen twice).
    confirmed: Option<(u64, ReplicaId)>,
    /// The honest view last seen settled, its executed slot then, and when.
    seen: Option<(u64, u64, Duration)>,
    /// The view whose primary is cut off now, and when the cut ends at the latest.
    cutting: Option<(u64, Duration)>,
    /// When to look again.
    wake: Duration,
}

/// How a forcing ended.
enum Forced {
    Reached(u64, ReplicaId),
    Failed,
}

/// Plays one schedule (module docs).
#[derive(Debug)]
pub struct Executor {
    replica_count: u8,
    byzantine: Vec<ReplicaId>,
    faults: Vec<Fault>,
    actions: Vec<Action>,
    /// The next action of `actions` to take.
    next: usize,
    budget: Budget,
    picker: TargetPicker,
    active: BTreeMap<usize, Active>,
    /// The link faults of each active network fault (and of a forcing's cut).
    links: BTreeMap<usize, NetworkFaults>,
    /// The behaviours of each active Byzantine fault, and its replicas.
    behaviours: BTreeMap<usize, (Vec<ReplicaId>, Vec<Behaviour>)>,
    forcing: Option<Forcing>,
    /// The lone-executor choreography under way.
    lone: Option<lone::Lone>,
    /// Whether the world can change links (the harness without its relay cannot).
    network: bool,
    beyond_budget: bool,
    /// The running twins, and the replicas routed to each.
    twins: BTreeMap<ReplicaId, Vec<ReplicaId>>,
    /// Byzantine faults past their scheduled end that have not acted yet: how long they may
    /// still be held, and their scheduled end ([`Executor::hold`]).
    held: BTreeMap<usize, (Duration, Duration)>,
    /// When the held faults are looked at next.
    held_check: Duration,
    /// When the final heal is due.
    heal_at: Duration,
    healed: bool,
    report: Report,
}

impl Executor {
    /// An executor of `schedule` over `replica_count` replicas, `byzantine` of them declared
    /// Byzantine, its targets drawn from `seed`.
    pub fn new(
        schedule: &Schedule,
        replica_count: u8,
        byzantine: &[ReplicaId],
        beyond_budget: bool,
        seed: u64,
    ) -> Executor {
        let budget = Budget::with_byzantine(schedule.f, byzantine, beyond_budget);
        let actions = schedule.actions();
        let heal_at = actions
            .iter()
            .find(|action| action.step == Step::Heal)
            .map_or(Duration::MAX, |action| action.at);
        Executor {
            replica_count,
            byzantine: byzantine.to_vec(),
            faults: schedule.faults.clone(),
            actions,
            next: 0,
            budget,
            picker: TargetPicker::new(seed),
            active: BTreeMap::new(),
            links: BTreeMap::new(),
            behaviours: BTreeMap::new(),
            forcing: None,
            lone: None,
            network: true,
            beyond_budget,
            twins: BTreeMap::new(),
            held: BTreeMap::new(),
            held_check: Duration::ZERO,
            heal_at,
            healed: false,
            report: Report::default(),
        }
    }

    /// The executor for a world whose links it cannot change (the harness with `--no-relay`):
    /// a forced view change gives up at once instead of cutting a primary off.
    pub fn without_network(mut self) -> Executor {
        self.network = false;
        self
    }

    /// When the executor wants to be polled next; `None` once healed.
    pub fn next_wake(&self) -> Option<Duration> {
        if self.healed {
            return None;
        }
        let action = self.actions.get(self.next).map(|action| action.at);
        let forcing = self.forcing.as_ref().map(|forcing| forcing.wake);
        let lone = self.lone.as_ref().map(|lone| lone.wake);
        let held = (!self.held.is_empty()).then_some(self.held_check);
        action.into_iter().chain(forcing).chain(lone).chain(held).min()
    }

    /// Whether the final heal is done.
    pub fn healed(&self) -> bool {
        self.healed
    }

    /// What the executor did so far.
    pub fn report(&self) -> Report {
        let mut report = self.report.clone();
        report.limit = self.budget.limit();
        report.faulty_max = self.budget.faulty_max();
        report.crashed_max = self.budget.crashed_max();
        report.paused_max = self.budget.paused_max();
        report
    }

    /// The effects due at `now` (a forcing's step, then every action due, in order).
    pub fn poll(&mut self, now: Duration, observe: &dyn Observe) -> Vec<Effect> {
        let mut effects = Vec::new();
        if self.healed {
            return effects;
        }
        self.step_forcing(now, observe, &mut effects);
        self.step_lone(now, observe, &mut effects);
        self.step_held(now, observe, &mut effects);
        // Bounded: each iteration takes one action of the schedule.
        while let Some(action) = self.actions.get(self.next).copied() {
            if action.at > now {
                break;
            }
            self.next += 1;
            match action.step {
                Step::Start(index) => self.start(index, now, observe, &mut effects),
                Step::End(index) => {
                    if !self.hold(index, now, observe, &mut effects) {
                        self.end(index, now, observe, &mut effects);
                    }
                }
                Step::Heal => {
                    self.heal(now, observe, &mut effects);
                    break;
                }
            }
        }
        effects
    }

    /// Ends everything now (the run stops early): the final heal.
    pub fn heal_now(&mut self, now: Duration, observe: &dyn Observe) -> Vec<Effect> {
        let mut effects = Vec::new();
        if !self.healed {
            self.heal(now, observe, &mut effects);
        }
        effects
    }

    fn error(&mut self, message: String) {
        self.report.errors.push(message);
    }

    fn all(&self) -> Vec<ReplicaId> {
        (0..self.replica_count).map(ReplicaId).collect()
    }

    /// The view nf replicas hold, its primary, and the highest slot one of them executed.
    fn settled(&self, observe: &dyn Observe) -> Option<(u64, ReplicaId, u64)> {
        let n = usize::from(self.replica_count);
        let nf = n - (n - 1) / 3;
        let reports: Vec<Status> =
            self.all().into_iter().filter_map(|r| observe.status(r)).collect();
        let view = reports.iter().map(|status| status.view).max()?;
        let holding: Vec<u64> = reports
            .iter()
            .filter(|status| status.view == view)
            .map(|status| status.last_executed)
            .collect();
        let executed = holding.iter().copied().max().unwrap_or(0);
        (holding.len() >= nf).then(|| (view, View(view).primary(self.replica_count), executed))
    }

    /// The primary as the replicas report it: that of the highest view any replica is in.
    fn primary(&self, observe: &dyn Observe) -> Option<ReplicaId> {
        let view =
            self.all().into_iter().filter_map(|r| observe.status(r)).map(|s| s.view).max()?;
        Some(View(view).primary(self.replica_count))
    }

    fn start(&mut self, index: usize, now: Duration, observe: &dyn Observe, out: &mut Vec<Effect>) {
        let fault = self.faults[index].clone();
        let kind = fault.kind();
        let n = self.replica_count;
        let wants_primary = fault.target == TargetSpec::Primary
            || fault.action == FaultAction::Partition(PartitionShape::IsolatePrimary);
        let primary = if wants_primary { self.primary(observe) } else { None };
        let target = fault.target.name();
        let mut value = json!({"target": target});
        if let Some(primary) = primary {
            value["primary"] = json!(primary.0);
        }
        let byzantine = self.byzantine.clone();
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
                    order.retain(|replica| !named.contains(replica));
                    order.splice(0..0, named.iter().copied());
                }
                value["shape"] = json!(shape.name());
                value["order"] = json!(numbers(&order));
                match partition(*shape, &order) {
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
                let replicas = self.picker.pick(&fault.target, n, primary, &self.all());
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
                let Some(replicas) = self.pick_byzantine(&fault.target, primary, &byzantine) else {
                    return;
                };
                value["behaviours"] =
                    json!(behaviours.iter().map(|behaviour| behaviour.name()).collect::<Vec<_>>());
                for behaviour in behaviours {
                    *self.report.behaviours.entry(behaviour.name().to_string()).or_default() += 1;
                }
                self.behaviours.insert(index, (replicas.clone(), behaviours.clone()));
                replicas
            }
            FaultAction::ForceViewChange => {
                let Some(replicas) = self.pick_byzantine(&TargetSpec::All, primary, &byzantine)
                else {
                    return;
                };
                replicas
            }
            FaultAction::Twins => {
                let free: Vec<ReplicaId> = byzantine
                    .iter()
                    .copied()
                    .filter(|replica| !self.twins.contains_key(replica))
                    .collect();
                let Some(replicas) = self.pick_byzantine(&fault.target, primary, &free) else {
                    return;
                };
                let twin = replicas[0];
                let others: Vec<ReplicaId> =
                    self.all().into_iter().filter(|replica| *replica != twin).collect();
                let group = self.picker.group(&others);
                value["group"] = json!(numbers(&group));
                self.twins.insert(twin, group);
                vec![twin]
            }
        };
        value["replicas"] = json!(numbers(&replicas));
        self.report.targets.insert(index, numbers(&replicas));
        out.push(Effect::Record { kind: OpKind::Invoke, f: kind.name().into(), value });
        self.report.faults += 1;
        *self.report.by_kind.entry(kind.name().to_string()).or_default() += 1;
        let mut active = Active {
            kind,
            target: fault.target.name(),
            replicas: replicas.clone(),
            behaviours: Vec::new(),
            switched: None,
            before: None,
        };
        match &fault.action {
            FaultAction::Kill => out.extend(replicas.iter().map(|r| Effect::Kill(*r))),
            FaultAction::Pause => out.extend(replicas.iter().map(|r| Effect::Pause(*r))),
            FaultAction::Byzantine(switched) => {
                for replica in &replicas {
                    out.push(self.behave(*replica));
                }
                active.behaviours = switched.clone();
                let snapshot = self.snapshot(&replicas, switched, observe);
                if switched.iter().any(|behaviour| behaviour.needs_primary()) {
                    // Behaviours that need the primary role act once a Byzantine replica has
                    // it (switched on first, so a new primary's lies act in the view change).
                    let until = fault.end - (fault.end - fault.start) / 4;
                    self.begin_forcing(index, now, until, out);
                } else {
                    active.before = Some(snapshot.clone());
                }
                active.switched = Some(snapshot);
            }
            FaultAction::ForceViewChange => self.begin_forcing(index, now, fault.end, out),
            FaultAction::Twins => {
                let group = self.twins[&replicas[0]].clone();
                self.report.twins += 1;
                out.push(Effect::StartTwin { replica: replicas[0], group });
            }
            _ => out.push(self.links_effect()),
        }
        self.active.insert(index, active);
    }

    /// The declared Byzantine replicas `spec` names among `candidates`, or `None` (reported).
    fn pick_byzantine(
        &mut self,
        spec: &TargetSpec,
        primary: Option<ReplicaId>,
        candidates: &[ReplicaId],
    ) -> Option<Vec<ReplicaId>> {
        if candidates.is_empty() {
            self.error("a Byzantine fault not started: no declared Byzantine replica".into());
            return None;
        }
        if *spec == TargetSpec::All {
            return Some(candidates.to_vec());
        }
        let replicas = self.picker.pick(spec, self.replica_count, primary, candidates);
        if let Some(honest) = replicas.iter().find(|replica| !candidates.contains(replica)) {
            self.error(format!(
                "a Byzantine fault not started: replica {} is not a declared Byzantine replica",
                honest.0
            ));
            return None;
        }
        Some(replicas)
    }

    /// Restarts `replica`, and gives it back its behaviours when an active Byzantine fault
    /// holds it (a restarted process starts correct).
    fn restart(&self, replica: ReplicaId, out: &mut Vec<Effect>) {
        out.push(Effect::Restart(replica));
        if self.behaviours.values().any(|(replicas, _)| replicas.contains(&replica)) {
            out.push(self.behave(replica));
        }
    }

    /// `replica`'s behaviours: the union of its active Byzantine faults'.
    fn behave(&self, replica: ReplicaId) -> Effect {
        let mut behaviours: Vec<Behaviour> = self
            .behaviours
            .values()
            .filter(|(replicas, _)| replicas.contains(&replica))
            .flat_map(|(_, behaviours)| behaviours.iter().copied())
            .collect();
        behaviours.sort();
        behaviours.dedup();
        Effect::Behave { replica, behaviours }
    }

    /// The merged link faults of every active network fault.
    fn links_effect(&self) -> Effect {
        let mut merged = NetworkFaults::healthy();
        for faults in self.links.values() {
            merged.merge(faults);
        }
        Effect::Links(merged)
    }

    /// The counters a Byzantine fault of `behaviours` at `hit` is judged by.
    fn watched(&self, hit: &[ReplicaId], behaviours: &[Behaviour]) -> Vec<(ReplicaId, String)> {
        let mut names = Vec::new();
        for &attacker in hit {
            for behaviour in behaviours {
                names.push((attacker, format!("byzantine.{}", behaviour.name())));
            }
            names.push((attacker, CLIENT_DISSENT.to_string()));
        }
        let honest = self.all().into_iter().filter(|r| !self.byzantine.contains(r));
        for replica in honest {
            for attacker in hit {
                names.push((replica, format!("rejected_from.{}", attacker.0)));
                names.push((replica, format!("late_from.{}", attacker.0)));
            }
            for name in HONEST_EFFECTS {
                names.push((replica, name.to_string()));
            }
        }
        names
    }

    fn snapshot(
        &self,
        hit: &[ReplicaId],
        behaviours: &[Behaviour],
        observe: &dyn Observe,
    ) -> Snapshot {
        self.watched(hit, behaviours)
            .into_iter()
            .map(|(replica, name)| {
                let value = observe.counter(replica, &name);
                ((replica, name), value)
            })
            .collect()
    }

    /// Whether Byzantine fault `active` acted (`None`), else why not.
    fn vacuity(&self, active: &Active, observe: &dyn Observe) -> Option<String> {
        let before = active.before.as_ref()?;
        let switched = active.switched.as_ref().unwrap_or(before);
        let after = self.snapshot(&active.replicas, &active.behaviours, observe);
        let get = |snapshot: &Snapshot, replica: ReplicaId, name: &str| -> u64 {
            snapshot.get(&(replica, name.to_string())).copied().unwrap_or(0)
        };
        let hooks_between = |from: &Snapshot, to: &Snapshot| -> u64 {
            let mut sum = 0;
            for &replica in &active.replicas {
                for behaviour in &active.behaviours {
                    let name = format!("byzantine.{}", behaviour.name());
                    sum += get(to, replica, &name).saturating_sub(get(from, replica, &name));
                }
            }
            sum
        };
        if hooks_between(switched, &after) == 0 {
            return Some("no behaviour acted in the Byzantine replicas' hooks".into());
        }
        let baseline = if hooks_between(switched, before) > 0 { switched } else { before };
        let delta = |replica: ReplicaId, name: &str| -> u64 {
            get(&after, replica, name).saturating_sub(get(baseline, replica, name))
        };
        let replayed = active.behaviours.contains(&Behaviour::Replay);
        let mut effects = 0;
        let honest = self.all().into_iter().filter(|r| !self.byzantine.contains(r));
        for replica in honest {
            for attacker in &active.replicas {
                effects += delta(replica, &format!("rejected_from.{}", attacker.0));
                if replayed {
                    effects += delta(replica, &format!("late_from.{}", attacker.0));
                }
            }
            for name in HONEST_EFFECTS {
                effects += delta(replica, name);
            }
        }
        for attacker in &active.replicas {
            effects += delta(*attacker, CLIENT_DISSENT);
        }
        (effects == 0).then(|| {
            "no honest replica refused an attacker's message, changed view, rolled back or \
             asked for state, and no client outvoted an attacker's INFORM, while it lasted"
                .into()
        })
    }

    fn begin_forcing(
        &mut self,
        fault: usize,
        now: Duration,
        until: Duration,
        out: &mut Vec<Effect>,
    ) {
        if let Some(previous) = self.forcing.take() {
            // One forcing at a time: the newer fault takes over.
            self.finish_forcing(previous, Forced::Failed, out);
        }
        self.forcing = Some(Forcing {
            fault,
            until,
            cut: Vec::new(),
            confirmed: None,
            seen: None,
            cutting: None,
            wake: now,
        });
    }

    /// One step of the forcing under way, when it is due.
    fn step_forcing(&mut self, now: Duration, observe: &dyn Observe, out: &mut Vec<Effect>) {
        let Some(mut forcing) = self.forcing.take() else { return };
        if now < forcing.wake {
            self.forcing = Some(forcing);
            return;
        }
        let settled = self.settled(observe);
        if let Some((view, step_end)) = forcing.cutting {
            let moved = settled.is_some_and(|(now_view, _, _)| now_view > view);
            if !moved && now < step_end {
                forcing.wake = now + FORCE_POLL;
                self.forcing = Some(forcing);
                return;
            }
            forcing.cutting = None;
            self.links.remove(&FORCE_LINKS);
            out.push(self.links_effect());
        }
        let n = usize::from(self.replica_count);
        let late = now >= forcing.until || forcing.cut.len() > n;
        // A Byzantine primary's view must be seen settled twice; one seen just before the
        // deadline still gets its second look (once: the forcing stays bounded).
        if let Some((view, primary, _)) = settled
            && self.byzantine.contains(&primary)
        {
            if forcing.confirmed == Some((view, primary)) {
                let fault = forcing.fault;
                self.finish_forcing(forcing, Forced::Reached(view, primary), out);
                self.begin_lone(fault, view, primary, now, observe, out);
                return;
            }
            if !late || forcing.confirmed.is_none() {
                forcing.confirmed = Some((view, primary));
                forcing.wake = now + FORCE_POLL * 3;
                self.forcing = Some(forcing);
                return;
            }
        }
        if late {
            self.finish_forcing(forcing, Forced::Failed, out);
            return;
        }
        let Some((view, primary, executed)) = settled else {
            forcing.confirmed = None;
            forcing.wake = now + FORCE_POLL;
            self.forcing = Some(forcing);
            return;
        };
        forcing.confirmed = None;
        if forcing.cut.len() == n || !self.network {
            self.finish_forcing(forcing, Forced::Failed, out);
            return;
        }
        // Let the view execute something new first (a view cut before it executed anything
        // slows every later view change down).
        match forcing.seen {
            Some((seen_view, at_seq, since)) if seen_view == view => {
                let progressed = executed >= at_seq + FORCE_PROGRESS_SLOTS;
                if !progressed && now.saturating_sub(since) < FORCE_PROGRESS_WAIT {
                    forcing.wake = now + FORCE_POLL;
                    self.forcing = Some(forcing);
                    return;
                }
            }
            _ => {
                forcing.seen = Some((view, executed, now));
                forcing.wake = now + FORCE_POLL;
                self.forcing = Some(forcing);
                return;
            }
        }
        let mut order = self.all();
        order.retain(|replica| *replica != primary);
        order.insert(0, primary);
        match partition(PartitionShape::IsolateOne, &order) {
            Ok(faults) => {
                self.links.insert(FORCE_LINKS, faults);
                out.push(self.links_effect());
            }
            Err(error) => {
                self.error(format!("force-view-change: {error}"));
                self.finish_forcing(forcing, Forced::Failed, out);
                return;
            }
        }
        forcing.cut.push(primary.0);
        forcing.cutting = Some((view, (now + FORCE_STEP_TIMEOUT).min(forcing.until)));
        forcing.wake = now + FORCE_POLL;
        self.forcing = Some(forcing);
    }

    fn finish_forcing(&mut self, forcing: Forcing, forced: Forced, out: &mut Vec<Effect>) {
        if self.links.remove(&FORCE_LINKS).is_some() {
            out.push(self.links_effect());
        }
        let value = match forced {
            Forced::Reached(view, primary) => {
                self.report.forced_view_changes += 1;
                json!({"primary": primary.0, "view": view, "cut": forcing.cut})
            }
            Forced::Failed => {
                let reason = "no Byzantine primary in time";
                json!({"primary": null, "cut": forcing.cut, "reason": reason})
            }
        };
        out.push(Effect::Record {
            kind: OpKind::Info,
            f: FaultKind::ForceViewChange.name().into(),
            value,
        });
        // The attack is under way from now: its effects are counted from here.
        if let Some(active) = self.active.get_mut(&forcing.fault)
            && active.kind == FaultKind::Byzantine
            && active.before.is_none()
        {
            active.before = active.switched.clone();
        }
    }

    /// Whether Byzantine fault `index` acted so far (judged as at its end).
    fn acted(&self, index: usize, observe: &dyn Observe) -> bool {
        self.active.get(&index).is_some_and(|active| {
            active.before.is_some() && self.vacuity(active, observe).is_none()
        })
    }

    /// Holds Byzantine fault `index` past its scheduled end while it has not acted: up to its
    /// own duration again, never past the final heal. A blindly drawn attack whose behaviours
    /// need the primary role often gets it late (the forcing cuts one honest primary after
    /// another); without the hold it would end before acting and leave the seed `unknown`. A
    /// forcing under way gets the longer deadline, one that failed is started again, and the
    /// choreography of a lone-executor attack runs on. The fault ends as soon as it acted
    /// (looked at every [`FORCE_POLL`]); its info then says how long it was held (`held_s`).
    fn hold(
        &mut self,
        index: usize,
        now: Duration,
        observe: &dyn Observe,
        out: &mut Vec<Effect>,
    ) -> bool {
        let Some(active) = self.active.get(&index) else { return false };
        if active.kind != FaultKind::Byzantine || self.acted(index, observe) {
            return false;
        }
        let needs_primary = active.behaviours.iter().any(|behaviour| behaviour.needs_primary());
        let fault = &self.faults[index];
        let duration = fault.end.saturating_sub(fault.start);
        let limit = (fault.end + duration).min(self.heal_at);
        if now >= limit {
            return false;
        }
        let scheduled_end = fault.end;
        let forcing_until = limit.saturating_sub(duration / 4).max(now);
        self.held.insert(index, (limit, scheduled_end));
        self.held_check = now + FORCE_POLL;
        match self.forcing.as_mut() {
            Some(forcing) if forcing.fault == index => forcing.until = forcing_until,
            _ if needs_primary && self.lone.as_ref().is_none_or(|lone| lone.fault != index) => {
                self.begin_forcing(index, now, forcing_until, out);
            }
            _ => {}
        }
        if let Some(lone) = self.lone.as_mut().filter(|lone| lone.fault == index) {
            lone.extend(forcing_until, limit);
        }
        true
    }

    /// Ends the held faults that acted or whose hold is over.
    fn step_held(&mut self, now: Duration, observe: &dyn Observe, out: &mut Vec<Effect>) {
        if self.held.is_empty() || now < self.held_check {
            return;
        }
        self.held_check = now + FORCE_POLL;
        let due: Vec<usize> = self
            .held
            .iter()
            .filter(|(index, (limit, _))| now >= *limit || self.acted(**index, observe))
            .map(|(index, _)| *index)
            .collect();
        for index in due {
            self.end(index, now, observe, out);
        }
    }

    /// Ends fault `index` if it is active: undoes it and records the info.
    fn end(&mut self, index: usize, now: Duration, observe: &dyn Observe, out: &mut Vec<Effect>) {
        if self.forcing.as_ref().is_some_and(|forcing| forcing.fault == index)
            && let Some(forcing) = self.forcing.take()
        {
            self.finish_forcing(forcing, Forced::Failed, out);
        }
        if self.lone.as_ref().is_some_and(|lone| lone.fault == index)
            && let Some(lone) = self.lone.take()
        {
            self.finish_lone(lone, out);
        }
        let Some(active) = self.active.remove(&index) else { return };
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
                    if active.kind == FaultKind::Kill {
                        self.restart(*replica, out);
                        self.report.restarts += 1;
                    } else {
                        out.push(Effect::Resume(*replica));
                    }
                }
                self.budget.end(active.kind, &active.replicas).expect("an active fault's replicas");
            }
            FaultKind::Byzantine => {
                if active.before.is_some() {
                    match self.vacuity(&active, observe) {
                        None => self.report.acted += 1,
                        Some(why) => self.report.vacuous.push(json!({
                            "fault": index,
                            "behaviours":
                                active.behaviours.iter().map(|b| b.name()).collect::<Vec<_>>(),
                            "replicas": numbers(&active.replicas),
                            "why": why,
                        })),
                    }
                }
                self.behaviours.remove(&index);
                if self.links.remove(&index).is_some() {
                    out.push(self.links_effect());
                }
                for replica in &active.replicas {
                    out.push(self.behave(*replica));
                }
            }
            FaultKind::ForceViewChange => {}
            FaultKind::Twins => {
                for replica in &active.replicas {
                    self.twins.remove(replica);
                    out.push(Effect::StopTwin(*replica));
                }
            }
            _ => {
                self.links.remove(&index);
                out.push(self.links_effect());
            }
        }
        let mut value = json!({"target": active.target, "replicas": numbers(&active.replicas)});
        value[done] = json!(numbers(&active.replicas));
        if let Some((_, scheduled_end)) = self.held.remove(&index) {
            value["held_s"] = json!(now.saturating_sub(scheduled_end).as_secs_f64());
        }
        out.push(Effect::Record { kind: OpKind::Info, f: active.kind.name().into(), value });
    }

    /// The final heal (module docs).
    fn heal(&mut self, now: Duration, observe: &dyn Observe, out: &mut Vec<Effect>) {
        let indices: Vec<usize> = self.active.keys().copied().collect();
        for index in indices {
            self.end(index, now, observe, out);
        }
        if let Some(forcing) = self.forcing.take() {
            self.finish_forcing(forcing, Forced::Failed, out);
        }
        if let Some(lone) = self.lone.take() {
            self.finish_lone(lone, out);
        }
        out.push(Effect::Record { kind: OpKind::Invoke, f: "heal".into(), value: Value::Null });
        let crashed: BTreeSet<ReplicaId> = self.budget.crashed().into_iter().collect();
        let paused: BTreeSet<ReplicaId> = self.budget.paused().into_iter().collect();
        for replica in &crashed {
            out.push(Effect::Restart(*replica));
            self.budget.end(FaultKind::Kill, &[*replica]).expect("it was crashed");
        }
        for replica in &paused {
            out.push(Effect::Resume(*replica));
            self.budget.end(FaultKind::Pause, &[*replica]).expect("it was paused");
        }
        self.links.clear();
        out.push(Effect::Links(NetworkFaults::healthy()));
        self.behaviours.clear();
        for replica in self.byzantine.clone() {
            out.push(Effect::Behave { replica, behaviours: Vec::new() });
        }
        for (replica, _) in std::mem::take(&mut self.twins) {
            out.push(Effect::StopTwin(replica));
        }
        let value = json!({
            "resumed": numbers(&paused.into_iter().collect::<Vec<_>>()),
            "restarted": numbers(&crashed.into_iter().collect::<Vec<_>>()),
            "correct": numbers(&self.byzantine),
        });
        out.push(Effect::Record { kind: OpKind::Info, f: "heal".into(), value });
        self.report.final_heal = Some(now);
        self.healed = true;
    }
}

/// The link fault of a delay, loss, duplicate or reorder action.
pub fn link_fault(action: &FaultAction) -> LinkFault {
    let mut link = LinkFault::default();
    match *action {
        FaultAction::Delay { delay, jitter } => {
            link.delay = delay;
            link.jitter = jitter;
        }
        FaultAction::Loss(p) => link.loss = p,
        FaultAction::Duplicate(p) => link.duplicate = p,
        FaultAction::Reorder(p) => link.reorder = p,
        _ => {}
    }
    link
}

/// Replica ids as plain numbers, for the history.
pub fn numbers(replicas: &[ReplicaId]) -> Vec<u8> {
    replicas.iter().map(|replica| replica.0).collect()
}

#[cfg(test)]
mod tests;
