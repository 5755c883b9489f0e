//! Fills an embedded (SQLite) store with N realistic dead letters, for the
//! `dlq analyze` memory and speed benchmark (`scripts/bench-analyze.sh`).
//!
//! ```text
//! fill_store --store sqlite://PATH --records N [--seed S]
//! ```
//!
//! Error messages are drawn from the labeled corpus of
//! `crates/dlq-core/tests/corpus/messages.jsonl` (2,526 messages of Kafka
//! clients, JSON parsers, HTTP clients, databases, schema validators and the
//! MarketLag validators), so the miner sees real variety; the error class is
//! the first part of the message's true group (`http`, `kafka`, …), which is
//! coarser than the groups, so mining, not the class, has to separate them.
//! Payloads are small MarketLag-like JSON objects, failure times spread over
//! seven days, split over two DLQs. Records are appended in batches of
//! 10,000 (one transaction each).

use anyhow::Context as _;
use chrono::{Duration, Utc};
use dlq_core::store::{Batch, DlqStore as _, Entry, Status};
use dlq_core::{DeadLetter, Failure};
use dlq_sqlite::SqliteStore;
use rand::{Rng as _, SeedableRng as _};

const CORPUS: &str = include_str!("../../../dlq-core/tests/corpus/messages.jsonl");
const BATCH: usize = 10_000;

fn main() -> anyhow::Result<()> {
    let mut store_url = None;
    let mut records: u64 = 1_000_000;
    let mut seed: u64 = 7;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().with_context(|| format!("{a} needs a value"));
        match a.as_str() {
            "--store" => store_url = Some(value()?),
            "--records" => records = value()?.parse().context("--records")?,
            "--seed" => seed = value()?.parse().context("--seed")?,
            other => anyhow::bail!(
                "unknown argument {other:?}; usage: fill_store --store sqlite://PATH --records N [--seed S]"
            ),
        }
    }
    let store_url = store_url.context("--store sqlite://PATH is required")?;
    let mut store = SqliteStore::open_url(&store_url)?;

    let corpus: Vec<(String, String)> = CORPUS
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| {
            let group = v.get("group")?.as_str()?;
            let class = group.split('.').next().unwrap_or(group).to_owned();
            Some((class, v.get("message")?.as_str()?.to_owned()))
        })
        .collect();
    anyhow::ensure!(!corpus.is_empty(), "the corpus is empty");

    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let start = Utc::now() - Duration::days(7);
    let span_ms = Duration::days(7).num_milliseconds();
    let mut batch = Vec::with_capacity(BATCH);
    let begun = std::time::Instant::now();
    for i in 0..records {
        let (class, message) = &corpus[rng.random_range(0..corpus.len())];
        let (dlq, topic) = if i % 2 == 0 {
            ("dlq.rss.events", "rss.events")
        } else {
            ("dlq.polymarket.price_hourly", "polymarket.price_hourly")
        };
        let payload = serde_json::json!({
            "id": format!("r-{i:08}"),
            "market_id": format!("0x{:040x}", rng.random::<u128>()),
            "price": if rng.random_bool(0.1) {
                serde_json::json!(format!("{:.2}", rng.random::<f64>()))
            } else {
                serde_json::json!(rng.random::<f64>())
            },
            "volume": rng.random_range(0..1_000_000),
            "timestamp": (start + Duration::hours(rng.random_range(0..168))).to_rfc3339(),
        });
        let failure = Failure {
            stage: "validate".into(),
            error_class: class.clone(),
            message: message.clone(),
            retryable: class == "http" || class == "kafka",
        };
        let mut letter = DeadLetter::new(
            format!("r-{i:08}"),
            payload.to_string().into_bytes(),
            &failure,
        );
        letter.source.topic = Some(topic.into());
        letter.source.partition = Some((i % 6) as i32);
        letter.failed_at = start + Duration::milliseconds(rng.random_range(0..span_ms));
        letter.first_failed_at = letter.failed_at;
        batch.push(Entry {
            dlq: dlq.into(),
            letter,
            status: Status::Pending,
        });
        if batch.len() == BATCH || i + 1 == records {
            store.commit(Batch {
                append: &batch,
                settle: &[],
                checkpoint: None,
                ..Batch::default()
            })?;
            batch.clear();
        }
    }
    eprintln!(
        "appended {records} records to {store_url} in {:.1} s",
        begun.elapsed().as_secs_f64()
    );
    Ok(())
}
