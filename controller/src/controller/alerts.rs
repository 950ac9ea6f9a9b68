//! Which alerts are active, derived from the policy's state and from agent
//! streams, handed to the [`Alerter`](crate::alerting::Alerter) for
//! delivery.

use crate::alerting::{Alert, Severity, AGENTS_DISCONNECTED, NODE_NEEDS_HUMAN, RESTART_STORM};
use crate::clock::now_unix_ms;
use crate::policy::engine::STORM_GUARD;
use crate::policy::PolicyState;

use super::Controller;

impl Controller {
    /// Makes the alerts match the policy's state: one per node that needs
    /// a human, and one for the fleet while the storm guard's pause holds.
    /// A pause an operator set is no alert, as the operator knows of it.
    ///
    /// NOTE: in dry-run mode the storm guard records its decision but
    /// pauses nothing, so it raises no alert either.
    pub(super) fn sync_policy_alerts(&self, state: &PolicyState) {
        let mut alerts: Vec<Alert> = state
            .nodes
            .iter()
            .filter_map(|(node, policy)| {
                let escalation = policy.needs_human.as_ref()?;
                Some(Alert {
                    name: NODE_NEEDS_HUMAN,
                    node: Some(node.clone()),
                    severity: Severity::Critical,
                    summary: format!(
                        "novamedic stopped self-healing nova-compute on {node}: it needs a human"
                    ),
                    description: format!(
                        "{}. Automation leaves the node alone until an operator runs \
                         `novamedic clear {node}`; `novamedic events --node {node}` shows the \
                         evidence.",
                        escalation.reason
                    ),
                    starts_at_unix_ms: escalation.since_unix_ms,
                })
            })
            .collect();
        if let Some(pause) = state.pause.as_ref().filter(|p| p.by == STORM_GUARD) {
            alerts.push(Alert {
                name: RESTART_STORM,
                node: None,
                severity: Severity::Critical,
                summary: "novamedic's storm guard paused all automated restarts".to_string(),
                description: format!(
                    "{}. No node is restarted automatically until the storm has been over for \
                     the policy's storm_cooldown_seconds or an operator runs `novamedic resume`.",
                    pause.reason
                ),
                starts_at_unix_ms: pause.since_unix_ms,
            });
        }
        self.alerter
            .reconcile(&[NODE_NEEDS_HUMAN, RESTART_STORM], alerts);
    }

    /// Counts a closed agent stream towards a mass disconnect.
    pub(super) fn note_disconnect(&self, node: &str) {
        let known = self.fleet.len();
        let alert = self
            .lock_disconnects()
            .disconnected(node, now_unix_ms(), known);
        self.alerter
            .reconcile(&[AGENTS_DISCONNECTED], alert.into_iter().collect());
    }

    /// Counts a reopened agent stream towards the end of a mass disconnect.
    pub(super) fn note_connect(&self, node: &str) {
        let alert = self.lock_disconnects().connected(node);
        self.alerter
            .reconcile(&[AGENTS_DISCONNECTED], alert.into_iter().collect());
    }

    fn lock_disconnects(
        &self,
    ) -> std::sync::MutexGuard<'_, crate::alerting::disconnect::MassDisconnect> {
        // Each call leaves the detector consistent, so a poisoned lock is
        // safe to take over.
        self.disconnects.lock().unwrap_or_else(|e| e.into_inner())
    }
}
