//! Joining, syncing, heartbeating and leaving: the rebalance protocol.

use super::super::error_code::*;
use super::*;

#[test]
fn three_members_join_one_generation_with_one_leader_and_each_syncs_its_assignment() {
    let mut h = Harness::new();
    let joined = h.join_new_members(&["a", "b", "c"]);

    let generations: Vec<i32> = joined.iter().map(|j| j.generation_id).collect();
    assert_eq!(generations, vec![1, 1, 1]);
    assert!(joined.iter().all(|j| j.error_code == NONE));
    let leaders: Vec<&str> = joined.iter().map(|j| j.leader.as_str()).collect();
    assert!(leaders.iter().all(|l| *l == joined[0].member_id), "the first member to join leads: {leaders:?}");
    assert!(joined.iter().all(|j| j.protocol_name.as_deref() == Some("range")));
    assert!(joined[0].member_id.starts_with("a-") && joined[1].member_id.starts_with("b-"));
    assert_eq!(h.state(), Some(GroupState::CompletingRebalance));

    let synced = h.sync_members(&joined);
    let assignments: Vec<&[u8]> = synced.iter().map(|s| s.assignment.as_ref()).collect();
    assert_eq!(assignments, vec![b"p-0".as_ref(), b"p-1", b"p-2"]);
    assert!(synced.iter().all(|s| s.error_code == NONE && s.protocol_name.as_deref() == Some("range")));
    assert_eq!(h.state(), Some(GroupState::Stable));
}

#[test]
fn only_the_leader_is_told_the_members_and_their_metadata() {
    let mut h = Harness::new();
    let joined = h.join_new_members(&["a", "b"]);
    let leader = &joined[0];
    let mut listed: Vec<&str> = leader.members.iter().map(|m| m.member_id.as_str()).collect();
    listed.sort();
    let mut expected = vec![joined[0].member_id.as_str(), joined[1].member_id.as_str()];
    expected.sort();
    assert_eq!(listed, expected);
    assert!(leader.members.iter().all(|m| m.metadata == subscription(&["orders"])));
    assert!(joined[1].members.is_empty(), "followers get an empty member list");
}

#[test]
fn the_initial_delay_gathers_members_joining_together_into_one_generation() {
    let mut h = Harness::with_config(GroupConfig { group_initial_rebalance_delay_ms: 3_000, ..test_config() });
    let first = h.join(join_request("", "a"));
    h.advance(1_000);
    let second = h.join(join_request("", "b"));
    h.advance(1_999);
    assert!(h.join_answer(&first).is_none(), "still inside the initial delay");
    h.advance(1); // the first delay ends; a member arrived meanwhile, so it waits once more
    assert!(h.join_answer(&first).is_none());
    h.advance(3_000);
    let (first, second) = (h.joined(&first), h.joined(&second));
    assert_eq!((first.generation_id, second.generation_id), (1, 1));
    assert_eq!(first.members.len(), 2);
}

#[test]
fn a_member_that_leaves_triggers_a_rebalance_and_the_others_rejoin_with_the_next_generation() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b", "c"]);
    let (a, b, c) = (&joined[0], &joined[1], &joined[2]);

    let left = h.leave(&c.member_id);
    assert_code(left.error_code, NONE);
    assert_code(left.members[0].error_code, NONE);
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
    assert_code(h.heartbeat(1, &a.member_id), REBALANCE_IN_PROGRESS);

    let a_again = h.join(join_request(&a.member_id, "a"));
    assert!(h.join_answer(&a_again).is_none(), "waits for b");
    let b_again = h.join(join_request(&b.member_id, "b"));
    let (a_again, b_again) = (h.joined(&a_again), h.joined(&b_again));
    assert_eq!((a_again.generation_id, b_again.generation_id), (2, 2));
    assert_eq!(a_again.leader, a.member_id, "the leader kept its place");
    assert_eq!(a_again.members.len(), 2);
    assert_eq!(h.state(), Some(GroupState::CompletingRebalance));
}

