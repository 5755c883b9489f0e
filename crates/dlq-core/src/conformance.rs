//! The [`DlqStore`] contract as checks that any backend's tests run.
//!
//! Every backend (memory, SQLite, Kafka, and the ones to come) must behave
//! the same through the trait: the replay engine, the processors, `dlq
//! serve` and the CLI rely on nothing else. Rather than each backend
//! repeating its own copy of these tests, a backend provides a [`Harness`]
//! (how to open its store, how to name a DLQ no other test uses) and
//! expands [`store_conformance_tests!`](crate::store_conformance_tests) in
//! its tests: one `#[test]` per check, each named after the rule it guards.
//!
//! Compiled for dlq-core's own tests and, in other crates, with the
//! `conformance` feature (a dev-dependency feature: it panics on failure,
//! like any test code).
//!
//! ```ignore
//! struct Sqlite(tempfile::TempDir);
//! impl dlq_core::conformance::Harness for Sqlite { /* … */ }
//! dlq_core::store_conformance_tests!(|| Some(Sqlite(tempfile::tempdir().unwrap())));
//! ```

use crate::Failure;
use crate::envelope::{DeadLetter, Header};
use crate::filter::Filter;
use crate::store::{
    Batch, DlqStore, Entry, Output, Selection, Settle, SourcePosition, Status, StoreError,
    StoredRecord,
};
use chrono::{DateTime, Utc};
use std::collections::BTreeSet;

/// A backend under test.
pub trait Harness {
    /// The store type.
    type Store: DlqStore;

    /// A DLQ name for `name` that no other test sees (backends whose data
    /// outlives a test, like a shared broker, add a unique part; it must
    /// start with the store's DLQ prefix where it has one).
    fn dlq(&mut self, name: &str) -> String;

    /// Opens the store under test.
    fn open(&mut self) -> Self::Store;

    /// The same data seen afresh: closes `store` and opens the backend
    /// again. A store without durable state returns `store` itself.
    fn reopen(&mut self, store: Self::Store) -> Self::Store;

    /// A new, empty destination for [`Batch::outputs`] that no other test
    /// uses (a topic, a queue); `None` where the store takes no outputs.
    fn destination(&mut self) -> Option<String> {
        None
    }

    /// What a reader of committed data finds in `destination`, in order.
    fn read_destination(&mut self, _store: &Self::Store, _destination: &str) -> Vec<Output> {
        Vec::new()
    }

    /// Whether per-partition stats count the DLQ's own partitions (Kafka)
    /// rather than the records' source partitions (see
    /// [`PartitionStats`](crate::store::PartitionStats)).
    fn stats_by_dlq_partition(&self) -> bool {
        false
    }
}

/// A pending entry with a JSON payload, from source partition `partition`.
pub fn entry(dlq: &str, id: &str, payload: &[u8], partition: i32) -> Entry {
    let failure = Failure::permanent("validate", "conformance.bad", format!("bad record {id}"));
    let mut letter = DeadLetter::new(id, payload.to_vec(), &failure);
    letter.source.system = "conformance".into();
    letter.source.topic = Some("conformance.topic".into());
    letter.source.partition = Some(partition);
    Entry {
        dlq: dlq.to_owned(),
        letter,
        status: Status::Pending,
    }
}

fn ids(records: &[StoredRecord]) -> Vec<String> {
    records.iter().map(|r| r.letter.id.clone()).collect()
}

fn scan(store: &impl DlqStore, selection: &Selection) -> Vec<StoredRecord> {
    store
        .scan_all(selection, 3)
        .collect::<crate::store::Result<_>>()
        .expect("scan")
}

fn selection(dlq: &str, statuses: &[Status]) -> Selection {
    Selection {
        dlq: Some(dlq.to_owned()),
        statuses: statuses.to_vec(),
        filter: None,
    }
}

fn settle(dlq: &str, id: &str, outcome: Status) -> Settle {
    Settle {
        dlq: dlq.to_owned(),
        id: id.to_owned(),
        outcome,
    }
}

fn stats_of(store: &impl DlqStore, dlq: &str) -> crate::store::DlqStats {
    store
        .stats()
        .expect("stats")
        .into_iter()
        .find(|s| s.dlq == dlq)
        .unwrap_or_else(|| panic!("no stats for {dlq}"))
}

