//! Crypto: threshold combination, bad-share detection, ed25519 batches, MACs, the dealer.

use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::crypto::Scheme;
use crate::crypto::dealer::ClusterKeys;
use crate::crypto::ed25519::{self, SignedMessage, SigningKey};
use crate::crypto::mac::MacKey;
use crate::crypto::threshold::{self, BlsSignature, PreparedMessage, ThresholdError};

/// (n, f, t = nf) for every n up to 10.
fn threshold_for(n: u32) -> u32 {
    n - (n - 1) / 3
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// Any t shares combine to the one group signature; t − 1 shares (completed by a share over
    /// another message) do not; combine refuses anything but exactly t distinct shares.
    #[test]
    fn threshold_any_t_shares_combine(n in 1u32..=10, seed in any::<u64>(), pick in any::<u64>()) {
        let t = threshold_for(n);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (public, shares) = threshold::deal(&mut rng, t, n).unwrap();
        let message = &PreparedMessage::new(b"ordeal test message");
        let signed: Vec<(u32, BlsSignature)> =
            shares.iter().map(|share| (share.signer(), share.sign(message))).collect();
        for share in &signed {
            prop_assert!(public.verify_share(share.0, message, &share.1).is_ok());
        }
        // Two different subsets of size t, chosen by `pick`.
        let rotate = (pick % u64::from(n)) as usize;
        let mut rotated = signed.clone();
        rotated.rotate_left(rotate);
        let first = public.combine(message, &signed[..t as usize]).unwrap();
        let second = public.combine(message, &rotated[..t as usize]).unwrap();
        prop_assert_eq!(first, second, "BLS threshold signatures are unique");
        prop_assert!(public.verify(message, &first).is_ok());

        if t >= 2 {
            let mut short = signed[..t as usize - 1].to_vec();
            prop_assert_eq!(
                public.combine(message, &short),
                Err(ThresholdError::WrongShareCount { expected: t, actual: t - 1 })
            );
            let outsider = shares[t as usize - 1].sign(&PreparedMessage::new(b"another message"));
            short.push((shares[t as usize - 1].signer(), outsider));
            let forged = public.combine(message, &short).unwrap();
            prop_assert!(public.verify(message, &forged).is_err());
            let mut duplicated = signed[..t as usize - 1].to_vec();
            duplicated.push(signed[0]);
            let duplicate = ThresholdError::DuplicateSigner { signer: signed[0].0 };
            prop_assert_eq!(public.combine(message, &duplicated), Err(duplicate));
        }
    }

    /// A bad share among the first t candidates is found, reported and excluded; the signature
    /// still forms when t valid shares remain, and does not when they do not. A bad share that
    /// the optimistic combination does not use costs no verification at all.
    #[test]
    fn threshold_bad_share_is_excluded(n in 2u32..=10, seed in any::<u64>(), bad in any::<u64>()) {
        let t = threshold_for(n);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (public, shares) = threshold::deal(&mut rng, t, n).unwrap();
        let message = &PreparedMessage::new(b"slot digest");
        let mut signed: Vec<(u32, BlsSignature)> =
            shares.iter().map(|share| (share.signer(), share.sign(message))).collect();
        let unused = n - 1;
        let bad = (bad % u64::from(t)) as usize;
        let mut spare = signed.clone();
        if unused >= t {
            let other = PreparedMessage::new(b"a different digest");
            spare[unused as usize].1 = shares[unused as usize].sign(&other);
            let combined = public.combine_optimistic(message, &spare);
            prop_assert!(combined.invalid.is_empty());
            prop_assert!(combined.signature.is_some());
        }
        signed[bad].1 = shares[bad].sign(&PreparedMessage::new(b"a different digest"));
        let combined = public.combine_optimistic(message, &signed);
        prop_assert_eq!(&combined.invalid, &vec![bad as u32]);
        if n > t {
            let signature = combined.signature.expect("t valid shares remain");
            prop_assert!(public.verify(message, &signature).is_ok());
        } else {
            prop_assert_eq!(combined.signature, None);
        }
        // Garbage bytes are an encoding error, never a panic.
        let garbage = BlsSignature([0xff; 96]);
        prop_assert!(public.verify_share(0, message, &garbage).is_err());
        prop_assert!(public.verify(message, &garbage).is_err());
    }
}

