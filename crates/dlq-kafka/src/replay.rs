//! Replay from Kafka DLQ topics back to Kafka topics.
//!
//! Delivery semantics: with a transactional store (the default), replayed
//! records and their settlements in the ledger are committed together in
//! **Kafka transactions** (each spans the pages sent within 100 ms) — a
//! replay killed midway and run again delivers every selected record exactly
//! once to `read_committed` readers and settles it once. With
//! `transactions=false` the replay is **at-least-once** and streams: outputs
//! go out through a producer of the replay's own while the next pages are
//! read, and a record's ledger entry is written only after the broker
//! acknowledged its output. A crash replays the records delivered but not
//! yet settled (duplicates, never a loss); an output the target refuses
//! leaves its record pending and fails the replay.
//!
//! Each record goes to the topic it came from (its envelope's source topic,
//! or the original topic named by Kafka Connect or Spring headers), or to
//! `to` when given, with its key and headers, and with lineage headers
//! (`dlq.replay_of`, `dlq.replays`, `dlq.first_failed_at`) so that a
//! processor that fails it again returns it to its DLQ as the next
//! generation — parked past its replay limit instead of looping.

use crate::client::{Outgoing, base_config, idempotent_producer};
use crate::partitioner::default_partition;
use crate::processor::{FIRST_FAILED_AT_HEADER, REPLAY_OF_HEADER, REPLAYS_HEADER};
use crate::retry::{Redactor, backend};
use crate::store::PendingSettle;
use crate::{KafkaConfig, KafkaStore};
use dlq_core::envelope::Header;
use dlq_core::replay::{ReplayError, ReplayOptions, ReplayReport, fixed_payload, report_fix_error};
use dlq_core::store::{DlqStore as _, Settle, Status, StoredRecord};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};
use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Replays the records `options` selects to Kafka. `to` overrides the
/// original topic. `progress` is called after each commit (a transaction,
/// or a ledger write of delivered records at least once).
///
/// Pages of `options.batch_size` records are read while the previous ones
/// travel. Exactly once, a transaction takes the pages sent within
/// [`COMMIT_INTERVAL`] and is committed before more are sent: a replay
/// killed meanwhile leaves that transaction open (read_committed readers
/// wait behind it until it times out) and a rerun redoes its pages, whose
/// outputs and settlements abort together. At least once, see
/// [`MAX_IN_FLIGHT`].
///
/// The replay takes the records the store's index holds when it starts
/// (the first page brings the index up to date); records dead-lettered
/// while it runs are left for the next run.
///
/// A target topic that does not exist fails the replay with
/// [`ReplayError::Target`] naming it, before anything is sent to it: `to`
/// is checked before the DLQ is read, and each original topic when the
/// first record bound for it is met. The report's `targets` counts the
/// records sent to each topic, and its `target` names them
/// (`kafka:<topic>[,<topic>…]`, or `kafka` when nothing was sent).
pub fn replay(
    store: &mut KafkaStore,
    options: &ReplayOptions,
    to: Option<&str>,
    progress: Option<&mut dyn FnMut(&ReplayReport)>,
) -> Result<ReplayReport, ReplayError> {
    let mut partitions = HashMap::new();
    if let Some(topic) = to {
        partitions.insert(topic.to_owned(), target_partitions(store, topic)?);
    }
    let mut report = if store.config().transactions {
        replay_in_transactions(store, options, to, partitions, progress)
    } else {
        replay_at_least_once(store, options, to, partitions, progress)
    }?;
    report.target = match (to, report.targets.is_empty()) {
        (Some(t), _) => format!("kafka:{t}"),
        (None, true) => "kafka".to_owned(),
        (None, false) => {
            let names: Vec<&str> = report.targets.keys().map(String::as_str).collect();
            format!("kafka:{}", names.join(","))
        }
    };
    Ok(report)
}

/// The partition count of a replay's target topic; an error naming it
/// when it does not exist.
fn target_partitions(store: &KafkaStore, topic: &str) -> Result<i32, ReplayError> {
    store
        .topic_partitions(topic)?
        .ok_or_else(|| ReplayError::Target {
            target: format!("kafka:{topic}"),
            source: std::io::Error::other(
                "no such topic (create it, or name another target with --to kafka:TOPIC)",
            ),
        })
}

fn new_report(options: &ReplayOptions) -> ReplayReport {
    ReplayReport {
        dry_run: options.dry_run,
        ..ReplayReport::default()
    }
}

