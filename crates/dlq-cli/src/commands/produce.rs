//! `dlq produce`: guarded produce of NDJSON records to a Kafka topic.

use crate::Outcome;
use crate::cli::{Cli, ProduceArgs};

/// Runs `dlq produce`.
pub fn run(_cli: &Cli, _args: &ProduceArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("dlq produce is not built yet")
}
