//! Mutual TLS and operator roles over real gRPC on loopback, with
//! certificates issued into temporary directories by `novamedic certs`'s
//! own code.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{eventually, hello, report, succeeded_result, FakeAgent};
use novamedic::auth::Roles;
use novamedic::config::{ServerConfig, Transport};
use novamedic::tls_listener::ServerTls;
use novamedic_proto::v1;
use novamedic_proto::v1::operator_service_client::OperatorServiceClient;
use novamedic_tls::{issue, CertKind, TlsFiles, TlsMaterial};
use tokio::sync::{oneshot, Notify};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::Code;

/// A CA with a controller certificate for 127.0.0.1.
struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        issue::init_ca(dir.path(), "test CA").unwrap();
        let pki = Pki { dir };
        pki.issue(CertKind::Controller, "localhost", &["127.0.0.1"]);
        pki
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn issue(&self, kind: CertKind, name: &str, sans: &[&str]) -> TlsFiles {
        let sans: Vec<String> = sans.iter().map(|san| san.to_string()).collect();
        let issued = issue::issue(self.path(), kind, name, &sans, 30).unwrap();
        TlsFiles {
            cert: issued.cert,
            key: issued.key,
            ca: issue::ca_cert_path(self.path()),
            crl: None,
        }
    }

    /// Issues a certificate and moves its files under `copy`, so a second
    /// certificate for the same name can be issued beside it.
    fn issue_kept(&self, kind: CertKind, name: &str, copy: &str) -> TlsFiles {
        let files = self.issue(kind, name, &[]);
        let cert = self.path().join(format!("{copy}.crt"));
        let key = self.path().join(format!("{copy}.key"));
        std::fs::rename(&files.cert, &cert).unwrap();
        std::fs::rename(&files.key, &key).unwrap();
        TlsFiles { cert, key, ..files }
    }
}

/// A controller under mutual TLS, served in-process on a loopback port.
struct TlsServer {
    addr: SocketAddr,
    reload: Arc<Notify>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _db_dir: tempfile::TempDir,
}

impl TlsServer {
    async fn start(pki: &Pki) -> TlsServer {
        let db_dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let config = ServerConfig {
            db: db_dir.path().join("novamedic.db"),
            shutdown_drain: Duration::from_secs(2),
            transport: Transport::MutualTls(TlsFiles {
                cert: pki.path().join("controller-localhost.crt"),
                key: pki.path().join("controller-localhost.key"),
                ca: issue::ca_cert_path(pki.path()),
                crl: Some(issue::crl_path(pki.path())),
            }),
            roles: Roles {
                operators: vec!["alice".into()],
                viewers: vec!["bob".into()],
            },
            ..ServerConfig::default()
        };
        let reload = Arc::new(Notify::new());
        let (stop, stop_rx) = oneshot::channel::<()>();
        let server_reload = Arc::clone(&reload);
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stop_rx.await;
            };
            novamedic::server::serve_with_reload(listener, &config, shutdown, server_reload).await
        });
        TlsServer {
            addr,
            reload,
            stop: Some(stop),
            task,
            _db_dir: db_dir,
        }
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let joined = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("controller stops within 10 s");
        joined.unwrap().expect("controller shuts down cleanly");
    }
}

