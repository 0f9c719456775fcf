//! The one visible place where work changes core.
//!
//! Every shard joins a full glommio channel mesh at start; a shard's id is
//! its peer id in the mesh. [`Mesh::call`] sends a [`CoreRequest`] to the
//! shard that owns the work and resolves with its [`CoreResponse`]; the
//! answer travels back over the mesh tagged with the request id. Nothing is
//! shared between cores: requests and answers are moved, and batch bytes
//! cross as `Bytes` (tail-cache chunks move without a copy; chunks read from
//! disk into a shard's DMA buffers are copied once, since those buffers
//! belong to the reading core's io_uring).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::task::{Poll, Waker};

use bytes::{Bytes, BytesMut};
use glommio::channels::channel_mesh::Senders;

use crate::topics::TopicTable;

/// Work one shard asks of another. All fields are owned and `Send`.
#[derive(Debug)]
pub enum CoreRequest {
    /// Append `records` to a partition this shard owns.
    Produce { topic: String, partition: i32, records: BytesMut, acks: i16 },
    /// Read a partition from `offset`; without `disk`, only from the tail
    /// cache (a read that would go to the disk answers `cold`).
    Read { topic: String, partition: i32, offset: i64, max_bytes: usize, disk: bool },
    /// Resolve when the partition has data at `offset`, or after `timeout_ms`.
    WaitForData { topic: String, partition: i32, offset: i64, timeout_ms: u64 },
    /// ListOffsets for one partition: -2 earliest, -1 latest, else by time.
    ListOffset { topic: String, partition: i32, timestamp: i64 },
    /// To the controller: change the topic table.
    Controller(ControllerRequest),
    /// From the controller: adopt this table (open and close logs to match).
    ApplyTopicTable { table: TopicTable },
    /// Counters and gauges of this shard, as Prometheus text lines.
    Metrics,
    /// A consumer group call, to the shard that coordinates the group.
    Group(crate::groups::GroupCall),
    /// To the controller: a new producer id.
    AllocateProducerId,
}

/// Topic table changes, executed by the controller shard only.
#[derive(Debug, Clone)]
pub enum ControllerRequest {
    CreateTopics {
        topics: Vec<NewTopic>,
        validate_only: bool,
    },
    DeleteTopics {
        names: Vec<String>,
    },
    CreatePartitions {
        changes: Vec<(String, i32)>,
        validate_only: bool,
    },
    /// `replace` (AlterConfigs): the topic's overrides become exactly `set`.
    /// Otherwise (IncrementalAlterConfigs) `delete` and then `set` apply to
    /// the overrides it has.
    AlterConfigs {
        topic: String,
        set: Vec<(String, String)>,
        delete: Vec<String>,
        replace: bool,
        validate_only: bool,
    },
}

#[derive(Debug, Clone)]
pub struct NewTopic {
    pub name: String,
    /// -1: the broker default.
    pub partitions: i32,
    pub replication_factor: i16,
    pub configs: Vec<(String, String)>,
}

/// Result of one topic-level change: Kafka error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicOutcome {
    pub name: String,
    pub error_code: i16,
    pub message: Option<String>,
}

