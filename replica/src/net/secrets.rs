//! The secret message: how a replica process gets its keys without any file holding them.
//!
//! The harness keeps every key in memory. At each start of a replica process (the first, every
//! restart by the nemesis, a twin) it makes a pipe, the child inherits the read end as file
//! descriptor [`SECRETS_FD`] (`NodeConfig::secrets_fd`), and the harness writes one
//! [`SecretMessage`] into it and closes its end. The replica reads it to end of file before
//! anything else ([`SecretMessage::read_fd`]), so a harness killed with SIGKILL leaves no
//! private key in the run directory: there never was one.
//!
//! # Format
//!
//! [`MAGIC`], then the postcard encoding of [`SecretMessage`]: the node's TLS private key
//! (PKCS#8 PEM) and its protocol keys ([`ReplicaSecrets`]). Nothing may follow. A reader takes
//! at most [`SecretMessage::bytes_max`] bytes for the cluster it belongs to.
//!
//! A person can start a replica by hand the same way, from a file:
//! `replica --config config.toml 3< secrets.bin`.
//!
//! **Invariant:** a secret message is never written under a run directory.

use std::fmt;
use std::io::Read;
use std::os::fd::{FromRawFd as _, OwnedFd, RawFd};

use rustls::pki_types::PrivateKeyDer;
use rustls::pki_types::pem::PemObject as _;
use serde::{Deserialize, Serialize};

use crate::core::{Config, ReplicaId};
use crate::crypto::dealer::ReplicaSecrets;

/// The descriptor a replica process reads its secret message from (the first after stdin,
/// stdout and stderr).
pub const SECRETS_FD: RawFd = 3;

/// The first bytes of every secret message: a reader that gets something else (a wrong
/// descriptor, a stray file) says so instead of failing to decode.
pub const MAGIC: [u8; 8] = *b"ORDSEC01";

/// The most bytes of a TLS private key in PEM (a P-256 PKCS#8 key is about 240; an RSA-4096
/// one about 3,300).
pub const TLS_KEY_PEM_BYTES_MAX: usize = 16 * 1024;

/// The most bytes of everything in a message but the TLS key and the MAC keys: the magic,
/// lengths, the id, the signing key and the threshold share.
const FIXED_BYTES_MAX: usize = 1024;

/// The encoded size of one MAC key (a length byte and 32 bytes).
const MAC_KEY_ENCODED_BYTES: usize = 1 + 32;

const _: () = assert!(MAGIC.len() + 5 + 5 + (1 + 32) + (5 + 1 + 32) + 5 + 5 < FIXED_BYTES_MAX);

/// What a replica process is handed at each start: its TLS private key and its protocol keys.
/// `Debug` shows the replica's id only.
#[derive(Clone, Serialize, Deserialize)]
pub struct SecretMessage {
    /// The node's TLS private key, PKCS#8 PEM (a twin has its own; its protocol keys are its
    /// replica's).
    pub tls_key_pem: String,
    /// The replica's protocol keys.
    pub replica: ReplicaSecrets,
}

/// A secret message could not be received.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretsError {
    /// The descriptor is not open: the process was started without a secret message.
    #[error(
        "file descriptor {fd} is not open: start the replica with its secret message on it \
         (the harness does; by hand: `replica --config FILE {fd}< secrets.bin`)"
    )]
    NotOpen {
        /// The descriptor.
        fd: RawFd,
    },
    /// Reading failed.
    #[error("reading the secret message: {reason}")]
    Read {
        /// Why.
        reason: String,
    },
    /// End of file came before any byte: the sender wrote nothing (it died, or was never
    /// there).
    #[error("no secret message arrived (end of file before any byte)")]
    Missing,
    /// More bytes than this cluster's message can have.
    #[error("the secret message is longer than {bytes_max} bytes")]
    TooLarge {
        /// The bound ([`SecretMessage::bytes_max`]).
        bytes_max: usize,
    },
    /// The bytes do not start with [`MAGIC`].
    #[error("not a secret message ({bytes} bytes without the ORDSEC01 header)")]
    NotASecretMessage {
        /// How many bytes arrived.
        bytes: usize,
    },
    /// The header is right but the rest does not decode (cut short, corrupted).
    #[error("malformed secret message: {reason}")]
    Malformed {
        /// The decoder's complaint.
        reason: String,
    },
    /// Bytes follow the message.
    #[error("{bytes} bytes follow the secret message")]
    Trailing {
        /// How many.
        bytes: usize,
    },
    /// The keys are another replica's.
    #[error("secrets of replica {actual} given to replica {expected}")]
    WrongReplica {
        /// The replica reading.
        expected: u32,
        /// The id in the message.
        actual: u32,
    },
    /// The TLS key is no PEM private key.
    #[error("the secret message's TLS key is unusable: {reason}")]
    TlsKey {
        /// Why.
        reason: String,
    },
}

