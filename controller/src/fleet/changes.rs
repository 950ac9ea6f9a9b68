//! Changes a new report, or its absence, makes to a node: the events to
//! record and the stale rule.

use novamedic_proto::v1;

use super::kind;
use crate::store::NewEvent;

/// A node is stale after this many report intervals without a report.
pub const STALE_INTERVALS: i64 = 3;

/// Interval assumed for an agent that announced 0 in its Hello.
pub const DEFAULT_REPORT_INTERVAL_MS: u64 = 10_000;

/// Returns the lowercase name of a health status for event details; an unset
/// status (a node without any report yet) is "none".
fn status_name(status: i32) -> &'static str {
    if status == v1::HealthStatus::Unspecified as i32 {
        "none"
    } else {
        novamedic_proto::view::health_name(status)
    }
}

/// Returns the `health_changed` event from `old` to `new`, `None` when the
/// status stays the same.
pub fn health_change(
    node: &str,
    old: &v1::Health,
    new: &v1::Health,
    now_unix_ms: i64,
) -> Option<NewEvent> {
    if old.status == new.status {
        return None;
    }
    let mut detail = format!("{} -> {}", status_name(old.status), status_name(new.status));
    if !new.reasons.is_empty() {
        detail.push_str(": ");
        detail.push_str(&new.reasons.join("; "));
    }
    Some(event(node, kind::HEALTH_CHANGED, detail, now_unix_ms))
}

/// Returns the `unit_state_changed` events a report carries relative to the
/// previous report. The report's `transitions` (changes the agent saw,
/// possibly while disconnected) are used when present; otherwise the two
/// snapshots are compared.
pub fn unit_changes(
    node: &str,
    previous: Option<&v1::NodeReport>,
    report: &v1::NodeReport,
    now_unix_ms: i64,
) -> Vec<NewEvent> {
    let previous_state = previous
        .and_then(|r| r.nova_compute.as_ref())
        .map(UnitState::from_snapshot);
    let nova = report.nova_compute.clone().unwrap_or_default();

    if !report.transitions.is_empty() {
        let mut before = previous_state;
        let mut events = Vec::new();
        for transition in &report.transitions {
            let after = UnitState::from_transition(transition);
            let detail = format!(
                "{}: {} (result {}, main PID {}, seen by the agent at {})",
                unit_label(&nova.unit),
                describe_change(before.as_ref(), &after),
                or_dash(&transition.result),
                transition.main_pid,
                novamedic_proto::view::rfc3339_from_unix_ms(transition.seen_at_unix_ms)
                    .unwrap_or_else(|| "an unknown time".to_string()),
            );
            events.push(event(node, kind::UNIT_STATE_CHANGED, detail, now_unix_ms));
            before = Some(after);
        }
        return events;
    }

    let Some(before) = previous_state else {
        return Vec::new();
    };
    let after = UnitState::from_snapshot(&nova);
    if before == after {
        return Vec::new();
    }
    let detail = format!(
        "{}: {} (result {}, main PID {})",
        unit_label(&nova.unit),
        describe_change(Some(&before), &after),
        or_dash(&nova.result),
        nova.main_pid,
    );
    vec![event(node, kind::UNIT_STATE_CHANGED, detail, now_unix_ms)]
}

/// Returns the STALE health of a node whose newest report (or, before any,
/// its first contact) is `last_report_unix_ms`, or `None` while it is fresh.
/// `grace_start_unix_ms` delays the verdict, for example after the controller
/// itself restarted and agents have not reconnected yet.
pub fn stale_health(
    last_report_unix_ms: i64,
    grace_start_unix_ms: i64,
    report_interval_ms: u64,
    now_unix_ms: i64,
) -> Option<v1::Health> {
    let interval_ms = effective_interval_ms(report_interval_ms);
    let limit_ms = interval_ms.saturating_mul(STALE_INTERVALS);
    let clock_start = last_report_unix_ms.max(grace_start_unix_ms);
    if now_unix_ms.saturating_sub(clock_start) < limit_ms {
        return None;
    }
    let silent_ms = now_unix_ms.saturating_sub(last_report_unix_ms);
    Some(v1::Health {
        status: v1::HealthStatus::Stale as i32,
        reasons: vec![format!(
            "no report for {} s ({STALE_INTERVALS} intervals of {} s)",
            format_seconds(silent_ms),
            format_seconds(interval_ms),
        )],
    })
}

