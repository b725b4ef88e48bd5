//! The same replica and client cores as the simulator, spread over a few worker threads (one
//! per core) that exchange messages over in-memory channels on the wall clock. It measures what
//! the protocol does with every core of the machine; it is not deterministic, so tests use
//! [`super::Cluster`] instead.
//!
//! Replica i runs on worker `i mod workers`; the clients run on the last worker. A worker
//! handles one input at a time for the node it is addressed to, routes the outputs (to its own
//! queue when the receiver lives on the same worker), and fires due timers. Thread-per-core
//! keeps each replica's state in one core's cache and avoids a context switch per message.
//!
//! Clients sign all their requests before the clock starts: signing is the load generator's
//! work, done on the clients' machines in a real deployment, not the cluster's. Everything else
//! the clients do (sending, checking INFORM MACs, forming proofs) is timed.
//!
//! Channels are bounded. The bound follows from the protocol's own flow control: at most one
//! outstanding request per client, at most `window` proposed slots, and a fixed number of
//! messages per slot and per request, so a channel never holds more than
//! [`channel_capacity`] messages.

#![allow(clippy::disallowed_methods, reason = "a wall-clock runner outside the core")]

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::thread;
use std::time::{Duration, Instant};

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::{SimOptions, Workload, build_nodes};
use crate::core::{
    AuthenticatedInform, Client, ClientId, Config, Envelope, Replica, ReplicaId, Seq,
    SignedRequest, Time, Transmit,
};
use crate::node::Node;

/// How long a worker waits for input before looking at its timers and the stop flag.
const IDLE_WAIT: Duration = Duration::from_millis(1);

/// The most inputs a worker moves from its channel to its queue at once.
const DRAIN_MAX: usize = 1024;

/// What a parallel run achieved.
#[derive(Debug, Clone, PartialEq)]
pub struct ParallelReport {
    /// Worker threads used.
    pub workers: usize,
    /// Requests completed.
    pub completed: u64,
    /// Wall time from the first request to the last completion.
    pub elapsed: Duration,
    /// Slots the primary executed.
    pub slots: u64,
    /// Each replica's last executed slot at the end (laggards may miss the last few slots).
    pub heads: Vec<u64>,
    /// Whether every replica holds the same block hash at the lowest of the heads.
    pub ledgers_agree: bool,
}

/// A message between nodes.
#[derive(Debug)]
enum Delivery {
    /// Replica to replica.
    Envelope { from: ReplicaId, to: ReplicaId, envelope: Envelope },
    /// Client to replica.
    Request { from: ClientId, to: ReplicaId, request: SignedRequest },
    /// Replica to client.
    Inform { from: ReplicaId, inform: AuthenticatedInform },
}

/// The most messages a channel can hold; see the module documentation.
pub fn channel_capacity(config: &Config) -> usize {
    let n = usize::from(config.replica_count);
    let clients = config.client_count as usize;
    // Requests (and retransmissions to every replica) plus INFORMs from every replica, plus a
    // few messages per replica per slot of the window.
    4 * (clients * n + config.window as usize * n * 4) + 1024
}

/// How often the client worker looks at its clients' retransmission timers (a scan costs
/// O(clients)).
const CLIENT_TIMER_SCAN: Duration = Duration::from_millis(10);

/// The clients and their pre-signed requests.
struct Clients {
    clients: Vec<Client>,
    signed: Vec<VecDeque<SignedRequest>>,
    completed: u64,
    target: u64,
    last_timer_scan: Time,
}

/// A benchmark replica's IO: it measures the protocol, not a disk, so writes count as
/// persisted at once and ledger events are dropped; messages are routed by the worker.
struct BenchIo {
    outbox: Vec<Transmit>,
}

impl crate::node::Io for BenchIo {
    type Error = std::convert::Infallible;

    fn persist(&mut self, _writes: &[crate::core::Write]) -> Result<(), Self::Error> {
        Ok(())
    }

    fn record(&mut self, _events: &[history::LedgerEvent]) -> Result<(), Self::Error> {
        Ok(())
    }

    fn send(&mut self, transmit: Transmit) {
        self.outbox.push(transmit);
    }
}

/// One worker thread's nodes and links.
struct Worker {
    index: usize,
    replicas: Vec<Node>,
    clients: Option<Clients>,
    inbox: Receiver<Delivery>,
    queue: VecDeque<Delivery>,
    links: Vec<SyncSender<Delivery>>,
    workers: usize,
    start: Instant,
}

