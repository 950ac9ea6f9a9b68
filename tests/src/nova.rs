//! The real nova-compute in a container. Debian 12's nova 26 (Zed) runs with
//! nova's fake virt driver, nova-conductor, the Placement API and RabbitMQ
//! under systemd, on the tree that `scripts/build-nova-rootfs.sh` builds. The
//! agent comes from `packaging/`, and the controller runs on the host.
//!
//! The stack listens on fixed ports of 127.0.0.1 in the host's network
//! namespace (5672, 25672, 4369, 8778), so only one such container can run
//! on a host at a time: tests that boot one must not overlap. The
//! `private_nova` module boots the same tree in a network namespace of its
//! own, where that limit does not apply.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::container::{Bind, Container};
use crate::slice::{
    install_agent_privileges, install_node_certificate_for, AGENT_UNIT, POLL_INTERVAL,
};
use crate::system_env::{require_system_test_env, SystemTestEnv, SKIP_VARIABLE};

/// Overrides the nova tree's location (default `target/novamedic-nova-rootfs`).
pub const NOVA_ROOTFS_VARIABLE: &str = "NOVAMEDIC_NOVA_ROOTFS";

/// File that `scripts/build-nova-rootfs.sh` writes last into a finished tree.
const NOVA_ROOTFS_STAMP: &str = ".novamedic-rootfs-stamp";

/// Debian's unit names, which the agent must detect by itself.
pub const NOVA_COMPUTE_UNIT: &str = "nova-compute.service";
pub const NOVA_CONDUCTOR_UNIT: &str = "nova-conductor.service";
pub const PLACEMENT_UNIT: &str = "placement-api.service";
pub const RABBITMQ_UNIT: &str = "rabbitmq-server.service";

/// The stack's units in start order.
pub const STACK_UNITS: [&str; 4] = [
    RABBITMQ_UNIT,
    PLACEMENT_UNIT,
    NOVA_CONDUCTOR_UNIT,
    NOVA_COMPUTE_UNIT,
];

/// nova's `host` in the tree's nova.conf (`packaging/test/nova/nova.conf`):
/// the name that os-services and the compute events carry.
pub const NOVA_HOST: &str = "novamedic-test-compute";

/// nova-compute's log file, from Debian's `--log-file` argument.
pub const NOVA_COMPUTE_LOG: &str = "/var/log/nova/nova-compute.log";

/// TCP ports the stack listens on, all on 127.0.0.1.
pub const STACK_PORTS: [(u16, &str); 4] = [
    (5672, "RabbitMQ AMQP"),
    (25672, "RabbitMQ Erlang distribution"),
    (4369, "epmd"),
    (8778, "Placement API"),
];

/// Time from boot until nova-compute has reported to the conductor. It took
/// 10 to 15 s on a two-core VM; the margin covers builds running beside it.
const STACK_TIMEOUT: Duration = Duration::from_secs(180);

/// Line nova-compute logs at INFO once its service starts.
const STARTED_LINE: &str = "Starting compute node";

/// Returns the environment and the nova tree when this machine can run the
/// real-nova tests, with the same skip rules as
/// [`require_system_test_env`].
///
/// # Panics
///
/// Panics with the fix when the tree is missing and skipping is not allowed.
pub fn require_nova_env() -> Option<(SystemTestEnv, PathBuf)> {
    let env = require_system_test_env()?;
    let rootfs = std::env::var_os(NOVA_ROOTFS_VARIABLE)
        .map(PathBuf::from)
        .unwrap_or_else(|| env.target_dir.join("novamedic-nova-rootfs"));
    if rootfs.join(NOVA_ROOTFS_STAMP).exists() {
        return Some((env, rootfs));
    }

    let problem = format!(
        "no finished nova tree at {} (build it with scripts/build-nova-rootfs.sh)",
        rootfs.display()
    );
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let skip = std::env::var(SKIP_VARIABLE).is_ok_and(|v| v == "1");
    if skip && !in_ci {
        eprintln!("skipping real-nova test because {SKIP_VARIABLE}=1: {problem}");
        return None;
    }
    panic!("real-nova test cannot run: {problem}, or set {SKIP_VARIABLE}=1 to skip it");
}

/// A booted node with the real nova stack and the agent. The container is
/// shut down on drop.
pub struct NovaNode {
    pub container: Container,
}

