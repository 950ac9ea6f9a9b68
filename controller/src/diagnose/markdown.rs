//! The report for an incident ticket: Markdown with a Mermaid sequence
//! diagram of the request flow and a Gantt chart of the actions and events.

use std::fmt::Write;

use time::macros::format_description;
use time::PrimitiveDateTime;

use super::text::last_lines;
use super::Diagnosis;
use crate::openstack::types::{ActionEvent, InstanceAction};

/// Maximum length of one Mermaid label, in characters.
const MERMAID_LABEL_CHARS: usize = 80;

/// Actions drawn in the sequence diagram, newest first.
const SEQUENCE_ACTIONS: usize = 3;

/// Formats the Markdown report.
pub fn render(diagnosis: &Diagnosis) -> String {
    let mut out = String::new();
    let server = &diagnosis.server;
    let verdict = &diagnosis.verdict;
    let _ = writeln!(
        out,
        "# Why is {} in {}?\n",
        inline(server.name.as_deref().unwrap_or(&server.id)),
        inline(server.status.as_deref().unwrap_or("?"))
    );
    let _ = writeln!(
        out,
        "**Likely cause: {}**: {}\n",
        verdict.cause.name(),
        inline(&verdict.summary)
    );
    out.push_str("## Evidence\n\n");
    for evidence in &verdict.evidence {
        let _ = writeln!(out, "- {}", inline(evidence));
    }
    out.push_str("\n## Next steps\n\n");
    for (index, step) in verdict.next_steps.iter().enumerate() {
        let _ = writeln!(out, "{}. {}", index + 1, step);
    }

    server_section(&mut out, diagnosis);
    if let Some(gantt) = gantt(&diagnosis.actions) {
        out.push_str("\n## Timeline\n\n```mermaid\n");
        out.push_str(&gantt);
        out.push_str("```\n");
    }
    if !diagnosis.actions.is_empty() {
        out.push_str("\n## Request flow\n\n```mermaid\n");
        out.push_str(&sequence(diagnosis));
        out.push_str("```\n");
    }
    events_section(&mut out, diagnosis);
    resources_section(&mut out, diagnosis);
    hosts_section(&mut out, diagnosis);
    placement_section(&mut out, diagnosis);
    host_logs_section(&mut out, diagnosis);
    if !diagnosis.missing.is_empty() {
        out.push_str("\n## Not checked\n\n");
        for part in &diagnosis.missing {
            let _ = writeln!(out, "- {}: {}", inline(&part.part), inline(&part.reason));
        }
    }
    out
}

fn server_section(out: &mut String, diagnosis: &Diagnosis) {
    let server = &diagnosis.server;
    out.push_str("\n## Server\n\n| field | value |\n|---|---|\n");
    let flavor = server.flavor.as_ref().map(|flavor| {
        format!(
            "{} ({} vCPU, {} MiB, {} GiB)",
            flavor.original_name.as_deref().unwrap_or("?"),
            flavor.vcpus.unwrap_or(0),
            flavor.ram.unwrap_or(0),
            flavor.disk.unwrap_or(0)
        )
    });
    let rows = [
        ("id", Some(server.id.clone())),
        ("status", server.status.clone()),
        ("vm_state", server.vm_state.clone()),
        ("task_state", server.task_state.clone()),
        ("host", server.host.clone()),
        ("flavor", flavor),
        ("image", server.image_id().map(str::to_string)),
        ("created", server.created.clone()),
        ("project", server.tenant_id.clone()),
    ];
    for (name, value) in rows {
        let _ = writeln!(
            out,
            "| {name} | {} |",
            cell(value.as_deref().unwrap_or("-"))
        );
    }
    if let Some(fault) = &server.fault {
        let _ = writeln!(
            out,
            "\n**Fault** ({} at {}): {}\n",
            fault
                .code
                .map_or_else(|| "-".to_string(), |code| code.to_string()),
            inline(fault.created.as_deref().unwrap_or("-")),
            inline(fault.message.as_deref().unwrap_or("-"))
        );
        if let Some(details) = &fault.details {
            code_block(out, &last_lines(details, 12).join("\n"));
        }
    }
}

