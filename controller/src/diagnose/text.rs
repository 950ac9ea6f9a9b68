//! The terminal report. Every text from OpenStack or an agent goes through
//! [`escape_control`], so it cannot move the cursor or forge lines.

use std::fmt::Write;

use super::{Diagnosis, HostCapacity};
use crate::cli::escape_control;

/// Formats the report: verdict first, then the facts behind it.
pub fn render(diagnosis: &Diagnosis) -> String {
    let mut out = String::new();
    let server = &diagnosis.server;
    let verdict = &diagnosis.verdict;
    line(
        &mut out,
        &format!(
            "Server {} ({})",
            server.name.as_deref().unwrap_or("?"),
            server.id
        ),
    );
    field(
        &mut out,
        "Verdict",
        &format!("{}: {}", verdict.cause.name(), verdict.summary),
    );
    for evidence in &verdict.evidence {
        field(&mut out, "", &format!("└ {evidence}"));
    }
    for (index, step) in verdict.next_steps.iter().enumerate() {
        field(
            &mut out,
            if index == 0 { "Next steps" } else { "" },
            &format!("{}. {step}", index + 1),
        );
    }

    out.push('\n');
    field(
        &mut out,
        "Status",
        &format!(
            "{} (vm_state {}, task_state {}, power_state {})",
            opt(&server.status),
            opt(&server.vm_state),
            opt(&server.task_state),
            server
                .power_state
                .map_or_else(|| "-".to_string(), |state| state.to_string())
        ),
    );
    field(
        &mut out,
        "Host",
        &format!(
            "{} (host_status {})",
            opt(&server.host),
            opt(&server.host_status)
        ),
    );
    if let Some(flavor) = &server.flavor {
        field(
            &mut out,
            "Flavor",
            &format!(
                "{}: {} vCPU, {} MiB RAM, {} GiB disk",
                opt(&flavor.original_name),
                flavor.vcpus.unwrap_or(0),
                flavor.ram.unwrap_or(0),
                flavor.disk.unwrap_or(0)
            ),
        );
    }
    field(&mut out, "Created", opt(&server.created));
    if let Some(fault) = &server.fault {
        field(
            &mut out,
            "Fault",
            &format!(
                "{} at {}: {}",
                fault
                    .code
                    .map_or_else(|| "-".to_string(), |code| code.to_string()),
                opt(&fault.created),
                opt(&fault.message)
            ),
        );
        if let Some(details) = &fault.details {
            for detail_line in last_lines(details, 3) {
                field(&mut out, "", &format!("│ {detail_line}"));
            }
        }
    }

    action_lines(&mut out, diagnosis);
    resource_lines(&mut out, diagnosis);
    host_lines(&mut out, diagnosis);
    if !diagnosis.missing.is_empty() {
        out.push('\n');
        for part in &diagnosis.missing {
            field(
                &mut out,
                "Not checked",
                &format!("{}: {}", part.part, part.reason),
            );
        }
    }
    out
}

fn action_lines(out: &mut String, diagnosis: &Diagnosis) {
    if diagnosis.actions.is_empty() {
        return;
    }
    out.push('\n');
    for action in &diagnosis.actions {
        field(
            out,
            "Action",
            &format!(
                "{} {} at {} ({})",
                opt(&action.action),
                opt(&action.request_id),
                opt(&action.start_time),
                action.message.as_deref().unwrap_or("ok")
            ),
        );
        for event in &action.events {
            let mut text = format!(
                "└ {} on {}: {}",
                opt(&event.event),
                opt(&event.host),
                event.result.as_deref().unwrap_or("running")
            );
            if let Some(details) = &event.details {
                let _ = write!(text, ": {details}");
            }
            field(out, "", &text);
        }
    }
}

fn resource_lines(out: &mut String, diagnosis: &Diagnosis) {
    out.push('\n');
    match &diagnosis.image {
        None => field(out, "Image", "none (booted from a volume) or not checked"),
        Some(check) => {
            let status = check
                .image
                .as_ref()
                .map(|image| format!("{} {}", opt(&image.name), opt(&image.status)))
                .unwrap_or_else(|| "not found".to_string());
            field(out, "Image", &format!("{} {status}", check.id));
            for problem in &check.problems {
                field(out, "", &format!("└ {problem}"));
            }
        }
    }
    for port in &diagnosis.ports {
        field(
            out,
            "Port",
            &format!(
                "{} {} vif_type {} on {}",
                port.id,
                opt(&port.status),
                opt(&port.binding_vif_type),
                opt(&port.binding_host_id)
            ),
        );
    }
    for volume in &diagnosis.volumes {
        let status = volume
            .volume
            .as_ref()
            .map(|found| opt(&found.status).to_string())
            .unwrap_or_else(|| "not found".to_string());
        field(out, "Volume", &format!("{} {status}", volume.id));
    }
}

