//! The `__consumer_offsets` records: layout, round trips, damaged input, and
//! rebuilding the coordinator by replaying them.

use super::super::record::*;
use super::*;

fn offset(value: i64) -> OffsetAndMetadata {
    OffsetAndMetadata {
        offset: value,
        leader_epoch: 5,
        metadata: "m".into(),
        commit_timestamp_ms: 1_000,
        expire_timestamp_ms: None,
    }
}

fn group_value() -> GroupMetadataValue {
    GroupMetadataValue {
        protocol_type: "consumer".into(),
        generation_id: 7,
        protocol_name: Some("range".into()),
        leader_id: Some("a-1".into()),
        current_state_timestamp_ms: 123,
        members: vec![
            MemberMetadataValue {
                member_id: "a-1".into(),
                group_instance_id: Some("instance-a".into()),
                client_id: "a".into(),
                client_host: "/10.0.0.1".into(),
                rebalance_timeout_ms: 30_000,
                session_timeout_ms: 10_000,
                subscription: subscription(&["orders"]),
                assignment: Bytes::from_static(b"p-0"),
            },
            MemberMetadataValue {
                member_id: "b-1".into(),
                group_instance_id: None,
                client_id: "b".into(),
                client_host: "/10.0.0.2".into(),
                rebalance_timeout_ms: 30_000,
                session_timeout_ms: 10_000,
                subscription: subscription(&["orders"]),
                assignment: Bytes::new(),
            },
        ],
    }
}

/// Big-endian field writer for hand-made records.
#[derive(Default)]
struct Bytes16(Vec<u8>);

