//! `novamedic-agent`: the node agent's command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::{Args, CommandFactory, Parser, Subcommand, ValueEnum};
use novamedic_agent::classify::{self, ClassifyRequest};
use novamedic_agent::config::{self, flag_error, AgentConfig, ConfigError};
use novamedic_agent::executor::{Executor, ExecutorSettings};
use novamedic_agent::health;
use novamedic_agent::logwatch::{self, LogWatch, LogWatchSettings};
use novamedic_agent::notify::{self, ConnectionStatusLayer, Notifier};
use novamedic_agent::probe;
use novamedic_agent::report::{self, ReportBuilder};
use novamedic_agent::systemd::dbus::SystemdManager;
use novamedic_agent::systemd::watch::spawn_unit_watch;
use novamedic_agent::systemd::UnitObservation;
use novamedic_agent::transport::{self, TransitionLog, Transport};
use novamedic_docgen::GenerateDocsArgs;
use novamedic_proto::v1;
use novamedic_proto::view::NodeView;

/// Exit status for an unusable config file (sysexits.h EX_CONFIG). The
/// packaged unit lists it in RestartPreventExitStatus, so systemd does not
/// restart an agent whose config is wrong.
const EXIT_CONFIG: u8 = 78;

/// Exit status for any other failure at start.
const EXIT_FAILURE: u8 = 1;

/// How long `check` waits for systemd to answer before reporting the unit as
/// unknown.
const CHECK_UNIT_TIMEOUT: Duration = Duration::from_secs(3);

/// CPU usage is a difference between two readings; sysinfo needs them at
/// least 200 ms apart.
const CHECK_CPU_SAMPLE: Duration = Duration::from_millis(300);

/// Exit statuses, shown by `novamedic-agent --help`.
const EXIT_CODES_HELP: &str = "\
Exit status:
  0   success
  1   any other failure (starting the async runtime, writing the output)
  2   invalid command line
  66  classify: an input file could not be read (the others are still printed)
  78  invalid config file or flag; systemd does not restart the agent on it";

#[derive(Parser)]
#[command(
    name = "novamedic-agent",
    version,
    about = "novamedic's compute node agent",
    after_help = EXIT_CODES_HELP,
    subcommand_help_heading = "Commands"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Report to the controller and execute its commands until stopped.
    Run(RunArgs),
    /// Print this node's report once, without a controller.
    Check(CheckArgs),
    /// Diagnose copied nova-compute logs (plain or .gz) with the signature
    /// catalogue and print the classified records.
    Classify(ClassifyArgs),
    /// Write man pages and shell completions (used when building packages).
    #[command(hide = true)]
    GenerateDocs(GenerateDocsArgs),
}

#[derive(Args)]
struct ConfigArgs {
    /// Config file to read; a missing file is an error when this is given.
    #[arg(long, env = "NOVAMEDIC_AGENT_CONFIG", value_name = "PATH")]
    config: Option<PathBuf>,

    /// Name this node reports under [default: the host name].
    #[arg(long, value_name = "NAME")]
    node: Option<String>,

    /// nova-compute's systemd unit [default: detected].
    #[arg(long, value_name = "UNIT")]
    unit: Option<String>,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    common: ConfigArgs,

    /// Controller URL, for example https://controller:7400.
    #[arg(long, env = "NOVAMEDIC_CONTROLLER", value_name = "URL")]
    controller: Option<String>,

    /// Speak plain-text gRPC (an http:// URL) without a certificate. Only on
    /// a trusted network.
    #[arg(long)]
    insecure_plaintext: bool,

    /// Directory for the command ledger and restart budget.
    #[arg(long, value_name = "PATH")]
    state_dir: Option<PathBuf>,

    /// Seconds between periodic reports.
    #[arg(long, value_name = "SECONDS", value_parser = clap::value_parser!(u64).range(1..=3600))]
    report_interval: Option<u64>,
}

