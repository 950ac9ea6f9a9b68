//! The controller's OperatorService as the bench reads it: the generated
//! gRPC client on its own tokio runtime, driven with blocking calls.

use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use novamedic_proto::v1::operator_service_client::OperatorServiceClient;
use novamedic_proto::v1::{HealthStatus, ListNodesRequest, NodeStatus};
use tokio::runtime::Runtime;
use tonic::transport::Channel;

/// A connected OperatorService client.
pub struct Operator {
    runtime: Runtime,
    client: OperatorServiceClient<Channel>,
}

/// When a polled condition first held.
#[derive(Debug, Clone)]
pub struct Seen {
    pub at: Instant,
    /// `CLOCK_MONOTONIC` at the same moment, in microseconds.
    pub monotonic_us: u64,
}

impl Operator {
    /// Connects to the controller at `url` (`http://127.0.0.1:PORT`).
    pub fn connect(url: &str) -> Result<Self> {
        // One worker keeps the HTTP/2 connection served (PING answers
        // included) while the bench thread sleeps between calls; a
        // current-thread runtime would leave it unpolled, and the
        // controller's keepalive would close it during a long window.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()?;
        let client = runtime
            .block_on(OperatorServiceClient::connect(url.to_string()))
            .with_context(|| format!("cannot connect to the controller at {url}"))?;
        Ok(Operator { runtime, client })
    }

    /// Returns `node`'s status from one ListNodes call.
    pub fn node(&mut self, node: &str) -> Result<Option<NodeStatus>> {
        let response = self
            .runtime
            .block_on(self.client.list_nodes(ListNodesRequest {}))
            .context("ListNodes failed")?;
        Ok(response
            .into_inner()
            .nodes
            .into_iter()
            .find(|status| status.node == node))
    }

    /// Calls ListNodes every `period` until `node` satisfies `accept` and
    /// returns the moment the response arrived. An RPC error is an error.
    pub fn poll_until(
        &mut self,
        node: &str,
        period: Duration,
        timeout: Duration,
        what: &str,
        accept: impl Fn(&NodeStatus) -> bool,
    ) -> Result<Seen> {
        let started = Instant::now();
        let mut last = None;
        while started.elapsed() < timeout {
            let status = self.node(node)?;
            if let Some(status) = status {
                if accept(&status) {
                    return Ok(Seen {
                        at: Instant::now(),
                        monotonic_us: crate::proc_stats::monotonic_us(),
                    });
                }
                last = Some(status);
            }
            thread::sleep(period);
        }
        bail!("node {node} was not {what} within {timeout:?}; last status: {last:?}")
    }
}

/// Whether the controller shows `status` healthy with nova-compute active.
pub fn is_healthy(status: &NodeStatus) -> bool {
    let health = status.health.as_ref().map(|h| h.status);
    let active = status
        .report
        .as_ref()
        .and_then(|r| r.nova_compute.as_ref())
        .is_some_and(|n| n.active_state == "active");
    status.connected && health == Some(HealthStatus::Healthy as i32) && active
}

/// Whether the controller shows `status` failed.
pub fn is_failed(status: &NodeStatus) -> bool {
    status.health.as_ref().map(|h| h.status) == Some(HealthStatus::Failed as i32)
}

/// Returns the sequence number of the node's latest report, 0 before one.
pub fn report_sequence(status: &NodeStatus) -> u64 {
    status.report.as_ref().map_or(0, |r| r.sequence)
}
