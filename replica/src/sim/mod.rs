//! An in-memory, deterministic cluster on virtual time, in the spirit of quinn-proto's `Pair`:
//! real replica and client cores, real crypto and encodings, a simulated network.
//!
//! Everything is decided by the seed: keys, workload, and every packet's latency (drawn
//! uniformly from `[latency_min, latency_max]`, so a wide range reorders delivery). Replica
//! links may also be given a bandwidth ([`Cluster::set_bandwidth`]), so that large messages
//! take time to send and hold back what follows them. Each
//! [`Cluster::step`] jumps virtual time to the next packet arrival or timer and handles exactly
//! that one event, then routes the outputs. Tests turn replicas Byzantine with an outbound hook
//! (any function of what the core wanted to send), by injecting crafted messages sealed with a
//! replica's own keys, or by running a [`Hook`] in it ([`Cluster::set_byzantine`]: the same
//! Byzantine hook as in the replica process, on virtual time); they silence replicas with
//! [`Cluster::crash`] (or [`Cluster::kill`], which also loses their packets in flight), cut
//! them off with [`Cluster::isolate`], and restart
//! them from what they persisted with [`Cluster::restart`] (each replica has an in-memory
//! [`Durable`] disk that its writes are applied to before anything it sends is routed).
//!
//! [`parallel`] runs the same cores on one OS thread per replica instead, on the wall clock, to
//! measure what the cluster does with every core of the machine.

pub mod fuzz;
pub mod parallel;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use history::{LedgerEvent, Operation};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::byzantine::{Behaviour, Hook};
use crate::core::message::Message;
use crate::core::{
    AuthenticatedInform, Client, ClientId, Completion, Config, Durable, Envelope, Rejection,
    Replica, ReplicaId, SignedRequest, Time, Transmit,
};
use crate::crypto::dealer::ClusterKeys;
use crate::node::Node as ReplicaNode;

/// The most steps [`Cluster::run`] takes unless told otherwise.
pub const STEPS_MAX_DEFAULT: u64 = 50_000_000;

/// How to build a cluster.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// The cluster configuration (n, clients, protocol, batching).
    pub config: Config,
    /// Decides keys, workload and latencies.
    pub seed: u64,
    /// The shortest one-way latency.
    pub latency_min: Duration,
    /// The longest one-way latency.
    pub latency_max: Duration,
    /// Requests the workload issues in total, spread over the clients (closed loop).
    pub requests_total: u64,
    /// Keys of the register workload.
    pub key_count: u32,
    /// Replicas built (and restarted) without `config.planted_bug`: the Byzantine replicas
    /// of a test with a planted bug (`crate::planted`), which is the system under test's, not
    /// the adversary's. Clients and the other replicas run it.
    pub unplanted: Vec<ReplicaId>,
}

impl SimOptions {
    /// Options with a fixed 100 µs latency, 8 keys and the given request count.
    pub fn new(config: Config, seed: u64, requests_total: u64) -> SimOptions {
        SimOptions {
            config,
            seed,
            latency_min: Duration::from_micros(100),
            latency_max: Duration::from_micros(100),
            requests_total,
            key_count: 8,
            unplanted: Vec::new(),
        }
    }
}

/// A node of the simulated network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Node {
    /// A replica.
    Replica(ReplicaId),
    /// A client.
    Client(ClientId),
}

/// What a packet carries.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Replica to replica.
    Envelope(Envelope),
    /// Client to replica.
    Request(SignedRequest),
    /// Replica to client.
    Inform(AuthenticatedInform),
}

/// A packet in flight.
#[derive(Debug, Clone)]
pub struct Packet {
    /// The sender.
    pub from: Node,
    /// The receiver.
    pub to: Node,
    /// The content.
    pub payload: Payload,
}

/// Rewrites what a replica sends: return the transmits to send instead (none to drop).
pub type OutboundHook = Box<dyn FnMut(Transmit) -> Vec<Transmit>>;

/// Whose timer fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Timer {
    /// A replica's node (its core's and its hook's timers) or a client's core.
    Node(Node),
}

/// A simulated replica's IO: its in-memory disk, its ledger, and the messages to route.
struct SimIo<'a> {
    disk: &'a mut Durable,
    events: &'a mut Vec<LedgerEvent>,
    outbox: Vec<Transmit>,
}

