//! The self-healing policy end to end: the real agent under real systemd in
//! a container, the real controller with a policy in enforce mode, and
//! faults made the way they happen on a compute node. Every check reads
//! novamedic's own output: `novamedic events`, `policy show` and `nodes`.
//!
//! The stand-in nova-compute tests need what systemd_slice.rs needs; the
//! wedged nova-compute test needs what real_nova_probe.rs needs. Each test
//! boots its own container and controller, so the tests run in parallel.
//! The policy's timers are short (see [`STAND_IN_POLICY`]); the checks count
//! events and never time them.

use std::thread;
use std::time::{Duration, Instant};

use novamedic_tests::container::Bind;
use novamedic_tests::nova::{consumer_port, require_nova_env};
use novamedic_tests::private_nova::{
    boot_private_nova_stack, PrivateNodeOptions, PrivateNovaStack,
};
use novamedic_tests::slice::{
    boot_compute_node, AgentSettings, ComputeNode, Controller, NOVA_UNIT, POLL_INTERVAL,
};
use novamedic_tests::system_env::require_system_test_env;
use serde_json::Value;

/// Policy of the stand-in tests: enforce, two reports over a second confirm
/// a condition, two restarts per node before it needs a human.
const STAND_IN_POLICY: &str = r#"
mode = "enforce"
start_grace_seconds = 2
verify_seconds = 30

[node]
max_restarts = 2
window_seconds = 3600
backoff_seconds = 1

[fleet]
min_gap_seconds = 0
jitter_seconds = 0

[[rule]]
condition = "unit-failed"
confirm_reports = 2
confirm_seconds = 1

[[rule]]
condition = "start-limit-hit"
confirm_reports = 2
confirm_seconds = 1

[[rule]]
condition = "process-stopped"
confirm_reports = 2
confirm_seconds = 1
"#;

/// Time for a new agent to connect and report a healthy nova-compute.
const FIRST_REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// Time for a fault to be confirmed, acted on and verified.
const POLICY_TIMEOUT: Duration = Duration::from_secs(90);

/// Reports to wait after the final decision, to see that nothing more goes
/// out. The agent reports every second.
const QUIET_REPORTS: u32 = 5;

struct Scenario {
    controller: Controller,
    node: ComputeNode,
}

impl Scenario {
    fn boot(name: &str) -> Option<Scenario> {
        let env = require_system_test_env()?;
        let controller =
            Controller::start_with_policy(&env, STAND_IN_POLICY).expect("controller starts");
        let settings = controller.agent_settings(&AgentSettings::default());
        let node = boot_compute_node(&env, name, &controller.url(), &settings).expect("node boots");
        let scenario = Scenario { controller, node };
        scenario.wait_node("healthy", |view| view["health"] == "healthy");
        Some(scenario)
    }

    fn name(&self) -> &str {
        self.node.name()
    }

    fn fail(&self, message: &str) -> ! {
        panic!(
            "{message}\n--- events ---\n{:#?}\n--- agent journal ---\n{}\n--- controller log ---\n{}",
            self.controller.events(self.name()).unwrap_or_default(),
            self.node.agent_journal(),
            self.controller.log()
        )
    }

    fn exec(&self, argv: &[&str]) -> String {
        self.node
            .container
            .exec_ok(argv)
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")))
    }

    fn write_file(&self, path: &str, content: &str) {
        self.node
            .container
            .write_file(path, content.as_bytes())
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
    }

    fn wait_node(&self, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        match self
            .controller
            .wait_for_node(self.name(), FIRST_REPORT_TIMEOUT, what, accept)
        {
            Ok((view, _)) => view,
            Err(err) => self.fail(&format!("{err:#}")),
        }
    }

    fn events(&self) -> Vec<Value> {
        self.controller
            .events(self.name())
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")))
    }

    /// Polls the events until one of `kind` has a detail containing
    /// `needle`; returns all events at that moment.
    fn wait_event(&self, kind: &str, needle: &str) -> Vec<Value> {
        let started = Instant::now();
        while started.elapsed() < POLICY_TIMEOUT {
            let events = self.events();
            if events.iter().any(|e| is_event(e, kind, needle)) {
                return events;
            }
            thread::sleep(POLL_INTERVAL * 5);
        }
        self.fail(&format!("no {kind} event containing {needle:?}"))
    }

    /// Waits until the agent has sent `reports` more reports, so the policy
    /// has had that many chances to act again.
    fn wait_reports(&self, reports: u32) {
        for _ in 0..reports {
            let seen = self.last_seen();
            self.wait_node("reporting again", |view| view["last_seen"] != seen);
        }
    }

