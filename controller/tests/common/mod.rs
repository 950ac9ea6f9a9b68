//! Shared pieces of the controller's integration tests: an in-process
//! controller on 127.0.0.1:0 and a fake agent speaking the real gRPC protocol.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use novamedic::alerting::config::AlertingConfig;
use novamedic::config::ServerConfig;
use novamedic_proto::v1;
use novamedic_proto::v1::agent_service_client::AgentServiceClient;
use novamedic_proto::v1::operator_service_client::OperatorServiceClient;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;

/// A controller served in-process on a loopback port with a temporary DB.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The `/metrics` listener, when started with one.
    pub metrics_addr: Option<SocketAddr>,
    pub db: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub async fn start() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = dir.path().join("state").join("novamedic.db");
        let mut server = Self::start_on(db).await;
        server._dir = Some(dir);
        server
    }

    /// Starts a controller on an existing database path (kept by the caller).
    pub async fn start_on(db: PathBuf) -> Self {
        Self::start_with(db, novamedic::policy::Policy::default()).await
    }

    /// Starts a controller with a given self-healing policy.
    pub async fn start_with(db: PathBuf, policy: novamedic::policy::Policy) -> Self {
        Self::start_observed(db, policy, AlertingConfig::default(), false).await
    }

    /// Starts a controller with a policy and alerting settings, and a
    /// `/metrics` listener on 127.0.0.1:0 when `with_metrics` is set.
    pub async fn start_observed(
        db: PathBuf,
        policy: novamedic::policy::Policy,
        alerting: AlertingConfig,
        with_metrics: bool,
    ) -> Self {
        Self::start_full(db, policy, alerting, with_metrics, None).await
    }

    /// Starts a controller with a policy and an `[openstack]` table.
    pub async fn start_configured(
        db: PathBuf,
        policy: novamedic::policy::Policy,
        openstack: Option<novamedic::config::OpenStackSettings>,
    ) -> Self {
        Self::start_full(db, policy, AlertingConfig::default(), false, openstack).await
    }

    async fn start_full(
        db: PathBuf,
        policy: novamedic::policy::Policy,
        alerting: AlertingConfig,
        with_metrics: bool,
        openstack: Option<novamedic::config::OpenStackSettings>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let metrics_listener = match with_metrics {
            true => Some(
                tokio::net::TcpListener::bind("127.0.0.1:0")
                    .await
                    .expect("bind loopback"),
            ),
            false => None,
        };
        let metrics_addr = metrics_listener
            .as_ref()
            .map(|listener| listener.local_addr().unwrap());
        let config = ServerConfig {
            db: db.clone(),
            shutdown_drain: Duration::from_secs(2),
            policy,
            policy_source: "test".to_string(),
            transport: novamedic::config::Transport::Plaintext,
            alerting,
            openstack,
            ..ServerConfig::default()
        };
        let (stop, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let stopped = async {
                let _ = stop_rx.await;
            };
            match metrics_listener {
                Some(metrics) => {
                    novamedic::server::serve_with_metrics_listener(
                        listener, metrics, &config, stopped,
                    )
                    .await
                }
                None => novamedic::server::serve_with_listener(listener, &config, stopped).await,
            }
        });
        let server = TestServer {
            addr,
            metrics_addr,
            db,
            stop: Some(stop),
            task,
            _dir: None,
        };
        server.wait_until_serving().await;
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub async fn operator(&self) -> OperatorServiceClient<Channel> {
        OperatorServiceClient::connect(self.url())
            .await
            .expect("operator client connects")
    }

    /// Stops the controller and waits for its graceful shutdown.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("controller stops within 10 s")
            .expect("server task joins");
        result.expect("controller shuts down cleanly");
    }

    /// Waits until a ListNodes call succeeds. A connection alone is not enough: the
    /// listener is bound before the server opens the store and takes its
    /// lock, and a test that starts a second controller relies on that lock.
    async fn wait_until_serving(&self) {
        for _ in 0..100 {
            if let Ok(mut client) = OperatorServiceClient::connect(self.url()).await {
                if client.list_nodes(v1::ListNodesRequest {}).await.is_ok() {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("controller at {} did not start serving", self.addr);
    }
}

/// A fake agent: the real generated client on one `Attach` stream.
pub struct FakeAgent {
    pub node: String,
    outbound: mpsc::Sender<v1::AgentMessage>,
    inbound: tonic::Streaming<v1::ControllerMessage>,
    sequence: u64,
}

pub fn hello(node: &str) -> v1::Hello {
    v1::Hello {
        node: node.to_string(),
        agent_version: "0.1.0-test".to_string(),
        protocol_version: novamedic_proto::PROTOCOL_VERSION,
        capabilities: vec![novamedic_proto::CAPABILITY_RESTART_UNIT.to_string()],
        nova_compute_unit: "nova-compute.service".to_string(),
        report_interval_ms: 10_000,
    }
}

/// Opens an `Attach` stream and sends `first` as its first message; returns
/// the stream's halves or the controller's error status.
pub async fn attach(
    addr: SocketAddr,
    first: v1::AgentMessage,
) -> Result<
    (
        mpsc::Sender<v1::AgentMessage>,
        tonic::Streaming<v1::ControllerMessage>,
    ),
    tonic::Status,
> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .expect("agent client connects");
    attach_on(channel, first).await
}

/// Opens an `Attach` stream on `channel`, as [`attach`] does.
pub async fn attach_on(
    channel: Channel,
    first: v1::AgentMessage,
) -> Result<
    (
        mpsc::Sender<v1::AgentMessage>,
        tonic::Streaming<v1::ControllerMessage>,
    ),
    tonic::Status,
> {
    let mut client = AgentServiceClient::new(channel);
    let (outbound, rx) = mpsc::channel(64);
    outbound.send(first).await.unwrap();
    let response = client.attach(ReceiverStream::new(rx)).await?;
    Ok((outbound, response.into_inner()))
}

impl FakeAgent {
    pub async fn connect(addr: SocketAddr, hello: v1::Hello) -> Self {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .expect("agent client connects");
        Self::connect_on(channel, hello).await
    }

    /// Attaches on `channel`, which may carry a TLS client certificate.
    pub async fn connect_on(channel: Channel, hello: v1::Hello) -> Self {
        let node = hello.node.clone();
        let first = v1::AgentMessage {
            body: Some(v1::agent_message::Body::Hello(hello)),
        };
        let (outbound, mut inbound) = attach_on(channel, first)
            .await
            .expect("controller accepts the Hello");
        let ack = inbound
            .message()
            .await
            .expect("stream open")
            .expect("HelloAck");
        assert!(
            matches!(ack.body, Some(v1::controller_message::Body::HelloAck(_))),
            "first message down the stream is a HelloAck: {ack:?}"
        );
        FakeAgent {
            node,
            outbound,
            inbound,
            sequence: 0,
        }
    }

    pub async fn send_report(&mut self, mut report: v1::NodeReport) {
        self.sequence += 1;
        report.sequence = self.sequence;
        self.send(v1::agent_message::Body::Report(report)).await;
    }

    /// Sends a report; returns false once the stream is closed.
    pub async fn send_report_checked(&mut self, mut report: v1::NodeReport) -> bool {
        self.sequence += 1;
        report.sequence = self.sequence;
        let message = v1::AgentMessage {
            body: Some(v1::agent_message::Body::Report(report)),
        };
        self.outbound.send(message).await.is_ok()
    }

    pub async fn send_result(&self, result: v1::CommandResult) {
        self.send(v1::agent_message::Body::CommandResult(result))
            .await;
    }

    async fn send(&self, body: v1::agent_message::Body) {
        self.outbound
            .send(v1::AgentMessage { body: Some(body) })
            .await
            .expect("agent stream open");
    }

    /// Waits for the next command down the stream.
    pub async fn next_command(&mut self) -> v1::Command {
        let message = tokio::time::timeout(Duration::from_secs(10), self.inbound.message())
            .await
            .expect("a command within 10 s")
            .expect("stream healthy")
            .expect("stream still open");
        match message.body {
            Some(v1::controller_message::Body::Command(command)) => command,
            other => panic!("expected a Command, got {other:?}"),
        }
    }

    /// Returns whether the controller ended the stream.
    pub async fn stream_ended(&mut self) -> bool {
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.inbound.message()).await,
            Ok(Ok(None)) | Ok(Err(_))
        )
    }

    /// Replies to every command with `outcome` until the stream ends.
    pub fn answer_commands(
        mut self,
        outcome: v1::CommandOutcome,
    ) -> tokio::task::JoinHandle<Vec<v1::Command>> {
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while let Ok(Some(message)) = self.inbound.message().await {
                if let Some(v1::controller_message::Body::Command(command)) = message.body {
                    let result = v1::AgentMessage {
                        body: Some(v1::agent_message::Body::CommandResult(succeeded_result(
                            &command, outcome,
                        ))),
                    };
                    if self.outbound.send(result).await.is_err() {
                        break;
                    }
                    seen.push(command);
                }
            }
            seen
        })
    }
}

