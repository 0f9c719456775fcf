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
pub mod groups;
pub mod init_producer_id;
pub mod list_offsets;
pub mod metadata;
pub mod produce;

use std::rc::Rc;

use bytes::BytesMut;
use kafka_protocol::messages::{ApiKey, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::net::frame::Request;
use crate::net::order::DispatchTurn;
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
    (ApiKey::AlterConfigs, 0, 2),
    (ApiKey::IncrementalAlterConfigs, 0, 1),
    (ApiKey::DescribeCluster, 0, 1),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 0, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::DeleteGroups, 0, 2),
    (ApiKey::OffsetDelete, 0, 0),
    (ApiKey::InitProducerId, 0, 4),
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
        ApiKey::AlterConfigs => "AlterConfigs",
        ApiKey::IncrementalAlterConfigs => "IncrementalAlterConfigs",
        ApiKey::DescribeCluster => "DescribeCluster",
        ApiKey::FindCoordinator => "FindCoordinator",
        ApiKey::JoinGroup => "JoinGroup",
        ApiKey::SyncGroup => "SyncGroup",
        ApiKey::Heartbeat => "Heartbeat",
        ApiKey::LeaveGroup => "LeaveGroup",
        ApiKey::OffsetCommit => "OffsetCommit",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::DeleteGroups => "DeleteGroups",
        ApiKey::OffsetDelete => "OffsetDelete",
        ApiKey::InitProducerId => "InitProducerId",
        _ => "Other",
    }
}

/// Serves one request.
/// Serves one request. `produce_turn` is the request's place in its
/// connection's append order (Produce requests only; see `net::order`).
pub async fn handle(ctx: &Rc<ShardContext>, request: Request, produce_turn: Option<DispatchTurn>) -> Outcome {
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
        ApiKey::Produce => produce::handle(ctx, request, produce_turn).await,
        ApiKey::Fetch => fetch::handle(ctx, &request).await,
        ApiKey::ListOffsets => list_offsets::handle(ctx, &request).await,
        ApiKey::CreateTopics => create_topics::handle(ctx, &request).await,
        ApiKey::DeleteTopics => delete_topics::handle(ctx, &request).await,
        ApiKey::CreatePartitions => create_partitions::handle(ctx, &request).await,
        ApiKey::DescribeConfigs => configs::describe(ctx, &request),
        ApiKey::AlterConfigs => configs::alter(ctx, &request).await,
        ApiKey::IncrementalAlterConfigs => configs::incremental_alter(ctx, &request).await,
        ApiKey::DescribeCluster => describe_cluster::handle(ctx, &request),
        ApiKey::FindCoordinator => groups::find_coordinator(ctx, &request),
        ApiKey::JoinGroup => groups::join_group(ctx, &request).await,
        ApiKey::SyncGroup => groups::sync_group(ctx, &request).await,
        ApiKey::Heartbeat => groups::heartbeat(ctx, &request).await,
        ApiKey::LeaveGroup => groups::leave_group(ctx, &request).await,
        ApiKey::OffsetCommit => groups::offset_commit(ctx, &request).await,
        ApiKey::OffsetFetch => groups::offset_fetch(ctx, &request).await,
        ApiKey::ListGroups => groups::list_groups(ctx, &request).await,
        ApiKey::DescribeGroups => groups::describe_groups(ctx, &request).await,
        ApiKey::DeleteGroups => groups::delete_groups(ctx, &request).await,
        ApiKey::OffsetDelete => groups::offset_delete(ctx, &request).await,
        ApiKey::InitProducerId => init_producer_id::handle(ctx, &request).await,
        other => Outcome::Disconnect(format!("no handler for {other:?}")),
    }
}

