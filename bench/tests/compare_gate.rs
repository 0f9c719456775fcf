//! `pinion-bench compare` as CI uses it: run files written from known
//! histograms, the real binary, and its exit code (0 pass, 1 regression,
//! 2 usage error) and output.

mod support;

// `results.rs` (compiled into `support`) names these through `crate::`.
#[allow(unused_imports)]
use support::{latency, machine, Error};

use support::{bench, latencies, run_result, shown, write};

const RATE: f64 = 10_000.0;

fn code(output: &std::process::Output) -> Option<i32> {
    output.status.code()
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn slower_run_fails_the_gate_and_names_the_metric() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = write(dir.path(), "baseline.json", &run_result("latency", RATE, &latencies(1, 1), None));
    // Every latency 50% higher: p99 990 -> 1485 us.
    let current = write(dir.path(), "current.json", &run_result("latency", RATE, &latencies(3, 2), None));
    let output = bench([
        "compare".as_ref(),
        baseline.as_os_str(),
        current.as_os_str(),
        "--max-regression".as_ref(),
        "p99=10%".as_ref(),
        "--max-regression".as_ref(),
        "throughput=5%".as_ref(),
    ]);
    assert_eq!(code(&output), Some(1), "{}", shown(&output));
    let out = stdout(&output);
    assert!(out.contains("FAILED: 1 threshold crossed"), "{}", shown(&output));
    assert!(out.contains("publish.p99 (p99=10%): 990 us -> 1,485 us (+50.0%), allowed +10%"), "{}", shown(&output));
    let row = out.lines().find(|l| l.starts_with("publish.p99 ")).expect("a publish.p99 row");
    assert!(row.contains("REGRESSION") && row.contains("+50.0%"), "{row}");
    let throughput = out.lines().find(|l| l.starts_with("throughput ")).expect("a throughput row");
    assert!(throughput.ends_with(" ok"), "{throughput}");
}

#[test]
fn equal_run_passes() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = write(dir.path(), "a.json", &run_result("latency", RATE, &latencies(1, 1), Some(&latencies(2, 1))));
    let current = write(dir.path(), "b.json", &run_result("latency", RATE, &latencies(1, 1), Some(&latencies(2, 1))));
    let output = bench([
        "compare".as_ref(),
        baseline.as_os_str(),
        current.as_os_str(),
        "--max-regression".as_ref(),
        "p99=0%".as_ref(),
        "--max-regression".as_ref(),
        "throughput=0".as_ref(),
        "--max-regression".as_ref(),
        "max=0%".as_ref(),
    ]);
    assert_eq!(code(&output), Some(0), "{}", shown(&output));
    assert!(stdout(&output).contains("PASSED: no threshold crossed (3 checked)"), "{}", shown(&output));
}

#[test]
fn bare_percentiles_gate_end_to_end_latency_when_both_sides_have_it() {
    let dir = tempfile::tempdir().unwrap();
    // Publish latency equal, end-to-end 50% slower (p99 1,188 -> 1,782 us).
    let baseline = write(dir.path(), "a.json", &run_result("latency", RATE, &latencies(1, 1), Some(&latencies(6, 5))));
    let current = write(dir.path(), "b.json", &run_result("latency", RATE, &latencies(1, 1), Some(&latencies(9, 5))));
    let json = dir.path().join("comparison.json");
    let output = bench([
        "compare".as_ref(),
        baseline.as_os_str(),
        current.as_os_str(),
        "--max-regression".as_ref(),
        "p99=10%".as_ref(),
        "--max-regression".as_ref(),
        "publish.p99=10%".as_ref(),
        "--json".as_ref(),
        json.as_os_str(),
    ]);
    assert_eq!(code(&output), Some(1), "{}", shown(&output));
    assert!(stdout(&output).contains("e2e.p99 (p99=10%): 1,188 us -> 1,782 us (+50.0%)"), "{}", shown(&output));
    let comparison: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(comparison["kind"], "pinion-bench-comparison");
    assert_eq!(comparison["passed"], false);
    assert_eq!(comparison["latency_for_bare_percentiles"], "e2e");
    let rows = comparison["rows"].as_array().unwrap();
    let row = |metric: &str| rows.iter().find(|r| r["metric"] == metric).unwrap_or_else(|| panic!("row {metric}"));
    assert_eq!(row("e2e.p99")["regression"], true);
    assert_eq!(row("e2e.p99")["change_pct"], 50.0);
    assert_eq!(row("e2e.p99")["baseline"]["median"], 1188.0);
    assert_eq!(row("publish.p99")["regression"], false);
    assert_eq!(row("publish.p99")["threshold_pct"], 10.0);
}

