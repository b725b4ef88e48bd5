//! The ledger, speculation, bank, liveness, pairing and checkpoint oracles, each on records
//! that satisfy it and on hand-made violations whose evidence must name the right place.
//!
//! The ledger audits run on ledgers built with real digests (the checker's own [`digest`] and
//! [`Store`]) and real client signatures, then tampered with one field at a time.

use std::collections::{BTreeMap, HashMap};

use ed25519_dalek::{Signer, SigningKey};
use history::{
    Digest, ExecuteEvent, ExecutedRequest, LedgerEvent, Op, OpKind, OpResult, Operation, Process,
    Proof, Verdict,
};
use serde_json::{Value, json};

use super::op;
use crate::kv::Store;
use crate::liveness::LivenessOptions;
use crate::replay::{self, Audit, Context};
use crate::validate::{self, HistoryError};
use crate::{CheckResult, audit, bank, certificate, digest, ledger, liveness, speculation};

// ---------------------------------------------------------------------------------------------
// Ledgers with real digests and signatures.

/// The store before slot 1: one bank account with money in it.
fn genesis_store() -> BTreeMap<String, i64> {
    BTreeMap::from([("z".to_string(), 3)])
}

/// The genesis hash of a 4-replica cluster whose view-0 primary is replica 0.
fn genesis_hash() -> Digest {
    let primary = SigningKey::from_bytes(&[0xee; 32]).verifying_key().to_bytes();
    digest::genesis_hash(4, 0, &primary)
}

fn client_key(client: u32) -> SigningKey {
    SigningKey::from_bytes(&[client as u8 + 1; 32])
}

/// `key`'s signature of the request, hex, as a ledger records it.
fn sign(key: &SigningKey, client: u32, request: u64, op: &Operation) -> String {
    let body = digest::request_body(client, request, op);
    hex::encode(key.sign(&digest::signing_bytes(&body)).to_bytes())
}

fn read(key: &str) -> Operation {
    Operation::Read { key: key.into() }
}

fn write(key: &str, value: i64) -> Operation {
    Operation::Write { key: key.into(), value }
}

fn cas(key: &str, from: i64, to: i64) -> Operation {
    Operation::Cas { key: key.into(), from, to }
}

fn transfer(from: &str, to: &str, amount: i64) -> Operation {
    Operation::Transfer { from: from.into(), to: to.into(), amount }
}

fn read_all(keys: &[&str]) -> Operation {
    Operation::ReadAll { keys: keys.iter().map(|key| key.to_string()).collect() }
}

/// An honest replica's ledger under construction: every execution's results, digests and hash
/// come from the checker's model, every request is signed by its client.
struct Ledger {
    replica: u32,
    /// The view executions are certified in.
    view: u64,
    store: Store,
    /// The slot of `hashes[0]`: 0 (genesis) or the last installed snapshot's.
    base: u64,
    /// Block hash per slot of the current chain from `base` on.
    hashes: Vec<Digest>,
    events: Vec<LedgerEvent>,
}

impl Ledger {
    fn new(replica: u32) -> Ledger {
        Ledger {
            replica,
            view: 0,
            store: Store::with_genesis(&genesis_store()),
            base: 0,
            hashes: vec![genesis_hash()],
            events: Vec::new(),
        }
    }

    fn time(&self) -> u64 {
        self.events.len() as u64
    }

    /// Enters `view`: later executions are certified in it.
    fn enter_view(mut self, view: u64) -> Ledger {
        self.view = view;
        self.events.push(LedgerEvent::ViewEntered(history::ViewEvent {
            time: self.time(),
            replica: self.replica,
            view,
            backoff_ms: None,
            new_view: None,
        }));
        self
    }

    /// The standing slot `seq` is certified again in the current view.
    fn recertify(mut self, seq: u64) -> Ledger {
        let executed = execution(&mut self.events, seq).clone();
        self.events.push(LedgerEvent::Recertified(history::RecertifiedEvent {
            time: self.time(),
            replica: self.replica,
            seq,
            old_view: executed.view,
            new_view: self.view,
            batch_digest: executed.batch_digest,
        }));
        self
    }

    /// Installs `donor`'s state at its head (a state transfer).
    fn transfer_from(mut self, donor: &Ledger) -> Ledger {
        let seq = donor.store.seq();
        let (store, clients) = donor.store.snapshot();
        let block_hash = *donor.hashes.last().unwrap();
        self.store = Store::from_snapshot(seq, &store, &clients);
        self.base = seq;
        self.hashes = vec![block_hash];
        self.events.push(LedgerEvent::StateTransfer(history::StateTransferEvent {
            time: self.time(),
            replica: self.replica,
            seq,
            block_hash,
            state_digest: self.store.digest(),
            store,
            clients,
        }));
        self
    }

    /// Executes a batch of (client, request, operation) at the next slot.
    fn execute(mut self, batch: &[(u32, u64, Operation)]) -> Ledger {
        let results = self.store.execute(batch.iter().map(|(c, r, op)| (*c, *r, op)));
        let digests: Vec<Digest> = batch
            .iter()
            .map(|(c, r, op)| digest::request_digest(&digest::request_body(*c, *r, op)))
            .collect();
        let batch_digest = digest::batch_digest(&digests);
        let seq = self.store.seq();
        let block_hash = digest::block_hash(seq, &batch_digest, self.hashes.last().unwrap());
        self.hashes.push(block_hash);
        let requests = batch
            .iter()
            .zip(results)
            .map(|((client, request, op), result)| ExecutedRequest {
                client: *client,
                request: *request,
                op: op.clone(),
                result,
                signature: sign(&client_key(*client), *client, *request, op),
            })
            .collect();
        self.events.push(LedgerEvent::Execute(ExecuteEvent {
            time: self.time(),
            replica: self.replica,
            view: self.view,
            seq,
            batch_digest,
            block_hash,
            requests,
            state_digest: self.store.digest(),
        }));
        self
    }

    /// A checkpoint at the head.
    fn checkpoint(mut self, stable: bool) -> Ledger {
        self.events.push(LedgerEvent::Checkpoint(history::CheckpointEvent {
            time: self.time(),
            replica: self.replica,
            seq: self.store.seq(),
            state_digest: self.store.digest(),
            stable,
            certificate: None,
        }));
        self
    }

    /// Undoes every slot above `to_seq` (the builder keeps all undo information, so it can also
    /// undo below a stable checkpoint, which the audit must refuse).
    fn rollback(mut self, to_seq: u64) -> Ledger {
        let from_seq = self.store.seq();
        self.store.undo_to(to_seq).unwrap();
        self.hashes.truncate((to_seq - self.base) as usize + 1);
        self.events.push(LedgerEvent::Rollback(history::RollbackEvent {
            time: self.time(),
            replica: self.replica,
            from_seq,
            to_seq,
            state_digest: self.store.digest(),
        }));
        self
    }
}

/// The honest ledger every test starts from. Its events, 1-based:
/// 1 seq 1, 2 seq 2, 3 stable checkpoint 2, 4 seq 3 (client 2's write, speculative, view 0),
/// 5 rollback to 2 (exactly the stable checkpoint: allowed), 6 view 1 entered, 7 seq 3
/// (client 1's transfer, view 1), 8 seq 4 (client 2's write again, client 0's read of all
/// keys), 9 stable checkpoint 4.
fn honest_script(replica: u32) -> Ledger {
    Ledger::new(replica)
        .execute(&[(0, 1, write("x", 1)), (1, 1, cas("x", 1, 2))])
        .execute(&[(0, 2, read("x"))])
        .checkpoint(true)
        .execute(&[(2, 1, write("y", 5))])
        .rollback(2)
        .enter_view(1)
        .execute(&[(1, 2, transfer("z", "y", 3))])
        .execute(&[(2, 1, write("y", 5)), (0, 3, read_all(&["x", "y", "z"]))])
        .checkpoint(true)
}

