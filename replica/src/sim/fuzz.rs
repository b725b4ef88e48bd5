//! Hostile bytes at scale: a seeded fuzz driver for the receive path of a live cluster.
//!
//! One Byzantine replica `b` of an n = 4 [`Cluster`] (PoE-TS or PoE-MAC) sends hostile input to
//! the honest replicas while the clients run a register workload. Every input travels the path
//! a replica's bytes travel in the real process:
//!
//! 1. **frames** ([`FrameCutter`], `net::frame`): the bytes of one stream, in random chunks, cut
//!    into length-prefixed frames; a header over [`FRAME_SIZE_MAX`] or a stream that ends
//!    inside a frame closes the connection;
//! 2. **envelope** (`net::frame::decode`, then [`Envelope::open`] in the core): the frame decoded
//!    as an [`Envelope`] (trailing bytes refused), its size, its pair MAC, the payload decoded
//!    as a [`Message`];
//! 3. **protocol**: [`Replica::handle_message`](crate::core::Replica::handle_message) of the
//!    live replica, whose answers go back into the simulated network.
//!
//! Most inputs are structured, so that they get past the MAC and reach the protocol logic:
//! messages the cluster really sent (captured from every replica's outbound traffic) or
//! messages built from them, with one or more field mutations (views, seqs, digests, batches,
//! certificates, shares, signatures, evidence lists, checkpoints, NV-PROPOSE request lists,
//! replica ids), re-signed where `b` signs (its ed25519 key, its threshold share) and sealed
//! with `b`'s real pair MAC keys. A minority are byte edits of an encoded message (varint
//! lengths, truncation, trailing bytes; re-sealed), bit flips of valid frames (not re-sealed),
//! raw random bytes, and misrouted envelopes.
//!
//! Every input is accounted for: each frame cut is either refused by the frame or envelope layer
//! (one named outcome), skipped (an empty frame is a stream's announcement), or handed to the
//! core, which accepts it or returns exactly one [`Rejection`] that it counts in
//! [`Counters::rejected`](crate::core::Counters::rejected). The driver checks this per input
//! from the counters themselves: the rise of `rejected` minus the rise of `rejected_deferred`
//! (rejections of input accepted earlier: held votes, shares and early messages found invalid
//! later) is 1 for a rejection and 0 for an acceptance.
//!
//! The driver also checks that the replicas' bounded state stays within its bounds
//! ([`Retention`](crate::core::Retention), the primary's queue), and, when a session ends, that
//! every client request completed and the honest replicas agree.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use history::{LedgerEvent, Operation};
use rand::{Rng, RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{Cluster, STEPS_MAX_DEFAULT, SimOptions};
use crate::core::config::{Config, MESSAGE_SIZE_MAX, Protocol};
use crate::core::ledger::Certificate;
use crate::core::message::{
    Certify, Checkpoint, CheckpointCertificate, Commit, Message, NewView, Propose, RequestBody,
    SignedRequest, SlotEvidence, StateRequest, StateTransfer, Support, SupportProof, ViewChange,
    batch_digest, checkpoint_signing_bytes, decode as decode_message, encode, proposal_digest,
    support_signing_bytes,
};
use crate::core::state_machine::{ClientEntry, Snapshot};
use crate::core::{
    ClientId, Digest, Envelope, ReplicaId, RequestId, Retention, Seq, Transmit, View,
};
use crate::crypto::dealer::ReplicaSecrets;
use crate::crypto::ed25519::{self, Signature, SignedMessage};
use crate::crypto::hash::sha256;
use crate::crypto::threshold::{BlsSignature, PreparedMessage};
use crate::net::frame::{FRAME_SIZE_MAX, FrameCutter, FrameError, decode, encode_framed};

/// Messages of each kind the corpus keeps (the most recent).
const CORPUS_PER_KIND: usize = 32;

/// Requests, evidence and certificates the corpus keeps.
const CORPUS_PARTS_MAX: usize = 64;

/// Proposals and support groups remembered to pair them with certificates.
const PAIRING_MAX: usize = 64;

/// Threshold shares the driver remembers (then it forgets them all).
const SHARES_REMEMBERED: usize = 1024;

/// The first accounting violations kept with their details.
const VIOLATIONS_KEPT: usize = 16;

/// How often (in cluster steps) the driver refreshes its hints and checks the bounds.
const CHECK_EVERY_STEPS: u64 = 64;

/// The kinds of [`Message`], in the corpus's order.
const KINDS: [&str; 10] = [
    "propose",
    "support",
    "certify",
    "forward",
    "checkpoint",
    "view-change",
    "new-view",
    "state-request",
    "state-transfer",
    "commit",
];

/// The configuration the driver fuzzes: n = 4, 16 clients, checkpoints every 16 slots and a
/// log of 64, so that checkpoints, garbage collection and state transfers happen within a
/// session.
pub fn fuzz_config(protocol: Protocol) -> Config {
    let mut config = Config::new(protocol, 4, 16);
    config.checkpoint_interval = 16;
    config.log_size = 64;
    config
}

/// How to fuzz one cluster.
#[derive(Debug, Clone)]
pub struct FuzzOptions {
    /// PoE-TS or PoE-MAC.
    pub protocol: Protocol,
    /// Decides the cluster (keys, latencies, workload) and every input.
    pub seed: u64,
    /// The Byzantine replica whose keys seal the inputs.
    pub byzantine: ReplicaId,
    /// Client requests of the workload.
    pub requests: u64,
    /// Inputs injected after each step of the cluster.
    pub inputs_per_step: u32,
}

impl FuzzOptions {
    /// 400 requests, 4 inputs per step, the Byzantine replica drawn from the seed (the primary
    /// of view 0 one time in four).
    pub fn new(protocol: Protocol, seed: u64) -> FuzzOptions {
        FuzzOptions {
            protocol,
            seed,
            byzantine: ReplicaId((seed % 4) as u8),
            requests: 400,
            inputs_per_step: 4,
        }
    }
}

/// The largest memory-relevant sizes seen in the replicas.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RetentionMax {
    /// The core's collections ([`Retention`]), each at its largest.
    pub replica: Retention,
    /// Requests queued at a primary.
    pub queued_requests: usize,
}

impl RetentionMax {
    fn merge(&mut self, other: &RetentionMax) {
        self.replica = self.replica.max(other.replica);
        self.queued_requests = self.queued_requests.max(other.queued_requests);
    }
}

/// What a fuzz run did: inputs by class, outcomes by layer and kind, and the bounds observed.
#[derive(Debug, Clone, Default)]
pub struct FuzzReport {
    /// Inputs sent (one stream of bytes each).
    pub inputs: u64,
    /// Inputs by class (`mutated`, `built`, `replayed`, `payload-bytes`, `envelope-bits`,
    /// `raw`, `misrouted`).
    pub classes: BTreeMap<&'static str, u64>,
    /// Frames cut by the frame layer.
    pub frames: u64,
    /// Empty frames skipped (a stream's announcement, as the shell skips them).
    pub empty_frames: u64,
    /// Envelopes handed to the core.
    pub deliveries: u64,
    /// Envelopes the core accepted.
    pub accepted: u64,
    /// Accepted envelopes by message kind.
    pub accepted_by_message: BTreeMap<&'static str, u64>,
    /// Accepted envelopes that were votes for slots already executed or below the stable
    /// checkpoint: ignored, and counted in `Counters::votes_late` instead of as rejections.
    pub accepted_late_votes: u64,
    /// Refused inputs by layer and kind: `frame.too_large`, `frame.truncated`,
    /// `envelope.malformed`, and `core.<Rejection::kind>` (one per refused envelope).
    pub rejections: BTreeMap<String, u64>,
    /// Rejections the core counted outside the input that caused them, by kind: input it had
    /// accepted (held votes, shares, early messages) and refused later.
    pub deferred: BTreeMap<&'static str, u64>,
    /// Inputs whose counters did not add up (must be 0), and the first few of them.
    pub accounting_violations: u64,
    /// Details of the first violations.
    pub violation_details: Vec<String>,
    /// Cluster sessions (each a fresh cluster with its own workload).
    pub sessions: u64,
    /// Client requests completed.
    pub requests_completed: u64,
    /// The most views any honest replica entered in a session.
    pub views_entered_max: u64,
    /// The largest bounded sizes seen.
    pub retention: RetentionMax,
}

impl FuzzReport {
    /// Refused inputs over every layer.
    pub fn rejected(&self) -> u64 {
        self.rejections.values().sum()
    }

    /// The stream-level outcomes: frames refused or skipped, envelopes accepted or refused.
    pub fn outcomes(&self) -> u64 {
        self.accepted + self.rejected() + self.empty_frames
    }

