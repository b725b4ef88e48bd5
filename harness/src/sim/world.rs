//! The simulated world: n replicas (the real protocol cores through the shared driver, with
//! their Byzantine hooks and an in-memory disk), client workers, and a network built on the
//! relay's model, all on one virtual clock and one seed.
//!
//! # Model
//!
//! - **Replicas** run [`replica::node::Node`]s driven by [`replica::node::drive`], as the
//!   replica process does: writes reach the disk before anything the core sends leaves. A
//!   killed replica loses everything but its disk and its ledger; a restart recovers from them
//!   ([`Replica::recover`]). A paused replica's packets wait in its inbox (bounded, as a
//!   socket's buffer) and its timers wait too; it handles them in order when resumed. Each life
//!   of a replica has a number, and a packet from or to an earlier life is lost (its connection
//!   was reset).
//! - **Twins**: a twin is a second, correct node with a declared Byzantine replica's identity
//!   and keys and an empty disk; the replicas of its group reach it instead of the original,
//!   and it reaches only them (its link faults are the original's), as the real relay routes.
//! - **Clients** are [`Worker`]s (one identity each, one operation at a time, `info` after the
//!   operation timeout). They stop invoking at the time limit and finish what is under way.
//! - **The network**: every packet first passes the relay's model ([`Relay`]) with the link
//!   faults the nemesis set (blocked, lost, delayed, duplicated, held back), then takes a base
//!   latency drawn uniformly from the configured range. Clients are one node of the network, as
//!   in the real relay.
//! - **Clocks**: each replica (and its twin) reads its own clock, drawn from the seed: an offset
//!   in [0, 1 s) and a rate in [1 − d, 1 + d] (`--clock-drift`), so timers of different
//!   replicas fire at different rates; its deadlines are converted back to the world's time.
//! - **Order**: each event has a time and a sequence number, so ties are broken by the order
//!   in which events were scheduled; nothing iterates a hash map. The same options and seed
//!   give the same history, byte for byte.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use history::{LedgerEvent, Op, seeds};
use nemesis::executor::{CLIENT_DISSENT, Effect, Observe, Status};
use nemesis::relay::{Handled, Relay};
use nemesis::{NetworkFaults, Node as NetNode};
use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha8Rng;
use replica::byzantine::{ByzantineConfig, Hook};
use replica::core::{
    AuthenticatedInform, ClientId, Config, Durable, Envelope, Replica, ReplicaId, SignedRequest,
    Time, Transmit, Write,
};
use replica::crypto::dealer::{ClusterKeys, PublicKeys};
use replica::flight::{Direction, FlightRecorder};
use replica::net::control::StatusReport;
use replica::node::{Io, Node};
use workloads::generator::Workload;
use workloads::recorder::nemesis_op;
use workloads::worker::{Finished, Worker};

/// The most packets a paused replica's inbox holds (later ones are lost, as on a full socket).
const INBOX_MAX: usize = 8192;

/// What the world is made of.
#[derive(Debug, Clone)]
pub struct WorldOptions {
    /// The cluster's configuration (its `planted_bug` runs in the honest replicas and clients).
    pub config: Config,
    /// Every key of the cluster.
    pub keys: ClusterKeys,
    /// The replicas declared Byzantine: they get a hook and run without the planted bug.
    pub byzantine: Vec<ReplicaId>,
    /// The seed of the network's draws and of the Byzantine hooks.
    pub seed: u64,
    /// The workload and its keys.
    pub workload: Workload,
    /// Registers or accounts.
    pub key_count: u32,
    /// How long an operation may take before it is `info`.
    pub op_timeout: Duration,
    /// The least time between two invocations of one client, if capped.
    pub op_interval: Option<Duration>,
    /// The base one-way latency range.
    pub latency: (Duration, Duration),
    /// Each replica's clock runs at a rate drawn in [1 − d, 1 + d] for this `d` (a fraction
    /// below 0.5), from an offset drawn in [0, 1 s).
    pub clock_drift: f64,
}

