//! DeleteTopics: by name (or, v6, by topic id); the controller removes the
//! topic from the table and every shard closes and deletes its partitions.

use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};

use super::{decode, respond, str_bytes, Outcome};
use crate::errors::ErrorCode;
use crate::mesh::ControllerRequest;
use crate::net::frame::Request;
use crate::shard::ShardContext;

pub async fn handle(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: DeleteTopicsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    // v0-v5 name topics in `topic_names`; v6 in `topics` by name or id.
    let mut asked: Vec<(Option<String>, uuid::Uuid)> =
        body.topic_names.iter().map(|n| (Some(n.0.to_string()), uuid::Uuid::nil())).collect();
    asked.extend(body.topics.iter().map(|t| (t.name.as_ref().map(|n| n.0.to_string()), t.topic_id)));
    let mut results = Vec::new();
    let mut names = Vec::new();
    for (name, id) in &asked {
        let resolved = match name {
            Some(name) => Some(name.clone()),
            None => ctx.topics.borrow().by_id(*id).map(|m| m.name.clone()),
        };
        match resolved {
            Some(name) => names.push(name),
            None => results.push(
                DeletableTopicResult::default()
                    .with_topic_id(*id)
                    .with_error_code(ErrorCode::UnknownTopicId.code())
                    .with_error_message(Some(str_bytes("no topic has this id"))),
            ),
        }
    }
    let ids: Vec<uuid::Uuid> =
        names.iter().map(|n| ctx.topics.borrow().get(n).map(|m| m.id).unwrap_or_default()).collect();
    let outcomes = ctx.request_change(ControllerRequest::DeleteTopics { names }).await;
    for (outcome, id) in outcomes.into_iter().zip(ids) {
        let mut result = DeletableTopicResult::default()
            .with_name(Some(TopicName(str_bytes(&outcome.name))))
            .with_error_code(outcome.error_code);
        if request.api_version >= 6 {
            result.topic_id = id;
        }
        if request.api_version >= 5 {
            result.error_message = outcome.message.as_deref().map(str_bytes);
        }
        results.push(result);
    }
    respond(request, &DeleteTopicsResponse::default().with_responses(results))
}