/// How often the exactly-once replay commits its transaction: pages sent
/// within this time share one, as Kafka Streams commits every 100 ms under
/// exactly-once. A transaction's commit (and its markers) costs the same
/// for 1 record as for thousands; the interval bounds how long readers at
/// read_committed wait behind an open one, and how much a crash rolls back.
const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// The exactly-once replay's open transaction.
struct OpenTransaction {
    pending: PendingSettle,
    records: u64,
    since: Instant,
}

/// Exactly once: pages' outputs and settlements in transactions, each
/// spanning the pages sent within [`COMMIT_INTERVAL`] (at least one whole
/// page; exactly one when the replay is paced with a rate).
fn replay_in_transactions(
    store: &mut KafkaStore,
    options: &ReplayOptions,
    to: Option<&str>,
    partitions: HashMap<String, i32>,
    mut progress: Option<&mut dyn FnMut(&ReplayReport)>,
) -> Result<ReplayReport, ReplayError> {
    let mut report = new_report(options);
    let mut builder = PageBuilder::new(options, to, partitions);
    let page_size = options.batch_size.max(1);
    let mut open: Option<OpenTransaction> = None;
    let mut page = store.scan(&options.selection, None, page_size)?;
    let outcome = loop {
        let (mut built, stop) =
            builder.build(store, std::mem::take(&mut page.records), &mut report);
        let error = built.error.take();
        let next = page.next.take().filter(|_| !stop && error.is_none());
        if !built.settles.is_empty() {
            let n = built.settles.len() as u64;
            let sent = match open.take() {
                None => store
                    .start_settle(&built.settles, built.outputs)
                    .map(|pending| OpenTransaction {
                        pending,
                        records: n,
                        since: Instant::now(),
                    }),
                Some(o) => store
                    .extend_settle(o.pending, &built.settles, built.outputs)
                    .map(|pending| OpenTransaction {
                        pending,
                        records: o.records + n,
                        since: o.since,
                    }),
            };
            match sent {
                Ok(o) => open = Some(o),
                Err(e) => break Err(e.into()),
            }
        }
        // The next page is read while this one travels, from the index as
        // the first page left it: the replay takes the records pending when
        // it started; those dead-lettered meanwhile wait for the next run.
        let scanned = next
            .as_ref()
            .map(|cursor| store.scan_page(&options.selection, Some(cursor), page_size, false));
        // A paced replay commits each page: the next one is slow to build
        // (it sleeps to hold the rate), and a transaction left open across
        // that would hold read_committed readers back meanwhile, and for the
        // whole transaction timeout if the replay is killed.
        let last = !matches!(scanned, Some(Ok(_))) || options.rate.is_some();
        if let Some(o) = open.take_if(|o| last || o.since.elapsed() >= COMMIT_INTERVAL)
            && let Err(e) = finish(store, (o.pending, o.records), &mut report, &mut progress)
        {
            break Err(e);
        }
        if let Some(e) = error {
            break Err(e);
        }
        match scanned {
            None => break Ok(()),
            Some(Ok(p)) => page = p,
            Some(Err(e)) => break Err(e.into()),
        }
    };
    store.await_visible();
    outcome?;
    Ok(report)
}

/// How many replayed records may be on their way to the broker at once
/// (at least once): enough pages to keep the producer's batches full while
/// the next pages are read, few enough that memory stays flat.
const MAX_IN_FLIGHT: usize = 20_000;