/// Appending the same `(dlq, id)` again adds nothing and keeps the first
/// record; the same id in another DLQ is another record.
pub fn appends_are_idempotent_by_dlq_and_id(h: &mut impl Harness) {
    let (a, b) = (h.dlq("idem-a"), h.dlq("idem-b"));
    let mut s = h.open();
    let r = s
        .append(&[entry(&a, "1", b"{}", 0), entry(&a, "2", b"{}", 0)])
        .expect("append");
    assert_eq!((r.appended, r.duplicates), (2, 0));
    let r = s
        .append(&[
            entry(&a, "1", b"{\"changed\":1}", 0),
            entry(&b, "1", b"[]", 0),
            entry(&b, "1", b"{\"same batch\":1}", 0),
        ])
        .expect("append again");
    assert_eq!(
        (r.appended, r.duplicates),
        (1, 2),
        "one new record, two duplicates"
    );
    let s = h.reopen(s);
    let first = s.get(&a, "1").expect("get").expect("present");
    assert_eq!(first.letter.payload, b"{}", "the first write wins");
    assert_eq!(ids(&scan(&s, &Selection::pending(Some(&a)))), ["1", "2"]);
    let b1 = s.get(&b, "1").expect("get").expect("present");
    assert_eq!(b1.letter.payload, b"[]", "the first write in a batch wins");
}

/// One commit appends, settles and records a checkpoint together, and all
/// of it is there when the store is opened again.
pub fn a_commit_applies_appends_settlements_and_checkpoint_together(h: &mut impl Harness) {
    let a = h.dlq("commit");
    let mut s = h.open();
    s.append(&[entry(&a, "1", b"{\"v\":1}", 0)])
        .expect("append");
    let append = [entry(&a, "1~r1", b"{\"v\":2}", 0)];
    let settles = [settle(&a, "1", Status::Replayed)];
    let cp = format!("conformance:{a}");
    let r = s
        .commit(Batch {
            append: &append,
            settle: &settles,
            checkpoint: Some((&cp, "42")),
            ..Batch::default()
        })
        .expect("commit");
    assert_eq!((r.appended, r.settled), (1, 1));
    let s = h.reopen(s);
    assert_eq!(
        s.checkpoint(&cp).expect("checkpoint").as_deref(),
        Some("42")
    );
    assert_eq!(ids(&scan(&s, &Selection::pending(Some(&a)))), ["1~r1"]);
    let old = s.get(&a, "1").expect("get").expect("present");
    assert_eq!(old.status, Status::Replayed);
    assert!(old.settled_at.is_some(), "a settled record says when");
}

/// A checkpoint keeps the value of the last commit that set it; an unknown
/// one is `None`.
pub fn checkpoints_keep_the_last_value(h: &mut impl Harness) {
    let a = h.dlq("checkpoint");
    let name = format!("conformance:{a}");
    let mut s = h.open();
    assert_eq!(s.checkpoint(&name).expect("checkpoint"), None);
    for value in ["1", "2", "{\"line\":3}"] {
        s.commit(Batch {
            checkpoint: Some((&name, value)),
            ..Batch::default()
        })
        .expect("commit");
    }
    let s = h.reopen(s);
    assert_eq!(
        s.checkpoint(&name).expect("checkpoint").as_deref(),
        Some("{\"line\":3}")
    );
}

/// Settling moves a record out of the pending set once; settling it again
/// or to another outcome changes nothing; a parked record can still be
/// replayed or discarded on purpose.
pub fn settling_moves_a_record_out_of_pending_once(h: &mut impl Harness) {
    let a = h.dlq("settle");
    let mut s = h.open();
    let mut parked = entry(&a, "p", b"{}", 0);
    parked.status = Status::Parked;
    s.append(&[entry(&a, "1", b"{}", 0), entry(&a, "2", b"{}", 0), parked])
        .expect("append");
    let r = s
        .settle(&a, &["1".into()], Status::Replayed)
        .expect("settle");
    assert_eq!(r.settled, 1);
    let r = s
        .settle(&a, &["1".into()], Status::Discarded)
        .expect("settle again");
    assert_eq!(r.settled, 0, "a replayed record stays replayed");
    let r = s
        .settle(&a, &["no-such-id".into()], Status::Replayed)
        .expect("unknown id");
    assert_eq!(r.settled, 0, "an unknown id settles nothing");
    let r = s
        .settle(&a, &["p".into()], Status::Pending)
        .expect("parked to pending");
    assert_eq!(r.settled, 0, "a parked record does not go back to pending");
    let r = s
        .settle(&a, &["p".into()], Status::Discarded)
        .expect("parked");
    assert_eq!(r.settled, 1, "a parked record can be discarded");
    let s = h.reopen(s);
    assert_eq!(
        s.get(&a, "1").expect("get").expect("present").status,
        Status::Replayed
    );
    assert_eq!(
        s.get(&a, "p").expect("get").expect("present").status,
        Status::Discarded
    );
    assert_eq!(ids(&scan(&s, &Selection::pending(Some(&a)))), ["2"]);
    let st = stats_of(&s, &a);
    assert_eq!(
        (st.pending, st.parked, st.replayed, st.discarded, st.total),
        (1, 0, 1, 1, 3)
    );
}

