//! Stable JSON views of the wire types.
//!
//! Scripts parse `-o json`, so these structs are an interface: fields may be
//! added, never renamed or removed. Enum values are lowercase words, times are
//! RFC 3339 in UTC, sizes are bytes.

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use crate::v1;

/// One node as `novamedic nodes`, `novamedic node show` and
/// `novamedic-agent check` print it.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    pub node: String,
    /// `healthy`, `degraded`, `failed`, `stale` or `unknown`.
    pub health: &'static str,
    pub reasons: Vec<String>,
    /// Last report's arrival at the controller; `null` before the first one.
    pub last_seen: Option<String>,
    /// Whether the agent's stream is open. Always true in `check` output.
    pub connected: bool,
    pub agent_version: String,
    /// When the controller first saw the node; `null` in `check` output.
    pub first_seen: Option<String>,
    pub protocol_version: u32,
    pub capabilities: Vec<String>,
    pub report_interval_ms: u64,
    pub nova_compute: NovaComputeView,
    pub cpu: CpuView,
    pub memory: MemoryView,
    pub swap: SwapView,
    pub uptime_seconds: u64,
    pub instances_path: String,
    pub disks: Vec<DiskView>,
    pub guests: GuestsView,
    /// nova-compute's log as the agent classifies it; `null` when the report
    /// has no log section (no report yet, or an agent that predates it).
    pub log: Option<LogView>,
    /// The agent's latest RPC call to nova-compute; `null` before the first
    /// probe, with the probe disabled, or from an agent that predates it.
    pub rpc_probe: Option<RpcProbeView>,
    /// Nova's own record of the node as the controller polled it; `null` in
    /// `check` output and from controllers that predate it.
    pub nova: Option<NovaView>,
}

/// Nova's view of one node.
#[derive(Debug, Clone, Serialize)]
pub struct NovaView {
    pub source: NovaSourceView,
    /// `null` when no os-services record maps to the node, or before the
    /// first poll.
    pub service: Option<NovaServiceView>,
    /// Instances on the node in the middle of an operation.
    pub work_in_progress: Vec<String>,
}

/// The source of the controller's view of Nova: cloud, poll times, errors.
#[derive(Debug, Clone, Serialize)]
pub struct NovaSourceView {
    /// False when the controller has no `[openstack]` table.
    pub configured: bool,
    pub cloud: Option<String>,
    /// Last successful os-services poll; `null` before the first one.
    pub services_polled_at: Option<String>,
    /// The latest os-services poll's error; `null` when it succeeded.
    pub services_error: Option<String>,
    pub servers_polled_at: Option<String>,
    pub servers_error: Option<String>,
    pub poll_interval_seconds: u64,
    /// Data older than this is shown but not used by the policy.
    pub stale_after_seconds: u64,
}

/// One nova-compute service record.
#[derive(Debug, Clone, Serialize)]
pub struct NovaServiceView {
    pub id: String,
    pub host: String,
    /// `up` or `down`: whether Nova received the service's heartbeat within
    /// `service_down_time`.
    pub state: String,
    /// `enabled` or `disabled`: whether the scheduler may use the host.
    pub status: String,
    /// Nova's `updated_at`, UTC without a zone, as Nova returned it.
    pub updated_at: Option<String>,
    /// Age of `updated_at` at the poll by Nova's clock; `null` without one.
    pub heartbeat_age_seconds: Option<i64>,
    pub disabled_reason: Option<String>,
    pub forced_down: bool,
}

impl NovaSourceView {
    pub fn from_wire(source: &v1::NovaSource) -> Self {
        NovaSourceView {
            configured: source.configured,
            cloud: non_empty(source.cloud.clone()),
            services_polled_at: rfc3339_from_unix_ms(source.services_polled_at_unix_ms),
            services_error: non_empty(source.services_error.clone()),
            servers_polled_at: rfc3339_from_unix_ms(source.servers_polled_at_unix_ms),
            servers_error: non_empty(source.servers_error.clone()),
            poll_interval_seconds: source.poll_interval_seconds,
            stale_after_seconds: source.stale_after_seconds,
        }
    }
}

