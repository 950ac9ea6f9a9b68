//! The agent's evaluation of its node: healthy, degraded, failed or unknown,
//! with one reason per finding.
//!
//! Failed means nova-compute does not serve. Degraded means it may serve but
//! someone should look. Every rule runs and adds its reason; the status is
//! the worst one found (failed, then unknown, then degraded).

use novamedic_proto::v1::{self, HealthStatus};

use crate::report::format_bytes;

/// Default `[health]` thresholds: below 5 % free space on the instances
/// filesystem or 5 % available memory, the node is degraded.
pub const DEFAULT_MIN_FREE_PERCENT: u8 = 5;

/// The resource thresholds of `[health]` in agent.toml, in percent. Zero
/// turns a check off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Thresholds {
    /// Free space on the filesystem that contains nova's `instances_path`.
    pub min_free_disk_percent: u8,
    /// Available memory of the node.
    pub min_available_memory_percent: u8,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            min_free_disk_percent: DEFAULT_MIN_FREE_PERCENT,
            min_available_memory_percent: DEFAULT_MIN_FREE_PERCENT,
        }
    }
}

/// Evaluates `report` into a health status with reasons.
pub fn evaluate(report: &v1::NodeReport, thresholds: &Thresholds) -> v1::Health {
    let mut findings = Findings::default();
    match &report.nova_compute {
        Some(nova) => check_nova_compute(nova, &mut findings),
        None => findings.add(
            HealthStatus::Unknown,
            "the report holds no nova-compute state".to_string(),
        ),
    }
    if let Some(resources) = &report.resources {
        check_resources(resources, thresholds, &mut findings);
    }
    if let Some(log) = &report.log {
        check_log(log, &mut findings);
    }
    if let (Some(probe), Some(nova)) = (&report.rpc_probe, &report.nova_compute) {
        check_rpc_probe(probe, nova, &mut findings);
    }
    findings.into_health()
}

#[derive(Default)]
struct Findings {
    status: Option<HealthStatus>,
    reasons: Vec<String>,
}

impl Findings {
    fn add(&mut self, status: HealthStatus, reason: String) {
        if self
            .status
            .is_none_or(|current| severity(status) > severity(current))
        {
            self.status = Some(status);
        }
        self.reasons.push(reason);
    }

    fn into_health(self) -> v1::Health {
        v1::Health {
            status: self.status.unwrap_or(HealthStatus::Healthy) as i32,
            reasons: self.reasons,
        }
    }
}

fn severity(status: HealthStatus) -> u8 {
    match status {
        HealthStatus::Healthy | HealthStatus::Unspecified => 0,
        HealthStatus::Degraded => 1,
        HealthStatus::Unknown | HealthStatus::Stale => 2,
        HealthStatus::Failed => 3,
    }
}

fn check_nova_compute(nova: &v1::NovaCompute, findings: &mut Findings) {
    if !nova.unknown_reason.is_empty() || nova.active_state.is_empty() {
        let reason = if nova.unknown_reason.is_empty() {
            "nova-compute's unit state is unknown".to_string()
        } else {
            nova.unknown_reason.clone()
        };
        findings.add(HealthStatus::Unknown, reason);
        return;
    }
    check_unit_state(nova, findings);
    match &nova.process {
        Some(process) => check_process(process, findings),
        None if nova.active_state == "active" => findings.add(
            HealthStatus::Failed,
            format!(
                "{}: main process missing while the unit is active",
                unit_name(nova)
            ),
        ),
        None => {}
    }
}

fn unit_name(nova: &v1::NovaCompute) -> &str {
    if nova.unit.is_empty() {
        "nova-compute"
    } else {
        &nova.unit
    }
}

