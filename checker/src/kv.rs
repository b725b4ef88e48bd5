//! The checker's own model of the replicated store, used to replay ledgers: the key-value
//! operations as `history::kv` documents them, the at-most-once table, the state digest, and
//! undo for rollbacks.
//!
//! A request executes only if its id is above its client's last executed one (otherwise it is
//! skipped: result `None`). A transfer also needs the credited balance not to overflow. The
//! state digest after slot k is `H("ordeal/state/v1", k, S_kv, S_clients)` with `S_kv` the
//! [`Sum256`] of `H("ordeal/kv/v1", key, value)` over present keys and `S_clients` that of
//! `H("ordeal/client/v1", client, last request)` over clients.

use std::collections::BTreeMap;

use history::{Digest, OpResult, Operation};

use crate::digest::{Hasher, Sum256};

/// The store at some slot, with undo information for the slots above the undo floor.
#[derive(Debug, Clone)]
pub struct Store {
    values: BTreeMap<String, i64>,
    clients: BTreeMap<u32, u64>,
    values_sum: Sum256,
    clients_sum: Sum256,
    seq: u64,
    /// Per executed slot above the floor, what it changed (to undo it).
    undo: Vec<(u64, Vec<Undo>)>,
}

#[derive(Debug, Clone)]
enum Undo {
    Value(String, Option<i64>),
    Client(u32, Option<u64>),
}

/// A rollback the model cannot perform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot undo to seq {target}: executed up to {seq}, undo kept down to {floor}")]
pub struct UndoError {
    /// The requested slot.
    pub target: u64,
    /// The last executed slot.
    pub seq: u64,
    /// The lowest slot the model can return to.
    pub floor: u64,
}

impl Store {
    /// The store before slot 1, holding `genesis`.
    pub fn with_genesis(genesis: &BTreeMap<String, i64>) -> Store {
        let mut values_sum = Sum256::default();
        for (key, value) in genesis {
            values_sum.add(&value_element(key, *value));
        }
        Store {
            values: genesis.clone(),
            clients: BTreeMap::new(),
            values_sum,
            clients_sum: Sum256::default(),
            seq: 0,
            undo: Vec::new(),
        }
    }

    /// The store exactly as a snapshot at `seq` holds it (a state transfer), with no undo.
    pub fn from_snapshot(
        seq: u64,
        values: &BTreeMap<String, i64>,
        clients: &[(u32, u64)],
    ) -> Store {
        let mut store = Store::with_genesis(values);
        for (client, request) in clients {
            store.set_client(*client, Some(*request));
        }
        store.seq = seq;
        store
    }

    /// The store and the at-most-once table (each client's last executed request, by client),
    /// as a state transfer carries them.
    pub fn snapshot(&self) -> (BTreeMap<String, i64>, Vec<(u32, u64)>) {
        let clients = self.clients.iter().map(|(client, request)| (*client, *request)).collect();
        (self.values.clone(), clients)
    }

    /// The last executed slot.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The state digest.
    pub fn digest(&self) -> Digest {
        Hasher::new(b"ordeal/state/v1")
            .u64(self.seq)
            .digest(&self.values_sum.to_digest())
            .digest(&self.clients_sum.to_digest())
            .finish()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<i64> {
        self.values.get(key).copied()
    }

    /// Executes the requests (client, request id, operation) of slot `seq()` + 1 and returns
    /// their results.
    pub fn execute<'a>(
        &mut self,
        requests: impl IntoIterator<Item = (u32, u64, &'a Operation)>,
    ) -> Vec<Option<OpResult>> {
        let mut undo = Vec::new();
        let mut results = Vec::new();
        for (client, request, op) in requests {
            let last = self.clients.get(&client).copied();
            if last.is_some_and(|last| last >= request) {
                results.push(None);
                continue;
            }
            results.push(Some(self.apply(op, &mut undo)));
            self.set_client(client, Some(request));
            undo.push(Undo::Client(client, last));
        }
        self.seq += 1;
        self.undo.push((self.seq, undo));
        results
    }

    /// Undoes every slot above `target`, highest first.
    ///
    /// # Errors
    ///
    /// [`UndoError`] when `target` is above the last slot or below the undo floor.
    pub fn undo_to(&mut self, target: u64) -> Result<(), UndoError> {
        let floor = self.undo.first().map_or(self.seq, |(seq, _)| seq - 1);
        if target > self.seq || target < floor {
            return Err(UndoError { target, seq: self.seq, floor });
        }
        while self.seq > target {
            let (_, records) =
                self.undo.pop().expect("the undo log covers the slots above its floor");
            for record in records.into_iter().rev() {
                match record {
                    Undo::Value(key, previous) => self.set_value(&key, previous),
                    Undo::Client(client, previous) => self.set_client(client, previous),
                }
            }
            self.seq -= 1;
        }
        Ok(())
    }

    /// Forgets the undo information of slots up to `seq` (a stable checkpoint: never undone).
    pub fn forget_undo_through(&mut self, seq: u64) {
        let keep = self.undo.partition_point(|(slot, _)| *slot <= seq);
        self.undo.drain(..keep);
    }

    fn apply(&mut self, op: &Operation, undo: &mut Vec<Undo>) -> OpResult {
        let mut write = |store: &mut Store, key: &str, value: i64| {
            undo.push(Undo::Value(key.to_string(), store.get(key)));
            store.set_value(key, Some(value));
        };
        match op {
            Operation::Read { key } => OpResult::Read { value: self.get(key) },
            Operation::Write { key, value } => {
                write(self, key, *value);
                OpResult::Written
            }
            Operation::Cas { key, from, to } => {
                let swapped = self.get(key) == Some(*from);
                if swapped {
                    write(self, key, *to);
                }
                OpResult::Cas { swapped }
            }
            Operation::Transfer { from, to, amount } => {
                let source = self.get(from).unwrap_or(0);
                let target = self.get(to).unwrap_or(0);
                let credited = target.checked_add(*amount);
                match credited {
                    Some(credited) if *amount > 0 && from != to && source >= *amount => {
                        write(self, from, source - amount);
                        write(self, to, credited);
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

    fn set_value(&mut self, key: &str, value: Option<i64>) {
        let previous = match value {
            Some(value) => {
                self.values_sum.add(&value_element(key, value));
                self.values.insert(key.to_string(), value)
            }
            None => self.values.remove(key),
        };
        if let Some(previous) = previous {
            self.values_sum.sub(&value_element(key, previous));
        }
    }

    fn set_client(&mut self, client: u32, request: Option<u64>) {
        let previous = match request {
            Some(request) => {
                self.clients_sum.add(&client_element(client, request));
                self.clients.insert(client, request)
            }
            None => self.clients.remove(&client),
        };
        if let Some(previous) = previous {
            self.clients_sum.sub(&client_element(client, previous));
        }
    }
}

fn value_element(key: &str, value: i64) -> Digest {
    Hasher::new(b"ordeal/kv/v1").bytes(key.as_bytes()).u64(value as u64).finish()
}

fn client_element(client: u32, request: u64) -> Digest {
    Hasher::new(b"ordeal/client/v1").u64(u64::from(client)).u64(request).finish()
}
