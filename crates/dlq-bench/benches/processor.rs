//! The file processor against a bare validate-and-write loop.
//!
//! Input: 200,000 generated Polymarket lines (seed 42, the default failure
//! mix: about 6% invalid), written once before measuring and read from the
//! page cache by both sides.
//!
//! * `dlq`: `dlq_core::process::run` with a handler that runs
//!   `dlq_marketlag::validate` and passes valid lines on; failures go to a
//!   `SqliteStore` (WAL, `synchronous = FULL`) in a fresh temp dir, default
//!   config (batches of 2,000 lines, each one output fsync and one SQLite
//!   transaction with the dead letters and the checkpoint).
//! * `bare`: read lines, `validate`, write the valid ones to a `BufWriter`,
//!   failures into a `Vec`; no retries, no checkpoints, no store, no fsync.
//!
//! Timed: the run alone. Not timed: generating the input, creating the
//! temp dir and opening the store (schema), closing the store and removing
//! the files. Each iteration starts from an empty output and an empty store
//! (a second run over the same store would resume from its checkpoint and
//! do nothing).
//!
//! Run: `cargo bench -p dlq-bench --bench processor` (about 25 s). Without
//! `--bench` (`cargo test --benches`), 2,000 lines, each side once.

use criterion::{Criterion, SamplingMode, Throughput};
use dlq_bench::processor::{bare_loop, open_store, run_dlq, write_input};
use dlq_bench::report::{Pair, print_ratios};
use std::time::{Duration, Instant, SystemTime};

// `criterion_group!` would generate an undocumented `pub fn`; this is its
// expansion, without the lint noise.
fn main() {
    let started = SystemTime::now();
    let records: u64 = if std::env::args().any(|a| a == "--bench") {
        200_000
    } else {
        2_000
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("polymarket.ndjson");
    let file = write_input(&input, records, 42).expect("write input");
    eprintln!(
        "input: {} polymarket lines, {:.1} MB, {} invalid ({:.1}%)",
        file.records,
        file.bytes as f64 / 1e6,
        file.invalid,
        100.0 * file.invalid as f64 / file.records as f64
    );

    let mut c = Criterion::default().configure_from_args();
    let mut group = c.benchmark_group("process_polymarket");
    group
        .throughput(Throughput::Elements(records))
        .sampling_mode(SamplingMode::Flat)
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    group.bench_function("dlq", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let work = tempfile::tempdir_in(dir.path()).expect("work dir");
                let mut store = open_store(work.path()).expect("store");
                let output = work.path().join("out.ndjson");
                let start = Instant::now();
                let summary = run_dlq(&input, &output, &mut store).expect("run");
                timed += start.elapsed();
                assert_eq!(summary.records_in, file.records);
                assert_eq!(summary.dead_lettered, file.invalid);
                drop(store);
            }
            timed
        });
    });

    group.bench_function("bare", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                let work = tempfile::tempdir_in(dir.path()).expect("work dir");
                let output = work.path().join("out.ndjson");
                let start = Instant::now();
                let outcome = bare_loop(&input, &output).expect("bare loop");
                timed += start.elapsed();
                assert_eq!(outcome.failures.len() as u64, file.invalid);
            }
            timed
        });
    });
    group.finish();
    c.final_summary();

    let pairs = [Pair {
        group: "process_polymarket".into(),
        subject: "dlq".into(),
        baseline: "bare".into(),
        records,
        bytes: file.bytes,
    }];
    print_ratios("processor, input bytes", &pairs, started);
}
