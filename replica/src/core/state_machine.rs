//! The replicated service: a deterministic key-value store and the at-most-once table, with an
//! undo log so that speculative execution can be rolled back exactly.
//!
//! # Semantics
//!
//! Operations follow [`history::Operation`]'s documentation. A request executes only if its id
//! is above the client's last executed request id; otherwise it is skipped (result `None`) and
//! the state does not change. This table (each client's last executed request id, and its
//! result for re-sending) is part of the state: it is undone by rollback, and the digest covers
//! each client's last executed request id (the result follows from executing it).
//!
//! # State digest
//!
//! After slot k the digest is `H("ordeal/state/v1", k, S_kv, S_clients)` where
//! - `S_kv` = Σ over present keys of `H("ordeal/kv/v1", key, value)`, and
//! - `S_clients` = Σ over clients with an executed request of `H("ordeal/client/v1", client,
//!   request)`,
//!
//! sums taken modulo 2^256 with each digest read as a little-endian integer, `H` being SHA-256
//! over the domain tag and the fields as [`Hasher`] encodes them (byte strings, the tag
//! included, length-prefixed with a u64 LE, integers as u64 LE, an i64 value as its two's
//! complement; `history::ledger` documents the whole layout). The sums are updated incrementally,
//! so computing the digest after every slot costs O(keys touched), not O(store).

use std::collections::{BTreeMap, VecDeque};

use history::{OpResult, Operation};

use super::message::RequestBody;
use super::types::{ClientId, Digest, RequestId, Seq, View};
use crate::crypto::hash::Hasher;

/// A client's last executed request and its result: the reply cache for retransmissions.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClientEntry {
    /// The request id.
    pub request: RequestId,
    /// The view of the execution.
    pub view: View,
    /// The slot it executed in.
    pub seq: Seq,
    /// Its result.
    pub result: OpResult,
}

/// A copy of the state after a slot: what a state transfer carries and a stable checkpoint
/// keeps. Its digest is the state digest (the replies' views and results are not covered: they
/// only serve retransmissions).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// The slot.
    pub seq: Seq,
    /// Every present key.
    pub store: BTreeMap<String, i64>,
    /// Each client's last executed request.
    pub clients: BTreeMap<ClientId, ClientEntry>,
}

impl Snapshot {
    /// The state digest of this snapshot.
    pub fn digest(&self) -> Digest {
        StateMachine::from_snapshot(self).digest()
    }
}

/// A rollback asked for a slot the undo log no longer (or never) covered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot undo to seq {target}: the undo log covers seqs above {oldest}, last executed {last}"
)]
pub struct UndoError {
    /// The slot asked for.
    pub target: Seq,
    /// The undo log reaches back to (exclusive) this slot.
    pub oldest: Seq,
    /// The last executed slot.
    pub last: Seq,
}

/// The store, the at-most-once table and the undo log.
#[derive(Debug, Clone)]
pub struct StateMachine {
    store: BTreeMap<String, i64>,
    clients: BTreeMap<ClientId, ClientEntry>,
    store_sum: Sum256,
    clients_sum: Sum256,
    last_seq: Seq,
    digest: Digest,
    undo: VecDeque<SlotUndo>,
}

#[derive(Debug, Clone)]
struct SlotUndo {
    seq: Seq,
    digest_before: Digest,
    /// In execution order; undone in reverse.
    records: Vec<UndoRecord>,
}

#[derive(Debug, Clone)]
enum UndoRecord {
    Key { key: String, previous: Option<i64> },
    Client { client: ClientId, previous: Option<ClientEntry> },
}

impl Default for StateMachine {
    fn default() -> StateMachine {
        StateMachine::new()
    }
}

impl StateMachine {
    /// The empty store at slot 0.
    pub fn new() -> StateMachine {
        StateMachine::with_genesis(&BTreeMap::new())
    }

