//! Committed offsets: the [`OffsetStore`] and the APIs on it — OffsetCommit
//! (with Kafka's `validateOffsetCommit`), OffsetFetch, OffsetDelete — and
//! offset retention.
//!
//! A commit is two steps, so that memory never runs ahead of the log:
//! [`GroupCoordinator::commit`] validates and returns the records to
//! append; after the append is durable the caller applies them with
//! [`GroupCoordinator::complete_commit`] and answers. Deletions (OffsetDelete,
//! DeleteGroups, retention) apply at once and return tombstones to append,
//! as Kafka's `cleanupGroupMetadata` does. A group left Empty with no
//! offsets after a deletion is dropped (Kafka's transition to Dead).

use std::collections::BTreeMap;

use super::coordinator::{push_offset_tombstones, GroupCoordinator};
use super::error_code::{
    COORDINATOR_NOT_AVAILABLE, GROUP_ID_NOT_FOUND, GROUP_SUBSCRIBED_TO_TOPIC, ILLEGAL_GENERATION, INVALID_GROUP_ID,
    NONE, NON_EMPTY_GROUP, OFFSET_METADATA_TOO_LARGE, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID,
    UNKNOWN_TOPIC_OR_PARTITION,
};
use super::metadata::{GroupMetadata, GroupState};
use super::rebalance::{schedule_session, validate_current_member};
use super::record::{Record, STRING_BYTES_MAX};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl TopicPartition {
    pub fn new(topic: &str, partition: i32) -> Self {
        Self { topic: topic.to_owned(), partition }
    }
}

/// A committed offset (Kafka's `OffsetAndMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetAndMetadata {
    /// The next offset the group will consume.
    pub offset: i64,
    /// The leader epoch of the last consumed record; -1 when unknown.
    pub leader_epoch: i32,
    pub metadata: String,
    pub commit_timestamp_ms: i64,
    /// Only from OffsetCommit v1 records written by old brokers: the offset
    /// expires at this time instead of by the retention rules.
    pub expire_timestamp_ms: Option<i64>,
}

/// Committed offsets keyed by group, then topic and partition.
#[derive(Debug, Clone, Default)]
pub struct OffsetStore {
    groups: BTreeMap<String, BTreeMap<TopicPartition, OffsetAndMetadata>>,
}

impl OffsetStore {
    pub fn get(&self, group_id: &str, partition: &TopicPartition) -> Option<&OffsetAndMetadata> {
        self.groups.get(group_id)?.get(partition)
    }

    /// The offsets of one group, in topic and partition order.
    pub fn group(&self, group_id: &str) -> impl Iterator<Item = (&TopicPartition, &OffsetAndMetadata)> {
        self.groups.get(group_id).into_iter().flatten()
    }

    pub fn has_offsets(&self, group_id: &str) -> bool {
        self.groups.get(group_id).is_some_and(|offsets| !offsets.is_empty())
    }

    /// How many offsets all groups hold.
    pub fn len(&self) -> usize {
        self.groups.values().map(BTreeMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.groups.values().all(BTreeMap::is_empty)
    }

    pub(super) fn put(&mut self, group_id: &str, partition: TopicPartition, offset: OffsetAndMetadata) {
        self.groups.entry(group_id.to_owned()).or_default().insert(partition, offset);
    }

    pub(super) fn remove(&mut self, group_id: &str, partition: &TopicPartition) -> Option<OffsetAndMetadata> {
        let offsets = self.groups.get_mut(group_id)?;
        let removed = offsets.remove(partition);
        if offsets.is_empty() {
            self.groups.remove(group_id);
        }
        removed
    }

    pub(super) fn remove_group(&mut self, group_id: &str) -> BTreeMap<TopicPartition, OffsetAndMetadata> {
        self.groups.remove(group_id).unwrap_or_default()
    }
}

/// One partition of an OffsetCommit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitPartition {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    /// -1 when the client does not know it (requests before v6).
    pub leader_epoch: i32,
    /// `None` (a null in the request) is stored as "", as Kafka does.
    pub metadata: Option<String>,
}

