//! The write path: appends, settlements (as segments), outputs and
//! checkpoints in one commit, and the pipelined commits of replays.

use super::*;

/// A record prepared for its DLQ topic.
pub(super) struct Prepared {
    pub(super) key: Option<Vec<u8>>,
    /// `None` writes a tombstone: a null payload in the headers format.
    pub(super) value: Option<Vec<u8>>,
    pub(super) headers: Vec<Header>,
    pub(super) blobs: Vec<Blob>,
}

/// Where a ledger entry's record is: known, or appended in this batch.
#[derive(Clone, Copy)]
pub(super) enum Pos {
    Known(PartitionOffset),
    Appended(usize),
}

/// A ledger status entry to write once positions are known.
pub(super) struct StatusWrite {
    pub(super) dlq: String,
    pub(super) id: String,
    pub(super) outcome: Status,
    pub(super) pos: Pos,
}

/// A blob to store: its chunks' indexes among the first-phase records.
pub(super) struct BlobWrite {
    pub(super) sha256: String,
    pub(super) size: u64,
    pub(super) chunks: Vec<usize>,
}

/// The DLQ partition of a record: its source partition modulo the DLQ's
/// partition count (keeps per-partition order and makes per-partition stats
/// line up with the source), else a stable hash of its id.
pub(super) fn dlq_partition(letter: &DeadLetter, partitions: i32) -> i32 {
    match letter.source.partition {
        Some(p) if p >= 0 => p % partitions.max(1),
        _ => pick(letter.id.as_bytes(), partitions),
    }
}

pub(super) fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let marker = format!(" …[truncated, {} bytes in all]", text.len());
    let mut end = max.saturating_sub(marker.len());
    while end > 0 && !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{marker}", &text[..end])
}

impl Inner {
    /// The ledger entries that settle `settle` now, and how many records
    /// they settle: records of the DLQs (found in the position cache, else
    /// by reading), whose status may move to the outcome (a record named
    /// twice is settled once). `pending` holds the segments written by the
    /// commit under way, which this one extends.
    pub(super) fn settlements(
        &mut self,
        config: &KafkaConfig,
        settle: &[Settle],
        now: DateTime<Utc>,
        pending: &mut SegmentOverlay,
    ) -> Result<(Vec<LedgerValue>, usize)> {
        let positions = self.positions_of(config, settle)?;
        let mut overlay: HashMap<(&str, &str), Status> = HashMap::new();
        let mut marks: Vec<StatusAt> = Vec::new();
        for (s, at) in settle.iter().zip(positions) {
            let Some(PartitionOffset {
                partition: p,
                offset: o,
            }) = at
            else {
                continue;
            };
            let key = (s.dlq.as_str(), s.id.as_str());
            let current = overlay
                .get(&key)
                .copied()
                .unwrap_or_else(|| self.current_status(&s.dlq, p, o, pending));
            if can_settle(current, s.outcome) {
                overlay.insert(key, s.outcome);
                marks.push(StatusAt {
                    dlq: s.dlq.clone(),
                    id: s.id.clone(),
                    partition: p,
                    offset: o,
                    outcome: s.outcome,
                });
            }
        }
        let n = marks.len();
        Ok((
            status_values(&self.ledger, &self.topic_ids, &marks, now, pending),
            n,
        ))
    }