/// Decodes the body of any advertised request without serving it (for the
/// fuzz target and tests): the same decoders the handlers use.
pub fn decode_body(request: &Request) -> Result<(), String> {
    use kafka_protocol::messages::*;
    fn check<T: Decodable>(request: &Request) -> Result<(), String> {
        decode::<T>(request).map(|_| ()).map_err(|outcome| format!("{outcome:?}"))
    }
    let Some((min, max)) = supported_versions(request.api_key) else {
        return Err(format!("{:?} is not supported", request.api_key));
    };
    if request.api_version < min || request.api_version > max {
        return Err(format!("{:?} v{} is not supported", request.api_key, request.api_version));
    }
    match request.api_key {
        ApiKey::Produce => check::<ProduceRequest>(request),
        ApiKey::Fetch => check::<FetchRequest>(request),
        ApiKey::ListOffsets => check::<ListOffsetsRequest>(request),
        ApiKey::Metadata => check::<MetadataRequest>(request),
        ApiKey::ApiVersions => check::<ApiVersionsRequest>(request),
        ApiKey::CreateTopics => check::<CreateTopicsRequest>(request),
        ApiKey::DeleteTopics => check::<DeleteTopicsRequest>(request),
        ApiKey::DescribeConfigs => check::<DescribeConfigsRequest>(request),
        ApiKey::CreatePartitions => check::<CreatePartitionsRequest>(request),
        ApiKey::AlterConfigs => check::<AlterConfigsRequest>(request),
        ApiKey::IncrementalAlterConfigs => check::<IncrementalAlterConfigsRequest>(request),
        ApiKey::DescribeCluster => check::<DescribeClusterRequest>(request),
        ApiKey::FindCoordinator => check::<FindCoordinatorRequest>(request),
        ApiKey::JoinGroup => check::<JoinGroupRequest>(request),
        ApiKey::SyncGroup => check::<SyncGroupRequest>(request),
        ApiKey::Heartbeat => check::<HeartbeatRequest>(request),
        ApiKey::LeaveGroup => check::<LeaveGroupRequest>(request),
        ApiKey::OffsetCommit => check::<OffsetCommitRequest>(request),
        ApiKey::OffsetFetch => check::<OffsetFetchRequest>(request),
        ApiKey::ListGroups => check::<ListGroupsRequest>(request),
        ApiKey::DescribeGroups => check::<DescribeGroupsRequest>(request),
        ApiKey::DeleteGroups => check::<DeleteGroupsRequest>(request),
        ApiKey::OffsetDelete => check::<OffsetDeleteRequest>(request),
        ApiKey::InitProducerId => check::<InitProducerIdRequest>(request),
        other => Err(format!("no decoder for {other:?}")),
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

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use kafka_protocol::messages::*;
    use kafka_protocol::protocol::Encodable;

    fn encoded<T: Encodable + Default>(key: ApiKey, version: i16) -> Request {
        let mut body = BytesMut::new();
        T::default().encode(&mut body, version).unwrap();
        Request { api_key: key, api_version: version, correlation_id: 1, client_id: None, body: body.freeze() }
    }

    /// Every advertised API and version has a working decoder, and a body
    /// cut short is an error, never a panic.
    #[test]
    fn every_advertised_version_decodes_and_truncation_is_an_error() {
        for &(key, min, max) in SUPPORTED {
            for version in min..=max {
                let request = match key {
                    ApiKey::Produce => encoded::<ProduceRequest>(key, version),
                    ApiKey::Fetch => encoded::<FetchRequest>(key, version),
                    ApiKey::ListOffsets => encoded::<ListOffsetsRequest>(key, version),
                    ApiKey::Metadata => encoded::<MetadataRequest>(key, version),
                    ApiKey::ApiVersions => encoded::<ApiVersionsRequest>(key, version),
                    ApiKey::CreateTopics => encoded::<CreateTopicsRequest>(key, version),
                    ApiKey::DeleteTopics => encoded::<DeleteTopicsRequest>(key, version),
                    ApiKey::DescribeConfigs => encoded::<DescribeConfigsRequest>(key, version),
                    ApiKey::CreatePartitions => encoded::<CreatePartitionsRequest>(key, version),
                    ApiKey::AlterConfigs => encoded::<AlterConfigsRequest>(key, version),
                    ApiKey::IncrementalAlterConfigs => encoded::<IncrementalAlterConfigsRequest>(key, version),
                    ApiKey::DescribeCluster => encoded::<DescribeClusterRequest>(key, version),
                    ApiKey::FindCoordinator => encoded::<FindCoordinatorRequest>(key, version),
                    ApiKey::JoinGroup => encoded::<JoinGroupRequest>(key, version),
                    ApiKey::SyncGroup => encoded::<SyncGroupRequest>(key, version),
                    ApiKey::Heartbeat => encoded::<HeartbeatRequest>(key, version),
                    ApiKey::LeaveGroup => encoded::<LeaveGroupRequest>(key, version),
                    ApiKey::OffsetCommit => encoded::<OffsetCommitRequest>(key, version),
                    ApiKey::OffsetFetch => encoded::<OffsetFetchRequest>(key, version),
                    ApiKey::ListGroups => encoded::<ListGroupsRequest>(key, version),
                    ApiKey::DescribeGroups => encoded::<DescribeGroupsRequest>(key, version),
                    ApiKey::DeleteGroups => encoded::<DeleteGroupsRequest>(key, version),
                    ApiKey::OffsetDelete => encoded::<OffsetDeleteRequest>(key, version),
                    ApiKey::InitProducerId => encoded::<InitProducerIdRequest>(key, version),
                    other => panic!("advertised {other:?} without a test encoder"),
                };
                decode_body(&request).unwrap_or_else(|e| panic!("{key:?} v{version}: {e}"));
                for cut in 0..request.body.len() {
                    let short =
                        Request { body: Bytes::copy_from_slice(&request.body[..cut]), ..request_clone(&request) };
                    // Decoding a prefix must not panic; most prefixes are errors.
                    let _ = decode_body(&short);
                }
            }
        }
    }

    fn request_clone(request: &Request) -> Request {
        Request {
            api_key: request.api_key,
            api_version: request.api_version,
            correlation_id: request.correlation_id,
            client_id: request.client_id.clone(),
            body: request.body.clone(),
        }
    }
}
