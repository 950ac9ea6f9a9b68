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
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        cells[..5],
        ["compute-01", "healthy", "active/running", "-", "25.0"],
        "no RPC probe in the report, so its column shows -: {row}"
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
        "--wait",
        "2m",
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
    assert_eq!(commands[1].timeout_ms, 120_000, "--wait 2m is two minutes");
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
    let url = unreachable_controller();
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

/// A fleet whose ListNodes reply exceeds tonic's 4 MiB default still lists.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_reply_above_four_mib_lists() {
    let server = TestServer::start().await;
    let mut agents = Vec::new();
    for index in 0..5 {
        let node = format!("compute-{index:02}");
        let mut agent = FakeAgent::connect(server.addr, hello(&node)).await;
        let mut big = report(v1::HealthStatus::Healthy, "active", &[]);
        if let Some(nova) = big.nova_compute.as_mut() {
            nova.unknown_reason = "x".repeat(1 << 20);
        }
        agent.send_report(big).await;
        agents.push(agent);
    }
    let client = server.operator().await;
    let all_arrived = eventually(Duration::from_secs(10), || {
        let client = client.clone();
        async move {
            let reply = client
                .max_decoding_message_size(64 << 20)
                .list_nodes(v1::ListNodesRequest {})
                .await;
            reply.is_ok_and(|r| r.into_inner().nodes.iter().all(|n| n.report.is_some()))
        }
    })
    .await;
    assert!(all_arrived, "five reports arrive");

    let run = novamedic(&["--controller", &server.url(), "-o", "json", "nodes"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(json(&run).as_array().map(Vec::len), Some(5));
    drop(agents);
    server.stop().await;
}

/// Without $SUDO_USER and $USER the CLI still names the requester.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_without_user_env_names_user() {
    let (server, agent) = server_with_node().await;
    let answering = agent.answer_commands(v1::CommandOutcome::Succeeded);
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args(["--controller", &server.url(), "-o", "json", "restart"])
        .args(["compute-01", "--reason", "no user env"])
        .env_remove("NOVAMEDIC_CONTROLLER")
        .env_remove("SUDO_USER")
        .env_remove("USER")
        .env("NOVAMEDIC_LOG", "warn")
        .output()
        .await
        .expect("novamedic runs");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let events = novamedic(&["--controller", &server.url(), "-o", "json", "events"]).await;
    let sent = json(&events)
        .as_array()
        .unwrap()
        .iter()
        .find(|event| event["kind"] == "command_sent")
        .cloned()
        .expect("a command_sent event");
    let actor = sent["actor"].as_str().unwrap();
    let (user, host) = actor.split_once('@').expect("user@host");
    assert!(!user.is_empty(), "{actor}");
    assert_ne!(user, "unknown-user", "{actor}");
    assert!(!host.is_empty(), "{actor}");
    server.stop().await;
    drop(answering);
}

