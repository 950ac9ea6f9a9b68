//! System tests against the real nova-compute: Debian 12's nova 26 (Zed)
//! with nova's fake virt driver, nova-conductor, Placement and RabbitMQ under
//! systemd in a container, the real agent beside them, the controller on the
//! host, all checked through `novamedic ... -o json`.
//!
//! Needs what the other system tests need (see systemd_slice.rs) and the tree
//! from scripts/build-nova-rootfs.sh. The stack listens on fixed ports, so the
//! tests here take turns; each boots one container for all its scenarios.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use novamedic_tests::nova::{
    boot_nova_node, require_nova_env, NovaNode, NOVA_COMPUTE_LOG, NOVA_COMPUTE_UNIT,
    NOVA_CONDUCTOR_UNIT, PLACEMENT_UNIT, RABBITMQ_UNIT,
};
use novamedic_tests::slice::Controller;
use serde_json::Value;

/// One nova stack at a time: its ports are fixed.
static STACK_PORTS: Mutex<()> = Mutex::new(());

/// Time for the agent to connect and report the node healthy.
const FIRST_REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// Time for an outage to reach the controller as a fault. nova-compute logs
/// a broker failure within seconds and a missed conductor reply after
/// rpc_response_timeout (5 s). It logs a Placement failure at the next
/// resource update, every 10 s in the test's nova.conf.
const FAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Time for nova-compute to reconnect and the fault to clear.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(60);

/// Signatures of the messaging fault kind in the shipped catalogue.
const MESSAGING_SIGNATURES: [&str; 2] = ["amqp-broker-unreachable", "rpc-reply-timeout"];

struct Stack {
    controller: Controller,
    node: NovaNode,
    _turn: MutexGuard<'static, ()>,
}

impl Stack {
    fn boot(name: &str) -> Option<Stack> {
        let (env, rootfs) = require_nova_env()?;
        // A test that failed still released the ports when its container shut down.
        let turn = STACK_PORTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let controller = Controller::start(&env).expect("controller starts");
        let node = boot_nova_node(&env, &rootfs, name, &controller)
            .unwrap_or_else(|err| panic!("nova node boots: {err:#}"));
        Some(Stack {
            controller,
            node,
            _turn: turn,
        })
    }

    fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n{}\n--- controller log ---\n{}",
            self.node.diagnostics(),
            self.controller.log()
        )
    }

    fn show(&self) -> Value {
        self.controller
            .cli_json(&["node", "show", self.node.name()])
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")))
    }

    fn wait_for(&self, timeout: Duration, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        match self
            .controller
            .wait_for_node(self.node.name(), timeout, what, accept)
        {
            Ok((view, _)) => view,
            Err(err) => self.fail(&format!("{err:#}")),
        }
    }

    fn wait_healthy(&self) -> Value {
        self.wait_for(FIRST_REPORT_TIMEOUT, "healthy", |view| {
            view["health"] == "healthy" && view["log"]["log_file"] == NOVA_COMPUTE_LOG
        })
    }

    fn stop(&self, unit: &str) {
        self.node
            .stop(unit)
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
    }

    fn start(&self, unit: &str) {
        self.node
            .start(unit)
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
    }

    /// Returns the detail of every `health_changed` event of the node,
    /// oldest first (`novamedic events` lists the newest first).
    fn health_changes(&self) -> Vec<String> {
        let mut events = self
            .controller
            .events(self.node.name())
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
        events.sort_by_key(|e| e["id"].as_i64());
        events
            .iter()
            .filter(|e| e["kind"] == "health_changed")
            .filter_map(|e| e["detail"].as_str().map(str::to_string))
            .collect()
    }
}

