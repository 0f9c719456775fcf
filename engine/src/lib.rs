//! pinion-engine: the per-core storage engine of the pinion broker.
//!
//! A shard (one pinned glommio executor) owns an [`Engine`] and the
//! [`Log`]s of the partitions placed on it. A log is a directory of
//! segments holding Kafka RecordBatch v2 batches exactly as producers sent
//! them, written with O_DIRECT through io_uring. Nothing here knows about
//! sockets; nothing here is shared between threads.
//!
//! Reading order for a newcomer: [`batch`] (the stored unit), [`io`] (the
//! disk seam and its fault-injecting twin), [`segment`] and [`index`] (the
//! files), [`log`] (append, read, durability), [`shard`] (the flusher and
//! budgets), [`recovery`] (opening a log after a crash), [`producer_state`]
//! (idempotent producers' sequences, kept per log), [`compaction`] (the last
//! value per key, for `cleanup.policy=compact`).

pub mod batch;
pub mod clock;
pub mod compaction;
pub mod config;
pub mod error;
pub mod huge_pages;
pub mod index;
pub mod io;
pub mod log;
pub mod producer_state;
mod read_ahead;
pub mod recovery;
pub mod runtime;
pub mod segment;
pub mod shard;

pub use clock::{Clock, ManualClock, SystemClock};
pub use compaction::CompactionOutcome;
pub use config::{CleanupPolicy, EngineConfig, LogConfig, TimestampType};
pub use error::{AppendError, OpenError, ReadError};
pub use log::{AppendInfo, Chunk, Durability, Log, ReadBatches, RetentionOutcome};
pub use producer_state::ProducerError;
pub use shard::{Engine, EngineStats};