#[derive(Args)]
struct CheckArgs {
    #[command(flatten)]
    common: ConfigArgs,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

#[derive(Args)]
struct ClassifyArgs {
    /// Log files to read; files ending in .gz are decompressed.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,

    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Table)]
    output: Output,

    /// Directory of operator signature files, read in addition to the
    /// shipped catalogue.
    #[arg(long, value_name = "DIR", default_value = novamedic_logs::DEFAULT_OPERATOR_DIR)]
    signatures_dir: PathBuf,

    /// UTC offset of the node that wrote the logs, +HH:MM or -HH:MM (oslo.log
    /// writes local time without a zone) [default: this host's offset].
    #[arg(long, value_name = "OFFSET", value_parser = classify::parse_utc_offset, allow_hyphen_values = true)]
    utc_offset: Option<time::UtcOffset>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    Table,
    Json,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // `check` and `classify` print their findings themselves; only errors go
    // to the log there.
    let default_level = match cli.command {
        Command::Run(_) => "info",
        Command::Check(_) | Command::Classify(_) | Command::GenerateDocs(_) => "error",
    };
    // Only `run` talks to systemd; the other subcommands may run inside a
    // unit's ExecStartPre= and must not claim its readiness.
    let notifier = match cli.command {
        Command::Run(_) => Notifier::from_env(),
        _ => Notifier::inert(),
    };
    init_tracing(default_level, &notifier);
    // The time crate reads the local offset only while one thread runs, so
    // before the runtime starts its workers.
    let utc_offset = novamedic_logs::local_utc_offset();
    let cli_command = match cli.command {
        Command::Classify(args) => return classify_logs(args, utc_offset),
        Command::GenerateDocs(args) => return generate_docs(&args),
        other => other,
    };

    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    runtime.block_on(async {
        match cli_command {
            Command::Run(args) => run(args, utc_offset, notifier).await,
            Command::Check(args) => check(args, utc_offset).await,
            Command::Classify(args) => classify_logs(args, utc_offset),
            Command::GenerateDocs(args) => generate_docs(&args),
        }
    })
}

fn init_tracing(default_level: &str, notifier: &Notifier) {
    use tracing_subscriber::filter::{LevelFilter, Targets};
    use tracing_subscriber::prelude::*;

    let filter = tracing_subscriber::EnvFilter::try_from_env("NOVAMEDIC_LOG")
        .or_else(|_| tracing_subscriber::EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level));
    // Colors only on a terminal, so the journal gets plain text.
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_filter(filter);
    // The status line follows the transport's connection events whatever
    // level the operator chose for the log.
    let status = ConnectionStatusLayer::new(notifier.clone())
        .with_filter(Targets::new().with_target(notify::TRANSPORT_TARGET, LevelFilter::INFO));
    tracing_subscriber::registry()
        .with(output)
        .with(status)
        .init();
}

/// Reads the config file and applies the flags shared by every subcommand.
fn load_config(args: &ConfigArgs) -> Result<AgentConfig, ConfigError> {
    let mut config = match &args.config {
        Some(path) => AgentConfig::load(path, true)?,
        None => AgentConfig::load(std::path::Path::new(config::DEFAULT_CONFIG_PATH), false)?,
    };
    if let Some(node) = &args.node {
        config::validate_node_name(node).map_err(|message| flag_error("--node", message))?;
        config.node = node.clone();
    }
    if let Some(unit) = &args.unit {
        config::validate_unit_name(unit).map_err(|message| flag_error("--unit", message))?;
        config.nova_compute_unit = Some(unit.clone());
    }
    Ok(config)
}

fn config_failure(err: ConfigError) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(EXIT_CONFIG)
}

