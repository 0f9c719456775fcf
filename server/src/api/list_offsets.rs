//! ListOffsets: earliest (-2), latest (-1) or the first offset at or after
//! a timestamp, per partition, on the owning shard.

use std::rc::Rc;

use kafka_protocol::messages::list_offsets_response::{ListOffsetsPartitionResponse, ListOffsetsTopicResponse};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};

use super::{decode, respond, Outcome};
use crate::errors::ErrorCode;
use crate::mesh::{CoreRequest, CoreResponse};
use crate::net::frame::Request;
use crate::shard::ShardContext;

pub async fn handle(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: ListOffsetsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut topics = Vec::with_capacity(body.topics.len());
    for topic in body.topics {
        let name = topic.name.0.to_string();
        let partitions_known = ctx.topics.borrow().get(&name).map(|m| m.partitions);
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in topic.partitions {
            let mut response = ListOffsetsPartitionResponse::default()
                .with_partition_index(p.partition_index)
                .with_timestamp(-1)
                .with_offset(-1);
            if request.api_version >= 4 {
                response.leader_epoch = 0;
            }
            match partitions_known {
                Some(count) if p.partition_index >= 0 && p.partition_index < count => {
                    let owner = ctx.owner_of(&name, p.partition_index);
                    let request = CoreRequest::ListOffset {
                        topic: name.clone(),
                        partition: p.partition_index,
                        timestamp: p.timestamp,
                    };
                    match ctx.call(owner, request).await {
                        CoreResponse::ListOffset(Ok((timestamp, offset))) => {
                            response.timestamp = timestamp;
                            response.offset = offset;
                        }
                        CoreResponse::ListOffset(Err(code)) => response.error_code = code,
                        _ => response.error_code = ErrorCode::NotLeaderOrFollower.code(),
                    }
                }
                _ => response.error_code = ErrorCode::UnknownTopicOrPartition.code(),
            }
            partitions.push(response);
        }
        topics.push(ListOffsetsTopicResponse::default().with_name(topic.name).with_partitions(partitions));
    }
    respond(request, &ListOffsetsResponse::default().with_topics(topics))
}
