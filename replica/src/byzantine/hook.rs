//! The Byzantine hook: what a faulty replica does to its own traffic.
//!
//! The hook sits on both paths of one replica that the run declares Byzantine:
//!
//! - [`Hook::outbound`]: every transmit the core wants sent passes through it and comes out
//!   unchanged, rewritten (re-encoded and re-sealed with the replica's own keys), multiplied or
//!   dropped;
//! - [`Hook::inbound`]: every envelope from another replica is shown to it before the core sees
//!   it (to support conflicting proposals, gather shares for the other side of an equivocation,
//!   collect VC-REQUESTs); it may answer with transmits of its own;
//! - [`Hook::poll`]: spontaneous sends (false VC-REQUESTs, replays, held NV-PROPOSEs), due at
//!   [`Hook::poll_timeout`].
//!
//! It is pure: no IO, no clock (`now` is an argument), randomness from a ChaCha20 generator
//! seeded by [`ByzantineConfig::seed`]. With no behaviour switched on every transmit passes
//! unchanged. It never panics on input, and every buffer it keeps is bounded.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha20Rng;

use super::tamper;
use super::{Behaviour, ByzantineConfig};
use crate::core::config::{Config, Protocol};
use crate::core::message::{
    Certify, Checkpoint, Commit, Inform, NewView, Propose, SignedRequest, SlotEvidence, Support,
    SupportProof, ViewChange, batch_digest, decode, proposal_digest, support_signing_bytes,
};
use crate::core::replica::{Decision, decide};
use crate::core::{AuthenticatedInform, Digest, Envelope, Message, ReplicaId, Seq, Time, Transmit};
use crate::core::{ClientId, View};
use crate::crypto::dealer::{PublicKeys, ReplicaSecrets};
use crate::crypto::threshold::{BlsSignature, PreparedMessage};

/// How often `false-failure` broadcasts a VC-REQUEST (the first one interval after it is
/// switched on, so that behaviours switched on with it act in the view first).
pub const FALSE_FAILURE_INTERVAL: Duration = Duration::from_millis(500);

/// How often `replay` re-sends one old envelope to each replica.
pub const REPLAY_INTERVAL: Duration = Duration::from_millis(20);

/// Old envelopes kept per receiver for `replay`.
pub const REPLAY_RING_MAX: usize = 64;

/// `withhold-slot` withholds the first slot it sees after activation, then one in this many.
pub const WITHHOLD_EVERY: u64 = 64;

/// Slots whose equivocation or support state is remembered (the oldest are forgotten).
pub const SLOTS_TRACKED_MAX: usize = 1024;

/// Different digests a Byzantine backup supports for one slot at most.
pub const DIGESTS_PER_SLOT_MAX: usize = 4;

/// Subsets of VC-REQUESTs `nv-equivocate` tries for a different decision.
pub const SUBSETS_MAX: usize = 256;

/// How many slots before a checkpoint slot `withhold-certificate` starts acting: none, so the
/// first lone slot is the checkpoint slot itself (the clients' stalled requests fill it and
/// the next few, [`LONE_BATCH_MAX`] at a time).
pub const LONE_LEAD: u64 = 0;

/// The largest batch a lone-executor primary proposes ([`Hook::batch_limit`]).
pub const LONE_BATCH_MAX: u32 = 4;

/// Target views whose VC-REQUESTs `nv-equivocate` keeps.
pub const VIEW_CHANGE_VIEWS_MAX: usize = 4;

/// How long `nv-equivocate` holds the core's NV-PROPOSE back, waiting for more than nf
/// VC-REQUESTs (less than the backups' new-view timeout, so the view still starts).
pub const NEW_VIEW_HOLD: Duration = Duration::from_millis(200);

/// NV-PROPOSEs held at once (one per view; more are released at once).
const NEW_VIEWS_HELD_MAX: usize = 4;

/// Requests of earlier proposals an equivocating primary keeps, to give one side of a
/// single-request slot a batch with another request set.
pub const RESERVE_MAX: usize = 64;

/// How often `re-propose` offers its second batches again.
pub const REPROPOSE_INTERVAL: Duration = Duration::from_millis(100);

/// Slots `re-propose` offers a second batch for at each round at most: the oldest of the
/// view whose second batch is not certified (execution is in order, so the oldest matter).
pub const REPROPOSE_SLOTS_MAX: usize = 8;

/// Slots whose evidence `hide-evidence` remembers from earlier VC-REQUESTs (to downgrade).
pub const EVIDENCE_REMEMBERED_MAX: usize = 1024;

/// What an equivocating primary does with one slot.
#[derive(Debug)]
struct Equivocation {
    /// The honest receivers that get the other batch: a seeded half of the honest replicas
    /// (colluders get both sides).
    others: BTreeSet<ReplicaId>,
    /// The other proposal; none when no other request set could be made (a single request
    /// and nothing in reserve).
    alternative: Option<Alternative>,
    /// The first side's proposal (PoE-TS): the hook certifies it too, to its receivers, as soon
    /// as the shares the group key takes are in (the core waits for nf; a key dealt for fewer
    /// lets the adversary certify both sides).
    original: Option<Alternative>,
}

/// The other side of an equivocation.
#[derive(Debug)]
struct Alternative {
    batch: Arc<[SignedRequest]>,
    digest: Digest,
    /// PoE-TS: the support bytes hashed once, and the shares gathered for them (own included).
    prepared: Option<PreparedMessage>,
    shares: BTreeMap<u32, BlsSignature>,
    certified: bool,
}

/// What a Byzantine backup knows of one slot's digests.
#[derive(Debug, Default)]
struct SlotDigests {
    /// Digests this replica supported (the core's vote, then the hook's).
    supported: Vec<Digest>,
    /// Digests proposed to, or supported by others before, this replica supported anything:
    /// owed a support once the core has voted.
    seen: Vec<Digest>,
}

/// An NV-PROPOSE of the core held back by `nv-equivocate`.
#[derive(Debug)]
struct HeldNewView {
    original: Arc<NewView>,
    receivers: Vec<ReplicaId>,
    deadline: Time,
}

/// The Byzantine hook of one replica (see the module documentation).
#[derive(Debug)]
pub struct Hook {
    id: ReplicaId,
    config: Config,
    secrets: ReplicaSecrets,
    public: Arc<PublicKeys>,
    rng: ChaCha20Rng,
    /// The other Byzantine replicas of the run (accomplices).
    colluders: BTreeSet<ReplicaId>,
    behaviours: BTreeSet<Behaviour>,
    counters: BTreeMap<&'static str, u64>,
    /// The replica's view, as last reported.
    view: View,
    /// `in-the-dark`: the replicas left out (at most f, never this one).
    dark: BTreeSet<ReplicaId>,
    /// `withhold-certificate`: the one honest replica that gets the certificates.
    lit: Option<ReplicaId>,
    /// `withhold-certificate`: the first slot of this view it acts on (`in_lone_window`).
    lone_from: Option<Seq>,
    // Both are the [`lone_roles`] of the current view.
    /// `withhold-slot`: the first slot proposed after activation, and the last slot counted.
    withhold_first: Option<Seq>,
    withheld_last: Option<(View, Seq)>,
    /// `equivocate` as primary, per (view, seq).
    equivocations: BTreeMap<(View, Seq), Equivocation>,
    /// The view this replica last sent an NV-PROPOSE for and that proposal's k_max: the slots up
    /// to it are carried, pinned by the decision (honest replicas refuse another batch there),
    /// so `equivocate` leaves them alone.
    carried_until: Option<(View, Seq)>,
    /// `equivocate` as backup, per (view, seq).
    digests: BTreeMap<(View, Seq), SlotDigests>,
    /// `nv-equivocate`: VC-REQUESTs by target view and sender.
    view_changes: BTreeMap<View, BTreeMap<ReplicaId, Arc<ViewChange>>>,
    held: Vec<HeldNewView>,
    /// `nv-equivocate`: the NV-PROPOSE each replica was sent last, so that a STATE-TRANSFER
    /// (which carries the sender's NV-PROPOSE to a replica still in an older view) tells it
    /// the same story.
    told: BTreeMap<ReplicaId, Arc<NewView>>,
    /// `replay`: envelopes sent to each replica, newest last.
    sent: Vec<VecDeque<Envelope>>,
    /// `equivocate`: requests of this replica's earlier proposals, newest last.
    reserve: VecDeque<SignedRequest>,
    /// `hide-evidence`: the oldest-view evidence this replica's VC-REQUESTs carried per slot.
    remembered: BTreeMap<Seq, SlotEvidence>,
    next_false_failure: Option<Time>,
    next_replay: Option<Time>,
    next_repropose: Option<Time>,
}

/// A decoded outgoing message on its way through the behaviours.
struct Outgoing {
    to: ReplicaId,
    message: Message,
    changed: bool,
}

