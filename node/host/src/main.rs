//! `flotilla`: run a node (`flotilla node run`) or query a running one (`status`, `peers`,
//! `ping`, `rtt`, `limits`, `scopes`), or manage a compute provider's capacity (`onboard`,
//! `offboard`, `resources`). Logs go to stderr (`RUST_LOG`, default `info`); results go
//! to stdout.

mod cli;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Log filter when `RUST_LOG` is not set. The DHT warns at every periodic bootstrap while
/// a node has no peers yet, which is normal for the first node of a network.
const DEFAULT_LOG_FILTER: &str = "info,libp2p_kad::behaviour=error";

fn main() -> ExitCode {
    // Bad arguments exit with status 2 here.
    let cli = cli::Cli::parse();
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match cli::run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
