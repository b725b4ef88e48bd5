//! The network nemesis at run time: a user-space UDP relay on 127.0.0.1 between every pair of
//! replicas and between the clients and every replica, applying [`NetworkFaults`] per directed
//! link with the pure model of [`nemesis::relay`].
//!
//! # Layout of the sockets
//!
//! Replica j's QUIC endpoint listens on its real address P_j. For every ordered pair (i, j),
//! i ≠ j, a relay socket R(i→j): replica i's `NodeConfig::peers[j]`
//! ([`Network::peer_addresses`]). R(i→j) forwards what comes from i to P_j under link (i, j),
//! and what comes back from P_j (j's side of i's connection: its ACKs and replies) to the address
//! i last sent from, under link (j, i). For every replica j, a client socket L_j that the client
//! transports dial instead of P_j ([`Network::client_addresses`]); it gives each client source
//! address its own upstream socket towards P_j (at most [`CLIENT_MAPPINGS_MAX`], the oldest
//! evicted), under links (clients, j) and (j, clients).
//!
//! The harness's control connections go straight to the real addresses: control works whatever
//! the partition.
//!
//! # Twins
//!
//! Each replica listed at [`Network::start`] may get a twin: a second process with the same
//! identity on its own address. [`NetworkHandle::set_twin`] sends R(i→j) to the twin for every
//! i of the twin's group (the others keep reaching the original). The twin's own peers are
//! relay sockets T(j→i) ([`Network::twin_peer_addresses`]) whose packets reach replica i only
//! when i is in the group. Twin links share the original's link faults.
//!
//! Switching R(i→j) redirects i's established QUIC connection to a process that does not know
//! it. The twin has the original's identity, hence its stateless reset and connection-ID keys
//! (`replica::net::endpoint::ResetKey`): it answers with a stateless reset that i accepts, and
//! i's link to j reconnects at once, now reaching the twin. The same holds when the twin ends
//! (the original resets the connections the twin had). The twin's own links connect at once.
//!
//! # Cost
//!
//! The relay runs on a thread of its own with a current-thread tokio runtime: one task per
//! socket and one for packets held back. Sockets receive in batches with GRO (`quinn::udp`, as
//! quinn itself does), so a burst QUIC sent with GSO arrives as one buffer; on a healthy link
//! that buffer leaves again in one `sendmsg` with the same segment size, without touching the
//! model's queue (the fast path). Only faulty links split bursts into packets and go through
//! [`Relay`].
//!
//! Everything is bounded: sockets ([`SOCKETS_MAX`]), client mappings, the model's queue per
//! link. Dropping the [`Network`] stops the thread, closes every socket and joins the thread.

#![allow(clippy::disallowed_methods, reason = "the relay runs on the wall clock")]

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use nemesis::relay::{Handled, LinkCounters, Relay};
use nemesis::{LinkFault, NetworkFaults, Node};
use quinn::udp::{BATCH_SIZE, EcnCodepoint, RecvMeta, Transmit, UdpSocketState};
use replica::core::ReplicaId;
use serde::Serialize;
use tokio::io::Interest;
use tokio::sync::{Notify, oneshot};
use tokio::task::AbortHandle;

/// The most sockets one relay opens (relay sockets, client sockets, upstream sockets).
pub const SOCKETS_MAX: usize = 8192;

/// The most client source addresses mapped to upstream sockets at once; the oldest mapping is
/// evicted beyond it.
pub const CLIENT_MAPPINGS_MAX: usize = 1024;

/// Each socket's kernel buffers, in each direction (capped by `net.core.rmem_max`).
const SOCKET_BUFFER_BYTES: usize = replica::net::endpoint::SOCKET_BUFFER_BYTES;

/// One receive slot: the largest UDP payload, which also bounds a GRO batch.
const SLOT_BYTES: usize = 1 << 16;

/// How often the relay thread publishes its counters for [`NetworkHandle::stats`].
const STATS_INTERVAL: Duration = Duration::from_millis(100);

