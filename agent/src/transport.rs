//! The agent's gRPC stream to the controller.
//!
//! One task keeps a stream open and reconnects with exponential backoff and
//! full jitter when it breaks. Collection does not depend on the stream:
//! unit state changes are recorded by `TransitionLog` while the controller is
//! unreachable and ride on the first report after the reconnect, and command
//! results that could not be sent are kept and sent after the next Hello.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use novamedic_proto::v1::agent_message::Body as UpBody;
use novamedic_proto::v1::agent_service_client::AgentServiceClient;
use novamedic_proto::v1::controller_message::Body as DownBody;
use novamedic_proto::v1::{self, AgentMessage, ReportTrigger};
use novamedic_tls::TlsMaterial;
use rand::Rng;
use tokio::sync::{mpsc, watch, Notify};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{ClientTlsConfig, Endpoint, Identity};

use crate::config::AgentConfig;
use crate::executor::Executor;
use crate::probe::ProbeHandle;
use crate::report::ReportBuilder;
use crate::systemd::{ServiceManager, UnitObservation};

/// Unit transitions kept while the controller is unreachable. At one change
/// per second this covers a few minutes of flapping; older entries are
/// dropped first and the drop is logged.
const MAX_BUFFERED_TRANSITIONS: usize = 256;

/// Command results kept while the controller is unreachable.
const MAX_UNDELIVERED_RESULTS: usize = 64;

/// First reconnect delay; doubles up to `MAX_BACKOFF`.
const INITIAL_BACKOFF: Duration = Duration::from_millis(500);

/// Upper bound of the reconnect delay. Kept well under 30 s so an agent is
/// back within half a minute of the controller's return.
const MAX_BACKOFF: Duration = Duration::from_secs(15);

/// Time the controller has to reply to Hello with HelloAck.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Time allowed to establish the TCP and HTTP/2 connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Capabilities this agent announces in Hello.
pub fn capabilities() -> Vec<String> {
    vec![
        novamedic_proto::CAPABILITY_RESTART_UNIT.to_string(),
        novamedic_proto::CAPABILITY_RESET_FAILED.to_string(),
        novamedic_proto::CAPABILITY_SEARCH_LOGS.to_string(),
    ]
}

/// Milliseconds since the Unix epoch on the agent's clock.
pub fn unix_ms_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Records nova-compute's unit state changes, whether or not the controller
/// is reachable, and wakes the stream to send a report at once.
#[derive(Default)]
pub struct TransitionLog {
    pending: Mutex<VecDeque<v1::UnitTransition>>,
    changed: Notify,
}

impl TransitionLog {
    /// Appends a transition, dropping the oldest when the buffer is full.
    pub fn push(&self, transition: v1::UnitTransition) {
        let mut pending = self.pending.lock().expect("transition log lock poisoned");
        if pending.len() == MAX_BUFFERED_TRANSITIONS {
            pending.pop_front();
            tracing::warn!(
                max = MAX_BUFFERED_TRANSITIONS,
                "unit transition buffer full; dropped the oldest transition"
            );
        }
        pending.push_back(transition);
        drop(pending);
        self.changed.notify_one();
    }

    /// Takes every buffered transition, oldest first.
    pub fn drain(&self) -> Vec<v1::UnitTransition> {
        let mut pending = self.pending.lock().expect("transition log lock poisoned");
        pending.drain(..).collect()
    }

    /// Puts transitions back at the front after a failed send.
    fn restore(&self, transitions: Vec<v1::UnitTransition>) {
        let mut pending = self.pending.lock().expect("transition log lock poisoned");
        for transition in transitions.into_iter().rev() {
            if pending.len() == MAX_BUFFERED_TRANSITIONS {
                break;
            }
            pending.push_front(transition);
        }
    }

    /// Waits until a transition is pushed.
    pub async fn changed(&self) {
        self.changed.notified().await
    }
}