    /// Where the records `settle` names lie, in its order (`None`: not
    /// found): from the position cache, else by reading (one pass per DLQ
    /// for all its ids the cache does not know).
    pub(super) fn positions_of(
        &mut self,
        config: &KafkaConfig,
        settle: &[Settle],
    ) -> Result<Vec<Option<PartitionOffset>>> {
        let mut out: Vec<Option<PartitionOffset>> = Vec::with_capacity(settle.len());
        let mut missing: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, s) in settle.iter().enumerate() {
            let known = self.cache.get(&s.dlq, &s.id).filter(|at| {
                self.dlqs
                    .get(&s.dlq)
                    .and_then(|d| d.parts.get(at.partition as usize))
                    .is_some_and(|part| at.offset >= part.low)
            });
            if known.is_none() {
                missing.entry(s.dlq.as_str()).or_default().push(i);
            }
            out.push(known);
        }
        for (dlq, indexes) in missing {
            let ids: Vec<&str> = indexes.iter().map(|&i| settle[i].id.as_str()).collect();
            let found = self.locate(config, dlq, &ids)?;
            for i in indexes {
                out[i] = found.get(&settle[i].id).copied();
            }
        }
        Ok(out)
    }

    /// A record's status: in the segments of the commit under way, else
    /// as the ledger says.
    pub(super) fn current_status(
        &self,
        dlq: &str,
        p: i32,
        o: i64,
        pending: &SegmentOverlay,
    ) -> Status {
        if let Some(tid) = self.topic_ids.get(dlq) {
            let segment = o.div_euclid(SEGMENT_OFFSETS);
            if let Some(seg) = pending.get(&(tid.clone(), p, segment)) {
                let mark = seg.get((o - segment * SEGMENT_OFFSETS) as u32);
                if let Some(status) = mark.status().filter(|s| *s != Status::Pending) {
                    return status;
                }
            }
        }
        self.status_at(dlq, p, o).0
    }

    /// Where the follower of the ledger stands in each of its partitions,
    /// to recognize a commit's own records after.
    pub(super) fn follow_state(&self) -> FollowState {
        self.ledger_next
            .iter()
            .zip(&self.ledger_tail)
            .enumerate()
            .map(|(p, (&next, &tail))| (p as i32, (next, tail)))
            .collect()
    }

    /// Moves the ledger's follower past the records a commit just wrote
    /// to it (they are applied already), where nothing else can be among
    /// them and nothing was read meanwhile; elsewhere the follower reads
    /// them as usual.
    pub(super) fn follow_own_writes(
        &mut self,
        config: &KafkaConfig,
        before: &FollowState,
        topics: &[String],
        positions: &[PartitionOffset],
    ) {
        let mut spans: HashMap<i32, (i64, i64, usize)> = HashMap::new();
        for (
            t,
            &PartitionOffset {
                partition: p,
                offset: o,
            },
        ) in topics.iter().zip(positions)
        {
            if *t != config.ledger_topic {
                continue;
            }
            let e = spans.entry(p).or_insert((o, o, 0));
            e.0 = e.0.min(o);
            e.1 = e.1.max(o);
            e.2 += 1;
        }
        for (p, span) in spans {
            let Some(&was) = before.get(&p) else {
                continue;
            };
            if let (Some(next), Some(tail)) = (
                self.ledger_next.get_mut(p as usize),
                self.ledger_tail.get_mut(p as usize),
            ) && (*next, *tail) == was
            {
                tail.own_write(next, span, config.transactions);
            }
        }
    }

    /// Whether a record with this id is in the DLQ already, as far as the
    /// id window of the partition it would go to and the position cache
    /// know.
    pub(super) fn already_stored(&self, dlq: &str, id: &str, p: i32) -> bool {
        let Some(ds) = self.dlqs.get(dlq) else {
            return false;
        };
        if let Some(part) = ds.parts.get(p as usize)
            && part.window.get(id, part.low).is_some()
        {
            return true;
        }
        self.cache.get(dlq, id).is_some_and(|at| {
            ds.parts
                .get(at.partition as usize)
                .is_some_and(|part| at.offset >= part.low)
        })
    }

    /// Records a commit appended: into the id window of their partition
    /// and the position cache.
    pub(super) fn remember_appended(&mut self, dlq: &str, id: &str, at: PartitionOffset) {
        self.cache.put(dlq, id, at);
        let PartitionOffset {
            partition: p,
            offset: o,
        } = at;
        if let Some(part) = self
            .dlqs
            .get_mut(dlq)
            .and_then(|d| d.parts.get_mut(p as usize))
        {
            let low = part.low;
            part.window.push(id, o, low);
            if part.window.to == Some(o) {
                part.window.to = Some(o + 1);
            }
        }
    }

    /// The ledger keys that records deleted by retention no longer need:
    /// record entries below the new low watermark, and whole segments.
    pub(super) fn swept_keys(&self, sweeps: &BTreeMap<TopicPartition, i64>) -> Vec<String> {
        let mut keys = Vec::new();
        for (
            TopicPartition {
                topic: dlq,
                partition: p,
            },
            &low,
        ) in sweeps
        {
            keys.extend(
                self.ledger
                    .expired(dlq, *p, low)
                    .into_iter()
                    .map(|id| crate::ledger::record_key(dlq, &id)),
            );
            if let Some(tid) = self.topic_ids.get(dlq) {
                keys.extend(self.ledger.expired_segments(tid, *p, low));
                keys.extend(self.ledger.expired_counts(tid, *p, low));
            }
        }
        keys
    }

    /// Asks the ids of `topics` (one request) and returns those whose id
    /// changed since it was learned: recreated topics.
    pub(super) fn check_topic_ids(&mut self, topics: &[&str]) -> Result<Vec<String>> {
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let mut changed = Vec::new();
        for (topic, id) in topics.iter().zip(self.client.topic_ids(topics)?) {
            let Some(id) = id else { continue };
            match self.topic_ids.insert((*topic).to_owned(), id.clone()) {
                Some(old) if old != id => changed.push((*topic).to_owned()),
                _ => {}
            }
        }
        Ok(changed)
    }

    /// Learns the ids of the DLQ topics in `topics` not known yet.
    pub(super) fn learn_topic_ids(&mut self, topics: &[&str]) -> Result<()> {
        let missing: Vec<&str> = topics
            .iter()
            .copied()
            .filter(|t| !self.topic_ids.contains_key(*t))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        for (topic, id) in missing.iter().zip(self.client.topic_ids(&missing)?) {
            if let Some(id) = id {
                self.topic_ids.insert((*topic).to_owned(), id);
            }
        }
        Ok(())
    }
}

