//! [`S3Store`]: the [`DlqStore`] implementation.

use crate::client::{Client, Content, Put, Written};
use crate::config::S3Config;
use crate::errors::{BACKEND, contended, corrupt};
use crate::layout::Layout;
use crate::state::{
    CheckpointEntry, LogEntry, ObjectEntry, Record, RecordEntry, SettleEntry, State, time,
};
use chrono::{DurationRound as _, Utc};
use dlq_core::envelope::{self, EncodeOptions, Encoded};
use dlq_core::store::{
    Batch, Capabilities, CommitReport, Cursor, DlqStats, DlqStore, Entry, PartitionStats, Result,
    ScanPage, Selection, Status, StoreError, StoredRecord, can_settle,
};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::sync::{Arc, Mutex, MutexGuard};

/// Attempts of one commit against writers that keep committing first.
const COMMIT_ATTEMPTS: usize = 16;

/// Whether the S3 endpoint enforces conditional writes (`If-None-Match: *`
/// on PutObject), found out when the store opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConditionalWrites {
    /// A second create of the same key fails (AWS S3 since 2024): any
    /// number of writers may commit concurrently.
    Enforced,
    /// The header is accepted but a second create overwrites (S3Proxy):
    /// one writer at a time.
    Ignored,
    /// The header is refused (501): dlq writes without it; one writer at
    /// a time.
    Refused,
}

/// A DLQ store in an S3 bucket: dead letters as gzip NDJSON objects
/// partitioned Hive-style by DLQ, day and hour, and a commit log that
/// holds which records exist and how they stand. See the crate docs.
#[derive(Debug)]
pub struct S3Store {
    client: Client,
    config: S3Config,
    layout: Layout,
    /// This instance, in the log entries it writes.
    writer: String,
    conditional: ConditionalWrites,
    options: EncodeOptions,
    state: Mutex<State>,
    /// The last data object read, split into lines: a scan reads the
    /// records of one object one after another.
    cache: Mutex<Option<(usize, Lines)>>,
    /// Whether the unenforced conditional writes were warned about (once,
    /// at the first commit: readers are safe).
    warned: std::sync::atomic::AtomicBool,
}

/// A data object's lines (envelopes), shared between the cache and a scan.
type Lines = Arc<Vec<Vec<u8>>>;

impl S3Store {
    /// Opens the store at `config` with credentials and region from the
    /// standard AWS chain (environment, shared profile, SSO, instance role).
    ///
    /// # Errors
    ///
    /// A missing bucket, a missing region, an unreachable endpoint, denied
    /// access, or a commit log dlq cannot read.
    pub fn open(config: S3Config) -> Result<S3Store> {
        S3Store::open_inner(config, None)
    }

    /// Opens the store with an AWS SDK configuration of the caller's (its
    /// credentials provider and region), for programs that build their own.
    ///
    /// # Errors
    ///
    /// As [`S3Store::open`].
    pub fn open_with_sdk_config(config: S3Config, sdk: aws_config::SdkConfig) -> Result<S3Store> {
        S3Store::open_inner(config, Some(sdk))
    }

    fn open_inner(config: S3Config, sdk: Option<aws_config::SdkConfig>) -> Result<S3Store> {
        let client = Client::new(&config, sdk)?;
        client.check_bucket()?;
        let layout = Layout::new(&config.prefix);
        let conditional = probe(&client, &layout)?;
        let store = S3Store {
            state: Mutex::new(State::default()),
            cache: Mutex::new(None),
            warned: std::sync::atomic::AtomicBool::new(false),
            writer: uuid::Uuid::new_v4().simple().to_string(),
            options: EncodeOptions::default(),
            client,
            layout,
            conditional,
            config,
        };
        {
            let mut state = store.lock_state();
            *state = store.load_snapshot()?;
            store.refresh(&mut state)?;
        }
        Ok(store)
    }

