//! The replica process: the sans-IO core inside a single-threaded tokio shell.
//!
//! One task, the main loop, owns the [`Replica`] core: it takes inputs from a bounded channel
//! fed by connection tasks, arms one timer at the core's deadline, and routes the core's outputs
//! (frames to per-peer links and per-client writers, ledger events to `ledger.jsonl`) after every
//! batch of inputs. Connection tasks only decode frames; they never touch the core.
//!
//! Persist before send: after every batch of inputs the core's writes are committed to the redb
//! [`Store`] (`store.redb` beside `ledger.jsonl`) before any message or ledger event goes out.
//! On start, a replica with a non-empty store or ledger recovers from them
//! ([`Replica::recover`]): it was killed and restarted.
//!
//! A replica the run declares Byzantine (`NodeConfig::byzantine`) also runs a
//! [`crate::byzantine::Hook`]: every transmit of the core passes through it, every message from
//! a replica is shown to it before the core, and its timer is armed beside the core's. The
//! control request `behave` switches its behaviours; a correct replica refuses it and runs no
//! hook code at all.
//!
//! Bad input never stops the process: a frame over the limit or one that does not decode
//! closes that connection and is counted; a message the core rejects is counted by the core.

#![allow(clippy::disallowed_methods, reason = "the shell owns the clock the core is fed from")]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tracing::{debug, info, warn};

use super::config::NodeConfig;
use super::control::{CONTROL_FRAME_MAX, ControlRequest, ControlResponse, StatusReport};
use super::frame::{
    FRAME_SIZE_MAX, FrameError, FrameReader, decode, encode_framed, read_frame, write_frame,
    write_framed,
};
use super::link::{self, LinkHandle, LinkTarget};
use super::secrets::SecretMessage;
use super::store::Store;
use super::tls::{Identity, TlsMaterial, peer_identity};
use crate::byzantine::Hook;
use crate::core::{ClientId, Durable, Envelope, Replica, ReplicaId, SignedRequest, Time, Transmit};
use crate::crypto::dealer::PublicKeys;
use crate::flight::{Direction, FlightRecorder};
use crate::node::Node;

/// The most decoded inputs waiting for the main loop. Connection tasks wait when it is full,
/// which pushes back on senders through QUIC flow control.
pub const INPUT_QUEUE_MAX: usize = 8192;

/// The most frame bytes waiting for the main loop, over all inputs: a peer sending maximal
/// frames fills this long before [`INPUT_QUEUE_MAX`], so queued input never takes more memory.
pub const INPUT_BYTES_MAX: usize = 128 << 20;

const _: () = assert!(INPUT_BYTES_MAX >= 2 * FRAME_SIZE_MAX);

/// The most connections one identity may hold; a new one beyond it closes that identity's
/// oldest (a restarted peer reconnects while its old connection has not yet timed out, and a
/// faulty peer cannot crowd out the others).
pub const CONNECTIONS_PER_IDENTITY_MAX: usize = 4;

/// The most inputs the main loop handles before it fires timers and routes outputs.
const INPUT_BATCH_MAX: usize = 512;

/// The most INFORM frames waiting for one client.
const CLIENT_QUEUE_MAX: usize = 256;

/// The most INFORMs waiting for one gateway (shared by its clients).
const GATEWAY_QUEUE_MAX: usize = 16_384;

/// How long a stopping replica waits for its connections to close cleanly.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Application close codes, so a peer's log says why a connection ended.
pub mod close_code {
    /// The certificate names no Ordeal identity this replica accepts.
    pub const REFUSED: u32 = 0x10;
    /// A frame exceeded the maximum size.
    pub const TOO_LARGE: u32 = 0x11;
    /// A frame did not decode.
    pub const MALFORMED: u32 = 0x12;
    /// The replica is stopping.
    pub const STOPPING: u32 = 0x13;
}

/// Network-level counters, shared by the connection tasks.
#[derive(Debug, Default)]
pub struct NetCounters {
    connections_accepted: AtomicU64,
    connections_refused: AtomicU64,
    connections_evicted: AtomicU64,
    handshakes_failed: AtomicU64,
    frames_too_large: AtomicU64,
    frames_malformed: AtomicU64,
    frames_dropped: AtomicU64,
    informs_undeliverable: AtomicU64,
    /// Frames handed to a link or a client's writer, and their bytes (framing included).
    frames_sent: AtomicU64,
    bytes_sent: AtomicU64,
    /// Frames read from replicas and clients, and their bytes.
    frames_received: AtomicU64,
    bytes_received: AtomicU64,
}

