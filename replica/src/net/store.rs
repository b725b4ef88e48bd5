//! The durable store: the core's [`Durable`] state in redb.
//!
//! One write transaction per batch of [`Write`]s, committed (`Durability::Immediate`) before any
//! message or ledger event that depends on the batch leaves the shell. The database file is a
//! [`StoreFile`]: every write reaches the kernel before the commit returns, so it survives a
//! SIGKILL of the process (the nemesis's crash); fsync, which also survives a power loss, is
//! optional (`fsync` in the node config, `ordeal test --fsync`): on this machine it costs about
//! 12% of the cluster's throughput (4.0k instead of 4.6k ok ops/s at 256 clients). Tables:
//! `meta` (the view, the pending VC-REQUEST, the stable checkpoint with its snapshot), `votes`
//! keyed by (view, seq), `blocks` keyed by seq; values are postcard encodings of the core's types.
//! The meaning of every write is [`Durable::apply`]'s; this module only mirrors it on disk.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use anyhow::Context as _;
use redb::{Database, Durability, ReadableTable as _, StorageBackend, TableDefinition};

use crate::core::durable::{Durable, StoredBlock, Write};
use crate::core::message::{CheckpointCertificate, SlotEvidence, Support, ViewChange};
use crate::core::state_machine::Snapshot;
use crate::core::types::{Seq, View};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const VOTES: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("votes");
const BLOCKS: TableDefinition<u64, &[u8]> = TableDefinition::new("blocks");
const PREPARED: TableDefinition<u64, &[u8]> = TableDefinition::new("prepared");

const VIEW: &str = "view";
const VIEW_CHANGE: &str = "view_change";
const VOTE_FLOOR: &str = "vote_floor";
const CHECKPOINT: &str = "checkpoint";