    /// What the endpoint does with conditional writes (see
    /// [`ConditionalWrites`]).
    pub fn conditional_writes(&self) -> ConditionalWrites {
        self.conditional
    }

    /// The store's configuration.
    pub fn config(&self) -> &S3Config {
        &self.config
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while the state was locked leaves it at a log version it
        // fully applied or not at all (apply checks before it changes).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The newest snapshot the hint names, or an empty state.
    fn load_snapshot(&self) -> Result<State> {
        let Some((hint, _)) = self.client.get(&self.layout.snapshot_hint())? else {
            return Ok(State::default());
        };
        let version = std::str::from_utf8(&hint)
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .ok_or_else(|| corrupt("the snapshot hint is not a version number"))?;
        let key = self.layout.snapshot(version);
        match self.client.get(&key)? {
            Some((gz, _)) => State::from_snapshot(&gunzip(&gz, &key)?),
            // Only a hint: the log holds everything from version 1.
            None => Ok(State::default()),
        }
    }

    /// Applies the log entries written since `state.version`.
    fn refresh(&self, state: &mut State) -> Result<()> {
        let after = self.layout.log(state.version);
        let keys = self
            .client
            .list_after(&self.layout.log_dir(), Some(&after))?;
        for key in keys {
            let Some(version) = self.layout.log_version(&key) else {
                continue;
            };
            if version <= state.version {
                continue;
            }
            let (json, _) = self
                .client
                .get(&key)?
                .ok_or_else(|| corrupt(format!("log entry {key:?} was listed but is gone")))?;
            let entry: LogEntry = serde_json::from_slice(&json)
                .map_err(|e| corrupt(format!("log entry {key:?}: {e}")))?;
            if entry.version != version {
                return Err(corrupt(format!(
                    "log entry {key:?} says it is version {}",
                    entry.version
                )));
            }
            state.apply(&entry)?;
        }
        Ok(())
    }

    /// The lines of data object `object`.
    fn lines(&self, object: usize, key: &str) -> Result<Lines> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((o, lines)) = cache.as_ref()
            && *o == object
        {
            return Ok(Arc::clone(lines));
        }
        let (gz, _) = self.client.get(key)?.ok_or_else(|| {
            corrupt(format!(
                "data object {key:?} is in the log but not in the bucket"
            ))
        })?;
        let text = gunzip(&gz, key)?;
        let mut lines: Vec<Vec<u8>> = text.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
        if lines.last().is_some_and(Vec::is_empty) {
            lines.pop();
        }
        let lines = Arc::new(lines);
        *cache = Some((object, Arc::clone(&lines)));
        Ok(lines)
    }

    fn materialize(&self, state: &State, record: &Record) -> Result<StoredRecord> {
        let key = &state.objects[record.object];
        let lines = self.lines(record.object, key)?;
        let line = lines.get(record.line).ok_or_else(|| {
            corrupt(format!(
                "data object {key:?} has no line {} for record {:?}",
                record.line + 1,
                record.id
            ))
        })?;
        let mut letter = envelope::decode(line, &record.id);
        letter.resolve_claims(|c| {
            self.client
                .get(&self.layout.blob(&c.sha256))
                .map(|found| found.map(|(bytes, _)| bytes))
                .map_err(|e| dlq_core::envelope::ClaimError::Store {
                    pointer: c.pointer.clone(),
                    message: e.to_string(),
                })
        })?;
        Ok(StoredRecord {
            dlq: record.dlq.clone(),
            status: record.status,
            stored_at: time(record.stored_at_ms),
            settled_at: record.settled_at_ms.map(time),
            letter,
        })
    }

