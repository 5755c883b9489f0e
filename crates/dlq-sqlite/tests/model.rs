//! `SqliteStore` against `MemoryStore` as a model: random sequences of
//! commits (appends, settles, checkpoints) must give the same reports,
//! stats, checkpoints and scans.

use dlq_core::envelope::EncodeOptions;
use dlq_core::filter::Filter;
use dlq_core::memory::MemoryStore;
use dlq_core::store::{Batch, DlqStore, Entry, Result, Selection, Settle, Status, StoredRecord};
use dlq_core::{DeadLetter, Failure};
use dlq_sqlite::{SqliteOptions, SqliteStore};
use proptest::prelude::*;

const DLQS: [&str; 2] = ["dlq.rss.events", "dlq.polymarket.price_hourly"];
const LIMIT: usize = 4096;

#[derive(Debug, Clone)]
struct Append {
    dlq: usize,
    id: u8,
    partition: Option<i32>,
    payload: Payload,
    parked: bool,
    transient: bool,
    failed_at_ms: i64,
}

#[derive(Debug, Clone)]
enum Payload {
    Json(u16),
    Binary(Vec<u8>),
    /// Larger than the envelope limit: goes to a claim check.
    Big(u8, usize),
}

#[derive(Debug, Clone)]
struct Op {
    appends: Vec<Append>,
    settles: Vec<(usize, u8, Status)>,
    checkpoint: Option<u16>,
}

fn arb_status() -> impl Strategy<Value = Status> {
    prop::sample::select(Status::ALL.to_vec())
}

fn arb_op() -> impl Strategy<Value = Op> {
    let payload = prop_oneof![
        6 => any::<u16>().prop_map(Payload::Json),
        2 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Payload::Binary),
        1 => (any::<u8>(), LIMIT..3 * LIMIT).prop_map(|(b, n)| Payload::Big(b, n)),
    ];
    let append = (
        0..DLQS.len(),
        0u8..24,
        prop::option::of(0i32..3),
        payload,
        prop::bool::weighted(0.1),
        any::<bool>(),
        0i64..1_000_000,
    )
        .prop_map(
            |(dlq, id, partition, payload, parked, transient, failed_at_ms)| Append {
                dlq,
                id,
                partition,
                payload,
                parked,
                transient,
                failed_at_ms,
            },
        );
    (
        prop::collection::vec(append, 0..8),
        prop::collection::vec((0..DLQS.len(), 0u8..24, arb_status()), 0..6),
        prop::option::of(any::<u16>()),
    )
        .prop_map(|(appends, settles, checkpoint)| Op {
            appends,
            settles,
            checkpoint,
        })
}

fn entry(a: &Append) -> Entry {
    let failure = if a.transient {
        Failure::transient("produce", "kafka.timeout", "delivery timed out")
    } else {
        Failure::permanent("validate", "validation.wrong_type", "price is a string")
    };
    let payload = match &a.payload {
        Payload::Json(n) => format!("{{\"n\":{n},\"market_id\":\"0xabc\"}}").into_bytes(),
        Payload::Binary(b) => b.clone(),
        Payload::Big(b, n) => vec![*b; *n],
    };
    let mut letter = DeadLetter::new(format!("id-{}", a.id), payload, &failure);
    letter.source.partition = a.partition;
    // The envelope keeps milliseconds; so does the model's input.
    letter.failed_at =
        chrono::DateTime::from_timestamp_millis(1_700_000_000_000 + a.failed_at_ms).expect("ts");
    letter.first_failed_at = letter.failed_at;
    Entry {
        dlq: DLQS[a.dlq].into(),
        letter,
        status: if a.parked {
            Status::Parked
        } else {
            Status::Pending
        },
    }
}

/// What must agree between the stores (`stored_at` is each store's clock).
fn view(r: &StoredRecord) -> (String, Status, bool, DeadLetter) {
    (
        r.dlq.clone(),
        r.status,
        r.settled_at.is_some(),
        r.letter.clone(),
    )
}

fn scan<S: DlqStore>(
    store: &S,
    selection: &Selection,
    page: usize,
) -> Vec<(String, Status, bool, DeadLetter)> {
    store
        .scan_all(selection, page)
        .map(|r| r.map(|r| view(&r)))
        .collect::<Result<_>>()
        .expect("scan")
}

fn selections() -> Vec<Selection> {
    let filter = |f: &str| Some(Filter::parse(f).expect("filter"));
    vec![
        Selection::pending(None),
        Selection::pending(Some(DLQS[0])),
        Selection {
            dlq: Some(DLQS[1].into()),
            statuses: Status::ALL.to_vec(),
            filter: None,
        },
        Selection {
            dlq: None,
            statuses: vec![Status::Parked, Status::Replayed],
            filter: None,
        },
        Selection {
            dlq: None,
            statuses: Status::ALL.to_vec(),
            filter: filter("payload.n >= 30000 or source.partition == 1"),
        },
        Selection {
            dlq: Some(DLQS[0].into()),
            statuses: vec![Status::Pending, Status::Discarded],
            filter: filter("retryable"),
        },
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn sqlite_store_behaves_like_the_memory_model(
        ops in prop::collection::vec(arb_op(), 1..12),
        page in 1usize..9,
    ) {
        let encode = EncodeOptions::with_max_bytes(LIMIT).expect("limit");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.db");
        let mut real = SqliteStore::open(&path, SqliteOptions { encode, ..SqliteOptions::default() })
            .expect("open");
        let mut model = MemoryStore::with_options(encode);

        for op in &ops {
            let appends: Vec<Entry> = op.appends.iter().map(entry).collect();
            let settles: Vec<Settle> = op
                .settles
                .iter()
                .map(|&(dlq, id, outcome)| Settle {
                    dlq: DLQS[dlq].into(),
                    id: format!("id-{id}"),
                    outcome,
                })
                .collect();
            let cp = op.checkpoint.map(|c| c.to_string());
            let batch = Batch {
                append: &appends,
                settle: &settles,
                checkpoint: cp.as_deref().map(|c| ("cp", c)),
                ..Batch::default()
            };
            let got = real.commit(batch).expect("sqlite commit");
            let want = model.commit(batch).expect("model commit");
            prop_assert_eq!(got, want);
            prop_assert_eq!(real.stats().expect("stats"), model.stats().expect("stats"));
        }
        // Reopening changes nothing.
        drop(real);
        let real = SqliteStore::open(&path, SqliteOptions { encode, ..SqliteOptions::default() })
            .expect("reopen");
        prop_assert_eq!(real.stats().expect("stats"), model.stats().expect("stats"));
        prop_assert_eq!(real.dlqs().expect("dlqs"), model.dlqs().expect("dlqs"));
        prop_assert_eq!(real.checkpoint("cp").expect("cp"), model.checkpoint("cp").expect("cp"));
        for selection in selections() {
            let got = scan(&real, &selection, page);
            let want = scan(&model, &selection, page);
            prop_assert_eq!(got, want, "selection {:?}", selection);
        }
        for dlq in DLQS {
            for id in 0..24u8 {
                let id = format!("id-{id}");
                let got = real.get(dlq, &id).expect("get").map(|r| view(&r));
                let want = model.get(dlq, &id).expect("get").map(|r| view(&r));
                prop_assert_eq!(got, want);
            }
        }
    }
}
