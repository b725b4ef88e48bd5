//! The client side of PoE and PBFT as a sans-IO state machine.
//!
//! A client signs each request (client id, request id, operation), sends it to the primary it
//! believes in, and collects INFORMs (PBFT's REPLYs). In PoE the request is done when **nf
//! identical INFORMs** (same view, sequence number and result) arrive from distinct replicas:
//! that set is the proof-of-execution (PROTOCOL §3.1 step 7); f + 1 would be unsafe, since
//! results are speculative. In PBFT, where a replica replies only after a request committed,
//! **f + 1** identical REPLYs suffice (§7): one of them is honest ([`Config::reply_quorum`]).
//! If the proof does not form in time, the client re-sends the request to every replica
//! (backups forward it to the primary), with exponential backoff.
//!
//! One request is outstanding at a time, like a Jepsen process. Each replica's latest INFORM for
//! the outstanding request is kept, so a faulty replica can neither complete a request (its
//! INFORM is one vote) nor block one (it holds one vote, never a veto), and memory stays at n
//! entries.

use std::collections::{BTreeMap, VecDeque};

use history::{OpResult, Operation};

use super::config::Config;
use super::message::{AuthenticatedInform, RequestBody, SignedRequest};
use super::types::{ClientId, ReplicaId, RequestId, Seq, Time, View};
use crate::crypto::dealer::ClientSecrets;
use crate::crypto::ed25519::SigningKey;
use crate::crypto::mac::MacKey;

/// How many times the retry timeout doubles at most.
const RETRY_BACKOFF_EXPONENT_MAX: u32 = 3;

/// A request to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientTransmit {
    /// The replica to send it to.
    pub to: ReplicaId,
    /// The signed request.
    pub request: SignedRequest,
}

/// A proof of execution: nf identical INFORMs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    /// The view the INFORMs named.
    pub view: View,
    /// The slot the INFORMs named.
    pub seq: Seq,
    /// The replicas whose INFORMs formed the proof, ascending.
    pub replicas: Vec<ReplicaId>,
    /// When each of them was first heard saying so, in the order of `replicas`.
    pub informed: Vec<Time>,
}

impl From<&Proof> for history::Proof {
    fn from(proof: &Proof) -> history::Proof {
        history::Proof {
            view: proof.view.0,
            seq: proof.seq.0,
            replicas: proof.replicas.iter().map(|replica| u32::from(replica.0)).collect(),
            informed: proof.informed.iter().map(|time| time.as_nanos()).collect(),
        }
    }
}

/// A completed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completion {
    /// The request id.
    pub request: RequestId,
    /// The operation.
    pub op: Operation,
    /// The result all nf INFORMs agreed on.
    pub result: OpResult,
    /// The proof.
    pub proof: Proof,
    /// The replicas whose latest INFORM for the request named another view, slot or result
    /// than the proof: a faulty replica's altered INFORM, or an honest one's older view.
    pub dissent: Vec<ReplicaId>,
}

/// Why the client refused an input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClientError {
    /// A request is already outstanding.
    #[error("request {outstanding} is still outstanding")]
    Busy {
        /// The outstanding request.
        outstanding: RequestId,
    },
    /// The INFORM's sender is not a replica of the cluster.
    #[error("inform from unknown replica {from}")]
    UnknownReplica {
        /// The sender.
        from: ReplicaId,
    },
    /// The INFORM names another replica than the one it came from.
    #[error("inform from {from} claims to be from {claimed}")]
    SenderMismatch {
        /// The sender.
        from: ReplicaId,
        /// The replica named in the INFORM.
        claimed: ReplicaId,
    },
    /// The INFORM's MAC does not verify.
    #[error("invalid inform mac from {from}")]
    InvalidMac {
        /// The sender.
        from: ReplicaId,
    },
    /// The INFORM or request belongs to another client.
    #[error("message for client {client}")]
    WrongClient {
        /// The client named.
        client: ClientId,
    },
    /// The INFORM is not for the outstanding request (late or bogus).
    #[error("inform for request {request}, which is not outstanding")]
    NotOutstanding {
        /// The request named.
        request: RequestId,
    },
}

