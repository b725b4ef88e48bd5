//! What a Byzantine client sends besides its correct requests: malformed frames, requests with
//! bad signatures, replays of its old requests, requests naming another client, and frames
//! over the size limit. Each must be refused by every replica with a counted reason while the
//! replicas keep serving everyone else; none may ever execute.
//!
//! A Byzantine client's correct operations are recorded in the history like any other
//! client's; its junk is not (it is never supposed to take effect).

use std::collections::BTreeMap;

use replica::core::{ClientId, RequestId, SignedRequest};
use replica::net::frame::{FRAME_SIZE_MAX, encode_framed};

/// One kind of junk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Junk {
    /// Bytes that decode as no request (the replica closes the connection).
    Malformed,
    /// The current request under an id it will never use, with one signature byte flipped.
    BadSignature,
    /// The previous request again, after it completed.
    Replay,
    /// The current request naming another client and an unused id (its signature no longer
    /// matches).
    Misaddressed,
    /// A frame header announcing more than the frame limit (the replica closes the
    /// connection).
    Oversized,
}

impl Junk {
    /// Every kind, in the order a Byzantine client cycles through them.
    pub const ALL: [Junk; 5] =
        [Junk::BadSignature, Junk::Replay, Junk::Misaddressed, Junk::Malformed, Junk::Oversized];

    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Junk::Malformed => "malformed",
            Junk::BadSignature => "bad-signature",
            Junk::Replay => "replay",
            Junk::Misaddressed => "misaddressed",
            Junk::Oversized => "oversized",
        }
    }
}

/// The frame of `junk`, from the request in flight and the one before it; `None` when there
/// is nothing to replay yet.
pub fn frame(
    junk: Junk,
    current: &SignedRequest,
    previous: Option<&SignedRequest>,
    client_count: u32,
) -> Option<Vec<u8>> {
    match junk {
        Junk::Malformed => {
            // A header announcing 16 bytes of 0xff: no request decodes from them.
            let mut frame = 16u32.to_le_bytes().to_vec();
            frame.extend([0xff; 16]);
            Some(frame)
        }
        Junk::BadSignature => {
            let mut forged = current.clone();
            forged.body.request = unused(current);
            forged.signature.0[0] ^= 0x01;
            Some(encode_framed(&forged))
        }
        Junk::Replay => previous.map(encode_framed),
        Junk::Misaddressed => {
            let mut other = current.clone();
            other.body.client = ClientId((current.body.client.0 + 1) % client_count.max(1));
            other.body.request = unused(current);
            Some(encode_framed(&other))
        }
        Junk::Oversized => {
            let announced = u32::try_from(FRAME_SIZE_MAX + 1).unwrap_or(u32::MAX);
            let mut frame = announced.to_le_bytes().to_vec();
            frame.extend([0u8; 64]);
            Some(frame)
        }
    }
}

/// A request id no client ever uses (ids count up from 1), so that junk never takes the place
/// of a correct request that is pending at a replica.
fn unused(current: &SignedRequest) -> RequestId {
    RequestId(u64::MAX - current.body.request.0)
}

/// What a Byzantine client sent, by kind name.
pub type JunkCounts = BTreeMap<&'static str, u64>;
