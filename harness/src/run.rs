//! One run of `ordeal test`: set up the store, keys and certificates; start the replicas; run
//! the clients until the time limit; stop everything; check; write the results.
//!
//! Every step that can fail says which; whatever happens after the replicas start, they are
//! stopped ([`Cluster`] kills them when dropped) and the history recorded so far is kept.

#![allow(clippy::disallowed_methods, reason = "a run is timed on the wall clock")]

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use history::Verdict;
use nemesis::{FaultKind, Schedule, TimelineEntry};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use replica::byzantine::ByzantineConfig;
use replica::core::{Client, Config, ReplicaId};
use replica::crypto::Scheme;
use replica::crypto::dealer::ClusterKeys;
use replica::net::client::ClientTransport;
use replica::net::config::NodeConfig;
use replica::net::endpoint;
use replica::net::secrets::{SECRETS_FD, SecretMessage};
use replica::net::tls::{Identity, TlsFiles};
use serde::Serialize;
use tokio::sync::watch;
use workloads::generator::Workload;
use workloads::process::{self, ProcessOptions};
use workloads::recorder::Recorder;

use crate::certs::RunCa;
use crate::cli::TestOptions;
use crate::cluster::{self, Cluster, NodeStart, StopReport};
use crate::faults::{self, FaultContext, FaultReport};
use crate::network::{Network, NetworkHandle};
use crate::results::{self, StoredRun};
use crate::scenario::Scenario;
use crate::store;
use crate::workers::Workers;

/// How long the cluster may take to become ready.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(15);

/// How long each stop step (control stop, SIGTERM) waits before the next.
pub(crate) const STOP_GRACE: Duration = Duration::from_secs(2);

/// How often the history is flushed to disk during a run.
const HISTORY_FLUSH_INTERVAL: Duration = Duration::from_millis(200);

/// Threads hosting the client processes (the machine has two cores; the replicas need them
/// too).
pub(crate) const CLIENT_WORKERS: usize = 2;

/// How many clients share one QUIC endpoint (UDP socket) in the harness.
pub(crate) const CLIENTS_PER_ENDPOINT: usize = 16;

/// Extra time client processes get, beyond one operation timeout, to finish after the limit.
const CLIENT_DRAIN_GRACE: Duration = Duration::from_secs(2);

/// How a run ended.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    /// The overall verdict.
    pub verdict: Verdict,
    /// The verdict the scenario expects, if the run played one.
    pub expected: Option<Verdict>,
    /// The run's directory.
    pub run_dir: PathBuf,
    /// True when Ctrl-C cut the run short.
    pub interrupted: bool,
}

/// Everything written to `test.toml`: the options after defaults, the seed, and what was
/// derived from them, enough to replay the run.
#[derive(Debug, Serialize)]
pub(crate) struct TestRecord<'a> {
    pub(crate) name: String,
    pub(crate) seed: u64,
    pub(crate) ordeal_version: &'static str,
    /// The simulator's network and clocks, for a simulated run (`ordeal sim`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) simulated: Option<crate::sim::SimParams>,
    pub(crate) options: &'a TestOptions,
    pub(crate) cluster: &'a Config,
    /// The replicas declared Byzantine.
    pub(crate) byzantine: Vec<u8>,
    /// The planted bug the honest replicas and the clients ran, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) planted_bug: Option<&'static str>,
    /// The scenario played, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) scenario: Option<&'a Scenario>,
    /// The fault timeline (the schedule drawn from the seed, or the scenario's).
    pub(crate) timeline: Vec<TimelineEntry>,
}

/// What the nemesis will do in a run: the declared Byzantine replicas and the schedule.
struct Plan {
    byzantine: Vec<ReplicaId>,
    schedule: Option<(Schedule, Vec<FaultKind>)>,
}