/// An archived record (pending or parked before) is settled: no longer
/// pending, still readable by `get` and by a scan that asks for
/// `archived`, counted apart in `stats`, and final like replayed and
/// discarded.
pub fn an_archived_record_stays_readable_and_is_no_longer_pending(h: &mut impl Harness) {
    let a = h.dlq("archived");
    let mut s = h.open();
    let mut parked = entry(&a, "p", b"{\"parked\":1}", 1);
    parked.status = Status::Parked;
    s.append(&[
        entry(&a, "1", b"{\"v\":1}", 0),
        entry(&a, "2", b"{\"v\":2}", 0),
        parked,
    ])
    .expect("append");
    let r = s
        .settle(&a, &["1".into(), "p".into()], Status::Archived)
        .expect("archive");
    assert_eq!(r.settled, 2, "a pending and a parked record archive");
    let r = s
        .settle(&a, &["1".into()], Status::Replayed)
        .expect("settle again");
    assert_eq!(r.settled, 0, "an archived record stays archived");
    let s = h.reopen(s);
    let one = s.get(&a, "1").expect("get").expect("present");
    assert_eq!(one.status, Status::Archived);
    assert_eq!(one.letter.payload, b"{\"v\":1}", "still readable");
    assert!(one.settled_at.is_some(), "an archived record says when");
    assert_eq!(
        s.get(&a, "p").expect("get").expect("present").status,
        Status::Archived
    );
    assert_eq!(ids(&scan(&s, &Selection::pending(Some(&a)))), ["2"]);
    let archived = scan(&s, &selection(&a, &[Status::Archived]));
    assert_eq!(ids(&archived), ["1", "p"]);
    assert!(archived.iter().all(|r| r.status == Status::Archived));
    assert!(
        scan(&s, &selection(&a, &[Status::Parked])).is_empty(),
        "no longer parked"
    );
    let st = stats_of(&s, &a);
    assert_eq!(
        (
            st.pending,
            st.parked,
            st.replayed,
            st.discarded,
            st.archived,
            st.total
        ),
        (1, 0, 0, 0, 2, 3)
    );
}

/// A record appended and settled in the same commit ends settled.
pub fn a_record_appended_and_settled_in_one_commit_is_settled(h: &mut impl Harness) {
    let a = h.dlq("append-settle");
    let mut s = h.open();
    let append = [entry(&a, "1", b"{}", 0)];
    let settles = [settle(&a, "1", Status::Discarded)];
    s.commit(Batch {
        append: &append,
        settle: &settles,
        checkpoint: None,
        ..Batch::default()
    })
    .expect("commit");
    let s = h.reopen(s);
    assert!(scan(&s, &Selection::pending(Some(&a))).is_empty());
    assert_eq!(
        s.get(&a, "1").expect("get").expect("present").status,
        Status::Discarded
    );
}

/// Pages never exceed their limit, a cursor resumes where its page ended,
/// and every selected record comes exactly once, in the same order on
/// every scan.
pub fn scan_pages_resume_from_their_cursor_and_see_each_record_once(h: &mut impl Harness) {
    let a = h.dlq("pages");
    let mut s = h.open();
    let entries: Vec<Entry> = (0..25)
        .map(|i| {
            entry(
                &a,
                &format!("r{i:02}"),
                format!("{{\"i\":{i}}}").as_bytes(),
                i % 3,
            )
        })
        .collect();
    s.append(&entries).expect("append");
    let s = h.reopen(s);
    let sel = Selection::pending(Some(&a));
    let mut seen = Vec::new();
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = s.scan(&sel, cursor.as_ref(), 7).expect("page");
        assert!(page.records.len() <= 7, "a page holds at most its limit");
        seen.extend(ids(&page.records));
        pages += 1;
        assert!(pages <= 25, "the scan ends");
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let unique: BTreeSet<&String> = seen.iter().collect();
    assert_eq!(seen.len(), 25, "every record: {seen:?}");
    assert_eq!(unique.len(), 25, "each once");
    assert_eq!(seen, ids(&scan(&s, &sel)), "the same order every time");
}

