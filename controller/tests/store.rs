//! The SQLite store against real files in a temporary directory.

use novamedic::store::{HelloRecord, LatestReport, NewCommand, NewEvent, Store, StoreError};
use novamedic_proto::v1;

fn hello(node: &str) -> HelloRecord {
    HelloRecord {
        node: node.to_string(),
        agent_version: "0.1.0".to_string(),
        protocol_version: 1,
        capabilities: vec!["restart_unit".to_string()],
        unit: "nova-compute.service".to_string(),
        report_interval_ms: 10_000,
    }
}

fn event(node: &str, kind: &str, time_unix_ms: i64) -> NewEvent {
    NewEvent {
        time_unix_ms,
        node: node.to_string(),
        kind: kind.to_string(),
        detail: format!("{kind} at {time_unix_ms}"),
        ..Default::default()
    }
}

fn sample_report() -> v1::NodeReport {
    v1::NodeReport {
        sequence: 7,
        collected_at_unix_ms: 1_700_000_000_000,
        nova_compute: Some(v1::NovaCompute {
            unit: "nova-compute.service".into(),
            active_state: "active".into(),
            sub_state: "running".into(),
            main_pid: 4242,
            ..Default::default()
        }),
        health: Some(v1::Health {
            status: v1::HealthStatus::Degraded as i32,
            reasons: vec!["swap in use".into()],
        }),
        ..Default::default()
    }
}

#[tokio::test]
async fn open_creates_missing_directory() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a").join("b").join("novamedic.db");
    let store = Store::open(&path).await.expect("store opens");
    assert!(path.exists());
    assert_eq!(store.integrity_check().await.unwrap(), "ok");
}

#[tokio::test]
async fn open_error_names_path() {
    let dir = tempfile::tempdir().unwrap();
    let blocker = dir.path().join("file");
    std::fs::write(&blocker, "not a directory").unwrap();
    let path = blocker.join("novamedic.db");
    let err = Store::open(&path).await.expect_err("a file is in the way");
    assert!(
        err.to_string().contains(&blocker.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn second_open_is_refused_until_close() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("novamedic.db");
    let store = Store::open(&path).await.expect("store opens");
    let err = Store::open(&path)
        .await
        .expect_err("the database is locked");
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
    assert!(
        err.to_string().contains("(lock file ")
            && err
                .to_string()
                .contains(&format!("{}.lock", path.display())),
        "{err}"
    );
    store.close().await;
    let reopened = Store::open(&path).await.expect("reopens after close");
    reopened.close().await;
}

#[tokio::test]
async fn node_round_trip_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("novamedic.db");
    let report = sample_report();
    let health = report.health.clone().unwrap();
    {
        let store = Store::open(&path).await.unwrap();
        store
            .upsert_hello(
                &hello("c1"),
                1_000,
                &[event("c1", "agent_connected", 1_000)],
            )
            .await
            .unwrap();
        store
            .save_report(
                "c1",
                &report,
                &health,
                2_000,
                &[event("c1", "health_changed", 2_000)],
            )
            .await
            .unwrap();
        store.close().await;
    }

    let store = Store::open(&path).await.unwrap();
    let node = store.get_node("c1").await.unwrap().expect("node persisted");
    assert_eq!(node.hello, hello("c1"));
    assert_eq!(node.first_seen_unix_ms, 1_000);
    assert_eq!(node.last_seen_unix_ms, 2_000);
    assert_eq!(node.latest_report, Some(report));
    assert_eq!(node.health, health);
    assert_eq!(store.list_nodes().await.unwrap(), vec![node]);
    assert!(store.get_node("other").await.unwrap().is_none());

    let kinds: Vec<_> = store
        .list_events(None, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, vec!["health_changed", "agent_connected"]);
}

#[tokio::test]
async fn second_hello_keeps_first_seen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    store.upsert_hello(&hello("c1"), 1_000, &[]).await.unwrap();
    let mut newer = hello("c1");
    newer.agent_version = "0.2.0".into();
    newer.capabilities.clear();
    store.upsert_hello(&newer, 5_000, &[]).await.unwrap();
    let node = store.get_node("c1").await.unwrap().unwrap();
    assert_eq!(node.first_seen_unix_ms, 1_000);
    assert_eq!(node.hello, newer);
}

