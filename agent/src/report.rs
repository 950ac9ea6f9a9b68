//! Assembly of the `NodeReport` that the transport sends and `check`
//! prints, and the text table `check` shows.
//!
//! One build reads `/proc/*/cmdline` once and shares that table between the
//! guest scan and the nova-compute search. It reads only CPU and memory
//! through sysinfo, never its process list, so a host with thousands of
//! processes costs one small read per process.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use novamedic_proto::v1;
use novamedic_proto::view::{DiskView, NodeView};

use crate::collect::nova_conf::NovaConfig;
use crate::collect::process::{self, ProcessTable};
use crate::collect::resources::ResourceCollector;
use crate::collect::{dependencies, guests};
use crate::config::AgentConfig;
use crate::health;
use crate::logwatch::LogWatch;
use crate::probe::ProbeHandle;
use crate::systemd::UnitObservation;

/// Builds reports; keeps the state that must live between them (sysinfo's
/// CPU counters, filesystem calls stuck on a dead NFS server, warnings
/// already logged).
pub struct ReportBuilder {
    agent: AgentConfig,
    resources: ResourceCollector,
    /// Config warnings already logged, so each one is logged once per agent
    /// run instead of once per report.
    logged_warnings: HashSet<String>,
    /// nova's config as read for the latest report.
    nova_config: NovaConfig,
    /// The config files of the latest nova-compute process found: when the
    /// unit is down there is no command line to read them from.
    running_config_files: Vec<PathBuf>,
    /// Source of the report's log section; `None` leaves it out.
    log_watch: Option<LogWatch>,
    /// Source of the report's RPC probe result; `None` leaves it out.
    probe: Option<ProbeHandle>,
}

impl ReportBuilder {
    pub fn new(config: &AgentConfig) -> Self {
        ReportBuilder {
            agent: config.clone(),
            resources: ResourceCollector::new(),
            logged_warnings: HashSet::new(),
            nova_config: NovaConfig::default(),
            running_config_files: Vec::new(),
            log_watch: None,
            probe: None,
        }
    }

    /// Adds the latest RPC probe result of `probe` to every report.
    pub fn with_probe(mut self, probe: ProbeHandle) -> Self {
        self.probe = Some(probe);
        self
    }

    /// Adds the faults of `log_watch` to every report.
    pub fn with_log_watch(mut self, log_watch: LogWatch) -> Self {
        self.log_watch = Some(log_watch);
        self
    }

    /// Reads the node and assembles a report. `transitions` is left empty
    /// for the transport to fill.
    ///
    /// Blocks the calling thread for file reads, up to 200 ms on the first
    /// build (sysinfo's minimum CPU interval) and up to 2 s per network
    /// filesystem that does not respond, so async code calls it from
    /// `spawn_blocking`.
    pub fn build(
        &mut self,
        unit: &UnitObservation,
        trigger: v1::ReportTrigger,
        sequence: u64,
    ) -> v1::NodeReport {
        let table = ProcessTable::scan();
        let (nova_compute, nova_argv) = nova_compute_state(unit, &table);

        self.nova_config = NovaConfig::load(nova_argv.as_deref(), &self.agent);
        if nova_argv.is_some() {
            self.running_config_files = self.nova_config.files().to_vec();
        }
        self.log_new_warnings();
        let dependency_returns = self.dependency_returns(unit);
        let resources = self.resources.collect(&self.nova_config.instances_path());

        let mut report = v1::NodeReport {
            sequence,
            collected_at_unix_ms: now_unix_ms(),
            trigger: trigger as i32,
            resources: Some(resources),
            guests: Some(guests::collect(&table)),
            nova_compute: Some(nova_compute),
            health: None,
            transitions: Vec::new(),
            log: self.log_watch.as_ref().map(|w| w.report(now_unix_ms())),
            rpc_probe: self.probe.as_ref().and_then(ProbeHandle::latest),
            dependency_returns,
        };
        report.health = Some(health::evaluate(&report, &self.agent.health));
        report
    }

    /// Returns nova-compute's log file: the agent's `nova_log_file` setting,
    /// else the file named by nova-compute's command line and config as read
    /// for the latest report. `None` before the first build or when nova
    /// logs to the journal.
    pub fn nova_log_file(&self) -> Option<PathBuf> {
        self.agent
            .nova_log_file
            .clone()
            .or_else(|| self.nova_config.log_file())
    }

