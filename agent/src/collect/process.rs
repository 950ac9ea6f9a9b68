//! nova-compute's process, read from `/proc`.
//!
//! The unit's MainPID is the first choice. It may be 0, or a container
//! runtime: Kolla runs `docker start -a nova_compute` or `conmon` as the
//! unit's main process. Then the process is searched for by command line in
//! a [`ProcessTable`], which the report builder reads once and shares with
//! the guest scan.
//!
//! NOTE: with `/proc` mounted `hidepid=invisible` (or `hidepid=2`), an agent
//! that is not root sees only its own processes, so neither nova-compute nor
//! the guests are found.

use std::fs;
use std::path::{Path, PathBuf};

use novamedic_proto::v1;

/// Root of the proc filesystem.
const PROC_ROOT: &str = "/proc";

/// Program name nova-compute runs under.
const NOVA_COMPUTE: &str = "nova-compute";

/// One process and its arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcEntry {
    pub pid: u32,
    pub argv: Vec<String>,
}

/// Command lines of all user-space processes at one moment.
///
/// Kernel threads (empty command line) are left out. A process that exits
/// while the table is read is left out too.
#[derive(Debug, Clone, Default)]
pub struct ProcessTable {
    entries: Vec<ProcEntry>,
}

impl ProcessTable {
    /// Reads `/proc/*/cmdline`: one read per process, nothing else.
    pub fn scan() -> Self {
        let dir = match fs::read_dir(PROC_ROOT) {
            Ok(dir) => dir,
            Err(err) => {
                tracing::warn!(path = PROC_ROOT, error = %err, "cannot list processes");
                return Self::default();
            }
        };
        let mut entries: Vec<ProcEntry> = dir
            .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| {
                Some(ProcEntry {
                    pid,
                    argv: read_cmdline(pid)?,
                })
            })
            .collect();
        entries.sort_by_key(|entry| entry.pid);
        ProcessTable { entries }
    }

    /// Builds a table from known entries.
    pub fn from_entries(entries: Vec<ProcEntry>) -> Self {
        ProcessTable { entries }
    }

    pub fn entries(&self) -> &[ProcEntry] {
        &self.entries
    }

    /// Returns the arguments of `pid`, if it was running at the scan.
    pub fn argv(&self, pid: u32) -> Option<&[String]> {
        self.entries
            .binary_search_by_key(&pid, |entry| entry.pid)
            .ok()
            .map(|index| self.entries[index].argv.as_slice())
    }
}

/// Reads the arguments of `pid`; `None` when the process is gone or is a
/// kernel thread.
pub fn read_cmdline(pid: u32) -> Option<Vec<String>> {
    let bytes = fs::read(proc_path(pid, "cmdline")).ok()?;
    let argv = split_cmdline(&bytes);
    (!argv.is_empty()).then_some(argv)
}

