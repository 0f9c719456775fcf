//! Which shard owns which partition. Decided here and nowhere else:
//! handlers ask [`shard_for`], they never compute a core id themselves.
//!
//! Partitions of one topic are spread round-robin over the shards,
//! starting at a shard chosen by a stable hash of the topic name, so that
//! many single-partition topics also spread out. The mapping depends only
//! on (topic, partition, shard count): every shard computes the same owner
//! without asking anyone.

/// FNV-1a: stable across runs and platforms (std's hasher is not).
fn stable_hash(text: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in text.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The shard that owns `topic`'s `partition` among `shard_count` shards.
pub fn shard_for(topic: &str, partition: i32, shard_count: usize) -> usize {
    assert!(shard_count > 0, "at least one shard");
    assert!(partition >= 0, "partition ids are not negative");
    ((stable_hash(topic) % shard_count as u64 + partition as u64) % shard_count as u64) as usize
}

/// The shard that runs the controller: topic creation and deletion, and the
/// persisted topic table.
pub const CONTROLLER_SHARD: usize = 0;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_of_a_topic_spread_evenly() {
        let mut counts = [0usize; 4];
        for p in 0..100 {
            counts[shard_for("orders", p, 4)] += 1;
        }
        assert_eq!(counts, [25, 25, 25, 25]);
    }

    #[test]
    fn placement_is_stable() {
        assert_eq!(shard_for("orders", 3, 2), shard_for("orders", 3, 2));
        assert_eq!(shard_for("a", 0, 1), 0);
        // FNV-1a test vector: the mapping must not change between releases.
        assert_eq!(stable_hash("a"), 0xaf63_dc4c_8601_ec8c);
    }
}
