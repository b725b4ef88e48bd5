//! Serde for fixed-size byte strings: hex in human-readable formats (JSON key files, logs),
//! raw bytes in binary ones (postcard frames).

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

pub(crate) fn serialize<S: Serializer>(bytes: &[u8], serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        serializer.serialize_str(&hex::encode(bytes))
    } else {
        serializer.serialize_bytes(bytes)
    }
}

pub(crate) fn deserialize<'de, D: Deserializer<'de>, const N: usize>(
    deserializer: D,
) -> Result<[u8; N], D::Error> {
    struct BytesVisitor<const N: usize>;
    impl<const N: usize> Visitor<'_> for BytesVisitor<N> {
        type Value = [u8; N];
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{N} bytes, or {} hex characters", 2 * N)
        }
        fn visit_bytes<E: de::Error>(self, bytes: &[u8]) -> Result<[u8; N], E> {
            bytes.try_into().map_err(|_| E::invalid_length(bytes.len(), &self))
        }
        fn visit_str<E: de::Error>(self, text: &str) -> Result<[u8; N], E> {
            let mut out = [0u8; N];
            hex::decode_to_slice(text, &mut out)
                .map_err(|_| E::invalid_value(de::Unexpected::Str(text), &self))?;
            Ok(out)
        }
    }
    if deserializer.is_human_readable() {
        deserializer.deserialize_str(BytesVisitor::<N>)
    } else {
        deserializer.deserialize_bytes(BytesVisitor::<N>)
    }
}

/// Declares a `Copy` newtype over `[u8; N]` with hex/bytes serde and a short `Debug`.
macro_rules! byte_array_newtype {
    ($(#[$meta:meta])* $name:ident, $len:expr) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash)]
        pub struct $name(pub [u8; $len]);

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $crate::crypto::encoding::serialize(&self.0, s)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $crate::crypto::encoding::deserialize::<D, $len>(d).map($name)
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "{}({})", stringify!($name), hex::encode(&self.0[..4]))
            }
        }
    };
}

pub(crate) use byte_array_newtype;