/// Splits the NUL-separated contents of `/proc/PID/cmdline`. Invalid UTF-8
/// is replaced, which is enough for matching program names.
pub fn split_cmdline(bytes: &[u8]) -> Vec<String> {
    let bytes = bytes.strip_suffix(&[0]).unwrap_or(bytes);
    if bytes.is_empty() {
        return Vec::new();
    }
    bytes
        .split(|byte| *byte == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// Returns true when `argv` runs the nova-compute program.
///
/// The program is argv[0], or the script after a Python interpreter
/// (`python3 -s /usr/bin/nova-compute ...`). Only that element counts, so
/// `systemctl status nova-compute`, `journalctl -u nova-compute` or
/// `podman start nova-compute` do not match.
pub fn looks_like_nova_compute(argv: &[String]) -> bool {
    let Some(first) = argv.first() else {
        return false;
    };
    // A process that rewrote its title keeps all words in argv[0].
    let program = first
        .split_whitespace()
        .next()
        .unwrap_or("")
        .trim_end_matches(':');
    if is_nova_compute_path(program) {
        return true;
    }
    if !basename(program).starts_with("python") {
        return false;
    }
    argv[1..]
        .iter()
        .find(|arg| !arg.starts_with('-'))
        .is_some_and(|script| is_nova_compute_path(script))
}

fn is_nova_compute_path(arg: &str) -> bool {
    arg == NOVA_COMPUTE || arg.ends_with("/nova-compute")
}

fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Fields of `/proc/PID/status` the agent reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusFields {
    /// Kernel state letter, for example "S" or "D".
    pub state: String,
    pub tracer_pid: u32,
    /// 0 for a zombie, which has no VmRSS line.
    pub rss_bytes: u64,
}

/// Parses the text of `/proc/PID/status`; `None` without a State line.
pub fn parse_status(text: &str) -> Option<StatusFields> {
    let mut state = None;
    let mut tracer_pid = 0;
    let mut rss_bytes = 0;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match key {
            // "S (sleeping)": the letter is all that matters.
            "State" => state = value.split_whitespace().next().map(str::to_string),
            "TracerPid" => tracer_pid = value.parse().unwrap_or(0),
            // "VmRSS:	  123456 kB", where kB means KiB.
            "VmRSS" => {
                let kib: u64 = value.split_whitespace().next()?.parse().ok()?;
                rss_bytes = kib * 1024;
            }
            _ => {}
        }
    }
    Some(StatusFields {
        state: state?,
        tracer_pid,
        rss_bytes,
    })
}

/// Fields of `/proc/PID/stat`, times in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatFields {
    pub parent_pid: u32,
    pub user_ticks: u64,
    pub system_ticks: u64,
    /// Start time after boot.
    pub start_ticks: u64,
}

/// Parses the text of `/proc/PID/stat`.
///
/// The second field is the command name in parentheses, which may itself
/// contain spaces and parentheses, so the fields are counted from the last
/// `)`. Field numbers below follow proc(5).
pub fn parse_stat(text: &str) -> Option<StatFields> {
    let after_comm = &text[text.rfind(')')? + 1..];
    // fields[0] is field 3 (state).
    let fields: Vec<&str> = after_comm.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    Some(StatFields {
        parent_pid: u32::try_from(field(4)?).ok()?,
        user_ticks: field(14)?,
        system_ticks: field(15)?,
        start_ticks: field(22)?,
    })
}

/// Returns how long ago process `pid` started, in seconds, from its start
/// time in `/proc/PID/stat` and the system's uptime; `None` when it has
/// exited.
pub fn process_age_seconds(pid: u32) -> Option<u64> {
    let stat = parse_stat(&fs::read_to_string(format!("{PROC_ROOT}/{pid}/stat")).ok()?)?;
    let uptime = fs::read_to_string(format!("{PROC_ROOT}/uptime")).ok()?;
    let uptime_seconds: f64 = uptime.split_whitespace().next()?.parse().ok()?;
    let started_seconds = ticks_to_ms(stat.start_ticks) / 1000;
    Some((uptime_seconds as u64).saturating_sub(started_seconds))
}

/// Converts clock ticks to milliseconds with the kernel's tick rate.
fn ticks_to_ms(ticks: u64) -> u64 {
    let ticks_per_second = rustix::param::clock_ticks_per_second().max(1);
    ticks.saturating_mul(1000) / ticks_per_second
}

/// Reads the process `pid`; `None` when it has exited.
pub fn read_process(pid: u32, argv: &[String]) -> Option<v1::Process> {
    let status = parse_status(&fs::read_to_string(proc_path(pid, "status")).ok()?)?;
    let stat = parse_stat(&fs::read_to_string(proc_path(pid, "stat")).ok()?)?;
    Some(v1::Process {
        pid,
        state: status.state,
        tracer_pid: status.tracer_pid,
        rss_bytes: status.rss_bytes,
        cpu_time_ms: ticks_to_ms(stat.user_ticks + stat.system_ticks),
        command_line: argv.join(" "),
    })
}

