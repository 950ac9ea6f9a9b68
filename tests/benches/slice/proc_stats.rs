//! Memory and CPU use of a host process, read from `/proc`, and the host
//! PID of a unit's process inside a container.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

/// One reading of a process's memory and CPU counters.
#[derive(Debug, Clone, Copy)]
pub struct ProcessSample {
    /// `VmRSS`: resident memory now.
    pub rss_bytes: u64,
    /// `VmHWM`: the highest resident memory since the process started.
    pub peak_rss_bytes: u64,
    /// `RssAnon`: resident heap, stacks and other anonymous memory.
    pub rss_anon_bytes: u64,
    /// `RssFile`: resident pages of the binary and other mapped files.
    pub rss_file_bytes: u64,
    pub threads: u64,
    /// `utime + stime` from `/proc/PID/stat`, in clock ticks.
    pub cpu_ticks: u64,
}

/// Reads `/proc/PID/status` and `/proc/PID/stat` of a host process.
pub fn sample(pid: u32) -> Result<ProcessSample> {
    let status_path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&status_path)
        .with_context(|| format!("cannot read {status_path}; did process {pid} exit?"))?;
    Ok(ProcessSample {
        rss_bytes: status_kib(&status, "VmRSS")? * 1024,
        peak_rss_bytes: status_kib(&status, "VmHWM")? * 1024,
        rss_anon_bytes: status_kib(&status, "RssAnon")? * 1024,
        rss_file_bytes: status_kib(&status, "RssFile")? * 1024,
        threads: status_kib(&status, "Threads")?,
        cpu_ticks: cpu_ticks(pid)?,
    })
}

/// Returns the number in a `Key:   123 kB` (or `Threads: 7`) line.
fn status_kib(status: &str, key: &str) -> Result<u64> {
    let prefix = format!("{key}:");
    let Some(line) = status.lines().find(|line| line.starts_with(&prefix)) else {
        bail!("no {key} line in /proc/PID/status");
    };
    let value = line[prefix.len()..]
        .split_whitespace()
        .next()
        .unwrap_or_default();
    value
        .parse()
        .with_context(|| format!("invalid {key} value {value:?} in /proc/PID/status"))
}

/// Returns `utime + stime` of `pid` in clock ticks.
fn cpu_ticks(pid: u32) -> Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    // The command name in field 2 may contain spaces and parentheses; the
    // fields after its closing parenthesis are plain numbers.
    let Some(close) = stat.rfind(')') else {
        bail!("no command name in {path}: {stat:?}");
    };
    // Field 3 (state) is the first after the parenthesis, so utime (field
    // 14) and stime (field 15) are the 12th and 13th from there.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    let tick = |index: usize, name: &str| -> Result<u64> {
        let value = fields.get(index).copied().unwrap_or_default();
        value
            .parse()
            .with_context(|| format!("invalid {name} {value:?} in {path}"))
    };
    Ok(tick(11, "utime")? + tick(12, "stime")?)
}

/// Returns the resident bytes of `pid` per mapped file (by file name), with
/// `[heap]`, `[stack]` and `[anon]` for memory without a file, largest first.
pub fn rss_by_mapping(pid: u32) -> Result<Vec<(String, u64)>> {
    let path = format!("/proc/{pid}/smaps");
    let smaps = fs::read_to_string(&path).with_context(|| format!("cannot read {path}"))?;
    let mut totals: Vec<(String, u64)> = Vec::new();
    let mut current = String::new();
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if first.contains('-') && !first.ends_with(':') {
            // A mapping's header: address range, perms, offset, device,
            // inode, then the optional path.
            let name = fields.nth(4).unwrap_or("[anon]");
            current = Path::new(name)
                .file_name()
                .map_or(name.to_string(), |n| n.to_string_lossy().into_owned());
        } else if first == "Rss:" {
            let kib: u64 = fields.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match totals.iter_mut().find(|(name, _)| *name == current) {
                Some((_, bytes)) => *bytes += kib * 1024,
                None => totals.push((current.clone(), kib * 1024)),
            }
        }
    }
    totals.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    Ok(totals)
}

/// Converts clock ticks (`USER_HZ`) to seconds.
pub fn ticks_to_seconds(ticks: u64) -> f64 {
    ticks as f64 / rustix::param::clock_ticks_per_second() as f64
}

/// Returns `CLOCK_MONOTONIC` in microseconds, the clock of systemd's
/// `*TimestampMonotonic` properties. nspawn gives the container no time
/// namespace, so the host and the container read the same clock.
pub fn monotonic_us() -> u64 {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    now.tv_sec as u64 * 1_000_000 + now.tv_nsec as u64 / 1_000
}

/// A process in a unit's cgroup: host PID and `comm`.
#[derive(Debug, Clone)]
pub struct UnitProcess {
    pub pid: u32,
    pub comm: String,
}

/// Returns the processes in `unit`'s cgroup inside a container, given the
/// container's cgroup directories, as host PIDs.
///
/// PIDs read inside the container are container PIDs; the host's view of
/// the unit's `cgroup.procs` lists host PIDs.
pub fn unit_processes(cgroup_dirs: &[PathBuf], unit: &str) -> Result<Vec<UnitProcess>> {
    let mut unit_dirs = Vec::new();
    for dir in cgroup_dirs {
        find_dirs_named(dir, unit, &mut unit_dirs);
    }
    let mut processes: Vec<UnitProcess> = Vec::new();
    for dir in &unit_dirs {
        let procs = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        for pid in procs.lines().filter_map(|line| line.trim().parse().ok()) {
            if processes.iter().any(|p| p.pid == pid) {
                continue;
            }
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            processes.push(UnitProcess {
                pid,
                comm: comm.trim().to_string(),
            });
        }
    }
    if processes.is_empty() {
        bail!(
            "no process in the cgroup of {unit} under {cgroup_dirs:?} (unit cgroups found: \
             {unit_dirs:?}); is the unit running?"
        );
    }
    Ok(processes)
}

fn find_dirs_named(dir: &Path, name: &str, found: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        let path = entry.path();
        if entry.file_name() == name {
            found.push(path.clone());
        }
        find_dirs_named(&path, name, found);
    }
}
