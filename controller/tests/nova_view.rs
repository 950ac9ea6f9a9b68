//! Nova's view of the fleet against a fake cloud on 127.0.0.1: the poller's
//! requests, mapping and errors, the policy decisions it feeds through a
//! real controller, the service disable on escalation, and the CLI output.

mod common;
mod openstack_mock;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::{eventually, report, FakeAgent, TestServer};
use novamedic::clock::now_unix_ms;
use novamedic::config::OpenStackSettings;
use novamedic::nova_view::NovaWatch;
use novamedic::openstack::config::{self, Overrides, SearchPaths};
use novamedic::openstack::Client;
use novamedic::policy::{rules, Policy};
use novamedic_proto::v1;
use openstack_mock::Mock;
use serde_json::{json, Value};

/// Nova's `updated_at` for `seconds` ago: UTC without a zone.
fn nova_time(seconds_ago: i64) -> String {
    let at = time::OffsetDateTime::now_utc() - time::Duration::seconds(seconds_ago);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.000000",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

/// Sets the sample services' heartbeats relative to now: compute-07 is down
/// for five minutes, the others reported five seconds ago.
fn fresh_services(mock: &Mock) {
    mock.with(|cloud| {
        for service in &mut cloud.services {
            let down = service["host"] == json!("compute-07.example.net");
            service["updated_at"] = json!(nova_time(if down { 300 } else { 5 }));
        }
    });
}

fn set_service(mock: &Mock, host: &str, change: impl FnOnce(&mut Value)) {
    mock.with(|cloud| {
        let service = cloud
            .services
            .iter_mut()
            .find(|service| service["host"] == json!(host))
            .expect("a sample service");
        change(service);
    });
}

fn busy_server(id: &str, host: &str, task_state: Option<&str>) -> Value {
    json!({
        "id": id,
        "name": format!("vm-{id}"),
        "status": "BUILD",
        "OS-EXT-SRV-ATTR:host": host,
        "OS-EXT-STS:task_state": task_state,
    })
}

fn settings() -> OpenStackSettings {
    OpenStackSettings {
        poll_interval: Duration::from_secs(5),
        request_timeout: Duration::from_secs(2),
        ..OpenStackSettings::default()
    }
}

fn client_with_timeout(mock: &Mock, environment_change: &[(&str, &str)]) -> Client {
    let mut environment = mock.environment();
    for (name, value) in environment_change {
        environment.insert(name.to_string(), value.to_string());
    }
    let cloud = config::load(&environment, &SearchPaths::default(), &Overrides::default())
        .expect("the environment makes a cloud");
    Client::new(cloud, Some(Duration::from_secs(1))).expect("client")
}

#[tokio::test]
async fn poll_requests_and_mapping() {
    let mock = Mock::start().await;
    fresh_services(&mock);
    mock.add_server(
        busy_server("a1", "compute-08.example.net", Some("spawning")),
        vec![],
    );
    mock.add_server(
        busy_server("a2", "compute-08.example.net", Some("migrating")),
        vec![],
    );
    mock.add_server(busy_server("a3", "compute-06.example.net", None), vec![]);
    mock.add_server(
        busy_server("a4", "compute-06.example.net", Some("scheduling")),
        vec![],
    );
    mock.with(|cloud| cloud.page_size = 1);
    let watch = NovaWatch::new(mock.client(), settings());

    watch.poll_once().await;

    let requests = mock.with(|cloud| cloud.api_requests());
    let services = requests
        .iter()
        .find(|request| request.path == "/compute/v2.1/os-services")
        .expect("an os-services request");
    assert_eq!(services.token.as_deref(), Some("token-1"));
    assert_eq!(services.microversion.as_deref(), Some("compute 2.88"));
    assert_eq!(
        services.query_pairs,
        vec![("binary".to_string(), "nova-compute".to_string())],
        "one request for the whole fleet, no host filter"
    );
    let servers: Vec<_> = requests
        .iter()
        .filter(|request| request.path == "/compute/v2.1/servers/detail")
        .collect();
    assert_eq!(servers.len(), 2, "two busy servers, one per page");
    let second_states = servers[1]
        .query_pairs
        .iter()
        .filter(|(key, _)| key == "task_state")
        .count();
    assert_eq!(
        second_states,
        novamedic::nova_view::poll::BUSY_TASK_STATES.len(),
        "the next page keeps the filter"
    );
    assert_eq!(
        servers[1].query.get("marker").map(String::as_str),
        Some("a1")
    );
    let first = servers[0];
    assert_eq!(
        first.query.get("all_tenants").map(String::as_str),
        Some("1")
    );
    let task_states: Vec<&str> = first
        .query_pairs
        .iter()
        .filter(|(key, _)| key == "task_state")
        .map(|(_, value)| value.as_str())
        .collect();
    for state in [
        "spawning",
        "migrating",
        "resize_migrating",
        "image_snapshot",
    ] {
        assert!(
            task_states.contains(&state),
            "{state} not asked for: {task_states:?}"
        );
    }
    assert!(!task_states.contains(&"scheduling"), "{task_states:?}");
    assert_eq!(first.microversion.as_deref(), Some("compute 2.88"));

    let view = watch.view();
    assert_eq!(view.services.len(), 4, "{view:?}");
    assert_eq!(view.services_error, None);
    assert_eq!(view.servers_error, None);

    let now = now_unix_ms();
    let up = watch.policy_inputs("compute-06", now);
    let service = up.service.expect("compute-06 maps by its short name");
    assert!(service.up);
    assert!(!service.disabled);
    assert!(service.heartbeat_age_seconds <= 10, "{service:?}");
    assert_eq!(service.service_down_time_seconds, 60);
    assert!(up.work_in_progress.is_empty(), "a null task state is idle");

    let down = watch
        .policy_inputs("compute-07", now)
        .service
        .expect("compute-07");
    assert!(!down.up);
    assert!(
        (295..=310).contains(&down.heartbeat_age_seconds),
        "age by Nova's Date header: {down:?}"
    );

    let auto = watch.policy_inputs("compute-08", now);
    let auto_service = auto.service.expect("compute-08");
    assert!(auto_service.disabled);
    assert!(auto_service.disabled_reason.starts_with("AUTO:"));
    assert_eq!(
        auto.work_in_progress,
        vec![
            "a1 (vm-a1) spawning".to_string(),
            "a2 (vm-a2) migrating".to_string()
        ]
    );

    let fenced = watch
        .policy_inputs("compute-09", now)
        .service
        .expect("compute-09");
    assert!(fenced.forced_down);
    assert!(watch.policy_inputs("compute-10", now).service.is_none());

    let node = watch.node_view("compute-06.example.net");
    let wire = node.service.expect("the FQDN matches exactly");
    assert_eq!(wire.id, "c350f294-30c9-4f70-858c-e1f3c2f80a0c");
    assert_eq!(
        (wire.state.as_str(), wire.status.as_str()),
        ("up", "enabled")
    );
}

#[tokio::test]
async fn explicit_host_name_mapping() {
    let mock = Mock::start().await;
    fresh_services(&mock);
    let mut settings = settings();
    settings.host_names = BTreeMap::from([(
        "compute-06.example.net".to_string(),
        "rack4-node2".to_string(),
    )]);
    let watch = NovaWatch::new(mock.client(), settings);
    watch.poll_once().await;
    let now = now_unix_ms();
    assert!(watch.policy_inputs("rack4-node2", now).service.is_some());
    assert!(
        watch.policy_inputs("compute-06", now).service.is_none(),
        "a mapped host answers only to its mapped name"
    );
}

#[tokio::test]
async fn poll_errors_keep_data_and_recover() {
    let mock = Mock::start().await;
    fresh_services(&mock);
    let watch = NovaWatch::new(client_with_timeout(&mock, &[]), settings());
    watch.poll_once().await;
    let polled_at = watch.view().services_polled_at_unix_ms;
    assert!(polled_at > 0);

    mock.with(|cloud| cloud.failing = vec!["/compute/v2.1/os-services".to_string()]);
    watch.poll_once().await;
    let view = watch.view();
    let error = view.services_error.clone().expect("the 503 is recorded");
    assert!(error.contains("HTTP 503"), "{error}");
    assert!(error.contains("/os-services"), "{error}");
    assert_eq!(
        view.services_polled_at_unix_ms, polled_at,
        "the data keeps its age"
    );
    assert_eq!(view.services.len(), 4, "the previous data stays");
    assert_eq!(view.servers_error, None, "the other call still works");
    assert_eq!(watch.source().services_error, error);

    mock.with(|cloud| {
        cloud.failing.clear();
        cloud.hanging = vec!["/compute/v2.1/servers".to_string()];
    });
    watch.poll_once().await;
    let view = watch.view();
    assert_eq!(view.services_error, None, "a good poll clears the error");
    let timeout = view.servers_error.expect("the hanging call times out");
    assert!(timeout.contains("did not answer"), "{timeout}");

    // Data older than stale_after_polls intervals is left out of the policy.
    let later = view.services_polled_at_unix_ms + 16_000;
    assert!(watch.policy_inputs("compute-06", later).service.is_none());
    assert!(watch
        .policy_inputs("compute-06", later - 2_000)
        .service
        .is_some());
}

#[tokio::test]
async fn poll_without_catalog_entry_reports_it() {
    let mock = Mock::start().await;
    let watch = NovaWatch::new(
        client_with_timeout(&mock, &[("OS_REGION_NAME", "RegionFar")]),
        settings(),
    );
    watch.poll_once().await;
    let source = watch.source();
    assert!(
        source.services_error.contains("no Nova endpoint"),
        "{}",
        source.services_error
    );
    assert!(
        source.services_error.contains("RegionFar"),
        "{}",
        source.services_error
    );
    assert_eq!(source.services_polled_at_unix_ms, 0);
}

/// Writes a clouds.yaml for the fake cloud and returns the `[openstack]`
/// settings that name it.
fn cloud_settings(mock: &Mock, dir: &Path) -> OpenStackSettings {
    let clouds = dir.join("clouds.yaml");
    std::fs::write(
        &clouds,
        format!(
            "clouds:\n  fake:\n    region_name: RegionOne\n    auth:\n      auth_url: {}/identity\n      \
             username: oncall-bot\n      password: s3cret-password\n      user_domain_name: Default\n      \
             project_name: admin\n      project_domain_name: Default\n",
            mock.base
        ),
    )
    .unwrap();
    OpenStackSettings {
        cloud: Some("fake".to_string()),
        clouds_file: Some(clouds),
        ..settings()
    }
}

/// Restarts for a failed unit and a stale heartbeat after two reports, in
/// enforce mode, with a storm guard that three failing nodes do not trip.
fn quick_policy(extra: &str) -> Policy {
    let text = format!(
        "mode = \"enforce\"\n{extra}\n[fleet]\nstorm_min_nodes = 10\n\n\
         [[rule]]\ncondition = \"unit-failed\"\nconfirm_reports = 2\nconfirm_seconds = 0\n\n\
         [[rule]]\ncondition = \"heartbeat-stale\"\nconfirm_reports = 2\nconfirm_seconds = 0\n"
    );
    rules::parse(&text, Path::new("policy.toml")).expect("test policy is valid")
}

fn failed_report() -> v1::NodeReport {
    let mut report = report(v1::HealthStatus::Failed, "failed", &["nova-compute failed"]);
    if let Some(nova) = report.nova_compute.as_mut() {
        nova.result = "exit-code".to_string();
    }
    report
}

/// Waits until the controller's Nova view has the node's service.
async fn wait_for_nova(server: &TestServer, node: &str) {
    let mut client = server.operator().await;
    let seen = eventually(Duration::from_secs(10), || {
        let mut client = client.clone();
        let node = node.to_string();
        async move {
            client
                .get_node(v1::GetNodeRequest { node })
                .await
                .ok()
                .and_then(|status| status.into_inner().nova)
                .is_some_and(|nova| nova.service.is_some())
        }
    })
    .await;
    let _ = &mut client;
    assert!(seen, "the controller polled Nova for {node}");
}

async fn events_of(server: &TestServer, node: &str, kind: &str) -> Vec<v1::Event> {
    let mut client = server.operator().await;
    common::node_events(&mut client, node)
        .await
        .into_iter()
        .filter(|event| event.kind == kind)
        .collect()
}

async fn wait_for_event(server: &TestServer, node: &str, kind: &str, fragment: &str) -> v1::Event {
    let found = eventually(Duration::from_secs(10), || async {
        events_of(server, node, kind)
            .await
            .iter()
            .any(|event| event.detail.contains(fragment))
    })
    .await;
    let events = events_of(server, node, kind).await;
    assert!(
        found,
        "no {kind} event with {fragment:?} for {node}: {events:#?}"
    );
    events
        .into_iter()
        .find(|event| event.detail.contains(fragment))
        .expect("found")
}

#[tokio::test]
async fn policy_acts_on_nova_view() {
    let mock = Mock::start().await;
    fresh_services(&mock);
    set_service(&mock, "compute-06.example.net", |service| {
        service["status"] = json!("disabled");
        service["disabled_reason"] = json!("hardware check, ticket OPS-77");
    });
    mock.add_server(
        busy_server("b1", "compute-08.example.net", Some("spawning")),
        vec![],
    );
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(
        dir.path().join("novamedic.db"),
        quick_policy(""),
        Some(cloud_settings(&mock, dir.path())),
    )
    .await;

    // compute-07: the unit runs, but Nova has had no heartbeat for 5 min.
    let mut stale = FakeAgent::connect(server.addr, common::hello("compute-07")).await;
    // compute-06: the unit failed, but an operator disabled the service.
    let mut disabled = FakeAgent::connect(server.addr, common::hello("compute-06")).await;
    // compute-08: the unit failed while an instance spawns there; Nova's own
    // AUTO: disable is evidence, not an operator's hold.
    let mut busy = FakeAgent::connect(server.addr, common::hello("compute-08")).await;
    wait_for_nova(&server, "compute-07").await;

    for _ in 0..2 {
        stale
            .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
            .await;
        disabled.send_report(failed_report()).await;
        busy.send_report(failed_report()).await;
    }

    let command = stale.next_command().await;
    assert_eq!(command.requested_by, "policy");
    assert!(
        command.reason.contains("heartbeat-stale"),
        "{}",
        command.reason
    );
    assert!(command.reason.contains("state down"), "{}", command.reason);

    let held = wait_for_event(
        &server,
        "compute-06",
        "policy_decision",
        "no restart for unit-failed",
    )
    .await;
    assert!(
        held.detail.contains(
            "the nova-compute service is disabled in Nova: hardware check, ticket OPS-77"
        ),
        "{}",
        held.detail
    );
    assert_eq!(held.actor, "policy");

    let held = wait_for_event(
        &server,
        "compute-08",
        "policy_decision",
        "no restart for unit-failed",
    )
    .await;
    assert!(
        held.detail
            .contains("instances mid-operation: b1 (vm-b1) spawning"),
        "{}",
        held.detail
    );
    let no_command = tokio::time::timeout(Duration::from_secs(1), disabled.next_command()).await;
    assert!(
        no_command.is_err(),
        "operator-disabled node restarted: {no_command:?}"
    );
    let no_command = tokio::time::timeout(Duration::from_secs(1), busy.next_command()).await;
    assert!(no_command.is_err(), "busy node restarted: {no_command:?}");

    let policy = server
        .operator()
        .await
        .get_policy(v1::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    let source = policy
        .nova_source
        .expect("the policy shows its Nova source");
    assert!(source.configured);
    assert_eq!(source.cloud, "fake");
    assert!(source.services_polled_at_unix_ms > 0);
    server.stop().await;
}

/// Builds a failed unit whose process is in D, which the policy escalates
/// at once.
fn wedged_report() -> v1::NodeReport {
    let mut report = failed_report();
    if let Some(nova) = report.nova_compute.as_mut() {
        nova.process = Some(v1::Process {
            pid: 4242,
            state: "D".to_string(),
            ..Default::default()
        });
    }
    report
}

fn service_of(mock: &Mock, host: &str) -> Value {
    mock.with(|cloud| {
        cloud
            .services
            .iter()
            .find(|service| service["host"] == json!(host))
            .cloned()
            .expect("a sample service")
    })
}

#[tokio::test]
async fn escalation_disables_service_and_clear_enables_it() {
    let mock = Mock::start().await;
    fresh_services(&mock);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(
        dir.path().join("novamedic.db"),
        quick_policy("[node]\ndisable_service_on_escalation = true\n"),
        Some(cloud_settings(&mock, dir.path())),
    )
    .await;
    let mut ours = FakeAgent::connect(server.addr, common::hello("compute-06")).await;
    let mut fenced = FakeAgent::connect(server.addr, common::hello("compute-09")).await;
    wait_for_nova(&server, "compute-06").await;

    ours.send_report(wedged_report()).await;
    fenced.send_report(wedged_report()).await;

    let disabled = wait_for_event(&server, "compute-06", "nova_service_disabled", "").await;
    assert_eq!(disabled.actor, "policy");
    assert!(
        disabled.detail.contains("compute-06.example.net"),
        "{}",
        disabled.detail
    );
    let service = service_of(&mock, "compute-06.example.net");
    assert_eq!(service["status"], json!("disabled"));
    let reason = service["disabled_reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.starts_with(
            "novamedic: needs a human: nova-compute (PID 4242) is in uninterruptible sleep"
        ),
        "{reason}"
    );
    let puts: Vec<_> = mock.with(|cloud| {
        cloud
            .api_requests()
            .into_iter()
            .filter(|request| request.method == "PUT")
            .collect()
    });
    assert_eq!(puts.len(), 1, "only compute-06 is changed: {puts:#?}");
    assert_eq!(
        puts[0].path,
        "/compute/v2.1/os-services/c350f294-30c9-4f70-858c-e1f3c2f80a0c"
    );
    assert_eq!(puts[0].microversion.as_deref(), Some("compute 2.88"));
    assert!(puts[0].token.is_some());

    let unchanged = wait_for_event(&server, "compute-09", "nova_service_unchanged", "").await;
    assert!(
        unchanged.detail.contains("already disabled"),
        "{}",
        unchanged.detail
    );
    assert!(
        unchanged.detail.contains("OPS-1234"),
        "{}",
        unchanged.detail
    );

    let mut client = server.operator().await;
    client
        .clear_node(v1::ClearNodeRequest {
            node: "compute-06".to_string(),
            requested_by: "alice".to_string(),
        })
        .await
        .unwrap();
    let enabled = wait_for_event(&server, "compute-06", "nova_service_enabled", "").await;
    assert_eq!(enabled.actor, "alice");
    assert_eq!(
        service_of(&mock, "compute-06.example.net")["status"],
        json!("enabled")
    );

    // Clearing compute-09 changes nothing in Nova: novamedic did not
    // disable it.
    client
        .clear_node(v1::ClearNodeRequest {
            node: "compute-09".to_string(),
            requested_by: "alice".to_string(),
        })
        .await
        .unwrap();
    let puts = mock.with(|cloud| {
        cloud
            .api_requests()
            .iter()
            .filter(|request| request.method == "PUT")
            .count()
    });
    assert_eq!(puts, 2, "one disable and one enable");
    assert_eq!(
        service_of(&mock, "compute-09.example.net")["status"],
        json!("disabled")
    );
    drop(ours);
    drop(fenced);
    server.stop().await;
}

#[tokio::test]
async fn clear_leaves_service_someone_disabled_again() {
    let mock = Mock::start().await;
    fresh_services(&mock);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(
        dir.path().join("novamedic.db"),
        quick_policy("[node]\ndisable_service_on_escalation = true\n"),
        Some(cloud_settings(&mock, dir.path())),
    )
    .await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("compute-06")).await;
    wait_for_nova(&server, "compute-06").await;
    agent.send_report(wedged_report()).await;
    wait_for_event(&server, "compute-06", "nova_service_disabled", "").await;

    set_service(&mock, "compute-06.example.net", |service| {
        service["disabled_reason"] = json!("storage team: NFS debugging");
    });
    server
        .operator()
        .await
        .clear_node(v1::ClearNodeRequest {
            node: "compute-06".to_string(),
            requested_by: "alice".to_string(),
        })
        .await
        .unwrap();
    let unchanged = wait_for_event(
        &server,
        "compute-06",
        "nova_service_unchanged",
        "someone else disabled it",
    )
    .await;
    assert_eq!(unchanged.actor, "alice");
    assert_eq!(
        service_of(&mock, "compute-06.example.net")["status"],
        json!("disabled")
    );
    server.stop().await;
}

