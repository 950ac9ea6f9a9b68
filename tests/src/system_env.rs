//! Whether this machine can run the system tests, and where their inputs are.
//!
//! System tests need root (for systemd-nspawn and cgroups), `systemd-nspawn`
//! and `nsenter` on the PATH, and the Debian tree from
//! `scripts/build-rootfs.sh`. `scripts/test.sh` provides all of them. Where
//! they are missing, a system test fails with the reason unless
//! `NOVAMEDIC_SKIP_SYSTEM_TESTS=1` is set. Under `CI=true` it fails even
//! then, so CI never passes by skipping.

use std::path::{Path, PathBuf};

/// Set to `1` to skip system tests on a machine that cannot run them.
pub const SKIP_VARIABLE: &str = "NOVAMEDIC_SKIP_SYSTEM_TESTS";

/// Overrides the Debian tree's location (default `target/novamedic-rootfs`).
pub const ROOTFS_VARIABLE: &str = "NOVAMEDIC_ROOTFS";

/// File that `scripts/build-rootfs.sh` writes last into a finished tree.
const ROOTFS_STAMP: &str = ".novamedic-rootfs-stamp";

/// What a system test needs, found on this machine.
#[derive(Debug, Clone)]
pub struct SystemTestEnv {
    /// The Debian tree to boot.
    pub rootfs: PathBuf,
    /// The workspace's root directory.
    pub workspace: PathBuf,
    /// Cargo's target directory, which contains `debug/novamedic` and
    /// `debug/novamedic-agent`.
    pub target_dir: PathBuf,
}

impl SystemTestEnv {
    /// Path of a binary that `cargo build --workspace --bins` built.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.target_dir.join("debug").join(name)
    }

    /// Path of a file under `packaging/`.
    pub fn packaging(&self, relative: &str) -> PathBuf {
        self.workspace.join("packaging").join(relative)
    }
}

/// Returns the environment when this machine can run system tests.
///
/// Returns `None`, after printing why, when something is missing and
/// `NOVAMEDIC_SKIP_SYSTEM_TESTS=1` is set outside CI.
///
/// # Panics
///
/// Panics with the missing pieces and the fix when something is missing and
/// skipping is not allowed.
pub fn require_system_test_env() -> Option<SystemTestEnv> {
    let env = locate();
    let problems = find_problems(&env);
    if problems.is_empty() {
        return Some(env);
    }

    let summary = problems.join("; ");
    let in_ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let skip = std::env::var(SKIP_VARIABLE).is_ok_and(|v| v == "1");
    if skip && !in_ci {
        eprintln!("skipping system test because {SKIP_VARIABLE}=1: {summary}");
        return None;
    }
    panic!(
        "system test cannot run: {summary}. Run scripts/test.sh as root, which installs \
         and builds what is missing, or set {SKIP_VARIABLE}=1 to skip system tests \
         (ignored when CI=true)"
    );
}

/// Returns the environment's paths without checking them.
pub fn locate() -> SystemTestEnv {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives inside the workspace")
        .to_path_buf();
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|dir| {
            if dir.is_absolute() {
                dir
            } else {
                workspace.join(dir)
            }
        })
        .unwrap_or_else(|| workspace.join("target"));
    let rootfs = std::env::var_os(ROOTFS_VARIABLE)
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir.join("novamedic-rootfs"));
    SystemTestEnv {
        rootfs,
        workspace,
        target_dir,
    }
}

fn find_problems(env: &SystemTestEnv) -> Vec<String> {
    let mut problems = Vec::new();
    if !rustix::process::geteuid().is_root() {
        problems.push("not running as root".to_string());
    }
    for tool in ["systemd-nspawn", "nsenter"] {
        if !on_path(tool) {
            problems.push(format!("{tool} not found on PATH"));
        }
    }
    if !env.rootfs.join(ROOTFS_STAMP).exists() {
        problems.push(format!(
            "no finished Debian tree at {} (build it with scripts/build-rootfs.sh)",
            env.rootfs.display()
        ));
    }
    problems
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .any(|dir| dir.join(tool).is_file())
}