    /// Checks the accounting: every envelope delivered was accepted or counted as exactly one
    /// rejection, and every frame was delivered, refused or skipped.
    ///
    /// # Errors
    ///
    /// What does not add up.
    pub fn check_accounting(&self) -> Result<(), String> {
        let core: u64 = self
            .rejections
            .iter()
            .filter(|(kind, _)| kind.starts_with("core."))
            .map(|(_, count)| count)
            .sum();
        if self.accounting_violations > 0 {
            return Err(format!(
                "{} inputs did not add up: {:?}",
                self.accounting_violations, self.violation_details
            ));
        }
        if self.accepted + core != self.deliveries {
            return Err(format!(
                "{} accepted + {core} refused by the core != {} delivered",
                self.accepted, self.deliveries
            ));
        }
        let envelope = self.rejections.get("envelope.malformed").copied().unwrap_or(0);
        if self.deliveries + envelope + self.empty_frames != self.frames {
            return Err(format!(
                "{} delivered + {envelope} malformed + {} empty != {} frames",
                self.deliveries, self.empty_frames, self.frames
            ));
        }
        Ok(())
    }

    /// Adds another report's figures to this one.
    pub fn merge(&mut self, other: &FuzzReport) {
        self.inputs += other.inputs;
        add_all(&mut self.classes, &other.classes);
        self.frames += other.frames;
        self.empty_frames += other.empty_frames;
        self.deliveries += other.deliveries;
        self.accepted += other.accepted;
        add_all(&mut self.accepted_by_message, &other.accepted_by_message);
        self.accepted_late_votes += other.accepted_late_votes;
        for (kind, count) in &other.rejections {
            *self.rejections.entry(kind.clone()).or_default() += count;
        }
        add_all(&mut self.deferred, &other.deferred);
        self.accounting_violations += other.accounting_violations;
        for detail in &other.violation_details {
            if self.violation_details.len() < VIOLATIONS_KEPT {
                self.violation_details.push(detail.clone());
            }
        }
        self.sessions += other.sessions;
        self.requests_completed += other.requests_completed;
        self.views_entered_max = self.views_entered_max.max(other.views_entered_max);
        self.retention.merge(&other.retention);
    }
}

fn add_all(into: &mut BTreeMap<&'static str, u64>, from: &BTreeMap<&'static str, u64>) {
    for (key, count) in from {
        *into.entry(key).or_default() += count;
    }
}

/// Entries by count, largest first.
fn by_count<K: fmt::Display>(map: impl IntoIterator<Item = (K, u64)>) -> Vec<(String, u64)> {
    let mut entries: Vec<(String, u64)> =
        map.into_iter().map(|(key, count)| (key.to_string(), count)).collect();
    entries.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    entries
}

impl fmt::Display for FuzzReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "inputs            {}", self.inputs)?;
        for (class, count) in by_count(self.classes.iter().map(|(k, v)| (k, *v))) {
            writeln!(f, "  {class:<28} {count}")?;
        }
        writeln!(f, "frames cut        {}", self.frames)?;
        writeln!(f, "empty frames      {}", self.empty_frames)?;
        writeln!(f, "delivered to core {}", self.deliveries)?;
        writeln!(f, "accepted          {}", self.accepted)?;
        for (kind, count) in by_count(self.accepted_by_message.iter().map(|(k, v)| (k, *v))) {
            writeln!(f, "  {kind:<28} {count}")?;
        }
        writeln!(
            f,
            "  of which late votes (ignored, counted as votes_late) {}",
            self.accepted_late_votes
        )?;
        writeln!(f, "rejected          {}", self.rejected())?;
        for (kind, count) in by_count(self.rejections.iter().map(|(k, v)| (k, *v))) {
            writeln!(f, "  {kind:<40} {count}")?;
        }
        let deferred: u64 = self.deferred.values().sum();
        writeln!(f, "deferred rejections (earlier input refused later) {deferred}")?;
        for (kind, count) in by_count(self.deferred.iter().map(|(k, v)| (k, *v))) {
            writeln!(f, "  {kind:<40} {count}")?;
        }
        writeln!(f, "accounting violations {}", self.accounting_violations)?;
        writeln!(
            f,
            "sessions {}, requests completed {}, most views entered {}",
            self.sessions, self.requests_completed, self.views_entered_max
        )?;
        write!(f, "largest retention {:?}", self.retention)
    }
}

/// What CHECKPOINT votes must agree on: (seq, state digest, block hash).
type CheckpointKey = (Seq, Digest, Digest);

/// Recent messages the cluster sent, and parts harvested from them.
#[derive(Debug, Default)]
struct Corpus {
    messages: [VecDeque<Message>; 10],
    requests: VecDeque<SignedRequest>,
    evidence: VecDeque<SlotEvidence>,
    checkpoints: VecDeque<CheckpointCertificate>,
    view_changes: VecDeque<Arc<ViewChange>>,
    /// Proposals by proposal digest, to pair with CERTIFYs and supports into evidence.
    proposals: VecDeque<(Digest, View, Seq, Arc<[SignedRequest]>)>,
    /// PoE-MAC: signed supports per proposal digest.
    supports: VecDeque<(Digest, Vec<Support>)>,
    /// CHECKPOINT votes per (seq, state digest, block hash).
    checkpoint_votes: VecDeque<(CheckpointKey, Vec<(ReplicaId, Signature)>)>,
}

