//! A slice of a deployment: one compute node in a container, with the agent
//! installed from `packaging/` and the stand-in nova-compute, and the
//! controller running on the host.
//!
//! The controller runs on the host's 127.0.0.1, not in the container, so a
//! test can kill and restart it by PID without touching the node, the way a
//! controller outage looks to a compute node. The container shares the
//! host's network namespace and reaches it there.
//!
//! The binaries are the workspace's debug builds (`target/debug/novamedic`
//! and `target/debug/novamedic-agent`), bound read-only into the container.
//! Cargo does not build another crate's binaries for this crate's tests, so
//! run `cargo build --workspace --bins` first; `scripts/test.sh` does.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::Value;

use novamedic_tls::{issue, CertKind};

pub use crate::cli_output::CliOutput;
use crate::container::{send_signal, Bind, Container};
use crate::system_env::SystemTestEnv;

/// Unit name of the stand-in nova-compute inside the container.
pub const NOVA_UNIT: &str = "nova-compute.service";

/// Unit name of the agent inside the container.
pub const AGENT_UNIT: &str = "novamedic-agent.service";

/// Where the node's certificate, key and CA go inside the container.
const NODE_CERT: &str = "/etc/novamedic/tls/node.crt";
const NODE_KEY: &str = "/etc/novamedic/tls/node.key";
const NODE_CA: &str = "/etc/novamedic/tls/ca.crt";

/// Name of the operator certificate the tests' CLI calls use.
const OPERATOR: &str = "slice-operator";

/// How long the controller may take to accept connections after start.
const CONTROLLER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Polling interval of every wait in the system tests.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Where [`install_agent_privileges`] writes the agent package's postinst.
const AGENT_POSTINST: &str = "/usr/share/novamedic-tests/agent-postinst";

/// Gives the agent inside the privileges its package gives it: writes the
/// package's polkit rule and runs its postinst, which creates the novamedic
/// user and its group memberships (the generated unit handling is a comment
/// outside a package build). The files are copied, not bound, because a
/// bind mount would be one more filesystem in the agent's report, and the
/// polkit rules directory is closed to the agent's user.
pub fn install_agent_privileges(env: &SystemTestEnv, container: &Container) -> Result<()> {
    let rule = fs::read(env.packaging("polkit/50-novamedic-agent.rules"))?;
    container.write_file(
        "/usr/share/polkit-1/rules.d/50-novamedic-agent.rules",
        &rule,
    )?;
    let postinst = fs::read(env.packaging("deb/agent/postinst"))?;
    container.write_file_mode(AGENT_POSTINST, &postinst, 0o755)?;
    container.exec_ok(&["sh", AGENT_POSTINST, "configure"])?;
    Ok(())
}

/// Agent settings a test may change; the rest of agent.toml is fixed.
#[derive(Debug, Clone)]
pub struct AgentSettings {
    pub report_interval_seconds: u64,
    pub restart_settle_seconds: u64,
    /// `[restart_budget]`; `None` keeps the agent's defaults.
    pub restart_budget: Option<(u32, u64)>,
    /// CA directory of `novamedic certs` that issues the node's certificate
    /// for an https:// controller; see [`Controller::agent_settings`].
    pub tls_dir: Option<PathBuf>,
}

impl Default for AgentSettings {
    fn default() -> Self {
        AgentSettings {
            report_interval_seconds: 1,
            restart_settle_seconds: 1,
            restart_budget: None,
            tls_dir: None,
        }
    }
}

/// Returns the agent.toml that points the agent at `controller_url`.
pub fn agent_config(node: &str, controller_url: &str, settings: &AgentSettings) -> String {
    let mut text = format!(
        "node = \"{node}\"\n\
         controller = \"{controller_url}\"\n\
         report_interval_seconds = {}\n\
         restart_settle_seconds = {}\n\
         nova_compute_unit = \"{NOVA_UNIT}\"\n\
         nova_config_files = [\"/etc/nova/nova.conf\"]\n\
         nova_log_file = \"/var/log/nova/nova-compute.log\"\n",
        settings.report_interval_seconds, settings.restart_settle_seconds
    );
    if let Some((max_restarts, window_seconds)) = settings.restart_budget {
        text.push_str(&format!(
            "\n[restart_budget]\nmax_restarts = {max_restarts}\nwindow_seconds = {window_seconds}\n"
        ));
    }
    text.push_str(AGENT_HEALTH_TABLE);
    text.push_str(&agent_tls_table(controller_url));
    text
}

/// agent.toml's `[health]` table for test nodes, with the resource checks
/// off. A container's disks and memory are the host's, which the tests do
/// not control: a build machine may run with under 5 % free. The agent's
/// unit tests cover the resource rules.
pub const AGENT_HEALTH_TABLE: &str =
    "\n[health]\nmin_free_disk_percent = 0\nmin_available_memory_percent = 0\n";

