//! `ordeal sim`: the same protocol cores, nemesis and checker on virtual time.
//!
//! One seed is one run: the cluster's keys, the declared Byzantine replicas, the fault schedule
//! and the workload follow from the seed exactly as in `ordeal test`; the replicas, clients and
//! network are simulated ([`world`]); the nemesis is the sans-IO [`Executor`], polled on the
//! virtual clock. The run has the phases of a real one: the workload under faults until the
//! final heal, the liveness window with every fault healed, then the clients finish what is
//! under way (at most one operation timeout). The history and ledgers are judged in memory by
//! the same oracles as a real run's ([`crate::results::judge`]); a run that is kept is written to
//! the store in the real format (`test.toml`, `history.jsonl`, ledgers, `public.json`,
//! `results.json`), so `ordeal check` re-checks it.
//!
//! Determinism: no wall clock, thread or hash order reaches a decision, so a seed gives the
//! same history and ledgers byte for byte ([`Simulated::fingerprint`]).
//!
//! Not simulated yet: Byzantine clients, clock skew, power loss (a kill keeps every write, as
//! SIGKILL does without `--fsync`).

pub mod shrink;
pub mod sweep;
pub mod world;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use checker::CheckResult;
use checker::audit::Report;
use history::{LedgerEvent, Verdict};
use nemesis::executor::{Executor, Report as ExecutorReport};
use nemesis::{FaultKind, Schedule, TimelineEntry};
use replica::core::{Config, ReplicaId, Time};
use replica::crypto::Scheme;
use serde::Serialize;
use serde_json::json;
use workloads::generator::Workload;

use crate::cli::{OptionError, SimArgs, TestOptions};
use crate::faults::FaultReport;
use crate::results::{self, PublicKeys, StoredRun};
use crate::scenario::Scenario;
use world::{World, WorldOptions, WorldStats};

/// The most events one simulated run handles (a run that needs more is reported, not hung).
pub const STEPS_MAX: u64 = 50_000_000;

/// What only a simulated run has: the healthy network's latencies, the clocks' drift, and the
/// signature scheme (recorded in `test.toml`'s `[simulated]`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SimParams {
    /// The shortest one-way latency, in milliseconds.
    pub latency_min_ms: f64,
    /// The longest one-way latency, in milliseconds.
    pub latency_max_ms: f64,
    /// The largest clock drift of a replica, in percent.
    pub clock_drift_percent: f64,
    /// The replicas' and clients' signatures: `simulated` (the keyed hashes of
    /// `replica::crypto::Scheme::Simulated`) or `real` (ed25519 and BLS, `--real-crypto`).
    pub signatures: &'static str,
}

impl SimParams {
    /// The parameters of `args`.
    pub fn of(args: &SimArgs) -> SimParams {
        SimParams {
            latency_min_ms: args.latency_min_ms,
            latency_max_ms: args.latency_max_ms,
            clock_drift_percent: args.clock_drift,
            signatures: if args.real_crypto { "real" } else { "simulated" },
        }
    }

    /// The signature scheme of the keys.
    pub fn scheme(self) -> Scheme {
        match self.signatures {
            "simulated" => Scheme::Simulated,
            _ => Scheme::Real,
        }
    }

    /// Refuses values that make no network.
    ///
    /// # Errors
    ///
    /// [`OptionError`] naming the option.
    pub fn validate(self) -> Result<(), OptionError> {
        let latency = |ms: f64| ms.is_finite() && (0.0..=10_000.0).contains(&ms);
        if !latency(self.latency_min_ms) || !latency(self.latency_max_ms) {
            return Err(OptionError {
                option: "latency-min-ms",
                reason: "latencies must be in [0, 10000] ms".into(),
            });
        }
        if self.latency_min_ms > self.latency_max_ms {
            return Err(OptionError {
                option: "latency-max-ms",
                reason: format!("{} is below --latency-min-ms", self.latency_max_ms),
            });
        }
        if !(self.clock_drift_percent.is_finite()
            && (0.0..49.0).contains(&self.clock_drift_percent))
        {
            return Err(OptionError {
                option: "clock-drift",
                reason: format!("{} is not in [0, 49) percent", self.clock_drift_percent),
            });
        }
        Ok(())
    }

