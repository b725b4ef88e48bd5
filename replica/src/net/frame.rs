//! Length-prefixed frames on QUIC streams: a u32 little-endian length, then that many bytes.
//!
//! The length is checked against a maximum before anything is allocated, so a peer cannot make
//! us allocate more than one maximal frame per stream; a frame over the limit, or one that does
//! not decode, is the caller's cue to close that connection.
//!
//! Frames are small and many (an INFORM is about 100 bytes), so both sides touch the stream
//! once per frame or less: [`framed`] builds header and payload in one buffer for a single
//! write, and [`FrameReader`] takes whole chunks from the stream and cuts frames out of them.

use bytes::{Buf as _, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::core::config::MESSAGE_SIZE_MAX;

/// The largest frame on any Ordeal stream: a maximal message plus its envelope.
pub const FRAME_SIZE_MAX: usize = MESSAGE_SIZE_MAX + 1024;

/// The length prefix.
const HEADER_BYTES: usize = 4;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length exceeds the maximum.
    #[error("frame of {size} bytes exceeds the maximum of {max}")]
    TooLarge {
        /// The announced length.
        size: usize,
        /// The maximum.
        max: usize,
    },
    /// The stream ended in the middle of a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The bytes do not decode as the expected type.
    #[error("undecodable frame: {0}")]
    Malformed(String),
    /// The stream failed.
    #[error("stream: {0}")]
    Stream(String),
}

/// Cuts whole frames out of the bytes of one stream, whatever chunks they arrive in: the pure
/// half of [`FrameReader`], with no stream attached (the fuzz driver feeds it directly).
#[derive(Debug)]
pub struct FrameCutter {
    buffer: BytesMut,
    max: usize,
}

impl FrameCutter {
    /// A cutter of frames of at most `max` bytes.
    pub fn new(max: usize) -> FrameCutter {
        FrameCutter { buffer: BytesMut::new(), max }
    }

    /// Appends bytes the stream delivered.
    pub fn extend(&mut self, bytes: &[u8]) {
        self.buffer.extend_from_slice(bytes);
    }

    /// The next whole frame, or `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] as soon as a header announces more than the maximum (nothing
    /// is buffered beyond what the stream already delivered).
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        if self.buffer.len() < HEADER_BYTES {
            return Ok(None);
        }
        let header: [u8; HEADER_BYTES] =
            self.buffer[..HEADER_BYTES].try_into().expect("four bytes");
        let size = u32::from_le_bytes(header) as usize;
        if size > self.max {
            return Err(FrameError::TooLarge { size, max: self.max });
        }
        if self.buffer.len() < HEADER_BYTES + size {
            return Ok(None);
        }
        self.buffer.advance(HEADER_BYTES);
        Ok(Some(self.buffer.split_to(size).to_vec()))
    }

    /// How many bytes to ask the stream for: the rest of a maximal frame (at least one).
    pub fn want(&self) -> usize {
        (self.max + HEADER_BYTES).saturating_sub(self.buffer.len()).max(1)
    }

    /// Whether no byte of an unfinished frame is buffered (a stream may end here cleanly).
    pub fn is_empty(&self) -> bool {
        self.buffer.is_empty()
    }
}

/// Cuts frames out of a receive stream, reading it in whole chunks.
#[derive(Debug)]
pub struct FrameReader {
    stream: quinn::RecvStream,
    cutter: FrameCutter,
}

impl FrameReader {
    /// A reader of frames of at most `max` bytes from `stream`.
    pub fn new(stream: quinn::RecvStream, max: usize) -> FrameReader {
        FrameReader { stream, cutter: FrameCutter::new(max) }
    }

    /// The next frame; `Ok(None)` when the stream finished cleanly between frames.
    ///
    /// # Errors
    ///
    /// [`FrameError::TooLarge`] as soon as a header announces too much (nothing is buffered
    /// beyond what the stream already delivered), [`FrameError::Truncated`] or
    /// [`FrameError::Stream`].
    pub async fn next(&mut self) -> Result<Option<Vec<u8>>, FrameError> {
        // Bounded: every iteration either returns or appends a non-empty chunk, and the
        // buffer never holds more than one frame plus one chunk.
        loop {
            if let Some(frame) = self.cutter.next_frame()? {
                return Ok(Some(frame));
            }
            match self.stream.read_chunk(self.cutter.want(), true).await {
                Ok(Some(chunk)) => self.cutter.extend(&chunk.bytes),
                Ok(None) if self.cutter.is_empty() => return Ok(None),
                Ok(None) => return Err(FrameError::Truncated),
                Err(error) => return Err(FrameError::Stream(error.to_string())),
            }
        }
    }
}

/// Reads one frame from a stream that carries a single exchange (control requests).
///
/// # Errors
///
/// As [`FrameReader::next`].
pub async fn read_frame(
    stream: &mut quinn::RecvStream,
    max: usize,
) -> Result<Option<Vec<u8>>, FrameError> {
    let mut header = [0u8; HEADER_BYTES];
    match stream.read_exact(&mut header).await {
        Ok(()) => {}
        Err(quinn::ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(quinn::ReadExactError::FinishedEarly(_)) => return Err(FrameError::Truncated),
        Err(quinn::ReadExactError::ReadError(error)) => {
            return Err(FrameError::Stream(error.to_string()));
        }
    }
    let size = u32::from_le_bytes(header) as usize;
    if size > max {
        return Err(FrameError::TooLarge { size, max });
    }
    let mut body = vec![0u8; size];
    stream.read_exact(&mut body).await.map_err(|error| match error {
        quinn::ReadExactError::FinishedEarly(_) => FrameError::Truncated,
        quinn::ReadExactError::ReadError(error) => FrameError::Stream(error.to_string()),
    })?;
    Ok(Some(body))
}

/// Header and payload in one buffer, ready for a single write.
pub fn framed(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(HEADER_BYTES + payload.len());
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The frame of a wire value: its postcard encoding, length-prefixed.
pub fn encode_framed<T: Serialize>(value: &T) -> Vec<u8> {
    let header = vec![0u8; HEADER_BYTES];
    let mut frame = postcard::to_extend(value, header).expect("postcard encodes wire types");
    let size = (frame.len() - HEADER_BYTES) as u32;
    frame[..HEADER_BYTES].copy_from_slice(&size.to_le_bytes());
    frame
}

/// Writes an already framed buffer ([`framed`], [`encode_framed`]).
///
/// # Errors
///
/// [`FrameError::TooLarge`] for a frame over [`FRAME_SIZE_MAX`], or [`FrameError::Stream`].
pub async fn write_framed(stream: &mut quinn::SendStream, frame: &[u8]) -> Result<(), FrameError> {
    if frame.len() > FRAME_SIZE_MAX + HEADER_BYTES {
        return Err(FrameError::TooLarge { size: frame.len(), max: FRAME_SIZE_MAX });
    }
    stream.write_all(frame).await.map_err(|error| FrameError::Stream(error.to_string()))
}

/// Writes one frame.
///
/// # Errors
///
/// As [`write_framed`].
pub async fn write_frame(stream: &mut quinn::SendStream, payload: &[u8]) -> Result<(), FrameError> {
    write_framed(stream, &framed(payload)).await
}

/// Decodes a postcard frame, rejecting trailing bytes.
///
/// # Errors
///
/// [`FrameError::Malformed`].
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, FrameError> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|error| FrameError::Malformed(error.to_string()))?;
    if rest.is_empty() {
        Ok(value)
    } else {
        Err(FrameError::Malformed(format!("{} trailing bytes", rest.len())))
    }
}
