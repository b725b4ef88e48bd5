//! Known-answer vectors: the checker's digests reproduce `history/vectors/digests.json`, which
//! `history/vectors/derive.py` derives from the byte layout documented in `history::ledger`
//! alone (the replica checks itself against the same file).

use std::collections::BTreeMap;

use history::{Digest, Operation};
use serde::Deserialize;

use crate::digest;
use crate::kv::Store;

const VECTORS: &str = include_str!("../../../history/vectors/digests.json");

#[derive(Debug, Deserialize)]
struct Vectors {
    requests: Vec<RequestCase>,
    batches: Vec<BatchCase>,
    states: Vec<StateCase>,
    geneses: Vec<GenesisCase>,
    chain: ChainCase,
    checkpoints: Vec<CheckpointCase>,
}

/// What a CHECKPOINT's signature is over (the `checkpoint-certificates` oracle checks the
/// signatures replicas record against it).
#[derive(Debug, Deserialize)]
struct CheckpointCase {
    seq: u64,
    state_digest: Digest,
    block_hash: Digest,
    signing_digest: Digest,
}

#[derive(Debug, Deserialize)]
struct Request {
    client: u32,
    request: u64,
    op: Operation,
}

#[derive(Debug, Deserialize)]
struct RequestCase {
    #[serde(flatten)]
    request: Request,
    body: String,
    digest: Digest,
}

#[derive(Debug, Deserialize)]
struct BatchCase {
    name: String,
    requests: Vec<Request>,
    digest: Digest,
}

#[derive(Debug, Deserialize)]
struct StateCase {
    name: String,
    seq: u64,
    store: BTreeMap<String, i64>,
    clients: Vec<(u32, u64)>,
    digest: Digest,
}

#[derive(Debug, Deserialize)]
struct GenesisCase {
    replica_count: u64,
    primary: u64,
    key: String,
    hash: Digest,
}

#[derive(Debug, Deserialize)]
struct ChainCase {
    genesis: Digest,
    blocks: Vec<Block>,
}

#[derive(Debug, Deserialize)]
struct Block {
    seq: u64,
    batch_digest: Digest,
    hash: Digest,
}

fn vectors() -> Vectors {
    serde_json::from_str(VECTORS).expect("the vectors parse")
}

fn request_digest(request: &Request) -> Digest {
    digest::request_digest(&digest::request_body(request.client, request.request, &request.op))
}

#[test]
fn request_bodies_and_digests_match_the_vectors() {
    let vectors = vectors();
    assert!(vectors.requests.len() >= 5);
    for case in &vectors.requests {
        let body =
            digest::request_body(case.request.client, case.request.request, &case.request.op);
        assert_eq!(hex::encode(&body), case.body, "body of {:?}", case.request);
        assert_eq!(digest::request_digest(&body), case.digest, "digest of {:?}", case.request);
    }
}

#[test]
fn batch_digests_match_the_vectors() {
    let vectors = vectors();
    assert!(vectors.batches.iter().any(|batch| batch.requests.is_empty()));
    assert!(vectors.batches.iter().any(|batch| batch.requests.len() > 1));
    for case in &vectors.batches {
        let digests: Vec<Digest> = case.requests.iter().map(request_digest).collect();
        assert_eq!(digest::batch_digest(&digests), case.digest, "batch {}", case.name);
    }
}

#[test]
fn state_digests_match_the_vectors() {
    let vectors = vectors();
    assert!(vectors.states.iter().any(|state| state.store.len() > 2 && state.clients.len() > 2));
    for case in &vectors.states {
        let store = Store::from_snapshot(case.seq, &case.store, &case.clients);
        assert_eq!(store.digest(), case.digest, "state {}", case.name);
        if case.seq == 0 && case.clients.is_empty() {
            // A genesis store: the model's starting digest is the same.
            assert_eq!(Store::with_genesis(&case.store).digest(), case.digest, "{}", case.name);
        }
    }
}

#[test]
fn genesis_hashes_and_the_chain_match_the_vectors() {
    let vectors = vectors();
    assert!(!vectors.geneses.is_empty());
    for case in &vectors.geneses {
        let mut key = [0u8; 32];
        hex::decode_to_slice(&case.key, &mut key).expect("a 32-byte key");
        let hash = digest::genesis_hash(case.replica_count, case.primary, &key);
        assert_eq!(hash, case.hash, "genesis of {case:?}");
    }
    let chain = &vectors.chain;
    assert_eq!(chain.genesis, vectors.geneses[0].hash);
    assert_eq!(chain.blocks.len(), 3);
    let mut previous = chain.genesis;
    for block in &chain.blocks {
        previous = digest::block_hash(block.seq, &block.batch_digest, &previous);
        assert_eq!(previous, block.hash, "block {}", block.seq);
    }
}

#[test]
fn checkpoint_signing_digests_match_the_vectors() {
    let vectors = vectors();
    assert_eq!(vectors.checkpoints.len(), 3);
    for case in &vectors.checkpoints {
        let digest = crate::digest::Hasher::new(b"ordeal/checkpoint/v1")
            .u64(case.seq)
            .digest(&case.state_digest)
            .digest(&case.block_hash)
            .finish();
        assert_eq!(digest, case.signing_digest, "{case:?}");
    }
}
