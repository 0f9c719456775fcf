//! A shard: one pinned executor, its storage engine, the partitions placed
//! on it, its copy of the topic table, and its end of the mesh.
//!
//! [`ShardContext::call`] is how a handler reaches a partition: it runs the
//! work here when this shard owns it, or sends it over the mesh. The same
//! function, [`ShardContext::execute`], does the work in both cases.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::BytesMut;
use glommio::io::ReadResult;

use pinion_engine::io::dma::DmaStorage;
use pinion_engine::{Chunk, Durability, Engine, Log, ReadError};

use crate::config::ServerConfig;
use crate::errors::{self, ErrorCode};
use crate::mesh::{ControllerRequest, CoreRequest, CoreResponse, Mesh, NewTopic, ProduceDone, ReadDone, TopicOutcome};
use crate::metrics::ShardMetrics;
use crate::placement::{shard_for, CONTROLLER_SHARD};
use crate::topics::{self, partition_dir, validate_topic_name, TopicMeta, TopicTable};

/// A chunk of stored batches as handlers see it.
pub type LocalChunk = Chunk<ReadResult>;

pub struct ShardContext {
    pub config: ServerConfig,
    /// Stable id of this broker's cluster (created on first start).
    pub cluster_id: String,
    pub engine: Engine<DmaStorage>,
    pub mesh: Mesh,
    pub topics: RefCell<TopicTable>,
    /// Version of the topic table this shard applied last.
    pub topics_version: Cell<u64>,
    pub partitions: RefCell<HashMap<(String, i32), Log<DmaStorage>>>,
    pub metrics: ShardMetrics,
    /// Consumer groups coordinated on this shard.
    pub groups: crate::groups::GroupService,
    /// Producer ids (on the controller shard only).
    pub producer_ids: Option<crate::producer_ids::ProducerIdAllocator>,
    /// Serializes controller changes on the controller shard.
    controller_busy: Cell<bool>,
}

impl std::fmt::Debug for ShardContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardContext").field("shard", &self.mesh.shard_id).finish()
    }
}

impl ShardContext {
    pub fn new(
        config: ServerConfig,
        cluster_id: String,
        engine: Engine<DmaStorage>,
        mesh: Mesh,
        table: TopicTable,
    ) -> Self {
        let shard_id = mesh.shard_id;
        Self {
            cluster_id,
            engine,
            mesh,
            topics: RefCell::new(table),
            topics_version: Cell::new(0),
            partitions: RefCell::new(HashMap::new()),
            metrics: ShardMetrics::new(shard_id),
            groups: crate::groups::GroupService::new(
                crate::group::GroupConfig {
                    group_min_session_timeout_ms: config.group_min_session_timeout_ms,
                    group_max_session_timeout_ms: config.group_max_session_timeout_ms,
                    group_initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
                    ..crate::group::GroupConfig::default()
                },
                crate::groups::now_ms() as u64 ^ ((shard_id as u64) << 48),
            ),
            controller_busy: Cell::new(false),
            producer_ids: None,
            config,
        }
    }

    pub fn shard_id(&self) -> usize {
        self.mesh.shard_id
    }

    pub fn shard_count(&self) -> usize {
        self.mesh.shard_count
    }

    pub fn owner_of(&self, topic: &str, partition: i32) -> usize {
        shard_for(topic, partition, self.shard_count())
    }

    /// Runs `request` on shard `to`: here if it is this shard, else over the mesh.
    pub async fn call(self: &Rc<Self>, to: usize, request: CoreRequest) -> CoreResponse<LocalChunk> {
        if to == self.shard_id() {
            self.execute(request).await
        } else {
            self.metrics.cross_core_calls.set(self.metrics.cross_core_calls.get() + 1);
            self.mesh.call(to, request).await.map_chunks(Chunk::Memory)
        }
    }

