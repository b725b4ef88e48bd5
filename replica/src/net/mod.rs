//! The IO shell: everything that touches sockets, files and the clock.
//!
//! - [`shell`]: the replica process (`replica` binary): config, QUIC endpoint, main loop,
//!   ledger file, control endpoint.
//! - [`tls`]: mutual TLS and peer identities.
//! - [`frame`]: length-prefixed frames with a size limit.
//! - [`endpoint`]: QUIC endpoints with large socket buffers.
//! - [`link`]: outgoing links that keep a connection up and reconnect.
//! - [`client`]: a client's links to every replica.
//! - [`control`]: the control protocol and the controller's side of it.
//! - [`config`]: the replica's configuration file.
//! - [`secrets`]: the secret message a replica reads its keys from (never a file).
//!
//! **Invariant:** only this module (and the binaries) know sockets and wire formats; the core
//! sees decoded messages and `Time` values.

pub mod client;
pub mod config;
pub mod control;
pub mod endpoint;
pub mod frame;
pub mod link;
pub mod secrets;
pub mod shell;
pub mod store;
pub mod tls;

pub use shell::run;
