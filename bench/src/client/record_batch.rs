//! RecordBatch v2 as the producer builds it and the consumer walks it.
//!
//! A [`BatchBuilder`] appends records (key, value, no headers) straight into
//! one buffer without a per-record allocation, then [`BatchBuilder::finish`]
//! compresses the records section (gzip and snappy the way the Java client
//! frames them, lz4 as an LZ4 frame with independent blocks, zstd as one
//! frame) and wraps it in the
//! 61-byte header with a correct CRC-32C.
//!
//! [`for_each_value`] walks the batches of a fetch response: whole batches
//! only (a fetch may end in a cut-off batch), decompressing when needed,
//! and hands each record's value and offset to the caller.

use std::borrow::Cow;
use std::io::{Read, Write};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Decompressor, Gzip, Snappy};
use pinion_engine::batch::{build, put_varint, read_varint, HEADER_BYTES};

use crate::workload::Codec;

/// zstd level: Kafka's default.
const ZSTD_LEVEL: i32 = 3;

/// Records of one partition waiting to be sent.
#[derive(Debug)]
pub struct BatchBuilder {
    /// `HEADER_BYTES` reserved for the batch header, then the records: an
    /// uncompressed batch is sealed in place and sent without a copy.
    buf: Vec<u8>,
    capacity: usize,
    count: i32,
    base_timestamp_ms: i64,
    scratch: Vec<u8>,
}

impl BatchBuilder {
    pub fn new(capacity: usize) -> Self {
        Self {
            buf: Self::empty_buf(capacity),
            capacity,
            count: 0,
            base_timestamp_ms: 0,
            scratch: Vec::with_capacity(16),
        }
    }

