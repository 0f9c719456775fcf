//! The rebalance machinery shared by every group operation: preparing a
//! rebalance, completing the join phase, propagating the leader's
//! assignment, removing members, and the timers (Kafka's `DelayedJoin`,
//! `InitialDelayedJoin`, `DelayedSync` and `DelayedHeartbeat`, here plain
//! deadlines fired by `GroupCoordinator::tick`).
//!
//! Each function is a step of Kafka's `GroupCoordinator` with the same name
//! in snake_case; answers to parked requests are pushed into [`Effects`]
//! instead of invoking callbacks.

use std::collections::BTreeMap;

use bytes::Bytes;

use super::coordinator::GroupConfig;
use super::error_code::{NONE, REBALANCE_IN_PROGRESS, UNKNOWN_MEMBER_ID};
use super::member::MemberMetadata;
use super::messages::{Completion, JoinResponse, SyncResponse, Ticket};
use super::metadata::{GroupMetadata, GroupState, JoinTimer};
use super::record::Record;

/// The context of one coordinator call: its clock, its configuration, the
/// ticket counter, and the completions it produces.
#[derive(Debug)]
pub(super) struct Effects<'a> {
    pub config: &'a GroupConfig,
    next_ticket: &'a mut u64,
    pub now_ms: i64,
    pub completions: Vec<Completion>,
}

impl<'a> Effects<'a> {
    pub fn new(config: &'a GroupConfig, next_ticket: &'a mut u64, now_ms: i64) -> Self {
        Self { config, next_ticket, now_ms, completions: Vec::new() }
    }

    pub fn ticket(&mut self) -> Ticket {
        *self.next_ticket += 1;
        Ticket(*self.next_ticket)
    }

    pub fn answer_join(&mut self, ticket: Ticket, response: JoinResponse) {
        self.completions.push(Completion::Join { ticket, response });
    }

    pub fn answer_sync(&mut self, ticket: Ticket, response: SyncResponse) {
        self.completions.push(Completion::Sync { ticket, response });
    }
}

/// Kafka's `completeAndScheduleNextHeartbeatExpiration`.
pub(super) fn schedule_session(member: &mut MemberMetadata, now_ms: i64) {
    member.session_deadline_ms = Some(now_ms + i64::from(member.session_timeout_ms));
}

/// Answers the member's parked JoinGroup, if any. True if there was one.
pub(super) fn maybe_invoke_join(member: &mut MemberMetadata, response: JoinResponse, fx: &mut Effects<'_>) -> bool {
    match member.awaiting_join.take() {
        Some(ticket) => {
            fx.answer_join(ticket, response);
            true
        }
        None => false,
    }
}

/// Answers the member's parked SyncGroup, if any. True if there was one.
pub(super) fn maybe_invoke_sync(member: &mut MemberMetadata, response: SyncResponse, fx: &mut Effects<'_>) -> bool {
    match member.awaiting_sync.take() {
        Some(ticket) => {
            fx.answer_sync(ticket, response);
            true
        }
        None => false,
    }
}

/// Kafka's `validateCurrentMember`: a static member's instance id must map
/// to this member id (else FENCED_INSTANCE_ID, or UNKNOWN_MEMBER_ID when
/// the instance is unknown), and the member must exist.
pub(super) fn validate_current_member(
    group: &GroupMetadata,
    member_id: &str,
    group_instance_id: Option<&str>,
) -> Option<i16> {
    use super::error_code::FENCED_INSTANCE_ID;
    if let Some(instance_id) = group_instance_id {
        match group.static_member_id(instance_id) {
            Some(current) if current != member_id => return Some(FENCED_INSTANCE_ID),
            Some(_) => {}
            None => return Some(UNKNOWN_MEMBER_ID),
        }
    }
    if group.members.contains_key(member_id) {
        None
    } else {
        Some(UNKNOWN_MEMBER_ID)
    }
}

pub(super) fn maybe_prepare_rebalance(group: &mut GroupMetadata, fx: &mut Effects<'_>) {
    if group.can_rebalance() {
        prepare_rebalance(group, fx);
    }
}

