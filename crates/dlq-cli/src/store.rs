//! Opening the store named by `--store`: one URL, one backend.

use anyhow::Context as _;
use dlq_core::memory::MemoryStore;
use dlq_core::store::{
    Batch, Capabilities, CommitReport, Cursor, DlqStats, DlqStore, Result, ScanPage, Selection,
    StoredRecord, Submitted, Ticket,
};
use dlq_kafka::KafkaStore;
use dlq_s3::S3Store;
use dlq_sqlite::SqliteStore;
use dlq_sqs::SqsStore;

/// Any store the command line can open.
pub enum AnyStore {
    /// `sqlite://PATH`, the embedded default.
    Sqlite(Box<SqliteStore>),
    /// `memory://`, gone when the command ends.
    Memory(Box<MemoryStore>),
    /// `kafka://HOST:PORT`: DLQ topics and a ledger on a Kafka cluster.
    Kafka(Box<KafkaStore>),
    /// `sqs://REGION?endpoint=URL&state=PATH`: DLQs that are SQS queues,
    /// statuses in a local index.
    Sqs(Box<SqsStore>),
    /// `s3://BUCKET/PREFIX`: gzip NDJSON objects and a commit log in a bucket.
    S3(Box<S3Store>),
}

/// Opens the store at `url` for `dlq replay` of `dlq`: a Kafka store
/// writes with transactions when `exactly_once`, under a transactional id
/// stable per DLQ, so that a replay run after a killed one fences it and
/// aborts its open transaction at once (instead of leaving it to hold
/// read_committed readers of the targets and the ledger back until the
/// transaction timeout); two replays of one DLQ at once: the later fences
/// the earlier, which stops with an error.
pub fn open_for_replay(url: &str, exactly_once: bool, dlq: &str) -> anyhow::Result<AnyStore> {
    if !url.starts_with("kafka://") {
        return open(url);
    }
    let shown = dlq_kafka::config::redact_url(url);
    let mut config = dlq_kafka::KafkaConfig::from_url(url)
        .map_err(|e| anyhow::anyhow!("--store: {}", e.problems.join("; ")))?;
    crate::commands::check_dlq_prefix(&config.dlq_prefix, dlq)?;
    config.transactions = exactly_once;
    if exactly_once && config.transactional_id.is_none() {
        config.transactional_id = Some(format!("dlq-replay-{dlq}"));
    }
    let store =
        KafkaStore::open(config).with_context(|| format!("opening the Kafka store {shown}"))?;
    Ok(AnyStore::Kafka(Box::new(store)))
}

/// An SQS queue as the DLQ of `dlq produce` / `dlq process`.
pub struct SqsDlq {
    /// The store of the queue.
    pub store: SqsStore,
    /// The queue's name (the DLQ name on that store).
    pub queue: String,
}

/// The SQS DLQ that `--dlq` and `--dlq-store` name, if they name one:
/// `--dlq sqs:QUEUE` (or any `--dlq` with `--dlq-store`) on the store of
/// `--dlq-store`, else of `--store` when that is an `sqs://` URL;
/// `default_dlq` when `--dlq` is not given.
pub fn sqs_dlq(
    dlq: Option<&str>,
    dlq_store: Option<&str>,
    store: &str,
    default_dlq: &str,
) -> anyhow::Result<Option<SqsDlq>> {
    let queue = match dlq.map(|d| d.strip_prefix("sqs:")) {
        Some(Some(queue)) => queue,
        Some(None) if dlq_store.is_some() => dlq.unwrap_or(default_dlq),
        None if dlq_store.is_some() => default_dlq,
        _ => return Ok(None),
    };
    let url = match dlq_store {
        Some(url) if url.starts_with("sqs://") => url,
        Some(url) => anyhow::bail!(
            "--dlq-store {}: a DLQ store here is an SQS store, sqs://REGION?endpoint=URL",
            dlq_kafka::config::redact_url(url)
        ),
        None if store.starts_with("sqs://") => store,
        None => anyhow::bail!(
            "--dlq sqs:{queue} needs the SQS region (and endpoint): pass --dlq-store \
                sqs://REGION?endpoint=URL (or set DLQ_DLQ_STORE); credentials come from the \
                AWS environment"
        ),
    };
    let queue = dlq_sqs::config::queue_name(queue).context("--dlq")?;
    let shown = dlq_sqs::config::redact_url(url);
    let store =
        SqsStore::open_url(url).with_context(|| format!("opening the SQS store {shown}"))?;
    Ok(Some(SqsDlq { store, queue }))
}

