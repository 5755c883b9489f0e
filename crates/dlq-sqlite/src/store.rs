//! [`SqliteStore`]: the [`DlqStore`] implementation.

use crate::client;
use crate::config::{Location, SqliteOptions, SqliteUrl};
use crate::retry::{backend, corrupt};
use chrono::{DateTime, Utc};
use dlq_core::envelope::{self, ClaimError, Encoded};
use dlq_core::store::{
    Batch, CommitReport, Cursor, DlqStats, DlqStore, PartitionStats, Result, ScanPage, Selection,
    Status, StoredRecord, can_settle,
};
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params, params_from_iter};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

/// The embedded DLQ store: one SQLite database file in WAL mode.
///
/// A store owns one connection. Several stores (threads or processes) may
/// open the same file: readers see committed snapshots and never block the
/// writer; writers take turns, waiting up to
/// [`SqliteOptions::busy_timeout`] and then failing with a retryable error.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    options: SqliteOptions,
}

const INSERT_RECORD: &str = "INSERT INTO records (dlq, id, status, stored_at, failed_at, \
     first_failed_at, source_system, source_topic, source_partition, source_offset, stage, \
     error_class, retryable, replays, envelope) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15) \
     ON CONFLICT (dlq, id) DO NOTHING";
const INSERT_BLOB: &str =
    "INSERT INTO blobs (sha256, size, bytes) VALUES (?1, ?2, ?3) ON CONFLICT (sha256) DO NOTHING";
const FIND_FOR_SETTLE: &str =
    "SELECT seq, status, source_partition FROM records WHERE dlq = ?1 AND id = ?2";
const SETTLE: &str = "UPDATE records SET status = ?1, settled_at = ?2 WHERE seq = ?3";
// SQLite checks `n >= 0` on the row to insert before it finds the conflict,
// so decrements are plain updates of a counter that must exist.
const ADD_TO_COUNTER: &str = "INSERT INTO counters (dlq, status, source_partition, n) \
     VALUES (?1, ?2, ?3, ?4) \
     ON CONFLICT (dlq, status, source_partition) DO UPDATE SET n = n + excluded.n";
const TAKE_FROM_COUNTER: &str = "UPDATE counters SET n = n + ?4 \
     WHERE dlq = ?1 AND status = ?2 AND source_partition = ?3";
const PUT_CHECKPOINT: &str = "INSERT INTO checkpoints (name, value, updated_at) VALUES (?1, ?2, ?3) \
     ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at";
const GET_CHECKPOINT: &str = "SELECT value FROM checkpoints WHERE name = ?1";
const RECORD_COLUMNS: &str = "seq, dlq, id, status, stored_at, settled_at, envelope";
const GET_BLOB: &str = "SELECT bytes FROM blobs WHERE sha256 = ?1";
const COUNTERS: &str = "SELECT dlq, status, source_partition, n FROM counters WHERE n > 0 \
     ORDER BY dlq, source_partition";
const OLDEST_PENDING: &str =
    "SELECT MIN(failed_at) FROM records WHERE dlq = ?1 AND status = 'pending'";
const DLQS: &str = "SELECT DISTINCT dlq FROM counters WHERE n > 0 ORDER BY dlq";

/// Rows fetched per query while a scan fills a page: bounds memory when
/// envelopes are large and the filter rejects little.
const SCAN_CHUNK: usize = 128;

/// A record row before decoding.
struct Row {
    seq: i64,
    dlq: String,
    id: String,
    status: String,
    stored_at: i64,
    settled_at: Option<i64>,
    envelope: Vec<u8>,
}

