//! The controller's Prometheus metrics: counters and a histogram updated
//! where things happen, and gauges read from the fleet and the policy at
//! scrape time. `render` writes the text exposition format 0.0.4; `http`
//! serves it on `[metrics] listen`.
//!
//! The format is written by hand: a few counters do not justify a metrics
//! crate, and the text format is small and stable.

pub mod http;
mod text;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

pub use text::Exposition;

/// Upper bounds, in seconds, of the report processing histogram's buckets.
/// A report is applied in memory, maybe written to SQLite and judged by the
/// policy, so most take well under 10 ms and a slow disk shows above that.
const REPORT_SECONDS_BUCKETS: [f64; 12] = [
    0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Counters and histograms the controller updates as it works.
#[derive(Debug, Default)]
pub struct Metrics {
    reports_received: AtomicU64,
    report_seconds: Histogram,
    /// By (kind, outcome).
    commands: LabeledCounter<(String, String)>,
    /// By decision kind.
    policy_decisions: LabeledCounter<String>,
    /// By trigger: operator or policy.
    restarts: LabeledCounter<String>,
    escalations: AtomicU64,
    /// By (receiver kind, status of the alert).
    alerts_sent: LabeledCounter<(String, String)>,
    /// By receiver kind.
    alerts_failed: LabeledCounter<String>,
    /// By receiver kind.
    alerts_dropped: LabeledCounter<String>,
}

impl Metrics {
    pub fn report_received(&self) {
        self.reports_received.fetch_add(1, Ordering::Relaxed);
    }

    pub fn report_processed(&self, took: Duration) {
        self.report_seconds.observe(took.as_secs_f64());
    }

    /// Counts a finished command. `outcome` is the agent's outcome name or
    /// the reason no outcome arrived.
    pub fn command_finished(&self, kind: &str, outcome: &str) {
        self.commands.add((kind.to_string(), outcome.to_string()));
    }

    pub fn policy_decision(&self, kind: &str) {
        self.policy_decisions.add(kind.to_string());
    }

    /// Counts a restart command recorded and sent; `trigger` is "operator"
    /// or "policy".
    pub fn restart_sent(&self, trigger: &str) {
        self.restarts.add(trigger.to_string());
    }

    pub fn escalation(&self) {
        self.escalations.fetch_add(1, Ordering::Relaxed);
    }

    pub fn alert_sent(&self, receiver: &str, status: &str) {
        self.alerts_sent
            .add((receiver.to_string(), status.to_string()));
    }

    pub fn alert_failed(&self, receiver: &str) {
        self.alerts_failed.add(receiver.to_string());
    }

    pub fn alert_dropped(&self, receiver: &str) {
        self.alerts_dropped.add(receiver.to_string());
    }

    /// Writes the counters and histograms into `out`.
    pub fn render(&self, out: &mut Exposition) {
        out.counter(
            "novamedic_reports_received_total",
            "Node reports received from agents.",
            &[(vec![], self.reports_received.load(Ordering::Relaxed))],
        );
        self.report_seconds.render(
            out,
            "novamedic_report_processing_seconds",
            "Time from a report's arrival to the end of its policy evaluation.",
        );
        out.counter(
            "novamedic_commands_total",
            "Commands sent to agents, by kind and outcome (the agent's outcome, or \
             not_delivered, no_result or shutting_down when none arrived).",
            &self
                .commands
                .snapshot()
                .into_iter()
                .map(|((kind, outcome), value)| (vec![("kind", kind), ("outcome", outcome)], value))
                .collect::<Vec<_>>(),
        );
        out.counter(
            "novamedic_policy_decisions_total",
            "Changed decisions of the self-healing policy, by kind.",
            &by_one_label("decision", self.policy_decisions.snapshot()),
        );
        out.counter(
            "novamedic_restarts_total",
            "Restarts of nova-compute sent to agents, by trigger (operator or policy).",
            &by_one_label("trigger", self.restarts.snapshot()),
        );
        out.counter(
            "novamedic_escalations_total",
            "Nodes the policy handed to a human.",
            &[(vec![], self.escalations.load(Ordering::Relaxed))],
        );
        out.counter(
            "novamedic_alert_notifications_sent_total",
            "Alert notifications a receiver accepted, by receiver kind and alert status.",
            &self
                .alerts_sent
                .snapshot()
                .into_iter()
                .map(|((receiver, status), value)| {
                    (vec![("receiver", receiver), ("status", status)], value)
                })
                .collect::<Vec<_>>(),
        );
        out.counter(
            "novamedic_alert_notifications_failed_total",
            "Alert notifications given up after every retry, by receiver kind.",
            &by_one_label("receiver", self.alerts_failed.snapshot()),
        );
        out.counter(
            "novamedic_alert_notifications_dropped_total",
            "Alert notifications dropped from a full queue (the oldest go first), by receiver kind.",
            &by_one_label("receiver", self.alerts_dropped.snapshot()),
        );
    }
}

fn by_one_label(name: &'static str, values: Vec<(String, u64)>) -> Vec<text::Sample> {
    values
        .into_iter()
        .map(|(label, value)| (vec![(name, label)], value))
        .collect()
}

/// A counter per label set, kept in label order so the output is stable.
#[derive(Debug)]
struct LabeledCounter<K: Ord> {
    values: Mutex<BTreeMap<K, u64>>,
}

impl<K: Ord> Default for LabeledCounter<K> {
    fn default() -> Self {
        LabeledCounter {
            values: Mutex::new(BTreeMap::new()),
        }
    }
}

impl<K: Ord + Clone> LabeledCounter<K> {
    fn add(&self, key: K) {
        *self.lock().entry(key).or_insert(0) += 1;
    }

    fn snapshot(&self) -> Vec<(K, u64)> {
        self.lock().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<K, u64>> {
        // A panic while holding the lock left at worst one count unapplied.
        self.values.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A histogram with [`REPORT_SECONDS_BUCKETS`].
#[derive(Debug, Default)]
struct Histogram {
    inner: Mutex<HistogramState>,
}

#[derive(Debug, Default)]
struct HistogramState {
    /// Observations per bucket, not cumulative; the last is +Inf.
    buckets: [u64; REPORT_SECONDS_BUCKETS.len() + 1],
    sum: f64,
    count: u64,
}

impl Histogram {
    fn observe(&self, value: f64) {
        let mut state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let index = REPORT_SECONDS_BUCKETS
            .iter()
            .position(|&bound| value <= bound)
            .unwrap_or(REPORT_SECONDS_BUCKETS.len());
        state.buckets[index] += 1;
        state.sum += value;
        state.count += 1;
    }

    fn render(&self, out: &mut Exposition, name: &str, help: &str) {
        let state = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut cumulative = Vec::with_capacity(state.buckets.len());
        let mut total = 0;
        for count in state.buckets {
            total += count;
            cumulative.push(total);
        }
        out.histogram(
            name,
            help,
            &REPORT_SECONDS_BUCKETS,
            &cumulative,
            state.sum,
            state.count,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_cumulative() {
        let metrics = Metrics::default();
        metrics.report_processed(Duration::from_micros(300));
        metrics.report_processed(Duration::from_millis(3));
        metrics.report_processed(Duration::from_secs(10));
        let mut out = Exposition::default();
        metrics.render(&mut out);
        let text = out.finish();
        assert!(
            text.contains("novamedic_report_processing_seconds_bucket{le=\"0.0005\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("novamedic_report_processing_seconds_bucket{le=\"0.005\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("novamedic_report_processing_seconds_bucket{le=\"2.5\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("novamedic_report_processing_seconds_bucket{le=\"+Inf\"} 3\n"),
            "{text}"
        );
        assert!(
            text.contains("novamedic_report_processing_seconds_count 3\n"),
            "{text}"
        );
    }

    #[test]
    fn labeled_counters_render_sorted() {
        let metrics = Metrics::default();
        metrics.restart_sent("policy");
        metrics.restart_sent("operator");
        metrics.restart_sent("policy");
        let mut out = Exposition::default();
        metrics.render(&mut out);
        let text = out.finish();
        let operator = text
            .find("novamedic_restarts_total{trigger=\"operator\"} 1\n")
            .expect(&text);
        let policy = text
            .find("novamedic_restarts_total{trigger=\"policy\"} 2\n")
            .expect(&text);
        assert!(operator < policy, "{text}");
        assert!(
            text.contains("# TYPE novamedic_restarts_total counter\n"),
            "{text}"
        );
    }
}
