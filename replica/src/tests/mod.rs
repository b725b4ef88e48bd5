//! Tests of the replica crate. Cluster tests (`cluster_*`) drive real cores through the
//! in-memory [`crate::sim::Cluster`]; the others test one component each.

mod byzantine;
mod client;
mod cluster;
mod config;
mod crypto;
mod fuzz;
mod identity;
mod node;
mod pbft;
#[cfg(feature = "planted-bugs")]
mod planted;
mod recovery;
mod safety;
mod secrets;
mod state_machine;
mod store;
mod vectors;

use std::collections::BTreeMap;

use history::{ExecuteEvent, LedgerEvent, Operation};

use crate::core::message::{RequestBody, SignedRequest};
use crate::core::{ClientId, ReplicaId, RequestId, Seq};
use crate::sim::Cluster;

/// A request of `client` signed with its real key.
fn signed_request(cluster: &Cluster, client: u32, request: u64, op: Operation) -> SignedRequest {
    let body = RequestBody { client: ClientId(client), request: RequestId(request), op };
    SignedRequest::sign(body, &cluster.keys().clients[client as usize].signing_key)
}

/// The execute events of one replica by sequence number, asserting they are in strict
/// sequence order 1, 2, 3, ... (execution never runs out of order).
fn executions(cluster: &Cluster, replica: ReplicaId) -> BTreeMap<u64, &ExecuteEvent> {
    let mut by_seq = BTreeMap::new();
    for event in &cluster.events[replica.index()] {
        if let LedgerEvent::Execute(execute) = event {
            assert_eq!(execute.seq, by_seq.len() as u64 + 1, "replica {replica} executes in order");
            by_seq.insert(execute.seq, execute);
        }
    }
    by_seq
}

/// Asserts that `replicas` executed the same slots with identical batches, results, block
/// hashes and state digests, and that their hash chains verify. Returns the common head.
fn assert_ledgers_agree(cluster: &Cluster, replicas: &[ReplicaId]) -> Seq {
    let reference = executions(cluster, replicas[0]);
    for &replica in replicas {
        let ledger = cluster.replica(replica).ledger();
        ledger.verify_chain().expect("hash chain intact");
        let mine = executions(cluster, replica);
        assert_eq!(mine.len(), reference.len(), "replica {replica} executed as many slots");
        for (seq, event) in &mine {
            let other = reference[seq];
            assert_eq!(event.block_hash, other.block_hash, "block hash at seq {seq}");
            assert_eq!(event.state_digest, other.state_digest, "state digest at seq {seq}");
            assert_eq!(event.requests, other.requests, "batch and results at seq {seq}");
        }
        assert_eq!(ledger.head_seq(), Seq(reference.len() as u64));
    }
    Seq(reference.len() as u64)
}

/// Asserts every completion has a proof of nf distinct replicas (PBFT: f + 1), and that the
/// result it accepted is the one `reference` executed for that request at the proven slot and
/// view.
fn assert_completions_proven(cluster: &Cluster, reference: ReplicaId) {
    let nf = cluster.replica(reference).config().reply_quorum();
    let executed = executions(cluster, reference);
    for (client, completion) in &cluster.completions {
        let proof = &completion.proof;
        assert!(
            proof.replicas.len() >= nf,
            "proof of {} replicas, nf = {nf}",
            proof.replicas.len()
        );
        assert!(proof.replicas.windows(2).all(|pair| pair[0] < pair[1]), "distinct replicas");
        let event = executed.get(&proof.seq.0).unwrap_or_else(|| {
            panic!("proof names seq {} that {reference} never executed", proof.seq)
        });
        assert_eq!(event.view, proof.view.0);
        let entry = event
            .requests
            .iter()
            .find(|entry| entry.client == client.0 && entry.request == completion.request.0)
            .expect("the proven slot holds the request");
        assert_eq!(
            entry.result.as_ref(),
            Some(&completion.result),
            "the client saw the executed result"
        );
    }
}