impl crate::node::Io for SimIo<'_> {
    type Error = std::convert::Infallible;

    fn persist(&mut self, writes: &[crate::core::Write]) -> Result<(), Self::Error> {
        self.disk.apply(writes.iter().cloned());
        Ok(())
    }

    fn record(&mut self, events: &[LedgerEvent]) -> Result<(), Self::Error> {
        self.events.extend_from_slice(events);
        Ok(())
    }

    fn send(&mut self, transmit: Transmit) {
        self.outbox.push(transmit);
    }
}

/// The simulation ran out of steps before its goal.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("simulation stopped after {steps} steps at {time_ms} ms: {reason}")]
pub struct SimError {
    /// Steps taken.
    pub steps: u64,
    /// Virtual time reached, in milliseconds.
    pub time_ms: u64,
    /// Why it stopped.
    pub reason: &'static str,
}

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

/// The register workload of the simulator: reads, unique-valued writes and cas over a few keys.
#[derive(Debug)]
pub(crate) struct Workload {
    rng: ChaCha8Rng,
    key_count: u32,
    next_value: i64,
    remaining: u64,
}

impl Workload {
    pub(crate) fn new(seed: u64, key_count: u32, requests_total: u64) -> Workload {
        Workload {
            rng: ChaCha8Rng::seed_from_u64(seed),
            key_count: key_count.max(1),
            next_value: 0,
            remaining: requests_total,
        }
    }

    pub(crate) fn next_op(&mut self) -> Option<Operation> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let key = format!("k{}", self.rng.random_range(0..self.key_count));
        self.next_value += 1;
        let value = self.next_value;
        Some(match self.rng.random_range(0..10u32) {
            0..=3 => Operation::Read { key },
            4..=6 => Operation::Write { key, value },
            _ => Operation::Cas { key, from: self.rng.random_range(0..value.max(1)), to: value },
        })
    }
}

/// Generates a cluster's keys from `rng` and builds its replica and client cores.
///
/// # Panics
///
/// If the configuration is invalid: simulations build their options on purpose.
pub(crate) fn build_nodes(
    config: &Config,
    rng: &mut ChaCha8Rng,
) -> (ClusterKeys, Vec<Replica>, Vec<Client>) {
    config.validate().expect("valid simulation config");
    let nf = config.nf() as u32;
    let keys = ClusterKeys::generate(rng, u32::from(config.replica_count), config.client_count, nf)
        .expect("dealer parameters follow from a valid config");
    let public = Arc::new(keys.public.clone());
    let replicas = keys
        .replicas
        .iter()
        .map(|secrets| {
            Replica::new(config.clone(), secrets.clone(), public.clone())
                .expect("keys match the config")
        })
        .collect();
    let clients =
        keys.clients.iter().map(|secrets| Client::new(config.clone(), secrets.clone())).collect();
    (keys, replicas, clients)
}

/// An in-memory cluster.
pub struct Cluster {
    time: Time,
    steps: u64,
    keys: ClusterKeys,
    /// Each replica's core, with its Byzantine hook if it has one.
    nodes: Vec<ReplicaNode>,
    clients: Vec<Client>,
    crashed: Vec<bool>,
    /// Replicas cut off from every other node (both directions).
    isolated: Vec<bool>,
    /// What each replica persisted.
    disks: Vec<Durable>,
    config: Config,
    /// Replicas that run without the planted bug ([`SimOptions::unplanted`]).
    unplanted: Vec<ReplicaId>,
    /// Extra latency of everything a replica sends (a slow replica).
    slowness: Vec<Duration>,
    /// Bytes per second of every directed replica-to-replica link (none: unlimited).
    bandwidth: Option<u64>,
    /// When each directed replica-to-replica link has sent what it was given, by
    /// `from * n + to`.
    link_free: Vec<Time>,
    /// Outbound hooks, run after a node's Byzantine hook.
    hooks: Vec<Option<OutboundHook>>,
    network: BinaryHeap<Reverse<Scheduled>>,
    timers: BinaryHeap<Reverse<(Time, Timer)>>,
    armed: HashMap<Timer, Time>,
    order: u64,
    rng: ChaCha8Rng,
    latency: (Duration, Duration),
    workload: Workload,
    /// Every rejection a replica returned, in order.
    pub rejections: Vec<(ReplicaId, Rejection)>,
    /// Every completed request, in completion order.
    pub completions: Vec<(ClientId, Completion)>,
    /// Every ledger event, per replica.
    pub events: Vec<Vec<LedgerEvent>>,
    /// Packets delivered.
    pub delivered: u64,
}

