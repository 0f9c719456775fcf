//! Configuration of a partition log ([`LogConfig`], per topic) and of a
//! shard's engine ([`EngineConfig`]). Names and defaults follow Kafka's
//! topic configs in snake_case (`segment.bytes` is `segment_bytes`).

/// Which timestamp a batch keeps: the producer's or the broker's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimestampType {
    #[default]
    CreateTime,
    LogAppendTime,
}

/// What happens to old data (`cleanup.policy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CleanupPolicy {
    /// Whole segments are deleted by `retention_ms` and `retention_bytes` (`delete`).
    #[default]
    Delete,
    /// The last value per key is kept by [`crate::Log::compact`]; nothing
    /// is deleted by age or size (`compact`).
    Compact,
    /// Both (`compact,delete`).
    CompactDelete,
}

impl CleanupPolicy {
    /// Whether retention by time and size applies.
    pub fn deletes(self) -> bool {
        matches!(self, Self::Delete | Self::CompactDelete)
    }

    /// Whether the log is compacted.
    pub fn compacts(self) -> bool {
        matches!(self, Self::Compact | Self::CompactDelete)
    }

    /// Parses Kafka's `cleanup.policy`: `delete`, `compact`, or both
    /// comma-separated in either order.
    pub fn from_kafka(value: &str) -> Option<Self> {
        let (mut delete, mut compact) = (false, false);
        for part in value.split(',') {
            match part.trim() {
                "delete" => delete = true,
                "compact" => compact = true,
                _ => return None,
            }
        }
        match (delete, compact) {
            (true, false) => Some(Self::Delete),
            (false, true) => Some(Self::Compact),
            (true, true) => Some(Self::CompactDelete),
            (false, false) => None,
        }
    }

    /// The value Kafka shows for this policy.
    pub fn as_kafka(self) -> &'static str {
        match self {
            Self::Delete => "delete",
            Self::Compact => "compact",
            Self::CompactDelete => "compact,delete",
        }
    }
}

/// Per-log settings (Kafka topic configs). Not `Eq`: it holds a ratio.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Roll to a new segment when the active one would pass this size (`segment.bytes`).
    pub segment_bytes: u64,
    /// Roll when the active segment is older than this (`segment.ms`).
    pub segment_ms: i64,
    /// Bytes between sparse index entries (`index.interval.bytes`).
    pub index_interval_bytes: u32,
    /// Delete segments whose newest timestamp is older than this; -1 keeps forever (`retention.ms`).
    pub retention_ms: i64,
    /// Delete the oldest segments while the log is larger than this; -1 means no limit (`retention.bytes`).
    pub retention_bytes: i64,
    /// Largest batch accepted (`max.message.bytes`).
    pub max_message_bytes: usize,
    pub message_timestamp_type: TimestampType,
    /// Reserve `segment_bytes` of blocks when a segment is created.
    pub preallocate: bool,
    /// Delete by retention, compact, or both (`cleanup.policy`).
    pub cleanup_policy: CleanupPolicy,
    /// Compact once the bytes not yet compacted are at least this share of
    /// the compactable bytes (`min.cleanable.dirty.ratio`).
    pub min_cleanable_dirty_ratio: f64,
    /// How long a tombstone (a record with a null value) stays after
    /// compaction first saw it, so consumers can see the delete (`delete.retention.ms`).
    pub delete_retention_ms: i64,
    /// Segments holding records younger than this are not compacted yet (`min.compaction.lag.ms`).
    pub min_compaction_lag_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            index_interval_bytes: 4096,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1_048_588,
            message_timestamp_type: TimestampType::CreateTime,
            preallocate: true,
            cleanup_policy: CleanupPolicy::Delete,
            min_cleanable_dirty_ratio: 0.5,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
        }
    }
}

/// Per-shard settings of the write path and the tail cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// How long the flusher waits for more appends before writing while a
    /// caller on the shard waits for durability (so one fdatasync covers
    /// more requests), unless `flush_bytes` are already staged. When only
    /// appends that wait for their write are dirty, it writes at once.
    pub flush_linger_us: u64,
    /// Staged bytes on the shard that start a flush at once.
    pub flush_bytes: usize,
    /// Largest single O_DIRECT write; bigger flushes are split and issued together.
    pub write_bytes_max: usize,
    /// Unwritten bytes on the shard past which appends wait (backpressure).
    pub write_behind_bytes_max: usize,
    /// Bytes of recently appended batches kept in memory for tail reads.
    pub cache_bytes_max: usize,
    /// Bytes a shard may hold in windows read ahead after cold reads that
    /// stopped at their byte limit, so a consumer catching up finds its
    /// next fetch in memory (see `read_ahead`). Each log keeps at most one
    /// window, as large as the read before it (64 KiB to 8 MiB). 0: none.
    pub read_ahead_bytes_max: usize,
    /// Retention keeps the files of the segments it deletes (as
    /// `<base>.log.recycled`, up to `recycle_bytes_max` per shard) and the
    /// log's next rolls overwrite them instead of creating fresh files:
    /// writing into blocks that already hold data needs no block
    /// allocation, no size change and no journal commit (on ext4 about 1.8
    /// GB/s here against 1.2-1.3 GB/s for appending writes), and no 1 GiB
    /// unlink whose discards stall the device.
    pub recycle_segments: bool,
    /// Bytes of deleted segment files a shard keeps for reuse, over all its
    /// logs: the disk recycling may hold beyond retention. Files past the
    /// budget are removed as before.
    pub recycle_bytes_max: u64,
    /// While a shard writes at most this many distinct logs in 100 ms,
    /// preallocation grows segment files to the reserved size:
    /// appends are then overwrites of preallocated blocks, which io_uring
    /// issues inline and several at a time per file. With more logs it
    /// keeps the size (`FALLOC_FL_KEEP_SIZE`): each write extends its file,
    /// and ext4 runs an extending O_DIRECT write synchronously, so io_uring
    /// hands it to a worker thread on the shard's core, one write per file
    /// at a time. Measured on a 2-core VM whose disk interrupts all land on
    /// one core: inline writes made one log's appends to fresh segments
    /// 1-44 % faster, and a broker with 100 busy partitions 20-30 % slower,
    /// because each completion into preallocated space converts the extent
    /// in a kernel worker on the interrupt's core, while worker-thread
    /// writes convert on their own shard's core (BENCHMARKS.md, session 6).
    /// 0: always keep the size.
    pub inline_write_logs_max: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            flush_linger_us: 100,
            flush_bytes: 1 << 20,
            write_bytes_max: 1 << 20,
            write_behind_bytes_max: 64 << 20,
            cache_bytes_max: 256 << 20,
            read_ahead_bytes_max: 64 << 20,
            recycle_segments: true,
            recycle_bytes_max: 2 << 30,
            inline_write_logs_max: 16,
        }
    }
}
