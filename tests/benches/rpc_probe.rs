//! Time from freezing nova-compute with SIGSTOP to the controller showing
//! its RPC probe failing, next to the time nova itself takes to call the
//! service down (`service_down_time`, 60 s by default).
//!
//! The real nova stack, the agent and the controller run in one
//! private-network container (`tests/src/private_nova.rs`). nova-compute
//! gets nova's default `report_interval` of 10 s for this run. Each probe
//! run waits for a probe to find nova-compute alive and then for a shift
//! (run k of n waits (k-1)/n of the probe interval), freezes nova-compute,
//! polls `novamedic nodes -o json` inside until the probe state is
//! `not_responding`, then resumes it. The nova run freezes it once more and polls the conductor's
//! `services` row until its `updated_at` is older than 60 s, which is when
//! nova's API and scheduler start calling the service down.
//!
//! Needs root, the nova tree from `scripts/build-nova-rootfs.sh` and the
//! debug binaries from `cargo build --workspace --bins`. Prints a Markdown
//! table on stdout and progress on stderr.

use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use novamedic_tests::container::Bind;
use novamedic_tests::nova::{require_nova_env, NOVA_COMPUTE_UNIT};
use novamedic_tests::private_nova::{
    boot_private_nova_stack, PrivateNodeOptions, PrivateNovaStack,
};

const USAGE: &str = "\
Usage: cargo bench -p novamedic-tests --bench rpc_probe -- [OPTIONS]

Options (defaults in brackets):
  --runs N                 SIGSTOP runs measured against the probe [5]
  --interval-seconds N     agent's [rpc_probe] interval_seconds [10]
  --timeout-seconds N      agent's [rpc_probe] timeout_seconds [5]
  --skip-nova              do not measure nova's own service_down_time
  --help                   print this text";

/// nova's default `service_down_time`, in seconds.
const SERVICE_DOWN_TIME_SECONDS: f64 = 60.0;

/// nova-compute.conf of the run: the fake driver and nova's default
/// report_interval, so its heartbeat is the one of a real deployment.
const COMPUTE_CONF: &str = "[DEFAULT]\ncompute_driver = fake.FakeDriver\nreport_interval = 10\n";

/// Polling period of the CLI while a freeze is detected.
const POLL: Duration = Duration::from_millis(200);

struct Settings {
    runs: usize,
    interval_seconds: u64,
    timeout_seconds: u64,
    measure_nova: bool,
}

