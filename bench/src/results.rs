//! The JSON document `pinion-bench run` writes and `pinion-bench compare`
//! and the HTML report read: one file per run, stable field names, so CI
//! scripts can depend on them.
//!
//! Latencies are microseconds. Percentile summaries are kept beside the
//! full HDR histograms (V2 + DEFLATE, base64: the format every HdrHistogram
//! implementation reads), so a later tool can merge runs or draw curves
//! without trusting the summary.

use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;
use crate::machine::MachineFacts;

/// `kind` of a run document; `compare` refuses other files.
pub const RUN_KIND: &str = "pinion-bench-run";
/// Bumped when a field changes meaning; readers refuse newer majors.
pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// Always [`RUN_KIND`].
    pub kind: String,
    pub schema_version: u32,
    /// pinion-bench's own version.
    pub tool_version: String,
    /// The workload as it ran: file values with every flag override applied.
    pub workload: WorkloadEcho,
    pub broker: BrokerFacts,
    pub machine: MachineFacts,
    /// Seconds measured (after warm-up).
    pub measured_secs: f64,
    pub warmup_secs: f64,
    pub throughput: ThroughputSummary,
    /// Intended send time to acknowledgement (coordinated-omission corrected).
    pub publish_latency_us: LatencySummary,
    /// Intended send time to the consumer seeing the message; `None` when
    /// the workload has no consumers.
    pub end_to_end_latency_us: Option<LatencySummary>,
    pub histograms: Histograms,
    /// One point per second of the whole run, warm-up included (`warmup` marks it).
    pub series: Vec<SeriesPoint>,
    pub errors: ErrorCounts,
}

/// Every setting of a workload, resolved.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WorkloadEcho {
    /// Workload name (file stem) or the path it was read from.
    pub name: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    pub message_size_bytes: u32,
    /// `random` or `json` (compressible, JSON-like).
    pub payload: String,
    pub payload_seed: u64,
    /// `none`, `random` or `sequential` key distribution.
    pub keys: String,
    pub producers: u32,
    pub consumers: u32,
    pub consumer_groups: u32,
    /// `none`, `gzip`, `snappy`, `lz4` or `zstd`.
    pub compression: String,
    /// 0, 1 or -1 (all).
    pub acks: i16,
    pub linger_ms: u64,
    pub batch_size_bytes: u32,
    /// Target messages per second over all producers; `None` = max rate.
    pub rate_msgs_per_sec: Option<u64>,
    pub warmup_secs: u64,
    pub duration_secs: u64,
    /// Message bytes acknowledged before the consumers started (0 = they
    /// started with the producers). Absent in files written before it.
    #[serde(default)]
    pub consumer_backlog_bytes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerFacts {
    pub bootstrap: String,
    /// Which broker answered, as far as the wire tells: Kafka has no
    /// version field, so this is the highest ApiVersions version and the
    /// api count (e.g. "ApiVersions v3, 42 apis"), plus `software_name`
    /// when a broker fills it in.
    pub version: String,
    /// (api_key, min_version, max_version) from the ApiVersions response.
    pub api_versions: Vec<(i16, i16, i16)>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ThroughputSummary {
    /// Messages acknowledged per second during the measured window.
    pub messages_per_sec: f64,
    /// Uncompressed message bytes (key + value) acknowledged per second.
    pub bytes_per_sec: f64,
    /// Messages consumed per second (summed over consumer groups).
    pub consumed_messages_per_sec: f64,
    pub sent_messages: u64,
    pub acked_messages: u64,
    pub consumed_messages: u64,
    /// Intended sends that had not been sent when the run ended (open-loop
    /// backlog: the broker or the generator could not keep up).
    pub backlog_messages: u64,
    /// With `consumer_backlog_bytes`: how fast the consumers read back what
    /// was produced before they started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consumer_backlog: Option<ConsumerBacklog>,
}

/// The consumers' catch-up over a backlog (OpenMessaging Benchmark's
/// `consumerBacklogSizeGB`): they start once the producers have this much
/// acknowledged, read from where the run started, and are caught up when
/// every group has consumed as many messages as were acknowledged at their
/// start. The producers go on meanwhile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConsumerBacklog {
    /// Messages and message bytes acknowledged when the consumers started.
    pub messages: u64,
    pub bytes: u64,
    /// Seconds from the run's start to the consumers' start.
    pub started_after_secs: f64,
    /// Seconds from the consumers' start until every group had read the
    /// backlog; `None` when they had not by the end of the run.
    pub catch_up_secs: Option<f64>,
    /// Backlog messages and bytes read per second (per group) during the catch-up.
    pub catch_up_messages_per_sec: Option<f64>,
    pub catch_up_bytes_per_sec: Option<f64>,
}

/// HDR histograms, V2 + DEFLATE serialized, base64 (standard alphabet).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histograms {
    pub publish_latency_us: String,
    pub end_to_end_latency_us: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SeriesPoint {
    /// Seconds since the run started (end of this one-second bucket).
    pub t_secs: f64,
    pub warmup: bool,
    pub sent_per_sec: f64,
    pub acked_per_sec: f64,
    pub consumed_per_sec: f64,
    /// Publish latency p99 within this bucket.
    pub publish_p99_us: u64,
    /// End-to-end latency p99 within this bucket (0 without consumers).
    pub end_to_end_p99_us: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ErrorCounts {
    /// Produce partition responses with a non-zero error code, by code name.
    pub produce: std::collections::BTreeMap<String, u64>,
    pub fetch: std::collections::BTreeMap<String, u64>,
    /// Connections lost or refused during the run.
    pub connection: u64,
}

impl RunResult {
    /// Reads a run document, refusing files that are not one.
    pub fn read(path: &std::path::Path) -> Result<Self, crate::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let value: Self = serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a pinion-bench run file: {e}", path.display()))?;
        if value.kind != RUN_KIND {
            return Err(format!("{}: kind is {:?}, expected {RUN_KIND:?}", path.display(), value.kind).into());
        }
        if value.schema_version > SCHEMA_VERSION {
            return Err(format!(
                "{}: schema_version {} is newer than this pinion-bench understands ({SCHEMA_VERSION})",
                path.display(),
                value.schema_version
            )
            .into());
        }
        Ok(value)
    }
}
