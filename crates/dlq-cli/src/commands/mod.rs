//! One module per subcommand; [`run`] dispatches.

mod analyze;
mod archive;
mod demo;
mod demo_kafka;
mod discard;
mod export;
mod generate;
mod import;
mod inspect;
mod ledger;
mod monitor;
mod process;
mod produce;
mod replay;
mod serve;
mod spool;
mod stats;

use crate::Outcome;
use crate::cli::{Cli, Command, SelectArgs, StatusArg};
use crate::store::AnyStore;
use anyhow::Context as _;
use dlq_core::DlqStore;
use dlq_core::analyze::Grouper;
use dlq_core::filter::Filter;
use dlq_core::store::{Selection, Status};
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

/// Runs the parsed command.
pub fn run(cli: &Cli) -> anyhow::Result<Outcome> {
    match &cli.command {
        Command::Demo(a) => demo::run(cli, a),
        Command::Generate(a) => generate::run(a),
        Command::Process(a) => process::run(cli, a),
        Command::Produce(a) => produce::run(cli, a),
        Command::Spool(a) => spool::run(cli, a),
        Command::Ledger(a) => ledger::run(cli, a),
        Command::Stats(a) => stats::run(cli, a),
        Command::Inspect(a) => inspect::run(cli, a),
        Command::Analyze(a) => analyze::run(cli, a),
        Command::Replay(a) => replay::run(cli, a),
        Command::Discard(a) => discard::run(cli, a),
        Command::Import(a) => import::run(cli, a),
        Command::Export(a) => export::run(cli, a),
        Command::Archive(a) => archive::run(cli, a),
        Command::Monitor(a) => monitor::run(cli, a),
        Command::Serve(a) => serve::run(cli, a),
    }
}

/// Refuses a DLQ name that the store cannot hold: on Kafka, DLQ topics
/// start with the store's prefix (`dlq.` unless configured), and a name
/// outside it would select nothing, silently.
pub fn check_dlq_name(store: &AnyStore, dlq: &str) -> anyhow::Result<()> {
    match store {
        AnyStore::Kafka(k) => check_dlq_prefix(&k.config().dlq_prefix, dlq),
        AnyStore::Sqs(_) => dlq_sqs::config::queue_name(dlq)
            .map(|_| ())
            .map_err(|e| anyhow::anyhow!("--dlq {dlq:?}: {e}")),
        _ => Ok(()),
    }
}

/// Refuses a DLQ name outside a Kafka store's DLQ prefix.
pub fn check_dlq_prefix(prefix: &str, dlq: &str) -> anyhow::Result<()> {
    if !dlq.starts_with(prefix) {
        anyhow::bail!(
            "--dlq {dlq:?} is not a DLQ of this store: its DLQ topics start with {prefix:?} \
             (e.g. {prefix}{dlq}); `dlq stats` lists them, and the store URL's dlq_prefix \
             parameter sets another prefix"
        );
    }
    Ok(())
}

/// The store selection described by `--dlq`, `--filter` and `--status`.
pub fn selection(store: &AnyStore, args: &SelectArgs) -> anyhow::Result<Selection> {
    if let Some(dlq) = &args.dlq {
        check_dlq_name(store, dlq)?;
    }
    let filter = args
        .filter
        .as_deref()
        .map(Filter::parse)
        .transpose()
        .context("--filter")?;
    let statuses = if args.status.contains(&StatusArg::All) {
        Status::ALL.to_vec()
    } else {
        args.status
            .iter()
            .map(|s| match s {
                StatusArg::Pending | StatusArg::All => Status::Pending,
                StatusArg::Parked => Status::Parked,
                StatusArg::Replayed => Status::Replayed,
                StatusArg::Discarded => Status::Discarded,
                StatusArg::Archived => Status::Archived,
            })
            .collect()
    };
    Ok(Selection {
        dlq: args.dlq.clone(),
        statuses,
        filter,
    })
}

/// The template miners `dlq analyze` persisted for the store's DLQs (see
/// `dlq_core::analyze`). A state that cannot be read is reported and left
/// out: its DLQ's groups start over.
pub fn load_grouper(store: &impl DlqStore) -> anyhow::Result<Grouper> {
    let (grouper, unreadable) = dlq_core::analyze::load_grouper(store)?;
    for e in unreadable {
        tracing::warn!("{e}; its failure groups start over");
    }
    Ok(grouper)
}

/// Gives a filter that reads `fingerprint` the persisted template miners, so
/// that it selects exactly the groups `dlq analyze` reported.
pub fn with_fingerprints(
    store: &impl DlqStore,
    filter: Option<Filter>,
) -> anyhow::Result<Option<Filter>> {
    Ok(match filter {
        // Loaded only when the filter reads fingerprints.
        Some(f) if f.uses_fingerprint() => Some(f.with_grouper(Arc::new(load_grouper(store)?))),
        other => other,
    })
}

/// Serves the process's Prometheus metrics at `http://ADDR/metrics` when an
/// address is given (the recorder is installed first); serving stops when
/// the returned server is dropped.
pub fn serve_metrics(
    addr: Option<std::net::SocketAddr>,
) -> anyhow::Result<Option<dlq_monitor::metrics::MetricsServer>> {
    let Some(addr) = addr else {
        return Ok(None);
    };
    let handle = dlq_monitor::metrics::install()?;
    let server = dlq_monitor::metrics::serve(addr, handle)
        .with_context(|| format!("serving metrics on {addr}"))?;
    eprintln!("metrics at http://{}/metrics", server.local_addr());
    Ok(Some(server))
}

/// Standard output, or a file when a path is given.
pub fn writer(path: Option<&Path>) -> anyhow::Result<Box<dyn Write>> {
    Ok(match path {
        Some(p) => Box::new(BufWriter::new(
            File::create(p).with_context(|| format!("creating {}", p.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    })
}
