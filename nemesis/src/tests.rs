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
        byzantine: vec![ReplicaId(n - 1)],
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
        let all: Vec<ReplicaId> = (0..4).map(ReplicaId).collect();
        for fault in &first.faults {
            let primary = Some(ReplicaId((seed % 4) as u8));
            assert_eq!(
                picker.0.pick(&fault.target, 4, primary, &all),
                picker.1.pick(&fault.target, 4, primary, &all)
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

/// Walks every schedule's actions with a budget and a picker, the way the executor does:
/// process faults drawn from the budget's candidates are never refused, Byzantine plus
/// crashed plus paused replicas never exceed f, and nothing is down after the heal.
#[test]
fn byzantine_plus_crashed_plus_paused_never_exceed_f() {
    for n in [4u8, 5, 7, 10, 13, 31] {
        let options = options(n, 1.0, 40.0, 5.0);
        for seed in 0..100 {
            let schedule = Schedule::new(seed, &options).unwrap();
            let mut picker = TargetPicker::new(seed);
            let mut budget = Budget::with_byzantine(options.f, &options.byzantine, false);
            let mut active = Vec::new();
            for action in schedule.actions() {
                match action.step {
                    Step::Start(index) => {
                        let fault = &schedule.faults[index];
                        let kind = fault.kind();
                        if !kind.is_process() {
                            continue;
                        }
                        assert!(fault.target.size() <= options.f);
                        let primary = Some(ReplicaId((index % usize::from(n)) as u8));
                        let candidates = budget.process_candidates(n, fault.target.size());
                        let targets = picker.pick(&fault.target, n, primary, &candidates);
                        budget.start(kind, &targets).expect("within budget");
                        active.push((kind, targets));
                    }
                    Step::End(index) => {
                        if schedule.faults[index].kind().is_process() {
                            let (kind, targets) = active.pop().expect("a fault to end");
                            budget.end(kind, &targets).expect("it was started");
                        }
                    }
                    Step::Heal => assert_eq!(budget.down(), 0, "every fault ended by the heal"),
                }
                assert!(budget.faulty().len() <= options.f);
                assert!(active.len() <= 1, "faults never overlap");
            }
            assert!(budget.faulty_max() <= options.f);
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
            kinds.insert(fault.kind());
            specs.insert(fault.target.name());
            if fault.kind().is_process() {
                sizes.insert(fault.target.size());
            }
        }
    }
    assert_eq!(kinds, FaultKind::ALL.into_iter().collect());
    assert_eq!(specs, ["all", "minority", "primary", "random"].into_iter().collect());
    assert_eq!(sizes, [1, 2].into_iter().collect(), "f = 2: minorities of 1 and 2");
    for kind in FaultKind::ALL {
        let only = ScheduleOptions { kinds: vec![kind, kind], ..acceptance() };
        for seed in 0..20 {
            let schedule = Schedule::new(seed, &only).unwrap();
            assert!(schedule.faults.iter().all(|fault| fault.kind() == kind));
        }
    }
}

/// The acceptance runs (seeds 1 to 5, `--time-limit 60`, `byzantine,partition`) each
/// schedule a Byzantine behaviour and a partition.
#[test]
fn acceptance_seeds_play_byzantine_and_partition() {
    let kinds = vec![FaultKind::Byzantine, FaultKind::Partition];
    for seed in 1..=5 {
        let schedule =
            Schedule::new(seed, &ScheduleOptions { kinds: kinds.clone(), ..acceptance() }).unwrap();
        assert_eq!(schedule.faults.len(), 9, "ticks at 5, 10, .., 45 s; heal at 50 s");
        for kind in &kinds {
            assert!(schedule.faults.iter().any(|fault| fault.kind() == *kind), "seed {seed}");
        }
    }
}

/// Process faults of the `kill,pause` runs still aim at the primary sometimes.
#[test]
fn process_faults_aim_at_the_primary() {
    let kinds = vec![FaultKind::Kill, FaultKind::Pause];
    for seed in 1..=5 {
        let schedule =
            Schedule::new(seed, &ScheduleOptions { kinds: kinds.clone(), ..acceptance() }).unwrap();
        assert!(schedule.faults.iter().any(|fault| fault.kind() == FaultKind::Kill), "seed {seed}");
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
    check(
        ScheduleOptions { byzantine: vec![], ..acceptance() },
        ScheduleError::NoByzantineReplicas { kind: "byzantine" },
    );
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
    let four: Vec<ReplicaId> = (0..4).map(ReplicaId).collect();
    let ten: Vec<ReplicaId> = (0..10).map(ReplicaId).collect();
    let primary = Some(ReplicaId(2));
    assert_eq!(picker.pick(&TargetSpec::Primary, 4, primary, &four), vec![ReplicaId(2)]);
    // The primary is not a candidate (the budget allows only replica 3): a candidate instead.
    assert_eq!(picker.pick(&TargetSpec::Primary, 4, primary, &[ReplicaId(3)]), [ReplicaId(3)]);
    assert_eq!(picker.pick(&TargetSpec::All, 4, None, &[]), four);
    let mut seen = BTreeSet::new();
    for _ in 0..200 {
        let random = picker.pick(&TargetSpec::Random, 4, Some(ReplicaId(2)), &four);
        assert_eq!(random.len(), 1);
        seen.insert(random[0]);
        // No primary observed: a random replica.
        let fallback = picker.pick(&TargetSpec::Primary, 4, None, &four);
        assert!(fallback[0].0 < 4);
        let minority = picker.pick(&TargetSpec::Minority { size: 3 }, 10, None, &ten);
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
        Err(BudgetError::Exceeded { limit: 2, faulty: 1, requested: 2 })
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

/// Declared Byzantine replicas count for the whole run: with f = 1 and one declared, only the
/// Byzantine replica may crash; beyond budget the limit is f + 1.
#[test]
fn byzantine_replicas_use_the_budget() {
    let mut budget = Budget::with_byzantine(1, &[ReplicaId(0)], false);
    assert_eq!(budget.process_candidates(4, 1), vec![ReplicaId(0)]);
    assert_eq!(
        budget.start(FaultKind::Kill, &[ReplicaId(1)]),
        Err(BudgetError::Exceeded { limit: 1, faulty: 1, requested: 1 })
    );
    budget.start(FaultKind::Kill, &[ReplicaId(0)]).unwrap();
    assert_eq!(budget.faulty_max(), 1);
    assert_eq!(
        budget.start(FaultKind::Partition, &[ReplicaId(2)]),
        Err(BudgetError::NotProcess { kind: "partition" })
    );
    let beyond = Budget::with_byzantine(1, &[ReplicaId(0), ReplicaId(1)], true);
    assert_eq!(beyond.limit(), 2);
    assert_eq!(beyond.process_candidates(4, 1), vec![ReplicaId(0), ReplicaId(1)]);
    let open = Budget::with_byzantine(2, &[ReplicaId(0)], false);
    assert_eq!(open.process_candidates(7, 1).len(), 7);
}

/// The picker's partition order is a permutation with the primary first when asked, and a
/// twin's group is about half of the others.
#[test]
fn partition_orders_and_twin_groups() {
    let mut picker = TargetPicker::new(3);
    for _ in 0..50 {
        let order = picker.order(7, Some(ReplicaId(4)));
        assert_eq!(order[0], ReplicaId(4));
        let mut sorted = order.clone();
        sorted.sort();
        assert_eq!(sorted, (0..7).map(ReplicaId).collect::<Vec<_>>());
        let others: Vec<ReplicaId> = (1..4).map(ReplicaId).collect();
        let group = picker.group(&others);
        assert_eq!(group.len(), 2);
        assert!(group.iter().all(|replica| others.contains(replica)));
    }
}

/// A scenario's timeline: faults may overlap, each must end after it starts and by the heal,
/// and name replicas of the cluster.
#[test]
fn timelines_are_checked() {
    use crate::FaultAction;
    let fault = |start: f64, end: f64, target: TargetSpec| crate::Fault {
        start: seconds(start),
        end: seconds(end),
        action: FaultAction::Loss(0.2),
        target,
    };
    let heal = seconds(20.0);
    let overlapping = vec![fault(5.0, 9.0, TargetSpec::All), fault(2.0, 8.0, TargetSpec::Random)];
    let schedule = Schedule::from_timeline(overlapping, heal, 1, 4).unwrap();
    assert_eq!(schedule.faults[0].start, seconds(2.0), "sorted by start");
    let starts_after_end = vec![fault(5.0, 4.0, TargetSpec::All)];
    assert!(matches!(
        Schedule::from_timeline(starts_after_end, heal, 1, 4),
        Err(ScheduleError::InvalidFault { index: 0, .. })
    ));
    // A fault read back from test.toml a hair after the heal is cut at it.
    let mut rounded = fault(5.0, 20.0, TargetSpec::All);
    rounded.end += Duration::from_nanos(10);
    let cut = Schedule::from_timeline(vec![rounded], heal, 1, 4).unwrap();
    assert_eq!(cut.faults[0].end, heal);
    let past_heal = vec![fault(5.0, 25.0, TargetSpec::All)];
    assert!(Schedule::from_timeline(past_heal, heal, 1, 4).is_err());
    let unknown = vec![fault(1.0, 2.0, TargetSpec::Replicas(vec![ReplicaId(4)]))];
    assert!(Schedule::from_timeline(unknown, heal, 1, 4).is_err());
    // Overlapping faults: the end of one comes before the start of another at the same time.
    let handover = vec![fault(1.0, 3.0, TargetSpec::All), fault(3.0, 4.0, TargetSpec::All)];
    let actions = Schedule::from_timeline(handover, heal, 1, 4).unwrap().actions();
    assert_eq!(actions[1].step, Step::End(0));
    assert_eq!(actions[2].step, Step::Start(1));
}

/// A drawn schedule written as a timeline and read back gives the same faults (test.toml can
/// be replayed as a scenario); bad entries are refused with a reason.
#[test]
fn timelines_round_trip() {
    use crate::TimelineEntry;
    for seed in 0..20 {
        let schedule = Schedule::new(seed, &acceptance()).unwrap();
        for fault in &schedule.faults {
            let entry = TimelineEntry::from_fault(fault);
            let text = toml::to_string(&entry).unwrap();
            let back: TimelineEntry = toml::from_str(&text).unwrap();
            let again = back.to_fault().unwrap();
            assert_eq!(again.action, fault.action, "{text}");
            assert_eq!(again.target, fault.target, "{text}");
            assert!(again.start.abs_diff(fault.start) < Duration::from_micros(1));
        }
    }
    let bad = |text: &str| toml::from_str::<TimelineEntry>(text).map(|entry| entry.to_fault());
    assert!(matches!(bad("at = 1.0\nuntil = 2.0\nfault = \"explode\""), Ok(Err(_))));
    assert!(matches!(bad("at = 1.0\nuntil = 2.0\nfault = \"byzantine\""), Ok(Err(_))));
    let behaviour = "at = 1.0\nuntil = 2.0\nfault = \"byzantine\"\nbehaviours = [\"lie\"]";
    assert!(matches!(bad(behaviour), Ok(Err(_))));
    assert!(matches!(bad("at = -1.0\nuntil = 2.0\nfault = \"kill\""), Ok(Err(_))));
    assert!(bad("at = 1.0\nuntil = 2.0\nfault = \"kill\"\nspeed = 3").is_err());
    let loss = "at = 1.0\nuntil = 2.0\nfault = \"loss\"\nprobability = 1.5";
    assert!(matches!(bad(loss), Ok(Err(_))));
}

/// The declared Byzantine replicas follow from the seed: distinct, in range, and every
/// replica is drawn for some seed.
#[test]
fn byzantine_replicas_follow_the_seed() {
    let mut seen = BTreeSet::new();
    for seed in 0..100 {
        let drawn = crate::draw_byzantine(seed, 7, 2);
        assert_eq!(drawn, crate::draw_byzantine(seed, 7, 2));
        assert_eq!(drawn.len(), 2);
        assert!(drawn[0] < drawn[1] && drawn[1].0 < 7);
        seen.extend(drawn);
    }
    assert_eq!(seen.len(), 7);
    assert!(crate::draw_byzantine(1, 4, 0).is_empty());
}
