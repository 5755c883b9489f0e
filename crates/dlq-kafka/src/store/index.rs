//! What the store keeps of each DLQ partition between calls, in memory that
//! does not grow with the DLQ: its watermarks, how far it was counted, a
//! window of the last ids (deduplication), and a bounded cache of where
//! records the store has seen lie (settling by id).

use super::*;
use std::collections::VecDeque;

/// A map with a fast hasher: ids are not chosen by an attacker who could
/// profit from collisions (a DLQ's writers are trusted), and SipHash was a
/// tenth of a replay's time.
pub(super) type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// One DLQ partition.
#[derive(Debug, Default)]
pub(super) struct PartState {
    /// The log start last seen.
    pub(super) low: i64,
    /// The last stable offset last seen.
    pub(super) high: i64,
    /// Offsets below this (from `low`) were read to count them: the ledger's
    /// count state knows which hold no record.
    pub(super) counted: i64,
    /// The ids of the last records (deduplication).
    pub(super) window: IdWindow,
    /// The first pending record's offset and failure time, as last read.
    pub(super) head: Option<(i64, DateTime<Utc>)>,
}

/// The ledger follower's position in each ledger partition.
pub(super) type FollowState = HashMap<i32, (i64, Tail)>;

/// What the store knows about the end of a ledger partition beyond what
/// it has read: its own writes, applied when they were acknowledged, so
/// that the follower does not read them back.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Tail {
    /// Where the follower had read to when it first moved past its own
    /// records still unconfirmed by a read: they may not be visible to
    /// read_committed readers yet (their transaction markers are written
    /// after the commit returns, and another writer's open transaction can
    /// hold the last stable offset back further), so a last stable offset
    /// between this and `next` is that, not the partition truncated.
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

/// One DLQ topic.
#[derive(Debug, Default)]
pub(super) struct DlqState {
    pub(super) parts: Vec<PartState>,
}

impl DlqState {
    pub(super) fn grow(&mut self, partitions: i32, window: usize) {
        let n = usize::try_from(partitions).unwrap_or(0);
        while self.parts.len() < n {
            self.parts.push(PartState {
                window: IdWindow::new(window),
                ..PartState::default()
            });
        }
    }
}

/// The ids of the last records read or written in one DLQ partition, in
/// offset order, at most `cap` of them: an append whose id is among them
/// is a duplicate. `to` is where the window's reading stopped (offsets
/// below were seen), so that it is continued, not read again.
#[derive(Debug, Default)]
pub(super) struct IdWindow {
    cap: usize,
    ids: FastMap<Arc<str>, i64>,
    order: VecDeque<(i64, Arc<str>)>,
    /// Offsets below this were seen (`None`: never filled).
    pub(super) to: Option<i64>,
}

impl IdWindow {
    pub(super) fn new(cap: usize) -> IdWindow {
        IdWindow {
            cap: cap.max(1),
            ..IdWindow::default()
        }
    }

    /// Where the first copy of `id` lies, if the window holds it at or
    /// after `low`.
    pub(super) fn get(&self, id: &str, low: i64) -> Option<i64> {
        self.ids.get(id).copied().filter(|&o| o >= low)
    }

    /// Adds the record `id` at `offset`. When the window holds another
    /// copy of it (at or after `low`), returns `(later, first)`: the
    /// offsets of the later copy and of the first, which the window keeps.
    pub(super) fn push(&mut self, id: &str, offset: i64, low: i64) -> Option<(i64, i64)> {
        if let Some(known) = self.get(id, low) {
            return match known.cmp(&offset) {
                std::cmp::Ordering::Equal => None,
                std::cmp::Ordering::Less => Some((offset, known)),
                std::cmp::Ordering::Greater => {
                    if let Some(o) = self.ids.get_mut(id) {
                        *o = offset;
                    }
                    Some((known, offset))
                }
            };
        }
        let id: Arc<str> = Arc::from(id);
        self.ids.insert(id.clone(), offset);
        self.order.push_back((offset, id));
        while self.order.len() > self.cap {
            // Each id is in `order` once (an earlier copy found later
            // replaces the offset in `ids`, not the entry).
            if let Some((_, old)) = self.order.pop_front() {
                self.ids.remove(&old);
            }
        }
        None
    }

    /// Forgets everything (the partition was truncated or recreated).
    pub(super) fn clear(&mut self) {
        self.ids.clear();
        self.order.clear();
        self.to = None;
    }

    /// How many records a reader should read back before `at` to fill the
    /// window when it was not following the partition.
    pub(super) fn cap(&self) -> usize {
        self.cap
    }
}

