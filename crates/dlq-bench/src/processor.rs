//! Fixtures of the processor bench: a generated Polymarket input file, the
//! dlq file processor over it, and the bare loop it is compared with.
//!
//! Both sides read the same file through a 1 MiB `BufReader`, run
//! [`dlq_marketlag::validate`] on every line and write the valid lines, as
//! they are, through a 1 MiB `BufWriter`. What only dlq does: retry
//! bookkeeping, a commit every `batch_size` lines (output flushed and
//! fsynced, dead letters encoded and written to SQLite with a checkpoint in
//! one fsynced transaction) and per-class counts.

use dlq_core::Failure;
use dlq_core::process::{self, Handler, Input, ProcessConfig, ProcessError, ProcessSummary};
use dlq_marketlag::{Expected, GeneratorConfig, Limits, Pipeline, ValidationError, generate};
use dlq_sqlite::{SqliteOptions, SqliteStore};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::Path;

/// The pipeline whose records are processed.
pub const PIPELINE: Pipeline = Pipeline::Polymarket;

/// What [`write_input`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InputFile {
    /// Lines in the file.
    pub records: u64,
    /// Bytes in the file, newlines included.
    pub bytes: u64,
    /// Lines that fail validation.
    pub invalid: u64,
}

/// Writes `records` generated Polymarket lines (default failure mix) to `path`.
pub fn write_input(path: &Path, records: u64, seed: u64) -> io::Result<InputFile> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut file = InputFile {
        records,
        bytes: 0,
        invalid: 0,
    };
    for record in generate(&GeneratorConfig::new(PIPELINE, records, seed)) {
        out.write_all(&record.line)?;
        out.write_all(b"\n")?;
        file.bytes += record.line.len() as u64 + 1;
        if record.expected != Expected::Valid {
            file.invalid += 1;
        }
    }
    out.into_inner().map_err(io::IntoInnerError::into_error)?;
    Ok(file)
}

/// The processor's handler: validate, then pass the record on unchanged.
/// Validation failures are permanent, so nothing is retried.
#[derive(Debug, Clone, Default)]
pub struct ValidateHandler {
    /// Size limits (default 1 MiB).
    pub limits: Limits,
}

impl Handler for ValidateHandler {
    fn handle(&mut self, payload: &[u8], _attempt: u32) -> Result<Vec<u8>, Failure> {
        match dlq_marketlag::validate(PIPELINE, payload, &self.limits) {
            Ok(_) => Ok(payload.to_vec()),
            Err(e) => Err(Failure::permanent("validate", e.class, e.message)),
        }
    }
}

/// Opens a fresh store in `dir` (schema created; not part of a timed run).
pub fn open_store(dir: &Path) -> dlq_core::store::Result<SqliteStore> {
    SqliteStore::open(dir.join("dlq.db"), SqliteOptions::default())
}

/// Runs the dlq file processor over `input` into `output` and `store`, with
/// the default config (batches of 2,000 lines, default retry policy).
pub fn run_dlq(
    input: &Path,
    output: &Path,
    store: &mut SqliteStore,
) -> Result<ProcessSummary, ProcessError> {
    let config = ProcessConfig::new(
        Input::File(input.to_path_buf()),
        output.to_path_buf(),
        PIPELINE.dlq_topic(),
        PIPELINE.topic(),
    );
    process::run(&config, &mut ValidateHandler::default(), store, None)
}

/// One line the bare loop could not validate.
#[derive(Debug, Clone)]
pub struct BareFailure {
    /// 0-based line number.
    pub line: u64,
    /// The line's bytes.
    pub payload: Vec<u8>,
    /// Why it failed.
    pub error: ValidationError,
}

/// What the bare loop did.
#[derive(Debug, Clone, Default)]
pub struct BareOutcome {
    /// Lines written to the output.
    pub delivered: u64,
    /// Lines that failed, in input order.
    pub failures: Vec<BareFailure>,
}

/// The baseline: read lines, validate, write the valid ones, keep the
/// failures in memory. No retries, no checkpoints, no store, no fsync.
pub fn bare_loop(input: &Path, output: &Path) -> io::Result<BareOutcome> {
    let mut reader = BufReader::with_capacity(1 << 20, File::open(input)?);
    let mut out = BufWriter::with_capacity(1 << 20, File::create(output)?);
    let limits = Limits::default();
    let mut outcome = BareOutcome::default();
    let mut buf = Vec::with_capacity(4096);
    let mut line = 0;
    loop {
        buf.clear();
        if reader.read_until(b'\n', &mut buf)? == 0 {
            break;
        }
        if buf.last() == Some(&b'\n') {
            buf.pop();
        }
        match dlq_marketlag::validate(PIPELINE, &buf, &limits) {
            Ok(_) => {
                out.write_all(&buf)?;
                out.write_all(b"\n")?;
                outcome.delivered += 1;
            }
            Err(error) => outcome.failures.push(BareFailure {
                line,
                payload: buf.clone(),
                error,
            }),
        }
        line += 1;
    }
    out.flush()?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlq_core::DlqStore as _;

    #[test]
    fn dlq_and_bare_loop_deliver_the_same_bytes_and_fail_the_same_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in.ndjson");
        let file = write_input(&input, 3_000, 42).expect("input");
        assert!(file.invalid > 0, "the default mix has failures");

        let mut store = open_store(dir.path()).expect("store");
        let summary = run_dlq(&input, &dir.path().join("dlq.out"), &mut store).expect("run");
        let bare = bare_loop(&input, &dir.path().join("bare.out")).expect("bare");

        assert_eq!(summary.records_in, file.records);
        assert_eq!(summary.dead_lettered, file.invalid);
        assert_eq!(summary.retries, 0, "validation failures are permanent");
        assert_eq!(bare.failures.len() as u64, file.invalid);
        assert_eq!(summary.delivered, bare.delivered);
        let dlq_out = std::fs::read(dir.path().join("dlq.out")).expect("dlq out");
        let bare_out = std::fs::read(dir.path().join("bare.out")).expect("bare out");
        assert!(dlq_out == bare_out, "outputs differ");
        let stats = store.stats().expect("stats");
        assert_eq!(stats.len(), 1);
        assert_eq!(stats[0].dlq, PIPELINE.dlq_topic());
        assert_eq!(stats[0].pending, file.invalid);
    }
}
