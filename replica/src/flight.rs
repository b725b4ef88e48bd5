//! The flight recorder: the last [`CAPACITY`] protocol messages a replica sent and received
//! (kind, view, seq, digest, peer, time), for the report's Lamport diagram of a violation.
//!
//! The IO layer records (the shell, the simulator's world), stamped with the records' clock,
//! and writes `flight.jsonl` beside the ledger when the recorder is dropped: at exit, on an
//! error and on a panic (a SIGKILL loses it, as it loses any process's memory). A message is
//! glanced at, not decoded: its variant and first fields are read from the front of its
//! encoding, so recording costs a few bytes of parsing per message.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::PathBuf;

use serde::Serialize;

use crate::core::message::Envelope;
use crate::core::{Digest, ReplicaId, Seq, Time, View};

/// The most entries a recorder keeps (the oldest go first).
pub const CAPACITY: usize = 8192;

/// Whether a message was sent or received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// This replica sent it to `peer`.
    Sent,
    /// This replica received it from `peer`.
    Received,
}

/// One message, as the recorder keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Flight {
    /// Nanoseconds on the records' clock.
    pub time: u64,
    /// Sent or received.
    pub dir: Direction,
    /// The other replica.
    pub peer: u8,
    /// The message's name ([`crate::core::message::Message::name`]); `malformed` when its
    /// front does not parse.
    pub kind: &'static str,
    /// The view it names, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub view: Option<u64>,
    /// The sequence number it names, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The first 8 bytes of the digest it names, in hex, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}

/// What the front of a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glance {
    /// The message's name.
    pub kind: &'static str,
    /// Its view.
    pub view: Option<View>,
    /// Its sequence number.
    pub seq: Option<Seq>,
    /// Its digest.
    pub digest: Option<Digest>,
}

/// Reads the kind, view, seq and digest from the front of an encoded
/// [`crate::core::message::Message`] (postcard: the variant's index, then its fields in
/// order). `None` when the front does not parse.
pub fn glance(payload: &[u8]) -> Option<Glance> {
    let (variant, rest) = postcard::take_from_bytes::<u32>(payload).ok()?;
    let glance = |kind, view, seq, digest| Some(Glance { kind, view, seq, digest });
    match variant {
        0 => {
            let ((view, seq), _) = postcard::take_from_bytes::<(View, Seq)>(rest).ok()?;
            glance("propose", Some(view), Some(seq), None)
        }
        1 | 2 | 9 => {
            let ((view, seq, digest), _) =
                postcard::take_from_bytes::<(View, Seq, Digest)>(rest).ok()?;
            let kind = match variant {
                1 => "support",
                2 => "certify",
                _ => "commit",
            };
            glance(kind, Some(view), Some(seq), Some(digest))
        }
        3 => glance("forward", None, None, None),
        4 => {
            let ((seq, digest), _) = postcard::take_from_bytes::<(Seq, Digest)>(rest).ok()?;
            glance("checkpoint", None, Some(seq), Some(digest))
        }
        5 => {
            let (target, _) = postcard::take_from_bytes::<View>(rest).ok()?;
            glance("view-change", Some(target), None, None)
        }
        6 => {
            let (view, _) = postcard::take_from_bytes::<View>(rest).ok()?;
            glance("new-view", Some(view), None, None)
        }
        7 => {
            let ((view, seq), _) = postcard::take_from_bytes::<(View, Seq)>(rest).ok()?;
            glance("state-request", Some(view), Some(seq), None)
        }
        8 => glance("state-transfer", None, None, None),
        _ => None,
    }
}

/// A bounded ring of [`Flight`]s, written to its file when dropped.
#[derive(Debug)]
pub struct FlightRecorder {
    entries: VecDeque<Flight>,
    path: Option<PathBuf>,
}

impl FlightRecorder {
    /// A recorder that writes `path` when dropped (`None`: kept in memory only).
    pub fn new(path: Option<PathBuf>) -> FlightRecorder {
        FlightRecorder { entries: VecDeque::new(), path }
    }

