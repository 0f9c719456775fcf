//! Produce: split the request by partition, append each on the shard that
//! owns it (over the mesh when that is another shard), and answer per
//! partition once every append is acknowledged as `acks` asks: 0 sends no
//! response at all, 1 waits for the O_DIRECT write, -1 (all) for the
//! group-committed fdatasync.

use std::rc::Rc;

use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};

use super::{decode, respond, Outcome};
use crate::errors::ErrorCode;
use crate::mesh::{CoreRequest, CoreResponse, ProduceDone};
use crate::net::frame::Request;
use crate::net::order::DispatchTurn;
use crate::shard::ShardContext;

fn partition_error(index: i32, code: i16) -> PartitionProduceResponse {
    // log_start_offset stays at its default (-1): it exists only from v5.
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
}

pub async fn handle(ctx: &Rc<ShardContext>, request: &Request, turn: Option<DispatchTurn>) -> Outcome {
    let body: ProduceRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    // Earlier Produce requests on this connection queue their appends first.
    if let Some(turn) = &turn {
        turn.wait().await;
    }
    let acks = body.acks;
    let acks_valid = matches!(acks, -1..=1);
    let transactional = body.transactional_id.is_some();
    let mut topics = Vec::with_capacity(body.topic_data.len());
    let mut pending = Vec::new();
    for topic in body.topic_data {
        let name = topic.name.0.to_string();
        let mut responses = Vec::with_capacity(topic.partition_data.len());
        let meta = if !acks_valid || transactional { Err(ErrorCode::None) } else { ctx.ensure_topic(&name).await };
        for partition in topic.partition_data {
            let index = partition.index;
            let code = match &meta {
                _ if !acks_valid => Some(ErrorCode::InvalidRequiredAcks),
                _ if transactional => Some(ErrorCode::TransactionalIdAuthorizationFailed),
                Err(code) => Some(*code),
                Ok(meta) if index < 0 || index >= meta.partitions => Some(ErrorCode::UnknownTopicOrPartition),
                Ok(_) => None,
            };
            if let Some(code) = code {
                responses.push(partition_error(index, code.code()));
                continue;
            }
            let records = partition.records.unwrap_or_default();
            let owner = ctx.owner_of(&name, index);
            let call_ctx = ctx.clone();
            let topic_name = name.clone();
            let task = glommio::spawn_local(async move {
                call_ctx.call(owner, CoreRequest::Produce { topic: topic_name, partition: index, records, acks }).await
            });
            pending.push((topics.len(), responses.len(), task));
            responses.push(partition_error(index, 0));
        }
        topics.push(TopicProduceResponse::default().with_name(topic.name).with_partition_responses(responses));
    }
    // The appends are queued on their partitions (spawned tasks start in
    // spawn order): later requests may go ahead.
    drop(turn);
    for (topic_index, partition_slot, task) in pending {
        let slot = &mut topics[topic_index].partition_responses[partition_slot];
        match task.await {
            CoreResponse::Produce(Ok(ProduceDone { base_offset, log_append_time_ms, log_start_offset })) => {
                slot.base_offset = base_offset;
                slot.log_append_time_ms = log_append_time_ms;
                if request.api_version >= 5 {
                    slot.log_start_offset = log_start_offset;
                }
            }
            CoreResponse::Produce(Err(code)) => slot.error_code = code,
            _ => slot.error_code = ErrorCode::NotLeaderOrFollower.code(),
        }
    }
    if acks == 0 {
        return Outcome::NoResponse;
    }
    respond(request, &ProduceResponse::default().with_responses(topics))
}
