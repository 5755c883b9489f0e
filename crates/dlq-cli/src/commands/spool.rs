//! `dlq spool`: the guarded producer's local spool.

use crate::Outcome;
use crate::cli::{Cli, SpoolArgs};

/// Runs `dlq spool`.
pub fn run(_cli: &Cli, _args: &SpoolArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("dlq spool is not built yet")
}
