//! The RPC liveness probe: an oslo.messaging call to nova-compute's own
//! queue. It separates a nova-compute that consumes its queue from one that
//! systemd shows as running but whose AMQP consumer is wedged.
//!
//! Every `interval` one task reads nova's config (the files on
//! nova-compute's command line, as the report does), opens a connection to
//! the broker of `transport_url`, calls a method nova-compute does not have
//! and waits up to `timeout` for any reply. The outcome is kept for the next
//! report, and a change of state wakes the transport to report at once.
//!
//! States, decided by [`decide`]:
//! - alive: any reply, including `NoSuchMethod` or a version error;
//! - not_responding: the call was routed to nova-compute's queue and no
//!   reply came within the timeout;
//! - no_queue: the broker returned the call, because nothing is bound to
//!   `compute.HOST`;
//! - unknown: the probe could not ask, for example because no broker is
//!   reachable, transport_url is missing, or the control exchange does not
//!   exist yet (right after a broker restart). That is never a nova-compute
//!   fault.
//!
//! The AMQP client is amqprs: it runs on the tokio runtime the agent
//! already has, has no default features, and pulls in TLS (rustls) only
//! through one feature. lapin, the other maintained client, brings its own
//! executor abstraction and a larger dependency tree. The probe opens a
//! connection per call instead of keeping one, so between probes the agent
//! holds no socket, task or buffer for it; its memory is benchmarked
//! against the node exporter's.
//!
//! Credentials stay inside [`target::Broker`]: they are not logged, not in
//! error messages and not in reports, which name the broker as host:port.

pub mod amqp;
pub mod envelope;
pub mod target;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use novamedic_proto::v1::{self, RpcProbeState};
use tokio::sync::{watch, Notify};

use crate::collect::nova_conf::NovaConfig;
use crate::collect::process::{self, ProcessTable};
use crate::config::{self, AgentConfig};
use crate::systemd::UnitObservation;
use amqp::CallOutcome;
use target::ProbeTarget;

/// The latest probe result, shared between the probe task, the report
/// builder and the transport. A std mutex is enough: it is held only to
/// copy a small struct, never across an await.
#[derive(Clone, Default)]
pub struct ProbeHandle {
    latest: Arc<Mutex<Option<v1::RpcProbe>>>,
    state_changed: Arc<Notify>,
}

impl ProbeHandle {
    /// Returns the latest result; `None` before the first probe finished.
    pub fn latest(&self) -> Option<v1::RpcProbe> {
        self.latest.lock().expect("probe lock poisoned").clone()
    }

    /// Waits until a probe ends in another state than the one before.
    pub async fn state_changed(&self) {
        self.state_changed.notified().await
    }

    /// Stores `result` and wakes a waiter when the state changed.
    pub fn publish(&self, result: v1::RpcProbe) {
        let mut latest = self.latest.lock().expect("probe lock poisoned");
        let previous_state = latest.as_ref().map(|probe| probe.state);
        let changed = previous_state != Some(result.state);
        if changed {
            log_change(previous_state, &result);
        }
        *latest = Some(result);
        drop(latest);
        if changed {
            self.state_changed.notify_one();
        }
    }
}

fn log_change(previous: Option<i32>, result: &v1::RpcProbe) {
    let previous = previous.map_or("none", novamedic_proto::view::rpc_probe_state_name);
    let state = novamedic_proto::view::rpc_probe_state_name(result.state);
    if result.state == RpcProbeState::Alive as i32 {
        tracing::info!(
            previous,
            state,
            routing_key = %result.routing_key,
            broker = %result.broker,
            latency_ms = result.latency_ms,
            "nova-compute answers RPC"
        );
    } else {
        tracing::warn!(
            previous,
            state,
            routing_key = %result.routing_key,
            broker = %result.broker,
            detail = %result.detail,
            "RPC probe of nova-compute changed state"
        );
    }
}

/// Starts the probe task. Returns the handle reports read; the task runs
/// until the runtime stops.
pub fn spawn_probe(config: &AgentConfig, unit_rx: watch::Receiver<UnitObservation>) -> ProbeHandle {
    let handle = ProbeHandle::default();
    let settings = config.rpc_probe.clone();
    if !settings.enabled {
        tracing::info!("RPC probe disabled in agent.toml");
        return handle;
    }
    let config = config.clone();
    let task_handle = handle.clone();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(settings.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let config = config.clone();
            let unit_rx = unit_rx.clone();
            let target = tokio::task::spawn_blocking(move || resolve_target(&config, &unit_rx))
                .await
                .unwrap_or_else(|err| Err(format!("reading nova's config failed: {err}")));
            let result = probe_once(target, settings.timeout).await;
            task_handle.publish(result);
        }
    });
    handle
}