/// A scan selects by DLQ, by status and by filter.
pub fn scans_select_by_dlq_status_and_filter(h: &mut impl Harness) {
    let (a, b) = (h.dlq("select-a"), h.dlq("select-b"));
    let mut s = h.open();
    let mut other_class = entry(&a, "3", b"{\"price\":\"N/A\"}", 0);
    other_class.letter.error_class = "conformance.other".into();
    s.append(&[
        entry(&a, "1", b"{\"price\":1}", 0),
        entry(&a, "2", b"{\"price\":2}", 0),
        other_class,
        entry(&b, "1", b"{}", 0),
    ])
    .expect("append");
    s.settle(&a, &["2".into()], Status::Replayed)
        .expect("settle");
    let s = h.reopen(s);
    assert_eq!(
        ids(&scan(&s, &selection(&a, &[]))),
        ["1", "3"],
        "pending by default"
    );
    assert_eq!(ids(&scan(&s, &selection(&a, &[Status::Replayed]))), ["2"]);
    assert_eq!(
        ids(&scan(&s, &selection(&a, &Status::ALL))).len(),
        3,
        "every status of one DLQ"
    );
    let mut filtered = selection(&a, &Status::ALL);
    filtered.filter = Some(Filter::parse("error_class == \"conformance.other\"").expect("filter"));
    assert_eq!(ids(&scan(&s, &filtered)), ["3"]);
    let mut by_payload = selection(&a, &Status::ALL);
    by_payload.filter = Some(Filter::parse("payload.price == 2").expect("filter"));
    assert_eq!(ids(&scan(&s, &by_payload)), ["2"]);
}

/// `get` finds a record whatever its status; an unknown id is `None`.
pub fn get_finds_a_record_whatever_its_status(h: &mut impl Harness) {
    let a = h.dlq("get");
    let mut s = h.open();
    s.append(&[entry(&a, "1", b"{}", 0), entry(&a, "2", b"{}", 0)])
        .expect("append");
    s.settle(&a, &["2".into()], Status::Discarded)
        .expect("settle");
    let s = h.reopen(s);
    assert_eq!(
        s.get(&a, "1").expect("get").expect("present").status,
        Status::Pending
    );
    assert_eq!(
        s.get(&a, "2").expect("get").expect("present").status,
        Status::Discarded
    );
    assert!(s.get(&a, "3").expect("get").is_none());
}

/// `stats` counts what scans see: per status, in all, per source
/// partition, and the oldest pending failure.
pub fn stats_count_what_scans_see(h: &mut impl Harness) {
    let a = h.dlq("stats");
    let mut s = h.open();
    let oldest: DateTime<Utc> = DateTime::from_timestamp(1_700_000_000, 0).expect("time");
    let mut first = entry(&a, "1", b"{}", 0);
    first.letter.failed_at = oldest;
    first.letter.first_failed_at = oldest;
    let mut parked = entry(&a, "5", b"{}", 1);
    parked.status = Status::Parked;
    // Older than every pending record, but settled: not the oldest pending.
    let mut oldest_settled = entry(&a, "0", b"{}", 1);
    oldest_settled.letter.failed_at = oldest - chrono::Duration::days(30);
    oldest_settled.letter.first_failed_at = oldest_settled.letter.failed_at;
    let mut no_partition = entry(&a, "6", b"{}", 0);
    no_partition.letter.source.partition = None;
    s.append(&[
        oldest_settled,
        first,
        entry(&a, "2", b"{}", 0),
        entry(&a, "3", b"{}", 1),
        entry(&a, "4", b"{}", 1),
        parked,
        no_partition,
    ])
    .expect("append");
    s.settle(&a, &["4".into()], Status::Replayed)
        .expect("settle");
    s.settle(&a, &["0".into()], Status::Discarded)
        .expect("settle");
    let s = h.reopen(s);
    let st = stats_of(&s, &a);
    assert_eq!(
        (st.pending, st.parked, st.replayed, st.discarded, st.total),
        (4, 1, 1, 1, 7)
    );
    assert_eq!(
        st.pending as usize,
        scan(&s, &Selection::pending(Some(&a))).len()
    );
    assert_eq!(
        st.oldest_pending_at,
        Some(oldest),
        "the oldest pending failure"
    );
    let per_partition: Vec<(i32, u64)> = st
        .partitions
        .iter()
        .map(|p| (p.partition, p.pending))
        .collect();
    if h.stats_by_dlq_partition() {
        assert_eq!(
            per_partition.iter().map(|p| p.1).sum::<u64>(),
            st.pending,
            "{per_partition:?}"
        );
        assert!(
            per_partition
                .windows(2)
                .all(|w| w[0].0 < w[1].0 && w[0].1 > 0),
            "{per_partition:?}"
        );
    } else {
        assert_eq!(
            per_partition,
            [(-1, 1), (0, 2), (1, 1)],
            "-1: no source partition"
        );
    }
    let mut s = s;
    s.settle(
        &a,
        &["1".into(), "2".into(), "3".into(), "6".into()],
        Status::Discarded,
    )
    .expect("settle the rest");
    let s = h.reopen(s);
    let st = stats_of(&s, &a);
    assert_eq!(
        (st.pending, st.oldest_pending_at),
        (0, None),
        "nothing pending, no age"
    );
}

