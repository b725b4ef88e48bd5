//! The trusted dealer: generates every key of a cluster of n replicas and C clients, and the
//! per-node views of them that are written to key files.
//!
//! - every replica and client gets an ed25519 signing key;
//! - the replicas get shares of one (nf, n) BLS threshold key;
//! - every pair of nodes that talk point to point (replica–replica, replica–client) shares an
//!   HMAC key, derived from a master secret that exists only inside [`ClusterKeys::generate`].
//!
//! A node's secrets file ([`ReplicaSecrets`], [`ClientSecrets`]) holds its own keys only;
//! [`PublicKeys`] is shared by all.

use serde::{Deserialize, Serialize};

use super::Scheme;
use super::ed25519::{PublicKey, SigningKey};
use super::mac::MacKey;
use super::threshold::{self, SecretShare, ThresholdError, ThresholdPublicKeys};

/// What every node knows: the public keys of the cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublicKeys {
    /// Replica i's ed25519 key at position i.
    pub replicas: Vec<PublicKey>,
    /// Client c's ed25519 key at position c.
    pub clients: Vec<PublicKey>,
    /// The replicas' threshold key.
    pub threshold: ThresholdPublicKeys,
}

/// One replica's secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReplicaSecrets {
    /// The replica id.
    pub id: u32,
    /// Its ed25519 key.
    pub signing_key: SigningKey,
    /// Its threshold share (signer index = id).
    pub threshold_share: SecretShare,
    /// The key shared with replica j at position j (its own position holds an unused key).
    pub replica_macs: Vec<MacKey>,
    /// The key shared with client c at position c.
    pub client_macs: Vec<MacKey>,
}

/// One client's secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClientSecrets {
    /// The client id.
    pub id: u32,
    /// Its ed25519 key, which signs its requests.
    pub signing_key: SigningKey,
    /// The key shared with replica i at position i.
    pub replica_macs: Vec<MacKey>,
}

/// Every key of a cluster, as the dealer made them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterKeys {
    /// The public keys.
    pub public: PublicKeys,
    /// Replica i's secrets at position i.
    pub replicas: Vec<ReplicaSecrets>,
    /// Client c's secrets at position c.
    pub clients: Vec<ClientSecrets>,
}

impl ClusterKeys {
    /// Generates the keys of `replica_count` replicas and `client_count` clients, with a
    /// threshold key that needs `quorum` shares (Ordeal uses nf = n − f).
    ///
    /// # Errors
    ///
    /// [`ThresholdError::InvalidParameters`] unless 1 ≤ quorum ≤ replica_count ≤
    /// [`threshold::SIGNER_COUNT_MAX`].
    pub fn generate(
        rng: &mut impl rand::CryptoRng,
        replica_count: u32,
        client_count: u32,
        quorum: u32,
    ) -> Result<ClusterKeys, ThresholdError> {
        ClusterKeys::generate_with(rng, replica_count, client_count, quorum, Scheme::Real)
    }

    /// [`ClusterKeys::generate`] with the signing keys and threshold shares in `scheme` (the
    /// simulator's sweeps use [`Scheme::Simulated`]; the same draws give the same public key
    /// bytes either way). MAC keys are HMAC in both.
    ///
    /// # Errors
    ///
    /// As [`ClusterKeys::generate`].
    pub fn generate_with(
        rng: &mut impl rand::CryptoRng,
        replica_count: u32,
        client_count: u32,
        quorum: u32,
        scheme: Scheme,
    ) -> Result<ClusterKeys, ThresholdError> {
        let (threshold, shares) = threshold::deal_with(rng, quorum, replica_count, scheme)?;
        let master = MacKey(random_bytes(rng));
        let key = |seed: [u8; 32]| match scheme {
            Scheme::Real => SigningKey::from_seed(seed),
            Scheme::Simulated => SigningKey::simulated(seed),
        };
        let replica_keys: Vec<SigningKey> =
            (0..replica_count).map(|_| key(random_bytes(rng))).collect();
        let client_keys: Vec<SigningKey> =
            (0..client_count).map(|_| key(random_bytes(rng))).collect();
        let public = PublicKeys {
            replicas: replica_keys.iter().map(SigningKey::public_key).collect(),
            clients: client_keys.iter().map(SigningKey::public_key).collect(),
            threshold,
        };
        let replicas = replica_keys
            .into_iter()
            .zip(shares)
            .enumerate()
            .map(|(id, (signing_key, threshold_share))| {
                let id = id as u32;
                ReplicaSecrets {
                    id,
                    signing_key,
                    threshold_share,
                    replica_macs: (0..replica_count)
                        .map(|other| replica_pair_key(&master, id, other))
                        .collect(),
                    client_macs: (0..client_count)
                        .map(|client| client_pair_key(&master, id, client))
                        .collect(),
                }
            })
            .collect();
        let clients = client_keys
            .into_iter()
            .enumerate()
            .map(|(id, signing_key)| ClientSecrets {
                id: id as u32,
                signing_key,
                replica_macs: (0..replica_count)
                    .map(|replica| client_pair_key(&master, replica, id as u32))
                    .collect(),
            })
            .collect();
        Ok(ClusterKeys { public, replicas, clients })
    }
}

fn random_bytes(rng: &mut impl rand::CryptoRng) -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// The key of replicas a and b; symmetric in a and b.
fn replica_pair_key(master: &MacKey, a: u32, b: u32) -> MacKey {
    let (low, high) = (a.min(b), a.max(b));
    MacKey(
        master.tag(&[b"ordeal/pair/replica-replica/v1", &low.to_le_bytes(), &high.to_le_bytes()]).0,
    )
}

/// The key of replica r and client c.
fn client_pair_key(master: &MacKey, replica: u32, client: u32) -> MacKey {
    MacKey(
        master
            .tag(&[b"ordeal/pair/replica-client/v1", &replica.to_le_bytes(), &client.to_le_bytes()])
            .0,
    )
}