/// Two honest replicas with the honest ledger.
fn honest() -> BTreeMap<u32, Vec<LedgerEvent>> {
    BTreeMap::from([(0, honest_script(0).events), (1, honest_script(1).events)])
}

/// Everything the audits can know: genesis, three clients' keys, and a history that invoked
/// exactly the requests of the honest ledger.
fn context() -> Context {
    let mut issued = HashMap::new();
    for event in honest_script(0).events {
        if let LedgerEvent::Execute(execute) = event {
            for request in execute.requests {
                let invocation = replay::invocation_of(&request.op);
                issued.insert((request.client, request.request), invocation);
            }
        }
    }
    Context {
        genesis_store: genesis_store(),
        genesis_hash: Some(genesis_hash()),
        client_keys: Some((0..3).map(|c| client_key(c).verifying_key().to_bytes()).collect()),
        replica_keys: None,
        signatures: crate::digest::Signatures::Ed25519,
        issued: Some(issued),
    }
}

/// The last execution at `seq`.
fn execution(events: &mut [LedgerEvent], seq: u64) -> &mut ExecuteEvent {
    events
        .iter_mut()
        .rev()
        .find_map(|event| match event {
            LedgerEvent::Execute(execute) if execute.seq == seq => Some(execute),
            _ => None,
        })
        .unwrap()
}

/// The oracles of `audit` with `verdict`.
fn oracles_with(audit: &Audit, verdict: Verdict) -> Vec<&'static str> {
    audit.results.iter().filter(|(_, result)| result.verdict == verdict).map(|(n, _)| *n).collect()
}

/// The first violation `oracle` lists.
fn first<'a>(audit: &'a Audit, oracle: &str) -> &'a Value {
    &audit.results[oracle].evidence["first"][0]
}

fn problem(evidence: &Value) -> &str {
    evidence["problem"].as_str().unwrap_or_default()
}

#[test]
fn an_honest_ledger_passes_every_audit() {
    let audit = replay::audit(&honest(), &context());
    assert_eq!(audit.results.len(), 6);
    for (oracle, result) in &audit.results {
        assert_eq!(result.verdict, Verdict::Valid, "{oracle}: {:?}", result.evidence);
    }
    let chain = &audit.results["ledger-hash-chain"].evidence;
    assert_eq!((chain["executions"].as_u64(), chain["requests"].as_u64()), (Some(10), Some(14)));
    assert_eq!(audit.results["rollback"].evidence["rollbacks"], 2);
    assert_eq!(audit.results["checkpoint-digests"].evidence["checkpoints"], 4);
}

#[test]
fn without_client_keys_or_issued_requests_validity_is_unknown() {
    let keyless = Context { client_keys: None, ..context() };
    let audit = replay::audit(&honest(), &keyless);
    assert_eq!(oracles_with(&audit, Verdict::Unknown), ["ledger-validity"]);
    let bare = Context { issued: None, genesis_hash: None, ..context() };
    let audit = replay::audit(&honest(), &bare);
    assert_eq!(oracles_with(&audit, Verdict::Unknown), ["ledger-hash-chain", "ledger-validity"]);
}

/// A retried request the at-most-once table skips (result `None`) is not a second execution.
#[test]
fn a_skipped_retry_is_not_a_second_execution() {
    let events = honest_script(0).execute(&[(0, 1, write("x", 1))]).events;
    let LedgerEvent::Execute(retry) = events.last().unwrap() else { panic!() };
    assert_eq!(retry.requests[0].result, None);
    let audit = replay::audit(&BTreeMap::from([(0, events)]), &context());
    assert_eq!(oracles_with(&audit, Verdict::Valid).len(), 6);
}

#[test]
fn a_wrong_result_fails_replay_at_its_request() {
    let mut ledgers = honest();
    execution(ledgers.get_mut(&1).unwrap(), 2).requests[0].result =
        Some(OpResult::Read { value: Some(99) });
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-replay"]);
    let violation = first(&audit, "ledger-replay");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(1), Some(2)));
    assert_eq!(violation["event"], 2);
    let request = &violation["request"];
    assert_eq!((request["client"].as_u64(), request["request"].as_u64()), (Some(0), Some(2)));
    assert_eq!(request["recorded"], json!(OpResult::Read { value: Some(99) }));
    assert_eq!(request["model"], json!(OpResult::Read { value: Some(2) }));
}

#[test]
fn a_wrong_state_digest_fails_replay_at_its_slot() {
    let mut ledgers = honest();
    execution(ledgers.get_mut(&0).unwrap(), 3).state_digest = Digest([7; 32]);
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-replay"]);
    let violation = first(&audit, "ledger-replay");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(0), Some(3)));
    // The second execution at seq 3, after the rollback and the view change.
    assert_eq!(violation["event"], 7);
    assert_eq!(violation["recorded_state_digest"], Digest([7; 32]).to_hex());
    let model = &honest()[&0];
    let LedgerEvent::Execute(honest) = &model[6] else { panic!() };
    assert_eq!(violation["model_state_digest"], honest.state_digest.to_hex());
}

#[test]
fn a_wrong_block_hash_breaks_the_hash_chain() {
    let mut ledgers = honest();
    execution(ledgers.get_mut(&1).unwrap(), 2).block_hash = Digest([9; 32]);
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-hash-chain"]);
    let violation = first(&audit, "ledger-hash-chain");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(1), Some(2)));
    assert!(problem(violation).starts_with(&format!("block hash {}", Digest([9; 32]))));
    // The replay stops at the break and says so.
    assert_eq!(audit.results["ledger-replay"].verdict, Verdict::Unknown);
}

/// Block 3 hashes correctly over its own batch but links to block 1 instead of block 2.
#[test]
fn a_block_linked_to_the_wrong_predecessor_breaks_the_hash_chain() {
    let mut ledgers = honest();
    let events = ledgers.get_mut(&0).unwrap();
    let LedgerEvent::Execute(block_1) = events[0].clone() else { panic!() };
    let block_3 = execution(events, 3);
    block_3.block_hash = digest::block_hash(3, &block_3.batch_digest, &block_1.block_hash);
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-hash-chain"]);
    let violation = first(&audit, "ledger-hash-chain");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(0), Some(3)));
    assert_eq!(violation["event"], 7);
}

#[test]
fn a_first_block_not_linked_to_genesis_breaks_the_hash_chain() {
    let context = Context { genesis_hash: Some(Digest([1; 32])), ..context() };
    let audit = replay::audit(&honest(), &context);
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-hash-chain"]);
    assert_eq!(audit.results["ledger-hash-chain"].evidence["violations"], 2);
    let violation = first(&audit, "ledger-hash-chain");
    assert_eq!((violation["seq"].as_u64(), violation["event"].as_u64()), (Some(1), Some(1)));
}

#[test]
fn a_skipped_slot_breaks_the_hash_chain() {
    let mut ledgers = honest();
    execution(ledgers.get_mut(&0).unwrap(), 4).seq = 5;
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-hash-chain"]);
    let violation = first(&audit, "ledger-hash-chain");
    assert_eq!((violation["seq"].as_u64(), violation["event"].as_u64()), (Some(5), Some(8)));
    assert_eq!(problem(violation), "executed seq 5 after seq 3");
}

/// A request altered after signing: its batch digest no longer matches, and its client's
/// signature no longer verifies.
#[test]
fn an_altered_request_breaks_the_batch_digest_and_its_signature() {
    let mut ledgers = honest();
    execution(ledgers.get_mut(&0).unwrap(), 2).requests[0].op = read("y");
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-hash-chain", "ledger-validity"]);
    let violation = first(&audit, "ledger-hash-chain");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(0), Some(2)));
    assert!(problem(violation).starts_with("batch digest"), "{violation}");
    let forged = first(&audit, "ledger-validity");
    assert_eq!((forged["client"].as_u64(), forged["request"].as_u64()), (Some(0), Some(2)));
    assert_eq!(problem(forged), "the client's signature does not verify");
}

