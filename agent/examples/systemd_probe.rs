//! Drives the agent's systemd code against a real systemd, for the system
//! tests that run it inside a `systemd-nspawn` container.
//!
//! Every result is one line on stdout that starts with a keyword:
//! `snapshot`, `error`, `report`, `observation`, `result` or `detection`.
//! Logs go to stderr.
//!
//! ```text
//! systemd_probe snapshot fake-nova.service
//! systemd_probe restart fake-nova.service --settle-ms 3000 --deadline-ms 30000
//! systemd_probe watch --unit fake-nova.service --seconds 10
//! systemd_probe detect
//! systemd_probe execute --unit fake-nova.service --state-dir /run/probe --id c-1
//! ```

use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use novamedic_agent::executor::{Executor, ExecutorSettings};
use novamedic_agent::systemd::dbus::SystemdManager;
use novamedic_agent::systemd::detect::detect_unit;
use novamedic_agent::systemd::watch::spawn_unit_watch;
use novamedic_agent::systemd::{ServiceManager, UnitObservation};
use novamedic_proto::v1;

#[derive(Parser)]
#[command(about = "Exercise novamedic-agent's systemd code against the running systemd")]
struct Args {
    #[command(subcommand)]
    command: Probe,
}

#[derive(Subcommand)]
enum Probe {
    /// Print one snapshot of UNIT.
    Snapshot { unit: String },
    /// Restart UNIT and print the report.
    Restart {
        unit: String,
        /// How long the unit must stay active, in milliseconds.
        #[arg(long, default_value_t = 3000)]
        settle_ms: u64,
        /// Time for the whole restart, in milliseconds.
        #[arg(long, default_value_t = 30000)]
        deadline_ms: u64,
    },
    /// Print every observation of the unit watch for SECONDS seconds, each
    /// with the milliseconds since the watch started and the Unix time in
    /// milliseconds.
    Watch {
        /// The configured unit; detected when absent.
        #[arg(long)]
        unit: Option<String>,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// Print which nova-compute unit detection picks.
    Detect {
        #[arg(long)]
        unit: Option<String>,
    },
    /// Run one restart command through the executor with a real state dir.
    Execute {
        #[arg(long)]
        unit: String,
        #[arg(long)]
        state_dir: std::path::PathBuf,
        #[arg(long)]
        id: String,
        #[arg(long, default_value_t = 3000)]
        settle_ms: u64,
        #[arg(long, default_value_t = 30000)]
        timeout_ms: u64,
    },
}

#[tokio::main]
async fn main() {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let ok = match args.command {
        Probe::Snapshot { unit } => snapshot(&unit).await,
        Probe::Restart {
            unit,
            settle_ms,
            deadline_ms,
        } => restart(&unit, settle_ms, deadline_ms).await,
        Probe::Watch { unit, seconds } => watch(unit, seconds).await,
        Probe::Detect { unit } => detect(unit.as_deref()).await,
        Probe::Execute {
            unit,
            state_dir,
            id,
            settle_ms,
            timeout_ms,
        } => execute(unit, state_dir, id, settle_ms, timeout_ms).await,
    };
    std::process::exit(if ok { 0 } else { 1 });
}

async fn snapshot(unit: &str) -> bool {
    let manager = SystemdManager::new();
    match manager.unit_snapshot(unit).await {
        Ok(snapshot) => println!("snapshot {snapshot:?}"),
        Err(err) => {
            println!("error {err:?}");
            return false;
        }
    }
    true
}

async fn restart(unit: &str, settle_ms: u64, deadline_ms: u64) -> bool {
    let manager = SystemdManager::new();
    let started = Instant::now();
    let settle = Duration::from_millis(settle_ms);
    let deadline = Duration::from_millis(deadline_ms);
    match manager.restart_unit(unit, settle, deadline).await {
        Ok(report) => {
            println!(
                "report elapsed_ms={} {report:?}",
                started.elapsed().as_millis()
            );
            report.stayed_active
        }
        Err(err) => {
            println!("error {err:?}");
            false
        }
    }
}

async fn watch(unit: Option<String>, seconds: u64) -> bool {
    let started = Instant::now();
    let (mut observations, handle) = spawn_unit_watch(unit);
    let stop_at = tokio::time::Instant::now() + Duration::from_secs(seconds);
    loop {
        let observation: UnitObservation = observations.borrow_and_update().clone();
        println!(
            "observation ms={} unix_ms={} {observation:?}",
            started.elapsed().as_millis(),
            unix_ms_now()
        );
        let changed = tokio::time::timeout_at(stop_at, observations.changed()).await;
        if !matches!(changed, Ok(Ok(()))) {
            break;
        }
    }
    handle.abort();
    true
}

async fn detect(unit: Option<&str>) -> bool {
    let manager = SystemdManager::new();
    match detect_unit(&manager, unit).await {
        Ok(detection) => {
            println!("detection {detection:?}");
            true
        }
        Err(err) => {
            println!("error {err:?}");
            false
        }
    }
}

async fn execute(
    unit: String,
    state_dir: std::path::PathBuf,
    id: String,
    settle_ms: u64,
    timeout_ms: u64,
) -> bool {
    let settings = ExecutorSettings {
        state_dir,
        restart_settle: Duration::from_millis(settle_ms),
        restart_budget_max: 3,
        restart_budget_window: Duration::from_secs(3600),
    };
    let (_unit_tx, unit_rx) = tokio::sync::watch::channel(UnitObservation::Unknown {
        unit: Some(unit.clone()),
        reason: "set by systemd_probe".to_string(),
    });
    let executor = match Executor::open(SystemdManager::new(), unit_rx, &settings) {
        Ok(executor) => executor,
        Err(err) => {
            println!("error {err}");
            return false;
        }
    };
    let command = v1::Command {
        command_id: id,
        timeout_ms,
        requested_by: "systemd_probe".to_string(),
        reason: "system test".to_string(),
        action: Some(v1::command::Action::RestartUnit(v1::RestartUnit {
            unit,
            reset_failed: false,
        })),
    };
    let result = executor.execute(command, Instant::now()).await;
    println!(
        "result outcome={} {result:?}",
        result.outcome().as_str_name()
    );
    true
}

fn unix_ms_now() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|since| since.as_millis())
        .unwrap_or(0)
}
