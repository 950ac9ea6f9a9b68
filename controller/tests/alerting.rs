//! Alerts and metrics over real sockets: real HTTP servers on 127.0.0.1
//! stand in for Alertmanager and a webhook receiver and record what they
//! get, fake agents drive the policy over real gRPC, and `/metrics` is
//! scraped over HTTP.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode, Uri};
use common::{eventually, report, FakeAgent, TestServer};
use novamedic::alerting::config::{AlertingConfig, MassDisconnectRule, WebhookConfig};
use novamedic::policy::{rules, Policy};
use novamedic_proto::v1;
use serde_json::Value;

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    path: String,
    headers: HeaderMap,
    body: Value,
}

/// An HTTP server on 127.0.0.1 that records every request and returns 200.
struct Receiver {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Receiver {
    async fn start() -> Self {
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let recorded = Arc::clone(&received);
        let app =
            axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: String| {
                let recorded = Arc::clone(&recorded);
                async move {
                    let body: Value = serde_json::from_str(&body).expect("receiver got JSON");
                    recorded.lock().unwrap().push(Received {
                        path: uri.path().to_string(),
                        headers,
                        body,
                    });
                    StatusCode::OK
                }
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            received,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn requests(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Returns every alert posted to Alertmanager's API, in arrival order.
    fn alertmanager_alerts(&self) -> Vec<Value> {
        self.requests()
            .into_iter()
            .flat_map(|request| {
                assert_eq!(request.path, "/api/v2/alerts");
                request.body.as_array().expect("a JSON list").clone()
            })
            .collect()
    }

    fn alerts_named(&self, name: &str) -> Vec<Value> {
        self.alertmanager_alerts()
            .into_iter()
            .filter(|alert| alert["labels"]["alertname"] == name)
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Returns whether an Alertmanager alert is resolved: its end is not
/// after the moment it was read.
fn is_resolved(alert: &Value) -> bool {
    let ends_at = alert["endsAt"].as_str().expect("endsAt set");
    let ends_at =
        time::OffsetDateTime::parse(ends_at, &time::format_description::well_known::Rfc3339)
            .expect("endsAt is RFC 3339");
    ends_at <= time::OffsetDateTime::now_utc()
}

fn alerting(alertmanagers: &[&Receiver]) -> AlertingConfig {
    AlertingConfig {
        alertmanagers: alertmanagers
            .iter()
            .map(|receiver| receiver.url().parse().unwrap())
            .collect(),
        resend_interval: Duration::from_secs(1),
        timeout: Duration::from_secs(2),
        retry_backoff: Duration::from_millis(50),
        ..AlertingConfig::default()
    }
}

/// Builds a policy that acts after two reports with no minimum span.
fn quick_policy(extra: &str) -> Policy {
    let text = format!(
        "mode = \"enforce\"\n{extra}\n[[rule]]\ncondition = \"unit-failed\"\nconfirm_reports = 2\n\
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

/// Builds a report of a failed unit whose process hangs in state D, which
/// the policy hands to a human at once.
fn stuck_report() -> v1::NodeReport {
    let mut report = failed_report();
    if let Some(nova) = report.nova_compute.as_mut() {
        nova.process = Some(v1::Process {
            pid: 100,
            state: "D".to_string(),
            ..Default::default()
        });
    }
    report
}

/// Scrapes `/metrics` and returns each sample line as name{labels} → value.
async fn scrape(server: &TestServer) -> BTreeMap<String, f64> {
    let addr = server.metrics_addr.expect("started with metrics");
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("metrics scraped");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let text = response.text().await.unwrap();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let (name, value) = line.rsplit_once(' ').expect("name and value");
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(name.to_string(), value);
    }
    samples
}

fn sample(samples: &BTreeMap<String, f64>, name: &str) -> f64 {
    samples.get(name).copied().unwrap_or(0.0)
}

/// Waits until the controller has judged `count` reports, so an operator
/// action that follows cannot race a report still in flight.
async fn wait_for_reports(server: &TestServer, count: u32) {
    let processed = eventually(Duration::from_secs(10), || async {
        sample(
            &scrape(server).await,
            "novamedic_report_processing_seconds_count",
        ) >= f64::from(count)
    })
    .await;
    assert!(
        processed,
        "{count} reports not processed: {:#?}",
        scrape(server).await
    );
}

#[tokio::test]
async fn escalation_alert_resent_and_resolved() {
    let alertmanager_a = Receiver::start().await;
    let alertmanager_b = Receiver::start().await;
    let webhook = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("webhook-token");
    std::fs::write(&token, "Bearer s3cret-token\n").unwrap();
    let mut config = alerting(&[&alertmanager_a, &alertmanager_b]);
    config.generator_url = Some("https://novamedic.example.invalid/".parse().unwrap());
    config.webhooks = vec![WebhookConfig {
        url: format!("{}/hook", webhook.url()).parse().unwrap(),
        headers: BTreeMap::from([("X-Source".to_string(), "novamedic-test".to_string())]),
        header_files: BTreeMap::from([("Authorization".to_string(), token)]),
        resend: false,
    }];
    let server = TestServer::start_observed(
        dir.path().join("novamedic.db"),
        quick_policy(""),
        config,
        true,
    )
    .await;
    let before = scrape(&server).await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("cn-1")).await;
    agent.send_report(stuck_report()).await;

    // Both Alertmanagers of the pair get the alert, then re-sends.
    for receiver in [&alertmanager_a, &alertmanager_b] {
        let resent = eventually(Duration::from_secs(10), || async {
            receiver.alerts_named("NovamedicNodeNeedsHuman").len() >= 3
        })
        .await;
        assert!(resent, "{:#?}", receiver.alertmanager_alerts());
    }
    // More reports while it needs a human are the same episode.
    agent.send_report(stuck_report()).await;
    agent.send_report(failed_report()).await;
    wait_for_reports(&server, 3).await;
    let alerts = alertmanager_a.alerts_named("NovamedicNodeNeedsHuman");
    let first = &alerts[0];
    assert_eq!(first["labels"]["node"], "cn-1");
    assert_eq!(first["labels"]["severity"], "critical");
    assert_eq!(first["labels"]["service"], "nova-compute");
    assert_eq!(first["generatorURL"], "https://novamedic.example.invalid/");
    let description = first["annotations"]["description"].as_str().unwrap();
    assert!(
        description.contains("uninterruptible sleep"),
        "{description}"
    );
    assert!(
        description.contains("novamedic clear cn-1"),
        "{description}"
    );
    assert!(first["annotations"]["summary"]
        .as_str()
        .unwrap()
        .contains("cn-1"));
    assert!(!is_resolved(first), "{first}");
    for alert in &alerts {
        assert_eq!(
            alert["startsAt"], first["startsAt"],
            "one episode: {alerts:#?}"
        );
    }

    // The webhook gets one object per alert, with its headers.
    let hooked = eventually(Duration::from_secs(10), || async {
        !webhook.requests().is_empty()
    })
    .await;
    assert!(hooked, "the webhook got nothing");
    let request = &webhook.requests()[0];
    assert_eq!(request.path, "/hook");
    assert_eq!(request.headers["authorization"], "Bearer s3cret-token");
    assert_eq!(request.headers["x-source"], "novamedic-test");
    assert_eq!(request.body["version"], "1");
    assert_eq!(request.body["status"], "firing");
    assert_eq!(request.body["alertname"], "NovamedicNodeNeedsHuman");
    assert_eq!(request.body["node"], "cn-1");
    assert_eq!(
        request.body["labels"]["alertname"],
        "NovamedicNodeNeedsHuman"
    );
    assert_eq!(request.body["startsAt"], first["startsAt"]);
    assert!(request.body["endsAt"].is_null(), "{}", request.body);
    // Alertmanager got re-sends; a webhook without `resend` gets one message.
    assert_eq!(webhook.requests().len(), 1, "{:#?}", webhook.requests());

    // An operator clears the node: the alert resolves, and re-sends stop.
    server
        .operator()
        .await
        .clear_node(v1::ClearNodeRequest {
            node: "cn-1".to_string(),
            requested_by: "alice".to_string(),
        })
        .await
        .expect("node cleared");
    let resolved = eventually(Duration::from_secs(10), || async {
        alertmanager_b
            .alerts_named("NovamedicNodeNeedsHuman")
            .last()
            .is_some_and(is_resolved)
    })
    .await;
    assert!(resolved, "{:#?}", alertmanager_b.alertmanager_alerts());
    let webhook_resolved = eventually(Duration::from_secs(10), || async {
        webhook
            .requests()
            .iter()
            .any(|r| r.body["status"] == "resolved" && r.body["endsAt"].is_string())
    })
    .await;
    assert!(webhook_resolved, "{:#?}", webhook.requests());
    assert_eq!(webhook.requests().len(), 2, "{:#?}", webhook.requests());
    let count = alertmanager_b.alerts_named("NovamedicNodeNeedsHuman").len();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let after = alertmanager_b.alerts_named("NovamedicNodeNeedsHuman");
    assert_eq!(after.len(), count, "re-sent after resolving: {after:#?}");

    let metrics = scrape(&server).await;
    assert!(
        sample(&metrics, "novamedic_reports_received_total")
            >= sample(&before, "novamedic_reports_received_total") + 3.0,
        "{metrics:#?}"
    );
    assert_eq!(
        sample(&metrics, "novamedic_escalations_total"),
        1.0,
        "{metrics:#?}"
    );
    assert_eq!(
        sample(
            &metrics,
            "novamedic_policy_decisions_total{decision=\"escalate\"}"
        ),
        1.0
    );
    assert!(sample(&metrics, "novamedic_report_processing_seconds_count") >= 3.0);
    assert!(
        sample(
            &metrics,
            "novamedic_alert_notifications_sent_total{receiver=\"alertmanager\",status=\"resolved\"}"
        ) >= 2.0,
        "{metrics:#?}"
    );
    assert!(
        sample(
            &metrics,
            "novamedic_alert_notifications_sent_total{receiver=\"webhook\",status=\"firing\"}"
        ) >= 1.0
    );
    assert_eq!(sample(&metrics, "novamedic_agents_connected"), 1.0);
    assert_eq!(sample(&metrics, "novamedic_nodes{health=\"failed\"}"), 1.0);
    assert_eq!(sample(&metrics, "novamedic_nodes_needing_human"), 0.0);
    server.stop().await;
}

#[tokio::test]
async fn storm_pause_is_one_fleet_alert() {
    let alertmanager = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let policy = quick_policy("[fleet]\nstorm_percent = 10\nstorm_min_nodes = 2\n");
    let server = TestServer::start_observed(
        dir.path().join("novamedic.db"),
        policy,
        alerting(&[&alertmanager]),
        true,
    )
    .await;
    let mut agents = Vec::new();
    for index in 1..=3 {
        agents.push(FakeAgent::connect(server.addr, common::hello(&format!("cn-{index}"))).await);
    }
    // Every node fails at once; the second confirmed finding trips the guard.
    for _ in 0..2 {
        for agent in &mut agents {
            agent.send_report(failed_report()).await;
        }
    }
    let paused = eventually(Duration::from_secs(10), || async {
        alertmanager.alerts_named("NovamedicRestartStorm").len() >= 2
    })
    .await;
    assert!(paused, "{:#?}", alertmanager.alertmanager_alerts());
    let storm = alertmanager.alerts_named("NovamedicRestartStorm");
    assert!(storm[0]["labels"].get("node").is_none(), "{storm:#?}");
    let reason = storm[0]["annotations"]["description"].as_str().unwrap();
    assert!(reason.contains("novamedic resume"), "{reason}");
    for alert in &storm {
        assert_eq!(alert["startsAt"], storm[0]["startsAt"], "{storm:#?}");
        assert!(!is_resolved(alert), "{alert}");
    }
    let metrics = scrape(&server).await;
    assert_eq!(
        sample(&metrics, "novamedic_storm_guard_paused"),
        1.0,
        "{metrics:#?}"
    );
    assert_eq!(
        sample(
            &metrics,
            "novamedic_alerts_active{alertname=\"NovamedicRestartStorm\"}"
        ),
        1.0
    );

    // More failing reports while paused raise nothing new.
    for agent in &mut agents {
        agent.send_report(failed_report()).await;
    }
    wait_for_reports(&server, 9).await;
    server
        .operator()
        .await
        .resume_policy(v1::ResumePolicyRequest {
            requested_by: "alice".to_string(),
        })
        .await
        .expect("resumed");
    let resolved = eventually(Duration::from_secs(10), || async {
        alertmanager
            .alerts_named("NovamedicRestartStorm")
            .last()
            .is_some_and(is_resolved)
    })
    .await;
    assert!(resolved, "{:#?}", alertmanager.alertmanager_alerts());
    let storm = alertmanager.alerts_named("NovamedicRestartStorm");
    for alert in &storm {
        assert_eq!(
            alert["startsAt"], storm[0]["startsAt"],
            "one episode: {storm:#?}"
        );
    }
    assert_eq!(
        storm.iter().filter(|a| is_resolved(a)).count(),
        1,
        "{storm:#?}"
    );
    let metrics = scrape(&server).await;
    assert_eq!(sample(&metrics, "novamedic_storm_guard_paused"), 0.0);
    assert_eq!(
        sample(
            &metrics,
            "novamedic_policy_decisions_total{decision=\"storm_guard\"}"
        ),
        1.0,
        "{metrics:#?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn mass_disconnect_is_one_alert_not_a_storm() {
    let alertmanager = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = alerting(&[&alertmanager]);
    config.mass_disconnect = MassDisconnectRule {
        percent: 20,
        min_nodes: 3,
        window: Duration::from_secs(60),
    };
    let policy = quick_policy("[fleet]\nstorm_percent = 10\nstorm_min_nodes = 2\n");
    let server =
        TestServer::start_observed(dir.path().join("novamedic.db"), policy, config, true).await;
    let mut agents = Vec::new();
    for index in 0..10 {
        let mut agent =
            FakeAgent::connect(server.addr, common::hello(&format!("cn-{index}"))).await;
        agent
            .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
            .await;
        agents.push(agent);
    }
    let all_connected = eventually(Duration::from_secs(10), || async {
        sample(&scrape(&server).await, "novamedic_agents_connected") == 10.0
    })
    .await;
    assert!(all_connected);

    // Five real streams drop at once.
    let dropped: Vec<FakeAgent> = agents.drain(..5).collect();
    drop(dropped);
    let fired = eventually(Duration::from_secs(10), || async {
        !alertmanager
            .alerts_named("NovamedicAgentsDisconnected")
            .is_empty()
    })
    .await;
    assert!(fired, "{:#?}", alertmanager.alertmanager_alerts());
    let alert = alertmanager.alerts_named("NovamedicAgentsDisconnected")[0].clone();
    assert!(alert["labels"].get("node").is_none(), "{alert}");
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(summary.contains("of 10"), "{summary}");
    let others: Vec<Value> = alertmanager
        .alertmanager_alerts()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] != "NovamedicAgentsDisconnected")
        .collect();
    assert!(others.is_empty(), "no per-node alerts: {others:#?}");

    // A node still connected now fails: the disconnected nodes do not count
    // as faults, so the storm guard stays quiet and the policy restarts it.
    let mut failing = agents.pop().unwrap();
    failing.send_report(failed_report()).await;
    failing.send_report(failed_report()).await;
    let command = failing.next_command().await;
    assert_eq!(command.requested_by, "policy");
    let status = server
        .operator()
        .await
        .get_policy(v1::GetPolicyRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(status.pause.is_none(), "{status:?}");

    // Three of the five come back: most are back, so the alert resolves.
    let mut back = Vec::new();
    for index in 0..3 {
        back.push(FakeAgent::connect(server.addr, common::hello(&format!("cn-{index}"))).await);
    }
    let resolved = eventually(Duration::from_secs(10), || async {
        alertmanager
            .alerts_named("NovamedicAgentsDisconnected")
            .last()
            .is_some_and(is_resolved)
    })
    .await;
    assert!(resolved, "{:#?}", alertmanager.alertmanager_alerts());
    let disconnected = alertmanager.alerts_named("NovamedicAgentsDisconnected");
    for alert in &disconnected {
        assert_eq!(
            alert["startsAt"], disconnected[0]["startsAt"],
            "{disconnected:#?}"
        );
    }
    let metrics = scrape(&server).await;
    assert_eq!(sample(&metrics, "novamedic_storm_guard_paused"), 0.0);
    assert_eq!(
        sample(&metrics, "novamedic_restarts_total{trigger=\"policy\"}"),
        1.0,
        "{metrics:#?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn receiver_down_is_counted_and_harmless() {
    // A port that was bound and released: nothing listens there.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_addr = closed.local_addr().unwrap();
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let config = AlertingConfig {
        alertmanagers: vec![format!("http://{closed_addr}").parse().unwrap()],
        resend_interval: Duration::from_secs(1),
        timeout: Duration::from_secs(1),
        max_retries: 1,
        retry_backoff: Duration::from_millis(20),
        ..AlertingConfig::default()
    };
    let server = TestServer::start_observed(
        dir.path().join("novamedic.db"),
        quick_policy(""),
        config,
        true,
    )
    .await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("cn-1")).await;
    agent.send_report(stuck_report()).await;

    let failed = eventually(Duration::from_secs(10), || async {
        sample(
            &scrape(&server).await,
            "novamedic_alert_notifications_failed_total{receiver=\"alertmanager\"}",
        ) >= 2.0
    })
    .await;
    assert!(failed, "{:#?}", scrape(&server).await);

    // The controller keeps serving agents and operators.
    agent
        .send_report(report(v1::HealthStatus::Healthy, "active", &[]))
        .await;
    let recorded = eventually(Duration::from_secs(10), || async {
        server
            .operator()
            .await
            .get_node(v1::GetNodeRequest {
                node: "cn-1".to_string(),
            })
            .await
            .is_ok_and(|node| {
                node.into_inner()
                    .health
                    .is_some_and(|h| h.status == v1::HealthStatus::Healthy as i32)
            })
    })
    .await;
    assert!(recorded, "the healthy report was not applied");
    let metrics = scrape(&server).await;
    assert_eq!(
        sample(
            &metrics,
            "novamedic_alert_notifications_sent_total{receiver=\"alertmanager\",status=\"firing\"}"
        ),
        0.0
    );
    server.stop().await;
}

#[tokio::test]
async fn escalation_alert_survives_restart() {
    let alertmanager = Receiver::start().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("novamedic.db");
    let server = TestServer::start_observed(
        db.clone(),
        quick_policy(""),
        alerting(&[&alertmanager]),
        false,
    )
    .await;
    let mut agent = FakeAgent::connect(server.addr, common::hello("cn-1")).await;
    agent.send_report(stuck_report()).await;
    let fired = eventually(Duration::from_secs(10), || async {
        !alertmanager
            .alerts_named("NovamedicNodeNeedsHuman")
            .is_empty()
    })
    .await;
    assert!(fired, "{:#?}", alertmanager.alertmanager_alerts());
    let starts_at = alertmanager.alerts_named("NovamedicNodeNeedsHuman")[0]["startsAt"].clone();
    drop(agent);
    server.stop().await;

    // The saved escalation raises the alert again, as the same episode,
    // before the node's agent is back.
    let restarted = Receiver::start().await;
    let server =
        TestServer::start_observed(db, quick_policy(""), alerting(&[&restarted]), false).await;
    let raised = eventually(Duration::from_secs(10), || async {
        !restarted.alerts_named("NovamedicNodeNeedsHuman").is_empty()
    })
    .await;
    assert!(raised, "{:#?}", restarted.alertmanager_alerts());
    let alert = &restarted.alerts_named("NovamedicNodeNeedsHuman")[0];
    assert_eq!(alert["startsAt"], starts_at);
    assert_eq!(alert["labels"]["node"], "cn-1");
    assert!(!is_resolved(alert), "{alert}");
    server.stop().await;
}
