//! Benchmarks of the vertical slice: the release agent as the packaged unit
//! under systemd 252 in an nspawn container, the stand-in nova-compute next
//! to it, and the release controller on the host's 127.0.0.1.
//!
//! One run measures, in order:
//! 1. the agent's memory and CPU use over a window, next to Prometheus's
//!    node exporter on the host, scraped over 127.0.0.1 during the same
//!    window;
//! 2. the time from `systemctl kill -s KILL nova-compute` to the controller's
//!    ListNodes showing the node failed;
//! 3. the time `novamedic restart` takes, next to systemd's restart job.
//!
//! It prints Markdown tables on stdout and progress on stderr. Needs root,
//! the Debian tree from `scripts/build-rootfs.sh`, Debian's
//! `prometheus-node-exporter`, and release binaries from
//! `cargo build --release --bins -p novamedic -p novamedic-agent`.
//! `--help` lists the settings.

mod crash;
mod footprint;
mod machine;
mod node_exporter;
mod operator;
mod proc_stats;
mod restart;
mod stats;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use novamedic_tests::slice::{
    boot_compute_node, free_port, AgentSettings, ComputeNode, Controller, AGENT_UNIT,
};
use novamedic_tests::system_env::{require_system_test_env, SystemTestEnv};

use crate::node_exporter::NodeExporter;
use crate::operator::{is_healthy, Operator};

const USAGE: &str = "\
Usage: cargo bench -p novamedic-tests --bench slice -- [OPTIONS]

Options (defaults in brackets):
  --window-seconds N            footprint window [120]
  --report-interval-seconds N   agent's report_interval_seconds [10]
  --scrape-interval-seconds N   node exporter scrape interval [10]
  --crash-runs N                kills of nova-compute [20]
  --poll-interval-ms N          ListNodes polling period while a kill is detected [5]
  --restart-runs N              runs of `novamedic restart` [10]
  --settle-seconds N            agent's restart_settle_seconds [2]
  --help                        print this text";

/// The agent's restart budget in the bench: far more restarts than the
/// runs make, so the budget never rejects one.
const RESTART_BUDGET: (u32, u64) = (1000, 3600);

/// Time for the agent to connect and report nova-compute healthy.
const FIRST_REPORT_TIMEOUT: Duration = Duration::from_secs(60);

/// The bench's settings, from the command line.
#[derive(Debug, Clone)]
struct Settings {
    window: Duration,
    report_interval_seconds: u64,
    scrape_interval: Duration,
    crash_runs: usize,
    poll_interval: Duration,
    restart_runs: usize,
    settle_seconds: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window: Duration::from_secs(120),
            report_interval_seconds: 10,
            scrape_interval: Duration::from_secs(10),
            crash_runs: 20,
            poll_interval: Duration::from_millis(5),
            restart_runs: 10,
            settle_seconds: 2,
        }
    }
}

/// What the command line asks for.
enum Invocation {
    Run(Settings),
    Help,
    /// `cargo test --benches` runs bench targets without `--bench`; the
    /// bench takes minutes and needs root, so it only runs under
    /// `cargo bench`.
    NotBench,
}

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Invocation> {
    let mut settings = Settings::default();
    let mut bench = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        if arg == "--bench" {
            bench = true;
            continue;
        }
        if arg == "--help" || arg == "-h" {
            return Ok(Invocation::Help);
        }
        let mut value = |name: &str| -> Result<u64> {
            let text = args
                .next()
                .with_context(|| format!("{name} needs a value"))?;
            let number: u64 = text.parse().with_context(|| {
                format!("invalid {name} value {text:?}: expected a whole number")
            })?;
            if number == 0 {
                bail!("invalid {name} value 0: expected at least 1");
            }
            Ok(number)
        };
        match arg.as_str() {
            "--window-seconds" => settings.window = Duration::from_secs(value(&arg)?),
            "--report-interval-seconds" => settings.report_interval_seconds = value(&arg)?,
            "--scrape-interval-seconds" => {
                settings.scrape_interval = Duration::from_secs(value(&arg)?)
            }
            "--crash-runs" => settings.crash_runs = value(&arg)? as usize,
            "--poll-interval-ms" => settings.poll_interval = Duration::from_millis(value(&arg)?),
            "--restart-runs" => settings.restart_runs = value(&arg)? as usize,
            "--settle-seconds" => settings.settle_seconds = value(&arg)?,
            other => bail!("unknown argument {other:?}\n\n{USAGE}"),
        }
    }
    if !bench {
        return Ok(Invocation::NotBench);
    }
    Ok(Invocation::Run(settings))
}