#[test]
fn the_last_member_leaving_makes_the_group_empty_and_records_it() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    let records_before = h.log.len();
    h.leave(&joined[0].member_id);
    assert_eq!(h.state(), Some(GroupState::Empty));
    let description = h.describe();
    assert_eq!(description.generation_id, 2, "becoming Empty is a generation of its own");
    assert!(description.members.is_empty());
    assert_eq!(h.log.len(), records_before + 1);
    let stored = record::decode_group_metadata_value(h.log.last().unwrap().value.as_ref().unwrap()).unwrap();
    assert_eq!((stored.generation_id, stored.members.len(), stored.protocol_name), (2, 0, None));
}

#[test]
fn a_member_that_stops_heartbeating_is_expired_and_the_group_rebalances() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    let (a, b) = (&joined[0], &joined[1]);
    h.advance(i64::from(SESSION_TIMEOUT_MS) / 2);
    assert_code(h.heartbeat(1, &a.member_id), NONE);
    h.advance(i64::from(SESSION_TIMEOUT_MS) / 2);
    // b has been silent for a whole session timeout.
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
    assert_code(h.heartbeat(1, &a.member_id), REBALANCE_IN_PROGRESS);
    assert_code(h.heartbeat(1, &b.member_id), UNKNOWN_MEMBER_ID);
    let a_again = h.join(join_request(&a.member_id, "a"));
    let a_again = h.joined(&a_again);
    assert_eq!((a_again.generation_id, a_again.members.len()), (2, 1));
}

#[test]
fn a_session_expires_exactly_at_its_timeout() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    assert_eq!(h.coordinator.next_deadline_ms(), Some(h.now_ms + i64::from(SESSION_TIMEOUT_MS)));
    h.advance(i64::from(SESSION_TIMEOUT_MS) - 1);
    assert_code(h.heartbeat(1, &joined[0].member_id), NONE);
    h.advance(i64::from(SESSION_TIMEOUT_MS) - 1);
    assert_eq!(h.state(), Some(GroupState::Stable));
    h.advance(1);
    assert_eq!(h.state(), Some(GroupState::Empty), "the only member expired; nobody rejoins");
}

#[test]
fn the_rebalance_timeout_evicts_members_that_did_not_rejoin() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b", "c"]);
    let (a, b, c) = (&joined[0], &joined[1], &joined[2]);
    // a (the leader) rejoins: a rebalance starts and waits for b and c.
    let a_again = h.join(join_request(&a.member_id, "a"));
    let b_again = h.join(join_request(&b.member_id, "b"));
    // c keeps heartbeating but never rejoins.
    for _ in 0..5 {
        h.advance(i64::from(REBALANCE_TIMEOUT_MS) / 6);
        assert_code(h.heartbeat(1, &c.member_id), REBALANCE_IN_PROGRESS);
    }
    assert!(h.join_answer(&a_again).is_none());
    h.advance(i64::from(REBALANCE_TIMEOUT_MS) / 6);
    let (a_again, b_again) = (h.joined(&a_again), h.joined(&b_again));
    assert_eq!((a_again.generation_id, b_again.generation_id), (2, 2));
    assert_eq!(a_again.members.len(), 2, "c was left out");
    assert_code(h.heartbeat(2, &c.member_id), UNKNOWN_MEMBER_ID);
}

#[test]
fn a_v4_member_is_given_its_id_with_member_id_required_then_joins_with_it() {
    let mut h = Harness::new();
    let first = h.join(JoinRequest { require_known_member_id: true, ..join_request("", "rdkafka") });
    let first = h.joined(&first);
    assert_code(first.error_code, MEMBER_ID_REQUIRED);
    assert!(first.member_id.starts_with("rdkafka-"));
    assert_eq!(first.generation_id, -1);
    assert_eq!(h.state(), Some(GroupState::Empty), "a pending member is not a member yet");

    let second = h.join(JoinRequest { require_known_member_id: true, ..join_request(&first.member_id, "rdkafka") });
    h.tick();
    let second = h.joined(&second);
    assert_code(second.error_code, NONE);
    assert_eq!((second.member_id, second.generation_id), (first.member_id.clone(), 1));
    assert_eq!(second.leader, first.member_id);
}

#[test]
fn the_join_phase_waits_for_a_member_told_member_id_required() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    let pending = h.join(JoinRequest { require_known_member_id: true, ..join_request("", "b") });
    let pending_id = h.joined(&pending).member_id;
    // The leader rejoins: every member has, but the pending one is expected.
    let a_again = h.join(join_request(&joined[0].member_id, "a"));
    assert!(h.join_answer(&a_again).is_none());
    let b = h.join(join_request(&pending_id, "b"));
    let (a_again, b) = (h.joined(&a_again), h.joined(&b));
    assert_eq!((a_again.generation_id, b.generation_id), (2, 2));
    assert_eq!(a_again.members.len(), 2);
}