/// Whom a twin replica talks to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Twin {
    /// Where the twin's QUIC endpoint listens.
    pub address: SocketAddr,
    /// The replicas whose packets to the twin's identity reach the twin (and not the
    /// original), and the only ones the twin's packets reach.
    pub group: Vec<ReplicaId>,
}

/// A request to the relay that cannot be honoured.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The replica had no twin sockets made at start.
    #[error("replica {replica} was not given twin sockets at start")]
    NoTwinSockets {
        /// The replica.
        replica: u8,
    },
    /// A replica id outside the cluster.
    #[error("replica {replica} is not below n = {replica_count}")]
    UnknownReplica {
        /// The id.
        replica: u8,
        /// n.
        replica_count: u8,
    },
    /// Addresses must be on 127.0.0.1.
    #[error("address {address} is not on 127.0.0.1")]
    NotLoopback {
        /// The address.
        address: SocketAddr,
    },
}

/// One link's counters, as `results.json` shows them (the relay model's own).
pub type Counters = LinkCounters;

/// One directed link's counters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkStats {
    /// The sender: `r<i>` or `clients`.
    pub from: String,
    /// The receiver.
    pub to: String,
    /// What the link did.
    #[serde(flatten)]
    pub counters: Counters,
}

/// What the relay did: `results.json`'s `network`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct NetworkStats {
    /// Every link together.
    pub total: Counters,
    /// Packets the kernel refused to send (a full buffer) or that failed to send.
    pub send_errors: u64,
    /// Packets with no route: an unknown source, a twin's packet to a replica outside its
    /// group, or a reply before any request.
    pub unrouted: u64,
    /// Client mappings evicted to make room for new ones.
    pub client_mappings_evicted: u64,
    /// Receive calls that returned something (packets per call tell how well the relay
    /// batches).
    pub receive_calls: u64,
    /// Every link that carried something, in order.
    pub links: Vec<LinkStats>,
}

impl NetworkStats {
    /// The counters of link `(from, to)` (zero when it carried nothing).
    pub fn link(&self, from: Node, to: Node) -> Counters {
        let (from, to) = (from.to_string(), to.to_string());
        self.links
            .iter()
            .find(|link| link.from == from && link.to == to)
            .map(|link| link.counters)
            .unwrap_or_default()
    }
}

/// What the harness sets and the relay thread reads.
#[derive(Debug, Default)]
struct Settings {
    faults: NetworkFaults,
    twins: BTreeMap<ReplicaId, Twin>,
}

/// State shared between the handle and the relay thread.
#[derive(Debug)]
struct Control {
    replica_count: u8,
    twin_capable: BTreeSet<ReplicaId>,
    /// Bumped on every change of `settings`, so the relay reloads them only then.
    version: AtomicU64,
    settings: Mutex<Settings>,
    stats: Mutex<NetworkStats>,
}

/// Controls a running relay; cheap to clone, usable from any thread.
#[derive(Debug, Clone)]
pub struct NetworkHandle {
    control: Arc<Control>,
}

impl NetworkHandle {
    /// Replaces every link's faults with `faults`. Packets already held keep their fate.
    pub fn set_faults(&self, faults: NetworkFaults) {
        self.update(|settings| settings.faults = faults);
    }

    /// Every link healthy again.
    pub fn heal(&self) {
        self.set_faults(NetworkFaults::healthy());
    }

    /// The faults in force.
    pub fn faults(&self) -> NetworkFaults {
        lock(&self.control.settings).faults.clone()
    }