fn check_unit_state(nova: &v1::NovaCompute, findings: &mut Findings) {
    let unit = unit_name(nova);
    if nova.result == "start-limit-hit" {
        findings.add(
            HealthStatus::Failed,
            format!(
                "{unit} hit its start limit, so systemd gave up restarting it; after fixing the cause an \
                 operator must run `systemctl reset-failed {unit}` before it can start again"
            ),
        );
        return;
    }
    let state = nova.active_state.as_str();
    match state {
        "active" => {}
        "failed" => findings.add(
            HealthStatus::Failed,
            format!("{unit} failed (Result={})", nova.result),
        ),
        "inactive" => findings.add(HealthStatus::Failed, format!("{unit} is inactive")),
        "activating" | "deactivating" | "reloading" => findings.add(
            HealthStatus::Degraded,
            format!("{unit} is {state} (SubState={})", nova.sub_state),
        ),
        other => findings.add(
            HealthStatus::Degraded,
            format!("{unit} is in ActiveState {other}, which the agent does not know"),
        ),
    }
}

fn check_process(process: &v1::Process, findings: &mut Findings) {
    let pid = process.pid;
    match process.state.as_str() {
        "T" | "t" if process.tracer_pid == 0 => findings.add(
            HealthStatus::Degraded,
            format!("nova-compute process {pid} stopped (T) without a tracer; `kill -CONT {pid}` resumes it"),
        ),
        "T" | "t" => findings.add(
            HealthStatus::Degraded,
            format!(
                "nova-compute process {pid} is stopped and being traced by PID {}; leave it alone",
                process.tracer_pid
            ),
        ),
        "D" => findings.add(
            HealthStatus::Degraded,
            format!(
                "nova-compute process {pid} is in uninterruptible sleep (D): check storage such as an NFS \
                 instances_path; a restart does not help"
            ),
        ),
        "Z" => findings.add(
            HealthStatus::Failed,
            format!("nova-compute process {pid} is a zombie (Z)"),
        ),
        "X" => findings.add(
            HealthStatus::Failed,
            format!("nova-compute process {pid} is dead (X)"),
        ),
        _ => {}
    }
}

fn check_resources(resources: &v1::Resources, thresholds: &Thresholds, findings: &mut Findings) {
    if let Some(filesystem) = resources.filesystems.iter().find(|fs| fs.holds_instances) {
        check_instances_filesystem(
            filesystem,
            &resources.instances_path,
            thresholds.min_free_disk_percent,
            findings,
        );
    }
    let total = resources.memory_total_bytes;
    let available = resources.memory_available_bytes;
    if total > 0 && below_percent(available, total, thresholds.min_available_memory_percent) {
        findings.add(
            HealthStatus::Degraded,
            format!(
                "memory available is {:.1} % ({} of {})",
                percent(available, total),
                format_bytes(available),
                format_bytes(total)
            ),
        );
    }
}

fn check_instances_filesystem(
    filesystem: &v1::Filesystem,
    instances_path: &str,
    min_free_percent: u8,
    findings: &mut Findings,
) {
    let mount_point = &filesystem.mount_point;
    if filesystem.total_bytes == 0 {
        findings.add(
            HealthStatus::Degraded,
            format!(
                "the size of {mount_point}, which holds instances_path {instances_path}, cannot be read \
                 (statvfs failed or timed out): check its storage"
            ),
        );
        return;
    }
    let (available, total) = (filesystem.available_bytes, filesystem.total_bytes);
    if below_percent(available, total, min_free_percent) {
        findings.add(
            HealthStatus::Degraded,
            format!(
                "{mount_point}, which holds instances_path {instances_path}, has {:.1} % free ({} of {})",
                percent(available, total),
                format_bytes(available),
                format_bytes(total)
            ),
        );
    }
}

/// Adds the RPC probe's finding. A unit that is active but whose
/// nova-compute does not reply on its queue does not serve, so the node is
/// failed. A missing queue makes it degraded only, because nova-compute
/// declares its queue again a few seconds after a broker restart. An unknown probe (broker unreachable, no transport_url) says
/// nothing about nova-compute and adds nothing, and neither does a probe
/// that finished before the unit's current run started: a restart makes it
/// out of date.
fn check_rpc_probe(probe: &v1::RpcProbe, nova: &v1::NovaCompute, findings: &mut Findings) {
    if nova.active_state != "active" {
        return;
    }
    let checked_at_us = i128::from(probe.checked_at_unix_ms) * 1000;
    if checked_at_us < i128::from(nova.inactive_exit_timestamp_us) {
        return;
    }
    let (status, what) = match v1::RpcProbeState::try_from(probe.state) {
        Ok(v1::RpcProbeState::NotResponding) => (HealthStatus::Failed, "does not answer RPC"),
        Ok(v1::RpcProbeState::NoQueue) => (HealthStatus::Degraded, "has no RPC queue"),
        _ => return,
    };
    findings.add(
        status,
        format!(
            "{} is active but nova-compute {what}: {}",
            unit_name(nova),
            probe.detail
        ),
    );
}

