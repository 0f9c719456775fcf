//! Committed offsets, retention, and the group admin APIs.

use super::super::error_code::*;
use super::super::record::{decode_key, RecordKey};
use super::*;

const RETENTION_MS: i64 = 7 * 24 * 60 * 60 * 1000;

fn commit_request(generation_id: i32, member_id: &str, partitions: &[(&str, i32, i64)]) -> OffsetCommitRequest {
    OffsetCommitRequest {
        group_id: GROUP.to_owned(),
        generation_id,
        member_id: member_id.to_owned(),
        group_instance_id: None,
        partitions: partitions
            .iter()
            .map(|(topic, partition, offset)| OffsetCommitPartition {
                topic: (*topic).to_owned(),
                partition: *partition,
                offset: *offset,
                leader_epoch: 5,
                metadata: Some("m".to_owned()),
            })
            .collect(),
    }
}

/// Commits as the broker does: validate, append, apply. The codes per partition.
fn commit(h: &mut Harness, generation_id: i32, member_id: &str, partitions: &[(&str, i32, i64)]) -> Vec<i16> {
    let outcome = h.coordinator.commit(&commit_request(generation_id, member_id, partitions), h.now_ms);
    assert_eq!(outcome.records.len(), outcome.accepted.len());
    h.log.extend(outcome.records.iter().cloned());
    h.coordinator.complete_commit(&outcome, h.now_ms);
    outcome.partitions.iter().map(|p| p.error_code).collect()
}

fn committed(h: &Harness, topic: &str, partition: i32) -> i64 {
    h.coordinator.fetch_offsets(GROUP, Some(&[TopicPartition::new(topic, partition)]))[0].offset
}

/// The (group, topic, partition) of each offset tombstone and the group of
/// each group tombstone in `records`.
fn tombstones(records: &[Record]) -> Vec<String> {
    records
        .iter()
        .map(|r| {
            assert!(r.value.is_none(), "only tombstones");
            match decode_key(&r.key).unwrap() {
                RecordKey::OffsetCommit { topic, partition, .. } => format!("{topic}-{partition}"),
                RecordKey::GroupMetadata { group_id } => format!("group {group_id}"),
            }
        })
        .collect()
}

#[test]
fn a_consumer_without_a_group_commits_with_generation_minus_one_and_fetches_it_back() {
    let mut h = Harness::new();
    assert_eq!(commit(&mut h, -1, "", &[("orders", 0, 42), ("orders", 1, 7)]), vec![NONE, NONE]);
    let fetched = h.coordinator.fetch_offsets(GROUP, Some(&[TopicPartition::new("orders", 0)]));
    assert_eq!(
        fetched[0],
        OffsetFetchPartition {
            topic: "orders".into(),
            partition: 0,
            offset: 42,
            leader_epoch: 5,
            metadata: "m".into(),
            error_code: NONE
        }
    );
    let unknown = h.coordinator.fetch_offsets(GROUP, Some(&[TopicPartition::new("orders", 9)]));
    assert_eq!((unknown[0].offset, unknown[0].leader_epoch, unknown[0].error_code), (-1, -1, NONE));
    let all: Vec<i64> = h.coordinator.fetch_offsets(GROUP, None).iter().map(|p| p.offset).collect();
    assert_eq!(all, vec![42, 7]);
    let listed = h.coordinator.list_groups();
    assert_eq!(listed, vec![GroupListing { group_id: GROUP.into(), protocol_type: String::new(), state: "Empty" }]);
    assert!(h.coordinator.fetch_offsets("never-seen", None).is_empty());
}

#[test]
fn a_simple_commit_to_a_group_with_members_is_refused() {
    let mut h = Harness::new();
    h.stable_group(&["a"]);
    assert_eq!(commit(&mut h, -1, "", &[("orders", 0, 1)]), vec![UNKNOWN_MEMBER_ID]);
    assert_eq!(committed(&h, "orders", 0), -1);
}