    /// The store holding `genesis` at slot 0.
    pub fn with_genesis(genesis: &BTreeMap<String, i64>) -> StateMachine {
        let mut store_sum = Sum256::ZERO;
        for (key, value) in genesis {
            store_sum.add(&kv_element(key, *value));
        }
        let clients_sum = Sum256::ZERO;
        StateMachine {
            store: genesis.clone(),
            clients: BTreeMap::new(),
            store_sum,
            clients_sum,
            last_seq: Seq(0),
            digest: state_digest(Seq(0), &store_sum, &clients_sum),
            undo: VecDeque::new(),
        }
    }

    /// The state exactly as `snapshot` holds it, with an empty undo log.
    pub fn from_snapshot(snapshot: &Snapshot) -> StateMachine {
        let mut machine = StateMachine::with_genesis(&snapshot.store);
        for (client, entry) in &snapshot.clients {
            machine.set_client(*client, entry.clone());
        }
        machine.last_seq = snapshot.seq;
        machine.digest = state_digest(snapshot.seq, &machine.store_sum, &machine.clients_sum);
        machine
    }

    /// A copy of the current state.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot { seq: self.last_seq, store: self.store.clone(), clients: self.clients.clone() }
    }

    /// Marks the reply cached for `client`'s `request`, executed at `seq`, as certified in
    /// `view` (the slot was re-certified after a view change) and returns the reply; `None`
    /// when the cache holds another request or slot. The digest does not cover the view.
    pub fn retag(
        &mut self,
        client: ClientId,
        request: RequestId,
        seq: Seq,
        view: View,
    ) -> Option<OpResult> {
        let entry = self.clients.get_mut(&client)?;
        if entry.request != request || entry.seq != seq {
            return None;
        }
        entry.view = view;
        Some(entry.result.clone())
    }

    /// The last executed slot.
    pub fn last_seq(&self) -> Seq {
        self.last_seq
    }

    /// The digest of the state after [`StateMachine::last_seq`].
    pub fn digest(&self) -> Digest {
        self.digest
    }

    /// A key's value.
    pub fn get(&self, key: &str) -> Option<i64> {
        self.store.get(key).copied()
    }

    /// A client's last executed request.
    pub fn client_entry(&self, client: ClientId) -> Option<&ClientEntry> {
        self.clients.get(&client)
    }

    /// The number of slots the undo log holds (bounded by the stable checkpoint: records up to
    /// it are discarded).
    pub fn undo_len(&self) -> usize {
        self.undo.len()
    }

    /// The oldest slot the undo log can return to.
    pub fn undo_floor(&self) -> Seq {
        self.undo.front().map_or(self.last_seq, |slot| Seq(slot.seq.0 - 1))
    }

    /// Executes the batch of slot `seq` (which must be `last_seq + 1`) under `view`; one result
    /// per request, `None` for a request the at-most-once table skipped.
    ///
    /// # Panics
    ///
    /// If `seq` is not the next slot: the caller executes strictly in order.
    pub fn execute<'a>(
        &mut self,
        seq: Seq,
        view: View,
        requests: impl IntoIterator<Item = &'a RequestBody>,
    ) -> Vec<Option<OpResult>> {
        assert_eq!(seq, self.last_seq.next(), "execution is in sequence order");
        let mut undo = SlotUndo { seq, digest_before: self.digest, records: Vec::new() };
        let mut results = Vec::new();
        for body in requests {
            let fresh =
                self.clients.get(&body.client).is_none_or(|entry| entry.request < body.request);
            if !fresh {
                results.push(None);
                continue;
            }
            let result = self.apply(&body.op, &mut undo.records);
            let entry = ClientEntry { request: body.request, view, seq, result: result.clone() };
            let previous = self.set_client(body.client, entry);
            undo.records.push(UndoRecord::Client { client: body.client, previous });
            results.push(Some(result));
        }
        self.last_seq = seq;
        self.digest = state_digest(seq, &self.store_sum, &self.clients_sum);
        self.undo.push_back(undo);
        results
    }

    /// Undoes every slot above `target`, the highest first, restoring the store, the
    /// at-most-once table and the digest exactly as they were after `target`.
    ///
    /// # Errors
    ///
    /// [`UndoError`] when `target` is above the last executed slot or below the undo log's
    /// reach; nothing is undone then.
    pub fn undo_to(&mut self, target: Seq) -> Result<(), UndoError> {
        if target > self.last_seq || target < self.undo_floor() {
            return Err(UndoError { target, oldest: self.undo_floor(), last: self.last_seq });
        }
        while self.last_seq > target {
            let slot = self.undo.pop_back().expect("undo log covers every slot above its floor");
            assert_eq!(slot.seq, self.last_seq);
            for record in slot.records.into_iter().rev() {
                match record {
                    UndoRecord::Key { key, previous } => {
                        self.set_key(key, previous);
                    }
                    UndoRecord::Client { client, previous } => {
                        self.restore_client(client, previous);
                    }
                }
            }
            self.last_seq = Seq(slot.seq.0 - 1);
            self.digest = state_digest(self.last_seq, &self.store_sum, &self.clients_sum);
            // Pair the incremental digest with the one recorded before the slot executed.
            assert_eq!(self.digest, slot.digest_before, "undo restores the digest exactly");
        }
        Ok(())
    }

    /// A planted rollback bug ([`crate::planted`]): undoes every slot above `target` as
    /// `mode` gets it wrong, without the exactness assertions of [`StateMachine::undo_to`]
    /// (the state it leaves is not the kept prefix's; the digest is computed from it).
    ///
    /// # Errors
    ///
    /// As [`StateMachine::undo_to`].
    #[cfg(feature = "planted-bugs")]
    pub(crate) fn planted_undo_to(
        &mut self,
        target: Seq,
        mode: PlantedUndo,
    ) -> Result<(), UndoError> {
        if target > self.last_seq || target < self.undo_floor() {
            return Err(UndoError { target, oldest: self.undo_floor(), last: self.last_seq });
        }
        let kept = self.undo.len() - (self.last_seq.0 - target.0) as usize;
        let mut undone: Vec<SlotUndo> = self.undo.drain(kept..).collect();
        if mode == PlantedUndo::KeepClients {
            // Newest first, as it should be; only the table is left alone.
            undone.reverse();
        }
        for slot in undone {
            for record in slot.records.into_iter().rev() {
                match record {
                    UndoRecord::Key { key, previous } => {
                        self.set_key(key, previous);
                    }
                    UndoRecord::Client { client, previous } => {
                        if mode != PlantedUndo::KeepClients {
                            self.restore_client(client, previous);
                        }
                    }
                }
            }
        }
        self.last_seq = target;
        self.digest = state_digest(self.last_seq, &self.store_sum, &self.clients_sum);
        Ok(())
    }

    /// Forgets the undo information of slots up to `seq` (they can never be rolled back, for
    /// example because a stable checkpoint covers them).
    pub fn discard_undo_through(&mut self, seq: Seq) {
        while self.undo.front().is_some_and(|slot| slot.seq <= seq) {
            self.undo.pop_front();
        }
    }

    fn apply(&mut self, op: &Operation, undo: &mut Vec<UndoRecord>) -> OpResult {
        match op {
            Operation::Read { key } => OpResult::Read { value: self.get(key) },
            Operation::Write { key, value } => {
                self.write(key, *value, undo);
                OpResult::Written
            }
            Operation::Cas { key, from, to } => {
                let swapped = self.get(key) == Some(*from);
                if swapped {
                    self.write(key, *to, undo);
                }
                OpResult::Cas { swapped }
            }
            Operation::Transfer { from, to, amount } => {
                let source = self.get(from).unwrap_or(0);
                let target = self.get(to).unwrap_or(0);
                let done = *amount > 0 && from != to && source >= *amount;
                let credited = target.checked_add(*amount);
                match credited {
                    Some(credited) if done => {
                        self.write(from, source - amount, undo);
                        self.write(to, credited, undo);
                        OpResult::Transfer { done: true }
                    }
                    _ => OpResult::Transfer { done: false },
                }
            }
            Operation::ReadAll { keys } => {
                OpResult::ReadAll { values: keys.iter().map(|key| self.get(key)).collect() }
            }
        }
    }

    fn write(&mut self, key: &str, value: i64, undo: &mut Vec<UndoRecord>) {
        let previous = self.set_key(key.to_owned(), Some(value));
        undo.push(UndoRecord::Key { key: key.to_owned(), previous });
    }

    /// Sets or removes a key, keeping the digest sum current; returns the previous value.
    fn set_key(&mut self, key: String, value: Option<i64>) -> Option<i64> {
        let previous = match value {
            Some(value) => {
                self.store_sum.add(&kv_element(&key, value));
                self.store.insert(key.clone(), value)
            }
            None => self.store.remove(&key),
        };
        if let Some(previous) = previous {
            self.store_sum.sub(&kv_element(&key, previous));
        }
        previous
    }

    fn set_client(&mut self, client: ClientId, entry: ClientEntry) -> Option<ClientEntry> {
        self.clients_sum.add(&client_element(client, entry.request));
        let previous = self.clients.insert(client, entry);
        if let Some(previous) = &previous {
            self.clients_sum.sub(&client_element(client, previous.request));
        }
        previous
    }

    fn restore_client(&mut self, client: ClientId, previous: Option<ClientEntry>) {
        let current = match previous {
            Some(entry) => {
                self.clients_sum.add(&client_element(client, entry.request));
                self.clients.insert(client, entry)
            }
            None => self.clients.remove(&client),
        };
        if let Some(current) = current {
            self.clients_sum.sub(&client_element(client, current.request));
        }
    }
}

