//! A processor over files: read NDJSON lines, handle each with retries, write
//! what succeeds to an output file and dead-letter the rest.
//!
//! Delivery semantics: **exactly-once into the output file and the DLQ**, for
//! a file input that is processed to completion, even across crashes:
//!
//! * Lines are processed in input order; a line whose failure is retryable
//!   waits in a retry queue with its backoff while later lines go on (a slow
//!   record never stalls the pipeline), so output order can differ from input
//!   order for retried lines.
//! * Every `batch_size` lines, the output is flushed and fsynced, and then one
//!   store commit records the batch's dead letters together with a checkpoint:
//!   the input position, the lines still waiting for a retry, and the output
//!   length. The input position is thus recorded only after the output and the
//!   DLQ writes for everything before it are durable.
//! * A rerun resumes from the checkpoint: it cuts the output back to the
//!   checkpointed length (dropping lines written after the last commit),
//!   re-reads the lines that were waiting for a retry, and continues. Dead
//!   letters have deterministic ids (`file:<input>:<line>`), so a batch that is
//!   written twice is deduplicated by the store.
//!
//! Standard input cannot be re-read, so it is processed without a checkpoint.

use crate::Failure;
use crate::envelope::{DeadLetter, Source};
use crate::retry::{Decision, RetryPolicy, RetryState};
use crate::store::{Batch, DlqStore, Entry, Status, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BinaryHeap};
use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

/// Handles one record: returns the output bytes, or why it failed.
pub trait Handler {
    /// Processes `payload` on attempt number `attempt` (1-based).
    fn handle(&mut self, payload: &[u8], attempt: u32) -> Result<Vec<u8>, Failure>;
}

impl<F> Handler for F
where
    F: FnMut(&[u8], u32) -> Result<Vec<u8>, Failure>,
{
    fn handle(&mut self, payload: &[u8], attempt: u32) -> Result<Vec<u8>, Failure> {
        self(payload, attempt)
    }
}

/// Where the processor reads from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// A file, resumable.
    File(PathBuf),
    /// Standard input, not resumable.
    Stdin,
}

/// How a processor run is set up.
#[derive(Debug, Clone)]
pub struct ProcessConfig {
    /// Where lines come from.
    pub input: Input,
    /// Where handled records go (appended, one per line).
    pub output: PathBuf,
    /// The DLQ for records that fail for good, e.g. `dlq.rss.events`.
    pub dlq: String,
    /// The topic the records belong to (replays go back there).
    pub topic: String,
    /// How failures are retried.
    pub retry: RetryPolicy,
    /// Lines per commit.
    pub batch_size: usize,
    /// Most lines waiting for a retry at once; past it, the processor waits
    /// for the earliest retry instead of reading on (backpressure).
    pub max_in_flight: usize,
    /// Set from outside (a signal handler) to stop early: the run reads no
    /// further line and commits. A file input keeps the lines waiting for
    /// a retry in its checkpoint (the rerun retries them); standard input,
    /// which cannot be re-read, runs its retries out first.
    pub stop: Option<Arc<AtomicBool>>,
}

impl ProcessConfig {
    /// A config with default retry policy and batching.
    pub fn new(input: Input, output: PathBuf, dlq: &str, topic: &str) -> Self {
        ProcessConfig {
            input,
            output,
            dlq: dlq.to_owned(),
            topic: topic.to_owned(),
            retry: RetryPolicy::default(),
            batch_size: 2000,
            max_in_flight: 10_000,
            stop: None,
        }
    }
}

/// What a processor run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessSummary {
    /// Lines read in this run (a resumed run counts only what it read).
    pub records_in: u64,
    /// Records written to the output.
    pub delivered: u64,
    /// Records sent to the DLQ.
    pub dead_lettered: u64,
    /// Records that failed at least once and then succeeded on a retry.
    pub recovered_by_retry: u64,
    /// Retry attempts made.
    pub retries: u64,
    /// Dead letters the store already had (from a run that crashed).
    pub dlq_duplicates: u64,
    /// The line the run started from (0 unless it resumed).
    pub resumed_from_line: u64,
    /// Dead letters per error class.
    pub by_error_class: BTreeMap<String, u64>,
    /// Whether the run stopped on request before the end of its input (a
    /// rerun resumes from its checkpoint).
    #[serde(default)]
    pub stopped: bool,
}