    fn last_seen(&self) -> Value {
        match self.controller.node(self.name()) {
            Ok(Some(view)) => view["last_seen"].clone(),
            Ok(None) => Value::Null,
            Err(err) => self.fail(&format!("{err:#}")),
        }
    }

    /// Returns this node's entry of `novamedic policy show`, if listed.
    fn policy_node(&self) -> Option<Value> {
        let policy = self
            .controller
            .cli_json(&["policy", "show"])
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
        assert_eq!(policy["mode"], "enforce", "{policy}");
        policy["nodes"]
            .as_array()
            .and_then(|nodes| nodes.iter().find(|n| n["node"] == self.name()).cloned())
    }

    /// Kills nova-compute's main process; with `Restart=no` the unit fails.
    fn kill_nova(&self) {
        self.exec(&[
            "systemctl",
            "kill",
            "--kill-whom=main",
            "--signal=SIGKILL",
            NOVA_UNIT,
        ]);
    }

    /// Installs a drop-in for nova-compute's unit and restarts it.
    fn reconfigure_nova(&self, drop_in: &str) {
        self.write_file(
            "/etc/systemd/system/nova-compute.service.d/test.conf",
            drop_in,
        );
        self.exec(&["systemctl", "daemon-reload"]);
        self.exec(&["systemctl", "restart", NOVA_UNIT]);
    }
}

fn is_event(event: &Value, kind: &str, needle: &str) -> bool {
    event["kind"] == kind
        && event["detail"]
            .as_str()
            .is_some_and(|detail| detail.contains(needle))
}

/// Commands the policy sent, oldest first.
fn policy_commands(events: &[Value]) -> Vec<&Value> {
    let mut sent: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "command_sent" && e["actor"] == "policy")
        .collect();
    sent.sort_by_key(|e| e["id"].as_i64());
    sent
}

/// The result event of `command`.
fn result_of<'a>(events: &'a [Value], command: &Value) -> Option<&'a Value> {
    events
        .iter()
        .find(|e| e["kind"] == "command_result" && e["command_id"] == command["command_id"])
}

impl Scenario {
    /// Waits for the result of the policy's only command. The agent's
    /// report of the new run, which verifies the restart, may arrive before
    /// the result, which waits for the settle time.
    fn wait_policy_result(&self) -> (Vec<Value>, Value) {
        let started = Instant::now();
        while started.elapsed() < POLICY_TIMEOUT {
            let events = self.events();
            let sent = policy_commands(&events);
            if let Some(result) = sent.first().and_then(|command| result_of(&events, command)) {
                let result = result.clone();
                return (events, result);
            }
            thread::sleep(POLL_INTERVAL * 5);
        }
        self.fail("no result of the policy's command")
    }
}

#[test]
fn dead_unit_restarted_once() {
    let Some(scenario) = Scenario::boot("policy-dies") else {
        return;
    };
    scenario.kill_nova();

    scenario.wait_event("policy_decision", "brought the node back");
    let (events, result) = scenario.wait_policy_result();
    let sent = policy_commands(&events);
    assert_eq!(sent.len(), 1, "{events:#?}");
    let detail = sent[0]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("restart nova-compute.service"),
        "{detail}"
    );
    assert!(detail.contains("unit-failed"), "{detail}");
    assert!(
        result["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("succeeded")),
        "{result}"
    );

    let view = scenario.wait_node("healthy again", |view| view["health"] == "healthy");
    assert_eq!(view["nova_compute"]["active_state"], "active", "{view}");
    scenario.wait_reports(QUIET_REPORTS);
    assert_eq!(policy_commands(&scenario.events()).len(), 1);
    let policy = scenario.policy_node().expect("node in policy show");
    assert_eq!(policy["restarts_in_window"], 1, "{policy}");
    assert_eq!(policy["needs_human"], Value::Null, "{policy}");
    assert_eq!(policy["in_flight"], Value::Null, "{policy}");
}

