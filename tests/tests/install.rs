//! Install tests: the packages from `scripts/build-packages.sh` under real
//! systemd, and the agent's least-privilege setup.
//!
//! The .deb is installed with `dpkg -i` inside a container, with the
//! stand-in nova-compute and the controller on the host's 127.0.0.1 (plain
//! text gRPC). The .rpm is checked with `rpm -qp` on the host, because no
//! RPM-based tree is booted. Needs what the other system tests need, plus
//! the packages in target/packages (`scripts/build-packages.sh --dev`,
//! which scripts/test.sh runs) and, for the .rpm checks, Debian's `rpm`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::thread;
use std::time::{Duration, Instant};

use novamedic_tests::container::{Bind, Container};
use novamedic_tests::slice::{
    boot_compute_node, install_node_certificate, install_node_certificate_for, AgentSettings,
    ComputeNode, Controller, AGENT_UNIT, NOVA_UNIT, POLL_INTERVAL,
};
use novamedic_tests::system_env::{require_system_test_env, SystemTestEnv};

/// Time for the agent to connect and report, or for its status to change.
const AGENT_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the packages directory is bound inside the container.
const PACKAGES_INSIDE: &str = "/packages";

/// Highest `systemd-analyze security` exposure the agent unit may have
/// (0 is fully locked down, 10 unprotected; below 4 systemd calls it "OK").
const MAX_AGENT_EXPOSURE: f64 = 3.0;

/// Returns the package file in target/packages whose name starts with
/// `prefix` and ends with `suffix`.
fn package_file(env: &SystemTestEnv, prefix: &str, suffix: &str) -> PathBuf {
    let dir = env.target_dir.join("packages");
    let found = fs::read_dir(&dir).ok().and_then(|entries| {
        entries
            .filter_map(|entry| entry.ok().map(|entry| entry.path()))
            .find(|path| {
                let name = path.file_name().unwrap_or_default().to_string_lossy();
                name.starts_with(prefix) && name.ends_with(suffix)
            })
    });
    found.unwrap_or_else(|| {
        panic!(
            "no {prefix}*{suffix} in {}; build the packages with \
             scripts/build-packages.sh --dev (scripts/test.sh does)",
            dir.display()
        )
    })
}

