//! The records the group coordinator keeps in `__consumer_offsets`: the
//! encoding, the decoding, and the error a damaged record decodes to.
//!
//! The byte format is Kafka's own (`GroupMetadataManager`, schemas
//! `OffsetCommitKey/Value`, `GroupMetadataKey/Value`), so a log written by
//! pinion reads with Kafka's tools and the other way round. Every field is
//! big-endian; a string is an `int16` length then UTF-8 (length -1 = null,
//! only where the schema says nullable); bytes are an `int32` length then
//! the bytes; an array is an `int32` count then the elements. Key and value
//! each start with their own `int16` schema version:
//!
//! ```text
//! key    offset commit v0, v1   version | group: string | topic: string | partition: int32
//! key    group metadata v2      version | group: string
//!
//! value  offset commit v0, v2   version | offset: int64 | metadata: string
//!                               | commit_timestamp: int64
//!        offset commit v1       as v0, then expire_timestamp: int64
//!        offset commit v3       version | offset: int64 | leader_epoch: int32
//!                               | metadata: string | commit_timestamp: int64
//!
//! value  group metadata v0-v3   version | protocol_type: string | generation: int32
//!                               | protocol: nullable string | leader: nullable string
//!                               | current_state_timestamp: int64 (v2+) | members: [member]
//!        member                 member_id: string | group_instance_id: nullable string (v3+)
//!                               | client_id: string | client_host: string
//!                               | rebalance_timeout: int32 (v1+) | session_timeout: int32
//!                               | subscription: bytes | assignment: bytes
//! ```
//!
//! A record with no value is a tombstone: the offset, or the group's
//! metadata, is deleted (the topic is compacted, so only the last record of
//! each key survives). pinion writes key v1 / v2 and value v3 (v1 when an
//! offset carries an explicit expire timestamp, as Kafka does) and reads
//! every version above. Decoders check every length against what is left,
//! reject unknown versions, nulls in non-nullable fields, invalid UTF-8 and
//! trailing bytes, and never panic or allocate more than the input holds.

use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use super::offsets::OffsetAndMetadata;

/// Offset commit keys pinion writes (Kafka writes v1; v0 is read too).
pub const OFFSET_COMMIT_KEY_VERSION: i16 = 1;
/// The key version that marks a group metadata record.
pub const GROUP_METADATA_KEY_VERSION: i16 = 2;
/// Offset commit values pinion writes when no expire timestamp is set.
pub const OFFSET_COMMIT_VALUE_VERSION: i16 = 3;
/// Group metadata values pinion writes.
pub const GROUP_METADATA_VALUE_VERSION: i16 = 3;
/// Longest string the record format can hold (its length is an `int16`).
pub const STRING_BYTES_MAX: usize = i16::MAX as usize;

/// One `__consumer_offsets` record: key and value bytes; no value is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Record {
    /// The record of one committed offset.
    pub fn offset_commit(
        group_id: &str,
        topic: &str,
        partition: i32,
        offset: &OffsetAndMetadata,
    ) -> Result<Self, RecordError> {
        Ok(Self {
            key: encode_offset_commit_key(group_id, topic, partition)?,
            value: Some(encode_offset_commit_value(offset)?),
        })
    }

    /// The tombstone that deletes one committed offset.
    pub fn offset_commit_tombstone(group_id: &str, topic: &str, partition: i32) -> Result<Self, RecordError> {
        Ok(Self { key: encode_offset_commit_key(group_id, topic, partition)?, value: None })
    }

    /// The record of a group's membership and assignment.
    pub fn group_metadata(group_id: &str, value: &GroupMetadataValue) -> Result<Self, RecordError> {
        Ok(Self { key: encode_group_metadata_key(group_id)?, value: Some(encode_group_metadata_value(value)?) })
    }

    /// The tombstone that deletes a group's metadata.
    pub fn group_metadata_tombstone(group_id: &str) -> Result<Self, RecordError> {
        Ok(Self { key: encode_group_metadata_key(group_id)?, value: None })
    }
}

/// A decoded key: which kind of record, and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordKey {
    OffsetCommit { group_id: String, topic: String, partition: i32 },
    GroupMetadata { group_id: String },
}

/// The stored metadata of one group (Kafka's `GroupMetadataValue`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMetadataValue {
    /// "" when the group never had a member (Kafka stores `None` as "").
    pub protocol_type: String,
    pub generation_id: i32,
    pub protocol_name: Option<String>,
    pub leader_id: Option<String>,
    /// When the group last changed state; -1 when unknown (values before v2).
    pub current_state_timestamp_ms: i64,
    pub members: Vec<MemberMetadataValue>,
}

