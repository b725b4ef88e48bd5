//! A (t, n) BLS threshold signature scheme on blst, min_pk variant: public keys in G1 (48
//! bytes compressed), signatures in G2 (96 bytes compressed).
//!
//! A trusted dealer ([`deal`]) draws a random polynomial p of degree t − 1 over the scalar field
//! and gives signer i (a replica id, 0-based) the secret share p(i + 1); the group public key is
//! p(0)·G1. Any t signature shares σ_i = p(i + 1)·H(m) combine by Lagrange interpolation at 0 into
//! p(0)·H(m), the one group signature on m, which verifies against the group public key. Fewer
//! than t shares reveal nothing about it. Ordeal uses t = nf = n − f.
//!
//! Keys dealt for the simulator ([`deal_with`] and [`Scheme::Simulated`]) replace the curve by
//! keyed hashes: a share is SHA-512 over the signer's share key and the message, the group
//! signature the same over the group key, and combining yields the group signature only when
//! every share combined is valid (as interpolation does).
//!
//! Combination is optimistic ([`ThresholdPublicKeys::combine_optimistic`]): combine the first t
//! shares and verify the result once; only when that fails, verify the shares one by one and
//! drop the bad ones.

use blst::min_pk::{
    PublicKey as BlstPublicKey, SecretKey as BlstSecretKey, Signature as BlstSignature,
};
use blst::{blst_fr, blst_p1_affine, blst_p2, blst_p2_affine, blst_scalar};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest as _, Sha512};
use std::sync::{Arc, OnceLock};

use super::encoding::{self, byte_array_newtype};
use super::{Scheme, tally};

/// The hash-to-curve domain separation tag of Ordeal's BLS signatures.
pub const DST: &[u8] = b"ORDEAL_POE_V1_BLS_SIG_BLS12381G2_XMD:SHA-256_SSWU_RO_NUL_";

/// The largest number of signers a dealing supports.
pub const SIGNER_COUNT_MAX: u32 = 256;

byte_array_newtype!(
    /// A compressed G2 point: a signature share or a combined threshold signature.
    BlsSignature,
    96
);

/// A message prepared for threshold operations: hashed to G2 once, the first time a BLS
/// operation needs it, so that signing a share and verifying shares and the group signature on
/// the same message do not each hash it again (hash-to-curve is about a sixth of a
/// verification). Under [`Scheme::Simulated`] it is never hashed to the curve. Clones share the
/// hash.
#[derive(Clone)]
pub struct PreparedMessage(Arc<Prepared>);

struct Prepared {
    message: Box<[u8]>,
    point: OnceLock<blst_p2_affine>,
}

impl PreparedMessage {
    /// Prepares `message` (hashed to G2 under [`DST`] when first needed).
    pub fn new(message: &[u8]) -> PreparedMessage {
        PreparedMessage(Arc::new(Prepared { message: message.into(), point: OnceLock::new() }))
    }

    /// The message's bytes.
    fn message(&self) -> &[u8] {
        &self.0.message
    }

    /// The message hashed to G2.
    fn point(&self) -> &blst_p2_affine {
        self.0.point.get_or_init(|| {
            let message = &self.0.message;
            let mut point = blst_p2::default();
            let mut affine = blst_p2_affine::default();
            // SAFETY: the message and tag slices are valid for their lengths; no augmentation.
            unsafe {
                blst::blst_hash_to_g2(
                    &mut point,
                    message.as_ptr(),
                    message.len(),
                    DST.as_ptr(),
                    DST.len(),
                    std::ptr::null(),
                    0,
                );
                blst::blst_p2_to_affine(&mut affine, &point);
            }
            affine
        })
    }
}

impl std::fmt::Debug for PreparedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PreparedMessage")
    }
}

/// Domain tags of the simulated scheme ([`Scheme::Simulated`]).
const SIMULATED_SHARE: &[u8] = b"ordeal/simulated-threshold-share/v1";
const SIMULATED_GROUP: &[u8] = b"ordeal/simulated-threshold-signature/v1";
const SIMULATED_GARBLED: &[u8] = b"ordeal/simulated-threshold-garbled/v1";

/// The simulated scheme's signature under `key`: SHA-512 of `tag`, the key and the message,
/// padded to the 96 bytes of a real one.
fn simulated(tag: &[u8], key: &BlsPublicKey, message: &[u8]) -> BlsSignature {
    let mut hash = Sha512::new();
    hash.update(tag);
    hash.update(key.0.compress());
    hash.update(message);
    let mut bytes = [0u8; 96];
    bytes[..64].copy_from_slice(&hash.finalize());
    BlsSignature(bytes)
}