#[test]
fn a_member_told_member_id_required_that_never_returns_expires_after_its_session_timeout() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    let pending = h.join(JoinRequest { require_known_member_id: true, ..join_request("", "b") });
    let pending_id = h.joined(&pending).member_id;
    let a_again = h.join(join_request(&joined[0].member_id, "a"));
    h.advance(i64::from(SESSION_TIMEOUT_MS));
    let a_again = h.joined(&a_again);
    assert_eq!((a_again.generation_id, a_again.members.len()), (2, 1));
    let late = h.join(join_request(&pending_id, "b"));
    assert_code(h.joined(&late).error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn a_stale_generation_gets_illegal_generation() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    let b = &joined[1];
    assert_code(h.heartbeat(0, &b.member_id), ILLEGAL_GENERATION);
    assert_code(h.heartbeat(2, &b.member_id), ILLEGAL_GENERATION);
    let sync = h.sync(sync_request(7, &b.member_id, &[]));
    assert_code(h.synced(&sync).error_code, ILLEGAL_GENERATION);
    let request = OffsetCommitRequest {
        group_id: GROUP.to_owned(),
        generation_id: 0,
        member_id: b.member_id.clone(),
        group_instance_id: None,
        partitions: vec![],
    };
    assert_code(h.coordinator.validate_commit(GROUP, 0, &b.member_id, None, h.now_ms), ILLEGAL_GENERATION);
    assert!(h.coordinator.commit(&request, h.now_ms).records.is_empty());
}

#[test]
fn an_unknown_member_gets_unknown_member_id() {
    let mut h = Harness::new();
    h.stable_group(&["a"]);
    assert_code(h.heartbeat(1, "ghost"), UNKNOWN_MEMBER_ID);
    let sync = h.sync(sync_request(1, "ghost", &[]));
    assert_code(h.synced(&sync).error_code, UNKNOWN_MEMBER_ID);
    let join = h.join(join_request("ghost", "ghost"));
    let join = h.joined(&join);
    assert_code(join.error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(join.member_id, "ghost");
    assert_code(h.leave("ghost").members[0].error_code, UNKNOWN_MEMBER_ID);
    // In a group that does not exist, a known-looking member id is not
    // enough to create it.
    let join = h.join(JoinRequest { group_id: "nope".to_owned(), ..join_request("ghost", "ghost") });
    assert_code(h.joined(&join).error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(h.coordinator.group_state("nope"), None);
    assert_code(h.coordinator.heartbeat("nope", 1, "ghost", None, h.now_ms), UNKNOWN_MEMBER_ID);
    let left = h.coordinator.leave("nope", &[LeaveMember { member_id: "ghost".into(), group_instance_id: None }], 0);
    assert_code(left.response.members[0].error_code, UNKNOWN_MEMBER_ID);
}

#[test]
fn heartbeats_during_a_rebalance_say_rejoin_until_the_join_phase_ends() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    let (a, b) = (&joined[0], &joined[1]);
    h.join(join_request(&a.member_id, "a"));
    assert_code(h.heartbeat(1, &b.member_id), REBALANCE_IN_PROGRESS);
    h.join(join_request(&b.member_id, "b"));
    assert_eq!(h.state(), Some(GroupState::CompletingRebalance));
    // Kafka answers NONE in CompletingRebalance: the member already has
    // the new generation and is about to sync.
    assert_code(h.heartbeat(2, &b.member_id), NONE);
    assert_code(h.heartbeat(1, &b.member_id), ILLEGAL_GENERATION);
}

#[test]
fn a_sync_while_members_rejoin_gets_rebalance_in_progress() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    h.join(join_request(&joined[0].member_id, "a"));
    let sync = h.sync(sync_request(1, &joined[1].member_id, &[]));
    assert_code(h.synced(&sync).error_code, REBALANCE_IN_PROGRESS);
}

