//! Where things are in Kafka: a partition of a topic, and a record's place
//! in a partition. Named types rather than `(String, i32)` and `(i32, i64)`
//! tuples, whose fields are easily swapped and say nothing of what they are.

use std::fmt;

/// One partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
}

impl TopicPartition {
    /// Partition `partition` of `topic`.
    pub fn new(topic: impl Into<String>, partition: i32) -> TopicPartition {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.topic, self.partition)
    }
}

/// A record's place in its topic: its partition and offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PartitionOffset {
    /// The partition.
    pub partition: i32,
    /// The offset in the partition.
    pub offset: i64,
}

impl PartitionOffset {
    /// Offset `offset` of partition `partition`.
    pub const fn new(partition: i32, offset: i64) -> PartitionOffset {
        PartitionOffset { partition, offset }
    }
}

impl fmt::Display for PartitionOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.partition, self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_order_by_partition_then_offset_and_print_plainly() {
        let mut v = vec![
            PartitionOffset::new(1, 0),
            PartitionOffset::new(0, 9),
            PartitionOffset::new(0, 2),
        ];
        v.sort();
        assert_eq!(
            v,
            [
                PartitionOffset::new(0, 2),
                PartitionOffset::new(0, 9),
                PartitionOffset::new(1, 0)
            ]
        );
        assert_eq!(PartitionOffset::new(3, 7).to_string(), "3@7");
        assert_eq!(TopicPartition::new("dlq.a", 2).to_string(), "dlq.a/2");
        assert!(TopicPartition::new("a", 9) < TopicPartition::new("b", 0));
    }
}