/// One member as stored in a group metadata record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberMetadataValue {
    pub member_id: String,
    pub group_instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the group's chosen protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

/// Why a record could not be encoded or decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordError {
    /// The input ended inside `field`.
    Truncated {
        field: &'static str,
    },
    /// A key whose version is none of 0, 1, 2.
    UnknownKeyVersion(i16),
    UnknownValueVersion {
        record: &'static str,
        version: i16,
    },
    /// A null (length -1) in a field the schema says is not nullable.
    Null {
        field: &'static str,
    },
    /// A negative length other than -1.
    InvalidLength {
        field: &'static str,
        length: i32,
    },
    InvalidUtf8 {
        field: &'static str,
    },
    /// Bytes left over after the last field.
    TrailingBytes {
        record: &'static str,
        count: usize,
    },
    /// A string longer than the `int16` length prefix can say (encoding only).
    StringTooLong {
        field: &'static str,
        length: usize,
    },
    /// Fields that decode but contradict each other.
    Inconsistent {
        reason: &'static str,
    },
}

impl fmt::Display for RecordError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { field } => write!(f, "record truncated in field {field}"),
            Self::UnknownKeyVersion(version) => {
                write!(f, "unknown __consumer_offsets key version {version}")
            }
            Self::UnknownValueVersion { record, version } => {
                write!(f, "unknown {record} value version {version}")
            }
            Self::Null { field } => write!(f, "null in non-nullable field {field}"),
            Self::InvalidLength { field, length } => {
                write!(f, "invalid length {length} in field {field}")
            }
            Self::InvalidUtf8 { field } => write!(f, "invalid UTF-8 in field {field}"),
            Self::TrailingBytes { record, count } => {
                write!(f, "{count} trailing bytes after {record}")
            }
            Self::StringTooLong { field, length } => {
                let max = STRING_BYTES_MAX;
                write!(f, "field {field} is {length} bytes; a record string holds {max}")
            }
            Self::Inconsistent { reason } => write!(f, "inconsistent record: {reason}"),
        }
    }
}

impl std::error::Error for RecordError {}

/// The key of an offset commit record (version 1).
pub fn encode_offset_commit_key(group_id: &str, topic: &str, partition: i32) -> Result<Bytes, RecordError> {
    let mut writer = Writer::with_capacity(2 + 2 + group_id.len() + 2 + topic.len() + 4);
    writer.i16(OFFSET_COMMIT_KEY_VERSION);
    writer.string("group", group_id)?;
    writer.string("topic", topic)?;
    writer.i32(partition);
    Ok(writer.finish())
}

/// The key of a group metadata record (version 2).
pub fn encode_group_metadata_key(group_id: &str) -> Result<Bytes, RecordError> {
    let mut writer = Writer::with_capacity(2 + 2 + group_id.len());
    writer.i16(GROUP_METADATA_KEY_VERSION);
    writer.string("group", group_id)?;
    Ok(writer.finish())
}

/// The value of an offset commit record: version 3, or version 1 when the
/// offset has an explicit expire timestamp (Kafka's choice; v1 has no
/// leader epoch).
pub fn encode_offset_commit_value(offset: &OffsetAndMetadata) -> Result<Bytes, RecordError> {
    let mut writer = Writer::with_capacity(2 + 8 + 4 + 2 + offset.metadata.len() + 8 + 8);
    match offset.expire_timestamp_ms {
        None => {
            writer.i16(OFFSET_COMMIT_VALUE_VERSION);
            writer.i64(offset.offset);
            writer.i32(offset.leader_epoch);
            writer.string("metadata", &offset.metadata)?;
            writer.i64(offset.commit_timestamp_ms);
        }
        Some(expire_timestamp_ms) => {
            writer.i16(1);
            writer.i64(offset.offset);
            writer.string("metadata", &offset.metadata)?;
            writer.i64(offset.commit_timestamp_ms);
            writer.i64(expire_timestamp_ms);
        }
    }
    Ok(writer.finish())
}

/// The value of a group metadata record (version 3).
pub fn encode_group_metadata_value(value: &GroupMetadataValue) -> Result<Bytes, RecordError> {
    // Capacity only: the fixed-size fields and length prefixes of a member
    // take 32 bytes, the rest is its strings and byte arrays.
    let members_len: usize = value.members.iter().map(MemberMetadataValue::encoded_len_estimate).sum();
    let mut writer = Writer::with_capacity(64 + value.protocol_type.len() + members_len);
    writer.i16(GROUP_METADATA_VALUE_VERSION);
    writer.string("protocol_type", &value.protocol_type)?;
    writer.i32(value.generation_id);
    writer.nullable_string("protocol", value.protocol_name.as_deref())?;
    writer.nullable_string("leader", value.leader_id.as_deref())?;
    writer.i64(value.current_state_timestamp_ms);
    writer.array_len("members", value.members.len())?;
    for member in &value.members {
        writer.string("member_id", &member.member_id)?;
        writer.nullable_string("group_instance_id", member.group_instance_id.as_deref())?;
        writer.string("client_id", &member.client_id)?;
        writer.string("client_host", &member.client_host)?;
        writer.i32(member.rebalance_timeout_ms);
        writer.i32(member.session_timeout_ms);
        writer.bytes("subscription", &member.subscription)?;
        writer.bytes("assignment", &member.assignment)?;
    }
    Ok(writer.finish())
}

