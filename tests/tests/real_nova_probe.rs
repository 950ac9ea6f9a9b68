//! System tests of the agent's RPC liveness probe against the real
//! nova-compute: Debian 12's nova 26 with RabbitMQ, nova-conductor and
//! Placement under systemd, with the agent and the controller, all in one
//! container with a network namespace of its own. Each test boots its own
//! container, so the tests run in parallel. Every check reads novamedic's
//! own output (`novamedic nodes -o json`, `novamedic events -o json`).
//!
//! Needs what real_nova.rs needs, and nftables and iproute2 in the nova
//! tree (scripts/build-nova-rootfs.sh installs them).

use std::time::Duration;

use novamedic_tests::container::Bind;
use novamedic_tests::nova::{consumer_port, require_nova_env, NOVA_COMPUTE_UNIT, RABBITMQ_UNIT};
use novamedic_tests::private_nova::{
    boot_private_nova_stack, PrivateNodeOptions, PrivateNovaStack,
};
use serde_json::Value;

/// Probe settings of the tests: a failure shows within about 4 s.
const PROBE_CONFIG: &str = "\n[rpc_probe]\ninterval_seconds = 2\ntimeout_seconds = 2\n";

/// Routing key of nova-compute's queue: `compute.` plus the fixed
/// `[DEFAULT] host` of the test nova.conf.
const ROUTING_KEY: &str = "compute.novamedic-test-compute";

/// Time for the agent to connect and the first probe to find nova-compute
/// alive; a probe may meet nova-compute still setting up its consumers.
const ALIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// Time for a fault to reach the controller: a probe interval, its
/// timeout and a report, with a wide margin for a loaded machine.
const FAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Time for a restarted nova-compute to consume its queue again.
const RECOVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// nova-compute.conf for the connection-cut test: the fake driver as in the
/// tree's file, and no AMQP heartbeats, so nova-compute does not notice the
/// cut by itself during the test.
const NO_HEARTBEAT_COMPUTE_CONF: &str = "[DEFAULT]\n\
    compute_driver = fake.FakeDriver\n\
    \n\
    [oslo_messaging_rabbit]\n\
    heartbeat_timeout_threshold = 0\n";

struct Probe {
    stack: PrivateNovaStack,
    /// Keeps a bound host file alive until the container is down.
    _files: Option<tempfile::TempDir>,
}

impl Probe {
    fn boot(name: &str, binds: Vec<Bind>, files: Option<tempfile::TempDir>) -> Option<Probe> {
        let (env, rootfs) = require_nova_env()?;
        let options = PrivateNodeOptions {
            agent_config_extra: PROBE_CONFIG.to_string(),
            binds,
            controller_policy: None,
        };
        let stack = boot_private_nova_stack(&env, &rootfs, name, &options)
            .unwrap_or_else(|err| panic!("private nova stack boots: {err:#}"));
        Some(Probe {
            stack,
            _files: files,
        })
    }

    fn fail(&self, message: &str) -> ! {
        panic!("{message}\n{}", self.stack.diagnostics())
    }

    fn wait_for(&self, timeout: Duration, what: &str, accept: impl Fn(&Value) -> bool) -> Value {
        match self.stack.wait_for_node(timeout, what, accept) {
            Ok((view, _)) => view,
            Err(err) => self.fail(&format!("{err:#}")),
        }
    }

    fn wait_alive(&self, timeout: Duration, what: &str) -> Value {
        let view = self.wait_for(timeout, what, |view| probe_state(view) == "alive");
        let probe = &view["rpc_probe"];
        assert_eq!(probe["routing_key"], ROUTING_KEY, "{probe}");
        assert_eq!(probe["broker"], "127.0.0.1:5672", "{probe}");
        assert_eq!(probe["timeout_ms"], 2000, "{probe}");
        assert!(probe["checked_at"].is_string(), "{probe}");
        let detail = probe["detail"].as_str().unwrap_or_default();
        assert!(detail.contains("NoSuchMethod"), "{probe}");
        view
    }

    fn exec(&self, argv: &[&str]) -> String {
        self.stack
            .node
            .container
            .exec_ok(argv)
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")))
    }

    fn unit_property(&self, property: &str) -> String {
        self.stack
            .node
            .container
            .unit_property(NOVA_COMPUTE_UNIT, property)
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")))
    }

    /// Restarts nova-compute the way an operator does, `novamedic restart`,
    /// and returns its JSON outcome.
    fn operator_restart(&self) -> Value {
        let output = self
            .stack
            .cli(&[
                "restart",
                self.stack.node.name(),
                "--reason",
                "RPC probe fails",
                "--wait",
                "120",
            ])
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
        if output.exit_code != 0 {
            self.fail(&format!(
                "novamedic restart exited with {}: {}",
                output.exit_code, output.json
            ));
        }
        output.json
    }

