//! Bringing the partitions' state up to date (watermarks and the ledger),
//! counting what was not counted yet, searching records by id, and reading
//! records and claim-check blobs back.

use super::*;

impl Inner {
    /// The partition count of a DLQ topic, creating it when missing: with
    /// the source topic's partition count when that topic exists, else the
    /// configured default.
    pub(super) fn ensure_dlq(
        &mut self,
        config: &KafkaConfig,
        dlq: &str,
        source: Option<&str>,
    ) -> Result<i32> {
        if let Some(di) = self.dlqs.get(dlq)
            && !di.parts.is_empty()
        {
            return Ok(di.parts.len() as i32);
        }
        let n = match self.client.partitions(dlq)? {
            Some(n) => n,
            None => {
                let from_source = match source.filter(|s| valid_topic(s) && *s != dlq) {
                    Some(s) => self.client.partitions(s)?,
                    None => None,
                };
                let partitions = from_source.unwrap_or(config.default_partitions);
                let mut configs = vec![(
                    "max.message.bytes",
                    (config.max_message_bytes + 4096).to_string(),
                )];
                if let Some(ms) = config.retention_ms {
                    configs.push(("retention.ms", ms.to_string()));
                }
                self.client
                    .create_topic(dlq, partitions, config.replication_factor, &configs)?
            }
        };
        self.dlqs
            .entry(dlq.to_owned())
            .or_default()
            .grow(n, config.dedup_window);
        self.learn_topic_ids(&[dlq])?;
        Ok(n)
    }

    /// Brings the state of the DLQ topics in `scope` up to date, and reads
    /// what is new in the ledger: metadata, topic ids and watermarks (a few
    /// requests, whatever the number of records). DLQ records are not read:
    /// see [`Inner::count`].
    pub(super) fn refresh(&mut self, config: &KafkaConfig, scope: Scope<'_>) -> Result<()> {
        self.refreshed = true;
        let topics: BTreeMap<String, i32> = match scope {
            Scope::All => {
                let all: BTreeMap<String, i32> = self
                    .client
                    .topics()?
                    .into_iter()
                    .filter(|(t, _)| is_dlq(config, t))
                    .collect();
                self.dlqs.retain(|t, _| all.contains_key(t));
                all
            }
            Scope::Only(names) => {
                let mut found = BTreeMap::new();
                for name in names.iter().filter(|n| is_dlq(config, n)) {
                    match self.client.partitions(name)? {
                        Some(n) => {
                            found.insert(name.clone(), n);
                        }
                        None => {
                            self.dlqs.remove(name);
                        }
                    }
                }
                found
            }
        };
        // A topic deleted and created again under its name has a new id:
        // what was known of it is forgotten, and it is counted afresh.
        let names: Vec<&str> = topics.keys().map(String::as_str).collect();
        for topic in self.check_topic_ids(&names)? {
            tracing::warn!(topic, "DLQ topic was recreated; reading it afresh");
            self.dlqs.remove(&topic);
            self.cache.forget(&topic);
        }
        let mut parts: Vec<TopicPartition> = Vec::new();
        for (t, &n) in &topics {
            self.dlqs
                .entry(t.clone())
                .or_default()
                .grow(n, config.dedup_window);
            parts.extend((0..n).map(|p| TopicPartition::new(t.as_str(), p)));
        }
        let ledger_partitions = self.ledger_next.len() as i32;
        parts.extend(
            (0..ledger_partitions).map(|p| TopicPartition::new(config.ledger_topic.as_str(), p)),
        );
        let marks = self.client.watermarks(&parts)?;
        self.read_ledger(config, &marks)?;

        let Inner {
            dlqs,
            ledger,
            sweeps,
            topic_ids,
            ..
        } = self;
        for (topic, &n) in &topics {
            let Some(ds) = dlqs.get_mut(topic) else {
                continue;
            };
            let tid = topic_ids.get(topic).map(String::as_str);
            for p in 0..n {
                let Some(&(lo, hi)) = marks.get(&TopicPartition::new(topic.as_str(), p)) else {
                    continue;
                };
                let part = &mut ds.parts[p as usize];
                if hi < part.high || hi < part.counted {
                    // The last stable offset never goes back: the partition
                    // lost records (an unclean leader election).
                    tracing::warn!(
                        topic,
                        partition = p,
                        "DLQ partition was truncated; counting it afresh"
                    );
                    part.counted = lo;
                    part.window.clear();
                    part.head = None;
                    if let Some(t) = tid {
                        *ledger.counted_mut(t, p) = crate::ledger::Counted::default();
                    }
                }
                if lo > part.low {
                    sweeps.insert(TopicPartition::new(topic.as_str(), p), lo);
                    if let Some(t) = tid {
                        ledger.counted_mut(t, p).expire(lo);
                    }
                }
                part.low = lo;
                part.high = hi;
                let known = tid
                    .and_then(|t| ledger.counted(t, p))
                    .map_or(lo, |c| c.frontier(lo));
                part.counted = part.counted.max(known).clamp(lo, hi);
                if part.head.is_some_and(|(o, _)| o < lo) {
                    part.head = None;
                }
            }
        }
        Ok(())
    }

