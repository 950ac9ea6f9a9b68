//! Controller and agent in one process over loopback gRPC.
//!
//! The controller, its SQLite store, the agent's transport, executor, ledger
//! and report builder are all real; only systemd is replaced by a scripted
//! `ServiceManager`, so these checks run in seconds on any machine. The
//! system tests prove the same paths against a real systemd.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use novamedic::auth::Roles;
use novamedic::config::{ServerConfig, Transport as ServerTransport};
use novamedic_agent::config::AgentConfig;
use novamedic_agent::executor::{Executor, ExecutorSettings};
use novamedic_agent::logsearch::SearchSource;
use novamedic_agent::report::ReportBuilder;
use novamedic_agent::systemd::{
    RestartReport, ServiceManager, SystemdError, UnitObservation, UnitSnapshot,
};
use novamedic_agent::transport::{spawn_transition_recorder, TransitionLog, Transport};
use novamedic_proto::v1::operator_service_client::OperatorServiceClient;
use novamedic_proto::v1::{self, CommandOutcome};
use novamedic_tls::{issue, CertKind, TlsFiles, TlsMaterial};
use tokio::sync::{oneshot, watch};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity};

const UNIT: &str = "nova-compute.service";
const NODE: &str = "loopback-01";

fn snapshot(active: &str, pid: u32, invocation: &str) -> UnitSnapshot {
    UnitSnapshot {
        unit: UNIT.to_string(),
        load_state: "loaded".to_string(),
        active_state: active.to_string(),
        sub_state: if active == "active" {
            "running"
        } else {
            "failed"
        }
        .to_string(),
        result: if active == "active" {
            "success"
        } else {
            "signal"
        }
        .to_string(),
        main_pid: pid,
        invocation_id: invocation.to_string(),
        ..Default::default()
    }
}

/// A systemd stand-in whose restarts give a new MainPID and InvocationID and
/// publish them on the unit watch, as the real watch would.
struct ScriptedSystemd {
    next_pid: AtomicU32,
    unit_tx: watch::Sender<UnitObservation>,
}

impl ServiceManager for ScriptedSystemd {
    async fn unit_snapshot(&self, unit: &str) -> Result<UnitSnapshot, SystemdError> {
        match &*self.unit_tx.borrow() {
            UnitObservation::Known(snapshot) if snapshot.unit == unit => Ok(snapshot.clone()),
            _ => Err(SystemdError::UnitNotFound(unit.to_string())),
        }
    }

    async fn restart_unit(
        &self,
        unit: &str,
        _settle: Duration,
        _deadline: Duration,
    ) -> Result<RestartReport, SystemdError> {
        let before = self.unit_snapshot(unit).await?;
        let pid = self.next_pid.fetch_add(1, Ordering::SeqCst);
        let after = snapshot("active", pid, &format!("{pid:032x}"));
        self.unit_tx
            .send_replace(UnitObservation::Known(after.clone()));
        Ok(RestartReport {
            job_result: "done".to_string(),
            before,
            after,
            stayed_active: true,
            timed_out: false,
            detail: "restarted".to_string(),
        })
    }

    async fn reset_failed_unit(&self, _unit: &str) -> Result<(), SystemdError> {
        Ok(())
    }
}

struct Harness {
    operator: OperatorServiceClient<Channel>,
    unit_tx: watch::Sender<UnitObservation>,
    /// nova-compute's log file as the agent's log search sees it; the
    /// directory starts empty.
    log_file: PathBuf,
    _dirs: tempfile::TempDir,
    stop_controller: Option<oneshot::Sender<()>>,
    stop_agent: Option<oneshot::Sender<()>>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        if let Some(stop) = self.stop_agent.take() {
            let _ = stop.send(());
        }
        if let Some(stop) = self.stop_controller.take() {
            let _ = stop.send(());
        }
    }
}

/// Name of the operator certificate under mutual TLS; it holds the
/// operator role.
const OPERATOR: &str = "ops";

async fn start() -> Harness {
    start_with(None).await
}

