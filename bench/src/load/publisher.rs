//! One producer: an OS thread that creates messages on an open-loop
//! schedule, batches them per partition, and sends produce requests to each
//! partition's leader with up to [`IN_FLIGHT_MAX`] requests in flight per
//! connection; a reader thread per connection matches the answers to the
//! requests (in order, by correlation id) and records publish latency.
//!
//! Schedule: at a target rate, message `i` of this producer is intended
//! for `start + i / rate`, whether or not the producer managed to send it
//! then; its publish latency is ack time minus that intended time, so a
//! stalled broker (or a stalled producer) shows in the percentiles instead
//! of silently slowing the load (coordinated omission). In max-rate mode
//! the intended time is when the message was put in its batch.
//!
//! Batching follows the Java client: a batch is sent when it is full
//! (`batch_size_bytes` of records) or when its first message has waited
//! `linger_ms`; without keys one partition is filled at a time (sticky
//! partitioning), with keys the key picks the partition.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ProduceResponse};
use kafka_protocol::protocol::Decodable;

use crate::client::cluster::ClusterView;
use crate::client::connection::{error_is_retriable, error_name, Connection, FrameReader, FrameWriter};
use crate::client::produce_frame::{ProduceFrame, TopicBatches};
use crate::client::record_batch::BatchBuilder;
use crate::load::payload::{self, KeyGenerator, PayloadPool};
use crate::load::stats::{now_ns, RunStats};
use crate::workload::Workload;

/// Produce requests in flight per connection.
pub const IN_FLIGHT_MAX: usize = 16;
/// Messages created per scheduling round, so a producer that fell behind
/// still sends (and checks for the end) regularly while catching up.
const MESSAGES_PER_ROUND_MAX: u64 = 20_000;
/// Batches of one request stop at about this size; the rest go in the next.
const REQUEST_BYTES_MAX: usize = 8 << 20;
/// Longest sleep between rounds, so a stop is noticed quickly.
const SLEEP_MAX: Duration = Duration::from_millis(5);
/// Bytes reserved up front per partition batch (larger batches grow).
const BUILDER_CAPACITY_MAX: usize = 64 << 10;
/// Broker-side produce timeout sent with each request.
const PRODUCE_TIMEOUT_MS: i32 = 10_000;

/// Everything one producer thread needs.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    pub index: u32,
    pub workload: Arc<Workload>,
    pub cluster: Arc<ClusterView>,
    pub stats: Arc<RunStats>,
}

/// A batch in a request, remembered until its answer arrives.
#[derive(Debug)]
struct SentBatch {
    /// Index into `ClusterView::partitions`.
    partition: usize,
    intended_ns: Vec<u64>,
    /// Uncompressed key + value bytes.
    message_bytes: u64,
}

#[derive(Debug)]
struct InFlight {
    correlation_id: i32,
    version: i16,
    batches: Vec<SentBatch>,
}

/// One connection to one leader.
struct Lane {
    writer: FrameWriter,
    version: i16,
    in_flight: Option<SyncSender<InFlight>>,
    reader: Option<JoinHandle<()>>,
    frame: ProduceFrame,
    /// Finished batches waiting to be sent on this lane.
    ready: Vec<(SentBatch, Bytes)>,
}

struct PartitionQueue {
    builder: BatchBuilder,
    intended_ns: Vec<u64>,
    message_bytes: u64,
    lane: usize,
}

/// Runs one producer to the end of the run; a failure stops the whole run.
pub fn run(plan: ProducerPlan) {
    let stats = plan.stats.clone();
    if let Err(e) = produce(&plan) {
        stats.fail(format!("producer {}: {e}", plan.index));
    }
}

