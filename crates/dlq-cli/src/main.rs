//! `dlq`: the dead letter queue toolkit's command line.
//!
//! `main` parses arguments, sets up logging and hands over to one module per
//! subcommand in [`commands`]. Errors are printed with their chain of causes
//! and a hint where one helps; exit codes are 0 (ok), 1 (nothing matched) and
//! 2 (error).

mod cli;
mod commands;
mod marketlag;
mod output;
mod progress;
mod report_html;
mod store;

use clap::Parser as _;
use std::process::ExitCode;

/// mimalloc instead of the system allocator: dlq allocates per record
/// (decoded envelopes, ledger entries, outputs), and glibc's malloc and
/// free took about a quarter of a Kafka replay's time (BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How a command ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Did what was asked.
    Ok,
    /// Ran fine, but nothing matched the selection.
    NothingMatched,
}

fn main() -> ExitCode {
    let mut args = cli::Cli::parse();
    let mut filter = tracing_subscriber::EnvFilter::try_from_env("DLQ_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // At trace level the HTTP client logs request paths, which hold
    // webhook tokens (dlq monitor).
    if let Ok(quiet) = "ureq=warn".parse() {
        filter = filter.add_directive(quiet);
    }
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter)
        .init();
    if let Err(message) = args.resolve_format() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    match commands::run(&args) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::NothingMatched) => ExitCode::from(1),
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(2)
        }
    }
}
