//! Consumer groups on the broker: which shard coordinates a group, the
//! `__consumer_offsets` log that persists them, and the glue between the
//! pure [`crate::group::GroupCoordinator`] and the Kafka API handlers.
//!
//! A group lives on the shard that owns its `__consumer_offsets` partition
//! (partition = Kafka's hash of the group id mod the partition count;
//! owner = `placement::shard_for`). Each shard keeps one coordinator for all
//! the groups of the partitions it owns. Handlers on any shard call
//! [`ShardContext::group_call`], which runs the call there or sends it over
//! the mesh. On the owner:
//! - JoinGroup and SyncGroup may park; their answer arrives as a
//!   completion from a later call or timer tick, and is handed to the
//!   waiting request through a slot keyed by the coordinator's ticket.
//! - Group metadata and offset commits are appended to the group's
//!   partition and made durable (fdatasync) before the member is answered.
//! - When a shard opens a `__consumer_offsets` partition (at start, or when
//!   the topic is created), it replays every record into its coordinator.
//! - A timer task ticks the coordinator (session and rebalance timeouts)
//!   and expires the offsets of long-empty groups.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, HashMap};
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;

use pinion_engine::batch::{self, put_varint, BatchHeader, Compression, HEADER_BYTES};
use pinion_engine::Durability;

use crate::errors::{self, ErrorCode};
use crate::group::{
    error_code, offsets_partition_for, record, Answer, Completion, GroupConfig, GroupCoordinator, GroupDescription,
    GroupListing, Handled, JoinRequest, JoinResponse, LeaveMember, LeaveResponse, OffsetCommitRequest,
    OffsetFetchPartition, PartitionResult, Record, SyncRequest, SyncResponse, Ticket, TopicPartition,
    GROUP_METADATA_TOPIC_NAME,
};
use crate::mesh::{AnswerSlot, CoreRequest, CoreResponse};
use crate::shard::ShardContext;

/// Kafka error codes the glue answers with itself.
const COORDINATOR_LOAD_IN_PROGRESS: i16 = 14;
const COORDINATOR_NOT_AVAILABLE: i16 = 15;
const NOT_COORDINATOR: i16 = 16;

/// A group API call, as it travels to the coordinating shard.
#[derive(Debug)]
pub enum GroupCall {
    Join(JoinRequest),
    Sync(SyncRequest),
    Heartbeat {
        group_id: String,
        generation_id: i32,
        member_id: String,
        group_instance_id: Option<String>,
    },
    Leave {
        group_id: String,
        members: Vec<LeaveMember>,
    },
    Commit(OffsetCommitRequest),
    FetchOffsets {
        group_id: String,
        partitions: Option<Vec<TopicPartition>>,
    },
    DeleteOffsets {
        group_id: String,
        partitions: Vec<TopicPartition>,
    },
    Describe {
        group_ids: Vec<String>,
    },
    /// This shard's groups only (ListGroups asks every shard).
    List,
    Delete {
        group_ids: Vec<String>,
    },
}

/// The answer to a [`GroupCall`].
#[derive(Debug)]
pub enum GroupAnswer {
    Join(JoinResponse),
    Sync(SyncResponse),
    Heartbeat(i16),
    Leave(LeaveResponse),
    Commit(Vec<PartitionResult>),
    FetchOffsets {
        error_code: i16,
        partitions: Vec<OffsetFetchPartition>,
    },
    DeleteOffsets {
        error_code: i16,
        partitions: Vec<PartitionResult>,
    },
    Describe(Vec<GroupDescription>),
    List(Vec<GroupListing>),
    Delete(Vec<(String, i16)>),
    /// The coordinator cannot answer (not loaded, not owned, shutting down).
    Unavailable(i16),
}

#[derive(Debug)]
enum Parked {
    Join(JoinResponse),
    Sync(SyncResponse),
}

/// The groups of one shard.
pub struct GroupService {
    coordinator: RefCell<GroupCoordinator>,
    parked: RefCell<HashMap<u64, AnswerSlot<Parked>>>,
    /// `__consumer_offsets` partitions of this shard whose records are replayed.
    loaded: RefCell<BTreeSet<i32>>,
    last_offsets_expiry_ms: Cell<i64>,
}

