//! The gauges of `/metrics`, read from the fleet, the policy and the
//! alerter at scrape time, after the counters of [`Metrics`].

use novamedic_proto::v1;

use super::Controller;
use crate::metrics::{Exposition, Metrics};
use crate::policy::engine::STORM_GUARD;

/// Health names used as the `health` label, in the order shown.
const HEALTH_NAMES: [(v1::HealthStatus, &str); 5] = [
    (v1::HealthStatus::Healthy, "healthy"),
    (v1::HealthStatus::Degraded, "degraded"),
    (v1::HealthStatus::Failed, "failed"),
    (v1::HealthStatus::Stale, "stale"),
    (v1::HealthStatus::Unknown, "unknown"),
];

impl Controller {
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Renders every metric in the text exposition format.
    pub async fn render_metrics(&self) -> String {
        let mut out = Exposition::default();
        self.metrics.render(&mut out);

        let statuses = self.fleet.statuses();
        let mut by_health = [0_u64; HEALTH_NAMES.len()];
        for status in &statuses {
            let health = status.health.as_ref().map_or(0, |h| h.status);
            // A node without a report yet counts as unknown.
            let index = HEALTH_NAMES
                .iter()
                .position(|(value, _)| *value as i32 == health)
                .unwrap_or(HEALTH_NAMES.len() - 1);
            by_health[index] += 1;
        }
        out.gauge(
            "novamedic_nodes",
            "Known nodes by health (unknown includes nodes without a report yet).",
            &HEALTH_NAMES
                .iter()
                .zip(by_health)
                .map(|((_, name), count)| (vec![("health", name.to_string())], count))
                .collect::<Vec<_>>(),
        );
        let connected = statuses.iter().filter(|s| s.connected).count() as u64;
        out.gauge(
            "novamedic_agents_connected",
            "Agents with an open stream to this controller.",
            &[(vec![], connected)],
        );

        let (storm_paused, paused, needs_human) = {
            let engine = self.policy.engine.lock().await;
            let state = engine.state();
            (
                state.pause.as_ref().is_some_and(|p| p.by == STORM_GUARD),
                state.pause.is_some(),
                state
                    .nodes
                    .values()
                    .filter(|n| n.needs_human.is_some())
                    .count() as u64,
            )
        };
        out.gauge(
            "novamedic_storm_guard_paused",
            "1 while the storm guard has paused automated restarts, else 0.",
            &[(vec![], u64::from(storm_paused))],
        );
        out.gauge(
            "novamedic_automation_paused",
            "1 while automated restarts are paused, by an operator or the storm guard, else 0.",
            &[(vec![], u64::from(paused))],
        );
        out.gauge(
            "novamedic_nodes_needing_human",
            "Nodes the policy handed to a human and no operator has cleared yet.",
            &[(vec![], needs_human)],
        );
        out.gauge(
            "novamedic_alerts_active",
            "Alerts active now, by alertname.",
            &self
                .alerter
                .active_counts()
                .into_iter()
                .map(|(name, count)| (vec![("alertname", name.to_string())], count))
                .collect::<Vec<_>>(),
        );
        out.finish()
    }
}
