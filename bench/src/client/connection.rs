//! One blocking TCP connection to a Kafka broker: framing, request headers,
//! correlation ids, and the API versions both sides speak.
//!
//! Every connect, read and write has a timeout, so a broker that stops
//! answering ends the run with an error instead of hanging it. A
//! connection can be split into a [`FrameWriter`] and a [`FrameReader`]
//! (the same socket, cloned) so a producer keeps many requests in flight
//! while a second thread reads the answers in order.
//!
//! Frame format (Kafka's): a 4-byte big-endian size, then the request
//! header (api key, version, correlation id, client id, tagged fields from
//! header v2) and the body; responses: size, correlation id (plus tagged
//! fields from header v1), body.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use crate::client::produce_frame::ProduceFrame;

pub const CLIENT_ID: &str = "pinion-bench";
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A request unanswered for this long fails the run, unless
/// [`set_request_timeout`] chose another bound.
pub const REQUEST_TIMEOUT_DEFAULT: Duration = Duration::from_secs(15);
static REQUEST_TIMEOUT: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();

/// Sets the request timeout of every connection opened afterwards (once
/// per process, before the first connection).
pub fn set_request_timeout(timeout: Duration) {
    assert!(!timeout.is_zero(), "a zero timeout would mean no timeout to the socket");
    let _ = REQUEST_TIMEOUT.set(timeout);
}

pub fn request_timeout() -> Duration {
    *REQUEST_TIMEOUT.get_or_init(|| REQUEST_TIMEOUT_DEFAULT)
}
/// Largest response frame accepted (a fetch is bounded well below it).
pub const FRAME_BYTES_MAX: usize = 256 << 20;

/// The versions this client encodes for each API it uses: the ranges it
/// was written and tested for (Produce stops before topic ids replaced
/// topic names, in v13). Fetch stops at v11, the last version without
/// tagged fields: tansu 0.6 answers Fetch v12 with a top-level tagged field
/// that v12 does not define, which a strict decoder must refuse.
const CLIENT_VERSIONS: &[(ApiKey, i16, i16)] = &[
    (ApiKey::Produce, 3, 12),
    (ApiKey::Fetch, 4, 11),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::CreateTopics, 2, 7),
];

/// What the broker said in ApiVersions, and the versions chosen from it.
#[derive(Debug, Clone, Default)]
pub struct BrokerVersions {
    /// (api key, min, max) as the broker advertised them.
    pub advertised: Vec<(i16, i16, i16)>,
    /// The ApiVersions version that was answered.
    pub api_versions_version: i16,
}

impl BrokerVersions {
    /// The highest version both sides speak, or `None` when the broker
    /// lacks the API (or only speaks versions this client does not).
    pub fn chosen(&self, key: ApiKey) -> Option<i16> {
        let &(_, client_min, client_max) = CLIENT_VERSIONS.iter().find(|(k, _, _)| *k == key)?;
        let &(_, broker_min, broker_max) = self.advertised.iter().find(|(k, _, _)| *k == key as i16)?;
        let version = client_max.min(broker_max);
        (version >= client_min.max(broker_min)).then_some(version)
    }

    /// Like [`Self::chosen`], as an error naming the API when missing.
    pub fn require(&self, key: ApiKey) -> Result<i16, crate::Error> {
        self.chosen(key).ok_or_else(|| {
            let &(_, min, max) = CLIENT_VERSIONS.iter().find(|(k, _, _)| *k == key).expect("API used by the client");
            format!("the broker does not serve {key:?} versions {min} to {max}, which pinion-bench needs").into()
        })
    }

    /// "ApiVersions v3, 23 apis".
    pub fn describe(&self) -> String {
        format!("ApiVersions v{}, {} apis", self.api_versions_version, self.advertised.len())
    }
}

/// Resolves `host:port` to its first address.
pub fn resolve(address: &str) -> Result<SocketAddr, crate::Error> {
    address
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve broker address {address}: {e}"))?
        .next()
        .ok_or_else(|| format!("broker address {address} resolves to nothing").into())
}