/// At least once, without transactions. Outputs stream through a producer
/// of the replay's own while the next pages are read, and a record is
/// settled in the ledger only once the broker acknowledged its output: a
/// crash replays the records whose settlement was not written yet (a
/// duplicate, never a loss), and an output that cannot be delivered leaves
/// its record pending and ends the replay with an error, after the records
/// already on their way are delivered and settled.
fn replay_at_least_once(
    store: &mut KafkaStore,
    options: &ReplayOptions,
    to: Option<&str>,
    partitions: HashMap<String, i32>,
    mut progress: Option<&mut dyn FnMut(&ReplayReport)>,
) -> Result<ReplayReport, ReplayError> {
    let mut report = new_report(options);
    let mut outputs = Outputs::new(store.config())?;
    let mut builder = PageBuilder::new(options, to, partitions);
    let page_size = options.batch_size.max(1);
    let mut settling: Option<(PendingSettle, u64)> = None;
    let mut stopped_by: Option<ReplayError> = None;
    let mut next_page = Some(store.scan(&options.selection, None, page_size)?);
    while let Some(mut page) = next_page.take() {
        let (mut built, stop) =
            builder.build(store, std::mem::take(&mut page.records), &mut report);
        // What was built before an error is sent all the same.
        stopped_by = built.error.take();
        outputs.send(built.outputs, built.settles);
        outputs.wait_below(MAX_IN_FLIGHT);
        if let Err(e) = settle_ready(
            store,
            &mut outputs,
            &mut settling,
            &mut report,
            &mut progress,
            false,
        ) {
            stopped_by.get_or_insert(e);
        }
        if stopped_by.is_some() || outputs.failed > 0 || stop {
            break;
        }
        // Read from the index as the first page left it: the replay takes
        // the records pending when it started.
        if let Some(cursor) = page.next.take() {
            match store.scan_page(&options.selection, Some(&cursor), page_size, false) {
                Ok(p) => next_page = Some(p),
                Err(e) => stopped_by = Some(e.into()),
            }
        }
    }
    // Whatever stopped the replay, what is on its way is delivered and
    // settled before it returns: settlement writes start as acknowledgements
    // come in, not once the last one is in.
    let mut settling_failed = None;
    while outputs.in_flight > 0 {
        if !outputs.wait_below_for(outputs.in_flight, Duration::from_millis(5)) {
            break;
        }
        if let Err(e) = settle_ready(
            store,
            &mut outputs,
            &mut settling,
            &mut report,
            &mut progress,
            false,
        ) {
            settling_failed = Some(e);
            outputs.wait_below(1);
            break;
        }
    }
    let settled = settle_ready(
        store,
        &mut outputs,
        &mut settling,
        &mut report,
        &mut progress,
        true,
    );
    if let Some(e) = stopped_by.or(settling_failed) {
        return Err(e);
    }
    settled?;
    if let Some(e) = outputs.failure() {
        return Err(e);
    }
    Ok(report)
}

/// Sends the settlements of the records delivered so far to the ledger:
/// into the settlement write under way, or a new one once the one before
/// is acknowledged (then finished, which reports progress). `wait`: finish
/// the write with everything in it.
fn settle_ready(
    store: &mut KafkaStore,
    outputs: &mut Outputs,
    settling: &mut Option<(PendingSettle, u64)>,
    report: &mut ReplayReport,
    progress: &mut Option<&mut dyn FnMut(&ReplayReport)>,
    wait: bool,
) -> Result<(), ReplayError> {
    let settles = std::mem::take(&mut outputs.delivered);
    let n = settles.len() as u64;
    let mut open = settling.take();
    if !settles.is_empty() {
        open = Some(match open {
            Some((p, m)) if !store.settle_reported() => {
                (store.extend_settle(p, &settles, Vec::new())?, m + n)
            }
            done => {
                if let Some(p) = done {
                    finish(store, p, report, progress)?;
                }
                (store.start_settle(&settles, Vec::new())?, n)
            }
        });
    }
    match open {
        Some(p) if wait => finish(store, p, report, progress),
        open => {
            *settling = open;
            Ok(())
        }
    }
}

/// A delivery report: on failure, the topic and the error.
type Delivered = Result<(), (String, KafkaError)>;

/// Delivery reports of the replay's producer, by record token.
#[derive(Default)]
struct Acks(Mutex<Vec<(usize, Delivered)>>);

impl ClientContext for Acks {}

impl ProducerContext for Acks {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: usize) {
        let r = match result {
            Ok(_) => Ok(()),
            Err((e, m)) => Err((m.topic().to_owned(), e.clone())),
        };
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((token, r));
    }
}

/// A page's settlements, waiting for their outputs' acknowledgements.
struct SentPage {
    /// The token of the page's first record; the others follow in order.
    first: usize,
    /// `None` once the output failed: that record stays pending.
    settles: Vec<Option<Settle>>,
    unacknowledged: usize,
}

/// The at-least-once replay's outputs on their way to the broker.
struct Outputs {
    producer: BaseProducer<Acks>,
    redactor: Redactor,
    pages: VecDeque<SentPage>,
    next_token: usize,
    in_flight: usize,
    /// Settlements of delivered records (whole pages, in page order).
    delivered: Vec<Settle>,
    failed: u64,
    first_failure: Option<(String, String)>,
    /// How long a delivery may take before the wait gives up.
    timeout: Duration,
    /// When the last acknowledgement came, or the last page was sent.
    last_ack: Instant,
}

impl Outputs {
    fn new(config: &KafkaConfig) -> Result<Outputs, ReplayError> {
        let redactor = Redactor::new(config.secret_values());
        let timeout = Duration::from_millis(config.timeout_ms);
        let producer = idempotent_producer(&base_config(config), config.max_message_bytes, timeout)
            .create_with_context(Acks::default())
            .map_err(|e| backend(&redactor, "creating the replay's producer", None, &e))?;
        Ok(Outputs {
            producer,
            redactor,
            pages: VecDeque::new(),
            next_token: 0,
            in_flight: 0,
            delivered: Vec::new(),
            failed: 0,
            first_failure: None,
            timeout,
            last_ack: Instant::now(),
        })
    }

