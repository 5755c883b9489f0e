//! Append throughput of `SqliteStore::commit` against a bare rusqlite insert
//! loop of the same rows into the same schema.
//!
//! Both sides: 100k small MarketLag-like records (~200-byte JSON payloads),
//! batches of 500, one `BEGIN IMMEDIATE … COMMIT` per batch, the store's
//! PRAGMAs (WAL, `synchronous = FULL`), a fresh database per iteration.
//! The store also encodes each envelope, deduplicates and keeps its counters;
//! the bare loop inserts pre-encoded rows and nothing else. Design goal:
//! store ≥ 0.5× bare.
//!
//! Run: `cargo bench -p dlq-sqlite --bench append`

use criterion::{BatchSize, Criterion, Throughput};
use dlq_core::envelope::{self, EncodeOptions};
use dlq_core::store::{Batch, DlqStore, Entry, Status};
use dlq_core::{DeadLetter, Failure};
use dlq_sqlite::{SqliteOptions, SqliteStore};
use rusqlite::{Connection, params};
use std::path::PathBuf;
use std::time::Duration;

const RECORDS: usize = 100_000;
const BATCH: usize = 500;
const DLQ: &str = "dlq.polymarket.price_hourly";

fn entries() -> Vec<Entry> {
    let failure = Failure::permanent(
        "validate",
        "validation.price_out_of_range",
        "invalid price: expected a number in [0, 1]",
    );
    (0..RECORDS)
        .map(|i| {
            let payload = format!(
                "{{\"market_id\":\"0x{i:040x}\",\"question\":\"Will the Fed cut rates in \
                 December?\",\"outcome\":\"Yes\",\"price\":\"N/A\",\"volume_24h\":{}.25,\
                 \"hour\":\"2026-11-29T07:00:00Z\"}}",
                i * 7
            );
            let partition = (i % 6) as i32;
            let mut letter = DeadLetter::new(
                format!("kafka:polymarket.price_hourly:{partition}:{i}"),
                payload.into_bytes(),
                &failure,
            );
            letter.source.system = "kafka".into();
            letter.source.topic = Some("polymarket.price_hourly".into());
            letter.source.partition = Some(partition);
            letter.source.offset = Some(i as i64);
            letter.key = Some(format!("0x{i:040x}").into_bytes());
            Entry {
                dlq: DLQ.into(),
                letter,
                status: Status::Pending,
            }
        })
        .collect()
}

/// A fresh database with the store's schema, in its own directory.
fn fresh_db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bench.db");
    drop(SqliteStore::open(&path, SqliteOptions::default()).expect("schema"));
    (dir, path)
}

/// A row of the bare loop: the store's columns, envelope pre-encoded.
struct BareRow<'a> {
    entry: &'a Entry,
    envelope: Vec<u8>,
}

fn bare_insert(conn: &mut Connection, rows: &[BareRow<'_>]) {
    for chunk in rows.chunks(BATCH) {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .expect("begin");
        {
            let mut stmt = tx
                .prepare_cached(
                    "INSERT INTO records (dlq, id, status, stored_at, failed_at, \
                     first_failed_at, source_system, source_topic, source_partition, \
                     source_offset, stage, error_class, retryable, replays, envelope) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )
                .expect("prepare");
            let now = chrono::Utc::now().timestamp_millis();
            for row in chunk {
                let l = &row.entry.letter;
                stmt.execute(params![
                    row.entry.dlq,
                    l.id,
                    row.entry.status.as_str(),
                    now,
                    l.failed_at.timestamp_millis(),
                    l.first_failed_at.timestamp_millis(),
                    l.source.system,
                    l.source.topic,
                    l.source.partition,
                    l.source.offset,
                    l.stage,
                    l.error_class,
                    l.retryable,
                    l.replays,
                    row.envelope,
                ])
                .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }
}

fn append(c: &mut Criterion) {
    let entries = entries();
    let bare_rows: Vec<BareRow<'_>> = entries
        .iter()
        .map(|entry| BareRow {
            entry,
            envelope: envelope::encode(&entry.letter, &EncodeOptions::default())
                .expect("encode")
                .bytes,
        })
        .collect();
    let avg = bare_rows.iter().map(|r| r.envelope.len()).sum::<usize>() / RECORDS;
    let payload = entries
        .iter()
        .map(|e| e.letter.payload.len())
        .sum::<usize>()
        / RECORDS;
    eprintln!("{RECORDS} records, payload ~{payload} B, envelope ~{avg} B, batches of {BATCH}");

    let mut group = c.benchmark_group("append_100k");
    group
        .throughput(Throughput::Elements(RECORDS as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(15));

    group.bench_function("sqlite_store_commit", |b| {
        b.iter_batched(
            || {
                let (dir, path) = fresh_db();
                let store = SqliteStore::open(&path, SqliteOptions::default()).expect("open");
                (dir, store)
            },
            |(dir, mut store)| {
                for chunk in entries.chunks(BATCH) {
                    let report = store
                        .commit(Batch {
                            append: chunk,
                            ..Batch::default()
                        })
                        .expect("commit");
                    assert_eq!(report.appended, chunk.len());
                }
                (dir, store)
            },
            BatchSize::PerIteration,
        );
    });

    group.bench_function("bare_rusqlite_insert", |b| {
        b.iter_batched(
            || {
                let (dir, path) = fresh_db();
                let conn = Connection::open(&path).expect("open");
                conn.busy_timeout(SqliteOptions::DEFAULT_BUSY_TIMEOUT)
                    .expect("busy timeout");
                conn.execute_batch(
                    "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
                     PRAGMA fullfsync = ON; PRAGMA foreign_keys = ON;",
                )
                .expect("pragmas");
                (dir, conn)
            },
            |(dir, mut conn)| {
                bare_insert(&mut conn, &bare_rows);
                (dir, conn)
            },
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

// `criterion_group!` would generate an undocumented `pub fn`; this is its
// expansion, without the lint noise.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    append(&mut c);
    c.final_summary();
}