/// Encodes one request frame (size prefix included) into `out`.
pub fn encode_request<T: Encodable>(
    out: &mut BytesMut,
    key: ApiKey,
    version: i16,
    correlation_id: i32,
    body: &T,
) -> Result<(), crate::Error> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)));
    header
        .encode(out, key.request_header_version(version))
        .and_then(|_| body.encode(out, version))
        .map_err(|e| format!("cannot encode {key:?} v{version} request: {e}"))?;
    let size = (out.len() - start - 4) as i32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

/// The reading half: response frames in the order requests were written.
#[derive(Debug)]
pub struct FrameReader {
    stream: TcpStream,
    address: String,
}

impl FrameReader {
    /// Reads one response frame and checks its correlation id; returns the
    /// body after the response header.
    pub fn read_response(&mut self, key: ApiKey, version: i16, correlation_id: i32) -> Result<Bytes, crate::Error> {
        let mut size = [0u8; 4];
        self.stream.read_exact(&mut size).map_err(|e| self.io_error("reading a response from", e))?;
        let size = i32::from_be_bytes(size);
        if size < 4 || size as usize > FRAME_BYTES_MAX {
            return Err(format!("broker {} sent a response frame of {size} bytes", self.address).into());
        }
        // Read into spare capacity: zeroing a 32 MiB fetch answer first cost
        // the consumer as much CPU as copying it.
        let mut body = Vec::with_capacity(size as usize);
        (&mut self.stream)
            .take(size as u64)
            .read_to_end(&mut body)
            .map_err(|e| self.io_error("reading a response from", e))?;
        if body.len() != size as usize {
            let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
            return Err(self.io_error("reading a response from", eof));
        }
        let mut body = Bytes::from(body);
        let header = ResponseHeader::decode(&mut body, key.response_header_version(version))
            .map_err(|e| format!("broker {} sent an undecodable {key:?} response header: {e}", self.address))?;
        if header.correlation_id != correlation_id {
            return Err(format!(
                "broker {} answered correlation id {} where {correlation_id} ({key:?}) was expected",
                self.address, header.correlation_id
            )
            .into());
        }
        Ok(body)
    }

    fn io_error(&self, what: &str, e: std::io::Error) -> crate::Error {
        io_error(what, &self.address, e)
    }
}

fn io_error(what: &str, address: &str, e: std::io::Error) -> crate::Error {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            format!("{what} broker {address}: no answer within {:.1} s", request_timeout().as_secs_f64()).into()
        }
        std::io::ErrorKind::UnexpectedEof => format!("{what} broker {address}: connection closed by the broker").into(),
        _ => format!("{what} broker {address}: {e}").into(),
    }
}

/// The writing half.
#[derive(Debug)]
pub struct FrameWriter {
    stream: TcpStream,
    address: String,
    next_correlation_id: i32,
}

impl FrameWriter {
    pub fn next_correlation_id(&mut self) -> i32 {
        let id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1) & i32::MAX;
        id
    }

    pub fn write_frame(&mut self, frame: &[u8]) -> Result<(), crate::Error> {
        self.stream.write_all(frame).map_err(|e| io_error("sending a request to", &self.address, e))
    }

    /// Writes a produce request without copying its batches.
    pub fn write_produce(&mut self, frame: &ProduceFrame) -> Result<(), crate::Error> {
        frame.write_to(&mut self.stream).map_err(|e| io_error("sending a request to", &self.address, e))
    }
}

/// A connection used one request at a time (admin requests, fetches).
#[derive(Debug)]
pub struct Connection {
    pub writer: FrameWriter,
    pub reader: FrameReader,
    pub versions: BrokerVersions,
}