/// Runs a host command and returns its standard output. Panics when it
/// cannot start or exits with a non-zero status.
fn host_ok(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|err| panic!("cannot run {program}: {err}"));
    assert!(
        output.status.success(),
        "{program} {args:?} exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Repacks `deb` with its version raised by `+upgrade1`, as a newer build
/// of the same package, into `dir/upgrade.deb`; returns the new version.
fn write_upgraded_copy(deb: &Path, dir: &Path) -> String {
    let tree = dir.join("tree");
    host_ok(
        "dpkg-deb",
        &["-R", deb.to_str().unwrap(), tree.to_str().unwrap()],
    );

    let control_path = tree.join("DEBIAN/control");
    let control = fs::read_to_string(&control_path).unwrap();
    let version = control
        .lines()
        .find_map(|line| line.strip_prefix("Version: "))
        .expect("control file has a Version")
        .to_string();
    let new_version = format!("{version}+upgrade1");
    let control = control.replace(
        &format!("Version: {version}\n"),
        &format!("Version: {new_version}\n"),
    );
    fs::write(&control_path, control).unwrap();

    let upgraded = dir.join("upgrade.deb");
    host_ok(
        "dpkg-deb",
        &[
            "--build",
            "--root-owner-group",
            tree.to_str().unwrap(),
            upgraded.to_str().unwrap(),
        ],
    );
    fs::remove_dir_all(&tree).unwrap();
    new_version
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls `read` until `accept` holds; panics after `AGENT_TIMEOUT` with the
/// last value and `context`.
fn wait_until(
    what: &str,
    mut read: impl FnMut() -> String,
    accept: impl Fn(&str) -> bool,
    context: impl Fn() -> String,
) -> String {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < AGENT_TIMEOUT {
        last = read();
        if accept(&last) {
            return last;
        }
        thread::sleep(POLL_INTERVAL);
    }
    panic!("{what} not reached; last value {last:?}\n{}", context())
}

fn agent_journal(container: &Container) -> String {
    let output = container
        .exec(&["journalctl", "--no-pager", "-n", "200", "-u", AGENT_UNIT])
        .unwrap();
    format!("--- agent journal ---\n{}", stdout(&output))
}

fn wait_for_status(container: &Container, expected: &str) -> String {
    wait_until(
        &format!("agent status {expected:?}"),
        || {
            container
                .unit_property(AGENT_UNIT, "StatusText")
                .unwrap_or_default()
        },
        |status| status == expected,
        || agent_journal(container),
    )
}

/// Boots a plain Debian node with the stand-in nova-compute, `packages`
/// bound in and a `nova` group, as Debian's nova-common creates it.
fn boot_package_node(env: &SystemTestEnv, name: &str, packages: &Path) -> Container {
    let binds = [
        Bind::read_only(packages, PACKAGES_INSIDE),
        Bind::read_only(
            env.packaging("test/fake-nova-compute"),
            "/usr/bin/nova-compute",
        ),
        Bind::read_only(
            env.packaging("test/fake-nova-compute.service"),
            "/etc/systemd/system/nova-compute.service",
        ),
        Bind::read_only(env.packaging("test/nova.conf"), "/etc/nova/nova.conf"),
    ];
    let container = Container::boot(&env.rootfs, name, &binds, "multi-user.target").unwrap();
    container
        .exec_ok(&["groupadd", "--system", "nova"])
        .unwrap();
    container.systemctl_ok(&["start", NOVA_UNIT]).unwrap();
    container
}

/// Points the packaged unit at `controller_url` with a drop-in, the way an
/// operator overrides it without editing the packaged config file.
fn write_controller_drop_in(container: &Container, controller_url: &str) {
    container
        .write_file(
            "/etc/systemd/system/novamedic-agent.service.d/controller.conf",
            format!("[Service]\nEnvironment=NOVAMEDIC_CONTROLLER={controller_url}\n").as_bytes(),
        )
        .unwrap();
}

fn exposure_level(container: &Container) -> f64 {
    let output = container
        .exec(&["systemd-analyze", "security", "--no-pager", AGENT_UNIT])
        .unwrap();
    let text = stdout(&output);
    let line = text
        .lines()
        .find(|line| line.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in: {text}{}", stderr(&output)));
    let score = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|score| score.parse().ok())
        .unwrap_or_else(|| panic!("cannot parse the exposure level in {line:?}"));
    println!("{line}");
    score
}

#[test]
fn deb_install_upgrade_remove_purge() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let deb = package_file(&env, "novamedic-agent_", ".deb");
    let packages = tempfile::tempdir().unwrap();
    fs::copy(&deb, packages.path().join("install.deb")).unwrap();
    let upgrade_version = write_upgraded_copy(&deb, packages.path());
    let mut controller = Controller::start(&env).unwrap();
    let container = boot_package_node(&env, "install", packages.path());
    write_controller_drop_in(&container, &controller.url());
    // A node certificate placed before the package, as configuration
    // management would; the postinst makes its key readable by the agent.
    install_node_certificate(&container, &controller.tls_dir()).unwrap();

    // Install: user, groups, enabled and started, connected and reporting.
    container
        .exec_ok(&["dpkg", "-i", &format!("{PACKAGES_INSIDE}/install.deb")])
        .unwrap();
    // The host's free disk and memory are not the test's to control.
    container
        .exec_ok(&[
            "sed",
            "-i",
            "-e",
            "s/^#min_free_disk_percent = .*/min_free_disk_percent = 0/",
            "-e",
            "s/^#min_available_memory_percent = .*/min_available_memory_percent = 0/",
            "/etc/novamedic/agent.toml",
        ])
        .unwrap();
    container.systemctl_ok(&["restart", AGENT_UNIT]).unwrap();
    let groups = container.exec_ok(&["id", "-nG", "novamedic"]).unwrap();
    let groups: Vec<&str> = groups.split_whitespace().collect();
    assert!(groups.contains(&"nova"), "{groups:?}");
    assert!(groups.contains(&"adm"), "{groups:?}");
    let enabled = container.systemctl(&["is-enabled", AGENT_UNIT]).unwrap();
    assert_eq!(stdout(&enabled).trim(), "enabled");
    assert_eq!(
        container.unit_property(AGENT_UNIT, "ActiveState").unwrap(),
        "active"
    );
    assert_eq!(
        container.unit_property(AGENT_UNIT, "User").unwrap(),
        "novamedic"
    );
    assert_eq!(
        container.unit_property(AGENT_UNIT, "WatchdogUSec").unwrap(),
        "30s"
    );
    let main_pid = container.unit_property(AGENT_UNIT, "MainPID").unwrap();
    let process_user = container
        .exec_ok(&["ps", "-o", "user=", "-p", &main_pid])
        .unwrap();
    assert_eq!(process_user.trim(), "novamedic");
    wait_for_status(&container, &format!("connected to {}", controller.url()));
    let node = container.machine().to_string();
    let journal = || agent_journal(&container);
    controller
        .wait_for_node(&node, AGENT_TIMEOUT, "healthy", |view| {
            view["health"] == "healthy"
        })
        .unwrap_or_else(|err| panic!("{err:#}\n{}", journal()));

    // The restart goes through polkit as the novamedic user.
    let restart = controller
        .cli(&["restart", &node, "--reason", "install test"])
        .unwrap();
    assert_eq!(restart.exit_code, 0, "{}\n{}", restart.json, journal());

    // The status follows the controller.
    controller.kill();
    wait_for_status(
        &container,
        &format!("controller {} unreachable, retrying", controller.url()),
    );
    controller.restart().unwrap();
    wait_for_status(&container, &format!("connected to {}", controller.url()));

    let exposure = exposure_level(&container);
    assert!(
        exposure <= MAX_AGENT_EXPOSURE,
        "exposure {exposure} above {MAX_AGENT_EXPOSURE}"
    );

    // Upgrade: the edited config survives and the new agent reads it. The
    // renamed node needs a certificate of its new name; the upgrade's
    // postinst makes the new key readable by the agent.
    let edited_node = format!("{node}-edited");
    install_node_certificate_for(&container, &controller.tls_dir(), &edited_node).unwrap();
    container
        .exec_ok(&[
            "sed",
            "-i",
            &format!("s/^#node = .*/node = \"{edited_node}\"/"),
            "/etc/novamedic/agent.toml",
        ])
        .unwrap();
    container
        .exec_ok(&["dpkg", "-i", &format!("{PACKAGES_INSIDE}/upgrade.deb")])
        .unwrap();
    let version = container
        .exec_ok(&["dpkg-query", "-W", "-f", "${Version}", "novamedic-agent"])
        .unwrap();
    assert_eq!(version, upgrade_version);
    let config = container
        .exec_ok(&["cat", "/etc/novamedic/agent.toml"])
        .unwrap();
    assert!(
        config.contains(&format!("node = \"{edited_node}\"")),
        "{config}"
    );
    controller
        .wait_for_node(&edited_node, AGENT_TIMEOUT, "reporting", |_| true)
        .unwrap_or_else(|err| panic!("{err:#}\n{}", journal()));

    // Remove: stopped, config and user kept.
    container
        .exec_ok(&["dpkg", "-r", "novamedic-agent"])
        .unwrap();
    let active = container.systemctl(&["is-active", AGENT_UNIT]).unwrap();
    assert_eq!(stdout(&active).trim(), "inactive");
    assert!(container
        .exec_ok(&["test", "-f", "/etc/novamedic/agent.toml"])
        .is_ok());
    assert!(container
        .exec_ok(&["test", "-d", "/var/lib/novamedic-agent"])
        .is_ok());

    // Purge: config and state gone, the system user kept.
    container
        .exec_ok(&["dpkg", "-P", "novamedic-agent"])
        .unwrap();
    assert!(container
        .exec_ok(&["test", "-e", "/etc/novamedic/agent.toml"])
        .is_err());
    assert!(container
        .exec_ok(&["test", "-e", "/var/lib/novamedic-agent"])
        .is_err());
    assert!(container
        .exec_ok(&["getent", "passwd", "novamedic"])
        .is_ok());
}

/// Runs `argv` inside as the novamedic user.
fn as_agent_user(node: &ComputeNode, argv: &[&str]) -> Output {
    let mut command = vec![
        "setpriv",
        "--reuid=novamedic",
        "--regid=novamedic",
        "--init-groups",
    ];
    command.extend_from_slice(argv);
    node.container.exec(&command).unwrap()
}

/// Calls a method of systemd's Manager over D-Bus as the novamedic user.
fn manager_call(node: &ComputeNode, method: &str, signature: &str, args: &[&str]) -> Output {
    let mut argv = vec![
        "busctl",
        "call",
        "org.freedesktop.systemd1",
        "/org/freedesktop/systemd1",
        "org.freedesktop.systemd1.Manager",
        method,
        signature,
    ];
    argv.extend_from_slice(args);
    as_agent_user(node, &argv)
}

fn assert_denied(output: &Output, what: &str) {
    assert!(!output.status.success(), "{what} was allowed");
    assert!(
        stderr(output).contains("Access denied"),
        "{what}: expected polkit's denial, got: {}",
        stderr(output)
    );
}

#[test]
fn polkit_allows_only_nova_compute_restart() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let controller = Controller::start(&env).unwrap();
    let node = boot_compute_node(
        &env,
        "polkit",
        &controller.url(),
        &controller.agent_settings(&AgentSettings::default()),
    )
    .unwrap();

    let restarted = manager_call(&node, "RestartUnit", "ss", &[NOVA_UNIT, "replace"]);
    assert!(restarted.status.success(), "{}", stderr(&restarted));
    let reset = manager_call(&node, "ResetFailedUnit", "s", &[NOVA_UNIT]);
    assert!(reset.status.success(), "{}", stderr(&reset));

    let start = manager_call(&node, "StartUnit", "ss", &[NOVA_UNIT, "replace"]);
    assert_denied(&start, "StartUnit nova-compute");
    let stop = manager_call(&node, "StopUnit", "ss", &[NOVA_UNIT, "replace"]);
    assert_denied(&stop, "StopUnit nova-compute");
    let kill = manager_call(&node, "KillUnit", "ssi", &[NOVA_UNIT, "all", "9"]);
    assert_denied(&kill, "KillUnit nova-compute");
    let other = manager_call(&node, "RestartUnit", "ss", &["dbus.service", "replace"]);
    assert_denied(&other, "RestartUnit dbus");
    let own = manager_call(&node, "StopUnit", "ss", &[AGENT_UNIT, "replace"]);
    assert_denied(&own, "StopUnit novamedic-agent");
    let systemctl = as_agent_user(
        &node,
        &["systemctl", "--no-ask-password", "stop", NOVA_UNIT],
    );
    assert_denied(&systemctl, "systemctl stop nova-compute");

    assert_eq!(node.nova_property("ActiveState").unwrap(), "active");
}

