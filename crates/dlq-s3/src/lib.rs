//! dlq-s3: a dead letter queue store in an S3 bucket
//! (`s3://BUCKET/PREFIX?endpoint=URL&region=R`).
//!
//! What must outlive a Kafka topic's retention goes to S3: dead letters
//! kept for months, readable by the tools a data team already has. This
//! crate implements [`dlq_core::DlqStore`] on a bucket, so that every dlq
//! command (`stats`, `inspect`, `analyze`, `replay`, `export`) works on it,
//! while the data stays plain files that Athena, Spark or DuckDB read as
//! they are.
//!
//! # Layout
//!
//! ```text
//! PREFIX/dlq=<dlq>/dt=YYYY-MM-DD/hour=HH/<version>-<writer>.ndjson.gz
//! PREFIX/_dlq_log/<version>.json        one entry per commit
//! PREFIX/_dlq_log/_last_snapshot        the newest snapshot's version
//! PREFIX/_dlq_state/<version>.json.gz   the log folded up to a version
//! PREFIX/_dlq_blobs/<sha256>            claim-checked parts of big records
//! ```
//!
//! * **Data objects** are gzip-compressed NDJSON, one dlq envelope per line
//!   (`docs/envelope.md`), one object per DLQ per commit, partitioned
//!   Hive-style by DLQ and by the hour (UTC) dlq stored them. They are
//!   written once and never changed: a record's status is not in them.
//! * **The commit log** (`_dlq_log/`, like Delta Lake's) is the commit
//!   point: a commit writes its data objects, then its log entry (the new
//!   objects with each record's id, status, failure time and source
//!   partition; the settlements; the checkpoint) as
//!   `<version>.json` with `If-None-Match: *`. The entry is atomic, so a
//!   batch is all there or not at all; objects no entry names (a crash
//!   before the entry) are never read by dlq.
//! * **Concurrent writers**: a writer that loses the race for a version
//!   (412) deletes its objects, reads the winner's entry and plans its
//!   commit again: appends stay idempotent by `(dlq, id)` and settlements
//!   apply to the status the winner left. This needs an endpoint that
//!   enforces `If-None-Match` (AWS S3 does); the store finds out when it
//!   opens ([`ConditionalWrites`]) and, where it is not enforced
//!   (S3Proxy), checks for the entry right before writing it and warns that
//!   only one writer at a time is safe.
//! * **Opening** reads the newest snapshot (written every
//!   [`S3Config::snapshot_every`] commits) and the log entries after it;
//!   every read lists the log after the version it knows and applies what
//!   is new. `stats` is answered from that state: no data object is listed
//!   or read. Scans walk the state in log order (a cursor is a position in
//!   it) and read each data object once, for the records they return.
//!
//! # Modules
//!
//! * [`config`]: [`S3Config`] and its URL;
//! * `store`: [`S3Store`], the trait implementation;
//! * `state`: the log entry and snapshot formats, and their fold;
//! * `layout`: object keys;
//! * `client`: blocking S3 calls over the AWS SDK (checksums only where
//!   required, path-style addressing for a custom endpoint);
//! * `errors`: which S3 failures are retryable.
//!
//! Credentials come from the standard AWS chain only (environment, shared
//! profile, SSO, instance role), never from the URL.
//!
//! # Example
//!
//! ```
//! use dlq_s3::S3Config;
//!
//! let config = S3Config::from_url(
//!     "s3://dlq-archive/prod?endpoint=http://127.0.0.1:19380&region=eu-west-1",
//! )?;
//! assert_eq!((config.bucket.as_str(), config.prefix.as_str()), ("dlq-archive", "prod"));
//! assert!(S3Config::from_url("s3://AKIA:secret@dlq-archive").is_err(), "no credentials in URLs");
//! # Ok::<(), dlq_core::store::StoreError>(())
//! ```
//!
//! Opening it needs the bucket (and credentials in the environment):
//!
//! ```no_run
//! use dlq_core::store::{DlqStore, Selection};
//! # let config = dlq_s3::S3Config::new("dlq-archive");
//! let store = dlq_s3::S3Store::open(config)?;
//! for dlq in store.stats()? {
//!     println!("{}: {} pending", dlq.dlq, dlq.pending);
//! }
//! let first = store.scan(&Selection::pending(None), None, 100)?;
//! # Ok::<(), dlq_core::store::StoreError>(())
//! ```

mod client;
pub mod config;
mod errors;
mod layout;
mod state;
mod store;

pub use config::S3Config;
pub use store::{ConditionalWrites, S3Store};