fn produce(plan: &ProducerPlan) -> Result<(), crate::Error> {
    let workload = &plan.workload;
    let stats = &plan.stats;
    let cluster = &plan.cluster;
    let acks_none = workload.acks == 0;

    // One lane per leader broker.
    let mut leaders: Vec<i32> = cluster.partitions.iter().map(|p| p.leader).collect();
    leaders.sort_unstable();
    leaders.dedup();
    let mut lanes = Vec::with_capacity(leaders.len());
    for &leader in &leaders {
        let connection = Connection::open(cluster.address_of(leader)?)?;
        let version = connection.versions.require(ApiKey::Produce)?;
        let (writer, reader, _) = connection.split();
        let (sender, receiver) = sync_channel::<InFlight>(IN_FLIGHT_MAX);
        let reader = if acks_none {
            None
        } else {
            let (cluster, stats) = (cluster.clone(), stats.clone());
            Some(
                std::thread::Builder::new()
                    .name(format!("acks-{}-{leader}", plan.index))
                    .spawn(move || read_acks(reader, receiver, &cluster, &stats))?,
            )
        };
        lanes.push(Lane {
            writer,
            version,
            in_flight: Some(sender),
            reader,
            frame: ProduceFrame::default(),
            ready: Vec::new(),
        });
    }
    let partitions = cluster.partitions.len();
    let batch_capacity = workload.batch_size_bytes as usize + 64;
    let mut queues: Vec<PartitionQueue> = cluster
        .partitions
        .iter()
        .map(|p| PartitionQueue {
            builder: BatchBuilder::new(batch_capacity.min(BUILDER_CAPACITY_MAX)),
            intended_ns: Vec::new(),
            message_bytes: 0,
            lane: leaders.binary_search(&p.leader).expect("leader has a lane"),
        })
        .collect();

    let pool = PayloadPool::new(workload, plan.index);
    let mut keys = KeyGenerator::new(workload.keys, workload.payload_seed.wrapping_add(u64::from(plan.index)));
    let producers = u64::from(workload.producers);
    // This producer's share of the target rate, messages per second.
    let rate = workload.rate_msgs_per_sec.map(|r| r as f64 / producers as f64);
    let linger_ns = workload.linger_ms * 1_000_000;
    let batch_bytes = workload.batch_size_bytes as usize;
    let record_bytes_estimate = workload.message_size_bytes as usize + 40;
    let mut sticky = (plan.index as usize * 7) % partitions;
    let mut sequence: u64 = 0;

    // Message `sequence`'s intended send time (at a target rate only).
    let intended_of = |sequence: u64| -> u64 {
        match rate {
            Some(rate) => stats.start_ns + (sequence as f64 * 1e9 / rate) as u64,
            None => 0,
        }
    };

    let lead = stats.start_ns.saturating_sub(now_ns());
    std::thread::sleep(Duration::from_nanos(lead));
    // Bounded by end_ns: every round either sleeps toward the next due
    // message or creates at least one message, and stops at the end.
    loop {
        let now = now_ns();
        if now >= stats.end_ns || stats.stop_producers.load(Ordering::Relaxed) {
            break;
        }
        let timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
        let mut created = 0u64;
        while created < MESSAGES_PER_ROUND_MAX {
            let intended = match rate {
                Some(_) => {
                    let intended = intended_of(sequence);
                    if intended > now || intended >= stats.end_ns {
                        break;
                    }
                    intended
                }
                None => now,
            };
            let (key, mut partition) = match keys.next(sequence, partitions) {
                Some((key, partition)) => (Some(key), partition),
                None => (None, sticky),
            };
            let key_len = key.map_or(0, <[u8]>::len);
            let mut queue = &mut queues[partition];
            if !queue.builder.is_empty()
                && queue.builder.records_bytes() + record_bytes_estimate + key_len > batch_bytes
            {
                let full = partition;
                close_batch(&mut queues, &mut lanes, full, workload, timestamp_ms)?;
                if workload.keys == crate::workload::Keys::None {
                    sticky = (sticky + 1) % partitions;
                    partition = sticky;
                }
                queue = &mut queues[partition];
            }
            let header = payload::header(stats.run_id, intended);
            queue.builder.push(timestamp_ms, key, &header, pool.body(sequence));
            queue.intended_ns.push(intended);
            queue.message_bytes += (key_len + workload.message_size_bytes as usize) as u64;
            sequence += 1;
            created += 1;
            // At max rate a round ends with the first full batch.
            if rate.is_none() && lanes.iter().any(|l| !l.ready.is_empty()) {
                break;
            }
        }
        // Batches whose first message has waited out the linger.
        let now = now_ns();
        let mut next_linger_end = u64::MAX;
        for partition in 0..partitions {
            let Some(&first) = queues[partition].intended_ns.first() else { continue };
            let linger_end = first.saturating_add(linger_ns);
            if linger_end <= now || (rate.is_none() && linger_ns == 0) {
                close_batch(&mut queues, &mut lanes, partition, workload, timestamp_ms)?;
                if workload.keys == crate::workload::Keys::None && partition == sticky {
                    sticky = (sticky + 1) % partitions;
                }
            } else {
                next_linger_end = next_linger_end.min(linger_end);
            }
        }
        for lane in &mut lanes {
            send_ready(lane, workload, cluster, stats)?;
        }
        if rate.is_some() {
            let wake = intended_of(sequence).min(next_linger_end).min(stats.end_ns);
            let now = now_ns();
            if wake > now {
                std::thread::sleep(Duration::from_nanos(wake - now).min(SLEEP_MAX));
            }
        }
    }
    if stats.stop_producers.load(Ordering::Relaxed) {
        return Ok(());
    }
    // What was created is sent; then the readers drain the answers.
    let timestamp_ms = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64;
    for partition in 0..partitions {
        if !queues[partition].builder.is_empty() {
            close_batch(&mut queues, &mut lanes, partition, workload, timestamp_ms)?;
        }
    }
    for lane in &mut lanes {
        send_ready(lane, workload, cluster, stats)?;
    }
    if let Some(rate) = rate {
        let intended_total = ((stats.end_ns - stats.start_ns) as f64 * rate / 1e9) as u64;
        stats.backlog.fetch_add(intended_total.saturating_sub(sequence), Ordering::Relaxed);
    }
    for lane in &mut lanes {
        lane.in_flight = None;
        if let Some(reader) = lane.reader.take() {
            let _ = reader.join();
        }
    }
    Ok(())
}

