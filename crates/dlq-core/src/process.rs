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
    reader: Box<dyn BufRead>,
    output: BufWriter<File>,
    output_len: u64,
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
        let reader: Box<dyn BufRead> = match &config.input {
            Input::Stdin => Box::new(BufReader::with_capacity(1 << 20, io::stdin())),
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
                Box::new(BufReader::with_capacity(1 << 20, file))
            }
        };
        // Lines written after the last commit belong to no checkpoint: cut
        // them, they are processed again below.
        let len = out_file
            .metadata()
            .map_err(io_err("reading output", out_path))?
            .len();
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
            output,
            output_len,
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
        loop {
            self.run_due_retries(handler, false);
            while self.retry_queue.len() >= self.config.max_in_flight.max(1) {
                self.run_due_retries(handler, true);
            }
            buf.clear();
            let read =
                self.reader
                    .read_until(b'\n', &mut buf)
                    .map_err(|source| ProcessError::Io {
                        what: "reading input",
                        path: input_label(&self.config.input),
                        source,
                    })?;
            if read == 0 {
                break;
            }
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
        while !self.retry_queue.is_empty() {
            self.run_due_retries(handler, true);
        }
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
                }),
                Decision::GiveUp(_) => {
                    let attempts = state.attempts();
                    self.dead_letter(line, payload.to_vec(), &failure, attempts);
                }
            },
        }
    }

    fn write_output(&mut self, out: &[u8]) {
        // Errors surface at the flush in `commit`, which fails the run
        // before anything is checkpointed; BufWriter keeps the first one.
        let _ = self.output.write_all(out);
        let _ = self.output.write_all(b"\n");
        self.output_len += out.len() as u64 + 1;
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
            .get_ref()
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
            output_len: self.output_len,
        };
        let text = serde_json::to_string(&checkpoint).unwrap_or_default();
        let report = store.commit(Batch {
            append: &self.dead,
            settle: &[],
            checkpoint: self.checkpoint_name.as_deref().map(|n| (n, text.as_str())),
        })?;
        self.summary.dlq_duplicates += report.duplicates as u64;
        self.dead.clear();
        self.since_commit = 0;
        Ok(())
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
}
