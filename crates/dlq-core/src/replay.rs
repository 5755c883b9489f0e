//! Reprocessing: select dead letters, fix them, deliver them again, settle them.
//!
//! Delivery semantics: a record is settled only after the target has made its
//! delivery durable ([`ReplayTarget::flush`]), in the same store commit as
//! the target's checkpoint. Targets that can cut what they wrote after their
//! last checkpoint (the file targets) are thus exactly-once across crashes;
//! others are at-least-once. Running the same replay twice delivers each
//! record once, because the first run settled them.
//!
//! Loops are prevented by lineage: a record the target rejects again comes
//! back to its DLQ as a new dead letter with `replays + 1` and `replay_of`
//! set, and past `max_replays` it is *parked* instead of pending, so no
//! replay picks it up again by accident.

use crate::Failure;
use crate::envelope::{
    DeadLetter, FIRST_FAILED_AT_HEADER, Header, REPLAY_OF_HEADER, REPLAYS_HEADER,
};
use crate::fix::Fix;
use crate::process::Handler;
use crate::store::{
    Batch, DlqStore, Entry, Output, Selection, Settle, Status, StoreError, StoredRecord, Submitted,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where replayed records go.
pub trait ReplayTarget {
    /// A name for reports, e.g. `file:/tmp/out.ndjson`.
    fn name(&self) -> String;

    /// Delivers one record. `Err(failure)` means the target rejected this
    /// record (it returns to its DLQ); an `io::Error` means the target
    /// itself failed and the run stops with nothing settled.
    fn deliver(&mut self, letter: &DeadLetter, payload: &[u8]) -> io::Result<Result<(), Failure>>;

    /// Makes every delivery so far durable, and returns the checkpoint
    /// `(name, value)` to commit with the settlements, if the target has one.
    fn flush(&mut self) -> io::Result<Option<(String, String)>>;
}

/// The slowest `--rate` accepted: one record every 1,000 seconds.
///
/// Slower rates are almost certainly a typo (`1e-3` meant as `1e3`), and a
/// replay paced slower than this would hold its slot for days.
pub const MIN_RATE: f64 = 1e-3;

/// The fastest `--rate` accepted, in records per second: far above what
/// any target takes, so it only refuses nonsense (`1e300`).
pub const MAX_RATE: f64 = 1e9;

/// A [`ReplayOptions`] value a replay cannot run with; see
/// [`ReplayOptions::validate`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayOptionsError {
    /// `rate` is not a number of records per second in
    /// [`MIN_RATE`]..=[`MAX_RATE`].
    #[error(
        "rate must be between {MIN_RATE} and {MAX_RATE} records per second (one record every 1000 s at most), got {rate}"
    )]
    Rate {
        /// The rate given.
        rate: f64,
    },
    /// `batch_size` is 0.
    #[error("batch size must be at least 1 record")]
    BatchSize,
    /// The fix's limits are out of range (see
    /// [`crate::fix::FixLimits::validate`]).
    #[error("{reason}")]
    FixLimits {
        /// What is wrong.
        reason: String,
    },
}

/// How a replay runs.
#[derive(Debug)]
pub struct ReplayOptions {
    /// Which records (pending ones of a DLQ, usually).
    pub selection: Selection,
    /// A jq fix applied to each payload first.
    pub fix: Option<Fix>,
    /// At most this many records per second, in [`MIN_RATE`]..=[`MAX_RATE`]
    /// (see [`ReplayOptions::validate`]); a dry run ignores it.
    pub rate: Option<f64>,
    /// At most this many records in all.
    pub limit: Option<u64>,
    /// Show what would happen; change nothing.
    pub dry_run: bool,
    /// A record that failed more replays than this is parked.
    pub max_replays: u32,
    /// Records per store commit.
    pub batch_size: usize,
    /// Set from outside (a signal handler) to stop early: the replay
    /// commits what it delivered and ends; the rest stays pending.
    pub stop: Option<Arc<AtomicBool>>,
}

impl ReplayOptions {
    /// Whether [`ReplayOptions::stop`] was set.
    pub fn stop_asked(&self) -> bool {
        self.stop.as_ref().is_some_and(|s| s.load(Ordering::SeqCst))
    }

    /// Replays the pending records of one DLQ with defaults.
    pub fn for_dlq(dlq: &str) -> Self {
        ReplayOptions {
            selection: Selection::pending(Some(dlq)),
            fix: None,
            rate: None,
            limit: None,
            dry_run: false,
            max_replays: 3,
            batch_size: 500,
            stop: None,
        }
    }

    /// Checks the options a user can set, before any record is read: the
    /// CLI (exit code 2) and `dlq serve` (HTTP 400) call this on what they
    /// built from the user's input.
    ///
    /// # Errors
    ///
    /// [`ReplayOptionsError::Rate`] for a rate that is not a finite number
    /// in [`MIN_RATE`]..=[`MAX_RATE`]; [`ReplayOptionsError::BatchSize`]
    /// for a batch size of 0; [`ReplayOptionsError::FixLimits`] for a fix
    /// whose limits are out of range.
    pub fn validate(&self) -> Result<(), ReplayOptionsError> {
        if let Some(rate) = self.rate
            && !(MIN_RATE..=MAX_RATE).contains(&rate)
        {
            return Err(ReplayOptionsError::Rate { rate });
        }
        if self.batch_size == 0 {
            return Err(ReplayOptionsError::BatchSize);
        }
        if let Some(fix) = &self.fix {
            fix.limits()
                .validate()
                .map_err(|e| ReplayOptionsError::FixLimits {
                    reason: e.to_string(),
                })?;
        }
        Ok(())
    }

    /// Paces a replay: sleeps as needed before the `n`th record (see
    /// [`pace`]). A dry run delivers nothing, so it never sleeps.
    pub fn pace(&self, n: u64, started: Instant) {
        if !self.dry_run {
            pace(self.rate, n, started);
        }
    }
}

/// What a dry run shows for one record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Preview {
    /// The DLQ.
    pub dlq: String,
    /// The record id.
    pub id: String,
    /// The payload now (lossy UTF-8 for display).
    pub before: String,
    /// The payload after the fix, or the fix error.
    pub after: Result<String, String>,
    /// Whether the fix changed the payload.
    pub changed: bool,
}