/// A processor run failed (the records are safe: rerun to resume).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProcessError {
    /// Reading the input or writing the output failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: String,
        /// The error.
        source: io::Error,
    },
    /// The DLQ store failed.
    #[error("DLQ store: {0}")]
    Store(#[from] StoreError),
    /// The output file is shorter than its checkpoint says: records that
    /// were delivered are gone from it (the file was truncated or
    /// replaced). Resuming would hide the gap, so the run refuses.
    #[error(
        "output {path} has {len} bytes but its checkpoint recorded {expected}: bytes {len}..{expected} \
         (records already delivered) are missing; restore the file, or remove the checkpoint \
         {checkpoint:?} to process the input again from its start"
    )]
    OutputShorterThanCheckpoint {
        /// The output file.
        path: String,
        /// Its length now.
        len: u64,
        /// The length the checkpoint recorded.
        expected: u64,
        /// The checkpoint's name.
        checkpoint: String,
    },
    /// The checkpoint in the store is not one this processor wrote.
    #[error("checkpoint {name:?} is unreadable ({reason}); remove it to start over")]
    Checkpoint {
        /// Checkpoint name.
        name: String,
        /// Why.
        reason: String,
    },
}

fn io_err<'p>(what: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> ProcessError + 'p {
    move |source| ProcessError::Io {
        what,
        path: path.display().to_string(),
        source,
    }
}

/// The durable position of a file processor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The next line to read.
    pub next_line: u64,
    /// Its byte offset.
    pub next_byte: u64,
    /// Lines before `next_line` that were not done: (line, byte offset).
    pub in_flight: Vec<(u64, u64)>,
    /// Output length after the commit.
    pub output_len: u64,
}

/// The checkpoint name of a processor reading `input` into `dlq`.
pub fn checkpoint_name(input: &Path, dlq: &str) -> String {
    let canonical = input.canonicalize().unwrap_or_else(|_| input.to_path_buf());
    format!("process:{dlq}:{}", canonical.display())
}

/// The short stable id of an input file used in dead-letter ids.
pub fn input_id(input: &Input) -> String {
    match input {
        Input::File(p) => {
            let canonical = p.canonicalize().unwrap_or_else(|_| p.clone());
            crate::envelope::sha256_hex(canonical.to_string_lossy().as_bytes())[..12].to_owned()
        }
        Input::Stdin => format!("stdin-{}", uuid::Uuid::now_v7().simple()),
    }
}

struct Pending {
    line: u64,
    byte: u64,
    payload: Vec<u8>,
    state: RetryState,
    due: Instant,
    /// Why the last attempt failed (the dead letter's error if the run
    /// stops before the retry).
    last_failure: Failure,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due && self.line == other.line
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    // Earliest due first in a max-heap.
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        other.due.cmp(&self.due).then(other.line.cmp(&self.line))
    }
}

/// Metric: records a processor read (counter, label `topic`).
pub const PROCESSED_METRIC: &str = "dlq_processor_processed_records_total";
/// Metric: records a processor delivered to its output (counter, label `topic`).
pub const DELIVERED_METRIC: &str = "dlq_processor_delivered_records_total";
/// Metric: records a processor sent to a DLQ (counter, label `topic`).
pub const DEAD_LETTERED_METRIC: &str = "dlq_processor_dead_lettered_records_total";
/// Metric: handler retries of a processor (counter, label `topic`).
pub const RETRIES_METRIC: &str = "dlq_processor_retries_total";

/// A processor's own counters, through the `metrics` facade (no-ops until
/// a recorder is installed, e.g. by `dlq-monitor`). Labelled by the source
/// topic only: bounded cardinality, never a record id or an error text.
#[derive(Debug, Clone)]
pub struct ProcessorCounters {
    /// Records read.
    pub processed: metrics::Counter,
    /// Records delivered to the output.
    pub delivered: metrics::Counter,
    /// Records sent to a DLQ.
    pub dead_lettered: metrics::Counter,
    /// Handler retries.
    pub retries: metrics::Counter,
}

