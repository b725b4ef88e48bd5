//! The process nemesis's schedule: which fault, on whom, and when. Pure and seeded: the same
//! seed and options give the same schedule.
//!
//! Times are relative to the start of the workload (the moment the time limit starts).
//!
//! 1. The final heal is at `heal = time_limit − liveness_window`, which must be after the start;
//!    the run then has the liveness window to make progress again.
//! 2. Ticks fall at `k · interval` for k = 1, 2, .. while `k · interval + interval / 4 ≤ heal`
//!    (the first tick also when only `interval < heal`): the first fault waits one interval, so
//!    the workload is under way before anything breaks, and no fault is cut to nothing by the
//!    heal.
//! 3. At each tick one fault starts. Its kind is drawn uniformly from the enabled kinds, its
//!    target spec uniformly from random replica / current primary / minority (a minority's size
//!    uniformly from 1..=f), its duration uniformly from `[interval / 4, 3 · interval / 4]`
//!    (`[interval / 2, 3 · interval / 4]` for Byzantine faults, which may first have to move
//!    the primary role onto a Byzantine replica), cut at the heal. A Byzantine fault is, three
//!    times in four, one of the [`JOINT_ATTACKS`] played by every declared Byzantine replica
//!    in its role, else a combination of behaviours.
//! 4. So every fault ends at least `interval / 4` before the next tick: faults never overlap, the
//!    cluster has a quiet stretch to recover in before the next one (a restarted replica catches
//!    up), and crashed plus paused replicas are never more than the largest target, at most f.
//! 5. Nothing starts at or after the heal, and every fault has ended by then.
//!
//! Durations: at least a quarter interval, so that a stopped primary is gone long enough for
//! the backups' view-change timers to fire at the default interval (5 s: 1.25 to 3.75 s down);
//! at most three quarters, for the quiet stretch of rule 4.
//!
//! Whom "the current primary" or "a random replica" means is only known while the run goes:
//! the schedule holds a [`TargetSpec`] and the executor resolves it with a [`TargetPicker`],
//! which draws from its own stream of the seed, so that the picks repeat whenever the observed
//! primaries do.

use std::time::Duration;

use history::seeds;
use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use replica::byzantine::Behaviour;
use replica::core::ReplicaId;

use crate::network::PartitionShape;

/// The shortest `--nemesis-interval`.
pub const INTERVAL_MIN: Duration = Duration::from_millis(100);

/// The longest `--nemesis-interval`.
pub const INTERVAL_MAX: Duration = Duration::from_secs(3600);

/// The most faults one schedule holds (a day of workload at the shortest interval is 864 000).
pub const FAULTS_MAX: u64 = 1_000_000;

/// How far past the heal a timeline's fault may end and still be cut at the heal (rounding).
const HEAL_SLACK: Duration = Duration::from_micros(1);

/// The replicas a run with `seed` declares Byzantine: `count` of `replica_count`, ascending.
///
/// The adversary goes where it matters: with probability 1/2 the set holds replica 0 (the
/// primary of view 0), with 1/4 replica 1 (the primary of the first view change), and the rest
/// of the set is drawn uniformly.
///
/// # Panics
///
/// When `count` exceeds `replica_count`.
pub fn draw_byzantine(seed: u64, replica_count: u8, count: u8) -> Vec<ReplicaId> {
    assert!(count <= replica_count, "{count} Byzantine replicas of {replica_count}");
    let mut replicas: Vec<u8> = (0..replica_count).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(seeds::byzantine_replicas(seed));
    let lead: Option<usize> = match rng.random_range(0..4u32) {
        0 | 1 => Some(0),
        2 if replica_count > 1 => Some(1),
        _ => None,
    };
    let mut first = 0;
    if let Some(lead) = lead
        && count > 0
    {
        replicas.swap(0, lead);
        first = 1;
    }
    for index in first..usize::from(count) {
        let other = rng.random_range(index..replicas.len());
        replicas.swap(index, other);
    }
    let mut chosen: Vec<ReplicaId> =
        replicas[..usize::from(count)].iter().map(|&replica| ReplicaId(replica)).collect();
    chosen.sort();
    chosen
}

