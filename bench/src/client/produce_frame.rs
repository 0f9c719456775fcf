//! Produce request frames whose record batches are never copied.
//!
//! A produce request is mostly its batches. Encoding it whole (as
//! [`super::connection::encode_request`] does) copies every batch into the
//! frame once more before the kernel copies the frame into the socket; on a
//! 2-core host that shares the machine with the broker, that copy was CPU
//! taken from the broker under test. librdkafka, too, sends a request's
//! batches from their own buffers with one `sendmsg` of many iovecs.
//!
//! [`ProduceFrame`] encodes everything but the batches into one small
//! buffer, byte for byte what `kafka-protocol` encodes for Produce v3 to
//! v12 (a test compares them), and writes it with the batches in one
//! vectored write.

use std::io::{IoSlice, Write};
use std::ops::Range;

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader};
use kafka_protocol::protocol::{Encodable, StrBytes};

use super::connection::CLIENT_ID;

/// First Produce version with flexible (compact) encoding.
const FLEXIBLE_FROM: i16 = 9;
/// Versions whose topics are named (v13 names them by id).
pub const VERSIONS: std::ops::RangeInclusive<i16> = 3..=12;

/// One topic of a request: its name and (partition index, batch) pairs.
pub struct TopicBatches<'a> {
    pub name: &'a str,
    pub partitions: Vec<(i32, Bytes)>,
}

/// An encoded produce request: the size prefix, the header and every field
/// but the batches in `encoded`; `pieces` is the frame in order.
#[derive(Debug, Default)]
pub struct ProduceFrame {
    encoded: BytesMut,
    pieces: Vec<Piece>,
}

#[derive(Debug)]
enum Piece {
    Encoded(Range<usize>),
    Batch(Bytes),
}

