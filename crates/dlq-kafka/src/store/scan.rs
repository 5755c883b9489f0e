//! Scans: pages of the selected records, resumed from a cursor.

use super::*;

/// Unwanted offsets (settled records, in a scan for pending ones) a scan
/// reads through rather than seeking past them: a seek costs a round trip.
pub(super) const SEEK_GAP: i64 = 1024;

/// `v1;<topic>/<partition>=<next offset>;…`: where each partition's scan
/// resumes (partitions not listed start at their beginning).
pub(super) fn encode_cursor(positions: &BTreeMap<TopicPartition, i64>) -> Cursor {
    let mut s = String::from("v1");
    for (tp, o) in positions {
        s.push_str(&format!(";{}/{}={o}", tp.topic, tp.partition));
    }
    Cursor(s)
}

pub(super) fn decode_cursor(cursor: &Cursor) -> Result<BTreeMap<TopicPartition, i64>> {
    let bad = || failure(format!("invalid scan cursor {:?}", cursor.0), false);
    let mut parts = cursor.0.split(';');
    if parts.next() != Some("v1") {
        return Err(bad());
    }
    let mut out = BTreeMap::new();
    for part in parts {
        let (tp, o) = part.rsplit_once('=').ok_or_else(bad)?;
        let (t, p) = tp.rsplit_once('/').ok_or_else(bad)?;
        let p: i32 = p.parse().map_err(|_| bad())?;
        let o: i64 = o.parse().map_err(|_| bad())?;
        out.insert(TopicPartition::new(t, p), o);
    }
    Ok(out)
}

impl Inner {
    /// Whether offsets of a partition not counted yet are settled (or
    /// named by entries of the former format): settled before anyone
    /// counted them.
    fn settled_beyond_count(&self, dlq: &str, p: i32) -> bool {
        let Some(part) = self.dlqs.get(dlq).and_then(|d| d.parts.get(p as usize)) else {
            return false;
        };
        let (from, to) = (part.counted.max(part.low), part.high);
        if from >= to {
            return false;
        }
        let marked = self
            .topic_ids
            .get(dlq)
            .and_then(|t| self.ledger.marks(t, p))
            .is_some_and(|m| m.first(from, to, |mark| mark != Mark::Unmarked).is_some());
        marked || !self.ledger.legacy_in(dlq, p, from, to).is_empty()
    }

    /// Whether a record with this settlement mark can be selected (records
    /// settled by an entry of the former format carry no mark: they are
    /// looked at one by one).
    fn wants_mark(&self, dlq: &str, selection: &Selection, mark: Mark) -> bool {
        match mark.status() {
            None => false,
            Some(status) => {
                selection.wants_status(status)
                    || (mark == Mark::Unmarked && self.ledger.has_legacy(dlq))
            }
        }
    }

    /// The first offset in `[from, to)` of a partition that may hold a
    /// record the selection wants, by status.
    pub(super) fn next_wanted(
        &self,
        dlq: &str,
        p: i32,
        from: i64,
        to: i64,
        selection: &Selection,
    ) -> Option<i64> {
        let low = self.dlqs.get(dlq)?.parts.get(p as usize)?.low;
        let marks = self
            .topic_ids
            .get(dlq)
            .and_then(|t| self.ledger.marks(t, p));
        let counted = self.counted(dlq, p);
        let mut at = from.max(low);
        while at < to {
            let o = match marks {
                Some(m) => m.first(at, to, |mark| self.wants_mark(dlq, selection, mark))?,
                None if self.wants_mark(dlq, selection, Mark::Unmarked) => at,
                None => return None,
            };
            if counted.is_some_and(|c| c.hides(low, o)) {
                at = o + 1;
                continue;
            }
            return Some(o);
        }
        None
    }

