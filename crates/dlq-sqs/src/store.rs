//! [`SqsStore`]: DLQs that are SQS queues, with a local index.
//!
//! SQS cannot peek, address a message by id, or keep a message after it is
//! deleted; the store contract needs all three. So the store is two parts:
//!
//! * **the queues**, which hold every record that is pending or parked:
//!   what the redrive policy, the producers and other tools see;
//! * **the index**, an embedded SQLite store (`state=PATH`), which holds a
//!   copy of every record read or written with its status, the settled
//!   history (replayed, discarded, archived) and the checkpoints.
//!
//! **Reading** (a *pass*) receives every visible message of a queue with a
//! short visibility lease (`lease=SECONDS`), copies the ones the index does
//! not know into it, and then makes every message it holds visible again at
//! once (ChangeMessageVisibility 0). A read deletes nothing the index does
//! not hold as settled, and loses nothing: a reader killed mid-pass leaves
//! its messages hidden until their lease runs out. Each read adds one to
//! the messages' `ApproximateReceiveCount`: a DLQ with a redrive policy of
//! its own would move them on after enough reads (give DLQs none).
//!
//! **Settling** writes the status to the index first (durable, the point of
//! truth), then deletes the settled records' messages from their queue (a
//! pass that stops once it found them all). A store killed between the two
//! leaves settled messages in the queue; the next pass over the queue
//! deletes them, and until then the index keeps them out of every scan.
//!
//! **Appending** sends each new record (a record the index already holds is
//! a duplicate and is not sent) and then writes it to the index with the
//! rest of the batch. A store killed between the two leaves the message in
//! the queue, and the next pass copies it into the index: never lost, at
//! worst appended again by a retry, which a pass then deletes as a copy of
//! the same id.

use crate::client::{Client, Outgoing, name_of_url};
use crate::codec;
use crate::config::{SqsConfig, queue_name, queue_of_arn};
use crate::errors::Result;
use aws_sdk_sqs::types::QueueAttributeName;
use dlq_core::store::{
    Batch, Capabilities, CommitReport, Cursor, DlqStats, DlqStore, Entry, ScanPage, Selection,
    Settle, Status, StoredRecord, can_settle,
};
use dlq_sqlite::{SqliteOptions, SqliteStore};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};

/// What a queue's attributes say about its messages right now (all
/// approximate, as SQS reports them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueCounts {
    /// Messages ready to be received (`ApproximateNumberOfMessages`).
    pub visible: u64,
    /// Messages received and not yet deleted or released
    /// (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
    /// Messages sent with a delay not yet over
    /// (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: u64,
}