#[test]
fn members_commit_with_their_member_id_and_generation() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    let (a, b) = (&joined[0].member_id, &joined[1].member_id);
    assert_eq!(commit(&mut h, 1, a, &[("orders", 0, 10)]), vec![NONE]);
    assert_eq!(commit(&mut h, 1, b, &[("orders", 1, 11)]), vec![NONE]);
    assert_eq!(commit(&mut h, 0, b, &[("orders", 1, 99)]), vec![ILLEGAL_GENERATION]);
    assert_eq!(commit(&mut h, 1, "ghost", &[("orders", 1, 99)]), vec![UNKNOWN_MEMBER_ID]);
    assert_eq!((committed(&h, "orders", 0), committed(&h, "orders", 1)), (10, 11));
}

#[test]
fn a_commit_while_the_leader_assigns_gets_rebalance_in_progress() {
    let mut h = Harness::new();
    let joined = h.join_new_members(&["a", "b"]);
    assert_eq!(commit(&mut h, 1, &joined[1].member_id, &[("orders", 0, 1)]), vec![REBALANCE_IN_PROGRESS]);
}

#[test]
fn a_commit_while_members_rejoin_is_accepted_and_keeps_the_member_alive() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    h.join(join_request(&joined[0].member_id, "a"));
    h.advance(9_000);
    assert_eq!(commit(&mut h, 1, &joined[1].member_id, &[("orders", 0, 5)]), vec![NONE]);
    h.advance(2_000);
    assert_code(h.heartbeat(1, &joined[1].member_id), REBALANCE_IN_PROGRESS);
}

#[test]
fn a_commit_with_a_generation_to_an_unknown_group_gets_illegal_generation() {
    let mut h = Harness::new();
    assert_eq!(commit(&mut h, 3, "someone", &[("orders", 0, 1)]), vec![ILLEGAL_GENERATION]);
    assert_eq!(h.state(), None, "the group is not created");
}

#[test]
fn a_refused_commit_to_an_unknown_group_leaves_no_group_behind() {
    let mut h = Harness::new();
    assert_eq!(commit(&mut h, -1, "someone", &[("orders", 0, 1)]), vec![UNKNOWN_MEMBER_ID]);
    let mut request = commit_request(-1, "", &[("orders", 0, 1)]);
    request.group_instance_id = Some("instance".into());
    assert_eq!(h.coordinator.commit(&request, h.now_ms).partitions[0].error_code, UNKNOWN_MEMBER_ID);
    let mut request = commit_request(-1, "", &[("orders", 0, 1)]);
    request.partitions[0].metadata = Some("m".repeat(5000));
    let outcome = h.coordinator.commit(&request, h.now_ms);
    assert_eq!(outcome.partitions[0].error_code, OFFSET_METADATA_TOO_LARGE);
    h.coordinator.complete_commit(&outcome, h.now_ms);
    assert_eq!(h.state(), None, "no group is created");
    assert!(h.coordinator.list_groups().is_empty());
    // A simple commit whose append fails (never completed) creates none either.
    let outcome = h.coordinator.commit(&commit_request(-1, "", &[("orders", 0, 1)]), h.now_ms);
    assert_eq!(outcome.partitions[0].error_code, NONE);
    assert_eq!(h.state(), None);
    h.coordinator.complete_commit(&outcome, h.now_ms);
    assert_eq!(h.state(), Some(GroupState::Empty));
}

#[test]
fn offset_metadata_over_the_limit_is_refused_per_partition() {
    let mut h = Harness::with_config(GroupConfig { offset_metadata_max_bytes: 4, ..test_config() });
    let mut request = commit_request(-1, "", &[("orders", 0, 1), ("orders", 1, 2)]);
    request.partitions[0].metadata = Some("12345".into());
    request.partitions[1].metadata = None;
    let outcome = h.coordinator.commit(&request, h.now_ms);
    let codes: Vec<i16> = outcome.partitions.iter().map(|p| p.error_code).collect();
    assert_eq!(codes, vec![OFFSET_METADATA_TOO_LARGE, NONE]);
    assert_eq!(outcome.records.len(), 1);
    h.coordinator.complete_commit(&outcome, h.now_ms);
    assert_eq!(h.coordinator.fetch_offsets(GROUP, None)[0].metadata, "", "a null metadata is stored as \"\"");
}

