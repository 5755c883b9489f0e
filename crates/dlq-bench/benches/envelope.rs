//! Envelope encode and decode throughput against a naive serde_json envelope.
//!
//! Cases (see `dlq_bench::envelope`): a 243-byte MarketLag JSON record
//! (embedded verbatim), a 215-byte text log line, a 1 KiB binary record
//! (base64) and a 2 MiB JSON record (claim-checked: the default 1 MiB limit).
//! Each case is one criterion group with:
//!
//! * `dlq`: `envelope::encode` with `EncodeOptions::default()` / `decode`
//!   (for the claim-check case, decode includes restoring the payload from
//!   its blob, SHA-256 verified, as a store read does);
//! * `naive`: `serde_json::to_vec` / `from_slice` of `NaiveEnvelope`, the
//!   same fields with the payload held as a `serde_json::Value`;
//! * `naive_from_bytes` (encode only): the naive envelope built from the
//!   record's bytes first (payload parsed into a `Value`), which is what a
//!   naive writer that receives bytes must do.
//!
//! One record per iteration; criterion's throughput is payload MB/s. The
//! table printed at the end gives records/s, MB/s and the ratio
//! (dlq rate ÷ baseline rate) of each pair.
//!
//! Run: `cargo bench -p dlq-bench --bench envelope` (about 50 s).

use criterion::{Criterion, Throughput};
use dlq_bench::envelope::{Case, NaiveEnvelope, cases};
use dlq_bench::report::{Pair, print_ratios};
use dlq_core::envelope::{self, EncodeOptions};
use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, SystemTime};

fn configure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    case: &Case,
) {
    group.throughput(Throughput::BytesDecimal(case.letter.payload.len() as u64));
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_millis(1500));
    if case.letter.payload.len() > 64 * 1024 {
        // Milliseconds per iteration: fewer samples keep the run short.
        group.sample_size(20);
    }
}

fn encode(c: &mut Criterion, case: &Case) {
    let opts = EncodeOptions::default();
    let naive = NaiveEnvelope::of(&case.letter);
    let dlq_len = envelope::encode(&case.letter, &opts)
        .expect("encode")
        .bytes
        .len();
    let naive_len = serde_json::to_vec(&naive).expect("naive").len();
    eprintln!(
        "{}: {} ({} B payload): dlq envelope {dlq_len} B, naive envelope {naive_len} B",
        case.name,
        case.description,
        case.letter.payload.len()
    );

    let mut group = c.benchmark_group(format!("encode_{}", case.name));
    configure(&mut group, case);
    group.bench_function("dlq", |b| {
        b.iter(|| envelope::encode(black_box(&case.letter), &opts).expect("encode"));
    });
    group.bench_function("naive", |b| {
        b.iter(|| serde_json::to_vec(black_box(&naive)).expect("naive"));
    });
    group.bench_function("naive_from_bytes", |b| {
        b.iter(|| serde_json::to_vec(&NaiveEnvelope::of(black_box(&case.letter))).expect("naive"));
    });
    group.finish();
}

fn decode(c: &mut Criterion, case: &Case) {
    let encoded = envelope::encode(&case.letter, &EncodeOptions::default()).expect("encode");
    let blobs: HashMap<String, Vec<u8>> = encoded
        .blobs
        .iter()
        .map(|b| (b.sha256.clone(), b.bytes.clone()))
        .collect();
    let naive = serde_json::to_vec(&NaiveEnvelope::of(&case.letter)).expect("naive");
    let full_decode = |bytes: &[u8]| {
        let mut letter = envelope::decode(bytes, "bench");
        if letter.has_claim_checks() {
            letter
                .resolve_claims(|c| Ok(blobs.get(&c.sha256).cloned()))
                .expect("resolve");
        }
        letter
    };
    assert_eq!(full_decode(&encoded.bytes).payload, case.letter.payload);

    let mut group = c.benchmark_group(format!("decode_{}", case.name));
    configure(&mut group, case);
    group.bench_function("dlq", |b| {
        b.iter(|| full_decode(black_box(&encoded.bytes)));
    });
    group.bench_function("naive", |b| {
        b.iter(|| serde_json::from_slice::<NaiveEnvelope>(black_box(&naive)).expect("naive"));
    });
    group.finish();
}

// `criterion_group!` would generate an undocumented `pub fn`; this is its
// expansion, without the lint noise.
fn main() {
    let started = SystemTime::now();
    let mut c = Criterion::default().configure_from_args();
    let cases = cases();
    let mut pairs = Vec::new();
    for case in &cases {
        encode(&mut c, case);
        let pair = |op: &str, baseline: &str| Pair {
            group: format!("{op}_{}", case.name),
            subject: "dlq".into(),
            baseline: baseline.into(),
            records: 1,
            bytes: case.letter.payload.len() as u64,
        };
        pairs.push(pair("encode", "naive"));
        pairs.push(pair("encode", "naive_from_bytes"));
        pairs.push(pair("decode", "naive"));
    }
    for case in &cases {
        decode(&mut c, case);
    }
    c.final_summary();
    pairs.sort_by_key(|p| !p.group.starts_with("encode"));
    print_ratios("envelope, payload bytes", &pairs, started);
}
