//! The log watch: follows nova-compute's log file and journal, classifies
//! their records with the signature catalogue and keeps the faults active
//! now for every report.
//!
//! One thread polls the log file every [`POLL_INTERVAL`] and supervises
//! journalctl, whose output a second thread reads. Both feed one [`LogState`]
//! behind a mutex, from which the report builder takes a snapshot. The work
//! is blocking file and pipe I/O, so it runs on plain threads instead of the
//! async runtime's.
//!
//! How journalctl runs depends on where nova-compute logs. Without a log
//! file, the journal contains every record, and a `journalctl --follow` stays
//! running. While a log file is followed, the journal only adds what Python
//! prints before logging is set up, so journalctl runs briefly instead: when
//! the journal files change (at most every [`JOURNAL_RUN_MIN_GAP`]; a unit
//! that fails or restarts always writes to the journal) and every
//! [`JOURNAL_RUN_INTERVAL`], each run bounded by [`JOURNAL_RUN_TIMEOUT`] and
//! [`JOURNAL_RUN_MAX_ENTRIES`]. No journalctl process stays resident then.
//!
//! Positions persist in the state directory (`log-position.json` for the
//! file, `journal.cursor` for the journal), so a restarted agent resumes
//! where it stopped. On the first start both sources begin at their end:
//! a node's log may hold months of history whose faults were fixed long
//! ago, and reading gigabytes of it would delay the first report. The
//! `classify` subcommand reads old logs on request.

mod journal;
mod path;
mod recent;
mod state;

use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use novamedic_logs::{Catalogue, Follower, LoadError, StartAt};
use novamedic_proto::v1;
use time::UtcOffset;
use tokio::sync::watch;

use crate::collect::nova_conf::NovaConfig;
use crate::collect::process::{self, ProcessTable};
use crate::config::AgentConfig;
use crate::logsearch::SearchSource;
use crate::systemd::UnitObservation;

pub use journal::{parse_entry, JournalEntry};
pub use path::{choose_log_file, default_log_files, LogFileChoice, DEFAULT_LOG_FILES};
pub use recent::read_recent;
pub use state::{LogState, SourceStatus};

/// Interval between two reads of the log file. A fault reaches the next
/// report at most this much later than it was written.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Interval between two looks for nova-compute's log file and unit once
/// both are known (its command line may change at a restart).
const RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// Interval between looks while the log file or the unit is still unknown.
const RESOLVE_INTERVAL_UNKNOWN: Duration = Duration::from_secs(2);

/// Delay before journalctl is started again after it exited or failed to start.
const JOURNAL_RETRY_DELAY: Duration = Duration::from_secs(30);

/// Shortest interval between two short journalctl runs, so a busy journal
/// (any unit's entries change its files) costs at most one run this often.
pub const JOURNAL_RUN_MIN_GAP: Duration = Duration::from_secs(5);

/// Interval of short journalctl runs while the journal files show no change,
/// in case a change went unseen (a journal in an unusual directory).
pub const JOURNAL_RUN_INTERVAL: Duration = Duration::from_secs(30);

/// Longest time one short journalctl run may take; a longer one is ended,
/// its entries read so far are kept and the next run goes on after them.
pub const JOURNAL_RUN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long the first short run, which has no cursor yet, follows the
/// journal from its end. Entries after it are read by the later runs.
const JOURNAL_FIRST_RUN_TIMEOUT: Duration = Duration::from_secs(1);

/// Most entries one short journalctl run reads; the next run, started at
/// once, goes on after them.
pub const JOURNAL_RUN_MAX_ENTRIES: usize = 5_000;

/// File of the log position, under the state directory.
pub const POSITION_FILE: &str = "log-position.json";

/// File naming the log file that the position belongs to, under the state
/// directory.
const POSITION_PATH_FILE: &str = "log-position.path";

/// File of the journal cursor, under the state directory.
pub const JOURNAL_CURSOR_FILE: &str = "journal.cursor";

/// Settings of the log watch, taken from the agent's config.
#[derive(Debug, Clone)]
pub struct LogWatchSettings {
    /// The agent's `nova_log_file`; `None` finds the file.
    pub log_file: Option<PathBuf>,
    /// Files tried when neither the config nor nova-compute names one.
    pub default_log_files: Vec<PathBuf>,
    pub state_dir: PathBuf,
    /// Directory of operator signature files.
    pub signatures_dir: PathBuf,
    /// The `journalctl` binary.
    pub journalctl: PathBuf,
    pub poll_interval: Duration,
    /// The node's UTC offset: oslo.log writes local time without a zone.
    pub utc_offset: UtcOffset,
}

