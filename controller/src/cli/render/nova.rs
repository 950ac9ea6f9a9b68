//! Text of Nova's view in `nodes`, `node show` and `policy show`.

use novamedic_proto::view::{NovaSourceView, NovaView};

use super::{field, seen_at};

/// Formats the compact `NOVA` cell of `novamedic nodes`: Nova's heartbeat
/// state and scheduling status, such as `up/enabled`.
pub fn cell(nova: Option<&NovaView>, now_unix_ms: i64) -> String {
    let Some(nova) = nova.filter(|nova| nova.source.configured) else {
        return "-".to_string();
    };
    let Some(service) = &nova.service else {
        return if nova.source.services_polled_at.is_none() {
            "not polled".to_string()
        } else {
            "no service".to_string()
        };
    };
    let mut cell = format!("{}/{}", service.state, service.status);
    if is_stale(
        &nova.source,
        nova.source.services_polled_at.as_deref(),
        now_unix_ms,
    ) {
        cell.push_str(" (stale)");
    }
    cell
}

/// Lines under a node in `novamedic nodes` when Nova's view needs attention.
pub fn notes(nova: Option<&NovaView>) -> Vec<String> {
    let Some(nova) = nova.filter(|nova| nova.source.configured) else {
        return Vec::new();
    };
    let mut notes = Vec::new();
    if let Some(service) = &nova.service {
        if service.status == "disabled" {
            notes.push(format!(
                "nova: disabled: {}",
                service
                    .disabled_reason
                    .as_deref()
                    .unwrap_or("no reason given")
            ));
        }
        if service.forced_down {
            notes.push("nova: forced down by an operator".to_string());
        }
    }
    if !nova.work_in_progress.is_empty() {
        notes.push(format!(
            "nova: {} instance(s) mid-operation",
            nova.work_in_progress.len()
        ));
    }
    notes
}

/// Writes the Nova lines of `novamedic node show`.
pub fn lines(out: &mut String, nova: Option<&NovaView>, now_unix_ms: i64) {
    let Some(nova) = nova else {
        return;
    };
    let source = &nova.source;
    if !source.configured {
        field(
            out,
            "Nova",
            "no cloud configured (add [openstack] to the controller's configuration)",
        );
        return;
    }
    match &nova.service {
        None if source.services_polled_at.is_none() => {
            field(out, "Nova", "not polled successfully yet")
        }
        None => field(
            out,
            "Nova",
            "no nova-compute service in os-services maps to this node (see \
             [openstack.host_names])",
        ),
        Some(service) => {
            let heartbeat = match service.heartbeat_age_seconds {
                Some(age) => format!("heartbeat {age} s old at the poll"),
                None => "no heartbeat recorded".to_string(),
            };
            field(
                out,
                "Nova",
                &format!("{}/{} ({heartbeat})", service.state, service.status),
            );
            field(
                out,
                "",
                "└ up/down is Nova's heartbeat check; enabled/disabled is whether the \
                 scheduler may use the host",
            );
            field(
                out,
                "",
                &format!(
                    "└ service {} on host {}, updated_at {} UTC",
                    service.id,
                    service.host,
                    service.updated_at.as_deref().unwrap_or("-")
                ),
            );
            if service.status == "disabled" {
                field(
                    out,
                    "",
                    &format!(
                        "└ disabled: {}",
                        service
                            .disabled_reason
                            .as_deref()
                            .unwrap_or("no reason given")
                    ),
                );
            }
            if service.forced_down {
                field(out, "", "└ forced down by an operator");
            }
        }
    }
    for work in &nova.work_in_progress {
        field(out, "", &format!("└ mid-operation: {work}"));
    }
    source_lines(out, "Nova polled", source, now_unix_ms);
}

/// Writes the source lines, shared by `node show` and `policy show`.
pub fn source_lines(out: &mut String, label: &str, source: &NovaSourceView, now_unix_ms: i64) {
    if !source.configured {
        field(
            out,
            label,
            "no cloud configured: heartbeat, operator-disable and work-in-progress checks are off",
        );
        return;
    }
    let mut summary = format!(
        "{} from cloud {}, every {} s",
        seen_at(source.services_polled_at.as_deref(), now_unix_ms),
        source.cloud.as_deref().unwrap_or("-"),
        source.poll_interval_seconds
    );
    if is_stale(source, source.services_polled_at.as_deref(), now_unix_ms) {
        summary.push_str(&format!(
            "; older than {} s, so the policy ignores it",
            source.stale_after_seconds
        ));
    }
    field(out, label, &summary);
    if let Some(error) = &source.services_error {
        field(out, "", &format!("└ os-services poll failed: {error}"));
    }
    if let Some(error) = &source.servers_error {
        field(out, "", &format!("└ busy servers poll failed: {error}"));
    }
}

/// Returns whether data polled at `polled_at` (RFC 3339) is past the
/// source's stale age, or was never polled.
fn is_stale(source: &NovaSourceView, polled_at: Option<&str>, now_unix_ms: i64) -> bool {
    let Some(polled_at) = polled_at else {
        return true;
    };
    let Ok(at) =
        time::OffsetDateTime::parse(polled_at, &time::format_description::well_known::Rfc3339)
    else {
        return true;
    };
    let age_ms = now_unix_ms - (at.unix_timestamp_nanos() / 1_000_000) as i64;
    age_ms > i64::try_from(source.stale_after_seconds * 1_000).unwrap_or(i64::MAX)
}