impl Plan {
    /// The plan of a run of `options` (a scenario's already applied) with `seed`.
    fn new(
        options: &TestOptions,
        scenario: Option<&Scenario>,
        config: &Config,
        seed: u64,
    ) -> anyhow::Result<Plan> {
        let n = config.replica_count;
        let time_limit = Duration::from_secs_f64(options.time_limit);
        let window = Duration::from_secs_f64(options.liveness_window());
        let byzantine = match scenario {
            Some(scenario) => scenario.byzantine(),
            None => nemesis::draw_byzantine(seed, n, options.byzantine_count(config)),
        };
        let mut schedule = match (scenario, options.schedule_options(config)?) {
            (Some(scenario), _) => {
                let schedule = scenario.schedule(n, config.f(), time_limit, window)?;
                let mut kinds: Vec<FaultKind> =
                    schedule.faults.iter().map(nemesis::Fault::kind).collect();
                kinds.sort();
                kinds.dedup();
                Some((schedule, kinds))
            }
            (None, Some(schedule_options)) => {
                let schedule = Schedule::new(seed, &schedule_options)
                    .context("making the nemesis's schedule")?;
                Some((schedule, schedule_options.kinds))
            }
            (None, None) => None,
        };
        if options.twins {
            // A twin for the whole run: from the first second to the final heal.
            let heal = time_limit.saturating_sub(window);
            let (schedule, kinds) = schedule.get_or_insert_with(|| {
                (Schedule { faults: Vec::new(), heal, f: config.f() }, Vec::new())
            });
            let start = Duration::from_secs(1).min(heal / 2);
            anyhow::ensure!(start < heal, "--twins: the final heal leaves no time for a twin");
            schedule.faults.insert(
                0,
                nemesis::Fault {
                    start,
                    end: heal,
                    action: nemesis::FaultAction::Twins,
                    target: nemesis::TargetSpec::Random,
                },
            );
            kinds.push(FaultKind::Twins);
        }
        Ok(Plan { byzantine, schedule })
    }

    fn timeline(&self) -> Vec<TimelineEntry> {
        self.schedule.as_ref().map_or_else(Vec::new, |(schedule, _)| {
            schedule.faults.iter().map(TimelineEntry::from_fault).collect()
        })
    }
}

/// Runs the test once with `seed`, in phases: [`Prepared::new`] (options, plan, run directory,
/// `test.toml`), [`Started::start`] (ports, relay, keys, replica processes), [`drive`] (clients
/// and nemesis until the time limit), [`Started::stop`], [`record`] (one [`StoredRun`]), then
/// the check, `results.json`, `report.html` and the store's index.
///
/// # Errors
///
/// A harness failure (the store, keys, processes, the cluster not becoming ready); the message
/// names the step.
pub async fn run_once(
    options: &TestOptions,
    seed: u64,
    interrupt: watch::Receiver<bool>,
) -> anyhow::Result<RunOutcome> {
    let prepared = Prepared::new(options, seed)?;
    let mut started = Started::start(&prepared)?;
    let outcome = drive(&prepared, &mut started, interrupt).await;
    // The replicas stop on every path; the history recorded so far is kept.
    let (stopped, network) = started.stop().await;
    let drive = outcome?;
    let run = record(&prepared, drive, stopped, network);
    let verdict = results::check_and_write(&run)?;
    let Prepared { options, run_dir, .. } = &prepared;
    store::update_latest(&options.store, run_dir).context("updating store/latest")?;
    crate::site::write_index_or_warn(&options.store);
    if let Some(expected) = run.expected {
        let (got, want) = (results::verdict_name(verdict), results::verdict_name(expected));
        if verdict == expected {
            eprintln!("ordeal: scenario verdict {got}, as expected");
        } else {
            eprintln!("ordeal: scenario verdict {got}, but {want} was expected");
        }
    }
    Ok(RunOutcome {
        verdict,
        expected: run.expected,
        run_dir: run_dir.clone(),
        interrupted: run.interrupted,
    })
}

/// A run before any process starts: its options (a scenario's applied, defaults resolved), the
/// cluster, the nemesis's plan, and its directory with `test.toml` written.
struct Prepared {
    options: TestOptions,
    scenario: Option<Scenario>,
    config: Config,
    plan: Plan,
    seed: u64,
    name: String,
    run_dir: PathBuf,
    /// Time zero of the history (the recorder's clock).
    start: Instant,
    /// Time zero of the replicas' ledgers, on the wall clock.
    epoch_unix_nanos: u64,
}

impl Prepared {
    fn new(options: &TestOptions, seed: u64) -> anyhow::Result<Prepared> {
        let scenario = options.scenario.as_deref().map(Scenario::load).transpose()?;
        let options = match &scenario {
            Some(scenario) => scenario.apply(options),
            None => options.resolved(seed),
        };
        let config = options.cluster_config()?;
        let plan = Plan::new(&options, scenario.as_ref(), &config, seed)?;
        let started = SystemTime::now();
        let start = Instant::now();
        let epoch_unix_nanos =
            started.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
        let name = match &scenario {
            Some(scenario) => scenario.name.clone(),
            None => options.test_name(),
        };
        let run_dir =
            store::create_run_dir(&options.store, &name, seed, started).with_context(|| {
                format!("creating the run directory under {}", options.store.display())
            })?;
        let prepared = Prepared {
            options,
            scenario,
            config,
            plan,
            seed,
            name,
            run_dir,
            start,
            epoch_unix_nanos,
        };
        prepared.write_test_toml()?;
        eprintln!("ordeal: {}, seed {seed}, {}", prepared.name, prepared.run_dir.display());
        Ok(prepared)
    }

