//! SyncGroup (Kafka's `handleSyncGroup`) and the report of group metadata
//! appends that complete it.
//!
//! In CompletingRebalance every SyncGroup is parked. The leader's carries
//! the assignment: the coordinator hands back the group metadata record
//! with it, and only when the caller reports the append durable
//! ([`GroupCoordinator::group_stored`]) does the group go Stable and every
//! parked SyncGroup get its member's assignment, as Kafka answers after
//! `storeGroup`. In Stable a SyncGroup is answered at once.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::coordinator::{handled_sync, GroupCoordinator};
use super::error_code::{
    group_store_error, ILLEGAL_GENERATION, INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID, NONE, REBALANCE_IN_PROGRESS,
    UNKNOWN_MEMBER_ID, UNKNOWN_SERVER_ERROR,
};
use super::join::complete_static_member_store;
use super::messages::{Answer, Completion, Handled, SyncRequest, SyncResponse, Ticket};
use super::metadata::{GroupMetadata, GroupState, PendingStore};
use super::rebalance::{
    emit_store_group, maybe_prepare_rebalance, reset_and_propagate_assignment_error, schedule_session,
    set_and_propagate_assignment, validate_current_member, Effects,
};

impl GroupCoordinator {
    /// SyncGroup. Errors: UNKNOWN_MEMBER_ID / FENCED_INSTANCE_ID for a
    /// member the group does not know (or a fenced static instance),
    /// ILLEGAL_GENERATION for another generation, INCONSISTENT_GROUP_PROTOCOL
    /// when v5+ names another protocol type or name, REBALANCE_IN_PROGRESS
    /// while the group waits for members to rejoin.
    pub fn sync(&mut self, request: SyncRequest, now_ms: i64) -> Handled<SyncResponse> {
        let group_id = request.group_id.clone();
        let mut fx = Effects::new(&self.config, &mut self.next_ticket, now_ms);
        let answer = match self.groups.get_mut(&request.group_id) {
            _ if request.group_id.is_empty() => Answer::Now(SyncResponse::error(INVALID_GROUP_ID)),
            None => Answer::Now(SyncResponse::error(UNKNOWN_MEMBER_ID)),
            Some(group) => sync_group(group, request, &mut fx),
        };
        let completions = fx.completions;
        self.reindex(&group_id);
        handled_sync(answer, completions)
    }

    /// Reports the append of a [`Completion::StoreGroup`] record:
    /// `append_error_code` is the Kafka error code of the append (0 when
    /// it is durable); it is mapped as Kafka's `storeGroup` maps it. Answers
    /// the requests that waited for the write. Unknown tickets (the group
    /// moved on, or the write had no waiter) are ignored.
    pub fn group_stored(
        &mut self,
        group_id: &str,
        ticket: Ticket,
        append_error_code: i16,
        now_ms: i64,
    ) -> Vec<Completion> {
        let Some(group) = self.groups.get_mut(group_id) else {
            return Vec::new();
        };
        let Some(position) = group.pending_stores.iter().position(|s| s.ticket() == ticket) else {
            return Vec::new();
        };
        let store = group.pending_stores.remove(position);
        let error_code = group_store_error(append_error_code);
        let mut fx = Effects::new(&self.config, &mut self.next_ticket, now_ms);
        match store {
            PendingStore::Assignment { generation_id, assignment, .. } => {
                complete_assignment_store(group, generation_id, &assignment, error_code, &mut fx);
            }
            PendingStore::StaticMember(replacement) => {
                complete_static_member_store(group, *replacement, error_code, &mut fx);
            }
        }
        let completions = fx.completions;
        self.reindex(group_id);
        completions
    }
}

/// Kafka's `validateSyncGroup` then `doSyncGroup`.
fn sync_group(group: &mut GroupMetadata, request: SyncRequest, fx: &mut Effects<'_>) -> Answer<SyncResponse> {
    let error = |code| Answer::Now(SyncResponse::error(code));
    if let Some(code) = validate_current_member(group, &request.member_id, request.group_instance_id.as_deref()) {
        return error(code);
    }
    if request.generation_id != group.generation_id {
        return error(ILLEGAL_GENERATION);
    }
    if request.protocol_type.is_some() && request.protocol_type != group.protocol_type {
        return error(INCONSISTENT_GROUP_PROTOCOL);
    }
    if request.protocol_name.is_some() && request.protocol_name != group.protocol_name {
        return error(INCONSISTENT_GROUP_PROTOCOL);
    }
    match group.state {
        GroupState::Empty | GroupState::Dead => error(UNKNOWN_MEMBER_ID),
        GroupState::PreparingRebalance => error(REBALANCE_IN_PROGRESS),
        GroupState::CompletingRebalance => park_sync(group, request, fx),
        GroupState::Stable => {
            group.pending_sync_members.remove(&request.member_id);
            let protocol_type = group.protocol_type.clone();
            let protocol_name = group.protocol_name.clone();
            let Some(member) = group.members.get_mut(&request.member_id) else {
                return error(UNKNOWN_MEMBER_ID);
            };
            schedule_session(member, fx.now_ms);
            Answer::Now(SyncResponse {
                error_code: NONE,
                protocol_type,
                protocol_name,
                assignment: member.assignment.clone(),
            })
        }
    }
}

/// A SyncGroup in CompletingRebalance: parked; the leader's also starts
/// storing its assignment.
fn park_sync(group: &mut GroupMetadata, request: SyncRequest, fx: &mut Effects<'_>) -> Answer<SyncResponse> {
    let ticket = fx.ticket();
    let Some(member) = group.members.get_mut(&request.member_id) else {
        return Answer::Now(SyncResponse::error(UNKNOWN_MEMBER_ID));
    };
    if let Some(superseded) = member.awaiting_sync.replace(ticket) {
        // A retried SyncGroup: Kafka drops the old one, pinion answers it.
        fx.answer_sync(superseded, SyncResponse::error(REBALANCE_IN_PROGRESS));
    }
    group.pending_sync_members.remove(&request.member_id);

    if group.is_leader(&request.member_id) {
        // Members the leader left out get an empty assignment; ids that are
        // not members are ignored; a repeated id keeps its last assignment.
        let mut assignment: BTreeMap<String, Bytes> =
            group.members.keys().map(|id| (id.clone(), Bytes::new())).collect();
        for entry in request.assignments {
            if let Some(slot) = assignment.get_mut(&entry.member_id) {
                *slot = entry.assignment;
            }
        }
        let generation_id = group.generation_id;
        let store_ticket = fx.ticket();
        if emit_store_group(group, &assignment, store_ticket, fx) {
            group.pending_stores.push(PendingStore::Assignment { ticket: store_ticket, generation_id, assignment });
        } else {
            complete_assignment_store(group, generation_id, &assignment, UNKNOWN_SERVER_ERROR, fx);
        }
    }
    Answer::Later(ticket)
}

/// The leader's assignment was stored (or not). Ignored if the group has
/// since left that generation's CompletingRebalance.
fn complete_assignment_store(
    group: &mut GroupMetadata,
    generation_id: i32,
    assignment: &BTreeMap<String, Bytes>,
    error_code: i16,
    fx: &mut Effects<'_>,
) {
    if !group.is(GroupState::CompletingRebalance) || group.generation_id != generation_id {
        return;
    }
    if error_code == NONE {
        set_and_propagate_assignment(group, assignment, fx);
        group.transition_to(GroupState::Stable, fx.now_ms);
    } else {
        reset_and_propagate_assignment_error(group, error_code, fx);
        maybe_prepare_rebalance(group, fx);
    }
}