    fn latency(self) -> (Duration, Duration) {
        let duration = |ms: f64| Duration::from_secs_f64(ms.clamp(0.0, 10_000.0) / 1000.0);
        (duration(self.latency_min_ms), duration(self.latency_max_ms))
    }
}

/// One simulated run, finished.
pub struct Simulated {
    /// The test's name.
    pub name: String,
    /// The seed.
    pub seed: u64,
    /// The options after the scenario and the seed's defaults.
    pub options: TestOptions,
    /// The cluster.
    pub config: Config,
    /// The scenario played, if any.
    pub scenario: Option<Scenario>,
    /// The declared Byzantine replicas.
    pub byzantine: Vec<ReplicaId>,
    /// The fault timeline.
    pub timeline: Vec<TimelineEntry>,
    /// What the nemesis did.
    pub nemesis: ExecutorReport,
    /// The enabled fault kinds.
    pub kinds: Vec<FaultKind>,
    /// The world at the end.
    pub world: World,
    /// Why the run stopped early, if it did (the step limit).
    pub error: Option<String>,
}

/// What a run of one seed came to.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SeedOutcome {
    /// The seed.
    pub seed: u64,
    /// The verdict.
    pub verdict: Verdict,
    /// The oracles that were not valid, failures first.
    pub failing: Vec<String>,
    /// Operations completed `ok`.
    pub ok: u64,
    /// View changes (distinct views above 0 an honest replica entered).
    pub view_changes: u64,
    /// Simulated seconds.
    pub simulated_s: f64,
    /// What the world did.
    pub world: WorldStats,
    /// Why the run stopped early, if it did.
    pub error: Option<String>,
    /// What the seed adds to the coverage counters (`crate::coverage`).
    pub coverage: crate::coverage::RunFacts,
}

/// Runs one seed of `options` in the simulator.
///
/// # Errors
///
/// Options or a scenario that cannot make a run (the message names the option).
pub fn simulate(options: &TestOptions, network: SimParams, seed: u64) -> anyhow::Result<Simulated> {
    let scenario = options.scenario.as_deref().map(Scenario::load).transpose()?;
    simulate_with(options, scenario, network, seed)
}

/// [`simulate`] with the scenario given (`options.scenario` is not read).
///
/// # Errors
///
/// Options or a scenario that cannot make a run.
pub fn simulate_with(
    options: &TestOptions,
    scenario: Option<Scenario>,
    network: SimParams,
    seed: u64,
) -> anyhow::Result<Simulated> {
    let mut options = match &scenario {
        Some(scenario) => scenario.apply(options),
        None => options.resolved(seed),
    };
    // Not simulated yet: Byzantine clients (module docs).
    options.byzantine_clients = Some(0);
    let config = options.cluster_config()?;
    let (byzantine, schedule, kinds) = plan(&options, scenario.as_ref(), &config, seed)?;
    let name = match &scenario {
        Some(scenario) => scenario.name.clone(),
        None => format!("sim-{}", options.test_name()),
    };
    let keys = crate::run::cluster_keys_with(&config, seed, network.scheme())?;
    let mut world = World::new(WorldOptions {
        config: config.clone(),
        keys,
        byzantine: byzantine.clone(),
        seed,
        workload: Workload::from(options.workload),
        key_count: options.keys,
        op_timeout: Duration::from_secs_f64(options.op_timeout),
        op_interval: options
            .rate
            .map(|rate| Duration::from_secs_f64(f64::from(options.concurrency) / rate.max(1e-3))),
        latency: network.latency(),
        clock_drift: network.clock_drift_percent / 100.0,
    })?;
    let schedule = schedule.unwrap_or_else(|| Schedule {
        faults: Vec::new(),
        heal: Duration::from_secs_f64(options.time_limit - options.liveness_window()),
        f: config.f(),
    });
    let timeline = schedule.faults.iter().map(TimelineEntry::from_fault).collect();
    let mut executor =
        Executor::new(&schedule, config.replica_count, &byzantine, options.beyond_budget, seed);
    let time_limit =
        Time::from_nanos(Duration::from_secs_f64(options.time_limit).as_nanos() as u64);
    let drain = time_limit + Duration::from_secs_f64(options.op_timeout) + Duration::from_secs(1);
    let error = run_world(&mut world, &mut executor, time_limit, drain).err();
    Ok(Simulated {
        name,
        seed,
        options,
        config,
        scenario,
        byzantine,
        timeline,
        nemesis: executor.report(),
        kinds,
        world,
        error,
    })
}

