//! The `novamedic` command line: `serve` runs the controller, the other
//! commands are an operator client of a running controller.

mod client;
mod render;
mod table;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

pub use client::{Failure, MAX_REPLY_BYTES};

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
  1  failed, or the restart was rejected or failed on the node
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
    /// URL of the controller to query.
    #[arg(
        long,
        global = true,
        env = "NOVAMEDIC_CONTROLLER",
        default_value = "http://127.0.0.1:7400"
    )]
    pub controller: String,

    /// Output format: aligned text for people or JSON for scripts.
    #[arg(short = 'o', long, global = true, value_enum, default_value_t = OutputFormat::Table)]
    pub output: OutputFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
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
    /// Write man pages and shell completions (used when building packages).
    #[command(hide = true)]
    GenerateDocs(novamedic_docgen::GenerateDocsArgs),
}

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
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Show everything the controller stores about a node.
    Show {
        /// Node name, as `novamedic nodes` lists it.
        node: String,
    },
}

#[derive(Debug, Args)]
pub struct RestartArgs {
    /// Node whose nova-compute to restart.
    pub node: String,

    /// Why, in your words; recorded in the event history.
    #[arg(long)]
    pub reason: String,

    /// Seconds to wait for the outcome; the agent gets the same budget for
    /// the restart itself.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub wait: u64,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Only this node's events.
    #[arg(long)]
    pub node: Option<String>,

    /// Number of events to show; the controller caps it at 1000.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u32).range(1..))]
    pub limit: u32,
}

/// Runs a parsed command line and returns the process's exit code.
pub async fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Serve(args) => return serve(args).await,
        Command::GenerateDocs(args) => {
            return novamedic_docgen::run(&args, <Cli as clap::CommandFactory>::command())
        }
        Command::Nodes => client::nodes(&cli.controller, cli.output).await,
        Command::Node(NodeCommand::Show { node }) => {
            client::node_show(&cli.controller, cli.output, &node).await
        }
        Command::Restart(args) => client::restart(&cli.controller, cli.output, &args).await,
        Command::Events(args) => client::events(&cli.controller, cli.output, &args).await,
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
            tracing::error!(error = format!("{err:#}"), "controller failed");
            eprintln!("novamedic: {err:#}");
            let in_use = matches!(
                err.downcast_ref::<crate::store::StoreError>(),
                Some(crate::store::StoreError::InUse { .. })
            );
            ExitCode::from(if in_use {
                exit::DB_IN_USE
            } else {
                exit::FAILED
            })
        }
    }
}