    /// Reads what is new in the ledger.
    fn read_ledger(
        &mut self,
        config: &KafkaConfig,
        marks: &HashMap<TopicPartition, (i64, i64)>,
    ) -> Result<()> {
        let Inner {
            client,
            ledger,
            ledger_next,
            ledger_tail,
            ..
        } = self;
        let ledger_topic = &config.ledger_topic;
        let mut ranges = Vec::new();
        for (p, next) in ledger_next.iter_mut().enumerate() {
            let Some(&(lo, hi)) = marks.get(&TopicPartition::new(ledger_topic.as_str(), p as i32))
            else {
                continue;
            };
            if hi < *next && ledger_tail[p].lagging(hi) {
                // Our own last commit, its markers not written yet.
                continue;
            }
            if hi < *next {
                tracing::warn!(topic = %ledger_topic, "the ledger was truncated or recreated; re-reading it");
                *ledger = Ledger::default();
                ledger_next.iter_mut().for_each(|n| *n = 0);
                ledger_tail.iter_mut().for_each(|t| *t = Tail::default());
                return Err(failure(
                    format!("the ledger {ledger_topic} was recreated; retry to re-read it"),
                    true,
                ));
            }
            *next = (*next).max(lo);
            if *next < hi {
                ranges.push((p as i32, *next, hi));
            }
        }
        if !ranges.is_empty() {
            client.read(ledger_topic, &ranges, |m| {
                use rdkafka::Message as _;
                if let Err(problem) = ledger.apply_message(m.key(), m.payload()) {
                    tracing::warn!(
                        topic = %ledger_topic,
                        partition = m.partition(),
                        offset = m.offset(),
                        problem,
                        "skipping a ledger entry"
                    );
                }
                if let Some(n) = ledger_next.get_mut(m.partition() as usize) {
                    *n = (*n).max(m.offset() + 1);
                }
                ControlFlow::Continue(())
            })?;
            for (p, _, hi) in ranges {
                ledger_next[p as usize] = ledger_next[p as usize].max(hi);
            }
        }
        for (p, tail) in ledger_tail.iter_mut().enumerate() {
            if let Some(&(_, hi)) = marks.get(&TopicPartition::new(ledger_topic.as_str(), p as i32))
            {
                tail.seen(ledger_next[p], hi);
            }
        }
        Ok(())
    }

    /// The key the count state of a DLQ is kept under: its topic id, or
    /// (a cluster that does not give ids) its name, which is never written.
    pub(super) fn count_key(&self, dlq: &str) -> String {
        match self.topic_ids.get(dlq) {
            Some(t) => t.clone(),
            None => format!("name:{dlq}"),
        }
    }

    /// Reads the offsets of a DLQ partition that were not counted yet, up
    /// to the last stable offset last seen, once: which hold no record
    /// (transaction markers, aborted records) and which are later copies
    /// of a record are added to the count state, to be written to the
    /// ledger for every later reader.
    pub(super) fn count(&mut self, config: &KafkaConfig, dlq: &str, p: i32) -> Result<()> {
        let key = self.count_key(dlq);
        let Some(part) = self.dlqs.get(dlq).and_then(|d| d.parts.get(p as usize)) else {
            return Ok(());
        };
        let (low, high, from) = (part.low, part.high, part.counted.max(part.low));
        if from >= high {
            return Ok(());
        }
        self.fill_window(config, dlq, p, from)?;
        let Inner {
            client,
            dlqs,
            ledger,
            ..
        } = self;
        let Some(part) = dlqs.get_mut(dlq).and_then(|d| d.parts.get_mut(p as usize)) else {
            return Ok(());
        };
        let mut expected = from;
        let mut gaps: Vec<i64> = Vec::new();
        let mut copies: Vec<(i64, i64)> = Vec::new();
        let window = &mut part.window;
        client.read(dlq, &[(p, from, high)], |m| {
            use rdkafka::Message as _;
            let o = m.offset();
            gaps.extend(expected..o);
            expected = o + 1;
            if let Some(id) = own_id_of(config, dlq, m)
                && let Some((later, first)) = window.push(&id, o, low)
                && later == o
            {
                copies.push((o, first));
            }
            ControlFlow::Continue(())
        })?;
        gaps.extend(expected..high);
        tracing::debug!(
            dlq,
            partition = p,
            from,
            to = high,
            gaps = gaps.len(),
            copies = copies.len(),
            "counted"
        );
        window.to = Some(high);
        ledger.counted_mut(&key, p).add(from, high, &gaps, &copies);
        part.counted = high;
        Ok(())
    }

