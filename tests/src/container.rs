//! Real systemd in a `systemd-nspawn` container, for the system tests.
//!
//! Each [`Container`] boots systemd as PID 1 on the Debian tree that
//! `scripts/build-rootfs.sh` builds, with `--volatile=overlay` so every write
//! inside is thrown away at shutdown and containers never share state. The
//! container shares the host's network namespace by default, so a controller
//! listening on the host's 127.0.0.1 is reachable from inside;
//! [`Network::Private`] gives it a namespace of its own instead.
//!
//! Each container starts from cgroup directories of its own (one per cgroup
//! hierarchy) so two containers booted at the same time never share unit
//! cgroups; [`Container::shutdown`] removes them again.
//!
//! Commands run inside through `nsenter -t LEADER -a`, where LEADER is the
//! container's PID 1 as the host sees it. PIDs read inside the container
//! (over its D-Bus or from `systemctl show`) are container PIDs: signal them
//! inside, never with `kill(2)` from the host.

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

/// How long systemd inside may take to reach `running` or `degraded`.
/// Boots take about a second on an idle machine; the margin covers parallel
/// tests and builds on two cores.
const BOOT_TIMEOUT: Duration = Duration::from_secs(90);

/// How long a `poweroff` may take before nspawn gets SIGTERM.
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(30);

/// How long nspawn gets after SIGTERM before SIGKILL.
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// The cgroup directory under each hierarchy that contains the containers'.
const CGROUP_PARENT: &str = "novamedic-tests";

/// Environment for commands inside: a plain PATH and no pager or colours, so
/// output is the same whatever the caller's environment holds.
const INSIDE_ENV: [(&str, &str); 5] = [
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("LANG", "C.UTF-8"),
    ("SYSTEMD_PAGER", ""),
    ("SYSTEMD_COLORS", "0"),
    ("TERM", "dumb"),
];

static CONTAINER_COUNTER: AtomicU32 = AtomicU32::new(0);

/// A host path made visible inside the container.
#[derive(Debug, Clone)]
pub struct Bind {
    pub host: PathBuf,
    pub container: PathBuf,
    pub read_only: bool,
}

impl Bind {
    /// Binds `host` read-only at `container`.
    pub fn read_only(host: impl Into<PathBuf>, container: impl Into<PathBuf>) -> Self {
        Bind {
            host: host.into(),
            container: container.into(),
            read_only: true,
        }
    }

    fn nspawn_arg(&self) -> String {
        let flag = if self.read_only {
            "--bind-ro"
        } else {
            "--bind"
        };
        format!(
            "{flag}={}:{}",
            self.host.display(),
            self.container.display()
        )
    }
}

/// The network namespace a container runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// The host's: a controller on the host's 127.0.0.1 is reachable, and
    /// the container's listeners take the host's ports.
    Host,
    /// A namespace of its own with only a loopback interface
    /// (`--private-network`): its ports never collide with the host's or
    /// another container's, and it may change its own firewall.
    Private,
}

/// A booted systemd container. Dropping it powers it off.
pub struct Container {
    machine: String,
    nspawn: Option<Child>,
    leader_pid: u32,
    cgroup_dirs: Vec<PathBuf>,
    log_dir: tempfile::TempDir,
}

impl Container {
    /// Boots systemd on `root` with `--unit=target` and waits until
    /// `systemctl is-system-running` reports `running` or `degraded`.
    ///
    /// `name` is a short label. The machine name, which is also the host
    /// name inside, is `name` plus this process's PID and a counter, so
    /// tests running in parallel never collide.
    pub fn boot(root: &Path, name: &str, binds: &[Bind], target: &str) -> Result<Self> {
        Self::boot_in(root, name, binds, target, Network::Host)
    }

    /// Boots like [`Container::boot`], in the given network namespace.
    pub fn boot_in(
        root: &Path,
        name: &str,
        binds: &[Bind],
        target: &str,
        network: Network,
    ) -> Result<Self> {
        if !root.join("usr/lib/systemd/systemd").exists() {
            bail!(
                "{} is not a systemd tree; build it with scripts/build-rootfs.sh",
                root.display()
            );
        }
        let machine = unique_machine_name(name);
        let log_dir = tempfile::Builder::new()
            .prefix(&format!("{machine}-"))
            .tempdir()
            .context("cannot create a directory for the nspawn log")?;
        let cgroup_dirs = create_cgroup_dirs(&machine)?;

        let mut container = Container {
            machine,
            nspawn: None,
            leader_pid: 0,
            cgroup_dirs,
            log_dir,
        };
        let child = container.spawn_nspawn(root, binds, target, network)?;
        container.nspawn = Some(child);
        container.leader_pid = container.wait_for_leader()?;
        container.wait_until_running()?;
        Ok(container)
    }

