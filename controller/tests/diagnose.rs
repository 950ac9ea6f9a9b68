//! `novamedic diagnose` against a fake cloud on loopback: one test per
//! verdict, lookups by name, partial results, the report formats and
//! `--all`.

mod openstack_mock;

use std::collections::BTreeMap;
use std::sync::Mutex;

use novamedic::diagnose::{
    self, all, markdown, text, Cause, DiagnoseError, Diagnosis, FleetSource, HostLogQuery,
    HostLogRecord, HostLogs,
};
use novamedic_proto::v1;
use novamedic_proto::view::NodeView;
use openstack_mock::{fixture, Mock};
use serde_json::{json, Value};

const BUILD_ID: &str = "c88f1556-b299-4254-9642-cab36648dfaa";
const ON_HOST_ID: &str = "140d0e3c-e5da-40f5-8eac-5bb1234fb08f";
const NO_HOST_ID: &str = "13a53978-232b-40c5-8f86-4114d8a4b448";
const IMAGE_ID: &str = "19a9a1f9-eb57-497a-a4d9-2e87f14836c1";
const VOLUME_ID: &str = "6b1a90e8-25a9-4185-99c7-f47a82cfb00e";
const REQUEST_ID: &str = "req-0fe319d7-15bc-4819-aed7-af4a18c1d720";

/// novamedic's fleet as a fixed table of node views.
#[derive(Default)]
struct Fleet(BTreeMap<String, NodeView>);

impl FleetSource for Fleet {
    async fn node(&self, node: &str) -> Result<Option<NodeView>, String> {
        Ok(self.0.get(node).cloned())
    }
}

/// A node report: nova-compute's unit state, free memory and log faults.
fn node(
    name: &str,
    unit_state: &str,
    memory_available_mib: u64,
    faults: Vec<v1::LogFault>,
) -> NodeView {
    let report = v1::NodeReport {
        resources: Some(v1::Resources {
            memory_total_bytes: 64 << 30,
            memory_available_bytes: memory_available_mib << 20,
            ..Default::default()
        }),
        nova_compute: Some(v1::NovaCompute {
            unit: "nova-compute.service".into(),
            active_state: unit_state.into(),
            sub_state: if unit_state == "active" {
                "running"
            } else {
                "dead"
            }
            .into(),
            ..Default::default()
        }),
        log: Some(v1::LogHealth {
            active_faults: faults,
            ..Default::default()
        }),
        ..Default::default()
    };
    NodeView::from_report(name, Some(&report), &v1::Health::default())
}

fn log_fault(signature: &str, kind: &str, sample: &str, instances: &[&str]) -> v1::LogFault {
    v1::LogFault {
        signature_id: signature.into(),
        fault_kind: kind.into(),
        severity: "error".into(),
        count: 3,
        sample: sample.into(),
        instance_uuids: instances.iter().map(|id| id.to_string()).collect(),
        ..Default::default()
    }
}

fn healthy_fleet() -> Fleet {
    let mut fleet = Fleet::default();
    for name in ["compute-06", "compute-07", "compute-08"] {
        fleet
            .0
            .insert(name.into(), node(name, "active", 32 << 10, Vec::new()));
    }
    fleet
}

fn server(file: &str) -> Value {
    fixture(file)["server"].clone()
}

fn set_fault(server: &mut Value, message: &str, details: Option<&str>) {
    server["fault"]["message"] = json!(message);
    match details {
        Some(details) => server["fault"]["details"] = json!(details),
        None => {
            server["fault"]
                .as_object_mut()
                .expect("fault")
                .remove("details");
        }
    }
}

/// The sample's failed build, with events on compute-07.
fn build_action() -> Value {
    fixture("nova_get_server_os_instance_action_request_id_v2_84.json")["instanceAction"].clone()
}

/// A `create` action whose build ran on each of `hosts` and failed with
/// `details` on each, as after two reschedules.
fn rescheduled_action(id: &str, hosts: &[&str], details: &str) -> Value {
    let mut events = vec![json!({
        "event": "conductor_schedule_and_build_instances",
        "start_time": "2026-11-30T08:57:02.861004",
        "finish_time": "2026-11-30T08:57:03.996111",
        "result": "Success",
        "host": "conductor-01.example.net",
        "details": null,
        "traceback": null
    })];
    for (index, host) in hosts.iter().enumerate() {
        events.push(json!({
            "event": "compute__do_build_and_run_instance",
            "start_time": format!("2026-11-30T08:5{}:04.000000", 7 + index),
            "finish_time": format!("2026-11-30T08:5{}:40.000000", 7 + index),
            "result": "Error",
            "host": host,
            "details": details,
            "traceback": format!("  File \"/usr/lib/python3/dist-packages/nova/compute/manager.py\", line 2476\n{details}\n"),
        }));
    }
    json!({
        "action": "create",
        "instance_uuid": id,
        "message": "Error",
        "request_id": REQUEST_ID,
        "start_time": "2026-11-30T08:57:02.412093",
        "updated_at": "2026-11-30T09:00:11.771842",
        "events": events
    })
}

async fn run(mock: &Mock, fleet: &Fleet, server_ref: &str) -> Diagnosis {
    let client = mock.client();
    diagnose::diagnose(&client, fleet, server_ref)
        .await
        .unwrap_or_else(|err| panic!("diagnose {server_ref}: {err}"))
}

fn assert_evidence(diagnosis: &Diagnosis, needle: &str) {
    assert!(
        diagnosis
            .verdict
            .evidence
            .iter()
            .any(|line| line.contains(needle)),
        "no evidence line contains {needle:?}: {:#?}",
        diagnosis.verdict.evidence
    );
}