/// `dlqs` names every DLQ that holds records.
pub fn dlqs_names_every_dlq_with_records(h: &mut impl Harness) {
    let (a, b) = (h.dlq("names-a"), h.dlq("names-b"));
    let mut s = h.open();
    s.append(&[entry(&a, "1", b"{}", 0), entry(&b, "1", b"{}", 0)])
        .expect("append");
    let s = h.reopen(s);
    let names = s.dlqs().expect("dlqs");
    assert!(names.contains(&a) && names.contains(&b), "{names:?}");
}

/// Payloads, keys and headers come back byte for byte: JSON as written,
/// text, binary, empty; header values that are null, empty or binary.
pub fn payloads_keys_and_headers_come_back_byte_exact(h: &mut impl Harness) {
    let a = h.dlq("bytes");
    let mut s = h.open();
    let payloads: [&[u8]; 6] = [
        b"{ \"spaced\" : 1.50, \"big\": 123456789012345678901234567890 }",
        b"plain text, not JSON",
        b"\xff\xfe\x00binary\x80",
        b"",
        b"[1,2,3]",
        "unicode \u{2603} \u{1F600}".as_bytes(),
    ];
    let entries: Vec<Entry> = payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut e = entry(&a, &format!("b{i}"), p, 0);
            e.letter.key = Some(vec![i as u8, 0xff, b'k']);
            e.letter.headers = vec![
                Header {
                    name: "trace-id".into(),
                    value: Some(b"abc".to_vec()),
                },
                Header {
                    name: "null-value".into(),
                    value: None,
                },
                Header {
                    name: "binary".into(),
                    value: Some(vec![0, 0xff, i as u8]),
                },
                Header {
                    name: "empty".into(),
                    value: Some(Vec::new()),
                },
            ];
            e
        })
        .collect();
    s.append(&entries).expect("append");
    let s = h.reopen(s);
    for (i, e) in entries.iter().enumerate() {
        let r = s.get(&a, &e.letter.id).expect("get").expect("present");
        assert_eq!(r.letter.payload, payloads[i], "payload {i}");
        assert_eq!(r.letter.key, e.letter.key, "key {i}");
        assert_eq!(r.letter.headers, e.letter.headers, "headers {i}");
        assert_eq!(r.letter.error_class, "conformance.bad");
    }
    let scanned = scan(&s, &Selection::pending(Some(&a)));
    let empty = s.get(&a, "b3").expect("get").expect("present");
    assert!(
        !empty.letter.null_payload,
        "an empty payload is not a null one"
    );
    let mut from_scan: Vec<Vec<u8>> = scanned.iter().map(|r| r.letter.payload.clone()).collect();
    let mut want: Vec<Vec<u8>> = payloads.iter().map(|p| p.to_vec()).collect();
    from_scan.sort();
    want.sort();
    assert_eq!(from_scan, want, "scans give the same bytes as get");
}

