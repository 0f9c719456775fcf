//! Kafka APIs: the table of what pinion advertises, and dispatch.
//!
//! [`SUPPORTED`] is the only place that says which APIs and versions work;
//! ApiVersions advertises exactly it, and [`handle`] dispatches exactly it.
//! A request for anything else is answered the way Kafka does: ApiVersions
//! with UNSUPPORTED_VERSION (and the list, so the client can retry), every
//! other API with a logged disconnect, since the protocol has no way to
//! encode an error in a response version the broker does not know.

pub mod api_versions;
pub mod configs;
pub mod create_partitions;
pub mod create_topics;
pub mod delete_topics;
pub mod describe_cluster;
pub mod fetch;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::net::frame::Request;
use crate::net::send::Response;
use crate::shard::ShardContext;

/// What becomes of a request.
#[derive(Debug)]
pub enum Outcome {
    Respond(Response),
    /// acks=0 produce: Kafka sends nothing back.
    NoResponse,
    /// Log the reason and close the connection.
    Disconnect(String),
}

/// APIs and version ranges pinion really serves.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 11),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 0, 12),
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::CreateTopics, 2, 7),
    (ApiKey::DeleteTopics, 1, 6),
    (ApiKey::DescribeConfigs, 1, 4),
    (ApiKey::CreatePartitions, 0, 3),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
];

pub fn supported_versions(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, min, max)| (min, max))
}

pub fn api_name(key: ApiKey) -> &'static str {
    match key {
        ApiKey::Produce => "Produce",
        ApiKey::Fetch => "Fetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Metadata => "Metadata",
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::CreateTopics => "CreateTopics",
        ApiKey::DeleteTopics => "DeleteTopics",
        ApiKey::DescribeConfigs => "DescribeConfigs",
        ApiKey::CreatePartitions => "CreatePartitions",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        _ => "Other",
    }
}

/// Serves one request.
pub async fn handle(ctx: &Rc<ShardContext>, request: Request) -> Outcome {
    let key = request.api_key;
    let version = request.api_version;
    let Some((min, max)) = supported_versions(key) else {
        return Outcome::Disconnect(format!("api {key:?} is not supported by pinion"));
    };
    if version < min || version > max {
        if key == ApiKey::ApiVersions {
            return api_versions::unsupported_version(&request);
        }
        return Outcome::Disconnect(format!("{key:?} v{version} is not supported (supported: v{min}-v{max})"));
    }
    match key {
        ApiKey::ApiVersions => api_versions::handle(&request),
        ApiKey::Metadata => metadata::handle(ctx, &request).await,
        ApiKey::Produce => produce::handle(ctx, &request).await,
        ApiKey::Fetch => fetch::handle(ctx, &request).await,
        ApiKey::ListOffsets => list_offsets::handle(ctx, &request).await,
        ApiKey::CreateTopics => create_topics::handle(ctx, &request).await,
        ApiKey::DeleteTopics => delete_topics::handle(ctx, &request).await,
        ApiKey::CreatePartitions => create_partitions::handle(ctx, &request).await,
        ApiKey::DescribeConfigs => configs::describe(ctx, &request),
        ApiKey::IncrementalAlterConfigs => configs::incremental_alter(ctx, &request).await,
        ApiKey::DescribeCluster => describe_cluster::handle(ctx, &request),
        other => Outcome::Disconnect(format!("no handler for {other:?}")),
    }
}

/// Decodes a request body; an undecodable body closes the connection.
pub fn decode<T: Decodable>(request: &Request) -> Result<T, Outcome> {
    let mut body = request.body.clone();
    T::decode(&mut body, request.api_version).map_err(|e| {
        Outcome::Disconnect(format!("undecodable {:?} v{} request: {e}", request.api_key, request.api_version))
    })
}

/// Encodes a response with its header for `request`'s version.
pub fn respond<T: Encodable>(request: &Request, body: &T) -> Outcome {
    respond_as(request, request.api_version, body)
}

pub fn respond_as<T: Encodable>(request: &Request, version: i16, body: &T) -> Outcome {
    let mut buf = BytesMut::with_capacity(128);
    let header = ResponseHeader::default().with_correlation_id(request.correlation_id);
    let header_version = request.api_key.response_header_version(version);
    if let Err(e) = header.encode(&mut buf, header_version).and_then(|_| body.encode(&mut buf, version)) {
        // Only a bug gets here (a field out of range for the version).
        tracing::error!(api = ?request.api_key, version, error = %e, "cannot encode response");
        return Outcome::Disconnect(format!("cannot encode {:?} v{version} response: {e}", request.api_key));
    }
    Outcome::Respond(Response::from_bytes(buf.freeze()))
}

pub fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_string())
}
