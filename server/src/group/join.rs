//! JoinGroup: Kafka's `handleJoinGroup`, including member id assignment
//! (KIP-394 MEMBER_ID_REQUIRED) and static membership (KIP-345), where a
//! restarted instance takes over its old member's place, fencing the old
//! member id, without a rebalance when the group is Stable.

use std::collections::BTreeMap;

use super::coordinator::{handled_join, GroupCoordinator};
use super::error_code::{
    GROUP_MAX_SIZE_REACHED, INCONSISTENT_GROUP_PROTOCOL, INVALID_GROUP_ID, INVALID_REQUEST, INVALID_SESSION_TIMEOUT,
    MEMBER_ID_REQUIRED, NONE, UNKNOWN_MEMBER_ID, UNKNOWN_SERVER_ERROR,
};
use super::member::{MemberIdGenerator, MemberMetadata};
use super::messages::{Answer, Handled, JoinProtocol, JoinRequest, JoinResponse};
use super::metadata::{GroupMetadata, GroupState, PendingStore, StaticReplacement};
use super::rebalance::{
    emit_store_group, maybe_prepare_rebalance, prepare_rebalance, schedule_session, try_complete_join,
    validate_current_member, Effects,
};
use super::record::STRING_BYTES_MAX;

/// Room left in a record string for the "-{uuid}" a member id adds to a
/// client id or instance id.
const MEMBER_ID_SUFFIX_BYTES: usize = 37;

impl GroupCoordinator {
    /// JoinGroup. A member joining for the first time sends an empty
    /// member id and is given one (with MEMBER_ID_REQUIRED first, for v4+
    /// dynamic members). The answer usually comes later: when every known
    /// member has rejoined, or the rebalance timeout (or, for an Empty
    /// group, the initial delay) has passed, each parked JoinGroup is
    /// answered with the new generation, and the leader's answer lists the
    /// members and their metadata for the chosen protocol.
    pub fn join(&mut self, request: JoinRequest, now_ms: i64) -> Handled<JoinResponse> {
        let group_id = request.group_id.clone();
        let mut fx = Effects::new(&self.config, &mut self.next_ticket, now_ms);
        let answer = join_group(&mut self.groups, &mut self.member_ids, request, &mut fx);
        let completions = fx.completions;
        self.reindex(&group_id);
        handled_join(answer, completions)
    }
}

fn join_group(
    groups: &mut BTreeMap<String, GroupMetadata>,
    member_ids: &mut MemberIdGenerator,
    request: JoinRequest,
    fx: &mut Effects<'_>,
) -> Answer<JoinResponse> {
    let error = |code| Answer::Now(JoinResponse::error(&request.member_id, code));
    if request.group_id.is_empty() || request.group_id.len() > STRING_BYTES_MAX {
        return error(INVALID_GROUP_ID);
    }
    let config = fx.config;
    if request.session_timeout_ms < config.group_min_session_timeout_ms
        || request.session_timeout_ms > config.group_max_session_timeout_ms
    {
        return error(INVALID_SESSION_TIMEOUT);
    }
    if !fits_in_records(&request) {
        return error(INVALID_REQUEST);
    }

    let is_unknown_member = request.member_id.is_empty();
    if !groups.contains_key(&request.group_id) {
        // Only a new member creates a group; a known member id in an
        // unknown group is stale.
        if !is_unknown_member {
            return error(UNKNOWN_MEMBER_ID);
        }
        groups.insert(request.group_id.clone(), GroupMetadata::new(&request.group_id, fx.now_ms));
    }
    let Some(group) = groups.get_mut(&request.group_id) else {
        return error(UNKNOWN_MEMBER_ID);
    };

    let answer = if !accept_joining_member(group, &request.member_id, config.group_max_size) {
        group.remove(&request.member_id);
        Answer::Now(JoinResponse::error("", GROUP_MAX_SIZE_REACHED))
    } else if is_unknown_member {
        new_member_join(group, member_ids, request, fx)
    } else {
        current_member_join(group, request, fx)
    };
    if group.is(GroupState::PreparingRebalance) {
        try_complete_join(group, fx);
    }
    answer
}