/// An OffsetCommit request (any version; OffsetCommit v2-v4's per-request
/// retention time is not supported: offsets follow the broker's retention).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitRequest {
    pub group_id: String,
    /// -1 (with an empty member id) for a consumer that assigns partitions
    /// itself and only stores offsets here.
    pub generation_id: i32,
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub partitions: Vec<OffsetCommitPartition>,
}

/// The error code of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionResult {
    pub topic: String,
    pub partition: i32,
    pub error_code: i16,
}

/// What an OffsetCommit will do once its records are durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetCommitOutcome {
    pub group_id: String,
    /// One code per requested partition, in request order: the response
    /// once the records are appended (if the append fails, answer every
    /// accepted partition with `offset_commit_store_error(append code)`).
    pub partitions: Vec<PartitionResult>,
    /// The offsets to apply with `complete_commit` after the append.
    pub accepted: Vec<(TopicPartition, OffsetAndMetadata)>,
    /// One record per accepted offset, to append to the group's partition.
    pub records: Vec<Record>,
}

/// One partition of an OffsetFetch response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetFetchPartition {
    pub topic: String,
    pub partition: i32,
    /// -1 when the group has no offset for the partition.
    pub offset: i64,
    pub leader_epoch: i32,
    pub metadata: String,
    pub error_code: i16,
}

/// The result of an OffsetDelete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OffsetDeleteOutcome {
    /// Group-level error; when set, `partitions` is empty.
    pub error_code: i16,
    pub partitions: Vec<PartitionResult>,
    /// Tombstones of the deleted offsets (and of the group if it died): append them.
    pub records: Vec<Record>,
}

impl GroupCoordinator {
    /// Kafka's `validateOffsetCommit` for OffsetCommit (generation -1 with
    /// an empty member id and no instance id is a "simple" commit from a
    /// consumer using `assign()`: allowed only while the group is Empty or
    /// unknown, which creates it). A member's commit in Stable or
    /// PreparingRebalance also restarts its session; in CompletingRebalance
    /// it is refused with REBALANCE_IN_PROGRESS. An unknown group refuses a
    /// generation >= 0 with ILLEGAL_GENERATION and a member id (or instance
    /// id) with UNKNOWN_MEMBER_ID; a simple commit creates it when its
    /// offsets are applied.
    pub fn validate_commit(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: i64,
    ) -> i16 {
        // OffsetCommit accepts the empty group id, for old clients.
        if group_id.len() > STRING_BYTES_MAX {
            return INVALID_GROUP_ID;
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            // Kafka creates the group here, before validating the member.
            // It is created by `complete_commit` instead, once offsets are
            // stored: a refused commit (or a failed append) leaves no Empty
            // group without offsets behind, listed until the next expiry pass.
            let simple_commit = member_id.is_empty() && group_instance_id.is_none();
            return match (generation_id >= 0, simple_commit) {
                (true, _) => ILLEGAL_GENERATION,
                // An unknown group has no members to validate against.
                (false, false) => UNKNOWN_MEMBER_ID,
                (false, true) => NONE,
            };
        };
        if generation_id >= 0 || !member_id.is_empty() || group_instance_id.is_some() {
            if let Some(code) = validate_current_member(group, member_id, group_instance_id) {
                return code;
            }
            if generation_id != group.generation_id {
                return ILLEGAL_GENERATION;
            }
        } else if !group.is(GroupState::Empty) {
            // Once the group has members, only they may commit.
            return UNKNOWN_MEMBER_ID;
        }
        let code = match group.state {
            GroupState::Empty => NONE,
            GroupState::Stable | GroupState::PreparingRebalance => {
                // The next heartbeat tells the member about a rebalance.
                if let Some(member) = group.members.get_mut(member_id) {
                    schedule_session(member, now_ms);
                }
                NONE
            }
            GroupState::CompletingRebalance => REBALANCE_IN_PROGRESS,
            GroupState::Dead => COORDINATOR_NOT_AVAILABLE,
        };
        self.reindex(group_id);
        code
    }

