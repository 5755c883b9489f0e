//! The store's pipelined commits: [`DlqStore::submit`] and
//! [`DlqStore::completed`] on Kafka, which the one replay engine
//! (`dlq_core::replay::run_to_store`) drives.
//!
//! A submitted batch settles records the store has just scanned and writes
//! replayed records to topics of the same cluster. It returns once the
//! records are handed to librdkafka, so that the engine reads the next page
//! while they travel:
//!
//! * **Exactly once** (transactions): batches submitted within
//!   [`COMMIT_INTERVAL`] share one Kafka transaction (as Kafka Streams
//!   commits every 100 ms under exactly-once), outputs and ledger entries
//!   together. A transaction's commit costs the same for one record as for
//!   thousands; the interval bounds how long read_committed readers wait
//!   behind an open one and how much a crash rolls back.
//! * **At least once** (no transactions): outputs stream through a producer
//!   of their own, and a record's ledger entry is written only once the
//!   broker acknowledged its output. A crash replays the records delivered
//!   but not yet settled (a duplicate, never a loss); an output the target
//!   refuses leaves its record pending and fails the replay once what was
//!   delivered is settled.
//!
//! Batches that append records or carry a checkpoint are committed at once
//! (after whatever was submitted before them).

use crate::KafkaStore;
use crate::client::{Outgoing, base_config, idempotent_producer};
use crate::config::KafkaConfig;
use crate::retry::{Redactor, backend, failure};
use crate::store::PendingSettle;
use dlq_core::store::{Batch, CommitReport, Result, Settle, StoreError, Submitted, Ticket};
use rdkafka::ClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message as _;
use rdkafka::producer::{BaseProducer, DeliveryResult, Producer as _, ProducerContext};
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How long submitted batches share one transaction (exactly once).
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(100);

/// How many outputs may be on their way to the broker at once (at least
/// once): enough to keep the producer's batches full while the next pages
/// are read, few enough that memory stays flat.
const MAX_IN_FLIGHT: usize = 20_000;

/// The store's submitted, not yet reported commits.
#[derive(Default)]
pub(crate) struct Pipeline {
    next_ticket: u64,
    /// Exactly once: the open transaction.
    open: Option<Open>,
    /// At least once: outputs waiting for acknowledgements.
    outputs: Option<Outputs>,
    /// At least once: the ledger write of delivered records under way.
    settling: Option<Open>,
    /// Completed, not reported yet.
    done: Vec<(Ticket, CommitReport)>,
    /// A failure to report from the next `completed`.
    failed: Option<StoreError>,
}

/// A pipelined write under way and the tickets it completes.
struct Open {
    pending: PendingSettle,
    tickets: Vec<(Ticket, usize)>,
    since: Instant,
}

impl Pipeline {
    fn ticket(&mut self) -> Ticket {
        self.next_ticket += 1;
        Ticket(self.next_ticket)
    }
}

impl KafkaStore {
    /// [`DlqStore::submit`](dlq_core::DlqStore::submit) on Kafka.
    pub(crate) fn submit_batch(&mut self, batch: Batch<'_>) -> Result<Submitted> {
        batch.check_supported(dlq_core::DlqStore::capabilities(self), "kafka")?;
        let simple = batch.append.is_empty()
            && batch.checkpoint.is_none()
            && batch.positions.is_empty()
            && !batch.settle.is_empty();
        if !simple {
            self.complete_all()?;
            return self.commit_now(batch).map(Submitted::Done);
        }
        let outputs = self.outgoing(batch.outputs)?;
        if self.config().transactions {
            self.submit_in_transaction(batch.settle, outputs)
        } else if outputs.is_empty() {
            self.complete_all()?;
            self.commit_now(batch).map(Submitted::Done)
        } else {
            self.submit_at_least_once(batch.settle, outputs)
        }
    }

    /// [`DlqStore::completed`](dlq_core::DlqStore::completed) on Kafka.
    pub(crate) fn completed_batches(&mut self, wait: bool) -> Result<Vec<(Ticket, CommitReport)>> {
        let progressed = if wait {
            self.complete_all()
        } else {
            self.progress()
        };
        if let Err(e) = progressed {
            self.pipeline.failed.get_or_insert(e);
        }
        if let Some(e) = self.pipeline.failed.take() {
            return Err(e);
        }
        Ok(std::mem::take(&mut self.pipeline.done))
    }