/// Finishes the batch of `partition` and queues it on its lane.
fn close_batch(
    queues: &mut [PartitionQueue],
    lanes: &mut [Lane],
    partition: usize,
    workload: &Workload,
    timestamp_ms: i64,
) -> Result<(), crate::Error> {
    let queue = &mut queues[partition];
    let bytes = queue.builder.finish(workload.compression, timestamp_ms)?;
    let sent = SentBatch {
        partition,
        intended_ns: std::mem::take(&mut queue.intended_ns),
        message_bytes: std::mem::take(&mut queue.message_bytes),
    };
    lanes[queue.lane].ready.push((sent, bytes));
    Ok(())
}

/// Sends the lane's ready batches, at most [`REQUEST_BYTES_MAX`] per request.
fn send_ready(
    lane: &mut Lane,
    workload: &Workload,
    cluster: &ClusterView,
    stats: &RunStats,
) -> Result<(), crate::Error> {
    // Bounded: every iteration takes at least one batch off `ready`.
    while !lane.ready.is_empty() {
        // A request carries one batch per partition (Kafka refuses more);
        // a second batch of the same partition waits for the next request.
        let mut taken = 0;
        let mut bytes = 0;
        for (i, (sent, batch)) in lane.ready.iter().enumerate() {
            let repeated = lane.ready[..i].iter().any(|(earlier, _)| earlier.partition == sent.partition);
            if taken > 0 && (bytes + batch.len() > REQUEST_BYTES_MAX || repeated) {
                break;
            }
            bytes += batch.len();
            taken += 1;
        }
        let request_batches: Vec<(SentBatch, Bytes)> = lane.ready.drain(..taken).collect();
        let mut topics: Vec<TopicBatches<'_>> = Vec::new();
        for (sent, batch) in &request_batches {
            let leader = &cluster.partitions[sent.partition];
            let data = (leader.partition, batch.clone());
            match topics.iter_mut().find(|t| t.name == leader.topic) {
                Some(topic) => topic.partitions.push(data),
                None => topics.push(TopicBatches { name: &leader.topic, partitions: vec![data] }),
            }
        }
        let correlation_id = lane.writer.next_correlation_id();
        lane.frame.encode(lane.version, correlation_id, workload.acks, PRODUCE_TIMEOUT_MS, &topics)?;
        drop(topics);
        let batches: Vec<SentBatch> = request_batches.into_iter().map(|(sent, _)| sent).collect();
        let count: u64 = batches.iter().map(|b| b.intended_ns.len() as u64).sum();
        match &lane.in_flight {
            Some(in_flight) if workload.acks != 0 => {
                // Blocks while IN_FLIGHT_MAX requests await answers: the
                // back-pressure that open-loop latency then accounts for.
                in_flight
                    .send(InFlight { correlation_id, version: lane.version, batches })
                    .map_err(|_| "the connection's reader stopped")?;
                lane.writer.write_produce(&lane.frame)?;
                stats.sent.fetch_add(count, Ordering::Relaxed);
            }
            _ => {
                // acks=0: the broker never answers; "acknowledged" = written.
                lane.writer.write_produce(&lane.frame)?;
                stats.sent.fetch_add(count, Ordering::Relaxed);
                acknowledge(&batches, now_ns(), stats);
            }
        }
    }
    Ok(())
}

