//! The fault state of nova-compute's log: one tracker fed by the log file and
//! the journal.
//!
//! The two sources get a joiner each, because records must not be joined
//! across sources: a journal line arriving between two file lines would
//! otherwise become part of a file record. Both feed one
//! [`FaultTracker`], so a fault seen in either counts once and the restart
//! verdict covers both.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use novamedic_logs::header::parse_header;
use novamedic_logs::tracker::ActiveFault;
use novamedic_logs::{Catalogue, FaultSummary, FaultTracker, Joiner, Line, LoadError};
use novamedic_proto::v1;
use time::UtcOffset;

use super::journal::JournalEntry;

/// Where the log comes from, and why a source is missing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStatus {
    pub log_file: Option<PathBuf>,
    pub log_file_problem: String,
    pub journal_unit: Option<String>,
    pub journal_problem: String,
}

/// Joiners and the fault tracker of nova-compute's log.
pub struct LogState {
    tracker: FaultTracker,
    file_joiner: Joiner,
    journal_joiner: Joiner,
    /// Joins nothing: turns one bare journal line into a record of its own.
    single_line: Joiner,
    utc_offset: UtcOffset,
    catalogue_errors: Vec<LoadError>,
    pub status: SourceStatus,
    lines_read: u64,
    /// When the latest journal entry arrived, while its record may be open.
    journal_pushed_at: Option<Instant>,
}

impl LogState {
    pub fn new(
        catalogue: Arc<Catalogue>,
        catalogue_errors: Vec<LoadError>,
        utc_offset: UtcOffset,
    ) -> Self {
        LogState {
            tracker: FaultTracker::new(catalogue, utc_offset),
            file_joiner: Joiner::new(),
            journal_joiner: Joiner::new(),
            single_line: Joiner::new(),
            utc_offset,
            catalogue_errors,
            status: SourceStatus::default(),
            lines_read: 0,
            journal_pushed_at: None,
        }
    }

    /// Pushes lines read from the log file.
    pub fn push_file_lines(&mut self, lines: &[Line]) {
        self.lines_read += lines.len() as u64;
        for line in lines {
            if let Some(record) = self
                .file_joiner
                .push_line(&line.bytes, line.truncated_bytes)
            {
                self.tracker.observe(record);
            }
        }
    }

    /// Completes the open file record; call it when a poll found no new line
    /// (oslo.log writes a record and its traceback in one write).
    pub fn flush_file(&mut self) {
        if let Some(record) = self.file_joiner.finish() {
            self.tracker.observe(record);
        }
    }

    /// Pushes one journal entry of nova-compute's unit.
    ///
    /// An oslo.log record line is joined like a file line, unless a log file
    /// is followed: nova-compute then writes its records to the file, and a
    /// copy on standard error (`use_stderr = true`) would count every fault
    /// twice. A line without an oslo.log header is what Python itself wrote,
    /// such as a traceback before logging was set up. The joiner would append
    /// it to the open record, where a record of level INFO hides it from the
    /// signatures, so it becomes a record of its own, stamped with the
    /// journal's receive time.
    pub fn push_journal_entry(&mut self, entry: &JournalEntry) {
        self.journal_pushed_at = Some(Instant::now());
        for line in entry.message.split(|&b| b == b'\n') {
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            self.lines_read += 1;
            let text = String::from_utf8_lossy(line);
            if parse_header(&text).is_some() {
                if self.status.log_file.is_none() {
                    if let Some(record) = self.journal_joiner.push_line(line, 0) {
                        self.tracker.observe(record);
                    }
                }
                continue;
            }
            self.observe_bare_line(line, entry.realtime_us);
        }
    }

    /// Completes the open journal record (see [`LogState::flush_file`]).
    pub fn flush_journal(&mut self) {
        self.journal_pushed_at = None;
        if let Some(record) = self.journal_joiner.finish() {
            self.tracker.observe(record);
        }
    }

    /// Completes the open journal record when no entry arrived for `idle`.
    pub fn flush_journal_if_idle(&mut self, idle: Duration) {
        if self
            .journal_pushed_at
            .is_some_and(|at| at.elapsed() >= idle)
        {
            self.flush_journal();
        }
    }

    fn observe_bare_line(&mut self, line: &[u8], realtime_us: Option<i64>) {
        let _ = self.single_line.push_line(line, 0);
        let Some(record) = self.single_line.finish() else {
            return;
        };
        let mut record = record.clone();
        // Without a time the tracker would date the record at the last one
        // it saw, or at 1970 before any, and expire it at once.
        let utc_ms = realtime_us
            .map(|us| us.div_euclid(1000))
            .unwrap_or_else(crate::transport::unix_ms_now);
        record.local_ms = Some(utc_ms + i64::from(self.utc_offset.whole_seconds()) * 1000);
        self.tracker.observe(&record);
    }

    /// Expires old faults, applies the silence rule at `now_utc_ms` and
    /// returns the state.
    pub fn summary(&mut self, now_utc_ms: i64) -> FaultSummary {
        self.tracker.expire(now_utc_ms);
        self.tracker.check_silence(now_utc_ms);
        self.tracker.summary(now_utc_ms)
    }

    /// Returns the report's log section at `now_utc_ms`.
    pub fn to_wire(&mut self, now_utc_ms: i64) -> v1::LogHealth {
        let summary = self.summary(now_utc_ms);
        v1::LogHealth {
            log_file: path_text(&self.status.log_file),
            log_file_problem: self.status.log_file_problem.clone(),
            journal_unit: self.status.journal_unit.clone().unwrap_or_default(),
            journal_problem: self.status.journal_problem.clone(),
            active_faults: summary.active.iter().map(fault_to_wire).collect(),
            counts: summary
                .counts
                .iter()
                .map(|count| v1::FaultKindCount {
                    fault_kind: count.fault_kind.as_str().to_string(),
                    last_5_minutes: count.last_5_minutes,
                    last_hour: count.last_hour,
                })
                .collect(),
            restart: Some(v1::LogRestartVerdict {
                restart_helps: summary.restart.restart_helps,
                reason: summary.restart.reason.clone(),
                vetoed_by: summary.restart.vetoed_by.clone().unwrap_or_default(),
            }),
            catalogue_errors: self
                .catalogue_errors
                .iter()
                .map(|err| v1::SignatureLoadError {
                    file: err.file.clone(),
                    signature_id: err.signature_id.clone().unwrap_or_default(),
                    error: err.error.clone(),
                })
                .collect(),
            lines_read: self.lines_read,
        }
    }
}

fn path_text(path: &Option<PathBuf>) -> String {
    path.as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn fault_to_wire(fault: &ActiveFault) -> v1::LogFault {
    v1::LogFault {
        signature_id: fault.signature_id.clone(),
        fault_kind: fault.fault_kind.as_str().to_string(),
        severity: fault.severity.as_str().to_string(),
        first_seen_unix_ms: fault.first_seen_utc_ms,
        last_seen_unix_ms: fault.last_seen_utc_ms,
        count: fault.count,
        restart_helps: fault.restart_helps,
        restart_reason: fault.restart_reason.clone(),
        advice: fault.advice.clone(),
        sample: fault.sample.clone(),
        instance_uuids: fault.instance_uuids.iter().cloned().collect(),
        window_seconds: fault.window_seconds,
    }
}