    /// `test.toml`: the options after defaults, enough to replay the run.
    fn write_test_toml(&self) -> anyhow::Result<()> {
        let mut replay = self.options.clone();
        replay.seed = Some(self.seed);
        replay.test_count = 1;
        // The values the defaults resolved to, so that re-checking and replaying need no rule.
        replay.liveness_window = Some(self.options.liveness_window());
        replay.nemesis_interval = Some(self.options.nemesis_interval());
        let record = TestRecord {
            name: self.name.clone(),
            seed: self.seed,
            ordeal_version: env!("CARGO_PKG_VERSION"),
            simulated: None,
            options: &replay,
            cluster: &self.config,
            byzantine: self.plan.byzantine.iter().map(|replica| replica.0).collect(),
            planted_bug: self.config.planted_bug.map(|bug| bug.name()),
            scenario: self.scenario.as_ref(),
            timeline: self.plan.timeline(),
        };
        let text = toml::to_string(&record).context("serializing test.toml")?;
        write(&self.run_dir.join("test.toml"), &text)
    }
}

/// A run's processes and sockets: the relay, the replicas (and twins), the harness's control
/// endpoint, and the keys in memory.
struct Started {
    network: Option<Network>,
    handle: Option<NetworkHandle>,
    setup: Setup,
    cluster: Cluster,
    controller_endpoint: quinn::Endpoint,
    twin_addresses: BTreeMap<ReplicaId, SocketAddr>,
}

impl Started {
    fn start(prepared: &Prepared) -> anyhow::Result<Started> {
        let Prepared { options, config, plan, seed, run_dir, epoch_unix_nanos, .. } = prepared;
        // The relay's sockets are bound while the replicas' (and their twins') ports are
        // reserved, so none collide. Every declared Byzantine replica may get a twin.
        let n = usize::from(config.replica_count);
        let reserved =
            cluster::reserve_ports(n + plan.byzantine.len()).context("allocating ports")?;
        let mut addresses = reserved
            .iter()
            .map(std::net::UdpSocket::local_addr)
            .collect::<std::io::Result<Vec<_>>>()
            .context("allocating ports")?;
        let twin_addresses: BTreeMap<ReplicaId, SocketAddr> =
            plan.byzantine.iter().copied().zip(addresses.split_off(n)).collect();
        // Stopped (its sockets closed, its thread joined) when dropped, on every path.
        let network = if options.no_relay {
            None
        } else {
            let network =
                Network::start(&addresses, &twin_addresses, *seed).context("starting the relay")?;
            Some(network)
        };
        drop(reserved);
        let routes = match &network {
            Some(network) => Routes {
                peers: (0..n).map(|index| network.peer_addresses(ReplicaId(index as u8))).collect(),
                clients: network.client_addresses(),
            },
            None => Routes::direct(&addresses),
        };
        let mut setup = Setup::create_routed(
            run_dir,
            config,
            *seed,
            *epoch_unix_nanos,
            options.fsync,
            addresses,
            routes,
        )?;
        setup.write_twins(run_dir, &twin_addresses, *seed, network.as_ref())?;
        let handle = network.as_ref().map(Network::handle);
        let program = std::env::current_exe().context("locating the ordeal binary")?;
        let local: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
        let controller_endpoint =
            endpoint::bind(local, None, None).context("binding the harness's QUIC endpoint")?;
        // Spawned from this (the main) thread: see the `cluster` module on PR_SET_PDEATHSIG.
        let cluster = setup.spawn_cluster(&program)?;
        Ok(Started { network, handle, setup, cluster, controller_endpoint, twin_addresses })
    }

    /// Stops the replicas (the control connections stay open until they were told to), closes
    /// the endpoint and stops the relay; returns how the replicas ended and what the relay did.
    async fn stop(self) -> (StopReport, Option<serde_json::Value>) {
        let Started { network, mut cluster, controller_endpoint, setup, .. } = self;
        let stopped = cluster.stop(STOP_GRACE).await;
        controller_endpoint.close(0u32.into(), b"done");
        drop(cluster);
        drop(setup);
        let network = network.map(Network::stop);
        if !stopped.escalated.is_empty() {
            eprintln!("ordeal: replicas did not all stop gracefully ({:?})", stopped.escalated);
        }
        (stopped, network.and_then(|stats| serde_json::to_value(stats).ok()))
    }
}

