//! Behaviour of `SqliteStore` against the `DlqStore` contract: the same
//! cases as `MemoryStore`'s tests, plus persistence, concurrency and errors.

mod common;

use common::{assert_counters_agree, entry, integrity, raw};
use dlq_core::envelope::{ClaimError, EncodeOptions, sha256_hex};
use dlq_core::filter::Filter;
use dlq_core::store::{
    Batch, Cursor, DlqStore, PartitionStats, Result, Selection, Settle, Status, StoreError,
};
use dlq_sqlite::{SqliteOptions, SqliteStore};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn open(path: &Path) -> SqliteStore {
    SqliteStore::open(path, SqliteOptions::default()).expect("open")
}

fn db() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dlq.db");
    (dir, path)
}

fn all(store: &SqliteStore, selection: &Selection) -> Vec<dlq_core::store::StoredRecord> {
    store
        .scan_all(selection, 7)
        .collect::<Result<_>>()
        .expect("scan")
}

#[test]
fn append_is_idempotent_by_dlq_and_id() {
    let (_dir, path) = db();
    let mut s = open(&path);
    let r = s
        .append(&[
            entry("dlq.a", "1", b"{}", Some(0)),
            entry("dlq.a", "2", b"{}", Some(0)),
        ])
        .expect("append");
    assert_eq!((r.appended, r.duplicates), (2, 0));
    let r = s
        .append(&[
            entry("dlq.a", "1", b"{\"changed\":1}", Some(0)),
            entry("dlq.b", "1", b"{}", Some(0)),
            entry("dlq.b", "1", b"{\"same batch\":1}", Some(0)),
        ])
        .expect("append");
    assert_eq!((r.appended, r.duplicates), (1, 2));
    let first = s.get("dlq.a", "1").expect("get").expect("present");
    assert_eq!(first.letter.payload, b"{}", "first write wins");
    let first = s.get("dlq.b", "1").expect("get").expect("present");
    assert_eq!(first.letter.payload, b"{}", "first write in a batch wins");
    let stats = s.stats().expect("stats");
    assert_eq!(
        stats
            .iter()
            .map(|s| (s.dlq.as_str(), s.total))
            .collect::<Vec<_>>(),
        vec![("dlq.a", 2), ("dlq.b", 1)]
    );
    assert_eq!(s.dlqs().expect("dlqs"), vec!["dlq.a", "dlq.b"]);
    assert_counters_agree(&raw(&path));
}

#[test]
fn settle_moves_records_out_of_pending_once() {
    let (_dir, path) = db();
    let mut s = open(&path);
    let mut parked = entry("dlq.a", "3", b"z", Some(0));
    parked.status = Status::Parked;
    s.append(&[
        entry("dlq.a", "1", b"x", Some(0)),
        entry("dlq.a", "2", b"y", Some(0)),
        parked,
    ])
    .expect("append");
    let r = s
        .settle("dlq.a", &["1".into()], Status::Replayed)
        .expect("settle");
    assert_eq!(r.settled, 1);
    let r = s
        .settle("dlq.a", &["1".into()], Status::Discarded)
        .expect("settle");
    assert_eq!(r.settled, 0, "a replayed record stays replayed");
    let r = s
        .settle("dlq.a", &["3".into()], Status::Pending)
        .expect("settle");
    assert_eq!(r.settled, 0, "a parked record does not go back to pending");
    let r = s
        .settle("dlq.a", &["3".into(), "missing".into()], Status::Discarded)
        .expect("settle");
    assert_eq!(r.settled, 1, "a parked record can be discarded on purpose");

    let st = &s.stats().expect("stats")[0];
    assert_eq!(
        (st.pending, st.replayed, st.discarded, st.parked, st.total),
        (1, 1, 1, 0, 3)
    );
    let pending = all(&s, &Selection::pending(Some("dlq.a")));
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].letter.payload, b"y");
    assert!(pending[0].settled_at.is_none());
    let replayed = s.get("dlq.a", "1").expect("get").expect("present");
    assert_eq!(replayed.status, Status::Replayed);
    assert!(replayed.settled_at.is_some_and(|t| t >= replayed.stored_at));
    assert_counters_agree(&raw(&path));
}