/// The declared Byzantine replicas, the schedule and the enabled kinds of a run.
fn plan(
    options: &TestOptions,
    scenario: Option<&Scenario>,
    config: &Config,
    seed: u64,
) -> anyhow::Result<(Vec<ReplicaId>, Option<Schedule>, Vec<FaultKind>)> {
    let n = config.replica_count;
    let time_limit = Duration::from_secs_f64(options.time_limit);
    let window = Duration::from_secs_f64(options.liveness_window());
    if let Some(scenario) = scenario {
        let schedule = scenario.schedule(n, config.f(), time_limit, window)?;
        let mut kinds: Vec<FaultKind> = schedule.faults.iter().map(nemesis::Fault::kind).collect();
        kinds.sort();
        kinds.dedup();
        return Ok((scenario.byzantine(), Some(schedule), kinds));
    }
    let byzantine = nemesis::draw_byzantine(seed, n, options.byzantine_count(config));
    let mut schedule = match options.schedule_options(config)? {
        Some(schedule_options) => {
            let schedule =
                Schedule::new(seed, &schedule_options).context("making the nemesis's schedule")?;
            Some((schedule, schedule_options.kinds))
        }
        None => None,
    };
    if options.twins {
        // A twin for the whole run, as in `ordeal test --twins`.
        let heal = time_limit.saturating_sub(window);
        let start = Duration::from_secs(1).min(heal / 2);
        anyhow::ensure!(start < heal, "--twins: the final heal leaves no time for a twin");
        let (schedule, kinds) = schedule.get_or_insert_with(|| {
            (Schedule { faults: Vec::new(), heal, f: config.f() }, Vec::new())
        });
        let twin = nemesis::Fault {
            start,
            end: heal,
            action: nemesis::FaultAction::Twins,
            target: nemesis::TargetSpec::Random,
        };
        schedule.faults.insert(0, twin);
        kinds.push(FaultKind::Twins);
    }
    Ok(match schedule {
        Some((schedule, kinds)) => (byzantine, Some(schedule), kinds),
        None => (byzantine, None, Vec::new()),
    })
}

/// Runs the world and the nemesis until the clients have drained after `time_limit` (or
/// `drain` at the latest).
///
/// # Errors
///
/// The step limit's message, when it was reached first.
fn run_world(
    world: &mut World,
    executor: &mut Executor,
    time_limit: Time,
    drain: Time,
) -> Result<(), String> {
    let mut steps = 0u64;
    // Bounded: STEPS_MAX steps, and virtual time never passes `drain`.
    loop {
        if steps >= STEPS_MAX {
            return Err(format!("step limit of {STEPS_MAX} reached at {:?}", world.time()));
        }
        steps += 1;
        let wake = executor.next_wake().map(|at| Time::from_nanos(at.as_nanos() as u64));
        let next_event = world.next_event();
        let issuing_ends = (world.time() < time_limit).then_some(time_limit);
        let next = [wake, next_event, issuing_ends].into_iter().flatten().min();
        let Some(next) = next else { return Ok(()) };
        if world.time() >= time_limit && world.clients_idle() {
            return Ok(());
        }
        if next > drain {
            world.advance_to(drain);
            return Ok(());
        }
        if Some(next) == issuing_ends
            && next_event.is_none_or(|at| at >= next)
            && wake.is_none_or(|at| at >= next)
        {
            world.advance_to(time_limit);
            world.stop_issuing();
            continue;
        }
        if wake.is_some_and(|at| at <= next) {
            world.advance_to(next);
            let now = Duration::from_nanos(world.time().as_nanos());
            let effects = executor.poll(now, world);
            world.apply(effects);
            continue;
        }
        world.step();
    }
}

impl Simulated {
    /// The history as JSON lines, and every replica's ledger as JSON lines: equal for two runs
    /// of one seed.
    pub fn fingerprint(&self) -> (Vec<String>, BTreeMap<u8, Vec<String>>) {
        let history = self.world.history().iter().map(to_line).collect();
        let ledgers = self
            .world
            .ledgers()
            .map(|(replica, events)| (replica.0, events.iter().map(to_line).collect()))
            .collect();
        (history, ledgers)
    }