/// What a replay did.
#[derive(Debug, Default, Clone, PartialEq, Serialize)]
pub struct ReplayReport {
    /// Records selected (within the limit).
    pub selected: u64,
    /// Records delivered and settled as replayed.
    pub replayed: u64,
    /// Records the target rejected again, returned to their DLQ.
    pub failed_again: u64,
    /// Of those, how many were parked (past `max_replays`).
    pub parked: u64,
    /// Records whose fix failed; they stay pending, untouched.
    pub fix_failed: u64,
    /// Fix errors by message (a few), to show the user.
    pub fix_errors: BTreeMap<String, u64>,
    /// Dry run: what would happen to each record.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub previews: Vec<Preview>,
    /// The target.
    pub target: String,
    /// Records sent to each target topic or queue (a dry run: that would be
    /// sent), by name: a replay to the records' original topics or queues
    /// names every one it wrote to. Empty for files and pipelines.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub targets: BTreeMap<String, u64>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Whether the replay stopped on request before the end of its
    /// selection (what it did is committed; the rest stays pending).
    pub stopped: bool,
}

/// A replay failed part-way; what was settled stays settled, the rest stays
/// pending, and running it again continues.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    /// The store failed.
    #[error("DLQ store: {0}")]
    Store(#[from] StoreError),
    /// The target failed.
    #[error("replay target {target}: {source}")]
    Target {
        /// The target.
        target: String,
        /// The error.
        source: io::Error,
    },
}

/// Runs a replay. `progress` is called after each commit.
pub fn run<S: DlqStore, T: ReplayTarget>(
    store: &mut S,
    target: &mut T,
    options: &ReplayOptions,
    mut progress: Option<&mut dyn FnMut(&ReplayReport)>,
) -> Result<ReplayReport, ReplayError> {
    let target_err = |target: &T| {
        let name = target.name();
        move |source| ReplayError::Target {
            target: name,
            source,
        }
    };
    let mut report = ReplayReport {
        target: target.name(),
        dry_run: options.dry_run,
        ..ReplayReport::default()
    };
    // Successors written by this run must not be replayed by this run.
    let mut written_now: HashSet<(String, String)> = HashSet::new();
    let started = Instant::now();
    let mut cursor = None;
    let page_size = options.batch_size.max(1);
    'pages: loop {
        let page = store.scan(&options.selection, cursor.as_ref(), page_size)?;
        let mut appends = Vec::new();
        let mut settles = Vec::new();
        for record in page.records {
            if options.stop_asked() {
                report.stopped = true;
            }
            if report.stopped || options.limit.is_some_and(|l| report.selected >= l) {
                commit(store, target, &appends, &settles, &mut report)
                    .map_err(|e| e.into_replay(target_err(target)))?;
                break 'pages;
            }
            if written_now.contains(&(record.dlq.clone(), record.letter.id.clone())) {
                continue;
            }
            report.selected += 1;
            options.pace(report.selected, started);
            let letter = &record.letter;
            let Some(payload) = fixed_payload(&record, options, &mut report) else {
                continue;
            };
            match target
                .deliver(letter, &payload)
                .map_err(target_err(target))?
            {
                Ok(()) => report.replayed += 1,
                Err(failure) => {
                    let successor = letter.refailed(payload, &failure);
                    let status = if successor.replays > options.max_replays {
                        report.parked += 1;
                        Status::Parked
                    } else {
                        Status::Pending
                    };
                    report.failed_again += 1;
                    written_now.insert((record.dlq.clone(), successor.id.clone()));
                    appends.push(Entry {
                        dlq: record.dlq.clone(),
                        letter: successor,
                        status,
                    });
                }
            }
            settles.push(Settle {
                dlq: record.dlq.clone(),
                id: letter.id.clone(),
                outcome: Status::Replayed,
            });
        }
        commit(store, target, &appends, &settles, &mut report)
            .map_err(|e| e.into_replay(target_err(target)))?;
        if let Some(cb) = progress.as_mut() {
            cb(&report);
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(report)
}

/// A replay whose target is a destination of the store itself (a topic of
/// the Kafka cluster the store lives on): see [`run_to_store`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOutputs {
    /// Every record goes here; `None`: each record goes back to the topic
    /// it came from (its source topic).
    pub to: Option<String>,
    /// How reports and errors name a destination: `<scheme>:<name>`
    /// (`kafka:rss.events`).
    pub scheme: String,
    /// What a destination is called in errors (`topic`, `queue`).
    pub kind: String,
}

impl StoreOutputs {
    /// Replay outputs to topics of a Kafka store: to `to`, else to each
    /// record's source topic.
    pub fn kafka(to: Option<&str>) -> Self {
        StoreOutputs {
            to: to.map(str::to_owned),
            scheme: "kafka".to_owned(),
            kind: "topic".to_owned(),
        }
    }

    fn name(&self, destination: &str) -> String {
        format!("{}:{destination}", self.scheme)
    }
}

