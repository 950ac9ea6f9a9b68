//! Both gRPC services over loopback: a real controller, a real tonic operator
//! client, and fake agents built on the generated agent client.

mod common;

use std::time::Duration;

use common::{attach, event_kinds, eventually, hello, report, FakeAgent, TestServer};
use novamedic_proto::v1;
use tonic::Code;

fn restart_request(node: &str, reason: &str, wait_ms: u64) -> v1::RestartRequest {
    v1::RestartRequest {
        node: node.to_string(),
        reason: reason.to_string(),
        requested_by: "alice@ops".to_string(),
        wait_ms,
    }
}

#[tokio::test]
async fn get_unknown_node_is_not_found() {
    let server = TestServer::start().await;
    let mut client = server.operator().await;
    let status = client
        .get_node(v1::GetNodeRequest {
            node: "ghost".into(),
        })
        .await
        .expect_err("unknown node");
    assert_eq!(status.code(), Code::NotFound);
    assert_eq!(
        status.message(),
        "node ghost is not known to this controller; `novamedic nodes` lists known nodes"
    );
    server.stop().await;
}

#[tokio::test]
async fn restart_errors() {
    let server = TestServer::start().await;
    let mut client = server.operator().await;

    let missing_reason = client
        .restart_nova_compute(restart_request("c1", "  ", 1000))
        .await
        .unwrap_err();
    assert_eq!(missing_reason.code(), Code::InvalidArgument);
    assert!(
        missing_reason.message().contains("reason is required"),
        "{}",
        missing_reason.message()
    );

    let mut anonymous = restart_request("c1", "stuck", 1000);
    anonymous.requested_by = " ".into();
    let missing_requester = client.restart_nova_compute(anonymous).await.unwrap_err();
    assert_eq!(missing_requester.code(), Code::InvalidArgument);
    assert_eq!(
        missing_requester.message(),
        "requested_by is required: the audit history records who asked"
    );

    let unknown = client
        .restart_nova_compute(restart_request("ghost", "stuck", 1000))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);

    let mut agent = FakeAgent::connect(server.addr, hello("c1")).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    let mut client2 = server.operator().await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut client = client2.clone();
            async move {
                client
                    .get_node(v1::GetNodeRequest { node: "c1".into() })
                    .await
                    .unwrap()
                    .into_inner()
                    .last_seen_unix_ms
                    > 0
            }
        })
        .await,
        "report arrives"
    );
    drop(agent);
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut client = client2.clone();
            async move {
                !client
                    .get_node(v1::GetNodeRequest { node: "c1".into() })
                    .await
                    .unwrap()
                    .into_inner()
                    .connected
            }
        })
        .await,
        "node shows disconnected after the agent left"
    );
    let not_connected = client
        .restart_nova_compute(restart_request("c1", "stuck", 1000))
        .await
        .unwrap_err();
    assert_eq!(not_connected.code(), Code::Unavailable);
    assert!(
        not_connected
            .message()
            .starts_with("agent on c1 is not connected (last seen 20"),
        "{}",
        not_connected.message()
    );

    let too_long = client
        .restart_nova_compute(restart_request("c1", "stuck", 10_000_000))
        .await
        .unwrap_err();
    assert_eq!(too_long.code(), Code::InvalidArgument);

    let mut no_capability = hello("c2");
    no_capability.capabilities.clear();
    let _agent = FakeAgent::connect(server.addr, no_capability).await;
    let refused = client2
        .restart_nova_compute(restart_request("c2", "stuck", 1000))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("restart_unit"),
        "{}",
        refused.message()
    );

    let mut no_unit = hello("c3");
    no_unit.nova_compute_unit.clear();
    let _agent3 = FakeAgent::connect(server.addr, no_unit).await;
    let refused = client2
        .restart_nova_compute(restart_request("c3", "stuck", 1000))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::FailedPrecondition);
    assert!(
        refused.message().contains("no nova-compute unit"),
        "{}",
        refused.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn first_message_must_be_hello() {
    let server = TestServer::start().await;
    let first = v1::AgentMessage {
        body: Some(v1::agent_message::Body::Report(v1::NodeReport::default())),
    };
    let status = attach(server.addr, first).await.expect_err("rejected");
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status
            .message()
            .contains("must be a Hello, not a NodeReport"),
        "{}",
        status.message()
    );
    server.stop().await;
}

