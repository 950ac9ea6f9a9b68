//! nova-api with `auth_strategy = noauth2` beside the real nova-compute:
//! Debian 12's nova-api, nova-scheduler and Glance join the stack of
//! real_nova.rs, and a server really fails to build there.
//!
//! Needs what real_nova.rs needs. The API units start only here, so the
//! other real-nova tests boot no slower.

use novamedic_tests::nova::{boot_nova_node, require_nova_env};
use novamedic_tests::nova_api::{NovaApi, GLANCE_API_URL, MICROVERSION};

/// The Neutron stand-in's address inside the node, shared with the host.
const NEUTRON_URL: &str = "http://127.0.0.1:9696";
use novamedic_tests::slice::Controller;

/// nova's `host` in the test config, the name the compute events carry.
const NOVA_HOST: &str = "novamedic-test-compute";

#[test]
fn oversized_server_fails_with_fault() {
    let Some((env, rootfs)) = require_nova_env() else {
        return;
    };
    let controller = Controller::start(&env).expect("controller starts");
    // The container, and so the agent's node, is named like nova's host,
    // so `diagnose` finds the agent of the host its events name.
    let node = boot_nova_node(&env, &rootfs, NOVA_HOST, &controller)
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

    // A server that reaches nova-compute and fails there: `diagnose` asks
    // the node's agent, through the controller, for nova-compute's records
    // of the server, and quotes them.
    let id = api
        .boot_server_failing_on_compute()
        .unwrap_or_else(|err| fail(format!("{err:#}")));
    let diagnosis = diagnose(&controller, &api, &id).unwrap_or_else(|err| fail(format!("{err:#}")));
    let host = diagnosis["hosts"]
        .as_array()
        .and_then(|hosts| hosts.iter().find(|h| h["host"] == NOVA_HOST))
        .unwrap_or_else(|| fail(format!("{NOVA_HOST} is not among the hosts: {diagnosis}")));
    let logs = &host["logs"];
    let records = logs["records"].as_array().cloned().unwrap_or_default();
    assert!(!records.is_empty(), "no host log records: {diagnosis}");
    let create = diagnosis["actions"]
        .as_array()
        .and_then(|actions| actions.iter().find(|a| a["action"] == "create"))
        .unwrap_or_else(|| fail(format!("no create action: {diagnosis}")));
    let request_id = create["request_id"].as_str().unwrap_or_default();
    assert!(
        records.iter().all(|r| r["text"]
            .as_str()
            .is_some_and(|t| { t.contains(id.as_str()) || t.contains(request_id) })),
        "every record names the server or its request: {logs}"
    );
    assert!(
        records.iter().any(|r| r["level"] == "ERROR"
            && r["text"]
                .as_str()
                .is_some_and(|t| t.contains("FakeBuildAbortDriver"))),
        "nova-compute's error record of the aborted spawn is quoted: {logs}"
    );
    assert!(
        !diagnosis["missing"]
            .to_string()
            .contains(&format!("logs {NOVA_HOST}")),
        "{diagnosis}"
    );
    assert!(
        logs["files_searched"]
            .to_string()
            .contains("nova-compute.log"),
        "{logs}"
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

/// Runs `novamedic diagnose ID -o json` against the node's nova-api,
/// Glance and the Neutron stand-in with the admin's noauth2 token.
fn diagnose(controller: &Controller, api: &NovaApi, id: &str) -> anyhow::Result<serde_json::Value> {
    controller.cli_json(&[
        "diagnose",
        id,
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
