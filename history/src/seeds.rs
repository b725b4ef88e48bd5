//! How a run's seed becomes the seeds of its random streams: every salt in one place.
//!
//! A run is replayed from its seed alone (`test.toml`, `ordeal sim --seed`, the simulator's
//! regression seeds). Each independent random stream of a run (the cluster's keys, the nemesis
//! schedule, each client's generator, the simulated network ...) is seeded by a function of
//! the run's seed here, most of them the seed XOR a salt of their own, so that no two streams
//! draw the same numbers and the simulator and real runs derive a shared stream (a Byzantine
//! replica's hook) alike. The crates that draw from a stream call these functions; none
//! salts a seed by itself.
//!
//! **Invariant:** a derivation never changes. A changed salt replays a recorded seed as a
//! different run, so the tests pin values of every function.
//!
//! Most salts are eight ASCII bytes read as a big-endian `u64` (`0x6f72_6465_616c_6b65` is
//! `ordealke`), recognisable in a hex dump; the generators' is the 64-bit golden ratio.
//!
//! This module holds arithmetic only: it draws nothing and depends on no random number
//! generator (this crate is the one every other crate may depend on, the checker included).

/// Salt of the cluster's keys (`ordealke`).
const KEYS_SALT: u64 = 0x6f72_6465_616c_6b65;

/// Salt of the real network's relay (`network1`).
const RELAY_SALT: u64 = 0x6e65_7477_6f72_6b31;

/// Salt of the simulated network's relay (`relaysim`).
const SIM_RELAY_SALT: u64 = 0x7265_6c61_7973_696d;

/// Salt of the simulated network's latency draws (`latency!`).
const SIM_LATENCY_SALT: u64 = 0x6c61_7465_6e63_7921;

/// Salt of the simulated replicas' clocks (`clocksim`).
const SIM_CLOCKS_SALT: u64 = 0x636c_6f63_6b73_696d;

/// Salt of the draw of how many replicas `--nemesis mixed` declares Byzantine (`byzantin`).
const BYZANTINE_COUNT_SALT: u64 = 0x6279_7a61_6e74_696e;

/// Multiplier that spreads the Byzantine-count draw over the high bits (the golden ratio).
const BYZANTINE_COUNT_MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

/// Salt of the nemesis schedule (`nemesis1`).
const SCHEDULE_SALT: u64 = 0x6e65_6d65_7369_7331;

/// Salt of the nemesis target picker (`nemesis2`).
const TARGETS_SALT: u64 = 0x6e65_6d65_7369_7332;

/// Salt of the draw of which replicas are Byzantine (`nemesis3`).
const BYZANTINE_REPLICAS_SALT: u64 = 0x6e65_6d65_7369_7333;

/// Salt of the clients' workload generators (the 64-bit golden ratio).
const GENERATOR_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Salt of `ordeal bench`'s arrival times (`arrivals`).
const ARRIVALS_SALT: u64 = 0x6172_7269_7661_6c73;

/// Salt of the replica fuzzer's inputs (`fuzz_inp`).
const FUZZ_SALT: u64 = 0x6675_7a7a_5f69_6e70;

/// Multiplier of a fuzz campaign's session seeds (a prime, so sessions of nearby seeds differ).
const FUZZ_SESSION_MULTIPLIER: u64 = 1_000_003;

/// The cluster's keys: every replica's and client's signing and MAC keys.
pub fn keys(seed: u64) -> u64 {
    seed ^ KEYS_SALT
}

/// The hook of Byzantine replica `replica`: what it equivocates, forges and withholds (real
/// runs, twins and the simulator alike).
///
/// Replica 0's is the run's seed itself.
pub fn byzantine(seed: u64, replica: u8) -> u64 {
    seed ^ u64::from(replica)
}

/// The real network's relay: its drops, delays, duplicates and reorders.
pub fn relay(seed: u64) -> u64 {
    seed ^ RELAY_SALT
}

/// The simulated network's relay: its drops, delays, duplicates and reorders.
pub fn sim_relay(seed: u64) -> u64 {
    seed ^ SIM_RELAY_SALT
}

/// The simulated network's latency of every packet.
pub fn sim_latency(seed: u64) -> u64 {
    seed ^ SIM_LATENCY_SALT
}

/// The simulated replicas' clocks: each one's offset and drift.
pub fn sim_clocks(seed: u64) -> u64 {
    seed ^ SIM_CLOCKS_SALT
}

/// The draw (a value, not a stream's seed) of how many replicas `--nemesis mixed` declares
/// Byzantine; its high bits are the ones to use.
pub fn byzantine_count_draw(seed: u64) -> u64 {
    (seed ^ BYZANTINE_COUNT_SALT).wrapping_mul(BYZANTINE_COUNT_MULTIPLIER)
}

/// Which replicas a run declares Byzantine.
pub fn byzantine_replicas(seed: u64) -> u64 {
    seed ^ BYZANTINE_REPLICAS_SALT
}

/// The nemesis schedule: which fault comes when, and for how long.
pub fn schedule(seed: u64) -> u64 {
    seed ^ SCHEDULE_SALT
}

/// The nemesis target picker: which replicas each fault hits.
pub fn targets(seed: u64) -> u64 {
    seed ^ TARGETS_SALT
}

/// Client `client`'s workload generator: its operations, keys and values.
pub fn generator(seed: u64, client: u32) -> u64 {
    seed ^ (u64::from(client) << 32) ^ GENERATOR_SALT
}

/// `ordeal bench`'s arrival times for the pool on client worker `worker` of its clusters of
/// `replicas` replicas (every protocol's cluster gets the same arrivals).
pub fn arrivals(seed: u64, replicas: u64, worker: u64) -> u64 {
    seed ^ ARRIVALS_SALT ^ (replicas << 40) ^ (worker << 56)
}

/// The replica fuzzer's inputs (one session's forged, replayed and mutated messages).
pub fn fuzz(seed: u64) -> u64 {
    seed ^ FUZZ_SALT
}

/// The run seed of session `session` of a fuzz campaign started from `seed`.
pub fn fuzz_session(seed: u64, session: u64) -> u64 {
    seed.wrapping_mul(FUZZ_SESSION_MULTIPLIER).wrapping_add(session)
}

/// The run seed of repetition `index` of `ordeal test --test-count` from `seed`: `seed + index`,
/// so each repetition is reproduced by `--seed` alone.
pub fn repetition(seed: u64, index: u32) -> u64 {
    seed.wrapping_add(u64::from(index))
}
