//! Throughput of the in-memory PoE cluster, crypto included, and the cost of each crypto step.
//!
//! Run: `cargo bench -p replica --bench cluster` (release profile). Options:
//! `-- --requests N --clients C --protocol poe-ts|poe-mac --replicas N --batch B`.
//!
//! Two cluster figures:
//! - `one thread`: the deterministic simulator, every replica and client in one thread on
//!   virtual time with zero latency: the protocol work of the whole cluster (every replica's
//!   verification, signing, hashing, encoding and execution, and the clients' signing) per
//!   second of one core;
//! - `parallel`: the same cores on one thread per replica plus one for the clients, over
//!   in-memory channels on the wall clock: what the cluster does with both cores.

#![allow(clippy::disallowed_methods, reason = "a benchmark reads the wall clock to time itself")]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use history::Operation;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use replica::core::message::{
    Message, Propose, RequestBody, SignedRequest, batch_digest, decode, encode,
};
use replica::core::{ClientId, Config, Protocol, RequestId, Seq, View};
use replica::crypto::dealer::ClusterKeys;
use replica::crypto::ed25519::{self, SignedMessage};
use replica::crypto::mac::MacKey;
use replica::crypto::threshold::PreparedMessage;
use replica::sim::{Cluster, STEPS_MAX_DEFAULT, SimOptions, parallel};

struct Options {
    /// Requests of the one-thread run.
    requests: u64,
    /// Requests of the parallel run (more: its start and drain are not steady state).
    requests_parallel: u64,
    clients: u32,
    protocol: Protocol,
    replicas: u8,
    batch: u32,
    window: u64,
    batch_timeout_us: u64,
    /// Skip the micro-benchmarks and the one-thread run.
    parallel_only: bool,
}

fn parse_options() -> Options {
    let mut options = Options {
        requests: 50_000,
        requests_parallel: 200_000,
        clients: 2000,
        protocol: Protocol::PoeTs,
        replicas: 4,
        batch: 100,
        window: 32,
        batch_timeout_us: 1000,
        parallel_only: false,
    };
    let args: Vec<String> = std::env::args().collect();
    let mut index = 1;
    while index < args.len() {
        let value = args.get(index + 1).cloned().unwrap_or_default();
        match args[index].as_str() {
            "--requests" => {
                options.requests = value.parse().expect("--requests N");
                options.requests_parallel = options.requests;
            }
            "--clients" => options.clients = value.parse().expect("--clients N"),
            "--replicas" => options.replicas = value.parse().expect("--replicas N"),
            "--batch" => options.batch = value.parse().expect("--batch N"),
            "--window" => options.window = value.parse().expect("--window N"),
            "--batch-timeout-us" => {
                options.batch_timeout_us = value.parse().expect("--batch-timeout-us N")
            }
            "--protocol" => {
                options.protocol = value.parse().unwrap_or_else(|error| panic!("{error}"))
            }
            "--parallel-only" => {
                options.parallel_only = true;
                index += 1;
                continue;
            }
            // `cargo bench` passes `--bench`; ignore flags we do not know.
            _ => {
                index += 1;
                continue;
            }
        }
        index += 2;
    }
    options
}

/// The median time of one call of `f`, over enough calls to take about 200 ms.
fn time_per_call(mut f: impl FnMut()) -> Duration {
    f();
    let start = Instant::now();
    f();
    let once = start.elapsed().max(Duration::from_nanos(50));
    let calls = (Duration::from_millis(20).as_nanos() / once.as_nanos()).clamp(1, 100_000) as u32;
    let mut samples: Vec<Duration> = (0..10)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..calls {
                f();
            }
            start.elapsed() / calls
        })
        .collect();
    samples.sort();
    samples[samples.len() / 2]
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}