/// Runs a replay to destinations of the store itself: each selected record,
/// fixed, goes out as an [`Output`] in the same batch as its settlement, so
/// that the store commits both together ([`Capabilities::outputs`](crate::store::Capabilities::outputs): exactly
/// once) or writes the output first ([`Capabilities::outputs_before_commit`](crate::store::Capabilities::outputs_before_commit):
/// at least once). Pages are submitted with [`DlqStore::submit`] and the
/// next page is read while they travel; a paced replay completes each page
/// before the next.
///
/// Each record goes to `outputs.to`, else to its source topic, with its key
/// and headers, the lineage headers added ([`REPLAY_OF_HEADER`],
/// [`REPLAYS_HEADER`], [`FIRST_FAILED_AT_HEADER`]), in its source partition
/// where it had one (the store takes it modulo the destination's partition
/// count). A record without a source topic and without `to` stays pending,
/// counted with the fix errors. A destination that does not exist fails the
/// replay with [`ReplayError::Target`] naming it before anything is sent to
/// it (a dry run too). `progress` is called after each completed commit.
///
/// # Errors
///
/// [`ReplayError::Target`] for a missing destination or a store that takes
/// no outputs; [`ReplayError::Store`] when a commit fails (what completed
/// before stays settled; the rest stays pending).
pub fn run_to_store<S: DlqStore>(
    store: &mut S,
    outputs: &StoreOutputs,
    options: &ReplayOptions,
    mut progress: Option<&mut dyn FnMut(&ReplayReport)>,
) -> Result<ReplayReport, ReplayError> {
    let mut report = ReplayReport {
        dry_run: options.dry_run,
        ..ReplayReport::default()
    };
    if !store.capabilities().takes_outputs() {
        return Err(ReplayError::Target {
            target: outputs.name(outputs.to.as_deref().unwrap_or("*")),
            source: io::Error::other(
                "this store cannot write replayed records to its own destinations",
            ),
        });
    }
    let mut known: HashMap<String, bool> = HashMap::new();
    if let Some(to) = &outputs.to {
        check_destination(store, outputs, to, &mut known)?;
    }
    let started = Instant::now();
    let page_size = options.batch_size.max(1);
    let mut in_flight: usize = 0;
    let mut page = store.scan(&options.selection, None, page_size)?;
    let outcome: Result<(), ReplayError> = loop {
        let mut built = Vec::new();
        let mut settles = Vec::new();
        let mut stop = false;
        let mut failed = None;
        for record in std::mem::take(&mut page.records) {
            if options.stop_asked() {
                report.stopped = true;
            }
            if report.stopped || options.limit.is_some_and(|l| report.selected >= l) {
                stop = true;
                break;
            }
            match output_of(
                store,
                outputs,
                record,
                options,
                &mut known,
                &mut report,
                started,
            ) {
                Ok(Some((output, settle))) => {
                    built.push(output);
                    settles.push(settle);
                }
                Ok(None) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        if !settles.is_empty() {
            let batch = Batch {
                settle: &settles,
                outputs: &built,
                ..Batch::default()
            };
            match store.submit(batch) {
                Ok(Submitted::Done(r)) => {
                    report.replayed += r.settled as u64;
                    if let Some(cb) = progress.as_mut() {
                        cb(&report);
                    }
                }
                Ok(Submitted::Pending(_)) => in_flight += 1,
                Err(e) => break Err(e.into()),
            }
        }
        if let Some(e) = failed {
            break Err(e);
        }
        // The next page is read while this one travels.
        let next = match page.next.take().filter(|_| !stop) {
            Some(cursor) => match store.scan(&options.selection, Some(&cursor), page_size) {
                Ok(p) => Some(p),
                Err(e) => break Err(e.into()),
            },
            None => None,
        };
        // A paced replay completes each page: the next one is slow to build
        // (it sleeps to hold the rate), and a commit left open meanwhile
        // would hold back readers that wait for it.
        let wait = next.is_none() || options.rate.is_some();
        if let Err(e) = drain(store, wait, &mut in_flight, &mut report, &mut progress) {
            break Err(e);
        }
        match next {
            Some(p) => page = p,
            None => break Ok(()),
        }
    };
    if let Err(e) = outcome {
        // What is on its way still completes (or fails) before the error
        // is returned, so the report says what was settled.
        let _ = drain(store, true, &mut in_flight, &mut report, &mut progress);
        return Err(e);
    }
    report.target = match (&outputs.to, report.targets.is_empty()) {
        (Some(t), _) => outputs.name(t),
        (None, true) => outputs.scheme.clone(),
        (None, false) => {
            let names: Vec<&str> = report.targets.keys().map(String::as_str).collect();
            outputs.name(&names.join(","))
        }
    };
    Ok(report)
}

/// Counts the commits the store reports completed (all of them, `wait`).
fn drain<S: DlqStore>(
    store: &mut S,
    wait: bool,
    in_flight: &mut usize,
    report: &mut ReplayReport,
    progress: &mut Option<&mut dyn FnMut(&ReplayReport)>,
) -> Result<(), ReplayError> {
    if *in_flight == 0 {
        return Ok(());
    }
    let done = store.completed(wait);
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            // Failed commits are gone from the store's queue, and so is
            // everything submitted after them.
            *in_flight = 0;
            return Err(e.into());
        }
    };
    for (_, r) in &done {
        report.replayed += r.settled as u64;
    }
    *in_flight = in_flight.saturating_sub(done.len());
    if wait {
        *in_flight = 0;
    }
    if !done.is_empty()
        && let Some(cb) = progress.as_mut()
    {
        cb(report);
    }
    Ok(())
}

/// Fails with [`ReplayError::Target`] when `destination` does not exist
/// (asked once per destination).
fn check_destination<S: DlqStore>(
    store: &S,
    outputs: &StoreOutputs,
    destination: &str,
    known: &mut HashMap<String, bool>,
) -> Result<(), ReplayError> {
    let exists = match known.get(destination) {
        Some(&e) => e,
        None => {
            let e = store.has_destination(destination)?;
            known.insert(destination.to_owned(), e);
            e
        }
    };
    if exists {
        return Ok(());
    }
    Err(ReplayError::Target {
        target: outputs.name(destination),
        source: io::Error::other(format!(
            "no such {} (create it, or name another target with --to {}:NAME)",
            outputs.kind, outputs.scheme
        )),
    })
}

