//! Ed25519 signatures (ed25519-dalek): for messages that must convince a third party, such as
//! client requests (checked by every replica) and signed supports carried as view-change
//! evidence.
//!
//! Batch verification checks many signatures for about half the cost of checking them one by
//! one; when a batch fails, [`find_invalid`] names the culprits. Every replica runs the same
//! procedure on the same batch, so all honest replicas reach the same decision.

use ed25519_dalek::{Signer as _, Verifier as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::encoding::{self, byte_array_newtype};

byte_array_newtype!(
    /// An ed25519 signature.
    Signature,
    64
);

/// A signature did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid ed25519 signature")]
pub struct SignatureError;

/// An ed25519 signing key (secret). Zeroized on drop by ed25519-dalek.
#[derive(Clone)]
pub struct SigningKey(ed25519_dalek::SigningKey);

impl SigningKey {
    /// The key derived from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        Signature(self.0.sign(message).to_bytes())
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        write!(f, "SigningKey({:?})", self.public_key())
    }
}

impl Serialize for SigningKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize(&self.0.to_bytes(), serializer)
    }
}

impl<'de> Deserialize<'de> for SigningKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SigningKey, D::Error> {
        encoding::deserialize::<D, 32>(deserializer).map(SigningKey::from_seed)
    }
}

/// An ed25519 public key, parsed once (decompression is not free).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey(ed25519_dalek::VerifyingKey);

impl PublicKey {
    /// Parses 32 bytes.
    ///
    /// # Errors
    ///
    /// [`SignatureError`] when the bytes are not a valid point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, SignatureError> {
        ed25519_dalek::VerifyingKey::from_bytes(bytes).map(PublicKey).map_err(|_| SignatureError)
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.to_bytes()
    }

    /// Verifies one signature.
    ///
    /// # Errors
    ///
    /// [`SignatureError`] when it does not verify.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        let signature = ed25519_dalek::Signature::from_bytes(&signature.0);
        self.0.verify(message, &signature).map_err(|_| SignatureError)
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.0.as_bytes()[..4]))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize(self.0.as_bytes(), serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PublicKey, D::Error> {
        let bytes = encoding::deserialize::<D, 32>(deserializer)?;
        PublicKey::from_bytes(&bytes)
            .map_err(|_| serde::de::Error::custom("invalid ed25519 public key"))
    }
}

/// One signature to check: who, what, and the signature.
#[derive(Debug, Clone, Copy)]
pub struct SignedMessage<'a> {
    /// The signer's public key.
    pub key: &'a PublicKey,
    /// The exact bytes that were signed.
    pub message: &'a [u8],
    /// The signature.
    pub signature: &'a Signature,
}

/// Verifies every signature of `items` at once.
///
/// # Errors
///
/// [`SignatureError`] when at least one does not verify ([`find_invalid`] says which).
pub fn verify_batch(items: &[SignedMessage<'_>]) -> Result<(), SignatureError> {
    match items {
        [] => Ok(()),
        // A batch of one costs more than a plain verification.
        [item] => item.key.verify(item.message, item.signature),
        _ => {
            let messages: Vec<&[u8]> = items.iter().map(|item| item.message).collect();
            let signatures: Vec<ed25519_dalek::Signature> = items
                .iter()
                .map(|item| ed25519_dalek::Signature::from_bytes(&item.signature.0))
                .collect();
            let keys: Vec<ed25519_dalek::VerifyingKey> =
                items.iter().map(|item| item.key.0).collect();
            ed25519_dalek::verify_batch(&messages, &signatures, &keys).map_err(|_| SignatureError)
        }
    }
}

/// The positions in `items` whose signature does not verify on its own.
pub fn find_invalid(items: &[SignedMessage<'_>]) -> Vec<usize> {
    items
        .iter()
        .enumerate()
        .filter(|(_, item)| item.key.verify(item.message, item.signature).is_err())
        .map(|(index, _)| index)
        .collect()
}
