//! `pinion-bench run`: drive a Kafka-compatible broker with a workload and
//! write what happened as a [`RunResult`].
//!
//! Phases: connect and read ApiVersions; create the topics if missing and
//! find every partition's leader; read the log end offsets the consumers
//! start from; start consumers, then producers on a shared schedule;
//! report progress once per second; when the producers are done, give the
//! consumers until `--drain-timeout` to see every acknowledged message;
//! write the JSON (and the report), print the summary.
//!
//! Any thread's fatal error (unreachable broker, timeout, a produce error
//! the client may not retry, every produce failing for
//! [`REJECTION_WINDOW_SECS`] seconds, a request unanswered for
//! `--request-timeout`) stops the run with one message and a
//! non-zero exit; no wait in here is unbounded.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::client::cluster::{ensure_topics, latest_offsets, ClusterView, PartitionOffsets};
use crate::client::connection::{set_request_timeout, Connection};
use crate::histogram_codec;
use crate::latency::LatencySummary;
use crate::load::publisher::{self, ProducerPlan};
use crate::load::stats::{now_ns, RunStats};
use crate::load::subscriber::{self, ConsumerPlan};
use crate::machine::MachineFacts;
use crate::results::{
    BrokerFacts, ConsumerBacklog, ErrorCounts, Histograms, RunResult, SeriesPoint, ThroughputSummary, RUN_KIND,
    SCHEMA_VERSION,
};
use crate::workload::{Overrides, Workload};

/// A run fails when every produce answer in this many consecutive seconds
/// was an error (retriable errors included: a broker that never accepts is
/// not going to).
const REJECTION_WINDOW_SECS: usize = 3;
/// Time between the setup and the first intended send, for the threads to connect.
const START_LEAD: Duration = Duration::from_millis(300);
/// Producers get this long past the end to drain their in-flight requests
/// (each of which has its own, shorter, timeout).
const PRODUCER_FINISH_GRACE: Duration = Duration::from_secs(30);

#[derive(Debug, clap::Args)]
pub struct RunArgs {
    /// The broker to start from, HOST:PORT.
    #[arg(long)]
    pub bootstrap: String,
    /// A built-in workload (throughput-1k, throughput-100b, latency) or a TOML file.
    #[arg(long)]
    pub workload: String,
    /// Measured seconds (after the warm-up).
    #[arg(long)]
    pub duration: Option<u64>,
    /// Target messages per second over all producers (open loop).
    #[arg(long)]
    pub rate: Option<u64>,
    /// Where to write the result document.
    #[arg(long)]
    pub json: PathBuf,
    /// Where to write a self-contained HTML report.
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Longest wait, after the producers stop, for consumers to see every
    /// acknowledged message.
    #[arg(long, default_value_t = 10)]
    pub drain_timeout: u64,
    /// Seconds a request may stay unanswered before the run fails.
    #[arg(long, default_value_t = 15.0)]
    pub request_timeout: f64,
    #[command(flatten)]
    pub overrides: Overrides,
}