/// Returns agent.toml's `[tls]` table: the files that
/// [`install_node_certificate`] writes for an https:// controller, else TLS
/// off.
pub fn agent_tls_table(controller_url: &str) -> String {
    if controller_url.starts_with("https://") {
        format!("\n[tls]\ncert = \"{NODE_CERT}\"\nkey = \"{NODE_KEY}\"\nca = \"{NODE_CA}\"\n")
    } else {
        "\n[tls]\nenabled = false\n".to_string()
    }
}

/// A booted compute node. The container is shut down on drop, before the
/// host directory bound at nova's instances path is removed.
pub struct ComputeNode {
    pub container: Container,
    _instances_dir: tempfile::TempDir,
}

impl ComputeNode {
    /// Node name the agent reports under: the container's machine name.
    pub fn name(&self) -> &str {
        self.container.machine()
    }

    /// Returns a property of nova-compute's unit inside, as `systemctl show -P`
    /// prints it.
    pub fn nova_property(&self, property: &str) -> Result<String> {
        self.container.unit_property(NOVA_UNIT, property)
    }

    /// Returns the agent's journal, for failure messages.
    pub fn agent_journal(&self) -> String {
        let argv = [
            "journalctl",
            "--no-pager",
            "-o",
            "short-precise",
            "-n",
            "200",
            "-u",
            AGENT_UNIT,
        ];
        match self.container.exec(&argv) {
            Ok(output) => String::from_utf8_lossy(&output.stdout).into_owned(),
            Err(err) => format!("cannot read the agent's journal: {err:#}"),
        }
    }
}

/// Boots a compute node: the stand-in nova-compute and the agent unit from
/// `packaging/`, the agent's user and polkit rule as its package installs
/// them, with the agent's binary bound in and a host directory bound
/// at nova's instances path, so the instances live on a real filesystem as
/// on a compute node. Starts nova-compute, writes agent.toml for
/// `controller_url` and starts the agent.
pub fn boot_compute_node(
    env: &SystemTestEnv,
    name: &str,
    controller_url: &str,
    settings: &AgentSettings,
) -> Result<ComputeNode> {
    let agent_binary = env.binary("novamedic-agent");
    require_binary(&agent_binary)?;
    let instances_dir = tempfile::Builder::new()
        .prefix("novamedic-instances-")
        .tempdir()?;
    let binds = [
        Bind::read_only(&agent_binary, "/usr/bin/novamedic-agent"),
        Bind::read_only(
            env.packaging("systemd/novamedic-agent.service"),
            "/etc/systemd/system/novamedic-agent.service",
        ),
        Bind::read_only(
            env.packaging("test/fake-nova-compute"),
            "/usr/bin/nova-compute",
        ),
        Bind::read_only(
            env.packaging("test/fake-nova-compute.service"),
            "/etc/systemd/system/nova-compute.service",
        ),
        Bind::read_only(env.packaging("test/nova.conf"), "/etc/nova/nova.conf"),
        Bind {
            host: instances_dir.path().to_path_buf(),
            container: PathBuf::from("/var/lib/nova/instances"),
            read_only: false,
        },
    ];
    let container = Container::boot(&env.rootfs, name, &binds, "multi-user.target")?;

    // The certificate first: the package's postinst gives the agent's user
    // read access to the key.
    if controller_url.starts_with("https://") {
        let dir = settings
            .tls_dir
            .as_deref()
            .context("an https:// controller needs AgentSettings::tls_dir")?;
        install_node_certificate(&container, dir)?;
    }
    install_agent_privileges(env, &container)?;
    let config = agent_config(container.machine(), controller_url, settings);
    container.write_file("/etc/novamedic/agent.toml", config.as_bytes())?;
    container.systemctl_ok(&["start", NOVA_UNIT])?;
    container.systemctl_ok(&["start", AGENT_UNIT])?;
    Ok(ComputeNode {
        container,
        _instances_dir: instances_dir,
    })
}

/// Issues a node certificate for the container's machine name with the CA
/// in `dir` and writes it, its key (mode 0600) and the CA into the container.
pub fn install_node_certificate(container: &Container, dir: &Path) -> Result<()> {
    install_node_certificate_for(container, dir, container.machine())
}

/// Issues a node certificate for `node` from the CA in `dir` and writes it
/// where the agent's default `[tls]` settings read it.
pub fn install_node_certificate_for(container: &Container, dir: &Path, node: &str) -> Result<()> {
    let issued = issue::issue(dir, CertKind::Node, node, &[], 1)?;
    container.write_file(NODE_CERT, &fs::read(&issued.cert)?)?;
    container.write_file_mode(NODE_KEY, &fs::read(&issued.key)?, 0o600)?;
    container.write_file(NODE_CA, &fs::read(issue::ca_cert_path(dir))?)?;
    Ok(())
}