/// What a replica's INFORM said about the outstanding request.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InformVote {
    view: View,
    seq: Seq,
    result: OpResult,
}

#[derive(Debug)]
struct Outstanding {
    request: SignedRequest,
    /// Each replica's latest INFORM, with when the client first heard that replica say so
    /// (a replica re-sending the same INFORM keeps its first time).
    informs: BTreeMap<ReplicaId, (InformVote, Time)>,
    deadline: Time,
    retries: u32,
}

/// A client.
#[derive(Debug)]
pub struct Client {
    id: ClientId,
    config: Config,
    signing_key: SigningKey,
    replica_macs: Vec<MacKey>,
    /// The view of the last proof: its primary gets the next request first.
    view_hint: View,
    next_request: RequestId,
    outstanding: Option<Outstanding>,
    transmits: VecDeque<ClientTransmit>,
    completions: VecDeque<Completion>,
    retries: u64,
}

impl Client {
    /// Client `secrets.id` of a cluster with `config`.
    pub fn new(config: Config, secrets: ClientSecrets) -> Client {
        assert_eq!(secrets.replica_macs.len(), usize::from(config.replica_count));
        Client {
            id: ClientId(secrets.id),
            config,
            signing_key: secrets.signing_key,
            replica_macs: secrets.replica_macs,
            view_hint: View(0),
            next_request: RequestId(1),
            outstanding: None,
            transmits: VecDeque::new(),
            completions: VecDeque::new(),
            retries: 0,
        }
    }

    /// This client's id.
    pub fn id(&self) -> ClientId {
        self.id
    }

    /// Signs `op` as the next request and sends it to the presumed primary.
    ///
    /// # Errors
    ///
    /// [`ClientError::Busy`] while another request is outstanding.
    pub fn submit(&mut self, now: Time, op: Operation) -> Result<RequestId, ClientError> {
        if let Some(outstanding) = &self.outstanding {
            return Err(ClientError::Busy { outstanding: outstanding.request.body.request });
        }
        let request = self.sign_next(op);
        self.submit_signed(now, request)
    }

    /// Signs `op` as the next request without sending it: a load generator can sign ahead of
    /// time and [`Client::submit_signed`] later. Requests must then be submitted in the order
    /// they were signed, or replicas drop the older ones as stale.
    pub fn sign_next(&mut self, op: Operation) -> SignedRequest {
        let request_id = self.next_request;
        self.next_request = RequestId(request_id.0 + 1);
        let body = RequestBody { client: self.id, request: request_id, op };
        SignedRequest::sign(body, &self.signing_key)
    }

    /// Sends a request made by [`Client::sign_next`] to the presumed primary.
    ///
    /// # Errors
    ///
    /// [`ClientError::Busy`] while another request is outstanding; [`ClientError::WrongClient`]
    /// for another client's request.
    pub fn submit_signed(
        &mut self,
        now: Time,
        request: SignedRequest,
    ) -> Result<RequestId, ClientError> {
        if let Some(outstanding) = &self.outstanding {
            return Err(ClientError::Busy { outstanding: outstanding.request.body.request });
        }
        if request.body.client != self.id {
            return Err(ClientError::WrongClient { client: request.body.client });
        }
        let request_id = request.body.request;
        let primary = self.config.primary(self.view_hint);
        self.transmits.push_back(ClientTransmit { to: primary, request: request.clone() });
        self.outstanding = Some(Outstanding {
            request,
            informs: BTreeMap::new(),
            deadline: now + self.config.client_retry_timeout,
            retries: 0,
        });
        Ok(request_id)
    }