#[test]
fn hung_agent_is_restarted_by_watchdog() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let controller = Controller::start(&env).unwrap();
    let node = boot_compute_node(
        &env,
        "watchdog",
        &controller.url(),
        &controller.agent_settings(&AgentSettings::default()),
    )
    .unwrap();
    let container = &node.container;
    // A short watchdog, so the test waits seconds instead of 30.
    container
        .write_file(
            "/etc/systemd/system/novamedic-agent.service.d/watchdog.conf",
            b"[Service]\nWatchdogSec=3s\n",
        )
        .unwrap();
    container.systemctl_ok(&["daemon-reload"]).unwrap();
    container.systemctl_ok(&["restart", AGENT_UNIT]).unwrap();
    wait_for_status(container, &format!("connected to {}", controller.url()));
    let pid = container.unit_property(AGENT_UNIT, "MainPID").unwrap();

    container.exec_ok(&["kill", "-STOP", &pid]).unwrap();

    wait_until(
        "a new agent process after the watchdog fired",
        || {
            container
                .unit_property(AGENT_UNIT, "MainPID")
                .unwrap_or_default()
        },
        |new_pid| new_pid != pid && new_pid != "0",
        || agent_journal(container),
    );
    let result = container
        .exec_ok(&["journalctl", "--no-pager", "-u", AGENT_UNIT])
        .unwrap();
    assert!(result.contains("Watchdog timeout"), "{result}");
    wait_for_status(container, &format!("connected to {}", controller.url()));
}