/// Builds the transition for an observed unit state.
fn transition_of(observation: &UnitObservation) -> v1::UnitTransition {
    let mut transition = v1::UnitTransition {
        seen_at_unix_ms: unix_ms_now(),
        ..Default::default()
    };
    if let UnitObservation::Known(snapshot) = observation {
        transition.active_state = snapshot.active_state.clone();
        transition.sub_state = snapshot.sub_state.clone();
        transition.result = snapshot.result.clone();
        transition.main_pid = snapshot.main_pid;
        transition.invocation_id = snapshot.invocation_id.clone();
    }
    transition
}

/// Whether two observations differ in a way the controller must hear about
/// at once.
fn observation_changed(previous: &UnitObservation, current: &UnitObservation) -> bool {
    match (previous, current) {
        (UnitObservation::Known(a), UnitObservation::Known(b)) => a.state_differs(b),
        (
            UnitObservation::Unknown { reason: a, .. },
            UnitObservation::Unknown { reason: b, .. },
        ) => a != b,
        _ => true,
    }
}

/// Starts a task that feeds `log` from the unit watch until the watch ends.
/// The observation current at the call is the baseline, so only later
/// changes are recorded.
pub fn spawn_transition_recorder(
    mut unit_rx: watch::Receiver<UnitObservation>,
    log: Arc<TransitionLog>,
) -> tokio::task::JoinHandle<()> {
    let mut previous = unit_rx.borrow_and_update().clone();
    tokio::spawn(async move {
        while unit_rx.changed().await.is_ok() {
            let current = unit_rx.borrow_and_update().clone();
            if observation_changed(&previous, &current) {
                tracing::info!(observation = ?current, "nova-compute unit changed state");
                log.push(transition_of(&current));
            }
            previous = current;
        }
    })
}

/// Everything the stream needs, shared between reconnects.
pub struct Transport<M: ServiceManager> {
    config: AgentConfig,
    executor: Arc<Executor<M>>,
    builder: Arc<Mutex<ReportBuilder>>,
    unit_rx: watch::Receiver<UnitObservation>,
    transitions: Arc<TransitionLog>,
    undelivered: Arc<Mutex<VecDeque<v1::CommandResult>>>,
    sequence: u64,
    /// Whether the current stream reached HelloAck.
    connected: bool,
    /// Wakes the stream to report when the RPC probe changes state.
    probe: ProbeHandle,
    /// The TLS files as last loaded without error. They are read again
    /// before each connection, so renewed certificates and CRLs apply at
    /// the next reconnect; a failed read keeps these.
    tls_material: Option<TlsMaterial>,
}

/// Cause of a stream's end.
#[derive(Debug, thiserror::Error)]
enum SessionError {
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("controller rejected the stream: {0}")]
    Rejected(tonic::Status),
    #[error("stream broken: {0}")]
    Broken(String),
    #[error("controller did not answer Hello within {0:?}")]
    HelloTimeout(Duration),
}

impl<M: ServiceManager> Transport<M> {
    pub fn new(
        config: AgentConfig,
        executor: Arc<Executor<M>>,
        builder: ReportBuilder,
        unit_rx: watch::Receiver<UnitObservation>,
        transitions: Arc<TransitionLog>,
    ) -> Self {
        Transport {
            config,
            executor,
            builder: Arc::new(Mutex::new(builder)),
            unit_rx,
            transitions,
            undelivered: Arc::new(Mutex::new(VecDeque::new())),
            sequence: 0,
            connected: false,
            probe: ProbeHandle::default(),
            tls_material: None,
        }
    }

    /// Sends a report at once whenever `probe` changes state.
    pub fn with_probe(mut self, probe: ProbeHandle) -> Self {
        self.probe = probe;
        self
    }