/// The ledger entries recording `statuses`: segment entries for DLQs
/// whose topic id is known, else record entries (the former format, still
/// read). `pending` holds the segments of the commit under way.
pub(super) fn status_values(
    ledger: &Ledger,
    topic_ids: &HashMap<String, String>,
    statuses: &[StatusAt],
    now: DateTime<Utc>,
    pending: &mut SegmentOverlay,
) -> Vec<LedgerValue> {
    let mut values = Vec::new();
    let mut by_partition: BTreeMap<(&str, i32), Vec<(i64, Mark)>> = BTreeMap::new();
    for w in statuses {
        if topic_ids.contains_key(&w.dlq) {
            by_partition
                .entry((w.dlq.as_str(), w.partition))
                .or_default()
                .push((w.offset, Mark::settled(w.outcome)));
        } else {
            values.push(LedgerValue::Record(RecordEntry {
                dlq: w.dlq.clone(),
                id: w.id.clone(),
                outcome: w.outcome,
                dlq_partition: w.partition,
                dlq_offset: w.offset,
                at: now,
            }));
        }
    }
    for ((dlq, p), marks) in by_partition {
        let Some(tid) = topic_ids.get(dlq) else {
            continue;
        };
        values.extend(
            ledger
                .segment_entries(dlq, tid, p, &marks, pending, now)
                .into_iter()
                .map(LedgerValue::Segment),
        );
    }
    values
}

/// The last offset written in each partition, from the topics and
/// positions of a write's records.
fn last_positions(
    topics: &[String],
    positions: &[PartitionOffset],
) -> HashMap<TopicPartition, i64> {
    let mut last: HashMap<TopicPartition, i64> = HashMap::new();
    for (t, at) in topics.iter().zip(positions) {
        let e = last
            .entry(TopicPartition::new(t.as_str(), at.partition))
            .or_insert(at.offset);
        *e = (*e).max(at.offset);
    }
    last
}

