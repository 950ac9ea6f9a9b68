//! nova-api with `auth_strategy = noauth2` beside the real nova-compute:
//! Debian 12's nova-api, nova-scheduler and Glance join the stack of
//! real_nova.rs, and a server really fails to build there.
//!
//! Needs what real_nova.rs needs. The API units start only here, so the
//! other real-nova tests boot no slower.

use std::time::Duration;

use serde_json::Value;

use novamedic_tests::nova::{boot_nova_node, require_nova_env, NOVA_COMPUTE_LOG, NOVA_HOST};
use novamedic_tests::nova_api::{NovaApi, GLANCE_API_URL, MICROVERSION};
use novamedic_tests::slice::Controller;

/// The Neutron stand-in's address inside the node, shared with the host.
const NEUTRON_URL: &str = "http://127.0.0.1:9696";

/// noauth2 project of the server that fails on nova-compute. The oversized
/// server in ERROR still counts against the admin project's RAM quota,
/// and without Keystone the test can neither delete it (the Neutron
/// client has no credentials) nor lift the quota.
const SPAWN_PROJECT: &str = "novamedic-spawn";

/// Time for the restarted agent to connect under its new name.
const AGENT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `novamedic diagnose SERVER -o json` with `api`'s token against the
/// compute API, Glance and the Neutron stand-in inside the node.
fn diagnose(controller: &Controller, api: &NovaApi, server: &str) -> anyhow::Result<Value> {
    controller.cli_json(&[
        "diagnose",
        server,
        "--os-auth-type",
        "token",
        "--os-token",
        api.token(),
        "--os-endpoint",
        &format!("compute={}/v2.1", api.base_url()),
        "--os-endpoint",
        &format!("image={GLANCE_API_URL}"),
        "--os-endpoint",
        &format!("network={NEUTRON_URL}"),
    ])
}