impl NovaNode {
    /// Node name the agent reports under from boot: the container's machine
    /// name. [`NovaNode::restart_agent_as`] changes it.
    pub fn name(&self) -> &str {
        self.container.machine()
    }

    /// Restarts the agent under the node name `node`, with a certificate
    /// for that name from `controller`'s CA, so the controller lists it as
    /// a new node.
    pub fn restart_agent_as(
        &self,
        env: &SystemTestEnv,
        node: &str,
        controller: &crate::slice::Controller,
    ) -> Result<()> {
        self.configure_agent(env, node, controller)?;
        self.container
            .systemctl_ok(&["restart", AGENT_UNIT])
            .with_context(|| format!("cannot restart {AGENT_UNIT}\n{}", self.diagnostics()))?;
        Ok(())
    }

    /// Writes a certificate for `node` from `controller`'s CA, gives the
    /// agent its package's privileges and writes an agent.toml that reports
    /// under `node`.
    fn configure_agent(
        &self,
        env: &SystemTestEnv,
        node: &str,
        controller: &crate::slice::Controller,
    ) -> Result<()> {
        // The certificate first: the package's postinst gives the agent's
        // user read access to the key.
        install_node_certificate_for(&self.container, &controller.tls_dir(), node)?;
        install_agent_privileges(env, &self.container)?;
        let config = nova_agent_config(node, &controller.url());
        self.container
            .write_file("/etc/novamedic/agent.toml", config.as_bytes())
    }

    /// Stops `unit` inside and waits for the stop job to finish.
    pub fn stop(&self, unit: &str) -> Result<()> {
        self.container.systemctl_ok(&["stop", unit])?;
        Ok(())
    }

    /// Starts `unit` inside and waits for its start job to finish.
    pub fn start(&self, unit: &str) -> Result<()> {
        self.container
            .systemctl_ok(&["start", unit])
            .with_context(|| format!("cannot start {unit}\n{}", self.diagnostics()))?;
        Ok(())
    }

    /// Returns the last `lines` lines of `unit`'s journal.
    pub fn journal(&self, unit: &str, lines: u32) -> String {
        let lines = lines.to_string();
        let argv = [
            "journalctl",
            "--no-pager",
            "-o",
            "short-precise",
            "-n",
            &lines,
            "-u",
            unit,
        ];
        match self.container.exec(&argv) {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(err) => format!("cannot read the journal of {unit}: {err:#}"),
        }
    }

    /// Returns the last `lines` lines of nova-compute's log file.
    pub fn compute_log_tail(&self, lines: u32) -> String {
        let lines = lines.to_string();
        match self
            .container
            .exec(&["tail", "-n", &lines, NOVA_COMPUTE_LOG])
        {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(err) => format!("cannot read {NOVA_COMPUTE_LOG}: {err:#}"),
        }
    }