/// Every string that may end up in a group metadata record fits its
/// `int16` length (a generated member id adds a 37-byte suffix).
fn fits_in_records(request: &JoinRequest) -> bool {
    let prefix_max = STRING_BYTES_MAX - MEMBER_ID_SUFFIX_BYTES;
    request.member_id.len() <= STRING_BYTES_MAX
        && request.client_id.len() <= prefix_max
        && request.group_instance_id.as_ref().is_none_or(|id| id.len() <= prefix_max)
        && request.client_host.len() <= STRING_BYTES_MAX
        && request.protocol_type.len() <= STRING_BYTES_MAX
        && request.protocols.iter().all(|p| p.name.len() <= STRING_BYTES_MAX)
}

/// Kafka's `acceptJoiningMember` (`group.max.size`).
fn accept_joining_member(group: &GroupMetadata, member_id: &str, group_max_size: usize) -> bool {
    match group.state {
        GroupState::Empty | GroupState::Dead => true,
        // Counting members that have rejoined lets the last ones to rejoin
        // be turned away when the group is over its size.
        GroupState::PreparingRebalance => {
            group.members.get(member_id).is_some_and(|m| m.awaiting_join.is_some())
                || group.awaiting_join_count() < group_max_size
        }
        GroupState::CompletingRebalance | GroupState::Stable => {
            group.members.contains_key(member_id) || group.members.len() < group_max_size
        }
    }
}

/// Keeps the first entry of each protocol name. Kafka passes duplicates
/// through, which counts the member twice for that protocol in the vote;
/// no client sends them, and here they cannot skew anything.
fn dedupe_protocols(protocols: Vec<JoinProtocol>) -> Vec<JoinProtocol> {
    let mut unique: Vec<JoinProtocol> = Vec::with_capacity(protocols.len());
    for protocol in protocols {
        if !unique.iter().any(|p| p.name == protocol.name) {
            unique.push(protocol);
        }
    }
    unique
}

/// Kafka's `doNewMemberJoinGroup`.
fn new_member_join(
    group: &mut GroupMetadata,
    member_ids: &mut MemberIdGenerator,
    mut request: JoinRequest,
    fx: &mut Effects<'_>,
) -> Answer<JoinResponse> {
    request.protocols = dedupe_protocols(std::mem::take(&mut request.protocols));
    if !group.supports_protocols(&request.protocol_type, &request.protocols) {
        return Answer::Now(JoinResponse::error("", INCONSISTENT_GROUP_PROTOCOL));
    }
    let prefix = request.group_instance_id.as_deref().unwrap_or(&request.client_id);
    let new_member_id = member_ids.next(prefix);

    match request.group_instance_id.clone() {
        Some(instance_id) => match group.static_member_id(&instance_id).map(str::to_owned) {
            Some(old_member_id) => {
                update_static_member_and_rebalance(group, &instance_id, &old_member_id, &new_member_id, request, fx)
            }
            None => add_member_and_rebalance(group, new_member_id, request, fx),
        },
        None if request.require_known_member_id => {
            // KIP-394: the member must come back with this id; until it does
            // (or its session timeout passes) the join phase waits for it.
            let deadline_ms = fx.now_ms + i64::from(request.session_timeout_ms);
            group.pending_members.insert(new_member_id.clone(), deadline_ms);
            Answer::Now(JoinResponse::error(&new_member_id, MEMBER_ID_REQUIRED))
        }
        None => add_member_and_rebalance(group, new_member_id, request, fx),
    }
}

