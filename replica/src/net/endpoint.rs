//! QUIC endpoints on UDP sockets with large buffers, and stateless resets that outlive a restart.
//!
//! The default receive buffer (about 200 KiB) overflows when hundreds of connections share a
//! socket and the process is briefly busy (a replica verifying a batch): the kernel then drops
//! datagrams and QUIC must retransmit them. Endpoints ask for [`SOCKET_BUFFER_BYTES`] in each
//! direction; the kernel caps the request at `net.core.rmem_max` / `wmem_max`.
//!
//! A replica killed and restarted within the peers' idle timeout would otherwise be deaf for up
//! to that timeout: the peers keep sending on their connections to the dead process, the new
//! process drops those packets as carrying connection IDs it never issued (quinn hashes a random
//! key into each ID it issues), and even when it answers them its stateless resets carry tokens
//! from a fresh random key that the peers do not accept. A replica's endpoint therefore takes
//! both keys from its own secret ([`ResetKey::derive`]): the restarted process recognises the
//! old connections' IDs as its own and answers them with resets the peers accept (RFC 9000
//! §10.3), and the peers close those connections at once and reconnect.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha256;

/// The socket buffer size asked for.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// The key of an endpoint's stateless reset tokens (HMAC-SHA256), the same in every
/// incarnation of one node.
#[derive(Clone)]
pub struct ResetKey([u8; 32]);

impl std::fmt::Debug for ResetKey {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("ResetKey(..)")
    }
}

impl ResetKey {
    /// The key derived from a node's secret (its TLS private key): only that node knows it,
    /// and it survives a restart.
    pub fn derive(secret: &[u8]) -> ResetKey {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"ordeal/quic-stateless-reset/v1")
            .expect("hmac takes any key length");
        mac.update(secret);
        ResetKey(mac.finalize().into_bytes().into())
    }

    /// The key quinn hashes into the connection IDs it issues, so that it recognises those of
    /// an earlier incarnation.
    fn cid_key(&self) -> u64 {
        let mut mac = self.hmac();
        mac.update(b"connection ids");
        let tag = mac.finalize().into_bytes();
        u64::from_le_bytes(tag[..8].try_into().expect("8 bytes"))
    }

    fn hmac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("hmac takes any key length")
    }
}

impl quinn::crypto::HmacKey for ResetKey {
    fn sign(&self, data: &[u8], signature_out: &mut [u8]) {
        let mut mac = self.hmac();
        mac.update(data);
        let tag = mac.finalize().into_bytes();
        let length = signature_out.len().min(tag.len());
        signature_out[..length].copy_from_slice(&tag[..length]);
    }

    fn signature_len(&self) -> usize {
        32
    }

    fn verify(&self, data: &[u8], signature: &[u8]) -> Result<(), quinn::crypto::CryptoError> {
        let mut mac = self.hmac();
        mac.update(data);
        mac.verify_slice(signature).map_err(|_| quinn::crypto::CryptoError)
    }
}

/// A QUIC endpoint bound to `address`, accepting connections when `server` is given; its
/// stateless resets are keyed with `reset` when given (a replica), else with a random key
/// (the harness and clients, whose restarts nobody waits for).
///
/// # Errors
///
/// When the socket cannot be bound or the endpoint cannot be created.
pub fn bind(
    address: SocketAddr,
    server: Option<quinn::ServerConfig>,
    reset: Option<ResetKey>,
) -> io::Result<quinn::Endpoint> {
    let socket = UdpSocket::bind(address)?;
    set_buffer(&socket, libc::SO_RCVBUF);
    set_buffer(&socket, libc::SO_SNDBUF);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| io::Error::other("no async runtime for the QUIC endpoint"))?;
    let config = match reset {
        Some(key) => {
            let cid_key = key.cid_key();
            let mut config = quinn::EndpointConfig::new(Arc::new(key));
            config.cid_generator(move || {
                Box::new(quinn_proto::HashedConnectionIdGenerator::from_key(cid_key))
            });
            config
        }
        None => quinn::EndpointConfig::default(),
    };
    quinn::Endpoint::new(config, server, socket, runtime)
}

/// Best effort: a smaller buffer only costs retransmissions.
fn set_buffer(socket: &UdpSocket, option: libc::c_int) {
    use std::os::fd::AsRawFd as _;
    let size = SOCKET_BUFFER_BYTES as libc::c_int;
    // SAFETY: a valid socket descriptor, a pointer to an int and its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            option,
            (&size as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}