pub fn run(args: RunArgs) -> Result<(), crate::Error> {
    let mut workload = Workload::load(&args.workload)?;
    workload.apply(&args.overrides, args.duration, args.rate)?;
    if !(args.request_timeout >= 0.1 && args.request_timeout <= 3600.0) {
        return Err("--request-timeout must be 0.1 to 3600 seconds".into());
    }
    set_request_timeout(Duration::from_secs_f64(args.request_timeout));
    let workload = Arc::new(workload);
    let machine = MachineFacts::collect(std::path::Path::new("."));

    let mut bootstrap = Connection::open(&args.bootstrap)?;
    let broker = BrokerFacts {
        bootstrap: args.bootstrap.clone(),
        version: bootstrap.versions.describe(),
        api_versions: bootstrap.versions.advertised.clone(),
    };
    let topics = workload.topic_names();
    let cluster = Arc::new(ensure_topics(&mut bootstrap, &topics, workload.partitions_per_topic)?);
    let start_offsets = Arc::new(if workload.consumers > 0 { start_offsets(&cluster)? } else { BTreeMap::new() });

    let run_id = run_id();
    let start_ns = now_ns() + START_LEAD.as_nanos() as u64;
    let warmup_end_ns = start_ns + workload.warmup_secs * 1_000_000_000;
    let end_ns = warmup_end_ns + workload.duration_secs * 1_000_000_000;
    let groups = if workload.consumers == 0 { 0 } else { workload.consumer_groups as usize };
    let stats = Arc::new(RunStats::new(run_id, start_ns, warmup_end_ns, end_ns, groups));

    eprintln!(
        "pinion-bench: {} against {} ({}): {} topic(s) x {} partitions, {} B messages, {}, acks={}, {}; {} s warm-up + {} s",
        workload.name,
        args.bootstrap,
        broker.version,
        workload.topics,
        workload.partitions_per_topic,
        workload.message_size_bytes,
        workload.compression.name(),
        acks_name(workload.acks),
        rate_name(workload.rate_msgs_per_sec),
        workload.warmup_secs,
        workload.duration_secs
    );

    let mut consumers: Vec<JoinHandle<()>> = Vec::new();
    for group in 0..groups {
        for index in 0..workload.consumers {
            let plan = ConsumerPlan {
                group,
                index,
                consumers: workload.consumers,
                cluster: cluster.clone(),
                stats: stats.clone(),
                start_offsets: start_offsets.clone(),
                consumer_backlog_bytes: workload.consumer_backlog_bytes,
            };
            consumers.push(
                std::thread::Builder::new()
                    .name(format!("consumer-{group}-{index}"))
                    .spawn(move || subscriber::run(plan))?,
            );
        }
    }
    let mut producers: Vec<JoinHandle<()>> = Vec::new();
    for index in 0..workload.producers {
        let plan = ProducerPlan { index, workload: workload.clone(), cluster: cluster.clone(), stats: stats.clone() };
        producers
            .push(std::thread::Builder::new().name(format!("producer-{index}")).spawn(move || publisher::run(plan))?);
    }

    let series = watch(&workload, &stats, &producers)?;
    drain(&stats, Duration::from_secs(args.drain_timeout));
    stats.stop_consumers.store(true, Ordering::SeqCst);
    if let Some(error) = stats.fatal() {
        return Err(error.into());
    }
    // Consumers notice the stop within one long poll.
    for consumer in consumers {
        let _ = consumer.join();
    }
    for producer in producers {
        let _ = producer.join();
    }

    let result = result_of(&workload, broker, machine, &stats, series);
    write_json(&result, &args.json)?;
    if let Some(report) = &args.report {
        crate::html::write_report(&result, report)?;
    }
    print_summary(&result);
    check_outcome(&result)
}

/// Log end offsets of every partition, asked of each partition's leader.
fn start_offsets(cluster: &ClusterView) -> Result<PartitionOffsets, crate::Error> {
    let mut offsets = BTreeMap::new();
    for (&leader, address) in &cluster.brokers {
        let partitions: Vec<(String, i32)> =
            cluster.partitions.iter().filter(|p| p.leader == leader).map(|p| (p.topic.clone(), p.partition)).collect();
        if partitions.is_empty() {
            continue;
        }
        let mut connection = Connection::open(address)?;
        match latest_offsets(&mut connection, &partitions)? {
            Some(found) => offsets.extend(found),
            None => eprintln!(
                "pinion-bench: broker {address} has no ListOffsets; consumers start at offset 0 and skip other runs' messages"
            ),
        }
    }
    Ok(offsets)
}

fn run_id() -> u64 {
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos() as u64;
    let mut rng = crate::producer::SplitMix64::new(nanos ^ (u64::from(std::process::id()) << 32));
    rng.next_u64() | 1
}

fn acks_name(acks: i16) -> String {
    if acks == -1 {
        "all".into()
    } else {
        acks.to_string()
    }
}

fn rate_name(rate: Option<u64>) -> String {
    rate.map_or_else(|| "max rate".into(), |r| format!("{r} msgs/s"))
}