impl Cluster {
    /// Builds the cluster (keys from the seed) and starts the workload on every client.
    ///
    /// # Panics
    ///
    /// If the configuration is invalid: tests build their options on purpose.
    pub fn new(options: SimOptions) -> Cluster {
        let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
        let (keys, mut replicas, clients) = build_nodes(&options.config, &mut rng);
        for &id in &options.unplanted {
            let config = Config { planted_bug: None, ..options.config.clone() };
            let public = Arc::new(keys.public.clone());
            replicas[id.index()] = Replica::new(config, keys.replicas[id.index()].clone(), public)
                .expect("keys match the config");
        }
        let replica_count = replicas.len();
        let workload = Workload::new(rng.next_u64(), options.key_count, options.requests_total);
        let mut cluster = Cluster {
            time: Time::ZERO,
            steps: 0,
            keys,
            nodes: replicas.into_iter().map(|core| ReplicaNode::new(core, None)).collect(),
            clients,
            crashed: vec![false; replica_count],
            isolated: vec![false; replica_count],
            disks: vec![Durable::default(); replica_count],
            config: options.config.clone(),
            unplanted: options.unplanted.clone(),
            slowness: vec![Duration::ZERO; replica_count],
            bandwidth: None,
            link_free: vec![Time::ZERO; replica_count * replica_count],
            hooks: (0..replica_count).map(|_| None).collect(),
            network: BinaryHeap::new(),
            timers: BinaryHeap::new(),
            armed: HashMap::new(),
            order: 0,
            rng,
            latency: (options.latency_min, options.latency_max.max(options.latency_min)),
            workload,
            rejections: Vec::new(),
            completions: Vec::new(),
            events: vec![Vec::new(); replica_count],
            delivered: 0,
        };
        for index in 0..cluster.clients.len() {
            cluster.submit_next(ClientId(index as u32));
        }
        cluster
    }

    /// The current virtual time.
    pub fn time(&self) -> Time {
        self.time
    }

    /// Every key of the cluster (tests use them to act as a Byzantine replica).
    pub fn keys(&self) -> &ClusterKeys {
        &self.keys
    }

    /// The replicas.
    pub fn replicas(&self) -> impl Iterator<Item = &Replica> {
        self.nodes.iter().map(ReplicaNode::core)
    }

    /// One replica.
    pub fn replica(&self, id: ReplicaId) -> &Replica {
        self.nodes[id.index()].core()
    }

    /// The clients.
    pub fn clients(&self) -> &[Client] {
        &self.clients
    }

    /// Requests the workload has not issued yet.
    pub fn requests_remaining(&self) -> u64 {
        self.workload.remaining
    }

    /// Whether every request was issued and completed.
    pub fn workload_done(&self) -> bool {
        self.workload.remaining == 0
            && self.clients.iter().all(|client| client.outstanding().is_none())
    }

    /// Silences a replica from now on: it receives and sends nothing.
    pub fn crash(&mut self, id: ReplicaId) {
        self.crashed[id.index()] = true;
    }

    /// Kills a replica as with SIGKILL: it stops like [`Cluster::crash`], and every packet in
    /// flight to or from it is lost (its connections are reset), so that a later
    /// [`Cluster::restart`] starts from its disk and nothing else.
    pub fn kill(&mut self, id: ReplicaId) {
        self.crash(id);
        let node = Node::Replica(id);
        self.network.retain(|Reverse(scheduled)| {
            scheduled.packet.from != node && scheduled.packet.to != node
        });
        self.armed.remove(&Timer::Node(node));
    }

    /// Restarts a crashed (or running) replica from its disk, as after a SIGKILL: everything
    /// it did not persist is lost; it reconciles with the ledger events it had recorded.
    pub fn restart(&mut self, id: ReplicaId) {
        let public = Arc::new(self.keys.public.clone());
        let secrets = self.keys.replicas[id.index()].clone();
        let disk = self.disks[id.index()].clone();
        let mut config = self.config.clone();
        if self.unplanted.contains(&id) {
            config.planted_bug = None;
        }
        let replica =
            Replica::recover(config, secrets, public, disk, &self.events[id.index()], self.time)
                .expect("keys match the config");
        self.nodes[id.index()].replace_core(replica);
        self.crashed[id.index()] = false;
        self.after_replica_input(id, &Ok(()));
    }