#[tokio::test]
async fn network_verdict_traces_build_to_event_host() {
    let mock = Mock::start().await;
    mock.add_server(
        server("nova_get_server_error_build_aborted.json"),
        vec![build_action()],
    );
    let mut ports = fixture("neutron_get_v2_0_ports_device_id.json")["ports"].clone();
    for port in ports.as_array_mut().expect("ports") {
        port["device_id"] = json!(BUILD_ID);
    }
    mock.with(|cloud| {
        cloud
            .images
            .insert(IMAGE_ID.into(), fixture("glance_get_v2_image.json"));
        cloud.ports.insert(
            BUILD_ID.into(),
            ports.as_array().cloned().unwrap_or_default(),
        );
    });

    let diagnosis = run(&mock, &healthy_fleet(), BUILD_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::Network);
    assert_eq!(
        diagnosis.server.host, None,
        "Nova clears a failed build's host"
    );
    assert_eq!(diagnosis.hosts.len(), 1);
    assert_eq!(diagnosis.hosts[0].host, "compute-07.example.net");
    assert_eq!(diagnosis.hosts[0].roles, ["failed_event"]);
    let fleet = diagnosis.hosts[0]
        .fleet
        .as_ref()
        .expect("fleet found by short name");
    assert_eq!(fleet.node, "compute-07");
    assert_evidence(&diagnosis, "Failed to allocate the network(s)");
    assert_evidence(&diagnosis, "binding_failed on compute-07.example.net");
    let missing: Vec<&str> = diagnosis.missing.iter().map(|p| p.part.as_str()).collect();
    assert_eq!(
        missing,
        ["logs compute-07.example.net"],
        "only the log search is missing, as this agent cannot search"
    );

    let requests = mock.with(|cloud| cloud.api_requests());
    let ports_get = requests
        .iter()
        .find(|request| request.path == "/network/v2.0/ports")
        .expect("ports GET");
    assert_eq!(
        ports_get.query.get("device_id").map(String::as_str),
        Some(BUILD_ID)
    );
    let services_get = requests
        .iter()
        .find(|request| request.path == "/compute/v2.1/os-services")
        .expect("os-services GET");
    assert_eq!(
        services_get.query.get("binary").map(String::as_str),
        Some("nova-compute")
    );
    assert_eq!(
        services_get.query.get("host").map(String::as_str),
        Some("compute-07.example.net")
    );
    assert!(requests.iter().any(|request| request.path
        == format!("/compute/v2.1/servers/{BUILD_ID}/os-instance-actions/{REQUEST_ID}")));
    assert!(requests
        .iter()
        .filter(|request| request.path.starts_with("/compute/v2.1/servers"))
        .all(|request| request.microversion.as_deref() == Some("compute 2.88")));
}

#[tokio::test]
async fn image_verdict_from_flavor_mismatch() {
    let mock = Mock::start().await;
    let mut build = server("nova_get_server_error_build_aborted.json");
    set_fault(
        &mut build,
        &format!(
            "Build of instance {BUILD_ID} aborted: Flavor's disk is too small for requested image. \
             Flavor disk is 21474836480 bytes, image is 42949672960 bytes."
        ),
        None,
    );
    let mut action = build_action();
    action["events"][0]["details"] = build["fault"]["message"].clone();
    mock.add_server(build, vec![action]);
    let mut image = fixture("glance_get_v2_image.json");
    image["min_disk"] = json!(40);
    mock.with(|cloud| cloud.images.insert(IMAGE_ID.into(), image));

    let diagnosis = run(&mock, &healthy_fleet(), BUILD_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::Image);
    assert_evidence(
        &diagnosis,
        "image min_disk is 40 GiB but the flavor's disk is 20 GiB",
    );
    assert_evidence(&diagnosis, "Flavor's disk is too small");
    let check = diagnosis.image.as_ref().expect("image checked");
    assert!(check.found);
}

#[tokio::test]
async fn image_verdict_when_image_deleted() {
    let mock = Mock::start().await;
    let mut build = server("nova_get_server_error_build_aborted.json");
    set_fault(
        &mut build,
        &format!("Image {IMAGE_ID} could not be found."),
        None,
    );
    mock.add_server(build, Vec::new());

    let diagnosis = run(&mock, &healthy_fleet(), BUILD_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::Image);
    assert!(!diagnosis.image.as_ref().expect("image checked").found);
    assert_evidence(&diagnosis, "is not in Glance");
}

#[tokio::test]
async fn volume_verdict_from_cinder_status() {
    let mock = Mock::start().await;
    let mut on_host = server("nova_get_server_error_on_host.json");
    set_fault(
        &mut on_host,
        &format!(
            "Build of instance {ON_HOST_ID} aborted: Volume {VOLUME_ID} did not finish being created \
             even after we waited 187 seconds or 61 attempts. And its status is error."
        ),
        None,
    );
    mock.add_server(on_host, Vec::new());
    let mut volume = fixture("cinder_get_v3_volume_error.json")["volume"].clone();
    volume["id"] = json!(VOLUME_ID);
    mock.with(|cloud| cloud.volumes.insert(VOLUME_ID.into(), volume));

    let diagnosis = run(&mock, &healthy_fleet(), ON_HOST_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::Volume);
    assert_evidence(&diagnosis, &format!("volume {VOLUME_ID} has status error"));
    assert_evidence(&diagnosis, "did not finish being created");
    assert!(diagnosis.image.is_none(), "boot from volume has no image");
}

#[tokio::test]
async fn libvirt_class_name_resolved_from_details() {
    let mock = Mock::start().await;
    mock.add_server(server("nova_get_server_error_on_host.json"), Vec::new());
    let mut volume = fixture("cinder_get_v3_volume.json")["volume"].clone();
    volume["id"] = json!(VOLUME_ID);
    mock.with(|cloud| cloud.volumes.insert(VOLUME_ID.into(), volume));

    let diagnosis = run(&mock, &healthy_fleet(), ON_HOST_ID).await;

    assert_eq!(
        diagnosis
            .server
            .fault
            .as_ref()
            .and_then(|f| f.message.as_deref()),
        Some("libvirtError")
    );
    assert_eq!(diagnosis.verdict.cause, Cause::Hypervisor);
    assert_evidence(&diagnosis, "process exited while connecting to monitor");
    assert_eq!(diagnosis.hosts[0].roles, ["server_host"]);
}

#[tokio::test]
async fn libvirt_class_name_resolved_from_events() {
    let mock = Mock::start().await;
    let mut on_host = server("nova_get_server_error_on_host.json");
    set_fault(&mut on_host, "libvirtError", None);
    let action = json!({
        "action": "reboot",
        "instance_uuid": ON_HOST_ID,
        "message": "Error",
        "request_id": "req-11111111-2222-4333-8444-555555555555",
        "start_time": "2026-11-30T10:31:40.000000",
        "updated_at": "2026-11-30T10:31:52.000000",
        "events": [{
            "event": "compute_reboot_instance",
            "start_time": "2026-11-30T10:31:40.000000",
            "finish_time": "2026-11-30T10:31:52.000000",
            "result": "Error",
            "host": "compute-07.example.net",
            "details": "libvirtError",
            "traceback": "  File \"/usr/lib/python3/dist-packages/nova/virt/libvirt/guest.py\", line 165, in launch\nlibvirt.libvirtError: Failed to start libvirt guest: internal error: qemu unexpectedly closed the monitor\n"
        }]
    });
    mock.add_server(on_host, vec![action]);

    let diagnosis = run(&mock, &healthy_fleet(), ON_HOST_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::Hypervisor);
    assert_evidence(
        &diagnosis,
        "libvirt.libvirtError: Failed to start libvirt guest",
    );
    assert_evidence(
        &diagnosis,
        "compute_reboot_instance on compute-07.example.net (traceback)",
    );
}