impl Bytes16 {
    fn i16(mut self, v: i16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i32(mut self, v: i32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn i64(mut self, v: i64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn str(mut self, s: &str) -> Self {
        self = self.i16(s.len() as i16);
        self.0.extend_from_slice(s.as_bytes());
        self
    }
    fn bytes(mut self, b: &[u8]) -> Self {
        self = self.i32(b.len() as i32);
        self.0.extend_from_slice(b);
        self
    }
}

#[test]
fn offset_commit_records_have_kafkas_layout() {
    let key = encode_offset_commit_key("g", "t", 3).unwrap();
    assert_eq!(key.as_ref(), Bytes16::default().i16(1).str("g").str("t").i32(3).0.as_slice());
    let value = encode_offset_commit_value(&offset(42)).unwrap();
    let expected = Bytes16::default().i16(3).i64(42).i32(5).str("m").i64(1_000).0;
    assert_eq!(value.as_ref(), expected.as_slice());
    assert_eq!(
        decode_key(&key).unwrap(),
        RecordKey::OffsetCommit { group_id: "g".into(), topic: "t".into(), partition: 3 }
    );
    assert_eq!(decode_offset_commit_value(&value).unwrap(), offset(42));
}

#[test]
fn group_metadata_records_round_trip() {
    let key = encode_group_metadata_key("g").unwrap();
    assert_eq!(key.as_ref(), Bytes16::default().i16(2).str("g").0.as_slice());
    assert_eq!(decode_key(&key).unwrap(), RecordKey::GroupMetadata { group_id: "g".into() });
    let value = encode_group_metadata_value(&group_value()).unwrap();
    assert_eq!(&value[..2], &[0, 3], "value version 3");
    assert_eq!(decode_group_metadata_value(&value).unwrap(), group_value());
    let empty = GroupMetadataValue { protocol_name: None, leader_id: None, members: vec![], ..group_value() };
    assert_eq!(decode_group_metadata_value(&encode_group_metadata_value(&empty).unwrap()).unwrap(), empty);
}

#[test]
fn an_offset_with_an_expire_timestamp_is_written_as_value_version_1() {
    let old = OffsetAndMetadata { leader_epoch: -1, expire_timestamp_ms: Some(9_000), ..offset(42) };
    let value = encode_offset_commit_value(&old).unwrap();
    assert_eq!(value.as_ref(), Bytes16::default().i16(1).i64(42).str("m").i64(1_000).i64(9_000).0.as_slice());
    assert_eq!(decode_offset_commit_value(&value).unwrap(), old);
}

#[test]
fn decoders_read_every_older_value_version() {
    let v0 = Bytes16::default().i16(0).i64(42).str("m").i64(1_000).0;
    let expected = OffsetAndMetadata { leader_epoch: -1, ..offset(42) };
    assert_eq!(decode_offset_commit_value(&v0).unwrap(), expected);
    let v1_without_expiry = Bytes16::default().i16(1).i64(42).str("m").i64(1_000).i64(-1).0;
    assert_eq!(decode_offset_commit_value(&v1_without_expiry).unwrap(), expected);
    let v2 = Bytes16::default().i16(2).i64(42).str("m").i64(1_000).0;
    assert_eq!(decode_offset_commit_value(&v2).unwrap(), expected);
    let v0_key = Bytes16::default().i16(0).str("g").str("t").i32(0).0;
    assert!(matches!(decode_key(&v0_key).unwrap(), RecordKey::OffsetCommit { .. }));

    let member = |b: Bytes16, version: i16| {
        let b = b.str("a-1");
        let b = if version >= 3 { b.i16(-1) } else { b };
        let b = b.str("a").str("/h");
        let b = if version >= 1 { b.i32(30_000) } else { b };
        b.i32(10_000).bytes(b"sub").bytes(b"asg")
    };
    for version in 0..=3 {
        let header = Bytes16::default().i16(version).str("consumer").i32(4).str("range").str("a-1");
        let header = if version >= 2 { header.i64(77) } else { header };
        let value = member(header.i32(1), version).0;
        let decoded = decode_group_metadata_value(&value).unwrap();
        let member = &decoded.members[0];
        assert_eq!((decoded.generation_id, member.session_timeout_ms), (4, 10_000), "v{version}");
        let rebalance_timeout_ms = if version >= 1 { 30_000 } else { 10_000 };
        assert_eq!(member.rebalance_timeout_ms, rebalance_timeout_ms, "v0 uses the session timeout");
        assert_eq!(decoded.current_state_timestamp_ms, if version >= 2 { 77 } else { -1 });
        assert_eq!(member.assignment, Bytes::from_static(b"asg"));
    }
}

#[test]
fn decoders_reject_damaged_records() {
    let key = encode_offset_commit_key("g", "t", 3).unwrap();
    assert_eq!(decode_key(&key[..key.len() - 1]), Err(RecordError::Truncated { field: "partition" }));
    assert_eq!(decode_key(&[]), Err(RecordError::Truncated { field: "key_version" }));
    assert_eq!(decode_key(&Bytes16::default().i16(3).str("g").0), Err(RecordError::UnknownKeyVersion(3)));
    assert_eq!(decode_key(&Bytes16::default().i16(2).i16(-1).0), Err(RecordError::Null { field: "group" }));
    let mut long = key.to_vec();
    long.push(0);
    assert_eq!(decode_key(&long), Err(RecordError::TrailingBytes { record: "key", count: 1 }));
    let bad_utf8 = Bytes16::default().i16(2).i16(2).0.into_iter().chain([0xc3, 0x28]).collect::<Vec<_>>();
    assert_eq!(decode_key(&bad_utf8), Err(RecordError::InvalidUtf8 { field: "group" }));
    assert_eq!(
        decode_key(&Bytes16::default().i16(2).i16(-7).0),
        Err(RecordError::InvalidLength { field: "group", length: -7 })
    );

    let value = encode_offset_commit_value(&offset(1)).unwrap();
    let mut future = value.to_vec();
    future[1] = 4;
    assert_eq!(
        decode_offset_commit_value(&future),
        Err(RecordError::UnknownValueVersion { record: "offset commit", version: 4 })
    );
    assert!(decode_offset_commit_value(&value[..value.len() - 3]).is_err());

    // A member count no input could hold is refused before any allocation.
    let huge = Bytes16::default().i16(3).str("consumer").i32(1).i16(-1).i16(-1).i64(0).i32(i32::MAX).0;
    assert_eq!(decode_group_metadata_value(&huge), Err(RecordError::Truncated { field: "members" }));
    let null_assignment = Bytes16::default()
        .i16(3)
        .str("consumer")
        .i32(1)
        .str("range")
        .str("a")
        .i64(0)
        .i32(1)
        .str("a")
        .i16(-1)
        .str("c")
        .str("h")
        .i32(1)
        .i32(1)
        .bytes(b"")
        .i32(-1)
        .0;
    assert_eq!(decode_group_metadata_value(&null_assignment), Err(RecordError::Null { field: "assignment" }));
}

#[test]
fn encoding_refuses_strings_a_record_cannot_hold() {
    let long = "x".repeat(STRING_BYTES_MAX + 1);
    assert_eq!(
        encode_group_metadata_key(&long),
        Err(RecordError::StringTooLong { field: "group", length: STRING_BYTES_MAX + 1 })
    );
    assert!(encode_group_metadata_key(&long[1..]).is_ok());
}

#[test]
fn random_and_mutated_bytes_never_panic_the_decoders_or_replay() {
    let mut random = Random(0x5eed);
    let mut coordinator = GroupCoordinator::new(test_config(), 1);
    let valid: Vec<Vec<u8>> = vec![
        encode_offset_commit_key("g", "t", 3).unwrap().to_vec(),
        encode_offset_commit_value(&offset(1)).unwrap().to_vec(),
        encode_group_metadata_key("g").unwrap().to_vec(),
        encode_group_metadata_value(&group_value()).unwrap().to_vec(),
        subscription(&["orders", "refunds"]).to_vec(),
    ];
    for round in 0..50_000 {
        let bytes: Vec<u8> = if round % 2 == 0 {
            (0..random.below(80)).map(|_| random.next() as u8).collect()
        } else {
            let mut bytes = valid[random.below(valid.len())].clone();
            for _ in 0..=random.below(3) {
                match random.below(3) {
                    0 if !bytes.is_empty() => {
                        let at = random.below(bytes.len());
                        bytes[at] = random.next() as u8;
                    }
                    1 => bytes.truncate(random.below(bytes.len() + 1)),
                    _ => bytes.push(random.next() as u8),
                }
            }
            bytes
        };
        let _ = decode_key(&bytes);
        let _ = decode_offset_commit_value(&bytes);
        let _ = decode_group_metadata_value(&bytes);
        let _ = super::super::subscription::subscribed_topics(&bytes);
        let key = if random.below(2) == 0 { &valid[0] } else { &valid[2] };
        let _ = coordinator.replay(key, Some(&bytes), 0);
        let _ = coordinator.replay(&bytes, Some(&valid[3]), 0);
    }
}

/// Commits through the two steps, recording the records in the log.
fn commit(h: &mut Harness, group_id: &str, generation_id: i32, member_id: &str, partitions: &[(&str, i32, i64)]) {
    let request = OffsetCommitRequest {
        group_id: group_id.to_owned(),
        generation_id,
        member_id: member_id.to_owned(),
        group_instance_id: None,
        partitions: partitions
            .iter()
            .map(|(topic, partition, offset)| OffsetCommitPartition {
                topic: (*topic).to_owned(),
                partition: *partition,
                offset: *offset,
                leader_epoch: 3,
                metadata: None,
            })
            .collect(),
    };
    let outcome = h.coordinator.commit(&request, h.now_ms);
    assert!(outcome.partitions.iter().all(|p| p.error_code == NONE));
    h.log.extend(outcome.records.iter().cloned());
    h.coordinator.complete_commit(&outcome, h.now_ms);
}

/// Everything a client can observe of the coordinator.
fn observe(
    coordinator: &GroupCoordinator,
) -> (Vec<GroupListing>, Vec<GroupDescription>, Vec<Vec<OffsetFetchPartition>>) {
    let listed = coordinator.list_groups();
    let ids: Vec<String> = listed.iter().map(|g| g.group_id.clone()).collect();
    let offsets = ids.iter().map(|id| coordinator.fetch_offsets(id, None)).collect();
    (listed, coordinator.describe(&ids), offsets)
}

fn replayed(log: &[Record], now_ms: i64) -> GroupCoordinator {
    let mut coordinator = GroupCoordinator::new(test_config(), 99);
    for record in log {
        coordinator.replay(&record.key, record.value.as_deref(), now_ms).unwrap();
    }
    coordinator
}

#[test]
fn replaying_the_log_rebuilds_the_groups_and_offsets_it_describes() {
    let mut h = Harness::new();
    // A Stable group with a static and a dynamic member, and offsets.
    let a = h.join(static_join_request("", "instance-a"));
    let b = h.join(join_request("", "b"));
    h.tick();
    let joined = vec![h.joined(&a), h.joined(&b)];
    h.sync_members(&joined);
    commit(&mut h, GROUP, 1, &joined[0].member_id, &[("orders", 0, 10), ("orders", 1, 20)]);
    commit(&mut h, GROUP, 1, &joined[1].member_id, &[("orders", 1, 21)]);
    // A restarted static member: a second metadata record.
    let restarted = h.join(static_join_request("", "instance-a"));
    h.joined(&restarted);
    // A consumer that only stores offsets.
    commit(&mut h, "standalone", -1, "", &[("orders", 0, 5)]);
    // A group that emptied, with offsets, one of them deleted.
    let other = JoinRequest { group_id: "emptied".into(), ..join_request("", "x") };
    let other = h.join(other);
    h.tick();
    let other = h.joined(&other);
    let sync = SyncRequest { group_id: "emptied".into(), ..sync_request(1, &other.member_id, &[]) };
    h.sync(sync);
    commit(&mut h, "emptied", 1, &other.member_id, &[("orders", 0, 1), ("orders", 2, 2)]);
    let left = h.coordinator.leave(
        "emptied",
        &[LeaveMember { member_id: other.member_id.clone(), group_instance_id: None }],
        h.now_ms,
    );
    h.deliver(left.completions);
    let deleted = h.coordinator.delete_offsets("emptied", &[TopicPartition::new("orders", 2)]);
    h.log.extend(deleted.records);
    // A group deleted entirely.
    commit(&mut h, "doomed", -1, "", &[("orders", 0, 1)]);
    let deleted = h.coordinator.delete_groups(&["doomed".to_owned()]);
    h.log.extend(deleted.records);

    let before = observe(&h.coordinator);
    let after = replayed(&h.log, h.now_ms);
    assert_eq!(observe(&after), before);
    assert_eq!(before.0.len(), 3);
    assert_eq!(after.offsets().len(), h.coordinator.offsets().len());
}

#[test]
fn a_replayed_group_serves_its_members_and_expires_those_that_do_not_come_back() {
    let mut h = Harness::new();
    let joined = h.stable_group(&["a", "b"]);
    let mut coordinator = replayed(&h.log, h.now_ms);
    let now_ms = h.now_ms;
    assert_eq!(coordinator.group_state(GROUP), Some(GroupState::Stable));
    assert_code(coordinator.heartbeat(GROUP, 1, &joined[0].member_id, None, now_ms + 5_000), NONE);
    let sync = coordinator.sync(sync_request(1, &joined[1].member_id, &[]), now_ms + 5_000);
    let Answer::Now(sync) = sync.answer else { panic!("a Stable group answers at once") };
    assert_eq!(sync.assignment, Bytes::from_static(b"p-1"));
    // Nobody heartbeats any more: both sessions expire.
    assert!(coordinator.tick(now_ms + 15_000).iter().all(|c| matches!(c, Completion::StoreGroup { .. })));
    assert_eq!(coordinator.group_state(GROUP), Some(GroupState::Empty));
}

#[test]
fn a_group_tombstone_leaves_the_offsets_in_an_empty_group() {
    let mut coordinator = GroupCoordinator::new(test_config(), 1);
    let group_key = encode_group_metadata_key(GROUP).unwrap();
    let offset_key = encode_offset_commit_key(GROUP, "orders", 0).unwrap();
    let offset_value = encode_offset_commit_value(&offset(9)).unwrap();
    coordinator.replay(&group_key, Some(&encode_group_metadata_value(&group_value()).unwrap()), 0).unwrap();
    coordinator.replay(&offset_key, Some(&offset_value), 0).unwrap();
    assert_eq!(coordinator.group_state(GROUP), Some(GroupState::Stable));
    coordinator.replay(&group_key, None, 0).unwrap();
    assert_eq!(coordinator.group_state(GROUP), Some(GroupState::Empty));
    assert_eq!(coordinator.fetch_offsets(GROUP, None)[0].offset, 9);
    coordinator.replay(&offset_key, None, 0).unwrap();
    assert_eq!(coordinator.group_state(GROUP), None);
}

#[test]
fn replay_refuses_a_record_that_contradicts_itself_and_changes_nothing() {
    let mut coordinator = GroupCoordinator::new(test_config(), 1);
    let key = encode_group_metadata_key(GROUP).unwrap();
    let no_protocol = GroupMetadataValue { protocol_name: None, ..group_value() };
    let error = coordinator.replay(&key, Some(&encode_group_metadata_value(&no_protocol).unwrap()), 0);
    assert_eq!(error, Err(RecordError::Inconsistent { reason: "members without a protocol" }));
    let mut twice = group_value();
    twice.members[1].member_id = "a-1".into();
    assert!(coordinator.replay(&key, Some(&encode_group_metadata_value(&twice).unwrap()), 0).is_err());
    assert_eq!(coordinator.group_count(), 0);
    assert!(coordinator.replay(&key, Some(&b"\x00\x03garbage"[..]), 0).is_err());
    assert_eq!(coordinator.group_count(), 0);
}

#[test]
fn groups_map_to_the_offsets_partition_kafka_would_choose() {
    assert_eq!(offsets_partition_for("hello", 50), 22);
    assert_eq!(offsets_partition_for("", 50), 0);
    assert_eq!(offsets_partition_for("my-group", 50), 12, "a negative hash");
    assert_eq!(offsets_partition_for("polygenelubricants", 50), 0, "Integer.MIN_VALUE");
    assert_eq!(offsets_partition_for("é", 50), 33);
    assert_eq!(offsets_partition_for("😀", 50), 49, "UTF-16 surrogates");
    assert_eq!(offsets_partition_for("console-consumer-41203", 50), 41);
}