fn require_binary(path: &Path) -> Result<()> {
    if path.is_file() {
        return Ok(());
    }
    bail!(
        "{} not found; build the binaries first with `cargo build --workspace --bins` \
         (scripts/test.sh does)",
        path.display()
    )
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    Ok(listener.local_addr()?.port())
}

/// The controller (`novamedic serve`) as a child process on 127.0.0.1.
pub struct Controller {
    options: ControllerOptions,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    starts: u32,
    /// Tables appended to controller.toml, such as `[openstack]`.
    extra_config: String,
}

/// How a [`Controller`] runs.
#[derive(Clone, Debug)]
pub struct ControllerOptions {
    /// The `novamedic` binary.
    pub binary: PathBuf,
    /// Serve in plain text (`[tls] enabled = false`) instead of mutual TLS.
    pub plaintext: bool,
    /// Text of the policy file, `None` for the built-in policy.
    pub policy: Option<String>,
    /// The controller's `RUST_LOG`.
    pub rust_log: String,
}

impl ControllerOptions {
    /// Returns the options of the debug build under mutual TLS with the
    /// built-in policy.
    pub fn new(env: &SystemTestEnv) -> Self {
        ControllerOptions {
            binary: env.binary("novamedic"),
            plaintext: false,
            policy: None,
            rust_log: "info".to_string(),
        }
    }
}

impl Controller {
    /// Starts the controller on a free port with a new, empty database,
    /// under mutual TLS.
    pub fn start(env: &SystemTestEnv) -> Result<Self> {
        Self::start_with(ControllerOptions::new(env))
    }

    /// Starts the controller with `policy` as its policy.toml.
    pub fn start_with_policy(env: &SystemTestEnv, policy: &str) -> Result<Self> {
        Self::start_with(ControllerOptions {
            policy: Some(policy.to_string()),
            ..ControllerOptions::new(env)
        })
    }

    /// Starts the controller with `options`, on a free port with a new,
    /// empty database.
    pub fn start_with(options: ControllerOptions) -> Result<Self> {
        require_binary(&options.binary)?;
        let dir = tempfile::Builder::new()
            .prefix("novamedic-controller-")
            .tempdir()?;
        let mut controller = Controller {
            options,
            port: free_port()?,
            dir,
            child: None,
            starts: 0,
            extra_config: String::new(),
        };
        if let Some(policy) = &controller.options.policy {
            fs::write(controller.policy_path(), policy)?;
        }
        if !controller.options.plaintext {
            let tls_dir = controller.tls_dir();
            issue::init_ca(&tls_dir, "slice CA")?;
            issue::issue(
                &tls_dir,
                CertKind::Controller,
                "localhost",
                &["127.0.0.1".to_string()],
                1,
            )?;
            issue::issue(&tls_dir, CertKind::Operator, OPERATOR, &[], 1)?;
        }
        controller.restart()?;
        Ok(controller)
    }

    /// URL agents and the CLI use: https:// under mutual TLS, else http://.
    pub fn url(&self) -> String {
        let scheme = if self.options.plaintext {
            "http"
        } else {
            "https"
        };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.toml")
    }

    /// The CA directory that issued the controller's certificates.
    pub fn tls_dir(&self) -> PathBuf {
        self.dir.path().join("tls")
    }

    /// `settings` with the CA that issues the node's certificate.
    pub fn agent_settings(&self, settings: &AgentSettings) -> AgentSettings {
        AgentSettings {
            tls_dir: Some(self.tls_dir()),
            ..settings.clone()
        }
    }

