//! Helpers shared by the integration tests.
#![allow(dead_code)]

use dlq_core::store::{Entry, Status};
use dlq_core::{DeadLetter, Failure};
use std::path::Path;

/// A pending entry with a permanent validation failure.
pub fn entry(dlq: &str, id: &str, payload: &[u8], partition: Option<i32>) -> Entry {
    let f = Failure::permanent("validate", "validation.missing_field", "missing link");
    let mut letter = DeadLetter::new(id, payload.to_vec(), &f);
    letter.source.system = "kafka".into();
    letter.source.topic = Some("rss.events".into());
    letter.source.partition = partition;
    Entry {
        dlq: dlq.into(),
        letter,
        status: Status::Pending,
    }
}

/// A raw connection to a store's database, for checks behind its back.
pub fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).expect("raw open")
}

/// Asserts that the counters table equals a `COUNT(*)` of the records, per
/// DLQ, status and partition.
pub fn assert_counters_agree(conn: &rusqlite::Connection) {
    let mismatches: Vec<(String, String, i64, i64, i64)> = conn
        .prepare(
            "WITH actual AS (
                 SELECT dlq, status, COALESCE(source_partition, -1) AS p, COUNT(*) AS n
                 FROM records GROUP BY 1, 2, 3),
             kept AS (SELECT dlq, status, source_partition AS p, n FROM counters WHERE n > 0)
             SELECT a.dlq, a.status, a.p, a.n, COALESCE(k.n, 0) FROM actual a
               LEFT JOIN counters k ON k.dlq = a.dlq AND k.status = a.status AND k.source_partition = a.p
               WHERE a.n != COALESCE(k.n, 0)
             UNION ALL
             SELECT k.dlq, k.status, k.p, 0, k.n FROM kept k
               WHERE NOT EXISTS (SELECT 1 FROM actual a
                   WHERE a.dlq = k.dlq AND a.status = k.status AND a.p = k.p)",
        )
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert!(
        mismatches.is_empty(),
        "counters disagree with COUNT(*) (dlq, status, partition, actual, counter): {mismatches:?}"
    );
}

/// `PRAGMA integrity_check` of a database.
pub fn integrity(conn: &rusqlite::Connection) -> String {
    conn.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}
