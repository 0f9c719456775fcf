//! `pinion-bench run` against a real `pinion serve` (a free loopback port,
//! a temporary data directory): every built-in workload, shortened by
//! flags, writes a run file whose counts agree with each other: every
//! message sent was acknowledged, every acknowledged one consumed, no
//! errors.

mod broker_double;

// `results.rs` (compiled into `broker_double`) names these through `crate::`.
#[allow(unused_imports)]
use broker_double::{latency, machine, Error};

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use broker_double::results::RunResult;
use broker_double::{run_bench, strings};

const START_ATTEMPTS_MAX: u32 = 3;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The `pinion` binary next to `pinion-bench` (built by `cargo test
/// --workspace`), built on demand otherwise; `PINION_BIN` overrides.
fn pinion_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PINION_BIN") {
        return PathBuf::from(path);
    }
    let bench = Path::new(env!("CARGO_BIN_EXE_pinion-bench"));
    let pinion = bench.with_file_name("pinion");
    if !pinion.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "pinion-server", "--bin", "pinion"]);
        if bench.parent().and_then(Path::file_name).is_some_and(|p| p == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build -p pinion-server");
        assert!(status.success(), "cargo build -p pinion-server failed");
    }
    assert!(pinion.exists(), "{} does not exist", pinion.display());
    pinion
}

/// A `pinion serve` process, killed when dropped.
struct Pinion {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
}

impl Pinion {
    fn start() -> Self {
        let binary = pinion_binary();
        let mut failures = Vec::new();
        // Executors restarted in quick succession can fail to start (see
        // DESIGN.md): a few attempts, each bounded.
        for attempt in 0..START_ATTEMPTS_MAX {
            let data = tempfile::tempdir().unwrap();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let log = std::fs::File::create(data.path().join("pinion.log")).unwrap();
            let mut child = Command::new(&binary)
                .arg("serve")
                .arg("--data-dir")
                .arg(data.path().join("data"))
                .args(["--listen", &format!("127.0.0.1:{port}"), "--cores", "1", "--log-segment-bytes", "4194304"])
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start pinion serve");
            let deadline = Instant::now() + READY_TIMEOUT;
            // Bounded by READY_TIMEOUT.
            while Instant::now() < deadline {
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port, _data: data };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(data.path().join("pinion.log")).unwrap_or_default();
            failures.push(format!("attempt {}: {log}", attempt + 1));
            std::thread::sleep(Duration::from_millis(500 * u64::from(attempt + 1)));
        }
        panic!("pinion serve did not start:\n{}", failures.join("\n"));
    }
}

impl Drop for Pinion {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run_workload(pinion: &Pinion, workload: &str, extra: &[&str], dir: &Path) -> RunResult {
    let json = dir.join(format!("{workload}.json"));
    let mut args = strings(&["run", "--workload", workload, "--duration", "2", "--warmup", "1"]);
    args.extend(strings(extra));
    args.extend([
        "--bootstrap".into(),
        format!("127.0.0.1:{}", pinion.port),
        "--json".into(),
        json.display().to_string(),
    ]);
    let outcome = run_bench(&args, Duration::from_secs(60));
    assert!(outcome.status.success(), "{workload}: {}", outcome.describe());
    assert!(outcome.stdout.contains("end-to-end"), "{workload}: no summary table:\n{}", outcome.stdout);
    RunResult::read(&json).unwrap_or_else(|e| panic!("{workload}: {e}"))
}

fn check_counts(workload: &str, result: &RunResult) {
    let t = &result.throughput;
    assert_eq!(result.workload.name, workload);
    assert!(t.acked_messages > 0, "{workload}: nothing acknowledged: {t:?}");
    assert_eq!(t.sent_messages, t.acked_messages, "{workload}: {t:?}");
    assert_eq!(t.consumed_messages, t.acked_messages, "{workload}: {t:?}");
    assert!(t.messages_per_sec > 0.0 && t.bytes_per_sec > 0.0, "{workload}: {t:?}");
    assert!(result.errors.produce.is_empty() && result.errors.fetch.is_empty(), "{workload}: {:?}", result.errors);
    assert_eq!(result.errors.connection, 0);
    assert!(result.publish_latency_us.count > 0 && result.publish_latency_us.p50 > 0, "{workload}");
    let e2e = result.end_to_end_latency_us.expect("consumers ran");
    assert!(e2e.count > 0 && e2e.p99 >= e2e.p50, "{workload}: {e2e:?}");
    assert!(result.series.iter().any(|p| p.warmup) && result.series.iter().any(|p| !p.warmup), "{workload}");
    assert!(result.broker.version.contains("ApiVersions"), "{}", result.broker.version);
    assert!(result.broker.api_versions.iter().any(|&(key, _, _)| key == 0), "Produce is advertised");
}

#[test]
fn every_built_in_workload_runs_against_pinion_with_consistent_counts() {
    let pinion = Pinion::start();
    let dir = tempfile::tempdir().unwrap();

    let latency = run_workload(&pinion, "latency", &["--rate", "2000", "--partitions", "4"], dir.path());
    check_counts("latency", &latency);
    assert_eq!(latency.workload.rate_msgs_per_sec, Some(2000));
    // Two measured seconds at 2000 msgs/s (one more of warm-up).
    assert!(latency.publish_latency_us.count >= 3_600, "{:?}", latency.publish_latency_us);

    let report = dir.path().join("throughput-100b.html");
    let small = run_workload(
        &pinion,
        "throughput-100b",
        &["--partitions", "4", "--report", report.to_str().unwrap()],
        dir.path(),
    );
    check_counts("throughput-100b", &small);
    assert_eq!(small.workload.rate_msgs_per_sec, None);
    let html = std::fs::read_to_string(&report).unwrap();
    assert!(html.contains("<html") && html.contains("<svg"), "the report is not HTML with charts");

    let large = run_workload(&pinion, "throughput-1k", &["--partitions", "8", "--compression", "zstd"], dir.path());
    check_counts("throughput-1k", &large);
    assert_eq!(large.workload.compression, "zstd");
}

#[test]
fn a_consumer_backlog_is_read_back_and_timed() {
    let pinion = Pinion::start();
    let dir = tempfile::tempdir().unwrap();
    // 20,000 1 KiB msgs/s: the 4 MiB backlog is there about 0.2 s in.
    let extra = ["--partitions", "4", "--rate", "20000", "--consumer-backlog-bytes", "4194304"];
    let result = run_workload(&pinion, "throughput-1k", &extra, dir.path());
    check_counts("throughput-1k", &result);
    assert_eq!(result.workload.consumer_backlog_bytes, 4 << 20);
    let backlog = result.throughput.consumer_backlog.expect("a consumer backlog in the run file");
    assert!(backlog.bytes >= 4 << 20 && backlog.messages >= 4000, "{backlog:?}");
    // Released when the backlog was there, well before the producers' end (3 s).
    assert!(backlog.started_after_secs > 0.1 && backlog.started_after_secs < 2.5, "{backlog:?}");
    let secs = backlog.catch_up_secs.expect("caught up before the end");
    assert!(secs > 0.0 && backlog.catch_up_bytes_per_sec.is_some_and(|rate| rate > 0.0), "{backlog:?}");
}