#[tokio::test]
async fn events_newest_first_with_limit_and_filter() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    store.upsert_hello(&hello("c1"), 0, &[]).await.unwrap();
    store.upsert_hello(&hello("c2"), 0, &[]).await.unwrap();
    for time in 1..=10 {
        let node = if time % 2 == 0 { "c2" } else { "c1" };
        store
            .append_event(&event(node, "kind", time))
            .await
            .unwrap();
    }

    let all = store.list_events(None, 100).await.unwrap();
    assert_eq!(all.len(), 10);
    let times: Vec<_> = all.iter().map(|e| e.time_unix_ms).collect();
    assert_eq!(times, (1..=10).rev().collect::<Vec<_>>());
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "ids descend");

    let limited = store.list_events(None, 3).await.unwrap();
    assert_eq!(
        limited.iter().map(|e| e.time_unix_ms).collect::<Vec<_>>(),
        vec![10, 9, 8]
    );

    let c1 = store.list_events(Some("c1"), 2).await.unwrap();
    assert_eq!(
        c1.iter().map(|e| e.time_unix_ms).collect::<Vec<_>>(),
        vec![9, 7]
    );
    assert!(c1.iter().all(|e| e.node == "c1"));
}

#[tokio::test]
async fn event_for_unknown_node_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    let err = store
        .append_event(&event("ghost", "kind", 1))
        .await
        .expect_err("foreign key");
    assert!(err.to_string().contains("appending an event"), "{err}");
}

#[tokio::test]
async fn failed_transaction_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    store.upsert_hello(&hello("c1"), 0, &[]).await.unwrap();
    // The second event violates the foreign key, so the report and the first
    // event must roll back with it.
    let events = [event("c1", "health_changed", 5), event("ghost", "kind", 5)];
    let report = sample_report();
    let result = store
        .save_report("c1", &report, &report.health.clone().unwrap(), 5, &events)
        .await;
    assert!(result.is_err());
    let node = store.get_node("c1").await.unwrap().unwrap();
    assert_eq!(node.latest_report, None);
    assert_eq!(node.last_seen_unix_ms, 0);
    assert!(store.list_events(None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn report_batch_skips_older_reports() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    for node in ["c1", "c2", "c3"] {
        store.upsert_hello(&hello(node), 0, &[]).await.unwrap();
    }
    let mut report = sample_report();
    let health = report.health.clone().unwrap();
    // c2 got an urgent write at 500 while the batch below waited.
    report.sequence = 9;
    store
        .save_report("c2", &report, &health, 500, &[])
        .await
        .unwrap();

    let batch: Vec<LatestReport> = [("c1", 100, 1), ("c2", 400, 8), ("c3", 300, 3)]
        .into_iter()
        .map(|(node, arrived_at_unix_ms, sequence)| LatestReport {
            node: node.to_string(),
            report: v1::NodeReport {
                sequence,
                ..sample_report()
            },
            health: health.clone(),
            arrived_at_unix_ms,
        })
        .collect();
    store.save_reports(&batch).await.unwrap();

    let stored = |node: &'static str| {
        let store = &store;
        async move {
            let record = store.get_node(node).await.unwrap().unwrap();
            (
                record.last_seen_unix_ms,
                record.latest_report.map(|r| r.sequence),
            )
        }
    };
    assert_eq!(stored("c1").await, (100, Some(1)));
    assert_eq!(
        stored("c2").await,
        (500, Some(9)),
        "older batch entry skipped"
    );
    assert_eq!(stored("c3").await, (300, Some(3)));
}

#[tokio::test]
async fn command_lifecycle() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).await.unwrap();
    store.upsert_hello(&hello("c1"), 0, &[]).await.unwrap();
    let command = NewCommand {
        command_id: "cmd-1".into(),
        node: "c1".into(),
        unit: "nova-compute.service".into(),
        reason: "stuck".into(),
        requested_by: "alice@ops".into(),
        issued_at_unix_ms: 10,
    };
    let sent = NewEvent {
        command_id: "cmd-1".into(),
        actor: "alice@ops".into(),
        ..event("c1", "command_sent", 10)
    };
    store.record_command(&command, &sent).await.unwrap();
    let unfinished = store.get_command("cmd-1").await.unwrap().unwrap();
    assert_eq!(unfinished.command, command);
    assert_eq!(
        (
            unfinished.outcome,
            unfinished.result,
            unfinished.finished_at_unix_ms
        ),
        (None, None, None)
    );

    let result = v1::CommandResult {
        command_id: "cmd-1".into(),
        outcome: v1::CommandOutcome::Succeeded as i32,
        duration_ms: 900,
        ..Default::default()
    };
    let done = event("c1", "command_result", 20);
    assert!(store
        .finish_command(&result, "succeeded", 20, &done)
        .await
        .unwrap());
    assert!(
        !store
            .finish_command(&result, "succeeded", 30, &done)
            .await
            .unwrap(),
        "finishes once"
    );

    let finished = store.get_command("cmd-1").await.unwrap().unwrap();
    assert_eq!(finished.outcome.as_deref(), Some("succeeded"));
    assert_eq!(finished.result, Some(result));
    assert_eq!(finished.finished_at_unix_ms, Some(20));
    assert_eq!(store.list_commands().await.unwrap(), vec![finished]);

    let duplicate = store.record_command(&command, &sent).await;
    assert!(duplicate.is_err(), "command ids are unique");
}
