//! The real `novamedic diagnose` binary against a fake cloud and a real
//! controller with one agent, all on loopback.

mod common;
mod openstack_mock;

use std::time::Duration;

use common::{eventually, hello, report, FakeAgent, TestServer};
use novamedic_proto::v1;
use openstack_mock::{fixture, Mock};
use serde_json::Value;

const BUILD_ID: &str = "c88f1556-b299-4254-9642-cab36648dfaa";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the binary with only `env` set (no real clouds.yaml or `OS_*`),
/// in an empty directory that is also its home.
async fn novamedic(args: &[&str], env: &[(String, String)]) -> Run {
    let home = tempfile::tempdir().expect("home");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args(args)
        .env_clear()
        .env("HOME", home.path())
        .env("NOVAMEDIC_LOG", "warn")
        .envs(
            env.iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
        )
        .current_dir(home.path())
        .output()
        .await
        .expect("novamedic runs");
    Run {
        code: output.status.code().expect("exited normally"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnose_uses_cloud_and_controller() {
    let mock = Mock::start().await;
    mock.add_server(
        fixture("nova_get_server_error_build_aborted.json")["server"].clone(),
        vec![
            fixture("nova_get_server_os_instance_action_request_id_v2_84.json")["instanceAction"]
                .clone(),
        ],
    );
    let server = TestServer::start().await;
    let mut agent = FakeAgent::connect(server.addr, hello("compute-07")).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    let client = server.operator().await;
    let arrived = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        async move {
            client
                .get_node(v1::GetNodeRequest {
                    node: "compute-07".into(),
                })
                .await
                .is_ok_and(|status| status.into_inner().last_seen_unix_ms > 0)
        }
    })
    .await;
    assert!(arrived, "the agent's report arrives");
    let env: Vec<(String, String)> = mock.environment().into_iter().collect();

    let run = novamedic(
        &[
            "--controller",
            &server.url(),
            "diagnose",
            BUILD_ID,
            "-o",
            "json",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let value: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(value["verdict"]["cause"], "network");
    assert_eq!(value["hosts"][0]["host"], "compute-07.example.net");
    assert_eq!(value["hosts"][0]["fleet"]["node"], "compute-07");
    assert!(!run.stdout.contains("s3cret-password") && !run.stderr.contains("s3cret-password"));

    let markdown = novamedic(
        &[
            "--controller",
            &server.url(),
            "diagnose",
            "db-7",
            "-o",
            "markdown",
        ],
        &env,
    )
    .await;
    assert_eq!(markdown.code, 0, "{}", markdown.stderr);
    assert!(
        markdown.stdout.contains("```mermaid\ngantt"),
        "{}",
        markdown.stdout
    );

    let missing = novamedic(&["--controller", &server.url(), "diagnose", "nope"], &env).await;
    assert_eq!(missing.code, 3, "{}", missing.stderr);
    assert!(missing.stderr.contains("\"nope\""), "{}", missing.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_down_leaves_fleet_missing() {
    let mock = Mock::start().await;
    mock.add_server(
        fixture("nova_get_server_error_on_host.json")["server"].clone(),
        Vec::new(),
    );
    let env: Vec<(String, String)> = mock.environment().into_iter().collect();
    let run = novamedic(
        &[
            "--controller",
            "http://127.0.0.1:1",
            "diagnose",
            "140d0e3c-e5da-40f5-8eac-5bb1234fb08f",
        ],
        &env,
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("Verdict: hypervisor"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains("Not checked: fleet compute-07.example.net: cannot reach the controller"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn usage_errors_exit_two() {
    let no_credentials = novamedic(&["diagnose", BUILD_ID], &[]).await;
    assert_eq!(no_credentials.code, 2, "{}", no_credentials.stderr);
    assert!(
        no_credentials.stderr.contains("OS_CLOUD"),
        "{}",
        no_credentials.stderr
    );

    let unknown_cloud = novamedic(
        &["diagnose", BUILD_ID],
        &[("OS_CLOUD".to_string(), "prod".to_string())],
    )
    .await;
    assert_eq!(unknown_cloud.code, 2, "{}", unknown_cloud.stderr);
    assert!(
        unknown_cloud.stderr.contains("cloud \"prod\""),
        "{}",
        unknown_cloud.stderr
    );

    let bad_endpoint = novamedic(&["diagnose", BUILD_ID, "--os-endpoint", "nova"], &[]).await;
    assert_eq!(bad_endpoint.code, 2, "{}", bad_endpoint.stderr);
    assert!(
        bad_endpoint.stderr.contains("SERVICE=URL"),
        "{}",
        bad_endpoint.stderr
    );

    let markdown_nodes = novamedic(&["nodes", "-o", "markdown"], &[]).await;
    assert_eq!(markdown_nodes.code, 2, "{}", markdown_nodes.stderr);
    assert!(
        markdown_nodes.stderr.contains("only for diagnose"),
        "{}",
        markdown_nodes.stderr
    );
}
