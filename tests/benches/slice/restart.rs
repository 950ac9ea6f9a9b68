//! Section 3: `novamedic restart` from the operator's shell to the printed
//! outcome, next to the restart job's own time inside systemd.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use novamedic_tests::slice::{ComputeNode, NOVA_UNIT};
use serde_json::Value;

use crate::operator::{is_healthy, Operator};
use crate::proc_stats::monotonic_us;
use crate::stats;

const HEALTHY_TIMEOUT: Duration = Duration::from_secs(30);

/// systemd's timestamps of one restart, `CLOCK_MONOTONIC` microseconds.
const TIMESTAMPS: [&str; 4] = [
    "ActiveExitTimestampMonotonic",
    "InactiveEnterTimestampMonotonic",
    "InactiveExitTimestampMonotonic",
    "ActiveEnterTimestampMonotonic",
];

/// One `novamedic restart` and what systemd recorded of it.
pub struct RestartRun {
    /// From spawning the CLI to its exit after printing the outcome.
    pub cli: Duration,
    /// The agent's `duration_ms`: from receiving the command to its result.
    pub agent: Duration,
    /// systemd's restart job: from the unit leaving `active` (stop begins,
    /// `ActiveExitTimestamp`) to it being `active` again
    /// (`ActiveEnterTimestamp`).
    pub job: Duration,
    /// From spawning the CLI to systemd starting the stop.
    pub cli_to_stop: Duration,
    /// From the unit being active again to the CLI's exit, which includes
    /// the agent's settle time.
    pub active_to_cli_exit: Duration,
}

/// Runs the CLI `runs` times, each after the controller shows the node
/// healthy, and checks that each restart succeeded with a new invocation.
pub fn measure(
    operator: &mut Operator,
    cli_binary: &Path,
    controller_url: &str,
    node: &ComputeNode,
    runs: usize,
) -> Result<Vec<RestartRun>> {
    let mut results = Vec::new();
    for run in 1..=runs {
        operator.poll_until(
            node.name(),
            Duration::from_millis(20),
            HEALTHY_TIMEOUT,
            "healthy",
            is_healthy,
        )?;
        let result = measure_one(cli_binary, controller_url, node)
            .with_context(|| format!("restart run {run} of {runs}"))?;
        eprintln!(
            "restart run {run}/{runs}: CLI {:.1} ms, systemd job {:.1} ms",
            stats::millis(result.cli),
            stats::millis(result.job)
        );
        results.push(result);
    }
    Ok(results)
}

fn measure_one(cli_binary: &Path, controller_url: &str, node: &ComputeNode) -> Result<RestartRun> {
    let invocation_before = node.nova_property("InvocationID")?;
    let started_us = monotonic_us();
    let started = Instant::now();
    let output = Command::new(cli_binary)
        .args(["--controller", controller_url, "restart", node.name()])
        .args(["--reason", "bench", "-o", "json"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {}", cli_binary.display()))?;
    let cli = started.elapsed();
    let ended_us = monotonic_us();

    let json: Value = serde_json::from_slice(&output.stdout).with_context(|| {
        format!(
            "novamedic restart exited with {} and printed no JSON; stderr: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        )
    })?;
    if json["outcome"] != "succeeded" || !output.status.success() {
        bail!("novamedic restart did not succeed: {json}");
    }
    let agent_ms = json["duration_ms"]
        .as_u64()
        .with_context(|| format!("no duration_ms in {json}"))?;

    let invocation_after = node.nova_property("InvocationID")?;
    if invocation_after == invocation_before {
        bail!("nova-compute kept invocation {invocation_before} through a succeeded restart");
    }
    let stamps = unit_timestamps(node)?;
    let stop_began = stamps["ActiveExitTimestampMonotonic"];
    let active_again = stamps["ActiveEnterTimestampMonotonic"];
    if !(started_us < stop_began && stop_began < active_again && active_again < ended_us) {
        bail!("systemd's timestamps {stamps:?} do not fall inside the CLI's run ({started_us} to {ended_us} us)");
    }
    Ok(RestartRun {
        cli,
        agent: Duration::from_millis(agent_ms),
        job: Duration::from_micros(active_again - stop_began),
        cli_to_stop: Duration::from_micros(stop_began - started_us),
        active_to_cli_exit: Duration::from_micros(ended_us - active_again),
    })
}

fn unit_timestamps(node: &ComputeNode) -> Result<HashMap<String, u64>> {
    let mut argv = vec!["show"];
    for name in TIMESTAMPS {
        argv.extend(["-p", name]);
    }
    argv.push(NOVA_UNIT);
    let text = node.container.systemctl_ok(&argv)?;
    let mut stamps = HashMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let value: u64 = value
            .parse()
            .with_context(|| format!("invalid {key} value {value:?}"))?;
        stamps.insert(key.to_string(), value);
    }
    for name in TIMESTAMPS {
        if !stamps.contains_key(name) {
            bail!("systemctl show printed no {name}: {text}");
        }
    }
    Ok(stamps)
}

/// Prints the section's table.
pub fn print(runs: &[RestartRun], settle: Duration) {
    println!(
        "{} runs; agent restart_settle_seconds = {}; percentiles nearest-rank.\n",
        runs.len(),
        settle.as_secs()
    );
    stats::header(&["measure", "median (ms)", "p90 (ms)", "max (ms)"]);
    let series = |pick: fn(&RestartRun) -> Duration| -> Vec<f64> {
        runs.iter().map(|r| stats::millis(pick(r))).collect()
    };
    let settle_ms = stats::millis(settle);
    let cli = series(|r| r.cli);
    let cli_minus_settle: Vec<f64> = cli.iter().map(|ms| ms - settle_ms).collect();
    stats::summary_row("CLI start to printed outcome", &cli);
    stats::summary_row("CLI time minus settle", &cli_minus_settle);
    stats::summary_row(
        "agent's duration_ms (command received to result)",
        &series(|r| r.agent),
    );
    stats::summary_row(
        "systemd restart job (ActiveExit to ActiveEnter)",
        &series(|r| r.job),
    );
    stats::summary_row(
        "CLI start to stop began (ActiveExit)",
        &series(|r| r.cli_to_stop),
    );
    stats::summary_row(
        "active again (ActiveEnter) to CLI exit, settle included",
        &series(|r| r.active_to_cli_exit),
    );
}
