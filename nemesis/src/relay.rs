//! The relay's model: what a faulty link does to each packet, on virtual time. Pure: no IO, no
//! clock; time is a `Duration` since the relay started and randomness a seeded [`ChaCha20Rng`].
//! The IO relay (`harness::network`) feeds it packets as they arrive and sends what it gives
//! back when it is due.
//!
//! A packet on a link with fault `f`, arriving at `now`, in this order:
//!
//! 1. `f.blocked`: dropped.
//! 2. A loss draw with probability `f.loss`: dropped.
//! 3. Otherwise due at `now + f.delay + u`, u uniform in [0, `f.jitter`], capped at
//!    [`DELAY_MAX`] in all.
//! 4. A reorder draw with probability `f.reorder` holds it back a further uniform
//!    [`REORDER_HOLD_MIN`, `REORDER_HOLD_MAX`], so that packets arriving after it overtake it.
//! 5. A duplicate draw with probability `f.duplicate` sends a second copy up to
//!    [`DUPLICATE_GAP_MAX`] after the first.
//!
//! A healthy link draws nothing and forwards at once ([`Handled::Forward`]); so does a packet
//! that ends up due at once, alone. Packets held are kept in one queue ordered by due time then
//! arrival, at most [`PENDING_MAX`] packets and [`PENDING_BYTES_MAX`] bytes per link; a packet
//! that does not fit is dropped and counted as overflow.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::time::Duration;

use rand::{RngExt as _, SeedableRng as _};
use rand_chacha::ChaCha20Rng;

use crate::network::{LinkFault, probability};

/// The most packets held on one link.
pub const PENDING_MAX: usize = 4096;

/// The most bytes held on one link.
pub const PENDING_BYTES_MAX: usize = 8 << 20;

/// The most links one relay models (the harness has (n + 1)² with n ≤ 128).
pub const LINKS_MAX: usize = 1 << 16;

/// The longest a packet is held, delay, jitter and reordering together.
pub const DELAY_MAX: Duration = Duration::from_secs(10);

/// The shortest extra hold of a reordered packet.
pub const REORDER_HOLD_MIN: Duration = Duration::from_millis(1);

/// The longest extra hold of a reordered packet.
pub const REORDER_HOLD_MAX: Duration = Duration::from_millis(20);

/// The longest gap between a packet and its duplicate.
pub const DUPLICATE_GAP_MAX: Duration = Duration::from_millis(1);

const _: () = assert!(REORDER_HOLD_MIN.as_nanos() <= REORDER_HOLD_MAX.as_nanos());
const _: () = assert!(REORDER_HOLD_MAX.as_nanos() < DELAY_MAX.as_nanos());

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// The link is blocked (a partition).
    Blocked,
    /// The loss draw.
    Loss,
    /// The link's queue was full (or the link is beyond [`LINKS_MAX`]).
    Overflow,
}

/// The fate of one packet, before queueing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Dropped.
    Drop(DropReason),
    /// Delivered at `at`, and a second copy at `duplicate`.
    Deliver {
        /// When the packet is due.
        at: Duration,
        /// When its duplicate is due, if it has one (never before `at`).
        duplicate: Option<Duration>,
        /// Whether the reorder draw held it back.
        reordered: bool,
    },
}

/// What one link did, in packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct LinkCounters {
    /// Copies handed on for sending (duplicates included).
    pub forwarded: u64,
    /// Dropped because the link is blocked.
    pub dropped_blocked: u64,
    /// Dropped by the loss draw.
    pub dropped_loss: u64,
    /// Dropped because the link's queue was full.
    pub dropped_overflow: u64,
    /// Second copies made.
    pub duplicated: u64,
    /// Packets held for a later time (delay, jitter or reordering).
    pub delayed: u64,
    /// Packets held back by the reorder draw.
    pub reordered: u64,
}

impl LinkCounters {
    /// Every drop.
    pub fn dropped(&self) -> u64 {
        self.dropped_blocked + self.dropped_loss + self.dropped_overflow
    }