#[test]
fn threshold_rejects_impossible_parameters() {
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for (t, n) in [(0, 4), (5, 4), (1, 257)] {
        assert_eq!(
            threshold::deal(&mut rng, t, n).err(),
            Some(ThresholdError::InvalidParameters { threshold: t, signer_count: n })
        );
    }
}

#[test]
fn ed25519_batch_finds_the_bad_signature() {
    let keys: Vec<SigningKey> = (0..10u8).map(|i| SigningKey::from_seed([i; 32])).collect();
    let publics: Vec<_> = keys.iter().map(SigningKey::public_key).collect();
    let messages: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 40]).collect();
    let mut signatures: Vec<_> = keys.iter().zip(&messages).map(|(k, m)| k.sign(m)).collect();
    fn batch<'a>(
        publics: &'a [ed25519::PublicKey],
        messages: &'a [Vec<u8>],
        signatures: &'a [ed25519::Signature],
    ) -> Vec<SignedMessage<'a>> {
        (0..publics.len())
            .map(|i| SignedMessage {
                key: &publics[i],
                message: &messages[i],
                signature: &signatures[i],
            })
            .collect()
    }
    assert!(ed25519::verify_batch(&batch(&publics, &messages, &signatures)).is_ok());
    signatures[6] = keys[6].sign(b"something else");
    assert!(ed25519::verify_batch(&batch(&publics, &messages, &signatures)).is_err());
    assert_eq!(ed25519::find_invalid(&batch(&publics, &messages, &signatures)), vec![6]);
}

#[test]
fn mac_verifies_only_the_same_parts_and_key() {
    let key = MacKey([7; 32]);
    let tag = key.tag(&[b"abc", b"def"]);
    assert!(key.verify(&[b"abc", b"def"], &tag).is_ok());
    assert!(key.verify(&[b"abc", b"deg"], &tag).is_err());
    assert!(MacKey([8; 32]).verify(&[b"abc", b"def"], &tag).is_err());
}

/// The dealer's output survives a JSON round trip: keys read back sign and MAC exactly as the
/// originals, and pair keys agree on both ends.
#[test]
fn dealer_keys_round_trip_through_json() {
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    let keys = ClusterKeys::generate(&mut rng, 4, 3, 3).unwrap();
    let text = serde_json::to_string(&keys).unwrap();
    let back: ClusterKeys = serde_json::from_str(&text).unwrap();
    assert_eq!(back.public, keys.public);
    let message = &PreparedMessage::new(b"hello");
    let share = back.replicas[2].threshold_share.sign(message);
    assert_eq!(share, keys.replicas[2].threshold_share.sign(message));
    assert!(keys.public.threshold.verify_share(2, message, &share).is_ok());
    let signature = back.clients[1].signing_key.sign(b"hello");
    assert!(keys.public.clients[1].verify(b"hello", &signature).is_ok());
    // Pair keys: replica 1 and replica 3 hold the same key for each other; replica 2 and
    // client 0 likewise; different pairs differ.
    assert_eq!(back.replicas[1].replica_macs[3], back.replicas[3].replica_macs[1]);
    assert_eq!(back.replicas[2].client_macs[0], back.clients[0].replica_macs[2]);
    assert_ne!(back.replicas[1].replica_macs[2], back.replicas[1].replica_macs[3]);
    // Broken files give errors, not panics.
    assert!(
        serde_json::from_str::<ClusterKeys>(&text.replacen("\"threshold\"", "\"thresh\"", 1))
            .is_err()
    );
}