    /// OffsetCommit, step one: validates the commit and returns the
    /// records to append. Nothing is applied yet.
    pub fn commit(&mut self, request: &OffsetCommitRequest, now_ms: i64) -> OffsetCommitOutcome {
        let group_code = self.validate_commit(
            &request.group_id,
            request.generation_id,
            &request.member_id,
            request.group_instance_id.as_deref(),
            now_ms,
        );
        let mut outcome = OffsetCommitOutcome {
            group_id: request.group_id.clone(),
            partitions: Vec::with_capacity(request.partitions.len()),
            accepted: Vec::new(),
            records: Vec::new(),
        };
        for partition in &request.partitions {
            let offset = OffsetAndMetadata {
                offset: partition.offset,
                leader_epoch: partition.leader_epoch,
                metadata: partition.metadata.clone().unwrap_or_default(),
                commit_timestamp_ms: now_ms,
                expire_timestamp_ms: None,
            };
            let error_code = if group_code != NONE {
                group_code
            } else if offset.metadata.len() > self.config.offset_metadata_max_bytes {
                OFFSET_METADATA_TOO_LARGE
            } else {
                match Record::offset_commit(&request.group_id, &partition.topic, partition.partition, &offset) {
                    Ok(record) => {
                        outcome.records.push(record);
                        outcome.accepted.push((TopicPartition::new(&partition.topic, partition.partition), offset));
                        NONE
                    }
                    // Only a topic name or metadata too long for a record
                    // string gets here; no such topic can exist.
                    Err(_) if partition.topic.len() > STRING_BYTES_MAX => UNKNOWN_TOPIC_OR_PARTITION,
                    Err(_) => OFFSET_METADATA_TOO_LARGE,
                }
            };
            outcome.partitions.push(PartitionResult {
                topic: partition.topic.clone(),
                partition: partition.partition,
                error_code,
            });
        }
        outcome
    }

    /// OffsetCommit, step two, once `outcome.records` are durable: the
    /// offsets become visible to OffsetFetch. (If the group was deleted
    /// meanwhile it comes back Empty, as a replay of the log would have it.)
    pub fn complete_commit(&mut self, outcome: &OffsetCommitOutcome, now_ms: i64) {
        if outcome.accepted.is_empty() {
            return;
        }
        self.groups.entry(outcome.group_id.clone()).or_insert_with(|| GroupMetadata::new(&outcome.group_id, now_ms));
        for (partition, offset) in &outcome.accepted {
            self.offsets.put(&outcome.group_id, partition.clone(), offset.clone());
        }
    }

    /// OffsetFetch: the committed offsets of `partitions`, or of every
    /// partition the group has one for when `None`. A partition without
    /// one, or an unknown group, answers offset -1 with error NONE, whatever
    /// the group's state (Kafka returns offsets "blindly").
    pub fn fetch_offsets(&self, group_id: &str, partitions: Option<&[TopicPartition]>) -> Vec<OffsetFetchPartition> {
        let fetched = |partition: &TopicPartition, offset: Option<&OffsetAndMetadata>| OffsetFetchPartition {
            topic: partition.topic.clone(),
            partition: partition.partition,
            offset: offset.map_or(-1, |o| o.offset),
            leader_epoch: offset.map_or(-1, |o| o.leader_epoch),
            metadata: offset.map(|o| o.metadata.clone()).unwrap_or_default(),
            error_code: NONE,
        };
        match partitions {
            Some(partitions) => partitions.iter().map(|p| fetched(p, self.offsets.get(group_id, p))).collect(),
            None => self.offsets.group(group_id).map(|(p, o)| fetched(p, Some(o))).collect(),
        }
    }