pub fn succeeded_result(command: &v1::Command, outcome: v1::CommandOutcome) -> v1::CommandResult {
    v1::CommandResult {
        command_id: command.command_id.clone(),
        outcome: outcome as i32,
        detail: "restarted by the fake agent".to_string(),
        before: Some(v1::UnitInstance {
            main_pid: 100,
            invocation_id: "aaaa".to_string(),
            active_state: "active".to_string(),
        }),
        after: Some(v1::UnitInstance {
            main_pid: 200,
            invocation_id: "bbbb".to_string(),
            active_state: "active".to_string(),
        }),
        duration_ms: 1234,
        replayed: false,
        log_search: None,
    }
}

pub fn report(status: v1::HealthStatus, active_state: &str, reasons: &[&str]) -> v1::NodeReport {
    v1::NodeReport {
        trigger: v1::ReportTrigger::Periodic as i32,
        resources: Some(v1::Resources {
            cpu_count: 4,
            cpu_usage_percent: 25.0,
            memory_total_bytes: 16 << 30,
            memory_used_bytes: 4 << 30,
            memory_available_bytes: 12 << 30,
            instances_path: "/var/lib/nova/instances".to_string(),
            filesystems: vec![v1::Filesystem {
                mount_point: "/".to_string(),
                fs_type: "ext4".to_string(),
                source: "/dev/vda1".to_string(),
                total_bytes: 100 << 30,
                available_bytes: 40 << 30,
                holds_instances: true,
            }],
            ..Default::default()
        }),
        guests: Some(v1::Guests {
            count: 2,
            vcpus: 4,
            memory_bytes: 8 << 30,
            guests: Vec::new(),
            ..Default::default()
        }),
        nova_compute: Some(v1::NovaCompute {
            unit: "nova-compute.service".to_string(),
            active_state: active_state.to_string(),
            sub_state: if active_state == "active" {
                "running"
            } else {
                "failed"
            }
            .to_string(),
            main_pid: 100,
            invocation_id: "aaaa".to_string(),
            process: (active_state == "active").then(|| v1::Process {
                pid: 100,
                state: "S".to_string(),
                command_line: "/usr/bin/python3 /usr/bin/nova-compute".to_string(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        health: Some(v1::Health {
            status: status as i32,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        }),
        ..Default::default()
    }
}

/// Polls `check` every 50 ms until it returns true or `within` passes.
pub async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < deadline {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// Returns a node's events, oldest first; all events for an empty node.
pub async fn node_events(
    client: &mut OperatorServiceClient<Channel>,
    node: &str,
) -> Vec<v1::Event> {
    let mut events = client
        .list_events(v1::ListEventsRequest {
            node: node.to_string(),
            limit: 1000,
        })
        .await
        .expect("events listed")
        .into_inner()
        .events;
    events.reverse();
    events
}

/// Returns the kinds of a node's events, oldest first.
pub async fn event_kinds(client: &mut OperatorServiceClient<Channel>, node: &str) -> Vec<String> {
    node_events(client, node)
        .await
        .into_iter()
        .map(|e| e.kind)
        .collect()
}