#[test]
fn stats_count_per_partition_and_oldest() {
    let (_dir, path) = db();
    let mut s = open(&path);
    let mut a = entry("dlq.a", "1", b"x", Some(1));
    a.letter.failed_at = chrono::DateTime::from_timestamp(1_000, 0).expect("ts");
    let mut oldest_but_settled = entry("dlq.a", "0", b"w", Some(1));
    oldest_but_settled.letter.failed_at = chrono::DateTime::from_timestamp(10, 0).expect("ts");
    s.append(&[
        oldest_but_settled,
        a,
        entry("dlq.a", "2", b"y", Some(0)),
        entry("dlq.a", "3", b"z", Some(0)),
        entry("dlq.a", "4", b"z", None),
        entry("dlq.b", "1", b"z", Some(7)),
    ])
    .expect("append");
    s.settle("dlq.a", &["0".into()], Status::Discarded)
        .expect("settle");
    let stats = s.stats().expect("stats");
    let st = &stats[0];
    assert_eq!(st.dlq, "dlq.a");
    assert_eq!((st.pending, st.total), (4, 5));
    assert_eq!(
        st.oldest_pending_at,
        chrono::DateTime::from_timestamp(1_000, 0),
        "the oldest pending, not the oldest record"
    );
    let parts = |v: &[(i32, u64)]| {
        v.iter()
            .map(|&(partition, pending)| PartitionStats { partition, pending })
            .collect::<Vec<_>>()
    };
    assert_eq!(st.partitions, parts(&[(-1, 1), (0, 2), (1, 1)]));
    assert_eq!(stats[1].partitions, parts(&[(7, 1)]));
}

