//! Changes to a node's nova-compute service record in Nova, made for the
//! policy: disabling the service when the node needs a human (only with
//! `disable_service_on_escalation`), and enabling it again when an operator
//! clears the node, only if novamedic disabled it and its reason is still
//! the one novamedic wrote. Every outcome, including "left as it was", is an event.

use super::policy::{persistent_json, POLICY_ACTOR};
use super::Controller;
use crate::clock::now_unix_ms;
use crate::fleet::kind;
use crate::nova_view::NovaWatch;
use crate::openstack::nova;
use crate::openstack::types::ComputeService;
use crate::policy::engine::DisabledService;
use crate::store::NewEvent;

/// Prefix of the `disabled_reason` novamedic writes.
pub const DISABLED_REASON_PREFIX: &str = "novamedic: needs a human: ";

/// Nova's column for `disabled_reason` stores at most 255 characters.
const MAX_DISABLED_REASON_CHARS: usize = 255;

/// The first compute microversion with `PUT /os-services/{service_id}`.
const SERVICE_UPDATE_MICROVERSION: (u32, u32) = (2, 53);

/// The reason a service change was not made.
enum Skipped {
    /// Nothing to do, recorded as `nova_service_unchanged`.
    Unchanged(String),
    /// The call failed, recorded as `nova_service_change_failed`.
    Failed(String),
}

impl Controller {
    /// Disables the node's nova-compute service in Nova after the policy
    /// escalated it, and records the outcome. A service that is already
    /// disabled is left alone. In dry-run mode only the intent is recorded.
    pub async fn disable_service_on_escalation(&self, node: &str, cause: &str, dry_run: bool) {
        let Some(nova) = self.nova.clone() else {
            return;
        };
        let reason = disabled_reason(cause);
        let outcome = if dry_run {
            Err(Skipped::Unchanged(format!(
                "dry run: would disable nova-compute of node {node} in Nova with reason \
                 {reason:?}; nothing was sent"
            )))
        } else {
            disable(&nova, node, &reason).await
        };
        let now = now_unix_ms();
        let (event_kind, detail, disabled) = match outcome {
            Ok(service) => (
                kind::NOVA_SERVICE_DISABLED,
                format!(
                    "disabled nova-compute on {} in Nova so the scheduler places no instances \
                     there; reason {reason:?}; `novamedic clear {node}` enables it again",
                    service.host
                ),
                Some(DisabledService {
                    id: service.id,
                    host: service.host,
                    reason,
                    at_unix_ms: now,
                }),
            ),
            Err(Skipped::Unchanged(detail)) => (kind::NOVA_SERVICE_UNCHANGED, detail, None),
            Err(Skipped::Failed(detail)) => (kind::NOVA_SERVICE_CHANGE_FAILED, detail, None),
        };
        tracing::info!(node, kind = event_kind, detail = %detail, "nova service on escalation");
        self.record_service_change(node, POLICY_ACTOR, event_kind, detail, disabled)
            .await;
    }

    /// Enables the service novamedic disabled, after `requested_by` cleared
    /// the node, unless someone changed the service since.
    pub async fn enable_service_after_clear(
        &self,
        node: &str,
        requested_by: &str,
        disabled: DisabledService,
    ) {
        let Some(nova) = self.nova.clone() else {
            return;
        };
        let (event_kind, detail) = match enable(&nova, &disabled).await {
            Ok(()) => (
                kind::NOVA_SERVICE_ENABLED,
                format!(
                    "enabled nova-compute on {} in Nova again: novamedic had disabled it and the \
                     node was cleared",
                    disabled.host
                ),
            ),
            Err(Skipped::Unchanged(detail)) => (kind::NOVA_SERVICE_UNCHANGED, detail),
            Err(Skipped::Failed(detail)) => (kind::NOVA_SERVICE_CHANGE_FAILED, detail),
        };
        tracing::info!(node, kind = event_kind, detail = %detail, "nova service after clear");
        self.record_service_change(node, requested_by, event_kind, detail, None)
            .await;
    }

    /// Records the event with the policy state, remembering a service that
    /// novamedic disabled.
    async fn record_service_change(
        &self,
        node: &str,
        actor: &str,
        event_kind: &str,
        detail: String,
        disabled: Option<DisabledService>,
    ) {
        let mut engine = self.policy.engine.lock().await;
        if let Some(disabled) = disabled {
            engine.mark_service_disabled(node, disabled);
        }
        let now = now_unix_ms();
        let event = NewEvent {
            time_unix_ms: now,
            node: node.to_string(),
            kind: event_kind.to_string(),
            detail,
            actor: actor.to_string(),
            command_id: String::new(),
        };
        let state = persistent_json(engine.state());
        if let Err(err) = self.store.save_policy_state(&state, now, &[event]).await {
            tracing::error!(node, error = %crate::error_chain(&err), "cannot record a Nova service change");
        }
    }
}