/// How a planted rollback bug undoes slots ([`StateMachine::planted_undo_to`]).
#[cfg(feature = "planted-bugs")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PlantedUndo {
    /// `dedup-not-restored`: newest first, the store only; the at-most-once table keeps the
    /// undone requests.
    KeepClients,
    /// `undo-forward-order`: store and table, oldest slot first.
    ForwardOrder,
}

fn state_digest(seq: Seq, store_sum: &Sum256, clients_sum: &Sum256) -> Digest {
    Hasher::new(b"ordeal/state/v1")
        .u64(seq.0)
        .digest(&store_sum.to_digest())
        .digest(&clients_sum.to_digest())
        .finish()
}

fn kv_element(key: &str, value: i64) -> Digest {
    Hasher::new(b"ordeal/kv/v1").bytes(key.as_bytes()).u64(value as u64).finish()
}

fn client_element(client: ClientId, request: RequestId) -> Digest {
    Hasher::new(b"ordeal/client/v1").u64(u64::from(client.0)).u64(request.0).finish()
}

/// A 256-bit integer modulo 2^256 (four little-endian u64 limbs): an incremental multiset
/// hash (AdHash) of the state's elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Sum256([u64; 4]);

impl Sum256 {
    const ZERO: Sum256 = Sum256([0; 4]);