    /// Completes everything submitted (its reports wait in `done`).
    pub(crate) fn complete_all(&mut self) -> Result<()> {
        if let Some(e) = self.pipeline.failed.take() {
            return Err(e);
        }
        let had_open = self.pipeline.open.is_some();
        if let Some(open) = self.pipeline.open.take() {
            self.finish(open)?;
        }
        if self.pipeline.outputs.is_some() {
            self.pump(true)?;
        }
        if had_open {
            self.await_visible();
        }
        Ok(())
    }

    /// Completes what is due without waiting long: the open transaction
    /// past its interval, ledger writes of acknowledged outputs.
    fn progress(&mut self) -> Result<()> {
        if let Some(open) = self
            .pipeline
            .open
            .take_if(|o| o.since.elapsed() >= COMMIT_INTERVAL)
        {
            self.finish(open)?;
        }
        if self.pipeline.outputs.is_some() {
            self.pump(false)?;
        }
        Ok(())
    }

    /// Commits a pipelined write; its tickets go to `done`.
    fn finish(&mut self, open: Open) -> Result<()> {
        self.finish_settle(open.pending)?;
        self.pipeline
            .done
            .extend(open.tickets.into_iter().map(|(t, settled)| {
                (
                    t,
                    CommitReport {
                        settled,
                        ..CommitReport::default()
                    },
                )
            }));
        Ok(())
    }

    fn submit_in_transaction(
        &mut self,
        settle: &[Settle],
        outputs: Vec<Outgoing>,
    ) -> Result<Submitted> {
        if let Some(open) = self
            .pipeline
            .open
            .take_if(|o| o.since.elapsed() >= COMMIT_INTERVAL)
        {
            self.finish(open)?;
        }
        let ticket = self.pipeline.ticket();
        let open = match self.pipeline.open.take() {
            None => {
                let pending = self.start_settle(settle, outputs)?;
                let n = pending.settled();
                Open {
                    pending,
                    tickets: vec![(ticket, n)],
                    since: Instant::now(),
                }
            }
            Some(mut o) => {
                let before = o.pending.settled();
                o.pending = self.extend_settle(o.pending, settle, outputs)?;
                let n = o.pending.settled() - before;
                o.tickets.push((ticket, n));
                o
            }
        };
        self.pipeline.open = Some(open);
        Ok(Submitted::Pending(ticket))
    }

    fn submit_at_least_once(
        &mut self,
        settle: &[Settle],
        outputs: Vec<Outgoing>,
    ) -> Result<Submitted> {
        if self.pipeline.outputs.is_none() {
            self.pipeline.outputs = Some(Outputs::new(self.config())?);
            // The ledger writes that follow need the store's own producer:
            // both wait for their producer ids at the same time.
            self.warm_up()?;
        }
        let ticket = self.pipeline.ticket();
        if let Some(out) = self.pipeline.outputs.as_mut() {
            out.send(ticket, outputs, settle.to_vec());
            out.wait_below(MAX_IN_FLIGHT);
        }
        self.pump(false)?;
        Ok(Submitted::Pending(ticket))
    }

    /// At least once: writes the settlements of acknowledged pages to the
    /// ledger, into the write under way while it is not acknowledged yet,
    /// else in a new one (finishing the one before). `wait`: until every
    /// output is acknowledged (or given up on) and its settlement written.
    /// Once an output failed, everything under way is settled and the
    /// failure returned.
    fn pump(&mut self, wait: bool) -> Result<()> {
        let wait = wait
            || self
                .pipeline
                .outputs
                .as_ref()
                .is_some_and(|o| o.first_failure.is_some());
        loop {
            let Some(out) = self.pipeline.outputs.as_mut() else {
                return Ok(());
            };
            if wait && out.in_flight > 0 {
                if !out.wait_below_for(out.in_flight, Duration::from_millis(5)) {
                    out.give_up();
                }
            } else {
                out.poll();
            }
            let ready = std::mem::take(&mut out.delivered);
            let all_in = out.in_flight == 0 && out.pages.is_empty();
            if !ready.is_empty() {
                self.settle_delivered(ready)?;
            }
            if !wait {
                return Ok(());
            }
            if all_in {
                if let Some(o) = self.pipeline.settling.take() {
                    self.finish(o)?;
                }
                let failed = self.pipeline.outputs.as_mut().and_then(Outputs::failure);
                return failed.map_or(Ok(()), Err);
            }
        }
    }

