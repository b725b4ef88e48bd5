//! The safety rules: the one place that holds the replica's signing keys and decides whether
//! signing a vote is allowed.
//!
//! Rule (PROTOCOL §3.1 step 3, §9.4): a replica supports **at most one** proposal per
//! (view, seq). Asked again for the same digest, it returns the same vote (a retransmission);
//! asked for a different digest, it refuses. The nemesis builds Byzantine replicas around this
//! module (twins, hooks), never by weakening it. The replica persists every new vote before it
//! leaves and hands the persisted votes back with [`Safety::restore`] after a restart, so the
//! rule survives a crash.
//!
//! Rule (PBFT, PROTOCOL §7): a replica sends a COMMIT only for a digest it prepared, which
//! here means the digest it supported (PREPAREd) at that (view, seq): so it never commits two
//! digests for one slot of a view, and since supports are persisted, not after a restart either.
//!
//! Rule (signatures): CHECKPOINTs are signed only at or above the vote floor, VC-REQUESTs only
//! for a view above it (signing one raises the floor to its view).
//!
//! Rule (the vote floor): a replica that signed a VC-REQUEST for view v never votes in a view
//! below v (its VC-REQUEST, which a new primary may count, must not miss a certificate it
//! helped form later). The floor is persisted by the replica and only ever raised.

use std::collections::BTreeMap;

use super::config::Protocol;
use super::message::{Commit, Support, SupportProof, support_signing_bytes};
use super::types::{Digest, ReplicaId, Seq, View};
use crate::crypto::ed25519::SigningKey;
use crate::crypto::threshold::{PreparedMessage, SecretShare};

/// The safety rules refused to sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// This replica already supported another proposal for the slot.
    #[error("already supported digest {supported:?} for view {view} seq {seq}")]
    AlreadySupported {
        /// The view.
        view: View,
        /// The sequence number.
        seq: Seq,
        /// The digest supported earlier.
        supported: Digest,
    },
    /// A vote in a view below the vote floor.
    #[error("view {view} is below the vote floor {floor}")]
    BelowVoteFloor {
        /// The view of the vote asked for.
        view: View,
        /// The floor.
        floor: View,
    },
    /// A VC-REQUEST for a view at or below one this replica already signed a VC-REQUEST for.
    #[error("a view change to {target}, not above the vote floor {floor}")]
    ViewChangeNotAboveFloor {
        /// The view asked for.
        target: View,
        /// The floor.
        floor: View,
    },
    /// A COMMIT for a digest this replica did not support at that slot of that view.
    #[error("no support for digest {digest:?} at view {view} seq {seq} to commit")]
    CommitUnsupported {
        /// The view.
        view: View,
        /// The sequence number.
        seq: Seq,
        /// The digest asked to commit.
        digest: Digest,
    },
}

impl Refusal {
    /// A short name, for counters.
    pub fn kind(&self) -> &'static str {
        match self {
            Refusal::AlreadySupported { .. } => "already-supported",
            Refusal::BelowVoteFloor { .. } => "below-vote-floor",
            Refusal::ViewChangeNotAboveFloor { .. } => "view-change-not-above-floor",
            Refusal::CommitUnsupported { .. } => "commit-unsupported",
        }
    }
}

/// The replica's keys and its record of votes.
#[derive(Debug)]
pub struct Safety {
    id: ReplicaId,
    protocol: Protocol,
    signing_key: SigningKey,
    share: SecretShare,
    supported: BTreeMap<(View, Seq), Support>,
    /// The vote floor: no vote in a view below it.
    floor: View,
}

impl Safety {
    /// The safety rules of replica `id`.
    pub fn new(
        id: ReplicaId,
        protocol: Protocol,
        signing_key: SigningKey,
        share: SecretShare,
    ) -> Safety {
        assert_eq!(share.signer(), u32::from(id.0), "the threshold share belongs to this replica");
        Safety { id, protocol, signing_key, share, supported: BTreeMap::new(), floor: View(0) }
    }