/// Why a threshold operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ThresholdError {
    /// The signer index is not below the number of signers.
    #[error("unknown signer {signer} (signers: {signer_count})")]
    UnknownSigner {
        /// The index given.
        signer: u32,
        /// The number of signers of the dealing.
        signer_count: u32,
    },
    /// The same signer appears twice among the shares to combine.
    #[error("duplicate share from signer {signer}")]
    DuplicateSigner {
        /// The signer.
        signer: u32,
    },
    /// Combination needs exactly the threshold number of shares.
    #[error("combination needs {expected} shares, got {actual}")]
    WrongShareCount {
        /// The threshold.
        expected: u32,
        /// The shares given.
        actual: u32,
    },
    /// The bytes are not a point of G2.
    #[error("signature bytes of signer {signer:?} are not a valid G2 point")]
    InvalidEncoding {
        /// The signer whose share failed to decode, if a share.
        signer: Option<u32>,
    },
    /// The signature does not verify.
    #[error("signature does not verify")]
    VerificationFailed,
    /// The dealing parameters are impossible.
    #[error("cannot deal {threshold}-of-{signer_count} shares")]
    InvalidParameters {
        /// The threshold asked for.
        threshold: u32,
        /// The number of signers asked for.
        signer_count: u32,
    },
}

/// A BLS public key (G1), validated on parse.
#[derive(Clone, PartialEq, Eq)]
pub struct BlsPublicKey(BlstPublicKey);

impl std::fmt::Debug for BlsPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "BlsPublicKey({})", hex::encode(&self.0.compress()[..4]))
    }
}

impl Serialize for BlsPublicKey {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        encoding::serialize(&self.0.compress(), serializer)
    }
}

impl<'de> Deserialize<'de> for BlsPublicKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<BlsPublicKey, D::Error> {
        let bytes = encoding::deserialize::<D, 48>(deserializer)?;
        // key_validate: on the curve, in the subgroup, not the identity.
        BlstPublicKey::key_validate(&bytes)
            .map(BlsPublicKey)
            .map_err(|error| serde::de::Error::custom(format!("invalid bls public key: {error:?}")))
    }
}

/// One signer's secret share. Zeroized on drop by blst.
#[derive(Clone)]
pub struct SecretShare {
    signer: u32,
    key: BlstSecretKey,
    /// The matching share key (what the simulated scheme hashes).
    public: BlsPublicKey,
    scheme: Scheme,
}

impl std::fmt::Debug for SecretShare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretShare(signer {})", self.signer)
    }
}

#[derive(Serialize, Deserialize)]
struct SecretShareFile {
    signer: u32,
    #[serde(with = "scalar_hex")]
    key: [u8; 32],
}

mod scalar_hex {
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        super::encoding::serialize(bytes, s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        super::encoding::deserialize::<D, 32>(d)
    }
}

impl Serialize for SecretShare {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        SecretShareFile { signer: self.signer, key: self.key.to_bytes() }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SecretShare {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<SecretShare, D::Error> {
        let file = SecretShareFile::deserialize(deserializer)?;
        let key = BlstSecretKey::from_bytes(&file.key)
            .map_err(|error| serde::de::Error::custom(format!("invalid bls secret: {error:?}")))?;
        let public = BlsPublicKey(key.sk_to_pk());
        Ok(SecretShare { signer: file.signer, key, public, scheme: Scheme::Real })
    }
}

impl SecretShare {
    /// The signer (replica id) this share belongs to.
    pub fn signer(&self) -> u32 {
        self.signer
    }

    /// This signer's share of the group signature on `message`.
    pub fn sign(&self, message: &PreparedMessage) -> BlsSignature {
        tally::add(tally::Op::BlsShareSign, 1);
        if self.scheme == Scheme::Simulated {
            return simulated(SIMULATED_SHARE, &self.public, message.message());
        }
        let scalar: &blst_scalar = (&self.key).into();
        let mut point = blst_p2::default();
        let mut hash = blst_p2::default();
        let mut affine = blst_p2_affine::default();
        // SAFETY: live blst values; `scalar` is the validated secret key.
        unsafe {
            blst::blst_p2_from_affine(&mut hash, message.point());
            blst::blst_sign_pk_in_g1(&mut point, &hash, scalar);
            blst::blst_p2_to_affine(&mut affine, &point);
        }
        BlsSignature(BlstSignature::from(affine).compress())
    }
}

/// The public side of a dealing: the threshold, the group key and every signer's share key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThresholdPublicKeys {
    threshold: u32,
    group: BlsPublicKey,
    shares: Vec<BlsPublicKey>,
    /// Real unless dealt for the simulator (never read from a file).
    #[serde(skip)]
    scheme: Scheme,
}