#[tokio::test]
async fn unsupported_protocol_is_rejected() {
    let server = TestServer::start().await;
    for version in [0, novamedic_proto::PROTOCOL_VERSION + 1] {
        let mut bad = hello("c1");
        bad.protocol_version = version;
        let first = v1::AgentMessage {
            body: Some(v1::agent_message::Body::Hello(bad)),
        };
        let status = attach(server.addr, first).await.expect_err("rejected");
        assert_eq!(status.code(), Code::FailedPrecondition, "version {version}");
        let expected = format!(
            "speaks protocol version {version}, but this controller speaks version {}",
            novamedic_proto::PROTOCOL_VERSION
        );
        assert!(status.message().contains(&expected), "{}", status.message());
    }
    let mut client = server.operator().await;
    let nodes = client
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    assert!(nodes.is_empty(), "a rejected agent registers no node");
    server.stop().await;
}

#[tokio::test]
async fn hello_bad_name_or_interval_rejected() {
    let server = TestServer::start().await;
    let long_name = "a".repeat(254);
    let names = [
        ("", "is empty"),
        ("  ", "is empty"),
        (long_name.as_str(), "at most 253 bytes"),
        ("c1\n\x1b[31m", "may contain only"),
        ("c1 c2", "may contain only"),
        ("c1/../x", "may contain only"),
    ];
    let intervals = [
        (0, "between 1 and 3600000"),
        (u64::MAX, "between 1 and 3600000"),
    ];
    let mut cases: Vec<(v1::Hello, &str)> = Vec::new();
    for (name, expected) in names {
        cases.push((hello(name), expected));
    }
    for (interval_ms, expected) in intervals {
        let mut bad = hello("c1");
        bad.report_interval_ms = interval_ms;
        cases.push((bad, expected));
    }
    for (bad, expected) in cases {
        let label = format!("{:?} every {} ms", bad.node, bad.report_interval_ms);
        let first = v1::AgentMessage {
            body: Some(v1::agent_message::Body::Hello(bad)),
        };
        let status = attach(server.addr, first).await.expect_err("rejected");
        assert_eq!(status.code(), Code::InvalidArgument, "{label}");
        assert!(
            status.message().contains(expected),
            "{label}: {}",
            status.message()
        );
    }
    let fqdn = "compute-01.rack_7.example.org";
    let mut longest = hello(fqdn);
    longest.report_interval_ms = 3_600_000;
    let _agent = FakeAgent::connect(server.addr, longest).await;
    let mut client = server.operator().await;
    let nodes = client
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let names: Vec<&str> = nodes.iter().map(|n| n.node.as_str()).collect();
    assert_eq!(names, [fqdn], "only the valid Hello registers a node");
    server.stop().await;
}

