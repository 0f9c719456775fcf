//! Rebuilding the coordinator from `__consumer_offsets` (Kafka's
//! `GroupMetadataManager.loadGroupsAndOffsets`).
//!
//! At start the caller replays every record of the partition in log order;
//! the last record of each key wins and a tombstone deletes. A group
//! metadata record loads its group Stable (Empty when it has no members),
//! with each member's session starting at the replay time, exactly as
//! Kafka loads a group; a rebalance in progress at the crash is not
//! resumed (Kafka only stores Stable and Empty groups either), so members
//! rejoin and the group rebalances as after a coordinator move. Offsets of
//! a group without metadata load into an Empty group of generation 0.

use super::coordinator::GroupCoordinator;
use super::member::MemberMetadata;
use super::messages::JoinProtocol;
use super::metadata::{GroupMetadata, GroupState};
use super::offsets::TopicPartition;
use super::rebalance::{prepare_rebalance, Effects};
use super::record::{
    decode_group_metadata_value, decode_key, decode_offset_commit_value, GroupMetadataValue, RecordError, RecordKey,
};

impl GroupCoordinator {
    /// Applies one `__consumer_offsets` record (`value` `None` for a
    /// tombstone). A record that does not decode is refused with the reason
    /// and changes nothing. Meant for loading: a group metadata record
    /// replaces the group as stored, so it must not be replayed over a live
    /// group (the records the coordinator itself emits are already applied).
    pub fn replay(&mut self, key: &[u8], value: Option<&[u8]>, now_ms: i64) -> Result<(), RecordError> {
        match decode_key(key)? {
            RecordKey::OffsetCommit { group_id, topic, partition } => {
                let partition = TopicPartition { topic, partition };
                match value {
                    Some(value) => {
                        let offset = decode_offset_commit_value(value)?;
                        if !self.groups.contains_key(&group_id) {
                            self.groups.insert(group_id.clone(), GroupMetadata::new(&group_id, now_ms));
                        }
                        self.offsets.put(&group_id, partition, offset);
                    }
                    None => {
                        self.offsets.remove(&group_id, &partition);
                        self.forget_group_if_unused(&group_id);
                    }
                }
            }
            RecordKey::GroupMetadata { group_id } => match value {
                Some(value) => {
                    let value = decode_group_metadata_value(value)?;
                    check_group_metadata(&value)?;
                    self.load_group(&group_id, value, now_ms);
                }
                None => self.unload_group_metadata(&group_id, now_ms),
            },
        }
        Ok(())
    }

    /// Installs a group as its metadata record describes it.
    fn load_group(&mut self, group_id: &str, value: GroupMetadataValue, now_ms: i64) {
        self.forget_group_timers(group_id);
        let mut group = GroupMetadata::new(group_id, now_ms);
        group.generation_id = value.generation_id;
        group.protocol_type = Some(value.protocol_type).filter(|t| !t.is_empty());
        group.protocol_name = value.protocol_name;
        group.current_state_timestamp_ms = Some(value.current_state_timestamp_ms).filter(|&t| t != -1);
        let protocol_name = group.protocol_name.clone().unwrap_or_default();
        for stored in value.members {
            if let Some(instance_id) = &stored.group_instance_id {
                group.static_members.insert(instance_id.clone(), stored.member_id.clone());
            }
            let member = MemberMetadata {
                member_id: stored.member_id.clone(),
                group_instance_id: stored.group_instance_id,
                client_id: stored.client_id,
                client_host: stored.client_host,
                rebalance_timeout_ms: stored.rebalance_timeout_ms,
                session_timeout_ms: stored.session_timeout_ms,
                supported_protocols: vec![JoinProtocol { name: protocol_name.clone(), metadata: stored.subscription }],
                assignment: stored.assignment,
                awaiting_join: None,
                awaiting_sync: None,
                is_new: false,
                session_deadline_ms: Some(now_ms + i64::from(stored.session_timeout_ms)),
            };
            group.members.insert(stored.member_id, member);
        }
        // The leader is a member, or the group has none.
        group.leader_id = value.leader_id.filter(|id| group.members.contains_key(id));
        if group.leader_id.is_none() {
            group.leader_id = group.members.keys().next().cloned();
        }
        group.state = if group.members.is_empty() { GroupState::Empty } else { GroupState::Stable };
        group.subscribed_topics = group.compute_subscribed_topics();

        // Kafka's onGroupLoaded: a group over `group.max.size` rebalances
        // so the members beyond it are turned away.
        if group.members.len() > self.config.group_max_size {
            let mut fx = Effects::new(&self.config, &mut self.next_ticket, now_ms);
            prepare_rebalance(&mut group, &mut fx);
            debug_assert!(fx.completions.is_empty(), "a loaded group has no parked requests");
        }
        self.groups.insert(group_id.to_owned(), group);
        self.reindex(group_id);
    }

    /// A group metadata tombstone: the group keeps only its offsets (as an
    /// Empty group of generation 0), or disappears.
    fn unload_group_metadata(&mut self, group_id: &str, now_ms: i64) {
        self.forget_group_timers(group_id);
        if self.offsets.has_offsets(group_id) {
            self.groups.insert(group_id.to_owned(), GroupMetadata::new(group_id, now_ms));
        } else {
            self.groups.remove(group_id);
        }
    }

    /// After an offset tombstone: a group that only ever stored offsets
    /// (generation 0, no members) and has none left is gone.
    fn forget_group_if_unused(&mut self, group_id: &str) {
        let unused = self.groups.get(group_id).is_some_and(|g| {
            g.is(GroupState::Empty) && g.generation_id == 0 && g.members.is_empty() && g.pending_members.is_empty()
        });
        if unused && !self.offsets.has_offsets(group_id) {
            self.forget_group_timers(group_id);
            self.groups.remove(group_id);
        }
    }

    fn forget_group_timers(&mut self, group_id: &str) {
        if let Some(group) = self.groups.get_mut(group_id) {
            if let Some(deadline) = group.indexed_deadline_ms.take() {
                self.deadlines.remove(&(deadline, group_id.to_owned()));
            }
        }
    }
}

/// Refuses metadata that decodes but cannot describe a group.
fn check_group_metadata(value: &GroupMetadataValue) -> Result<(), RecordError> {
    if !value.members.is_empty() && value.protocol_name.is_none() {
        return Err(RecordError::Inconsistent { reason: "members without a protocol" });
    }
    if !value.members.is_empty() && value.protocol_type.is_empty() {
        return Err(RecordError::Inconsistent { reason: "members without a protocol type" });
    }
    let mut member_ids = std::collections::BTreeSet::new();
    let mut instance_ids = std::collections::BTreeSet::new();
    for member in &value.members {
        if !member_ids.insert(member.member_id.as_str()) {
            return Err(RecordError::Inconsistent { reason: "a member id appears twice" });
        }
        if let Some(instance_id) = &member.group_instance_id {
            if !instance_ids.insert(instance_id.as_str()) {
                return Err(RecordError::Inconsistent { reason: "a group instance id appears twice" });
            }
        }
    }
    Ok(())
}