/// An end of a simulated packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    Replica(ReplicaId),
    /// A replica's twin.
    Twin(ReplicaId),
    Client(ClientId),
}

#[derive(Debug, Clone)]
enum Payload {
    Envelope(Envelope),
    Request(SignedRequest),
    Inform(AuthenticatedInform),
}

#[derive(Debug, Clone)]
struct Packet {
    from: Endpoint,
    to: Endpoint,
    /// The lives of the sender and the receiver (0 for a client) when it was sent.
    lives: (u32, u32),
    payload: Payload,
}

/// A packet on its way, ordered by arrival time, then by when it was scheduled.
#[derive(Debug)]
struct Scheduled {
    at: Time,
    order: u64,
    packet: Packet,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Scheduled) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Scheduled) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    fn cmp(&self, other: &Scheduled) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Whose timer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Replica(ReplicaId),
    Twin(ReplicaId),
    Client(ClientId),
}

/// Whether a replica runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Up,
    Paused,
    Killed,
}

/// A replica's clock: `local = offset + global · (1 + ppm / 10⁶)`, monotonic (|ppm| < 10⁶).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Clock {
    offset: u64,
    ppm: i64,
}

impl Clock {
    /// The local time at global time `global`.
    fn local(self, global: Time) -> Time {
        let global = i128::from(global.as_nanos());
        let rate = 1_000_000 + i128::from(self.ppm);
        let local = i128::from(self.offset) + (global * rate).div_euclid(1_000_000);
        Time::from_nanos(local.clamp(0, i128::from(u64::MAX)) as u64)
    }

    /// The first global time whose local time is at least `local`.
    fn global(self, local: Time) -> Time {
        let since = i128::from(local.as_nanos()) - i128::from(self.offset);
        if since <= 0 {
            return Time::ZERO;
        }
        let rate = 1_000_000 + i128::from(self.ppm);
        let global = (since * 1_000_000 + rate - 1) / rate;
        Time::from_nanos(global.clamp(0, i128::from(u64::MAX)) as u64)
    }
}

/// One simulated replica.
struct SimReplica {
    node: Node,
    disk: Durable,
    events: Vec<LedgerEvent>,
    life: Life,
    /// Which life this is (each restart starts a new one).
    generation: u32,
    /// What arrived while paused.
    inbox: VecDeque<Packet>,
    /// Counters of its earlier lives.
    banked: BTreeMap<String, u64>,
    /// The configuration it is restarted with.
    config: Config,
    /// Its clock (its twin's too).
    clock: Clock,
    /// The last messages it sent and received, on the world's time, over all its lives.
    flight: FlightRecorder,
}

/// A twin: a second node with a replica's identity and keys, its own empty disk and ledger.
struct SimTwin {
    node: Node,
    disk: Durable,
    events: Vec<LedgerEvent>,
    /// The replicas that reach the twin instead of the original, and the only ones it reaches.
    group: Vec<ReplicaId>,
    /// Which twin of the replica this is (a packet to an earlier one is lost).
    generation: u32,
}

/// A replica's IO in the simulator.
struct SimIo<'a> {
    disk: &'a mut Durable,
    events: &'a mut Vec<LedgerEvent>,
    outbox: Vec<Transmit>,
    /// The world's time: ledger events are stamped with it (the records' clock), whatever the
    /// replica's own clock reads (the protocol's clock).
    recorded_at: Time,
}

impl Io for SimIo<'_> {
    type Error = std::convert::Infallible;

    fn persist(&mut self, writes: &[Write]) -> Result<(), Self::Error> {
        self.disk.apply(writes.iter().cloned());
        Ok(())
    }

    fn record(&mut self, events: &[LedgerEvent]) -> Result<(), Self::Error> {
        let time = self.recorded_at.as_nanos();
        self.events.extend(events.iter().cloned().map(|mut event| {
            event.set_time(time);
            event
        }));
        Ok(())
    }

    fn send(&mut self, transmit: Transmit) {
        self.outbox.push(transmit);
    }
}