/// A node cannot finish another node's command, and a result for an id
/// never issued is kept apart from real results.
#[tokio::test]
async fn stray_command_results_complete_nothing() {
    let server = TestServer::start().await;
    let mut target = FakeAgent::connect(server.addr, hello("c1")).await;
    target
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    let intruder = FakeAgent::connect(server.addr, hello("c2")).await;

    let mut client = server.operator().await;
    let call = tokio::spawn(async move {
        client
            .restart_nova_compute(restart_request("c1", "stuck", 30_000))
            .await
    });
    let command = target.next_command().await;
    let forged = common::succeeded_result(&command, v1::CommandOutcome::Failed);
    intruder.send_result(forged).await;
    let mut unknown = common::succeeded_result(&command, v1::CommandOutcome::Succeeded);
    unknown.command_id = "no-such-command".into();
    intruder.send_result(unknown).await;

    let mut client = server.operator().await;
    let recorded = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        async move { event_kinds(&mut client, "c2").await.len() >= 4 }
    })
    .await;
    assert!(recorded, "{:?}", event_kinds(&mut client, "c2").await);
    assert!(
        !call.is_finished(),
        "the forged result completed the restart"
    );

    target
        .send_result(common::succeeded_result(
            &command,
            v1::CommandOutcome::Succeeded,
        ))
        .await;
    let response = call.await.unwrap().expect("restart answered").into_inner();
    let outcome = response.result.expect("result").outcome;
    assert_eq!(outcome, v1::CommandOutcome::Succeeded as i32);

    let events = client
        .list_events(v1::ListEventsRequest {
            node: "c2".into(),
            limit: 100,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let stray: Vec<_> = events.iter().filter(|e| !e.command_id.is_empty()).collect();
    assert_eq!(stray.len(), 2, "{stray:?}");
    assert_eq!(stray[0].kind, "command_result_unmatched");
    assert_eq!(stray[0].command_id, "no-such-command");
    assert_eq!(stray[1].kind, "command_result_rejected");
    assert_eq!(stray[1].command_id, command.command_id);
    assert!(
        stray[1].detail.contains("node c1 sent by c2"),
        "{}",
        stray[1].detail
    );
    assert!(stray.iter().all(|e| e.actor.is_empty()), "{stray:?}");

    let c1_results: Vec<String> = event_kinds(&mut client, "c1")
        .await
        .into_iter()
        .filter(|kind| kind.starts_with("command_result"))
        .collect();
    assert_eq!(c1_results, ["command_result"]);
    server.stop().await;
}

#[tokio::test]
async fn restart_round_trip() {
    let server = TestServer::start().await;
    let mut agent = FakeAgent::connect(server.addr, hello("c1")).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;

    let mut client = server.operator().await;
    let call = tokio::spawn(async move {
        client
            .restart_nova_compute(restart_request("c1", "stuck on RPC", 30_000))
            .await
    });

    let command = agent.next_command().await;
    assert_eq!(command.timeout_ms, 30_000);
    assert_eq!(command.requested_by, "alice@ops");
    assert_eq!(command.reason, "stuck on RPC");
    assert!(
        uuid::Uuid::parse_str(&command.command_id).is_ok(),
        "{}",
        command.command_id
    );
    match &command.action {
        Some(v1::command::Action::RestartUnit(restart)) => {
            assert_eq!(restart.unit, "nova-compute.service")
        }
        other => panic!("expected RestartUnit, got {other:?}"),
    }
    agent
        .send_result(common::succeeded_result(
            &command,
            v1::CommandOutcome::Succeeded,
        ))
        .await;

    let response = call.await.unwrap().expect("restart answered").into_inner();
    assert_eq!(response.command_id, command.command_id);
    assert_eq!(response.node, "c1");
    assert_eq!(response.unit, "nova-compute.service");
    let result = response.result.expect("result");
    assert_eq!(result.outcome, v1::CommandOutcome::Succeeded as i32);
    assert_eq!(result.after.unwrap().main_pid, 200);

    let mut client = server.operator().await;
    let events = client
        .list_events(v1::ListEventsRequest {
            node: "c1".into(),
            limit: 100,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    // The report's event may commit before or after the command's.
    let events: Vec<_> = events
        .into_iter()
        .filter(|e| !e.command_id.is_empty())
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].kind, "command_result");
    assert_eq!(events[1].kind, "command_sent");
    for event in &events {
        assert_eq!(event.actor, "alice@ops");
        assert_eq!(event.command_id, command.command_id);
    }
    assert!(
        events[1].detail.contains("stuck on RPC"),
        "{}",
        events[1].detail
    );
    server.stop().await;
}

#[tokio::test]
async fn restart_without_result_times_out() {
    let server = TestServer::start().await;
    let mut agent = FakeAgent::connect(server.addr, hello("c1")).await;
    let mut client = server.operator().await;
    let call = tokio::spawn(async move {
        client
            .restart_nova_compute(restart_request("c1", "stuck", 500))
            .await
    });
    let command = agent.next_command().await;

    let status = call.await.unwrap().expect_err("no result");
    assert_eq!(status.code(), Code::DeadlineExceeded);
    assert_eq!(
        status.message(),
        "no result from c1 within 0.5 s; the command may still complete: see `novamedic events --node c1`"
    );

    // A late result is still recorded.
    agent
        .send_result(common::succeeded_result(
            &command,
            v1::CommandOutcome::Succeeded,
        ))
        .await;
    let mut client = server.operator().await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut client = client.clone();
            async move {
                event_kinds(&mut client, "c1")
                    .await
                    .last()
                    .map(String::as_str)
                    == Some("command_result")
            }
        })
        .await
    );
    let events = event_kinds(&mut client, "c1").await;
    assert_eq!(
        events,
        vec![
            "node_registered",
            "agent_connected",
            "command_sent",
            "command_result"
        ]
    );
    server.stop().await;
}

