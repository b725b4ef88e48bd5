//! QUIC endpoints on UDP sockets with large buffers.
//!
//! The default receive buffer (about 200 KiB) overflows when hundreds of connections share a
//! socket and the process is briefly busy (a replica verifying a batch): the kernel then drops
//! datagrams and QUIC must retransmit them. Endpoints ask for [`SOCKET_BUFFER_BYTES`] in each
//! direction; the kernel caps the request at `net.core.rmem_max` / `wmem_max`.

use std::io;
use std::net::{SocketAddr, UdpSocket};

/// The socket buffer size asked for.
pub const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// A QUIC endpoint bound to `address`, accepting connections when `server` is given.
///
/// # Errors
///
/// When the socket cannot be bound or the endpoint cannot be created.
pub fn bind(
    address: SocketAddr,
    server: Option<quinn::ServerConfig>,
) -> io::Result<quinn::Endpoint> {
    let socket = UdpSocket::bind(address)?;
    set_buffer(&socket, libc::SO_RCVBUF);
    set_buffer(&socket, libc::SO_SNDBUF);
    let runtime = quinn::default_runtime()
        .ok_or_else(|| io::Error::other("no async runtime for the QUIC endpoint"))?;
    quinn::Endpoint::new(quinn::EndpointConfig::default(), server, socket, runtime)
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