fn active_faults(view: &Value) -> Vec<Value> {
    view["log"]["active_faults"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn fault_of_kind(view: &Value, kind: &str) -> Option<Value> {
    active_faults(view)
        .into_iter()
        .find(|f| f["fault_kind"] == kind)
}

fn fault_with_id(view: &Value, signature_id: &str) -> Option<Value> {
    active_faults(view)
        .into_iter()
        .find(|f| f["signature_id"] == signature_id)
}

/// Checks that the log's verdict recommends no restart and that a
/// dependency outage vetoed it.
fn assert_restart_vetoed(view: &Value, vetoes: &[&str]) {
    let restart = &view["log"]["restart"];
    assert_eq!(restart["restart_helps"], false, "{restart}");
    let vetoed_by = restart["vetoed_by"].as_str().unwrap_or_default();
    assert!(
        vetoes.contains(&vetoed_by),
        "restart vetoed by {vetoed_by:?}, expected one of {vetoes:?}: {restart}"
    );
    assert_eq!(view["health"], "degraded", "{view}");
}

/// Checks that nova-compute itself stayed up through an outage of a service
/// it depends on.
fn assert_compute_running(view: &Value) {
    assert_eq!(view["nova_compute"]["active_state"], "active", "{view}");
    assert_eq!(view["nova_compute"]["sub_state"], "running", "{view}");
}

#[test]
fn healthy_then_broker_outage_vetoes_restart() {
    let Some(stack) = Stack::boot("realnova-broker") else {
        return;
    };

    // Healthy: Debian's unit found by its name, the real process, no faults.
    stack.wait_healthy();
    let view = stack.show();
    let nova = &view["nova_compute"];
    assert_eq!(nova["unit"], NOVA_COMPUTE_UNIT, "{nova}");
    assert_eq!(nova["active_state"], "active", "{nova}");
    assert_eq!(nova["sub_state"], "running", "{nova}");
    let main_pid = stack
        .node
        .container
        .unit_property(NOVA_COMPUTE_UNIT, "MainPID")
        .unwrap();
    assert_eq!(nova["main_pid"].to_string(), main_pid, "{nova}");
    let command_line = nova["process"]["command_line"].as_str().unwrap_or_default();
    assert!(command_line.contains("/usr/bin/nova-compute"), "{nova}");
    assert!(
        command_line.contains("--config-file=/etc/nova/nova.conf"),
        "{nova}"
    );
    assert!(active_faults(&view).is_empty(), "{}", view["log"]);
    assert_eq!(
        view["log"]["journal_unit"], NOVA_COMPUTE_UNIT,
        "{}",
        view["log"]
    );
    assert_eq!(
        view["log"]["restart"]["restart_helps"], false,
        "{}",
        view["log"]
    );
    assert_eq!(view["health"], "healthy", "{view}");
    assert_eq!(view["reasons"].as_array().map(Vec::len), Some(0), "{view}");
    let reports_before = stack
        .node
        .compute_report_count()
        .unwrap_or_else(|err| stack.fail(&format!("{err:#}")))
        .unwrap_or(0);

    // RabbitMQ stops: nova-compute logs that the broker is unreachable and
    // keeps retrying, so a restart is vetoed.
    stack.stop(RABBITMQ_UNIT);
    let view = stack.wait_for(FAULT_TIMEOUT, "reporting the broker outage", |view| {
        fault_with_id(view, "amqp-broker-unreachable").is_some()
    });
    let fault = fault_with_id(&view, "amqp-broker-unreachable").unwrap();
    assert_eq!(fault["fault_kind"], "messaging", "{fault}");
    assert_eq!(fault["restart_helps"], false, "{fault}");
    let reason = fault["restart_reason"].as_str().unwrap_or_default();
    assert!(reason.contains("reconnects by itself"), "{fault}");
    let sample = fault["sample"].as_str().unwrap_or_default();
    assert!(sample.contains("AMQP server"), "{fault}");
    assert_restart_vetoed(&view, &MESSAGING_SIGNATURES);
    assert_compute_running(&view);
    let reasons = view["reasons"].to_string();
    assert!(reasons.contains("messaging"), "{reasons}");

    // RabbitMQ is back: nova-compute reconnects by itself and the fault clears.
    stack.start(RABBITMQ_UNIT);
    stack
        .node
        .wait_for_compute_log("Reconnected to AMQP server", RECOVERY_TIMEOUT)
        .unwrap_or_else(|err| stack.fail(&format!("{err:#}")));
    let view = stack.wait_for(
        RECOVERY_TIMEOUT,
        "healthy after the broker returned",
        |view| view["health"] == "healthy" && fault_of_kind(view, "messaging").is_none(),
    );
    assert!(active_faults(&view).is_empty(), "{}", view["log"]);
    assert_compute_running(&view);
    assert_eq!(
        view["nova_compute"]["main_pid"], nova["main_pid"],
        "nova-compute was restarted: {view}"
    );
    // nova's own heartbeat resumes: the service row counts new reports.
    let reports_after = stack
        .node
        .compute_report_count()
        .unwrap_or_else(|err| stack.fail(&format!("{err:#}")))
        .unwrap_or(0);
    stack
        .node
        .wait_for_report_count_above(reports_after.max(reports_before), RECOVERY_TIMEOUT)
        .unwrap_or_else(|err| stack.fail(&format!("{err:#}")));

    let changes = stack.health_changes();
    let degraded = changes
        .iter()
        .position(|d| d.starts_with("healthy -> degraded") && d.contains("messaging"))
        .unwrap_or_else(|| panic!("no change to degraded for messaging in {changes:#?}"));
    assert!(
        changes[degraded..]
            .iter()
            .any(|d| d.starts_with("degraded -> healthy")),
        "no change back to healthy in {changes:#?}"
    );
}

#[test]
fn conductor_and_placement_outages_veto_restart() {
    let Some(stack) = Stack::boot("realnova-deps") else {
        return;
    };
    stack.wait_healthy();

    // nova-conductor stops: RPC calls from nova-compute time out.
    stack.stop(NOVA_CONDUCTOR_UNIT);
    let view = stack.wait_for(FAULT_TIMEOUT, "reporting the conductor outage", |view| {
        fault_with_id(view, "rpc-reply-timeout").is_some()
    });
    let fault = fault_with_id(&view, "rpc-reply-timeout").unwrap();
    assert_eq!(fault["fault_kind"], "messaging", "{fault}");
    assert_eq!(fault["restart_helps"], false, "{fault}");
    assert_restart_vetoed(&view, &MESSAGING_SIGNATURES);
    assert_compute_running(&view);

    stack.start(NOVA_CONDUCTOR_UNIT);
    stack.wait_for(
        RECOVERY_TIMEOUT,
        "healthy after the conductor returned",
        |view| view["health"] == "healthy" && fault_of_kind(view, "messaging").is_none(),
    );

    // Placement stops: the next resource update fails. nova-compute logs
    // nothing when Placement returns, so the fault stays for its window.
    stack.stop(PLACEMENT_UNIT);
    let view = stack.wait_for(FAULT_TIMEOUT, "reporting the Placement outage", |view| {
        fault_of_kind(view, "placement").is_some()
    });
    let fault = fault_of_kind(&view, "placement").unwrap();
    assert_eq!(fault["signature_id"], "placement-unreachable", "{fault}");
    assert_eq!(fault["restart_helps"], false, "{fault}");
    assert_restart_vetoed(&view, &["placement-unreachable"]);
    assert_compute_running(&view);
    stack.start(PLACEMENT_UNIT);
}