/// Once per second until the producers are done: a series point, the
/// progress line, and the checks that end a failing run.
fn watch(
    workload: &Workload,
    stats: &RunStats,
    producers: &[JoinHandle<()>],
) -> Result<Vec<SeriesPoint>, crate::Error> {
    let mut series = Vec::new();
    let mut last = (0u64, 0u64, 0u64, 0u64);
    let mut rejected_seconds = 0usize;
    let mut tick_ns = stats.start_ns;
    let deadline_ns = stats.end_ns + PRODUCER_FINISH_GRACE.as_nanos() as u64;
    let mut stderr = std::io::stderr();
    // Bounded by deadline_ns.
    loop {
        if let Some(error) = stats.fatal() {
            return Err(error.into());
        }
        let done = producers.iter().all(JoinHandle::is_finished);
        let now = now_ns();
        if now >= deadline_ns {
            stats.fail(format!(
                "producers did not finish within {} s of the end of the run",
                PRODUCER_FINISH_GRACE.as_secs()
            ));
            continue;
        }
        if now < tick_ns + 1_000_000_000 && !done {
            std::thread::sleep(Duration::from_nanos(tick_ns + 1_000_000_000 - now).min(Duration::from_millis(50)));
            continue;
        }
        let elapsed_ns = now.saturating_sub(tick_ns).max(1);
        let bucket_start_ns = tick_ns;
        tick_ns = now;
        let per_sec = |delta: u64| delta as f64 * 1e9 / elapsed_ns as f64;
        let sent = RunStats::load(&stats.sent);
        let acked = RunStats::load(&stats.acked);
        let consumed: u64 = stats.consumed.iter().map(RunStats::load).sum();
        let errors = RunStats::load(&stats.produce_error_total);
        let publish = stats.publish.lock().expect("publish recorder lock").take_interval();
        let end_to_end = stats.end_to_end.lock().expect("end-to-end recorder lock").take_interval();
        let point = SeriesPoint {
            t_secs: (now.saturating_sub(stats.start_ns)) as f64 / 1e9,
            warmup: bucket_start_ns < stats.warmup_end_ns,
            sent_per_sec: per_sec(sent - last.0),
            acked_per_sec: per_sec(acked - last.1),
            consumed_per_sec: per_sec(consumed - last.2),
            publish_p99_us: quantile(&publish, 0.99),
            end_to_end_p99_us: quantile(&end_to_end, 0.99),
        };
        if errors > last.3 && acked == last.1 {
            rejected_seconds += 1;
        } else {
            rejected_seconds = 0;
        }
        // The last bucket is whatever was left when the producers finished:
        // too short to be a rate, its latencies are in the totals anyway.
        if done && elapsed_ns < 500_000_000 && !series.is_empty() {
            return Ok(series);
        }
        let errors_so_far = errors + stats.fetch_errors.lock().expect("fetch errors lock").values().sum::<u64>();
        let _ = writeln!(
            stderr,
            "[{:6.1}s] sent {:>9.0}/s  acked {:>9.0}/s  consumed {:>9.0}/s  publish p99 {:>9}  e2e p99 {:>9}  acked {:>10}  errors {}{}",
            point.t_secs,
            point.sent_per_sec,
            point.acked_per_sec,
            point.consumed_per_sec,
            format_us(point.publish_p99_us),
            if workload.consumers == 0 { "-".into() } else { format_us(point.end_to_end_p99_us) },
            acked,
            errors_so_far,
            if point.warmup { "  (warm-up)" } else { "" }
        );
        series.push(point);
        last = (sent, acked, consumed, errors);
        if rejected_seconds >= REJECTION_WINDOW_SECS {
            let errors = stats.produce_errors.lock().expect("produce errors lock").clone();
            let listed: Vec<String> = errors.iter().map(|(name, n)| format!("{name} x{n}")).collect();
            stats.fail(format!(
                "the broker rejected every produce request for {REJECTION_WINDOW_SECS} s: {}",
                listed.join(", ")
            ));
            continue;
        }
        if done {
            return Ok(series);
        }
    }
}