impl NovaView {
    pub fn from_wire(nova: &v1::NovaNodeView) -> Self {
        NovaView {
            source: NovaSourceView::from_wire(&nova.source.clone().unwrap_or_default()),
            service: nova.service.as_ref().map(|service| NovaServiceView {
                id: service.id.clone(),
                host: service.host.clone(),
                state: service.state.clone(),
                status: service.status.clone(),
                updated_at: non_empty(service.updated_at.clone()),
                heartbeat_age_seconds: (service.heartbeat_age_seconds >= 0)
                    .then_some(service.heartbeat_age_seconds),
                disabled_reason: non_empty(service.disabled_reason.clone()),
                forced_down: service.forced_down,
            }),
            work_in_progress: nova.work_in_progress.clone(),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct NovaComputeView {
    pub unit: String,
    pub active_state: String,
    pub sub_state: String,
    pub result: String,
    pub main_pid: u32,
    pub invocation_id: String,
    pub n_restarts: u32,
    /// Why the state is unknown; empty otherwise.
    pub unknown_reason: String,
    pub process: Option<ProcessView>,
    /// Signs that a dependency came back after the unit went down; empty
    /// while the unit is up.
    pub dependency_returned: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProcessView {
    pub pid: u32,
    pub state: String,
    pub tracer_pid: u32,
    pub rss_bytes: u64,
    pub cpu_time_ms: u64,
    pub command_line: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CpuView {
    pub count: u32,
    pub usage_percent: f64,
    pub load_average: [f64; 3],
}

#[derive(Debug, Clone, Serialize)]
pub struct MemoryView {
    pub total_bytes: u64,
    pub available_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct SwapView {
    pub total_bytes: u64,
    pub used_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DiskView {
    pub mount_point: String,
    pub fs_type: String,
    pub source: String,
    pub total_bytes: u64,
    pub available_bytes: u64,
    /// True for the filesystem that holds nova's instances_path.
    pub holds_instances: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuestsView {
    pub count: u32,
    pub vcpus: u32,
    pub memory_bytes: u64,
    /// Guests whose qemu was started with `-incoming`.
    pub incoming_migrations: u32,
    pub list: Vec<GuestView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct GuestView {
    pub name: String,
    pub uuid: String,
    pub vcpus: u32,
    pub memory_bytes: u64,
    pub pid: u32,
    /// qemu was started with `-incoming`: the guest arrived by live
    /// migration.
    pub incoming_migration: bool,
    pub process_age_seconds: u64,
}

/// The outcome of the agent's RPC call to nova-compute's queue.
#[derive(Debug, Clone, Serialize)]
pub struct RpcProbeView {
    /// `alive`, `not_responding`, `no_queue` or `unknown`.
    pub state: &'static str,
    /// Why the state is what it is; never contains credentials.
    pub detail: String,
    /// Round trip of the call; 0 unless `alive`.
    pub latency_ms: u64,
    /// When the probe finished, RFC 3339 in UTC.
    pub checked_at: Option<String>,
    /// Routing key of the call, for example `compute.compute-07`.
    pub routing_key: String,
    /// Broker as host:port; empty when none was reached or configured.
    pub broker: String,
    pub timeout_ms: u64,
}

impl RpcProbeView {
    pub fn from_wire(probe: &v1::RpcProbe) -> Self {
        RpcProbeView {
            state: rpc_probe_state_name(probe.state),
            detail: probe.detail.clone(),
            latency_ms: probe.latency_ms,
            checked_at: rfc3339_from_unix_ms(probe.checked_at_unix_ms),
            routing_key: probe.routing_key.clone(),
            broker: probe.broker.clone(),
            timeout_ms: probe.timeout_ms,
        }
    }

    /// Returns the state in a few words for a table cell: `alive 4 ms`,
    /// `not_responding` or `unknown`.
    pub fn summary(&self) -> String {
        if self.state == "alive" {
            format!("alive {} ms", self.latency_ms)
        } else {
            self.state.to_string()
        }
    }
}

/// Returns the lowercase word for an RPC probe state.
pub fn rpc_probe_state_name(state: i32) -> &'static str {
    match v1::RpcProbeState::try_from(state).unwrap_or(v1::RpcProbeState::Unspecified) {
        v1::RpcProbeState::Alive => "alive",
        v1::RpcProbeState::NotResponding => "not_responding",
        v1::RpcProbeState::NoQueue => "no_queue",
        v1::RpcProbeState::Unknown | v1::RpcProbeState::Unspecified => "unknown",
    }
}

/// The agent's findings in nova-compute's log file and journal.
#[derive(Debug, Clone, Serialize)]
pub struct LogView {
    /// Log file the agent follows; empty when none.
    pub log_file: String,
    /// Reason no log file is followed or reading it fails; empty otherwise.
    pub log_file_problem: String,
    /// Unit whose journal the agent reads; empty when none.
    pub journal_unit: String,
    /// Reason the journal is not read; empty otherwise.
    pub journal_problem: String,
    pub active_faults: Vec<LogFaultView>,
    /// Fault records per kind; kinds with none in the last hour are left out.
    pub counts: Vec<FaultKindCountView>,
    pub restart: LogRestartView,
    /// Operator signature files or entries that failed to load.
    pub catalogue_errors: Vec<SignatureLoadErrorView>,
    /// Lines read from the file and the journal since the agent started.
    pub lines_read: u64,
}

/// One active fault of nova-compute's log.
#[derive(Debug, Clone, Serialize)]
pub struct LogFaultView {
    pub signature_id: String,
    /// Fault kind in snake_case, for example `messaging`.
    pub fault_kind: String,
    /// `critical`, `error` or `warning`.
    pub severity: String,
    /// First and latest matching record, RFC 3339 in UTC.
    pub first_seen: Option<String>,
    pub last_seen: Option<String>,
    pub count: u64,
    pub restart_helps: bool,
    pub restart_reason: String,
    pub advice: String,
    /// Start of the latest matching record, secrets redacted.
    pub sample: String,
    pub instance_uuids: Vec<String>,
    pub window_seconds: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultKindCountView {
    pub fault_kind: String,
    pub last_5_minutes: u64,
    pub last_hour: u64,
}

/// Whether restarting nova-compute would help, over all active faults.
#[derive(Debug, Clone, Serialize)]
pub struct LogRestartView {
    pub restart_helps: bool,
    pub reason: String,
    /// Signature of the dependency outage that vetoes a restart; `null` when none.
    pub vetoed_by: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SignatureLoadErrorView {
    pub file: String,
    /// `null` when the whole file failed.
    pub signature_id: Option<String>,
    pub error: String,
}

impl LogView {
    pub fn from_wire(log: &v1::LogHealth) -> Self {
        let restart = log.restart.clone().unwrap_or_default();
        LogView {
            log_file: log.log_file.clone(),
            log_file_problem: log.log_file_problem.clone(),
            journal_unit: log.journal_unit.clone(),
            journal_problem: log.journal_problem.clone(),
            active_faults: log
                .active_faults
                .iter()
                .map(LogFaultView::from_wire)
                .collect(),
            counts: log
                .counts
                .iter()
                .map(|c| FaultKindCountView {
                    fault_kind: c.fault_kind.clone(),
                    last_5_minutes: c.last_5_minutes,
                    last_hour: c.last_hour,
                })
                .collect(),
            restart: LogRestartView {
                restart_helps: restart.restart_helps,
                reason: restart.reason,
                vetoed_by: non_empty(restart.vetoed_by),
            },
            catalogue_errors: log
                .catalogue_errors
                .iter()
                .map(|e| SignatureLoadErrorView {
                    file: e.file.clone(),
                    signature_id: non_empty(e.signature_id.clone()),
                    error: e.error.clone(),
                })
                .collect(),
            lines_read: log.lines_read,
        }
    }
}

impl LogFaultView {
    pub fn from_wire(fault: &v1::LogFault) -> Self {
        LogFaultView {
            signature_id: fault.signature_id.clone(),
            fault_kind: fault.fault_kind.clone(),
            severity: fault.severity.clone(),
            first_seen: rfc3339_from_unix_ms(fault.first_seen_unix_ms),
            last_seen: rfc3339_from_unix_ms(fault.last_seen_unix_ms),
            count: fault.count,
            restart_helps: fault.restart_helps,
            restart_reason: fault.restart_reason.clone(),
            advice: fault.advice.clone(),
            sample: fault.sample.clone(),
            instance_uuids: fault.instance_uuids.clone(),
            window_seconds: fault.window_seconds,
        }
    }
}

fn non_empty(value: String) -> Option<String> {
    (!value.is_empty()).then_some(value)
}

/// The outcome of `novamedic restart`.
#[derive(Debug, Clone, Serialize)]
pub struct RestartView {
    pub command_id: String,
    pub node: String,
    pub unit: String,
    /// `succeeded`, `failed`, `rejected` or `timed_out`.
    pub outcome: &'static str,
    pub detail: String,
    pub before: UnitInstanceView,
    pub after: UnitInstanceView,
    pub duration_ms: u64,
    /// True when the agent had executed this command id before and sent its
    /// recorded result.
    pub replayed: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitInstanceView {
    pub main_pid: u32,
    pub invocation_id: String,
    pub active_state: String,
}

/// One entry of `novamedic events`.
#[derive(Debug, Clone, Serialize)]
pub struct EventView {
    pub id: i64,
    pub time: String,
    pub node: String,
    pub kind: String,
    pub detail: String,
    pub actor: String,
    pub command_id: String,
}

/// The self-healing policy as `novamedic policy show` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyView {
    pub mode: String,
    /// Path of the policy file, or "built-in".
    pub source: String,
    /// The validated policy: rules, confirmation and limits.
    pub policy: serde_json::Value,
    pub paused: Option<PolicyPauseView>,
    pub nodes: Vec<NodePolicyView>,
    /// The source of Nova's view that feeds the policy; `null` from
    /// controllers that predate it.
    pub nova_source: Option<NovaSourceView>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PolicyPauseView {
    pub since: Option<String>,
    pub by: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodePolicyView {
    pub node: String,
    /// Reason automation gave up on the node, null when it did not.
    pub needs_human: Option<String>,
    pub silenced_until: Option<String>,
    pub silence_reason: Option<String>,
    pub silenced_by: Option<String>,
    pub restarts_in_window: u32,
    pub in_flight: Option<String>,
    pub last_decision: Option<String>,
}

impl PolicyView {
    pub fn from_wire(status: &v1::PolicyStatus) -> Self {
        PolicyView {
            mode: status.mode.clone(),
            source: status.source.clone(),
            policy: serde_json::from_str(&status.policy_json).unwrap_or(serde_json::Value::Null),
            paused: status.pause.as_ref().map(|pause| PolicyPauseView {
                since: rfc3339_from_unix_ms(pause.since_unix_ms),
                by: pause.by.clone(),
                reason: pause.reason.clone(),
            }),
            nodes: status
                .nodes
                .iter()
                .map(|node| NodePolicyView {
                    node: node.node.clone(),
                    needs_human: non_empty(node.needs_human.clone()),
                    silenced_until: rfc3339_from_unix_ms(node.silenced_until_unix_ms),
                    silence_reason: non_empty(node.silence_reason.clone()),
                    silenced_by: non_empty(node.silenced_by.clone()),
                    restarts_in_window: node.restarts_in_window,
                    in_flight: non_empty(node.in_flight.clone()),
                    last_decision: non_empty(node.last_decision.clone()),
                })
                .collect(),
            nova_source: status.nova_source.as_ref().map(NovaSourceView::from_wire),
        }
    }
}

/// Returns the lowercase word for a health status.
pub fn health_name(status: i32) -> &'static str {
    match v1::HealthStatus::try_from(status).unwrap_or(v1::HealthStatus::Unspecified) {
        v1::HealthStatus::Healthy => "healthy",
        v1::HealthStatus::Degraded => "degraded",
        v1::HealthStatus::Failed => "failed",
        v1::HealthStatus::Stale => "stale",
        v1::HealthStatus::Unknown | v1::HealthStatus::Unspecified => "unknown",
    }
}

/// Returns the lowercase word for a command outcome.
pub fn outcome_name(outcome: i32) -> &'static str {
    match v1::CommandOutcome::try_from(outcome).unwrap_or(v1::CommandOutcome::Unspecified) {
        v1::CommandOutcome::Succeeded => "succeeded",
        v1::CommandOutcome::Failed => "failed",
        v1::CommandOutcome::Rejected => "rejected",
        v1::CommandOutcome::TimedOut => "timed_out",
        v1::CommandOutcome::Unspecified => "unknown",
    }
}

/// Formats Unix milliseconds as RFC 3339 in UTC; `None` for 0.
pub fn rfc3339_from_unix_ms(unix_ms: i64) -> Option<String> {
    if unix_ms == 0 {
        return None;
    }
    let nanos = i128::from(unix_ms) * 1_000_000;
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

impl NodeView {
    /// Builds the view of a node as the controller holds it.
    pub fn from_status(status: &v1::NodeStatus) -> Self {
        let health = status.health.clone().unwrap_or_default();
        let mut view = Self::from_report(&status.node, status.report.as_ref(), &health);
        view.last_seen = rfc3339_from_unix_ms(status.last_seen_unix_ms);
        view.connected = status.connected;
        view.agent_version = status.agent_version.clone();
        view.first_seen = rfc3339_from_unix_ms(status.first_seen_unix_ms);
        view.protocol_version = status.protocol_version;
        view.capabilities = status.capabilities.clone();
        view.report_interval_ms = status.report_interval_ms;
        view.nova = status.nova.as_ref().map(NovaView::from_wire);
        view
    }

    /// Builds the view of a report with the given health.
    pub fn from_report(node: &str, report: Option<&v1::NodeReport>, health: &v1::Health) -> Self {
        let default_report = v1::NodeReport::default();
        let report = report.unwrap_or(&default_report);
        let resources = report.resources.clone().unwrap_or_default();
        let guests = report.guests.clone().unwrap_or_default();
        let nova = report.nova_compute.clone().unwrap_or_default();

        NodeView {
            node: node.to_string(),
            health: health_name(health.status),
            reasons: health.reasons.clone(),
            last_seen: None,
            connected: true,
            agent_version: String::new(),
            first_seen: None,
            protocol_version: 0,
            capabilities: Vec::new(),
            report_interval_ms: 0,
            nova_compute: NovaComputeView {
                unit: nova.unit,
                active_state: nova.active_state,
                sub_state: nova.sub_state,
                result: nova.result,
                main_pid: nova.main_pid,
                invocation_id: nova.invocation_id,
                n_restarts: nova.n_restarts,
                unknown_reason: nova.unknown_reason,
                process: nova.process.map(|p| ProcessView {
                    pid: p.pid,
                    state: p.state,
                    tracer_pid: p.tracer_pid,
                    rss_bytes: p.rss_bytes,
                    cpu_time_ms: p.cpu_time_ms,
                    command_line: p.command_line,
                }),
                dependency_returned: report
                    .dependency_returns
                    .as_ref()
                    .map(|returns| returns.returned.clone())
                    .unwrap_or_default(),
            },
            cpu: CpuView {
                count: resources.cpu_count,
                usage_percent: resources.cpu_usage_percent,
                load_average: [
                    resources.load_average_1m,
                    resources.load_average_5m,
                    resources.load_average_15m,
                ],
            },
            memory: MemoryView {
                total_bytes: resources.memory_total_bytes,
                available_bytes: resources.memory_available_bytes,
                used_bytes: resources.memory_used_bytes,
            },
            swap: SwapView {
                total_bytes: resources.swap_total_bytes,
                used_bytes: resources.swap_used_bytes,
            },
            uptime_seconds: resources.uptime_seconds,
            instances_path: resources.instances_path,
            disks: resources
                .filesystems
                .into_iter()
                .map(|fs| DiskView {
                    mount_point: fs.mount_point,
                    fs_type: fs.fs_type,
                    source: fs.source,
                    total_bytes: fs.total_bytes,
                    available_bytes: fs.available_bytes,
                    holds_instances: fs.holds_instances,
                })
                .collect(),
            guests: GuestsView {
                count: guests.count,
                vcpus: guests.vcpus,
                memory_bytes: guests.memory_bytes,
                incoming_migrations: guests.incoming_migrations,
                list: guests
                    .guests
                    .into_iter()
                    .map(|g| GuestView {
                        name: g.name,
                        uuid: g.uuid,
                        vcpus: g.vcpus,
                        memory_bytes: g.memory_bytes,
                        pid: g.pid,
                        incoming_migration: g.incoming_migration,
                        process_age_seconds: g.process_age_seconds,
                    })
                    .collect(),
            },
            log: report.log.as_ref().map(LogView::from_wire),
            rpc_probe: report.rpc_probe.as_ref().map(RpcProbeView::from_wire),
            nova: None,
        }
    }

    /// Returns the filesystem that holds nova's instances, if reported.
    pub fn instances_disk(&self) -> Option<&DiskView> {
        self.disks.iter().find(|d| d.holds_instances)
    }
}

impl UnitInstanceView {
    pub fn from_wire(instance: Option<&v1::UnitInstance>) -> Self {
        let instance = instance.cloned().unwrap_or_default();
        UnitInstanceView {
            main_pid: instance.main_pid,
            invocation_id: instance.invocation_id,
            active_state: instance.active_state,
        }
    }
}

impl RestartView {
    pub fn from_response(response: &v1::RestartResponse) -> Self {
        let result = response.result.clone().unwrap_or_default();
        RestartView {
            command_id: response.command_id.clone(),
            node: response.node.clone(),
            unit: response.unit.clone(),
            outcome: outcome_name(result.outcome),
            detail: result.detail.clone(),
            before: UnitInstanceView::from_wire(result.before.as_ref()),
            after: UnitInstanceView::from_wire(result.after.as_ref()),
            duration_ms: result.duration_ms,
            replayed: result.replayed,
        }
    }
}

impl EventView {
    pub fn from_wire(event: &v1::Event) -> Self {
        EventView {
            id: event.id,
            time: rfc3339_from_unix_ms(event.time_unix_ms).unwrap_or_default(),
            node: event.node.clone(),
            kind: event.kind.clone(),
            detail: event.detail.clone(),
            actor: event.actor.clone(),
            command_id: event.command_id.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_formats_utc_milliseconds() {
        assert_eq!(
            rfc3339_from_unix_ms(1_700_000_000_123).as_deref(),
            Some("2023-11-14T22:13:20.123Z")
        );
        assert_eq!(rfc3339_from_unix_ms(0), None);
    }

    #[test]
    fn node_view_keeps_stable_json_keys() {
        let status = v1::NodeStatus {
            node: "compute-01".into(),
            health: Some(v1::Health {
                status: v1::HealthStatus::Failed as i32,
                reasons: vec!["nova-compute.service is failed".into()],
            }),
            last_seen_unix_ms: 1_700_000_000_000,
            ..Default::default()
        };
        let json = serde_json::to_value(NodeView::from_status(&status)).unwrap();
        assert_eq!(json["node"], "compute-01");
        assert_eq!(json["health"], "failed");
        assert_eq!(json["reasons"][0], "nova-compute.service is failed");
        assert_eq!(json["last_seen"], "2023-11-14T22:13:20Z");
        for key in [
            "unit",
            "active_state",
            "sub_state",
            "main_pid",
            "invocation_id",
            "n_restarts",
        ] {
            assert!(
                json["nova_compute"].get(key).is_some(),
                "nova_compute.{key} missing"
            );
        }
        assert!(json["cpu"].get("count").is_some());
        assert!(json["cpu"].get("usage_percent").is_some());
        assert!(json["memory"].get("total_bytes").is_some());
        assert!(json["memory"].get("available_bytes").is_some());
        assert!(json["disks"].is_array());
        for key in ["count", "vcpus", "memory_bytes"] {
            assert!(json["guests"].get(key).is_some(), "guests.{key} missing");
        }
        assert!(json["log"].is_null(), "a report without a log section");
        assert!(json["rpc_probe"].is_null(), "a report without a probe");
    }

    #[test]
    fn rpc_probe_view_names_states() {
        let cases = [
            (v1::RpcProbeState::Alive, "alive", "alive 7 ms"),
            (
                v1::RpcProbeState::NotResponding,
                "not_responding",
                "not_responding",
            ),
            (v1::RpcProbeState::NoQueue, "no_queue", "no_queue"),
            (v1::RpcProbeState::Unknown, "unknown", "unknown"),
            (v1::RpcProbeState::Unspecified, "unknown", "unknown"),
        ];
        for (state, name, summary) in cases {
            let report = v1::NodeReport {
                rpc_probe: Some(v1::RpcProbe {
                    state: state as i32,
                    detail: "detail".into(),
                    latency_ms: 7,
                    checked_at_unix_ms: 1_700_000_000_000,
                    routing_key: "compute.compute-01".into(),
                    broker: "127.0.0.1:5672".into(),
                    timeout_ms: 5000,
                }),
                ..Default::default()
            };
            let view = NodeView::from_report("compute-01", Some(&report), &v1::Health::default());
            let probe = view.rpc_probe.as_ref().unwrap();
            assert_eq!(probe.state, name);
            assert_eq!(probe.summary(), summary);
            let json = serde_json::to_value(&view).unwrap();
            assert_eq!(json["rpc_probe"]["state"], name);
            assert_eq!(json["rpc_probe"]["checked_at"], "2023-11-14T22:13:20Z");
            assert_eq!(json["rpc_probe"]["routing_key"], "compute.compute-01");
            assert_eq!(json["rpc_probe"]["timeout_ms"], 5000);
        }
    }

    #[test]
    fn log_view_converts_times_and_empty_ids() {
        let report = v1::NodeReport {
            log: Some(v1::LogHealth {
                log_file: "/var/log/nova/nova-compute.log".into(),
                active_faults: vec![v1::LogFault {
                    signature_id: "libvirt-daemon-unreachable".into(),
                    fault_kind: "hypervisor_connection".into(),
                    severity: "critical".into(),
                    first_seen_unix_ms: 1_700_000_000_000,
                    last_seen_unix_ms: 1_700_000_000_123,
                    count: 2,
                    ..Default::default()
                }],
                restart: Some(v1::LogRestartVerdict {
                    restart_helps: false,
                    reason: "libvirtd is down".into(),
                    vetoed_by: String::new(),
                }),
                catalogue_errors: vec![v1::SignatureLoadError {
                    file: "/etc/novamedic/signatures.d/bad.toml".into(),
                    signature_id: String::new(),
                    error: "invalid TOML".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        let view = NodeView::from_report("compute-01", Some(&report), &v1::Health::default());
        let json = serde_json::to_value(&view).unwrap();
        let fault = &json["log"]["active_faults"][0];
        assert_eq!(fault["fault_kind"], "hypervisor_connection");
        assert_eq!(fault["first_seen"], "2023-11-14T22:13:20Z");
        assert_eq!(fault["last_seen"], "2023-11-14T22:13:20.123Z");
        assert_eq!(fault["count"], 2);
        assert_eq!(json["log"]["restart"]["restart_helps"], false);
        assert!(json["log"]["restart"]["vetoed_by"].is_null());
        assert!(json["log"]["catalogue_errors"][0]["signature_id"].is_null());
        assert_eq!(json["log"]["log_file"], "/var/log/nova/nova-compute.log");
    }
}
