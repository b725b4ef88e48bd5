//! The evidence honest replicas acted on, checked again (PROTOCOL §5.3, §6, §10.8): a replica
//! records in its ledger the certificate of every checkpoint it made stable and the NV-PROPOSE
//! of every view it entered, and the checker verifies them with its own crypto, from the
//! replicas' public keys alone.
//!
//! - [`checkpoint_certificates`] (`checkpoint-certificates`): every stable checkpoint rests on
//!   a certificate of at least nf CHECKPOINT signatures from distinct replicas of the cluster,
//!   each valid over (seq, state digest, block hash), naming the checkpoint's seq and state
//!   digest. A replica that makes a checkpoint stable on f + 1 votes, or accepts a certificate
//!   with a forged signature, can no longer roll back a slot the others replace.
//! - [`view_change_decisions`] (`view-change-decisions`): every view an honest replica entered
//!   on an NV-PROPOSE rests on nf to n VC-REQUESTs for that view from distinct replicas, each
//!   signed by its sender (over the digest of what the replica received) with a valid
//!   checkpoint certificate, and the replica's decision is the one PROTOCOL §5.3 steps 2–4
//!   compute from them: the highest checkpoint, then for each following slot the certificate
//!   with the highest view, up to the first gap (PBFT: up to max-s, with a null request, view 0
//!   and the empty batch, in each gap).
//!
//! The slots' certificates inside VC-REQUESTs (threshold signatures, signed SUPPORTs) are not
//! checked here: the checker has no BLS. Ledgers without these records (older ones) have
//! nothing to check and are `valid` with `checked: 0`; records without the replicas' keys are
//! `unknown`.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use history::{
    CheckpointCertificateRecord, Digest, EvidenceRecord, LedgerEvent, NewViewRecord, Verdict,
};
use serde_json::{Value, json};

use crate::CheckResult;
use crate::digest::{Hasher, Keys};

/// The most violations listed.
const LISTED_MAX: usize = 10;

/// Quorum sizes of a cluster of `n` replicas.
#[derive(Debug, Clone, Copy)]
struct Cluster {
    n: usize,
    nf: usize,
}

impl Cluster {
    fn of(keys: &[[u8; 32]]) -> Cluster {
        let n = keys.len();
        let f = n.saturating_sub(1) / 3;
        Cluster { n, nf: n - f }
    }
}

/// Verifies signatures once, however many ledgers and VC-REQUESTs carry them.
struct Verifier<'a> {
    keys: Keys<'a>,
    cluster: Cluster,
    verified: HashMap<(u32, [u8; 32], String), bool>,
}