    /// Records a message `dir` to or from `peer` at `now`.
    pub fn record(&mut self, now: Time, dir: Direction, peer: ReplicaId, envelope: &Envelope) {
        if self.entries.len() == CAPACITY {
            self.entries.pop_front();
        }
        let glance = glance(&envelope.payload);
        self.entries.push_back(Flight {
            time: now.as_nanos(),
            dir,
            peer: peer.0,
            kind: glance.as_ref().map_or("malformed", |glance| glance.kind),
            view: glance.as_ref().and_then(|glance| glance.view).map(|view| view.0),
            seq: glance.as_ref().and_then(|glance| glance.seq).map(|seq| seq.0),
            digest: glance
                .and_then(|glance| glance.digest)
                .map(|digest| hex::encode(&digest.0[..8])),
        });
    }

    /// The entries, oldest first.
    pub fn entries(&self) -> impl Iterator<Item = &Flight> {
        self.entries.iter()
    }

    /// Writes the entries as JSON lines to `path`.
    ///
    /// # Errors
    ///
    /// When the file cannot be written.
    pub fn write_to(&self, path: &std::path::Path) -> std::io::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        for entry in &self.entries {
            serde_json::to_writer(&mut file, entry)?;
            file.write_all(b"\n")?;
        }
        file.flush()
    }
}

impl Drop for FlightRecorder {
    fn drop(&mut self) {
        if let Some(path) = &self.path
            && !self.entries.is_empty()
        {
            // Best effort: a replica going down cannot do more than try.
            let _ = self.write_to(path);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::core::message::{Commit, Message, NewView, Propose, StateRequest, encode};

    #[test]
    fn a_glance_reads_what_the_message_says() {
        let digest = Digest([7; 32]);
        let cases = [
            (
                Message::Propose(Propose { view: View(3), seq: Seq(41), batch: Arc::from([]) }),
                ("propose", Some(3), Some(41), None),
            ),
            (
                Message::Commit(Commit {
                    view: View(2),
                    seq: Seq(9),
                    digest,
                    replica: ReplicaId(1),
                }),
                ("commit", Some(2), Some(9), Some(digest)),
            ),
            (
                Message::NewView(Arc::new(NewView { view: View(5), requests: Vec::new() })),
                ("new-view", Some(5), None, None),
            ),
            (
                Message::StateRequest(StateRequest { view: View(4), last_executed: Seq(17) }),
                ("state-request", Some(4), Some(17), None),
            ),
        ];
        for (message, (kind, view, seq, digest)) in cases {
            let seen = glance(&encode(&message)).expect("a glance");
            assert_eq!(seen.kind, message.name());
            assert_eq!(
                (seen.kind, seen.view.map(|v| v.0), seen.seq.map(|s| s.0), seen.digest),
                (kind, view, seq, digest)
            );
        }
        assert_eq!(glance(&[200, 200, 200, 200, 200, 200]), None);
        assert_eq!(glance(&[]), None);
    }

    #[test]
    fn the_recorder_keeps_the_last_entries_and_writes_them_when_dropped() {
        let temporary = tempfile::tempdir().expect("a temporary directory");
        let directory = temporary.path();
        let path = directory.join("flight.jsonl");
        let key = crate::crypto::mac::MacKey([1; 32]);
        let message = Message::StateRequest(StateRequest { view: View(1), last_executed: Seq(2) });
        let envelope = Envelope::new(&message, &key, ReplicaId(0), ReplicaId(1));
        {
            let mut recorder = FlightRecorder::new(Some(path.clone()));
            for index in 0..CAPACITY as u64 + 5 {
                recorder.record(Time::from_nanos(index), Direction::Sent, ReplicaId(1), &envelope);
            }
            assert_eq!(recorder.entries().count(), CAPACITY);
            assert_eq!(recorder.entries().next().map(|entry| entry.time), Some(5));
        }
        let text = std::fs::read_to_string(&path).expect("written when dropped");
        assert_eq!(text.lines().count(), CAPACITY);
        assert!(
            text.lines().next().is_some_and(|line| line.contains("\"kind\":\"state-request\""))
        );
    }
}
