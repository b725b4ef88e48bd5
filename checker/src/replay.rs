//! Ledger audits by replay (PROTOCOL §10.4 to §10.6): each honest replica's ledger events are
//! replayed in order through the checker's own store model ([`crate::kv`]) and digests
//! ([`crate::digest`]).
//!
//! - **hash chain**: every execution is at the slot after the current head, its batch digest is
//!   that of its requests, and its block hash chains to the previous block (genesis at slot 1);
//! - **validity**: every executed request names a client of the run, carries that client's valid
//!   signature, and was invoked in the history with that operation;
//! - **at-most-once**: no (client, request) has a result twice in a final ledger;
//! - **replay**: the model reproduces every recorded result and state digest;
//! - **rollback** (PROTOCOL §10.6): a rollback starts at the head (undo in reverse order), ends
//!   at or above the last stable checkpoint, and leaves the digest of the kept prefix. Why it
//!   happened is not judged here: installing an NV-PROPOSE, or a certificate of the current
//!   view for another batch at a kept carried slot (then the rollback goes to just before that
//!   slot), are both allowed; what a rollback must not remove is judged by the speculation
//!   oracle (client-accepted) and the rollback's floor (stable checkpoints);
//! - **checkpoints**: a checkpoint's digest is the model's at its slot;
//! - **state transfer**: an installed snapshot hashes to the state digest it claims (the model
//!   then continues from it; the checkpoint oracles compare that digest with the other replicas').
//!
//! A ledger that breaks the chain or the replay stops being replayed (what follows would only
//! repeat the error); its other events are still checked for agreement elsewhere.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use history::{Digest, ExecuteEvent, LedgerEvent, Operation, Verdict};
use serde_json::{Value, json};

use crate::CheckResult;
use crate::digest;
use crate::kv::Store;
use crate::ledger::final_ledger;

/// What the audits know about the run.
#[derive(Debug, Clone, Default)]
pub struct Context {
    /// The store before slot 1.
    pub genesis_store: BTreeMap<String, i64>,
    /// The hash before block 1, when the cluster's keys are known.
    pub genesis_hash: Option<Digest>,
    /// Client c's ed25519 public key at position c, when known.
    pub client_keys: Option<Vec<[u8; 32]>>,
    /// Replica r's ed25519 public key at position r, when known (their count is n).
    pub replica_keys: Option<Vec<[u8; 32]>>,
    /// The scheme of the replicas' and clients' signatures.
    pub signatures: digest::Signatures,
    /// The operation each (client, request) invoked in the history, as (f, key, value), when the
    /// history carries client and request ids.
    pub issued: Option<HashMap<(u32, u64), Issued>>,
}

/// An invocation as the history recorded it.
pub type Issued = (String, Option<String>, Value);

/// The Jepsen `f`, `key` and `value` with which a client records the invocation of `op`.
pub fn invocation_of(op: &Operation) -> Issued {
    match op {
        Operation::Read { key } => ("read".into(), Some(key.clone()), Value::Null),
        Operation::Write { key, value } => ("write".into(), Some(key.clone()), json!(value)),
        Operation::Cas { key, from, to } => ("cas".into(), Some(key.clone()), json!([from, to])),
        Operation::Transfer { from, to, amount } => {
            ("transfer".into(), None, json!({"from": from, "to": to, "amount": amount}))
        }
        Operation::ReadAll { .. } => ("read".into(), None, Value::Null),
    }
}

/// The audits' results, one per oracle.
#[derive(Debug, Clone)]
pub struct Audit {
    /// `ledger-hash-chain`, `ledger-validity`, `ledger-at-most-once`, `ledger-replay`,
    /// `rollback`, `checkpoint-digests`.
    pub results: BTreeMap<&'static str, CheckResult>,
}

/// The oracles' names.
const ORACLES: [&str; 6] = [
    "ledger-hash-chain",
    "ledger-validity",
    "ledger-at-most-once",
    "ledger-replay",
    "rollback",
    "checkpoint-digests",
];

/// The most violations listed per oracle.
const LISTED_MAX: usize = 10;

#[derive(Debug, Default)]
struct Findings {
    /// Per oracle: violation count and the first few.
    violations: BTreeMap<&'static str, (u64, Vec<Value>)>,
    /// Per oracle: replicas it could not check, with why.
    unchecked: BTreeMap<&'static str, Vec<Value>>,
    executions: u64,
    requests: u64,
    rollbacks: u64,
    checkpoints: u64,
}

