//! Known-answer vectors: the replica's digests reproduce `history/vectors/digests.json`, which
//! `history/vectors/derive.py` derives from the byte layout documented in `history::ledger`
//! alone (the checker checks its own implementation against the same file).

use std::collections::BTreeMap;

use history::{Digest, OpResult, Operation};
use serde::Deserialize;

use crate::core::ledger::{block_hash, genesis_hash};
use crate::core::message::{RequestBody, SignedRequest, batch_digest, encode};
use crate::core::state_machine::{ClientEntry, Snapshot, StateMachine};
use crate::core::{ClientId, ReplicaId, RequestId, Seq, View};
use crate::crypto::ed25519::{PublicKey, Signature};

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

impl Request {
    /// The request with a signature of zeros: digests do not cover the signature.
    fn signed(&self) -> SignedRequest {
        let body = RequestBody {
            client: ClientId(self.client),
            request: RequestId(self.request),
            op: self.op.clone(),
        };
        SignedRequest { body, signature: Signature([0; 64]) }
    }
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
    replica_count: u8,
    primary: u8,
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

#[test]
fn request_bodies_and_digests_match_the_vectors() {
    let vectors = vectors();
    assert!(vectors.requests.len() >= 5);
    for case in &vectors.requests {
        let signed = case.request.signed();
        assert_eq!(hex::encode(encode(&signed.body)), case.body, "body of {:?}", case.request);
        assert_eq!(signed.digest(), case.digest, "digest of {:?}", case.request);
    }
}

#[test]
fn batch_digests_match_the_vectors() {
    let vectors = vectors();
    assert!(vectors.batches.iter().any(|batch| batch.requests.is_empty()));
    assert!(vectors.batches.iter().any(|batch| batch.requests.len() > 1));
    for case in &vectors.batches {
        let batch: Vec<SignedRequest> = case.requests.iter().map(Request::signed).collect();
        assert_eq!(batch_digest(&batch), case.digest, "batch {}", case.name);
    }
}

#[test]
fn state_digests_match_the_vectors() {
    let vectors = vectors();
    assert!(vectors.states.iter().any(|state| state.store.len() > 2 && state.clients.len() > 2));
    for case in &vectors.states {
        // The reply cache's view, slot and result are not covered by the digest.
        let clients = case
            .clients
            .iter()
            .map(|(client, request)| {
                let entry = ClientEntry {
                    request: RequestId(*request),
                    view: View(0),
                    seq: Seq(0),
                    result: OpResult::Written,
                };
                (ClientId(*client), entry)
            })
            .collect();
        let snapshot = Snapshot { seq: Seq(case.seq), store: case.store.clone(), clients };
        assert_eq!(snapshot.digest(), case.digest, "state {}", case.name);
        if case.seq == 0 && case.clients.is_empty() {
            let genesis = StateMachine::with_genesis(&case.store);
            assert_eq!(genesis.digest(), case.digest, "{}", case.name);
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
        let key = PublicKey::from_bytes(&key).expect("a valid public key");
        let hash = genesis_hash(case.replica_count, ReplicaId(case.primary), &key);
        assert_eq!(hash, case.hash, "genesis of {case:?}");
    }
    let chain = &vectors.chain;
    assert_eq!(chain.genesis, vectors.geneses[0].hash);
    assert_eq!(chain.blocks.len(), 3);
    let mut previous = chain.genesis;
    for block in &chain.blocks {
        previous = block_hash(Seq(block.seq), &block.batch_digest, &previous);
        assert_eq!(previous, block.hash, "block {}", block.seq);
    }
}

#[test]
fn checkpoint_signing_digests_match_the_vectors() {
    let vectors = vectors();
    assert_eq!(vectors.checkpoints.len(), 3);
    for case in &vectors.checkpoints {
        let digest = {
            let bytes = crate::core::message::checkpoint_signing_bytes(
                Seq(case.seq),
                &case.state_digest,
                &case.block_hash,
            );
            Digest(bytes.try_into().expect("32 bytes"))
        };
        assert_eq!(digest, case.signing_digest, "{case:?}");
    }
}