/// A kind of fault, as `--nemesis` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL, then at the fault's end start the replica again from its configuration.
    Kill,
    /// SIGSTOP, then at the fault's end SIGCONT.
    Pause,
    /// A network partition of some shape (relay links blocked).
    Partition,
    /// Packets to and from the targets delayed, with jitter.
    Delay,
    /// Packets to and from the targets dropped with some probability.
    Loss,
    /// Packets to and from the targets delivered twice with some probability.
    Duplicate,
    /// Packets to and from the targets held back so later ones overtake them.
    Reorder,
    /// A declared Byzantine replica switches on a malicious behaviour.
    Byzantine,
    /// A second process with a declared Byzantine replica's identity and keys joins, reaching
    /// part of the cluster.
    Twins,
    /// The honest primary is cut off (its links blocked) until the view moves onto a declared
    /// Byzantine replica: within the budget the only way, since f Byzantine VC-REQUESTs cannot
    /// force a view change.
    ForceViewChange,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 10] = [
        FaultKind::Kill,
        FaultKind::Pause,
        FaultKind::Partition,
        FaultKind::Delay,
        FaultKind::Loss,
        FaultKind::Duplicate,
        FaultKind::Reorder,
        FaultKind::Byzantine,
        FaultKind::Twins,
        FaultKind::ForceViewChange,
    ];

    /// The name on the command line and in the history's `f`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
            FaultKind::Partition => "partition",
            FaultKind::Delay => "delay",
            FaultKind::Loss => "loss",
            FaultKind::Duplicate => "duplicate",
            FaultKind::Reorder => "reorder",
            FaultKind::Byzantine => "byzantine",
            FaultKind::Twins => "twins",
            FaultKind::ForceViewChange => "force-view-change",
        }
    }

    /// Whether the fault takes replicas down (they count against the budget while it lasts).
    pub fn is_process(self) -> bool {
        matches!(self, FaultKind::Kill | FaultKind::Pause)
    }

    /// Whether the fault is played by the declared Byzantine replicas only.
    pub fn needs_byzantine(self) -> bool {
        matches!(self, FaultKind::Byzantine | FaultKind::Twins | FaultKind::ForceViewChange)
    }
}

impl std::str::FromStr for FaultKind {
    type Err = String;

    fn from_str(name: &str) -> Result<FaultKind, String> {
        FaultKind::ALL
            .into_iter()
            .find(|kind| kind.name() == name)
            .ok_or_else(|| format!("unknown fault kind {name:?}"))
    }
}

/// What a fault does, with the parameters drawn for it.
#[derive(Debug, Clone, PartialEq)]
pub enum FaultAction {
    /// Kill, restart at the end.
    Kill,
    /// Pause, resume at the end.
    Pause,
    /// A partition of this shape.
    Partition(PartitionShape),
    /// Delay every packet to and from the targets by `delay` plus up to `jitter`.
    Delay {
        /// The fixed delay.
        delay: Duration,
        /// The most extra delay, drawn per packet.
        jitter: Duration,
    },
    /// Drop packets to and from the targets with this probability.
    Loss(f64),
    /// Deliver packets to and from the targets twice with this probability.
    Duplicate(f64),
    /// Hold packets to and from the targets back with this probability.
    Reorder(f64),
    /// The targets (declared Byzantine) behave so.
    Byzantine(Vec<Behaviour>),
    /// The target (declared Byzantine) gets a twin.
    Twins,
    /// The view moves until a declared Byzantine replica is primary.
    ForceViewChange,
}