/// The record of the finished run: what the files will not say (how the processes ended, what
/// the nemesis and the relay did), beside what they will.
fn record(
    prepared: &Prepared,
    drive: DriveOutcome,
    stopped: StopReport,
    network: Option<serde_json::Value>,
) -> StoredRun {
    let Prepared { options, scenario, config, plan, seed, name, run_dir, .. } = prepared;
    let faults = drive.faults.unwrap_or_default();
    StoredRun {
        name: name.clone(),
        seed: *seed,
        run_dir: run_dir.clone(),
        cluster: config.clone(),
        history_error: drive.history_error,
        harness_checks: results::harness_checks(&stopped, &faults),
        ready_ms: drive.ready.as_millis() as u64,
        interrupted: drive.interrupted,
        faults,
        liveness_window: Duration::from_secs_f64(options.liveness_window()),
        byzantine: plan.byzantine.iter().map(|replica| replica.0).collect(),
        beyond_budget: options.beyond_budget,
        expected: scenario.as_ref().map(|scenario| Verdict::from(scenario.expect.verdict)),
        byzantine_clients: drive.byzantine_clients,
        network,
        planted_bug: config.planted_bug.map(|bug| bug.name().to_string()),
        signatures: checker::digest::Signatures::Ed25519,
        simulated: false,
    }
}

/// The files and addresses of a run, made before any process starts: certificates and one
/// configuration file per replica under `<run_dir>/replicas/r<i>/`, and every key in memory.
///
/// **Invariant:** nothing secret is written under the run directory (DESIGN: the store keeps no
/// secrets). Private keys (the CA's, every node's TLS key, the protocol keys) live in this value
/// only; a replica process gets its own through a pipe ([`crate::cluster`]), so a harness killed
/// with SIGKILL leaves none behind.
pub struct Setup {
    /// The run's CA.
    pub ca: RunCa,
    /// Every protocol key.
    pub keys: ClusterKeys,
    /// Where replica i listens, at position i (the control connections go there).
    pub addresses: Vec<SocketAddr>,
    /// Where clients send to replica i, at position i (through the relay, or `addresses`).
    pub client_addresses: Vec<SocketAddr>,
    /// Replica i's configuration file, at position i.
    pub configs: Vec<PathBuf>,
    /// Replica i's secret message (its TLS key and protocol keys), at position i: handed to it
    /// at every start.
    pub secrets: Vec<SecretMessage>,
    /// How each twin starts (made by [`Setup::write_twins`]).
    twins: BTreeMap<ReplicaId, NodeStart>,
}

impl Setup {
    /// Writes the files of a cluster with `config` under `run_dir`; keys follow from `seed`.
    ///
    /// # Errors
    ///
    /// When a key, certificate or file cannot be made; the message names it.
    pub fn create(
        run_dir: &Path,
        config: &Config,
        seed: u64,
        epoch_unix_nanos: u64,
        fsync: bool,
    ) -> anyhow::Result<Setup> {
        let addresses = cluster::allocate_ports(usize::from(config.replica_count))
            .context("allocating ports")?;
        let routes = Routes::direct(&addresses);
        Setup::create_routed(run_dir, config, seed, epoch_unix_nanos, fsync, addresses, routes)
    }

    /// [`Setup::create`] with the replicas listening on `addresses` and reaching each other and
    /// the clients reaching them by `routes` (the relay's sockets).
    ///
    /// # Errors
    ///
    /// When a key, certificate or file cannot be made; the message names it.
    pub fn create_routed(
        run_dir: &Path,
        config: &Config,
        seed: u64,
        epoch_unix_nanos: u64,
        fsync: bool,
        addresses: Vec<SocketAddr>,
        routes: Routes,
    ) -> anyhow::Result<Setup> {
        let n = config.replica_count;
        anyhow::ensure!(
            addresses.len() == usize::from(n)
                && routes.peers.len() == usize::from(n)
                && routes.clients.len() == usize::from(n),
            "addresses for {} replicas, routes for {}, cluster of {n}",
            addresses.len(),
            routes.peers.len()
        );
        let keys = cluster_keys(config, seed)?;
        let ca = RunCa::generate("Ordeal run CA").context("generating the run's CA")?;
        write(&run_dir.join("ca.crt"), &ca.cert_pem())?;
        write_json(&run_dir.join("public.json"), &keys.public)?;
        let mut configs = Vec::new();
        let mut secrets = Vec::new();
        for index in 0..n {
            let directory = run_dir.join("replicas").join(format!("r{index}"));
            std::fs::create_dir_all(&directory)
                .with_context(|| format!("creating {}", directory.display()))?;
            let cert = ca
                .issue(Identity::Replica(replica::core::ReplicaId(index)))
                .context("issuing a replica certificate")?;
            write(&directory.join("node.crt"), &cert.cert_pem)?;
            secrets.push(SecretMessage {
                tls_key_pem: cert.key_pem.clone(),
                replica: keys.replicas[usize::from(index)].clone(),
            });
            let node = NodeConfig {
                id: index,
                listen: addresses[usize::from(index)],
                peers: routes.peers[usize::from(index)].clone(),
                cluster: config.clone(),
                public_keys: run_dir.join("public.json"),
                secrets_fd: SECRETS_FD,
                tls: TlsFiles { ca: run_dir.join("ca.crt"), cert: directory.join("node.crt") },
                ledger: directory.join("ledger.jsonl"),
                fsync,
                log: directory.join("replica.log"),
                parent_pid: Some(std::process::id()),
                epoch_unix_nanos,
                byzantine: None,
                planted_bug: config.planted_bug,
            };
            let path = directory.join("config.toml");
            write(&path, &node.to_toml())?;
            configs.push(path);
        }
        let client_addresses = routes.clients;
        let twins = BTreeMap::new();
        Ok(Setup { ca, keys, addresses, client_addresses, configs, secrets, twins })
    }

