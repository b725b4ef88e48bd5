//! The executor on virtual time, against a small model cluster that answers its observations
//! and carries out its effects.

use std::collections::BTreeMap;
use std::time::Duration;

use history::OpKind;
use replica::byzantine::Behaviour;
use replica::core::ReplicaId;

use super::{Effect, Executor, Observe, Status};
use crate::network::{NetworkFaults, Node, PartitionShape};
use crate::schedule::{Fault, FaultAction, Schedule, TargetSpec};

/// A model cluster: views move when the primary is cut off for a while, counters are set by
/// the test.
struct Model {
    n: u8,
    down: Vec<bool>,
    view: u64,
    executed: u64,
    links: NetworkFaults,
    /// When the current primary's links were first seen blocked.
    cut_since: Option<Duration>,
    behaviours: BTreeMap<u8, Vec<Behaviour>>,
    counters: BTreeMap<(u8, String), u64>,
    records: Vec<(Duration, OpKind, String)>,
    effects: Vec<(Duration, Effect)>,
}

impl Model {
    fn new(n: u8) -> Model {
        Model {
            n,
            down: vec![false; usize::from(n)],
            view: 0,
            executed: 0,
            links: NetworkFaults::healthy(),
            cut_since: None,
            behaviours: BTreeMap::new(),
            counters: BTreeMap::new(),
            records: Vec::new(),
            effects: Vec::new(),
        }
    }

    fn primary(&self) -> ReplicaId {
        ReplicaId((self.view % u64::from(self.n)) as u8)
    }

    /// Time passes to `now`: the cluster executes a slot per poll, and a primary cut off for
    /// 500 ms is replaced.
    fn tick(&mut self, now: Duration) {
        self.executed += 1;
        let primary = self.primary();
        let other = ReplicaId((primary.0 + 1) % self.n);
        let cut = !self.links.reaches(primary, other);
        match (cut, self.cut_since) {
            (true, None) => self.cut_since = Some(now),
            (true, Some(since)) if now >= since + Duration::from_millis(500) => {
                self.view += 1;
                self.cut_since = None;
            }
            (false, _) => self.cut_since = None,
            _ => {}
        }
    }

    fn apply(&mut self, now: Duration, effects: Vec<Effect>) {
        for effect in effects {
            match &effect {
                Effect::Kill(replica) => self.down[replica.index()] = true,
                Effect::Restart(replica) => self.down[replica.index()] = false,
                Effect::Pause(replica) => self.down[replica.index()] = true,
                Effect::Resume(replica) => self.down[replica.index()] = false,
                Effect::Links(links) => self.links = links.clone(),
                Effect::Behave { replica, behaviours } => {
                    self.behaviours.insert(replica.0, behaviours.clone());
                }
                Effect::Record { kind, f, .. } => self.records.push((now, *kind, f.clone())),
                Effect::StartTwin { .. } | Effect::StopTwin(_) => {}
            }
            self.effects.push((now, effect));
        }
    }
}

impl Observe for Model {
    fn status(&self, replica: ReplicaId) -> Option<Status> {
        (!self.down[replica.index()])
            .then_some(Status { view: self.view, last_executed: self.executed })
    }

    fn counter(&self, replica: ReplicaId, name: &str) -> u64 {
        self.counters.get(&(replica.0, name.to_string())).copied().unwrap_or(0)
    }
}

