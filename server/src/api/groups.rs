//! Consumer group APIs: FindCoordinator, JoinGroup, SyncGroup, Heartbeat,
//! LeaveGroup, OffsetCommit, OffsetFetch, ListGroups, DescribeGroups,
//! DeleteGroups, OffsetDelete. Each handler converts the Kafka message to a
//! [`GroupCall`], runs it on the coordinating shard
//! ([`ShardContext::group_call`]), and converts the answer back with a pure
//! `*_response(answer, version)` function that sets only the fields the
//! version has (the tests encode every one at every advertised version).

use std::rc::Rc;

use bytes::Bytes;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic};
use kafka_protocol::messages::offset_delete_response::{OffsetDeleteResponsePartition, OffsetDeleteResponseTopic};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions, OffsetFetchResponseTopic,
    OffsetFetchResponseTopics,
};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;

use super::{decode, respond, str_bytes, Outcome};
use crate::group::{
    GroupDescription, GroupListing, JoinProtocol, JoinRequest, JoinResponse, LeaveMember, LeaveResponse,
    OffsetCommitPartition, OffsetCommitRequest as CommitCall, OffsetFetchPartition, PartitionResult, SyncAssignment,
    SyncRequest as SyncCall, SyncResponse, TopicPartition,
};
use crate::groups::{GroupAnswer, GroupCall};
use crate::net::frame::Request;
use crate::shard::ShardContext;

const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const KEY_TYPE_GROUP: i8 = 0;

fn opt_str(text: &Option<StrBytes>) -> Option<String> {
    text.as_ref().map(|s| s.to_string())
}

// ---------------------------------------------------------------- FindCoordinator

pub fn find_coordinator_response(ctx: &ShardContext, keys: &[(String, i8)], version: i16) -> FindCoordinatorResponse {
    let (host, port) = ctx.config.advertised_host_port();
    let node = BrokerId(ctx.config.node_id);
    let result = |key_type: i8| -> (i16, Option<String>) {
        if key_type != KEY_TYPE_GROUP {
            (
                COORDINATOR_NOT_AVAILABLE,
                Some("pinion has no transaction coordinator: transactions are not supported".into()),
            )
        } else if crate::groups::offsets_partition_count(ctx).is_none() {
            (COORDINATOR_NOT_AVAILABLE, Some("the __consumer_offsets topic does not exist".into()))
        } else {
            (0, None)
        }
    };
    let mut response = FindCoordinatorResponse::default();
    if version >= 4 {
        response.coordinators = keys
            .iter()
            .map(|(key, key_type)| {
                let (code, message) = result(*key_type);
                let mut c = Coordinator::default().with_key(str_bytes(key)).with_error_code(code);
                c.error_message = message.as_deref().map(str_bytes);
                if code == 0 {
                    c.node_id = node;
                    c.host = str_bytes(&host);
                    c.port = port;
                } else {
                    c.node_id = BrokerId(-1);
                    c.port = -1;
                }
                c
            })
            .collect();
    } else {
        let (code, message) = keys.first().map(|(_, t)| result(*t)).unwrap_or((0, None));
        response.error_code = code;
        if version >= 1 {
            response.error_message = message.as_deref().map(str_bytes);
        }
        if code == 0 {
            response.node_id = node;
            response.host = str_bytes(&host);
            response.port = port;
        } else {
            response.node_id = BrokerId(-1);
            response.port = -1;
        }
    }
    response
}

pub fn find_coordinator(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: FindCoordinatorRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let key_type = if request.api_version >= 1 { body.key_type } else { KEY_TYPE_GROUP };
    let keys: Vec<(String, i8)> = if request.api_version >= 4 {
        body.coordinator_keys.iter().map(|k| (k.to_string(), key_type)).collect()
    } else {
        vec![(body.key.to_string(), key_type)]
    };
    respond(request, &find_coordinator_response(ctx, &keys, request.api_version))
}

// ---------------------------------------------------------------- JoinGroup

