//! Crash safety: a writer process killed with SIGKILL at random moments,
//! mid-commit most of the time, never leaves a partial batch, a wrong
//! counter, a corrupt record or a checkpoint out of step with its batch.
//!
//! The test binary plays both parts: the parent test re-runs its own
//! executable with `CHILD_ENV` set and `--exact crash_child_writer`, which
//! makes that otherwise empty test the writer.

mod common;

use common::{assert_counters_agree, integrity, raw};
use dlq_core::envelope::EncodeOptions;
use dlq_core::store::{Batch, DlqStore, Entry, Selection, Settle, Status};
use dlq_core::{DeadLetter, Failure};
use dlq_sqlite::{SqliteOptions, SqliteStore};
use rand::Rng as _;
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CHILD_ENV: &str = "DLQ_SQLITE_CRASH_CHILD_DB";
const DLQ: &str = "dlq.rss.events";
const CHECKPOINT: &str = "crash-writer";
const PER_BATCH: usize = 50;
/// Records `0..SETTLED` of batch `b` are settled in the commit of batch `b + 1`.
const SETTLED: usize = 10;
const LIMIT: usize = 4096;
const ROUNDS: usize = 6;

fn options() -> SqliteOptions {
    SqliteOptions {
        encode: EncodeOptions::with_max_bytes(LIMIT).expect("limit"),
        ..SqliteOptions::default()
    }
}

/// splitmix64, seeded from the id: payloads are a pure function of the id,
/// so the parent can recompute what the child wrote.
struct Gen(u64);

impl Gen {
    fn of(id: &str) -> Gen {
        // FNV-1a
        let seed = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        Gen(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }
}

/// The payload and source partition of record `id`: mostly small JSON, some
/// binary, and one in 16 larger than the envelope limit (a claim check).
fn expected(id: &str) -> (Vec<u8>, i32) {
    let mut g = Gen::of(id);
    let partition = g.below(4) as i32;
    let payload = match g.below(16) {
        0 => {
            let n = LIMIT + g.below(3 * LIMIT as u64);
            (0..n).map(|_| g.next() as u8).collect()
        }
        1..=4 => {
            let n = g.below(300);
            (0..n).map(|_| g.next() as u8).collect()
        }
        _ => {
            let n = g.below(400);
            let pad: String = (0..n).map(|_| (b'a' + g.below(26) as u8) as char).collect();
            format!("{{\"id\":\"{id}\",\"price\":\"N/A\",\"pad\":\"{pad}\"}}").into_bytes()
        }
    };
    (payload, partition)
}

fn id_of(batch: u64, i: usize) -> String {
    format!("b{batch}-{i}")
}

fn entry(batch: u64, i: usize) -> Entry {
    let id = id_of(batch, i);
    let (payload, partition) = expected(&id);
    let failure = Failure::permanent("validate", "validation.wrong_type", "price is \"N/A\"");
    let mut letter = DeadLetter::new(id, payload, &failure);
    letter.source.system = "kafka".into();
    letter.source.topic = Some("rss.events".into());
    letter.source.partition = Some(partition);
    Entry {
        dlq: DLQ.into(),
        letter,
        status: Status::Pending,
    }
}

/// The writer: commits batch after batch as fast as it can, each with the
/// settlement of part of the previous batch and its own number as the
/// checkpoint, resuming after the last checkpoint. Runs until killed.
fn write_until_killed(path: &Path) -> ! {
    let mut store = SqliteStore::open(path, options()).expect("child open");
    let start = store
        .checkpoint(CHECKPOINT)
        .expect("child checkpoint")
        .map_or(0, |c| c.parse::<u64>().expect("checkpoint is a number") + 1);
    for batch in start.. {
        let append: Vec<Entry> = (0..PER_BATCH).map(|i| entry(batch, i)).collect();
        let settle: Vec<Settle> = match batch.checked_sub(1) {
            Some(prev) => (0..SETTLED)
                .map(|i| Settle {
                    dlq: DLQ.into(),
                    id: id_of(prev, i),
                    outcome: Status::Replayed,
                })
                .collect(),
            None => Vec::new(),
        };
        let number = batch.to_string();
        let report = store
            .commit(Batch {
                append: &append,
                settle: &settle,
                checkpoint: Some((CHECKPOINT, &number)),
                ..Batch::default()
            })
            .expect("child commit");
        assert_eq!(report.appended, PER_BATCH);
    }
    unreachable!("u64 batches exhausted")
}

/// Not a test on its own: the writer process of
/// `sigkill_mid_commit_never_leaves_a_partial_batch`. Does nothing unless
/// that test started it.
#[test]
fn crash_child_writer() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        write_until_killed(Path::new(&path));
    }
}