#[tokio::test]
async fn libvirt_class_name_resolved_from_host_log() {
    let mock = Mock::start().await;
    let mut on_host = server("nova_get_server_error_on_host.json");
    set_fault(&mut on_host, "libvirtError", None);
    on_host["os-extended-volumes:volumes_attached"] = json!([]);
    mock.add_server(on_host, Vec::new());
    let mut fleet = healthy_fleet();
    fleet.0.insert(
        "compute-07".into(),
        node(
            "compute-07",
            "active",
            32 << 10,
            vec![log_fault(
                "libvirt-connection-lost",
                "hypervisor_connection",
                "Connection to libvirt lost: 1",
                &[ON_HOST_ID],
            )],
        ),
    );

    let diagnosis = run(&mock, &fleet, ON_HOST_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::Hypervisor);
    assert_evidence(&diagnosis, "libvirt-connection-lost");
    assert_evidence(&diagnosis, "naming this instance");
}

/// A fleet whose connected agents answer log searches from a table, and
/// that remembers what it was asked.
#[derive(Default)]
struct SearchingFleet {
    nodes: Fleet,
    logs: BTreeMap<String, HostLogs>,
    asked: Mutex<Vec<(String, HostLogQuery)>>,
}

impl FleetSource for SearchingFleet {
    async fn node(&self, node: &str) -> Result<Option<NodeView>, String> {
        self.nodes.node(node).await
    }

    async fn search_logs(&self, node: &str, query: &HostLogQuery) -> Result<HostLogs, String> {
        self.asked
            .lock()
            .unwrap()
            .push((node.to_string(), query.clone()));
        self.logs
            .get(node)
            .cloned()
            .ok_or_else(|| format!("no agent answered for {node}"))
    }
}

fn searching_node(name: &str) -> NodeView {
    let mut view = node(name, "active", 32 << 10, Vec::new());
    view.connected = true;
    view.capabilities = vec![novamedic_proto::CAPABILITY_SEARCH_LOGS.to_string()];
    view
}

/// A build rescheduled once and then given up: the fault and the event
/// only say that retries ran out, which alone reads as scheduling.
fn retried_build(mock: &Mock) {
    let mut build = server("nova_get_server_error_build_aborted.json");
    set_fault(
        &mut build,
        &format!("Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance {BUILD_ID}."),
        None,
    );
    mock.add_server(
        build,
        vec![rescheduled_action(
            BUILD_ID,
            &["compute-07.example.net"],
            "Build of instance was re-scheduled",
        )],
    );
}

#[tokio::test]
async fn host_log_evidence_decides_the_cause() {
    let mock = Mock::start().await;
    retried_build(&mock);
    let mut fleet = SearchingFleet::default();
    fleet
        .nodes
        .0
        .insert("compute-07".into(), searching_node("compute-07"));

    let without_logs = run_with(&mock, &fleet, BUILD_ID).await;
    assert_ne!(
        without_logs.verdict.cause,
        Cause::HostResources,
        "{:#?}",
        without_logs.verdict.findings
    );
    assert!(without_logs
        .missing
        .iter()
        .any(|part| part.part == "logs compute-07.example.net"
            && part.reason.contains("no agent answered")));

    let traceback = "2026-11-30 08:57:30.120 4242 ERROR nova.compute.manager [req-0fe319d7-15bc-4819-aed7-af4a18c1d720 admin admin - - -] [instance: c88f1556-b299-4254-9642-cab36648dfaa] Instance failed to spawn\n\
         2026-11-30 08:57:30.120 4242 ERROR nova.compute.manager [instance: c88f1556-b299-4254-9642-cab36648dfaa] Traceback (most recent call last):\n\
         2026-11-30 08:57:30.120 4242 ERROR nova.compute.manager [instance: c88f1556-b299-4254-9642-cab36648dfaa] OSError: [Errno 28] No space left on device: '/var/lib/nova/instances/_base/tmpa1'";
    fleet.logs.insert(
        "compute-07".into(),
        HostLogs {
            node: "compute-07".into(),
            log_file: "/var/log/nova/nova-compute.log".into(),
            records: vec![
                HostLogRecord {
                    file: "/var/log/nova/nova-compute.log".into(),
                    line: 10,
                    level: "INFO".into(),
                    text: "2026-11-30 08:57:05.000 4242 INFO nova.compute.claims [req-0fe319d7-15bc-4819-aed7-af4a18c1d720 admin admin - - -] [instance: c88f1556-b299-4254-9642-cab36648dfaa] Claim successful".into(),
                    ..HostLogRecord::default()
                },
                HostLogRecord {
                    file: "/var/log/nova/nova-compute.log.1".into(),
                    line: 42,
                    time: Some("2026-11-30T08:57:30Z".into()),
                    level: "ERROR".into(),
                    request_id: Some(REQUEST_ID.into()),
                    text: traceback.into(),
                    signature_id: Some("host-out-of-resources".into()),
                    fault_kind: Some("host_resources".into()),
                    advice: Some("Free space on the instances filesystem.".into()),
                },
            ],
            files_searched: vec![
                "/var/log/nova/nova-compute.log".into(),
                "/var/log/nova/nova-compute.log.1".into(),
            ],
            ..HostLogs::default()
        },
    );

    let diagnosis = run_with(&mock, &fleet, BUILD_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::HostResources);
    assert_evidence(
        &diagnosis,
        "nova-compute on compute-07.example.net logged host-out-of-resources (host_resources)",
    );
    assert_evidence(&diagnosis, "No space left on device");
    let asked = fleet.asked.lock().unwrap().clone();
    let (node, query) = asked.last().expect("a search was made");
    assert_eq!(
        node, "compute-07",
        "the search goes to the agent's node name"
    );
    assert_eq!(query.instance_uuid, BUILD_ID);
    assert_eq!(query.request_ids, vec![REQUEST_ID.to_string()]);
    let event_ms = diagnose::hostlogs::nova_time_ms("2026-11-30T08:57:04").unwrap();
    assert!(
        query.start_unix_ms < event_ms && event_ms < query.end_unix_ms,
        "{query:?}"
    );

    let report = text::render(&diagnosis);
    assert!(report.contains("Host log:"), "{report}");
    assert!(report.contains("[host-out-of-resources]"), "{report}");
    assert!(report.contains("No space left on device"), "{report}");
    let markdown = markdown::render(&diagnosis);
    assert!(
        markdown.contains("## nova-compute log on compute-07.example.net"),
        "{markdown}"
    );
    assert!(
        markdown.contains("`host-out-of-resources` (host_resources)"),
        "{markdown}"
    );
    let json = serde_json::to_value(&diagnosis).unwrap();
    assert_eq!(
        json["hosts"][0]["logs"]["records"][1]["signature_id"],
        "host-out-of-resources"
    );
}

#[tokio::test]
async fn disconnected_agent_leaves_host_logs_missing() {
    let mock = Mock::start().await;
    retried_build(&mock);
    let mut fleet = SearchingFleet::default();
    let mut view = searching_node("compute-07");
    view.connected = false;
    fleet.nodes.0.insert("compute-07".into(), view);

    let diagnosis = run_with(&mock, &fleet, BUILD_ID).await;

    assert!(
        fleet.asked.lock().unwrap().is_empty(),
        "no search without a stream"
    );
    assert!(diagnosis.hosts[0].logs.is_none());
    assert_evidence(
        &diagnosis,
        "not checked, logs compute-07.example.net: the agent on compute-07 is not connected",
    );
}