impl std::fmt::Debug for GroupService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupService").field("loaded", &self.loaded.borrow()).finish()
    }
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl GroupService {
    pub fn new(config: GroupConfig, seed: u64) -> Self {
        Self {
            coordinator: RefCell::new(GroupCoordinator::new(config, seed)),
            parked: RefCell::new(HashMap::new()),
            loaded: RefCell::new(BTreeSet::new()),
            last_offsets_expiry_ms: Cell::new(now_ms()),
        }
    }

    fn park(&self, ticket: Ticket) -> AnswerSlot<Parked> {
        let slot = AnswerSlot::default();
        self.parked.borrow_mut().insert(ticket.0, slot.clone());
        slot
    }

    fn deliver(&self, ticket: Ticket, value: Parked) {
        // No slot: the request that parked is gone (its connection closed).
        match self.parked.borrow_mut().remove(&ticket.0) {
            Some(slot) => slot.fill(value),
            None => tracing::debug!(ticket = ticket.0, "group answer for a request no longer waiting"),
        }
    }
}

/// Number of `__consumer_offsets` partitions, if the topic exists.
pub fn offsets_partition_count(ctx: &ShardContext) -> Option<i32> {
    ctx.topics.borrow().get(GROUP_METADATA_TOPIC_NAME).map(|t| t.partitions)
}

/// The shard coordinating `group_id`, and its offsets partition.
pub fn coordinator_of(ctx: &ShardContext, group_id: &str) -> Option<(usize, i32)> {
    let count = offsets_partition_count(ctx)?;
    let partition = offsets_partition_for(group_id, count);
    Some((ctx.owner_of(GROUP_METADATA_TOPIC_NAME, partition), partition))
}

impl ShardContext {
    /// Runs a group call on the shard that coordinates `group_id`.
    pub async fn group_call(self: &Rc<Self>, group_id: &str, call: GroupCall) -> GroupAnswer {
        let Some((owner, _)) = coordinator_of(self, group_id) else {
            return GroupAnswer::Unavailable(COORDINATOR_NOT_AVAILABLE);
        };
        match self.call(owner, CoreRequest::Group(call)).await {
            CoreResponse::Group(answer) => answer,
            _ => GroupAnswer::Unavailable(COORDINATOR_NOT_AVAILABLE),
        }
    }

    /// ListGroups: every shard's groups.
    pub async fn list_all_groups(self: &Rc<Self>) -> Vec<GroupListing> {
        let mut all = Vec::new();
        for shard in 0..self.shard_count() {
            if let CoreResponse::Group(GroupAnswer::List(groups)) =
                self.call(shard, CoreRequest::Group(GroupCall::List)).await
            {
                all.extend(groups);
            }
        }
        all
    }
}

/// Whether this shard can serve `group_id` now: it owns the partition and
/// has replayed it.
fn readiness(ctx: &ShardContext, group_id: &str) -> Result<i32, i16> {
    let Some((owner, partition)) = coordinator_of(ctx, group_id) else { return Err(COORDINATOR_NOT_AVAILABLE) };
    if owner != ctx.shard_id() {
        return Err(NOT_COORDINATOR);
    }
    if !ctx.groups.loaded.borrow().contains(&partition) {
        return Err(COORDINATOR_LOAD_IN_PROGRESS);
    }
    Ok(partition)
}

