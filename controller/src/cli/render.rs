//! Text output of the operator commands.

use std::fmt::Write;

use novamedic_proto::v1;
use novamedic_proto::view::{
    rfc3339_from_unix_ms, NodeView, PolicyView, RestartView, UnitInstanceView,
};

use super::table::{escape_control, Table};
use crate::clock::format_age;

mod nova;

/// Formats one line per node, with the reasons of nodes that need attention
/// on lines below.
pub fn nodes(statuses: &[v1::NodeStatus], now_unix_ms: i64) -> String {
    if statuses.is_empty() {
        return "No nodes yet: no agent has connected to this controller.\n".to_string();
    }
    let mut table = Table::new(&[
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
    ]);
    for status in statuses {
        let view = NodeView::from_status(status);
        let has_report = status.report.is_some();
        let cells = vec![
            view.node.clone(),
            view.health.to_string(),
            unit_state(&view),
            view.rpc_probe
                .as_ref()
                .map_or_else(|| "-".to_string(), |probe| probe.summary()),
            if has_report {
                format!("{:.1}", view.cpu.usage_percent)
            } else {
                "-".into()
            },
            if has_report {
                memory(&view)
            } else {
                "-".into()
            },
            view.instances_disk()
                .map_or_else(|| "-".to_string(), |disk| bytes(disk.available_bytes)),
            if has_report {
                view.guests.count.to_string()
            } else {
                "-".into()
            },
            nova::cell(view.nova.as_ref(), now_unix_ms),
            last_seen(status, now_unix_ms),
        ];
        let mut notes = notes(&view);
        notes.extend(nova::notes(view.nova.as_ref()));
        table.push(cells, notes);
    }
    table.render()
}

/// Everything about one node, laid out like `systemctl status`.
pub fn node(status: &v1::NodeStatus, now_unix_ms: i64) -> String {
    let view = NodeView::from_status(status);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}",
        health_dot(view.health),
        escape_control(&view.node)
    );
    field(&mut out, "Health", view.health);
    for reason in &view.reasons {
        field(&mut out, "", &format!("└ {reason}"));
    }
    field(&mut out, "Agent", &agent_line(status));
    field(
        &mut out,
        "Last seen",
        &time_and_age(status.last_seen_unix_ms, now_unix_ms),
    );
    field(
        &mut out,
        "First seen",
        &time_and_age(status.first_seen_unix_ms, now_unix_ms),
    );
    nova::lines(&mut out, view.nova.as_ref(), now_unix_ms);
    if status.report.is_none() {
        field(&mut out, "Report", "none received yet");
        return out;
    }
    nova_compute_lines(&mut out, &view);
    rpc_probe_lines(&mut out, &view, now_unix_ms);
    resource_lines(&mut out, &view);
    guest_lines(&mut out, &view);
    log_lines(&mut out, &view, now_unix_ms);
    out
}

/// Formats the outcome of one restart.
pub fn restart(view: &RestartView) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "restart of {} on {}: {} in {}",
        escape_control(&view.unit),
        escape_control(&view.node),
        view.outcome,
        seconds(view.duration_ms)
    );
    if !view.detail.is_empty() {
        field(&mut out, "Detail", &view.detail);
    }
    field(&mut out, "Before", &instance(&view.before));
    field(&mut out, "After", &instance(&view.after));
    if view.replayed {
        field(
            &mut out,
            "Note",
            "the agent had run this command before and sent its recorded result",
        );
    }
    field(&mut out, "Command", &view.command_id);
    out
}

/// Formats the event history, one line per event.
pub fn events(events: &[v1::Event]) -> String {
    if events.is_empty() {
        return "No events.\n".to_string();
    }
    let mut table = Table::new(&["ID", "TIME", "NODE", "KIND", "ACTOR", "DETAIL"]);
    for event in events {
        let mut detail = event.detail.clone();
        if !event.command_id.is_empty() {
            let _ = write!(detail, " [command {}]", event.command_id);
        }
        let cells = vec![
            event.id.to_string(),
            rfc3339_from_unix_ms(event.time_unix_ms).unwrap_or_else(|| "-".into()),
            // Fleet-wide events name no node.
            if event.node.is_empty() {
                "(fleet)".to_string()
            } else {
                event.node.clone()
            },
            event.kind.clone(),
            dash_if_empty(&event.actor),
            detail,
        ];
        table.push(cells, Vec::new());
    }
    table.render()
}