#[test]
fn a_signature_by_another_client_fails_validity() {
    let mut ledgers = honest();
    let request = &mut execution(ledgers.get_mut(&1).unwrap(), 2).requests[0];
    request.signature = sign(&client_key(1), 0, 2, &read("x"));
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-validity"]);
    assert_eq!(audit.results["ledger-validity"].evidence["violations"], 1);
    let violation = first(&audit, "ledger-validity");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(1), Some(2)));
    assert_eq!((violation["client"].as_u64(), violation["request"].as_u64()), (Some(0), Some(2)));
    assert_eq!(problem(violation), "the client's signature does not verify");
}

#[test]
fn a_signature_that_is_not_64_bytes_fails_validity() {
    let mut ledgers = honest();
    execution(ledgers.get_mut(&0).unwrap(), 4).requests[1].signature = "abcd".into();
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-validity"]);
    let violation = first(&audit, "ledger-validity");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(0), Some(4)));
    assert_eq!(problem(violation), "client 0 request 3: the signature is not 64 bytes of hex");
}

#[test]
fn a_request_never_invoked_fails_validity() {
    let mut context = context();
    context.issued.as_mut().unwrap().remove(&(1, 2));
    let audit = replay::audit(&honest(), &context);
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-validity"]);
    // Once per replica.
    assert_eq!(audit.results["ledger-validity"].evidence["violations"], 2);
    let violation = first(&audit, "ledger-validity");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(0), Some(3)));
    assert_eq!(violation["event"], 7);
    assert_eq!(problem(violation), "client 1 request 2 was never invoked in the history");
}

#[test]
fn a_request_executing_another_operation_than_invoked_fails_validity() {
    let mut context = context();
    let issued = context.issued.as_mut().unwrap();
    issued.insert((0, 1), replay::invocation_of(&write("x", 2)));
    let audit = replay::audit(&honest(), &context);
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-validity"]);
    let violation = first(&audit, "ledger-validity");
    assert_eq!((violation["seq"].as_u64(), violation["event"].as_u64()), (Some(1), Some(1)));
    assert!(problem(violation).contains("client 0 request 1 executed"), "{violation}");
    assert!(problem(violation).contains("but the history invoked"), "{violation}");
}

#[test]
fn a_request_from_a_client_outside_the_run_fails_validity() {
    let mut context = context();
    context.client_keys.as_mut().unwrap().truncate(2);
    let audit = replay::audit(&honest(), &context);
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-validity"]);
    let violation = first(&audit, "ledger-validity");
    // Client 2's first request, executed speculatively at seq 3 before the rollback.
    assert_eq!((violation["seq"].as_u64(), violation["event"].as_u64()), (Some(3), Some(4)));
    assert_eq!(problem(violation), "client 2 is not a client of the run");
}

/// The model skips a request already executed, so a ledger recording a second result for it
/// breaks replay too; at-most-once names both slots.
#[test]
fn a_request_executed_twice_breaks_at_most_once() {
    let mut events = honest_script(0).execute(&[(0, 1, write("x", 1))]).events;
    execution(&mut events, 5).requests[0].result = Some(OpResult::Written);
    let audit = replay::audit(&BTreeMap::from([(0, events)]), &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["ledger-at-most-once", "ledger-replay"]);
    let violation = first(&audit, "ledger-at-most-once");
    assert_eq!(*violation, json!({"replica": 0, "client": 0, "request": 1, "executed_at": [1, 5]}));
    assert_eq!(first(&audit, "ledger-replay")["request"]["model"], Value::Null);
}

#[test]
fn a_rollback_below_a_stable_checkpoint_is_refused() {
    let events = Ledger::new(0)
        .execute(&[(0, 1, write("x", 1)), (1, 1, cas("x", 1, 2))])
        .execute(&[(0, 2, read("x"))])
        .checkpoint(true)
        .execute(&[(2, 1, write("y", 5))])
        .rollback(1)
        .events;
    let audit = replay::audit(&BTreeMap::from([(0, events)]), &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["rollback"]);
    let violation = first(&audit, "rollback");
    assert_eq!((violation["seq"].as_u64(), violation["event"].as_u64()), (Some(1), Some(5)));
    assert_eq!(problem(violation), "rolls back to seq 1 below the stable checkpoint at seq 2");
    // The model, which forgot how to undo the stable slots, cannot follow either.
    let second = &audit.results["rollback"].evidence["first"][1];
    assert!(problem(second).starts_with("cannot undo to seq 1"), "{second}");
}

/// PROTOCOL §10.6: replica 1 kept seq 3 (executed in view 0) into view 1, whose certificate
/// for seq 3 names another batch; it rolls back from its head to seq 2 right after entering
/// the view and executes view 1's batch. Every audit accepts that, and so do the agreement,
/// one-batch-per-slot and speculation oracles with a promise of view 1's batch.
#[test]
fn a_kept_slot_replaced_by_the_new_views_certificate_is_a_clean_rollback() {
    let replica_1 = first_two(1)
        .checkpoint(true)
        .execute(&[(2, 1, write("y", 5))])
        .enter_view(1)
        .rollback(2)
        .execute(&[(1, 2, transfer("z", "y", 3))])
        .execute(&[(2, 1, write("y", 5)), (0, 3, read_all(&["x", "y", "z"]))])
        .checkpoint(true);
    let ledgers = BTreeMap::from([(0, honest_script(0).events), (1, replica_1.events)]);
    let audit = replay::audit(&ledgers, &context());
    for (oracle, result) in &audit.results {
        assert_eq!(result.verdict, Verdict::Valid, "{oracle}: {:?}", result.evidence);
    }
    assert_eq!(audit.results["rollback"].evidence["rollbacks"], 2);
    assert_eq!(ledger::agreement(&ledgers).verdict, Verdict::Valid);
    assert_eq!(certificate::one_batch_per_slot(&ledgers).verdict, Verdict::Valid);
    let result = speculation::check(&transfer_promised_at_3(1), &ledgers);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
}

#[test]
fn a_rollback_with_a_wrong_state_digest_is_named() {
    let mut ledgers = honest();
    let LedgerEvent::Rollback(rollback) = &mut ledgers.get_mut(&1).unwrap()[4] else { panic!() };
    rollback.state_digest = Digest([5; 32]);
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["rollback"]);
    assert_eq!(audit.results["rollback"].evidence["violations"], 1);
    let violation = first(&audit, "rollback");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(1), Some(2)));
    assert_eq!(violation["event"], 5);
    assert!(problem(violation).contains("but the kept prefix's is"), "{violation}");
}

#[test]
fn a_rollback_that_does_not_start_at_the_head_is_named() {
    let mut ledgers = honest();
    let LedgerEvent::Rollback(rollback) = &mut ledgers.get_mut(&0).unwrap()[4] else { panic!() };
    rollback.from_seq = 4;
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["rollback"]);
    let violation = first(&audit, "rollback");
    assert_eq!(problem(violation), "undoes from seq 4 but the head is seq 3");
}

#[test]
fn a_stable_checkpoint_with_a_wrong_digest_is_named() {
    let mut ledgers = honest();
    let LedgerEvent::Checkpoint(checkpoint) = &mut ledgers.get_mut(&1).unwrap()[8] else {
        panic!()
    };
    checkpoint.state_digest = Digest([6; 32]);
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["checkpoint-digests"]);
    let violation = first(&audit, "checkpoint-digests");
    assert_eq!((violation["replica"].as_u64(), violation["seq"].as_u64()), (Some(1), Some(4)));
    assert_eq!(violation["event"], 9);
    assert_eq!(violation["checkpoint_digest"], Digest([6; 32]).to_hex());
    let LedgerEvent::Execute(block_4) = &honest()[&1][7] else { panic!() };
    assert_eq!(violation["model_state_digest"], block_4.state_digest.to_hex());
}