fn host_lines(out: &mut String, diagnosis: &Diagnosis) {
    for host in &diagnosis.hosts {
        out.push('\n');
        field(
            out,
            "Compute host",
            &format!("{} ({})", host.host, host.roles.join(", ")),
        );
        if let Some(service) = &host.service {
            let mut text = format!(
                "nova-compute {} {}",
                opt(&service.state),
                opt(&service.status)
            );
            if let Some(reason) = service
                .disabled_reason
                .as_deref()
                .filter(|reason| !reason.is_empty())
            {
                let _ = write!(text, " ({reason})");
            }
            field(out, "Nova service", &text);
        }
        if let Some(fleet) = &host.fleet {
            field(
                out,
                "novamedic",
                &format!(
                    "node {} {}, nova-compute {}, {} MiB memory available, last seen {}",
                    fleet.node,
                    fleet.health,
                    fleet.nova_compute,
                    fleet.memory_available_bytes >> 20,
                    opt(&fleet.last_seen)
                ),
            );
            for shortfall in &fleet.shortfalls {
                field(out, "", &format!("└ {shortfall}"));
            }
            for fault in &fleet.log_faults {
                field(
                    out,
                    "",
                    &format!(
                        "└ log: {} ({}, {}x) {}",
                        fault.signature_id, fault.fault_kind, fault.count, fault.sample
                    ),
                );
            }
        }
        if let Some(capacity) = &host.placement {
            placement_lines(out, capacity);
        }
        if let Some(logs) = &host.logs {
            host_log_lines(out, logs);
        }
    }
}

/// Prints the provider's capacity table and its shortfalls.
fn placement_lines(out: &mut String, capacity: &HostCapacity) {
    field(
        out,
        "Placement",
        &format!(
            "provider {} ({}), found {}",
            capacity.provider_name,
            capacity.provider_uuid,
            capacity.lookup()
        ),
    );
    let row = |class: &str, capacity: &str, used: &str, free: &str, needs: &str, max_unit: &str| {
        format!("{class:<12} {capacity:>10} {used:>10} {free:>10} {needs:>12} {max_unit:>10}")
    };
    field(
        out,
        "",
        &row(
            "class",
            "capacity",
            "used",
            "free",
            "flavor needs",
            "max_unit",
        ),
    );
    for class in &capacity.classes {
        let needs = class
            .requested
            .map_or_else(|| "-".to_string(), |amount| amount.to_string());
        field(
            out,
            "",
            &row(
                &class.resource_class,
                &class.capacity.to_string(),
                &class.used.to_string(),
                &class.free.to_string(),
                &needs,
                &class.max_unit.to_string(),
            ),
        );
    }
    for shortfall in &capacity.shortfalls {
        field(out, "", &format!("└ {shortfall}"));
    }
}

/// Problem records shown per host; the JSON output has them all.
const SHOWN_LOG_RECORDS: usize = 10;

fn host_log_lines(out: &mut String, logs: &crate::diagnose::HostLogs) {
    let problems: Vec<_> = logs
        .records
        .iter()
        .filter(|record| {
            record.signature_id.is_some() || !matches!(record.level.as_str(), "INFO" | "DEBUG")
        })
        .collect();
    field(
        out,
        "Host log",
        &format!(
            "{} records of this instance in {} files of {}{}, {} of them problems",
            logs.records.len(),
            logs.files_searched.len(),
            if logs.log_file.is_empty() {
                "-"
            } else {
                &logs.log_file
            },
            if logs.truncated {
                " (more matched)"
            } else {
                ""
            },
            problems.len()
        ),
    );
    for record in problems.iter().take(SHOWN_LOG_RECORDS) {
        let signature = record
            .signature_id
            .as_deref()
            .map(|id| format!(" [{id}]"))
            .unwrap_or_default();
        field(
            out,
            "",
            &format!(
                "└ {} {}{signature} {}",
                opt(&record.time),
                record.level,
                record.first_line()
            ),
        );
        if let Some(last) = record.last_line() {
            field(out, "", &format!("  … {}", last.trim()));
        }
    }
    for note in &logs.file_notes {
        field(out, "", &format!("└ {note}"));
    }
}

fn opt(value: &Option<String>) -> &str {
    value
        .as_deref()
        .filter(|text| !text.is_empty())
        .unwrap_or("-")
}

/// Returns the last `count` non-empty lines of a traceback: the exception and its
/// message.
pub fn last_lines(text: &str, count: usize) -> Vec<&str> {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim_end)
        .filter(|line| !line.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(count)..].to_vec()
}

fn line(out: &mut String, text: &str) {
    out.push_str(&escape_control(text));
    out.push('\n');
}

fn field(out: &mut String, name: &str, value: &str) {
    let label = if name.is_empty() {
        String::new()
    } else {
        format!("{name}:")
    };
    let _ = writeln!(out, "{label:>14} {}", escape_control(value));
}
