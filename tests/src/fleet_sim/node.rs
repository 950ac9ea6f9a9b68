//! One simulated compute node: its nova-compute unit, process and probe,
//! the faults the script gives it, and the reports and command results a
//! real agent would send about it.

use std::time::{SystemTime, UNIX_EPOCH};

use novamedic_proto::v1;

use super::fault::{AfterRestart, FaultKind};

/// nova-compute's unit on every simulated node.
pub const UNIT: &str = "nova-compute.service";

const GIB: u64 = 1 << 30;

/// A fault the node has now.
#[derive(Clone, Copy, Debug)]
pub struct ActiveFault {
    pub kind: FaultKind,
    pub after_restart: AfterRestart,
}

/// The node's state between reports.
#[derive(Debug)]
pub struct SimNode {
    pub name: String,
    index: u64,
    sequence: u64,
    /// Starts of the unit so far; each start gets a new InvocationID and PID.
    starts: u64,
    started_at_unix_us: u64,
    pub fault: Option<ActiveFault>,
    /// A flapping node's fault, held back for one healthy report.
    returning_fault: Option<ActiveFault>,
    transitions: Vec<v1::UnitTransition>,
}

impl SimNode {
    pub fn new(name: String, index: u64) -> Self {
        SimNode {
            name,
            index,
            sequence: 0,
            starts: 1,
            started_at_unix_us: now_unix_us().saturating_sub(86_400_000_000),
            fault: None,
            returning_fault: None,
            transitions: Vec::new(),
        }
    }

    pub fn hello(&self, report_interval_ms: u64) -> v1::Hello {
        v1::Hello {
            node: self.name.clone(),
            agent_version: format!("{}-fleet-sim", env!("CARGO_PKG_VERSION")),
            protocol_version: novamedic_proto::PROTOCOL_VERSION,
            capabilities: vec![novamedic_proto::CAPABILITY_RESTART_UNIT.to_string()],
            nova_compute_unit: UNIT.to_string(),
            report_interval_ms,
        }
    }

    /// Gives the node a fault. Returns whether the unit changed state, in
    /// which case a real agent reports at once.
    pub fn strike(&mut self, fault: ActiveFault) -> bool {
        self.fault = Some(fault);
        self.returning_fault = None;
        if fault.kind.stops_unit() {
            self.record_transition();
            return true;
        }
        false
    }

    /// Restarts the unit as systemd would, and applies the fault's
    /// `after_restart`. Returns the result a real agent sends.
    pub fn restart(&mut self, command_id: &str, duration_ms: u64) -> v1::CommandResult {
        let before = self.unit_instance();
        self.starts += 1;
        self.started_at_unix_us = now_unix_us();
        if let Some(fault) = self.fault {
            match fault.after_restart {
                AfterRestart::Recover => self.fault = None,
                AfterRestart::KeepsFailing => {}
                AfterRestart::Flaps => {
                    self.fault = None;
                    self.returning_fault = Some(fault);
                }
            }
        }
        self.record_transition();
        let after = self.unit_instance();
        let stayed_active = after.active_state == "active";
        let (outcome, detail) = if stayed_active {
            (
                v1::CommandOutcome::Succeeded,
                format!("{UNIT} restarted and stayed active"),
            )
        } else {
            (
                v1::CommandOutcome::Failed,
                format!("{UNIT} restarted but did not stay active"),
            )
        };
        v1::CommandResult {
            command_id: command_id.to_string(),
            outcome: outcome as i32,
            detail,
            before: Some(before),
            after: Some(after),
            duration_ms,
            ..Default::default()
        }
    }

    /// Builds the next report, the way the agent's report builder does, with
    /// the health the agent's own evaluation gives it.
    pub fn report(&mut self, trigger: v1::ReportTrigger) -> v1::NodeReport {
        self.sequence += 1;
        let now_ms = now_unix_ms();
        let nova_compute = self.nova_compute();
        let mut report = v1::NodeReport {
            sequence: self.sequence,
            collected_at_unix_ms: now_ms,
            trigger: trigger as i32,
            resources: Some(self.resources()),
            guests: Some(self.guests()),
            nova_compute: Some(nova_compute),
            health: None,
            transitions: std::mem::take(&mut self.transitions),
            log: Some(log_health()),
            rpc_probe: Some(self.rpc_probe(now_ms)),
            ..Default::default()
        };
        report.health = Some(novamedic_agent::health::evaluate(
            &report,
            &novamedic_agent::health::Thresholds::default(),
        ));
        // A flapping node was healthy for this one report; its fault returns
        // before the next.
        if let Some(fault) = self.returning_fault.take() {
            self.strike(fault);
        }
        report
    }