impl ProcessorCounters {
    /// The counters of a processor reading `topic`.
    pub fn new(topic: &str) -> Self {
        let t = topic.to_owned();
        ProcessorCounters {
            processed: metrics::counter!(PROCESSED_METRIC, "topic" => t.clone()),
            delivered: metrics::counter!(DELIVERED_METRIC, "topic" => t.clone()),
            dead_lettered: metrics::counter!(DEAD_LETTERED_METRIC, "topic" => t.clone()),
            retries: metrics::counter!(RETRIES_METRIC, "topic" => t),
        }
    }
}

/// Called after each commit with the summary so far (for progress bars).
pub type Progress<'a> = &'a mut dyn FnMut(&ProcessSummary);

/// Runs a processor to the end of its input.
pub fn run<H: Handler, S: DlqStore>(
    config: &ProcessConfig,
    handler: &mut H,
    store: &mut S,
    progress: Option<Progress<'_>>,
) -> Result<ProcessSummary, ProcessError> {
    let mut p = Run::open(config, store)?;
    p.process(handler, store, progress)?;
    Ok(p.summary)
}

struct Run<'c> {
    config: &'c ProcessConfig,
    reader: LineSource,
    output: LineWriter<File>,
    checkpoint_name: Option<String>,
    input_id: String,
    next_line: u64,
    next_byte: u64,
    retry_queue: BinaryHeap<Pending>,
    replay_first: Vec<(u64, u64, Vec<u8>)>,
    dead: Vec<Entry>,
    since_commit: usize,
    summary: ProcessSummary,
    counters: ProcessorCounters,
}

impl<'c> Run<'c> {
    fn open<S: DlqStore>(config: &'c ProcessConfig, store: &mut S) -> Result<Self, ProcessError> {
        let out_path = &config.output;
        let out_file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(out_path)
            .map_err(io_err("opening output", out_path))?;
        let mut checkpoint = Checkpoint::default();
        let mut checkpoint_name = None;
        let mut had_checkpoint = false;
        let mut replay_first = Vec::new();
        let reader = match &config.input {
            Input::Stdin => LineSource::stdin(),
            Input::File(path) => {
                let name = checkpoint_name_for(path, &config.dlq);
                if let Some(text) = store.checkpoint(&name)? {
                    had_checkpoint = true;
                    checkpoint =
                        serde_json::from_str(&text).map_err(|e| ProcessError::Checkpoint {
                            name: name.clone(),
                            reason: e.to_string(),
                        })?;
                }
                let mut file = File::open(path).map_err(io_err("opening input", path))?;
                for &(line, byte) in &checkpoint.in_flight {
                    file.seek(SeekFrom::Start(byte))
                        .map_err(io_err("seeking input", path))?;
                    let mut r = BufReader::new(&mut file);
                    let mut buf = Vec::new();
                    r.read_until(b'\n', &mut buf)
                        .map_err(io_err("reading input", path))?;
                    strip_newline(&mut buf);
                    replay_first.push((line, byte, buf));
                }
                file.seek(SeekFrom::Start(checkpoint.next_byte))
                    .map_err(io_err("seeking input", path))?;
                checkpoint_name = Some(name);
                LineSource::File(BufReader::with_capacity(1 << 20, file))
            }
        };
        // Lines written after the last commit belong to no checkpoint: cut
        // them, they are processed again below.
        let len = out_file
            .metadata()
            .map_err(io_err("reading output", out_path))?
            .len();
        if had_checkpoint && len < checkpoint.output_len {
            return Err(ProcessError::OutputShorterThanCheckpoint {
                path: out_path.display().to_string(),
                len,
                expected: checkpoint.output_len,
                checkpoint: checkpoint_name.unwrap_or_default(),
            });
        }
        let output_len = if had_checkpoint && checkpoint.output_len < len {
            out_file
                .set_len(checkpoint.output_len)
                .map_err(io_err("truncating output", out_path))?;
            checkpoint.output_len
        } else {
            len
        };
        let mut output = BufWriter::with_capacity(1 << 20, out_file);
        output
            .seek(SeekFrom::Start(output_len))
            .map_err(io_err("seeking output", out_path))?;
        let mut run = Run {
            config,
            reader,
            output: LineWriter::new(output, output_len),
            checkpoint_name,
            input_id: input_id(&config.input),
            next_line: checkpoint.next_line,
            next_byte: checkpoint.next_byte,
            retry_queue: BinaryHeap::new(),
            replay_first,
            dead: Vec::new(),
            since_commit: 0,
            summary: ProcessSummary {
                resumed_from_line: checkpoint.next_line,
                ..ProcessSummary::default()
            },
            counters: ProcessorCounters::new(&config.topic),
        };
        if run.checkpoint_name.is_some() && !had_checkpoint {
            // Record where the output starts before writing to it, so that a
            // crash before the first batch commit cannot leave lines that a
            // rerun would write again.
            run.commit(store)?;
        }
        Ok(run)
    }

