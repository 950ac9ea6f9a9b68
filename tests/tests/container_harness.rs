//! The container harness itself: boot, units, shutdown and cleanup.
//!
//! Needs root and the tree from scripts/build-rootfs.sh; see
//! `novamedic_tests::system_env`.

use std::path::{Path, PathBuf};
use std::thread;

use novamedic_tests::container::{cgroup_pids, Bind, Container};
use novamedic_tests::system_env::{require_system_test_env, SystemTestEnv};

fn nova_binds(env: &SystemTestEnv) -> Vec<Bind> {
    vec![
        Bind::read_only(
            env.packaging("test/fake-nova-compute"),
            "/usr/bin/nova-compute",
        ),
        Bind::read_only(
            env.packaging("test/fake-nova-compute.service"),
            "/etc/systemd/system/nova-compute.service",
        ),
        Bind::read_only(env.packaging("test/nova.conf"), "/etc/nova/nova.conf"),
    ]
}

fn property(container: &Container, property: &str) -> String {
    container
        .unit_property("nova-compute.service", property)
        .unwrap()
}

fn assert_gone(cgroup_dirs: &[PathBuf], leader_pid: u32, nspawn_pid: u32) {
    for dir in cgroup_dirs {
        assert!(
            !dir.exists(),
            "cgroup directory {} left behind",
            dir.display()
        );
    }
    for pid in [leader_pid, nspawn_pid] {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "process {pid} of the container still runs"
        );
    }
}

#[test]
fn container_boots_runs_units_and_cleans_up() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let mut container =
        Container::boot(&env.rootfs, "smoke", &nova_binds(&env), "multi-user.target")
            .expect("container boots");

    let state = container.systemctl(&["is-system-running"]).unwrap();
    let state = String::from_utf8_lossy(&state.stdout).trim().to_string();
    assert!(
        state == "running" || state == "degraded",
        "system state {state:?}"
    );
    let hostname = container
        .exec_ok(&["cat", "/proc/sys/kernel/hostname"])
        .unwrap();
    assert_eq!(hostname.trim(), container.machine());

    container
        .systemctl_ok(&["start", "nova-compute.service"])
        .unwrap();
    assert_eq!(property(&container, "ActiveState"), "active");
    let first_pid = property(&container, "MainPID");
    let first_invocation = property(&container, "InvocationID");
    let command_line = container
        .exec_ok(&["ps", "-o", "args=", "-p", &first_pid])
        .unwrap();
    assert!(
        command_line.contains(
            "/usr/bin/nova-compute --config-file=/etc/nova/nova.conf \
             --log-file=/var/log/nova/nova-compute.log"
        ),
        "nova-compute command line: {command_line}"
    );
    let log = container
        .exec_ok(&["cat", "/var/log/nova/nova-compute.log"])
        .unwrap();
    let first_line = log.lines().next().expect("the stand-in logs at start");
    let fields: Vec<&str> = first_line.splitn(6, ' ').collect();
    assert_eq!(
        fields[2], first_pid,
        "oslo.log line names the PID: {first_line}"
    );
    assert_eq!(fields[3], "INFO", "{first_line}");
    assert_eq!(fields[4], "nova.compute.manager", "{first_line}");
    assert!(fields[5].starts_with("[None req-"), "{first_line}");

    container
        .systemctl_ok(&["restart", "nova-compute.service"])
        .unwrap();
    assert_eq!(property(&container, "ActiveState"), "active");
    assert_ne!(property(&container, "MainPID"), first_pid);
    assert_ne!(property(&container, "InvocationID"), first_invocation);

    container
        .systemctl_ok(&["kill", "-s", "KILL", "nova-compute.service"])
        .unwrap();
    let mut failed = false;
    for _ in 0..50 {
        if property(&container, "ActiveState") == "failed" {
            failed = true;
            break;
        }
        thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(failed, "nova-compute did not fail after SIGKILL");
    assert_eq!(property(&container, "Result"), "signal");

    let cgroup_dirs = container.cgroup_dirs().to_vec();
    let leader_pid = container.leader_pid();
    let nspawn_pid = container.nspawn_pid().unwrap();
    for dir in &cgroup_dirs {
        assert!(
            cgroup_pids(dir).contains(&leader_pid),
            "PID 1 outside {}",
            dir.display()
        );
    }
    container.shutdown().expect("container shuts down");
    assert_gone(&cgroup_dirs, leader_pid, nspawn_pid);
}

#[test]
fn containers_booted_together_keep_units_apart() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let binds = nova_binds(&env);
    let first = Container::boot(&env.rootfs, "apart-a", &binds, "multi-user.target").unwrap();
    let second = Container::boot(&env.rootfs, "apart-b", &binds, "multi-user.target").unwrap();

    first
        .systemctl_ok(&["start", "nova-compute.service"])
        .unwrap();
    assert_eq!(property(&first, "ActiveState"), "active");
    assert_eq!(property(&second, "ActiveState"), "inactive");

    second
        .systemctl_ok(&["start", "nova-compute.service"])
        .unwrap();
    first
        .systemctl_ok(&["stop", "nova-compute.service"])
        .unwrap();
    assert_eq!(property(&first, "ActiveState"), "inactive");
    assert_eq!(property(&second, "ActiveState"), "active");
}

#[test]
fn dropped_container_is_shut_down_after_panic() {
    let Some(env) = require_system_test_env() else {
        return;
    };
    let rootfs = env.rootfs.clone();
    let outcome = thread::spawn(move || {
        let container = Container::boot(&rootfs, "panic", &[], "multi-user.target").unwrap();
        let ids = (
            container.cgroup_dirs().to_vec(),
            container.leader_pid(),
            container.nspawn_pid().unwrap(),
        );
        std::panic::panic_any(ids);
    })
    .join();

    let payload = outcome.expect_err("the thread panics");
    let (cgroup_dirs, leader_pid, nspawn_pid) = *payload
        .downcast::<(Vec<PathBuf>, u32, u32)>()
        .expect("panic payload carries the container's ids");
    assert_gone(&cgroup_dirs, leader_pid, nspawn_pid);
}