fn events_section(out: &mut String, diagnosis: &Diagnosis) {
    if diagnosis.actions.is_empty() {
        return;
    }
    out.push_str("\n## Actions and events\n\n| action | request id | event | host | result | start | finish | details |\n|---|---|---|---|---|---|---|---|\n");
    for action in &diagnosis.actions {
        let _ = writeln!(
            out,
            "| {} | {} | | | {} | {} | {} | |",
            cell(action.action.as_deref().unwrap_or("-")),
            cell(action.request_id.as_deref().unwrap_or("-")),
            cell(action.message.as_deref().unwrap_or("ok")),
            cell(action.start_time.as_deref().unwrap_or("-")),
            cell(action.updated_at.as_deref().unwrap_or("-")),
        );
        for event in &action.events {
            let _ = writeln!(
                out,
                "| | | {} | {} | {} | {} | {} | {} |",
                cell(event.event.as_deref().unwrap_or("-")),
                cell(event.host.as_deref().unwrap_or("-")),
                cell(event.result.as_deref().unwrap_or("running")),
                cell(event.start_time.as_deref().unwrap_or("-")),
                cell(event.finish_time.as_deref().unwrap_or("-")),
                cell(event.details.as_deref().unwrap_or("")),
            );
        }
    }
}

fn resources_section(out: &mut String, diagnosis: &Diagnosis) {
    out.push_str(
        "\n## Image, ports and volumes\n\n| kind | id | status | notes |\n|---|---|---|---|\n",
    );
    if let Some(check) = &diagnosis.image {
        let status = check
            .image
            .as_ref()
            .and_then(|image| image.status.clone())
            .unwrap_or_else(|| "not found".to_string());
        let _ = writeln!(
            out,
            "| image | {} | {} | {} |",
            cell(&check.id),
            cell(&status),
            cell(&check.problems.join("; "))
        );
    }
    for port in &diagnosis.ports {
        let notes = format!(
            "vif_type {} on {}",
            port.binding_vif_type.as_deref().unwrap_or("-"),
            port.binding_host_id.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            out,
            "| port | {} | {} | {} |",
            cell(&port.id),
            cell(port.status.as_deref().unwrap_or("-")),
            cell(&notes)
        );
    }
    for volume in &diagnosis.volumes {
        let status = volume
            .volume
            .as_ref()
            .and_then(|found| found.status.clone())
            .unwrap_or_else(|| "not found".to_string());
        let _ = writeln!(
            out,
            "| volume | {} | {} | |",
            cell(&volume.id),
            cell(&status)
        );
    }
}