    fn process<H: Handler, S: DlqStore>(
        &mut self,
        handler: &mut H,
        store: &mut S,
        mut progress: Option<Progress<'_>>,
    ) -> Result<(), ProcessError> {
        for (line, byte, payload) in std::mem::take(&mut self.replay_first) {
            self.summary.records_in += 1;
            self.counters.processed.increment(1);
            self.attempt(handler, line, byte, &payload, None);
        }
        let mut buf = Vec::with_capacity(4096);
        let stop_asked = || {
            self.config
                .stop
                .as_ref()
                .is_some_and(|s| s.load(Ordering::SeqCst))
        };
        loop {
            if stop_asked() {
                self.summary.stopped = true;
                break;
            }
            self.run_due_retries(handler, false);
            while self.retry_queue.len() >= self.config.max_in_flight.max(1) {
                self.run_due_retries(handler, true);
            }
            buf.clear();
            let read = self
                .reader
                .read_line(&mut buf, &stop_asked)
                .map_err(|source| ProcessError::Io {
                    what: "reading input",
                    path: input_label(&self.config.input),
                    source,
                })?;
            let read = match read {
                ReadLine::Line(n) => n,
                ReadLine::End => break,
                ReadLine::Stopped => {
                    self.summary.stopped = true;
                    break;
                }
            };
            let (line, byte) = (self.next_line, self.next_byte);
            self.next_line += 1;
            self.next_byte += read as u64;
            strip_newline(&mut buf);
            self.summary.records_in += 1;
            self.counters.processed.increment(1);
            self.attempt(handler, line, byte, &buf, None);
            self.since_commit += 1;
            if self.since_commit >= self.config.batch_size {
                self.commit(store)?;
                if let Some(cb) = progress.as_mut() {
                    cb(&self.summary);
                }
            }
        }
        if !self.summary.stopped {
            while !self.retry_queue.is_empty() {
                self.run_due_retries(handler, true);
            }
        } else if self.checkpoint_name.is_none() {
            // Standard input cannot be read again: a stopped run dead-letters
            // the lines still waiting for a retry, with their last error
            // (retryable, so a replay can send them on).
            for p in std::mem::take(&mut self.retry_queue).into_sorted_vec() {
                let attempts = p.state.attempts();
                self.dead_letter(p.line, p.payload, &p.last_failure, attempts);
            }
        }
        // (A stopped file run keeps its retries in the checkpoint: the rerun
        // reads those lines again and retries them.)
        self.commit(store)?;
        if let Some(cb) = progress.as_mut() {
            cb(&self.summary);
        }
        Ok(())
    }

    /// Runs the retries that are due; with `wait`, sleeps until the earliest
    /// one is due first.
    fn run_due_retries<H: Handler>(&mut self, handler: &mut H, wait: bool) {
        if wait && let Some(first) = self.retry_queue.peek() {
            let now = Instant::now();
            if first.due > now {
                std::thread::sleep(first.due - now);
            }
        }
        let now = Instant::now();
        while self.retry_queue.peek().is_some_and(|p| p.due <= now) {
            if let Some(p) = self.retry_queue.pop() {
                self.summary.retries += 1;
                self.counters.retries.increment(1);
                self.attempt(handler, p.line, p.byte, &p.payload, Some(p.state));
            }
        }
    }