impl Findings {
    fn violation(&mut self, oracle: &'static str, evidence: Value) {
        let (count, listed) = self.violations.entry(oracle).or_default();
        *count += 1;
        if listed.len() < LISTED_MAX {
            listed.push(evidence);
        }
    }
}

/// A signature to check once, however many ledgers carry it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SignatureKey {
    client: u32,
    body: Digest,
    signature: [u8; 64],
}

/// Audits the ledgers of the honest replicas.
pub fn audit(ledgers: &BTreeMap<u32, Vec<LedgerEvent>>, context: &Context) -> Audit {
    let mut findings = Findings::default();
    let mut signatures: HashMap<SignatureKey, (Vec<u8>, Value)> = HashMap::new();
    for (replica, events) in ledgers {
        replay_one(*replica, events, context, &mut findings, &mut signatures);
        at_most_once(*replica, events, &mut findings);
    }
    if let Some(keys) = &context.client_keys {
        let keys = digest::Keys { keys, scheme: context.signatures };
        for location in verify_all(keys, signatures) {
            findings.violation("ledger-validity", location);
        }
    } else {
        findings
            .unchecked
            .entry("ledger-validity")
            .or_default()
            .push(json!("client public keys unknown: signatures not checked"));
    }
    if context.issued.is_none() {
        findings
            .unchecked
            .entry("ledger-validity")
            .or_default()
            .push(json!("the history has no client and request ids: issue not checked"));
    }
    let mut results = BTreeMap::new();
    for oracle in ORACLES {
        let (count, listed) = findings.violations.remove(oracle).unwrap_or_default();
        let unchecked = findings.unchecked.remove(oracle).unwrap_or_default();
        let verdict = if count > 0 {
            Verdict::Invalid
        } else if !unchecked.is_empty() || ledgers.is_empty() {
            Verdict::Unknown
        } else {
            Verdict::Valid
        };
        let mut evidence = json!({
            "replicas": ledgers.keys().collect::<Vec<_>>(),
            "executions": findings.executions,
            "requests": findings.requests,
        });
        match oracle {
            "rollback" => evidence["rollbacks"] = json!(findings.rollbacks),
            "checkpoint-digests" => evidence["checkpoints"] = json!(findings.checkpoints),
            _ => {}
        }
        if count > 0 {
            evidence["violations"] = json!(count);
            evidence["first"] = json!(listed);
        }
        if !unchecked.is_empty() {
            evidence["not_checked"] = json!(unchecked);
        }
        results.insert(oracle, CheckResult::new(verdict, evidence));
    }
    Audit { results }
}

