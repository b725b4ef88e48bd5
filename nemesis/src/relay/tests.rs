//! The relay's model on virtual time: rates, bounds, order and determinism.

use std::time::Duration;

use super::{
    DELAY_MAX, DUPLICATE_GAP_MAX, DropReason, Handled, PENDING_MAX, REORDER_HOLD_MAX, Relay,
};
use crate::network::LinkFault;

const LINK: usize = 3;

fn ms(value: u64) -> Duration {
    Duration::from_millis(value)
}

/// Feeds packets 0..count, one every `gap`, delivering each held copy at its due time;
/// returns every delivery as (time, packet) in delivery order, and the relay.
fn run(
    seed: u64,
    fault: &LinkFault,
    count: u32,
    gap: Duration,
) -> (Vec<(Duration, u32)>, Relay<u32>) {
    let mut relay = Relay::new(seed);
    let mut delivered = Vec::new();
    let mut next = 0;
    loop {
        let arrival = (next < count).then(|| gap * next);
        match (arrival, relay.next_deadline()) {
            (None, None) => break,
            (arrival, Some(deadline)) if arrival.is_none_or(|arrival| deadline <= arrival) => {
                while let Some((link, due)) = relay.poll_due(deadline) {
                    assert_eq!(link, LINK);
                    delivered.push((deadline, due));
                }
            }
            (Some(now), _) => {
                if let Handled::Forward(packet) = relay.handle(LINK, now, fault, next, 100) {
                    delivered.push((now, packet));
                }
                next += 1;
            }
            (None, Some(_)) => unreachable!("handled by the deadline arm"),
        }
    }
    (delivered, relay)
}

#[test]
fn a_healthy_link_delivers_everything_at_once_in_order() {
    let (delivered, relay) = run(1, &LinkFault::default(), 1000, ms(1));
    let expected: Vec<(Duration, u32)> = (0..1000).map(|i| (ms(u64::from(i)), i)).collect();
    assert_eq!(delivered, expected);
    let counters = relay.counters(LINK);
    assert_eq!(counters.forwarded, 1000);
    assert_eq!(counters.dropped() + counters.delayed + counters.duplicated, 0);
    assert_eq!(relay.pending(), 0);
}

#[test]
fn a_blocked_link_drops_everything() {
    let fault = LinkFault { blocked: true, delay: ms(5), ..LinkFault::default() };
    let (delivered, relay) = run(1, &fault, 500, ms(1));
    assert!(delivered.is_empty());
    assert_eq!(relay.counters(LINK).dropped_blocked, 500);
    assert_eq!(relay.counters(LINK).forwarded, 0);
}

#[test]
fn loss_drops_close_to_p() {
    for p in [0.05, 0.3, 0.9] {
        let fault = LinkFault { loss: p, ..LinkFault::default() };
        let (delivered, relay) = run(7, &fault, 20_000, ms(1));
        let lost = relay.counters(LINK).dropped_loss as f64 / 20_000.0;
        assert!((lost - p).abs() < 0.02, "p = {p}, lost {lost}");
        assert_eq!(delivered.len() as u64 + relay.counters(LINK).dropped_loss, 20_000);
        // What is not lost keeps its order and is not delayed.
        assert!(delivered.windows(2).all(|pair| pair[0].1 < pair[1].1));
        assert!(delivered.iter().all(|(at, packet)| *at == ms(u64::from(*packet))));
    }
}

#[test]
fn delay_and_jitter_stay_within_their_bounds() {
    let fault = LinkFault { delay: ms(20), jitter: ms(10), ..LinkFault::default() };
    let (delivered, relay) = run(3, &fault, 2000, ms(1));
    assert_eq!(delivered.len(), 2000);
    let mut waits: Vec<Duration> =
        delivered.iter().map(|(at, packet)| *at - ms(u64::from(*packet))).collect();
    assert!(waits.iter().all(|wait| *wait >= ms(20) && *wait <= ms(30)), "{waits:?}");
    waits.sort();
    // The jitter is spread over its range, not stuck at one end.
    assert!(waits[100] < ms(22) && waits[1900] > ms(28));
    assert_eq!(relay.counters(LINK).delayed, 2000);
    assert_eq!(relay.counters(LINK).forwarded, 2000);
}

#[test]
fn a_constant_delay_keeps_the_order() {
    let fault = LinkFault { delay: ms(50), ..LinkFault::default() };
    let (delivered, _) = run(3, &fault, 500, Duration::from_micros(10));
    let order: Vec<u32> = delivered.iter().map(|(_, packet)| *packet).collect();
    assert_eq!(order, (0..500).collect::<Vec<u32>>());
}