struct Run {
    code: i32,
    stdout: String,
}

async fn novamedic(args: &[&str]) -> Run {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args(args)
        .env_remove("NOVAMEDIC_CONTROLLER")
        .env("NOVAMEDIC_LOG", "warn")
        .output()
        .await
        .expect("novamedic runs");
    Run {
        code: output.status.code().expect("exited normally"),
        stdout: String::from_utf8(output.stdout).unwrap(),
    }
}

#[tokio::test]
async fn cli_shows_nova_view() {
    let mock = Mock::start().await;
    fresh_services(&mock);
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start_configured(
        dir.path().join("novamedic.db"),
        Policy::default(),
        Some(cloud_settings(&mock, dir.path())),
    )
    .await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("compute-06")).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    wait_for_nova(&server, "compute-06").await;
    let url = server.url();

    let table = novamedic(&["--controller", &url, "nodes"]).await;
    assert_eq!(table.code, 0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].contains("NOVA"), "{}", table.stdout);
    assert!(lines[1].contains("up/enabled"), "{}", table.stdout);

    let show = novamedic(&[
        "--controller",
        &url,
        "node",
        "show",
        "compute-06",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(show.code, 0);
    let json: Value = serde_json::from_str(&show.stdout).expect("JSON");
    let nova = &json["nova"];
    assert_eq!(nova["service"]["state"], json!("up"));
    assert_eq!(nova["service"]["status"], json!("enabled"));
    assert_eq!(nova["service"]["host"], json!("compute-06.example.net"));
    assert_eq!(nova["source"]["configured"], json!(true));
    assert_eq!(nova["source"]["cloud"], json!("fake"));
    assert!(nova["source"]["services_polled_at"].is_string(), "{nova}");
    assert_eq!(nova["source"]["services_error"], Value::Null);
    assert!(nova["service"]["heartbeat_age_seconds"]
        .as_i64()
        .is_some_and(|age| age <= 10));

    let text = novamedic(&["--controller", &url, "node", "show", "compute-06"]).await;
    assert!(
        text.stdout.contains("Nova: up/enabled (heartbeat"),
        "{}",
        text.stdout
    );
    server.stop().await;

    // Without a cloud, the output names the missing cloud.
    let server = TestServer::start().await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("compute-06")).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    let url = server.url();
    let shown = eventually(Duration::from_secs(5), || async {
        novamedic(&["--controller", &url, "node", "show", "compute-06"])
            .await
            .stdout
            .contains("Nova: no cloud configured")
    })
    .await;
    assert!(shown, "node show names the missing cloud");
    let policy = novamedic(&["--controller", &url, "policy", "show"]).await;
    assert!(
        policy.stdout.contains("Nova: no cloud configured"),
        "{}",
        policy.stdout
    );
    server.stop().await;
}