impl MemberMetadataValue {
    fn encoded_len_estimate(&self) -> usize {
        let strings =
            [Some(&self.member_id), self.group_instance_id.as_ref(), Some(&self.client_id), Some(&self.client_host)];
        let strings_len: usize = strings.into_iter().flatten().map(String::len).sum();
        32 + strings_len + self.subscription.len() + self.assignment.len()
    }
}

/// Decodes a key of either kind; its version says which.
pub fn decode_key(key: &[u8]) -> Result<RecordKey, RecordError> {
    let mut reader = Reader::new(key);
    let version = reader.i16("key_version")?;
    let decoded = match version {
        0 | 1 => RecordKey::OffsetCommit {
            group_id: reader.string("group")?,
            topic: reader.string("topic")?,
            partition: reader.i32("partition")?,
        },
        GROUP_METADATA_KEY_VERSION => RecordKey::GroupMetadata { group_id: reader.string("group")? },
        other => return Err(RecordError::UnknownKeyVersion(other)),
    };
    reader.finish("key")?;
    Ok(decoded)
}

/// Decodes an offset commit value of version 0 to 3.
pub fn decode_offset_commit_value(value: &[u8]) -> Result<OffsetAndMetadata, RecordError> {
    let mut reader = Reader::new(value);
    let version = reader.i16("value_version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion { record: "offset commit", version });
    }
    let offset = reader.i64("offset")?;
    let leader_epoch = if version >= 3 { reader.i32("leader_epoch")? } else { -1 };
    let metadata = reader.string("metadata")?;
    let commit_timestamp_ms = reader.i64("commit_timestamp")?;
    let expire_timestamp_ms = if version == 1 {
        // Kafka: -1 is "no expire timestamp" even in a v1 value.
        Some(reader.i64("expire_timestamp")?).filter(|&t| t != -1)
    } else {
        None
    };
    reader.finish("offset commit value")?;
    Ok(OffsetAndMetadata { offset, leader_epoch, metadata, commit_timestamp_ms, expire_timestamp_ms })
}

