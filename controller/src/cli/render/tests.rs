use super::*;

const GIB: u64 = 1 << 30;

fn sample_status(node: &str, health: v1::HealthStatus, reasons: &[&str]) -> v1::NodeStatus {
    let report = v1::NodeReport {
        resources: Some(v1::Resources {
            cpu_count: 8,
            cpu_usage_percent: 12.34,
            memory_total_bytes: 64 * GIB,
            memory_used_bytes: 10 * GIB,
            memory_available_bytes: 50 * GIB,
            uptime_seconds: 90_061,
            instances_path: "/var/lib/nova/instances".into(),
            filesystems: vec![
                v1::Filesystem {
                    mount_point: "/".into(),
                    fs_type: "ext4".into(),
                    source: "/dev/vda1".into(),
                    total_bytes: 100 * GIB,
                    available_bytes: 20 * GIB,
                    holds_instances: false,
                },
                v1::Filesystem {
                    mount_point: "/var/lib/nova".into(),
                    fs_type: "xfs".into(),
                    source: "/dev/vdb1".into(),
                    total_bytes: 1024 * GIB,
                    available_bytes: 812 * GIB,
                    holds_instances: true,
                },
            ],
            ..Default::default()
        }),
        guests: Some(v1::Guests {
            count: 1,
            vcpus: 4,
            memory_bytes: 8 * GIB,
            guests: vec![v1::Guest {
                name: "instance-0000002a".into(),
                uuid: "6f1c".into(),
                vcpus: 4,
                memory_bytes: 8 * GIB,
                pid: 2345,
                ..Default::default()
            }],
            ..Default::default()
        }),
        nova_compute: Some(v1::NovaCompute {
            unit: "nova-compute.service".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            result: "success".into(),
            main_pid: 1234,
            invocation_id: "0123abcd".into(),
            process: Some(v1::Process {
                pid: 1234,
                state: "S".into(),
                rss_bytes: GIB,
                cpu_time_ms: 12_300,
                command_line: "/usr/bin/nova-compute".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        rpc_probe: Some(v1::RpcProbe {
            state: v1::RpcProbeState::Alive as i32,
            detail: "compute.compute-01 replied with NoSuchMethod".into(),
            latency_ms: 4,
            checked_at_unix_ms: 1_001_000,
            routing_key: "compute.compute-01".into(),
            broker: "10.0.0.2:5672".into(),
            timeout_ms: 10_000,
        }),
        ..Default::default()
    };
    v1::NodeStatus {
        node: node.into(),
        health: Some(v1::Health {
            status: health as i32,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        }),
        last_seen_unix_ms: 1_000_000,
        connected: true,
        agent_version: "0.1.0".into(),
        protocol_version: 1,
        capabilities: vec!["restart_unit".into()],
        report: Some(report),
        first_seen_unix_ms: 500_000,
        report_interval_ms: 10_000,
        nova: None,
    }
}

#[test]
fn byte_units() {
    assert_eq!(bytes(0), "0 B");
    assert_eq!(bytes(1023), "1023 B");
    assert_eq!(bytes(1536), "1.5 KiB");
    assert_eq!(bytes(64 * GIB), "64.0 GiB");
    assert_eq!(bytes(1024 * GIB), "1.0 TiB");
}

#[test]
fn nodes_table_row() {
    let mut failed = sample_status(
        "compute-02",
        v1::HealthStatus::Failed,
        &["nova-compute.service is failed"],
    );
    failed.connected = false;
    let text = nodes(
        &[
            sample_status("compute-01", v1::HealthStatus::Healthy, &[]),
            failed,
        ],
        1_003_000,
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for column in [
        "NODE",
        "HEALTH",
        "NOVA-COMPUTE",
        "RPC",
        "CPU%",
        "MEMORY",
        "INSTANCES FREE",
        "GUESTS",
        "NOVA",
        "LAST SEEN",
    ] {
        assert!(
            lines[0].contains(column),
            "header lacks {column}: {}",
            lines[0]
        );
    }
    let row: Vec<&str> = lines[1]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        row,
        vec![
            "compute-01",
            "healthy",
            "active/running",
            "alive 4 ms",
            "12.3",
            "10.0 GiB / 64.0 GiB",
            "812.0 GiB",
            "1",
            "-",
            "3s ago"
        ]
    );
    assert!(lines[2].starts_with("compute-02"));
    assert_eq!(lines[3], "  └ nova-compute.service is failed");
    assert_eq!(lines[4], "  └ agent not connected");
}

fn nova_source(polled_at_unix_ms: i64) -> v1::NovaSource {
    v1::NovaSource {
        configured: true,
        cloud: "prod".into(),
        services_polled_at_unix_ms: polled_at_unix_ms,
        servers_polled_at_unix_ms: polled_at_unix_ms,
        poll_interval_seconds: 30,
        stale_after_seconds: 90,
        ..Default::default()
    }
}

fn nova_service(state: &str, status: &str, reason: &str) -> v1::NovaService {
    v1::NovaService {
        id: "c350f294-30c9-4f70-858c-e1f3c2f80a0c".into(),
        host: "compute-01.example.net".into(),
        state: state.into(),
        status: status.into(),
        updated_at: "1970-01-01T00:16:38.000000".into(),
        heartbeat_age_seconds: 4,
        disabled_reason: reason.into(),
        forced_down: false,
    }
}

#[test]
fn nodes_nova_column() {
    let mut up = sample_status("compute-01", v1::HealthStatus::Healthy, &[]);
    up.nova = Some(v1::NovaNodeView {
        source: Some(nova_source(1_000_000)),
        service: Some(nova_service("up", "enabled", "")),
        work_in_progress: Vec::new(),
    });
    let mut disabled = sample_status("compute-02", v1::HealthStatus::Healthy, &[]);
    disabled.nova = Some(v1::NovaNodeView {
        source: Some(nova_source(1_000_000)),
        service: Some(nova_service("down", "disabled", "hardware check")),
        work_in_progress: vec!["a1 (web-1) spawning".into()],
    });
    let mut stale = sample_status("compute-03", v1::HealthStatus::Healthy, &[]);
    stale.nova = Some(v1::NovaNodeView {
        source: Some(nova_source(800_000)),
        service: Some(nova_service("up", "enabled", "")),
        work_in_progress: Vec::new(),
    });
    let mut unconfigured = sample_status("compute-04", v1::HealthStatus::Healthy, &[]);
    unconfigured.nova = Some(v1::NovaNodeView::default());

    let text = nodes(&[up, disabled, stale, unconfigured], 1_003_000);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[1].contains("up/enabled"), "{text}");
    assert!(lines[2].contains("down/disabled"), "{text}");
    assert_eq!(lines[3], "  └ nova: disabled: hardware check");
    assert_eq!(lines[4], "  └ nova: 1 instance(s) mid-operation");
    assert!(lines[5].contains("up/enabled (stale)"), "{text}");
    let last_row: Vec<&str> = lines[6]
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(last_row[last_row.len() - 2], "-", "{text}");
}

#[test]
fn node_show_nova_lines() {
    let mut status = sample_status("compute-01", v1::HealthStatus::Healthy, &[]);
    let mut source = nova_source(1_000_000);
    source.servers_error = "Nova returned HTTP 403 for GET /v2.1/servers/detail: forbidden".into();
    status.nova = Some(v1::NovaNodeView {
        source: Some(source),
        service: Some(nova_service(
            "up",
            "disabled",
            "AUTO: Failed to connect to libvirt",
        )),
        work_in_progress: vec!["a1 (web-1) resize_migrating".into()],
    });
    let text = node(&status, 1_003_000);
    for expected in [
        "Nova: up/disabled (heartbeat 4 s old at the poll)",
        "└ up/down is Nova's heartbeat check; enabled/disabled is whether the scheduler may use the host",
        "└ service c350f294-30c9-4f70-858c-e1f3c2f80a0c on host compute-01.example.net, updated_at 1970-01-01T00:16:38.000000 UTC",
        "└ disabled: AUTO: Failed to connect to libvirt",
        "└ mid-operation: a1 (web-1) resize_migrating",
        "Nova polled: 1970-01-01T00:16:40Z (3s ago) from cloud prod, every 30 s",
        "└ busy servers poll failed: Nova returned HTTP 403",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }

    status.nova = Some(v1::NovaNodeView::default());
    let text = node(&status, 1_003_000);
    assert!(
        text.contains("Nova: no cloud configured"),
        "missing the unconfigured source in\n{text}"
    );
}

#[test]
fn node_without_report() {
    let mut status = sample_status("c1", v1::HealthStatus::Unspecified, &[]);
    status.report = None;
    status.last_seen_unix_ms = 0;
    let text = nodes(std::slice::from_ref(&status), 0);
    assert!(text.lines().nth(1).unwrap().contains("never"), "{text}");
    let show = node(&status, 0);
    assert!(show.contains("Report: none received yet"), "{show}");
}

#[test]
fn node_show_has_everything() {
    let text = node(
        &sample_status("compute-01", v1::HealthStatus::Degraded, &["swap in use"]),
        1_003_000,
    );
    for expected in [
        "○ compute-01",
        "Health: degraded",
        "└ swap in use",
        "Agent: connected; version 0.1.0, protocol 1, reports every 10.0 s, capabilities: restart_unit",
        "Last seen: 1970-01-01T00:16:40Z (3s ago)",
        "Unit: nova-compute.service",
        "Active: active (running), result success, 0 restarts",
        "Invocation: 0123abcd",
        "Main PID: 1234 (state S, RSS 1.0 GiB, CPU 12.3 s)",
        "Command: /usr/bin/nova-compute",
        "RPC probe: alive in 4 ms, compute.compute-01 via 10.0.0.2:5672, checked 1970-01-01T00:16:41Z (2s ago)",
        "└ compute.compute-01 replied with NoSuchMethod",
        "CPU: 8 cores, 12.3% used",
        "Memory: 10.0 GiB used of 64.0 GiB, 50.0 GiB available",
        "Uptime: 1d 1h 1m",
        "Instances: /var/lib/nova/instances",
        "/var/lib/nova  xfs   /dev/vdb1  812.0 GiB  1.0 TiB    instances",
        "Guests: 1 (4 vCPUs, 8.0 GiB)",
        "instance-0000002a",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
}

fn log_with_faults() -> v1::LogHealth {
    v1::LogHealth {
        log_file: "/var/log/nova/nova-compute.log".into(),
        journal_unit: "nova-compute.service".into(),
        active_faults: vec![v1::LogFault {
            signature_id: "libvirt-daemon-unreachable".into(),
            fault_kind: "hypervisor_connection".into(),
            severity: "critical".into(),
            first_seen_unix_ms: 940_000,
            last_seen_unix_ms: 1_000_000,
            count: 4,
            restart_helps: false,
            restart_reason: "libvirtd is not running".into(),
            advice: "Start libvirt first: `systemctl start libvirtd`.".into(),
            sample: "ERROR nova.compute.manager Connection to libvirt failed\nTraceback".into(),
            instance_uuids: vec!["4e89ad74-e6f6-4941-8182-9be3186e2bc2".into()],
            window_seconds: 3600,
        }],
        restart: Some(v1::LogRestartVerdict {
            restart_helps: false,
            reason: "libvirtd is not running".into(),
            vetoed_by: String::new(),
        }),
        catalogue_errors: vec![v1::SignatureLoadError {
            file: "/etc/novamedic/signatures.d/bad.toml".into(),
            signature_id: String::new(),
            error: "invalid TOML".into(),
        }],
        ..Default::default()
    }
}

#[test]
fn node_show_lists_log_faults() {
    let mut status = sample_status("compute-01", v1::HealthStatus::Degraded, &[]);
    status.report.as_mut().unwrap().log = Some(log_with_faults());
    let text = node(&status, 1_003_000);
    for expected in [
        "Log: /var/log/nova/nova-compute.log",
        "journal of nova-compute.service",
        "└ signature file /etc/novamedic/signatures.d/bad.toml: invalid TOML (not loaded)",
        "Restart: not recommended: libvirtd is not running",
        "Faults: critical hypervisor_connection (libvirt-daemon-unreachable), 4 records",
        "first 1970-01-01T00:15:40Z (1m ago), last 1970-01-01T00:16:40Z (3s ago)",
        "restart does not help: libvirtd is not running",
        "advice: Start libvirt first: `systemctl start libvirtd`.",
        "instances: 4e89ad74-e6f6-4941-8182-9be3186e2bc2",
        "sample: ERROR nova.compute.manager Connection to libvirt failed",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(
        !text.contains("Traceback"),
        "only the sample's first line: {text}"
    );
}

#[test]
fn node_show_without_log_section() {
    let status = sample_status("compute-01", v1::HealthStatus::Healthy, &[]);
    let text = node(&status, 1_003_000);
    assert!(text.contains("Log: not reported"), "{text}");

    let mut status = status;
    status.report.as_mut().unwrap().log = Some(v1::LogHealth {
        log_file_problem: "no log file: nova_log_file is not set".into(),
        journal_problem: "journalctl not found".into(),
        restart: Some(v1::LogRestartVerdict {
            restart_helps: false,
            reason: "no active fault in nova-compute's log".into(),
            vetoed_by: String::new(),
        }),
        ..Default::default()
    });
    let text = node(&status, 1_003_000);
    assert!(
        text.contains("Log: no log file: nova_log_file is not set"),
        "{text}"
    );
    assert!(text.contains("journalctl not found"), "{text}");
    assert!(text.contains("Faults: none active"), "{text}");
}

#[test]
fn restart_summary() {
    let response = v1::RestartResponse {
        command_id: "abc".into(),
        node: "compute-01".into(),
        unit: "nova-compute.service".into(),
        result: Some(v1::CommandResult {
            command_id: "abc".into(),
            outcome: v1::CommandOutcome::Succeeded as i32,
            detail: "restarted".into(),
            duration_ms: 4_200,
            before: Some(v1::UnitInstance {
                main_pid: 1,
                invocation_id: "aa".into(),
                active_state: "active".into(),
            }),
            ..Default::default()
        }),
    };
    let text = restart(&RestartView::from_response(&response));
    assert!(
        text.starts_with("restart of nova-compute.service on compute-01: succeeded in 4.2 s\n"),
        "{text}"
    );
    assert!(
        text.contains("Before: PID 1, active, invocation aa"),
        "{text}"
    );
    assert!(text.contains("Command: abc"), "{text}");
}

#[test]
fn events_table() {
    let text = events(&[v1::Event {
        id: 7,
        time_unix_ms: 1_700_000_000_000,
        node: "c1".into(),
        kind: "command_sent".into(),
        detail: "restart nova-compute.service: stuck".into(),
        actor: "alice@ops".into(),
        command_id: "abc".into(),
    }]);
    let row = text.lines().nth(1).unwrap();
    assert!(
        row.starts_with("7   2023-11-14T22:13:20Z  c1    command_sent  alice@ops  "),
        "{row}"
    );
    assert!(
        row.ends_with("restart nova-compute.service: stuck [command abc]"),
        "{row}"
    );
}

#[test]
fn operator_text_cannot_inject_terminal_control() {
    let text = events(&[v1::Event {
        id: 8,
        time_unix_ms: 1_700_000_000_000,
        node: "c1".into(),
        kind: "command_sent".into(),
        detail: "restart: x\n9   2023-11-14T22:13:20Z  c2  forged\x1b[2J".into(),
        actor: "mallory\r@ops".into(),
        command_id: String::new(),
    }]);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("x\\n9   2023"), "{text}");
    assert!(text.contains("forged\\x1b[2J"), "{text}");
    assert!(text.contains("mallory\\r@ops"), "{text}");

    let status = sample_status(
        "c1\x1b]0;owned\x07",
        v1::HealthStatus::Degraded,
        &["disk\nfull"],
    );
    for text in [nodes(std::slice::from_ref(&status), 0), node(&status, 0)] {
        assert!(!text.contains('\x1b'), "{text}");
        assert!(!text.contains('\x07'), "{text}");
        assert!(text.contains("c1\\x1b]0;owned\\x07"), "{text}");
        assert!(text.contains("disk\\nfull"), "{text}");
    }
}
