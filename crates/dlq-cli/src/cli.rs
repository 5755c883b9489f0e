//! Command-line arguments: the contract of DESIGN.md, with clap.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

/// dlq: dead letter queues that never lose a record — process with retries,
/// dead-letter with the error, monitor, analyze, fix and replay.
#[derive(Debug, Parser)]
#[command(name = "dlq", version, about, propagate_version = true)]
pub struct Cli {
    /// Where DLQs are kept: sqlite://PATH (embedded), kafka://HOST:PORT,
    /// sqs://REGION?endpoint=URL or memory:// [default: sqlite://dlq.db]
    #[arg(long, global = true, env = "DLQ_STORE")]
    pub store: Option<String>,

    /// Output format: table, json or ndjson where the output is data;
    /// `dlq analyze` also writes reports for people (markdown, html).
    #[arg(long = "format", global = true, value_enum, default_value_t = FormatArg::Table)]
    pub format_arg: FormatArg,

    /// The data format in effect, set by [`Cli::resolve_format`] from
    /// `--format` (`table` when a report was asked for).
    #[arg(skip = Format::Table)]
    pub format: Format,

    /// No progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,

    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// The store used when `--store` and `DLQ_STORE` are not given.
pub const DEFAULT_STORE: &str = "sqlite://dlq.db";

impl Cli {
    /// The store URL in effect.
    pub fn store_url(&self) -> &str {
        self.store.as_deref().unwrap_or(DEFAULT_STORE)
    }
}

impl Cli {
    /// Checks `--format` against the command and sets [`Cli::format`]:
    /// report formats are only for `dlq analyze`.
    pub fn resolve_format(&mut self) -> Result<(), String> {
        self.format = match self.format_arg {
            FormatArg::Table => Format::Table,
            FormatArg::Json => Format::Json,
            FormatArg::Ndjson => Format::Ndjson,
            FormatArg::Markdown | FormatArg::Html => {
                if !matches!(self.command, Command::Analyze(_)) {
                    return Err(format!(
                        "--format {}: only `dlq analyze` writes reports; use table, json or ndjson",
                        self.format_arg.name()
                    ));
                }
                Format::Table
            }
        };
        Ok(())
    }
}

/// What `--format` accepts: the data formats and, for `dlq analyze`, the
/// report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// Aligned columns, for people.
    Table,
    /// One JSON document (stable, documented in docs/cli.md).
    Json,
    /// One JSON object per line.
    Ndjson,
    /// `dlq analyze` only: a Markdown report, for an issue or a chat.
    Markdown,
    /// `dlq analyze` only: a self-contained HTML report with charts.
    Html,
}

impl FormatArg {
    /// The name as written on the command line.
    pub fn name(self) -> &'static str {
        match self {
            FormatArg::Table => "table",
            FormatArg::Json => "json",
            FormatArg::Ndjson => "ndjson",
            FormatArg::Markdown => "markdown",
            FormatArg::Html => "html",
        }
    }
}

/// Data output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned columns, for people.
    Table,
    /// One JSON document (stable, documented in docs/cli.md).
    Json,
    /// One JSON object per line.
    Ndjson,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the MarketLag loop end to end and print the accounting.
    Demo(DemoArgs),
    /// Write realistic MarketLag NDJSON with a seeded mix of failures.
    Generate(GenerateArgs),
    /// Validate records from a file, stdin or a Kafka topic, with retries;
    /// dead-letter failures.
    Process(ProcessArgs),
    /// Guarded produce of NDJSON records to a Kafka topic: retries, then the
    /// DLQ, then a local spool if the DLQ is unreachable too.
    Produce(ProduceArgs),
    /// The local spool of the guarded producer.
    Spool(SpoolArgs),
    /// The Kafka store's ledger (where settlements and checkpoints live).
    Ledger(LedgerArgs),
    /// Size of each DLQ: pending, total, oldest pending age.
    Stats(StatsArgs),
    /// List dead letters, whole.
    Inspect(InspectArgs),
    /// Failure groups: source, stage, error class and message template, with
    /// field diagnosis, a verdict and the filter that selects each group.
    Analyze(AnalyzeArgs),
    /// Fix and reprocess dead letters.
    Replay(ReplayArgs),
    /// Settle dead letters as discarded (purge), audited; --dry-run shows
    /// what would be.
    Discard(DiscardArgs),
    /// Read NDJSON envelopes (or seed-format or raw records) into a DLQ.
    Import(ImportArgs),
    /// Write dead letters as NDJSON envelopes.
    Export(ExportArgs),
    /// Move pending and parked dead letters to an S3 archive store before
    /// retention deletes them; settled in the source, audited.
    Archive(ArchiveArgs),
    /// Watch every DLQ: sample sizes, inflow, oldest age and expiry risk
    /// into a history, evaluate alert rules, notify, export metrics.
    Monitor(MonitorArgs),
    /// Serve the HTTP API, the dashboard and /metrics (see docs/serve.md).
    Serve(ServeArgs),
}

