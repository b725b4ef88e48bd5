//! Newtypes for protocol numbers, so a view is never passed where a sequence number belongs.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use history::Digest;

/// A view number. The primary of view v is replica `v mod n` (PROTOCOL §1).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct View(pub u64);

impl View {
    /// The view after this one.
    pub fn next(self) -> View {
        View(self.0 + 1)
    }

    /// The primary of this view among `replica_count` replicas.
    pub fn primary(self, replica_count: u8) -> ReplicaId {
        assert!(replica_count > 0);
        ReplicaId((self.0 % u64::from(replica_count)) as u8)
    }
}

/// A sequence number: the position of a batch in the ledger. Slot 1 is the first; `Seq(0)`
/// means "nothing yet".
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Seq(pub u64);

impl Seq {
    /// The sequence number after this one.
    pub fn next(self) -> Seq {
        Seq(self.0.checked_add(1).expect("sequence numbers do not overflow u64"))
    }

    /// The sequence number before this one (0 stays 0).
    pub fn prev(self) -> Seq {
        Seq(self.0.saturating_sub(1))
    }
}

/// A replica id, 0-based.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ReplicaId(pub u8);

impl ReplicaId {
    /// The id as an index into per-replica tables.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }
}

/// A client id, 0-based.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct ClientId(pub u32);

impl ClientId {
    /// The id as an index into per-client tables.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// A client's request id: strictly increasing per client, starting at 1.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct RequestId(pub u64);

/// A point in time, in nanoseconds since an epoch the caller chooses (the process start in the
/// real replica, zero in the simulator). The core never reads a clock: every input carries
/// `now`, and `now` never goes backwards.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(u64);

impl Time {
    /// The epoch.
    pub const ZERO: Time = Time(0);

    /// `nanos` nanoseconds after the epoch.
    pub fn from_nanos(nanos: u64) -> Time {
        Time(nanos)
    }

    /// Nanoseconds since the epoch.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// The time since `earlier`, zero if `earlier` is later.
    pub fn saturating_since(self, earlier: Time) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<Duration> for Time {
    type Output = Time;

    fn add(self, duration: Duration) -> Time {
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Time(self.0.saturating_add(nanos))
    }
}

macro_rules! display_number {
    ($($name:ident),*) => {$(
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    )*};
}

display_number!(View, Seq, ReplicaId, ClientId, RequestId);
