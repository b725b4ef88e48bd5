//! The process nemesis's schedule: which fault, on whom, and when. Pure and seeded: the same
//! seed and options give the same schedule.
//!
//! Times are relative to the start of the workload (the moment the time limit starts).
//!
//! 1. The final heal is at `heal = time_limit − liveness_window`, which must be after the start;
//!    the run then has the liveness window to make progress again.
//! 2. Ticks fall at `k · interval` for k = 1, 2, .. while `k · interval < heal`: the first fault
//!    waits one interval, so the workload is under way before anything breaks.
//! 3. At each tick one fault starts. Its kind is drawn uniformly from the enabled kinds, its
//!    target spec uniformly from random replica / current primary / minority (a minority's size
//!    uniformly from 1..=f), its duration uniformly from `[interval / 4, 3 · interval / 4]`, cut
//!    at the heal.
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

use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;
use replica::core::ReplicaId;

/// The shortest `--nemesis-interval`.
pub const INTERVAL_MIN: Duration = Duration::from_millis(100);

/// The longest `--nemesis-interval`.
pub const INTERVAL_MAX: Duration = Duration::from_secs(3600);

/// The most faults one schedule holds (a day of workload at the shortest interval is 864 000).
pub const FAULTS_MAX: u64 = 1_000_000;

/// Salt of the schedule's random stream (the workload generators and keys use others).
const SCHEDULE_SALT: u64 = 0x6e65_6d65_7369_7331;

/// Salt of the target picker's random stream.
const PICKER_SALT: u64 = 0x6e65_6d65_7369_7332;

/// A process fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// SIGKILL, then at the fault's end start the replica again from its configuration.
    Kill,
    /// SIGSTOP, then at the fault's end SIGCONT.
    Pause,
}

impl FaultKind {
    /// Every kind, in a fixed order.
    pub const ALL: [FaultKind; 2] = [FaultKind::Kill, FaultKind::Pause];

    /// The name on the command line and in the history's `f`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Kill => "kill",
            FaultKind::Pause => "pause",
        }
    }
}

/// Whom a fault hits, before the run resolves it to replicas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetSpec {
    /// One replica, drawn uniformly.
    Random,
    /// The primary of the highest view the reachable replicas report.
    Primary,
    /// `size` distinct replicas drawn uniformly, 1 ≤ size ≤ f.
    Minority {
        /// How many.
        size: usize,
    },
}

impl TargetSpec {
    /// The name recorded in the history.
    pub fn name(self) -> &'static str {
        match self {
            TargetSpec::Random => "random",
            TargetSpec::Primary => "primary",
            TargetSpec::Minority { .. } => "minority",
        }
    }

    /// How many replicas it resolves to.
    pub fn size(self) -> usize {
        match self {
            TargetSpec::Random | TargetSpec::Primary => 1,
            TargetSpec::Minority { size } => size,
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
        if self.f == 0 {
            return Err(ScheduleError::NoBudget { replica_count: self.replica_count });
        }
        if 3 * self.f >= usize::from(self.replica_count) {
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

    /// The number of k ≥ 1 with k · interval < heal.
    fn tick_count(&self) -> u64 {
        let interval = self.interval.as_nanos().max(1);
        ((self.heal().as_nanos() - 1) / interval) as u64
    }
}

/// One fault of a schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// When it starts.
    pub start: Duration,
    /// When it ends (restart or resume), after `start` and at or before the heal.
    pub end: Duration,
    /// What it does.
    pub kind: FaultKind,
    /// Whom it hits.
    pub target: TargetSpec,
}

/// A run's process faults and final heal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// The faults in start order; they never overlap.
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
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ SCHEDULE_SALT);
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
            let target = match rng.random_range(0..3u32) {
                0 => TargetSpec::Random,
                1 => TargetSpec::Primary,
                _ => TargetSpec::Minority { size: rng.random_range(1..=options.f) },
            };
            let duration = Duration::from_nanos(
                rng.random_range(duration_min.as_nanos() as u64..=duration_max.as_nanos() as u64),
            );
            let end = (start + duration).min(heal);
            faults.push(Fault { start, end, kind, target });
        }
        let schedule = Schedule { faults, heal, f: options.f };
        schedule.assert_invariants();
        Ok(schedule)
    }

    /// Rules 4 and 5 of the module docs.
    fn assert_invariants(&self) {
        for (index, fault) in self.faults.iter().enumerate() {
            assert!(fault.start < fault.end, "fault {index} ends before it starts");
            assert!(fault.end <= self.heal, "fault {index} outlasts the heal");
            assert!(fault.target.size() >= 1, "fault {index} has no target");
            assert!(fault.target.size() <= self.f, "fault {index} exceeds f = {}", self.f);
        }
        for (index, pair) in self.faults.windows(2).enumerate() {
            assert!(pair[0].end <= pair[1].start, "faults {index} and {} overlap", index + 1);
        }
    }

    /// Every step in time order: each fault's start and end, then the heal.
    pub fn actions(&self) -> Vec<Action> {
        let mut actions = Vec::with_capacity(self.faults.len() * 2 + 1);
        for (index, fault) in self.faults.iter().enumerate() {
            actions.push(Action { at: fault.start, step: Step::Start(index) });
            actions.push(Action { at: fault.end, step: Step::End(index) });
        }
        actions.push(Action { at: self.heal, step: Step::Heal });
        assert!(actions.windows(2).all(|pair| pair[0].at <= pair[1].at), "actions out of order");
        actions
    }
}

/// Resolves target specs to replicas while the run goes, from its own stream of the seed.
#[derive(Debug, Clone)]
pub struct TargetPicker {
    rng: ChaCha20Rng,
}

impl TargetPicker {
    /// The picker of a run with `seed`.
    pub fn new(seed: u64) -> TargetPicker {
        TargetPicker { rng: ChaCha20Rng::seed_from_u64(seed ^ PICKER_SALT) }
    }

    /// The replicas `spec` names in a cluster of `replica_count`, ascending and distinct.
    /// `primary` is the current primary as the executor observed it; `None` (no replica
    /// answered) falls back to a random replica.
    ///
    /// # Panics
    ///
    /// When `spec` names more replicas than a minority of `replica_count`, or `primary` is not a
    /// replica of the cluster: the schedule and the executor guarantee neither happens.
    pub fn pick(
        &mut self,
        spec: TargetSpec,
        replica_count: u8,
        primary: Option<ReplicaId>,
    ) -> Vec<ReplicaId> {
        let n = usize::from(replica_count);
        assert!(spec.size() >= 1, "a fault hits at least one replica");
        assert!(3 * spec.size() < n, "{} replicas are not a minority of {n}", spec.size());
        let picked = match (spec, primary) {
            (TargetSpec::Primary, Some(primary)) => {
                assert!(primary.0 < replica_count, "primary {primary:?} of {n} replicas");
                vec![primary]
            }
            (TargetSpec::Primary, None) | (TargetSpec::Random, _) => {
                vec![ReplicaId(self.rng.random_range(0..replica_count))]
            }
            (TargetSpec::Minority { size }, _) => {
                // A partial Fisher-Yates shuffle: the first `size` of a uniform permutation.
                let mut replicas: Vec<u8> = (0..replica_count).collect();
                for index in 0..size {
                    let other = self.rng.random_range(index..n);
                    replicas.swap(index, other);
                }
                let mut chosen: Vec<ReplicaId> =
                    replicas[..size].iter().map(|&replica| ReplicaId(replica)).collect();
                chosen.sort();
                chosen
            }
        };
        assert_eq!(picked.len(), spec.size());
        picked
    }
}