/// Moves the group to PreparingRebalance: parked SyncGroups are told to
/// rejoin, and the join phase gets its timer (the initial delay when the
/// group was Empty).
pub(super) fn prepare_rebalance(group: &mut GroupMetadata, fx: &mut Effects<'_>) {
    if group.is(GroupState::CompletingRebalance) {
        reset_and_propagate_assignment_error(group, REBALANCE_IN_PROGRESS, fx);
    }
    group.pending_sync_members.clear();
    group.sync_deadline_ms = None;
    let now_ms = fx.now_ms;
    let timer = if group.is(GroupState::Empty) {
        let delay_ms = i64::from(fx.config.group_initial_rebalance_delay_ms.max(0));
        JoinTimer::Initial {
            deadline_ms: now_ms + delay_ms,
            delay_ms,
            remaining_ms: (group.rebalance_timeout_ms() - delay_ms).max(0),
        }
    } else {
        JoinTimer::Rebalance { deadline_ms: now_ms + group.rebalance_timeout_ms() }
    };
    group.transition_to(GroupState::PreparingRebalance, now_ms);
    group.join_timer = Some(timer);
    try_complete_join(group, fx);
}

/// Kafka's `tryCompleteJoin`: ends the join phase as soon as every member
/// has rejoined. The initial delay never ends early (it exists to wait).
pub(super) fn try_complete_join(group: &mut GroupMetadata, fx: &mut Effects<'_>) {
    let waiting = matches!(group.join_timer, Some(JoinTimer::Rebalance { .. }));
    if group.is(GroupState::PreparingRebalance) && waiting && group.has_all_members_joined() {
        group.join_timer = None;
        on_complete_join(group, fx);
    }
}

/// Kafka's `onCompleteJoin`: drops dynamic members that did not rejoin
/// (static ones keep their place, KIP-345), starts the next generation and
/// answers every parked JoinGroup; the leader's answer lists the members.
pub(super) fn on_complete_join(group: &mut GroupMetadata, fx: &mut Effects<'_>) {
    let now_ms = fx.now_ms;
    let not_rejoined: Vec<String> = group
        .members
        .values()
        .filter(|m| m.awaiting_join.is_none() && !m.is_static())
        .map(|m| m.member_id.clone())
        .collect();
    for member_id in &not_rejoined {
        group.remove(member_id);
    }

    if !maybe_elect_new_joined_leader(group) && !group.members.is_empty() {
        // Only static members that have not rejoined are left: wait another
        // rebalance timeout for them (their sessions may expire meanwhile).
        group.join_timer = Some(JoinTimer::Rebalance { deadline_ms: now_ms + group.rebalance_timeout_ms() });
        return;
    }

    init_next_generation(group, now_ms);
    if group.is(GroupState::Empty) {
        // Nobody waits for this write; a failure only means an older
        // generation is loaded after a crash, which Kafka also accepts.
        let ticket = fx.ticket();
        let _ = emit_store_group(group, &BTreeMap::new(), ticket, fx);
        return;
    }

    let leader = group.leader_id.clone().unwrap_or_default();
    let leader_members = group.current_member_metadata();
    let generation_id = group.generation_id;
    let protocol_type = group.protocol_type.clone();
    let protocol_name = group.protocol_name.clone();
    for member in group.members.values_mut() {
        let is_leader = member.member_id == leader;
        let response = JoinResponse {
            error_code: NONE,
            generation_id,
            protocol_type: protocol_type.clone(),
            protocol_name: protocol_name.clone(),
            leader: leader.clone(),
            skip_assignment: false,
            member_id: member.member_id.clone(),
            members: if is_leader { leader_members.clone() } else { Vec::new() },
        };
        maybe_invoke_join(member, response, fx);
        schedule_session(member, now_ms);
        member.is_new = false;
    }
    group.pending_sync_members = group.members.keys().cloned().collect();
    group.sync_deadline_ms = Some(now_ms + group.rebalance_timeout_ms());
}

/// Kafka's `maybeElectNewJoinedLeader`: keeps the leader if it rejoined,
/// else picks the first member that did. False when nobody rejoined.
fn maybe_elect_new_joined_leader(group: &mut GroupMetadata) -> bool {
    let Some(leader) = group.leader_id.as_deref() else {
        return false;
    };
    if group.members.get(leader).is_some_and(|m| m.awaiting_join.is_some()) {
        return true;
    }
    match group.members.values().find(|m| m.awaiting_join.is_some()) {
        Some(joined) => {
            group.leader_id = Some(joined.member_id.clone());
            true
        }
        None => false,
    }
}