/// Builds the reason novamedic writes, cut to Nova's column size.
fn disabled_reason(cause: &str) -> String {
    format!("{DISABLED_REASON_PREFIX}{cause}")
        .chars()
        .take(MAX_DISABLED_REASON_CHARS)
        .collect()
}

/// The service's id and host, for the PUT.
struct Target {
    id: String,
    host: String,
}

async fn disable(nova: &NovaWatch, node: &str, reason: &str) -> Result<Target, Skipped> {
    let Some(known) = nova.service_for(node) else {
        return Err(Skipped::Unchanged(format!(
            "not disabling nova-compute in Nova: no service of os-services maps to node {node}; \
             set [openstack.host_names] if its Nova host name differs"
        )));
    };
    let current = current_service(nova, &known.host).await?;
    if current.status.as_deref() != Some("enabled") {
        return Err(Skipped::Unchanged(format!(
            "not disabling nova-compute on {} in Nova: it is already {} ({}); left as it is",
            known.host,
            current.status.as_deref().unwrap_or("in an unknown status"),
            current
                .disabled_reason
                .as_deref()
                .filter(|reason| !reason.is_empty())
                .unwrap_or("no reason given")
        )));
    }
    let id = updatable_id(nova, &current, &known.host)?;
    nova::set_service_status(nova.client(), &id, false, reason)
        .await
        .map_err(|err| {
            Skipped::Failed(format!(
                "cannot disable nova-compute on {} in Nova: {}",
                known.host,
                crate::error_chain(&err)
            ))
        })?;
    Ok(Target {
        id,
        host: known.host,
    })
}

async fn enable(nova: &NovaWatch, disabled: &DisabledService) -> Result<(), Skipped> {
    let current = current_service(nova, &disabled.host).await?;
    if current.status.as_deref() != Some("disabled") {
        return Err(Skipped::Unchanged(format!(
            "nova-compute on {} is already {} in Nova; nothing to enable",
            disabled.host,
            current.status.as_deref().unwrap_or("in an unknown status")
        )));
    }
    let reason = current.disabled_reason.clone().unwrap_or_default();
    if reason != disabled.reason {
        return Err(Skipped::Unchanged(format!(
            "leaving nova-compute on {} disabled in Nova: its reason is now {reason:?}, not the \
             one novamedic wrote, so someone else disabled it since",
            disabled.host
        )));
    }
    let id = updatable_id(nova, &current, &disabled.host)?;
    nova::set_service_status(nova.client(), &id, true, "")
        .await
        .map(|_| ())
        .map_err(|err| {
            Skipped::Failed(format!(
                "cannot enable nova-compute on {} in Nova: {}",
                disabled.host,
                crate::error_chain(&err)
            ))
        })
}

/// Reads the host's service now, rather than trusting the last poll.
async fn current_service(nova: &NovaWatch, host: &str) -> Result<ComputeService, Skipped> {
    let services = nova::compute_services(nova.client(), host)
        .await
        .map_err(|err| {
            Skipped::Failed(format!(
                "cannot read nova-compute on {host} from Nova: {}",
                crate::error_chain(&err)
            ))
        })?;
    services
        .into_iter()
        .find(|service| service.host.as_deref() == Some(host))
        .ok_or_else(|| {
            Skipped::Unchanged(format!(
                "Nova no longer lists a nova-compute service on {host}; nothing to change"
            ))
        })
}

/// Returns the service's UUID when the cloud supports the update call.
fn updatable_id(nova: &NovaWatch, service: &ComputeService, host: &str) -> Result<String, Skipped> {
    let version = nova.client().compute_microversion().unwrap_or("");
    let supported = version
        .split_once('.')
        .and_then(|(major, minor)| Some((major.parse().ok()?, minor.parse().ok()?)))
        .is_some_and(|version: (u32, u32)| version >= SERVICE_UPDATE_MICROVERSION);
    match service.uuid() {
        Some(id) if supported => Ok(id.to_string()),
        _ => Err(Skipped::Failed(format!(
            "cannot change nova-compute on {host} in Nova: updating a service needs compute \
             microversion 2.53 or later and the cloud offers {}; change it by hand with \
             `openstack compute service set`",
            if version.is_empty() { "none" } else { version }
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_cut_to_nova_column() {
        let reason = disabled_reason(&"x".repeat(400));
        assert!(reason.starts_with(DISABLED_REASON_PREFIX));
        assert_eq!(reason.chars().count(), MAX_DISABLED_REASON_CHARS);
    }
}
