//! dlq-kafka: the Kafka DLQ store (`kafka://HOST:PORT`).
//!
//! Pipelines that already run Kafka usually want their dead letters next to
//! their data: in topics (`dlq.rss.events`, `dlq.polymarket.price_hourly`)
//! that Kafka tools, Connect and Spring already understand. This crate
//! implements [`dlq_core::DlqStore`] on a Kafka cluster with the same
//! contract as [`dlq_core::memory::MemoryStore`].
//!
//! # Layout on the cluster
//!
//! * **DLQ topics**, one per DLQ, named with a prefix (`dlq.` by default).
//!   Created when missing with the source topic's partition count (else
//!   [`KafkaConfig::default_partitions`]) and the configured retention. A
//!   record goes to its source partition modulo the DLQ's partition count
//!   (per-partition order is kept), keyed by the original record's key;
//!   its value is the v1 envelope ([`Format::Envelope`]) or the raw payload
//!   with `dlq.*` headers ([`Format::Headers`]). Records written by others
//!   into a DLQ topic (Kafka Connect, Spring Kafka, the seed format, raw
//!   records) are read too, with ids `kafka:<dlq topic>:<partition>:<offset>`.
//! * **The ledger** (`dlq.ledger`), a compacted topic: settlement marks and
//!   count state per segment of 65,536 offsets of a DLQ partition (keyed by
//!   the topic's id), checkpoints and blob locations (see [`ledger`]). A
//!   record's status is the mark of its offset, else pending.
//! * **The blob topic** (`dlq.blobs`), compacted: Kafka has no blob store,
//!   so claim-check blobs (payloads too large for one message) are written
//!   there in chunks below the message limit, keyed
//!   `sha256:<hex>:<chunk>`; the ledger says where the chunks are, and the
//!   SHA-256 is verified when they are read back. Blobs are content
//!   addressed: one stored blob serves every record that carries it.
//!
//! # Guarantees
//!
//! * **Atomic, durable, visible commits.** With
//!   [`KafkaConfig::transactions`] (the default) a
//!   [`Batch`](dlq_core::store::Batch) is one Kafka transaction: DLQ
//!   records, blob chunks, ledger entries and the checkpoint are all visible
//!   to read_committed readers (the store reads nothing else) or none are.
//!   `commit` returns once every record is acknowledged by all in-sync
//!   replicas (`acks=all`, idempotent producer), the transaction is
//!   committed, and its markers are written (the last stable offset has
//!   passed the records, so another store sees them at once). Sends are
//!   pipelined, never awaited one by one; a delivery timeout is an error,
//!   never "sent". A failed write aborts the transaction and recreates the
//!   producer; a commit that fails or times out (its outcome unknown:
//!   librdkafka has no KIP-890) recreates it too, whose `init_transactions`
//!   fences the old one. The error says whether a retry can help, and a
//!   retried batch is safe (appends are idempotent, settling is too).
//!   Without transactions the guarantee is weaker: a failed commit may
//!   leave part of a batch in the topics (a retry completes it), and a
//!   reader may briefly see a record before its ledger entries.
//! * **Idempotent appends; duplicates in the log are left out.** Kafka
//!   cannot refuse a duplicate, so an append checks its id against the ids
//!   of the last [`KafkaConfig::dedup_window`] records of the partition it
//!   goes to (dlq's writers put every copy of a record in the same
//!   partition, by its source partition) and against the records this
//!   store has seen, and skips it (`duplicates` in the report). If a copy
//!   reaches the log anyway (two writers racing, a retry without
//!   transactions), the reader that counts that range finds it within the
//!   same window and marks it in the count state: `scan`, `get` and `stats`
//!   leave it out on every store, until its first copy is deleted by
//!   retention. A copy farther than the window from its first copy, or in
//!   another partition (only a foreign writer does that), is a record of
//!   its own.
//! * **Settle rules** ([`can_settle`](dlq_core::store::can_settle)) are
//!   checked against the store's view, refreshed at the start of each
//!   commit (the replayer's commits use the view of the scan that selected
//!   their records, read just before); two stores settling the same record
//!   at the same instant both succeed and the later ledger entry wins.
//! * **Costs that follow the work, not the DLQ's size.** Nothing per
//!   record is kept in memory. `stats` costs a metadata request, the topic
//!   ids, two ListOffsets requests (low and high watermarks of every
//!   partition at once), what is new in the ledger, and one fetch per
//!   partition with pending records (the first one's failure time: records
//!   are appended in failure order). Counts are `high − low` less the
//!   settled offsets and those that hold no record (transaction markers,
//!   aborted records, later copies), which a reader finds by reading each
//!   offset once, ever: it writes what it found to the ledger, so every
//!   later reader reads only what arrived since. Scans stream from the
//!   first offset they want and seek past settled runs; settling by id finds
//!   the position in a bounded cache the scans fill, else by reading the
//!   DLQ partition the id names. Partitions in stats are the DLQ topic's,
//!   which dlq's writers choose as the source partition.
//! * **Retention.** Segments of marks and counts wholly below a
//!   partition's log start are deleted (tombstoned) by the next commit, so
//!   the ledger holds a few entries per 65,536 retained offsets.
//!
//! All calls block: from async code, run the store in `spawn_blocking`.
//! Blobs are not deleted yet when their records expire (the blob topic is
//! compacted, so each blob is kept once).
//!
//! # Layout of the crate
//!
//! * [`config`]: [`KafkaConfig`], the `kafka://` URL, `DLQ_KAFKA_*`, [`Secret`];
//! * `store`: [`KafkaStore`], the trait implementation: partition state,
//!   counts, streaming scans, the write path;
//! * [`settlement`]: settlement marks in segments;
//! * [`ledger`]: the ledger entries;
//! * [`position`]: [`TopicPartition`](position::TopicPartition) and
//!   [`PartitionOffset`](position::PartitionOffset);
//! * `client`: raw rdkafka I/O (admin, producer, consumer, watermarks);
//! * `headers`: record headers in and out, byte for byte, through
//!   `dlq-kafka-ffi` (rdkafka's own header API panics on a name that is
//!   not UTF-8);
//! * [`retry`]: which rdkafka errors are retryable, secrets scrubbed.
//!
//! # Example
//!
//! Delivery semantics: `append` returns once the records are committed on
//! the broker; a second append of the same id is a duplicate, not a second
//! record.
//!
//! ```no_run
//! use dlq_core::store::{DlqStore, Entry, Selection, Status};
//! use dlq_core::{DeadLetter, Failure};
//! use dlq_kafka::KafkaStore;
//!
//! let mut store = KafkaStore::open_url("kafka://127.0.0.1:19092?replication_factor=1")?;
//! let failure = Failure::permanent("validate", "validation.price_out_of_range", "price 1.7");
//! let mut letter = DeadLetter::new(
//!     "kafka:polymarket.price_hourly:3:1812",
//!     br#"{"price":1.7}"#.to_vec(),
//!     &failure,
//! );
//! letter.source.topic = Some("polymarket.price_hourly".into());
//! letter.source.partition = Some(3);
//! let entry = Entry { dlq: "dlq.polymarket.price_hourly".into(), letter, status: Status::Pending };
//! assert_eq!(store.append(&[entry.clone()])?.appended, 1);
//! assert_eq!(store.append(&[entry])?.duplicates, 1, "appends are idempotent");
//!
//! let pending: Vec<_> = store
//!     .scan_all(&Selection::pending(Some("dlq.polymarket.price_hourly")), 100)
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(pending[0].letter.payload, br#"{"price":1.7}"#);
//! store.settle("dlq.polymarket.price_hourly", &[pending[0].letter.id.clone()], Status::Replayed)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
pub mod config;
mod headers;
pub mod ledger;
mod partitioner;
mod pipeline;
pub mod position;
pub mod processor;
pub mod producer;
pub mod retention;
pub mod retry;
pub mod settlement;
mod store;
pub mod target;

pub use config::{ConfigError, Format, KafkaConfig, Secret};
pub use store::{KafkaStore, MigrationReport};
pub use target::KafkaTarget;