    /// Cuts `id` off from every node (`true`) or reconnects it (`false`). Packets already in
    /// flight to or from it are lost.
    pub fn isolate(&mut self, id: ReplicaId, isolated: bool) {
        self.isolated[id.index()] = isolated;
    }

    /// What replica `id` persisted.
    pub fn disk(&self, id: ReplicaId) -> &Durable {
        &self.disks[id.index()]
    }

    /// Delays everything `id` sends from now on by `extra` on top of the network latency.
    pub fn slow_down(&mut self, id: ReplicaId, extra: Duration) {
        self.slowness[id.index()] = extra;
    }

    /// Limits every directed replica-to-replica link to `bytes_per_second` from now on (none:
    /// unlimited): a link sends its envelopes one after the other, each taking its size over
    /// the bandwidth before the latency starts, so large messages (VC-REQUESTs, NV-PROPOSEs,
    /// state transfers) arrive late and delay what follows them on the link.
    pub fn set_bandwidth(&mut self, bytes_per_second: Option<u64>) {
        self.bandwidth = bytes_per_second.filter(|bandwidth| *bandwidth > 0);
    }

    /// Rewrites everything `id` sends from now on.
    pub fn set_outbound_hook(&mut self, id: ReplicaId, hook: OutboundHook) {
        self.hooks[id.index()] = Some(hook);
    }

    /// Makes `id` Byzantine: everything it sends passes through `hook` (before any outbound
    /// hook), everything it receives from replicas is shown to `hook` first, and the hook's
    /// timer is driven on virtual time. The hook's behaviours are switched with
    /// [`Cluster::behave`].
    pub fn set_byzantine(&mut self, id: ReplicaId, hook: Hook) {
        self.nodes[id.index()].set_hook(hook);
        self.arm_node(id);
    }

    /// Switches the behaviours of `id`'s Byzantine hook (none: correct) and returns whether it
    /// has one (a replica without one refuses, as over the control endpoint).
    pub fn behave(&mut self, id: ReplicaId, behaviours: &[Behaviour]) -> bool {
        let now = self.time;
        if !self.nodes[id.index()].behave(now, behaviours.iter().copied()) {
            return false;
        }
        self.arm_node(id);
        true
    }

    /// `id`'s Byzantine hook, if it has one.
    pub fn byzantine(&self, id: ReplicaId) -> Option<&Hook> {
        self.nodes[id.index()].hook()
    }

    /// Delivers `message` to `to` now, sealed with the `from`–`to` key as a (possibly
    /// Byzantine) `from` would, and routes whatever `to` sends in response.
    ///
    /// # Errors
    ///
    /// What `to` rejected.
    pub fn inject(
        &mut self,
        from: ReplicaId,
        to: ReplicaId,
        message: &Message,
    ) -> Result<(), Rejection> {
        let key = &self.keys.replicas[from.index()].replica_macs[to.index()];
        let envelope = Envelope::new(message, key, from, to);
        self.inject_envelope(from, to, &envelope)
    }

    /// Delivers a raw envelope from `from` to `to` now.
    ///
    /// # Errors
    ///
    /// What `to` rejected.
    pub fn inject_envelope(
        &mut self,
        from: ReplicaId,
        to: ReplicaId,
        envelope: &Envelope,
    ) -> Result<(), Rejection> {
        let result = self.nodes[to.index()].handle_message(self.time, from, envelope);
        self.after_replica_input(to, &result);
        result
    }

    /// Delivers a client request to replica `to` now, from the client it names.
    ///
    /// # Errors
    ///
    /// What `to` rejected.
    pub fn inject_request(
        &mut self,
        to: ReplicaId,
        request: SignedRequest,
    ) -> Result<(), Rejection> {
        let from = request.body.client;
        self.inject_request_as(from, to, request)
    }

