//! System tests of the log watch: the real agent follows the stand-in
//! nova-compute's log and journal under real systemd in a container, and the
//! faults reach `novamedic node show -o json` on the host.
//!
//! Needs what the other system tests need (see systemd_slice.rs): root, the
//! tree from scripts/build-rootfs.sh and `cargo build --workspace --bins`.

use std::thread;
use std::time::Duration;

use novamedic_tests::slice::{boot_compute_node, AgentSettings, ComputeNode, Controller};
use novamedic_tests::system_env::require_system_test_env;
use serde_json::Value;

const LOG_FILE: &str = "/var/log/nova/nova-compute.log";

/// Time for the agent to connect and follow the log.
const FIRST_REPORT_TIMEOUT: Duration = Duration::from_secs(30);

/// Time for a written line to reach the controller: the agent polls the log
/// every 250 ms and reports every second here.
const FAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a count must stay put to show that no line was read twice:
/// several polls and reports.
const SETTLE: Duration = Duration::from_secs(3);

/// Writes of the journal line, and how long each waits to be seen.
const JOURNAL_ATTEMPTS: u32 = 4;
const JOURNAL_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(5);

const LIBVIRT_DOWN: &str = "Connection to libvirt failed: Failed to connect socket to \
    '/var/run/libvirt/libvirt-sock': No such file or directory";

/// Appends one oslo.log ERROR record stamped with the container's local time.
fn append_error(node: &ComputeNode, message: &str) {
    let script = r#"printf '%s 4242 ERROR nova.compute.manager [-] %s\n' "$(date '+%Y-%m-%d %H:%M:%S.%3N')" "$1" >> "$2""#;
    node.container
        .exec_ok(&["sh", "-c", script, "sh", message, LOG_FILE])
        .expect("append to the log inside");
}

fn node_show(controller: &Controller, node: &ComputeNode) -> Value {
    controller
        .cli_json(&["node", "show", node.name()])
        .unwrap_or_else(|err| panic!("{err:#}\n--- agent journal ---\n{}", node.agent_journal()))
}

fn fault<'a>(view: &'a Value, kind: &str) -> Option<&'a Value> {
    view["log"]["active_faults"]
        .as_array()?
        .iter()
        .find(|f| f["fault_kind"] == kind)
}

fn fault_count(view: &Value, kind: &str) -> u64 {
    fault(view, kind)
        .and_then(|f| f["count"].as_u64())
        .unwrap_or(0)
}

fn wait_for(
    controller: &Controller,
    node: &ComputeNode,
    timeout: Duration,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    match controller.wait_for_node(node.name(), timeout, what, accept) {
        Ok((view, _)) => view,
        Err(err) => panic!("{err:#}\n--- agent journal ---\n{}", node.agent_journal()),
    }
}

/// Waits until `kind` has `count` records, then checks it stays there.
fn expect_count(controller: &Controller, node: &ComputeNode, kind: &str, count: u64) {
    wait_for(
        controller,
        node,
        FAULT_TIMEOUT,
        &format!("{count} {kind} records"),
        |view| fault_count(view, kind) == count,
    );
    thread::sleep(SETTLE);
    let view = node_show(controller, node);
    assert_eq!(
        fault_count(&view, kind),
        count,
        "a line was read twice: {}",
        view["log"]
    );
}

