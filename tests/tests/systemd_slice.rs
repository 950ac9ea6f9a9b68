//! System tests: the real agent under real systemd in a container, the real
//! controller on the host's 127.0.0.1, driven through `novamedic ... -o json`.
//!
//! Needs root, the tree from scripts/build-rootfs.sh and the workspace's
//! binaries: run `cargo build --workspace --bins` before `cargo test`
//! (scripts/test.sh does both). Each test boots its own container and starts
//! its own controller, so tests run in parallel.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use novamedic_proto::v1::{self, command::Action};
use novamedic_tests::container::{Bind, Container};
use novamedic_tests::fake_controller::FakeController;
use novamedic_tests::slice::{
    boot_compute_node, AgentSettings, ComputeNode, Controller, NOVA_UNIT,
};
use novamedic_tests::system_env::{require_system_test_env, SystemTestEnv};
use serde_json::Value;

/// Time for a new agent to connect and report a healthy nova-compute.
const FIRST_REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// The agent must report nova-compute's crash to the controller this fast.
const CRASH_REPORT_DEADLINE: Duration = Duration::from_secs(2);

/// The agent must be back on the controller this long after an outage ends.
const RECONNECT_DEADLINE: Duration = Duration::from_secs(30);

fn start_slice(
    name: &str,
    settings: &AgentSettings,
) -> Option<(SystemTestEnv, Controller, ComputeNode)> {
    let env = require_system_test_env()?;
    let controller = Controller::start(&env).expect("controller starts");
    let node = boot_compute_node(
        &env,
        name,
        &controller.url(),
        &controller.agent_settings(settings),
    )
    .expect("node boots");
    Some((env, controller, node))
}

fn wait_healthy(controller: &Controller, node: &ComputeNode) -> Value {
    let result = controller.wait_for_node(node.name(), FIRST_REPORT_TIMEOUT, "healthy", |view| {
        view["health"] == "healthy"
    });
    match result {
        Ok((view, _)) => view,
        Err(err) => panic!("{err:#}\n--- agent journal ---\n{}", node.agent_journal()),
    }
}

/// Runs `novamedic restart NODE` and returns its JSON result and exit code.
fn restart(controller: &Controller, node: &ComputeNode) -> (Value, i32) {
    let output = controller
        .cli(&["restart", node.name(), "--reason", "test"])
        .unwrap_or_else(|err| panic!("{err:#}\n--- agent journal ---\n{}", node.agent_journal()));
    (output.json, output.exit_code)
}

fn event_ids(events: &[Value]) -> BTreeSet<i64> {
    events.iter().filter_map(|e| e["id"].as_i64()).collect()
}

fn as_u64(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"))
}

/// Returns (total, available) bytes of the filesystem at `mount_point`
/// inside the container, from statvfs (`stat -f`).
fn statvfs_inside(node: &ComputeNode, mount_point: &str) -> (u64, u64) {
    let output = node
        .container
        .exec_ok(&["stat", "-f", "-c", "%S %b %a", mount_point])
        .unwrap();
    let numbers: Vec<u64> = output
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    let [fragment_bytes, blocks, available_blocks] = numbers[..] else {
        panic!("unexpected stat -f output: {output}");
    };
    (fragment_bytes * blocks, fragment_bytes * available_blocks)
}