/// MarketLag pipeline names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PipelineArg {
    /// RSS news events (`rss.events`).
    Rss,
    /// Hourly Polymarket prices (`polymarket.price_hourly`).
    Polymarket,
}

impl From<PipelineArg> for dlq_marketlag::Pipeline {
    fn from(p: PipelineArg) -> Self {
        match p {
            PipelineArg::Rss => dlq_marketlag::Pipeline::Rss,
            PipelineArg::Polymarket => dlq_marketlag::Pipeline::Polymarket,
        }
    }
}

/// `dlq demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Records generated per pipeline.
    #[arg(long, default_value_t = 20_000)]
    pub records: u64,
    /// Seed of the generator (same seed, same records).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Working directory for the generated input and the outputs (wiped first).
    /// The store defaults to sqlite://DIR/dlq.db unless --store is given.
    #[arg(long, default_value = "dlq-demo")]
    pub dir: PathBuf,
    /// The alert rule: fire when a DLQ holds more pending records than this.
    #[arg(long, default_value_t = 1000)]
    pub alert_threshold: u64,
    /// Run the loop on a Kafka cluster instead (HOST:PORT): topics
    /// rss.events, polymarket.price_hourly, their `.processed` outputs and
    /// DLQs dlq.rss.events, dlq.polymarket.price_hourly, which must not
    /// exist yet.
    #[arg(long)]
    pub kafka: Option<String>,
}

/// `dlq generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Which pipeline's records.
    #[arg(long, value_enum)]
    pub pipeline: PipelineArg,
    /// How many lines.
    #[arg(long, default_value_t = 1000)]
    pub records: u64,
    /// Seed (same seed, same bytes).
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Failure mix as JSON (fields of FailureMix, e.g. '{"malformed_json":0.05}');
    /// missing fields keep their defaults.
    #[arg(long)]
    pub mix: Option<String>,
    /// No failures at all: every line valid.
    #[arg(long, conflicts_with = "mix")]
    pub clean: bool,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
}

/// Retry settings shared by the commands that process records.
#[derive(Debug, Args, Clone)]
pub struct RetryArgs {
    /// Attempts per record, the first included.
    #[arg(long, default_value_t = 3)]
    pub max_attempts: u32,
    /// Delay before the first retry, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub initial_backoff_ms: u64,
    /// Longest delay between retries, in milliseconds.
    #[arg(long, default_value_t = 10_000)]
    pub max_backoff_ms: u64,
}

/// A simulated flaky downstream, for demos and tests.
#[derive(Debug, Args, Clone)]
pub struct SimulateArgs {
    /// Fraction of records whose first attempts time out (retries recover them).
    #[arg(long, default_value_t = 0.0)]
    pub simulate_transient: f64,
    /// How many attempts a transient record fails before it succeeds.
    #[arg(long, default_value_t = 2)]
    pub simulate_fail_first: u32,
    /// Fraction of records whose downstream is down for the whole run.
    #[arg(long, default_value_t = 0.0)]
    pub simulate_outage: f64,
    /// Seed of the simulation.
    #[arg(long, default_value_t = 7)]
    pub simulate_seed: u64,
}

