//! The self-healing policy over real gRPC: a fake agent reports a failed
//! nova-compute unit, and the controller's policy decides, records and sends
//! (or holds back) an automated restart.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{eventually, report, succeeded_result, FakeAgent, TestServer};
use novamedic::policy::{rules, Policy};
use novamedic_proto::v1;

/// Builds a policy that confirms a failed unit after two reports with no
/// minimum span, so the test needs no real waiting.
fn quick_policy(mode: &str) -> Policy {
    let text = format!(
        "mode = \"{mode}\"\n\n[[rule]]\ncondition = \"unit-failed\"\nconfirm_reports = 2\n\
         confirm_seconds = 0\n"
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

fn recovered_report() -> v1::NodeReport {
    let mut report = report(v1::HealthStatus::Healthy, "active", &[]);
    if let Some(nova) = report.nova_compute.as_mut() {
        nova.invocation_id = "bbbb".to_string();
        nova.result = "success".to_string();
        nova.process = Some(v1::Process {
            pid: 200,
            state: "S".to_string(),
            ..Default::default()
        });
    }
    report
}

async fn policy_details(server: &TestServer, node: &str) -> Vec<String> {
    let mut client = server.operator().await;
    common::node_events(&mut client, node)
        .await
        .into_iter()
        .filter(|event| event.kind == "policy_decision" || event.kind == "policy_control")
        .map(|event| event.detail)
        .collect()
}

#[tokio::test]
async fn confirmed_failure_restarted_once_and_verified() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("novamedic.db");
    let server = TestServer::start_with(db.clone(), quick_policy("enforce")).await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("cn-1")).await;

    agent.send_report(failed_report()).await;
    agent.send_report(failed_report()).await;
    let command = agent.next_command().await;
    assert_eq!(command.requested_by, "policy");
    assert!(command.reason.contains("unit-failed"), "{}", command.reason);
    agent
        .send_result(succeeded_result(&command, v1::CommandOutcome::Succeeded))
        .await;
    agent.send_report(recovered_report()).await;

    let verified = eventually(Duration::from_secs(10), || async {
        policy_details(&server, "cn-1")
            .await
            .iter()
            .any(|detail| detail.contains("brought the node back"))
    })
    .await;
    let details = policy_details(&server, "cn-1").await;
    assert!(verified, "{details:#?}");
    assert!(
        details[0].starts_with("watching unit-failed"),
        "{details:#?}"
    );
    assert!(
        details
            .iter()
            .any(|d| d.starts_with("restarting nova-compute for unit-failed")),
        "{details:#?}"
    );

    // The restart history survives a controller restart.
    drop(agent);
    server.stop().await;
    let server = TestServer::start_with(db, quick_policy("enforce")).await;
    let status = server
        .operator()
        .await
        .get_policy(v1::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.mode, "enforce");
    let node = status
        .nodes
        .iter()
        .find(|n| n.node == "cn-1")
        .expect("cn-1 kept");
    assert_eq!(node.restarts_in_window, 1);
    assert_eq!(node.in_flight, "");
    server.stop().await;
}

#[tokio::test]
async fn dry_run_records_without_sending() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_with(dir.path().join("novamedic.db"), quick_policy("dry-run")).await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("cn-1")).await;
    for _ in 0..3 {
        agent.send_report(failed_report()).await;
    }

    let recorded = eventually(Duration::from_secs(10), || async {
        policy_details(&server, "cn-1")
            .await
            .iter()
            .any(|detail| detail.starts_with("dry run: would restart nova-compute"))
    })
    .await;
    assert!(recorded, "{:#?}", policy_details(&server, "cn-1").await);
    let no_command = tokio::time::timeout(Duration::from_secs(1), agent.next_command()).await;
    assert!(no_command.is_err(), "dry run sent {no_command:?}");
    server.stop().await;
}

#[tokio::test]
async fn pause_and_silence_hold_back_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let server =
        TestServer::start_with(dir.path().join("novamedic.db"), quick_policy("enforce")).await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("cn-1")).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    let mut client = server.operator().await;

    let paused = client
        .pause_policy(v1::PausePolicyRequest {
            reason: "broker maintenance".to_string(),
            requested_by: "alice".to_string(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(paused.pause.unwrap().by, "alice");
    let fleet_events = common::node_events(&mut client, "").await;
    let pause_event = fleet_events
        .iter()
        .find(|event| event.kind == "policy_control")
        .expect("the pause is in the history");
    assert_eq!(pause_event.node, "");
    assert_eq!(pause_event.actor, "alice");
    assert_eq!(pause_event.detail, "paused: broker maintenance");
    for _ in 0..3 {
        agent.send_report(failed_report()).await;
    }
    let paused_hold = eventually(Duration::from_secs(10), || async {
        policy_details(&server, "cn-1")
            .await
            .iter()
            .any(|detail| detail.contains("automation is paused by alice"))
    })
    .await;
    assert!(paused_hold, "{:#?}", policy_details(&server, "cn-1").await);

    client
        .silence_node(v1::SilenceNodeRequest {
            node: "cn-1".to_string(),
            duration_seconds: 3_600,
            reason: "kernel upgrade".to_string(),
            requested_by: "bob".to_string(),
        })
        .await
        .unwrap();
    client
        .resume_policy(v1::ResumePolicyRequest {
            requested_by: "alice".to_string(),
        })
        .await
        .unwrap();
    agent.send_report(failed_report()).await;
    let silenced = eventually(Duration::from_secs(10), || async {
        policy_details(&server, "cn-1")
            .await
            .iter()
            .any(|detail| detail.contains("node silenced by bob"))
    })
    .await;
    assert!(silenced, "{:#?}", policy_details(&server, "cn-1").await);
    let no_command = tokio::time::timeout(Duration::from_secs(1), agent.next_command()).await;
    assert!(no_command.is_err(), "a restart was sent: {no_command:?}");

    let unknown = client
        .silence_node(v1::SilenceNodeRequest {
            node: "cn-404".to_string(),
            duration_seconds: 60,
            reason: "r".to_string(),
            requested_by: "bob".to_string(),
        })
        .await
        .expect_err("unknown node");
    assert_eq!(unknown.code(), tonic::Code::NotFound);
    server.stop().await;
}