/// The result of [`ThresholdPublicKeys::combine_optimistic`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Combined {
    /// The verified group signature, if enough valid shares were given.
    pub signature: Option<BlsSignature>,
    /// Signers whose shares were found invalid (empty when the optimistic path succeeded).
    pub invalid: Vec<u32>,
}

impl ThresholdPublicKeys {
    /// The number of shares a group signature needs.
    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// The number of signers.
    pub fn signer_count(&self) -> u32 {
        self.shares.len() as u32
    }

    /// Verifies one signer's share on `message`.
    ///
    /// # Errors
    ///
    /// [`ThresholdError::UnknownSigner`], [`ThresholdError::InvalidEncoding`] or
    /// [`ThresholdError::VerificationFailed`].
    pub fn verify_share(
        &self,
        signer: u32,
        message: &PreparedMessage,
        share: &BlsSignature,
    ) -> Result<(), ThresholdError> {
        let key = self.share_key(signer)?;
        tally::add(tally::Op::BlsShareVerify, 1);
        if self.scheme == Scheme::Simulated {
            return simulated_check(share, simulated(SIMULATED_SHARE, key, message.message()));
        }
        let point = decode_signature(share, Some(signer))?;
        check_subgroup(&point, Some(signer))?;
        verify_point(&key.0, message, &point)
    }

    /// Verifies a group signature on `message`.
    ///
    /// # Errors
    ///
    /// [`ThresholdError::InvalidEncoding`] or [`ThresholdError::VerificationFailed`].
    pub fn verify(
        &self,
        message: &PreparedMessage,
        signature: &BlsSignature,
    ) -> Result<(), ThresholdError> {
        tally::add(tally::Op::BlsVerify, 1);
        if self.scheme == Scheme::Simulated {
            let expected = simulated(SIMULATED_GROUP, &self.group, message.message());
            return simulated_check(signature, expected);
        }
        let point = decode_signature(signature, None)?;
        check_subgroup(&point, None)?;
        verify_point(&self.group.0, message, &point)
    }

    /// Combines exactly `threshold` shares of `message` from distinct signers by Lagrange
    /// interpolation at 0 (which does not read the message; the simulated scheme does). The
    /// result is the group signature only if every share was valid; this does not verify.
    ///
    /// # Errors
    ///
    /// Wrong share count, unknown or duplicate signer, or an undecodable share.
    pub fn combine(
        &self,
        message: &PreparedMessage,
        shares: &[(u32, BlsSignature)],
    ) -> Result<BlsSignature, ThresholdError> {
        tally::add(tally::Op::BlsCombine, 1);
        if self.scheme == Scheme::Simulated {
            return self.combine_simulated(message, shares);
        }
        self.combine_point(shares).map(|point| BlsSignature(point.compress()))
    }

    /// Combination under the simulated scheme: the group signature when every share is valid,
    /// otherwise bytes that verify as nothing (a real combination with a bad share is a point
    /// nobody signed).
    fn combine_simulated(
        &self,
        message: &PreparedMessage,
        shares: &[(u32, BlsSignature)],
    ) -> Result<BlsSignature, ThresholdError> {
        self.check_shares(shares)?;
        let valid =
            shares.iter().all(|(signer, share)| self.verify_share(*signer, message, share).is_ok());
        if valid {
            return Ok(simulated(SIMULATED_GROUP, &self.group, message.message()));
        }
        let garbled: Vec<u8> = shares.iter().flat_map(|(_, share)| share.0).collect();
        Ok(simulated(SIMULATED_GARBLED, &self.group, &garbled))
    }

    /// The shares name distinct known signers, exactly `threshold` of them.
    fn check_shares(&self, shares: &[(u32, BlsSignature)]) -> Result<(), ThresholdError> {
        if shares.len() != self.threshold as usize {
            return Err(ThresholdError::WrongShareCount {
                expected: self.threshold,
                actual: shares.len() as u32,
            });
        }
        for (position, (signer, _)) in shares.iter().enumerate() {
            self.share_key(*signer)?;
            if shares[..position].iter().any(|(other, _)| other == signer) {
                return Err(ThresholdError::DuplicateSigner { signer: *signer });
            }
        }
        Ok(())
    }

