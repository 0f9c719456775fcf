use std::rc::Rc;

use bytes::BytesMut;
use glommio::Placement;
use pinion_engine::batch::build;
use pinion_engine::io::dma::DmaStorage;
use pinion_engine::runtime::run_executor;
use pinion_engine::{Durability, Engine, EngineConfig, LogConfig, SystemClock};

#[test]
fn append_read_close_reopen_on_real_dma_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    run_executor("smoke", Placement::Unbound, move || async move {
        let log_dir = path.join("topic-0");
        let engine =
            Engine::start(DmaStorage, EngineConfig::default(), Rc::new(SystemClock), std::slice::from_ref(&path))
                .await
                .unwrap();
        let config = LogConfig { segment_bytes: 8 << 10, ..LogConfig::default() };
        let log = engine.open_log(&log_dir, config.clone()).await.unwrap();
        let mut sent = Vec::new();
        for i in 0..200u32 {
            let value = format!("value-{i}-{}", "x".repeat((i % 50) as usize));
            let batch = build::batch(&[value.as_bytes(), b"second"], 1000 + i64::from(i));
            let info = log.append(BytesMut::from(&batch[..]), 3).await.unwrap();
            assert_eq!(info.base_offset, i64::from(i) * 2);
            sent.push(value);
        }
        log.wait(399, Durability::Durable).await.unwrap();
        assert!(log.segment_count() > 1, "8 KiB segments must roll");
        let read = log.read(0, 1 << 20, i64::MAX).await.unwrap();
        assert!(read.bytes > 0);
        log.close().await.unwrap();
        let log = engine.open_log(&log_dir, config).await.unwrap();
        assert_eq!(log.log_end_offset(), 400);
        let mut offset = 0;
        let mut batches = 0;
        while offset < 400 {
            let read = log.read(offset, 4096, i64::MAX).await.unwrap();
            assert!(!read.chunks.is_empty(), "read at {offset} returned nothing");
            for chunk in &read.chunks {
                let mut at = 0;
                while at < chunk.len() {
                    let h = pinion_engine::batch::validate(
                        &chunk[at..at + pinion_engine::batch::BatchHeader::parse(&chunk[at..]).unwrap().size()],
                    )
                    .unwrap();
                    assert_eq!(h.base_offset, batches * 2);
                    batches += 1;
                    at += h.size();
                }
            }
            offset = read.next_offset;
        }
        assert_eq!(batches, 200);
        engine.shutdown().await;
    })
    .unwrap();
}