/// Reads nova's messaging settings from the config files nova-compute's
/// command line names (or the agent's `nova_config_files`). Blocks on file
/// reads and a /proc scan.
pub fn resolve_target(
    config: &AgentConfig,
    unit_rx: &watch::Receiver<UnitObservation>,
) -> Result<ProbeTarget, String> {
    let main_pid = match &*unit_rx.borrow() {
        UnitObservation::Known(snapshot) => snapshot.main_pid,
        UnitObservation::Unknown { .. } => 0,
    };
    let table = ProcessTable::scan();
    let argv = process::find_nova_compute(main_pid, &table).map(|(_, argv)| argv);
    let nova = NovaConfig::load(argv.as_deref(), config);
    ProbeTarget::from_settings(
        &nova.messaging(),
        &config::default_node_name(),
        nova.files(),
    )
    .map_err(|err| err.to_string())
}

/// Runs one probe against `target` and returns its result.
pub async fn probe_once(target: Result<ProbeTarget, String>, timeout: Duration) -> v1::RpcProbe {
    let timeout_ms = timeout.as_millis() as u64;
    let target = match target {
        Ok(target) => target,
        Err(reason) => {
            return v1::RpcProbe {
                state: RpcProbeState::Unknown as i32,
                detail: reason,
                timeout_ms,
                checked_at_unix_ms: crate::transport::unix_ms_now(),
                ..Default::default()
            };
        }
    };
    let (outcome, broker) = amqp::call(&target, timeout).await;
    let (state, detail) = decide(&outcome, &target, timeout);
    v1::RpcProbe {
        state: state as i32,
        detail,
        latency_ms: match outcome {
            CallOutcome::Replied { latency, .. } => latency.as_millis() as u64,
            _ => 0,
        },
        checked_at_unix_ms: crate::transport::unix_ms_now(),
        routing_key: target.routing_key.clone(),
        broker: broker.unwrap_or_default(),
        timeout_ms,
    }
}