    /// Keeps a stream to the controller open until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut backoff = INITIAL_BACKOFF;
        // Failed attempts since the last stream that reached HelloAck.
        let mut failures: u32 = 0;
        loop {
            self.connected = false;
            let outcome = tokio::select! {
                _ = &mut shutdown => return,
                outcome = self.session() => outcome,
            };
            let Err(err) = outcome else { continue };

            if self.connected {
                // A stream that was up always gets a line: it is news.
                failures = 0;
                backoff = INITIAL_BACKOFF;
            } else {
                failures += 1;
            }
            if let SessionError::Rejected(status) = &err {
                if is_permanent_rejection(status) {
                    // Retrying fast cannot help until the config or the
                    // controller changes, so wait the longest delay.
                    backoff = MAX_BACKOFF;
                }
            }
            let delay = jittered(backoff);
            backoff = (backoff * 2).min(MAX_BACKOFF);

            // Log the first failure and then every tenth, so an agent whose
            // controller is down for hours does not flood the log.
            if failures <= 1 || failures.is_multiple_of(10) {
                tracing::warn!(
                    controller = %self.config.controller,
                    error = %err,
                    failures,
                    retry_in_ms = delay.as_millis() as u64,
                    "no stream to the controller; retrying"
                );
            }
            tokio::select! {
                _ = &mut shutdown => return,
                _ = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// Reads the TLS files again, keeping the previous material when they
    /// cannot be used. `None` in plain-text mode.
    fn refresh_tls(&mut self) -> Result<Option<&TlsMaterial>, SessionError> {
        let Some(files) = &self.config.tls else {
            return Ok(None);
        };
        match TlsMaterial::load(files) {
            Ok(material) => self.tls_material = Some(material),
            Err(err) if self.tls_material.is_some() => {
                tracing::error!(error = %err, "cannot reload the TLS files; keeping the previous certificates");
            }
            Err(err) => return Err(SessionError::Connect(err.to_string())),
        }
        Ok(self.tls_material.as_ref())
    }

    /// The endpoint of the controller, with the node's certificate under
    /// mutual TLS.
    fn endpoint(&mut self) -> Result<Endpoint, SessionError> {
        let url = self.config.controller.clone();
        let endpoint = Endpoint::from_shared(url)
            .map_err(|err| SessionError::Connect(err.to_string()))?
            .connect_timeout(CONNECT_TIMEOUT)
            .http2_keep_alive_interval(Duration::from_secs(20))
            .keep_alive_timeout(Duration::from_secs(10));
        let Some(material) = self.refresh_tls()? else {
            return Ok(endpoint);
        };
        let host = endpoint.uri().host().unwrap_or_default();
        let verifier = novamedic_tls::rustls_config::server_verifier(material)
            .map_err(|err| SessionError::Connect(format!("cannot use the CA: {err}")))?;
        let tls = ClientTlsConfig::new()
            .domain_name(host.trim_start_matches('[').trim_end_matches(']'))
            .identity(Identity::from_pem(&material.cert_pem, &material.key_pem));
        endpoint
            .tls_config_with_verifier(tls, verifier)
            .map_err(|err| SessionError::Connect(error_chain(&err)))
    }

    /// Runs one stream from Hello until it breaks.
    async fn session(&mut self) -> Result<(), SessionError> {
        let endpoint = self.endpoint()?;
        let channel = endpoint
            .connect()
            .await
            .map_err(|err| SessionError::Connect(error_chain(&err)))?;
        let mut client = AgentServiceClient::new(channel);

        let (up_tx, up_rx) = mpsc::channel::<AgentMessage>(64);
        up_tx
            .send(up(UpBody::Hello(self.hello())))
            .await
            .map_err(|_| SessionError::Broken("request stream closed".into()))?;
        let response = client
            .attach(ReceiverStream::new(up_rx))
            .await
            .map_err(SessionError::Rejected)?;
        let mut inbound = response.into_inner();

        match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Err(_) => return Err(SessionError::HelloTimeout(HELLO_TIMEOUT)),
            Ok(Err(status)) => return Err(SessionError::Rejected(status)),
            Ok(Ok(None)) => return Err(SessionError::Broken("closed before HelloAck".into())),
            Ok(Ok(Some(message))) => match message.body {
                Some(DownBody::HelloAck(ack)) => {
                    self.connected = true;
                    tracing::info!(
                        controller = %self.config.controller,
                        controller_version = %ack.controller_version,
                        protocol_version = ack.protocol_version,
                        "connected to controller"
                    );
                }
                other => {
                    return Err(SessionError::Broken(format!(
                        "expected HelloAck, got {other:?}"
                    )));
                }
            },
        }

        self.flush_undelivered(&up_tx).await?;
        self.send_report(&up_tx, ReportTrigger::Connect).await?;

        let mut interval = tokio::time::interval(self.config.report_interval);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval.tick().await;
        let transitions = self.transitions.clone();
        let probe = self.probe.clone();
        loop {
            tokio::select! {
                _ = interval.tick() => {
                    self.send_report(&up_tx, ReportTrigger::Periodic).await?;
                }
                _ = transitions.changed() => {
                    self.send_report(&up_tx, ReportTrigger::UnitChange).await?;
                }
                _ = probe.state_changed() => {
                    self.send_report(&up_tx, ReportTrigger::RpcProbeChange).await?;
                }
                message = inbound.message() => match message {
                    Ok(Some(message)) => self.handle_down(message, &up_tx),
                    Ok(None) => return Err(SessionError::Broken("controller closed the stream".into())),
                    Err(status) => return Err(SessionError::Broken(status.to_string())),
                },
            }
        }
    }

    fn hello(&self) -> v1::Hello {
        let unit = match &*self.unit_rx.borrow() {
            UnitObservation::Known(snapshot) => snapshot.unit.clone(),
            UnitObservation::Unknown { unit, .. } => unit.clone().unwrap_or_default(),
        };
        v1::Hello {
            node: self.config.node.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_string(),
            protocol_version: novamedic_proto::PROTOCOL_VERSION,
            capabilities: capabilities(),
            nova_compute_unit: unit,
            report_interval_ms: self.config.report_interval.as_millis() as u64,
        }
    }

    /// Collects and sends a report. Transitions that could not be sent are
    /// put back for the next stream.
    async fn send_report(
        &mut self,
        up_tx: &mpsc::Sender<AgentMessage>,
        trigger: ReportTrigger,
    ) -> Result<(), SessionError> {
        self.sequence += 1;
        let mut report = build_report(&self.builder, &self.unit_rx, trigger, self.sequence).await;
        report.transitions = self.transitions.drain();
        let transitions = report.transitions.clone();
        if up_tx.send(up(UpBody::Report(report))).await.is_err() {
            self.transitions.restore(transitions);
            return Err(SessionError::Broken("request stream closed".into()));
        }
        Ok(())
    }

    async fn flush_undelivered(
        &self,
        up_tx: &mpsc::Sender<AgentMessage>,
    ) -> Result<(), SessionError> {
        let results: Vec<_> = self
            .undelivered
            .lock()
            .expect("undelivered lock poisoned")
            .drain(..)
            .collect();
        for result in results {
            tracing::info!(command_id = %result.command_id, "sending a command result held during the outage");
            if up_tx
                .send(up(UpBody::CommandResult(result.clone())))
                .await
                .is_err()
            {
                keep_undelivered(&self.undelivered, result);
                return Err(SessionError::Broken("request stream closed".into()));
            }
        }
        Ok(())
    }

    /// Starts a command on its own task, so reports keep flowing while a
    /// restart settles.
    fn handle_down(&self, message: v1::ControllerMessage, up_tx: &mpsc::Sender<AgentMessage>) {
        match message.body {
            Some(DownBody::Command(command)) => {
                let received_at = Instant::now();
                let executor = self.executor.clone();
                let up_tx = up_tx.clone();
                let undelivered = self.undelivered.clone();
                tokio::spawn(async move {
                    let result = executor.execute(command, received_at).await;
                    if up_tx
                        .send(up(UpBody::CommandResult(result.clone())))
                        .await
                        .is_err()
                    {
                        keep_undelivered(&undelivered, result);
                    }
                });
            }
            Some(DownBody::HelloAck(_)) => {
                tracing::warn!("ignoring a second HelloAck on an open stream");
            }
            None => {
                tracing::warn!("ignoring a controller message of a kind this agent does not know");
            }
        }
    }
}

/// Returns whether the controller rejected the stream for a reason that a retry
/// cannot fix, such as an invalid node name or an unsupported protocol.
fn is_permanent_rejection(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::InvalidArgument
            | tonic::Code::FailedPrecondition
            | tonic::Code::PermissionDenied
    )
}