/// Kafka's `doCurrentMemberJoinGroup`.
fn current_member_join(
    group: &mut GroupMetadata,
    mut request: JoinRequest,
    fx: &mut Effects<'_>,
) -> Answer<JoinResponse> {
    let member_id = request.member_id.clone();
    let error = |code| Answer::Now(JoinResponse::error(&member_id, code));
    request.protocols = dedupe_protocols(std::mem::take(&mut request.protocols));
    if !group.supports_protocols(&request.protocol_type, &request.protocols) {
        return error(INCONSISTENT_GROUP_PROTOCOL);
    }
    if group.pending_members.contains_key(&member_id) {
        // A pending member is always dynamic; Kafka fails such a request
        // with an IllegalStateException, i.e. UNKNOWN_SERVER_ERROR.
        if request.group_instance_id.is_some() {
            return error(UNKNOWN_SERVER_ERROR);
        }
        return add_member_and_rebalance(group, member_id, request, fx);
    }
    if let Some(code) = validate_current_member(group, &member_id, request.group_instance_id.as_deref()) {
        return error(code);
    }
    let is_leader = group.is_leader(&member_id);
    let matches = group.members.get(&member_id).is_some_and(|m| m.matches(&request.protocols));
    match group.state {
        GroupState::PreparingRebalance => update_member_and_rebalance(group, &member_id, request, fx),
        GroupState::CompletingRebalance if matches => {
            // The member lost its JoinGroup answer: send it again.
            Answer::Now(current_generation_response(group, &member_id, is_leader))
        }
        GroupState::CompletingRebalance => update_member_and_rebalance(group, &member_id, request, fx),
        // The leader rejoining forces a rebalance: that is how it reacts to
        // changes the member metadata does not show (new partitions).
        GroupState::Stable if is_leader || !matches => update_member_and_rebalance(group, &member_id, request, fx),
        GroupState::Stable => Answer::Now(current_generation_response(group, &member_id, false)),
        GroupState::Empty | GroupState::Dead => error(UNKNOWN_MEMBER_ID),
    }
}

/// The current generation, as a member that already joined it is told.
fn current_generation_response(group: &GroupMetadata, member_id: &str, with_members: bool) -> JoinResponse {
    JoinResponse {
        error_code: NONE,
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: group.leader_id.clone().unwrap_or_default(),
        skip_assignment: false,
        member_id: member_id.to_owned(),
        members: if with_members { group.current_member_metadata() } else { Vec::new() },
    }
}

/// Kafka's `addMemberAndRebalance`.
fn add_member_and_rebalance(
    group: &mut GroupMetadata,
    member_id: String,
    request: JoinRequest,
    fx: &mut Effects<'_>,
) -> Answer<JoinResponse> {
    let ticket = fx.ticket();
    // New members cannot heartbeat while parked, and a client that gave up
    // would otherwise stay a member for ever: it gets a fixed join timeout.
    let session_deadline_ms = fx.now_ms + i64::from(fx.config.new_member_join_timeout_ms);
    let member = MemberMetadata {
        member_id: member_id.clone(),
        group_instance_id: request.group_instance_id,
        client_id: request.client_id,
        client_host: request.client_host,
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        session_timeout_ms: request.session_timeout_ms,
        supported_protocols: request.protocols,
        assignment: Default::default(),
        awaiting_join: Some(ticket),
        awaiting_sync: None,
        is_new: true,
        session_deadline_ms: Some(session_deadline_ms),
    };
    if group.is(GroupState::PreparingRebalance) && group.generation_id == 0 {
        group.new_member_added = true;
    }
    // Kafka's `GroupMetadata.add`.
    if let Some(instance_id) = &member.group_instance_id {
        group.static_members.insert(instance_id.clone(), member_id.clone());
    }
    if group.members.is_empty() {
        group.protocol_type = Some(request.protocol_type);
    }
    if group.leader_id.is_none() {
        group.leader_id = Some(member_id.clone());
    }
    group.pending_members.remove(&member_id);
    group.members.insert(member_id, member);

    maybe_prepare_rebalance(group, fx);
    Answer::Later(ticket)
}

