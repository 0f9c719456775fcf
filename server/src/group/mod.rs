//! Kafka's classic consumer group coordinator (JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch, OffsetDelete,
//! DescribeGroups, ListGroups, DeleteGroups) as a pure, deterministic state
//! machine, and the `__consumer_offsets` records it persists.
//!
//! It owns group membership, rebalances, static membership (KIP-345),
//! member id assignment (KIP-394) and committed offsets, with the error
//! codes and state transitions of Kafka's `GroupCoordinator`, so librdkafka,
//! the Java client and kafka-python behave as against Kafka. It owns no
//! socket, no clock, no task and no file: a [`GroupCoordinator`] lives on
//! the shard that owns the group's `__consumer_offsets` partition (one per
//! partition or one per shard; see [`offsets_partition_for`]), and the API
//! handlers of that shard drive it:
//!
//! - Every call takes `now_ms`. Timers are deadlines: call
//!   [`GroupCoordinator::tick`] when `now_ms` reaches
//!   [`GroupCoordinator::next_deadline_ms`] (re-read it after every call).
//! - JoinGroup and SyncGroup may park: [`Answer::Later`] gives a
//!   [`Ticket`], and the response arrives later as a [`Completion`] with
//!   that ticket, from this or any later call (`join`, `sync`, `leave`,
//!   `group_stored`, `tick`). Deliver every completion a call returns.
//! - Group metadata is made durable before members are answered:
//!   [`Completion::StoreGroup`] asks for a record to be appended, and
//!   [`GroupCoordinator::group_stored`] reports the result.
//! - Offsets are committed in two steps ([`GroupCoordinator::commit`] then
//!   [`GroupCoordinator::complete_commit`] after the append); deletions
//!   return the tombstones to append. Appends to one partition complete in
//!   the order they were handed out, as the log orders them.
//! - At start, [`GroupCoordinator::replay`] every record of the partition.
//!
//! The record format is Kafka's own (see [`record`]).

mod coordinator;
pub mod error_code;
mod heartbeat;
mod join;
mod leave;
mod member;
mod messages;
mod metadata;
mod offsets;
mod rebalance;
pub mod record;
mod replay;
pub mod subscription;
mod sync;

#[cfg(test)]
mod tests;

pub use coordinator::{DeleteGroupsOutcome, GroupConfig, GroupCoordinator, OFFSETS_RETENTION_MS_DEFAULT};
pub use messages::{
    Answer, Completion, GroupDescription, GroupListing, Handled, JoinProtocol, JoinRequest, JoinResponse,
    JoinResponseMember, LeaveMember, LeaveMemberResponse, LeaveResponse, Left, MemberDescription, SyncAssignment,
    SyncRequest, SyncResponse, Ticket,
};
pub use metadata::GroupState;
pub use offsets::{
    OffsetAndMetadata, OffsetCommitOutcome, OffsetCommitPartition, OffsetCommitRequest, OffsetDeleteOutcome,
    OffsetFetchPartition, OffsetStore, PartitionResult, TopicPartition,
};
pub use record::{Record, RecordError};

/// The name of the topic that stores groups and offsets.
pub const GROUP_METADATA_TOPIC_NAME: &str = "__consumer_offsets";

/// The `__consumer_offsets` partition that coordinates `group_id`:
/// Kafka's `Utils.abs(groupId.hashCode) % partition_count`, with Java's
/// `String.hashCode` over UTF-16 code units, so a group maps to the same
/// partition number as in Kafka.
pub fn offsets_partition_for(group_id: &str, partition_count: i32) -> i32 {
    assert!(partition_count > 0, "__consumer_offsets has at least one partition");
    let hash = group_id.encode_utf16().fold(0i32, |hash, unit| hash.wrapping_mul(31).wrapping_add(i32::from(unit)));
    // Kafka's Utils.abs maps Int.MinValue to 0.
    let positive = if hash == i32::MIN { 0 } else { hash.abs() };
    positive % partition_count
}
