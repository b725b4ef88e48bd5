//! A client process: one client identity running operations one at a time against the cluster,
//! recording each invocation and completion (Jepsen's worker).
//!
//! `ok` carries the proof of execution; a refused cas or transfer is `fail` (it definitely did
//! not take effect); no proof within the operation timeout is `info` (it may take effect later
//! or never), after which this logical process is retired and the client continues under the
//! next process number (`process + stride`), as Jepsen does.

use std::sync::Arc;
use std::time::Duration;

use history::Process;
use replica::core::{Client, ReplicaId, SignedRequest, Time};
use replica::net::client::ClientTransport;
use tokio::sync::watch;

use crate::byzantine::{self, Junk, JunkCounts};
use crate::generator::Generator;
use crate::recorder::{Completion, Recorder};

/// Why an operation ended unknown when the client's links are all gone.
pub(crate) const TRANSPORT_CLOSED: &str = "transport closed";

/// How a client process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessOptions {
    /// How long an operation may take before it is recorded as `info`.
    pub op_timeout: Duration,
    /// The least time between two invocations of this process (a rate cap), if any.
    pub op_interval: Option<Duration>,
    /// The first logical process number.
    pub first_process: u64,
    /// What a retired process number is advanced by (the number of client processes).
    pub process_stride: u64,
    /// A Byzantine client: besides each correct request it sends one piece of junk
    /// ([`crate::byzantine`]) to one replica, cycling through the kinds and the replicas.
    pub byzantine: bool,
    /// The number of clients of the run (a misaddressed request names another of them).
    pub client_count: u32,
}

/// What a client process did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessReport {
    /// Operations invoked.
    pub ops: u64,
    /// Logical processes retired after an `info`.
    pub retired: u64,
    /// Junk sent (Byzantine clients only), by kind.
    pub junk: JunkCounts,
}

/// Runs operations from `generator` until `stop` turns true, then returns after the operation
/// in flight completes (at most one operation timeout later).
pub async fn run(
    mut client: Client,
    mut transport: ClientTransport,
    mut generator: Generator,
    recorder: Arc<Recorder>,
    options: ProcessOptions,
    mut stop: watch::Receiver<bool>,
) -> ProcessReport {
    let client_id = client.id().0;
    let mut process = options.first_process;
    let mut report = ProcessReport::default();
    // A Byzantine client's previous request, to replay.
    let mut previous: Option<SignedRequest> = None;
    let mut next_start = tokio::time::Instant::now();
    // Bounded by the run's time limit: the harness sets `stop`.
    while !*stop.borrow() {
        if let Some(interval) = options.op_interval {
            tokio::select! {
                _ = tokio::time::sleep_until(next_start) => {}
                _ = stop.changed() => break,
            }
            next_start = next_start.max(tokio::time::Instant::now() - interval) + interval;
        }
        let op = generator.next_op();
        let request = client.sign_next(op.clone());
        let request_id = request.body.request.0;
        let current = options.byzantine.then(|| request.clone());
        recorder.invoke(Process::Client(process), &op, client_id, request_id);
        report.ops += 1;
        let now = Time::from_nanos(recorder.now_nanos());
        if client.submit_signed(now, request).is_err() {
            // One operation at a time: the previous one is always finished or abandoned here.
            unreachable!("a client process submits only when idle");
        }
        send_all(&mut client, &transport);
        if let Some(current) = &current {
            send_junk(&transport, &mut report, current, previous.as_ref(), options.client_count);
        }
        let completion = await_completion(
            &mut client,
            &mut transport,
            recorder.start(),
            Some(&recorder),
            options.op_timeout,
        )
        .await;
        recorder.complete(Process::Client(process), &op, client_id, request_id, &completion);
        previous = current;
        if matches!(&completion, Completion::Unknown { reason } if reason == TRANSPORT_CLOSED) {
            // Nothing more can be sent: end rather than record one info after another.
            break;
        }
        match &completion {
            Completion::Done { result, .. } => generator.observe(&op, result),
            Completion::Unknown { .. } => {
                process += options.process_stride;
                report.retired += 1;
            }
        }
    }
    report
}

/// Sends the next kind of junk to the next replica, round robin.
fn send_junk(
    transport: &ClientTransport,
    report: &mut ProcessReport,
    current: &SignedRequest,
    previous: Option<&SignedRequest>,
    client_count: u32,
) {
    let sent: u64 = report.junk.values().sum();
    let junk = Junk::ALL[(sent as usize) % Junk::ALL.len()];
    let to = ReplicaId((report.ops % transport.replica_count() as u64) as u8);
    if let Some(frame) = byzantine::frame(junk, current, previous, client_count)
        && transport.send_frame(to, frame)
    {
        *report.junk.entry(junk.name()).or_default() += 1;
    }
}

pub(crate) fn send_all(client: &mut Client, transport: &ClientTransport) {
    while let Some(transmit) = client.poll_transmit() {
        // A dropped request is retransmitted by the client core on its timer.
        let _ = transport.send(transmit.to, &transmit.request);
    }
}

/// Waits for the submitted request's proof of execution, retransmitting on the client core's
/// timer, for at most `op_timeout`. The client core's clock counts from `start`; dissenting
/// INFORMs are recorded when a `recorder` is given.
pub(crate) async fn await_completion(
    client: &mut Client,
    transport: &mut ClientTransport,
    start: std::time::Instant,
    recorder: Option<&Recorder>,
    op_timeout: Duration,
) -> Completion {
    let deadline = tokio::time::Instant::now() + op_timeout;
    let origin = tokio::time::Instant::from_std(start);
    let now_nanos = || start.elapsed().as_nanos() as u64;
    // Bounded by `deadline`.
    loop {
        let retry_at = client.poll_timeout().map(|at| origin + Duration::from_nanos(at.as_nanos()));
        tokio::select! {
            inform = transport.recv() => match inform {
                Some((from, inform)) => {
                    let now = Time::from_nanos(now_nanos());
                    // Late, forged or misaddressed INFORMs are refused by the client core and
                    // change nothing.
                    let _ = client.handle_inform(now, from, &inform);
                    if let Some(done) = client.poll_completion() {
                        if let Some(recorder) = recorder {
                            let dissent = done.dissent.iter().map(|replica| u32::from(replica.0));
                            recorder.dissent(dissent);
                        }
                        let proof = (&done.proof).into();
                        return Completion::Done { result: done.result, proof };
                    }
                }
                None => {
                    client.abandon();
                    return Completion::Unknown { reason: TRANSPORT_CLOSED.into() };
                }
            },
            _ = sleep_until(retry_at) => {
                client.handle_timeout(Time::from_nanos(now_nanos()));
                send_all(client, transport);
            }
            _ = tokio::time::sleep_until(deadline) => {
                client.abandon();
                return Completion::Unknown { reason: "timeout".into() };
            }
        }
    }
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