/// Adds the log's findings. The log alone never makes the node failed: a
/// fault record shows that something went wrong, not that nova-compute stopped
/// serving, which the unit and process checks decide.
fn check_log(log: &v1::LogHealth, findings: &mut Findings) {
    for error in &log.catalogue_errors {
        let signature = if error.signature_id.is_empty() {
            String::new()
        } else {
            format!("signature {:?}: ", error.signature_id)
        };
        findings.add(
            HealthStatus::Degraded,
            format!(
                "signature file {}: {signature}{}; using the shipped catalogue and the valid files",
                error.file, error.error
            ),
        );
    }
    let serious = log
        .active_faults
        .iter()
        .filter(|fault| fault.severity == "critical" || fault.severity == "error");
    for fault in serious {
        let restart = if log.restart.as_ref().is_some_and(|r| r.restart_helps) {
            "a restart may help"
        } else {
            "do not restart nova-compute for it"
        };
        findings.add(
            HealthStatus::Degraded,
            format!(
                "nova-compute log: {} {} fault ({}, {} records): {} ({restart})",
                fault.severity,
                fault.fault_kind,
                fault.signature_id,
                fault.count,
                advice_head(&fault.advice)
            ),
        );
    }
}

/// Returns the first sentence of `advice`, which names the first action.
fn advice_head(advice: &str) -> &str {
    let end = advice
        .match_indices(". ")
        .map(|(at, _)| at + 1)
        .next()
        .unwrap_or(advice.len());
    advice[..end].trim()
}

fn below_percent(part: u64, whole: u64, min_percent: u8) -> bool {
    u128::from(part) * 100 < u128::from(whole) * u128::from(min_percent)
}

