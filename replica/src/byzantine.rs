//! Byzantine behaviour: a hook on a replica's send and receive paths, switched on over the
//! control endpoint, only in replicas the run declares Byzantine (`NodeConfig::byzantine`).
//! Correct replicas never construct it, so they run no hook code.
//!
//! A Byzantine replica uses its own real keys: it signs, MACs and shares whatever it likes,
//! but cannot forge another replica's authentication.
//!
//! # Layout
//!
//! - this file: the catalogue ([`Behaviour`], its names) and [`ByzantineConfig`];
//! - [`hook`]: [`Hook`], the pure (no IO, no clock, seeded) rewriting of what the replica sends
//!   and observing of what it receives, shared by the shell and the simulator;
//! - `tamper`: the field edits (mutations, forged authentication) the hook applies.
//!
//! Which behaviours act only while the replica is primary ([`Behaviour::needs_primary`]):
//! `equivocate` (its primary half), `in-the-dark`, `withhold-slot`, `withhold-certificate`,
//! `re-propose` and `nv-equivocate` (as the new view's primary). The others act in any role.

mod tamper;

pub mod hook;

pub use hook::Hook;

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// One named malicious behaviour (PROTOCOL.md §§3–5, §9).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Behaviour {
    /// As primary: different batches for one slot to different replicas; as a backup: support
    /// every proposal it sees, conflicting ones included.
    Equivocate,
    /// As primary: leave some replicas (at most f) out of proposals and certificates.
    InTheDark,
    /// As primary: never propose some slots, leaving holes.
    WithholdSlot,
    /// Invalid signatures, threshold shares and MACs.
    Forge,
    /// Votes (supports or PREPAREs, COMMITs, checkpoints) for another digest, correctly signed.
    CorruptDigest,
    /// INFORMs with wrong results, correctly MACed.
    WrongResult,
    /// Messages tagged with an older view.
    StaleView,
    /// Messages tagged with a later view.
    FutureView,
    /// VC-REQUESTs while the primary is fine.
    FalseFailure,
    /// As new primary: different valid NV-PROPOSEs from different nf subsets to different
    /// replicas; when every subset decides the same, a forged one (the relayed VC-REQUESTs
    /// stripped of their evidence) to half of the honest replicas.
    NvEquivocate,
    /// Re-send old valid messages.
    Replay,
    /// Send nothing.
    Silent,
    /// Seeded small-scope random mutation of one field of outgoing messages (ByzzFuzz).
    Mutate,
    /// VC-REQUESTs that hide evidence: each slot's certificate is omitted, or downgraded to an
    /// older view's certificate for the slot that this replica sent before (a stale
    /// certificate reused), correctly re-signed.
    HideEvidence,
    /// As primary: send its own evidence (the CERTIFY in PoE-TS; its SUPPORT in PoE-MAC; its
    /// CHECKPOINT votes) to one honest replica only, the *lone* one of [`hook::lone_roles`]
    /// (and to accomplices); the other honest replicas supported the batch and never see it
    /// committed, so the evidence of the slot lives at one honest replica. With `in-the-dark`,
    /// the lone replica alone executes: the rollback a later view change owes it is the target.
    WithholdCertificate,
    /// State transfers with the real checkpoint certificate and a snapshot of another state
    /// (the same wrong state at every accomplice).
    CorruptSnapshot,
    /// As primary: for the slots whose evidence it keeps from some honest replicas
    /// (`withhold-certificate`, `in-the-dark`) or that it equivocates on, it offers those
    /// replicas, again and again, *another* batch for the same (view, seq), with its own vote
    /// for it: a replica that remembers its vote refuses, one that forgot it (a crash before
    /// the vote was persisted, PROTOCOL §9.4) supports the second batch too. The harness
    /// crashes and restarts honest voters while it acts (the amnesia probe).
    RePropose,
}

impl Behaviour {
    /// Every behaviour, in a fixed order.
    pub const ALL: [Behaviour; 17] = [
        Behaviour::Equivocate,
        Behaviour::InTheDark,
        Behaviour::WithholdSlot,
        Behaviour::Forge,
        Behaviour::CorruptDigest,
        Behaviour::WrongResult,
        Behaviour::StaleView,
        Behaviour::FutureView,
        Behaviour::FalseFailure,
        Behaviour::NvEquivocate,
        Behaviour::Replay,
        Behaviour::Silent,
        Behaviour::Mutate,
        Behaviour::HideEvidence,
        Behaviour::WithholdCertificate,
        Behaviour::CorruptSnapshot,
        Behaviour::RePropose,
    ];

    /// The name on the command line, in scenarios, the history and counters.
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Equivocate => "equivocate",
            Behaviour::InTheDark => "in-the-dark",
            Behaviour::WithholdSlot => "withhold-slot",
            Behaviour::Forge => "forge",
            Behaviour::CorruptDigest => "corrupt-digest",
            Behaviour::WrongResult => "wrong-result",
            Behaviour::StaleView => "stale-view",
            Behaviour::FutureView => "future-view",
            Behaviour::FalseFailure => "false-failure",
            Behaviour::NvEquivocate => "nv-equivocate",
            Behaviour::Replay => "replay",
            Behaviour::Silent => "silent",
            Behaviour::Mutate => "mutate",
            Behaviour::HideEvidence => "hide-evidence",
            Behaviour::WithholdCertificate => "withhold-certificate",
            Behaviour::CorruptSnapshot => "corrupt-snapshot",
            Behaviour::RePropose => "re-propose",
        }
    }

    /// Whether the behaviour acts only while its replica is the primary of its view (or the
    /// new view's primary): the nemesis moves the primary role onto a Byzantine replica before
    /// switching it on.
    pub fn needs_primary(self) -> bool {
        matches!(
            self,
            Behaviour::Equivocate
                | Behaviour::InTheDark
                | Behaviour::WithholdSlot
                | Behaviour::NvEquivocate
                | Behaviour::WithholdCertificate
                | Behaviour::RePropose
        )
    }

    /// Whether the nemesis draws the behaviour in a combination of its own (outside a joint
    /// attack): not `re-propose`, which offers a second batch only for slots whose evidence
    /// another behaviour withheld and harms only with the crashes of its joint attack.
    pub fn drawn_alone(self) -> bool {
        self != Behaviour::RePropose
    }
}

impl fmt::Display for Behaviour {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.name())
    }
}

/// A name that is no [`Behaviour`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Byzantine behaviour {0:?} (known: {known})", known = known_names())]
pub struct UnknownBehaviour(pub String);

fn known_names() -> String {
    Behaviour::ALL.iter().map(|behaviour| behaviour.name()).collect::<Vec<_>>().join(", ")
}

impl FromStr for Behaviour {
    type Err = UnknownBehaviour;

    fn from_str(name: &str) -> Result<Behaviour, UnknownBehaviour> {
        Behaviour::ALL
            .into_iter()
            .find(|behaviour| behaviour.name() == name)
            .ok_or_else(|| UnknownBehaviour(name.to_string()))
    }
}

/// How a replica the run declares Byzantine is set up (`NodeConfig::byzantine`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ByzantineConfig {
    /// The seed of the hook's random choices (which replicas, which fields).
    pub seed: u64,
    /// The other replicas the run declares Byzantine: the adversary's accomplices. An
    /// equivocating primary sends them both sides and splits only the honest replicas; they
    /// support and share-sign both sides.
    #[serde(default)]
    pub colluders: Vec<u8>,
}