impl Row {
    fn read(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
        Ok(Row {
            seq: r.get(0)?,
            dlq: r.get(1)?,
            id: r.get(2)?,
            status: r.get(3)?,
            stored_at: r.get(4)?,
            settled_at: r.get(5)?,
            envelope: r.get(6)?,
        })
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store at `path`, applying any schema
    /// migrations it lacks. `:memory:` opens a private in-memory database.
    pub fn open(path: impl AsRef<Path>, options: SqliteOptions) -> Result<SqliteStore> {
        let path = path.as_ref().to_path_buf();
        let conn = client::open(&path, &options)?;
        Ok(SqliteStore {
            conn,
            path,
            options,
        })
    }

    /// Opens the store a `sqlite://` URL names; see [`SqliteUrl::parse`]
    /// for the forms and parameters (`sqlite://dlq.db?max_bytes=1048576`).
    pub fn open_url(url: &str) -> Result<SqliteStore> {
        let parsed = SqliteUrl::parse(url)?;
        let path = match parsed.location {
            Location::File(path) => path,
            Location::Memory => PathBuf::from(":memory:"),
        };
        SqliteStore::open(path, parsed.options)
    }

    /// The database path (`:memory:` for an in-memory store).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The options the store was opened with.
    pub fn options(&self) -> &SqliteOptions {
        &self.options
    }

    /// Reads and decodes one record, restoring claim-checked parts from the
    /// blobs table (their SHA-256 is verified by `resolve_claims`).
    fn materialize(&self, row: Row) -> Result<StoredRecord> {
        let op = "reading a record";
        let status = Status::parse(&row.status).ok_or_else(|| {
            corrupt(
                op,
                &self.path,
                format!("record {:?} has an unknown status {:?}", row.id, row.status),
            )
        })?;
        let stored_at = self.time(op, row.stored_at)?;
        let settled_at = row.settled_at.map(|t| self.time(op, t)).transpose()?;
        let mut letter = envelope::decode(&row.envelope, &row.id);
        if letter.has_claim_checks() {
            let mut stmt = self
                .conn
                .prepare_cached(GET_BLOB)
                .map_err(|e| backend(op, &self.path, e))?;
            letter.resolve_claims(|claim| {
                stmt.query_row([&claim.sha256], |r| r.get::<_, Vec<u8>>(0))
                    .optional()
                    .map_err(|e| ClaimError::Store {
                        pointer: claim.pointer.clone(),
                        message: format!("reading blobs of {}: {e}", self.path.display()),
                    })
            })?;
        }
        Ok(StoredRecord {
            dlq: row.dlq,
            status,
            stored_at,
            settled_at,
            letter,
        })
    }

    fn time(&self, op: &str, millis: i64) -> Result<DateTime<Utc>> {
        DateTime::from_timestamp_millis(millis).ok_or_else(|| {
            corrupt(
                op,
                &self.path,
                format!("timestamp {millis} is out of range"),
            )
        })
    }

    /// A read transaction, so that a call's several queries see one snapshot.
    fn read_tx(&self, op: &str) -> Result<rusqlite::Transaction<'_>> {
        self.conn
            .unchecked_transaction()
            .map_err(|e| backend(op, &self.path, e))
    }
}

/// The `(dlq, status)` pairs that hold records, from the counters.
const PAIRS: &str = "SELECT DISTINCT dlq, status FROM counters WHERE n > 0 ORDER BY dlq, status";

/// Above this many `(dlq, status)` pairs a scan uses one plain query instead
/// of a union (SQLite allows 500 compound terms; this stays far below).
const MAX_UNION: usize = 32;

/// The page query over `pairs` `(dlq, status)` pairs, after `seq` `?1`, at
/// most `?2` rows; pair `k` is bound to `?(3 + 2k)` and `?(4 + 2k)`.
///
/// Each pair is one ordered range of the `records_by_status` index, cut to
/// `?2` entries; the outer query reads the rows of the union in `seq` order.
/// A page thus costs O(page × pairs) however many records lie between the
/// cursor and the next match, where a single `status IN (..)` query would
/// sort every candidate after the cursor, envelopes included.
fn union_sql(pairs: usize) -> String {
    let parts: Vec<String> = (0..pairs)
        .map(|k| {
            format!(
                "SELECT seq FROM (SELECT seq FROM records WHERE dlq = ?{} AND status = ?{} \
                 AND seq > ?1 ORDER BY seq LIMIT ?2)",
                3 + 2 * k,
                4 + 2 * k
            )
        })
        .collect();
    format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE seq IN ({}) ORDER BY seq LIMIT ?2",
        parts.join(" UNION ALL ")
    )
}