#[test]
fn a_checkpoint_above_the_head_is_named() {
    let mut ledgers = honest();
    let LedgerEvent::Checkpoint(checkpoint) = &mut ledgers.get_mut(&0).unwrap()[2] else {
        panic!()
    };
    checkpoint.seq = 3;
    let audit = replay::audit(&ledgers, &context());
    assert_eq!(oracles_with(&audit, Verdict::Invalid), ["checkpoint-digests"]);
    let violation = first(&audit, "checkpoint-digests");
    assert_eq!((violation["seq"].as_u64(), violation["event"].as_u64()), (Some(3), Some(3)));
    assert_eq!(problem(violation), "checkpoint above the head, seq 2");
}

// ---------------------------------------------------------------------------------------------
// Histories.

const S: u64 = 1_000_000_000;

/// A client event with the given function, key and value.
fn event(process: u64, kind: OpKind, time: u64, f: &str, key: Option<&str>, value: Value) -> Op {
    Op { f: f.into(), key: key.map(str::to_string), value, ..op(process, kind, time) }
}

fn nemesis(time: u64, f: &str) -> Op {
    Op { process: Process::Nemesis, ..event(0, OpKind::Info, time, f, None, json!(null)) }
}

/// Pairs `ops` whose lines are 1, 2, ...
fn paired(ops: &[Op]) -> Vec<validate::Operation> {
    let lines: Vec<usize> = (1..=ops.len()).collect();
    validate::pair(ops, &lines).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Speculation.

/// A signed request invoked at `time` and completed `ok` with `value` and a proof for `seq`.
fn promised(
    process: u64,
    time: u64,
    (client, request): (u32, u64),
    (f, key, value): (&str, Option<&str>, Value),
    seq: u64,
) -> [Op; 2] {
    let invoke_value = if f == "read" { json!(null) } else { value.clone() };
    let invoke = Op {
        client: Some(client),
        request: Some(request),
        ..event(process, OpKind::Invoke, time, f, key, invoke_value)
    };
    let proof = Proof { view: 0, seq, replicas: vec![0, 1, 2], informed: vec![] };
    let ok = Op { proof: Some(proof), ..event(process, OpKind::Ok, time + 1, f, key, value) };
    [invoke, ok]
}

/// Client 0's read of x, promised at seq `seq` (it is at seq 2 in the honest ledger).
fn read_x_promised_at(seq: u64) -> Vec<validate::Operation> {
    paired(&promised(0, 10, (0, 2), ("read", Some("x"), json!(2)), seq))
}

fn violations(result: &CheckResult) -> u64 {
    result.evidence.get("violations").and_then(Value::as_u64).unwrap_or(0)
}

/// Client 2's write was executed speculatively at seq 3 and rolled back, then executed at
/// seq 4: its promise is for seq 4, which nobody rolled back.
#[test]
fn promises_kept_by_every_honest_ledger_are_valid() {
    let transfer = json!({"from": "z", "to": "y", "amount": 3});
    let ops: Vec<Op> = [
        promised(0, 10, (0, 2), ("read", Some("x"), json!(2)), 2),
        promised(1, 20, (1, 2), ("transfer", None, transfer), 3),
        promised(2, 30, (2, 1), ("write", Some("y"), json!(5)), 4),
        promised(0, 40, (0, 3), ("read", None, json!({"x": 2, "y": 5, "z": 0})), 4),
    ]
    .concat();
    let result = speculation::check(&paired(&ops), &honest());
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(result.evidence["promises"], 4);
    assert_eq!(
        (&result.evidence["verified"], &result.evidence["unverifiable"]),
        (&json!(4), &json!(0))
    );
}

#[test]
fn a_promised_slot_holding_another_request_is_invalid() {
    let mut ledgers = honest();
    execution(ledgers.get_mut(&1).unwrap(), 2).requests[0].request = 9;
    let result = speculation::check(&read_x_promised_at(2), &ledgers);
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    let violation = &result.evidence["first"][0];
    assert_eq!(violation["replica"], 1);
    assert_eq!(violation["op"]["line"], 1);
    assert_eq!(violation["op"]["proof"], json!({"view": 0, "seq": 2}));
    assert_eq!(problem(violation), "the block at seq 2 does not hold client 0 request 2");
}

#[test]
fn a_proof_naming_the_wrong_slot_is_invalid_in_every_ledger() {
    let result = speculation::check(&read_x_promised_at(3), &honest());
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 2));
    let replicas: Vec<&Value> =
        result.evidence["first"].as_array().unwrap().iter().map(|v| &v["replica"]).collect();
    assert_eq!(replicas, [0, 1]);
}

#[test]
fn a_promised_slot_with_another_result_is_invalid() {
    let mut ledgers = honest();
    execution(ledgers.get_mut(&0).unwrap(), 2).requests[0].result =
        Some(OpResult::Read { value: Some(7) });
    let result = speculation::check(&read_x_promised_at(2), &ledgers);
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    let violation = &result.evidence["first"][0];
    assert_eq!(violation["replica"], 0);
    assert_eq!(violation["op"]["request"], 2);
    assert_eq!(
        problem(violation),
        r#"the block at seq 2 gives result {"read":{"value":7}} but the client was promised 2"#
    );
}

/// Replica 1 rolls back the promised block and executes the same block again: its final
/// ledger keeps the promise, but the rollback itself broke it.
#[test]
fn a_promised_block_rolled_back_by_an_honest_replica_is_invalid() {
    let transfer_op = (1, 2, transfer("z", "y", 3));
    let rolled_back = Ledger::new(1)
        .execute(&[(0, 1, write("x", 1)), (1, 1, cas("x", 1, 2))])
        .execute(&[(0, 2, read("x"))])
        .execute(std::slice::from_ref(&transfer_op))
        .rollback(2)
        .execute(std::slice::from_ref(&transfer_op))
        .events;
    let ledgers = BTreeMap::from([(0, honest_script(0).events), (1, rolled_back)]);
    let value = json!({"from": "z", "to": "y", "amount": 3});
    let operations = paired(&promised(1, 10, (1, 2), ("transfer", None, value), 3));
    let result = speculation::check(&operations, &ledgers);
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    let violation = &result.evidence["first"][0];
    assert_eq!(violation["replica"], 1);
    assert_eq!(violation["op"]["proof"]["seq"], 3);
    assert_eq!(problem(violation), "rolled back (to seq 2) a block holding the promised result");
}

/// Found by `ordeal test --nemesis kill,pause --seed 3`: a primary executed a request at seq 3
/// in view 0 with a certificate nobody else saw and was paused; view 1 put the request at seq 3
/// again, the client's proof is from view 1, and the old primary rolled back its view-0 block
/// before executing view 1's. No execution under the proof's view was rolled back: valid.
#[test]
fn a_rolled_back_execution_of_an_older_view_breaks_no_promise() {
    let transfer_op = (1, 2, transfer("z", "y", 3));
    let mut old_primary = Ledger::new(1)
        .execute(&[(0, 1, write("x", 1)), (1, 1, cas("x", 1, 2))])
        .execute(&[(0, 2, read("x"))])
        .execute(std::slice::from_ref(&transfer_op))
        .rollback(2)
        .execute(std::slice::from_ref(&transfer_op))
        .events;
    execution(&mut old_primary, 3).view = 1;
    let mut backup = honest_script(0).events;
    for event in &mut backup {
        if let LedgerEvent::Execute(execute) = event
            && execute.seq >= 3
        {
            execute.view = 1;
        }
    }
    let ledgers = BTreeMap::from([(0, backup), (1, old_primary)]);
    let value = json!({"from": "z", "to": "y", "amount": 3});
    let mut ops = promised(1, 10, (1, 2), ("transfer", None, value), 3);
    ops[1].proof.as_mut().unwrap().view = 1;
    let result = speculation::check(&paired(&ops), &ledgers);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    // The same rollback under the proof's view is a violation.
    let mut same_view = ledgers;
    let LedgerEvent::Execute(first_try) = &mut same_view.get_mut(&1).unwrap()[2] else {
        panic!("event 3 executes seq 3")
    };
    first_try.view = 1;
    let result = speculation::check(&paired(&ops), &same_view);
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
}

