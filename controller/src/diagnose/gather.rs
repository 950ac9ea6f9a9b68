//! The calls behind a diagnosis. Only the server itself is required; every
//! other part that fails is recorded in [`Diagnosis::missing`].

use std::collections::BTreeMap;

use futures::future::join_all;
use novamedic_proto::view::NodeView;

use super::capacity::{self, HostCapacity};
use super::{
    verdict, DiagnoseError, Diagnosis, FleetHost, FleetSource, HostCheck, HostLogQuery, HostLogs,
    ImageCheck, MissingPart, VolumeCheck, SCHEMA_VERSION,
};
use crate::openstack::types::{Flavor, Image, InstanceAction, Server};
use crate::openstack::{nova, others, ApiError, Client, Service};

/// Actions read in full with their events: the failed ones and the newest,
/// up to this many.
const MAX_ACTIONS_WITH_EVENTS: usize = 10;

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

/// Diagnoses the server with id or name `server_ref`.
pub async fn diagnose(
    client: &Client,
    fleet: &impl FleetSource,
    server_ref: &str,
) -> Result<Diagnosis, DiagnoseError> {
    let server = find_server(client, server_ref).await?;
    Ok(diagnose_found(client, fleet, server).await)
}

/// Finds a server by id, else by exact name; several servers with the
/// name is an error that lists their ids.
pub async fn find_server(client: &Client, server_ref: &str) -> Result<Server, DiagnoseError> {
    if super::looks_like_uuid(server_ref) {
        match nova::server(client, server_ref).await {
            Ok(server) => return Ok(server),
            Err(err) if err.is_not_found() => {}
            Err(err) => return Err(err.into()),
        }
    }
    let mut matches = nova::servers_named(client, server_ref).await?;
    match matches.len() {
        0 => Err(DiagnoseError::NotFound(server_ref.to_string())),
        1 => {
            let only = matches.remove(0);
            // The list may lack fields that the single GET has (down cells).
            Ok(nova::server(client, &only.id).await.unwrap_or(only))
        }
        count => Err(DiagnoseError::Ambiguous {
            name: server_ref.to_string(),
            count,
            ids: matches
                .iter()
                .map(|server| server.id.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// Diagnoses a server already read from Nova.
pub async fn diagnose_found(
    client: &Client,
    fleet: &impl FleetSource,
    server: Server,
) -> Diagnosis {
    let mut missing = Vec::new();
    let (actions, image, ports, volumes) = futures::join!(
        actions_with_events(client, &server.id),
        image_check(client, &server),
        others::ports_of_device(client, &server.id),
        volume_checks(client, &server),
    );

    let actions = actions.unwrap_or_else(|err| {
        missing.push(missing_part("actions", &err));
        Vec::new()
    });
    let image = image.unwrap_or_else(|err| {
        missing.push(missing_part("image", &err));
        None
    });
    let ports = ports.unwrap_or_else(|err| {
        missing.push(missing_part("ports", &err));
        Vec::new()
    });
    let (volumes, volume_missing) = volumes;
    missing.extend(volume_missing);

    // Without a placement endpoint every host would fail the same way, so
    // the endpoint is checked once and the hosts' capacity skipped.
    let placement_ready = match client.endpoint(Service::Placement).await {
        Ok(_) => true,
        Err(err) => {
            missing.push(MissingPart {
                part: "placement".to_string(),
                reason: capacity::placement_reason(&err),
            });
            false
        }
    };
    let (hosts, host_missing) =
        host_checks(client, fleet, &server, &actions, placement_ready).await;
    missing.extend(host_missing);

    let mut diagnosis = Diagnosis {
        schema_version: SCHEMA_VERSION,
        compute_microversion: client.compute_microversion().map(str::to_string),
        server,
        actions,
        image,
        ports,
        volumes,
        hosts,
        missing,
        verdict: verdict::Verdict::default(),
    };
    diagnosis.verdict = verdict::judge(&diagnosis);
    diagnosis
}

fn missing_part(part: &str, err: &ApiError) -> MissingPart {
    MissingPart {
        part: part.to_string(),
        reason: crate::error_chain(err),
    }
}

/// Lists the actions and reads the events of the failed ones and the
/// newest. An action whose events cannot be read keeps an empty list.
async fn actions_with_events(client: &Client, id: &str) -> Result<Vec<InstanceAction>, ApiError> {
    let mut actions = nova::instance_actions(client, id).await?;
    let wanted: Vec<usize> = actions
        .iter()
        .enumerate()
        .filter(|(index, action)| *index == 0 || action.message.as_deref() == Some("Error"))
        .map(|(index, _)| index)
        .take(MAX_ACTIONS_WITH_EVENTS)
        .collect();
    let reads = wanted.iter().map(|&index| {
        let request_id = actions[index].request_id.clone().unwrap_or_default();
        async move {
            if request_id.is_empty() {
                return None;
            }
            match nova::instance_action(client, id, &request_id).await {
                Ok(full) => Some(full.events),
                Err(err) => {
                    tracing::warn!(server = id, request_id, error = %err, "cannot read instance action events");
                    None
                }
            }
        }
    });
    let events = join_all(reads).await;
    for (index, events) in wanted.into_iter().zip(events) {
        if let Some(mut events) = events {
            events.sort_by(|a, b| a.start_time.cmp(&b.start_time));
            actions[index].events = events;
        }
    }
    Ok(actions)
}

async fn image_check(client: &Client, server: &Server) -> Result<Option<ImageCheck>, ApiError> {
    let Some(id) = server.image_id() else {
        return Ok(None);
    };
    match others::image(client, id).await {
        Ok(image) => {
            let problems = image_problems(&image, server.flavor.as_ref());
            Ok(Some(ImageCheck {
                id: id.to_string(),
                found: true,
                image: Some(image),
                problems,
            }))
        }
        Err(err) if err.is_not_found() => Ok(Some(ImageCheck {
            id: id.to_string(),
            found: false,
            image: None,
            problems: vec![format!(
                "image {id} is not in Glance: deleted, or not visible to this project"
            )],
        })),
        Err(err) => Err(err),
    }
}

/// Compares the image's status and minimums with the flavor.
pub fn image_problems(image: &Image, flavor: Option<&Flavor>) -> Vec<String> {
    let mut problems = Vec::new();
    if let Some(status) = image.status.as_deref().filter(|status| *status != "active") {
        problems.push(format!("image status is {status}, not active"));
    }
    let Some(flavor) = flavor else {
        return problems;
    };
    let disk_gib = flavor.disk.unwrap_or(0);
    if disk_gib > 0 {
        if let Some(min_disk) = image.min_disk.filter(|min| *min > disk_gib) {
            problems.push(format!(
                "image min_disk is {min_disk} GiB but the flavor's disk is {disk_gib} GiB"
            ));
        }
        if let Some(virtual_size) = image.virtual_size.filter(|size| *size > disk_gib * GIB) {
            problems.push(format!(
                "image virtual_size is {:.1} GiB but the flavor's disk is {disk_gib} GiB",
                virtual_size as f64 / GIB as f64
            ));
        }
    }
    if let (Some(min_ram), Some(ram)) = (image.min_ram, flavor.ram) {
        if min_ram > ram {
            problems.push(format!(
                "image min_ram is {min_ram} MiB but the flavor has {ram} MiB"
            ));
        }
    }
    problems
}

async fn volume_checks(client: &Client, server: &Server) -> (Vec<VolumeCheck>, Vec<MissingPart>) {
    let reads = server.volumes_attached.iter().map(|attached| async move {
        (
            attached.id.clone(),
            others::volume(client, &attached.id).await,
        )
    });
    let mut checks = Vec::new();
    let mut missing = Vec::new();
    for (id, result) in join_all(reads).await {
        match result {
            Ok(volume) => checks.push(VolumeCheck {
                id,
                found: true,
                volume: Some(volume),
            }),
            Err(err) if err.is_not_found() => checks.push(VolumeCheck {
                id,
                found: false,
                volume: None,
            }),
            Err(err) => missing.push(missing_part(&format!("volume {id}"), &err)),
        }
    }
    (checks, missing)
}

/// Lists the hosts involved, in order: the server's host, then the hosts
/// of compute events, failed ones first.
pub fn involved_hosts(
    server: &Server,
    actions: &[InstanceAction],
) -> Vec<(String, Vec<&'static str>)> {
    let mut hosts: Vec<(String, Vec<&'static str>)> = Vec::new();
    let mut add = |host: &str, role: &'static str| {
        if host.is_empty() {
            return;
        }
        match hosts.iter_mut().find(|(name, _)| name == host) {
            Some((_, roles)) => {
                if !roles.contains(&role) {
                    roles.push(role);
                }
            }
            None => hosts.push((host.to_string(), vec![role])),
        }
    };
    if let Some(host) = server.host.as_deref() {
        add(host, "server_host");
    }
    let compute_events = actions
        .iter()
        .flat_map(|action| action.events.iter())
        .filter(|event| event.on_compute());
    for event in compute_events.clone().filter(|event| event.failed()) {
        if let Some(host) = event.host.as_deref() {
            add(host, "failed_event");
        }
    }
    for event in compute_events.filter(|event| !event.failed()) {
        if let Some(host) = event.host.as_deref() {
            add(host, "event");
        }
    }
    hosts
}

/// Reads each involved host's service record and novamedic's report, has
/// its agent search nova-compute's log files for the instance, and, with
/// `placement_ready`, reads the Placement capacity of the hosts the
/// request ran on.
async fn host_checks(
    client: &Client,
    fleet: &impl FleetSource,
    server: &Server,
    actions: &[InstanceAction],
    placement_ready: bool,
) -> (Vec<HostCheck>, Vec<MissingPart>) {
    let flavor = server.flavor.clone().unwrap_or_default();
    let query = HostLogQuery::for_server(server, actions, crate::clock::now_unix_ms());
    let query = &query;
    let request = capacity::flavor_request(&flavor, server.image_id().is_none());
    let request = &request;
    let reads = involved_hosts(server, actions).into_iter().map(|(host, roles)| {
        let flavor = flavor.clone();
        let wants_capacity = placement_ready
            && roles.iter().any(|role| matches!(*role, "server_host" | "failed_event"));
        async move {
            let (service, node, placement) = futures::join!(
                nova::compute_services(client, &host),
                fleet_node(fleet, &host),
                host_placement(client, server, &host, request, wants_capacity),
            );
            let mut missing = Vec::new();
            let placement = placement.unwrap_or_else(|reason| {
                missing.push(MissingPart {
                    part: format!("placement {host}"),
                    reason,
                });
                None
            });
            let service = match service {
                Ok(services) => services.into_iter().find(|service| service.host.as_deref() == Some(host.as_str())),
                Err(err) => {
                    missing.push(missing_part(&format!("service {host}"), &err));
                    None
                }
            };
            let logs = match &node {
                Ok(Some(view)) => host_logs(fleet, &host, view, query, &mut missing).await,
                _ => None,
            };
            let fleet = match node {
                Ok(Some(view)) => Some(fleet_host(&view, &flavor)),
                Ok(None) => {
                    missing.push(MissingPart {
                        part: format!("fleet {host}"),
                        reason: "no novamedic agent reports under this host's name or its short name".to_string(),
                    });
                    None
                }
                Err(reason) => {
                    missing.push(MissingPart {
                        part: format!("fleet {host}"),
                        reason,
                    });
                    None
                }
            };
            (HostCheck { host, roles, service, fleet, logs, placement }, missing)
        }
    });
    let mut checks = Vec::new();
    let mut missing = Vec::new();
    for (check, host_missing) in join_all(reads).await {
        checks.push(check);
        missing.extend(host_missing);
    }
    (checks, missing)
}

/// Reads `host`'s Placement capacity when `needed`, naming the provider
/// by the server's `hypervisor_hostname` when `host` is the server's own.
async fn host_placement(
    client: &Client,
    server: &Server,
    host: &str,
    request: &BTreeMap<String, u64>,
    needed: bool,
) -> Result<Option<HostCapacity>, String> {
    if !needed {
        return Ok(None);
    }
    let hypervisor_hostname = server
        .hypervisor_hostname
        .as_deref()
        .filter(|name| !name.is_empty() && server.host.as_deref() == Some(host));
    capacity::host_capacity(client, host, hypervisor_hostname, request)
        .await
        .map(Some)
}

/// Has the agent of `view` search nova-compute's logs, or records in
/// `missing` why it could not.
async fn host_logs(
    fleet: &impl FleetSource,
    host: &str,
    view: &NodeView,
    query: &HostLogQuery,
    missing: &mut Vec<MissingPart>,
) -> Option<HostLogs> {
    let part = format!("logs {host}");
    let not_searched = |reason: String| MissingPart {
        part: part.clone(),
        reason,
    };
    if !view.connected {
        missing.push(not_searched(format!(
            "the agent on {} is not connected, so nova-compute's log was not searched",
            view.node
        )));
        return None;
    }
    let capable = view
        .capabilities
        .iter()
        .any(|c| c == novamedic_proto::CAPABILITY_SEARCH_LOGS);
    if !capable {
        missing.push(not_searched(format!(
            "the agent on {} (version {}) does not announce the {} capability; upgrade it \
             to have nova-compute's log searched",
            view.node,
            if view.agent_version.is_empty() {
                "unknown"
            } else {
                &view.agent_version
            },
            novamedic_proto::CAPABILITY_SEARCH_LOGS
        )));
        return None;
    }
    match fleet.search_logs(&view.node, query).await {
        Ok(logs) => {
            if let Some(problem) = &logs.problem {
                missing.push(not_searched(problem.clone()));
            }
            Some(logs)
        }
        Err(reason) => {
            missing.push(not_searched(reason));
            None
        }
    }
}

/// Asks the fleet for `host`, then for its short name (`compute-07` for
/// `compute-07.example.net`), since agents default to the short host name.
/// NOTE: the controller's `[openstack.host_names]` table is not applied
/// here, so a node named otherwise gets no fleet data and no log search.
async fn fleet_node(fleet: &impl FleetSource, host: &str) -> Result<Option<NodeView>, String> {
    if let Some(view) = fleet.node(host).await? {
        return Ok(Some(view));
    }
    match host.split_once('.') {
        Some((short, _)) if !short.is_empty() => fleet.node(short).await,
        _ => Ok(None),
    }
}

fn fleet_host(view: &NodeView, flavor: &Flavor) -> FleetHost {
    let instances_disk = view.instances_disk().map(|disk| disk.available_bytes);
    let mut shortfalls = Vec::new();
    let has_report = view.memory.total_bytes > 0;
    if let Some(ram) = flavor.ram.filter(|_| has_report) {
        if view.memory.available_bytes < ram * MIB {
            shortfalls.push(format!(
                "{} MiB of memory available, the flavor needs {ram} MiB",
                view.memory.available_bytes / MIB
            ));
        }
    }
    let disk_gib = flavor.disk.unwrap_or(0) + flavor.ephemeral.unwrap_or(0);
    if let Some(available) = instances_disk.filter(|_| disk_gib > 0) {
        if available < disk_gib * GIB {
            shortfalls.push(format!(
                "{:.1} GiB free on the instances disk, the flavor needs {disk_gib} GiB",
                available as f64 / GIB as f64
            ));
        }
    }
    let unit = &view.nova_compute;
    FleetHost {
        node: view.node.clone(),
        health: view.health,
        reasons: view.reasons.clone(),
        connected: view.connected,
        last_seen: view.last_seen.clone(),
        nova_compute: if unit.active_state.is_empty() {
            "unknown".to_string()
        } else {
            format!("{}/{}", unit.active_state, unit.sub_state)
        },
        memory_available_bytes: view.memory.available_bytes,
        instances_disk_available_bytes: instances_disk,
        cpus: view.cpu.count,
        guest_vcpus: view.guests.vcpus,
        shortfalls,
        log_faults: view
            .log
            .as_ref()
            .map(|log| log.active_faults.clone())
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_larger_than_flavor() {
        let image = Image {
            id: "i".into(),
            status: Some("active".into()),
            min_disk: Some(40),
            min_ram: Some(8192),
            virtual_size: Some(50 * GIB),
            ..Image::default()
        };
        let flavor = Flavor {
            disk: Some(20),
            ram: Some(4096),
            ..Flavor::default()
        };
        let problems = image_problems(&image, Some(&flavor));
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(problems[0].contains("min_disk is 40 GiB"));
        assert!(problems[1].contains("virtual_size is 50.0 GiB"));
        assert!(problems[2].contains("min_ram is 8192 MiB"));
    }

    #[test]
    fn volume_flavor_skips_disk_checks() {
        let image = Image {
            id: "i".into(),
            status: Some("active".into()),
            min_disk: Some(40),
            ..Image::default()
        };
        let flavor = Flavor {
            disk: Some(0),
            ..Flavor::default()
        };
        assert!(image_problems(&image, Some(&flavor)).is_empty());
    }
}
