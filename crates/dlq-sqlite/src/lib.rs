//! dlq-sqlite: the embedded default DLQ store (`sqlite://dlq.db`).
//!
//! A dead letter queue must keep every record it accepted, and most
//! pipelines should not need a server to get one. This crate stores DLQs in
//! one SQLite file (bundled SQLite, no system library), implementing
//! [`dlq_core::DlqStore`] with the same contract as
//! [`dlq_core::memory::MemoryStore`], plus durability.
//!
//! # Guarantees
//!
//! * **Durable on return.** The database runs in WAL mode with
//!   `synchronous = FULL` (and `fullfsync` on macOS): the log is fsynced
//!   before [`commit`](dlq_core::DlqStore::commit) returns, so a commit that
//!   returned survives a power loss or kernel panic, not only a process
//!   crash, on storage that honours fsync.
//! * **Atomic.** One [`Batch`](dlq_core::store::Batch) (appends, their
//!   claim-check blobs, settlements, counter updates and the checkpoint) is
//!   one SQLite transaction: after a crash all of it is there or none.
//! * **Idempotent.** Appends are deduplicated by `(dlq, id)` (a `UNIQUE`
//!   constraint); the first write wins and later ones count as duplicates.
//! * **Byte-exact, bounded.** A record is stored as its encoded v1 envelope
//!   (the source of truth), at most [`SqliteOptions::encode`]`.max_bytes`;
//!   larger parts are claim-checked into a `blobs` table keyed by SHA-256 in
//!   the same transaction, and verified against it when read back.
//! * **Cheap stats.** Counts come from a counters table kept per DLQ,
//!   status and source partition in the commit transaction; the oldest
//!   pending record is one index seek.
//! * **Concurrent readers.** Other stores on the same file (threads or
//!   processes) read committed snapshots without blocking the writer.
//!   Writers take turns; a lock held past [`SqliteOptions::busy_timeout`]
//!   is a retryable [`StoreError::Backend`](dlq_core::store::StoreError).
//!
//! * **Resumable scans.** A scan pages in store order by the row sequence,
//!   the opaque [`Cursor`](dlq_core::store::Cursor); each page is one
//!   snapshot. DLQ and statuses are answered by indexes, the
//!   [`Filter`](dlq_core::filter::Filter) in Rust on the decoded records.
//!
//! Times are kept in milliseconds, the precision of the envelope. A
//! database is its file plus `-wal` and `-shm` beside it while open: copy
//! all of them (or use `sqlite3 dlq.db .backup`), never the main file alone.
//!
//! # Schema
//!
//! `records` (one row per dead letter: the envelope BLOB plus extracted
//! columns, `UNIQUE (dlq, id)`, indexes on `(dlq, status, failed_at)` and
//! `(dlq, status, seq)`), `counters` (per DLQ, status, source partition),
//! `checkpoints` and `blobs`. See `migrations/0001_init.sql`.
//!
//! # Layout
//!
//! * [`config`]: [`SqliteOptions`] and the `sqlite://PATH?max_bytes=N` URL;
//! * `store`: [`SqliteStore`], the trait implementation;
//! * `client`: opening a connection with the settings above, and the
//!   schema migrations, `migrations/NNNN_*.sql` applied in order in one
//!   transaction each and tracked in `PRAGMA user_version`;
//! * [`retry`]: which SQLite errors are retryable (busy, locked).
//!
//! # Example
//!
//! ```
//! use dlq_core::store::{DlqStore, Entry, Selection, Status};
//! use dlq_core::{DeadLetter, Failure};
//! use dlq_sqlite::{SqliteOptions, SqliteStore};
//!
//! let dir = tempfile::tempdir()?;
//! let mut store = SqliteStore::open(dir.path().join("dlq.db"), SqliteOptions::default())?;
//!
//! let failure = Failure::permanent("validate", "validation.price_out_of_range", "price 1.7");
//! let letter = DeadLetter::new("kafka:polymarket.price_hourly:3:1812", br#"{"price":1.7}"#.to_vec(), &failure);
//! let entry = Entry { dlq: "dlq.polymarket.price_hourly".into(), letter, status: Status::Pending };
//! let report = store.append(&[entry.clone()])?;
//! assert_eq!(report.appended, 1);
//! assert_eq!(store.append(&[entry])?.duplicates, 1, "appends are idempotent");
//!
//! let pending: Vec<_> = store
//!     .scan_all(&Selection::pending(Some("dlq.polymarket.price_hourly")), 100)
//!     .collect::<Result<_, _>>()?;
//! assert_eq!(pending[0].letter.payload, br#"{"price":1.7}"#);
//! assert_eq!(store.stats()?[0].pending, 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
pub mod config;
pub mod retry;
mod store;

pub use client::SCHEMA_VERSION;
pub use config::{SqliteOptions, SqliteUrl};
pub use store::SqliteStore;
