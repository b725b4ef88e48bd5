//! The client side of the transport: one link per replica, announced on connect, carrying
//! signed requests out and INFORMs back.
//!
//! A client either has links of its own ([`ClientTransport::connect`], its own identity and
//! connections), or shares a [`Gateway`]'s: one connection per replica for a range of
//! clients, so that the requests and INFORMs of many clients share packets. The client's code
//! is the same either way.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::mpsc;

use super::frame::{decode, encode_framed};
use super::link::{self, LinkHandle, LinkTarget};
use super::tls::{TlsError, TlsMaterial};
use crate::core::{AuthenticatedInform, ClientId, ReplicaId, SignedRequest};

/// The most INFORMs waiting for one client.
const INFORM_QUEUE_MAX: usize = 1024;

/// The most INFORMs waiting for a gateway's demultiplexer.
const GATEWAY_INFORM_QUEUE_MAX: usize = 16_384;

/// A client's connections to every replica.
#[derive(Debug)]
pub struct ClientTransport {
    links: Arc<[LinkHandle]>,
    informs: Informs,
    malformed: u64,
}

/// Where a client's INFORMs come from.
#[derive(Debug)]
enum Informs {
    /// Its own links' frames, decoded by [`ClientTransport::recv`].
    Own(mpsc::Receiver<(usize, Vec<u8>)>),
    /// Its gateway's demultiplexer, decoded there.
    Gateway(mpsc::Receiver<(usize, AuthenticatedInform)>),
}

impl ClientTransport {
    /// Starts one link per replica address from `endpoint`, presenting the client's `tls`
    /// identity. Links connect in the background and reconnect when they drop.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when the client's TLS material is unusable.
    pub fn connect(
        endpoint: &quinn::Endpoint,
        tls: &TlsMaterial,
        replicas: &[SocketAddr],
    ) -> Result<ClientTransport, TlsError> {
        let (inbound, informs) = mpsc::channel(INFORM_QUEUE_MAX);
        let links = spawn_links(endpoint, tls, replicas, &inbound)?;
        Ok(ClientTransport { links, informs: Informs::Own(informs), malformed: 0 })
    }

    /// Whether every link has connected at least once.
    pub fn is_connected(&self) -> bool {
        self.links.iter().all(LinkHandle::has_connected)
    }

    /// Queues `request` for replica `to`; false when it had to be dropped (the client core
    /// retransmits).
    pub fn send(&self, to: ReplicaId, request: &SignedRequest) -> bool {
        self.links.get(to.index()).is_some_and(|link| link.try_send(encode_framed(request)))
    }

    /// The number of replicas it has links to.
    pub fn replica_count(&self) -> usize {
        self.links.len().max(1)
    }

    /// Queues an already framed buffer for replica `to`, whatever it holds (a Byzantine
    /// client's malformed or oversized frames); false when it had to be dropped.
    pub fn send_frame(&self, to: ReplicaId, frame: Vec<u8>) -> bool {
        self.links.get(to.index()).is_some_and(|link| link.try_send(frame))
    }

    /// The next INFORM, with the replica whose link it came on; `None` when every link is gone.
    /// Undecodable frames are skipped and counted.
    pub async fn recv(&mut self) -> Option<(ReplicaId, AuthenticatedInform)> {
        match &mut self.informs {
            Informs::Gateway(informs) => {
                let (replica, inform) = informs.recv().await?;
                Some((ReplicaId(replica as u8), inform))
            }
            Informs::Own(informs) => loop {
                let (replica, frame) = informs.recv().await?;
                match decode(&frame) {
                    Ok(inform) => return Some((ReplicaId(replica as u8), inform)),
                    Err(_) => self.malformed += 1,
                }
            },
        }
    }

