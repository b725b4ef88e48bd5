//! Outgoing links: one task per destination keeps a QUIC connection up and writes frames from a
//! bounded queue, reconnecting with capped exponential backoff when the connection dies.
//!
//! A link opens one bidirectional stream per connection and announces it at once with an empty
//! frame (QUIC streams are invisible to the peer until data flows), so a replica can answer a
//! client on it before the client's first request arrives. Frames the peer writes back (INFORMs
//! to a client) are passed to an optional inbound queue.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Notify, mpsc};
use tracing::debug;

use super::frame::{FRAME_SIZE_MAX, FrameReader, framed, write_framed};
use super::tls::Identity;
use crate::core::ReplicaId;

/// The most frames waiting for one destination; beyond it new frames are dropped (the protocol
/// tolerates loss: clients retransmit, and a replica that misses slots falls behind).
pub const LINK_QUEUE_MAX: usize = 4096;

/// The most bytes waiting for one destination (a peer that stops reading cannot make us hold
/// more).
pub const LINK_BYTES_MAX: usize = 16 << 20;

/// A connection that lived at least this long resets the reconnection backoff; one that dies
/// sooner (a peer that accepts, then refuses) keeps it growing.
const HEALTHY_CONNECTION: Duration = Duration::from_secs(1);

/// The first reconnection delay.
const BACKOFF_MIN: Duration = Duration::from_millis(20);

/// The longest reconnection delay: a restarted peer is reached within about a second.
const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// How long one connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Where and how a link connects.
#[derive(Debug, Clone)]
pub struct LinkTarget {
    /// The local endpoint to connect from.
    pub endpoint: quinn::Endpoint,
    /// TLS and transport settings.
    pub config: quinn::ClientConfig,
    /// The destination.
    pub address: SocketAddr,
    /// The name its certificate must carry.
    pub server_name: String,
    /// The largest frame accepted back.
    pub frame_max: usize,
}

impl LinkTarget {
    /// A link to replica `replica` at `address`, whose certificate must name it.
    pub fn replica(
        endpoint: &quinn::Endpoint,
        config: &quinn::ClientConfig,
        address: SocketAddr,
        replica: ReplicaId,
    ) -> LinkTarget {
        LinkTarget {
            endpoint: endpoint.clone(),
            config: config.clone(),
            address,
            server_name: Identity::Replica(replica).dns_name(),
            frame_max: FRAME_SIZE_MAX,
        }
    }
}

/// Frames the peer sends back, tagged with the link's index.
pub type Inbound = mpsc::Sender<(usize, Vec<u8>)>;

/// The sending side of a link.
#[derive(Debug, Clone)]
pub struct LinkHandle {
    queue: mpsc::Sender<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
    connected: Arc<AtomicBool>,
    ever_connected: Arc<AtomicBool>,
    reset: Arc<Notify>,
}

impl LinkHandle {
    /// Closes the link's connection, if it has one, and connects again at once (the harness
    /// asks for it when the relay routes the link to another process: a twin, or back).
    pub fn reconnect(&self) {
        self.reset.notify_waiters();
    }