impl NetCounters {
    fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    fn sent(&self, bytes: usize) {
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
        self.bytes_sent.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn received(&self, bytes: usize) {
        self.frames_received.fetch_add(1, Ordering::Relaxed);
        self.bytes_received.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> BTreeMap<String, u64> {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        BTreeMap::from([
            ("net.connections_accepted".into(), read(&self.connections_accepted)),
            ("net.connections_refused".into(), read(&self.connections_refused)),
            ("net.connections_evicted".into(), read(&self.connections_evicted)),
            ("net.handshakes_failed".into(), read(&self.handshakes_failed)),
            ("net.frames_too_large".into(), read(&self.frames_too_large)),
            ("net.frames_malformed".into(), read(&self.frames_malformed)),
            ("net.frames_dropped".into(), read(&self.frames_dropped)),
            ("net.informs_undeliverable".into(), read(&self.informs_undeliverable)),
            ("net.frames_sent".into(), read(&self.frames_sent)),
            ("net.bytes_sent".into(), read(&self.bytes_sent)),
            ("net.frames_received".into(), read(&self.frames_received)),
            ("net.bytes_received".into(), read(&self.bytes_received)),
        ])
    }
}

/// An input for the main loop.
enum Input {
    /// A message from a replica (the permit holds its share of [`INPUT_BYTES_MAX`]).
    Peer { from: ReplicaId, envelope: Envelope, _bytes: OwnedSemaphorePermit },
    /// A request from a client.
    Request { from: ClientId, request: SignedRequest, _bytes: OwnedSemaphorePermit },
    /// A client opened its stream: INFORMs for it go to `writer`.
    ClientAttached { client: ClientId, writer: mpsc::Sender<Vec<u8>> },
    /// A gateway opened its stream: INFORMs for its clients `first .. first + count` go to
    /// `writer`.
    GatewayAttached { first: ClientId, count: u32, writer: mpsc::Sender<Vec<u8>> },
    /// A control request, answered on `reply`.
    Control { request: ControlRequest, reply: oneshot::Sender<ControlResponse> },
}

/// Runs a replica process from its configuration file until SIGTERM, SIGINT or a control
/// `stop`.
///
/// # Errors
///
/// Anything that prevents the replica from starting (configuration, keys, certificates, the
/// socket); each error names the file or step.
pub fn run(config_path: &Path) -> anyhow::Result<()> {
    let config = NodeConfig::load(config_path)?;
    if let Some(parent) = config.parent_pid {
        die_with_parent(parent)?;
    }
    // Before anything opens a file: the descriptor must be the inherited one.
    let message = SecretMessage::read_fd(config.secrets_fd, &config.cluster, ReplicaId(config.id))
        .context("receiving the secret message")?;
    let tls_key = message.tls_key().context("the TLS key")?;
    let secrets = message.replica;
    init_logging(&config.log)?;
    let public: PublicKeys = read_json(&config.public_keys).context("public keys")?;
    let public = Arc::new(public);
    let hook = config.byzantine.clone().map(|byzantine| {
        info!(seed = byzantine.seed, "declared Byzantine: behaviours switch over control");
        Hook::new(config.cluster.clone(), secrets.clone(), public.clone(), byzantine)
    });
    let store = Store::open(&config.ledger.with_file_name("store.redb"), config.fsync)?;
    let durable = store.load().context("reading the store")?;
    let recorded = read_ledger(&config.ledger)?;
    let core = if durable == Durable::default() && recorded.is_empty() {
        Replica::new(config.cluster.clone(), secrets, public)
    } else {
        let now = Clock::new(config.epoch_unix_nanos).now();
        info!(
            view = %durable.view,
            blocks = durable.blocks.len(),
            recorded = recorded.len(),
            "recovering from the store"
        );
        Replica::recover(config.cluster.clone(), secrets, public, durable, &recorded, now)
    }
    .context("building the replica")?;
    let tls = TlsMaterial::load(&config.tls, tls_key).context("transport certificates")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(config, core, hook, store, tls))
}

/// The ledger events this replica recorded before (it was restarted). A last line cut by a kill
/// is dropped from the file, so appends start on a fresh line.
fn read_ledger(path: &Path) -> anyhow::Result<Vec<history::LedgerEvent>> {
    let Ok(mut text) = std::fs::read_to_string(path) else { return Ok(Vec::new()) };
    if !text.is_empty() && !text.ends_with('\n') {
        let keep = text.rfind('\n').map_or(0, |end| end + 1);
        text.truncate(keep);
        let file = File::options().write(true).open(path).context("opening the ledger")?;
        file.set_len(keep as u64).context("cutting the ledger's partial last line")?;
    }
    text.lines()
        .enumerate()
        .map(|(line, json)| {
            serde_json::from_str(json)
                .with_context(|| format!("{} line {}", path.display(), line + 1))
        })
        .collect()
}

/// Asks the kernel to kill this process when its parent dies (PR_SET_PDEATHSIG), so a killed
/// harness leaves no replica behind; exits at once if the parent is already gone.
fn die_with_parent(parent: u32) -> anyhow::Result<()> {
    // SAFETY: prctl with PR_SET_PDEATHSIG takes a signal number and no pointers.
    let result = unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    anyhow::ensure!(result == 0, "prctl(PR_SET_PDEATHSIG) failed");
    // SAFETY: getppid has no preconditions.
    let actual = unsafe { libc::getppid() };
    anyhow::ensure!(actual as u32 == parent, "parent {parent} is gone (parent is now {actual})");
    Ok(())
}

fn init_logging(path: &Path) -> anyhow::Result<()> {
    let file = File::create(path).with_context(|| format!("creating log {}", path.display()))?;
    let level = match std::env::var("ORDEAL_LOG").as_deref() {
        Ok("trace") => tracing::Level::TRACE,
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        Ok("error") => tracing::Level::ERROR,
        _ => tracing::Level::INFO,
    };
    // A second initialisation (tests running several replicas in one process) keeps the first.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(file))
        .with_ansi(false)
        .with_max_level(level)
        .try_init();
    Ok(())
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> anyhow::Result<T> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    serde_json::from_reader(std::io::BufReader::new(file))
        .with_context(|| format!("parsing {}", path.display()))
}

/// Binds the endpoint, connects the links and runs the main loop until told to stop.
async fn serve(
    config: NodeConfig,
    core: Replica,
    hook: Option<Hook>,
    store: Store,
    tls: TlsMaterial,
) -> anyhow::Result<()> {
    let id = core.id();
    let cluster = core.config().clone();
    // Handshakes in progress at once (established connections are bounded per identity).
    let handshakes_max = 4 * (u32::from(cluster.replica_count) + cluster.client_count) + 16;
    let server = tls.server_config(handshakes_max).context("server tls config")?;
    let reset = super::endpoint::ResetKey::derive(tls.secret());
    let endpoint = super::endpoint::bind(config.listen, Some(server), Some(reset))
        .with_context(|| format!("binding {}", config.listen))?;
    let counters = Arc::new(NetCounters::default());
    let (inputs, receiver) = mpsc::channel(INPUT_QUEUE_MAX);
    let context = Arc::new(AcceptContext {
        id,
        replica_count: cluster.replica_count,
        client_count: cluster.client_count,
        inputs,
        counters: counters.clone(),
        input_bytes: Arc::new(Semaphore::new(INPUT_BYTES_MAX)),
        connections: std::sync::Mutex::new(HashMap::new()),
        stop_answered: Notify::new(),
    });
    let stop_answered = context.clone();
    tokio::spawn(accept_loop(endpoint.clone(), context));
    let client_config = tls.client_config().context("client tls config")?;
    let links = config
        .peers
        .iter()
        .enumerate()
        .map(|(peer, address)| {
            (peer != usize::from(id.0)).then(|| {
                let target =
                    LinkTarget::replica(&endpoint, &client_config, *address, ReplicaId(peer as u8));
                link::spawn(target, peer, None)
            })
        })
        .collect();
    let ledger = File::options()
        .create(true)
        .append(true)
        .open(&config.ledger)
        .with_context(|| format!("opening ledger {}", config.ledger.display()))?;
    let protocol = cluster.protocol.name();
    info!(replica = %id, listen = %config.listen, protocol, "replica started");
    let mut shell = Shell {
        node: Node::new(core, hook),
        clock: Clock::new(config.epoch_unix_nanos),
        io: ShellIo {
            links,
            clients: HashMap::new(),
            ledger: BufWriter::new(ledger),
            store,
            counters: counters.clone(),
            flight: FlightRecorder::new(Some(config.ledger.with_file_name("flight.jsonl"))),
            now: Time::ZERO,
        },
        counters,
        inputs: receiver,
        stopping: false,
    };
    let result = shell.run().await;
    shell.io.ledger.flush().context("flushing the ledger")?;
    if shell.stopping {
        // Stopped over the control endpoint: let the answer leave before the endpoint closes.
        let _ = tokio::time::timeout(CLOSE_GRACE, stop_answered.stop_answered.notified()).await;
    }
    endpoint.close(close_code::STOPPING.into(), b"stopping");
    let _ = tokio::time::timeout(CLOSE_GRACE, endpoint.wait_idle()).await;
    info!(replica = %id, last_executed = %shell.node.core().last_executed(), "replica stopped");
    result
}

/// Converts between the core's [`Time`] (nanoseconds since the run's time zero) and the
/// monotonic clock.
struct Clock {
    start: Instant,
    /// The run time at `start`.
    offset: Duration,
}

impl Clock {
    fn new(epoch_unix_nanos: u64) -> Clock {
        let now_unix = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        let offset = now_unix.saturating_sub(Duration::from_nanos(epoch_unix_nanos));
        Clock { start: Instant::now(), offset }
    }