/// Segments written by a commit under way, by topic id, partition and
/// segment.
pub(crate) type SegmentOverlay = HashMap<(String, i32, i64), Segment>;

/// A status to record for the record at a position.
pub(super) struct StatusAt {
    pub(super) dlq: String,
    pub(super) id: String,
    pub(super) partition: i32,
    pub(super) offset: i64,
    pub(super) outcome: Status,
}

impl KafkaStore {
    /// A topic's id on the cluster (KIP-516, base64), `None` when the topic
    /// does not exist. A topic deleted and created again under the same name
    /// has a new id: state keyed by it does not carry over.
    pub fn topic_id(&self, topic: &str) -> Result<Option<String>> {
        self.lock().client.topic_id(topic)
    }

    /// [`DlqStore::commit`] once nothing submitted is under way.
    pub(crate) fn commit_now(&mut self, batch: Batch<'_>) -> Result<CommitReport> {
        batch.check_supported(self.capabilities(), "kafka")?;
        let outputs = self.outgoing(batch.outputs)?;
        self.commit_with(batch, outputs, None)
    }
}

impl KafkaStore {
    /// The records of [`Batch::outputs`], placed: the partition asked for
    /// (modulo the topic's partition count, so that a record keeps its
    /// source partition where the target has as many), else Kafka's default
    /// partitioner for a keyed record, else spread round robin. A
    /// destination topic that does not exist is an error before anything
    /// is written.
    pub(crate) fn outgoing(&self, outputs: &[Output]) -> Result<Vec<Outgoing>> {
        let ts = Utc::now().timestamp_millis();
        let mut partitions: HashMap<&str, i32> = HashMap::new();
        let mut placed = Vec::with_capacity(outputs.len());
        for (i, o) in outputs.iter().enumerate() {
            let n = match partitions.get(o.destination.as_str()) {
                Some(&n) => n,
                None => {
                    let n = self.topic_partitions(&o.destination)?.ok_or_else(|| {
                        failure(format!("topic {} does not exist", o.destination), false)
                    })?;
                    partitions.insert(&o.destination, n);
                    n
                }
            };
            let partition = match (o.partition, &o.key) {
                (Some(p), _) => p.rem_euclid(n.max(1)),
                (None, Some(key)) => default_partition(key, n),
                (None, None) => (i as i32) % n.max(1),
            };
            placed.push(Outgoing {
                topic: o.destination.clone(),
                partition,
                key: o.key.clone(),
                value: o.value.clone(),
                headers: o.headers.clone(),
                timestamp_ms: ts,
            });
        }
        Ok(placed)
    }

