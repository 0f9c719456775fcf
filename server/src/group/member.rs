//! One member of a group (Kafka's `MemberMetadata`) and the generator of
//! member ids.
//!
//! A member is created by its first JoinGroup and lives until it leaves, its
//! session expires, a rebalance completes without it, or (static members)
//! a new instance with the same `group.instance.id` takes its place under a
//! new member id. It belongs to its group's coordinator, on the shard that
//! owns the group's `__consumer_offsets` partition.

use bytes::Bytes;

use super::messages::{JoinProtocol, Ticket};

#[derive(Debug, Clone)]
pub(super) struct MemberMetadata {
    pub member_id: String,
    /// `group.instance.id` of a static member (KIP-345).
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The protocols the member supports, in its order of preference, each
    /// with its metadata (for consumers: the subscription).
    pub supported_protocols: Vec<JoinProtocol>,
    /// The member's share of the leader's assignment in this generation.
    pub assignment: Bytes,
    /// The JoinGroup waiting for the rebalance to complete.
    pub awaiting_join: Option<Ticket>,
    /// The SyncGroup waiting for the leader's assignment.
    pub awaiting_sync: Option<Ticket>,
    /// Joined in the current rebalance and has not had a JoinGroup answer
    /// yet: such a member is expired by `new_member_join_timeout_ms` even
    /// while it waits, because its client may have gone away.
    pub is_new: bool,
    /// When the member is removed unless it heartbeats (or is waiting in a
    /// rebalance, see [`MemberMetadata::has_satisfied_heartbeat`]).
    pub session_deadline_ms: Option<i64>,
}

impl MemberMetadata {
    pub fn is_static(&self) -> bool {
        self.group_instance_id.is_some()
    }

    /// Kafka's `hasSatisfiedHeartbeat` at the moment the session timer
    /// fires: members waiting in JoinGroup or SyncGroup cannot heartbeat on
    /// a muted connection, so the rebalance timeouts govern them instead;
    /// new members are the exception (see [`MemberMetadata::is_new`]).
    pub fn has_satisfied_heartbeat(&self) -> bool {
        !self.is_new && (self.awaiting_join.is_some() || self.awaiting_sync.is_some())
    }

    /// The member's metadata for `protocol_name` (empty if it has none,
    /// which cannot happen for the group's chosen protocol).
    pub fn metadata(&self, protocol_name: &str) -> Bytes {
        self.supported_protocols
            .iter()
            .find(|p| p.name == protocol_name)
            .map(|p| p.metadata.clone())
            .unwrap_or_default()
    }

    pub fn supports(&self, protocol_name: &str) -> bool {
        self.supported_protocols.iter().any(|p| p.name == protocol_name)
    }

    /// Kafka's `matches`: the same protocols, in the same order, with the
    /// same metadata.
    pub fn matches(&self, protocols: &[JoinProtocol]) -> bool {
        self.supported_protocols == protocols
    }

    /// The member's vote: its most preferred protocol among `candidates`.
    pub fn vote<'a>(&'a self, candidates: &[&str]) -> Option<&'a str> {
        self.supported_protocols.iter().map(|p| p.name.as_str()).find(|name| candidates.contains(name))
    }
}

/// Makes member ids the way Kafka does, `{client_id}-{uuid}` (or
/// `{group_instance_id}-{uuid}` for a static member), with a UUID-shaped
/// suffix drawn from a seed and a counter instead of the OS's randomness:
/// unique per coordinator, and reproducible in tests. The broker passes a
/// random seed so ids differ across restarts.
#[derive(Debug, Clone)]
pub(super) struct MemberIdGenerator {
    seed: u64,
    counter: u64,
}

impl MemberIdGenerator {
    pub fn new(seed: u64) -> Self {
        Self { seed, counter: 0 }
    }

    pub fn next(&mut self, prefix: &str) -> String {
        self.counter += 1;
        let high = splitmix64(self.seed ^ self.counter.wrapping_mul(0x9e37_79b9_7f4a_7c15));
        let low = splitmix64(high ^ self.counter);
        // Version 4 / variant 1 bits, so the suffix reads as a random UUID.
        let high = (high & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
        let low = (low & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
        format!(
            "{prefix}-{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
            high >> 32,
            (high >> 16) & 0xffff,
            high & 0xffff,
            low >> 48,
            low & 0xffff_ffff_ffff
        )
    }
}

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_look_like_kafkas_and_are_unique() {
        let mut ids = MemberIdGenerator::new(7);
        let first = ids.next("rdkafka");
        let second = ids.next("rdkafka");
        assert_ne!(first, second);
        let suffix = first.strip_prefix("rdkafka-").unwrap();
        let parts: Vec<_> = suffix.split('-').map(str::len).collect();
        assert_eq!(parts, vec![8, 4, 4, 4, 12]);
        assert_eq!(&suffix[14..15], "4");
        assert_eq!(MemberIdGenerator::new(7).next("rdkafka"), first, "same seed, same ids");
        assert_ne!(MemberIdGenerator::new(8).next("rdkafka"), first);
    }
}
