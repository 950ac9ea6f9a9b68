//! The polling task: each interval, one os-services listing and one listing
//! of busy servers for the whole fleet.
//!
//! A failed poll keeps the previous data with its age and records the error.
//! The error is logged when it first appears or changes, and once when the
//! poll recovers.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::format_description::FormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

use super::{NovaService, NovaWatch};
use crate::clock::now_unix_ms;
use crate::openstack::nova;
use crate::openstack::types::{ComputeService, Server};

/// Task states of an operation that runs on the instance's compute host, so
/// that restarting nova-compute would abort it. `scheduling` is left out:
/// the instance has no host yet.
/// NOTE: a live migration's task state sits on the source host's instance
/// only; the destination host is not held (that needs os-migrations).
pub const BUSY_TASK_STATES: &[&str] = &[
    "block_device_mapping",
    "networking",
    "spawning",
    "image_snapshot",
    "image_snapshot_pending",
    "image_pending_upload",
    "image_uploading",
    "image_backup",
    "updating_password",
    "resize_prep",
    "resize_migrating",
    "resize_migrated",
    "resize_finish",
    "resize_reverting",
    "resize_confirming",
    "rebooting",
    "reboot_pending",
    "reboot_started",
    "rebooting_hard",
    "reboot_pending_hard",
    "reboot_started_hard",
    "pausing",
    "unpausing",
    "suspending",
    "resuming",
    "powering-off",
    "powering-on",
    "rescuing",
    "unrescuing",
    "rebuilding",
    "rebuild_block_device_mapping",
    "rebuild_spawning",
    "migrating",
    "deleting",
    "soft-deleting",
    "restoring",
    "shelving",
    "shelving_image_pending_upload",
    "shelving_image_uploading",
    "shelving_offloading",
    "unshelving",
];

/// `updated_at` as Nova returns it: UTC without a zone, with or without
/// microseconds.
const NOVA_TIME: &[FormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second][optional [.[subsecond]]]");

