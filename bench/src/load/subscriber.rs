//! One consumer: an OS thread that fetches its share of the partitions
//! from their leaders (long poll), walks the batches, and records
//! end-to-end latency = time seen minus the intended send time carried in
//! each message (same process, same clock).
//!
//! Partitions are assigned statically (partition i goes to consumer
//! i mod consumers of each group), which is what a group coordinator would
//! settle on; no group protocol runs, so the figure is the broker's fetch
//! path, not a rebalance. Consumers start at the log end offsets read
//! before the producers start; with a consumer backlog they first wait
//! until that many bytes are acknowledged, so the broker serves them from
//! far behind the tail.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use crate::client::cluster::{ClusterView, PartitionOffsets};
use crate::client::connection::{error_is_retriable, error_name, Connection};
use crate::client::record_batch::for_each_value;
use crate::load::payload::intended_ns_of;
use crate::load::stats::{now_ns, RunStats};

/// Long-poll wait: bounds how late a stop is noticed.
const FETCH_MAX_WAIT_MS: i32 = 100;
const FETCH_MAX_BYTES: i32 = 32 << 20;
const PARTITION_MAX_BYTES: i32 = 4 << 20;
/// Pause after a fetch answered only with retriable errors.
const ERROR_BACKOFF: Duration = Duration::from_millis(50);
/// How often consumers held back for a backlog look at the acknowledged bytes.
const BACKLOG_POLL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    pub group: usize,
    pub index: u32,
    pub consumers: u32,
    pub cluster: Arc<ClusterView>,
    pub stats: Arc<RunStats>,
    /// Where each partition starts: its log end before the run (or 0 when
    /// the broker has no ListOffsets; other runs' messages are skipped).
    pub start_offsets: Arc<PartitionOffsets>,
    /// Wait until this many message bytes are acknowledged (0 = start at once).
    pub consumer_backlog_bytes: u64,
}

pub fn run(plan: ConsumerPlan) {
    let stats = plan.stats.clone();
    if let Err(e) = consume(&plan) {
        stats.fail(format!("consumer {} of group {}: {e}", plan.index, plan.group));
    }
}

struct Assigned {
    topic: String,
    partition: i32,
    offset: i64,
}

fn consume(plan: &ConsumerPlan) -> Result<(), crate::Error> {
    let stats = &plan.stats;
    let mut by_leader: BTreeMap<i32, Vec<Assigned>> = BTreeMap::new();
    for (i, p) in plan.cluster.partitions.iter().enumerate() {
        if i as u32 % plan.consumers != plan.index {
            continue;
        }
        let offset = plan.start_offsets.get(&(p.topic.clone(), p.partition)).copied().unwrap_or(0);
        by_leader.entry(p.leader).or_default().push(Assigned {
            topic: p.topic.clone(),
            partition: p.partition,
            offset,
        });
    }
    let mut connections = Vec::new();
    for (&leader, assigned) in by_leader.iter_mut() {
        let connection = Connection::open(plan.cluster.address_of(leader)?)?;
        let version = connection.versions.require(ApiKey::Fetch)?;
        connections.push((connection, version, std::mem::take(assigned)));
    }
    // With a consumer backlog, wait for it (connections already open).
    // Bounded: released at the latest when the producers' time is over.
    let backlog_bytes = plan.consumer_backlog_bytes;
    while backlog_bytes > 0 && !stats.consumers_released(backlog_bytes) {
        if stats.stop_consumers.load(Ordering::Relaxed) {
            return Ok(());
        }
        std::thread::sleep(BACKLOG_POLL);
    }
    // Bounded: each fetch waits at most FETCH_MAX_WAIT_MS (plus the
    // request timeout), and the run sets stop_consumers at its end.
    while !stats.stop_consumers.load(Ordering::Relaxed) {
        if connections.is_empty() {
            std::thread::sleep(Duration::from_millis(FETCH_MAX_WAIT_MS as u64));
            continue;
        }
        let mut only_errors = true;
        for (connection, version, assigned) in &mut connections {
            only_errors &= fetch_once(connection, *version, assigned, plan)?;
        }
        if only_errors {
            std::thread::sleep(ERROR_BACKOFF);
        }
    }
    Ok(())
}

/// One fetch; returns whether every partition answered with an error.
fn fetch_once(
    connection: &mut Connection,
    version: i16,
    assigned: &mut [Assigned],
    plan: &ConsumerPlan,
) -> Result<bool, crate::Error> {
    let stats = &plan.stats;
    let mut topics: Vec<FetchTopic> = Vec::new();
    for a in assigned.iter() {
        let partition = FetchPartition::default()
            .with_partition(a.partition)
            .with_fetch_offset(a.offset)
            .with_partition_max_bytes(PARTITION_MAX_BYTES);
        match topics.iter_mut().find(|t| t.topic.0.as_str() == a.topic) {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(a.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let request = FetchRequest::default()
        .with_max_wait_ms(FETCH_MAX_WAIT_MS)
        .with_min_bytes(1)
        .with_max_bytes(FETCH_MAX_BYTES)
        .with_topics(topics);
    let response: FetchResponse = connection.call(ApiKey::Fetch, version, &request)?;
    if response.error_code != 0 {
        return Err(format!("fetch refused: {}", error_name(response.error_code)).into());
    }
    let now = now_ns();
    let mut only_errors = true;
    let mut seen = 0u64;
    let mut measured = 0u64;
    let mut recorder = stats.end_to_end.lock().expect("end-to-end recorder lock");
    for topic in &response.responses {
        for data in &topic.partitions {
            let Some(a) =
                assigned.iter_mut().find(|a| a.partition == data.partition_index && a.topic == topic.topic.0.as_str())
            else {
                continue;
            };
            if data.error_code != 0 {
                let name = error_name(data.error_code);
                RunStats::count_error(&stats.fetch_errors, name.clone());
                if !error_is_retriable(data.error_code) {
                    return Err(format!("fetch from {} partition {}: {name}", a.topic, a.partition).into());
                }
                continue;
            }
            only_errors = false;
            let Some(records) = &data.records else { continue };
            let from = a.offset;
            let next = for_each_value(records, |offset, value| {
                if offset < from {
                    return; // a stored batch can begin before the fetch offset
                }
                if let Some(intended) = intended_ns_of(value, stats) {
                    seen += 1;
                    if intended >= stats.warmup_end_ns {
                        measured += 1;
                    }
                    recorder.record(intended, now, stats.warmup_end_ns);
                }
            })?;
            if let Some(next) = next {
                a.offset = a.offset.max(next);
            }
        }
    }
    drop(recorder);
    stats.consumed[plan.group].fetch_add(seen, Ordering::Relaxed);
    stats.measured_consumed.fetch_add(measured, Ordering::Relaxed);
    stats.note_consumed();
    Ok(only_errors)
}