#[test]
fn repeated_crashes_need_a_human() {
    let Some(scenario) = Scenario::boot("policy-crashes") else {
        return;
    };
    scenario.reconfigure_nova("[Service]\nEnvironment=FAKE_NOVA_EXIT_AFTER_SECONDS=4\n");

    let events = scenario.wait_event("policy_decision", "needs a human, automation leaves");
    let sent = policy_commands(&events);
    assert_eq!(sent.len(), 2, "max_restarts is 2: {events:#?}");
    let escalation = events
        .iter()
        .find(|e| is_event(e, "policy_decision", "needs a human, automation leaves"))
        .unwrap();
    assert!(
        escalation["detail"]
            .as_str()
            .is_some_and(|d| d.contains("persists after 2 automated restarts")),
        "{escalation}"
    );

    // The stand-in keeps crashing, and the node stays with the human.
    scenario.wait_node("failed after the escalation", |view| {
        view["nova_compute"]["active_state"] == "failed"
    });
    scenario.wait_reports(QUIET_REPORTS);
    let events = scenario.events();
    assert_eq!(policy_commands(&events).len(), 2, "{events:#?}");
    let policy = scenario.policy_node().expect("node in policy show");
    assert!(
        policy["needs_human"]
            .as_str()
            .is_some_and(|reason| reason.contains("unit-failed")),
        "{policy}"
    );
    assert_eq!(policy["restarts_in_window"], 2, "{policy}");
}