impl FaultAction {
    /// The fault's kind.
    pub fn kind(&self) -> FaultKind {
        match self {
            FaultAction::Kill => FaultKind::Kill,
            FaultAction::Pause => FaultKind::Pause,
            FaultAction::Partition(_) => FaultKind::Partition,
            FaultAction::Delay { .. } => FaultKind::Delay,
            FaultAction::Loss(_) => FaultKind::Loss,
            FaultAction::Duplicate(_) => FaultKind::Duplicate,
            FaultAction::Reorder(_) => FaultKind::Reorder,
            FaultAction::Byzantine(_) => FaultKind::Byzantine,
            FaultAction::Twins => FaultKind::Twins,
            FaultAction::ForceViewChange => FaultKind::ForceViewChange,
        }
    }
}

/// Whom a fault hits, before the run resolves it to replicas.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum TargetSpec {
    /// One replica, drawn uniformly (among the declared Byzantine ones for Byzantine faults).
    Random,
    /// The primary of the highest view the reachable replicas report.
    Primary,
    /// `size` distinct replicas drawn uniformly, 1 ≤ size ≤ f.
    Minority {
        /// How many.
        size: usize,
    },
    /// Every replica (network faults only).
    All,
    /// These replicas (scenarios).
    Replicas(Vec<ReplicaId>),
}

impl TargetSpec {
    /// The name recorded in the history.
    pub fn name(&self) -> &'static str {
        match self {
            TargetSpec::Random => "random",
            TargetSpec::Primary => "primary",
            TargetSpec::Minority { .. } => "minority",
            TargetSpec::All => "all",
            TargetSpec::Replicas(_) => "replicas",
        }
    }

    /// How many replicas it resolves to, when known before the run (`All`: none known).
    pub fn size(&self) -> usize {
        match self {
            TargetSpec::Random | TargetSpec::Primary => 1,
            TargetSpec::Minority { size } => *size,
            TargetSpec::All => 0,
            TargetSpec::Replicas(replicas) => replicas.len(),
        }
    }
}

/// What a schedule is made from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleOptions {
    /// n.
    pub replica_count: u8,
    /// f: crashed plus paused replicas never exceed it.
    pub f: usize,
    /// The enabled fault kinds (at least one; repeats are ignored).
    pub kinds: Vec<FaultKind>,
    /// The replicas the run declares Byzantine (Byzantine and twins faults are played by
    /// them; they count against the budget for the whole run).
    pub byzantine: Vec<ReplicaId>,
    /// Time between fault starts.
    pub interval: Duration,
    /// How long the workload runs.
    pub time_limit: Duration,
    /// How long the run goes on after the final heal.
    pub liveness_window: Duration,
}

/// The options cannot make a schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    /// No fault kind is enabled.
    #[error("no fault kind is enabled")]
    NoFaultKinds,
    /// f is 0: any crashed or paused replica would exceed the budget.
    #[error("{replica_count} replicas tolerate no fault (f = 0; process faults need n >= 4)")]
    NoBudget {
        /// n.
        replica_count: u8,
    },
    /// f is not below n / 3.
    #[error("f = {f} is not below n / 3 with n = {replica_count}")]
    BudgetTooLarge {
        /// f.
        f: usize,
        /// n.
        replica_count: u8,
    },
    /// The interval is outside [`INTERVAL_MIN`, `INTERVAL_MAX`].
    #[error("interval {interval:?} is not in [{INTERVAL_MIN:?}, {INTERVAL_MAX:?}]")]
    IntervalOutOfRange {
        /// The interval asked for.
        interval: Duration,
    },
    /// The liveness window is zero: progress after the heal could not be checked.
    #[error("the liveness window is zero")]
    NoLivenessWindow,
    /// `time_limit − liveness_window` is not after the start.
    #[error(
        "the final heal at time limit {time_limit:?} minus liveness window {liveness_window:?} \
         is not after the start"
    )]
    HealNotAfterStart {
        /// The time limit.
        time_limit: Duration,
        /// The liveness window.
        liveness_window: Duration,
    },
    /// The first tick is not before the heal: no fault would start.
    #[error("the first fault at {interval:?} would not start before the final heal at {heal:?}")]
    NoTickBeforeHeal {
        /// The interval (the first tick).
        interval: Duration,
        /// The heal.
        heal: Duration,
    },
    /// Byzantine or twins faults are enabled but no replica is declared Byzantine.
    #[error("the {kind} nemesis needs at least one Byzantine replica (--byzantine N)")]
    NoByzantineReplicas {
        /// The kind that needs them.
        kind: &'static str,
    },
    /// A fault of a timeline is not well formed.
    #[error("fault {index} of the timeline: {reason}")]
    InvalidFault {
        /// Its position.
        index: usize,
        /// Why.
        reason: String,
    },
    /// More than [`FAULTS_MAX`] ticks.
    #[error("{ticks} faults is more than {FAULTS_MAX}")]
    TooManyFaults {
        /// How many ticks the options make.
        ticks: u64,
    },
}

