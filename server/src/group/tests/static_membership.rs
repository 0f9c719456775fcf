//! Static membership (KIP-345): members with a `group.instance.id`.

use super::super::error_code::*;
use super::*;

/// A Stable group of static members "instance-a" (the leader) and
/// "instance-b", assigned "p-0" and "p-1".
fn stable_static_group(h: &mut Harness) -> (JoinResponse, JoinResponse) {
    let a = h.join(static_join_request("", "instance-a"));
    let b = h.join(static_join_request("", "instance-b"));
    h.tick();
    let joined = vec![h.joined(&a), h.joined(&b)];
    h.sync_members(&joined);
    assert_eq!(h.state(), Some(GroupState::Stable));
    (joined[0].clone(), joined[1].clone())
}

fn static_sync(generation_id: i32, member_id: &str, instance_id: &str) -> SyncRequest {
    SyncRequest { group_instance_id: Some(instance_id.to_owned()), ..sync_request(generation_id, member_id, &[]) }
}

#[test]
fn a_restarted_static_member_keeps_its_assignment_without_a_rebalance_and_fences_the_old_member_id() {
    let mut h = Harness::new();
    let (a, b) = stable_static_group(&mut h);
    assert!(b.member_id.starts_with("instance-b-"), "static member ids start with the instance id");

    let restarted = h.join(static_join_request("", "instance-b"));
    let restarted = h.joined(&restarted);
    assert_code(restarted.error_code, NONE);
    assert_ne!(restarted.member_id, b.member_id);
    assert_eq!(restarted.generation_id, 1, "no new generation");
    assert_eq!(restarted.leader, a.member_id);
    assert!(restarted.members.is_empty());
    assert_eq!(h.state(), Some(GroupState::Stable));

    let sync = h.sync(static_sync(1, &restarted.member_id, "instance-b"));
    assert_eq!(h.synced(&sync).assignment, Bytes::from_static(b"p-1"));
    assert_code(h.coordinator.heartbeat(GROUP, 1, &a.member_id, Some("instance-a"), h.now_ms), NONE);

    // The old process, if still alive, is told to shut down.
    let old = (&b.member_id, Some("instance-b"));
    assert_code(h.coordinator.heartbeat(GROUP, 1, old.0, old.1, h.now_ms), FENCED_INSTANCE_ID);
    let sync = h.sync(static_sync(1, old.0, "instance-b"));
    assert_code(h.synced(&sync).error_code, FENCED_INSTANCE_ID);
    let join = h.join(static_join_request(old.0, "instance-b"));
    assert_code(h.joined(&join).error_code, FENCED_INSTANCE_ID);
    assert_code(h.coordinator.validate_commit(GROUP, 1, old.0, old.1, h.now_ms), FENCED_INSTANCE_ID);
    let left = h.coordinator.leave(
        GROUP,
        &[LeaveMember { member_id: old.0.clone(), group_instance_id: Some("instance-b".into()) }],
        h.now_ms,
    );
    assert_code(left.response.members[0].error_code, FENCED_INSTANCE_ID);
    assert_eq!(h.state(), Some(GroupState::Stable));

    // The replacement was made durable: the last group record names it.
    let stored = record::decode_group_metadata_value(h.log.last().unwrap().value.as_ref().unwrap()).unwrap();
    let ids: Vec<&str> = stored.members.iter().map(|m| m.member_id.as_str()).collect();
    assert!(ids.contains(&restarted.member_id.as_str()) && !ids.contains(&b.member_id.as_str()));
}

#[test]
fn a_restarted_static_leader_is_not_told_it_leads_before_join_group_v9() {
    let mut h = Harness::new();
    let (a, _) = stable_static_group(&mut h);
    let restarted = h.join(static_join_request("", "instance-a"));
    let restarted = h.joined(&restarted);
    assert_eq!(restarted.leader, a.member_id, "the old leader id: no assignment to compute");
    assert!(!restarted.skip_assignment && restarted.members.is_empty());
    assert_eq!(h.describe().leader_id.as_deref(), Some(restarted.member_id.as_str()));
}

#[test]
fn a_restarted_static_leader_is_told_to_skip_the_assignment_from_join_group_v9() {
    let mut h = Harness::new();
    stable_static_group(&mut h);
    let request = JoinRequest { supports_skipping_assignment: true, ..static_join_request("", "instance-a") };
    let restarted = h.join(request);
    let restarted = h.joined(&restarted);
    assert_eq!(restarted.leader, restarted.member_id);
    assert!(restarted.skip_assignment);
    assert_eq!(restarted.members.len(), 2);
    assert_eq!(h.state(), Some(GroupState::Stable));
}

#[test]
fn a_restarted_static_member_whose_protocols_change_the_group_protocol_triggers_a_rebalance() {
    let mut h = Harness::new();
    let a = h.join(static_join_request("", "instance-a"));
    h.tick();
    let a = h.joined(&a);
    h.sync_members(&[a]);
    let protocols = vec![protocol("roundrobin", &["orders"]), protocol("range", &["orders"])];
    let restarted = h.join(JoinRequest { protocols, ..static_join_request("", "instance-a") });
    let restarted = h.joined(&restarted);
    assert_eq!(restarted.generation_id, 2);
    assert_eq!(restarted.protocol_name.as_deref(), Some("roundrobin"));
}

