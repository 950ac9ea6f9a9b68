//! The node's CPU, memory, swap, load, uptime and filesystems.
//!
//! CPU, memory, load and uptime come from sysinfo. Filesystems do not:
//! sysinfo 0.40 leaves out nfs, nfs4 and cifs unless built with its
//! `linux-netdevs` feature, and it calls statvfs without a time limit, which
//! blocks for as long as a hard-mounted NFS server is down. That outage is
//! when an operator most needs the report, so filesystems are read from
//! `/proc/self/mounts` here and network filesystems are measured with a
//! deadline.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use novamedic_proto::v1;
use sysinfo::System;

const MOUNTS_PATH: &str = "/proc/self/mounts";

/// Time a filesystem call on a network filesystem may take before the
/// filesystem is reported without sizes.
const NETWORK_CALL_DEADLINE: Duration = Duration::from_secs(2);

/// Pseudo and virtual filesystem types, which hold no node data worth
/// reporting. Any type not listed here is reported, so a filesystem new to
/// this list shows up rather than hides. tmpfs is RAM (already in memory),
/// overlay is a container's view of another filesystem, squashfs and
/// iso9660 are read-only images that are always full, autofs is a trigger
/// whose real mount appears as its own entry.
const PSEUDO_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "efivarfs",
    "fuse.gvfsd-fuse",
    "fuse.lxcfs",
    "fuse.portal",
    "fuse.snapfuse",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nfsd",
    "nsfs",
    "overlay",
    "proc",
    "pstore",
    "ramfs",
    "rootfs",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tmpfs",
    "tracefs",
];

/// Filesystems served over the network, whose calls can block while the
/// server is unreachable.
const NETWORK_FS_TYPES: &[&str] = &[
    "ceph",
    "cifs",
    "fuse.ceph-fuse",
    "fuse.glusterfs",
    "fuse.sshfs",
    "glusterfs",
    "gpfs",
    "lustre",
    "nfs",
    "nfs4",
    "smb3",
];

/// Returns true when a filesystem of this type is reported.
pub fn is_real_filesystem(fs_type: &str) -> bool {
    !PSEUDO_FS_TYPES.contains(&fs_type)
}

/// Returns true when a filesystem of this type is served over the network.
pub fn is_network_filesystem(fs_type: &str) -> bool {
    NETWORK_FS_TYPES.contains(&fs_type)
}

/// One line of the mount table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    pub source: String,
    pub mount_point: PathBuf,
    pub fs_type: String,
}

/// Parses `/proc/self/mounts` text. Spaces, tabs, newlines and backslashes
/// in paths are octal escapes there (`\040`). A mount point mounted over
/// another keeps only its last (visible) entry.
pub fn parse_mounts(text: &str) -> Vec<MountEntry> {
    let mut entries: Vec<MountEntry> = Vec::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let (Some(source), Some(mount_point), Some(fs_type)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let entry = MountEntry {
            source: unescape_octal(source),
            mount_point: PathBuf::from(unescape_octal(mount_point)),
            fs_type: fs_type.to_string(),
        };
        entries.retain(|existing| existing.mount_point != entry.mount_point);
        entries.push(entry);
    }
    entries
}