#[test]
fn throughput_drop_beyond_the_threshold_fails() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = write(dir.path(), "a.json", &run_result("throughput-1k", RATE, &latencies(1, 1), None));
    let current = write(dir.path(), "b.json", &run_result("throughput-1k", 9_400.0, &latencies(1, 1), None));
    let output = bench([
        "compare".as_ref(),
        baseline.as_os_str(),
        current.as_os_str(),
        "--max-regression".as_ref(),
        "throughput=5%".as_ref(),
    ]);
    assert_eq!(code(&output), Some(1), "{}", shown(&output));
    assert!(stdout(&output).contains("throughput (throughput=5%): 10,000 msgs/s -> 9,400 msgs/s (-6.0%), allowed -5%"));

    // A throughput increase is never a regression.
    let faster = write(dir.path(), "c.json", &run_result("throughput-1k", 20_000.0, &latencies(1, 1), None));
    let output = bench([
        "compare".as_ref(),
        baseline.as_os_str(),
        faster.as_os_str(),
        "--max-regression".as_ref(),
        "throughput=0%".as_ref(),
    ]);
    assert_eq!(code(&output), Some(0), "{}", shown(&output));
}

#[test]
fn changes_exactly_at_the_threshold_pass_and_just_beyond_fail() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = write(dir.path(), "a.json", &run_result("latency", RATE, &latencies(1, 1), None));
    // p99 990 -> 1089 us (+10.0%), throughput 10,000 -> 9,500 (-5.0%).
    let current = write(dir.path(), "b.json", &run_result("latency", 9_500.0, &latencies(11, 10), None));
    let compare = |p99: &str, throughput: &str| {
        bench([
            "compare".as_ref(),
            baseline.as_os_str(),
            current.as_os_str(),
            "--max-regression".as_ref(),
            p99.as_ref(),
            "--max-regression".as_ref(),
            throughput.as_ref(),
        ])
    };
    let inside = compare("p99=10%", "throughput=5%");
    assert_eq!(code(&inside), Some(0), "{}", shown(&inside));
    let p99_beyond = compare("p99=9.9%", "throughput=5%");
    assert_eq!(code(&p99_beyond), Some(1), "{}", shown(&p99_beyond));
    assert!(stdout(&p99_beyond).contains("publish.p99 (p99=9.9%)"), "{}", shown(&p99_beyond));
    let throughput_beyond = compare("p99=10%", "throughput=4.9%");
    assert_eq!(code(&throughput_beyond), Some(1), "{}", shown(&throughput_beyond));
    assert!(stdout(&throughput_beyond).contains("throughput (throughput=4.9%)"), "{}", shown(&throughput_beyond));
}

#[test]
fn several_runs_per_side_compare_medians_so_one_outlier_does_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let baseline_dir = dir.path().join("baseline");
    std::fs::create_dir(&baseline_dir).unwrap();
    for (i, (numerator, denominator)) in [(1, 1), (101, 100), (99, 100)].into_iter().enumerate() {
        write(
            &baseline_dir,
            &format!("run-{i}.json"),
            &run_result("latency", RATE, &latencies(numerator, denominator), None),
        );
    }
    // One current run is twice as slow; the other two are within 2%.
    let normal_a = write(dir.path(), "current-a.json", &run_result("latency", RATE, &latencies(102, 100), None));
    let outlier = write(dir.path(), "current-b.json", &run_result("latency", RATE, &latencies(2, 1), None));
    let normal_c = write(dir.path(), "current-c.json", &run_result("latency", RATE, &latencies(1, 1), None));
    let current = format!("{},{},{}", normal_a.display(), outlier.display(), normal_c.display());
    let output = bench([
        "compare".as_ref(),
        baseline_dir.as_os_str(),
        current.as_ref(),
        "--max-regression".as_ref(),
        "p99=10%".as_ref(),
    ]);
    assert_eq!(code(&output), Some(0), "{}", shown(&output));
    let out = stdout(&output);
    assert!(out.contains("baseline: 3 runs") && out.contains("current:  3 runs"), "{out}");
    // Medians with their spread: baseline p99 990 [980..999], current 1,009 [990..1,980].
    let row = out.lines().find(|l| l.starts_with("publish.p99 ")).expect("a publish.p99 row");
    assert!(row.contains("990 us [980..999]") && row.contains("1,009 us [990..1,980]"), "{row}");

    // The outlier alone would have failed the gate.
    let output = bench([
        "compare".as_ref(),
        baseline_dir.as_os_str(),
        outlier.as_os_str(),
        "--max-regression".as_ref(),
        "p99=10%".as_ref(),
    ]);
    assert_eq!(code(&output), Some(1), "{}", shown(&output));
}

