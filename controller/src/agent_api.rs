//! The gRPC service agents dial: one long-lived `Attach` stream per agent.
//!
//! Under mutual TLS a node's identity is its certificate's Common Name: the
//! Hello must claim that name, the certificate's OU must be `node`, and a
//! node connected under one certificate cannot be taken over by a stream
//! with another. In plain-text mode the Hello's claim is trusted.

use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{Stream, StreamExt};
use novamedic_proto::v1::agent_message::Body;
use novamedic_proto::v1::agent_service_server::AgentService;
use novamedic_proto::{v1, PROTOCOL_VERSION};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::clock::now_unix_ms;
use crate::controller::policy::observation_from_report;

use novamedic_tls::{CertKind, PeerIdentity};

use crate::auth::Authority;
use crate::controller::Controller;
use crate::fleet::StreamPeer;
use crate::report_timing::ReportTiming;
use crate::store::HelloRecord;

/// Time an agent has to send its Hello after opening the stream.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Messages buffered down one agent's stream. The stream carries only the
/// HelloAck and commands, which are rare.
const STREAM_BUFFER: usize = 16;

type ControllerStream = Pin<Box<dyn Stream<Item = Result<v1::ControllerMessage, Status>> + Send>>;

/// The `AgentService` implementation.
#[derive(Clone, Debug)]
pub struct AgentApi {
    controller: Arc<Controller>,
    authority: Arc<Authority>,
}

impl AgentApi {
    pub fn new(controller: Arc<Controller>, authority: Arc<Authority>) -> Self {
        AgentApi {
            controller,
            authority,
        }
    }

    /// Checks that `certificate` proves the node `hello` claims. A mismatch
    /// is recorded as an event on the certificate's node.
    async fn check_certificate(
        &self,
        hello: &v1::Hello,
        certificate: &PeerIdentity,
        peer: &str,
    ) -> Result<(), Status> {
        if certificate.kind != Some(CertKind::Node) {
            return Err(Status::permission_denied(format!(
                "{} is not a node certificate (its OU is not \"node\"); an agent needs one \
                 issued with `novamedic certs issue --kind node`",
                certificate.describe()
            )));
        }
        let claimed = hello.node.trim();
        if claimed == certificate.name {
            return Ok(());
        }
        let detail = format!(
            "rejected a stream from {peer} that claimed node {claimed:?} with the certificate of {}",
            certificate.describe()
        );
        self.controller
            .record_rejected_stream(&certificate.name, detail)
            .await;
        Err(Status::permission_denied(format!(
            "the Hello claims node {claimed:?} but the client certificate is issued to {:?}; \
             set the agent's node name to the certificate's name or use that node's certificate",
            certificate.name
        )))
    }
}

#[tonic::async_trait]
impl AgentService for AgentApi {
    type AttachStream = ControllerStream;

    async fn attach(
        &self,
        request: Request<Streaming<v1::AgentMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let peer = request
            .remote_addr()
            .map_or_else(|| "unknown".to_string(), |addr| addr.to_string());
        let certificate = self.authority.peer(&request)?;
        let mut inbound = request.into_inner();
        let hello = read_hello(&mut inbound).await.inspect_err(|status| {
            tracing::warn!(peer = %peer, error = %status.message(), "stream rejected");
        })?;
        check_hello(&hello).inspect_err(|status| {
            tracing::warn!(peer = %peer, node = ?hello.node, error = %status.message(), "stream rejected");
        })?;
        if let Some(certificate) = &certificate {
            self.check_certificate(&hello, certificate, &peer)
                .await
                .inspect_err(|status| {
                    tracing::warn!(peer = %peer, node = ?hello.node, error = %status.message(), "stream rejected");
                })?;
        }

        let (sender, receiver) = mpsc::channel(STREAM_BUFFER);
        sender
            .try_send(hello_ack())
            .map_err(|_| Status::internal("cannot queue the HelloAck on a new stream"))?;
        let record = hello_record(hello);
        let node = record.node.clone();
        let connection_id = self
            .controller
            .accept_hello(
                record,
                sender,
                StreamPeer {
                    address: peer.clone(),
                    certificate,
                },
            )
            .await
            .map_err(|conflict| {
                Status::permission_denied(format!(
                    "node {node} is already connected under certificate {}; a second \
                     certificate for the same node is rejected while that stream is open",
                    conflict.connected.describe()
                ))
            })?;

        let controller = Arc::clone(&self.controller);
        tokio::spawn(read_stream(controller, node, connection_id, inbound));
        let outbound = ReceiverStream::new(receiver).map(Ok);
        Ok(Response::new(Box::pin(outbound)))
    }
}

async fn read_hello(inbound: &mut Streaming<v1::AgentMessage>) -> Result<v1::Hello, Status> {
    let first = tokio::time::timeout(HELLO_TIMEOUT, inbound.message())
        .await
        .map_err(|_| {
            Status::invalid_argument(format!(
                "no Hello within {} s of opening the stream; the first message must be a Hello",
                HELLO_TIMEOUT.as_secs()
            ))
        })??;
    match first.and_then(|message| message.body) {
        Some(Body::Hello(hello)) => Ok(hello),
        Some(other) => Err(Status::invalid_argument(format!(
            "the first message of an Attach stream must be a Hello, not a {}",
            body_name(&other)
        ))),
        None => Err(Status::invalid_argument(
            "the stream ended or sent an empty message before its Hello",
        )),
    }
}