/// Kafka's `updateMemberAndRebalance` (with the member's new timeouts, as
/// newer Kafka versions keep them).
fn update_member_and_rebalance(
    group: &mut GroupMetadata,
    member_id: &str,
    request: JoinRequest,
    fx: &mut Effects<'_>,
) -> Answer<JoinResponse> {
    let ticket = fx.ticket();
    if let Some(member) = group.members.get_mut(member_id) {
        if let Some(superseded) = member.awaiting_join.take() {
            // The client retried its JoinGroup (after a timeout, on a new
            // connection): Kafka drops the old request; pinion answers it so
            // a connection that answers in order is never stuck behind it.
            let response = JoinResponse::error(member_id, super::error_code::REBALANCE_IN_PROGRESS);
            fx.answer_join(superseded, response);
        }
        member.supported_protocols = request.protocols;
        member.rebalance_timeout_ms = request.rebalance_timeout_ms;
        member.session_timeout_ms = request.session_timeout_ms;
        member.awaiting_join = Some(ticket);
    }
    maybe_prepare_rebalance(group, fx);
    Answer::Later(ticket)
}

/// Kafka's `replaceStaticMember`: the member moves to `new_member_id`, and
/// a request the old instance still has parked is answered
/// FENCED_INSTANCE_ID so it shuts down.
pub(super) fn replace_static_member(
    group: &mut GroupMetadata,
    group_instance_id: &str,
    old_member_id: &str,
    new_member_id: &str,
    fx: &mut Effects<'_>,
) {
    use super::error_code::FENCED_INSTANCE_ID;
    use super::messages::SyncResponse;
    use super::rebalance::{maybe_invoke_join, maybe_invoke_sync};

    let Some(mut member) = group.members.remove(old_member_id) else {
        return;
    };
    maybe_invoke_join(&mut member, JoinResponse::error(old_member_id, FENCED_INSTANCE_ID), fx);
    maybe_invoke_sync(&mut member, SyncResponse::error(FENCED_INSTANCE_ID), fx);
    member.member_id = new_member_id.to_owned();
    group.members.insert(new_member_id.to_owned(), member);
    if group.is_leader(old_member_id) {
        group.leader_id = Some(new_member_id.to_owned());
    }
    group.static_members.insert(group_instance_id.to_owned(), new_member_id.to_owned());
    // Kafka leaves the old id among the members it waits a SyncGroup from,
    // which forces a rebalance when that wait expires; the new instance
    // sends the SyncGroup, so it inherits the wait instead.
    if group.pending_sync_members.remove(old_member_id) {
        group.pending_sync_members.insert(new_member_id.to_owned());
    }
}

/// Kafka's `updateStaticMemberAndRebalance`: a restarted static member
/// (same `group.instance.id`, no member id) takes over its old place. In a
/// Stable group whose chosen protocol stays the same there is no
/// rebalance: the group metadata is stored with the new member id and the
/// member is answered with the current generation once that is durable,
/// so its SyncGroup returns the assignment it had.
fn update_static_member_and_rebalance(
    group: &mut GroupMetadata,
    group_instance_id: &str,
    old_member_id: &str,
    new_member_id: &str,
    request: JoinRequest,
    fx: &mut Effects<'_>,
) -> Answer<JoinResponse> {
    let leader_before = group.leader_id.clone();
    replace_static_member(group, group_instance_id, old_member_id, new_member_id, fx);
    let join_ticket = fx.ticket();
    let now_ms = fx.now_ms;
    let Some(member) = group.members.get_mut(new_member_id) else {
        return Answer::Now(JoinResponse::error("", UNKNOWN_MEMBER_ID));
    };
    schedule_session(member, now_ms);
    let old_protocols = std::mem::replace(&mut member.supported_protocols, request.protocols);
    let old_rebalance_timeout_ms = std::mem::replace(&mut member.rebalance_timeout_ms, request.rebalance_timeout_ms);
    let old_session_timeout_ms = std::mem::replace(&mut member.session_timeout_ms, request.session_timeout_ms);
    member.awaiting_join = Some(join_ticket);

    match group.state {
        GroupState::Stable if group.select_protocol() == group.protocol_name => {
            let replacement = StaticReplacement {
                ticket: fx.ticket(),
                join_ticket,
                group_instance_id: group_instance_id.to_owned(),
                old_member_id: old_member_id.to_owned(),
                new_member_id: new_member_id.to_owned(),
                old_protocols,
                old_rebalance_timeout_ms,
                old_session_timeout_ms,
                leader_before,
                supports_skipping_assignment: request.supports_skipping_assignment,
            };
            let assignment = group.current_assignment();
            if emit_store_group(group, &assignment, replacement.ticket, fx) {
                group.pending_stores.push(PendingStore::StaticMember(Box::new(replacement)));
            } else {
                complete_static_member_store(group, replacement, UNKNOWN_SERVER_ERROR, fx);
            }
        }
        GroupState::Stable => maybe_prepare_rebalance(group, fx),
        // The leader may already be assigning to the old member id: start over.
        GroupState::CompletingRebalance => prepare_rebalance(group, fx),
        GroupState::PreparingRebalance | GroupState::Empty | GroupState::Dead => {}
    }
    Answer::Later(join_ticket)
}