#[test]
fn rpm_has_contents_config_and_scriptlets() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let rpm = package_file(&env, "novamedic-agent-", ".rpm");
    let rpm = rpm.to_str().unwrap();

    let files = host_ok("rpm", &["-qp", "--list", rpm]);
    for expected in [
        "/usr/bin/novamedic-agent",
        "/usr/lib/systemd/system/novamedic-agent.service",
        "/usr/lib/systemd/system-preset/80-novamedic-agent.preset",
        "/usr/share/polkit-1/rules.d/50-novamedic-agent.rules",
        "/etc/novamedic/agent.toml",
        "/usr/share/man/man1/novamedic-agent.1.gz",
        "/usr/share/man/man1/novamedic-agent-run.1.gz",
        "/usr/share/bash-completion/completions/novamedic-agent",
        "/usr/share/zsh/site-functions/_novamedic-agent",
    ] {
        assert!(
            files.lines().any(|line| line == expected),
            "{expected} missing: {files}"
        );
    }

    let config_files = host_ok("rpm", &["-qp", "--configfiles", rpm]);
    assert_eq!(config_files.trim(), "/etc/novamedic/agent.toml");
    let dump = host_ok("rpm", &["-qp", "--dump", rpm]);
    let agent_toml = dump
        .lines()
        .find(|line| line.starts_with("/etc/novamedic/agent.toml "))
        .unwrap_or_else(|| panic!("agent.toml not in --dump: {dump}"));
    // --dump fields: path size mtime digest mode owner group isconfig ...
    let fields: Vec<&str> = agent_toml.split_whitespace().collect();
    assert_eq!(
        fields[7], "1",
        "agent.toml is not a config file: {agent_toml}"
    );
    let flags = host_ok(
        "rpm",
        &["-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", rpm],
    );
    assert!(
        flags
            .lines()
            .any(|line| line == "cn /etc/novamedic/agent.toml"),
        "agent.toml is not %config(noreplace): {flags}"
    );

    let scripts = host_ok("rpm", &["-qp", "--scripts", rpm]);
    for expected in [
        "preinstall scriptlet",
        "useradd --system --gid novamedic",
        "postinstall scriptlet",
        "usermod --append --groups",
        "systemctl --no-reload preset novamedic-agent.service",
        "preuninstall scriptlet",
        "systemctl --no-reload disable --now novamedic-agent.service",
        "postuninstall scriptlet",
        "systemctl try-restart novamedic-agent.service",
    ] {
        assert!(
            scripts.contains(expected),
            "{expected:?} missing: {scripts}"
        );
    }

    let controller_rpm = package_file(&env, "novamedic-0", ".rpm");
    let controller_files = host_ok("rpm", &["-qp", "--list", controller_rpm.to_str().unwrap()]);
    for expected in [
        "/usr/bin/novamedic",
        "/usr/lib/systemd/system/novamedic.service",
        "/etc/novamedic/controller.toml",
        "/usr/share/man/man1/novamedic-restart.1.gz",
        "/usr/share/bash-completion/completions/novamedic",
    ] {
        assert!(
            controller_files.lines().any(|line| line == expected),
            "{expected} missing: {controller_files}"
        );
    }
}
