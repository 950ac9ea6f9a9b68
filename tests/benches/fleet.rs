//! How large a fleet one controller holds: a ladder of simulated fleets,
//! each on a new controller process (the release build), with the
//! controller's CPU and memory, the report latency inside it and the time
//! from a confirmed fault to the restart command's arrival.
//!
//! Per step: start `novamedic serve` in plain text with the bench policy
//! and `RUST_LOG=info,novamedic::report_timing=debug`, connect the
//! simulated fleet (this process, one HTTP/2 connection per agent), wait
//! one report interval and then until a 10 s window's report lag p99 is
//! under 1 s again (the connect burst: every agent's hello and first
//! report at once), at most [`MAX_SETTLE`], then measure for
//! `--measure-seconds`: CPU ticks
//! and RSS from `/proc/PID/stat` and `/proc/PID/status` of the controller
//! alone, and the `report timing` lines the controller logs every 10 s. A
//! few nodes fail their unit 5 s after the fleet connected; the policy
//! confirms it in three reports over 20 s and restarts them. The ladder
//! stops at the first size whose measured report lag p99 reaches 1 s,
//! that does not settle after the connect burst, or whose agents do not
//! all connect.
//!
//! Build first: `cargo build --release -p novamedic --bin novamedic`. The
//! open-file limit of this process, which the controller inherits, is
//! raised to its hard limit.

#[allow(dead_code)]
#[path = "slice/machine.rs"]
mod machine;
#[allow(dead_code)]
#[path = "slice/proc_stats.rs"]
mod proc_stats;

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use novamedic_tests::fleet_sim::{raise_open_file_limit, RunningFleet, SimConfig, Summary};
use novamedic_tests::slice::{Controller, ControllerOptions};
use novamedic_tests::system_env::locate;

const USAGE: &str = "\
Usage: cargo bench -p novamedic-tests --bench fleet -- [OPTIONS]

Options (defaults in brackets):
  --sizes N,N,...          fleet sizes of the ladder [1000,2500,5000,10000,20000]
  --interval-seconds N     report interval of every simulated agent [10]
  --measure-seconds N      measured time per step, after one interval [60]
  --faults N               nodes whose unit fails per step [3]
  --help                   print this text";

/// The report lag above which the ladder stops.
const LAG_LIMIT_MS: u64 = 1_000;

/// Maximum wait after the warm-up interval for the connect burst to clear.
const MAX_SETTLE: Duration = Duration::from_secs(180);

/// Enforce mode with the default confirmation shortened to 20 s (three
/// reports at 10 s) and no start grace, and limits loose enough that the
/// step's few faults are restarted at once rather than queued.
const BENCH_POLICY: &str = r#"
mode = "enforce"
start_grace_seconds = 0

[fleet]
max_in_flight = 10
min_gap_seconds = 0
jitter_seconds = 0
storm_min_nodes = 10

[[rule]]
condition = "unit-failed"
confirm_reports = 3
confirm_seconds = 20
"#;

struct Settings {
    sizes: Vec<usize>,
    interval: Duration,
    measure: Duration,
    faults: usize,
}

