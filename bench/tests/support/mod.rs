//! Run files for the `compare` and `report` tests: real [`RunResult`]
//! values (the binary's own types, compiled in from `src/` so a schema
//! change breaks these tests at compile time) with histograms recorded from
//! known latencies, and a way to run the real binary on them.
//!
//! The histograms are encoded here with hdrhistogram and base64 directly,
//! not with the binary's encoder, so the binary is shown to read the
//! standard encoding rather than only its own.

#![allow(dead_code)] // Each test file uses a different part.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use base64::Engine;
use hdrhistogram::serialization::{Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;

#[path = "../../src/latency.rs"]
pub mod latency;
#[path = "../../src/machine.rs"]
pub mod machine;
#[path = "../../src/results.rs"]
pub mod results;

/// `results.rs` returns `crate::Error`, as in the binary.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

use latency::LatencySummary;
use machine::MachineFacts;
use results::{BrokerFacts, ErrorCounts, Histograms, RunResult, SeriesPoint, ThroughputSummary, WorkloadEcho};

/// 1,000 latencies `1..=1000` µs, each multiplied by `numerator / denominator`
/// (integer arithmetic, so the percentiles are exact: HDR histograms with 3
/// significant digits keep every value below 2,048 as it is). Unscaled:
/// p50 500, p90 900, p99 990, p99.9 999, p99.99 1000, max 1000.
pub fn latencies(numerator: u64, denominator: u64) -> Histogram<u64> {
    let mut histogram = latency::histogram();
    for us in 1..=1000u64 {
        histogram.record(us * numerator / denominator).unwrap();
    }
    histogram
}

pub fn encode(histogram: &Histogram<u64>) -> String {
    let mut bytes = Vec::new();
    V2DeflateSerializer::new().serialize(histogram, &mut bytes).unwrap();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A run of workload `name` at `messages_per_sec` with the given latencies.
pub fn run_result(
    name: &str,
    messages_per_sec: f64,
    publish: &Histogram<u64>,
    end_to_end: Option<&Histogram<u64>>,
) -> RunResult {
    let series = (1..=12)
        .map(|second| SeriesPoint {
            t_secs: second as f64,
            warmup: second <= 2,
            sent_per_sec: messages_per_sec,
            acked_per_sec: messages_per_sec * if second <= 2 { 0.5 } else { 1.0 },
            consumed_per_sec: if end_to_end.is_some() { messages_per_sec } else { 0.0 },
            publish_p99_us: publish.value_at_quantile(0.99) + second,
            end_to_end_p99_us: end_to_end.map(|h| h.value_at_quantile(0.99)).unwrap_or(0),
        })
        .collect();
    RunResult {
        kind: results::RUN_KIND.into(),
        schema_version: results::SCHEMA_VERSION,
        tool_version: "0.1.0".into(),
        workload: WorkloadEcho {
            name: name.into(),
            topics: 1,
            partitions_per_topic: 100,
            message_size_bytes: 1024,
            payload: "random".into(),
            payload_seed: 7,
            keys: "none".into(),
            producers: 1,
            consumers: u32::from(end_to_end.is_some()),
            consumer_groups: u32::from(end_to_end.is_some()),
            compression: "lz4".into(),
            acks: -1,
            linger_ms: 1,
            batch_size_bytes: 131_072,
            rate_msgs_per_sec: Some(10_000),
            warmup_secs: 2,
            duration_secs: 10,
            consumer_backlog_bytes: 0,
        },
        broker: BrokerFacts {
            bootstrap: "127.0.0.1:9092".into(),
            version: "ApiVersions v3, 42 apis".into(),
            api_versions: vec![(0, 3, 9), (1, 4, 12), (18, 0, 3)],
        },
        machine: MachineFacts {
            cores: 2,
            cpu_model: "Test CPU @ 3.0GHz".into(),
            kernel: "6.1.0-test".into(),
            memory_bytes: 8 << 30,
            filesystem: "ext4".into(),
            date: "2026-11-21T23:00:00Z".into(),
            load_average: [0.5, 0.25, 0.1],
            process_thp_enabled: None,
        },
        measured_secs: 10.0,
        warmup_secs: 2.0,
        throughput: ThroughputSummary {
            messages_per_sec,
            bytes_per_sec: messages_per_sec * 1024.0,
            consumed_messages_per_sec: if end_to_end.is_some() { messages_per_sec } else { 0.0 },
            sent_messages: (messages_per_sec * 10.0) as u64,
            acked_messages: (messages_per_sec * 10.0) as u64,
            consumed_messages: if end_to_end.is_some() { (messages_per_sec * 10.0) as u64 } else { 0 },
            backlog_messages: 0,
            consumer_backlog: None,
        },
        publish_latency_us: LatencySummary::of(publish),
        end_to_end_latency_us: end_to_end.map(LatencySummary::of),
        histograms: Histograms { publish_latency_us: encode(publish), end_to_end_latency_us: end_to_end.map(encode) },
        series,
        errors: ErrorCounts::default(),
    }
}

pub fn write(dir: &Path, file: &str, run: &RunResult) -> PathBuf {
    let path = dir.join(file);
    std::fs::write(&path, serde_json::to_string_pretty(run).unwrap()).unwrap();
    path
}

/// Runs `pinion-bench` with `args`.
pub fn bench<I, S>(args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(env!("CARGO_BIN_EXE_pinion-bench")).args(args).output().unwrap()
}

/// stdout and stderr, for assertion messages.
pub fn shown(output: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}
