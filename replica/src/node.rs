//! A replica as its drivers see it: the protocol core with an optional Byzantine hook, and the
//! one loop that turns its outputs into IO.
//!
//! [`ProtocolCore`] is the sans-IO interface of a protocol: inputs (a peer's message, a client's
//! request, a timeout, each with `now`) and one output, a numbered [`Ready`] (writes, ledger
//! events, messages, the next deadline) released by `advance(number)`. [`Replica`] implements
//! it for PoE-TS, PoE-MAC and PBFT (one core, `docs/protocols.md`).
//!
//! [`Node`] wraps any protocol core and, in a replica the run declares Byzantine, a [`Hook`]:
//! every envelope from a peer is shown to the hook before the core gets it; every message the
//! core wants sent passes through the hook on its way out; the hook's own sends (from inbound
//! messages or its timer) leave with the core's. A correct replica has no hook and runs no hook
//! code.
//!
//! [`drive`] is the drain order, written once for every driver (the replica process's shell,
//! the deterministic simulator, the thread-per-core benchmark runner): take the node's
//! numbered [`NodeReady`], persist its writes, record its ledger events (flushed), send its
//! messages, advance. The driver supplies the IO through [`Io`].

use history::LedgerEvent;

use crate::byzantine::{Behaviour, Hook};
use crate::core::{
    ClientId, Envelope, Ready, Rejection, Replica, ReplicaId, SignedRequest, Time, Transmit, View,
    Write,
};

/// The sans-IO interface of a protocol core: what a [`Node`] drives.
pub trait ProtocolCore {
    /// A message from replica `from` (as the transport identified it).
    ///
    /// # Errors
    ///
    /// Why the message was refused (counted by the core).
    fn handle_message(
        &mut self,
        now: Time,
        from: ReplicaId,
        envelope: &Envelope,
    ) -> Result<(), Rejection>;

    /// A request from client `from` (as the transport identified it).
    ///
    /// # Errors
    ///
    /// Why the request was refused (counted by the core).
    fn handle_request(
        &mut self,
        now: Time,
        from: ClientId,
        request: SignedRequest,
    ) -> Result<(), Rejection>;

    /// Fires every timer due at `now`.
    fn handle_timeout(&mut self, now: Time);

    /// When [`ProtocolCore::handle_timeout`] must be called next.
    fn poll_timeout(&self) -> Option<Time>;

    /// Everything to do since the last `Ready`, numbered; `None` when there is nothing.
    fn ready(&mut self) -> Option<Ready>;

    /// `Ready` `number` is done (its writes durable, its events recorded, its messages sent).
    fn advance(&mut self, number: u64);

    /// The current view (the hook acts relative to it).
    fn view(&self) -> View;

    /// Caps the batches the core proposes as primary (the hook's lone executor).
    fn limit_batches(&mut self, limit: Option<u32>);
}

impl ProtocolCore for Replica {
    fn handle_message(
        &mut self,
        now: Time,
        from: ReplicaId,
        envelope: &Envelope,
    ) -> Result<(), Rejection> {
        Replica::handle_message(self, now, from, envelope)
    }

    fn handle_request(
        &mut self,
        now: Time,
        from: ClientId,
        request: SignedRequest,
    ) -> Result<(), Rejection> {
        Replica::handle_request(self, now, from, request)
    }

    fn handle_timeout(&mut self, now: Time) {
        Replica::handle_timeout(self, now);
    }

    fn poll_timeout(&self) -> Option<Time> {
        Replica::poll_timeout(self)
    }

    fn ready(&mut self) -> Option<Ready> {
        Replica::ready(self)
    }

    fn advance(&mut self, number: u64) {
        Replica::advance(self, number);
    }

    fn view(&self) -> View {
        Replica::view(self)
    }

    fn limit_batches(&mut self, limit: Option<u32>) {
        Replica::limit_batches(self, limit);
    }
}

/// A [`Ready`] of the core with the hook's rewriting applied: what the driver must do, in
/// order, before [`Node::advance`] with `number`.
#[derive(Debug)]
pub struct NodeReady {
    /// Numbered from 1, one more each time (the node's own count: a `Ready` may hold only the
    /// hook's sends).
    pub number: u64,
    /// Persist first, in order.
    pub writes: Vec<Write>,
    /// Then record (and flush).
    pub events: Vec<LedgerEvent>,
    /// Then send.
    pub transmits: Vec<Transmit>,
}