    /// Machine name, which is also the host name inside.
    pub fn machine(&self) -> &str {
        &self.machine
    }

    /// Host PID of the container's PID 1.
    pub fn leader_pid(&self) -> u32 {
        self.leader_pid
    }

    /// Returns the container's own cgroup directories, one per hierarchy.
    pub fn cgroup_dirs(&self) -> &[PathBuf] {
        &self.cgroup_dirs
    }

    /// Host PID of systemd-nspawn while it runs.
    pub fn nspawn_pid(&self) -> Option<u32> {
        self.nspawn.as_ref().map(Child::id)
    }

    /// Returns the container's root directory as seen from the host.
    pub fn root_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/{}/root", self.leader_pid))
    }

    /// Returns everything nspawn and the container's console printed so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Runs `argv` inside the container and returns its output, whatever its
    /// exit status.
    pub fn exec(&self, argv: &[&str]) -> Result<Output> {
        self.exec_with_stdin(argv, None)
    }

    /// Runs `argv` inside and returns its standard output; an exit status
    /// other than 0 is an error that shows both output streams.
    pub fn exec_ok(&self, argv: &[&str]) -> Result<String> {
        let output = self.exec(argv)?;
        check_output(argv, &output)?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Runs `systemctl args...` inside and returns its output.
    pub fn systemctl(&self, args: &[&str]) -> Result<Output> {
        let argv: Vec<&str> = std::iter::once("systemctl")
            .chain(args.iter().copied())
            .collect();
        self.exec(&argv)
    }

    /// Runs `systemctl args...` inside and fails unless it exits with 0.
    pub fn systemctl_ok(&self, args: &[&str]) -> Result<String> {
        let argv: Vec<&str> = std::iter::once("systemctl")
            .chain(args.iter().copied())
            .collect();
        self.exec_ok(&argv)
    }

    /// Returns one property of a unit, as `systemctl show -P` prints it.
    pub fn unit_property(&self, unit: &str, property: &str) -> Result<String> {
        let value = self.systemctl_ok(&["show", "-P", property, unit])?;
        Ok(value.trim().to_string())
    }

    /// Writes `content` to `path` inside the container (mode 0644), creating
    /// parent directories.
    pub fn write_file(&self, path: &str, content: &[u8]) -> Result<()> {
        self.write_file_mode(path, content, 0o644)
    }

    /// Writes `content` to `path` inside the container with `mode`, creating
    /// parent directories.
    pub fn write_file_mode(&self, path: &str, content: &[u8], mode: u32) -> Result<()> {
        let mode = format!("{mode:o}");
        let script = r#"mkdir -p "$(dirname "$1")" && cat > "$1" && chmod "$2" "$1""#;
        let argv = ["sh", "-c", script, "sh", path, &mode];
        let output = self.exec_with_stdin(&argv, Some(content))?;
        check_output(&argv, &output).with_context(|| format!("cannot write {path} inside"))
    }

    /// Powers the container off, waits for nspawn to exit and removes the
    /// container's cgroup directories. Calling it twice is harmless.
    pub fn shutdown(&mut self) -> Result<()> {
        let Some(mut nspawn) = self.nspawn.take() else {
            return Ok(());
        };
        if nspawn.try_wait()?.is_none() {
            // The poweroff request may fail once PID 1 is already going down.
            let _ = self.exec(&["systemctl", "--no-block", "poweroff"]);
            stop_nspawn(&mut nspawn, &self.machine)?;
        }
        remove_cgroup_dirs(&self.cgroup_dirs)
    }

    fn log_path(&self) -> PathBuf {
        self.log_dir.path().join("nspawn.log")
    }

    fn spawn_nspawn(
        &self,
        root: &Path,
        binds: &[Bind],
        target: &str,
        network: Network,
    ) -> Result<Child> {
        let log = fs::File::create(self.log_path()).context("cannot create the nspawn log")?;
        let log_err = log.try_clone()?;

        // The shell moves itself into the container's own cgroups before it
        // becomes nspawn, so everything nspawn starts lives there.
        let mut script = String::new();
        for dir in &self.cgroup_dirs {
            script.push_str(&format!("echo $$ > '{}/cgroup.procs' && ", dir.display()));
        }
        script.push_str("exec systemd-nspawn \"$@\"");

        let mut command = Command::new("sh");
        command
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg("--quiet")
            .arg(format!("--directory={}", root.display()))
            .arg(format!("--machine={}", self.machine))
            .arg("--register=no")
            .arg("--keep-unit")
            .arg("--volatile=overlay")
            .arg("--console=read-only");
        if network == Network::Private {
            command.arg("--private-network");
        }
        for bind in binds {
            command.arg(bind.nspawn_arg());
        }
        command
            .arg("--boot")
            .arg("--")
            .arg(format!("--unit={target}"))
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        command.spawn().context("cannot start systemd-nspawn")
    }

    /// Finds the container's PID 1: the child of nspawn that lives in
    /// another PID namespace and already runs systemd.
    fn wait_for_leader(&mut self) -> Result<u32> {
        let nspawn_pid = self.nspawn_pid().unwrap_or(0);
        let own_pid_ns = fs::read_link("/proc/self/ns/pid")?;
        let deadline = Instant::now() + BOOT_TIMEOUT;
        loop {
            if let Some(status) = self.nspawn_exit_status()? {
                bail!(
                    "{}",
                    self.boot_failure(&format!("systemd-nspawn exited with {status}"))
                );
            }
            for pid in child_pids(nspawn_pid) {
                let other_ns = fs::read_link(format!("/proc/{pid}/ns/pid"))
                    .map(|ns| ns != own_pid_ns)
                    .unwrap_or(false);
                let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
                if other_ns && comm.trim() == "systemd" {
                    return Ok(pid);
                }
            }
            if Instant::now() > deadline {
                bail!(
                    "{}",
                    self.boot_failure("systemd did not start inside in time")
                );
            }
            thread::sleep(POLL_INTERVAL);
        }
    }

    fn wait_until_running(&mut self) -> Result<()> {
        let deadline = Instant::now() + BOOT_TIMEOUT;
        let mut state = String::new();
        while Instant::now() < deadline {
            if let Some(status) = self.nspawn_exit_status()? {
                bail!(
                    "{}",
                    self.boot_failure(&format!("systemd-nspawn exited with {status}"))
                );
            }
            // Before PID 1 serves its bus the command fails; that is not an
            // error yet.
            if let Ok(output) = self.exec(&["systemctl", "is-system-running"]) {
                state = String::from_utf8_lossy(&output.stdout).trim().to_string();
                if state == "running" || state == "degraded" {
                    return Ok(());
                }
            }
            thread::sleep(POLL_INTERVAL);
        }
        let jobs = self
            .exec(&["systemctl", "list-jobs", "--no-legend"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let reason = format!(
            "systemd did not reach running or degraded within {} s (last state {state:?}; \
             pending jobs:\n{jobs})",
            BOOT_TIMEOUT.as_secs()
        );
        bail!("{}", self.boot_failure(&reason))
    }

    fn boot_failure(&self, reason: &str) -> String {
        format!(
            "container {} failed to boot: {reason}\n--- nspawn log ---\n{}",
            self.machine,
            self.log()
        )
    }

    fn nspawn_exit_status(&mut self) -> Result<Option<ExitStatus>> {
        match self.nspawn.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    fn exec_with_stdin(&self, argv: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        if self.leader_pid == 0 {
            bail!("container {} has no PID 1 yet", self.machine);
        }
        let mut command = Command::new("nsenter");
        command
            .arg("-t")
            .arg(self.leader_pid.to_string())
            .arg("-a")
            .arg("--")
            .args(argv)
            .env_clear()
            .envs(INSIDE_ENV)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = command
            .spawn()
            .with_context(|| format!("cannot run nsenter for {argv:?}"))?;
        if let Some(bytes) = stdin {
            let mut pipe = child.stdin.take().expect("stdin is piped");
            pipe.write_all(bytes)?;
        }
        child
            .wait_with_output()
            .with_context(|| format!("cannot wait for {argv:?} inside {}", self.machine))
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        if let Err(err) = self.shutdown() {
            eprintln!("container {}: shutdown failed: {err:#}", self.machine);
        }
    }
}

fn unique_machine_name(name: &str) -> String {
    let counter = CONTAINER_COUNTER.fetch_add(1, Ordering::Relaxed);
    let label: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .take(30)
        .collect();
    format!("nm-{label}-{}-{counter}", std::process::id())
}

fn check_output(argv: &[&str], output: &Output) -> Result<()> {
    if output.status.success() {
        return Ok(());
    }
    Err(anyhow!(
        "{argv:?} inside the container exited with {}\nstdout: {}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stdout).trim_end(),
        String::from_utf8_lossy(&output.stderr).trim_end()
    ))
}

fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Returns the cgroup hierarchies in which a container needs a directory of
/// its own. On a hybrid host these are the named `systemd` hierarchy and the
/// `unified` one; on a cgroup v2 host, the one hierarchy.
pub fn cgroup_hierarchies() -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    if base.join("cgroup.controllers").exists() {
        return vec![base.to_path_buf()];
    }
    ["systemd", "unified"]
        .iter()
        .map(|name| base.join(name))
        .filter(|path| path.join("cgroup.procs").exists())
        .collect()
}

fn create_cgroup_dirs(machine: &str) -> Result<Vec<PathBuf>> {
    let hierarchies = cgroup_hierarchies();
    if hierarchies.is_empty() {
        bail!("no writable cgroup hierarchy under /sys/fs/cgroup; systemd-nspawn needs one");
    }
    let mut dirs = Vec::new();
    for hierarchy in hierarchies {
        let dir = hierarchy.join(CGROUP_PARENT).join(machine);
        fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create cgroup directory {}", dir.display()))?;
        dirs.push(dir);
    }
    Ok(dirs)
}

/// Removes each directory and everything under it, deepest first. A cgroup
/// that still contains processes cannot be removed. That is an error, because
/// it means a process of the container outlived it.
fn remove_cgroup_dirs(dirs: &[PathBuf]) -> Result<()> {
    let mut failures = Vec::new();
    for dir in dirs {
        if let Err(err) = remove_cgroup_tree(dir) {
            failures.push(format!("{}: {err}", dir.display()));
        }
        // Other tests may still use the shared parent; it goes with the last.
        if let Some(parent) = dir.parent() {
            let _ = fs::remove_dir(parent);
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        bail!("cannot remove cgroup directories: {}", failures.join("; "))
    }
}

fn remove_cgroup_tree(dir: &Path) -> io::Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup_tree(&entry.path())?;
        }
    }
    fs::remove_dir(dir)
}

