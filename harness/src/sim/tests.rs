//! The simulator: determinism, and correct replicas judged valid under the drawn faults.

use clap::Parser as _;

use super::sweep::{Shard, first_difference};
use super::{SimParams, simulate};
use crate::cli::{Cli, Command, SimArgs};

fn args(extra: &[&str]) -> SimArgs {
    let cli = Cli::try_parse_from(["ordeal", "sim"].iter().chain(extra)).expect("valid options");
    match cli.command {
        Command::Sim(args) => args,
        other => panic!("not a simulation: {other:?}"),
    }
}

/// `ordeal sim`'s own defaults (10 simulated seconds would leave the forcing too little time):
/// 30 s, 4 clients at 15 operations per second, a checkpoint every 16 slots.
#[test]
fn sim_defaults_differ_from_test() {
    let args = args(&[]);
    assert_eq!(args.test.time_limit, 30.0);
    assert_eq!(args.test.concurrency, 4);
    assert_eq!(args.test.rate, Some(15.0));
    assert_eq!(args.test.checkpoint_interval, 16);
    assert!("3/2".parse::<Shard>().is_err());
    assert_eq!("1/2".parse::<Shard>(), Ok(Shard { index: 1, count: 2 }));
    assert!("5..5".parse::<super::sweep::SeedRange>().is_err());
}

/// A seed gives the same history, ledgers and judgement byte for byte, under every fault kind
/// the simulator plays and a Byzantine replica; another seed gives another run.
#[test]
fn a_seed_replays_byte_for_byte() {
    let args = args(&["--protocol", "poe-mac", "--byzantine", "1", "--time-limit", "12"]);
    let network = SimParams::of(&args);
    let first = simulate(&args.test, network, 5).expect("a run");
    let second = simulate(&args.test, network, 5).expect("a run");
    let (history, ledgers) = first.fingerprint();
    assert!(history.len() > 100, "{} history lines", history.len());
    assert!(ledgers.values().all(|lines| !lines.is_empty()));
    assert_eq!(first_difference(&first.fingerprint(), &second.fingerprint()), None);
    // The judgement too: the linearizability search is bounded by work, not time.
    let judged = |run: &super::Simulated| {
        serde_json::to_string(&run.judge().checkers).expect("results serialize")
    };
    assert_eq!(judged(&first), judged(&second));
    let other = simulate(&args.test, network, 6).expect("a run");
    assert!(first_difference(&first.fingerprint(), &other.fingerprint()).is_some());
    assert_eq!(first.nemesis, second.nemesis);
}

/// Correct replicas of every protocol, under drawn faults, are judged valid by every oracle
/// (but `adversary`, which a blindly drawn Byzantine fault may leave unknown), with operations
/// completed and faults played; the judgement itself is repeatable.
#[test]
fn correct_replicas_are_valid_under_faults() {
    for protocol in ["poe-ts", "poe-mac", "pbft"] {
        let args = args(&["--protocol", protocol, "--time-limit", "15"]);
        let network = SimParams::of(&args);
        for seed in [3, 4] {
            let simulated = simulate(&args.test, network, seed).expect("a run");
            let report = simulated.judge();
            let outcome = simulated.outcome(&report);
            // A drawn Byzantine fault may end before its forcing lands (`adversary` unknown);
            // every other oracle must be valid.
            assert_ne!(outcome.verdict, history::Verdict::Invalid, "{protocol} seed {seed}");
            assert!(
                outcome.failing.iter().all(|oracle| oracle == "adversary"),
                "{protocol} seed {seed}: {:?}",
                outcome.failing
            );
            assert!(outcome.ok > 100, "{protocol} seed {seed}: {outcome:?}");
            assert!(simulated.nemesis.faults > 0, "{protocol} seed {seed}: no fault played");
            assert_eq!(simulated.judge().verdict, report.verdict);
        }
    }
}

/// A regression found by a sweep (`ordeal sim --protocol pbft --seed 6 --checkpoint-interval
/// 16`): a slot certified in a later view after a replica executed it lingered below the stable
/// checkpoint and went into every VIEW-CHANGE's evidence, which every receiver then refused as
/// out of order, so the view change never completed and no operation did for the rest of the
/// run (`liveness` INVALID). The evidence now starts above the checkpoint, and executed slots
/// go with it.
#[test]
fn a_view_change_after_a_stable_checkpoint_completes() {
    let simulated = pbft_seed_not_invalid(6);
    assert_eq!(counter_sum(&simulated, "rejected.invalid_view_change"), 0, "VIEW-CHANGEs refused");
    let statuses = simulated.world.statuses();
    assert!(statuses.iter().flatten().all(|status| status.view >= 2), "{statuses:?}");
}

/// PBFT seed `seed` at the simulator's defaults, asserted not INVALID.
fn pbft_seed_not_invalid(seed: u64) -> super::Simulated {
    let args = args(&["--protocol", "pbft"]);
    let simulated = simulate(&args.test, SimParams::of(&args), seed).expect("a run");
    let outcome = simulated.outcome(&simulated.judge());
    assert_ne!(outcome.verdict, history::Verdict::Invalid, "seed {seed}: {:?}", outcome.failing);
    simulated
}

/// Counter `name` summed over the replicas at the end of `simulated`.
fn counter_sum(simulated: &super::Simulated, name: &str) -> u64 {
    let statuses = simulated.world.statuses();
    statuses.iter().flatten().map(|status| status.counters.get(name).copied().unwrap_or(0)).sum()
}