#[test]
fn bad_inputs_exit_2_with_a_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(dir.path(), "good.json", &run_result("latency", RATE, &latencies(1, 1), None));
    let not_a_run = dir.path().join("not-a-run.json");
    std::fs::write(&not_a_run, r#"{"hello": "world"}"#).unwrap();
    let mut wrong_kind = serde_json::to_value(run_result("latency", RATE, &latencies(1, 1), None)).unwrap();
    wrong_kind["kind"] = "something-else".into();
    let wrong_kind_path = dir.path().join("wrong-kind.json");
    std::fs::write(&wrong_kind_path, wrong_kind.to_string()).unwrap();
    let empty_dir = dir.path().join("empty");
    std::fs::create_dir(&empty_dir).unwrap();
    let missing = dir.path().join("missing.json");
    let good = good.to_str().unwrap();

    let cases: Vec<(Vec<String>, &str)> = vec![
        (vec![missing.display().to_string(), good.into()], "cannot read"),
        (vec![good.into(), not_a_run.display().to_string()], "is not a pinion-bench run file"),
        (vec![good.into(), wrong_kind_path.display().to_string()], "kind is \"something-else\""),
        (vec![empty_dir.display().to_string(), good.into()], "has no *.json run files"),
        (vec![format!("{good},"), good.into()], "empty path"),
        (vec![good.into(), good.into(), "--max-regression".into(), "p98=10%".into()], "unknown metric \"p98\""),
        (
            vec![good.into(), good.into(), "--max-regression".into(), "p99=abc".into()],
            "\"p99=abc\": the threshold must be",
        ),
        (vec![good.into(), good.into(), "--max-regression".into(), "p99".into()], "expected METRIC=PCT"),
        (
            vec![good.into(), good.into(), "--max-regression".into(), "e2e.p99=5%".into()],
            "not every run has end-to-end",
        ),
        (
            vec![
                good.into(),
                good.into(),
                "--max-regression".into(),
                "p99=5%".into(),
                "--max-regression".into(),
                "publish.p99=1%".into(),
            ],
            "two thresholds for publish.p99",
        ),
        (vec![good.into()], "CURRENT"),
    ];
    for (args, expected) in cases {
        let output = bench(std::iter::once("compare".to_string()).chain(args.iter().cloned()));
        assert_eq!(code(&output), Some(2), "{args:?}: {}", shown(&output));
        assert!(stderr(&output).contains(expected), "{args:?}: expected {expected:?} in stderr: {}", shown(&output));
        assert!(stdout(&output).is_empty(), "{args:?}: no table on a usage error: {}", shown(&output));
    }
    // The missing file is named.
    let output = bench(["compare", missing.to_str().unwrap(), good]);
    assert!(stderr(&output).contains(missing.to_str().unwrap()), "{}", shown(&output));
}

#[test]
fn different_workloads_are_refused_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let baseline = write(dir.path(), "a.json", &run_result("latency", RATE, &latencies(1, 1), None));
    let mut other = run_result("latency", RATE, &latencies(1, 1), None);
    other.workload.message_size_bytes = 100;
    let current = write(dir.path(), "b.json", &other);
    let output = bench(["compare".as_ref(), baseline.as_os_str(), current.as_os_str()]);
    assert_eq!(code(&output), Some(2), "{}", shown(&output));
    assert!(stderr(&output).contains("workloads differ"), "{}", shown(&output));
    assert!(stderr(&output).contains("message_size_bytes is 1024"), "{}", shown(&output));

    let output =
        bench(["compare".as_ref(), baseline.as_os_str(), current.as_os_str(), "--allow-different-workloads".as_ref()]);
    assert_eq!(code(&output), Some(0), "{}", shown(&output));
    assert!(stderr(&output).contains("warning: workloads differ"), "{}", shown(&output));

    // Only the name differs (a name against a file path): a warning, not an error.
    let renamed =
        write(dir.path(), "c.json", &run_result("bench/workloads/latency.toml", RATE, &latencies(1, 1), None));
    let output = bench(["compare".as_ref(), baseline.as_os_str(), renamed.as_os_str()]);
    assert_eq!(code(&output), Some(0), "{}", shown(&output));
    assert!(stderr(&output).contains("warning: workload name"), "{}", shown(&output));
}