    /// Returns whether the node's latest state is healthy.
    pub fn is_healthy(&self) -> bool {
        self.fault.is_none()
    }

    fn unit_up(&self) -> bool {
        !self.fault.is_some_and(|fault| fault.kind.stops_unit())
    }

    fn invocation_id(&self) -> String {
        format!("{:016x}{:016x}", self.index + 1, self.starts)
    }

    fn main_pid(&self) -> u32 {
        if self.unit_up() {
            1_000 + (self.starts as u32 % 60_000)
        } else {
            0
        }
    }

    fn unit_instance(&self) -> v1::UnitInstance {
        let nova = self.nova_compute();
        v1::UnitInstance {
            main_pid: nova.main_pid,
            invocation_id: nova.invocation_id,
            active_state: nova.active_state,
        }
    }

    fn record_transition(&mut self) {
        let nova = self.nova_compute();
        self.transitions.push(v1::UnitTransition {
            seen_at_unix_ms: now_unix_ms(),
            active_state: nova.active_state,
            sub_state: nova.sub_state,
            result: nova.result,
            main_pid: nova.main_pid,
            invocation_id: nova.invocation_id,
        });
    }

    fn nova_compute(&self) -> v1::NovaCompute {
        let (active_state, sub_state, result) = match self.fault.map(|fault| fault.kind) {
            Some(FaultKind::UnitFailed) => ("failed", "failed", "exit-code"),
            Some(FaultKind::StartLimitHit) => ("failed", "failed", "start-limit-hit"),
            _ => ("active", "running", "success"),
        };
        let process_state = match self.fault.map(|fault| fault.kind) {
            Some(FaultKind::ProcessStopped) => "T",
            _ => "S",
        };
        let pid = self.main_pid();
        v1::NovaCompute {
            unit: UNIT.to_string(),
            active_state: active_state.to_string(),
            sub_state: sub_state.to_string(),
            result: result.to_string(),
            main_pid: pid,
            n_restarts: 0,
            invocation_id: self.invocation_id(),
            inactive_exit_timestamp_us: self.started_at_unix_us,
            inactive_enter_timestamp_us: 0,
            process: self.unit_up().then(|| v1::Process {
                pid,
                state: process_state.to_string(),
                tracer_pid: 0,
                rss_bytes: 180 << 20,
                cpu_time_ms: 60_000 + self.sequence * 25,
                command_line: "/usr/bin/python3 /usr/bin/nova-compute \
                               --config-file=/etc/nova/nova.conf \
                               --config-file=/etc/nova/nova-compute.conf"
                    .to_string(),
            }),
            unknown_reason: String::new(),
        }
    }

    fn resources(&self) -> v1::Resources {
        let load = 2.0 + (self.index % 7) as f64 * 0.5;
        v1::Resources {
            cpu_count: 64,
            cpu_usage_percent: 20.0 + (self.sequence % 10) as f64,
            load_average_1m: load,
            load_average_5m: load,
            load_average_15m: load,
            memory_total_bytes: 512 * GIB,
            memory_available_bytes: 200 * GIB,
            memory_used_bytes: 312 * GIB,
            swap_total_bytes: 8 * GIB,
            swap_used_bytes: 0,
            filesystems: vec![
                v1::Filesystem {
                    mount_point: "/".to_string(),
                    fs_type: "ext4".to_string(),
                    source: "/dev/sda2".to_string(),
                    total_bytes: 100 * GIB,
                    available_bytes: 60 * GIB,
                    holds_instances: false,
                },
                v1::Filesystem {
                    mount_point: "/var/lib/nova/instances".to_string(),
                    fs_type: "xfs".to_string(),
                    source: "/dev/sdb1".to_string(),
                    total_bytes: 3_600 * GIB,
                    available_bytes: 2_000 * GIB,
                    holds_instances: true,
                },
            ],
            uptime_seconds: 86_400 * 30,
            instances_path: "/var/lib/nova/instances".to_string(),
        }
    }

    fn guests(&self) -> v1::Guests {
        let guests: Vec<v1::Guest> = (0..4)
            .map(|slot| {
                let number = self.index * 4 + slot;
                v1::Guest {
                    name: format!("instance-{number:08x}"),
                    uuid: format!("00000000-0000-4000-8000-{number:012x}"),
                    vcpus: 4,
                    memory_bytes: 8 * GIB,
                    pid: 20_000 + slot as u32,
                    ..Default::default()
                }
            })
            .collect();
        v1::Guests {
            count: guests.len() as u32,
            vcpus: guests.iter().map(|guest| guest.vcpus).sum(),
            memory_bytes: guests.iter().map(|guest| guest.memory_bytes).sum(),
            guests,
            incoming_migrations: 0,
        }
    }