/// Executes a group call on this (the coordinating) shard.
pub async fn execute(ctx: &Rc<ShardContext>, call: GroupCall) -> GroupAnswer {
    let now = now_ms();
    let service = &ctx.groups;
    let group_of = |call: &GroupCall| -> Option<String> {
        match call {
            GroupCall::Join(r) => Some(r.group_id.clone()),
            GroupCall::Sync(r) => Some(r.group_id.clone()),
            GroupCall::Heartbeat { group_id, .. }
            | GroupCall::Leave { group_id, .. }
            | GroupCall::FetchOffsets { group_id, .. }
            | GroupCall::DeleteOffsets { group_id, .. } => Some(group_id.clone()),
            GroupCall::Commit(r) => Some(r.group_id.clone()),
            GroupCall::Describe { .. } | GroupCall::List | GroupCall::Delete { .. } => None,
        }
    };
    if let Some(group_id) = group_of(&call) {
        if let Err(code) = readiness(ctx, &group_id) {
            return not_ready_answer(&call, code);
        }
    }
    match call {
        GroupCall::Join(request) => {
            let (group_id, member_id) = (request.group_id.clone(), request.member_id.clone());
            tracing::debug!(shard = ctx.shard_id(), group = %group_id, member = %member_id, "JoinGroup");
            let handled = service.coordinator.borrow_mut().join(request, now);
            let response = match settle(ctx, handled).await {
                Settled::Now(response) => response,
                Settled::Parked(Parked::Join(response)) => response,
                Settled::Parked(Parked::Sync(_)) => unreachable!("a join ticket answers a join"),
            };
            tracing::debug!(
                shard = ctx.shard_id(),
                group = %group_id,
                member = %member_id,
                error_code = response.error_code,
                generation = response.generation_id,
                assigned_member = %response.member_id,
                leader = %response.leader,
                "JoinGroup answered"
            );
            GroupAnswer::Join(response)
        }
        GroupCall::Sync(request) => {
            let (group_id, member_id, generation) =
                (request.group_id.clone(), request.member_id.clone(), request.generation_id);
            tracing::debug!(shard = ctx.shard_id(), group = %group_id, member = %member_id, generation, "SyncGroup");
            let handled = service.coordinator.borrow_mut().sync(request, now);
            let response = match settle(ctx, handled).await {
                Settled::Now(response) => response,
                Settled::Parked(Parked::Sync(response)) => response,
                Settled::Parked(Parked::Join(_)) => unreachable!("a sync ticket answers a sync"),
            };
            tracing::debug!(
                shard = ctx.shard_id(),
                group = %group_id,
                member = %member_id,
                generation,
                error_code = response.error_code,
                assignment_bytes = response.assignment.len(),
                "SyncGroup answered"
            );
            GroupAnswer::Sync(response)
        }
        GroupCall::Heartbeat { group_id, generation_id, member_id, group_instance_id } => {
            let code = service.coordinator.borrow_mut().heartbeat(
                &group_id,
                generation_id,
                &member_id,
                group_instance_id.as_deref(),
                now,
            );
            GroupAnswer::Heartbeat(code)
        }
        GroupCall::Leave { group_id, members } => {
            let left = service.coordinator.borrow_mut().leave(&group_id, &members, now);
            process(ctx, left.completions);
            GroupAnswer::Leave(left.response)
        }
        GroupCall::Commit(request) => {
            let partition = readiness(ctx, &request.group_id).unwrap_or(0);
            let outcome = service.coordinator.borrow_mut().commit(&request, now);
            if !outcome.accepted.is_empty() {
                let code = append_records(ctx, partition, &outcome.records).await;
                if code != 0 {
                    let store_code = error_code::offset_commit_store_error(code);
                    let accepted: BTreeSet<(String, i32)> =
                        outcome.accepted.iter().map(|(tp, _)| (tp.topic.clone(), tp.partition)).collect();
                    let mut results = outcome.partitions;
                    for result in &mut results {
                        if accepted.contains(&(result.topic.clone(), result.partition)) {
                            result.error_code = store_code;
                        }
                    }
                    return GroupAnswer::Commit(results);
                }
                service.coordinator.borrow_mut().complete_commit(&outcome, now_ms());
            }
            GroupAnswer::Commit(outcome.partitions)
        }
        GroupCall::FetchOffsets { group_id, partitions } => {
            let partitions = service.coordinator.borrow().fetch_offsets(&group_id, partitions.as_deref());
            GroupAnswer::FetchOffsets { error_code: 0, partitions }
        }
        GroupCall::DeleteOffsets { group_id, partitions } => {
            let partition = readiness(ctx, &group_id).unwrap_or(0);
            let outcome = service.coordinator.borrow_mut().delete_offsets(&group_id, &partitions);
            if !outcome.records.is_empty() {
                append_records(ctx, partition, &outcome.records).await;
            }
            GroupAnswer::DeleteOffsets { error_code: outcome.error_code, partitions: outcome.partitions }
        }
        GroupCall::Describe { group_ids } => GroupAnswer::Describe(service.coordinator.borrow().describe(&group_ids)),
        GroupCall::List => GroupAnswer::List(service.coordinator.borrow().list_groups()),
        GroupCall::Delete { group_ids } => {
            let outcome = service.coordinator.borrow_mut().delete_groups(&group_ids);
            append_by_group(ctx, outcome.records).await;
            GroupAnswer::Delete(outcome.results)
        }
    }
}