fn seconds(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

fn fault(start: f64, end: f64, action: FaultAction, target: TargetSpec) -> Fault {
    Fault { start: seconds(start), end: seconds(end), action, target }
}

/// Polls `executor` at every wake until it healed, ticking the model every 50 ms; bounded.
fn play(executor: &mut Executor, model: &mut Model, until: Duration) {
    let mut now = Duration::ZERO;
    while now <= until && !executor.healed() {
        model.tick(now);
        if executor.next_wake().is_some_and(|wake| wake <= now) {
            let effects = executor.poll(now, model);
            model.apply(now, effects);
        }
        now += Duration::from_millis(50);
    }
}

/// Kills start at their time and restart at their end; a second kill while one replica is
/// down would take the run beyond f = 1 and is refused (reported, not recorded); the heal is
/// one invoke/info pair at the heal time.
#[test]
fn kills_keep_to_the_budget_and_restart() {
    let faults = vec![
        fault(1.0, 3.0, FaultAction::Kill, TargetSpec::Replicas(vec![ReplicaId(1)])),
        fault(2.0, 2.5, FaultAction::Kill, TargetSpec::Replicas(vec![ReplicaId(2)])),
    ];
    let schedule = Schedule::from_timeline(faults, seconds(4.0), 1, 4).expect("a schedule");
    let mut executor = Executor::new(&schedule, 4, &[], false, 7);
    let mut model = Model::new(4);
    play(&mut executor, &mut model, seconds(5.0));
    assert!(executor.healed());
    let kills: Vec<_> = model
        .effects
        .iter()
        .filter(|(_, effect)| matches!(effect, Effect::Kill(_) | Effect::Restart(_)))
        .collect();
    assert_eq!(
        kills,
        vec![
            &(seconds(1.0), Effect::Kill(ReplicaId(1))),
            &(seconds(3.0), Effect::Restart(ReplicaId(1))),
        ]
    );
    let report = executor.report();
    assert_eq!(report.faults, 1);
    assert_eq!(report.restarts, 1);
    assert_eq!(report.crashed_max, 1);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(report.errors[0].contains("kill"), "{:?}", report.errors);
    let records: Vec<(OpKind, &str)> =
        model.records.iter().map(|(_, kind, f)| (*kind, f.as_str())).collect();
    assert_eq!(
        records,
        vec![
            (OpKind::Invoke, "kill"),
            (OpKind::Info, "kill"),
            (OpKind::Invoke, "heal"),
            (OpKind::Info, "heal"),
        ]
    );
    assert_eq!(model.records[2].0, seconds(4.0));
    assert_eq!(report.final_heal, Some(seconds(4.0)));
    assert!(model.down.iter().all(|down| !down));
}

/// Overlapping network faults are merged; ending one leaves the other; the heal leaves every
/// link healthy.
#[test]
fn network_faults_merge_and_heal() {
    let isolate = TargetSpec::Replicas(vec![ReplicaId(3)]);
    let faults = vec![
        fault(1.0, 3.0, FaultAction::Partition(PartitionShape::IsolateOne), isolate),
        fault(2.0, 3.5, FaultAction::Loss(0.5), TargetSpec::Replicas(vec![ReplicaId(0)])),
    ];
    let schedule = Schedule::from_timeline(faults, seconds(4.0), 1, 4).expect("a schedule");
    let mut executor = Executor::new(&schedule, 4, &[], false, 7);
    let mut model = Model::new(4);
    let mut seen = Vec::new();
    let mut now = Duration::ZERO;
    // Bounded: 100 polls of 50 ms.
    for _ in 0..100 {
        if executor.next_wake().is_some_and(|wake| wake <= now) {
            let effects = executor.poll(now, &model);
            model.apply(now, effects);
            let links = &model.links;
            let blocked = links.link(Node::Replica(ReplicaId(3)), Node::Replica(ReplicaId(0)));
            let lossy = links.link(Node::Replica(ReplicaId(0)), Node::Replica(ReplicaId(1)));
            seen.push((now, blocked.blocked, lossy.loss));
        }
        now += Duration::from_millis(50);
    }
    assert_eq!(
        seen,
        vec![
            (seconds(1.0), true, 0.0),
            (seconds(2.0), true, 0.5),
            (seconds(3.0), false, 0.5),
            (seconds(3.5), false, 0.0),
            (seconds(4.0), false, 0.0),
        ]
    );
    assert!(model.links.is_healthy());
}

/// A forced view change cuts each honest primary off in turn until the view's primary is the
/// declared Byzantine replica, seen settled twice, then lifts its cut and reports the view.
#[test]
fn forcing_moves_the_primary_role_onto_a_byzantine_replica() {
    let faults = vec![fault(1.0, 9.0, FaultAction::ForceViewChange, TargetSpec::Random)];
    let schedule = Schedule::from_timeline(faults, seconds(10.0), 1, 4).expect("a schedule");
    let byzantine = [ReplicaId(2)];
    let mut executor = Executor::new(&schedule, 4, &byzantine, false, 7);
    let mut model = Model::new(4);
    play(&mut executor, &mut model, seconds(11.0));
    assert_eq!(model.view, 2, "views 0 and 1 cut, view 2 is the Byzantine replica's");
    assert_eq!(executor.report().forced_view_changes, 1);
    let is_forcing_info = |effect: &Effect| match effect {
        Effect::Record { kind: OpKind::Info, f, .. } => f == "force-view-change",
        _ => false,
    };
    let forced: Vec<&(Duration, Effect)> =
        model.effects.iter().filter(|(_, effect)| is_forcing_info(effect)).collect();
    let Effect::Record { value, .. } = &forced[0].1 else { unreachable!() };
    assert_eq!(value["primary"], 2, "{value}");
    assert_eq!(value["cut"], serde_json::json!([0, 1]), "{value}");
    assert!(forced[0].0 < seconds(9.0), "reached before the fault ended");
    assert!(model.links.is_healthy());
}

/// A Byzantine fault switches its behaviours on and off, and is vacuous unless both its hooks
/// acted and an honest replica saw an effect; one that has not acted by its end is held (here
/// until the next fault starts, its own duration later).
#[test]
fn byzantine_faults_are_judged_by_their_effects() {
    let behaviours = vec![Behaviour::Forge];
    let faults = vec![
        fault(1.0, 2.0, FaultAction::Byzantine(behaviours.clone()), TargetSpec::Random),
        fault(3.0, 4.0, FaultAction::Byzantine(behaviours.clone()), TargetSpec::Random),
    ];
    let schedule = Schedule::from_timeline(faults, seconds(5.0), 1, 4).expect("a schedule");
    let byzantine = [ReplicaId(3)];
    let mut executor = Executor::new(&schedule, 4, &byzantine, false, 7);
    let mut model = Model::new(4);
    let mut now = Duration::ZERO;
    // Bounded: 120 polls of 50 ms.
    for _ in 0..120 {
        if now == seconds(1.5) {
            // The first fault's hook acts, and nobody notices.
            model.counters.insert((3, "byzantine.forge".into()), 5);
        }
        if now == seconds(3.5) {
            // The second fault's hook acts, and honest replica 0 refuses its messages.
            model.counters.insert((3, "byzantine.forge".into()), 9);
            model.counters.insert((0, "rejected_from.3".into()), 4);
        }
        if executor.next_wake().is_some_and(|wake| wake <= now) {
            let effects = executor.poll(now, &model);
            model.apply(now, effects);
            if now == seconds(1.0) {
                assert_eq!(model.behaviours.get(&3), Some(&behaviours));
            }
            if now == seconds(2.0) {
                assert_eq!(model.behaviours.get(&3), Some(&behaviours), "held: not acted yet");
            }
            if now == seconds(2.5) {
                assert_eq!(executor.report().vacuous.len(), 0, "still held");
            }
        }
        now += Duration::from_millis(50);
    }
    let report = executor.report();
    assert_eq!(report.acted, 1, "{report:?}");
    assert_eq!(report.vacuous.len(), 1, "{report:?}");
    assert_eq!(report.vacuous[0]["fault"], 0);
    assert!(executor.healed());
}

/// The same schedule, seed and observations give the same effects.
#[test]
fn effects_follow_from_the_inputs() {
    let faults = vec![
        fault(1.0, 2.0, FaultAction::Kill, TargetSpec::Minority { size: 1 }),
        fault(2.5, 3.5, FaultAction::Partition(PartitionShape::Halves), TargetSpec::All),
        fault(
            4.0,
            5.0,
            FaultAction::Delay { delay: seconds(0.1), jitter: seconds(0.05) },
            TargetSpec::Random,
        ),
    ];
    let schedule = Schedule::from_timeline(faults, seconds(6.0), 1, 4).expect("a schedule");
    let run = |seed: u64| {
        let mut executor = Executor::new(&schedule, 4, &[], false, seed);
        let mut model = Model::new(4);
        play(&mut executor, &mut model, seconds(7.0));
        model.effects
    };
    assert_eq!(run(1), run(1));
    let kills = |seed| {
        run(seed)
            .into_iter()
            .filter(|(_, effect)| matches!(effect, Effect::Kill(_)))
            .collect::<Vec<_>>()
    };
    assert!((1..20).any(|seed| kills(seed) != kills(1)), "the seed picks the targets");
}

/// A lone-executor attack with `re-propose`: once the primary role is the Byzantine replica's,
/// the lone replica's links to the honest ones are delayed; once the primary offers a second
/// batch, the voter it needs is crashed and restarted (amnesia); once a later view is entered
/// the delay is lifted; once the lone replica rolled back, the new honest primary is cut off
/// until the view moves again; everything is undone by the fault's end.
#[test]
fn a_lone_executor_attack_plays_its_choreography() {
    let behaviours =
        vec![Behaviour::InTheDark, Behaviour::WithholdCertificate, Behaviour::RePropose];
    let target = TargetSpec::Replicas(vec![ReplicaId(0)]);
    let faults = vec![fault(1.0, 9.0, FaultAction::Byzantine(behaviours), target)];
    let schedule = Schedule::from_timeline(faults, seconds(10.0), 1, 4).expect("a schedule");
    let mut executor = Executor::new(&schedule, 4, &[ReplicaId(0)], false, 7);
    let mut model = Model::new(4);
    let mut delayed_at_two = None;
    let mut now = Duration::ZERO;
    // Bounded: 220 polls of 50 ms.
    for _ in 0..220 {
        model.tick(now);
        if now == seconds(2.0) {
            // The primary offers second batches; the lone replica (3) is delayed towards the
            // honest replicas 1 and 2, not towards the primary.
            model.counters.insert((0, "byzantine.re-propose".into()), 1);
            let link = |from: u8, to: u8| {
                model.links.link(Node::Replica(ReplicaId(from)), Node::Replica(ReplicaId(to)))
            };
            delayed_at_two = Some((link(3, 1).delay, link(3, 2).delay, link(3, 0).delay));
        }
        if now == seconds(3.0) {
            model.view = 1;
        }
        if now == seconds(3.5) {
            model.counters.insert((3, "rollbacks".into()), 1);
        }
        if executor.next_wake().is_some_and(|wake| wake <= now) {
            let effects = executor.poll(now, &model);
            model.apply(now, effects);
        }
        now += Duration::from_millis(50);
    }
    assert!(executor.healed());
    let delay = super::LONE_DELAY;
    assert_eq!(delayed_at_two, Some((delay, delay, Duration::ZERO)));
    let infos: Vec<&str> = model
        .records
        .iter()
        .filter(|(_, kind, _)| *kind == OpKind::Info)
        .map(|(_, _, f)| f.as_str())
        .collect();
    assert_eq!(
        infos,
        vec![
            "force-view-change",
            "lone-executor",
            "amnesia",
            "lone-executor",
            "force-view-change",
            "byzantine",
            "heal"
        ]
    );
    let crashes: Vec<&(Duration, Effect)> = model
        .effects
        .iter()
        .filter(|(_, effect)| matches!(effect, Effect::Kill(_) | Effect::Restart(_)))
        .collect();
    assert_eq!(crashes.len(), 2, "{crashes:?}");
    assert_eq!(crashes[0].1, Effect::Kill(ReplicaId(2)), "the one voter the second batch needs");
    assert_eq!(crashes[1].1, Effect::Restart(ReplicaId(2)));
    assert!(crashes[1].0 >= crashes[0].0 + super::AMNESIA_DOWN);
    assert_eq!(model.view, 2, "the new honest primary was cut off after the rollback");
    assert!(model.links.is_healthy());
    assert!(model.down.iter().all(|down| !down));
    assert_eq!(executor.report().crashed_max, 0, "amnesia crashes are not budget faults");
}

/// A Byzantine fault that acts only after its scheduled end is held until it acted, then ends
/// with how long it was held; one that never acts ends after its own duration again.
#[test]
fn byzantine_faults_are_held_until_they_act() {
    let behaviours = vec![Behaviour::Forge];
    let faults = vec![
        fault(1.0, 2.0, FaultAction::Byzantine(behaviours.clone()), TargetSpec::Random),
        fault(4.0, 5.0, FaultAction::Byzantine(behaviours.clone()), TargetSpec::Random),
    ];
    let schedule = Schedule::from_timeline(faults, seconds(8.0), 1, 4).expect("a schedule");
    let mut executor = Executor::new(&schedule, 4, &[ReplicaId(3)], false, 7);
    let mut model = Model::new(4);
    let mut now = Duration::ZERO;
    // Bounded: 180 polls of 50 ms.
    for _ in 0..180 {
        if now == seconds(2.5) {
            model.counters.insert((3, "byzantine.forge".into()), 2);
            model.counters.insert((1, "rejected_from.3".into()), 2);
        }
        if executor.next_wake().is_some_and(|wake| wake <= now) {
            let effects = executor.poll(now, &model);
            model.apply(now, effects);
        }
        now += Duration::from_millis(50);
    }
    let ends: Vec<(Duration, serde_json::Value)> = model
        .effects
        .iter()
        .filter_map(|(at, effect)| match effect {
            Effect::Record { kind: OpKind::Info, f, value } if f == "byzantine" => {
                Some((*at, value.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(ends.len(), 2, "{ends:?}");
    assert_eq!(ends[0].0, seconds(2.5), "ended once it acted");
    assert_eq!(ends[0].1["held_s"], 0.5);
    assert_eq!(ends[1].0, seconds(6.0), "never acted: held for its own duration");
    assert_eq!(ends[1].1["held_s"], 1.0);
    let report = executor.report();
    assert_eq!(report.acted, 1, "{report:?}");
    assert_eq!(report.vacuous.len(), 1, "{report:?}");
    assert_eq!(report.vacuous[0]["fault"], 1);
}