/// A channel to `addr` presenting `files`' certificate; an error when the
/// connection or its handshake fails.
async fn channel(addr: SocketAddr, files: &TlsFiles) -> Result<Channel, String> {
    let material = TlsMaterial::load(files).map_err(|err| err.to_string())?;
    let verifier = novamedic_tls::rustls_config::server_verifier(&material).unwrap();
    let tls = ClientTlsConfig::new()
        .domain_name("127.0.0.1")
        .identity(Identity::from_pem(&material.cert_pem, &material.key_pem));
    Endpoint::from_shared(format!("https://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .tls_config_with_verifier(tls, verifier)
        .unwrap()
        .connect()
        .await
        .map_err(|err| novamedic::error_chain(&err))
}

async fn operator(addr: SocketAddr, files: &TlsFiles) -> OperatorServiceClient<Channel> {
    let channel = channel(addr, files).await.expect("operator connects");
    OperatorServiceClient::new(channel)
}

/// Waits until `alice` can list nodes, so the server is serving.
async fn wait_until_serving(addr: SocketAddr, alice: &TlsFiles) {
    let serving = eventually(Duration::from_secs(10), || async {
        match channel(addr, alice).await {
            Ok(channel) => OperatorServiceClient::new(channel)
                .list_nodes(v1::ListNodesRequest {})
                .await
                .is_ok(),
            Err(_) => false,
        }
    })
    .await;
    assert!(serving, "controller at {addr} serves under mutual TLS");
}

/// Opens an Attach stream with `files` and sends `hello`; returns the
/// controller's status when it rejects the stream or the connection.
async fn try_attach(addr: SocketAddr, files: &TlsFiles, hello: v1::Hello) -> Result<(), String> {
    let channel = channel(addr, files).await?;
    let first = v1::AgentMessage {
        body: Some(v1::agent_message::Body::Hello(hello)),
    };
    let (_outbound, mut inbound) = common::attach_on(channel, first)
        .await
        .map_err(|status| format!("{:?}: {}", status.code(), status.message()))?;
    match inbound.message().await {
        Ok(Some(message)) => match message.body {
            Some(v1::controller_message::Body::HelloAck(_)) => Ok(()),
            other => Err(format!("expected HelloAck, got {other:?}")),
        },
        Ok(None) => Err("stream closed before HelloAck".into()),
        Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
    }
}

async fn events(client: &mut OperatorServiceClient<Channel>, node: &str) -> Vec<v1::Event> {
    client
        .list_events(v1::ListEventsRequest {
            node: node.to_string(),
            limit: 100,
        })
        .await
        .unwrap()
        .into_inner()
        .events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_with_good_cert_connects() {
    let pki = Pki::new();
    let alice = pki.issue(CertKind::Operator, "alice", &[]);
    let node = pki.issue(CertKind::Node, "compute-01", &[]);
    let server = TlsServer::start(&pki).await;
    wait_until_serving(server.addr, &alice).await;

    let channel = channel(server.addr, &node).await.unwrap();
    let _agent = FakeAgent::connect_on(channel, hello("compute-01")).await;
    let mut client = operator(server.addr, &alice).await;
    let nodes = client
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!nodes.insecure_plaintext);
    assert_eq!(nodes.nodes.len(), 1);
    assert_eq!(nodes.nodes[0].node, "compute-01");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cert_from_other_ca_rejected() {
    let pki = Pki::new();
    let alice = pki.issue(CertKind::Operator, "alice", &[]);
    let server = TlsServer::start(&pki).await;
    wait_until_serving(server.addr, &alice).await;

    let other = Pki::new();
    let mut stranger = other.issue(CertKind::Node, "compute-01", &[]);
    // The stranger trusts the real CA, so only its own certificate is wrong.
    stranger.ca = issue::ca_cert_path(pki.path());
    let refused = try_attach(server.addr, &stranger, hello("compute-01")).await;
    assert!(refused.is_err(), "a certificate of another CA is refused");

    let plain = Endpoint::from_shared(format!("http://{}", server.addr))
        .unwrap()
        .connect()
        .await;
    let plain_call = match plain {
        Ok(channel) => OperatorServiceClient::new(channel)
            .list_nodes(v1::ListNodesRequest {})
            .await
            .is_ok(),
        Err(_) => false,
    };
    assert!(!plain_call, "a plain-text client is refused");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claimed_name_must_match_cert() {
    let pki = Pki::new();
    let alice = pki.issue(CertKind::Operator, "alice", &[]);
    let node = pki.issue(CertKind::Node, "compute-01", &[]);
    let server = TlsServer::start(&pki).await;
    wait_until_serving(server.addr, &alice).await;

    // Register the node once, so its history can hold the rejection.
    try_attach(server.addr, &node, hello("compute-01"))
        .await
        .unwrap();
    let refused = try_attach(server.addr, &node, hello("compute-02"))
        .await
        .unwrap_err();
    assert!(refused.starts_with("PermissionDenied"), "{refused}");
    assert!(refused.contains("claims node \"compute-02\""), "{refused}");
    assert!(refused.contains("issued to \"compute-01\""), "{refused}");

    let operator_cert = try_attach(server.addr, &alice, hello("alice"))
        .await
        .unwrap_err();
    assert!(
        operator_cert.contains("is not a node certificate"),
        "{operator_cert}"
    );

    let mut client = operator(server.addr, &alice).await;
    let history = events(&mut client, "compute-01").await;
    let rejected = history
        .iter()
        .find(|event| event.kind == "stream_rejected")
        .expect("a stream_rejected event");
    assert!(
        rejected.detail.contains("claimed node \"compute-02\""),
        "{}",
        rejected.detail
    );
    let unknown = client
        .get_node(v1::GetNodeRequest {
            node: "compute-02".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), Code::NotFound);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_cert_for_connected_node_rejected() {
    let pki = Pki::new();
    let alice = pki.issue(CertKind::Operator, "alice", &[]);
    let first = pki.issue_kept(CertKind::Node, "compute-01", "first");
    let second = pki.issue_kept(CertKind::Node, "compute-01", "second");
    let server = TlsServer::start(&pki).await;
    wait_until_serving(server.addr, &alice).await;

    let first_channel = channel(server.addr, &first).await.unwrap();
    let mut agent = FakeAgent::connect_on(first_channel, hello("compute-01")).await;

    let refused = try_attach(server.addr, &second, hello("compute-01"))
        .await
        .unwrap_err();
    assert!(refused.starts_with("PermissionDenied"), "{refused}");
    assert!(
        refused.contains("already connected under certificate"),
        "{refused}"
    );

    // The first stream stays open and current.
    assert!(
        agent
            .send_report_checked(report(v1::HealthStatus::Healthy, "active", &[]))
            .await
    );
    let first_serial =
        novamedic_tls::PeerIdentity::from_der(&TlsMaterial::load(&first).unwrap().cert_chain[0])
            .unwrap()
            .serial;
    let second_serial =
        novamedic_tls::PeerIdentity::from_der(&TlsMaterial::load(&second).unwrap().cert_chain[0])
            .unwrap()
            .serial;
    let mut client = operator(server.addr, &alice).await;
    let history = events(&mut client, "compute-01").await;
    let rejected = history
        .iter()
        .find(|event| event.kind == "stream_rejected")
        .expect("a stream_rejected event");
    assert!(
        rejected.detail.contains(&first_serial),
        "{}",
        rejected.detail
    );
    assert!(
        rejected.detail.contains(&second_serial),
        "{}",
        rejected.detail
    );
    assert!(
        rejected.detail.contains("connected from 127.0.0.1:"),
        "{}",
        rejected.detail
    );

    // The same certificate may reconnect: it replaces its own stream.
    try_attach(server.addr, &first, hello("compute-01"))
        .await
        .unwrap();
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_cert_rejected_after_reload() {
    let pki = Pki::new();
    let alice = pki.issue(CertKind::Operator, "alice", &[]);
    let node = pki.issue(CertKind::Node, "compute-01", &[]);
    let server = TlsServer::start(&pki).await;
    wait_until_serving(server.addr, &alice).await;
    try_attach(server.addr, &node, hello("compute-01"))
        .await
        .unwrap();

    issue::revoke(pki.path(), &node.cert).unwrap();
    server.reload.notify_one();
    let refused = eventually(Duration::from_secs(10), || async {
        try_attach(server.addr, &node, hello("compute-01"))
            .await
            .is_err()
    })
    .await;
    assert!(
        refused,
        "the revoked certificate is refused after the reload"
    );
    // Other certificates of the same CA still work.
    let mut client = operator(server.addr, &alice).await;
    assert!(client.list_nodes(v1::ListNodesRequest {}).await.is_ok());
    server.stop().await;
}

#[test]
fn bad_reload_keeps_old_material() {
    let pki = Pki::new();
    let files = TlsFiles {
        cert: pki.path().join("controller-localhost.crt"),
        key: pki.path().join("controller-localhost.key"),
        ca: issue::ca_cert_path(pki.path()),
        crl: Some(issue::crl_path(pki.path())),
    };
    let tls = ServerTls::load(&files).unwrap();
    std::fs::write(issue::crl_path(pki.path()), "not a CRL\n").unwrap();
    let err = tls.reload().unwrap_err().to_string();
    assert!(err.contains("ca.crl"), "{err}");
    assert!(err.contains("no PEM revocation list"), "{err}");
}

#[test]
fn material_errors_name_file_and_problem() {
    let pki = Pki::new();
    let node = pki.issue(CertKind::Node, "compute-01", &[]);
    let other = pki.issue(CertKind::Node, "compute-02", &[]);
    let missing = TlsFiles {
        cert: pki.path().join("absent.crt"),
        ..node.clone()
    };
    let not_pem = TlsFiles {
        ca: pki.path().join("ca.key.txt"),
        ..node.clone()
    };
    std::fs::write(&not_pem.ca, "hello\n").unwrap();
    let mismatched = TlsFiles {
        key: other.key.clone(),
        ..node.clone()
    };
    // (files, fragments the message must contain)
    let cases = [
        (
            missing,
            vec!["certificate file", "absent.crt", "is missing"],
        ),
        (not_pem, vec!["CA file", "ca.key.txt", "no PEM certificate"]),
        (
            mismatched,
            vec!["private key file", "node-compute-02.key", "does not match"],
        ),
    ];
    for (files, fragments) in cases {
        let message = TlsMaterial::load(&files).unwrap_err().to_string();
        for fragment in fragments {
            assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_lists_but_cannot_restart() {
    let pki = Pki::new();
    let alice = pki.issue(CertKind::Operator, "alice", &[]);
    let bob = pki.issue(CertKind::Operator, "bob", &[]);
    let carol = pki.issue(CertKind::Operator, "carol", &[]);
    let node = pki.issue(CertKind::Node, "compute-01", &[]);
    let server = TlsServer::start(&pki).await;
    wait_until_serving(server.addr, &alice).await;

    let mut viewer = operator(server.addr, &bob).await;
    assert!(viewer.list_nodes(v1::ListNodesRequest {}).await.is_ok());
    let denied = viewer
        .restart_nova_compute(v1::RestartRequest {
            node: "compute-01".into(),
            reason: "stuck".into(),
            requested_by: "bob@laptop".into(),
            wait_ms: 1000,
        })
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("bob lacks the operator role"),
        "{}",
        denied.message()
    );

    let mut nobody = operator(server.addr, &carol).await;
    let denied = nobody
        .list_nodes(v1::ListNodesRequest {})
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("carol lacks the viewer role"),
        "{}",
        denied.message()
    );

    let mut node_client = operator(server.addr, &node).await;
    let denied = node_client
        .list_events(v1::ListEventsRequest::default())
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("not an operator certificate"),
        "{}",
        denied.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_restart_records_identity() {
    let pki = Pki::new();
    let alice = pki.issue(CertKind::Operator, "alice", &[]);
    let node = pki.issue(CertKind::Node, "compute-01", &[]);
    let server = TlsServer::start(&pki).await;
    wait_until_serving(server.addr, &alice).await;

    let node_channel = channel(server.addr, &node).await.unwrap();
    let mut agent = FakeAgent::connect_on(node_channel, hello("compute-01")).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;

    let mut client = operator(server.addr, &alice).await;
    let call = tokio::spawn(async move {
        client
            .restart_nova_compute(v1::RestartRequest {
                node: "compute-01".into(),
                reason: "wedged".into(),
                // A name the client claims; the certificate's name wins.
                requested_by: "mallory@laptop".into(),
                wait_ms: 30_000,
            })
            .await
    });
    let command = agent.next_command().await;
    assert_eq!(command.requested_by, "alice");
    agent
        .send_result(succeeded_result(&command, v1::CommandOutcome::Succeeded))
        .await;
    let response = call.await.unwrap().expect("restart succeeds").into_inner();
    assert_eq!(response.command_id, command.command_id);

    let mut client = operator(server.addr, &alice).await;
    let history = events(&mut client, "compute-01").await;
    for kind in ["command_sent", "command_result"] {
        let event = history
            .iter()
            .find(|event| event.kind == kind)
            .unwrap_or_else(|| panic!("a {kind} event in {history:?}"));
        assert_eq!(event.actor, "alice", "{kind}");
    }
    server.stop().await;
}

/// Runs the `novamedic` binary and returns its exit code and stderr.
async fn novamedic(args: &[&str]) -> (i32, String) {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args(args)
        .env_remove("NOVAMEDIC_CONTROLLER")
        .env("NOVAMEDIC_LOG", "warn")
        .output()
        .await
        .unwrap();
    (
        output.status.code().unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_only_with_flag() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controller.toml");
    let db = dir.path().join("novamedic.db");
    std::fs::write(&config, format!("db = \"{}\"\n", db.display())).unwrap();
    let config = config.to_str().unwrap();

    // Without the flag the controller insists on its TLS files.
    let (code, stderr) = novamedic(&["serve", "--config", config, "--listen", "127.0.0.1:0"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("certificate file /etc/novamedic/tls/controller.crt"),
        "{stderr}"
    );
    assert!(stderr.contains("--insecure-plaintext"), "{stderr}");

    // With it, the controller warns at start and in `novamedic nodes`.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args([
            "serve",
            "--insecure-plaintext",
            "--config",
            config,
            "--listen",
            &listen,
        ])
        .env("NOVAMEDIC_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("http://{listen}");
    let serving = eventually(Duration::from_secs(10), || {
        let url = url.clone();
        async move { OperatorServiceClient::connect(url).await.is_ok() }
    })
    .await;
    assert!(serving, "plain-text controller serves");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args(["--controller", &url, "nodes"])
        .env_remove("NOVAMEDIC_CONTROLLER")
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout.contains("WARNING: the controller runs with --insecure-plaintext"),
        "{stdout}"
    );

    rustix_kill(&child);
    let output = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("WARN"), "{log}");
    assert!(log.contains("serving plain-text gRPC"), "{log}");
}

/// Sends SIGTERM to the child, so it logs and exits on its own.
fn rustix_kill(child: &tokio::process::Child) {
    let pid = child.id().expect("child still running");
    let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_revocation_list() {
    let pki = Pki::new();
    let alice = pki.issue(CertKind::Operator, "alice", &[]);
    let node = pki.issue(CertKind::Node, "compute-01", &[]);
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = dir.path().join("controller.toml");
    let text = format!(
        "listen = \"127.0.0.1:{port}\"\ndb = \"{db}\"\n[tls]\ncert = \"{ca}/controller-localhost.crt\"\n\
         key = \"{ca}/controller-localhost.key\"\nca = \"{ca}/ca.crt\"\ncrl = \"{ca}/ca.crl\"\n\
         [roles]\noperators = [\"alice\"]\n",
        db = dir.path().join("novamedic.db").display(),
        ca = pki.path().display(),
    );
    std::fs::write(&config, text).unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .env("NOVAMEDIC_LOG", "info")
        .env("NO_COLOR", "1")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_until_serving(addr, &alice).await;
    try_attach(addr, &node, hello("compute-01")).await.unwrap();

    issue::revoke(pki.path(), &node.cert).unwrap();
    let pid = rustix::process::Pid::from_raw(child.id().unwrap() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    let refused = eventually(Duration::from_secs(10), || async {
        try_attach(addr, &node, hello("compute-01")).await.is_err()
    })
    .await;
    assert!(refused, "the revoked certificate is refused after SIGHUP");

    rustix_kill(&child);
    let output = child.wait_with_output().await.unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(log.contains("reloaded TLS certificates"), "{log}");
}
