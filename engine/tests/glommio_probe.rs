//! glommio decides whether a device supports polled I/O by reading the
//! first DMA file it opens there; if that file is empty, every later DMA
//! read on the device fails with EOPNOTSUPP (an upstream bug, reproduced
//! on these machines). The engine writes and opens a non-empty probe file
//! in each data directory first. This test is its own process (one test in
//! this binary), so the first DMA file glommio sees is the engine's: on a
//! fresh, empty data directory, cold reads of a brand-new log must work.

use std::rc::Rc;

use bytes::BytesMut;
use glommio::Placement;
use pinion_engine::batch::build;
use pinion_engine::io::dma::{DmaStorage, DEVICE_PROBE_FILE};
use pinion_engine::runtime::run_executor;
use pinion_engine::{Durability, Engine, EngineConfig, LogConfig, SystemClock};

#[test]
fn cold_reads_work_on_a_fresh_data_dir() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("fresh");
    let check_dir = data_dir.clone();
    run_executor("probe", Placement::Unbound, move || async move {
        let engine =
            Engine::start(DmaStorage, EngineConfig::default(), Rc::new(SystemClock), std::slice::from_ref(&data_dir))
                .await
                .unwrap();
        let log_dir = data_dir.join("t-0");
        let log = engine.open_log(&log_dir, LogConfig::default()).await.unwrap();
        let batch = build::batch(&[b"first value on a fresh device"], 1);
        log.append(BytesMut::from(&batch[..]), 0).await.unwrap();
        log.wait(0, Durability::Durable).await.unwrap();
        log.close().await.unwrap();
        // Reopen: the tail cache is empty, so this read goes to the disk.
        let log = engine.open_log(&log_dir, LogConfig::default()).await.unwrap();
        let read = log.read(0, 1 << 20, i64::MAX).await.expect("a cold DMA read on a fresh device");
        assert_eq!(read.chunks.len(), 1);
        assert_eq!(&read.chunks[0][61..], &batch[61..]);
        engine.shutdown().await;
    })
    .unwrap();
    let probe = std::fs::metadata(check_dir.join(DEVICE_PROBE_FILE)).unwrap();
    assert!(probe.len() > 0, "the probe file must be non-empty");
}
