//! LeaveGroup (Kafka's `handleLeaveGroup`): members leaving on their own
//! (consumer close), or removed by an administrator by instance id.

use super::coordinator::GroupCoordinator;
use super::error_code::{INVALID_GROUP_ID, NONE, UNKNOWN_MEMBER_ID};
use super::messages::{LeaveMember, LeaveMemberResponse, LeaveResponse, Left};
use super::rebalance::{
    remove_member_and_update_group, remove_pending_member_and_update_group, validate_current_member, Effects,
};

impl GroupCoordinator {
    /// LeaveGroup (v3+ batch; v0-v2 pass one member). Each member gets its
    /// own code: NONE when removed, UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID
    /// as for a heartbeat. An empty member id with an instance id removes
    /// that static member, whatever its member id. A member leaving a
    /// Stable or CompletingRebalance group starts a rebalance; the last
    /// member leaving makes the group Empty (next generation, recorded).
    pub fn leave(&mut self, group_id: &str, members: &[LeaveMember], now_ms: i64) -> Left {
        if group_id.is_empty() {
            let response = LeaveResponse { error_code: INVALID_GROUP_ID, members: Vec::new() };
            return Left { response, completions: Vec::new() };
        }
        let member_response = |member: &LeaveMember, error_code| LeaveMemberResponse {
            member_id: member.member_id.clone(),
            group_instance_id: member.group_instance_id.clone(),
            error_code,
        };
        let Some(group) = self.groups.get_mut(group_id) else {
            let members = members.iter().map(|m| member_response(m, UNKNOWN_MEMBER_ID)).collect();
            return Left { response: LeaveResponse { error_code: NONE, members }, completions: Vec::new() };
        };
        let mut fx = Effects::new(&self.config, &mut self.next_ticket, now_ms);
        let mut responses = Vec::with_capacity(members.len());
        for leaving in members {
            let instance_id = leaving.group_instance_id.as_deref();
            let error_code = if leaving.member_id.is_empty() {
                match instance_id.and_then(|id| group.static_member_id(id)).map(str::to_owned) {
                    Some(current_member_id) => {
                        remove_member_and_update_group(group, &current_member_id, &mut fx);
                        NONE
                    }
                    None => UNKNOWN_MEMBER_ID,
                }
            } else if group.pending_members.contains_key(&leaving.member_id) {
                remove_pending_member_and_update_group(group, &leaving.member_id, &mut fx);
                NONE
            } else {
                match validate_current_member(group, &leaving.member_id, instance_id) {
                    Some(code) => code,
                    None => {
                        remove_member_and_update_group(group, &leaving.member_id, &mut fx);
                        NONE
                    }
                }
            };
            responses.push(member_response(leaving, error_code));
        }
        let completions = fx.completions;
        self.reindex(group_id);
        Left { response: LeaveResponse { error_code: NONE, members: responses }, completions }
    }
}