/// Counts of what the world did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct WorldStats {
    /// Events handled (packets delivered, timers fired).
    pub steps: u64,
    /// Packets delivered to a running node.
    pub delivered: u64,
    /// Packets the relay's model dropped.
    pub dropped: u64,
    /// Packets lost because their sender or receiver was killed or restarted.
    pub lost: u64,
    /// Packets delivered to twins.
    pub twin_delivered: u64,
}

/// The simulated cluster, its clients and its network.
pub struct World {
    time: Time,
    keys: Arc<PublicKeys>,
    secrets: ClusterKeys,
    replicas: Vec<SimReplica>,
    twins: BTreeMap<ReplicaId, SimTwin>,
    /// Twins started so far, per replica (their generations).
    twin_generations: BTreeMap<ReplicaId, u32>,
    workers: Vec<Worker>,
    /// Whether clients start new operations.
    issuing: bool,
    faults: NetworkFaults,
    relay: Relay<Packet>,
    network: BinaryHeap<Reverse<Scheduled>>,
    timers: BinaryHeap<Reverse<(Time, Timer)>>,
    armed: BTreeMap<Timer, Time>,
    order: u64,
    rng: ChaCha8Rng,
    latency: (Duration, Duration),
    history: Vec<Op>,
    dissent: BTreeMap<u32, u64>,
    stats: WorldStats,
}

impl World {
    /// Builds the world and starts every client's first operation at time zero.
    ///
    /// # Errors
    ///
    /// When the keys do not match the configuration.
    pub fn new(options: WorldOptions) -> anyhow::Result<World> {
        let public = Arc::new(options.keys.public.clone());
        let n = options.config.replica_count;
        let mut replicas = Vec::with_capacity(usize::from(n));
        let mut clock_rng = ChaCha8Rng::seed_from_u64(seeds::sim_clocks(options.seed));
        let drift_ppm = (options.clock_drift.clamp(0.0, 0.49) * 1e6) as i64;
        for index in 0..n {
            let clock = Clock {
                offset: clock_rng.random_range(0..1_000_000_000),
                ppm: clock_rng.random_range(-drift_ppm..=drift_ppm),
            };
            let id = ReplicaId(index);
            let byzantine = options.byzantine.contains(&id);
            let mut config = options.config.clone();
            if byzantine {
                // The planted bug is the system under test's, not the adversary's.
                config.planted_bug = None;
            }
            let secrets = options.keys.replicas[usize::from(index)].clone();
            let core = Replica::new(config.clone(), secrets.clone(), public.clone())?;
            let hook = byzantine.then(|| {
                let colluders =
                    options.byzantine.iter().map(|r| r.0).filter(|r| *r != index).collect();
                let seed = seeds::byzantine(options.seed, index);
                Hook::new(
                    config.clone(),
                    secrets,
                    public.clone(),
                    ByzantineConfig { seed, colluders },
                )
            });
            replicas.push(SimReplica {
                node: Node::new(core, hook),
                disk: Durable::default(),
                events: Vec::new(),
                life: Life::Up,
                generation: 0,
                inbox: VecDeque::new(),
                banked: BTreeMap::new(),
                config,
                clock,
                flight: FlightRecorder::new(None),
            });
        }
        let client_count = options.config.client_count;
        let workers = options
            .keys
            .clients
            .iter()
            .enumerate()
            .map(|(index, secrets)| {
                let client = replica::core::Client::new(options.config.clone(), secrets.clone());
                let generator = options.workload.generator(
                    options.seed,
                    options.key_count,
                    index as u32,
                    client_count,
                );
                Worker::new(
                    client,
                    generator,
                    index as u64,
                    u64::from(client_count),
                    options.op_timeout,
                    options.op_interval,
                )
            })
            .collect();
        let mut world = World {
            time: Time::ZERO,
            keys: public,
            secrets: options.keys,
            replicas,
            twins: BTreeMap::new(),
            twin_generations: BTreeMap::new(),
            workers,
            issuing: true,
            faults: NetworkFaults::healthy(),
            relay: Relay::new(seeds::sim_relay(options.seed)),
            network: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            armed: BTreeMap::new(),
            order: 0,
            rng: ChaCha8Rng::seed_from_u64(seeds::sim_latency(options.seed)),
            latency: (options.latency.0, options.latency.1.max(options.latency.0)),
            history: Vec::new(),
            dissent: BTreeMap::new(),
            stats: WorldStats::default(),
        };
        for index in 0..n {
            world.arm_replica(ReplicaId(index));
        }
        for index in 0..world.workers.len() {
            world.after_client(ClientId(index as u32), None);
        }
        Ok(world)
    }