    /// Starts (`Some`) or ends (`None`) replica `replica`'s twin: see the module doc.
    ///
    /// # Errors
    ///
    /// [`NetworkError`] when the replica got no twin sockets at start, the group names a
    /// replica outside the cluster, or the address is not on 127.0.0.1.
    pub fn set_twin(&self, replica: ReplicaId, twin: Option<Twin>) -> Result<(), NetworkError> {
        if !self.control.twin_capable.contains(&replica) {
            return Err(NetworkError::NoTwinSockets { replica: replica.0 });
        }
        if let Some(twin) = &twin {
            let replica_count = self.control.replica_count;
            if let Some(bad) = twin.group.iter().find(|member| member.0 >= replica_count) {
                return Err(NetworkError::UnknownReplica { replica: bad.0, replica_count });
            }
            if !is_loopback(twin.address) {
                return Err(NetworkError::NotLoopback { address: twin.address });
            }
        }
        self.update(|settings| match twin {
            Some(twin) => {
                settings.twins.insert(replica, twin);
            }
            None => {
                settings.twins.remove(&replica);
            }
        });
        Ok(())
    }

    /// What the relay did, as of at most 100 ms ago ([`Network::stop`] gives the final count).
    pub fn stats(&self) -> NetworkStats {
        lock(&self.control.stats).clone()
    }

    fn update(&self, change: impl FnOnce(&mut Settings)) {
        let mut settings = lock(&self.control.settings);
        change(&mut settings);
        self.control.version.fetch_add(1, Ordering::Release);
    }
}

/// A mutex's contents, even if a panicking thread poisoned it (the data stays consistent: every
/// critical section is a plain assignment).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn is_loopback(address: SocketAddr) -> bool {
    address.ip() == IpAddr::V4(Ipv4Addr::LOCALHOST)
}

/// The relay of a run: its thread, its addresses and its control handle.
#[derive(Debug)]
pub struct Network {
    handle: NetworkHandle,
    peers: Vec<Vec<SocketAddr>>,
    clients: Vec<SocketAddr>,
    twin_peers: BTreeMap<ReplicaId, Vec<SocketAddr>>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

/// What a socket relays.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// R(i→j): replica i's way to replica j.
    Peer { from: u8, to: u8 },
    /// T(j→i): replica j's twin's way to replica i.
    TwinPeer { twin: u8, to: u8 },
    /// L_j: the clients' way to replica j.
    Clients { replica: u8 },
    /// One client source address's upstream socket towards replica j.
    Upstream { replica: u8, client: SocketAddr, listener: usize },
}