#[test]
fn oversized_server_fails_with_fault() {
    let Some((env, rootfs)) = require_nova_env() else {
        return;
    };
    let mut controller = Controller::start(&env).expect("controller starts");
    let node = boot_nova_node(&env, &rootfs, "realnova-api", &controller)
        .unwrap_or_else(|err| panic!("nova node boots: {err:#}"));
    let api = NovaApi::start(&node).unwrap_or_else(|err| panic!("nova-api starts: {err:#}"));
    let fail = |message: String| -> ! { panic!("{message}\n{}", api.diagnostics()) };

    // The version document names v2.1 and its microversions.
    let root = api
        .request_ok("GET", "/", None, 200)
        .unwrap_or_else(|err| fail(format!("{err:#}")));
    let versions = root["versions"].as_array().cloned().unwrap_or_default();
    let current = versions
        .iter()
        .find(|v| v["id"] == "v2.1")
        .unwrap_or_else(|| fail(format!("no v2.1 in {root}")));
    assert_eq!(current["status"], "CURRENT", "{root}");
    let max_version = current["version"].as_str().unwrap_or_default();
    let minor = |v: &str| v.split_once('.').and_then(|(_, m)| m.parse::<u32>().ok());
    assert!(
        minor(max_version) >= minor(MICROVERSION),
        "nova-api supports up to {max_version:?}, the tests use {MICROVERSION}"
    );

    // os-services lists the real nova-compute, enabled and up.
    let compute = api
        .service("nova-compute")
        .unwrap_or_else(|err| fail(format!("{err:#}")))
        .unwrap_or_else(|| fail("os-services lists no nova-compute".into()));
    assert_eq!(compute["host"], "novamedic-test-compute", "{compute}");
    assert_eq!(compute["status"], "enabled", "{compute}");
    assert_eq!(compute["state"], "up", "{compute}");

    // A server whose flavor fits no host ends in ERROR with the
    // scheduler's fault.
    let id = api
        .boot_failed_server()
        .unwrap_or_else(|err| fail(format!("{err:#}")));
    let server = api
        .server(&id)
        .unwrap_or_else(|err| fail(format!("{err:#}")));
    assert_eq!(server["status"], "ERROR", "{server}");
    let fault = &server["fault"];
    let message = fault["message"].as_str().unwrap_or_default();
    assert!(message.contains("No valid host was found"), "{server}");
    assert_eq!(fault["code"], 500, "{server}");
    // The details (where the failure happened) are shown to admins only.
    assert!(fault["details"].is_string(), "{server}");

    // The create action lists the conductor's failed event.
    let actions = api
        .request_ok(
            "GET",
            &format!("/v2.1/servers/{id}/os-instance-actions"),
            None,
            200,
        )
        .unwrap_or_else(|err| fail(format!("{err:#}")));
    let actions = actions["instanceActions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let create = actions
        .iter()
        .find(|a| a["action"] == "create")
        .unwrap_or_else(|| fail(format!("no create action in {actions:?}")));
    let request_id = create["request_id"].as_str().unwrap_or_default();
    let action = api
        .request_ok(
            "GET",
            &format!("/v2.1/servers/{id}/os-instance-actions/{request_id}"),
            None,
            200,
        )
        .unwrap_or_else(|err| fail(format!("{err:#}")));
    let events = action["instanceAction"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let failed = events
        .iter()
        .find(|e| e["result"] == "Error")
        .unwrap_or_else(|| fail(format!("no failed event in {action}")));
    assert_eq!(
        failed["event"], "conductor_schedule_and_build_instances",
        "{action}"
    );
    eprintln!("server {id} failed as expected: {message}");

    // `novamedic diagnose` reads the same server from the real nova-api and
    // names scheduling as the cause. The failed event names no compute host,
    // because the scheduler found none.
    let diagnosis = diagnose(&controller, &api, &id).unwrap_or_else(|err| fail(format!("{err:#}")));
    assert_eq!(diagnosis["server"]["id"], id.as_str(), "{diagnosis}");
    assert_eq!(diagnosis["server"]["status"], "ERROR", "{diagnosis}");
    assert_eq!(diagnosis["verdict"]["cause"], "scheduling", "{diagnosis}");
    let evidence = diagnosis["verdict"]["evidence"].to_string();
    assert!(evidence.contains("No valid host"), "{diagnosis}");
    assert!(
        !diagnosis.to_string().contains(api.token()),
        "the token leaked into the report: {diagnosis}"
    );
    // The controller polls the same os-services and shows the node's
    // service as up and enabled. Nova's host name differs from the node's,
    // so [openstack.host_names] maps it.
    let clouds = controller.dir().join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  realnova:\n    auth_type: token\n    auth:\n      token: \"{}\"\n    \
             compute_endpoint_override: {}/v2.1\n",
            api.token(),
            api.base_url()
        ),
    )
    .expect("write clouds.yaml");
    let nova_host = compute["host"].as_str().unwrap_or_default().to_string();
    controller
        .restart_with_config(&format!(
            "\n[openstack]\ncloud = \"realnova\"\nclouds_file = \"{}\"\npoll_interval_seconds = 5\n\
             request_timeout_seconds = 4\n\n[openstack.host_names]\n\"{nova_host}\" = \"{}\"\n",
            clouds.display(),
            node.name()
        ))
        .unwrap_or_else(|err| fail(format!("{err:#}")));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let nova = loop {
        let nova = controller
            .node(node.name())
            .ok()
            .flatten()
            .map(|status| status["nova"].clone())
            .unwrap_or_default();
        if nova["service"]["state"] == "up" || std::time::Instant::now() > deadline {
            break nova;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    };
    assert_eq!(
        nova["service"]["state"],
        "up",
        "{nova}\n{}",
        controller.log()
    );
    assert_eq!(nova["service"]["status"], "enabled", "{nova}");
    assert_eq!(nova["service"]["host"], nova_host.as_str(), "{nova}");
    assert_eq!(
        nova["source"]["services_error"],
        serde_json::Value::Null,
        "{nova}"
    );
    assert_eq!(
        nova["source"]["servers_error"],
        serde_json::Value::Null,
        "{nova}"
    );

    // `diagnose` reads the fleet data and requests the log search of the
    // node named like the host in Nova's events, or like its short name,
    // and does not apply [openstack.host_names]. So the agent now reports
    // under nova's `host`.
    node.restart_agent_as(&env, NOVA_HOST, &controller)
        .unwrap_or_else(|err| fail(format!("{err:#}")));
    controller
        .wait_for_node(NOVA_HOST, AGENT_CONNECT_TIMEOUT, "connected", |view| {
            view["connected"] == true
        })
        .unwrap_or_else(|err| fail(format!("{err:#}\n{}", controller.log())));

    // A server in a project of its own reaches nova-compute and fails
    // there. `diagnose` has the node's agent search nova-compute's log for
    // it through the controller, and quotes the records.
    let spawn_api = api.in_project(SPAWN_PROJECT);
    let id = spawn_api
        .boot_server_failing_on_compute()
        .unwrap_or_else(|err| fail(format!("{err:#}")));
    let diagnosis = diagnose(&controller, &api, &id).unwrap_or_else(|err| fail(format!("{err:#}")));
    assert_eq!(diagnosis["server"]["id"], id.as_str(), "{diagnosis}");
    assert_eq!(
        diagnosis["server"]["tenant_id"], SPAWN_PROJECT,
        "{diagnosis}"
    );
    assert_eq!(diagnosis["server"]["status"], "ERROR", "{diagnosis}");
    let create = diagnosis["actions"]
        .as_array()
        .and_then(|actions| actions.iter().find(|a| a["action"] == "create"))
        .unwrap_or_else(|| fail(format!("no create action: {diagnosis}")));
    let request_id = create["request_id"].as_str().unwrap_or_default();
    assert!(request_id.starts_with("req-"), "{create}");

    // The host of the compute event was checked, and its agent searched
    // nova-compute's log.
    let host = diagnosis["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == NOVA_HOST))
        .unwrap_or_else(|| fail(format!("{NOVA_HOST} is not among the hosts: {diagnosis}")));
    assert!(host["roles"].to_string().contains("event"), "{host}");
    assert_eq!(host["fleet"]["node"], NOVA_HOST, "{host}");
    let logs = &host["logs"];
    assert_eq!(logs["node"], NOVA_HOST, "{host}");
    assert_eq!(logs["problem"], Value::Null, "{logs}");
    assert!(
        logs["files_searched"]
            .to_string()
            .contains(NOVA_COMPUTE_LOG),
        "{logs}"
    );
    let missing = diagnosis["missing"].to_string();
    assert!(!missing.contains(NOVA_HOST), "{missing}");

    // Every record names the server or its request. nova-compute logs the
    // aborted spawn as "Instance failed to spawn" with the traceback, and
    // the agent classifies that record.
    let records = logs["records"].as_array().cloned().unwrap_or_default();
    assert!(!records.is_empty(), "no host log records: {logs}");
    let text_of = |record: &Value| record["text"].as_str().unwrap_or_default().to_string();
    for record in &records {
        let text = text_of(record);
        assert!(
            text.contains(id.as_str()) || text.contains(request_id),
            "record names neither {id} nor {request_id}: {record}"
        );
    }
    let spawn = records
        .iter()
        .find(|r| r["signature_id"] == "instance-spawn-failed")
        .unwrap_or_else(|| fail(format!("no classified record of the spawn: {logs}")));
    assert_eq!(spawn["level"], "ERROR", "{spawn}");
    assert_eq!(spawn["fault_kind"], "instance_spawn", "{spawn}");
    assert_eq!(spawn["request_id"], request_id, "{spawn}");
    assert!(text_of(spawn).contains(id.as_str()), "{spawn}");
    assert!(text_of(spawn).contains("FakeBuildAbortDriver"), "{spawn}");

    // The verdict follows the classified record and quotes it.
    let verdict = &diagnosis["verdict"];
    assert_eq!(verdict["cause"], "hypervisor", "{verdict}");
    let evidence = verdict["evidence"].as_array().cloned().unwrap_or_default();
    let quoted =
        format!("nova-compute on {NOVA_HOST} logged instance-spawn-failed (instance_spawn)");
    assert!(
        evidence.iter().any(|line| {
            let line = line.as_str().unwrap_or_default();
            line.starts_with(&quoted) && line.contains("FakeBuildAbortDriver")
        }),
        "the verdict quotes no host record: {verdict}"
    );
    assert!(
        !diagnosis.to_string().contains(api.token()),
        "the token leaked into the report: {diagnosis}"
    );

    // Memory of the stack with the API units, for the test environment's notes.
    if let Ok(ps) = node
        .container
        .exec_ok(&["ps", "-eo", "rss,args", "--sort=-rss"])
    {
        eprintln!("{}", ps.lines().take(12).collect::<Vec<_>>().join("\n"));
    }
}
