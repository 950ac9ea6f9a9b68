//! The self-healing policy in enforce mode against a simulated fleet: the
//! real controller binary, real gRPC over loopback with one connection per
//! simulated agent, real SQLite, and the operator CLI.
//!
//! The policies confirm a fault in two reports over one second and the
//! simulated agents report every 500 ms, so a storm plays out in seconds.
//! The checks count commands and events and compare their order; they never
//! time anything.
//!
//! Needs `cargo build --workspace --bins` first (the `novamedic` binary).

use std::collections::BTreeSet;
use std::thread;
use std::time::{Duration, Instant};

use novamedic_tests::fleet_sim::{RunningFleet, SimConfig, Summary};
use novamedic_tests::slice::{Controller, ControllerOptions};
use novamedic_tests::system_env::locate;
use serde_json::Value;

/// Longest wait for any expected state; only a broken run reaches it.
const WAIT_LIMIT: Duration = Duration::from_secs(120);

fn start_controller(policy: &str) -> Controller {
    let options = ControllerOptions {
        plaintext: true,
        policy: Some(policy.to_string()),
        ..ControllerOptions::new(&locate())
    };
    Controller::start_with(options).expect("the controller starts")
}

fn start_fleet(controller: &Controller, nodes: usize, faults: &[&str]) -> RunningFleet {
    let config = SimConfig {
        controller: controller.url(),
        nodes,
        report_interval: Duration::from_millis(500),
        restart_time: Duration::from_millis(50),
        ..SimConfig::default()
    };
    let faults = faults
        .iter()
        .map(|text| text.parse().expect("the fault script is valid"))
        .collect();
    RunningFleet::start(config, faults).expect("the fleet starts")
}

fn events(controller: &Controller) -> Vec<Value> {
    let json = controller
        .cli_json(&["events", "--limit", "1000"])
        .expect("`novamedic events` works");
    json.as_array().expect("events are an array").clone()
}

fn events_of_kind(events: &[Value], kind: &str) -> Vec<Value> {
    events
        .iter()
        .filter(|event| event["kind"] == kind)
        .cloned()
        .collect()
}