    /// The honest replicas' ledgers.
    fn honest_ledgers(&self) -> BTreeMap<u32, Vec<LedgerEvent>> {
        self.world
            .ledgers()
            .filter(|(replica, _)| !self.byzantine.contains(replica))
            .map(|(replica, events)| (u32::from(replica.0), events.to_vec()))
            .collect()
    }

    fn public_keys(&self) -> PublicKeys {
        let public = self.world.public_keys();
        let simulated =
            public.replicas.first().is_some_and(|key| key.scheme() == Scheme::Simulated);
        PublicKeys {
            replicas: public.replicas.iter().map(|key| key.to_bytes()).collect(),
            clients: public.clients.iter().map(|key| key.to_bytes()).collect(),
            signatures: if simulated {
                checker::digest::Signatures::Simulated
            } else {
                checker::digest::Signatures::Ed25519
            },
        }
    }

    /// What the nemesis did, as `results.json` reports it.
    fn fault_report(&self) -> FaultReport {
        let nemesis = &self.nemesis;
        FaultReport {
            nemesis: self.kinds.iter().map(|kind| kind.name().to_string()).collect(),
            byzantine: self.byzantine.iter().map(|replica| replica.0).collect(),
            beyond_budget: self.options.beyond_budget,
            limit: nemesis.limit,
            faulty_max: nemesis.faulty_max,
            faults: nemesis.faults,
            by_kind: nemesis.by_kind.clone(),
            behaviours: nemesis.behaviours.clone(),
            restarts: nemesis.restarts,
            restarts_unanswered: 0,
            twins: nemesis.twins,
            crashed_max: nemesis.crashed_max,
            paused_max: nemesis.paused_max,
            final_heal_s: nemesis.final_heal.map(|at| at.as_secs_f64()),
            acted: nemesis.acted,
            vacuous: nemesis.vacuous.clone(),
            forced_view_changes: nemesis.forced_view_changes,
            errors: nemesis.errors.clone(),
        }
    }

    /// The checks only the harness makes: the simulation itself, and whether the Byzantine
    /// faults acted.
    fn harness_checks(&self) -> BTreeMap<String, CheckResult> {
        let mut checks = BTreeMap::new();
        let simulation = match &self.error {
            Some(error) => CheckResult::new(Verdict::Unknown, json!({"errors": [error]})),
            None => CheckResult::new(Verdict::Valid, json!(self.world.stats())),
        };
        checks.insert("simulation".to_string(), simulation);
        if let Some(adversary) = results::adversary(&self.fault_report()) {
            checks.insert("adversary".to_string(), adversary);
        }
        checks
    }

    /// Judges the run in memory with every oracle of a real run.
    pub fn judge(&self) -> Report {
        let history = checker::audit::History::from_ops(self.world.history());
        let inputs = results::inputs(
            &self.config,
            Ok(history),
            self.honest_ledgers(),
            Vec::new(),
            Ok(self.public_keys()),
            Duration::from_secs_f64(self.options.liveness_window()),
            checker::linear::LinearOptions::untimed(),
        );
        results::judge(inputs, &self.harness_checks(), None)
    }

    /// What the run came to, from `report`.
    pub fn outcome(&self, report: &Report) -> SeedOutcome {
        let mut failing: Vec<(Verdict, String)> = report
            .checkers
            .iter()
            .filter(|(_, result)| result.verdict != Verdict::Valid)
            .map(|(name, result)| (result.verdict, name.clone()))
            .collect();
        failing.sort_by_key(|(verdict, _)| *verdict != Verdict::Invalid);
        let coverage = self.coverage_facts();
        SeedOutcome {
            seed: self.seed,
            verdict: report.verdict,
            failing: failing.into_iter().map(|(_, name)| name).collect(),
            ok: report.stats.ok,
            view_changes: coverage.view_changes,
            simulated_s: self.world.time().as_nanos() as f64 / 1e9,
            world: self.world.stats(),
            error: self.error.clone(),
            coverage,
        }
    }