fn unescape_octal(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut output = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escape = bytes
            .get(index + 1..index + 4)
            .filter(|_| bytes[index] == b'\\');
        let decoded = escape
            .and_then(|digits| std::str::from_utf8(digits).ok())
            .and_then(|digits| u8::from_str_radix(digits, 8).ok());
        match decoded {
            Some(byte) => {
                output.push(byte);
                index += 4;
            }
            None => {
                output.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&output).into_owned()
}

/// Returns the index of the mount point that contains `path`: the longest one
/// that is a prefix of `path` component by component, so `/var/lib/nova2`
/// is not under `/var/lib/nova`.
pub fn find_holding_mount(mount_points: &[&Path], path: &Path) -> Option<usize> {
    mount_points
        .iter()
        .enumerate()
        .filter(|(_, mount_point)| path.starts_with(mount_point))
        .max_by_key(|(_, mount_point)| mount_point.components().count())
        .map(|(index, _)| index)
}

/// Reads the node's resources. It keeps sysinfo's state between readings,
/// so CPU usage is the average since the previous reading.
///
/// Reading blocks the calling thread (for up to the network deadline per
/// stuck filesystem, and up to sysinfo's minimum CPU interval on the first
/// reading), so async callers run it on a blocking thread.
pub struct ResourceCollector {
    /// `None` when sysinfo could not start; CPU and memory then read as 0.
    system: Option<System>,
    last_cpu_refresh: Instant,
    /// CPU usage of the latest reading, `None` before the first.
    last_cpu_usage_percent: Option<f64>,
    slow_calls: SlowCalls,
}

impl Default for ResourceCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl ResourceCollector {
    pub fn new() -> Self {
        let system = match System::new() {
            Ok(mut system) => {
                system.refresh_cpu_usage();
                Some(system)
            }
            Err(err) => {
                tracing::warn!(error = %err, "cannot read CPU and memory; they are reported as 0");
                None
            }
        };
        ResourceCollector {
            system,
            last_cpu_refresh: Instant::now(),
            last_cpu_usage_percent: None,
            slow_calls: SlowCalls::default(),
        }
    }

    /// Reads all resources; `instances_path` marks the filesystem holding
    /// nova's instances.
    pub fn collect(&mut self, instances_path: &Path) -> v1::Resources {
        let mut resources = v1::Resources {
            instances_path: instances_path.display().to_string(),
            filesystems: self.filesystems(instances_path),
            uptime_seconds: System::uptime().unwrap_or(0),
            ..Default::default()
        };
        if let Ok(load) = System::load_average() {
            resources.load_average_1m = load.one;
            resources.load_average_5m = load.five;
            resources.load_average_15m = load.fifteen;
        }
        self.fill_cpu_and_memory(&mut resources);
        resources
    }

    fn fill_cpu_and_memory(&mut self, resources: &mut v1::Resources) {
        resources.cpu_usage_percent = self.cpu_usage_percent();
        let Some(system) = self.system.as_mut() else {
            return;
        };
        system.refresh_memory();

        resources.cpu_count = system.cpus().len() as u32;
        resources.memory_total_bytes = system.total_memory();
        resources.memory_available_bytes = system.available_memory();
        resources.memory_used_bytes = system.used_memory();
        resources.swap_total_bytes = system.total_swap();
        resources.swap_used_bytes = system.used_swap();
    }

    /// Returns CPU usage since the previous reading. sysinfo needs
    /// `MINIMUM_CPU_UPDATE_INTERVAL` (200 ms in 0.40) between two readings,
    /// so a reading sooner than that repeats the previous value, and only the
    /// first reading after `new` waits out the interval.
    fn cpu_usage_percent(&mut self) -> f64 {
        let Some(system) = self.system.as_mut() else {
            return 0.0;
        };
        let since_last = self.last_cpu_refresh.elapsed();
        if since_last < sysinfo::MINIMUM_CPU_UPDATE_INTERVAL {
            if let Some(previous) = self.last_cpu_usage_percent {
                return previous;
            }
            std::thread::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL - since_last);
        }
        system.refresh_cpu_usage();
        self.last_cpu_refresh = Instant::now();
        let usage = f64::from(system.global_cpu_usage());
        self.last_cpu_usage_percent = Some(usage);
        usage
    }

    fn filesystems(&mut self, instances_path: &Path) -> Vec<v1::Filesystem> {
        let text = match std::fs::read_to_string(MOUNTS_PATH) {
            Ok(text) => text,
            Err(err) => {
                tracing::warn!(path = MOUNTS_PATH, error = %err, "cannot read the mount table");
                return Vec::new();
            }
        };
        let mounts: Vec<MountEntry> = parse_mounts(&text)
            .into_iter()
            .filter(|mount| is_real_filesystem(&mount.fs_type))
            .collect();

        let mut filesystems: Vec<v1::Filesystem> =
            mounts.iter().map(|mount| self.measure(mount)).collect();
        let resolved = self.resolve(instances_path);
        let mount_points: Vec<&Path> = mounts
            .iter()
            .map(|mount| mount.mount_point.as_path())
            .collect();
        if let Some(index) = find_holding_mount(&mount_points, &resolved) {
            filesystems[index].holds_instances = true;
        }
        filesystems
    }

    /// Measures one filesystem. Sizes are 0 when statvfs failed or, on a
    /// network filesystem, did not return in time.
    fn measure(&mut self, mount: &MountEntry) -> v1::Filesystem {
        let mut filesystem = v1::Filesystem {
            mount_point: mount.mount_point.display().to_string(),
            fs_type: mount.fs_type.clone(),
            source: mount.source.clone(),
            ..Default::default()
        };
        let mount_point = mount.mount_point.clone();
        let result = if is_network_filesystem(&mount.fs_type) {
            let key = format!("statvfs {}", mount_point.display());
            self.slow_calls
                .call(key, move || statvfs_bytes(&mount_point))
        } else {
            Some(statvfs_bytes(&mount_point))
        };
        match result {
            Some(Ok((total_bytes, available_bytes))) => {
                filesystem.total_bytes = total_bytes;
                filesystem.available_bytes = available_bytes;
            }
            Some(Err(err)) => {
                tracing::debug!(mount_point = %filesystem.mount_point, error = %err, "statvfs failed");
            }
            None => {}
        }
        filesystem
    }

    /// Resolves symlinks in `path`, or in its longest existing ancestor
    /// when it does not exist yet. Runs under the network deadline because
    /// the path may cross a hung NFS mount.
    fn resolve(&mut self, path: &Path) -> PathBuf {
        let owned = path.to_path_buf();
        let key = format!("canonicalize {}", path.display());
        self.slow_calls
            .call(key, move || canonicalize_existing_prefix(&owned))
            .unwrap_or_else(|| path.to_path_buf())
    }
}