    /// [`ThresholdPublicKeys::combine`], keeping the point (no subgroup checks of the shares:
    /// the combined point is checked when it is verified, which is what matters).
    fn combine_point(
        &self,
        shares: &[(u32, BlsSignature)],
    ) -> Result<BlstSignature, ThresholdError> {
        self.check_shares(shares)?;
        let mut points = Vec::with_capacity(shares.len());
        let mut xs = Vec::with_capacity(shares.len());
        for (signer, share) in shares {
            points.push(decode_signature(share, Some(*signer))?);
            xs.push(Scalar::from_u64(u64::from(*signer) + 1));
        }
        let mut sum = blst_p2::default();
        for (index, point) in points.iter().enumerate() {
            let lambda = lagrange_at_zero(&xs, index);
            let affine: &blst_p2_affine = point.into();
            let mut projective = blst_p2::default();
            let mut term = blst_p2::default();
            let scalar = lambda.to_le_bytes();
            // SAFETY: every pointer refers to a live, properly initialised blst value; the scalar
            // is 32 bytes and 255 bits are read from it.
            unsafe {
                blst::blst_p2_from_affine(&mut projective, affine);
                blst::blst_p2_mult(&mut term, &projective, scalar.as_ptr(), 255);
                let previous = sum;
                blst::blst_p2_add_or_double(&mut sum, &previous, &term);
            }
        }
        let mut affine = blst_p2_affine::default();
        // SAFETY: both pointers refer to live blst values.
        unsafe { blst::blst_p2_to_affine(&mut affine, &sum) };
        Ok(BlstSignature::from(affine))
    }

    /// Combines and verifies optimistically: the first `threshold` shares are combined and the
    /// result verified once. Only if that fails is every share verified on its own; the invalid
    /// ones are reported and, if enough valid shares remain, those are combined instead.
    pub fn combine_optimistic(
        &self,
        message: &PreparedMessage,
        shares: &[(u32, BlsSignature)],
    ) -> Combined {
        let threshold = self.threshold as usize;
        if shares.len() >= threshold
            && let Some(signature) = self.combine_verified(message, &shares[..threshold])
        {
            return Combined { signature: Some(signature), invalid: Vec::new() };
        }
        let mut invalid = Vec::new();
        let mut distinct: Vec<(u32, BlsSignature)> = Vec::with_capacity(threshold);
        for &(signer, share) in shares {
            if self.verify_share(signer, message, &share).is_err() {
                invalid.push(signer);
            } else if distinct.len() < threshold
                && !distinct.iter().any(|(other, _)| *other == signer)
            {
                distinct.push((signer, share));
            }
        }
        // Valid shares always combine into a valid signature; verifying again pairs the check
        // made when building the certificate with the one every receiver makes.
        let signature = if distinct.len() == threshold {
            self.combine_verified(message, &distinct)
        } else {
            None
        };
        Combined { signature, invalid }
    }

    /// Combines exactly `threshold` shares and returns the signature if it verifies.
    fn combine_verified(
        &self,
        message: &PreparedMessage,
        shares: &[(u32, BlsSignature)],
    ) -> Option<BlsSignature> {
        if self.scheme == Scheme::Simulated {
            let signature = self.combine(message, shares).ok()?;
            return self.verify(message, &signature).ok().map(|()| signature);
        }
        tally::add(tally::Op::BlsCombine, 1);
        tally::add(tally::Op::BlsVerify, 1);
        let point = self.combine_point(shares).ok()?;
        check_subgroup(&point, None).ok()?;
        verify_point(&self.group.0, message, &point).ok()?;
        Some(BlsSignature(point.compress()))
    }

    fn share_key(&self, signer: u32) -> Result<&BlsPublicKey, ThresholdError> {
        self.shares
            .get(signer as usize)
            .ok_or(ThresholdError::UnknownSigner { signer, signer_count: self.signer_count() })
    }
}

/// Deals a `threshold`-of-`signer_count` key: the public keys and one secret share per signer.
///
/// # Errors
///
/// [`ThresholdError::InvalidParameters`] unless 1 ≤ threshold ≤ signer_count ≤
/// [`SIGNER_COUNT_MAX`].
pub fn deal(
    rng: &mut impl rand::CryptoRng,
    threshold: u32,
    signer_count: u32,
) -> Result<(ThresholdPublicKeys, Vec<SecretShare>), ThresholdError> {
    deal_with(rng, threshold, signer_count, Scheme::Real)
}

