//! [`History`]: samples, alert state and undelivered notifications in a
//! SQLite file, so that charts can be drawn from the past and a restarted
//! monitor carries on where it stopped.
//!
//! The file may be the embedded DLQ store's own (`sqlite://PATH`): the
//! monitor's tables are prefixed `monitor_`, and their migrations
//! (`migrations/NNNN_*.sql`) are tracked in `monitor_migrations`, apart from
//! the store's `PRAGMA user_version`. WAL mode lets a reader (an HTTP
//! server, another process) open the same file with [`History::open`] and
//! read samples while the monitor writes.

use crate::alert::{AlertKey, AlertState};
use crate::{Error, Result};
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension as _, Row, TransactionBehavior, params};
use serde::Serialize;
use std::path::Path;
use std::time::Duration;

/// One schema step, applied once, in order.
struct Migration {
    version: i64,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, oldest first. Append only: never edit one that shipped.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_history",
        sql: include_str!("../migrations/0001_history.sql"),
    },
    Migration {
        version: 2,
        name: "0002_archived",
        sql: include_str!("../migrations/0002_archived.sql"),
    },
];

/// The state of one DLQ at one instant, as the monitor sampled it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The DLQ.
    pub dlq: String,
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// Records waiting.
    pub pending: u64,
    /// Records parked after too many failed replays.
    pub parked: u64,
    /// Records replayed.
    pub replayed: u64,
    /// Records discarded.
    pub discarded: u64,
    /// Records moved to an archive store.
    pub archived: u64,
    /// Records the DLQ ever received (on Kafka: those the topic retains).
    pub total: u64,
    /// Records dead-lettered per minute since the previous sample of this
    /// DLQ; `None` for the first sample, or when `total` went down (records
    /// deleted by retention, or a store reset).
    pub inflow_per_minute: Option<f64>,
    /// When the oldest pending record failed.
    pub oldest_pending_at: Option<DateTime<Utc>>,
    /// Its age at `at`, in seconds; `None` when nothing is pending.
    pub oldest_pending_age_seconds: Option<i64>,
    /// Pending records that retention deletes within the expiry window;
    /// `None` when the DLQ's retention is unknown (or forever).
    pub expiry_risk: Option<u64>,
    /// The retention used for the expiry risk, in milliseconds.
    pub retention_ms: Option<u64>,
}

/// A notification waiting in the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Queued {
    pub seq: i64,
    pub sink: String,
    pub body: String,
    pub attempts: u32,
}

/// The monitor's SQLite history.
pub struct History {
    conn: Connection,
    label: String,
}