fn acknowledge(batches: &[SentBatch], now: u64, stats: &RunStats) {
    let mut recorder = stats.publish.lock().expect("publish recorder lock");
    for batch in batches {
        acknowledge_batch(batch, now, stats, &mut recorder);
    }
}

fn acknowledge_batch(
    batch: &SentBatch,
    now: u64,
    stats: &RunStats,
    recorder: &mut crate::load::stats::LatencyRecorder,
) {
    let count = batch.intended_ns.len() as u64;
    stats.acked_bytes.fetch_add(batch.message_bytes, Ordering::Relaxed);
    stats.acked.fetch_add(count, Ordering::Relaxed);
    let measured = batch.intended_ns.iter().filter(|&&t| t >= stats.warmup_end_ns).count() as u64;
    if measured > 0 {
        stats.measured_acked.fetch_add(measured, Ordering::Relaxed);
        stats.measured_acked_bytes.fetch_add(batch.message_bytes * measured / count, Ordering::Relaxed);
    }
    recorder.record_all(&batch.intended_ns, now, stats.warmup_end_ns);
}

/// The reader side of one lane: answers in request order.
fn read_acks(mut reader: FrameReader, in_flight: Receiver<InFlight>, cluster: &ClusterView, stats: &RunStats) {
    // Bounded: ends when the producer drops its sender, or at the first
    // error (every read has a timeout).
    while let Ok(request) = in_flight.recv() {
        if let Err(e) = read_one(&mut reader, request, cluster, stats) {
            stats.connection_errors.fetch_add(1, Ordering::Relaxed);
            stats.fail(e);
            return;
        }
    }
}

fn read_one(
    reader: &mut FrameReader,
    request: InFlight,
    cluster: &ClusterView,
    stats: &RunStats,
) -> Result<(), crate::Error> {
    let mut body = reader.read_response(ApiKey::Produce, request.version, request.correlation_id)?;
    let response = ProduceResponse::decode(&mut body, request.version)
        .map_err(|e| format!("undecodable Produce v{} response: {e}", request.version))?;
    let now = now_ns();
    let mut answered = vec![false; request.batches.len()];
    let mut recorder = stats.publish.lock().expect("publish recorder lock");
    for topic in &response.responses {
        for partition in &topic.partition_responses {
            let found = request.batches.iter().position(|b| {
                let leader = &cluster.partitions[b.partition];
                leader.partition == partition.index && leader.topic == topic.name.0.as_str()
            });
            let Some(index) = found else {
                return Err(format!(
                    "the broker answered for {} partition {}, which the request did not carry",
                    topic.name.0.as_str(),
                    partition.index
                )
                .into());
            };
            answered[index] = true;
            let batch = &request.batches[index];
            if partition.error_code == 0 {
                acknowledge_batch(batch, now, stats, &mut recorder);
                continue;
            }
            let name = error_name(partition.error_code);
            RunStats::count_error(&stats.produce_errors, name.clone());
            stats.produce_error_total.fetch_add(1, Ordering::Relaxed);
            if !error_is_retriable(partition.error_code) {
                let message = partition.error_message.as_ref().map(|m| format!(": {}", m.as_str())).unwrap_or_default();
                return Err(format!(
                    "the broker rejected a produce to {} partition {}: {name}{message}",
                    topic.name.0.as_str(),
                    partition.index
                )
                .into());
            }
        }
    }
    if let Some(missing) = answered.iter().position(|a| !a) {
        let leader = &cluster.partitions[request.batches[missing].partition];
        return Err(
            format!("the broker's produce answer left out {} partition {}", leader.topic, leader.partition).into()
        );
    }
    Ok(())
}