fn canonicalize_existing_prefix(path: &Path) -> PathBuf {
    let mut missing = Vec::new();
    let mut existing = path;
    loop {
        if let Ok(resolved) = existing.canonicalize() {
            return missing
                .iter()
                .rev()
                .fold(resolved, |joined, part| joined.join(part));
        }
        match (existing.parent(), existing.file_name()) {
            (Some(parent), Some(name)) => {
                missing.push(name.to_os_string());
                existing = parent;
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Returns (total, available to unprivileged users) in bytes.
fn statvfs_bytes(mount_point: &Path) -> std::io::Result<(u64, u64)> {
    let stat = rustix::fs::statvfs(mount_point)?;
    // Block counts are in f_frsize units, not f_bsize (statvfs(3)).
    Ok((stat.f_blocks * stat.f_frsize, stat.f_bavail * stat.f_frsize))
}

/// Runs calls that may block forever on a separate thread, each up to
/// [`NETWORK_CALL_DEADLINE`].
///
/// A call that ran out of time keeps its thread, because a thread blocked in
/// the kernel cannot be cancelled. The same call is not started again until
/// that thread returns, so a hung NFS server costs one thread per call, not
/// one per report.
#[derive(Default)]
struct SlowCalls {
    /// Calls that ran out of time, with a flag their thread sets on return.
    stuck: HashMap<String, Arc<AtomicBool>>,
}

impl SlowCalls {
    /// Returns the result of `call`, or `None` when it ran out of time now
    /// or is still stuck from an earlier report.
    fn call<T: Send + 'static>(
        &mut self,
        key: String,
        call: impl FnOnce() -> T + Send + 'static,
    ) -> Option<T> {
        if let Some(done) = self.stuck.get(&key) {
            if !done.load(Ordering::Acquire) {
                tracing::debug!(call = %key, "call still blocked since an earlier report");
                return None;
            }
            tracing::info!(call = %key, "blocked call returned");
            self.stuck.remove(&key);
        }

        let (sender, receiver) = mpsc::channel();
        let done = Arc::new(AtomicBool::new(false));
        let thread_done = Arc::clone(&done);
        let spawned = std::thread::Builder::new()
            .name("novamedic-fs".into())
            .spawn(move || {
                // The receiver is gone when the deadline passed; the result is
                // then of no use.
                let _ = sender.send(call());
                thread_done.store(true, Ordering::Release);
            });
        if let Err(err) = spawned {
            tracing::warn!(call = %key, error = %err, "cannot start a thread for a filesystem call");
            return None;
        }

        match receiver.recv_timeout(NETWORK_CALL_DEADLINE) {
            Ok(result) => Some(result),
            Err(_) => {
                tracing::warn!(
                    call = %key,
                    deadline_ms = NETWORK_CALL_DEADLINE.as_millis() as u64,
                    "filesystem call did not return in time; is the network filesystem's server reachable?"
                );
                self.stuck.insert(key, done);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filesystem_types_filtered() {
        let cases = [
            ("ext4", true),
            ("xfs", true),
            ("btrfs", true),
            ("zfs", true),
            ("vfat", true),
            ("nfs", true),
            ("nfs4", true),
            ("ceph", true),
            ("fuse.glusterfs", true),
            ("proc", false),
            ("sysfs", false),
            ("tmpfs", false),
            ("devtmpfs", false),
            ("cgroup", false),
            ("cgroup2", false),
            ("overlay", false),
            ("squashfs", false),
            ("autofs", false),
            ("fuse.lxcfs", false),
            ("nsfs", false),
        ];
        for (fs_type, expected) in cases {
            assert_eq!(is_real_filesystem(fs_type), expected, "{fs_type}");
        }
        assert!(is_network_filesystem("nfs4"));
        assert!(!is_network_filesystem("ext4"));
    }

    #[test]
    fn mount_table_parsed() {
        let text = "sysfs /sys sysfs rw,nosuid 0 0\n\
                    /dev/vda1 / ext4 rw,relatime 0 0\n\
                    /dev/vdb1 /var/lib/nova ext4 rw 0 0\n\
                    nfs.example.net:/export/nova /var/lib/nova/instances nfs4 rw,hard 0 0\n\
                    /dev/vdc1 /mnt/with\\040space xfs rw 0 0\n\
                    /dev/vdd1 /var/lib/nova ext4 rw 0 0\n";
        let mounts = parse_mounts(text);
        let points: Vec<&str> = mounts
            .iter()
            .map(|m| m.mount_point.to_str().unwrap())
            .collect();
        assert_eq!(
            points,
            [
                "/sys",
                "/",
                "/var/lib/nova/instances",
                "/mnt/with space",
                "/var/lib/nova"
            ]
        );
        assert_eq!(mounts[2].source, "nfs.example.net:/export/nova");
        assert_eq!(mounts[2].fs_type, "nfs4");
        assert_eq!(
            mounts[4].source, "/dev/vdd1",
            "the later mount over a mount point wins"
        );
    }

    #[test]
    fn longest_prefix_holds_instances() {
        let mount_points = [
            "/",
            "/var",
            "/var/lib/nova",
            "/var/lib/nova/instances/_base",
            "/srv",
        ];
        let cases = [
            ("/var/lib/nova/instances", Some("/var/lib/nova")),
            ("/var/lib/nova", Some("/var/lib/nova")),
            ("/var/lib/nova2/instances", Some("/var")),
            (
                "/var/lib/nova/instances/_base",
                Some("/var/lib/nova/instances/_base"),
            ),
            ("/srv/nova", Some("/srv")),
            ("/srvx", Some("/")),
            ("/opt/nova", Some("/")),
        ];
        let paths: Vec<&Path> = mount_points.iter().map(Path::new).collect();
        for (instances, expected) in cases {
            let found = find_holding_mount(&paths, Path::new(instances)).map(|i| mount_points[i]);
            assert_eq!(found, expected, "{instances}");
        }
        assert_eq!(find_holding_mount(&paths[1..], Path::new("/opt")), None);
    }

    #[test]
    fn symlinked_instances_path_resolved() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let real = real.canonicalize().unwrap();

        assert_eq!(canonicalize_existing_prefix(&link), real);
        assert_eq!(
            canonicalize_existing_prefix(&link.join("a/b")),
            real.join("a/b")
        );
    }

    #[test]
    fn slow_call_times_out_once() {
        let mut calls = SlowCalls::default();
        assert_eq!(calls.call("quick".into(), || 7), Some(7));

        let (release, blocked) = mpsc::channel::<()>();
        let result = calls.call("blocked".into(), move || blocked.recv().is_ok());
        assert_eq!(result, None);
        // While the first call is blocked, a second one is not started.
        assert_eq!(calls.call("blocked".into(), || true), None);

        release.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while !calls.stuck["blocked"].load(Ordering::Acquire) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(calls.call("blocked".into(), || true), Some(true));
    }

    fn meminfo_total_bytes() -> u64 {
        let text = std::fs::read_to_string("/proc/meminfo").unwrap();
        let line = text
            .lines()
            .find(|line| line.starts_with("MemTotal:"))
            .unwrap();
        let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        kib * 1024
    }

    #[test]
    fn real_host_matches_kernel() {
        let mut collector = ResourceCollector::new();
        let resources = collector.collect(Path::new("/var/lib/nova/instances"));

        assert_eq!(resources.memory_total_bytes, meminfo_total_bytes());
        assert!(resources.memory_available_bytes <= resources.memory_total_bytes);
        assert!(resources.cpu_count >= 1);
        assert!((0.0..=100.0).contains(&resources.cpu_usage_percent));
        assert!(resources.uptime_seconds > 0);
        assert_eq!(resources.instances_path, "/var/lib/nova/instances");

        let disk = resources
            .filesystems
            .iter()
            .find(|fs| !is_network_filesystem(&fs.fs_type))
            .expect("no local filesystem reported");
        // Repeated here with libc's statvfs rather than rustix's, to check
        // the block-size arithmetic against a second reading.
        let path = std::ffi::CString::new(disk.mount_point.as_str()).unwrap();
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a NUL-terminated string and `stat` a writable
        // statvfs that outlives the call.
        assert_eq!(unsafe { libc::statvfs(path.as_ptr(), &mut stat) }, 0);
        assert_eq!(
            disk.total_bytes,
            stat.f_blocks * stat.f_frsize,
            "{}",
            disk.mount_point
        );

        let holding: Vec<&v1::Filesystem> = resources
            .filesystems
            .iter()
            .filter(|fs| fs.holds_instances)
            .collect();
        assert!(holding.len() <= 1, "{holding:?}");
    }

    #[test]
    fn cpu_usage_covers_time_since_previous_reading() {
        let mut collector = ResourceCollector::new();
        let idle = collector.collect(Path::new("/"));
        assert!((0.0..=100.0).contains(&idle.cpu_usage_percent));

        // Keep one core busy between two readings: the second must show it.
        let busy_until = Instant::now() + Duration::from_millis(500);
        let mut spins = 0u64;
        while Instant::now() < busy_until {
            spins = std::hint::black_box(spins + 1);
        }
        let busy = collector.collect(Path::new("/"));
        let right_after = collector.collect(Path::new("/"));
        assert_eq!(
            right_after.cpu_usage_percent, busy.cpu_usage_percent,
            "reading within 200 ms"
        );
        let one_core_percent = 100.0 / f64::from(busy.cpu_count);
        assert!(
            busy.cpu_usage_percent >= one_core_percent / 2.0,
            "usage {} with one of {} cores busy",
            busy.cpu_usage_percent,
            busy.cpu_count
        );
    }
}