fn percent(part: u64, whole: u64) -> f64 {
    part as f64 * 100.0 / whole as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn process(state: &str, tracer_pid: u32) -> v1::Process {
        v1::Process {
            pid: 4242,
            state: state.to_string(),
            tracer_pid,
            rss_bytes: GIB,
            cpu_time_ms: 1000,
            command_line: "/usr/bin/python3 /usr/bin/nova-compute".to_string(),
        }
    }

    fn unit(active_state: &str, sub_state: &str, result: &str) -> v1::NovaCompute {
        v1::NovaCompute {
            unit: "nova-compute.service".to_string(),
            active_state: active_state.to_string(),
            sub_state: sub_state.to_string(),
            result: result.to_string(),
            main_pid: 4242,
            process: Some(process("S", 0)),
            ..Default::default()
        }
    }

    fn resources() -> v1::Resources {
        v1::Resources {
            memory_total_bytes: 64 * GIB,
            memory_available_bytes: 32 * GIB,
            instances_path: "/var/lib/nova/instances".to_string(),
            filesystems: vec![
                v1::Filesystem {
                    mount_point: "/".to_string(),
                    fs_type: "ext4".to_string(),
                    total_bytes: 100 * GIB,
                    available_bytes: GIB,
                    ..Default::default()
                },
                v1::Filesystem {
                    mount_point: "/var/lib/nova".to_string(),
                    fs_type: "nfs4".to_string(),
                    total_bytes: 1000 * GIB,
                    available_bytes: 500 * GIB,
                    holds_instances: true,
                    ..Default::default()
                },
            ],
            ..Default::default()
        }
    }

    fn report(nova: v1::NovaCompute) -> v1::NodeReport {
        v1::NodeReport {
            nova_compute: Some(nova),
            resources: Some(resources()),
            ..Default::default()
        }
    }

    fn with_process(mut nova: v1::NovaCompute, process: Option<v1::Process>) -> v1::NovaCompute {
        nova.process = process;
        nova
    }

    fn unknown(reason: &str) -> v1::NovaCompute {
        v1::NovaCompute {
            unknown_reason: reason.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn unit_and_process_rules() {
        use HealthStatus::*;
        let cases: Vec<(&str, v1::NovaCompute, HealthStatus, &str)> = vec![
            ("healthy", unit("active", "running", "success"), Healthy, ""),
            ("not installed", unknown("nova-compute is not installed"), Unknown, "nova-compute is not installed"),
            ("no systemd", unknown("systemd is not PID 1"), Unknown, "systemd is not PID 1"),
            ("no state", v1::NovaCompute::default(), Unknown, "unknown"),
            ("failed", unit("failed", "failed", "signal"), Failed, "nova-compute.service failed (Result=signal)"),
            ("inactive", unit("inactive", "dead", "success"), Failed, "nova-compute.service is inactive"),
            (
                "start limit",
                unit("failed", "failed", "start-limit-hit"),
                Failed,
                "systemctl reset-failed nova-compute.service",
            ),
            ("activating", unit("activating", "auto-restart", "exit-code"), Degraded, "is activating"),
            ("deactivating", unit("deactivating", "stop-sigterm", "success"), Degraded, "is deactivating"),
            ("reloading", unit("reloading", "reload", "success"), Degraded, "is reloading"),
            ("odd state", unit("maintenance", "", "success"), Degraded, "maintenance"),
            (
                "missing process",
                with_process(unit("active", "running", "success"), None),
                Failed,
                "main process missing while the unit is active",
            ),
            (
                "stopped",
                with_process(unit("active", "running", "success"), Some(process("T", 0))),
                Degraded,
                "process 4242 stopped (T) without a tracer",
            ),
            (
                "traced",
                with_process(unit("active", "running", "success"), Some(process("t", 999))),
                Degraded,
                "being traced by PID 999; leave it alone",
            ),
            (
                "disk sleep",
                with_process(unit("active", "running", "success"), Some(process("D", 0))),
                Degraded,
                "uninterruptible sleep (D): check storage such as an NFS instances_path; a restart does not help",
            ),
            (
                "zombie",
                with_process(unit("active", "running", "success"), Some(process("Z", 0))),
                Failed,
                "zombie",
            ),
            (
                "inactive without process",
                with_process(unit("inactive", "dead", "success"), None),
                Failed,
                "is inactive",
            ),
        ];
        for (name, nova, expected_status, expected_reason) in cases {
            let health = evaluate(&report(nova), &Thresholds::default());
            assert_eq!(
                health.status, expected_status as i32,
                "{name}: {:?}",
                health.reasons
            );
            if expected_reason.is_empty() {
                assert!(health.reasons.is_empty(), "{name}: {:?}", health.reasons);
            } else {
                assert_eq!(health.reasons.len(), 1, "{name}: {:?}", health.reasons);
                assert!(
                    health.reasons[0].contains(expected_reason),
                    "{name}: {:?}",
                    health.reasons
                );
            }
        }
    }

    #[test]
    fn thresholds_move_and_zero_turns_a_check_off() {
        let mut report = report(unit("active", "running", "success"));
        let resources = report.resources.as_mut().unwrap();
        resources.filesystems[1].available_bytes = 49 * GIB;
        resources.memory_available_bytes = 3 * GIB;

        let off = Thresholds {
            min_free_disk_percent: 0,
            min_available_memory_percent: 0,
        };
        let health = evaluate(&report, &off);
        assert_eq!(
            health.status,
            HealthStatus::Healthy as i32,
            "{:?}",
            health.reasons
        );

        let strict = Thresholds {
            min_free_disk_percent: 20,
            min_available_memory_percent: 0,
        };
        report.resources.as_mut().unwrap().filesystems[1].available_bytes = 146 * GIB;
        let health = evaluate(&report, &strict);
        assert_eq!(health.status, HealthStatus::Degraded as i32);
        assert_eq!(health.reasons.len(), 1, "{:?}", health.reasons);
        assert!(
            health.reasons[0].contains("has 14.6 % free"),
            "{:?}",
            health.reasons
        );
    }

    #[test]
    fn resource_rules() {
        let healthy = unit("active", "running", "success");
        type Case = (
            &'static str,
            fn(&mut v1::Resources),
            HealthStatus,
            &'static str,
        );
        let cases: Vec<Case> = vec![
            ("plenty", |_| {}, HealthStatus::Healthy, ""),
            (
                "instances almost full",
                |r| r.filesystems[1].available_bytes = 49 * GIB,
                HealthStatus::Degraded,
                "/var/lib/nova, which holds instances_path /var/lib/nova/instances, has 4.9 % free",
            ),
            (
                "exactly five percent",
                |r| r.filesystems[1].available_bytes = 50 * GIB,
                HealthStatus::Healthy,
                "",
            ),
            (
                "instances size unreadable",
                |r| {
                    r.filesystems[1].total_bytes = 0;
                    r.filesystems[1].available_bytes = 0;
                },
                HealthStatus::Degraded,
                "cannot be read",
            ),
            (
                "no filesystem holds instances",
                |r| r.filesystems[1].holds_instances = false,
                HealthStatus::Healthy,
                "",
            ),
            (
                "memory low",
                |r| r.memory_available_bytes = 3 * GIB,
                HealthStatus::Degraded,
                "memory available is 4.7 % (3.0 GiB of 64.0 GiB)",
            ),
        ];
        for (name, change, expected_status, expected_reason) in cases {
            let mut report = report(healthy.clone());
            change(report.resources.as_mut().unwrap());
            let health = evaluate(&report, &Thresholds::default());
            assert_eq!(
                health.status, expected_status as i32,
                "{name}: {:?}",
                health.reasons
            );
            if expected_reason.is_empty() {
                assert!(health.reasons.is_empty(), "{name}: {:?}", health.reasons);
            } else {
                assert!(
                    health.reasons[0].contains(expected_reason),
                    "{name}: {:?}",
                    health.reasons
                );
            }
        }
    }

    fn log_fault(severity: &str, kind: &str, advice: &str) -> v1::LogFault {
        v1::LogFault {
            signature_id: format!("{kind}-signature"),
            fault_kind: kind.to_string(),
            severity: severity.to_string(),
            count: 3,
            advice: advice.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn log_faults_degrade_but_never_fail() {
        let mut report = report(unit("active", "running", "success"));
        report.log = Some(v1::LogHealth {
            active_faults: vec![
                log_fault(
                    "critical",
                    "hypervisor_connection",
                    "Start libvirt first: `systemctl start libvirtd`. Then check it.",
                ),
                log_fault("warning", "scheduling", "Look at the scheduler."),
            ],
            restart: Some(v1::LogRestartVerdict {
                restart_helps: false,
                reason: "libvirtd is down".to_string(),
                vetoed_by: String::new(),
            }),
            ..Default::default()
        });
        let health = evaluate(&report, &Thresholds::default());
        assert_eq!(health.status, HealthStatus::Degraded as i32);
        assert_eq!(
            health.reasons.len(),
            1,
            "warnings add no reason: {:?}",
            health.reasons
        );
        let reason = &health.reasons[0];
        assert!(
            reason.contains("critical hypervisor_connection fault"),
            "{reason}"
        );
        assert!(reason.contains("3 records"), "{reason}");
        assert!(
            reason.contains("Start libvirt first: `systemctl start libvirtd`."),
            "{reason}"
        );
        assert!(
            !reason.contains("Then check it"),
            "only the advice head: {reason}"
        );
        assert!(reason.contains("do not restart"), "{reason}");
    }

    #[test]
    fn log_fault_keeps_failed_unit_failed() {
        let mut report = report(unit("failed", "failed", "exit-code"));
        report.log = Some(v1::LogHealth {
            active_faults: vec![log_fault("error", "messaging", "Check RabbitMQ.")],
            ..Default::default()
        });
        let health = evaluate(&report, &Thresholds::default());
        assert_eq!(health.status, HealthStatus::Failed as i32);
        assert_eq!(health.reasons.len(), 2, "{:?}", health.reasons);
    }

    #[test]
    fn catalogue_error_names_the_file() {
        let mut report = report(unit("active", "running", "success"));
        report.log = Some(v1::LogHealth {
            catalogue_errors: vec![
                v1::SignatureLoadError {
                    file: "/etc/novamedic/signatures.d/broken.toml".to_string(),
                    signature_id: String::new(),
                    error: "invalid TOML at line 3".to_string(),
                },
                v1::SignatureLoadError {
                    file: "/etc/novamedic/signatures.d/site.toml".to_string(),
                    signature_id: "site-nfs".to_string(),
                    error: "invalid regex".to_string(),
                },
            ],
            ..Default::default()
        });
        let health = evaluate(&report, &Thresholds::default());
        assert_eq!(health.status, HealthStatus::Degraded as i32);
        assert_eq!(
            health.reasons[0],
            "signature file /etc/novamedic/signatures.d/broken.toml: invalid TOML at line 3; \
             using the shipped catalogue and the valid files"
        );
        assert!(
            health.reasons[1].contains("site.toml: signature \"site-nfs\": invalid regex"),
            "{:?}",
            health.reasons
        );
    }

    #[test]
    fn advice_head_is_first_sentence() {
        assert_eq!(advice_head("Do this. Then that."), "Do this.");
        assert_eq!(advice_head("Only one sentence"), "Only one sentence");
        assert_eq!(
            advice_head("Run `nova-manage cell_v2 list_hosts`, then retry."),
            "Run `nova-manage cell_v2 list_hosts`, then retry."
        );
    }

    #[test]
    fn worst_finding_wins_and_all_reasons_kept() {
        let mut report = report(unit("failed", "failed", "signal"));
        report.resources.as_mut().unwrap().memory_available_bytes = GIB;
        let health = evaluate(&report, &Thresholds::default());
        assert_eq!(health.status, HealthStatus::Failed as i32);
        assert_eq!(health.reasons.len(), 2, "{:?}", health.reasons);

        let mut report = self::report(unknown("systemd is not PID 1"));
        report.resources.as_mut().unwrap().memory_available_bytes = GIB;
        let health = evaluate(&report, &Thresholds::default());
        assert_eq!(health.status, HealthStatus::Unknown as i32);
        assert_eq!(health.reasons.len(), 2, "{:?}", health.reasons);
    }

    #[test]
    fn rpc_probe_rules() {
        use v1::RpcProbeState::*;
        let probe = |state: v1::RpcProbeState, checked_at_unix_ms: i64| v1::RpcProbe {
            state: state as i32,
            detail: "no reply from compute.node within 5000 ms".into(),
            checked_at_unix_ms,
            ..Default::default()
        };
        let mut active = unit("active", "running", "success");
        active.inactive_exit_timestamp_us = 1_000_000_000;
        let cases = [
            (
                "alive",
                active.clone(),
                probe(Alive, 2_000_000),
                HealthStatus::Healthy,
            ),
            (
                "not responding",
                active.clone(),
                probe(NotResponding, 2_000_000),
                HealthStatus::Failed,
            ),
            (
                "no queue",
                active.clone(),
                probe(NoQueue, 2_000_000),
                HealthStatus::Degraded,
            ),
            (
                "broker down",
                active.clone(),
                probe(Unknown, 2_000_000),
                HealthStatus::Healthy,
            ),
            (
                "before restart",
                active.clone(),
                probe(NotResponding, 999_999),
                HealthStatus::Healthy,
            ),
            (
                "unit inactive",
                unit("inactive", "dead", "success"),
                probe(NotResponding, 2_000_000),
                HealthStatus::Failed,
            ),
        ];
        for (name, nova, probe, expected) in cases {
            let mut report = report(nova);
            report.rpc_probe = Some(probe);
            let health = evaluate(&report, &Thresholds::default());
            assert_eq!(
                health.status, expected as i32,
                "{name}: {:?}",
                health.reasons
            );
            let mentions_rpc = health.reasons.iter().any(|r| r.contains(" RPC"));
            assert_eq!(
                mentions_rpc,
                name == "not responding" || name == "no queue",
                "{name}: {:?}",
                health.reasons
            );
        }
    }
}
