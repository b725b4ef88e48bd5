//! Mutual TLS for QUIC: every node holds a certificate signed by the run's CA, and a peer is
//! identified by the certificate it presents.
//!
//! A certificate names its holder in a DNS subject alternative name: `r3.replica.ordeal`,
//! `c17.client.ordeal`, `g16-32.gateway.ordeal` or `controller.ordeal`
//! ([`Identity::dns_name`]). TLS (rustls with the ring provider, TLS 1.3 only, ALPN
//! [`ALPN`]) checks the chain to the CA on both sides; [`peer_identity`] then reads the name.
//! A certificate from another CA never completes the handshake; one from our CA without an
//! Ordeal name is refused by the caller.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};

use crate::core::{ClientId, ReplicaId};

/// The ALPN protocol of Ordeal's QUIC connections.
pub const ALPN: &[u8] = b"ordeal/1";

/// How long a connection may stay silent before it is considered dead. Keep-alives
/// ([`KEEP_ALIVE_INTERVAL`]) keep healthy idle connections open, so this only fires when the
/// peer is gone (crashed, paused, partitioned): long enough to ride out a short pause, short
/// enough that a link reconnects within seconds.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How often an idle connection sends a keep-alive: well under [`IDLE_TIMEOUT`].
pub const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(2);

const _: () = assert!(KEEP_ALIVE_INTERVAL.as_millis() * 3 <= IDLE_TIMEOUT.as_millis());

/// The most clients one gateway speaks for.
pub const GATEWAY_CLIENTS_MAX: u32 = 4096;

/// Who is at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Identity {
    /// A replica.
    Replica(ReplicaId),
    /// A client.
    Client(ClientId),
    /// A client gateway: one connection carrying the requests and INFORMs of the clients
    /// `first .. first + count` ([`super::client::Gateway`]), so that many clients share
    /// packets. Each request is still signed by its client; the gateway may only speak for
    /// its range. It is trusted as far as its range goes: it receives its clients' INFORMs
    /// and may fill their pending-request slots. Only the harness's CA issues gateway
    /// certificates, for `ordeal bench`.
    Gateway {
        /// The first client.
        first: ClientId,
        /// How many clients, at most [`GATEWAY_CLIENTS_MAX`].
        count: u32,
    },
    /// The harness's controller (the only identity allowed on the control endpoint).
    Controller,
}

impl Identity {
    /// The DNS name the identity's certificate carries.
    pub fn dns_name(&self) -> String {
        match self {
            Identity::Replica(id) => format!("r{id}.replica.ordeal"),
            Identity::Client(id) => format!("c{id}.client.ordeal"),
            Identity::Gateway { first, count } => format!("g{}-{count}.gateway.ordeal", first.0),
            Identity::Controller => "controller.ordeal".to_string(),
        }
    }

    /// Whether this identity may send requests of `client`.
    pub fn speaks_for(&self, client: ClientId) -> bool {
        match *self {
            Identity::Client(id) => id == client,
            Identity::Gateway { first, count } => {
                client.0 >= first.0 && u64::from(client.0) < u64::from(first.0) + u64::from(count)
            }
            Identity::Replica(_) | Identity::Controller => false,
        }
    }

    /// Parses a DNS name made by [`Identity::dns_name`].
    pub fn parse(name: &str) -> Option<Identity> {
        if name == "controller.ordeal" {
            return Some(Identity::Controller);
        }
        let (label, domain) = name.split_once('.')?;
        let number = |prefix: char| label.strip_prefix(prefix)?.parse::<u32>().ok();
        match domain {
            "replica.ordeal" => {
                u8::try_from(number('r')?).ok().map(|id| Identity::Replica(ReplicaId(id)))
            }
            "client.ordeal" => number('c').map(|id| Identity::Client(ClientId(id))),
            "gateway.ordeal" => {
                let (first, count) = label.strip_prefix('g')?.split_once('-')?;
                let (first, count) = (first.parse::<u32>().ok()?, count.parse::<u32>().ok()?);
                (1..=GATEWAY_CLIENTS_MAX)
                    .contains(&count)
                    .then_some(Identity::Gateway { first: ClientId(first), count })
            }
            _ => None,
        }
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Replica(id) => write!(f, "replica {id}"),
            Identity::Client(id) => write!(f, "client {id}"),
            Identity::Gateway { first, count } => {
                write!(
                    f,
                    "gateway of clients {}..{}",
                    first.0,
                    u64::from(first.0) + u64::from(*count)
                )
            }
            Identity::Controller => f.write_str("controller"),
        }
    }
}

/// Where a node's TLS certificates are (PEM). Its private key is no file: it comes in the
/// secret message ([`super::secrets`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsFiles {
    /// The run's CA certificate.
    pub ca: PathBuf,
    /// This node's certificate.
    pub cert: PathBuf,
}

/// A TLS file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing or malformed.
    #[error("cannot read {what} from {path}: {reason}")]
    File {
        /// What the file should hold.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why it failed.
        reason: String,
    },
    /// rustls or quinn refused the material.
    #[error("tls configuration: {0}")]
    Config(String),
}

/// A node's TLS material: the CA to trust, and its own certificate and key.
#[derive(Debug)]
pub struct TlsMaterial {
    ca: CertificateDer<'static>,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsMaterial {
    fn clone(&self) -> TlsMaterial {
        TlsMaterial { ca: self.ca.clone(), cert: self.cert.clone(), key: self.key.clone_key() }
    }
}

impl TlsMaterial {
    /// Material from DER values (the harness holds its controller and client material in
    /// memory).
    pub fn new(
        ca: CertificateDer<'static>,
        cert: CertificateDer<'static>,
        key: PrivateKeyDer<'static>,
    ) -> TlsMaterial {
        TlsMaterial { ca, cert, key }
    }

