//! A randomized check of the whole state machine: random sequences of
//! joins, syncs, heartbeats, leaves, commits, store results and clock jumps
//! from a handful of clients never trip an invariant, answer no parked
//! request twice, and once the clients fall silent every parked request
//! has been answered and every group has emptied.

use std::collections::{BTreeMap, BTreeSet};

use super::super::error_code::NOT_LEADER_OR_FOLLOWER;
use super::*;

const GROUPS: [&str; 2] = ["g1", "g2"];
const INSTANCES: [&str; 3] = ["i1", "i2", "i3"];

fn check_invariants(h: &Harness) {
    let ids: Vec<String> = GROUPS.iter().map(|g| (*g).to_owned()).collect();
    for description in h.coordinator.describe(&ids) {
        let members: Vec<&str> = description.members.iter().map(|m| m.member_id.as_str()).collect();
        match description.state {
            "Empty" | "Dead" => assert!(members.is_empty(), "{description:?}"),
            "Stable" => assert!(!description.protocol_name.is_empty() && !members.is_empty(), "{description:?}"),
            "CompletingRebalance" => assert!(!members.is_empty(), "{description:?}"),
            _ => {}
        }
        if let Some(leader) = &description.leader_id {
            assert!(members.contains(&leader.as_str()), "the leader is a member: {description:?}");
        } else {
            assert!(members.is_empty(), "a group with members has a leader: {description:?}");
        }
        let instances: Vec<&String> = description.members.iter().filter_map(|m| m.group_instance_id.as_ref()).collect();
        let unique: BTreeSet<&String> = instances.iter().copied().collect();
        assert_eq!(unique.len(), instances.len(), "one member per instance id: {description:?}");
    }
}

