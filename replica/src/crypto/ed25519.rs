//! Ed25519 signatures: for messages that must convince a third party, such as client requests
//! (checked by every replica) and signed supports carried as view-change evidence.
//!
//! Signing is ed25519-dalek's. Verification follows ZIP 215 on curve25519-dalek's group
//! operations: s must be canonical, R and A any decompressible encoding, and the **cofactored**
//! equation `[8]([s]B − R − [k]A) = 0` must hold with `k = SHA-512(R ‖ A ‖ M)`. Under that rule a
//! single verification and a batch verification accept exactly the same signatures (up to a
//! 2^-128 chance per batch), so whether a request is accepted never depends on which batch it
//! travelled in: a client cannot craft a signature (say, with a small-order component in R)
//! that passes at the primary and fails at the backups. Standard signatures satisfy the rule.
//!
//! Batch verification checks many signatures for about half the cost of checking them one by
//! one; when a batch fails, [`find_invalid`] names the culprits.

use curve25519_dalek::constants::ED25519_BASEPOINT_POINT;
use curve25519_dalek::edwards::{CompressedEdwardsY, EdwardsPoint};
use curve25519_dalek::scalar::Scalar;
use curve25519_dalek::traits::{IsIdentity, VartimeMultiscalarMul};
use ed25519_dalek::Signer as _;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha512};

use super::encoding::{self, byte_array_newtype};
use super::{Scheme, tally};

byte_array_newtype!(
    /// An ed25519 signature: R (32 bytes) then s (32 bytes).
    Signature,
    64
);

/// A signature did not verify, or a key is not a valid point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid ed25519 signature")]
pub struct SignatureError;

/// The simulated scheme's signature of `message` by the holder of `key` (the public key's
/// bytes).
pub fn simulated_signature(key: &[u8; 32], message: &[u8]) -> Signature {
    let mut hash = Sha512::new();
    hash.update(b"ordeal/simulated-signature/v1");
    hash.update(key);
    hash.update(message);
    Signature(hash.finalize().into())
}

/// An ed25519 signing key (secret). Zeroized on drop by ed25519-dalek.
#[derive(Clone)]
pub struct SigningKey {
    key: ed25519_dalek::SigningKey,
    scheme: Scheme,
}

impl SigningKey {
    /// The key derived from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> SigningKey {
        SigningKey { key: ed25519_dalek::SigningKey::from_bytes(&seed), scheme: Scheme::Real }
    }

    /// The key derived from a 32-byte seed that signs with [`Scheme::Simulated`]; its public
    /// key's bytes are the real key's.
    pub fn simulated(seed: [u8; 32]) -> SigningKey {
        SigningKey { scheme: Scheme::Simulated, ..SigningKey::from_seed(seed) }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        let key = PublicKey::from_bytes(&self.key.verifying_key().to_bytes())
            .expect("a signing key's public key is a valid point");
        PublicKey { scheme: self.scheme, ..key }
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Signature {
        tally::add(tally::Op::Ed25519Sign, 1);
        match self.scheme {
            Scheme::Real => Signature(self.key.sign(message).to_bytes()),
            Scheme::Simulated => simulated_signature(&self.key.verifying_key().to_bytes(), message),
        }
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
        encoding::serialize(&self.key.to_bytes(), serializer)
    }
}

impl<'de> Deserialize<'de> for SigningKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SigningKey, D::Error> {
        encoding::deserialize::<D, 32>(deserializer).map(SigningKey::from_seed)
    }
}

/// An ed25519 public key, decompressed once (decompression is not free).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct PublicKey {
    bytes: [u8; 32],
    point: EdwardsPoint,
    scheme: Scheme,
}

impl PublicKey {
    /// Parses 32 bytes.
    ///
    /// # Errors
    ///
    /// [`SignatureError`] when the bytes are not a point, or are a point of small order (with
    /// such a key every signature on every message would verify).
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<PublicKey, SignatureError> {
        let point = CompressedEdwardsY(*bytes).decompress().ok_or(SignatureError)?;
        if point.is_small_order() {
            return Err(SignatureError);
        }
        Ok(PublicKey { bytes: *bytes, point, scheme: Scheme::Real })
    }

    /// The 32-byte encoding.
    pub fn to_bytes(&self) -> [u8; 32] {
        self.bytes
    }

