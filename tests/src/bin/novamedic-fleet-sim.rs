//! `novamedic-fleet-sim`: many simulated agents on one controller, with
//! scripted faults; logs what the controller asked of them at the end.
//! tests/README.md describes the flags and the fault script.

use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use novamedic_tests::fleet_sim::fault::{parse_duration, FaultSpec};
use novamedic_tests::fleet_sim::{raise_open_file_limit, RunningFleet, SimConfig};
use tracing_subscriber::EnvFilter;

/// Simulate a fleet of novamedic agents against one controller.
#[derive(Debug, Parser)]
#[command(name = "novamedic-fleet-sim")]
struct Args {
    /// Controller URL. Only plain text: start the controller with
    /// `--insecure-plaintext` or `[tls] enabled = false`.
    #[arg(long, default_value = "http://127.0.0.1:7400")]
    controller: String,
    /// Simulated nodes, each with its own connection and stream.
    #[arg(long, default_value_t = 10)]
    nodes: usize,
    /// Node names are this prefix, a dash and a five-digit number.
    #[arg(long, default_value = "sim")]
    name_prefix: String,
    /// Time between reports, for example 10s or 500ms.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    interval: Duration,
    /// Random share of the interval added to or taken off each wait, 0 to 1.
    #[arg(long, default_value_t = 0.1)]
    jitter: f64,
    /// Time a simulated restart takes before its result is sent.
    #[arg(long, default_value = "200ms", value_parser = parse_duration)]
    restart_time: Duration,
    /// A fault, for example "at=30s nodes=20% kind=unit_failed"; repeat for
    /// several. Times count from the moment the whole fleet is connected.
    #[arg(long = "fault", value_name = "SPEC")]
    faults: Vec<FaultSpec>,
    /// Run this long after the fleet connected, then stop; without it, run
    /// until SIGINT or SIGTERM.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Seed of the choice of faulty nodes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the summary as JSON to this file too.
    #[arg(long, value_name = "PATH")]
    summary_json: Option<std::path::PathBuf>,
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = Args::parse();
    if !(0.0..=1.0).contains(&args.jitter) {
        anyhow::bail!("--jitter {} is not a share from 0 to 1", args.jitter);
    }
    let open_files = raise_open_file_limit()?;
    tracing::info!(open_files, nodes = args.nodes, "open-file limit raised");

    let config = SimConfig {
        controller: args.controller,
        nodes: args.nodes,
        name_prefix: args.name_prefix,
        report_interval: args.interval,
        jitter: args.jitter,
        restart_time: args.restart_time,
        seed: args.seed,
        ..SimConfig::default()
    };
    let fleet = RunningFleet::start(config, args.faults)?;
    fleet.block_on(async {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        let duration = args.duration.unwrap_or(Duration::MAX);
        tokio::select! {
            _ = tokio::time::sleep(duration) => {}
            _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "stopping"),
            _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "stopping"),
        }
        anyhow::Ok(())
    })?;
    let summary = fleet.stop();
    summary.log();
    if let Some(path) = args.summary_json {
        let json = serde_json::to_string_pretty(&summary)?;
        std::fs::write(&path, json)
            .with_context(|| format!("cannot write the summary to {}", path.display()))?;
    }
    Ok(())
}
