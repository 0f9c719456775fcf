//! The results of a run: the JSON document other tools script against, and
//! the human summary printed on stdout.
//!
//! The top-level fields named in the issue (`messages_per_sec`,
//! `bytes_per_sec`, `raw_odirect_write_bytes_per_sec`, `append_latency_us`,
//! `ratio_to_raw`, `tail_read_bytes_per_sec`, `cold_read_bytes_per_sec`)
//! are copies of the detailed sections below them, kept flat so a script
//! needs no knowledge of the layout. They are `null` for a phase that did
//! not run (`--raw-only`, `--skip-raw`).

use std::fmt::Write;

use serde::Serialize;

use crate::engine::{ConfigEcho, PrebuiltFacts, ReadResult, WriteResult};
use crate::latency::LatencySummary;
use crate::machine::MachineFacts;
use crate::raw_disk::RawResult;

#[derive(Debug, Serialize)]
pub struct Report {
    pub tool: &'static str,
    pub version: &'static str,
    pub messages_per_sec: Option<f64>,
    /// Stored bytes per second reaching the disk.
    pub bytes_per_sec: Option<f64>,
    /// Uncompressed message value bytes per second.
    pub payload_bytes_per_sec: Option<f64>,
    pub raw_odirect_write_bytes_per_sec: Option<f64>,
    pub raw_odirect_read_bytes_per_sec: Option<f64>,
    /// `bytes_per_sec / raw_odirect_write_bytes_per_sec`.
    pub ratio_to_raw: Option<f64>,
    /// Latency to the acknowledgement asked for with `--durability`
    /// (`written` for `durable` runs; `durable_latency_us` has the rest;
    /// for `none`, to the append returning).
    pub append_latency_us: Option<LatencySummary>,
    pub durable_latency_us: Option<LatencySummary>,
    pub tail_read_bytes_per_sec: Option<f64>,
    pub cold_read_bytes_per_sec: Option<f64>,
    pub config: ConfigEcho,
    pub machine: MachineFacts,
    pub prebuilt: Option<PrebuiltFacts>,
    pub write: Option<WriteResult>,
    pub tail_read: Option<ReadResult>,
    pub cold_read: Option<ReadResult>,
    pub raw: Option<RawResult>,
}

impl Report {
    pub fn new(
        config: ConfigEcho,
        machine: MachineFacts,
        prebuilt: Option<PrebuiltFacts>,
        write: Option<WriteResult>,
        tail_read: Option<ReadResult>,
        cold_read: Option<ReadResult>,
        raw: Option<RawResult>,
    ) -> Self {
        let raw_write = raw.as_ref().map(|r| r.write_bytes_per_sec);
        let bytes_per_sec = write.as_ref().map(|w| w.bytes_per_sec);
        Self {
            tool: "pinion-bench engine",
            version: env!("CARGO_PKG_VERSION"),
            messages_per_sec: write.as_ref().map(|w| w.messages_per_sec),
            bytes_per_sec,
            payload_bytes_per_sec: write.as_ref().map(|w| w.payload_bytes_per_sec),
            raw_odirect_write_bytes_per_sec: raw_write,
            raw_odirect_read_bytes_per_sec: raw.as_ref().map(|r| r.read_bytes_per_sec),
            ratio_to_raw: bytes_per_sec.zip(raw_write).map(|(engine, raw)| engine / raw),
            append_latency_us: write.as_ref().map(|w| w.written_latency_us.unwrap_or(w.append_return_latency_us)),
            durable_latency_us: write.as_ref().and_then(|w| w.durable_latency_us),
            tail_read_bytes_per_sec: tail_read.as_ref().map(|r| r.bytes_per_sec),
            cold_read_bytes_per_sec: cold_read.as_ref().map(|r| r.bytes_per_sec),
            config,
            machine,
            prebuilt,
            write,
            tail_read,
            cold_read,
            raw,
        }
    }
}

fn mb(bytes_per_sec: f64) -> String {
    format!("{:.1} MB/s", bytes_per_sec / 1e6)
}

