//! A client process's logic without IO or a clock: one client identity running operations one
//! at a time (Jepsen's worker), for the simulator (`harness::sim`), where time is virtual.
//!
//! The same rules as [`crate::process`]: an operation is invoked, then completes `ok` with its
//! proof, `fail` when it definitely did not take effect (a refused cas or transfer), or `info`
//! when no proof came within the operation timeout; after an `info` the logical process is
//! retired and the client continues under `process + stride`. The caller stamps each returned
//! event with its time and index, sends what [`Worker::poll_transmit`] gives, and calls
//! [`Worker::handle_timeout`] at [`Worker::deadline`]; an idle worker starts its next operation
//! with [`Worker::invoke`] at [`Worker::next_start`].

use std::time::Duration;

use history::{Op, Operation, Process};
use replica::core::{AuthenticatedInform, Client, ClientTransmit, ReplicaId, SignedRequest, Time};

use crate::generator::Generator;
use crate::recorder::{Completion, complete_op, invoke_op};

/// An operation under way.
#[derive(Debug, Clone)]
struct InFlight {
    op: Operation,
    request: u64,
    deadline: Time,
}

/// What a finished operation recorded, and the replicas whose INFORM the client outvoted.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The completion event.
    pub op: Op,
    /// Replicas whose INFORM named another view, slot or result than the proof.
    pub dissent: Vec<ReplicaId>,
}

/// One simulated client process.
#[derive(Debug)]
pub struct Worker {
    client: Client,
    generator: Generator,
    process: u64,
    stride: u64,
    op_timeout: Duration,
    /// The least time between two invocations (a rate cap), if any.
    op_interval: Option<Duration>,
    /// When the next invocation may start.
    next_start: Time,
    in_flight: Option<InFlight>,
    /// Operations invoked.
    pub ops: u64,
    /// Logical processes retired after an `info`.
    pub retired: u64,
}

impl Worker {
    /// A worker for `client`, drawing operations from `generator`, as logical process
    /// `first_process` (then `first_process + stride`, ... after each `info`).
    pub fn new(
        client: Client,
        generator: Generator,
        first_process: u64,
        stride: u64,
        op_timeout: Duration,
        op_interval: Option<Duration>,
    ) -> Worker {
        Worker {
            client,
            generator,
            process: first_process,
            stride: stride.max(1),
            op_timeout,
            op_interval,
            next_start: Time::ZERO,
            in_flight: None,
            ops: 0,
            retired: 0,
        }
    }

    /// The client's id.
    pub fn client_id(&self) -> u32 {
        self.client.id().0
    }

    /// Whether an operation is under way.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// When the next operation may start, if none is under way: at once, or, under a rate cap,
    /// one interval after the previous one started.
    pub fn next_start(&self) -> Option<Time> {
        self.in_flight.is_none().then_some(self.next_start)
    }

    /// Starts the next operation at `now` and returns its invocation.
    ///
    /// # Panics
    ///
    /// While an operation is under way.
    pub fn invoke(&mut self, now: Time) -> Op {
        assert!(self.in_flight.is_none(), "one operation at a time");
        let op = self.generator.next_op();
        let request: SignedRequest = self.client.sign_next(op.clone());
        let request_id = request.body.request.0;
        let event = invoke_op(Process::Client(self.process), &op, self.client_id(), request_id);
        if self.client.submit_signed(now, request).is_err() {
            unreachable!("the worker submits only when idle");
        }
        self.in_flight =
            Some(InFlight { op, request: request_id, deadline: now + self.op_timeout });
        if let Some(interval) = self.op_interval {
            self.next_start = self.next_start.max(now) + interval;
        }
        self.ops += 1;
        event
    }

    /// An INFORM from `from`: the completion, when it completed the operation.
    pub fn handle_inform(
        &mut self,
        now: Time,
        from: ReplicaId,
        inform: &AuthenticatedInform,
    ) -> Option<Finished> {
        // Late, forged or misaddressed INFORMs are refused by the client core.
        let _ = self.client.handle_inform(now, from, inform);
        let done = self.client.poll_completion()?;
        let flight = self.in_flight.take()?;
        self.generator.observe(&flight.op, &done.result);
        let completion = Completion::Done { result: done.result, proof: (&done.proof).into() };
        let process = Process::Client(self.process);
        let op = complete_op(process, &flight.op, self.client_id(), flight.request, &completion);
        Some(Finished { op, dissent: done.dissent })
    }

    /// The timers due at `now`: the client's retransmission, or the operation's timeout (the
    /// `info`, which retires the logical process).
    pub fn handle_timeout(&mut self, now: Time) -> Option<Finished> {
        let flight = self.in_flight.as_ref()?;
        if now < flight.deadline {
            self.client.handle_timeout(now);
            return None;
        }
        let flight = self.in_flight.take()?;
        self.client.abandon();
        let completion = Completion::Unknown { reason: "timeout".into() };
        let process = Process::Client(self.process);
        let op = complete_op(process, &flight.op, self.client_id(), flight.request, &completion);
        self.process += self.stride;
        self.retired += 1;
        Some(Finished { op, dissent: Vec::new() })
    }

    /// When [`Worker::handle_timeout`] must be called next.
    pub fn deadline(&self) -> Option<Time> {
        let flight = self.in_flight.as_ref()?;
        Some(match self.client.poll_timeout() {
            Some(retry) => retry.min(flight.deadline),
            None => flight.deadline,
        })
    }

    /// The next request to send.
    pub fn poll_transmit(&mut self) -> Option<ClientTransmit> {
        self.client.poll_transmit()
    }
}