    /// Writes the log entry of `version`, unless another writer did first.
    fn put_log_entry(&self, version: u64, json: Vec<u8>) -> Result<Written> {
        let key = self.layout.log(version);
        match self.conditional {
            ConditionalWrites::Enforced => {
                self.client.put(&key, json, Put::IfAbsent, Content::Json)
            }
            ConditionalWrites::Ignored | ConditionalWrites::Refused => {
                // Without enforcement, a check right before the write is the
                // best there is: it narrows the race, it does not close it.
                if self.client.exists(&key)? {
                    return Ok(Written::Conflict);
                }
                let mode = if self.conditional == ConditionalWrites::Ignored {
                    Put::IfAbsent
                } else {
                    Put::Always
                };
                self.client.put(&key, json, mode, Content::Json)
            }
        }
    }

    fn write_snapshot(&self, state: &State) -> Result<()> {
        let json = state.to_snapshot()?;
        let key = self.layout.snapshot(state.version);
        self.client
            .put(&key, gzip(&json, &key)?, Put::Always, Content::GzipJson)?;
        self.client.put(
            &self.layout.snapshot_hint(),
            state.version.to_string().into_bytes(),
            Put::Always,
            Content::Json,
        )?;
        Ok(())
    }
}

/// Finds out whether the endpoint enforces `If-None-Match: *`: creates a
/// probe object twice.
fn probe(client: &Client, layout: &Layout) -> Result<ConditionalWrites> {
    let key = layout.probe(&uuid::Uuid::new_v4().simple().to_string());
    let first = client.put(&key, b"1".to_vec(), Put::IfAbsent, Content::Bytes)?;
    let found = match first {
        Written::Unconditional => ConditionalWrites::Refused,
        Written::Conflict => ConditionalWrites::Enforced,
        Written::Yes => match client.put(&key, b"2".to_vec(), Put::IfAbsent, Content::Bytes)? {
            Written::Conflict => ConditionalWrites::Enforced,
            Written::Yes => ConditionalWrites::Ignored,
            Written::Unconditional => ConditionalWrites::Refused,
        },
    };
    if first != Written::Unconditional {
        client.delete(&key)?;
    }
    Ok(found)
}

fn gzip(bytes: &[u8], key: &str) -> Result<Vec<u8>> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 4 + 64),
        Compression::default(),
    );
    enc.write_all(bytes)
        .and_then(|()| enc.finish())
        .map_err(|e| corrupt(format!("compressing {key:?}: {e}")))
}

fn gunzip(bytes: &[u8], key: &str) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(bytes.len() * 4);
    MultiGzDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(|e| corrupt(format!("object {key:?} is not valid gzip: {e}")))?;
    Ok(out)
}

/// One DLQ's part of a commit being planned.
struct PlannedObject {
    dlq: String,
    records: Vec<RecordEntry>,
    body: Vec<u8>,
}

impl DlqStore for S3Store {
    fn capabilities(&self) -> Capabilities {
        // Objects in a bucket and records in a topic or queue cannot share
        // one atomic write.
        Capabilities::default()
    }