#[test]
fn a_rebalance_cancels_parked_syncs_with_rebalance_in_progress() {
    let mut h = Harness::new();
    let joined = h.join_new_members(&["a", "b"]);
    let follower_sync = h.sync(sync_request(1, &joined[1].member_id, &[]));
    assert!(h.sync_answer(&follower_sync).is_none());
    h.join(join_request("", "c"));
    assert_code(h.synced(&follower_sync).error_code, REBALANCE_IN_PROGRESS);
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
}

#[test]
fn a_sync_naming_another_protocol_gets_inconsistent_group_protocol() {
    let mut h = Harness::new();
    let joined = h.join_new_members(&["a"]);
    let request =
        SyncRequest { protocol_name: Some("roundrobin".into()), ..sync_request(1, &joined[0].member_id, &[]) };
    let sync = h.sync(request);
    assert_code(h.synced(&sync).error_code, INCONSISTENT_GROUP_PROTOCOL);
    let request = SyncRequest { protocol_type: Some("connect".into()), ..sync_request(1, &joined[0].member_id, &[]) };
    let sync = h.sync(request);
    assert_code(h.synced(&sync).error_code, INCONSISTENT_GROUP_PROTOCOL);
    // Before v5 the fields are absent and not checked.
    let request =
        SyncRequest { protocol_type: None, protocol_name: None, ..sync_request(1, &joined[0].member_id, &[]) };
    let sync = h.sync(request);
    assert_code(h.synced(&sync).error_code, NONE);
}

#[test]
fn a_join_with_another_protocol_type_or_no_common_protocol_is_inconsistent() {
    let mut h = Harness::new();
    h.stable_group(&["a"]);
    let join = h.join(JoinRequest { protocol_type: "connect".into(), ..join_request("", "b") });
    assert_code(h.joined(&join).error_code, INCONSISTENT_GROUP_PROTOCOL);
    let join = h.join(JoinRequest { protocols: vec![protocol("roundrobin", &["orders"])], ..join_request("", "b") });
    assert_code(h.joined(&join).error_code, INCONSISTENT_GROUP_PROTOCOL);
    let mut empty = Harness::new();
    let join = empty.join(JoinRequest { protocols: vec![], ..join_request("", "b") });
    assert_code(empty.joined(&join).error_code, INCONSISTENT_GROUP_PROTOCOL);
    let join = empty.join(JoinRequest { protocol_type: String::new(), ..join_request("", "b") });
    assert_code(empty.joined(&join).error_code, INCONSISTENT_GROUP_PROTOCOL);
}

#[test]
fn the_protocol_most_members_prefer_among_those_all_support_is_chosen() {
    let mut h = Harness::new();
    let both = vec![protocol("cooperative-sticky", &["orders"]), protocol("range", &["orders"])];
    let range_first = vec![protocol("range", &["orders"]), protocol("cooperative-sticky", &["orders"])];
    let a = h.join(JoinRequest { protocols: both.clone(), ..join_request("", "a") });
    let b = h.join(JoinRequest { protocols: range_first.clone(), ..join_request("", "b") });
    let c = h.join(JoinRequest { protocols: range_first, ..join_request("", "c") });
    h.tick();
    for answer in [a, b, c] {
        assert_eq!(h.joined(&answer).protocol_name.as_deref(), Some("range"));
    }
}

#[test]
fn an_invalid_session_timeout_or_group_id_is_refused() {
    let mut h = Harness::new();
    let join = h.join(JoinRequest { session_timeout_ms: 999, ..join_request("", "a") });
    assert_code(h.joined(&join).error_code, INVALID_SESSION_TIMEOUT);
    let join = h.join(JoinRequest { session_timeout_ms: 600_001, ..join_request("", "a") });
    assert_code(h.joined(&join).error_code, INVALID_SESSION_TIMEOUT);
    let join = h.join(JoinRequest { group_id: String::new(), ..join_request("", "a") });
    assert_code(h.joined(&join).error_code, INVALID_GROUP_ID);
    assert_code(h.coordinator.heartbeat("", 1, "a", None, 0), INVALID_GROUP_ID);
    assert_eq!(h.coordinator.group_count(), 0);
    let defaults = GroupConfig::default();
    assert_eq!((defaults.group_min_session_timeout_ms, defaults.group_max_session_timeout_ms), (6_000, 1_800_000));
}