/// Kafka's `initNextGeneration`.
fn init_next_generation(group: &mut GroupMetadata, now_ms: i64) {
    group.generation_id = group.generation_id.wrapping_add(1);
    if group.members.is_empty() {
        group.protocol_name = None;
        group.subscribed_topics = group.compute_subscribed_topics();
        group.transition_to(GroupState::Empty, now_ms);
    } else {
        group.protocol_name = group.select_protocol();
        debug_assert!(group.protocol_name.is_some(), "members always share a protocol");
        group.subscribed_topics = group.compute_subscribed_topics();
        group.transition_to(GroupState::CompletingRebalance, now_ms);
    }
    group.pending_sync_members.clear();
    group.sync_deadline_ms = None;
}

/// Hands the group metadata record (with `assignment`) to the caller to
/// append. False if the record cannot be encoded, which the entry checks
/// on string lengths make impossible in practice.
pub(super) fn emit_store_group(
    group: &GroupMetadata,
    assignment: &BTreeMap<String, Bytes>,
    ticket: Ticket,
    fx: &mut Effects<'_>,
) -> bool {
    match Record::group_metadata(&group.group_id, &group.metadata_value(assignment)) {
        Ok(record) => {
            fx.completions.push(Completion::StoreGroup { group_id: group.group_id.clone(), ticket, record });
            true
        }
        Err(_) => false,
    }
}

/// Kafka's `propagateAssignment`: answers every parked SyncGroup with the
/// member's assignment (or `error`) and restarts its session.
fn propagate_assignment(group: &mut GroupMetadata, error_code: i16, fx: &mut Effects<'_>) {
    let (protocol_type, protocol_name) =
        if error_code == NONE { (group.protocol_type.clone(), group.protocol_name.clone()) } else { (None, None) };
    let now_ms = fx.now_ms;
    for member in group.members.values_mut() {
        let response = SyncResponse {
            error_code,
            protocol_type: protocol_type.clone(),
            protocol_name: protocol_name.clone(),
            assignment: member.assignment.clone(),
        };
        if maybe_invoke_sync(member, response, fx) {
            schedule_session(member, now_ms);
        }
    }
}

/// Kafka's `setAndPropagateAssignment`; members left out of `assignment`
/// get an empty one.
pub(super) fn set_and_propagate_assignment(
    group: &mut GroupMetadata,
    assignment: &BTreeMap<String, Bytes>,
    fx: &mut Effects<'_>,
) {
    assert!(
        group.is(GroupState::CompletingRebalance),
        "group {}: assignment outside CompletingRebalance",
        group.group_id
    );
    for member in group.members.values_mut() {
        member.assignment = assignment.get(&member.member_id).cloned().unwrap_or_default();
    }
    propagate_assignment(group, NONE, fx);
}

/// Kafka's `resetAndPropagateAssignmentError`.
pub(super) fn reset_and_propagate_assignment_error(group: &mut GroupMetadata, error_code: i16, fx: &mut Effects<'_>) {
    assert!(
        group.is(GroupState::CompletingRebalance),
        "group {}: assignment outside CompletingRebalance",
        group.group_id
    );
    for member in group.members.values_mut() {
        member.assignment = Bytes::new();
    }
    propagate_assignment(group, error_code, fx);
}

/// Kafka's `removeMemberAndUpdateGroup`: a parked JoinGroup of the member
/// is answered UNKNOWN_MEMBER_ID so a live client rejoins; the group
/// rebalances (or its join phase may now be complete).
pub(super) fn remove_member_and_update_group(group: &mut GroupMetadata, member_id: &str, fx: &mut Effects<'_>) {
    if let Some(member) = group.members.get_mut(member_id) {
        maybe_invoke_join(member, JoinResponse::error("", UNKNOWN_MEMBER_ID), fx);
        // Kafka drops a parked SyncGroup of a removed member; pinion answers
        // it so no request is left without a response.
        maybe_invoke_sync(member, SyncResponse::error(UNKNOWN_MEMBER_ID), fx);
    }
    group.remove(member_id);
    match group.state {
        GroupState::Dead | GroupState::Empty => {}
        GroupState::Stable | GroupState::CompletingRebalance => maybe_prepare_rebalance(group, fx),
        GroupState::PreparingRebalance => try_complete_join(group, fx),
    }
}