    /// OffsetDelete (Kafka's `handleDeleteOffsets`): an Empty group's
    /// offsets are deleted; in a consumer group with members, offsets of
    /// topics it subscribes to are refused with GROUP_SUBSCRIBED_TO_TOPIC and
    /// the others deleted; any other group with members answers
    /// NON_EMPTY_GROUP, an unknown group GROUP_ID_NOT_FOUND.
    pub fn delete_offsets(&mut self, group_id: &str, partitions: &[TopicPartition]) -> OffsetDeleteOutcome {
        let refused = |error_code| OffsetDeleteOutcome { error_code, partitions: Vec::new(), records: Vec::new() };
        if group_id.is_empty() {
            return refused(INVALID_GROUP_ID);
        }
        let Some(group) = self.groups.get(group_id) else {
            return refused(GROUP_ID_NOT_FOUND);
        };
        let mut results = Vec::with_capacity(partitions.len());
        let mut eligible = Vec::new();
        match group.state {
            GroupState::Empty => eligible.extend(partitions.iter().cloned()),
            GroupState::PreparingRebalance | GroupState::CompletingRebalance | GroupState::Stable
                if group.is_consumer_group() =>
            {
                for partition in partitions {
                    if group.is_subscribed_to_topic(&partition.topic) {
                        results.push(PartitionResult {
                            topic: partition.topic.clone(),
                            partition: partition.partition,
                            error_code: GROUP_SUBSCRIBED_TO_TOPIC,
                        });
                    } else {
                        eligible.push(partition.clone());
                    }
                }
            }
            _ => return refused(NON_EMPTY_GROUP),
        }
        let mut records = Vec::new();
        let removed: Vec<TopicPartition> =
            eligible.iter().filter(|p| self.offsets.remove(group_id, p).is_some()).cloned().collect();
        push_offset_tombstones(group_id, removed.iter(), &mut records);
        self.drop_group_if_dead(group_id, &mut records);
        results.extend(eligible.into_iter().map(|p| PartitionResult {
            topic: p.topic,
            partition: p.partition,
            error_code: NONE,
        }));
        OffsetDeleteOutcome { error_code: NONE, partitions: results, records }
    }

    /// Offset retention (`offsets.retention.minutes`), Kafka's
    /// `removeExpiredOffsets` for every group: in an Empty group that had
    /// members, all offsets expire `retention_ms` after the group became
    /// Empty; in a group that never had members (simple commits), each
    /// offset expires `retention_ms` after its commit; in a Stable consumer
    /// group, offsets of topics no member subscribes to expire after their
    /// commit; other groups keep theirs. Offsets written with an explicit
    /// expire timestamp (old v1 records) expire at it. Groups left Empty
    /// without offsets are dropped. Returns the tombstones to append.
    pub fn expire_offsets(&mut self, now_ms: i64, retention_ms: i64) -> Vec<Record> {
        let mut records = Vec::new();
        let group_ids: Vec<String> = self.groups.keys().cloned().collect();
        for group_id in &group_ids {
            let Some(group) = self.groups.get(group_id) else {
                continue;
            };
            let expired: Vec<TopicPartition> = self
                .offsets
                .group(group_id)
                .filter(|(partition, offset)| offset_expired(group, partition, offset, now_ms, retention_ms))
                .map(|(partition, _)| partition.clone())
                .collect();
            for partition in &expired {
                self.offsets.remove(group_id, partition);
            }
            push_offset_tombstones(group_id, expired.iter(), &mut records);
            self.drop_group_if_dead(group_id, &mut records);
        }
        records
    }

    /// Kafka's end of `cleanupGroupMetadata`: an Empty group without offsets is Dead.
    fn drop_group_if_dead(&mut self, group_id: &str, records: &mut Vec<Record>) {
        let empty = self.groups.get(group_id).is_some_and(|g| g.is(GroupState::Empty));
        if empty && !self.offsets.has_offsets(group_id) {
            self.remove_dead_group(group_id, records);
        }
    }
}

/// Kafka's retention rule for one offset of `group`.
fn offset_expired(
    group: &GroupMetadata,
    partition: &TopicPartition,
    offset: &OffsetAndMetadata,
    now_ms: i64,
    retention_ms: i64,
) -> bool {
    let base_timestamp_ms = match (&group.protocol_type, group.state) {
        (Some(_), GroupState::Empty) => group.current_state_timestamp_ms.unwrap_or(offset.commit_timestamp_ms),
        (Some(_), GroupState::Stable) if group.is_consumer_group() => match &group.subscribed_topics {
            Some(topics) if !topics.contains(&partition.topic) => offset.commit_timestamp_ms,
            _ => return false,
        },
        (None, _) => offset.commit_timestamp_ms,
        _ => return false,
    };
    match offset.expire_timestamp_ms {
        Some(expire_timestamp_ms) => now_ms >= expire_timestamp_ms,
        None => now_ms.saturating_sub(base_timestamp_ms) >= retention_ms,
    }
}