    /// The virtual time.
    pub fn time(&self) -> Time {
        self.time
    }

    /// The history so far, in recording order, indexed and stamped with virtual time.
    pub fn history(&self) -> &[Op] {
        &self.history
    }

    /// Each replica's ledger events.
    pub fn ledgers(&self) -> impl Iterator<Item = (ReplicaId, &[LedgerEvent])> {
        self.replicas.iter().enumerate().map(|(i, r)| (ReplicaId(i as u8), r.events.as_slice()))
    }

    /// Each replica's flight recorder: the last messages it sent and received.
    pub fn flights(&self) -> impl Iterator<Item = (ReplicaId, &FlightRecorder)> {
        self.replicas.iter().enumerate().map(|(i, r)| (ReplicaId(i as u8), &r.flight))
    }

    /// Every replica's status as a replica process reports it over its control endpoint
    /// (`None` while killed; a paused one still answers here), its counters summed over its
    /// lives: what a real run writes to `replica-status.json` at its end.
    pub fn statuses(&self) -> Vec<Option<StatusReport>> {
        let n = self.replicas.len() as u8;
        self.replicas
            .iter()
            .map(|sim| {
                if sim.life == Life::Killed {
                    return None;
                }
                let status = sim.node.core().status();
                let mut counters = sim.node.counter_map();
                for (name, value) in &sim.banked {
                    *counters.entry(name.clone()).or_default() += value;
                }
                Some(StatusReport {
                    id: status.id.0,
                    view: status.view.0,
                    last_executed: status.last_executed.0,
                    state_digest: status.state_digest,
                    ledger_head: status.ledger_head,
                    ready: true,
                    peers_connected: (0..n).filter(|peer| *peer != status.id.0).collect(),
                    counters,
                })
            })
            .collect()
    }

    /// The cluster's public keys.
    pub fn public_keys(&self) -> &PublicKeys {
        &self.keys
    }

    /// What the world did.
    pub fn stats(&self) -> WorldStats {
        self.stats
    }

    /// Stops clients from invoking new operations (those under way finish or time out).
    pub fn stop_issuing(&mut self) {
        self.issuing = false;
    }

    /// Whether no client has an operation under way.
    pub fn clients_idle(&self) -> bool {
        self.workers.iter().all(|worker| !worker.busy())
    }

    /// The time of the next event, if any.
    pub fn next_event(&self) -> Option<Time> {
        let packet = self.network.peek().map(|Reverse(scheduled)| scheduled.at);
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        let relay = self.relay.next_deadline().map(|at| Time::from_nanos(at.as_nanos() as u64));
        packet.into_iter().chain(timer).chain(relay).min()
    }

    /// Moves the clock forward to `at` (never back).
    pub fn advance_to(&mut self, at: Time) {
        self.time = self.time.max(at);
    }