    /// Hands a page's outputs to librdkafka (waiting for room in its queue
    /// when it is full); their settlements wait for the acknowledgements.
    fn send(&mut self, outputs: Vec<Outgoing>, settles: Vec<Settle>) {
        if outputs.is_empty() {
            return;
        }
        // A stall is measured from the last send or acknowledgement.
        self.last_ack = Instant::now();
        let first = self.next_token;
        self.next_token += outputs.len();
        self.in_flight += outputs.len();
        self.pages.push_back(SentPage {
            first,
            unacknowledged: outputs.len(),
            settles: settles.into_iter().map(Some).collect(),
        });
        for (i, out) in outputs.into_iter().enumerate() {
            let token = first + i;
            let mut record = out.record(token);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                        record = back;
                        self.producer.poll(Duration::from_millis(10));
                        self.take_acks();
                    }
                    Err((e, _)) => {
                        // Refused at once (too large, unknown partition...).
                        self.acknowledged(token, Err((out.topic.clone(), e)));
                        break;
                    }
                }
            }
        }
        self.producer.poll(Duration::ZERO);
        self.take_acks();
    }

    /// Waits until fewer than `limit` outputs are unacknowledged (or the
    /// delivery timeout passed without any acknowledgement: librdkafka
    /// reports every record by then, so that means it is stuck).
    fn wait_below(&mut self, limit: usize) {
        while self.in_flight >= limit.max(1) {
            if !self.wait_below_for(limit, Duration::from_millis(100)) {
                break;
            }
        }
    }

    /// Waits up to `step` for fewer than `limit` outputs to be
    /// unacknowledged; false once no acknowledgement came for longer than
    /// the delivery timeout (librdkafka reports every record by then, so it
    /// is stuck: what is unacknowledged stays pending).
    fn wait_below_for(&mut self, limit: usize, step: Duration) -> bool {
        let until = Instant::now() + step;
        while self.in_flight >= limit.max(1) {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let before = self.in_flight;
            self.producer.poll(left);
            self.take_acks();
            if self.in_flight < before {
                self.last_ack = Instant::now();
            }
        }
        if self.in_flight > 0 && self.last_ack.elapsed() > self.timeout + Duration::from_secs(5) {
            tracing::error!(
                in_flight = self.in_flight,
                "replay outputs unacknowledged past the delivery timeout; they stay pending"
            );
            return false;
        }
        true
    }

    fn take_acks(&mut self) {
        let acks = std::mem::take(
            &mut *self
                .producer
                .context()
                .0
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for (token, result) in acks {
            self.acknowledged(token, result);
        }
    }

    fn acknowledged(&mut self, token: usize, result: Delivered) {
        let i = self.pages.partition_point(|p| p.first <= token);
        let Some(page) = i.checked_sub(1).and_then(|i| self.pages.get_mut(i)) else {
            return;
        };
        let Some(slot) = page.settles.get_mut(token - page.first) else {
            return;
        };
        page.unacknowledged -= 1;
        self.in_flight -= 1;
        if let Err((topic, e)) = result {
            *slot = None;
            self.failed += 1;
            self.first_failure
                .get_or_insert_with(|| (topic, self.redactor.clean(e.to_string())));
        }
        while self.pages.front().is_some_and(|p| p.unacknowledged == 0) {
            if let Some(done) = self.pages.pop_front() {
                self.delivered.extend(done.settles.into_iter().flatten());
            }
        }
    }

    /// The error for the outputs that could not be delivered, if any.
    fn failure(&self) -> Option<ReplayError> {
        if self.in_flight > 0 {
            return Some(ReplayError::Target {
                target: "kafka".to_owned(),
                source: std::io::Error::other(format!(
                    "{} records not acknowledged in time; they stay pending",
                    self.in_flight
                )),
            });
        }
        let (topic, error) = self.first_failure.as_ref()?;
        Some(ReplayError::Target {
            target: format!("kafka:{topic}"),
            source: std::io::Error::other(format!(
                "{} records not delivered, they stay pending; the first: {error}",
                self.failed
            )),
        })
    }
}