/// Returns the host PIDs still in the cgroup directory `dir` or below it.
pub fn cgroup_pids(dir: &Path) -> Vec<u32> {
    let mut pids: Vec<u32> = fs::read_to_string(dir.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| line.trim().parse().ok())
        .collect();
    if let Ok(entries) = fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                pids.extend(cgroup_pids(&entry.path()));
            }
        }
    }
    pids
}

fn stop_nspawn(nspawn: &mut Child, machine: &str) -> Result<()> {
    if wait_for_exit(nspawn, POWEROFF_TIMEOUT)?.is_some() {
        return Ok(());
    }
    eprintln!(
        "container {machine}: no poweroff after {POWEROFF_TIMEOUT:?}, sending SIGTERM to nspawn"
    );
    send_signal(nspawn.id(), rustix::process::Signal::TERM);
    if wait_for_exit(nspawn, TERMINATE_TIMEOUT)?.is_some() {
        return Ok(());
    }
    eprintln!("container {machine}: nspawn ignored SIGTERM, sending SIGKILL");
    nspawn.kill()?;
    nspawn.wait()?;
    Ok(())
}

fn wait_for_exit(child: &mut Child, timeout: Duration) -> Result<Option<ExitStatus>> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        if Instant::now() > deadline {
            return Ok(None);
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Sends `signal` to a host process this test process started.
pub fn send_signal(pid: u32, signal: rustix::process::Signal) {
    let Some(pid) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return;
    };
    let _ = rustix::process::kill_process(pid, signal);
}