fn effective_interval_ms(report_interval_ms: u64) -> i64 {
    let interval_ms = match report_interval_ms {
        0 => DEFAULT_REPORT_INTERVAL_MS,
        ms => ms,
    };
    i64::try_from(interval_ms).unwrap_or(i64::MAX)
}

/// Formats milliseconds as whole seconds, or with one decimal below 10 s when
/// the value is not whole.
fn format_seconds(ms: i64) -> String {
    if ms % 1000 == 0 || ms >= 10_000 {
        format!("{}", ms / 1000)
    } else {
        format!("{:.1}", ms as f64 / 1000.0)
    }
}

pub(super) fn event(node: &str, kind: &str, detail: String, now_unix_ms: i64) -> NewEvent {
    NewEvent {
        time_unix_ms: now_unix_ms,
        node: node.to_string(),
        kind: kind.to_string(),
        detail,
        actor: String::new(),
        command_id: String::new(),
    }
}

/// The parts of a unit's state whose change is worth an event. A new
/// invocation id with the same states means the unit restarted between two
/// reports.
#[derive(Debug, PartialEq, Eq)]
struct UnitState {
    active_state: String,
    sub_state: String,
    invocation_id: String,
}

impl UnitState {
    fn from_snapshot(nova: &v1::NovaCompute) -> Self {
        UnitState {
            active_state: nova.active_state.clone(),
            sub_state: nova.sub_state.clone(),
            invocation_id: nova.invocation_id.clone(),
        }
    }

    fn from_transition(transition: &v1::UnitTransition) -> Self {
        UnitState {
            active_state: transition.active_state.clone(),
            sub_state: transition.sub_state.clone(),
            invocation_id: transition.invocation_id.clone(),
        }
    }

    fn label(&self) -> String {
        format!(
            "{}/{}",
            or_dash(&self.active_state),
            or_dash(&self.sub_state)
        )
    }
}

fn describe_change(before: Option<&UnitState>, after: &UnitState) -> String {
    let before_label = before.map_or_else(|| "unknown".to_string(), UnitState::label);
    let restarted = before.is_some_and(|b| {
        b.active_state == after.active_state
            && b.sub_state == after.sub_state
            && b.invocation_id != after.invocation_id
    });
    if restarted {
        format!(
            "restarted, {} (new invocation {})",
            after.label(),
            or_dash(&after.invocation_id)
        )
    } else {
        format!("{before_label} -> {}", after.label())
    }
}

fn unit_label(unit: &str) -> &str {
    if unit.is_empty() {
        "nova-compute"
    } else {
        unit
    }
}