    /// Material from PEM certificate files and the node's private `key`.
    ///
    /// # Errors
    ///
    /// [`TlsError::File`] when a file is missing or holds no usable PEM object.
    pub fn load(files: &TlsFiles, key: PrivateKeyDer<'static>) -> Result<TlsMaterial, TlsError> {
        let file_error = |what, path: &Path, reason: String| TlsError::File {
            what,
            path: path.to_path_buf(),
            reason,
        };
        let ca = CertificateDer::from_pem_file(&files.ca)
            .map_err(|error| file_error("the CA certificate", &files.ca, error.to_string()))?;
        let cert = CertificateDer::from_pem_file(&files.cert)
            .map_err(|error| file_error("a certificate", &files.cert, error.to_string()))?;
        Ok(TlsMaterial { ca, cert, key })
    }

    /// The node's private key bytes (for keys derived from it, such as the QUIC stateless
    /// reset key).
    pub fn secret(&self) -> &[u8] {
        self.key.secret_der()
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(|error| TlsError::Config(error.to_string()))?;
        Ok(Arc::new(roots))
    }

    /// The QUIC server configuration: client certificates required and checked against the
    /// CA; at most `handshakes_max` handshakes in progress at once.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] when rustls or quinn refuse the material.
    pub fn server_config(&self, handshakes_max: u32) -> Result<quinn::ServerConfig, TlsError> {
        let config_error = |error: &dyn fmt::Display| TlsError::Config(error.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            self.roots()?,
            provider.clone(),
        )
        .build()
        .map_err(|error| config_error(&error))?;
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| config_error(&error))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|error| config_error(&error))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|error| config_error(&error))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        server.transport_config(transport_config());
        server.max_incoming(handshakes_max as usize);
        Ok(server)
    }

    /// The QUIC client configuration: the server's certificate checked against the CA and the
    /// name dialled; this node's certificate presented.
    ///
    /// # Errors
    ///
    /// [`TlsError::Config`] when rustls or quinn refuse the material.
    pub fn client_config(&self) -> Result<quinn::ClientConfig, TlsError> {
        let config_error = |error: &dyn fmt::Display| TlsError::Config(error.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| config_error(&error))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())
            .map_err(|error| config_error(&error))?;
        tls.alpn_protocols = vec![ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
            .map_err(|error| config_error(&error))?;
        let mut client = quinn::ClientConfig::new(Arc::new(crypto));
        client.transport_config(transport_config());
        Ok(client)
    }
}

/// The first round-trip estimate. Nodes talk over loopback (about 15 µs), so the 333 ms
/// default would make the first retransmission of a lost handshake packet (for instance to a
/// peer that is not listening yet) wait a second; 10 ms still leaves room for injected delays,
/// which the RTT estimator then learns.
pub const INITIAL_RTT: Duration = Duration::from_millis(10);

/// How many ack-eliciting packets a peer may receive before it must acknowledge, and how long
/// it may wait. A client hears one INFORM per operation from each backup and never writes back
/// on those connections, so acknowledging each one costs a packet per INFORM; letting
/// acknowledgements wait for a few packets or 100 ms halves the packets per operation. The cost
/// is slower loss detection (the sender's probe timeout grows by the delay), which only
/// matters under injected loss, where clients retransmit anyway.
pub const ACK_ELICITING_THRESHOLD: u32 = 8;

/// See [`ACK_ELICITING_THRESHOLD`].
pub const ACK_DELAY_MAX: Duration = Duration::from_millis(100);

/// Transport parameters, chosen on purpose:
/// - acknowledgement frequency: see [`ACK_ELICITING_THRESHOLD`];
/// - idle timeout and keep-alive: see [`IDLE_TIMEOUT`];
/// - initial RTT: see [`INITIAL_RTT`];
/// - a peer may open at most 4 streams of each kind (Ordeal uses one per connection), so a
///   connection cannot make us hold unbounded stream state.
fn transport_config() -> Arc<quinn::TransportConfig> {
    let mut transport = quinn::TransportConfig::default();
    transport
        .max_idle_timeout(Some(IDLE_TIMEOUT.try_into().expect("idle timeout fits a VarInt")))
        .keep_alive_interval(Some(KEEP_ALIVE_INTERVAL))
        .initial_rtt(INITIAL_RTT)
        .max_concurrent_bidi_streams(4u32.into())
        .max_concurrent_uni_streams(4u32.into());
    let mut ack_frequency = quinn::AckFrequencyConfig::default();
    ack_frequency
        .ack_eliciting_threshold(ACK_ELICITING_THRESHOLD.into())
        .max_ack_delay(Some(ACK_DELAY_MAX));
    transport.ack_frequency_config(Some(ack_frequency));
    Arc::new(transport)
}

/// The identity named by the certificate the peer of `connection` presented (its chain was
/// checked against the CA during the handshake). `None` when it names no Ordeal identity.
pub fn peer_identity(connection: &quinn::Connection) -> Option<Identity> {
    let certificates =
        connection.peer_identity()?.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let leaf = certificates.first()?;
    let cert = webpki::EndEntityCert::try_from(leaf).ok()?;
    cert.valid_dns_names().find_map(Identity::parse)
}

/// The identity in a certificate (PEM or DER parsing done by the caller).
pub fn certificate_identity(cert: &CertificateDer<'_>) -> Option<Identity> {
    let cert = webpki::EndEntityCert::try_from(cert).ok()?;
    cert.valid_dns_names().find_map(Identity::parse)
}