/// [`deal`] with keys that sign and verify in `scheme` (the same draws give the same key
/// bytes either way).
///
/// # Errors
///
/// As [`deal`].
pub fn deal_with(
    rng: &mut impl rand::CryptoRng,
    threshold: u32,
    signer_count: u32,
    scheme: Scheme,
) -> Result<(ThresholdPublicKeys, Vec<SecretShare>), ThresholdError> {
    if threshold == 0 || threshold > signer_count || signer_count > SIGNER_COUNT_MAX {
        return Err(ThresholdError::InvalidParameters { threshold, signer_count });
    }
    // A zero secret or share happens with probability about 2^-255 per draw; draw again.
    const ATTEMPTS_MAX: u32 = 8;
    for _ in 0..ATTEMPTS_MAX {
        let coefficients: Vec<Scalar> = (0..threshold).map(|_| Scalar::random(rng)).collect();
        let Some(group) = Scalar::secret_key(&coefficients[0]) else { continue };
        let secrets: Option<Vec<BlstSecretKey>> = (0..signer_count)
            .map(|signer| {
                let x = Scalar::from_u64(u64::from(signer) + 1);
                Scalar::secret_key(&evaluate(&coefficients, &x))
            })
            .collect();
        let Some(secrets) = secrets else { continue };
        let public = ThresholdPublicKeys {
            threshold,
            group: BlsPublicKey(group.sk_to_pk()),
            shares: secrets.iter().map(|key| BlsPublicKey(key.sk_to_pk())).collect(),
            scheme,
        };
        let shares = secrets
            .into_iter()
            .zip(&public.shares)
            .enumerate()
            .map(|(signer, (key, public))| SecretShare {
                signer: signer as u32,
                key,
                public: public.clone(),
                scheme,
            })
            .collect();
        return Ok((public, shares));
    }
    unreachable!("{ATTEMPTS_MAX} consecutive zero scalars from a cryptographic rng")
}

/// A simulated signature is valid when it equals the one expected.
fn simulated_check(signature: &BlsSignature, expected: BlsSignature) -> Result<(), ThresholdError> {
    if *signature == expected { Ok(()) } else { Err(ThresholdError::VerificationFailed) }
}

/// Decodes a compressed G2 point (on the curve; the subgroup is checked separately).
fn decode_signature(
    bytes: &BlsSignature,
    signer: Option<u32>,
) -> Result<BlstSignature, ThresholdError> {
    BlstSignature::from_bytes(&bytes.0).map_err(|_| ThresholdError::InvalidEncoding { signer })
}

/// Subgroup membership: a point outside G2 never passes verification.
fn check_subgroup(point: &BlstSignature, signer: Option<u32>) -> Result<(), ThresholdError> {
    if point.subgroup_check() { Ok(()) } else { Err(ThresholdError::InvalidEncoding { signer }) }
}

/// Checks e(key, H(m)) = e(G1, σ) with the message already hashed to G2, as
/// e(key, H(m)) · e(−G1, σ) = 1 with one shared Miller loop and one final exponentiation.
fn verify_point(
    key: &BlstPublicKey,
    message: &PreparedMessage,
    signature: &BlstSignature,
) -> Result<(), ThresholdError> {
    let key: &blst_p1_affine = key.into();
    let signature: &blst_p2_affine = signature.into();
    let negated_generator = negated_generator();
    let g2_points = [message.point() as *const blst_p2_affine, signature as *const blst_p2_affine];
    let g1_points = [key as *const blst_p1_affine, &negated_generator as *const blst_p1_affine];
    let mut loop_product = blst::blst_fp12::default();
    let mut pairing = blst::blst_fp12::default();
    // SAFETY: the pointer arrays hold two live points each: `key` validated when parsed,
    // `signature` checked by the caller to lie in G2, the hashed message, and the negated
    // generator. This is blst's single-threaded pairing check (the `Signature::verify` wrapper
    // would use a thread pool).
    let equal = unsafe {
        blst::blst_miller_loop_n(&mut loop_product, g2_points.as_ptr(), g1_points.as_ptr(), 2);
        blst::blst_final_exp(&mut pairing, &loop_product);
        blst::blst_fp12_is_one(&pairing)
    };
    if equal { Ok(()) } else { Err(ThresholdError::VerificationFailed) }
}

