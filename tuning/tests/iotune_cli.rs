//! `pinion-tune iotune` on this host's disk: a short run writes a
//! properties file the broker can load, with real numbers in it, and
//! leaves no scratch file behind.

use std::process::Command;
use std::time::{Duration, Instant};

use pinion_tune::iotune::{self, BLOCK_SIZES, QUEUE_DEPTHS};

const BIN: &str = env!("CARGO_BIN_EXE_pinion-tune");

#[test]
fn a_two_second_run_writes_loadable_properties() {
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let output = Command::new(BIN).args(["iotune", "--duration", "2", "--data-dir"]).arg(dir.path()).output().unwrap();
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert!(stderr.contains("iotune [1/19] write 4 KiB x 1"), "{stderr}");
    assert!(stderr.contains("fdatasync after 4 KiB appends"), "{stderr}");

    let path = dir.path().join(iotune::PROPERTIES_FILE_NAME);
    let properties = iotune::load(&path).unwrap();
    assert!(properties.write_bandwidth_bytes_per_sec > 0);
    assert!(properties.read_bandwidth_bytes_per_sec > 0);
    assert!(properties.write_iops > 0 && properties.read_iops > 0);
    assert!(properties.fdatasync_samples > 0);
    assert!(properties.fdatasync_latency_us_p50 <= properties.fdatasync_latency_us_p99);
    let cells = BLOCK_SIZES.len() * QUEUE_DEPTHS.len();
    assert_eq!((properties.write.len(), properties.read.len()), (cells, cells));
    assert!(BLOCK_SIZES.contains(&(properties.best_write_block_bytes as usize)));
    assert!(QUEUE_DEPTHS.contains(&(properties.best_write_queue_depth as usize)));

    let left: Vec<String> =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(left, [iotune::PROPERTIES_FILE_NAME]);
}

#[test]
fn out_puts_the_file_elsewhere_and_bad_durations_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("props.toml");
    let data = dir.path().join("data");
    let status = Command::new(BIN)
        .args(["iotune", "--duration", "1", "--data-dir"])
        .arg(&data)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(iotune::load(&out).is_ok());
    assert_eq!(std::fs::read_dir(&data).unwrap().count(), 0);

    let refused = Command::new(BIN).args(["iotune", "--duration", "0", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(refused.status.code(), Some(2));
}