/// Issues a CA, the controller's, the node's and the operator's
/// certificates into `dir`; returns the TLS files of the three.
fn issue_certificates(dir: &Path) -> [TlsFiles; 3] {
    issue::init_ca(dir, "loopback CA").unwrap();
    let files = |kind, name: &str, sans: &[String]| {
        let issued = issue::issue(dir, kind, name, sans, 1).unwrap();
        TlsFiles {
            cert: issued.cert,
            key: issued.key,
            ca: issue::ca_cert_path(dir),
            crl: Some(issue::crl_path(dir)),
        }
    };
    [
        files(
            CertKind::Controller,
            "localhost",
            &["127.0.0.1".to_string()],
        ),
        files(CertKind::Node, NODE, &[]),
        files(CertKind::Operator, OPERATOR, &[]),
    ]
}

/// Starts controller and agent, under mutual TLS with certificates issued
/// into `tls_dir` when it is given, else in plain text.
async fn start_with(tls_dir: Option<&Path>) -> Harness {
    let dirs = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let certificates = tls_dir.map(issue_certificates);
    let server_config = ServerConfig {
        listen: addr,
        db: dirs.path().join("controller/novamedic.db"),
        transport: match &certificates {
            Some([controller, _, _]) => ServerTransport::MutualTls(controller.clone()),
            None => ServerTransport::Plaintext,
        },
        roles: Roles {
            operators: vec![OPERATOR.to_string()],
            viewers: Vec::new(),
        },
        ..Default::default()
    };
    let (stop_controller, controller_stopped) = oneshot::channel::<()>();
    tokio::spawn(async move {
        novamedic::server::serve_with_listener(listener, &server_config, async {
            let _ = controller_stopped.await;
        })
        .await
        .expect("controller failed");
    });

    let (unit_tx, unit_rx) = watch::channel(UnitObservation::Known(snapshot(
        "active",
        100,
        "0123456789abcdef0123456789abcdef",
    )));
    let systemd = ScriptedSystemd {
        next_pid: AtomicU32::new(200),
        unit_tx: unit_tx.clone(),
    };
    let config = AgentConfig {
        node: NODE.to_string(),
        controller: match &certificates {
            Some(_) => format!("https://{addr}"),
            None => format!("http://{addr}"),
        },
        tls: certificates.as_ref().map(|[_, node, _]| node.clone()),
        state_dir: dirs.path().join("agent"),
        // Long enough that no periodic report interferes: every report a
        // test sees is the connect report or one sent for a unit change.
        report_interval: Duration::from_secs(60),
        nova_compute_unit: Some(UNIT.to_string()),
        ..Default::default()
    };
    let log_dir = dirs.path().join("log");
    std::fs::create_dir_all(&log_dir).unwrap();
    let log_file = log_dir.join("nova-compute.log");
    let source = SearchSource::shipped(log_file.clone());
    let executor = Executor::open(
        systemd,
        unit_rx.clone(),
        &ExecutorSettings::from_config(&config),
    )
    .unwrap()
    .with_log_search(Arc::new(move || source.clone()));
    let transitions = Arc::new(TransitionLog::default());
    spawn_transition_recorder(unit_rx.clone(), transitions.clone());
    let builder = ReportBuilder::new(&config);
    let transport = Transport::new(config, Arc::new(executor), builder, unit_rx, transitions);
    let (stop_agent, agent_stopped) = oneshot::channel::<()>();
    tokio::spawn(transport.run(async {
        let _ = agent_stopped.await;
    }));

    let operator =
        connect_operator(addr, certificates.as_ref().map(|[_, _, operator]| operator)).await;
    Harness {
        operator,
        unit_tx,
        log_file,
        _dirs: dirs,
        stop_controller: Some(stop_controller),
        stop_agent: Some(stop_agent),
    }
}