    fn commit(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        batch.check_supported(self.capabilities(), BACKEND)?;
        if self.conditional != ConditionalWrites::Enforced
            && !self.warned.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                store = %self.config.url(),
                "the S3 endpoint does not enforce conditional writes: run one writer at a time"
            );
        }
        if let Some(e) = batch.append.iter().find(|e| e.dlq.is_empty()) {
            return Err(StoreError::Backend {
                backend: BACKEND,
                message: format!("record {:?} names no DLQ", e.letter.id),
                retryable: false,
            });
        }
        // Encode everything before writing anything: a record that cannot
        // be encoded fails the whole batch, untouched.
        let encoded: Vec<Encoded> = batch
            .append
            .iter()
            .map(|e| envelope::encode(&e.letter, &self.options))
            .collect::<std::result::Result<_, _>>()?;
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for _ in 0..COMMIT_ATTEMPTS {
            self.refresh(&mut state)?;
            let version = state.version + 1;
            let now = Utc::now();
            let now = now
                .duration_trunc(chrono::TimeDelta::milliseconds(1))
                .unwrap_or(now);
            let (report, objects, settles) = plan(&state, batch.append, &encoded, batch.settle);
            if objects.is_empty() && settles.is_empty() && batch.checkpoint.is_none() {
                return Ok(report);
            }
            // Blobs and data objects first: a log entry never points at
            // something that is not there yet.
            for enc in &encoded {
                for blob in &enc.blobs {
                    let key = self.layout.blob(&blob.sha256);
                    self.client
                        .put(&key, blob.bytes.clone(), Put::Always, Content::Bytes)?;
                }
            }
            let mut entry = LogEntry {
                version,
                writer: self.writer.clone(),
                committed_at_ms: now.timestamp_millis(),
                objects: Vec::with_capacity(objects.len()),
                settles,
                checkpoint: batch.checkpoint.map(|(name, value)| CheckpointEntry {
                    name: name.to_owned(),
                    value: value.to_owned(),
                }),
            };
            for object in objects {
                let key = self.layout.data(&object.dlq, now, version, &self.writer);
                self.client.put(
                    &key,
                    gzip(&object.body, &key)?,
                    Put::Always,
                    Content::GzipNdjson,
                )?;
                entry.objects.push(ObjectEntry {
                    dlq: object.dlq,
                    key,
                    records: object.records,
                });
            }
            let json = serde_json::to_vec(&entry)
                .map_err(|e| corrupt(format!("encoding log entry {version}: {e}")))?;
            // An error here leaves the data objects in place: the entry may
            // have been written before the connection failed, and then they
            // are the commit's records (the next refresh applies it).
            match self.put_log_entry(version, json)? {
                Written::Yes | Written::Unconditional => {
                    state.apply(&entry)?;
                    if version.is_multiple_of(self.config.snapshot_every)
                        && let Err(e) = self.write_snapshot(&state)
                    {
                        // The commit is durable in the log; a missing
                        // snapshot only makes the next open read more of it.
                        tracing::warn!(error = %e, version, "writing a state snapshot failed");
                    }
                    return Ok(report);
                }
                Written::Conflict => {
                    // Another writer took this version: our objects are
                    // referenced by nothing; remove them and plan again on
                    // the state that includes the other commit.
                    for o in &entry.objects {
                        if let Err(e) = self.client.delete(&o.key) {
                            tracing::warn!(error = %e, key = %o.key, "removing an unreferenced data object failed");
                        }
                    }
                }
            }
        }
        Err(contended(format!(
            "other writers committed first {COMMIT_ATTEMPTS} times in a row"
        )))
    }

    fn scan(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
    ) -> Result<ScanPage> {
        let start = match after {
            Some(c) => c.0.parse::<usize>().map_err(|_| StoreError::Backend {
                backend: BACKEND,
                message: format!("scan cursor {:?} is not one of this store's", c.0),
                retryable: false,
            })?,
            None => 0,
        };
        let mut state = self.lock_state();
        if after.is_none() || start >= state.records.len() {
            // A scan sees the log as of its first page; records committed
            // later come after its end, in log order, on the next scan. A
            // cursor past what this instance knows comes from one that read
            // more of the log (cursors are positions in the log's order,
            // the same for every instance).
            self.refresh(&mut state)?;
        }
        let mut page = ScanPage::default();
        for (i, record) in state.records.iter().enumerate().skip(start) {
            if page.records.len() >= limit {
                page.next = Some(Cursor(i.to_string()));
                return Ok(page);
            }
            let cheap = selection.dlq.as_deref().is_none_or(|d| d == record.dlq)
                && selection.wants_status(record.status);
            if !cheap {
                continue;
            }
            let stored = self.materialize(&state, record)?;
            if selection.matches(&stored) {
                page.records.push(stored);
            }
        }
        Ok(page)
    }

    fn get(&self, dlq: &str, id: &str) -> Result<Option<StoredRecord>> {
        let mut state = self.lock_state();
        self.refresh(&mut state)?;
        match state.find(dlq, id) {
            Some(i) => Ok(Some(self.materialize(&state, &state.records[i])?)),
            None => Ok(None),
        }
    }

    fn stats(&self) -> Result<Vec<DlqStats>> {
        let mut state = self.lock_state();
        self.refresh(&mut state)?;
        let mut by_dlq: BTreeMap<&str, (DlqStats, BTreeMap<i32, u64>)> = BTreeMap::new();
        for r in &state.records {
            let (s, parts) = by_dlq
                .entry(&r.dlq)
                .or_insert_with(|| (DlqStats::empty(&r.dlq), BTreeMap::new()));
            s.total += 1;
            match r.status {
                Status::Pending => {
                    s.pending += 1;
                    let at = time(r.failed_at_ms);
                    s.oldest_pending_at = Some(s.oldest_pending_at.map_or(at, |o| o.min(at)));
                    *parts.entry(r.partition.unwrap_or(-1)).or_default() += 1;
                }
                Status::Parked => s.parked += 1,
                Status::Replayed => s.replayed += 1,
                Status::Discarded => s.discarded += 1,
                Status::Archived => s.archived += 1,
            }
        }
        Ok(by_dlq
            .into_values()
            .map(|(mut s, parts)| {
                s.partitions = parts
                    .into_iter()
                    .map(|(partition, pending)| PartitionStats { partition, pending })
                    .collect();
                s
            })
            .collect())
    }

    fn dlqs(&self) -> Result<Vec<String>> {
        Ok(self.stats()?.into_iter().map(|s| s.dlq).collect())
    }

    fn checkpoint(&self, name: &str) -> Result<Option<String>> {
        let mut state = self.lock_state();
        self.refresh(&mut state)?;
        Ok(state.checkpoints.get(name).cloned())
    }
}