    /// Adds `other` to these.
    pub fn add(&mut self, other: &LinkCounters) {
        self.forwarded += other.forwarded;
        self.dropped_blocked += other.dropped_blocked;
        self.dropped_loss += other.dropped_loss;
        self.dropped_overflow += other.dropped_overflow;
        self.duplicated += other.duplicated;
        self.delayed += other.delayed;
        self.reordered += other.reordered;
    }

    /// Whether nothing was counted.
    pub fn is_zero(&self) -> bool {
        *self == LinkCounters::default()
    }
}

/// Draws the fate of a packet arriving at `now` on a link with `fault` (steps 1 to 5 of the
/// module doc). Draws only for the faults that are on.
pub fn decide(rng: &mut ChaCha20Rng, fault: &LinkFault, now: Duration) -> Decision {
    if fault.blocked {
        return Decision::Drop(DropReason::Blocked);
    }
    if draw(rng, fault.loss) {
        return Decision::Drop(DropReason::Loss);
    }
    let mut wait = fault.delay.min(DELAY_MAX);
    if !fault.jitter.is_zero() {
        wait += uniform(rng, Duration::ZERO, fault.jitter.min(DELAY_MAX));
    }
    let reordered = draw(rng, fault.reorder);
    if reordered {
        wait += uniform(rng, REORDER_HOLD_MIN, REORDER_HOLD_MAX);
    }
    let at = now.saturating_add(wait.min(DELAY_MAX));
    let duplicate = draw(rng, fault.duplicate)
        .then(|| at.saturating_add(uniform(rng, Duration::ZERO, DUPLICATE_GAP_MAX)));
    Decision::Deliver { at, duplicate, reordered }
}

/// True with probability `p` (clamped to [0, 1]); no draw when `p` is 0.
fn draw(rng: &mut ChaCha20Rng, p: f64) -> bool {
    let p = probability(p);
    p > 0.0 && rng.random::<f64>() < p
}

/// A uniform draw from [low, high] (low when high < low).
fn uniform(rng: &mut ChaCha20Rng, low: Duration, high: Duration) -> Duration {
    let low = low.as_nanos() as u64;
    let high = (high.as_nanos() as u64).max(low);
    Duration::from_nanos(rng.random_range(low..=high))
}

/// What [`Relay::handle`] did with a packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled<P> {
    /// Send it now.
    Forward(P),
    /// Held: [`Relay::poll_due`] gives it (and its duplicate) back when due.
    Held,
    /// Dropped.
    Dropped(DropReason),
}

/// A held copy.
#[derive(Debug)]
struct Pending<P> {
    at: Duration,
    /// Arrival order, so that packets due at the same time leave in the order they came.
    sequence: u64,
    link: usize,
    bytes: usize,
    packet: P,
}

impl<P> PartialEq for Pending<P> {
    fn eq(&self, other: &Pending<P>) -> bool {
        (self.at, self.sequence) == (other.at, other.sequence)
    }
}

impl<P> Eq for Pending<P> {}

impl<P> PartialOrd for Pending<P> {
    fn partial_cmp(&self, other: &Pending<P>) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<P> Ord for Pending<P> {
    fn cmp(&self, other: &Pending<P>) -> Ordering {
        (self.at, self.sequence).cmp(&(other.at, other.sequence))
    }
}

/// Per-link state: what is held, and the counters.
#[derive(Debug, Clone, Copy, Default)]
struct LinkState {
    pending: usize,
    pending_bytes: usize,
    counters: LinkCounters,
}

/// The relay's packets in flight over many links, each link an index the caller chooses
/// (below [`LINKS_MAX`]). `P` is whatever the caller needs to send a packet later.
#[derive(Debug)]
pub struct Relay<P> {
    rng: ChaCha20Rng,
    links: Vec<LinkState>,
    queue: BinaryHeap<Reverse<Pending<P>>>,
    sequence: u64,
}

impl<P: Clone> Relay<P> {
    /// An empty relay whose draws follow from `seed`.
    pub fn new(seed: u64) -> Relay<P> {
        Relay {
            rng: ChaCha20Rng::seed_from_u64(seed),
            links: Vec::new(),
            queue: BinaryHeap::new(),
            sequence: 0,
        }
    }

