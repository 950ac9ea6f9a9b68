//! Summaries of repeated measurements and their Markdown formatting.

use std::time::Duration;

/// Median, 90th percentile and maximum of a series.
#[derive(Debug, Clone, Copy)]
pub struct Summary {
    pub median: f64,
    pub p90: f64,
    pub max: f64,
}

/// Summarises `values`; `None` when there are none.
///
/// The median of an even count is the mean of the two middle values. The
/// 90th percentile is the nearest-rank one: the value at rank
/// `ceil(0.9 * n)` in ascending order, so with 20 runs it is the 18th.
pub fn summarise(values: &[f64]) -> Option<Summary> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    };
    let p90_rank = (n * 9).div_ceil(10).max(1);
    Some(Summary {
        median,
        p90: sorted[p90_rank - 1],
        max: sorted[n - 1],
    })
}

/// Returns a duration in milliseconds, for summaries.
pub fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}

/// Formats bytes as MiB with one decimal.
pub fn mib(bytes: u64) -> String {
    format!("{:.1}", bytes as f64 / (1024.0 * 1024.0))
}

/// Prints one Markdown table row.
pub fn row(cells: &[String]) {
    println!("| {} |", cells.join(" | "));
}

/// Prints a row of `name` with the median, p90 and max of `values_ms`.
pub fn summary_row(name: &str, values_ms: &[f64]) {
    if let Some(summary) = summarise(values_ms) {
        row(&[
            name.to_string(),
            format!("{:.1}", summary.median),
            format!("{:.1}", summary.p90),
            format!("{:.1}", summary.max),
        ]);
    }
}

/// Prints a Markdown table header with its separator line.
pub fn header(cells: &[&str]) {
    println!("| {} |", cells.join(" | "));
    let separators: Vec<&str> = cells.iter().map(|_| "---").collect();
    println!("| {} |", separators.join(" | "));
}
