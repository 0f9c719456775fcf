//! Request frames: a 4-byte big-endian size, then the request header and
//! body. Frames are checked before anything is decoded: a negative or
//! oversized length, a header shorter than 8 bytes, an unknown API key, or a
//! header that does not decode is a [`FrameError`], which the connection
//! logs before it disconnects (Kafka has no error code for these).

use std::fmt;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::Decodable;

/// A request whose header decoded.
#[derive(Debug)]
pub struct Request {
    pub api_key: ApiKey,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// The body, after the header.
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// The size prefix is negative or above `socket_request_max_bytes`.
    Size {
        size: i64,
        max: usize,
    },
    /// Fewer than the 8 bytes every request header starts with.
    Short {
        len: usize,
    },
    UnknownApiKey {
        api_key: i16,
        correlation_id: i32,
    },
    BadHeader {
        api_key: i16,
        reason: String,
    },
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Size { size, max } => {
                write!(f, "request frame of {size} bytes is outside 8..={max} (socket_request_max_bytes)")
            }
            Self::Short { len } => write!(f, "request frame of {len} bytes is shorter than a request header"),
            Self::UnknownApiKey { api_key, correlation_id } => {
                write!(f, "unknown api key {api_key} (correlation id {correlation_id})")
            }
            Self::BadHeader { api_key, reason } => {
                write!(f, "undecodable request header for api key {api_key}: {reason}")
            }
        }
    }
}

/// Checks a frame size prefix.
pub fn check_size(size: i32, max: usize) -> Result<usize, FrameError> {
    if size < 8 || size as i64 > max as i64 {
        return Err(FrameError::Size { size: i64::from(size), max });
    }
    Ok(size as usize)
}

/// Whether a frame (without its size prefix) is a Produce request, judged
/// by its api key alone.
pub fn is_produce(frame: &[u8]) -> bool {
    frame.len() >= 2 && i16::from_be_bytes([frame[0], frame[1]]) == ApiKey::Produce as i16
}

/// Decodes the request header of a frame (without its size prefix).
pub fn parse_request(frame: Bytes) -> Result<Request, FrameError> {
    if frame.len() < 8 {
        return Err(FrameError::Short { len: frame.len() });
    }
    let api_key_raw = i16::from_be_bytes([frame[0], frame[1]]);
    let api_version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let api_key = ApiKey::try_from(api_key_raw)
        .map_err(|_| FrameError::UnknownApiKey { api_key: api_key_raw, correlation_id })?;
    let header_version = api_key.request_header_version(api_version);
    let mut buf = frame;
    let header = RequestHeader::decode(&mut buf, header_version)
        .map_err(|e| FrameError::BadHeader { api_key: api_key_raw, reason: e.to_string() })?;
    Ok(Request { api_key, api_version, correlation_id, client_id: header.client_id.map(|c| c.to_string()), body: buf })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_frames_are_recognised_by_their_api_key() {
        assert!(is_produce(&[0, 0, 0, 9]));
        assert!(!is_produce(&[0, 1, 0, 9]));
        assert!(!is_produce(&[0]));
    }

    #[test]
    fn sizes_outside_the_limit_are_refused() {
        assert!(check_size(-1, 100).is_err());
        assert!(check_size(7, 100).is_err());
        assert!(check_size(101, 100).is_err());
        assert_eq!(check_size(100, 100), Ok(100));
    }

    #[test]
    fn header_garbage_is_an_error_not_a_panic() {
        assert!(matches!(parse_request(Bytes::from_static(&[0, 18])), Err(FrameError::Short { .. })));
        let unknown = Bytes::from_static(&[0x7f, 0x7f, 0, 0, 0, 0, 0, 9]);
        assert!(matches!(parse_request(unknown), Err(FrameError::UnknownApiKey { correlation_id: 9, .. })));
        // ApiVersions v3 (flexible header) whose client id length runs past the end.
        let truncated = Bytes::from_static(&[0, 18, 0, 3, 0, 0, 0, 1, 0, 50, b'a']);
        assert!(matches!(parse_request(truncated), Err(FrameError::BadHeader { .. })));
    }

    #[test]
    fn a_good_header_decodes() {
        // ApiVersions v0: key 18, version 0, correlation 7, client id "c".
        let frame = Bytes::from_static(&[0, 18, 0, 0, 0, 0, 0, 7, 0, 1, b'c']);
        let request = parse_request(frame).unwrap();
        assert_eq!(request.api_key, ApiKey::ApiVersions);
        assert_eq!(request.correlation_id, 7);
        assert_eq!(request.client_id.as_deref(), Some("c"));
        assert!(request.body.is_empty());
    }
}
