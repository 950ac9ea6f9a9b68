//! A stand-in controller that lets a test send any command to a real agent.
//!
//! The real controller only ever asks for nova-compute's restart, so it
//! cannot show that the agent rejects other units by itself. This stand-in
//! serves the real `AgentService` on 127.0.0.1, accepts the agent's stream,
//! records what the agent sends and sends the commands the test gives it.
//! It runs its own tokio runtime, so tests drive it with plain blocking calls
//! next to the blocking container harness.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use novamedic_proto::v1::agent_message::Body as AgentBody;
use novamedic_proto::v1::agent_service_server::{AgentService, AgentServiceServer};
use novamedic_proto::v1::controller_message::Body as ControllerBody;
use novamedic_proto::v1::{
    AgentMessage, Command, CommandResult, ControllerMessage, Hello, HelloAck,
};
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::{TcpListenerStream, UnboundedReceiverStream};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status, Streaming};

const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// What the agent sent, and the way down its current stream.
#[derive(Default)]
struct Recorded {
    hellos: Vec<Hello>,
    reports: u64,
    results: Vec<CommandResult>,
    downstream: Option<mpsc::UnboundedSender<Result<ControllerMessage, Status>>>,
}

#[derive(Clone, Default)]
struct Service {
    recorded: Arc<Mutex<Recorded>>,
}

#[tonic::async_trait]
impl AgentService for Service {
    type AttachStream = UnboundedReceiverStream<Result<ControllerMessage, Status>>;

    async fn attach(
        &self,
        request: Request<Streaming<AgentMessage>>,
    ) -> Result<Response<Self::AttachStream>, Status> {
        let mut upstream = request.into_inner();
        let hello = match upstream.next().await {
            Some(Ok(AgentMessage {
                body: Some(AgentBody::Hello(hello)),
            })) => hello,
            other => {
                return Err(Status::invalid_argument(format!(
                    "expected Hello, got {other:?}"
                )))
            }
        };

        let (sender, receiver) = mpsc::unbounded_channel();
        let ack = ControllerMessage {
            body: Some(ControllerBody::HelloAck(HelloAck {
                protocol_version: novamedic_proto::PROTOCOL_VERSION,
                controller_version: "fake-controller".to_string(),
            })),
        };
        let _ = sender.send(Ok(ack));
        {
            let mut recorded = self.recorded.lock().unwrap();
            recorded.hellos.push(hello);
            recorded.downstream = Some(sender);
        }

        let recorded = Arc::clone(&self.recorded);
        tokio::spawn(async move {
            while let Some(Ok(message)) = upstream.next().await {
                let mut recorded = recorded.lock().unwrap();
                match message.body {
                    Some(AgentBody::Report(_)) => recorded.reports += 1,
                    Some(AgentBody::CommandResult(result)) => recorded.results.push(result),
                    Some(AgentBody::Hello(_)) | None => {}
                }
            }
        });
        Ok(Response::new(UnboundedReceiverStream::new(receiver)))
    }
}

/// A running stand-in controller. Dropping it stops it.
pub struct FakeController {
    address: SocketAddr,
    recorded: Arc<Mutex<Recorded>>,
    shutdown: Option<oneshot::Sender<()>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl FakeController {
    /// Starts serving on a free port of 127.0.0.1.
    pub fn start() -> Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .context("cannot start the stand-in controller's runtime")?;
        let listener = runtime.block_on(tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))?;
        let address = listener.local_addr()?;

        let service = Service::default();
        let recorded = Arc::clone(&service.recorded);
        let (shutdown, shutdown_signal) = oneshot::channel::<()>();
        runtime.spawn(async move {
            let server = tonic::transport::Server::builder()
                .add_service(AgentServiceServer::new(service))
                .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                    let _ = shutdown_signal.await;
                });
            if let Err(err) = server.await {
                eprintln!("stand-in controller failed: {err}");
            }
        });
        Ok(FakeController {
            address,
            recorded,
            shutdown: Some(shutdown),
            runtime: Some(runtime),
        })
    }

    /// URL for the agent's `controller` key.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Waits for the agent's Hello and returns it.
    pub fn wait_for_hello(&self, timeout: Duration) -> Result<Hello> {
        self.wait_for(timeout, "a Hello from the agent", |recorded| {
            recorded.hellos.last().cloned()
        })
    }

    /// Waits until the agent has sent at least `count` reports.
    pub fn wait_for_reports(&self, count: u64, timeout: Duration) -> Result<()> {
        self.wait_for(timeout, "reports from the agent", |recorded| {
            (recorded.reports >= count).then_some(())
        })
    }

    /// Sends `command` down the agent's current stream.
    pub fn send_command(&self, command: Command) -> Result<()> {
        let recorded = self.recorded.lock().unwrap();
        let Some(downstream) = recorded.downstream.as_ref() else {
            bail!("no agent is connected to the stand-in controller");
        };
        let message = ControllerMessage {
            body: Some(ControllerBody::Command(command)),
        };
        downstream
            .send(Ok(message))
            .map_err(|_| anyhow::anyhow!("the agent's stream is closed"))
    }

    /// Waits for the result of `command_id` and returns it.
    pub fn wait_for_result(&self, command_id: &str, timeout: Duration) -> Result<CommandResult> {
        self.wait_for(timeout, "the command's result", |recorded| {
            recorded
                .results
                .iter()
                .find(|r| r.command_id == command_id)
                .cloned()
        })
    }

    fn wait_for<T>(
        &self,
        timeout: Duration,
        what: &str,
        mut found: impl FnMut(&Recorded) -> Option<T>,
    ) -> Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = found(&self.recorded.lock().unwrap()) {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!("stand-in controller got no {what} within {timeout:?}");
            }
            thread::sleep(POLL_INTERVAL);
        }
    }
}

impl Drop for FakeController {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}