/// −G1 in affine form, computed once (the conversion to affine costs an inversion).
fn negated_generator() -> blst_p1_affine {
    static NEGATED: std::sync::OnceLock<blst_p1_affine> = std::sync::OnceLock::new();
    *NEGATED.get_or_init(|| {
        let mut affine = blst_p1_affine::default();
        // SAFETY: the generator is a blst constant; the copy and output are live values.
        unsafe {
            let mut point = *blst::blst_p1_generator();
            blst::blst_p1_cneg(&mut point, true);
            blst::blst_p1_to_affine(&mut affine, &point);
        }
        affine
    })
}

/// Horner evaluation of the polynomial with `coefficients` (constant term first) at `x`.
fn evaluate(coefficients: &[Scalar], x: &Scalar) -> Scalar {
    let mut value = Scalar::from_u64(0);
    for coefficient in coefficients.iter().rev() {
        value = value.mul(x).add(coefficient);
    }
    value
}

/// λ_i(0) = Π_{j ≠ i} x_j / (x_j − x_i).
fn lagrange_at_zero(xs: &[Scalar], index: usize) -> Scalar {
    let mut numerator = Scalar::from_u64(1);
    let mut denominator = Scalar::from_u64(1);
    for (other, x) in xs.iter().enumerate() {
        if other != index {
            numerator = numerator.mul(x);
            denominator = denominator.mul(&x.sub(&xs[index]));
        }
    }
    numerator.mul(&denominator.inverse())
}

/// An element of the BLS12-381 scalar field (blst's Montgomery form).
#[derive(Clone, Copy)]
struct Scalar(blst_fr);

impl Scalar {
    fn from_u64(value: u64) -> Scalar {
        let limbs = [value, 0, 0, 0];
        let mut out = blst_fr::default();
        // SAFETY: `limbs` is the four-limb little-endian integer blst expects.
        unsafe { blst::blst_fr_from_uint64(&mut out, limbs.as_ptr()) };
        Scalar(out)
    }

    /// A uniform field element: 512 random bits reduced modulo r.
    fn random(rng: &mut impl rand::CryptoRng) -> Scalar {
        let mut wide = [0u8; 64];
        rng.fill_bytes(&mut wide);
        let mut scalar = blst_scalar::default();
        let mut out = blst_fr::default();
        // SAFETY: `wide` is 64 readable bytes; outputs are live blst values.
        unsafe {
            blst::blst_scalar_from_be_bytes(&mut scalar, wide.as_ptr(), wide.len());
            blst::blst_fr_from_scalar(&mut out, &scalar);
        }
        Scalar(out)
    }

    fn add(&self, other: &Scalar) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: live blst values.
        unsafe { blst::blst_fr_add(&mut out, &self.0, &other.0) };
        Scalar(out)
    }

    fn sub(&self, other: &Scalar) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: live blst values.
        unsafe { blst::blst_fr_sub(&mut out, &self.0, &other.0) };
        Scalar(out)
    }

    fn mul(&self, other: &Scalar) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: live blst values.
        unsafe { blst::blst_fr_mul(&mut out, &self.0, &other.0) };
        Scalar(out)
    }

    fn inverse(&self) -> Scalar {
        let mut out = blst_fr::default();
        // SAFETY: live blst values. Callers never invert zero: x-values are distinct.
        unsafe { blst::blst_fr_eucl_inverse(&mut out, &self.0) };
        Scalar(out)
    }

    fn to_scalar(self) -> blst_scalar {
        let mut out = blst_scalar::default();
        // SAFETY: live blst values.
        unsafe { blst::blst_scalar_from_fr(&mut out, &self.0) };
        out
    }

    fn to_le_bytes(self) -> [u8; 32] {
        let scalar = self.to_scalar();
        let mut out = [0u8; 32];
        // SAFETY: `out` holds the 32 bytes written.
        unsafe { blst::blst_lendian_from_scalar(out.as_mut_ptr(), &scalar) };
        out
    }

    /// The secret key with this value, or `None` for zero.
    fn secret_key(&self) -> Option<BlstSecretKey> {
        let scalar = self.to_scalar();
        let mut bytes = [0u8; 32];
        // SAFETY: `bytes` holds the 32 bytes written.
        unsafe { blst::blst_bendian_from_scalar(bytes.as_mut_ptr(), &scalar) };
        BlstSecretKey::from_bytes(&bytes).ok()
    }
}