    /// Queues a frame (already length-prefixed: `frame::framed`, `frame::encode_framed`); false
    /// (and the frame is dropped) when the queue is full or the link is gone.
    pub fn try_send(&self, frame: Vec<u8>) -> bool {
        let size = frame.len();
        if size > FRAME_SIZE_MAX + 4 {
            return false;
        }
        if self.queued_bytes.fetch_add(size, Ordering::Relaxed) + size > LINK_BYTES_MAX {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        if self.queue.try_send(frame).is_err() {
            self.queued_bytes.fetch_sub(size, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Whether the link has a connection now.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Whether the link has ever connected.
    pub fn has_connected(&self) -> bool {
        self.ever_connected.load(Ordering::Relaxed)
    }
}

/// Starts a link task to `target`. Frames the peer sends back go to `inbound` tagged with
/// `index`. The task ends when every [`LinkHandle`] is dropped.
pub fn spawn(target: LinkTarget, index: usize, inbound: Option<Inbound>) -> LinkHandle {
    let (queue, receiver) = mpsc::channel(LINK_QUEUE_MAX);
    let handle = LinkHandle {
        queue,
        queued_bytes: Arc::new(AtomicUsize::new(0)),
        connected: Arc::new(AtomicBool::new(false)),
        ever_connected: Arc::new(AtomicBool::new(false)),
        reset: Arc::new(Notify::new()),
    };
    let flags = (handle.connected.clone(), handle.ever_connected.clone());
    let reset = handle.reset.clone();
    tokio::spawn(run(target, index, receiver, handle.queued_bytes.clone(), inbound, flags, reset));
    handle
}

async fn run(
    target: LinkTarget,
    index: usize,
    mut frames: mpsc::Receiver<Vec<u8>>,
    queued_bytes: Arc<AtomicUsize>,
    inbound: Option<Inbound>,
    (connected, ever_connected): (Arc<AtomicBool>, Arc<AtomicBool>),
    reset: Arc<Notify>,
) {
    let mut backoff = BACKOFF_MIN;
    // Bounded by the link's lifetime: it ends when its handles are dropped.
    while !frames.is_closed() {
        let Some((connection, mut send, recv)) = connect(&target).await else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            continue;
        };
        let connected_at = tokio::time::Instant::now();
        if let Some(inbound) = &inbound {
            tokio::spawn(read_back(
                connection.clone(),
                recv,
                index,
                inbound.clone(),
                target.frame_max,
            ));
        }
        connected.store(true, Ordering::Relaxed);
        ever_connected.store(true, Ordering::Relaxed);
        let mut asked = false;
        loop {
            tokio::select! {
                frame = frames.recv() => match frame {
                    Some(frame) => {
                        queued_bytes.fetch_sub(frame.len(), Ordering::Relaxed);
                        if let Err(error) = write_framed(&mut send, &frame).await {
                            debug!(to = %target.server_name, %error, "link write failed");
                            connection.close(1u32.into(), b"link write failed");
                            break;
                        }
                    }
                    None => {
                        connection.close(0u32.into(), b"link closed");
                        connected.store(false, Ordering::Relaxed);
                        return;
                    }
                },
                _ = connection.closed() => break,
                _ = reset.notified() => {
                    connection.close(0u32.into(), b"reconnecting");
                    asked = true;
                    break;
                }
            }
        }
        connected.store(false, Ordering::Relaxed);
        if asked || connected_at.elapsed() >= HEALTHY_CONNECTION {
            backoff = BACKOFF_MIN;
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }
}

/// Connects and opens the link's stream, announced with an empty frame.
async fn connect(
    target: &LinkTarget,
) -> Option<(quinn::Connection, quinn::SendStream, quinn::RecvStream)> {
    let connecting = target
        .endpoint
        .connect_with(target.config.clone(), target.address, &target.server_name)
        .ok()?;
    let connection = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => {
            debug!(to = %target.server_name, %error, "link connect failed");
            return None;
        }
        Err(_) => return None,
    };
    let (mut send, recv) = connection.open_bi().await.ok()?;
    write_framed(&mut send, &framed(&[])).await.ok()?;
    Some((connection, send, recv))
}

/// Passes the frames the peer writes back to `inbound` until the stream or connection ends; a
/// frame over the limit closes the connection.
async fn read_back(
    connection: quinn::Connection,
    recv: quinn::RecvStream,
    index: usize,
    inbound: Inbound,
    frame_max: usize,
) {
    let mut frames = FrameReader::new(recv, frame_max);
    loop {
        match frames.next().await {
            Ok(Some(frame)) if frame.is_empty() => {}
            Ok(Some(frame)) => {
                if inbound.send((index, frame)).await.is_err() {
                    return;
                }
            }
            Ok(None) => return,
            Err(error) => {
                debug!(%error, "link read failed");
                connection.close(1u32.into(), b"bad frame");
                return;
            }
        }
    }
}
