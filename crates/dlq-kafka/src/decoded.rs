//! DLQ records decoded by the read that indexed them, kept for the scan
//! that caused that read.
//!
//! A store's first scan (every `dlq replay`, `inspect` or `export` run
//! starts with one) reads the DLQ topics to build the index, decoding every
//! record for its id, and then reads the selected records again, page by
//! page, to decode them whole. Keeping what the first read decoded saves
//! the second read and decode of each record kept. The cache is bounded by
//! a byte budget (`scan_cache_bytes`, off unless set; records beyond it are
//! read again), is
//! emptied when a scan starts from the beginning and when one reaches its
//! end, and gives each record out once.

use chrono::{DateTime, Utc};
use dlq_core::DeadLetter;
use std::collections::{BTreeMap, HashMap};

/// Bytes a decoded record is taken to hold besides its value and key.
const RECORD_OVERHEAD: usize = 256;

/// One record as decoded from its DLQ topic (claim checks not resolved).
pub(crate) struct Decoded {
    pub letter: DeadLetter,
    /// The Kafka timestamp of the DLQ record.
    pub timestamp: Option<DateTime<Utc>>,
    size: usize,
}

impl Decoded {
    /// `value_and_key_bytes`: the record's value and key length, as read.
    pub fn new(
        letter: DeadLetter,
        timestamp: Option<DateTime<Utc>>,
        value_and_key_bytes: usize,
    ) -> Decoded {
        Decoded {
            letter,
            timestamp,
            size: value_and_key_bytes + RECORD_OVERHEAD,
        }
    }
}

/// Decoded records by DLQ topic, partition and offset, within a budget.
#[derive(Default)]
pub(crate) struct DecodedCache {
    budget: usize,
    bytes: usize,
    /// Whether the read under way keeps what it decodes: only a read a
    /// scan started does (a `stats` or an append keeps nothing).
    pub filling: bool,
    topics: HashMap<String, HashMap<i32, BTreeMap<i64, Decoded>>>,
}

impl DecodedCache {
    pub fn new(budget: usize) -> DecodedCache {
        DecodedCache {
            budget,
            ..DecodedCache::default()
        }
    }

    /// Whether a record of `value_and_key_bytes` would be kept.
    pub fn wants(&self, value_and_key_bytes: usize) -> bool {
        self.filling && self.bytes + value_and_key_bytes + RECORD_OVERHEAD <= self.budget
    }

    /// Keeps a record if the budget allows (and a scan is filling).
    pub fn offer(&mut self, topic: &str, partition: i32, offset: i64, d: Decoded) {
        if !self.filling || self.bytes + d.size > self.budget {
            return;
        }
        let part = match self.topics.get_mut(topic) {
            Some(t) => t.entry(partition).or_default(),
            None => self
                .topics
                .entry(topic.to_owned())
                .or_default()
                .entry(partition)
                .or_default(),
        };
        self.bytes += d.size;
        if let Some(old) = part.insert(offset, d) {
            self.bytes -= old.size;
        }
    }

    /// Gives out the record at `offset`, if kept.
    pub fn take(&mut self, topic: &str, partition: i32, offset: i64) -> Option<Decoded> {
        let d = self
            .topics
            .get_mut(topic)?
            .get_mut(&partition)?
            .remove(&offset)?;
        self.bytes -= d.size;
        Some(d)
    }

    /// Returns a record [`DecodedCache::take`] gave out and the scan did
    /// not use (its page filled up first).
    pub fn put_back(&mut self, topic: &str, partition: i32, offset: i64, d: Decoded) {
        let filling = std::mem::replace(&mut self.filling, true);
        let budget = std::mem::replace(&mut self.budget, usize::MAX);
        self.offer(topic, partition, offset, d);
        self.filling = filling;
        self.budget = budget;
    }

    /// Forgets the records of a partition below `offset` (a scan moved past
    /// them: they were not selected).
    pub fn drop_below(&mut self, topic: &str, partition: i32, offset: i64) {
        let Some(part) = self
            .topics
            .get_mut(topic)
            .and_then(|t| t.get_mut(&partition))
        else {
            return;
        };
        let keep = part.split_off(&offset);
        let gone = std::mem::replace(part, keep);
        self.bytes -= gone.values().map(|d| d.size).sum::<usize>();
    }

    /// Forgets a partition (its topic was recreated: its offsets mean other
    /// records now).
    pub fn drop_partition(&mut self, topic: &str, partition: i32) {
        self.drop_below(topic, partition, i64::MAX);
    }

    pub fn clear(&mut self) {
        self.topics.clear();
        self.bytes = 0;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.topics
            .values()
            .flat_map(HashMap::values)
            .map(BTreeMap::len)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlq_core::Failure;

    fn decoded(id: &str, bytes: usize) -> Decoded {
        let f = Failure::permanent("validate", "x", "y");
        Decoded::new(DeadLetter::new(id, vec![b'p'; bytes], &f), None, bytes)
    }

    #[test]
    fn keeps_within_the_budget_only_while_filling_and_gives_each_record_once() {
        let mut c = DecodedCache::new(2 * (100 + RECORD_OVERHEAD));
        c.offer("d", 0, 0, decoded("a", 100));
        assert_eq!(c.len(), 0, "not filling: nothing kept");
        c.filling = true;
        c.offer("d", 0, 0, decoded("a", 100));
        c.offer("d", 1, 5, decoded("b", 100));
        c.offer("d", 0, 1, decoded("c", 100));
        assert_eq!(c.len(), 2, "the third is over the budget");
        assert!(!c.wants(1));
        assert_eq!(c.take("d", 1, 5).map(|d| d.letter.id), Some("b".into()));
        assert!(c.take("d", 1, 5).is_none(), "given out once");
        assert!(c.wants(100), "its bytes are free again");
        assert!(c.take("e", 0, 0).is_none());
    }

    #[test]
    fn drops_passed_records_and_recreated_partitions() {
        let mut c = DecodedCache::new(usize::MAX);
        c.filling = true;
        for o in 0..5 {
            c.offer("d", 0, o, decoded(&format!("r{o}"), 10));
            c.offer("d", 1, o, decoded(&format!("s{o}"), 10));
        }
        c.drop_below("d", 0, 3);
        assert!(c.take("d", 0, 2).is_none());
        assert!(c.take("d", 0, 3).is_some());
        c.drop_partition("d", 1);
        assert!(c.take("d", 1, 4).is_none());
        assert_eq!(c.len(), 1);
        c.clear();
        assert_eq!((c.len(), c.bytes), (0, 0));
    }
}