impl LogWatchSettings {
    pub fn from_config(config: &AgentConfig, utc_offset: UtcOffset) -> Self {
        LogWatchSettings {
            log_file: config.nova_log_file.clone(),
            default_log_files: default_log_files(),
            state_dir: config.state_dir.clone(),
            signatures_dir: config.signatures_dir.clone(),
            journalctl: PathBuf::from("journalctl"),
            poll_interval: POLL_INTERVAL,
            utc_offset,
        }
    }
}

/// The log file and unit the log watch reads, found again at every resolve.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// The log file that nova-compute's command line or nova.conf names.
    pub named_log_file: Option<PathBuf>,
    /// nova-compute's systemd unit, for its journal.
    pub unit: Option<String>,
}

/// Finds the current [`Targets`]; called from the watch thread.
pub type TargetResolver = Box<dyn FnMut() -> Targets + Send>;

/// Returns a resolver that reads nova-compute's unit from the unit watch and
/// its log file from its command line and nova.conf.
pub fn node_resolver(
    config: &AgentConfig,
    unit_rx: watch::Receiver<UnitObservation>,
) -> TargetResolver {
    let config = config.clone();
    Box::new(move || {
        let (observed_unit, main_pid) = match &*unit_rx.borrow() {
            UnitObservation::Known(snapshot) => (Some(snapshot.unit.clone()), snapshot.main_pid),
            UnitObservation::Unknown { unit, .. } => (unit.clone(), 0),
        };
        let unit = config.nova_compute_unit.clone().or(observed_unit);
        // The scan is only needed when the config does not name the file.
        let named_log_file = if config.nova_log_file.is_some() {
            None
        } else {
            let table = ProcessTable::scan();
            let argv = process::find_nova_compute(main_pid, &table).map(|(_, argv)| argv);
            NovaConfig::load(argv.as_deref(), &config).log_file()
        };
        Targets {
            named_log_file,
            unit,
        }
    })
}

/// Loads the shipped catalogue and the operator files in `dir`, logging each
/// file that failed.
pub fn load_catalogue(dir: &Path) -> (Arc<Catalogue>, Vec<LoadError>) {
    let (catalogue, errors) = Catalogue::load(Some(dir));
    for error in &errors {
        tracing::warn!(
            file = %error.file,
            signature_id = error.signature_id.as_deref().unwrap_or(""),
            error = %error.error,
            "signature file not loaded; using the shipped catalogue and the valid files"
        );
    }
    (Arc::new(catalogue), errors)
}

struct Shared {
    state: Mutex<LogState>,
    /// The catalogue and zone the records are classified with, for log
    /// searches.
    catalogue: Arc<Catalogue>,
    utc_offset: UtcOffset,
    stop: AtomicBool,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Handle of a running log watch; clones share it.
#[derive(Clone)]
pub struct LogWatch {
    shared: Arc<Shared>,
}

impl LogWatch {
    /// Loads the catalogue and starts the watch thread.
    pub fn start(settings: LogWatchSettings, resolver: TargetResolver) -> std::io::Result<Self> {
        let (catalogue, errors) = load_catalogue(&settings.signatures_dir);
        let shared = Arc::new(Shared {
            state: Mutex::new(LogState::new(
                catalogue.clone(),
                errors,
                settings.utc_offset,
            )),
            catalogue,
            utc_offset: settings.utc_offset,
            stop: AtomicBool::new(false),
            thread: Mutex::new(None),
        });
        let mut watcher = Watcher::new(settings, shared.clone(), resolver);
        let handle = thread::Builder::new()
            .name("log-watch".to_string())
            .spawn(move || watcher.run())?;
        *shared.thread.lock().expect("log watch lock poisoned") = Some(handle);
        Ok(LogWatch { shared })
    }

    /// Returns the report's log section at `now_unix_ms`.
    pub fn report(&self, now_unix_ms: i64) -> v1::LogHealth {
        lock(&self.shared.state).to_wire(now_unix_ms)
    }

    /// Returns the file a log search reads now: the one the watch follows.
    pub fn search_source(&self) -> SearchSource {
        let state = lock(&self.shared.state);
        SearchSource {
            log_file: state.status.log_file.clone(),
            problem: state.status.log_file_problem.clone(),
            catalogue: self.shared.catalogue.clone(),
            utc_offset: self.shared.utc_offset,
        }
    }