    /// Declares the replicas of `twins` Byzantine in their configuration (their hook may then
    /// be switched on), and writes a twin's configuration beside each: the same identity, keys
    /// and cluster, its own certificate (its key kept in memory), store and ledger (under
    /// `r<i>/twin/`), listening on
    /// its address in `twins` and dialing the relay's twin links (`network`; the replicas
    /// themselves without the relay).
    ///
    /// # Errors
    ///
    /// When a port, certificate or file cannot be made.
    pub fn write_twins(
        &mut self,
        run_dir: &Path,
        twins: &BTreeMap<ReplicaId, SocketAddr>,
        seed: u64,
        network: Option<&Network>,
    ) -> anyhow::Result<()> {
        for (replica, &address) in twins {
            let path = &self.configs[replica.index()];
            let mut node = NodeConfig::load(path)?;
            // A planted bug is the system under test's, never the adversary's.
            node.planted_bug = None;
            // Every declared Byzantine replica is an accomplice of the others: one adversary.
            let colluders = twins.keys().filter(|other| *other != replica).map(|r| r.0).collect();
            node.byzantine = Some(ByzantineConfig {
                seed: history::seeds::byzantine(seed, replica.0),
                colluders,
            });
            write(path, &node.to_toml())?;
            let directory = path.with_file_name("twin");
            std::fs::create_dir_all(&directory)
                .with_context(|| format!("creating {}", directory.display()))?;
            let cert =
                self.ca.issue(Identity::Replica(*replica)).context("issuing a twin certificate")?;
            write(&directory.join("node.crt"), &cert.cert_pem)?;
            let secrets = SecretMessage {
                tls_key_pem: cert.key_pem.clone(),
                replica: self.keys.replicas[replica.index()].clone(),
            };
            let peers = network.and_then(|network| network.twin_peer_addresses(*replica));
            let twin = NodeConfig {
                listen: address,
                peers: peers.unwrap_or_else(|| node.peers.clone()),
                tls: TlsFiles { ca: run_dir.join("ca.crt"), cert: directory.join("node.crt") },
                ledger: directory.join("ledger.jsonl"),
                log: directory.join("replica.log"),
                byzantine: None,
                ..node
            };
            let config = directory.join("config.toml");
            write(&config, &twin.to_toml())?;
            self.twins.insert(*replica, NodeStart { config, secrets });
        }
        Ok(())
    }

    /// Starts the replica processes (`program replica`), each handed its secret message, with
    /// every twin registered (not started). Call it from the thread that lives as long as the
    /// run: see [`crate::cluster`] on PR_SET_PDEATHSIG.
    ///
    /// # Errors
    ///
    /// When a process cannot be started or given its secrets.
    pub fn spawn_cluster(&self, program: &Path) -> anyhow::Result<Cluster> {
        let nodes = self
            .configs
            .iter()
            .zip(&self.secrets)
            .map(|(config, secrets)| NodeStart { config: config.clone(), secrets: secrets.clone() })
            .collect();
        let mut cluster = Cluster::spawn(program, nodes, self.addresses.clone())?;
        for (replica, twin) in &self.twins {
            cluster.set_twin(replica.index(), twin.clone());
        }
        Ok(cluster)
    }
}

/// How nodes reach the replicas: directly, or through the relay.
#[derive(Debug, Clone)]
pub struct Routes {
    /// Replica i's `NodeConfig::peers`, at position i.
    pub peers: Vec<Vec<SocketAddr>>,
    /// The addresses clients dial, replica by replica.
    pub clients: Vec<SocketAddr>,
}

