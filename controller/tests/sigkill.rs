//! SIGKILL in the middle of writes must leave a consistent database: the real
//! `novamedic serve` binary under load from fake agents, killed, restarted.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::{hello, report, FakeAgent};
use novamedic::store::Store;
use novamedic_proto::v1;
use novamedic_proto::v1::operator_service_client::OperatorServiceClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

const NODES: usize = 4;

/// Starts `novamedic serve` on an ephemeral loopback port and returns the
/// process with the address it logged.
async fn spawn_controller(db: &Path) -> (Child, SocketAddr) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args([
            "serve",
            "--insecure-plaintext",
            "--listen",
            "127.0.0.1:0",
            "--db",
        ])
        .arg(db)
        .arg("--config")
        .arg(db.with_file_name("controller.toml"))
        .env("NOVAMEDIC_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("novamedic serve starts");
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
            .await
            .expect("controller logs within 20 s")
            .expect("stderr readable")
            .expect("controller did not exit before serving");
        if let Some(addr) = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("listen="))
        {
            break addr.parse().expect("logged listen address");
        }
    };
    // Keep draining stderr so the controller never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

async fn operator(addr: SocketAddr) -> OperatorServiceClient<tonic::transport::Channel> {
    OperatorServiceClient::connect(format!("http://{addr}"))
        .await
        .expect("operator connects")
}

/// Sends reports that alternate health, one event each, until the stream
/// breaks.
async fn flood_reports(mut agent: FakeAgent) {
    for index in 0u64.. {
        let status = if index % 2 == 0 {
            v1::HealthStatus::Healthy
        } else {
            v1::HealthStatus::Degraded
        };
        let message = report(status, "active", &[]);
        let sent =
            tokio::time::timeout(Duration::from_secs(2), agent.send_report_checked(message)).await;
        if !matches!(sent, Ok(true)) {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_leaves_consistent_database() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("controller.toml"),
        "shutdown_drain_seconds = 2\n",
    )
    .unwrap();
    let db = dir.path().join("novamedic.db");
    let (mut controller, addr) = spawn_controller(&db).await;

    // Load: every node floods reports; node 0 also answers restarts.
    let mut flooders = Vec::new();
    let mut answerer = None;
    for index in 0..NODES {
        let agent = FakeAgent::connect(addr, hello(&format!("compute-{index:02}"))).await;
        if index == 0 {
            answerer = Some(agent.answer_commands(v1::CommandOutcome::Succeeded));
        } else {
            flooders.push(tokio::spawn(flood_reports(agent)));
        }
    }
    let completed = Arc::new(Mutex::new(Vec::<String>::new()));
    let restarts = {
        let completed = Arc::clone(&completed);
        let mut client = operator(addr).await;
        tokio::spawn(async move {
            loop {
                let request = v1::RestartRequest {
                    node: "compute-00".into(),
                    reason: "load test".into(),
                    requested_by: "test@localhost".into(),
                    wait_ms: 2_000,
                };
                match client.restart_nova_compute(request).await {
                    Ok(response) => completed
                        .lock()
                        .await
                        .push(response.into_inner().command_id),
                    Err(_) => return,
                }
            }
        })
    };

    // Let the load run, snapshot what the controller has committed, then
    // kill it while the writers are still going.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut client = operator(addr).await;
    let events_before = client
        .list_events(v1::ListEventsRequest {
            node: String::new(),
            limit: 1000,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let nodes_before = client
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let completed_before = completed.lock().await.clone();
    tokio::time::sleep(Duration::from_millis(200)).await;
    controller
        .start_kill()
        .expect("SIGKILL sent to the controller we spawned");
    let status = controller.wait().await.unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "killed by SIGKILL"
    );

    for flooder in flooders {
        let _ = flooder.await;
    }
    let _ = restarts.await;
    if let Some(answerer) = answerer {
        let _ = answerer.await;
    }
    assert!(
        events_before.len() > 50,
        "load produced events: {}",
        events_before.len()
    );
    assert!(
        !completed_before.is_empty(),
        "at least one restart completed before the kill"
    );

    // The controller starts again on the same database and serves the old state.
    let (mut restarted, addr) = spawn_controller(&db).await;
    let mut client = operator(addr).await;
    let nodes_after = client
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner()
        .nodes;
    let names_after: HashSet<_> = nodes_after.iter().map(|n| n.node.clone()).collect();
    for node in &nodes_before {
        assert!(
            names_after.contains(&node.node),
            "node {} survived",
            node.node
        );
    }
    assert_eq!(nodes_after.len(), NODES);
    restarted.start_kill().unwrap();
    restarted.wait().await.unwrap();

    // Inspect the file directly.
    let store = Store::open(&db).await.expect("database reopens");
    assert_eq!(store.integrity_check().await.unwrap(), "ok");

    let events_after = store.list_events(None, u32::MAX).await.unwrap();
    let by_id: std::collections::HashMap<i64, &v1::Event> =
        events_after.iter().map(|e| (e.id, e)).collect();
    for event in &events_before {
        assert_eq!(
            by_id.get(&event.id),
            Some(&event),
            "event {} survived unchanged",
            event.id
        );
    }

    let commands = store.list_commands().await.unwrap();
    let finished: HashSet<_> = commands
        .iter()
        .filter(|c| c.finished_at_unix_ms.is_some())
        .map(|c| c.command.command_id.clone())
        .collect();
    for command in &commands {
        let parts = [
            command.outcome.is_some(),
            command.result.is_some(),
            command.finished_at_unix_ms.is_some(),
        ];
        assert!(
            parts.iter().all(|p| *p) || parts.iter().all(|p| !*p),
            "command {} is either complete or visibly unfinished: {command:?}",
            command.command.command_id
        );
        let kinds: Vec<_> = events_after
            .iter()
            .filter(|e| e.command_id == command.command.command_id)
            .map(|e| e.kind.as_str())
            .collect();
        // A command row and its events commit together.
        let expected = if command.finished_at_unix_ms.is_some() {
            vec!["command_result", "command_sent"]
        } else {
            vec!["command_sent"]
        };
        assert_eq!(
            kinds, expected,
            "events of command {}",
            command.command.command_id
        );
    }
    for command_id in &completed_before {
        assert!(
            finished.contains(command_id),
            "answered command {command_id} is finished in the store"
        );
    }
    store.close().await;
}