    /// Stops the watch thread and journalctl, and waits for them.
    pub fn stop(&self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        let handle = self
            .shared
            .thread
            .lock()
            .expect("log watch lock poisoned")
            .take();
        if let Some(handle) = handle {
            if handle.join().is_err() {
                tracing::error!("the log watch thread panicked");
            }
        }
    }
}

fn lock(state: &Mutex<LogState>) -> MutexGuard<'_, LogState> {
    // A panic while holding the lock leaves counts that are at worst off by
    // one record; reporting them beats stopping all reports.
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How journalctl reads the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JournalMode {
    /// One `journalctl --follow` kept running: nova-compute logs to no file.
    Follow,
    /// Short runs: a log file is followed, see the module documentation.
    Runs,
}

/// A running journalctl and the thread reading it.
struct JournalChild {
    child: Child,
    reader: Option<JoinHandle<()>>,
    unit: String,
    from_cursor: bool,
    mode: JournalMode,
    /// When a short run is ended if it has not exited.
    deadline: Option<Instant>,
    /// Set by the reader when it stopped at [`JOURNAL_RUN_MAX_ENTRIES`].
    more: Arc<AtomicBool>,
}

/// When the next short journalctl run is due.
///
/// NOTE: a change of nova-compute's unit state starts a run through the
/// journal files (systemd logs every start, exit and failure there), not
/// through the unit watch, which [`LogWatch::start`] does not receive.
struct RunSchedule {
    next_at: Instant,
    last_started: Option<Instant>,
    stamp: journal::JournalStamp,
    /// The journal files changed since the last run.
    pending: bool,
    /// Unix time of the first run without a cursor: later runs without one
    /// read from then, so the first start still begins at the journal's end.
    since_unix_seconds: Option<i64>,
}

impl RunSchedule {
    fn new() -> Self {
        RunSchedule {
            next_at: Instant::now(),
            last_started: None,
            stamp: journal::JournalStamp::read(),
            pending: false,
            since_unix_seconds: None,
        }
    }

    /// Whether a run is due now; reads the journal files' stamp.
    fn due(&mut self, now: Instant) -> bool {
        let stamp = journal::JournalStamp::read();
        if stamp != self.stamp {
            self.stamp = stamp;
            self.pending = true;
        }
        let gap_over = self
            .last_started
            .is_none_or(|at| now >= at + JOURNAL_RUN_MIN_GAP);
        gap_over && (self.pending || now >= self.next_at)
    }

    fn started(&mut self, now: Instant) {
        self.last_started = Some(now);
        self.next_at = now + JOURNAL_RUN_INTERVAL;
        self.pending = false;
    }
}

impl JournalChild {
    /// Ends journalctl (a child this agent started) and waits for the reader,
    /// which saves the cursor of the last entry it read.
    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
    }
}

/// State of the watch thread.
struct Watcher {
    settings: LogWatchSettings,
    shared: Arc<Shared>,
    resolver: TargetResolver,
    targets: Targets,
    next_resolve: Instant,
    follower: Option<Follower>,
    journal: Option<JournalChild>,
    journal_retry_at: Option<Instant>,
    runs: RunSchedule,
}

impl Watcher {
    fn new(settings: LogWatchSettings, shared: Arc<Shared>, resolver: TargetResolver) -> Self {
        Watcher {
            settings,
            shared,
            resolver,
            targets: Targets::default(),
            next_resolve: Instant::now(),
            follower: None,
            journal: None,
            journal_retry_at: None,
            runs: RunSchedule::new(),
        }
    }

    fn run(&mut self) {
        if let Err(err) = std::fs::create_dir_all(&self.settings.state_dir) {
            tracing::warn!(path = %self.settings.state_dir.display(), error = %err,
                "cannot create the state directory; log positions will not survive a restart");
        }
        while !self.shared.stop.load(Ordering::Relaxed) {
            if Instant::now() >= self.next_resolve {
                self.resolve();
            }
            self.poll_file();
            self.supervise_journal();
            thread::sleep(self.settings.poll_interval);
        }
        self.stop_journal();
        lock(&self.shared.state).flush_journal();
    }

    fn stop_journal(&mut self) {
        if let Some(journal) = self.journal.take() {
            journal.stop();
        }
    }

    fn resolve(&mut self) {
        self.targets = (self.resolver)();
        self.update_follower();
        let known = self.follower.is_some() && self.targets.unit.is_some();
        let interval = if known {
            RESOLVE_INTERVAL
        } else {
            RESOLVE_INTERVAL_UNKNOWN
        };
        self.next_resolve = Instant::now() + interval;
    }