/// Finds nova-compute's process, starting from the unit's MainPID (0 when
/// the unit has none).
///
/// A MainPID that does not run nova-compute (a container runtime) leads to
/// a search of `table`. When the search finds nothing, the MainPID process is
/// returned as it is, since it is the unit's process all the same (a wrapper
/// script, for example).
///
/// Without a MainPID (no unit, or the unit is not running) the search skips
/// processes in other mount namespaces: a nova-compute in some container on
/// this host is not this node's, and its paths mean nothing here.
pub fn find_nova_compute(
    main_pid: u32,
    table: &ProcessTable,
) -> Option<(v1::Process, Vec<String>)> {
    let main_argv = (main_pid != 0)
        .then(|| main_argv(main_pid, table))
        .flatten();
    if let Some(argv) = &main_argv {
        if looks_like_nova_compute(argv) {
            return Some((read_process(main_pid, argv)?, argv.clone()));
        }
    }

    let scope = if main_argv.is_some() {
        SearchScope::AnyNamespace
    } else {
        SearchScope::OwnMountNamespace
    };
    if let Some(found) = search_nova_compute(table, scope) {
        return Some(found);
    }

    let argv = main_argv?;
    Some((read_process(main_pid, &argv)?, argv))
}

/// Arguments of the MainPID, from the table or, for a process started after
/// the scan, from `/proc`.
fn main_argv(pid: u32, table: &ProcessTable) -> Option<Vec<String>> {
    table
        .argv(pid)
        .map(<[String]>::to_vec)
        .or_else(|| read_cmdline(pid))
}

/// Which processes a search for nova-compute considers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SearchScope {
    /// Every process, as for a unit whose MainPID is a container runtime
    /// (Kolla), where nova-compute runs in the container's namespaces.
    AnyNamespace,
    /// Only processes in the agent's own mount namespace. A process whose
    /// namespace cannot be read (an unprivileged agent lacks ptrace rights
    /// on it) is kept.
    OwnMountNamespace,
}

/// Searches `table` for nova-compute: among matching processes whose parent
/// is not itself nova-compute (a forked worker), the one started first that
/// is still running.
pub fn search_nova_compute(
    table: &ProcessTable,
    scope: SearchScope,
) -> Option<(v1::Process, Vec<String>)> {
    let own_namespace = fs::read_link(proc_path_self("ns/mnt")).ok();
    let in_scope = |pid: u32| match (scope, &own_namespace) {
        (SearchScope::OwnMountNamespace, Some(own)) => {
            match fs::read_link(proc_path(pid, "ns/mnt")) {
                Ok(namespace) => &namespace == own,
                Err(_) => true,
            }
        }
        _ => true,
    };
    let candidates: Vec<(&ProcEntry, StatFields)> = table
        .entries()
        .iter()
        .filter(|entry| looks_like_nova_compute(&entry.argv))
        .filter(|entry| in_scope(entry.pid))
        .filter_map(|entry| {
            let stat = parse_stat(&fs::read_to_string(proc_path(entry.pid, "stat")).ok()?)?;
            Some((entry, stat))
        })
        .collect();
    let is_candidate = |pid: u32| candidates.iter().any(|(entry, _)| entry.pid == pid);

    let mut roots: Vec<&(&ProcEntry, StatFields)> = candidates
        .iter()
        .filter(|(_, stat)| !is_candidate(stat.parent_pid))
        .collect();
    roots.sort_by_key(|(entry, stat)| (stat.start_ticks, entry.pid));
    roots
        .into_iter()
        .find_map(|(entry, _)| Some((read_process(entry.pid, &entry.argv)?, entry.argv.clone())))
}

fn proc_path(pid: u32, file: &str) -> PathBuf {
    Path::new(PROC_ROOT).join(pid.to_string()).join(file)
}

