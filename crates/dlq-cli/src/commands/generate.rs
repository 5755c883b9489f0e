//! `dlq generate`: realistic MarketLag NDJSON with a seeded failure mix.

use crate::Outcome;
use crate::cli::GenerateArgs;
use anyhow::Context as _;
use dlq_marketlag::{FailureMix, GeneratorConfig};
use std::io::Write as _;

/// Runs `dlq generate`.
pub fn run(args: &GenerateArgs) -> anyhow::Result<Outcome> {
    let mix = if args.clean {
        FailureMix::none()
    } else if let Some(text) = &args.mix {
        serde_json::from_str(text).context("--mix: expected a JSON object of FailureMix fields")?
    } else {
        FailureMix::default()
    };
    // Every problem at once: negative or NaN weights, sums above 1.
    mix.check().context("--mix")?;
    let config = GeneratorConfig {
        pipeline: args.pipeline.into(),
        records: args.records,
        seed: args.seed,
        mix,
    };
    let mut out = super::writer(args.output.as_deref())?;
    for record in dlq_marketlag::generate(&config) {
        out.write_all(&record.line)?;
        out.write_all(b"\n")?;
    }
    out.flush()?;
    Ok(Outcome::Ok)
}