    fn limbs(digest: &Digest) -> [u64; 4] {
        let mut limbs = [0u64; 4];
        for (limb, chunk) in limbs.iter_mut().zip(digest.0.chunks_exact(8)) {
            *limb = u64::from_le_bytes(chunk.try_into().expect("8-byte chunk"));
        }
        limbs
    }

    fn add(&mut self, digest: &Digest) {
        let mut carry = false;
        for (limb, other) in self.0.iter_mut().zip(Sum256::limbs(digest)) {
            let (sum, overflow_a) = limb.overflowing_add(other);
            let (sum, overflow_b) = sum.overflowing_add(u64::from(carry));
            *limb = sum;
            carry = overflow_a || overflow_b;
        }
    }

    fn sub(&mut self, digest: &Digest) {
        let mut borrow = false;
        for (limb, other) in self.0.iter_mut().zip(Sum256::limbs(digest)) {
            let (difference, underflow_a) = limb.overflowing_sub(other);
            let (difference, underflow_b) = difference.overflowing_sub(u64::from(borrow));
            *limb = difference;
            borrow = underflow_a || underflow_b;
        }
    }

    fn to_digest(self) -> Digest {
        let mut bytes = [0u8; 32];
        for (chunk, limb) in bytes.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        Digest(bytes)
    }
}