#[test]
fn five_mb_payload_roundtrips_through_a_claim_check() {
    let (_dir, path) = db();
    let mut s = open(&path);
    let big: Vec<u8> = (0..5 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    s.append(&[
        entry("dlq.a", "1", &big, Some(0)),
        entry("dlq.a", "2", &big, Some(0)),
    ])
    .expect("append");
    for id in ["1", "2"] {
        let r = s.get("dlq.a", id).expect("get").expect("present");
        assert!(r.letter.payload == big, "payload of {id} is byte-exact");
        assert!(r.letter.claim_checks.is_empty(), "claims are resolved");
    }
    let conn = raw(&path);
    let max: i64 = conn
        .query_row("SELECT MAX(length(envelope)) FROM records", [], |r| {
            r.get(0)
        })
        .expect("max");
    assert!(max as usize <= EncodeOptions::default().max_bytes, "{max}");
    let blobs: Vec<(String, i64)> = conn
        .prepare("SELECT sha256, size FROM blobs")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(
        blobs,
        vec![(sha256_hex(&big), big.len() as i64)],
        "one content-addressed blob for equal payloads"
    );
    // A scan resolves the claim too.
    let scanned = all(&s, &Selection::pending(Some("dlq.a")));
    assert!(scanned.iter().all(|r| r.letter.payload == big));
}

#[test]
fn a_corrupt_blob_is_an_error_not_a_different_record() {
    let (_dir, path) = db();
    let opts = SqliteOptions {
        encode: EncodeOptions::with_max_bytes(4096).expect("opts"),
        ..SqliteOptions::default()
    };
    let mut s = SqliteStore::open(&path, opts).expect("open");
    s.append(&[entry("dlq.a", "1", &[7u8; 20_000], Some(0))])
        .expect("append");
    raw(&path)
        .execute("UPDATE blobs SET bytes = x'00'", [])
        .expect("tamper");
    let err = s.get("dlq.a", "1").expect_err("corrupt");
    assert!(
        matches!(err, StoreError::Claim(ClaimError::Corrupt { .. })),
        "{err}"
    );
    raw(&path).execute("DELETE FROM blobs", []).expect("delete");
    let err = s.get("dlq.a", "1").expect_err("missing");
    assert!(
        matches!(err, StoreError::Claim(ClaimError::Missing { .. })),
        "{err}"
    );
}

#[test]
fn commit_with_checkpoint_and_settle_together() {
    let (_dir, path) = db();
    let mut s = open(&path);
    s.append(&[entry("dlq.a", "1", b"x", Some(0))])
        .expect("append");
    let settle = [Settle {
        dlq: "dlq.a".into(),
        id: "1".into(),
        outcome: Status::Replayed,
    }];
    let append = [entry("dlq.a", "1~r1", b"x2", Some(0))];
    let r = s
        .commit(Batch {
            append: &append,
            settle: &settle,
            checkpoint: Some(("replay", "7")),
            ..Batch::default()
        })
        .expect("commit");
    assert_eq!((r.appended, r.settled), (1, 1));
    assert_eq!(s.checkpoint("replay").expect("cp").as_deref(), Some("7"));
    assert_eq!(s.checkpoint("other").expect("cp"), None);
    s.commit(Batch {
        checkpoint: Some(("replay", "8")),
        ..Batch::default()
    })
    .expect("commit");
    assert_eq!(s.checkpoint("replay").expect("cp").as_deref(), Some("8"));
}

#[test]
fn a_record_appended_and_settled_in_one_commit_is_settled() {
    let (_dir, path) = db();
    let mut s = open(&path);
    let append = [entry("dlq.a", "1", b"x", Some(2))];
    let settle = [Settle {
        dlq: "dlq.a".into(),
        id: "1".into(),
        outcome: Status::Parked,
    }];
    let r = s
        .commit(Batch {
            append: &append,
            settle: &settle,
            checkpoint: None,
            ..Batch::default()
        })
        .expect("commit");
    assert_eq!((r.appended, r.settled), (1, 1));
    let st = &s.stats().expect("stats")[0];
    assert_eq!((st.pending, st.parked), (0, 1));
    assert!(st.partitions.is_empty());
    assert_counters_agree(&raw(&path));
}

#[test]
fn a_failed_commit_writes_nothing() {
    let (_dir, path) = db();
    let opts = SqliteOptions {
        encode: EncodeOptions::with_max_bytes(4096).expect("opts"),
        ..SqliteOptions::default()
    };
    let mut s = SqliteStore::open(&path, opts).expect("open");
    // An id longer than the envelope limit cannot be encoded.
    let bad = entry("dlq.a", &"i".repeat(10_000), b"x", Some(0));
    let err = s
        .commit(Batch {
            append: &[entry("dlq.a", "ok", b"x", Some(0)), bad],
            settle: &[],
            checkpoint: Some(("cp", "1")),
            ..Batch::default()
        })
        .expect_err("too long");
    assert!(matches!(err, StoreError::Encode(_)), "{err}");
    assert!(s.stats().expect("stats").is_empty());
    assert_eq!(s.checkpoint("cp").expect("cp"), None);
}

#[test]
fn scan_pages_with_a_resumable_cursor_and_a_filter() {
    let (_dir, path) = db();
    let mut s = open(&path);
    let mut batch = Vec::new();
    for i in 0..40 {
        let mut e = entry(
            if i % 4 == 3 { "dlq.b" } else { "dlq.a" },
            &format!("{i:02}"),
            format!("{{\"n\":{i}}}").as_bytes(),
            Some(i % 3),
        );
        if i % 5 == 0 {
            e.letter.error_class = "validation.price_out_of_range".into();
        }
        batch.push(e);
    }
    s.append(&batch).expect("append");
    let ids: Vec<String> = (0..40)
        .filter(|i| i % 2 == 0)
        .map(|i| format!("{i:02}"))
        .collect();
    s.settle("dlq.a", &ids, Status::Discarded).expect("settle");

    let selection = Selection {
        dlq: Some("dlq.a".into()),
        statuses: vec![Status::Pending, Status::Discarded],
        filter: Some(Filter::parse("payload.n >= 10").expect("filter")),
    };
    // Page by hand: every page but the last is full, the cursor resumes.
    let mut got = Vec::new();
    let mut cursor: Option<Cursor> = None;
    let mut pages = 0;
    loop {
        let page = s.scan(&selection, cursor.as_ref(), 4).expect("scan");
        pages += 1;
        assert!(page.records.len() <= 4);
        if page.next.is_some() {
            assert_eq!(page.records.len(), 4, "only the last page is short");
        }
        got.extend(page.records.into_iter().map(|r| r.letter.id));
        match page.next {
            Some(c) => cursor = Some(c),
            None => break,
        }
    }
    let want: Vec<String> = (10..40)
        .filter(|i| i % 4 != 3)
        .map(|i| format!("{i:02}"))
        .collect();
    assert_eq!(got, want);
    assert_eq!(pages, want.len().div_ceil(4));

    let filtered = all(
        &s,
        &Selection {
            dlq: None,
            statuses: Status::ALL.to_vec(),
            filter: Some(
                Filter::parse("error_class == \"validation.price_out_of_range\"").expect("filter"),
            ),
        },
    );
    assert_eq!(filtered.len(), 8);
    // All pending, both DLQs, in store order.
    let pending: Vec<String> = all(&s, &Selection::pending(None))
        .into_iter()
        .map(|r| r.letter.id)
        .collect();
    let want: Vec<String> = (0..40)
        .filter(|i| i % 2 == 1 || i % 4 == 3)
        .map(|i| format!("{i:02}"))
        .collect();
    assert_eq!(pending, want);

    let err = s
        .scan(&selection, Some(&Cursor("not-a-cursor".into())), 4)
        .expect_err("bad cursor");
    assert!(err.to_string().contains("not a cursor"), "{err}");
}

#[test]
fn everything_survives_a_reopen() {
    let (_dir, path) = db();
    {
        let mut s = open(&path);
        let mut e = entry(
            "dlq.a",
            "kafka:rss.events:2:17",
            &[0xff, 0x00, 0xfe],
            Some(2),
        );
        e.letter.key = Some(b"key-1".to_vec());
        e.letter.headers = vec![dlq_core::Header {
            name: "trace-id".into(),
            value: Some(b"abc".to_vec()),
        }];
        s.commit(Batch {
            append: &[e, entry("dlq.a", "2", &vec![b'x'; 2_000_000], Some(2))],
            settle: &[],
            checkpoint: Some(("processor", "rss.events:2:18")),
            ..Batch::default()
        })
        .expect("commit");
        s.settle("dlq.a", &["2".into()], Status::Parked)
            .expect("settle");
    }
    let s = open(&path);
    let r = s
        .get("dlq.a", "kafka:rss.events:2:17")
        .expect("get")
        .expect("present");
    assert_eq!(r.letter.payload, [0xff, 0x00, 0xfe]);
    assert_eq!(r.letter.key.as_deref(), Some(&b"key-1"[..]));
    assert_eq!(r.letter.headers[0].value.as_deref(), Some(&b"abc"[..]));
    assert_eq!(r.letter.source.partition, Some(2));
    let parked = s.get("dlq.a", "2").expect("get").expect("present");
    assert_eq!(parked.status, Status::Parked);
    assert_eq!(parked.letter.payload.len(), 2_000_000);
    assert_eq!(
        s.checkpoint("processor").expect("cp").as_deref(),
        Some("rss.events:2:18")
    );
    let st = &s.stats().expect("stats")[0];
    assert_eq!((st.pending, st.parked, st.total), (1, 1, 2));
    assert_eq!(integrity(&raw(&path)), "ok");
}

/// WAL: a reader on its own connection sees whole commits only, and is
/// never blocked by the writer.
#[test]
fn a_concurrent_reader_sees_whole_commits() {
    const BATCHES: usize = 60;
    const PER: usize = 25;
    let (_dir, path) = db();
    let reader = open(&path);
    let writer_path = path.clone();
    let writer = std::thread::spawn(move || {
        let mut s = open(&writer_path);
        for b in 0..BATCHES {
            let batch: Vec<_> = (0..PER)
                .map(|i| entry("dlq.a", &format!("b{b}-{i}"), b"{\"ok\":true}", Some(0)))
                .collect();
            s.commit(Batch {
                append: &batch,
                settle: &[],
                checkpoint: Some(("w", &b.to_string())),
                ..Batch::default()
            })
            .expect("commit");
            // Leave the reader time to see intermediate states.
            std::thread::sleep(Duration::from_millis(2));
        }
    });
    let mut observations = 0;
    let mut distinct = std::collections::BTreeSet::new();
    loop {
        let finished = writer.is_finished();
        let total = s_total(&reader);
        let scanned = all(&reader, &Selection::pending(Some("dlq.a"))).len() as u64;
        assert_eq!(
            total % PER as u64,
            0,
            "a partial commit is visible: {total}"
        );
        assert_eq!(
            scanned % PER as u64,
            0,
            "a partial commit is scanned: {scanned}"
        );
        assert!(scanned >= total, "scans see at least what stats saw before");
        distinct.insert(total);
        observations += 1;
        if finished {
            break;
        }
    }
    writer.join().expect("writer");
    assert_eq!(s_total(&reader), (BATCHES * PER) as u64);
    assert!(observations > 1);
    assert!(
        distinct.len() > 1,
        "the reader saw the writer's progress: {distinct:?}"
    );
}

fn s_total(s: &SqliteStore) -> u64 {
    s.stats().expect("stats").first().map_or(0, |st| st.total)
}

#[test]
fn a_locked_database_is_a_retryable_error_with_context() {
    let (_dir, path) = db();
    let mut s = SqliteStore::open(
        &path,
        SqliteOptions {
            busy_timeout: Duration::from_millis(50),
            ..SqliteOptions::default()
        },
    )
    .expect("open");
    let other = raw(&path);
    other.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let err = s
        .append(&[entry("dlq.a", "1", b"x", Some(0))])
        .expect_err("locked");
    assert!(err.is_retriable(), "{err}");
    let text = err.to_string();
    assert!(text.contains("commit on "), "{text}");
    assert!(text.contains(&path.display().to_string()), "{text}");
    // Readers are not blocked by the writer's lock.
    assert!(s.stats().expect("stats").is_empty());
    other.execute_batch("ROLLBACK").expect("unlock");
    let r = s
        .append(&[entry("dlq.a", "1", b"x", Some(0))])
        .expect("append after the lock is gone");
    assert_eq!(r.appended, 1);
}

#[test]
fn open_url_forms_and_options() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("url.db");
    let url = format!("sqlite://{}?max_bytes=8192", path.display());
    let mut s = SqliteStore::open_url(&url).expect("open_url");
    assert_eq!(s.path(), path);
    assert_eq!(s.options().encode.max_bytes, 8192);
    s.append(&[entry("dlq.a", "1", &[1u8; 50_000], None)])
        .expect("append");
    let blobs: i64 = raw(&path)
        .query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
        .expect("count");
    assert_eq!(blobs, 1, "the URL's limit put the payload in a claim check");

    let mut m = SqliteStore::open_url("sqlite://:memory:").expect("memory");
    m.append(&[entry("dlq.a", "1", b"x", None)])
        .expect("append");
    assert_eq!(m.stats().expect("stats")[0].pending, 1);

    let err = SqliteStore::open_url("sqlite://x.db?max_bytes=10").expect_err("invalid");
    assert!(matches!(err, StoreError::InvalidUrl { .. }), "{err}");
    let err = SqliteStore::open_url(&format!(
        "sqlite://{}/no/such/dir/x.db",
        dir.path().display()
    ))
    .expect_err("no dir");
    assert!(err.to_string().contains("opening"), "{err}");
}