pub fn join_response(answer: JoinResponse, version: i16) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default()
        .with_error_code(answer.error_code)
        .with_generation_id(answer.generation_id)
        .with_leader(str_bytes(&answer.leader))
        .with_member_id(str_bytes(&answer.member_id))
        .with_members(
            answer
                .members
                .into_iter()
                .map(|m| {
                    let mut member = JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_metadata(m.metadata);
                    if version >= 5 {
                        member.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
                    }
                    member
                })
                .collect(),
        );
    // protocol_name is a plain string before v7 and nullable from v7.
    response.protocol_name = match (answer.protocol_name, version >= 7) {
        (Some(name), _) => Some(str_bytes(&name)),
        (None, true) => None,
        (None, false) => Some(StrBytes::default()),
    };
    if version >= 7 {
        response.protocol_type = answer.protocol_type.as_deref().map(str_bytes);
    }
    if version >= 9 {
        response.skip_assignment = answer.skip_assignment;
    }
    response
}

pub async fn join_group(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: JoinGroupRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let version = request.api_version;
    let group_id = body.group_id.0.to_string();
    let call = JoinRequest {
        group_id: group_id.clone(),
        member_id: body.member_id.to_string(),
        group_instance_id: if version >= 5 { opt_str(&body.group_instance_id) } else { None },
        protocol_type: body.protocol_type.to_string(),
        protocols: body
            .protocols
            .iter()
            .map(|p| JoinProtocol { name: p.name.to_string(), metadata: p.metadata.clone() })
            .collect(),
        session_timeout_ms: body.session_timeout_ms,
        rebalance_timeout_ms: if version >= 1 { body.rebalance_timeout_ms } else { body.session_timeout_ms },
        require_known_member_id: version >= 4,
        supports_skipping_assignment: version >= 9,
        client_id: request.client_id.clone().unwrap_or_default(),
        client_host: String::from("/127.0.0.1"),
    };
    let answer = match ctx.group_call(&group_id, GroupCall::Join(call)).await {
        GroupAnswer::Join(answer) => answer,
        GroupAnswer::Unavailable(code) => JoinResponse::error(body.member_id.as_str(), code),
        other => return Outcome::Disconnect(format!("unexpected join answer {other:?}")),
    };
    respond(request, &join_response(answer, version))
}

// ---------------------------------------------------------------- SyncGroup

pub fn sync_response(answer: SyncResponse, version: i16) -> SyncGroupResponse {
    let mut response =
        SyncGroupResponse::default().with_error_code(answer.error_code).with_assignment(answer.assignment);
    if version >= 5 {
        response.protocol_type = answer.protocol_type.as_deref().map(str_bytes);
        response.protocol_name = answer.protocol_name.as_deref().map(str_bytes);
    }
    response
}

pub async fn sync_group(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: SyncGroupRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let version = request.api_version;
    let group_id = body.group_id.0.to_string();
    let call = SyncCall {
        group_id: group_id.clone(),
        generation_id: body.generation_id,
        member_id: body.member_id.to_string(),
        group_instance_id: if version >= 3 { opt_str(&body.group_instance_id) } else { None },
        protocol_type: if version >= 5 { opt_str(&body.protocol_type) } else { None },
        protocol_name: if version >= 5 { opt_str(&body.protocol_name) } else { None },
        assignments: body
            .assignments
            .iter()
            .map(|a| SyncAssignment { member_id: a.member_id.to_string(), assignment: a.assignment.clone() })
            .collect(),
    };
    let answer = match ctx.group_call(&group_id, GroupCall::Sync(call)).await {
        GroupAnswer::Sync(answer) => answer,
        GroupAnswer::Unavailable(code) => SyncResponse::error(code),
        other => return Outcome::Disconnect(format!("unexpected sync answer {other:?}")),
    };
    respond(request, &sync_response(answer, version))
}

// ---------------------------------------------------------------- Heartbeat

pub async fn heartbeat(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: HeartbeatRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let group_id = body.group_id.0.to_string();
    let call = GroupCall::Heartbeat {
        group_id: group_id.clone(),
        generation_id: body.generation_id,
        member_id: body.member_id.to_string(),
        group_instance_id: if request.api_version >= 3 { opt_str(&body.group_instance_id) } else { None },
    };
    let code = match ctx.group_call(&group_id, call).await {
        GroupAnswer::Heartbeat(code) | GroupAnswer::Unavailable(code) => code,
        other => return Outcome::Disconnect(format!("unexpected heartbeat answer {other:?}")),
    };
    respond(request, &HeartbeatResponse::default().with_error_code(code))
}