    fn update_follower(&mut self) {
        let choice = choose_log_file(
            self.settings.log_file.as_deref(),
            self.targets.named_log_file.as_deref(),
            &self.settings.default_log_files,
            Path::exists,
        );
        let (path, origin) = match choice {
            LogFileChoice::Chosen { path, origin } => (path, origin),
            LogFileChoice::None { problem } => {
                // A file followed so far stays followed: it may be rotated away
                // for a moment, which the follower handles.
                if self.follower.is_none() {
                    lock(&self.shared.state).status.log_file_problem = problem;
                }
                return;
            }
        };
        if self.follower.as_ref().map(Follower::path) == Some(path.as_path()) {
            return;
        }
        // A device, pipe or directory never behaves like a log: /dev/zero
        // would read as an endless truncated file. A missing file is fine,
        // since nova-compute creates it when it starts.
        if let Ok(metadata) = std::fs::metadata(&path) {
            if !metadata.is_file() {
                let problem = format!(
                    "{} ({origin}) is not a regular file; set nova_log_file to nova-compute's log file",
                    path.display()
                );
                let mut state = lock(&self.shared.state);
                if state.status.log_file_problem != problem {
                    tracing::warn!(path = %path.display(), origin, "log file is not a regular file; not following it");
                    state.status.log_file_problem = problem;
                }
                return;
            }
        }
        tracing::info!(path = %path.display(), origin, "following nova-compute's log file");
        self.follower = Some(self.new_follower(&path));
        let mut state = lock(&self.shared.state);
        state.flush_file();
        state.status.log_file = Some(path);
        state.status.log_file_problem.clear();
    }

    /// Creates the follower of `path`, dropping a saved position that
    /// belongs to another file: the follower would take it for a rotation
    /// and read `path` from its start.
    fn new_follower(&self, path: &Path) -> Follower {
        let state_dir = &self.settings.state_dir;
        let position = state_dir.join(POSITION_FILE);
        let owner_file = state_dir.join(POSITION_PATH_FILE);
        let owner = std::fs::read_to_string(&owner_file).unwrap_or_default();
        let path_text = path.display().to_string();
        if owner != path_text {
            let _ = std::fs::remove_file(&position);
            if let Err(err) = std::fs::write(&owner_file, &path_text) {
                tracing::warn!(path = %owner_file.display(), error = %err,
                    "cannot record which log file the position belongs to");
            }
        }
        Follower::new(path, Some(position), StartAt::End)
    }

    fn poll_file(&mut self) {
        let Some(follower) = self.follower.as_mut() else {
            return;
        };
        let result = follower.poll();
        let mut state = lock(&self.shared.state);
        match result {
            Ok(lines) if lines.is_empty() => {
                state.flush_file();
                let problem = if follower.path().exists() {
                    String::new()
                } else {
                    format!(
                        "{} does not exist yet; nova-compute creates it when it starts",
                        follower.path().display()
                    )
                };
                state.status.log_file_problem = problem;
            }
            Ok(lines) => {
                state.push_file_lines(&lines);
                state.status.log_file_problem.clear();
            }
            Err(err) => {
                let problem = format!("cannot read {}: {err}", follower.path().display());
                if state.status.log_file_problem != problem {
                    tracing::warn!(path = %follower.path().display(), error = %err,
                        "cannot read nova-compute's log file");
                }
                state.status.log_file_problem = problem;
            }
        }
        state.flush_journal_if_idle(self.settings.poll_interval);
    }