fn main() -> ExitCode {
    let settings = match parse_args(std::env::args().skip(1)) {
        Ok(Invocation::Run(settings)) => settings,
        Ok(Invocation::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Invocation::NotBench) => {
            eprintln!("slice bench: not run without --bench; use `cargo bench -p novamedic-tests --bench slice`");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(2);
        }
    };
    match run(&settings) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Everything the run measured, printed together at the end.
struct Results {
    footprint: footprint::Footprint,
    crashes: Vec<crash::CrashRun>,
    restarts: Vec<restart::RestartRun>,
    agent_at_end: proc_stats::ProcessSample,
}

fn run(settings: &Settings) -> Result<()> {
    let Some(env) = require_system_test_env() else {
        bail!("this machine cannot run the slice bench (see above)");
    };
    if !Path::new(node_exporter::BINARY).is_file() {
        bail!(
            "{} not found; install it with `apt-get install prometheus-node-exporter`",
            node_exporter::BINARY
        );
    }
    let (env, _release_link) = release_env(env)?;

    eprintln!("starting the controller and booting the compute node container");
    let mut controller = Controller::start(&env)?;
    let agent_settings = AgentSettings {
        report_interval_seconds: settings.report_interval_seconds,
        restart_settle_seconds: settings.settle_seconds,
        restart_budget: Some(RESTART_BUDGET),
        tls_dir: Some(controller.tls_dir()),
    };
    let mut node = boot_compute_node(&env, "bench", &controller.url(), &agent_settings)?;

    let results = measure_all(settings, &env, &controller, &node);
    if let Err(err) = &results {
        eprintln!("--- agent journal ---\n{}", node.agent_journal());
        eprintln!("--- controller log ---\n{}", controller.log());
        eprintln!("measurement failed: {err:#}");
    }

    eprintln!("shutting down the container and the controller");
    let shutdown = node.container.shutdown();
    controller.stop();
    let results = results?;
    shutdown.context("container shutdown failed")?;

    print_report(settings, &results);
    Ok(())
}

fn measure_all(
    settings: &Settings,
    env: &SystemTestEnv,
    controller: &Controller,
    node: &ComputeNode,
) -> Result<Results> {
    let mut operator = Operator::connect(&controller.url())?;
    operator.poll_until(
        node.name(),
        Duration::from_millis(100),
        FIRST_REPORT_TIMEOUT,
        "healthy",
        is_healthy,
    )?;
    let unit_processes = proc_stats::unit_processes(node.container.cgroup_dirs(), AGENT_UNIT)?;
    let agent_pid = unit_processes
        .iter()
        .find(|p| p.comm == "novamedic-agent")
        .map(|p| p.pid)
        .with_context(|| {
            format!("no novamedic-agent process in {AGENT_UNIT}: {unit_processes:?}")
        })?;

    eprintln!(
        "section 1: footprint over {} s (processes of the agent's unit: {unit_processes:?})",
        settings.window.as_secs()
    );
    let footprint = {
        let exporter = NodeExporter::start(free_port()?)?;
        footprint::measure(footprint::Subjects {
            operator: &mut operator,
            node: node.name(),
            unit_processes,
            exporter: &exporter,
            window: settings.window,
            scrape_interval: settings.scrape_interval,
        })?
    };

    eprintln!("section 2: {} kills of nova-compute", settings.crash_runs);
    let crashes = crash::measure(
        &mut operator,
        node,
        settings.crash_runs,
        settings.poll_interval,
    )?;

    eprintln!(
        "section 3: {} runs of novamedic restart",
        settings.restart_runs
    );
    let restarts = restart::measure(
        &mut operator,
        &env.binary("novamedic"),
        &controller.url(),
        node,
        settings.restart_runs,
    )?;

    Ok(Results {
        footprint,
        crashes,
        restarts,
        agent_at_end: proc_stats::sample(agent_pid)?,
    })
}

/// Returns an environment whose `binary()` paths are the release builds.
///
/// The harness takes binaries from `TARGET/debug`; a temporary directory
/// with a `debug` symlink to `TARGET/release` points it at the release
/// ones without changing the harness. The directory lives as long as the
/// returned guard.
fn release_env(env: SystemTestEnv) -> Result<(SystemTestEnv, tempfile::TempDir)> {
    let release_dir = env.target_dir.join("release");
    for name in ["novamedic", "novamedic-agent"] {
        let path = release_dir.join(name);
        if !path.is_file() {
            bail!(
                "{} not found; build it with `cargo build --release --bins -p novamedic \
                 -p novamedic-agent`",
                path.display()
            );
        }
    }
    let link_dir = tempfile::Builder::new()
        .prefix("novamedic-bench-")
        .tempdir()?;
    std::os::unix::fs::symlink(&release_dir, link_dir.path().join("debug"))
        .context("cannot link the release directory")?;
    let env = SystemTestEnv {
        target_dir: link_dir.path().to_path_buf(),
        ..env
    };
    Ok((env, link_dir))
}

fn print_report(settings: &Settings, results: &Results) {
    println!("# novamedic slice benchmark\n");
    machine::print_description();
    println!(
        "- agent: release build, report_interval_seconds = {}, restart_settle_seconds = {}, \
         [restart_budget] max_restarts = {}, window_seconds = {}",
        settings.report_interval_seconds,
        settings.settle_seconds,
        RESTART_BUDGET.0,
        RESTART_BUDGET.1
    );

    println!("\n## Agent footprint next to the node exporter\n");
    footprint::print(&results.footprint);
    println!(
        "Agent after all three sections: VmRSS {} MiB, VmHWM {} MiB.",
        stats::mib(results.agent_at_end.rss_bytes),
        stats::mib(results.agent_at_end.peak_rss_bytes)
    );

    println!("\n## nova-compute crash to controller\n");
    crash::print(&results.crashes, settings.poll_interval);

    println!("\n## novamedic restart\n");
    restart::print(
        &results.restarts,
        Duration::from_secs(settings.settle_seconds),
    );
}