    /// Returns the state of the stack's units, their journals, nova-compute's
    /// log and the agent's journal, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        for unit in STACK_UNITS.iter().chain([&AGENT_UNIT]) {
            let state = self
                .container
                .unit_property(unit, "ActiveState")
                .unwrap_or_else(|err| format!("unknown ({err:#})"));
            text.push_str(&format!("--- {unit}: {state} ---\n"));
            text.push_str(&self.journal(unit, 15));
        }
        text.push_str(&format!("--- tail of {NOVA_COMPUTE_LOG} ---\n"));
        text.push_str(&self.compute_log_tail(40));
        text
    }

    /// Waits until nova-compute's log contains `needle`.
    pub fn wait_for_compute_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let found = self
                .container
                .exec(&["grep", "-qF", needle, NOVA_COMPUTE_LOG])
                .is_ok_and(|output| output.status.success());
            if found {
                return Ok(());
            }
            thread::sleep(POLL_INTERVAL);
        }
        bail!(
            "{NOVA_COMPUTE_LOG} has no line with {needle:?} after {timeout:?}\n{}",
            self.diagnostics()
        )
    }

    /// Returns `report_count` of nova-compute's row in the conductor's
    /// `services` table: nova's own heartbeat, written every report_interval.
    /// `None` before the row exists.
    pub fn compute_report_count(&self) -> Result<Option<u64>> {
        let script = "import sqlite3\n\
            db = sqlite3.connect('file:/var/lib/nova/nova.sqlite?mode=ro', uri=True, timeout=5)\n\
            row = db.execute(\"select report_count from services \
            where \\\"binary\\\" = 'nova-compute' and deleted = 0\").fetchone()\n\
            print('' if row is None else row[0])";
        let output = self.container.exec_ok(&["python3", "-c", script])?;
        let text = output.trim();
        if text.is_empty() {
            return Ok(None);
        }
        let count = text
            .parse()
            .with_context(|| format!("report_count {text:?} is not a number"))?;
        Ok(Some(count))
    }

    /// Waits until nova-compute's `report_count` exceeds `count`, and
    /// returns the new value.
    pub fn wait_for_report_count_above(&self, count: u64, timeout: Duration) -> Result<u64> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no row yet");
        while Instant::now() < deadline {
            match self.compute_report_count() {
                Ok(Some(current)) if current > count => return Ok(current),
                Ok(Some(current)) => last = current.to_string(),
                Ok(None) => last = String::from("no row yet"),
                // The conductor may hold the write lock for a moment.
                Err(err) => last = format!("{err:#}"),
            }
            thread::sleep(POLL_INTERVAL);
        }
        bail!(
            "nova-compute's report_count did not exceed {count} within {timeout:?} (last: {last})\n{}",
            self.diagnostics()
        )
    }

    /// Waits until every unit of the stack is active, nova-compute logged
    /// its start and its service row counted a report.
    pub fn wait_for_stack(&self) -> Result<()> {
        let deadline = Instant::now() + STACK_TIMEOUT;
        for unit in STACK_UNITS {
            self.wait_for_active(unit, deadline)?;
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.wait_for_compute_log(STARTED_LINE, remaining)?;
        let remaining = deadline.saturating_duration_since(Instant::now());
        self.wait_for_report_count_above(0, remaining)?;
        Ok(())
    }

    fn wait_for_active(&self, unit: &str, deadline: Instant) -> Result<()> {
        let mut state = String::new();
        while Instant::now() < deadline {
            state = self.container.unit_property(unit, "ActiveState")?;
            if state == "active" {
                return Ok(());
            }
            thread::sleep(POLL_INTERVAL);
        }
        bail!(
            "{unit} is {state:?}, not active, {STACK_TIMEOUT:?} after boot\n{}",
            self.diagnostics()
        )
    }
}

/// Returns the agent.toml of the real-nova tests. It names neither the unit,
/// the config files nor the log file: the agent finds Debian's by itself.
pub fn nova_agent_config(node: &str, controller_url: &str) -> String {
    let mut text = format!(
        "node = \"{node}\"\n\
         controller = \"{controller_url}\"\n\
         report_interval_seconds = 1\n\
         restart_settle_seconds = 5\n"
    );
    text.push_str(crate::slice::AGENT_HEALTH_TABLE);
    text.push_str(&crate::slice::agent_tls_table(controller_url));
    text
}

/// Boots the nova tree at `rootfs` with the agent's binary and unit bound
/// in, waits until nova-compute runs and reports, checks that the stack
/// listens on loopback only, then starts the agent against `controller`
/// with a node certificate from the controller's CA.
/// The agent starts last, so it reads none of the stack's start-up lines.
pub fn boot_nova_node(
    env: &SystemTestEnv,
    rootfs: &std::path::Path,
    name: &str,
    controller: &crate::slice::Controller,
) -> Result<NovaNode> {
    require_ports_free()?;
    let agent_binary = env.binary("novamedic-agent");
    if !agent_binary.is_file() {
        bail!(
            "{} not found; build it first with `cargo build --workspace --bins`",
            agent_binary.display()
        );
    }
    let binds = [
        Bind::read_only(&agent_binary, "/usr/bin/novamedic-agent"),
        Bind::read_only(
            env.packaging("systemd/novamedic-agent.service"),
            "/etc/systemd/system/novamedic-agent.service",
        ),
    ];
    let container = Container::boot(rootfs, name, &binds, "multi-user.target")?;
    let node = NovaNode { container };
    node.wait_for_stack()?;
    require_loopback_listeners()?;

    node.configure_agent(env, node.name(), controller)?;
    node.start(AGENT_UNIT)?;
    Ok(node)
}

/// Fails when another process already listens on a port of the stack,
/// for example a nova container of another test.
fn require_ports_free() -> Result<()> {
    let listeners = tcp_listeners()?;
    for (port, what) in STACK_PORTS {
        let holders: Vec<String> = listeners
            .iter()
            .filter(|(_, p)| *p == port)
            .map(|(address, _)| address.to_string())
            .collect();
        if !holders.is_empty() {
            bail!(
                "port {port} ({what}) is already in use on {}: the nova stack needs it; \
                 stop what listens there (another nova test container?)",
                holders.join(", ")
            );
        }
    }
    Ok(())
}