    /// Signs a SUPPORT for `digest` at (view, seq), if the rule allows it. PoE-TS signs a
    /// threshold share over `prepared` (the support bytes hashed to G2, which the caller keeps
    /// for verifying the certificate); PoE-MAC ignores it.
    ///
    /// # Errors
    ///
    /// [`Refusal::AlreadySupported`] when another digest was supported for (view, seq).
    pub fn support(
        &mut self,
        view: View,
        seq: Seq,
        digest: Digest,
        prepared: Option<&PreparedMessage>,
    ) -> Result<Support, Refusal> {
        if view < self.floor {
            return Err(Refusal::BelowVoteFloor { view, floor: self.floor });
        }
        if let Some(previous) = self.supported.get(&(view, seq)) {
            return if previous.digest == digest {
                Ok(previous.clone())
            } else {
                Err(Refusal::AlreadySupported { view, seq, supported: previous.digest })
            };
        }
        let bytes = support_signing_bytes(&digest);
        let proof = match (self.protocol, prepared) {
            (Protocol::PoeTs, Some(prepared)) => SupportProof::Share(self.share.sign(prepared)),
            (Protocol::PoeTs, None) => {
                SupportProof::Share(self.share.sign(&PreparedMessage::new(&bytes)))
            }
            (Protocol::PoeMac | Protocol::Pbft, _) => {
                SupportProof::Signature(self.signing_key.sign(&bytes))
            }
        };
        let support = Support { view, seq, digest, replica: self.id, proof };
        self.supported.insert((view, seq), support.clone());
        debug_assert!(self.supported.get(&(view, seq)).is_some_and(|vote| vote.digest == digest));
        Ok(support)
    }

    /// A PBFT COMMIT for `digest` at (view, seq), if the rule allows it: only for the digest
    /// this replica supported there, never below the vote floor.
    ///
    /// # Errors
    ///
    /// [`Refusal::CommitUnsupported`] or [`Refusal::BelowVoteFloor`].
    pub fn commit(&self, view: View, seq: Seq, digest: Digest) -> Result<Commit, Refusal> {
        if view < self.floor {
            return Err(Refusal::BelowVoteFloor { view, floor: self.floor });
        }
        match self.supported.get(&(view, seq)) {
            Some(support) if support.digest == digest => {
                Ok(Commit { view, seq, digest, replica: self.id })
            }
            _ => Err(Refusal::CommitUnsupported { view, seq, digest }),
        }
    }

    /// Raises the vote floor to `view` (never lowers it).
    pub fn raise_floor(&mut self, view: View) {
        self.floor = self.floor.max(view);
    }

    /// The vote floor.
    pub fn floor(&self) -> View {
        self.floor
    }

    /// Whether a vote for (view, seq) is remembered.
    pub fn has_voted(&self, view: View, seq: Seq) -> bool {
        self.supported.contains_key(&(view, seq))
    }

    /// Reinstates votes persisted before a restart.
    pub fn restore(&mut self, votes: impl IntoIterator<Item = Support>) {
        for vote in votes {
            self.supported.insert((vote.view, vote.seq), vote);
        }
    }

    /// Signs a CHECKPOINT (its signing bytes) taken in `view`: never below the vote floor (a
    /// replica that asked for a later view follows a lower one passively; its checkpoint vote
    /// there could make stable a state its VC-REQUEST does not stand behind).
    ///
    /// # Errors
    ///
    /// [`Refusal::BelowVoteFloor`].
    pub fn sign_checkpoint(
        &self,
        view: View,
        bytes: &[u8],
    ) -> Result<crate::crypto::ed25519::Signature, Refusal> {
        if view < self.floor {
            return Err(Refusal::BelowVoteFloor { view, floor: self.floor });
        }
        Ok(self.signing_key.sign(bytes))
    }

    /// Signs a VC-REQUEST for `target` (its signing bytes) and raises the vote floor to it:
    /// only for a view above every view this replica asked for before (for the same view it
    /// re-sends the request it signed, never a second one with other evidence).
    ///
    /// # Errors
    ///
    /// [`Refusal::ViewChangeNotAboveFloor`].
    pub fn sign_view_change(
        &mut self,
        target: View,
        bytes: &[u8],
    ) -> Result<crate::crypto::ed25519::Signature, Refusal> {
        if target <= self.floor {
            return Err(Refusal::ViewChangeNotAboveFloor { target, floor: self.floor });
        }
        self.floor = target;
        Ok(self.signing_key.sign(bytes))
    }

    /// Forgets votes for slots up to `seq`: they are executed, and a slot at or below the last
    /// executed one is never proposed to this replica again in any view it is in.
    pub fn forget_through(&mut self, seq: Seq) {
        self.supported.retain(|(_, voted), _| *voted > seq);
    }

    /// The number of votes remembered (bounded by the log size).
    pub fn vote_count(&self) -> usize {
        self.supported.len()
    }
}
