//! Kafka RecordBatch v2: the unit of storage.
//!
//! The engine stores the batch a producer sent byte for byte. Only two
//! header fields are rewritten, and both lie outside the CRC-32C:
//! `base_offset` (assigned by the log) and `partition_leader_epoch`.
//! The broker never decompresses or re-encodes a batch on the hot path.
//! `max_timestamp` (inside the CRC) is rewritten only for LogAppendTime
//! topics and for a batch that announces one below its first timestamp
//! (see `Log::append`), with the CRC recomputed.
//!
//! Byte layout (big-endian), header of [`HEADER_BYTES`] = 61 bytes:
//!
//! ```text
//!  0  base_offset            i64
//!  8  batch_length           i32   bytes after this field (total - 12)
//! 12  partition_leader_epoch i32
//! 16  magic                  i8    must be 2
//! 17  crc                    u32   CRC-32C over bytes 21..end
//! 21  attributes             i16   bits 0-2 compression, 3 timestamp type,
//!                                  4 transactional, 5 control
//! 23  last_offset_delta      i32
//! 27  base_timestamp         i64
//! 35  max_timestamp          i64
//! 43  producer_id            i64
//! 51  producer_epoch         i16
//! 53  base_sequence          i32
//! 57  records_count          i32
//! 61  records...
//! ```

use std::fmt;

/// Bytes before the first record.
pub const HEADER_BYTES: usize = 61;
/// Bytes of `base_offset` + `batch_length`: what precedes the length-counted part.
pub const LOG_OVERHEAD_BYTES: usize = 12;
/// The only record batch format the engine accepts.
pub const MAGIC_V2: u8 = 2;

const BASE_OFFSET_AT: usize = 0;
const BATCH_LENGTH_AT: usize = 8;
const PARTITION_LEADER_EPOCH_AT: usize = 12;
const MAGIC_AT: usize = 16;
const CRC_AT: usize = 17;
const ATTRIBUTES_AT: usize = 21;
const LAST_OFFSET_DELTA_AT: usize = 23;
const BASE_TIMESTAMP_AT: usize = 27;
const MAX_TIMESTAMP_AT: usize = 35;
const PRODUCER_ID_AT: usize = 43;
const PRODUCER_EPOCH_AT: usize = 51;
const BASE_SEQUENCE_AT: usize = 53;
const RECORDS_COUNT_AT: usize = 57;

const COMPRESSION_MASK: i16 = 0x07;
const TIMESTAMP_TYPE_LOG_APPEND_BIT: i16 = 0x08;
const TRANSACTIONAL_BIT: i16 = 0x10;
const CONTROL_BIT: i16 = 0x20;

/// Why a batch was refused. Each reason later maps to a Kafka error code:
/// `Crc`, `Magic`, `Length` and `Truncated` to CORRUPT_MESSAGE,
/// `RecordCount` and `Records` to INVALID_RECORD, `TooLarge` to
/// MESSAGE_TOO_LARGE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchError {
    /// Fewer bytes than a batch header, or than `batch_length` announces.
    Truncated { needed: usize, available: usize },
    /// `batch_length` is impossible (smaller than the header).
    Length { batch_length: i32 },
    /// Magic byte other than 2 (older message formats are not stored).
    Magic { magic: u8 },
    /// The CRC-32C stored in the batch does not match its bytes.
    Crc { stored: u32, computed: u32 },
    /// `records_count` disagrees with `last_offset_delta`, or is not positive.
    RecordCount { records_count: i32, last_offset_delta: i32 },
    /// The records of an uncompressed batch do not frame as `records_count` records.
    Records { reason: &'static str },
    /// The batch is larger than the topic's `max.message.bytes`.
    TooLarge { size: usize, max: usize },
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, available } => {
                write!(f, "truncated record batch: needs {needed} bytes, {available} available")
            }
            Self::Length { batch_length } => write!(f, "invalid batch_length {batch_length}"),
            Self::Magic { magic } => write!(f, "unsupported record batch magic {magic} (only 2 is stored)"),
            Self::Crc { stored, computed } => {
                write!(f, "record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")
            }
            Self::RecordCount { records_count, last_offset_delta } => {
                write!(f, "records_count {records_count} does not match last_offset_delta {last_offset_delta}")
            }
            Self::Records { reason } => write!(f, "invalid records in uncompressed batch: {reason}"),
            Self::TooLarge { size, max } => {
                write!(f, "record batch of {size} bytes exceeds max.message.bytes {max}")
            }
        }
    }
}