impl Network {
    /// Binds every relay socket on 127.0.0.1 and starts the relay thread. `real` holds each
    /// replica's real address (at its index); `twins` the replicas that may get a twin, with
    /// the address the twin will listen on; draws follow from `seed`. All links start healthy.
    ///
    /// # Errors
    ///
    /// When an address is not on 127.0.0.1, there are too many sockets, a socket cannot be
    /// bound, or the thread cannot start.
    pub fn start(
        real: &[SocketAddr],
        twins: &BTreeMap<ReplicaId, SocketAddr>,
        seed: u64,
    ) -> anyhow::Result<Network> {
        let n = real.len();
        anyhow::ensure!(n <= usize::from(u8::MAX), "{n} replicas are too many for the relay");
        if let Some(address) = real.iter().chain(twins.values()).find(|a| !is_loopback(**a)) {
            anyhow::bail!("the relay only serves 127.0.0.1, not {address}");
        }
        if let Some(replica) = twins.keys().find(|replica| replica.index() >= n) {
            anyhow::bail!("twin of replica {} outside a cluster of {n}", replica.0);
        }
        // R(i→j) for every ordered pair, T(j→i) for every twin and other replica, L_j.
        let sockets_needed = (n + twins.len()) * n.saturating_sub(1) + n;
        anyhow::ensure!(
            sockets_needed + CLIENT_MAPPINGS_MAX <= SOCKETS_MAX,
            "{n} replicas need {sockets_needed} relay sockets, more than {SOCKETS_MAX}"
        );
        let mut sockets: Vec<(std::net::UdpSocket, Role)> = Vec::new();
        let mut peers = vec![real.to_vec(); n];
        for (from, peers) in peers.iter_mut().enumerate() {
            for (to, peer) in peers.iter_mut().enumerate() {
                if from != to {
                    let socket = bind_loopback().context("binding a relay socket")?;
                    *peer = socket.local_addr().context("a relay socket's address")?;
                    sockets.push((socket, Role::Peer { from: from as u8, to: to as u8 }));
                }
            }
        }
        let mut twin_peers = BTreeMap::new();
        for (&twin, &address) in twins {
            let mut addresses = real.to_vec();
            for (to, peer) in addresses.iter_mut().enumerate() {
                if to == twin.index() {
                    *peer = address;
                } else {
                    let socket = bind_loopback().context("binding a twin relay socket")?;
                    *peer = socket.local_addr().context("a relay socket's address")?;
                    sockets.push((socket, Role::TwinPeer { twin: twin.0, to: to as u8 }));
                }
            }
            twin_peers.insert(twin, addresses);
        }
        let mut clients = Vec::new();
        for replica in 0..n {
            let socket = bind_loopback().context("binding a client relay socket")?;
            clients.push(socket.local_addr().context("a relay socket's address")?);
            sockets.push((socket, Role::Clients { replica: replica as u8 }));
        }
        let control = Arc::new(Control {
            replica_count: n as u8,
            twin_capable: twins.keys().copied().collect(),
            version: AtomicU64::new(0),
            settings: Mutex::new(Settings::default()),
            stats: Mutex::new(NetworkStats::default()),
        });
        let (shutdown, shutdown_received) = oneshot::channel();
        let (started, start_result) = std::sync::mpsc::channel();
        let thread = {
            let control = control.clone();
            let real = real.to_vec();
            std::thread::Builder::new()
                .name("ordeal-relay".into())
                .spawn(move || {
                    relay_thread(control, real, sockets, seed, started, shutdown_received);
                })
                .context("starting the relay thread")?
        };
        let mut network = Network {
            handle: NetworkHandle { control },
            peers,
            clients,
            twin_peers,
            shutdown: Some(shutdown),
            thread: Some(thread),
        };
        match start_result.recv() {
            Ok(Ok(())) => Ok(network),
            Ok(Err(error)) => Err(error).context("starting the relay"),
            Err(_) => {
                network.shut_down();
                anyhow::bail!("the relay thread ended during startup")
            }
        }
    }

    /// Replica `replica`'s `NodeConfig::peers`: the relay socket towards each other replica
    /// (its own entry is its real address, which it never dials).
    pub fn peer_addresses(&self, replica: ReplicaId) -> Vec<SocketAddr> {
        self.peers.get(replica.index()).cloned().unwrap_or_default()
    }

    /// The addresses the client transports dial, replica by replica.
    pub fn client_addresses(&self) -> Vec<SocketAddr> {
        self.clients.clone()
    }

    /// The `NodeConfig::peers` of replica `replica`'s twin (its own entry is the twin's
    /// address); `None` when it was given no twin sockets at start.
    pub fn twin_peer_addresses(&self, replica: ReplicaId) -> Option<Vec<SocketAddr>> {
        self.twin_peers.get(&replica).cloned()
    }

    /// The control handle.
    pub fn handle(&self) -> NetworkHandle {
        self.handle.clone()
    }

    /// Stops the relay (closing every socket) and returns its final counters.
    pub fn stop(mut self) -> NetworkStats {
        self.shut_down();
        self.handle.stats()
    }

    fn shut_down(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        self.shut_down();
    }
}

fn bind_loopback() -> io::Result<std::net::UdpSocket> {
    std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
}

/// A relay socket on the relay thread.
struct Socket {
    io: tokio::net::UdpSocket,
    state: UdpSocketState,
    role: Role,
    /// Where the near side last sent from (replica i for R(i→j), the twin for T(j→i)).
    near: Cell<Option<SocketAddr>>,
}