/// Polls every interval until the task is aborted. The first poll runs at
/// once.
pub async fn poll_forever(watch: Arc<NovaWatch>) {
    let mut ticks = tokio::time::interval(watch.settings.poll_interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(
        cloud = watch.client.config().name,
        interval_seconds = watch.settings.poll_interval.as_secs(),
        "polling Nova's view of the fleet"
    );
    loop {
        ticks.tick().await;
        watch.poll_once().await;
    }
}

impl NovaWatch {
    /// Polls the services and the busy servers once and updates the view.
    pub async fn poll_once(&self) {
        let services = nova::all_compute_services(&self.client).await;
        let services_at = now_unix_ms();
        let servers = nova::servers_in_task_states(&self.client, BUSY_TASK_STATES).await;
        let servers_at = now_unix_ms();

        let mut view = self.view.write().expect("nova view lock");
        match services {
            Ok((services, nova_now)) => {
                let nova_now = nova_now.unwrap_or_else(|| utc_from_unix_ms(services_at));
                view.services = map_services(&services, nova_now);
                view.services_polled_at_unix_ms = services_at;
                note_recovery(&mut view.services_error, "os-services");
            }
            Err(err) => note_error(
                &mut view.services_error,
                "os-services",
                crate::error_chain(&err),
            ),
        }
        match servers {
            Ok(servers) => {
                view.busy = group_busy(&servers);
                view.servers_polled_at_unix_ms = servers_at;
                note_recovery(&mut view.servers_error, "servers/detail");
            }
            Err(err) => note_error(
                &mut view.servers_error,
                "servers/detail",
                crate::error_chain(&err),
            ),
        }
    }
}

/// Records a poll error, logging it when it differs from the previous one.
fn note_error(slot: &mut Option<String>, call: &str, message: String) {
    if slot.as_deref() != Some(message.as_str()) {
        tracing::warn!(call, error = %message, "polling Nova failed; keeping the previous data");
    }
    *slot = Some(message);
}

fn note_recovery(slot: &mut Option<String>, call: &str) {
    if slot.take().is_some() {
        tracing::info!(call, "polling Nova works again");
    }
}

/// Maps os-services records by host. Records without a host (a down cell's
/// partial record has one, but policy may hide fields) are skipped.
pub fn map_services(
    services: &[ComputeService],
    nova_now: OffsetDateTime,
) -> BTreeMap<String, NovaService> {
    services
        .iter()
        .filter_map(|service| {
            let host = service.host.clone().filter(|host| !host.is_empty())?;
            let updated_at = service.updated_at.clone().unwrap_or_default();
            let heartbeat_age_seconds = parse_nova_time(&updated_at)
                .map(|at| u64::try_from((nova_now - at).whole_seconds().max(0)).unwrap_or(0));
            let id = match &service.id {
                serde_json::Value::String(id) => id.clone(),
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            Some((
                host.clone(),
                NovaService {
                    id,
                    host,
                    up: service.state.as_deref() == Some("up"),
                    enabled: service.status.as_deref() == Some("enabled"),
                    updated_at,
                    heartbeat_age_seconds,
                    disabled_reason: service.disabled_reason.clone().unwrap_or_default(),
                    forced_down: service.forced_down.unwrap_or(false),
                },
            ))
        })
        .collect()
}

/// Groups busy servers by their `OS-EXT-SRV-ATTR:host`; servers without a
/// host (hidden by policy, or not placed yet) are skipped.
pub fn group_busy(servers: &[Server]) -> BTreeMap<String, Vec<String>> {
    let mut busy: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for server in servers {
        let (Some(host), Some(task_state)) = (&server.host, &server.task_state) else {
            continue;
        };
        if host.is_empty() || !BUSY_TASK_STATES.contains(&task_state.as_str()) {
            continue;
        }
        let name = server
            .name
            .as_deref()
            .map(|name| format!(" ({name})"))
            .unwrap_or_default();
        busy.entry(host.clone())
            .or_default()
            .push(format!("{}{name} {task_state}", server.id));
    }
    busy
}

/// Parses Nova's zone-less UTC timestamp.
pub fn parse_nova_time(text: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(text, NOVA_TIME)
        .ok()
        .map(PrimitiveDateTime::assume_utc)
}

fn utc_from_unix_ms(unix_ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(unix_ms) * 1_000_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nova_time_without_zone_is_utc() {
        let at = parse_nova_time("2026-12-01T09:41:57.000000").expect("microseconds");
        assert_eq!(at.unix_timestamp(), 1_796_118_117);
        let at = parse_nova_time("2026-12-01T09:41:57").expect("no fraction");
        assert_eq!(at.unix_timestamp(), 1_796_118_117);
        assert_eq!(parse_nova_time(""), None);
        assert_eq!(parse_nova_time("yesterday"), None);
    }

    #[test]
    fn services_mapped_with_age_by_nova_clock() {
        let services: Vec<ComputeService> = serde_json::from_value(json!([
            {"id": "c350f294-30c9-4f70-858c-e1f3c2f80a0c", "host": "cn-1.example.net",
             "state": "up", "status": "enabled", "updated_at": "2026-12-01T09:41:57.000000",
             "disabled_reason": null, "forced_down": false},
            {"id": 7, "host": "cn-2", "state": "down", "status": "disabled",
             "updated_at": null, "disabled_reason": "AUTO: Failed to connect to libvirt",
             "forced_down": true},
            {"binary": "nova-compute", "status": "UNKNOWN"}
        ]))
        .unwrap();
        let nova_now = parse_nova_time("2026-12-01T09:42:07").unwrap();
        let mapped = map_services(&services, nova_now);
        assert_eq!(mapped.len(), 2, "the record without a host is skipped");
        let first = &mapped["cn-1.example.net"];
        assert!(first.up);
        assert!(first.enabled);
        assert_eq!(first.heartbeat_age_seconds, Some(10));
        assert_eq!(first.id, "c350f294-30c9-4f70-858c-e1f3c2f80a0c");
        let second = &mapped["cn-2"];
        assert!(!second.up);
        assert!(!second.enabled);
        assert!(second.forced_down);
        assert_eq!(second.heartbeat_age_seconds, None);
        assert_eq!(second.id, "7");
        assert_eq!(second.disabled_reason, "AUTO: Failed to connect to libvirt");
    }

    #[test]
    fn busy_servers_grouped_by_host() {
        let servers: Vec<Server> = serde_json::from_value(json!([
            {"id": "a1", "name": "web-1", "OS-EXT-SRV-ATTR:host": "cn-1",
             "OS-EXT-STS:task_state": "spawning"},
            {"id": "a2", "OS-EXT-SRV-ATTR:host": "cn-1",
             "OS-EXT-STS:task_state": "resize_migrating"},
            {"id": "a3", "name": "db", "OS-EXT-SRV-ATTR:host": "cn-2",
             "OS-EXT-STS:task_state": null},
            {"id": "a4", "name": "new", "OS-EXT-SRV-ATTR:host": null,
             "OS-EXT-STS:task_state": "scheduling"}
        ]))
        .unwrap();
        let busy = group_busy(&servers);
        assert_eq!(
            busy.get("cn-1"),
            Some(&vec![
                "a1 (web-1) spawning".to_string(),
                "a2 resize_migrating".to_string()
            ])
        );
        assert_eq!(busy.len(), 1);
    }
}