/// The answer to a call this shard cannot serve yet (`code` from
/// [`readiness`]). While the group's partition is being replayed, Kafka
/// answers a Heartbeat NONE ("respond just blindly": the member keeps its
/// session) and a SyncGroup REBALANCE_IN_PROGRESS (the rebalance in flight
/// is lost: the member rejoins without looking for the coordinator again);
/// every other call gets the code itself.
fn not_ready_answer(call: &GroupCall, code: i16) -> GroupAnswer {
    match call {
        GroupCall::Heartbeat { .. } if code == COORDINATOR_LOAD_IN_PROGRESS => GroupAnswer::Heartbeat(0),
        GroupCall::Sync(_) if code == COORDINATOR_LOAD_IN_PROGRESS => {
            GroupAnswer::Sync(SyncResponse::error(error_code::REBALANCE_IN_PROGRESS))
        }
        _ => GroupAnswer::Unavailable(code),
    }
}

enum Settled<R> {
    Now(R),
    Parked(Parked),
}

/// Answers now, or parks until the ticket's completion arrives. The slot is
/// registered before the call's own completions are processed, since one of
/// them may be this request's answer.
async fn settle<R>(ctx: &Rc<ShardContext>, handled: Handled<R>) -> Settled<R> {
    match handled.answer {
        Answer::Now(response) => {
            process(ctx, handled.completions);
            Settled::Now(response)
        }
        Answer::Later(ticket) => {
            let slot = ctx.groups.park(ticket);
            process(ctx, handled.completions);
            Settled::Parked(slot.wait().await)
        }
    }
}

/// Delivers answers and starts the appends the coordinator asked for. The
/// appends of one call run in order, each made durable before the
/// coordinator hears about it.
fn process(ctx: &Rc<ShardContext>, completions: Vec<Completion>) {
    let mut stores = Vec::new();
    for completion in completions {
        match completion {
            Completion::Join { ticket, response } => ctx.groups.deliver(ticket, Parked::Join(response)),
            Completion::Sync { ticket, response } => ctx.groups.deliver(ticket, Parked::Sync(response)),
            Completion::StoreGroup { group_id, ticket, record } => stores.push((group_id, ticket, record)),
        }
    }
    if stores.is_empty() {
        return;
    }
    let ctx = ctx.clone();
    glommio::spawn_local(async move {
        for (group_id, ticket, record) in stores {
            let code = match coordinator_of(&ctx, &group_id) {
                Some((_, partition)) => append_records(&ctx, partition, std::slice::from_ref(&record)).await,
                None => ErrorCode::UnknownTopicOrPartition.code(),
            };
            let more = ctx.groups.coordinator.borrow_mut().group_stored(&group_id, ticket, code, now_ms());
            process(&ctx, more);
        }
    })
    .detach();
}

/// Appends tombstones or other records to the partitions of their groups.
async fn append_by_group(ctx: &Rc<ShardContext>, records: Vec<Record>) {
    let mut by_partition: std::collections::BTreeMap<i32, Vec<Record>> = Default::default();
    let Some(count) = offsets_partition_count(ctx) else { return };
    for record in records {
        let group = match record::decode_key(&record.key) {
            Ok(record::RecordKey::OffsetCommit { group_id, .. })
            | Ok(record::RecordKey::GroupMetadata { group_id }) => group_id,
            Err(_) => continue,
        };
        by_partition.entry(offsets_partition_for(&group, count)).or_default().push(record);
    }
    for (partition, records) in by_partition {
        append_records(ctx, partition, &records).await;
    }
}