    /// Delivers a request to replica `to` now, over client `from`'s connection.
    ///
    /// # Errors
    ///
    /// What `to` rejected.
    pub fn inject_request_as(
        &mut self,
        from: ClientId,
        to: ReplicaId,
        request: SignedRequest,
    ) -> Result<(), Rejection> {
        let result = self.nodes[to.index()].handle_request(self.time, from, request);
        self.after_replica_input(to, &result);
        result
    }

    /// Runs until the workload is done.
    ///
    /// # Errors
    ///
    /// [`SimError`] if nothing is left to happen, or `steps_max` steps pass, first.
    pub fn run(&mut self, steps_max: u64) -> Result<(), SimError> {
        self.run_until(steps_max, |cluster| cluster.workload_done())
    }

    /// Runs until `done` holds.
    ///
    /// # Errors
    ///
    /// [`SimError`] if nothing is left to happen, or `steps_max` steps pass, first.
    pub fn run_until(
        &mut self,
        steps_max: u64,
        mut done: impl FnMut(&Cluster) -> bool,
    ) -> Result<(), SimError> {
        let start = self.steps;
        while !done(self) {
            if self.steps - start >= steps_max {
                return Err(self.error("step limit"));
            }
            if !self.step() {
                return Err(self.error("idle: no packet in flight and no timer armed"));
            }
        }
        Ok(())
    }