/// ZIP 215: a signature whose R carries a small-order component is judged the same way alone
/// and in any batch (with the cofactored equation it is valid), so a batch's verdict never
/// depends on its composition. A corrupted one fails both ways.
#[test]
fn ed25519_single_and_batch_agree_on_torsion_signatures() {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT, EIGHT_TORSION};
    use curve25519_dalek::scalar::Scalar;
    use sha2::{Digest as _, Sha512};

    let seed = [42u8; 32];
    let key = SigningKey::from_seed(seed);
    let public = key.public_key();
    // The expanded secret scalar a of the seed (RFC 8032 §5.1.5).
    let expanded: [u8; 64] = Sha512::digest(seed).into();
    let mut clamped: [u8; 32] = expanded[..32].try_into().unwrap();
    clamped[0] &= 248;
    clamped[31] &= 127;
    clamped[31] |= 64;
    let a = Scalar::from_bytes_mod_order(clamped);
    assert_eq!((a * ED25519_BASEPOINT_POINT).compress().0, public.to_bytes());
    let message = b"transfer everything";
    let r = Scalar::from(123_456_789u64);
    let big_r = (r * ED25519_BASEPOINT_POINT + EIGHT_TORSION[1]).compress().0;
    let mut hash = Sha512::new();
    hash.update(big_r);
    hash.update(public.to_bytes());
    hash.update(message);
    let k = Scalar::from_bytes_mod_order_wide(&hash.finalize().into());
    let s = r + k * a;
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&big_r);
    bytes[32..].copy_from_slice(s.as_bytes());
    let torsion = ed25519::Signature(bytes);

    assert!(public.verify(message, &torsion).is_ok(), "cofactored: valid alone");
    // The case is one where the two usual rules disagree: cofactorless verification (what
    // ed25519-dalek's `verify` does) rejects it.
    let dalek_key = ed25519_dalek::VerifyingKey::from_bytes(&public.to_bytes()).unwrap();
    let dalek_signature = ed25519_dalek::Signature::from_bytes(&bytes);
    assert!(
        ed25519_dalek::Verifier::verify(&dalek_key, message, &dalek_signature).is_err(),
        "cofactorless verification disagrees"
    );
    let others: Vec<(ed25519::PublicKey, Vec<u8>, ed25519::Signature)> = (0..5u8)
        .map(|i| {
            let other = SigningKey::from_seed([i; 32]);
            (other.public_key(), vec![i; 9], other.sign(&[i; 9]))
        })
        .collect();
    for size in 0..=others.len() {
        let mut items: Vec<SignedMessage<'_>> = others[..size]
            .iter()
            .map(|(key, message, signature)| SignedMessage { key, message, signature })
            .collect();
        items.push(SignedMessage { key: &public, message, signature: &torsion });
        assert!(ed25519::verify_batch(&items).is_ok(), "valid in a batch of {}", size + 1);
    }
    let mut broken = torsion;
    broken.0[40] ^= 1;
    assert!(public.verify(message, &broken).is_err());
    let items = [
        SignedMessage { key: &others[0].0, message: &others[0].1, signature: &others[0].2 },
        SignedMessage { key: &public, message, signature: &broken },
    ];
    assert!(ed25519::verify_batch(&items).is_err());
    assert_eq!(ed25519::find_invalid(&items), vec![1]);
    // Non-canonical s (s + ℓ) is refused, alone and in a batch.
    let mut non_canonical = torsion;
    let l_plus_s = {
        let mut sum = [0u8; 32];
        // ℓ = 2^252 + 27742317777372353535851937790883648493, little-endian.
        let mut l = [0u8; 32];
        l[..16].copy_from_slice(&[
            0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9,
            0xde, 0x14,
        ]);
        l[31] = 0x10;
        let mut carry = 0u16;
        for i in 0..32 {
            let total = u16::from(s.as_bytes()[i]) + u16::from(l[i]) + carry;
            sum[i] = total as u8;
            carry = total >> 8;
        }
        sum
    };
    non_canonical.0[32..].copy_from_slice(&l_plus_s);
    assert!(public.verify(message, &non_canonical).is_err());
}