impl ScheduleOptions {
    /// The final heal, relative to the workload's start.
    pub fn heal(&self) -> Duration {
        self.time_limit.saturating_sub(self.liveness_window)
    }

    /// Checks that the options make a schedule.
    ///
    /// # Errors
    ///
    /// The first [`ScheduleError`] that applies, in the order of the variants.
    pub fn validate(&self) -> Result<(), ScheduleError> {
        if self.kinds.is_empty() {
            return Err(ScheduleError::NoFaultKinds);
        }
        if self.f == 0 && self.kinds.iter().any(|kind| kind.is_process()) {
            return Err(ScheduleError::NoBudget { replica_count: self.replica_count });
        }
        if let Some(kind) = self.kinds.iter().find(|kind| kind.needs_byzantine())
            && self.byzantine.is_empty()
        {
            return Err(ScheduleError::NoByzantineReplicas { kind: kind.name() });
        }
        if self.f > 0 && 3 * self.f >= usize::from(self.replica_count) {
            return Err(ScheduleError::BudgetTooLarge {
                f: self.f,
                replica_count: self.replica_count,
            });
        }
        if !(INTERVAL_MIN..=INTERVAL_MAX).contains(&self.interval) {
            return Err(ScheduleError::IntervalOutOfRange { interval: self.interval });
        }
        if self.liveness_window.is_zero() {
            return Err(ScheduleError::NoLivenessWindow);
        }
        if self.time_limit <= self.liveness_window {
            return Err(ScheduleError::HealNotAfterStart {
                time_limit: self.time_limit,
                liveness_window: self.liveness_window,
            });
        }
        let heal = self.heal();
        if self.interval >= heal {
            return Err(ScheduleError::NoTickBeforeHeal { interval: self.interval, heal });
        }
        let ticks = self.tick_count();
        if ticks > FAULTS_MAX {
            return Err(ScheduleError::TooManyFaults { ticks });
        }
        Ok(())
    }

    /// The number of k ≥ 1 with k · interval < heal that leave a fault at least a quarter
    /// interval before the heal (a fault cut to nothing by the heal cannot act, and a Byzantine
    /// one would be judged vacuous); the first tick always counts.
    fn tick_count(&self) -> u64 {
        let interval = self.interval.as_nanos().max(1);
        let before_heal = ((self.heal().as_nanos() - 1) / interval) as u64;
        if before_heal == 0 {
            return 0;
        }
        let with_room = (self.heal().as_nanos().saturating_sub(interval / 4) / interval) as u64;
        with_room.clamp(1, before_heal)
    }
}

/// One fault of a schedule.
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// When it starts.
    pub start: Duration,
    /// When it ends (restart, resume, links healed, behaviour off, twin gone), after `start`
    /// and at or before the heal.
    pub end: Duration,
    /// What it does.
    pub action: FaultAction,
    /// Whom it hits.
    pub target: TargetSpec,
}

impl Fault {
    /// The fault's kind.
    pub fn kind(&self) -> FaultKind {
        self.action.kind()
    }
}