    /// A commit that also writes `outputs` and, when given, commits the
    /// consumer's `offsets`, all in the store's one transaction: what an
    /// exactly-once processor needs (its outputs, its dead letters, their
    /// ledger entries and its source offsets, atomically).
    pub(crate) fn commit_with(
        &mut self,
        batch: Batch<'_>,
        outputs: Vec<Outgoing>,
        offsets: Option<TxnOffsets<'_>>,
    ) -> Result<CommitReport> {
        for e in batch.append {
            self.check_dlq(&e.dlq)?;
        }
        // Encode first: a record that cannot be encoded fails the batch
        // before anything is written.
        let prepared: Vec<Prepared> = batch
            .append
            .iter()
            .map(|e| self.prepare(&e.letter))
            .collect::<Result<_>>()?;
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        // Without transactions, outputs are acknowledged before the ledger
        // entries that settle their records are written (at least once).
        let outputs_first = !outputs.is_empty() && !config.transactions;

        let mut scope: BTreeSet<String> = BTreeSet::new();
        for e in batch.append {
            if !scope.contains(&e.dlq) {
                let source = e
                    .letter
                    .source
                    .topic
                    .clone()
                    .or_else(|| e.dlq.strip_prefix(&config.dlq_prefix).map(str::to_owned));
                inner.ensure_dlq(config, &e.dlq, source.as_deref())?;
                scope.insert(e.dlq.clone());
            }
        }
        scope.extend(batch.settle.iter().map(|s| s.dlq.clone()));
        let scope: Vec<String> = scope.into_iter().collect();
        inner.refresh(config, Scope::Only(&scope))?;
        // Each appended record's partition, and the id windows of those
        // partitions brought up to their end (deduplication).
        let placed: Vec<i32> = batch
            .append
            .iter()
            .map(|e| {
                let n = inner.dlqs.get(&e.dlq).map_or(1, |d| d.parts.len() as i32);
                dlq_partition(&e.letter, n)
            })
            .collect();
        let mut filled: BTreeSet<(&str, i32)> = BTreeSet::new();
        for (e, &p) in batch.append.iter().zip(&placed) {
            if filled.insert((e.dlq.as_str(), p)) {
                let high = inner
                    .dlqs
                    .get(&e.dlq)
                    .and_then(|d| d.parts.get(p as usize))
                    .map_or(0, |part| part.high);
                inner.fill_window(config, &e.dlq, p, high)?;
            }
        }
        let settle_at = inner.positions_of(config, batch.settle)?;

        let now = Utc::now();
        let ts = now.timestamp_millis();
        let mut report = CommitReport::default();
        let mut first: Vec<Outgoing> = outputs;
        // (index in batch.append, index in `first`) of each record written.
        let mut appended: Vec<(usize, usize)> = Vec::new();
        // (dlq, id) -> index in `first` of the records written by this batch.
        let mut in_batch: HashMap<(&str, &str), usize> = HashMap::new();
        let mut blobs: Vec<BlobWrite> = Vec::new();
        let mut planned_blobs: HashSet<String> = HashSet::new();
        let chunk_size = config.max_message_bytes - RECORD_OVERHEAD;

        for (i, (entry, prep)) in batch.append.iter().zip(prepared).enumerate() {
            let key = (entry.dlq.as_str(), entry.letter.id.as_str());
            let partition = placed[i];
            let stored = inner.already_stored(&entry.dlq, &entry.letter.id, partition);
            if stored || in_batch.contains_key(&key) {
                report.duplicates += 1;
                continue;
            }
            for blob in prep.blobs {
                if inner.ledger.blob(&blob.sha256).is_some()
                    || !planned_blobs.insert(blob.sha256.clone())
                {
                    continue;
                }
                let p = pick(blob.sha256.as_bytes(), inner.blob_partitions);
                let mut chunks = Vec::new();
                let pieces: Vec<&[u8]> = if blob.bytes.is_empty() {
                    vec![&[][..]]
                } else {
                    blob.bytes.chunks(chunk_size).collect()
                };
                for (c, piece) in pieces.into_iter().enumerate() {
                    chunks.push(first.len());
                    first.push(Outgoing {
                        topic: config.blob_topic.clone(),
                        partition: p,
                        key: Some(chunk_key(&blob.sha256, c).into_bytes()),
                        value: Some(piece.to_vec()),
                        headers: Vec::new(),
                        timestamp_ms: ts,
                    });
                }
                blobs.push(BlobWrite {
                    size: blob.bytes.len() as u64,
                    sha256: blob.sha256,
                    chunks,
                });
            }
            in_batch.insert(key, first.len());
            appended.push((i, first.len()));
            first.push(Outgoing {
                topic: entry.dlq.clone(),
                partition,
                key: prep.key,
                value: prep.value,
                headers: prep.headers,
                timestamp_ms: ts,
            });
            report.appended += 1;
        }

        // Statuses: appended records that do not start pending, then the
        // settlements, each checked against the status it has by then.
        let mut writes: Vec<StatusWrite> = Vec::new();
        let mut overlay: HashMap<(String, String), Status> = HashMap::new();
        for &(i, fi) in &appended {
            let e: &Entry = &batch.append[i];
            overlay.insert((e.dlq.clone(), e.letter.id.clone()), e.status);
            if e.status != Status::Pending {
                writes.push(StatusWrite {
                    dlq: e.dlq.clone(),
                    id: e.letter.id.clone(),
                    outcome: e.status,
                    pos: Pos::Appended(fi),
                });
            }
        }
        for (s, &at) in batch.settle.iter().zip(&settle_at) {
            let key = (s.dlq.clone(), s.id.clone());
            let (current, pos) = if let Some(&fi) = in_batch.get(&(s.dlq.as_str(), s.id.as_str())) {
                (
                    overlay.get(&key).copied().unwrap_or(Status::Pending),
                    Pos::Appended(fi),
                )
            } else if let Some(at) = at {
                let current = overlay
                    .get(&key)
                    .copied()
                    .unwrap_or_else(|| inner.status_at(&s.dlq, at.partition, at.offset).0);
                (current, Pos::Known(at))
            } else {
                continue;
            };
            if can_settle(current, s.outcome) {
                overlay.insert(key, s.outcome);
                writes.push(StatusWrite {
                    dlq: s.dlq.clone(),
                    id: s.id.clone(),
                    outcome: s.outcome,
                    pos,
                });
                report.settled += 1;
            }
        }
        let checkpoint = batch.checkpoint.map(|(name, value)| CheckpointEntry {
            checkpoint: name.to_owned(),
            value: value.to_owned(),
            at: now,
        });
        if first.is_empty() && writes.is_empty() && checkpoint.is_none() {
            return Ok(report);
        }

        // Ledger entries of records deleted by retention, tombstoned in
        // this commit.
        let sweeps = std::mem::take(&mut inner.sweeps);
        let tombstones = inner.swept_keys(&sweeps);
        let wait_between = outputs_first
            || !blobs.is_empty()
            || writes.iter().any(|w| matches!(w.pos, Pos::Appended(_)));
        let ledger_partitions = inner.ledger_next.len() as i32;
        let ledger_topic = config.ledger_topic.clone();
        let mut values: Vec<LedgerValue> = Vec::new();
        let mut topics_written: Vec<String> = first.iter().map(|o| o.topic.clone()).collect();
        let before = inner.follow_state();
        // What counts found rides along, for later readers.
        let counts = inner.dirty_counts();
        let (ledger, topic_ids) = (&inner.ledger, &inner.topic_ids);
        let mut segments = SegmentOverlay::new();
        let written = inner.client.write(first, wait_between, offsets, |pos| {
            let at = |i: usize| pos.get(i).copied().unwrap_or(PartitionOffset::new(-1, -1));
            for b in &blobs {
                values.push(LedgerValue::Blob(BlobEntry {
                    blob: b.sha256.clone(),
                    size: b.size,
                    chunks: b
                        .chunks
                        .iter()
                        .map(|&i| {
                            let c = at(i);
                            (c.partition, c.offset)
                        })
                        .collect(),
                    at: now,
                }));
            }
            let statuses: Vec<StatusAt> = writes
                .iter()
                .map(|w| {
                    let PartitionOffset { partition, offset } = match w.pos {
                        Pos::Known(known) => known,
                        Pos::Appended(i) => at(i),
                    };
                    StatusAt {
                        dlq: w.dlq.clone(),
                        id: w.id.clone(),
                        partition,
                        offset,
                        outcome: w.outcome,
                    }
                })
                .collect();
            values.extend(status_values(
                ledger,
                topic_ids,
                &statuses,
                now,
                &mut segments,
            ));
            if let Some(c) = &checkpoint {
                values.push(LedgerValue::Checkpoint(c.clone()));
            }
            values.extend(counts);
            let entries = values.iter().map(|v| (v.key(), Some(v.to_json())));
            let deletes = tombstones.iter().map(|k| (k.clone(), None));
            let out: Vec<Outgoing> = entries
                .chain(deletes)
                .map(|(key, value)| ledger_record(&ledger_topic, ledger_partitions, key, value, ts))
                .collect();
            topics_written.extend(std::iter::repeat_n(ledger_topic.clone(), out.len()));
            out
        });
        let positions = match written {
            Ok(p) => p,
            Err(e) => {
                // Sweep again next time.
                inner.sweeps.extend(sweeps);
                return Err(e);
            }
        };

        if config.transactions {
            let last = last_positions(&topics_written, &positions);
            inner.client.await_visible(&last);
        }

        // Committed: remember where the records went (deduplication,
        // settling them by id).
        for &(i, fi) in &appended {
            let e = &batch.append[i];
            if let Some(&at) = positions.get(fi) {
                inner.remember_appended(&e.dlq, &e.letter.id, at);
            }
        }
        for v in values {
            inner.ledger.apply(v);
        }
        for key in &tombstones {
            let _ = inner.ledger.apply_message(Some(key.as_bytes()), None);
        }
        inner.follow_own_writes(config, &before, &topics_written, &positions);
        Ok(report)
    }