async fn connect_operator(
    addr: SocketAddr,
    tls: Option<&TlsFiles>,
) -> OperatorServiceClient<Channel> {
    let endpoint = match tls {
        None => Endpoint::from_shared(format!("http://{addr}")).unwrap(),
        Some(files) => {
            let material = TlsMaterial::load(files).unwrap();
            let verifier = novamedic_tls::rustls_config::server_verifier(&material).unwrap();
            let config = ClientTlsConfig::new()
                .domain_name("127.0.0.1")
                .identity(Identity::from_pem(&material.cert_pem, &material.key_pem));
            Endpoint::from_shared(format!("https://{addr}"))
                .unwrap()
                .tls_config_with_verifier(config, verifier)
                .unwrap()
        }
    };
    for _ in 0..100 {
        if let Ok(channel) = endpoint.connect().await {
            return OperatorServiceClient::new(channel);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("controller at {addr} did not accept connections");
}

/// Polls GetNode until `check` holds, or fails after `limit`.
async fn wait_for_node(
    operator: &mut OperatorServiceClient<Channel>,
    limit: Duration,
    what: &str,
    check: impl Fn(&v1::NodeStatus) -> bool,
) -> v1::NodeStatus {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = None;
    while tokio::time::Instant::now() < deadline {
        let request = v1::GetNodeRequest {
            node: NODE.to_string(),
        };
        if let Ok(response) = operator.get_node(request).await {
            let status = response.into_inner();
            if check(&status) {
                return status;
            }
            last = Some(status);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("node {NODE} never showed {what} within {limit:?}; last status: {last:#?}");
}

/// Returns the node's latest 100 events, newest first.
async fn node_events(operator: &mut OperatorServiceClient<Channel>) -> Vec<v1::Event> {
    let request = v1::ListEventsRequest {
        node: NODE.to_string(),
        limit: 100,
    };
    operator
        .list_events(request)
        .await
        .unwrap()
        .into_inner()
        .events
}

fn unit_of(status: &v1::NodeStatus) -> v1::NovaCompute {
    status
        .report
        .as_ref()
        .and_then(|report| report.nova_compute.clone())
        .unwrap_or_default()
}

fn meminfo_total_bytes() -> u64 {
    let text = std::fs::read_to_string("/proc/meminfo").unwrap();
    let line = text.lines().find(|l| l.starts_with("MemTotal:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_registers_with_real_resources() {
    let mut harness = start().await;

    let status = wait_for_node(
        &mut harness.operator,
        Duration::from_secs(10),
        "a report",
        |s| s.report.is_some(),
    )
    .await;

    assert!(status.connected, "agent stream is open");
    assert_eq!(status.protocol_version, novamedic_proto::PROTOCOL_VERSION);
    assert!(status
        .capabilities
        .contains(&novamedic_proto::CAPABILITY_RESTART_UNIT.to_string()));
    let report = status.report.unwrap();
    let resources = report.resources.unwrap();
    assert_eq!(resources.memory_total_bytes, meminfo_total_bytes());
    assert!(resources.cpu_count >= 1);
    let unit = report.nova_compute.unwrap();
    assert_eq!(unit.unit, UNIT);
    assert_eq!(unit.active_state, "active");
    assert_eq!(unit.main_pid, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_round_trip_changes_pid_and_invocation() {
    let mut harness = start().await;
    wait_for_node(
        &mut harness.operator,
        Duration::from_secs(10),
        "a connected agent",
        |s| s.connected && s.report.is_some(),
    )
    .await;

    let response = harness
        .operator
        .restart_nova_compute(v1::RestartRequest {
            node: NODE.to_string(),
            reason: "loopback test".to_string(),
            requested_by: "tester@loopback".to_string(),
            wait_ms: 30_000,
        })
        .await
        .expect("restart request failed")
        .into_inner();

    let result = response.result.expect("restart has a result");
    assert_eq!(
        result.outcome,
        CommandOutcome::Succeeded as i32,
        "{}",
        result.detail
    );
    let before = result.before.unwrap();
    let after = result.after.unwrap();
    assert_eq!(before.main_pid, 100);
    assert_eq!(after.main_pid, 200);
    assert_ne!(before.invocation_id, after.invocation_id);

    let events = node_events(&mut harness.operator).await;
    let sent = events
        .iter()
        .find(|e| e.kind == "command_sent")
        .expect("command_sent event recorded");
    assert_eq!(sent.actor, "tester@loopback");
    assert_eq!(sent.command_id, response.command_id);
    assert!(
        events
            .iter()
            .any(|e| e.kind == "command_result" && e.command_id == response.command_id),
        "command_result event recorded: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unit_failure_sent_as_unit_change() {
    let mut harness = start().await;
    wait_for_node(
        &mut harness.operator,
        Duration::from_secs(10),
        "active unit",
        |s| unit_of(s).active_state == "active",
    )
    .await;

    harness
        .unit_tx
        .send_replace(UnitObservation::Known(snapshot(
            "failed",
            0,
            "0123456789abcdef0123456789abcdef",
        )));

    // The report interval is 60 s; the change must not wait for it. The
    // limit is generous for a loaded CI machine; BENCHMARKS.md has the
    // measured latency.
    let status = wait_for_node(
        &mut harness.operator,
        Duration::from_secs(5),
        "failed unit",
        |s| unit_of(s).active_state == "failed",
    )
    .await;
    let health = status.health.clone().unwrap();
    assert_eq!(
        health.status,
        v1::HealthStatus::Failed as i32,
        "{:?}",
        health.reasons
    );
    let report = status.report.unwrap();
    assert_eq!(
        report.trigger,
        v1::ReportTrigger::UnitChange as i32,
        "the failure rides on an immediate report, not the periodic one"
    );
    assert!(
        report
            .transitions
            .iter()
            .any(|t| t.active_state == "failed"),
        "the report carries the transition: {:?}",
        report.transitions
    );

    let events = node_events(&mut harness.operator).await;
    assert!(
        events
            .iter()
            .any(|e| e.kind == "unit_state_changed" && e.detail.contains("failed")),
        "unit_state_changed event recorded: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_under_mutual_tls_restarts() {
    let tls_dir = tempfile::tempdir().unwrap();
    let mut harness = start_with(Some(tls_dir.path())).await;
    let status = wait_for_node(
        &mut harness.operator,
        Duration::from_secs(10),
        "a report over mutual TLS",
        |s| s.report.is_some(),
    )
    .await;
    assert!(status.connected, "agent stream is open");

    let response = harness
        .operator
        .restart_nova_compute(v1::RestartRequest {
            node: NODE.to_string(),
            reason: "loopback under TLS".to_string(),
            requested_by: "someone-else@laptop".to_string(),
            wait_ms: 30_000,
        })
        .await
        .expect("the operator certificate may restart")
        .into_inner();
    assert_eq!(
        response.result.as_ref().map(|result| result.outcome),
        Some(CommandOutcome::Succeeded as i32),
        "{response:?}"
    );

    let events = harness
        .operator
        .list_events(v1::ListEventsRequest {
            node: NODE.to_string(),
            limit: 50,
        })
        .await
        .unwrap()
        .into_inner()
        .events;
    let sent = events
        .iter()
        .find(|event| event.kind == "command_sent")
        .expect("a command_sent event");
    assert_eq!(sent.actor, OPERATOR);
}

const INSTANCE: &str = "6f1b8f4e-3c2a-4d5b-9e8f-0a1b2c3d4e5f";
const REQUEST: &str = "req-0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01";

/// 2026-12-04T10:00:00Z, the time of the records below.
const LOGGED_AT_MS: i64 = 1_796_378_400_000;

/// Writes a current log and a compressed rotated copy, each with one
/// record of the instance, the older one a traceback.
fn write_rotated_logs(log_file: &Path) {
    let context = format!("[{REQUEST} admin admin - - -]");
    let claim = format!(
        "2026-12-04 10:00:01.000 4242 INFO nova.compute.claims {context} [instance: {INSTANCE}] Claim successful\n\
         2026-12-04 10:00:02.000 4242 INFO nova.compute.manager [-] unrelated\n"
    );
    let rotated = log_file.with_file_name("nova-compute.log.1.gz");
    let mut gz = flate2::write::GzEncoder::new(
        std::fs::File::create(rotated).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(claim.as_bytes()).unwrap();
    gz.finish().unwrap();
    let spawn = format!(
        "2026-12-04 10:00:30.000 4242 ERROR nova.compute.manager {context} [instance: {INSTANCE}] Instance failed to spawn: libvirt.libvirtError: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\n\
         2026-12-04 10:00:30.000 4242 ERROR nova.compute.manager [instance: {INSTANCE}] Traceback (most recent call last):\n\
         2026-12-04 10:00:30.000 4242 ERROR nova.compute.manager [instance: {INSTANCE}] libvirt.libvirtError: Failed to connect socket to '/var/run/libvirt/libvirt-sock': No such file or directory\n"
    );
    std::fs::write(log_file, spawn).unwrap();
}

fn search(start_unix_ms: i64, end_unix_ms: i64) -> v1::SearchNodeLogsRequest {
    v1::SearchNodeLogsRequest {
        node: NODE.to_string(),
        search: Some(v1::SearchLogs {
            instance_uuid: INSTANCE.to_string(),
            request_ids: vec![REQUEST.to_string()],
            start_unix_ms,
            end_unix_ms,
            max_records: 50,
        }),
        wait_ms: 10_000,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_search_round_trip() {
    let mut harness = start().await;
    write_rotated_logs(&harness.log_file);
    let status = wait_for_node(
        &mut harness.operator,
        Duration::from_secs(10),
        "a connected agent",
        |s| s.connected,
    )
    .await;
    assert!(
        status.capabilities.iter().any(|c| c == "search_logs"),
        "{:?}",
        status.capabilities
    );

    let window = search(LOGGED_AT_MS - 60_000, LOGGED_AT_MS + 60_000);
    let response = harness
        .operator
        .search_node_logs(window)
        .await
        .expect("search failed")
        .into_inner();
    let result = response.result.expect("an answer");
    assert_eq!(
        result.outcome(),
        CommandOutcome::Succeeded,
        "{}",
        result.detail
    );
    let found = result.log_search.expect("records");
    assert_eq!(found.records.len(), 2, "{found:#?}");
    assert!(found.records[0].file.ends_with("nova-compute.log.1.gz"));
    assert!(found.records[0].text.contains("Claim successful"));
    let spawn = &found.records[1];
    assert_eq!(
        spawn.text.lines().count(),
        3,
        "traceback joined: {}",
        spawn.text
    );
    assert_eq!(spawn.fault_kind, "hypervisor_connection", "{spawn:#?}");
    assert_eq!(found.files.len(), 2);

    let events = node_events(&mut harness.operator).await;
    let logged = events
        .iter()
        .find(|e| e.kind == "log_search")
        .expect("the search is in the history");
    assert!(logged.detail.contains(INSTANCE), "{logged:?}");
    assert!(logged.detail.contains("2 records"), "{logged:?}");
    assert!(
        !events.iter().any(|e| e.kind == "command_result_unmatched"),
        "the answer completes the search: {events:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_search_rejections_name_the_reason() {
    let mut harness = start().await;
    wait_for_node(
        &mut harness.operator,
        Duration::from_secs(10),
        "a connected agent",
        |s| s.connected,
    )
    .await;

    let week_and_a_day = 8 * 24 * 3_600_000;
    let answer = harness
        .operator
        .search_node_logs(search(LOGGED_AT_MS, LOGGED_AT_MS + week_and_a_day))
        .await
        .expect("the agent answers")
        .into_inner()
        .result
        .unwrap();
    assert_eq!(answer.outcome(), CommandOutcome::Rejected);
    assert!(answer.detail.contains("longer than"), "{}", answer.detail);

    let mut unknown = search(LOGGED_AT_MS, LOGGED_AT_MS + 1);
    unknown.node = "no-such-node".to_string();
    let status = harness
        .operator
        .search_node_logs(unknown)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");

    let mut too_long = search(LOGGED_AT_MS, LOGGED_AT_MS + 1);
    too_long.wait_ms = 3_600_000;
    let status = harness
        .operator
        .search_node_logs(too_long)
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument, "{status:?}");
}