impl QueueCounts {
    /// The counts SQS reports for the queue of `dlq` (one
    /// `GetQueueAttributes`, which neither receives nor hides a message),
    /// or `None` when there is no such queue.
    ///
    /// # Errors
    ///
    /// SQS failed, or `dlq` maps to no queue name.
    pub fn of(client: &Client, dlq: &str) -> Result<Option<QueueCounts>> {
        let Some(url) = client.queue_url(&queue_name(dlq)?)? else {
            return Ok(None);
        };
        let attrs = client.attributes(&url)?;
        let n = |a: QueueAttributeName| attrs.get(&a).and_then(|v| v.parse().ok()).unwrap_or(0);
        Ok(Some(QueueCounts {
            visible: n(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: n(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: n(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        }))
    }
}

/// A DLQ store on Amazon SQS (or ElasticMQ), see the module docs.
pub struct SqsStore {
    config: SqsConfig,
    client: Client,
    index: Mutex<SqliteStore>,
}

impl std::fmt::Debug for SqsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqsStore")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// What one pass over a queue is for.
enum Goal {
    /// Copy every message into the index.
    Read,
    /// Delete the messages of these settled ids; stop once all are found.
    Delete(HashSet<String>),
}

impl SqsStore {
    /// Opens the store: the SQS client (credentials from the standard AWS
    /// chain) and the local index at `config.state`.
    ///
    /// # Errors
    ///
    /// The index cannot be opened, or the client cannot start.
    pub fn open(config: SqsConfig) -> Result<SqsStore> {
        let mut index = SqliteStore::open(&config.state, SqliteOptions::default())?;
        bind_index(&mut index, &config)?;
        let client = Client::new(&config)?;
        Ok(SqsStore {
            config,
            client,
            index: Mutex::new(index),
        })
    }

    /// Opens the store of an `sqs://` URL.
    ///
    /// # Errors
    ///
    /// An invalid URL, or what [`SqsStore::open`] reports.
    pub fn open_url(url: &str) -> Result<SqsStore> {
        SqsStore::open(SqsConfig::from_url(url)?)
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &SqsConfig {
        &self.config
    }

    /// The SQS client (for replay targets on the same account).
    pub fn client(&self) -> &Client {
        &self.client
    }

    fn index(&self) -> MutexGuard<'_, SqliteStore> {
        self.index
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The counts SQS reports for the queue of `dlq`, or `None` when there
    /// is no such queue.
    ///
    /// # Errors
    ///
    /// SQS failed.
    pub fn queue_counts(&self, dlq: &str) -> Result<Option<QueueCounts>> {
        QueueCounts::of(&self.client, dlq)
    }

    /// The queues that some queue's redrive policy names as its dead
    /// letter target (among the queues of `prefix=`).
    ///
    /// # Errors
    ///
    /// SQS failed.
    pub fn redrive_targets(&self) -> Result<Vec<String>> {
        let urls = self.client.list_queues(self.config.prefix.as_deref())?;
        let names: HashSet<&str> = urls.iter().map(|u| name_of_url(u)).collect();
        let mut targets = BTreeSet::new();
        for url in &urls {
            let attrs = self.client.attributes(url)?;
            let Some(policy) = attrs.get(&QueueAttributeName::RedrivePolicy) else {
                continue;
            };
            let target = serde_json::from_str::<serde_json::Value>(policy)
                .ok()
                .and_then(|p| p.get("deadLetterTargetArn")?.as_str().map(str::to_owned));
            if let Some(name) = target.as_deref().and_then(queue_of_arn)
                && names.contains(name)
            {
                targets.insert(name.to_owned());
            }
        }
        Ok(targets.into_iter().collect())
    }

    /// Reads every message of the queue of `dlq` into the index (see the
    /// module docs: leases released at once, nothing deleted that the index
    /// does not hold as settled).
    ///
    /// # Errors
    ///
    /// SQS or the index failed; what was copied stays copied.
    pub fn sync(&self, dlq: &str) -> Result<()> {
        let queue = queue_name(dlq)?;
        // Messages another reader holds are invisible to this pass. A DLQ
        // has no consumers, so those are another dlq's pass (well under a
        // second): wait for them a little, then read what came back.
        let patience = std::time::Duration::from_secs(2);
        let started = std::time::Instant::now();
        loop {
            self.pass(&queue, Goal::Read)?;
            let in_flight = self.queue_counts(&queue)?.map_or(0, |c| c.in_flight);
            if in_flight == 0 || started.elapsed() >= patience {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    fn pass(&self, queue: &str, mut goal: Goal) -> Result<()> {
        let Some(url) = self.client.queue_url(queue)? else {
            return Ok(());
        };
        let mut hold = Vec::new();
        let mut delete = Vec::new();
        let mut imports: Vec<Entry> = Vec::new();
        let mut messages_seen = HashSet::new();
        let mut ids_seen = HashSet::new();
        let mut empty = 0;
        let result = (|| -> Result<()> {
            loop {
                if let Goal::Delete(ids) = &goal
                    && ids.is_empty()
                {
                    return Ok(());
                }
                let messages = self.client.receive(&url, self.config.lease_secs)?;
                if messages.is_empty() {
                    // SQS answers a short poll from a sample of its servers:
                    // an empty answer is final only when the queue says so.
                    empty += 1;
                    let counts = self.queue_counts(queue)?.unwrap_or_default();
                    if counts.visible == 0 || empty >= 5 {
                        return Ok(());
                    }
                    continue;
                }
                let mut messages = messages;
                // Claim checks resolved first: a failure gives the whole
                // receive back at once, hiding nothing until its lease ends.
                if let Err(e) = messages
                    .iter_mut()
                    .try_for_each(|m| crate::claims::resolve(&self.client, m))
                {
                    hold.extend(
                        messages
                            .iter()
                            .map(|m| m.receipt_handle().unwrap_or_default().to_owned()),
                    );
                    return Err(e);
                }
                let mut wrapped = false;
                for m in messages {
                    let handle = m.receipt_handle().unwrap_or_default().to_owned();
                    if !messages_seen.insert(m.message_id().unwrap_or_default().to_owned()) {
                        // Our own lease ran out: the pass has gone round.
                        wrapped = true;
                        hold.push(handle);
                        continue;
                    }
                    let (letter, status) = codec::decode(&m);
                    if !ids_seen.insert(letter.id.clone()) {
                        // A second message of one record (an append retried
                        // after a crash): the first one stands for it.
                        delete.push(handle);
                        continue;
                    }
                    let known = self.index().get(queue, &letter.id)?.map(|r| r.status);
                    match known {
                        None => {
                            imports.push(Entry {
                                dlq: queue.to_owned(),
                                letter,
                                status,
                            });
                            hold.push(handle);
                        }
                        Some(Status::Replayed | Status::Discarded | Status::Archived) => {
                            if let Goal::Delete(ids) = &mut goal {
                                ids.remove(&letter.id);
                            }
                            delete.push(handle);
                        }
                        Some(_) => hold.push(handle),
                    }
                }
                if wrapped {
                    return Ok(());
                }
            }
        })();
        // Whatever happened: copy first, then delete what is settled (or a
        // copy of a message that stays), then give back what is held, each
        // step tried even when one before failed, so that no message is
        // lost or hidden longer than its lease on any path.
        let imported = if imports.is_empty() {
            Ok(())
        } else {
            self.index().append(&imports).map(|_| ())
        };
        let deleted = self.client.delete(&url, &delete);
        let released = self.client.release(&url, &hold);
        result.and(imported).and(deleted).and(released)
    }

    /// Every DLQ: those in the index and the redrive targets.
    fn known_dlqs(&self) -> Result<Vec<String>> {
        let mut all: BTreeSet<String> = self.index().dlqs()?.into_iter().collect();
        all.extend(self.redrive_targets()?);
        Ok(all.into_iter().collect())
    }

    fn map_selection(selection: &Selection) -> Result<Selection> {
        let mut mapped = selection.clone();
        if let Some(dlq) = &selection.dlq {
            mapped.dlq = Some(queue_name(dlq)?);
        }
        Ok(mapped)
    }
}

impl DlqStore for SqsStore {
    fn capabilities(&self) -> Capabilities {
        // A send to another queue cannot be undone with the index write.
        Capabilities::default()
    }

    fn commit(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        batch.check_supported(self.capabilities(), "sqs")?;
        let append: Vec<Entry> = batch
            .append
            .iter()
            .map(|e| {
                Ok(Entry {
                    dlq: queue_name(&e.dlq)?,
                    ..e.clone()
                })
            })
            .collect::<Result<_>>()?;
        let settle: Vec<Settle> = batch
            .settle
            .iter()
            .map(|s| {
                Ok(Settle {
                    dlq: queue_name(&s.dlq)?,
                    ..s.clone()
                })
            })
            .collect::<Result<_>>()?;

        // Which appends are new, and the status each ends the batch with:
        // a record settled in its own batch never goes to the queue.
        let mut fresh: Vec<(&Entry, Status)> = Vec::new();
        {
            let index = self.index();
            let mut seen = HashSet::new();
            for e in &append {
                if seen.insert((&e.dlq, &e.letter.id)) && index.get(&e.dlq, &e.letter.id)?.is_none()
                {
                    fresh.push((e, e.status));
                }
            }
        }
        for s in &settle {
            for (e, status) in &mut fresh {
                if e.dlq == s.dlq && e.letter.id == s.id && can_settle(*status, s.outcome) {
                    *status = s.outcome;
                }
            }
        }
        let mut sends: HashMap<&str, Vec<Outgoing>> = HashMap::new();
        for (e, status) in &fresh {
            if matches!(status, Status::Pending | Status::Parked) {
                let mut enc =
                    codec::encode_with(&e.letter, e.status, self.config.claims.is_some())?;
                if enc.offload
                    && let Some(claims) = &self.config.claims
                {
                    let key = crate::claims::object_key(claims, &e.dlq, &e.letter.id);
                    crate::claims::offload(
                        &self.client,
                        claims,
                        &key,
                        &mut enc.body,
                        &mut enc.attributes,
                    )?;
                }
                sends.entry(&e.dlq).or_default().push(Outgoing {
                    group: e.dlq.ends_with(".fifo").then(|| fifo_group(&e.letter)),
                    dedup: e.dlq.ends_with(".fifo").then(|| fifo_dedup(&e.letter.id)),
                    body: enc.body,
                    attributes: enc.attributes,
                });
            }
        }
        for (queue, messages) in &sends {
            let url = self.client.ensure_queue(queue)?;
            self.client.send(&url, messages)?;
        }

        let report = self.index().commit(Batch {
            append: &append,
            settle: &settle,
            checkpoint: batch.checkpoint,
            ..Batch::default()
        })?;

        // The settlement is durable in the index; deleting the messages is
        // the queues catching up. A failure here leaves them for the next
        // pass, which deletes them (the index keeps them out of scans).
        let mut to_delete: HashMap<&str, HashSet<String>> = HashMap::new();
        for s in &settle {
            if matches!(
                s.outcome,
                Status::Replayed | Status::Discarded | Status::Archived
            ) && !fresh
                .iter()
                .any(|(e, _)| e.dlq == s.dlq && e.letter.id == s.id)
            {
                to_delete.entry(&s.dlq).or_default().insert(s.id.clone());
            }
        }
        for (queue, ids) in to_delete {
            if let Err(e) = self.pass(queue, Goal::Delete(ids)) {
                tracing::warn!(
                    queue,
                    error = %e,
                    "settled records stay in their SQS queue until the next read deletes them"
                );
            }
        }
        Ok(report)
    }

    fn scan(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<ScanPage> {
        // The first page reads the queues; later pages read the index, so
        // that a scan sees each record once, in a stable order (records a
        // pass adds come after every cursor). A FIFO queue shows a reader
        // only the first messages of each group until they are deleted:
        // every page reads it again, so that a replay, which deletes what
        // it replayed before it asks for the next page, works through it.
        let dlqs = match &selection.dlq {
            Some(dlq) => vec![queue_name(dlq)?],
            None => self.known_dlqs()?,
        };
        for dlq in dlqs {
            if after.is_none() || dlq.ends_with(".fifo") {
                self.sync(&dlq)?;
            }
        }
        self.index()
            .scan(&Self::map_selection(selection)?, after, limit)
    }

    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>> {
        let queue = queue_name(dlq)?;
        if let Some(r) = self.index().get(&queue, id)? {
            return Ok(Some(r));
        }
        self.sync(&queue)?;
        self.index().get(&queue, id)
    }

    fn stats(&self) -> Result<Vec<DlqStats>> {
        // Counted from the index, which also knows settled records. A queue
        // is read first only when SQS counts other than the index holds
        // (new messages, settled ones not yet deleted): a monitor sampling
        // every few seconds costs one GetQueueAttributes per DLQ, and adds
        // nothing to the messages' receive counts, while nothing changes.
        let held: HashMap<String, u64> = self
            .index()
            .stats()?
            .into_iter()
            .map(|s| (s.dlq, s.pending + s.parked))
            .collect();
        for dlq in self.known_dlqs()? {
            let in_queue = self
                .queue_counts(&dlq)?
                .map_or(0, |c| c.visible + c.in_flight + c.delayed);
            if held.get(&dlq).copied().unwrap_or(0) != in_queue {
                self.sync(&dlq)?;
            }
        }
        self.index().stats()
    }

    fn dlqs(&self) -> Result<Vec<String>> {
        self.known_dlqs()
    }

    fn checkpoint(&self, name: &str) -> Result<Option<String>> {
        self.index().checkpoint(name)
    }
}

/// The checkpoint that ties an index to the SQS it describes.
const INDEX_OWNER: &str = "dlq-sqs:queues";

/// Ties a new index to the region and endpoint of `config`, and refuses an
/// index of other queues: its settled ids would delete messages of queues
/// that happen to share a name (the same names in a test server and AWS).
fn bind_index(index: &mut SqliteStore, config: &SqsConfig) -> Result<()> {
    let owner = format!(
        "{} {}",
        config.region,
        config.endpoint.as_deref().unwrap_or("aws")
    );
    match index.checkpoint(INDEX_OWNER)? {
        Some(o) if o == owner => Ok(()),
        Some(o) => Err(dlq_core::store::StoreError::Backend {
            backend: "sqs",
            message: format!(
                "the index {} belongs to the queues of {o}, not {owner}: give each region \
                 and endpoint its own state=PATH",
                config.state.display()
            ),
            retryable: false,
        }),
        None => index
            .commit(Batch {
                checkpoint: Some((INDEX_OWNER, &owner)),
                ..Batch::default()
            })
            .map(|_| ()),
    }
}

/// The message group of a record sent to a FIFO queue: its key (an SQS
/// record's own `MessageGroupId`), else one group per DLQ record source.
pub fn fifo_group(letter: &dlq_core::DeadLetter) -> String {
    letter
        .key
        .as_deref()
        .and_then(|k| std::str::from_utf8(k).ok())
        .filter(|k| !k.is_empty() && k.len() <= 128 && codec::is_sqs_text(k))
        .map_or_else(|| "dlq".to_owned(), str::to_owned)
}

/// A FIFO deduplication id for a record id: its SHA-256 (SQS allows 128
/// characters of a limited alphabet; ids may be longer or use others).
pub fn fifo_dedup(id: &str) -> String {
    dlq_core::envelope::sha256_hex(id.as_bytes())
}
