//! Starting and stopping a broker.
//!
//! `run` starts one executor per shard, each pinned to a CPU, joined in a
//! full channel mesh. Each shard starts its storage engine, opens the
//! partitions placed on it, listens on the shared port (SO_REUSEPORT),
//! serves forwarded work from the mesh, and enforces retention. On SIGTERM
//! or SIGINT (the `stop` flag) every shard stops accepting, lets requests in
//! flight finish for a moment, then closes its logs cleanly (flush,
//! fdatasync, indexes, recovery point) so a restart scans nothing.

use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers};
use glommio::net::TcpListener;
use glommio::Placement;

use pinion_engine::huge_pages::{self, HugePageUse};
use pinion_engine::io::dma::DmaStorage;
use pinion_engine::runtime::{check_memlock, spawn_executor_with, ExecutorOptions, IO_MEMORY_BYTES};
use pinion_engine::{Engine, SystemClock};

use crate::config::ServerConfig;
use crate::mesh::{CoreRequest, CoreResponse, Envelope, Mesh};
use crate::net::listener::accept_loop;
use crate::shard::ShardContext;
use crate::topics::TopicTable;

/// Reads the cluster id, creating it on first start.
fn cluster_id(config: &ServerConfig) -> Result<String, String> {
    let dir = config.data_dir.join("__pinion");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join("cluster_id");
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => Ok(id.trim().to_string()),
        _ => {
            let id = uuid::Uuid::new_v4().simple().to_string();
            std::fs::write(&path, &id).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(id)
        }
    }
}

/// CPUs shards are pinned to, in order.
fn shard_cpus(count: usize) -> Vec<Placement> {
    let online: Vec<usize> =
        glommio::CpuSet::online().map(|set| set.into_iter().map(|l| l.cpu).collect()).unwrap_or_default();
    (0..count)
        .map(|i| if online.is_empty() { Placement::Unbound } else { Placement::Fixed(online[i % online.len()]) })
        .collect()
}

/// The host checks of `pinion-tune check`: a FAIL stops the broker with its
/// line and remedy, a WARN is logged once.
fn run_startup_checks(config: &ServerConfig, shards: usize) -> Result<(), String> {
    let checks = pinion_tune::checks::CheckConfig {
        data_dir: config.data_dir.clone(),
        shards,
        io_memory_bytes_per_shard: IO_MEMORY_BYTES,
    };
    match pinion_tune::checks::startup_checks(&checks) {
        Ok(warnings) => {
            for warning in warnings {
                tracing::warn!("{}", warning.line());
            }
            Ok(())
        }
        Err(failure) => Err(format!("host check failed (run `pinion-tune check` for the full report):\n{failure}")),
    }
}