async fn start_error(config: novamedic::config::ServerConfig) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        novamedic::server::serve_with_listener(listener, &config, std::future::pending()),
    )
    .await
    .expect("the controller stops at once");
    format!("{:#}", result.expect_err("the controller refuses to start"))
}

#[tokio::test]
async fn start_rejects_unusable_cloud_settings() {
    let dir = tempfile::tempdir().unwrap();
    let base = novamedic::config::ServerConfig {
        db: dir.path().join("novamedic.db"),
        transport: novamedic::config::Transport::Plaintext,
        ..Default::default()
    };

    let mut policy = Policy::default();
    policy.node.disable_service_on_escalation = true;
    let message = start_error(novamedic::config::ServerConfig {
        policy,
        policy_source: "/etc/novamedic/policy.toml".to_string(),
        ..base.clone()
    })
    .await;
    assert!(
        message.contains("disable_service_on_escalation"),
        "{message}"
    );
    assert!(message.contains("[openstack]"), "{message}");

    let mock = Mock::start().await;
    let mut settings = cloud_settings(&mock, dir.path());
    settings.cloud = Some("staging".to_string());
    let message = start_error(novamedic::config::ServerConfig {
        openstack: Some(settings),
        ..base.clone()
    })
    .await;
    assert!(
        message.contains("cannot load cloud \"staging\""),
        "{message}"
    );
    assert!(
        message.contains("fake"),
        "names the clouds there: {message}"
    );

    let mut settings = cloud_settings(&mock, dir.path());
    settings.clouds_file = Some(dir.path().join("absent.yaml"));
    let message = start_error(novamedic::config::ServerConfig {
        openstack: Some(settings),
        ..base
    })
    .await;
    assert!(message.contains("absent.yaml does not exist"), "{message}");
}

#[tokio::test]
async fn dry_run_escalation_sends_nothing_to_nova() {
    let mock = Mock::start().await;
    fresh_services(&mock);
    let dir = tempfile::tempdir().unwrap();
    let policy = rules::parse(
        "mode = \"dry-run\"\n[node]\ndisable_service_on_escalation = true\n",
        Path::new("policy.toml"),
    )
    .expect("test policy is valid");
    let server = TestServer::start_configured(
        dir.path().join("novamedic.db"),
        policy,
        Some(cloud_settings(&mock, dir.path())),
    )
    .await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("compute-06")).await;
    wait_for_nova(&server, "compute-06").await;
    agent.send_report(wedged_report()).await;

    let recorded = wait_for_event(
        &server,
        "compute-06",
        "nova_service_unchanged",
        "dry run: would disable",
    )
    .await;
    assert_eq!(recorded.actor, "policy");
    let puts = mock.with(|cloud| {
        cloud
            .api_requests()
            .iter()
            .filter(|request| request.method == "PUT")
            .count()
    });
    assert_eq!(puts, 0, "dry run changed Nova");
    assert_eq!(
        service_of(&mock, "compute-06.example.net")["status"],
        json!("enabled")
    );
    server.stop().await;
}