    /// Starts a commit that settles records this store has just scanned
    /// and writes `outputs`, in one transaction when the store is
    /// transactional, without waiting for it: the caller scans the next
    /// page meanwhile, then calls [`KafkaStore::finish_settle`] (before any
    /// other commit). Used by the replayer.
    ///
    /// Unlike [`DlqStore::commit`], it does not ask the broker for the
    /// DLQs' state first: the statuses it checks are those the scan that
    /// selected the records just read (a refresh in between would narrow,
    /// not close, the window in which a concurrent writer could settle them
    /// too). Nor does it wait for the transaction markers to become visible
    /// to other readers: the store indexes its own writes, and
    /// [`KafkaStore::await_visible`] waits once at the end.
    pub(crate) fn start_settle(
        &mut self,
        settle: &[Settle],
        outputs: Vec<Outgoing>,
    ) -> Result<PendingSettle> {
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now();
        let ts = now.timestamp_millis();
        let mut report = CommitReport::default();
        let mut segments = SegmentOverlay::new();
        let (mut values, settled) = inner.settlements(config, settle, now, &mut segments)?;
        report.settled += settled;
        // What the replay's scans counted rides along, for later readers.
        values.extend(inner.dirty_counts());
        let sweeps = std::mem::take(&mut inner.sweeps);
        let tombstones = inner.swept_keys(&sweeps);
        let ledger_partitions = inner.ledger_next.len() as i32;
        let ledger_topic = &config.ledger_topic;
        let mut records = outputs;
        let entries = values.iter().map(|v| (v.key(), Some(v.to_json())));
        let deletes = tombstones.iter().map(|k| (k.clone(), None));
        records.extend(
            entries
                .chain(deletes)
                .map(|(key, value)| ledger_record(ledger_topic, ledger_partitions, key, value, ts)),
        );
        let topics: Vec<String> = records.iter().map(|r| r.topic.clone()).collect();
        let before = inner.follow_state();
        if records.is_empty() {
            inner.sweeps.extend(sweeps);
            return Ok(PendingSettle {
                report,
                values,
                tombstones,
                topics,
                before,
                sweeps: BTreeMap::new(),
                started: false,
                segments,
            });
        }
        if let Err(e) = inner.client.start_write(records) {
            inner.sweeps.extend(sweeps);
            return Err(e);
        }
        Ok(PendingSettle {
            report,
            values,
            tombstones,
            topics,
            before,
            sweeps,
            started: true,
            segments,
        })
    }