fn quantile(histogram: &Histogram<u64>, q: f64) -> u64 {
    if histogram.is_empty() {
        0
    } else {
        histogram.value_at_quantile(q)
    }
}

fn format_us(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.0} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} ms", us as f64 / 1000.0)
    }
}

/// Waits until every consumer group has seen every acknowledged message,
/// or the timeout passes.
fn drain(stats: &RunStats, timeout: Duration) {
    if stats.consumed.is_empty() || stats.fatal().is_some() {
        return;
    }
    let deadline = now_ns() + timeout.as_nanos() as u64;
    // Bounded by `deadline`.
    while now_ns() < deadline && stats.fatal().is_none() {
        let acked = RunStats::load(&stats.acked);
        if stats.consumed.iter().all(|c| RunStats::load(c) >= acked) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn result_of(
    workload: &Workload,
    broker: BrokerFacts,
    machine: MachineFacts,
    stats: &RunStats,
    series: Vec<SeriesPoint>,
) -> RunResult {
    let measured_secs = (stats.end_ns - stats.warmup_end_ns) as f64 / 1e9;
    let publish = stats.publish.lock().expect("publish recorder lock").measured.clone();
    let end_to_end = stats.end_to_end.lock().expect("end-to-end recorder lock").measured.clone();
    let has_consumers = !stats.consumed.is_empty();
    let consumed: u64 = stats.consumed.iter().map(RunStats::load).sum();
    RunResult {
        kind: RUN_KIND.into(),
        schema_version: SCHEMA_VERSION,
        tool_version: env!("CARGO_PKG_VERSION").into(),
        workload: workload.echo(),
        broker,
        machine,
        measured_secs,
        warmup_secs: workload.warmup_secs as f64,
        throughput: ThroughputSummary {
            messages_per_sec: RunStats::load(&stats.measured_acked) as f64 / measured_secs,
            bytes_per_sec: RunStats::load(&stats.measured_acked_bytes) as f64 / measured_secs,
            consumed_messages_per_sec: RunStats::load(&stats.measured_consumed) as f64 / measured_secs,
            sent_messages: RunStats::load(&stats.sent),
            acked_messages: RunStats::load(&stats.acked),
            consumed_messages: consumed,
            backlog_messages: RunStats::load(&stats.backlog),
            consumer_backlog: consumer_backlog(workload, stats),
        },
        publish_latency_us: LatencySummary::of(&publish),
        end_to_end_latency_us: has_consumers.then(|| LatencySummary::of(&end_to_end)),
        histograms: Histograms {
            publish_latency_us: histogram_codec::encode(&publish),
            end_to_end_latency_us: has_consumers.then(|| histogram_codec::encode(&end_to_end)),
        },
        series,
        errors: ErrorCounts {
            produce: stats.produce_errors.lock().expect("produce errors lock").clone(),
            fetch: stats.fetch_errors.lock().expect("fetch errors lock").clone(),
            connection: RunStats::load(&stats.connection_errors),
        },
    }
}

/// The catch-up of a run with a consumer backlog.
fn consumer_backlog(workload: &Workload, stats: &RunStats) -> Option<ConsumerBacklog> {
    if workload.consumer_backlog_bytes == 0 {
        return None;
    }
    let release = stats.consumer_release.get()?;
    let catch_up_secs =
        stats.caught_up_ns.get().map(|&caught_up| caught_up.saturating_sub(release.at_ns).max(1) as f64 / 1e9);
    Some(ConsumerBacklog {
        messages: release.acked_messages,
        bytes: release.acked_bytes,
        started_after_secs: release.at_ns.saturating_sub(stats.start_ns) as f64 / 1e9,
        catch_up_secs,
        catch_up_messages_per_sec: catch_up_secs.map(|secs| release.acked_messages as f64 / secs),
        catch_up_bytes_per_sec: catch_up_secs.map(|secs| release.acked_bytes as f64 / secs),
    })
}

fn write_json(result: &RunResult, path: &std::path::Path) -> Result<(), crate::Error> {
    let text = serde_json::to_string_pretty(result)?;
    std::fs::write(path, text + "\n").map_err(|e| format!("cannot write {}: {e}", path.display()).into())
}

fn print_summary(result: &RunResult) {
    let w = &result.workload;
    let t = &result.throughput;
    let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
    let row = |name: &str, s: &LatencySummary| {
        format!(
            "{name:<12} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
            ms(s.p50),
            ms(s.p90),
            ms(s.p99),
            ms(s.p999),
            ms(s.p9999),
            ms(s.max),
            s.count
        )
    };
    println!();
    println!(
        "workload     {}: {} topic(s) x {} partitions, {} B {}, {}, acks={}, {}, {} producer(s), {} consumer(s) x {} group(s)",
        w.name,
        w.topics,
        w.partitions_per_topic,
        w.message_size_bytes,
        w.payload,
        w.compression,
        acks_name(w.acks),
        rate_name(w.rate_msgs_per_sec),
        w.producers,
        w.consumers,
        w.consumer_groups
    );
    println!("broker       {} ({})", result.broker.bootstrap, result.broker.version);
    println!("measured     {:.1} s after {:.0} s warm-up", result.measured_secs, result.warmup_secs);
    println!(
        "throughput   {:.0} msgs/s acked, {:.1} MiB/s, {:.0} msgs/s consumed",
        t.messages_per_sec,
        t.bytes_per_sec / (1 << 20) as f64,
        t.consumed_messages_per_sec
    );
    println!(
        "messages     sent {}, acked {}, consumed {}, backlog {}",
        t.sent_messages, t.acked_messages, t.consumed_messages, t.backlog_messages
    );
    if let Some(b) = &t.consumer_backlog {
        let caught_up = match (b.catch_up_secs, b.catch_up_bytes_per_sec, b.catch_up_messages_per_sec) {
            (Some(secs), Some(bytes), Some(messages)) => format!(
                "read back in {secs:.2} s: {:.1} MiB/s, {messages:.0} msgs/s per group",
                bytes / (1 << 20) as f64
            ),
            _ => "not read back by the end of the run".to_string(),
        };
        println!(
            "backlog      {:.1} MiB ({} messages) acknowledged when the consumers started, {:.1} s in; {caught_up}",
            b.bytes as f64 / (1 << 20) as f64,
            b.messages,
            b.started_after_secs
        );
    }
    println!(
        "latency (ms) {:>10} {:>10} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "p50", "p90", "p99", "p99.9", "p99.99", "max", "samples"
    );
    println!("{}", row("publish", &result.publish_latency_us));
    if let Some(e2e) = &result.end_to_end_latency_us {
        println!("{}", row("end-to-end", e2e));
    }
    let errors = &result.errors;
    if errors.produce.is_empty() && errors.fetch.is_empty() && errors.connection == 0 {
        println!("errors       none");
    } else {
        println!(
            "errors       produce {:?}, fetch {:?}, connection {}",
            errors.produce, errors.fetch, errors.connection
        );
    }
}

/// A run that completed but lost or failed messages still fails.
fn check_outcome(result: &RunResult) -> Result<(), crate::Error> {
    let t = &result.throughput;
    let produce_errors: u64 = result.errors.produce.values().sum();
    let fetch_errors: u64 = result.errors.fetch.values().sum();
    if produce_errors + fetch_errors > 0 {
        return Err(format!("the run saw {produce_errors} produce and {fetch_errors} fetch errors").into());
    }
    if t.acked_messages == 0 {
        return Err("no message was acknowledged".into());
    }
    let groups = u64::from(result.workload.consumer_groups);
    if result.workload.consumers > 0 && t.consumed_messages < t.acked_messages * groups {
        return Err(format!(
            "consumers saw {} of {} acknowledged messages ({} group(s)) before the drain timeout",
            t.consumed_messages,
            t.acked_messages * groups,
            groups
        )
        .into());
    }
    Ok(())
}