/// Turns a call's outcome into the probe state and a sentence for the
/// operator.
pub fn decide(
    outcome: &CallOutcome,
    target: &ProbeTarget,
    timeout: Duration,
) -> (RpcProbeState, String) {
    let queue = &target.routing_key;
    match outcome {
        CallOutcome::Replied {
            failure_class: None,
            ..
        } => (RpcProbeState::Alive, format!("{queue} replied")),
        CallOutcome::Replied {
            failure_class: Some(class),
            ..
        } => (
            RpcProbeState::Alive,
            format!("{queue} replied with {class}, which proves it consumes its queue"),
        ),
        CallOutcome::NoReply => (
            RpcProbeState::NotResponding,
            format!(
                "no reply from {queue} within {} ms although the broker routed the call to its queue",
                timeout.as_millis()
            ),
        ),
        CallOutcome::Returned { reply_text } => (
            RpcProbeState::NoQueue,
            format!(
                "the broker returned the call ({reply_text}): no queue is bound to {queue} on exchange {}, \
                 so no nova-compute with this host name is connected",
                target.exchange
            ),
        ),
        CallOutcome::NoExchange { reply_text } => (
            RpcProbeState::Unknown,
            format!(
                "exchange {} does not exist on virtual host {} ({reply_text}): no nova service has \
                 declared it since the broker started, or the virtual host is wrong",
                target.exchange, target.virtual_host
            ),
        ),
        CallOutcome::BrokerUnreachable { reason } => (
            RpcProbeState::Unknown,
            format!("broker unreachable: {reason}"),
        ),
        CallOutcome::BrokerError { reason } => {
            (RpcProbeState::Unknown, format!("broker error: {reason}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::collect::nova_conf::RabbitTls;

    fn target() -> ProbeTarget {
        ProbeTarget {
            brokers: Vec::new(),
            virtual_host: "nova".into(),
            exchange: "nova".into(),
            routing_key: "compute.compute-07".into(),
            tls: RabbitTls::default(),
        }
    }

    fn decided(outcome: CallOutcome) -> (RpcProbeState, String) {
        decide(&outcome, &target(), Duration::from_secs(5))
    }

    #[test]
    fn any_reply_is_alive() {
        let (state, detail) = decided(CallOutcome::Replied {
            latency: Duration::from_millis(3),
            failure_class: Some("NoSuchMethod".into()),
        });
        assert_eq!(state, RpcProbeState::Alive);
        assert!(detail.contains("NoSuchMethod"), "{detail}");
        let (state, _) = decided(CallOutcome::Replied {
            latency: Duration::from_millis(3),
            failure_class: Some("UnsupportedVersion".into()),
        });
        assert_eq!(state, RpcProbeState::Alive);
        let (state, _) = decided(CallOutcome::Replied {
            latency: Duration::from_millis(3),
            failure_class: None,
        });
        assert_eq!(state, RpcProbeState::Alive);
    }

    #[test]
    fn silence_is_not_responding() {
        let (state, detail) = decided(CallOutcome::NoReply);
        assert_eq!(state, RpcProbeState::NotResponding);
        assert!(detail.contains("5000 ms"), "{detail}");
        assert!(detail.contains("compute.compute-07"), "{detail}");
    }

    #[test]
    fn returned_call_no_queue_missing_exchange_unknown() {
        let (state, detail) = decided(CallOutcome::Returned {
            reply_text: "NO_ROUTE".into(),
        });
        assert_eq!(state, RpcProbeState::NoQueue);
        assert!(detail.contains("NO_ROUTE"), "{detail}");
        let (state, detail) = decided(CallOutcome::NoExchange {
            reply_text: "NOT_FOUND - no exchange 'nova' in vhost 'nova'".into(),
        });
        assert_eq!(state, RpcProbeState::Unknown);
        assert!(detail.contains("exchange nova"), "{detail}");
    }

    #[test]
    fn broker_problems_are_unknown_never_a_fault() {
        let (state, detail) = decided(CallOutcome::BrokerUnreachable {
            reason: "127.0.0.1:5672: Connection refused".into(),
        });
        assert_eq!(state, RpcProbeState::Unknown);
        assert!(detail.starts_with("broker unreachable"), "{detail}");
        let (state, detail) = decided(CallOutcome::BrokerError {
            reason: "ACCESS_REFUSED".into(),
        });
        assert_eq!(state, RpcProbeState::Unknown);
        assert!(detail.starts_with("broker error"), "{detail}");
    }

    #[tokio::test]
    async fn missing_config_is_unknown() {
        let result = probe_once(
            Err("nova's transport_url is not set in /etc/nova/nova.conf".into()),
            Duration::from_secs(2),
        )
        .await;
        assert_eq!(result.state, RpcProbeState::Unknown as i32);
        assert!(result.detail.contains("transport_url"), "{}", result.detail);
        assert_eq!(result.timeout_ms, 2000);
        assert!(result.checked_at_unix_ms > 0);
    }

    #[tokio::test]
    async fn closed_port_is_broker_unreachable() {
        // Bind and drop a listener: its port then refuses connections.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("rabbit://nova:hunter2@127.0.0.1:{port}/nova");
        let (brokers, virtual_host) = target::parse_transport_url(&url).unwrap();
        let target = ProbeTarget {
            brokers,
            virtual_host,
            ..target()
        };
        let result = probe_once(Ok(target), Duration::from_secs(2)).await;
        assert_eq!(result.state, RpcProbeState::Unknown as i32, "{result:?}");
        assert!(
            result.detail.starts_with("broker unreachable"),
            "{}",
            result.detail
        );
        assert!(!result.detail.contains("hunter2"), "{}", result.detail);
        assert_eq!(result.broker, "");
    }

    #[test]
    fn handle_notifies_only_on_state_change() {
        let handle = ProbeHandle::default();
        let probe = |state: RpcProbeState| v1::RpcProbe {
            state: state as i32,
            ..Default::default()
        };
        handle.publish(probe(RpcProbeState::Alive));
        assert_eq!(
            handle.latest().map(|p| p.state),
            Some(RpcProbeState::Alive as i32)
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            // The first publish stored a permit; take it.
            handle.state_changed().await;
            handle.publish(probe(RpcProbeState::Alive));
            let waited =
                tokio::time::timeout(Duration::from_millis(50), handle.state_changed()).await;
            assert!(waited.is_err(), "same state must not notify");
            handle.publish(probe(RpcProbeState::NotResponding));
            let waited =
                tokio::time::timeout(Duration::from_millis(50), handle.state_changed()).await;
            assert!(waited.is_ok(), "a new state must notify");
        });
    }
}