/// The output and settlement of one selected record; `None` when it is not
/// sent (a dry run, a failed fix, nowhere to send it).
fn output_of<S: DlqStore>(
    store: &S,
    outputs: &StoreOutputs,
    mut record: StoredRecord,
    options: &ReplayOptions,
    known: &mut HashMap<String, bool>,
    report: &mut ReplayReport,
    started: Instant,
) -> Result<Option<(Output, Settle)>, ReplayError> {
    report.selected += 1;
    options.pace(report.selected, started);
    let Some(destination) = outputs
        .to
        .clone()
        .or_else(|| record.letter.source.topic.clone())
    else {
        report_fix_error(
            report,
            format!(
                "no original topic in the record: replay it with --to {}:NAME",
                outputs.scheme
            ),
        );
        return Ok(None);
    };
    check_destination(store, outputs, &destination, known)?;
    // A null value (a tombstone) stays null unless a fix gives it one.
    let null = record.letter.null_payload && options.fix.is_none();
    let payload = if options.fix.is_none() && !options.dry_run {
        // Nothing to fix or show: the payload moves, uncopied.
        std::mem::take(&mut record.letter.payload)
    } else {
        match fixed_payload(&record, options, report) {
            Some(p) => p,
            None => {
                if options.dry_run {
                    *report.targets.entry(destination).or_default() += 1;
                }
                return Ok(None);
            }
        }
    };
    let StoredRecord { dlq, letter, .. } = record;
    *report.targets.entry(destination.clone()).or_default() += 1;
    let mut headers = letter.headers;
    let lineage = [
        (REPLAY_OF_HEADER, letter.id.clone()),
        (REPLAYS_HEADER, letter.replays.to_string()),
        (
            FIRST_FAILED_AT_HEADER,
            crate::envelope::format_timestamp(&letter.first_failed_at),
        ),
    ];
    for (name, value) in lineage {
        headers.push(Header {
            name: name.to_owned(),
            value: Some(value.into_bytes()),
        });
    }
    let output = Output {
        destination,
        partition: letter.source.partition.filter(|p| *p >= 0),
        key: letter.key,
        value: (!null).then_some(payload),
        headers,
    };
    let settle = Settle {
        dlq,
        id: letter.id,
        outcome: Status::Replayed,
    };
    Ok(Some((output, settle)))
}

/// The payload to replay for a selected record: the fix applied. Returns
/// `None` when there is nothing to deliver: in a dry run (the preview is
/// recorded instead) or when the fix fails (counted; the record stays
/// pending). Shared by every replay loop, whatever the target.
pub fn fixed_payload(
    record: &crate::store::StoredRecord,
    options: &ReplayOptions,
    report: &mut ReplayReport,
) -> Option<Vec<u8>> {
    let letter = &record.letter;
    let fixed = match &options.fix {
        Some(fix) => fix.apply(&letter.payload).map_err(|e| e.to_string()),
        None => Ok(letter.payload.clone()),
    };
    if options.dry_run {
        report.previews.push(Preview {
            dlq: record.dlq.clone(),
            id: letter.id.clone(),
            before: String::from_utf8_lossy(&letter.payload).into_owned(),
            changed: fixed.as_ref().is_ok_and(|f| *f != letter.payload),
            after: fixed.map(|f| String::from_utf8_lossy(&f).into_owned()),
        });
        return None;
    }
    match fixed {
        Ok(p) => Some(p),
        Err(message) => report_fix_error(report, message),
    }
}

/// Counts a record that cannot be replayed, keeping a few distinct messages.
pub fn report_fix_error(report: &mut ReplayReport, message: String) -> Option<Vec<u8>> {
    report.fix_failed += 1;
    if report.fix_errors.len() < 20 || report.fix_errors.contains_key(&message) {
        *report.fix_errors.entry(message).or_default() += 1;
    }
    None
}

/// Sleeps as needed so that `n` records take at least `n / rate` seconds.
///
/// Never panics, whatever the rate: one call sleeps at most one record's
/// interval (`1 / rate`), and never more than `1 / MIN_RATE` (1,000 s); a
/// rate that is not a positive number means no pacing. Callers validate
/// the rate first ([`ReplayOptions::validate`]); a dry run should not pace
/// at all ([`ReplayOptions::pace`]).
pub fn pace(rate: Option<f64>, n: u64, started: Instant) {
    let wait = pace_delay(rate, n, started.elapsed());
    if !wait.is_zero() {
        std::thread::sleep(wait);
    }
}

/// How long [`pace`] waits before record `n`, `elapsed` after the start.
fn pace_delay(rate: Option<f64>, n: u64, elapsed: Duration) -> Duration {
    let Some(rate) = rate.filter(|r| *r > 0.0) else {
        return Duration::ZERO;
    };
    let secs = |s: f64| Duration::try_from_secs_f64(s).unwrap_or(Duration::MAX);
    let longest = secs(1.0 / rate).min(secs(1.0 / MIN_RATE));
    let due = secs(n.saturating_sub(1) as f64 / rate);
    due.saturating_sub(elapsed).min(longest)
}

enum CommitError {
    Store(StoreError),
    Target(io::Error),
}

impl CommitError {
    fn into_replay(self, target: impl FnOnce(io::Error) -> ReplayError) -> ReplayError {
        match self {
            CommitError::Store(e) => ReplayError::Store(e),
            CommitError::Target(e) => target(e),
        }
    }
}

fn commit<S: DlqStore, T: ReplayTarget>(
    store: &mut S,
    target: &mut T,
    appends: &[Entry],
    settles: &[Settle],
    _report: &mut ReplayReport,
) -> Result<(), CommitError> {
    if appends.is_empty() && settles.is_empty() {
        return Ok(());
    }
    let checkpoint = target.flush().map_err(CommitError::Target)?;
    store
        .commit(Batch {
            append: appends,
            settle: settles,
            checkpoint: checkpoint.as_ref().map(|(n, v)| (n.as_str(), v.as_str())),
            ..Batch::default()
        })
        .map_err(CommitError::Store)?;
    Ok(())
}

/// How a file target writes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// The payload bytes, one per line (as the topic would receive them).
    Payload,
    /// The full envelope with lineage, one per line (NDJSON).
    Envelope,
}

/// Appends replayed records to a file that dlq owns.
///
/// Exactly-once across crashes: the file length is committed with the
/// settlements, and on open anything past the last committed length (written
/// by a run that crashed before settling) is cut off, since those records are
/// still pending and will be replayed again.
#[derive(Debug)]
pub struct FileTarget {
    path: PathBuf,
    writer: BufWriter<File>,
    len: u64,
    checkpoint_name: String,
    format: FileFormat,
}