/// Appends `records` as one uncompressed batch to this shard's
/// `__consumer_offsets` partition and waits until it is durable. Returns
/// a Kafka error code (0 on success).
async fn append_records(ctx: &Rc<ShardContext>, partition: i32, records: &[Record]) -> i16 {
    let Some(log) = ctx.partitions.borrow().get(&(GROUP_METADATA_TOPIC_NAME.to_string(), partition)).cloned() else {
        return NOT_COORDINATOR;
    };
    let batch = encode_batch(records, now_ms());
    match log.append(BytesMut::from(&batch[..]), 0).await {
        Ok(info) => match log.wait(info.last_offset, Durability::Durable).await {
            Ok(()) => 0,
            Err(e) => errors::append_error_code(&e),
        },
        Err(e) => errors::append_error_code(&e),
    }
}

/// An uncompressed RecordBatch v2 holding `records` (null values are tombstones).
pub fn encode_batch(records: &[Record], now_ms: i64) -> Vec<u8> {
    let mut body = Vec::new();
    for (i, record) in records.iter().enumerate() {
        let mut one = Vec::with_capacity(record.key.len() + record.value.as_ref().map_or(0, |v| v.len()) + 16);
        one.push(0); // attributes
        put_varint(&mut one, 0); // timestamp delta
        put_varint(&mut one, i as i64); // offset delta
        put_varint(&mut one, record.key.len() as i64);
        one.extend_from_slice(&record.key);
        match &record.value {
            Some(value) => {
                put_varint(&mut one, value.len() as i64);
                one.extend_from_slice(value);
            }
            None => put_varint(&mut one, -1),
        }
        put_varint(&mut one, 0); // headers
        put_varint(&mut body, one.len() as i64);
        body.extend_from_slice(&one);
    }
    batch::build::from_records(&body, records.len() as i32, 0, now_ms, now_ms)
}

/// A record's key and value; `None` for a null (a tombstone's value).
pub type KeyValue<'a> = (Option<&'a [u8]>, Option<&'a [u8]>);

/// The (key, value) pairs of an uncompressed batch; `None` for a batch
/// this broker did not write (compressed), which replay skips.
pub fn decode_batch(batch: &[u8]) -> Option<Vec<KeyValue<'_>>> {
    let header = BatchHeader::parse(batch).ok()?;
    if header.compression() != Compression::None || header.is_control() {
        return None;
    }
    let records = batch.get(HEADER_BYTES..header.size())?;
    let mut at = 0usize;
    let mut out = Vec::new();
    for _ in 0..header.records_count {
        let (length, used) = batch::read_varint(records.get(at..)?)?;
        let record = records.get(at + used..at + used + usize::try_from(length).ok()?)?;
        at += used + length as usize;
        let mut pos = 1usize; // attributes
        let (_, n) = batch::read_varint(record.get(pos..)?)?; // timestamp delta
        pos += n;
        let (_, n) = batch::read_varint(record.get(pos..)?)?; // offset delta
        pos += n;
        let field = |pos: &mut usize| -> Option<Option<&[u8]>> {
            let (len, n) = batch::read_varint(record.get(*pos..)?)?;
            *pos += n;
            if len < 0 {
                return Some(None);
            }
            let bytes = record.get(*pos..*pos + len as usize)?;
            *pos += len as usize;
            Some(Some(bytes))
        };
        let key = field(&mut pos)?;
        let value = field(&mut pos)?;
        out.push((key, value));
    }
    Some(out)
}

