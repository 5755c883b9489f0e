//! Writes generated MarketLag records as NDJSON to stdout, and the rate to
//! stderr.
//!
//! ```text
//! cargo run --release -p dlq-marketlag --example generate -- polymarket 1000000 42 > prices.ndjson
//! ```
//!
//! Arguments: pipeline (`rss` or `polymarket`, default `rss`), record count
//! (default 1,000,000), seed (default 0). With `--labels`, each line is
//! followed by a tab and the class `validate` gives it (`ok` if valid).

use std::io::{BufWriter, Write};
use std::time::Instant;

use dlq_marketlag::{Expected, GeneratorConfig, Pipeline, generate};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let labels = args.iter().any(|a| a == "--labels");
    args.retain(|a| a != "--labels");
    let pipeline: Pipeline = args.first().map_or(Ok(Pipeline::Rss), |s| s.parse())?;
    let records: u64 = args.get(1).map_or(Ok(1_000_000), |s| s.parse())?;
    let seed: u64 = args.get(2).map_or(Ok(0), |s| s.parse())?;

    let config = GeneratorConfig::new(pipeline, records, seed);
    let stdout = std::io::stdout().lock();
    let mut out = BufWriter::with_capacity(1 << 20, stdout);
    let started = Instant::now();
    let mut bytes = 0u64;
    for record in generate(&config) {
        bytes += record.line.len() as u64 + 1;
        out.write_all(&record.line)?;
        if labels {
            let label = match record.expected {
                Expected::Valid => "ok",
                Expected::Invalid { class, .. } => class,
            };
            write!(out, "\t{label}")?;
        }
        out.write_all(b"\n")?;
    }
    out.flush()?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{records} {pipeline} records, {:.1} MB in {secs:.3} s: {:.0} records/s",
        bytes as f64 / 1e6,
        records as f64 / secs
    );
    Ok(())
}