fn mem_total_inside_bytes(node: &ComputeNode) -> u64 {
    let meminfo = node.container.exec_ok(&["cat", "/proc/meminfo"]).unwrap();
    let line = meminfo
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .expect("/proc/meminfo has MemTotal");
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn nodes_shows_real_resources() {
    let Some((_env, controller, node)) = start_slice("resources", &AgentSettings::default()) else {
        return;
    };
    let view = wait_healthy(&controller, &node);

    assert_eq!(view["reasons"].as_array().map(Vec::len), Some(0), "{view}");
    assert!(view["last_seen"].is_string(), "{view}");
    assert_eq!(view["nova_compute"]["unit"], NOVA_UNIT);
    assert_eq!(view["nova_compute"]["active_state"], "active");
    assert_eq!(view["nova_compute"]["sub_state"], "running");
    assert_eq!(
        view["nova_compute"]["main_pid"].to_string(),
        node.nova_property("MainPID").unwrap()
    );
    assert_eq!(
        view["nova_compute"]["invocation_id"].as_str().unwrap(),
        node.nova_property("InvocationID").unwrap()
    );

    let cpus = node
        .container
        .exec_ok(&["grep", "-c", "^cpu[0-9]", "/proc/stat"])
        .unwrap();
    assert_eq!(
        as_u64(&view["cpu"]["count"], "cpu.count"),
        cpus.trim().parse::<u64>().unwrap()
    );
    let usage = view["cpu"]["usage_percent"]
        .as_f64()
        .expect("cpu.usage_percent");
    assert!((0.0..=100.0).contains(&usage), "cpu.usage_percent {usage}");

    let memory_total = as_u64(&view["memory"]["total_bytes"], "memory.total_bytes");
    assert_eq!(memory_total, mem_total_inside_bytes(&node));
    let memory_available = as_u64(&view["memory"]["available_bytes"], "memory.available_bytes");
    assert!(
        memory_available > 0 && memory_available <= memory_total,
        "{view}"
    );

    let disks = view["disks"].as_array().expect("disks is an array");
    assert!(!disks.is_empty(), "no disks reported: {view}");
    for disk in disks {
        let mount_point = disk["mount_point"].as_str().expect("disk.mount_point");
        let (total, available) = statvfs_inside(&node, mount_point);
        assert_eq!(
            as_u64(&disk["total_bytes"], "disk.total_bytes"),
            total,
            "{mount_point}"
        );
        // Other processes on the machine write while the test runs, so the
        // free space may move a little between the agent's read and ours.
        let reported = as_u64(&disk["available_bytes"], "disk.available_bytes");
        let tolerance = (total / 100).max(64 << 20);
        assert!(
            reported.abs_diff(available) <= tolerance,
            "{mount_point}: reported {reported} bytes available, statvfs {available}"
        );
    }
    let instances = disks
        .iter()
        .find(|d| d["holds_instances"] == true)
        .unwrap_or_else(|| panic!("no disk holds the instances: {view}"));
    assert_eq!(instances["mount_point"], "/var/lib/nova/instances");

    assert_eq!(view["guests"]["count"], 0);
    assert_eq!(view["guests"]["vcpus"], 0);
    assert_eq!(view["guests"]["memory_bytes"], 0);
}

#[test]
fn restart_replaces_main_pid_and_invocation() {
    let Some((_env, controller, node)) = start_slice("restart", &AgentSettings::default()) else {
        return;
    };
    wait_healthy(&controller, &node);
    let pid_before = node.nova_property("MainPID").unwrap();
    let invocation_before = node.nova_property("InvocationID").unwrap();

    let (result, exit_code) = restart(&controller, &node);

    assert_eq!(result["outcome"], "succeeded", "{result}");
    assert_eq!(exit_code, 0);
    assert_eq!(result["node"], node.name());
    assert_eq!(result["unit"], NOVA_UNIT);
    assert_eq!(result["before"]["main_pid"].to_string(), pid_before);
    assert_eq!(
        result["before"]["invocation_id"].as_str().unwrap(),
        invocation_before
    );
    assert_ne!(
        result["after"]["main_pid"], result["before"]["main_pid"],
        "{result}"
    );
    assert_ne!(
        result["after"]["invocation_id"], result["before"]["invocation_id"],
        "{result}"
    );
    assert_eq!(
        result["after"]["main_pid"].to_string(),
        node.nova_property("MainPID").unwrap()
    );
    assert_eq!(
        result["after"]["invocation_id"].as_str().unwrap(),
        node.nova_property("InvocationID").unwrap()
    );
    assert_eq!(node.nova_property("ActiveState").unwrap(), "active");
}

#[test]
fn killed_nova_compute_shows_failed() {
    let Some((_env, controller, node)) = start_slice("crash", &AgentSettings::default()) else {
        return;
    };
    wait_healthy(&controller, &node);

    node.container
        .systemctl_ok(&["kill", "-s", "KILL", NOVA_UNIT])
        .unwrap();
    let killed_at = Instant::now();
    let (view, _) = controller
        .wait_for_node(node.name(), Duration::from_secs(30), "failed", |view| {
            view["health"] == "failed"
        })
        .unwrap_or_else(|err| panic!("{err:#}\n--- agent journal ---\n{}", node.agent_journal()));
    let elapsed = killed_at.elapsed();

    assert!(
        elapsed <= CRASH_REPORT_DEADLINE,
        "nova-compute's crash reached the controller after {elapsed:?}, deadline {CRASH_REPORT_DEADLINE:?}"
    );
    assert_eq!(view["nova_compute"]["active_state"], "failed", "{view}");
    assert!(
        !view["reasons"].as_array().unwrap().is_empty(),
        "failed without a reason: {view}"
    );
}

#[test]
fn agent_rejects_restart_of_other_unit() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let fake = FakeController::start().unwrap();
    let node =
        boot_compute_node(&env, "allowlist", &fake.url(), &AgentSettings::default()).unwrap();
    let hello = fake
        .wait_for_hello(FIRST_REPORT_TIMEOUT)
        .unwrap_or_else(|err| panic!("{err:#}\n--- agent journal ---\n{}", node.agent_journal()));
    assert_eq!(hello.node, node.name());
    assert!(
        hello
            .capabilities
            .iter()
            .any(|c| c == novamedic_proto::CAPABILITY_RESTART_UNIT),
        "agent announced {:?}",
        hello.capabilities
    );
    fake.wait_for_reports(1, FIRST_REPORT_TIMEOUT).unwrap();

    let other_unit = "systemd-journald.service";
    let invocation_before = node
        .container
        .unit_property(other_unit, "InvocationID")
        .unwrap();
    let rejected = send_restart(&fake, other_unit);
    assert_eq!(
        rejected.outcome,
        v1::CommandOutcome::Rejected as i32,
        "{rejected:?}"
    );
    assert!(!rejected.detail.is_empty(), "rejection without a detail");
    assert_eq!(
        node.container
            .unit_property(other_unit, "InvocationID")
            .unwrap(),
        invocation_before,
        "{other_unit} was restarted"
    );

    // The same path restarts nova-compute, so the rejection above came from
    // the agent's allowlist and not from a broken command path.
    let accepted = send_restart(&fake, NOVA_UNIT);
    assert_eq!(
        accepted.outcome,
        v1::CommandOutcome::Succeeded as i32,
        "{accepted:?}"
    );
}