    fn rpc_probe(&self, now_ms: i64) -> v1::RpcProbe {
        let routing_key = format!("compute.{}", self.name);
        let (state, detail, latency_ms) = match self.fault.map(|fault| fault.kind) {
            Some(FaultKind::RpcNotResponding) => (
                v1::RpcProbeState::NotResponding,
                "no reply within 5 s".to_string(),
                0,
            ),
            Some(FaultKind::UnitFailed | FaultKind::StartLimitHit) => (
                v1::RpcProbeState::NoQueue,
                format!("the broker returned the call: no queue is bound to {routing_key}"),
                0,
            ),
            _ => (v1::RpcProbeState::Alive, "replied".to_string(), 4),
        };
        // The agent ignores a probe older than the unit's start, so the
        // simulated probe always ran after it.
        let started_ms = i64::try_from(self.started_at_unix_us / 1_000).unwrap_or(i64::MAX);
        v1::RpcProbe {
            state: state as i32,
            detail,
            latency_ms,
            checked_at_unix_ms: now_ms.max(started_ms + 1),
            routing_key,
            broker: "127.0.0.1:5672".to_string(),
            timeout_ms: 5_000,
        }
    }
}

/// Builds a quiet log health: the log is followed, no fault found, no restart veto.
fn log_health() -> v1::LogHealth {
    v1::LogHealth {
        log_file: "/var/log/nova/nova-compute.log".to_string(),
        log_file_problem: String::new(),
        journal_unit: UNIT.to_string(),
        journal_problem: String::new(),
        active_faults: Vec::new(),
        counts: Vec::new(),
        restart: Some(v1::LogRestartVerdict {
            restart_helps: true,
            reason: "no active fault in the log".to_string(),
            vetoed_by: String::new(),
        }),
        catalogue_errors: Vec::new(),
        lines_read: 1_000,
    }
}

pub fn now_unix_ms() -> i64 {
    i64::try_from(now_unix_us() / 1_000).unwrap_or(i64::MAX)
}

fn now_unix_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(kind: FaultKind, after_restart: AfterRestart) -> ActiveFault {
        ActiveFault {
            kind,
            after_restart,
        }
    }

    fn status(report: &v1::NodeReport) -> v1::HealthStatus {
        report.health.as_ref().unwrap().status()
    }

    #[test]
    fn healthy_node_reports_healthy() {
        let mut node = SimNode::new("sim-1".into(), 0);
        let report = node.report(v1::ReportTrigger::Connect);
        assert_eq!(status(&report), v1::HealthStatus::Healthy, "{report:?}");
        assert_eq!(report.sequence, 1);
    }

    #[test]
    fn each_fault_fails_the_node() {
        for kind in [
            FaultKind::UnitFailed,
            FaultKind::StartLimitHit,
            FaultKind::RpcNotResponding,
        ] {
            let mut node = SimNode::new("sim-1".into(), 0);
            node.strike(fault(kind, AfterRestart::Recover));
            let report = node.report(v1::ReportTrigger::Periodic);
            assert_eq!(status(&report), v1::HealthStatus::Failed, "{kind}");
        }
    }

    #[test]
    fn unit_failure_records_a_transition() {
        let mut node = SimNode::new("sim-1".into(), 0);
        assert!(node.strike(fault(FaultKind::UnitFailed, AfterRestart::Recover)));
        let report = node.report(v1::ReportTrigger::UnitChange);
        assert_eq!(report.transitions.len(), 1);
        assert_eq!(report.transitions[0].active_state, "failed");
        assert!(node
            .report(v1::ReportTrigger::Periodic)
            .transitions
            .is_empty());
    }

    #[test]
    fn restart_outcomes_follow_the_script() {
        let mut node = SimNode::new("sim-1".into(), 0);
        node.strike(fault(FaultKind::UnitFailed, AfterRestart::Recover));
        let result = node.restart("c1", 10);
        assert_eq!(result.outcome(), v1::CommandOutcome::Succeeded);
        assert_ne!(
            result.before.unwrap().invocation_id,
            result.after.unwrap().invocation_id
        );
        assert!(node.is_healthy());

        node.strike(fault(FaultKind::UnitFailed, AfterRestart::KeepsFailing));
        let result = node.restart("c2", 10);
        assert_eq!(result.outcome(), v1::CommandOutcome::Failed);
        assert!(!node.is_healthy());

        node.strike(fault(FaultKind::RpcNotResponding, AfterRestart::Flaps));
        node.restart("c3", 10);
        let healthy = node.report(v1::ReportTrigger::UnitChange);
        assert_eq!(status(&healthy), v1::HealthStatus::Healthy);
        let failing = node.report(v1::ReportTrigger::Periodic);
        assert_eq!(status(&failing), v1::HealthStatus::Failed);
    }
}