/// The group metadata append of a static member's replacement was reported.
pub(super) fn complete_static_member_store(
    group: &mut GroupMetadata,
    replacement: StaticReplacement,
    error_code: i16,
    fx: &mut Effects<'_>,
) {
    let StaticReplacement { join_ticket, new_member_id, .. } = &replacement;
    let still_waiting = group.members.get(new_member_id).is_some_and(|m| m.awaiting_join == Some(*join_ticket));
    if !still_waiting {
        // A rebalance started meanwhile and answered the JoinGroup.
        return;
    }
    if error_code != NONE {
        undo_static_member_replacement(group, replacement, error_code, fx);
        return;
    }
    let is_leader = group.is_leader(new_member_id);
    let skip_assignment = replacement.supports_skipping_assignment && is_leader;
    let response = JoinResponse {
        error_code: NONE,
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        // Before JoinGroup v9 a static leader is given the old leader id so
        // it does not compute an assignment a Stable group would ignore; from
        // v9 it is told it leads and to skip the assignment.
        leader: if replacement.supports_skipping_assignment {
            group.leader_id.clone().unwrap_or_default()
        } else {
            replacement.leader_before.clone().unwrap_or_default()
        },
        skip_assignment,
        member_id: new_member_id.clone(),
        members: if skip_assignment { group.current_member_metadata() } else { Vec::new() },
    };
    if let Some(member) = group.members.get_mut(new_member_id) {
        member.awaiting_join = None;
    }
    fx.answer_join(*join_ticket, response);
}

/// The replacement could not be stored: the old member id comes back, and
/// the new instance is told the error (Kafka's revert).
fn undo_static_member_replacement(
    group: &mut GroupMetadata,
    replacement: StaticReplacement,
    error_code: i16,
    fx: &mut Effects<'_>,
) {
    let StaticReplacement {
        join_ticket,
        group_instance_id,
        old_member_id,
        new_member_id,
        old_protocols,
        old_rebalance_timeout_ms,
        old_session_timeout_ms,
        leader_before,
        ..
    } = replacement;
    if let Some(member) = group.members.get_mut(&new_member_id) {
        member.supported_protocols = old_protocols;
        member.rebalance_timeout_ms = old_rebalance_timeout_ms;
        member.session_timeout_ms = old_session_timeout_ms;
        member.awaiting_join = None;
    }
    replace_static_member(group, &group_instance_id, &new_member_id, &old_member_id, fx);
    if let Some(member) = group.members.get_mut(&old_member_id) {
        schedule_session(member, fx.now_ms);
    }
    let response = JoinResponse {
        error_code,
        generation_id: group.generation_id,
        protocol_type: group.protocol_type.clone(),
        protocol_name: group.protocol_name.clone(),
        leader: leader_before.unwrap_or_default(),
        skip_assignment: false,
        member_id: String::new(),
        members: Vec::new(),
    };
    fx.answer_join(join_ticket, response);
}
