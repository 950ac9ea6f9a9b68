//! The `novamedic` command line: `serve` runs the controller, the other
//! commands are an operator client of a running controller.

mod certs;
mod client;
mod diagnose;
mod duration;
mod logs;
mod render;
mod table;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use client::{Failure, Target, MAX_REPLY_BYTES};
pub use diagnose::{DiagnoseArgs, OpenStackArgs};
pub use logs::{LogsArgs, When};
pub use table::escape_control;

/// Exit codes, also shown in `--help`.
pub mod exit {
    /// The command failed, or the restart's outcome was failed or rejected.
    pub const FAILED: u8 = 1;
    /// Invalid arguments or configuration.
    pub const USAGE: u8 = 2;
    /// The node is not known to the controller.
    pub const NOT_FOUND: u8 = 3;
    /// The controller or the node's agent cannot be reached.
    pub const UNAVAILABLE: u8 = 4;
    /// No outcome arrived in time; the command may still complete.
    pub const TIMED_OUT: u8 = 5;
    /// The restart was rejected: another restart of the node is in progress.
    pub const IN_PROGRESS: u8 = 6;
    /// `serve` only: another controller holds the database's lock.
    pub const DB_IN_USE: u8 = 7;
}

const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (for restart: the outcome was succeeded)
  1  failed, or the restart was rejected or failed on the node, or permission
     denied (the client certificate lacks the role the command needs)
  2  invalid arguments or configuration
  3  node not known to the controller
  4  controller not reachable or not a novamedic controller, or the node's agent
     not connected
  5  no outcome in time; the command may still complete (see `novamedic events`)
  6  restart rejected: another restart of the node is in progress
  7  serve: the database is in use by another novamedic controller";

/// novamedic: watch and restart nova-compute across an OpenStack fleet.
#[derive(Debug, Parser)]
#[command(name = "novamedic", version, after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// URL of the controller to query: https:// for mutual TLS, http:// only
    /// for a controller started with --insecure-plaintext.
    #[arg(
        long,
        global = true,
        env = "NOVAMEDIC_CONTROLLER",
        default_value = "https://127.0.0.1:7400"
    )]
    pub controller: String,

    /// Operator certificate (PEM) presented to an https:// controller.
    #[arg(long, global = true, env = "NOVAMEDIC_TLS_CERT", value_name = "PATH")]
    pub tls_cert: Option<PathBuf>,

    /// Private key of --tls-cert (PEM).
    #[arg(long, global = true, env = "NOVAMEDIC_TLS_KEY", value_name = "PATH")]
    pub tls_key: Option<PathBuf>,

    /// CA certificate (PEM) that signs the controller's certificate.
    #[arg(long, global = true, env = "NOVAMEDIC_TLS_CA", value_name = "PATH")]
    pub tls_ca: Option<PathBuf>,

    /// Revocation list (PEM) checked against the controller's certificate.
    #[arg(long, global = true, env = "NOVAMEDIC_TLS_CRL", value_name = "PATH")]
    pub tls_crl: Option<PathBuf>,

    /// Output format: aligned text for people, JSON for scripts, or
    /// Markdown for incident tickets (diagnose only).
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
    Markdown,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the controller: serve agents and operators over gRPC.
    Serve(ServeArgs),
    /// List every node known to the controller, one line each.
    Nodes,
    /// Inspect one node.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Restart nova-compute on a node and wait for the outcome.
    #[command(after_help = EXIT_CODES_HELP)]
    Restart(RestartArgs),
    /// Show the event history, newest first.
    Events(EventsArgs),
    /// Search nova-compute's log files on a node for an instance's or a
    /// request's records.
    Logs(LogsArgs),
    /// Find out why an instance is in ERROR, from Nova, Glance, Neutron,
    /// Cinder and novamedic's own host reports.
    #[command(after_help = DIAGNOSE_HELP)]
    Diagnose(Box<DiagnoseArgs>),
    /// Show the self-healing policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Pause every automated action until `novamedic resume`.
    Pause(PauseArgs),
    /// Resume automated actions after `pause` or a tripped storm guard.
    Resume,
    /// Keep automation away from one node for a while.
    Silence(SilenceArgs),
    /// End a node's silence.
    Unsilence {
        /// Node name, as `novamedic nodes` lists it.
        #[arg(value_parser = parse_node)]
        node: String,
    },
    /// Hand a node that needs a human back to automation, forgetting its
    /// automated restarts.
    Clear {
        /// Node name, as `novamedic nodes` lists it.
        #[arg(value_parser = parse_node)]
        node: String,
    },
    /// Create a CA and issue certificates for nodes, controller and operators.
    #[command(subcommand)]
    Certs(certs::CertsCommand),
    /// Write man pages and shell completions (used when building packages).
    #[command(hide = true)]
    GenerateDocs(novamedic_docgen::GenerateDocsArgs),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Show the policy in force, whether automation is paused, and the
    /// nodes that are silenced, need a human or have restarts in flight.
    Show,
}

