//! The real nova stack in a container with a network namespace of its own
//! (`systemd-nspawn --private-network`), with the controller inside too.
//!
//! In its own namespace the stack's fixed ports never collide, so tests
//! that use this layout may run in parallel, and the container may change
//! its own firewall to cut one connection. The agent cannot reach a
//! controller on the host's loopback from there, so the controller runs
//! inside as a transient unit and the operator CLI runs inside as well.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::cli_output::CliOutput;
use crate::container::{Bind, Container, Network};
use crate::nova::{nova_agent_config, tcp_listeners_of, NovaNode};
use crate::slice::{AGENT_UNIT, POLL_INTERVAL};
use crate::system_env::SystemTestEnv;

/// Transient unit of the controller inside the container.
pub const CONTROLLER_UNIT: &str = "novamedic-controller.service";

/// Where the controller inside reads a test's policy file.
const CONTROLLER_POLICY: &str = "/etc/novamedic/policy.toml";

/// Controller address inside the container's own namespace.
const CONTROLLER_URL: &str = "http://127.0.0.1:7400";

/// How long the controller inside may take to serve the CLI.
const CONTROLLER_START_TIMEOUT: Duration = Duration::from_secs(60);

/// Extra settings of one private node.
#[derive(Debug, Clone, Default)]
pub struct PrivateNodeOptions {
    /// Appended to the agent.toml of [`nova_agent_config`].
    pub agent_config_extra: String,
    /// Bound in addition to the agent's and the controller's binaries.
    pub binds: Vec<Bind>,
    /// Text of the controller's policy.toml; `None` keeps the built-in
    /// policy (dry run).
    pub controller_policy: Option<String>,
}

/// A nova node and its controller, both inside one private-network
/// container. The container is shut down on drop.
pub struct PrivateNovaStack {
    pub node: NovaNode,
}

/// Boots the nova tree at `rootfs` in a network namespace of its own, waits
/// for the stack, starts the controller inside and then the agent.
pub fn boot_private_nova_stack(
    env: &SystemTestEnv,
    rootfs: &Path,
    name: &str,
    options: &PrivateNodeOptions,
) -> Result<PrivateNovaStack> {
    let mut binds = Vec::new();
    for (binary, inside) in [
        ("novamedic-agent", "/usr/bin/novamedic-agent"),
        ("novamedic", "/usr/bin/novamedic"),
    ] {
        let path = env.binary(binary);
        if !path.is_file() {
            bail!(
                "{} not found; build it first with `cargo build --workspace --bins`",
                path.display()
            );
        }
        binds.push(Bind::read_only(path, inside));
    }
    binds.push(Bind::read_only(
        env.packaging("systemd/novamedic-agent.service"),
        "/etc/systemd/system/novamedic-agent.service",
    ));
    binds.extend(options.binds.iter().cloned());

    let container =
        Container::boot_in(rootfs, name, &binds, "multi-user.target", Network::Private)?;
    let stack = PrivateNovaStack {
        node: NovaNode { container },
    };
    stack.node.wait_for_stack()?;
    stack.require_loopback_listeners()?;
    stack.start_controller(options.controller_policy.as_deref())?;

    // The agent's unit runs as the package's novamedic user, which the
    // package's postinst creates and adds to nova's groups.
    crate::slice::install_agent_privileges(env, &stack.node.container)?;
    let mut config = nova_agent_config(stack.node.name(), CONTROLLER_URL);
    config.push_str(&options.agent_config_extra);
    stack
        .node
        .container
        .write_file("/etc/novamedic/agent.toml", config.as_bytes())?;
    stack.node.start(AGENT_UNIT)?;
    Ok(stack)
}

