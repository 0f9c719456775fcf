//! Heartbeat (Kafka's `handleHeartbeat`): keeps a member's session alive and
//! tells it when to rejoin.

use super::coordinator::GroupCoordinator;
use super::error_code::{ILLEGAL_GENERATION, INVALID_GROUP_ID, NONE, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID};
use super::metadata::GroupState;
use super::rebalance::{schedule_session, validate_current_member};

impl GroupCoordinator {
    /// Heartbeat. Restarts the member's session timeout and answers NONE
    /// in Stable and CompletingRebalance (a member may heartbeat between its
    /// JoinGroup answer and its SyncGroup), REBALANCE_IN_PROGRESS in
    /// PreparingRebalance (the member must rejoin), ILLEGAL_GENERATION for
    /// another generation, UNKNOWN_MEMBER_ID for an unknown member or group,
    /// FENCED_INSTANCE_ID for a static instance that was replaced.
    pub fn heartbeat(
        &mut self,
        group_id: &str,
        generation_id: i32,
        member_id: &str,
        group_instance_id: Option<&str>,
        now_ms: i64,
    ) -> i16 {
        if group_id.is_empty() {
            return INVALID_GROUP_ID;
        }
        let Some(group) = self.groups.get_mut(group_id) else {
            return UNKNOWN_MEMBER_ID;
        };
        if let Some(code) = validate_current_member(group, member_id, group_instance_id) {
            return code;
        }
        if generation_id != group.generation_id {
            return ILLEGAL_GENERATION;
        }
        let code = match group.state {
            GroupState::Empty | GroupState::Dead => return UNKNOWN_MEMBER_ID,
            GroupState::PreparingRebalance => REBALANCE_IN_PROGRESS,
            GroupState::CompletingRebalance | GroupState::Stable => NONE,
        };
        if let Some(member) = group.members.get_mut(member_id) {
            schedule_session(member, now_ms);
        }
        self.reindex(group_id);
        code
    }
}