/// A protocol core and, in a Byzantine replica, its hook.
#[derive(Debug)]
pub struct Node<C: ProtocolCore = Replica> {
    core: C,
    hook: Option<Hook>,
    /// What the hook sent on its own (from inbound messages or its timer), sent with the next
    /// `Ready`.
    hook_transmits: Vec<Transmit>,
    /// The number of the last `Ready` handed out.
    number: u64,
    /// The `Ready` in flight: its number and the core's `Ready` number in it, if any.
    in_flight: Option<(u64, Option<u64>)>,
}

impl Node<crate::core::Replica> {
    /// The core's counters as flat names (`rejected.<kind>`, `rejected_from.<replica>`, ...)
    /// with the hook's (`byzantine.<behaviour>`): what a status report carries.
    pub fn counter_map(&self) -> std::collections::BTreeMap<String, u64> {
        let mut counters = std::collections::BTreeMap::new();
        let core = serde_json::to_value(self.core().counters()).expect("counters serialize");
        if let serde_json::Value::Object(fields) = core {
            for (name, value) in fields {
                match value {
                    serde_json::Value::Number(number) => {
                        counters.insert(name, number.as_u64().unwrap_or(0));
                    }
                    serde_json::Value::Object(counts) => {
                        for (kind, count) in counts {
                            counters.insert(format!("{name}.{kind}"), count.as_u64().unwrap_or(0));
                        }
                    }
                    _ => {}
                }
            }
        }
        if let Some(hook) = self.hook() {
            counters.extend(hook.counters());
        }
        counters
    }
}

impl<C: ProtocolCore> Node<C> {
    /// A node running `core`, with `hook` if the replica is Byzantine.
    pub fn new(core: C, hook: Option<Hook>) -> Node<C> {
        let mut node =
            Node { core, hook: None, hook_transmits: Vec::new(), number: 0, in_flight: None };
        if let Some(hook) = hook {
            node.set_hook(hook);
        }
        node
    }

    /// Installs (or replaces) the Byzantine hook; the core's batches follow its limit.
    pub fn set_hook(&mut self, hook: Hook) {
        self.core.limit_batches(hook.batch_limit());
        self.hook = Some(hook);
    }

    /// Switches the hook's behaviours; false when this node has no hook.
    pub fn behave(&mut self, now: Time, behaviours: impl IntoIterator<Item = Behaviour>) -> bool {
        let Some(hook) = self.hook.as_mut() else { return false };
        hook.set_behaviours(now, behaviours);
        self.core.limit_batches(hook.batch_limit());
        true
    }

    /// Replaces the core (a restart from the persisted state), keeping the hook: what the old
    /// core had not handed out, and a `Ready` in flight, died with it.
    pub fn replace_core(&mut self, core: C) {
        self.core = core;
        self.in_flight = None;
        self.hook_transmits.clear();
        if let Some(hook) = &self.hook {
            self.core.limit_batches(hook.batch_limit());
        }
    }

    /// The protocol core, the node dropped.
    pub fn into_core(self) -> C {
        self.core
    }

    /// The protocol core.
    pub fn core(&self) -> &C {
        &self.core
    }

    /// The Byzantine hook, if any.
    pub fn hook(&self) -> Option<&Hook> {
        self.hook.as_ref()
    }

    /// A message from replica `from`: shown to the hook first, then handled by the core.
    ///
    /// # Errors
    ///
    /// What the core rejected.
    pub fn handle_message(
        &mut self,
        now: Time,
        from: ReplicaId,
        envelope: &Envelope,
    ) -> Result<(), Rejection> {
        if let Some(hook) = self.hook.as_mut() {
            self.hook_transmits.extend(hook.inbound(now, from, envelope));
        }
        self.core.handle_message(now, from, envelope)
    }

    /// A request from client `from`.
    ///
    /// # Errors
    ///
    /// What the core rejected.
    pub fn handle_request(
        &mut self,
        now: Time,
        from: ClientId,
        request: SignedRequest,
    ) -> Result<(), Rejection> {
        self.core.handle_request(now, from, request)
    }