    fn attempt<H: Handler>(
        &mut self,
        handler: &mut H,
        line: u64,
        byte: u64,
        payload: &[u8],
        state: Option<RetryState>,
    ) {
        let retried = state.is_some();
        let mut state = state.unwrap_or_else(|| self.config.retry.start(line));
        match handler.handle(payload, state.attempts() + 1) {
            Ok(out) => {
                self.write_output(&out);
                self.summary.delivered += 1;
                self.counters.delivered.increment(1);
                if retried {
                    self.summary.recovered_by_retry += 1;
                }
            }
            Err(failure) => match state.on_failure(failure.retryable) {
                // Copies of the payload only for the rare records that fail:
                // the read buffer is reused for every line.
                Decision::RetryAfter(delay) => self.retry_queue.push(Pending {
                    line,
                    byte,
                    payload: payload.to_vec(),
                    state,
                    due: Instant::now() + delay.min(Duration::from_secs(3600)),
                    last_failure: failure,
                }),
                Decision::GiveUp(_) => {
                    let attempts = state.attempts();
                    self.dead_letter(line, payload.to_vec(), &failure, attempts);
                }
            },
        }
    }

    fn write_output(&mut self, out: &[u8]) {
        // A failed write fails the next commit (see `LineWriter`), before
        // anything after it is checkpointed.
        self.output.write_line(out);
    }

    fn dead_letter(&mut self, line: u64, payload: Vec<u8>, failure: &Failure, attempts: u32) {
        let mut letter =
            DeadLetter::new(format!("file:{}:{line}", self.input_id), payload, failure);
        letter.attempts = attempts;
        letter.source = Source {
            system: match self.config.input {
                Input::File(_) => "file".into(),
                Input::Stdin => "stdin".into(),
            },
            topic: Some(self.config.topic.clone()),
            partition: Some(0),
            offset: Some(line as i64),
            timestamp: None,
        };
        *self
            .summary
            .by_error_class
            .entry(failure.error_class.clone())
            .or_default() += 1;
        self.summary.dead_lettered += 1;
        self.counters.dead_lettered.increment(1);
        self.dead.push(Entry {
            dlq: self.config.dlq.clone(),
            letter,
            status: Status::Pending,
        });
    }

    fn commit<S: DlqStore>(&mut self, store: &mut S) -> Result<(), ProcessError> {
        let out_path = &self.config.output;
        self.output
            .flush()
            .map_err(io_err("writing output", out_path))?;
        self.output
            .file()
            .sync_data()
            .map_err(io_err("syncing output", out_path))?;
        let checkpoint = Checkpoint {
            next_line: self.next_line,
            next_byte: self.next_byte,
            in_flight: {
                let mut v: Vec<(u64, u64)> =
                    self.retry_queue.iter().map(|p| (p.line, p.byte)).collect();
                v.sort_unstable();
                v
            },
            output_len: self.output.len(),
        };
        let text = serde_json::to_string(&checkpoint).unwrap_or_default();
        let report = store.commit(Batch {
            append: &self.dead,
            settle: &[],
            checkpoint: self.checkpoint_name.as_deref().map(|n| (n, text.as_str())),
            ..Batch::default()
        })?;
        self.summary.dlq_duplicates += report.duplicates as u64;
        self.dead.clear();
        self.since_commit = 0;
        Ok(())
    }
}

/// Where input lines come from.
enum LineSource {
    /// A file, read in place (its byte offsets go into checkpoints).
    File(BufReader<File>),
    /// Standard input, read by a thread of its own so that a stop request
    /// is seen while the input is idle (a pipe that stays open).
    Stdin(mpsc::Receiver<io::Result<Vec<u8>>>),
}

/// What [`LineSource::read_line`] found.
enum ReadLine {
    /// A line of this many bytes, its newline included.
    Line(usize),
    /// The end of the input.
    End,
    /// A stop was asked for while waiting for a line.
    Stopped,
}

impl LineSource {
    fn stdin() -> LineSource {
        let (tx, rx) = mpsc::sync_channel(1024);
        std::thread::spawn(move || {
            let mut input = BufReader::with_capacity(1 << 20, io::stdin());
            loop {
                let mut line = Vec::new();
                let result = input.read_until(b'\n', &mut line);
                let done = !matches!(result, Ok(n) if n > 0);
                // A closed receiver means the run ended: stop reading.
                if tx.send(result.map(|_| line)).is_err() || done {
                    return;
                }
            }
        });
        LineSource::Stdin(rx)
    }

