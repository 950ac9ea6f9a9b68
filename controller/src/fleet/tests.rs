use super::*;

fn hello(node: &str) -> HelloRecord {
    HelloRecord {
        node: node.to_string(),
        agent_version: "0.1.0".to_string(),
        protocol_version: 1,
        capabilities: vec![novamedic_proto::CAPABILITY_RESTART_UNIT.to_string()],
        unit: "nova-compute.service".to_string(),
        report_interval_ms: 10_000,
    }
}

fn report(status: v1::HealthStatus, active: &str) -> v1::NodeReport {
    v1::NodeReport {
        health: Some(v1::Health {
            status: status as i32,
            reasons: Vec::new(),
        }),
        nova_compute: Some(v1::NovaCompute {
            unit: "nova-compute.service".into(),
            active_state: active.into(),
            sub_state: "running".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn kinds(events: &[NewEvent]) -> Vec<&str> {
    events.iter().map(|e| e.kind.as_str()).collect()
}

#[test]
fn first_connect_registers_node() {
    let fleet = Fleet::from_records(Vec::new(), 0);
    let (tx, _rx) = mpsc::channel(1);
    let connected = fleet.connect(hello("c1"), tx, 100);
    assert_eq!(
        kinds(&connected.events),
        vec![kind::NODE_REGISTERED, kind::AGENT_CONNECTED]
    );
    assert!(!connected.replaced_open_stream);
    let status = fleet.status("c1").expect("known node");
    assert!(status.connected);
    assert_eq!(status.first_seen_unix_ms, 100);
    assert_eq!(status.last_seen_unix_ms, 0);
}

#[test]
fn second_stream_replaces_first() {
    let fleet = Fleet::from_records(Vec::new(), 0);
    let (old_tx, mut old_rx) = mpsc::channel(1);
    let (new_tx, _new_rx) = mpsc::channel(1);
    let old = fleet.connect(hello("c1"), old_tx, 100);
    let new = fleet.connect(hello("c1"), new_tx, 200);

    assert!(new.replaced_open_stream);
    assert_eq!(
        kinds(&new.events),
        vec![kind::STREAM_REPLACED, kind::AGENT_CONNECTED]
    );
    // The old stream's sender was dropped, so its response stream ends.
    assert!(old_rx.try_recv().is_err());
    assert!(old_rx.is_closed());

    // The old stream's reports and cleanup do not touch the new stream.
    let stale_report = fleet.apply_report(
        "c1",
        old.connection_id,
        report(v1::HealthStatus::Healthy, "active"),
        300,
    );
    assert_eq!(stale_report.unwrap_err(), NotCurrent);
    assert!(fleet
        .disconnect("c1", old.connection_id, "closed".into(), 300)
        .is_none());
    assert!(fleet.status("c1").unwrap().connected);

    let event = fleet
        .disconnect("c1", new.connection_id, "closed".into(), 400)
        .expect("event");
    assert_eq!(event.kind, kind::AGENT_DISCONNECTED);
    assert!(!fleet.status("c1").unwrap().connected);
}

#[test]
fn reports_change_health_and_unit() {
    let fleet = Fleet::from_records(Vec::new(), 0);
    let (tx, _rx) = mpsc::channel(1);
    let id = fleet.connect(hello("c1"), tx, 0).connection_id;

    let first = fleet
        .apply_report("c1", id, report(v1::HealthStatus::Healthy, "active"), 10)
        .unwrap();
    assert_eq!(kinds(&first.events), vec![kind::HEALTH_CHANGED]);
    let same = fleet
        .apply_report("c1", id, report(v1::HealthStatus::Healthy, "active"), 20)
        .unwrap();
    assert!(same.events.is_empty());
    let failed = fleet
        .apply_report("c1", id, report(v1::HealthStatus::Failed, "failed"), 30)
        .unwrap();
    assert_eq!(
        kinds(&failed.events),
        vec![kind::HEALTH_CHANGED, kind::UNIT_STATE_CHANGED]
    );

    let status = fleet.status("c1").unwrap();
    assert_eq!(status.last_seen_unix_ms, 30);
    assert_eq!(
        status.health.unwrap().status,
        v1::HealthStatus::Failed as i32
    );
}

#[test]
fn silent_node_becomes_stale_once() {
    let fleet = Fleet::from_records(Vec::new(), 0);
    let (tx, _rx) = mpsc::channel(1);
    let id = fleet.connect(hello("c1"), tx, 0).connection_id;
    fleet
        .apply_report("c1", id, report(v1::HealthStatus::Healthy, "active"), 1_000)
        .unwrap();

    assert!(fleet.mark_stale(30_999).is_empty());
    let updates = fleet.mark_stale(35_000);
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0].health.status, v1::HealthStatus::Stale as i32);
    assert_eq!(
        updates[0].health.reasons,
        vec!["no report for 34 s (3 intervals of 10 s)"]
    );
    assert_eq!(
        updates[0].events[0].detail,
        "healthy -> stale: no report for 34 s (3 intervals of 10 s)"
    );
    assert!(
        fleet.mark_stale(60_000).is_empty(),
        "a stale node is marked once"
    );

    let back = fleet
        .apply_report(
            "c1",
            id,
            report(v1::HealthStatus::Healthy, "active"),
            61_000,
        )
        .unwrap();
    assert_eq!(back.events[0].detail, "stale -> healthy");
}

#[test]
fn loaded_nodes_get_grace_after_start() {
    let record = NodeRecord {
        hello: hello("c1"),
        first_seen_unix_ms: 1_000,
        last_seen_unix_ms: 2_000,
        health: v1::Health {
            status: v1::HealthStatus::Healthy as i32,
            reasons: Vec::new(),
        },
        ..Default::default()
    };
    let started_at = 1_000_000;
    let fleet = Fleet::from_records(vec![record], started_at);
    assert!(fleet.mark_stale(started_at + 29_000).is_empty());
    assert_eq!(fleet.mark_stale(started_at + 30_000).len(), 1);
}

#[test]
fn restart_rejections() {
    let fleet = Fleet::from_records(Vec::new(), 0);
    assert_eq!(
        fleet.begin_restart("nope", "id", "op", false).unwrap_err(),
        CommandRejection::UnknownNode
    );

    let (tx, _rx) = mpsc::channel(1);
    let id = fleet.connect(hello("c1"), tx, 0).connection_id;
    fleet
        .apply_report("c1", id, report(v1::HealthStatus::Healthy, "active"), 5)
        .unwrap();
    fleet.disconnect("c1", id, "closed".into(), 6);
    assert_eq!(
        fleet.begin_restart("c1", "id", "op", false).unwrap_err(),
        CommandRejection::NotConnected {
            last_seen_unix_ms: 5
        }
    );

    let mut no_capability = hello("c2");
    no_capability.capabilities.clear();
    let (tx, _rx2) = mpsc::channel(1);
    fleet.connect(no_capability, tx, 0);
    assert!(matches!(
        fleet.begin_restart("c2", "id", "op", false).unwrap_err(),
        CommandRejection::MissingCapability { .. }
    ));

    let mut no_unit = hello("c3");
    no_unit.unit.clear();
    let (tx, _rx3) = mpsc::channel(1);
    fleet.connect(no_unit, tx, 0);
    assert_eq!(
        fleet.begin_restart("c3", "id", "op", false).unwrap_err(),
        CommandRejection::NoUnit
    );
}

#[test]
fn reset_needs_its_capability() {
    let fleet = Fleet::from_records(Vec::new(), 0);
    let (tx, _rx) = mpsc::channel(1);
    fleet.connect(hello("old"), tx, 0);
    assert_eq!(
        fleet
            .begin_restart("old", "id", "policy", true)
            .unwrap_err(),
        CommandRejection::MissingCapability {
            capability: novamedic_proto::CAPABILITY_RESET_FAILED,
            agent_version: "0.1.0".to_string(),
        }
    );

    let mut current = hello("new");
    current
        .capabilities
        .push(novamedic_proto::CAPABILITY_RESET_FAILED.to_string());
    let (tx, _rx2) = mpsc::channel(1);
    fleet.connect(current, tx, 0);
    assert!(fleet.begin_restart("new", "id", "policy", true).is_ok());
}

#[tokio::test]
async fn restart_pending_until_result() {
    let fleet = Fleet::from_records(Vec::new(), 0);
    let (tx, _rx) = mpsc::channel(1);
    fleet.connect(hello("c1"), tx, 0);

    let ticket = fleet
        .begin_restart("c1", "cmd-1", "alice@host", false)
        .expect("ticket");
    assert_eq!(ticket.unit, "nova-compute.service");
    assert_eq!(
        fleet
            .begin_restart("c1", "cmd-2", "bob@host", false)
            .unwrap_err(),
        CommandRejection::InProgress {
            command_id: "cmd-1".into(),
            requested_by: "alice@host".into()
        }
    );
    assert_eq!(
        fleet.pending_requester("c1", "cmd-1").as_deref(),
        Some("alice@host")
    );

    let result = v1::CommandResult {
        command_id: "cmd-1".into(),
        outcome: v1::CommandOutcome::Succeeded as i32,
        ..Default::default()
    };
    assert_eq!(
        fleet.complete_command("c1", result.clone()).as_deref(),
        Some("alice@host")
    );
    assert_eq!(ticket.reply.await.expect("result delivered"), result);
    assert!(
        fleet.complete_command("c1", result).is_none(),
        "completed once"
    );
    assert!(fleet
        .begin_restart("c1", "cmd-2", "bob@host", false)
        .is_ok());
}

fn searching_hello(node: &str) -> HelloRecord {
    let mut hello = hello(node);
    hello
        .capabilities
        .push(novamedic_proto::CAPABILITY_SEARCH_LOGS.to_string());
    hello
}

#[tokio::test]
async fn search_is_kept_apart_from_restarts() {
    let fleet = Fleet::from_records(Vec::new(), 0);
    let (tx, _rx) = mpsc::channel(1);
    fleet.connect(searching_hello("c1"), tx, 0);

    let restart = fleet
        .begin_restart("c1", "cmd-1", "alice", false)
        .expect("restart");
    let search = fleet
        .begin_search("c1", "search-1")
        .expect("search beside a restart");
    assert!(
        fleet.pending_requester("c1", "search-1").is_none(),
        "a search is no restart"
    );

    let answer = v1::CommandResult {
        command_id: "search-1".into(),
        outcome: v1::CommandOutcome::Succeeded as i32,
        log_search: Some(v1::LogSearchResult::default()),
        ..Default::default()
    };
    assert!(fleet.complete_search("c1", answer.clone()).is_none());
    assert_eq!(search.reply.await.expect("answer delivered"), answer);
    let restart_result = v1::CommandResult {
        command_id: "cmd-1".into(),
        ..Default::default()
    };
    let returned = fleet
        .complete_search("c1", restart_result.clone())
        .expect("not a search");
    assert_eq!(returned, restart_result);
    assert!(fleet.complete_command("c1", returned).is_some());
    assert!(restart.reply.await.is_ok());
}

#[tokio::test]
async fn search_rejections_and_disconnect() {
    let fleet = Fleet::from_records(Vec::new(), 0);
    assert_eq!(
        fleet.begin_search("nope", "s").unwrap_err(),
        CommandRejection::UnknownNode
    );
    let (old_tx, _old_rx) = mpsc::channel(1);
    fleet.connect(hello("old-agent"), old_tx, 0);
    assert_eq!(
        fleet.begin_search("old-agent", "s").unwrap_err(),
        CommandRejection::MissingCapability {
            capability: novamedic_proto::CAPABILITY_SEARCH_LOGS,
            agent_version: "0.1.0".into()
        }
    );

    let (tx, _rx) = mpsc::channel(1);
    let connected = fleet.connect(searching_hello("c1"), tx, 0);
    let search = fleet.begin_search("c1", "s-1").expect("search");
    fleet.disconnect("c1", connected.connection_id, "gone".into(), 10);
    assert!(search.reply.await.is_err(), "the waiter learns at once");
    assert!(matches!(
        fleet.begin_search("c1", "s-2").unwrap_err(),
        CommandRejection::NotConnected { .. }
    ));
}
