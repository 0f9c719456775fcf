//! The group coordinator: every group of one coordinator, their committed
//! offsets, and the index of their timers.
//!
//! A [`GroupCoordinator`] is a plain value owned by the shard that owns the
//! `__consumer_offsets` partition(s) it serves; it never blocks, never
//! reads a clock (every call takes `now_ms`) and never does I/O. The group
//! APIs live in `join.rs`, `sync.rs`, `heartbeat.rs`, `leave.rs`,
//! `offsets.rs` and `replay.rs`; this file holds the state, the timer
//! index, [`GroupCoordinator::tick`], and DescribeGroups, ListGroups and
//! DeleteGroups.

use std::collections::{BTreeMap, BTreeSet};

use super::error_code::{GROUP_ID_NOT_FOUND, NONE, NON_EMPTY_GROUP};
use super::member::MemberIdGenerator;
use super::messages::{
    Answer, Completion, GroupDescription, GroupListing, Handled, JoinResponse, MemberDescription, SyncResponse,
};
use super::metadata::{GroupMetadata, GroupState};
use super::offsets::OffsetStore;
use super::rebalance::{fire_due_timers, Effects};
use super::record::Record;

/// Kafka's group coordinator settings (broker configs `group.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfig {
    /// `group.min.session.timeout.ms` (Kafka: 6000).
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (Kafka: 1800000).
    pub group_max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long the first rebalance of
    /// an Empty group waits for more members. Kafka's built-in default is
    /// 3000, but the `server.properties` Kafka ships sets 0 for development,
    /// and so does pinion's default; production configs should set 3000.
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.max.size` (Kafka: `Int.MaxValue`).
    pub group_max_size: usize,
    /// How long a new member's JoinGroup may wait in a rebalance before the
    /// member is dropped (Kafka's fixed `NewMemberJoinTimeoutMs`, 5 min).
    pub new_member_join_timeout_ms: i32,
    /// `offset.metadata.max.bytes` (Kafka: 4096).
    pub offset_metadata_max_bytes: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        Self {
            group_min_session_timeout_ms: 6_000,
            group_max_session_timeout_ms: 1_800_000,
            group_initial_rebalance_delay_ms: 0,
            group_max_size: i32::MAX as usize,
            new_member_join_timeout_ms: 300_000,
            offset_metadata_max_bytes: 4096,
        }
    }
}

/// `offsets.retention.minutes` default (7 days), for `expire_offsets`.
pub const OFFSETS_RETENTION_MS_DEFAULT: i64 = 7 * 24 * 60 * 60 * 1000;

/// The groups of one coordinator, as a deterministic state machine.
///
/// Calls that can park a request (JoinGroup, SyncGroup) return a
/// [`Handled`]: the caller's answer now, or a ticket it is answered under
/// later, plus [`Completion`]s for requests parked earlier and records to
/// append. Timers are deadlines: call [`GroupCoordinator::tick`] whenever
/// `now_ms` reaches [`GroupCoordinator::next_deadline_ms`].
///
/// Coordinator-level errors stay with the caller: NOT_COORDINATOR for a
/// group whose `__consumer_offsets` partition is not local, and
/// COORDINATOR_LOAD_IN_PROGRESS (heartbeats answer NONE and SyncGroup
/// REBALANCE_IN_PROGRESS instead, as in Kafka) until replay has finished.
#[derive(Debug)]
pub struct GroupCoordinator {
    pub(super) config: GroupConfig,
    pub(super) groups: BTreeMap<String, GroupMetadata>,
    pub(super) offsets: OffsetStore,
    /// (deadline, group id) of every group with a timer.
    pub(super) deadlines: BTreeSet<(i64, String)>,
    pub(super) member_ids: MemberIdGenerator,
    pub(super) next_ticket: u64,
}

/// The result of a DeleteGroups.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteGroupsOutcome {
    /// One (group id, error code) per distinct requested group, in request order.
    pub results: Vec<(String, i16)>,
    /// Tombstones for the deleted groups' offsets and metadata: append them.
    pub records: Vec<Record>,
}

impl GroupCoordinator {
    /// `member_id_seed` makes member ids differ across coordinators and
    /// restarts; pass a random value (tests pass a constant).
    pub fn new(config: GroupConfig, member_id_seed: u64) -> Self {
        Self {
            config,
            groups: BTreeMap::new(),
            offsets: OffsetStore::default(),
            deadlines: BTreeSet::new(),
            member_ids: MemberIdGenerator::new(member_id_seed),
            next_ticket: 0,
        }
    }

    pub fn config(&self) -> &GroupConfig {
        &self.config
    }

    /// The committed offsets of every group.
    pub fn offsets(&self) -> &OffsetStore {
        &self.offsets
    }

    /// The state of a group; `None` when unknown (Kafka would say Dead).
    pub fn group_state(&self, group_id: &str) -> Option<GroupState> {
        self.groups.get(group_id).map(|g| g.state)
    }

    pub fn group_count(&self) -> usize {
        self.groups.len()
    }

    /// When [`GroupCoordinator::tick`] next has work: the earliest session,
    /// rebalance, sync or initial-delay deadline of any group.
    pub fn next_deadline_ms(&self) -> Option<i64> {
        self.deadlines.first().map(|(deadline, _)| *deadline)
    }

    /// Fires every timer due at `now_ms`: expires sessions of members that
    /// stopped heartbeating and of MEMBER_ID_REQUIRED members that never
    /// came back, ends join phases whose rebalance timeout or initial delay
    /// elapsed (dropping dynamic members that did not rejoin), and removes
    /// members that never sent SyncGroup. Returns the answers and records
    /// this produces.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Completion> {
        let due: Vec<String> =
            self.deadlines.iter().take_while(|(deadline, _)| *deadline <= now_ms).map(|(_, id)| id.clone()).collect();
        let mut fx = Effects::new(&self.config, &mut self.next_ticket, now_ms);
        for group_id in &due {
            if let Some(group) = self.groups.get_mut(group_id) {
                fire_due_timers(group, &mut fx);
            }
        }
        let completions = fx.completions;
        for group_id in &due {
            self.reindex(group_id);
        }
        completions
    }

    /// ListGroups: every group with its protocol type and state (the caller
    /// applies the v4+ state filter and v5+ type filter).
    pub fn list_groups(&self) -> Vec<GroupListing> {
        self.groups
            .values()
            .map(|g| GroupListing {
                group_id: g.group_id.clone(),
                protocol_type: g.protocol_type.clone().unwrap_or_default(),
                state: g.state.name(),
            })
            .collect()
    }

    /// DescribeGroups, with Kafka's rules: an unknown group is "Dead" with
    /// error NONE; protocol, member metadata and assignments are shown only
    /// for a Stable group.
    pub fn describe(&self, group_ids: &[String]) -> Vec<GroupDescription> {
        group_ids.iter().map(|id| self.describe_group(id)).collect()
    }

    fn describe_group(&self, group_id: &str) -> GroupDescription {
        let Some(group) = self.groups.get(group_id) else {
            return GroupDescription {
                group_id: group_id.to_owned(),
                error_code: NONE,
                state: GroupState::Dead.name(),
                protocol_type: String::new(),
                protocol_name: String::new(),
                members: Vec::new(),
                generation_id: -1,
                leader_id: None,
            };
        };
        let stable_protocol = group.protocol_name.as_deref().filter(|_| group.is(GroupState::Stable));
        GroupDescription {
            group_id: group.group_id.clone(),
            error_code: NONE,
            state: group.state.name(),
            protocol_type: group.protocol_type.clone().unwrap_or_default(),
            protocol_name: stable_protocol.unwrap_or_default().to_owned(),
            members: group
                .members
                .values()
                .map(|m| MemberDescription {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    metadata: stable_protocol.map(|p| m.metadata(p)).unwrap_or_default(),
                    assignment: if stable_protocol.is_some() { m.assignment.clone() } else { Default::default() },
                })
                .collect(),
            generation_id: group.generation_id,
            leader_id: group.leader_id.clone(),
        }
    }

    /// DeleteGroups: an Empty group is deleted with its offsets
    /// (tombstones returned for the caller to append); a group with members
    /// answers NON_EMPTY_GROUP, an unknown one GROUP_ID_NOT_FOUND.
    pub fn delete_groups(&mut self, group_ids: &[String]) -> DeleteGroupsOutcome {
        let mut seen = BTreeSet::new();
        let mut results = Vec::new();
        let mut records = Vec::new();
        for group_id in group_ids {
            if !seen.insert(group_id.as_str()) {
                continue;
            }
            let error_code = match self.groups.get(group_id) {
                None => GROUP_ID_NOT_FOUND,
                Some(group) if !group.is(GroupState::Empty) => NON_EMPTY_GROUP,
                Some(_) => {
                    let removed = self.offsets.remove_group(group_id);
                    push_offset_tombstones(group_id, removed.keys(), &mut records);
                    self.remove_dead_group(group_id, &mut records);
                    NONE
                }
            };
            results.push((group_id.clone(), error_code));
        }
        DeleteGroupsOutcome { results, records }
    }

    /// Drops a group that became Dead, with the metadata tombstone Kafka
    /// writes (none for generation 0: such a group never had a record).
    pub(super) fn remove_dead_group(&mut self, group_id: &str, records: &mut Vec<Record>) {
        let Some(group) = self.groups.remove(group_id) else {
            return;
        };
        if let Some(deadline) = group.indexed_deadline_ms {
            self.deadlines.remove(&(deadline, group_id.to_owned()));
        }
        if group.generation_id > 0 {
            if let Ok(record) = Record::group_metadata_tombstone(group_id) {
                records.push(record);
            }
        }
    }

    /// Re-files the group under its earliest deadline after a change.
    pub(super) fn reindex(&mut self, group_id: &str) {
        let Some(group) = self.groups.get_mut(group_id) else {
            return;
        };
        debug_assert_eq!(
            group.is(GroupState::PreparingRebalance),
            group.join_timer.is_some(),
            "group {group_id}: a join timer exactly while preparing a rebalance"
        );
        debug_assert!(!group.is(GroupState::Empty) || group.members.is_empty(), "group {group_id}: Empty with members");
        if group.pending_sync_members.is_empty() {
            // Kafka's DelayedSync completes once every member has synced.
            group.sync_deadline_ms = None;
        }
        let next = group.next_deadline_ms();
        if group.indexed_deadline_ms == next {
            return;
        }
        if let Some(old) = group.indexed_deadline_ms {
            self.deadlines.remove(&(old, group_id.to_owned()));
        }
        if let Some(new) = next {
            self.deadlines.insert((new, group_id.to_owned()));
        }
        group.indexed_deadline_ms = next;
    }
}

/// Appends one tombstone per removed offset.
pub(super) fn push_offset_tombstones<'a>(
    group_id: &str,
    partitions: impl Iterator<Item = &'a super::offsets::TopicPartition>,
    records: &mut Vec<Record>,
) {
    for tp in partitions {
        // Keys of stored offsets were encodable when they were committed.
        if let Ok(record) = Record::offset_commit_tombstone(group_id, &tp.topic, tp.partition) {
            records.push(record);
        }
    }
}

/// Builds the [`Handled`] of a JoinGroup: when the call both parked the
/// request and completed it, the completion becomes the immediate answer.
pub(super) fn handled_join(answer: Answer<JoinResponse>, mut completions: Vec<Completion>) -> Handled<JoinResponse> {
    if let Answer::Later(ticket) = answer {
        let own = completions.iter().position(|c| matches!(c, Completion::Join { ticket: t, .. } if *t == ticket));
        if let Some(position) = own {
            if let Completion::Join { response, .. } = completions.remove(position) {
                return Handled { answer: Answer::Now(response), completions };
            }
        }
    }
    Handled { answer, completions }
}

/// As [`handled_join`], for SyncGroup.
pub(super) fn handled_sync(answer: Answer<SyncResponse>, mut completions: Vec<Completion>) -> Handled<SyncResponse> {
    if let Answer::Later(ticket) = answer {
        let own = completions.iter().position(|c| matches!(c, Completion::Sync { ticket: t, .. } if *t == ticket));
        if let Some(position) = own {
            if let Completion::Sync { response, .. } = completions.remove(position) {
                return Handled { answer: Answer::Now(response), completions };
            }
        }
    }
    Handled { answer, completions }
}