/// A plain HTTP/1.1 server on loopback that answers every connection with
/// one canned response; returns its URL.
async fn plain_http_server() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buffer = [0u8; 1024];
                let _ = socket.read(&mut buffer).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
                    .await;
                // Keep the connection open so the client reads the response
                // instead of seeing the connection close.
                tokio::time::sleep(Duration::from_secs(2)).await;
            });
        }
    });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_url_error_exit_codes() {
    let http = plain_http_server().await;
    let run = novamedic(&["--controller", &http, "nodes"]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    // h2 reports either the protocol error itself or, when the connection
    // task saw it first, only that the connection closed.
    assert!(
        run.stderr.contains(&format!("the service at {http} ")),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("is not a novamedic controller (")
            || run
                .stderr
                .contains("closed the connection (transport error"),
        "{}",
        run.stderr
    );

    let run = novamedic(&["--controller", "127.0.0.1:7400", "nodes"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr.contains("needs the https:// or http:// scheme"),
        "{}",
        run.stderr
    );

    let run = novamedic(&["--controller", "https://127.0.0.1:7400", "nodes"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.stderr
            .contains("an https:// controller needs a client certificate: set --tls-cert"),
        "{}",
        run.stderr
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_progress_and_unknown_node_exits() {
    let (server, mut agent) = server_with_node().await;
    let url = server.url();
    let first_url = url.clone();
    let first = tokio::spawn(async move {
        novamedic(&[
            "--controller",
            &first_url,
            "restart",
            "compute-01",
            "--reason",
            "first",
            "--wait",
            "3",
        ])
        .await
    });
    let command = agent.next_command().await;
    let second = novamedic(&[
        "--controller",
        &url,
        "restart",
        "compute-01",
        "--reason",
        "second",
    ])
    .await;
    assert_eq!(second.code, 6, "{}", second.stderr);
    assert!(
        second.stderr.contains("already in progress")
            && second.stderr.contains(&command.command_id),
        "{}",
        second.stderr
    );
    assert_eq!(
        first.await.unwrap().code,
        5,
        "the unanswered restart times out"
    );

    let events = novamedic(&["--controller", &url, "events", "--node", "ghost"]).await;
    assert_eq!(events.code, 3, "{}", events.stderr);
    assert!(
        events.stderr.contains("node ghost is not known"),
        "{}",
        events.stderr
    );
    let known = novamedic(&["--controller", &url, "events", "--node", "compute-01"]).await;
    assert_eq!(known.code, 0, "{}", known.stderr);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdout_closed_or_full_is_handled() {
    let server = TestServer::start().await;
    let long_reason = "disk full ".repeat(20_000);
    let mut agent = FakeAgent::connect(server.addr, hello("compute-01")).await;
    agent
        .send_report(report(
            v1::HealthStatus::Degraded,
            "active",
            &[&long_reason],
        ))
        .await;
    let client = server.operator().await;
    let arrived = eventually(Duration::from_secs(5), || {
        let mut client = client.clone();
        async move {
            let nodes = client.list_nodes(v1::ListNodesRequest {}).await;
            nodes.is_ok_and(|n| n.into_inner().nodes.iter().any(|s| s.report.is_some()))
        }
    })
    .await;
    assert!(arrived, "report arrives");

    // A reader that closes the pipe unread, like `| head -1` on long output.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args(["--controller", &server.url(), "nodes"])
        .env_remove("NOVAMEDIC_CONTROLLER")
        .env("NOVAMEDIC_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("novamedic runs");
    drop(child.stdout.take());
    let output = child.wait_with_output().await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full opens");
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"))
        .args(["--controller", &server.url(), "-o", "json", "nodes"])
        .env_remove("NOVAMEDIC_CONTROLLER")
        .env("NOVAMEDIC_LOG", "warn")
        .stdout(full)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("novamedic runs")
        .wait_with_output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot write to stdout: "), "{stderr}");
    drop(agent);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn second_controller_same_db_rejected() {
    let server = TestServer::start().await;
    let db = server.db.to_str().unwrap().to_string();
    let run = novamedic(&[
        "serve",
        "--insecure-plaintext",
        "--db",
        &db,
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert_eq!(run.code, 7, "{}", run.stderr);
    assert!(
        run.stderr.contains(&format!(
            "database {db} is in use by another novamedic controller (lock file {db}.lock held)"
        )),
        "{}",
        run.stderr
    );
    server.stop().await;

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controller.toml");
    std::fs::write(&config, "db = \"\"\n").unwrap();
    let config = config.to_str().unwrap();
    let empty = novamedic(&[
        "serve",
        "--insecure-plaintext",
        "--config",
        config,
        "--listen",
        "127.0.0.1:0",
    ])
    .await;
    assert_eq!(empty.code, 2, "{}", empty.stderr);
    assert!(
        empty.stderr.contains("database path is empty"),
        "{}",
        empty.stderr
    );
}

/// Returns the URL of a loopback port with no listener, found by
/// binding and dropping a listener. A command that reached it would exit
/// with 4, so exit 2 shows the CLI stopped first.
fn unreachable_controller() -> String {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    format!("http://127.0.0.1:{port}")
}

/// Runs `novamedic --controller URL ARGS` and checks that it exits with 2
/// and a message containing `fragment`; returns its stderr.
async fn expect_usage_error(url: &str, args: &[&str], fragment: &str) -> String {
    let run = novamedic(&[&["--controller", url], args].concat()).await;
    assert_eq!(run.code, 2, "{args:?}: {}", run.stderr);
    assert!(run.stderr.contains(fragment), "{args:?}: {}", run.stderr);
    run.stderr
}

#[tokio::test]
async fn empty_node_names_are_usage_errors() {
    let url = unreachable_controller();
    let cases: &[&[&str]] = &[
        &["node", "show", ""],
        &["silence", "", "--for", "1h", "--reason", "x"],
        &["unsilence", " "],
        &["clear", ""],
        &["restart", "\t", "--reason", "x"],
        &["events", "--node", ""],
        &[
            "logs",
            "",
            "--instance",
            "0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01",
        ],
    ];
    for args in cases {
        expect_usage_error(&url, args, "the node name is empty").await;
    }
}

#[tokio::test]
async fn duration_flags_share_one_format() {
    let url = unreachable_controller();
    for wait in ["90", "30s", "5m", "1h"] {
        let run = novamedic(&[
            "--controller",
            &url,
            "restart",
            "compute-01",
            "--reason",
            "x",
            "--wait",
            wait,
        ])
        .await;
        assert_eq!(run.code, 4, "--wait {wait} parses: {}", run.stderr);
    }
    let cases: &[(&[&str], &str)] = &[
        (
            &["restart", "compute-01", "--wait", "5x"],
            "30s, 5m, 2h, 1d",
        ),
        (&["restart", "compute-01", "--wait", "0"], "at least 1s"),
        (
            &["silence", "compute-01", "--for", "1.5h"],
            "30s, 5m, 2h, 1d",
        ),
    ];
    for (args, fragment) in cases {
        expect_usage_error(&url, &[*args, &["--reason", "x"]].concat(), fragment).await;
    }
    let help = novamedic(&["restart", "--help"]).await;
    assert!(
        help.stdout
            .contains("seconds (90) or a number with s, m, h"),
        "{}",
        help.stdout
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_longer_than_a_year_rejected() {
    let (server, _agent) = server_with_node().await;
    let url = server.url();

    let run = novamedic(&[
        "--controller",
        &url,
        "silence",
        "compute-01",
        "--for",
        "3000000d",
        "--reason",
        "forever",
    ])
    .await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("\"3000000d\""), "{}", run.stderr);
    assert!(
        run.stderr.contains("maximum silence of 365d"),
        "{}",
        run.stderr
    );

    let run = novamedic(&[
        "--controller",
        &url,
        "-o",
        "json",
        "silence",
        "compute-01",
        "--for",
        "365d",
        "--reason",
        "decommissioning",
    ])
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let policy = json(&run);
    let node = &policy["nodes"][0];
    assert_eq!(node["node"], "compute-01");
    assert!(node["silenced_until"].is_string(), "{policy:#}");
    let policy_text = novamedic(&["--controller", &url, "policy", "show"]).await;
    assert!(
        policy_text.stdout.contains("silenced"),
        "{}",
        policy_text.stdout
    );

    let mut client = server.operator().await;
    let too_long = client
        .silence_node(v1::SilenceNodeRequest {
            node: "compute-01".into(),
            duration_seconds: 3_000_000 * 86_400,
            reason: "forever".into(),
            requested_by: "alice".into(),
        })
        .await
        .expect_err("a silence above a year");
    assert_eq!(too_long.code(), tonic::Code::InvalidArgument);
    assert!(
        too_long.message().contains("259200000000") && too_long.message().contains("365 days"),
        "{}",
        too_long.message()
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_reasons_rejected_by_cli_and_server() {
    let (server, _agent) = server_with_node().await;
    let url = server.url();
    let long = "x".repeat(100_000);

    let too_long = "--reason is 100000 characters long; the maximum is 1000";
    let cases: &[(&[&str], &str)] = &[
        (
            &["silence", "compute-01", "--for", "1h", "--reason", &long],
            too_long,
        ),
        (&["pause", "--reason", &long], too_long),
        (&["restart", "compute-01", "--reason", &long], too_long),
        (&["pause", "--reason", "  "], "--reason is required"),
    ];
    for (args, fragment) in cases {
        let stderr = expect_usage_error(&url, args, fragment).await;
        assert!(
            stderr.len() < 1_000,
            "the reason is not echoed: {}",
            stderr.len()
        );
    }

    let mut client = server.operator().await;
    let pause = client
        .pause_policy(v1::PausePolicyRequest {
            reason: long.clone(),
            requested_by: "alice".into(),
        })
        .await
        .expect_err("a reason above the maximum");
    assert_eq!(pause.code(), tonic::Code::InvalidArgument);
    assert!(
        pause.message().contains("maximum is 1000"),
        "{}",
        pause.message()
    );

    let silence = client
        .silence_node(v1::SilenceNodeRequest {
            node: "compute-01".into(),
            duration_seconds: 60,
            reason: long.clone(),
            requested_by: "alice".into(),
        })
        .await
        .expect_err("a reason above the maximum");
    assert_eq!(silence.code(), tonic::Code::InvalidArgument);

    let restart = client
        .restart_nova_compute(v1::RestartRequest {
            node: "compute-01".into(),
            reason: long.clone(),
            requested_by: "alice".into(),
            wait_ms: 1_000,
        })
        .await
        .expect_err("a reason above the maximum");
    assert_eq!(restart.code(), tonic::Code::InvalidArgument);

    let requester = client
        .resume_policy(v1::ResumePolicyRequest {
            requested_by: long.clone(),
        })
        .await
        .expect_err("a requester above the maximum");
    assert_eq!(requester.code(), tonic::Code::InvalidArgument);

    let fits = "y".repeat(1_000);
    client
        .pause_policy(v1::PausePolicyRequest {
            reason: fits.clone(),
            requested_by: "alice".into(),
        })
        .await
        .expect("a reason of the maximum length");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_node_rejected_by_server() {
    let (server, _agent) = server_with_node().await;
    let mut client = server.operator().await;
    let show = client
        .get_node(v1::GetNodeRequest { node: " ".into() })
        .await
        .expect_err("no node");
    assert_eq!(show.code(), tonic::Code::InvalidArgument, "{show:?}");
    let clear = client
        .clear_node(v1::ClearNodeRequest {
            node: String::new(),
            requested_by: "alice".into(),
        })
        .await
        .expect_err("no node");
    assert_eq!(clear.code(), tonic::Code::InvalidArgument, "{clear:?}");
    let restart = client
        .restart_nova_compute(v1::RestartRequest {
            node: String::new(),
            reason: "stuck".into(),
            requested_by: "alice".into(),
            wait_ms: 1_000,
        })
        .await
        .expect_err("no node");
    assert_eq!(restart.code(), tonic::Code::InvalidArgument, "{restart:?}");
    server.stop().await;
}

const INSTANCE: &str = "0f9c7e52-6a4b-4d3e-9b7a-2c1d5e8f9a01";
const REQUEST: &str = "req-6a4b0f9c-7e52-4d3e-9b7a-2c1d5e8f9a01";

/// The records a fake agent returns for a search: an INFO line, and a
/// classified traceback of two lines.
fn found_records() -> v1::LogSearchResult {
    v1::LogSearchResult {
        records: vec![
            v1::LogSearchRecord {
                file: "/var/log/nova/nova-compute.log.1.gz".into(),
                line: 7,
                time_unix_ms: 1_796_378_401_000,
                level: "INFO".into(),
                request_id: REQUEST.into(),
                text: format!(
                    "2026-12-04 10:00:01.000 4242 INFO nova.compute.claims [{REQUEST}] \
                     [instance: {INSTANCE}] Claim successful"
                ),
                ..Default::default()
            },
            v1::LogSearchRecord {
                file: "/var/log/nova/nova-compute.log".into(),
                line: 3,
                time_unix_ms: 1_796_378_430_000,
                level: "ERROR".into(),
                request_id: REQUEST.into(),
                text: format!(
                    "2026-12-04 10:00:30.000 4242 ERROR nova.compute.manager [{REQUEST}] \
                     [instance: {INSTANCE}] Instance failed to spawn\n\
                     libvirt.libvirtError: Failed to connect socket"
                ),
                signature_id: "libvirt-socket".into(),
                fault_kind: "hypervisor_connection".into(),
                severity: "error".into(),
                advice: "start libvirtd".into(),
            },
        ],
        files: vec![
            v1::LogSearchFile {
                path: "/var/log/nova/nova-compute.log".into(),
                searched: true,
                lines_read: 3,
                records_matched: 1,
                ..Default::default()
            },
            v1::LogSearchFile {
                path: "/var/log/nova/nova-compute.log.9.gz".into(),
                searched: false,
                note: "not searched: last written before the window".into(),
                ..Default::default()
            },
        ],
        truncated: true,
        lines_read: 5,
        log_file: "/var/log/nova/nova-compute.log".into(),
        problem: String::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_command_searches_through_controller() {
    let server = TestServer::start().await;
    let mut hello = hello("compute-01");
    hello
        .capabilities
        .push(novamedic_proto::CAPABILITY_SEARCH_LOGS.to_string());
    let mut agent = FakeAgent::connect(server.addr, hello).await;
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    let url = server.url();
    let answering = tokio::spawn(async move {
        let mut searches = Vec::new();
        for _ in 0..2 {
            let command = agent.next_command().await;
            let Some(v1::command::Action::SearchLogs(search)) = command.action.clone() else {
                panic!("expected a SearchLogs command: {command:?}");
            };
            let mut result = common::succeeded_result(&command, v1::CommandOutcome::Succeeded);
            result.detail = "2 records".into();
            result.log_search = Some(found_records());
            agent.send_result(result).await;
            searches.push((command, search));
        }
        (agent, searches)
    });

    let json_run = novamedic(&[
        "--controller",
        &url,
        "-o",
        "json",
        "logs",
        "compute-01",
        "--instance",
        INSTANCE,
        "--request-id",
        REQUEST,
        "--since",
        "2026-12-04T09:00:00Z",
        "--until",
        "2026-12-04T11:00:00Z",
        "--limit",
        "2",
        "--wait",
        "20s",
    ])
    .await;
    assert_eq!(json_run.code, 0, "{}", json_run.stderr);
    let found = json(&json_run);
    assert_eq!(found["node"], "compute-01");
    assert_eq!(found["truncated"], true);
    assert_eq!(found["records"].as_array().map(Vec::len), Some(2));
    assert_eq!(found["records"][1]["fault_kind"], "hypervisor_connection");
    assert_eq!(found["search"]["instance_uuid"], INSTANCE);
    assert_eq!(found["search"]["since"], "2026-12-04T09:00:00Z");
    assert_eq!(found["search"]["max_records"], 2);

    let text_run = novamedic(&[
        "--controller",
        &url,
        "logs",
        "compute-01",
        "--request-id",
        REQUEST,
        "--since",
        "2h",
    ])
    .await;
    assert_eq!(text_run.code, 0, "{}", text_run.stderr);
    let text = &text_run.stdout;
    assert!(
        text.starts_with("2 records from nova-compute's logs on compute-01, "),
        "{text}"
    );
    assert!(text.contains("TIME  "), "{text}");
    let error_row = text
        .lines()
        .find(|line| line.contains("ERROR"))
        .unwrap_or_else(|| panic!("an ERROR row: {text}"));
    assert!(error_row.starts_with("2026-12-04T10:00:30"), "{error_row}");
    assert!(
        error_row.contains("hypervisor_connection (libvirt-socket)"),
        "{error_row}"
    );
    assert!(error_row.contains("nova.compute.manager ["), "{error_row}");
    assert!(
        !error_row.contains("4242"),
        "the oslo prefix is left out: {error_row}"
    );
    assert!(
        text.contains("└ libvirt.libvirtError: Failed to connect socket"),
        "{text}"
    );
    assert!(
        text.contains("note: /var/log/nova/nova-compute.log.9.gz: not searched"),
        "{text}"
    );
    assert!(
        text.contains("more records matched than the 100 returned"),
        "the cap is named: {text}"
    );

    let (_agent, searches) = answering.await.unwrap();
    let (first_command, first) = &searches[0];
    assert_eq!(first.instance_uuid, INSTANCE);
    assert_eq!(first.request_ids, [REQUEST]);
    assert_eq!(first.start_unix_ms, 1_796_374_800_000);
    assert_eq!(first.end_unix_ms, 1_796_382_000_000);
    assert_eq!(first.max_records, 2);
    assert_eq!(first_command.timeout_ms, 20_000);
    let (_, second) = &searches[1];
    assert_eq!(second.instance_uuid, "");
    assert_eq!(second.end_unix_ms - second.start_unix_ms, 2 * 3_600_000);
    assert_eq!(second.max_records, 100);
    server.stop().await;
}

#[tokio::test]
async fn logs_arguments_checked_before_sending() {
    let url = unreachable_controller();
    let cases: &[(&[&str], &str)] = &[
        (&["logs", "compute-01"], "--instance"),
        (
            &["logs", "compute-01", "--instance", "web-1"],
            "not an instance UUID",
        ),
        (&["logs", "compute-01", "--request-id", INSTANCE], "req-"),
        (
            &[
                "logs",
                "compute-01",
                "--instance",
                INSTANCE,
                "--since",
                "8d",
            ],
            "longer than the 7 days",
        ),
        (
            &[
                "logs",
                "compute-01",
                "--instance",
                INSTANCE,
                "--since",
                "1h",
                "--until",
                "2h",
            ],
            "is not before --until",
        ),
        (
            &["logs", "compute-01", "--instance", INSTANCE, "--wait", "3m"],
            "maximum log search wait of 2m",
        ),
        (
            &[
                "logs",
                "compute-01",
                "--instance",
                INSTANCE,
                "--limit",
                "501",
            ],
            "501",
        ),
    ];
    for (args, fragment) in cases {
        expect_usage_error(&url, args, fragment).await;
    }
}

/// Runs `novamedic serve` in plain text with `config` as its configuration
/// file, in a directory of its own that also contains `files` (name, text),
/// without any OpenStack variables from the test's environment.
async fn serve_with_config(config: &str, files: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    let config = config.replace("{dir}", dir.path().to_str().unwrap());
    let config_path = dir.path().join("controller.toml");
    std::fs::write(&config_path, config).unwrap();
    let db = dir.path().join("novamedic.db");
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_novamedic"));
    command
        .args(["serve", "--insecure-plaintext", "--listen", "127.0.0.1:0"])
        .arg("--config")
        .arg(&config_path)
        .arg("--db")
        .arg(&db)
        .current_dir(dir.path())
        .env("NOVAMEDIC_LOG", "warn")
        .env("HOME", dir.path())
        .env("XDG_CONFIG_DIRS", dir.path().join("xdg"));
    for (name, _) in std::env::vars() {
        if name.starts_with("OS_") {
            command.env_remove(name);
        }
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("serve stops at its configuration error")
        .expect("novamedic runs");
    Run {
        code: output.status.code().expect("exited normally"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

const TWO_CLOUDS: &str = "clouds:\n  east:\n    auth:\n      token: a\n  \
                          west:\n    auth:\n      token: b\n";

/// A configuration file's text, the files beside it (name, text), and the
/// fragments its error message must contain.
type ConfigCase = (String, Vec<(&'static str, &'static str)>, Vec<&'static str>);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_config_errors_exit_two_once() {
    let metrics_port = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let metrics_in_use = format!(
        "[metrics]\nlisten = \"{}\"\n",
        metrics_port.local_addr().unwrap()
    );
    let webhook = "[[alerting.webhook]]\nurl = \"http://127.0.0.1:9/hook\"\n";
    let cases: Vec<ConfigCase> = vec![
        (
            "[openstack]\nclouds_file = \"{dir}\"\n".into(),
            vec![],
            vec!["clouds_file", "is a directory"],
        ),
        (
            "[openstack]\nclouds_file = \"{dir}/absent.yaml\"\n".into(),
            vec![],
            vec!["clouds_file", "absent.yaml does not exist"],
        ),
        (
            "[openstack]\nclouds_file = \"{dir}/clouds.yaml\"\ncloud = \"north\"\n".into(),
            vec![("clouds.yaml", TWO_CLOUDS)],
            vec![
                "cloud \"north\" is not in",
                "east, west",
                "`cloud = \"NAME\"` in the [openstack] table",
            ],
        ),
        (
            "[openstack]\nclouds_file = \"{dir}/clouds.yaml\"\n".into(),
            vec![("clouds.yaml", TWO_CLOUDS)],
            vec![
                "several clouds are defined in",
                "(east, west)",
                "`cloud = \"NAME\"` in the [openstack] table",
            ],
        ),
        (
            format!("{webhook}header_files = {{ Authorization = \"{{dir}}/absent\" }}\n"),
            vec![],
            vec!["cannot read the value of header Authorization", "absent"],
        ),
        (
            format!("{webhook}header_files = {{ Authorization = \"{{dir}}/token\" }}\n"),
            vec![("token", "\n")],
            vec!["token of header Authorization", "is empty"],
        ),
        (
            metrics_in_use,
            vec![],
            vec!["cannot listen on", "for metrics ([metrics] listen)"],
        ),
    ];
    for (config, files, fragments) in &cases {
        let run = serve_with_config(config, files).await;
        assert_eq!(run.code, 2, "{config}: {}", run.stderr);
        for fragment in fragments {
            assert!(run.stderr.contains(fragment), "{config}: {}", run.stderr);
        }
        assert!(!run.stderr.contains("--os-cloud"), "{}", run.stderr);
        assert!(
            !run.stderr.contains("  "),
            "no run of spaces: {}",
            run.stderr
        );
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "printed once: {}",
            run.stderr
        );
        assert!(run.stderr.starts_with("novamedic: "), "{}", run.stderr);
    }
    drop(metrics_port);
}