    /// Checks that nova-compute's log contains no trace of the probe: the
    /// method name ends in `_ignore_errors`, which oslo.messaging logs at
    /// DEBUG only, and the test's nova.conf logs INFO and above.
    fn assert_compute_log_clean(&self) {
        let log = self.stack.node.compute_log_tail(2000);
        assert!(
            !log.contains("novamedic_liveness_probe"),
            "the probe shows in nova-compute's log:\n{log}"
        );
        assert!(
            !log.contains("Exception during message handling"),
            "nova-compute logged an RPC exception:\n{log}"
        );
    }

    fn assert_no_credentials(&self) {
        let journal = self.stack.node.journal("novamedic-agent.service", 500);
        let show = self
            .stack
            .cli_text(&["node", "show", self.stack.node.name()])
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")));
        let json = self
            .stack
            .cli_json(&["node", "show", self.stack.node.name()])
            .unwrap_or_else(|err| self.fail(&format!("{err:#}")))
            .to_string();
        for (what, text) in [
            ("agent journal", &journal),
            ("node show", &show),
            ("node show -o json", &json),
        ] {
            assert!(
                !text.contains("nova:novamedic-test@"),
                "{what} shows the transport URL:\n{text}"
            );
            assert!(
                !text.contains("rabbit://"),
                "{what} shows the transport URL:\n{text}"
            );
        }
    }
}

fn probe_state(view: &Value) -> &str {
    view["rpc_probe"]["state"].as_str().unwrap_or("none")
}