    /// Reads the next line into `buf`, newline included.
    fn read_line(&mut self, buf: &mut Vec<u8>, stop: &dyn Fn() -> bool) -> io::Result<ReadLine> {
        match self {
            LineSource::File(reader) => Ok(match reader.read_until(b'\n', buf)? {
                0 => ReadLine::End,
                n => ReadLine::Line(n),
            }),
            LineSource::Stdin(lines) => loop {
                match lines.recv_timeout(Duration::from_millis(100)) {
                    Ok(Ok(line)) if line.is_empty() => return Ok(ReadLine::End),
                    Ok(Ok(line)) => {
                        buf.extend_from_slice(&line);
                        return Ok(ReadLine::Line(line.len()));
                    }
                    Ok(Err(e)) => return Err(e),
                    Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(ReadLine::End),
                    Err(mpsc::RecvTimeoutError::Timeout) if stop() => return Ok(ReadLine::Stopped),
                    Err(mpsc::RecvTimeoutError::Timeout) => {}
                }
            },
        }
    }
}

/// The output file as the processor writes it: whole lines, its length as
/// the checkpoint records it, and the first write error kept until the
/// next flush reports it.
///
/// `BufWriter` alone is not enough: a flush that fails inside `write_all`
/// returns the error once, and a later flush that succeeds hides it while
/// the line is gone.
struct LineWriter<W: Write> {
    inner: BufWriter<W>,
    /// Bytes the file holds once everything written so far is flushed.
    len: u64,
    /// The first write error since the last flush.
    failed: Option<io::Error>,
}

impl<W: Write> LineWriter<W> {
    fn new(inner: BufWriter<W>, len: u64) -> Self {
        LineWriter {
            inner,
            len,
            failed: None,
        }
    }

    /// Appends `line` and a newline. After a failed write nothing more is
    /// written: the run fails at its next flush.
    fn write_line(&mut self, line: &[u8]) {
        if self.failed.is_some() {
            return;
        }
        let written = self
            .inner
            .write_all(line)
            .and_then(|()| self.inner.write_all(b"\n"));
        match written {
            Ok(()) => self.len += line.len() as u64 + 1,
            Err(e) => self.failed = Some(e),
        }
    }

    /// Flushes, or returns the first error of a write since the last flush.
    fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.failed.take() {
            return Err(e);
        }
        self.inner.flush()
    }

    fn len(&self) -> u64 {
        self.len
    }
}

impl LineWriter<File> {
    fn file(&self) -> &File {
        self.inner.get_ref()
    }
}

fn checkpoint_name_for(path: &Path, dlq: &str) -> String {
    checkpoint_name(path, dlq)
}

fn input_label(input: &Input) -> String {
    match input {
        Input::File(p) => p.display().to_string(),
        Input::Stdin => "<stdin>".into(),
    }
}

fn strip_newline(buf: &mut Vec<u8>) {
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
}