#[tokio::test]
async fn concurrent_restart_is_refused() {
    let server = TestServer::start().await;
    let mut agent = FakeAgent::connect(server.addr, hello("c1")).await;
    let mut first_client = server.operator().await;
    let first = tokio::spawn(async move {
        first_client
            .restart_nova_compute(restart_request("c1", "one", 5_000))
            .await
    });
    let command = agent.next_command().await;

    let mut client = server.operator().await;
    let second = client
        .restart_nova_compute(restart_request("c1", "two", 5_000))
        .await
        .unwrap_err();
    assert_eq!(second.code(), Code::Aborted);
    assert!(
        second.message().contains(&command.command_id),
        "{}",
        second.message()
    );

    agent
        .send_result(common::succeeded_result(
            &command,
            v1::CommandOutcome::Failed,
        ))
        .await;
    let response = first.await.unwrap().unwrap().into_inner();
    assert_eq!(
        response.result.unwrap().outcome,
        v1::CommandOutcome::Failed as i32
    );
    server.stop().await;
}

#[tokio::test]
async fn reports_update_health_and_events() {
    let server = TestServer::start().await;
    let mut agent = FakeAgent::connect(server.addr, hello("c1")).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    agent
        .send_report(report(
            v1::HealthStatus::Failed,
            "failed",
            &["nova-compute.service is failed"],
        ))
        .await;

    let mut client = server.operator().await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut client = client.clone();
            async move { event_kinds(&mut client, "c1").await.len() == 6 }
        })
        .await
    );
    let kinds = event_kinds(&mut client, "c1").await;
    // The failed unit is also the policy's first sighting of a condition.
    assert_eq!(
        kinds,
        vec![
            "node_registered",
            "agent_connected",
            "health_changed",
            "health_changed",
            "unit_state_changed",
            "policy_decision"
        ]
    );
    let status = client
        .get_node(v1::GetNodeRequest { node: "c1".into() })
        .await
        .unwrap()
        .into_inner();
    let health = status.health.unwrap();
    assert_eq!(health.status, v1::HealthStatus::Failed as i32);
    assert_eq!(health.reasons, vec!["nova-compute.service is failed"]);
    assert!(status.connected);
    assert!(status.last_seen_unix_ms > 0);
    assert_eq!(status.report.unwrap().sequence, 2);
    server.stop().await;
}