/// Runs the broker until `stop` is set. Returns a one-line reason on failure.
pub fn run(mut config: ServerConfig, stop: Arc<AtomicBool>) -> Result<(), String> {
    let shards = config.shard_count();
    // Fixed here: inside a pinned shard, the available parallelism is 1.
    config.cores = shards;
    std::fs::create_dir_all(&config.data_dir)
        .map_err(|e| format!("cannot create data dir {}: {e}", config.data_dir.display()))?;
    if config.startup_checks {
        run_startup_checks(&config, shards)?;
    }
    check_memlock(shards).map_err(|e| e.to_string())?;
    match huge_pages::set_transparent_hugepages(config.transparent_hugepages) {
        Ok(used @ HugePageUse::Withheld) => tracing::warn!("transparent huge pages: {used}"),
        Ok(used) => tracing::info!(heap = config.transparent_hugepages, "transparent huge pages: {used}"),
        Err(e) => {
            tracing::warn!(error = %e, "cannot set transparent huge pages for the broker (PR_SET_THP_DISABLE); the host's setting applies")
        }
    }
    let cluster_id = cluster_id(&config)?;
    let mut table = TopicTable::load(&config.data_dir)?;
    if table.get(crate::group::GROUP_METADATA_TOPIC_NAME).is_none() {
        // The internal topic exists from the first start on, so that every
        // shard opens and replays its partitions before serving.
        let name = crate::group::GROUP_METADATA_TOPIC_NAME.to_string();
        let configs = std::collections::BTreeMap::from([
            ("segment.bytes".to_string(), (100u64 << 20).to_string()),
            // The latest record per key (group, or group+partition) is kept.
            ("cleanup.policy".to_string(), "compact".to_string()),
        ]);
        table.topics.insert(
            name.clone(),
            crate::topics::TopicMeta {
                name,
                id: uuid::Uuid::new_v4(),
                partitions: config.offsets_topic_num_partitions,
                configs,
            },
        );
        table.version += 1;
        table.store(&config.data_dir).map_err(|e| format!("cannot write the topic table: {e}"))?;
    }
    pinion_engine::io::dma::ensure_probe_file(&config.data_dir)
        .map_err(|e| format!("cannot prepare data dir {}: {e}", config.data_dir.display()))?;
    let mesh = (shards > 1).then(|| MeshBuilder::<Envelope, Full>::full(shards, 1024));
    tracing::info!(shards, listen = %config.listen, data_dir = %config.data_dir.display(), "starting pinion");
    let mut handles = Vec::new();
    for (index, placement) in shard_cpus(shards).into_iter().enumerate() {
        let config = config.clone();
        let table = table.clone();
        let mesh = mesh.clone();
        let stop = stop.clone();
        let cluster_id = cluster_id.clone();
        let options = ExecutorOptions {
            spin_before_park: (config.spin_before_park_us > 0)
                .then(|| Duration::from_micros(config.spin_before_park_us)),
        };
        let handle = spawn_executor_with(&format!("shard-{index}"), placement, options, move || async move {
            let result = run_shard(config, cluster_id, table, mesh, stop.clone()).await;
            if result.is_err() {
                // One shard failing stops the others.
                stop.store(true, Ordering::SeqCst);
            }
            result
        })
        .map_err(|e| e.to_string())?;
        handles.push(handle);
    }
    // Joined as they end, not in order: a shard that could not start (its
    // executor, or its engine) must stop the others, which may be waiting
    // for it.
    let mut first_error = None;
    while !handles.is_empty() {
        let Some(at) = handles.iter().position(|h| h.is_finished()) else {
            std::thread::sleep(Duration::from_millis(20));
            continue;
        };
        let result = handles.swap_remove(at).join().map_err(|e| format!("shard thread failed: {e}")).and_then(|r| r);
        if let Err(e) = result {
            stop.store(true, Ordering::SeqCst);
            first_error.get_or_insert(e);
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => {
            tracing::info!("pinion stopped cleanly");
            Ok(())
        }
    }
}

async fn run_shard(
    config: ServerConfig,
    cluster_id: String,
    table: TopicTable,
    mesh: Option<MeshBuilder<Envelope, Full>>,
    stop: Arc<AtomicBool>,
) -> Result<(), String> {
    let shard_count = config.shard_count();
    let (senders, receivers) = match mesh {
        Some(mesh) => {
            // Every shard waits here for all the others: if one of them
            // cannot start, `stop` is set and the rest give up.
            let joined = futures_lite::future::or(async { Some(mesh.join().await) }, async {
                until_stopped(&stop).await;
                None
            })
            .await;
            let Some(joined) = joined else {
                // Stopped before every shard started: by a signal, or by a
                // shard that failed (whose error is the broker's).
                tracing::info!("stopped while the shards were starting");
                return Ok(());
            };
            let (senders, receivers) = joined.map_err(|_| "cannot join the shard mesh".to_string())?;
            (Some(senders), Some(receivers))
        }
        None => (None, None),
    };
    let shard_id = senders.as_ref().map(|s| s.peer_id()).unwrap_or(0);
    let engine =
        Engine::start(DmaStorage, config.engine_config(), Rc::new(SystemClock), std::slice::from_ref(&config.data_dir))
            .await
            .map_err(|e| {
                format!("shard {shard_id}: cannot start the storage engine in {}: {e}", config.data_dir.display())
            })?;
    let listen = config.listen;
    let mut context =
        ShardContext::new(config, cluster_id, engine, Mesh::new(shard_id, shard_count, senders), TopicTable::default());
    if shard_id == crate::placement::CONTROLLER_SHARD {
        context.producer_ids = Some(crate::producer_ids::ProducerIdAllocator::open(&context.config.data_dir)?);
    }
    let ctx = Rc::new(context);
    ctx.apply_topic_table(table).await;
    if let Some(receivers) = receivers {
        serve_mesh(ctx.clone(), receivers);
    }
    let listener = TcpListener::bind(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    tracing::info!(shard = shard_id, %listen, partitions = ctx.partitions.borrow().len(), "shard ready");
    let acceptor = glommio::spawn_local(accept_loop(ctx.clone(), listener));
    let retention = glommio::spawn_local(retention_loop(ctx.clone()));
    let group_timers = glommio::spawn_local(crate::groups::timer_loop(ctx.clone()));
    let metrics = match (shard_id, ctx.config.metrics_addr) {
        (0, Some(addr)) => {
            let listener = TcpListener::bind(addr).map_err(|e| format!("cannot serve metrics on {addr}: {e}"))?;
            Some(glommio::spawn_local(crate::http::serve_metrics(ctx.clone(), listener)))
        }
        _ => None,
    };
    until_stopped(&stop).await;
    tracing::info!(shard = shard_id, "shutting down");
    acceptor.cancel().await;
    retention.cancel().await;
    group_timers.cancel().await;
    if let Some(metrics) = metrics {
        metrics.cancel().await;
    }
    // Let requests already in flight finish before the logs close.
    glommio::timer::sleep(Duration::from_millis(200)).await;
    ctx.engine.shutdown().await;
    ctx.mesh.fail_pending();
    Ok(())
}

/// Resolves once `stop` is set (checked every 50 ms).
async fn until_stopped(stop: &AtomicBool) {
    while !stop.load(Ordering::SeqCst) {
        glommio::timer::sleep(Duration::from_millis(50)).await;
    }
}

/// Serves work other shards send: each request runs as its own task.
fn serve_mesh(ctx: Rc<ShardContext>, mut receivers: Receivers<Envelope>) {
    for (_peer, receiver) in receivers.streams() {
        let ctx = ctx.clone();
        glommio::spawn_local(async move {
            while let Some(envelope) = receiver.recv().await {
                match envelope {
                    Envelope::Request { id, from, request } => {
                        tracing::debug!(shard = ctx.shard_id(), from, id, ?request, "mesh request");
                        let ctx = ctx.clone();
                        glommio::spawn_local(async move {
                            let response: CoreResponse<bytes::Bytes> =
                                ctx.execute(request).await.map_chunks(|chunk| match chunk {
                                    pinion_engine::Chunk::Memory(bytes) => bytes,
                                    pinion_engine::Chunk::Disk(read) => bytes::Bytes::copy_from_slice(&read),
                                });
                            ctx.mesh.answer(from, id, response).await;
                        })
                        .detach();
                    }
                    Envelope::Response { id, response } => ctx.mesh.deliver(id, response),
                }
            }
        })
        .detach();
    }
}

/// Deletes segments past retention and compacts compacted topics on this
/// shard's logs, periodically.
async fn retention_loop(ctx: Rc<ShardContext>) {
    let interval = Duration::from_millis(ctx.config.log_retention_check_interval_ms.max(100));
    loop {
        glommio::timer::sleep(interval).await;
        let logs: Vec<_> = ctx.partitions.borrow().values().cloned().collect();
        for log in logs {
            match log.enforce_retention().await {
                Ok(outcome) if outcome.segments_deleted > 0 => {
                    tracing::info!(log = %log.dir().display(), deleted = outcome.segments_deleted, bytes = outcome.bytes_deleted, "retention")
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(log = %log.dir().display(), error = %e, "retention failed"),
            }
            if log.config().cleanup_policy.compacts() {
                match log.compact().await {
                    Ok(outcome) if outcome.records_removed > 0 || outcome.tombstones_removed > 0 => tracing::info!(
                        log = %log.dir().display(),
                        removed = outcome.records_removed,
                        tombstones = outcome.tombstones_removed,
                        bytes_before = outcome.bytes_before,
                        bytes_after = outcome.bytes_after,
                        "compaction"
                    ),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(log = %log.dir().display(), error = %e, "compaction failed"),
                }
            }
        }
    }
}

/// Collects every shard's metrics text (for the metrics endpoint).
pub async fn gather_metrics(ctx: &Rc<ShardContext>) -> String {
    let mut text = String::from(crate::metrics::header());
    for shard in 0..ctx.shard_count() {
        if let CoreResponse::Metrics(lines) = ctx.call(shard, CoreRequest::Metrics).await {
            text.push_str(&lines);
        }
    }
    crate::metrics::render_process(&mut text, &pinion_engine::huge_pages::io_buffer_stats());
    text
}