/// Formats the policy status: mode, pause, Nova's view, and the nodes with
/// policy state.
pub fn policy(view: &PolicyView, now_unix_ms: i64) -> String {
    let mut out = String::new();
    field(&mut out, "Mode", &view.mode);
    field(&mut out, "Policy file", &view.source);
    match &view.paused {
        Some(pause) => field(
            &mut out,
            "Automation",
            &format!(
                "PAUSED by {} since {}: {} (`novamedic resume` lifts it)",
                pause.by,
                pause.since.as_deref().unwrap_or("-"),
                pause.reason
            ),
        ),
        None => field(&mut out, "Automation", "running"),
    }
    if let Some(rules) = view.policy.get("rules").and_then(|rules| rules.as_array()) {
        let names: Vec<String> = rules
            .iter()
            .map(|rule| {
                format!(
                    "{} ({} reports over {} s)",
                    rule["condition"].as_str().unwrap_or("?"),
                    rule["confirm_reports"],
                    rule["confirm_seconds"]
                )
            })
            .collect();
        block(&mut out, "Rules", &names.join("\n"));
    }
    if let Some(node) = view.policy.get("node") {
        field(
            &mut out,
            "Per node",
            &format!(
                "at most {} automated restarts per {} s, back-off from {} s",
                node["max_restarts"], node["window_seconds"], node["backoff_seconds"]
            ),
        );
    }
    if let Some(fleet) = view.policy.get("fleet") {
        field(
            &mut out,
            "Fleet",
            &format!(
                "at most {} in flight, {} s apart plus up to {} s jitter; storm guard at {}% \
                 (at least {} nodes) or {} restarts per window",
                fleet["max_in_flight"],
                fleet["min_gap_seconds"],
                fleet["jitter_seconds"],
                fleet["storm_percent"],
                fleet["storm_min_nodes"],
                fleet["max_restarts_per_window"]
            ),
        );
    }
    if let Some(source) = &view.nova_source {
        nova::source_lines(&mut out, "Nova", source, now_unix_ms);
    }
    if view.nodes.is_empty() {
        out.push_str("\nNo node is silenced, needs a human or has automated restarts.\n");
        return out;
    }
    out.push('\n');
    let mut table = Table::new(&["NODE", "STATE", "RESTARTS", "IN FLIGHT", "DETAIL"]);
    for node in &view.nodes {
        let (state, detail) = if let Some(reason) = &node.needs_human {
            ("needs human", reason.clone())
        } else if let Some(until) = &node.silenced_until {
            (
                "silenced",
                format!(
                    "until {until} by {}: {}",
                    node.silenced_by.as_deref().unwrap_or("-"),
                    node.silence_reason.as_deref().unwrap_or("-")
                ),
            )
        } else {
            ("automated", node.last_decision.clone().unwrap_or_default())
        };
        let cells = vec![
            node.node.clone(),
            state.to_string(),
            node.restarts_in_window.to_string(),
            node.in_flight.clone().unwrap_or_else(|| "-".into()),
            escape_control(&detail).into_owned(),
        ];
        table.push(cells, Vec::new());
    }
    out.push_str(&table.render());
    out
}

fn notes(view: &NodeView) -> Vec<String> {
    let mut notes = view.reasons.clone();
    if !view.connected {
        notes.push("agent not connected".to_string());
    }
    notes
}

fn unit_state(view: &NodeView) -> String {
    let nova = &view.nova_compute;
    if nova.active_state.is_empty() {
        return "-".to_string();
    }
    format!("{}/{}", nova.active_state, dash_if_empty(&nova.sub_state))
}

fn memory(view: &NodeView) -> String {
    format!(
        "{} / {}",
        bytes(view.memory.used_bytes),
        bytes(view.memory.total_bytes)
    )
}

fn last_seen(status: &v1::NodeStatus, now_unix_ms: i64) -> String {
    if status.last_seen_unix_ms == 0 {
        return "never".to_string();
    }
    format_age(now_unix_ms - status.last_seen_unix_ms)
}

fn agent_line(status: &v1::NodeStatus) -> String {
    let state = if status.connected {
        "connected"
    } else {
        "not connected"
    };
    let capabilities = if status.capabilities.is_empty() {
        "none".to_string()
    } else {
        status.capabilities.join(", ")
    };
    format!(
        "{state}; version {}, protocol {}, reports every {}, capabilities: {capabilities}",
        dash_if_empty(&status.agent_version),
        status.protocol_version,
        seconds(status.report_interval_ms),
    )
}