impl Hook {
    /// The hook of replica `secrets.id`, with every behaviour off.
    pub fn new(
        config: Config,
        secrets: ReplicaSecrets,
        public: Arc<PublicKeys>,
        byzantine: ByzantineConfig,
    ) -> Hook {
        let n = config.replica_count;
        let id = ReplicaId(u8::try_from(secrets.id).unwrap_or(u8::MAX));
        let rng = ChaCha20Rng::seed_from_u64(byzantine.seed);
        let colluders: BTreeSet<ReplicaId> = byzantine
            .colluders
            .iter()
            .filter(|&&replica| replica < n && replica != id.0)
            .map(|&replica| ReplicaId(replica))
            .collect();
        let (dark, lit) = lone_roles(n, config.f(), id, &colluders, View(0));
        Hook {
            id,
            secrets,
            public,
            rng,
            colluders,
            behaviours: BTreeSet::new(),
            counters: BTreeMap::new(),
            view: View(0),
            dark,
            lit,
            lone_from: None,
            withhold_first: None,
            withheld_last: None,
            equivocations: BTreeMap::new(),
            carried_until: None,
            digests: BTreeMap::new(),
            view_changes: BTreeMap::new(),
            held: Vec::new(),
            told: BTreeMap::new(),
            sent: vec![VecDeque::new(); usize::from(n)],
            reserve: VecDeque::new(),
            remembered: BTreeMap::new(),
            next_false_failure: None,
            next_replay: None,
            next_repropose: None,
            config,
        }
    }

    /// Replaces the behaviours switched on (none: behave correctly) at `now`.
    pub fn set_behaviours(&mut self, now: Time, behaviours: impl IntoIterator<Item = Behaviour>) {
        self.behaviours = behaviours.into_iter().collect();
        self.lone_from = None;
        self.withhold_first = None;
        self.withheld_last = None;
        self.next_false_failure =
            self.is_on(Behaviour::FalseFailure).then(|| now + FALSE_FAILURE_INTERVAL);
        self.next_replay = self.is_on(Behaviour::Replay).then(|| now + REPLAY_INTERVAL);
        self.next_repropose = self.is_on(Behaviour::RePropose).then(|| now + REPROPOSE_INTERVAL);
        if !self.is_on(Behaviour::NvEquivocate) {
            for held in &mut self.held {
                held.deadline = now;
            }
        }
    }

    /// The behaviours switched on.
    pub fn behaviours(&self) -> &BTreeSet<Behaviour> {
        &self.behaviours
    }

    /// Whether any behaviour is on.
    pub fn is_active(&self) -> bool {
        !self.behaviours.is_empty()
    }

    /// The replicas `in-the-dark` leaves out.
    pub fn dark(&self) -> &BTreeSet<ReplicaId> {
        &self.dark
    }

    /// How many times `behaviour` acted.
    pub fn acted(&self, behaviour: Behaviour) -> u64 {
        self.counter(behaviour.name())
    }

    /// A counter by its name without the `byzantine.` prefix (a behaviour's name, or one of
    /// `equivocate.skipped`, `equivocate.certified`, `equivocate.supported`,
    /// `nv-equivocate.unable`, `nv-equivocate.forged`).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// Every counter as `byzantine.<name>`, for the control status.
    pub fn counters(&self) -> BTreeMap<String, u64> {
        self.counters.iter().map(|(name, count)| (format!("byzantine.{name}"), *count)).collect()
    }