    /// Makes the id window of a partition continue up to `to`: reads the
    /// records it has not seen, at most its size back from `to`.
    pub(super) fn fill_window(
        &mut self,
        config: &KafkaConfig,
        dlq: &str,
        p: i32,
        to: i64,
    ) -> Result<()> {
        let Inner { client, dlqs, .. } = self;
        let Some(part) = dlqs.get_mut(dlq).and_then(|d| d.parts.get_mut(p as usize)) else {
            return Ok(());
        };
        let low = part.low;
        let back = to.saturating_sub(part.window.cap() as i64).max(low);
        let from = match part.window.to {
            Some(t) if t >= back && t <= to => t,
            Some(t) if t > to => return Ok(()),
            _ => back,
        };
        if from < to {
            let window = &mut part.window;
            client.read(dlq, &[(p, from, to)], |m| {
                use rdkafka::Message as _;
                if let Some(id) = own_id_of(config, dlq, m) {
                    window.push(&id, m.offset(), low);
                }
                ControlFlow::Continue(())
            })?;
        }
        part.window.to = Some(to);
        Ok(())
    }

    /// A record's status: its settlement mark, else an entry of the
    /// former format naming its position, else pending.
    pub(super) fn status_at(&self, dlq: &str, p: i32, o: i64) -> (Status, Option<DateTime<Utc>>) {
        let tid = self.topic_ids.get(dlq).map(String::as_str);
        self.ledger.status(dlq, tid, p, o)
    }

    /// What the count found in a partition of `dlq`, if anything.
    pub(super) fn counted(&self, dlq: &str, p: i32) -> Option<&crate::ledger::Counted> {
        self.ledger.counted(&self.count_key(dlq), p)
    }