    fn empty_buf(capacity: usize) -> Vec<u8> {
        let mut buf = Vec::with_capacity(HEADER_BYTES + capacity);
        buf.resize(HEADER_BYTES, 0);
        buf
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Uncompressed bytes of the records section so far.
    pub fn records_bytes(&self) -> usize {
        self.buf.len() - HEADER_BYTES
    }

    /// Appends one record. The value is `prefix` followed by `body`, so the
    /// caller never copies a value just to put its timestamp in front.
    pub fn push(&mut self, timestamp_ms: i64, key: Option<&[u8]>, prefix: &[u8], body: &[u8]) {
        if self.count == 0 {
            self.base_timestamp_ms = timestamp_ms;
        }
        let value_len = prefix.len() + body.len();
        // The record's fields after its length, to learn the length first.
        self.scratch.clear();
        self.scratch.push(0); // attributes
        put_varint(&mut self.scratch, timestamp_ms - self.base_timestamp_ms);
        put_varint(&mut self.scratch, i64::from(self.count));
        match key {
            Some(k) => put_varint(&mut self.scratch, k.len() as i64),
            None => put_varint(&mut self.scratch, -1),
        }
        if let Some(k) = key {
            self.scratch.extend_from_slice(k);
        }
        let before_value = self.scratch.len();
        put_varint(&mut self.scratch, value_len as i64);
        let value_len_bytes = self.scratch.len() - before_value;
        let length = before_value + value_len_bytes + value_len + 1;
        put_varint(&mut self.buf, length as i64);
        self.buf.extend_from_slice(&self.scratch);
        self.buf.extend_from_slice(prefix);
        self.buf.extend_from_slice(body);
        self.buf.push(0); // headers count (varint 0)
        self.count += 1;
    }

    /// The finished batch, compressed; the builder is empty afterwards.
    pub fn finish(&mut self, codec: Codec, max_timestamp_ms: i64) -> Result<Bytes, crate::Error> {
        assert!(self.count > 0, "an empty batch is never sent");
        let (count, base_timestamp_ms) = (self.count, self.base_timestamp_ms);
        self.count = 0;
        if codec == Codec::None {
            // Sealed where the records were encoded: no copy. The next
            // buffer starts as large as this batch grew, so it is not
            // reallocated (and copied) while it fills.
            self.capacity = self.capacity.max(self.buf.len() - HEADER_BYTES);
            let mut batch = std::mem::replace(&mut self.buf, Self::empty_buf(self.capacity));
            build::seal(&mut batch, count, codec.attributes(), base_timestamp_ms, max_timestamp_ms);
            return Ok(Bytes::from(batch));
        }
        let body = compress(codec, &self.buf[HEADER_BYTES..]);
        self.buf.truncate(HEADER_BYTES);
        let batch = build::from_records(&body?, count, codec.attributes(), base_timestamp_ms, max_timestamp_ms);
        Ok(Bytes::from(batch))
    }
}

pub fn compress(codec: Codec, records: &[u8]) -> Result<Vec<u8>, crate::Error> {
    let failed = |e: &dyn std::fmt::Display| format!("cannot compress a batch with {}: {e}", codec.name());
    match codec {
        Codec::None => Ok(records.to_vec()),
        Codec::Gzip => {
            let mut out = BytesMut::with_capacity(records.len() / 2 + 64);
            <Gzip as Compressor<BytesMut>>::compress(&mut out, |tmp: &mut BytesMut| {
                tmp.put_slice(records);
                Ok(())
            })
            .map_err(|e| failed(&e))?;
            Ok(out.to_vec())
        }
        Codec::Snappy => {
            let mut out = BytesMut::with_capacity(records.len() / 2 + 64);
            <Snappy as Compressor<BytesMut>>::compress(&mut out, |tmp: &mut BytesMut| {
                tmp.put_slice(records);
                Ok(())
            })
            .map_err(|e| failed(&e))?;
            Ok(out.to_vec())
        }
        Codec::Lz4 => {
            // Level 0 is liblz4's fast mode, as librdkafka and the Java client use.
            let mut encoder = lz4::EncoderBuilder::new()
                .level(0)
                .block_mode(lz4::BlockMode::Independent)
                .build(Vec::with_capacity(records.len() + 64))?;
            encoder.write_all(records)?;
            let (out, result) = encoder.finish();
            result.map_err(|e| failed(&e))?;
            Ok(out)
        }
        Codec::Zstd => Ok(zstd::bulk::compress(records, ZSTD_LEVEL)?),
    }
}

/// The records of a batch, inflated if compressed (borrowed when not: a
/// consumer reading uncompressed batches copies nothing).
fn decompress(attributes: i16, records: &[u8]) -> Result<Cow<'_, [u8]>, crate::Error> {
    let via_kafka = |result: Result<Bytes, String>| result.map(|b| Cow::Owned(b.to_vec())).map_err(crate::Error::from);
    match attributes & 0x7 {
        0 => Ok(Cow::Borrowed(records)),
        1 => via_kafka(
            <Gzip as Decompressor<Bytes>>::decompress(&mut Bytes::copy_from_slice(records), |b: &mut Bytes| {
                Ok(b.clone())
            })
            .map_err(|e| format!("cannot decompress a gzip batch: {e}")),
        ),
        2 => via_kafka(
            <Snappy as Decompressor<Bytes>>::decompress(&mut Bytes::copy_from_slice(records), |b: &mut Bytes| {
                Ok(b.clone())
            })
            .map_err(|e| format!("cannot decompress a snappy batch: {e}")),
        ),
        3 => {
            let mut out = Vec::with_capacity(records.len() * 3);
            lz4_flex::frame::FrameDecoder::new(records)
                .read_to_end(&mut out)
                .map_err(|e| format!("cannot decompress an lz4 batch: {e}"))?;
            Ok(Cow::Owned(out))
        }
        4 => Ok(Cow::Owned(
            zstd::stream::decode_all(records).map_err(|e| format!("cannot decompress a zstd batch: {e}"))?,
        )),
        other => Err(format!("batch with unknown compression {other}").into()),
    }
}