async fn run(args: RunArgs, utc_offset: time::UtcOffset, notifier: Notifier) -> ExitCode {
    let mut config = match load_config(&args.common) {
        Ok(config) => config,
        Err(err) => return config_failure(err),
    };
    if let Some(controller) = args.controller {
        if let Err(message) = config::validate_controller_url(&controller) {
            eprintln!("error: invalid --controller: {message}");
            return ExitCode::from(EXIT_CONFIG);
        }
        config.controller = controller;
    }
    if let Some(state_dir) = args.state_dir {
        if !state_dir.is_absolute() {
            let message = format!("must be an absolute path, got {}", state_dir.display());
            return config_failure(flag_error("--state-dir", message));
        }
        config.state_dir = state_dir;
    }
    if let Some(seconds) = args.report_interval {
        config.report_interval = Duration::from_secs(seconds);
    }
    if args.insecure_plaintext {
        config.tls = None;
    }
    if let Err(err) = config.check_transport() {
        return config_failure(err);
    }
    if config.tls.is_none() {
        tracing::warn!(controller = %config.controller, "plain-text gRPC: the stream is not encrypted and the controller is not authenticated");
    }

    let (unit_rx, _watch_task) = spawn_unit_watch(config.nova_compute_unit.clone());
    let executor = match Executor::open(
        SystemdManager::new(),
        unit_rx.clone(),
        &ExecutorSettings::from_config(&config),
    ) {
        Ok(executor) => executor,
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };

    let transitions = Arc::new(TransitionLog::default());
    transport::spawn_transition_recorder(unit_rx.clone(), transitions.clone());

    tracing::info!(
        node = %config.node,
        controller = %config.controller,
        state_dir = %config.state_dir.display(),
        report_interval_seconds = config.report_interval.as_secs(),
        rpc_probe_enabled = config.rpc_probe.enabled,
        rpc_probe_interval_seconds = config.rpc_probe.interval.as_secs(),
        rpc_probe_timeout_seconds = config.rpc_probe.timeout.as_secs(),
        version = env!("CARGO_PKG_VERSION"),
        "agent starting"
    );
    let log_watch = match LogWatch::start(
        LogWatchSettings::from_config(&config, utc_offset),
        logwatch::node_resolver(&config, unit_rx.clone()),
    ) {
        Ok(log_watch) => log_watch,
        Err(err) => {
            eprintln!("error: cannot start the log watch thread: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let search_watch = log_watch.clone();
    let executor =
        Arc::new(executor.with_log_search(Arc::new(move || search_watch.search_source())));
    let probe = probe::spawn_probe(&config, unit_rx.clone());
    let builder = ReportBuilder::new(&config)
        .with_log_watch(log_watch.clone())
        .with_probe(probe.clone());

    // Ready means the collectors have run once under the unit's sandbox; the
    // controller may still be unreachable, which the status line then reports.
    let observation = unit_rx.borrow().clone();
    let first_build = tokio::task::spawn_blocking(move || {
        let mut builder = builder;
        let report = builder.build(&observation, v1::ReportTrigger::Connect, 0);
        (builder, report)
    });
    let (builder, first_report) = match first_build.await {
        Ok(built) => built,
        Err(err) => {
            eprintln!("error: collecting the first report failed: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let health = first_report
        .health
        .map(|health| health.status)
        .unwrap_or_default();
    let health = v1::HealthStatus::try_from(health).unwrap_or_default();
    tracing::info!(health = health.as_str_name(), "first report collected");
    notifier.ready(&format!(
        "first report collected; connecting to {}",
        config.controller
    ));

    let transport =
        Transport::new(config, executor, builder, unit_rx, transitions).with_probe(probe);
    // The watchdog pings run in this task, beside the transport's loop, so
    // a loop that blocks the thread stops them and systemd restarts the
    // agent. The watchdog future never completes.
    tokio::select! {
        () = transport.run(shutdown_signal()) => {}
        () = notify::run_watchdog(notifier.clone(), notify::watchdog_interval()) => {}
    }
    notifier.stopping();
    let _ = tokio::task::spawn_blocking(move || log_watch.stop()).await;
    tracing::info!("agent stopped");
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT and logs which one arrived.
async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; stop the agent with SIGINT");
            std::future::pending::<()>().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}

async fn check(args: CheckArgs, utc_offset: time::UtcOffset) -> ExitCode {
    let config = match load_config(&args.common) {
        Ok(config) => config,
        Err(err) => return config_failure(err),
    };

    let started = Instant::now();
    let (mut unit_rx, watch_task) = spawn_unit_watch(config.nova_compute_unit.clone());
    let mut builder = ReportBuilder::new(&config);
    // Wait for the first real reading of the unit, or give up and report it
    // as unknown with the watch's own reason.
    let _ = tokio::time::timeout(CHECK_UNIT_TIMEOUT, unit_rx.changed()).await;
    let remaining = CHECK_CPU_SAMPLE.saturating_sub(started.elapsed());
    tokio::time::sleep(remaining).await;

    let observation: UnitObservation = unit_rx.borrow().clone();
    watch_task.abort();
    let settings = LogWatchSettings::from_config(&config, utc_offset);
    let mut resolve_targets = logwatch::node_resolver(&config, unit_rx.clone());
    let rpc_probe = if config.rpc_probe.enabled {
        let probe_config = config.clone();
        let probe_unit_rx = unit_rx.clone();
        let target = tokio::task::spawn_blocking(move || {
            probe::resolve_target(&probe_config, &probe_unit_rx)
        })
        .await
        .unwrap_or_else(|err| Err(format!("reading nova's config failed: {err}")));
        Some(probe::probe_once(target, config.rpc_probe.timeout).await)
    } else {
        None
    };
    let report = tokio::task::spawn_blocking(move || {
        let mut report = builder.build(&observation, v1::ReportTrigger::Connect, 1);
        report.rpc_probe = rpc_probe;
        let targets = resolve_targets();
        report.log = Some(logwatch::read_recent(
            &settings,
            &targets,
            transport::unix_ms_now(),
        ));
        report.health = Some(health::evaluate(&report, &config.health));
        report
    })
    .await
    .expect("report builder panicked");

    let health = report.health.clone().unwrap_or_default();
    let view = NodeView::from_report(&config.node, Some(&report), &health);
    let text = match args.output {
        Output::Json => match serde_json::to_string_pretty(&view) {
            Ok(json) => json + "\n",
            Err(err) => {
                eprintln!("error: cannot encode the report as JSON: {err}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        Output::Table => report::render_table(&view),
    };
    write_stdout(&text)
}

/// Exit status of `classify` when a file could not be read (sysexits.h
/// EX_NOINPUT); the files that could be read are still printed.
const EXIT_NO_INPUT: u8 = 66;

/// Runs `classify`: prints the diagnosis of each file.
fn classify_logs(args: ClassifyArgs, host_utc_offset: time::UtcOffset) -> ExitCode {
    let request = ClassifyRequest {
        files: args.files,
        signatures_dir: args.signatures_dir,
        utc_offset: args.utc_offset.unwrap_or(host_utc_offset),
    };
    let outcome = classify::classify_files(&request);
    let text = match args.output {
        Output::Json => match serde_json::to_string_pretty(&outcome) {
            Ok(json) => json + "\n",
            Err(err) => {
                eprintln!("error: cannot encode the diagnosis as JSON: {err}");
                return ExitCode::from(EXIT_FAILURE);
            }
        },
        Output::Table => classify::render(&outcome),
    };
    let written = write_stdout(&text);
    for file in &outcome.files {
        if let Some(error) = &file.error {
            eprintln!("error: {error}");
        }
    }
    if !outcome.all_read() {
        return ExitCode::from(EXIT_NO_INPUT);
    }
    written
}

fn generate_docs(args: &GenerateDocsArgs) -> ExitCode {
    novamedic_docgen::run(args, Cli::command())
}

/// Writes `text` to stdout. A closed pipe (`check | head`) is not an error.
fn write_stdout(text: &str) -> ExitCode {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: cannot write to stdout: {err}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}