fn finish(
    store: &mut KafkaStore,
    (pending, n): (PendingSettle, u64),
    report: &mut ReplayReport,
    progress: &mut Option<&mut dyn FnMut(&ReplayReport)>,
) -> Result<(), ReplayError> {
    store.finish_settle(pending)?;
    report.replayed += n;
    if let Some(cb) = progress.as_mut() {
        cb(report);
    }
    Ok(())
}

/// One page's outputs and settlements.
#[derive(Default)]
struct Built {
    outputs: Vec<Outgoing>,
    settles: Vec<Settle>,
    error: Option<ReplayError>,
}

/// What every page of one replay is built with.
struct PageBuilder<'a> {
    options: &'a ReplayOptions,
    to: Option<&'a str>,
    /// Partition counts of the target topics, looked up once each.
    partitions: HashMap<String, i32>,
    /// When the replay started (its pace counts from there).
    started: Instant,
    /// The outputs' timestamp.
    now: i64,
}

impl<'a> PageBuilder<'a> {
    fn new(
        options: &'a ReplayOptions,
        to: Option<&'a str>,
        partitions: HashMap<String, i32>,
    ) -> Self {
        PageBuilder {
            options,
            to,
            partitions,
            started: Instant::now(),
            now: chrono::Utc::now().timestamp_millis(),
        }
    }

    /// Builds a page's outputs and settlements; `true` when the replay
    /// stops after it (its `--limit` reached, a stop asked for from
    /// outside, or a record that cannot be sent anywhere: `error`).
    fn build(
        &mut self,
        store: &KafkaStore,
        records: Vec<StoredRecord>,
        report: &mut ReplayReport,
    ) -> (Built, bool) {
        let mut built = Built::default();
        for record in records {
            if self.options.stop_asked() {
                report.stopped = true;
                return (built, true);
            }
            if self.options.limit.is_some_and(|l| report.selected >= l) {
                return (built, true);
            }
            if let Err(e) = built.add(
                store,
                record,
                self.options,
                self.to,
                &mut self.partitions,
                report,
                self.started,
                self.now,
            ) {
                built.error = Some(e);
                return (built, true);
            }
        }
        (built, false)
    }
}

impl Built {
    #[allow(clippy::too_many_arguments)]
    fn add(
        &mut self,
        store: &KafkaStore,
        mut record: StoredRecord,
        options: &ReplayOptions,
        to: Option<&str>,
        partitions: &mut HashMap<String, i32>,
        report: &mut ReplayReport,
        started: Instant,
        now: i64,
    ) -> Result<(), ReplayError> {
        report.selected += 1;
        options.pace(report.selected, started);
        let Some(topic) = to
            .map(str::to_owned)
            .or_else(|| record.letter.source.topic.clone())
        else {
            // Nowhere to send it: it stays pending; say so.
            report_fix_error(
                report,
                "no original topic in the record: replay it with --to TOPIC".into(),
            );
            return Ok(());
        };
        // A missing target fails the replay before a record is sent to it
        // (a dry run too: it would fail).
        let n = match partitions.get(&topic) {
            Some(&n) => n,
            None => {
                let n = target_partitions(store, &topic)?;
                partitions.insert(topic.clone(), n);
                n
            }
        };
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
                        *report.targets.entry(topic).or_default() += 1;
                    }
                    return Ok(());
                }
            }
        };
        let StoredRecord { dlq, letter, .. } = record;
        let partition = match letter.source.partition {
            Some(p) if p >= 0 => p % n.max(1),
            _ => match letter.key.as_deref() {
                Some(key) => default_partition(key, n),
                None => stable_partition(letter.id.as_bytes(), n),
            },
        };
        *report.targets.entry(topic.clone()).or_default() += 1;
        let mut headers: Vec<Header> = letter.headers;
        let lineage = [
            (REPLAY_OF_HEADER, letter.id.clone()),
            (REPLAYS_HEADER, letter.replays.to_string()),
            (
                FIRST_FAILED_AT_HEADER,
                dlq_core::envelope::format_timestamp(&letter.first_failed_at),
            ),
        ];
        for (name, value) in lineage {
            headers.push(Header {
                name: name.to_owned(),
                value: Some(value.into_bytes()),
            });
        }
        self.outputs.push(Outgoing {
            topic,
            partition,
            key: letter.key,
            value: (!null).then_some(payload),
            headers,
            timestamp_ms: now,
        });
        self.settles.push(Settle {
            dlq,
            id: letter.id,
            outcome: Status::Replayed,
        });
        Ok(())
    }
}

/// Where an unkeyed record without a source partition goes: spread by its
/// id, the same partition on every run.
fn stable_partition(bytes: &[u8], partitions: i32) -> i32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % u64::from(partitions.max(1).unsigned_abs())) as i32
}