    /// Writes the settlements of delivered pages to the ledger.
    fn settle_delivered(&mut self, ready: Vec<(Ticket, Vec<Settle>)>) -> Result<()> {
        let settles: Vec<Settle> = ready.iter().flat_map(|p| p.1.iter().cloned()).collect();
        let tickets: Vec<(Ticket, usize)> = ready.iter().map(|p| (p.0, p.1.len())).collect();
        let open = match self.pipeline.settling.take() {
            Some(mut o) if !self.settle_reported() => {
                o.pending = self.extend_settle(o.pending, &settles, Vec::new())?;
                o.tickets.extend(tickets);
                o
            }
            done => {
                if let Some(o) = done {
                    self.finish(o)?;
                }
                Open {
                    pending: self.start_settle(&settles, Vec::new())?,
                    tickets,
                    since: Instant::now(),
                }
            }
        };
        self.pipeline.settling = Some(open);
        Ok(())
    }
}

/// A delivery report: on failure, the topic and the error.
type Delivered = std::result::Result<(), (String, KafkaError)>;

/// Delivery reports of the outputs' producer, by record token.
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

/// A submitted batch's settlements, waiting for their outputs'
/// acknowledgements.
struct SentPage {
    ticket: Ticket,
    /// The token of the page's first record; the others follow in order.
    first: usize,
    /// `None` once the output failed: that record stays pending.
    settles: Vec<Option<Settle>>,
    /// Which outputs have their delivery report.
    reported: Vec<bool>,
    unacknowledged: usize,
}

/// Outputs on their way to the broker (at least once).
struct Outputs {
    producer: BaseProducer<Acks>,
    redactor: Redactor,
    pages: VecDeque<SentPage>,
    next_token: usize,
    in_flight: usize,
    /// Fully acknowledged pages: ticket and the settlements of the records
    /// delivered, in submission order.
    delivered: Vec<(Ticket, Vec<Settle>)>,
    failed: u64,
    first_failure: Option<(String, String)>,
    /// How long a delivery may take before the wait gives up.
    timeout: Duration,
    /// When the last acknowledgement came, or the last page was sent.
    last_ack: Instant,
}

impl Outputs {
    fn new(config: &KafkaConfig) -> Result<Outputs> {
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

    /// Hands a batch's outputs to librdkafka (waiting for room in its
    /// queue when it is full); their settlements wait for the
    /// acknowledgements.
    fn send(&mut self, ticket: Ticket, outputs: Vec<Outgoing>, settles: Vec<Settle>) {
        // A stall is measured from the last send or acknowledgement.
        self.last_ack = Instant::now();
        let first = self.next_token;
        self.next_token += outputs.len();
        self.in_flight += outputs.len();
        self.pages.push_back(SentPage {
            ticket,
            first,
            unacknowledged: outputs.len(),
            reported: vec![false; settles.len()],
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
        self.poll();
    }

    fn poll(&mut self) {
        self.producer.poll(Duration::ZERO);
        self.take_acks();
    }

    /// Waits until fewer than `limit` outputs are unacknowledged (or the
    /// delivery timeout passed without any acknowledgement).
    fn wait_below(&mut self, limit: usize) {
        while self.in_flight >= limit.max(1) {
            if !self.wait_below_for(limit, Duration::from_millis(100)) {
                self.give_up();
                break;
            }
        }
    }

    /// Waits up to `step` for fewer than `limit` outputs to be
    /// unacknowledged; false once no acknowledgement came for longer than
    /// the delivery timeout (librdkafka reports every record by then, so it
    /// is stuck).
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
        !(self.in_flight > 0 && self.last_ack.elapsed() > self.timeout + Duration::from_secs(5))
    }

    /// Stuck past the delivery timeout: the unacknowledged outputs count
    /// as not delivered; their records stay pending.
    fn give_up(&mut self) {
        tracing::error!(
            in_flight = self.in_flight,
            "replay outputs unacknowledged past the delivery timeout; they stay pending"
        );
        let waiting: Vec<usize> = self
            .pages
            .iter()
            .flat_map(|p| {
                p.reported
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| !**r)
                    .map(move |(i, _)| p.first + i)
            })
            .collect();
        for token in waiting {
            let e = KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut);
            self.acknowledged(token, Err(("the target".to_owned(), e)));
        }
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
        let i = token - page.first;
        let (Some(slot), Some(reported)) = (page.settles.get_mut(i), page.reported.get_mut(i))
        else {
            return;
        };
        if std::mem::replace(reported, true) {
            return;
        }
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
                self.delivered
                    .push((done.ticket, done.settles.into_iter().flatten().collect()));
            }
        }
    }

    /// The error for the outputs that could not be delivered, if any.
    fn failure(&mut self) -> Option<StoreError> {
        let (topic, error) = self.first_failure.take()?;
        Some(failure(
            format!(
                "kafka:{topic}: {} records not delivered, they stay pending; the first: {error}",
                self.failed
            ),
            false,
        ))
    }
}
