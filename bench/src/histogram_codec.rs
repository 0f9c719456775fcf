//! The text form of an HDR histogram inside a run file.
//!
//! Byte format: HdrHistogram's V2 + DEFLATE encoding (cookie `0x1c849304`,
//! then the zlib-compressed V2 payload: header and zig-zag LEB128 counts),
//! wrapped in standard-alphabet base64 with padding. It is the encoding
//! every HdrHistogram implementation (Java, Go, Python, Rust) decodes, so a
//! run file's histograms can be merged or plotted by other tools.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

/// Encodes `histogram` for a run file.
pub fn encode(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new()
        .serialize(histogram, &mut bytes)
        .expect("serializing a histogram into memory cannot fail");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes a histogram written by [`encode`] (or any V2 / V2 + DEFLATE
/// encoder). `what` names the histogram in the error.
pub fn decode(text: &str, what: &str) -> Result<Histogram<u64>, crate::Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|e| format!("{what}: histogram is not valid base64: {e}"))?;
    let histogram = Deserializer::new()
        .deserialize(&mut bytes.as_slice())
        .map_err(|e| format!("{what}: histogram is not an HdrHistogram V2 encoding: {e}"))?;
    Ok(histogram)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latency::{self, LatencySummary};

    #[test]
    fn encoded_histogram_decodes_to_the_same_percentiles() {
        let mut histogram = latency::histogram();
        for us in 1..=10_000u64 {
            histogram.record(us).unwrap();
        }
        histogram.record_n(2_500_000, 3).unwrap();
        let text = encode(&histogram);
        let decoded = decode(&text, "test").unwrap();
        assert_eq!(LatencySummary::of(&decoded), LatencySummary::of(&histogram));
        assert_eq!(decoded.len(), 10_003);
        assert_eq!(decoded.max(), histogram.max());
        for quantile in [0.0, 0.5, 0.9, 0.99, 0.999, 0.9999, 0.99999, 1.0] {
            assert_eq!(decoded.value_at_quantile(quantile), histogram.value_at_quantile(quantile), "q {quantile}");
        }
    }

    #[test]
    fn empty_histogram_round_trips() {
        let histogram = latency::histogram();
        let decoded = decode(&encode(&histogram), "empty").unwrap();
        assert!(decoded.is_empty());
    }

    #[test]
    fn garbage_is_refused_with_the_histogram_named() {
        let not_base64 = decode("%%%", "publish_latency_us").unwrap_err().to_string();
        assert!(not_base64.contains("publish_latency_us") && not_base64.contains("base64"), "{not_base64}");
        let not_hdr = decode("aGVsbG8gd29ybGQ=", "end_to_end_latency_us").unwrap_err().to_string();
        assert!(not_hdr.contains("end_to_end_latency_us") && not_hdr.contains("HdrHistogram"), "{not_hdr}");
    }
}