fn parse_args() -> Result<Option<Settings>> {
    let mut settings = Settings {
        runs: 5,
        interval_seconds: 10,
        timeout_seconds: 5,
        measure_nova: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut number = |name: &str| -> Result<u64> {
            let value = args
                .next()
                .with_context(|| format!("{name} needs a value"))?;
            value
                .parse()
                .with_context(|| format!("{name} must be a whole number, got {value:?}"))
        };
        match arg.as_str() {
            "--runs" => settings.runs = number("--runs")? as usize,
            "--interval-seconds" => settings.interval_seconds = number("--interval-seconds")?,
            "--timeout-seconds" => settings.timeout_seconds = number("--timeout-seconds")?,
            "--skip-nova" => settings.measure_nova = false,
            "--help" => return Ok(None),
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => bail!("unknown option {other:?}\n{USAGE}"),
        }
    }
    Ok(Some(settings))
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let Some(settings) = parse_args()? else {
        println!("{USAGE}");
        return Ok(());
    };
    let Some((env, rootfs)) = require_nova_env() else {
        bail!("this machine cannot run the real-nova bench");
    };
    let files = tempfile::tempdir()?;
    let conf = files.path().join("nova-compute.conf");
    std::fs::write(&conf, COMPUTE_CONF)?;
    let options = PrivateNodeOptions {
        agent_config_extra: format!(
            "\n[rpc_probe]\ninterval_seconds = {}\ntimeout_seconds = {}\n",
            settings.interval_seconds, settings.timeout_seconds
        ),
        binds: vec![Bind::read_only(&conf, "/etc/nova/nova-compute.conf")],
        controller_policy: None,
    };
    eprintln!("booting the nova stack");
    let stack = boot_private_nova_stack(&env, &rootfs, "bench-probe", &options)?;
    wait_for_state(&stack, "alive", Duration::from_secs(180))?;

    let interval = Duration::from_secs(settings.interval_seconds);
    let mut probe_ms = Vec::new();
    for run in 1..=settings.runs {
        // A probe has just found nova-compute alive, so freezing after a
        // shift of (run - 1) / runs of the interval spreads the runs over it.
        thread::sleep(interval * (run as u32 - 1) / settings.runs as u32);
        freeze(&stack, "SIGSTOP")?;
        let started = Instant::now();
        wait_for_state(&stack, "not_responding", Duration::from_secs(120))?;
        let elapsed = started.elapsed();
        eprintln!(
            "run {run}: probe failing after {:.1} s",
            elapsed.as_secs_f64()
        );
        probe_ms.push(elapsed.as_secs_f64() * 1000.0);
        freeze(&stack, "SIGCONT")?;
        wait_for_state(&stack, "alive", Duration::from_secs(120))?;
    }

    let nova_ms = if settings.measure_nova {
        freeze(&stack, "SIGSTOP")?;
        let started = Instant::now();
        wait_for_nova_down(&stack, Duration::from_secs(300))?;
        let elapsed = started.elapsed();
        eprintln!(
            "nova calls the service down after {:.1} s",
            elapsed.as_secs_f64()
        );
        freeze(&stack, "SIGCONT")?;
        Some(elapsed.as_secs_f64() * 1000.0)
    } else {
        None
    };

    println!(
        "| measure (probe interval {} s, timeout {} s) | runs | min | median | max |",
        settings.interval_seconds, settings.timeout_seconds
    );
    println!("|---|---|---|---|---|");
    let mut sorted = probe_ms.clone();
    sorted.sort_by(f64::total_cmp);
    if let (Some(min), Some(max)) = (sorted.first(), sorted.last()) {
        let median = sorted[sorted.len() / 2];
        println!(
            "| SIGSTOP to `novamedic nodes` showing not_responding | {} | {:.1} s | {:.1} s | {:.1} s |",
            sorted.len(),
            min / 1000.0,
            median / 1000.0,
            max / 1000.0
        );
    }
    if let Some(nova) = nova_ms {
        println!(
            "| SIGSTOP to nova's services row older than service_down_time ({SERVICE_DOWN_TIME_SECONDS:.0} s) | 1 | {0:.1} s | {0:.1} s | {0:.1} s |",
            nova / 1000.0
        );
    }
    Ok(())
}

fn freeze(stack: &PrivateNovaStack, signal: &str) -> Result<()> {
    stack.node.container.exec_ok(&[
        "systemctl",
        "kill",
        "--kill-whom=main",
        &format!("--signal={signal}"),
        NOVA_COMPUTE_UNIT,
    ])?;
    Ok(())
}

fn wait_for_state(stack: &PrivateNovaStack, state: &str, timeout: Duration) -> Result<()> {
    stack
        .wait_for_node(timeout, &format!("probe {state}"), |view| {
            view["rpc_probe"]["state"] == state
        })
        .map(|_| ())
        .with_context(|| stack.diagnostics())
}

/// Waits until the conductor's row for nova-compute was last updated more
/// than `service_down_time` ago, nova's own test for a service that is down
/// (`nova.servicegroup.drivers.db.DbDriver.is_up`).
fn wait_for_nova_down(stack: &PrivateNovaStack, timeout: Duration) -> Result<()> {
    let script = format!(
        "import sqlite3, datetime\n\
         db = sqlite3.connect('file:/var/lib/nova/nova.sqlite?mode=ro', uri=True, timeout=5)\n\
         row = db.execute(\"select coalesce(updated_at, created_at) from services \
         where \\\"binary\\\" = 'nova-compute' and deleted = 0\").fetchone()\n\
         last = datetime.datetime.fromisoformat(row[0])\n\
         age = (datetime.datetime.utcnow() - last).total_seconds()\n\
         print('down' if age > {SERVICE_DOWN_TIME_SECONDS} else 'up')"
    );
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(output) = stack.node.container.exec_ok(&["python3", "-c", &script]) {
            if output.trim() == "down" {
                return Ok(());
            }
        }
        thread::sleep(POLL);
    }
    bail!("nova never called nova-compute down within {timeout:?}")
}
