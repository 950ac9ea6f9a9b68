//! Section 2: time from killing nova-compute to the controller showing the
//! node failed.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use novamedic_tests::slice::{ComputeNode, NOVA_UNIT};

use crate::operator::{is_failed, is_healthy, Operator};
use crate::stats;

/// How long one run may take before the bench gives up.
const RUN_TIMEOUT: Duration = Duration::from_secs(30);

/// One kill and its detection.
pub struct CrashRun {
    /// From just before `systemctl kill` starts to the first ListNodes
    /// response that shows the node failed.
    pub total: Duration,
    /// How long `nsenter ... systemctl kill` itself took.
    pub kill_command: Duration,
    /// From systemd's `InactiveEnterTimestampMonotonic` (the unit entered
    /// `failed`) to the same ListNodes response.
    pub from_unit_failed: Duration,
}

/// Kills nova-compute `runs` times and polls ListNodes every `poll_period`
/// until the controller shows the node failed. After each run it starts the
/// unit again and waits until the controller shows the node healthy.
pub fn measure(
    operator: &mut Operator,
    node: &ComputeNode,
    runs: usize,
    poll_period: Duration,
) -> Result<Vec<CrashRun>> {
    let mut results = Vec::new();
    for run in 1..=runs {
        operator.poll_until(node.name(), poll_period, RUN_TIMEOUT, "healthy", is_healthy)?;
        let result = measure_one(operator, node, poll_period)
            .with_context(|| format!("crash run {run} of {runs}"))?;
        eprintln!(
            "crash run {run}/{runs}: {:.1} ms",
            stats::millis(result.total)
        );
        results.push(result);
        node.container.systemctl_ok(&["start", NOVA_UNIT])?;
    }
    operator.poll_until(node.name(), poll_period, RUN_TIMEOUT, "healthy", is_healthy)?;
    Ok(results)
}

fn measure_one(
    operator: &mut Operator,
    node: &ComputeNode,
    poll_period: Duration,
) -> Result<CrashRun> {
    let started = Instant::now();
    node.container
        .systemctl_ok(&["kill", "-s", "KILL", NOVA_UNIT])?;
    let kill_command = started.elapsed();
    let seen = operator.poll_until(node.name(), poll_period, RUN_TIMEOUT, "failed", is_failed)?;

    let failed_at_us: u64 = node
        .nova_property("InactiveEnterTimestampMonotonic")?
        .parse()
        .context("invalid InactiveEnterTimestampMonotonic")?;
    if failed_at_us == 0 || failed_at_us > seen.monotonic_us {
        bail!(
            "nova-compute's InactiveEnterTimestampMonotonic {failed_at_us} is not before the \
             controller's response at {} us",
            seen.monotonic_us
        );
    }
    Ok(CrashRun {
        total: seen.at - started,
        kill_command,
        from_unit_failed: Duration::from_micros(seen.monotonic_us - failed_at_us),
    })
}

/// Prints the section's table and the target's verdict.
pub fn print(runs: &[CrashRun], poll_period: Duration) {
    println!(
        "{} runs; ListNodes polled every {} ms; percentiles nearest-rank.\n",
        runs.len(),
        poll_period.as_millis()
    );
    stats::header(&["measure", "median (ms)", "p90 (ms)", "max (ms)"]);
    let series = |pick: fn(&CrashRun) -> Duration| -> Vec<f64> {
        runs.iter().map(|r| stats::millis(pick(r))).collect()
    };
    stats::summary_row(
        "kill to controller showing failed (includes the kill command)",
        &series(|r| r.total),
    );
    stats::summary_row(
        "unit entered failed (systemd) to controller showing failed",
        &series(|r| r.from_unit_failed),
    );
    stats::summary_row(
        "the kill command (`nsenter ... systemctl kill`) alone",
        &series(|r| r.kill_command),
    );
    let max_total = runs.iter().map(|r| r.total).max().unwrap_or_default();
    let verdict = if max_total < Duration::from_secs(1) {
        "met"
    } else {
        "not met"
    };
    println!(
        "\nTarget under 1 s for every run: {verdict} (max {:.1} ms).",
        stats::millis(max_total)
    );
}