    /// Where a run of wanted offsets that starts at `start` ends: the
    /// first offset not wanted, past short stretches of unwanted ones
    /// (cheaper to read through than to seek past).
    fn run_end(&self, dlq: &str, p: i32, start: i64, to: i64, selection: &Selection) -> i64 {
        let Some(marks) = self
            .topic_ids
            .get(dlq)
            .and_then(|t| self.ledger.marks(t, p))
        else {
            return to;
        };
        let mut end = start;
        loop {
            end = marks
                .first(end, to, |mark| !self.wants_mark(dlq, selection, mark))
                .unwrap_or(to);
            match marks.first(end, to, |mark| self.wants_mark(dlq, selection, mark)) {
                Some(next) if next - end <= SEEK_GAP => end = next,
                _ => return end,
            }
        }
    }

    /// Whether any record selected by status lies at or after the cursor
    /// positions (DLQs in order, from `dlq`/`partition` on).
    fn more_after(&self, selection: &Selection, positions: &BTreeMap<TopicPartition, i64>) -> bool {
        self.dlqs
            .iter()
            .filter(|(name, _)| selection.dlq.as_deref().is_none_or(|d| d == name.as_str()))
            .any(|(name, ds)| {
                ds.parts.iter().enumerate().any(|(p, part)| {
                    let p = p as i32;
                    let from = positions
                        .get(&TopicPartition::new(name.as_str(), p))
                        .copied()
                        .unwrap_or(0);
                    self.next_wanted(name, p, from, part.high, selection)
                        .is_some()
                })
            })
    }
}

