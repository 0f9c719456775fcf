//! Per-shard counters and latency histograms, rendered as Prometheus text.
//! Each shard keeps its own (plain `Cell`s, no sharing); the metrics
//! endpoint asks every shard for its text over the mesh and concatenates.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::fmt::Write;

use pinion_engine::EngineStats;

/// Upper bounds of the latency buckets, in microseconds.
const BUCKETS_US: [u64; 14] =
    [50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000];

#[derive(Debug, Clone, Default)]
pub struct Histogram {
    buckets: [u64; BUCKETS_US.len()],
    count: u64,
    sum_us: u64,
}

impl Histogram {
    pub fn record(&mut self, us: u64) {
        for (bucket, bound) in self.buckets.iter_mut().zip(BUCKETS_US) {
            if us <= bound {
                *bucket += 1;
            }
        }
        self.count += 1;
        self.sum_us += us;
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        for (bucket, bound) in self.buckets.iter().zip(BUCKETS_US) {
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{}\"}} {bucket}", bound as f64 / 1e6);
        }
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", self.count);
        let _ = writeln!(out, "{name}_sum{{{labels}}} {}", self.sum_us as f64 / 1e6);
        let _ = writeln!(out, "{name}_count{{{labels}}} {}", self.count);
    }
}

#[derive(Debug)]
pub struct ShardMetrics {
    shard: usize,
    /// Requests by API name, with their latency.
    pub requests: RefCell<BTreeMap<&'static str, Histogram>>,
    pub bytes_in: Cell<u64>,
    pub bytes_out: Cell<u64>,
    pub cross_core_calls: Cell<u64>,
    pub connections_accepted: Cell<u64>,
    pub connections_open: Cell<u64>,
    pub bad_frames: Cell<u64>,
}

impl ShardMetrics {
    pub fn new(shard: usize) -> Self {
        Self {
            shard,
            requests: RefCell::new(BTreeMap::new()),
            bytes_in: Cell::new(0),
            bytes_out: Cell::new(0),
            cross_core_calls: Cell::new(0),
            connections_accepted: Cell::new(0),
            connections_open: Cell::new(0),
            bad_frames: Cell::new(0),
        }
    }

    pub fn record_request(&self, api: &'static str, latency_us: u64) {
        self.requests.borrow_mut().entry(api).or_default().record(latency_us);
    }

    /// This shard's lines of the Prometheus exposition (no HELP/TYPE headers;
    /// [`header`] prints them once for all shards).
    pub fn render(
        &self,
        engine: &EngineStats,
        cache_bytes: usize,
        read_ahead_bytes: usize,
        partitions: &[(String, i32, i64)],
        mesh_sent: u64,
    ) -> String {
        let shard = self.shard;
        let mut out = String::new();
        for (api, histogram) in self.requests.borrow().iter() {
            histogram.render(&mut out, "pinion_request_latency_seconds", &format!("shard=\"{shard}\",api=\"{api}\""));
        }
        let counters = [
            ("pinion_bytes_in_total", self.bytes_in.get()),
            ("pinion_bytes_out_total", self.bytes_out.get()),
            ("pinion_cross_core_calls_total", self.cross_core_calls.get()),
            ("pinion_cross_core_messages_sent_total", mesh_sent),
            ("pinion_connections_accepted_total", self.connections_accepted.get()),
            ("pinion_connections_open", self.connections_open.get()),
            ("pinion_bad_frames_total", self.bad_frames.get()),
            ("pinion_disk_writes_total", engine.writes),
            ("pinion_flushes_total", engine.write_rounds),
            ("pinion_fsyncs_total", engine.fsyncs),
            ("pinion_cache_bytes", cache_bytes as u64),
            ("pinion_read_aheads_total", engine.read_aheads),
            ("pinion_read_ahead_hits_total", engine.read_ahead_hits),
            ("pinion_read_ahead_bytes", read_ahead_bytes as u64),
        ];
        for (name, value) in counters {
            let _ = writeln!(out, "{name}{{shard=\"{shard}\"}} {value}");
        }
        let _ = writeln!(
            out,
            "pinion_flush_time_seconds_total{{shard=\"{shard}\"}} {}",
            engine.write_time_us_total as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "pinion_fsync_time_seconds_total{{shard=\"{shard}\"}} {}",
            engine.fsync_time_us_total as f64 / 1e6
        );
        let _ = writeln!(
            out,
            "pinion_fsync_time_seconds_max{{shard=\"{shard}\"}} {}",
            engine.fsync_time_us_max as f64 / 1e6
        );
        for (topic, partition, leo) in partitions {
            let _ = writeln!(
                out,
                "pinion_log_end_offset{{shard=\"{shard}\",topic=\"{topic}\",partition=\"{partition}\"}} {leo}"
            );
        }
        out
    }
}

/// HELP and TYPE lines for every metric family, printed once.
pub fn header() -> &'static str {
    "# HELP pinion_request_latency_seconds Time from reading a request to its response being ready, by API.\n\
     # TYPE pinion_request_latency_seconds histogram\n\
     # TYPE pinion_bytes_in_total counter\n\
     # TYPE pinion_bytes_out_total counter\n\
     # TYPE pinion_cross_core_calls_total counter\n\
     # TYPE pinion_cross_core_messages_sent_total counter\n\
     # TYPE pinion_connections_accepted_total counter\n\
     # TYPE pinion_connections_open gauge\n\
     # TYPE pinion_bad_frames_total counter\n\
     # TYPE pinion_disk_writes_total counter\n\
     # TYPE pinion_flushes_total counter\n\
     # TYPE pinion_fsyncs_total counter\n\
     # TYPE pinion_cache_bytes gauge\n\
     # HELP pinion_read_aheads_total Windows read ahead after reads from disk that stopped at their byte limit.\n\
     # TYPE pinion_read_aheads_total counter\n\
     # HELP pinion_read_ahead_hits_total Reads from disk that started with the window read ahead for them.\n\
     # TYPE pinion_read_ahead_hits_total counter\n\
     # TYPE pinion_read_ahead_bytes gauge\n\
     # TYPE pinion_flush_time_seconds_total counter\n\
     # TYPE pinion_fsync_time_seconds_total counter\n\
     # TYPE pinion_fsync_time_seconds_max gauge\n\
     # TYPE pinion_log_end_offset gauge\n\
     # HELP pinion_io_buffer_bytes Bytes mapped for O_DIRECT buffers on huge pages, in use or kept for reuse (all shards).\n\
     # TYPE pinion_io_buffer_bytes gauge\n\
     # HELP pinion_io_buffer_mappings_total Huge-page mappings made for O_DIRECT buffers; each faults in fresh 2 MiB pages.\n\
     # TYPE pinion_io_buffer_mappings_total counter\n"
}

/// The process-wide lines: the O_DIRECT buffer mappings of every shard
/// (`pinion_engine::huge_pages`).
pub fn render_process(out: &mut String, io_buffers: &pinion_engine::huge_pages::IoBufferStats) {
    let _ = writeln!(out, "pinion_io_buffer_bytes {}", io_buffers.bytes_mapped);
    let _ = writeln!(out, "pinion_io_buffer_mappings_total {}", io_buffers.regions_mapped);
}