#[derive(Debug, Args)]
pub struct PauseArgs {
    /// Why, in your words; recorded in the event history.
    #[arg(long)]
    pub reason: String,
}

#[derive(Debug, Args)]
pub struct SilenceArgs {
    /// Node name, as `novamedic nodes` lists it.
    #[arg(value_parser = parse_node)]
    pub node: String,

    /// Duration of the silence, at most 365d: seconds (90) or a number with
    /// s, m, h or d (30s, 5m, 2h, 1d).
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_silence)]
    pub duration: Duration,

    /// Why, in your words; recorded in the event history.
    #[arg(long)]
    pub reason: String,
}

/// Parses `silence --for`, which the controller caps at
/// [`MAX_SILENCE`](crate::operator_api::MAX_SILENCE).
fn parse_silence(text: &str) -> Result<Duration, String> {
    duration::parse_at_most(text, crate::operator_api::MAX_SILENCE, "silence")
}

/// Rejects an empty or blank node name before it reaches the controller,
/// where an empty name means "no node" or "every node".
fn parse_node(text: &str) -> Result<String, String> {
    let node = text.trim();
    if node.is_empty() {
        return Err("the node name is empty; pass a name as `novamedic nodes` lists it".into());
    }
    Ok(node.to_string())
}

const DIAGNOSE_HELP: &str = "\
Credentials are loaded as the openstack command line loads them: --os-cloud or
OS_CLOUD selects a cloud in clouds.yaml (./, ~/.config/openstack, /etc/openstack)
with secure.yaml merged over it; OS_* variables, then --os-* flags, override its
keys. With no cloud named, the OS_* variables alone are used.

Exit codes:
  0  the report was produced (parts that could not be read are listed in it)
  2  invalid arguments, credentials or configuration, or a name that matches
     several servers
  3  no such server
  4  an OpenStack service cannot be reached
  5  an OpenStack request timed out
  1  any other failure";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, for example 127.0.0.1:7400 [default: from the
    /// configuration file, else 127.0.0.1:7400].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<SocketAddr>,

    /// SQLite database file [default: from the configuration file, else
    /// /var/lib/novamedic/novamedic.db].
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,

    /// Configuration file; it must exist when given
    /// [default: /etc/novamedic/controller.toml, used only if it exists].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,

    /// Self-healing policy file, which must exist when given. [default:
    /// `policy` from the configuration file, else /etc/novamedic/policy.toml
    /// if it exists, else the built-in policy in dry-run mode]
    #[arg(long, value_name = "PATH")]
    pub policy: Option<PathBuf>,
    /// Serve plain-text gRPC without TLS: no encryption, no authentication
    /// of agents, and every operator request allowed. Only on a trusted
    /// network.
    #[arg(long)]
    pub insecure_plaintext: bool,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Show everything the controller stores about a node.
    Show {
        /// Node name, as `novamedic nodes` lists it.
        #[arg(value_parser = parse_node)]
        node: String,
    },
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Node whose nova-compute to restart.
    #[arg(value_parser = parse_node)]
    pub node: String,

    /// Why, in your words; recorded in the event history.
    #[arg(long)]
    pub reason: String,

    /// Time to wait for the outcome: seconds (90) or a number with s, m, h
    /// or d (30s, 5m, 2h, 1d). The agent gets the same budget for the
    /// restart itself; the controller's max_restart_wait_seconds caps it.
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = duration::parse)]
    pub wait: Duration,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this node's events.
    #[arg(long, value_parser = parse_node)]
    pub node: Option<String>,

    /// Number of events to show; the controller caps it at 1000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}

