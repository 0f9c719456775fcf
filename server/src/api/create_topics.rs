//! CreateTopics: validated and applied by the controller shard, which
//! persists the topic table and has every shard open its partitions before
//! answering.

use std::rc::Rc;

use kafka_protocol::messages::create_topics_response::{CreatableTopicConfigs, CreatableTopicResult};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};

use super::{decode, respond, str_bytes, Outcome};
use crate::mesh::{ControllerRequest, NewTopic};
use crate::net::frame::Request;
use crate::shard::ShardContext;
use crate::topics::{config_value, TOPIC_CONFIG_KEYS};

pub async fn handle(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: CreateTopicsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let new_topics: Vec<NewTopic> = body
        .topics
        .iter()
        .map(|t| NewTopic {
            name: t.name.0.to_string(),
            partitions: t.num_partitions,
            replication_factor: t.replication_factor,
            configs: t
                .configs
                .iter()
                .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                .collect(),
        })
        .collect();
    let outcomes = ctx
        .request_change(ControllerRequest::CreateTopics { topics: new_topics, validate_only: body.validate_only })
        .await;
    let defaults = ctx.config.default_log_config();
    let table = ctx.topics.borrow();
    let results = body
        .topics
        .iter()
        .zip(outcomes)
        .map(|(asked, outcome)| {
            let version = request.api_version;
            let mut result = CreatableTopicResult::default()
                .with_name(asked.name.clone())
                .with_error_code(outcome.error_code)
                .with_error_message(outcome.message.as_deref().map(str_bytes));
            if outcome.error_code == 0 && version >= 5 {
                let meta = table.get(&outcome.name);
                let overrides = meta.map(|m| m.configs.clone()).unwrap_or_default();
                result.num_partitions = meta.map(|m| m.partitions).unwrap_or(asked.num_partitions);
                result.replication_factor = 1;
                if let (Some(meta), true) = (meta, version >= 7) {
                    result.topic_id = meta.id;
                }
                {
                    let configs = TOPIC_CONFIG_KEYS
                        .iter()
                        .filter_map(|key| {
                            let (value, is_default) = config_value(&defaults, &overrides, key.name)?;
                            Some(
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(key.name))
                                    .with_value(Some(str_bytes(&value)))
                                    .with_config_source(if is_default { 5 } else { 1 }),
                            )
                        })
                        .collect();
                    result.configs = Some(configs);
                }
            }
            result
        })
        .collect();
    respond(request, &CreateTopicsResponse::default().with_topics(results))
}