/// Builds one report off the async runtime: reading /proc is blocking I/O.
pub async fn build_report(
    builder: &Arc<Mutex<ReportBuilder>>,
    unit_rx: &watch::Receiver<UnitObservation>,
    trigger: ReportTrigger,
    sequence: u64,
) -> v1::NodeReport {
    let observation = unit_rx.borrow().clone();
    let builder = builder.clone();
    tokio::task::spawn_blocking(move || {
        let mut builder = builder.lock().expect("report builder lock poisoned");
        builder.build(&observation, trigger, sequence)
    })
    .await
    .expect("report builder panicked")
}

fn keep_undelivered(undelivered: &Mutex<VecDeque<v1::CommandResult>>, result: v1::CommandResult) {
    let mut undelivered = undelivered.lock().expect("undelivered lock poisoned");
    if undelivered.len() == MAX_UNDELIVERED_RESULTS {
        if let Some(dropped) = undelivered.pop_front() {
            tracing::warn!(command_id = %dropped.command_id, "dropped an undelivered command result");
        }
    }
    undelivered.push_back(result);
}

fn up(body: UpBody) -> AgentMessage {
    AgentMessage { body: Some(body) }
}

/// Returns a delay drawn uniformly from [backoff / 2, backoff], so agents
/// that lost the controller together do not reconnect in lockstep.
fn jittered(backoff: Duration) -> Duration {
    let millis = backoff.as_millis() as u64;
    let low = millis / 2;
    Duration::from_millis(rand::rng().random_range(low..=millis.max(low + 1)))
}

