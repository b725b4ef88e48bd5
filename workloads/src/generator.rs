//! Operation generators: pure and seeded, so a run's operations follow from its seed (the
//! interleaving of processes does not, since it depends on real timing).
//!
//! Each client process owns one generator. A generator proposes the next operation and learns
//! from results (`observe`), which lets cas operations name values that the register recently
//! held instead of failing almost always.

use std::collections::BTreeMap;

use history::{OpResult, Operation};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The workloads `ordeal test` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Workload {
    /// Read, write and cas over K registers.
    Register,
    /// Transfers between K accounts and reads of all balances.
    Bank,
}

/// Each bank account's opening balance.
pub const BANK_OPENING_BALANCE: i64 = 100;

/// The largest amount one bank transfer moves.
pub const BANK_TRANSFER_MAX: i64 = 10;

impl Workload {
    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Register => "register",
            Workload::Bank => "bank",
        }
    }

    /// The store's contents before the first operation: the bank's opening balances.
    pub fn genesis(self, key_count: u32) -> BTreeMap<String, i64> {
        match self {
            Workload::Register => BTreeMap::new(),
            Workload::Bank => {
                (0..key_count).map(|index| (account(index), BANK_OPENING_BALANCE)).collect()
            }
        }
    }

    /// A generator for client `client` of `client_count`, seeded from the run's seed.
    pub fn generator(self, seed: u64, key_count: u32, client: u32, client_count: u32) -> Generator {
        let rng = ChaCha8Rng::seed_from_u64(history::seeds::generator(seed, client));
        let key_count = key_count.max(1);
        match self {
            Workload::Register => Generator::Register(RegisterGenerator {
                rng,
                key_count,
                writer: u64::from(client),
                writer_count: u64::from(client_count.max(1)),
                writes: 0,
                latest: BTreeMap::new(),
            }),
            Workload::Bank => {
                Generator::Bank(BankGenerator { rng, account_count: key_count.max(2) })
            }
        }
    }
}

/// The name of register `index`.
pub fn register(index: u32) -> String {
    format!("k{index}")
}

/// The name of bank account `index`.
pub fn account(index: u32) -> String {
    format!("a{index}")
}

/// A workload's generator.
#[derive(Debug, Clone)]
pub enum Generator {
    /// The register workload's.
    Register(RegisterGenerator),
    /// The bank workload's.
    Bank(BankGenerator),
}

impl Generator {
    /// The next operation.
    pub fn next_op(&mut self) -> Operation {
        match self {
            Generator::Register(generator) => generator.next_op(),
            Generator::Bank(generator) => generator.next_op(),
        }
    }

    /// Learns from a completed operation.
    pub fn observe(&mut self, op: &Operation, result: &OpResult) {
        if let Generator::Register(generator) = self {
            generator.observe(op, result);
        }
    }
}

/// Reads, writes and cas over `key_count` registers. Written values are unique across the
/// whole run: client c of C writes c + 1, c + 1 + C, c + 1 + 2C, ... (cas targets included), so
/// a read names exactly the write it observed.
#[derive(Debug, Clone)]
pub struct RegisterGenerator {
    rng: ChaCha8Rng,
    key_count: u32,
    writer: u64,
    writer_count: u64,
    writes: u64,
    /// The latest value this client saw in each register.
    latest: BTreeMap<String, i64>,
}

impl RegisterGenerator {
    fn unique_value(&mut self) -> i64 {
        let value = self.writes * self.writer_count + self.writer + 1;
        self.writes += 1;
        i64::try_from(value).expect("fewer than 2^63 writes")
    }

    fn next_op(&mut self) -> Operation {
        let key = register(self.rng.random_range(0..self.key_count));
        match self.rng.random_range(0..10u32) {
            0..=3 => Operation::Read { key },
            4..=6 => Operation::Write { key, value: self.unique_value() },
            _ => {
                // Compare against what this client last saw, so that cas often succeeds.
                let from = match self.latest.get(&key) {
                    Some(value) => *value,
                    None => self.rng.random_range(1..=self.writer_count as i64 * 4),
                };
                Operation::Cas { key, from, to: self.unique_value() }
            }
        }
    }

    fn observe(&mut self, op: &Operation, result: &OpResult) {
        match (op, result) {
            (Operation::Read { key }, OpResult::Read { value: Some(value) })
            | (Operation::Write { key, value }, OpResult::Written)
            | (Operation::Cas { key, to: value, .. }, OpResult::Cas { swapped: true }) => {
                self.latest.insert(key.clone(), *value);
            }
            _ => {}
        }
    }
}

/// Transfers of 1 to [`BANK_TRANSFER_MAX`] between distinct accounts (80%) and reads of all
/// balances (20%).
#[derive(Debug, Clone)]
pub struct BankGenerator {
    rng: ChaCha8Rng,
    account_count: u32,
}

impl BankGenerator {
    fn next_op(&mut self) -> Operation {
        if self.rng.random_range(0..10u32) < 2 {
            return Operation::ReadAll { keys: (0..self.account_count).map(account).collect() };
        }
        let from = self.rng.random_range(0..self.account_count);
        let to = (from + self.rng.random_range(1..self.account_count)) % self.account_count;
        let amount = self.rng.random_range(1..=BANK_TRANSFER_MAX);
        Operation::Transfer { from: account(from), to: account(to), amount }
    }
}