    fn now(&self) -> Time {
        Time::from_nanos((self.offset + self.start.elapsed()).as_nanos() as u64)
    }

    fn instant(&self, time: Time) -> tokio::time::Instant {
        let since_start = Duration::from_nanos(time.as_nanos()).saturating_sub(self.offset);
        tokio::time::Instant::from_std(self.start + since_start)
    }
}

struct Shell {
    /// The core, with its hook in a replica the run declares Byzantine.
    node: Node,
    clock: Clock,
    io: ShellIo,
    counters: Arc<NetCounters>,
    inputs: mpsc::Receiver<Input>,
    stopping: bool,
}

/// What the shell does with a node's outputs ([`crate::node::Io`]).
struct ShellIo {
    links: Vec<Option<LinkHandle>>,
    clients: HashMap<ClientId, mpsc::Sender<Vec<u8>>>,
    ledger: BufWriter<File>,
    store: Store,
    counters: Arc<NetCounters>,
    /// The last messages sent and received; `flight.jsonl` when the shell ends (or unwinds).
    flight: FlightRecorder,
    /// The time of the `Ready` being sent (the flight recorder's stamp).
    now: Time,
}

impl crate::node::Io for ShellIo {
    type Error = anyhow::Error;

    /// One redb transaction, committed before anything of the `Ready` leaves.
    fn persist(&mut self, writes: &[crate::core::Write]) -> anyhow::Result<()> {
        self.store.apply(writes)
    }