async fn run_with(mock: &Mock, fleet: &impl FleetSource, server_ref: &str) -> Diagnosis {
    let client = mock.client();
    diagnose::diagnose(&client, fleet, server_ref)
        .await
        .unwrap_or_else(|err| panic!("diagnose {server_ref}: {err}"))
}

#[tokio::test]
async fn rescheduled_build_across_hosts() {
    let mock = Mock::start().await;
    let mut build = server("nova_get_server_error_build_aborted.json");
    set_fault(
        &mut build,
        &format!(
            "Exceeded maximum number of retries. Exhausted all hosts available for retrying build \
             failures for instance {BUILD_ID}."
        ),
        None,
    );
    let hosts = [
        "compute-06.example.net",
        "compute-07.example.net",
        "compute-08.example.net",
    ];
    mock.add_server(
        build,
        vec![rescheduled_action(
            BUILD_ID,
            &hosts,
            "Insufficient compute resources: Free memory 1024.00 MB < requested 4096 MB.",
        )],
    );
    mock.with(|cloud| {
        cloud
            .images
            .insert(IMAGE_ID.into(), fixture("glance_get_v2_image.json"))
    });
    let mut fleet = healthy_fleet();
    fleet.0.insert(
        "compute-08".into(),
        node("compute-08", "active", 1024, Vec::new()),
    );

    let diagnosis = run(&mock, &fleet, BUILD_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::HostResources);
    let involved: Vec<&str> = diagnosis
        .hosts
        .iter()
        .map(|host| host.host.as_str())
        .collect();
    assert_eq!(involved, hosts);
    assert!(diagnosis
        .hosts
        .iter()
        .all(|host| host.roles == ["failed_event"]));
    assert_evidence(&diagnosis, "Insufficient compute resources");
    assert_evidence(&diagnosis, "compute-06.example.net");
    assert_evidence(&diagnosis, "compute-08.example.net");
    assert_evidence(
        &diagnosis,
        "1024 MiB of memory available, the flavor needs 4096 MiB",
    );
    let scheduling: Vec<_> = diagnosis
        .verdict
        .findings
        .iter()
        .filter(|finding| finding.cause == Cause::Scheduling)
        .collect();
    assert_eq!(
        scheduling.len(),
        1,
        "the retries fault is still listed as a finding"
    );
}

#[tokio::test]
async fn scheduling_verdict_for_no_valid_host() {
    let mock = Mock::start().await;
    let action = json!({
        "action": "create",
        "instance_uuid": NO_HOST_ID,
        "message": "Error",
        "request_id": REQUEST_ID,
        "start_time": "2026-11-30T08:14:06.000000",
        "updated_at": "2026-11-30T08:14:27.000000",
        "events": [{
            "event": "conductor_schedule_and_build_instances",
            "start_time": "2026-11-30T08:14:06.000000",
            "finish_time": "2026-11-30T08:14:27.000000",
            "result": "Error",
            "host": "conductor-01.example.net",
            "details": "No valid host was found. There are not enough hosts available.",
            "traceback": null
        }]
    });
    mock.add_server(
        server("nova_get_server_error_no_valid_host.json"),
        vec![action],
    );
    mock.with(|cloud| {
        cloud
            .images
            .insert(IMAGE_ID.into(), fixture("glance_get_v2_image.json"))
    });

    let diagnosis = run(&mock, &healthy_fleet(), NO_HOST_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::Scheduling);
    assert!(
        diagnosis.hosts.is_empty(),
        "the conductor is no compute host"
    );
    assert_evidence(&diagnosis, "No valid host was found");
}

#[tokio::test]
async fn service_health_verdict_from_messaging_and_unit() {
    let mock = Mock::start().await;
    let mut on_host = server("nova_get_server_error_on_host.json");
    set_fault(
        &mut on_host,
        "MessagingTimeout",
        Some("Traceback (most recent call last):\n  ... (trimmed) ...\noslo_messaging.exceptions.MessagingTimeout: Timed out waiting for a reply to message ID 8b1c\n"),
    );
    on_host["os-extended-volumes:volumes_attached"] = json!([]);
    mock.add_server(on_host, Vec::new());
    let mut fleet = healthy_fleet();
    fleet.0.insert(
        "compute-07".into(),
        node("compute-07", "failed", 32 << 10, Vec::new()),
    );

    let diagnosis = run(&mock, &fleet, ON_HOST_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::ServiceHealth);
    assert_evidence(&diagnosis, "Timed out waiting for a reply");
    assert_evidence(
        &diagnosis,
        "novamedic: nova-compute on compute-07.example.net is failed/dead",
    );
    assert_evidence(&diagnosis, "is down in Nova");
}

#[tokio::test]
async fn configuration_verdict_for_cpu_policy() {
    let mock = Mock::start().await;
    let mut on_host = server("nova_get_server_error_on_host.json");
    set_fault(
        &mut on_host,
        "Requested CPU control policy not supported by host",
        None,
    );
    on_host["os-extended-volumes:volumes_attached"] = json!([]);
    mock.add_server(on_host, Vec::new());

    let diagnosis = run(&mock, &healthy_fleet(), ON_HOST_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::Configuration);
    assert_evidence(
        &diagnosis,
        "Requested CPU control policy not supported by host",
    );
}

#[tokio::test]
async fn unknown_verdict_keeps_fault() {
    let mock = Mock::start().await;
    let mut build = server("nova_get_server_error_build_aborted.json");
    set_fault(
        &mut build,
        "Something nobody has seen before happened.",
        None,
    );
    mock.add_server(build, Vec::new());
    mock.with(|cloud| {
        cloud
            .images
            .insert(IMAGE_ID.into(), fixture("glance_get_v2_image.json"))
    });

    let diagnosis = run(&mock, &healthy_fleet(), BUILD_ID).await;

    assert_eq!(diagnosis.verdict.cause, Cause::Unknown);
    assert_evidence(
        &diagnosis,
        "fault message: Something nobody has seen before happened.",
    );
    assert!(!diagnosis.verdict.next_steps.is_empty());
}

/// Builds a host record of the instance at `level`, written at 08:57:`second`.
fn host_record(line: u64, second: u32, level: &str, message: &str) -> HostLogRecord {
    HostLogRecord {
        file: "/var/log/nova/nova-compute.log".into(),
        line,
        time: Some(format!("2026-11-30T08:57:{second:02}Z")),
        level: level.into(),
        request_id: Some(REQUEST_ID.into()),
        text: format!(
            "2026-11-30 08:57:{second:02}.120 4242 {level} nova.compute.manager \
             [None {REQUEST_ID} admin admin - - default default] [instance: {BUILD_ID}] {message}"
        ),
        ..HostLogRecord::default()
    }
}