impl Socket {
    fn new(socket: std::net::UdpSocket, role: Role) -> io::Result<Socket> {
        socket.set_nonblocking(true)?;
        let io = tokio::net::UdpSocket::from_std(socket)?;
        let state = UdpSocketState::new((&io).into())?;
        // Best effort: a smaller buffer only costs retransmissions.
        let _ = state.set_recv_buffer_size((&io).into(), SOCKET_BUFFER_BYTES);
        let _ = state.set_send_buffer_size((&io).into(), SOCKET_BUFFER_BYTES);
        Ok(Socket { io, state, role, near: Cell::new(None) })
    }

    /// Sends `contents` (datagrams of `stride` bytes, the last maybe shorter) to `to`, in as
    /// few `sendmsg` calls as the socket's GSO allows; false when one failed.
    fn send(
        &self,
        to: SocketAddr,
        ecn: Option<EcnCodepoint>,
        contents: &[u8],
        stride: usize,
    ) -> bool {
        let stride = stride.max(1);
        let chunk = stride.saturating_mul(self.state.max_gso_segments().max(1));
        let mut sent = true;
        for part in contents.chunks(chunk) {
            let transmit = Transmit {
                destination: to,
                ecn,
                contents: part,
                segment_size: (part.len() > stride).then_some(stride),
                src_ip: None,
            };
            sent &= self.state.try_send((&self.io).into(), &transmit).is_ok();
        }
        sent
    }
}

/// A packet held by the model: what it takes to send it later.
#[derive(Debug, Clone)]
struct Outgoing {
    socket: usize,
    /// The socket's generation when queued: an evicted slot reused meanwhile is not the same.
    generation: u64,
    to: SocketAddr,
    ecn: Option<EcnCodepoint>,
    data: Vec<u8>,
}

/// A socket's slot.
struct Slot {
    socket: Rc<Socket>,
    generation: u64,
    task: Option<AbortHandle>,
}

/// Everything the relay thread's tasks share (one thread: `Rc` and `RefCell`, never borrowed
/// across an await).
struct Engine {
    control: Arc<Control>,
    real: Vec<SocketAddr>,
    start: Instant,
    version: u64,
    /// Per link `from * (n + 1) + to` (the clients are node n).
    faults: Vec<LinkFault>,
    healthy: Vec<bool>,
    /// Per replica: the twin's address and group membership by replica index.
    twins: Vec<Option<(SocketAddr, Vec<bool>)>>,
    relay: Relay<Outgoing>,
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    generations: u64,
    /// Client source address → upstream socket, per client socket (by its slot).
    mappings: HashMap<(usize, SocketAddr), usize>,
    /// Mappings by age, oldest first.
    mapping_order: VecDeque<(usize, SocketAddr)>,
    send_errors: u64,
    unrouted: u64,
    evicted: u64,
    receive_calls: u64,
    /// Wakes the task sending held packets when one was queued.
    held: Rc<Notify>,
    buffers: Rc<RefCell<Buffers>>,
}

impl Engine {
    fn node_count(&self) -> usize {
        self.real.len() + 1
    }

    fn link(&self, from: usize, to: usize) -> usize {
        from * self.node_count() + to
    }

    fn node(&self, index: usize) -> Node {
        if index < self.real.len() { Node::Replica(ReplicaId(index as u8)) } else { Node::Clients }
    }

    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Takes the harness's latest settings when they changed.
    fn reload(&mut self) {
        let version = self.control.version.load(Ordering::Acquire);
        if version == self.version {
            return;
        }
        self.version = version;
        let settings = lock(&self.control.settings);
        let nodes = self.node_count();
        for from in 0..nodes {
            for to in 0..nodes {
                let fault = settings.faults.link(self.node(from), self.node(to));
                let link = self.link(from, to);
                self.healthy[link] = fault.is_healthy();
                self.faults[link] = fault;
            }
        }
        for (replica, twin) in self.twins.iter_mut().enumerate() {
            *twin = settings.twins.get(&ReplicaId(replica as u8)).map(|twin| {
                let mut group = vec![false; self.real.len()];
                for member in &twin.group {
                    if let Some(slot) = group.get_mut(member.index()) {
                        *slot = true;
                    }
                }
                (twin.address, group)
            });
        }
    }

