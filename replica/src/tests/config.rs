//! Quorum sizes and configuration limits, data-driven.

use std::time::Duration;

use crate::core::{Config, ConfigError, Protocol};
use crate::net::config::NodeConfig;
use crate::planted::PlantedBug;

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
    let cases: [(Breaker, &str); 8] = [
        (|c| c.replica_count = 0, "replica_count"),
        (|c| c.replica_count = 129, "replica_count"),
        (|c| c.batch_size_max = 0, "batch_size_max"),
        (|c| c.batch_size_max = 1001, "batch_size_max"),
        (|c| c.log_size = c.window - 1, "log_size"),
        (|c| c.checkpoint_interval = c.log_size, "log_size"),
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

/// Planted bugs (`crate::planted`): names round-trip (command line, TOML, JSON); a
/// configuration naming one is refused with a typed error by a build without the
/// `planted-bugs` feature, where `Config::planted` is false whatever the field says, and taken
/// by a build with it.
#[test]
fn planted_bugs_only_with_the_feature() {
    let names: std::collections::BTreeSet<&str> =
        PlantedBug::ALL.iter().map(|bug| bug.name()).collect();
    assert_eq!(names.len(), PlantedBug::ALL.len(), "distinct names");
    let parts: std::collections::BTreeSet<_> =
        PlantedBug::ALL.iter().map(|bug| bug.part()).collect();
    assert_eq!(
        parts.len(),
        6,
        "normal case, view change, rollback, checkpoint, client, durability"
    );
    for bug in PlantedBug::ALL {
        assert_eq!(bug.name().parse::<PlantedBug>(), Ok(bug));
        assert_eq!(bug.to_string(), bug.name());
        assert_eq!(serde_json::to_string(&bug).unwrap(), format!("\"{}\"", bug.name()));
        assert!(bug.rule().starts_with('§'), "{bug}: the rule of PROTOCOL.md it breaks");
        let protocol = if bug.protocol() == "pbft" { Protocol::Pbft } else { Protocol::PoeTs };
        let mut config = Config::new(protocol, 4, 1);
        config.planted_bug = Some(bug);
        if crate::planted::ENABLED {
            assert_eq!(config.validate(), Ok(()));
            assert!(config.planted(bug));
            if bug.protocol() == "pbft" {
                // A PBFT bug under PoE would never act: refused.
                let mut poe = config.clone();
                poe.protocol = Protocol::PoeMac;
                let error = poe.validate().expect_err("a PBFT bug under PoE");
                assert!(matches!(error, ConfigError::PlantedBugProtocol { .. }), "{error}");
            }
        } else {
            let error = config.validate().expect_err("no planted bugs in this build");
            assert_eq!(error, ConfigError::PlantedBugsNotBuilt { bug });
            assert_eq!(error.field(), "planted_bug");
            assert!(error.to_string().contains(bug.name()), "{error}");
            assert!(!config.planted(bug), "constant false without the feature");
        }
    }
    let unknown = "no-such-bug".parse::<PlantedBug>().expect_err("unknown");
    assert!(unknown.to_string().contains("vote-digest-unchecked"), "lists the known: {unknown}");
    assert!(serde_json::from_str::<PlantedBug>("\"no-such-bug\"").is_err());
}

/// A replica's `config.toml` names its planted bug at the top level (`planted_bug = "name"`);
/// loading copies it into the cluster configuration, refuses it without the feature, and
/// refuses it in a declared Byzantine replica.
#[test]
fn node_config_planted_bug() {
    let temporary = tempfile::tempdir().expect("a temporary directory");
    let directory = temporary.path();
    let address: std::net::SocketAddr = "127.0.0.1:1".parse().unwrap();
    let mut node = NodeConfig {
        id: 1,
        listen: address,
        peers: vec![address; 4],
        cluster: Config::new(Protocol::PoeMac, 4, 2),
        public_keys: directory.join("public.json"),
        secrets_fd: crate::net::secrets::SECRETS_FD,
        tls: crate::net::tls::TlsFiles {
            ca: directory.join("ca.crt"),
            cert: directory.join("node.crt"),
        },
        ledger: directory.join("ledger.jsonl"),
        fsync: false,
        log: directory.join("replica.log"),
        byzantine: None,
        planted_bug: Some(PlantedBug::FirstSeenWins),
        parent_pid: None,
        epoch_unix_nanos: 0,
    };
    let path = directory.join("config.toml");
    let text = node.to_toml();
    assert!(text.contains("planted_bug = \"first-seen-wins\""), "{text}");
    std::fs::write(&path, &text).unwrap();
    let loaded = NodeConfig::load(&path);
    if crate::planted::ENABLED {
        let loaded = loaded.expect("a planted-bugs build takes it");
        assert_eq!(loaded.cluster.planted_bug, Some(PlantedBug::FirstSeenWins));
    } else {
        let error = loaded.expect_err("refused without the feature").to_string();
        assert!(error.contains("this build has no planted bugs"), "{error}");
    }
    node.byzantine = Some(crate::byzantine::ByzantineConfig::default());
    std::fs::write(&path, node.to_toml()).unwrap();
    assert!(NodeConfig::load(&path).is_err(), "no planted bug in a Byzantine replica");
    node.planted_bug = None;
    std::fs::write(&path, node.to_toml()).unwrap();
    assert_eq!(NodeConfig::load(&path).expect("no bug: fine").cluster.planted_bug, None);
}