/// Replays one replica's events.
fn replay_one(
    replica: u32,
    events: &[LedgerEvent],
    context: &Context,
    findings: &mut Findings,
    signatures: &mut HashMap<SignatureKey, (Vec<u8>, Value)>,
) {
    let mut store = Store::with_genesis(&context.genesis_store);
    // Block hash and state digest per slot of the current chain, from `base` (genesis, or the
    // last installed snapshot) on: index i is slot base + i.
    let mut base = 0u64;
    let mut chain: Vec<(Option<Digest>, Digest)> = vec![(context.genesis_hash, store.digest())];
    let mut stable = 0u64;
    let mut broken: Option<&'static str> = None;
    for (position, event) in events.iter().enumerate() {
        if broken.is_some() {
            break;
        }
        let at = |seq: u64| json!({"replica": replica, "event": position + 1, "seq": seq});
        match event {
            LedgerEvent::Execute(execute) => {
                findings.executions += 1;
                findings.requests += execute.requests.len() as u64;
                if execute.seq != store.seq() + 1 {
                    let mut evidence = at(execute.seq);
                    evidence["problem"] =
                        json!(format!("executed seq {} after seq {}", execute.seq, store.seq()));
                    findings.violation("ledger-hash-chain", evidence);
                    broken = Some("ledger-hash-chain");
                    continue;
                }
                if let Err(problem) = check_block(execute, &chain, context, signatures, at(0)) {
                    let mut evidence = at(execute.seq);
                    evidence["problem"] = json!(problem.1);
                    findings.violation(problem.0, evidence);
                    if problem.0 == "ledger-hash-chain" {
                        broken = Some("ledger-hash-chain");
                        continue;
                    }
                }
                let results = store.execute(
                    execute
                        .requests
                        .iter()
                        .map(|request| (request.client, request.request, &request.op)),
                );
                for (index, (request, result)) in execute.requests.iter().zip(&results).enumerate()
                {
                    if request.result != *result {
                        let mut evidence = at(execute.seq);
                        evidence["request"] = json!({
                            "position": index,
                            "client": request.client,
                            "request": request.request,
                            "op": request.op,
                            "recorded": request.result,
                            "model": result,
                        });
                        findings.violation("ledger-replay", evidence);
                        broken = Some("ledger-replay");
                    }
                }
                let digest = store.digest();
                if broken.is_none() && digest != execute.state_digest {
                    let mut evidence = at(execute.seq);
                    evidence["recorded_state_digest"] = json!(execute.state_digest);
                    evidence["model_state_digest"] = json!(digest);
                    findings.violation("ledger-replay", evidence);
                    broken = Some("ledger-replay");
                }
                chain.push((Some(execute.block_hash), digest));
            }
            LedgerEvent::Rollback(rollback) => {
                findings.rollbacks += 1;
                let mut problems = Vec::new();
                if rollback.from_seq != store.seq() {
                    problems.push(format!(
                        "undoes from seq {} but the head is seq {}",
                        rollback.from_seq,
                        store.seq()
                    ));
                }
                if rollback.to_seq < stable {
                    problems.push(format!(
                        "rolls back to seq {} below the stable checkpoint at seq {stable}",
                        rollback.to_seq
                    ));
                }
                match store.undo_to(rollback.to_seq) {
                    Ok(()) => {
                        chain.truncate((store.seq() - base) as usize + 1);
                        let digest = store.digest();
                        if digest != rollback.state_digest {
                            problems.push(format!(
                                "state digest after the rollback is {} but the kept prefix's is \
                                 {digest}",
                                rollback.state_digest
                            ));
                        }
                    }
                    Err(error) => {
                        problems.push(error.to_string());
                        broken = Some("rollback");
                    }
                }
                for problem in problems {
                    let mut evidence = at(rollback.to_seq);
                    evidence["problem"] = json!(problem);
                    findings.violation("rollback", evidence);
                }
            }
            LedgerEvent::Checkpoint(checkpoint) => {
                findings.checkpoints += 1;
                if checkpoint.seq < base {
                    // Below an installed snapshot: its digest was checked when it was taken.
                    continue;
                }
                match chain.get((checkpoint.seq - base) as usize) {
                    Some((_, digest)) if *digest != checkpoint.state_digest => {
                        let mut evidence = at(checkpoint.seq);
                        evidence["checkpoint_digest"] = json!(checkpoint.state_digest);
                        evidence["model_state_digest"] = json!(digest);
                        findings.violation("checkpoint-digests", evidence);
                    }
                    Some(_) => {}
                    None => {
                        let mut evidence = at(checkpoint.seq);
                        evidence["problem"] =
                            json!(format!("checkpoint above the head, seq {}", store.seq()));
                        findings.violation("checkpoint-digests", evidence);
                    }
                }
                if checkpoint.stable && checkpoint.seq > stable && checkpoint.seq <= store.seq() {
                    stable = checkpoint.seq;
                    store.forget_undo_through(stable);
                }
            }
            LedgerEvent::ViewEntered(_) | LedgerEvent::Recertified(_) => {}
            LedgerEvent::StateTransfer(transfer) => {
                let installed =
                    Store::from_snapshot(transfer.seq, &transfer.store, &transfer.clients);
                if installed.digest() != transfer.state_digest {
                    let mut evidence = at(transfer.seq);
                    evidence["problem"] = json!("installed snapshot does not hash to its digest");
                    evidence["recorded_state_digest"] = json!(transfer.state_digest);
                    evidence["model_state_digest"] = json!(installed.digest());
                    findings.violation("ledger-replay", evidence);
                    broken = Some("ledger-replay");
                    continue;
                }
                store = installed;
                base = transfer.seq;
                chain = vec![(Some(transfer.block_hash), transfer.state_digest)];
                stable = transfer.seq;
            }
        }
    }
    if let Some(oracle) = broken {
        findings.unchecked.entry("ledger-replay").or_default().push(json!(format!(
            "replica {replica}: replay stopped at the first {oracle} violation"
        )));
    }
    if context.genesis_hash.is_none() {
        findings
            .unchecked
            .entry("ledger-hash-chain")
            .or_default()
            .push(json!("genesis hash unknown: block 1's link not checked"));
    }
}