    /// Written and flushed at once, before any message goes out: the checker reads the ledger
    /// even if this process is killed, and finds there what every INFORM rested on.
    fn record(&mut self, events: &[history::LedgerEvent]) -> anyhow::Result<()> {
        for event in events {
            serde_json::to_writer(&mut self.ledger, event).context("writing the ledger")?;
            self.ledger.write_all(b"\n").context("writing the ledger")?;
        }
        self.ledger.flush().context("flushing the ledger")
    }

    /// Sends one transmit: to a replica's link or a client's writer, counted when dropped.
    fn send(&mut self, transmit: Transmit) {
        match transmit {
            Transmit::Replica { to, envelope } => {
                self.flight.record(self.now, Direction::Sent, to, &envelope);
                let link = self.links.get(to.index()).and_then(Option::as_ref);
                let frame = encode_framed(&envelope);
                let bytes = frame.len();
                if link.is_some_and(|link| link.try_send(frame)) {
                    self.counters.sent(bytes);
                } else {
                    NetCounters::bump(&self.counters.frames_dropped);
                }
            }
            Transmit::Client { to, inform } => {
                let delivered = match self.clients.get(&to) {
                    Some(writer) => {
                        let frame = encode_framed(&inform);
                        let bytes = frame.len();
                        match writer.try_send(frame) {
                            Ok(()) => {
                                self.counters.sent(bytes);
                                true
                            }
                            Err(mpsc::error::TrySendError::Full(_)) => false,
                            Err(mpsc::error::TrySendError::Closed(_)) => {
                                self.clients.remove(&to);
                                false
                            }
                        }
                    }
                    None => false,
                };
                if !delivered {
                    NetCounters::bump(&self.counters.informs_undeliverable);
                }
            }
        }
    }
}

impl Shell {
    async fn run(&mut self) -> anyhow::Result<()> {
        use tokio::signal::unix::{SignalKind, signal};
        let mut terminate = signal(SignalKind::terminate()).context("SIGTERM handler")?;
        let mut interrupt = signal(SignalKind::interrupt()).context("SIGINT handler")?;
        let mut deadline = self.node.deadline();
        // The loop ends on a signal, a control stop, or when every input sender is gone.
        while !self.stopping {
            let wake = deadline.map(|at| self.clock.instant(at));
            tokio::select! {
                biased;
                _ = terminate.recv() => break,
                _ = interrupt.recv() => break,
                input = self.inputs.recv() => match input {
                    Some(input) => {
                        self.handle(input);
                        for _ in 1..INPUT_BATCH_MAX {
                            match self.inputs.try_recv() {
                                Ok(input) => self.handle(input),
                                Err(_) => break,
                            }
                        }
                    }
                    None => break,
                },
                _ = sleep_until(wake), if wake.is_some() => {}
            }
            let now = self.clock.now();
            if deadline.is_some_and(|at| at <= now) {
                self.node.handle_timeout(now);
            }
            self.io.now = now;
            deadline = crate::node::drive(&mut self.node, now, &mut self.io)?;
        }
        Ok(())
    }

