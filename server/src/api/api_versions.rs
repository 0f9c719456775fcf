//! ApiVersions: what this broker serves, from [`super::SUPPORTED`].
//!
//! The response header is always version 0 (no tagged fields), even for
//! the flexible v3 body, as the protocol requires for this API; the v3
//! body's optional tagged fields (features) are left out, which older
//! librdkafka (2.0.2, Debian's kcat) parses correctly.

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use super::{respond_as, Outcome, SUPPORTED};
use crate::errors::ErrorCode;
use crate::net::frame::Request;

fn response(error: ErrorCode) -> ApiVersionsResponse {
    let api_keys = SUPPORTED
        .iter()
        .map(|&(key, min, max)| {
            ApiVersion::default().with_api_key(key as i16).with_min_version(min).with_max_version(max)
        })
        .collect();
    ApiVersionsResponse::default().with_error_code(error.code()).with_api_keys(api_keys)
}

pub fn handle(request: &Request) -> Outcome {
    respond_as(request, request.api_version, &response(ErrorCode::None))
}

/// A client asked for a newer ApiVersions than we serve: answer in v0 with
/// UNSUPPORTED_VERSION and the list, so it can retry with a version we know.
pub fn unsupported_version(request: &Request) -> Outcome {
    respond_as(request, 0, &response(ErrorCode::UnsupportedVersion))
}