/// Checks an execution's batch digest, block hash and requests' validity (signatures are
/// queued in `signatures`, checked later once each). Returns the first problem as (oracle,
/// description).
fn check_block(
    execute: &ExecuteEvent,
    chain: &[(Option<Digest>, Digest)],
    context: &Context,
    signatures: &mut HashMap<SignatureKey, (Vec<u8>, Value)>,
    location: Value,
) -> Result<(), (&'static str, String)> {
    let mut digests = Vec::with_capacity(execute.requests.len());
    let mut invalid = None;
    for request in &execute.requests {
        let body = digest::request_body(request.client, request.request, &request.op);
        let body_digest = digest::request_digest(&body);
        digests.push(body_digest);
        if invalid.is_some() {
            continue;
        }
        if let Some(issued) = &context.issued {
            match issued.get(&(request.client, request.request)) {
                None => {
                    invalid = Some(format!(
                        "client {} request {} was never invoked in the history",
                        request.client, request.request
                    ));
                }
                Some(invoked) if *invoked != invocation_of(&request.op) => {
                    invalid = Some(format!(
                        "client {} request {} executed {:?} but the history invoked {:?}",
                        request.client,
                        request.request,
                        invocation_of(&request.op),
                        invoked
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(keys) = &context.client_keys {
            if request.client as usize >= keys.len() {
                invalid = Some(format!("client {} is not a client of the run", request.client));
                continue;
            }
            let mut signature = [0u8; 64];
            if hex::decode_to_slice(&request.signature, &mut signature).is_err() {
                invalid = Some(format!(
                    "client {} request {}: the signature is not 64 bytes of hex",
                    request.client, request.request
                ));
                continue;
            }
            let key = SignatureKey { client: request.client, body: body_digest, signature };
            signatures.entry(key).or_insert_with(|| {
                let mut location = location.clone();
                location["seq"] = json!(execute.seq);
                location["client"] = json!(request.client);
                location["request"] = json!(request.request);
                location["problem"] = json!("the client's signature does not verify");
                (digest::signing_bytes(&body), location)
            });
        }
    }
    let batch = digest::batch_digest(&digests);
    if batch != execute.batch_digest {
        return Err((
            "ledger-hash-chain",
            format!("batch digest {} but its requests hash to {batch}", execute.batch_digest),
        ));
    }
    let previous = chain.last().and_then(|(hash, _)| *hash);
    if let Some(previous) = previous {
        let expected = digest::block_hash(execute.seq, &batch, &previous);
        if expected != execute.block_hash {
            return Err((
                "ledger-hash-chain",
                format!("block hash {} but the chain gives {expected}", execute.block_hash),
            ));
        }
    }
    match invalid {
        Some(problem) => Err(("ledger-validity", problem)),
        None => Ok(()),
    }
}

/// Checks every queued signature once, on all cores; returns the ones that fail.
fn verify_all(
    keys: digest::Keys<'_>,
    signatures: HashMap<SignatureKey, (Vec<u8>, Value)>,
) -> Vec<Value> {
    let items: Vec<(SignatureKey, (Vec<u8>, Value))> = signatures.into_iter().collect();
    let next = AtomicUsize::new(0);
    let failed = Mutex::new(Vec::new());
    let threads = std::thread::available_parallelism().map_or(2, |count| count.get()).min(8);
    const CHUNK: usize = 256;
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                // Bounded: every iteration takes the next chunk.
                loop {
                    let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                    let Some(chunk) = items.get(start..(start + CHUNK).min(items.len())) else {
                        break;
                    };
                    if chunk.is_empty() {
                        break;
                    }
                    for (key, (message, location)) in chunk {
                        if !keys.verify(key.client as usize, message, &key.signature) {
                            let mut failed =
                                failed.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                            failed.push(location.clone());
                        }
                    }
                }
            });
        }
    });
    failed.into_inner().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// No (client, request) has a result twice in the replica's final ledger.
fn at_most_once(replica: u32, events: &[LedgerEvent], findings: &mut Findings) {
    let mut executed: HashMap<(u32, u64), u64> = HashMap::new();
    for (seq, execute) in final_ledger(events) {
        for request in execute.requests.iter().filter(|request| request.result.is_some()) {
            if let Some(first) = executed.insert((request.client, request.request), seq) {
                findings.violation(
                    "ledger-at-most-once",
                    json!({
                        "replica": replica,
                        "client": request.client,
                        "request": request.request,
                        "executed_at": [first, seq],
                    }),
                );
            }
        }
    }
}