fn hosts_section(out: &mut String, diagnosis: &Diagnosis) {
    if diagnosis.hosts.is_empty() {
        return;
    }
    out.push_str("\n## Compute hosts\n\n| host | role | Nova service | novamedic | log faults |\n|---|---|---|---|---|\n");
    for host in &diagnosis.hosts {
        let service = host
            .service
            .as_ref()
            .map(|service| {
                format!(
                    "{} {} {}",
                    service.state.as_deref().unwrap_or("-"),
                    service.status.as_deref().unwrap_or("-"),
                    service.disabled_reason.as_deref().unwrap_or("")
                )
            })
            .unwrap_or_else(|| "-".to_string());
        let (fleet, faults) = match &host.fleet {
            Some(fleet) => (
                format!(
                    "{}, nova-compute {}, {} MiB free{}",
                    fleet.health,
                    fleet.nova_compute,
                    fleet.memory_available_bytes >> 20,
                    fleet
                        .shortfalls
                        .iter()
                        .map(|shortfall| format!("; {shortfall}"))
                        .collect::<String>()
                ),
                fleet
                    .log_faults
                    .iter()
                    .map(|fault| format!("{} ({}x)", fault.signature_id, fault.count))
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
            None => ("-".to_string(), String::new()),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            cell(&host.host),
            host.roles.join(", "),
            cell(&service),
            cell(&fleet),
            cell(&faults)
        );
    }
}

/// Writes a capacity table per host whose Placement provider was read.
fn placement_section(out: &mut String, diagnosis: &Diagnosis) {
    let hosts: Vec<_> = diagnosis
        .hosts
        .iter()
        .filter_map(|host| Some((host, host.placement.as_ref()?)))
        .collect();
    if hosts.is_empty() {
        return;
    }
    out.push_str("\n## Placement capacity\n\nAs of this report, not of the failed request. Capacity is `(total - reserved) * allocation_ratio`.\n");
    for (host, capacity) in hosts {
        let _ = writeln!(
            out,
            "\n### {}\n\nProvider `{}` ({}), found {}.\n",
            inline(&host.host),
            inline(&capacity.provider_name),
            inline(&capacity.provider_uuid),
            capacity.lookup()
        );
        out.push_str("| class | capacity | used | free | flavor needs | max_unit |\n|---|---:|---:|---:|---:|---:|\n");
        for class in &capacity.classes {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&class.resource_class),
                class.capacity,
                class.used,
                class.free,
                class
                    .requested
                    .map_or_else(|| "-".to_string(), |amount| amount.to_string()),
                class.max_unit
            );
        }
        if !capacity.shortfalls.is_empty() {
            out.push('\n');
            for shortfall in &capacity.shortfalls {
                let _ = writeln!(out, "- {}", inline(shortfall));
            }
        }
    }
}

/// Quotes the records nova-compute logged for the instance on each host:
/// the classified and WARNING-or-worse ones in full, the count of the rest.
fn host_logs_section(out: &mut String, diagnosis: &Diagnosis) {
    for host in &diagnosis.hosts {
        let Some(logs) = &host.logs else { continue };
        let _ = writeln!(out, "\n## nova-compute log on {}\n", inline(&host.host));
        let _ = writeln!(
            out,
            "{} records of this instance in {} files ({}){}.\n",
            logs.records.len(),
            logs.files_searched.len(),
            inline(&logs.files_searched.join(", ")),
            if logs.truncated {
                "; more matched than were returned"
            } else {
                ""
            }
        );
        let problems = logs
            .records
            .iter()
            .filter(|r| r.signature_id.is_some() || !matches!(r.level.as_str(), "INFO" | "DEBUG"));
        for record in problems {
            let signature = match (&record.signature_id, &record.fault_kind) {
                (Some(id), Some(kind)) => format!(" — `{}` ({})", inline(id), inline(kind)),
                _ => String::new(),
            };
            let _ = writeln!(
                out,
                "- {} line {}{signature}",
                inline(&record.file),
                record.line
            );
            code_block(out, &record.text);
        }
        for note in &logs.file_notes {
            let _ = writeln!(out, "- {}", inline(note));
        }
    }
}

/// Builds a Gantt chart of the actions (sections) and their events (tasks), or
/// `None` when no action has a start time.
pub fn gantt(actions: &[InstanceAction]) -> Option<String> {
    let mut body = String::new();
    let mut task = 0;
    for action in actions.iter().rev() {
        let Some(action_start) = action.start_time.as_deref().and_then(parse_time) else {
            continue;
        };
        let _ = writeln!(
            body,
            "    section {}",
            mermaid_text(&format!(
                "{} {}",
                action.action.as_deref().unwrap_or("action"),
                action.request_id.as_deref().unwrap_or("")
            ))
        );
        if action.events.is_empty() {
            let end = action.updated_at.as_deref().and_then(parse_time);
            task += 1;
            push_task(
                &mut body,
                &mermaid_text(action.action.as_deref().unwrap_or("action")),
                action.message.as_deref(),
                task,
                action_start,
                end,
            );
            continue;
        }
        for event in &action.events {
            let Some(start) = event.start_time.as_deref().and_then(parse_time) else {
                continue;
            };
            let end = event.finish_time.as_deref().and_then(parse_time);
            task += 1;
            push_task(
                &mut body,
                &event_label(event),
                event.result.as_deref().or(Some("running")),
                task,
                start,
                end,
            );
        }
    }
    if task == 0 {
        return None;
    }
    Some(format!(
        "gantt\n    title Instance actions and events (UTC)\n    dateFormat YYYY-MM-DD HH:mm:ss\n    axisFormat %H:%M:%S\n{body}"
    ))
}