/// A run's process faults and final heal.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// The faults in start order; drawn faults never overlap (a scenario's may).
    pub faults: Vec<Fault>,
    /// The final heal: `time_limit − liveness_window`.
    pub heal: Duration,
    /// The budget the faults keep to.
    pub f: usize,
}

/// What the executor does at an [`Action`]'s time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Start fault `i` of [`Schedule::faults`].
    Start(usize),
    /// End fault `i`.
    End(usize),
    /// The final heal: end whatever is still faulted (nothing, if every fault ended).
    Heal,
}

/// A step and its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Action {
    /// When, relative to the workload's start.
    pub at: Duration,
    /// What.
    pub step: Step,
}

impl Schedule {
    /// The schedule of `options` drawn from `seed` (module docs: the rules).
    ///
    /// # Errors
    ///
    /// [`ScheduleError`] when the options cannot make a schedule.
    pub fn new(seed: u64, options: &ScheduleOptions) -> Result<Schedule, ScheduleError> {
        options.validate()?;
        let mut kinds = options.kinds.clone();
        kinds.sort();
        kinds.dedup();
        let mut rng = ChaCha20Rng::seed_from_u64(seeds::schedule(seed));
        let heal = options.heal();
        let interval = options.interval;
        let ticks = options.tick_count();
        let duration_min = interval / 4;
        let duration_max = interval * 3 / 4;
        let mut faults = Vec::with_capacity(ticks as usize);
        // Bounded: `validate` capped `ticks` at FAULTS_MAX.
        for tick in 1..=ticks {
            let start = interval * tick as u32;
            assert!(start < heal, "tick {tick} at {start:?} is not before the heal {heal:?}");
            let kind = kinds[rng.random_range(0..kinds.len())];
            let (action, target) = draw(kind, options, &mut rng);
            // A Byzantine fault may first have to move the primary role (rule 3).
            let duration_min =
                if kind == FaultKind::Byzantine { interval / 2 } else { duration_min };
            let duration = Duration::from_nanos(
                rng.random_range(duration_min.as_nanos() as u64..=duration_max.as_nanos() as u64),
            );
            let end = (start + duration).min(heal);
            faults.push(Fault { start, end, action, target });
        }
        let schedule = Schedule { faults, heal, f: options.f };
        schedule.assert_invariants();
        Ok(schedule)
    }

    /// A schedule from an explicit timeline (a scenario): faults may overlap; each must start
    /// before it ends, end by the heal, and name targets of the cluster. The budget is checked
    /// again by the executor when each fault starts.
    ///
    /// # Errors
    ///
    /// [`ScheduleError::InvalidFault`] naming the first bad fault.
    pub fn from_timeline(
        mut faults: Vec<Fault>,
        heal: Duration,
        f: usize,
        replica_count: u8,
    ) -> Result<Schedule, ScheduleError> {
        if faults.len() as u64 > FAULTS_MAX {
            return Err(ScheduleError::TooManyFaults { ticks: faults.len() as u64 });
        }
        for fault in &mut faults {
            // A drawn fault cut at the heal, written to test.toml in seconds and read back, may
            // come back a few nanoseconds after it.
            if fault.end > heal && fault.end - heal < HEAL_SLACK {
                fault.end = heal;
            }
        }
        for (index, fault) in faults.iter().enumerate() {
            let invalid = |reason: String| ScheduleError::InvalidFault { index, reason };
            if fault.start >= fault.end {
                return Err(invalid(format!(
                    "starts at {:?}, not before its end at {:?}",
                    fault.start, fault.end
                )));
            }
            if fault.end > heal {
                return Err(invalid(format!(
                    "ends at {:?}, after the final heal at {heal:?}",
                    fault.end
                )));
            }
            if let TargetSpec::Replicas(replicas) = &fault.target {
                if replicas.is_empty() {
                    return Err(invalid("names no replica".into()));
                }
                if let Some(replica) = replicas.iter().find(|replica| replica.0 >= replica_count) {
                    return Err(invalid(format!("names replica {} of {replica_count}", replica.0)));
                }
            }
            if let TargetSpec::Minority { size } = fault.target
                && (size == 0 || size > f.max(1))
            {
                return Err(invalid(format!("a minority of {size} with f = {f}")));
            }
            if fault.kind().is_process() && fault.target == TargetSpec::All {
                return Err(invalid("a process fault cannot hit every replica".into()));
            }
            if let FaultAction::Loss(p) | FaultAction::Duplicate(p) | FaultAction::Reorder(p) =
                fault.action
                && !(0.0..=1.0).contains(&p)
            {
                return Err(invalid(format!("probability {p} is not in [0, 1]")));
            }
        }
        faults.sort_by_key(|fault| fault.start);
        Ok(Schedule { faults, heal, f })
    }