/// Client 1's transfer promised at seq 3 by a proof of `view`.
fn transfer_promised_at_3(view: u64) -> Vec<validate::Operation> {
    let value = json!({"from": "z", "to": "y", "amount": 3});
    let mut ops = promised(1, 10, (1, 2), ("transfer", None, value), 3);
    ops[1].proof.as_mut().unwrap().view = view;
    paired(&ops)
}

/// Replica 1 executed the transfer at seq 3 in view 0 and kept it into view 1, where the slot
/// was certified again (the client's proof names view 1); later, in view 2, it rolled the
/// block back. Its execution event says view 0, but the proof's view is the one the block held
/// when it was rolled back: invalid. Without the rollback the same ledger keeps the promise.
#[test]
fn a_recertified_block_rolled_back_breaks_the_proof_of_its_new_view() {
    let transfer_op = (1, 2, transfer("z", "y", 3));
    let kept = Ledger::new(1)
        .execute(&[(0, 1, write("x", 1)), (1, 1, cas("x", 1, 2))])
        .execute(&[(0, 2, read("x"))])
        .execute(std::slice::from_ref(&transfer_op))
        .enter_view(1)
        .recertify(3);
    let clean = BTreeMap::from([(0, honest_script(0).events), (1, kept.events.clone())]);
    let result = speculation::check(&transfer_promised_at_3(1), &clean);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(
        (&result.evidence["verified"], &result.evidence["unverifiable"]),
        (&json!(1), &json!(0))
    );

    let rolled_back =
        kept.enter_view(2).rollback(2).execute(std::slice::from_ref(&transfer_op)).events;
    let ledgers = BTreeMap::from([(0, honest_script(0).events), (1, rolled_back)]);
    let result = speculation::check(&transfer_promised_at_3(1), &ledgers);
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    let violation = &result.evidence["first"][0];
    assert_eq!(violation["replica"], 1);
    assert_eq!(violation["op"]["proof"], json!({"view": 1, "seq": 3}));
    assert_eq!(violation["views"], json!([0, 1]));
    assert_eq!(problem(violation), "rolled back (to seq 2) a block holding the promised result");
    // A proof from view 2 named no execution that was removed.
    let result = speculation::check(&transfer_promised_at_3(2), &ledgers);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
}

/// A `recertified` event for a seq the replica never executed (or for another batch) is
/// ignored by the speculation oracle, not a panic and not a view the block held.
#[test]
fn a_recertification_of_nothing_standing_is_ignored() {
    let mut events = honest_script(1).events;
    for (seq, digest) in [(9, Digest([4; 32])), (3, Digest([5; 32]))] {
        events.push(LedgerEvent::Recertified(history::RecertifiedEvent {
            time: 50 + seq,
            replica: 1,
            seq,
            old_view: 1,
            new_view: 2,
            batch_digest: digest,
        }));
    }
    let ledgers = BTreeMap::from([(0, honest_script(0).events), (1, events)]);
    let result = speculation::check(&transfer_promised_at_3(1), &ledgers);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(ledger::agreement(&ledgers).verdict, Verdict::Valid);
}

/// Every honest replica stopped short of the promised slot: nothing to check the promise
/// against, so unknown with the reason, not invalid.
#[test]
fn a_promise_beyond_every_honest_ledger_is_unverifiable() {
    let result = speculation::check(&read_x_promised_at(9), &honest());
    assert_eq!((result.verdict, violations(&result)), (Verdict::Unknown, 0));
    assert_eq!(
        (&result.evidence["verified"], &result.evidence["unverifiable"]),
        (&json!(0), &json!(1))
    );
    let unverified = &result.evidence["unverified"][0];
    assert_eq!(unverified["op"]["proof"]["seq"], 9);
    assert_eq!(unverified["reason"], "no honest replica's final ledger holds the promised slot");
    let reasons = json!({"0": "stopped short at seq 4", "1": "stopped short at seq 4"});
    assert_eq!(unverified["replicas"], reasons);
    assert!(result.evidence["not_checked"].as_str().unwrap().starts_with("1 of 1 promises"));
}

/// Replica 1 reached seq 4 only through a state transfer, replica 2 stopped at seq 2: the
/// read at seq 2 is verified (replica 2 holds it), the transfer at seq 3 is not. Unknown, with
/// each replica's reason; a broken promise makes it invalid all the same.
#[test]
fn a_promise_passed_only_through_a_state_transfer_is_unverifiable() {
    let donor = honest_script(3);
    let ledgers = BTreeMap::from([
        (1, Ledger::new(1).transfer_from(&donor).events),
        (
            2,
            Ledger::new(2)
                .execute(&[(0, 1, write("x", 1)), (1, 1, cas("x", 1, 2))])
                .execute(&[(0, 2, read("x"))])
                .events,
        ),
    ]);
    let transfer = json!({"from": "z", "to": "y", "amount": 3});
    let kept_and_unverifiable: Vec<Op> = [
        promised(0, 10, (0, 2), ("read", Some("x"), json!(2)), 2),
        promised(1, 20, (1, 2), ("transfer", None, transfer), 3),
    ]
    .concat();
    let result = speculation::check(&paired(&kept_and_unverifiable), &ledgers);
    assert_eq!(result.verdict, Verdict::Unknown, "{:?}", result.evidence);
    assert_eq!(
        (&result.evidence["verified"], &result.evidence["unverifiable"]),
        (&json!(1), &json!(1))
    );
    let unverified = &result.evidence["unverified"][0];
    assert_eq!(unverified["op"]["proof"]["seq"], 3);
    let reasons = json!({
        "1": "passed the slot only through a state transfer to seq 4",
        "2": "stopped short at seq 2",
    });
    assert_eq!(unverified["replicas"], reasons);

    // Replica 2 lost the read's promised result: invalid wins over unknown.
    let mut broken = kept_and_unverifiable;
    broken[1].value = json!(7);
    let result = speculation::check(&paired(&broken), &ledgers);
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    assert_eq!(result.evidence["first"][0]["replica"], 2);
    assert_eq!(result.evidence["unverifiable"], 1);
}

/// Every honest replica caught up once by a state transfer past the promised slot, but each
/// had executed the slot itself and then held a stable checkpoint above it: the promise is
/// checked against those settled executions (valid, verified), and a result they do not hold
/// is invalid. Without the stable checkpoint the executions were superseded: unverifiable.
#[test]
fn a_promise_settled_by_a_stable_checkpoint_survives_later_state_transfers() {
    let donor = honest_script(3);
    let transferred = |replica: u32, stable: bool| {
        let ledger = Ledger::new(replica)
            .execute(&[(0, 1, write("x", 1)), (1, 1, cas("x", 1, 2))])
            .execute(&[(0, 2, read("x"))]);
        let ledger = if stable { ledger.checkpoint(true) } else { ledger };
        ledger.transfer_from(&donor).events
    };
    let read_x =
        |value: i64| paired(&promised(0, 10, (0, 2), ("read", Some("x"), json!(value)), 2));

    let settled = BTreeMap::from([(1, transferred(1, true)), (2, transferred(2, true))]);
    let result = speculation::check(&read_x(2), &settled);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(
        (&result.evidence["verified"], &result.evidence["unverifiable"]),
        (&json!(1), &json!(0))
    );
    let result = speculation::check(&read_x(7), &settled);
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 2));

    let superseded = BTreeMap::from([(1, transferred(1, false)), (2, transferred(2, false))]);
    let result = speculation::check(&read_x(2), &superseded);
    assert_eq!(result.verdict, Verdict::Unknown, "{:?}", result.evidence);
    assert_eq!(result.evidence["unverifiable"], 1);
}

