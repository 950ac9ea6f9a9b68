//! One simulated agent: its own HTTP/2 connection and `Attach` stream, a
//! report every interval with jitter, faults from the script, and answers
//! to the controller's commands.
//!
//! Each agent is one tokio task plus the connection task tonic spawns per
//! channel, so the controller sees one connection and one stream per node,
//! as it does with real agents.

use std::sync::Arc;
use std::time::Duration;

use novamedic_proto::v1::{self, agent_message, agent_service_client::AgentServiceClient};
use rand::Rng;
use tokio::sync::mpsc;
use tokio::time::{sleep_until, Instant};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;

use super::node::{ActiveFault, SimNode, UNIT};
use super::{Recorder, SimConfig};

/// Messages buffered up one stream.
const UPLINK_BUFFER: usize = 8;

/// Wait before reconnecting after a stream ended.
const RECONNECT_DELAY: Duration = Duration::from_secs(1);

/// A change the fault scheduler sends an agent.
#[derive(Debug)]
pub enum Control {
    Strike(ActiveFault),
}

/// Runs one agent until `shutdown` fires, reconnecting when its stream
/// ends.
pub async fn run_agent(
    mut node: SimNode,
    config: Arc<SimConfig>,
    recorder: Arc<Recorder>,
    mut control: mpsc::Receiver<Control>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let mut connected = false;
    loop {
        let outcome = tokio::select! {
            outcome = attach(&mut node, &config, &recorder, &mut control, &mut connected) => outcome,
            _ = shutdown.changed() => return,
        };
        if *shutdown.borrow() {
            return;
        }
        recorder.count_reconnect();
        tracing::warn!(node = %node.name, error = %outcome, "stream ended; reconnecting");
        tokio::select! {
            _ = tokio::time::sleep(RECONNECT_DELAY) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Connects, sends the Hello and serves one stream until it fails.
/// Returns why it ended.
async fn attach(
    node: &mut SimNode,
    config: &SimConfig,
    recorder: &Recorder,
    control: &mut mpsc::Receiver<Control>,
    connected: &mut bool,
) -> String {
    let channel = {
        let _permit = recorder.connect_slots.acquire().await;
        let endpoint = match Endpoint::from_shared(config.controller.clone()) {
            Ok(endpoint) => endpoint.connect_timeout(Duration::from_secs(30)),
            Err(err) => return format!("invalid controller URL {:?}: {err}", config.controller),
        };
        match endpoint.connect().await {
            Ok(channel) => channel,
            Err(err) => return format!("cannot connect: {err}"),
        }
    };
    let mut client = AgentServiceClient::new(channel);
    let (uplink, uplink_rx) = mpsc::channel(UPLINK_BUFFER);
    let send = |body| v1::AgentMessage { body: Some(body) };
    let interval_ms = config.report_interval.as_millis() as u64;
    if uplink
        .send(send(agent_message::Body::Hello(node.hello(interval_ms))))
        .await
        .is_err()
    {
        return "the uplink closed before the Hello".to_string();
    }
    let mut inbound = match client.attach(ReceiverStream::new(uplink_rx)).await {
        Ok(response) => response.into_inner(),
        Err(status) => return format!("Attach failed: {}", status.message()),
    };
    match inbound.message().await {
        Ok(Some(v1::ControllerMessage {
            body: Some(v1::controller_message::Body::HelloAck(_)),
        })) => {}
        Ok(other) => return format!("expected a HelloAck, got {other:?}"),
        Err(status) => return format!("no HelloAck: {}", status.message()),
    }
    if !*connected {
        *connected = true;
        recorder.agent_connected();
    }

    let report = |node: &mut SimNode, trigger| {
        let report = node.report(trigger);
        recorder.report_sent(&node.name, node.is_healthy());
        send(agent_message::Body::Report(report))
    };
    if uplink
        .send(report(node, v1::ReportTrigger::Connect))
        .await
        .is_err()
    {
        return "the uplink closed".to_string();
    }
    // Spread the fleet's reports over the interval, as agents started at
    // different times are.
    let mut next_report = Instant::now()
        + config
            .report_interval
            .mul_f64(rand::rng().random_range(0.0..1.0));
    loop {
        let message = tokio::select! {
            _ = sleep_until(next_report) => {
                next_report += jittered(config.report_interval, config.jitter);
                report(node, v1::ReportTrigger::Periodic)
            }
            Some(change) = control.recv() => {
                let Control::Strike(fault) = change;
                recorder.fault_struck(&node.name, fault.kind);
                let unit_changed = node.strike(fault);
                let trigger = if unit_changed {
                    v1::ReportTrigger::UnitChange
                } else if fault.kind == super::fault::FaultKind::RpcNotResponding {
                    v1::ReportTrigger::RpcProbeChange
                } else {
                    continue;
                };
                report(node, trigger)
            }
            message = inbound.message() => match message {
                Ok(Some(message)) => {
                    let Some(result) = execute(node, config, recorder, message).await else {
                        continue;
                    };
                    if uplink.send(send(agent_message::Body::CommandResult(result))).await.is_err() {
                        return "the uplink closed".to_string();
                    }
                    report(node, v1::ReportTrigger::UnitChange)
                }
                Ok(None) => return "the controller closed the stream".to_string(),
                Err(status) => return format!("the stream failed: {}", status.message()),
            },
        };
        if uplink.send(message).await.is_err() {
            return "the uplink closed".to_string();
        }
    }
}

/// Answers a command as the agent's executor would, after the configured
/// restart time. Returns `None` for a message that needs no answer.
async fn execute(
    node: &mut SimNode,
    config: &SimConfig,
    recorder: &Recorder,
    message: v1::ControllerMessage,
) -> Option<v1::CommandResult> {
    let Some(v1::controller_message::Body::Command(command)) = message.body else {
        return None;
    };
    let kind = match &command.action {
        Some(v1::command::Action::RestartUnit(_)) => "restart_unit",
        Some(v1::command::Action::SearchLogs(_)) => "search_logs",
        None => "unknown",
    };
    recorder.command_received(&node.name, kind, &command.requested_by);
    tracing::info!(node = %node.name, command_id = %command.command_id, kind, requested_by = %command.requested_by, "command received");
    let reject = |detail: String| v1::CommandResult {
        command_id: command.command_id.clone(),
        outcome: v1::CommandOutcome::Rejected as i32,
        detail,
        ..Default::default()
    };
    match &command.action {
        Some(v1::command::Action::RestartUnit(restart)) if restart.unit == UNIT => {
            tokio::time::sleep(config.restart_time).await;
            Some(node.restart(&command.command_id, config.restart_time.as_millis() as u64))
        }
        Some(v1::command::Action::RestartUnit(restart)) => Some(reject(format!(
            "unit {:?} is not this node's nova-compute unit {UNIT}",
            restart.unit
        ))),
        Some(v1::command::Action::SearchLogs(_)) | None => {
            Some(reject("the command has no action this agent knows".into()))
        }
    }
}

/// Returns `base` changed by a random share of up to `spread` either way.
fn jittered(base: Duration, spread: f64) -> Duration {
    let factor = 1.0 + rand::rng().random_range(-spread..=spread);
    base.mul_f64(factor.max(0.0))
}