#[test]
fn ed25519_rejects_small_order_public_keys() {
    use curve25519_dalek::constants::EIGHT_TORSION;
    for point in EIGHT_TORSION {
        assert!(ed25519::PublicKey::from_bytes(&point.compress().0).is_err());
    }
}

/// The simulator's signatures: a simulated key signs and verifies (alone and in a batch), its
/// public key's bytes are the real key's, an altered message or signature is refused, a real
/// key refuses its signatures and a simulated key refuses real ones, and a deserialized key is
/// always real.
#[test]
fn simulated_signatures_keep_to_their_scheme() {
    let seed = [7u8; 32];
    let real = SigningKey::from_seed(seed);
    let simulated = SigningKey::simulated(seed);
    assert_eq!(real.public_key().to_bytes(), simulated.public_key().to_bytes());
    assert_eq!(simulated.public_key().scheme(), Scheme::Simulated);
    let message = b"a support";
    let signature = simulated.sign(message);
    assert!(simulated.public_key().verify(message, &signature).is_ok());
    assert!(simulated.public_key().verify(b"another support", &signature).is_err());
    assert!(real.public_key().verify(message, &signature).is_err());
    assert!(simulated.public_key().verify(message, &real.sign(message)).is_err());
    let mut altered = signature;
    altered.0[0] ^= 1;
    assert!(simulated.public_key().verify(message, &altered).is_err());
    let other = SigningKey::simulated([8u8; 32]);
    let (key, other_key) = (simulated.public_key(), other.public_key());
    let other_signature = other.sign(message);
    let good = [
        SignedMessage { key: &key, message, signature: &signature },
        SignedMessage { key: &other_key, message, signature: &other_signature },
    ];
    assert!(ed25519::verify_batch(&good).is_ok());
    let forged = [
        SignedMessage { key: &key, message, signature: &signature },
        SignedMessage { key: &other_key, message, signature: &signature },
    ];
    assert!(ed25519::verify_batch(&forged).is_err());
    assert_eq!(ed25519::find_invalid(&forged), vec![1]);
    let text = serde_json::to_string(&simulated).expect("a key serializes");
    let back: SigningKey = serde_json::from_str(&text).expect("and parses");
    assert_eq!(back.public_key().scheme(), Scheme::Real);
}

/// The simulator's threshold scheme: shares verify under their signer's key only, nf valid
/// shares combine into the group signature, a bad share is named and left out, a combination
/// with a bad share verifies as nothing, and real keys refuse simulated signatures.
#[test]
fn simulated_threshold_shares_combine_only_when_valid() {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (public, shares) = threshold::deal_with(&mut rng, 3, 4, Scheme::Simulated).unwrap();
    let message = &PreparedMessage::new(b"slot digest");
    let other = &PreparedMessage::new(b"another digest");
    let signed: Vec<(u32, BlsSignature)> =
        shares.iter().map(|share| (share.signer(), share.sign(message))).collect();
    for (signer, share) in &signed {
        assert!(public.verify_share(*signer, message, share).is_ok());
        assert!(public.verify_share(*signer, other, share).is_err());
        assert!(public.verify_share((*signer + 1) % 4, message, share).is_err());
    }
    let combined = public.combine_optimistic(message, &signed);
    let signature = combined.signature.expect("three valid shares combine");
    assert!(combined.invalid.is_empty());
    assert!(public.verify(message, &signature).is_ok());
    assert!(public.verify(other, &signature).is_err());
    let mut bad = signed.clone();
    bad[0].1 = shares[0].sign(other);
    let garbled = public.combine(message, &bad[..3]).expect("the shares are well formed");
    assert!(public.verify(message, &garbled).is_err());
    let combined = public.combine_optimistic(message, &bad);
    assert_eq!(combined.invalid, vec![0]);
    assert_eq!(combined.signature, Some(signature));
    assert!(public.combine_optimistic(message, &bad[..3]).signature.is_none());
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let (real, _) = threshold::deal(&mut rng, 3, 4).unwrap();
    assert!(real.verify_share(1, message, &signed[1].1).is_err());
}