impl ProduceFrame {
    /// Encodes a Produce request of `version` (one of [`VERSIONS`]),
    /// replacing what the frame held.
    pub fn encode(
        &mut self,
        version: i16,
        correlation_id: i32,
        acks: i16,
        timeout_ms: i32,
        topics: &[TopicBatches<'_>],
    ) -> Result<(), crate::Error> {
        if !VERSIONS.contains(&version) {
            return Err(format!("Produce v{version} is not one pinion-bench encodes ({VERSIONS:?})").into());
        }
        self.encoded.clear();
        self.pieces.clear();
        let flexible = version >= FLEXIBLE_FROM;
        let out = &mut self.encoded;
        out.put_i32(0);
        RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(correlation_id)
            .with_client_id(Some(StrBytes::from_static_str(CLIENT_ID)))
            .encode(out, ApiKey::Produce.request_header_version(version))
            .map_err(|e| format!("cannot encode a Produce v{version} request header: {e}"))?;
        // transactional_id: null.
        if flexible {
            put_unsigned_varint(out, 0);
        } else {
            out.put_i16(-1);
        }
        out.put_i16(acks);
        out.put_i32(timeout_ms);
        put_length(out, flexible, topics.len());
        let mut encoded_from = 0;
        let mut batch_bytes = 0usize;
        for topic in topics {
            if flexible {
                put_unsigned_varint(out, topic.name.len() as u32 + 1);
            } else {
                out.put_i16(topic.name.len() as i16);
            }
            out.put_slice(topic.name.as_bytes());
            put_length(out, flexible, topic.partitions.len());
            for (index, batch) in &topic.partitions {
                out.put_i32(*index);
                put_length(out, flexible, batch.len());
                self.pieces.push(Piece::Encoded(encoded_from..out.len()));
                self.pieces.push(Piece::Batch(batch.clone()));
                batch_bytes += batch.len();
                encoded_from = out.len();
                if flexible {
                    put_unsigned_varint(out, 0); // partition's tagged fields
                }
            }
            if flexible {
                put_unsigned_varint(out, 0); // topic's tagged fields
            }
        }
        if flexible {
            put_unsigned_varint(out, 0); // request's tagged fields
        }
        self.pieces.push(Piece::Encoded(encoded_from..out.len()));
        let size = i32::try_from(out.len() - 4 + batch_bytes)
            .map_err(|_| format!("a Produce request of {batch_bytes} batch bytes does not fit a frame"))?;
        out[..4].copy_from_slice(&size.to_be_bytes());
        Ok(())
    }

    /// The frame's bytes, in order, as slices of the encoded buffer and of
    /// the batches.
    pub fn slices(&self) -> Vec<IoSlice<'_>> {
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Encoded(range) => IoSlice::new(&self.encoded[range.clone()]),
                Piece::Batch(batch) => IoSlice::new(batch),
            })
            .filter(|slice| !slice.is_empty())
            .collect()
    }

    /// Writes the whole frame with vectored writes.
    pub fn write_to(&self, out: &mut impl Write) -> std::io::Result<()> {
        let mut slices = self.slices();
        let mut rest = &mut slices[..];
        // Bounded: every pass writes at least one byte or returns.
        while !rest.is_empty() {
            match out.write_vectored(rest) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

/// An array or bytes length: compact (unsigned varint of length + 1) in
/// flexible versions, else i32.
fn put_length(out: &mut BytesMut, flexible: bool, len: usize) {
    if flexible {
        put_unsigned_varint(out, len as u32 + 1);
    } else {
        out.put_i32(len as i32);
    }
}

fn put_unsigned_varint(out: &mut BytesMut, mut value: u32) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

#[cfg(test)]
mod tests {
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ProduceRequest, TopicName};

    use super::*;
    use crate::client::connection::encode_request;

    fn batch(len: usize, seed: u8) -> Bytes {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect::<Vec<u8>>().into()
    }

    #[test]
    fn frames_match_kafka_protocol_encoding_in_every_version() {
        let topics = vec![
            TopicBatches { name: "bench-0", partitions: vec![(0, batch(61, 1)), (7, batch(300, 2))] },
            TopicBatches { name: "t", partitions: vec![(2, batch(70_000, 3))] },
        ];
        for version in VERSIONS {
            let request = ProduceRequest::default().with_acks(-1).with_timeout_ms(10_000).with_topic_data(
                topics
                    .iter()
                    .map(|topic| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(topic.name.to_string())))
                            .with_partition_data(
                                topic
                                    .partitions
                                    .iter()
                                    .map(|(index, batch)| {
                                        PartitionProduceData::default()
                                            .with_index(*index)
                                            .with_records(Some(batch.clone()))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
            let mut expected = BytesMut::new();
            encode_request(&mut expected, ApiKey::Produce, version, 42, &request).unwrap();

            let mut frame = ProduceFrame::default();
            frame.encode(version, 42, -1, 10_000, &topics).unwrap();
            let mut written = Vec::new();
            frame.write_to(&mut written).unwrap();
            assert_eq!(written, expected, "Produce v{version}");
            // The batches are referenced, not copied.
            let slices = frame.slices();
            assert!(slices.iter().any(|s| s.as_ptr() == topics[1].partitions[0].1.as_ptr()));
        }
    }

    #[test]
    fn versions_outside_the_named_ones_are_refused() {
        let mut frame = ProduceFrame::default();
        assert!(frame.encode(13, 1, 1, 1, &[]).is_err());
        assert!(frame.encode(2, 1, 1, 1, &[]).is_err());
    }

    /// A writer that takes at most 5 bytes per call, as a full socket might.
    struct Trickle(Vec<u8>);

    impl Write for Trickle {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let n = buf.len().min(5);
            self.0.extend_from_slice(&buf[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn short_writes_continue_where_they_stopped() {
        let topics = [TopicBatches { name: "a", partitions: vec![(0, batch(23, 9)), (1, batch(17, 8))] }];
        let mut frame = ProduceFrame::default();
        frame.encode(9, 3, 1, 500, &topics).unwrap();
        let mut whole = Vec::new();
        frame.write_to(&mut whole).unwrap();
        let mut trickle = Trickle(Vec::new());
        frame.write_to(&mut trickle).unwrap();
        assert_eq!(trickle.0, whole);
        assert_eq!(i32::from_be_bytes(whole[..4].try_into().unwrap()) as usize, whole.len() - 4);
    }
}