fn nova_compute_lines(out: &mut String, view: &NodeView) {
    let nova = &view.nova_compute;
    if nova.unit.is_empty() {
        field(out, "Unit", "no nova-compute unit found");
    } else {
        field(out, "Unit", &nova.unit);
    }
    if !nova.unknown_reason.is_empty() {
        field(out, "Unknown", &nova.unknown_reason);
    }
    let active = format!(
        "{} ({}), result {}, {} restarts",
        dash_if_empty(&nova.active_state),
        dash_if_empty(&nova.sub_state),
        dash_if_empty(&nova.result),
        nova.n_restarts
    );
    field(out, "Active", &active);
    field(out, "Invocation", &dash_if_empty(&nova.invocation_id));
    match &nova.process {
        Some(process) => {
            let mut main = format!(
                "{} (state {}, RSS {}, CPU {})",
                process.pid,
                process.state,
                bytes(process.rss_bytes),
                seconds(process.cpu_time_ms)
            );
            if process.tracer_pid != 0 {
                let _ = write!(main, ", traced by PID {}", process.tracer_pid);
            }
            field(out, "Main PID", &main);
            field(out, "Command", &process.command_line);
        }
        None => field(
            out,
            "Main PID",
            &format!("{} (no process found)", nova.main_pid),
        ),
    }
}

fn rpc_probe_lines(out: &mut String, view: &NodeView, now_unix_ms: i64) {
    let Some(probe) = &view.rpc_probe else {
        field(
            out,
            "RPC probe",
            "none yet (disabled, or no probe finished)",
        );
        return;
    };
    let mut summary = probe.state.to_string();
    if probe.state == "alive" {
        let _ = write!(summary, " in {} ms", probe.latency_ms);
    }
    let _ = write!(
        summary,
        ", {} via {}, checked {}",
        dash_if_empty(&probe.routing_key),
        dash_if_empty(&probe.broker),
        seen_at(probe.checked_at.as_deref(), now_unix_ms)
    );
    field(out, "RPC probe", &summary);
    field(out, "", &format!("└ {}", probe.detail));
}

fn resource_lines(out: &mut String, view: &NodeView) {
    let cpu = &view.cpu;
    let load = format!(
        "{} cores, {:.1}% used, load {:.2} {:.2} {:.2}",
        cpu.count, cpu.usage_percent, cpu.load_average[0], cpu.load_average[1], cpu.load_average[2]
    );
    field(out, "CPU", &load);
    let memory = format!(
        "{} used of {}, {} available",
        bytes(view.memory.used_bytes),
        bytes(view.memory.total_bytes),
        bytes(view.memory.available_bytes)
    );
    field(out, "Memory", &memory);
    let swap = format!(
        "{} used of {}",
        bytes(view.swap.used_bytes),
        bytes(view.swap.total_bytes)
    );
    field(out, "Swap", &swap);
    field(out, "Uptime", &uptime(view.uptime_seconds));
    field(out, "Instances", &dash_if_empty(&view.instances_path));

    let mut disks = Table::new(&["MOUNT", "TYPE", "SOURCE", "FREE", "SIZE", ""]);
    for disk in &view.disks {
        let marker = if disk.holds_instances {
            "instances"
        } else {
            ""
        };
        let cells = vec![
            disk.mount_point.clone(),
            disk.fs_type.clone(),
            disk.source.clone(),
            bytes(disk.available_bytes),
            bytes(disk.total_bytes),
            marker.to_string(),
        ];
        disks.push(cells, Vec::new());
    }
    block(out, "Disks", &disks.render());
}

fn guest_lines(out: &mut String, view: &NodeView) {
    let guests = &view.guests;
    let summary = format!(
        "{} ({} vCPUs, {})",
        guests.count,
        guests.vcpus,
        bytes(guests.memory_bytes)
    );
    field(out, "Guests", &summary);
    if guests.list.is_empty() {
        return;
    }
    let mut table = Table::new(&["NAME", "UUID", "VCPUS", "MEMORY", "PID"]);
    for guest in &guests.list {
        let cells = vec![
            guest.name.clone(),
            dash_if_empty(&guest.uuid),
            guest.vcpus.to_string(),
            bytes(guest.memory_bytes),
            guest.pid.to_string(),
        ];
        table.push(cells, Vec::new());
    }
    block(out, "", &table.render());
}