/// The page query when there are too many pairs for a union: DLQ and
/// statuses pushed down as plain predicates, walking `seq` in order.
fn plain_sql(selection: &Selection) -> String {
    let list = Status::ALL
        .into_iter()
        .filter(|&s| selection.wants_status(s))
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let dlq = if selection.dlq.is_some() {
        "dlq = ?3 AND "
    } else {
        ""
    };
    format!(
        "SELECT {RECORD_COLUMNS} FROM records WHERE {dlq}status IN ({list}) AND seq > ?1 \
         ORDER BY seq LIMIT ?2"
    )
}

impl DlqStore for SqliteStore {
    fn commit(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        // The embedded store has no destinations of its own: outputs go
        // through replay targets, which commit their checkpoints here.
        batch.check_supported(self.capabilities(), "sqlite")?;
        // Encode first: a record that cannot be encoded fails the batch
        // before anything is written.
        let encoded: Vec<Encoded> = batch
            .append
            .iter()
            .map(|e| envelope::encode(&e.letter, &self.options.encode))
            .collect::<Result<_, _>>()?;
        let op = "commit";
        let path = &self.path;
        let err = |e| backend(op, path, e);
        let now = Utc::now().timestamp_millis();
        let mut report = CommitReport::default();
        let mut counts: HashMap<(&str, Status, i64), i64> = HashMap::new();

        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        {
            let mut insert = tx.prepare_cached(INSERT_RECORD).map_err(err)?;
            let mut insert_blob = tx.prepare_cached(INSERT_BLOB).map_err(err)?;
            for (entry, enc) in batch.append.iter().zip(&encoded) {
                let l = &entry.letter;
                let inserted = insert
                    .execute(params![
                        entry.dlq,
                        l.id,
                        entry.status.as_str(),
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
                        enc.bytes,
                    ])
                    .map_err(err)?;
                if inserted == 0 {
                    report.duplicates += 1;
                    continue;
                }
                report.appended += 1;
                for blob in &enc.blobs {
                    let size = i64::try_from(blob.bytes.len()).unwrap_or(i64::MAX);
                    insert_blob
                        .execute(params![blob.sha256, size, blob.bytes])
                        .map_err(err)?;
                }
                let partition = i64::from(l.source.partition.unwrap_or(-1));
                *counts
                    .entry((&entry.dlq, entry.status, partition))
                    .or_default() += 1;
            }
        }
        {
            let mut find = tx.prepare_cached(FIND_FOR_SETTLE).map_err(err)?;
            let mut update = tx.prepare_cached(SETTLE).map_err(err)?;
            for s in batch.settle {
                let found = find
                    .query_row(params![s.dlq, s.id], |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, Option<i64>>(2)?,
                        ))
                    })
                    .optional()
                    .map_err(err)?;
                let Some((seq, status, partition)) = found else {
                    continue;
                };
                let from = Status::parse(&status).ok_or_else(|| {
                    corrupt(
                        op,
                        path,
                        format!("record {:?} has an unknown status {status:?}", s.id),
                    )
                })?;
                if !can_settle(from, s.outcome) {
                    continue;
                }
                update
                    .execute(params![s.outcome.as_str(), now, seq])
                    .map_err(err)?;
                report.settled += 1;
                let partition = partition.unwrap_or(-1);
                *counts.entry((&s.dlq, from, partition)).or_default() -= 1;
                *counts.entry((&s.dlq, s.outcome, partition)).or_default() += 1;
            }
        }
        {
            let mut add = tx.prepare_cached(ADD_TO_COUNTER).map_err(err)?;
            let mut take = tx.prepare_cached(TAKE_FROM_COUNTER).map_err(err)?;
            for ((dlq, status, partition), delta) in counts {
                let args = params![dlq, status.as_str(), partition, delta];
                let changed = match delta {
                    0 => continue,
                    1.. => add.execute(args),
                    _ => take.execute(args),
                }
                .map_err(err)?;
                if changed != 1 {
                    return Err(corrupt(
                        op,
                        path,
                        format!("no {status} counter for {dlq:?} partition {partition}"),
                    ));
                }
            }
        }
        if let Some((name, value)) = batch.checkpoint {
            tx.prepare_cached(PUT_CHECKPOINT)
                .and_then(|mut s| s.execute(params![name, value, now]))
                .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(report)
    }

    fn scan(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<ScanPage> {
        let op = "scan";
        let err = |e| backend(op, &self.path, e);
        let mut last: i64 = match after {
            None => 0,
            Some(c) => c.0.parse().map_err(|_| {
                corrupt(
                    op,
                    &self.path,
                    format!("{:?} is not a cursor of this store", c.0),
                )
            })?,
        };
        let _tx = self.read_tx(op)?;
        // Which (dlq, status) pairs hold selected records, in this snapshot.
        let pairs: Vec<(String, String)> = self
            .conn
            .prepare_cached(PAIRS)
            .and_then(|mut stmt| {
                stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<Vec<(String, String)>>>()
            })
            .map_err(err)?
            .into_iter()
            .filter(|(dlq, status)| {
                selection.dlq.as_ref().is_none_or(|d| d == dlq)
                    && Status::parse(status).is_some_and(|s| selection.wants_status(s))
            })
            .collect();
        let mut page = ScanPage::default();
        if pairs.is_empty() {
            return Ok(page);
        }
        let (sql, fixed) = if pairs.len() <= MAX_UNION {
            let mut fixed = Vec::with_capacity(2 * pairs.len());
            for (dlq, status) in pairs {
                fixed.push(Value::Text(dlq));
                fixed.push(Value::Text(status));
            }
            (union_sql(fixed.len() / 2), fixed)
        } else {
            let fixed = selection.dlq.iter().cloned().map(Value::Text).collect();
            (plain_sql(selection), fixed)
        };
        loop {
            let want = (limit - page.records.len())
                .saturating_add(1)
                .min(SCAN_CHUNK);
            let rows: Vec<Row> = {
                let mut stmt = self.conn.prepare_cached(&sql).map_err(err)?;
                let want_sql = i64::try_from(want).unwrap_or(i64::MAX);
                let args = [Value::Integer(last), Value::Integer(want_sql)];
                stmt.query_map(params_from_iter(args.iter().chain(&fixed)), Row::read)
                    .and_then(|rows| rows.collect::<rusqlite::Result<_>>())
                    .map_err(err)?
            };
            let fetched = rows.len();
            for row in rows {
                if page.records.len() >= limit {
                    page.next = Some(Cursor(last.to_string()));
                    return Ok(page);
                }
                last = row.seq;
                let record = self.materialize(row)?;
                if selection.filter.as_ref().is_none_or(|f| f.matches(&record)) {
                    page.records.push(record);
                }
            }
            if fetched < want {
                return Ok(page);
            }
        }
    }

    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>> {
        let op = "get";
        let _tx = self.read_tx(op)?;
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {RECORD_COLUMNS} FROM records WHERE dlq = ?1 AND id = ?2"
            ))
            .and_then(|mut s| s.query_row(params![dlq, id], Row::read).optional())
            .map_err(|e| backend(op, &self.path, e))?;
        row.map(|row| self.materialize(row)).transpose()
    }

    fn stats(&self) -> Result<Vec<DlqStats>> {
        let op = "stats";
        let err = |e| backend(op, &self.path, e);
        let _tx = self.read_tx(op)?;
        let mut by_dlq: BTreeMap<String, DlqStats> = BTreeMap::new();
        {
            let mut stmt = self.conn.prepare_cached(COUNTERS).map_err(err)?;
            let mut rows = stmt.query([]).map_err(err)?;
            while let Some(r) = rows.next().map_err(err)? {
                let dlq: String = r.get(0).map_err(err)?;
                let status: String = r.get(1).map_err(err)?;
                let partition: i64 = r.get(2).map_err(err)?;
                let n: i64 = r.get(3).map_err(err)?;
                let n = u64::try_from(n).unwrap_or(0);
                let status = Status::parse(&status).ok_or_else(|| {
                    corrupt(
                        op,
                        &self.path,
                        format!("counter with unknown status {status:?}"),
                    )
                })?;
                let s = by_dlq
                    .entry(dlq)
                    .or_insert_with_key(|dlq| DlqStats::empty(dlq));
                s.total += n;
                match status {
                    Status::Pending => {
                        s.pending += n;
                        s.partitions.push(PartitionStats {
                            partition: i32::try_from(partition).unwrap_or(-1),
                            pending: n,
                        });
                    }
                    Status::Parked => s.parked += n,
                    Status::Replayed => s.replayed += n,
                    Status::Discarded => s.discarded += n,
                    Status::Archived => s.archived += n,
                }
            }
        }
        let mut oldest = self.conn.prepare_cached(OLDEST_PENDING).map_err(err)?;
        for s in by_dlq.values_mut().filter(|s| s.pending > 0) {
            let at: Option<i64> = oldest.query_row([&s.dlq], |r| r.get(0)).map_err(err)?;
            s.oldest_pending_at = at.map(|t| self.time(op, t)).transpose()?;
        }
        Ok(by_dlq.into_values().collect())
    }

    fn dlqs(&self) -> Result<Vec<String>> {
        let op = "listing DLQs";
        self.conn
            .prepare_cached(DLQS)
            .and_then(|mut s| s.query_map([], |r| r.get(0))?.collect())
            .map_err(|e| backend(op, &self.path, e))
    }

    fn checkpoint(&self, name: &str) -> Result<Option<String>> {
        self.conn
            .prepare_cached(GET_CHECKPOINT)
            .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional())
            .map_err(|e| backend("reading a checkpoint", &self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(conn: &Connection, sql: &str) -> String {
        let mut stmt = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
            .expect("explain");
        let rows = stmt
            .query_map([], |r| r.get::<_, String>(3))
            .expect("query")
            .collect::<rusqlite::Result<Vec<_>>>()
            .expect("rows");
        rows.join(" | ")
    }

    /// Guards the indexes the hot queries rely on: a scan page is one
    /// ordered range of `records_by_status` per (dlq, status) pair, with no
    /// sort of the candidates, and the oldest pending record is one seek in
    /// `records_oldest`.
    #[test]
    fn hot_queries_use_their_indexes() {
        let store = SqliteStore::open(":memory:", SqliteOptions::default()).expect("open");
        let mut sql = union_sql(3).replace("?1", "0").replace("?2", "10");
        for k in (3..9).rev() {
            sql = sql.replace(&format!("?{k}"), "'x'");
        }
        let p = plan(&store.conn, &sql);
        assert_eq!(p.matches("records_by_status").count(), 3, "{p}");
        assert!(!p.contains("TEMP B-TREE"), "{p}");
        let p = plan(&store.conn, &OLDEST_PENDING.replace("?1", "'dlq.a'"));
        assert!(p.contains("records_oldest"), "{p}");
        let p = plan(
            &store.conn,
            &FIND_FOR_SETTLE.replace("?1", "'a'").replace("?2", "'1'"),
        );
        assert!(p.contains("sqlite_autoindex_records_1"), "{p}");
    }

    /// With more (dlq, status) pairs than a union takes, scans fall back to
    /// one plain query and still page in store order.
    #[test]
    fn scans_over_many_dlqs_use_the_plain_query() {
        use dlq_core::store::Entry;
        use dlq_core::{DeadLetter, Failure};
        let mut store = SqliteStore::open(":memory:", SqliteOptions::default()).expect("open");
        let f = Failure::permanent("validate", "validation.x", "bad");
        let dlqs = MAX_UNION + 8;
        let entries: Vec<Entry> = (0..3 * dlqs)
            .map(|i| Entry {
                dlq: format!("dlq.{}", i % dlqs),
                letter: DeadLetter::new(i.to_string(), b"{}".to_vec(), &f),
                status: if i % 3 == 0 {
                    Status::Parked
                } else {
                    Status::Pending
                },
            })
            .collect();
        store.append(&entries).expect("append");
        let selection = Selection {
            dlq: None,
            statuses: vec![Status::Pending, Status::Parked],
            filter: None,
        };
        let ids: Vec<String> = store
            .scan_all(&selection, 7)
            .map(|r| r.map(|r| r.letter.id))
            .collect::<Result<_>>()
            .expect("scan");
        let want: Vec<String> = (0..3 * dlqs).map(|i| i.to_string()).collect();
        assert_eq!(ids, want);
        let parked = store
            .scan_all(
                &Selection {
                    dlq: Some("dlq.0".into()),
                    statuses: vec![Status::Parked],
                    filter: None,
                },
                2,
            )
            .count();
        assert_eq!(parked, 1, "{dlqs} DLQs, one parked record in dlq.0");
    }
}