    fn supervise_journal(&mut self) {
        let Some(unit) = self.targets.unit.clone() else {
            let mut state = lock(&self.shared.state);
            state.status.journal_unit = None;
            state.status.journal_problem =
                "nova-compute's systemd unit is unknown, so its journal is not read".to_string();
            return;
        };
        let mode = if self.follower.is_some() {
            JournalMode::Runs
        } else {
            JournalMode::Follow
        };
        if let Some(journal) = self.journal.as_mut() {
            if journal.unit == unit && journal.mode == mode {
                match journal.child.try_wait() {
                    Ok(None) => {
                        if journal.deadline.is_some_and(|at| Instant::now() >= at) {
                            tracing::debug!("journalctl run took too long; ending it");
                            self.stop_journal();
                        }
                        return;
                    }
                    // A run that ends, or that the reader cut short (SIGPIPE),
                    // did its work; only an error exit is a problem.
                    Ok(Some(status))
                        if mode == JournalMode::Runs && matches!(status.code(), Some(0) | None) =>
                    {
                        if journal.more.load(Ordering::Relaxed) {
                            self.runs.pending = true;
                            self.runs.last_started = None;
                        }
                        self.stop_journal();
                        return;
                    }
                    Ok(Some(status)) => {
                        let problem = journal::describe_exit(&mut journal.child, status);
                        let from_cursor = journal.from_cursor;
                        self.stop_journal();
                        self.journal_failed(problem, from_cursor);
                        return;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "cannot check on journalctl");
                        return;
                    }
                }
            }
            self.stop_journal();
        }
        if self.journal_retry_at.is_some_and(|at| Instant::now() < at) {
            return;
        }
        match mode {
            JournalMode::Follow => self.start_journal(unit, mode),
            JournalMode::Runs => {
                let now = Instant::now();
                if self.runs.due(now) {
                    self.runs.started(now);
                    self.start_journal(unit, mode);
                }
            }
        }
    }

    /// Records why journalctl stopped and when to try again. A saved cursor
    /// that journalctl rejected is dropped, or every retry would fail alike.
    fn journal_failed(&mut self, problem: String, from_cursor: bool) {
        tracing::warn!(problem = %problem, "journalctl stopped; starting it again later");
        if from_cursor {
            let _ = std::fs::remove_file(self.settings.state_dir.join(JOURNAL_CURSOR_FILE));
        }
        lock(&self.shared.state).status.journal_problem = problem;
        self.journal_retry_at = Some(Instant::now() + JOURNAL_RETRY_DELAY);
    }

    /// Arguments of the next journalctl and how long it may run (`None`:
    /// until stopped). The first short run without a cursor follows from the
    /// journal's end for [`JOURNAL_FIRST_RUN_TIMEOUT`]; later runs without a
    /// cursor read from when it started.
    fn journal_args(
        &mut self,
        unit: &str,
        cursor: Option<&str>,
        mode: JournalMode,
    ) -> (Vec<String>, Option<Duration>) {
        match (mode, cursor, self.runs.since_unix_seconds) {
            (JournalMode::Follow, _, _) => (journal::follow_args(unit, cursor), None),
            (JournalMode::Runs, None, None) => {
                self.runs.since_unix_seconds = Some(crate::transport::unix_ms_now() / 1000);
                let args = journal::follow_args(unit, None);
                (args, Some(JOURNAL_FIRST_RUN_TIMEOUT))
            }
            (JournalMode::Runs, _, since) => {
                let args = journal::once_args(unit, cursor, since.unwrap_or_default());
                (args, Some(JOURNAL_RUN_TIMEOUT))
            }
        }
    }

    fn start_journal(&mut self, unit: String, mode: JournalMode) {
        let cursor_file =
            journal::CursorFile::new(self.settings.state_dir.join(JOURNAL_CURSOR_FILE));
        let cursor = cursor_file.load();
        let (args, timeout) = self.journal_args(&unit, cursor.as_deref(), mode);
        let mut child = match journal::spawn(&self.settings.journalctl, &args) {
            Ok(child) => child,
            Err(err) => {
                let problem = journal::describe_spawn_error(&self.settings.journalctl, &err);
                self.journal_failed(problem, false);
                return;
            }
        };
        if mode == JournalMode::Follow {
            tracing::info!(unit = %unit, resumed = cursor.is_some(), "following nova-compute's journal");
        } else {
            // Not at info: the agent's own entries change the journal files,
            // and each run would be followed by another.
            tracing::debug!(unit = %unit, resumed = cursor.is_some(), "reading nova-compute's journal");
        }
        let stdout = child.stdout.take().expect("journalctl's stdout is piped");
        let shared = self.shared.clone();
        let reader_unit = unit.clone();
        let more = Arc::new(AtomicBool::new(false));
        let limit = ReadLimit {
            max_entries: (mode == JournalMode::Runs).then_some(JOURNAL_RUN_MAX_ENTRIES),
            more: more.clone(),
        };
        let reader = thread::Builder::new()
            .name("journal-reader".to_string())
            .spawn(move || read_journal(stdout, &reader_unit, &shared, &cursor_file, limit));
        let reader = match reader {
            Ok(reader) => reader,
            Err(err) => {
                let _ = child.kill();
                let _ = child.wait();
                self.journal_failed(format!("cannot start the journal reader: {err}"), false);
                return;
            }
        };
        {
            let mut state = lock(&self.shared.state);
            state.status.journal_unit = Some(unit.clone());
            state.status.journal_problem.clear();
        }
        self.journal_retry_at = None;
        self.journal = Some(JournalChild {
            child,
            reader: Some(reader),
            unit,
            from_cursor: cursor.is_some(),
            mode,
            deadline: timeout.map(|timeout| Instant::now() + timeout),
            more,
        });
    }
}

