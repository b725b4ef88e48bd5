//! The client side of the transport: one link per replica, announced on connect, carrying
//! signed requests out and INFORMs back.

use std::net::SocketAddr;

use tokio::sync::mpsc;

use super::frame::{decode, encode_framed};
use super::link::{self, LinkHandle, LinkTarget};
use super::tls::{TlsError, TlsMaterial};
use crate::core::{AuthenticatedInform, ReplicaId, SignedRequest};

/// The most INFORMs waiting for one client.
const INFORM_QUEUE_MAX: usize = 1024;

/// A client's connections to every replica.
#[derive(Debug)]
pub struct ClientTransport {
    links: Vec<LinkHandle>,
    informs: mpsc::Receiver<(usize, Vec<u8>)>,
    malformed: u64,
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
        let config = tls.client_config()?;
        let (inbound, informs) = mpsc::channel(INFORM_QUEUE_MAX);
        let links = replicas
            .iter()
            .enumerate()
            .map(|(replica, address)| {
                let target =
                    LinkTarget::replica(endpoint, &config, *address, ReplicaId(replica as u8));
                link::spawn(target, replica, Some(inbound.clone()))
            })
            .collect();
        Ok(ClientTransport { links, informs, malformed: 0 })
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
        loop {
            let (replica, frame) = self.informs.recv().await?;
            match decode(&frame) {
                Ok(inform) => return Some((ReplicaId(replica as u8), inform)),
                Err(_) => self.malformed += 1,
            }
        }
    }

    /// How many undecodable frames were skipped.
    pub fn malformed(&self) -> u64 {
        self.malformed
    }
}