fn run(seed: u64) {
    let mut random = Random(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let delay_ms = [0, 0, 1_000][random.below(3)];
    let mut h = Harness::with_config(GroupConfig { group_initial_rebalance_delay_ms: delay_ms, ..test_config() });
    // Parked JoinGroups with the group and instance id they were for; parked SyncGroups.
    let mut parked_joins: BTreeMap<Ticket, (String, Option<String>)> = BTreeMap::new();
    let mut parked_syncs: BTreeSet<Ticket> = BTreeSet::new();
    // Member id -> (group, instance id, latest generation), learned from answers.
    let mut known: BTreeMap<String, (String, Option<String>, i32)> = BTreeMap::new();

    for _ in 0..400 {
        h.auto_store = random.below(4) != 0;
        let group = GROUPS[random.below(GROUPS.len())].to_owned();
        let member = if known.is_empty() {
            None
        } else {
            let (member_id, (group, instance, generation_id)) = known.iter().nth(random.below(known.len())).unwrap();
            Some((group.clone(), member_id.clone(), instance.clone(), *generation_id))
        };
        match random.below(13) {
            0 => {
                let instance = if random.below(2) == 0 { None } else { Some(INSTANCES[random.below(3)].to_owned()) };
                let mut request = JoinRequest {
                    group_id: group.clone(),
                    group_instance_id: instance.clone(),
                    require_known_member_id: random.below(2) == 0,
                    supports_skipping_assignment: random.below(2) == 0,
                    ..join_request("", &format!("c{}", random.below(4)))
                };
                if random.below(4) == 0 {
                    request.protocols.insert(0, protocol("roundrobin", &["orders"]));
                }
                let answer = h.join(request);
                record_join(&mut h, &mut parked_joins, &mut known, &group, instance, answer);
            }
            1 | 2 => {
                if let Some((group, member_id, instance, _)) = member {
                    let request = JoinRequest {
                        group_id: group.clone(),
                        group_instance_id: instance.clone(),
                        ..join_request(&member_id, "c")
                    };
                    let answer = h.join(request);
                    record_join(&mut h, &mut parked_joins, &mut known, &group, instance, answer);
                }
            }
            3..=5 => {
                if let Some((group, member_id, instance, generation_id)) = member {
                    let assignments: Vec<SyncAssignment> = known
                        .iter()
                        .filter(|(_, k)| k.0 == group)
                        .map(|(id, _)| SyncAssignment { member_id: id.clone(), assignment: Bytes::from_static(b"x") })
                        .collect();
                    let request = SyncRequest {
                        group_id: group,
                        generation_id: generation_id - i32::from(random.below(8) == 0),
                        member_id,
                        group_instance_id: instance,
                        protocol_type: None,
                        protocol_name: None,
                        assignments,
                    };
                    if let Answer::Later(ticket) = h.sync(request) {
                        parked_syncs.insert(ticket);
                    }
                }
            }
            6 => {
                if let Some((group, member_id, instance, generation_id)) = member {
                    h.coordinator.heartbeat(&group, generation_id, &member_id, instance.as_deref(), h.now_ms);
                }
            }
            7 => {
                if let Some((group, member_id, instance, _)) = member {
                    let member_id = if instance.is_some() && random.below(2) == 0 { String::new() } else { member_id };
                    let left = h.coordinator.leave(
                        &group,
                        &[LeaveMember { member_id, group_instance_id: instance }],
                        h.now_ms,
                    );
                    h.deliver(left.completions);
                }
            }
            8 => h.advance(random.below(12_000) as i64),
            9 | 12 => {
                let (member_id, generation_id) = match &member {
                    Some((_, member_id, _, generation_id)) if random.below(3) != 0 => {
                        (member_id.clone(), *generation_id)
                    }
                    _ => (String::new(), -1),
                };
                let request = OffsetCommitRequest {
                    group_id: group,
                    generation_id,
                    member_id,
                    group_instance_id: None,
                    partitions: vec![OffsetCommitPartition {
                        topic: ["orders", "refunds"][random.below(2)].to_owned(),
                        partition: 0,
                        offset: random.below(100) as i64,
                        leader_epoch: -1,
                        metadata: None,
                    }],
                };
                let outcome = h.coordinator.commit(&request, h.now_ms);
                h.coordinator.complete_commit(&outcome, h.now_ms);
            }
            10 => h.release_stores([NONE, NONE, NOT_LEADER_OR_FOLLOWER][random.below(3)]),
            _ => match random.below(3) {
                0 => {
                    h.coordinator.expire_offsets(h.now_ms, 60_000);
                }
                1 => {
                    h.coordinator.delete_groups(&[group]);
                }
                _ => {
                    h.coordinator.delete_offsets(&group, &[TopicPartition::new("orders", 0)]);
                }
            },
        }
        check_invariants(&h);
    }

    // The clients fall silent: everything times out.
    h.release_stores(NONE);
    h.auto_store = true;
    for _ in 0..100 {
        let Some(deadline) = h.coordinator.next_deadline_ms() else {
            break;
        };
        h.now_ms = h.now_ms.max(deadline);
        h.tick();
        check_invariants(&h);
    }
    assert_eq!(h.coordinator.next_deadline_ms(), None, "seed {seed}: timers left");
    let unanswered: Vec<&Ticket> = parked_joins
        .keys()
        .filter(|t| !h.joins.contains_key(t))
        .chain(parked_syncs.iter().filter(|t| !h.syncs.contains_key(t)))
        .collect();
    assert!(unanswered.is_empty(), "seed {seed}: parked requests never answered: {unanswered:?}");
    for group in GROUPS {
        let state = h.coordinator.group_state(group);
        assert!(matches!(state, None | Some(GroupState::Empty)), "seed {seed}: {group} is {state:?}");
    }
}

fn record_join(
    h: &mut Harness,
    parked_joins: &mut BTreeMap<Ticket, (String, Option<String>)>,
    known: &mut BTreeMap<String, (String, Option<String>, i32)>,
    group: &str,
    instance: Option<String>,
    answer: Answer<JoinResponse>,
) {
    match &answer {
        Answer::Later(ticket) => {
            parked_joins.insert(*ticket, (group.to_owned(), instance));
        }
        Answer::Now(response) if !response.member_id.is_empty() => {
            known.insert(response.member_id.clone(), (group.to_owned(), instance, response.generation_id));
        }
        Answer::Now(_) => {}
    }
    // Parked joins answered so far teach their clients ids and generations.
    for (ticket, (group, instance)) in parked_joins.iter() {
        if let Some(response) = h.joins.get(ticket).filter(|r| r.error_code == NONE) {
            let generation_id = known.get(&response.member_id).map_or(-1, |k| k.2).max(response.generation_id);
            known.insert(response.member_id.clone(), (group.clone(), instance.clone(), generation_id));
        }
    }
}

#[test]
fn random_operation_sequences_keep_the_invariants_and_answer_every_parked_request_once() {
    for seed in 0..300 {
        run(seed);
    }
}