impl PrivateNovaStack {
    /// Runs the operator CLI inside with `-o json` and parses its output,
    /// whatever the exit code.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        let mut argv = vec!["novamedic", "--controller", CONTROLLER_URL];
        argv.extend_from_slice(args);
        argv.extend_from_slice(&["-o", "json"]);
        let output = self.node.container.exec(&argv)?;
        CliOutput::parse(args, &output)
    }

    /// Runs the operator CLI inside with `-o json`; any exit code but 0 is
    /// an error.
    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        self.cli(args)?.success(args)
    }

    /// Runs the operator CLI inside in text mode and returns its output.
    pub fn cli_text(&self, args: &[&str]) -> Result<String> {
        let mut argv = vec!["novamedic", "--controller", CONTROLLER_URL];
        argv.extend_from_slice(args);
        self.node.container.exec_ok(&argv)
    }

    /// Returns this node from `novamedic nodes -o json`, if listed.
    pub fn node_view(&self) -> Result<Option<Value>> {
        let nodes = self.cli_json(&["nodes"])?;
        let Some(list) = nodes.as_array() else {
            bail!("`novamedic nodes -o json` printed no array: {nodes}");
        };
        Ok(list.iter().find(|n| n["node"] == self.node.name()).cloned())
    }

    /// Returns this node's events from `novamedic events -o json`.
    pub fn events(&self) -> Result<Vec<Value>> {
        let events = self.cli_json(&["events", "--node", self.node.name(), "--limit", "1000"])?;
        match events.as_array() {
            Some(list) => Ok(list.clone()),
            None => bail!("`novamedic events -o json` printed no array: {events}"),
        }
    }

    /// Polls `nodes` until this node satisfies `accept`; returns the view
    /// and the time it took. A CLI error counts as not yet.
    pub fn wait_for_node(
        &self,
        timeout: Duration,
        what: &str,
        accept: impl Fn(&Value) -> bool,
    ) -> Result<(Value, Duration)> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < timeout {
            match self.node_view() {
                Ok(Some(view)) if accept(&view) => return Ok((view, started.elapsed())),
                Ok(Some(view)) => last = view.to_string(),
                Ok(None) => last = format!("node {} not listed", self.node.name()),
                Err(err) => last = format!("{err:#}"),
            }
            thread::sleep(POLL_INTERVAL);
        }
        bail!(
            "node {} was not {what} within {timeout:?}; last answer: {last}",
            self.node.name()
        )
    }

    /// Returns the node's diagnostics and the controller's journal, for
    /// failure messages.
    pub fn diagnostics(&self) -> String {
        format!(
            "{}--- {CONTROLLER_UNIT} ---\n{}",
            self.node.diagnostics(),
            self.node.journal(CONTROLLER_UNIT, 40)
        )
    }

    fn start_controller(&self, policy: Option<&str>) -> Result<()> {
        let mut config =
            "listen = \"127.0.0.1:7400\"\ndb = \"/var/lib/novamedic-controller/novamedic.db\"\n"
                .to_string();
        let container = &self.node.container;
        if let Some(policy) = policy {
            container.write_file(CONTROLLER_POLICY, policy.as_bytes())?;
            config.push_str(&format!("policy = \"{CONTROLLER_POLICY}\"\n"));
        }
        container.write_file("/etc/novamedic/controller.toml", config.as_bytes())?;
        container.exec_ok(&[
            "systemd-run",
            "--unit",
            CONTROLLER_UNIT,
            "--property=StateDirectory=novamedic-controller",
            "--setenv=RUST_LOG=info",
            "--setenv=NO_COLOR=1",
            "/usr/bin/novamedic",
            "serve",
            "--config",
            "/etc/novamedic/controller.toml",
            // The container's network namespace holds only its loopback, so
            // plain text reaches nothing beyond it.
            "--insecure-plaintext",
        ])?;
        let deadline = Instant::now() + CONTROLLER_START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            match self.cli_json(&["nodes"]) {
                Ok(_) => return Ok(()),
                Err(err) => last = format!("{err:#}"),
            }
            thread::sleep(POLL_INTERVAL * 5);
        }
        bail!(
            "the controller inside did not answer within {CONTROLLER_START_TIMEOUT:?} ({last})\n{}",
            self.diagnostics()
        )
    }

    /// Fails when a port of the stack inside listens beyond loopback. A
    /// private namespace has only `lo`, so this guards the layout itself.
    fn require_loopback_listeners(&self) -> Result<()> {
        let leader = self.node.container.leader_pid().to_string();
        let listeners = tcp_listeners_of(&leader)
            .with_context(|| format!("cannot read the listeners of {}", self.node.name()))?;
        if let Some((address, port)) = listeners.iter().find(|(a, _)| !a.is_loopback()) {
            // 0.0.0.0 inside a namespace with only lo is still loopback-only.
            if !address.is_unspecified() {
                bail!(
                    "port {port} inside {} listens on {address}",
                    self.node.name()
                );
            }
        }
        Ok(())
    }
}
