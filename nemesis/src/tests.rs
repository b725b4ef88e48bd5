//! Schedule, picker and budget tests: determinism, the budget under every seed, the heal, and
//! that every kind and target spec turns up.

use std::collections::BTreeSet;
use std::time::Duration;

use replica::core::ReplicaId;

use crate::{
    Budget, BudgetError, FaultKind, Schedule, ScheduleError, ScheduleOptions, Step, TargetPicker,
    TargetSpec,
};

fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value)
}

/// n replicas (f the largest with n > 3f), both kinds, the given times in seconds.
fn options(n: u8, interval: f64, time_limit: f64, window: f64) -> ScheduleOptions {
    ScheduleOptions {
        replica_count: n,
        f: (usize::from(n) - 1) / 3,
        kinds: FaultKind::ALL.to_vec(),
        interval: seconds(interval),
        time_limit: seconds(time_limit),
        liveness_window: seconds(window),
    }
}

/// The acceptance run of the issue: `--time-limit 60`, default interval and window, n = 4.
fn acceptance() -> ScheduleOptions {
    options(4, 5.0, 60.0, 10.0)
}

#[test]
fn same_seed_and_options_give_the_same_schedule() {
    for seed in 0..50 {
        let first = Schedule::new(seed, &acceptance()).unwrap();
        assert_eq!(first, Schedule::new(seed, &acceptance()).unwrap());
        let mut picker = (TargetPicker::new(seed), TargetPicker::new(seed));
        for fault in &first.faults {
            let primary = Some(ReplicaId((seed % 4) as u8));
            assert_eq!(
                picker.0.pick(fault.target, 4, primary),
                picker.1.pick(fault.target, 4, primary)
            );
        }
    }
    let distinct: BTreeSet<String> = (0..50)
        .map(|seed| format!("{:?}", Schedule::new(seed, &acceptance()).unwrap().faults))
        .collect();
    assert!(distinct.len() > 45, "seeds change the schedule: {} of 50 distinct", distinct.len());
}

/// The timeline of rules 2 to 5: ticks every interval before the heal, durations in
/// [interval/4, 3·interval/4] unless cut at the heal, no overlap, the heal last.
#[test]
fn faults_tick_every_interval_and_end_by_the_heal() {
    let cases = [
        options(4, 5.0, 60.0, 10.0),
        options(4, 2.0, 12.0, 5.0),
        options(7, 0.1, 3.0, 1.0),
        options(10, 3.0, 31.0, 10.0),
        options(13, 7.0, 8.0, 0.5),
    ];
    for options in &cases {
        for seed in 0..100 {
            let schedule = Schedule::new(seed, options).unwrap();
            let heal = options.time_limit - options.liveness_window;
            assert_eq!(schedule.heal, heal);
            assert_eq!(schedule.f, options.f);
            let ticks = ((heal.as_nanos() - 1) / options.interval.as_nanos()) as usize;
            assert_eq!(schedule.faults.len(), ticks, "{options:?}");
            assert!(ticks >= 1);
            for (index, fault) in schedule.faults.iter().enumerate() {
                assert_eq!(fault.start, options.interval * (index as u32 + 1));
                assert!(fault.start < heal, "nothing starts at or after the heal");
                assert!(fault.end <= heal, "every fault ends by the heal");
                let duration = fault.end - fault.start;
                assert!(duration <= options.interval * 3 / 4, "{duration:?}");
                if fault.end < heal {
                    assert!(duration >= options.interval / 4, "{duration:?}");
                }
            }
            let actions = schedule.actions();
            assert_eq!(actions.len(), 2 * ticks + 1);
            assert_eq!(actions.last().unwrap().step, Step::Heal);
            assert_eq!(actions.last().unwrap().at, heal);
            assert!(actions.windows(2).all(|pair| pair[0].at <= pair[1].at));
            for (index, pair) in actions[..2 * ticks].chunks(2).enumerate() {
                assert_eq!(pair[0].step, Step::Start(index));
                assert_eq!(pair[1].step, Step::End(index));
            }
        }
    }
}

