//! `pinion-tune check` and `apply --dry-run` run against this host: the
//! findings must agree with what the kernel reports directly, and a dry
//! run must change nothing.

use std::collections::BTreeSet;
use std::process::Command;

use pinion_tune::units::format_limit;
use pinion_tune::{Check, Status};

const BIN: &str = env!("CARGO_BIN_EXE_pinion-tune");

fn run_check_json(data_dir: &std::path::Path, extra: &[&str]) -> (Vec<Check>, Option<i32>) {
    let output = Command::new(BIN)
        .args(["check", "--json", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .output()
        .expect("run pinion-tune");
    let stdout = String::from_utf8(output.stdout).expect("utf-8");
    let checks: Vec<Check> = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    (checks, output.status.code())
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks.iter().find(|c| c.name == name).unwrap_or_else(|| panic!("no {name} check in {checks:#?}"))
}

#[test]
fn json_findings_match_the_kernel() {
    let dir = tempfile::tempdir().unwrap();
    let (checks, code) = run_check_json(dir.path(), &["--shards", "1"]);

    let names: BTreeSet<&str> = checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names.len(), checks.len(), "check names are unique");
    assert_eq!(checks.len(), 22);
    for check in &checks {
        assert_eq!(check.remedy.is_some(), check.status != Status::Ok, "{check:?}");
    }
    let failed = checks.iter().any(|c| c.status == Status::Fail);
    assert_eq!(code, Some(if failed { 1 } else { 0 }));

    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes one rlimit into the struct we own.
    let result = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) };
    assert_eq!(result, 0);
    let memlock = find(&checks, "memlock");
    let expected = format!("soft {}, hard {};", format_limit(limit.rlim_cur), format_limit(limit.rlim_max));
    assert!(memlock.found.starts_with(&expected), "{} vs {expected}", memlock.found);
    let need =
        pinion_tune::checks::memlock::memlock_needed_bytes(1, pinion_tune::checks::DEFAULT_IO_MEMORY_BYTES_PER_SHARD);
    if limit.rlim_cur < need && !memlock.found.contains("CAP_IPC_LOCK") {
        assert_eq!(memlock.status, Status::Fail);
    } else {
        assert_eq!(memlock.status, Status::Ok);
    }

    let io_uring = find(&checks, "io_uring");
    match std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled") {
        Ok(text) => {
            let disabled = text.trim();
            assert!(io_uring.found.contains(&format!("kernel.io_uring_disabled={disabled}")), "{}", io_uring.found);
            if disabled == "2" {
                assert_eq!(io_uring.status, Status::Fail);
            }
        }
        Err(_) => assert!(io_uring.found.contains("no kernel.io_uring_disabled sysctl")),
    }

    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "the O_DIRECT probe leaves nothing in the data directory"
    );
}

#[test]
fn more_shards_than_cpus_fails_with_exit_code_one() {
    let dir = tempfile::tempdir().unwrap();
    let (checks, code) = run_check_json(dir.path(), &["--shards", "8192"]);
    assert_eq!(find(&checks, "cpus").status, Status::Fail);
    assert_eq!(code, Some(1));
}

#[test]
fn the_table_has_a_header_and_a_summary() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN).args(["check", "--data-dir"]).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let first = stdout.lines().next().unwrap();
    assert!(
        first.starts_with("NAME") && first.contains("STATUS") && first.contains("FOUND") && first.ends_with("REMEDY"),
        "{stdout}"
    );
    assert!(stdout.lines().any(|l| l.starts_with("memlock ")), "{stdout}");
    assert!(stdout.trim_end().lines().last().unwrap().starts_with("22 checks: "), "{stdout}");
}

#[test]
fn apply_dry_run_prints_the_plan_and_changes_nothing() {
    let watched = [
        "/proc/sys/vm/swappiness",
        "/proc/sys/net/core/somaxconn",
        "/proc/sys/net/ipv4/tcp_wmem",
        "/sys/kernel/mm/transparent_hugepage/enabled",
    ];
    let before: Vec<Option<String>> = watched.iter().map(|p| std::fs::read_to_string(p).ok()).collect();
    let dir = tempfile::tempdir().unwrap();
    let output =
        Command::new(BIN).args(["apply", "--dry-run", "--shards", "1", "--data-dir"]).arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.starts_with("dry run: nothing is changed"), "{stdout}");
    assert!(stdout.contains("to change,"), "{stdout}");
    assert!(!stdout.lines().any(|l| l.starts_with("set ")), "a dry run sets nothing: {stdout}");
    let after: Vec<Option<String>> = watched.iter().map(|p| std::fs::read_to_string(p).ok()).collect();
    assert_eq!(before, after);
}

#[test]
fn zero_shards_is_a_usage_error() {
    let output = Command::new(BIN).args(["check", "--shards", "0"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}