impl Routes {
    /// Everyone dials the replicas' own `addresses`.
    pub fn direct(addresses: &[SocketAddr]) -> Routes {
        Routes { peers: vec![addresses.to_vec(); addresses.len()], clients: addresses.to_vec() }
    }
}

/// What the workload phase produced.
struct DriveOutcome {
    ready: Duration,
    interrupted: bool,
    history_error: Option<String>,
    /// What the nemesis did (`None` without faults).
    faults: Option<FaultReport>,
    /// What the Byzantine clients sent and what the replicas refused (`None` without them).
    byzantine_clients: Option<serde_json::Value>,
}

/// The workload phase: waits for the cluster, connects and starts the clients, runs them and
/// the nemesis until the time limit (or Ctrl-C), drains the clients, and reads the replicas'
/// statuses.
async fn drive(
    prepared: &Prepared,
    started: &mut Started,
    mut interrupt: watch::Receiver<bool>,
) -> anyhow::Result<DriveOutcome> {
    let Prepared { options, config, plan, run_dir, start, .. } = prepared;
    announce(plan);
    let controller = started
        .setup
        .ca
        .issue(Identity::Controller)
        .context("issuing the controller certificate")?;
    let controller_tls = controller.tls(&started.setup.ca);
    let ready = tokio::select! {
        ready = started.cluster.wait_ready(
            &started.controller_endpoint, &controller_tls, READY_TIMEOUT
        ) => ready?,
        _ = interrupt.wait_for(|interrupted| *interrupted) => {
            anyhow::bail!("interrupted during startup")
        }
    };
    eprintln!("ordeal: cluster of {} ready in {} ms", config.replica_count, ready.as_millis());

    let recorder = Arc::new(
        Recorder::create(&run_dir.join("history.jsonl"), *start)
            .context("creating history.jsonl")?,
    );
    let workers = Workers::start(CLIENT_WORKERS).context("starting the client workers")?;
    let mut clients = Clients::connect(&started.setup, &workers, &mut interrupt).await?;
    let (stop, stopped) = watch::channel(false);
    let handles = clients.spawn(prepared, &started.setup, &workers, &recorder, &stopped);
    let live = Arc::new(faults::Live::default());
    let progress = progress_bar(options, recorder.clone(), live.clone());
    // The history reaches the disk as the run goes, not only at its end.
    let flusher = {
        let recorder = recorder.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(HISTORY_FLUSH_INTERVAL).await;
                let _ = recorder.flush();
            }
        })
    };
    let (faults, interrupted) =
        load_and_nemesis(prepared, started, &controller_tls, &recorder, &live, interrupt).await;
    let _ = stop.send(true);
    let junk =
        drain(handles, Duration::from_secs_f64(options.op_timeout) + CLIENT_DRAIN_GRACE).await;
    if let Some(progress) = progress {
        progress.finish_and_clear();
    }
    flusher.abort();
    let history_error = recorder.flush().err().map(|error| error.to_string());
    let statuses = started.cluster.statuses().await;
    write_json(&run_dir.join("replica-status.json"), &statuses)?;
    let byzantine_clients = (config.client_count > options.concurrency)
        .then(|| byzantine_clients(&statuses, config.client_count - options.concurrency, junk));
    clients.close();
    drop(workers);
    Ok(DriveOutcome { ready, interrupted, history_error, faults, byzantine_clients })
}

/// Prints what the nemesis will do.
fn announce(plan: &Plan) {
    if let Some((schedule, kinds)) = &plan.schedule {
        let kinds: Vec<&str> = kinds.iter().map(|kind| kind.name()).collect();
        eprintln!(
            "ordeal: nemesis {}, {} faults, final heal at {:.1} s, Byzantine replicas {:?}",
            kinds.join("+"),
            schedule.faults.len(),
            schedule.heal.as_secs_f64(),
            plan.byzantine.iter().map(|replica| replica.0).collect::<Vec<_>>()
        );
    }
}

/// The clients' links, connected before the clock starts.
pub(crate) struct Clients {
    pub(crate) transports: Vec<ClientTransport>,
    endpoints: Vec<quinn::Endpoint>,
}