/// Longest node name accepted: the length limit of a DNS name.
const MAX_NODE_NAME_BYTES: usize = 253;

/// Longest report interval accepted. Staleness is judged from the interval,
/// so an absurd value would keep a silent node from ever turning stale.
const MAX_REPORT_INTERVAL_MS: u64 = 3_600_000;

fn check_hello(hello: &v1::Hello) -> Result<(), Status> {
    check_node_name(hello.node.trim())?;
    let interval_ms = hello.report_interval_ms;
    if interval_ms == 0 || interval_ms > MAX_REPORT_INTERVAL_MS {
        return Err(Status::invalid_argument(format!(
            "Hello.report_interval_ms is {interval_ms}; it must be between 1 and \
             {MAX_REPORT_INTERVAL_MS} (one hour)"
        )));
    }
    let version = hello.protocol_version;
    if version == 0 || version > PROTOCOL_VERSION {
        return Err(Status::failed_precondition(format!(
            "agent on {} speaks protocol version {version}, but this controller speaks version \
             {PROTOCOL_VERSION}; run agent and controller releases that share a protocol version",
            hello.node
        )));
    }
    Ok(())
}

/// Accepts host names and FQDNs: 1 to 253 bytes of `A-Z a-z 0-9 . _ -`.
fn check_node_name(node: &str) -> Result<(), Status> {
    if node.is_empty() {
        return Err(Status::invalid_argument(
            "Hello.node is empty; the agent must announce the node's host name",
        ));
    }
    if node.len() > MAX_NODE_NAME_BYTES {
        return Err(Status::invalid_argument(format!(
            "Hello.node is {} bytes long; a node name is a host name of at most \
             {MAX_NODE_NAME_BYTES} bytes",
            node.len()
        )));
    }
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if let Some(bad) = node.chars().find(|&c| !allowed(c)) {
        return Err(Status::invalid_argument(format!(
            "Hello.node {node:?} contains {bad:?}; a node name may contain only the letters \
             A-Z and a-z, digits, '.', '_' and '-'"
        )));
    }
    Ok(())
}

/// Reads an accepted stream until it ends, was replaced, or failed.
async fn read_stream(
    controller: Arc<Controller>,
    node: String,
    connection_id: u64,
    mut inbound: Streaming<v1::AgentMessage>,
) {
    let timing = ReportTiming::enabled().then(|| controller.report_timing());
    let detail = loop {
        let message = match inbound.message().await {
            Ok(Some(message)) => message,
            Ok(None) => break "the agent closed the stream".to_string(),
            Err(status) => break format!("the stream failed: {}", status.message()),
        };
        match message.body {
            Some(Body::Report(report)) => {
                let arrived = Instant::now();
                controller.metrics().report_received();
                let collected_at_unix_ms = report.collected_at_unix_ms;
                let observation = observation_from_report(&report, now_unix_ms());
                let applied = controller.accept_report(&node, connection_id, report).await;
                let Ok(applied_at_unix_ms) = applied else {
                    tracing::info!(node = ?node, connection_id, "stream was replaced; stop reading it");
                    return;
                };
                controller.evaluate_policy(&node, observation).await;
                controller.metrics().report_processed(arrived.elapsed());
                if let Some(timing) = &timing {
                    timing.record(collected_at_unix_ms, applied_at_unix_ms, arrived.elapsed());
                }
            }
            Some(Body::CommandResult(result)) => {
                controller.accept_command_result(&node, result).await;
            }
            Some(Body::Hello(_)) => {
                tracing::warn!(node = ?node, connection_id, "ignoring a second Hello on an open stream");
            }
            None => {
                tracing::warn!(node = ?node, connection_id, "ignoring a message without a known body");
            }
        }
    };
    controller.close_stream(&node, connection_id, detail).await;
}

fn hello_ack() -> v1::ControllerMessage {
    v1::ControllerMessage {
        body: Some(v1::controller_message::Body::HelloAck(v1::HelloAck {
            protocol_version: PROTOCOL_VERSION,
            controller_version: crate::VERSION.to_string(),
        })),
    }
}

fn hello_record(hello: v1::Hello) -> HelloRecord {
    HelloRecord {
        node: hello.node.trim().to_string(),
        agent_version: hello.agent_version,
        protocol_version: hello.protocol_version,
        capabilities: hello.capabilities,
        unit: hello.nova_compute_unit,
        report_interval_ms: hello.report_interval_ms,
    }
}

fn body_name(body: &Body) -> &'static str {
    match body {
        Body::Hello(_) => "Hello",
        Body::Report(_) => "NodeReport",
        Body::CommandResult(_) => "CommandResult",
    }
}