    /// A packet of `bytes` bytes arrived at `now` on `link`, whose fault is `fault`.
    pub fn handle(
        &mut self,
        link: usize,
        now: Duration,
        fault: &LinkFault,
        packet: P,
        bytes: usize,
    ) -> Handled<P> {
        if link >= LINKS_MAX {
            return Handled::Dropped(DropReason::Overflow);
        }
        if self.links.len() <= link {
            self.links.resize(link + 1, LinkState::default());
        }
        if fault.is_healthy() {
            self.links[link].counters.forwarded += 1;
            return Handled::Forward(packet);
        }
        let (at, duplicate, reordered) = match decide(&mut self.rng, fault, now) {
            Decision::Drop(reason) => {
                let counters = &mut self.links[link].counters;
                match reason {
                    DropReason::Blocked => counters.dropped_blocked += 1,
                    DropReason::Loss => counters.dropped_loss += 1,
                    DropReason::Overflow => counters.dropped_overflow += 1,
                }
                return Handled::Dropped(reason);
            }
            Decision::Deliver { at, duplicate, reordered } => (at, duplicate, reordered),
        };
        if at <= now && duplicate.is_none() {
            self.links[link].counters.forwarded += 1;
            return Handled::Forward(packet);
        }
        if !self.has_room(link, bytes) {
            self.links[link].counters.dropped_overflow += 1;
            return Handled::Dropped(DropReason::Overflow);
        }
        let state = &mut self.links[link];
        if at > now {
            state.counters.delayed += 1;
        }
        if reordered {
            state.counters.reordered += 1;
        }
        // The duplicate only when it fits too: a full queue drops copies, not originals.
        match duplicate.filter(|_| self.has_room_for_two(link, bytes)) {
            Some(second) => {
                self.links[link].counters.duplicated += 1;
                self.push(link, at, bytes, packet.clone());
                self.push(link, second, bytes, packet);
            }
            None => self.push(link, at, bytes, packet),
        }
        Handled::Held
    }

    fn has_room(&self, link: usize, bytes: usize) -> bool {
        let state = &self.links[link];
        state.pending < PENDING_MAX
            && state.pending_bytes.saturating_add(bytes) <= PENDING_BYTES_MAX
    }

    fn has_room_for_two(&self, link: usize, bytes: usize) -> bool {
        let state = &self.links[link];
        state.pending + 1 < PENDING_MAX
            && state.pending_bytes.saturating_add(bytes.saturating_mul(2)) <= PENDING_BYTES_MAX
    }

    fn push(&mut self, link: usize, at: Duration, bytes: usize, packet: P) {
        self.sequence += 1;
        let state = &mut self.links[link];
        state.pending += 1;
        state.pending_bytes += bytes;
        self.queue.push(Reverse(Pending { at, sequence: self.sequence, link, bytes, packet }));
    }

    /// The next held copy due at or before `now`, with its link; `None` when none is due.
    pub fn poll_due(&mut self, now: Duration) -> Option<(usize, P)> {
        if self.queue.peek()?.0.at > now {
            return None;
        }
        let Reverse(pending) = self.queue.pop()?;
        let state = &mut self.links[pending.link];
        state.pending -= 1;
        state.pending_bytes -= pending.bytes;
        state.counters.forwarded += 1;
        Some((pending.link, pending.packet))
    }

    /// When the next held copy is due.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.queue.peek().map(|pending| pending.0.at)
    }

    /// Copies held, over all links.
    pub fn pending(&self) -> usize {
        self.queue.len()
    }

    /// What `link` did so far.
    pub fn counters(&self, link: usize) -> LinkCounters {
        self.links.get(link).map(|state| state.counters).unwrap_or_default()
    }

    /// Counts a packet forwarded on `link` without going through [`Relay::handle`] (the IO
    /// relay's fast path for healthy links).
    pub fn count_forwarded(&mut self, link: usize, packets: u64) {
        if link >= LINKS_MAX {
            return;
        }
        if self.links.len() <= link {
            self.links.resize(link + 1, LinkState::default());
        }
        self.links[link].counters.forwarded += packets;
    }
}

#[cfg(test)]
mod tests;