/// A null payload (a Kafka tombstone) stays null, with its key; it is not
/// an empty payload.
pub fn a_null_payload_stays_null(h: &mut impl Harness) {
    let a = h.dlq("null");
    let mut s = h.open();
    let mut tombstone = entry(&a, "t", b"", 0);
    tombstone.letter.null_payload = true;
    tombstone.letter.key = Some(b"deleted-key".to_vec());
    s.append(&[tombstone, entry(&a, "e", b"", 0)])
        .expect("append");
    let s = h.reopen(s);
    let t = s.get(&a, "t").expect("get").expect("present");
    assert!(t.letter.null_payload, "still a tombstone");
    assert_eq!(t.letter.key.as_deref(), Some(&b"deleted-key"[..]));
    let e = s.get(&a, "e").expect("get").expect("present");
    assert!(
        !e.letter.null_payload && e.letter.payload.is_empty(),
        "still empty, not null"
    );
    let scanned = scan(&s, &Selection::pending(Some(&a)));
    let nulls: Vec<bool> = scanned.iter().map(|r| r.letter.null_payload).collect();
    assert_eq!(
        nulls.iter().filter(|n| **n).count(),
        1,
        "scans agree: {nulls:?}"
    );
}

/// Outputs commit with the rest of their batch, byte for byte (keys,
/// null values, headers), where [`DlqStore::capabilities`] says the store
/// takes them; elsewhere a batch with outputs or positions is refused
/// whole with [`StoreError::Unsupported`].
pub fn outputs_commit_with_their_batch_or_the_batch_is_refused(h: &mut impl Harness) {
    let a = h.dlq("outputs");
    let mut s = h.open();
    s.append(&[entry(&a, "old", b"{}", 0)]).expect("append");
    let caps = s.capabilities();
    let destination = if caps.takes_outputs() {
        h.destination()
            .expect("a store that takes outputs gives a destination")
    } else {
        "conformance-nowhere".to_owned()
    };
    let outputs = [
        Output {
            destination: destination.clone(),
            partition: None,
            key: Some(b"k1".to_vec()),
            value: Some(b"{\"fixed\":true}".to_vec()),
            headers: vec![Header {
                name: "dlq.replay_of".into(),
                value: Some(b"old".to_vec()),
            }],
        },
        Output {
            destination: destination.clone(),
            partition: None,
            key: Some(b"k2".to_vec()),
            value: None,
            headers: Vec::new(),
        },
    ];
    let append = [entry(&a, "new", b"{}", 0)];
    let settles = [settle(&a, "old", Status::Replayed)];
    let batch = Batch {
        append: &append,
        settle: &settles,
        outputs: &outputs,
        ..Batch::default()
    };
    if caps.takes_outputs() {
        s.commit(batch).expect("commit with outputs");
        let s = h.reopen(s);
        assert_eq!(
            s.get(&a, "old").expect("get").expect("present").status,
            Status::Replayed
        );
        assert!(s.get(&a, "new").expect("get").is_some());
        let read = h.read_destination(&s, &destination);
        // Where the store placed them is its own business.
        let seen: Vec<Output> = read
            .into_iter()
            .map(|o| Output {
                partition: None,
                ..o
            })
            .collect();
        assert_eq!(seen, outputs.to_vec(), "the outputs, as committed");
    } else {
        match s.commit(batch) {
            Err(StoreError::Unsupported { .. }) => {}
            other => panic!("a store without outputs must refuse them, got {other:?}"),
        }
        let s = h.reopen(s);
        assert!(
            s.get(&a, "new").expect("get").is_none(),
            "nothing of the batch written"
        );
        assert_eq!(
            s.get(&a, "old").expect("get").expect("present").status,
            Status::Pending
        );
    }
    if !caps.positions {
        let mut s = h.open();
        let positions = [SourcePosition {
            group: "g".into(),
            topic: "t".into(),
            partition: 0,
            next_offset: 7,
        }];
        let append = [entry(&a, "with-position", b"{}", 0)];
        let refused = s.commit(Batch {
            append: &append,
            positions: &positions,
            ..Batch::default()
        });
        assert!(
            matches!(refused, Err(StoreError::Unsupported { .. })),
            "{refused:?}"
        );
        let s = h.reopen(s);
        assert!(s.get(&a, "with-position").expect("get").is_none());
    }
}