    /// Runs for `duration` of virtual time (or until idle).
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.time + duration;
        while self.next_event_time().is_some_and(|at| at <= end) && self.step() {}
        self.time = self.time.max(end);
    }

    fn error(&self, reason: &'static str) -> SimError {
        SimError { steps: self.steps, time_ms: self.time.as_nanos() / 1_000_000, reason }
    }

    fn next_event_time(&self) -> Option<Time> {
        let packet = self.network.peek().map(|Reverse(scheduled)| scheduled.at);
        let timer = self.timers.peek().map(|Reverse((at, _))| *at);
        packet.into_iter().chain(timer).min()
    }

    /// Handles the next event (a packet or a timer). Returns false when nothing is left.
    pub fn step(&mut self) -> bool {
        let Some(at) = self.next_event_time() else { return false };
        self.steps += 1;
        self.time = self.time.max(at);
        let packet_due = self.network.peek().is_some_and(|Reverse(scheduled)| scheduled.at == at);
        if packet_due {
            let Reverse(scheduled) = self.network.pop().expect("peeked");
            self.deliver(scheduled.packet);
        } else {
            let Reverse((at, timer)) = self.timers.pop().expect("a timer is due");
            if self.armed.get(&timer) == Some(&at) {
                self.armed.remove(&timer);
                let Timer::Node(node) = timer;
                self.fire_timer(node);
            }
        }
        true
    }

    fn deliver(&mut self, packet: Packet) {
        self.delivered += 1;
        let now = self.time;
        match (packet.to, packet.payload) {
            (Node::Replica(to), payload) => {
                let from_isolated =
                    matches!(packet.from, Node::Replica(from) if self.isolated[from.index()]);
                if self.crashed[to.index()] || self.isolated[to.index()] || from_isolated {
                    return;
                }
                let replica = &mut self.nodes[to.index()];
                let result = match (packet.from, payload) {
                    (Node::Replica(from), Payload::Envelope(envelope)) => {
                        replica.handle_message(now, from, &envelope)
                    }
                    (Node::Client(from), Payload::Request(request)) => {
                        replica.handle_request(now, from, request)
                    }
                    (from, payload) => {
                        unreachable!("no such route: {from:?} -> replica: {payload:?}")
                    }
                };
                self.after_replica_input(to, &result);
            }
            (Node::Client(to), Payload::Inform(inform)) => {
                let Node::Replica(from) = packet.from else {
                    unreachable!("informs come from replicas")
                };
                if self.isolated[from.index()] {
                    return;
                }
                // A rejected INFORM (late, forged) changes nothing at the client.
                let _ = self.clients[to.index()].handle_inform(now, from, &inform);
                self.after_client_input(to);
            }
            (to, payload) => unreachable!("no such route: -> {to:?}: {payload:?}"),
        }
    }

    fn fire_timer(&mut self, node: Node) {
        let now = self.time;
        match node {
            Node::Replica(id) => {
                if !self.crashed[id.index()] {
                    self.nodes[id.index()].handle_timeout(now);
                    self.after_replica_input(id, &Ok(()));
                }
            }
            Node::Client(id) => {
                self.clients[id.index()].handle_timeout(now);
                self.after_client_input(id);
            }
        }
    }

    /// Re-arms replica `id`'s timer at its node's deadline (the core's or its hook's).
    fn arm_node(&mut self, id: ReplicaId) {
        let deadline = self.nodes[id.index()].deadline();
        self.arm(Timer::Node(Node::Replica(id)), deadline);
    }

    /// Schedules what replica `id` sends, through its outbound hook if it has one.
    fn send_from(&mut self, id: ReplicaId, transmits: Vec<Transmit>) {
        for transmit in transmits {
            let rewritten = match &mut self.hooks[id.index()] {
                Some(hook) => hook(transmit),
                None => vec![transmit],
            };
            for transmit in rewritten {
                let (to, payload) = match transmit {
                    Transmit::Replica { to, envelope } => {
                        (Node::Replica(to), Payload::Envelope(envelope))
                    }
                    Transmit::Client { to, inform } => (Node::Client(to), Payload::Inform(inform)),
                };
                self.schedule(Packet { from: Node::Replica(id), to, payload });
            }
        }
    }

    /// Drives replica `id`'s node after an input ([`crate::node::drive`]: writes to its disk,
    /// events to its ledger, then its messages onto the network) and re-arms its timer.
    fn after_replica_input(&mut self, id: ReplicaId, result: &Result<(), Rejection>) {
        if let Err(rejection) = result {
            self.rejections.push((id, rejection.clone()));
        }
        let mut io = SimIo {
            disk: &mut self.disks[id.index()],
            events: &mut self.events[id.index()],
            outbox: Vec::new(),
        };
        let Ok(deadline) = crate::node::drive(&mut self.nodes[id.index()], self.time, &mut io);
        let outbox = io.outbox;
        if !self.crashed[id.index()] {
            self.send_from(id, outbox);
        }
        self.arm(Timer::Node(Node::Replica(id)), deadline);
    }

    fn after_client_input(&mut self, id: ClientId) {
        while let Some(completion) = self.clients[id.index()].poll_completion() {
            self.completions.push((id, completion));
        }
        if self.clients[id.index()].outstanding().is_none() {
            self.submit_next(id);
        }
        self.flush_client(id);
    }

    fn submit_next(&mut self, id: ClientId) {
        if let Some(op) = self.workload.next_op() {
            self.clients[id.index()].submit(self.time, op).expect("the client is idle");
        }
        self.flush_client(id);
    }

    fn flush_client(&mut self, id: ClientId) {
        while let Some(transmit) = self.clients[id.index()].poll_transmit() {
            let packet = Packet {
                from: Node::Client(id),
                to: Node::Replica(transmit.to),
                payload: Payload::Request(transmit.request),
            };
            self.schedule(packet);
        }
        let deadline = self.clients[id.index()].poll_timeout();
        self.arm(Timer::Node(Node::Client(id)), deadline);
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

    /// When `packet` leaves its sender: now, or, on a bandwidth-limited replica link, once the
    /// link has sent everything before it and the packet itself.
    fn departure(&mut self, packet: &Packet) -> Time {
        let (Some(bandwidth), Node::Replica(from), Node::Replica(to), Payload::Envelope(envelope)) =
            (self.bandwidth, packet.from, packet.to, &packet.payload)
        else {
            return self.time;
        };
        let link = from.index() * self.nodes.len() + to.index();
        let bytes = envelope.payload.len() as u128;
        let nanos =
            u64::try_from(bytes * 1_000_000_000 / u128::from(bandwidth)).unwrap_or(u64::MAX);
        let departure = self.link_free[link].max(self.time) + Duration::from_nanos(nanos);
        self.link_free[link] = departure;
        departure
    }

    fn schedule(&mut self, packet: Packet) {
        let (min, max) = self.latency;
        let extra = match packet.from {
            Node::Replica(id) => self.slowness[id.index()],
            Node::Client(_) => Duration::ZERO,
        };
        let latency = extra
            + if min == max {
                min
            } else {
                let nanos = self.rng.random_range(min.as_nanos() as u64..=max.as_nanos() as u64);
                Duration::from_nanos(nanos)
            };
        let departure = self.departure(&packet);
        self.order += 1;
        let scheduled = Scheduled { at: departure + latency, order: self.order, packet };
        self.network.push(Reverse(scheduled));
    }
}