#[test]
fn times_keep_millisecond_precision() {
    let (_dir, path) = db();
    let mut s = open(&path);
    let mut e = entry("dlq.a", "1", b"x", None);
    let t = chrono::DateTime::from_timestamp(1_700_000_000, 123_456_789).expect("ts");
    e.letter.failed_at = t;
    e.letter.first_failed_at = t;
    s.append(&[e]).expect("append");
    let want = chrono::DateTime::from_timestamp(1_700_000_000, 123_000_000);
    assert_eq!(s.stats().expect("stats")[0].oldest_pending_at, want);
    let r = s.get("dlq.a", "1").expect("get").expect("present");
    // The envelope keeps the time as written (a seed writer's microseconds
    // too); stats count in milliseconds of it.
    assert_eq!(
        r.letter.failed_at, t,
        "the record keeps its time as written"
    );
    assert_eq!(
        Some(chrono::SubsecRound::trunc_subsecs(r.letter.failed_at, 3)),
        want,
        "stats agree with the record, to the millisecond"
    );
}

/// A store written by a dlq of schema 1 (before `archived`): its records,
/// their order and counters survive the rebuild of migration 2, and its
/// records can then be archived.
#[test]
fn a_schema_1_store_opens_keeps_its_records_and_can_archive_them() {
    let (_dir, path) = db();
    {
        let conn = raw(&path);
        conn.execute_batch(include_str!("../migrations/0001_init.sql"))
            .expect("schema 1");
        conn.pragma_update(None, "user_version", 1)
            .expect("version");
        for (seq, id, status) in [
            (3, "a", "pending"),
            (5, "b", "parked"),
            (9, "c", "replayed"),
        ] {
            let e = entry(
                "dlq.old",
                id,
                format!("{{\"id\":\"{id}\"}}").as_bytes(),
                Some(0),
            );
            let env =
                dlq_core::envelope::encode(&e.letter, &EncodeOptions::default()).expect("encode");
            let l = &e.letter;
            conn.execute(
                "INSERT INTO records (seq, dlq, id, status, stored_at, settled_at, failed_at, \
                 first_failed_at, source_system, source_topic, source_partition, source_offset, \
                 stage, error_class, retryable, replays, envelope) \
                 VALUES (?1, 'dlq.old', ?2, ?3, 1700000000000, NULL, ?4, ?4, 'kafka', \
                 'rss.events', 0, NULL, ?5, ?6, 0, 0, ?7)",
                rusqlite::params![
                    seq,
                    id,
                    status,
                    l.failed_at.timestamp_millis(),
                    l.stage,
                    l.error_class,
                    env.bytes
                ],
            )
            .expect("insert");
            conn.execute(
                "INSERT INTO counters (dlq, status, source_partition, n) VALUES ('dlq.old', ?1, 0, 1)",
                [status],
            )
            .expect("counter");
        }
        // Schema 1 refuses the new status: the reason for migration 2.
        assert!(
            conn.execute("UPDATE records SET status = 'archived' WHERE id = 'a'", [])
                .is_err()
        );
    }
    let mut s = open(&path);
    let version: u32 = raw(&path)
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .expect("version");
    assert_eq!(version, 2);
    let a = s.get("dlq.old", "a").expect("get").expect("kept");
    assert_eq!(
        (a.status, &a.letter.payload[..]),
        (Status::Pending, &b"{\"id\":\"a\"}"[..])
    );
    let everything = Selection {
        dlq: Some("dlq.old".into()),
        statuses: Status::ALL.to_vec(),
        filter: None,
    };
    let order: Vec<String> = all(&s, &everything)
        .into_iter()
        .map(|r| r.letter.id)
        .collect();
    assert_eq!(order, ["a", "b", "c"], "store order kept");
    let r = s
        .settle("dlq.old", &["a".into(), "b".into()], Status::Archived)
        .expect("archive");
    assert_eq!(r.settled, 2);
    drop(s);
    let s = open(&path);
    let st = s.stats().expect("stats");
    let st = st.iter().find(|x| x.dlq == "dlq.old").expect("stats");
    assert_eq!(
        (st.pending, st.parked, st.replayed, st.archived, st.total),
        (0, 0, 1, 2, 3)
    );
    let conn = raw(&path);
    assert_counters_agree(&conn);
    assert_eq!(integrity(&conn), "ok");
    let seqs: Vec<i64> = conn
        .prepare("SELECT seq FROM records ORDER BY seq")
        .expect("prepare")
        .query_map([], |r| r.get(0))
        .expect("query")
        .collect::<rusqlite::Result<_>>()
        .expect("rows");
    assert_eq!(seqs, [3, 5, 9], "cursors (seq) unchanged");
}