    /// Fires whatever timer is due at `now`: the core's, the hook's, or both.
    pub fn handle_timeout(&mut self, now: Time) {
        if self.core.poll_timeout().is_some_and(|at| at <= now) {
            self.core.handle_timeout(now);
        }
        if let Some(hook) = self.hook.as_mut()
            && hook.poll_timeout().is_some_and(|at| at <= now)
        {
            let view = self.core.view();
            self.hook_transmits.extend(hook.poll(now, view));
        }
    }

    /// When [`Node::handle_timeout`] must be called next.
    pub fn deadline(&self) -> Option<Time> {
        let hook = self.hook.as_ref().and_then(Hook::poll_timeout);
        [self.core.poll_timeout(), hook].into_iter().flatten().min()
    }

    /// The next [`NodeReady`], if there is anything to do: the core's `Ready` with every
    /// transmit passed through the hook, after the hook's own sends.
    ///
    /// # Panics
    ///
    /// If the previous one was not advanced: a driver bug.
    pub fn ready(&mut self, now: Time) -> Option<NodeReady> {
        assert!(self.in_flight.is_none(), "Ready {:?} was not advanced", self.in_flight);
        let view = self.core.view();
        let core = self.core.ready();
        if core.is_none() && self.hook_transmits.is_empty() {
            return None;
        }
        let mut transmits = std::mem::take(&mut self.hook_transmits);
        let (core_number, writes, events) = match core {
            Some(Ready { number, writes, events, transmits: core_transmits, deadline: _ }) => {
                match self.hook.as_mut() {
                    Some(hook) => {
                        for transmit in core_transmits {
                            transmits.extend(hook.outbound(now, view, transmit));
                        }
                    }
                    None => transmits.extend(core_transmits),
                }
                (Some(number), writes, events)
            }
            None => (None, Vec::new(), Vec::new()),
        };
        self.number += 1;
        self.in_flight = Some((self.number, core_number));
        Some(NodeReady { number: self.number, writes, events, transmits })
    }

    /// Ready `number` is done.
    ///
    /// # Panics
    ///
    /// If `number` is not the `Ready` in flight: a driver bug.
    pub fn advance(&mut self, number: u64) {
        let in_flight = self.in_flight.take();
        assert_eq!(
            in_flight.map(|(node, _)| node),
            Some(number),
            "advance of a Ready not in flight"
        );
        if let Some((_, Some(core))) = in_flight {
            self.core.advance(core);
        }
    }
}

/// The IO a driver gives [`drive`].
pub trait Io {
    /// Why IO failed (the driver stops on it).
    type Error;

    /// Makes `writes` durable, in order.
    ///
    /// # Errors
    ///
    /// When they could not be made durable.
    fn persist(&mut self, writes: &[Write]) -> Result<(), Self::Error>;

    /// Records `events` in the ledger and flushes it.
    ///
    /// # Errors
    ///
    /// When the ledger could not be written.
    fn record(&mut self, events: &[LedgerEvent]) -> Result<(), Self::Error>;

    /// Sends one message (best effort: a full queue or a lost link drops it).
    fn send(&mut self, transmit: Transmit);
}

/// The most `Ready`s one [`drive`] handles. A `Ready` is one batch of outputs of earlier inputs,
/// and handling it creates no new input, so after one core `Ready` and one hook-only one there
/// is nothing left; the bound only guards the loop.
const READY_PER_DRIVE_MAX: usize = 4;

/// Drains `node`: for each `Ready`, persists the writes, records the events, sends the
/// messages and advances, in that order. Returns the node's next deadline.
///
/// # Errors
///
/// The first IO error; the `Ready` is not advanced then (the driver stops).
pub fn drive<C: ProtocolCore, I: Io>(
    node: &mut Node<C>,
    now: Time,
    io: &mut I,
) -> Result<Option<Time>, I::Error> {
    for _ in 0..READY_PER_DRIVE_MAX {
        let Some(ready) = node.ready(now) else { break };
        if !ready.writes.is_empty() {
            io.persist(&ready.writes)?;
        }
        if !ready.events.is_empty() {
            io.record(&ready.events)?;
        }
        for transmit in ready.transmits {
            io.send(transmit);
        }
        node.advance(ready.number);
    }
    Ok(node.deadline())
}