    /// Handles the next event; false when nothing is left.
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_event() else { return false };
        self.stats.steps += 1;
        self.time = self.time.max(at);
        let now = Duration::from_nanos(self.time.as_nanos());
        if let Some((_, packet)) = self.relay.poll_due(now) {
            self.schedule(packet);
            return true;
        }
        let packet_due = self.network.peek().is_some_and(|Reverse(scheduled)| scheduled.at <= at);
        if packet_due {
            let Reverse(scheduled) = self.network.pop().expect("peeked");
            self.deliver(scheduled.packet);
            return true;
        }
        if let Some(Reverse((at, timer))) = self.timers.pop()
            && self.armed.get(&timer) == Some(&at)
        {
            self.armed.remove(&timer);
            match timer {
                Timer::Replica(id) => self.fire_replica(id),
                Timer::Twin(id) => {
                    let now = self.replicas[id.index()].clock.local(self.time);
                    if let Some(twin) = self.twins.get_mut(&id) {
                        twin.node.handle_timeout(now);
                        self.after_twin_input(id);
                    }
                }
                Timer::Client(id) => self.fire_client(id),
            }
        }
        true
    }

    /// Carries out the nemesis's effects now.
    pub fn apply(&mut self, effects: Vec<Effect>) {
        for effect in effects {
            match effect {
                Effect::Kill(id) => self.kill(id),
                Effect::Restart(id) => self.restart(id),
                Effect::Pause(id) => {
                    if self.replicas[id.index()].life == Life::Up {
                        self.replicas[id.index()].life = Life::Paused;
                    }
                }
                Effect::Resume(id) => self.resume(id),
                Effect::StartTwin { replica, group } => self.start_twin(replica, group),
                Effect::StopTwin(replica) => {
                    self.twins.remove(&replica);
                    self.armed.remove(&Timer::Twin(replica));
                }
                Effect::Links(faults) => self.faults = faults,
                Effect::Behave { replica, behaviours } => {
                    let now = self.replicas[replica.index()].clock.local(self.time);
                    let node = &mut self.replicas[replica.index()].node;
                    if node.behave(now, behaviours) {
                        self.arm_replica(replica);
                    }
                }
                Effect::Record { kind, f, value } => self.record(nemesis_op(kind, &f, value)),
            }
        }
    }

    fn record(&mut self, mut op: Op) {
        op.index = Some(self.history.len() as u64);
        op.time = self.time.as_nanos();
        self.history.push(op);
    }

    fn start_twin(&mut self, id: ReplicaId, group: Vec<ReplicaId>) {
        let secrets = self.secrets.replicas[id.index()].clone();
        let config = self.replicas[id.index()].config.clone();
        let core = Replica::new(config, secrets, self.keys.clone())
            .expect("a twin has its replica's configuration and keys");
        let generation = self.twin_generations.entry(id).or_default();
        *generation += 1;
        let generation = *generation;
        let twin = SimTwin {
            node: Node::new(core, None),
            disk: Durable::default(),
            events: Vec::new(),
            group,
            generation,
        };
        self.twins.insert(id, twin);
        self.after_twin_input(id);
    }

    fn kill(&mut self, id: ReplicaId) {
        let replica = &mut self.replicas[id.index()];
        if replica.life == Life::Killed {
            return;
        }
        for (name, value) in replica.node.counter_map() {
            *replica.banked.entry(name).or_default() += value;
        }
        replica.life = Life::Killed;
        replica.inbox.clear();
        self.armed.remove(&Timer::Replica(id));
    }

    fn restart(&mut self, id: ReplicaId) {
        let now = self.replicas[id.index()].clock.local(self.time);
        let secrets = self.secrets.replicas[id.index()].clone();
        let replica = &mut self.replicas[id.index()];
        if replica.life != Life::Killed {
            return;
        }
        let recovered = Replica::recover(
            replica.config.clone(),
            secrets,
            self.keys.clone(),
            replica.disk.clone(),
            &replica.events,
            now,
        )
        .expect("a replica that started once recovers with the same keys");
        replica.node.replace_core(recovered);
        replica.life = Life::Up;
        replica.generation += 1;
        self.after_replica_input(id);
    }

    fn resume(&mut self, id: ReplicaId) {
        if self.replicas[id.index()].life != Life::Paused {
            return;
        }
        self.replicas[id.index()].life = Life::Up;
        let inbox = std::mem::take(&mut self.replicas[id.index()].inbox);
        for packet in inbox {
            self.deliver(packet);
        }
        self.fire_replica(id);
    }

    fn generation(&self, endpoint: Endpoint) -> u32 {
        match endpoint {
            Endpoint::Replica(id) => self.replicas[id.index()].generation,
            Endpoint::Twin(id) => self.twins.get(&id).map_or(0, |twin| twin.generation),
            Endpoint::Client(_) => 0,
        }
    }

    /// The network node of an endpoint: a twin shares its replica's links and their faults.
    fn net_node(endpoint: Endpoint) -> NetNode {
        match endpoint {
            Endpoint::Replica(id) | Endpoint::Twin(id) => NetNode::Replica(id),
            Endpoint::Client(_) => NetNode::Clients,
        }
    }

    /// Hands a packet to the network: the relay's model first, then the base latency.
    fn send(&mut self, from: Endpoint, to: Endpoint, payload: Payload) {
        // A twin's group reaches the twin instead of the original.
        let to = match (from, to) {
            (Endpoint::Replica(sender), Endpoint::Replica(receiver))
                if self.twins.get(&receiver).is_some_and(|twin| twin.group.contains(&sender)) =>
            {
                Endpoint::Twin(receiver)
            }
            _ => to,
        };
        let lives = (self.generation(from), self.generation(to));
        let packet = Packet { from, to, lives, payload };
        let n = self.replicas.len();
        let index = |endpoint: Endpoint| match endpoint {
            Endpoint::Replica(id) | Endpoint::Twin(id) => id.index(),
            Endpoint::Client(_) => n,
        };
        let link = index(from) * (n + 1) + index(to);
        let fault = self.faults.link(Self::net_node(from), Self::net_node(to));
        let bytes = match &packet.payload {
            Payload::Envelope(envelope) => envelope.payload.len(),
            Payload::Request(_) | Payload::Inform(_) => 256,
        };
        let now = Duration::from_nanos(self.time.as_nanos());
        match self.relay.handle(link, now, &fault, packet, bytes) {
            Handled::Forward(packet) => self.schedule(packet),
            Handled::Held => {}
            Handled::Dropped(_) => self.stats.dropped += 1,
        }
    }

    /// Puts a packet on the wire now: it arrives after the base latency.
    fn schedule(&mut self, packet: Packet) {
        let (min, max) = self.latency;
        let latency = if min == max {
            min
        } else {
            Duration::from_nanos(
                self.rng.random_range(min.as_nanos() as u64..=max.as_nanos() as u64),
            )
        };
        self.order += 1;
        let scheduled = Scheduled { at: self.time + latency, order: self.order, packet };
        self.network.push(Reverse(scheduled));
    }

    fn deliver(&mut self, packet: Packet) {
        if packet.lives != (self.generation(packet.from), self.generation(packet.to)) {
            self.stats.lost += 1;
            return;
        }
        let now = self.time;
        match packet.to {
            Endpoint::Replica(to) => {
                let replica = &mut self.replicas[to.index()];
                match replica.life {
                    Life::Killed => {
                        self.stats.lost += 1;
                        return;
                    }
                    Life::Paused => {
                        if replica.inbox.len() < INBOX_MAX {
                            replica.inbox.push_back(packet);
                        } else {
                            self.stats.lost += 1;
                        }
                        return;
                    }
                    Life::Up => {}
                }
                self.stats.delivered += 1;
                if let (Endpoint::Replica(from), Payload::Envelope(envelope)) =
                    (packet.from, &packet.payload)
                {
                    replica.flight.record(now, Direction::Received, from, envelope);
                }
                let now = replica.clock.local(now);
                let node = &mut replica.node;
                // Refusals are counted by the core; the world carries on.
                let _ = match (packet.from, packet.payload) {
                    (Endpoint::Replica(from), Payload::Envelope(envelope)) => {
                        node.handle_message(now, from, &envelope)
                    }
                    (Endpoint::Client(from), Payload::Request(request)) => {
                        node.handle_request(now, from, request)
                    }
                    _ => return,
                };
                self.after_replica_input(to);
            }
            Endpoint::Twin(to) => {
                let (Endpoint::Replica(from), Payload::Envelope(envelope)) =
                    (packet.from, &packet.payload)
                else {
                    return;
                };
                let now = self.replicas[to.index()].clock.local(now);
                let Some(twin) = self.twins.get_mut(&to) else {
                    self.stats.lost += 1;
                    return;
                };
                self.stats.delivered += 1;
                self.stats.twin_delivered += 1;
                let _ = twin.node.handle_message(now, from, envelope);
                self.after_twin_input(to);
            }
            Endpoint::Client(to) => {
                let (Endpoint::Replica(from), Payload::Inform(inform)) =
                    (packet.from, &packet.payload)
                else {
                    return;
                };
                self.stats.delivered += 1;
                let finished = self.workers[to.index()].handle_inform(now, from, inform);
                self.after_client(to, finished);
            }
        }
    }

    fn fire_replica(&mut self, id: ReplicaId) {
        let replica = &mut self.replicas[id.index()];
        let now = replica.clock.local(self.time);
        if replica.life != Life::Up {
            return;
        }
        replica.node.handle_timeout(now);
        self.after_replica_input(id);
    }

    fn fire_client(&mut self, id: ClientId) {
        let now = self.time;
        let finished = self.workers[id.index()].handle_timeout(now);
        self.after_client(id, finished);
    }

    /// Drives replica `id` after an input: disk, ledger, then its messages; re-arms its timer.
    fn after_replica_input(&mut self, id: ReplicaId) {
        let replica = &mut self.replicas[id.index()];
        let (clock, time) = (replica.clock, self.time);
        let (outbox, deadline) =
            drive_node(&mut replica.node, &mut replica.disk, &mut replica.events, clock, time);
        for transmit in outbox {
            let (to, payload) = match transmit {
                Transmit::Replica { to, envelope } => {
                    self.replicas[id.index()].flight.record(time, Direction::Sent, to, &envelope);
                    (Endpoint::Replica(to), Payload::Envelope(envelope))
                }
                Transmit::Client { to, inform } => (Endpoint::Client(to), Payload::Inform(inform)),
            };
            self.send(Endpoint::Replica(id), to, payload);
        }
        self.arm(Timer::Replica(id), deadline);
    }

    /// Drives replica `id`'s twin after an input: it reaches only its group's replicas.
    fn after_twin_input(&mut self, id: ReplicaId) {
        let (clock, time) = (self.replicas[id.index()].clock, self.time);
        let Some(twin) = self.twins.get_mut(&id) else { return };
        let (outbox, deadline) =
            drive_node(&mut twin.node, &mut twin.disk, &mut twin.events, clock, time);
        let group = twin.group.clone();
        for transmit in outbox {
            if let Transmit::Replica { to, envelope } = transmit
                && group.contains(&to)
            {
                let payload = Payload::Envelope(envelope);
                self.send(Endpoint::Twin(id), Endpoint::Replica(to), payload);
            }
        }
        self.arm(Timer::Twin(id), deadline);
    }

    fn arm_replica(&mut self, id: ReplicaId) {
        let replica = &self.replicas[id.index()];
        let deadline = replica.node.deadline().map(|local| replica.clock.global(local));
        self.arm(Timer::Replica(id), deadline);
    }

    /// Records what a client finished, starts its next operation when it may (while issuing),
    /// sends, and re-arms its timer.
    fn after_client(&mut self, id: ClientId, finished: Option<Finished>) {
        if let Some(finished) = finished {
            for replica in finished.dissent {
                *self.dissent.entry(u32::from(replica.0)).or_default() += 1;
            }
            self.record(finished.op);
        }
        let now = self.time;
        if self.issuing && self.workers[id.index()].next_start().is_some_and(|at| at <= now) {
            let op = self.workers[id.index()].invoke(now);
            self.record(op);
        }
        self.flush_client(id);
    }

    fn flush_client(&mut self, id: ClientId) {
        // Bounded: a client has at most one request to send per retransmission.
        while let Some(transmit) = self.workers[id.index()].poll_transmit() {
            let payload = Payload::Request(transmit.request);
            self.send(Endpoint::Client(id), Endpoint::Replica(transmit.to), payload);
        }
        let worker = &self.workers[id.index()];
        let start = worker.next_start().filter(|_| self.issuing);
        let deadline = worker.deadline().or(start);
        self.arm(Timer::Client(id), deadline);
    }

    fn arm(&mut self, timer: Timer, deadline: Option<Time>) {
        match deadline {
            Some(at) if self.armed.get(&timer) != Some(&at) => {
                self.armed.insert(timer, at);
                self.timers.push(Reverse((at, timer)));
            }
            Some(_) => {}
            None => {
                self.armed.remove(&timer);
            }
        }
    }
}

