//! `dlq serve`: the HTTP API, the dashboard and `/metrics` (crate
//! `dlq-server`) over the store of `--store`.
//!
//! Replays started from the server go to allow-listed targets only
//! (`[serve.replay_targets]` in the config file) and run through the same
//! code as `dlq replay`: a record is settled only once its target has it.

use crate::Outcome;
use crate::cli::{Cli, ServeArgs};
use crate::commands::replay::{To, parse_to, replay_to};
use crate::store::AnyStore;
use anyhow::Context as _;
use dlq_core::replay::{FileFormat, ReplayOptions, ReplayReport};
use dlq_server::{ReplayRunner, Server, SharedStore};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

/// The config file read when `--config` is not given (if it exists).
const DEFAULT_CONFIG: &str = "dlq.toml";

/// Runs server replays with the command line's replay code.
struct CliRunner {
    /// Whether the store is a Kafka cluster (then targets are `kafka:`).
    kafka: bool,
}

impl ReplayRunner<AnyStore> for CliRunner {
    fn check_target(&self, spec: &str) -> Result<(), String> {
        match (self.kafka, spec.strip_prefix("kafka:")) {
            (true, Some(_)) => Ok(()),
            (true, None) => Err(format!(
                "{spec:?}: on a Kafka store, targets are kafka:TOPIC (or kafka: for each record's original topic)"
            )),
            (false, Some(_)) => Err(format!(
                "{spec:?}: kafka: targets need a kafka:// store (--store)"
            )),
            (false, None) => parse_to(spec).map(|_| ()).map_err(|_| {
                format!("{spec:?}: expected file:PATH or pipeline:PATH (or kafka:TOPIC on a Kafka store)")
            }),
        }
    }

    fn run(
        &self,
        store: &SharedStore<AnyStore>,
        spec: &str,
        dlq: &str,
        options: &ReplayOptions,
        progress: &mut dyn FnMut(&ReplayReport),
    ) -> Result<ReplayReport, String> {
        if let Some(topic) = spec.strip_prefix("kafka:") {
            // The Kafka replay needs the Kafka store itself: it holds the
            // store for the whole run.
            let mut guard = store.lock();
            let AnyStore::Kafka(kafka) = &mut *guard else {
                return Err("kafka: targets need a kafka:// store".to_owned());
            };
            let topic = Some(topic).filter(|t| !t.is_empty());
            return dlq_kafka::replay::replay(kafka, options, topic, Some(progress))
                .map_err(|e| format!("{e:#}"));
        }
        let to: To<'_> = parse_to(spec).map_err(|e| format!("{e:#}"))?;
        // Page by page on the shared store, so that the API keeps answering.
        let mut shared = store.clone();
        replay_to(
            &mut shared,
            dlq,
            &to,
            FileFormat::Payload,
            options,
            progress,
        )
        .map_err(|e| format!("{e:#}"))
    }
}

/// Runs `dlq serve`.
pub fn run(cli: &Cli, args: &ServeArgs) -> anyhow::Result<Outcome> {
    let url = cli.store_url();
    let runner = Arc::new(CliRunner {
        kafka: url.starts_with("kafka://"),
    });
    let (path, required) = match &args.config {
        Some(p) => (p.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG), false),
    };
    let loaded = dlq_server::config::load_file(
        &path,
        required,
        &|name| std::env::var(name).ok(),
        &|spec| runner.check_target(spec),
    )?;
    let mut config = loaded.config;
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let store = crate::store::open(url)?;
    let tokens = loaded.tokens;
    let (viewers, operators) = tokens.principals().fold((0, 0), |(v, o), p| match p.role {
        dlq_server::Role::Viewer => (v + 1, o),
        dlq_server::Role::Operator => (v, o + 1),
    });
    let targets = config.replay_targets.len();
    let server = Server::new(store, config, tokens, runner)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let listen = server.config().listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("listening on {listen}"))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            eprintln!(
                "warning: listening on {addr}, not a loopback address: the API is plain HTTP; \
                 put it behind a TLS proxy or bind 127.0.0.1"
            );
        }
        eprintln!(
            "dlq serve: {viewers} viewer and {operators} operator tokens, {targets} replay targets, \
             audit log {}",
            server.config().audit_log.display()
        );
        // The first line of stdout, for scripts and tests that asked for port 0.
        let mut out = std::io::stdout().lock();
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
        drop(out);
        server.serve(listener, shutdown()).await?;
        anyhow::Ok(())
    })?;
    Ok(Outcome::Ok)
}

/// Completes on Ctrl-C or SIGTERM.
async fn shutdown() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("dlq serve: stopping");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_checked_against_the_store_kind() {
        let file = CliRunner { kafka: false };
        assert!(file.check_target("file:/tmp/out.ndjson").is_ok());
        assert!(file.check_target("pipeline:out.ndjson").is_ok());
        assert!(file.check_target("kafka:topic").is_err());
        assert!(file.check_target("http://example.invalid").is_err());
        let kafka = CliRunner { kafka: true };
        assert!(kafka.check_target("kafka:rss.events").is_ok());
        assert!(kafka.check_target("kafka:").is_ok());
        assert!(kafka.check_target("file:/tmp/x").is_err());
    }
}