/// Kafka's `removePendingMemberAndUpdateGroup`.
pub(super) fn remove_pending_member_and_update_group(group: &mut GroupMetadata, member_id: &str, fx: &mut Effects<'_>) {
    group.remove(member_id);
    if group.is(GroupState::PreparingRebalance) {
        try_complete_join(group, fx);
    }
}

/// A timer of a group that is due.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum DueTimer {
    Session(String),
    PendingMember(String),
    Sync,
    Join,
}

/// The earliest due timer; on equal deadlines member timers go first.
fn next_due_timer(group: &GroupMetadata, now_ms: i64) -> Option<DueTimer> {
    let sessions = group
        .members
        .values()
        .filter_map(|m| m.session_deadline_ms.map(|d| (d, DueTimer::Session(m.member_id.clone()))));
    let pending = group.pending_members.iter().map(|(id, d)| (*d, DueTimer::PendingMember(id.clone())));
    let sync = group.sync_deadline_ms.map(|d| (d, DueTimer::Sync));
    let join = group.join_timer.map(|t| (t.deadline_ms(), DueTimer::Join));
    sessions
        .chain(pending)
        .chain(sync)
        .chain(join)
        .filter(|(deadline, _)| *deadline <= now_ms)
        .min()
        .map(|(_, timer)| timer)
}

/// Fires every timer of `group` that is due at `fx.now_ms`, earliest first.
/// Bounded: each firing removes a member or a pending member, or clears or
/// re-arms a group timer, so a pathological configuration (a rebalance
/// timeout of 0 with only absent static members) cannot spin here; its
/// deadline simply stays due for the next tick.
pub(super) fn fire_due_timers(group: &mut GroupMetadata, fx: &mut Effects<'_>) {
    let firings_max = 8 + 2 * (group.members.len() + group.pending_members.len());
    for _ in 0..firings_max {
        let Some(timer) = next_due_timer(group, fx.now_ms) else {
            return;
        };
        match timer {
            DueTimer::Session(member_id) => on_expire_heartbeat(group, &member_id, fx),
            DueTimer::PendingMember(member_id) => remove_pending_member_and_update_group(group, &member_id, fx),
            DueTimer::Sync => on_expire_pending_sync(group, fx),
            DueTimer::Join => on_expire_join(group, fx),
        }
    }
}

/// Kafka's `onExpireHeartbeat`.
fn on_expire_heartbeat(group: &mut GroupMetadata, member_id: &str, fx: &mut Effects<'_>) {
    let Some(member) = group.members.get_mut(member_id) else {
        return;
    };
    if member.has_satisfied_heartbeat() {
        // Waiting in a rebalance: the next deadline is set when it ends.
        member.session_deadline_ms = None;
    } else {
        remove_member_and_update_group(group, member_id, fx);
    }
}

/// Kafka's `onExpirePendingSync`: members that never sent SyncGroup are
/// removed and the group rebalances.
fn on_expire_pending_sync(group: &mut GroupMetadata, fx: &mut Effects<'_>) {
    group.sync_deadline_ms = None;
    let waiting = matches!(group.state, GroupState::CompletingRebalance | GroupState::Stable);
    if waiting && !group.pending_sync_members.is_empty() {
        let pending: Vec<String> = group.pending_sync_members.iter().cloned().collect();
        for member_id in &pending {
            group.remove(member_id);
        }
        prepare_rebalance(group, fx);
    }
}

/// The join timer's deadline: `InitialDelayedJoin.onComplete` (wait again
/// while generation-0 members keep arriving) or `DelayedJoin` expiry.
fn on_expire_join(group: &mut GroupMetadata, fx: &mut Effects<'_>) {
    let Some(timer) = group.join_timer.take() else {
        return;
    };
    if let JoinTimer::Initial { delay_ms, remaining_ms, .. } = timer {
        if group.new_member_added && remaining_ms != 0 {
            group.new_member_added = false;
            let configured_ms = i64::from(fx.config.group_initial_rebalance_delay_ms.max(0));
            let next_delay_ms = configured_ms.min(remaining_ms);
            group.join_timer = Some(JoinTimer::Initial {
                deadline_ms: fx.now_ms + next_delay_ms,
                delay_ms: next_delay_ms,
                remaining_ms: (remaining_ms - delay_ms).max(0),
            });
            return;
        }
    }
    on_complete_join(group, fx);
}