    fn publish(&self) {
        let nodes = self.node_count();
        let mut stats = NetworkStats {
            send_errors: self.send_errors,
            unrouted: self.unrouted,
            client_mappings_evicted: self.evicted,
            receive_calls: self.receive_calls,
            ..NetworkStats::default()
        };
        let mut total = LinkCounters::default();
        for from in 0..nodes {
            for to in 0..nodes {
                let counters = self.relay.counters(self.link(from, to));
                if !counters.is_zero() {
                    total.add(&counters);
                    stats.links.push(LinkStats {
                        from: self.node(from).to_string(),
                        to: self.node(to).to_string(),
                        counters,
                    });
                }
            }
        }
        stats.total = total;
        *lock(&self.control.stats) = stats;
    }

    fn insert(&mut self, socket: Socket) -> usize {
        self.generations += 1;
        let slot = Slot { socket: Rc::new(socket), generation: self.generations, task: None };
        match self.free.pop() {
            Some(index) => {
                self.slots[index] = Some(slot);
                index
            }
            None => {
                self.slots.push(Some(slot));
                self.slots.len() - 1
            }
        }
    }

    /// The upstream socket for `client` on client socket `listener`, made (and its task
    /// started) when new.
    fn upstream(
        &mut self,
        this: &Rc<RefCell<Engine>>,
        listener: usize,
        replica: u8,
        client: SocketAddr,
    ) -> Option<usize> {
        if let Some(&upstream) = self.mappings.get(&(listener, client)) {
            return Some(upstream);
        }
        if self.mappings.len() >= CLIENT_MAPPINGS_MAX
            && let Some(oldest) = self.mapping_order.pop_front()
            && let Some(evicted) = self.mappings.remove(&oldest)
        {
            if let Some(slot) = self.slots.get_mut(evicted).and_then(Option::take)
                && let Some(task) = slot.task
            {
                task.abort();
            }
            self.free.push(evicted);
            self.evicted += 1;
        }
        let socket = bind_loopback().ok()?;
        let socket = Socket::new(socket, Role::Upstream { replica, client, listener }).ok()?;
        let index = self.insert(socket);
        let task = tokio::task::spawn_local(serve(this.clone(), index));
        if let Some(Some(slot)) = self.slots.get_mut(index) {
            slot.task = Some(task.abort_handle());
        }
        self.mappings.insert((listener, client), index);
        self.mapping_order.push_back((listener, client));
        Some(index)
    }

    /// Where a buffer received on `index` from `source` goes: (link, socket, destination).
    fn route(
        &mut self,
        this: &Rc<RefCell<Engine>>,
        index: usize,
        source: SocketAddr,
    ) -> Option<(usize, usize, SocketAddr)> {
        let socket = self.slots.get(index)?.as_ref()?.socket.clone();
        let clients = self.real.len();
        match socket.role {
            Role::Peer { from, to } => {
                let (from, to) = (usize::from(from), usize::from(to));
                let twin = self.twins[to].as_ref();
                if source == self.real[to] || twin.is_some_and(|(address, _)| *address == source) {
                    Some((self.link(to, from), index, socket.near.get()?))
                } else {
                    socket.near.set(Some(source));
                    let target = match twin {
                        Some((address, group)) if group[from] => *address,
                        _ => self.real[to],
                    };
                    Some((self.link(from, to), index, target))
                }
            }
            Role::TwinPeer { twin, to } => {
                let (twin, to) = (usize::from(twin), usize::from(to));
                if source == self.real[to] {
                    Some((self.link(to, twin), index, socket.near.get()?))
                } else {
                    socket.near.set(Some(source));
                    let in_group = self.twins[twin].as_ref().is_some_and(|(_, group)| group[to]);
                    in_group.then(|| (self.link(twin, to), index, self.real[to]))
                }
            }
            Role::Clients { replica } => {
                let upstream = self.upstream(this, index, replica, source)?;
                let replica = usize::from(replica);
                Some((self.link(clients, replica), upstream, self.real[replica]))
            }
            Role::Upstream { replica, client, listener } => {
                let replica = usize::from(replica);
                (source == self.real[replica])
                    .then(|| (self.link(replica, clients), listener, client))
            }
        }
    }

