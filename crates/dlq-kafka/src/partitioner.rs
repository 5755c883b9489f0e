//! Kafka's default partitioner for keyed records, as the Java client and
//! librdkafka's `murmur2_random` compute it, so that a record dlq writes
//! with a key lands where the live records with that key do.

/// The partition Kafka's default partitioner gives a keyed record (the
/// Java client's, and librdkafka's `murmur2_random`): a replayed record
/// lands where its live records with the same key do.
pub(crate) fn default_partition(key: &[u8], partitions: i32) -> i32 {
    // `toPositive` in the Java client: the sign bit cleared.
    let positive = murmur2(key) & 0x7fff_ffff;
    (positive % partitions.max(1) as u32) as i32
}

/// MurmurHash2 (32 bit) with the seed Kafka's partitioner uses, as the
/// Java client's `Utils.murmur2` computes it.
fn murmur2(data: &[u8]) -> u32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes the length as a Java int.
    let mut h = SEED ^ (data.len() as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        for (i, &b) in tail.iter().enumerate().rev() {
            h ^= u32::from(b) << (8 * i);
        }
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn murmur2_matches_the_java_client() {
        // Utils.murmur2 of the Java client (its own test vectors).
        for (key, hash) in [
            (&b"21"[..], -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ] {
            assert_eq!(
                murmur2(key) as i32,
                hash,
                "{}",
                String::from_utf8_lossy(key)
            );
        }
    }

    #[test]
    fn keyed_records_take_the_default_partitioners_partition() {
        // toPositive(murmur2("foobar")) % n, as the Java client computes it.
        let positive = (-790_332_482i32 & 0x7fff_ffff) as u32;
        for n in [1, 2, 3, 6, 12, 100] {
            assert_eq!(
                default_partition(b"foobar", n),
                (positive % n as u32) as i32
            );
        }
        assert_eq!(
            default_partition(b"", 0),
            0,
            "no partitions: never a division by zero"
        );
    }

    /// librdkafka's `murmur2_random` partitioner (the Java client's) is the
    /// peer: the partitions it picks for many keys, of every length and
    /// not only UTF-8, are the ones replay picks.
    #[test]
    fn keyed_partitions_match_librdkafkas_murmur2_partitioner() {
        use dlq_testkit::kafka;
        use rdkafka::ClientConfig;
        use rdkafka::producer::{BaseProducer, BaseRecord, Producer as _};
        let Some(bootstrap) = kafka::bootstrap() else {
            return;
        };
        const PARTITIONS: i32 = 7;
        let topic = kafka::topic("murmur2");
        kafka::create_topics(&bootstrap, &[&topic], PARTITIONS);
        let producer: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("partitioner", "murmur2_random")
            .set("linger.ms", "5")
            .create()
            .expect("producer");
        let keys: Vec<Vec<u8>> = (0..600u32)
            .map(|i| {
                let len = (i % 37) as usize;
                (0..len)
                    .map(|j| (i.wrapping_mul(2_654_435_761) >> (j % 24)) as u8 ^ j as u8)
                    .collect()
            })
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let value = i.to_string();
            let mut record = BaseRecord::to(&topic)
                .key(key.as_slice())
                .payload(value.as_str());
            loop {
                match producer.send(record) {
                    Ok(()) => break,
                    Err((_, back)) => {
                        record = back;
                        producer.poll(Duration::from_millis(10));
                    }
                }
            }
        }
        producer.flush(Duration::from_secs(30)).expect("flush");
        let read = kafka::read_all(&bootstrap, &topic, false);
        assert_eq!(read.len(), keys.len());
        let mut used = std::collections::HashSet::new();
        for r in read {
            let key = r.key.expect("keyed");
            used.insert(r.partition);
            assert_eq!(
                default_partition(&key, PARTITIONS),
                r.partition,
                "key {key:?}"
            );
        }
        assert_eq!(
            used.len(),
            PARTITIONS as usize,
            "every partition was chosen"
        );
        kafka::delete_topics(&bootstrap, &[&topic]);
    }
}