/// Batches handed to [`DlqStore::submit`] are applied in order, each
/// reported once by [`DlqStore::completed`] (or done at once), and all of
/// them are durable once `completed(true)` returns; a `commit` after
/// submissions sees them applied.
pub fn submitted_batches_complete_in_order_and_once(h: &mut impl Harness) {
    let a = h.dlq("submit");
    let mut s = h.open();
    let entries: Vec<Entry> = (0..6)
        .map(|i| entry(&a, &format!("s{i}"), b"{}", 0))
        .collect();
    s.append(&entries).expect("append");
    let mut tickets = Vec::new();
    let mut settled = 0;
    for pair in 0..3 {
        let settles = [
            settle(&a, &format!("s{}", 2 * pair), Status::Replayed),
            settle(&a, &format!("s{}", 2 * pair + 1), Status::Discarded),
        ];
        match s
            .submit(Batch {
                settle: &settles,
                ..Batch::default()
            })
            .expect("submit")
        {
            crate::store::Submitted::Done(r) => settled += r.settled,
            crate::store::Submitted::Pending(t) => tickets.push(t),
        }
    }
    let done = s.completed(true).expect("completed");
    let reported: Vec<_> = done.iter().map(|(t, _)| *t).collect();
    assert_eq!(reported, tickets, "every pending ticket once, in order");
    settled += done.iter().map(|(_, r)| r.settled).sum::<usize>();
    assert_eq!(settled, 6);
    assert!(
        s.completed(true).expect("again").is_empty(),
        "reported once"
    );
    // A commit after submissions: it is ordered after them.
    let more = [settle(&a, "s0", Status::Discarded)];
    let r = s
        .commit(Batch {
            settle: &more,
            ..Batch::default()
        })
        .expect("commit");
    assert_eq!(r.settled, 0, "s0 was replayed by the first submission");
    let s = h.reopen(s);
    for i in 0..6 {
        let want = if i % 2 == 0 {
            Status::Replayed
        } else {
            Status::Discarded
        };
        let got = s.get(&a, &format!("s{i}")).expect("get").expect("present");
        assert_eq!(got.status, want, "s{i}");
    }
}

/// Expands to one `#[test]` per check of [`crate::conformance`], in a
/// module `store_conformance`. The argument is an expression that makes a
/// fresh `Option<impl Harness>` (`None` skips the checks, e.g. when the
/// backend's server was not started and the test is run by hand).
#[macro_export]
macro_rules! store_conformance_tests {
    ($make:expr) => {
        #[allow(missing_docs)]
        mod store_conformance {
            use super::*;
            $crate::store_conformance_tests!(@checks $make;
                appends_are_idempotent_by_dlq_and_id,
                a_commit_applies_appends_settlements_and_checkpoint_together,
                checkpoints_keep_the_last_value,
                settling_moves_a_record_out_of_pending_once,
                an_archived_record_stays_readable_and_is_no_longer_pending,
                a_record_appended_and_settled_in_one_commit_is_settled,
                scan_pages_resume_from_their_cursor_and_see_each_record_once,
                scans_select_by_dlq_status_and_filter,
                get_finds_a_record_whatever_its_status,
                stats_count_what_scans_see,
                dlqs_names_every_dlq_with_records,
                payloads_keys_and_headers_come_back_byte_exact,
                a_null_payload_stays_null,
                outputs_commit_with_their_batch_or_the_batch_is_refused,
                submitted_batches_complete_in_order_and_once,
            );
        }
    };
    (@checks $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                if let Some(mut harness) = ($make)() {
                    $crate::conformance::$check(&mut harness);
                }
            }
        )*
    };
}

#[cfg(test)]
mod memory_store {
    use crate::memory::MemoryStore;

    /// The in-memory store: nothing outlives it, so a reopen is the same store.
    struct Memory;

    impl super::Harness for Memory {
        type Store = MemoryStore;
        fn dlq(&mut self, name: &str) -> String {
            format!("dlq.{name}")
        }
        fn open(&mut self) -> MemoryStore {
            MemoryStore::new()
        }
        fn reopen(&mut self, store: MemoryStore) -> MemoryStore {
            store
        }
        fn destination(&mut self) -> Option<String> {
            Some("out.conformance".into())
        }
        fn read_destination(&mut self, store: &MemoryStore, d: &str) -> Vec<crate::store::Output> {
            store.outputs(d).to_vec()
        }
    }

    crate::store_conformance_tests!(|| Some(Memory));
}