    /// When [`Hook::poll`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        let held = self.held.iter().map(|held| held.deadline).min();
        [self.next_false_failure, self.next_replay, self.next_repropose, held]
            .into_iter()
            .flatten()
            .min()
    }

    fn is_on(&self, behaviour: Behaviour) -> bool {
        self.behaviours.contains(&behaviour)
    }

    /// Whether `in-the-dark` is on, or implied: in PBFT `withhold-certificate` alone could never
    /// act (the honest backups' PREPAREs and COMMITs reach nf without the primary's), so it
    /// keeps the dark replicas out of the PRE-PREPAREs too, the form of the attack that does
    /// act within the budget (the lone executor).
    fn in_the_dark_on(&self) -> bool {
        self.is_on(Behaviour::InTheDark)
            || (self.is_on(Behaviour::WithholdCertificate)
                && self.config.protocol == Protocol::Pbft)
    }

    fn count(&mut self, name: &'static str) {
        *self.counters.entry(name).or_default() += 1;
    }

    fn others(&self) -> impl Iterator<Item = ReplicaId> + use<> {
        let id = self.id;
        (0..self.config.replica_count).map(ReplicaId).filter(move |&r| r != id)
    }

    /// The replicas of the run that are neither this one nor an accomplice.
    fn honest(&self) -> Vec<ReplicaId> {
        self.others().filter(|replica| !self.colluders.contains(replica)).collect()
    }

    /// The other Byzantine replicas of the run.
    pub fn colluders(&self) -> &BTreeSet<ReplicaId> {
        &self.colluders
    }

    // ----------------------------------------------------------------------------------------
    // Outbound.

    /// Passes one transmit of the core through the behaviours switched on; returns what to send
    /// instead. `view` is the replica's current view.
    pub fn outbound(&mut self, now: Time, view: View, transmit: Transmit) -> Vec<Transmit> {
        if view != self.view {
            (self.dark, self.lit) = lone_roles(
                self.config.replica_count,
                self.config.f(),
                self.id,
                &self.colluders,
                view,
            );
            self.lone_from = None;
        }
        self.view = view;
        if !self.is_active() {
            self.remember_sent(&transmit);
            return vec![transmit];
        }
        if self.is_on(Behaviour::Silent) {
            self.count(Behaviour::Silent.name());
            return Vec::new();
        }
        let transmits = match transmit {
            Transmit::Replica { to, envelope } => {
                let Ok(message) = decode(&envelope.payload) else {
                    return vec![Transmit::Replica { to, envelope }];
                };
                let mut extra = self.observe_own(&message);
                let items = self.rewrite(now, Outgoing { to, message, changed: false });
                let mut transmits: Vec<Transmit> = items
                    .into_iter()
                    .filter_map(|item| {
                        if item.changed {
                            self.seal(item.to, &item.message)
                        } else {
                            Some(Transmit::Replica { to: item.to, envelope: envelope.clone() })
                        }
                    })
                    .collect();
                transmits.append(&mut extra);
                transmits
            }
            Transmit::Client { to, inform } => {
                self.rewrite_inform(to, inform).into_iter().collect()
            }
        };
        let transmits: Vec<Transmit> =
            transmits.into_iter().map(|transmit| self.forge(transmit)).collect();
        for transmit in &transmits {
            self.remember_sent(transmit);
        }
        transmits
    }

    /// Applies the message-level behaviours to one outgoing message, in a fixed order.
    fn rewrite(&mut self, now: Time, item: Outgoing) -> Vec<Outgoing> {
        self.note_reproposal(&item.message);
        let Some(item) = self.withhold(item) else { return Vec::new() };
        let Some(item) = self.in_the_dark(item) else { return Vec::new() };
        let mut items = Vec::new();
        for item in self.equivocate(item) {
            let Some(item) = self.hold_new_view(now, item) else { continue };
            let item = self.new_view_in_state_transfer(item);
            let item = self.hide_evidence(item);
            let item = self.corrupt_digest(item);
            let item = self.corrupt_snapshot(item);
            let item = self.retag_view(item);
            items.push(self.mutate(item));
        }
        items
    }

    /// Records the core's own votes and VC-REQUESTs; returns supports owed to digests other
    /// replicas supported before the core voted (`equivocate` as a backup, PoE-MAC).
    fn observe_own(&mut self, message: &Message) -> Vec<Transmit> {
        match message {
            Message::Support(support) if self.is_on(Behaviour::Equivocate) => {
                let key = (support.view, support.seq);
                let slot = slot_entry(&mut self.digests, key);
                if !slot.supported.contains(&support.digest) {
                    slot.supported.push(support.digest);
                }
                let owed: Vec<Digest> =
                    slot.seen.iter().filter(|d| !slot.supported.contains(d)).copied().collect();
                owed.into_iter().flat_map(|digest| self.support_also(key, digest)).collect()
            }
            Message::ViewChange(request) if self.is_on(Behaviour::NvEquivocate) => {
                self.keep_view_change(request.clone());
                Vec::new()
            }
            Message::NewView(new_view)
                if self.is_on(Behaviour::Equivocate) || self.is_on(Behaviour::RePropose) =>
            {
                let decision = decide(&new_view.requests, self.config.protocol == Protocol::Pbft);
                let k_max = decision.slots.keys().next_back().copied().unwrap_or(decision.base());
                self.carried_until = Some((new_view.view, k_max));
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    fn withhold(&mut self, item: Outgoing) -> Option<Outgoing> {
        let Message::Propose(propose) = &item.message else { return Some(item) };
        if !self.is_on(Behaviour::WithholdSlot) {
            return Some(item);
        }
        let seq = propose.seq;
        let first = *self.withhold_first.get_or_insert(seq);
        let withheld = seq >= first && (seq.0 - first.0).is_multiple_of(WITHHOLD_EVERY);
        if !withheld {
            return Some(item);
        }
        let slot = (propose.view, seq);
        if self.withheld_last != Some(slot) {
            self.withheld_last = Some(slot);
            self.count(Behaviour::WithholdSlot.name());
        }
        None
    }

    /// The cap on the batches this replica's core proposes: [`LONE_BATCH_MAX`] while the lone
    /// executor plays (`in-the-dark` and `withhold-certificate`), so that the clients' requests
    /// that stall on the lone slots fill several of them and the rollback the view change owes
    /// the lone replica undoes several slots (their order, their at-most-once entries, a
    /// checkpoint among them), not one batch of every client's request.
    pub fn batch_limit(&self) -> Option<u32> {
        let lone = self.is_on(Behaviour::WithholdCertificate) && self.in_the_dark_on();
        lone.then_some(LONE_BATCH_MAX)
    }

    /// Whether `in-the-dark` and `withhold-certificate` act on `message`. Alone, each acts on
    /// every slot. Together (the lone executor) both act from a slot chosen at the first
    /// PROPOSE after switching on or entering a view: the next checkpoint slot (less
    /// [`LONE_LEAD`]), so that the slots only the lone replica executes hold a checkpoint: its
    /// stability rule (nf matching CHECKPOINTs, PROTOCOL §6) then decides whether the rollback
    /// the view change owes can still happen.
    fn in_lone_window(&mut self, message: &Message) -> bool {
        if !(self.is_on(Behaviour::WithholdCertificate) && self.in_the_dark_on()) {
            return true;
        }
        let seq = match message {
            Message::Propose(propose) => {
                let interval = self.config.checkpoint_interval.max(1);
                let next_checkpoint = (propose.seq.0 / interval + 1).saturating_mul(interval);
                let from = next_checkpoint.saturating_sub(LONE_LEAD).max(propose.seq.0);
                return propose.seq >= *self.lone_from.get_or_insert(Seq(from));
            }
            Message::Certify(certify) => certify.seq,
            Message::Support(support) => support.seq,
            Message::Commit(commit) => commit.seq,
            Message::Checkpoint(checkpoint) => checkpoint.seq,
            _ => return false,
        };
        self.lone_from.is_some_and(|from| seq >= from)
    }

    fn in_the_dark(&mut self, item: Outgoing) -> Option<Outgoing> {
        let item = self.withhold_in_state_transfer(item);
        let primary_message = matches!(item.message, Message::Propose(_) | Message::Certify(_));
        if !(primary_message || self.is_on(Behaviour::WithholdCertificate)) {
            return Some(item);
        }
        if !self.in_lone_window(&item.message) {
            return Some(item);
        }
        let kept_out = primary_message && self.in_the_dark_on() && self.dark.contains(&item.to);
        if kept_out {
            self.count(Behaviour::InTheDark.name());
            return None;
        }
        // The primary's own evidence: its CERTIFY (PoE-TS), its SUPPORT of its own proposal
        // (PoE-MAC; PBFT: its PREPARE and its COMMIT), and its CHECKPOINT votes.
        let primary = self.config.primary(self.view) == self.id;
        let evidence = match &item.message {
            Message::Certify(_) | Message::Checkpoint(_) => true,
            Message::Support(support) => support.view == self.view,
            Message::Commit(commit) => commit.view == self.view,
            _ => false,
        };
        let certificate_withheld = evidence
            && primary
            && self.is_on(Behaviour::WithholdCertificate)
            && !self.colluders.contains(&item.to)
            && Some(item.to) != self.lit;
        if certificate_withheld {
            self.count(Behaviour::WithholdCertificate.name());
            return None;
        }
        Some(item)
    }

    /// `withhold-certificate` with `in-the-dark` (the lone executor): the certified slots a
    /// STATE-TRANSFER of this replica carries are its evidence too, so one to an honest replica
    /// other than the lone one stops before the first slot of the lone window. Otherwise a
    /// replica that asks for state (after a restart, or being in the dark) would get from the
    /// attacker itself the certificate it withholds.
    fn withhold_in_state_transfer(&mut self, mut item: Outgoing) -> Outgoing {
        let Message::StateTransfer(transfer) = &mut item.message else { return item };
        let withholding = self.is_on(Behaviour::WithholdCertificate) && self.in_the_dark_on();
        let Some(from) = self.lone_from else { return item };
        if !withholding
            || self.colluders.contains(&item.to)
            || Some(item.to) == self.lit
            || self.config.primary(self.view) != self.id
            || transfer.tail.iter().all(|evidence| evidence.seq < from)
        {
            return item;
        }
        Arc::make_mut(transfer).tail.retain(|evidence| evidence.seq < from);
        self.count(Behaviour::WithholdCertificate.name());
        item.changed = true;
        item
    }

    /// `equivocate` as primary: the honest receivers of the slot's other side get the other
    /// batch and the primary's SUPPORT for it (PoE-MAC); they also get the first side's
    /// CERTIFY (PoE-TS), which a correct replica refuses (it names another digest than the
    /// proposal it accepted) and one that counts votes without their digest commits; accomplices
    /// get both proposals, so that they can support and share-sign both sides.
    fn equivocate(&mut self, mut item: Outgoing) -> Vec<Outgoing> {
        if !self.is_on(Behaviour::Equivocate) {
            return vec![item];
        }
        match &mut item.message {
            Message::Propose(propose) => {
                if self.config.primary(propose.view) != self.id {
                    return vec![item];
                }
                if self.is_carried(propose) {
                    return vec![item];
                }
                let key = (propose.view, propose.seq);
                if !self.equivocations.contains_key(&key) {
                    let equivocation = self.new_equivocation(propose);
                    insert_bounded(&mut self.equivocations, key, equivocation);
                }
                let Some(equivocation) = self.equivocations.get(&key) else { return vec![item] };
                let Some(alternative) = equivocation.alternative.as_ref() else {
                    return vec![item];
                };
                let batch = alternative.batch.clone();
                if self.colluders.contains(&item.to) {
                    let mut other = propose.clone();
                    other.batch = batch;
                    let to = item.to;
                    return vec![
                        item,
                        Outgoing { to, message: Message::Propose(other), changed: true },
                    ];
                }
                if !equivocation.others.contains(&item.to) {
                    return vec![item];
                }
                propose.batch = batch;
                item.changed = true;
                vec![item]
            }
            Message::Support(support) if support.replica == self.id => {
                let key = (support.view, support.seq);
                let Some(equivocation) = self.equivocations.get(&key) else { return vec![item] };
                if !equivocation.others.contains(&item.to) {
                    return vec![item];
                }
                let Some(alternative) = equivocation.alternative.as_ref() else {
                    return Vec::new();
                };
                let digest = alternative.digest;
                *support = self.sign_support(support.view, support.seq, digest);
                item.changed = true;
                vec![item]
            }
            // PBFT: the primary's COMMIT follows its PREPARE to the other side.
            Message::Commit(commit) if commit.replica == self.id => {
                let key = (commit.view, commit.seq);
                let Some(equivocation) = self.equivocations.get(&key) else { return vec![item] };
                if !equivocation.others.contains(&item.to) {
                    return vec![item];
                }
                let Some(alternative) = equivocation.alternative.as_ref() else {
                    return Vec::new();
                };
                commit.digest = alternative.digest;
                item.changed = true;
                vec![item]
            }
            _ => vec![item],
        }
    }

    /// Whether `propose` re-proposes a slot this replica's last NV-PROPOSE carried (pinned by
    /// the decision: honest replicas refuse another batch there).
    fn is_carried(&self, propose: &Propose) -> bool {
        self.carried_until.is_some_and(|(view, k_max)| view == propose.view && propose.seq <= k_max)
    }

    /// `re-propose` (without `equivocate`, which draws its own second batches): the first time
    /// this primary's PROPOSE of a slot goes out whose evidence `withhold-certificate` or
    /// `in-the-dark` keeps from some honest replicas, draws a second batch for that slot, for
    /// every honest replica but the lone one ([`Hook::repropose`] offers it).
    fn note_reproposal(&mut self, message: &Message) {
        let Message::Propose(propose) = message else { return };
        let withholding =
            self.is_on(Behaviour::WithholdCertificate) || self.is_on(Behaviour::InTheDark);
        if !self.is_on(Behaviour::RePropose)
            || self.is_on(Behaviour::Equivocate)
            || !withholding
            || self.config.primary(propose.view) != self.id
            || self.is_carried(propose)
        {
            return;
        }
        let key = (propose.view, propose.seq);
        if self.equivocations.contains_key(&key) || !self.in_lone_window(message) {
            return;
        }
        let batch = self.other_request_set(&propose.batch);
        self.keep_in_reserve(&propose.batch);
        let Some(batch) = batch else {
            self.count("re-propose.skipped");
            return;
        };
        let lit = self.lit;
        let others = self.honest().into_iter().filter(|replica| Some(*replica) != lit).collect();
        let alternative = Some(self.side(propose, batch));
        let equivocation = Equivocation { others, alternative, original: None };
        insert_bounded(&mut self.equivocations, key, equivocation);
    }

    /// Keeps `batch`'s requests, newest last, for second batches of single-request slots.
    fn keep_in_reserve(&mut self, batch: &[SignedRequest]) {
        for request in batch {
            if self.reserve.len() >= RESERVE_MAX {
                self.reserve.pop_front();
            }
            self.reserve.push_back(request.clone());
        }
    }

    /// Draws the other side of a slot: a seeded half of the honest replicas (at least one,
    /// never all while two or more are honest), and a batch with another request set: one
    /// request held back from it, or, for a single-request batch, a request of an earlier
    /// proposal added (so the two sides execute different requests and see different results).
    fn new_equivocation(&mut self, propose: &Propose) -> Equivocation {
        let mut receivers: Vec<ReplicaId> = self.honest();
        shuffle(&mut self.rng, &mut receivers);
        let size = (receivers.len() / 2).max(receivers.len().min(1));
        let others: BTreeSet<ReplicaId> = receivers.into_iter().take(size).collect();
        let alternative = self.other_request_set(&propose.batch);
        self.keep_in_reserve(&propose.batch);
        let alternative = alternative.map(|batch| self.side(propose, batch));
        let original = (alternative.is_some() && self.config.protocol == Protocol::PoeTs)
            .then(|| self.side(propose, propose.batch.clone()));
        self.count(match alternative {
            Some(_) => Behaviour::Equivocate.name(),
            None => "equivocate.skipped",
        });
        Equivocation { others, alternative, original }
    }

    /// One side of an equivocation of `propose`'s slot with `batch`; in PoE-TS with this
    /// replica's own share.
    fn side(&self, propose: &Propose, batch: Arc<[SignedRequest]>) -> Alternative {
        let digest = proposal_digest(propose.view, propose.seq, &batch_digest(&batch));
        let mut side = Alternative {
            batch,
            digest,
            prepared: None,
            shares: BTreeMap::new(),
            certified: false,
        };
        if self.config.protocol == Protocol::PoeTs {
            let prepared = PreparedMessage::new(&support_signing_bytes(&digest));
            let share = self.secrets.threshold_share.sign(&prepared);
            side.shares.insert(self.secrets.threshold_share.signer(), share);
            side.prepared = Some(prepared);
        }
        side
    }

    /// Another request set for `batch`: without one seeded request when it has two or more,
    /// else with an older request of the reserve added; `None` when neither is possible.
    fn other_request_set(&mut self, batch: &Arc<[SignedRequest]>) -> Option<Arc<[SignedRequest]>> {
        if batch.len() >= 2 {
            let mut requests = batch.to_vec();
            let held_back = self.rng.random_range(0..requests.len());
            requests.remove(held_back);
            return Some(requests.into());
        }
        let candidates: Vec<&SignedRequest> =
            self.reserve.iter().filter(|request| !batch.contains(request)).collect();
        if candidates.is_empty() {
            return None;
        }
        let extra = candidates[self.rng.random_range(0..candidates.len())].clone();
        let mut requests = batch.to_vec();
        requests.push(extra);
        Some(requests.into())
    }

    /// `hide-evidence`: the VC-REQUEST's evidence goes, slot by slot, either (when this
    /// replica sent an older view's certificate for the slot before) downgraded to that stale
    /// certificate, or omitted; re-signed with this replica's key, so the request is valid.
    fn hide_evidence(&mut self, mut item: Outgoing) -> Outgoing {
        let Message::ViewChange(request) = &mut item.message else { return item };
        if request.replica != self.id {
            return item;
        }
        for evidence in &request.evidence {
            let older =
                self.remembered.get(&evidence.seq).is_some_and(|kept| kept.view <= evidence.view);
            if !older {
                if self.remembered.len() >= EVIDENCE_REMEMBERED_MAX {
                    self.remembered.pop_first();
                }
                self.remembered.insert(evidence.seq, evidence.clone());
            }
        }
        if !self.is_on(Behaviour::HideEvidence) || request.evidence.is_empty() {
            return item;
        }
        let mut inner = (**request).clone();
        inner.evidence = inner
            .evidence
            .iter()
            .filter_map(|evidence| {
                self.remembered.get(&evidence.seq).filter(|kept| kept.view < evidence.view).cloned()
            })
            .collect();
        self.sign_view_change(&mut inner);
        *request = Arc::new(inner);
        // A lying new primary builds its NV-PROPOSEs from what it really sent.
        self.keep_view_change(request.clone());
        self.count(Behaviour::HideEvidence.name());
        item.changed = true;
        item
    }

    /// `nv-equivocate`: holds the core's NV-PROPOSE back until more than nf VC-REQUESTs are in
    /// or [`NEW_VIEW_HOLD`] passes.
    fn hold_new_view(&mut self, now: Time, item: Outgoing) -> Option<Outgoing> {
        let Message::NewView(new_view) = &item.message else { return Some(item) };
        if !self.is_on(Behaviour::NvEquivocate) {
            return Some(item);
        }
        let new_view = new_view.clone();
        for request in &new_view.requests {
            // This replica's own request stays as it sent it (`hide-evidence` may have
            // rewritten it), not as its core keeps it.
            let own = request.replica == self.id
                && self
                    .view_changes
                    .get(&request.target)
                    .is_some_and(|kept| kept.contains_key(&self.id));
            if !own {
                self.keep_view_change(request.clone());
            }
        }
        if let Some(held) = self.held.iter_mut().find(|held| held.original == new_view) {
            held.receivers.push(item.to);
            return None;
        }
        if self.held.len() >= NEW_VIEWS_HELD_MAX {
            // Never reached with one view change at a time; keep the bound anyway.
            return Some(item);
        }
        let deadline = now + NEW_VIEW_HOLD;
        self.held.push(HeldNewView { original: new_view, receivers: vec![item.to], deadline });
        None
    }

    fn corrupt_digest(&mut self, mut item: Outgoing) -> Outgoing {
        if !self.is_on(Behaviour::CorruptDigest) {
            return item;
        }
        // The wrong digest is a fixed function of the right one, so accomplices that corrupt
        // the same vote agree on it: f + 1 matching wrong checkpoints or supports.
        match &mut item.message {
            Message::Support(support) => {
                let digest = tamper::collusive(&support.digest);
                *support = self.sign_support(support.view, support.seq, digest);
            }
            Message::Commit(commit) => commit.digest = tamper::collusive(&commit.digest),
            Message::Checkpoint(checkpoint) => {
                checkpoint.state_digest = tamper::collusive(&checkpoint.state_digest);
                self.sign_checkpoint(checkpoint);
            }
            _ => return item,
        }
        self.count(Behaviour::CorruptDigest.name());
        item.changed = true;
        item
    }

    /// `corrupt-snapshot`: a state transfer keeps its real checkpoint certificate and carries a
    /// snapshot of another state (the receiver must check the snapshot against the certified
    /// state digest, PROTOCOL §6).
    fn corrupt_snapshot(&mut self, mut item: Outgoing) -> Outgoing {
        if !self.is_on(Behaviour::CorruptSnapshot) {
            return item;
        }
        let Message::StateTransfer(transfer) = &mut item.message else { return item };
        let Some((_, snapshot)) = &mut Arc::make_mut(transfer).checkpoint else { return item };
        tamper::corrupt_snapshot(snapshot);
        self.count(Behaviour::CorruptSnapshot.name());
        item.changed = true;
        item
    }

    fn retag_view(&mut self, mut item: Outgoing) -> Outgoing {
        let shift: i64 = match (self.is_on(Behaviour::StaleView), self.is_on(Behaviour::FutureView))
        {
            (true, false) => -1,
            (false, true) => 1,
            (true, true) => {
                if self.rng.random_bool(0.5) {
                    -1
                } else {
                    1
                }
            }
            (false, false) => return item,
        };
        let name =
            if shift < 0 { Behaviour::StaleView.name() } else { Behaviour::FutureView.name() };
        if self.shift_view(&mut item.message, shift) {
            self.count(name);
            item.changed = true;
        }
        item
    }

    /// Re-tags a message's view by `shift` (re-signing what this replica signs); false when it
    /// has no view or the view would go below 0.
    fn shift_view(&mut self, message: &mut Message, shift: i64) -> bool {
        let moved = |view: &mut View| match view.0.checked_add_signed(shift) {
            Some(shifted) => {
                view.0 = shifted;
                true
            }
            None => false,
        };
        match message {
            Message::Propose(propose) => moved(&mut propose.view),
            Message::Support(support) => moved(&mut support.view),
            Message::Certify(certify) => moved(&mut certify.view),
            Message::Commit(commit) => moved(&mut commit.view),
            Message::NewView(new_view) => {
                let mut inner = (**new_view).clone();
                let done = moved(&mut inner.view);
                *new_view = Arc::new(inner);
                done
            }
            Message::StateRequest(request) => moved(&mut request.view),
            Message::ViewChange(request) => {
                let mut inner = (**request).clone();
                let done = moved(&mut inner.target);
                self.sign_view_change(&mut inner);
                *request = Arc::new(inner);
                done
            }
            Message::Forward(_) | Message::Checkpoint(_) | Message::StateTransfer(_) => false,
        }
    }

    fn mutate(&mut self, mut item: Outgoing) -> Outgoing {
        if !self.is_on(Behaviour::Mutate) || !self.rng.random_bool(0.5) {
            return item;
        }
        if self.mutate_message(&mut item.message) {
            self.count(Behaviour::Mutate.name());
            item.changed = true;
        }
        item
    }

    /// One seeded small-scope edit of one field (ByzzFuzz), re-signed where this replica
    /// signs; false when the message has no field to mutate.
    fn mutate_message(&mut self, message: &mut Message) -> bool {
        let n = self.config.replica_count;
        let choice = self.rng.random_range(0..4u32);
        let rng = &mut self.rng;
        match message {
            Message::Propose(propose) => match choice {
                0 => tamper::nudge(rng, &mut propose.view.0),
                1 => tamper::nudge(rng, &mut propose.seq.0),
                _ => {
                    propose.batch = tamper::edit_batch(rng, &propose.batch);
                }
            },
            Message::Support(support) => {
                match choice {
                    0 => tamper::nudge(rng, &mut support.view.0),
                    1 => tamper::nudge(rng, &mut support.seq.0),
                    2 => support.replica = tamper::other_replica(rng, support.replica, n),
                    _ => {
                        let mut digest = support.digest;
                        tamper::flip_bit(rng, &mut digest.0);
                        let replica = support.replica;
                        *support = self.sign_support(support.view, support.seq, digest);
                        support.replica = replica;
                    }
                }
                return true;
            }
            Message::Certify(certify) => match choice {
                0 => tamper::nudge(rng, &mut certify.view.0),
                1 => tamper::nudge(rng, &mut certify.seq.0),
                _ => tamper::flip_bit(rng, &mut certify.digest.0),
            },
            Message::Commit(commit) => match choice {
                0 => tamper::nudge(rng, &mut commit.view.0),
                1 => tamper::nudge(rng, &mut commit.seq.0),
                2 => commit.replica = tamper::other_replica(rng, commit.replica, n),
                _ => tamper::flip_bit(rng, &mut commit.digest.0),
            },
            Message::Checkpoint(checkpoint) => {
                match choice {
                    0 => tamper::nudge(rng, &mut checkpoint.seq.0),
                    1 => tamper::flip_bit(rng, &mut checkpoint.state_digest.0),
                    2 => tamper::flip_bit(rng, &mut checkpoint.block_hash.0),
                    _ => checkpoint.replica = tamper::other_replica(rng, checkpoint.replica, n),
                }
                self.sign_checkpoint(checkpoint);
            }
            Message::ViewChange(request) => {
                let mut inner = (**request).clone();
                match choice {
                    0 | 1 => tamper::nudge(rng, &mut inner.target.0),
                    2 if !inner.evidence.is_empty() => {
                        let index = rng.random_range(0..inner.evidence.len());
                        inner.evidence.remove(index);
                    }
                    _ => inner.replica = tamper::other_replica(rng, inner.replica, n),
                }
                self.sign_view_change(&mut inner);
                *request = Arc::new(inner);
            }
            Message::NewView(new_view) => {
                let mut inner = (**new_view).clone();
                if choice < 2 || inner.requests.is_empty() {
                    tamper::nudge(rng, &mut inner.view.0);
                } else {
                    let index = rng.random_range(0..inner.requests.len());
                    inner.requests.remove(index);
                }
                *new_view = Arc::new(inner);
            }
            Message::StateRequest(request) => match choice {
                0 | 1 => tamper::nudge(rng, &mut request.view.0),
                _ => tamper::nudge(rng, &mut request.last_executed.0),
            },
            Message::Forward(_) | Message::StateTransfer(_) => return false,
        }
        true
    }

    fn rewrite_inform(&mut self, to: ClientId, inform: AuthenticatedInform) -> Option<Transmit> {
        let mut body = inform.inform.clone();
        let mut changed = false;
        if self.is_on(Behaviour::WrongResult) {
            body.result = tamper::wrong_result(&body.result);
            self.count(Behaviour::WrongResult.name());
            changed = true;
        }
        for (behaviour, shift) in [(Behaviour::StaleView, -1), (Behaviour::FutureView, 1)] {
            if self.is_on(behaviour)
                && let Some(view) = body.view.0.checked_add_signed(shift)
            {
                body.view = View(view);
                self.count(behaviour.name());
                changed = true;
            }
        }
        if self.is_on(Behaviour::Mutate) && self.rng.random_bool(0.5) {
            self.mutate_inform(&mut body);
            self.count(Behaviour::Mutate.name());
            changed = true;
        }
        if !changed {
            return Some(Transmit::Client { to, inform });
        }
        let key = self.secrets.client_macs.get(to.index())?;
        Some(Transmit::Client { to, inform: AuthenticatedInform::seal(body, key) })
    }

    fn mutate_inform(&mut self, inform: &mut Inform) {
        let rng = &mut self.rng;
        match rng.random_range(0..4u32) {
            0 => tamper::nudge(rng, &mut inform.view.0),
            1 => tamper::nudge(rng, &mut inform.seq.0),
            2 => tamper::nudge(rng, &mut inform.request.0),
            _ => inform.result = tamper::wrong_result(&inform.result),
        }
    }

    /// `forge`: breaks the authentication of a transmit: the signature, threshold share or
    /// group signature inside the message (re-sealed with a valid MAC), or the MAC itself.
    fn forge(&mut self, transmit: Transmit) -> Transmit {
        if !self.is_on(Behaviour::Forge) {
            return transmit;
        }
        self.count(Behaviour::Forge.name());
        match transmit {
            Transmit::Client { to, mut inform } => {
                tamper::flip_bit(&mut self.rng, &mut inform.mac.0);
                Transmit::Client { to, inform }
            }
            Transmit::Replica { to, mut envelope } => {
                let inner = self.rng.random_bool(0.5);
                if inner
                    && let Ok(mut message) = decode(&envelope.payload)
                    && tamper::forge_inner(&mut self.rng, &mut message)
                    && let Some(transmit) = self.seal(to, &message)
                {
                    return transmit;
                }
                tamper::flip_bit(&mut self.rng, &mut envelope.mac.0);
                Transmit::Replica { to, envelope }
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Inbound.

    /// Shows the hook an envelope from replica `from` before the core handles it; returns what
    /// the hook sends in response (none unless `equivocate` or `nv-equivocate` is on).
    pub fn inbound(&mut self, now: Time, from: ReplicaId, envelope: &Envelope) -> Vec<Transmit> {
        let equivocate = self.is_on(Behaviour::Equivocate);
        let nv_equivocate = self.is_on(Behaviour::NvEquivocate);
        let repropose = self.is_on(Behaviour::RePropose);
        let on = equivocate || nv_equivocate || repropose;
        if !on || self.is_on(Behaviour::Silent) || from == self.id {
            return Vec::new();
        }
        let Some(key) = self.secrets.replica_macs.get(from.index()) else { return Vec::new() };
        let Ok(message) = envelope.open(key, from, self.id) else { return Vec::new() };
        match message {
            Message::Propose(propose) if equivocate => self.seen_proposal(from, &propose),
            Message::Support(support) if (equivocate || repropose) && support.replica == from => {
                self.seen_support(&support, equivocate)
            }
            Message::ViewChange(request) if nv_equivocate && request.replica == from => {
                let bytes = ViewChange::signing_bytes(
                    request.target,
                    request.replica,
                    request.checkpoint.as_ref(),
                    &request.evidence,
                );
                let valid = self
                    .public
                    .replicas
                    .get(from.index())
                    .is_some_and(|key| key.verify(&bytes, &request.signature).is_ok());
                if !valid {
                    return Vec::new();
                }
                let target = request.target;
                self.keep_view_change(request);
                self.release_new_views(now, Some(target))
            }
            _ => Vec::new(),
        }
    }

    /// A Byzantine backup supports a second, conflicting proposal for a slot it already
    /// supported (the core refuses it).
    fn seen_proposal(&mut self, from: ReplicaId, propose: &Propose) -> Vec<Transmit> {
        if self.config.primary(propose.view) != from {
            return Vec::new();
        }
        let key = (propose.view, propose.seq);
        let digest = proposal_digest(propose.view, propose.seq, &batch_digest(&propose.batch));
        let slot = slot_entry(&mut self.digests, key);
        if slot.supported.is_empty() {
            // The core has not voted yet (its vote may wait for the store): the digest is
            // owed a support once it has (`observe_own`).
            if !slot.seen.contains(&digest) && slot.seen.len() < DIGESTS_PER_SLOT_MAX {
                slot.seen.push(digest);
            }
            return Vec::new();
        }
        if slot.supported.contains(&digest) {
            return Vec::new();
        }
        self.support_also(key, digest)
    }

    /// PoE-MAC backups support every digest they see supported in a slot (`equivocate`); an
    /// equivocating or re-proposing PoE-TS primary gathers the shares of its other side and
    /// certifies it.
    fn seen_support(&mut self, support: &Support, equivocate: bool) -> Vec<Transmit> {
        let key = (support.view, support.seq);
        if let SupportProof::Share(share) = &support.proof
            && self.equivocations.contains_key(&key)
        {
            return self.gather_share(key, support, *share);
        }
        if !equivocate || !self.config.protocol.signed_votes() {
            return Vec::new();
        }
        let slot = slot_entry(&mut self.digests, key);
        if slot.supported.is_empty() {
            if !slot.seen.contains(&support.digest) && slot.seen.len() < DIGESTS_PER_SLOT_MAX {
                slot.seen.push(support.digest);
            }
            return Vec::new();
        }
        if slot.supported.contains(&support.digest) {
            return Vec::new();
        }
        self.support_also(key, support.digest)
    }

    fn gather_share(
        &mut self,
        key: (View, Seq),
        support: &Support,
        share: BlsSignature,
    ) -> Vec<Transmit> {
        // As many shares as the group key takes (nf for a correct deal): the adversary uses
        // whatever the keys allow.
        let needed = self.public.threshold.threshold() as usize;
        let n = self.config.replica_count;
        let id = self.id;
        let Some(equivocation) = self.equivocations.get_mut(&key) else { return Vec::new() };
        let others = equivocation.others.clone();
        // The side the share is for, and who gets its certificate: the other side's honest
        // half, or everyone else (the first side and the accomplices).
        let (side, receivers): (&mut Alternative, Vec<ReplicaId>) =
            match (equivocation.alternative.as_mut(), equivocation.original.as_mut()) {
                (Some(alternative), _) if alternative.digest == support.digest => {
                    (alternative, others.iter().copied().collect())
                }
                (_, Some(original)) if original.digest == support.digest => {
                    let rest = (0..n).map(ReplicaId).filter(|r| *r != id && !others.contains(r));
                    (original, rest.collect())
                }
                _ => return Vec::new(),
            };
        if side.certified {
            return Vec::new();
        }
        let Some(prepared) = side.prepared.clone() else { return Vec::new() };
        side.shares.insert(u32::from(support.replica.0), share);
        if side.shares.len() < needed {
            return Vec::new();
        }
        let shares: Vec<(u32, BlsSignature)> =
            side.shares.iter().map(|(signer, share)| (*signer, *share)).collect();
        let Some(signature) =
            self.public.threshold.combine_optimistic(&prepared, &shares).signature
        else {
            return Vec::new();
        };
        side.certified = true;
        let certify =
            Message::Certify(Certify { view: key.0, seq: key.1, digest: side.digest, signature });
        self.count("equivocate.certified");
        receivers.into_iter().filter_map(|to| self.seal(to, &certify)).collect()
    }

    /// Signs a SUPPORT for `digest` in slot `key` and sends it: to the primary (PoE-TS) or to
    /// all (PoE-MAC).
    fn support_also(&mut self, key: (View, Seq), digest: Digest) -> Vec<Transmit> {
        let slot = slot_entry(&mut self.digests, key);
        if slot.supported.contains(&digest) || slot.supported.len() >= DIGESTS_PER_SLOT_MAX {
            return Vec::new();
        }
        slot.supported.push(digest);
        self.count(Behaviour::Equivocate.name());
        self.count("equivocate.supported");
        let message = Message::Support(self.sign_support(key.0, key.1, digest));
        match self.config.protocol {
            Protocol::PoeTs => {
                let primary = self.config.primary(key.0);
                if primary == self.id {
                    Vec::new()
                } else {
                    self.seal(primary, &message).into_iter().collect()
                }
            }
            Protocol::PoeMac => {
                let receivers: Vec<ReplicaId> = self.others().collect();
                receivers.into_iter().filter_map(|to| self.seal(to, &message)).collect()
            }
            Protocol::Pbft => {
                // An accomplice PREPAREs and COMMITs every side at once: it need not wait to
                // be prepared, and its COMMIT completes either side's commit quorum.
                let commit =
                    Message::Commit(Commit { view: key.0, seq: key.1, digest, replica: self.id });
                let receivers: Vec<ReplicaId> = self.others().collect();
                receivers
                    .into_iter()
                    .flat_map(|to| [self.seal(to, &message), self.seal(to, &commit)])
                    .flatten()
                    .collect()
            }
        }
    }

    fn keep_view_change(&mut self, request: Arc<ViewChange>) {
        if request.replica.0 >= self.config.replica_count || request.target < self.view {
            return;
        }
        let target = request.target;
        if !self.view_changes.contains_key(&target)
            && self.view_changes.len() >= VIEW_CHANGE_VIEWS_MAX
        {
            let lowest = self.view_changes.keys().next().copied();
            match lowest {
                Some(lowest) if lowest < target => {
                    self.view_changes.remove(&lowest);
                }
                _ => return,
            }
        }
        self.view_changes.entry(target).or_default().insert(request.replica, request);
        // Views below the current one are of no use any more (the current one is: its
        // NV-PROPOSE may still be held).
        let view = self.view;
        self.view_changes.retain(|target, _| *target >= view);
    }

    /// Releases held NV-PROPOSEs that are due (deadline passed, `nv-equivocate` off) or, for
    /// `ready`, that can now equivocate.
    fn release_new_views(&mut self, now: Time, ready: Option<View>) -> Vec<Transmit> {
        let nf = self.config.nf();
        let on = self.is_on(Behaviour::NvEquivocate);
        let mut transmits = Vec::new();
        let mut index = 0;
        while index < self.held.len() {
            let view = self.held[index].original.view;
            let collected = self.view_changes.get(&view).map_or(0, BTreeMap::len);
            let can = on && collected > nf;
            let due = now >= self.held[index].deadline || !on;
            if !(due || (can && ready == Some(view))) {
                index += 1;
                continue;
            }
            let held = self.held.remove(index);
            transmits.extend(self.send_new_views(held, can));
        }
        transmits
    }

    /// Sends a held NV-PROPOSE: the original to some receivers and, if `equivocate`, one built
    /// from another nf subset of the VC-REQUESTs to the others; when no subset decides
    /// differently, a forged one (`forged_new_view`).
    fn send_new_views(&mut self, mut held: HeldNewView, equivocate: bool) -> Vec<Transmit> {
        if self.is_on(Behaviour::NvEquivocate)
            && let Some(reordered) = self.stale_first(&held.original)
        {
            self.count("nv-equivocate.stale-first");
            held.original = Arc::new(reordered);
        }
        let original = Message::NewView(held.original.clone());
        let alternative = if equivocate { self.other_new_view(&held.original) } else { None };
        let alternative = match alternative {
            Some(alternative) => Some(alternative),
            None if self.is_on(Behaviour::NvEquivocate) => {
                self.count("nv-equivocate.unable");
                let forged = self.forged_new_view(&held.original);
                if forged.is_some() {
                    self.count("nv-equivocate.forged");
                }
                forged
            }
            None => None,
        };
        let Some(alternative) = alternative else {
            for &to in &held.receivers {
                self.told.insert(to, held.original.clone());
            }
            return held.receivers.iter().filter_map(|&to| self.seal(to, &original)).collect();
        };
        self.count(Behaviour::NvEquivocate.name());
        // Half of the honest receivers (at least one) get the other decision: those whose own
        // VC-REQUESTs reached furthest, who lose the most by it, but never the primary of the
        // view being left while another can take it (the view changed because of it: it is the
        // one most likely crashed or cut off, and a lie it never receives is wasted);
        // accomplices and the rest follow the primary's own.
        let mut honest: Vec<ReplicaId> =
            held.receivers.iter().copied().filter(|to| !self.colluders.contains(to)).collect();
        shuffle(&mut self.rng, &mut honest);
        let reach = |replica: &ReplicaId| {
            self.view_changes
                .get(&held.original.view)
                .and_then(|requests| requests.get(replica))
                .and_then(|request| request.evidence.last().map(|evidence| evidence.seq))
                .unwrap_or(Seq(0))
        };
        let left = self.config.primary(View(held.original.view.0.saturating_sub(1)));
        honest.sort_by_key(|replica| (*replica == left, std::cmp::Reverse(reach(replica))));
        let split: BTreeSet<ReplicaId> =
            honest.iter().copied().take((honest.len() / 2).max(1)).collect();
        let alternative = Arc::new(alternative);
        for &to in &held.receivers {
            let told = if split.contains(&to) { &alternative } else { &held.original };
            self.told.insert(to, told.clone());
        }
        let alternative = Message::NewView(alternative);
        held.receivers
            .iter()
            .filter_map(|&to| {
                let message = if split.contains(&to) { &alternative } else { &original };
                self.seal(to, message)
            })
            .collect()
    }

    /// `nv-equivocate`: a STATE-TRANSFER carrying this replica's NV-PROPOSE (to a replica
    /// still in an older view) carries nothing while that NV-PROPOSE is held, and afterwards
    /// the one its receiver was sent: the core would otherwise hand every replica that asks for
    /// state the honest NV-PROPOSE before the lie goes out.
    fn new_view_in_state_transfer(&mut self, mut item: Outgoing) -> Outgoing {
        if !self.is_on(Behaviour::NvEquivocate) {
            return item;
        }
        let Message::StateTransfer(transfer) = &mut item.message else { return item };
        let Some(carried) = &transfer.new_view else { return item };
        let held = self.held.iter().any(|held| held.original.view == carried.view);
        let replacement = if held {
            None
        } else {
            match self.told.get(&item.to) {
                Some(told) if told.view == carried.view && told != carried => Some(told.clone()),
                _ => return item,
            }
        };
        Arc::make_mut(transfer).new_view = replacement;
        self.count("nv-equivocate.state-transfer");
        item.changed = true;
        item
    }

    /// `nv-equivocate`: the NV-PROPOSE for `original`'s view, from the nf of the collected
    /// VC-REQUESTs (this replica's own as it sent it, `hide-evidence` downgrades included) and
    /// in the order, that list the most slots' older certificates before their newest one
    /// ([`order_sensitivity`]), the oldest-first order ([`oldest_first`]) at least: a correct
    /// decision depends on neither (PROTOCOL §5.3 step 3 takes each slot's highest view), one
    /// that keeps the first certificate it meets, or any other order-dependent rule, does.
    /// `None` when the original is already that NV-PROPOSE.
    fn stale_first(&self, original: &NewView) -> Option<NewView> {
        let size = original.requests.len();
        let collected: Vec<Arc<ViewChange>> = self
            .view_changes
            .get(&original.view)
            .map(|requests| requests.values().cloned().collect())
            .unwrap_or_default();
        let first = oldest_first(original.requests.clone());
        let mut best = (order_sensitivity(&first), first);
        for subset in subsets(&collected, size) {
            let ordered = oldest_first(subset);
            let score = order_sensitivity(&ordered);
            if score > best.0 {
                best = (score, ordered);
            }
        }
        let requests = best.1;
        (requests != original.requests).then_some(NewView { view: original.view, requests })
    }

    /// The NV-PROPOSE `original` with the evidence stripped from every VC-REQUEST it relays (its
    /// own re-signed, the others' signatures now broken): it decides nothing above the
    /// checkpoints, so a replica that accepts it without checking the VC-REQUESTs (PROTOCOL §5.3
    /// step 1) rolls back every slot the others carry. `None` when no VC-REQUEST had evidence.
    fn forged_new_view(&self, original: &NewView) -> Option<NewView> {
        let mut stripped = false;
        let requests = original
            .requests
            .iter()
            .map(|request| {
                if request.evidence.is_empty() {
                    return request.clone();
                }
                stripped = true;
                let mut inner = (**request).clone();
                inner.evidence.clear();
                if inner.replica == self.id {
                    self.sign_view_change(&mut inner);
                }
                Arc::new(inner)
            })
            .collect();
        stripped.then_some(NewView { view: original.view, requests })
    }

    /// An NV-PROPOSE for the same view from another nf subset of the collected VC-REQUESTs,
    /// chosen so that it decides differently from `original` (PROTOCOL §5.4's counterexample):
    /// the subset whose decision has the lowest k_max, else one that names another batch for
    /// some slot; `None` when every subset decides the same.
    fn other_new_view(&mut self, original: &NewView) -> Option<NewView> {
        let collected: Vec<Arc<ViewChange>> =
            self.view_changes.get(&original.view)?.values().cloned().collect();
        let nf = self.config.nf();
        if collected.len() <= nf || original.requests.len() != nf {
            return None;
        }
        let ours =
            decision_key(&decide(&original.requests, self.config.protocol == Protocol::Pbft));
        let mut best: Option<(SubsetRank, Vec<Arc<ViewChange>>)> = None;
        for subset in subsets(&collected, nf) {
            let theirs = decision_key(&decide(&subset, self.config.protocol == Protocol::Pbft));
            if theirs == ours {
                continue;
            }
            // Lower k_max first (slots the original keeps are rolled back), then any other
            // batch for a slot.
            let rank = (theirs.0, theirs.1 == ours.1);
            if best.as_ref().is_none_or(|(held, _)| rank < *held) {
                best = Some((rank, subset));
            }
        }
        let (_, requests) = best?;
        Some(NewView { view: original.view, requests })
    }

    // ----------------------------------------------------------------------------------------
    // Spontaneous sends.

    /// Sends what is due at `now`: a false VC-REQUEST for `view` + 1, replays of old envelopes,
    /// held NV-PROPOSEs. `view` is the replica's current view.
    pub fn poll(&mut self, now: Time, view: View) -> Vec<Transmit> {
        self.view = view;
        let mut transmits = self.release_new_views(now, None);
        if let Some(at) = self.next_false_failure
            && now >= at
        {
            self.next_false_failure = Some(now + FALSE_FAILURE_INTERVAL);
            transmits.extend(self.false_failure(view));
        }
        if let Some(at) = self.next_replay
            && now >= at
        {
            self.next_replay = Some(now + REPLAY_INTERVAL);
            transmits.extend(self.replay());
        }
        if let Some(at) = self.next_repropose
            && now >= at
        {
            self.next_repropose = Some(now + REPROPOSE_INTERVAL);
            transmits.extend(self.repropose(view));
        }
        if self.is_on(Behaviour::Silent) {
            return Vec::new();
        }
        transmits
    }

    /// A validly signed VC-REQUEST for `view` + 1 with no evidence, to every other replica.
    fn false_failure(&mut self, view: View) -> Vec<Transmit> {
        if !self.is_on(Behaviour::FalseFailure) {
            return Vec::new();
        }
        let mut request = ViewChange {
            target: view.next(),
            replica: self.id,
            checkpoint: None,
            evidence: Vec::new(),
            signature: crate::crypto::ed25519::Signature([0; 64]),
        };
        self.sign_view_change(&mut request);
        self.count(Behaviour::FalseFailure.name());
        let message = Message::ViewChange(Arc::new(request));
        let receivers: Vec<ReplicaId> = self.others().collect();
        receivers.into_iter().filter_map(|to| self.seal(to, &message)).collect()
    }

    /// `re-propose`, as the primary of `view`: the second batch of each of the oldest
    /// [`REPROPOSE_SLOTS_MAX`] slots of the view whose second batch is not certified yet, to
    /// every honest replica but the lone one, with this replica's vote for it (its SUPPORT in
    /// PoE-MAC; in PoE-TS it gathers the shares and certifies, [`Hook::gather_share`]). A
    /// replica that supported the first batch must refuse it, even after a crash.
    fn repropose(&mut self, view: View) -> Vec<Transmit> {
        if !self.is_on(Behaviour::RePropose) || self.config.primary(view) != self.id {
            return Vec::new();
        }
        let lit = self.lit;
        let receivers: Vec<ReplicaId> =
            self.honest().into_iter().filter(|replica| Some(*replica) != lit).collect();
        let slots: Vec<(Seq, Arc<[SignedRequest]>, Digest)> = self
            .equivocations
            .range((view, Seq(0))..=(view, Seq(u64::MAX)))
            .filter_map(|(&(_, seq), equivocation)| {
                let alternative = equivocation.alternative.as_ref()?;
                (!alternative.certified)
                    .then(|| (seq, alternative.batch.clone(), alternative.digest))
            })
            .take(REPROPOSE_SLOTS_MAX)
            .collect();
        let mut transmits = Vec::new();
        for (seq, batch, digest) in slots {
            let propose = Message::Propose(Propose { view, seq, batch });
            let support = self
                .config
                .protocol
                .signed_votes()
                .then(|| Message::Support(self.sign_support(view, seq, digest)));
            for &to in &receivers {
                transmits.extend(self.seal(to, &propose));
                transmits.extend(support.as_ref().and_then(|support| self.seal(to, support)));
                self.count(Behaviour::RePropose.name());
            }
        }
        transmits
    }

    /// One old envelope, drawn at random, to every replica that was sent any.
    fn replay(&mut self) -> Vec<Transmit> {
        if !self.is_on(Behaviour::Replay) {
            return Vec::new();
        }
        let mut transmits = Vec::new();
        for index in 0..self.sent.len() {
            let ring = &self.sent[index];
            if ring.is_empty() {
                continue;
            }
            // The older half of the ring: messages the receiver has long moved past.
            let position = self.rng.random_range(0..ring.len().div_ceil(2));
            let envelope = ring[position].clone();
            transmits.push(Transmit::Replica { to: ReplicaId(index as u8), envelope });
        }
        for _ in &transmits {
            self.count(Behaviour::Replay.name());
        }
        transmits
    }

    fn remember_sent(&mut self, transmit: &Transmit) {
        if let Transmit::Replica { to, envelope } = transmit
            && let Some(ring) = self.sent.get_mut(to.index())
        {
            if ring.len() >= REPLAY_RING_MAX {
                ring.pop_front();
            }
            ring.push_back(envelope.clone());
        }
    }

    // ----------------------------------------------------------------------------------------
    // Signing with this replica's own keys.

    /// Encodes and MACs `message` for `to` with this replica's key for the pair.
    /// None for a receiver outside the cluster (never asked for by the core).
    fn seal(&self, to: ReplicaId, message: &Message) -> Option<Transmit> {
        let key = self.secrets.replica_macs.get(to.index())?;
        Some(Transmit::Replica { to, envelope: Envelope::new(message, key, self.id, to) })
    }

    fn sign_support(&self, view: View, seq: Seq, digest: Digest) -> Support {
        let bytes = support_signing_bytes(&digest);
        let proof = match self.config.protocol {
            Protocol::PoeTs => SupportProof::Share(
                self.secrets.threshold_share.sign(&PreparedMessage::new(&bytes)),
            ),
            Protocol::PoeMac | Protocol::Pbft => {
                SupportProof::Signature(self.secrets.signing_key.sign(&bytes))
            }
        };
        Support { view, seq, digest, replica: self.id, proof }
    }

    fn sign_checkpoint(&self, checkpoint: &mut Checkpoint) {
        checkpoint.sign_with(&self.secrets.signing_key);
    }

    fn sign_view_change(&self, request: &mut ViewChange) {
        request.sign_with(&self.secrets.signing_key);
    }
}

/// The digests of slot `key`, created if missing; the oldest slot is forgotten beyond
/// [`SLOTS_TRACKED_MAX`].
fn slot_entry(
    digests: &mut BTreeMap<(View, Seq), SlotDigests>,
    key: (View, Seq),
) -> &mut SlotDigests {
    if !digests.contains_key(&key) {
        insert_bounded(digests, key, SlotDigests::default());
    }
    digests.entry(key).or_default()
}

/// Inserts into a map of at most [`SLOTS_TRACKED_MAX`] slots, forgetting the oldest.
fn insert_bounded<T>(map: &mut BTreeMap<(View, Seq), T>, key: (View, Seq), value: T) {
    while map.len() >= SLOTS_TRACKED_MAX {
        map.pop_first();
    }
    map.insert(key, value);
}

/// Fisher–Yates with the hook's generator.
/// The roles a Byzantine primary `id` of `view` gives the honest replicas (the replicas that are
/// neither `id` nor in `colluders`) for `in-the-dark` and `withhold-certificate`: the f honest
/// replicas whose turn as primary comes first (the next view's primary first: it must then
/// build the view change from other replicas' evidence) are left in the dark, and the honest
/// replica whose turn comes last is the *lone* one that gets the certificates. With both on,
/// exactly nf replicas vote for each slot and the lone replica alone among the honest ones
/// commits and executes it; a view change that does not wait for it must roll it back
/// (PROTOCOL §5.3 steps 5–6), which is what the harness's network then arranges by delaying the
/// lone replica's messages. A pure function, so that the harness computes the same roles.
pub fn lone_roles(
    replica_count: u8,
    f: usize,
    id: ReplicaId,
    colluders: &BTreeSet<ReplicaId>,
    view: View,
) -> (BTreeSet<ReplicaId>, Option<ReplicaId>) {
    let n = u64::from(replica_count.max(1));
    let next = (view.0 % n + 1) % n;
    let mut honest: Vec<ReplicaId> = (0..replica_count)
        .map(ReplicaId)
        .filter(|replica| *replica != id && !colluders.contains(replica))
        .collect();
    honest.sort_by_key(|replica| (u64::from(replica.0) + n - next) % n);
    let lit = honest.pop();
    (honest.into_iter().take(f).collect(), lit)
}

fn shuffle<T>(rng: &mut ChaCha20Rng, items: &mut [T]) {
    for index in (1..items.len()).rev() {
        let other = rng.random_range(0..=index);
        items.swap(index, other);
    }
}

/// How far an alternative decision is from the original: its k_max, then whether it picks the
/// same certificate views (lower is further).
type SubsetRank = (u64, bool);

/// What a decision fixes: k_max and, per slot, the view of the chosen certificate (within a
/// view, certificates of one slot name one batch; hashing every batch of every subset's
/// decision would cost more than the view change).
fn decision_key(decision: &Decision) -> (u64, Vec<(Seq, View)>) {
    let k_max = decision.slots.keys().next_back().copied().unwrap_or(decision.base());
    let slots = decision.slots.iter().map(|(seq, evidence)| (*seq, evidence.view)).collect();
    (k_max.0, slots)
}

/// The subsets of `items` of `size` elements, in a fixed order: every one while there are at
/// most [`SUBSETS_MAX`], else the first ones.
fn subsets<T: Clone>(items: &[T], size: usize) -> Vec<Vec<T>> {
    let mut subsets = Vec::new();
    let mut chosen: Vec<usize> = (0..size).collect();
    if size == 0 || size > items.len() {
        return subsets;
    }
    // Bounded by SUBSETS_MAX.
    while subsets.len() < SUBSETS_MAX {
        subsets.push(chosen.iter().map(|&index| items[index].clone()).collect());
        // The next combination in lexicographic order.
        let Some(position) =
            (0..size).rev().find(|&position| chosen[position] < items.len() - size + position)
        else {
            break;
        };
        chosen[position] += 1;
        for next in position + 1..size {
            chosen[next] = chosen[next - 1] + 1;
        }
    }
    subsets
}

/// `requests` reordered so that those presenting the oldest certificates come first.
fn oldest_first(mut requests: Vec<Arc<ViewChange>>) -> Vec<Arc<ViewChange>> {
    let oldest = |request: &Arc<ViewChange>| {
        request.evidence.iter().map(|evidence| evidence.view).min().unwrap_or(View(u64::MAX))
    };
    requests.sort_by_key(oldest);
    requests
}

/// How many slots above the decided checkpoint an NV-PROPOSE of `requests`, in that order,
/// lists a certificate for before the newest one for the slot: the slots a decision that
/// depends on the order would get wrong.
fn order_sensitivity(requests: &[Arc<ViewChange>]) -> usize {
    let base = decide(requests, false).base();
    let mut first: BTreeMap<Seq, View> = BTreeMap::new();
    let mut newest: BTreeMap<Seq, View> = BTreeMap::new();
    for evidence in requests.iter().flat_map(|request| &request.evidence) {
        if evidence.seq <= base {
            continue;
        }
        first.entry(evidence.seq).or_insert(evidence.view);
        let view = newest.entry(evidence.seq).or_insert(evidence.view);
        *view = (*view).max(evidence.view);
    }
    first.iter().filter(|(seq, view)| newest.get(seq).is_some_and(|newest| newest > view)).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::Certificate;
    use crate::crypto::ed25519::Signature;

    /// A VC-REQUEST for view 3 whose evidence has certificates of `views` (unsigned: the order
    /// is all that is looked at).
    fn request(replica: u8, views: &[u64]) -> Arc<ViewChange> {
        let evidence = views
            .iter()
            .enumerate()
            .map(|(index, &view)| SlotEvidence {
                view: View(view),
                seq: Seq(index as u64 + 1),
                batch: Arc::from(Vec::new()),
                certificate: Certificate::Supports(Vec::new()),
            })
            .collect();
        Arc::new(ViewChange {
            target: View(3),
            replica: ReplicaId(replica),
            checkpoint: None,
            evidence,
            signature: Signature([0; 64]),
        })
    }

    #[test]
    fn oldest_first_lists_the_oldest_certificates_first() {
        let requests = vec![request(3, &[2, 2]), request(0, &[1, 1]), request(1, &[])];
        let order: Vec<u8> =
            oldest_first(requests).iter().map(|request| request.replica.0).collect();
        assert_eq!(order, [0, 3, 1]);
    }

    #[test]
    fn order_sensitivity_counts_the_slots_whose_first_certificate_is_not_the_newest() {
        let newer = request(3, &[2, 2]);
        let older = request(0, &[1, 1]);
        let none = request(1, &[]);
        assert_eq!(order_sensitivity(&[older.clone(), newer.clone(), none.clone()]), 2);
        assert_eq!(order_sensitivity(&[newer.clone(), older.clone(), none.clone()]), 0);
        assert_eq!(order_sensitivity(&[none, newer]), 0);
    }
}