impl fmt::Debug for SecretMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets.
        write!(f, "SecretMessage(replica {})", self.replica.id)
    }
}

impl SecretMessage {
    /// The most bytes a message for a replica of `cluster` can have: the bound of every read.
    pub fn bytes_max(cluster: &Config) -> usize {
        let macs = usize::from(cluster.replica_count) + cluster.client_count as usize;
        FIXED_BYTES_MAX + TLS_KEY_PEM_BYTES_MAX + macs * MAC_KEY_ENCODED_BYTES
    }

    /// The message's bytes: [`MAGIC`] and the postcard encoding.
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_extend(self, MAGIC.to_vec()).expect("postcard encodes secret messages")
    }

    /// Decodes one message for replica `id` from exactly `bytes`, and checks its TLS key.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Missing`], [`SecretsError::NotASecretMessage`],
    /// [`SecretsError::Malformed`], [`SecretsError::Trailing`], [`SecretsError::WrongReplica`]
    /// or [`SecretsError::TlsKey`].
    pub fn decode(bytes: &[u8], id: ReplicaId) -> Result<SecretMessage, SecretsError> {
        if bytes.is_empty() {
            return Err(SecretsError::Missing);
        }
        let Some(body) = bytes.strip_prefix(&MAGIC) else {
            return Err(SecretsError::NotASecretMessage { bytes: bytes.len() });
        };
        let (message, rest): (SecretMessage, _) = postcard::take_from_bytes(body)
            .map_err(|error| SecretsError::Malformed { reason: error.to_string() })?;
        if !rest.is_empty() {
            return Err(SecretsError::Trailing { bytes: rest.len() });
        }
        if message.replica.id != u32::from(id.0) {
            return Err(SecretsError::WrongReplica {
                expected: u32::from(id.0),
                actual: message.replica.id,
            });
        }
        if message.tls_key_pem.len() > TLS_KEY_PEM_BYTES_MAX {
            return Err(SecretsError::TlsKey {
                reason: format!("{} bytes of PEM", message.tls_key_pem.len()),
            });
        }
        message.tls_key()?;
        Ok(message)
    }

    /// Reads one message for replica `id` of `cluster` from `reader` until end of file, at most
    /// [`SecretMessage::bytes_max`] bytes.
    ///
    /// # Errors
    ///
    /// [`SecretsError::Read`], [`SecretsError::TooLarge`], or what [`SecretMessage::decode`]
    /// refuses.
    pub fn read_from(
        reader: impl Read,
        cluster: &Config,
        id: ReplicaId,
    ) -> Result<SecretMessage, SecretsError> {
        let bytes_max = SecretMessage::bytes_max(cluster);
        let mut bytes = Vec::new();
        reader
            .take(bytes_max as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(|error| SecretsError::Read { reason: error.to_string() })?;
        if bytes.len() > bytes_max {
            return Err(SecretsError::TooLarge { bytes_max });
        }
        SecretMessage::decode(&bytes, id)
    }

    /// Reads one message for replica `id` of `cluster` from the inherited descriptor `fd`,
    /// which is closed afterwards. Called once per process, before anything else opens a file
    /// (a descriptor the process opened itself must not be mistaken for the inherited one).
    ///
    /// # Errors
    ///
    /// [`SecretsError::NotOpen`], or what [`SecretMessage::read_from`] refuses.
    pub fn read_fd(
        fd: RawFd,
        cluster: &Config,
        id: ReplicaId,
    ) -> Result<SecretMessage, SecretsError> {
        // SAFETY: fcntl(F_GETFD) takes a descriptor and no pointers; it only asks whether `fd`
        // is open.
        if fd < 0 || unsafe { libc::fcntl(fd, libc::F_GETFD) } == -1 {
            return Err(SecretsError::NotOpen { fd });
        }
        // SAFETY: `fd` is open (checked above) and was inherited for this purpose only: nothing
        // else in the process uses or closes it, and this function is called once, so the
        // `OwnedFd` is its only owner.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        SecretMessage::read_from(std::fs::File::from(owned), cluster, id)
    }

    /// The TLS private key, parsed.
    ///
    /// # Errors
    ///
    /// [`SecretsError::TlsKey`] when the PEM holds no private key.
    pub fn tls_key(&self) -> Result<PrivateKeyDer<'static>, SecretsError> {
        PrivateKeyDer::from_pem_slice(self.tls_key_pem.as_bytes())
            .map_err(|error| SecretsError::TlsKey { reason: error.to_string() })
    }
}