fn main() {
    let options = parse_options();
    let config = {
        let mut config = Config::new(options.protocol, options.replicas, options.clients);
        config.batch_size_max = options.batch;
        config.window = options.window;
        config.log_size = config.log_size.max(options.window * 2);
        config.batch_timeout = Duration::from_micros(options.batch_timeout_us);
        config.request_queue_max = config.request_queue_max.max(options.clients * 4);
        config
    };
    let n = u32::from(options.replicas);
    let nf = config.nf() as u32;
    if options.parallel_only {
        run_parallel(&options, config);
        return;
    }

    println!("crypto and encoding costs (median per call)");
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let keys = ClusterKeys::generate(&mut rng, n, 100, nf).expect("dealer");
    let requests: Vec<SignedRequest> = (0..100u32)
        .map(|client| {
            let op = Operation::Write { key: format!("k{}", client % 8), value: i64::from(client) };
            let body = RequestBody { client: ClientId(client), request: RequestId(1), op };
            SignedRequest::sign(body, &keys.clients[client as usize].signing_key)
        })
        .collect();
    let signing_bytes: Vec<Vec<u8>> = requests.iter().map(|r| r.body.signing_bytes()).collect();
    let items: Vec<SignedMessage<'_>> = requests
        .iter()
        .zip(&signing_bytes)
        .map(|(request, bytes)| SignedMessage {
            key: &keys.public.clients[request.body.client.index()],
            message: bytes,
            signature: &request.signature,
        })
        .collect();
    let sign = time_per_call(|| {
        black_box(keys.clients[0].signing_key.sign(&signing_bytes[0]));
    });
    let verify_one = time_per_call(|| {
        black_box(items[0].key.verify(items[0].message, items[0].signature)).expect("valid");
    });
    let verify_batch = time_per_call(|| ed25519::verify_batch(&items).expect("valid"));
    let message = &PreparedMessage::new(b"ordeal/support/v1 0123456789abcdef0123456789abcdef");
    let shares: Vec<_> = keys
        .replicas
        .iter()
        .map(|replica| (replica.threshold_share.signer(), replica.threshold_share.sign(message)))
        .collect();
    let share_sign = time_per_call(|| {
        black_box(keys.replicas[0].threshold_share.sign(message));
    });
    // A message is hashed to G2 when first used: time a fresh one's first share.
    let prepare_and_sign = time_per_call(|| {
        let fresh = PreparedMessage::new(b"ordeal/support/v1 0123456789abcdef0123456789abcdef");
        black_box(keys.replicas[0].threshold_share.sign(&fresh));
    });
    let prepare = prepare_and_sign.saturating_sub(share_sign);
    let share_verify = time_per_call(|| {
        keys.public.threshold.verify_share(0, message, &shares[0].1).expect("valid");
    });
    let threshold = &keys.public.threshold;
    let combine = time_per_call(|| {
        black_box(threshold.combine(message, &shares[..nf as usize]).expect("combines"));
    });
    let signature = threshold.combine(message, &shares[..nf as usize]).expect("combines");
    let group_verify = time_per_call(|| threshold.verify(message, &signature).expect("valid"));
    let batch: Arc<[SignedRequest]> = requests.clone().into();
    let propose = Message::Propose(Propose { view: View(0), seq: Seq(1), batch: batch.clone() });
    let encoded = encode(&propose);
    let encoding = time_per_call(|| {
        black_box(encode(&propose));
    });
    let decoding = time_per_call(|| {
        black_box(decode(&encoded).expect("valid"));
    });
    let hashing = time_per_call(|| {
        black_box(batch_digest(&batch));
    });
    let mac_key = MacKey([3; 32]);
    let mac = time_per_call(|| {
        black_box(mac_key.tag(&[&encoded]));
    });
    println!("  ed25519 sign                   {:8.1} µs", micros(sign));
    println!("  ed25519 verify                 {:8.1} µs", micros(verify_one));
    println!(
        "  ed25519 batch verify, 100 sigs {:8.1} µs ({:.1} µs/sig)",
        micros(verify_batch),
        micros(verify_batch) / 100.0
    );
    println!("  BLS hash to G2 (once per slot) {:8.1} µs", micros(prepare));
    println!("  BLS share sign                 {:8.1} µs", micros(share_sign));
    println!("  BLS share verify               {:8.1} µs", micros(share_verify));
    println!("  BLS combine {nf} shares          {:8.1} µs", micros(combine));
    println!("  BLS group verify               {:8.1} µs", micros(group_verify));
    println!(
        "  PROPOSE(100) encode            {:8.1} µs ({} bytes)",
        micros(encoding),
        encoded.len()
    );
    println!("  PROPOSE(100) decode            {:8.1} µs", micros(decoding));
    println!("  batch digest (100 requests)    {:8.1} µs", micros(hashing));
    println!("  HMAC over PROPOSE(100)         {:8.1} µs", micros(mac));

    let batch_size = f64::from(options.batch);
    let per_batch = match options.protocol {
        // Clients sign; every replica batch-verifies the client signatures and signs a share;
        // the primary combines and verifies; every backup verifies the certificate.
        Protocol::PoeTs => {
            batch_size * micros(sign)
                + f64::from(n) * micros(verify_batch) * batch_size / 100.0
                + f64::from(n) * (micros(prepare) + micros(share_sign))
                + micros(combine)
                + f64::from(n) * micros(group_verify)
        }
        // Signed supports (PBFT: PREPAREs; its COMMITs carry MACs only): every replica signs
        // one and verifies n − 1.
        Protocol::PoeMac | Protocol::Pbft => {
            batch_size * micros(sign)
                + f64::from(n) * micros(verify_batch) * batch_size / 100.0
                + f64::from(n) * micros(sign)
                + f64::from(n * (n - 1)) * micros(verify_one)
        }
    };
    println!(
        "  crypto per batch of {} at n = {n} ({}): {:.2} ms => at most {:.0} ops/s on one core",
        options.batch,
        options.protocol.name(),
        per_batch / 1000.0,
        batch_size / per_batch * 1e6
    );

    println!();
    println!(
        "cluster: {} n = {n}, batch {}, {} clients, {} requests, zero latency, one thread",
        options.protocol.name(),
        options.batch,
        options.clients,
        options.requests
    );
    let mut sim = SimOptions::new(config.clone(), 1, options.requests);
    sim.latency_min = Duration::ZERO;
    sim.latency_max = Duration::ZERO;
    let mut cluster = Cluster::new(sim);
    let start = Instant::now();
    cluster.run(STEPS_MAX_DEFAULT).expect("every request completes");
    let elapsed = start.elapsed();
    let slots = cluster.replica(replica::core::ReplicaId(0)).last_executed().0;
    assert_eq!(cluster.completions.len() as u64, options.requests);
    println!(
        "  {} requests in {:.2} s: {:.0} ops/s; {} slots (mean batch {:.1}), {:.2} ms per slot",
        options.requests,
        elapsed.as_secs_f64(),
        options.requests as f64 / elapsed.as_secs_f64(),
        slots,
        options.requests as f64 / slots as f64,
        elapsed.as_secs_f64() * 1000.0 / slots as f64
    );

    run_parallel(&options, config);
}

fn run_parallel(options: &Options, config: Config) {
    let workers = std::thread::available_parallelism().map_or(2, |cores| cores.get());
    let requests = options.requests_parallel;
    println!();
    println!(
        "cluster: {} n = {}, batch {}, {} clients, {requests} requests, {workers} worker threads",
        config.protocol.name(),
        config.replica_count,
        config.batch_size_max,
        config.client_count,
    );
    let report =
        parallel::run(&SimOptions::new(config, 1, requests), workers, Duration::from_secs(600));
    assert_eq!(report.completed, requests);
    assert!(report.ledgers_agree, "replicas disagree below heads {:?}", report.heads);
    println!(
        "  parallel, clients pre-signed: {:.2} s: {:.0} ops/s; {} slots (mean batch {:.1})",
        report.elapsed.as_secs_f64(),
        report.completed as f64 / report.elapsed.as_secs_f64(),
        report.slots,
        report.completed as f64 / report.slots as f64,
    );
}