fn proc_path_self(file: &str) -> PathBuf {
    Path::new(PROC_ROOT).join("self").join(file)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::process::{Child, Command};
    use std::time::{Duration, Instant};

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn nova_compute_command_lines() {
        let cases = [
            (
                "/usr/bin/nova-compute --config-file /etc/nova/nova.conf",
                true,
            ),
            (
                "/usr/bin/python3 /usr/bin/nova-compute --config-file /etc/nova/nova.conf",
                true,
            ),
            ("/usr/bin/python3 -s /usr/bin/nova-compute", true),
            (
                "/var/lib/kolla/venv/bin/python3 /var/lib/kolla/venv/bin/nova-compute",
                true,
            ),
            ("nova-compute", true),
            ("nova-compute: master process [/usr/bin/nova-compute]", true),
            ("/usr/bin/docker start -a nova_compute", false),
            ("/usr/bin/podman start nova-compute", false),
            ("systemctl status nova-compute", false),
            ("journalctl -u nova-compute -f", false),
            ("tail -F /var/log/nova/nova-compute.log", false),
            ("/usr/bin/python3 /usr/bin/nova-conductor", false),
            ("/usr/bin/nova-compute-ironic", false),
        ];
        for (line, expected) in cases {
            assert_eq!(looks_like_nova_compute(&args(line)), expected, "{line}");
        }
    }

    #[test]
    fn cmdline_split_on_nul() {
        assert_eq!(
            split_cmdline(b"/usr/bin/python3\0/usr/bin/nova-compute\0--config-file\0a b.conf\0"),
            vec![
                "/usr/bin/python3",
                "/usr/bin/nova-compute",
                "--config-file",
                "a b.conf"
            ]
        );
        assert!(split_cmdline(b"").is_empty());
        assert_eq!(
            split_cmdline(b"nova-compute: master"),
            vec!["nova-compute: master"]
        );
    }

    #[test]
    fn status_text_parsed() {
        let text = "Name:\tnova-compute\nUmask:\t0022\nState:\tD (disk sleep)\nTgid:\t4242\n\
                    Pid:\t4242\nPPid:\t1\nTracerPid:\t777\nVmPeak:\t 2000000 kB\nVmRSS:\t  183520 kB\n";
        let status = parse_status(text).unwrap();
        assert_eq!(status.state, "D");
        assert_eq!(status.tracer_pid, 777);
        assert_eq!(status.rss_bytes, 183_520 * 1024);
    }

    #[test]
    fn zombie_status_has_no_rss() {
        let status =
            parse_status("Name:\tnova-compute\nState:\tZ (zombie)\nTracerPid:\t0\n").unwrap();
        assert_eq!(status.state, "Z");
        assert_eq!(status.rss_bytes, 0);
        assert!(parse_status("Name:\tx\n").is_none());
    }

    #[test]
    fn stat_text_with_odd_command_name() {
        let text = "4242 (nova (co) mpute) S 1 4242 4242 0 -1 4194560 5000 0 0 0 \
                    1234 567 0 0 20 0 22 0 98765 1000000 5000 18446744073709551615";
        let stat = parse_stat(text).unwrap();
        assert_eq!(stat.parent_pid, 1);
        assert_eq!(stat.user_ticks, 1234);
        assert_eq!(stat.system_ticks, 567);
        assert_eq!(stat.start_ticks, 98765);
        assert!(parse_stat("4242 (x) S 1").is_none());
    }

    /// A `sleep` started through a symlink named nova-compute, so its argv[0]
    /// ends in `/nova-compute`.
    struct FakeNovaCompute {
        child: Child,
        _dir: tempfile::TempDir,
    }

    impl FakeNovaCompute {
        fn start() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let link = dir.path().join("nova-compute");
            symlink(which_sleep(), &link).unwrap();
            let child = Command::new(&link).arg("300").spawn().unwrap();
            let fake = FakeNovaCompute { child, _dir: dir };
            fake.wait_for_exec();
            fake
        }

        /// Starts the fake in a mount namespace of its own, as a
        /// nova-compute in a container on the same host would be.
        fn start_in_other_mount_namespace() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let link = dir.path().join("nova-compute");
            symlink(which_sleep(), &link).unwrap();
            let child = Command::new("unshare")
                .args(["--mount", "--propagation", "private"])
                .arg(&link)
                .arg("300")
                .spawn()
                .unwrap();
            let fake = FakeNovaCompute { child, _dir: dir };
            fake.wait_for_exec();
            fake
        }

        /// Waits until the kernel shows the new command line: `spawn` may
        /// return while exec is still setting it up, and until then
        /// `/proc/PID/cmdline` reads empty.
        fn wait_for_exec(&self) {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !read_cmdline(self.pid()).is_some_and(|argv| looks_like_nova_compute(&argv)) {
                assert!(
                    Instant::now() < deadline,
                    "spawned process never showed its command line"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }

        fn pid(&self) -> u32 {
            self.child.id()
        }
    }

    impl Drop for FakeNovaCompute {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn which_sleep() -> PathBuf {
        ["/usr/bin/sleep", "/bin/sleep"]
            .iter()
            .map(PathBuf::from)
            .find(|path| path.exists())
            .expect("sleep not found in /usr/bin or /bin")
    }

    fn signal(pid: u32, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(pid as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Polls the process state until it equals `expected`; the kernel
    /// applies a stop asynchronously.
    fn wait_for_state(pid: u32, expected: &str) -> v1::Process {
        let argv = read_cmdline(pid).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let process = read_process(pid, &argv).unwrap();
            if process.state == expected || Instant::now() > deadline {
                return process;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn real_process_found_by_command_line() {
        let fake = FakeNovaCompute::start();
        let table = ProcessTable::scan();
        assert!(
            table.argv(fake.pid()).is_some(),
            "spawned process missing from scan"
        );

        let (process, argv) = find_nova_compute(fake.pid(), &table).unwrap();
        assert_eq!(process.pid, fake.pid());
        assert!(argv[0].ends_with("/nova-compute"), "{argv:?}");
        assert!(
            process.command_line.ends_with("/nova-compute 300"),
            "{}",
            process.command_line
        );
        assert!(process.rss_bytes > 0);
        assert!(table
            .entries()
            .iter()
            .any(|e| e.pid == fake.pid() && looks_like_nova_compute(&e.argv)));
    }

    #[test]
    fn search_without_unit_skips_other_mount_namespaces() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: creating a mount namespace needs root");
            return;
        }
        let foreign = FakeNovaCompute::start_in_other_mount_namespace();
        let table = ProcessTable::scan();

        let own_scope = search_nova_compute(&table, SearchScope::OwnMountNamespace);
        assert!(
            own_scope
                .as_ref()
                .is_none_or(|(process, _)| process.pid != foreign.pid()),
            "a nova-compute in another mount namespace was taken for this node's"
        );
        let any_scope = table
            .entries()
            .iter()
            .any(|entry| entry.pid == foreign.pid() && looks_like_nova_compute(&entry.argv));
        assert!(
            any_scope,
            "the foreign process is in the scan, so only the scope excluded it"
        );
    }

    #[test]
    fn search_finds_process_when_main_pid_is_runtime() {
        let fake = FakeNovaCompute::start();
        let table = ProcessTable::scan();
        // The test process plays `docker start -a nova_compute`.
        // Other tests run their own fake nova-compute at the same time, so
        // the search may return any of them.
        let own_pid = std::process::id();
        let (process, argv) = find_nova_compute(own_pid, &table).unwrap();
        assert_ne!(process.pid, own_pid);
        assert!(looks_like_nova_compute(&argv), "{argv:?}");
        drop(fake);
    }

    #[test]
    fn stopped_process_reports_t() {
        let fake = FakeNovaCompute::start();
        assert_eq!(wait_for_state(fake.pid(), "S").state, "S");

        signal(fake.pid(), rustix::process::Signal::STOP);
        let stopped = wait_for_state(fake.pid(), "T");
        assert_eq!(stopped.state, "T");
        assert_eq!(stopped.tracer_pid, 0);

        signal(fake.pid(), rustix::process::Signal::CONT);
        assert_eq!(wait_for_state(fake.pid(), "S").state, "S");
    }

    #[test]
    fn vanished_process_reads_as_none() {
        let mut child = Command::new(which_sleep()).arg("0").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        assert!(read_process(pid, &[]).is_none());
        assert!(read_cmdline(pid).is_none());
    }
}