fn reasons(view: &Value) -> Vec<String> {
    view["reasons"]
        .as_array()
        .map(|list| {
            list.iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn rpc_reason(view: &Value) -> Option<String> {
    reasons(view)
        .into_iter()
        .find(|reason| reason.contains("does not answer RPC"))
}

#[test]
fn broker_outage_unknown_missing_queue_no_queue() {
    let Some(probe) = Probe::boot("probe-broker", Vec::new(), None) else {
        return;
    };

    // Healthy: the probe finds nova-compute alive, and the text views show it.
    let view = probe.wait_alive(ALIVE_TIMEOUT, "answering the RPC probe");
    assert_eq!(view["nova_compute"]["active_state"], "active", "{view}");
    let table = probe
        .stack
        .cli_text(&["nodes"])
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")));
    let header = table.lines().next().unwrap_or_default();
    assert!(header.contains("RPC"), "{table}");
    assert!(table.contains("alive "), "{table}");
    let show = probe
        .stack
        .cli_text(&["node", "show", probe.stack.node.name()])
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")));
    assert!(show.contains("RPC probe: alive in"), "{show}");
    assert!(show.contains(ROUTING_KEY), "{show}");

    // RabbitMQ stops: the probe cannot ask, which is not nova-compute's fault.
    probe
        .stack
        .node
        .stop(RABBITMQ_UNIT)
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")));
    let view = probe.wait_for(
        FAULT_TIMEOUT,
        "probe unknown with the broker down",
        |view| probe_state(view) == "unknown",
    );
    let detail = view["rpc_probe"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.starts_with("broker unreachable"),
        "{}",
        view["rpc_probe"]
    );
    assert!(detail.contains("127.0.0.1:5672"), "{}", view["rpc_probe"]);
    assert_eq!(rpc_reason(&view), None, "{view}");
    assert_ne!(view["health"], "failed", "{view}");
    assert_eq!(view["rpc_probe"]["broker"], "", "{}", view["rpc_probe"]);

    // RabbitMQ is back: nova-compute reconnects and the probe finds it alive.
    probe
        .stack
        .node
        .start(RABBITMQ_UNIT)
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")));
    probe.wait_alive(
        RECOVERY_TIMEOUT,
        "answering again after the broker returned",
    );

    // nova-compute stops and its queue is deleted: the broker returns the
    // call, so a missing consumer differs from a silent one.
    probe
        .stack
        .node
        .stop(NOVA_COMPUTE_UNIT)
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")));
    probe.exec(&[
        "rabbitmqctl",
        "-q",
        "delete_queue",
        "-p",
        "nova",
        ROUTING_KEY,
    ]);
    let view = probe.wait_for(
        FAULT_TIMEOUT,
        "probe no_queue without nova-compute",
        |view| probe_state(view) == "no_queue",
    );
    let detail = view["rpc_probe"]["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("NO_ROUTE"), "{}", view["rpc_probe"]);
    assert_eq!(
        view["rpc_probe"]["broker"], "127.0.0.1:5672",
        "{}",
        view["rpc_probe"]
    );
    probe
        .stack
        .node
        .start(NOVA_COMPUTE_UNIT)
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")));
    probe.wait_alive(
        RECOVERY_TIMEOUT,
        "answering after nova-compute started again",
    );

    probe.assert_compute_log_clean();
    probe.assert_no_credentials();
}

#[test]
fn sigstop_fails_probe_until_operator_restart() {
    let Some(probe) = Probe::boot("probe-sigstop", Vec::new(), None) else {
        return;
    };
    probe.wait_alive(ALIVE_TIMEOUT, "answering the RPC probe");
    let invocation_before = probe.unit_property("InvocationID");

    // Freeze the main process; systemd keeps the unit active/running.
    probe.exec(&[
        "systemctl",
        "kill",
        "--kill-whom=main",
        "--signal=SIGSTOP",
        NOVA_COMPUTE_UNIT,
    ]);
    let view = probe.wait_for(FAULT_TIMEOUT, "not answering while stopped", |view| {
        probe_state(view) == "not_responding"
            && view["nova_compute"]["process"]["state"] == "T"
            && rpc_reason(view).is_some()
    });
    assert_eq!(view["nova_compute"]["active_state"], "active", "{view}");
    assert_eq!(view["nova_compute"]["sub_state"], "running", "{view}");
    assert_eq!(view["health"], "failed", "{view}");
    let detail = view["rpc_probe"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("no reply from compute.novamedic-test-compute within 2000 ms"),
        "{detail}"
    );
    assert!(
        reasons(&view).iter().any(|r| r.contains("stopped (T)")),
        "{view}"
    );

    // The operator restarts it: a new invocation that replies again.
    let outcome = probe.operator_restart();
    assert_eq!(outcome["outcome"], "succeeded", "{outcome}");
    let view = probe.wait_alive(RECOVERY_TIMEOUT, "answering after the restart");
    let invocation_after = view["nova_compute"]["invocation_id"]
        .as_str()
        .unwrap_or_default();
    assert_ne!(invocation_after, invocation_before, "{view}");
    assert_eq!(rpc_reason(&view), None, "{view}");

    let events = probe
        .stack
        .events()
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")));
    let failed = events.iter().any(|e| {
        e["kind"] == "health_changed"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("does not answer RPC"))
    });
    assert!(failed, "no health change for the RPC probe in {events:#?}");
    probe.assert_compute_log_clean();
}

#[test]
fn cut_consumer_connection_fails_probe_until_restart() {
    let files = tempfile::tempdir().expect("temporary directory");
    let conf = files.path().join("nova-compute.conf");
    std::fs::write(&conf, NO_HEARTBEAT_COMPUTE_CONF).expect("nova-compute.conf written");
    let binds = vec![Bind::read_only(&conf, "/etc/nova/nova-compute.conf")];
    let Some(probe) = Probe::boot("probe-cut", binds, Some(files)) else {
        return;
    };
    let view = probe.wait_alive(ALIVE_TIMEOUT, "answering the RPC probe");
    let invocation_before = view["nova_compute"]["invocation_id"].clone();

    // Find the connection that consumes compute.HOST and drop everything
    // the broker sends on it. nova-compute's other connections (publishing,
    // replies) keep working, so its own heartbeat goes on.
    let port = consumer_port(&probe.stack.node.container, ROUTING_KEY)
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")));
    probe.exec(&["nft", "add", "table", "inet", "novamedic_test"]);
    probe.exec(&[
        "nft",
        "add chain inet novamedic_test output { type filter hook output priority 0 ; }",
    ]);
    probe.exec(&[
        "nft",
        &format!("add rule inet novamedic_test output tcp sport 5672 tcp dport {port} drop"),
    ]);

    // Every check from outside looks healthy: the process sleeps or runs, the
    // unit is active and the connection is established.
    let main_pid = probe.unit_property("MainPID");
    let stat = probe.exec(&["ps", "-o", "stat=", "-p", &main_pid]);
    assert!(stat.trim().starts_with(['S', 'R']), "ps shows {stat:?}");
    assert_eq!(probe.unit_property("ActiveState"), "active");
    let sockets = probe.exec(&[
        "ss",
        "-tn",
        "state",
        "established",
        &format!("( sport = :{port} )"),
    ]);
    assert!(
        sockets.contains(":5672"),
        "no established socket on port {port}:\n{sockets}"
    );
    let reports = probe
        .stack
        .node
        .compute_report_count()
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")))
        .unwrap_or(0);

    // The probe fails and gives the reason; the process state stays S or R.
    let view = probe.wait_for(
        FAULT_TIMEOUT,
        "not answering with its consumer cut off",
        |view| probe_state(view) == "not_responding" && rpc_reason(view).is_some(),
    );
    let state = view["nova_compute"]["process"]["state"]
        .as_str()
        .unwrap_or_default();
    assert!(matches!(state, "S" | "R"), "{view}");
    assert_eq!(view["health"], "failed", "{view}");
    // nova's own heartbeat goes on, so nova still counts the service up.
    probe
        .stack
        .node
        .wait_for_report_count_above(reports, FAULT_TIMEOUT)
        .unwrap_or_else(|err| probe.fail(&format!("{err:#}")));

    // A restart opens new connections, which the rule does not match.
    let outcome = probe.operator_restart();
    assert_eq!(outcome["outcome"], "succeeded", "{outcome}");
    let view = probe.wait_alive(RECOVERY_TIMEOUT, "answering after the restart");
    assert_ne!(
        view["nova_compute"]["invocation_id"], invocation_before,
        "{view}"
    );
    let rules = probe.exec(&["nft", "list", "table", "inet", "novamedic_test"]);
    assert!(rules.contains(&format!("dport {port} drop")), "{rules}");
}
