//! CreatePartitions: raise a topic's partition count (never lower it).
//! Manual replica assignments are ignored: there is one broker.

use std::rc::Rc;

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::{decode, respond, str_bytes, Outcome};
use crate::mesh::ControllerRequest;
use crate::net::frame::Request;
use crate::shard::ShardContext;

pub async fn handle(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: CreatePartitionsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let changes = body.topics.iter().map(|t| (t.name.0.to_string(), t.count)).collect();
    let outcomes =
        ctx.request_change(ControllerRequest::CreatePartitions { changes, validate_only: body.validate_only }).await;
    let results = body
        .topics
        .iter()
        .zip(outcomes)
        .map(|(topic, outcome)| {
            CreatePartitionsTopicResult::default()
                .with_name(topic.name.clone())
                .with_error_code(outcome.error_code)
                .with_error_message(outcome.message.as_deref().map(str_bytes))
        })
        .collect();
    respond(request, &CreatePartitionsResponse::default().with_results(results))
}