fn event_label(event: &ActionEvent) -> String {
    let host = event
        .host
        .as_deref()
        .map(|host| host.split('.').next().unwrap_or(host));
    match host {
        Some(host) => mermaid_text(&format!(
            "{} on {host}",
            event.event.as_deref().unwrap_or("event")
        )),
        None => mermaid_text(event.event.as_deref().unwrap_or("event")),
    }
}

fn push_task(
    body: &mut String,
    label: &str,
    result: Option<&str>,
    task: usize,
    start: PrimitiveDateTime,
    end: Option<PrimitiveDateTime>,
) {
    let tag = match result {
        Some("Error") => "crit, ",
        Some("running") | None => "active, ",
        _ => "done, ",
    };
    // A task needs a visible length; Nova's events can finish in the same
    // second they start.
    let end = end
        .filter(|end| *end > start)
        .unwrap_or(start + time::Duration::seconds(1));
    let _ = writeln!(
        body,
        "    {label} :{tag}t{task}, {}, {}",
        format_time(start),
        format_time(end)
    );
}

/// Builds a sequence diagram of the newest actions: the user's request, the
/// conductor's scheduling, each compute node's work and the hypervisor.
pub fn sequence(diagnosis: &Diagnosis) -> String {
    let actions: Vec<&InstanceAction> = diagnosis.actions.iter().take(SEQUENCE_ACTIONS).collect();
    let mut compute_hosts: Vec<String> = Vec::new();
    for event in actions.iter().flat_map(|action| action.events.iter()) {
        if let Some(host) = event.host.as_deref().filter(|_| event.on_compute()) {
            if !compute_hosts.iter().any(|known| known == host) {
                compute_hosts.push(host.to_string());
            }
        }
    }
    if compute_hosts.is_empty() {
        if let Some(host) = diagnosis.server.host.as_deref() {
            compute_hosts.push(host.to_string());
        }
    }

    // The hypervisor is drawn failing only when the verdict blames it.
    let hypervisor_failed = diagnosis.verdict.cause == super::Cause::Hypervisor;
    let mut out = String::from(
        "sequenceDiagram\n    participant U as User\n    participant A as nova-api\n    participant S as Scheduler and conductor\n",
    );
    for (index, host) in compute_hosts.iter().enumerate() {
        let _ = writeln!(out, "    participant C{index} as {}", mermaid_text(host));
    }
    out.push_str("    participant H as Hypervisor\n");
    let participant = |host: Option<&str>| -> String {
        host.and_then(|host| compute_hosts.iter().position(|known| known == host))
            .map_or_else(|| "C0".to_string(), |index| format!("C{index}"))
    };

    for action in actions.iter().rev() {
        let _ = writeln!(
            out,
            "    U->>A: {}",
            mermaid_text(&format!(
                "{} {}",
                action.action.as_deref().unwrap_or("action"),
                action.request_id.as_deref().unwrap_or("")
            ))
        );
        for event in &action.events {
            let name = mermaid_text(event.event.as_deref().unwrap_or("event"));
            let outcome = event_outcome(event);
            if event.on_compute() && !compute_hosts.is_empty() {
                let compute = participant(event.host.as_deref());
                let caller = if action.action.as_deref() == Some("create") {
                    "S"
                } else {
                    "A"
                };
                let _ = writeln!(out, "    {caller}->>{compute}: {name}");
                if event.failed() && hypervisor_failed {
                    let _ = writeln!(out, "    {compute}->>H: virt driver call");
                    let _ = writeln!(out, "    H--x{compute}: {outcome}");
                    let _ = writeln!(out, "    {compute}--x{caller}: Error");
                } else if event.failed() {
                    let _ = writeln!(out, "    {compute}--x{caller}: {outcome}");
                } else {
                    let _ = writeln!(out, "    {compute}->>H: virt driver call");
                    let _ = writeln!(out, "    H-->>{compute}: done");
                    let _ = writeln!(out, "    {compute}-->>{caller}: {outcome}");
                }
            } else {
                let _ = writeln!(out, "    A->>S: {name}");
                let arrow = if event.failed() { "--x" } else { "-->>" };
                let _ = writeln!(out, "    S{arrow}A: {outcome}");
            }
        }
        let arrow = if action.message.as_deref() == Some("Error") {
            "--x"
        } else {
            "-->>"
        };
        let _ = writeln!(
            out,
            "    A{arrow}U: {}",
            mermaid_text(action.message.as_deref().unwrap_or("done"))
        );
    }
    if let Some(message) = diagnosis
        .server
        .fault
        .as_ref()
        .and_then(|fault| fault.message.as_deref())
    {
        let _ = writeln!(out, "    Note over U,A: fault {}", mermaid_text(message));
    }
    out
}