fn kind_index(message: &Message) -> usize {
    match message {
        Message::Propose(_) => 0,
        Message::Support(_) => 1,
        Message::Certify(_) => 2,
        Message::Forward(_) => 3,
        Message::Checkpoint(_) => 4,
        Message::ViewChange(_) => 5,
        Message::NewView(_) => 6,
        Message::StateRequest(_) => 7,
        Message::StateTransfer(_) => 8,
        Message::Commit(_) => 9,
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T, max: usize) {
    if queue.len() >= max {
        queue.pop_front();
    }
    queue.push_back(item);
}

impl Corpus {
    /// Keeps a message a replica sent, and harvests requests, evidence and certificates.
    fn add(&mut self, message: Message, nf: usize) {
        match &message {
            Message::Propose(propose) => {
                for request in propose.batch.iter().take(4) {
                    push_bounded(&mut self.requests, request.clone(), CORPUS_PARTS_MAX);
                }
                let digest =
                    proposal_digest(propose.view, propose.seq, &batch_digest(&propose.batch));
                let known = self.proposals.iter().any(|(held, ..)| *held == digest);
                if !known {
                    let entry = (digest, propose.view, propose.seq, propose.batch.clone());
                    push_bounded(&mut self.proposals, entry, PAIRING_MAX);
                }
            }
            Message::Forward(request) => {
                push_bounded(&mut self.requests, request.clone(), CORPUS_PARTS_MAX);
            }
            Message::Certify(certify) => {
                let certificate = Certificate::Threshold(certify.signature);
                self.pair(certify.digest, certificate);
            }
            Message::Support(support) if matches!(support.proof, SupportProof::Signature(_)) => {
                let index = self.supports.iter().position(|(digest, _)| *digest == support.digest);
                let index = index.unwrap_or_else(|| {
                    push_bounded(&mut self.supports, (support.digest, Vec::new()), PAIRING_MAX);
                    self.supports.len() - 1
                });
                let group = &mut self.supports[index].1;
                if !group.iter().any(|held| held.replica == support.replica) {
                    group.push(support.clone());
                    if group.len() == nf {
                        let certificate = Certificate::Supports(group.clone());
                        self.pair(support.digest, certificate);
                    }
                }
            }
            Message::Checkpoint(checkpoint) => {
                let key = (checkpoint.seq, checkpoint.state_digest, checkpoint.block_hash);
                let index = self.checkpoint_votes.iter().position(|(held, _)| *held == key);
                let index = index.unwrap_or_else(|| {
                    push_bounded(&mut self.checkpoint_votes, (key, Vec::new()), PAIRING_MAX);
                    self.checkpoint_votes.len() - 1
                });
                let votes = &mut self.checkpoint_votes[index].1;
                if !votes.iter().any(|(replica, _)| *replica == checkpoint.replica) {
                    votes.push((checkpoint.replica, checkpoint.signature));
                    if votes.len() == nf {
                        let certificate = CheckpointCertificate {
                            seq: key.0,
                            state_digest: key.1,
                            block_hash: key.2,
                            signatures: votes.clone(),
                        };
                        push_bounded(&mut self.checkpoints, certificate, CORPUS_PARTS_MAX);
                    }
                }
            }
            Message::ViewChange(request) => {
                for evidence in request.evidence.iter().rev().take(4) {
                    push_bounded(&mut self.evidence, evidence.clone(), CORPUS_PARTS_MAX);
                }
                if let Some(checkpoint) = &request.checkpoint {
                    push_bounded(&mut self.checkpoints, checkpoint.clone(), CORPUS_PARTS_MAX);
                }
                push_bounded(&mut self.view_changes, request.clone(), CORPUS_PARTS_MAX);
            }
            Message::StateTransfer(transfer) => {
                for evidence in transfer.tail.iter().take(4) {
                    push_bounded(&mut self.evidence, evidence.clone(), CORPUS_PARTS_MAX);
                }
            }
            Message::Support(_)
            | Message::NewView(_)
            | Message::StateRequest(_)
            | Message::Commit(_) => {}
        }
        push_bounded(&mut self.messages[kind_index(&message)], message, CORPUS_PER_KIND);
    }

    /// Evidence from a certificate and the proposal it certifies, if the proposal was seen.
    fn pair(&mut self, digest: Digest, certificate: Certificate) {
        let Some((_, view, seq, batch)) =
            self.proposals.iter().find(|(held, ..)| *held == digest).cloned()
        else {
            return;
        };
        let evidence = SlotEvidence { view, seq, batch, certificate };
        push_bounded(&mut self.evidence, evidence, CORPUS_PARTS_MAX);
    }
}

/// What the target replica is at: the numbers mutations aim near.
#[derive(Debug, Clone, Copy, Default)]
struct Hints {
    view: u64,
    last_executed: u64,
    stable: u64,
}

/// One fuzzed cluster: a live workload, a Byzantine replica's keys, and the inputs.
pub struct FuzzSession {
    options: FuzzOptions,
    config: Config,
    cluster: Cluster,
    rng: ChaCha8Rng,
    corpus: std::rc::Rc<std::cell::RefCell<Corpus>>,
    secrets: ReplicaSecrets,
    honest: Vec<ReplicaId>,
    hints: Vec<Hints>,
    /// The highest VC-REQUEST target of the Byzantine replica each replica accepted: a request
    /// for a view no higher is a duplicate there, so new ones aim above it.
    view_change_floor: Vec<u64>,
    /// Threshold shares signed, by digest.
    shares: HashMap<Digest, BlsSignature>,
    steps: u64,
    report: FuzzReport,
}

impl fmt::Debug for FuzzSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FuzzSession")
            .field("options", &self.options)
            .field("steps", &self.steps)
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl FuzzSession {
    /// A fresh cluster with its workload started, every replica's outbound traffic captured
    /// into the corpus.
    pub fn new(options: FuzzOptions) -> FuzzSession {
        let config = fuzz_config(options.protocol);
        let mut sim = SimOptions::new(config.clone(), options.seed, options.requests);
        sim.latency_min = Duration::from_micros(50);
        sim.latency_max = Duration::from_micros(500);
        let mut cluster = Cluster::new(sim);
        let corpus = std::rc::Rc::new(std::cell::RefCell::new(Corpus::default()));
        let nf = config.nf();
        for index in 0..config.replica_count {
            let corpus = corpus.clone();
            cluster.set_outbound_hook(
                ReplicaId(index),
                Box::new(move |transmit| {
                    if let Transmit::Replica { envelope, .. } = &transmit
                        && let Ok(message) = decode_message(&envelope.payload)
                    {
                        corpus.borrow_mut().add(message, nf);
                    }
                    vec![transmit]
                }),
            );
        }
        let byzantine = options.byzantine;
        let secrets = cluster.keys().replicas[byzantine.index()].clone();
        let honest: Vec<ReplicaId> =
            (0..config.replica_count).map(ReplicaId).filter(|id| *id != byzantine).collect();
        let rng = ChaCha8Rng::seed_from_u64(history::seeds::fuzz(options.seed));
        let hints = vec![Hints::default(); usize::from(config.replica_count)];
        let view_change_floor = vec![0; usize::from(config.replica_count)];
        let report = FuzzReport { sessions: 1, ..FuzzReport::default() };
        FuzzSession {
            options,
            config,
            cluster,
            rng,
            corpus,
            secrets,
            honest,
            hints,
            view_change_floor,
            shares: HashMap::new(),
            steps: 0,
            report,
        }
    }

    /// The cluster.
    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// The honest replicas (all but the Byzantine one).
    pub fn honest(&self) -> &[ReplicaId] {
        &self.honest
    }

    /// What the session did so far.
    pub fn report(&self) -> &FuzzReport {
        &self.report
    }

    /// Runs the workload, injecting `inputs_per_step` inputs after each step, until `inputs`
    /// were injected or the workload is done. Returns how many were injected.
    ///
    /// # Errors
    ///
    /// A replica's bounded state over its bound, or the cluster idle with work outstanding.
    pub fn fuzz(&mut self, inputs: u64) -> Result<u64, String> {
        let mut injected = 0;
        self.refresh();
        while injected < inputs && !self.cluster.workload_done() {
            if !self.cluster.step() {
                return Err("the cluster went idle with requests outstanding".into());
            }
            self.steps += 1;
            for _ in 0..self.options.inputs_per_step {
                if injected >= inputs {
                    break;
                }
                self.input();
                injected += 1;
            }
            if self.steps.is_multiple_of(CHECK_EVERY_STEPS) {
                self.refresh();
                self.check_bounds()?;
            }
        }
        self.check_bounds()?;
        Ok(injected)
    }

    /// Stops the inputs, lets the workload finish, and checks that every request completed
    /// once, that the honest replicas agree (same head, ledger hash and state digest after a
    /// quiet second), and that every request they executed carries a valid client signature.
    /// Returns the session's report.
    ///
    /// # Errors
    ///
    /// What failed.
    pub fn finish(&mut self) -> Result<FuzzReport, String> {
        self.cluster
            .run(STEPS_MAX_DEFAULT)
            .map_err(|error| format!("the workload did not complete: {error}"))?;
        self.cluster.run_for(Duration::from_secs(1));
        self.check_bounds()?;
        let completions = &self.cluster.completions;
        let distinct: std::collections::BTreeSet<_> =
            completions.iter().map(|(client, done)| (*client, done.request)).collect();
        if completions.len() as u64 != self.options.requests || distinct.len() != completions.len()
        {
            return Err(format!(
                "{} completions ({} distinct) of {} requests",
                completions.len(),
                distinct.len(),
                self.options.requests
            ));
        }
        let first = self.cluster.replica(self.honest[0]);
        let head = (first.last_executed(), first.ledger().head_hash(), first.state().digest());
        for &id in &self.honest {
            let replica = self.cluster.replica(id);
            replica.ledger().verify_chain().map_err(|error| format!("replica {id}: {error}"))?;
            let mine =
                (replica.last_executed(), replica.ledger().head_hash(), replica.state().digest());
            if mine != head {
                return Err(format!(
                    "replica {id} ends at seq {} and replica {} at seq {} (or their hashes differ)",
                    mine.0, self.honest[0], head.0
                ));
            }
            let entered = replica.counters().views_entered;
            self.report.views_entered_max = self.report.views_entered_max.max(entered);
        }
        check_ledger_signatures(&self.cluster, &self.honest)?;
        self.report.requests_completed = completions.len() as u64;
        Ok(self.report.clone())
    }

    /// Refreshes the hints from the replicas and forgets the cluster's record of rejections
    /// (the driver keeps its own counts; the record would grow with the inputs).
    fn refresh(&mut self) {
        for (index, hints) in self.hints.iter_mut().enumerate() {
            let status = self.cluster.replica(ReplicaId(index as u8)).status();
            *hints = Hints {
                view: status.view.0,
                last_executed: status.last_executed.0,
                stable: status.stable_checkpoint.0,
            };
        }
        self.cluster.rejections.clear();
    }

    /// Asserts every replica's bounded state is within its bound, and records the largest.
    fn check_bounds(&mut self) -> Result<(), String> {
        let config = &self.config;
        let evidence = config.evidence_slots_max() as usize;
        let n = usize::from(config.replica_count);
        let queue = config.request_queue_max as usize;
        let checkpoints = evidence / config.checkpoint_interval as usize + 2;
        let early = (n - 1) * (evidence + config.window as usize);
        for replica in self.cluster.replicas() {
            let retention = replica.retention();
            let queued = replica.status().queued_requests;
            let observed = RetentionMax { replica: retention, queued_requests: queued };
            self.report.retention.merge(&observed);
            for (what, held, bound) in [
                ("ledger blocks", retention.ledger_blocks, evidence),
                ("undo slots", retention.undo_slots, evidence),
                ("votes", retention.votes, evidence),
                ("open slots", retention.open_slots, evidence),
                ("pending checkpoints", retention.pending_checkpoints, checkpoints),
                ("carried slots", retention.carried_slots, evidence),
                ("forwarded requests", retention.forwarded_requests, queue),
                ("early messages", retention.early_messages, early),
                ("queued requests", queued, queue),
            ] {
                if held > bound {
                    return Err(format!(
                        "replica {} holds {held} {what}, over the bound {bound}",
                        replica.id()
                    ));
                }
            }
        }
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Inputs.

    /// One input: a stream of bytes from the Byzantine replica (or a misrouted one) to an
    /// honest replica.
    pub fn input(&mut self) {
        let to = self.honest[self.rng.random_range(0..self.honest.len())];
        let from = self.options.byzantine;
        let roll = self.rng.random_range(0..100u32);
        let (class, from, bytes) = match roll {
            0..=61 => {
                let message = self.mutated(to);
                ("mutated", from, self.sealed_frame(&message, to))
            }
            62..=71 => {
                let kind = self.pick_kind();
                let mut message = self.build(kind, to);
                if self.rng.random_bool(0.5) {
                    self.mutate(&mut message, to);
                }
                self.resign(&mut message);
                ("built", from, self.sealed_frame(&message, to))
            }
            72..=75 => {
                let kind = self.pick_kind();
                let message = self.base(kind, to);
                ("replayed", from, self.sealed_frame(&message, to))
            }
            76..=85 => ("payload-bytes", from, self.payload_bytes(to)),
            86..=91 => ("envelope-bits", from, self.envelope_bits(to)),
            92..=97 => ("raw", from, self.raw_bytes()),
            _ => {
                let (from, bytes) = self.misrouted(to);
                ("misrouted", from, bytes)
            }
        };
        self.report.inputs += 1;
        *self.report.classes.entry(class).or_default() += 1;
        self.feed_stream(from, to, &bytes);
    }

    /// Feeds one stream's bytes, in one to three chunks, through the frame layer; each frame
    /// goes on to the envelope layer, as the shell's connection task does. A frame over the
    /// limit, a malformed one, or the stream's end inside a frame closes the stream.
    fn feed_stream(&mut self, from: ReplicaId, to: ReplicaId, bytes: &[u8]) {
        let mut cutter = FrameCutter::new(FRAME_SIZE_MAX);
        let chunks = self.rng.random_range(1..=3usize);
        let mut cuts: Vec<usize> =
            (1..chunks).map(|_| self.rng.random_range(0..=bytes.len())).collect();
        cuts.push(bytes.len());
        cuts.sort_unstable();
        let mut start = 0;
        for end in cuts {
            cutter.extend(&bytes[start..end]);
            start = end;
            loop {
                match cutter.next_frame() {
                    Ok(Some(frame)) => {
                        self.report.frames += 1;
                        if !self.handle_frame(from, to, &frame) {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(FrameError::TooLarge { .. }) => {
                        self.outcome("frame.too_large");
                        return;
                    }
                    Err(error) => unreachable!("a cutter fails only on size: {error}"),
                }
            }
        }
        if !cutter.is_empty() {
            self.outcome("frame.truncated");
        }
    }

    /// Decodes a frame as an envelope and delivers it; false when the stream must close.
    fn handle_frame(&mut self, from: ReplicaId, to: ReplicaId, frame: &[u8]) -> bool {
        if frame.is_empty() {
            self.report.empty_frames += 1;
            return true;
        }
        match decode::<Envelope>(frame) {
            Ok(envelope) => {
                self.deliver(from, to, &envelope);
                true
            }
            Err(_) => {
                self.outcome("envelope.malformed");
                false
            }
        }
    }

    fn outcome(&mut self, kind: &str) {
        *self.report.rejections.entry(kind.to_string()).or_default() += 1;
    }

    /// Hands an envelope to the live replica `to` and checks the accounting from its counters.
    fn deliver(&mut self, from: ReplicaId, to: ReplicaId, envelope: &Envelope) {
        let counters = self.cluster.replica(to).counters();
        let before = counters.rejected.clone();
        let deferred_before = counters.rejected_deferred;
        let late_before = counters.votes_late;
        let result =
            catch_unwind(AssertUnwindSafe(|| self.cluster.inject_envelope(from, to, envelope)));
        let result = match result {
            Ok(result) => result,
            Err(panic) => {
                let message = decode_message(&envelope.payload);
                eprintln!(
                    "fuzz: replica {to} panicked on an envelope from {from} (seed {}): {message:?}",
                    self.options.seed
                );
                resume_unwind(panic);
            }
        };
        self.report.deliveries += 1;
        let counters = self.cluster.replica(to).counters();
        let rise: u64 = counters
            .rejected
            .iter()
            .map(|(kind, count)| count - before.get(kind).copied().unwrap_or(0))
            .sum();
        let deferred = counters.rejected_deferred - deferred_before;
        let refused = match &result {
            Ok(()) => {
                self.report.accepted += 1;
                self.report.accepted_late_votes += counters.votes_late - late_before;
                let message = decode_message(&envelope.payload);
                let name = message.as_ref().map_or("?", |message| message.name());
                *self.report.accepted_by_message.entry(name).or_default() += 1;
                if let Ok(Message::ViewChange(request)) = &message
                    && request.replica == self.options.byzantine
                {
                    let floor = &mut self.view_change_floor[to.index()];
                    *floor = (*floor).max(request.target.0);
                }
                None
            }
            Err(rejection) => {
                *self.report.rejections.entry(format!("core.{}", rejection.kind())).or_default() +=
                    1;
                Some(rejection.kind())
            }
        };
        let counted_once = refused
            .is_none_or(|kind| counters.rejected(kind) > before.get(kind).copied().unwrap_or(0));
        if rise != deferred + u64::from(refused.is_some()) || !counted_once {
            self.report.accounting_violations += 1;
            if self.report.violation_details.len() < VIOLATIONS_KEPT {
                let message = decode_message(&envelope.payload);
                self.report.violation_details.push(format!(
                    "replica {to}: {result:?}, rejections rose by {rise} ({deferred} deferred) \
                     for {message:?}"
                ));
            }
        }
        if deferred > 0 {
            for (kind, count) in &counters.rejected {
                let mut rose = count - before.get(kind).copied().unwrap_or(0);
                if refused == Some(*kind) {
                    rose -= 1;
                }
                if rose > 0 {
                    *self.report.deferred.entry(kind).or_default() += rose;
                }
            }
        }
    }

    /// The frame of `message` sealed from the Byzantine replica to `to`.
    fn sealed_frame(&self, message: &Message, to: ReplicaId) -> Vec<u8> {
        encode_framed(&self.seal(encode(message), to))
    }

    fn seal(&self, payload: Vec<u8>, to: ReplicaId) -> Envelope {
        let payload = Bytes::from(payload);
        let digest = sha256(&payload);
        let key = &self.secrets.replica_macs[to.index()];
        Envelope::seal(payload, &digest, key, self.options.byzantine, to)
    }

    /// A message from the corpus or built, with one to three field mutations, re-signed
    /// (most of the time) where the Byzantine replica signs.
    fn mutated(&mut self, to: ReplicaId) -> Message {
        let kind = self.pick_kind();
        let mut message = self.base(kind, to);
        for _ in 0..self.rng.random_range(1..=3u32) {
            self.mutate(&mut message, to);
        }
        if self.rng.random_bool(0.85) {
            self.resign(&mut message);
        }
        message
    }

    /// An encoded message with byte edits (lengths, truncation, trailing bytes, flipped bits),
    /// re-sealed so that it reaches the decoder.
    fn payload_bytes(&mut self, to: ReplicaId) -> Vec<u8> {
        let kind = self.pick_kind();
        let message = self.base(kind, to);
        let mut payload = encode(&message);
        for _ in 0..self.rng.random_range(1..=3u32) {
            self.edit_bytes(&mut payload);
        }
        encode_framed(&self.seal(payload, to))
    }

    fn edit_bytes(&mut self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        let at = self.rng.random_range(0..=len);
        match self.rng.random_range(0..8u32) {
            0 | 1 if len > 0 => {
                let index = at.min(len - 1);
                bytes[index] ^= 1 << self.rng.random_range(0..8u32);
            }
            2 if len > 0 => {
                const EXTREMES: [u8; 5] = [0x00, 0x01, 0x7f, 0x80, 0xff];
                bytes[at.min(len - 1)] = EXTREMES[self.rng.random_range(0..EXTREMES.len())];
            }
            3 => {
                // A huge varint: a length or count that announces far more than follows.
                let huge: &[u8] = match self.rng.random_range(0..3u32) {
                    0 => &[0xff, 0xff, 0xff, 0xff, 0x0f],
                    1 => &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
                    _ => &[0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80],
                };
                bytes.splice(at..at, huge.iter().copied());
            }
            4 if len > 0 => {
                let end = (at + self.rng.random_range(1..=8usize)).min(len);
                bytes.drain(at.min(len - 1)..end.max(at.min(len - 1)));
            }
            5 => bytes.truncate(at),
            6 => {
                for _ in 0..self.rng.random_range(1..=8u32) {
                    bytes.push(self.rng.random());
                }
            }
            _ if len > 0 => {
                let start = at.min(len - 1);
                let end = (start + self.rng.random_range(1..=16usize)).min(len);
                let copy: Vec<u8> = bytes[start..end].to_vec();
                bytes.splice(start..start, copy);
            }
            _ => bytes.push(self.rng.random()),
        }
    }

    /// A valid frame with bit flips or a wrong header, not re-sealed.
    fn envelope_bits(&mut self, to: ReplicaId) -> Vec<u8> {
        let kind = self.pick_kind();
        let message = self.base(kind, to);
        let mut frame = self.sealed_frame(&message, to);
        match self.rng.random_range(0..6u32) {
            0..=2 => {
                for _ in 0..self.rng.random_range(1..=4u32) {
                    let index = self.rng.random_range(0..frame.len());
                    frame[index] ^= 1 << self.rng.random_range(0..8u32);
                }
            }
            3 => {
                let len = (frame.len() - 4) as u32;
                let announced = match self.rng.random_range(0..6u32) {
                    0 => len + 1,
                    1 => len - 1,
                    2 => 0,
                    3 => u32::MAX,
                    4 => FRAME_SIZE_MAX as u32 + 1,
                    _ => self.rng.random(),
                };
                frame[..4].copy_from_slice(&announced.to_le_bytes());
            }
            4 => {
                let keep = self.rng.random_range(0..frame.len());
                frame.truncate(keep);
            }
            _ => {
                // Two frames back to back, the second with a bit flipped in its MAC.
                let mut second = frame.clone();
                let last = second.len() - 1;
                second[last] ^= 1;
                frame.extend_from_slice(&second);
            }
        }
        frame
    }

    /// Random bytes: a random body in a correct frame, an envelope-shaped body with a random
    /// payload and MAC, or random bytes header included.
    fn raw_bytes(&mut self) -> Vec<u8> {
        let roll = self.rng.random_range(0..10u32);
        let size = self.rng.random_range(0..512usize);
        let mut body = vec![0u8; size];
        self.rng.fill_bytes(&mut body);
        match roll {
            0..=4 => crate::net::frame::framed(&body),
            5..=7 => {
                let mut mac = [0u8; 32];
                self.rng.fill_bytes(&mut mac);
                let envelope =
                    Envelope { payload: Bytes::from(body), mac: crate::crypto::mac::Mac(mac) };
                encode_framed(&envelope)
            }
            _ => {
                body.truncate(self.rng.random_range(0..64usize));
                body
            }
        }
    }

    /// Envelopes sealed for another pair, from the receiver itself, from an unknown replica, or
    /// (rarely) over the largest message.
    fn misrouted(&mut self, to: ReplicaId) -> (ReplicaId, Vec<u8>) {
        let kind = self.pick_kind();
        let message = self.base(kind, to);
        let byzantine = self.options.byzantine;
        match self.rng.random_range(0..1000u32) {
            0..=399 => {
                // Sealed for another honest receiver.
                let other = self.honest.iter().copied().find(|id| *id != to).unwrap_or(to);
                let mut frame = self.sealed_frame(&message, other);
                if other == to {
                    let last = frame.len() - 1;
                    frame[last] ^= 1;
                }
                (byzantine, frame)
            }
            400..=699 => (to, self.sealed_frame(&message, to)),
            700..=998 => {
                let from = ReplicaId(self.rng.random_range(self.config.replica_count..=u8::MAX));
                (from, self.sealed_frame(&message, to))
            }
            _ => {
                let payload = vec![0u8; MESSAGE_SIZE_MAX + 1];
                (byzantine, encode_framed(&self.seal(payload, to)))
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Messages.

    fn pick_kind(&mut self) -> usize {
        // propose, support, certify, forward, checkpoint, view-change, new-view,
        // state-request, state-transfer, commit (PBFT only)
        let commit = if self.config.protocol == Protocol::Pbft { 12 } else { 0 };
        let weights: [u32; 10] = [15, 18, 10, 8, 12, 12, 9, 6, 10, commit];
        let total: u32 = weights.iter().sum();
        let mut roll = self.rng.random_range(0..total);
        for (kind, weight) in weights.iter().enumerate() {
            if roll < *weight {
                return kind;
            }
            roll -= weight;
        }
        unreachable!("the roll is below the total")
    }

    /// A message of `kind`: a recent one the cluster sent, or one built as the Byzantine
    /// replica would.
    fn base(&mut self, kind: usize, to: ReplicaId) -> Message {
        let held = {
            let corpus = self.corpus.borrow();
            let messages = &corpus.messages[kind];
            (!messages.is_empty() && self.rng.random_bool(0.75)).then(|| {
                // Recent ones more often: they are in the current view and window.
                let back = self.rng.random_range(0..messages.len());
                let back = self.rng.random_range(0..=back);
                messages[messages.len() - 1 - back].clone()
            })
        };
        match held {
            Some(message) => message,
            None => self.build(kind, to),
        }
    }

    fn build(&mut self, kind: usize, to: ReplicaId) -> Message {
        let hints = self.hints[to.index()];
        let b = self.options.byzantine;
        match KINDS[kind] {
            "propose" => {
                let count = self.rng.random_range(0..=4usize);
                let batch: Vec<SignedRequest> = (0..count).map(|_| self.request()).collect();
                Message::Propose(Propose {
                    view: View(hints.view),
                    seq: Seq(hints.last_executed + self.rng.random_range(1..=4u64)),
                    batch: batch.into(),
                })
            }
            "support" => {
                let (view, seq, digest) = self.proposal_target(hints);
                Message::Support(self.sign_support(view, seq, digest))
            }
            "certify" => {
                let (view, seq, digest) = self.proposal_target(hints);
                let signature = self.sign_share(&digest);
                Message::Certify(Certify { view, seq, digest, signature })
            }
            "forward" => Message::Forward(self.request()),
            "commit" => {
                let (view, seq, digest) = self.proposal_target(hints);
                Message::Commit(Commit { view, seq, digest, replica: b })
            }
            "checkpoint" => {
                let interval = self.config.checkpoint_interval;
                let seq = (hints.stable / interval + self.rng.random_range(0..=3u64)) * interval;
                let mut checkpoint = Checkpoint {
                    seq: Seq(seq),
                    state_digest: self.digest(),
                    block_hash: self.digest(),
                    replica: b,
                    signature: Signature([0; 64]),
                };
                self.sign_checkpoint(&mut checkpoint);
                Message::Checkpoint(checkpoint)
            }
            "view-change" => {
                let target = View(self.target_number(to));
                Message::ViewChange(Arc::new(self.view_change(target)))
            }
            "new-view" => {
                let n = u64::from(self.config.replica_count);
                // The next view this replica is the primary of, or a near one.
                let mut view = hints.view + 1;
                while view % n != u64::from(b.0) && self.rng.random_bool(0.8) {
                    view += 1;
                }
                let view = View(view);
                let mut requests: Vec<Arc<ViewChange>> = {
                    let corpus = self.corpus.borrow();
                    corpus.view_changes.iter().filter(|r| r.target == view).cloned().collect()
                };
                requests.retain(|request| request.replica != b);
                requests.push(Arc::new(self.view_change(view)));
                requests.truncate(self.config.nf());
                Message::NewView(Arc::new(NewView { view, requests }))
            }
            "state-request" => Message::StateRequest(StateRequest {
                view: View(self.number(hints.view, &[hints.view])),
                last_executed: Seq(
                    self.number(hints.last_executed, &[hints.last_executed, hints.stable])
                ),
            }),
            _ => {
                let checkpoint = self.cluster.disk(b).checkpoint.clone();
                let new_view = {
                    let corpus = self.corpus.borrow();
                    corpus.messages[6].back().and_then(|message| match message {
                        Message::NewView(new_view) => Some(new_view.clone()),
                        _ => None,
                    })
                };
                let tail = self.evidence_list(Seq(hints.last_executed));
                Message::StateTransfer(Arc::new(StateTransfer {
                    checkpoint,
                    new_view,
                    tail,
                    head: Seq(0),
                }))
            }
        }
    }

    /// A (view, seq, proposal digest) from a recent proposal, or made up near the target's log.
    fn proposal_target(&mut self, hints: Hints) -> (View, Seq, Digest) {
        let proposal = {
            let corpus = self.corpus.borrow();
            let proposals = &corpus.proposals;
            (!proposals.is_empty()).then(|| {
                let back = self.rng.random_range(0..proposals.len().min(8));
                let (digest, view, seq, _) = &proposals[proposals.len() - 1 - back];
                (*view, *seq, *digest)
            })
        };
        proposal.unwrap_or_else(|| {
            let seq = Seq(hints.last_executed + self.rng.random_range(1..=4u64));
            (View(hints.view), seq, self.digest())
        })
    }

    /// A VC-REQUEST of the Byzantine replica for `target` with recent evidence, signed.
    fn view_change(&mut self, target: View) -> ViewChange {
        let checkpoint = match self.rng.random_range(0..3u32) {
            0 => None,
            1 => self.cluster.disk(self.options.byzantine).checkpoint.clone().map(|(c, _)| c),
            _ => {
                let corpus = self.corpus.borrow();
                corpus.checkpoints.back().cloned()
            }
        };
        let base = checkpoint.as_ref().map_or(Seq(0), |checkpoint| checkpoint.seq);
        let mut evidence = self.evidence_list(base);
        evidence.retain(|slot| slot.view < target);
        let mut request = ViewChange {
            target,
            replica: self.options.byzantine,
            checkpoint,
            evidence,
            signature: Signature([0; 64]),
        };
        self.sign_view_change(&mut request);
        request
    }

    /// Evidence from the corpus above `base`, ascending, one per slot.
    fn evidence_list(&mut self, base: Seq) -> Vec<SlotEvidence> {
        let corpus = self.corpus.borrow();
        let mut by_seq: BTreeMap<Seq, SlotEvidence> = BTreeMap::new();
        for evidence in corpus.evidence.iter().filter(|evidence| evidence.seq > base) {
            let higher = by_seq.get(&evidence.seq).is_none_or(|held| evidence.view > held.view);
            if higher {
                by_seq.insert(evidence.seq, evidence.clone());
            }
        }
        let keep = self.rng.random_range(0..=by_seq.len().min(4));
        by_seq.into_values().take(keep).collect()
    }

    /// A client request from the corpus (a real one), or a made-up one with a bad signature.
    fn request(&mut self) -> SignedRequest {
        let held = {
            let corpus = self.corpus.borrow();
            let requests = &corpus.requests;
            (!requests.is_empty() && self.rng.random_bool(0.9))
                .then(|| requests[self.rng.random_range(0..requests.len())].clone())
        };
        held.unwrap_or_else(|| {
            let client = ClientId(self.rng.random_range(0..self.config.client_count + 2));
            let body = RequestBody {
                client,
                request: RequestId(self.rng.random_range(0..64u64)),
                op: Operation::Write { key: "k0".into(), value: self.rng.random() },
            };
            let mut signature = [0u8; 64];
            self.rng.fill_bytes(&mut signature);
            SignedRequest { body, signature: Signature(signature) }
        })
    }

    fn digest(&mut self) -> Digest {
        let mut digest = [0u8; 32];
        self.rng.fill_bytes(&mut digest);
        Digest(digest)
    }

    /// A number near `value` or one of `hints`, or an extreme.
    fn number(&mut self, value: u64, hints: &[u64]) -> u64 {
        let base = if hints.is_empty() || self.rng.random_bool(0.3) {
            value
        } else {
            hints[self.rng.random_range(0..hints.len())]
        };
        match self.rng.random_range(0..12u32) {
            0..=2 => base.saturating_add(1),
            3..=4 => base.saturating_sub(1),
            5 => base.saturating_add(self.rng.random_range(2..=70u64)),
            6 => base.saturating_sub(self.rng.random_range(2..=70u64)),
            7 => 0,
            8 => u64::MAX,
            9 => u64::MAX - 1,
            10 => self.rng.random(),
            _ => base,
        }
    }

    fn seq_number(&mut self, value: u64, to: ReplicaId) -> u64 {
        let hints = self.hints[to.index()];
        let log = self.config.log_size;
        let interval = self.config.checkpoint_interval;
        let evidence = self.config.evidence_slots_max();
        let candidates = [
            hints.last_executed,
            hints.stable,
            hints.stable + log,
            hints.stable + evidence,
            (hints.stable / interval + 1) * interval,
        ];
        self.number(value, &candidates)
    }

    fn view_number(&mut self, value: u64, to: ReplicaId) -> u64 {
        let view = self.hints[to.index()].view;
        self.number(value, &[view, view + 1, view + 4])
    }

    /// A VC-REQUEST target: mostly just above what `to` holds from the Byzantine replica (so
    /// that it is validated, not refused as a duplicate), sometimes a duplicate, a stale view,
    /// a far one, or (rarely, since it shadows every later request) the largest.
    fn target_number(&mut self, to: ReplicaId) -> u64 {
        let view = self.hints[to.index()].view;
        let base = self.view_change_floor[to.index()].max(view);
        match self.rng.random_range(0..1000u32) {
            0 => u64::MAX,
            1..=599 => base.saturating_add(self.rng.random_range(1..=3u64)),
            600..=699 => base,
            700..=799 => view,
            800..=899 => view.saturating_sub(1),
            _ => base.saturating_add(self.rng.random_range(4..=1000u64)),
        }
    }

    fn replica_id(&mut self, replica: ReplicaId) -> ReplicaId {
        let n = self.config.replica_count;
        match self.rng.random_range(0..4u32) {
            0 | 1 => self.options.byzantine,
            2 => ReplicaId(self.rng.random_range(0..n)),
            _ => ReplicaId(self.rng.random_range(0..=u8::MAX).max(replica.0)),
        }
    }

    fn flip(&mut self, bytes: &mut [u8]) {
        if !bytes.is_empty() {
            let index = self.rng.random_range(0..bytes.len());
            bytes[index] ^= 1 << self.rng.random_range(0..8u32);
        }
    }

    /// One field mutation of `message`.
    fn mutate(&mut self, message: &mut Message, to: ReplicaId) {
        let choice = self.rng.random_range(0..8u32);
        match message {
            Message::Propose(propose) => match choice {
                0 | 1 => propose.view.0 = self.view_number(propose.view.0, to),
                2 | 3 => propose.seq.0 = self.seq_number(propose.seq.0, to),
                _ => propose.batch = self.mutate_batch(&propose.batch),
            },
            Message::Support(support) => match choice {
                0 => support.view.0 = self.view_number(support.view.0, to),
                1 => support.seq.0 = self.seq_number(support.seq.0, to),
                2 | 3 => self.flip(&mut support.digest.0),
                4 => support.replica = self.replica_id(support.replica),
                5 => match &mut support.proof {
                    SupportProof::Share(share) => self.flip(&mut share.0),
                    SupportProof::Signature(signature) => self.flip(&mut signature.0),
                },
                6 => {
                    support.proof = match support.proof {
                        SupportProof::Share(_) => SupportProof::Signature(Signature([7; 64])),
                        SupportProof::Signature(_) => SupportProof::Share(BlsSignature([7; 96])),
                    }
                }
                _ => {
                    // Another proposal's digest, signed.
                    let hints = self.hints[to.index()];
                    let (view, seq, digest) = self.proposal_target(hints);
                    support.digest = digest;
                    if self.rng.random_bool(0.5) {
                        (support.view, support.seq) = (view, seq);
                    }
                }
            },
            Message::Commit(commit) => match choice {
                0 | 1 => commit.view.0 = self.view_number(commit.view.0, to),
                2 | 3 => commit.seq.0 = self.seq_number(commit.seq.0, to),
                4 | 5 => self.flip(&mut commit.digest.0),
                _ => commit.replica = self.replica_id(commit.replica),
            },
            Message::Certify(certify) => match choice {
                0 => certify.view.0 = self.view_number(certify.view.0, to),
                1 | 2 => certify.seq.0 = self.seq_number(certify.seq.0, to),
                3 | 4 => self.flip(&mut certify.digest.0),
                5 => self.flip(&mut certify.signature.0),
                6 => certify.signature = self.sign_share(&certify.digest),
                _ => {
                    let hints = self.hints[to.index()];
                    let (view, seq, digest) = self.proposal_target(hints);
                    (certify.view, certify.seq, certify.digest) = (view, seq, digest);
                }
            },
            Message::Forward(request) => self.mutate_request(request),
            Message::Checkpoint(checkpoint) => match choice {
                0..=2 => checkpoint.seq.0 = self.seq_number(checkpoint.seq.0, to),
                3 => self.flip(&mut checkpoint.state_digest.0),
                4 => self.flip(&mut checkpoint.block_hash.0),
                5 => checkpoint.replica = self.replica_id(checkpoint.replica),
                6 => self.flip(&mut checkpoint.signature.0),
                _ => {
                    let interval = self.config.checkpoint_interval;
                    checkpoint.seq.0 =
                        (checkpoint.seq.0 / interval * interval).saturating_add(interval);
                }
            },
            Message::ViewChange(request) => {
                let inner = Arc::make_mut(request);
                self.mutate_view_change(inner, choice, to);
            }
            Message::NewView(new_view) => {
                let inner = Arc::make_mut(new_view);
                self.mutate_new_view(inner, choice, to);
            }
            Message::StateRequest(request) => match choice {
                0..=2 => request.view.0 = self.view_number(request.view.0, to),
                _ => request.last_executed.0 = self.seq_number(request.last_executed.0, to),
            },
            Message::StateTransfer(transfer) => {
                let inner = Arc::make_mut(transfer);
                self.mutate_state_transfer(inner, choice, to);
            }
        }
    }

    fn mutate_view_change(&mut self, request: &mut ViewChange, choice: u32, to: ReplicaId) {
        match choice {
            0 => request.target.0 = self.target_number(to),
            1 => request.replica = self.replica_id(request.replica),
            2 => self.flip(&mut request.signature.0),
            3 => match &mut request.checkpoint {
                Some(checkpoint) if self.rng.random_bool(0.8) => {
                    self.mutate_checkpoint_certificate(checkpoint, to);
                }
                Some(_) => request.checkpoint = None,
                None => {
                    let corpus = self.corpus.borrow();
                    request.checkpoint = corpus.checkpoints.back().cloned();
                }
            },
            _ => self.mutate_evidence_list(&mut request.evidence, request.target, to),
        }
    }

    fn mutate_new_view(&mut self, new_view: &mut NewView, choice: u32, to: ReplicaId) {
        let len = new_view.requests.len();
        match choice {
            0 => new_view.view.0 = self.view_number(new_view.view.0, to),
            1 if len > 0 => {
                new_view.requests.remove(self.rng.random_range(0..len));
            }
            2 if len > 0 => {
                let copy = new_view.requests[self.rng.random_range(0..len)].clone();
                new_view.requests.push(copy);
            }
            3 if len > 1 => {
                let (a, b) = (self.rng.random_range(0..len), self.rng.random_range(0..len));
                new_view.requests.swap(a, b);
            }
            4 if len > 0 => {
                let index = self.rng.random_range(0..len);
                let choice = self.rng.random_range(0..8u32);
                let request = Arc::make_mut(&mut new_view.requests[index]);
                self.mutate_view_change(request, choice, to);
            }
            5 => {
                let other = {
                    let corpus = self.corpus.borrow();
                    let held = &corpus.view_changes;
                    (!held.is_empty()).then(|| held[self.rng.random_range(0..held.len())].clone())
                };
                if let Some(other) = other {
                    new_view.requests.push(other);
                }
            }
            _ => {
                let own = self.view_change(new_view.view);
                let b = self.options.byzantine;
                new_view.requests.retain(|request| request.replica != b);
                new_view.requests.push(Arc::new(own));
            }
        }
    }

    fn mutate_state_transfer(&mut self, transfer: &mut StateTransfer, choice: u32, to: ReplicaId) {
        match choice {
            0 | 1 => match &mut transfer.checkpoint {
                Some((certificate, _)) if choice == 0 => {
                    self.mutate_checkpoint_certificate(certificate, to);
                }
                Some((_, snapshot)) => self.mutate_snapshot(snapshot),
                None => {
                    transfer.checkpoint =
                        self.cluster.disk(self.options.byzantine).checkpoint.clone();
                }
            },
            2 => transfer.checkpoint = None,
            3 => match &mut transfer.new_view {
                Some(new_view) => {
                    let choice = self.rng.random_range(0..8u32);
                    self.mutate_new_view(Arc::make_mut(new_view), choice, to);
                }
                None => {
                    let corpus = self.corpus.borrow();
                    transfer.new_view =
                        corpus.messages[6].back().and_then(|message| match message {
                            Message::NewView(new_view) => Some(new_view.clone()),
                            _ => None,
                        });
                }
            },
            4 => transfer.new_view = None,
            _ => {
                let view = View(self.hints[to.index()].view + 1);
                self.mutate_evidence_list(&mut transfer.tail, view, to);
            }
        }
    }

    fn mutate_checkpoint_certificate(
        &mut self,
        certificate: &mut CheckpointCertificate,
        to: ReplicaId,
    ) {
        let len = certificate.signatures.len();
        match self.rng.random_range(0..8u32) {
            0 => certificate.seq.0 = self.seq_number(certificate.seq.0, to),
            1 => self.flip(&mut certificate.state_digest.0),
            2 => self.flip(&mut certificate.block_hash.0),
            3 if len > 0 => {
                certificate.signatures.remove(self.rng.random_range(0..len));
            }
            4 if len > 0 => {
                let copy = certificate.signatures[self.rng.random_range(0..len)];
                certificate.signatures.push(copy);
            }
            5 if len > 0 => {
                let index = self.rng.random_range(0..len);
                let replica = self.replica_id(certificate.signatures[index].0);
                certificate.signatures[index].0 = replica;
            }
            6 if len > 0 => {
                let index = self.rng.random_range(0..len);
                self.flip(&mut certificate.signatures[index].1.0);
            }
            _ => {
                // The Byzantine replica's own valid signature in place of another one.
                let b = self.options.byzantine;
                let bytes = checkpoint_signing_bytes(
                    certificate.seq,
                    &certificate.state_digest,
                    &certificate.block_hash,
                );
                let signature = self.secrets.signing_key.sign(&bytes);
                certificate.signatures.retain(|(replica, _)| *replica != b);
                certificate.signatures.push((b, signature));
            }
        }
    }

    fn mutate_snapshot(&mut self, snapshot: &mut Snapshot) {
        match self.rng.random_range(0..5u32) {
            0 => snapshot.seq.0 = self.number(snapshot.seq.0, &[]),
            1 => {
                snapshot.store.insert("k".repeat(33), 1);
            }
            2 => {
                let client = ClientId(self.config.client_count + self.rng.random_range(0..4u32));
                let entry = ClientEntry {
                    request: RequestId(1),
                    view: View(0),
                    seq: snapshot.seq,
                    result: history::OpResult::Written,
                };
                snapshot.clients.insert(client, entry);
            }
            3 => {
                if let Some(value) = snapshot.store.values_mut().next() {
                    *value = value.wrapping_add(1);
                } else {
                    snapshot.store.insert("k0".into(), 1);
                }
            }
            _ => {
                if let Some(entry) = snapshot.clients.values_mut().next() {
                    entry.request.0 = entry.request.0.wrapping_add(1);
                }
            }
        }
    }

    fn mutate_evidence_list(&mut self, list: &mut Vec<SlotEvidence>, target: View, to: ReplicaId) {
        let len = list.len();
        match self.rng.random_range(0..10u32) {
            0 if len > 0 => {
                list.remove(self.rng.random_range(0..len));
            }
            1 if len > 0 => {
                let copy = list[self.rng.random_range(0..len)].clone();
                list.push(copy);
            }
            2 if len > 1 => list.reverse(),
            3 => {
                // More slots than evidence may carry (rarely: they are big).
                if self.rng.random_bool(0.05) {
                    let filler = list.first().cloned();
                    if let Some(filler) = filler {
                        let max = self.config.evidence_slots_max() as usize + 1;
                        list.resize(max, filler);
                    }
                } else {
                    let extra = self.evidence_list(Seq(0));
                    list.extend(extra);
                }
            }
            4 if len > 0 => {
                let index = self.rng.random_range(0..len);
                list[index].view = View(self.number(list[index].view.0, &[target.0]));
            }
            5 if len > 0 => {
                let index = self.rng.random_range(0..len);
                list[index].seq.0 = self.seq_number(list[index].seq.0, to);
            }
            6 if len > 0 => {
                let index = self.rng.random_range(0..len);
                list[index].batch = self.mutate_batch(&list[index].batch);
            }
            7 | 8 if len > 0 => {
                let index = self.rng.random_range(0..len);
                self.mutate_certificate(&mut list[index].certificate);
            }
            _ => list.clear(),
        }
    }

    fn mutate_certificate(&mut self, certificate: &mut Certificate) {
        match certificate {
            Certificate::Threshold(signature) => match self.rng.random_range(0..3u32) {
                0 => self.flip(&mut signature.0),
                1 => *certificate = Certificate::Supports(Vec::new()),
                _ => {
                    let digest = self.digest();
                    *signature = self.sign_share(&digest);
                }
            },
            Certificate::Supports(supports) => {
                let len = supports.len();
                match self.rng.random_range(0..7u32) {
                    0 if len > 0 => {
                        supports.remove(self.rng.random_range(0..len));
                    }
                    1 if len > 0 => {
                        let copy = supports[self.rng.random_range(0..len)].clone();
                        supports.push(copy);
                    }
                    2 if len > 0 => {
                        let index = self.rng.random_range(0..len);
                        supports[index].view.0 = self.number(supports[index].view.0, &[]);
                    }
                    3 if len > 0 => {
                        let index = self.rng.random_range(0..len);
                        self.flip(&mut supports[index].digest.0);
                    }
                    4 if len > 0 => {
                        let index = self.rng.random_range(0..len);
                        supports[index].replica = self.replica_id(supports[index].replica);
                    }
                    5 if len > 0 => {
                        let index = self.rng.random_range(0..len);
                        supports[index].proof = SupportProof::Share(BlsSignature([1; 96]));
                    }
                    _ => *certificate = Certificate::Threshold(BlsSignature([2; 96])),
                }
            }
        }
    }

    fn mutate_batch(&mut self, batch: &Arc<[SignedRequest]>) -> Arc<[SignedRequest]> {
        let mut requests = batch.to_vec();
        let len = requests.len();
        match self.rng.random_range(0..9u32) {
            0 if len > 0 => {
                requests.remove(self.rng.random_range(0..len));
            }
            1 if len > 0 => {
                let copy = requests[self.rng.random_range(0..len)].clone();
                requests.push(copy);
            }
            2 if len > 1 => requests.reverse(),
            3 => {
                let request = self.request();
                requests.push(request);
            }
            4 => requests.clear(),
            5 if len > 0 => {
                // One request over the batch limit.
                let filler = requests[0].clone();
                requests.resize(self.config.batch_size_max as usize + 1, filler);
            }
            _ if len > 0 => {
                let index = self.rng.random_range(0..len);
                self.mutate_request(&mut requests[index]);
            }
            _ => requests.push(self.request()),
        }
        requests.into()
    }

    fn mutate_request(&mut self, request: &mut SignedRequest) {
        let body = &mut request.body;
        match self.rng.random_range(0..8u32) {
            0 => body.client = ClientId(self.rng.random_range(0..self.config.client_count + 4)),
            1 => body.request.0 = self.number(body.request.0, &[]),
            2 => body.op = Operation::Read { key: "x".repeat(self.rng.random_range(30..=40)) },
            3 => {
                let keys = self.rng.random_range(0..=20usize);
                body.op = Operation::ReadAll { keys: (0..keys).map(|k| format!("k{k}")).collect() };
            }
            4 => {
                body.op = Operation::Transfer {
                    from: "a".into(),
                    to: "a".into(),
                    amount: self.rng.random(),
                };
            }
            5 => body.op = Operation::Write { key: "k1".into(), value: self.rng.random() },
            _ => self.flip(&mut request.signature.0),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Signing as the Byzantine replica.

    /// Re-signs every part of `message` that names the Byzantine replica as its signer.
    fn resign(&mut self, message: &mut Message) {
        let b = self.options.byzantine;
        match message {
            Message::Support(support) if support.replica == b => {
                let proof = self.sign_support(support.view, support.seq, support.digest).proof;
                let keep_variant = matches!(
                    (&support.proof, &proof),
                    (SupportProof::Share(_), SupportProof::Share(_))
                        | (SupportProof::Signature(_), SupportProof::Signature(_))
                );
                if keep_variant {
                    support.proof = proof;
                }
            }
            Message::Checkpoint(checkpoint) if checkpoint.replica == b => {
                self.sign_checkpoint(checkpoint);
            }
            Message::ViewChange(request) if request.replica == b => {
                self.sign_view_change(Arc::make_mut(request));
            }
            Message::NewView(new_view) => {
                for request in &mut Arc::make_mut(new_view).requests {
                    if request.replica == b {
                        self.sign_view_change(Arc::make_mut(request));
                    }
                }
            }
            _ => {}
        }
    }

    fn sign_support(&mut self, view: View, seq: Seq, digest: Digest) -> Support {
        let proof = match self.config.protocol {
            Protocol::PoeTs => SupportProof::Share(self.sign_share(&digest)),
            Protocol::PoeMac | Protocol::Pbft => {
                let bytes = support_signing_bytes(&digest);
                SupportProof::Signature(self.secrets.signing_key.sign(&bytes))
            }
        };
        Support { view, seq, digest, replica: self.options.byzantine, proof }
    }

    /// The Byzantine replica's threshold share on `digest` (remembered: hashing to G2 and
    /// signing cost about a millisecond, and mutations aim at the same few digests).
    fn sign_share(&mut self, digest: &Digest) -> BlsSignature {
        if let Some(share) = self.shares.get(digest) {
            return *share;
        }
        let bytes = support_signing_bytes(digest);
        let share = self.secrets.threshold_share.sign(&PreparedMessage::new(&bytes));
        if self.shares.len() >= SHARES_REMEMBERED {
            self.shares.clear();
        }
        self.shares.insert(*digest, share);
        share
    }

    fn sign_checkpoint(&self, checkpoint: &mut Checkpoint) {
        checkpoint.sign_with(&self.secrets.signing_key);
    }

    fn sign_view_change(&self, request: &mut ViewChange) {
        request.sign_with(&self.secrets.signing_key);
    }
}

/// Checks that every request `replicas` executed (their ledger events, rolled back or not)
/// carries its client's valid signature, as the checker's validity oracle does
/// (`checker::replay`).
///
/// # Errors
///
/// The first replica and request whose signature does not verify.
pub fn check_ledger_signatures(cluster: &Cluster, replicas: &[ReplicaId]) -> Result<(), String> {
    let clients = &cluster.keys().public.clients;
    for &id in replicas {
        let mut requests = Vec::new();
        for event in &cluster.events[id.index()] {
            let LedgerEvent::Execute(execute) = event else { continue };
            for request in &execute.requests {
                let mut signature = [0u8; 64];
                hex::decode_to_slice(&request.signature, &mut signature)
                    .map_err(|error| format!("replica {id}: signature hex: {error}"))?;
                if request.client as usize >= clients.len() {
                    return Err(format!("replica {id} executed a request of unknown client"));
                }
                let body = RequestBody {
                    client: ClientId(request.client),
                    request: RequestId(request.request),
                    op: request.op.clone(),
                };
                requests.push((execute.seq, body.signing_bytes(), body, Signature(signature)));
            }
        }
        let items: Vec<SignedMessage<'_>> = requests
            .iter()
            .map(|(_, bytes, body, signature)| SignedMessage {
                key: &clients[body.client.index()],
                message: bytes,
                signature,
            })
            .collect();
        if ed25519::verify_batch(&items).is_err()
            && let Some(&index) = ed25519::find_invalid(&items).first()
        {
            let (seq, _, body, _) = &requests[index];
            return Err(format!(
                "replica {id} executed request {} of client {} at seq {seq} with a signature \
                 that does not verify",
                body.request, body.client
            ));
        }
    }
    Ok(())
}

/// Fuzzes fresh clusters of `requests` client requests each (alternating PoE-TS and PoE-MAC
/// when `protocols` holds both, the Byzantine replica and seed changing per session) until
/// `inputs` inputs were injected; each session ends with the workload completed and the honest
/// replicas in agreement. `each` sees the running total after every session.
///
/// # Errors
///
/// The first session that failed, with its seed.
pub fn fuzz_sessions(
    protocols: &[Protocol],
    seed: u64,
    inputs: u64,
    requests: u64,
    mut each: impl FnMut(&FuzzReport),
) -> Result<FuzzReport, String> {
    let mut total = FuzzReport::default();
    let mut session = 0u64;
    while total.inputs < inputs {
        let protocol = protocols[(session % protocols.len() as u64) as usize];
        let session_seed = history::seeds::fuzz_session(seed, session);
        let options = FuzzOptions { requests, ..FuzzOptions::new(protocol, session_seed) };
        let mut fuzz = FuzzSession::new(options.clone());
        let describe = |error: String| {
            format!("session {session} ({protocol:?}, seed {session_seed}): {error}")
        };
        fuzz.fuzz(inputs - total.inputs).map_err(describe)?;
        let report = fuzz.finish().map_err(describe)?;
        report.check_accounting().map_err(describe)?;
        total.merge(&report);
        each(&total);
        session += 1;
    }
    Ok(total)
}
