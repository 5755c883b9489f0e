//! dlq-bench: criterion benchmarks of dlq, each measured side by side with a
//! naive baseline in the same run and reported as a ratio.
//!
//! Absolute figures depend on the machine (and, on a shared one, on the
//! neighbours); a ratio against a baseline measured in the same run on the
//! same input is what DESIGN.md's performance targets are written in, and
//! what `BENCHMARKS.md` reports. Benchmarks are never timed tests: nothing
//! here fails because a machine is slow.
//!
//! Layout:
//!
//! * [`envelope`]: realistic dead letters (a MarketLag JSON record, a text
//!   log line, a 1 KiB binary record, a 2 MiB record that takes the
//!   claim-check path) and the naive baseline, [`envelope::NaiveEnvelope`]:
//!   the same fields with the payload as a `serde_json::Value`, which
//!   re-serializes the payload instead of embedding its bytes;
//! * [`processor`]: the file processor (`dlq_core::process::run` with a
//!   MarketLag validating handler and a [`dlq_sqlite::SqliteStore`]) and the
//!   bare loop it is compared with (read, validate, write, failures in a
//!   `Vec`), over a generated Polymarket file;
//! * [`report`]: after criterion has run, reads its estimates from this run
//!   and prints records/s, MB/s and the ratio of each pair as a Markdown
//!   table.
//!
//! The benches themselves are in `benches/` (`harness = false`):
//!
//! ```text
//! cargo bench -p dlq-bench --bench envelope    # encode/decode vs serde_json::Value
//! cargo bench -p dlq-bench --bench processor   # process::run vs a bare loop
//! ```
//!
//! A ratio is always *dlq rate ÷ baseline rate*: above 1, dlq is faster.
//! Run without `--bench` (as `cargo test --benches` does), each bench runs
//! once on a small input, as a smoke test.
//!
//! ```
//! use dlq_bench::envelope::{NaiveEnvelope, cases};
//! use dlq_core::envelope::{EncodeOptions, decode, encode};
//!
//! let case = &cases()[0];
//! let encoded = encode(&case.letter, &EncodeOptions::default()).unwrap();
//! assert_eq!(decode(&encoded.bytes, "-").payload, case.letter.payload);
//! let naive = serde_json::to_vec(&NaiveEnvelope::of(&case.letter)).unwrap();
//! assert!(!naive.is_empty());
//! ```

pub mod envelope;
pub mod processor;
pub mod report;
