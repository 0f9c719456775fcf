//! The batches a producer would send, built before the clock starts.
//!
//! Each batch is a Kafka RecordBatch v2 as a client library emits it:
//! records of `message_bytes`-byte values (no key, no headers) encoded with
//! [`build::record`], and for a compressed batch the whole records section
//! compressed the way Kafka frames it (lz4: the LZ4 frame format, which is
//! what Kafka's `KafkaLZ4BlockOutputStream` writes since message format v1;
//! zstd: one zstd frame), wrapped by [`build::from_records`] with the
//! compression in the low attribute bits and a correct CRC-32C.
//!
//! `batch_bytes` plays the producer's `batch.size`: the stored size of an
//! uncompressed batch, or the uncompressed records section of a compressed
//! one (so a compressed batch holds as many messages as an uncompressed
//! one and is stored smaller).

use std::io::Write;

use pinion_engine::batch::{build, HEADER_BYTES};
use serde::Serialize;

/// Compression codec of the produced batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    /// The attribute bits Kafka gives the codec.
    pub fn attributes(self) -> i16 {
        match self {
            Compression::None => 0,
            Compression::Lz4 => 3,
            Compression::Zstd => 4,
        }
    }
}

/// What the message values look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Payload {
    /// JSON-like events with repeating field names and small varied values:
    /// compresses about as well as typical application events.
    Json,
    /// Uniformly random bytes: incompressible.
    Random,
}

/// How to build the producer batches.
#[derive(Debug, Clone)]
pub struct BatchSpec {
    pub message_bytes: usize,
    pub batch_bytes: usize,
    pub compression: Compression,
    pub payload: Payload,
    pub zstd_level: i32,
    pub seed: u64,
    /// Create time stamped on every record (Unix ms): the time the batches
    /// are built, so time-based retention treats them as fresh.
    pub base_timestamp: i64,
}

/// One ready-to-send batch.
#[derive(Debug)]
pub struct ProducerBatch {
    /// The RecordBatch v2 bytes as they would arrive in a produce request.
    pub bytes: Vec<u8>,
    pub records: u32,
    /// Bytes of the records section before compression.
    pub records_bytes: usize,
}

/// A small, fast, seedable generator (splitmix64): payloads only need to
/// be reproducible, not strong.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, bound: u64) -> u64 {
        self.next_u64() % bound
    }

    pub fn fill(&mut self, out: &mut [u8]) {
        for chunk in out.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

const EVENTS: [&str; 8] = ["click", "view", "purchase", "signup", "logout", "search", "add_to_cart", "share"];
const EXTRA_KEYS: [&str; 6] = ["region", "device", "campaign", "referrer", "session", "variant"];
const EXTRA_VALUES: [&str; 8] = ["eu-west", "us-east", "mobile", "desktop", "spring-sale", "organic", "a", "b"];

/// Writes one JSON-like event of exactly `len` bytes into `out` (cut short
/// if `len` is smaller than the event, padded with more fields if larger).
pub fn json_value(rng: &mut SplitMix64, sequence: u64, len: usize, out: &mut Vec<u8>) {
    out.clear();
    let _ = write!(
        out,
        "{{\"seq\":{sequence},\"user\":\"u{:05}\",\"event\":\"{}\",\"page\":\"/p/{}\",\"ts\":{},\"amount\":{}.{:02}",
        rng.below(50_000),
        EVENTS[rng.below(EVENTS.len() as u64) as usize],
        rng.below(1000),
        1_700_000_000_000u64 + sequence * 3 + rng.below(3),
        rng.below(500),
        rng.below(100),
    );
    while out.len() < len {
        let _ = write!(
            out,
            ",\"{}\":\"{}-{}\"",
            EXTRA_KEYS[rng.below(EXTRA_KEYS.len() as u64) as usize],
            EXTRA_VALUES[rng.below(EXTRA_VALUES.len() as u64) as usize],
            rng.below(100)
        );
    }
    out.truncate(len.saturating_sub(1));
    out.push(b'}');
    out.truncate(len);
}

fn compress(records: &[u8], spec: &BatchSpec) -> std::io::Result<Vec<u8>> {
    match spec.compression {
        Compression::None => Ok(records.to_vec()),
        Compression::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::with_capacity(records.len() / 2));
            encoder.write_all(records)?;
            encoder.finish().map_err(std::io::Error::other)
        }
        Compression::Zstd => zstd::bulk::compress(records, spec.zstd_level),
    }
}