#[test]
fn the_leaders_sync_is_answered_only_once_the_group_record_is_stored() {
    let mut h = Harness::new();
    h.auto_store = false;
    let joined = h.join_new_members(&["a", "b"]);
    let (a, b) = (&joined[0], &joined[1]);
    let follower = h.sync(sync_request(1, &b.member_id, &[]));
    let leader = h.sync(sync_request(1, &a.member_id, &[(&a.member_id, "p-0"), (&b.member_id, "p-1")]));
    assert!(h.sync_answer(&leader).is_none() && h.sync_answer(&follower).is_none());
    assert_eq!(h.state(), Some(GroupState::CompletingRebalance));
    assert_eq!(h.held_stores.len(), 1);
    let stored = record::decode_group_metadata_value(h.log.last().unwrap().value.as_ref().unwrap()).unwrap();
    assert_eq!(stored.members.iter().map(|m| m.assignment.as_ref()).collect::<Vec<_>>(), vec![b"p-0", b"p-1"]);

    h.release_stores(NONE);
    assert_eq!(h.synced(&leader).assignment, Bytes::from_static(b"p-0"));
    assert_eq!(h.synced(&follower).assignment, Bytes::from_static(b"p-1"));
    assert_eq!(h.state(), Some(GroupState::Stable));
}

#[test]
fn a_failed_group_store_answers_the_error_and_rebalances() {
    let mut h = Harness::new();
    h.auto_store = false;
    let joined = h.join_new_members(&["a", "b"]);
    let (a, b) = (&joined[0], &joined[1]);
    let follower = h.sync(sync_request(1, &b.member_id, &[]));
    let leader = h.sync(sync_request(1, &a.member_id, &[(&b.member_id, "p-1")]));
    h.release_stores(NOT_LEADER_OR_FOLLOWER);
    assert_code(h.synced(&leader).error_code, NOT_COORDINATOR);
    assert_code(h.synced(&follower).error_code, NOT_COORDINATOR);
    assert!(h.synced(&follower).assignment.is_empty());
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
}

#[test]
fn members_the_leader_leaves_out_get_an_empty_assignment() {
    let mut h = Harness::new();
    let joined = h.join_new_members(&["a", "b"]);
    let (a, b) = (&joined[0], &joined[1]);
    let follower = h.sync(sync_request(1, &b.member_id, &[]));
    let leader = h.sync(sync_request(1, &a.member_id, &[(&a.member_id, "all"), ("stranger", "x")]));
    assert_eq!(h.synced(&leader).assignment, Bytes::from_static(b"all"));
    let follower = h.synced(&follower);
    assert_code(follower.error_code, NONE);
    assert!(follower.assignment.is_empty());
}

#[test]
fn a_stable_group_answers_sync_at_once_with_the_stored_assignment() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    let again = h.sync(sync_request(1, &joined[1].member_id, &[]));
    assert!(matches!(again, Answer::Now(_)));
    assert_eq!(h.synced(&again).assignment, Bytes::from_static(b"p-1"));
}

#[test]
fn a_follower_rejoining_with_the_same_metadata_gets_the_current_generation_without_a_rebalance() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    let again = h.join(join_request(&joined[1].member_id, "b"));
    let again = h.joined(&again);
    assert_code(again.error_code, NONE);
    assert_eq!((again.generation_id, again.leader.as_str()), (1, joined[0].member_id.as_str()));
    assert_eq!(h.state(), Some(GroupState::Stable));
    // With new metadata it is a rebalance.
    let changed = JoinRequest {
        protocols: vec![protocol("range", &["orders", "refunds"])],
        ..join_request(&joined[1].member_id, "b")
    };
    let changed = h.join(changed);
    assert!(h.join_answer(&changed).is_none());
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance));
}

#[test]
fn the_leader_rejoining_a_stable_group_starts_a_rebalance() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    let again = h.join(join_request(&joined[0].member_id, "a"));
    // Alone in the group, it completes the rebalance itself.
    let again = h.joined(&again);
    assert_eq!((again.generation_id, again.members.len()), (2, 1));
    assert_eq!(h.state(), Some(GroupState::CompletingRebalance));
}