impl std::error::Error for BatchError {}

/// Compression codec named by the low three attribute bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// A value Kafka does not define; the batch is still stored opaque.
    Unknown(u8),
}

/// Read-only view of a batch header. Construct with [`BatchHeader::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    pub batch_length: i32,
    pub partition_leader_epoch: i32,
    pub magic: u8,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub records_count: i32,
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

impl BatchHeader {
    /// Parses the fixed header. Needs only [`HEADER_BYTES`] bytes; checks
    /// nothing but that they are there.
    pub fn parse(bytes: &[u8]) -> Result<Self, BatchError> {
        if bytes.len() < HEADER_BYTES {
            return Err(BatchError::Truncated { needed: HEADER_BYTES, available: bytes.len() });
        }
        Ok(Self {
            base_offset: be_i64(bytes, BASE_OFFSET_AT),
            batch_length: be_i32(bytes, BATCH_LENGTH_AT),
            partition_leader_epoch: be_i32(bytes, PARTITION_LEADER_EPOCH_AT),
            magic: bytes[MAGIC_AT],
            crc: be_i32(bytes, CRC_AT) as u32,
            attributes: be_i16(bytes, ATTRIBUTES_AT),
            last_offset_delta: be_i32(bytes, LAST_OFFSET_DELTA_AT),
            base_timestamp: be_i64(bytes, BASE_TIMESTAMP_AT),
            max_timestamp: be_i64(bytes, MAX_TIMESTAMP_AT),
            producer_id: be_i64(bytes, PRODUCER_ID_AT),
            producer_epoch: be_i16(bytes, PRODUCER_EPOCH_AT),
            base_sequence: be_i32(bytes, BASE_SEQUENCE_AT),
            records_count: be_i32(bytes, RECORDS_COUNT_AT),
        })
    }

    /// Total bytes of the batch on disk and on the wire.
    pub fn size(&self) -> usize {
        self.batch_length as usize + LOG_OVERHEAD_BYTES
    }

    /// `base_offset + last_offset_delta`, saturating: `base_offset` lies
    /// outside the CRC, so on a damaged device it can be anything, and
    /// recovery must call such a batch corrupt rather than overflow.
    pub fn last_offset(&self) -> i64 {
        self.base_offset.saturating_add(i64::from(self.last_offset_delta))
    }

    pub fn compression(&self) -> Compression {
        match (self.attributes & COMPRESSION_MASK) as u8 {
            0 => Compression::None,
            1 => Compression::Gzip,
            2 => Compression::Snappy,
            3 => Compression::Lz4,
            4 => Compression::Zstd,
            other => Compression::Unknown(other),
        }
    }

    pub fn is_log_append_time(&self) -> bool {
        self.attributes & TIMESTAMP_TYPE_LOG_APPEND_BIT != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL_BIT != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL_BIT != 0
    }
}

/// Reads `batch_length` from the first 12 bytes and returns the whole batch
/// size, or `None` if fewer than 12 bytes are present. Does not validate.
pub fn peek_size(bytes: &[u8]) -> Option<i64> {
    if bytes.len() < LOG_OVERHEAD_BYTES {
        return None;
    }
    Some(i64::from(be_i32(bytes, BATCH_LENGTH_AT)) + LOG_OVERHEAD_BYTES as i64)
}

/// The CRC-32C (Castagnoli) a batch must carry: over `attributes..end`.
pub fn compute_crc(batch: &[u8]) -> u32 {
    crc32c::crc32c(&batch[ATTRIBUTES_AT..])
}

/// Checks one complete batch (`bytes` must be exactly the batch) the way a
/// broker must before storing it: framing, magic, CRC-32C, record count and,
/// for uncompressed batches, that the records frame as `records_count`
/// records. Compressed record data is opaque and never inflated here.
pub fn validate(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    check(bytes, true)
}

/// Checks a batch read back from a segment (recovery's scan). Like
/// [`validate`], except that the records may be fewer than the offsets the
/// batch spans, `0 <= records_count <= last_offset_delta + 1`: compaction
/// drops records from a batch but keeps its offsets (see [`crate::compaction`]).
pub fn validate_stored(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
    check(bytes, false)
}