    /// Rules 4 and 5 of the module docs.
    fn assert_invariants(&self) {
        for (index, fault) in self.faults.iter().enumerate() {
            assert!(fault.start < fault.end, "fault {index} ends before it starts");
            assert!(fault.end <= self.heal, "fault {index} outlasts the heal");
            if fault.kind().is_process() {
                assert!(fault.target.size() >= 1, "fault {index} has no target");
                assert!(fault.target.size() <= self.f, "fault {index} exceeds f = {}", self.f);
            }
        }
        for (index, pair) in self.faults.windows(2).enumerate() {
            assert!(pair[0].end <= pair[1].start, "faults {index} and {} overlap", index + 1);
        }
    }

    /// Every step in time order: each fault's start and end, then the heal.
    /// Ends come before starts at the same time, so overlapping timelines hand over cleanly.
    pub fn actions(&self) -> Vec<Action> {
        let mut actions = Vec::with_capacity(self.faults.len() * 2 + 1);
        for (index, fault) in self.faults.iter().enumerate() {
            actions.push(Action { at: fault.start, step: Step::Start(index) });
            actions.push(Action { at: fault.end, step: Step::End(index) });
        }
        let rank = |step: &Step| match step {
            Step::End(_) => 0,
            Step::Start(_) => 1,
            Step::Heal => 2,
        };
        actions.sort_by_key(|action| (action.at, rank(&action.step)));
        actions.push(Action { at: self.heal, step: Step::Heal });
        assert!(actions.windows(2).all(|pair| pair[0].at <= pair[1].at), "actions out of order");
        actions
    }
}

/// Draws one fault's action and target for `kind` (module docs, rule 3).
fn draw(
    kind: FaultKind,
    options: &ScheduleOptions,
    rng: &mut ChaCha20Rng,
) -> (FaultAction, TargetSpec) {
    let process_target = |rng: &mut ChaCha20Rng| match rng.random_range(0..3u32) {
        0 => TargetSpec::Random,
        1 => TargetSpec::Primary,
        _ => TargetSpec::Minority { size: rng.random_range(1..=options.f.max(1)) },
    };
    let link_target = |rng: &mut ChaCha20Rng| match rng.random_range(0..4u32) {
        0 => TargetSpec::Random,
        1 => TargetSpec::Primary,
        2 => TargetSpec::Minority { size: rng.random_range(1..=options.f.max(1)) },
        _ => TargetSpec::All,
    };
    let probability = |rng: &mut ChaCha20Rng, low: f64, high: f64| {
        // Two decimals, so the timeline reads well in test.toml.
        (rng.random_range(low..=high) * 100.0).round() / 100.0
    };
    match kind {
        FaultKind::Kill => (FaultAction::Kill, process_target(rng)),
        FaultKind::Pause => (FaultAction::Pause, process_target(rng)),
        FaultKind::Partition => {
            let shape = PartitionShape::ALL[rng.random_range(0..PartitionShape::ALL.len())];
            (FaultAction::Partition(shape), TargetSpec::All)
        }
        FaultKind::Delay => {
            let delay = Duration::from_millis(rng.random_range(DELAY_MS.0..=DELAY_MS.1));
            let jitter = Duration::from_millis(rng.random_range(0..=delay.as_millis() as u64));
            (FaultAction::Delay { delay, jitter }, link_target(rng))
        }
        FaultKind::Loss => (FaultAction::Loss(probability(rng, 0.05, 0.3)), link_target(rng)),
        FaultKind::Duplicate => {
            (FaultAction::Duplicate(probability(rng, 0.1, 0.5)), link_target(rng))
        }
        FaultKind::Reorder => (FaultAction::Reorder(probability(rng, 0.1, 0.5)), link_target(rng)),
        FaultKind::Byzantine => draw_attack(rng),
        FaultKind::Twins => (FaultAction::Twins, TargetSpec::Random),
        FaultKind::ForceViewChange => (FaultAction::ForceViewChange, TargetSpec::Random),
    }
}