/// Decodes a group metadata value of version 0 to 3.
pub fn decode_group_metadata_value(value: &[u8]) -> Result<GroupMetadataValue, RecordError> {
    let mut reader = Reader::new(value);
    let version = reader.i16("value_version")?;
    if !(0..=3).contains(&version) {
        return Err(RecordError::UnknownValueVersion { record: "group metadata", version });
    }
    let protocol_type = reader.string("protocol_type")?;
    let generation_id = reader.i32("generation")?;
    let protocol_name = reader.nullable_string("protocol")?;
    let leader_id = reader.nullable_string("leader")?;
    let current_state_timestamp_ms = if version >= 2 { reader.i64("current_state_timestamp")? } else { -1 };
    // The smallest member: its empty strings, its int32 timeouts and two
    // empty byte arrays.
    let member_bytes_min = match version {
        0 => 3 * 2 + 4 + 2 * 4,
        1 | 2 => 3 * 2 + 2 * 4 + 2 * 4,
        _ => 4 * 2 + 2 * 4 + 2 * 4,
    };
    let count = reader.array_len("members", member_bytes_min)?;
    let mut members = Vec::with_capacity(count);
    for _ in 0..count {
        let member_id = reader.string("member_id")?;
        let group_instance_id = if version >= 3 { reader.nullable_string("group_instance_id")? } else { None };
        let client_id = reader.string("client_id")?;
        let client_host = reader.string("client_host")?;
        let rebalance_timeout_ms = if version >= 1 { Some(reader.i32("rebalance_timeout")?) } else { None };
        let session_timeout_ms = reader.i32("session_timeout")?;
        let subscription = reader.bytes("subscription")?;
        let assignment = reader.bytes("assignment")?;
        members.push(MemberMetadataValue {
            member_id,
            group_instance_id,
            client_id,
            client_host,
            // v0 has no rebalance timeout; Kafka uses the session timeout.
            rebalance_timeout_ms: rebalance_timeout_ms.unwrap_or(session_timeout_ms),
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    reader.finish("group metadata value")?;
    Ok(GroupMetadataValue {
        protocol_type,
        generation_id,
        protocol_name,
        leader_id,
        current_state_timestamp_ms,
        members,
    })
}

/// Appends fields in Kafka's non-flexible encoding.
struct Writer {
    buf: BytesMut,
}

impl Writer {
    fn with_capacity(capacity: usize) -> Self {
        Self { buf: BytesMut::with_capacity(capacity) }
    }

    fn i16(&mut self, value: i16) {
        self.buf.put_i16(value);
    }

    fn i32(&mut self, value: i32) {
        self.buf.put_i32(value);
    }

    fn i64(&mut self, value: i64) {
        self.buf.put_i64(value);
    }

    fn string(&mut self, field: &'static str, value: &str) -> Result<(), RecordError> {
        let length =
            i16::try_from(value.len()).map_err(|_| RecordError::StringTooLong { field, length: value.len() })?;
        self.buf.put_i16(length);
        self.buf.put_slice(value.as_bytes());
        Ok(())
    }

    fn nullable_string(&mut self, field: &'static str, value: Option<&str>) -> Result<(), RecordError> {
        match value {
            Some(value) => self.string(field, value),
            None => {
                self.buf.put_i16(-1);
                Ok(())
            }
        }
    }

    fn bytes(&mut self, field: &'static str, value: &[u8]) -> Result<(), RecordError> {
        let length = i32::try_from(value.len()).map_err(|_| RecordError::InvalidLength { field, length: i32::MAX })?;
        self.buf.put_i32(length);
        self.buf.put_slice(value);
        Ok(())
    }

    fn array_len(&mut self, field: &'static str, count: usize) -> Result<(), RecordError> {
        let count = i32::try_from(count).map_err(|_| RecordError::InvalidLength { field, length: i32::MAX })?;
        self.buf.put_i32(count);
        Ok(())
    }

    fn finish(self) -> Bytes {
        self.buf.freeze()
    }
}

/// Reads fields in Kafka's non-flexible encoding, checking every length.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    fn take(&mut self, field: &'static str, count: usize) -> Result<&'a [u8], RecordError> {
        if self.buf.len() < count {
            return Err(RecordError::Truncated { field });
        }
        let (head, tail) = self.buf.split_at(count);
        self.buf = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], RecordError> {
        let bytes = self.take(field, N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn i16(&mut self, field: &'static str) -> Result<i16, RecordError> {
        Ok(i16::from_be_bytes(self.array(field)?))
    }

    fn i32(&mut self, field: &'static str) -> Result<i32, RecordError> {
        Ok(i32::from_be_bytes(self.array(field)?))
    }

    fn i64(&mut self, field: &'static str) -> Result<i64, RecordError> {
        Ok(i64::from_be_bytes(self.array(field)?))
    }

    fn nullable_string(&mut self, field: &'static str) -> Result<Option<String>, RecordError> {
        let length = self.i16(field)?;
        if length == -1 {
            return Ok(None);
        }
        let length =
            usize::try_from(length).map_err(|_| RecordError::InvalidLength { field, length: length.into() })?;
        let bytes = self.take(field, length)?;
        let text = std::str::from_utf8(bytes).map_err(|_| RecordError::InvalidUtf8 { field })?;
        Ok(Some(text.to_owned()))
    }

    fn string(&mut self, field: &'static str) -> Result<String, RecordError> {
        self.nullable_string(field)?.ok_or(RecordError::Null { field })
    }

    fn bytes(&mut self, field: &'static str) -> Result<Bytes, RecordError> {
        let length = self.i32(field)?;
        if length == -1 {
            return Err(RecordError::Null { field });
        }
        let length = usize::try_from(length).map_err(|_| RecordError::InvalidLength { field, length })?;
        Ok(Bytes::copy_from_slice(self.take(field, length)?))
    }

    /// An array count, refused when the remaining input cannot hold that
    /// many elements of `element_bytes_min`, so garbage never sizes an
    /// allocation.
    fn array_len(&mut self, field: &'static str, element_bytes_min: usize) -> Result<usize, RecordError> {
        let count = self.i32(field)?;
        if count == -1 {
            return Err(RecordError::Null { field });
        }
        let count = usize::try_from(count).map_err(|_| RecordError::InvalidLength { field, length: count })?;
        if count.saturating_mul(element_bytes_min) > self.buf.len() {
            return Err(RecordError::Truncated { field });
        }
        Ok(count)
    }

    fn finish(self, record: &'static str) -> Result<(), RecordError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(RecordError::TrailingBytes { record, count: self.buf.len() })
        }
    }
}