/// `dlq process`.
#[derive(Debug, Args)]
pub struct ProcessArgs {
    /// Which pipeline's validator.
    #[arg(long, value_enum)]
    pub pipeline: PipelineArg,
    /// NDJSON input file, or - for stdin (not resumable).
    #[arg(long, required_unless_present = "source", conflicts_with = "source")]
    pub input: Option<String>,
    /// Where valid records are appended (file input).
    #[arg(long, required_unless_present = "source")]
    pub output: Option<PathBuf>,
    /// Consume a Kafka topic instead of a file: kafka:TOPIC (the cluster is
    /// the one of --store kafka://...).
    #[arg(long)]
    pub source: Option<String>,
    /// Consumer group (Kafka source).
    #[arg(long, requires = "source")]
    pub group: Option<String>,
    /// Where valid records go (Kafka source).
    #[arg(long, requires = "source")]
    pub output_topic: Option<String>,
    /// Outputs, dead letters and source offsets in one transaction per batch
    /// (Kafka source).
    #[arg(long, requires = "source")]
    pub exactly_once: bool,
    /// Stop once every partition of the source has been caught up (lag 0)
    /// for this many seconds; exit 2 naming the lag when no progress is
    /// made for this long (Kafka source; default: run until Ctrl-C).
    #[arg(long, requires = "source")]
    pub stop_when_idle: Option<f64>,
    /// Name of this instance, for a stable transactional id and static
    /// group membership: a restarted instance fences its crashed
    /// predecessor and gets its partitions back at once. Give each
    /// instance that runs at the same time its own name.
    #[arg(long, default_value = "0", requires = "source")]
    pub instance: String,
    /// DLQ name (default: dlq.<topic>), or sqs:QUEUE for an SQS queue of
    /// --dlq-store (the Kafka source: at-least-once only).
    #[arg(long)]
    pub dlq: Option<String>,
    /// The SQS store of an SQS DLQ: sqs://REGION?endpoint=URL&... (default:
    /// --store, when it is an sqs:// URL). The file processor then keeps
    /// its checkpoint in that store's index; --store kafka://... stays the
    /// cluster of the Kafka source.
    #[arg(long, env = "DLQ_DLQ_STORE", value_name = "URL")]
    pub dlq_store: Option<String>,
    /// Lines per durable commit.
    #[arg(long, default_value_t = 2000)]
    pub batch_size: usize,
    /// Records larger than this are dead-lettered as input.oversized.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_record_bytes: usize,
    /// Serve the processor's Prometheus counters (records processed,
    /// delivered, dead-lettered, retries) at http://ADDR/metrics while it
    /// runs, e.g. 127.0.0.1:9465.
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    #[command(flatten)]
    pub retry: RetryArgs,
    #[command(flatten)]
    pub simulate: SimulateArgs,
}

/// `dlq produce`.
#[derive(Debug, Args)]
pub struct ProduceArgs {
    /// The primary topic (it must exist; the producer never creates topics).
    /// The cluster is the one of --store kafka://HOST:PORT.
    #[arg(long)]
    pub topic: String,
    /// NDJSON records, one per line (each line is one record value, sent
    /// without a key; blank lines are skipped), or - for stdin.
    #[arg(long, default_value = "-")]
    pub input: String,
    /// The DLQ topic (default: dlq.<topic>, with the store's DLQ prefix),
    /// or sqs:QUEUE for an SQS queue of --dlq-store.
    #[arg(long)]
    pub dlq: Option<String>,
    /// The SQS store of an SQS DLQ (--dlq sqs:QUEUE):
    /// sqs://REGION?endpoint=URL&...; --store kafka://... stays the cluster.
    #[arg(long, env = "DLQ_DLQ_STORE", value_name = "URL")]
    pub dlq_store: Option<String>,
    /// The local spool (sqlite://PATH): where dead letters go when the DLQ
    /// cannot be written either; `dlq spool flush` moves them on.
    #[arg(long, env = "DLQ_SPOOL", default_value = "sqlite://dlq-spool.db")]
    pub spool: String,
    #[command(flatten)]
    pub retry: RetryArgs,
    /// How long one delivery attempt may take (librdkafka's own retries
    /// included) before it counts as failed, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub delivery_timeout_ms: u64,
}

/// `dlq spool`.
#[derive(Debug, Args)]
pub struct SpoolArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: SpoolAction,
    /// The spool (sqlite://PATH).
    #[arg(
        long,
        env = "DLQ_SPOOL",
        default_value = "sqlite://dlq-spool.db",
        global = true
    )]
    pub spool: String,
}

/// `dlq ledger`.
#[derive(Debug, Args)]
pub struct LedgerArgs {
    /// What to do.
    #[command(subcommand)]
    pub action: LedgerAction,
}

/// `dlq ledger` actions.
#[derive(Debug, Subcommand)]
pub enum LedgerAction {
    /// Rewrite the per-record settlement entries of earlier dlq versions
    /// as settlement segments, and delete them (both formats are read
    /// until then; running it again does nothing).
    Migrate,
}

/// `dlq spool` actions.
#[derive(Debug, Subcommand)]
pub enum SpoolAction {
    /// Move spooled dead letters to their DLQ topics on the --store
    /// kafka:// cluster (exit 1 when the spool holds none).
    Flush,
    /// How many dead letters wait in the spool, per DLQ.
    Stats,
}