    /// Relays one received buffer (one datagram, or a GRO batch of `stride`-sized ones).
    fn forward(&mut self, this: &Rc<RefCell<Engine>>, index: usize, meta: &RecvMeta, data: &[u8]) {
        if !is_loopback(meta.addr) {
            self.unrouted += 1;
            return;
        }
        let stride = if meta.stride == 0 { data.len() } else { meta.stride }.max(1);
        let packets = data.len().div_ceil(stride) as u64;
        let Some((link, out, to)) = self.route(this, index, meta.addr) else {
            self.unrouted += packets;
            return;
        };
        let Some(Some(slot)) = self.slots.get(out) else {
            self.unrouted += packets;
            return;
        };
        let socket = slot.socket.clone();
        let generation = slot.generation;
        if self.healthy[link] {
            // The fast path: the whole batch leaves as it came.
            if !socket.send(to, meta.ecn, data, stride) {
                self.send_errors += packets;
            }
            self.relay.count_forwarded(link, packets);
            return;
        }
        let now = self.now();
        let fault = self.faults[link];
        let mut held = false;
        for packet in data.chunks(stride) {
            let outgoing =
                Outgoing { socket: out, generation, to, ecn: meta.ecn, data: packet.to_vec() };
            match self.relay.handle(link, now, &fault, outgoing, packet.len()) {
                Handled::Forward(outgoing) => {
                    if !socket.send(to, outgoing.ecn, &outgoing.data, outgoing.data.len()) {
                        self.send_errors += 1;
                    }
                }
                Handled::Held => held = true,
                Handled::Dropped(_) => {}
            }
        }
        if held {
            self.held.notify_one();
        }
    }

    /// Sends every held packet that is due.
    fn send_due(&mut self) {
        let now = self.now();
        while let Some((_, outgoing)) = self.relay.poll_due(now) {
            match self.slots.get(outgoing.socket) {
                Some(Some(slot)) if slot.generation == outgoing.generation => {
                    let data = &outgoing.data;
                    if !slot.socket.send(outgoing.to, outgoing.ecn, data, data.len()) {
                        self.send_errors += 1;
                    }
                }
                _ => self.unrouted += 1,
            }
        }
    }
}

/// The relay thread: a current-thread runtime serving every socket until `shutdown`.
fn relay_thread(
    control: Arc<Control>,
    real: Vec<SocketAddr>,
    sockets: Vec<(std::net::UdpSocket, Role)>,
    seed: u64,
    started: std::sync::mpsc::Sender<anyhow::Result<()>>,
    shutdown: oneshot::Receiver<()>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = started.send(Err(error).context("building the relay's runtime"));
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let n = real.len();
        let links = (n + 1) * (n + 1);
        let engine = Rc::new(RefCell::new(Engine {
            control,
            start: Instant::now(),
            version: u64::MAX,
            faults: vec![LinkFault::default(); links],
            healthy: vec![true; links],
            twins: vec![None; n],
            real,
            relay: Relay::new(history::seeds::relay(seed)),
            slots: Vec::new(),
            free: Vec::new(),
            generations: 0,
            mappings: HashMap::new(),
            mapping_order: VecDeque::new(),
            send_errors: 0,
            unrouted: 0,
            evicted: 0,
            receive_calls: 0,
            held: Rc::new(Notify::new()),
            buffers: Rc::new(RefCell::new(Buffers::new())),
        }));
        let mut indices = Vec::new();
        for (socket, role) in sockets {
            match Socket::new(socket, role) {
                Ok(socket) => indices.push(engine.borrow_mut().insert(socket)),
                Err(error) => {
                    let _ = started.send(Err(error).context("registering a relay socket"));
                    return;
                }
            }
        }
        engine.borrow_mut().reload();
        for index in indices {
            let task = tokio::task::spawn_local(serve(engine.clone(), index));
            if let Some(Some(slot)) = engine.borrow_mut().slots.get_mut(index) {
                slot.task = Some(task.abort_handle());
            }
        }
        tokio::task::spawn_local(send_held(engine.clone()));
        tokio::task::spawn_local(publish_stats(engine.clone()));
        let _ = started.send(Ok(()));
        // Ends on `shutdown` or when the `Network` is gone.
        let _ = shutdown.await;
        engine.borrow().publish();
        // Dropping the LocalSet aborts the tasks and closes the sockets.
    });
}