impl<'a> Verifier<'a> {
    fn new(keys: Keys<'a>) -> Verifier<'a> {
        Verifier { keys, cluster: Cluster::of(keys.keys), verified: HashMap::new() }
    }

    /// Whether `signature` (hex) is `replica`'s signature of `message`'s 32 bytes.
    fn verify(&mut self, replica: u32, message: &Digest, signature: &str) -> bool {
        let cache_key = (replica, message.0, signature.to_string());
        if let Some(&valid) = self.verified.get(&cache_key) {
            return valid;
        }
        let valid = hex::decode(signature)
            .ok()
            .and_then(|bytes| <[u8; 64]>::try_from(bytes).ok())
            .is_some_and(|signature| self.keys.verify(replica as usize, &message.0, &signature));
        self.verified.insert(cache_key, valid);
        valid
    }

    /// Why `certificate` does not prove its checkpoint stable, if it does not.
    fn certificate(&mut self, certificate: &CheckpointCertificateRecord) -> Option<String> {
        let message = checkpoint_message(certificate);
        let mut signers = BTreeSet::new();
        for signature in &certificate.signatures {
            if signature.replica as usize >= self.cluster.n {
                return Some(format!(
                    "a signature of replica {}, not in the cluster",
                    signature.replica
                ));
            }
            if !signers.insert(signature.replica) {
                return Some(format!("two signatures of replica {}", signature.replica));
            }
            if !self.verify(signature.replica, &message, &signature.signature) {
                return Some(format!("replica {}'s signature does not verify", signature.replica));
            }
        }
        (signers.len() < self.cluster.nf)
            .then(|| format!("{} signatures, fewer than nf = {}", signers.len(), self.cluster.nf))
    }
}

/// The digest a CHECKPOINT's signature is over.
fn checkpoint_message(certificate: &CheckpointCertificateRecord) -> Digest {
    Hasher::new(b"ordeal/checkpoint/v1")
        .u64(certificate.seq)
        .digest(&certificate.state_digest)
        .digest(&certificate.block_hash)
        .finish()
}

/// Judges each of `records` with `judge` (a violation's evidence, or `None`) and a verifier of
/// `keys`; the result counts them under `what`. Without keys, records cannot be judged:
/// `unknown` when there are any.
fn judge_all<T>(
    records: Vec<T>,
    keys: Option<Keys<'_>>,
    what: &str,
    mut judge: impl FnMut(&mut Verifier<'_>, T) -> Option<Value>,
) -> CheckResult {
    let checked = records.len();
    let Some(keys) = keys else {
        let verdict = if checked == 0 { Verdict::Valid } else { Verdict::Unknown };
        let reason = "the replicas' public keys are unknown";
        return CheckResult::new(verdict, json!({what: 0, "recorded": checked, "reason": reason}));
    };
    let mut verifier = Verifier::new(keys);
    let (mut count, mut listed) = (0u64, Vec::new());
    for record in records {
        if let Some(evidence) = judge(&mut verifier, record) {
            count += 1;
            if listed.len() < LISTED_MAX {
                listed.push(evidence);
            }
        }
    }
    let verdict = if count == 0 { Verdict::Valid } else { Verdict::Invalid };
    CheckResult::new(
        verdict,
        json!({
            what: checked,
            "violations": count,
            "listed": listed,
            "nf": verifier.cluster.nf,
        }),
    )
}

/// `checkpoint-certificates`: every stable checkpoint of an honest replica rests on a valid
/// certificate of nf signatures (see the module documentation). `keys`: replica r's ed25519
/// public key at position r (their count is n).
pub fn checkpoint_certificates(
    ledgers: &BTreeMap<u32, Vec<LedgerEvent>>,
    keys: Option<Keys<'_>>,
) -> CheckResult {
    let stable: Vec<_> = ledgers
        .values()
        .flatten()
        .filter_map(|event| match event {
            LedgerEvent::Checkpoint(checkpoint) if checkpoint.stable => {
                checkpoint.certificate.as_ref().map(|certificate| (checkpoint, certificate))
            }
            _ => None,
        })
        .collect();
    judge_all(stable, keys, "checked", |verifier, (checkpoint, certificate)| {
        let mismatch = (certificate.seq != checkpoint.seq
            || certificate.state_digest != checkpoint.state_digest)
            .then(|| "the certificate is for another checkpoint".to_string());
        let reason = mismatch.or_else(|| verifier.certificate(certificate))?;
        Some(json!({
            "replica": checkpoint.replica,
            "time": checkpoint.time,
            "seq": checkpoint.seq,
            "state_digest": checkpoint.state_digest,
            "signers": certificate.signatures.iter().map(|s| s.replica).collect::<Vec<_>>(),
            "reason": reason,
        }))
    })
}

/// `view-change-decisions`: every view an honest replica entered on an NV-PROPOSE rests on
/// valid VC-REQUESTs and the decision they dictate (see the module documentation).
///
/// `null_fill`: the protocol's decision fills gaps with null requests up to max-s (PBFT)
/// instead of stopping at the first gap (PoE).
pub fn view_change_decisions(
    ledgers: &BTreeMap<u32, Vec<LedgerEvent>>,
    keys: Option<Keys<'_>>,
    null_fill: bool,
) -> CheckResult {
    let entered: Vec<_> = ledgers
        .values()
        .flatten()
        .filter_map(|event| match event {
            LedgerEvent::ViewEntered(entered) => {
                entered.new_view.as_ref().map(|new_view| (entered, new_view))
            }
            _ => None,
        })
        .collect();
    judge_all(entered, keys, "views", |verifier, (entered, new_view)| {
        let reason = requests_problem(verifier, entered.view, new_view)
            .or_else(|| decision_problem(new_view, null_fill))?;
        Some(json!({
            "replica": entered.replica,
            "time": entered.time,
            "view": entered.view,
            "requests": new_view.requests.iter().map(|r| r.replica).collect::<Vec<_>>(),
            "reason": reason,
        }))
    })
}

/// Why the VC-REQUESTs of `new_view` cannot start `view`, if they cannot.
fn requests_problem(
    verifier: &mut Verifier<'_>,
    view: u64,
    new_view: &NewViewRecord,
) -> Option<String> {
    let Cluster { n, nf } = verifier.cluster;
    let count = new_view.requests.len();
    if count < nf || count > n {
        return Some(format!("{count} VC-REQUESTs (nf = {nf}, n = {n})"));
    }
    let mut senders = BTreeSet::new();
    for request in &new_view.requests {
        let sender = request.replica;
        if sender as usize >= n {
            return Some(format!("a VC-REQUEST from replica {sender}, not in the cluster"));
        }
        if !senders.insert(sender) {
            return Some(format!("two VC-REQUESTs from replica {sender}"));
        }
        if request.target != view {
            return Some(format!("replica {sender}'s VC-REQUEST is for view {}", request.target));
        }
        if !verifier.verify(sender, &request.signing_digest, &request.signature) {
            return Some(format!("replica {sender}'s VC-REQUEST signature does not verify"));
        }
        if let Some(reason) = request.checkpoint.as_ref().and_then(|c| verifier.certificate(c)) {
            return Some(format!("replica {sender}'s checkpoint certificate: {reason}"));
        }
    }
    None
}

/// Why the recorded decision is not the one PROTOCOL §5.3 (PoE) or §7 (PBFT, `null_fill`)
/// computes from the recorded VC-REQUESTs, if it is not.
fn decision_problem(new_view: &NewViewRecord, null_fill: bool) -> Option<String> {
    let base = new_view
        .requests
        .iter()
        .filter_map(|request| request.checkpoint.as_ref().map(|checkpoint| checkpoint.seq))
        .max()
        .unwrap_or(0);
    let decision = &new_view.decision;
    if decision.checkpoint != base {
        return Some(format!(
            "decided checkpoint {}, the highest in the VC-REQUESTs is {base}",
            decision.checkpoint
        ));
    }
    // Per slot above the base: the highest view, and every batch certified in it (valid
    // certificates of one view name one batch; this oracle is not the one to judge that).
    let mut best: BTreeMap<u64, (u64, BTreeSet<Digest>)> = BTreeMap::new();
    let evidence = new_view.requests.iter().flat_map(|request| &request.evidence);
    for EvidenceRecord { seq, view, batch_digest } in evidence.filter(|e| e.seq > base) {
        let entry = best.entry(*seq).or_insert((*view, BTreeSet::new()));
        if *view > entry.0 {
            *entry = (*view, BTreeSet::new());
        }
        if *view == entry.0 {
            entry.1.insert(*batch_digest);
        }
    }
    let mut expected = base + 1;
    // PBFT: (base, max-s] with a null request (view 0, the empty batch) in every gap.
    let max_s = best.keys().next_back().copied().unwrap_or(base);
    let null = crate::digest::batch_digest(&[]);
    for slot in &decision.slots {
        if null_fill && slot.seq == expected && slot.seq <= max_s && !best.contains_key(&slot.seq) {
            if slot.view != 0 || slot.batch_digest != null {
                return Some(format!(
                    "slot {}: no VC-REQUEST certifies it, so it must be a null request, not \
                     batch {} of view {}",
                    slot.seq, slot.batch_digest, slot.view
                ));
            }
            expected += 1;
            continue;
        }
        let Some((view, batches)) = best.get(&slot.seq).filter(|_| slot.seq == expected) else {
            return Some(format!(
                "decided slot {}, but the VC-REQUESTs certify slots from {} up to {} only",
                slot.seq,
                base + 1,
                expected - 1
            ));
        };
        if slot.view != *view {
            return Some(format!(
                "slot {}: decided the certificate of view {}, the highest is of view {view}",
                slot.seq, slot.view
            ));
        }
        if !batches.contains(&slot.batch_digest) {
            return Some(format!(
                "slot {}: decided batch {}, which no certificate of view {view} names",
                slot.seq, slot.batch_digest
            ));
        }
        expected += 1;
    }
    let missing = if null_fill { expected <= max_s } else { best.contains_key(&expected) };
    missing.then(|| {
        format!("decided up to slot {}, but the VC-REQUESTs certify slot {expected}", expected - 1)
    })
}