/// Runs `options.requests_total` requests to completion on `workers` threads and reports the
/// throughput. Network latency options are ignored: messages move through memory.
///
/// # Panics
///
/// If a thread panics, or the run does not finish within `deadline`.
pub fn run(options: &SimOptions, workers: usize, deadline: Duration) -> ParallelReport {
    let workers = workers.clamp(1, usize::from(options.config.replica_count));
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let (_keys, replicas, mut clients) = build_nodes(&options.config, &mut rng);
    let seed = rand::Rng::next_u64(&mut rng);
    let mut workload = Workload::new(seed, options.key_count, options.requests_total);
    let signed = sign_requests(&mut clients, &mut workload);
    let capacity = channel_capacity(&options.config);
    let (links, inboxes): (Vec<_>, Vec<_>) =
        (0..workers).map(|_| sync_channel::<Delivery>(capacity)).unzip();
    let mut hosted: Vec<Vec<Node>> = (0..workers).map(|_| Vec::new()).collect();
    for replica in replicas {
        hosted[replica.id().index() % workers].push(Node::new(replica, None));
    }
    let mut clients = Some(Clients {
        clients,
        signed,
        completed: 0,
        target: options.requests_total,
        last_timer_scan: Time::ZERO,
    });
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let handles: Vec<_> = hosted
        .into_iter()
        .zip(inboxes)
        .enumerate()
        .map(|(index, (replicas, inbox))| {
            let worker = Worker {
                index,
                replicas,
                clients: if index == workers - 1 { clients.take() } else { None },
                inbox,
                queue: VecDeque::new(),
                links: links.clone(),
                workers,
                start,
            };
            let stop = stop.clone();
            thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || worker.run(&stop, deadline))
                .expect("spawn a worker thread")
        })
        .collect();
    drop(links);
    let mut replicas = Vec::new();
    let mut completed = 0;
    let mut elapsed = Duration::ZERO;
    for handle in handles {
        let (worker_replicas, worker_completed, worker_elapsed) =
            handle.join().expect("worker thread");
        replicas.extend(worker_replicas);
        if let Some(done) = worker_completed {
            completed = done;
            elapsed = worker_elapsed;
        }
    }
    replicas.sort_by_key(Replica::id);
    let heads: Vec<u64> = replicas.iter().map(|replica| replica.last_executed().0).collect();
    let common = Seq(heads.iter().copied().min().unwrap_or(0));
    let hashes: Vec<_> = replicas
        .iter()
        .map(|replica| replica.ledger().get(common).map(|block| block.hash))
        .collect();
    ParallelReport {
        workers,
        completed,
        elapsed,
        slots: heads[0],
        ledgers_agree: hashes.windows(2).all(|pair| pair[0] == pair[1]),
        heads,
    }
}

/// Signs every request of the workload up front, round-robin over the clients as the closed
/// loop would issue them, so that each client's requests go out in the order they were signed.
fn sign_requests(clients: &mut [Client], workload: &mut Workload) -> Vec<VecDeque<SignedRequest>> {
    let mut signed: Vec<VecDeque<SignedRequest>> =
        clients.iter().map(|_| VecDeque::new()).collect();
    for index in (0..clients.len()).cycle() {
        let Some(op) = workload.next_op() else { break };
        signed[index].push_back(clients[index].sign_next(op));
    }
    signed
}

impl Worker {
    fn now(&self) -> Time {
        Time::from_nanos(self.start.elapsed().as_nanos() as u64)
    }

    /// Runs until the clients are done (on the client worker) or told to stop; returns the
    /// replicas and, from the client worker, the completions and the elapsed time.
    fn run(
        mut self,
        stop: &AtomicBool,
        deadline: Duration,
    ) -> (Vec<Replica>, Option<u64>, Duration) {
        if let Some(clients) = &mut self.clients {
            let now = Time::ZERO;
            for (client, queue) in clients.clients.iter_mut().zip(&mut clients.signed) {
                if let Some(request) = queue.pop_front() {
                    client.submit_signed(now, request).expect("idle");
                }
            }
            for index in 0..self.clients.as_ref().map_or(0, |clients| clients.clients.len()) {
                self.flush_client(index);
            }
        }
        while !stop.load(Ordering::Relaxed) {
            assert!(self.start.elapsed() < deadline, "parallel run exceeded {deadline:?}");
            if !self.fill_queue() {
                break;
            }
            if let Some(delivery) = self.queue.pop_front() {
                self.deliver(delivery);
            }
            self.fire_timers();
            if let Some(clients) = &self.clients
                && clients.completed >= clients.target
            {
                stop.store(true, Ordering::Relaxed);
            }
        }
        let elapsed = self.start.elapsed();
        let completed = self.clients.as_ref().map(|clients| clients.completed);
        (self.replicas.into_iter().map(Node::into_core).collect(), completed, elapsed)
    }