#[test]
fn committed_offsets_become_visible_only_once_appended() {
    let mut h = Harness::new();
    let outcome = h.coordinator.commit(&commit_request(-1, "", &[("orders", 0, 42)]), h.now_ms);
    assert_eq!(committed(&h, "orders", 0), -1);
    h.coordinator.complete_commit(&outcome, h.now_ms);
    assert_eq!(committed(&h, "orders", 0), 42);
}

#[test]
fn offset_delete_refuses_the_topics_a_consumer_group_subscribes_to() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    commit(&mut h, 1, &joined[0].member_id, &[("orders", 0, 1), ("refunds", 0, 2)]);
    let partitions = [TopicPartition::new("orders", 0), TopicPartition::new("refunds", 0)];
    let outcome = h.coordinator.delete_offsets(GROUP, &partitions);
    assert_code(outcome.error_code, NONE);
    let codes: Vec<(String, i16)> = outcome.partitions.iter().map(|p| (p.topic.clone(), p.error_code)).collect();
    assert_eq!(codes, vec![("orders".into(), GROUP_SUBSCRIBED_TO_TOPIC), ("refunds".into(), NONE)]);
    assert_eq!(tombstones(&outcome.records), vec!["refunds-0"]);
    assert_eq!((committed(&h, "orders", 0), committed(&h, "refunds", 0)), (1, -1));

    assert_code(h.coordinator.delete_offsets("nope", &partitions).error_code, GROUP_ID_NOT_FOUND);
    assert_code(h.coordinator.delete_offsets("", &partitions).error_code, INVALID_GROUP_ID);
}

#[test]
fn offset_delete_in_a_non_consumer_group_with_members_is_refused() {
    let mut h = Harness::new();
    let join = h.join(JoinRequest { protocol_type: "connect".into(), ..join_request("", "worker") });
    h.tick();
    h.joined(&join);
    let outcome = h.coordinator.delete_offsets(GROUP, &[TopicPartition::new("orders", 0)]);
    assert_code(outcome.error_code, NON_EMPTY_GROUP);
}

#[test]
fn deleting_the_last_offsets_of_an_empty_group_deletes_the_group() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    commit(&mut h, 1, &joined[0].member_id, &[("orders", 0, 1)]);
    h.leave(&joined[0].member_id);
    let outcome = h.coordinator.delete_offsets(GROUP, &[TopicPartition::new("orders", 0)]);
    assert_eq!(tombstones(&outcome.records), vec!["orders-0".to_owned(), format!("group {GROUP}")]);
    assert_eq!(h.state(), None);
}

#[test]
fn the_offsets_of_an_empty_group_expire_one_retention_after_it_became_empty() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    commit(&mut h, 1, &joined[0].member_id, &[("orders", 0, 1), ("orders", 1, 2)]);
    h.advance(60_000);
    h.heartbeat(1, &joined[0].member_id);
    h.leave(&joined[0].member_id);
    let empty_since = h.now_ms;
    assert!(h.coordinator.expire_offsets(empty_since + RETENTION_MS - 1, RETENTION_MS).is_empty());
    assert_eq!(committed(&h, "orders", 0), 1);
    let records = h.coordinator.expire_offsets(empty_since + RETENTION_MS, RETENTION_MS);
    assert_eq!(tombstones(&records), vec!["orders-0".to_owned(), "orders-1".to_owned(), format!("group {GROUP}")]);
    assert_eq!(h.state(), None, "an Empty group without offsets is gone");
}

#[test]
fn offsets_of_a_group_without_members_expire_one_retention_after_their_commit() {
    let mut h = Harness::new();
    let start = h.now_ms;
    commit(&mut h, -1, "", &[("orders", 0, 1)]);
    h.now_ms += 5_000;
    commit(&mut h, -1, "", &[("orders", 1, 2)]);
    let records = h.coordinator.expire_offsets(start + RETENTION_MS, RETENTION_MS);
    assert_eq!(tombstones(&records), vec!["orders-0"]);
    assert_eq!(h.state(), Some(GroupState::Empty));
    let records = h.coordinator.expire_offsets(start + 5_000 + RETENTION_MS, RETENTION_MS);
    assert_eq!(tombstones(&records), vec!["orders-1"], "generation 0: no group record to delete");
    assert_eq!(h.state(), None);
}