#[test]
fn duplicates_come_twice_a_little_later() {
    let fault = LinkFault { duplicate: 0.5, ..LinkFault::default() };
    let (delivered, relay) = run(11, &fault, 4000, ms(5));
    let duplicated = relay.counters(LINK).duplicated;
    assert!((1800..2200).contains(&duplicated), "{duplicated}");
    assert_eq!(delivered.len() as u64, 4000 + duplicated);
    let mut seen = vec![Vec::new(); 4000];
    for (at, packet) in &delivered {
        seen[*packet as usize].push(*at);
    }
    let twice = seen.iter().filter(|times| times.len() == 2).count() as u64;
    assert_eq!(twice, duplicated);
    for (packet, times) in seen.iter().enumerate() {
        let sent = ms(5 * packet as u64);
        assert!(times.len() == 1 || times.len() == 2);
        assert!(times.iter().all(|at| *at >= sent && *at <= sent + DUPLICATE_GAP_MAX));
    }
}

#[test]
fn reorder_lets_later_packets_overtake() {
    let fault = LinkFault { reorder: 0.2, ..LinkFault::default() };
    let (delivered, relay) = run(5, &fault, 2000, Duration::from_micros(200));
    assert_eq!(delivered.len(), 2000);
    let reordered = relay.counters(LINK).reordered;
    assert!((300..500).contains(&reordered), "{reordered}");
    let inversions = delivered.windows(2).filter(|pair| pair[0].1 > pair[1].1).count();
    assert!(inversions > 100, "only {inversions} inversions");
    for (at, packet) in &delivered {
        let sent = Duration::from_micros(200 * u64::from(*packet));
        assert!(*at <= sent + REORDER_HOLD_MAX);
    }
    // Every packet arrives exactly once.
    let mut packets: Vec<u32> = delivered.iter().map(|(_, packet)| *packet).collect();
    packets.sort();
    assert_eq!(packets, (0..2000).collect::<Vec<u32>>());
}

#[test]
fn the_same_seed_gives_the_same_fates() {
    let fault = LinkFault {
        loss: 0.1,
        delay: ms(3),
        jitter: ms(4),
        duplicate: 0.1,
        reorder: 0.1,
        blocked: false,
    };
    let (first, relay) = run(42, &fault, 3000, Duration::from_micros(300));
    let (second, again) = run(42, &fault, 3000, Duration::from_micros(300));
    assert_eq!(first, second);
    assert_eq!(relay.counters(LINK), again.counters(LINK));
    let (other, _) = run(43, &fault, 3000, Duration::from_micros(300));
    assert_ne!(first, other);
}

#[test]
fn a_full_queue_drops_and_counts_overflow() {
    let fault = LinkFault { delay: Duration::from_secs(1), ..LinkFault::default() };
    let mut relay = Relay::new(1);
    for packet in 0..PENDING_MAX as u32 + 10 {
        let handled = relay.handle(LINK, Duration::ZERO, &fault, packet, 10);
        if (packet as usize) < PENDING_MAX {
            assert_eq!(handled, Handled::Held);
        } else {
            assert_eq!(handled, Handled::Dropped(DropReason::Overflow));
        }
    }
    assert_eq!(relay.counters(LINK).dropped_overflow, 10);
    assert_eq!(relay.pending(), PENDING_MAX);
    // Another link has its own room.
    assert_eq!(relay.handle(LINK + 1, Duration::ZERO, &fault, 0, 10), Handled::Held);
    // Bytes are bounded too.
    let mut bytes = Relay::new(1);
    let big = 1 << 20;
    let held = (0..20)
        .filter(|packet| bytes.handle(0, Duration::ZERO, &fault, *packet, big) == Handled::Held)
        .count();
    assert_eq!(held, super::PENDING_BYTES_MAX / big);
    // Draining frees the room.
    while relay.poll_due(Duration::from_secs(1)).is_some() {}
    assert_eq!(relay.pending(), 0);
    assert_eq!(relay.handle(LINK, Duration::from_secs(1), &fault, 0, 10), Handled::Held);
}

#[test]
fn nonsense_faults_do_not_panic_and_stay_bounded() {
    let fault = LinkFault {
        blocked: false,
        loss: f64::NAN,
        delay: Duration::MAX,
        jitter: Duration::MAX,
        duplicate: 7.0,
        reorder: -1.0,
    };
    let mut relay = Relay::new(1);
    let now = Duration::from_secs(5);
    assert_eq!(relay.handle(LINK, now, &fault, 1u8, 1), Handled::Held);
    assert_eq!(relay.next_deadline(), Some(now + DELAY_MAX));
    assert_eq!(relay.counters(LINK).duplicated, 1);
    assert_eq!(
        relay.handle(usize::MAX, now, &fault, 1u8, 1),
        Handled::Dropped(DropReason::Overflow)
    );
    assert_eq!(relay.poll_due(now), None);
}
