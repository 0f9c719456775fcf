//! DescribeConfigs, IncrementalAlterConfigs and AlterConfigs for the topic
//! configs of [`TOPIC_CONFIG_KEYS`]. Broker resources are described
//! read-only, under Kafka's broker-level names (`log.retention.ms`...).
//! Each value says where it comes from (a topic's override, the broker's
//! flags or file, the built-in default) and, when asked, its synonyms.
//!
//! AlterConfigs (the API kafkajs', sarama's and aiokafka's admin clients
//! and the older Java `alterConfigs` use) replaces a topic's whole set of
//! overrides: a config it does not name goes back to the broker default,
//! as in Kafka.

use std::collections::BTreeMap;
use std::rc::Rc;

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{
    alter_configs_response, AlterConfigsRequest, AlterConfigsResponse, DescribeConfigsRequest, DescribeConfigsResponse,
    IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse,
};
use kafka_protocol::protocol::StrBytes;
use pinion_engine::LogConfig;

use super::{decode, respond, str_bytes, Outcome};
use crate::errors::ErrorCode;
use crate::mesh::ControllerRequest;
use crate::net::frame::Request;
use crate::shard::ShardContext;
use crate::topics::{config_value, validate_topic_name, TOPIC_CONFIG_KEYS};

const RESOURCE_TOPIC: i8 = 2;
const RESOURCE_BROKER: i8 = 4;
/// config_source values: 1 a topic's override, 4 set in the broker's
/// configuration (flags or file), 5 the built-in default.
const SOURCE_TOPIC: i8 = 1;
const SOURCE_STATIC_BROKER: i8 = 4;
const SOURCE_DEFAULT: i8 = 5;
/// The broker-level name of a topic config (what Kafka's DescribeConfigs
/// shows for a BROKER resource, and as a topic config's synonym): the
/// default every topic starts from.
fn broker_name(topic_key: &str) -> &'static str {
    match topic_key {
        "retention.ms" => "log.retention.ms",
        "retention.bytes" => "log.retention.bytes",
        "segment.bytes" => "log.segment.bytes",
        "segment.ms" => "log.roll.ms",
        "cleanup.policy" => "log.cleanup.policy",
        "delete.retention.ms" => "log.cleaner.delete.retention.ms",
        "min.cleanable.dirty.ratio" => "log.cleaner.min.cleanable.ratio",
        "min.compaction.lag.ms" => "log.cleaner.min.compaction.lag.ms",
        "message.timestamp.type" => "log.message.timestamp.type",
        "max.message.bytes" => "message.max.bytes",
        "index.interval.bytes" => "log.index.interval.bytes",
        _ => "unknown",
    }
}

/// config_type values (v3+): 3 INT, 5 LONG, 2 STRING, 6 DOUBLE.
fn config_type(key: &str) -> i8 {
    match key {
        "cleanup.policy" | "message.timestamp.type" => 2,
        "max.message.bytes" | "segment.bytes" | "index.interval.bytes" => 3,
        "min.cleanable.dirty.ratio" => 6,
        _ => 5,
    }
}

/// The broker-level value of `key` (what a topic without an override
/// gets) and where it comes from: the broker's own configuration if it
/// differs from the built-in default.
fn broker_default(defaults: &LogConfig, builtin: &LogConfig, key: &str) -> Option<(String, i8)> {
    let none = BTreeMap::new();
    let (value, _) = config_value(defaults, &none, key)?;
    let source = if config_value(builtin, &none, key).is_some_and(|(builtin_value, _)| builtin_value == value) {
        SOURCE_DEFAULT
    } else {
        SOURCE_STATIC_BROKER
    };
    Some((value, source))
}