    /// Handles an INFORM from replica `from`; completes the outstanding request when nf
    /// identical INFORMs are in.
    ///
    /// # Errors
    ///
    /// A [`ClientError`] for an INFORM that is forged, misaddressed, or not for the outstanding
    /// request; it changes nothing.
    pub fn handle_inform(
        &mut self,
        now: Time,
        from: ReplicaId,
        inform: &AuthenticatedInform,
    ) -> Result<(), ClientError> {
        let key =
            self.replica_macs.get(from.index()).ok_or(ClientError::UnknownReplica { from })?;
        if inform.inform.replica != from {
            return Err(ClientError::SenderMismatch { from, claimed: inform.inform.replica });
        }
        inform.verify(key).map_err(|_| ClientError::InvalidMac { from })?;
        let inform = &inform.inform;
        if inform.client != self.id {
            return Err(ClientError::WrongClient { client: inform.client });
        }
        let outstanding = self
            .outstanding
            .as_mut()
            .filter(|outstanding| outstanding.request.body.request == inform.request)
            .ok_or(ClientError::NotOutstanding { request: inform.request })?;
        let vote = InformVote { view: inform.view, seq: inform.seq, result: inform.result.clone() };
        let first = match outstanding.informs.get(&from) {
            Some((previous, first)) if *previous == vote => *first,
            _ => now,
        };
        outstanding.informs.insert(from, (vote.clone(), first));
        let (replicas, informed): (Vec<ReplicaId>, Vec<Time>) = outstanding
            .informs
            .iter()
            .filter(|(_, (other, _))| *other == vote)
            .map(|(replica, (_, first))| (*replica, *first))
            .unzip();
        let needed = self.config.reply_quorum();
        #[cfg(feature = "planted-bugs")]
        let needed = if self.config.planted(crate::planted::PlantedBug::ClientFPlus1) {
            self.config.f() + 1
        } else {
            needed
        };
        if replicas.len() >= needed {
            let outstanding = self.outstanding.take().expect("matched above");
            let dissent = outstanding
                .informs
                .iter()
                .filter(|(_, (other, _))| *other != vote)
                .map(|(replica, _)| *replica)
                .collect();
            self.view_hint = self.view_hint.max(vote.view);
            self.completions.push_back(Completion {
                request: outstanding.request.body.request,
                op: outstanding.request.body.op,
                result: vote.result,
                proof: Proof { view: vote.view, seq: vote.seq, replicas, informed },
                dissent,
            });
        }
        Ok(())
    }

    /// Re-sends the outstanding request to every replica if its deadline passed.
    pub fn handle_timeout(&mut self, now: Time) {
        let Some(outstanding) = &mut self.outstanding else { return };
        if now < outstanding.deadline {
            return;
        }
        outstanding.retries += 1;
        self.retries += 1;
        let backoff = 1u32 << outstanding.retries.min(RETRY_BACKOFF_EXPONENT_MAX);
        outstanding.deadline = now + self.config.client_retry_timeout * backoff;
        for index in 0..self.config.replica_count {
            let to = ReplicaId(index);
            self.transmits.push_back(ClientTransmit { to, request: outstanding.request.clone() });
        }
    }

    /// Gives up on the outstanding request (the caller's operation timeout: its outcome is
    /// unknown). Returns its id.
    pub fn abandon(&mut self) -> Option<RequestId> {
        self.outstanding.take().map(|outstanding| outstanding.request.body.request)
    }

    /// The outstanding request, if any.
    pub fn outstanding(&self) -> Option<RequestId> {
        self.outstanding.as_ref().map(|outstanding| outstanding.request.body.request)
    }

    /// How many times requests were re-sent to all replicas.
    pub fn retries(&self) -> u64 {
        self.retries
    }

    /// When [`Client::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.outstanding.as_ref().map(|outstanding| outstanding.deadline)
    }

    /// The next request to send.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        self.transmits.pop_front()
    }

    /// The next completed request.
    #[must_use]
    pub fn poll_completion(&mut self) -> Option<Completion> {
        self.completions.pop_front()
    }
}