/// Where records the store saw lie, by DLQ and id, for settling by id
/// without searching: a scan fills it with the records it returns, an
/// append with what it wrote. Two generations of at most `half` entries
/// each: looking up or adding is O(1) and allocates nothing to look up,
/// and memory stays bounded (the records of the pages in flight are always
/// in it).
#[derive(Debug, Default)]
pub(super) struct PositionCache {
    half: usize,
    current: Generation,
    previous: Generation,
}

/// One generation of [`PositionCache`]: by DLQ, then id.
#[derive(Debug, Default)]
struct Generation {
    entries: usize,
    by_dlq: FastMap<String, FastMap<Box<str>, PartitionOffset>>,
}

impl Generation {
    fn get(&self, dlq: &str, id: &str) -> Option<PartitionOffset> {
        self.by_dlq.get(dlq)?.get(id).copied()
    }
}

impl PositionCache {
    pub(super) fn new(entries: usize) -> PositionCache {
        PositionCache {
            half: (entries / 2).max(1),
            ..PositionCache::default()
        }
    }

    pub(super) fn get(&self, dlq: &str, id: &str) -> Option<PartitionOffset> {
        self.current
            .get(dlq, id)
            .or_else(|| self.previous.get(dlq, id))
    }

    pub(super) fn put(&mut self, dlq: &str, id: &str, at: PartitionOffset) {
        if self.current.entries >= self.half {
            self.previous = std::mem::take(&mut self.current);
        }
        let ids = match self.current.by_dlq.get_mut(dlq) {
            Some(ids) => ids,
            None => self.current.by_dlq.entry(dlq.to_owned()).or_default(),
        };
        if ids.insert(Box::from(id), at).is_none() {
            self.current.entries += 1;
        }
    }

    /// Forgets the records of a DLQ (its topic was recreated).
    pub(super) fn forget(&mut self, dlq: &str) {
        for g in [&mut self.current, &mut self.previous] {
            if let Some(ids) = g.by_dlq.remove(dlq) {
                g.entries -= ids.len();
            }
        }
    }
}

/// The id a DLQ record carries itself, `None` for one named by its
/// position, which no other record can have (see
/// [`dlq_core::envelope::kafka_record_own_id`]).
pub(super) fn own_id_of(
    config: &KafkaConfig,
    topic: &str,
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> Option<String> {
    use rdkafka::Message as _;
    // Headers only matter when there are some: most DLQ records of other
    // writers have none, and reading them costs an allocation.
    let headers = if m.headers().is_some() {
        headers_of(m)
    } else {
        Vec::new()
    };
    dlq_core::envelope::kafka_record_own_id(
        &KafkaRecord {
            value: m.payload(),
            key: m.key(),
            headers: &headers,
            topic,
            partition: m.partition(),
            offset: m.offset(),
            timestamp: None,
        },
        &config.dlq_prefix,
    )
}

/// The id of a DLQ record.
pub(super) fn id_of(
    config: &KafkaConfig,
    topic: &str,
    m: &rdkafka::message::BorrowedMessage<'_>,
) -> String {
    use rdkafka::Message as _;
    own_id_of(config, topic, m)
        .unwrap_or_else(|| format!("kafka:{topic}:{}:{}", m.partition(), m.offset()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_keeps_the_first_copy_and_forgets_the_oldest() {
        let mut w = IdWindow::new(2);
        assert_eq!(w.push("a", 5, 0), None);
        assert_eq!(
            w.push("a", 9, 0),
            Some((9, 5)),
            "a later copy is a duplicate"
        );
        assert_eq!(w.push("a", 5, 0), None, "the same record read again");
        assert_eq!(
            w.push("a", 3, 0),
            Some((5, 3)),
            "an earlier copy found later"
        );
        assert_eq!(w.get("a", 0), Some(3));
        assert_eq!(w.push("b", 10, 0), None);
        assert_eq!(w.push("c", 11, 0), None);
        assert_eq!(w.push("d", 12, 0), None);
        assert_eq!(w.get("a", 0), None, "beyond the window");
        assert_eq!(w.get("d", 0), Some(12));
        assert_eq!(w.get("d", 13), None, "deleted by retention");
    }

    #[test]
    fn the_cache_stays_bounded_and_keeps_the_newest() {
        let mut c = PositionCache::new(4);
        for i in 0..10 {
            c.put("d", &i.to_string(), PartitionOffset::new(0, i));
        }
        assert_eq!(c.get("d", "9"), Some(PartitionOffset::new(0, 9)));
        assert_eq!(c.get("d", "8"), Some(PartitionOffset::new(0, 8)));
        assert_eq!(c.get("d", "0"), None);
        assert!(c.current.entries + c.previous.entries <= 4);
        c.forget("d");
        assert_eq!(c.get("d", "9"), None);
    }
}