/// Reads a whole file as lines split on `\n` (the newline removed), as the
/// processor sees them.
pub fn read_lines(path: &Path) -> io::Result<Vec<Vec<u8>>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    let mut lines: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if data.last() == Some(&b'\n') || data.is_empty() {
        lines.pop();
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::store::Selection;

    fn fast_retry(max_attempts: u32) -> RetryPolicy {
        RetryPolicy {
            max_attempts,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
            jitter: false,
            ..RetryPolicy::default()
        }
    }

    /// Fails lines starting with `bad` for good, and lines starting with
    /// `flaky` on their first `n` attempts.
    fn handler(n: u32) -> impl FnMut(&[u8], u32) -> Result<Vec<u8>, Failure> {
        move |p: &[u8], attempt| {
            if p.starts_with(b"bad") {
                Err(Failure::permanent("validate", "test.bad", "bad line"))
            } else if p.starts_with(b"flaky") && attempt <= n {
                Err(Failure::transient("sink", "test.timeout", "timed out"))
            } else {
                Ok(p.to_vec())
            }
        }
    }

    fn setup(lines: &[&[u8]]) -> (tempfile::TempDir, ProcessConfig) {
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("in.ndjson");
        let mut data = Vec::new();
        for l in lines {
            data.extend_from_slice(l);
            data.push(b'\n');
        }
        std::fs::write(&input, data).expect("write");
        let mut cfg = ProcessConfig::new(
            Input::File(input),
            dir.path().join("out.ndjson"),
            "dlq.t",
            "t",
        );
        cfg.retry = fast_retry(3);
        cfg.batch_size = 2;
        (dir, cfg)
    }

    #[test]
    fn good_lines_out_bad_lines_dead_lettered_flaky_recovered() {
        let lines: Vec<&[u8]> = vec![b"a", b"bad1", b"flaky1", b"", b"\xff\xfe", b"b"];
        let (_dir, cfg) = setup(&lines);
        let mut store = MemoryStore::new();
        let s = run(&cfg, &mut handler(2), &mut store, None).expect("run");
        assert_eq!(s.records_in, 6);
        assert_eq!(s.delivered, 5);
        assert_eq!(s.dead_lettered, 1);
        assert_eq!(s.recovered_by_retry, 1);
        assert_eq!(s.retries, 2);
        let out = read_lines(&cfg.output).expect("out");
        let mut sorted = out.clone();
        sorted.sort();
        let mut want: Vec<Vec<u8>> = vec![
            b"a".to_vec(),
            b"flaky1".to_vec(),
            Vec::new(),
            b"\xff\xfe".to_vec(),
            b"b".to_vec(),
        ];
        want.sort();
        assert_eq!(sorted, want);
        let dead: Vec<_> = store
            .scan_all(&Selection::pending(Some("dlq.t")), 10)
            .collect::<Result<_, _>>()
            .expect("scan");
        assert_eq!(dead.len(), 1);
        assert_eq!(dead[0].letter.payload, b"bad1");
        assert_eq!(dead[0].letter.source.offset, Some(1));
        assert_eq!(dead[0].letter.attempts, 1, "permanent: no retries");
    }

    #[test]
    fn exhausted_retries_go_to_the_dlq_as_retryable() {
        let (_dir, cfg) = setup(&[b"flaky-forever"]);
        let mut store = MemoryStore::new();
        let s = run(&cfg, &mut handler(99), &mut store, None).expect("run");
        assert_eq!((s.delivered, s.dead_lettered, s.retries), (0, 1, 2));
        let r = store
            .scan_all(&Selection::pending(None), 10)
            .next()
            .expect("one")
            .expect("ok");
        assert!(r.letter.retryable);
        assert_eq!(r.letter.attempts, 3);
    }

    #[test]
    fn rerun_after_completion_does_nothing_twice() {
        let (_dir, cfg) = setup(&[b"a", b"bad", b"c"]);
        let mut store = MemoryStore::new();
        run(&cfg, &mut handler(0), &mut store, None).expect("run");
        let s = run(&cfg, &mut handler(0), &mut store, None).expect("rerun");
        assert_eq!(s.records_in, 0);
        assert_eq!(read_lines(&cfg.output).expect("out").len(), 2);
        assert_eq!(store.stats().expect("stats")[0].total, 1);
    }

    #[test]
    fn resume_cuts_uncommitted_output_and_rereads_in_flight_lines() {
        let (_dir, cfg) = setup(&[b"a", b"flaky", b"c", b"d"]);
        // Simulate a crash: a checkpoint after line 3 with `flaky` still in
        // flight, and output that has lines beyond the checkpoint.
        std::fs::write(&cfg.output, b"a\nc\nd\nGARBAGE-AFTER-CHECKPOINT\n").expect("write");
        let mut store = MemoryStore::new();
        let Input::File(input) = &cfg.input else {
            unreachable!()
        };
        let cp = Checkpoint {
            next_line: 3,
            next_byte: 10,
            in_flight: vec![(1, 2)],
            output_len: 4,
        };
        let text = serde_json::to_string(&cp).expect("json");
        let name = checkpoint_name(input, "dlq.t");
        store
            .commit(Batch {
                checkpoint: Some((&name, &text)),
                ..Batch::default()
            })
            .expect("commit");
        let s = run(&cfg, &mut handler(1), &mut store, None).expect("resume");
        assert_eq!(s.resumed_from_line, 3);
        assert_eq!(s.records_in, 2, "the in-flight line and line 3");
        let out = read_lines(&cfg.output).expect("out");
        assert_eq!(
            out,
            vec![
                b"a".to_vec(),
                b"c".to_vec(),
                b"d".to_vec(),
                b"flaky".to_vec()
            ]
        );
    }

    #[test]
    fn a_truncated_output_is_refused_at_resume_with_the_missing_range() {
        let (_dir, cfg) = setup(&[b"a", b"b", b"c"]);
        let mut store = MemoryStore::new();
        run(&cfg, &mut handler(0), &mut store, None).expect("run");
        // Someone cuts the output after the run: "a\nb\nc\n" becomes "a\n".
        std::fs::write(&cfg.output, b"a\n").expect("truncate");
        let err = run(&cfg, &mut handler(0), &mut store, None).expect_err("refused");
        match &err {
            ProcessError::OutputShorterThanCheckpoint { len, expected, .. } => {
                assert_eq!((*len, *expected), (2, 6));
            }
            other => panic!("unexpected error {other}"),
        }
        let text = err.to_string();
        assert!(text.contains("out.ndjson"), "{text}");
        assert!(text.contains("bytes 2..6"), "{text}");
        assert_eq!(
            std::fs::read(&cfg.output).expect("out"),
            b"a\n",
            "left as it was"
        );
    }

    /// Fails its first write with `ENOSPC`, then accepts everything.
    struct FailsOnce {
        failed: bool,
        written: Vec<u8>,
    }

    impl Write for FailsOnce {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if !self.failed {
                self.failed = true;
                return Err(io::Error::from(io::ErrorKind::StorageFull));
            }
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_fails_the_next_flush_even_when_later_writes_succeed() {
        let inner = FailsOnce {
            failed: false,
            written: Vec::new(),
        };
        // A buffer smaller than the line, so the write goes straight through
        // inside `write_all` (where a plain BufWriter loses the error).
        let mut w = LineWriter::new(BufWriter::with_capacity(4, inner), 0);
        w.write_line(b"first line");
        w.write_line(b"second");
        let err = w.flush().expect_err("the lost line is reported");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(w.len(), 0, "nothing counted as written after the failure");
    }

    #[test]
    fn a_stopped_file_run_commits_its_retries_and_the_rerun_finishes_without_duplicates() {
        let lines: Vec<&[u8]> = vec![b"a", b"flaky", b"b", b"bad", b"c", b"d"];
        let (_dir, mut cfg) = setup(&lines);
        cfg.retry = RetryPolicy {
            initial_backoff: Duration::from_secs(3600),
            max_backoff: Duration::from_secs(3600),
            ..fast_retry(3)
        };
        let stop = Arc::new(AtomicBool::new(false));
        cfg.stop = Some(Arc::clone(&stop));
        let mut store = MemoryStore::new();
        // The handler asks to stop once it has seen line 3 (`bad`): the run
        // must end without waiting an hour for `flaky`'s retry.
        let flag = Arc::clone(&stop);
        let mut first = |p: &[u8], attempt: u32| {
            if p == b"bad" {
                flag.store(true, Ordering::SeqCst);
            }
            handler(u32::MAX)(p, attempt)
        };
        let s = run(&cfg, &mut first, &mut store, None).expect("stopped run");
        assert!(s.stopped);
        assert_eq!(s.records_in, 4, "no line read after the stop");
        assert_eq!(s.dead_lettered, 1);
        let out = read_lines(&cfg.output).expect("out");
        assert_eq!(out, vec![b"a".to_vec(), b"b".to_vec()]);

        cfg.stop = None;
        cfg.retry = fast_retry(3);
        let s = run(&cfg, &mut handler(0), &mut store, None).expect("rerun");
        assert!(!s.stopped);
        assert_eq!(s.records_in, 3, "the retried line and the two unread ones");
        let mut out = read_lines(&cfg.output).expect("out");
        out.sort();
        let want: Vec<Vec<u8>> = [&b"a"[..], b"b", b"c", b"d", b"flaky"]
            .iter()
            .map(|l| l.to_vec())
            .collect();
        assert_eq!(out, want, "every good line once");
        assert_eq!(
            store.stats().expect("stats")[0].total,
            1,
            "`bad` dead-lettered once"
        );
    }
}