/// Runs a parsed command line and returns the process's exit code.
pub async fn run(cli: Cli) -> ExitCode {
    if cli.output == OutputFormat::Markdown && !matches!(cli.command, Command::Diagnose(_)) {
        eprintln!("novamedic: -o markdown is only for diagnose; use -o table or -o json");
        return ExitCode::from(exit::USAGE);
    }
    if let Some(Err(message)) = command_reason(&cli.command).map(crate::operator_api::check_reason)
    {
        eprintln!("novamedic: --{message}");
        return ExitCode::from(exit::USAGE);
    }
    let target = client_target(&cli);
    let result = match cli.command {
        Command::Serve(args) => return serve(args).await,
        Command::Certs(command) => certs::run(&command),
        Command::GenerateDocs(args) => {
            return novamedic_docgen::run(&args, <Cli as clap::CommandFactory>::command())
        }
        Command::Nodes => client::nodes(&target, cli.output).await,
        Command::Node(NodeCommand::Show { node }) => {
            client::node_show(&target, cli.output, &node).await
        }
        Command::Restart(args) => client::restart(&target, cli.output, &args).await,
        Command::Events(args) => client::events(&target, cli.output, &args).await,
        Command::Logs(args) => logs::run(&target, cli.output, &args).await,
        Command::Policy(PolicyCommand::Show) => {
            client::policy(&target, cli.output, client::PolicyCall::Show).await
        }
        Command::Pause(args) => {
            let call = client::PolicyCall::Pause {
                reason: args.reason,
            };
            client::policy(&target, cli.output, call).await
        }
        Command::Resume => client::policy(&target, cli.output, client::PolicyCall::Resume).await,
        Command::Silence(args) => {
            let call = client::PolicyCall::Silence {
                node: args.node,
                seconds: args.duration.as_secs(),
                reason: args.reason,
            };
            client::policy(&target, cli.output, call).await
        }
        Command::Unsilence { node } => {
            let call = client::PolicyCall::Unsilence { node };
            client::policy(&target, cli.output, call).await
        }
        Command::Clear { node } => {
            client::policy(&target, cli.output, client::PolicyCall::Clear { node }).await
        }
        Command::Diagnose(args) => diagnose::run(&target, cli.output, &args).await,
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(failure) => {
            if !failure.message.is_empty() {
                eprintln!("novamedic: {}", failure.message);
            }
            ExitCode::from(failure.exit_code)
        }
    }
}

/// Returns the `--reason` of a command that records one. It is checked in
/// [`run`], not by clap, whose error would repeat a reason of any length.
fn command_reason(command: &Command) -> Option<&str> {
    match command {
        Command::Restart(args) => Some(&args.reason),
        Command::Pause(args) => Some(&args.reason),
        Command::Silence(args) => Some(&args.reason),
        _ => None,
    }
}

/// The controller URL and, when all three are set, the client's TLS files.
fn client_target(cli: &Cli) -> Target {
    let tls = match (&cli.tls_cert, &cli.tls_key, &cli.tls_ca) {
        (Some(cert), Some(key), Some(ca)) => Some(novamedic_tls::TlsFiles {
            cert: cert.clone(),
            key: key.clone(),
            ca: ca.clone(),
            crl: cli.tls_crl.clone(),
        }),
        _ => None,
    };
    Target {
        url: cli.controller.clone(),
        tls,
    }
}

async fn serve(args: ServeArgs) -> ExitCode {
    let mut config = match crate::config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("novamedic: {}", crate::error_chain(&err));
            return ExitCode::from(exit::USAGE);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(db) = args.db {
        config.db = db;
    }
    let policy_path = args.policy.or_else(|| config.policy_path.clone());
    match crate::policy::rules::load(policy_path.as_deref()) {
        Ok(policy) => {
            config.policy_source = match policy_path {
                Some(path) => path.display().to_string(),
                None if Path::new(crate::policy::rules::DEFAULT_POLICY_PATH).exists() => {
                    crate::policy::rules::DEFAULT_POLICY_PATH.to_string()
                }
                None => crate::config::BUILT_IN_POLICY.to_string(),
            };
            config.policy = policy;
        }
        Err(err) => {
            eprintln!("novamedic: {}", crate::error_chain(&err));
            return ExitCode::from(exit::USAGE);
        }
    }
    if args.insecure_plaintext {
        config.transport = crate::config::Transport::Plaintext;
    }
    if let crate::config::Transport::MutualTls(files) = &config.transport {
        if let Err(err) = novamedic_tls::TlsMaterial::load(files) {
            eprintln!(
                "novamedic: {err}; create the files with `novamedic certs`, set them in [tls] \
                 of the configuration file, or pass --insecure-plaintext on a trusted network"
            );
            return ExitCode::from(exit::USAGE);
        }
    }
    if config.db.as_os_str().is_empty() {
        eprintln!(
            "novamedic: the database path is empty; set db in the configuration file or \
             --db to a file such as {}",
            crate::config::DEFAULT_DB_PATH
        );
        return ExitCode::from(exit::USAGE);
    }
    match crate::server::serve(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Printed once, like the configuration errors above: under
            // systemd, stderr is the journal already.
            eprintln!("novamedic: {err:#}");
            let in_use = matches!(
                err.downcast_ref::<crate::store::StoreError>(),
                Some(crate::store::StoreError::InUse { .. })
            );
            let exit_code = if in_use {
                exit::DB_IN_USE
            } else if err.is::<crate::server::InvalidConfig>() {
                exit::USAGE
            } else {
                exit::FAILED
            };
            ExitCode::from(exit_code)
        }
    }
}
