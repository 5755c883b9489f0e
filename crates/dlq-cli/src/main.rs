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
mod shutdown;
mod store;

use clap::Parser as _;
use std::io::IsTerminal as _;
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
        .with_ansi(colour_on_stderr())
        .with_env_filter(filter)
        .init();
    if let Err(message) = args.resolve_format() {
        eprintln!("error: {message}");
        return ExitCode::from(2);
    }
    match commands::run(&args) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::NothingMatched) => ExitCode::from(1),
        // `dlq export | head`: the reader has what it wanted. Unix tools
        // end quietly and successfully then.
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_text(&err));
            ExitCode::from(2)
        }
    }
}

/// Colour codes only for a person at a terminal, and never with `NO_COLOR`
/// set to anything but the empty string (no-color.org).
fn colour_on_stderr() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    !no_color && std::io::stderr().is_terminal()
}

/// Whether the command failed because its standard output was closed.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause
                .downcast_ref::<serde_json::Error>()
                .and_then(serde_json::Error::io_error_kind)
                == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The error with its chain of causes, `outer: inner: innermost`, leaving
/// out a cause whose text the message before it already ends with (many
/// errors print their source themselves, and `{:#}` would say it twice).
fn error_text(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let part = cause.to_string();
        if part.is_empty() || text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_text_says_a_cause_once_when_the_message_already_ends_with_it() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "topic x does not exist");
        let err = anyhow::Error::new(io).context("topic x does not exist");
        assert_eq!(error_text(&err), "topic x does not exist");
        let err = anyhow::anyhow!("broker down").context("opening store: broker down");
        assert_eq!(error_text(&err), "opening store: broker down");
        let err = anyhow::anyhow!("broker down").context("opening store");
        assert_eq!(error_text(&err), "opening store: broker down");
    }

    #[test]
    fn a_closed_stdout_is_recognised_through_contexts_and_json_errors() {
        let pipe = || std::io::Error::new(std::io::ErrorKind::BrokenPipe, "Broken pipe");
        assert!(is_broken_pipe(
            &anyhow::Error::new(pipe()).context("writing")
        ));
        let json = serde_json::Error::io(pipe());
        assert!(is_broken_pipe(&anyhow::Error::new(json)));
        let other = std::io::Error::new(std::io::ErrorKind::PermissionDenied, "no");
        assert!(!is_broken_pipe(&anyhow::Error::new(other)));
    }
}