#[test]
fn libvirt_fault_survives_rotations_counted_once() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let controller = Controller::start(&env).expect("controller starts");
    let node = boot_compute_node(
        &env,
        "logwatch",
        &controller.url(),
        &controller.agent_settings(&AgentSettings::default()),
    )
    .expect("node boots");
    wait_for(
        &controller,
        &node,
        FIRST_REPORT_TIMEOUT,
        "following the log",
        |view| view["health"] == "healthy" && view["log"]["log_file"] == LOG_FILE,
    );

    append_error(&node, LIBVIRT_DOWN);
    expect_count(&controller, &node, "hypervisor_connection", 1);
    let view = node_show(&controller, &node);
    let libvirt = fault(&view, "hypervisor_connection").unwrap();
    assert_eq!(libvirt["signature_id"], "libvirt-daemon-unreachable");
    assert_eq!(libvirt["restart_helps"], false);
    let advice = libvirt["advice"].as_str().unwrap();
    assert!(advice.contains("libvirtd"), "{advice}");
    assert!(
        libvirt["sample"].as_str().unwrap().contains("libvirt-sock"),
        "{libvirt}"
    );
    assert_eq!(view["log"]["restart"]["restart_helps"], false);
    assert_eq!(view["health"], "degraded", "{view}");
    let reasons = view["reasons"].to_string();
    assert!(reasons.contains("hypervisor_connection"), "{reasons}");
    assert!(reasons.contains("libvirtd"), "{reasons}");

    // copytruncate, as logrotate does it: copy, then empty the file in place.
    node.container
        .exec_ok(&[
            "sh",
            "-c",
            &format!("cp {LOG_FILE} {LOG_FILE}.1 && truncate -s 0 {LOG_FILE}"),
        ])
        .unwrap();
    append_error(&node, LIBVIRT_DOWN);
    expect_count(&controller, &node, "hypervisor_connection", 2);

    // Rename rotation: the next line goes to a new file at the same path.
    node.container
        .exec_ok(&["mv", LOG_FILE, &format!("{LOG_FILE}.1")])
        .unwrap();
    append_error(&node, LIBVIRT_DOWN);
    expect_count(&controller, &node, "hypervisor_connection", 3);
}

#[test]
fn stderr_config_error_from_journal_is_classified() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let controller = Controller::start(&env).expect("controller starts");
    let node = boot_compute_node(
        &env,
        "logjournal",
        &controller.url(),
        &controller.agent_settings(&AgentSettings::default()),
    )
    .expect("node boots");
    wait_for(
        &controller,
        &node,
        FIRST_REPORT_TIMEOUT,
        "reading the journal",
        |view| view["health"] == "healthy" && view["log"]["journal_unit"] == "nova-compute.service",
    );

    // A line on nova-compute's standard error, as Python prints it before
    // oslo.log is set up: written by a process moved into the unit's cgroup,
    // so journald files it under nova-compute.service.
    let line = "oslo_config.cfg.ConfigFileParseError: Failed to parse /etc/nova/nova.conf: \
                at line 3, No ':' or '=' found in assignment: 'bogus'";
    // On a hybrid cgroup host the unit has a directory in each hierarchy.
    // journald reads the writer's cgroup from /proc after the connection, so
    // systemd-cat must outlive its line (the sleep) or the line may be filed
    // under no unit.
    let script = r#"set -e
for dir in $(find /sys/fs/cgroup -maxdepth 3 -type d -name nova-compute.service); do
    echo $$ > "$dir/cgroup.procs"
done
{ echo "$1"; sleep 1; } | systemd-cat --identifier=nova-compute"#;
    // journalctl starts at the journal's end once it has opened it, which
    // may be after the agent reported it started; a line written before
    // that is not read, so the line is written again until it is seen.
    let mut view = Value::Null;
    for _ in 0..JOURNAL_ATTEMPTS {
        node.container
            .exec_ok(&["sh", "-c", script, "sh", line])
            .expect("write to nova-compute's journal");
        match controller.wait_for_node(node.name(), JOURNAL_ATTEMPT_TIMEOUT, "configuration", |v| {
            fault(v, "configuration").is_some()
        }) {
            Ok((found, _)) => {
                view = found;
                break;
            }
            Err(err) => eprintln!("not seen yet, writing the line again: {err:#}"),
        }
    }
    if fault(&view, "configuration").is_none() {
        let nova_journal = node
            .container
            .exec(&[
                "journalctl",
                "--no-pager",
                "-o",
                "json",
                "-n",
                "5",
                "-u",
                "nova-compute.service",
            ])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let last = node_show(&controller, &node);
        panic!(
            "configuration fault not seen after {JOURNAL_ATTEMPTS} attempts\nlog: {}\n\
             --- nova-compute journal ---\n{nova_journal}\n--- agent journal ---\n{}",
            last["log"],
            node.agent_journal()
        );
    }
    let configuration = fault(&view, "configuration").unwrap();
    assert_eq!(configuration["signature_id"], "invalid-configuration");
    assert_eq!(configuration["restart_helps"], false);
    assert_eq!(view["log"]["restart"]["restart_helps"], false);
}