/// Answers. `C` is a chunk of stored batches: engine chunks locally,
/// `Bytes` once they have crossed cores.
#[derive(Debug)]
pub enum CoreResponse<C> {
    Produce(Result<ProduceDone, i16>),
    Read(Result<ReadDone<C>, i16>),
    WaitForData,
    ListOffset(Result<(i64, i64), i16>),
    Controller(Vec<TopicOutcome>),
    Applied,
    Metrics(String),
    Group(crate::groups::GroupAnswer),
    ProducerId(Result<i64, i16>),
    /// The owning shard is gone (the broker is shutting down).
    Unavailable,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProduceDone {
    pub base_offset: i64,
    pub log_append_time_ms: i64,
    pub log_start_offset: i64,
}

#[derive(Debug)]
pub struct ReadDone<C> {
    pub chunks: Vec<C>,
    pub bytes: usize,
    pub high_watermark: i64,
    pub log_start_offset: i64,
    /// Not read: the data is on disk and the request asked for the cache only.
    pub cold: bool,
}

impl<C> CoreResponse<C> {
    /// Converts the chunk type (for example, copying disk chunks to `Bytes`).
    pub fn map_chunks<D>(self, f: impl Fn(C) -> D) -> CoreResponse<D> {
        match self {
            Self::Read(Ok(read)) => CoreResponse::Read(Ok(ReadDone {
                chunks: read.chunks.into_iter().map(f).collect(),
                bytes: read.bytes,
                high_watermark: read.high_watermark,
                log_start_offset: read.log_start_offset,
                cold: read.cold,
            })),
            Self::Read(Err(code)) => CoreResponse::Read(Err(code)),
            Self::Produce(r) => CoreResponse::Produce(r),
            Self::WaitForData => CoreResponse::WaitForData,
            Self::ListOffset(r) => CoreResponse::ListOffset(r),
            Self::Controller(r) => CoreResponse::Controller(r),
            Self::Applied => CoreResponse::Applied,
            Self::Metrics(text) => CoreResponse::Metrics(text),
            Self::Group(answer) => CoreResponse::Group(answer),
            Self::ProducerId(r) => CoreResponse::ProducerId(r),
            Self::Unavailable => CoreResponse::Unavailable,
        }
    }
}

/// What travels over the mesh.
#[derive(Debug)]
pub enum Envelope {
    Request { id: u64, from: usize, request: CoreRequest },
    Response { id: u64, response: CoreResponse<Bytes> },
}

#[derive(Debug)]
struct SlotState<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// A single-core one-shot place for an answer: one side waits on it, the
/// other fills it once. Cheap to clone (both sides hold the same slot).
/// Used for answers from other shards and for parked group requests.
#[derive(Debug)]
pub struct AnswerSlot<T> {
    state: Rc<RefCell<SlotState<T>>>,
}

impl<T> Clone for AnswerSlot<T> {
    fn clone(&self) -> Self {
        Self { state: self.state.clone() }
    }
}

impl<T> Default for AnswerSlot<T> {
    fn default() -> Self {
        Self { state: Rc::new(RefCell::new(SlotState { value: None, waker: None })) }
    }
}

impl<T> AnswerSlot<T> {
    /// Stores the answer and wakes the waiter.
    pub fn fill(&self, value: T) {
        let mut state = self.state.borrow_mut();
        state.value = Some(value);
        if let Some(waker) = state.waker.take() {
            waker.wake();
        }
    }

    /// Resolves with the answer once it is filled.
    pub async fn wait(&self) -> T {
        std::future::poll_fn(|cx| {
            let mut state = self.state.borrow_mut();
            match state.value.take() {
                Some(value) => Poll::Ready(value),
                None => {
                    state.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
        .await
    }
}

/// This shard's end of the mesh.
pub struct Mesh {
    pub shard_id: usize,
    pub shard_count: usize,
    senders: Option<Senders<Envelope>>,
    pending: RefCell<HashMap<u64, AnswerSlot<CoreResponse<Bytes>>>>,
    next_id: Cell<u64>,
    /// Messages sent to other shards (requests and answers).
    pub sent: Cell<u64>,
}

impl std::fmt::Debug for Mesh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mesh").field("shard_id", &self.shard_id).field("shard_count", &self.shard_count).finish()
    }
}

impl Mesh {
    pub fn new(shard_id: usize, shard_count: usize, senders: Option<Senders<Envelope>>) -> Self {
        Self {
            shard_id,
            shard_count,
            senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
            sent: Cell::new(0),
        }
    }

    /// Sends `request` to shard `to` and waits for its answer. `to` must
    /// not be this shard: local work is a plain function call. Answers
    /// [`CoreResponse::Unavailable`] if that shard has left the mesh.
    pub async fn call(&self, to: usize, request: CoreRequest) -> CoreResponse<Bytes> {
        assert_ne!(to, self.shard_id, "local work does not go through the mesh");
        let senders = self.senders.as_ref().expect("a mesh exists when there are several shards");
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        let slot = AnswerSlot::default();
        self.pending.borrow_mut().insert(id, slot.clone());
        self.sent.set(self.sent.get() + 1);
        if senders.send_to(to, Envelope::Request { id, from: self.shard_id, request }).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return CoreResponse::Unavailable;
        }
        slot.wait().await
    }

    /// Sends an answer back to the shard that asked.
    pub async fn answer(&self, to: usize, id: u64, response: CoreResponse<Bytes>) {
        let senders = self.senders.as_ref().expect("a mesh exists when there are several shards");
        self.sent.set(self.sent.get() + 1);
        if senders.send_to(to, Envelope::Response { id, response }).await.is_err() {
            tracing::warn!(to, "could not answer a shard: it left the mesh");
        }
    }

    /// Answers every call still waiting with `Unavailable` (shutdown).
    pub fn fail_pending(&self) {
        let pending: Vec<_> = self.pending.borrow_mut().drain().map(|(_, slot)| slot).collect();
        for slot in pending {
            slot.fill(CoreResponse::Unavailable);
        }
    }

    /// Delivers an answer that arrived from another shard.
    pub fn deliver(&self, id: u64, response: CoreResponse<Bytes>) {
        let Some(slot) = self.pending.borrow_mut().remove(&id) else {
            tracing::warn!(id, "answer for an unknown request");
            return;
        };
        slot.fill(response);
    }
}