// ---------------------------------------------------------------- LeaveGroup

pub fn leave_response(answer: LeaveResponse, version: i16) -> LeaveGroupResponse {
    let mut response = LeaveGroupResponse::default();
    if version >= 3 {
        response.error_code = answer.error_code;
        response.members = answer
            .members
            .into_iter()
            .map(|m| {
                MemberResponse::default()
                    .with_member_id(str_bytes(&m.member_id))
                    .with_group_instance_id(m.group_instance_id.as_deref().map(str_bytes))
                    .with_error_code(m.error_code)
            })
            .collect();
    } else {
        // v0-v2 name one member: its result is the response's code.
        response.error_code =
            if answer.error_code != 0 { answer.error_code } else { answer.members.first().map_or(0, |m| m.error_code) };
    }
    response
}

pub async fn leave_group(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: LeaveGroupRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let version = request.api_version;
    let group_id = body.group_id.0.to_string();
    let members: Vec<LeaveMember> = if version >= 3 {
        body.members
            .iter()
            .map(|m| LeaveMember {
                member_id: m.member_id.to_string(),
                group_instance_id: opt_str(&m.group_instance_id),
            })
            .collect()
    } else {
        vec![LeaveMember { member_id: body.member_id.to_string(), group_instance_id: None }]
    };
    let answer = match ctx.group_call(&group_id, GroupCall::Leave { group_id: group_id.clone(), members }).await {
        GroupAnswer::Leave(answer) => answer,
        GroupAnswer::Unavailable(code) => LeaveResponse { error_code: code, members: Vec::new() },
        other => return Outcome::Disconnect(format!("unexpected leave answer {other:?}")),
    };
    respond(request, &leave_response(answer, version))
}

// ---------------------------------------------------------------- OffsetCommit

