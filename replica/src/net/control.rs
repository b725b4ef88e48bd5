//! The control endpoint: the harness asks a replica for its status or tells it to stop. Only a
//! connection presenting the controller's certificate may use it.
//!
//! Each request is one bidirectional stream: the controller writes one JSON frame and finishes,
//! the replica answers with one JSON frame.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::frame::{FrameError, read_frame, write_frame};
use super::tls::{Identity, TlsMaterial};
use crate::core::{Digest, ReplicaId};

/// How long the controller waits for one answer.
pub const CONTROL_TIMEOUT: Duration = Duration::from_secs(1);

/// The largest control frame.
pub const CONTROL_FRAME_MAX: usize = 64 * 1024;

/// What the controller asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlRequest {
    /// The replica's progress and counters.
    Status,
    /// Stop gracefully (flush the ledger, close connections, exit 0).
    Stop,
    /// Close the outgoing link to replica `peer` and connect again at once (the relay now
    /// routes it to another process).
    Reconnect {
        /// The peer.
        peer: u8,
    },
    /// Behave maliciously in these ways from now on (none: behave correctly). Refused by a
    /// replica the run did not declare Byzantine.
    Behave {
        /// The behaviours to switch on; every other is off.
        behaviours: Vec<crate::byzantine::Behaviour>,
    },
}

/// What the replica answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ControlResponse {
    /// The status.
    Status(StatusReport),
    /// The replica is stopping.
    Stopping,
    /// The behaviours asked for are on.
    Behaving,
    /// The link reconnects.
    Reconnecting,
    /// The request was refused.
    Refused {
        /// Why.
        reason: String,
    },
}

/// A replica's status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusReport {
    /// The replica.
    pub id: u8,
    /// Its view.
    pub view: u64,
    /// Its last executed slot.
    pub last_executed: u64,
    /// Its state digest after that slot.
    pub state_digest: Digest,
    /// Its ledger head.
    pub ledger_head: Digest,
    /// True once every outgoing link to another replica has connected at least once.
    pub ready: bool,
    /// The replicas its outgoing links are connected to now.
    pub peers_connected: Vec<u8>,
    /// Core and network counters, rejections as `rejected.<kind>` and by sender as
    /// `rejected_from.<replica>`.
    pub counters: BTreeMap<String, u64>,
}

/// A control-request failure, as the controller sees it.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Could not connect or open a stream.
    #[error("cannot reach replica {replica}: {reason}")]
    Unreachable {
        /// The replica.
        replica: ReplicaId,
        /// Why.
        reason: String,
    },
    /// The exchange failed.
    #[error("control exchange with replica {replica} failed: {reason}")]
    Exchange {
        /// The replica.
        replica: ReplicaId,
        /// Why.
        reason: String,
    },
}

/// A controller's connection to one replica's control endpoint.
#[derive(Debug, Clone)]
pub struct ControlClient {
    replica: ReplicaId,
    connection: quinn::Connection,
}

impl ControlClient {
    /// Connects to replica `replica` at `address` as the controller, within `timeout`.
    ///
    /// # Errors
    ///
    /// [`ControlError::Unreachable`].
    pub async fn connect(
        endpoint: &quinn::Endpoint,
        tls: &TlsMaterial,
        replica: ReplicaId,
        address: SocketAddr,
        timeout: Duration,
    ) -> Result<ControlClient, ControlError> {
        let unreachable = |reason: String| ControlError::Unreachable { replica, reason };
        let config = tls.client_config().map_err(|error| unreachable(error.to_string()))?;
        let name = Identity::Replica(replica).dns_name();
        let connecting = endpoint
            .connect_with(config, address, &name)
            .map_err(|error| unreachable(error.to_string()))?;
        let connection = tokio::time::timeout(timeout, connecting)
            .await
            .map_err(|_| unreachable("timed out".into()))?
            .map_err(|error| unreachable(error.to_string()))?;
        Ok(ControlClient { replica, connection })
    }

    /// Asks for the replica's status.
    ///
    /// # Errors
    ///
    /// [`ControlError::Exchange`].
    pub async fn status(&self) -> Result<StatusReport, ControlError> {
        match self.exchange(&ControlRequest::Status).await? {
            ControlResponse::Status(report) => Ok(report),
            other => Err(self.exchange_error(format!("unexpected answer {other:?}"))),
        }
    }

    /// Tells the replica to stop.
    ///
    /// # Errors
    ///
    /// [`ControlError::Exchange`].
    pub async fn stop(&self) -> Result<(), ControlError> {
        match self.exchange(&ControlRequest::Stop).await? {
            ControlResponse::Stopping => Ok(()),
            other => Err(self.exchange_error(format!("unexpected answer {other:?}"))),
        }
    }

    /// Switches the replica's Byzantine behaviours (none: correct behaviour).
    ///
    /// # Errors
    ///
    /// [`ControlError::Exchange`], also when the replica refuses (it is not declared
    /// Byzantine).
    pub async fn behave(
        &self,
        behaviours: Vec<crate::byzantine::Behaviour>,
    ) -> Result<(), ControlError> {
        match self.exchange(&ControlRequest::Behave { behaviours }).await? {
            ControlResponse::Behaving => Ok(()),
            ControlResponse::Refused { reason } => Err(self.exchange_error(reason)),
            other => Err(self.exchange_error(format!("unexpected answer {other:?}"))),
        }
    }

    /// Tells the replica to reconnect its link to `peer`.
    ///
    /// # Errors
    ///
    /// [`ControlError::Exchange`].
    pub async fn reconnect(&self, peer: ReplicaId) -> Result<(), ControlError> {
        match self.exchange(&ControlRequest::Reconnect { peer: peer.0 }).await? {
            ControlResponse::Reconnecting => Ok(()),
            ControlResponse::Refused { reason } => Err(self.exchange_error(reason)),
            other => Err(self.exchange_error(format!("unexpected answer {other:?}"))),
        }
    }

    fn exchange_error(&self, reason: String) -> ControlError {
        ControlError::Exchange { replica: self.replica, reason }
    }

    /// One request and its answer, within [`CONTROL_TIMEOUT`] (a replica that is gone or
    /// paused must not stall the controller).
    async fn exchange(&self, request: &ControlRequest) -> Result<ControlResponse, ControlError> {
        tokio::time::timeout(CONTROL_TIMEOUT, self.exchange_unbounded(request))
            .await
            .map_err(|_| self.exchange_error("no answer within the control timeout".into()))?
    }

    async fn exchange_unbounded(
        &self,
        request: &ControlRequest,
    ) -> Result<ControlResponse, ControlError> {
        let failed = |error: &dyn std::fmt::Display| self.exchange_error(error.to_string());
        let (mut send, mut recv) =
            self.connection.open_bi().await.map_err(|error| failed(&error))?;
        let bytes = serde_json::to_vec(request).expect("control requests serialize");
        write_frame(&mut send, &bytes).await.map_err(|error| failed(&error))?;
        send.finish().map_err(|error| failed(&error))?;
        let frame = read_frame(&mut recv, CONTROL_FRAME_MAX)
            .await
            .map_err(|error| failed(&error))?
            .ok_or_else(|| failed(&FrameError::Truncated))?;
        serde_json::from_slice(&frame).map_err(|error| failed(&error))
    }
}