#[test]
fn speculation_without_a_proof_is_unknown() {
    let ops = [
        event(0, OpKind::Invoke, 1, "read", Some("x"), json!(null)),
        event(0, OpKind::Ok, 2, "read", Some("x"), json!(2)),
    ];
    let result = speculation::check(&paired(&ops), &honest());
    assert_eq!((result.verdict, &result.evidence["promises"]), (Verdict::Unknown, &json!(0)));
}

// ---------------------------------------------------------------------------------------------
// One batch per (view, seq).

/// Seqs 1 and 2 of the honest script, in view 0.
fn first_two(replica: u32) -> Ledger {
    Ledger::new(replica).execute(&[(0, 1, write("x", 1)), (1, 1, cas("x", 1, 2))]).execute(&[(
        0,
        2,
        read("x"),
    )])
}

/// The honest script replaces seq 3 in view 1 (another certificate, another view): no
/// conflict. A re-certification of the same batch agrees with the executions.
#[test]
fn one_batch_per_slot_holds_when_a_new_view_replaces_a_slot() {
    let result = certificate::one_batch_per_slot(&honest());
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    // (0, 1), (0, 2), (0, 3), (1, 3), (1, 4), each claimed by both replicas.
    assert_eq!((&result.evidence["pairs"], &result.evidence["compared"]), (&json!(5), &json!(5)));
    let recertified = BTreeMap::from([
        (0, honest_script(0).enter_view(2).recertify(4).events),
        (1, honest_script(1).enter_view(2).recertify(4).events),
    ]);
    let result = certificate::one_batch_per_slot(&recertified);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!((&result.evidence["pairs"], &result.evidence["claims"]), (&json!(6), &json!(12)));
}

/// Replica 1 executed another batch at (1, 3), then rolled it back in view 2 and executed the
/// batch replica 0 holds: the final ledgers agree, but two batches were certified at (1, 3).
#[test]
fn two_batches_executed_at_one_view_and_seq_are_invalid_even_when_rolled_back() {
    let replica_1 = first_two(1)
        .checkpoint(true)
        .enter_view(1)
        .execute(&[(2, 1, write("y", 5))])
        .enter_view(2)
        .rollback(2)
        .execute(&[(1, 2, transfer("z", "y", 3))])
        .execute(&[(2, 1, write("y", 5)), (0, 3, read_all(&["x", "y", "z"]))]);
    let ledgers = BTreeMap::from([(0, honest_script(0).events), (1, replica_1.events)]);
    assert_eq!(ledger::agreement(&ledgers).verdict, Verdict::Valid);
    let result = certificate::one_batch_per_slot(&ledgers);
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    let violation = &result.evidence["first"][0];
    assert_eq!((violation["view"].as_u64(), violation["seq"].as_u64()), (Some(1), Some(3)));
    let executed = |replica: u32, index: usize| {
        let LedgerEvent::Execute(execute) = &ledgers[&replica][index] else { panic!() };
        json!({
            "replica": replica,
            "time": execute.time,
            "event": "execute",
            "batch_digest": execute.batch_digest,
        })
    };
    assert_eq!(violation["first"], executed(0, 6));
    assert_eq!(violation["second"], executed(1, 4));
    assert_ne!(violation["first"]["batch_digest"], violation["second"]["batch_digest"]);
}

/// One replica re-executing another batch at seq 3 without changing view contradicts itself.
#[test]
fn a_replica_executing_two_batches_at_one_view_and_seq_is_invalid() {
    let events = first_two(0)
        .execute(&[(2, 1, write("y", 5))])
        .rollback(2)
        .execute(&[(1, 2, transfer("z", "y", 3))])
        .events;
    let result = certificate::one_batch_per_slot(&BTreeMap::from([(0, events)]));
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    let violation = &result.evidence["first"][0];
    assert_eq!((violation["view"].as_u64(), violation["seq"].as_u64()), (Some(0), Some(3)));
    assert_eq!(
        (&violation["first"]["replica"], &violation["second"]["replica"]),
        (&json!(0), &json!(0))
    );
    assert_eq!((&violation["first"]["time"], &violation["second"]["time"]), (&json!(2), &json!(4)));
}

/// Replica 0 kept seq 3 into view 2, where it was certified again; replica 1 executed another
/// batch at (2, 3).
#[test]
fn a_recertification_conflicting_with_an_execution_is_invalid() {
    let replica_1 = first_two(1).enter_view(2).execute(&[(2, 1, write("y", 5))]);
    let ledgers = BTreeMap::from([
        (0, honest_script(0).enter_view(2).recertify(3).events),
        (1, replica_1.events),
    ]);
    let result = certificate::one_batch_per_slot(&ledgers);
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    let violation = &result.evidence["first"][0];
    assert_eq!((violation["view"].as_u64(), violation["seq"].as_u64()), (Some(2), Some(3)));
    assert_eq!(
        (&violation["first"]["event"], &violation["first"]["replica"]),
        (&json!("recertified"), &json!(0))
    );
    assert_eq!(
        (&violation["second"]["event"], &violation["second"]["replica"]),
        (&json!("execute"), &json!(1))
    );
}

/// The audit runs the oracle whenever ledgers are given.
#[test]
fn the_audit_judges_one_batch_per_slot_whenever_ledgers_are_given() {
    let inputs =
        |ledgers| audit::Inputs { ledgers, context: context(), ..audit::Inputs::default() };
    let report = audit::check(inputs(honest()));
    assert_eq!(report.checkers["one-batch-per-slot"].verdict, Verdict::Valid);
    let conflicting = BTreeMap::from([
        (0, honest_script(0).events),
        (1, first_two(1).enter_view(1).execute(&[(2, 1, write("y", 5))]).events),
    ]);
    let report = audit::check(inputs(conflicting));
    assert_eq!(report.checkers["one-batch-per-slot"].verdict, Verdict::Invalid);
    assert_eq!(report.verdict, Verdict::Invalid);
    let report = audit::check(audit::Inputs::default());
    assert!(!report.checkers.contains_key("one-batch-per-slot"));
}

// ---------------------------------------------------------------------------------------------
// Ledger agreement over everything committed.

/// Seqs 1 to 4 of the honest script without its speculation or checkpoints: a replica whose
/// points are all of its final ledger.
fn plain(replica: u32) -> Ledger {
    first_two(replica)
        .enter_view(1)
        .execute(&[(1, 2, transfer("z", "y", 3))])
        .execute(&[(2, 1, write("y", 5)), (0, 3, read_all(&["x", "y", "z"]))])
}

/// Replica 2 executed seq 3 speculatively (a view replica 0 never saw), above its stable
/// checkpoint at 2, then installed replica 0's state at seq 4 and went on: its speculation was
/// never committed. What it committed (seqs 1 and 2 by its stable checkpoint, seq 4 by the
/// transfer) agrees with replica 0.
#[test]
fn a_state_transfer_superseding_unstable_speculation_is_no_divergence() {
    let replica_2 = first_two(2)
        .checkpoint(true)
        .execute(&[(2, 1, write("y", 6))])
        .transfer_from(&plain(0))
        .execute(&[(0, 4, read("x"))]);
    let ledgers = BTreeMap::from([(0, plain(0).events), (2, replica_2.events)]);
    let result = ledger::agreement(&ledgers);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(result.evidence["compared"], 3);
    assert_eq!(result.evidence["heads"], json!({"0": 4, "2": 5}));
    assert_eq!(result.evidence["committed"], json!({"final": 5, "stable": 3, "state-transfer": 1}));
}

