//! Group placement: which `__consumer_offsets` partition coordinates a group.
//!
//! Kafka places a group with `Utils.abs(groupId.hashCode()) % numPartitions`,
//! where `hashCode` is Java's `String.hashCode` over UTF-16 code units and
//! `Utils.abs(Integer.MIN_VALUE)` is 0. Matching it bit for bit keeps group
//! placement identical to a Kafka cluster with the same partition count, which
//! matters for tools that read `__consumer_offsets` directly.

/// Java's `String.hashCode()`: `h = 31 * h + c` over UTF-16 code units,
/// wrapping on overflow.
pub fn java_string_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)))
}

/// The `__consumer_offsets` partition that coordinates `group_id`, as Kafka
/// computes it. `num_partitions` is `offsets.topic.num.partitions` (50 in
/// Kafka) and must be positive.
pub fn partition_for(group_id: &str, num_partitions: u32) -> u32 {
    assert!(num_partitions > 0, "__consumer_offsets must have partitions");
    let hash = java_string_hash(group_id);
    // Kafka's Utils.abs maps Integer.MIN_VALUE to 0 rather than overflowing.
    let abs = if hash == i32::MIN { 0 } else { hash.unsigned_abs() };
    abs % num_partitions
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_string_hash_code() {
        assert_eq!(java_string_hash(""), 0);
        assert_eq!(java_string_hash("abc"), 96354);
        assert_eq!(java_string_hash("hello"), 99162322);
        // A surrogate pair hashes as two UTF-16 units: 0xD83D, 0xDE00.
        assert_eq!(java_string_hash("\u{1F600}"), 0xD83D * 31 + 0xDE00);
        // Famous Java string whose hashCode is Integer.MIN_VALUE.
        assert_eq!(java_string_hash("polygenelubricants"), i32::MIN);
    }

    #[test]
    fn partition_matches_kafka_placement() {
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        assert_eq!(partition_for("hello", 50), 99162322 % 50);
        // Negative hash codes use the absolute value.
        let h = java_string_hash("console-consumer-12345");
        assert_eq!(partition_for("console-consumer-12345", 50), h.unsigned_abs() % 50);
    }
}