    fn handle(&mut self, input: Input) {
        let now = self.clock.now();
        match input {
            Input::Peer { from, envelope, .. } => {
                self.io.flight.record(now, Direction::Received, from, &envelope);
                if let Err(rejection) = self.node.handle_message(now, from, &envelope) {
                    debug!(%from, kind = rejection.kind(), %rejection, "rejected message");
                }
            }
            Input::Request { from, request, .. } => {
                if let Err(rejection) = self.node.handle_request(now, from, request) {
                    debug!(client = %from, kind = rejection.kind(), %rejection, "rejected request");
                }
            }
            Input::ClientAttached { client, writer } => {
                self.io.clients.insert(client, writer);
            }
            Input::GatewayAttached { first, count, writer } => {
                for client in first.0..first.0.saturating_add(count) {
                    self.io.clients.insert(ClientId(client), writer.clone());
                }
            }
            Input::Control { request, reply } => {
                let response = match request {
                    ControlRequest::Status => ControlResponse::Status(self.status()),
                    ControlRequest::Stop => {
                        info!("stop requested over the control endpoint");
                        self.stopping = true;
                        ControlResponse::Stopping
                    }
                    ControlRequest::Behave { behaviours } => {
                        let names: Vec<&str> =
                            behaviours.iter().map(|behaviour| behaviour.name()).collect();
                        if self.node.behave(now, behaviours) {
                            info!(behaviours = ?names, "Byzantine behaviours switched");
                            ControlResponse::Behaving
                        } else {
                            ControlResponse::Refused {
                                reason: "this replica is not declared Byzantine".into(),
                            }
                        }
                    }
                    ControlRequest::Reconnect { peer } => {
                        match self.io.links.get(usize::from(peer)).and_then(Option::as_ref) {
                            Some(link) => {
                                info!(peer, "reconnecting the link as asked");
                                link.reconnect();
                                ControlResponse::Reconnecting
                            }
                            None => ControlResponse::Refused {
                                reason: format!("no link to replica {peer}"),
                            },
                        }
                    }
                };
                // The controller may have given up waiting; nothing to do then.
                let _ = reply.send(response);
            }
        }
    }

