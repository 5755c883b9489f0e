//! `dlq export`: dead letters out as NDJSON envelopes (claim checks inlined),
//! or as their raw payloads.

use crate::Outcome;
use crate::cli::{Cli, ExportArgs};
use dlq_core::DlqStore as _;
use dlq_core::envelope::{self, EncodeOptions};
use std::io::Write as _;

/// Runs `dlq export`.
pub fn run(cli: &Cli, args: &ExportArgs) -> anyhow::Result<Outcome> {
    let store = crate::store::open(cli.store_url())?;
    let mut selection = super::selection(&store, &args.select)?;
    selection.filter = super::with_fingerprints(&store, selection.filter)?;
    let mut out = super::writer(args.output.as_deref())?;
    let (mut n, mut tombstones) = (0u64, 0u64);
    for r in store.scan_all(&selection, 1000) {
        let r = r?;
        if args.payloads && r.letter.null_payload {
            // A null value has no line of its own: an empty line would turn
            // a delete into an empty value. Counted and said below.
            tombstones += 1;
            continue;
        }
        if args.payloads {
            out.write_all(&r.letter.payload)?;
        } else {
            out.write_all(&envelope::encode(&r.letter, &EncodeOptions::unlimited())?.bytes)?;
        }
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    if tombstones > 0 {
        eprintln!(
            "note: {tombstones} records with a null payload (tombstones) have no payload line \
             and were left out; export without --payloads to get them as envelopes"
        );
    }
    Ok(if n + tombstones == 0 {
        Outcome::NothingMatched
    } else {
        Outcome::Ok
    })
}