impl Connection {
    /// Connects and asks ApiVersions (v3, falling back to v0 when the
    /// broker refuses it).
    pub fn open(address: &str) -> Result<Self, crate::Error> {
        let socket_address = resolve(address)?;
        let stream = TcpStream::connect_timeout(&socket_address, CONNECT_TIMEOUT)
            .map_err(|e| io_error("cannot connect to", address, e))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(request_timeout()))?;
        stream.set_write_timeout(Some(request_timeout()))?;
        let reader = FrameReader { stream: stream.try_clone()?, address: address.to_string() };
        let writer = FrameWriter { stream, address: address.to_string(), next_correlation_id: 1 };
        let mut connection = Self { writer, reader, versions: BrokerVersions::default() };
        connection.versions = connection.api_versions()?;
        Ok(connection)
    }

    pub fn address(&self) -> &str {
        &self.writer.address
    }

    fn api_versions(&mut self) -> Result<BrokerVersions, crate::Error> {
        const UNSUPPORTED_VERSION: i16 = 35;
        let mut last_error = 0;
        for version in [3, 0] {
            let request = ApiVersionsRequest::default();
            let request = if version >= 3 {
                request
                    .with_client_software_name(StrBytes::from_static_str(CLIENT_ID))
                    .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")))
            } else {
                request
            };
            let response: ApiVersionsResponse = self.call(ApiKey::ApiVersions, version, &request)?;
            if response.error_code == UNSUPPORTED_VERSION {
                last_error = response.error_code;
                continue;
            }
            if response.error_code != 0 {
                return Err(format!(
                    "broker {} refused ApiVersions: {}",
                    self.address(),
                    error_name(response.error_code)
                )
                .into());
            }
            let advertised = response.api_keys.iter().map(|a| (a.api_key, a.min_version, a.max_version)).collect();
            return Ok(BrokerVersions { advertised, api_versions_version: version });
        }
        Err(format!("broker {} refused ApiVersions v3 and v0: {}", self.address(), error_name(last_error)).into())
    }

    /// Sends one request and waits for its response.
    pub fn call<Req: Encodable, Resp: Decodable>(
        &mut self,
        key: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, crate::Error> {
        let correlation_id = self.writer.next_correlation_id();
        let mut frame = BytesMut::with_capacity(256);
        encode_request(&mut frame, key, version, correlation_id, request)?;
        self.writer.write_frame(&frame)?;
        let mut body = self.reader.read_response(key, version, correlation_id)?;
        Resp::decode(&mut body, version).map_err(|e| {
            format!("broker {} sent an undecodable {key:?} v{version} response: {e}", self.address()).into()
        })
    }

    /// Splits into the two halves for pipelined use.
    pub fn split(self) -> (FrameWriter, FrameReader, BrokerVersions) {
        (self.writer, self.reader, self.versions)
    }
}

/// A Kafka error code's name ("NOT_LEADER_OR_FOLLOWER (6)").
pub fn error_name(code: i16) -> String {
    match kafka_protocol::ResponseError::try_from_code(code) {
        Some(error) => format!("{} ({code})", screaming_snake(&format!("{error:?}"))),
        None => "NONE (0)".into(),
    }
}

/// Whether a client may retry after this error code (Kafka's own list).
pub fn error_is_retriable(code: i16) -> bool {
    kafka_protocol::ResponseError::try_from_code(code).is_some_and(|e| e.is_retriable())
}

fn screaming_snake(camel: &str) -> String {
    let mut out = String::with_capacity(camel.len() + 8);
    for (i, c) in camel.chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_names_are_kafkas() {
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER (6)");
        assert_eq!(error_name(0), "NONE (0)");
        assert!(error_is_retriable(6));
        assert!(!error_is_retriable(87));
    }

    #[test]
    fn chosen_version_is_the_highest_common_one() {
        let versions = BrokerVersions {
            advertised: vec![(ApiKey::Produce as i16, 3, 11), (ApiKey::Fetch as i16, 13, 17)],
            api_versions_version: 3,
        };
        assert_eq!(versions.chosen(ApiKey::Produce), Some(11));
        assert_eq!(versions.chosen(ApiKey::Fetch), None);
        assert_eq!(versions.chosen(ApiKey::Metadata), None);
        assert!(versions.require(ApiKey::Metadata).unwrap_err().to_string().contains("Metadata"));
    }
}
