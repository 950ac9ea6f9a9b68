//! Batches routine report writes: one transaction for all nodes per flush.
//!
//! Each SQLite commit with synchronous=FULL waits for an fsync, so writing
//! every report in its own transaction capped one controller at a few hundred
//! reports a second, and each agent's stream waited for its write. The fleet
//! in memory takes every report at once. A routine report (no unit
//! transitions, no events) only replaces the node's pending one here, and
//! the controller writes all pending reports in one transaction every
//! [`FLUSH_INTERVAL`]. A report with transitions or events is written at
//! once with its events and drops the node's older pending report. A crash
//! therefore loses at most one interval of routine reports, never an event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::store::LatestReport;

/// How often the pending routine reports are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// Per node: the newest routine report not yet written.
#[derive(Debug, Default)]
pub struct ReportBatch {
    pending: Mutex<HashMap<String, LatestReport>>,
}

impl ReportBatch {
    /// Keeps `report` as its node's pending report, replacing an older one.
    pub fn hold(&self, report: LatestReport) {
        let mut pending = self.lock();
        match pending.get(&report.node) {
            Some(held) if held.arrived_at_unix_ms > report.arrived_at_unix_ms => {}
            _ => {
                pending.insert(report.node.clone(), report);
            }
        }
    }

    /// Drops the node's pending report, because a newer one is being
    /// written directly.
    pub fn discard(&self, node: &str) {
        self.lock().remove(node);
    }

    /// Takes the node's pending report, if any, for a final write.
    pub fn take(&self, node: &str) -> Option<LatestReport> {
        self.lock().remove(node)
    }

    /// Takes every pending report, for one batched write.
    pub fn take_all(&self) -> Vec<LatestReport> {
        self.lock().drain().map(|(_, report)| report).collect()
    }

    /// Puts back reports whose write failed, unless a newer report for the
    /// node arrived meanwhile.
    pub fn restore(&self, reports: Vec<LatestReport>) {
        let mut pending = self.lock();
        for report in reports {
            pending.entry(report.node.clone()).or_insert(report);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, LatestReport>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str, arrived_at_unix_ms: i64) -> LatestReport {
        LatestReport {
            node: node.to_string(),
            arrived_at_unix_ms,
            ..LatestReport::default()
        }
    }

    fn arrival_times(mut reports: Vec<LatestReport>) -> Vec<(String, i64)> {
        reports.sort_by(|a, b| a.node.cmp(&b.node));
        reports
            .into_iter()
            .map(|r| (r.node, r.arrived_at_unix_ms))
            .collect()
    }

    #[test]
    fn batch_keeps_newest_report_per_node() {
        let batch = ReportBatch::default();
        batch.hold(report("c1", 10));
        batch.hold(report("c1", 30));
        batch.hold(report("c1", 20));
        batch.hold(report("c2", 15));
        assert_eq!(
            arrival_times(batch.take_all()),
            vec![("c1".to_string(), 30), ("c2".to_string(), 15)]
        );
        assert!(batch.take_all().is_empty(), "taking empties the batch");
    }

    #[test]
    fn batch_discard_and_take_one_node() {
        let batch = ReportBatch::default();
        batch.hold(report("c1", 10));
        batch.hold(report("c2", 10));
        batch.discard("c1");
        assert!(batch.take("c1").is_none());
        assert_eq!(batch.take("c2").map(|r| r.arrived_at_unix_ms), Some(10));
        assert!(batch.take_all().is_empty());
    }

    #[test]
    fn batch_restore_keeps_newer_arrivals() {
        let batch = ReportBatch::default();
        batch.hold(report("c1", 10));
        batch.hold(report("c2", 10));
        let failed = batch.take_all();
        batch.hold(report("c1", 20));
        batch.restore(failed);
        assert_eq!(
            arrival_times(batch.take_all()),
            vec![("c1".to_string(), 20), ("c2".to_string(), 10)]
        );
    }
}