    /// Adds more settlements and outputs to the write
    /// [`KafkaStore::start_settle`] started: into its transaction when the
    /// store is transactional, so that one commit covers several pages. On
    /// an error the whole write is abandoned (its transaction aborted).
    pub(crate) fn extend_settle(
        &mut self,
        mut pending: PendingSettle,
        settle: &[Settle],
        outputs: Vec<Outgoing>,
    ) -> Result<PendingSettle> {
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let now = Utc::now();
        let ts = now.timestamp_millis();
        // Records settled earlier in this write are not in the ledger yet:
        // their segments are in the write's overlay, which this one extends.
        let (values, settled) = match inner.settlements(config, settle, now, &mut pending.segments)
        {
            Ok(v) => v,
            Err(e) => {
                inner.sweeps.extend(std::mem::take(&mut pending.sweeps));
                inner.client.abandon_write();
                return Err(e);
            }
        };
        let ledger_partitions = inner.ledger_next.len() as i32;
        let ledger_topic = &config.ledger_topic;
        let mut records = outputs;
        records.extend(values.iter().map(|v| {
            ledger_record(
                ledger_topic,
                ledger_partitions,
                v.key(),
                Some(v.to_json()),
                ts,
            )
        }));
        if records.is_empty() {
            return Ok(pending);
        }
        let topics = records.iter().map(|r| r.topic.clone());
        pending.topics.extend(topics);
        let sent = if pending.started {
            inner.client.extend_write(records)
        } else {
            inner.client.start_write(records)
        };
        if let Err(e) = sent {
            inner.sweeps.extend(std::mem::take(&mut pending.sweeps));
            return Err(e);
        }
        pending.started = true;
        pending.report.settled += settled;
        pending.values.extend(values);
        Ok(pending)
    }

