//! The real `novamedic` binary against an in-test controller on loopback.

mod common;

use std::time::Duration;

use common::{eventually, hello, report, FakeAgent, TestServer};
use novamedic_proto::v1;
use serde_json::Value;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
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
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn json(run: &Run) -> Value {
    serde_json::from_str(&run.stdout)
        .unwrap_or_else(|err| panic!("stdout is not JSON ({err}): {}", run.stdout))
}

async fn server_with_node() -> (TestServer, FakeAgent) {
    let server = TestServer::start().await;
    let mut agent = FakeAgent::connect(server.addr, hello("compute-01")).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    let mut client = server.operator().await;
    let arrived = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        async move {
            let status = client
                .get_node(v1::GetNodeRequest {
                    node: "compute-01".into(),
                })
                .await;
            status.is_ok_and(|s| s.into_inner().last_seen_unix_ms > 0)
        }
    })
    .await;
    assert!(arrived, "report arrives");
    let _ = &mut client;
    (server, agent)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_json_shape() {
    let (server, _agent) = server_with_node().await;
    let url = server.url();
    let run = novamedic(&["--controller", &url, "nodes", "-o", "json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let nodes = json(&run);
    let nodes = nodes.as_array().expect("one array");
    assert_eq!(nodes.len(), 1);
    let node = &nodes[0];
    assert_eq!(node["node"], "compute-01");
    assert_eq!(node["health"], "healthy");
    assert_eq!(node["connected"], true);
    assert_eq!(node["agent_version"], "0.1.0-test");
    assert_eq!(node["nova_compute"]["active_state"], "active");
    assert_eq!(node["memory"]["total_bytes"], 16u64 << 30);
    assert_eq!(node["disks"][0]["holds_instances"], true);
    assert_eq!(node["guests"]["count"], 2);
    assert!(node["last_seen"].as_str().unwrap().ends_with('Z'));

    let table = novamedic(&["--controller", &url, "nodes"]).await;
    assert_eq!(table.code, 0);
    let row = table.stdout.lines().nth(1).expect("a row");
    assert!(
        row.starts_with("compute-01  healthy  active/running  25.0"),
        "{row}"
    );

    let show = novamedic(&[
        "--controller",
        &url,
        "-o",
        "json",
        "node",
        "show",
        "compute-01",
    ])
    .await;
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert_eq!(json(&show)["node"], "compute-01");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_json_and_events() {
    let (server, agent) = server_with_node().await;
    let url = server.url();
    let answered = agent.answer_commands(v1::CommandOutcome::Succeeded);

    let run = novamedic(&[
        "--controller",
        &url,
        "-o",
        "json",
        "restart",
        "compute-01",
        "--reason",
        "stuck",
        "--wait",
        "20",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let restart = json(&run);
    assert_eq!(restart["node"], "compute-01");
    assert_eq!(restart["unit"], "nova-compute.service");
    assert_eq!(restart["outcome"], "succeeded");
    assert_eq!(restart["before"]["main_pid"], 100);
    assert_eq!(restart["after"]["main_pid"], 200);
    assert_eq!(restart["duration_ms"], 1234);
    assert_eq!(restart["replayed"], false);
    let command_id = restart["command_id"].as_str().unwrap().to_string();

    let run = novamedic(&[
        "--controller",
        &url,
        "events",
        "--node",
        "compute-01",
        "--limit",
        "2",
        "-o",
        "json",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let events = json(&run);
    let events = events.as_array().expect("one array");
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["kind"], "command_result");
    assert_eq!(events[1]["kind"], "command_sent");
    for event in events {
        assert_eq!(event["command_id"], command_id.as_str());
        assert_eq!(event["node"], "compute-01");
        let actor = event["actor"].as_str().unwrap();
        assert!(actor.contains('@'), "actor is user@host: {actor}");
        assert!(event["id"].is_i64());
        assert!(event["time"].as_str().unwrap().ends_with('Z'));
    }

    let table = novamedic(&[
        "--controller",
        &url,
        "restart",
        "compute-01",
        "--reason",
        "again",
    ])
    .await;
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table
            .stdout
            .starts_with("restart of nova-compute.service on compute-01: succeeded in 1.2 s"),
        "{}",
        table.stdout
    );

    server.stop().await;
    let commands = answered.await.unwrap();
    assert_eq!(commands.len(), 2);
    assert_eq!(commands[0].reason, "stuck");
    assert_eq!(commands[0].timeout_ms, 20_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_failed_outcome_exits_one() {
    let (server, agent) = server_with_node().await;
    let url = server.url();
    let _answered = agent.answer_commands(v1::CommandOutcome::Rejected);
    let run = novamedic(&[
        "--controller",
        &url,
        "restart",
        "compute-01",
        "--reason",
        "stuck",
    ])
    .await;
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains(": rejected in"), "{}", run.stdout);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_exit_codes() {
    let (server, agent) = server_with_node().await;
    let url = server.url();

    let unknown = novamedic(&["--controller", &url, "restart", "ghost", "--reason", "x"]).await;
    assert_eq!(unknown.code, 3);
    assert!(
        unknown
            .stderr
            .contains("node ghost is not known to this controller"),
        "{}",
        unknown.stderr
    );

    let show = novamedic(&["--controller", &url, "node", "show", "ghost"]).await;
    assert_eq!(show.code, 3);

    let missing_reason = novamedic(&["--controller", &url, "restart", "compute-01"]).await;
    assert_eq!(missing_reason.code, 2, "clap rejects a missing --reason");

    // An agent that never answers: the restart times out.
    let timeout = novamedic(&[
        "--controller",
        &url,
        "restart",
        "compute-01",
        "--reason",
        "x",
        "--wait",
        "1",
    ])
    .await;
    assert_eq!(timeout.code, 5, "{}", timeout.stderr);
    assert!(
        timeout
            .stderr
            .contains("no result from compute-01 within 1 s"),
        "{}",
        timeout.stderr
    );

    drop(agent);
    let mut client = server.operator().await;
    let gone = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        async move {
            !client
                .get_node(v1::GetNodeRequest {
                    node: "compute-01".into(),
                })
                .await
                .unwrap()
                .into_inner()
                .connected
        }
    })
    .await;
    assert!(gone);
    let _ = &mut client;
    let disconnected = novamedic(&[
        "--controller",
        &url,
        "restart",
        "compute-01",
        "--reason",
        "x",
    ])
    .await;
    assert_eq!(disconnected.code, 4);
    assert!(
        disconnected
            .stderr
            .contains("agent on compute-01 is not connected (last seen"),
        "{}",
        disconnected.stderr
    );
    server.stop().await;
}

#[tokio::test]
async fn controller_down_exits_four() {
    // Bind and drop a listener to find a loopback port with nobody on it.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let run = novamedic(&["--controller", &url, "nodes"]).await;
    assert_eq!(run.code, 4);
    assert_eq!(
        run.stderr.trim_end(),
        format!(
            "novamedic: cannot reach the controller at {url}: connection refused; is `novamedic serve` running? \
             set --controller or NOVAMEDIC_CONTROLLER"
        )
    );
    assert!(run.stdout.is_empty());
}

#[tokio::test]
async fn invalid_controller_url_is_usage_error() {
    let run = novamedic(&["--controller", "not a url", "nodes"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("invalid controller URL"),
        "{}",
        run.stderr
    );
}

#[tokio::test]
async fn missing_explicit_config_is_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("absent.toml");
    let run = novamedic(&[
        "serve",
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("absent.toml"), "{}", run.stderr);
}