    /// Checks what came back since the unit went down; `None` while the
    /// unit is not failed or inactive.
    fn dependency_returns(&self, unit: &UnitObservation) -> Option<v1::DependencyReturns> {
        let UnitObservation::Known(snapshot) = unit else {
            return None;
        };
        let down = matches!(snapshot.active_state.as_str(), "failed" | "inactive");
        if !down || snapshot.inactive_enter_timestamp_us == 0 {
            return None;
        }
        let mut files = self.running_config_files.clone();
        for file in self.nova_config.files() {
            if !files.contains(file) {
                files.push(file.clone());
            }
        }
        let sockets: Vec<PathBuf> = dependencies::LIBVIRT_SOCKETS
            .iter()
            .map(PathBuf::from)
            .collect();
        Some(dependencies::returns(
            snapshot.inactive_enter_timestamp_us,
            &files,
            &sockets,
        ))
    }

    fn log_new_warnings(&mut self) {
        for warning in self.nova_config.warnings() {
            if self.logged_warnings.insert(warning.clone()) {
                tracing::warn!(problem = %warning, "nova config not fully read");
            }
        }
    }
}

/// Fills nova-compute's state from the unit observation and the process
/// table. Returns it with nova-compute's command line when its process was
/// found.
fn nova_compute_state(
    unit: &UnitObservation,
    table: &ProcessTable,
) -> (v1::NovaCompute, Option<Vec<String>>) {
    let (mut nova, main_pid) = match unit {
        UnitObservation::Known(snapshot) => (
            v1::NovaCompute {
                unit: snapshot.unit.clone(),
                active_state: snapshot.active_state.clone(),
                sub_state: snapshot.sub_state.clone(),
                result: snapshot.result.clone(),
                main_pid: snapshot.main_pid,
                n_restarts: snapshot.n_restarts,
                invocation_id: snapshot.invocation_id.clone(),
                inactive_exit_timestamp_us: snapshot.inactive_exit_timestamp_us,
                inactive_enter_timestamp_us: snapshot.inactive_enter_timestamp_us,
                ..Default::default()
            },
            snapshot.main_pid,
        ),
        // The process is still searched for: its command line names the
        // config files, which give instances_path.
        UnitObservation::Unknown { unit, reason } => (
            v1::NovaCompute {
                unit: unit.clone().unwrap_or_default(),
                unknown_reason: reason.clone(),
                ..Default::default()
            },
            0,
        ),
    };
    let found = process::find_nova_compute(main_pid, table);
    let argv = found.as_ref().map(|(_, argv)| argv.clone());
    nova.process = found.map(|(process, _)| process);
    (nova, argv)
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

/// Formats a byte count with binary units: "512 B", "1.5 KiB", "2.0 GiB".
pub fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Formats seconds as "3 d 4 h 5 min", "4 h 5 min" or "5 min 7 s".
fn format_duration(seconds: u64) -> String {
    let (days, hours) = (seconds / 86_400, seconds % 86_400 / 3600);
    let (minutes, secs) = (seconds % 3600 / 60, seconds % 60);
    match (days, hours) {
        (0, 0) => format!("{minutes} min {secs} s"),
        (0, _) => format!("{hours} h {minutes} min"),
        _ => format!("{days} d {hours} h {minutes} min"),
    }
}

/// Renders one node for `novamedic-agent check`: health and reasons first,
/// then nova-compute, resources, filesystems and guests.
pub fn render_table(view: &NodeView) -> String {
    let mut text = String::new();
    render_health(&mut text, view);
    render_nova_compute(&mut text, view);
    render_rpc_probe(&mut text, view);
    render_resources(&mut text, view);
    render_filesystems(&mut text, view);
    render_guests(&mut text, view);
    render_log(&mut text, view);
    text
}

// `write!` to a String cannot fail, so its results are ignored below.

fn render_health(text: &mut String, view: &NodeView) {
    let _ = writeln!(text, "node {}: {}", view.node, view.health.to_uppercase());
    for reason in &view.reasons {
        let _ = writeln!(text, "  - {reason}");
    }
}

fn render_nova_compute(text: &mut String, view: &NodeView) {
    let nova = &view.nova_compute;
    let unit = if nova.unit.is_empty() {
        "(none found)"
    } else {
        nova.unit.as_str()
    };
    let _ = writeln!(text, "\nnova-compute");
    let _ = writeln!(text, "  unit          {unit}");
    if !nova.unknown_reason.is_empty() {
        let _ = writeln!(text, "  state         unknown: {}", nova.unknown_reason);
    } else {
        let _ = writeln!(
            text,
            "  state         {} ({}), result {}",
            nova.active_state, nova.sub_state, nova.result
        );
        let _ = writeln!(text, "  main pid      {}", nova.main_pid);
        let _ = writeln!(text, "  invocation    {}", nova.invocation_id);
        let _ = writeln!(text, "  restarts      {}", nova.n_restarts);
    }
    match &nova.process {
        Some(process) => {
            let tracer = if process.tracer_pid == 0 {
                String::new()
            } else {
                format!(", traced by PID {}", process.tracer_pid)
            };
            let _ = writeln!(
                text,
                "  process       PID {}, state {}{tracer}, RSS {}, CPU time {:.1} s",
                process.pid,
                process.state,
                format_bytes(process.rss_bytes),
                process.cpu_time_ms as f64 / 1000.0
            );
            let _ = writeln!(text, "  command line  {}", process.command_line);
        }
        None => {
            let _ = writeln!(text, "  process       not found");
        }
    }
}

fn render_rpc_probe(text: &mut String, view: &NodeView) {
    let Some(probe) = &view.rpc_probe else {
        let _ = writeln!(text, "  rpc probe     disabled");
        return;
    };
    // A probe that never reached a broker, for example because nova's
    // config names none, has neither a routing key nor a broker to show.
    let mut line = format!("  rpc probe     {}", probe.summary());
    match (probe.routing_key.is_empty(), probe.broker.is_empty()) {
        (true, true) => {}
        (false, true) => {
            let _ = write!(line, " ({})", probe.routing_key);
        }
        (true, false) => {
            let _ = write!(line, " (via {})", probe.broker);
        }
        (false, false) => {
            let _ = write!(line, " ({} via {})", probe.routing_key, probe.broker);
        }
    }
    if !probe.detail.is_empty() {
        let _ = write!(line, ": {}", probe.detail);
    }
    let _ = writeln!(text, "{line}");
}

fn render_resources(text: &mut String, view: &NodeView) {
    let [load_1m, load_5m, load_15m] = view.cpu.load_average;
    let _ = writeln!(text, "\nresources");
    let _ = writeln!(
        text,
        "  cpu           {} cores, {:.1} % used, load {load_1m:.2} {load_5m:.2} {load_15m:.2}",
        view.cpu.count, view.cpu.usage_percent
    );
    let _ = writeln!(
        text,
        "  memory        {} available of {} ({} used)",
        format_bytes(view.memory.available_bytes),
        format_bytes(view.memory.total_bytes),
        format_bytes(view.memory.used_bytes)
    );
    let _ = writeln!(
        text,
        "  swap          {} used of {}",
        format_bytes(view.swap.used_bytes),
        format_bytes(view.swap.total_bytes)
    );
    let _ = writeln!(
        text,
        "  uptime        {}",
        format_duration(view.uptime_seconds)
    );
}

fn render_filesystems(text: &mut String, view: &NodeView) {
    let _ = writeln!(
        text,
        "\nfilesystems (* holds instances_path {})",
        view.instances_path
    );
    let width = view
        .disks
        .iter()
        .map(|disk| disk.mount_point.len())
        .max()
        .unwrap_or(0);
    for disk in &view.disks {
        let marker = if disk.holds_instances { '*' } else { ' ' };
        let _ = writeln!(
            text,
            "  {marker} {:<width$}  {:<8} {}  {}",
            disk.mount_point,
            disk.fs_type,
            disk_usage(disk),
            disk.source
        );
    }
    if view.instances_disk().is_none() {
        let _ = writeln!(text, "  no listed filesystem holds instances_path");
    }
}

fn disk_usage(disk: &DiskView) -> String {
    if disk.total_bytes == 0 {
        return "size unknown".to_string();
    }
    let free_percent = disk.available_bytes as f64 * 100.0 / disk.total_bytes as f64;
    format!(
        "{} free of {} ({free_percent:.1} %)",
        format_bytes(disk.available_bytes),
        format_bytes(disk.total_bytes)
    )
}

fn render_guests(text: &mut String, view: &NodeView) {
    let guests = &view.guests;
    let _ = writeln!(
        text,
        "\nguests: {}, {} vCPUs, {}",
        guests.count,
        guests.vcpus,
        format_bytes(guests.memory_bytes)
    );
    for guest in &guests.list {
        let _ = writeln!(
            text,
            "  {}  {}  {} vCPUs  {}  PID {}",
            guest.name,
            guest.uuid,
            guest.vcpus,
            format_bytes(guest.memory_bytes),
            guest.pid
        );
    }
}

fn render_log(text: &mut String, view: &NodeView) {
    let Some(log) = &view.log else {
        return;
    };
    let _ = writeln!(text, "\nnova-compute log");
    let file = match (log.log_file.is_empty(), log.log_file_problem.is_empty()) {
        (false, true) => log.log_file.clone(),
        (false, false) => format!("{} ({})", log.log_file, log.log_file_problem),
        (true, _) => log.log_file_problem.clone(),
    };
    let _ = writeln!(text, "  file          {file}");
    let journal = if log.journal_problem.is_empty() {
        log.journal_unit.clone()
    } else {
        log.journal_problem.clone()
    };
    let _ = writeln!(text, "  journal       {journal}");
    for error in &log.catalogue_errors {
        let id = error
            .signature_id
            .as_ref()
            .map(|id| format!(" signature {id}:"))
            .unwrap_or_default();
        let _ = writeln!(
            text,
            "  catalogue     {}:{id} {} (not loaded)",
            error.file, error.error
        );
    }
    let restart = if log.restart.restart_helps {
        "helps"
    } else {
        "not recommended"
    };
    let _ = writeln!(text, "  restart       {restart}: {}", log.restart.reason);
    if log.active_faults.is_empty() {
        let _ = writeln!(text, "  faults        none active");
    }
    for fault in &log.active_faults {
        let _ = writeln!(
            text,
            "  fault         {} {} ({}), {} records, {} .. {}",
            fault.severity,
            fault.fault_kind,
            fault.signature_id,
            fault.count,
            fault.first_seen.as_deref().unwrap_or("-"),
            fault.last_seen.as_deref().unwrap_or("-"),
        );
        let _ = writeln!(text, "    advice      {}", fault.advice);
        if !fault.instance_uuids.is_empty() {
            let _ = writeln!(text, "    instances   {}", fault.instance_uuids.join(", "));
        }
        let sample = fault.sample.lines().next().unwrap_or("");
        let _ = writeln!(text, "    sample      {sample}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::systemd::UnitSnapshot;

    const GIB: u64 = 1 << 30;

    #[test]
    fn bytes_formatted_binary() {
        let cases = [
            (0, "0 B"),
            (1023, "1023 B"),
            (1536, "1.5 KiB"),
            (512 * 1024 * 1024, "512.0 MiB"),
            (2 * GIB, "2.0 GiB"),
            (3 * 1024 * GIB, "3.0 TiB"),
        ];
        for (bytes, expected) in cases {
            assert_eq!(format_bytes(bytes), expected);
        }
    }

    #[test]
    fn durations_formatted() {
        assert_eq!(format_duration(65), "1 min 5 s");
        assert_eq!(format_duration(3 * 3600 + 120), "3 h 2 min");
        assert_eq!(format_duration(2 * 86_400 + 3600 + 60), "2 d 1 h 1 min");
    }

    fn sample_report() -> v1::NodeReport {
        let mut report = v1::NodeReport {
            resources: Some(v1::Resources {
                cpu_count: 16,
                cpu_usage_percent: 12.5,
                load_average_1m: 1.25,
                load_average_5m: 0.5,
                load_average_15m: 0.25,
                memory_total_bytes: 64 * GIB,
                memory_available_bytes: 40 * GIB,
                memory_used_bytes: 24 * GIB,
                swap_total_bytes: 8 * GIB,
                swap_used_bytes: 0,
                uptime_seconds: 90_061,
                instances_path: "/var/lib/nova/instances".into(),
                filesystems: vec![
                    v1::Filesystem {
                        mount_point: "/".into(),
                        fs_type: "ext4".into(),
                        source: "/dev/vda1".into(),
                        total_bytes: 100 * GIB,
                        available_bytes: 60 * GIB,
                        holds_instances: false,
                    },
                    v1::Filesystem {
                        mount_point: "/var/lib/nova/instances".into(),
                        fs_type: "nfs4".into(),
                        source: "nfs.example.net:/export/nova".into(),
                        total_bytes: 1024 * GIB,
                        available_bytes: 20 * GIB,
                        holds_instances: true,
                    },
                ],
            }),
            guests: Some(v1::Guests {
                guests: vec![v1::Guest {
                    name: "instance-0000002a".into(),
                    uuid: "9a0f8c3e-1b2d-4e5f-8a7b-6c5d4e3f2a1b".into(),
                    vcpus: 4,
                    memory_bytes: 4 * GIB,
                    pid: 3131,
                    ..Default::default()
                }],
                count: 1,
                vcpus: 4,
                memory_bytes: 4 * GIB,
                ..Default::default()
            }),
            nova_compute: Some(v1::NovaCompute {
                unit: "nova-compute.service".into(),
                active_state: "active".into(),
                sub_state: "running".into(),
                result: "success".into(),
                main_pid: 4242,
                n_restarts: 3,
                invocation_id: "0123456789abcdef0123456789abcdef".into(),
                process: Some(v1::Process {
                    pid: 4242,
                    state: "D".into(),
                    tracer_pid: 0,
                    rss_bytes: 180 * 1024 * 1024,
                    cpu_time_ms: 12_340,
                    command_line: "/usr/bin/python3 /usr/bin/nova-compute".into(),
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        report.health = Some(health::evaluate(&report, &health::Thresholds::default()));
        report
    }

    #[test]
    fn table_shows_key_facts() {
        let report = sample_report();
        let view =
            NodeView::from_report("compute-07", Some(&report), report.health.as_ref().unwrap());
        let text = render_table(&view);

        assert!(
            text.starts_with("node compute-07: DEGRADED\n  - "),
            "{text}"
        );
        assert!(text.contains("uninterruptible sleep (D)"), "{text}");
        let facts = [
            "unit          nova-compute.service",
            "state         active (running), result success",
            "main pid      4242",
            "invocation    0123456789abcdef0123456789abcdef",
            "restarts      3",
            "PID 4242, state D, RSS 180.0 MiB, CPU time 12.3 s",
            "16 cores, 12.5 % used, load 1.25 0.50 0.25",
            "40.0 GiB available of 64.0 GiB (24.0 GiB used)",
            "0 B used of 8.0 GiB",
            "1 d 1 h 1 min",
            "holds instances_path /var/lib/nova/instances",
            "instance-0000002a  9a0f8c3e-1b2d-4e5f-8a7b-6c5d4e3f2a1b  4 vCPUs  4.0 GiB  PID 3131",
            "guests: 1, 4 vCPUs, 4.0 GiB",
        ];
        for fact in facts {
            assert!(text.contains(fact), "missing {fact:?} in\n{text}");
        }
        let instances_line = text.lines().find(|line| line.contains("nfs4")).unwrap();
        assert!(
            instances_line
                .trim_start()
                .starts_with("* /var/lib/nova/instances"),
            "{instances_line}"
        );
        assert!(
            instances_line.contains("20.0 GiB free of 1.0 TiB (2.0 %)"),
            "{instances_line}"
        );
        let root_line = text
            .lines()
            .find(|line| line.contains("/dev/vda1"))
            .unwrap();
        assert!(!root_line.contains('*'), "{root_line}");
    }

    #[test]
    fn table_shows_unknown_reason() {
        let report = v1::NodeReport {
            nova_compute: Some(v1::NovaCompute {
                unknown_reason: "nova-compute is not installed".into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let health = health::evaluate(&report, &health::Thresholds::default());
        let text = render_table(&NodeView::from_report("compute-07", Some(&report), &health));
        assert!(
            text.starts_with("node compute-07: UNKNOWN\n  - nova-compute is not installed"),
            "{text}"
        );
        assert!(
            text.contains("state         unknown: nova-compute is not installed"),
            "{text}"
        );
        assert!(text.contains("process       not found"), "{text}");
    }

    #[test]
    fn table_shows_probe_without_target() {
        let mut report = v1::NodeReport::default();
        let health = health::evaluate(&report, &health::Thresholds::default());
        let probe_line = |report: &v1::NodeReport| {
            let text = render_table(&NodeView::from_report("compute-07", Some(report), &health));
            let line = text.lines().find(|line| line.contains("rpc probe"));
            line.expect("an rpc probe line").trim().to_string()
        };

        report.rpc_probe = Some(v1::RpcProbe {
            state: v1::RpcProbeState::Unknown as i32,
            detail: "nova.conf names no transport_url".into(),
            ..Default::default()
        });
        assert_eq!(
            probe_line(&report),
            "rpc probe     unknown: nova.conf names no transport_url"
        );

        report.rpc_probe = Some(v1::RpcProbe {
            state: v1::RpcProbeState::Unknown as i32,
            ..Default::default()
        });
        assert_eq!(probe_line(&report), "rpc probe     unknown");

        report.rpc_probe = Some(v1::RpcProbe {
            state: v1::RpcProbeState::Alive as i32,
            latency_ms: 4,
            routing_key: "compute.compute-07".into(),
            broker: "192.0.2.5:5672".into(),
            detail: "nova-compute replied".into(),
            ..Default::default()
        });
        assert_eq!(
            probe_line(&report),
            "rpc probe     alive 4 ms (compute.compute-07 via 192.0.2.5:5672): nova-compute replied"
        );
    }

    #[test]
    fn build_reads_real_host() {
        let mut builder = ReportBuilder::new(&AgentConfig::default());
        let unit = UnitObservation::Known(UnitSnapshot {
            unit: "nova-compute.service".into(),
            load_state: "loaded".into(),
            active_state: "failed".into(),
            sub_state: "failed".into(),
            result: "exit-code".into(),
            main_pid: 0,
            n_restarts: 2,
            invocation_id: "00112233445566778899aabbccddeeff".into(),
            inactive_exit_timestamp_us: 1_700_000_000_000_000,
            inactive_enter_timestamp_us: 1_700_000_010_000_000,
        });
        let report = builder.build(&unit, v1::ReportTrigger::UnitChange, 7);
        let returns = report
            .dependency_returns
            .as_ref()
            .expect("a failed unit gets the dependency check");
        assert_eq!(returns.down_since_us, 1_700_000_010_000_000);

        assert_eq!(report.sequence, 7);
        assert_eq!(report.trigger, v1::ReportTrigger::UnitChange as i32);
        assert!(report.collected_at_unix_ms > 1_700_000_000_000);
        assert!(report.transitions.is_empty());
        let nova = report.nova_compute.as_ref().unwrap();
        assert_eq!(nova.result, "exit-code");
        assert_eq!(nova.n_restarts, 2);
        assert_eq!(nova.inactive_exit_timestamp_us, 1_700_000_000_000_000);
        let resources = report.resources.as_ref().unwrap();
        assert!(resources.memory_total_bytes > 0);
        assert!(!resources.instances_path.is_empty());
        let health = report.health.as_ref().unwrap();
        assert_eq!(health.status, v1::HealthStatus::Failed as i32);
        assert!(
            health
                .reasons
                .iter()
                .any(|r| r.contains("failed (Result=exit-code)")),
            "{health:?}"
        );
    }

    #[test]
    fn build_with_unknown_unit() {
        let mut builder = ReportBuilder::new(&AgentConfig::default());
        let unit = UnitObservation::Unknown {
            unit: None,
            reason: "systemd is not PID 1".into(),
        };
        let report = builder.build(&unit, v1::ReportTrigger::Connect, 1);
        let nova = report.nova_compute.as_ref().unwrap();
        assert_eq!(nova.unknown_reason, "systemd is not PID 1");
        assert_eq!(nova.unit, "");
        let health = report.health.as_ref().unwrap();
        assert_eq!(health.status, v1::HealthStatus::Unknown as i32);
        assert_eq!(health.reasons[0], "systemd is not PID 1");
    }
}