    /// Moves what the channel holds into the queue; blocks briefly when both are empty.
    /// Returns false when every other worker is gone.
    fn fill_queue(&mut self) -> bool {
        for _ in 0..DRAIN_MAX {
            match self.inbox.try_recv() {
                Ok(delivery) => self.queue.push_back(delivery),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return !self.queue.is_empty(),
            }
        }
        if self.queue.is_empty() {
            match self.inbox.recv_timeout(self.wait()) {
                Ok(delivery) => self.queue.push_back(delivery),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        true
    }

    fn wait(&self) -> Duration {
        let now = self.now();
        self.replicas
            .iter()
            .filter_map(Node::deadline)
            .map(|at| at.saturating_since(now))
            .fold(IDLE_WAIT, Duration::min)
    }

    fn local(&self, id: ReplicaId) -> Option<usize> {
        (id.index() % self.workers == self.index).then_some(id.index() / self.workers)
    }

    fn deliver(&mut self, delivery: Delivery) {
        let now = self.now();
        match delivery {
            Delivery::Envelope { from, to, envelope } => {
                let local = self.local(to).expect("routed to its host");
                // Rejections are counted by the core; a benchmark has none to report.
                let _ = self.replicas[local].handle_message(now, from, &envelope);
                self.flush_replica(local);
            }
            Delivery::Request { from, to, request } => {
                let local = self.local(to).expect("routed to its host");
                let _ = self.replicas[local].handle_request(now, from, request);
                self.flush_replica(local);
            }
            Delivery::Inform { from, inform } => {
                let clients = self.clients.as_mut().expect("informs go to the client worker");
                let index = inform.inform.client.index();
                let client = &mut clients.clients[index];
                if client.handle_inform(now, from, &inform).is_ok()
                    && client.poll_completion().is_some()
                {
                    clients.completed += 1;
                    if let Some(request) = clients.signed[index].pop_front() {
                        client.submit_signed(now, request).expect("idle after completion");
                    }
                    self.flush_client(index);
                }
            }
        }
    }

    fn fire_timers(&mut self) {
        let now = self.now();
        for local in 0..self.replicas.len() {
            if self.replicas[local].deadline().is_some_and(|at| at <= now) {
                self.replicas[local].handle_timeout(now);
                self.flush_replica(local);
            }
        }
        let Some(clients) = &mut self.clients else { return };
        if now.saturating_since(clients.last_timer_scan) < CLIENT_TIMER_SCAN {
            return;
        }
        clients.last_timer_scan = now;
        let due: Vec<usize> = (0..clients.clients.len())
            .filter(|&index| clients.clients[index].poll_timeout().is_some_and(|at| at <= now))
            .collect();
        for index in due {
            if let Some(clients) = &mut self.clients {
                clients.clients[index].handle_timeout(now);
            }
            self.flush_client(index);
        }
    }

    fn route(&mut self, to: ReplicaId, delivery: Delivery) {
        if self.local(to).is_some() {
            self.queue.push_back(delivery);
        } else {
            // A closed channel means the run is over.
            let _ = self.links[to.index() % self.workers].send(delivery);
        }
    }

    fn flush_replica(&mut self, local: usize) {
        let from = self.replicas[local].core().id();
        let now = self.now();
        let mut io = BenchIo { outbox: Vec::new() };
        let Ok(_) = crate::node::drive(&mut self.replicas[local], now, &mut io);
        for transmit in io.outbox {
            match transmit {
                Transmit::Replica { to, envelope } => {
                    self.route(to, Delivery::Envelope { from, to, envelope });
                }
                Transmit::Client { inform, .. } => {
                    let delivery = Delivery::Inform { from, inform };
                    if self.clients.is_some() {
                        self.queue.push_back(delivery);
                    } else {
                        let _ = self.links[self.workers - 1].send(delivery);
                    }
                }
            }
        }
    }

    fn flush_client(&mut self, index: usize) {
        let clients = self.clients.as_mut().expect("the client worker");
        let mut transmits = Vec::new();
        while let Some(transmit) = clients.clients[index].poll_transmit() {
            transmits.push(transmit);
        }
        let from = clients.clients[index].id();
        for transmit in transmits {
            let to = transmit.to;
            self.route(to, Delivery::Request { from, to, request: transmit.request });
        }
    }
}