/// Replays the `__consumer_offsets` partitions this shard owns and has not
/// loaded yet (called after the shard applies a topic table).
pub async fn load_new_partitions(ctx: &ShardContext) {
    let owned: Vec<(i32, pinion_engine::Log<pinion_engine::io::dma::DmaStorage>)> = ctx
        .partitions
        .borrow()
        .iter()
        .filter(|((topic, _), _)| topic == GROUP_METADATA_TOPIC_NAME)
        .map(|((_, p), log)| (*p, log.clone()))
        .collect();
    for (partition, log) in owned {
        if ctx.groups.loaded.borrow().contains(&partition) {
            continue;
        }
        let started = std::time::Instant::now();
        let mut offset = log.log_start_offset();
        let end = log.log_end_offset();
        let mut records = 0u64;
        let now = now_ms();
        // Bounded: each read moves `offset` forward or ends the loop.
        while offset < end {
            let read = match log.read(offset, 4 << 20, end).await {
                Ok(read) if !read.chunks.is_empty() => read,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(partition, error = %e, "cannot read __consumer_offsets");
                    break;
                }
            };
            for chunk in &read.chunks {
                let mut at = 0usize;
                while at + HEADER_BYTES <= chunk.len() {
                    let Ok(header) = BatchHeader::parse(&chunk[at..]) else { break };
                    let bytes = &chunk[at..(at + header.size()).min(chunk.len())];
                    at += header.size();
                    for (key, value) in decode_batch(bytes).unwrap_or_default() {
                        let Some(key) = key else { continue };
                        records += 1;
                        if let Err(e) = ctx.groups.coordinator.borrow_mut().replay(key, value, now) {
                            tracing::warn!(partition, error = ?e, "skipping an unreadable __consumer_offsets record");
                        }
                    }
                }
            }
            offset = read.next_offset;
        }
        ctx.groups.loaded.borrow_mut().insert(partition);
        tracing::info!(
            shard = ctx.shard_id(),
            partition,
            records,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "loaded consumer groups"
        );
    }
}

/// Ticks the coordinator (session and rebalance timeouts, delayed joins)
/// and expires offsets of long-empty groups. Runs on every shard.
pub async fn timer_loop(ctx: Rc<ShardContext>) {
    loop {
        glommio::timer::sleep(Duration::from_millis(50)).await;
        let now = now_ms();
        let due = ctx.groups.coordinator.borrow().next_deadline_ms().is_some_and(|d| d <= now);
        if due {
            let completions = ctx.groups.coordinator.borrow_mut().tick(now);
            process(&ctx, completions);
        }
        let check_interval_ms = i64::try_from(ctx.config.offsets_retention_check_interval_ms).unwrap_or(i64::MAX);
        if now - ctx.groups.last_offsets_expiry_ms.get() >= check_interval_ms {
            ctx.groups.last_offsets_expiry_ms.set(now);
            let retention = ctx.config.offsets_retention_ms();
            let tombstones = ctx.groups.coordinator.borrow_mut().expire_offsets(now, retention);
            append_by_group(&ctx, tombstones).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn heartbeats_and_syncs_during_a_load_answer_as_kafka_does() {
        let heartbeat = || GroupCall::Heartbeat {
            group_id: "g".into(),
            generation_id: 1,
            member_id: "m".into(),
            group_instance_id: None,
        };
        assert!(matches!(not_ready_answer(&heartbeat(), COORDINATOR_LOAD_IN_PROGRESS), GroupAnswer::Heartbeat(0)));
        assert!(matches!(not_ready_answer(&heartbeat(), NOT_COORDINATOR), GroupAnswer::Unavailable(NOT_COORDINATOR)));
        let sync = GroupCall::Sync(SyncRequest {
            group_id: "g".into(),
            generation_id: 1,
            member_id: "m".into(),
            group_instance_id: None,
            protocol_type: None,
            protocol_name: None,
            assignments: Vec::new(),
        });
        match not_ready_answer(&sync, COORDINATOR_LOAD_IN_PROGRESS) {
            GroupAnswer::Sync(response) => assert_eq!(response.error_code, error_code::REBALANCE_IN_PROGRESS),
            other => panic!("unexpected {other:?}"),
        }
        let fetch = GroupCall::FetchOffsets { group_id: "g".into(), partitions: None };
        assert!(matches!(
            not_ready_answer(&fetch, COORDINATOR_LOAD_IN_PROGRESS),
            GroupAnswer::Unavailable(COORDINATOR_LOAD_IN_PROGRESS)
        ));
    }

    #[test]
    fn batches_round_trip_with_tombstones() {
        let records = vec![
            Record { key: Bytes::from_static(b"k1"), value: Some(Bytes::from_static(b"v1")) },
            Record { key: Bytes::from_static(b"k2"), value: None },
        ];
        let batch = encode_batch(&records, 5);
        batch::validate(&batch).unwrap();
        let decoded = decode_batch(&batch).unwrap();
        assert_eq!(decoded, vec![(Some(&b"k1"[..]), Some(&b"v1"[..])), (Some(&b"k2"[..]), None)]);
        assert!(decode_batch(&batch[..20]).is_none());
    }
}
