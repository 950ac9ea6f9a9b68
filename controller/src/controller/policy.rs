//! The self-healing policy at work: each report becomes an observation, the
//! engine decides, every changed decision is recorded with its evidence, and
//! a restart goes out through the same path as an operator's.

use std::sync::Arc;

use novamedic_proto::v1;
use rand::Rng;

use super::restart::RestartOptions;
use super::Controller;
use crate::clock::now_unix_ms;
use crate::fleet::kind;
use crate::policy::engine::{NodePolicy, PolicyState};
use crate::policy::observe::{LogFaultState, LogState, ProcessState, RpcState, UnitState};
use crate::policy::{Decision, Engine, Observation, Policy, Verdict};
use crate::store::NewEvent;

/// Identity recorded for the policy's own actions.
pub const POLICY_ACTOR: &str = "policy";

/// The engine and where its policy came from.
#[derive(Debug)]
pub struct PolicyRunner {
    /// An async mutex, held across the store write, so saved states never
    /// go back in time.
    pub(super) engine: tokio::sync::Mutex<Engine>,
    source: String,
}

impl PolicyRunner {
    pub fn new(policy: Policy, state: PolicyState, source: String) -> Self {
        PolicyRunner {
            engine: tokio::sync::Mutex::new(Engine::new(policy, state)),
            source,
        }
    }
}