impl Clients {
    /// Connects every client (the correct and the Byzantine ones) to every replica. The clock
    /// starts when every client can reach every replica, so connection setup is not measured as
    /// operation latency.
    pub(crate) async fn connect(
        setup: &Setup,
        workers: &Workers,
        interrupt: &mut watch::Receiver<bool>,
    ) -> anyhow::Result<Clients> {
        let local: SocketAddr = "127.0.0.1:0".parse().expect("a socket address");
        let mut transports = Vec::new();
        let mut endpoints = Vec::new();
        for index in 0..setup.keys.clients.len() {
            let cert = setup
                .ca
                .issue(Identity::Client(replica::core::ClientId(index as u32)))
                .context("issuing a client certificate")?;
            // Clients share endpoints in blocks, and a block lives on one worker: one socket
            // and one driver task for all would serialize every client's packets; one each
            // would use a descriptor per client.
            let block = index / CLIENTS_PER_ENDPOINT;
            if index % CLIENTS_PER_ENDPOINT == 0 {
                let bound = workers.enter(block, || endpoint::bind(local, None, None));
                endpoints.push(bound.context("binding a client endpoint")?);
            }
            let client_endpoint = &endpoints[block];
            let tls = cert.tls(&setup.ca);
            let transport = workers
                .enter(block, || {
                    ClientTransport::connect(client_endpoint, &tls, &setup.client_addresses)
                })
                .context("starting a client's links")?;
            transports.push(transport);
        }
        let connecting = Instant::now();
        while !transports.iter().all(ClientTransport::is_connected) {
            anyhow::ensure!(
                connecting.elapsed() < READY_TIMEOUT,
                "clients could not connect within {READY_TIMEOUT:?}"
            );
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
                _ = interrupt.wait_for(|interrupted| *interrupted) => {
                    anyhow::bail!("interrupted during startup")
                }
            }
        }
        eprintln!(
            "ordeal: {} clients connected in {} ms",
            transports.len(),
            connecting.elapsed().as_millis()
        );
        Ok(Clients { transports, endpoints })
    }

    /// Starts one client process per link, each on its block's worker; they run until
    /// `stopped` turns true.
    fn spawn(
        &mut self,
        prepared: &Prepared,
        setup: &Setup,
        workers: &Workers,
        recorder: &Arc<Recorder>,
        stopped: &watch::Receiver<bool>,
    ) -> Vec<tokio::task::JoinHandle<process::ProcessReport>> {
        let Prepared { options, config, seed, .. } = prepared;
        let workload = Workload::from(options.workload);
        let op_interval =
            options.rate.map(|rate| Duration::from_secs_f64(f64::from(options.concurrency) / rate));
        let client_count = config.client_count;
        let links = setup.keys.clients.iter().zip(self.transports.drain(..)).enumerate();
        links
            .map(|(index, (secrets, transport))| {
                let client = Client::new(config.clone(), secrets.clone());
                let generator = workload.generator(*seed, options.keys, index as u32, client_count);
                let process_options = ProcessOptions {
                    op_timeout: Duration::from_secs_f64(options.op_timeout),
                    op_interval,
                    first_process: index as u64,
                    process_stride: u64::from(client_count),
                    // Clients past the correct ones are Byzantine.
                    byzantine: index as u32 >= options.concurrency,
                    client_count,
                };
                workers.spawn(
                    index / CLIENTS_PER_ENDPOINT,
                    process::run(
                        client,
                        transport,
                        generator,
                        recorder.clone(),
                        process_options,
                        stopped.clone(),
                    ),
                )
            })
            .collect()
    }

    pub(crate) fn close(&self) {
        for client_endpoint in &self.endpoints {
            client_endpoint.close(0u32.into(), b"done");
        }
    }
}

/// Runs until the time limit (or Ctrl-C) with the nemesis executing its schedule. The nemesis
/// runs in this future (not a spawned task): a restart spawns a replica, which must happen on
/// this thread (the `cluster` module). It heals at its schedule's end, or at once when the time
/// limit or Ctrl-C comes first. Returns what it did and whether Ctrl-C ended the run.
async fn load_and_nemesis(
    prepared: &Prepared,
    started: &mut Started,
    controller_tls: &replica::net::tls::TlsMaterial,
    recorder: &Recorder,
    live: &faults::Live,
    mut interrupt: watch::Receiver<bool>,
) -> (Option<FaultReport>, bool) {
    let Prepared { options, plan, seed, .. } = prepared;
    let time_limit = Duration::from_secs_f64(options.time_limit);
    let workload_start = Instant::now();
    let (halt, halted) = watch::channel(false);
    let nemesis = async {
        let (schedule, kinds) = plan.schedule.as_ref()?;
        let context = FaultContext {
            cluster: &mut started.cluster,
            network: started.handle.as_ref(),
            recorder,
            endpoint: &started.controller_endpoint,
            controller: controller_tls,
            start: workload_start,
            byzantine: &plan.byzantine,
            beyond_budget: options.beyond_budget,
            twin_addresses: &started.twin_addresses,
            live,
        };
        Some(faults::execute(schedule, kinds, *seed, context, halted).await)
    };
    let limit = async {
        let interrupted = tokio::select! {
            _ = tokio::time::sleep(time_limit) => false,
            _ = interrupt.wait_for(|interrupted| *interrupted) => true,
        };
        let _ = halt.send(true);
        interrupted
    };
    tokio::join!(nemesis, limit)
}