impl AnyStore {
    /// How `--to` names a destination of the store itself (`kafka:TOPIC`),
    /// for stores that replay to their own destinations.
    pub fn output_scheme(&self) -> Option<&'static str> {
        match self {
            AnyStore::Kafka(_) => Some("kafka"),
            AnyStore::Sqlite(_) | AnyStore::Memory(_) | AnyStore::Sqs(_) | AnyStore::S3(_) => None,
        }
    }
}

/// Opens the store at `url`.
pub fn open(url: &str) -> anyhow::Result<AnyStore> {
    if url.starts_with("sqlite:") {
        let store = SqliteStore::open_url(url)
            .with_context(|| format!("opening the embedded store {url}"))?;
        Ok(AnyStore::Sqlite(Box::new(store)))
    } else if url == "memory://" || url == "memory:" {
        Ok(AnyStore::Memory(Box::default()))
    } else if url.starts_with("kafka://") {
        // Credentials never travel in the URL (the config refuses them);
        // still, errors show it redacted.
        let shown = dlq_kafka::config::redact_url(url);
        let config = dlq_kafka::KafkaConfig::from_url(url)
            .map_err(|e| dlq_core::store::StoreError::InvalidUrl {
                url: shown.clone(),
                reason: e.problems.join("; "),
            })
            .with_context(|| format!("opening the Kafka store {shown}"))?;
        let store =
            KafkaStore::open(config).with_context(|| format!("opening the Kafka store {shown}"))?;
        Ok(AnyStore::Kafka(Box::new(store)))
    } else if url.starts_with("sqs://") {
        // Credentials come from the standard AWS chain; the config refuses
        // them in the URL, and errors show it redacted.
        let shown = dlq_sqs::config::redact_url(url);
        let store =
            SqsStore::open_url(url).with_context(|| format!("opening the SQS store {shown}"))?;
        Ok(AnyStore::Sqs(Box::new(store)))
    } else if url.starts_with("s3://") {
        // Credentials come from the AWS environment, never the URL (the
        // config refuses them without echoing them).
        let config = dlq_s3::S3Config::from_url(url).context("opening the S3 store")?;
        let shown = config.url();
        let store =
            S3Store::open(config).with_context(|| format!("opening the S3 store {shown}"))?;
        Ok(AnyStore::S3(Box::new(store)))
    } else {
        anyhow::bail!(
            "store {:?} is not a store URL; use sqlite://PATH (e.g. sqlite://dlq.db), \
             kafka://HOST:PORT, sqs://REGION?endpoint=URL, s3://BUCKET/PREFIX or memory://",
            dlq_kafka::config::redact_url(url)
        )
    }
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Sqlite($s) => $e,
            AnyStore::Memory($s) => $e,
            AnyStore::Kafka($s) => $e,
            AnyStore::Sqs($s) => $e,
            AnyStore::S3($s) => $e,
        }
    };
}

impl DlqStore for AnyStore {
    fn commit(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        delegate!(self, s => s.commit(batch))
    }

    fn capabilities(&self) -> Capabilities {
        delegate!(self, s => s.capabilities())
    }

    fn submit(&mut self, batch: Batch<'_>) -> Result<Submitted> {
        delegate!(self, s => s.submit(batch))
    }

    fn completed(&mut self, wait: bool) -> Result<Vec<(Ticket, CommitReport)>> {
        delegate!(self, s => s.completed(wait))
    }

    fn has_destination(&self, name: &str) -> Result<bool> {
        delegate!(self, s => s.has_destination(name))
    }

    fn scan(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<ScanPage> {
        delegate!(self, s => s.scan(selection, after, limit))
    }

    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>> {
        delegate!(self, s => s.get(dlq, id))
    }

    fn stats(&self) -> Result<Vec<DlqStats>> {
        delegate!(self, s => s.stats())
    }

    fn dlqs(&self) -> Result<Vec<String>> {
        delegate!(self, s => s.dlqs())
    }

    fn checkpoint(&self, name: &str) -> Result<Option<String>> {
        delegate!(self, s => s.checkpoint(name))
    }
}