    fn status(&self) -> StatusReport {
        let status = self.node.core().status();
        let mut counters = self.counters.snapshot();
        counters.extend(self.node.counter_map());
        counters.extend(crate::crypto::tally::snapshot());
        let peers_connected = self
            .io
            .links
            .iter()
            .enumerate()
            .filter(|(_, link)| link.as_ref().is_some_and(LinkHandle::is_connected))
            .map(|(peer, _)| peer as u8)
            .collect();
        StatusReport {
            id: status.id.0,
            view: status.view.0,
            last_executed: status.last_executed.0,
            state_digest: status.state_digest,
            ledger_head: status.ledger_head,
            ready: self.io.links.iter().flatten().all(LinkHandle::has_connected),
            peers_connected,
            counters,
        }
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// What the connection tasks share.
struct AcceptContext {
    id: ReplicaId,
    replica_count: u8,
    client_count: u32,
    inputs: mpsc::Sender<Input>,
    counters: Arc<NetCounters>,
    input_bytes: Arc<Semaphore>,
    /// Each identity's open connections, oldest first.
    connections: std::sync::Mutex<HashMap<Identity, VecDeque<quinn::Connection>>>,
    /// Set once the answer to a control `stop` is on its way.
    stop_answered: Notify,
}

impl AcceptContext {
    /// Whether `identity` may connect to this replica.
    fn admits(&self, identity: Identity) -> bool {
        match identity {
            Identity::Replica(peer) => peer.0 < self.replica_count && peer != self.id,
            Identity::Client(client) => client.0 < self.client_count,
            Identity::Gateway { first, count } => {
                u64::from(first.0) + u64::from(count) <= u64::from(self.client_count)
            }
            Identity::Controller => true,
        }
    }
}

async fn accept_loop(endpoint: quinn::Endpoint, context: Arc<AcceptContext>) {
    // Ends when the endpoint closes.
    while let Some(incoming) = endpoint.accept().await {
        tokio::spawn(serve_connection(incoming, context.clone()));
    }
}

impl AcceptContext {
    /// Registers a connection of `identity`; closes and forgets the identity's oldest one if it
    /// already holds [`CONNECTIONS_PER_IDENTITY_MAX`].
    fn register(&self, identity: Identity, connection: &quinn::Connection) {
        let mut connections =
            self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let open = connections.entry(identity).or_default();
        if open.len() >= CONNECTIONS_PER_IDENTITY_MAX
            && let Some(oldest) = open.pop_front()
        {
            NetCounters::bump(&self.counters.connections_evicted);
            oldest.close(close_code::REFUSED.into(), b"superseded by a newer connection");
        }
        open.push_back(connection.clone());
    }

    fn unregister(&self, identity: Identity, connection: &quinn::Connection) {
        let mut connections =
            self.connections.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(open) = connections.get_mut(&identity) {
            open.retain(|other| other.stable_id() != connection.stable_id());
            if open.is_empty() {
                connections.remove(&identity);
            }
        }
    }
}

async fn serve_connection(incoming: quinn::Incoming, context: Arc<AcceptContext>) {
    let remote = incoming.remote_address();
    let connection = match incoming.await {
        Ok(connection) => connection,
        Err(error) => {
            NetCounters::bump(&context.counters.handshakes_failed);
            warn!(%remote, %error, "handshake failed");
            return;
        }
    };
    let identity = peer_identity(&connection).filter(|identity| context.admits(*identity));
    let Some(identity) = identity else {
        NetCounters::bump(&context.counters.connections_refused);
        warn!(%remote, "refused a connection: its certificate names no identity accepted here");
        connection.close(close_code::REFUSED.into(), b"refused");
        return;
    };
    context.register(identity, &connection);
    NetCounters::bump(&context.counters.connections_accepted);
    debug!(%remote, %identity, "connection accepted");
    // At most 4 streams at a time per connection (transport config); each gets a task.
    while let Ok((send, recv)) = connection.accept_bi().await {
        let context = context.clone();
        let connection = connection.clone();
        tokio::spawn(async move {
            match identity {
                Identity::Controller => serve_control(send, recv, &context).await,
                _ => serve_stream(connection, identity, send, recv, &context, remote).await,
            }
        });
    }
    context.unregister(identity, &connection);
}

/// Reads frames from a replica, client or gateway stream into the main loop; for a client or
/// gateway, also starts the writer for its INFORMs.
async fn serve_stream(
    connection: quinn::Connection,
    identity: Identity,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    context: &AcceptContext,
    remote: SocketAddr,
) {
    let mut frames = FrameReader::new(recv, FRAME_SIZE_MAX);
    let attached = match identity {
        Identity::Client(client) => {
            let (writer, frames) = mpsc::channel(CLIENT_QUEUE_MAX);
            tokio::spawn(write_frames(send, frames));
            Some(Input::ClientAttached { client, writer })
        }
        Identity::Gateway { first, count } => {
            let (writer, frames) = mpsc::channel(GATEWAY_QUEUE_MAX);
            tokio::spawn(write_frames(send, frames));
            Some(Input::GatewayAttached { first, count, writer })
        }
        Identity::Replica(_) | Identity::Controller => None,
    };
    if let Some(attached) = attached
        && context.inputs.send(attached).await.is_err()
    {
        return;
    }
    loop {
        let frame = match frames.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => return,
            Err(error) => {
                let (counter, code) = match error {
                    FrameError::TooLarge { .. } => {
                        (&context.counters.frames_too_large, close_code::TOO_LARGE)
                    }
                    FrameError::Stream(_) => return,
                    _ => (&context.counters.frames_malformed, close_code::MALFORMED),
                };
                NetCounters::bump(counter);
                warn!(%remote, %identity, %error, "closing connection");
                connection.close(code.into(), error.to_string().as_bytes());
                return;
            }
        };
        if frame.is_empty() {
            // The stream's announcement.
            continue;
        }
        context.counters.received(frame.len());
        let bytes = context.input_bytes.clone().acquire_many_owned(frame.len() as u32);
        let Ok(bytes) = bytes.await else { return };
        let input = match identity {
            Identity::Replica(from) => {
                decode(&frame).map(|envelope| Input::Peer { from, envelope, _bytes: bytes })
            }
            Identity::Client(from) => {
                decode(&frame).map(|request| Input::Request { from, request, _bytes: bytes })
            }
            Identity::Gateway { first, .. } => decode(&frame).map(|request: SignedRequest| {
                // A gateway speaks for the clients of its range: a request of another client
                // is handed on as its first client's, which the core refuses as a mismatch.
                let claimed = request.body.client;
                let from = if identity.speaks_for(claimed) { claimed } else { first };
                Input::Request { from, request, _bytes: bytes }
            }),
            Identity::Controller => unreachable!("control streams are served apart"),
        };
        match input {
            Ok(input) => {
                if context.inputs.send(input).await.is_err() {
                    return;
                }
            }
            Err(error) => {
                NetCounters::bump(&context.counters.frames_malformed);
                warn!(%remote, %identity, %error, "closing connection");
                connection.close(close_code::MALFORMED.into(), b"malformed frame");
                return;
            }
        }
    }
}

async fn write_frames(mut send: quinn::SendStream, mut frames: mpsc::Receiver<Vec<u8>>) {
    while let Some(frame) = frames.recv().await {
        if write_framed(&mut send, &frame).await.is_err() {
            return;
        }
    }
}

/// Answers control requests, one per stream.
async fn serve_control(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    context: &AcceptContext,
) {
    let Ok(Some(frame)) = read_frame(&mut recv, CONTROL_FRAME_MAX).await else { return };
    let Ok(request) = serde_json::from_slice::<ControlRequest>(&frame) else {
        NetCounters::bump(&context.counters.frames_malformed);
        return;
    };
    let (reply, answer) = oneshot::channel();
    if context.inputs.send(Input::Control { request, reply }).await.is_err() {
        return;
    }
    let Ok(response) = answer.await else { return };
    let stopping = response == ControlResponse::Stopping;
    let bytes = serde_json::to_vec(&response).expect("control responses serialize");
    if write_frame(&mut send, &bytes).await.is_ok() {
        let _ = send.finish();
        // Let the answer reach the controller before the stream is dropped.
        let _ = tokio::time::timeout(CLOSE_GRACE, send.stopped()).await;
    }
    if stopping {
        context.stop_answered.notify_one();
    }
}