    /// What the run adds to the coverage counters: the figures a stored run's `results.json`
    /// and `replica-status.json` give (`crate::coverage::RunFacts::read`), from memory.
    pub fn coverage_facts(&self) -> crate::coverage::RunFacts {
        let (view_changes, rollbacks, checkpoints) =
            results::ledger_event_counts(&self.honest_ledgers());
        let faults = self.fault_report();
        let mut facts = crate::coverage::RunFacts {
            view_changes,
            rollbacks,
            checkpoints,
            restarts: faults.restarts,
            byzantine_acted: faults.acted,
            twins: faults.twins,
            forced_view_changes: faults.forced_view_changes,
            counters: BTreeMap::new(),
        };
        for status in self.world.statuses().iter().flatten() {
            if !self.byzantine.contains(&ReplicaId(status.id)) {
                facts.add_counters(&status.counters);
            }
        }
        facts
    }

    /// Writes the run to the store in the real format and checks it from its files (which
    /// writes `results.json`); returns its directory and verdict.
    ///
    /// # Errors
    ///
    /// When a file cannot be written.
    pub fn store(&self, store: &Path, network: SimParams) -> anyhow::Result<(StoredRun, Report)> {
        // The directory's name carries the time of writing only: the records do not.
        #[allow(clippy::disallowed_methods, reason = "the store's directory names are dated")]
        let now = std::time::SystemTime::now();
        let run_dir = crate::store::create_run_dir(store, &self.name, self.seed, now)
            .with_context(|| format!("creating the run directory under {}", store.display()))?;
        let mut replay = self.options.clone();
        replay.seed = Some(self.seed);
        replay.test_count = 1;
        replay.liveness_window = Some(self.options.liveness_window());
        replay.nemesis_interval = Some(self.options.nemesis_interval());
        let record = crate::run::TestRecord {
            name: self.name.clone(),
            seed: self.seed,
            ordeal_version: env!("CARGO_PKG_VERSION"),
            simulated: Some(network),
            options: &replay,
            cluster: &self.config,
            byzantine: self.byzantine.iter().map(|replica| replica.0).collect(),
            planted_bug: self.config.planted_bug.map(|bug| bug.name()),
            scenario: self.scenario.as_ref(),
            timeline: self.timeline.clone(),
        };
        let toml = toml::to_string(&record).context("serializing test.toml")?;
        write(&run_dir.join("test.toml"), &toml)?;
        write(&run_dir.join("history.jsonl"), &lines(self.world.history()))?;
        for (replica, path) in crate::run::ledger_paths(&run_dir, self.config.replica_count) {
            let events = self.world.ledgers().nth(replica as usize).map(|(_, events)| events);
            std::fs::create_dir_all(path.parent().expect("a ledger has a directory"))?;
            write(&path, &lines(events.unwrap_or_default()))?;
        }
        for (replica, flight) in self.world.flights() {
            let path =
                run_dir.join("replicas").join(format!("r{}", replica.0)).join("flight.jsonl");
            flight.write_to(&path).with_context(|| format!("writing {}", path.display()))?;
        }
        let public = serde_json::to_string_pretty(self.world.public_keys())?;
        write(&run_dir.join("public.json"), &public)?;
        let statuses = serde_json::to_string_pretty(&self.world.statuses())?;
        write(&run_dir.join("replica-status.json"), &statuses)?;
        let run = StoredRun {
            name: self.name.clone(),
            seed: self.seed,
            run_dir: run_dir.clone(),
            cluster: self.config.clone(),
            history_error: None,
            harness_checks: self.harness_checks(),
            ready_ms: 0,
            interrupted: false,
            faults: self.fault_report(),
            liveness_window: Duration::from_secs_f64(self.options.liveness_window()),
            byzantine: self.byzantine.iter().map(|replica| replica.0).collect(),
            beyond_budget: self.options.beyond_budget,
            expected: self.scenario.as_ref().map(|s| Verdict::from(s.expect.verdict)),
            byzantine_clients: None,
            network: None,
            planted_bug: self.config.planted_bug.map(|bug| bug.name().to_string()),
            signatures: self.public_keys().signatures,
            simulated: true,
        };
        let (_, report) = results::check_run(&run)?;
        crate::report::write_or_warn(&run_dir);
        crate::store::update_latest(store, &run_dir).context("updating store/latest")?;
        Ok((run, report))
    }
}

fn to_line<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("records serialize")
}

fn lines<T: Serialize>(values: &[T]) -> String {
    let mut text = String::new();
    for value in values {
        text.push_str(&to_line(value));
        text.push('\n');
    }
    text
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests;
