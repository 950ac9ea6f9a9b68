//! Latency of report handling, for benchmarks: how long a report takes to
//! reach the fleet state, and how long its stream is busy with it.
//!
//! Off unless the `novamedic::report_timing` target is enabled at debug
//! level (for example `RUST_LOG=info,novamedic::report_timing=debug`). Then
//! every report adds two samples, and about every [`WINDOW`] the next report
//! logs percentiles of the samples since the previous line and starts over.
//!
//! - `lag`: from the agent's `collected_at_unix_ms` to the moment the fleet
//!   in memory contains the report. It includes the time on the wire and in
//!   the controller's queues, but it compares two clocks, so it means
//!   something only when agent and controller share a clock, as the fleet
//!   simulator on the controller's host does.
//! - `handling`: from decoding the report off the stream to the end of its
//!   store write and policy evaluation, on the controller's monotonic clock.
//!   The stream reads its next message only after that.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Length of one reporting window.
pub const WINDOW: Duration = Duration::from_secs(10);

/// Samples kept per window; further ones are counted but dropped, so a
/// report flood cannot grow memory without bound.
const MAX_SAMPLES: usize = 1 << 20;

/// Samples of the current window.
#[derive(Debug)]
pub struct ReportTiming {
    window: Mutex<Window>,
}

#[derive(Debug)]
struct Window {
    started: Instant,
    lag_ms: Vec<u64>,
    handling_us: Vec<u64>,
    dropped: u64,
}

impl Default for ReportTiming {
    fn default() -> Self {
        ReportTiming {
            window: Mutex::new(Window::new(Instant::now())),
        }
    }
}

impl ReportTiming {
    /// Returns whether samples are collected at all.
    pub fn enabled() -> bool {
        tracing::enabled!(target: "novamedic::report_timing", tracing::Level::DEBUG)
    }

    /// Adds one report's samples and logs the window when it is over.
    /// `collected_at_unix_ms` is the agent's clock at collection,
    /// `applied_at_unix_ms` the controller's when the fleet took the report.
    pub fn record(&self, collected_at_unix_ms: i64, applied_at_unix_ms: i64, handling: Duration) {
        let lag_ms = u64::try_from(applied_at_unix_ms - collected_at_unix_ms).unwrap_or(0);
        let handling_us = u64::try_from(handling.as_micros()).unwrap_or(u64::MAX);
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if window.lag_ms.len() < MAX_SAMPLES {
            window.lag_ms.push(lag_ms);
            window.handling_us.push(handling_us);
        } else {
            window.dropped += 1;
        }
        let now = Instant::now();
        if now.duration_since(window.started) < WINDOW {
            return;
        }
        let finished = std::mem::replace(&mut *window, Window::new(now));
        drop(window);
        finished.log(now);
    }
}

impl Window {
    fn new(started: Instant) -> Self {
        Window {
            started,
            lag_ms: Vec::new(),
            handling_us: Vec::new(),
            dropped: 0,
        }
    }

    fn log(mut self, now: Instant) {
        self.lag_ms.sort_unstable();
        self.handling_us.sort_unstable();
        tracing::debug!(
            target: "novamedic::report_timing",
            window_ms = now.duration_since(self.started).as_millis() as u64,
            reports = self.lag_ms.len() as u64 + self.dropped,
            dropped = self.dropped,
            lag_p50_ms = percentile(&self.lag_ms, 50),
            lag_p99_ms = percentile(&self.lag_ms, 99),
            lag_max_ms = self.lag_ms.last().copied().unwrap_or(0),
            handling_p50_us = percentile(&self.handling_us, 50),
            handling_p99_us = percentile(&self.handling_us, 99),
            handling_max_us = self.handling_us.last().copied().unwrap_or(0),
            "report timing"
        );
    }
}

/// Returns the nearest-rank percentile of sorted samples, 0 when empty.
fn percentile(sorted: &[u64], percent: usize) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * percent).div_ceil(100).max(1);
    sorted[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::percentile;

    #[test]
    fn percentile_nearest_rank() {
        let samples: Vec<u64> = (1..=200).collect();
        assert_eq!(percentile(&samples, 50), 100);
        assert_eq!(percentile(&samples, 99), 198);
        assert_eq!(percentile(&samples, 100), 200);
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 99), 0);
    }
}