/// Builds the policy's observation from a node report, at the controller's
/// arrival time.
pub fn observation_from_report(report: &v1::NodeReport, at_unix_ms: i64) -> Observation {
    let nova = report.nova_compute.clone().unwrap_or_default();
    let log = report.log.as_ref();
    Observation {
        at_unix_ms,
        unit: UnitState {
            name: nova.unit.clone(),
            active_state: nova.active_state.clone(),
            sub_state: nova.sub_state.clone(),
            result: nova.result.clone(),
            invocation_id: nova.invocation_id.clone(),
            started_at_unix_ms: i64::try_from(nova.inactive_exit_timestamp_us / 1_000).unwrap_or(0),
            n_restarts: nova.n_restarts,
        },
        process: nova.process.as_ref().map(|process| ProcessState {
            pid: process.pid,
            state: process.state.clone(),
            tracer_pid: process.tracer_pid,
        }),
        rpc: report
            .rpc_probe
            .as_ref()
            .map_or(RpcState::NotProbed, rpc_state),
        log: LogState {
            faults: log
                .map(|log| {
                    log.active_faults
                        .iter()
                        .map(|fault| LogFaultState {
                            signature_id: fault.signature_id.clone(),
                            fault_kind: fault.fault_kind.clone(),
                            restart_helps: fault.restart_helps,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            vetoed_by: log
                .and_then(|log| log.restart.as_ref())
                .map(|verdict| verdict.vetoed_by.clone())
                .filter(|signature| !signature.is_empty()),
            reason: log
                .and_then(|log| log.restart.as_ref())
                .map(|verdict| verdict.reason.clone())
                .unwrap_or_default(),
        },
        // Nova's view is added by `evaluate_policy` when a cloud is
        // configured. NOTE: a live migration away from the node shows
        // nothing on qemu's command line, so only incoming ones hold.
        service: None,
        work_in_progress: incoming_migrations(report),
        dependency_returned: report
            .dependency_returns
            .as_ref()
            .map(|returns| returns.returned.clone())
            .unwrap_or_default(),
    }
}

/// How long after its qemu started a guest started with `-incoming` counts
/// as a live migration in progress. qemu keeps the option after the
/// migration ends, so its age is the only end the agent can see without
/// libvirt. An estimate: a migration of a large, busy guest over a slow
/// link can take longer, and then a restart is no longer held back.
pub const INCOMING_MIGRATION_HOLD_SECONDS: u64 = 3_600;

/// Describes the guests arriving by live migration, as work in progress.
fn incoming_migrations(report: &v1::NodeReport) -> Vec<String> {
    let Some(guests) = report.guests.as_ref() else {
        return Vec::new();
    };
    guests
        .guests
        .iter()
        .filter(|guest| {
            guest.incoming_migration && guest.process_age_seconds < INCOMING_MIGRATION_HOLD_SECONDS
        })
        .map(|guest| {
            let uuid = if guest.uuid.is_empty() {
                String::new()
            } else {
                format!(" ({})", guest.uuid)
            };
            format!(
                "live migration into this node: {}{uuid}, qemu PID {} started {} s ago with \
                 -incoming",
                guest.name, guest.pid, guest.process_age_seconds
            )
        })
        .collect()
}

/// Maps the agent's probe result. An unknown result is a broker outage only
/// when the broker could not be reached; a missing transport_url or control
/// exchange says nothing either way.
fn rpc_state(probe: &v1::RpcProbe) -> RpcState {
    let detail = probe.detail.clone();
    match v1::RpcProbeState::try_from(probe.state).unwrap_or(v1::RpcProbeState::Unspecified) {
        v1::RpcProbeState::Alive => RpcState::Alive,
        v1::RpcProbeState::NotResponding => RpcState::NotResponding(detail),
        v1::RpcProbeState::NoQueue => RpcState::NoQueue(detail),
        v1::RpcProbeState::Unknown if detail.starts_with("broker unreachable") => {
            RpcState::BrokerUnreachable(detail)
        }
        v1::RpcProbeState::Unknown | v1::RpcProbeState::Unspecified => RpcState::NotProbed,
    }
}

impl Controller {
    /// Runs the policy on one node's observation: records a changed decision
    /// with the policy state, and starts an automated restart when the
    /// engine decides one.
    pub async fn evaluate_policy(self: &Arc<Self>, node: &str, mut observation: Observation) {
        if let Some(nova) = &self.nova {
            let inputs = nova.policy_inputs(node, observation.at_unix_ms);
            observation.service = inputs.service;
            observation.work_in_progress = inputs.work_in_progress;
        }
        let mut engine = self.policy.engine.lock().await;
        let jitter_ms = rand::rng().random_range(0..=engine.policy().fleet.jitter_seconds * 1_000);
        let verdict = engine.observe(node, &observation, self.fleet.len(), jitter_ms);
        if !verdict.changed && verdict.storm_ended.is_none() {
            return;
        }
        if verdict.changed {
            self.metrics.policy_decision(verdict.decision.kind());
            if let Decision::Escalate { .. } = verdict.decision {
                self.metrics.escalation();
            }
        }
        self.sync_policy_alerts(engine.state());
        let events = verdict_events(&verdict, observation.at_unix_ms);
        for event in &events {
            tracing::info!(node, kind = %event.kind, detail = %event.detail, "policy decision");
        }
        let state = persistent_json(engine.state());
        let saved = self
            .store
            .save_policy_state(&state, observation.at_unix_ms, &events)
            .await;
        if let Err(err) = saved {
            // Nothing is sent unless the decision is recorded: the audit
            // history must show every automated action.
            tracing::error!(node, error = %crate::error_chain(&err), "cannot record a policy decision");
            if let Decision::Restart { dry_run: false, .. } = verdict.decision {
                engine.restart_not_sent(node, observation.at_unix_ms);
            }
            return;
        }
        let disable_service = engine.policy().node.disable_service_on_escalation;
        let dry_run = engine.policy().mode == crate::policy::Mode::DryRun;
        drop(engine);

        if let Decision::Escalate { reason } = &verdict.decision {
            if disable_service {
                let controller = Arc::clone(self);
                let node = node.to_string();
                let reason = reason.clone();
                tokio::spawn(async move {
                    controller
                        .disable_service_on_escalation(&node, &reason, dry_run)
                        .await;
                });
            }
        }

        if let Decision::Restart {
            condition,
            reset_failed,
            dry_run: false,
            ..
        } = verdict.decision
        {
            let controller = Arc::clone(self);
            let node = node.to_string();
            let reason = format!("policy: {condition}: {}", verdict.evidence.join("; "));
            let sent_at = observation.at_unix_ms;
            tokio::spawn(async move {
                let request = v1::RestartRequest {
                    node: node.clone(),
                    reason,
                    requested_by: POLICY_ACTOR.to_string(),
                    wait_ms: 0,
                };
                let options = RestartOptions { reset_failed };
                if let Err(err) = controller.restart_with(request, options).await {
                    tracing::warn!(node = %node, error = %err, "automated restart failed");
                    if !err.may_have_run() {
                        controller
                            .policy
                            .engine
                            .lock()
                            .await
                            .restart_not_sent(&node, sent_at);
                    }
                }
            });
        }
    }

    /// Returns the policy in force and its state, for operators.
    pub async fn policy_status(&self) -> v1::PolicyStatus {
        let engine = self.policy.engine.lock().await;
        policy_status(&engine, &self.policy.source, self.nova_source())
    }

    /// Applies an operator's change to the policy state and records it.
    pub async fn control_policy(
        &self,
        node: &str,
        requested_by: &str,
        detail: String,
        change: impl FnOnce(&mut Engine),
    ) -> v1::PolicyStatus {
        let mut engine = self.policy.engine.lock().await;
        change(&mut engine);
        self.sync_policy_alerts(engine.state());
        let now = now_unix_ms();
        let event = NewEvent {
            time_unix_ms: now,
            node: node.to_string(),
            kind: kind::POLICY_CONTROL.to_string(),
            detail,
            actor: requested_by.to_string(),
            command_id: String::new(),
        };
        tracing::info!(node, requested_by, detail = %event.detail, "policy control");
        if let Err(err) = self
            .store
            .save_policy_state(&persistent_json(engine.state()), now, &[event])
            .await
        {
            tracing::error!(error = %crate::error_chain(&err), "cannot save the policy state");
        }
        policy_status(&engine, &self.policy.source, self.nova_source())
    }

    fn nova_source(&self) -> v1::NovaSource {
        self.nova
            .as_ref()
            .map_or_else(crate::nova_view::unconfigured_source, |nova| nova.source())
    }
}

/// Returns the events that record a verdict: its decision when it changed,
/// and the end of the storm guard's pause as a fleet-wide event.
fn verdict_events(verdict: &Verdict, at_unix_ms: i64) -> Vec<NewEvent> {
    let mut events = Vec::new();
    if let Some(ended) = &verdict.storm_ended {
        events.push(NewEvent {
            time_unix_ms: at_unix_ms,
            node: String::new(),
            kind: kind::STORM_GUARD.to_string(),
            detail: ended.clone(),
            actor: POLICY_ACTOR.to_string(),
            command_id: String::new(),
        });
    }
    if !verdict.changed {
        return events;
    }
    let kind = match verdict.decision {
        Decision::StormGuard { .. } => kind::STORM_GUARD,
        _ => kind::POLICY_DECISION,
    };
    let mut detail = describe(&verdict.decision);
    if !verdict.evidence.is_empty() {
        detail.push_str("; evidence: ");
        detail.push_str(&verdict.evidence.join("; "));
    }
    events.push(NewEvent {
        time_unix_ms: at_unix_ms,
        node: verdict.node.clone(),
        kind: kind.to_string(),
        detail,
        actor: POLICY_ACTOR.to_string(),
        command_id: String::new(),
    });
    events
}

/// Describes a decision in an operator's words.
pub fn describe(decision: &Decision) -> String {
    use crate::policy::Hold;
    match decision {
        Decision::Healthy => "no condition present; nothing to do".into(),
        Decision::Watching {
            condition,
            reports,
            needed_reports,
            span_seconds,
            needed_seconds,
        } => format!(
            "watching {condition}: {reports} of {needed_reports} reports over {span_seconds} of \
             {needed_seconds} s before it counts as confirmed"
        ),
        Decision::Hold { condition, hold } => {
            let about = condition.map(|c| c.to_string()).unwrap_or_default();
            let cause = match hold {
                Hold::PolicyOff => "the policy's mode is off".to_string(),
                Hold::Paused { by, reason } => format!("automation is paused by {by}: {reason}"),
                Hold::Silenced { by, reason, .. } => format!("node silenced by {by}: {reason}"),
                Hold::NeedsHuman { reason } => format!("node needs a human: {reason}"),
                Hold::Blocked { blocker } => blocker.detail().to_string(),
                Hold::NoRule => "no rule of the policy covers it".to_string(),
                Hold::StartGrace { until_unix_ms, .. } => format!(
                    "nova-compute started recently; start grace until {}",
                    rfc3339(*until_unix_ms)
                ),
                Hold::Backoff { until_unix_ms } => {
                    format!(
                        "back-off after the previous automated restart until {}",
                        rfc3339(*until_unix_ms)
                    )
                }
                Hold::InFlightLimit { in_flight } => {
                    format!("{in_flight} automated restarts already in flight in the fleet")
                }
                Hold::FleetGap { until_unix_ms } => format!(
                    "another node was restarted moments ago; next restart not before {}",
                    rfc3339(*until_unix_ms)
                ),
                Hold::AwaitingDependency => "systemd stopped starting the unit after repeated \
                     failures; waiting for a sign that the cause is gone (a nova config file \
                     modified or libvirt started after the unit went down)"
                    .to_string(),
                Hold::ResetAlreadySent { sent_unix_ms } => format!(
                    "the failed state was already reset at {} in this failure episode, and \
                     no restart since brought the node back",
                    rfc3339(*sent_unix_ms)
                ),
            };
            format!("no restart for {about}: {cause}")
        }
        Decision::Restart {
            condition,
            attempt,
            dry_run: true,
            ..
        } => format!("dry run: would restart nova-compute for {condition} (attempt {attempt})"),
        Decision::Restart {
            condition,
            attempt,
            reset_failed,
            ..
        } => format!(
            "restarting nova-compute for {condition} (automated attempt {attempt}{})",
            if *reset_failed {
                ", after reset-failed"
            } else {
                ""
            }
        ),
        Decision::Verifying { condition } => {
            format!("verifying the automated restart for {condition}")
        }
        Decision::Verified { condition, seconds } => {
            format!("the automated restart for {condition} brought the node back in {seconds} s")
        }
        Decision::Escalate { reason } => {
            format!("needs a human, automation leaves the node alone: {reason}")
        }
        Decision::StormGuard { reason } => {
            format!(
                "storm guard tripped, all automation paused until the storm has been over for \
                 storm_cooldown_seconds or `novamedic resume`: {reason}"
            )
        }
    }
}

fn rfc3339(unix_ms: i64) -> String {
    novamedic_proto::view::rfc3339_from_unix_ms(unix_ms).unwrap_or_else(|| unix_ms.to_string())
}

/// Serialises the state that must survive a controller restart: nodes with
/// a restart history, a silence, an escalation or a restart in flight.
/// Other nodes are left out with their streaks, so after a restart a condition is
/// confirmed again from the start, which only delays an action.
pub(super) fn persistent_json(state: &PolicyState) -> String {
    let persistent = PolicyState {
        pause: state.pause.clone(),
        next_restart_unix_ms: state.next_restart_unix_ms,
        storm_clear_since_unix_ms: state.storm_clear_since_unix_ms,
        nodes: state
            .nodes
            .iter()
            .filter(|(_, node)| worth_keeping(node))
            .map(|(name, node)| (name.clone(), node.clone()))
            .collect(),
    };
    serde_json::to_string(&persistent).expect("the policy state serialises to JSON")
}

fn worth_keeping(node: &NodePolicy) -> bool {
    !node.restarts_unix_ms.is_empty()
        || node.silence.is_some()
        || node.needs_human.is_some()
        || node.in_flight.is_some()
        || node.reset_failed_sent_unix_ms.is_some()
        || node.service_disabled.is_some()
}

fn policy_status(engine: &Engine, source: &str, nova_source: v1::NovaSource) -> v1::PolicyStatus {
    let state = engine.state();
    let policy = engine.policy();
    v1::PolicyStatus {
        mode: policy.mode.to_string(),
        source: source.to_string(),
        policy_json: serde_json::to_string(policy).expect("the policy serialises to JSON"),
        nova_source: Some(nova_source),
        pause: state.pause.as_ref().map(|pause| v1::PolicyPause {
            since_unix_ms: pause.since_unix_ms,
            by: pause.by.clone(),
            reason: pause.reason.clone(),
        }),
        nodes: state
            .nodes
            .iter()
            .filter(|(_, node)| worth_keeping(node))
            .map(|(name, node)| v1::NodePolicyStatus {
                node: name.clone(),
                needs_human: node
                    .needs_human
                    .as_ref()
                    .map(|e| e.reason.clone())
                    .unwrap_or_default(),
                silenced_until_unix_ms: node.silence.as_ref().map_or(0, |s| s.until_unix_ms),
                silence_reason: node
                    .silence
                    .as_ref()
                    .map(|s| s.reason.clone())
                    .unwrap_or_default(),
                silenced_by: node
                    .silence
                    .as_ref()
                    .map(|s| s.by.clone())
                    .unwrap_or_default(),
                restarts_in_window: node.restarts_unix_ms.len() as u32,
                in_flight: node
                    .in_flight
                    .as_ref()
                    .map(|f| f.condition.to_string())
                    .unwrap_or_default(),
                last_decision: node.last_decision.clone().unwrap_or_default(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guest(name: &str, incoming: bool, age_seconds: u64) -> v1::Guest {
        v1::Guest {
            name: name.to_string(),
            uuid: format!("uuid-{name}"),
            pid: 7,
            incoming_migration: incoming,
            process_age_seconds: age_seconds,
            ..Default::default()
        }
    }

    #[test]
    fn young_incoming_guest_is_work_in_progress() {
        let report = v1::NodeReport {
            guests: Some(v1::Guests {
                guests: vec![
                    guest("instance-1", true, 30),
                    guest("instance-2", true, INCOMING_MIGRATION_HOLD_SECONDS),
                    guest("instance-3", false, 5),
                ],
                ..Default::default()
            }),
            ..Default::default()
        };
        let observation = observation_from_report(&report, 0);
        assert_eq!(observation.work_in_progress.len(), 1);
        assert!(
            observation.work_in_progress[0].contains("instance-1 (uuid-instance-1)"),
            "{:?}",
            observation.work_in_progress
        );
    }

    #[test]
    fn dependency_returns_reach_the_observation() {
        let report = v1::NodeReport {
            dependency_returns: Some(v1::DependencyReturns {
                down_since_us: 1,
                returned: vec!["/etc/nova/nova.conf modified 3 s after the unit went down".into()],
            }),
            ..Default::default()
        };
        let observation = observation_from_report(&report, 0);
        assert_eq!(observation.dependency_returned.len(), 1);
    }
}