/// Where a reader stops before journalctl's output ends.
struct ReadLimit {
    /// `None` reads until the output ends.
    max_entries: Option<usize>,
    /// Set when the reader stopped at `max_entries`.
    more: Arc<AtomicBool>,
}

/// Feeds the entries of `unit` from journalctl's output to the state until
/// the output ends or `limit` is reached, and saves the cursor at the end of
/// every burst and when it stops.
fn read_journal(
    stdout: std::process::ChildStdout,
    unit: &str,
    shared: &Shared,
    cursor_file: &journal::CursorFile,
    limit: ReadLimit,
) {
    let mut unsaved: Option<String> = None;
    let mut entries = 0_usize;
    journal::read_entries_while(BufReader::new(stdout), |entry, burst_end| {
        // Entries that systemd writes about the unit carry its own unit.
        if entry.unit.as_deref() == Some(unit) {
            lock(&shared.state).push_journal_entry(&entry);
        }
        if entry.cursor.is_some() {
            unsaved = entry.cursor;
        }
        if burst_end {
            save_cursor(cursor_file, unsaved.take());
        }
        entries += 1;
        let go_on = limit.max_entries.is_none_or(|max| entries < max);
        if !go_on {
            limit.more.store(true, Ordering::Relaxed);
        }
        go_on
    });
    save_cursor(cursor_file, unsaved);
}

fn save_cursor(cursor_file: &journal::CursorFile, cursor: Option<String>) {
    if let Some(cursor) = cursor {
        if let Err(err) = cursor_file.save(&cursor) {
            tracing::warn!(error = %err, "cannot save the journal cursor");
        }
    }
}

#[cfg(test)]
mod tests;

/// Short journalctl runs against a stand-in journalctl that prints one entry
/// and exits, as a real one without `--follow` does.
#[cfg(test)]
mod run_tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn log_file_node_reads_journal_by_short_runs() {
        let dir = tempfile::tempdir().unwrap();
        let log_file = dir.path().join("nova-compute.log");
        std::fs::write(&log_file, "").unwrap();
        let args_file = dir.path().join("journalctl.args");
        let script = dir.path().join("journalctl");
        let entry = r#"{"__CURSOR":"c=1","_SYSTEMD_UNIT":"nova-compute.service","MESSAGE":"x"}"#;
        let text = format!(
            "#!/bin/sh\necho \"$@\" >> '{}'\necho '{entry}'\n",
            args_file.display()
        );
        std::fs::write(&script, text).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let settings = LogWatchSettings {
            log_file: Some(log_file),
            default_log_files: Vec::new(),
            state_dir: dir.path().join("state"),
            signatures_dir: dir.path().join("signatures.d"),
            journalctl: script,
            poll_interval: Duration::from_millis(20),
            utc_offset: UtcOffset::UTC,
        };
        let resolver = || Targets {
            named_log_file: None,
            unit: Some("nova-compute.service".to_string()),
        };
        let cursor_file = settings.state_dir.join(JOURNAL_CURSOR_FILE);
        let read_args = || std::fs::read_to_string(&args_file).unwrap_or_default();

        let watch = LogWatch::start(settings.clone(), Box::new(resolver)).unwrap();
        wait_until("the first run's cursor", || {
            std::fs::read_to_string(&cursor_file).is_ok_and(|c| c == "c=1")
        });
        // Wait past the first run's bound: an exit is not reported as a problem.
        thread::sleep(JOURNAL_FIRST_RUN_TIMEOUT + Duration::from_millis(200));
        let report = watch.report(0);
        assert_eq!(report.journal_problem, "");
        watch.stop();

        let watch = LogWatch::start(settings, Box::new(resolver)).unwrap();
        wait_until("the second start's run", || {
            read_args().lines().count() == 2
        });
        thread::sleep(Duration::from_millis(200));
        let report = watch.report(0);
        watch.stop();
        let args: Vec<String> = read_args().lines().map(String::from).collect();
        assert!(args[1].contains("--after-cursor=c=1"), "{args:?}");
        assert!(!args[1].contains("--follow"), "{args:?}");
        assert_eq!(report.journal_problem, "");
    }
}