    fn log(&self, topic: &str, partition: i32) -> Option<Log<DmaStorage>> {
        self.partitions.borrow().get(&(topic.to_string(), partition)).cloned()
    }

    /// Does the work of a core request on this shard.
    pub async fn execute(self: &Rc<Self>, request: CoreRequest) -> CoreResponse<LocalChunk> {
        match request {
            CoreRequest::Produce { topic, partition, records, acks } => {
                CoreResponse::Produce(self.produce_local(&topic, partition, records, acks).await)
            }
            CoreRequest::Read { topic, partition, offset, max_bytes, disk } => {
                CoreResponse::Read(self.read_local(&topic, partition, offset, max_bytes, disk).await)
            }
            CoreRequest::WaitForData { topic, partition, offset, timeout_ms } => {
                if let Some(log) = self.log(&topic, partition) {
                    let wait = log.wait_for_data(offset);
                    let timeout = glommio::timer::sleep(Duration::from_millis(timeout_ms));
                    futures_lite::future::or(wait, timeout).await;
                }
                CoreResponse::WaitForData
            }
            CoreRequest::ListOffset { topic, partition, timestamp } => {
                CoreResponse::ListOffset(self.list_offset_local(&topic, partition, timestamp).await)
            }
            CoreRequest::Controller(change) => CoreResponse::Controller(self.control(change).await),
            CoreRequest::ApplyTopicTable { table } => {
                self.apply_topic_table(table).await;
                CoreResponse::Applied
            }
            CoreRequest::Metrics => CoreResponse::Metrics(self.metrics_text()),
            CoreRequest::Group(call) => CoreResponse::Group(crate::groups::execute(self, call).await),
            CoreRequest::AllocateProducerId => CoreResponse::ProducerId(match &self.producer_ids {
                Some(ids) => ids.allocate().map_err(|e| {
                    tracing::error!(error = %e, "cannot persist the producer id block");
                    ErrorCode::KafkaStorageError.code()
                }),
                None => Err(ErrorCode::NotLeaderOrFollower.code()),
            }),
        }
    }

    async fn produce_local(
        &self,
        topic: &str,
        partition: i32,
        records: BytesMut,
        acks: i16,
    ) -> Result<ProduceDone, i16> {
        let Some(log) = self.log(topic, partition) else {
            return Err(ErrorCode::UnknownTopicOrPartition.code());
        };
        let info = log.append(records, 0).await.map_err(|e| errors::append_error_code(&e))?;
        self.metrics.bytes_in.set(self.metrics.bytes_in.get() + info.bytes as u64);
        let durability = match acks {
            0 => None,
            1 => Some(Durability::Written),
            _ => Some(Durability::Durable),
        };
        if let Some(durability) = durability {
            log.wait(info.last_offset, durability).await.map_err(|e| errors::append_error_code(&e))?;
        }
        Ok(ProduceDone {
            base_offset: info.base_offset,
            log_append_time_ms: info.log_append_time_ms,
            log_start_offset: info.log_start_offset,
        })
    }

    async fn read_local(
        &self,
        topic: &str,
        partition: i32,
        offset: i64,
        max_bytes: usize,
        disk: bool,
    ) -> Result<ReadDone<LocalChunk>, i16> {
        let Some(log) = self.log(topic, partition) else {
            return Err(ErrorCode::UnknownTopicOrPartition.code());
        };
        if !disk && log.reads_from_disk(offset) {
            return Ok(ReadDone {
                chunks: Vec::new(),
                bytes: 0,
                high_watermark: log.log_end_offset(),
                log_start_offset: log.log_start_offset(),
                cold: true,
            });
        }
        match log.read(offset, max_bytes, i64::MAX).await {
            Ok(read) => {
                self.metrics.bytes_out.set(self.metrics.bytes_out.get() + read.bytes as u64);
                Ok(ReadDone {
                    chunks: read.chunks,
                    bytes: read.bytes,
                    high_watermark: read.log_end_offset,
                    log_start_offset: read.log_start_offset,
                    cold: false,
                })
            }
            Err(ReadError::OffsetOutOfRange { .. }) => Err(ErrorCode::OffsetOutOfRange.code()),
            Err(ReadError::Io(e)) => {
                tracing::error!(%topic, partition, error = %e, "read failed");
                Err(ErrorCode::KafkaStorageError.code())
            }
        }
    }