/// The human-readable summary.
pub fn summary(report: &Report) -> String {
    let mut out = String::new();
    let args = &report.config.args;
    let m = &report.machine;
    let _ = writeln!(
        out,
        "pinion-bench engine  {}  {} cores ({}), kernel {}, {} in {}, load average {:.2}",
        m.date,
        m.cores,
        m.cpu_model,
        m.kernel,
        m.filesystem,
        args.dir.display(),
        m.load_average[0]
    );
    if let Some(p) = &report.prebuilt {
        let _ = writeln!(
            out,
            "batches: {} B messages, {:?}, {:?} payload, {} batches of {:.0} records / {:.0} stored bytes (stored/records {:.3}), built in {:.2} s",
            args.message_bytes,
            args.compression,
            args.payload,
            p.batches,
            p.records_per_batch_mean,
            p.stored_bytes_per_batch_mean,
            p.compression_ratio,
            p.build_seconds
        );
    }
    if let Some(w) = &report.write {
        let mode = match w.rate_target {
            Some(rate) => format!("fixed rate {rate:.0} msg/s"),
            None => format!("closed loop, {} B in flight", report.config.inflight_bytes),
        };
        let _ = writeln!(
            out,
            "write ({mode}, acks {:?}, {} partition(s), {:.2} s measured, one shard on {}):",
            args.durability, args.partitions, w.seconds, report.config.placement
        );
        let _ = writeln!(
            out,
            "  {:.0} msg/s, {} stored, {} payload, {} appends",
            w.messages_per_sec,
            mb(w.bytes_per_sec),
            mb(w.payload_bytes_per_sec),
            w.appends
        );
        let _ = writeln!(out, "  append returned: {}", w.append_return_latency_us);
        if let Some(l) = &w.written_latency_us {
            let _ = writeln!(out, "  to written:      {l}");
        }
        if let Some(l) = &w.durable_latency_us {
            let _ = writeln!(out, "  to durable:      {l}");
        }
        if let Some(b) = &w.backlogs {
            let _ = writeln!(
                out,
                "  backlogs over {} ms: {} episodes, {} appends ({:.2}%), stalled {:.1} ms and draining {:.1} ms in all",
                b.threshold_us as f64 / 1e3,
                b.episodes,
                b.appends,
                b.appends_fraction * 100.0,
                b.stall_us_total as f64 / 1e3,
                b.drain_us_total as f64 / 1e3
            );
            for episode in &b.worst {
                let _ = writeln!(out, "    {episode}");
            }
        }
        let _ = writeln!(
            out,
            "  shard cpu {:.2} user + {:.2} sys cores; process {:.2} + {:.2}; {} write rounds ({:.0} B, {:.0} us each, writing {:.0}% of the time), {} fsyncs; device wrote {:.3} B per stored B",
            w.shard_cpu.user_cores,
            w.shard_cpu.system_cores,
            w.process_cpu.user_cores,
            w.process_cpu.system_cores,
            w.engine.write_rounds,
            w.engine.write_bytes_per_round_mean,
            w.engine.write_round_us_mean,
            w.engine.write_busy_fraction * 100.0,
            w.engine.fsyncs,
            w.device_write_amplification
        );
        let _ = writeln!(
            out,
            "  machine: {:.2} busy cores, {:.2} of them other processes, {:.2} stolen; shard waited for a CPU {:.1}% of the time{}",
            w.machine_busy_cores,
            w.other_busy_cores,
            w.steal_cores,
            w.shard_runqueue_wait_fraction * 100.0,
            if w.other_busy_cores > 0.25 || w.shard_runqueue_wait_fraction > 0.05 { "  <-- NOT A QUIET MACHINE" } else { "" }
        );
        let mib = |bytes: Option<u64>| bytes.map_or("?".to_string(), |b| format!("{:.0} MiB", b as f64 / 1048576.0));
        let _ = writeln!(
            out,
            "  memory: O_DIRECT buffers {} mapped, {} of it on huge pages, {} new mappings while measured; heap on huge pages {} (huge pages: {})",
            mib(Some(w.io_buffer_bytes_mapped)),
            mib(w.io_buffer_huge_page_bytes),
            w.io_buffer_regions_mapped,
            mib(w.heap_huge_page_bytes),
            report.config.huge_pages
        );
    }
    if let Some(r) = &report.tail_read {
        let _ = writeln!(
            out,
            "tail read (cache): {} with a copy per chunk, {} zero-copy ({} memory / {} disk chunks)",
            mb(r.bytes_per_sec),
            mb(r.zero_copy_bytes_per_sec.unwrap_or(0.0)),
            r.memory_chunks,
            r.disk_chunks
        );
    }
    if let Some(r) = &report.cold_read {
        let _ = writeln!(
            out,
            "cold read (reopened, from disk): {} over {:.1} MB ({} disk / {} memory chunks), device read {:.2} B per B returned, reopen {:.3} s",
            mb(r.bytes_per_sec),
            r.bytes as f64 / 1e6,
            r.disk_chunks,
            r.memory_chunks,
            r.device_read_amplification.unwrap_or(0.0),
            r.reopen_seconds.unwrap_or(0.0)
        );
    }
    if let Some(raw) = &report.raw {
        let _ = writeln!(
            out,
            "raw O_DIRECT: write {} ({} B x {} in flight{}{}, {:.1} s, machine {:.2} busy cores), read {} ({} in flight), {} (1 in flight)",
            mb(raw.write_bytes_per_sec),
            raw.write_bytes_per_op,
            raw.inflight,
            if raw.rewrite {
                ", rewriting written blocks"
            } else if raw.overwrite {
                ", overwriting"
            } else {
                ""
            },
            if raw.fresh_buffers { ", fresh buffers" } else { "" },
            raw.write_seconds,
            raw.write_machine_busy_cores,
            mb(raw.read_bytes_per_sec),
            raw.inflight,
            mb(raw.read_qd1_bytes_per_sec)
        );
    }
    if let Some(ratio) = report.ratio_to_raw {
        let _ = writeln!(out, "ratio = engine write MB/s / raw MB/s = {ratio:.3}");
    }
    if let Some(paced) = report.raw.as_ref().and_then(|r| r.paced.as_ref()) {
        let _ = writeln!(
            out,
            "raw O_DIRECT at the run's rate: {} in writes of {} B, latency from the scheduled time:\n  each write:   {}\n  in order:     {}",
            mb(paced.bytes_per_sec),
            paced.write_bytes_per_op,
            paced.write_latency_us,
            paced.in_order_latency_us
        );
        if let Some(engine) = &report.append_latency_us {
            let _ = writeln!(
                out,
                "latency ratio = engine p99 / raw in-order p99 at the same rate = {:.2}",
                engine.p99 as f64 / paced.in_order_latency_us.p99.max(1) as f64
            );
        }
    }
    out
}
