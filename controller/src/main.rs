//! `novamedic`: the controller (`novamedic serve`) and the operator CLI.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = novamedic::cli::Cli::parse();
    init_tracing();
    novamedic::cli::run(cli).await
}

/// Logs to stderr at the level in `NOVAMEDIC_LOG`, else `RUST_LOG`, else info.
/// Colors only on a terminal, so the journal and log files get plain text.
fn init_tracing() {
    let directives = std::env::var("NOVAMEDIC_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_string());
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|err| {
        eprintln!("novamedic: ignoring invalid log filter {directives:?}: {err}");
        EnvFilter::new("info")
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}