#[test]
fn a_static_member_rejoining_while_the_leader_assigns_starts_the_rebalance_over() {
    let mut h = Harness::new();
    let a = h.join(static_join_request("", "instance-a"));
    let b = h.join(static_join_request("", "instance-b"));
    h.tick();
    let (a, _) = (h.joined(&a), h.joined(&b));
    assert_eq!(h.state(), Some(GroupState::CompletingRebalance));
    h.auto_store = false;
    let leader_sync = h.sync(static_sync(1, &a.member_id, "instance-a"));
    let restarted = h.join(static_join_request("", "instance-b"));
    assert_code(h.synced(&leader_sync).error_code, REBALANCE_IN_PROGRESS);
    assert!(h.join_answer(&restarted).is_none());
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
}

#[test]
fn the_old_instances_parked_join_is_fenced_when_the_new_one_arrives() {
    let mut h = Harness::new();
    let (a, b) = stable_static_group(&mut h);
    let old_join = h.join(static_join_request(&a.member_id, "instance-a"));
    assert!(h.join_answer(&old_join).is_none(), "the leader's rejoin waits for instance-b");
    let new_join = h.join(static_join_request("", "instance-a"));
    assert_code(h.joined(&old_join).error_code, FENCED_INSTANCE_ID);
    h.join(static_join_request(&b.member_id, "instance-b"));
    let new_join = h.joined(&new_join);
    assert_eq!(new_join.generation_id, 2);
    assert_eq!(new_join.leader, new_join.member_id, "the leader's place moved to the new member id");
}

#[test]
fn static_members_that_do_not_rejoin_keep_their_place_in_the_next_generation() {
    let mut h = Harness::new();
    let leader = h.join(join_request("", "dynamic"));
    let member = h.join(static_join_request("", "instance-a"));
    h.tick();
    let joined = vec![h.joined(&leader), h.joined(&member)];
    h.sync_members(&joined);
    let (leader, member) = (&joined[0], &joined[1]);

    let rejoin = h.join(join_request(&leader.member_id, "dynamic"));
    for _ in 0..6 {
        h.advance(i64::from(REBALANCE_TIMEOUT_MS) / 6);
        h.coordinator.heartbeat(GROUP, 1, &member.member_id, Some("instance-a"), h.now_ms);
    }
    let rejoin = h.joined(&rejoin);
    assert_eq!(rejoin.generation_id, 2);
    assert_eq!(rejoin.members.len(), 2, "the static member was not dropped at the rebalance timeout");
    // It learns about the generation from its heartbeat and rejoins.
    let heartbeat = h.coordinator.heartbeat(GROUP, 1, &member.member_id, Some("instance-a"), h.now_ms);
    assert_code(heartbeat, ILLEGAL_GENERATION);
    let again = h.join(static_join_request(&member.member_id, "instance-a"));
    assert_eq!(h.joined(&again).generation_id, 2);
}

#[test]
fn a_static_member_is_removed_when_its_session_expires() {
    let mut h = Harness::new();
    let (a, b) = stable_static_group(&mut h);
    h.advance(i64::from(SESSION_TIMEOUT_MS) / 2);
    h.coordinator.heartbeat(GROUP, 1, &a.member_id, Some("instance-a"), h.now_ms);
    h.advance(i64::from(SESSION_TIMEOUT_MS) / 2);
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
    let members: Vec<String> = h.describe().members.into_iter().map(|m| m.member_id).collect();
    assert_eq!(members, vec![a.member_id.clone()]);
    // The instance id is free again: the next join is a new member.
    let heartbeat = h.coordinator.heartbeat(GROUP, 1, &b.member_id, Some("instance-b"), h.now_ms);
    assert_code(heartbeat, UNKNOWN_MEMBER_ID);
}

#[test]
fn a_failed_store_of_a_static_replacement_restores_the_old_member_id() {
    let mut h = Harness::new();
    let (_, b) = stable_static_group(&mut h);
    h.auto_store = false;
    let restarted = h.join(static_join_request("", "instance-b"));
    assert!(h.join_answer(&restarted).is_none(), "answered once the replacement is durable");
    h.release_stores(KAFKA_STORAGE_ERROR);
    let restarted = h.joined(&restarted);
    assert_code(restarted.error_code, NOT_COORDINATOR);
    assert_eq!(restarted.member_id, "");
    let heartbeat = h.coordinator.heartbeat(GROUP, 1, &b.member_id, Some("instance-b"), h.now_ms);
    assert_code(heartbeat, NONE);
    assert_eq!(h.state(), Some(GroupState::Stable));
}

#[test]
fn an_administrator_removes_a_static_member_by_instance_id() {
    let mut h = Harness::new();
    let (a, _) = stable_static_group(&mut h);
    let members = [
        LeaveMember { member_id: String::new(), group_instance_id: Some("instance-b".into()) },
        LeaveMember { member_id: String::new(), group_instance_id: Some("instance-z".into()) },
    ];
    let left = h.coordinator.leave(GROUP, &members, h.now_ms);
    h.deliver(left.completions);
    let codes: Vec<i16> = left.response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![NONE, UNKNOWN_MEMBER_ID]);
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
    let rejoin = h.join(static_join_request(&a.member_id, "instance-a"));
    assert_eq!(h.joined(&rejoin).members.len(), 1);
}