/// The joint attacks of the adversary (one plan, every Byzantine replica in its role): the
/// behaviours that need the primary act in whichever Byzantine replica holds the role, the
/// others in the accomplices.
pub const JOINT_ATTACKS: [&[Behaviour]; 4] = [
    // Split brain: the primary equivocates to two halves of the honest replicas with different
    // request sets; accomplices support and share-sign both sides.
    &[Behaviour::Equivocate],
    // The same, and the accomplices hide the evidence of it in the view change that follows.
    &[Behaviour::Equivocate, Behaviour::HideEvidence],
    // The same, and a Byzantine new primary lies in that view change: NV-PROPOSEs from
    // different VC-REQUEST subsets, so that groups of honest replicas decide differently.
    &[Behaviour::Equivocate, Behaviour::HideEvidence, Behaviour::NvEquivocate],
    // A lying view change and a forced rollback (the lone executor): the primary has exactly
    // nf replicas vote for each slot from a checkpoint slot on and sends its own
    // evidence to one honest replica only, so that it alone executes; the accomplices hide or
    // downgrade their evidence and serve corrupt snapshots (no `false-failure`: the harness
    // makes the view changes, and a false VC-REQUEST, sent first, would shadow the
    // accomplice's real one with its downgraded certificates, refused as a duplicate); the
    // harness delays the lone replica's messages, so the new view forms without it and it
    // must roll back (PROTOCOL §5.3 steps 5–6: undo, dedup table, checkpoints and client
    // proofs in play), then forces one more view change over the two certificates of the
    // rolled-back slots; a Byzantine new primary sends the honest replicas that hold
    // certificates a decision without them (PROTOCOL §5.4) and lists the older certificates
    // first (an order-dependent decision takes them, PROTOCOL §5.3 step 3). Meanwhile the
    // primary offers the honest replicas that voted without seeing a slot committed a second
    // batch for it, and the harness crashes and restarts them one at a time (the amnesia
    // probe, PROTOCOL §9.4): a replica that forgot its vote gives the second batch nf votes.
    &[
        Behaviour::InTheDark,
        Behaviour::WithholdCertificate,
        Behaviour::HideEvidence,
        Behaviour::NvEquivocate,
        Behaviour::CorruptSnapshot,
        Behaviour::RePropose,
    ],
];

/// A Byzantine fault: three times in four a joint attack of every declared Byzantine replica,
/// else a combination of one to three behaviours of the catalogue (colluding corrupt votes,
/// withheld slots, forgeries, replays, mutations...) for one of them or for all.
fn draw_attack(rng: &mut ChaCha20Rng) -> (FaultAction, TargetSpec) {
    if rng.random_range(0..4u32) < 3 {
        let plan = JOINT_ATTACKS[rng.random_range(0..JOINT_ATTACKS.len())];
        return (FaultAction::Byzantine(plan.to_vec()), TargetSpec::All);
    }
    let count = rng.random_range(1..=3usize);
    let catalogue: Vec<Behaviour> =
        Behaviour::ALL.into_iter().filter(|behaviour| behaviour.drawn_alone()).collect();
    let mut behaviours: Vec<Behaviour> =
        (0..count).map(|_| catalogue[rng.random_range(0..catalogue.len())]).collect();
    behaviours.sort();
    behaviours.dedup();
    // `silent` would hide every other behaviour of the combination.
    if behaviours.len() > 1 {
        behaviours.retain(|behaviour| *behaviour != Behaviour::Silent);
    }
    let target = if rng.random_bool(0.5) { TargetSpec::All } else { TargetSpec::Random };
    (FaultAction::Byzantine(behaviours), target)
}