fn check(bytes: &[u8], as_produced: bool) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(bytes)?;
    if (header.batch_length as i64) < (HEADER_BYTES - LOG_OVERHEAD_BYTES) as i64 {
        return Err(BatchError::Length { batch_length: header.batch_length });
    }
    if header.size() != bytes.len() {
        return Err(BatchError::Truncated { needed: header.size(), available: bytes.len() });
    }
    if header.magic != MAGIC_V2 {
        return Err(BatchError::Magic { magic: header.magic });
    }
    let computed = compute_crc(bytes);
    if computed != header.crc {
        return Err(BatchError::Crc { stored: header.crc, computed });
    }
    let count_ok = if as_produced {
        header.records_count > 0 && i64::from(header.records_count) == i64::from(header.last_offset_delta) + 1
    } else {
        header.records_count >= 0 && i64::from(header.records_count) <= i64::from(header.last_offset_delta) + 1
    };
    if header.last_offset_delta < 0 || !count_ok {
        return Err(BatchError::RecordCount {
            records_count: header.records_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    if header.compression() == Compression::None {
        check_record_framing(&bytes[HEADER_BYTES..], header.records_count)?;
    }
    Ok(header)
}

/// Splits `bytes` (the `records` field of a produce request: one or more
/// batches back to back) into batch ranges, validating each. All or nothing:
/// the first bad batch fails the whole set.
pub fn split_batches(bytes: &[u8]) -> Result<Vec<(std::ops::Range<usize>, BatchHeader)>, BatchError> {
    let mut batches = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let rest = &bytes[at..];
        let size = match peek_size(rest) {
            Some(size) if size >= HEADER_BYTES as i64 => size as usize,
            Some(_) => return Err(BatchError::Length { batch_length: be_i32(rest, BATCH_LENGTH_AT) }),
            None => return Err(BatchError::Truncated { needed: LOG_OVERHEAD_BYTES, available: rest.len() }),
        };
        if size > rest.len() {
            return Err(BatchError::Truncated { needed: size, available: rest.len() });
        }
        let header = validate(&rest[..size])?;
        batches.push((at..at + size, header));
        at += size;
    }
    if batches.is_empty() {
        return Err(BatchError::Truncated { needed: HEADER_BYTES, available: 0 });
    }
    Ok(batches)
}

/// Appends `value` as a zig-zag varint, as Kafka encodes record fields.
pub fn put_varint(out: &mut Vec<u8>, value: i64) {
    let mut raw = ((value << 1) ^ (value >> 63)) as u64;
    while raw >= 0x80 {
        out.push((raw as u8) | 0x80);
        raw >>= 7;
    }
    out.push(raw as u8);
}

/// Reads a zig-zag varint as Kafka encodes record fields. Returns the value
/// and the bytes consumed.
pub fn read_varint(bytes: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(10) {
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

/// The record walk of `check`, one pass and no allocation: each record's
/// length is a positive varint and the record lies within the batch, and
/// its timestamp and offset delta varints (after the attributes byte)
/// parse within the record, since lookups by timestamp read them back.
/// Costs about twice the CRC when every varint is decoded byte by byte, so
/// the length takes a fast path for its usual one or two bytes and the two
/// deltas are only skipped, both found with one 8-byte load when they fit.
fn check_record_framing(records: &[u8], records_count: i32) -> Result<(), BatchError> {
    let mut at = 0usize;
    for _ in 0..records_count {
        let Some((length, used)) = read_varint_fast(&records[at..]) else {
            return Err(BatchError::Records { reason: "record length is not a valid varint" });
        };
        if length <= 0 {
            return Err(BatchError::Records { reason: "record length is not positive" });
        }
        at += used;
        if length as u64 > (records.len() - at) as u64 {
            return Err(BatchError::Records { reason: "record extends past the batch" });
        }
        let record = &records[at..at + length as usize];
        if skip_two_varints(&record[1..]).is_none() {
            return Err(BatchError::Records { reason: "record timestamp or offset delta is not a valid varint" });
        }
        at += length as usize;
    }
    if at != records.len() {
        return Err(BatchError::Records { reason: "bytes left after the last record" });
    }
    Ok(())
}

/// [`read_varint`] with the one- and two-byte encodings inlined.
#[inline(always)]
fn read_varint_fast(bytes: &[u8]) -> Option<(i64, usize)> {
    let zigzag = |raw: u64| ((raw >> 1) as i64) ^ -((raw & 1) as i64);
    match *bytes {
        [b0, ..] if b0 < 0x80 => Some((zigzag(u64::from(b0)), 1)),
        [b0, b1, ..] if b1 < 0x80 => Some((zigzag(u64::from(b0 & 0x7f) | (u64::from(b1) << 7)), 2)),
        _ => read_varint(bytes),
    }
}

/// Bytes taken by the two varints at the start of `bytes`, each ending
/// within `bytes` and within 10 bytes (as [`read_varint`] requires), or
/// `None`.
#[inline(always)]
fn skip_two_varints(bytes: &[u8]) -> Option<usize> {
    const CONTINUATION_BITS: u64 = 0x8080_8080_8080_8080;
    if let Some(word) = bytes.first_chunk::<8>() {
        // A byte without its continuation bit ends a varint.
        let ends = !u64::from_le_bytes(*word) & CONTINUATION_BITS;
        let second = ends & ends.wrapping_sub(1);
        if second != 0 {
            return Some(second.trailing_zeros() as usize / 8 + 1);
        }
    }
    let first = varint_len(bytes)?;
    Some(first + varint_len(&bytes[first..])?)
}

/// Bytes taken by the varint at the start of `bytes`, if it ends within
/// them and within 10 bytes.
#[inline(always)]
fn varint_len(bytes: &[u8]) -> Option<usize> {
    bytes.iter().take(10).position(|b| b & 0x80 == 0).map(|end| end + 1)
}

/// Timestamp deltas and offset deltas of the records of an uncompressed
/// batch, in order: `(offset_delta, timestamp_delta)`. `None` for a
/// compressed batch or broken framing (never for a validated uncompressed one).
pub fn uncompressed_record_deltas(batch: &[u8]) -> Option<Vec<(i64, i64)>> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.compression() != Compression::None {
        return None;
    }
    record_deltas(batch.get(HEADER_BYTES..)?, header.records_count)
}

/// `(offset_delta, timestamp_delta)` of each record of a records section
/// (uncompressed, or already inflated); `None` on broken framing.
pub fn record_deltas(records: &[u8], records_count: i32) -> Option<Vec<(i64, i64)>> {
    // Capacity from the bytes present, not the header's claim.
    let mut out = Vec::with_capacity((records_count.max(0) as usize).min(records.len()));
    let mut at = 0usize;
    for _ in 0..records_count {
        let (length, used) = read_varint(records.get(at..)?)?;
        let start = at + used;
        let record = records.get(start..start + usize::try_from(length).ok()?)?;
        // record: attributes i8, timestampDelta varint, offsetDelta varint, ...
        let (timestamp_delta, t_used) = read_varint(record.get(1..)?)?;
        let (offset_delta, _) = read_varint(record.get(1 + t_used..)?)?;
        out.push((offset_delta, timestamp_delta));
        at = start + length as usize;
    }
    Some(out)
}

/// A copy of the stored batch `original` that holds only `records`: the
/// records section of `records_count` whole records (each encoded as in the
/// original, so their offset and timestamp deltas still hold), compressed
/// with `compression`. Every header field is kept (base offset,
/// `last_offset_delta`, timestamps, producer id, epoch, base sequence,
/// leader epoch) but the length, the compression bits, the count and the
/// CRC. Compaction's rewrite of a batch that lost records; `records_count`
/// may be 0 (an empty batch, as Kafka keeps).
pub fn with_records(original: &[u8], records: &[u8], records_count: i32, compression: Compression) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_BYTES + records.len());
    out.extend_from_slice(&original[..HEADER_BYTES]);
    out.extend_from_slice(records);
    let batch_length = (out.len() - LOG_OVERHEAD_BYTES) as i32;
    out[BATCH_LENGTH_AT..BATCH_LENGTH_AT + 4].copy_from_slice(&batch_length.to_be_bytes());
    let codec = match compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
        Compression::Unknown(other) => i16::from(other) & COMPRESSION_MASK,
    };
    let attributes = (be_i16(&out, ATTRIBUTES_AT) & !COMPRESSION_MASK) | codec;
    out[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    out[RECORDS_COUNT_AT..RECORDS_COUNT_AT + 4].copy_from_slice(&records_count.to_be_bytes());
    let crc = compute_crc(&out);
    out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    out
}