/// The receive buffers, shared by every socket task of the thread (borrowed only between
/// awaits, so never twice at once).
struct Buffers {
    data: Vec<u8>,
    meta: [RecvMeta; BATCH_SIZE],
}

impl Buffers {
    fn new() -> Buffers {
        Buffers { data: vec![0; SLOT_BYTES * BATCH_SIZE], meta: [RecvMeta::default(); BATCH_SIZE] }
    }
}

/// Receives on socket `index` and relays what comes, until the task is aborted.
async fn serve(engine: Rc<RefCell<Engine>>, index: usize) {
    let (socket, buffers) = {
        let engine = engine.borrow();
        let Some(Some(slot)) = engine.slots.get(index) else { return };
        (slot.socket.clone(), engine.buffers.clone())
    };
    loop {
        if socket.io.readable().await.is_err() {
            return;
        }
        let mut buffers = buffers.borrow_mut();
        let Buffers { data, meta } = &mut *buffers;
        let mut count = 0;
        let received = socket.io.try_io(Interest::READABLE, || {
            let mut chunks = data.chunks_mut(SLOT_BYTES);
            let mut slices: [IoSliceMut<'_>; BATCH_SIZE] =
                std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or_default()));
            count = socket.state.recv((&socket.io).into(), &mut slices, meta)?;
            // Fewer than a full batch: the queue was empty when the kernel stopped, so report
            // WouldBlock to clear the readiness now, saving the syscall that would only find
            // it empty. A datagram arriving meanwhile raises readiness again (epoll signals
            // every arrival, and tokio does not clear readiness set after it was read).
            if count < BATCH_SIZE { Err(io::ErrorKind::WouldBlock.into()) } else { Ok(()) }
        });
        // Errors such as ICMP unreachable (a replica gone): keep serving.
        if received.is_err_and(|error| error.kind() != io::ErrorKind::WouldBlock) {
            continue;
        }
        let mut engine_ref = engine.borrow_mut();
        engine_ref.reload();
        engine_ref.receive_calls += u64::from(count > 0);
        for (meta, slot) in meta.iter().zip(data.chunks(SLOT_BYTES)).take(count) {
            let len = meta.len.min(slot.len());
            engine_ref.forward(&engine, index, meta, &slot[..len]);
        }
    }
}

/// Sends held packets when they fall due.
async fn send_held(engine: Rc<RefCell<Engine>>) {
    let held = engine.borrow().held.clone();
    loop {
        let (deadline, start) = {
            let mut engine = engine.borrow_mut();
            engine.send_due();
            (engine.relay.next_deadline(), engine.start)
        };
        match deadline {
            Some(deadline) => {
                let at = tokio::time::Instant::from_std(start + deadline);
                tokio::select! {
                    _ = tokio::time::sleep_until(at) => {}
                    _ = held.notified() => {}
                }
            }
            None => held.notified().await,
        }
    }
}

/// Publishes the counters every [`STATS_INTERVAL`].
async fn publish_stats(engine: Rc<RefCell<Engine>>) {
    loop {
        tokio::time::sleep(STATS_INTERVAL).await;
        engine.borrow().publish();
    }
}

#[cfg(test)]
mod tests;