/// Waits up to `drain` for the client processes to finish (operations still in flight then
/// stay without completion: the checker counts them as info); returns what the Byzantine ones
/// sent, by kind.
async fn drain(
    mut handles: Vec<tokio::task::JoinHandle<process::ProcessReport>>,
    drain: Duration,
) -> BTreeMap<&'static str, u64> {
    let mut junk: BTreeMap<&'static str, u64> = BTreeMap::new();
    let drained = tokio::time::timeout(drain, async {
        for handle in &mut handles {
            match handle.await {
                Ok(report) => {
                    for (kind, count) in report.junk {
                        *junk.entry(kind).or_default() += count;
                    }
                }
                Err(error) => eprintln!("ordeal: a client process failed: {error}"),
            }
        }
    })
    .await;
    if drained.is_err() {
        for handle in &handles {
            handle.abort();
        }
    }
    junk
}

/// What the Byzantine clients sent, and what the replicas counted against bad client input,
/// over all replicas.
fn byzantine_clients(
    statuses: &[Option<replica::net::control::StatusReport>],
    count: u32,
    sent: BTreeMap<&'static str, u64>,
) -> serde_json::Value {
    const CLIENT_INPUT: [&str; 6] = [
        "net.frames_malformed",
        "net.frames_too_large",
        "rejected.client_mismatch",
        "rejected.invalid_client_signature",
        "rejected.stale_request",
        "rejected.malformed_request",
    ];
    let mut refused: BTreeMap<String, u64> = BTreeMap::new();
    for status in statuses.iter().flatten() {
        for (name, count) in &status.counters {
            if CLIENT_INPUT.contains(&name.as_str()) && *count > 0 {
                *refused.entry(name.clone()).or_default() += count;
            }
        }
    }
    serde_json::json!({"count": count, "sent": sent, "refused": refused})
}

/// The progress line on a terminal: elapsed time, ok/fail/info so far, the highest view a
/// replica reported and the faults under way.
fn progress_bar(
    options: &TestOptions,
    recorder: Arc<Recorder>,
    live: Arc<faults::Live>,
) -> Option<indicatif::ProgressBar> {
    if options.no_progress || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {elapsed_precise} {msg}")
            .expect("a valid progress template"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    let shown = bar.clone();
    tokio::spawn(async move {
        while !shown.is_finished() {
            let counts = recorder.counts();
            let nemesis = live.describe();
            let separator = if nemesis.is_empty() { "" } else { "  " };
            shown.set_message(format!(
                "ok {}  fail {}  info {}{separator}{nemesis}",
                counts.ok, counts.fail, counts.info
            ));
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Some(bar)
}

fn write(path: &Path, contents: &str) -> anyhow::Result<()> {
    std::fs::write(path, contents).with_context(|| format!("writing {}", path.display()))
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value).context("serializing JSON")?;
    write(path, &text)
}

/// The keys of a run of `config` with `seed`: they follow from the seed, like everything else of
/// a run (a simulated run of the same seed has the same keys).
///
/// # Errors
///
/// When the dealer refuses the configuration's parameters.
pub fn cluster_keys(config: &Config, seed: u64) -> anyhow::Result<ClusterKeys> {
    cluster_keys_with(config, seed, Scheme::Real)
}

/// [`cluster_keys`] with the replicas' and clients' signing keys in `scheme` (the simulator's
/// cheap signatures; the public key bytes are the same).
///
/// # Errors
///
/// When the dealer refuses the configuration's parameters.
pub fn cluster_keys_with(
    config: &Config,
    seed: u64,
    scheme: Scheme,
) -> anyhow::Result<ClusterKeys> {
    let mut rng = ChaCha20Rng::seed_from_u64(history::seeds::keys(seed));
    let n = u32::from(config.replica_count);
    ClusterKeys::generate_with(&mut rng, n, config.client_count, config.nf() as u32, scheme)
        .context("generating the cluster's keys")
}

/// The per-replica ledger files of a run directory, by replica id.
pub fn ledger_paths(run_dir: &Path, replica_count: u8) -> BTreeMap<u32, PathBuf> {
    (0..replica_count)
        .map(|index| {
            (
                u32::from(index),
                run_dir.join("replicas").join(format!("r{index}")).join("ledger.jsonl"),
            )
        })
        .collect()
}