#[tokio::test]
async fn unknown_verdict_quotes_host_errors() {
    let mock = Mock::start().await;
    let message = format!("Build of instance {BUILD_ID} aborted: the driver gave up");
    let mut build = server("nova_get_server_error_build_aborted.json");
    set_fault(&mut build, &message, None);
    mock.add_server(
        build,
        vec![rescheduled_action(
            BUILD_ID,
            &["compute-06.example.net"],
            &message,
        )],
    );
    mock.with(|cloud| {
        cloud
            .images
            .insert(IMAGE_ID.into(), fixture("glance_get_v2_image.json"))
    });
    // compute-06 is up and enabled in Nova, so nothing else points at a cause.
    let mut fleet = SearchingFleet::default();
    fleet
        .nodes
        .0
        .insert("compute-06".into(), searching_node("compute-06"));
    let mut records = vec![host_record(
        10,
        5,
        "INFO",
        "Claim successful on node compute-06",
    )];
    for (index, second) in (30..34).enumerate() {
        let text = format!("{message} (record {index})");
        records.push(host_record(20 + index as u64, second, "ERROR", &text));
    }
    fleet.logs.insert(
        "compute-06".into(),
        HostLogs {
            node: "compute-06".into(),
            log_file: "/var/log/nova/nova-compute.log".into(),
            records,
            files_searched: vec!["/var/log/nova/nova-compute.log".into()],
            ..HostLogs::default()
        },
    );

    let diagnosis = run_with(&mock, &fleet, BUILD_ID).await;

    assert_eq!(
        diagnosis.verdict.cause,
        Cause::Unknown,
        "{:#?}",
        diagnosis.verdict.findings
    );
    assert_evidence(&diagnosis, &format!("fault message: {message}"));
    assert_evidence(
        &diagnosis,
        &format!(
            "nova-compute on compute-06.example.net logged ERROR at 2026-11-30T08:57:30Z: \
             {message} (record 0)"
        ),
    );
    let quoted: Vec<&String> = diagnosis
        .verdict
        .evidence
        .iter()
        .filter(|line| line.starts_with("nova-compute on compute-06.example.net logged"))
        .collect();
    assert_eq!(quoted.len(), 3, "at most three records: {quoted:#?}");
    assert!(
        quoted.iter().all(|line| !line.contains("Claim successful")),
        "INFO records are not quoted: {quoted:#?}"
    );
}

#[tokio::test]
async fn missing_parts_reported_with_reason() {
    let mock = Mock::start().await;
    mock.add_server(server("nova_get_server_error_on_host.json"), Vec::new());
    struct Down;
    impl FleetSource for Down {
        async fn node(&self, _node: &str) -> Result<Option<NodeView>, String> {
            Err("cannot reach the controller at http://127.0.0.1:1".to_string())
        }
    }
    let client = mock.client();
    let diagnosis = diagnose::diagnose(&client, &Down, ON_HOST_ID)
        .await
        .expect("diagnosis");

    let parts: Vec<&str> = diagnosis
        .missing
        .iter()
        .map(|part| part.part.as_str())
        .collect();
    assert!(parts.contains(&"fleet compute-07.example.net"), "{parts:?}");
    let volume = diagnosis.volumes.first().expect("volume listed");
    assert!(!volume.found, "the fake Cinder has no such volume");
    assert_eq!(
        diagnosis.verdict.cause,
        Cause::Hypervisor,
        "the rest still counts"
    );
    assert_evidence(
        &diagnosis,
        "not checked, fleet compute-07.example.net: cannot reach the controller",
    );
}

#[tokio::test]
async fn failed_and_slow_services_are_missing() {
    let mock = Mock::start().await;
    mock.add_server(
        server("nova_get_server_error_build_aborted.json"),
        vec![build_action()],
    );
    mock.with(|cloud| {
        cloud.failing.push("/network/".into());
        cloud.hanging.push("/image/".into());
    });
    let cloud = novamedic::openstack::config::load(
        &mock.environment(),
        &Default::default(),
        &Default::default(),
    )
    .expect("config");
    let client = novamedic::openstack::Client::new(cloud, Some(std::time::Duration::from_secs(1)))
        .expect("client");

    let diagnosis = diagnose::diagnose(&client, &healthy_fleet(), BUILD_ID)
        .await
        .expect("diagnosis despite two failed services");

    let reason = |part: &str| {
        diagnosis
            .missing
            .iter()
            .find(|missing| missing.part == part)
            .map(|missing| missing.reason.clone())
            .unwrap_or_else(|| panic!("{part} not listed as missing: {:?}", diagnosis.missing))
    };
    let ports = reason("ports");
    assert!(ports.contains("Neutron returned HTTP 503"), "{ports}");
    assert!(
        ports.contains("503 Service Unavailable"),
        "the HTML body is shown as text: {ports}"
    );
    let image = reason("image");
    assert!(
        image.contains("Glance did not answer GET /image/v2/images/"),
        "{image}"
    );
    assert!(image.contains("within 1 s"), "{image}");
    assert_eq!(
        diagnosis.verdict.cause,
        Cause::Network,
        "the fault and events still count"
    );
    assert_evidence(&diagnosis, "not checked, ports: Neutron returned HTTP 503");
}

#[tokio::test]
async fn lookup_by_name_zero_one_several() {
    let mock = Mock::start().await;
    mock.add_server(
        server("nova_get_server_error_build_aborted.json"),
        Vec::new(),
    );
    let mut twin = server("nova_get_server_error_on_host.json");
    twin["name"] = json!("twin.prod");
    let mut other_twin = server("nova_get_server_error_no_valid_host.json");
    other_twin["name"] = json!("twin.prod");
    mock.add_server(twin, Vec::new());
    mock.add_server(other_twin, Vec::new());
    let client = mock.client();
    let fleet = healthy_fleet();

    let found = diagnose::diagnose(&client, &fleet, "db-7")
        .await
        .expect("db-7");
    assert_eq!(found.server.id, BUILD_ID);

    let missing = diagnose::diagnose(&client, &fleet, "nope")
        .await
        .expect_err("no server");
    assert!(matches!(missing, DiagnoseError::NotFound(_)), "{missing}");

    let ambiguous = diagnose::diagnose(&client, &fleet, "twin.prod")
        .await
        .expect_err("two servers");
    let message = ambiguous.to_string();
    assert!(
        message.contains("2 servers are named \"twin.prod\""),
        "{message}"
    );
    assert!(
        message.contains(ON_HOST_ID) && message.contains(NO_HOST_ID),
        "{message}"
    );

    let lookups: Vec<_> = mock.with(|cloud| {
        cloud
            .api_requests()
            .into_iter()
            .filter(|request| request.path == "/compute/v2.1/servers/detail")
            .collect()
    });
    assert_eq!(
        lookups[0].query.get("name").map(String::as_str),
        Some("^db-7$")
    );
    assert_eq!(
        lookups[0].query.get("all_tenants").map(String::as_str),
        Some("1")
    );
    assert_eq!(
        lookups[2].query.get("name").map(String::as_str),
        Some("^twin\\.prod$")
    );
}

