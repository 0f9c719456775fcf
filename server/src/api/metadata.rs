//! Metadata: the one broker, and the requested (or all) topics with their
//! partitions, all led by this node. Unknown topics are created when the
//! request allows it and `auto_create_topics` is on.

use std::rc::Rc;

use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse, TopicName};

use super::{decode, respond, str_bytes, Outcome};
use crate::errors::ErrorCode;
use crate::net::frame::Request;
use crate::shard::ShardContext;
use crate::topics::{validate_topic_name, TopicMeta};

/// Fields are set only in the versions that have them (the encoder
/// refuses a non-default value in a version without the field).
fn topic_entry(ctx: &ShardContext, meta: &TopicMeta, version: i16) -> MetadataResponseTopic {
    let node = BrokerId(ctx.config.node_id);
    let partitions = (0..meta.partitions)
        .map(|p| {
            let mut partition = MetadataResponsePartition::default()
                .with_partition_index(p)
                .with_leader_id(node)
                .with_replica_nodes(vec![node])
                .with_isr_nodes(vec![node]);
            if version >= 7 {
                partition.leader_epoch = 0;
            }
            partition
        })
        .collect();
    let mut topic =
        MetadataResponseTopic::default().with_name(Some(TopicName(str_bytes(&meta.name)))).with_partitions(partitions);
    if version >= 10 {
        topic.topic_id = meta.id;
    }
    topic
}

pub async fn handle(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: MetadataRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let version = request.api_version;
    // v0: an empty list means all topics; v1+: null means all.
    let wanted: Option<Vec<(Option<String>, uuid::Uuid)>> = match &body.topics {
        None => None,
        Some(list) if list.is_empty() && version == 0 => None,
        Some(list) => Some(list.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)).collect()),
    };
    let allow_auto_create = version < 4 || body.allow_auto_topic_creation;
    let mut topics = Vec::new();
    match wanted {
        None => {
            let table = ctx.topics.borrow();
            topics.extend(table.topics.values().map(|meta| topic_entry(ctx, meta, version)));
        }
        Some(list) => {
            for (name, id) in list {
                let entry = match name {
                    Some(name) => {
                        let known = ctx.topics.borrow().get(&name).cloned();
                        match known {
                            Some(meta) => topic_entry(ctx, &meta, version),
                            None if validate_topic_name(&name).is_err() => MetadataResponseTopic::default()
                                .with_name(Some(TopicName(str_bytes(&name))))
                                .with_error_code(ErrorCode::InvalidTopicException.code()),
                            None if allow_auto_create => match ctx.ensure_topic(&name).await {
                                Ok(meta) => topic_entry(ctx, &meta, version),
                                Err(code) => MetadataResponseTopic::default()
                                    .with_name(Some(TopicName(str_bytes(&name))))
                                    .with_error_code(code.code()),
                            },
                            None => MetadataResponseTopic::default()
                                .with_name(Some(TopicName(str_bytes(&name))))
                                .with_error_code(ErrorCode::UnknownTopicOrPartition.code()),
                        }
                    }
                    None => {
                        let known = ctx.topics.borrow().by_id(id).cloned();
                        match known {
                            Some(meta) => topic_entry(ctx, &meta, version),
                            None => MetadataResponseTopic::default()
                                .with_topic_id(id)
                                .with_error_code(ErrorCode::UnknownTopicId.code()),
                            // (only reachable in v10+, where topics can be named by id)
                        }
                    }
                };
                topics.push(entry);
            }
        }
    }
    let (host, port) = ctx.config.advertised_host_port();
    let broker = MetadataResponseBroker::default()
        .with_node_id(BrokerId(ctx.config.node_id))
        .with_host(str_bytes(&host))
        .with_port(port);
    let mut response = MetadataResponse::default().with_brokers(vec![broker]).with_topics(topics);
    if version >= 1 {
        response.controller_id = BrokerId(ctx.config.node_id);
    }
    if version >= 2 {
        response.cluster_id = Some(str_bytes(&ctx.cluster_id));
    }
    respond(request, &response)
}
