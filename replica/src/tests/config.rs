//! Quorum sizes and configuration limits, data-driven.

use std::time::Duration;

use crate::core::{Config, ConfigError, Protocol};

/// (n, f, nf): f is the largest f with n > 3f and every quorum is nf = n − f. The rows where n
/// ≠ 3f + 1 are where 2f + 1 would be wrong (PROTOCOL §1: n = 32 gives nf = 22, not 21).
#[test]
fn quorum_table() {
    let table = [
        (1, 0, 1),
        (2, 0, 2),
        (3, 0, 3),
        (4, 1, 3),
        (5, 1, 4),
        (6, 1, 5),
        (7, 2, 5),
        (10, 3, 7),
        (16, 5, 11),
        (32, 10, 22),
        (64, 21, 43),
        (91, 30, 61),
        (128, 42, 86),
    ];
    for (n, f, nf) in table {
        let config = Config::new(Protocol::PoeTs, n, 1);
        assert_eq!((config.f(), config.nf()), (f, nf), "n = {n}");
        assert!(usize::from(n) > 3 * config.f());
        assert!(usize::from(n) <= 3 * (config.f() + 1), "f is the largest");
        // Two quorums intersect in at least f + 1 replicas, so in an honest one.
        assert!(2 * config.nf() - usize::from(n) > config.f(), "n = {n}");
    }
}

#[test]
fn config_limits_are_checked() {
    let valid = Config::new(Protocol::PoeMac, 4, 16);
    assert_eq!(valid.validate(), Ok(()));
    type Breaker = fn(&mut Config);
    let cases: [(Breaker, &str); 7] = [
        (|c| c.replica_count = 0, "replica_count"),
        (|c| c.replica_count = 129, "replica_count"),
        (|c| c.batch_size_max = 0, "batch_size_max"),
        (|c| c.batch_size_max = 1001, "batch_size_max"),
        (|c| c.log_size = c.window - 1, "log_size"),
        (|c| c.request_queue_max = c.batch_size_max - 1, "request_queue_max"),
        (|c| c.client_retry_timeout = Duration::ZERO, "client_retry_timeout"),
    ];
    for (break_it, field) in cases {
        let mut config = valid.clone();
        break_it(&mut config);
        let error: ConfigError = config.validate().expect_err(field);
        assert_eq!(error.field(), field);
    }
}