    async fn list_offset_local(&self, topic: &str, partition: i32, timestamp: i64) -> Result<(i64, i64), i16> {
        let Some(log) = self.log(topic, partition) else {
            return Err(ErrorCode::UnknownTopicOrPartition.code());
        };
        match timestamp {
            -2 => Ok((-1, log.log_start_offset())),
            -1 => Ok((-1, log.log_end_offset())),
            // MAX_TIMESTAMP (ListOffsets v7): the record with the largest timestamp.
            -3 => match log.offset_of_max_timestamp().await {
                Ok(Some((offset, timestamp))) => Ok((timestamp, offset)),
                Ok(None) => Ok((-1, -1)),
                Err(_) => Err(ErrorCode::KafkaStorageError.code()),
            },
            t if t < 0 => Err(ErrorCode::InvalidRequest.code()),
            t => match log.offset_for_timestamp(t).await {
                Ok(Some((offset, found))) => Ok((found, offset)),
                Ok(None) => Ok((-1, -1)),
                Err(_) => Err(ErrorCode::KafkaStorageError.code()),
            },
        }
    }

    /// Opens the logs this shard owns in `table` and closes (and deletes the
    /// data of) those it owns that are gone from it.
    pub async fn apply_topic_table(&self, table: TopicTable) {
        if table.version < self.topics.borrow().version {
            return;
        }
        let shard = self.shard_id();
        let count = self.shard_count();
        let wanted: Vec<(String, i32, TopicMeta)> = table
            .topics
            .values()
            .flat_map(|t| (0..t.partitions).map(move |p| (t.name.clone(), p, t.clone())))
            .filter(|(name, p, _)| shard_for(name, *p, count) == shard)
            .collect();
        let defaults = self.config.default_log_config();
        let doomed: Vec<((String, i32), Log<DmaStorage>)> = {
            let partitions = self.partitions.borrow();
            partitions
                .iter()
                .filter(|((name, p), _)| table.get(name).is_none_or(|t| *p >= t.partitions))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect()
        };
        for (key, log) in doomed {
            self.partitions.borrow_mut().remove(&key);
            if let Err(e) = log.delete().await {
                tracing::error!(topic = %key.0, partition = key.1, error = %e, "could not delete partition data");
            }
        }
        for (name, partition, meta) in wanted {
            let config = topics::log_config(&defaults, &meta.configs);
            let existing = self.log(&name, partition);
            match existing {
                Some(log) => log.set_config(config),
                None => {
                    let dir = partition_dir(&self.config.data_dir, &name, partition);
                    tracing::debug!(shard = self.shard_id(), dir = %dir.display(), "opening partition");
                    match self.engine.open_log(&dir, config).await {
                        Ok(log) => {
                            self.partitions.borrow_mut().insert((name, partition), log);
                        }
                        Err(e) => tracing::error!(error = %e, "cannot open partition"),
                    }
                }
            }
        }
        tracing::debug!(
            shard = self.shard_id(),
            version = table.version,
            topics = table.topics.len(),
            "applied topic table"
        );
        *self.topics.borrow_mut() = table;
        crate::groups::load_new_partitions(self).await;
    }