    /// Host PID of the running controller.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Returns the controller's log of every start so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        for start in 1..=self.starts {
            let path = self.dir.path().join(format!("controller-{start}.log"));
            text.push_str(&format!("--- start {start} ---\n"));
            text.push_str(&fs::read_to_string(path).unwrap_or_default());
        }
        text
    }

    /// Directory of the controller's config, database and logs.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Appends `text` to controller.toml and restarts the controller with it.
    pub fn restart_with_config(&mut self, text: &str) -> Result<()> {
        self.extra_config = text.to_string();
        self.restart()
    }

    /// Starts the controller again on the same port and database; stops
    /// the running one first.
    pub fn restart(&mut self) -> Result<()> {
        self.stop();
        let config_path = self.dir.path().join("controller.toml");
        fs::write(&config_path, self.config_text())?;

        self.starts += 1;
        let log_path = self
            .dir
            .path()
            .join(format!("controller-{}.log", self.starts));
        let log = fs::File::create(&log_path)?;
        let child = Command::new(&self.options.binary)
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .env("RUST_LOG", &self.options.rust_log)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.options.binary.display()))?;
        self.child = Some(child);
        self.wait_until_listening()
    }

    /// Ends the controller with SIGKILL, the way a crash or a lost host
    /// ends it, and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the controller with SIGTERM, waits up to 10 s, then kills it.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        send_signal(child.id(), rustix::process::Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            thread::sleep(POLL_INTERVAL);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Runs the operator CLI against this controller with `-o json` and
    /// parses its output, whatever the exit code: `restart` prints its JSON
    /// result and exits with 1 when the outcome is rejected or failed.
    pub fn cli(&self, args: &[&str]) -> Result<CliOutput> {
        let tls_dir = self.tls_dir();
        let mut command = Command::new(&self.options.binary);
        command.arg("--controller").arg(self.url());
        if !self.options.plaintext {
            command
                .arg("--tls-cert")
                .arg(issue::issued_cert_path(
                    &tls_dir,
                    CertKind::Operator,
                    OPERATOR,
                ))
                .arg("--tls-key")
                .arg(issue::issued_key_path(
                    &tls_dir,
                    CertKind::Operator,
                    OPERATOR,
                ))
                .arg("--tls-ca")
                .arg(issue::ca_cert_path(&tls_dir));
        }
        let output = command
            .args(args)
            .args(["-o", "json"])
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("cannot run {}", self.options.binary.display()))?;
        CliOutput::parse(args, &output)
    }

    /// Runs the operator CLI with `-o json`; any exit code but 0 is an error.
    pub fn cli_json(&self, args: &[&str]) -> Result<Value> {
        self.cli(args)?.success(args)
    }

    /// Returns `node` from `novamedic nodes -o json`, if listed.
    pub fn node(&self, node: &str) -> Result<Option<Value>> {
        let nodes = self.cli_json(&["nodes"])?;
        let Some(list) = nodes.as_array() else {
            bail!("`novamedic nodes -o json` printed no array: {nodes}");
        };
        Ok(list.iter().find(|n| n["node"] == node).cloned())
    }

    /// Returns the events of `node` from `novamedic events -o json`.
    pub fn events(&self, node: &str) -> Result<Vec<Value>> {
        let events = self.cli_json(&["events", "--node", node, "--limit", "1000"])?;
        match events.as_array() {
            Some(list) => Ok(list.clone()),
            None => bail!("`novamedic events -o json` printed no array: {events}"),
        }
    }

    /// Polls `nodes` every 100 ms until `node` satisfies `accept`; returns
    /// the matching view and the time it took. A CLI error counts as not yet,
    /// because the controller may be restarting.
    pub fn wait_for_node(
        &self,
        node: &str,
        timeout: Duration,
        what: &str,
        accept: impl Fn(&Value) -> bool,
    ) -> Result<(Value, Duration)> {
        let started = Instant::now();
        let mut last = String::from("no answer yet");
        while started.elapsed() < timeout {
            match self.node(node) {
                Ok(Some(view)) if accept(&view) => return Ok((view, started.elapsed())),
                Ok(Some(view)) => last = view.to_string(),
                Ok(None) => last = format!("node {node} not listed"),
                Err(err) => last = format!("{err:#}"),
            }
            thread::sleep(POLL_INTERVAL);
        }
        bail!(
            "node {node} was not {what} within {timeout:?}; last answer: {last}\n\
             --- controller log ---\n{}",
            self.log()
        )
    }

    fn config_text(&self) -> String {
        let db = self.dir.path().join("novamedic.db");
        let mut text = format!(
            "listen = \"127.0.0.1:{}\"\ndb = \"{}\"\n",
            self.port,
            db.display()
        );
        if self.options.policy.is_some() {
            text.push_str(&format!("policy = \"{}\"\n", self.policy_path().display()));
        }
        if self.options.plaintext {
            text.push_str("\n[tls]\nenabled = false\n");
            text.push_str(&self.extra_config);
            return text;
        }
        text.push_str(&format!(
            "\n[tls]\n\
             cert = \"{tls}/controller-localhost.crt\"\nkey = \"{tls}/controller-localhost.key\"\n\
             ca = \"{tls}/ca.crt\"\ncrl = \"{tls}/ca.crl\"\n\n[roles]\noperators = [\"{OPERATOR}\"]\n",
            tls = self.tls_dir().display(),
        ));
        text.push_str(&self.extra_config);
        text
    }

    fn wait_until_listening(&mut self) -> Result<()> {
        let address = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + CONTROLLER_START_TIMEOUT;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    self.child = None;
                    bail!("controller exited with {status} at start\n{}", self.log());
                }
            }
            if TcpStream::connect_timeout(&address, POLL_INTERVAL).is_ok() {
                return Ok(());
            }
            thread::sleep(POLL_INTERVAL);
        }
        bail!(
            "controller did not listen on {address} within {CONTROLLER_START_TIMEOUT:?}\n{}",
            self.log()
        )
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        self.kill();
    }
}