impl FileTarget {
    /// Opens (or creates) the file, cutting an uncommitted tail.
    pub fn open<S: DlqStore>(path: &Path, format: FileFormat, store: &mut S) -> io::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(false)
            .write(true)
            .truncate(false)
            .open(path)?;
        let canonical = path.canonicalize()?;
        let checkpoint_name = format!("replay-target:{}", canonical.display());
        let mut len = file.metadata()?.len();
        let committed = store
            .checkpoint(&checkpoint_name)
            .map_err(io::Error::other)?
            .and_then(|v| v.parse::<u64>().ok());
        match committed {
            Some(committed) if committed < len => {
                file.set_len(committed)?;
                len = committed;
            }
            Some(_) => {}
            None => {
                // Record where our part of the file starts before writing,
                // so a crash before the first commit is cut too.
                let value = len.to_string();
                store
                    .commit(Batch {
                        checkpoint: Some((&checkpoint_name, &value)),
                        ..Batch::default()
                    })
                    .map_err(io::Error::other)?;
            }
        }
        let mut writer = BufWriter::with_capacity(1 << 20, file);
        writer.seek(SeekFrom::Start(len))?;
        Ok(FileTarget {
            path: path.to_path_buf(),
            writer,
            len,
            checkpoint_name,
            format,
        })
    }

    /// Writes one line.
    fn write_line(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)?;
        self.writer.write_all(b"\n")?;
        self.len += bytes.len() as u64 + 1;
        Ok(())
    }
}

impl ReplayTarget for FileTarget {
    fn name(&self) -> String {
        format!("file:{}", self.path.display())
    }

    fn deliver(&mut self, letter: &DeadLetter, payload: &[u8]) -> io::Result<Result<(), Failure>> {
        match self.format {
            FileFormat::Payload => {
                if payload.contains(&b'\n') {
                    return Ok(Err(Failure::permanent(
                        "replay",
                        "replay.unrepresentable",
                        "payload contains a line break and cannot be written as one line; \
                         replay with --to-format envelope",
                    )));
                }
                self.write_line(payload)?;
            }
            FileFormat::Envelope => {
                let mut out = letter.clone();
                out.payload = payload.to_vec();
                let enc =
                    crate::envelope::encode(&out, &crate::envelope::EncodeOptions::unlimited())
                        .map_err(io::Error::other)?;
                self.write_line(&enc.bytes)?;
            }
        }
        Ok(Ok(()))
    }

    fn flush(&mut self) -> io::Result<Option<(String, String)>> {
        self.writer.flush()?;
        self.writer.get_ref().sync_data()?;
        Ok(Some((self.checkpoint_name.clone(), self.len.to_string())))
    }
}

/// Runs each record through a handler before it reaches a file: the
/// handler's rejection sends the record back to its DLQ. This is how a
/// pipeline reprocesses its own dead letters.
pub struct HandlerTarget<H> {
    handler: H,
    file: FileTarget,
    label: String,
}

impl<H: Handler> HandlerTarget<H> {
    /// Wraps a file target with a handler.
    pub fn new(label: impl Into<String>, handler: H, file: FileTarget) -> Self {
        HandlerTarget {
            handler,
            file,
            label: label.into(),
        }
    }
}

impl<H: Handler> ReplayTarget for HandlerTarget<H> {
    fn name(&self) -> String {
        format!("{} -> {}", self.label, self.file.name())
    }

    fn deliver(&mut self, letter: &DeadLetter, payload: &[u8]) -> io::Result<Result<(), Failure>> {
        match self.handler.handle(payload, 1) {
            Ok(out) => self.file.deliver(letter, &out),
            Err(failure) => Ok(Err(failure)),
        }
    }

    fn flush(&mut self) -> io::Result<Option<(String, String)>> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MemoryStore;
    use crate::process::read_lines;

    fn seed(store: &mut MemoryStore, n: usize) {
        let entries: Vec<Entry> = (0..n)
            .map(|i| {
                let f =
                    Failure::permanent("validate", "validation.wrong_type", "price is a string");
                Entry {
                    dlq: "dlq.p".into(),
                    letter: DeadLetter::new(
                        format!("id{i}"),
                        format!(r#"{{"i":{i},"price":"0.{i}"}}"#).into_bytes(),
                        &f,
                    ),
                    status: Status::Pending,
                }
            })
            .collect();
        store.append(&entries).expect("append");
    }

    fn pending(store: &MemoryStore) -> u64 {
        store
            .stats()
            .expect("stats")
            .iter()
            .map(|s| s.pending)
            .sum()
    }

    #[test]
    fn replay_twice_writes_each_record_once() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("out.ndjson");
        let mut store = MemoryStore::new();
        seed(&mut store, 7);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.batch_size = 3;
        for _ in 0..2 {
            let mut t = FileTarget::open(&out, FileFormat::Payload, &mut store).expect("open");
            run(&mut store, &mut t, &opts, None).expect("replay");
        }
        let lines = read_lines(&out).expect("read");
        assert_eq!(lines.len(), 7);
        assert_eq!(pending(&store), 0);
        assert_eq!(store.stats().expect("stats")[0].replayed, 7);
    }

    #[test]
    fn a_stopped_replay_commits_what_it_delivered_and_the_rerun_does_the_rest_once() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("out.ndjson");
        let mut store = MemoryStore::new();
        seed(&mut store, 7);
        let stop = Arc::new(AtomicBool::new(false));
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.batch_size = 3;
        opts.stop = Some(Arc::clone(&stop));
        // A signal arrives while the first page is being committed.
        let mut on_commit = |_: &ReplayReport| stop.store(true, Ordering::SeqCst);
        let mut t = FileTarget::open(&out, FileFormat::Payload, &mut store).expect("open");
        let first = run(&mut store, &mut t, &opts, Some(&mut on_commit)).expect("replay");
        assert!(first.stopped);
        assert_eq!(first.replayed, 3);
        assert_eq!(pending(&store), 4);
        assert_eq!(read_lines(&out).expect("read").len(), 3);