#[tokio::test]
async fn silent_node_turns_stale() {
    let server = TestServer::start().await;
    let mut fast = hello("c1");
    fast.report_interval_ms = 100;
    let mut agent = FakeAgent::connect(server.addr, fast).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;

    let mut client = server.operator().await;
    let stale = eventually(Duration::from_secs(10), || {
        let mut client = client.clone();
        async move {
            let status = client
                .get_node(v1::GetNodeRequest { node: "c1".into() })
                .await
                .unwrap()
                .into_inner();
            status.health.unwrap().status == v1::HealthStatus::Stale as i32
        }
    })
    .await;
    assert!(stale, "node turns stale after three silent intervals");
    let status = client
        .get_node(v1::GetNodeRequest { node: "c1".into() })
        .await
        .unwrap()
        .into_inner();
    let reason = &status.health.unwrap().reasons[0];
    assert!(reason.starts_with("no report for "), "{reason}");
    assert!(reason.ends_with(" s (3 intervals of 0.1 s)"), "{reason}");

    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut client = client.clone();
            async move { event_kinds(&mut client, "c1").await.len() == 5 }
        })
        .await
    );
    let events = client
        .list_events(v1::ListEventsRequest {
            node: "c1".into(),
            limit: 2,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(
        events[0].detail.starts_with("stale -> healthy"),
        "{}",
        events[0].detail
    );
    assert!(
        events[1]
            .detail
            .starts_with("healthy -> stale: no report for"),
        "{}",
        events[1].detail
    );
    server.stop().await;
}

#[tokio::test]
async fn second_stream_replaces_first() {
    let server = TestServer::start().await;
    let mut old = FakeAgent::connect(server.addr, hello("c1")).await;
    let mut new = FakeAgent::connect(server.addr, hello("c1")).await;
    assert!(
        old.stream_ended().await,
        "the controller ends the replaced stream"
    );

    let mut client = server.operator().await;
    let kinds = event_kinds(&mut client, "c1").await;
    assert_eq!(
        kinds,
        vec![
            "node_registered",
            "agent_connected",
            "stream_replaced",
            "agent_connected"
        ]
    );

    // Commands go to the new stream.
    let mut operator = server.operator().await;
    let call = tokio::spawn(async move {
        operator
            .restart_nova_compute(restart_request("c1", "stuck", 5_000))
            .await
    });
    let command = new.next_command().await;
    new.send_result(common::succeeded_result(
        &command,
        v1::CommandOutcome::Succeeded,
    ))
    .await;
    assert!(call.await.unwrap().is_ok());
    let status = client
        .get_node(v1::GetNodeRequest { node: "c1".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(status.connected);
    server.stop().await;
}

#[tokio::test]
async fn events_limit_default_and_cap() {
    let server = TestServer::start().await;
    let mut agent = FakeAgent::connect(server.addr, hello("c1")).await;
    // Alternate health so that every report records one event.
    for index in 0..60 {
        let status = if index % 2 == 0 {
            v1::HealthStatus::Healthy
        } else {
            v1::HealthStatus::Degraded
        };
        agent.send_report(report(status, "active", &[])).await;
    }
    let mut client = server.operator().await;
    assert!(
        eventually(Duration::from_secs(10), || {
            let mut client = client.clone();
            async move { event_kinds(&mut client, "c1").await.len() == 62 }
        })
        .await
    );
    let default = client
        .list_events(v1::ListEventsRequest {
            node: String::new(),
            limit: 0,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(default.len(), 50);
    let capped = client
        .list_events(v1::ListEventsRequest {
            node: String::new(),
            limit: 100_000,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    assert_eq!(capped.len(), 62, "all events, fewer than the cap of 1000");
    server.stop().await;
}

#[tokio::test]
async fn state_survives_controller_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("novamedic.db");
    let server = TestServer::start_on(db.clone()).await;
    let mut agent = FakeAgent::connect(server.addr, hello("c1")).await;
    agent
        .send_report(report(
            v1::HealthStatus::Degraded,
            "active",
            &["swap in use"],
        ))
        .await;
    let client = server.operator().await;
    assert!(
        eventually(Duration::from_secs(5), || {
            let mut client = client.clone();
            async move { event_kinds(&mut client, "c1").await.len() == 3 }
        })
        .await
    );
    drop(agent);
    server.stop().await;

    let server = TestServer::start_on(db).await;
    let mut client = server.operator().await;
    let status = client
        .get_node(v1::GetNodeRequest { node: "c1".into() })
        .await
        .unwrap()
        .into_inner();
    assert!(!status.connected);
    assert_eq!(status.health.unwrap().reasons, vec!["swap in use"]);
    assert_eq!(status.report.unwrap().sequence, 1);
    let kinds = event_kinds(&mut client, "c1").await;
    assert_eq!(
        kinds,
        vec![
            "node_registered",
            "agent_connected",
            "health_changed",
            "agent_disconnected"
        ]
    );
    server.stop().await;
}

/// One agent flooding reports neither stalls the operator API nor loses the
/// newest report, in memory or, after shutdown, in the database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_flood_keeps_api_responsive() {
    const FLOOD: u64 = 2000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("novamedic.db");
    let server = TestServer::start_on(db.clone()).await;
    let mut agent = FakeAgent::connect(server.addr, hello("c1")).await;
    for _ in 0..FLOOD {
        agent
            .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
            .await;
    }

    let client = server.operator().await;
    let latest_arrived = eventually(Duration::from_secs(60), || {
        let mut client = client.clone();
        async move {
            let nodes = client.list_nodes(v1::ListNodesRequest {}).await.unwrap();
            let nodes = nodes.into_inner().nodes;
            nodes[0].report.as_ref().map(|r| r.sequence) == Some(FLOOD)
        }
    })
    .await;
    assert!(latest_arrived, "report {FLOOD} is the node's latest");
    let mut quick = client.clone();
    let listed = tokio::time::timeout(
        Duration::from_secs(10),
        quick.list_nodes(v1::ListNodesRequest {}),
    )
    .await
    .expect("ListNodes answers within 10 s after the flood")
    .unwrap();
    assert_eq!(listed.into_inner().nodes.len(), 1);

    drop(agent);
    server.stop().await;
    let store = novamedic::store::Store::open(&db).await.unwrap();
    let nodes = store.list_nodes().await.unwrap();
    let stored = nodes[0].latest_report.as_ref().map(|r| r.sequence);
    assert_eq!(
        stored,
        Some(FLOOD),
        "the newest report reached the database"
    );
    store.close().await;
}

/// Routine reports are written in batches while the controller runs, not
/// only at shutdown. Read through a second, read-only connection, as the
/// controller holds the database lock.
#[tokio::test]
async fn routine_reports_reach_database_while_serving() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("novamedic.db");
    let server = TestServer::start_on(db.clone()).await;
    let mut agent = FakeAgent::connect(server.addr, hello("c1")).await;
    // The first report changes the health and is written at once with its
    // event; the ones after it are routine.
    for _ in 0..3 {
        agent
            .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
            .await;
    }

    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&db)
        .read_only(true);
    let reader = sqlx::SqlitePool::connect_with(options).await.unwrap();
    let written = eventually(Duration::from_secs(10), || {
        let reader = reader.clone();
        async move {
            let stored: Option<Vec<u8>> =
                sqlx::query_scalar("SELECT latest_report FROM nodes WHERE name = 'c1'")
                    .fetch_one(&reader)
                    .await
                    .unwrap();
            let sequence = stored.map(|bytes| {
                <v1::NodeReport as prost::Message>::decode(bytes.as_slice())
                    .unwrap()
                    .sequence
            });
            sequence == Some(3)
        }
    })
    .await;
    assert!(written, "the third, routine report was written by a flush");
    reader.close().await;
    drop(agent);
    server.stop().await;
}