impl KafkaStore {
    /// A page of [`DlqStore::scan`]; without `refresh`, from the partitions'
    /// state as it stands (brought up to date by an earlier call), which
    /// saves the round trips for metadata and watermarks on every page of
    /// a long scan. Reads only the records it may return: from the first
    /// wanted offset of each partition, seeking past long settled runs.
    pub(crate) fn scan_page(
        &self,
        selection: &Selection,
        after: Option<&Cursor>,
        limit: usize,
        refresh: bool,
    ) -> Result<ScanPage> {
        let mut positions = match after {
            Some(c) => decode_cursor(c)?,
            None => BTreeMap::new(),
        };
        let mut inner = self.lock();
        match &selection.dlq {
            Some(d) if !self.is_dlq(d) => return Ok(ScanPage::default()),
            _ if !refresh => {}
            Some(d) => inner.refresh(&self.config, Scope::Only(std::slice::from_ref(d)))?,
            None => inner.refresh(&self.config, Scope::All)?,
        }
        if refresh {
            // Partitions with offsets not counted yet among settled ones
            // are counted first, so that a later copy of a record is left
            // out even when its first copy is settled (in a run the scan
            // seeks past). Elsewhere the scan counts what it reads.
            let parts: Vec<TopicPartition> = inner
                .dlqs
                .iter()
                .filter(|(n, _)| selection.dlq.as_deref().is_none_or(|d| d == n.as_str()))
                .flat_map(|(n, d)| {
                    (0..d.parts.len() as i32).map(move |p| TopicPartition::new(n.as_str(), p))
                })
                .collect();
            for tp in parts {
                if inner.settled_beyond_count(&tp.topic, tp.partition) {
                    inner.count(&self.config, &tp.topic, tp.partition)?;
                }
            }
            inner.persist_counts(&self.config);
        }

        let mut page = ScanPage::default();
        if limit == 0 {
            page.next = Some(encode_cursor(&positions));
            return Ok(page);
        }
        let inner = &mut *inner;
        let names: Vec<String> = inner
            .dlqs
            .keys()
            .filter(|n| selection.dlq.as_deref().is_none_or(|d| d == n.as_str()))
            .cloned()
            .collect();
        for name in names {
            let n = inner.dlqs.get(&name).map_or(0, |d| d.parts.len()) as i32;
            for p in 0..n {
                let Some(part) = inner.dlqs.get(&name).and_then(|d| d.parts.get(p as usize)) else {
                    continue;
                };
                let (low, high) = (part.low, part.high);
                let key = TopicPartition::new(name.as_str(), p);
                let mut pos = positions.get(&key).copied().unwrap_or(low).max(low);
                while pos < high {
                    let Some(start) = inner.next_wanted(&name, p, pos, high, selection) else {
                        pos = high;
                        break;
                    };
                    let end = inner.run_end(&name, p, start, high, selection);
                    let need = limit - page.records.len();
                    let mut found: Vec<Fetched> = Vec::new();
                    let mut read_to = end;
                    // A read that starts where counting stopped counts as
                    // it goes (gaps, later copies, left out of the page).
                    let counting = inner
                        .dlqs
                        .get(&name)
                        .and_then(|d| d.parts.get(p as usize))
                        .is_some_and(|part| part.counted == start);
                    if counting {
                        inner.fill_window(&self.config, &name, p, start)?;
                    }
                    let mut window = match inner
                        .dlqs
                        .get_mut(&name)
                        .and_then(|d| d.parts.get_mut(p as usize))
                    {
                        Some(part) if counting => std::mem::take(&mut part.window),
                        _ => IdWindow::default(),
                    };
                    let mut expected = start;
                    let mut gaps: Vec<i64> = Vec::new();
                    let mut copies: Vec<(i64, i64)> = Vec::new();
                    let read = {
                        let this = &*inner;
                        let counted = this.counted(&name, p);
                        this.client.read(&name, &[(p, start, end)], |m| {
                            use rdkafka::Message as _;
                            let o = m.offset();
                            if counting {
                                gaps.extend(expected..o);
                                expected = o + 1;
                                if let Some(id) = own_id_of(&self.config, &name, m)
                                    && let Some((later, first)) = window.push(&id, o, low)
                                    && later == o
                                {
                                    copies.push((o, first));
                                    return ControlFlow::Continue(());
                                }
                            }
                            if counted.is_some_and(|c| c.hides(low, o))
                                || !selection.wants_status(this.status_at(&name, p, o).0)
                            {
                                return ControlFlow::Continue(());
                            }
                            found.push(Fetched::of(m));
                            if found.len() >= need {
                                read_to = o + 1;
                                return ControlFlow::Break(());
                            }
                            ControlFlow::Continue(())
                        })
                    };
                    if counting {
                        let key = inner.count_key(&name);
                        if let Some(part) = inner
                            .dlqs
                            .get_mut(&name)
                            .and_then(|d| d.parts.get_mut(p as usize))
                        {
                            part.window = window;
                            if read.is_ok() {
                                gaps.extend(expected..read_to);
                                part.window.to = Some(read_to);
                                part.counted = read_to;
                                inner
                                    .ledger
                                    .counted_mut(&key, p)
                                    .add(start, read_to, &gaps, &copies);
                            } else {
                                part.window.to = None;
                            }
                        }
                    }
                    read?;
                    pos = read_to;
                    // Claim checks are resolved after the read: resolving
                    // reads the blob topic with the same consumer.
                    for f in found {
                        let offset = f.offset;
                        let record = inner.materialize(&self.config, &name, f)?;
                        inner
                            .cache
                            .put(&name, &record.letter.id, PartitionOffset::new(p, offset));
                        if selection.matches(&record) {
                            page.records.push(record);
                        }
                    }
                    if page.records.len() >= limit {
                        positions.insert(key, pos);
                        if inner.more_after(selection, &positions) {
                            page.next = Some(encode_cursor(&positions));
                        } else {
                            inner.persist_counts(&self.config);
                        }
                        return Ok(page);
                    }
                }
                positions.insert(key, pos.max(high));
            }
        }
        // The scan is over: what it counted, for later readers.
        inner.persist_counts(&self.config);
        Ok(page)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_roundtrip_and_reject_garbage() {
        let mut m = BTreeMap::new();
        m.insert(TopicPartition::new("dlq.a.b", 0), 5);
        m.insert(TopicPartition::new("dlq.c", 12), 0);
        let c = encode_cursor(&m);
        assert_eq!(decode_cursor(&c).expect("decode"), m);
        assert!(decode_cursor(&Cursor("17".into())).is_err());
        assert!(decode_cursor(&Cursor("v1;x=1".into())).is_err());
    }
}