/// Walks every schedule's actions with a budget and a picker, the way the executor does: no
/// fault is ever refused, crashed plus paused replicas never exceed f, and nothing is down
/// after the heal.
#[test]
fn crashed_plus_paused_never_exceed_f() {
    for n in [4u8, 5, 7, 10, 13, 31] {
        let options = options(n, 1.0, 40.0, 5.0);
        for seed in 0..100 {
            let schedule = Schedule::new(seed, &options).unwrap();
            let mut picker = TargetPicker::new(seed);
            let mut budget = Budget::new(options.f);
            let mut active = Vec::new();
            for action in schedule.actions() {
                match action.step {
                    Step::Start(index) => {
                        let fault = schedule.faults[index];
                        assert!(fault.target.size() <= options.f);
                        let primary = Some(ReplicaId((index % usize::from(n)) as u8));
                        let targets = picker.pick(fault.target, n, primary);
                        budget.start(fault.kind, &targets).expect("within budget");
                        active.push((fault.kind, targets));
                    }
                    Step::End(_) => {
                        let (kind, targets) = active.pop().expect("a fault to end");
                        budget.end(kind, &targets).expect("it was started");
                    }
                    Step::Heal => assert_eq!(budget.down(), 0, "every fault ended by the heal"),
                }
                assert!(budget.down() <= options.f);
                assert!(active.len() <= 1, "faults never overlap");
            }
            assert!(budget.down_max() <= options.f);
        }
    }
}

/// Over many seeds every kind, every target spec and every minority size turns up; a
/// schedule with one kind enabled uses only that kind.
#[test]
fn every_kind_and_target_spec_appears() {
    let options = options(7, 5.0, 60.0, 10.0);
    let mut kinds = BTreeSet::new();
    let mut specs = BTreeSet::new();
    let mut sizes = BTreeSet::new();
    for seed in 0..100 {
        for fault in Schedule::new(seed, &options).unwrap().faults {
            kinds.insert(fault.kind);
            specs.insert(fault.target.name());
            sizes.insert(fault.target.size());
        }
    }
    assert_eq!(kinds, FaultKind::ALL.into_iter().collect());
    assert_eq!(specs, ["minority", "primary", "random"].into_iter().collect());
    assert_eq!(sizes, [1, 2].into_iter().collect(), "f = 2: minorities of 1 and 2");
    for kind in FaultKind::ALL {
        let only = ScheduleOptions { kinds: vec![kind, kind], ..acceptance() };
        for seed in 0..20 {
            let schedule = Schedule::new(seed, &only).unwrap();
            assert!(schedule.faults.iter().all(|fault| fault.kind == kind));
        }
    }
}

/// The acceptance runs (seeds 1 to 5, `--time-limit 60`) each schedule a kill (so a
/// restart) and a fault aimed at the primary (so a view change).
#[test]
fn acceptance_seeds_kill_and_aim_at_the_primary() {
    for seed in 1..=5 {
        let schedule = Schedule::new(seed, &acceptance()).unwrap();
        assert_eq!(schedule.faults.len(), 9, "ticks at 5, 10, .., 45 s; heal at 50 s");
        assert!(schedule.faults.iter().any(|fault| fault.kind == FaultKind::Kill), "seed {seed}");
        assert!(
            schedule.faults.iter().any(|fault| fault.target == TargetSpec::Primary),
            "seed {seed}"
        );
    }
}