/// Nodes with a policy decision whose detail contains `text`.
fn nodes_with_decision(events: &[Value], text: &str) -> BTreeSet<String> {
    events_of_kind(events, "policy_decision")
        .iter()
        .filter(|event| event["detail"].as_str().unwrap_or("").contains(text))
        .map(|event| event["node"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Polls the controller's events until `accept` holds; returns them.
fn wait_for_events(
    controller: &Controller,
    fleet: &RunningFleet,
    what: &str,
    accept: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let started = Instant::now();
    loop {
        let events = events(controller);
        if accept(&events) {
            return events;
        }
        if started.elapsed() > WAIT_LIMIT {
            panic!(
                "{what} did not happen within {WAIT_LIMIT:?}\nsimulator: {:#?}\nevents: {:#?}\n\
                 --- controller log ---\n{}",
                fleet.snapshot(),
                events,
                controller.log()
            );
        }
        thread::sleep(Duration::from_millis(200));
    }
}

fn struck_nodes(summary: &Summary) -> Vec<String> {
    summary
        .faults
        .iter()
        .map(|fault| fault.node.clone())
        .collect()
}

const STORM_POLICY: &str = r#"
mode = "enforce"
start_grace_seconds = 0
verify_seconds = 30

[fleet]
max_in_flight = 1
min_gap_seconds = 0
jitter_seconds = 0
storm_percent = 10
storm_min_nodes = 3
storm_window_seconds = 60

[[rule]]
condition = "unit-failed"
confirm_reports = 2
confirm_seconds = 1
"#;

#[test]
fn storm_guard_stops_fleet_wide_failure() {
    let controller = start_controller(STORM_POLICY);
    let fleet = start_fleet(&controller, 50, &["at=1s nodes=20% kind=unit_failed"]);

    // Every failing node gets its fault confirmed and then held back by
    // the pause, so by then no restart can still be on its way.
    let events = wait_for_events(
        &controller,
        &fleet,
        "ten nodes held back by the storm guard's pause",
        |events| {
            !events_of_kind(events, "storm_guard").is_empty()
                && nodes_with_decision(events, "paused by storm-guard").len() == 10
        },
    );
    let summary = fleet.stop();

    assert_eq!(summary.connected, 50);
    assert_eq!(summary.faults.len(), 10, "20 % of 50 nodes fail");
    assert!(
        summary.commands.is_empty(),
        "no restart may reach a node: {:#?}",
        summary.commands
    );
    let storms = events_of_kind(&events, "storm_guard");
    assert_eq!(storms.len(), 1, "one storm event: {storms:#?}");
    let storm_detail = storms[0]["detail"].as_str().unwrap();
    assert!(
        storm_detail.contains("of 50 nodes show a fault"),
        "{storm_detail}"
    );
    let struck: BTreeSet<String> = struck_nodes(&summary).into_iter().collect();
    assert!(
        struck.contains(storms[0]["node"].as_str().unwrap()),
        "the storm event names a failing node"
    );
    assert!(
        events_of_kind(&events, "command_sent").is_empty(),
        "no command recorded"
    );
    assert_eq!(
        nodes_with_decision(&events, "paused by storm-guard"),
        struck
    );

    let policy = controller
        .cli_json(&["policy", "show"])
        .expect("`novamedic policy show` works");
    assert_eq!(policy["mode"], "enforce");
    assert_eq!(policy["paused"]["by"], "storm-guard", "{policy:#}");
}

/// One restart at a time, and the storm guard trips at the fourth restart
/// in the node window, fleet-wide. A recovered node stops counting towards
/// the share-of-fleet check after two seconds.
const ROLLING_POLICY: &str = r#"
mode = "enforce"
start_grace_seconds = 0
verify_seconds = 30

[node]
backoff_seconds = 0

[fleet]
max_in_flight = 1
min_gap_seconds = 1
jitter_seconds = 1
storm_percent = 50
storm_min_nodes = 5
storm_window_seconds = 2
max_restarts_per_window = 4

[[rule]]
condition = "rpc-not-responding"
confirm_reports = 2
confirm_seconds = 1
"#;

#[test]
fn rolling_failure_restarts_one_at_a_time() {
    let controller = start_controller(ROLLING_POLICY);
    let fleet = start_fleet(
        &controller,
        20,
        &["every=6s count=1 times=6 kind=rpc_not_responding"],
    );

    let events = wait_for_events(
        &controller,
        &fleet,
        "the storm guard tripping and the sixth failing node held back",
        |events| {
            !events_of_kind(events, "storm_guard").is_empty()
                && nodes_with_decision(events, "paused by storm-guard").len() >= 2
        },
    );
    let summary = fleet.stop();

    let struck = struck_nodes(&summary);
    assert_eq!(struck.len(), 6, "six nodes fail, one every tick");
    let restarted: Vec<String> = summary
        .commands
        .iter()
        .map(|command| command.node.clone())
        .collect();
    assert_eq!(
        restarted,
        struck[..4].to_vec(),
        "the first four failing nodes are restarted, in the order they failed"
    );
    for command in &summary.commands {
        assert_eq!(command.kind, "restart_unit");
        assert_eq!(command.requested_by, "policy");
        assert!(
            command.recovered_ms.is_some(),
            "{} recovered after its restart",
            command.node
        );
    }
    for pair in summary.commands.windows(2) {
        let previous_recovered = pair[0].recovered_ms.unwrap();
        assert!(
            pair[1].received_ms >= previous_recovered,
            "the restart of {} overlaps that of {}: {:#?}",
            pair[1].node,
            pair[0].node,
            summary.commands
        );
    }

    let storms = events_of_kind(&events, "storm_guard");
    assert_eq!(storms.len(), 1, "one storm event: {storms:#?}");
    assert_eq!(
        storms[0]["node"],
        struck[4].as_str(),
        "the fifth failure trips it"
    );
    let storm_detail = storms[0]["detail"].as_str().unwrap();
    assert!(
        storm_detail.contains("4 automated restarts within"),
        "{storm_detail}"
    );
    assert_eq!(
        nodes_with_decision(&events, "paused by storm-guard"),
        struck[4..].iter().cloned().collect(),
        "the fifth and sixth failing nodes are held back"
    );
    let verified = nodes_with_decision(&events, "brought the node back");
    assert_eq!(verified, struck[..4].iter().cloned().collect());
}

/// A node whose fault returns after every restart is escalated once the
/// per-node limit is spent. The engine's unit tests cover the limit's
/// arithmetic; this runs it through the binary, the store and the CLI.
const FLAPPING_POLICY: &str = r#"
mode = "enforce"
start_grace_seconds = 0
verify_seconds = 30

[node]
max_restarts = 2
backoff_seconds = 0

[fleet]
min_gap_seconds = 0
jitter_seconds = 0

[[rule]]
condition = "unit-failed"
confirm_reports = 2
confirm_seconds = 1
"#;

#[test]
fn flapping_node_escalates_after_node_limit() {
    let controller = start_controller(FLAPPING_POLICY);
    let fleet = start_fleet(
        &controller,
        5,
        &["at=1s nodes=1 kind=unit_failed after_restart=flaps"],
    );

    let events = wait_for_events(&controller, &fleet, "an escalation", |events| {
        !nodes_with_decision(events, "needs a human").is_empty()
    });
    let summary = fleet.stop();

    let struck = struck_nodes(&summary);
    assert_eq!(struck.len(), 1);
    let node = &struck[0];
    assert_eq!(summary.commands.len(), 2, "{:#?}", summary.commands);
    assert!(summary.commands.iter().all(|command| &command.node == node));
    assert_eq!(
        nodes_with_decision(&events, "needs a human"),
        BTreeSet::from([node.clone()])
    );
    let escalation = events_of_kind(&events, "policy_decision")
        .into_iter()
        .find(|event| event["detail"].as_str().unwrap().contains("needs a human"))
        .unwrap();
    assert!(
        escalation["detail"]
            .as_str()
            .unwrap()
            .contains("persists after 2 automated restarts"),
        "{escalation:#}"
    );

    let policy = controller
        .cli_json(&["policy", "show"])
        .expect("`novamedic policy show` works");
    let nodes = policy["nodes"].as_array().unwrap();
    let shown = nodes
        .iter()
        .find(|entry| entry["node"] == node.as_str())
        .expect("the escalated node is listed");
    assert!(shown["needs_human"].is_string(), "{shown:#}");
    assert!(policy["paused"].is_null(), "no storm: {policy:#}");
}