    /// Executes a topic-table change on the controller shard: validates,
    /// persists the new table, and has every shard apply it before answering.
    async fn control(self: &Rc<Self>, change: ControllerRequest) -> Vec<TopicOutcome> {
        assert_eq!(self.shard_id(), CONTROLLER_SHARD, "controller work runs on the controller shard");
        // One change at a time, so tables are applied in the order they are made.
        while self.controller_busy.get() {
            glommio::timer::sleep(Duration::from_millis(1)).await;
        }
        self.controller_busy.set(true);
        let mut table = self.topics.borrow().clone();
        let (outcomes, changed) = plan_change(&self.config, &mut table, change);
        if changed {
            if let Err(e) = table.store(&self.config.data_dir) {
                self.controller_busy.set(false);
                tracing::error!(error = %e, "cannot persist the topic table");
                return outcomes
                    .into_iter()
                    .map(|o| TopicOutcome {
                        error_code: if o.error_code == 0 { ErrorCode::KafkaStorageError.code() } else { o.error_code },
                        message: Some(format!("cannot persist the topic table: {e}")),
                        ..o
                    })
                    .collect();
            }
            self.broadcast_table(table).await;
        }
        self.controller_busy.set(false);
        outcomes
    }

    async fn broadcast_table(self: &Rc<Self>, table: TopicTable) {
        let mut calls = Vec::new();
        for shard in 0..self.shard_count() {
            let me = self.clone();
            let table = table.clone();
            calls.push(glommio::spawn_local(
                async move { me.call(shard, CoreRequest::ApplyTopicTable { table }).await },
            ));
        }
        for call in calls {
            call.await;
        }
    }

    /// Asks the controller for a change (from any shard).
    pub async fn request_change(self: &Rc<Self>, change: ControllerRequest) -> Vec<TopicOutcome> {
        match self.call(CONTROLLER_SHARD, CoreRequest::Controller(change)).await {
            CoreResponse::Controller(outcomes) => outcomes,
            // The controller shard is gone (shutdown): no change was made.
            _ => Vec::new(),
        }
    }

    /// Creates `name` with the default partition count if auto-creation is
    /// on. Returns the topic's metadata if it exists afterwards.
    pub async fn ensure_topic(self: &Rc<Self>, name: &str) -> Result<TopicMeta, ErrorCode> {
        if let Some(meta) = self.topics.borrow().get(name) {
            return Ok(meta.clone());
        }
        if validate_topic_name(name).is_err() {
            return Err(ErrorCode::InvalidTopicException);
        }
        if !self.config.auto_create_topics {
            return Err(ErrorCode::UnknownTopicOrPartition);
        }
        let new = NewTopic { name: name.to_string(), partitions: -1, replication_factor: -1, configs: Vec::new() };
        self.request_change(ControllerRequest::CreateTopics { topics: vec![new], validate_only: false }).await;
        self.topics.borrow().get(name).cloned().ok_or(ErrorCode::UnknownTopicOrPartition)
    }

    pub fn metrics_text(&self) -> String {
        let partitions: Vec<(String, i32, i64)> =
            self.partitions.borrow().iter().map(|((t, p), log)| (t.clone(), *p, log.log_end_offset())).collect();
        self.metrics.render(
            &self.engine.stats(),
            self.engine.cache_bytes(),
            self.engine.read_ahead_bytes(),
            &partitions,
            self.mesh.sent.get(),
        )
    }
}