#[test]
fn a_stable_consumer_group_expires_only_offsets_of_topics_it_does_not_subscribe_to() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    let start = h.now_ms;
    commit(&mut h, 1, &joined[0].member_id, &[("orders", 0, 1), ("refunds", 0, 2)]);
    let records = h.coordinator.expire_offsets(start + RETENTION_MS, RETENTION_MS);
    assert_eq!(tombstones(&records), vec!["refunds-0"]);
    assert_eq!(committed(&h, "orders", 0), 1);
}

#[test]
fn groups_without_offsets_are_dropped_by_the_next_expiration_pass_once_empty() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    h.leave(&joined[0].member_id);
    assert_eq!(h.state(), Some(GroupState::Empty));
    let records = h.coordinator.expire_offsets(h.now_ms, RETENTION_MS);
    assert_eq!(tombstones(&records), vec![format!("group {GROUP}")]);
    assert_eq!(h.state(), None);
}

#[test]
fn delete_groups_deletes_only_empty_groups_with_their_offsets() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a"]);
    commit(&mut h, 1, &joined[0].member_id, &[("orders", 0, 1)]);
    let outcome = h.coordinator.delete_groups(&[GROUP.to_owned(), "nope".to_owned(), GROUP.to_owned()]);
    assert_eq!(outcome.results, vec![(GROUP.to_owned(), NON_EMPTY_GROUP), ("nope".to_owned(), GROUP_ID_NOT_FOUND)]);
    assert!(outcome.records.is_empty());

    h.leave(&joined[0].member_id);
    let outcome = h.coordinator.delete_groups(&[GROUP.to_owned()]);
    assert_eq!(outcome.results, vec![(GROUP.to_owned(), NONE)]);
    assert_eq!(tombstones(&outcome.records), vec!["orders-0".to_owned(), format!("group {GROUP}")]);
    assert_eq!(h.state(), None);
    assert_eq!(committed(&h, "orders", 0), -1);
    assert_eq!(h.describe().state, "Dead");
}

#[test]
fn describe_shows_metadata_and_assignments_only_for_a_stable_group() {
    let mut h = Harness::new();
    let joined = h.join_new_members(&["a", "b"]);
    let description = h.describe();
    assert_eq!((description.state, description.protocol_type.as_str()), ("CompletingRebalance", "consumer"));
    assert_eq!(description.protocol_name, "", "Kafka names the protocol only when Stable");
    assert!(description.members.iter().all(|m| m.metadata.is_empty() && m.assignment.is_empty()));

    h.sync_members(&joined);
    let description = h.describe();
    assert_eq!((description.state, description.protocol_name.as_str()), ("Stable", "range"));
    let member = &description.members[0];
    assert_eq!((member.client_id.as_str(), member.client_host.as_str()), ("a", "/127.0.0.1"));
    assert_eq!(member.metadata, subscription(&["orders"]));
    assert_eq!(member.assignment, Bytes::from_static(b"p-0"));
    assert_eq!(description.generation_id, 1);

    let unknown = h.coordinator.describe(&["nope".to_owned()]).remove(0);
    assert_eq!((unknown.error_code, unknown.state, unknown.members.len()), (NONE, "Dead", 0));
}

#[test]
fn list_groups_names_every_group_with_its_state() {
    let mut h = Harness::new();
    h.stable_group(&["a"]);
    let outcome = h.coordinator.commit(
        &OffsetCommitRequest { group_id: "offsets-only".into(), ..commit_request(-1, "", &[("t", 0, 1)]) },
        h.now_ms,
    );
    h.coordinator.complete_commit(&outcome, h.now_ms);
    let states: Vec<(String, String, &str)> =
        h.coordinator.list_groups().into_iter().map(|g| (g.group_id, g.protocol_type, g.state)).collect();
    assert_eq!(
        states,
        vec![("offsets-only".into(), String::new(), "Empty"), (GROUP.into(), "consumer".into(), "Stable")]
    );
}
