//! Group commit of the agents' writes: many nodes' hellos and reports share
//! one transaction, and so one fsync.
//!
//! Each SQLite commit with synchronous=FULL waits for an fsync, so one
//! transaction per report capped a controller at a few hundred reports a
//! second, and a reconnecting fleet (every agent's hello and first report
//! at once) queued for minutes. Two paths now share transactions:
//!
//! - A routine report (no unit transitions, no events) replaces the node's
//!   pending one, and [`WriteBatch::flush`] writes all pending reports once
//!   per [`FLUSH_INTERVAL`]. A crash loses at most that interval of routine
//!   reports.
//! - A hello, or a report with transitions or events, is queued by
//!   [`WriteBatch::commit`], which returns once it is committed. Callers
//!   take turns: the caller whose turn comes writes everything queued by
//!   then in one transaction, so writes that arrive during a commit share
//!   the next one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::oneshot;

use crate::store::{LatestReport, NodeWrite, Store};

/// How often the pending routine reports are written.
pub const FLUSH_INTERVAL: Duration = Duration::from_secs(1);

/// A queued write and the sender that signals its caller once it is written.
struct Queued {
    write: NodeWrite,
    done: oneshot::Sender<()>,
}

/// Routine reports waiting for the next flush and writes waiting for the
/// next commit.
#[derive(Default)]
pub struct WriteBatch {
    /// Per node: the newest routine report not yet written.
    routine: Mutex<HashMap<String, LatestReport>>,
    queued: Mutex<Vec<Queued>>,
    /// Held while a transaction is written, so one runs at a time.
    turn: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for WriteBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WriteBatch")
            .field("routine", &lock(&self.routine).len())
            .field("queued", &lock(&self.queued).len())
            .finish()
    }
}

impl WriteBatch {
    /// Keeps `report` as its node's pending report, replacing an older one.
    pub fn hold(&self, report: LatestReport) {
        let mut routine = lock(&self.routine);
        match routine.get(&report.node) {
            Some(held) if held.arrived_at_unix_ms > report.arrived_at_unix_ms => {}
            _ => {
                routine.insert(report.node.clone(), report);
            }
        }
    }

    /// Drops the node's pending report, because a newer one is being
    /// written directly.
    pub fn discard(&self, node: &str) {
        lock(&self.routine).remove(node);
    }

    /// Takes the node's pending report, if any, for a final write.
    pub fn take(&self, node: &str) -> Option<LatestReport> {
        lock(&self.routine).remove(node)
    }

    /// Writes `write` together with whatever else is queued, and returns
    /// once it is committed or its failure was logged.
    pub async fn commit(&self, store: &Store, write: NodeWrite) {
        let (done, mut written) = oneshot::channel();
        lock(&self.queued).push(Queued { write, done });
        let _turn = self.turn.lock().await;
        if written.try_recv().is_ok() {
            // The caller before us took this write into its transaction.
            return;
        }
        let queued = std::mem::take(&mut *lock(&self.queued));
        self.write(store, queued, Vec::new()).await;
    }

    /// Writes every pending routine report and queued write in one
    /// transaction. Routine reports whose write failed are kept for the next
    /// flush, unless newer ones arrived meanwhile.
    pub async fn flush(&self, store: &Store) {
        let _turn = self.turn.lock().await;
        let queued = std::mem::take(&mut *lock(&self.queued));
        let routine: Vec<LatestReport> = lock(&self.routine).drain().map(|(_, r)| r).collect();
        if queued.is_empty() && routine.is_empty() {
            return;
        }
        self.write(store, queued, routine).await;
    }

    async fn write(&self, store: &Store, queued: Vec<Queued>, routine: Vec<LatestReport>) {
        let routine_count = routine.len();
        let mut writes: Vec<NodeWrite> = Vec::with_capacity(queued.len() + routine_count);
        let mut senders = Vec::with_capacity(queued.len());
        for entry in queued {
            writes.push(entry.write);
            senders.push(entry.done);
        }
        writes.extend(routine.into_iter().map(|latest| NodeWrite::Report {
            latest,
            events: Vec::new(),
        }));

        let mut failed_routine = Vec::new();
        match store.save_node_writes(&writes).await {
            Ok(results) => {
                let first_routine = writes.len() - routine_count;
                for (index, (write, result)) in writes.into_iter().zip(results).enumerate() {
                    let Err(err) = result else { continue };
                    log_failure(write.node(), &err);
                    if index >= first_routine {
                        failed_routine.push(write);
                    }
                }
            }
            Err(err) => {
                tracing::error!(
                    writes = writes.len(),
                    error = %crate::error_chain(&err),
                    "cannot write a batch of node changes; the in-memory state is ahead of the \
                     database"
                );
                let first_routine = writes.len() - routine_count;
                failed_routine = writes.split_off(first_routine);
            }
        }
        self.restore(failed_routine);
        for sender in senders {
            // A caller that stopped waiting needs no signal.
            let _ = sender.send(());
        }
    }

    /// Puts back routine reports whose write failed, unless a newer report
    /// for the node arrived meanwhile.
    fn restore(&self, writes: Vec<NodeWrite>) {
        let mut routine = lock(&self.routine);
        for write in writes {
            if let NodeWrite::Report { latest, .. } = write {
                routine.entry(latest.node.clone()).or_insert(latest);
            }
        }
    }
}

fn log_failure(node: &str, err: &crate::store::StoreError) {
    tracing::error!(
        node,
        error = %crate::error_chain(err),
        "cannot persist a change; the in-memory state is ahead of the database"
    );
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every critical section leaves the map or list whole, so a poisoned
    // lock is safe to take over.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
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

    fn routine_arrivals(batch: &WriteBatch) -> Vec<(String, i64)> {
        let mut arrivals: Vec<_> = lock(&batch.routine)
            .values()
            .map(|r| (r.node.clone(), r.arrived_at_unix_ms))
            .collect();
        arrivals.sort();
        arrivals
    }

    #[test]
    fn batch_keeps_newest_report_per_node() {
        let batch = WriteBatch::default();
        batch.hold(report("c1", 10));
        batch.hold(report("c1", 30));
        batch.hold(report("c1", 20));
        batch.hold(report("c2", 15));
        assert_eq!(
            routine_arrivals(&batch),
            vec![("c1".to_string(), 30), ("c2".to_string(), 15)]
        );
    }

    #[test]
    fn batch_discard_and_take_one_node() {
        let batch = WriteBatch::default();
        batch.hold(report("c1", 10));
        batch.hold(report("c2", 10));
        batch.discard("c1");
        assert!(batch.take("c1").is_none());
        assert_eq!(batch.take("c2").map(|r| r.arrived_at_unix_ms), Some(10));
        assert!(routine_arrivals(&batch).is_empty());
    }

    #[test]
    fn batch_restore_keeps_newer_arrivals() {
        let batch = WriteBatch::default();
        batch.hold(report("c1", 20));
        let failed = ["c1", "c2"]
            .into_iter()
            .map(|node| NodeWrite::Report {
                latest: report(node, 10),
                events: Vec::new(),
            })
            .collect();
        batch.restore(failed);
        assert_eq!(
            routine_arrivals(&batch),
            vec![("c1".to_string(), 20), ("c2".to_string(), 10)]
        );
    }
}