        opts.stop = None;
        let mut t = FileTarget::open(&out, FileFormat::Payload, &mut store).expect("open");
        let second = run(&mut store, &mut t, &opts, None).expect("rerun");
        assert!(!second.stopped);
        assert_eq!(second.replayed, 4);
        let mut lines = read_lines(&out).expect("read");
        lines.sort();
        lines.dedup();
        assert_eq!(lines.len(), 7, "every record once");
        assert_eq!(pending(&store), 0);
    }

    #[test]
    fn fix_is_applied_and_dry_run_changes_nothing() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("out.ndjson");
        let mut store = MemoryStore::new();
        seed(&mut store, 3);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.fix = Some(Fix::compile(".price |= tonumber").expect("fix"));
        opts.dry_run = true;
        let mut t = FileTarget::open(&out, FileFormat::Payload, &mut store).expect("open");
        let r = run(&mut store, &mut t, &opts, None).expect("dry run");
        assert_eq!(r.previews.len(), 3);
        assert!(r.previews.iter().all(|p| p.changed));
        assert_eq!(r.previews[1].after.as_deref(), Ok(r#"{"i":1,"price":0.1}"#));
        assert_eq!(pending(&store), 3);
        assert_eq!(std::fs::metadata(&out).expect("meta").len(), 0);
        opts.dry_run = false;
        let r = run(&mut store, &mut t, &opts, None).expect("replay");
        assert_eq!(r.replayed, 3);
        let lines = read_lines(&out).expect("read");
        assert_eq!(lines[2], br#"{"i":2,"price":0.2}"#);
    }

    #[test]
    fn failing_fix_leaves_the_record_pending() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MemoryStore::new();
        seed(&mut store, 2);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.fix = Some(Fix::compile(r#"error("no")"#).expect("fix"));
        let mut t =
            FileTarget::open(&dir.path().join("o"), FileFormat::Payload, &mut store).expect("open");
        let r = run(&mut store, &mut t, &opts, None).expect("replay");
        assert_eq!((r.replayed, r.fix_failed), (0, 2));
        assert_eq!(pending(&store), 2);
    }

    #[test]
    fn a_fix_over_its_budget_leaves_the_records_pending() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MemoryStore::new();
        seed(&mut store, 2);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.fix = Some(Fix::compile("def f: [f]; f").expect("fix"));
        let mut t =
            FileTarget::open(&dir.path().join("o"), FileFormat::Payload, &mut store).expect("open");
        let r = run(&mut store, &mut t, &opts, None).expect("replay");
        assert_eq!((r.replayed, r.fix_failed), (0, 2));
        assert_eq!(
            r.fix_errors.keys().collect::<Vec<_>>(),
            ["fix recursed too deep (the stack is nearly exhausted)"]
        );
        assert_eq!(pending(&store), 2);
    }

    #[test]
    fn rejected_records_return_with_lineage_and_park_past_the_limit() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("out.ndjson");
        let mut store = MemoryStore::new();
        seed(&mut store, 1);
        let reject = |_: &[u8], _: u32| -> Result<Vec<u8>, Failure> {
            Err(Failure::permanent(
                "validate",
                "validation.still_bad",
                "still bad",
            ))
        };
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.max_replays = 2;
        for round in 1..=4u32 {
            let file = FileTarget::open(&out, FileFormat::Payload, &mut store).expect("open");
            let mut t = HandlerTarget::new("test", reject, file);
            let r = run(&mut store, &mut t, &opts, None).expect("replay");
            if round <= 3 {
                assert_eq!(r.failed_again, 1, "round {round}");
                assert_eq!(r.parked, u64::from(round == 3), "round {round}");
            } else {
                assert_eq!(r.selected, 0, "a parked record is not replayed");
            }
        }
        let st = &store.stats().expect("stats")[0];
        assert_eq!((st.pending, st.parked, st.replayed, st.total), (0, 1, 3, 4));
        let parked = store.get("dlq.p", "id0~r3").expect("get").expect("parked");
        assert_eq!(parked.status, Status::Parked);
        assert_eq!(parked.letter.replays, 3);
        assert_eq!(parked.letter.replay_of.as_deref(), Some("id0~r2"));
        assert_eq!(parked.letter.error_class, "validation.still_bad");
        assert_eq!(std::fs::metadata(&out).expect("meta").len(), 0);
    }

    #[test]
    fn uncommitted_tail_of_the_target_file_is_cut() {
        let dir = tempfile::tempdir().expect("dir");
        let out = dir.path().join("out.ndjson");
        let mut store = MemoryStore::new();
        seed(&mut store, 2);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.limit = Some(1);
        let mut t = FileTarget::open(&out, FileFormat::Payload, &mut store).expect("open");
        run(&mut store, &mut t, &opts, None).expect("replay");
        drop(t);
        // A crashed run wrote a line but never settled it.
        let mut f = OpenOptions::new().append(true).open(&out).expect("open");
        f.write_all(b"{\"i\":1,\"price\":\"0.1\"}\n")
            .expect("write");
        opts.limit = None;
        let mut t = FileTarget::open(&out, FileFormat::Payload, &mut store).expect("open");
        run(&mut store, &mut t, &opts, None).expect("replay");
        assert_eq!(read_lines(&out).expect("read").len(), 2);
    }

    #[test]
    fn rates_outside_the_range_are_refused_with_the_range() {
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        for bad in [1e-300, 0.0, -1.0, 9e-4, 1.1e9, f64::NAN, f64::INFINITY] {
            opts.rate = Some(bad);
            let e = opts.validate().expect_err("out of range");
            assert!(matches!(e, ReplayOptionsError::Rate { .. }), "{bad}");
            assert!(
                e.to_string().contains("between 0.001 and 1000000000"),
                "{e}"
            );
        }
        for good in [MIN_RATE, 1.0, 2.5e3, MAX_RATE] {
            opts.rate = Some(good);
            assert_eq!(opts.validate(), Ok(()), "{good}");
        }
        opts.rate = None;
        opts.batch_size = 0;
        assert_eq!(opts.validate(), Err(ReplayOptionsError::BatchSize));
        opts.batch_size = 1;
        let no_time = crate::fix::FixLimits {
            timeout: Duration::ZERO,
            ..crate::fix::FixLimits::default()
        };
        opts.fix = Some(Fix::compile(".").expect("fix").with_limits(no_time));
        assert!(matches!(
            opts.validate(),
            Err(ReplayOptionsError::FixLimits { .. })
        ));
    }

    #[test]
    fn pacing_never_panics_and_waits_at_most_one_interval() {
        let hour = Duration::from_secs(3600);
        // `Duration::from_secs_f64(1 / 1e-300)` panicked here.
        assert_eq!(
            pace_delay(Some(1e-300), 2, Duration::ZERO),
            Duration::from_secs(1000)
        );
        assert_eq!(
            pace_delay(Some(f64::MIN_POSITIVE), u64::MAX, hour),
            Duration::from_secs(1000)
        );
        assert_eq!(
            pace_delay(Some(f64::NAN), 5, Duration::ZERO),
            Duration::ZERO
        );
        assert_eq!(pace_delay(Some(-3.0), 5, Duration::ZERO), Duration::ZERO);
        assert_eq!(pace_delay(Some(1e300), 5, Duration::ZERO), Duration::ZERO);
        assert_eq!(pace_delay(None, 5, Duration::ZERO), Duration::ZERO);
        // 2 records/s: the 5th record is due at 2 s.
        assert_eq!(
            pace_delay(Some(2.0), 5, Duration::from_millis(500)),
            Duration::from_millis(500),
            "at most one interval per record"
        );
        assert_eq!(
            pace_delay(Some(2.0), 5, Duration::from_millis(1800)),
            Duration::from_millis(200)
        );
        assert_eq!(pace_delay(Some(2.0), 1, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_dry_run_never_sleeps_whatever_the_rate() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MemoryStore::new();
        seed(&mut store, 3);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.rate = Some(MIN_RATE);
        opts.dry_run = true;
        let mut t =
            FileTarget::open(&dir.path().join("o"), FileFormat::Payload, &mut store).expect("open");
        let started = Instant::now();
        let r = run(&mut store, &mut t, &opts, None).expect("dry run");
        assert_eq!(r.previews.len(), 3);
        // Paced, the 2nd and 3rd records would wait 1000 s each.
        assert!(started.elapsed() < Duration::from_secs(60));
    }

    #[test]
    fn limit_and_filter_select_records() {
        let dir = tempfile::tempdir().expect("dir");
        let mut store = MemoryStore::new();
        seed(&mut store, 10);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.selection.filter =
            Some(crate::filter::Filter::parse("payload.i >= 5").expect("filter"));
        opts.limit = Some(3);
        let mut t =
            FileTarget::open(&dir.path().join("o"), FileFormat::Payload, &mut store).expect("open");
        let r = run(&mut store, &mut t, &opts, None).expect("replay");
        assert_eq!(r.replayed, 3);
        assert_eq!(pending(&store), 7);
    }

    /// Pending records of `dlq.p` from source topic `prices` (odd ones
    /// keyed, the last one a tombstone), and one without a source topic.
    fn seed_with_sources(store: &mut MemoryStore) {
        let f = Failure::transient("produce", "kafka.timeout", "timed out");
        let mut entries: Vec<Entry> = (0..5)
            .map(|i| {
                let mut l =
                    DeadLetter::new(format!("s{i}"), format!("{{\"i\":{i}}}").into_bytes(), &f);
                l.source.topic = Some("prices".into());
                l.source.partition = Some(i % 3);
                l.key = (i % 2 == 1).then(|| format!("k{i}").into_bytes());
                Entry {
                    dlq: "dlq.p".into(),
                    letter: l,
                    status: Status::Pending,
                }
            })
            .collect();
        entries[4].letter.payload.clear();
        entries[4].letter.null_payload = true;
        let orphan = DeadLetter::new("orphan", b"{}".to_vec(), &f);
        entries.push(Entry {
            dlq: "dlq.p".into(),
            letter: orphan,
            status: Status::Pending,
        });
        store.append(&entries).expect("append");
    }

    fn kafka_outputs(to: Option<&str>) -> StoreOutputs {
        StoreOutputs::kafka(to)
    }

    #[test]
    fn a_replay_to_the_store_sends_each_record_once_with_lineage_and_settles_it() {
        let mut store = MemoryStore::new();
        seed_with_sources(&mut store);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.batch_size = 2;
        let r = run_to_store(&mut store, &kafka_outputs(None), &opts, None).expect("replay");
        assert_eq!((r.selected, r.replayed, r.fix_failed), (6, 5, 1));
        assert_eq!(r.target, "kafka:prices");
        assert_eq!(r.targets.get("prices"), Some(&5));
        let out = store.outputs("prices").to_vec();
        assert_eq!(out.len(), 5);
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.partition, Some(i as i32 % 3), "source partition kept");
            assert_eq!(o.key.is_some(), i % 2 == 1);
            let names: Vec<&str> = o.headers.iter().map(|h| h.name.as_str()).collect();
            assert_eq!(
                names,
                [REPLAY_OF_HEADER, REPLAYS_HEADER, FIRST_FAILED_AT_HEADER]
            );
            assert_eq!(
                o.headers[0].value.as_deref(),
                Some(format!("s{i}").as_bytes())
            );
        }
        assert_eq!(out[4].value, None, "a tombstone stays null");
        assert_eq!(out[3].value.as_deref(), Some(&b"{\"i\":3}"[..]));
        // The record without a source topic waits for --to.
        assert_eq!(pending(&store), 1);
        assert!(r.fix_errors.keys().any(|m| m.contains("--to kafka:NAME")));
        let again = run_to_store(&mut store, &kafka_outputs(None), &opts, None).expect("again");
        assert_eq!((again.selected, again.replayed), (1, 0));
        assert_eq!(store.outputs("prices").len(), 5, "nothing sent twice");
        let to = run_to_store(&mut store, &kafka_outputs(Some("fixed")), &opts, None).expect("to");
        assert_eq!((to.replayed, to.target.as_str()), (1, "kafka:fixed"));
        assert_eq!(pending(&store), 0);
    }

    #[test]
    fn a_dry_run_to_the_store_counts_targets_and_sends_nothing() {
        let mut store = MemoryStore::new();
        seed_with_sources(&mut store);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.dry_run = true;
        opts.fix = Some(Fix::compile(".i += 1").expect("fix"));
        let r = run_to_store(&mut store, &kafka_outputs(None), &opts, None).expect("dry run");
        assert_eq!(r.targets.get("prices"), Some(&5));
        assert_eq!(r.replayed, 0);
        assert!(store.outputs("prices").is_empty());
        assert_eq!(pending(&store), 6);
    }

    /// A store that pipelines: submitted batches are committed to the inner
    /// memory store only when `completed` is called, and the `fail_at`th
    /// submission fails then (fault injection for the engine's accounting).
    struct Deferred {
        inner: MemoryStore,
        queued: Vec<(u64, Vec<Settle>, Vec<Output>)>,
        next: u64,
        fail_at: Option<u64>,
        has: bool,
    }

    impl DlqStore for Deferred {
        fn commit(&mut self, batch: Batch<'_>) -> crate::store::Result<crate::store::CommitReport> {
            self.completed(true)?;
            self.inner.commit(batch)
        }
        fn capabilities(&self) -> crate::store::Capabilities {
            self.inner.capabilities()
        }
        fn has_destination(&self, _: &str) -> crate::store::Result<bool> {
            Ok(self.has)
        }
        fn submit(&mut self, batch: Batch<'_>) -> crate::store::Result<Submitted> {
            self.next += 1;
            self.queued
                .push((self.next, batch.settle.to_vec(), batch.outputs.to_vec()));
            Ok(Submitted::Pending(crate::store::Ticket(self.next)))
        }
        fn completed(
            &mut self,
            _wait: bool,
        ) -> crate::store::Result<Vec<(crate::store::Ticket, crate::store::CommitReport)>> {
            let mut done = Vec::new();
            for (t, settle, outputs) in std::mem::take(&mut self.queued) {
                if self.fail_at == Some(t) {
                    return Err(StoreError::Backend {
                        backend: "deferred",
                        message: "commit failed".into(),
                        retryable: true,
                    });
                }
                let r = self.inner.commit(Batch {
                    settle: &settle,
                    outputs: &outputs,
                    ..Batch::default()
                })?;
                done.push((crate::store::Ticket(t), r));
            }
            Ok(done)
        }
        fn scan(
            &self,
            s: &Selection,
            a: Option<&crate::store::Cursor>,
            l: usize,
        ) -> crate::store::Result<crate::store::ScanPage> {
            self.inner.scan(s, a, l)
        }
        fn get(&self, d: &str, id: &str) -> crate::store::Result<Option<StoredRecord>> {
            self.inner.get(d, id)
        }
        fn stats(&self) -> crate::store::Result<Vec<crate::store::DlqStats>> {
            self.inner.stats()
        }
        fn dlqs(&self) -> crate::store::Result<Vec<String>> {
            self.inner.dlqs()
        }
        fn checkpoint(&self, n: &str) -> crate::store::Result<Option<String>> {
            self.inner.checkpoint(n)
        }
    }

    fn deferred(n: usize, fail_at: Option<u64>) -> Deferred {
        let mut inner = MemoryStore::new();
        seed(&mut inner, n);
        Deferred {
            inner,
            queued: Vec::new(),
            next: 0,
            fail_at,
            has: true,
        }
    }

    #[test]
    fn pipelined_commits_are_counted_when_they_complete() {
        let mut store = deferred(10, None);
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.batch_size = 3;
        let mut seen = Vec::new();
        let mut tick = |r: &ReplayReport| seen.push(r.replayed);
        let r = run_to_store(
            &mut store,
            &kafka_outputs(Some("out")),
            &opts,
            Some(&mut tick),
        )
        .expect("replay");
        assert_eq!((r.selected, r.replayed), (10, 10));
        assert_eq!(*seen.last().expect("progress"), 10);
        assert!(
            store.queued.is_empty(),
            "everything completed before the end"
        );
        assert_eq!(store.inner.outputs("out").len(), 10);
        assert_eq!(pending(&store.inner), 0);
    }

    #[test]
    fn a_failed_pipelined_commit_fails_the_replay_and_leaves_its_records_pending() {
        let mut store = deferred(10, Some(2));
        let mut opts = ReplayOptions::for_dlq("dlq.p");
        opts.batch_size = 3;
        // Paced: each page completes before the next, so the first one is
        // settled when the second fails.
        opts.rate = Some(1e6);
        let err = run_to_store(&mut store, &kafka_outputs(Some("out")), &opts, None)
            .expect_err("the second commit fails");
        assert!(matches!(err, ReplayError::Store(_)), "{err}");
        assert_eq!(pending(&store.inner), 7, "only the first page settled");
        assert_eq!(store.inner.outputs("out").len(), 3);
    }

    #[test]
    fn a_missing_destination_fails_before_anything_is_sent() {
        let mut store = deferred(3, None);
        store.has = false;
        let opts = ReplayOptions::for_dlq("dlq.p");
        let err = run_to_store(&mut store, &kafka_outputs(Some("nope")), &opts, None)
            .expect_err("missing target");
        match err {
            ReplayError::Target { target, source } => {
                assert_eq!(target, "kafka:nope");
                assert!(source.to_string().contains("no such topic"), "{source}");
            }
            other => panic!("{other}"),
        }
        assert_eq!(store.next, 0, "nothing submitted");
        assert_eq!(pending(&store.inner), 3);
    }

    #[test]
    fn a_store_without_outputs_refuses_a_replay_to_its_destinations() {
        struct NoOutputs(MemoryStore);
        impl DlqStore for NoOutputs {
            fn commit(&mut self, b: Batch<'_>) -> crate::store::Result<crate::store::CommitReport> {
                self.0.commit(b)
            }
            fn scan(
                &self,
                s: &Selection,
                a: Option<&crate::store::Cursor>,
                l: usize,
            ) -> crate::store::Result<crate::store::ScanPage> {
                self.0.scan(s, a, l)
            }
            fn get(&self, d: &str, id: &str) -> crate::store::Result<Option<StoredRecord>> {
                self.0.get(d, id)
            }
            fn stats(&self) -> crate::store::Result<Vec<crate::store::DlqStats>> {
                self.0.stats()
            }
            fn dlqs(&self) -> crate::store::Result<Vec<String>> {
                self.0.dlqs()
            }
            fn checkpoint(&self, n: &str) -> crate::store::Result<Option<String>> {
                self.0.checkpoint(n)
            }
        }
        let mut inner = MemoryStore::new();
        seed(&mut inner, 2);
        let mut store = NoOutputs(inner);
        let err = run_to_store(
            &mut store,
            &kafka_outputs(None),
            &ReplayOptions::for_dlq("dlq.p"),
            None,
        )
        .expect_err("refused");
        assert!(
            err.to_string().contains("cannot write replayed records"),
            "{err}"
        );
        assert_eq!(pending(&store.0), 2);
    }
}
