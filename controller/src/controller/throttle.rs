//! Limits how often a node's routine reports are written to the database.
//!
//! Every report commits one SQLite transaction with synchronous=FULL, a few
//! hundred a second at best, so one agent sending thousands of reports a
//! second would queue writes for minutes and delay everyone else's. The
//! fleet in memory takes every report; the database gets a node's latest
//! report at most once per [`MIN_SAVE_INTERVAL_MS`], except that a report with
//! unit transitions or one that caused events (health or unit state changes)
//! is always written at once, with its events.

use std::collections::HashMap;
use std::sync::Mutex;

use novamedic_proto::v1;

/// Shortest time between two routine report writes for one node.
/// NOTE: at the agents' 10 s interval every report is still written, one
/// fsync'd transaction each, and a stream reads its next report only after
/// its write. On a two-core VM that held 1 000 to 2 500 agents with a report
/// lag p99 under 1 s, and 5 000 fell behind (BENCHMARKS.md, "Fleet").
/// Writing all routine reports in one transaction per second would lift
/// that limit.
pub const MIN_SAVE_INTERVAL_MS: i64 = 1000;

/// A report held in memory and not yet written.
#[derive(Debug)]
pub struct UnsavedReport {
    pub report: v1::NodeReport,
    pub health: v1::Health,
    pub arrived_at_unix_ms: i64,
}

#[derive(Debug, Default)]
struct NodeWrites {
    last_saved_unix_ms: Option<i64>,
    unsaved: Option<UnsavedReport>,
}

/// Per node: when its report was last written and the newest one since.
#[derive(Debug, Default)]
pub struct ReportThrottle {
    nodes: Mutex<HashMap<String, NodeWrites>>,
}

impl ReportThrottle {
    /// Decides whether `report` is written now. Returns it back when it is;
    /// otherwise keeps it as the node's newest unsaved report.
    pub fn admit(
        &self,
        node: &str,
        unsaved: UnsavedReport,
        must_save: bool,
    ) -> Option<UnsavedReport> {
        let mut nodes = self.lock();
        let writes = nodes.entry(node.to_string()).or_default();
        let now = unsaved.arrived_at_unix_ms;
        let due = writes
            .last_saved_unix_ms
            .is_none_or(|last| now - last >= MIN_SAVE_INTERVAL_MS);
        if must_save || due {
            writes.last_saved_unix_ms = Some(now);
            writes.unsaved = None;
            Some(unsaved)
        } else {
            writes.unsaved = Some(unsaved);
            None
        }
    }

    /// Takes the node's unsaved report, if any, for a final write.
    pub fn take(&self, node: &str) -> Option<UnsavedReport> {
        self.lock().get_mut(node)?.unsaved.take()
    }

    /// Takes every node's unsaved report, for the final writes at shutdown.
    pub fn take_all(&self) -> Vec<(String, UnsavedReport)> {
        self.lock()
            .iter_mut()
            .filter_map(|(node, writes)| Some((node.clone(), writes.unsaved.take()?)))
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, NodeWrites>> {
        self.nodes
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(arrived_at_unix_ms: i64) -> UnsavedReport {
        UnsavedReport {
            report: v1::NodeReport {
                sequence: u64::try_from(arrived_at_unix_ms).unwrap(),
                ..Default::default()
            },
            health: v1::Health::default(),
            arrived_at_unix_ms,
        }
    }

    #[test]
    fn routine_reports_are_written_once_a_second() {
        let throttle = ReportThrottle::default();
        assert!(throttle.admit("c1", at(10_000), false).is_some(), "first");
        assert!(throttle.admit("c1", at(10_400), false).is_none());
        assert!(
            throttle.admit("c2", at(10_500), false).is_some(),
            "per node"
        );
        assert!(throttle.admit("c1", at(10_900), false).is_none());
        assert_eq!(throttle.take("c1").map(|u| u.report.sequence), Some(10_900));
        assert!(throttle.take("c1").is_none());
        assert!(
            throttle.admit("c1", at(10_950), true).is_some(),
            "must save"
        );
        assert!(throttle.admit("c1", at(11_000), false).is_none());
        assert!(
            throttle.admit("c1", at(11_950), false).is_some(),
            "a second later"
        );
        assert!(
            throttle.take_all().is_empty(),
            "a write clears the unsaved one"
        );
    }
}