/// A replica's redb database.
pub struct Store {
    database: Database,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (or creates) the database at `path`; `fsync` makes every commit wait for the disk.
    ///
    /// # Errors
    ///
    /// When the file cannot be opened or is not a redb database.
    pub fn open(path: &Path, fsync: bool) -> anyhow::Result<Store> {
        let file = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("opening the store {}", path.display()))?;
        let database = Database::builder()
            .create_with_backend(StoreFile { file, fsync })
            .with_context(|| format!("opening the store {}", path.display()))?;
        let transaction = database.begin_write()?;
        transaction.open_table(META)?;
        transaction.open_table(VOTES)?;
        transaction.open_table(BLOCKS)?;
        transaction.commit()?;
        Ok(Store { database })
    }

    /// Reads everything persisted.
    ///
    /// # Errors
    ///
    /// When the database cannot be read or holds a value that does not decode.
    pub fn load(&self) -> anyhow::Result<Durable> {
        let transaction = self.database.begin_read()?;
        let meta = transaction.open_table(META)?;
        let mut durable = Durable::default();
        if let Some(value) = meta.get(VIEW)? {
            durable.view = decode::<View>(value.value(), "view")?;
        }
        if let Some(value) = meta.get(VIEW_CHANGE)? {
            durable.view_change = Some(decode::<ViewChange>(value.value(), "view change")?.into());
        }
        if let Some(value) = meta.get(VOTE_FLOOR)? {
            durable.vote_floor = decode::<View>(value.value(), "vote floor")?;
        }
        if let Some(value) = meta.get(CHECKPOINT)? {
            durable.checkpoint =
                Some(decode::<(CheckpointCertificate, Snapshot)>(value.value(), "checkpoint")?);
        }
        for entry in transaction.open_table(VOTES)?.iter()? {
            let (_, value) = entry?;
            let vote = decode::<Support>(value.value(), "vote")?;
            durable.votes.insert((vote.view, vote.seq), vote);
        }
        for entry in transaction.open_table(BLOCKS)?.iter()? {
            let (_, value) = entry?;
            let block = decode::<StoredBlock>(value.value(), "block")?;
            durable.blocks.insert(block.seq, block);
        }
        // A store written before PBFT's prepared certificates were kept has no such table.
        if let Ok(table) = transaction.open_table(PREPARED) {
            for entry in table.iter()? {
                let (_, value) = entry?;
                let evidence = decode::<SlotEvidence>(value.value(), "prepared certificate")?;
                durable.prepared.insert(evidence.seq, evidence);
            }
        }
        Ok(durable)
    }

    /// Applies `writes` in one transaction and makes it durable.
    ///
    /// # Errors
    ///
    /// When the transaction fails; nothing of it is then applied.
    pub fn apply(&self, writes: &[Write]) -> anyhow::Result<()> {
        let mut transaction = self.database.begin_write()?;
        transaction.set_durability(Durability::Immediate);
        {
            let mut meta = transaction.open_table(META)?;
            let mut votes = transaction.open_table(VOTES)?;
            let mut blocks = transaction.open_table(BLOCKS)?;
            let mut prepared = transaction.open_table(PREPARED)?;
            for write in writes {
                match write {
                    Write::View(view) => {
                        meta.insert(VIEW, encode(view).as_slice())?;
                        meta.remove(VIEW_CHANGE)?;
                    }
                    Write::ViewChange(request) => {
                        meta.insert(VIEW_CHANGE, encode(request.as_ref()).as_slice())?;
                        let held = match meta.get(VOTE_FLOOR)? {
                            Some(value) => decode::<View>(value.value(), "vote floor")?,
                            None => View(0),
                        };
                        let floor = held.max(request.target);
                        meta.insert(VOTE_FLOOR, encode(&floor).as_slice())?;
                    }
                    Write::Vote(support) => {
                        let key = (support.view.0, support.seq.0);
                        votes.insert(key, encode(support).as_slice())?;
                    }
                    Write::Block(block) => {
                        blocks.insert(block.seq.0, encode(block).as_slice())?;
                    }
                    Write::Certificate { seq, view, certificate } => {
                        let held = blocks.get(seq.0)?.map(|value| value.value().to_vec());
                        if let Some(held) = held {
                            let mut block = decode::<StoredBlock>(&held, "block")?;
                            block.certificate_view = *view;
                            block.certificate = certificate.clone();
                            blocks.insert(seq.0, encode(&block).as_slice())?;
                        }
                    }
                    Write::Prepared(evidence) => {
                        let held =
                            prepared.get(evidence.seq.0)?.map(|value| value.value().to_vec());
                        let higher = match held {
                            Some(held) => {
                                decode::<SlotEvidence>(&held, "prepared certificate")?.view
                                    <= evidence.view
                            }
                            None => true,
                        };
                        if higher {
                            prepared.insert(evidence.seq.0, encode(evidence).as_slice())?;
                        }
                    }
                    Write::Truncate(seq) => {
                        blocks.retain(|block, _| block <= seq.0)?;
                    }
                    Write::Checkpoint { certificate, snapshot, keep_blocks } => {
                        let seq = certificate.seq;
                        let keep = *keep_blocks;
                        blocks.retain(|block, _| keep && Seq(block) > seq)?;
                        votes.retain(|(_, voted), _| Seq(voted) > seq)?;
                        prepared.retain(|slot, _| Seq(slot) > seq)?;
                        let value = encode(&(certificate, snapshot));
                        meta.insert(CHECKPOINT, value.as_slice())?;
                    }
                }
            }
        }
        transaction.commit().context("committing to the store")?;
        Ok(())
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).expect("postcard encodes every stored type")
}

fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> anyhow::Result<T> {
    postcard::from_bytes(bytes).with_context(|| format!("decoding a stored {what}"))
}

/// The database file: positioned writes straight to the kernel, so a commit that returned
/// survives the process being killed; `sync_data` is an fsync only when `fsync` is set.
#[derive(Debug)]
struct StoreFile {
    file: File,
    fsync: bool,
}

impl StorageBackend for StoreFile {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.file.metadata()?.len())
    }

    fn read(&self, offset: u64, len: usize) -> Result<Vec<u8>, io::Error> {
        let mut buffer = vec![0; len];
        self.file.read_exact_at(&mut buffer, offset)?;
        Ok(buffer)
    }

    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.file.set_len(len)
    }

    fn sync_data(&self, _eventual: bool) -> Result<(), io::Error> {
        if self.fsync { self.file.sync_data() } else { Ok(()) }
    }

    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.file.write_all_at(data, offset)
    }
}