    /// Where the records of `dlq` with these ids lie (their first copies),
    /// from the cache, else by reading the DLQ: first the partition an id
    /// of the form `kafka:<topic>:<partition>:<offset>` names (where dlq's
    /// writers put it), then the others. Reading costs what the partitions
    /// hold; it serves records settled by id that this store never scanned.
    pub(super) fn locate(
        &mut self,
        config: &KafkaConfig,
        dlq: &str,
        ids: &[&str],
    ) -> Result<HashMap<String, PartitionOffset>> {
        let mut found: HashMap<String, PartitionOffset> = HashMap::new();
        let mut missing: HashSet<&str> = HashSet::new();
        let Some(ds) = self.dlqs.get(dlq) else {
            return Ok(found);
        };
        for &id in ids {
            match self.cache.get(dlq, id) {
                Some(at)
                    if ds
                        .parts
                        .get(at.partition as usize)
                        .is_some_and(|part| at.offset >= part.low) =>
                {
                    found.insert(id.to_owned(), at);
                }
                _ => {
                    missing.insert(id);
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let n = ds.parts.len() as i32;
        let mut order: Vec<i32> = Vec::new();
        for id in &missing {
            if let Some(p) = hinted_partition(id, n)
                && !order.contains(&p)
            {
                order.push(p);
            }
        }
        let rest: Vec<i32> = (0..n).filter(|p| !order.contains(p)).collect();
        order.extend(rest);
        for p in order {
            if missing.is_empty() {
                break;
            }
            let Some(part) = self.dlqs.get(dlq).and_then(|d| d.parts.get(p as usize)) else {
                continue;
            };
            let (low, high) = (part.low, part.high);
            let mut hits: Vec<(String, i64)> = Vec::new();
            let counted = self.ledger.counted(&self.count_key(dlq), p);
            self.client.read(dlq, &[(p, low, high)], |m| {
                use rdkafka::Message as _;
                let o = m.offset();
                if counted.is_some_and(|c| c.hides(low, o)) {
                    return ControlFlow::Continue(());
                }
                let id = id_of(config, dlq, m);
                if missing.remove(id.as_str()) {
                    hits.push((id, o));
                    if missing.is_empty() {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            })?;
            for (id, o) in hits {
                let at = PartitionOffset::new(p, o);
                self.cache.put(dlq, &id, at);
                found.insert(id, at);
            }
        }
        Ok(found)
    }

    /// A claim-check blob's bytes, from its chunks in the blob topic.
    pub(super) fn read_blob(&self, config: &KafkaConfig, sha256: &str) -> Result<Option<Vec<u8>>> {
        let topic = &config.blob_topic;
        let Some(loc) = self.ledger.blob(sha256) else {
            return self.find_blob(config, sha256);
        };
        let mut out = Vec::with_capacity(usize::try_from(loc.size).unwrap_or(0));
        for (i, &(p, o)) in loc.chunks.iter().enumerate() {
            let key = chunk_key(sha256, i);
            let at = self.client.fetch(topic, p, &[o])?;
            let chunk = match at
                .into_iter()
                .find(|f| f.key.as_deref() == Some(key.as_bytes()))
            {
                Some(f) => f.value.unwrap_or_default(),
                // Compacted away: a later copy of the same chunk exists
                // (the same blob written again); it lies after this offset.
                None => match self.find_chunk(config, p, o, &key)? {
                    Some(v) => v,
                    None => return Ok(None),
                },
            };
            out.extend_from_slice(&chunk);
        }
        Ok(Some(out))
    }

    /// The first record with `key` at or after `from` in a blob partition.
    pub(super) fn find_chunk(
        &self,
        config: &KafkaConfig,
        p: i32,
        from: i64,
        key: &str,
    ) -> Result<Option<Vec<u8>>> {
        let topic = &config.blob_topic;
        let tp = TopicPartition::new(topic.as_str(), p);
        let marks = self.client.watermarks(std::slice::from_ref(&tp))?;
        let Some(&(_, hi)) = marks.get(&tp) else {
            return Ok(None);
        };
        let mut found = None;
        self.client.read(topic, &[(p, from, hi)], |m| {
            use rdkafka::Message as _;
            if m.key() == Some(key.as_bytes()) {
                found = m.payload().map(<[u8]>::to_vec);
                return ControlFlow::Break(());
            }
            ControlFlow::Continue(())
        })?;
        Ok(found)
    }

    /// A blob without a locator in the ledger (a non-transactional commit
    /// interrupted between its records and its ledger entries): search the
    /// blob topic for its chunks. Slow, and only ever needed after such a
    /// failure.
    pub(super) fn find_blob(&self, config: &KafkaConfig, sha256: &str) -> Result<Option<Vec<u8>>> {
        let p = pick(sha256.as_bytes(), self.blob_partitions);
        let mut out = Vec::new();
        for i in 0.. {
            match self.find_chunk(config, p, 0, &chunk_key(sha256, i))? {
                Some(chunk) => out.extend_from_slice(&chunk),
                None if i == 0 => return Ok(None),
                None => break,
            }
        }
        tracing::warn!(sha256, "claim-check blob found without a ledger locator");
        Ok(Some(out))
    }

    /// A stored record from its fetched message.
    pub(super) fn materialize(
        &self,
        config: &KafkaConfig,
        dlq: &str,
        f: Fetched,
    ) -> Result<StoredRecord> {
        let letter = decode_kafka_with_prefix(
            &KafkaRecord {
                value: f.value.as_deref(),
                key: f.key.as_deref(),
                headers: &f.headers,
                topic: dlq,
                partition: f.partition,
                offset: f.offset,
                timestamp: f.timestamp,
            },
            &config.dlq_prefix,
        );
        self.stored(
            config,
            dlq,
            PartitionOffset::new(f.partition, f.offset),
            letter,
            f.timestamp,
        )
    }

    /// The stored record of a decoded DLQ record at `(partition, offset)`
    /// with Kafka timestamp `timestamp`: claim checks resolved, status from
    /// the ledger.
    pub(super) fn stored(
        &self,
        config: &KafkaConfig,
        dlq: &str,
        at: PartitionOffset,
        mut letter: DeadLetter,
        timestamp: Option<DateTime<Utc>>,
    ) -> Result<StoredRecord> {
        if letter.has_claim_checks() {
            letter.resolve_claims(|c| {
                self.read_blob(config, &c.sha256)
                    .map_err(|e| ClaimError::Store {
                        pointer: c.pointer.clone(),
                        message: e.to_string(),
                    })
            })?;
        }
        let (status, settled_at) = self.status_at(dlq, at.partition, at.offset);
        Ok(StoredRecord {
            dlq: dlq.to_owned(),
            status,
            stored_at: timestamp.unwrap_or(letter.failed_at),
            settled_at,
            letter,
        })
    }
}

/// The DLQ partition dlq's writers put a record with an id of the form
/// `kafka:<topic>:<partition>:<offset>` in (its source partition modulo
/// the DLQ's partition count).
fn hinted_partition(id: &str, partitions: i32) -> Option<i32> {
    let rest = id.strip_prefix("kafka:")?;
    let mut it = rest.rsplitn(3, ':');
    let (_, p) = (
        it.next()?.parse::<i64>().ok()?,
        it.next()?.parse::<i32>().ok()?,
    );
    it.next()?;
    (p >= 0 && partitions > 0).then(|| p % partitions)
}
