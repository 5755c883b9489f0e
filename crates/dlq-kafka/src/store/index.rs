//! The in-memory index of the DLQ topics: per record its id, failure time
//! and source partition, and the follower's position in each partition.

use super::*;

/// One record as the index knows it.
#[derive(Debug, Clone)]
pub(super) struct Rec {
    pub(super) id: Arc<str>,
    pub(super) failed_at: DateTime<Utc>,
    pub(super) source_partition: Option<i32>,
    /// A later copy of an id already stored: invisible to scans and stats.
    pub(super) dup: bool,
}

/// What the store knows about the end of a partition it follows beyond
/// what it has read: its own writes, indexed when they were acknowledged,
/// so that the follower does not read them back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tail {
    /// Where the follower had read to when it first moved past its own
    /// records still unconfirmed by a read: they may not be visible to
    /// read_committed readers yet (their transaction markers are written
    /// after the commit returns, and another writer's open transaction can
    /// hold the last stable offset back further), so a last stable offset
    /// between this and `next` is that, not the partition truncated (which
    /// would take it below what was already read).
    pub(super) own_from: Option<i64>,
    /// The offset after our last transaction's records, where its commit
    /// marker presumably is: confirmed when our next transaction's first
    /// record lands right after it (the marker must lie between the two).
    pub(super) marker: Option<i64>,
}

impl Tail {
    /// Where our next own record must land for the records between to be
    /// known (nothing but our last transaction's marker).
    pub(super) fn expected(&self, next: i64) -> i64 {
        match self.marker {
            Some(m) if m == next => next + 1,
            _ => next,
        }
    }

    /// Follows our own write of `span` = (first, last, count) in a partition
    /// read up to `next`: moves `next` past it when it starts where the
    /// partition was known to end and nobody else's record is among it.
    pub(super) fn own_write(
        &mut self,
        next: &mut i64,
        (first, last, count): (i64, i64, usize),
        txn: bool,
    ) {
        if first != self.expected(*next) || count as i64 != last - first + 1 {
            return;
        }
        self.own_from.get_or_insert(*next);
        *next = last + 1;
        self.marker = txn.then_some(last + 1);
    }

    /// Whether a high watermark below `next` is our own writes not being
    /// visible yet.
    pub(super) fn lagging(&self, hi: i64) -> bool {
        self.own_from.is_some_and(|f| hi >= f)
    }

    /// The follower saw the partition up to `hi` (and read to `next`).
    pub(super) fn seen(&mut self, next: i64, hi: i64) {
        if hi >= next {
            self.own_from = None;
        }
        if self.marker.is_some_and(|m| m < next) {
            self.marker = None;
        }
    }
}

/// One partition of a DLQ topic.
#[derive(Debug, Default)]
pub(super) struct PartIndex {
    /// The next offset to read.
    pub(super) next: i64,
    /// Our own writes past `next`'s reads.
    pub(super) tail: Tail,
    /// The low watermark last seen.
    pub(super) low: i64,
    pub(super) recs: BTreeMap<i64, Rec>,
}

/// One DLQ topic.
#[derive(Debug, Default)]
pub(super) struct DlqIndex {
    pub(super) parts: Vec<PartIndex>,
    /// Where each id's record is (its first copy).
    pub(super) ids: HashMap<Arc<str>, (i32, i64)>,
    /// Later copies of ids (rare: a write retried across a crash, or two
    /// writers racing), promoted when the first copy expires.
    pub(super) copies: HashMap<Arc<str>, BTreeSet<(i32, i64)>>,
}

impl DlqIndex {
    pub(super) fn grow(&mut self, partitions: i32) {
        let n = usize::try_from(partitions).unwrap_or(0);
        if self.parts.len() < n {
            self.parts.resize_with(n, PartIndex::default);
        }
    }

    pub(super) fn rec_mut(&mut self, (p, o): (i32, i64)) -> Option<&mut Rec> {
        self.parts.get_mut(p as usize)?.recs.get_mut(&o)
    }