/// Writes the log section of `node show`: sources, restart verdict, then each
/// active fault with its times, count and advice.
fn log_lines(out: &mut String, view: &NodeView, now_unix_ms: i64) {
    let Some(log) = &view.log else {
        field(
            out,
            "Log",
            "not reported (agent predates log classification)",
        );
        return;
    };
    let file = match (log.log_file.is_empty(), log.log_file_problem.is_empty()) {
        (false, true) => log.log_file.clone(),
        (false, false) => format!("{} ({})", log.log_file, log.log_file_problem),
        (true, _) => log.log_file_problem.clone(),
    };
    field(out, "Log", &file);
    let journal = if log.journal_problem.is_empty() {
        format!("journal of {}", log.journal_unit)
    } else {
        log.journal_problem.clone()
    };
    field(out, "", &journal);
    for error in &log.catalogue_errors {
        let signature = error
            .signature_id
            .as_ref()
            .map(|id| format!("signature {id}: "))
            .unwrap_or_default();
        let text = format!(
            "└ signature file {}: {signature}{} (not loaded)",
            error.file, error.error
        );
        field(out, "", &text);
    }
    let verdict = if log.restart.restart_helps {
        "helps"
    } else {
        "not recommended"
    };
    field(
        out,
        "Restart",
        &format!("{verdict}: {}", log.restart.reason),
    );
    if log.active_faults.is_empty() {
        field(out, "Faults", "none active");
        return;
    }
    for (index, fault) in log.active_faults.iter().enumerate() {
        let label = if index == 0 { "Faults" } else { "" };
        let head = format!(
            "{} {} ({}), {} records",
            fault.severity, fault.fault_kind, fault.signature_id, fault.count
        );
        field(out, label, &head);
        let seen = format!(
            "  first {}, last {}",
            seen_at(fault.first_seen.as_deref(), now_unix_ms),
            seen_at(fault.last_seen.as_deref(), now_unix_ms)
        );
        field(out, "", &seen);
        let restart = if fault.restart_helps {
            "helps"
        } else {
            "does not help"
        };
        field(
            out,
            "",
            &format!("  restart {restart}: {}", fault.restart_reason),
        );
        field(out, "", &format!("  advice: {}", fault.advice));
        if !fault.instance_uuids.is_empty() {
            field(
                out,
                "",
                &format!("  instances: {}", fault.instance_uuids.join(", ")),
            );
        }
        if let Some(sample) = fault.sample.lines().next() {
            field(out, "", &format!("  sample: {sample}"));
        }
    }
}

/// Formats an RFC 3339 time with its age, or "-".
fn seen_at(time: Option<&str>, now_unix_ms: i64) -> String {
    let Some(time) = time else {
        return "-".to_string();
    };
    let parsed = time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339);
    match parsed {
        Ok(at) => {
            let unix_ms = (at.unix_timestamp_nanos() / 1_000_000) as i64;
            format!("{time} ({})", format_age(now_unix_ms - unix_ms))
        }
        Err(_) => time.to_string(),
    }
}

/// Width of the right-aligned labels in `node show`.
const LABEL_WIDTH: usize = 11;

fn field(out: &mut String, label: &str, value: &str) {
    let label = if label.is_empty() {
        String::new()
    } else {
        format!("{label}:")
    };
    let value = escape_control(value);
    let _ = writeln!(out, "{label:>width$} {value}", width = LABEL_WIDTH + 1);
}

fn block(out: &mut String, label: &str, text: &str) {
    for (index, line) in text.lines().enumerate() {
        field(out, if index == 0 { label } else { "" }, line.trim_end());
    }
}

fn instance(instance: &UnitInstanceView) -> String {
    format!(
        "PID {}, {}, invocation {}",
        instance.main_pid,
        dash_if_empty(&instance.active_state),
        dash_if_empty(&instance.invocation_id)
    )
}

fn health_dot(health: &str) -> &'static str {
    match health {
        "healthy" => "●",
        "degraded" | "stale" | "unknown" => "○",
        _ => "×",
    }
}

fn time_and_age(unix_ms: i64, now_unix_ms: i64) -> String {
    match rfc3339_from_unix_ms(unix_ms) {
        Some(time) => format!("{time} ({})", format_age(now_unix_ms - unix_ms)),
        None => "never".to_string(),
    }
}

fn dash_if_empty(value: &str) -> String {
    if value.is_empty() {
        "-".to_string()
    } else {
        value.to_string()
    }
}

/// Formats a byte count with binary units: "512 B", "1.5 GiB".
pub fn bytes(value: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut amount = value as f64;
    let mut unit = 0;
    while amount >= 1024.0 && unit < UNITS.len() - 1 {
        amount /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value} B")
    } else {
        format!("{amount:.1} {}", UNITS[unit])
    }
}

/// Formats milliseconds as seconds: "4.2 s".
fn seconds(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

fn uptime(total_seconds: u64) -> String {
    let days = total_seconds / 86_400;
    let hours = total_seconds % 86_400 / 3_600;
    let minutes = total_seconds % 3_600 / 60;
    if days > 0 {
        format!("{days}d {hours}h {minutes}m")
    } else {
        format!("{hours}h {minutes}m")
    }
}

#[cfg(test)]
mod tests;