/// Statuses to select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusArg {
    /// Waiting in the DLQ.
    Pending,
    /// Parked after too many failed replays.
    Parked,
    /// Replayed.
    Replayed,
    /// Discarded.
    Discarded,
    /// Moved to an archive store (`dlq archive`).
    Archived,
    /// Any status.
    All,
}

/// Selection shared by inspect, analyze and export.
#[derive(Debug, Args, Clone)]
pub struct SelectArgs {
    /// Only this DLQ.
    #[arg(long)]
    pub dlq: Option<String>,
    /// Only records matching this filter (see docs/cli.md).
    #[arg(long)]
    pub filter: Option<String>,
    /// Only records with these statuses.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "pending")]
    pub status: Vec<StatusArg>,
}

/// `dlq stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Only this DLQ.
    #[arg(long)]
    pub dlq: Option<String>,
}

/// `dlq inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// At most this many records.
    #[arg(long, default_value_t = 20)]
    pub limit: u64,
}

/// `dlq analyze`.
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Only records whose last failure is at or after this instant (RFC 3339).
    #[arg(long, value_parser = parse_since)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only the N largest groups.
    #[arg(long, value_name = "N")]
    pub top: Option<usize>,
    /// List every record id of each group (memory grows with the records).
    #[arg(long)]
    pub members: bool,
    /// The config file whose [[triage.rule]]s give a class and verdict to
    /// records that carry none, before the shipped rules [default: dlq.toml,
    /// if it exists]. Its other sections are left to their commands.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn parse_since(s: &str) -> Result<chrono::DateTime<chrono::Utc>, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| format!("expected an RFC 3339 instant such as 2026-11-29T00:00:00Z: {e}"))
}

/// `dlq discard`.
#[derive(Debug, Args)]
pub struct DiscardArgs {
    /// The DLQ to discard from.
    #[arg(long)]
    pub dlq: String,
    /// Only records matching this filter, e.g. 'fingerprint == "…"' from
    /// `dlq analyze` (see docs/cli.md).
    #[arg(long)]
    pub filter: Option<String>,
    /// These record ids (repeat the option or separate them with commas).
    #[arg(long = "id", value_name = "ID", value_delimiter = ',')]
    pub ids: Vec<String>,
    /// Every record of the selection, without a filter or ids (a discard
    /// must say what it discards).
    #[arg(long)]
    pub all: bool,
    /// Only records with these statuses: pending, parked (all: both).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "pending")]
    pub status: Vec<StatusArg>,
    /// At most this many records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Show what would be discarded; change nothing, audit nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The audit log to append to (JSON Lines, as `dlq serve` writes)
    /// [default: `audit_log` of the config's [serve] section, else
    /// dlq-audit.jsonl in the current directory].
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// The config file whose [serve] audit_log names the audit log
    /// [default: dlq.toml, if it exists].
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `dlq replay`.
#[derive(Debug, Args)]
pub struct ReplayArgs {
    /// The DLQ to replay from.
    #[arg(long)]
    pub dlq: String,
    /// Where to: file:PATH (append the records), pipeline:PATH (run each
    /// record through the MarketLag validator of its source topic again;
    /// valid ones are appended to PATH, others return to the DLQ), or, on a
    /// Kafka store, kafka:TOPIC (default there: each record's original topic),
    /// or, on an SQS store, sqs:QUEUE (default there: the queue whose redrive
    /// policy moved each record).
    #[arg(long)]
    pub to: Option<String>,
    /// Kafka store: replay and settle each page in one transaction
    /// (exactly-once for read_committed readers); default at-least-once.
    #[arg(long)]
    pub exactly_once: bool,
    /// With file:PATH, write payloads (default) or whole envelopes with lineage.
    #[arg(long, value_enum, default_value_t = ToFormat::Payload)]
    pub to_format: ToFormat,
    /// Only records matching this filter.
    #[arg(long)]
    pub filter: Option<String>,
    /// A jq expression applied to each payload first (run in-process by jaq).
    #[arg(long)]
    pub fix: Option<String>,
    /// Time budget of the fix per record, in milliseconds (1 to 60000): a
    /// record whose fix runs longer fails and stays pending.
    #[arg(long, default_value_t = dlq_core::fix::DEFAULT_FIX_TIMEOUT.as_millis() as u64)]
    pub fix_timeout_ms: u64,
    /// Largest payload the fix may produce, in bytes (also the longest
    /// string, or array in elements, it may build with + and *).
    #[arg(long, default_value_t = dlq_core::fix::DEFAULT_FIX_MAX_OUTPUT_BYTES)]
    pub fix_max_output_bytes: usize,
    /// At most this many records per second, from 0.001 to 1e9 (a dry run
    /// is not paced).
    #[arg(long)]
    pub rate: Option<f64>,
    /// At most this many records.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Show each record before and after the fix; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// A record that failed more replays than this is parked, not pending.
    #[arg(long, default_value_t = 3)]
    pub max_replays: u32,
    /// Records per commit (a page): larger pages make fewer, bigger
    /// transactions on Kafka; a crash redoes at most one page.
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// Also replay parked records.
    #[arg(long)]
    pub include_parked: bool,
}

/// What a file replay target writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ToFormat {
    /// The payload bytes, one record per line.
    Payload,
    /// The whole envelope, one per line.
    Envelope,
}