#[test]
fn a_member_that_never_syncs_is_removed_after_the_rebalance_timeout() {
    let mut h = Harness::new();
    let joined = h.join_new_members(&["a", "b"]);
    let (a, b) = (&joined[0], &joined[1]);
    let leader = h.sync(sync_request(1, &a.member_id, &[(&a.member_id, "p-0"), (&b.member_id, "p-1")]));
    assert_eq!(h.synced(&leader).assignment, Bytes::from_static(b"p-0"));
    assert_eq!(h.state(), Some(GroupState::Stable));
    for _ in 0..6 {
        h.advance(i64::from(REBALANCE_TIMEOUT_MS) / 6);
        h.heartbeat(1, &a.member_id);
        h.heartbeat(1, &b.member_id);
    }
    assert_eq!(h.state(), Some(GroupState::PreparingRebalance), "b never sent SyncGroup");
    assert_code(h.heartbeat(1, &b.member_id), UNKNOWN_MEMBER_ID);
}

#[test]
fn a_new_member_whose_join_waits_too_long_is_dropped() {
    let mut h = Harness::with_config(GroupConfig { new_member_join_timeout_ms: 60_000, ..test_config() });
    let long_rebalance = JoinRequest { rebalance_timeout_ms: 600_000, ..join_request("", "a") };
    let a = h.join(long_rebalance);
    h.tick();
    let a = h.joined(&a);
    h.sync(sync_request(1, &a.member_id, &[]));
    // b joins; a keeps heartbeating but does not rejoin for a long time.
    let b = h.join(join_request("", "b"));
    for _ in 0..12 {
        h.advance(5_000);
        assert_code(h.heartbeat(1, &a.member_id), REBALANCE_IN_PROGRESS);
    }
    let b = h.joined(&b);
    assert_code(b.error_code, UNKNOWN_MEMBER_ID);
    assert_eq!(b.member_id, "");
}

#[test]
fn group_max_size_turns_away_members_beyond_it() {
    let mut h = Harness::with_config(GroupConfig { group_max_size: 2, ..test_config() });
    h.stable_group(&["a", "b"]);
    let c = h.join(join_request("", "c"));
    let c = h.joined(&c);
    assert_code(c.error_code, GROUP_MAX_SIZE_REACHED);
    assert_eq!(h.state(), Some(GroupState::Stable));
}

#[test]
fn a_retried_join_answers_the_request_it_replaces() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    let first = h.join(join_request(&joined[0].member_id, "a"));
    let retry = h.join(join_request(&joined[0].member_id, "a"));
    assert_code(h.joined(&first).error_code, REBALANCE_IN_PROGRESS);
    assert!(h.join_answer(&retry).is_none());
    h.join(join_request(&joined[1].member_id, "b"));
    assert_eq!(h.joined(&retry).generation_id, 2);
}

#[test]
fn leave_group_v3_removes_several_members_at_once() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b", "c"]);
    let members: Vec<LeaveMember> = joined[1..]
        .iter()
        .map(|j| LeaveMember { member_id: j.member_id.clone(), group_instance_id: None })
        .chain([LeaveMember { member_id: "ghost".into(), group_instance_id: None }])
        .collect();
    let left = h.coordinator.leave(GROUP, &members, h.now_ms);
    h.deliver(left.completions);
    let codes: Vec<i16> = left.response.members.iter().map(|m| m.error_code).collect();
    assert_eq!(codes, vec![NONE, NONE, UNKNOWN_MEMBER_ID]);
    assert_eq!(h.describe().members.len(), 1);
}

#[test]
fn next_deadline_is_the_earliest_timer_of_any_group() {
    let mut h = Harness::new();
    assert_eq!(h.coordinator.next_deadline_ms(), None);
    let start = h.now_ms;
    h.join(join_request("", "a"));
    assert_eq!(h.coordinator.next_deadline_ms(), Some(start), "the initial delay of 0 is due now");
    h.tick();
    // Joined: the member's session and the wait for its SyncGroup.
    assert_eq!(h.coordinator.next_deadline_ms(), Some(start + i64::from(SESSION_TIMEOUT_MS)));
    h.advance(5_000);
    let other = JoinRequest { group_id: "other".into(), session_timeout_ms: 2_000, ..join_request("", "x") };
    h.join(other);
    h.tick();
    assert_eq!(h.coordinator.next_deadline_ms(), Some(h.now_ms + 2_000));
}