fn event_outcome(event: &ActionEvent) -> String {
    let result = event.result.as_deref().unwrap_or("running");
    match event.details.as_deref().filter(|_| event.failed()) {
        Some(details) => mermaid_text(&format!("{result} {details}")),
        None => mermaid_text(result),
    }
}

/// Makes `text` safe inside a Mermaid label: keeps letters, digits, spaces
/// and `.-_/()=,+@'`, turns everything else (the `:`, `;`, `#`, `%`, `<`,
/// quotes and newlines that end or escape a label) into a space, and
/// shortens the result.
pub fn mermaid_text(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || " .-_/()=,+@'".contains(c) {
                c
            } else {
                ' '
            }
        })
        .collect();
    let mut words = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if words.chars().count() > MERMAID_LABEL_CHARS {
        words = words
            .chars()
            .take(MERMAID_LABEL_CHARS - 3)
            .collect::<String>()
            + "...";
    }
    if words.is_empty() {
        words.push('-');
    }
    words
}

/// Parses Nova's timestamps (`2026-11-30T08:57:04.118224`,
/// `2026-11-30T09:02:11Z`) to the second.
fn parse_time(text: &str) -> Option<PrimitiveDateTime> {
    let seconds = text.get(..19)?.replace('T', " ");
    PrimitiveDateTime::parse(
        &seconds,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()
}

fn format_time(time: PrimitiveDateTime) -> String {
    time.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]"
    ))
    .unwrap_or_default()
}

/// Text for a Markdown table cell: one line, `|` escaped, no HTML.
fn cell(text: &str) -> String {
    inline(text).replace('|', "\\|")
}

/// Text for a Markdown paragraph or list item: one line, with `<`, `>` and
/// `&` as entities so text from OpenStack cannot inject HTML.
fn inline(text: &str) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    flat.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Writes a fenced code block whose fence is longer than any backtick run in the
/// text.
fn code_block(out: &mut String, text: &str) {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(out, "{fence}text\n{text}\n{fence}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mermaid_text_drops_syntax() {
        assert_eq!(
            mermaid_text("Error: x; y #1 %%{init}%% <b>\"q\"</b>\nnext"),
            "Error x y 1 init b q /b next"
        );
        assert_eq!(mermaid_text(":;#"), "-");
        assert_eq!(
            mermaid_text(&"a".repeat(200)).chars().count(),
            MERMAID_LABEL_CHARS
        );
    }

    #[test]
    fn times_parsed_to_second() {
        let parsed = parse_time("2026-11-30T08:57:04.118224").expect("parses");
        assert_eq!(format_time(parsed), "2026-11-30 08:57:04");
        assert!(parse_time("2026-11-30T09:02:11Z").is_some());
        assert!(parse_time("yesterday").is_none());
    }

    #[test]
    fn code_fence_outgrows_backticks() {
        let mut out = String::new();
        code_block(&mut out, "a ```` b");
        assert!(out.starts_with("`````text\n"), "{out}");
    }
}