impl std::fmt::Debug for History {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("path", &self.label)
            .finish_non_exhaustive()
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn time(ms: i64) -> DateTime<Utc> {
    // Only this module writes these columns, from valid instants.
    DateTime::from_timestamp_millis(ms).unwrap_or(DateTime::UNIX_EPOCH)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

const SAMPLE_COLUMNS: &str = "dlq, at, pending, parked, replayed, discarded, total, \
     inflow_per_minute, oldest_pending_at, oldest_pending_age_seconds, expiry_risk, retention_ms, \
     archived";

fn sample_of(r: &Row<'_>) -> rusqlite::Result<Sample> {
    Ok(Sample {
        dlq: r.get(0)?,
        at: time(r.get(1)?),
        pending: to_u64(r.get(2)?),
        parked: to_u64(r.get(3)?),
        replayed: to_u64(r.get(4)?),
        discarded: to_u64(r.get(5)?),
        total: to_u64(r.get(6)?),
        inflow_per_minute: r.get(7)?,
        oldest_pending_at: r.get::<_, Option<i64>>(8)?.map(time),
        oldest_pending_age_seconds: r.get(9)?,
        expiry_risk: r.get::<_, Option<i64>>(10)?.map(to_u64),
        retention_ms: r.get::<_, Option<i64>>(11)?.map(to_u64),
        archived: to_u64(r.get(12)?),
    })
}

impl History {
    /// Opens (or creates) the history at `path` and applies the migrations
    /// it lacks. The file may hold an embedded DLQ store too.
    pub fn open(path: impl AsRef<Path>) -> Result<History> {
        let path = path.as_ref();
        let label = path.display().to_string();
        let conn = Connection::open(path).map_err(|source| Error::History {
            path: label.clone(),
            op: "opening",
            source,
        })?;
        let mut h = History { conn, label };
        h.setup(true)?;
        Ok(h)
    }

    /// A private history in memory (tests, `--once` runs without a file).
    pub fn open_in_memory() -> Result<History> {
        let conn = Connection::open_in_memory().map_err(|source| Error::History {
            path: ":memory:".into(),
            op: "opening",
            source,
        })?;
        let mut h = History {
            conn,
            label: ":memory:".into(),
        };
        h.setup(false)?;
        Ok(h)
    }

    /// Where the history is (a path, or `:memory:`).
    pub fn label(&self) -> &str {
        &self.label
    }

    fn err(&self, op: &'static str) -> impl FnOnce(rusqlite::Error) -> Error + '_ {
        move |source| Error::History {
            path: self.label.clone(),
            op,
            source,
        }
    }

    fn setup(&mut self, file: bool) -> Result<()> {
        let label = self.label.clone();
        let e = |op: &'static str| {
            let label = label.clone();
            move |source| Error::History {
                path: label,
                op,
                source,
            }
        };
        // Another writer (the DLQ store, a second monitor) may hold the
        // lock for a moment: wait rather than fail.
        self.conn
            .busy_timeout(Duration::from_secs(10))
            .map_err(e("setting the busy timeout"))?;
        if file {
            // Persistent in the file; a no-op when the store set it already.
            self.conn
                .pragma_update(None, "journal_mode", "WAL")
                .map_err(e("enabling WAL"))?;
            self.conn
                .pragma_update(None, "synchronous", "NORMAL")
                .map_err(e("setting synchronous"))?;
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("starting the migration"))?;
        tx.execute_batch(
            "CREATE TABLE IF NOT EXISTS monitor_migrations (
                 version    INTEGER PRIMARY KEY,
                 name       TEXT    NOT NULL,
                 applied_at INTEGER NOT NULL
             )",
        )
        .map_err(e("creating monitor_migrations"))?;
        let current: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(version), 0) FROM monitor_migrations",
                [],
                |r| r.get(0),
            )
            .map_err(e("reading the schema version"))?;
        if current > MIGRATIONS.last().map_or(0, |m| m.version) {
            return Err(Error::NewerHistory {
                path: label.clone(),
                version: current,
            });
        }
        for m in MIGRATIONS.iter().filter(|m| m.version > current) {
            tx.execute_batch(m.sql).map_err(e("applying a migration"))?;
            tx.execute(
                "INSERT INTO monitor_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
                params![m.version, m.name, Utc::now().timestamp_millis()],
            )
            .map_err(e("recording a migration"))?;
        }
        tx.commit().map_err(e("committing the migration"))
    }

    /// The samples of one DLQ taken at or after `since`, oldest first.
    pub fn samples(&self, dlq: &str, since: DateTime<Utc>) -> Result<Vec<Sample>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {SAMPLE_COLUMNS} FROM monitor_samples WHERE dlq = ?1 AND at >= ?2 \
                 ORDER BY at"
            ))
            .map_err(self.err("reading samples"))?;
        let rows = stmt
            .query_map(params![dlq, ms(since)], sample_of)
            .map_err(self.err("reading samples"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.err("reading samples"))
    }

    /// The latest sample of one DLQ.
    pub fn latest(&self, dlq: &str) -> Result<Option<Sample>> {
        self.conn
            .prepare_cached(&format!(
                "SELECT {SAMPLE_COLUMNS} FROM monitor_samples WHERE dlq = ?1 \
                 ORDER BY at DESC LIMIT 1"
            ))
            .and_then(|mut s| s.query_row([dlq], sample_of).optional())
            .map_err(self.err("reading the latest sample"))
    }

    /// Every DLQ with samples.
    pub fn dlqs(&self) -> Result<Vec<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT DISTINCT dlq FROM monitor_samples ORDER BY dlq")
            .map_err(self.err("listing DLQs"))?;
        let rows = stmt
            .query_map([], |r| r.get(0))
            .map_err(self.err("listing DLQs"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.err("listing DLQs"))
    }

    /// Deletes samples taken before `before`; returns how many.
    pub fn prune(&mut self, before: DateTime<Utc>) -> Result<usize> {
        self.conn
            .execute("DELETE FROM monitor_samples WHERE at < ?1", [ms(before)])
            .map_err(self.err("pruning samples"))
    }

    /// The persisted state of every alert.
    pub fn alerts(&self) -> Result<Vec<(AlertKey, AlertState)>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT rule, dlq, firing, since, last_notified, value FROM monitor_alerts \
                 ORDER BY rule, dlq",
            )
            .map_err(self.err("reading alert state"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    AlertKey {
                        rule: r.get(0)?,
                        dlq: r.get(1)?,
                    },
                    AlertState {
                        firing: r.get::<_, i64>(2)? == 1,
                        since: r.get::<_, Option<i64>>(3)?.map(time),
                        last_notified: r.get::<_, Option<i64>>(4)?.map(time),
                        value: r.get(5)?,
                    },
                ))
            })
            .map_err(self.err("reading alert state"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.err("reading alert state"))
    }

    /// Notifications waiting for delivery, all sinks.
    pub fn outbox_len(&self) -> Result<u64> {
        self.conn
            .query_row("SELECT COUNT(*) FROM monitor_outbox", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(to_u64)
            .map_err(self.err("counting the outbox"))
    }

    /// Records one tick in one transaction: its samples, the alert states
    /// that changed (or were removed), and the notifications to send.
    pub(crate) fn commit_tick(
        &mut self,
        samples: &[Sample],
        alerts: &[(AlertKey, AlertState)],
        removed: &[AlertKey],
        outbox: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<()> {
        let label = self.label.clone();
        let e = |op: &'static str| {
            let label = label.clone();
            move |source| Error::History {
                path: label,
                op,
                source,
            }
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e("starting a tick"))?;
        {
            let mut ins = tx
                .prepare_cached(&format!(
                    "INSERT OR REPLACE INTO monitor_samples ({SAMPLE_COLUMNS}) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"
                ))
                .map_err(e("writing samples"))?;
            for s in samples {
                ins.execute(params![
                    s.dlq,
                    ms(s.at),
                    to_i64(s.pending),
                    to_i64(s.parked),
                    to_i64(s.replayed),
                    to_i64(s.discarded),
                    to_i64(s.total),
                    s.inflow_per_minute,
                    s.oldest_pending_at.map(ms),
                    s.oldest_pending_age_seconds,
                    s.expiry_risk.map(to_i64),
                    s.retention_ms.map(to_i64),
                    to_i64(s.archived),
                ])
                .map_err(e("writing samples"))?;
            }
            let mut up = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO monitor_alerts \
                     (rule, dlq, firing, since, last_notified, value) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                )
                .map_err(e("writing alert state"))?;
            for (k, s) in alerts {
                up.execute(params![
                    k.rule,
                    k.dlq,
                    i64::from(s.firing),
                    s.since.map(ms),
                    s.last_notified.map(ms),
                    s.value,
                ])
                .map_err(e("writing alert state"))?;
            }
            let mut del = tx
                .prepare_cached("DELETE FROM monitor_alerts WHERE rule = ?1 AND dlq = ?2")
                .map_err(e("removing alert state"))?;
            for k in removed {
                del.execute(params![k.rule, k.dlq])
                    .map_err(e("removing alert state"))?;
            }
            let mut out = tx
                .prepare_cached(
                    "INSERT INTO monitor_outbox (sink, body, created_at) VALUES (?1, ?2, ?3)",
                )
                .map_err(e("queueing notifications"))?;
            for (sink, body) in outbox {
                out.execute(params![sink, body, ms(now)])
                    .map_err(e("queueing notifications"))?;
            }
        }
        tx.commit().map_err(e("committing a tick"))
    }

    /// The queued notifications, oldest first.
    pub(crate) fn queued(&self) -> Result<Vec<Queued>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT seq, sink, body, attempts FROM monitor_outbox ORDER BY seq")
            .map_err(self.err("reading the outbox"))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Queued {
                    seq: r.get(0)?,
                    sink: r.get(1)?,
                    body: r.get(2)?,
                    attempts: u32::try_from(r.get::<_, i64>(3)?).unwrap_or(u32::MAX),
                })
            })
            .map_err(self.err("reading the outbox"))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(self.err("reading the outbox"))
    }

    /// A queued notification was delivered (or dropped on purpose).
    pub(crate) fn dequeue(&mut self, seq: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM monitor_outbox WHERE seq = ?1", [seq])
            .map(drop)
            .map_err(self.err("removing a delivered notification"))
    }

    /// A delivery failed; `error` must already be free of secrets.
    pub(crate) fn delivery_failed(&mut self, seq: i64, error: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE monitor_outbox SET attempts = attempts + 1, last_error = ?2 WHERE seq = ?1",
                params![seq, error],
            )
            .map(drop)
            .map_err(self.err("recording a failed delivery"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dlq: &str, at_s: i64, pending: u64) -> Sample {
        Sample {
            dlq: dlq.into(),
            at: time(at_s * 1000),
            pending,
            parked: 1,
            replayed: 2,
            discarded: 3,
            archived: 2,
            total: pending + 6,
            inflow_per_minute: Some(1.5),
            oldest_pending_at: Some(time(0)),
            oldest_pending_age_seconds: Some(at_s),
            expiry_risk: None,
            retention_ms: Some(7),
        }
    }

    #[test]
    fn samples_round_trip_and_are_read_since_a_time() {
        let mut h = History::open_in_memory().unwrap();
        let all: Vec<Sample> = (1..=5).map(|i| sample("a", i * 60, i as u64)).collect();
        h.commit_tick(&all, &[], &[], &[], time(0)).unwrap();
        h.commit_tick(&[sample("b", 60, 9)], &[], &[], &[], time(0))
            .unwrap();
        assert_eq!(h.samples("a", time(0)).unwrap(), all);
        let since = h.samples("a", time(180_000)).unwrap();
        assert_eq!(
            since.iter().map(|s| s.pending).collect::<Vec<_>>(),
            [3, 4, 5]
        );
        assert_eq!(h.latest("a").unwrap().unwrap().pending, 5);
        assert_eq!(h.latest("zzz").unwrap(), None);
        assert_eq!(h.dlqs().unwrap(), ["a", "b"]);
        assert_eq!(h.prune(time(180_000)).unwrap(), 3, "a@60, a@120, b@60");
        assert_eq!(h.samples("a", time(0)).unwrap().len(), 3);
    }

    #[test]
    fn a_history_of_schema_1_opens_and_its_samples_count_nothing_archived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("history.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(MIGRATIONS[0].sql).unwrap();
            conn.execute_batch(
                "CREATE TABLE monitor_migrations (version INTEGER PRIMARY KEY, \
                 name TEXT NOT NULL, applied_at INTEGER NOT NULL);
                 INSERT INTO monitor_migrations VALUES (1, '0001_history', 0);
                 INSERT INTO monitor_samples (dlq, at, pending, parked, replayed, discarded, \
                 total) VALUES ('a', 60000, 4, 0, 1, 0, 5);",
            )
            .unwrap();
        }
        let mut h = History::open(&path).unwrap();
        let old = h.samples("a", time(0)).unwrap();
        assert_eq!(
            old.iter()
                .map(|s| (s.pending, s.archived))
                .collect::<Vec<_>>(),
            [(4, 0)]
        );
        let new = sample("a", 120, 3);
        h.commit_tick(std::slice::from_ref(&new), &[], &[], &[], time(0))
            .unwrap();
        assert_eq!(h.latest("a").unwrap(), Some(new), "archived is kept");
    }

    #[test]
    fn a_history_file_shares_a_store_file_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dlq.db");
        // The store first: it owns user_version.
        let mut store =
            dlq_sqlite::SqliteStore::open(&path, dlq_sqlite::SqliteOptions::default()).unwrap();
        {
            let mut h = History::open(&path).unwrap();
            h.commit_tick(&[sample("a", 60, 1)], &[], &[], &[], time(0))
                .unwrap();
        }
        let h = History::open(&path).unwrap();
        assert_eq!(h.samples("a", time(0)).unwrap().len(), 1);
        use dlq_core::DlqStore as _;
        assert!(store.stats().unwrap().is_empty(), "the store still works");
        let letter = dlq_core::DeadLetter::new(
            "x",
            b"{}".to_vec(),
            &dlq_core::Failure::permanent("s", "c", "m"),
        );
        store
            .append(&[dlq_core::store::Entry {
                dlq: "d".into(),
                letter,
                status: dlq_core::Status::Pending,
            }])
            .unwrap();
        drop(store);
        let store =
            dlq_sqlite::SqliteStore::open(&path, dlq_sqlite::SqliteOptions::default()).unwrap();
        assert_eq!(store.stats().unwrap()[0].pending, 1);
    }

    #[test]
    fn the_outbox_keeps_order_and_counts_attempts() {
        let mut h = History::open_in_memory().unwrap();
        let q = vec![
            ("ops".to_owned(), "{\"n\":1}".to_owned()),
            ("chat".to_owned(), "{\"n\":2}".to_owned()),
            ("ops".to_owned(), "{\"n\":3}".to_owned()),
        ];
        h.commit_tick(&[], &[], &[], &q, time(0)).unwrap();
        let got = h.queued().unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].body, "{\"n\":1}");
        h.delivery_failed(got[0].seq, "connection refused").unwrap();
        h.dequeue(got[1].seq).unwrap();
        let got = h.queued().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].attempts, 1);
        assert_eq!(h.outbox_len().unwrap(), 2);
    }
}