pub fn commit_response(results: Vec<PartitionResult>) -> OffsetCommitResponse {
    let mut topics: Vec<OffsetCommitResponseTopic> = Vec::new();
    for result in results {
        let partition = OffsetCommitResponsePartition::default()
            .with_partition_index(result.partition)
            .with_error_code(result.error_code);
        match topics.iter_mut().find(|t| t.name.0.as_str() == result.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetCommitResponseTopic::default()
                    .with_name(TopicName(str_bytes(&result.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    OffsetCommitResponse::default().with_topics(topics)
}

pub async fn offset_commit(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: OffsetCommitRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let group_id = body.group_id.0.to_string();
    let partitions: Vec<OffsetCommitPartition> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| OffsetCommitPartition {
                topic: t.name.0.to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: if request.api_version >= 6 { p.committed_leader_epoch } else { -1 },
                metadata: opt_str(&p.committed_metadata),
            })
        })
        .collect();
    let call = CommitCall {
        group_id: group_id.clone(),
        generation_id: body.generation_id_or_member_epoch,
        member_id: body.member_id.to_string(),
        group_instance_id: if request.api_version >= 7 { opt_str(&body.group_instance_id) } else { None },
        partitions: partitions.clone(),
    };
    let results = match ctx.group_call(&group_id, GroupCall::Commit(call)).await {
        GroupAnswer::Commit(results) => results,
        GroupAnswer::Unavailable(code) => partitions
            .iter()
            .map(|p| PartitionResult { topic: p.topic.clone(), partition: p.partition, error_code: code })
            .collect(),
        other => return Outcome::Disconnect(format!("unexpected commit answer {other:?}")),
    };
    respond(request, &commit_response(results))
}

// ---------------------------------------------------------------- OffsetFetch

fn fetch_topics_v7(partitions: &[OffsetFetchPartition], version: i16) -> Vec<OffsetFetchResponseTopic> {
    let mut topics: Vec<OffsetFetchResponseTopic> = Vec::new();
    for p in partitions {
        let mut partition = OffsetFetchResponsePartition::default()
            .with_partition_index(p.partition)
            .with_committed_offset(p.offset)
            .with_metadata(Some(str_bytes(&p.metadata)))
            .with_error_code(p.error_code);
        if version >= 5 {
            partition.committed_leader_epoch = p.leader_epoch;
        }
        match topics.iter_mut().find(|t| t.name.0.as_str() == p.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetFetchResponseTopic::default()
                    .with_name(TopicName(str_bytes(&p.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    topics
}

fn fetch_topics_v8(partitions: &[OffsetFetchPartition]) -> Vec<OffsetFetchResponseTopics> {
    let mut topics: Vec<OffsetFetchResponseTopics> = Vec::new();
    for p in partitions {
        let partition = OffsetFetchResponsePartitions::default()
            .with_partition_index(p.partition)
            .with_committed_offset(p.offset)
            .with_committed_leader_epoch(p.leader_epoch)
            .with_metadata(Some(str_bytes(&p.metadata)))
            .with_error_code(p.error_code);
        match topics.iter_mut().find(|t| t.name.0.as_str() == p.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetFetchResponseTopics::default()
                    .with_name(TopicName(str_bytes(&p.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    topics
}

/// One group's answer: top-level error code and its partitions.
pub fn fetch_response(groups: Vec<(String, i16, Vec<OffsetFetchPartition>)>, version: i16) -> OffsetFetchResponse {
    let mut response = OffsetFetchResponse::default();
    if version >= 8 {
        response.groups = groups
            .into_iter()
            .map(|(group_id, code, partitions)| {
                OffsetFetchResponseGroup::default()
                    .with_group_id(GroupId(str_bytes(&group_id)))
                    .with_error_code(code)
                    .with_topics(fetch_topics_v8(&partitions))
            })
            .collect();
    } else if let Some((_, code, partitions)) = groups.into_iter().next() {
        response.topics = fetch_topics_v7(&partitions, version);
        if version >= 2 {
            response.error_code = code;
        }
    }
    response
}

async fn fetch_one(
    ctx: &Rc<ShardContext>,
    group_id: String,
    partitions: Option<Vec<TopicPartition>>,
) -> (String, i16, Vec<OffsetFetchPartition>) {
    let call = GroupCall::FetchOffsets { group_id: group_id.clone(), partitions: partitions.clone() };
    match ctx.group_call(&group_id, call).await {
        GroupAnswer::FetchOffsets { error_code, partitions } => (group_id, error_code, partitions),
        GroupAnswer::Unavailable(code) => (group_id, code, Vec::new()),
        _ => (group_id, COORDINATOR_NOT_AVAILABLE, Vec::new()),
    }
}

pub async fn offset_fetch(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: OffsetFetchRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let version = request.api_version;
    let mut answers = Vec::new();
    if version >= 8 {
        for group in &body.groups {
            let partitions = group.topics.as_ref().map(|topics| {
                topics
                    .iter()
                    .flat_map(|t| {
                        t.partition_indexes
                            .iter()
                            .map(|&p| TopicPartition { topic: t.name.0.to_string(), partition: p })
                    })
                    .collect()
            });
            answers.push(fetch_one(ctx, group.group_id.0.to_string(), partitions).await);
        }
    } else {
        let partitions = body.topics.as_ref().map(|topics| {
            topics
                .iter()
                .flat_map(|t| {
                    t.partition_indexes.iter().map(|&p| TopicPartition { topic: t.name.0.to_string(), partition: p })
                })
                .collect()
        });
        answers.push(fetch_one(ctx, body.group_id.0.to_string(), partitions).await);
    }
    respond(request, &fetch_response(answers, version))
}

// ---------------------------------------------------------------- ListGroups, DescribeGroups, DeleteGroups, OffsetDelete

pub fn list_response(groups: Vec<GroupListing>, states_filter: &[String], version: i16) -> ListGroupsResponse {
    let groups = groups
        .into_iter()
        .filter(|g| states_filter.is_empty() || states_filter.iter().any(|s| s.eq_ignore_ascii_case(g.state)))
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_protocol_type(str_bytes(&g.protocol_type));
            if version >= 4 {
                listed.group_state = str_bytes(g.state);
            }
            if version >= 5 {
                listed.group_type = str_bytes("classic");
            }
            listed
        })
        .collect();
    ListGroupsResponse::default().with_groups(groups)
}

pub async fn list_groups(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: ListGroupsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let states: Vec<String> = body.states_filter.iter().map(|s| s.to_string()).collect();
    let groups = ctx.list_all_groups().await;
    respond(request, &list_response(groups, &states, request.api_version))
}

pub fn describe_response(groups: Vec<GroupDescription>, version: i16) -> DescribeGroupsResponse {
    let groups = groups
        .into_iter()
        .map(|g| {
            let members = g
                .members
                .into_iter()
                .map(|m| {
                    let mut member = DescribedGroupMember::default()
                        .with_member_id(str_bytes(&m.member_id))
                        .with_client_id(str_bytes(&m.client_id))
                        .with_client_host(str_bytes(&m.client_host))
                        .with_member_metadata(m.metadata)
                        .with_member_assignment(m.assignment);
                    if version >= 4 {
                        member.group_instance_id = m.group_instance_id.as_deref().map(str_bytes);
                    }
                    member
                })
                .collect();
            let mut described = DescribedGroup::default()
                .with_error_code(g.error_code)
                .with_group_id(GroupId(str_bytes(&g.group_id)))
                .with_group_state(str_bytes(g.state))
                .with_protocol_type(str_bytes(&g.protocol_type))
                .with_protocol_data(str_bytes(&g.protocol_name))
                .with_members(members);
            if version >= 3 {
                described.authorized_operations = i32::MIN;
            }
            described
        })
        .collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

fn described_error(group_id: &str, error_code: i16) -> GroupDescription {
    GroupDescription {
        group_id: group_id.to_string(),
        error_code,
        state: "Dead",
        protocol_type: String::new(),
        protocol_name: String::new(),
        members: Vec::new(),
        generation_id: -1,
        leader_id: None,
    }
}

pub async fn describe_groups(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: DescribeGroupsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut descriptions = Vec::new();
    for group in &body.groups {
        let group_id = group.0.to_string();
        match ctx.group_call(&group_id, GroupCall::Describe { group_ids: vec![group_id.clone()] }).await {
            GroupAnswer::Describe(found) => descriptions.extend(found),
            GroupAnswer::Unavailable(code) => descriptions.push(described_error(&group_id, code)),
            _ => descriptions.push(described_error(&group_id, COORDINATOR_NOT_AVAILABLE)),
        }
    }
    respond(request, &describe_response(descriptions, request.api_version))
}

pub async fn delete_groups(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: DeleteGroupsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut results = Vec::new();
    for group in &body.groups_names {
        let group_id = group.0.to_string();
        let code = match ctx.group_call(&group_id, GroupCall::Delete { group_ids: vec![group_id.clone()] }).await {
            GroupAnswer::Delete(found) => found.first().map_or(0, |(_, code)| *code),
            GroupAnswer::Unavailable(code) => code,
            _ => COORDINATOR_NOT_AVAILABLE,
        };
        results.push(DeletableGroupResult::default().with_group_id(group.clone()).with_error_code(code));
    }
    respond(request, &DeleteGroupsResponse::default().with_results(results))
}

pub async fn offset_delete(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: OffsetDeleteRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let group_id = body.group_id.0.to_string();
    let partitions: Vec<TopicPartition> = body
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| TopicPartition { topic: t.name.0.to_string(), partition: p.partition_index })
        })
        .collect();
    let (code, results) =
        match ctx.group_call(&group_id, GroupCall::DeleteOffsets { group_id: group_id.clone(), partitions }).await {
            GroupAnswer::DeleteOffsets { error_code, partitions } => (error_code, partitions),
            GroupAnswer::Unavailable(code) => (code, Vec::new()),
            _ => (COORDINATOR_NOT_AVAILABLE, Vec::new()),
        };
    let mut topics: Vec<OffsetDeleteResponseTopic> = Vec::new();
    for result in results {
        let partition = OffsetDeleteResponsePartition::default()
            .with_partition_index(result.partition)
            .with_error_code(result.error_code);
        match topics.iter_mut().find(|t| t.name.0.as_str() == result.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(TopicName(str_bytes(&result.topic)))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    respond(request, &OffsetDeleteResponse::default().with_error_code(code).with_topics(topics))
}

/// Encodes a response at `version`, or says why it cannot be (tests).
pub fn encodes<T: kafka_protocol::protocol::Encodable>(body: &T, version: i16) -> Result<(), String> {
    let mut buf = bytes::BytesMut::new();
    body.encode(&mut buf, version).map_err(|e| e.to_string())
}

/// A stand-in byte string for tests.
pub fn sample_bytes() -> Bytes {
    Bytes::from_static(b"\x00\x01metadata")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::supported_versions;
    use crate::group::{JoinResponseMember, LeaveMemberResponse, MemberDescription};

    fn versions(key: ApiKey) -> std::ops::RangeInclusive<i16> {
        let (min, max) = supported_versions(key).unwrap();
        min..=max
    }

    /// Every response the handlers build encodes at every advertised version
    /// (the encoder refuses fields a version does not have).
    #[test]
    fn group_responses_encode_at_every_advertised_version() {
        let join = JoinResponse {
            error_code: 0,
            generation_id: 3,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            leader: "m-1".into(),
            skip_assignment: false,
            member_id: "m-1".into(),
            members: vec![JoinResponseMember {
                member_id: "m-1".into(),
                group_instance_id: Some("i-1".into()),
                metadata: sample_bytes(),
            }],
        };
        for version in versions(ApiKey::JoinGroup) {
            encodes(&join_response(join.clone(), version), version)
                .unwrap_or_else(|e| panic!("JoinGroup v{version}: {e}"));
            let error = JoinResponse::error("", 79);
            encodes(&join_response(error, version), version)
                .unwrap_or_else(|e| panic!("JoinGroup error v{version}: {e}"));
        }
        let sync = SyncResponse {
            error_code: 0,
            protocol_type: Some("consumer".into()),
            protocol_name: Some("range".into()),
            assignment: sample_bytes(),
        };
        for version in versions(ApiKey::SyncGroup) {
            encodes(&sync_response(sync.clone(), version), version)
                .unwrap_or_else(|e| panic!("SyncGroup v{version}: {e}"));
        }
        let leave = LeaveResponse {
            error_code: 0,
            members: vec![LeaveMemberResponse { member_id: "m".into(), group_instance_id: None, error_code: 25 }],
        };
        for version in versions(ApiKey::LeaveGroup) {
            let response = leave_response(leave.clone(), version);
            encodes(&response, version).unwrap_or_else(|e| panic!("LeaveGroup v{version}: {e}"));
            if version < 3 {
                assert_eq!(response.error_code, 25, "v{version} reports the single member's code");
            }
        }
        let results = vec![PartitionResult { topic: "t".into(), partition: 0, error_code: 0 }];
        for version in versions(ApiKey::OffsetCommit) {
            encodes(&commit_response(results.clone()), version)
                .unwrap_or_else(|e| panic!("OffsetCommit v{version}: {e}"));
        }
        let fetched = vec![OffsetFetchPartition {
            topic: "t".into(),
            partition: 1,
            offset: 42,
            leader_epoch: 0,
            metadata: String::new(),
            error_code: 0,
        }];
        for version in versions(ApiKey::OffsetFetch) {
            let response = fetch_response(vec![("g".into(), 0, fetched.clone())], version);
            encodes(&response, version).unwrap_or_else(|e| panic!("OffsetFetch v{version}: {e}"));
        }
        let listing = vec![GroupListing { group_id: "g".into(), protocol_type: "consumer".into(), state: "Stable" }];
        for version in versions(ApiKey::ListGroups) {
            encodes(&list_response(listing.clone(), &[], version), version)
                .unwrap_or_else(|e| panic!("ListGroups v{version}: {e}"));
        }
        let described = vec![GroupDescription {
            group_id: "g".into(),
            error_code: 0,
            state: "Stable",
            protocol_type: "consumer".into(),
            protocol_name: "range".into(),
            members: vec![MemberDescription {
                member_id: "m".into(),
                group_instance_id: Some("i".into()),
                client_id: "c".into(),
                client_host: "/127.0.0.1".into(),
                metadata: sample_bytes(),
                assignment: sample_bytes(),
            }],
            generation_id: 1,
            leader_id: Some("m".into()),
        }];
        for version in versions(ApiKey::DescribeGroups) {
            encodes(&describe_response(described.clone(), version), version)
                .unwrap_or_else(|e| panic!("DescribeGroups v{version}: {e}"));
        }
    }
}