/// Replica 2 executed another read at seq 2 and made it stable, then a state transfer
/// replaced its history: its final ledger shares no slot with replica 0's, but what its stable
/// checkpoint committed differs from replica 0's final ledger at seq 2.
#[test]
fn a_divergence_erased_by_a_state_transfer_is_still_invalid() {
    let replica_2 = Ledger::new(2)
        .execute(&[(0, 1, write("x", 1)), (1, 1, cas("x", 1, 2))])
        .execute(&[(0, 2, read("y"))])
        .checkpoint(true)
        .transfer_from(&plain(0))
        .execute(&[(0, 4, read("x"))]);
    let ledgers = BTreeMap::from([(0, plain(0).events), (2, replica_2.events)]);
    let result = ledger::agreement(&ledgers);
    assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
    let divergence = &result.evidence["divergence"];
    assert_eq!(divergence["seq"], 2);
    assert_eq!(divergence["kinds"], json!({"0": "final", "2": "stable"}));
    let block = |replica: u32| {
        let LedgerEvent::Execute(execute) = &ledgers[&replica][1] else { panic!() };
        (execute.block_hash.to_hex(), execute.state_digest.to_hex())
    };
    let hashes = json!({"0": block(0).0, "2": block(2).0});
    assert_eq!(divergence["block_hashes"], hashes);
    assert_eq!(divergence["state_digests"], json!({"0": block(0).1, "2": block(2).1}));
    // Replica 2's point was committed by its checkpoint (event 3).
    assert_eq!(divergence["points"][1]["time"], 2);
}

/// Replica 2 diverged at seq 1 and made seq 2 stable before a state transfer: every standing
/// execution at or below its stable checkpoint was committed, so the divergence is named at
/// seq 1.
#[test]
fn executions_below_the_stable_checkpoint_stay_committed_after_a_state_transfer() {
    let replica_2 = Ledger::new(2)
        .execute(&[(0, 1, write("x", 9))])
        .execute(&[(0, 2, read("x"))])
        .checkpoint(true)
        .execute(&[(2, 1, write("y", 6))])
        .transfer_from(&plain(0));
    let ledgers = BTreeMap::from([(0, plain(0).events), (2, replica_2.events)]);
    let result = ledger::agreement(&ledgers);
    assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
    let divergence = &result.evidence["divergence"];
    assert_eq!(divergence["seq"], 1);
    assert_eq!(divergence["kinds"], json!({"0": "final", "2": "stable"}));
}

/// A snapshot whose certified block hash differs from an honest replica's final ledger.
#[test]
fn a_state_transfer_disagreeing_with_a_final_ledger_is_invalid() {
    let mut replica_2 = Ledger::new(2).transfer_from(&plain(0)).events;
    let LedgerEvent::StateTransfer(transfer) = &mut replica_2[0] else { panic!() };
    transfer.block_hash = Digest([9; 32]);
    let ledgers = BTreeMap::from([(0, plain(0).events), (2, replica_2)]);
    let result = ledger::agreement(&ledgers);
    assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
    let divergence = &result.evidence["divergence"];
    assert_eq!(divergence["seq"], 4);
    assert_eq!(divergence["kinds"], json!({"0": "final", "2": "state-transfer"}));
    assert_eq!(divergence["block_hashes"]["2"], Digest([9; 32]).to_hex());
}

/// One replica committed seq 2 by a stable checkpoint, then installed a snapshot at seq 2 with
/// another block hash: it disagrees with itself, and the evidence tells its points apart.
#[test]
fn a_replica_contradicting_its_own_stable_checkpoint_is_invalid() {
    let mut events = first_two(2).checkpoint(true).transfer_from(&first_two(0)).events;
    let LedgerEvent::StateTransfer(transfer) = events.last_mut().unwrap() else { panic!() };
    transfer.block_hash = Digest([9; 32]);
    let result = ledger::agreement(&BTreeMap::from([(2, events)]));
    assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
    let divergence = &result.evidence["divergence"];
    assert_eq!(divergence["seq"], 2);
    assert_eq!(
        divergence["kinds"],
        json!({"2/stable": "stable", "2/state-transfer": "state-transfer"})
    );
    assert_eq!(divergence["block_hashes"]["2/state-transfer"], Digest([9; 32]).to_hex());
}

// ---------------------------------------------------------------------------------------------
// Bank.

fn bank_transfer(process: u64, time: u64, from: &str, to: &str, amount: i64) -> [Op; 2] {
    let value = json!({"from": from, "to": to, "amount": amount});
    [
        event(process, OpKind::Invoke, time, "transfer", None, value.clone()),
        event(process, OpKind::Ok, time + 1, "transfer", None, value),
    ]
}

fn bank_read(process: u64, time: u64, balances: Value) -> [Op; 2] {
    [
        event(process, OpKind::Invoke, time, "read", None, json!(null)),
        event(process, OpKind::Ok, time + 1, "read", None, balances),
    ]
}

/// Lines 1-2 a transfer, 3-4 a good read, 5-6 the read under test.
fn bank_history(last_read: Value) -> Vec<validate::Operation> {
    paired(
        &[
            bank_transfer(0, 10, "a0", "a1", 40),
            bank_read(1, 20, json!({"a0": 60, "a1": 40, "a2": null})),
            bank_read(1, 30, last_read),
        ]
        .concat(),
    )
}

#[test]
fn bank_reads_that_conserve_money_are_valid() {
    let operations = bank_history(json!({"a0": 30, "a1": 70}));
    assert!(bank::applies(&operations));
    let result = bank::check(&operations, Some(100));
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!((&result.evidence["reads"], &result.evidence["total"]), (&json!(2), &json!("100")));
    assert!(!result.evidence.contains_key("total_from"));
    // Without the genesis total, the first read's is used and the evidence says so.
    let result = bank::check(&operations, None);
    assert_eq!(result.verdict, Verdict::Valid);
    assert!(result.evidence.contains_key("total_from"));
}

#[test]
fn a_bank_read_with_a_wrong_sum_is_invalid() {
    let result = bank::check(&bank_history(json!({"a0": 30, "a1": 60})), Some(100));
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    let violation = &result.evidence["first"][0];
    assert_eq!((violation["line"].as_u64(), violation["process"].as_u64()), (Some(5), Some(1)));
    assert_eq!(problem(violation), "balances sum to 90, not 100");
}

/// Against the first read's total when the genesis total is unknown.
#[test]
fn a_bank_read_disagreeing_with_the_first_is_invalid() {
    let result = bank::check(&bank_history(json!({"a0": 30, "a1": 71})), None);
    assert_eq!(result.verdict, Verdict::Invalid);
    assert_eq!(problem(&result.evidence["first"][0]), "balances sum to 101, not 100");
}

#[test]
fn a_negative_balance_is_invalid_even_when_the_sum_is_right() {
    let result = bank::check(&bank_history(json!({"a0": 110, "a1": -10})), Some(100));
    assert_eq!((result.verdict, violations(&result)), (Verdict::Invalid, 1));
    let violation = &result.evidence["first"][0];
    assert_eq!(violation["line"], 5);
    assert_eq!(problem(violation), "account a1 has negative balance -10");
}

// ---------------------------------------------------------------------------------------------
// Liveness.

fn options() -> LivenessOptions {
    LivenessOptions { window: std::time::Duration::from_secs(10), ok_min: 1 }
}

/// A partition from 1 s to 2 s; client 0 completes an operation at 1.5 s, then invokes
/// again at 2.5 s.
fn partitioned_then(tail: &[Op]) -> Vec<Op> {
    let mut history = vec![
        op(0, OpKind::Invoke, S / 2),
        nemesis(S, "partition"),
        op(0, OpKind::Ok, 3 * S / 2),
        nemesis(2 * S, "heal"),
        op(0, OpKind::Invoke, 5 * S / 2),
    ];
    history.extend_from_slice(tail);
    history
}

#[test]
fn progress_within_the_window_after_the_final_heal_is_valid() {
    let history = partitioned_then(&[op(0, OpKind::Ok, 3 * S), op(0, OpKind::Invoke, 20 * S)]);
    let result = liveness::check(&history, options(), None);
    assert_eq!(result.verdict, Verdict::Valid, "{:?}", result.evidence);
    assert_eq!(result.evidence["final_heal_s"], 2.0);
    assert_eq!(result.evidence["ok_in_window"], 1);
    assert_eq!(result.evidence["first_ok_after_heal_s"], 1.0);
}