    /// Adds a record read (or written) at `partition`/`offset`. The first
    /// copy of an id, by `(partition, offset)`, is the record; later ones
    /// are duplicates. Adding the same position twice is a no-op.
    pub(super) fn insert(&mut self, partition: i32, offset: i64, mut rec: Rec) {
        let pos = (partition, offset);
        let Some(part) = self.parts.get(partition as usize) else {
            return;
        };
        if part.recs.contains_key(&offset) {
            return;
        }
        match self.ids.get(&rec.id).copied() {
            None => {
                self.ids.insert(rec.id.clone(), pos);
            }
            Some(first) if first < pos => {
                rec.dup = true;
                self.copies.entry(rec.id.clone()).or_default().insert(pos);
            }
            Some(first) => {
                if let Some(old) = self.rec_mut(first) {
                    old.dup = true;
                }
                self.copies.entry(rec.id.clone()).or_default().insert(first);
                self.ids.insert(rec.id.clone(), pos);
            }
        }
        if let Some(part) = self.parts.get_mut(partition as usize) {
            part.recs.insert(offset, rec);
        }
    }

    /// Forgets the records below the low watermark (deleted by retention).
    pub(super) fn expire(&mut self, partition: i32, low: i64) {
        let Some(part) = self.parts.get_mut(partition as usize) else {
            return;
        };
        if low <= part.low && part.recs.first_key_value().is_none_or(|(&o, _)| o >= low) {
            part.low = part.low.max(low);
            return;
        }
        part.low = low;
        let keep = part.recs.split_off(&low);
        let gone = std::mem::replace(&mut part.recs, keep);
        // Expired copies first, so that only copies still retained are
        // promoted below.
        for (&offset, rec) in gone.iter().filter(|(_, r)| r.dup) {
            if let Some(set) = self.copies.get_mut(&rec.id) {
                set.remove(&(partition, offset));
                if set.is_empty() {
                    self.copies.remove(&rec.id);
                }
            }
        }
        for (offset, rec) in gone.into_iter().filter(|(_, r)| !r.dup) {
            if self.ids.get(&rec.id) != Some(&(partition, offset)) {
                continue;
            }
            self.ids.remove(&rec.id);
            // The next copy, if any, becomes the record.
            let next = self.copies.get_mut(&rec.id).and_then(BTreeSet::pop_first);
            if self.copies.get(&rec.id).is_some_and(BTreeSet::is_empty) {
                self.copies.remove(&rec.id);
            }
            if let Some(next) = next {
                self.ids.insert(rec.id.clone(), next);
                if let Some(r) = self.rec_mut(next) {
                    r.dup = false;
                }
            }
        }
    }

    /// Forgets a partition entirely (its topic was recreated).
    pub(super) fn reset(&mut self, partition: i32, low: i64) {
        self.expire(partition, i64::MAX);
        if let Some(part) = self.parts.get_mut(partition as usize) {
            part.low = low;
            part.next = low;
            part.tail = Tail::default();
        }
    }
}

/// The follower's position in each partition, by topic and partition.
pub(super) type FollowState = HashMap<(String, i32), (i64, Tail)>;

/// Decodes a DLQ record for the index; the whole record too, when the
/// scan that asked for the read can keep it.
pub(super) fn decode_for_index(
    config: &KafkaConfig,
    topic: &str,
    m: &rdkafka::message::BorrowedMessage<'_>,
    decoded: &DecodedCache,
) -> (Rec, Option<Decoded>) {
    use rdkafka::Message as _;
    let headers = headers_of(m);
    let timestamp = timestamp_of(m);
    let letter = decode_kafka_with_prefix(
        &KafkaRecord {
            value: m.payload(),
            key: m.key(),
            headers: &headers,
            topic,
            partition: m.partition(),
            offset: m.offset(),
            timestamp,
        },
        &config.dlq_prefix,
    );
    let size = m.payload().map_or(0, <[u8]>::len) + m.key().map_or(0, <[u8]>::len);
    let (failed_at, source_partition) = (letter.failed_at, letter.source.partition);
    let (id, keep): (Arc<str>, _) = if decoded.wants(size) {
        let id = Arc::from(letter.id.as_str());
        (id, Some(Decoded::new(letter, timestamp, size)))
    } else {
        (Arc::from(letter.id), None)
    };
    let rec = Rec {
        id,
        failed_at,
        source_partition,
        dup: false,
    };
    (rec, keep)
}