/// Checks the database after a kill; returns the last committed batch.
fn verify(path: &Path) -> Option<u64> {
    let conn = raw(path);
    assert_eq!(integrity(&conn), "ok");
    assert_counters_agree(&conn);
    drop(conn);

    let store = SqliteStore::open(path, options()).expect("reopen");
    let last = store
        .checkpoint(CHECKPOINT)
        .expect("checkpoint")
        .map(|c| c.parse::<u64>().expect("checkpoint is a number"));
    let everything = Selection {
        dlq: None,
        statuses: Status::ALL.to_vec(),
        filter: None,
    };
    let mut per_batch: BTreeMap<u64, usize> = BTreeMap::new();
    for record in store.scan_all(&everything, 97) {
        let record = record.expect("every record reads back");
        let id = &record.letter.id;
        let (batch, i) = id
            .strip_prefix('b')
            .and_then(|s| s.split_once('-'))
            .and_then(|(b, i)| Some((b.parse::<u64>().ok()?, i.parse::<usize>().ok()?)))
            .unwrap_or_else(|| panic!("unexpected id {id:?}"));
        *per_batch.entry(batch).or_default() += 1;
        let (payload, partition) = expected(id);
        assert!(
            record.letter.payload == payload,
            "payload of {id} differs ({} bytes stored, {} expected)",
            record.letter.payload.len(),
            payload.len()
        );
        assert_eq!(record.letter.source.partition, Some(partition), "{id}");
        let settled = i < SETTLED && last.is_some_and(|l| batch < l);
        let want = if settled {
            Status::Replayed
        } else {
            Status::Pending
        };
        assert_eq!(record.status, want, "{id} with last batch {last:?}");
        assert_eq!(record.settled_at.is_some(), settled, "{id}");
    }
    for (batch, n) in &per_batch {
        assert_eq!(*n, PER_BATCH, "batch {batch} is partial");
    }
    let batches: Vec<u64> = per_batch.keys().copied().collect();
    let want: Vec<u64> = match last {
        Some(l) => (0..=l).collect(),
        None => Vec::new(),
    };
    assert_eq!(batches, want, "batches present vs the checkpoint");

    let stats = store.stats().expect("stats");
    if let Some(l) = last {
        let st = &stats[0];
        let total = (l + 1) * PER_BATCH as u64;
        assert_eq!(st.total, total);
        assert_eq!(st.replayed, l * SETTLED as u64);
        assert_eq!(st.pending, total - st.replayed);
        assert_eq!(
            st.partitions.iter().map(|p| p.pending).sum::<u64>(),
            st.pending
        );
    } else {
        assert!(stats.is_empty());
    }
    last
}

#[test]
fn sigkill_mid_commit_never_leaves_a_partial_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("crash.db");
    let exe = std::env::current_exe().expect("test binary");
    let mut rng = rand::rng();
    let mut progress = Vec::new();
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "crash_child_writer",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the writer");
        std::thread::sleep(Duration::from_millis(rng.random_range(300..2000)));
        if let Some(status) = child.try_wait().expect("try_wait") {
            let mut err = String::new();
            if let Some(mut s) = child.stderr.take() {
                let _ = s.read_to_string(&mut err);
            }
            panic!("round {round}: the writer exited by itself ({status}):\n{err}");
        }
        child.kill().expect("SIGKILL");
        child.wait().expect("reap");
        let last = verify(&path);
        eprintln!("round {round}: killed after batch {last:?}; database verified");
        progress.push(last);
    }
    let last = progress.last().copied().flatten();
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "committed batches never disappear: {progress:?}"
    );
    assert!(
        last.is_some_and(|l| l >= ROUNDS as u64),
        "the writer made progress: {progress:?}"
    );
    let blobs: i64 = raw(&path)
        .query_row("SELECT COUNT(*) FROM blobs", [], |r| r.get(0))
        .expect("blobs");
    assert!(blobs > 0, "claim-check blobs were written");
}