/// Applies a controller change to `table`; returns per-topic outcomes and
/// whether anything changed. Pure: no I/O, so it is easy to test.
pub fn plan_change(
    config: &ServerConfig,
    table: &mut TopicTable,
    change: ControllerRequest,
) -> (Vec<TopicOutcome>, bool) {
    let ok = |name: &str| TopicOutcome { name: name.to_string(), error_code: 0, message: None };
    let fail = |name: &str, code: ErrorCode, message: String| TopicOutcome {
        name: name.to_string(),
        error_code: code.code(),
        message: Some(message),
    };
    let mut outcomes = Vec::new();
    let mut changed = false;
    match change {
        ControllerRequest::CreateTopics { topics: new_topics, validate_only } => {
            for new in new_topics {
                if let Err(reason) = validate_topic_name(&new.name) {
                    outcomes.push(fail(&new.name, ErrorCode::InvalidTopicException, reason));
                    continue;
                }
                if table.get(&new.name).is_some() {
                    outcomes.push(fail(
                        &new.name,
                        ErrorCode::TopicAlreadyExists,
                        format!("topic {} already exists", new.name),
                    ));
                    continue;
                }
                let partitions = if new.partitions == -1 { config.num_partitions } else { new.partitions };
                if partitions < 1 {
                    outcomes.push(fail(
                        &new.name,
                        ErrorCode::InvalidPartitions,
                        format!("partitions must be at least 1, got {partitions}"),
                    ));
                    continue;
                }
                if new.replication_factor != -1 && new.replication_factor != 1 {
                    outcomes.push(fail(
                        &new.name,
                        ErrorCode::InvalidReplicationFactor,
                        format!("replication factor {} is larger than the 1 available broker", new.replication_factor),
                    ));
                    continue;
                }
                let mut log_config = config.default_log_config();
                let mut overrides = std::collections::BTreeMap::new();
                let mut bad = None;
                for (key, value) in &new.configs {
                    if let Err(reason) = topics::apply_config(&mut log_config, key, value) {
                        bad = Some(reason);
                        break;
                    }
                    overrides.insert(key.clone(), value.clone());
                }
                if let Some(reason) = bad {
                    outcomes.push(fail(&new.name, ErrorCode::InvalidConfig, reason));
                    continue;
                }
                if !validate_only {
                    table.topics.insert(
                        new.name.clone(),
                        TopicMeta { name: new.name.clone(), id: uuid::Uuid::new_v4(), partitions, configs: overrides },
                    );
                    changed = true;
                }
                outcomes.push(ok(&new.name));
            }
        }
        ControllerRequest::DeleteTopics { names } => {
            for name in names {
                if table.topics.remove(&name).is_some() {
                    changed = true;
                    outcomes.push(ok(&name));
                } else {
                    outcomes.push(fail(
                        &name,
                        ErrorCode::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    ));
                }
            }
        }
        ControllerRequest::CreatePartitions { changes, validate_only } => {
            for (name, count) in changes {
                let Some(meta) = table.topics.get_mut(&name) else {
                    outcomes.push(fail(
                        &name,
                        ErrorCode::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    ));
                    continue;
                };
                if count <= meta.partitions {
                    outcomes.push(fail(
                        &name,
                        ErrorCode::InvalidPartitions,
                        format!(
                            "topic {name} has {} partitions; the new count {count} must be larger",
                            meta.partitions
                        ),
                    ));
                    continue;
                }
                if !validate_only {
                    meta.partitions = count;
                    changed = true;
                }
                outcomes.push(ok(&name));
            }
        }
        ControllerRequest::AlterConfigs { topic, set, delete, replace, validate_only } => {
            let Some(meta) = table.topics.get_mut(&topic) else {
                outcomes.push(fail(
                    &topic,
                    ErrorCode::UnknownTopicOrPartition,
                    format!("topic {topic} does not exist"),
                ));
                return (outcomes, false);
            };
            let mut configs = if replace { Default::default() } else { meta.configs.clone() };
            for key in delete {
                configs.remove(&key);
            }
            for (key, value) in set {
                configs.insert(key, value);
            }
            let mut check = config.default_log_config();
            for (key, value) in &configs {
                if let Err(reason) = topics::apply_config(&mut check, key, value) {
                    outcomes.push(fail(&topic, ErrorCode::InvalidConfig, reason));
                    return (outcomes, false);
                }
            }
            if !validate_only && configs != meta.configs {
                meta.configs = configs;
                changed = true;
            }
            outcomes.push(ok(&topic));
        }
    }
    if changed {
        table.version += 1;
    }
    (outcomes, changed)
}