/// Fails when a port of the stack listens on an address other than loopback.
fn require_loopback_listeners() -> Result<()> {
    let listeners = tcp_listeners()?;
    for (port, what) in STACK_PORTS {
        let addresses: Vec<&IpAddr> = listeners
            .iter()
            .filter(|(_, p)| *p == port)
            .map(|(address, _)| address)
            .collect();
        if addresses.is_empty() {
            bail!("nothing listens on port {port} ({what}) although the stack is up");
        }
        if let Some(address) = addresses.iter().find(|a| !a.is_loopback()) {
            bail!(
                "port {port} ({what}) listens on {address}; the test stack must use loopback only"
            );
        }
    }
    Ok(())
}

/// Returns the address and port of every listening TCP socket in this
/// network namespace, which the container shares, from /proc/net/tcp and
/// /proc/net/tcp6.
pub fn tcp_listeners() -> Result<Vec<(IpAddr, u16)>> {
    tcp_listeners_of("self")
}

/// Returns the listening TCP sockets of the network namespace of process
/// `pid` (a host PID, or `self`), from /proc/PID/net/tcp and tcp6.
pub fn tcp_listeners_of(pid: &str) -> Result<Vec<(IpAddr, u16)>> {
    let mut listeners = Vec::new();
    for name in ["tcp", "tcp6"] {
        let file = format!("/proc/{pid}/net/{name}");
        let text = fs::read_to_string(&file).with_context(|| format!("cannot read {file}"))?;
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // Field 3 is the socket state; 0A is LISTEN.
            if fields.len() > 3 && fields[3] == "0A" {
                let socket = parse_socket(fields[1]).with_context(|| {
                    format!("unexpected local address {:?} in {file}", fields[1])
                })?;
                listeners.push(socket);
            }
        }
    }
    Ok(listeners)
}

/// Parses `HEXADDR:HEXPORT` as the kernel prints it: the address as 32-bit
/// words in host byte order, the port as a number.
fn parse_socket(text: &str) -> Option<(IpAddr, u16)> {
    let (address, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let words: Vec<u32> = (0..address.len() / 8)
        .map(|i| u32::from_str_radix(&address[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let address = match bytes.len() {
        4 => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        16 => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some((address, port))
}

/// Returns the local port of the connection whose channel consumes `queue`
/// on the broker inside `container`, from rabbitmqctl: consumer, then
/// channel, then connection.
pub fn consumer_port(container: &Container, queue: &str) -> Result<u16> {
    let rabbitmqctl = |args: &[&str]| {
        let mut argv = vec!["rabbitmqctl", "-q", "--no-table-headers"];
        argv.extend_from_slice(args);
        container.exec_ok(&argv)
    };
    let consumers = rabbitmqctl(&["list_consumers", "-p", "nova", "queue_name", "channel_pid"])?;
    let channel = consumers
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(name, _)| *name == queue)
        .map(|(_, channel)| channel.trim().to_string())
        .with_context(|| format!("no consumer of {queue}:\n{consumers}"))?;
    let channels = rabbitmqctl(&["list_channels", "pid", "connection"])?;
    let connection = channels
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(pid, _)| pid.trim() == channel)
        .map(|(_, connection)| connection.trim().to_string())
        .with_context(|| format!("no channel {channel}:\n{channels}"))?;
    let connections = rabbitmqctl(&["list_connections", "pid", "peer_port"])?;
    connections
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .find(|(pid, _)| pid.trim() == connection)
        .and_then(|(_, port)| port.trim().parse().ok())
        .with_context(|| format!("no connection {connection}:\n{connections}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_endian = "little")]
    fn parse_socket_reads_kernel_addresses() {
        assert_eq!(
            parse_socket("0100007F:1628"),
            Some((IpAddr::V4(Ipv4Addr::LOCALHOST), 5672))
        );
        assert_eq!(
            parse_socket("00000000:1111"),
            Some((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 4369))
        );
        assert_eq!(
            parse_socket("00000000000000000000000001000000:224A"),
            Some((IpAddr::V6(Ipv6Addr::LOCALHOST), 8778))
        );
        assert_eq!(parse_socket("nonsense"), None);
    }
}