/// Builds batches until they hold at least `total_records_bytes` of
/// (uncompressed) records, and at least two batches.
pub fn build_batches(spec: &BatchSpec, total_records_bytes: usize) -> std::io::Result<Vec<ProducerBatch>> {
    assert!(spec.message_bytes > 0 && spec.batch_bytes > HEADER_BYTES);
    let records_bytes_max = match spec.compression {
        Compression::None => spec.batch_bytes - HEADER_BYTES,
        Compression::Lz4 | Compression::Zstd => spec.batch_bytes,
    };
    let base_timestamp = spec.base_timestamp;
    let mut rng = SplitMix64::new(spec.seed);
    let mut value = Vec::with_capacity(spec.message_bytes);
    let mut encoded = Vec::with_capacity(spec.message_bytes + 32);
    let mut records = Vec::with_capacity(records_bytes_max);
    let mut count: i32 = 0;
    let mut sequence = 0u64;
    let mut batches = Vec::new();
    let mut built_bytes = 0usize;
    let finish = |records: &mut Vec<u8>, count: &mut i32, batches: &mut Vec<ProducerBatch>| -> std::io::Result<usize> {
        let body = compress(records, spec)?;
        let bytes = build::from_records(&body, *count, spec.compression.attributes(), base_timestamp, base_timestamp);
        let records_bytes = records.len();
        batches.push(ProducerBatch { bytes, records: *count as u32, records_bytes });
        records.clear();
        *count = 0;
        Ok(records_bytes)
    };
    while built_bytes < total_records_bytes || batches.len() < 2 {
        match spec.payload {
            Payload::Json => json_value(&mut rng, sequence, spec.message_bytes, &mut value),
            Payload::Random => {
                value.resize(spec.message_bytes, 0);
                rng.fill(&mut value);
            }
        }
        sequence += 1;
        encoded.clear();
        build::record(&mut encoded, i64::from(count), 0, None, &value);
        if count > 0 && records.len() + encoded.len() > records_bytes_max {
            built_bytes += finish(&mut records, &mut count, &mut batches)?;
            encoded.clear();
            build::record(&mut encoded, 0, 0, None, &value);
        }
        records.extend_from_slice(&encoded);
        count += 1;
    }
    if count > 0 {
        finish(&mut records, &mut count, &mut batches)?;
    }
    Ok(batches)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pinion_engine::batch::{validate, Compression as Codec};

    fn spec(compression: Compression, payload: Payload) -> BatchSpec {
        BatchSpec {
            message_bytes: 100,
            batch_bytes: 64 << 10,
            compression,
            payload,
            zstd_level: 3,
            seed: 7,
            base_timestamp: 1_700_000_000_000,
        }
    }

    #[test]
    fn uncompressed_batches_validate_and_respect_the_size() {
        let batches = build_batches(&spec(Compression::None, Payload::Json), 256 << 10).unwrap();
        assert!(batches.len() >= 4);
        for b in &batches {
            let header = validate(&b.bytes).unwrap();
            assert_eq!(header.compression(), Codec::None);
            assert_eq!(header.records_count as u32, b.records);
            assert!(b.bytes.len() <= 64 << 10);
        }
        // Full batches are close to the size asked for.
        assert!(batches[0].bytes.len() > (64 << 10) - 200);
    }

    #[test]
    fn compressed_batches_decompress_to_their_records() {
        for (compression, codec) in [(Compression::Lz4, Codec::Lz4), (Compression::Zstd, Codec::Zstd)] {
            let batches = build_batches(&spec(compression, Payload::Json), 128 << 10).unwrap();
            let first = &batches[0];
            let header = validate(&first.bytes).unwrap();
            assert_eq!(header.compression(), codec);
            let body = &first.bytes[HEADER_BYTES..];
            let records = match compression {
                Compression::Lz4 => {
                    let mut out = Vec::new();
                    std::io::Read::read_to_end(&mut lz4_flex::frame::FrameDecoder::new(body), &mut out).unwrap();
                    out
                }
                _ => zstd::decode_all(body).unwrap(),
            };
            assert_eq!(records.len(), first.records_bytes);
            // The records frame as an uncompressed batch would.
            let plain = build::from_records(&records, first.records as i32, 0, 0, 0);
            validate(&plain).unwrap();
            assert!(first.bytes.len() < records.len() / 2, "JSON-like payload must compress");
        }
    }

    #[test]
    fn json_values_have_the_exact_length() {
        let mut rng = SplitMix64::new(1);
        let mut out = Vec::new();
        for len in [1, 10, 100, 1000, 4096] {
            json_value(&mut rng, 5, len, &mut out);
            assert_eq!(out.len(), len);
        }
    }
}