fn or_dash(value: &str) -> &str {
    if value.is_empty() {
        "-"
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health(status: v1::HealthStatus, reasons: &[&str]) -> v1::Health {
        v1::Health {
            status: status as i32,
            reasons: reasons.iter().map(|r| r.to_string()).collect(),
        }
    }

    fn report_with_unit(active: &str, sub: &str, invocation: &str) -> v1::NodeReport {
        v1::NodeReport {
            nova_compute: Some(v1::NovaCompute {
                unit: "nova-compute.service".into(),
                active_state: active.into(),
                sub_state: sub.into(),
                invocation_id: invocation.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn stale_message_counts_intervals() {
        let health = stale_health(1_000, 0, 10_000, 35_000).expect("stale after 34 s");
        assert_eq!(health.status, v1::HealthStatus::Stale as i32);
        assert_eq!(
            health.reasons,
            vec!["no report for 34 s (3 intervals of 10 s)"]
        );
    }

    #[test]
    fn stale_boundary_is_three_intervals() {
        assert!(stale_health(0, 0, 1_000, 2_999).is_none());
        assert!(stale_health(0, 0, 1_000, 3_000).is_some());
    }

    #[test]
    fn stale_grace_delays_verdict() {
        // Last report an hour ago, but the controller started 5 s ago.
        let now = 3_600_000;
        assert!(stale_health(0, now - 5_000, 10_000, now).is_none());
        let later = stale_health(0, now - 5_000, 10_000, now + 25_000).expect("stale");
        assert_eq!(
            later.reasons,
            vec!["no report for 3625 s (3 intervals of 10 s)"]
        );
    }

    #[test]
    fn stale_zero_interval_uses_default() {
        assert!(stale_health(0, 0, 0, 29_999).is_none());
        assert!(stale_health(0, 0, 0, 30_000).is_some());
    }

    #[test]
    fn stale_fractional_interval() {
        let health = stale_health(0, 0, 500, 1_500).expect("stale");
        assert_eq!(
            health.reasons,
            vec!["no report for 1.5 s (3 intervals of 0.5 s)"]
        );
    }

    #[test]
    fn health_change_detail() {
        let old = health(v1::HealthStatus::Healthy, &[]);
        let new = health(v1::HealthStatus::Failed, &["unit failed", "no process"]);
        let event = health_change("c1", &old, &new, 7).expect("event");
        assert_eq!(event.kind, kind::HEALTH_CHANGED);
        assert_eq!(event.detail, "healthy -> failed: unit failed; no process");
        assert_eq!(event.time_unix_ms, 7);
        assert!(health_change("c1", &new, &new, 7).is_none());
    }

    #[test]
    fn first_health_is_from_none() {
        let event = health_change(
            "c1",
            &v1::Health::default(),
            &health(v1::HealthStatus::Healthy, &[]),
            1,
        )
        .expect("event");
        assert_eq!(event.detail, "none -> healthy");
    }

    #[test]
    fn unit_change_between_snapshots() {
        let before = report_with_unit("active", "running", "aa");
        let after = report_with_unit("failed", "failed", "aa");
        let events = unit_changes("c1", Some(&before), &after, 5);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].kind, kind::UNIT_STATE_CHANGED);
        assert!(
            events[0]
                .detail
                .starts_with("nova-compute.service: active/running -> failed/failed"),
            "{}",
            events[0].detail
        );
    }

    #[test]
    fn unit_restart_between_snapshots() {
        let before = report_with_unit("active", "running", "aa");
        let after = report_with_unit("active", "running", "bb");
        let events = unit_changes("c1", Some(&before), &after, 5);
        assert_eq!(events.len(), 1);
        assert!(events[0]
            .detail
            .contains("restarted, active/running (new invocation bb)"));
    }

    #[test]
    fn unit_unchanged_or_first_report() {
        let report = report_with_unit("active", "running", "aa");
        assert!(unit_changes("c1", Some(&report), &report, 5).is_empty());
        assert!(unit_changes("c1", None, &report, 5).is_empty());
    }

    #[test]
    fn transitions_become_events_in_order() {
        let before = report_with_unit("active", "running", "aa");
        let mut after = report_with_unit("active", "running", "bb");
        after.transitions = vec![
            v1::UnitTransition {
                seen_at_unix_ms: 1_700_000_000_000,
                active_state: "failed".into(),
                sub_state: "failed".into(),
                result: "signal".into(),
                ..Default::default()
            },
            v1::UnitTransition {
                seen_at_unix_ms: 1_700_000_001_000,
                active_state: "active".into(),
                sub_state: "running".into(),
                invocation_id: "bb".into(),
                main_pid: 42,
                ..Default::default()
            },
        ];
        let events = unit_changes("c1", Some(&before), &after, 5);
        assert_eq!(events.len(), 2);
        assert!(
            events[0].detail.contains("active/running -> failed/failed"),
            "{}",
            events[0].detail
        );
        assert!(events[0].detail.contains("result signal"));
        assert!(events[0].detail.contains("2023-11-14T22:13:20Z"));
        assert!(
            events[1].detail.contains("failed/failed -> active/running"),
            "{}",
            events[1].detail
        );
        assert!(events[1].detail.contains("main PID 42"));
    }
}