/// Walks the whole batches in `bytes` (a fetch response's records) and
/// calls `on_value(offset, value)` for every record of a data batch.
/// Returns the offset after the last whole batch, or `None` if there was
/// no whole batch.
pub fn for_each_value(bytes: &[u8], mut on_value: impl FnMut(i64, &[u8])) -> Result<Option<i64>, crate::Error> {
    const CONTROL_BIT: i16 = 0x20;
    let mut next_offset = None;
    let mut rest = bytes;
    // Each iteration consumes one whole batch of at least HEADER_BYTES.
    while rest.len() >= HEADER_BYTES {
        let base_offset = i64::from_be_bytes(rest[0..8].try_into().expect("8 bytes"));
        let batch_length = i32::from_be_bytes(rest[8..12].try_into().expect("4 bytes"));
        if batch_length < (HEADER_BYTES - 12) as i32 {
            return Err(format!("fetched batch at offset {base_offset} has length {batch_length}").into());
        }
        let size = 12 + batch_length as usize;
        if rest.len() < size {
            break; // cut off at the end of the fetch
        }
        let batch = &rest[..size];
        rest = &rest[size..];
        if batch[16] != 2 {
            return Err(format!("fetched batch at offset {base_offset} has magic {}, expected 2", batch[16]).into());
        }
        let attributes = i16::from_be_bytes(batch[21..23].try_into().expect("2 bytes"));
        let last_offset_delta = i32::from_be_bytes(batch[23..27].try_into().expect("4 bytes"));
        let count = i32::from_be_bytes(batch[57..61].try_into().expect("4 bytes"));
        next_offset = Some(base_offset + i64::from(last_offset_delta) + 1);
        if attributes & CONTROL_BIT != 0 {
            continue;
        }
        let records = decompress(attributes, &batch[HEADER_BYTES..])?;
        walk_records(&records, count, base_offset, &mut on_value)
            .ok_or_else(|| format!("fetched batch at offset {base_offset} has malformed records"))?;
    }
    Ok(next_offset)
}

fn walk_records(records: &[u8], count: i32, base_offset: i64, on_value: &mut impl FnMut(i64, &[u8])) -> Option<()> {
    let mut at = 0usize;
    for _ in 0..count.max(0) {
        let (length, n) = read_varint(records.get(at..)?)?;
        at += n;
        let record = records.get(at..at + usize::try_from(length).ok()?)?;
        at += length as usize;
        let mut r = 1usize; // attributes
        let (_timestamp_delta, n) = read_varint(record.get(r..)?)?;
        r += n;
        let (offset_delta, n) = read_varint(record.get(r..)?)?;
        r += n;
        let (key_len, n) = read_varint(record.get(r..)?)?;
        r += n + usize::try_from(key_len.max(0)).ok()?;
        let (value_len, n) = read_varint(record.get(r..)?)?;
        r += n;
        let value = if value_len < 0 { &[][..] } else { record.get(r..r + value_len as usize)? };
        on_value(base_offset + offset_delta, value);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_codec_round_trips_and_validates() {
        for codec in [Codec::None, Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
            let mut builder = BatchBuilder::new(4096);
            for i in 0..50u8 {
                let key = [i; 3];
                builder.push(1_000 + i64::from(i), (i % 2 == 0).then_some(&key[..]), &[i; 16], &[7; 100]);
            }
            let batch = builder.finish(codec, 1_049).unwrap();
            assert!(builder.is_empty());
            pinion_engine::batch::validate(&batch).unwrap();
            let mut seen = Vec::new();
            // Two batches back to back plus a cut-off third.
            let mut fetched = batch.to_vec();
            fetched.extend_from_slice(&batch);
            fetched.extend_from_slice(&batch[..batch.len() / 2]);
            let next = for_each_value(&fetched, |offset, value| {
                assert_eq!(value.len(), 116);
                seen.push((offset, value[0]));
            })
            .unwrap();
            assert_eq!(next, Some(50), "{codec:?}");
            assert_eq!(seen.len(), 100, "{codec:?}");
            assert_eq!(seen[49], (49, 49));
            // The builder starts over: the next batch holds only its own records.
            builder.push(2_000, None, &[9; 16], &[8; 10]);
            let second = builder.finish(codec, 2_000).unwrap();
            assert_eq!(pinion_engine::batch::validate(&second).unwrap().records_count, 1, "{codec:?}");
            let mut values = Vec::new();
            for_each_value(&second, |offset, value| values.push((offset, value.to_vec()))).unwrap();
            assert_eq!(values, vec![(0, [[9u8; 16].as_slice(), &[8; 10]].concat())], "{codec:?}");
        }
    }

    #[test]
    fn empty_or_cut_off_fetch_has_no_next_offset() {
        assert_eq!(for_each_value(&[], |_, _| {}).unwrap(), None);
        assert_eq!(for_each_value(&[0; 30], |_, _| {}).unwrap(), None);
    }
}
