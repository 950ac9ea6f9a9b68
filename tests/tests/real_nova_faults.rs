//! Configuration faults of the real nova-compute: Debian 12's nova 26 (Zed)
//! in the stack of real_nova.rs, made to fail by a change to its own config
//! file and a restart, as an operator or a deployment tool would. Each fault
//! is checked through the controller (`novamedic node show`, `events`) and
//! through `novamedic-agent check` inside the node.
//!
//! Needs what real_nova.rs needs. Each scenario boots its own container: a
//! configuration fault stays active for an hour, longer than any test. The
//! stack listens on fixed ports, so the scenarios take turns.

use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use novamedic_tests::nova::{
    boot_nova_node, require_nova_env, NovaNode, NOVA_COMPUTE_LOG, NOVA_COMPUTE_UNIT,
};
use novamedic_tests::slice::Controller;
use serde_json::Value;

/// One nova stack at a time: its ports are fixed.
static STACK_PORTS: Mutex<()> = Mutex::new(());

/// Time for the agent to connect and report the node healthy.
const FIRST_REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// Time from the restart until the fault reaches the controller: nova-compute
/// loads its config and driver within seconds of its start.
const FAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The file Debian's unit passes after nova.conf; the scenarios change it.
const COMPUTE_CONF: &str = "/etc/nova/nova-compute.conf";

/// The agent's config inside the node, written by `boot_nova_node`.
const AGENT_CONF: &str = "/etc/novamedic/agent.toml";

struct Scenario {
    controller: Controller,
    node: NovaNode,
    _turn: MutexGuard<'static, ()>,
}

impl Scenario {
    /// Boots a node with the stack and waits until the controller shows it
    /// healthy.
    fn boot(name: &str) -> Option<Scenario> {
        let (env, rootfs) = require_nova_env()?;
        // A test that failed still released the ports when its container shut down.
        let turn = STACK_PORTS
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let controller = Controller::start(&env).expect("controller starts");
        let node = boot_nova_node(&env, &rootfs, name, &controller)
            .unwrap_or_else(|err| panic!("nova node boots: {err:#}"));
        let scenario = Scenario {
            controller,
            node,
            _turn: turn,
        };
        scenario.wait_for("healthy", FIRST_REPORT_TIMEOUT, |view| {
            view["health"] == "healthy" && view["log"]["log_file"] == NOVA_COMPUTE_LOG
        });
        Some(scenario)
    }

    fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n{}\n--- controller log ---\n{}",
            self.node.diagnostics(),
            self.controller.log()
        )
    }

    fn wait_for(&self, what: &str, timeout: Duration, accept: impl Fn(&Value) -> bool) -> Value {
        match self
            .controller
            .wait_for_node(self.node.name(), timeout, what, accept)
        {
            Ok((view, _)) => view,
            Err(err) => self.fail(&format!("{err:#}")),
        }
    }

    /// Replaces nova-compute.conf with `text` and restarts nova-compute. The
    /// restart job fails or nova-compute exits right after it; either way
    /// systemd keeps restarting it (Debian's unit has Restart=on-failure).
    fn reconfigure_and_restart(&self, text: &str) {
        self.node
            .container
            .write_file_mode(COMPUTE_CONF, text.as_bytes(), 0o644)
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
        let _ = self
            .node
            .container
            .systemctl(&["restart", "--no-block", NOVA_COMPUTE_UNIT]);
    }

    /// Waits until the controller shows the fault `signature_id`, checks
    /// what all three views (`node show`, `events`, the agent's `check`)
    /// say about it, and returns the fault from `node show`.
    fn expect_fault(&self, signature_id: &str, fault_kind: &str) -> Value {
        let view = self.wait_for(signature_id, FAULT_TIMEOUT, |view| {
            fault_with_id(view, signature_id).is_some()
        });
        let fault = fault_with_id(&view, signature_id).unwrap();
        eprintln!("{signature_id}: {fault:#}");
        assert_eq!(fault["fault_kind"], fault_kind, "{fault}");
        assert_eq!(fault["restart_helps"], false, "{fault}");
        let restart = &view["log"]["restart"];
        assert_eq!(restart["restart_helps"], false, "{restart}");
        assert_ne!(view["health"], "healthy", "{view}");
        let reasons = view["reasons"].to_string();
        assert!(reasons.contains(fault_kind), "{reasons}");

        // The unit's failure may reach the controller before the log's
        // fault does, so the change's reasons need not name the fault.
        let changes = self.health_changes();
        assert!(
            changes.iter().any(|d| d.starts_with("healthy -> ")),
            "no change from healthy in {changes:#?}"
        );

        let checked = self.agent_check();
        let local = fault_with_id(&checked, signature_id)
            .unwrap_or_else(|| self.fail(&format!("agent check lacks {signature_id}: {checked}")));
        assert_eq!(local["advice"], fault["advice"], "{local}");
        assert_eq!(local["restart_helps"], false, "{local}");
        assert_eq!(
            checked["log"]["restart"]["restart_helps"], false,
            "{checked}"
        );
        fault
    }

    /// Details of the node's `health_changed` events.
    fn health_changes(&self) -> Vec<String> {
        let events = self
            .controller
            .events(self.node.name())
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
        events
            .iter()
            .filter(|e| e["kind"] == "health_changed")
            .filter_map(|e| e["detail"].as_str().map(str::to_string))
            .collect()
    }

    /// Runs `novamedic-agent check -o json` inside the node.
    fn agent_check(&self) -> Value {
        let output = self
            .node
            .container
            .exec_ok(&[
                "novamedic-agent",
                "check",
                "--config",
                AGENT_CONF,
                "-o",
                "json",
            ])
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
        serde_json::from_str(&output).unwrap_or_else(|err| {
            self.fail(&format!("agent check printed no JSON ({err}): {output}"))
        })
    }

    /// Checks that nova-compute is not running: failed, or between two
    /// attempts of systemd's restart loop.
    fn assert_compute_down(&self, view: &Value) {
        let nova = &view["nova_compute"];
        let running = nova["active_state"] == "active" && nova["sub_state"] == "running";
        assert!(!running, "nova-compute runs despite the fault: {nova}");
    }
}

fn fault_with_id(view: &Value, signature_id: &str) -> Option<Value> {
    view["log"]["active_faults"]
        .as_array()?
        .iter()
        .find(|f| f["signature_id"] == signature_id)
        .cloned()
}

#[test]
fn invalid_option_value_is_classified_without_restart() {
    let Some(scenario) = Scenario::boot("realnova-badopt") else {
        return;
    };

    // A value oslo.config cannot convert: nova-compute exits at start with
    // ConfigFileValueError naming the option and the file.
    scenario.reconfigure_and_restart(
        "[DEFAULT]\ncompute_driver = fake.FakeDriver\nreport_interval = often\n",
    );
    let fault = scenario.expect_fault("invalid-configuration", "configuration");
    let sample = fault["sample"].as_str().unwrap_or_default();
    assert!(
        sample.contains("Value for option report_interval") && sample.contains(COMPUTE_CONF),
        "{fault}"
    );
    let advice = fault["advice"].as_str().unwrap_or_default();
    assert!(advice.contains("`report_interval`"), "{fault}");
    assert!(advice.contains(&format!("`{COMPUTE_CONF}`")), "{fault}");
    let view = scenario.wait_for("showing nova-compute down", FAULT_TIMEOUT, |view| {
        view["nova_compute"]["active_state"] != "active"
    });
    scenario.assert_compute_down(&view);
}

#[test]
fn libvirt_driver_without_libvirtd_is_classified_without_restart() {
    let Some(scenario) = Scenario::boot("realnova-libvirt") else {
        return;
    };

    // The libvirt driver without libvirtd: python3-libvirt loads, the
    // connection to libvirtd's socket fails.
    scenario.reconfigure_and_restart("[DEFAULT]\ncompute_driver = libvirt.LibvirtDriver\n");
    let fault = scenario.expect_fault("libvirt-daemon-unreachable", "hypervisor_connection");
    let sample = fault["sample"].as_str().unwrap_or_default();
    assert!(sample.contains("libvirt"), "{fault}");
    let advice = fault["advice"].as_str().unwrap_or_default();
    assert!(advice.contains("systemctl start libvirtd"), "{fault}");
    let view = scenario.wait_for("showing nova-compute down", FAULT_TIMEOUT, |view| {
        view["nova_compute"]["active_state"] != "active"
    });
    scenario.assert_compute_down(&view);
}