/// Writes the log-assigned `base_offset`. Outside the CRC.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    batch[BASE_OFFSET_AT..BASE_OFFSET_AT + 8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Stamps the leader epoch. Outside the CRC.
pub fn set_partition_leader_epoch(batch: &mut [u8], epoch: i32) {
    batch[PARTITION_LEADER_EPOCH_AT..PARTITION_LEADER_EPOCH_AT + 4].copy_from_slice(&epoch.to_be_bytes());
}

/// Turns a batch into a LogAppendTime batch with `max_timestamp = now_ms`.
/// Both fields are inside the CRC, so this is the one path that recomputes
/// it (Kafka does the same for `message.timestamp.type=LogAppendTime`).
pub fn set_log_append_time(batch: &mut [u8], now_ms: i64) {
    let attributes = be_i16(batch, ATTRIBUTES_AT) | TIMESTAMP_TYPE_LOG_APPEND_BIT;
    batch[ATTRIBUTES_AT..ATTRIBUTES_AT + 2].copy_from_slice(&attributes.to_be_bytes());
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&now_ms.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Writes `max_timestamp` and the CRC it changes.
pub fn set_max_timestamp(batch: &mut [u8], max_timestamp: i64) {
    batch[MAX_TIMESTAMP_AT..MAX_TIMESTAMP_AT + 8].copy_from_slice(&max_timestamp.to_be_bytes());
    let crc = compute_crc(batch);
    batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
}

/// Sets the max timestamp of a CreateTime batch that announces one below
/// its first timestamp (sarama 1.22, the Go client Debian ships, sends -1)
/// to its records' real maximum, with the CRC, as Kafka's append does for
/// every batch: lookups by time, the time index and retention by time all
/// go by it, and with -1 a lookup skipped the batch and retention never
/// deleted its segment. A valid batch never takes this path; a compressed
/// one is inflated here (bounded, and the only append path that inflates)
/// to read its records' timestamps. Records that do not parse leave the
/// batch as it is. Returns whether it was changed; `header` follows.
pub fn repair_max_timestamp(bytes: &mut [u8], header: &mut BatchHeader) -> bool {
    if header.max_timestamp >= header.base_timestamp || header.is_log_append_time() || header.records_count <= 0 {
        return false;
    }
    let Some(records) = crate::compaction::records_of(bytes, header) else { return false };
    let Some(deltas) = record_deltas(&records, header.records_count) else { return false };
    let Some(max_delta) = deltas.iter().map(|&(_, timestamp_delta)| timestamp_delta).max() else { return false };
    let max_timestamp = header.base_timestamp.saturating_add(max_delta);
    set_max_timestamp(bytes, max_timestamp);
    header.max_timestamp = max_timestamp;
    header.crc = be_i32(bytes, CRC_AT) as u32;
    true
}

/// Builds a valid uncompressed batch (used by tests, benchmarks and the
/// fuzz seeds; the broker itself never builds batches).
pub mod build {
    use super::*;

    /// One record's encoding: (key, value), no headers.
    pub fn record(out: &mut Vec<u8>, offset_delta: i64, timestamp_delta: i64, key: Option<&[u8]>, value: &[u8]) {
        let mut body = Vec::with_capacity(value.len() + 16);
        body.push(0); // attributes
        put_varint(&mut body, timestamp_delta);
        put_varint(&mut body, offset_delta);
        match key {
            Some(k) => {
                put_varint(&mut body, k.len() as i64);
                body.extend_from_slice(k);
            }
            None => put_varint(&mut body, -1),
        }
        put_varint(&mut body, value.len() as i64);
        body.extend_from_slice(value);
        put_varint(&mut body, 0); // headers count
        put_varint(out, body.len() as i64);
        out.extend_from_slice(&body);
    }

    /// A batch with the given values, timestamps `base_timestamp + i`.
    pub fn batch(values: &[&[u8]], base_timestamp: i64) -> Vec<u8> {
        let mut records = Vec::new();
        for (i, v) in values.iter().enumerate() {
            record(&mut records, i as i64, i as i64, None, v);
        }
        let count = values.len() as i32;
        let max_timestamp = base_timestamp + i64::from(count.max(1) - 1);
        from_records(&records, count, 0, base_timestamp, max_timestamp)
    }

    /// Like [`batch`], from an idempotent producer: `producer_id`,
    /// `producer_epoch` and `base_sequence` set (inside the CRC).
    pub fn idempotent_batch(
        values: &[&[u8]],
        base_timestamp: i64,
        producer_id: i64,
        producer_epoch: i16,
        base_sequence: i32,
    ) -> Vec<u8> {
        let mut out = batch(values, base_timestamp);
        out[PRODUCER_ID_AT..PRODUCER_ID_AT + 8].copy_from_slice(&producer_id.to_be_bytes());
        out[PRODUCER_EPOCH_AT..PRODUCER_EPOCH_AT + 2].copy_from_slice(&producer_epoch.to_be_bytes());
        out[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&base_sequence.to_be_bytes());
        let crc = compute_crc(&out);
        out[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    /// Wraps already-encoded (possibly compressed) record bytes in a header
    /// with a correct CRC.
    pub fn from_records(
        records: &[u8],
        records_count: i32,
        attributes: i16,
        base_timestamp: i64,
        max_timestamp: i64,
    ) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_BYTES + records.len());
        out.resize(HEADER_BYTES, 0);
        out.extend_from_slice(records);
        seal(&mut out, records_count, attributes, base_timestamp, max_timestamp);
        out
    }

    /// Writes the header into `batch[..HEADER_BYTES]` for the record bytes
    /// that follow it, CRC included: a producer that encodes its records
    /// behind a reserved header gets a batch without copying them.
    pub fn seal(batch: &mut [u8], records_count: i32, attributes: i16, base_timestamp: i64, max_timestamp: i64) {
        assert!(batch.len() >= HEADER_BYTES, "a batch has room for its header");
        let batch_length = (batch.len() - LOG_OVERHEAD_BYTES) as i32;
        let mut header = [0u8; HEADER_BYTES];
        let fields: [&[u8]; 13] = [
            &0i64.to_be_bytes(),
            &batch_length.to_be_bytes(),
            &(-1i32).to_be_bytes(),
            &[MAGIC_V2],
            &0u32.to_be_bytes(),
            &attributes.to_be_bytes(),
            &(records_count - 1).to_be_bytes(),
            &base_timestamp.to_be_bytes(),
            &max_timestamp.to_be_bytes(),
            &(-1i64).to_be_bytes(),
            &(-1i16).to_be_bytes(),
            &(-1i32).to_be_bytes(),
            &records_count.to_be_bytes(),
        ];
        let mut at = 0;
        for field in fields {
            header[at..at + field.len()].copy_from_slice(field);
            at += field.len();
        }
        debug_assert_eq!(at, HEADER_BYTES);
        batch[..HEADER_BYTES].copy_from_slice(&header);
        let crc = compute_crc(batch);
        batch[CRC_AT..CRC_AT + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_batch_validates_and_reports_its_fields() {
        let b = build::batch(&[b"a", b"bc", b"def"], 1000);
        let h = validate(&b).unwrap();
        assert_eq!(h.records_count, 3);
        assert_eq!(h.last_offset_delta, 2);
        assert_eq!(h.max_timestamp, 1002);
        assert_eq!(h.size(), b.len());
        assert_eq!(h.compression(), Compression::None);
    }

    #[test]
    fn flipped_bit_in_records_is_a_crc_error() {
        let mut b = build::batch(&[b"hello"], 0);
        let last = b.len() - 2;
        b[last] ^= 0x01;
        assert!(matches!(validate(&b), Err(BatchError::Crc { .. })));
    }

    #[test]
    fn base_offset_and_epoch_patches_keep_the_crc_valid() {
        let mut b = build::batch(&[b"x", b"y"], 5);
        set_base_offset(&mut b, 1234);
        set_partition_leader_epoch(&mut b, 7);
        let h = validate(&b).unwrap();
        assert_eq!(h.base_offset, 1234);
        assert_eq!(h.partition_leader_epoch, 7);
        assert_eq!(h.last_offset(), 1235);
    }

    #[test]
    fn log_append_time_rewrites_crc() {
        let mut b = build::batch(&[b"x"], 5);
        set_log_append_time(&mut b, 99);
        let h = validate(&b).unwrap();
        assert!(h.is_log_append_time());
        assert_eq!(h.max_timestamp, 99);
    }

    #[test]
    fn wrong_magic_and_short_input_and_bad_count_are_refused() {
        let mut b = build::batch(&[b"x"], 0);
        b[MAGIC_AT] = 1;
        assert!(matches!(validate(&b), Err(BatchError::Magic { magic: 1 })));
        let b = build::batch(&[b"x"], 0);
        assert!(matches!(validate(&b[..30]), Err(BatchError::Truncated { .. })));
        assert!(matches!(validate(&b[..b.len() - 1]), Err(BatchError::Truncated { .. })));
        let mut records = Vec::new();
        build::record(&mut records, 0, 0, None, b"v");
        let wrong_count = build::from_records(&records, 2, 0, 0, 0);
        assert!(matches!(validate(&wrong_count), Err(BatchError::Records { .. })));
    }

    #[test]
    fn split_batches_is_all_or_nothing() {
        let mut two = build::batch(&[b"a"], 0);
        two.extend(build::batch(&[b"b", b"c"], 0));
        assert_eq!(split_batches(&two).unwrap().len(), 2);
        let n = two.len();
        two[n - 1] ^= 0xff;
        assert!(split_batches(&two).is_err());
        assert!(split_batches(&[]).is_err());
    }

    #[test]
    fn record_deltas_of_uncompressed_batch() {
        let b = build::batch(&[b"a", b"b", b"c"], 10);
        assert_eq!(uncompressed_record_deltas(&b).unwrap(), vec![(0, 0), (1, 1), (2, 2)]);
    }

    /// The byte-by-byte record walk `check_record_framing` replaced: the
    /// fast walk must accept and refuse exactly what it did.
    fn record_framing_reference(records: &[u8], records_count: i32) -> Result<(), &'static str> {
        let mut at = 0usize;
        for _ in 0..records_count {
            let (length, used) = read_varint(&records[at..]).ok_or("record length is not a valid varint")?;
            if length <= 0 {
                return Err("record length is not positive");
            }
            at += used;
            if length as u64 > (records.len() - at) as u64 {
                return Err("record extends past the batch");
            }
            let record = &records[at..at + length as usize];
            read_varint(&record[1..])
                .and_then(|(_, used)| read_varint(&record[1 + used..]))
                .ok_or("record timestamp or offset delta is not a valid varint")?;
            at += length as usize;
        }
        if at != records.len() {
            return Err("bytes left after the last record");
        }
        Ok(())
    }

    #[test]
    fn fast_record_walk_matches_the_byte_by_byte_walk() {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let values: Vec<Vec<u8>> = (0..40).map(|i| vec![b'v'; (i * 37) % 300]).collect();
        let refs: Vec<&[u8]> = values.iter().map(Vec::as_slice).collect();
        let batch = build::batch(&refs, 1_700_000_000_000);
        let clean = batch[HEADER_BYTES..].to_vec();
        let count = refs.len() as i32;
        for round in 0..20_000 {
            let mut records = clean.clone();
            // Mutate a few bytes (continuation bits and lengths especially), maybe truncate.
            for _ in 0..(round % 4) {
                let at = (next() as usize) % records.len();
                records[at] = match next() % 4 {
                    0 => records[at] ^ 0x80,
                    1 => 0xff,
                    2 => 0x00,
                    _ => next() as u8,
                };
            }
            if round % 7 == 0 {
                records.truncate((next() as usize) % (records.len() + 1));
            }
            let claimed = match round % 5 {
                0 => count - 1,
                1 => count + 1,
                _ => count,
            };
            let fast = check_record_framing(&records, claimed).map_err(|e| match e {
                BatchError::Records { reason } => reason,
                other => panic!("unexpected {other:?}"),
            });
            assert_eq!(fast, record_framing_reference(&records, claimed), "round {round}");
        }
        // Varints of every length at the end of a record.
        for tail in 1..=12usize {
            let mut record = vec![0u8];
            record.extend(std::iter::repeat_n(0x80u8, tail - 1));
            record.push(0x01);
            record.push(0x00);
            let mut records = Vec::new();
            put_varint(&mut records, record.len() as i64);
            records.extend_from_slice(&record);
            let fast = check_record_framing(&records, 1).map_err(|e| match e {
                BatchError::Records { reason } => reason,
                other => panic!("unexpected {other:?}"),
            });
            assert_eq!(fast, record_framing_reference(&records, 1), "varint of {tail} bytes");
        }
    }
}