/// The JSON document's top-level fields and the verdict's shape, which
/// scripts rely on.
#[tokio::test]
async fn json_fields_are_stable() {
    let mock = Mock::start().await;
    mock.add_server(
        server("nova_get_server_error_build_aborted.json"),
        vec![build_action()],
    );
    let diagnosis = run(&mock, &healthy_fleet(), BUILD_ID).await;
    let value = serde_json::to_value(&diagnosis).expect("json");

    let keys: Vec<&str> = value
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        keys,
        [
            "actions",
            "compute_microversion",
            "hosts",
            "image",
            "missing",
            "ports",
            "schema_version",
            "server",
            "verdict",
            "volumes"
        ]
    );
    assert_eq!(value["schema_version"], 1);
    assert_eq!(value["verdict"]["cause"], "network");
    assert_eq!(value["server"]["vm_state"], "error");
    assert_eq!(value["server"]["host"], Value::Null);
    assert_eq!(value["server"]["fault"]["code"], 500);
    assert_eq!(
        value["actions"][0]["events"][0]["host"], "conductor-01.example.net",
        "events oldest first"
    );
    assert_eq!(
        value["actions"][0]["events"][1]["host"],
        "compute-07.example.net"
    );
    assert_eq!(value["hosts"][0]["service"]["state"], "down");
    assert_eq!(value["compute_microversion"], "2.88");
    let text = value.to_string();
    assert!(
        !text.contains("s3cret-password") && !text.contains("token-1"),
        "{text}"
    );
}

#[tokio::test]
async fn text_and_markdown_reports() {
    let mock = Mock::start().await;
    let mut build = server("nova_get_server_error_build_aborted.json");
    set_fault(
        &mut build,
        &format!("Exceeded maximum number of retries. Exhausted all hosts available for retrying build failures for instance {BUILD_ID}."),
        None,
    );
    mock.add_server(
        build,
        vec![rescheduled_action(
            BUILD_ID,
            &["compute-06.example.net", "compute-07.example.net"],
            "Binding failed for port f5b0ff05; please check: neutron logs #1 <b>%%{init}%%</b>",
        )],
    );
    let diagnosis = run(&mock, &healthy_fleet(), BUILD_ID).await;
    assert_eq!(diagnosis.verdict.cause, Cause::Network);

    let report = text::render(&diagnosis);
    assert!(report.contains("Verdict: network"), "{report}");
    assert!(
        report.contains("compute__do_build_and_run_instance on compute-06.example.net: Error"),
        "{report}"
    );
    assert!(!report.contains("s3cret-password"));

    let document = markdown::render(&diagnosis);
    assert!(document.contains("**Likely cause: network**"), "{document}");
    let blocks = mermaid_blocks(&document);
    assert_eq!(blocks.len(), 2, "{document}");
    assert!(blocks[0].starts_with("gantt\n"), "{}", blocks[0]);
    assert!(
        blocks[0].contains(":crit, t2, 2026-11-30 08:57:04, 2026-11-30 08:57:40"),
        "{}",
        blocks[0]
    );
    assert!(blocks[1].starts_with("sequenceDiagram\n"), "{}", blocks[1]);
    assert!(
        blocks[1].contains("participant C1 as compute-07.example.net"),
        "{}",
        blocks[1]
    );
    for block in &blocks {
        assert!(!block.contains("%%{"), "unescaped directive in {block}");
        assert!(
            !block.contains('#') && !block.contains(';') && !block.contains('<'),
            "{block}"
        );
        // Only the arrow's colon, or the Gantt task's, may appear per line.
        for line in block
            .lines()
            .filter(|line| line.contains("->>") || line.contains("--x"))
        {
            assert_eq!(line.matches(':').count(), 1, "{line}");
        }
    }
    assert!(
        document.contains("&lt;b&gt;"),
        "HTML in details is escaped: {document}"
    );

    write_sample_report(&document);
}

/// Saves a Markdown report under target/ for `scripts/check-mermaid.sh`,
/// which renders its Mermaid blocks in a headless browser.
fn write_sample_report(document: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/diagnose-report");
    std::fs::create_dir_all(&dir).expect("report dir");
    std::fs::write(dir.join("report.md"), document).expect("write report");
}