/// The range of a drawn delay fault's fixed delay, in milliseconds.
const DELAY_MS: (u64, u64) = (5, 150);

/// Resolves target specs to replicas while the run goes, from its own stream of the seed.
#[derive(Debug, Clone)]
pub struct TargetPicker {
    rng: ChaCha20Rng,
}

impl TargetPicker {
    /// The picker of a run with `seed`.
    pub fn new(seed: u64) -> TargetPicker {
        TargetPicker { rng: ChaCha20Rng::seed_from_u64(seeds::targets(seed)) }
    }

    /// The replicas `spec` names, ascending and distinct, drawn among `candidates` (the
    /// replicas the fault may hit: every replica, or the declared Byzantine ones, or those the
    /// budget leaves). `primary` is the current primary as the executor observed it; when it
    /// is `None` (no replica answered) or not a candidate, a random candidate stands in. A
    /// minority larger than the candidates shrinks to them. `All` names every replica of
    /// `replica_count`; explicit replicas are returned as given (the budget judges them).
    ///
    /// # Panics
    ///
    /// When `candidates` is empty for a spec that draws from them.
    pub fn pick(
        &mut self,
        spec: &TargetSpec,
        replica_count: u8,
        primary: Option<ReplicaId>,
        candidates: &[ReplicaId],
    ) -> Vec<ReplicaId> {
        let mut picked = match spec {
            TargetSpec::All => (0..replica_count).map(ReplicaId).collect(),
            TargetSpec::Replicas(replicas) => replicas.clone(),
            TargetSpec::Primary if primary.is_some_and(|p| candidates.contains(&p)) => {
                vec![primary.expect("checked")]
            }
            TargetSpec::Primary | TargetSpec::Random => {
                assert!(!candidates.is_empty(), "no candidate for {spec:?}");
                vec![candidates[self.rng.random_range(0..candidates.len())]]
            }
            TargetSpec::Minority { size } => {
                assert!(!candidates.is_empty(), "no candidate for {spec:?}");
                self.shuffled(candidates).into_iter().take(*size).collect()
            }
        };
        picked.sort();
        picked.dedup();
        picked
    }

    /// A uniform permutation of the replicas, with `first` (the primary, for a partition that
    /// isolates it) moved to the front.
    pub fn order(&mut self, replica_count: u8, first: Option<ReplicaId>) -> Vec<ReplicaId> {
        let all: Vec<ReplicaId> = (0..replica_count).map(ReplicaId).collect();
        let mut order = self.shuffled(&all);
        if let Some(first) = first
            && let Some(position) = order.iter().position(|replica| *replica == first)
        {
            order[..=position].rotate_right(1);
        }
        order
    }

    /// About half of `others`, drawn uniformly, ascending (the replicas a twin reaches).
    pub fn group(&mut self, others: &[ReplicaId]) -> Vec<ReplicaId> {
        let size = others.len().div_ceil(2);
        let mut group: Vec<ReplicaId> = self.shuffled(others).into_iter().take(size).collect();
        group.sort();
        group
    }

    /// A uniform permutation (Fisher-Yates).
    fn shuffled(&mut self, items: &[ReplicaId]) -> Vec<ReplicaId> {
        let mut items = items.to_vec();
        for index in (1..items.len()).rev() {
            let other = self.rng.random_range(0..=index);
            items.swap(index, other);
        }
        items
    }
}