/// What a batch changes on `state`: the report, one object per DLQ with
/// new records (in the order the DLQs first appear), the settlements that
/// change a status.
fn plan(
    state: &State,
    append: &[Entry],
    encoded: &[Encoded],
    settle: &[dlq_core::store::Settle],
) -> (CommitReport, Vec<PlannedObject>, Vec<SettleEntry>) {
    let mut report = CommitReport::default();
    let mut objects: Vec<PlannedObject> = Vec::new();
    let mut new: HashMap<(&str, &str), Status> = HashMap::new();
    for (entry, enc) in append.iter().zip(encoded) {
        let id = entry.letter.id.as_str();
        if state.find(&entry.dlq, id).is_some() || new.contains_key(&(entry.dlq.as_str(), id)) {
            report.duplicates += 1;
            continue;
        }
        new.insert((&entry.dlq, id), entry.status);
        let i = match objects.iter().position(|o| o.dlq == entry.dlq) {
            Some(i) => i,
            None => {
                objects.push(PlannedObject {
                    dlq: entry.dlq.clone(),
                    records: Vec::new(),
                    body: Vec::new(),
                });
                objects.len() - 1
            }
        };
        let object = &mut objects[i];
        object.body.extend_from_slice(&enc.bytes);
        object.body.push(b'\n');
        object.records.push(RecordEntry {
            id: id.to_owned(),
            status: entry.status,
            failed_at_ms: entry.letter.failed_at.timestamp_millis(),
            partition: entry.letter.source.partition,
        });
        report.appended += 1;
    }
    // Settlements apply in order, each on the status the one before left
    // (as State::apply replays them).
    let mut settles = Vec::new();
    for s in settle {
        let key = (s.dlq.as_str(), s.id.as_str());
        let current = new
            .get(&key)
            .copied()
            .or_else(|| state.find(&s.dlq, &s.id).map(|i| state.records[i].status));
        if current.is_some_and(|c| can_settle(c, s.outcome)) {
            new.insert(key, s.outcome);
            settles.push(SettleEntry {
                dlq: s.dlq.clone(),
                id: s.id.clone(),
                status: s.outcome,
            });
            report.settled += 1;
        }
    }
    (report, objects, settles)
}