/// Joins an error and its sources, since tonic's transport error alone says
/// only "transport error".
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::UnitSnapshot;

    fn known(active: &str, pid: u32) -> UnitObservation {
        UnitObservation::Known(UnitSnapshot {
            unit: "nova-compute.service".into(),
            active_state: active.into(),
            main_pid: pid,
            ..Default::default()
        })
    }

    #[test]
    fn jitter_stays_within_half_to_full_backoff() {
        for _ in 0..1000 {
            let delay = jittered(Duration::from_secs(8));
            assert!(delay >= Duration::from_secs(4), "{delay:?}");
            assert!(delay <= Duration::from_secs(8), "{delay:?}");
        }
    }

    #[test]
    fn observation_change_ignores_identical_state() {
        assert!(!observation_changed(
            &known("active", 10),
            &known("active", 10)
        ));
        assert!(observation_changed(
            &known("active", 10),
            &known("failed", 0)
        ));
        assert!(observation_changed(
            &known("active", 10),
            &known("active", 11)
        ));
        let unknown = UnitObservation::Unknown {
            unit: None,
            reason: "nova-compute is not installed".into(),
        };
        assert!(observation_changed(&known("active", 10), &unknown));
        assert!(!observation_changed(&unknown, &unknown.clone()));
    }

    #[test]
    fn transition_log_keeps_order_and_bound() {
        let log = TransitionLog::default();
        for i in 0..(MAX_BUFFERED_TRANSITIONS as u32 + 10) {
            log.push(v1::UnitTransition {
                main_pid: i,
                ..Default::default()
            });
        }
        let drained = log.drain();
        assert_eq!(drained.len(), MAX_BUFFERED_TRANSITIONS);
        assert_eq!(drained[0].main_pid, 10, "oldest entries are dropped first");
        assert!(log.drain().is_empty());

        log.push(v1::UnitTransition {
            main_pid: 99,
            ..Default::default()
        });
        let taken = log.drain();
        log.restore(taken);
        assert_eq!(
            log.drain()[0].main_pid,
            99,
            "restored transitions are sent again"
        );
    }

    #[tokio::test]
    async fn recorder_logs_only_real_changes() {
        let (tx, rx) = watch::channel(known("active", 10));
        let log = Arc::new(TransitionLog::default());
        let task = spawn_transition_recorder(rx, log.clone());

        tx.send(known("active", 10)).unwrap();
        tx.send(known("failed", 0)).unwrap();
        drop(tx);
        task.await.unwrap();

        let drained = log.drain();
        assert_eq!(drained.len(), 1, "{drained:?}");
        assert_eq!(drained[0].active_state, "failed");
    }
}