/// The only `ok` after the heal comes at 13 s, after the window (2 s + 10 s) closed.
#[test]
fn no_progress_within_the_window_is_invalid_and_the_stall_is_reported() {
    let history = partitioned_then(&[op(0, OpKind::Ok, 13 * S)]);
    let result = liveness::check(&history, options(), None);
    assert_eq!(result.verdict, Verdict::Invalid, "{:?}", result.evidence);
    assert_eq!(result.evidence["ok_in_window"], 0);
    assert_eq!(result.evidence["first_ok_after_heal_s"], Value::Null);
    assert_eq!(
        result.evidence["longest_stall"],
        json!({"seconds": 10.5, "from_s": 2.5, "to_s": 13.0})
    );
}

/// The same stall, but the honest replicas' ledgers show a view-change backoff of 16 s: no
/// progress within a 10 s window proves nothing then (`unknown` with the reason); a backoff
/// shorter than the window leaves the verdict `invalid`.
#[test]
fn no_progress_while_the_replicas_back_off_longer_than_the_window_is_unknown() {
    let history = partitioned_then(&[op(0, OpKind::Ok, 13 * S)]);
    let entered = |backoff_ms| {
        let event = LedgerEvent::ViewEntered(history::ViewEvent {
            time: 2 * S,
            replica: 1,
            view: 5,
            backoff_ms: Some(backoff_ms),
            new_view: None,
        });
        BTreeMap::from([(1u32, vec![event])])
    };
    let long = liveness::backoff(&entered(16_000));
    assert_eq!(long, Some(std::time::Duration::from_secs(16)));
    let result = liveness::check(&history, options(), long);
    assert_eq!(result.verdict, Verdict::Unknown, "{:?}", result.evidence);
    assert_eq!(result.evidence["backoff_s"], 16.0);
    assert!(result.evidence["reason"].as_str().is_some_and(|reason| reason.contains("backoff")));
    let short = liveness::backoff(&entered(2_000));
    assert_eq!(liveness::check(&history, options(), short).verdict, Verdict::Invalid);
}

#[test]
fn a_history_ending_inside_the_window_is_unknown() {
    let history = partitioned_then(&[op(0, OpKind::Info, 5 * S)]);
    let result = liveness::check(&history, options(), None);
    assert_eq!(result.verdict, Verdict::Unknown, "{:?}", result.evidence);
    assert_eq!(result.evidence["ok_in_window"], 0);
}

// ---------------------------------------------------------------------------------------------
// Pairing rules.

/// The error of pairing `ops`, whose lines are 10, 11, ... (not their positions).
fn pairing_error(ops: &[Op]) -> HistoryError {
    let lines: Vec<usize> = (10..10 + ops.len()).collect();
    validate::pair(ops, &lines).unwrap_err()
}

#[test]
fn pairing_matches_completions_to_their_process_and_skips_the_nemesis() {
    let mut ok = event(1, OpKind::Ok, 4, "read", Some("k"), json!(3));
    ok.proof = Some(Proof { view: 1, seq: 2, replicas: vec![0, 1, 2], informed: vec![] });
    let ops = [
        op(0, OpKind::Invoke, 1),
        op(1, OpKind::Invoke, 2),
        nemesis(3, "kill"),
        ok,
        op(0, OpKind::Info, 5),
    ];
    let operations = paired(&ops);
    assert_eq!(operations.len(), 2);
    assert_eq!((operations[0].line, operations[0].ret), (1, Some(5)));
    assert_eq!(operations[0].outcome, validate::Outcome::Info);
    assert_eq!((operations[1].line, operations[1].call, operations[1].ret), (2, 2, Some(4)));
    assert_eq!(operations[1].outcome, validate::Outcome::Ok(json!(3)));
    // A read takes its value from its completion.
    assert_eq!(operations[1].value, json!(3));
    assert_eq!(operations[1].proof.as_ref().map(|proof| proof.seq), Some(2));
}

#[test]
fn a_second_invoke_in_flight_is_a_double_invoke() {
    let error = pairing_error(&[
        op(0, OpKind::Invoke, 1),
        op(1, OpKind::Invoke, 2),
        op(0, OpKind::Invoke, 3),
    ]);
    assert_eq!((error.rule, error.line), ("double-invoke", 12));
    assert!(error.detail.contains("line 10"), "{error}");
}

#[test]
fn a_completion_with_nothing_in_flight_is_named() {
    let error =
        pairing_error(&[op(0, OpKind::Invoke, 1), op(0, OpKind::Ok, 2), op(0, OpKind::Fail, 3)]);
    assert_eq!((error.rule, error.line), ("completion-without-invoke", 12));
}

#[test]
fn an_invoke_after_info_is_named() {
    let ops = [op(0, OpKind::Invoke, 1), op(0, OpKind::Info, 2), op(0, OpKind::Invoke, 3)];
    let error = pairing_error(&ops);
    assert_eq!((error.rule, error.line), ("invoke-after-info", 12));
    assert!(error.detail.contains("info of line 11"), "{error}");
}

#[test]
fn a_completion_of_another_function_or_key_is_a_mismatch() {
    let other_f = event(0, OpKind::Ok, 2, "write", Some("k"), json!(1));
    let error = pairing_error(&[op(0, OpKind::Invoke, 1), other_f]);
    assert_eq!((error.rule, error.line), ("completion-mismatch", 11));
    let other_key = event(0, OpKind::Ok, 2, "read", Some("j"), json!(1));
    let error = pairing_error(&[nemesis(0, "kill"), op(0, OpKind::Invoke, 1), other_key]);
    assert_eq!((error.rule, error.line), ("completion-mismatch", 12));
}

#[test]
fn a_process_going_back_in_time_is_named() {
    // Another process's earlier time is fine; the same process's is not.
    let ops = [op(0, OpKind::Invoke, 5), op(1, OpKind::Invoke, 3), op(0, OpKind::Ok, 4)];
    let error = pairing_error(&ops);
    assert_eq!((error.rule, error.line), ("time-backwards", 12));
}

// ---------------------------------------------------------------------------------------------
// Stable checkpoints.

fn checkpoint(replica: u32, seq: u64, digest: u8, stable: bool) -> LedgerEvent {
    LedgerEvent::Checkpoint(history::CheckpointEvent {
        time: seq,
        replica,
        seq,
        state_digest: Digest([digest; 32]),
        stable,
        certificate: None,
    })
}

/// Replica 2's checkpoint at 8 differs but never became stable.
#[test]
fn agreeing_stable_checkpoints_are_valid() {
    let ledgers = BTreeMap::from([
        (0, vec![checkpoint(0, 4, 1, true), checkpoint(0, 8, 2, true)]),
        (1, vec![checkpoint(1, 4, 1, true)]),
        (
            2,
            vec![checkpoint(2, 4, 1, false), checkpoint(2, 4, 1, true), checkpoint(2, 8, 3, false)],
        ),
    ]);
    let result = ledger::checkpoints(&ledgers);
    assert_eq!(result.verdict, Verdict::Valid);
    assert_eq!(result.evidence["stable"], 2);
}

#[test]
fn stable_checkpoints_with_different_digests_are_invalid() {
    let ledgers = BTreeMap::from([
        (0, vec![checkpoint(0, 4, 1, true), checkpoint(0, 8, 2, true)]),
        (1, vec![checkpoint(1, 4, 1, true)]),
        (2, vec![checkpoint(2, 4, 1, true), checkpoint(2, 8, 3, true)]),
    ]);
    let result = ledger::checkpoints(&ledgers);
    assert_eq!(result.verdict, Verdict::Invalid);
    let divergence = &result.evidence["divergence"];
    assert_eq!(divergence["seq"], 8);
    let digests = json!({"0": Digest([2; 32]).to_hex(), "2": Digest([3; 32]).to_hex()});
    assert_eq!(divergence["state_digests"], digests);
}