/// A regression found by a 10 000-seed sweep (`ordeal sim --protocol pbft --seed 4173`): view
/// 3 formed on one side of a partition (with a VC-REQUEST one replica of the other side had
/// sent before it), the NV-PROPOSE never reached the other side, and after the heal the two
/// replicas there waited for it forever: the replicas in view 3 refused their VC-REQUESTs for
/// view 3 as stale and sent none of their own, so they never saw nf of them and never started
/// the new-view timer (`liveness` INVALID, nothing executed for 25 s). A replica in a view now
/// sends a straggler asking for it the NV-PROPOSE that started it.
#[test]
fn a_replica_that_missed_a_new_view_is_sent_it() {
    let simulated = pbft_seed_not_invalid(4173);
    assert!(counter_sum(&simulated, "new_views_resent") > 0, "the NV-PROPOSE was sent again");
}

/// A twin of a declared Byzantine replica takes part (its group's messages reach it) for the
/// whole run, and the honest replicas stay safe.
#[test]
fn a_twin_takes_part_and_the_run_stays_valid() {
    for protocol in ["poe-mac", "pbft"] {
        let args =
            args(&["--protocol", protocol, "--twins", "--nemesis", "none", "--byzantine", "1"]);
        let network = SimParams::of(&args);
        let simulated = simulate(&args.test, network, 2).expect("a run");
        let outcome = simulated.outcome(&simulated.judge());
        assert_eq!(outcome.verdict, history::Verdict::Valid, "{protocol}: {:?}", outcome.failing);
        assert_eq!(simulated.nemesis.twins, 1, "{protocol}");
        assert!(outcome.world.twin_delivered > 100, "{protocol}: {:?}", outcome.world);
    }
}

/// Beyond the budget (two colluding replicas of four), a seed is INVALID; its shrunk scenario
/// has no more faults, still fails the same oracle, and replays byte for byte from its TOML.
#[test]
fn a_shrunk_failure_replays() {
    let args = args(&[
        "--protocol",
        "poe-mac",
        "--nemesis",
        "byzantine",
        "--byzantine",
        "2",
        "--beyond-budget",
        "--time-limit",
        "15",
        "--shrink-runs",
        "12",
    ]);
    let network = SimParams::of(&args);
    let shrunk = super::shrink::shrink(&args, network, 5).expect("a run").expect("seed 5 fails");
    assert!(shrunk.faults.1 <= shrunk.faults.0 && shrunk.faults.1 >= 1, "{:?}", shrunk.faults);
    assert!(shrunk.runs <= 12);
    let text = toml::to_string(&shrunk.scenario).expect("a scenario serializes");
    let scenario: crate::scenario::Scenario = toml::from_str(&text).expect("and parses");
    assert_eq!(scenario.seed, Some(5));
    let mut options = args.test.clone();
    options.scenario = None;
    let replay = |scenario: &crate::scenario::Scenario| {
        super::simulate_with(&options, Some(scenario.clone()), network, 5).expect("a run")
    };
    let (first, second) = (replay(&scenario), replay(&scenario));
    assert_eq!(first_difference(&first.fingerprint(), &second.fingerprint()), None);
    let report = first.judge();
    assert_eq!(report.checkers[&shrunk.oracle].verdict, history::Verdict::Invalid);
}

/// A long sweep of every protocol (`RUN_SLOW_TESTS=1`): no violation on the correct replicas.
#[test]
fn sweep_of_correct_replicas_finds_no_violation() {
    if std::env::var_os("RUN_SLOW_TESTS").is_none() {
        return;
    }
    for protocol in ["poe-ts", "poe-mac", "pbft"] {
        let args = args(&["--protocol", protocol]);
        let network = SimParams::of(&args);
        for seed in 1..=200 {
            let simulated = simulate(&args.test, network, seed).expect("a run");
            let outcome = simulated.outcome(&simulated.judge());
            assert_ne!(
                outcome.verdict,
                history::Verdict::Invalid,
                "{protocol} seed {seed}: {:?}",
                outcome.failing
            );
        }
    }
}

/// The coverage a sweep sums in memory (`SeedOutcome::coverage`) is what `ordeal coverage`
/// reads back from the stored run (its `results.json` and `replica-status.json`): the pair of
/// the two paths. Setup: n = 4 PoE-MAC with a Byzantine replica, seed 5. Test: both give the
/// same facts, with the Byzantine replica's counters left out, and the run did something.
#[test]
fn sweep_coverage_equals_the_stored_runs() {
    let args = args(&["--protocol", "poe-mac", "--byzantine", "1", "--time-limit", "12"]);
    let network = SimParams::of(&args);
    let simulated = simulate(&args.test, network, 5).expect("a run");
    let outcome = simulated.outcome(&simulated.judge());
    let store = tempfile::tempdir().expect("a store");
    let (run, _) = simulated.store(store.path(), network).expect("stored");
    let read = crate::coverage::RunFacts::read(&run.run_dir).expect("readable");
    assert_eq!(outcome.coverage, read);
    assert_eq!(outcome.view_changes, read.view_changes);
    assert!(read.checkpoints > 0, "{read:?}");
    assert!(read.counter("messages_received") > 0, "{read:?}");
    let mut coverage = crate::coverage::Coverage::new();
    coverage.add(&outcome.coverage);
    assert_eq!(coverage.runs, 1);
    assert_eq!(coverage.get("checkpoints"), read.checkpoints);
}