    /// How many undecodable frames were skipped.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}

/// One link per replica address, their frames going to `inbound`.
fn spawn_links(
    endpoint: &quinn::Endpoint,
    tls: &TlsMaterial,
    replicas: &[SocketAddr],
    inbound: &link::Inbound,
) -> Result<Arc<[LinkHandle]>, TlsError> {
    let config = tls.client_config()?;
    Ok(replicas
        .iter()
        .enumerate()
        .map(|(replica, address)| {
            let target = LinkTarget::replica(endpoint, &config, *address, ReplicaId(replica as u8));
            link::spawn(target, replica, Some(inbound.clone()))
        })
        .collect())
}

/// A gateway: the links of the clients `first .. first + count` to every replica, one
/// connection per replica presenting a gateway identity ([`super::tls::Identity::Gateway`]).
/// A task hands each INFORM to the client it names; requests go out on the shared links.
#[derive(Debug)]
pub struct Gateway {
    links: Arc<[LinkHandle]>,
    counts: Arc<DemuxCounts>,
}

#[derive(Debug, Default)]
struct DemuxCounts {
    malformed: AtomicU64,
    misaddressed: AtomicU64,
    dropped: AtomicU64,
}

/// What a gateway's demultiplexer dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GatewayCounts {
    /// Frames that were no INFORM.
    pub malformed: u64,
    /// INFORMs naming a client outside the gateway's range.
    pub misaddressed: u64,
    /// INFORMs dropped because their client's queue was full (its core retransmits).
    pub dropped: u64,
}

impl Gateway {
    /// Starts the gateway's links (inside a tokio runtime: they are tasks) and returns it with
    /// one transport per client of its range, in order.
    ///
    /// # Errors
    ///
    /// [`TlsError`] when the gateway's TLS material is unusable.
    pub fn connect(
        endpoint: &quinn::Endpoint,
        tls: &TlsMaterial,
        replicas: &[SocketAddr],
        first: ClientId,
        count: u32,
    ) -> Result<(Gateway, Vec<ClientTransport>), TlsError> {
        let (inbound, frames) = mpsc::channel(GATEWAY_INFORM_QUEUE_MAX);
        let links = spawn_links(endpoint, tls, replicas, &inbound)?;
        let mut members = Vec::with_capacity(count as usize);
        let mut transports = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let (member, informs) = mpsc::channel(INFORM_QUEUE_MAX);
            members.push(member);
            transports.push(ClientTransport {
                links: links.clone(),
                informs: Informs::Gateway(informs),
                malformed: 0,
            });
        }
        let counts = Arc::new(DemuxCounts::default());
        // It ends when every link (the gateway's and its clients' handles) is gone.
        tokio::spawn(demultiplex(frames, members, first, counts.clone()));
        Ok((Gateway { links, counts }, transports))
    }

    /// Whether every link has connected at least once.
    pub fn is_connected(&self) -> bool {
        self.links.iter().all(LinkHandle::has_connected)
    }

    /// What its demultiplexer dropped so far.
    pub fn counts(&self) -> GatewayCounts {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        GatewayCounts {
            malformed: read(&self.counts.malformed),
            misaddressed: read(&self.counts.misaddressed),
            dropped: read(&self.counts.dropped),
        }
    }
}

/// Hands each INFORM frame to the client it names, until the links are gone.
async fn demultiplex(
    mut frames: mpsc::Receiver<(usize, Vec<u8>)>,
    members: Vec<mpsc::Sender<(usize, AuthenticatedInform)>>,
    first: ClientId,
    counts: Arc<DemuxCounts>,
) {
    let bump = |counter: &AtomicU64| counter.fetch_add(1, Ordering::Relaxed);
    while let Some((replica, frame)) = frames.recv().await {
        let Ok(inform) = decode::<AuthenticatedInform>(&frame) else {
            bump(&counts.malformed);
            continue;
        };
        let index = inform.inform.client.0.checked_sub(first.0);
        match index.and_then(|index| members.get(index as usize)) {
            // A full queue drops the INFORM: the client retransmits, and the replica resends.
            Some(member) => {
                if member.try_send((replica, inform)).is_err() {
                    bump(&counts.dropped);
                }
            }
            None => {
                bump(&counts.misaddressed);
            }
        }
    }
}