fn mermaid_blocks(document: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in document.lines() {
        match (&mut current, line) {
            (None, "```mermaid") => current = Some(String::new()),
            (Some(block), "```") => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(block), line) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

#[tokio::test]
async fn all_groups_by_cause_and_filters_host() {
    let mock = Mock::start().await;
    mock.add_server(
        server("nova_get_server_error_build_aborted.json"),
        vec![build_action()],
    );
    mock.add_server(server("nova_get_server_error_on_host.json"), Vec::new());
    let mut configuration = server("nova_get_server_error_on_host.json");
    configuration["id"] = json!("9d1b7c38-1a2b-4c3d-8e4f-5a6b7c8d9e0f");
    configuration["name"] = json!("app-4");
    configuration["OS-EXT-SRV-ATTR:host"] = json!("compute-06.example.net");
    set_fault(
        &mut configuration,
        "Requested CPU control policy not supported by host",
        None,
    );
    mock.add_server(configuration, Vec::new());
    let mut active = server("nova_get_server_error_no_valid_host.json");
    active["status"] = json!("ACTIVE");
    mock.add_server(active, Vec::new());
    mock.with(|cloud| cloud.page_size = 2);
    let client = mock.client();
    let fleet = healthy_fleet();

    let summary = all::diagnose_all(&client, &fleet, None, false)
        .await
        .expect("summary");
    assert_eq!(summary.total, 3);
    let counts: Vec<(Cause, usize)> = summary
        .groups
        .iter()
        .map(|group| (group.cause, group.count))
        .collect();
    assert_eq!(
        counts,
        [
            (Cause::Network, 1),
            (Cause::Hypervisor, 1),
            (Cause::Configuration, 1)
        ]
    );

    let on_07 = all::diagnose_all(&client, &fleet, Some("compute-07"), false)
        .await
        .expect("summary");
    assert_eq!(on_07.total, 2, "the failed build on compute-07 counts too");
    let text = all::render_text(&on_07);
    assert!(
        text.starts_with("2 instances in ERROR involving compute-07"),
        "{text}"
    );
    let markdown = all::render_markdown(&summary);
    assert!(markdown.contains("| network | 1 |"), "{markdown}");
}

/// Adds a build that failed on compute-07 and found no other host. The
/// conductor's "No valid host was found." ends it, with `reason` after the
/// message (empty when Placement returned no allocation candidates).
fn no_valid_host_after_reschedule(mock: &Mock, reason: &str) {
    let message = format!("No valid host was found. {reason}");
    let mut build = server("nova_get_server_error_no_valid_host.json");
    set_fault(
        &mut build,
        &message,
        Some(&format!(
            "Traceback (most recent call last):\n  ... (trimmed) ...\nnova.exception_Remote.NoValidHost_Remote: {message}\n"
        )),
    );
    let mut action = rescheduled_action(
        NO_HOST_ID,
        &["compute-07.example.net"],
        "Build of instance was re-scheduled",
    );
    action["events"]
        .as_array_mut()
        .expect("events")
        .push(json!({
            "event": "conductor_schedule_and_build_instances",
            "start_time": "2026-11-30T08:57:41.000000",
            "finish_time": "2026-11-30T08:57:42.000000",
            "result": "Error",
            "host": "conductor-01.example.net",
            "details": message,
            "traceback": null
        }));
    mock.add_server(build, vec![action]);
    mock.with(|cloud| {
        cloud
            .images
            .insert(IMAGE_ID.into(), fixture("glance_get_v2_image.json"))
    });
}

/// Serves the Placement usage sample for compute-07: MEMORY_MB is full.
fn exhaust_compute_07_memory(mock: &Mock) {
    mock.with(|cloud| {
        cloud.usages.insert(
            openstack_mock::SAMPLE_PROVIDER_UUID.into(),
            fixture("placement_get_resource_provider_usages.json")["usages"].clone(),
        )
    });
}

#[tokio::test]
async fn exhausted_placement_capacity_decides_no_valid_host() {
    let mock = Mock::start().await;
    no_valid_host_after_reschedule(&mock, "");

    let with_room = run(&mock, &healthy_fleet(), NO_HOST_ID).await;
    assert_eq!(
        with_room.verdict.cause,
        Cause::Scheduling,
        "{:#?}",
        with_room.verdict.findings
    );
    let placement = with_room.hosts[0]
        .placement
        .as_ref()
        .expect("compute-07's capacity");
    assert!(placement.shortfalls.is_empty(), "{placement:?}");

    exhaust_compute_07_memory(&mock);
    let diagnosis = run(&mock, &healthy_fleet(), NO_HOST_ID).await;

    assert_eq!(
        diagnosis.verdict.cause,
        Cause::HostResources,
        "{:#?}",
        diagnosis.verdict.findings
    );
    assert_evidence(
        &diagnosis,
        "Placement now, compute-07.example.net: MEMORY_MB has 0 free of 376832 (376832 used), the flavor needs 4096",
    );
    assert_evidence(
        &diagnosis,
        "has no reason, which Nova reports when Placement returns no allocation candidates",
    );
    assert_evidence(
        &diagnosis,
        "Placement now, compute-07.example.net: DISK_GB 1407 of 1787 free, MEMORY_MB 0 of 376832 free, \
         VCPU 164 of 256 free; the flavor needs DISK_GB 20, MEMORY_MB 4096, VCPU 2",
    );
    let placement = diagnosis.hosts[0].placement.as_ref().expect("capacity");
    assert_eq!(
        placement.provider_uuid,
        openstack_mock::SAMPLE_PROVIDER_UUID
    );
    assert_eq!(placement.name_source, "host");

    let requests = mock.with(|cloud| cloud.api_requests());
    let placement_requests: Vec<_> = requests
        .iter()
        .filter(|request| request.path.starts_with("/placement/"))
        .collect();
    let listing = placement_requests
        .iter()
        .find(|request| request.path == "/placement/resource_providers")
        .expect("provider listing");
    assert_eq!(
        listing.query_pairs,
        [("name".to_string(), "compute-07.example.net".to_string())]
    );
    for suffix in ["inventories", "usages"] {
        let path = format!(
            "/placement/resource_providers/{}/{suffix}",
            openstack_mock::SAMPLE_PROVIDER_UUID
        );
        assert!(
            placement_requests
                .iter()
                .any(|request| request.path == path),
            "no GET {path} in {placement_requests:#?}"
        );
    }
    let issued = mock.with(|cloud| cloud.issued.clone());
    for request in &placement_requests {
        assert_eq!(request.method, "GET");
        let token = request.token.as_ref().expect("a token");
        assert!(issued.contains(token), "{request:?} not in {issued:?}");
        assert_eq!(
            request.microversion.as_deref(),
            Some("placement 1.23"),
            "{request:?}"
        );
        assert_eq!(request.accept.as_deref(), Some("application/json"));
    }
    assert!(
        !requests
            .iter()
            .any(|request| request.path.contains("os-hypervisors")),
        "the provider was found by the host's name"
    );

    let report = text::render(&diagnosis);
    assert!(
        report.contains(&format!(
            "Placement: provider compute-07.example.net ({}), found by the host's name",
            openstack_mock::SAMPLE_PROVIDER_UUID
        )),
        "{report}"
    );
    assert!(
        report.contains("MEMORY_MB        376832     376832          0         4096     385024"),
        "{report}"
    );
    let document = markdown::render(&diagnosis);
    assert!(document.contains("## Placement capacity"), "{document}");
    assert!(
        document.contains("| MEMORY_MB | 376832 | 376832 | 0 | 4096 | 385024 |"),
        "{document}"
    );
    assert!(
        document.contains("| VCPU | 256 | 92 | 164 | 2 | 64 |"),
        "{document}"
    );
    let json = serde_json::to_value(&diagnosis).expect("json");
    let classes = &json["hosts"][0]["placement"]["classes"];
    assert_eq!(classes[1]["resource_class"], "MEMORY_MB");
    assert_eq!(classes[1]["capacity"], 376832);
    assert_eq!(classes[1]["free"], 0);
    assert_eq!(classes[1]["requested"], 4096);
    assert_eq!(classes[2]["allocation_ratio"], 4.0);
}

#[tokio::test]
async fn filtered_no_valid_host_stays_scheduling() {
    let mock = Mock::start().await;
    no_valid_host_after_reschedule(&mock, "There are not enough hosts available.");
    exhaust_compute_07_memory(&mock);

    let diagnosis = run(&mock, &healthy_fleet(), NO_HOST_ID).await;

    assert_eq!(
        diagnosis.verdict.cause,
        Cause::Scheduling,
        "{:#?}",
        diagnosis.verdict.findings
    );
    let capacity_findings: Vec<_> = diagnosis
        .verdict
        .findings
        .iter()
        .filter(|finding| finding.cause == Cause::HostResources)
        .collect();
    assert_eq!(capacity_findings.len(), 1, "{capacity_findings:#?}");
    assert_eq!(
        capacity_findings[0].weight, 1,
        "Nova's filters, not Placement, removed the hosts"
    );
    assert_evidence(
        &diagnosis,
        "Placement now, compute-07.example.net: DISK_GB 1407 of 1787 free",
    );
}

#[tokio::test]
async fn provider_names_differ_from_hosts() {
    let mock = Mock::start().await;
    mock.add_node(
        "compute-04",
        "compute-04.example.net",
        "44444444-4444-4444-8444-444444444444",
    );
    mock.add_node(
        "compute-05",
        "compute-05.example.net",
        "55555555-5555-4555-8555-555555555555",
    );
    let mut on_host = server("nova_get_server_error_on_host.json");
    on_host["OS-EXT-SRV-ATTR:host"] = json!("compute-04");
    on_host["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!("compute-04.example.net");
    on_host["os-extended-volumes:volumes_attached"] = json!([]);
    let action = rescheduled_action(
        ON_HOST_ID,
        &["compute-05", "compute-09.example.net"],
        "Build of instance was re-scheduled",
    );
    mock.add_server(on_host, vec![action]);

    let diagnosis = run(&mock, &healthy_fleet(), ON_HOST_ID).await;

    let host = |name: &str| {
        diagnosis
            .hosts
            .iter()
            .find(|host| host.host == name)
            .unwrap_or_else(|| panic!("{name} not involved: {:#?}", diagnosis.hosts))
    };
    let by_server = host("compute-04").placement.as_ref().expect("compute-04");
    assert_eq!(by_server.provider_name, "compute-04.example.net");
    assert_eq!(by_server.name_source, "hypervisor_hostname");
    let by_hypervisor = host("compute-05").placement.as_ref().expect("compute-05");
    assert_eq!(by_hypervisor.provider_name, "compute-05.example.net");
    assert_eq!(
        by_hypervisor.provider_uuid,
        "55555555-5555-4555-8555-555555555555"
    );
    assert_eq!(by_hypervisor.name_source, "os-hypervisors");
    assert!(host("compute-09.example.net").placement.is_none());
    let missing = diagnosis
        .missing
        .iter()
        .find(|part| part.part == "placement compute-09.example.net")
        .expect("compute-09 has no provider");
    assert!(
        missing
            .reason
            .contains("no resource provider is named compute-09.example.net, and os-hypervisors lists no compute node"),
        "{}",
        missing.reason
    );

    let requests = mock.with(|cloud| cloud.api_requests());
    let names: Vec<&str> = requests
        .iter()
        .filter(|request| request.path == "/placement/resource_providers")
        .filter_map(|request| request.query.get("name").map(String::as_str))
        .collect();
    for name in [
        "compute-04.example.net",
        "compute-05",
        "compute-05.example.net",
        "compute-09.example.net",
    ] {
        assert!(names.contains(&name), "no lookup of {name}: {names:?}");
    }
    assert!(
        !names.contains(&"compute-04"),
        "the server's hypervisor_hostname is used as is: {names:?}"
    );
    let patterns: Vec<&str> = requests
        .iter()
        .filter(|request| request.path == "/compute/v2.1/os-hypervisors/detail")
        .filter_map(|request| {
            request
                .query
                .get("hypervisor_hostname_pattern")
                .map(String::as_str)
        })
        .collect();
    assert_eq!(patterns.len(), 2, "{patterns:?}");
    assert!(patterns.contains(&"compute-05"), "{patterns:?}");
    assert!(patterns.contains(&"compute-09.example.net"), "{patterns:?}");
}

#[tokio::test]
async fn placement_failures_leave_partial_report() {
    struct Case {
        name: &'static str,
        setup: fn(&mut openstack_mock::Cloud),
        part: &'static str,
        reason: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "no catalog entry",
            setup: |cloud| cloud.catalog_without.push("placement".into()),
            part: "placement",
            reason: &["no Placement endpoint", "placement_endpoint_override"],
        },
        Case {
            name: "forbidden",
            setup: |cloud| cloud.forbidden.push("/placement/".into()),
            part: "placement compute-07.example.net",
            reason: &[
                "Placement returned HTTP 403",
                "Policy does not allow",
                "run diagnose with admin credentials",
            ],
        },
        Case {
            name: "provider gone",
            setup: |cloud| {
                cloud.usages.remove(openstack_mock::SAMPLE_PROVIDER_UUID);
            },
            part: "placement compute-07.example.net",
            reason: &[
                "Placement returned HTTP 404",
                "No resource provider with uuid",
                "run diagnose again",
            ],
        },
        Case {
            name: "timeout",
            setup: |cloud| cloud.hanging.push("/placement/".into()),
            part: "placement compute-07.example.net",
            reason: &[
                "Placement did not answer GET /placement/resource_providers within 1 s",
                "--timeout",
            ],
        },
        Case {
            name: "unavailable",
            setup: |cloud| cloud.failing.push("/placement/".into()),
            part: "placement compute-07.example.net",
            reason: &["Placement returned HTTP 503", "placement-api service"],
        },
    ];
    for case in cases {
        let mock = Mock::start().await;
        mock.add_server(
            server("nova_get_server_error_build_aborted.json"),
            vec![build_action()],
        );
        mock.with(case.setup);
        let cloud = novamedic::openstack::config::load(
            &mock.environment(),
            &Default::default(),
            &Default::default(),
        )
        .expect("config");
        let client =
            novamedic::openstack::Client::new(cloud, Some(std::time::Duration::from_secs(1)))
                .expect("client");

        let diagnosis = diagnose::diagnose(&client, &healthy_fleet(), BUILD_ID)
            .await
            .unwrap_or_else(|err| panic!("{}: {err}", case.name));

        let part = diagnosis
            .missing
            .iter()
            .find(|part| part.part == case.part)
            .unwrap_or_else(|| {
                panic!(
                    "{}: {} not missing: {:#?}",
                    case.name, case.part, diagnosis.missing
                )
            });
        for needle in case.reason {
            assert!(
                part.reason.contains(needle),
                "{}: {needle:?} not in {:?}",
                case.name,
                part.reason
            );
        }
        assert!(diagnosis.hosts[0].placement.is_none(), "{}", case.name);
        assert_eq!(
            diagnosis.verdict.cause,
            Cause::Network,
            "{}: the rest still counts",
            case.name
        );
        let report = text::render(&diagnosis);
        assert!(
            report.contains(&format!("Not checked: {}: ", case.part)),
            "{}: {report}",
            case.name
        );
    }
}

#[tokio::test]
async fn overridden_placement_endpoint_must_be_root() {
    let mock = Mock::start().await;
    mock.add_server(
        server("nova_get_server_error_build_aborted.json"),
        vec![build_action()],
    );
    let overrides = novamedic::openstack::config::Overrides {
        cloud: None,
        values: [(
            "placement_endpoint_override".to_string(),
            format!("{}/placement/v1", mock.base),
        )]
        .into_iter()
        .collect(),
        ..Default::default()
    };
    let cloud =
        novamedic::openstack::config::load(&mock.environment(), &Default::default(), &overrides)
            .expect("config");
    let client = novamedic::openstack::Client::new(cloud, None).expect("client");

    let diagnosis = diagnose::diagnose(&client, &healthy_fleet(), BUILD_ID)
        .await
        .expect("diagnosis");

    let part = diagnosis
        .missing
        .iter()
        .find(|part| part.part == "placement compute-07.example.net")
        .expect("placement missing");
    assert!(
        part.reason
            .contains("HTTP 404 for GET /placement/v1/resource_providers"),
        "{}",
        part.reason
    );
    assert!(
        part.reason.contains("must be Placement's root URL"),
        "{}",
        part.reason
    );
}