pub fn describe(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: DescribeConfigsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let defaults = ctx.config.default_log_config();
    let builtin = LogConfig::default();
    let mut results = Vec::with_capacity(body.resources.len());
    for resource in &body.resources {
        let name = resource.resource_name.to_string();
        let mut result = DescribeConfigsResult::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name.clone());
        let overrides = match resource.resource_type {
            RESOURCE_TOPIC => match ctx.topics.borrow().get(&name) {
                Some(meta) => Some(meta.configs.clone()),
                None => {
                    let code = if validate_topic_name(&name).is_err() {
                        ErrorCode::InvalidTopicException
                    } else {
                        ErrorCode::UnknownTopicOrPartition
                    };
                    result.error_code = code.code();
                    result.error_message = Some(str_bytes(&format!("topic {name} does not exist")));
                    None
                }
            },
            RESOURCE_BROKER => Some(Default::default()),
            other => {
                result.error_code = ErrorCode::InvalidRequest.code();
                result.error_message = Some(str_bytes(&format!("resource type {other} is not supported")));
                None
            }
        };
        if let Some(overrides) = overrides {
            let keys = resource.configuration_keys.as_ref();
            for key in TOPIC_CONFIG_KEYS {
                let shown_name =
                    if resource.resource_type == RESOURCE_BROKER { broker_name(key.name) } else { key.name };
                if keys.is_some_and(|keys| !keys.iter().any(|k| k.as_str() == shown_name)) {
                    continue;
                }
                let Some((value, is_default)) = config_value(&defaults, &overrides, key.name) else { continue };
                let Some((broker_value, default_source)) = broker_default(&defaults, &builtin, key.name) else {
                    continue;
                };
                let mut entry = DescribeConfigsResourceResult::default()
                    .with_name(str_bytes(shown_name))
                    .with_value(Some(str_bytes(&value)))
                    .with_read_only(resource.resource_type == RESOURCE_BROKER)
                    .with_config_source(if is_default { default_source } else { SOURCE_TOPIC });
                if body.include_synonyms {
                    // As Kafka lists them: the value in effect first, then
                    // what it overrides.
                    if !is_default {
                        entry.synonyms.push(synonym(key.name, &value, SOURCE_TOPIC));
                    }
                    entry.synonyms.push(synonym(broker_name(key.name), &broker_value, default_source));
                }
                if request.api_version >= 3 {
                    entry.config_type = config_type(key.name);
                    if body.include_documentation {
                        entry.documentation = Some(str_bytes(key.doc));
                    }
                }
                result.configs.push(entry);
            }
        }
        results.push(result);
    }
    respond(request, &DescribeConfigsResponse::default().with_results(results))
}

fn synonym(name: &str, value: &str, source: i8) -> DescribeConfigsSynonym {
    DescribeConfigsSynonym::default().with_name(str_bytes(name)).with_value(Some(str_bytes(value))).with_source(source)
}

pub async fn incremental_alter(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: IncrementalAlterConfigsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut responses = Vec::with_capacity(body.resources.len());
    for resource in &body.resources {
        let mut set = Vec::new();
        let mut delete = Vec::new();
        let mut invalid = None;
        for config in &resource.configs {
            let name = config.name.to_string();
            match config.config_operation {
                0 => match &config.value {
                    Some(value) => set.push((name, value.to_string())),
                    None => invalid = Some(format!("SET of {name} needs a value")),
                },
                1 => delete.push(name),
                op => {
                    invalid = Some(format!("operation {op} on {name} is not supported for these single-valued configs"))
                }
            }
        }
        let change = Change { set, delete, replace: false, invalid, validate_only: body.validate_only };
        let (error_code, error_message) = alter_one(ctx, resource.resource_type, &resource.resource_name, change).await;
        responses.push(
            AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(error_code)
                .with_error_message(error_message),
        );
    }
    respond(request, &IncrementalAlterConfigsResponse::default().with_responses(responses))
}

/// AlterConfigs: each topic's overrides become exactly the configs named
/// (a null value names none).
pub async fn alter(ctx: &Rc<ShardContext>, request: &Request) -> Outcome {
    let body: AlterConfigsRequest = match decode(request) {
        Ok(body) => body,
        Err(outcome) => return outcome,
    };
    let mut responses = Vec::with_capacity(body.resources.len());
    for resource in &body.resources {
        let set = resource
            .configs
            .iter()
            .filter_map(|config| config.value.as_ref().map(|value| (config.name.to_string(), value.to_string())))
            .collect();
        let change =
            Change { set, delete: Vec::new(), replace: true, invalid: None, validate_only: body.validate_only };
        let (error_code, error_message) = alter_one(ctx, resource.resource_type, &resource.resource_name, change).await;
        responses.push(
            alter_configs_response::AlterConfigsResourceResponse::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name.clone())
                .with_error_code(error_code)
                .with_error_message(error_message),
        );
    }
    respond(request, &AlterConfigsResponse::default().with_responses(responses))
}

/// One resource's change, as both alter APIs ask for it.
struct Change {
    set: Vec<(String, String)>,
    delete: Vec<String>,
    replace: bool,
    /// Why the request itself is invalid, found while reading it.
    invalid: Option<String>,
    validate_only: bool,
}

/// Applies `change` to one resource through the controller: its error code
/// and message.
async fn alter_one(
    ctx: &Rc<ShardContext>,
    resource_type: i8,
    resource_name: &StrBytes,
    change: Change,
) -> (i16, Option<StrBytes>) {
    if resource_type != RESOURCE_TOPIC {
        return (ErrorCode::InvalidRequest.code(), Some(str_bytes("only topic configs can be altered")));
    }
    if let Some(reason) = change.invalid {
        return (ErrorCode::InvalidConfig.code(), Some(str_bytes(&reason)));
    }
    let request = ControllerRequest::AlterConfigs {
        topic: resource_name.to_string(),
        set: change.set,
        delete: change.delete,
        replace: change.replace,
        validate_only: change.validate_only,
    };
    match ctx.request_change(request).await.into_iter().next() {
        Some(outcome) => (outcome.error_code, outcome.message.as_deref().map(str_bytes)),
        None => (ErrorCode::None.code(), None),
    }
}