#[test]
fn options_that_make_no_schedule_are_refused() {
    let check = |options: ScheduleOptions, expected: ScheduleError| {
        assert_eq!(Schedule::new(1, &options), Err(expected.clone()));
        assert_eq!(options.validate(), Err(expected));
    };
    check(ScheduleOptions { kinds: vec![], ..acceptance() }, ScheduleError::NoFaultKinds);
    check(options(3, 5.0, 60.0, 10.0), ScheduleError::NoBudget { replica_count: 3 });
    check(
        ScheduleOptions { f: 2, ..acceptance() },
        ScheduleError::BudgetTooLarge { f: 2, replica_count: 4 },
    );
    check(
        options(4, 0.05, 60.0, 10.0),
        ScheduleError::IntervalOutOfRange { interval: seconds(0.05) },
    );
    check(
        options(4, 3601.0, 8000.0, 10.0),
        ScheduleError::IntervalOutOfRange { interval: seconds(3601.0) },
    );
    check(options(4, 5.0, 60.0, 0.0), ScheduleError::NoLivenessWindow);
    check(
        options(4, 5.0, 10.0, 10.0),
        ScheduleError::HealNotAfterStart {
            time_limit: seconds(10.0),
            liveness_window: seconds(10.0),
        },
    );
    check(
        options(4, 5.0, 15.0, 10.0),
        ScheduleError::NoTickBeforeHeal { interval: seconds(5.0), heal: seconds(5.0) },
    );
    check(options(4, 0.1, 200_000.0, 10.0), ScheduleError::TooManyFaults { ticks: 1_999_899 });
    assert!(Schedule::new(1, &options(4, 5.0, 15.1, 10.0)).is_ok(), "one tick at 5 s");
}

#[test]
fn the_picker_resolves_specs_to_distinct_replicas() {
    let mut picker = TargetPicker::new(9);
    assert_eq!(picker.pick(TargetSpec::Primary, 4, Some(ReplicaId(2))), vec![ReplicaId(2)]);
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let random = picker.pick(TargetSpec::Random, 4, Some(ReplicaId(2)));
        assert_eq!(random.len(), 1);
        seen.insert(random[0]);
        // No primary observed: a random replica.
        let fallback = picker.pick(TargetSpec::Primary, 4, None);
        assert!(fallback[0].0 < 4);
        let minority = picker.pick(TargetSpec::Minority { size: 3 }, 10, None);
        assert_eq!(minority.len(), 3);
        assert!(minority.windows(2).all(|pair| pair[0] < pair[1]), "{minority:?}");
        assert!(minority.iter().all(|replica| replica.0 < 10));
        seen.extend(minority);
    }
    assert_eq!(seen.len(), 10, "every replica is picked sometimes");
}

#[test]
fn the_budget_refuses_beyond_f_and_changes_nothing() {
    let mut budget = Budget::new(2);
    budget.start(FaultKind::Kill, &[ReplicaId(1)]).unwrap();
    assert_eq!(
        budget.start(FaultKind::Pause, &[ReplicaId(2), ReplicaId(3)]),
        Err(BudgetError::Exceeded { f: 2, down: 1, requested: 2 })
    );
    assert_eq!(
        budget.start(FaultKind::Pause, &[ReplicaId(1)]),
        Err(BudgetError::AlreadyDown { replica: 1 })
    );
    assert_eq!(budget.start(FaultKind::Pause, &[]), Err(BudgetError::NoTarget));
    assert_eq!(budget.paused(), vec![]);
    budget.start(FaultKind::Pause, &[ReplicaId(3)]).unwrap();
    assert_eq!((budget.down(), budget.down_max()), (2, 2));
    assert_eq!(
        budget.end(FaultKind::Kill, &[ReplicaId(3)]),
        Err(BudgetError::NotFaulted { replica: 3, kind: "kill" })
    );
    budget.end(FaultKind::Kill, &[ReplicaId(1)]).unwrap();
    budget.end(FaultKind::Pause, &[ReplicaId(3)]).unwrap();
    assert_eq!(budget.down(), 0);
    assert_eq!((budget.crashed_max(), budget.paused_max(), budget.down_max()), (1, 1, 2));
    assert!(!budget.is_down(ReplicaId(1)));
}
