//! Bringing the index up to date (the follower), and reading records and
//! claim-check blobs back.

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
        self.dlqs.entry(dlq.to_owned()).or_default().grow(n);
        self.learn_topic_ids(&[dlq])?;
        Ok(n)
    }

    /// Brings the index up to date with the DLQ topics in `scope` and with
    /// the ledger: watermarks, then only the records not read yet.
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
        // what was known of it is forgotten, and it is read afresh.
        let names: Vec<&str> = topics.keys().map(String::as_str).collect();
        for topic in self.check_topic_ids(&names)? {
            tracing::warn!(topic, "DLQ topic was recreated; reading it afresh");
            if let Some(di) = self.dlqs.get_mut(&topic) {
                *di = DlqIndex::default();
            }
            self.decoded.clear();
        }
        let mut parts: Vec<(String, i32)> = Vec::new();
        for (t, &n) in &topics {
            self.dlqs.entry(t.clone()).or_default().grow(n);
            parts.extend((0..n).map(|p| (t.clone(), p)));
        }
        let ledger_partitions = self.ledger_next.len() as i32;
        parts.extend((0..ledger_partitions).map(|p| (config.ledger_topic.clone(), p)));
        let marks = self.client.watermarks(&parts)?;

        let mut recreated: Vec<String> = Vec::new();
        let Inner {
            client,
            dlqs,
            ledger,
            ledger_next,
            ledger_tail,
            sweeps,
            decoded,
            topic_ids,
            ..
        } = self;
        for (topic, &n) in &topics {
            let Some(di) = dlqs.get_mut(topic) else {
                continue;
            };
            let mut ranges = Vec::new();
            for p in 0..n {
                let Some(&(lo, hi)) = marks.get(&(topic.clone(), p)) else {
                    continue;
                };
                let next = di.parts[p as usize].next;
                if hi < next && di.parts[p as usize].tail.lagging(hi) {
                    // Our own last commit, its markers not written yet.
                    if lo > di.parts[p as usize].low {
                        sweeps.insert((topic.clone(), p), lo);
                    }
                    di.expire(p, lo);
                    continue;
                }
                if hi < next {
                    tracing::warn!(
                        topic,
                        partition = p,
                        "DLQ partition was truncated or recreated; re-reading it"
                    );
                    di.reset(p, lo);
                    decoded.drop_partition(topic, p);
                    recreated.push(topic.clone());
                }
                if lo > di.parts[p as usize].low {
                    sweeps.insert((topic.clone(), p), lo);
                }
                di.expire(p, lo);
                let part = &mut di.parts[p as usize];
                part.next = part.next.max(lo);
                if part.next < hi {
                    ranges.push((p, part.next, hi));
                }
            }
            if ranges.is_empty() {
                continue;
            }
            client.read(topic, &ranges, |m| {
                use rdkafka::Message as _;
                let (p, o) = (m.partition(), m.offset());
                let (rec, whole) = decode_for_index(config, topic, m, decoded);
                di.insert(p, o, rec);
                if let Some(d) = whole {
                    decoded.offer(topic, p, o, d);
                }
                if let Some(part) = di.parts.get_mut(p as usize) {
                    part.next = part.next.max(o + 1);
                }
                ControlFlow::Continue(())
            })?;
            for (p, _, hi) in ranges {
                let part = &mut di.parts[p as usize];
                part.next = part.next.max(hi);
            }
            for p in 0..n {
                if let (Some(&(_, hi)), Some(part)) =
                    (marks.get(&(topic.clone(), p)), di.parts.get_mut(p as usize))
                {
                    part.tail.seen(part.next, hi);
                }
            }
        }
        // A recreated topic has a new id: its settlements start afresh.
        for t in &recreated {
            topic_ids.remove(t);
        }

        let ledger_topic = &config.ledger_topic;
        let mut ranges = Vec::new();
        for (p, next) in ledger_next.iter_mut().enumerate() {
            let Some(&(lo, hi)) = marks.get(&(ledger_topic.clone(), p as i32)) else {
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
            if let Some(&(_, hi)) = marks.get(&(ledger_topic.clone(), p as i32)) {
                tail.seen(ledger_next[p], hi);
            }
        }
        let recreated: Vec<&str> = recreated.iter().map(String::as_str).collect();
        self.learn_topic_ids(&recreated)?;
        Ok(())
    }

    /// Where the follower stands in each partition a commit writes to (the
    /// ledger's and the DLQs'), to recognize the commit's own records after.
    pub(super) fn follow_state(&self, config: &KafkaConfig, topics: &[String]) -> FollowState {
        let mut out = HashMap::new();
        for t in topics {
            if *t == config.ledger_topic {
                for (p, (&next, &tail)) in
                    self.ledger_next.iter().zip(&self.ledger_tail).enumerate()
                {
                    out.insert((t.clone(), p as i32), (next, tail));
                }
            } else if let Some(di) = self.dlqs.get(t) {
                for (p, part) in di.parts.iter().enumerate() {
                    out.insert((t.clone(), p as i32), (part.next, part.tail));
                }
            }
        }
        out
    }

    /// Moves the follower past the records a commit just wrote (they are
    /// indexed already), where nothing else can be among them and nothing
    /// was read meanwhile; elsewhere the follower reads them as usual.
    pub(super) fn follow_own_writes(
        &mut self,
        config: &KafkaConfig,
        before: &FollowState,
        topics: &[String],
        positions: &[(i32, i64)],
    ) {
        let mut spans: HashMap<(&str, i32), (i64, i64, usize)> = HashMap::new();
        for (t, &(p, o)) in topics.iter().zip(positions) {
            let e = spans.entry((t.as_str(), p)).or_insert((o, o, 0));
            e.0 = e.0.min(o);
            e.1 = e.1.max(o);
            e.2 += 1;
        }
        let txn = config.transactions;
        for ((t, p), span) in spans {
            let Some(&was) = before.get(&(t.to_owned(), p)) else {
                continue;
            };
            let at = if t == config.ledger_topic {
                self.ledger_next
                    .get_mut(p as usize)
                    .zip(self.ledger_tail.get_mut(p as usize))
            } else {
                self.dlqs
                    .get_mut(t)
                    .and_then(|di| di.parts.get_mut(p as usize))
                    .map(|part| (&mut part.next, &mut part.tail))
            };
            if let Some((next, tail)) = at
                && (*next, *tail) == was
            {
                tail.own_write(next, span, txn);
            }
        }
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
        let marks = self.client.watermarks(&[(topic.clone(), p)])?;
        let Some(&(_, hi)) = marks.get(&(topic.clone(), p)) else {
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
        self.stored(config, dlq, (f.partition, f.offset), letter, f.timestamp)
    }

    /// The stored record of a decoded DLQ record at `(partition, offset)`
    /// with Kafka timestamp `timestamp`: claim checks resolved, status from
    /// the ledger.
    pub(super) fn stored(
        &self,
        config: &KafkaConfig,
        dlq: &str,
        (partition, offset): (i32, i64),
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
        let tid = self.topic_ids.get(dlq).map(String::as_str);
        let (status, settled_at) = self.ledger.status(dlq, tid, &letter.id, partition, offset);
        Ok(StoredRecord {
            dlq: dlq.to_owned(),
            status,
            stored_at: timestamp.unwrap_or(letter.failed_at),
            settled_at,
            letter,
        })
    }

    pub(super) fn status(&self, dlq: &str, rec: &Rec, p: i32, o: i64) -> Status {
        self.status_of(dlq, &rec.id, p, o)
    }

    /// Whether any record selected by status lies at or after the cursor
    /// positions (DLQs in order, from `dlq`/`partition` on).
    pub(super) fn more_after(
        &self,
        selection: &Selection,
        positions: &BTreeMap<(String, i32), i64>,
    ) -> bool {
        self.dlqs
            .iter()
            .filter(|(name, _)| selection.dlq.as_deref().is_none_or(|d| d == name.as_str()))
            .any(|(name, di)| {
                di.parts.iter().enumerate().any(|(p, part)| {
                    let p = p as i32;
                    let from = positions.get(&(name.clone(), p)).copied().unwrap_or(0);
                    part.recs
                        .range(from..)
                        .any(|(&o, r)| !r.dup && selection.wants_status(self.status(name, r, p, o)))
                })
            })
    }
}