/// `dlq import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// NDJSON file, or - for stdin.
    #[arg(long, default_value = "-")]
    pub input: String,
    /// DLQ to import into (default: dlq.<source topic> from each envelope, else dlq.imported).
    #[arg(long)]
    pub dlq: Option<String>,
}

/// `dlq export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    #[command(flatten)]
    pub select: SelectArgs,
    /// Write here instead of stdout.
    #[arg(long, short)]
    pub output: Option<PathBuf>,
    /// Write the raw payload bytes of each record, one per line, instead of envelopes.
    #[arg(long)]
    pub payloads: bool,
}

/// `dlq monitor`.
#[derive(Debug, Args)]
pub struct MonitorArgs {
    /// The monitor config (TOML: retention, alert rules, sinks; see
    /// docs/monitoring.md). Without it: one rule, size > 1000, to the log.
    #[arg(long, env = "DLQ_MONITOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Time between samples, e.g. 15s or 1m (overrides monitor.interval).
    #[arg(long, value_parser = parse_interval)]
    pub interval: Option<std::time::Duration>,
    /// Sample once, evaluate the rules, notify, print the report and exit.
    #[arg(long)]
    pub once: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics, e.g.
    /// 127.0.0.1:9464 (overrides monitor.metrics_listen).
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// The history file, SQLite (overrides monitor.history; default: the
    /// store's file for sqlite://PATH, else dlq-monitor.db).
    #[arg(long)]
    pub history: Option<PathBuf>,
}

/// `dlq archive`.
#[derive(Debug, Args)]
pub struct ArchiveArgs {
    /// The store to move dead letters from [default: --store].
    #[arg(long, value_name = "STORE")]
    pub from: Option<String>,
    /// The archive: an s3://BUCKET/PREFIX store.
    #[arg(long, value_name = "STORE")]
    pub to: String,
    /// Only this DLQ [default: every DLQ of the source].
    #[arg(long)]
    pub dlq: Option<String>,
    /// Only records the source stored longer ago than this (e.g. 7d, 36h).
    #[arg(long, value_name = "DURATION", value_parser = parse_interval, conflicts_with = "expiring")]
    pub older_than: Option<std::time::Duration>,
    /// Only records that retention deletes within the monitor's expiry
    /// window (`monitor.expiry_window`, 1h by default): retention from the
    /// store (a Kafka topic's retention.ms), else from the config
    /// (`monitor.retention`, `[dlq."NAME"] retention`). A DLQ whose
    /// retention is not known is reported, not archived.
    #[arg(long)]
    pub expiring: bool,
    /// The config with the monitor's retention and expiry window, for
    /// --expiring [default: dlq.toml, if it exists].
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// Records per commit to the archive.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub batch_size: u64,
    /// Count what would move; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// The audit log to append to (JSON Lines, as `dlq serve` and `dlq
    /// discard` write) [default: dlq-audit.jsonl in the current directory].
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    match dlq_monitor::parse_duration(s)? {
        d if d.is_zero() => Err("the interval must be longer than 0".into()),
        d => Ok(d),
    }
}

/// `dlq serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on, overriding `listen` in the config file
    /// [default: 127.0.0.1:8080]. Port 0 picks a free port (printed).
    #[arg(long)]
    pub listen: Option<std::net::SocketAddr>,
    /// The config file whose [serve] section sets the tokens files, the
    /// allow-listed replay targets and the audit log [default: dlq.toml,
    /// if it exists]. Tokens never come from the command line: use the
    /// file or DLQ_VIEWER_TOKEN / DLQ_OPERATOR_TOKEN.
    #[arg(long)]
    pub config: Option<PathBuf>,
}
