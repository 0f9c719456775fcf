//! `pinion-bench engine` end to end: a one-second run on a temporary
//! directory writes a JSON report whose headline figures are all there and
//! positive.

use std::process::Command;

#[test]
fn engine_subcommand_writes_a_json_report_with_positive_figures() {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    let output = Command::new(env!("CARGO_BIN_EXE_pinion-bench"))
        .args(["engine", "--duration", "1", "--message-bytes", "100"])
        // Kept light on disk and time: a fixed rate of about 220 MB/s,
        // small segments, a short raw measurement.
        .args(["--rate", "2000000", "--segment-bytes", "67108864", "--warmup", "0.1"])
        .args(["--prebuilt-bytes", "8388608", "--read-duration", "0.3", "--raw-duration", "0.2"])
        .arg("--dir")
        .arg(dir.path().join("data"))
        .arg("--json")
        .arg(&json)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "pinion-bench failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    let positive = |pointer: &str| {
        let value = report.pointer(pointer).and_then(|v| v.as_f64());
        assert!(
            value.is_some_and(|v| v > 0.0),
            "{pointer} must be a positive number, got {:?}",
            report.pointer(pointer)
        );
    };
    for field in [
        "/messages_per_sec",
        "/bytes_per_sec",
        "/raw_odirect_write_bytes_per_sec",
        "/ratio_to_raw",
        "/tail_read_bytes_per_sec",
        "/cold_read_bytes_per_sec",
        "/append_latency_us/p50",
        "/append_latency_us/p99",
        "/append_latency_us/p999",
        "/append_latency_us/max",
        "/machine/cores",
    ] {
        positive(field);
    }
    assert!(report.pointer("/machine/kernel").and_then(|v| v.as_str()).is_some_and(|k| !k.is_empty()));
    assert_eq!(report.pointer("/config/args/message_bytes").and_then(|v| v.as_u64()), Some(100));
    // As the broker runs by default: no transparent huge pages for the heap,
    // the O_DIRECT buffers on their own mappings (on huge pages where the
    // host hands them out on request).
    assert_eq!(report.pointer("/write/heap_huge_page_bytes").and_then(|v| v.as_u64()), Some(0));
    let io_buffer_bytes = report.pointer("/write/io_buffer_bytes_mapped").and_then(|v| v.as_u64());
    assert!(io_buffer_bytes.is_some_and(|b| b > 0), "{io_buffer_bytes:?}");
    if pinion_engine::huge_pages::HostMode::read() == Some(pinion_engine::huge_pages::HostMode::Madvise) {
        let huge = report.pointer("/write/io_buffer_huge_page_bytes").and_then(|v| v.as_u64());
        assert!(huge.is_some_and(|b| b > 0), "{huge:?}");
        assert_eq!(report.pointer("/config/huge_pages").and_then(|v| v.as_str()), Some("I/O buffers only"));
    }
    // A fixed-rate run splits its late appends into backlog episodes.
    assert_eq!(report.pointer("/write/backlogs/threshold_us").and_then(|v| v.as_u64()), Some(2000));
    let in_episodes = report.pointer("/write/backlogs/appends").and_then(|v| v.as_u64());
    let appends = report.pointer("/write/appends").and_then(|v| v.as_u64());
    assert!(in_episodes.zip(appends).is_some_and(|(late, all)| late <= all), "{in_episodes:?} of {appends:?}");
    // The data directory is cleaned up after the run.
    let left: Vec<_> = std::fs::read_dir(dir.path().join("data")).unwrap().collect();
    assert!(left.is_empty(), "the run must remove what it wrote, found {left:?}");
    assert!(String::from_utf8_lossy(&output.stdout).contains("ratio = engine write MB/s / raw MB/s"));
}
