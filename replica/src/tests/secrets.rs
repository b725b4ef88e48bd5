//! The secret message a replica process reads its keys from: it round-trips, through bytes and
//! through a real pipe, and every malformed message is refused with its own error.

use std::io::Write as _;
use std::os::fd::IntoRawFd as _;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::core::{Config, Protocol, ReplicaId};
use crate::crypto::dealer::ClusterKeys;
use crate::net::secrets::{MAGIC, SecretMessage, SecretsError, TLS_KEY_PEM_BYTES_MAX};

/// A PKCS#8 ed25519 key with an all-zero seed: PEM that parses, and no one's secret.
const TLS_KEY_PEM: &str = "-----BEGIN PRIVATE KEY-----\n\
                           MC4CAQAwBQYDK2VwBCIEIAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n\
                           -----END PRIVATE KEY-----\n";

/// A cluster of 4 replicas and 3 clients, and replica 1's message.
fn setup() -> (Config, SecretMessage) {
    let config = Config::new(Protocol::PoeMac, 4, 3);
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let keys = ClusterKeys::generate(&mut rng, 4, 3, config.nf() as u32).expect("keys");
    let message =
        SecretMessage { tls_key_pem: TLS_KEY_PEM.to_string(), replica: keys.replicas[1].clone() };
    (config, message)
}

/// The message's keys, comparable (`ReplicaSecrets` has no `PartialEq`, by design).
fn keys_json(message: &SecretMessage) -> serde_json::Value {
    serde_json::to_value(&message.replica).expect("secrets serialize")
}

#[test]
fn secret_message_round_trips() {
    let (config, message) = setup();
    let bytes = message.encode();
    assert!(bytes.starts_with(&MAGIC));
    assert!(bytes.len() <= SecretMessage::bytes_max(&config), "{} bytes", bytes.len());
    let read = SecretMessage::read_from(&bytes[..], &config, ReplicaId(1)).expect("it decodes");
    assert_eq!(read.tls_key_pem, TLS_KEY_PEM);
    assert_eq!(keys_json(&read), keys_json(&message));
    assert!(read.tls_key().is_ok());
    let shown = format!("{read:?}");
    assert_eq!(shown, "SecretMessage(replica 1)", "Debug never shows a key");
}

/// The bound holds for the largest message this cluster's keys make, with the largest TLS key.
#[test]
fn secret_message_bound_covers_the_largest_message() {
    let (config, mut message) = setup();
    let body = "A".repeat(TLS_KEY_PEM_BYTES_MAX - 60);
    message.tls_key_pem =
        format!("-----BEGIN PRIVATE KEY-----\n{body}\n-----END PRIVATE KEY-----\n");
    assert!(message.tls_key_pem.len() <= TLS_KEY_PEM_BYTES_MAX);
    let bytes = message.encode();
    assert!(bytes.len() <= SecretMessage::bytes_max(&config), "{} bytes", bytes.len());
    let read = SecretMessage::read_from(&bytes[..], &config, ReplicaId(1));
    assert!(read.is_ok(), "{read:?}");
}

#[test]
fn secret_message_refuses_malformed_input() {
    let (config, message) = setup();
    let bytes = message.encode();
    let bytes_max = SecretMessage::bytes_max(&config);
    let read = |bytes: &[u8], id: u8| {
        SecretMessage::read_from(bytes, &config, ReplicaId(id)).map(|message| message.replica.id)
    };
    assert_eq!(read(b"", 1), Err(SecretsError::Missing));
    assert_eq!(read(b"hello", 1), Err(SecretsError::NotASecretMessage { bytes: 5 }));
    // A JSON secrets file of the old kind is no secret message either.
    let json = serde_json::to_vec(&message.replica).unwrap();
    assert_eq!(read(&json, 1), Err(SecretsError::NotASecretMessage { bytes: json.len() }));
    let cut = read(&bytes[..bytes.len() / 2], 1);
    assert!(matches!(cut, Err(SecretsError::Malformed { .. })), "{cut:?}");
    let header_only = read(&MAGIC, 1);
    assert!(matches!(header_only, Err(SecretsError::Malformed { .. })), "{header_only:?}");
    let mut trailing = bytes.clone();
    trailing.push(0);
    assert_eq!(read(&trailing, 1), Err(SecretsError::Trailing { bytes: 1 }));
    assert_eq!(read(&bytes, 2), Err(SecretsError::WrongReplica { expected: 2, actual: 1 }));
    let mut huge = bytes.clone();
    huge.resize(bytes_max + 1, 0);
    assert_eq!(read(&huge, 1), Err(SecretsError::TooLarge { bytes_max }));
    let mut bad_key = message.clone();
    bad_key.tls_key_pem = "not a key".to_string();
    let refused = read(&bad_key.encode(), 1);
    assert!(matches!(refused, Err(SecretsError::TlsKey { .. })), "{refused:?}");
    let mut long_key = message.clone();
    long_key.tls_key_pem = format!("{TLS_KEY_PEM}{}", " ".repeat(TLS_KEY_PEM_BYTES_MAX));
    let refused = read(&long_key.encode(), 1);
    assert!(matches!(refused, Err(SecretsError::TlsKey { .. })), "{refused:?}");
    // The errors say what went wrong, for the replica's stdout.log.
    let text = SecretsError::WrongReplica { expected: 2, actual: 1 }.to_string();
    assert_eq!(text, "secrets of replica 1 given to replica 2");
}

/// The way a replica process gets it: an inherited pipe descriptor, read to end of file, then
/// closed; a descriptor that is not open is refused before any read.
#[test]
fn secret_message_through_a_pipe() {
    let (config, message) = setup();
    let (reader, mut writer) = std::io::pipe().expect("a pipe");
    writer.write_all(&message.encode()).expect("fits in the pipe's buffer");
    drop(writer);
    let fd = reader.into_raw_fd();
    let read = SecretMessage::read_fd(fd, &config, ReplicaId(1)).expect("it decodes");
    assert_eq!(keys_json(&read), keys_json(&message));
    let (reader, writer) = std::io::pipe().expect("a pipe");
    drop(writer);
    let empty = SecretMessage::read_fd(reader.into_raw_fd(), &config, ReplicaId(1));
    assert_eq!(empty.map(|_| ()), Err(SecretsError::Missing), "the sender died before writing");
    for fd in [-1, i32::MAX] {
        let refused = SecretMessage::read_fd(fd, &config, ReplicaId(1)).map(|_| ());
        assert_eq!(refused, Err(SecretsError::NotOpen { fd }));
    }
}