    /// How it verifies.
    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    /// Verifies one signature.
    ///
    /// # Errors
    ///
    /// [`SignatureError`] when it does not verify.
    pub fn verify(&self, message: &[u8], signature: &Signature) -> Result<(), SignatureError> {
        tally::add(tally::Op::Ed25519Verify, 1);
        if self.scheme == Scheme::Simulated {
            let expected = simulated_signature(&self.bytes, message);
            return if expected == *signature { Ok(()) } else { Err(SignatureError) };
        }
        let parsed = Parsed::new(self, message, signature)?;
        // [s]B − [k]A − R, times the cofactor.
        let sb_minus_ka =
            EdwardsPoint::vartime_double_scalar_mul_basepoint(&parsed.k, &-self.point, &parsed.s);
        if (sb_minus_ka - parsed.r).mul_by_cofactor().is_identity() {
            Ok(())
        } else {
            Err(SignatureError)
        }
    }
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey({})", hex::encode(&self.bytes[..4]))
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize(&self.bytes, serializer)
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<PublicKey, D::Error> {
        let bytes = encoding::deserialize::<D, 32>(deserializer)?;
        PublicKey::from_bytes(&bytes)
            .map_err(|_| serde::de::Error::custom("invalid ed25519 public key"))
    }
}

/// A signature taken apart: R decompressed, s canonical, and the challenge k.
struct Parsed {
    r: EdwardsPoint,
    s: Scalar,
    k: Scalar,
}

impl Parsed {
    fn new(
        key: &PublicKey,
        message: &[u8],
        signature: &Signature,
    ) -> Result<Parsed, SignatureError> {
        let r_bytes: [u8; 32] = signature.0[..32].try_into().expect("64-byte signature");
        let s_bytes: [u8; 32] = signature.0[32..].try_into().expect("64-byte signature");
        let r = CompressedEdwardsY(r_bytes).decompress().ok_or(SignatureError)?;
        let s = Option::from(Scalar::from_canonical_bytes(s_bytes)).ok_or(SignatureError)?;
        let mut hash = Sha512::new();
        hash.update(r_bytes);
        hash.update(key.bytes);
        hash.update(message);
        let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
        Ok(Parsed { r, s, k })
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

/// Verifies every signature of `items` at once: Σ z_i·(R_i + k_i·A_i − s_i·B), times the
/// cofactor, must vanish for 128-bit coefficients z_i drawn from a hash of every input (so
/// nobody can choose them).
///
/// # Errors
///
/// [`SignatureError`] when at least one does not verify ([`find_invalid`] says which).
pub fn verify_batch(items: &[SignedMessage<'_>]) -> Result<(), SignatureError> {
    match items {
        [] => return Ok(()),
        // A batch of one costs more than a plain verification.
        [item] => return item.key.verify(item.message, item.signature),
        _ => {}
    }
    if items.iter().any(|item| item.key.scheme == Scheme::Simulated) {
        // Simulated signatures are checked one by one: they cost a hash each.
        return match find_invalid(items).is_empty() {
            true => Ok(()),
            false => Err(SignatureError),
        };
    }
    tally::add(tally::Op::Ed25519BatchVerify, items.len() as u64);
    let parsed: Vec<Parsed> = items
        .iter()
        .map(|item| Parsed::new(item.key, item.message, item.signature))
        .collect::<Result<_, _>>()?;
    let mut transcript = Sha512::new();
    transcript.update(b"ordeal/ed25519-batch/v1");
    for (item, parsed) in items.iter().zip(&parsed) {
        transcript.update(item.signature.0);
        transcript.update(item.key.bytes);
        transcript.update(parsed.k.as_bytes());
    }
    let seed: [u8; 64] = transcript.finalize().into();
    let mut rng = ChaCha8Rng::from_seed(seed[..32].try_into().expect("32-byte seed"));
    let zs: Vec<Scalar> = parsed
        .iter()
        .map(|_| Scalar::from(u128::from(rng.next_u64()) << 64 | u128::from(rng.next_u64())))
        .collect();
    let base_coefficient: Scalar = parsed.iter().zip(&zs).map(|(p, z)| z * p.s).sum();
    let scalars = std::iter::once(-base_coefficient)
        .chain(zs.iter().copied())
        .chain(parsed.iter().zip(&zs).map(|(p, z)| z * p.k));
    let points = std::iter::once(ED25519_BASEPOINT_POINT)
        .chain(parsed.iter().map(|p| p.r))
        .chain(items.iter().map(|item| item.key.point));
    let sum = EdwardsPoint::vartime_multiscalar_mul(scalars, points);
    if sum.mul_by_cofactor().is_identity() { Ok(()) } else { Err(SignatureError) }
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
