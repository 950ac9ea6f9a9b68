//! Live monitoring: raw lines from any source (the follower, the journal) into the
//! joiner and the fault tracker.

use crate::catalogue::Catalogue;
use crate::lines::Line;
use crate::record::Joiner;
use crate::tracker::{FaultSummary, FaultTracker, Observation};
use std::sync::Arc;
use time::UtcOffset;

/// Joins lines into records and keeps the fault state of one log stream.
///
/// A record is complete only when the next record line arrives, so the last
/// record of a burst would wait for the next burst. oslo.log writes a record and
/// its traceback in one write, so a caller that polls and gets no new line can
/// treat the open record as complete: call [`LogMonitor::flush`] then.
#[derive(Debug)]
pub struct LogMonitor {
    joiner: Joiner,
    tracker: FaultTracker,
}

impl LogMonitor {
    pub fn new(catalogue: Arc<Catalogue>, utc_offset: UtcOffset) -> Self {
        LogMonitor {
            joiner: Joiner::new(),
            tracker: FaultTracker::new(catalogue, utc_offset),
        }
    }

    /// Pushes one raw line (without its newline; any bytes). Returns what the
    /// record it completed changed, when that record matched a signature or a recovery.
    pub fn push_line(&mut self, line: &[u8], truncated_bytes: u64) -> Option<Observation> {
        let record = self.joiner.push_line(line, truncated_bytes)?;
        let observation = self.tracker.observe(record);
        let changed = !observation.classification.is_empty() || observation.silence.is_some();
        changed.then_some(observation)
    }

    /// Pushes lines returned by [`crate::Follower::poll`].
    pub fn push_lines(&mut self, lines: &[Line]) -> Vec<Observation> {
        lines
            .iter()
            .filter_map(|l| self.push_line(&l.bytes, l.truncated_bytes))
            .collect()
    }

    /// Completes the open record (see the type docs for when to call it).
    pub fn flush(&mut self) -> Option<Observation> {
        let record = self.joiner.finish()?;
        let observation = self.tracker.observe(record);
        (!observation.classification.is_empty()).then_some(observation)
    }

    /// Expires old faults, applies the silence rule at `now_utc_ms` and returns the state.
    pub fn summary(&mut self, now_utc_ms: i64) -> FaultSummary {
        self.tracker.expire(now_utc_ms);
        self.tracker.check_silence(now_utc_ms);
        self.tracker.summary(now_utc_ms)
    }

    pub fn tracker(&self) -> &FaultTracker {
        &self.tracker
    }

    /// Lines pushed so far.
    pub fn lines_read(&self) -> u64 {
        self.joiner.lines_read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::FaultKind;

    #[test]
    fn monitor_flush_completes_last_record() {
        let (catalogue, _) = Catalogue::shipped();
        let mut monitor = LogMonitor::new(Arc::new(catalogue), UtcOffset::UTC);
        let line = b"2025-07-09 20:26:53.557 7 CRITICAL nova [-] Unhandled error: oslo_config.cfg.ConfigFileValueError: Value for option ram is not valid";
        assert!(
            monitor.push_line(line, 0).is_none(),
            "the record is still open"
        );
        let observation = monitor.flush().expect("the flushed record matches");
        assert!(observation.classification.fault.is_some());
        let summary = monitor.summary(1_752_093_000_000);
        assert_eq!(summary.active[0].fault_kind, FaultKind::Configuration);
        assert!(!summary.restart.restart_helps);
    }
}