fn parse_args() -> Result<Option<Settings>> {
    let mut settings = Settings {
        sizes: vec![1_000, 2_500, 5_000, 10_000, 20_000],
        interval: Duration::from_secs(10),
        measure: Duration::from_secs(60),
        faults: 3,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next()
                .with_context(|| format!("{arg} needs a value\n{USAGE}"))
        };
        match arg.as_str() {
            "--sizes" => {
                settings.sizes = value()?
                    .split(',')
                    .map(|size| {
                        size.parse()
                            .with_context(|| format!("invalid size {size:?}"))
                    })
                    .collect::<Result<_>>()?
            }
            "--interval-seconds" => settings.interval = Duration::from_secs(value()?.parse()?),
            "--measure-seconds" => settings.measure = Duration::from_secs(value()?.parse()?),
            "--faults" => settings.faults = value()?.parse()?,
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            "--help" => {
                println!("{USAGE}");
                return Ok(None);
            }
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    Ok(Some(settings))
}

/// One step's results.
struct StepResult {
    size: usize,
    connected: usize,
    connect_seconds: f64,
    /// Worst 10 s window's lag p99 from the connect to the measurement.
    burst_lag_p99_ms: u64,
    /// Time from the connect to the measurement's start.
    settle_seconds: f64,
    settled: bool,
    cpu_percent: f64,
    simulator_cpu_percent: f64,
    rss_mib: f64,
    peak_rss_mib: f64,
    reports: u64,
    lag_p50_ms: u64,
    lag_p99_ms: u64,
    lag_max_ms: u64,
    handling_p99_us: u64,
    restarts: usize,
    decision_to_command_ms: Option<i64>,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("fleet bench failed: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let Some(settings) = parse_args()? else {
        return Ok(());
    };
    let open_files = raise_open_file_limit()?;
    eprintln!("open-file limit raised to {open_files}");
    let env = locate();
    let binary = env.target_dir.join("release").join("novamedic");

    println!("## Fleet ladder\n");
    machine::print_description();
    println!("- open-file limit (soft = hard): {open_files}");
    println!(
        "- report interval {} s, {} s measured per step\n",
        settings.interval.as_secs(),
        settings.measure.as_secs()
    );
    println!(
        "| agents | connected | connect s | burst lag p99 ms | settled after s | controller CPU % | \
         simulator CPU % | RSS MiB | peak RSS MiB | reports | lag p50 ms | lag p99 ms | \
         lag max ms | handling p99 µs | restarts | report → command ms |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for &size in &settings.sizes {
        let result = step(&binary, size, &settings)?;
        println!(
            "| {} | {} | {:.1} | {} | {} | {:.1} | {:.1} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {} | {} |",
            result.size,
            result.connected,
            result.connect_seconds,
            result.burst_lag_p99_ms,
            if result.settled {
                format!("{:.0}", result.settle_seconds)
            } else {
                format!("not within {:.0}", result.settle_seconds)
            },
            result.cpu_percent,
            result.simulator_cpu_percent,
            result.rss_mib,
            result.peak_rss_mib,
            result.reports,
            result.lag_p50_ms,
            result.lag_p99_ms,
            result.lag_max_ms,
            result.handling_p99_us,
            result.restarts,
            result
                .decision_to_command_ms
                .map_or_else(|| "-".to_string(), |ms| ms.to_string()),
        );
        if result.connected < size || !result.settled || result.lag_p99_ms >= LAG_LIMIT_MS {
            eprintln!("step {size}: limit reached; the ladder stops");
            break;
        }
    }
    Ok(())
}

fn step(binary: &std::path::Path, size: usize, settings: &Settings) -> Result<StepResult> {
    eprintln!("step {size}: starting the controller");
    let options = ControllerOptions {
        binary: binary.to_path_buf(),
        plaintext: true,
        policy: Some(BENCH_POLICY.to_string()),
        rust_log: "info,novamedic::report_timing=debug".to_string(),
    };
    let mut controller = Controller::start_with(options)?;
    let pid = controller.pid().context("the controller has no PID")?;
    let config = SimConfig {
        controller: controller.url(),
        nodes: size,
        report_interval: settings.interval,
        connect_timeout: Duration::from_secs(180),
        seed: size as u64,
        ..SimConfig::default()
    };
    let fault = format!("at=5s nodes={} kind=unit_failed", settings.faults);
    let fleet = RunningFleet::start(config, vec![fault.parse()?])?;
    let summary = fleet.snapshot();
    eprintln!(
        "step {size}: {} of {size} agents connected in {} ms; warming up",
        summary.connected, summary.connect_ms
    );
    let connected_at = Instant::now();
    let connect_offset = controller.log().len();
    thread::sleep(settings.interval);
    let settled = wait_for_settled_lag(&controller, connect_offset);
    let settle_seconds = connected_at.elapsed().as_secs_f64();
    let burst = TimingLines::parse(after_offset(&controller.log(), connect_offset));
    eprintln!(
        "step {size}: connect burst lag p99 {} ms; {} after {settle_seconds:.0} s; measuring",
        burst.lag_p99_ms,
        if settled { "settled" } else { "not settled" }
    );

    let log_offset = controller.log().len();
    let before = proc_stats::sample(pid)?;
    let simulator_before = proc_stats::sample(std::process::id())?;
    let started = Instant::now();
    thread::sleep(settings.measure);
    let elapsed = started.elapsed().as_secs_f64();
    let after = proc_stats::sample(pid)?;
    let simulator_after = proc_stats::sample(std::process::id())?;
    let log = controller.log();
    let summary = fleet.stop();
    controller.stop();

    let ticks = rustix::param::clock_ticks_per_second() as f64;
    let cpu = |from: u64, to: u64| (to - from) as f64 / ticks / elapsed * 100.0;
    let timing = TimingLines::parse(after_offset(&log, log_offset));
    let mib = |bytes: u64| bytes as f64 / (1024.0 * 1024.0);
    Ok(StepResult {
        size,
        connected: summary.connected,
        connect_seconds: summary.connect_ms as f64 / 1000.0,
        burst_lag_p99_ms: burst.lag_p99_ms,
        settle_seconds,
        settled,
        cpu_percent: cpu(before.cpu_ticks, after.cpu_ticks),
        simulator_cpu_percent: cpu(simulator_before.cpu_ticks, simulator_after.cpu_ticks),
        rss_mib: mib(after.rss_bytes),
        peak_rss_mib: mib(after.peak_rss_bytes),
        reports: timing.reports,
        lag_p50_ms: timing.lag_p50_ms,
        lag_p99_ms: timing.lag_p99_ms,
        lag_max_ms: timing.lag_max_ms,
        handling_p99_us: timing.handling_p99_us,
        restarts: summary.commands.len(),
        decision_to_command_ms: decision_to_command_ms(&summary),
    })
}

/// Waits until the controller logs a timing window with a lag p99 under
/// [`LAG_LIMIT_MS`] after `offset`, at most [`MAX_SETTLE`]. Returns whether
/// it did.
fn wait_for_settled_lag(controller: &Controller, offset: usize) -> bool {
    let deadline = Instant::now() + MAX_SETTLE;
    let mut seen = offset;
    while Instant::now() < deadline {
        let log = controller.log();
        let latest = TimingLines::parse_last(after_offset(&log, seen));
        if let Some(lag_p99_ms) = latest {
            if lag_p99_ms < LAG_LIMIT_MS {
                return true;
            }
        }
        seen = log.len();
        thread::sleep(Duration::from_secs(1));
    }
    false
}

/// Returns the log from `offset` on. The controller may have been writing
/// a line, even a multi-byte character, when the offset was taken.
fn after_offset(log: &str, offset: usize) -> &str {
    let mut from = offset.min(log.len());
    while !log.is_char_boundary(from) {
        from += 1;
    }
    &log[from..]
}

/// The longest time from a restarted node's last report before the
/// command (the report that confirmed its fault) to the command's arrival.
fn decision_to_command_ms(summary: &Summary) -> Option<i64> {
    summary
        .commands
        .iter()
        .filter_map(|command| Some(command.received_ms - command.last_report_ms?))
        .max()
}

/// The worst of the controller's `report timing` lines in the measured
/// time: the highest p50, p99 and maximum of any 10 s window, and the
/// reports of all windows.
#[derive(Debug, Default)]
struct TimingLines {
    reports: u64,
    lag_p50_ms: u64,
    lag_p99_ms: u64,
    lag_max_ms: u64,
    handling_p99_us: u64,
}

impl TimingLines {
    /// Returns the lag p99 of the last timing line in `log` that is complete
    /// up to its last field, if any.
    fn parse_last(log: &str) -> Option<u64> {
        log.lines()
            .rev()
            .find(|line| line.contains("report timing") && line.contains("handling_max_us="))
            .map(|line| Self::parse(line).lag_p99_ms)
    }

    fn parse(log: &str) -> Self {
        let mut timing = TimingLines::default();
        for line in log.lines().filter(|line| line.contains("report timing")) {
            let field = |name: &str| -> u64 {
                line.split_whitespace()
                    .find_map(|word| word.strip_prefix(name)?.strip_prefix('='))
                    .and_then(|value| value.parse().ok())
                    .unwrap_or(0)
            };
            timing.reports += field("reports");
            timing.lag_p50_ms = timing.lag_p50_ms.max(field("lag_p50_ms"));
            timing.lag_p99_ms = timing.lag_p99_ms.max(field("lag_p99_ms"));
            timing.lag_max_ms = timing.lag_max_ms.max(field("lag_max_ms"));
            timing.handling_p99_us = timing.handling_p99_us.max(field("handling_p99_us"));
        }
        timing
    }
}