#[test]
fn traced_process_left_alone() {
    let Some(scenario) = Scenario::boot("policy-traced") else {
        return;
    };
    let view = scenario.wait_node("showing nova-compute's process", |view| {
        view["nova_compute"]["process"]["pid"].as_u64().is_some()
    });
    let pid = view["nova_compute"]["process"]["pid"].to_string();

    // Attach a tracer the way `gdb -p` does: PTRACE_ATTACH sends SIGSTOP,
    // so the process is stopped and traced at once, and the tracer stays
    // alive. It runs inside, in a unit of its own, because a tracer in
    // another PID namespace shows as TracerPid 0. `0+` makes perl pass the
    // PID as a number rather than a pointer to its string.
    let ptrace_attach = format!(
        "syscall({}, 16, 0+$ARGV[0], 0, 0) == 0 or die \"ptrace: $!\\n\"; sleep 3600",
        ptrace_syscall_number()
    );
    scenario.exec(&[
        "systemd-run",
        "--unit=test-tracer",
        "perl",
        "-e",
        &ptrace_attach,
        &pid,
    ]);
    let view = scenario.wait_node("traced", |view| {
        view["nova_compute"]["process"]["tracer_pid"]
            .as_u64()
            .is_some_and(|tracer| tracer != 0)
    });
    let state = view["nova_compute"]["process"]["state"]
        .as_str()
        .unwrap_or_default();
    assert!(matches!(state, "T" | "t"), "{view}");

    let events = scenario.wait_event("policy_decision", "stopped under tracer PID");
    let hold = events
        .iter()
        .find(|e| is_event(e, "policy_decision", "stopped under tracer PID"))
        .unwrap();
    assert!(
        hold["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("no restart for process-stopped")),
        "{hold}"
    );
    scenario.wait_reports(QUIET_REPORTS);
    let events = scenario.events();
    assert!(policy_commands(&events).is_empty(), "{events:#?}");
    let holds = events
        .iter()
        .filter(|e| is_event(e, "policy_decision", "stopped under tracer PID"))
        .count();
    assert_eq!(holds, 1, "a hold is recorded once: {events:#?}");
}

/// Number of the ptrace system call on this architecture.
fn ptrace_syscall_number() -> u32 {
    match std::env::consts::ARCH {
        "aarch64" => 117,
        _ => 101,
    }
}

/// Drop-in of the missing-dependency test: a second config file, systemd's
/// own restarts, and a start limit they reach within seconds.
const START_LIMIT_DROP_IN: &str = "[Unit]\n\
    StartLimitIntervalSec=120\n\
    StartLimitBurst=3\n\
    [Service]\n\
    ExecStart=\n\
    ExecStart=/usr/bin/nova-compute --config-file=/etc/nova/nova.conf \
    --config-file=/etc/nova/nova-compute.conf --log-file=/var/log/nova/nova-compute.log\n\
    Restart=on-failure\n\
    RestartSec=1\n";

const COMPUTE_CONF: &str = "/etc/nova/nova-compute.conf";

#[test]
fn missing_dependency_gets_one_start() {
    let Some(scenario) = Scenario::boot("policy-dependency") else {
        return;
    };
    scenario.write_file(COMPUTE_CONF, "[DEFAULT]\n");
    scenario.reconfigure_nova(START_LIMIT_DROP_IN);
    // The agent learns nova's config files from the running process.
    scenario.wait_node("running with both config files", |view| {
        view["nova_compute"]["process"]["command_line"]
            .as_str()
            .is_some_and(|line| line.contains(COMPUTE_CONF))
    });

    // The file goes; every start fails until systemd gives up. systemd 252
    // leaves Result=exit-code when its own restarts run into the start
    // limit, so NRestarts is what shows it.
    scenario.exec(&["rm", COMPUTE_CONF]);
    scenario.kill_nova();
    scenario.wait_node("in the start limit", |view| {
        view["nova_compute"]["active_state"] == "failed"
            && view["nova_compute"]["n_restarts"]
                .as_u64()
                .is_some_and(|restarts| restarts > 0)
    });
    let events = scenario.wait_event(
        "policy_decision",
        "waiting for a sign that the cause is gone",
    );
    scenario.wait_reports(QUIET_REPORTS);
    let events_before = scenario.events();
    assert!(
        policy_commands(&events_before).is_empty(),
        "no start while the file is missing: {events:#?}"
    );

    // The file comes back: one start, after the reset.
    scenario.write_file(COMPUTE_CONF, "[DEFAULT]\n");
    scenario.wait_event("policy_decision", "brought the node back");
    let (events, result) = scenario.wait_policy_result();
    let sent = policy_commands(&events);
    assert_eq!(sent.len(), 1, "{events:#?}");
    let detail = sent[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.starts_with("reset-failed and restart"), "{detail}");
    assert!(detail.contains("nova-compute.conf modified"), "{detail}");
    let result_detail = result["detail"].as_str().unwrap_or_default();
    assert!(result_detail.starts_with("succeeded"), "{result}");
    assert!(result_detail.contains("ResetFailedUnit"), "{result}");
    assert!(
        events
            .iter()
            .any(|e| is_event(e, "policy_decision", "after reset-failed")),
        "{events:#?}"
    );

    let view = scenario.wait_node("healthy again", |view| view["health"] == "healthy");
    assert_eq!(view["nova_compute"]["active_state"], "active", "{view}");
    scenario.wait_reports(QUIET_REPORTS);
    assert_eq!(policy_commands(&scenario.events()).len(), 1);
}

#[test]
fn incoming_migration_holds_restart() {
    let Some(scenario) = Scenario::boot("policy-migration") else {
        return;
    };
    // A process with the command line of a live migration's destination
    // qemu; bash runs the loop under that argv[0].
    scenario.exec(&[
        "systemd-run",
        "--unit=test-incoming-qemu",
        "bash",
        "-c",
        "exec -a /usr/bin/qemu-system-x86_64 bash -c 'while :; do sleep 60; done' \
         -name guest=instance-00000007 -uuid 0c4ee2f7-5a47-4bc6-8d0e-3b1e6f9a2d11 -m 512 \
         -incoming defer",
    ]);
    let view = scenario.wait_node("showing the incoming guest", |view| {
        view["guests"]["incoming_migrations"] == 1
    });
    assert_eq!(
        view["guests"]["list"][0]["name"], "instance-00000007",
        "{view}"
    );
    assert_eq!(
        view["guests"]["list"][0]["incoming_migration"], true,
        "{view}"
    );

    scenario.kill_nova();
    let events = scenario.wait_event("policy_decision", "live migration into this node");
    let hold = events
        .iter()
        .find(|e| is_event(e, "policy_decision", "live migration into this node"))
        .unwrap();
    assert!(
        hold["detail"].as_str().is_some_and(|d| d
            .starts_with("no restart for unit-failed: instances mid-operation")
            && d.contains("instance-00000007")),
        "{hold}"
    );
    scenario.wait_reports(QUIET_REPORTS);
    let events = scenario.events();
    assert!(policy_commands(&events).is_empty(), "{events:#?}");

    // The migration ends (here: the guest goes away); the restart follows.
    scenario.exec(&["systemctl", "stop", "test-incoming-qemu.service"]);
    let events = scenario.wait_event("policy_decision", "brought the node back");
    assert_eq!(policy_commands(&events).len(), 1, "{events:#?}");
}

/// Policy of the real nova-compute test: a probe that fails twice over 4 s
/// is confirmed; nova-compute needs up to a minute to serve after a start.
const REAL_NOVA_POLICY: &str = r#"
mode = "enforce"
start_grace_seconds = 5
verify_seconds = 180

[fleet]
min_gap_seconds = 0
jitter_seconds = 0

[[rule]]
condition = "rpc-not-responding"
confirm_reports = 2
confirm_seconds = 4
"#;

/// nova-compute.conf without AMQP heartbeats, so nova-compute does not
/// notice a cut consumer connection by itself during the test.
const NO_HEARTBEAT_COMPUTE_CONF: &str = "[DEFAULT]\n\
    compute_driver = fake.FakeDriver\n\
    \n\
    [oslo_messaging_rabbit]\n\
    heartbeat_timeout_threshold = 0\n";

/// Routing key of nova-compute's queue in the test nova.conf.
const ROUTING_KEY: &str = "compute.novamedic-test-compute";

/// Time for the real nova-compute to answer the probe, at boot and after a
/// restart.
const NOVA_ALIVE_TIMEOUT: Duration = Duration::from_secs(180);

#[test]
fn wedged_nova_compute_restarted_once() {
    let Some((env, rootfs)) = require_nova_env() else {
        return;
    };
    let files = tempfile::tempdir().expect("temporary directory");
    let conf = files.path().join("nova-compute.conf");
    std::fs::write(&conf, NO_HEARTBEAT_COMPUTE_CONF).expect("nova-compute.conf written");
    let options = PrivateNodeOptions {
        agent_config_extra: "\n[rpc_probe]\ninterval_seconds = 2\ntimeout_seconds = 2\n"
            .to_string(),
        binds: vec![Bind::read_only(&conf, "/etc/nova/nova-compute.conf")],
        controller_policy: Some(REAL_NOVA_POLICY.to_string()),
    };
    let stack = boot_private_nova_stack(&env, &rootfs, "policy-wedged", &options)
        .unwrap_or_else(|err| panic!("private nova stack boots: {err:#}"));
    let fail = |message: &str| -> ! { panic!("{message}\n{}", stack.diagnostics()) };
    let wait = |what: &str, accept: &dyn Fn(&Value) -> bool| -> Value {
        match stack.wait_for_node(NOVA_ALIVE_TIMEOUT, what, accept) {
            Ok((view, _)) => view,
            Err(err) => fail(&format!("{err:#}")),
        }
    };
    let view = wait("answering the RPC probe", &|view| {
        view["rpc_probe"]["state"] == "alive"
    });
    let invocation_before = view["nova_compute"]["invocation_id"].clone();

    // Drop everything the broker sends on nova-compute's consumer
    // connection: the process runs, the unit is active, the broker answers,
    // and nova-compute never sees a call.
    let container = &stack.node.container;
    let port =
        consumer_port(container, ROUTING_KEY).unwrap_or_else(|err| fail(&format!("{err:#}")));
    let rule = format!("add rule inet novamedic_test output tcp sport 5672 tcp dport {port} drop");
    for argv in [
        vec!["nft", "add", "table", "inet", "novamedic_test"],
        vec![
            "nft",
            "add chain inet novamedic_test output { type filter hook output priority 0 ; }",
        ],
        vec!["nft", &rule],
    ] {
        container
            .exec_ok(&argv)
            .unwrap_or_else(|err| fail(&format!("{err:#}")));
    }

    // The policy confirms it, restarts nova-compute and sees it answer.
    let events = wait_stack_event(&stack, "brought the node back");
    let sent = policy_commands(&events);
    assert_eq!(sent.len(), 1, "{events:#?}");
    let detail = sent[0]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("rpc-not-responding"), "{detail}");
    let view = wait("answering after the restart", &|view| {
        view["rpc_probe"]["state"] == "alive"
    });
    assert_ne!(
        view["nova_compute"]["invocation_id"], invocation_before,
        "{view}"
    );

    let reports_seen = view["last_seen"].clone();
    wait("reporting after the restart", &|view| {
        view["last_seen"] != reports_seen
    });
    let events = stack
        .events()
        .unwrap_or_else(|err| fail(&format!("{err:#}")));
    assert_eq!(policy_commands(&events).len(), 1, "{events:#?}");
}

/// Polls the private stack's events until a policy decision contains
/// `needle`.
fn wait_stack_event(stack: &PrivateNovaStack, needle: &str) -> Vec<Value> {
    let started = Instant::now();
    let mut events = Vec::new();
    while started.elapsed() < NOVA_ALIVE_TIMEOUT {
        match stack.events() {
            Ok(list) if list.iter().any(|e| is_event(e, "policy_decision", needle)) => return list,
            Ok(list) => events = list,
            Err(_) => {}
        }
        thread::sleep(POLL_INTERVAL * 5);
    }
    panic!(
        "no policy decision containing {needle:?}\n--- events ---\n{events:#?}\n{}",
        stack.diagnostics()
    )
}