fn send_restart(fake: &FakeController, unit: &str) -> v1::CommandResult {
    static COMMAND_COUNTER: AtomicU32 = AtomicU32::new(0);
    let command_id = format!(
        "system-test-{}-{}",
        std::process::id(),
        COMMAND_COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let command = v1::Command {
        command_id: command_id.clone(),
        timeout_ms: 30_000,
        requested_by: "system-test".to_string(),
        reason: "allowlist check".to_string(),
        action: Some(Action::RestartUnit(v1::RestartUnit {
            unit: unit.to_string(),
            reset_failed: false,
        })),
    };
    fake.send_command(command).unwrap();
    fake.wait_for_result(&command_id, Duration::from_secs(40))
        .unwrap()
}

#[test]
fn controller_restart_keeps_nodes_and_events() {
    let Some((_env, mut controller, node)) = start_slice("persist", &AgentSettings::default())
    else {
        return;
    };
    wait_healthy(&controller, &node);
    let (result, _) = restart(&controller, &node);
    assert_eq!(result["outcome"], "succeeded", "{result}");
    let events_before = controller.events(node.name()).unwrap();
    assert!(
        !events_before.is_empty(),
        "no events before the controller restart"
    );

    controller.stop();
    controller.restart().unwrap();

    let listed = controller.node(node.name()).unwrap();
    assert!(
        listed.is_some(),
        "node {} gone after a controller restart",
        node.name()
    );
    let events_after = controller.events(node.name()).unwrap();
    let missing: Vec<_> = event_ids(&events_before)
        .difference(&event_ids(&events_after))
        .copied()
        .collect();
    assert!(
        missing.is_empty(),
        "events {missing:?} gone after a controller restart"
    );
    let kinds: BTreeSet<&str> = events_after
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert!(kinds.contains("command_result"), "event kinds {kinds:?}");
}

#[test]
fn crash_during_outage_reaches_controller_after_reconnect() {
    let Some((_env, mut controller, node)) = start_slice("outage", &AgentSettings::default())
    else {
        return;
    };
    wait_healthy(&controller, &node);
    let events_before = event_ids(&controller.events(node.name()).unwrap());

    controller.kill();
    thread::sleep(Duration::from_secs(2));
    node.container
        .systemctl_ok(&["kill", "-s", "KILL", NOVA_UNIT])
        .unwrap();
    thread::sleep(Duration::from_secs(1));
    assert_eq!(node.nova_property("ActiveState").unwrap(), "failed");
    controller.restart().unwrap();

    let result = controller.wait_for_node(
        node.name(),
        RECONNECT_DEADLINE,
        "reconnected and failed",
        |view| view["connected"] == true && view["health"] == "failed",
    );
    if let Err(err) = result {
        panic!("{err:#}\n--- agent journal ---\n{}", node.agent_journal());
    }
    let events = controller.events(node.name()).unwrap();
    let crash_event = events.iter().find(|e| {
        e["kind"] == "unit_state_changed" && !events_before.contains(&e["id"].as_i64().unwrap_or(0))
    });
    assert!(
        crash_event.is_some(),
        "no new unit_state_changed event: {events:?}"
    );
}

#[test]
fn fourth_restart_within_hour_is_rejected() {
    let Some((_env, controller, node)) = start_slice("budget", &AgentSettings::default()) else {
        return;
    };
    wait_healthy(&controller, &node);

    for attempt in 1..=3 {
        let (result, exit_code) = restart(&controller, &node);
        assert_eq!(
            result["outcome"], "succeeded",
            "restart {attempt}: {result}"
        );
        assert_eq!(exit_code, 0, "restart {attempt}");
    }
    let invocation_before = node.nova_property("InvocationID").unwrap();

    let (result, exit_code) = restart(&controller, &node);

    assert_eq!(result["outcome"], "rejected", "{result}");
    assert_eq!(exit_code, 1, "a rejected restart exits with 1");
    let detail = result["detail"].as_str().unwrap_or_default();
    assert!(detail.to_lowercase().contains("budget"), "detail: {detail}");
    assert_eq!(
        node.nova_property("InvocationID").unwrap(),
        invocation_before
    );
}

#[test]
fn packaged_units_pass_systemd_analyze() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let units = [
        ("novamedic-agent", "novamedic-agent.service"),
        ("novamedic", "novamedic.service"),
    ];
    let mut binds = Vec::new();
    for (binary, unit) in units {
        let host_binary = env.binary(binary);
        assert!(host_binary.is_file(), "{} not built", host_binary.display());
        binds.push(Bind::read_only(host_binary, format!("/usr/bin/{binary}")));
        binds.push(Bind::read_only(
            env.packaging(&format!("systemd/{unit}")),
            format!("/etc/systemd/system/{unit}"),
        ));
    }
    let container = Container::boot(&env.rootfs, "analyze", &binds, "multi-user.target").unwrap();

    for (_, unit) in units {
        let output = container
            // The man pages named in Documentation= come with the packages,
            // not with this tree.
            .exec(&[
                "systemd-analyze",
                "verify",
                "--man=no",
                &format!("/etc/systemd/system/{unit}"),
            ])
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{unit}: {stderr}");
        assert!(
            stderr.trim().is_empty(),
            "{unit}: systemd-analyze warns: {stderr}"
        );
    }
}
