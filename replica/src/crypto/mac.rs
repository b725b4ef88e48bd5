//! HMAC-SHA256 with a per-pair key: authenticates point-to-point messages (replica to replica,
//! replica to client). A MAC convinces only the pair that shares the key, so MAC'd messages are
//! never forwarded as evidence; signed messages are.

use hmac::{Hmac, KeyInit, Mac as _};
use sha2::Sha256;

use super::encoding::byte_array_newtype;

byte_array_newtype!(
    /// A 256-bit HMAC key shared by exactly two nodes.
    MacKey,
    32
);

byte_array_newtype!(
    /// An HMAC-SHA256 tag.
    Mac,
    32
);

/// A MAC did not verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("invalid mac")]
pub struct MacError;

impl MacKey {
    /// The tag over the concatenation of `parts`.
    pub fn tag(&self, parts: &[&[u8]]) -> Mac {
        super::tally::add(super::tally::Op::MacTag, 1);
        let mut mac = self.hmac();
        for part in parts {
            mac.update(part);
        }
        Mac(mac.finalize().into_bytes().into())
    }

    /// Verifies `tag` over `parts` in constant time.
    ///
    /// # Errors
    ///
    /// [`MacError`] when the tag does not match.
    pub fn verify(&self, parts: &[&[u8]], tag: &Mac) -> Result<(), MacError> {
        super::tally::add(super::tally::Op::MacVerify, 1);
        let mut mac = self.hmac();
        for part in parts {
            mac.update(part);
        }
        mac.verify_slice(&tag.0).map_err(|_| MacError)
    }

    fn hmac(&self) -> Hmac<Sha256> {
        // HMAC accepts keys of any length, so this cannot fail for 32 bytes.
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0).expect("hmac takes any key length")
    }
}