/// Drives `node` at world time `time` (its clock reads `clock.local(time)`): writes to `disk`,
/// ledger events (stamped with the world's time) to `events`; returns its messages and its next
/// deadline in the world's time.
fn drive_node(
    node: &mut Node,
    disk: &mut Durable,
    events: &mut Vec<LedgerEvent>,
    clock: Clock,
    time: Time,
) -> (Vec<Transmit>, Option<Time>) {
    let mut io = SimIo { disk, events, outbox: Vec::new(), recorded_at: time };
    let Ok(deadline) = replica::node::drive(node, clock.local(time), &mut io);
    (io.outbox, deadline.map(|local| clock.global(local)))
}

impl Observe for World {
    fn status(&self, replica: ReplicaId) -> Option<Status> {
        let sim = self.replicas.get(replica.index())?;
        (sim.life == Life::Up).then(|| Status {
            view: sim.node.core().view().0,
            last_executed: sim.node.core().last_executed().0,
        })
    }

    fn counter(&self, replica: ReplicaId, name: &str) -> u64 {
        if name == CLIENT_DISSENT {
            return self.dissent.get(&u32::from(replica.0)).copied().unwrap_or(0);
        }
        let Some(sim) = self.replicas.get(replica.index()) else { return 0 };
        let banked = sim.banked.get(name).copied().unwrap_or(0);
        let live = match sim.life {
            Life::Killed => 0,
            Life::Up | Life::Paused => sim.node.counter_map().get(name).copied().unwrap_or(0),
        };
        banked + live
    }
}

#[cfg(test)]
mod tests {
    use replica::core::Time;

    use super::Clock;

    /// A deadline converted to the world's time is reached no earlier than the replica's own
    /// clock says, and no later than a nanosecond after.
    #[test]
    fn clocks_convert_both_ways() {
        for clock in [
            Clock { offset: 0, ppm: 0 },
            Clock { offset: 123_456_789, ppm: 20_000 },
            Clock { offset: 999_999_999, ppm: -20_000 },
        ] {
            for local in [0u64, 1, 999_999_999, 1_000_000_000, 31_415_926_535, 60_000_000_001] {
                let local = Time::from_nanos(local);
                let global = clock.global(local);
                assert!(
                    clock.local(global) >= local || global == Time::ZERO,
                    "{clock:?} {local:?}"
                );
                if global > Time::ZERO {
                    let before = Time::from_nanos(global.as_nanos() - 1);
                    assert!(clock.local(before) < local, "{clock:?} {local:?}");
                }
            }
            let (a, b) = (Time::from_nanos(5), Time::from_nanos(6));
            assert!(clock.local(a) <= clock.local(b), "monotonic");
        }
    }
}