    /// Waits for the commit [`KafkaStore::start_settle`] started and
    /// commits it; on success the settlements are in the index.
    pub(crate) fn finish_settle(&mut self, pending: PendingSettle) -> Result<CommitReport> {
        let config = &self.config;
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        if !pending.started {
            return Ok(pending.report);
        }
        let positions = match inner.client.finish_write() {
            Ok(p) => p,
            Err(e) => {
                inner.sweeps.extend(pending.sweeps);
                return Err(e);
            }
        };
        if config.transactions {
            for (k, o) in last_positions(&pending.topics, &positions) {
                let e = inner.unseen.entry(k).or_insert(o);
                *e = (*e).max(o);
            }
        }
        for v in pending.values {
            inner.ledger.apply(v);
        }
        for key in &pending.tombstones {
            let _ = inner.ledger.apply_message(Some(key.as_bytes()), None);
        }
        inner.follow_own_writes(config, &pending.before, &pending.topics, &positions);
        Ok(pending.report)
    }

    /// Whether the write of [`KafkaStore::start_settle`] is acknowledged
    /// (or failed), so that [`KafkaStore::finish_settle`] returns at once.
    pub(crate) fn settle_reported(&mut self) -> bool {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        inner.client.write_reported()
    }

    /// Waits until read_committed readers elsewhere can see every record
    /// committed by [`KafkaStore::start_settle`] so far (bounded by the
    /// store's timeout).
    pub(crate) fn await_visible(&mut self) {
        let inner = self.inner.get_mut().unwrap_or_else(PoisonError::into_inner);
        let last = std::mem::take(&mut inner.unseen);
        if !last.is_empty() {
            inner.client.await_visible(&last);
        }
    }
}

/// A commit started by [`KafkaStore::start_settle`].
pub(crate) struct PendingSettle {
    pub(super) report: CommitReport,
    pub(super) values: Vec<LedgerValue>,
    pub(super) tombstones: Vec<String>,
    pub(super) topics: Vec<String>,
    pub(super) before: FollowState,
    pub(super) sweeps: BTreeMap<TopicPartition, i64>,
    pub(super) started: bool,
    /// The segments this write records, as they will stand.
    pub(super) segments: SegmentOverlay,
}

impl PendingSettle {
    /// Records this commit settles (so far).
    pub(crate) fn settled(&self) -> usize {
        self.report.settled
    }
}
