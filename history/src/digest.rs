//! The 32-byte digest used for batch digests, block hashes and state digests.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A 32-byte digest (SHA-256 output).
///
/// Human-readable formats (JSON) carry it as 64 lowercase hex characters; binary formats
/// (postcard) as 32 raw bytes.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// The all-zero digest, used where no digest exists yet.
    pub const ZERO: Digest = Digest([0; 32]);

    /// The digest as lowercase hex.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex characters.
    ///
    /// # Errors
    ///
    /// [`DigestParseError`] when the text is not exactly 32 bytes of hex.
    pub fn from_hex(text: &str) -> Result<Digest, DigestParseError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(text, &mut bytes)
            .map_err(|_| DigestParseError { text: text.chars().take(80).collect() })?;
        Ok(Digest(bytes))
    }
}

/// A digest in text form was not 64 hex characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a 32-byte hex digest: {text:?}")]
pub struct DigestParseError {
    /// The offending text (truncated to 80 characters).
    pub text: String,
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Eight hex digits identify a digest in logs and test failures.
        write!(f, "Digest({})", &self.to_hex()[..8])
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.to_hex())
        } else {
            serializer.serialize_bytes(&self.0)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        if deserializer.is_human_readable() {
            let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
            Digest::from_hex(&text).map_err(serde::de::Error::custom)
        } else {
            let bytes = <&'de [u8]>::deserialize(deserializer)?;
            let array: [u8; 32] = bytes
                .try_into()
                .map_err(|_| serde::de::Error::invalid_length(bytes.len(), &"32 bytes"))?;
            Ok(Digest(array))
        }
    }
}
